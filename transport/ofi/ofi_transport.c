/*
 * The libfabric transport: endpoint setup, addressing, memory registration and teardown.
 * Posting operations is in ofi_post.c, completion handling in ofi_progress.c.
 *
 * One instance opens its own fabric, domain, endpoint, completion queue and address vector, so
 * instances of different communicators share no libfabric object and may run on different
 * threads even with FI_THREAD_DOMAIN.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#include "ofi.h"

/* Access rights of every region: local use by any operation, remote reads and writes. */
#define WF_OFI_MR_ACCESS (FI_SEND | FI_RECV | FI_WRITE | FI_REMOTE_WRITE | FI_READ | FI_REMOTE_READ)

/* Defined in ofi_post.c. */
int wf_ofi_send(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
int wf_ofi_recv(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
int wf_ofi_recv_any(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                    wf_xfer_t *xfer);
int wf_ofi_read(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                uint64_t key, wf_xfer_t *xfer);
int wf_ofi_write(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc,
                 uint64_t remote_addr, uint64_t key, uint32_t immediate, wf_xfer_t *xfer);

static const char *provider_of(const wf_transport_t *t)
{
    return t->info->fabric_attr->prov_name;
}

static int validate_config(const wf_transport_config_t *config, wf_transport_t **out, char *err,
                           size_t errlen)
{
    if (config == NULL || out == NULL) {
        wf_xfer_format(err, errlen, "ofi transport create: config and out must not be NULL");
        return -EINVAL;
    }
    if (config->nranks < 1 || config->rank < 0 || config->rank >= config->nranks) {
        wf_xfer_format(err, errlen,
                       "ofi transport create: rank %d is outside a communicator of %d ranks; "
                       "expected 0 <= rank < nranks",
                       config->rank, config->nranks);
        return -EINVAL;
    }
    return 0;
}

/* Open fabric, domain, CQ, AV and endpoint for t->info; on failure the caller destroys t. */

/*
 * libfabric 1.17's shm provider names its shared-memory queue "/dev/shm/PID:N:M" and fails
 * fi_enable with EBUSY when that file exists. A process that was killed leaves its file behind,
 * and a later process that gets the same PID cannot open shm at all. No live process other than
 * this one can own files named with this PID, and before this process's first shm endpoint they
 * cannot be its own, so they are removed once, before that endpoint is opened.
 */
static pthread_once_t stale_regions_once = PTHREAD_ONCE_INIT;

static void remove_stale_shm_regions(void)
{
    char prefix[32];
    int length = snprintf(prefix, sizeof(prefix), "%d:", (int)getpid());
    DIR *directory = opendir("/dev/shm");
    if (directory == NULL)
        return;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (strncmp(entry->d_name, prefix, (size_t)length) != 0)
            continue;
        if (unlinkat(dirfd(directory), entry->d_name, 0) == 0)
            WF_INFO(WF_SUB_NET, "NET/OFI removed /dev/shm/%s, a shared-memory queue left by an earlier process "
                                "with this process's id", entry->d_name);
    }
    closedir(directory);
}

static int open_endpoint(wf_transport_t *t, char *err, size_t errlen)
{
    const char *step = "fi_fabric";
    if (strcmp(t->info->fabric_attr->prov_name, "shm") == 0)
        pthread_once(&stale_regions_once, remove_stale_shm_regions);
    int ret = fi_fabric(t->info->fabric_attr, &t->fabric, NULL);
    if (ret == 0) {
        step = "fi_domain";
        ret = fi_domain(t->fabric, t->info, &t->domain, NULL);
    }
    if (ret == 0) {
        /* One CQ serves both directions; FI_CQ_FORMAT_DATA carries received lengths and immediates. */
        struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_DATA, .wait_obj = FI_WAIT_NONE};
        step = "fi_cq_open";
        ret = fi_cq_open(t->domain, &cq_attr, &t->cq, NULL);
    }
    if (ret == 0) {
        struct fi_av_attr av_attr = {.type = FI_AV_TABLE, .count = (size_t)t->nranks};
        step = "fi_av_open";
        ret = fi_av_open(t->domain, &av_attr, &t->av, NULL);
    }
    if (ret == 0) {
        step = "fi_endpoint";
        ret = fi_endpoint(t->domain, t->info, &t->ep, NULL);
    }
    if (ret == 0) {
        step = "fi_ep_bind of the completion queue";
        ret = fi_ep_bind(t->ep, &t->cq->fid, FI_TRANSMIT | FI_RECV);
    }
    if (ret == 0) {
        step = "fi_ep_bind of the address vector";
        ret = fi_ep_bind(t->ep, &t->av->fid, 0);
    }
    if (ret == 0) {
        step = "fi_enable";
        ret = fi_enable(t->ep);
    }
    if (ret != 0) {
        const char *universe = getenv("FI_UNIVERSE_SIZE");
        char advice[400] = "";
        if (ret == -FI_EINVAL && strcmp(step, "fi_enable") == 0 && strstr(provider_of(t), "verbs") != NULL &&
            strstr(provider_of(t), "ofi_rxm") != NULL)
            snprintf(advice, sizeof(advice),
                     ". ofi_rxm opens a completion queue of (128 + 128) x FI_UNIVERSE_SIZE entries "
                     "(FI_UNIVERSE_SIZE is %s here), and a queue above the device's max_cqe (ibv_devinfo -v) "
                     "fails. Lower FI_UNIVERSE_SIZE (Soft-RoCE: at most 127)",
                     universe != NULL ? universe : "unset, 256");
        wf_xfer_format(err, errlen, "%s failed for libfabric provider %s (fabric %s, domain %s): %s%s", step,
                       provider_of(t), t->info->fabric_attr->name, t->info->domain_attr->name,
                       fi_strerror(-ret), advice);
        return wf_ofi_errno(-ret);
    }
    return 0;
}

