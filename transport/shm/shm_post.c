/*
 * Posting tagged sends, tagged receives and writes on the shm transport.
 *
 * A send of at most the peer's inline limit is copied into the peer's ring and complete at once.
 * A larger send publishes an RTS record with its buffer's address. The receiver pulls the data by
 * process_vm_readv and sends back DONE, which completes the send. A write above the inline limit goes
 * by process_vm_writev straight into the target address, followed by a WRITTEN record that raises
 * the immediate; smaller writes travel as WRITE records. Where the peer cannot use CMA, large
 * sends and writes travel through the ring in pieces of a quarter of its capacity.
 *
 * A post that finds the ring full drains this rank's own inbound rings while it waits, since the
 * peer may itself wait for room in a ring of this rank. It asks config->should_stop every few
 * hundred tries, checks that the peer's process still exists, and gives up after
 * WF_SHM_POST_TIMEOUT_SEC of waiting; it never waits without bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "shm.h"

void wf_shm_ring_doorbell(struct wf_transport *t, int peer)
{
    if (!t->peers[peer].rings_doorbell)
        return; /* the peer polls this rank's ring */
    _Atomic uint64_t *word = &t->peers[peer].header->doorbell[t->rank / 64];
    uint64_t bit = 1ull << (t->rank % 64);
    /*
     * The fence orders the head store of the record before the load below. Without it the load
     * could see this rank's bit still set just before the receiver clears it, and the receiver
     * could then read the old head: the record would wait for the next doorbell.
     */
    atomic_thread_fence(memory_order_seq_cst);
    if ((atomic_load_explicit(word, memory_order_relaxed) & bit) == 0)
        atomic_fetch_or_explicit(word, bit, memory_order_seq_cst);
}

