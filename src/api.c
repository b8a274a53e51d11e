/*
 * Public collective entry points: argument checks, algorithm choice, dispatch.
 *
 * Argument errors are found before any communication, so they leave the communicator usable.
 * The algorithm of each call comes from the selector (src/coll/select.h), which every rank runs
 * on the same arguments and agreed settings, so all ranks make the same choice.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"


/*
 * Per-rank block tables of a collective: up to four arrays of nranks sizes in one allocation
 * (heap, not stack, because a communicator may have up to WF_MAX_RANKS ranks).
 */
size_t *wf_block_tables(weft_comm_t comm, int tables)
{
    size_t *memory = malloc((size_t)tables * (unsigned)comm->nranks * sizeof(size_t));
    if (memory == NULL)
        wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory for %d block tables of %d ranks",
                     comm->coll_name, comm->rank, tables, comm->nranks);
    return memory;
}

static int compare_range_starts(const void *a, const void *b)
{
    const wf_range_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

int wf_first_overlap(wf_range_t *ranges, int count)
{
    qsort(ranges, (size_t)count, sizeof(*ranges), compare_range_starts);
    for (int i = 1; i < count; i++)
        if (ranges[i - 1].end > ranges[i].start)
            return i;
    return -1;
}

/* Checks shared by every collective; name is the API function for messages. */
weft_result_t wf_check_comm(weft_comm_t comm, const char *name)
{
    if (comm == NULL) {
        wf_set_init_error("%s: comm is NULL; create one with weft_comm_init_env or weft_comm_init_rank", name);
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    if (__atomic_load_n(&comm->aborted, __ATOMIC_ACQUIRE) && comm->failure == WEFT_SUCCESS)
        wf_comm_fail(comm, WEFT_ERR_ABORTED, "%s on rank %d: weft_comm_abort was called on this communicator; "
                     "destroy it", name, comm->rank);
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure; /* last_error keeps the original failure */
    return WEFT_SUCCESS;
}

weft_result_t wf_check_type(weft_comm_t comm, const char *name, weft_datatype_t type, size_t count,
                                size_t multiple)
{
    size_t size = wf_datatype_size(type);
    if (size == 0)
        return wf_comm_invalid(comm, "%s on rank %d: datatype %d is not a weft_datatype_t value; use WEFT_INT8 .. WEFT_FLOAT64",
                               name, comm->rank, (int)type);
    size_t bytes; /* checked by multiplication, because the two 64-bit divisions it replaced showed in profiles */
    if (__builtin_mul_overflow(count, size, &bytes) || __builtin_mul_overflow(bytes, multiple, &bytes))
        return wf_comm_invalid(comm, "%s on rank %d: count %zu of %s overflows the address space", name, comm->rank, count,
                               wf_datatype_name(type));
    return WEFT_SUCCESS;
}

weft_result_t wf_check_op(weft_comm_t comm, const char *name, weft_op_t op)
{
    if ((int)op < 0 || (int)op >= WF_OP_COUNT)
        return wf_comm_invalid(comm, "%s on rank %d: op %d is not a weft_op_t value; use WEFT_SUM, WEFT_PROD, WEFT_MIN, "
                               "WEFT_MAX or WEFT_AVG", name, comm->rank, (int)op);
    return WEFT_SUCCESS;
}

weft_result_t wf_check_buffer(weft_comm_t comm, const char *name, const char *which, const void *buf)
{
    if (buf == NULL)
        return wf_comm_invalid(comm, "%s on rank %d: %s is NULL with a non-zero count", name, comm->rank, which);
    return WEFT_SUCCESS;
}

/* Out-of-place buffers must not overlap: the algorithms read one while they write the other. */
weft_result_t wf_check_overlap(weft_comm_t comm, const char *name, const void *a, size_t a_bytes, const void *b,
                                   size_t b_bytes, const char *in_place_rule)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    if (a0 < b0 + b_bytes && b0 < a0 + a_bytes)
        return wf_comm_invalid(comm, "%s on rank %d: sendbuf %p and recvbuf %p overlap without being in place; "
                               "in place means %s", name, comm->rank, a, b, in_place_rule);
    return WEFT_SUCCESS;
}

weft_result_t wf_plan_for(weft_comm_t comm, const char *name, weft_datatype_t type, weft_op_t op,
                              wf_reduce_plan_t *plan)
{
    if (wf_reduce_plan(plan, type, op, comm->native_precision) != 0)
        return wf_comm_invalid(comm, "%s on rank %d: no reduction for datatype %d and op %d", name, comm->rank,
                               (int)type, (int)op);
    return WEFT_SUCCESS;
}

weft_result_t wf_allreduce_checked(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                   const wf_reduce_plan_t *plan)
{
    size_t size = plan->user_size, bytes = count * size;
    weft_result_t result;
    wf_coll_begin(comm, "allreduce", WF_SIGNATURE(WF_KIND_ALLREDUCE, count, plan->type, plan->op, -1, 0));
    int n = comm->nranks;
    wf_group_t group = wf_group_all(comm);
    switch (wf_select(comm, WF_COLL_ALLREDUCE, bytes, bytes, wf_partial_scale(plan))) {
    case WF_ALGO_LOCAL:
        if (sendbuf != recvbuf)
            memcpy(recvbuf, sendbuf, bytes); /* one rank: every op is the identity */
        return WEFT_SUCCESS;
    case WF_ALGO_DIRECT:
        return wf_allreduce_direct(comm, sendbuf, recvbuf, count, plan);
    case WF_ALGO_RECURSIVE_DOUBLING:
        return wf_allreduce_recursive_doubling(comm, &group, sendbuf, recvbuf, count, plan);
    case WF_ALGO_RABENSEIFNER:
        return wf_allreduce_rabenseifner(comm, &group, sendbuf, recvbuf, count, plan);
    case WF_ALGO_PULL:
        return wf_allreduce_pull(comm, sendbuf, recvbuf, count, plan);
    case WF_ALGO_HIERARCHICAL:
        /* Every rank has the same node map and plan, so all of them take the same branch. */
        if (wf_hierarchical_fits(comm, plan))
            return wf_allreduce_hierarchical(comm, sendbuf, recvbuf, count, plan);
        break;
    default:
        break;
    }

    /* Ring: reduce-scatter into this rank's block of recvbuf, then all-gather the blocks in place. */
    size_t *counts = wf_block_tables(comm, 4);
    if (counts == NULL)
        return comm->failure;
    size_t *offsets = counts + n, *block_bytes = counts + 2 * n, *block_offsets = counts + 3 * n;
    for (int r = 0; r < n; r++) {
        counts[r] = wf_block_count(count, n, r);
        offsets[r] = wf_block_offset(count, n, r);
        block_bytes[r] = counts[r] * size;
        block_offsets[r] = offsets[r] * size;
    }
    result = wf_ring_reduce_scatter(comm, sendbuf, (char *)recvbuf + block_offsets[comm->rank], counts, offsets, plan);
    if (result == WEFT_SUCCESS)
        result = wf_ring_allgather(comm, recvbuf, bytes, block_bytes, block_offsets);
    free(counts);
    return result;
}

/* A non-blocking call needs somewhere to put its request. */
static weft_result_t check_request(weft_comm_t comm, const char *name, weft_request_t *request)
{
    if (request == NULL)
        return wf_comm_invalid(comm, "%s on rank %d: request is NULL; pass the address of a weft_request_t", name,
                               comm->rank);
    *request = NULL;
    return WEFT_SUCCESS;
}

/* Checks shared by the blocking and non-blocking entry points of each collective. */
static weft_result_t check_call(weft_comm_t comm, const char *name, weft_request_t *request, int nonblocking)
{
    weft_result_t result = wf_check_comm(comm, name);
    if (result == WEFT_SUCCESS && nonblocking)
        result = check_request(comm, name, request);
    return result;
}

static weft_result_t run_allreduce(weft_comm_t comm, const wf_op_t *op)
{
    return wf_allreduce_checked(comm, op->sendbuf, op->recvbuf, op->count, &op->plan);
}

static weft_result_t start_allreduce(const char *name, const void *sendbuf, void *recvbuf, size_t count,
                                     weft_datatype_t datatype, weft_op_t op, weft_comm_t comm, weft_request_t *request,
                                     int nonblocking)
{
    weft_result_t result = check_call(comm, name, request, nonblocking);
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, count, 1);
    if (result == WEFT_SUCCESS)
        result = wf_check_op(comm, name, op);
    if (result != WEFT_SUCCESS)
        return result;
    wf_op_t call = {.run = NULL, .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .datatype = datatype,
                    .reduce_op = op};
    if (count > 0) {
        size_t bytes = count * wf_datatype_size(datatype);
        if ((result = wf_check_buffer(comm, name, "sendbuf", sendbuf)) != WEFT_SUCCESS ||
            (result = wf_check_buffer(comm, name, "recvbuf", recvbuf)) != WEFT_SUCCESS)
            return result;
        if (sendbuf != recvbuf && (result = wf_check_overlap(comm, name, sendbuf, bytes, recvbuf, bytes,
                                                             "sendbuf == recvbuf")) != WEFT_SUCCESS)
            return result;
        if ((result = wf_plan_for(comm, name, datatype, op, &call.plan)) != WEFT_SUCCESS)
            return result;
        call.run = run_allreduce;
    }
    return wf_exec_submit(comm, &call, request);
}

