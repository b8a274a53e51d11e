/*
 * Ring all-gather for large blocks: zero-copy into the final buffer.
 *
 * Each rank sends its left neighbour the location of its recvbuf. In step s it RDMA-writes block
 * (rank - s) straight into the same place of the right neighbour's recvbuf, from its own recvbuf
 * (the caller has put the own block in place). One arrival counter per block tells the receiver
 * when a block is complete and may be forwarded.
 */
#include <stdlib.h>

#include "coll.h"

weft_result_t wf_ring_allgather(weft_comm_t comm, void *recvbuf, size_t total_bytes, const size_t *bytes,
                                const size_t *offsets)
{
    int n = comm->nranks, rank = comm->rank;
    int left = wf_left(comm), right = wf_right(comm);
    uint32_t token = 0;
    wf_mr_ref_t ref;

    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, recvbuf, total_bytes, &ref);
    if (result != WEFT_SUCCESS)
        return result;
    const wf_mr_t *mr = wf_mr_of(&ref);

    /* One write piece list per block sent: n-1 blocks. */
    uint32_t max_pieces = 0;
    for (int b = 0; b < n; b++)
        max_pieces = wf_write_pieces(comm, bytes[b]) > max_pieces ? wf_write_pieces(comm, bytes[b]) : max_pieces;
    wf_xfer_t *xfers = calloc((size_t)(n - 1) * (max_pieces ? max_pieces : 1), sizeof(*xfers));
    if (xfers == NULL) {
        wf_mr_put(comm, &ref);
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allgather on rank %d: out of memory", rank);
    }

    result = wf_comm_reserve_tokens(comm, (uint32_t)n, &token);
    wf_remote_buffer_t mine = wf_describe_buffer(comm, mr, recvbuf, left, token);
    wf_remote_buffer_t theirs = {0};
    if (result == WEFT_SUCCESS)
        result = wf_exchange_buffers(comm, left, &mine, right, &theirs);

    uint32_t posted = 0;
    for (int step = 0; step < n - 1 && result == WEFT_SUCCESS; step++) {
        int block = (rank - step + n) % n;
        /* The block to forward arrived from the left in the previous step. */
        if (step > 0)
            result = wf_comm_wait_arrivals(comm, token + (uint32_t)block, wf_write_pieces(comm, bytes[block]), left);
        uint32_t pieces = 0;
        if (result == WEFT_SUCCESS && bytes[block] > 0)
            result = wf_post_write(comm, right, (char *)recvbuf + offsets[block], bytes[block], mr->desc, &theirs,
                                   offsets[block], WF_IMM(WF_IMM_TOKEN, theirs.token + (uint32_t)block),
                                   xfers + posted, &pieces);
        posted += pieces;
    }

    /* Every block but our own must have arrived, and our writes must be done before the buffer moves on. */
    for (int b = 0; b < n && result == WEFT_SUCCESS; b++)
        if (b != rank)
            result = wf_comm_wait_arrivals(comm, token + (uint32_t)b, wf_write_pieces(comm, bytes[b]), left);
    for (uint32_t i = 0; i < posted && result == WEFT_SUCCESS; i++)
        result = wf_comm_wait_xfer(comm, &xfers[i], right, "RDMA write of an all-gather block");

    free(xfers);
    wf_mr_put(comm, &ref);
    return wf_sig_finish(comm, result);
}
