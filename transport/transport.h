/*
 * The transport interface: how bytes move between the ranks of one communicator.
 *
 * A transport instance belongs to one communicator and addresses peers by their rank in it. It
 * offers tagged eager messages (matched by peer and 64-bit tag, buffered by the transport when they
 * arrive before the receive is posted), RDMA writes that raise a 32-bit immediate value at the
 * target once the data is in place, and memory registration. It knows nothing of collectives.
 *
 * Every posted operation takes a wf_xfer_t owned by the caller, which must stay valid until the
 * transport marks it done. Completions are reported only from progress(), which the caller calls
 * from its wait loops; nothing runs on other threads. Calls return 0 or a negative errno-style
 * code; the transport then stores a sentence naming the operation, the peer and the provider's
 * error in the buffer returned by error_string().
 */
#ifndef WF_TRANSPORT_H
#define WF_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

typedef struct wf_transport wf_transport_t;

/* Caller-owned record of one posted operation. */
typedef struct {
    volatile int done; /* set to 1 by progress() when the operation completed or failed */
    int status;        /* 0 or a negative errno-style code once done */
    size_t length;     /* received bytes, for receives */
} wf_xfer_t;

/* A registered memory region. */
typedef struct {
    void *desc;      /* local descriptor to pass with local buffers in this region (may be NULL) */
    uint64_t key;    /* remote key peers use to write into this region */
    uintptr_t base;  /* start address of the region */
    size_t length;
    void *handle;    /* transport-private */
} wf_mr_t;

/* Called from progress() for each RDMA write that landed in a local region. */
typedef void (*wf_remote_write_fn)(void *arg, uint32_t immediate);

typedef struct {
    int rank;
    int nranks;
    int single_node;            /* every rank of the communicator is on this node */
    const char *provider;       /* requested provider name, NULL or "" for automatic */
    wf_remote_write_fn on_remote_write;
    /*
     * Polled while a post waits for queue space (the peer does not drain its queue); non-zero
     * makes the post give up with -ECANCELED. NULL: wait up to the transport's own limit.
     */
    int (*should_stop)(void *arg);
    void *callback_arg;
    /* Peers this instance must reach (non-zero entries, nranks of them); NULL for every rank. */
    const unsigned char *peers;
    /* Node index of every rank, for transports that route by node; may be NULL. */
    const int *node_of_rank;
    int shm_cma_disabled; /* shm: copy every payload through shared memory, never by cross-memory attach */
    /*
     * Device this rank should send through, from the topology's NIC choice ("mlx5_1"); NULL or ""
     * for the provider's first domain. Local ranks spread over equally near devices, so several
     * NICs carry traffic at once (rails).
     */
    const char *rail;
    int rail_port; /* port of rail, 1-based; 0 for any active port */
    /*
     * Non-zero when the caller polls other transports in the same loop (the route transport's
     * parts), so progress() must never sleep waiting for this transport's own completions.
     */
    int progress_shared;
} wf_transport_config_t;

