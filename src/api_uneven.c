/*
 * Public entry points of the rooted reduce and the uneven collectives (all-gather-v and
 * reduce-scatter-v). They reuse the algorithms of the even forms, which already take one count and
 * one offset per rank.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

/*
 * Check recvcounts and displs of all-gather-v: no element count overflows, no two non-empty ranges
 * overlap. Sets *total to the end of the furthest range, in elements.
 */
static weft_result_t check_layout(weft_comm_t comm, const char *name, const size_t *counts, const size_t *displs,
                                  size_t size, size_t *total)
{
    int n = comm->nranks;
    *total = 0;
    for (int r = 0; r < n; r++) {
        if (displs[r] > SIZE_MAX / size || counts[r] > SIZE_MAX / size - displs[r])
            return wf_comm_invalid(comm, "%s on rank %d: recvcounts[%d] = %zu at displs[%d] = %zu overflows the "
                                   "address space", name, comm->rank, r, counts[r], r, displs[r]);
        if (counts[r] > 0 && displs[r] + counts[r] > *total)
            *total = displs[r] + counts[r];
    }

    wf_range_t *ranges = malloc((unsigned)n * sizeof(*ranges));
    if (ranges == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory", name, comm->rank);
    int used = 0;
    for (int r = 0; r < n; r++)
        if (counts[r] > 0)
            ranges[used++] = (wf_range_t){displs[r], displs[r] + counts[r], r};
    int overlap = wf_first_overlap(ranges, used);
    weft_result_t result = WEFT_SUCCESS;
    if (overlap > 0) {
        int a = ranges[overlap - 1].index, b = ranges[overlap].index;
        result = wf_comm_invalid(comm, "%s on rank %d: the ranges of rank %d (displs %zu, count %zu) and rank %d "
                                 "(displs %zu, count %zu) overlap; give every rank its own part of recvbuf",
                                 name, comm->rank, a, displs[a], counts[a], b, displs[b], counts[b]);
    }
    free(ranges);
    return result;
}

static weft_result_t run_allgatherv(weft_comm_t comm, const wf_op_t *op)
{
    const size_t *recvcounts = op->counts, *displs = op->displs;
    size_t size = wf_datatype_size(op->datatype), own_bytes = op->count * size, total = 0, largest = 0;
    char *own = (char *)op->recvbuf + displs[comm->rank] * size;
    weft_result_t result = WEFT_SUCCESS;

    size_t sum = 0;
    for (int r = 0; r < comm->nranks; r++)
        sum += recvcounts[r];
    wf_coll_begin(comm, "allgatherv", WF_SIGNATURE(WF_KIND_ALLGATHERV, sum, op->datatype, WF_SIG_NONE, -1,
                                                   wf_layout_hash(recvcounts, displs, comm->nranks)));
    if (own_bytes > 0 && op->sendbuf != own) {
        memcpy(own, op->sendbuf, own_bytes);
        comm->stats.local_copy_bytes += own_bytes;
    }
    size_t *bytes = wf_block_tables(comm, 2);
    if (bytes == NULL)
        return comm->failure;
    size_t *offsets = bytes + comm->nranks;
    for (int r = 0; r < comm->nranks; r++) {
        bytes[r] = recvcounts[r] * size;
        offsets[r] = displs[r] * size;
        largest = bytes[r] > largest ? bytes[r] : largest;
        if (bytes[r] > 0 && offsets[r] + bytes[r] > total)
            total = offsets[r] + bytes[r];
    }
    wf_group_t group = wf_group_all(comm);
    switch (wf_select_uneven(comm, WF_COLL_ALLGATHER, total, largest, 1.0)) {
    case WF_ALGO_LOCAL:
        break;
    case WF_ALGO_DIRECT:
        result = wf_allgather_direct(comm, op->recvbuf, bytes, offsets);
        break;
    case WF_ALGO_BRUCK:
        result = wf_allgather_bruck(comm, &group, op->recvbuf, bytes, offsets);
        break;
    case WF_ALGO_PULL:
        result = wf_allgather_pull(comm, op->recvbuf, total, bytes, offsets);
        break;
    default:
        result = wf_ring_allgather(comm, op->recvbuf, total, bytes, offsets);
        break;
    }
    free(bytes);
    return result;
}

static weft_result_t start_allgatherv(const char *name, const void *sendbuf, size_t sendcount, void *recvbuf,
                                      const size_t *recvcounts, const size_t *displs, weft_datatype_t datatype,
                                      weft_comm_t comm, weft_request_t *request, int nonblocking)
{
    weft_result_t result = wf_check_comm(comm, name);
    if (result == WEFT_SUCCESS && nonblocking && request == NULL)
        result = wf_comm_invalid(comm, "%s on rank %d: request is NULL; pass the address of a weft_request_t", name,
                                 comm->rank);
    if (result == WEFT_SUCCESS && nonblocking)
        *request = NULL;
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, sendcount, 1);
    if (result != WEFT_SUCCESS)
        return result;
    if (recvcounts == NULL || displs == NULL)
        return wf_comm_invalid(comm, "%s on rank %d: %s is NULL; pass one entry per rank", name, comm->rank,
                               recvcounts == NULL ? "recvcounts" : "displs");
    if (sendcount != recvcounts[comm->rank])
        return wf_comm_invalid(comm, "%s on rank %d: sendcount %zu differs from recvcounts[%d] = %zu; they must be "
                               "equal", name, comm->rank, sendcount, comm->rank, recvcounts[comm->rank]);
    size_t size = wf_datatype_size(datatype), total;
    if ((result = check_layout(comm, name, recvcounts, displs, size, &total)) != WEFT_SUCCESS)
        return result;
    wf_op_t call = {.run = NULL, .sendbuf = sendbuf, .recvbuf = recvbuf, .count = sendcount, .datatype = datatype,
                    .counts = recvcounts, .displs = displs};
    if (total > 0) {
        size_t own_bytes = sendcount * size;
        if ((result = wf_check_buffer(comm, name, "recvbuf", recvbuf)) != WEFT_SUCCESS)
            return result;
        char *own = (char *)recvbuf + displs[comm->rank] * size;
        if (own_bytes > 0 && (result = wf_check_buffer(comm, name, "sendbuf", sendbuf)) != WEFT_SUCCESS)
            return result;
        if (own_bytes > 0 && sendbuf != own &&
            (result = wf_check_overlap(comm, name, sendbuf, own_bytes, recvbuf, total * size,
                                       "sendbuf == recvbuf + displs[rank]")) != WEFT_SUCCESS)
            return result;
        call.run = run_allgatherv;
    } else {
        call.counts = call.displs = NULL; /* nothing to run, so no arrays to copy */
    }
    return wf_exec_submit(comm, &call, request);
}

