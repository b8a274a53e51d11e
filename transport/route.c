/*
 * The route transport: one transport instance made of two, chosen per peer.
 *
 * Peers on this rank's node are reached through the local part (shared memory), every other peer
 * through the remote part (the network). Both parts are created for the whole communicator, so
 * ranks keep their numbers. Each part gets the mask of the peers it serves and ignores the others.
 *
 * Registrations are made in both parts, and remote_address returns the address and key of the
 * part that reaches the writer. When a part needs local descriptors, the wf_mr_t's descriptor is the pair of registrations and each
 * post hands its part the matching one. A receive from any rank is posted in both parts into
 * bounce buffers: whichever completes first is copied to the caller, and the other stays posted
 * until destroy.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "transport.h"

enum { ROUTE_LOCAL = 0, ROUTE_REMOTE = 1, ROUTE_PARTS = 2 };

/* Receives from any rank in flight; the executor posts one (mismatch reports) per communicator. */
#define ROUTE_ANY_MAX 4

typedef struct {
    const wf_transport_ops_t *ops;
    wf_transport_t *t;
} route_part_t;

/* Both parts' registrations of one region; wf_mr_t.handle points here. */
typedef struct {
    wf_mr_t sub[ROUTE_PARTS];
} route_mr_t;

/* One receive from any rank, posted in both parts. */
typedef struct {
    wf_xfer_t *caller;          /* NULL once delivered or when the slot is free */
    void *buf;
    wf_xfer_t sub[ROUTE_PARTS]; /* the two posted receives */
    void *bounce[ROUTE_PARTS];
    wf_mr_t bounce_mr[ROUTE_PARTS]; /* registered only in parts that need descriptors */
    int in_use;
} route_any_t;

/* What a part's should_stop callback gets: the route and which part is waiting. */
typedef struct {
    struct wf_transport *route;
    int waiting;
} route_waiter_t;

struct wf_transport {
    int rank;
    int nranks;
    route_part_t part[ROUTE_PARTS];
    unsigned char *route;  /* ROUTE_LOCAL or ROUTE_REMOTE for every peer */
    unsigned char *served[ROUTE_PARTS]; /* peer masks handed to the parts */
    route_any_t any[ROUTE_ANY_MAX];
    int needs_desc; /* some part needs local descriptors (FI_MR_LOCAL) */
    route_waiter_t waiter[ROUTE_PARTS];
    /* the creator's callbacks and their argument; the parts get wrappers */
    wf_remote_write_fn on_remote_write;
    int (*should_stop)(void *arg);
    void *callback_arg;
    char provider[160];
    char error[768];
};

/* Header of the combined address: the two parts' address lengths, then both addresses. */
typedef struct {
    uint32_t length[ROUTE_PARTS];
} route_address_t;

static const char *part_error(wf_transport_t *t, int which)
{
    route_part_t *p = &t->part[which];
    snprintf(t->error, sizeof(t->error), "%s part (%s): %s", which == ROUTE_LOCAL ? "intra-node" : "inter-node",
             p->ops->provider_name(p->t), p->ops->error_string(p->t));
    return t->error;
}

/* Returns rc, after copying the failing part's error sentence when rc is negative. */
static int part_result(wf_transport_t *t, int which, int rc)
{
    if (rc < 0)
        part_error(t, which);
    return rc;
}

static void route_destroy(wf_transport_t *t)
{
    if (t == NULL)
        return;
    /* A bounce buffer's receive may still be posted: its part closes the registration in destroy. */
    for (int p = 0; p < ROUTE_PARTS; p++) {
        if (t->part[p].t != NULL)
            t->part[p].ops->destroy(t->part[p].t);
        free(t->served[p]);
    }
    for (int i = 0; i < ROUTE_ANY_MAX; i++)
        for (int p = 0; p < ROUTE_PARTS; p++)
            free(t->any[i].bounce[p]);
    free(t->route);
    free(t);
}

/* Split the peers by node: same node as this rank goes local, the rest remote. Itself goes local. */
static int build_routes(wf_transport_t *t, const int *node_of_rank)
{
    t->route = calloc((size_t)t->nranks, 1);
    for (int p = 0; p < ROUTE_PARTS; p++)
        t->served[p] = calloc((size_t)t->nranks, 1);
    if (t->route == NULL || t->served[0] == NULL || t->served[1] == NULL)
        return -ENOMEM;
    for (int r = 0; r < t->nranks; r++) {
        int which = node_of_rank[r] == node_of_rank[t->rank] ? ROUTE_LOCAL : ROUTE_REMOTE;
        t->route[r] = (unsigned char)which;
        t->served[which][r] = 1;
    }
    t->served[ROUTE_REMOTE][t->rank] = 1; /* a part always addresses its own rank */
    return 0;
}

