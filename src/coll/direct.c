/*
 * Direct algorithms for small messages: every rank sends its data straight to the ranks that need
 * it with eager messages, and reductions are computed locally in rank order 0..n-1.
 *
 * One round trip instead of n-1 ring steps, at the price of O(n) messages per rank, which is the
 * right trade below WEFT_EAGER_LIMIT on the rank counts these algorithms are chosen for. Reducing
 * in rank order on every rank keeps results bitwise identical everywhere, and 16-bit floats travel
 * as 16-bit values and are rounded once after a float32 accumulation.
 *
 * The message to the left neighbour is the signature message (src/mismatch.c): the data follows
 * the signature in one eager message, staged with one copy of at most WEFT_EAGER_LIMIT bytes, and
 * the right neighbour's data is read after its signature. The other data messages carry 8 bits of
 * the signature in their tags (wf_data_tag), and every received length is checked.
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"

/*
 * Up to this many ranks, the per-peer xfers of a call live on the caller's stack, because a heap
 * allocation and its release took 5 percent of the instructions of an 8-byte all-reduce on two ranks.
 */
#define STACK_RANKS 16

/* count zeroed xfers: in stack (2 * STACK_RANKS entries) when they fit, else on the heap, or NULL. */
static wf_xfer_t *xfers_get(wf_xfer_t *stack, size_t count)
{
    if (count > 2 * STACK_RANKS)
        return calloc(count, sizeof(*stack));
    memset(stack, 0, count * sizeof(*stack));
    return stack;
}

static void xfers_put(wf_xfer_t *xfers, const wf_xfer_t *stack)
{
    if (xfers != stack)
        free(xfers);
}

/*
 * Wait for every posted operation but the receive from skip_recv and the send to skip_send (those
 * travel as signature messages), checking that each receive got expect_each[peer] bytes (or
 * expect_same when expect_each is NULL).
 */
static weft_result_t finish_exchange(weft_comm_t comm, wf_xfer_t *sends, wf_xfer_t *recvs, const size_t *expect_each,
                                     size_t expect_same, int skip_recv, int skip_send, weft_result_t result)
{
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank)
            continue;
        if (recvs != NULL && peer != skip_recv)
            result = wf_comm_wait_recv(comm, &recvs[peer], peer, "receiving eager data",
                                       expect_each != NULL ? expect_each[peer] : expect_same);
        if (result == WEFT_SUCCESS && sends != NULL && peer != skip_send)
            result = wf_comm_wait_xfer(comm, &sends[peer], peer, "sending eager data");
    }
    return result;
}

/* Post sends of one buffer to every other rank but skip (or of per-peer blocks when offsets != NULL). */
static weft_result_t send_to_all(weft_comm_t comm, const char *buf, const size_t *bytes, const size_t *offsets,
                                 size_t same_bytes, void *desc, wf_xfer_t *sends, int skip)
{
    for (int i = 1; i < comm->nranks; i++) {
        int peer = (comm->rank + i) % comm->nranks;
        if (peer == skip)
            continue;
        const char *data = offsets != NULL ? buf + offsets[peer] : buf;
        size_t length = bytes != NULL ? bytes[peer] : same_bytes;
        weft_result_t result = wf_post_send(comm, peer, wf_data_tag(comm, comm->rank), data, length, desc, &sends[peer]);
        if (result != WEFT_SUCCESS)
            return result;
    }
    return WEFT_SUCCESS;
}

/* Post receives of every other rank's data but skip's into area, one stride apart. */
static weft_result_t receive_from_all(weft_comm_t comm, char *area, size_t stride, size_t bytes, void *desc,
                                      wf_xfer_t *recvs, int skip)
{
    weft_result_t result = WEFT_SUCCESS;
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank && peer != skip)
            result = wf_post_recv(comm, peer, wf_data_tag(comm, peer), area + (size_t)peer * stride, bytes, desc,
                                  &recvs[peer]);
    return result;
}

/*
 * Reduce the n user-typed vectors (one per rank, in rank order) into recvbuf: this rank's is own,
 * the right neighbour's is right_data, the others are in received, one stride apart.
 */
static void reduce_in_rank_order(weft_comm_t comm, const wf_reduce_plan_t *plan, const void *own,
                                 const void *right_data, const char *received, size_t stride, void *partial,
                                 void *recvbuf, size_t count)
{
    int right = wf_right(comm);
    for (int peer = 0; peer < comm->nranks; peer++) {
        const void *data = peer == comm->rank ? own : peer == right ? right_data : received + (size_t)peer * stride;
        if (peer == 0)
            plan->to_partial(partial, data, count);
        else
            plan->reduce_user(partial, data, count);
    }
    plan->finish(recvbuf, partial, count, comm->nranks);
}

