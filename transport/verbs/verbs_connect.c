/*
 * Lazy RC connections for the verbs transport.
 *
 * Each rank has one UD QP, published as its address. The first post to a peer creates an RC QP
 * for it, posts its receive slots and sends a REQUEST with the QP number and first PSN to the
 * peer's UD QP. The peer creates its own QP for the pair if it has none and moves it to RTS with
 * those values. It then sends a REPLY with its own, which moves the first QP to RTS.
 * When both ranks start at once, each REQUEST finds the other side's QP already created and
 * connects it, so the pair still ends with one QP on each side. A lost datagram is covered by
 * repeating the REQUEST every WF_VERBS_CONNECT_RETRY_MS until the pair is connected; the collective's
 * own timeout ends a wait for a peer that never replies.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs.h"

#define UD_QKEY 0x77656674u /* "weft" */
#define UD_SLOT_BYTES (WF_VERBS_GRH + sizeof(wf_verbs_conn_msg_t))

static int modify(struct wf_transport *t, struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask, const char *state)
{
    int rc = ibv_modify_qp(qp, attr, mask);
    if (rc != 0)
        wf_verbs_set_error(t, "rank %d cannot move QP 0x%x on %s to %s: %s", t->rank, qp->qp_num, t->port.device,
                           state, strerror(rc));
    return rc == 0 ? 0 : -rc;
}

static int post_ud_recv(struct wf_transport *t, wf_verbs_ud_slot_t *slot)
{
    struct ibv_sge sge = {(uintptr_t)slot->data, (uint32_t)UD_SLOT_BYTES, t->ud_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = (uintptr_t)slot, .sg_list = &sge, .num_sge = 1}, *bad;
    return ibv_post_recv(t->ud_qp, &wr, &bad);
}

int wf_verbs_ud_open(struct wf_transport *t)
{
    struct ibv_qp_init_attr init = {.send_cq = t->cq,
                                    .recv_cq = t->cq,
                                    .qp_type = IBV_QPT_UD,
                                    .cap = {.max_send_wr = WF_VERBS_UD_SENDS,
                                            .max_recv_wr = WF_VERBS_UD_DEPTH,
                                            .max_send_sge = 1,
                                            .max_recv_sge = 1}};
    t->ud_qp = ibv_create_qp(t->pd, &init);
    size_t slots = WF_VERBS_UD_DEPTH + WF_VERBS_UD_SENDS;
    t->ud_memory = calloc(slots, UD_SLOT_BYTES);
    if (t->ud_qp == NULL || t->ud_memory == NULL) {
        wf_verbs_set_error(t, "cannot create the connection (UD) QP on %s: %s", t->port.device, strerror(errno));
        return -EIO;
    }
    t->ud_mr = ibv_reg_mr(t->pd, t->ud_memory, slots * UD_SLOT_BYTES, IBV_ACCESS_LOCAL_WRITE);
    if (t->ud_mr == NULL) {
        wf_verbs_set_error(t, "cannot register the connection buffers on %s: %s", t->port.device, strerror(errno));
        return -EIO;
    }
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = t->port.port, .qkey = UD_QKEY};
    int rc = modify(t, t->ud_qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_QKEY, "INIT");
    for (int i = 0; rc == 0 && i < WF_VERBS_UD_DEPTH; i++) {
        t->ud_slots[i].wr_kind = WF_VERBS_WR_UD_SLOT;
        t->ud_slots[i].data = t->ud_memory + (size_t)i * UD_SLOT_BYTES;
        rc = -post_ud_recv(t, &t->ud_slots[i]);
    }
    for (int i = 0; i < WF_VERBS_UD_SENDS; i++) {
        t->ud_send_slots[i].wr_kind = WF_VERBS_WR_UD_SEND;
        t->ud_send_slots[i].data = t->ud_memory + (size_t)(WF_VERBS_UD_DEPTH + i) * UD_SLOT_BYTES;
    }
    if (rc == 0) {
        attr = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTR};
        rc = modify(t, t->ud_qp, &attr, IBV_QP_STATE, "RTR");
    }
    if (rc == 0) {
        attr = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS, .sq_psn = 0};
        rc = modify(t, t->ud_qp, &attr, IBV_QP_STATE | IBV_QP_SQ_PSN, "RTS");
    }
    return rc;
}

void wf_verbs_ud_close(struct wf_transport *t)
{
    if (t->ud_qp != NULL)
        ibv_destroy_qp(t->ud_qp);
    if (t->ud_mr != NULL)
        ibv_dereg_mr(t->ud_mr);
    free(t->ud_memory);
    t->ud_qp = NULL;
    t->ud_mr = NULL;
    t->ud_memory = NULL;
}