WEFT_API weft_result_t weft_allreduce(const void *sendbuf, void *recvbuf, size_t count, weft_datatype_t datatype,
                                      weft_op_t op, weft_comm_t comm)
{
    return start_allreduce("weft_allreduce", sendbuf, recvbuf, count, datatype, op, comm, NULL, 0);
}

WEFT_API weft_result_t weft_iallreduce(const void *sendbuf, void *recvbuf, size_t count, weft_datatype_t datatype,
                                       weft_op_t op, weft_comm_t comm, weft_request_t *request)
{
    return start_allreduce("weft_iallreduce", sendbuf, recvbuf, count, datatype, op, comm, request, 1);
}

static weft_result_t run_allgather(weft_comm_t comm, const wf_op_t *op)
{
    int n = comm->nranks;
    size_t block = op->count * wf_datatype_size(op->datatype), total = block * (size_t)n;
    char *own = (char *)op->recvbuf + block * (size_t)comm->rank;
    weft_result_t result;

    wf_coll_begin(comm, "allgather",
                  WF_SIGNATURE(WF_KIND_ALLGATHER, op->count, op->datatype, WF_SIG_NONE, -1, 0));
    if (op->sendbuf != own) {
        memcpy(own, op->sendbuf, block);
        comm->stats.local_copy_bytes += block;
    }
    wf_algo_t algo = wf_select(comm, WF_COLL_ALLGATHER, total, block, 1.0);
    if (algo == WF_ALGO_LOCAL)
        return WEFT_SUCCESS;
    if (algo == WF_ALGO_HIERARCHICAL && wf_hierarchical_fits(comm, NULL))
        return wf_allgather_hierarchical(comm, op->recvbuf, block); /* else the ring, on every rank alike */
    size_t stack_tables[2 * WF_STACK_TABLE_RANKS];
    size_t *bytes = n <= WF_STACK_TABLE_RANKS ? stack_tables : wf_block_tables(comm, 2);
    if (bytes == NULL)
        return comm->failure;
    size_t *offsets = bytes + n;
    for (int r = 0; r < n; r++) {
        bytes[r] = block;
        offsets[r] = block * (size_t)r;
    }
    wf_group_t group = wf_group_all(comm);
    if (algo == WF_ALGO_DIRECT)
        result = wf_allgather_direct(comm, op->recvbuf, bytes, offsets);
    else if (algo == WF_ALGO_BRUCK)
        result = wf_allgather_bruck(comm, &group, op->recvbuf, bytes, offsets);
    else if (algo == WF_ALGO_PULL)
        result = wf_allgather_pull(comm, op->recvbuf, total, bytes, offsets);
    else
        result = wf_ring_allgather(comm, op->recvbuf, total, bytes, offsets);
    if (bytes != stack_tables)
        free(bytes);
    return result;
}

