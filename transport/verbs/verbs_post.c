/*
 * Posts of the verbs transport: the operation pool, the work requests themselves, and the per-peer
 * queue of posts that wait for the connection, for credits or for send-queue room.
 *
 * A message or write spends one of the peer's receive slots. A sender keeps the last credit for a
 * CREDIT message, so two ranks that both ran out can always tell each other about freed slots.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

const char *wf_verbs_op_name(wf_verbs_op_kind_t kind)
{
    switch (kind) {
    case WF_VERBS_OP_SEND:
        return "send";
    case WF_VERBS_OP_WRITE:
        return "RDMA write";
    case WF_VERBS_OP_READ:
        return "RDMA read";
    case WF_VERBS_OP_RTS_READ:
        return "RDMA read of a large message";
    case WF_VERBS_OP_CONTROL:
        return "control message";
    }
    return "operation";
}

wf_verbs_op_t *wf_verbs_op_get(struct wf_transport *t)
{
    if (t->free_ops == NULL) {
        wf_verbs_op_t **blocks = realloc(t->op_blocks, (t->op_block_count + 1) * sizeof(*blocks));
        if (blocks == NULL)
            return NULL;
        t->op_blocks = blocks;
        wf_verbs_op_t *block = calloc(WF_VERBS_OP_BLOCK, sizeof(*block));
        if (block == NULL)
            return NULL;
        for (size_t i = WF_VERBS_OP_BLOCK; i-- > 0;) {
            block[i].index = (uint32_t)(t->op_block_count * WF_VERBS_OP_BLOCK + i);
            block[i].next = t->free_ops;
            t->free_ops = &block[i];
        }
        t->op_blocks[t->op_block_count++] = block;
    }
    wf_verbs_op_t *op = t->free_ops;
    t->free_ops = op->next;
    uint32_t index = op->index, generation = op->generation;
    memset(op, 0, sizeof(*op));
    op->index = index;
    op->generation = generation;
    op->wr_kind = WF_VERBS_WR_OP;
    op->slot = -1;
    op->in_use = 1;
    t->ops_in_use++;
    return op;
}

void wf_verbs_op_release(struct wf_transport *t, wf_verbs_op_t *op)
{
    if (op->temporary != NULL)
        ibv_dereg_mr(op->temporary);
    op->temporary = NULL;
    if (op->slot >= 0)
        t->free_slots[t->free_slot_count++] = op->slot;
    op->slot = -1;
    op->in_use = 0;
    op->generation++;
    op->next = t->free_ops;
    t->free_ops = op;
    t->ops_in_use--;
}

static uint64_t cookie_of(const wf_verbs_op_t *op)
{
    return ((uint64_t)op->generation << 32) | op->index;
}

wf_verbs_op_t *wf_verbs_op_of_cookie(struct wf_transport *t, uint64_t cookie)
{
    uint32_t index = (uint32_t)cookie;
    if (index / WF_VERBS_OP_BLOCK >= t->op_block_count)
        return NULL;
    wf_verbs_op_t *op = &t->op_blocks[index / WF_VERBS_OP_BLOCK][index % WF_VERBS_OP_BLOCK];
    return op->in_use && op->generation == (uint32_t)(cookie >> 32) ? op : NULL;
}

void wf_verbs_complete(struct wf_transport *t, wf_xfer_t *xfer, size_t length, int status)
{
    if (xfer == NULL || t->destroying)
        return;
    xfer->length = length;
    xfer->status = status;
    __atomic_store_n(&xfer->done, 1, __ATOMIC_RELEASE);
}

void wf_verbs_fail_peer(struct wf_transport *t, int rank, int status, const char *format, ...)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (peer->state != WF_VERBS_PEER_FAILED) {
        va_list args;
        va_start(args, format);
        vsnprintf(peer->failure, sizeof(peer->failure), format, args);
        va_end(args);
        wf_verbs_set_error(t, "%s", peer->failure);
        if (peer->state == WF_VERBS_PEER_CONNECTING)
            t->connecting_peers--;
        else if (peer->state == WF_VERBS_PEER_CONNECTED)
            t->connected_peers--;
        peer->state = WF_VERBS_PEER_FAILED;
        if (!t->destroying)
            WF_VERBS_WARN("%s", peer->failure);
    }
    while (peer->queue != NULL) {
        wf_verbs_op_t *op = peer->queue;
        peer->queue = op->next;
        if (op->pieces_outstanding > 0) {
            op->status = status; /* partly posted: the flushed completions of its pieces finish it */
            continue;
        }
        wf_verbs_complete(t, op->xfer, 0, status);
        wf_verbs_op_release(t, op);
    }
    peer->queue_tail = NULL;
}

