/*
 * The verbs transport instance: opening the device, the address it publishes, registration, drain
 * and destroy. See verbs.h for the protocol.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "param.h"
#include "verbs.h"

static uint64_t random_instance(void)
{
    uint64_t value = 0;
    if (getrandom(&value, sizeof(value), GRND_NONBLOCK) != (ssize_t)sizeof(value))
        value = wf_xfer_now_ns() ^ ((uint64_t)getpid() << 32);
    return value | 1; /* never 0, which marks an unknown instance */
}

/* The registered send slots every peer shares. */
static int open_send_slots(struct wf_transport *t)
{
    size_t bytes = (size_t)WF_VERBS_SEND_SLOTS * WF_VERBS_SLOT;
    if (posix_memalign((void **)&t->send_slots, 4096, bytes) != 0) {
        t->send_slots = NULL;
        return -ENOMEM;
    }
    t->send_slot_mr = ibv_reg_mr(t->pd, t->send_slots, bytes, IBV_ACCESS_LOCAL_WRITE);
    if (t->send_slot_mr == NULL)
        return -errno;
    for (int i = 0; i < WF_VERBS_SEND_SLOTS; i++)
        t->free_slots[i] = WF_VERBS_SEND_SLOTS - 1 - i;
    t->free_slot_count = WF_VERBS_SEND_SLOTS;
    return 0;
}

static void read_parameters(struct wf_transport *t)
{
    t->timeout = (int)wf_param_int(WF_PARAM_IB_TIMEOUT);
    t->retry_count = (int)wf_param_int(WF_PARAM_IB_RETRY_CNT);
    t->traffic_class = (int)wf_param_int(WF_PARAM_IB_TC);
    t->service_level = (int)wf_param_int(WF_PARAM_IB_SL);
    t->wr_max = WF_VERBS_WR_MAX;
    t->spin_ns = WF_VERBS_SPIN_US * 1000ull;
}

/* Protection domain, completion channel, CQ, send slots and the UD QP; message in err on failure. */
static int open_resources(struct wf_transport *t, char *err, size_t errlen)
{
    if (ibv_query_device(t->context, &t->device_attr) != 0) {
        wf_xfer_format(err, errlen, "cannot query %s: %s", t->port.device, strerror(errno));
        return -EIO;
    }
    t->pd = ibv_alloc_pd(t->context);
    t->channel = t->pd != NULL ? ibv_create_comp_channel(t->context) : NULL;
    if (t->channel == NULL) {
        wf_xfer_format(err, errlen, "cannot allocate a protection domain and completion channel on %s: %s",
                       t->port.device, strerror(errno));
        return -EIO;
    }
    int served = 0;
    for (int r = 0; r < t->nranks; r++)
        served += wf_verbs_serves(t, r);
    long want = (long)(served < 16 ? served : 16) * (WF_VERBS_SEND_DEPTH + WF_VERBS_RECV_DEPTH) + 2 * WF_VERBS_UD_DEPTH;
    t->cq_size = (int)(want < t->device_attr.max_cqe ? want : t->device_attr.max_cqe);
    t->cq = ibv_create_cq(t->context, t->cq_size, NULL, t->channel, 0);
    if (t->cq == NULL) {
        wf_xfer_format(err, errlen, "cannot create a completion queue of %d entries on %s (max_cqe %d): %s",
                       t->cq_size, t->port.device, t->device_attr.max_cqe, strerror(errno));
        return -EIO;
    }
    int rc = open_send_slots(t);
    if (rc != 0) {
        wf_xfer_format(err, errlen, "cannot register %d send slots on %s: %s; raise the memlock limit "
                       "(ulimit -l unlimited)", WF_VERBS_SEND_SLOTS, t->port.device, strerror(-rc));
        return rc;
    }
    rc = wf_verbs_ud_open(t);
    if (rc != 0)
        wf_xfer_format(err, errlen, "%s", t->error);
    return rc;
}

static void destroy_instance(struct wf_transport *t);