WEFT_API weft_result_t weft_allgatherv(const void *sendbuf, size_t sendcount, void *recvbuf, const size_t *recvcounts,
                                       const size_t *displs, weft_datatype_t datatype, weft_comm_t comm)
{
    return start_allgatherv("weft_allgatherv", sendbuf, sendcount, recvbuf, recvcounts, displs, datatype, comm, NULL,
                            0);
}

WEFT_API weft_result_t weft_iallgatherv(const void *sendbuf, size_t sendcount, void *recvbuf, const size_t *recvcounts,
                                        const size_t *displs, weft_datatype_t datatype, weft_comm_t comm,
                                        weft_request_t *request)
{
    return start_allgatherv("weft_iallgatherv", sendbuf, sendcount, recvbuf, recvcounts, displs, datatype, comm,
                            request, 1);
}

static weft_result_t run_reduce_scatterv(weft_comm_t comm, const wf_op_t *op)
{
    int n = comm->nranks;
    size_t size = op->plan.user_size;
    size_t *counts = wf_block_tables(comm, 2);
    if (counts == NULL)
        return comm->failure;
    size_t *offsets = counts + n, total = 0, largest = 0;
    for (int r = 0; r < n; r++) {
        counts[r] = op->counts[r];
        offsets[r] = total;
        total += counts[r];
        largest = counts[r] * size > largest ? counts[r] * size : largest;
    }

    weft_result_t result = WEFT_SUCCESS;
    wf_coll_begin(comm, "reduce_scatterv", WF_SIGNATURE(WF_KIND_REDUCE_SCATTERV, total, op->datatype, op->reduce_op,
                                                        -1, wf_layout_hash(op->counts, NULL, n)));
    wf_group_t group = wf_group_all(comm);
    switch (wf_select_uneven(comm, WF_COLL_REDUCE_SCATTER, total * size, largest,
                             wf_partial_scale(&op->plan))) {
    case WF_ALGO_LOCAL:
        if (op->recvbuf != op->sendbuf)
            memcpy(op->recvbuf, op->sendbuf, counts[comm->rank] * size);
        break;
    case WF_ALGO_DIRECT:
        result = wf_reduce_scatter_direct(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
        break;
    case WF_ALGO_RECURSIVE_HALVING:
        result = wf_reduce_scatter_halving(comm, &group, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
        break;
    case WF_ALGO_PULL:
        result = wf_reduce_scatter_pull(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
        break;
    default:
        result = wf_ring_reduce_scatter(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan);
        break;
    }
    free(counts);
    return result;
}

WEFT_API weft_result_t weft_reduce_scatterv(const void *sendbuf, void *recvbuf, const size_t *recvcounts,
                                            weft_datatype_t datatype, weft_op_t op, weft_comm_t comm)
{
    const char *name = "weft_reduce_scatterv";
    weft_result_t result = wf_check_comm(comm, name);
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, 0, 1);
    if (result == WEFT_SUCCESS)
        result = wf_check_op(comm, name, op);
    if (result == WEFT_SUCCESS && recvcounts == NULL)
        result = wf_comm_invalid(comm, "%s on rank %d: recvcounts is NULL; pass one entry per rank", name, comm->rank);
    if (result != WEFT_SUCCESS)
        return result;

    size_t size = wf_datatype_size(datatype), total = 0, own_offset = 0;
    for (int r = 0; r < comm->nranks; r++) {
        if (recvcounts[r] > SIZE_MAX / size - total)
            return wf_comm_invalid(comm, "%s on rank %d: the sum of recvcounts overflows at recvcounts[%d] = %zu",
                                   name, comm->rank, r, recvcounts[r]);
        own_offset = r == comm->rank ? total : own_offset;
        total += recvcounts[r];
    }
    size_t own_bytes = recvcounts[comm->rank] * size;
    if (result == WEFT_SUCCESS && total > 0)
        result = wf_check_buffer(comm, name, "sendbuf", sendbuf);
    if (result == WEFT_SUCCESS && own_bytes > 0)
        result = wf_check_buffer(comm, name, "recvbuf", recvbuf);
    if (result == WEFT_SUCCESS && own_bytes > 0 && recvbuf != (const char *)sendbuf + own_offset * size)
        result = wf_check_overlap(comm, name, sendbuf, total * size, recvbuf, own_bytes,
                                  "recvbuf == sendbuf + (recvcounts[0] + ... + recvcounts[rank-1])");
    wf_op_t call = {.run = NULL, .sendbuf = sendbuf, .recvbuf = recvbuf, .datatype = datatype, .reduce_op = op,
                    .counts = recvcounts};
    if (result == WEFT_SUCCESS)
        result = wf_plan_for(comm, name, datatype, op, &call.plan);
    if (result != WEFT_SUCCESS || total == 0)
        return result;
    call.run = run_reduce_scatterv;
    return wf_exec_submit(comm, &call, NULL);
}

static weft_result_t run_reduce(weft_comm_t comm, const wf_op_t *op)
{
    size_t bytes = op->count * op->plan.user_size;
    wf_coll_begin(comm, "reduce",
                  WF_SIGNATURE(WF_KIND_REDUCE, op->count, op->datatype, op->reduce_op, op->root, 0));
    switch (wf_select(comm, WF_COLL_REDUCE, bytes, bytes, wf_partial_scale(&op->plan))) {
    case WF_ALGO_LOCAL:
        if (op->sendbuf != op->recvbuf)
            memcpy(op->recvbuf, op->sendbuf, bytes); /* one rank: every op is the identity */
        return WEFT_SUCCESS;
    case WF_ALGO_DIRECT:
        return wf_reduce_direct(comm, op->sendbuf, op->recvbuf, op->count, &op->plan, op->root);
    default:
        break;
    }

    int n = comm->nranks;
    size_t *counts = wf_block_tables(comm, 2);
    if (counts == NULL)
        return comm->failure;
    size_t *offsets = counts + n;
    for (int r = 0; r < n; r++) {
        counts[r] = wf_block_count(op->count, n, r);
        offsets[r] = wf_block_offset(op->count, n, r);
    }
    weft_result_t result = wf_ring_reduce(comm, op->sendbuf, op->recvbuf, counts, offsets, &op->plan, op->root);
    free(counts);
    return result;
}

WEFT_API weft_result_t weft_reduce(const void *sendbuf, void *recvbuf, size_t count, weft_datatype_t datatype,
                                   weft_op_t op, int root, weft_comm_t comm)
{
    const char *name = "weft_reduce";
    weft_result_t result = wf_check_comm(comm, name);
    if (result == WEFT_SUCCESS)
        result = wf_check_type(comm, name, datatype, count, 1);
    if (result == WEFT_SUCCESS)
        result = wf_check_op(comm, name, op);
    if (result == WEFT_SUCCESS && (root < 0 || root >= comm->nranks))
        result = wf_comm_invalid(comm, "%s on rank %d: root %d is outside 0..%d", name, comm->rank, root,
                                 comm->nranks - 1);
    if (result != WEFT_SUCCESS || count == 0)
        return result;
    size_t size = wf_datatype_size(datatype), bytes = count * size;
    int is_root = comm->rank == root;
    if ((result = wf_check_buffer(comm, name, "sendbuf", sendbuf)) != WEFT_SUCCESS)
        return result;
    if (is_root && (result = wf_check_buffer(comm, name, "recvbuf on the root", recvbuf)) != WEFT_SUCCESS)
        return result;
    if (is_root && sendbuf != recvbuf &&
        (result = wf_check_overlap(comm, name, sendbuf, bytes, recvbuf, bytes, "sendbuf == recvbuf")) != WEFT_SUCCESS)
        return result;
    wf_op_t call = {.run = run_reduce, .sendbuf = sendbuf, .recvbuf = recvbuf, .count = count, .datatype = datatype,
                    .reduce_op = op, .root = root};
    if ((result = wf_plan_for(comm, name, datatype, op, &call.plan)) != WEFT_SUCCESS)
        return result;
    return wf_exec_submit(comm, &call, NULL);
}