/*
 * A part waits for queue space: keep the other part moving meanwhile. A peer may be blocked on
 * traffic of that other part, waiting for this rank to poll it, while this rank waits for that
 * peer to drain the first part's queue.
 */
static int part_should_stop(void *arg)
{
    route_waiter_t *waiter = arg;
    wf_transport_t *t = waiter->route;
    route_part_t *other = &t->part[1 - waiter->waiting];
    if (other->t != NULL && other->ops->progress(other->t) < 0)
        return 1;
    return t->should_stop != NULL ? t->should_stop(t->callback_arg) : 0;
}

static void part_on_remote_write(void *arg, uint32_t immediate)
{
    route_waiter_t *waiter = arg;
    waiter->route->on_remote_write(waiter->route->callback_arg, immediate);
}

int wf_route_create(const wf_transport_config_t *config, const wf_route_parts_t *parts, wf_transport_t **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (config->node_of_rank == NULL) {
        snprintf(err, errlen, "route transport: the node of every rank is needed and was not given");
        return -EINVAL;
    }
    wf_transport_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->rank = config->rank;
    t->nranks = config->nranks;
    t->on_remote_write = config->on_remote_write;
    t->should_stop = config->should_stop;
    t->callback_arg = config->callback_arg;
    int rc = build_routes(t, config->node_of_rank);
    for (int p = 0; rc == 0 && p < ROUTE_PARTS; p++) {
        wf_transport_config_t sub = *config;
        sub.peers = t->served[p];
        sub.progress_shared = 1; /* a part that slept in progress() would delay the other part's traffic */
        sub.single_node = p == ROUTE_LOCAL;
        sub.provider = parts->provider[p];
        t->waiter[p] = (route_waiter_t){t, p};
        sub.should_stop = part_should_stop;
        sub.on_remote_write = part_on_remote_write;
        sub.callback_arg = &t->waiter[p];
        t->part[p].ops = parts->ops[p];
        char sub_err[512] = "";
        rc = parts->ops[p]->create(&sub, &t->part[p].t, sub_err, sizeof(sub_err));
        if (rc != 0)
            snprintf(err, errlen, "route transport: the %s part could not open: %s",
                     p == ROUTE_LOCAL ? "intra-node" : "inter-node", sub_err);
    }
    if (rc == 0)
        t->needs_desc = t->part[ROUTE_LOCAL].ops->needs_local_mr(t->part[ROUTE_LOCAL].t) ||
                        t->part[ROUTE_REMOTE].ops->needs_local_mr(t->part[ROUTE_REMOTE].t);
    if (rc != 0) {
        route_destroy(t);
        return rc;
    }
    snprintf(t->provider, sizeof(t->provider), "%s inside nodes, %s between nodes",
             t->part[ROUTE_LOCAL].ops->provider_name(t->part[ROUTE_LOCAL].t),
             t->part[ROUTE_REMOTE].ops->provider_name(t->part[ROUTE_REMOTE].t));
    *out = t;
    return 0;
}

static int route_create(const wf_transport_config_t *config, wf_transport_t **out, char *err, size_t errlen)
{
    (void)config;
    *out = NULL;
    snprintf(err, errlen, "route transport: create it with wf_route_create, which names its two parts");
    return -EINVAL;
}

static int route_get_address(wf_transport_t *t, void *buf, size_t *length)
{
    route_address_t header;
    size_t capacity = *length, used = sizeof(header);
    unsigned char *out = buf;
    for (int p = 0; p < ROUTE_PARTS; p++) {
        size_t room = capacity > used ? capacity - used : 0;
        int rc = t->part[p].ops->get_address(t->part[p].t, out + used, &room);
        if (rc != 0)
            return part_result(t, p, rc);
        header.length[p] = (uint32_t)room;
        used += room;
    }
    memcpy(out, &header, sizeof(header));
    *length = used;
    return 0;
}

