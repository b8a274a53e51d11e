/*
 * Direct algorithms for small messages: every rank sends its data straight to the ranks that need
 * it with eager messages, and reductions are computed locally in rank order 0..n-1.
 *
 * One round trip instead of n-1 ring steps, at the price of O(n) messages per rank, which is the
 * right trade below WEFT_EAGER_LIMIT on the rank counts these algorithms are chosen for. Reducing
 * in rank order on every rank keeps results bitwise identical everywhere, and 16-bit floats travel
 * as 16-bit values and are rounded once after a float32 accumulation.
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"

/* Wait for every posted operation, then release the registrations. */
static weft_result_t finish_exchange(weft_comm_t comm, wf_xfer_t *sends, wf_xfer_t *recvs, weft_result_t result)
{
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank)
            continue;
        if (recvs != NULL)
            result = wf_comm_wait_xfer(comm, &recvs[peer], peer, "receiving eager data");
        if (result == WEFT_SUCCESS && sends != NULL)
            result = wf_comm_wait_xfer(comm, &sends[peer], peer, "sending eager data");
    }
    return result;
}

/* Post sends of one buffer to every other rank (or of per-peer blocks when blocks != NULL). */
static weft_result_t send_to_all(weft_comm_t comm, const char *buf, const size_t *bytes, const size_t *offsets,
                                 size_t same_bytes, void *desc, wf_xfer_t *sends)
{
    for (int i = 1; i < comm->nranks; i++) {
        int peer = (comm->rank + i) % comm->nranks;
        const char *data = offsets != NULL ? buf + offsets[peer] : buf;
        size_t length = bytes != NULL ? bytes[peer] : same_bytes;
        weft_result_t result =
            wf_post_send(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, 0, comm->rank), data, length, desc, &sends[peer]);
        if (result != WEFT_SUCCESS)
            return result;
    }
    return WEFT_SUCCESS;
}

/* Reduce the n user-typed vectors (one per rank, in rank order) into recvbuf. */
static void reduce_in_rank_order(weft_comm_t comm, const wf_reduce_plan_t *plan, const void *own,
                                 const char *received, size_t stride, void *partial, void *recvbuf, size_t count)
{
    const void *first = comm->rank == 0 ? own : received;
    plan->to_partial(partial, first, count);
    for (int peer = 1; peer < comm->nranks; peer++) {
        const void *data = peer == comm->rank ? own : received + (size_t)peer * stride;
        plan->reduce_user(partial, data, count);
    }
    plan->finish(recvbuf, partial, count, comm->nranks);
}

weft_result_t wf_allreduce_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                  const wf_reduce_plan_t *plan)
{
    size_t bytes = count * plan->user_size;
    size_t stride = (bytes + 63) & ~(size_t)63;
    wf_xfer_t *xfers = calloc(2 * (size_t)comm->nranks, sizeof(*xfers));
    if (xfers == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allreduce on rank %d: out of memory", comm->rank);
    wf_xfer_t *sends = xfers, *recvs = xfers + comm->nranks;

    void *area, *area_desc, *send_desc;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = wf_eager_buffer(comm, stride * (size_t)comm->nranks + count * plan->partial_size,
                                           &area, &area_desc);
    if (result == WEFT_SUCCESS)
        result = wf_eager_desc(comm, sendbuf, bytes, &send_ref, &send_desc);

    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_recv(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, 0, peer), (char *)area + (size_t)peer * stride,
                                  bytes, area_desc, &recvs[peer]);
    if (result == WEFT_SUCCESS)
        result = send_to_all(comm, sendbuf, NULL, NULL, bytes, send_desc, sends);
    result = finish_exchange(comm, sends, recvs, result);

    if (result == WEFT_SUCCESS) {
        void *partial = (char *)area + stride * (size_t)comm->nranks;
        reduce_in_rank_order(comm, plan, sendbuf, area, stride, partial, recvbuf, count);
    }
    wf_mr_put(comm, &send_ref);
    free(xfers);
    return result;
}