weft_result_t wf_allreduce_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                  const wf_reduce_plan_t *plan)
{
    int n = comm->nranks, left = wf_left(comm), right = wf_right(comm);
    size_t bytes = count * plan->user_size;
    size_t stride = (bytes + 63) & ~(size_t)63;
    wf_xfer_t stack[2 * STACK_RANKS];
    wf_xfer_t *xfers = xfers_get(stack, 2 * (size_t)n);
    if (xfers == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allreduce on rank %d: out of memory", comm->rank);
    wf_xfer_t *sends = xfers, *recvs = xfers + n;

    void *area, *area_desc, *send_desc = NULL;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = wf_sig_send(comm, sendbuf, bytes, bytes);
    if (result == WEFT_SUCCESS)
        result = wf_eager_buffer(comm, stride * (size_t)n + count * plan->partial_size, &area, &area_desc);
    if (result == WEFT_SUCCESS && n > 2) /* with two ranks, the signature message carries everything */
        result = wf_eager_desc(comm, sendbuf, bytes, &send_ref, &send_desc);
    if (result == WEFT_SUCCESS)
        result = receive_from_all(comm, area, stride, bytes, area_desc, recvs, right);
    if (result == WEFT_SUCCESS)
        result = send_to_all(comm, sendbuf, NULL, NULL, bytes, send_desc, sends, left);
    result = finish_exchange(comm, sends, recvs, NULL, bytes, right, left, result);
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);

    if (result == WEFT_SUCCESS) {
        void *partial = (char *)area + stride * (size_t)n;
        reduce_in_rank_order(comm, plan, sendbuf, wf_sig_data(comm), area, stride, partial, recvbuf, count);
    }
    wf_mr_put(comm, &send_ref);
    xfers_put(xfers, stack);
    return result;
}

weft_result_t wf_reduce_scatter_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                                       const size_t *offsets, const wf_reduce_plan_t *plan)
{
    int n = comm->nranks, left = wf_left(comm), right = wf_right(comm);
    size_t own_count = counts[comm->rank];
    size_t own_bytes = own_count * plan->user_size;
    size_t stride = (own_bytes + 63) & ~(size_t)63;
    size_t stack_bytes[2 * STACK_RANKS];
    wf_xfer_t stack[2 * STACK_RANKS];
    size_t *byte_counts = n <= STACK_RANKS ? stack_bytes : malloc(2 * (size_t)n * sizeof(size_t));
    wf_xfer_t *xfers = xfers_get(stack, 2 * (size_t)n);
    if (xfers == NULL || byte_counts == NULL) {
        xfers_put(xfers, stack);
        if (byte_counts != stack_bytes)
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

    void *area, *area_desc, *send_desc = NULL;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result =
        wf_sig_send(comm, (const char *)sendbuf + byte_offsets[left], byte_counts[left], own_bytes);
    if (result == WEFT_SUCCESS)
        result = wf_eager_buffer(comm, stride * (size_t)n + own_count * plan->partial_size, &area, &area_desc);
    if (result == WEFT_SUCCESS && n > 2)
        result = wf_eager_desc(comm, sendbuf, total * plan->user_size, &send_ref, &send_desc);
    if (result == WEFT_SUCCESS)
        result = receive_from_all(comm, area, stride, own_bytes, area_desc, xfers + n, right);
    if (result == WEFT_SUCCESS)
        result = send_to_all(comm, sendbuf, byte_counts, byte_offsets, 0, send_desc, xfers, left);
    result = finish_exchange(comm, xfers, xfers + n, NULL, own_bytes, right, left, result);
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);

    if (result == WEFT_SUCCESS && own_count > 0) {
        const char *own = (const char *)sendbuf + byte_offsets[comm->rank];
        void *partial = (char *)area + stride * (size_t)n;
        reduce_in_rank_order(comm, plan, own, wf_sig_data(comm), area, stride, partial, recvbuf, own_count);
    }
    wf_mr_put(comm, &send_ref);
    xfers_put(xfers, stack);
    if (byte_counts != stack_bytes)
        free(byte_counts);
    return result;
}

weft_result_t wf_allgather_direct(weft_comm_t comm, void *recvbuf, const size_t *bytes, const size_t *offsets)
{
    int n = comm->nranks, left = wf_left(comm), right = wf_right(comm);
    size_t total = 0;
    for (int r = 0; r < n; r++)
        total = offsets[r] + bytes[r] > total ? offsets[r] + bytes[r] : total;
    wf_xfer_t stack[2 * STACK_RANKS];
    wf_xfer_t *xfers = xfers_get(stack, 2 * (size_t)n);
    if (xfers == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allgather on rank %d: out of memory", comm->rank);

    const char *own = (const char *)recvbuf + offsets[comm->rank];
    void *desc = NULL;
    wf_mr_ref_t ref = {0};
    weft_result_t result = wf_sig_send(comm, own, bytes[comm->rank], bytes[right]);
    if (result == WEFT_SUCCESS && n > 2)
        result = wf_eager_desc(comm, recvbuf, total, &ref, &desc);
    for (int peer = 0; peer < n && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank && peer != right)
            result = wf_post_recv(comm, peer, wf_data_tag(comm, peer), (char *)recvbuf + offsets[peer], bytes[peer],
                                  desc, &xfers[n + peer]);
    if (result == WEFT_SUCCESS)
        result = send_to_all(comm, own, NULL, NULL, bytes[comm->rank], desc, xfers, left);
    result = finish_exchange(comm, xfers, xfers + n, bytes, 0, right, left, result);
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);
    if (result == WEFT_SUCCESS && bytes[right] > 0) {
        memcpy((char *)recvbuf + offsets[right], wf_sig_data(comm), bytes[right]);
        comm->stats.staged_copy_bytes += bytes[right];
    }
    wf_mr_put(comm, &ref);
    xfers_put(xfers, stack);
    return result;
}