static int verbs_create(const wf_transport_config_t *config, wf_transport_t **out, char *err, size_t errlen)
{
    struct wf_transport *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->rank = config->rank;
    t->nranks = config->nranks;
    t->on_remote_write = config->on_remote_write;
    t->should_stop = config->should_stop;
    t->callback_arg = config->callback_arg;
    t->instance = random_instance();
    t->may_sleep = !config->progress_shared;
    read_parameters(t);
    t->peers = calloc((size_t)config->nranks, sizeof(*t->peers));
    if (config->peers != NULL && (t->served = malloc((size_t)config->nranks)) != NULL)
        memcpy(t->served, config->peers, (size_t)config->nranks);
    if (t->peers == NULL || (config->peers != NULL && t->served == NULL)) {
        destroy_instance(t);
        return -ENOMEM;
    }
    int rc = wf_verbs_choose_port(config->rail, config->rail_port, &t->port, &t->context, err, errlen);
    if (rc == 0)
        rc = open_resources(t, err, errlen);
    if (rc != 0) {
        destroy_instance(t);
        return rc;
    }
    WF_VERBS_INFO("rank %d: %s port %u, %s, MTU %d, %s", t->rank, t->port.device, t->port.port, t->port.why,
                  128 << t->port.mtu,
                  config->rail != NULL && config->rail[0] ? "the rail the topology chose" : "the first active port");
    *out = t;
    return 0;
}

static int verbs_get_address(wf_transport_t *t, void *buf, size_t *length)
{
    wf_verbs_address_t address = {.magic = WF_VERBS_ADDRESS_MAGIC,
                                  .rank = (uint32_t)t->rank,
                                  .instance = t->instance,
                                  .lid = t->port.lid,
                                  .port = t->port.port,
                                  .is_global = (uint8_t)t->port.is_global,
                                  .ud_qpn = t->ud_qp->qp_num,
                                  .mtu = (uint32_t)t->port.mtu};
    memcpy(address.gid, t->port.gid.raw, sizeof(address.gid));
    if (*length < sizeof(address))
        return -ENOBUFS;
    memcpy(buf, &address, sizeof(address));
    *length = sizeof(address);
    return 0;
}

static int verbs_connect(wf_transport_t *t, const void *addresses, size_t stride)
{
    for (int r = 0; r < t->nranks; r++) {
        if (!wf_verbs_serves(t, r) && r != t->rank)
            continue;
        const wf_verbs_address_t *address = (const void *)((const char *)addresses + (size_t)r * stride);
        if (address->magic != WF_VERBS_ADDRESS_MAGIC || address->rank != (uint32_t)r) {
            wf_verbs_set_error(t, "rank %d published no verbs address (magic 0x%x): the ranks chose different "
                               "transports; set the same WEFT_TRANSPORT on every rank", r, address->magic);
            return -EINVAL;
        }
        if (address->is_global != t->port.is_global) {
            wf_verbs_set_error(t, "rank %d uses %s addressing and rank %d %s: the ranks are on different kinds of "
                               "fabric; set WEFT_IB_HCA so that every rank uses the same one", r,
                               address->is_global ? "GID" : "LID", t->rank, t->port.is_global ? "GID" : "LID");
            return -EINVAL;
        }
        t->peers[r].address = *address;
    }
    return 0;
}

static int verbs_mr_register(wf_transport_t *t, void *ptr, size_t length, wf_mr_t *mr)
{
    if (ptr == NULL || length == 0) {
        wf_verbs_set_error(t, "rank %d: cannot register %zu bytes at %p: the region is empty", t->rank, length, ptr);
        return -EINVAL;
    }
    wf_verbs_mr_t *region = calloc(1, sizeof(*region));
    if (region == NULL)
        return -ENOMEM;
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    region->mr = ibv_reg_mr(t->pd, ptr, length, access);
    if (region->mr == NULL) {
        int code = errno != 0 ? errno : EIO;
        wf_verbs_set_error(t, "rank %d cannot register %zu bytes at %p on %s: %s%s", t->rank, length, ptr,
                           t->port.device, strerror(code),
                           code == ENOMEM ? "; raise the memlock limit (ulimit -l unlimited)" : "");
        free(region);
        return -code;
    }
    region->next = t->regions;
    if (t->regions != NULL)
        t->regions->prev = region;
    t->regions = region;
    mr->desc = region;
    mr->key = region->mr->rkey;
    mr->base = (uintptr_t)ptr;
    mr->length = length;
    mr->handle = region;
    return 0;
}

static int verbs_mr_deregister(wf_transport_t *t, wf_mr_t *mr)
{
    wf_verbs_mr_t *region = mr->handle;
    if (region == NULL)
        return 0;
    if (region->prev != NULL)
        region->prev->next = region->next;
    else
        t->regions = region->next;
    if (region->next != NULL)
        region->next->prev = region->prev;
    int rc = ibv_dereg_mr(region->mr);
    free(region);
    mr->handle = NULL;
    mr->desc = NULL;
    return rc == 0 ? 0 : -rc;
}

static uint64_t verbs_remote_address(wf_transport_t *t, const wf_mr_t *mr, const void *ptr, int writer,
                                     uint64_t *key)
{
    *key = mr->key;
    return (uint64_t)(uintptr_t)ptr;
}

