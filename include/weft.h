/*
 * weft: RDMA-native collectives for HPC and training codes.
 *
 * This is the only public header. It depends on nothing but the C standard library.
 *
 * Conventions shared by every call below:
 * - Argument order follows NCCL: send buffer, receive buffer, count, datatype, op, communicator.
 * - Counts are in elements, not bytes, and are size_t: more than 2^31 elements work.
 * - count == 0 is valid and completes at once; buffers may then be NULL.
 * - Collectives on one communicator must be called in the same order on every rank.
 * - One thread at a time may use a communicator; different communicators are independent.
 * - A failed collective leaves the communicator usable only for weft_comm_destroy, unless the
 *   result is WEFT_ERR_INVALID_ARGUMENT, which is detected before any communication.
 * - weft_comm_last_error returns a sentence that names the failing value, rank and what to do.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

typedef enum {
    WEFT_SUCCESS = 0,
    WEFT_IN_PROGRESS,          /* weft_test: the request has not completed yet */
    WEFT_ERR_INVALID_ARGUMENT, /* bad pointer, count, datatype, op or root on the calling rank */
    WEFT_ERR_MISMATCH,         /* ranks called collectives that do not match (kind, count, type, op, root) */
    WEFT_ERR_TIMEOUT,          /* a collective or init did not finish within WEFT_TIMEOUT */
    WEFT_ERR_REMOTE,           /* a peer failed, exited or aborted */
    WEFT_ERR_TRANSPORT,        /* the fabric (libfabric) reported an error */
    WEFT_ERR_NO_MEMORY,
    WEFT_ERR_UNSUPPORTED,      /* valid request this build or fabric cannot serve */
    WEFT_ERR_ABORTED,          /* weft_comm_abort was called on this communicator */
    WEFT_ERR_INTERNAL
} weft_result_t;

typedef enum {
    WEFT_INT8,
    WEFT_UINT8,
    WEFT_INT32,
    WEFT_UINT32,
    WEFT_INT64,
    WEFT_UINT64,
    WEFT_FLOAT16,  /* IEEE 754 binary16 */
    WEFT_BFLOAT16, /* upper 16 bits of an IEEE 754 binary32 */
    WEFT_FLOAT32,
    WEFT_FLOAT64
} weft_datatype_t;

/*
 * WEFT_AVG is the sum divided by the number of ranks, computed without overflow in the element
 * type; integers are truncated toward zero. Integer sum and prod wrap modulo 2^bits. NaN from any
 * rank propagates through sum, min and max. float16 and bfloat16 reduce in float32 and are rounded
 * once, to nearest even, unless WEFT_REDUCE_PRECISION=native.
 */
typedef enum { WEFT_SUM, WEFT_PROD, WEFT_MIN, WEFT_MAX, WEFT_AVG } weft_op_t;

typedef struct weft_comm *weft_comm_t;

/* A non-blocking collective in flight; weft_wait releases it. */
typedef struct weft_request *weft_request_t;

/* Opaque rendezvous token: create it on one process, send its bytes to every rank yourself. */
typedef struct {
    unsigned char bytes[128];
} weft_unique_id_t;

/* Transfer counters of one communicator since it was created (see weft_comm_get_stats). */
typedef struct {
    uint64_t rdma_write_bytes; /* payload moved by RDMA write straight into a peer's buffer */
    uint64_t rdma_writes;      /* number of RDMA writes posted */
    uint64_t eager_bytes;      /* payload moved by eager (send/receive) messages */
    uint64_t staged_copy_bytes; /* payload copied through an intermediate buffer by weft itself */
    uint64_t local_copy_bytes; /* own block copied from sendbuf to recvbuf (out-of-place calls) */
    uint64_t mr_cache_hits;    /* buffer lookups served by the registration cache */
    uint64_t mr_cache_misses;  /* buffers that had to be registered */
} weft_stats_t;

/* Library version as "MAJOR.MINOR.PATCH". */
WEFT_API const char *weft_version(void);

/* Short constant description of a result code; never NULL. */
WEFT_API const char *weft_result_string(weft_result_t result);

/*
 * Detail of the last failure on this communicator, or of the last failed init on this thread
 * when comm is NULL. The string stays valid until the next call on the same communicator.
 */
WEFT_API const char *weft_comm_last_error(weft_comm_t comm);