weft_result_t wf_broadcast_direct(weft_comm_t comm, void *buf, size_t bytes, int root)
{
    int left = wf_left(comm), right = wf_right(comm);
    void *desc = NULL;
    wf_mr_ref_t ref = {0};
    weft_result_t result;

    if (comm->rank != root) {
        /* The root's left neighbour gets the data in the root's signature message. */
        int from_signature = right == root;
        result = wf_sig_send(comm, NULL, 0, from_signature ? bytes : 0);
        if (result == WEFT_SUCCESS && !from_signature) {
            wf_xfer_t recv;
            result = wf_eager_desc(comm, buf, bytes, &ref, &desc);
            if (result == WEFT_SUCCESS)
                result = wf_post_recv(comm, root, wf_data_tag(comm, root), buf, bytes, desc, &recv);
            if (result == WEFT_SUCCESS)
                result = wf_comm_wait_recv(comm, &recv, root, "receiving the broadcast", bytes);
        }
        if (result == WEFT_SUCCESS)
            result = wf_sig_wait(comm);
        if (result == WEFT_SUCCESS && from_signature) {
            memcpy(buf, wf_sig_data(comm), bytes);
            comm->stats.staged_copy_bytes += bytes;
        }
    } else {
        wf_xfer_t stack[2 * STACK_RANKS];
        wf_xfer_t *sends = xfers_get(stack, (size_t)comm->nranks);
        result = wf_sig_send(comm, buf, bytes, 0);
        if (sends == NULL)
            result = wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "broadcast on rank %d: out of memory", comm->rank);
        if (result == WEFT_SUCCESS && comm->nranks > 2)
            result = wf_eager_desc(comm, buf, bytes, &ref, &desc);
        if (result == WEFT_SUCCESS)
            result = send_to_all(comm, buf, NULL, NULL, bytes, desc, sends, left);
        result = finish_exchange(comm, sends, NULL, NULL, 0, -1, left, result);
        xfers_put(sends, stack);
    }
    wf_mr_put(comm, &ref);
    return wf_sig_finish(comm, result);
}

weft_result_t wf_reduce_direct(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                               const wf_reduce_plan_t *plan, int root)
{
    int n = comm->nranks, left = wf_left(comm), right = wf_right(comm);
    size_t bytes = count * plan->user_size;
    size_t stride = (bytes + 63) & ~(size_t)63;
    void *area, *area_desc, *send_desc;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = WEFT_SUCCESS;

    if (comm->rank != root) {
        /* The root's right neighbour sends its vector in its signature message, the others directly. */
        if (left == root)
            return wf_sig_finish(comm, wf_sig_send(comm, sendbuf, bytes, 0));
        wf_xfer_t send;
        result = wf_sig_send(comm, NULL, 0, 0);
        if (result == WEFT_SUCCESS)
            result = wf_eager_desc(comm, sendbuf, bytes, &send_ref, &send_desc);
        if (result == WEFT_SUCCESS)
            result = wf_post_send(comm, root, wf_data_tag(comm, comm->rank), sendbuf, bytes, send_desc, &send);
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &send, root, "sending to the reduce root");
        wf_mr_put(comm, &send_ref);
        return wf_sig_finish(comm, result);
    }

    /* The root gathers every vector and reduces in rank order, like the direct all-reduce. */
    wf_xfer_t stack[2 * STACK_RANKS];
    wf_xfer_t *recvs = xfers_get(stack, (size_t)n);
    if (recvs == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "reduce on rank %d: out of memory", comm->rank);
    result = wf_sig_send(comm, NULL, 0, bytes);
    if (result == WEFT_SUCCESS)
        result = wf_eager_buffer(comm, stride * (size_t)n + count * plan->partial_size, &area, &area_desc);
    if (result == WEFT_SUCCESS)
        result = receive_from_all(comm, area, stride, bytes, area_desc, recvs, right);
    result = finish_exchange(comm, NULL, recvs, NULL, bytes, right, -1, result);
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);
    if (result == WEFT_SUCCESS)
        reduce_in_rank_order(comm, plan, sendbuf, wf_sig_data(comm), area, stride, (char *)area + stride * (size_t)n,
                             recvbuf, count);
    xfers_put(recvs, stack);
    return result;
}