/* Route to the peer's port: by GID on RoCE and routed fabrics, by LID inside an InfiniBand subnet. */
static void fill_ah_attr(const struct wf_transport *t, const wf_verbs_address_t *peer, struct ibv_ah_attr *ah)
{
    memset(ah, 0, sizeof(*ah));
    ah->dlid = peer->lid;
    ah->sl = (uint8_t)t->service_level;
    ah->port_num = t->port.port;
    if (t->port.is_global) {
        ah->is_global = 1;
        memcpy(ah->grh.dgid.raw, peer->gid, sizeof(peer->gid));
        ah->grh.sgid_index = (uint8_t)t->port.gid_index;
        ah->grh.hop_limit = 64;
        ah->grh.traffic_class = (uint8_t)t->traffic_class;
    }
}

/* Send a connection message to peer's UD QP; a full send ring drops it (the requester repeats). */
static void send_conn_message(struct wf_transport *t, int rank, int type)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (peer->ah == NULL) {
        struct ibv_ah_attr attr;
        fill_ah_attr(t, &peer->address, &attr);
        peer->ah = ibv_create_ah(t->pd, &attr);
        if (peer->ah == NULL) {
            WF_VERBS_WARN("rank %d cannot create an address handle for rank %d: %s", t->rank, rank, strerror(errno));
            return;
        }
    }
    int slot = 0;
    while (slot < WF_VERBS_UD_SENDS && t->ud_send_busy[slot])
        slot++;
    if (slot == WF_VERBS_UD_SENDS)
        return;
    wf_verbs_conn_msg_t *msg = (void *)t->ud_send_slots[slot].data;
    *msg = (wf_verbs_conn_msg_t){.magic = WF_VERBS_ADDRESS_MAGIC,
                                 .type = (uint16_t)type,
                                 .mtu = (uint16_t)t->port.mtu,
                                 .from_rank = (uint32_t)t->rank,
                                 .qpn = peer->qp->qp_num,
                                 .psn = peer->psn,
                                 .from_instance = t->instance,
                                 .to_instance = peer->address.instance};
    struct ibv_sge sge = {(uintptr_t)msg, sizeof(*msg), t->ud_mr->lkey};
    struct ibv_send_wr wr = {.wr_id = (uintptr_t)&t->ud_send_slots[slot],
                             .sg_list = &sge,
                             .num_sge = 1,
                             .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED,
                             .wr.ud = {.ah = peer->ah, .remote_qpn = peer->address.ud_qpn, .remote_qkey = UD_QKEY}};
    struct ibv_send_wr *bad;
    if (ibv_post_send(t->ud_qp, &wr, &bad) == 0)
        t->ud_send_busy[slot] = 1;
}

int wf_verbs_post_recv_slot(struct wf_transport *t, wf_verbs_recv_slot_t *slot)
{
    wf_verbs_peer_t *peer = &t->peers[slot->peer];
    struct ibv_sge sge = {(uintptr_t)slot->data, WF_VERBS_SLOT, peer->slot_mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = (uintptr_t)slot, .sg_list = &sge, .num_sge = 1}, *bad;
    int rc = ibv_post_recv(peer->qp, &wr, &bad);
    return rc == 0 ? 0 : -rc;
}

/* Grow the CQ before a new QP could overflow it. */
static int reserve_cq(struct wf_transport *t)
{
    long need = (long)(t->connected_peers + t->connecting_peers + 1) * (WF_VERBS_SEND_DEPTH + WF_VERBS_RECV_DEPTH) +
                2 * WF_VERBS_UD_DEPTH;
    if (need <= t->cq_size)
        return 0;
    long size = need * 2 < t->device_attr.max_cqe ? need * 2 : t->device_attr.max_cqe;
    if (size < need || ibv_resize_cq(t->cq, (int)size) != 0) {
        wf_verbs_set_error(t, "rank %d cannot grow its completion queue to %ld entries for %d connected peers (%s "
                           "allows %d)", t->rank, need, t->connected_peers + t->connecting_peers + 1, t->port.device,
                           t->device_attr.max_cqe);
        return -ENOSPC;
    }
    t->cq_size = (int)size;
    return 0;
}