/*
 * Create a communicator from the environment. Tried in order: WEFT_ROOT=host:port with
 * WEFT_RANK and WEFT_SIZE; PMIx when started by a PMIx launcher (mpirun, srun --mpi=pmix);
 * torchrun's MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE. Collective over every rank of the job.
 * Returns WEFT_ERR_INVALID_ARGUMENT for unparsable variables, WEFT_ERR_TIMEOUT when peers do not
 * arrive within WEFT_TIMEOUT seconds, WEFT_ERR_TRANSPORT when no fabric provider can be opened.
 */
WEFT_API weft_result_t weft_comm_init_env(weft_comm_t *comm);

/*
 * Fill *id with a fresh rendezvous token whose creator serves the rendezvous. Call it on one
 * process, share the bytes with every rank (for example with MPI_Bcast), then call
 * weft_comm_init_rank everywhere. The creating process serves the rendezvous, which the ranks also
 * use to agree in weft_comm_destroy, so it must stay alive until every rank has destroyed its
 * communicator (it normally is one of the ranks). The token carries the job secret: treat it as a
 * credential.
 */
WEFT_API weft_result_t weft_get_unique_id(weft_unique_id_t *id);

/* Create a communicator of nranks ranks in which the caller is rank `rank`; collective. */
WEFT_API weft_result_t weft_comm_init_rank(weft_comm_t *comm, int nranks, const weft_unique_id_t *id,
                                           int rank);

/*
 * Split comm into groups of the ranks that pass the same color. Within a group, new ranks follow
 * key, and ties are broken by the rank in comm. A negative color gives *newcomm = NULL, as MPI_UNDEFINED
 * does. Collective over every rank of comm. The new communicator has its own endpoint and may be
 * used from another thread while comm is in use.
 */
WEFT_API weft_result_t weft_comm_split(weft_comm_t comm, int color, int key, weft_comm_t *newcomm);

/*
 * Make every call on comm that is blocked, or made later, return WEFT_ERR_ABORTED promptly. Any
 * thread may call it, also while another thread is inside a collective on comm. The
 * communicator is then good only for weft_comm_destroy, which leaves the job without the usual
 * goodbye, so the other ranks' calls fail at once with WEFT_ERR_REMOTE naming this rank.
 */
WEFT_API weft_result_t weft_comm_abort(weft_comm_t comm);

/* Release the communicator and every resource it holds. Collective when the communicator is healthy. */
WEFT_API weft_result_t weft_comm_destroy(weft_comm_t comm);

/* Rank of the caller in comm, or -1 when comm is NULL. */
WEFT_API int weft_comm_rank(weft_comm_t comm);

/* Number of ranks in comm, or -1 when comm is NULL. */
WEFT_API int weft_comm_size(weft_comm_t comm);

/* Copy the transfer counters of comm into *stats. */
WEFT_API weft_result_t weft_comm_get_stats(weft_comm_t comm, weft_stats_t *stats);

/* Name of the transport comm moves data with: "shm (weft)" for weft's shared-memory transport, or
 * the libfabric provider, such as "tcp;ofi_rxm". The string lives as long as comm, and is "" for a
 * NULL comm. */
WEFT_API const char *weft_comm_provider(weft_comm_t comm);

/* Element-wise reduction of count elements over all ranks; every rank receives the result.
 * In place when sendbuf == recvbuf. */
WEFT_API weft_result_t weft_allreduce(const void *sendbuf, void *recvbuf, size_t count,
                                      weft_datatype_t datatype, weft_op_t op, weft_comm_t comm);

/* Gather sendcount elements from every rank; rank r's block lands at recvbuf + r*sendcount.
 * In place when sendbuf == recvbuf + rank*sendcount (in elements). */
WEFT_API weft_result_t weft_allgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                      weft_datatype_t datatype, weft_comm_t comm);

/* Reduce nranks*recvcount elements over all ranks; rank r receives reduced block r.
 * In place when recvbuf == sendbuf + rank*recvcount (in elements). */
WEFT_API weft_result_t weft_reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                           weft_datatype_t datatype, weft_op_t op, weft_comm_t comm);

/* Copy count elements of buf on rank root to buf on every other rank. */
WEFT_API weft_result_t weft_broadcast(void *buf, size_t count, weft_datatype_t datatype, int root,
                                      weft_comm_t comm);