/* Give each part the addresses of every rank at its own stride; peers it does not serve get its own. */
static int route_connect(wf_transport_t *t, const void *addresses, size_t stride)
{
    const unsigned char *all = addresses;
    route_address_t own;
    memcpy(&own, all + (size_t)t->rank * stride, sizeof(own));
    for (int p = 0; p < ROUTE_PARTS; p++) {
        size_t sub_stride = stride;
        unsigned char *sub = calloc((size_t)t->nranks, sub_stride);
        if (sub == NULL)
            return -ENOMEM;
        for (int r = 0; r < t->nranks; r++) {
            route_address_t header;
            const unsigned char *entry = all + (size_t)r * stride;
            memcpy(&header, entry, sizeof(header));
            size_t offset = sizeof(header) + (p == ROUTE_LOCAL ? 0 : header.length[ROUTE_LOCAL]);
            if (offset + header.length[p] > stride) {
                free(sub);
                snprintf(t->error, sizeof(t->error), "connect: the address of rank %d is longer than %zu bytes", r,
                         stride);
                return -EINVAL;
            }
            memcpy(sub + (size_t)r * sub_stride, entry + offset, header.length[p]);
        }
        int rc = t->part[p].ops->connect(t->part[p].t, sub, sub_stride);
        free(sub);
        if (rc != 0)
            return part_result(t, p, rc);
    }
    return 0;
}

static int route_mr_register(wf_transport_t *t, void *ptr, size_t length, wf_mr_t *mr)
{
    route_mr_t *both = calloc(1, sizeof(*both));
    if (both == NULL)
        return -ENOMEM;
    for (int p = 0; p < ROUTE_PARTS; p++) {
        int rc = t->part[p].ops->mr_register(t->part[p].t, ptr, length, &both->sub[p]);
        if (rc != 0) {
            if (p == ROUTE_REMOTE)
                t->part[ROUTE_LOCAL].ops->mr_deregister(t->part[ROUTE_LOCAL].t, &both->sub[ROUTE_LOCAL]);
            free(both);
            return part_result(t, p, rc);
        }
    }
    *mr = both->sub[ROUTE_REMOTE];
    mr->handle = both;
    mr->desc = t->needs_desc ? both : NULL;
    return 0;
}

static int route_mr_deregister(wf_transport_t *t, wf_mr_t *mr)
{
    route_mr_t *both = mr->handle;
    int result = 0;
    for (int p = 0; p < ROUTE_PARTS; p++) {
        int rc = t->part[p].ops->mr_deregister(t->part[p].t, &both->sub[p]);
        if (rc != 0 && result == 0)
            result = part_result(t, p, rc);
    }
    free(both);
    mr->handle = NULL;
    return result;
}

static uint64_t route_remote_address(wf_transport_t *t, const wf_mr_t *mr, const void *ptr, int writer,
                                     uint64_t *key)
{
    const route_mr_t *both = mr->handle;
    int p = t->route[writer];
    return t->part[p].ops->remote_address(t->part[p].t, &both->sub[p], ptr, writer, key);
}

static int route_needs_local_mr(wf_transport_t *t)
{
    return t->needs_desc;
}

/* The caller's descriptor is a route_mr_t when a part needs descriptors, else NULL. */
static void *part_desc(int which, void *desc)
{
    return desc != NULL ? ((route_mr_t *)desc)->sub[which].desc : NULL;
}

static int route_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                      wf_xfer_t *xfer)
{
    int p = t->route[peer];
    return part_result(t, p, t->part[p].ops->send(t->part[p].t, peer, tag, buf, length, part_desc(p, desc), xfer));
}

static int route_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                      wf_xfer_t *xfer)
{
    int p = t->route[peer];
    return part_result(t, p, t->part[p].ops->recv(t->part[p].t, peer, tag, buf, length, part_desc(p, desc), xfer));
}

static int route_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc,
                       uint64_t remote_addr, uint64_t key, uint32_t immediate, wf_xfer_t *xfer)
{
    int p = t->route[peer];
    return part_result(t, p,
                       t->part[p].ops->write(t->part[p].t, peer, buf, length, part_desc(p, desc), remote_addr, key,
                                             immediate, xfer));
}

static int route_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                      uint64_t key, wf_xfer_t *xfer)
{
    int p = t->route[peer];
    if (t->part[p].ops->read == NULL) {
        snprintf(t->error, sizeof(t->error), "RDMA read from rank %d: the %s part (%s) cannot read", peer,
                 p == ROUTE_LOCAL ? "intra-node" : "inter-node", t->part[p].ops->provider_name(t->part[p].t));
        return -ENOTSUP;
    }
    return part_result(t, p,
                       t->part[p].ops->read(t->part[p].t, peer, buf, length, part_desc(p, desc), remote_addr, key,
                                            xfer));
}