/* Header of a message to peer, returning the credits it owes. */
static wf_verbs_msg_t message_header(wf_verbs_peer_t *peer, wf_verbs_kind_t kind)
{
    wf_verbs_msg_t msg = {.kind = (uint8_t)kind, .credits = (uint16_t)peer->owed};
    peer->owed = 0;
    return msg;
}

/* Post one SEND of header msg plus payload (may be NULL). */
static int post_message(struct wf_transport *t, int rank, wf_verbs_op_t *op, const wf_verbs_msg_t *msg,
                        const void *payload, size_t payload_length)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    size_t total = sizeof(*msg) + payload_length;
    struct ibv_sge sge;
    struct ibv_send_wr wr = {.wr_id = (uintptr_t)op, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED};
    unsigned char inline_buffer[512];
    if (total <= t->max_inline && total <= sizeof(inline_buffer)) {
        memcpy(inline_buffer, msg, sizeof(*msg));
        if (payload_length > 0)
            memcpy(inline_buffer + sizeof(*msg), payload, payload_length);
        sge = (struct ibv_sge){(uintptr_t)inline_buffer, (uint32_t)total, 0};
        wr.send_flags |= IBV_SEND_INLINE;
    } else {
        op->slot = t->free_slots[--t->free_slot_count];
        unsigned char *slot = t->send_slots + (size_t)op->slot * WF_VERBS_SLOT;
        memcpy(slot, msg, sizeof(*msg));
        if (payload_length > 0)
            memcpy(slot + sizeof(*msg), payload, payload_length);
        sge = (struct ibv_sge){(uintptr_t)slot, (uint32_t)total, t->send_slot_mr->lkey};
    }
    struct ibv_send_wr *bad;
    return ibv_post_send(peer->qp, &wr, &bad);
}

/* Post op: its message, or the next piece of its RDMA write or read. */
static int post_op(struct wf_transport *t, int rank, wf_verbs_op_t *op)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (op->kind == WF_VERBS_OP_SEND) {
        wf_verbs_msg_t msg = message_header(peer, op->rendezvous ? WF_VERBS_MSG_RTS : WF_VERBS_MSG_EAGER);
        msg.tag = op->tag;
        if (!op->rendezvous) {
            msg.payload = (uint32_t)op->length;
            return post_message(t, rank, op, &msg, op->buf, op->length);
        }
        msg.size = op->length;
        msg.address = (uintptr_t)op->buf;
        msg.key = op->rkey;
        msg.cookie = cookie_of(op);
        return post_message(t, rank, op, &msg, NULL, 0);
    }
    if (op->kind == WF_VERBS_OP_CONTROL) {
        wf_verbs_msg_t msg = message_header(peer, (wf_verbs_kind_t)op->tag);
        msg.cookie = op->cookie;
        msg.status = (int32_t)op->immediate;
        return post_message(t, rank, op, &msg, NULL, 0);
    }
    /* Writes and reads go out in pieces of at most t->wr_max bytes; only a write's last piece carries the immediate. */
    size_t piece = op->length - op->posted < t->wr_max ? op->length - op->posted : t->wr_max;
    int last = op->posted + piece == op->length;
    struct ibv_sge sge = {(uintptr_t)op->buf + op->posted, (uint32_t)piece, op->lkey};
    struct ibv_send_wr wr = {.wr_id = (uintptr_t)op, .sg_list = &sge, .num_sge = piece > 0,
                             .send_flags = IBV_SEND_SIGNALED,
                             .wr.rdma = {.remote_addr = op->remote_addr + op->posted, .rkey = op->rkey}};
    if (op->kind == WF_VERBS_OP_WRITE && last) {
        wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr.imm_data = htonl(op->immediate);
    } else if (op->kind == WF_VERBS_OP_WRITE) {
        wr.opcode = IBV_WR_RDMA_WRITE;
    } else {
        wr.opcode = IBV_WR_RDMA_READ;
    }
    struct ibv_send_wr *bad;
    int rc = ibv_post_send(peer->qp, &wr, &bad);
    if (rc == 0)
        op->posted += piece;
    return rc;
}

