/*
 * Completion handling for the verbs transport: one CQ for the UD connection QP and every RC QP.
 *
 * A receive slot's completion is a message (matched against the posted receives in post order,
 * or kept as unexpected) or the immediate of a write into a local region. Either way the slot is
 * reposted at once and owed back to the sender as a credit. progress() polls without sleeping
 * while completions keep coming, then sleeps on the completion channel for a millisecond at most.
 * Inside the route transport it never sleeps, because the shm part's messages would wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

#define CQ_BATCH 16

/* Earliest posted receive matching a message from rank with tag, from the peer's or the any-rank list. */
static wf_verbs_recv_t *take_match(struct wf_transport *t, int rank, uint64_t tag)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    wf_verbs_recv_t **mine = &peer->posted, *mine_prev = NULL;
    while (*mine != NULL && (*mine)->tag != tag) {
        mine_prev = *mine;
        mine = &(*mine)->next;
    }
    wf_verbs_recv_t **any = &t->posted_any, *any_prev = NULL;
    while (*any != NULL && (((*any)->tag ^ tag) & ~(*any)->ignore) != 0) {
        any_prev = *any;
        any = &(*any)->next;
    }
    if (*mine == NULL && *any == NULL)
        return NULL;
    int use_any = *mine == NULL || (*any != NULL && (*any)->order < (*mine)->order);
    wf_verbs_recv_t **link = use_any ? any : mine;
    wf_verbs_recv_t *recv = *link;
    *link = recv->next;
    if (use_any && t->posted_any_tail == recv)
        t->posted_any_tail = any_prev;
    if (!use_any && peer->posted_tail == recv)
        peer->posted_tail = mine_prev;
    return recv;
}

void wf_verbs_deliver(struct wf_transport *t, int rank, wf_verbs_recv_t *recv, const wf_verbs_msg_t *msg,
                      const void *payload)
{
    size_t size = msg->kind == WF_VERBS_MSG_EAGER ? msg->payload : msg->size;
    if (size > recv->length) {
        wf_verbs_set_error(t, "rank %d: a message of %zu bytes from rank %d (tag 0x%llx) was truncated: the receive "
                           "has room for %zu bytes", t->rank, size, rank, (unsigned long long)msg->tag, recv->length);
        if (msg->kind == WF_VERBS_MSG_RTS)
            wf_verbs_send_control(t, rank, WF_VERBS_MSG_FIN, msg->cookie, -EMSGSIZE);
        wf_verbs_complete(t, recv->xfer, 0, -EMSGSIZE);
        free(recv);
        return;
    }
    if (msg->kind == WF_VERBS_MSG_EAGER) {
        if (size > 0)
            memcpy(recv->buf, payload, size);
        wf_verbs_complete(t, recv->xfer, size, 0);
        free(recv);
        return;
    }
    wf_verbs_op_t *op = wf_verbs_op_get(t);
    if (op == NULL) {
        wf_verbs_send_control(t, rank, WF_VERBS_MSG_FIN, msg->cookie, -ENOMEM);
        wf_verbs_complete(t, recv->xfer, 0, -ENOMEM);
        free(recv);
        return;
    }
    op->kind = WF_VERBS_OP_RTS_READ;
    op->xfer = recv->xfer;
    op->buf = recv->buf;
    op->length = size;
    op->lkey = recv->lkey;
    op->remote_addr = msg->address;
    op->cookie = msg->cookie;
    op->rkey = msg->key;
    if (op->lkey == 0) {
        op->temporary = ibv_reg_mr(t->pd, recv->buf, size, IBV_ACCESS_LOCAL_WRITE);
        op->lkey = op->temporary != NULL ? op->temporary->lkey : 0;
    }
    free(recv);
    if (op->lkey == 0) {
        wf_verbs_send_control(t, rank, WF_VERBS_MSG_FIN, msg->cookie, -ENOMEM);
        wf_verbs_complete(t, op->xfer, 0, -ENOMEM);
        wf_verbs_op_release(t, op);
        return;
    }
    wf_verbs_submit(t, rank, op);
}

int wf_verbs_match_unexpected(struct wf_transport *t, wf_verbs_recv_t *recv)
{
    wf_verbs_unexpected_t *best = NULL, *best_prev = NULL;
    int best_rank = -1;
    for (int r = recv->peer >= 0 ? recv->peer : 0; r < t->nranks && (recv->peer < 0 || r == recv->peer); r++) {
        wf_verbs_unexpected_t *prev = NULL;
        for (wf_verbs_unexpected_t *e = t->peers[r].unexpected; e != NULL; prev = e, e = e->next) {
            if (((e->msg.tag ^ recv->tag) & ~recv->ignore) != 0)
                continue;
            if (best == NULL || e->order < best->order) {
                best = e;
                best_prev = prev;
                best_rank = r;
            }
            break; /* later entries of this peer arrived later */
        }
    }
    if (best == NULL)
        return 0;
    wf_verbs_peer_t *peer = &t->peers[best_rank];
    if (best_prev != NULL)
        best_prev->next = best->next;
    else
        peer->unexpected = best->next;
    if (peer->unexpected_tail == best)
        peer->unexpected_tail = best_prev;
    wf_verbs_deliver(t, best_rank, recv, &best->msg, best->data);
    free(best->data);
    free(best);
    return 1;
}

