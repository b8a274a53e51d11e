/*
 * The communicator: everything one group of ranks shares, and the progress engine that drives it.
 *
 * Algorithms are written as blocking code: a collective posts transport operations and calls
 * wf_comm_progress until its own operations are done, so nothing of one collective is in flight when
 * the next starts (the ring stream's credit state is the exception, and it is designed to persist).
 * Non-blocking calls get the same algorithms by running them on a fiber or a progress thread
 * (src/executor.h); wf_comm_progress is where a fiber yields.
 */
#ifndef WF_COMM_H
#define WF_COMM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bootstrap/bootstrap.h"
#include "coll/select.h"
#include "executor.h"
#include "mismatch.h"
#include "status.h"
#include "mr_cache.h"
#include "topo.h"
#include "transport.h"
#include "weft.h"

/*
 * Tags are 56 bits: [55:32] collective sequence number, [31:28] kind, [27:20] sub-index (step or
 * round, modulo 256), [19:0] sender rank. The sender is in the tag because providers without
 * FI_DIRECTED_RECV match receives on the tag alone. Credits and mismatch reports use sequence 0
 * because they outlive collectives. The direct algorithms put 8 bits of the collective's
 * signature (wf_comm_t.sig_sub) into the sub-index of their data messages, so a rank never
 * consumes the data of a rank that called a different collective.
 */
enum {
    WF_TAG_DATA = 1,   /* eager payload */
    WF_TAG_CTRL = 2,   /* a receiver's buffer descriptor for RDMA writes */
    WF_TAG_CREDIT = 3, /* ring stream: slots the receiver has freed */
    WF_TAG_BARRIER = 4,
    WF_TAG_SIG = 5,    /* to the left neighbour: signature header, then any data for that neighbour */
    WF_TAG_ABORT = 6,  /* a mismatch report to every rank (sequence 0, any sender) */
    WF_TAG_STEP = 7,   /* eager payload of a group algorithm's step (src/coll/group.h) */
    WF_TAG_STEP_DESC = 8, /* a receiver's descriptor for a group algorithm's RDMA step */
    WF_TAG_PULL = 9    /* pull algorithms: buffer descriptors and "done reading" (sub-index = phase) */
};

#define WF_TAG_SENDER_MASK 0xfffffull /* the sender field of a tag */

#define WF_MAX_RANKS (1 << 20)

static inline uint64_t wf_tag(uint32_t seq, unsigned kind, unsigned sub, int sender)
{
    return ((uint64_t)(seq & 0xffffffu) << 32) | ((uint64_t)(kind & 0xfu) << 28) |
           ((uint64_t)(sub & 0xffu) << 20) | ((uint64_t)sender & 0xfffffu);
}

/*
 * Immediate values of RDMA writes: [31:28] kind, [27:0] value. A token write increments
 * arrivals[value]; a stream write marks ring slot (value % WF_STREAM_SLOTS) full.
 */
enum { WF_IMM_TOKEN = 1, WF_IMM_STREAM = 2 };
#define WF_IMM(kind, value) (((uint32_t)(kind) << 28) | ((uint32_t)(value) & 0x0fffffffu))

#define WF_TOKENS 65536     /* arrival counters per communicator, reset by every collective */
#define WF_STREAM_SLOTS 8   /* ring stream slots per direction; the pipeline needs at least 2 */

/* Buffer descriptor a receiver sends to a writer, so that it can RDMA-write into the receiver's buffer. */
typedef struct {
    uint64_t address; /* as returned by the transport's remote_address() */
    uint64_t key;
    uint32_t token;   /* first arrival counter the writes should raise */
    uint32_t reserved;
} wf_remote_buffer_t;

/* What a receiver sends the rank that RDMA-writes one step of a group algorithm into it. */
typedef struct {
    wf_signature_t sig;        /* the receiver's: the writer compares it with its own before writing */
    wf_remote_buffer_t buffer; /* where to write, and the arrival counter to raise */
    uint64_t bytes;            /* length the receiver expects */
} wf_step_descriptor_t;

/*
 * Small registered buffers for control messages, so they need no registration per call on
 * providers that require local descriptors (FI_MR_LOCAL).
 */
