/*
 * The shm transport instance: creation, addresses, connection, memory registration, draining and
 * teardown. Posting is in shm_post.c, the inbound side in shm_progress.c.
 *
 * Registration pins nothing: CMA resolves the pages at each transfer. A region only records its
 * bounds, so that a write naming an address outside every registered region is reported instead
 * of corrupting memory. Its key contains the slot in the region table and a generation count.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shm.h"

static int instance_logged;

static int validate_config(const wf_transport_config_t *config, wf_transport_t **out, char *err, size_t errlen)
{
    if (config == NULL || out == NULL) {
        wf_xfer_format(err, errlen, "shm transport create: config and out must not be NULL");
        return -EINVAL;
    }
    if (config->nranks < 1 || config->rank < 0 || config->rank >= config->nranks) {
        wf_xfer_format(err, errlen, "shm transport create: rank %d is outside a communicator of %d ranks; "
                       "expected 0 <= rank < nranks", config->rank, config->nranks);
        return -EINVAL;
    }
    if (config->nranks > WF_SHM_MAX_RANKS) {
        wf_xfer_format(err, errlen, "the shm transport serves at most %d ranks, and this communicator has %d; set "
                       "WEFT_TRANSPORT=ofi", WF_SHM_MAX_RANKS, config->nranks);
        return -E2BIG;
    }
    return 0;
}

static void shm_destroy(wf_transport_t *t);

static int shm_create(const wf_transport_config_t *config, wf_transport_t **out, char *err, size_t errlen)
{
    int rc = validate_config(config, out, err, errlen);
    if (rc != 0)
        return rc;
    *out = NULL;
    wf_transport_t *t = calloc(1, sizeof(*t));
    if (t != NULL)
        t->peers = calloc((size_t)config->nranks, sizeof(*t->peers));
    if (t == NULL || t->peers == NULL) {
        free(t);
        wf_xfer_format(err, errlen, "shm transport create: out of memory for %d peers", config->nranks);
        return -ENOMEM;
    }
    t->rank = config->rank;
    t->nranks = config->nranks;
    t->on_remote_write = config->on_remote_write;
    t->should_stop = config->should_stop;
    t->callback_arg = config->callback_arg;
    t->cma_allowed = !config->shm_cma_disabled;
    t->served_count = config->nranks;
    if (config->peers != NULL) {
        t->served = malloc((size_t)config->nranks);
        if (t->served == NULL) {
            shm_destroy(t);
            wf_xfer_format(err, errlen, "shm transport create: out of memory for %d peers", config->nranks);
            return -ENOMEM;
        }
        memcpy(t->served, config->peers, (size_t)config->nranks);
        t->served_count = 0;
        for (int r = 0; r < config->nranks; r++)
            t->served_count += t->served[r] != 0 || r == config->rank;
    }
    t->cma_chunk = WF_SHM_CMA_CHUNK;
    if (t->served_count <= WF_SHM_POLL_RINGS_MAX) {
        t->polled = malloc((size_t)t->served_count * sizeof(*t->polled));
        if (t->polled == NULL) {
            shm_destroy(t);
            wf_xfer_format(err, errlen, "shm transport create: out of memory for %d peers", config->nranks);
            return -ENOMEM;
        }
        for (int r = 0; r < t->nranks; r++)
            if (wf_shm_serves(t, r))
                t->polled[t->polled_count++] = r;
    }

    rc = wf_shm_segment_create(t, err, errlen);
    if (rc != 0) {
        shm_destroy(t);
        return rc;
    }
    int first = __atomic_exchange_n(&instance_logged, 1, __ATOMIC_RELAXED) == 0;
    size_t quarter = (size_t)t->capacity / 4 - sizeof(wf_shm_msg_t);
    if (first)
        WF_SHM_INFO("rank %d of %d: segment %s of %zu KiB, inbound rings of %llu KiB, messages above %zu bytes %s",
                    t->rank, t->nranks, t->name, t->segment_bytes >> 10, (unsigned long long)(t->capacity >> 10),
                    WF_SHM_INLINE_MAX < quarter ? WF_SHM_INLINE_MAX : quarter,
                    t->cma_allowed ? "by cross-memory attach where allowed"
                                   : "through the rings, because WEFT_SHM_CMA=off");
    *out = t;
    return 0;
}

static int shm_get_address(wf_transport_t *t, void *buf, size_t *length)
{
    if (buf == NULL || length == NULL) {
        wf_shm_set_error(t, "get_address: buf and length must not be NULL");
        return -EINVAL;
    }
    if (*length < sizeof(wf_shm_address_t)) {
        wf_shm_set_error(t, "get_address: the address of the shm transport needs %zu bytes but the buffer holds %zu",
                         sizeof(wf_shm_address_t), *length);
        *length = sizeof(wf_shm_address_t);
        return -ENOSPC;
    }
    wf_shm_address_t address;
    memset(&address, 0, sizeof(address));
    address.magic = WF_SHM_ADDRESS_MAGIC;
    address.nranks = (uint32_t)t->nranks;
    address.pid = t->segment->pid;
    address.rank = (uint32_t)t->rank;
    address.nonce = t->segment->nonce;
    address.capacity = t->capacity;
    address.header_address = (uint64_t)(uintptr_t)t->segment;
    snprintf(address.name, sizeof(address.name), "%s", t->name);
    memcpy(buf, &address, sizeof(address));
    *length = sizeof(address);
    return 0;
}

/* Check one published address, with a message that names the likely cause of a bad one. */
static int check_address(wf_transport_t *t, int r, const wf_shm_address_t *address)
{
    const char *problem = NULL;
    if (address->magic != WF_SHM_ADDRESS_MAGIC)
        problem = "is not an address of weft's shm transport; every rank must select the same transport";
    else if (address->nranks != (uint32_t)t->nranks || address->rank != (uint32_t)r)
        problem = "names another rank or communicator size";
    else if (memchr(address->name, '\0', sizeof(address->name)) == NULL ||
             strncmp(address->name, "/weft-shm-", 10) != 0)
        problem = "carries an invalid segment name";
    else if (address->capacity < WF_SHM_RING_MIN || address->capacity > WF_SHM_RING_MAX ||
             (address->capacity & (address->capacity - 1)) != 0)
        problem = "announces an invalid ring capacity";
    if (problem == NULL)
        return 0;
    wf_shm_set_error(t, "connect: the address published by rank %d %s", r, problem);
    return -EPROTO;
}