void wf_shm_complete(struct wf_transport *t, wf_xfer_t *xfer, size_t length, int status)
{
    if (t->destroying)
        return;
    xfer->length = length;
    xfer->status = status;
    /* The status must be stored before done, which the caller polls. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    xfer->done = 1;
}

/*
 * Non-zero when the process pid no longer runs: it is gone, or a zombie that its parent has not
 * reaped yet. A pid reused by another process after the peer died looks alive, so the caller's
 * should_stop and the deadline remain the final limits.
 */
static int process_exited(int pid)
{
    if (kill(pid, 0) != 0)
        return errno == ESRCH;
    char path[64], text[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return 0;
    size_t length = fread(text, 1, sizeof(text) - 1, file);
    fclose(file);
    text[length] = '\0';
    /* proc(5): "pid (comm) state ...", and comm may itself contain ")". */
    const char *close = strrchr(text, ')');
    return close != NULL && (close[1] == ' ') && (close[2] == 'Z' || close[2] == 'X');
}

/* Hold a progress failure seen while a post waits, for progress() to return next. */
static void defer_error(struct wf_transport *t, int rc)
{
    if (t->deferred_error == 0)
        t->deferred_error = rc;
}

/*
 * One round of waiting for room in peer's ring: drain the inbound rings, and every 256 rounds ask
 * should_stop, check the peer's process and the deadline (set on the first call). Returns 0 to try
 * again, or a negative code to give up.
 */
static int wait_for_room(struct wf_transport *t, int peer, uint64_t *deadline, unsigned round, const char *what)
{
    uint64_t now = wf_xfer_now_ns();
    if (*deadline == 0) {
        *deadline = now + (uint64_t)WF_SHM_POST_TIMEOUT_SEC * 1000000000u;
        t->full_waits++;
    }
    t->post_depth++;
    int rc = wf_shm_poll(t);
    wf_shm_flush_dones(t);
    t->post_depth--;
    if (rc < 0)
        defer_error(t, rc);
    if ((round & 255u) != 255u) {
        if (round > 64)
            sched_yield(); /* the peer may need this core to drain its ring */
        return 0;
    }
    if (t->should_stop != NULL) {
        int stop = t->should_stop(t->callback_arg);
        uint64_t away = wf_xfer_now_ns() - now;
        if (away > 1000000u)
            *deadline += away; /* time spent in other work does not count against this post */
        if (stop) {
            wf_shm_set_error(t, "%s to rank %d was abandoned while waiting for room in its ring, because the "
                             "communicator failed meanwhile", what, peer);
            return -ECANCELED;
        }
    }
    if (process_exited(t->peers[peer].pid)) {
        wf_shm_set_error(t, "%s to rank %d failed: the process of rank %d (pid %d) exited", what, peer, peer,
                         t->peers[peer].pid);
        return -EPIPE;
    }
    if (wf_xfer_now_ns() > *deadline) {
        wf_shm_set_error(t, "%s to rank %d timed out: its ring stayed full for %d s; rank %d may have stopped "
                         "progressing", what, peer, WF_SHM_POST_TIMEOUT_SEC, peer);
        return -ETIMEDOUT;
    }
    return 0;
}

int wf_shm_push(struct wf_transport *t, int peer, const wf_shm_msg_t *msg, const void *payload, const char *what)
{
    wf_shm_ring_end_t *out = &t->peers[peer].out;
    uint64_t deadline = 0;
    for (unsigned round = 0;; round++) {
        int rc = wf_shm_ring_push(out, msg, sizeof(*msg), payload, msg->payload);
        if (rc == 0) {
            wf_shm_ring_doorbell(t, peer);
            return 0;
        }
        if (rc != -EAGAIN) {
            wf_shm_set_error(t, "%s to rank %d: a record of %zu bytes does not fit its ring of %llu bytes", what,
                             peer, sizeof(*msg) + msg->payload, (unsigned long long)out->capacity);
            return rc;
        }
        rc = wait_for_room(t, peer, &deadline, round, what);
        if (rc != 0)
            return rc;
    }
}

/* "from" for receives, "to" for sends and writes, so messages name the peer's role. */
static const char *toward(const char *operation)
{
    return strstr(operation, "receive") != NULL ? "from" : "to";
}

static int check_post(struct wf_transport *t, const char *operation, int peer, const void *buf, size_t length,
                      const wf_xfer_t *xfer)
{
    if (xfer == NULL) {
        wf_shm_set_error(t, "%s %s rank %d: xfer must not be NULL", operation, toward(operation), peer);
        return -EINVAL;
    }
    if (!t->connected) {
        wf_shm_set_error(t, "%s %s rank %d before connect(); call connect() first", operation, toward(operation), peer);
        return -ENOTCONN;
    }
    if (peer < 0 || peer >= t->nranks) {
        wf_shm_set_error(t, "%s: peer rank %d is outside the communicator of %d ranks", operation, peer, t->nranks);
        return -EINVAL;
    }
    if (length > WF_SHM_MAX_MESSAGE) {
        wf_shm_set_error(t, "%s of %zu bytes %s rank %d exceeds the maximum message size of %zu bytes; split it into "
                         "pieces of at most max_message_size() bytes", operation, length, toward(operation), peer,
                         WF_SHM_MAX_MESSAGE);
        return -EMSGSIZE;
    }
    if (buf == NULL && length > 0) {
        wf_shm_set_error(t, "%s of %zu bytes %s rank %d: buffer is NULL", operation, length, toward(operation), peer);
        return -EINVAL;
    }
    return 0;
}

static void reset_xfer(wf_xfer_t *xfer)
{
    xfer->done = 0;
    xfer->status = 0;
    xfer->length = 0;
}

/* Bytes of payload per record when a message or write goes through the ring in pieces. */
static size_t piece_bytes(const wf_shm_peer_t *peer)
{
    return (size_t)peer->capacity / 4 - sizeof(wf_shm_msg_t);
}

static int grow_rts(struct wf_transport *t)
{
    uint32_t capacity = t->rts_capacity > 0 ? 2 * t->rts_capacity : 64;
    wf_shm_rts_t *records = realloc(t->rts, capacity * sizeof(*records));
    if (records == NULL)
        return -ENOMEM;
    t->rts = records;
    uint32_t *free_slots = realloc(t->free_rts, capacity * sizeof(*free_slots));
    if (free_slots == NULL)
        return -ENOMEM;
    t->free_rts = free_slots;
    for (uint32_t slot = capacity; slot-- > t->rts_capacity;) {
        memset(&t->rts[slot], 0, sizeof(t->rts[slot]));
        t->free_rts[t->free_rts_count++] = slot;
    }
    t->rts_capacity = capacity;
    return 0;
}

/* Publish an RTS for a send the receiver pulls by CMA. The receiver's DONE completes xfer. */
static int send_rts(struct wf_transport *t, int peer, uint64_t tag, const void *buf, size_t length, wf_xfer_t *xfer)
{
    if (t->free_rts_count == 0 && grow_rts(t) != 0) {
        wf_shm_set_error(t, "tagged send of %zu bytes to rank %d: out of memory for the send record", length, peer);
        return -ENOMEM;
    }
    uint32_t slot = t->free_rts[--t->free_rts_count];
    wf_shm_rts_t *record = &t->rts[slot];
    record->xfer = xfer;
    record->peer = peer;
    record->length = length;
    record->tag = tag;
    record->in_use = 1;
    t->rts_in_flight++;
    wf_shm_msg_t msg = {.kind = WF_SHM_MSG_RTS, .tag = tag, .size = length, .address = (uint64_t)(uintptr_t)buf,
                        .cookie = ((uint64_t)record->generation << 32) | slot};
    int rc = wf_shm_push(t, peer, &msg, NULL, "tagged send");
    if (rc != 0) {
        /* The receiver never saw the RTS: the record is free again. The realloc may have moved it. */
        t->rts[slot].in_use = 0;
        t->rts[slot].generation++;
        t->free_rts[t->free_rts_count++] = slot;
        t->rts_in_flight--;
    }
    return rc;
}

/* Send a message through the ring in pieces, for peers that cannot pull it by CMA. */
static int send_pieces(struct wf_transport *t, int peer, uint64_t tag, const void *buf, size_t length)
{
    size_t piece = piece_bytes(&t->peers[peer]);
    for (size_t offset = 0; offset < length; offset += piece) {
        size_t n = length - offset < piece ? length - offset : piece;
        wf_shm_msg_t msg = {.kind = WF_SHM_MSG_FRAGMENT, .payload = (uint32_t)n, .tag = tag, .size = length,
                            .cookie = offset};
        int rc = wf_shm_push(t, peer, &msg, (const char *)buf + offset, "tagged send");
        if (rc != 0)
            return rc;
    }
    return 0;
}

int wf_shm_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                wf_xfer_t *xfer)
{
    int rc = check_post(t, "tagged send", peer, buf, length, xfer);
    if (rc != 0)
        return rc;
    reset_xfer(xfer);
    wf_shm_peer_t *target = &t->peers[peer];
    if (length <= target->inline_max) {
        wf_shm_msg_t msg = {.kind = WF_SHM_MSG_EAGER, .payload = (uint32_t)length, .tag = tag, .size = length};
        rc = wf_shm_push(t, peer, &msg, buf, "tagged send");
    } else if (atomic_load_explicit(&target->header->pullable[t->rank], memory_order_acquire) == WF_SHM_CMA_ALLOWED) {
        return send_rts(t, peer, tag, buf, length, xfer);
    } else {
        rc = send_pieces(t, peer, tag, buf, length);
    }
    if (rc == 0)
        wf_shm_complete(t, xfer, length, 0);
    return rc;
}

static wf_shm_recv_t *recv_acquire(struct wf_transport *t)
{
    wf_shm_recv_t *recv = t->free_recvs;
    if (recv != NULL)
        t->free_recvs = recv->next;
    else
        recv = malloc(sizeof(*recv));
    if (recv != NULL)
        memset(recv, 0, sizeof(*recv));
    return recv;
}

void wf_shm_recv_release(struct wf_transport *t, wf_shm_recv_t *recv)
{
    recv->next = t->free_recvs;
    t->free_recvs = recv;
}

/* Post a receive from peer (-1: any rank) unless an unexpected message completes it at once. */
static int post_recv(struct wf_transport *t, int peer, uint64_t tag, uint64_t ignore, void *buf, size_t length,
                     wf_xfer_t *xfer)
{
    reset_xfer(xfer);
    wf_shm_recv_t *recv = recv_acquire(t);
    if (recv == NULL) {
        wf_shm_set_error(t, "tagged receive of %zu bytes from rank %d: out of memory for the receive record", length,
                         peer);
        return -ENOMEM;
    }
    recv->xfer = xfer;
    recv->peer = peer;
    recv->tag = tag;
    recv->ignore = ignore;
    recv->buf = buf;
    recv->length = length;
    recv->order = t->next_order++;
    if (wf_shm_match_unexpected(t, recv))
        return 0;
    wf_shm_recv_t **head = peer >= 0 ? &t->peers[peer].posted : &t->posted_any;
    wf_shm_recv_t **tail = peer >= 0 ? &t->peers[peer].posted_tail : &t->posted_any_tail;
    if (*head == NULL)
        *head = recv;
    else
        (*tail)->next = recv;
    *tail = recv;
    return 0;
}

int wf_shm_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc, wf_xfer_t *xfer)
{
    int rc = check_post(t, "tagged receive", peer, buf, length, xfer);
    if (rc != 0)
        return rc;
    return post_recv(t, peer, tag, 0, buf, length, xfer);
}

