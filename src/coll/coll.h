/*
 * Collective algorithms and the point-to-point helpers they share.
 *
 * Every algorithm works on byte ranges and element counts already validated by the API layer
 * (src/api.c), runs to completion before returning, and reports failures through wf_comm_fail.
 * Algorithms use only the transport interface, never libfabric directly.
 *
 * Every algorithm takes part in mismatch detection (src/mismatch.c): before it waits for anything
 * it sends its signature to the left neighbour with wf_sig_send (with the data it has for that
 * neighbour, if any), and it returns through wf_sig_finish, so it succeeds only after the right
 * neighbour's signature matched. Nobody writes into a neighbour's memory before that check.
 */
#ifndef WF_COLL_H
#define WF_COLL_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "reduce.h"

/* A buffer registration held for the duration of one collective. */
typedef struct {
    const wf_mr_t *cached; /* from the cache, released by wf_mr_put */
    wf_mr_t owned;         /* registered for this call only when caching is off */
    int is_owned;
} wf_mr_ref_t;

/* Register [ptr, ptr+length) for this collective (cache hit, or a fresh registration). */
weft_result_t wf_mr_get(weft_comm_t comm, const void *ptr, size_t length, wf_mr_ref_t *ref);
void wf_mr_put(weft_comm_t comm, wf_mr_ref_t *ref);
const wf_mr_t *wf_mr_of(const wf_mr_ref_t *ref);

/* Local descriptor for an eager send or receive from ptr, registering it when the provider needs it. */
weft_result_t wf_eager_desc(weft_comm_t comm, const void *ptr, size_t length, wf_mr_ref_t *ref, void **desc);

/* Post an eager send/receive of one tagged message; bytes beyond max_message are split. */
weft_result_t wf_post_send(weft_comm_t comm, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                           wf_xfer_t *xfer);
weft_result_t wf_post_recv(weft_comm_t comm, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                           wf_xfer_t *xfer);

/*
 * Post RDMA writes of [buf, buf+length) to dest.address + offset, split at the transport's
 * message limit; every piece raises the immediate. Returns the number of pieces in *pieces, which
 * is also the count the receiver must wait for. xfers must have room for wf_write_pieces(length).
 */
weft_result_t wf_post_write(weft_comm_t comm, int peer, const void *buf, size_t length, void *desc,
                            const wf_remote_buffer_t *dest, uint64_t offset, uint32_t immediate, wf_xfer_t *xfers,
                            uint32_t *pieces);
uint32_t wf_write_pieces(weft_comm_t comm, size_t length);

/* Descriptor of ptr inside mr for rank `writer` (-1: no rank writes, and the result is unused). */
static inline wf_remote_buffer_t wf_describe_buffer(const weft_comm_t comm, const wf_mr_t *mr, const void *ptr,
                                                    int writer, uint32_t token)
{
    wf_remote_buffer_t buffer = {0, 0, token, 0};
    if (writer >= 0)
        buffer.address = comm->ops->remote_address(comm->transport, mr, ptr, writer, &buffer.key);
    return buffer;
}

/*
 * Tell `writer` where to write into this rank (mine), and learn from `target` where this rank writes
 * (theirs). Either rank may be -1 to skip that direction. Both descriptors go through the control page.
 */
weft_result_t wf_exchange_buffers(weft_comm_t comm, int writer, const wf_remote_buffer_t *mine, int target,
                                  wf_remote_buffer_t *theirs);

/* Grow the communicator's eager receive area to at least bytes, registered when needed. */
weft_result_t wf_eager_buffer(weft_comm_t comm, size_t bytes, void **buffer, void **desc);

/*
 * Parse WEFT_ALGO and WEFT_TUNING_FILE into comm->select and log the result under TUNE. On an
 * invalid value returns WEFT_ERR_INVALID_ARGUMENT with the message in comm->last_error.
 */
weft_result_t wf_select_init(weft_comm_t comm);

/*
 * Choose the algorithm for one call (select.h defines bytes and block_bytes), WF_ALGO_LOCAL on one
 * rank. Logs the first use of each algorithm per collective and size class at INFO under TUNE.
 */