/* Set the per-peer limits, so that an inline record takes at most a quarter of the peer's ring. */
static void set_limits(wf_shm_peer_t *peer)
{
    size_t quarter = (size_t)peer->capacity / 4 - sizeof(wf_shm_msg_t);
    peer->inline_max = WF_SHM_INLINE_MAX < quarter ? WF_SHM_INLINE_MAX : quarter;
    peer->write_inline_max = WF_SHM_WRITE_INLINE_MAX < quarter ? WF_SHM_WRITE_INLINE_MAX : quarter;
}

static int shm_connect(wf_transport_t *t, const void *addresses, size_t stride)
{
    if (t->connected) {
        wf_shm_set_error(t, "connect: rank %d is already connected; call connect once per transport", t->rank);
        return -EINVAL;
    }
    if (addresses == NULL || stride < sizeof(wf_shm_address_t)) {
        wf_shm_set_error(t, "connect: addresses must hold %d entries of stride >= %zu bytes, got stride %zu",
                         t->nranks, sizeof(wf_shm_address_t), stride);
        return -EINVAL;
    }
    wf_shm_address_t *all = calloc((size_t)t->nranks, sizeof(*all));
    if (all == NULL) {
        wf_shm_set_error(t, "connect: out of memory for %d addresses", t->nranks);
        return -ENOMEM;
    }
    int rc = 0;
    for (int r = 0; r < t->nranks && rc == 0; r++) {
        if (!wf_shm_serves(t, r))
            continue; /* a rank of another node, reached through another transport */
        memcpy(&all[r], (const unsigned char *)addresses + (size_t)r * stride, sizeof(all[r]));
        rc = check_address(t, r, &all[r]);
        t->peers[r].capacity = all[r].capacity;
        set_limits(&t->peers[r]);
    }
    if (rc == 0)
        rc = wf_shm_segment_map_peers(t, all);
    if (rc == 0) {
        wf_shm_probe_cma(t, all);
        t->connected = 1;
    }
    free(all);
    return rc;
}