static void keep_unexpected(struct wf_transport *t, int rank, const wf_verbs_msg_t *msg, const void *payload)
{
    wf_verbs_unexpected_t *e = calloc(1, sizeof(*e));
    if (e != NULL && msg->kind == WF_VERBS_MSG_EAGER && msg->payload > 0) {
        e->data = malloc(msg->payload);
        if (e->data == NULL) {
            free(e);
            e = NULL;
        } else {
            memcpy(e->data, payload, msg->payload);
        }
    }
    if (e == NULL) {
        wf_verbs_fail_peer(t, rank, -ENOMEM, "rank %d is out of memory for a message from rank %d", t->rank, rank);
        return;
    }
    e->msg = *msg;
    e->order = t->next_order++;
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (peer->unexpected_tail != NULL)
        peer->unexpected_tail->next = e;
    else
        peer->unexpected = e;
    peer->unexpected_tail = e;
}

/* A FIN for one of this rank's rendezvous sends. */
static void finish_rendezvous(struct wf_transport *t, wf_verbs_op_t *op, int status)
{
    if (op->fin_status == 0)
        op->fin_status = status;
    if (--op->events_left > 0)
        return;
    wf_verbs_complete(t, op->xfer, op->fin_status == 0 ? op->length : 0, op->fin_status);
    wf_verbs_op_release(t, op);
}

static void handle_message(struct wf_transport *t, int rank, const wf_verbs_msg_t *msg, size_t length)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    peer->credits += msg->credits;
    if (msg->kind == WF_VERBS_MSG_FIN) {
        wf_verbs_op_t *op = wf_verbs_op_of_cookie(t, msg->cookie);
        if (op != NULL && op->rendezvous)
            finish_rendezvous(t, op, msg->status);
        return;
    }
    if (msg->kind != WF_VERBS_MSG_EAGER && msg->kind != WF_VERBS_MSG_RTS)
        return;
    if (msg->kind == WF_VERBS_MSG_EAGER && sizeof(*msg) + msg->payload > length) {
        wf_verbs_fail_peer(t, rank, -EPROTO, "rank %d got a malformed message from rank %d (%zu bytes for a %u-byte "
                           "payload)", t->rank, rank, length, msg->payload);
        return;
    }
    wf_verbs_recv_t *recv = take_match(t, rank, msg->tag);
    if (recv != NULL)
        wf_verbs_deliver(t, rank, recv, msg, msg + 1);
    else
        keep_unexpected(t, rank, msg, msg + 1);
}

static int wc_errno(enum ibv_wc_status status)
{
    switch (status) {
    case IBV_WC_WR_FLUSH_ERR:
        return -ECANCELED;
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
        return -ECONNRESET;
    case IBV_WC_LOC_LEN_ERR:
    case IBV_WC_REM_INV_REQ_ERR:
        return -EMSGSIZE;
    case IBV_WC_REM_ACCESS_ERR:
    case IBV_WC_LOC_PROT_ERR:
        return -EACCES;
    default:
        return -EIO;
    }
}

/* A failed work request: fail the peer, naming the status, the peer, the QP and the operation ("RDMA write to"). */
static void on_failed_wc(struct wf_transport *t, const struct ibv_wc *wc, int rank, const char *what)
{
    int status = wc_errno(wc->status);
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (wc->status == IBV_WC_WR_FLUSH_ERR) {
        WF_VERBS_TRACE("rank %d: %s rank %d flushed (QP 0x%x in error)", t->rank, what, rank, wc->qp_num);
        if (peer->state != WF_VERBS_PEER_FAILED)
            wf_verbs_fail_peer(t, rank, status, "rank %d: the QP 0x%x to rank %d went into the error state", t->rank,
                               wc->qp_num, rank);
        return;
    }
    wf_verbs_fail_peer(t, rank, status,
                       "rank %d: %s rank %d failed on QP 0x%x: %s (verbs status %d, vendor error 0x%x)%s", t->rank,
                       what, rank, wc->qp_num, ibv_wc_status_str(wc->status), wc->status, wc->vendor_err,
                       status == -ECONNRESET ? "; the peer died or the network path is down" : "");
}

