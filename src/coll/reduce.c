/*
 * Rooted reduce for large messages: a ring reduce-scatter, then every rank sends its finished
 * block to the root.
 *
 * The reduce-scatter leaves block r reduced on rank r: on the root straight in recvbuf, elsewhere
 * in the communicator's eager buffer. The blocks then travel to their place in the root's recvbuf
 * as tagged messages, which the provider moves with its own large-message protocol. Compared with
 * an all-reduce this saves the all-gather's n - 1 steps on every rank but the root.
 */
#include <stdlib.h>

#include "coll.h"

weft_result_t wf_ring_reduce(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                             const size_t *offsets, const wf_reduce_plan_t *plan, int root)
{
    int rank = comm->rank;
    size_t own_bytes = counts[rank] * plan->user_size;
    void *block = NULL, *block_desc = NULL;
    weft_result_t result = WEFT_SUCCESS;

    if (rank == root)
        block = (char *)recvbuf + offsets[rank] * plan->user_size;
    else
        result = wf_eager_buffer(comm, own_bytes > 0 ? own_bytes : 1, &block, &block_desc);
    if (result == WEFT_SUCCESS)
        result = wf_ring_reduce_scatter(comm, sendbuf, block, counts, offsets, plan);
    if (result != WEFT_SUCCESS)
        return result;

    uint64_t tag_sub = 1; /* distinct from the reduce-scatter's messages of this collective */
    if (rank != root) {
        wf_xfer_t send;
        result = wf_post_send(comm, root, wf_tag(comm->seq, WF_TAG_DATA, (unsigned)tag_sub, rank), block, own_bytes,
                              block_desc, &send);
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &send, root, "sending a reduced block to the root");
        return wf_sig_finish(comm, result);
    }

    wf_xfer_t *recvs = calloc((unsigned)comm->nranks, sizeof(*recvs));
    void *desc = NULL;
    wf_mr_ref_t ref = {0};
    size_t total = offsets[comm->nranks - 1] + counts[comm->nranks - 1];
    if (recvs == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "reduce on rank %d: out of memory", rank);
    result = wf_eager_desc(comm, recvbuf, total * plan->user_size, &ref, &desc);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != root)
            result = wf_post_recv(comm, peer, wf_tag(comm->seq, WF_TAG_DATA, (unsigned)tag_sub, peer),
                                  (char *)recvbuf + offsets[peer] * plan->user_size, counts[peer] * plan->user_size,
                                  desc, &recvs[peer]);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != root)
            result = wf_comm_wait_recv(comm, &recvs[peer], peer, "receiving a reduced block",
                                       counts[peer] * plan->user_size);
    wf_mr_put(comm, &ref);
    free(recvs);
    return wf_sig_finish(comm, result);
}