static int route_can_read(wf_transport_t *t)
{
    for (int p = 0; p < ROUTE_PARTS; p++) {
        route_part_t *part = &t->part[p];
        if (part->ops->read == NULL || part->ops->can_read == NULL || !part->ops->can_read(part->t))
            return 0;
    }
    return 1;
}

static int route_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                          wf_xfer_t *xfer)
{
    (void)desc;
    route_any_t *any = NULL;
    for (int i = 0; i < ROUTE_ANY_MAX && any == NULL; i++)
        if (!t->any[i].in_use)
            any = &t->any[i];
    if (any == NULL) {
        snprintf(t->error, sizeof(t->error), "receive from any rank: more than %d are posted", ROUTE_ANY_MAX);
        return -ENOSPC;
    }
    any->in_use = 1; /* from here on, destroy releases the slot's buffers */
    for (int p = 0; p < ROUTE_PARTS; p++) {
        route_part_t *part = &t->part[p];
        any->bounce[p] = calloc(1, length > 0 ? length : 1);
        if (any->bounce[p] == NULL)
            return -ENOMEM;
        if (part->ops->needs_local_mr(part->t)) {
            int rc = part->ops->mr_register(part->t, any->bounce[p], length > 0 ? length : 1, &any->bounce_mr[p]);
            if (rc != 0)
                return part_result(t, p, rc);
        }
        int rc = part->ops->recv_any(part->t, tag, ignore, any->bounce[p], length, any->bounce_mr[p].desc,
                                     &any->sub[p]);
        if (rc != 0)
            return part_result(t, p, rc);
    }
    any->caller = xfer;
    any->buf = buf;
    return 0;
}

/* Hand the first completed half of each receive from any rank to its caller. */
static void deliver_any(wf_transport_t *t)
{
    for (int i = 0; i < ROUTE_ANY_MAX; i++) {
        route_any_t *any = &t->any[i];
        if (any->caller == NULL)
            continue;
        for (int p = 0; p < ROUTE_PARTS; p++) {
            if (!any->sub[p].done)
                continue;
            any->caller->status = any->sub[p].status;
            any->caller->length = any->sub[p].length;
            if (any->sub[p].status == 0)
                memcpy(any->buf, any->bounce[p], any->sub[p].length);
            any->caller->done = 1;
            any->caller = NULL;
            break;
        }
    }
}

static int route_progress(wf_transport_t *t)
{
    int handled = 0;
    for (int p = 0; p < ROUTE_PARTS; p++) {
        int rc = t->part[p].ops->progress(t->part[p].t);
        if (rc < 0)
            return part_result(t, p, rc);
        handled += rc;
    }
    deliver_any(t);
    return handled;
}

static const char *route_error_string(wf_transport_t *t)
{
    /* A failed completion sets only its part's error, so name the part that has one. */
    if (t->error[0] == '\0') {
        for (int p = ROUTE_REMOTE; p >= ROUTE_LOCAL; p--) {
            const char *part = t->part[p].ops->error_string(t->part[p].t);
            if (part != NULL && part[0] != '\0')
                return part_error(t, p);
        }
    }
    return t->error;
}

static const char *route_provider_name(wf_transport_t *t)
{
    return t->provider;
}

static size_t route_max_message_size(wf_transport_t *t)
{
    size_t local = t->part[ROUTE_LOCAL].ops->max_message_size(t->part[ROUTE_LOCAL].t);
    size_t remote = t->part[ROUTE_REMOTE].ops->max_message_size(t->part[ROUTE_REMOTE].t);
    return local < remote ? local : remote;
}

static void route_drain(wf_transport_t *t, int milliseconds)
{
    for (int p = 0; p < ROUTE_PARTS; p++)
        t->part[p].ops->drain(t->part[p].t, milliseconds);
}

const wf_transport_ops_t wf_route_transport = {
    .name = "route",
    .create = route_create,
    .get_address = route_get_address,
    .connect = route_connect,
    .mr_register = route_mr_register,
    .mr_deregister = route_mr_deregister,
    .remote_address = route_remote_address,
    .needs_local_mr = route_needs_local_mr,
    .send = route_send,
    .recv = route_recv,
    .recv_any = route_recv_any,
    .write = route_write,
    .read = route_read,
    .can_read = route_can_read,
    .progress = route_progress,
    .error_string = route_error_string,
    .provider_name = route_provider_name,
    .max_message_size = route_max_message_size,
    .drain = route_drain,
    .destroy = route_destroy,
};