static void on_op_done(struct wf_transport *t, const struct ibv_wc *wc, wf_verbs_op_t *op)
{
    wf_verbs_peer_t *peer = &t->peers[op->peer];
    peer->send_outstanding--;
    if (op->kind == WF_VERBS_OP_READ || op->kind == WF_VERBS_OP_RTS_READ)
        peer->reads_outstanding--;
    op->pieces_outstanding--;
    if (wc->status != IBV_WC_SUCCESS) {
        if (op->status == 0)
            op->status = wc_errno(wc->status);
        char what[64];
        snprintf(what, sizeof(what), "%s to", wf_verbs_op_name(op->kind));
        on_failed_wc(t, wc, op->peer, what);
    }
    /* A write or read in pieces is done when its last piece is (RC completes in order). */
    if (op->pieces_outstanding > 0 || (op->kind != WF_VERBS_OP_SEND && op->kind != WF_VERBS_OP_CONTROL &&
                                       op->posted < op->length && op->status == 0)) {
        if (!t->destroying)
            wf_verbs_flush_queue(t, op->peer);
        return;
    }
    int status = op->status;
    if (op->kind == WF_VERBS_OP_RTS_READ && !t->destroying)
        wf_verbs_send_control(t, op->peer, WF_VERBS_MSG_FIN, op->cookie, status);
    if (op->rendezvous) {
        if (op->slot >= 0) {
            t->free_slots[t->free_slot_count++] = op->slot;
            op->slot = -1;
        }
        finish_rendezvous(t, op, status);
    } else {
        wf_verbs_complete(t, op->xfer, status == 0 ? op->length : 0, status);
        wf_verbs_op_release(t, op);
    }
    if (!t->destroying)
        wf_verbs_flush_queue(t, (int)(peer - t->peers));
}

static void on_slot_done(struct wf_transport *t, const struct ibv_wc *wc, wf_verbs_recv_slot_t *slot)
{
    int rank = slot->peer;
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (wc->status != IBV_WC_SUCCESS) {
        on_failed_wc(t, wc, rank, "receive from");
        return;
    }
    if (t->destroying)
        return;
    if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        if (t->on_remote_write != NULL)
            t->on_remote_write(t->callback_arg, ntohl(wc->imm_data));
    } else if (wc->byte_len >= sizeof(wf_verbs_msg_t)) {
        handle_message(t, rank, (const wf_verbs_msg_t *)slot->data, wc->byte_len);
    }
    if (peer->qp == NULL || peer->state == WF_VERBS_PEER_FAILED)
        return;
    if (wf_verbs_post_recv_slot(t, slot) == 0)
        peer->owed++;
    if (peer->owed >= WF_VERBS_RECV_DEPTH / 2)
        wf_verbs_send_control(t, rank, WF_VERBS_MSG_CREDIT, 0, 0);
    wf_verbs_flush_queue(t, rank);
}

int wf_verbs_poll(struct wf_transport *t)
{
    struct ibv_wc wcs[CQ_BATCH];
    int n = ibv_poll_cq(t->cq, CQ_BATCH, wcs);
    if (n < 0) {
        wf_verbs_set_error(t, "rank %d cannot poll the completion queue of %s", t->rank, t->port.device);
        return -EIO;
    }
    for (int i = 0; i < n; i++) {
        wf_verbs_wr_kind_t *kind = (void *)(uintptr_t)wcs[i].wr_id;
        if (*kind == WF_VERBS_WR_OP)
            on_op_done(t, &wcs[i], (wf_verbs_op_t *)kind);
        else if (*kind == WF_VERBS_WR_RECV_SLOT)
            on_slot_done(t, &wcs[i], (wf_verbs_recv_slot_t *)kind);
        else
            wf_verbs_on_ud_message(t, (wf_verbs_ud_slot_t *)kind, wcs[i].status == IBV_WC_SUCCESS ? wcs[i].byte_len : 0);
    }
    return n;
}

/* Sleep on the completion channel until a completion arrives or WF_VERBS_SLEEP_MS passes. */
static void sleep_on_channel(struct wf_transport *t)
{
    if (!t->cq_armed) {
        if (ibv_req_notify_cq(t->cq, 0) != 0)
            return;
        t->cq_armed = 1;
        return; /* poll once more before sleeping: a completion may have come before arming */
    }
    struct pollfd fd = {.fd = t->channel->fd, .events = POLLIN};
    if (poll(&fd, 1, WF_VERBS_SLEEP_MS) <= 0)
        return;
    struct ibv_cq *cq;
    void *context;
    if (ibv_get_cq_event(t->channel, &cq, &context) == 0) {
        ibv_ack_cq_events(cq, 1);
        t->cq_armed = 0;
    }
}

int wf_verbs_progress(wf_transport_t *t)
{
    int n = wf_verbs_poll(t);
    uint64_t now = wf_xfer_now_ns();
    if (t->connecting_peers > 0)
        wf_verbs_retry_connects(t, now);
    if (n != 0) {
        t->last_event_ns = now;
        return n;
    }
    if (t->may_sleep && now - t->last_event_ns > t->spin_ns)
        sleep_on_channel(t);
    return 0;
}