static int verbs_needs_local_mr(wf_transport_t *t)
{
    return 1;
}

static int verbs_can_read(wf_transport_t *t)
{
    return 1;
}

static const char *verbs_error_string(wf_transport_t *t)
{
    return t->error;
}

static const char *verbs_provider_name(wf_transport_t *t)
{
    return WF_VERBS_PROVIDER_NAME;
}

static size_t verbs_max_message_size(wf_transport_t *t)
{
    return WF_VERBS_MAX_MESSAGE;
}

/* Forget receives and unexpected messages without touching their xfers. */
static void drop_queues(struct wf_transport *t, wf_verbs_peer_t *peer)
{
    while (peer->posted != NULL) {
        wf_verbs_recv_t *next = peer->posted->next;
        free(peer->posted);
        peer->posted = next;
    }
    while (peer->unexpected != NULL) {
        wf_verbs_unexpected_t *next = peer->unexpected->next;
        free(peer->unexpected->data);
        free(peer->unexpected);
        peer->unexpected = next;
    }
    peer->posted_tail = NULL;
    peer->unexpected_tail = NULL;
}

static void verbs_drain(wf_transport_t *t, int milliseconds)
{
    t->destroying = 1;
    for (int r = 0; r < t->nranks; r++) {
        wf_verbs_peer_t *peer = &t->peers[r];
        if (peer->qp != NULL) {
            struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};
            ibv_modify_qp(peer->qp, &attr, IBV_QP_STATE); /* flushes every posted work request */
        }
    }
    uint64_t start = wf_xfer_now_ns(), quiet_since = start;
    uint64_t now = start;
    while (now - start < (uint64_t)milliseconds * 1000000 && now - quiet_since < WF_VERBS_QUIET_MS * 1000000ull) {
        if (wf_verbs_poll(t) > 0)
            quiet_since = wf_xfer_now_ns();
        else
            usleep(200);
        now = wf_xfer_now_ns();
    }
}

static void destroy_instance(struct wf_transport *t)
{
    for (int r = 0; t->peers != NULL && r < t->nranks; r++) {
        wf_verbs_peer_close(t, &t->peers[r]);
        drop_queues(t, &t->peers[r]);
    }
    while (t->posted_any != NULL) {
        wf_verbs_recv_t *next = t->posted_any->next;
        free(t->posted_any);
        t->posted_any = next;
    }
    wf_verbs_ud_close(t);
    /* The route transport leaves its bounce buffers' registrations to this point, after the flush above. */
    if (t->regions != NULL)
        WF_VERBS_TRACE("rank %d: releasing the registrations still open at destroy", t->rank);
    while (t->regions != NULL) {
        wf_verbs_mr_t *next = t->regions->next;
        ibv_dereg_mr(t->regions->mr);
        free(t->regions);
        t->regions = next;
    }
    if (t->send_slot_mr != NULL)
        ibv_dereg_mr(t->send_slot_mr);
    free(t->send_slots);
    if (t->cq != NULL)
        ibv_destroy_cq(t->cq);
    if (t->channel != NULL)
        ibv_destroy_comp_channel(t->channel);
    if (t->pd != NULL)
        ibv_dealloc_pd(t->pd);
    if (t->context != NULL)
        ibv_close_device(t->context);
    for (size_t b = 0; b < t->op_block_count; b++) {
        for (size_t i = 0; i < WF_VERBS_OP_BLOCK; i++)
            if (t->op_blocks[b][i].temporary != NULL)
                ibv_dereg_mr(t->op_blocks[b][i].temporary);
        free(t->op_blocks[b]);
    }
    free(t->op_blocks);
    free(t->peers);
    free(t->served);
    free(t);
}

static void verbs_destroy(wf_transport_t *t)
{
    if (!t->destroying)
        verbs_drain(t, 0);
    destroy_instance(t);
}

const wf_transport_ops_t wf_verbs_transport = {
    .name = "verbs",
    .create = verbs_create,
    .get_address = verbs_get_address,
    .connect = verbs_connect,
    .mr_register = verbs_mr_register,
    .mr_deregister = verbs_mr_deregister,
    .remote_address = verbs_remote_address,
    .needs_local_mr = verbs_needs_local_mr,
    .send = wf_verbs_send,
    .recv = wf_verbs_recv,
    .recv_any = wf_verbs_recv_any,
    .write = wf_verbs_write,
    .read = wf_verbs_read,
    .can_read = verbs_can_read,
    .progress = wf_verbs_progress,
    .error_string = verbs_error_string,
    .provider_name = verbs_provider_name,
    .max_message_size = verbs_max_message_size,
    .drain = verbs_drain,
    .destroy = verbs_destroy,
};
