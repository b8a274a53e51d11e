/*
 * Posting tagged sends, tagged receives and RDMA writes with immediate data.
 *
 * A post that meets FI_EAGAIN (queues full) reads the completion queue, which drives progress
 * for providers with FI_PROGRESS_MANUAL and frees queue space, and tries again for at most
 * WF_OFI_POST_TIMEOUT_SEC seconds. Immediates read during that wait are held back until the next
 * progress() call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rdma/fabric.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

#include "ofi.h"

int wf_ofi_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
int wf_ofi_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
int wf_ofi_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                    wf_xfer_t *xfer);
int wf_ofi_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc,
                 uint64_t remote_addr, uint64_t key, uint32_t immediate, wf_xfer_t *xfer);
int wf_ofi_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                uint64_t key, wf_xfer_t *xfer);

static const char *provider_of(const wf_transport_t *t)
{
    return t->info->fabric_attr->prov_name;
}

static wf_ofi_op_t *op_acquire(wf_transport_t *t)
{
    if (t->free_ops == NULL) {
        wf_ofi_op_t **blocks = realloc(t->op_blocks, (t->op_block_count + 1) * sizeof(*blocks));
        if (blocks == NULL)
            return NULL;
        t->op_blocks = blocks;
        wf_ofi_op_t *block = calloc(WF_OFI_OP_BLOCK, sizeof(*block));
        if (block == NULL)
            return NULL;
        t->op_blocks[t->op_block_count++] = block;
        for (size_t i = 0; i < WF_OFI_OP_BLOCK; i++) {
            block[i].next_free = t->free_ops;
            t->free_ops = &block[i];
        }
    }
    wf_ofi_op_t *op = t->free_ops;
    t->free_ops = op->next_free;
    memset(op, 0, sizeof(*op));
    op->in_use = 1;
    t->ops_in_flight++;
    return op;
}

void wf_ofi_op_release(wf_transport_t *t, wf_ofi_op_t *op)
{
    op->in_use = 0;
    op->next_free = t->free_ops;
    t->free_ops = op;
    t->ops_in_flight--;
    if (op->kind == WF_OFI_OP_RECV)
        t->receives_in_flight--;
}

/* "from" for receives, "to" for sends and writes, so messages name the peer's role. */
static const char *toward(const char *operation)
{
    return strstr(operation, "recv") != NULL || strstr(operation, "receive") != NULL || strstr(operation, "read") != NULL
               ? "from"
               : "to";
}

static uint64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/*
 * Make room after a post returned FI_EAGAIN: poll the CQ once. Returns 0 to retry the post, or a
 * negative code when the CQ failed or the deadline (set on the first call) has passed.
 */
static int wait_for_queue_space(wf_transport_t *t, uint64_t *deadline, const char *call, int peer,
                                size_t length)
{
    uint64_t now = monotonic_ns();
    if (*deadline == 0)
        *deadline = now + (uint64_t)WF_OFI_POST_TIMEOUT_SEC * 1000000000u;
    if (now > *deadline) {
        wf_ofi_set_error(t,
                         "%s of %zu bytes %s rank %d timed out: provider %s returned FI_EAGAIN for "
                         "%d s; rank %d may have stopped progressing or exited",
                         call, length, toward(call), peer, provider_of(t), WF_OFI_POST_TIMEOUT_SEC, peer);
        WF_OFI_WARN("%s", t->error);
        return -ETIMEDOUT;
    }
    /*
     * A dead or stalled peer never drains its queue: let the owner decide every few hundred tries.
     * The owner may also run other work meanwhile (a fiber yields there); time spent away from this
     * post does not count against its deadline.
     */
    if (t->should_stop != NULL && (++t->eagain_retries & 255u) == 0) {
        int stop = t->should_stop(t->callback_arg);
        uint64_t away = monotonic_ns() - now;
        if (away > 1000000u)
            *deadline += away;
        if (stop) {
            wf_ofi_set_error(t, "%s of %zu bytes %s rank %d was abandoned while waiting for queue space, because "
                             "the communicator failed meanwhile", call, length, toward(call), peer);
            return -ECANCELED;
        }
    }
    if (t->should_stop == NULL)
        t->eagain_retries++;
    t->post_depth++;
    int rc = wf_ofi_poll(t);
    t->post_depth--;
    return rc < 0 ? rc : 0;
}