weft_result_t wf_reduce_scatter_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                                       const size_t *offsets, const wf_reduce_plan_t *plan)
{
    int n = comm->nranks;
    size_t own_count = counts[comm->rank];
    size_t own_bytes = own_count * plan->user_size;
    size_t stride = (own_bytes + 63) & ~(size_t)63;
    size_t *byte_counts = malloc(2 * (size_t)n * sizeof(size_t));
    wf_xfer_t *xfers = calloc(2 * (size_t)n, sizeof(*xfers));
    if (xfers == NULL || byte_counts == NULL) {
        free(xfers);
        free(byte_counts);
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "reduce_scatter on rank %d: out of memory", comm->rank);
    }
    size_t *byte_offsets = byte_counts + n;
    size_t total = 0;
    for (int r = 0; r < n; r++) {
        byte_counts[r] = counts[r] * plan->user_size;
        byte_offsets[r] = offsets[r] * plan->user_size;
        total = offsets[r] + counts[r] > total ? offsets[r] + counts[r] : total;
    }

    void *area, *area_desc, *send_desc;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = wf_eager_buffer(comm, stride * (size_t)n + own_count * plan->partial_size, &area, &area_desc);
    if (result == WEFT_SUCCESS)
        result = wf_eager_desc(comm, sendbuf, total * plan->user_size, &send_ref, &send_desc);
    for (int peer = 0; peer < n && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_recv(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, 0, peer), (char *)area + (size_t)peer * stride,
                                  own_bytes, area_desc, &xfers[n + peer]);
    if (result == WEFT_SUCCESS)
        result = send_to_all(comm, sendbuf, byte_counts, byte_offsets, 0, send_desc, xfers);
    result = finish_exchange(comm, xfers, xfers + n, result);

    if (result == WEFT_SUCCESS && own_count > 0) {
        const char *own = (const char *)sendbuf + byte_offsets[comm->rank];
        void *partial = (char *)area + stride * (size_t)n;
        reduce_in_rank_order(comm, plan, own, area, stride, partial, recvbuf, own_count);
    }
    wf_mr_put(comm, &send_ref);
    free(xfers);
    free(byte_counts);
    return result;
}

weft_result_t wf_allgather_direct(weft_comm_t comm, void *recvbuf, const size_t *bytes, const size_t *offsets)
{
    int n = comm->nranks;
    size_t total = 0;
    for (int r = 0; r < n; r++)
        total = offsets[r] + bytes[r] > total ? offsets[r] + bytes[r] : total;
    wf_xfer_t *xfers = calloc(2 * (size_t)n, sizeof(*xfers));
    if (xfers == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allgather on rank %d: out of memory", comm->rank);

    void *desc;
    wf_mr_ref_t ref;
    weft_result_t result = wf_eager_desc(comm, recvbuf, total, &ref, &desc);
    for (int peer = 0; peer < n && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_recv(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, 0, peer), (char *)recvbuf + offsets[peer],
                                  bytes[peer], desc, &xfers[n + peer]);
    const char *own = (const char *)recvbuf + offsets[comm->rank];
    for (int i = 1; i < n && result == WEFT_SUCCESS; i++) {
        int peer = (comm->rank + i) % n;
        result = wf_post_send(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, 0, comm->rank), own, bytes[comm->rank], desc,
                              &xfers[peer]);
    }
    result = finish_exchange(comm, xfers, xfers + n, result);
    wf_mr_put(comm, &ref);
    free(xfers);
    return result;
}

weft_result_t wf_broadcast_direct(weft_comm_t comm, void *buf, size_t bytes, int root)
{
    void *desc;
    wf_mr_ref_t ref;
    weft_result_t result = wf_eager_desc(comm, buf, bytes, &ref, &desc);
    if (result != WEFT_SUCCESS)
        return result;

    if (comm->rank != root) {
        wf_xfer_t recv;
        result = wf_post_recv(comm, root, wf_tag(comm->seq, WF_TAG_DATA, 0, root), buf, bytes, desc, &recv);
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &recv, root, "receiving the broadcast");
    } else {
        wf_xfer_t *sends = calloc((unsigned)comm->nranks, sizeof(*sends));
        if (sends == NULL)
            result = wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "broadcast on rank %d: out of memory", comm->rank);
        else
            result = send_to_all(comm, buf, NULL, NULL, bytes, desc, sends);
        result = finish_exchange(comm, sends, NULL, result);
        free(sends);
    }
    wf_mr_put(comm, &ref);
    return result;
}

weft_result_t wf_reduce_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                               const wf_reduce_plan_t *plan, int root)
{
    size_t bytes = count * plan->user_size;
    size_t stride = (bytes + 63) & ~(size_t)63;
    void *area, *area_desc, *send_desc;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = WEFT_SUCCESS;

    if (comm->rank != root) {
        wf_xfer_t send;
        result = wf_eager_desc(comm, sendbuf, bytes, &send_ref, &send_desc);
        if (result == WEFT_SUCCESS)
            result = wf_post_send(comm, root, wf_tag(comm->seq, WF_TAG_DATA, 0, comm->rank), sendbuf, bytes,
                                  send_desc, &send);
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &send, root, "sending to the reduce root");
        wf_mr_put(comm, &send_ref);
        return result;
    }

    /* The root gathers every vector and reduces in rank order, like the direct all-reduce. */
    wf_xfer_t *recvs = calloc((unsigned)comm->nranks, sizeof(*recvs));
    if (recvs == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "reduce on rank %d: out of memory", comm->rank);
    result = wf_eager_buffer(comm, stride * (size_t)comm->nranks + count * plan->partial_size, &area, &area_desc);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != root)
            result = wf_post_recv(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, 0, peer), (char *)area + (size_t)peer * stride,
                                  bytes, area_desc, &recvs[peer]);
    result = finish_exchange(comm, NULL, recvs, result);
    if (result == WEFT_SUCCESS)
        reduce_in_rank_order(comm, plan, sendbuf, area, stride, (char *)area + stride * (size_t)comm->nranks,
                             recvbuf, count);
    free(recvs);
    return result;
}