/* Create the RC QP of rank in INIT with its receive slots posted. */
static int create_qp(struct wf_transport *t, int rank)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    int rc = reserve_cq(t);
    if (rc != 0)
        return rc;
    struct ibv_qp_init_attr init = {.send_cq = t->cq,
                                    .recv_cq = t->cq,
                                    .qp_type = IBV_QPT_RC,
                                    .cap = {.max_send_wr = WF_VERBS_SEND_DEPTH,
                                            .max_recv_wr = WF_VERBS_RECV_DEPTH,
                                            .max_send_sge = 1,
                                            .max_recv_sge = 1,
                                            .max_inline_data = 256}};
    peer->qp = ibv_create_qp(t->pd, &init);
    if (peer->qp == NULL) {
        init.cap.max_inline_data = 0; /* some devices have no inline sends */
        peer->qp = ibv_create_qp(t->pd, &init);
    }
    size_t bytes = (size_t)WF_VERBS_RECV_DEPTH * WF_VERBS_SLOT;
    peer->slots = calloc(WF_VERBS_RECV_DEPTH, sizeof(*peer->slots));
    if (peer->qp == NULL || peer->slots == NULL || posix_memalign((void **)&peer->slot_memory, 4096, bytes) != 0) {
        wf_verbs_set_error(t, "rank %d cannot create a QP for rank %d on %s: %s", t->rank, rank, t->port.device,
                           strerror(errno));
        return -EIO;
    }
    if (t->max_inline == 0 || init.cap.max_inline_data < t->max_inline)
        t->max_inline = init.cap.max_inline_data;
    peer->slot_mr = ibv_reg_mr(t->pd, peer->slot_memory, bytes, IBV_ACCESS_LOCAL_WRITE);
    if (peer->slot_mr == NULL) {
        wf_verbs_set_error(t, "rank %d cannot register receive slots for rank %d: %s; raise the memlock limit "
                           "(ulimit -l unlimited)", t->rank, rank, strerror(errno));
        return -EIO;
    }
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_INIT,
                               .pkey_index = 0,
                               .port_num = t->port.port,
                               .qp_access_flags =
                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ};
    rc = modify(t, peer->qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS, "INIT");
    for (int i = 0; rc == 0 && i < WF_VERBS_RECV_DEPTH; i++) {
        peer->slots[i] = (wf_verbs_recv_slot_t){WF_VERBS_WR_RECV_SLOT, rank, peer->slot_memory + (size_t)i * WF_VERBS_SLOT};
        rc = wf_verbs_post_recv_slot(t, &peer->slots[i]);
    }
    peer->psn = (uint32_t)(t->instance >> 8) & 0xffffff;
    return rc;
}

/* Move the QP of rank to RTR and RTS towards the peer's QP qpn starting at psn. */
static int connect_qp(struct wf_transport *t, int rank, const wf_verbs_conn_msg_t *msg)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    int rd_atomic = WF_VERBS_RD_ATOMIC;
    if (t->device_attr.max_qp_rd_atom < rd_atomic)
        rd_atomic = t->device_attr.max_qp_rd_atom;
    if (t->device_attr.max_qp_init_rd_atom < rd_atomic)
        rd_atomic = t->device_attr.max_qp_init_rd_atom;
    struct ibv_qp_attr attr = {.qp_state = IBV_QPS_RTR,
                               .path_mtu = msg->mtu < t->port.mtu ? (enum ibv_mtu)msg->mtu : t->port.mtu,
                               .dest_qp_num = msg->qpn,
                               .rq_psn = msg->psn,
                               .max_dest_rd_atomic = (uint8_t)rd_atomic,
                               .min_rnr_timer = 12};
    fill_ah_attr(t, &peer->address, &attr.ah_attr);
    enum ibv_mtu path_mtu = attr.path_mtu;
    int rc = modify(t, peer->qp, &attr,
                    IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                        IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER,
                    "RTR");
    if (rc != 0)
        return rc;
    attr = (struct ibv_qp_attr){.qp_state = IBV_QPS_RTS,
                                .timeout = (uint8_t)t->timeout,
                                .retry_cnt = (uint8_t)t->retry_count,
                                .rnr_retry = 7, /* receive slots are reposted as they are consumed */
                                .sq_psn = peer->psn,
                                .max_rd_atomic = (uint8_t)rd_atomic};
    rc = modify(t, peer->qp, &attr,
                IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                    IBV_QP_MAX_QP_RD_ATOMIC,
                "RTS");
    if (rc != 0)
        return rc;
    peer->max_reads = rd_atomic;
    peer->credits = WF_VERBS_RECV_DEPTH;
    WF_VERBS_TRACE("rank %d: connected to rank %d, QP 0x%x to 0x%x, MTU %d", t->rank, rank, peer->qp->qp_num,
                   msg->qpn, 128 << path_mtu);
    return 0;
}