typedef struct {
    wf_remote_buffer_t local_buffer;  /* descriptor this rank sends to a writer */
    wf_remote_buffer_t peer_buffer;   /* descriptor received from the rank it writes to */
    uint64_t credit_in;               /* right neighbour's count of freed stream slots */
    uint64_t credit_out;              /* this rank's count of freed stream slots, sent left */
    uint8_t barrier_out;
    uint8_t barrier_in;
    wf_report_t report_in;  /* a mismatch report from another rank */
    wf_report_t report_out; /* this rank's report, sent to every other rank */
    wf_step_descriptor_t step_out; /* descriptor of this rank's receive buffer in a group step */
    wf_step_descriptor_t step_in;  /* descriptor of the buffer this rank writes into in a group step */
} wf_control_t;

/*
 * Uses of the scratch buffers a communicator keeps between calls. Each use has its own buffer,
 * because both can be active in one call: the hierarchical algorithms pack the user buffer into
 * one and run the group algorithms, whose steps need the other, on it.
 */
typedef enum { WF_SCRATCH_STEP, WF_SCRATCH_PACK, WF_SCRATCH_USES } wf_scratch_use_t;

typedef struct {
    void *base;
    size_t size; /* 0: not allocated */
    wf_mr_t mr;
} wf_kept_scratch_t;

/* One incoming stream slot after its data arrived. */
typedef struct {
    int releasable;           /* reduced into the final buffer: free as soon as it is this slot's turn */
    const wf_xfer_t *forward; /* write that forwards the slot's data; free once it is done */
} wf_slot_state_t;

/*
 * Ring stream: a chunked, credit-controlled channel from each rank to its right neighbour into
 * WF_STREAM_SLOTS scratch slots of chunk_size bytes owned by the receiver. Counters are
 * cumulative over the communicator's life; chunk n always uses slot n % WF_STREAM_SLOTS, and slots
 * are freed in chunk order.
 */
typedef struct {
    /* outgoing, to the right neighbour */
    uint64_t sent;                       /* chunks written so far */
    uint64_t credit;                     /* chunks that may be written: freed by the right + slots */
    wf_xfer_t credit_in_xfer;            /* receive of the right neighbour's credit */
    wf_xfer_t out_xfer[WF_STREAM_SLOTS]; /* write of chunk n is out_xfer[n % slots] */
    wf_remote_buffer_t right_slots;      /* the right neighbour's slot region */

    /* incoming, from the left neighbour */
    uint64_t received;                   /* chunks taken out of their slots so far */
    uint64_t freed;                      /* chunks whose slot was freed; sent to the left as credit */
    uint64_t credited;                   /* value of the last credit sent */
    volatile uint64_t arrived[WF_STREAM_SLOTS]; /* (chunk number mod 2^28) + 1 of the data in each slot */
    wf_slot_state_t slot_state[WF_STREAM_SLOTS];
    wf_xfer_t credit_out_xfer;

    void *slots;   /* WF_STREAM_SLOTS * chunk_size bytes written by the left neighbour */
    wf_mr_t slots_mr;
    void *staging; /* WF_STREAM_SLOTS * chunk_size bytes for sends that need a type conversion */
    wf_mr_t staging_mr;
    int active;    /* initialised: slots registered and the credit receive posted */
} wf_stream_t;

struct weft_comm {
    int rank;
    int nranks;
    wf_bootstrap_t *bootstrap;
    wf_node_map_t nodes;
    wf_topo_summary_t *summaries; /* one per rank */

    const wf_transport_ops_t *ops;
    const wf_transport_ops_t *inter_ops; /* route transport: the part between nodes (verbs or ofi) */
    wf_transport_t *transport;
    int needs_local_mr;
    size_t max_message;
    wf_mr_cache_t *mr_cache; /* NULL when caching is off: register per call */

    /* settings every rank agreed on at init */
    size_t chunk_size;
    size_t eager_limit;
    int native_precision;
    int timeout_s;