wf_algo_t wf_select(weft_comm_t comm, wf_coll_t coll, uint64_t bytes, uint64_t block_bytes, double partial_scale);
/* wf_select for the v forms (weft_allgatherv, weft_reduce_scatterv), whose blocks may differ. */
wf_algo_t wf_select_uneven(weft_comm_t comm, wf_coll_t coll, uint64_t bytes, uint64_t block_bytes,
                           double partial_scale);

/* Ring neighbours. */
static inline int wf_right(const weft_comm_t comm) { return (comm->rank + 1) % comm->nranks; }
static inline int wf_left(const weft_comm_t comm) { return (comm->rank + comm->nranks - 1) % comm->nranks; }

/*
 * Tag of a direct algorithm's data message from sender. Its sub-index contains 8 bits of the
 * collective's signature, so a receive never matches data of a rank that passed other arguments.
 */
static inline uint64_t wf_data_tag(const weft_comm_t comm, int sender)
{
    return wf_tag(comm->seq, WF_TAG_DATA, comm->sig_sub, sender);
}

/* Split total elements into nranks blocks; the first total % nranks blocks get one more. */
static inline size_t wf_block_count(size_t total, int nranks, int block)
{
    size_t base = total / (size_t)nranks;
    return base + ((size_t)block < total % (size_t)nranks ? 1 : 0);
}
static inline size_t wf_block_offset(size_t total, int nranks, int block)
{
    size_t base = total / (size_t)nranks, extra = total % (size_t)nranks;
    return base * (size_t)block + ((size_t)block < extra ? (size_t)block : extra);
}

/* Small messages: every rank exchanges with every other rank directly by eager messages. */
weft_result_t wf_allreduce_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                  const wf_reduce_plan_t *plan);
weft_result_t wf_reduce_scatter_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf,
                                       const size_t *counts, const size_t *offsets, const wf_reduce_plan_t *plan);
weft_result_t wf_allgather_direct(weft_comm_t comm, void *recvbuf, const size_t *bytes, const size_t *offsets);
weft_result_t wf_broadcast_direct(weft_comm_t comm, void *buf, size_t bytes, int root);
/* Non-roots send their vector to the root, which reduces in rank order into recvbuf. */
weft_result_t wf_reduce_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                               const wf_reduce_plan_t *plan, int root);

/*
 * Ring algorithms for large messages. Blocks are given per rank in elements (reduce-scatter) or
 * bytes (all-gather). The all-gather writes every block straight into its final place in the
 * peers' recvbuf; the reduce-scatter streams chunks through the receivers' scratch slots.
 */
weft_result_t wf_ring_allgather(weft_comm_t comm, void *recvbuf, size_t total_bytes, const size_t *bytes,
                                const size_t *offsets);
weft_result_t wf_ring_reduce_scatter(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                                     const size_t *offsets, const wf_reduce_plan_t *plan);
/* Ring reduce-scatter, then every rank sends its reduced block (counts/offsets in elements) to root. */
weft_result_t wf_ring_reduce(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                             const size_t *offsets, const wf_reduce_plan_t *plan, int root);
/*
 * Pull algorithms (src/coll/pull.c), for transports with RDMA read. Each rank reads its block out
 * of every peer's send buffer and reduces it. The all-reduce then writes each reduced chunk into
 * every peer's recvbuf.
 */
weft_result_t wf_reduce_scatter_pull(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                                     const size_t *offsets, const wf_reduce_plan_t *plan);
weft_result_t wf_allreduce_pull(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                const wf_reduce_plan_t *plan);
/*
 * Pull all-gather and broadcast (src/coll/pull_gather.c), for transports with RDMA read. The
 * all-gather reads every peer's block (bytes and offsets in recvbuf, per rank) from the peer's
 * recvbuf, where the caller has put each rank's own block. Broadcast readers read the root's buf.
 */