typedef struct wf_transport_ops {
    const char *name; /* "ofi", "shm", "verbs" or "route" */

    /* Open the fabric and a local endpoint. On failure returns a negative code and writes the reason to err. */
    int (*create)(const wf_transport_config_t *config, wf_transport_t **out, char *err, size_t errlen);
    /* Copy the local endpoint address into buf; *length is its capacity on entry, the size on exit. */
    int (*get_address)(wf_transport_t *t, void *buf, size_t *length);
    /* Make every rank reachable. addresses contains nranks entries of stride bytes, in rank order. */
    int (*connect)(wf_transport_t *t, const void *addresses, size_t stride);

    int (*mr_register)(wf_transport_t *t, void *ptr, size_t length, wf_mr_t *mr);
    int (*mr_deregister)(wf_transport_t *t, wf_mr_t *mr);
    /*
     * Address that rank `writer` passes to write() to reach ptr inside mr (virtual address or
     * offset), and in *key the key it passes. Both may depend on the writer when it is reached
     * through another fabric (the route transport).
     */
    uint64_t (*remote_address)(wf_transport_t *t, const wf_mr_t *mr, const void *ptr, int writer, uint64_t *key);
    /* Non-zero when local buffers passed to send/recv/write need a descriptor (FI_MR_LOCAL). */
    int (*needs_local_mr)(wf_transport_t *t);

    int (*send)(wf_transport_t *t, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
    int (*recv)(wf_transport_t *t, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                wf_xfer_t *xfer);
    /*
     * Receive one message from any rank whose tag matches tag in every bit not set in ignore (for
     * example the sender field). Used for messages whose sender is not known in advance. Post it
     * before such a message can arrive: shm of libfabric 1.17 never matches a message that arrived
     * first to a receive with ignore bits.
     */
    int (*recv_any)(wf_transport_t *t, uint64_t tag, uint64_t ignore, void *buf, size_t length, void *desc,
                    wf_xfer_t *xfer);
    /* Write length bytes to the peer's remote_addr/key; the peer receives immediate in on_remote_write. */
    int (*write)(wf_transport_t *t, int peer, const void *buf, size_t length, void *desc,
                 uint64_t remote_addr, uint64_t key, uint32_t immediate, wf_xfer_t *xfer);

    /*
     * Read length bytes from the peer's remote_addr/key into buf (RDMA read). The xfer is done
     * once the data is in buf, and the peer gets no notification. NULL when the transport cannot read.
     */
    int (*read)(wf_transport_t *t, int peer, void *buf, size_t length, void *desc, uint64_t remote_addr,
                uint64_t key, wf_xfer_t *xfer);
    /* Non-zero when read() reaches every peer of this instance (after connect). NULL: never. */
    int (*can_read)(wf_transport_t *t);

    /* Poll completions once. Returns the number of events handled (>= 0) or a negative code. */
    int (*progress)(wf_transport_t *t);
    /* Last error sentence of this instance; never NULL. */
    const char *(*error_string)(wf_transport_t *t);
    /* Name of the fabric provider actually opened, e.g. "tcp;ofi_rxm". */
    const char *(*provider_name)(wf_transport_t *t);
    /* Largest single write or send the provider accepts. */
    size_t (*max_message_size)(wf_transport_t *t);

    /*
     * Before destroying the instance of a failed communicator: cancel what is posted and poll until
     * the peers' traffic stops, for at most milliseconds. Afterwards no xfer is touched again.
     */
    void (*drain)(wf_transport_t *t, int milliseconds);
    void (*destroy)(wf_transport_t *t);
} wf_transport_ops_t;

extern const wf_transport_ops_t wf_ofi_transport;
extern const wf_transport_ops_t wf_route_transport;

/* The two transports a route instance combines: [0] between ranks of one node, [1] between nodes. */
typedef struct {
    const wf_transport_ops_t *ops[2];
    const char *provider[2]; /* provider names the parts are created with (NULL: automatic) */
} wf_route_parts_t;

/*
 * Create a route instance (transport/route.c): peers on this rank's node go through parts->ops[0],
 * the others through parts->ops[1]. config->node_of_rank is required. Ops of the result are
 * wf_route_transport.
 */
int wf_route_create(const wf_transport_config_t *config, const wf_route_parts_t *parts, wf_transport_t **out,
                    char *err, size_t errlen);
extern const wf_transport_ops_t wf_shm_transport; /* weft's own intra-node transport, transport/shm/ */

/* Largest communicator the shm transport serves: its segment header has a byte per rank. */
#define WF_SHM_MAX_RANKS 1024

#ifdef WEFT_HAVE_VERBS
extern const wf_transport_ops_t wf_verbs_transport; /* weft's own libibverbs transport, transport/verbs/ */

/* Print every RDMA device port, its GIDs and the one the verbs transport would use, for weft-info. */
void wf_verbs_print_devices(void *file);
#endif

/* Print the RMA-capable libfabric providers this process can open, one per line, for weft-info. */
void wf_ofi_print_providers(void *file);

#endif /* WF_TRANSPORT_H */