static int grow_regions(wf_transport_t *t)
{
    uint32_t capacity = t->region_capacity > 0 ? 2 * t->region_capacity : 64;
    wf_shm_region_t *regions = realloc(t->regions, capacity * sizeof(*regions));
    if (regions == NULL)
        return -ENOMEM;
    t->regions = regions;
    uint32_t *free_slots = realloc(t->free_regions, capacity * sizeof(*free_slots));
    if (free_slots == NULL)
        return -ENOMEM;
    t->free_regions = free_slots;
    /* Push the new slots so the lowest is taken first. */
    for (uint32_t slot = capacity; slot-- > t->region_capacity;) {
        memset(&t->regions[slot], 0, sizeof(t->regions[slot]));
        t->free_regions[t->free_region_count++] = slot;
    }
    t->region_capacity = capacity;
    return 0;
}

static int shm_mr_register(wf_transport_t *t, void *ptr, size_t length, wf_mr_t *mr)
{
    if (ptr == NULL || length == 0 || mr == NULL) {
        wf_shm_set_error(t, "mr_register: invalid region %p of %zu bytes; expected a non-NULL buffer, length > 0 and "
                         "an output wf_mr_t", ptr, length);
        return -EINVAL;
    }
    if (t->free_region_count == 0 && grow_regions(t) != 0) {
        wf_shm_set_error(t, "mr_register: out of memory for the region table");
        return -ENOMEM;
    }
    uint32_t slot = t->free_regions[--t->free_region_count];
    wf_shm_region_t *region = &t->regions[slot];
    region->base = (uintptr_t)ptr;
    region->length = length;
    region->in_use = 1;
    mr->desc = NULL;
    mr->key = ((uint64_t)region->generation << 32) | (slot + 1u);
    mr->base = (uintptr_t)ptr;
    mr->length = length;
    mr->handle = (void *)(uintptr_t)(slot + 1u);
    return 0;
}

const wf_shm_region_t *wf_shm_region_find(const wf_transport_t *t, uint64_t key)
{
    uint64_t slot = (key & 0xffffffffu) - 1;
    if ((key & 0xffffffffu) == 0 || slot >= t->region_capacity)
        return NULL;
    const wf_shm_region_t *region = &t->regions[slot];
    if (!region->in_use || region->generation != (uint32_t)(key >> 32))
        return NULL;
    return region;
}

static int shm_mr_deregister(wf_transport_t *t, wf_mr_t *mr)
{
    const wf_shm_region_t *found = mr != NULL ? wf_shm_region_find(t, mr->key) : NULL;
    if (found == NULL || mr->handle == NULL) {
        wf_shm_set_error(t, "mr_deregister: the region is NULL or not registered");
        return -EINVAL;
    }
    uint32_t slot = (uint32_t)(mr->key & 0xffffffffu) - 1;
    t->regions[slot].in_use = 0;
    t->regions[slot].generation++; /* writes with the old key are now rejected */
    t->free_regions[t->free_region_count++] = slot;
    mr->handle = NULL;
    return 0;
}

static uint64_t shm_remote_address(wf_transport_t *t, const wf_mr_t *mr, const void *ptr, int writer,
                                   uint64_t *key)
{
    (void)t;
    (void)writer;
    *key = mr->key;
    return (uint64_t)(uintptr_t)ptr;
}

/* Read by cross-memory attach: done when the system call returns, without the peer's help. */
static int shm_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                    uint64_t key, wf_xfer_t *xfer)
{
    (void)desc;
    (void)key;
    if (!t->connected || peer < 0 || peer >= t->nranks || !wf_shm_serves(t, peer) || xfer == NULL) {
        wf_shm_set_error(t, "RDMA read from rank %d: invalid peer or xfer, or not connected", peer);
        return -EINVAL;
    }
    if (peer != t->rank && !t->peers[peer].cma_writable) {
        wf_shm_set_error(t, "RDMA read from rank %d: cross-memory attach to it is not allowed (WEFT_SHM_CMA=off or "
                         "ptrace restrictions), so the pull algorithms cannot run; set WEFT_ALGO=^pull", peer);
        return -ENOTSUP;
    }
    int rc = wf_shm_cma_read(t, t->peers[peer].pid, buf, remote_addr, length);
    if (rc != 0)
        wf_shm_set_error(t, "RDMA read of %zu bytes at %#llx from rank %d (pid %d) failed: %s", length,
                         (unsigned long long)remote_addr, peer, t->peers[peer].pid, strerror(-rc));
    xfer->status = rc;
    xfer->length = length;
    xfer->done = 1;
    return rc;
}