int wf_shm_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                    wf_xfer_t *xfer)
{
    /* check_post expects a rank, so 0, which exists in every communicator, is "any" in its checks. */
    int rc = check_post(t, "tagged receive from any rank", 0, buf, length, xfer);
    if (rc != 0)
        return rc;
    return post_recv(t, -1, tag, ignore, buf, length, xfer);
}

/* Copy length bytes into the peer's memory at remote by process_vm_writev. */
static int cma_write(struct wf_transport *t, int peer, const void *local, uint64_t remote, size_t length)
{
    int pid = t->peers[peer].pid;
    size_t done = 0;
    while (done < length) {
        size_t n = length - done < t->cma_chunk ? length - done : t->cma_chunk;
        struct iovec from = {(char *)local + done, n};
        struct iovec to = {(void *)(uintptr_t)(remote + done), n};
        ssize_t written = process_vm_writev(pid, &from, 1, &to, 1, 0);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0) {
            int error = written < 0 ? errno : EFAULT;
            const char *hint = error == ESRCH  ? "; the process of that rank exited"
                               : error == EFAULT ? "; the target range is not mapped in that rank, so its region "
                                                   "was freed or the address is wrong"
                                                 : "";
            wf_shm_set_error(t, "write of %zu bytes to rank %d (pid %d) at 0x%llx failed in process_vm_writev after "
                             "%zu bytes: %s%s", length, peer, pid, (unsigned long long)remote, done,
                             strerror(error), hint);
            return -error;
        }
        done += (size_t)written;
    }
    t->cma_bytes += length;
    return 0;
}