int wf_verbs_connect_peer(struct wf_transport *t, int rank)
{
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (peer->state != WF_VERBS_PEER_IDLE)
        return 0;
    if (peer->address.magic != WF_VERBS_ADDRESS_MAGIC) {
        wf_verbs_set_error(t, "rank %d has no address for rank %d: it is not a peer of this transport", t->rank,
                           rank);
        return -EINVAL;
    }
    int rc = create_qp(t, rank);
    if (rc != 0) {
        snprintf(peer->failure, sizeof(peer->failure), "%s", t->error);
        peer->state = WF_VERBS_PEER_FAILED;
        return rc;
    }
    peer->state = WF_VERBS_PEER_CONNECTING;
    t->connecting_peers++;
    peer->last_request_ns = wf_xfer_now_ns();
    peer->requests = 1;
    send_conn_message(t, rank, WF_VERBS_CONN_REQUEST);
    return 0;
}

/* Handle a request or reply: connect the pair if needed, and reply to requests. */
static void handle_conn_message(struct wf_transport *t, const wf_verbs_conn_msg_t *msg)
{
    int rank = (int)msg->from_rank;
    if (msg->magic != WF_VERBS_ADDRESS_MAGIC || msg->to_instance != t->instance || rank < 0 || rank >= t->nranks)
        return;
    wf_verbs_peer_t *peer = &t->peers[rank];
    if (peer->address.magic != WF_VERBS_ADDRESS_MAGIC || peer->address.instance != msg->from_instance)
        return; /* connect() has not run yet, or the message is from another instance; the peer repeats it */
    if (peer->state == WF_VERBS_PEER_IDLE && wf_verbs_connect_peer(t, rank) != 0)
        return;
    if (peer->state == WF_VERBS_PEER_CONNECTING) {
        if (connect_qp(t, rank, msg) != 0) {
            wf_verbs_fail_peer(t, rank, -ECONNREFUSED, "%s", t->error);
            return;
        }
        peer->state = WF_VERBS_PEER_CONNECTED;
        t->connecting_peers--;
        t->connected_peers++;
        wf_verbs_flush_queue(t, rank);
    }
    if (msg->type == WF_VERBS_CONN_REQUEST && peer->state == WF_VERBS_PEER_CONNECTED)
        send_conn_message(t, rank, WF_VERBS_CONN_REPLY);
}

void wf_verbs_on_ud_message(struct wf_transport *t, wf_verbs_ud_slot_t *slot, size_t length)
{
    if (slot->wr_kind == WF_VERBS_WR_UD_SEND) {
        t->ud_send_busy[slot - t->ud_send_slots] = 0;
        return;
    }
    if (length >= UD_SLOT_BYTES && !t->destroying)
        handle_conn_message(t, (const wf_verbs_conn_msg_t *)(slot->data + WF_VERBS_GRH));
    if (!t->destroying)
        post_ud_recv(t, slot);
}

void wf_verbs_retry_connects(struct wf_transport *t, uint64_t now_ns)
{
    for (int r = 0; r < t->nranks && t->connecting_peers > 0; r++) {
        wf_verbs_peer_t *peer = &t->peers[r];
        if (peer->state != WF_VERBS_PEER_CONNECTING ||
            now_ns - peer->last_request_ns < WF_VERBS_CONNECT_RETRY_MS * 1000000ull)
            continue;
        peer->last_request_ns = now_ns;
        peer->requests++;
        send_conn_message(t, r, WF_VERBS_CONN_REQUEST);
    }
}

void wf_verbs_peer_close(struct wf_transport *t, wf_verbs_peer_t *peer)
{
    if (peer->qp != NULL)
        ibv_destroy_qp(peer->qp);
    if (peer->ah != NULL)
        ibv_destroy_ah(peer->ah);
    if (peer->slot_mr != NULL)
        ibv_dereg_mr(peer->slot_mr);
    free(peer->slot_memory);
    free(peer->slots);
    peer->qp = NULL;
    peer->ah = NULL;
    peer->slot_mr = NULL;
    peer->slot_memory = NULL;
    peer->slots = NULL;
    while (peer->queue != NULL) {
        wf_verbs_op_t *next = peer->queue->next;
        wf_verbs_op_release(t, peer->queue);
        peer->queue = next;
    }
}