/* Copy the provider's limits and MR mode bits into t. */
static void record_attributes(wf_transport_t *t)
{
    const struct fi_info *info = t->info;
    uint64_t mr_mode = (uint64_t)info->domain_attr->mr_mode;
    t->mr_local = (mr_mode & FI_MR_LOCAL) != 0;
    t->mr_virt_addr = (mr_mode & FI_MR_VIRT_ADDR) != 0;
    t->mr_prov_key = (mr_mode & FI_MR_PROV_KEY) != 0;
    t->mr_endpoint = (mr_mode & FI_MR_ENDPOINT) != 0;
    t->next_requested_key = 1;

    t->inject_size = info->tx_attr->inject_size;
    t->max_message = info->ep_attr->max_msg_size;
    if (t->max_message > WF_OFI_MAX_MESSAGE)
        t->max_message = WF_OFI_MAX_MESSAGE;

    t->tag_bits = wf_ofi_tag_bits(info->ep_attr->mem_tag_format);
    t->tag_mask = t->tag_bits >= 64 ? UINT64_MAX : ((uint64_t)1 << t->tag_bits) - 1;
}

static void describe_mr_mode(const wf_transport_t *t, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s%s%s%s", t->mr_local ? " FI_MR_LOCAL" : "", t->mr_virt_addr ? " FI_MR_VIRT_ADDR" : "",
             t->mr_prov_key ? " FI_MR_PROV_KEY" : "", t->mr_endpoint ? " FI_MR_ENDPOINT" : "");
    if (out[0] == '\0')
        snprintf(out, outlen, " none (offsets, requested keys)");
}