    uint32_t seq;          /* sequence number of the current collective */
    const char *coll_name; /* of the current collective, for messages */
    struct timespec deadline;
    unsigned idle_polls;
    unsigned spin_polls;  /* idle polls before a wait starts yielding the core (set by wf_comm_set_spin) */
    int oversubscribed;   /* more ranks on this node than CPUs they may run on, so waits yield on every idle poll */
    /* Algorithm selection (src/coll/select.h), set up at init and agreed by every rank. */
    wf_select_config_t select;
    wf_transport_class_t transport_class; /* of the whole transport (the route counts as net) */
    wf_transport_class_t intra_class;     /* model parameters between ranks of one node */
    wf_transport_class_t inter_class;     /* model parameters between nodes */
    uint64_t select_hash;                 /* of select, compared across ranks at init */
    int max_ranks_per_node;
    uint16_t tune_logged[WF_COLL_COUNT][65]; /* algorithms logged per collective and size class */
    /*
     * The last choice of each collective and the inputs that vary per call. The model is a pure
     * function of those and of the settings above. Evaluating it took a fifth of the instructions
     * of an 8-byte all-reduce on two ranks, so a call that repeats the previous size reuses the choice.
     */
    struct {
        int valid;
        int uneven; /* the call was a v form, which some algorithms cannot serve */
        uint64_t bytes, block_bytes;
        double partial_scale;
        wf_algo_t algo;
    } select_memo[WF_COLL_COUNT];
    int can_read; /* the transport reads remote memory from every peer (the pull algorithms) */
    uint64_t idle_since_ns; /* monotonic time of the first idle poll of the current wait */
    uint64_t lost_check_ms; /* when wf_comm_check_lost_rank last asked the bootstrap (monotonic ms) */

    volatile uint32_t *arrivals; /* WF_TOKENS counters raised by token writes */
    uint32_t next_token;
    wf_stream_t stream;
    wf_control_t *control; /* one registered page */
    wf_mr_t control_mr;
    void *control_desc;    /* local descriptor of control, NULL when not needed */

    /*
     * Mismatch detection (src/mismatch.c). sig_in receives the right neighbour's signature and
     * any data it sends this rank; sig_out stages this rank's signature and data for the left
     * neighbour. Both hold a header plus eager_limit bytes, so no neighbour's message can be cut.
     * Consecutive collectives receive into alternate halves of sig_halves, so the next one's
     * receive can be posted while this one's data is still being read.
     */
    wf_signature_t sig;     /* this rank's signature of the current collective */
    unsigned sig_sub;       /* 8 bits of sig for the tags of direct data messages */
    char *sig_in, *sig_out; /* sig_in is sig_halves[sig_half] */
    char *sig_halves[2];    /* one allocation with sig_out, which follows them */
    int sig_half;
    uint32_t sig_ahead_seq; /* collective whose receive is posted ahead in the other half, or 0 */
    size_t sig_capacity;    /* bytes of each of sig_in and sig_out */
    wf_mr_t sig_mr;         /* all three buffers, one registration */
    void *sig_desc;
    wf_xfer_t *sig_in_xfer; /* &sig_in_xfers[sig_half] */
    wf_xfer_t sig_in_xfers[2], sig_out_xfer;
    int sig_registered;
    int sig_sent;           /* this collective's signature is posted to the left neighbour */
    int sig_waiting;        /* the right neighbour's signature is expected and not compared yet */
    int sig_checked;        /* the right neighbour's signature arrived and matched */
    int sig_done;           /* wf_sig_wait completed for this collective */
    size_t sig_expect;      /* data bytes this rank expects after the right neighbour's header */
    wf_xfer_t report_in_xfer;  /* receive of a mismatch report, posted for the communicator's life */
    wf_xfer_t *report_xfers;   /* sends of this rank's report, one per rank */
    uint64_t report_until;     /* while sending the report: when to give up (monotonic ns), else 0 */

    void *pack_buffer; /* weft_allreduce_multi's pack, kept so its registration is reused */
    size_t pack_buffer_size;

    /* Registered scratch buffers (src/coll/group.h), kept up to WEFT_SCRATCH_KEEP, one per use. */
    wf_kept_scratch_t kept_scratch[WF_SCRATCH_USES];
    size_t scratch_keep_limit;
    void *failed_scratch[WF_SCRATCH_USES]; /* per-call scratch of a failed collective, freed at destroy */
    char *step_stage;     /* eager messages of group steps, signature first: one out, one in */
    size_t step_stage_half;
    wf_mr_t step_stage_mr;

    void *eager_buffer; /* receive area of the direct algorithms */
    size_t eager_buffer_size;
    wf_mr_t eager_mr;
    int eager_registered;

    wf_executor_t exec; /* queue of issued operations and what runs them */
    wf_status_t status; /* current and recent collectives, published for timeout explanations */
    int exec_ready;