/* Check what every post needs; needs_desc is 0 for posts that never pass a descriptor. */
static int check_post(wf_transport_t *t, const char *operation, int peer, const void *buf, size_t length,
                      const void *desc, int needs_desc, const wf_xfer_t *xfer)
{
    if (xfer == NULL) {
        wf_ofi_set_error(t, "%s %s rank %d: xfer must not be NULL", operation, toward(operation), peer);
        return -EINVAL;
    }
    if (!t->connected) {
        wf_ofi_set_error(t, "%s %s rank %d before connect(); call connect() first", operation,
                         toward(operation), peer);
        return -ENOTCONN;
    }
    if (peer < 0 || peer >= t->nranks) {
        wf_ofi_set_error(t, "%s: peer rank %d is outside the communicator of %d ranks", operation, peer, t->nranks);
        return -EINVAL;
    }
    if (length > t->max_message) {
        wf_ofi_set_error(t,
                         "%s of %zu bytes %s rank %d exceeds the maximum message size of %zu bytes "
                         "(provider %s); split it into pieces of at most max_message_size() bytes",
                         operation, length, toward(operation), peer, t->max_message, provider_of(t));
        return -EMSGSIZE;
    }
    if (buf == NULL && length > 0) {
        wf_ofi_set_error(t, "%s of %zu bytes %s rank %d: buffer is NULL", operation, length, toward(operation),
                         peer);
        return -EINVAL;
    }
    if (needs_desc && t->mr_local && desc == NULL && length > 0) {
        wf_ofi_set_error(t,
                         "%s of %zu bytes %s rank %d has no memory descriptor, but provider %s "
                         "requires one (FI_MR_LOCAL); register the buffer and pass wf_mr_t.desc",
                         operation, length, toward(operation), peer, provider_of(t));
        return -EINVAL;
    }
    return 0;
}

static int check_tag(wf_transport_t *t, const char *operation, int peer, uint64_t tag)
{
    if ((tag & ~t->tag_mask) == 0)
        return 0;
    wf_ofi_set_error(t,
                     "%s %s rank %d: tag 0x%016llx uses bits above the %d tag bits provider %s "
                     "matches; keep tags below 2^%d",
                     operation, toward(operation), peer, (unsigned long long)tag, t->tag_bits, provider_of(t), t->tag_bits);
    return -EINVAL;
}

static int post_failed(wf_transport_t *t, const char *call, int peer, size_t length, ssize_t ret)
{
    /* shm of libfabric 1.17 returns FI_ENOMEM, not FI_EAGAIN, once its receive queue is full. */
    char hint[160] = "";
    if (ret == -FI_ENOMEM && strcmp(call, "fi_trecv") == 0 && t->info->rx_attr != NULL)
        snprintf(hint, sizeof(hint), "; %zu operations are in flight and the receive queue holds %zu, so "
                 "post fewer receives at once", t->ops_in_flight, t->info->rx_attr->size);
    wf_ofi_set_error(t, "%s of %zu bytes %s rank %d failed on provider %s: %s%s", call, length, toward(call),
                     peer, provider_of(t), fi_strerror((int)-ret), hint);
    return wf_ofi_errno((int)-ret);
}

static void reset_xfer(wf_xfer_t *xfer)
{
    xfer->done = 0;
    xfer->status = 0;
    xfer->length = 0;
}

static wf_ofi_op_t *start_op(wf_transport_t *t, wf_ofi_op_kind_t kind, int peer, size_t length, uint64_t tag,
                             wf_xfer_t *xfer)
{
    wf_ofi_op_t *op = op_acquire(t);
    if (op == NULL) {
        wf_ofi_set_error(t, "%s of %zu bytes %s rank %d: out of memory for the operation record",
                         wf_ofi_op_name(kind), length, toward(wf_ofi_op_name(kind)), peer);
        return NULL;
    }
    op->kind = kind;
    if (kind == WF_OFI_OP_RECV)
        t->receives_in_flight++;
    op->peer = peer;
    op->length = length;
    op->tag = tag;
    op->xfer = xfer;
    return op;
}

/* Send a message of at most inject_size bytes; it is complete as soon as fi_tinject accepts it. */
static int send_inject(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length,
                       wf_xfer_t *xfer)
{
    uint64_t deadline = 0;
    for (;;) {
        ssize_t ret = fi_tinject(t->ep, buf, length, t->fi_addr_of[peer], tag);
        if (ret == 0)
            break;
        if (ret != -FI_EAGAIN)
            return post_failed(t, "fi_tinject", peer, length, ret);
        int rc = wait_for_queue_space(t, &deadline, "fi_tinject", peer, length);
        if (rc < 0)
            return rc;
    }
    xfer->length = length;
    xfer->done = 1;
    return 0;
}

int wf_ofi_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                wf_xfer_t *xfer)
{
    int inject = length <= t->inject_size;
    int rc = check_post(t, "tagged send", peer, buf, length, desc, !inject, xfer);
    if (rc == 0)
        rc = check_tag(t, "tagged send", peer, tag);
    if (rc != 0)
        return rc;
    reset_xfer(xfer);
    if (inject)
        return send_inject(t, peer, tag, buf, length, xfer);

    wf_ofi_op_t *op = start_op(t, WF_OFI_OP_SEND, peer, length, tag, xfer);
    if (op == NULL)
        return -ENOMEM;
    uint64_t deadline = 0;
    for (;;) {
        ssize_t ret = fi_tsend(t->ep, buf, length, desc, t->fi_addr_of[peer], tag, &op->context);
        if (ret == 0)
            return 0;
        rc = ret == -FI_EAGAIN ? wait_for_queue_space(t, &deadline, "fi_tsend", peer, length)
                               : post_failed(t, "fi_tsend", peer, length, ret);
        if (rc < 0) {
            wf_ofi_op_release(t, op);
            return rc;
        }
    }
}

