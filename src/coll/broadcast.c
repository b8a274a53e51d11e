/*
 * Pipelined chain broadcast for large messages: zero-copy into every rank's buffer.
 *
 * Ranks form a chain in ring order starting at the root. Each rank but the root sends its
 * predecessor the location of its buffer. The predecessor RDMA-writes chunk after chunk straight
 * into it, and each chunk is forwarded as soon as its arrival counter shows it complete, so every
 * link is busy at once after the first chunks. Time is about (bytes + (n - 2) * chunk) / bandwidth.
 */
#include <stdlib.h>

#include "coll.h"

weft_result_t wf_chain_broadcast(weft_comm_t comm, void *buf, size_t bytes, int root)
{
    int n = comm->nranks;
    int position = (comm->rank - root + n) % n; /* 0 at the root */
    int previous = position > 0 ? (comm->rank - 1 + n) % n : -1;
    int next = position < n - 1 ? (comm->rank + 1) % n : -1;

    /* Chunks bounded so that their arrival counters fit in the table. */
    size_t chunk = comm->chunk_size;
    if ((bytes + chunk - 1) / chunk > WF_TOKENS / 2)
        chunk = (bytes + WF_TOKENS / 2 - 1) / (WF_TOKENS / 2);
    uint32_t nchunks = (uint32_t)((bytes + chunk - 1) / chunk);

    wf_mr_ref_t ref;
    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, buf, bytes, &ref);
    if (result != WEFT_SUCCESS)
        return result;
    const wf_mr_t *mr = wf_mr_of(&ref);

    uint32_t token = 0, max_pieces = wf_write_pieces(comm, chunk);
    wf_xfer_t *xfers = next >= 0 ? calloc((size_t)nchunks * max_pieces, sizeof(*xfers)) : NULL;
    if (next >= 0 && xfers == NULL)
        result = wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "broadcast on rank %d: out of memory", comm->rank);
    if (result == WEFT_SUCCESS && previous >= 0)
        result = wf_comm_reserve_tokens(comm, nchunks, &token);

    wf_remote_buffer_t mine = wf_describe_buffer(comm, mr, buf, previous, token);
    wf_remote_buffer_t theirs = {0};
    if (result == WEFT_SUCCESS)
        result = wf_exchange_buffers(comm, previous, &mine, next, &theirs);

    uint32_t posted = 0;
    for (uint32_t c = 0; c < nchunks && result == WEFT_SUCCESS; c++) {
        size_t offset = (size_t)c * chunk;
        size_t length = bytes - offset < chunk ? bytes - offset : chunk;
        if (previous >= 0)
            result = wf_comm_wait_arrivals(comm, token + c, wf_write_pieces(comm, length), previous);
        uint32_t pieces = 0;
        if (result == WEFT_SUCCESS && next >= 0)
            result = wf_post_write(comm, next, (char *)buf + offset, length, mr->desc, &theirs, offset,
                                   WF_IMM(WF_IMM_TOKEN, theirs.token + c), xfers + posted, &pieces);
        posted += pieces;
    }
    for (uint32_t i = 0; i < posted && result == WEFT_SUCCESS; i++)
        result = wf_comm_wait_xfer(comm, &xfers[i], next, "RDMA write of a broadcast chunk");

    free(xfers);
    wf_mr_put(comm, &ref);
    return wf_sig_finish(comm, result);
}