/*
 * Reduce count elements over all ranks into recvbuf of rank root. recvbuf is only used on the root
 * and may be NULL elsewhere. In place on the root when sendbuf == recvbuf.
 */
WEFT_API weft_result_t weft_reduce(const void *sendbuf, void *recvbuf, size_t count, weft_datatype_t datatype,
                                   weft_op_t op, int root, weft_comm_t comm);

/*
 * Uneven all-gather: rank r contributes recvcounts[r] elements, which land at recvbuf + displs[r]
 * (both in elements) on every rank. sendcount must equal recvcounts[rank]. Counts may be zero,
 * displacements may leave gaps and need not increase with the rank, but the ranges of two ranks
 * must not overlap. Every rank passes the same recvcounts and displs. In place when
 * sendbuf == recvbuf + displs[rank].
 */
WEFT_API weft_result_t weft_allgatherv(const void *sendbuf, size_t sendcount, void *recvbuf, const size_t *recvcounts,
                                       const size_t *displs, weft_datatype_t datatype, weft_comm_t comm);

/*
 * Uneven reduce-scatter: sendbuf contains recvcounts[0] + ... + recvcounts[nranks-1] elements, block
 * after block in rank order, and rank r receives reduced block r (recvcounts[r] elements). Every
 * rank passes the same recvcounts. In place when recvbuf == sendbuf + (recvcounts[0] + ... +
 * recvcounts[rank-1]).
 */
WEFT_API weft_result_t weft_reduce_scatterv(const void *sendbuf, void *recvbuf, const size_t *recvcounts,
                                            weft_datatype_t datatype, weft_op_t op, weft_comm_t comm);

/*
 * All-reduce nbufs buffers in place, bufs[i] holding counts[i] elements, as if each were reduced by
 * its own weft_allreduce. Small buffers are packed into one collective, which is much faster than
 * a call per buffer for gradient buckets. Every rank passes the same nbufs and counts; buffers must
 * not overlap.
 */
WEFT_API weft_result_t weft_allreduce_multi(void *const *bufs, const size_t *counts, int nbufs,
                                            weft_datatype_t datatype, weft_op_t op, weft_comm_t comm);

/* Return on every rank only after every rank has entered the barrier. */
WEFT_API weft_result_t weft_barrier(weft_comm_t comm);

/*
 * Non-blocking forms. Same arguments as the blocking call plus *request; buffers (and the v-form's
 * arrays, which are copied) must stay untouched until the request completes. Any number may be
 * outstanding. On one communicator they complete in the order they were issued, and a blocking
 * call issued meanwhile runs after them. They advance inside weft_test, weft_wait and blocking
 * calls of the same thread, or all the time with WEFT_PROGRESS_THREAD=1. An argument error is
 * returned at once, with *request set to NULL.
 */
WEFT_API weft_result_t weft_iallreduce(const void *sendbuf, void *recvbuf, size_t count, weft_datatype_t datatype,
                                       weft_op_t op, weft_comm_t comm, weft_request_t *request);
WEFT_API weft_result_t weft_iallgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                       weft_datatype_t datatype, weft_comm_t comm, weft_request_t *request);
WEFT_API weft_result_t weft_ireduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                            weft_datatype_t datatype, weft_op_t op, weft_comm_t comm,
                                            weft_request_t *request);
WEFT_API weft_result_t weft_ibroadcast(void *buf, size_t count, weft_datatype_t datatype, int root,
                                       weft_comm_t comm, weft_request_t *request);
WEFT_API weft_result_t weft_ibarrier(weft_comm_t comm, weft_request_t *request);
WEFT_API weft_result_t weft_iallgatherv(const void *sendbuf, size_t sendcount, void *recvbuf,
                                        const size_t *recvcounts, const size_t *displs, weft_datatype_t datatype,
                                        weft_comm_t comm, weft_request_t *request);

/*
 * Advance the request a little and return WEFT_IN_PROGRESS, or its result once it completed
 * (WEFT_SUCCESS or the collective's error). Does not release the request: call weft_wait.
 */
WEFT_API weft_result_t weft_test(weft_request_t request);

/*
 * Block until the request completed, release it and return its result. Requests may be waited on
 * in any order; waiting on one also completes the requests issued before it on its communicator.
 * A request stays valid after weft_comm_destroy (which completes it) until it is waited on.
 */
WEFT_API weft_result_t weft_wait(weft_request_t request);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