static void log_choice(const wf_transport_t *t, const char *reason)
{
    /* The choice is the same for every communicator of the job, so it is logged at INFO once. */
    static int logged;
    int first = __atomic_exchange_n(&logged, 1, __ATOMIC_RELAXED) == 0;
    const struct fi_info *info = t->info;
    char mr_mode[96];
    describe_mr_mode(t, mr_mode, sizeof(mr_mode));
    if (first)
        WF_OFI_INFO("selected provider %s (fabric %s, domain %s) because %s; mr_mode:%s; inject %zu bytes, "
                    "max message %zu bytes, %d tag bits, threading %s",
                    provider_of(t), info->fabric_attr->name, info->domain_attr->name, reason, mr_mode,
                    t->inject_size, t->max_message, t->tag_bits,
                    info->domain_attr->threading == FI_THREAD_SAFE ? "safe" : "domain");
    else
        WF_OFI_TRACE("selected provider %s (fabric %s, domain %s) because %s", provider_of(t),
                     info->fabric_attr->name, info->domain_attr->name, reason);
}

static void warn_fi_provider(void)
{
    static int warned;
    const char *value = getenv("FI_PROVIDER");
    if (value == NULL || value[0] == '\0' || __atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
        return;
    WF_OFI_WARN("FI_PROVIDER=%s limits which providers libfabric loads; weft chooses among them by "
                "WEFT_OFI_PROVIDER, so unset FI_PROVIDER and set WEFT_OFI_PROVIDER instead",
                value);
}

static void ofi_destroy(wf_transport_t *t);

static int ofi_create(const wf_transport_config_t *config, wf_transport_t **out, char *err, size_t errlen)
{
    int rc = validate_config(config, out, err, errlen);
    if (rc != 0)
        return rc;
    *out = NULL;
    warn_fi_provider();

    wf_transport_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        wf_xfer_format(err, errlen, "ofi transport create: out of memory");
        return -ENOMEM;
    }
    t->rank = config->rank;
    t->nranks = config->nranks;
    t->on_remote_write = config->on_remote_write;
    t->should_stop = config->should_stop;
    t->callback_arg = config->callback_arg;
    if (config->peers != NULL) {
        t->peers = malloc((size_t)config->nranks);
        if (t->peers == NULL) {
            free(t);
            wf_xfer_format(err, errlen, "ofi transport create: out of memory");
            return -ENOMEM;
        }
        memcpy(t->peers, config->peers, (size_t)config->nranks);
    }

    const char *reason = "";
    t->info = wf_ofi_select(config, &rc, err, errlen, &reason);
    if (t->info == NULL) {
        free(t->peers);
        free(t);
        return rc;
    }
    record_attributes(t);

    rc = open_endpoint(t, err, errlen);
    if (rc != 0) {
        ofi_destroy(t);
        return rc;
    }
    log_choice(t, reason);
    *out = t;
    return 0;
}

static int ofi_get_address(wf_transport_t *t, void *buf, size_t *length)
{
    if (buf == NULL || length == NULL) {
        wf_ofi_set_error(t, "get_address: buf and length must not be NULL");
        return -EINVAL;
    }
    size_t capacity = *length;
    int ret = fi_getname(&t->ep->fid, buf, length);
    if (ret == -FI_ETOOSMALL) {
        wf_ofi_set_error(t,
                         "get_address: the endpoint address of provider %s needs %zu bytes but the "
                         "buffer holds %zu; pass a buffer of WF_OFI_ADDRESS_MAX (%d) bytes",
                         provider_of(t), *length, capacity, WF_OFI_ADDRESS_MAX);
        return -ENOSPC;
    }
    if (ret != 0) {
        wf_ofi_set_error(t, "fi_getname failed for provider %s: %s", provider_of(t), fi_strerror(-ret));
        return wf_ofi_errno(-ret);
    }
    return 0;
}