static weft_result_t start_allgather(const char *name, const void *sendbuf, void *recvbuf, size_t sendcount,
                                     weft_datatype_t datatype, weft_comm_t comm, weft_request_t *request,
                                     int nonblocking)
{
    weft_result_t result = check_call(comm, name, request, nonblocking);
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, sendcount, (size_t)comm->nranks);
    if (result != WEFT_SUCCESS)
        return result;
    wf_op_t call = {.run = NULL, .sendbuf = sendbuf, .recvbuf = recvbuf, .count = sendcount, .datatype = datatype};
    if (sendcount > 0) {
        size_t block = sendcount * wf_datatype_size(datatype), total = block * (size_t)comm->nranks;
        char *own = (char *)recvbuf + block * (size_t)comm->rank;
        if ((result = wf_check_buffer(comm, name, "sendbuf", sendbuf)) != WEFT_SUCCESS ||
            (result = wf_check_buffer(comm, name, "recvbuf", recvbuf)) != WEFT_SUCCESS)
            return result;
        if (sendbuf != own && (result = wf_check_overlap(comm, name, sendbuf, block, recvbuf, total,
                                                         "sendbuf == recvbuf + rank*sendcount")) != WEFT_SUCCESS)
            return result;
        call.run = run_allgather;
    }
    return wf_exec_submit(comm, &call, request);
}