/* Whether every piece of op is posted (messages and control messages are one piece). */
static int fully_posted(const wf_verbs_op_t *op)
{
    if (op->kind == WF_VERBS_OP_SEND || op->kind == WF_VERBS_OP_CONTROL)
        return 1;
    return op->posted == op->length;
}

/* Whether op can be posted now: send-queue room, a credit when it spends one, a slot when it needs one. */
static int has_room(const struct wf_transport *t, const wf_verbs_peer_t *peer, const wf_verbs_op_t *op)
{
    if (peer->send_outstanding >= WF_VERBS_SEND_DEPTH)
        return 0;
    if (op->kind == WF_VERBS_OP_READ || op->kind == WF_VERBS_OP_RTS_READ)
        return peer->reads_outstanding < peer->max_reads;
    int reserve = op->kind == WF_VERBS_OP_CONTROL && op->tag == WF_VERBS_MSG_CREDIT ? 0 : 1;
    if (peer->credits <= reserve)
        return 0;
    if (op->kind == WF_VERBS_OP_WRITE)
        return 1; /* the credit is checked for every piece, though only the last one spends it */
    size_t payload = op->kind == WF_VERBS_OP_SEND && !op->rendezvous ? op->length : 0;
    return sizeof(wf_verbs_msg_t) + payload <= t->max_inline || t->free_slot_count > 0;
}

int wf_verbs_flush_queue(struct wf_transport *t, int rank)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (peer->state != WF_VERBS_PEER_CONNECTED)
        return 0;
    while (peer->queue != NULL && has_room(t, peer, peer->queue)) {
        wf_verbs_op_t *op = peer->queue;
        int rc = post_op(t, rank, op);
        if (rc != 0) {
            wf_verbs_fail_peer(t, rank, -EIO, "rank %d cannot post a %s of %zu bytes to rank %d on QP 0x%x: %s",
                               t->rank, wf_verbs_op_name(op->kind), op->length, rank, peer->qp->qp_num, strerror(rc));
            return -EIO;
        }
        op->pieces_outstanding++;
        peer->send_outstanding++;
        if (op->kind == WF_VERBS_OP_READ || op->kind == WF_VERBS_OP_RTS_READ)
            peer->reads_outstanding++;
        else if (fully_posted(op))
            peer->credits--;
        if (!fully_posted(op))
            continue;
        peer->queue = op->next;
        if (peer->queue == NULL)
            peer->queue_tail = NULL;
    }
    return 0;
}

int wf_verbs_submit(struct wf_transport *t, int rank, wf_verbs_op_t *op)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    op->peer = rank;
    op->next = NULL;
    int rc = peer->state == WF_VERBS_PEER_IDLE ? wf_verbs_connect_peer(t, rank) : 0;
    if (rc != 0 || peer->state == WF_VERBS_PEER_FAILED) {
        wf_verbs_set_error(t, "rank %d cannot reach rank %d: %s", t->rank, rank, peer->failure);
        wf_verbs_op_release(t, op);
        return rc != 0 ? rc : -ECONNRESET;
    }
    if (peer->queue_tail != NULL)
        peer->queue_tail->next = op;
    else
        peer->queue = op;
    peer->queue_tail = op;
    /* A failed post fails the peer, which completes every queued xfer, this one included, with the error. */
    wf_verbs_flush_queue(t, rank);
    return 0;
}

