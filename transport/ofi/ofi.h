/*
 * Internal state of the libfabric transport, shared by the files in transport/ofi/.
 *
 * ofi_info.c queries and chooses the provider, ofi_transport.c opens the endpoint and posts
 * operations, ofi_progress.c reads the completion queue. Log messages start with "NET/OFI".
 */
#ifndef WF_OFI_H
#define WF_OFI_H

#include <stddef.h>
#include <stdint.h>

#include <rdma/fabric.h>

#include "log.h"
#include "transport.h"
#include "xfer.h"

#define WF_OFI_INFO(format, ...) WF_INFO(WF_SUB_NET, "NET/OFI " format, ##__VA_ARGS__)
#define WF_OFI_WARN(format, ...) WF_WARN(WF_SUB_NET, "NET/OFI " format, ##__VA_ARGS__)
#define WF_OFI_ERROR(format, ...) WF_ERROR(WF_SUB_NET, "NET/OFI " format, ##__VA_ARGS__)
#define WF_OFI_TRACE(format, ...) WF_TRACE(WF_SUB_NET, "NET/OFI " format, ##__VA_ARGS__)

/* Buffer size large enough for the endpoint address of every provider weft accepts; use it as stride. */
#define WF_OFI_ADDRESS_MAX 256

/* Largest single send or write accepted even when the provider allows more; callers split above it. */
#define WF_OFI_MAX_MESSAGE ((size_t)1 << 30)

/* How long a post keeps retrying while the provider returns FI_EAGAIN, in seconds. */
#define WF_OFI_POST_TIMEOUT_SEC 30

/* How long drain() waits for the completion queue to stay quiet before it returns, in milliseconds. */
#define WF_OFI_QUIET_MS 100

/* Operation records are allocated in blocks of this many and recycled through a free list. */
#define WF_OFI_OP_BLOCK 64

/*
 * Smallest FI_UNIVERSE_SIZE weft sets, so that communicators created after the first one, which
 * find libfabric already initialised, still get completion queues for up to this many ranks.
 */
#define WF_OFI_MIN_UNIVERSE 64
#define WF_OFI_MIN_UNIVERSE_TEXT "64"

/* Completions read from the CQ per fi_cq_read call. */
#define WF_OFI_CQ_BATCH 16

typedef enum { WF_OFI_OP_SEND, WF_OFI_OP_RECV, WF_OFI_OP_WRITE, WF_OFI_OP_READ } wf_ofi_op_kind_t;

/*
 * Record of one posted operation. The provider requires FI_CONTEXT2 mode: it owns the
 * fi_context2 from the post until the completion is read, so the record lives in a
 * transport-owned pool and never inside the caller's wf_xfer_t.
 */
typedef struct wf_ofi_op {
    struct fi_context2 context;
    struct wf_ofi_op *next_free;
    int in_use;                     /* posted and not completed; destroy() cancels these */
    wf_xfer_t *xfer;
    wf_ofi_op_kind_t kind;
    int peer;
    size_t length;
    uint64_t tag;
} wf_ofi_op_t;

/* One registration; wf_mr_t.handle points here. Kept in a list so destroy can close leftovers. */
typedef struct wf_ofi_mr {
    struct fid_mr *fid;
    struct wf_ofi_mr *prev, *next;
} wf_ofi_mr_t;

struct wf_transport {
    int rank;
    int nranks;
    unsigned char *peers; /* ranks this instance serves (non-zero), NULL for all */
    fi_addr_t *fi_addr_of; /* provider address of each rank, FI_ADDR_NOTAVAIL for ranks not served */
    wf_remote_write_fn on_remote_write;
    int (*should_stop)(void *arg);
    void *callback_arg;

    struct fi_info *info; /* the chosen provider entry, owned */
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_ep *ep;
    int connected;

    /* FI_MR_* bits the provider kept from the requested mr_mode. */
    int mr_local, mr_virt_addr, mr_prov_key, mr_endpoint;
    uint64_t next_requested_key; /* used as requested key when the provider lacks FI_MR_PROV_KEY */
    wf_ofi_mr_t *regions;

    size_t inject_size;
    size_t max_message;
    int tag_bits;
    uint64_t tag_mask; /* tag bits the provider matches on */