static int ofi_connect(wf_transport_t *t, const void *addresses, size_t stride)
{
    if (t->connected) {
        wf_ofi_set_error(t, "connect: rank %d is already connected; call connect once per transport", t->rank);
        return -EINVAL;
    }
    char own[WF_OFI_ADDRESS_MAX];
    size_t own_length = sizeof(own);
    if (fi_getname(&t->ep->fid, own, &own_length) != 0)
        own_length = WF_OFI_ADDRESS_MAX;
    if (addresses == NULL || stride < own_length) {
        wf_ofi_set_error(t,
                         "connect: addresses must hold %d entries of stride >= %zu bytes (the "
                         "address size of provider %s), got stride %zu",
                         t->nranks, own_length, provider_of(t), stride);
        return -EINVAL;
    }

    /* One insert per served rank; the provider's fi_addr of each is kept in fi_addr_of. */
    t->fi_addr_of = malloc((size_t)t->nranks * sizeof(*t->fi_addr_of));
    if (t->fi_addr_of == NULL) {
        wf_ofi_set_error(t, "connect: out of memory for %d peer addresses", t->nranks);
        return -ENOMEM;
    }
    for (int r = 0; r < t->nranks; r++) {
        t->fi_addr_of[r] = FI_ADDR_NOTAVAIL;
        if (t->peers != NULL && !t->peers[r])
            continue;
        const unsigned char *entry = (const unsigned char *)addresses + (size_t)r * stride;
        int ret = fi_av_insert(t->av, entry, 1, &t->fi_addr_of[r], 0, NULL);
        if (ret != 1) {
            wf_ofi_set_error(t,
                             "fi_av_insert of the address of rank %d failed on provider %s: %s; "
                             "check that every rank chose the same provider",
                             r, provider_of(t), ret < 0 ? fi_strerror(-ret) : "address rejected");
            return ret < 0 ? wf_ofi_errno(-ret) : -EINVAL;
        }
    }
    t->connected = 1;
    return 0;
}

static int ofi_mr_register(wf_transport_t *t, void *ptr, size_t length, wf_mr_t *mr)
{
    if (ptr == NULL || length == 0 || mr == NULL) {
        wf_ofi_set_error(t, "mr_register: invalid region %p of %zu bytes; expected a non-NULL buffer, "
                         "length > 0 and an output wf_mr_t", ptr, length);
        return -EINVAL;
    }
    wf_ofi_mr_t *region = calloc(1, sizeof(*region));
    if (region == NULL) {
        wf_ofi_set_error(t, "mr_register: out of memory");
        return -ENOMEM;
    }

    /* With FI_MR_PROV_KEY the provider ignores the requested key and picks its own. */
    uint64_t requested_key = t->mr_prov_key ? 0 : t->next_requested_key++;
    const char *step = "fi_mr_reg";
    int ret = fi_mr_reg(t->domain, ptr, length, WF_OFI_MR_ACCESS, 0, requested_key, 0, &region->fid, NULL);
    if (ret == 0 && t->mr_endpoint) {
        /* FI_MR_ENDPOINT: a region serves remote access only once bound to the endpoint and enabled. */
        step = "fi_mr_bind";
        ret = fi_mr_bind(region->fid, &t->ep->fid, 0);
        if (ret == 0) {
            step = "fi_mr_enable";
            ret = fi_mr_enable(region->fid);
        }
    }
    if (ret == 0 && fi_mr_key(region->fid) == FI_KEY_NOTAVAIL) {
        step = "fi_mr_key";
        ret = -FI_ENOKEY;
    }
    if (ret != 0) {
        wf_ofi_set_error(t, "%s of %zu bytes at %p failed on provider %s: %s", step, length, ptr,
                         provider_of(t), fi_strerror(-ret));
        if (region->fid != NULL)
            fi_close(&region->fid->fid);
        free(region);
        return wf_ofi_errno(-ret);
    }

    region->next = t->regions;
    if (t->regions != NULL)
        t->regions->prev = region;
    t->regions = region;

    mr->desc = fi_mr_desc(region->fid);
    mr->key = fi_mr_key(region->fid);
    mr->base = (uintptr_t)ptr;
    mr->length = length;
    mr->handle = region;
    return 0;
}