int wf_verbs_send_control(struct wf_transport *t, int rank, wf_verbs_kind_t kind, uint64_t cookie, int status)
{
    wf_verbs_op_t *op = wf_verbs_op_get(t);
    if (op == NULL)
        return -ENOMEM;
    op->kind = WF_VERBS_OP_CONTROL;
    op->tag = kind;
    op->cookie = cookie;
    op->immediate = (uint32_t)status;
    if (kind == WF_VERBS_MSG_CREDIT) {
        /* Credits go out ahead of the queue, which may be waiting for exactly these. */
        wf_verbs_peer_t *peer = &t->peers[rank];
        op->peer = rank;
        if (peer->state != WF_VERBS_PEER_CONNECTED || !has_room(t, peer, op) || post_op(t, rank, op) != 0) {
            wf_verbs_op_release(t, op);
            return -EAGAIN;
        }
        op->pieces_outstanding++;
        peer->send_outstanding++;
        peer->credits--;
        return 0;
    }
    return wf_verbs_submit(t, rank, op);
}

/* Local key for buf: the caller's registration, or a temporary one kept with op. */
static int local_key(struct wf_transport *t, wf_verbs_op_t *op, void *buf, size_t length, void *desc, int access)
{
    if (desc != NULL) {
        op->lkey = ((wf_verbs_mr_t *)desc)->mr->lkey;
        op->rkey = ((wf_verbs_mr_t *)desc)->mr->rkey;
        return 0;
    }
    op->temporary = ibv_reg_mr(t->pd, buf, length, access);
    if (op->temporary == NULL) {
        wf_verbs_set_error(t, "rank %d cannot register %zu bytes at %p for a %s: %s", t->rank, length, buf,
                           wf_verbs_op_name(op->kind), strerror(errno));
        return -errno;
    }
    op->lkey = op->temporary->lkey;
    op->rkey = op->temporary->rkey;
    return 0;
}

/* Validate the arguments every post shares; 0 or a negative code with the reason stored. */
static int check_post(struct wf_transport *t, int peer, size_t length, const wf_xfer_t *xfer, const char *what)
{
    if (peer < 0 || peer >= t->nranks || (!wf_verbs_serves(t, peer) && peer != t->rank)) {
        wf_verbs_set_error(t, "rank %d: %s to peer rank %d, which this verbs transport does not serve (%d ranks)",
                           t->rank, what, peer, t->nranks);
        return -EINVAL;
    }
    if (xfer == NULL) {
        wf_verbs_set_error(t, "rank %d: %s to rank %d without a transfer record (xfer is NULL)", t->rank, what, peer);
        return -EINVAL;
    }
    if (length > WF_VERBS_MAX_MESSAGE) {
        wf_verbs_set_error(t, "rank %d: %s of %zu bytes to rank %d exceeds the maximum message size of %zu bytes; "
                           "split it", t->rank, what, length, peer, WF_VERBS_MAX_MESSAGE);
        return -EMSGSIZE;
    }
    return 0;
}