weft_result_t wf_allgather_pull(weft_comm_t comm, void *recvbuf, size_t total_bytes, const size_t *bytes,
                                const size_t *offsets);
weft_result_t wf_broadcast_pull(weft_comm_t comm, void *buf, size_t bytes, int root);
/*
 * Hierarchical algorithms (src/coll/hierarchical.c), in a phase inside each node and a phase
 * across the rails (local rank l of every node). Call them only where wf_hierarchical_fits returns
 * non-zero: the same number (at least 2) of ranks on each of at least 2 nodes and, for a plan,
 * partials of the user type. plan is NULL for the all-gather.
 */
int wf_hierarchical_fits(const weft_comm_t comm, const wf_reduce_plan_t *plan);
/* Reduce-scatter inside each node, all-reduce across the rails, all-gather inside each node. */
weft_result_t wf_allreduce_hierarchical(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                        const wf_reduce_plan_t *plan);
/* All-gather of block bytes per rank across the rails, then inside each node. recvbuf already has this rank's block. */
weft_result_t wf_allgather_hierarchical(weft_comm_t comm, void *recvbuf, size_t block);
/* Reduce-scatter of count elements per rank inside each node, then across the rails. */
weft_result_t wf_reduce_scatter_hierarchical(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                             const wf_reduce_plan_t *plan);
weft_result_t wf_chain_broadcast(weft_comm_t comm, void *buf, size_t bytes, int root);
weft_result_t wf_dissemination_barrier(weft_comm_t comm);

/*
 * Group algorithms run on a list of participating comm ranks, so that they can later run inside a
 * node or across node leaders. Every comm rank of the collective still calls wf_sig_send first
 * and returns through wf_sig_finish. Per-member tables (counts, offsets, bytes) are indexed by
 * member, not by comm rank.
 */
typedef struct {
    int n;             /* members */
    int me;            /* this rank's member index */
    const int *ranks;  /* comm rank of each member, or NULL when member i is comm rank i */
} wf_group_t;

/* The group of every rank of comm, in rank order. */
static inline wf_group_t wf_group_all(const weft_comm_t comm)
{
    return (wf_group_t){comm->nranks, comm->rank, NULL};
}

/*
 * All-reduce by recursive doubling (for small vectors): log2(p) exchanges of the whole vector,
 * with the members beyond the largest power of two p folded into partners first.
 */
weft_result_t wf_allreduce_recursive_doubling(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                              void *recvbuf, size_t count, const wf_reduce_plan_t *plan);
/* All-reduce by Rabenseifner's method: recursive-halving reduce-scatter, recursive-doubling all-gather. */
weft_result_t wf_allreduce_rabenseifner(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                        void *recvbuf, size_t count, const wf_reduce_plan_t *plan);
/*
 * Reduce-scatter by recursive halving. counts and offsets (elements, one per member) must lay the
 * blocks out back to back in member order, as weft_reduce_scatter and weft_reduce_scatterv do.
 */
weft_result_t wf_reduce_scatter_halving(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                        void *recvbuf, const size_t *counts, const size_t *offsets,
                                        const wf_reduce_plan_t *plan);
/* All-gather by Bruck's method in ceil(log2 n) steps, with blocks (bytes, offsets in recvbuf) per member. */
weft_result_t wf_allgather_bruck(weft_comm_t comm, const wf_group_t *group, void *recvbuf, const size_t *bytes,
                                 const size_t *offsets);
/* Broadcast down a binomial tree rooted at member root, in ceil(log2 n) steps, straight into buf. */
weft_result_t wf_broadcast_binomial(weft_comm_t comm, const wf_group_t *group, void *buf, size_t bytes, int root);

/*
 * Ring stream setup and teardown, called at communicator creation and destruction. fini
 * deregisters the regions; free releases their memory, only after the transport is destroyed,
 * because a failed collective may leave a neighbour's write into them in flight until then.
 */
weft_result_t wf_stream_init(weft_comm_t comm);
void wf_stream_fini(weft_comm_t comm);
void wf_stream_free(weft_comm_t comm);

#endif /* WF_COLL_H */