/* Reads work when cross-memory attach reaches every peer this instance serves. */
static int shm_can_read(wf_transport_t *t)
{
    for (int p = 0; p < t->nranks; p++)
        if (p != t->rank && wf_shm_serves(t, p) && !t->peers[p].cma_writable)
            return 0;
    return 1;
}

static int shm_needs_local_mr(wf_transport_t *t)
{
    return 0;
}

static const char *shm_error_string(wf_transport_t *t)
{
    return t->error;
}

static const char *shm_provider_name(wf_transport_t *t)
{
    return WF_SHM_PROVIDER_NAME;
}

static size_t shm_max_message_size(wf_transport_t *t)
{
    return WF_SHM_MAX_MESSAGE;
}

/*
 * After a failure: forget every posted operation without touching its xfer, then keep reading the
 * inbound rings until they stay empty for WF_SHM_QUIET_MS, at most milliseconds. Reading lets a
 * peer that still sends to this rank finish its posts instead of waiting for ring space, and it
 * sends DONE with an error for the peers' RTS messages, so their sends complete.
 */
static void shm_drain(wf_transport_t *t, int milliseconds)
{
    if (t == NULL || !t->connected)
        return;
    t->destroying = 1;
    wf_shm_drop_queues(t);
    uint64_t now = wf_xfer_now_ns(), until = now + (uint64_t)milliseconds * 1000000u, last_event = now;
    while (now < until && now - last_event < (uint64_t)WF_SHM_QUIET_MS * 1000000u) {
        wf_shm_flush_dones(t);
        if (wf_shm_poll(t) != 0)
            last_event = wf_xfer_now_ns();
        now = wf_xfer_now_ns();
    }
}

static void shm_destroy(wf_transport_t *t)
{
    if (t == NULL)
        return;
    if (t->rts_in_flight > 0 && !t->destroying)
        WF_SHM_WARN("rank %d destroys its transport with %zu sends waiting for their receivers; their xfers are "
                    "never marked done", t->rank, t->rts_in_flight);
    if (t->peers != NULL) {
        wf_shm_drop_queues(t);
        for (int p = 0; p < t->nranks; p++) {
            for (wf_shm_pending_done_t *done = t->peers[p].dones, *next; done != NULL; done = next) {
                next = done->next;
                free(done);
            }
        }
    }
    for (wf_shm_recv_t *recv = t->free_recvs, *next; recv != NULL; recv = next) {
        next = recv->next;
        free(recv);
    }
    wf_shm_segment_release(t);
    free(t->peers);
    free(t->served);
    free(t->polled);
    free(t->rts);
    free(t->free_rts);
    free(t->regions);
    free(t->free_regions);
    wf_held_immediates_free(&t->deferred_immediates);
    free(t);
}

const wf_transport_ops_t wf_shm_transport = {
    .name = "shm",
    .create = shm_create,
    .get_address = shm_get_address,
    .connect = shm_connect,
    .mr_register = shm_mr_register,
    .mr_deregister = shm_mr_deregister,
    .remote_address = shm_remote_address,
    .read = shm_read,
    .can_read = shm_can_read,
    .needs_local_mr = shm_needs_local_mr,
    .send = wf_shm_send,
    .recv = wf_shm_recv,
    .recv_any = wf_shm_recv_any,
    .write = wf_shm_write,
    .progress = wf_shm_progress,
    .error_string = shm_error_string,
    .provider_name = shm_provider_name,
    .max_message_size = shm_max_message_size,
    .drain = shm_drain,
    .destroy = shm_destroy,
};