/* Validate a post and take an operation for it. Returns NULL with the code in *rc when it cannot be posted. */
static wf_verbs_op_t *start_op(struct wf_transport *t, int peer, wf_verbs_op_kind_t kind, const void *buf,
                               size_t length, wf_xfer_t *xfer, int *rc)
{
    *rc = check_post(t, peer, length, xfer, wf_verbs_op_name(kind));
    if (*rc != 0)
        return NULL;
    wf_verbs_op_t *op = wf_verbs_op_get(t);
    if (op == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    xfer->done = 0;
    op->kind = kind;
    op->xfer = xfer;
    op->buf = buf;
    op->length = length;
    return op;
}

/* Submit the RDMA write or read op at remote_addr of the peer's region key. */
static int submit_rdma(struct wf_transport *t, int peer, wf_verbs_op_t *op, void *desc, uint64_t remote_addr,
                       uint64_t key)
{
    int rc = op->length > 0 ? local_key(t, op, (void *)op->buf, op->length, desc, IBV_ACCESS_LOCAL_WRITE) : 0;
    if (rc != 0) {
        wf_verbs_op_release(t, op);
        return rc;
    }
    op->remote_addr = remote_addr;
    op->rkey = (uint32_t)key; /* the peer's key, in place of the local region's that local_key stored */
    return wf_verbs_submit(t, peer, op);
}

int wf_verbs_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                  wf_xfer_t *xfer)
{
    int rc;
    wf_verbs_op_t *op = start_op(t, peer, WF_VERBS_OP_SEND, buf, length, xfer, &rc);
    if (op == NULL)
        return rc;
    op->tag = tag;
    if (length > WF_VERBS_EAGER_MAX) {
        op->rendezvous = 1;
        op->events_left = 2;
        rc = local_key(t, op, (void *)buf, length, desc, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ);
        if (rc != 0) {
            wf_verbs_op_release(t, op);
            return rc;
        }
    }
    return wf_verbs_submit(t, peer, op);
}

int wf_verbs_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc, uint64_t remote_addr,
                   uint64_t key, uint32_t immediate, wf_xfer_t *xfer)
{
    int rc;
    wf_verbs_op_t *op = start_op(t, peer, WF_VERBS_OP_WRITE, buf, length, xfer, &rc);
    if (op == NULL)
        return rc;
    op->immediate = immediate;
    return submit_rdma(t, peer, op, desc, remote_addr, key);
}

int wf_verbs_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                  uint64_t key, wf_xfer_t *xfer)
{
    int rc;
    wf_verbs_op_t *op = start_op(t, peer, WF_VERBS_OP_READ, buf, length, xfer, &rc);
    if (op == NULL)
        return rc;
    return submit_rdma(t, peer, op, desc, remote_addr, key);
}

static wf_verbs_recv_t *new_recv(struct wf_transport *t, int peer, uint64_t tag, uint64_t ignore, void *buf,
                                 size_t length, void *desc, wf_xfer_t *xfer)
{
    wf_verbs_recv_t *recv = calloc(1, sizeof(*recv));
    if (recv == NULL)
        return NULL;
    *recv = (wf_verbs_recv_t){.xfer = xfer, .peer = peer, .tag = tag, .ignore = ignore, .buf = buf,
                              .length = length, .lkey = desc != NULL ? ((wf_verbs_mr_t *)desc)->mr->lkey : 0,
                              .order = t->next_order++};
    xfer->done = 0;
    return recv;
}

static void append_recv(wf_verbs_recv_t **head, wf_verbs_recv_t **tail, wf_verbs_recv_t *recv)
{
    if (*tail != NULL)
        (*tail)->next = recv;
    else
        *head = recv;
    *tail = recv;
}

int wf_verbs_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc, wf_xfer_t *xfer)
{
    int rc = check_post(t, peer, 0, xfer, "receive");
    if (rc != 0)
        return rc;
    wf_verbs_recv_t *recv = new_recv(t, peer, tag, 0, buf, length, desc, xfer);
    if (recv == NULL)
        return -ENOMEM;
    if (wf_verbs_match_unexpected(t, recv))
        return 0;
    append_recv(&t->peers[peer].posted, &t->peers[peer].posted_tail, recv);
    /* Connect now, so the peer's first message finds the pair ready. */
    if (t->peers[peer].state == WF_VERBS_PEER_IDLE)
        wf_verbs_connect_peer(t, peer);
    return 0;
}

int wf_verbs_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                      wf_xfer_t *xfer)
{
    if (xfer == NULL) {
        wf_verbs_set_error(t, "rank %d: receive from any rank without a transfer record (xfer is NULL)", t->rank);
        return -EINVAL;
    }
    wf_verbs_recv_t *recv = new_recv(t, -1, tag, ignore, buf, length, desc, xfer);
    if (recv == NULL)
        return -ENOMEM;
    if (wf_verbs_match_unexpected(t, recv))
        return 0;
    append_recv(&t->posted_any, &t->posted_any_tail, recv);
    return 0;
}