    weft_result_t failure; /* first failure; the communicator is unusable after it */
    volatile int aborted;  /* set by weft_comm_abort from any thread; read with atomic loads */
    char last_error[1024];
    weft_stats_t stats;
};

/*
 * Set comm->ops from WEFT_TRANSPORT, the node map and WEFT_OFI_PROVIDER (src/comm_transport.c), and
 * log the choice and its reason. Needs comm->nodes and comm->summaries. Returns
 * WEFT_ERR_INVALID_ARGUMENT with the ranks' nodes in last_error when shm is forced across nodes.
 */
weft_result_t wf_comm_choose_transport(weft_comm_t comm);

/* Record a failure on comm (first one wins for `failure`), log it at WARN, and return result. */
weft_result_t wf_comm_fail(weft_comm_t comm, weft_result_t result, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Before a collective runs: ask the bootstrap whether the job lost a rank, at most once per
 * millisecond, and fail comm with WEFT_ERR_REMOTE if so. A collective whose peers' data is already
 * there would otherwise finish without ever waiting, and so without ever noticing.
 */
weft_result_t wf_comm_check_lost_rank(weft_comm_t comm);

/*
 * Fail comm after a transport call failed. A mismatch report, or a lost rank that the rendezvous
 * names within a second, is the recorded cause. Otherwise record WEFT_ERR_TRANSPORT with the
 * formatted message.
 */
weft_result_t wf_comm_transport_error(weft_comm_t comm, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Record an argument error on comm without breaking it, and return WEFT_ERR_INVALID_ARGUMENT. */
weft_result_t wf_comm_invalid(weft_comm_t comm, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Thread-local error text for failures that happen before a communicator exists. */
void wf_set_init_error(const char *format, ...) __attribute__((format(printf, 1, 2)));
const char *wf_init_error(void);

/* Create a communicator of nranks from a unique id (weft_comm_init_rank and weft_comm_split). */
weft_result_t wf_comm_create_from_id(weft_comm_t *out, int nranks, const weft_unique_id_t *id, int rank);

/*
 * Start a collective: bump the sequence number, reset the arrival counters and the deadline, and
 * post the receive of the right neighbour's signature. sig is what this rank passed.
 */
void wf_coll_begin(weft_comm_t comm, const char *name, const wf_signature_t *sig);

/* Data the right neighbour sent after its signature, valid once wf_sig_wait succeeded. */
static inline const void *wf_sig_data(const weft_comm_t comm) { return comm->sig_in + sizeof(wf_signature_t); }

/* Non-zero when the neighbour's signature or another rank's report waits to be looked at. */
static inline int wf_mismatch_pending(const weft_comm_t comm)
{
    return (comm->sig_waiting && comm->sig_in_xfer->done) || comm->report_in_xfer.done;
}

/*
 * Poll the transport once and check the deadline. Returns WEFT_SUCCESS, or the failure (timeout,
 * transport error) already recorded on comm. `waiting_for` names the peer rank awaited, -1 if none,
 * for the timeout message.
 */
weft_result_t wf_comm_progress(weft_comm_t comm, int waiting_for);

/* Choose how long waits spin before yielding: briefly when this node's ranks outnumber our CPUs. */
void wf_comm_set_spin(weft_comm_t comm);

/* Progress until xfer is done; fails on timeout or when the operation failed. */
weft_result_t wf_comm_wait_xfer(weft_comm_t comm, wf_xfer_t *xfer, int peer, const char *what);

/* Progress until arrivals[token] reaches count. */
weft_result_t wf_comm_wait_arrivals(weft_comm_t comm, uint32_t token, uint32_t count, int peer);

/* Reserve n consecutive arrival counters for this collective; returns the first. */
weft_result_t wf_comm_reserve_tokens(weft_comm_t comm, uint32_t n, uint32_t *first);

/*
 * Transport callback while a post waits for queue space: lets other fibers run (wf_exec_idle), and
 * records and reports (non-zero) a lost rank or an expired deadline, so a dead peer's full queue
 * cannot hold the caller.
 */
int wf_comm_should_stop(void *arg);

/* Transport callback: an RDMA write with an immediate landed here. */
void wf_comm_on_remote_write(void *arg, uint32_t immediate);

#endif /* WF_COMM_H */