static int ofi_mr_deregister(wf_transport_t *t, wf_mr_t *mr)
{
    if (mr == NULL || mr->handle == NULL) {
        wf_ofi_set_error(t, "mr_deregister: the region is NULL or not registered");
        return -EINVAL;
    }
    wf_ofi_mr_t *region = mr->handle;
    int ret = fi_close(&region->fid->fid);
    if (ret != 0) {
        wf_ofi_set_error(t, "fi_close of the region at %p (%zu bytes) failed on provider %s: %s",
                         (void *)mr->base, mr->length, provider_of(t), fi_strerror(-ret));
        return wf_ofi_errno(-ret);
    }
    if (region->prev != NULL)
        region->prev->next = region->next;
    else
        t->regions = region->next;
    if (region->next != NULL)
        region->next->prev = region->prev;
    free(region);
    mr->handle = NULL;
    mr->desc = NULL;
    return 0;
}

static uint64_t ofi_remote_address(wf_transport_t *t, const wf_mr_t *mr, const void *ptr, int writer,
                                   uint64_t *key)
{
    (void)writer;
    *key = mr->key;
    /* FI_MR_VIRT_ADDR: peers address the region by virtual address, otherwise by offset from its base. */
    if (t->mr_virt_addr)
        return (uint64_t)(uintptr_t)ptr;
    return (uint64_t)((uintptr_t)ptr - mr->base);
}

/* Every provider weft accepts offers FI_READ and FI_REMOTE_READ (the hints require them). */
static int ofi_can_read(wf_transport_t *t)
{
    (void)t;
    return 1;
}

static int ofi_needs_local_mr(wf_transport_t *t)
{
    return t->mr_local;
}

static const char *ofi_error_string(wf_transport_t *t)
{
    return t->error;
}

static const char *ofi_provider_name(wf_transport_t *t)
{
    return provider_of(t);
}

static size_t ofi_max_message_size(wf_transport_t *t)
{
    return t->max_message;
}

static void close_fid(struct fid *fid, const char *object, const char *provider)
{
    if (fid == NULL)
        return;
    int ret = fi_close(fid);
    if (ret != 0)
        WF_OFI_WARN("fi_close of the %s failed on provider %s: %s", object, provider, fi_strerror(-ret));
}

/*
 * After a failure: cancel every posted operation, then poll until nothing is posted and the peers'
 * traffic has stopped for WF_OFI_QUIET_MS (long enough for a descheduled peer to run again on a busy
 * machine), at most milliseconds. tcp;ofi_rxm of libfabric 1.17 can
 * crash in fi_close of an endpoint whose connections still carry traffic (an rxm connection freed
 * while completions that refer to it wait in the queue). The operations belong to a failed
 * collective whose xfers may be gone, so from now on completions only release the records, and
 * immediates are dropped.
 */
static void ofi_drain(wf_transport_t *t, int milliseconds)
{
    if (t == NULL || !t->connected)
        return;
    t->destroying = 1;
    for (size_t b = 0; b < t->op_block_count; b++)
        for (size_t i = 0; i < WF_OFI_OP_BLOCK; i++)
            if (t->op_blocks[b][i].in_use)
                fi_cancel(&t->ep->fid, &t->op_blocks[b][i].context);
    uint64_t now = wf_xfer_now_ns(), until = now + (uint64_t)milliseconds * 1000000u, last_event = now;
    while (now < until && (t->ops_in_flight > 0 || now - last_event < (uint64_t)WF_OFI_QUIET_MS * 1000000u)) {
        if (wf_ofi_poll(t) != 0)
            last_event = wf_xfer_now_ns();
        now = wf_xfer_now_ns();
    }
    if (t->ops_in_flight > 0)
        WF_OFI_INFO("rank %d: %zu operations still posted after draining for %d ms", t->rank, t->ops_in_flight,
                    milliseconds);
}