WEFT_API weft_result_t weft_allgather(const void *sendbuf, void *recvbuf, size_t sendcount, weft_datatype_t datatype,
                                      weft_comm_t comm)
{
    return start_allgather("weft_allgather", sendbuf, recvbuf, sendcount, datatype, comm, NULL, 0);
}

WEFT_API weft_result_t weft_iallgather(const void *sendbuf, void *recvbuf, size_t sendcount,
                                       weft_datatype_t datatype, weft_comm_t comm, weft_request_t *request)
{
    return start_allgather("weft_iallgather", sendbuf, recvbuf, sendcount, datatype, comm, request, 1);
}

static weft_result_t run_reduce_scatter(weft_comm_t comm, const wf_op_t *op)
{
    int n = comm->nranks;
    size_t block = op->count * op->plan.user_size, total = block * (size_t)n;
    weft_result_t result;

    wf_coll_begin(comm, "reduce_scatter", WF_SIGNATURE(WF_KIND_REDUCE_SCATTER, op->count, op->datatype, op->reduce_op, -1, 0));
    wf_algo_t algo = wf_select(comm, WF_COLL_REDUCE_SCATTER, total, block, wf_partial_scale(&op->plan));
    if (algo == WF_ALGO_LOCAL) {
        if (op->recvbuf != op->sendbuf)
            memcpy(op->recvbuf, op->sendbuf, block);
        return WEFT_SUCCESS;
    }
    if (algo == WF_ALGO_HIERARCHICAL && wf_hierarchical_fits(comm, &op->plan))
        return wf_reduce_scatter_hierarchical(comm, op->sendbuf, op->recvbuf, op->count, &op->plan);
    size_t stack_tables[2 * WF_STACK_TABLE_RANKS];
    size_t *counts = n <= WF_STACK_TABLE_RANKS ? stack_tables : wf_block_tables(comm, 2);
    if (counts == NULL)
        return comm->failure;
    size_t *offsets = counts + n;
    for (int r = 0; r < n; r++) {
        counts[r] = op->count;
        offsets[r] = op->count * (size_t)r;
    }
    wf_group_t group = wf_group_all(comm);
    if (algo == WF_ALGO_DIRECT)
        result = wf_reduce_scatter_direct(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
    else if (algo == WF_ALGO_RECURSIVE_HALVING)
        result = wf_reduce_scatter_halving(comm, &group, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
    else if (algo == WF_ALGO_PULL)
        result = wf_reduce_scatter_pull(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
    else
        result = wf_ring_reduce_scatter(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
    if (counts != stack_tables)
        free(counts);
    return result;
}

static weft_result_t start_reduce_scatter(const char *name, const void *sendbuf, void *recvbuf, size_t recvcount,
                                          weft_datatype_t datatype, weft_op_t op, weft_comm_t comm,
                                          weft_request_t *request, int nonblocking)
{
    weft_result_t result = check_call(comm, name, request, nonblocking);
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, recvcount, (size_t)comm->nranks);
    if (result == WEFT_SUCCESS)
        result = wf_check_op(comm, name, op);
    if (result != WEFT_SUCCESS)
        return result;
    wf_op_t call = {.run = NULL, .sendbuf = sendbuf, .recvbuf = recvbuf, .count = recvcount, .datatype = datatype,
                    .reduce_op = op};
    if (recvcount > 0) {
        size_t block = recvcount * wf_datatype_size(datatype), total = block * (size_t)comm->nranks;
        const char *in_place = (const char *)sendbuf + block * (size_t)comm->rank;
        if ((result = wf_check_buffer(comm, name, "sendbuf", sendbuf)) != WEFT_SUCCESS ||
            (result = wf_check_buffer(comm, name, "recvbuf", recvbuf)) != WEFT_SUCCESS)
            return result;
        if (recvbuf != in_place && (result = wf_check_overlap(comm, name, sendbuf, total, recvbuf, block,
                                                              "recvbuf == sendbuf + rank*recvcount")) != WEFT_SUCCESS)
            return result;
        if ((result = wf_plan_for(comm, name, datatype, op, &call.plan)) != WEFT_SUCCESS)
            return result;
        call.run = run_reduce_scatter;
    }
    return wf_exec_submit(comm, &call, request);
}

WEFT_API weft_result_t weft_reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                           weft_datatype_t datatype, weft_op_t op, weft_comm_t comm)
{
    return start_reduce_scatter("weft_reduce_scatter", sendbuf, recvbuf, recvcount, datatype, op, comm, NULL, 0);
}

WEFT_API weft_result_t weft_ireduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount,
                                            weft_datatype_t datatype, weft_op_t op, weft_comm_t comm,
                                            weft_request_t *request)
{
    return start_reduce_scatter("weft_ireduce_scatter", sendbuf, recvbuf, recvcount, datatype, op, comm, request, 1);
}

static weft_result_t run_broadcast(weft_comm_t comm, const wf_op_t *op)
{
    size_t bytes = op->count * wf_datatype_size(op->datatype);
    wf_coll_begin(comm, "broadcast",
                  WF_SIGNATURE(WF_KIND_BROADCAST, op->count, op->datatype, WF_SIG_NONE, op->root, 0));
    wf_group_t group = wf_group_all(comm);
    switch (wf_select(comm, WF_COLL_BROADCAST, bytes, bytes, 1.0)) {
    case WF_ALGO_LOCAL:
        return WEFT_SUCCESS;
    case WF_ALGO_DIRECT:
        return wf_broadcast_direct(comm, op->recvbuf, bytes, op->root);
    case WF_ALGO_BINOMIAL:
        return wf_broadcast_binomial(comm, &group, op->recvbuf, bytes, op->root);
    case WF_ALGO_PULL:
        return wf_broadcast_pull(comm, op->recvbuf, bytes, op->root);
    default:
        return wf_chain_broadcast(comm, op->recvbuf, bytes, op->root);
    }
}

static weft_result_t start_broadcast(const char *name, void *buf, size_t count, weft_datatype_t datatype, int root,
                                     weft_comm_t comm, weft_request_t *request, int nonblocking)
{
    weft_result_t result = check_call(comm, name, request, nonblocking);
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, count, 1);
    if (result == WEFT_SUCCESS && (root < 0 || root >= comm->nranks))
        result = wf_comm_invalid(comm, "%s on rank %d: root %d is outside 0..%d", name, comm->rank, root,
                                 comm->nranks - 1);
    if (result == WEFT_SUCCESS && count > 0)
        result = wf_check_buffer(comm, name, "buf", buf);
    if (result != WEFT_SUCCESS)
        return result;
    wf_op_t call = {.run = count > 0 ? run_broadcast : NULL, .recvbuf = buf, .count = count, .datatype = datatype,
                    .root = root};
    return wf_exec_submit(comm, &call, request);
}