    wf_ofi_op_t *free_ops;
    wf_ofi_op_t **op_blocks; /* every block of the pool, freed at destroy */
    size_t op_block_count;
    size_t ops_in_flight;
    size_t receives_in_flight; /* part of ops_in_flight; pending receives are normal at destroy */
    uint64_t eagain_retries; /* posts repeated after FI_EAGAIN, for tests and diagnostics */

    /*
     * Immediates read while a post waited for queue space (post_depth > 0). They are delivered by
     * the next progress() call, so on_remote_write runs only from progress() as transport.h states.
     */
    int post_depth;
    int destroying; /* drain() ran: the xfers of posted operations may be gone, so they are not touched */
    wf_held_immediates_t deferred_immediates;
    int deferred_error; /* negative code of a failure seen during a post, returned by progress() */

    char error[512];
};

/* Store a formatted sentence as the instance's last error, returned by error_string(). */
#define wf_ofi_set_error(t, ...) wf_xfer_format((t)->error, sizeof((t)->error), __VA_ARGS__)

/* Map a positive FI_E* or errno value to a negative errno-style code. */
int wf_ofi_errno(int fi_error);

const char *wf_ofi_op_name(wf_ofi_op_kind_t kind);

/*
 * Run fi_getinfo with the hints weft needs and return the acceptable entries (caller frees with
 * fi_freeinfo), or NULL with a message in err and the negative code in *rc.
 */
struct fi_info *wf_ofi_query_providers(int *rc, char *err, size_t errlen);

/*
 * The FI_UNIVERSE_SIZE weft sets before libfabric's first call, for a communicator of nranks ranks
 * whose requested provider is provider (NULL or "" for automatic), when the environment contains
 * current (NULL when unset): max(nranks, WF_OFI_MIN_UNIVERSE), or 0 when the user set a value or
 * requested a provider that is not verbs-based. *reason receives a static phrase for the log.
 */
int wf_ofi_universe_size(const char *provider, int nranks, const char *current, const char **reason);

/* Non-zero when this fi_getinfo entry meets the requirements hints cannot express. */
int wf_ofi_info_acceptable(const struct fi_info *info);

/*
 * Choose among distinct provider names (in fi_getinfo order): requested when non-empty (exact
 * match), else "shm" when single_node, else the first name containing "verbs", "efa", "cxi",
 * "tcp" in that order of preference, else the first name other than shm, sockets and udp.
 * Returns the index into names, or -1. *reason receives a static phrase for the log.
 */
int wf_ofi_choose_provider(const char *const *names, size_t count, const char *requested,
                           int single_node, const char **reason);

/*
 * Select the provider entry for config from the fi_getinfo list. An automatic choice of shm for
 * more ranks than shm serves (domain_attr->ep_cnt) falls back to the network provider. Returns a
 * duplicate the caller frees with fi_freeinfo, or NULL with the message in err and the code in
 * *rc (-ENOENT when the requested or needed provider is not offered, -E2BIG when shm was
 * requested for more ranks than it serves).
 */
struct fi_info *wf_ofi_select(const wf_transport_config_t *config, int *rc, char *err, size_t errlen,
                              const char **reason);

/*
 * The entry of provider prov_name in list whose domain is the device rail: its name exactly, or
 * the name followed by '-' and a suffix (verbs lists "mlx5_0-xrc", efa "rdmap0s6-rdm"). NULL when
 * the provider offers no domain on that device.
 */
const struct fi_info *wf_ofi_rail_entry(const struct fi_info *list, const char *prov_name, const char *rail);

/* Usable tag bits of a provider's mem_tag_format (fi_endpoint(3): leading zero bits are ignored). */
int wf_ofi_tag_bits(uint64_t mem_tag_format);

/*
 * Read one batch of completions. Returns the number handled or a negative code. A completion
 * error of a posted operation only sets the status of its xfer, so it is not a failure here.
 */
int wf_ofi_poll(struct wf_transport *t);

/* The progress() entry point: deliver deferred immediates, then poll. */
int wf_ofi_progress(struct wf_transport *t);

void wf_ofi_op_release(struct wf_transport *t, wf_ofi_op_t *op);

#endif /* WF_OFI_H */