static void ofi_destroy(wf_transport_t *t)
{
    if (t == NULL)
        return;
    const char *provider = provider_of(t);
    /* Receives posted ahead (such as the ring stream's credit receive) are expected to remain. */
    if (t->ops_in_flight > t->receives_in_flight)
        WF_OFI_WARN("rank %d destroys its transport with %zu sends or writes in flight; their xfers are "
                    "never marked done",
                    t->rank, t->ops_in_flight - t->receives_in_flight);

    /*
     * Cancel what is still posted (receives from any rank, the ring stream's credit receive) and
     * read the cancellations before fi_close. A rank of a 2-rank broadcast over verbs;ofi_rxm
     * (libfabric 1.17) crashed in the endpoint's fi_close once in about 12 runs with them posted.
     */
    if (t->connected && !t->destroying && t->ops_in_flight > 0) {
        t->destroying = 1;
        for (size_t b = 0; b < t->op_block_count; b++)
            for (size_t i = 0; i < WF_OFI_OP_BLOCK; i++)
                if (t->op_blocks[b][i].in_use)
                    fi_cancel(&t->ep->fid, &t->op_blocks[b][i].context);
        uint64_t until = wf_xfer_now_ns() + (uint64_t)WF_OFI_QUIET_MS * 1000000u;
        while (t->ops_in_flight > 0 && wf_xfer_now_ns() < until)
            wf_ofi_poll(t);
    }
    /*
     * The endpoint goes first: receives still posted in it may use the descriptors of leftover
     * regions (the route transport's bounce buffers). With verbs;ofi_rxm of libfabric 1.17, closing
     * those regions first is the likely cause of a SIGSEGV seen in the endpoint's fi_close.
     */
    if (t->ep != NULL)
        close_fid(&t->ep->fid, "endpoint", provider);
    size_t leftover = 0;
    while (t->regions != NULL) {
        wf_ofi_mr_t *region = t->regions;
        t->regions = region->next;
        close_fid(&region->fid->fid, "memory region", provider);
        free(region);
        leftover++;
    }
    if (leftover > t->receives_in_flight)
        WF_OFI_WARN("rank %d destroyed %zu memory regions that were never deregistered", t->rank, leftover);

    /* Children before parents: libfabric rejects closing a domain that still has open objects. */
    if (t->av != NULL)
        close_fid(&t->av->fid, "address vector", provider);
    if (t->cq != NULL)
        close_fid(&t->cq->fid, "completion queue", provider);
    if (t->domain != NULL)
        close_fid(&t->domain->fid, "domain", provider);
    if (t->fabric != NULL)
        close_fid(&t->fabric->fid, "fabric", provider);

    for (size_t i = 0; i < t->op_block_count; i++)
        free(t->op_blocks[i]);
    free(t->op_blocks);
    wf_held_immediates_free(&t->deferred_immediates);
    fi_freeinfo(t->info);
    free(t->peers);
    free(t->fi_addr_of);
    free(t);
}

const wf_transport_ops_t wf_ofi_transport = {
    .name = "ofi",
    .create = ofi_create,
    .get_address = ofi_get_address,
    .connect = ofi_connect,
    .mr_register = ofi_mr_register,
    .mr_deregister = ofi_mr_deregister,
    .remote_address = ofi_remote_address,
    .needs_local_mr = ofi_needs_local_mr,
    .send = wf_ofi_send,
    .recv = wf_ofi_recv,
    .recv_any = wf_ofi_recv_any,
    .write = wf_ofi_write,
    .read = wf_ofi_read,
    .can_read = ofi_can_read,
    .progress = wf_ofi_progress,
    .error_string = ofi_error_string,
    .provider_name = ofi_provider_name,
    .max_message_size = ofi_max_message_size,
    .drain = ofi_drain,
    .destroy = ofi_destroy,
};