WEFT_API weft_result_t weft_broadcast(void *buf, size_t count, weft_datatype_t datatype, int root, weft_comm_t comm)
{
    return start_broadcast("weft_broadcast", buf, count, datatype, root, comm, NULL, 0);
}

WEFT_API weft_result_t weft_ibroadcast(void *buf, size_t count, weft_datatype_t datatype, int root, weft_comm_t comm,
                                       weft_request_t *request)
{
    return start_broadcast("weft_ibroadcast", buf, count, datatype, root, comm, request, 1);
}

static weft_result_t run_barrier(weft_comm_t comm, const wf_op_t *op)
{
    (void)op;
    wf_coll_begin(comm, "barrier", WF_SIGNATURE(WF_KIND_BARRIER, 0, WF_SIG_NONE, WF_SIG_NONE, -1, 0));
    if (wf_select(comm, WF_COLL_BARRIER, 0, 0, 1.0) == WF_ALGO_LOCAL)
        return WEFT_SUCCESS;
    return wf_dissemination_barrier(comm);
}

WEFT_API weft_result_t weft_barrier(weft_comm_t comm)
{
    weft_result_t result = check_call(comm, "weft_barrier", NULL, 0);
    wf_op_t call = {.run = run_barrier};
    return result != WEFT_SUCCESS ? result : wf_exec_submit(comm, &call, NULL);
}

WEFT_API weft_result_t weft_ibarrier(weft_comm_t comm, weft_request_t *request)
{
    weft_result_t result = check_call(comm, "weft_ibarrier", request, 1);
    wf_op_t call = {.run = run_barrier};
    return result != WEFT_SUCCESS ? result : wf_exec_submit(comm, &call, request);
}