/* Post one fi_trecv; peer -1 receives from any source. */
static int post_recv(wf_transport_t *t, int peer, uint64_t tag, uint64_t ignore, void *buf, size_t length,
                     void *desc, wf_xfer_t *xfer)
{
    reset_xfer(xfer);
    wf_ofi_op_t *op = start_op(t, WF_OFI_OP_RECV, peer, length, tag, xfer);
    if (op == NULL)
        return -ENOMEM;
    fi_addr_t source = peer >= 0 ? t->fi_addr_of[peer] : FI_ADDR_UNSPEC;
    uint64_t deadline = 0;
    for (;;) {
        /* FI_DIRECTED_RECV makes a given source rank match too; FI_ADDR_UNSPEC matches any rank. */
        ssize_t ret = fi_trecv(t->ep, buf, length, desc, source, tag, ignore, &op->context);
        if (ret == 0)
            return 0;
        int rc = ret == -FI_EAGAIN ? wait_for_queue_space(t, &deadline, "fi_trecv", peer, length)
                                   : post_failed(t, "fi_trecv", peer, length, ret);
        if (rc < 0) {
            wf_ofi_op_release(t, op);
            return rc;
        }
    }
}

int wf_ofi_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                wf_xfer_t *xfer)
{
    int rc = check_post(t, "tagged receive", peer, buf, length, desc, 1, xfer);
    if (rc == 0)
        rc = check_tag(t, "tagged receive", peer, tag);
    if (rc != 0)
        return rc;
    return post_recv(t, peer, tag, 0, buf, length, desc, xfer); /* ignore = 0: every tag bit must match */
}

int wf_ofi_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                    wf_xfer_t *xfer)
{
    /* check_post wants a rank; 0 exists in every communicator and stands for "any" in its checks. */
    int rc = check_post(t, "tagged receive from any rank", 0, buf, length, desc, 1, xfer);
    if (rc == 0)
        rc = check_tag(t, "tagged receive from any rank", 0, tag | ignore);
    if (rc != 0)
        return rc;
    return post_recv(t, -1, tag, ignore, buf, length, desc, xfer);
}

/*
 * Post one fi_writedata. A write larger than max_message_size() is rejected rather than split:
 * the immediate must become visible only after every byte landed, and splitting would need
 * write-after-write ordering (FI_ORDER_WAW) or a wait for the earlier pieces. The caller splits
 * instead and gives each piece its own immediate.
 *
 * Visibility at the target: fi_cq(3) of libfabric 1.17 ("Target completion semantics") states
 * that completions generated at the target indicate by default that the transferred data is
 * readable in the target buffer, whatever completion level the initiator requested. The remote
 * CQ data entry of fi_writedata is such a completion, so on_remote_write may read the region at
 * once. The initiator's own completion,
 * with the default transmit-complete level, only means the source buffer may be reused.
 *
 * NOTE: with shm and tcp;ofi_rxm of libfabric 1.17, a write with a key the target never issued
 * completes without error at the initiator and raises nothing at the target, so only the
 * caller's timeout on the missing immediate detects it.
 */
int wf_ofi_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc,
                 uint64_t remote_addr, uint64_t key, uint32_t immediate, wf_xfer_t *xfer)
{
    int rc = check_post(t, "RDMA write", peer, buf, length, desc, 1, xfer);
    if (rc != 0)
        return rc;
    reset_xfer(xfer);

    wf_ofi_op_t *op = start_op(t, WF_OFI_OP_WRITE, peer, length, immediate, xfer);
    if (op == NULL)
        return -ENOMEM;
    uint64_t deadline = 0;
    for (;;) {
        ssize_t ret = fi_writedata(t->ep, buf, length, desc, immediate, t->fi_addr_of[peer], remote_addr, key,
                                   &op->context);
        if (ret == 0)
            return 0;
        rc = ret == -FI_EAGAIN ? wait_for_queue_space(t, &deadline, "fi_writedata", peer, length)
                               : post_failed(t, "fi_writedata", peer, length, ret);
        if (rc < 0) {
            wf_ofi_op_release(t, op);
            return rc;
        }
    }
}

/* Post one fi_read; its completion means the data is in buf. */
int wf_ofi_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                uint64_t key, wf_xfer_t *xfer)
{
    int rc = check_post(t, "RDMA read", peer, buf, length, desc, 1, xfer);
    if (rc != 0)
        return rc;
    reset_xfer(xfer);

    wf_ofi_op_t *op = start_op(t, WF_OFI_OP_READ, peer, length, 0, xfer);
    if (op == NULL)
        return -ENOMEM;
    uint64_t deadline = 0;
    for (;;) {
        ssize_t ret = fi_read(t->ep, buf, length, desc, t->fi_addr_of[peer], remote_addr, key, &op->context);
        if (ret == 0)
            return 0;
        rc = ret == -FI_EAGAIN ? wait_for_queue_space(t, &deadline, "fi_read", peer, length)
                               : post_failed(t, "fi_read", peer, length, ret);
        if (rc < 0) {
            wf_ofi_op_release(t, op);
            return rc;
        }
    }
}