/* Write through the ring: pieces of payload, the last of which raises the immediate. */
static int write_pieces(struct wf_transport *t, int peer, const void *buf, size_t length, uint64_t remote_addr,
                        uint64_t key, uint32_t immediate)
{
    size_t piece = piece_bytes(&t->peers[peer]);
    size_t offset = 0;
    do {
        size_t n = length - offset < piece ? length - offset : piece;
        wf_shm_msg_t msg = {.kind = WF_SHM_MSG_WRITE, .payload = (uint32_t)n, .tag = key, .size = length,
                            .address = remote_addr + offset, .immediate = immediate};
        if (offset + n == length)
            msg.flags = WF_SHM_FLAG_LAST;
        int rc = wf_shm_push(t, peer, &msg, (const char *)buf + offset, "write");
        if (rc != 0)
            return rc;
        offset += n;
    } while (offset < length);
    return 0;
}

/*
 * Write length bytes to remote_addr in the peer. The xfer is done when this returns 0: by then the
 * data is in the peer's memory (CMA) or in its ring, ahead of the record that raises the immediate.
 */
int wf_shm_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc, uint64_t remote_addr,
                 uint64_t key, uint32_t immediate, wf_xfer_t *xfer)
{
    int rc = check_post(t, "write", peer, buf, length, xfer);
    if (rc != 0)
        return rc;
    reset_xfer(xfer);
    wf_shm_peer_t *target = &t->peers[peer];
    if (length > target->write_inline_max && target->cma_writable) {
        rc = cma_write(t, peer, buf, remote_addr, length);
        if (rc == 0) {
            wf_shm_msg_t msg = {.kind = WF_SHM_MSG_WRITTEN, .tag = key, .size = length, .address = remote_addr,
                                .immediate = immediate};
            rc = wf_shm_push(t, peer, &msg, NULL, "write");
        }
    } else {
        rc = write_pieces(t, peer, buf, length, remote_addr, key, immediate);
    }
    if (rc == 0)
        wf_shm_complete(t, xfer, length, 0);
    return rc;
}
