/*
 * Pull algorithms: every rank reads its block of the result straight out of every peer's send
 * buffer with RDMA reads, and reduces it itself.
 *
 * Each element is reduced once, from the peers' raw data, by the rank that owns its block. So
 * 16-bit floats cross the wire as 16 bits and are still rounded once, and no rank needs scratch
 * slots that a writer must be granted credits for: the reader owns its scratch. Reads of the next
 * chunk from every peer are in flight while the current chunk is reduced.
 *
 * The all-reduce form writes each reduced chunk, while it is still in cache, into the same place
 * of every peer's recvbuf, with an RDMA write that raises one arrival counter per writer. A rank
 * writes a chunk only after it has read that chunk from every peer, so once every peer's writes
 * have arrived, no peer reads this rank's send buffer any more and the call may return. The
 * reduce-scatter form instead ends with one small message to and from every peer.
 *
 * The descriptor exchange and the "done" messages are in pull_peers.c.
 */
#include <stdlib.h>
#include <string.h>

#include "pull.h"

#define PULL_CHUNK ((size_t)128 * 1024) /* bytes read from each peer per step; two steps in flight */

/* State of one pull collective on one rank. */
typedef struct {
    weft_comm_t comm;
    const wf_reduce_plan_t *plan;
    wf_pull_peers_t peers;   /* every peer's buffer descriptors */
    wf_xfer_t *reads;        /* two per peer: the chunk in flight and the next */
    wf_xfer_t *writes;       /* all-reduce: 2 sets of n * write_pieces, like the reads */
    uint32_t *written;       /* pieces posted per set and peer, waited for before the set is reused */
    uint32_t write_pieces;   /* pieces of one chunk's write */
    const wf_mr_t *result_mr; /* registration of recvbuf, which the all-reduce writes from; NULL otherwise */
    char *scratch;           /* 2 * (n - 1) read slots of PULL_CHUNK bytes, then the partial sums */
    wf_mr_ref_t scratch_ref;
} pull_t;

static void pull_free(pull_t *pull)
{
    wf_pull_peers_free(&pull->peers);
    wf_mr_put(pull->comm, &pull->scratch_ref);
    free(pull->reads);
    free(pull->writes);
    free(pull->written);
    free(pull->scratch);
}

static weft_result_t pull_init(pull_t *pull, weft_comm_t comm, const wf_reduce_plan_t *plan)
{
    int n = comm->nranks;
    memset(pull, 0, sizeof(*pull));
    pull->comm = comm;
    pull->plan = plan;
    pull->reads = calloc(2 * (size_t)n, sizeof(wf_xfer_t));
    pull->write_pieces = wf_write_pieces(comm, PULL_CHUNK);
    pull->writes = calloc(2 * (size_t)n * pull->write_pieces, sizeof(wf_xfer_t));
    pull->written = calloc(2 * (size_t)n, sizeof(uint32_t));
    size_t partial_bytes = PULL_CHUNK / plan->user_size * plan->partial_size;
    size_t scratch_bytes = 2 * (size_t)(n - 1) * PULL_CHUNK + partial_bytes;
    pull->scratch = aligned_alloc(4096, (scratch_bytes + 4095) & ~(size_t)4095);
    weft_result_t result = wf_pull_peers_init(&pull->peers, comm);
    if (result != WEFT_SUCCESS)
        return result;
    if (pull->reads == NULL || pull->writes == NULL || pull->written == NULL || pull->scratch == NULL)
        return wf_pull_oom(comm);
    if (result == WEFT_SUCCESS && comm->needs_local_mr)
        result = wf_mr_get(comm, pull->scratch, scratch_bytes, &pull->scratch_ref);
    return result;
}

/* Post the reads of bytes at offset from every peer into read slot set `set`. */
static weft_result_t post_reads(pull_t *pull, size_t offset, size_t bytes, int set)
{
    weft_comm_t comm = pull->comm;
    int n = comm->nranks;
    void *desc = comm->needs_local_mr ? wf_mr_of(&pull->scratch_ref)->desc : NULL;
    for (int i = 1; i < n; i++) {
        int peer = (comm->rank + i) % n;
        char *slot = pull->scratch + ((size_t)set * (size_t)(n - 1) + (size_t)(i - 1)) * PULL_CHUNK;
        weft_result_t result = wf_pull_read(comm, peer, &pull->peers.theirs[peer], offset, slot, bytes, desc,
                                            &pull->reads[2 * peer + set]);
        if (result != WEFT_SUCCESS)
            return result;
    }
    return WEFT_SUCCESS;
}

static weft_result_t wait_reads(pull_t *pull, int set)
{
    weft_comm_t comm = pull->comm;
    weft_result_t result = WEFT_SUCCESS;
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_comm_wait_xfer(comm, &pull->reads[2 * peer + set], peer, "reading a peer's buffer");
    return result;
}

/*
 * Reduce count elements: this rank's own first, then the peers' in rank order from read slot set
 * `set`. The first peer's data is combined with the own data in one pass (reduce_pair), and the
 * last contribution is fused with the final rounding into dst.
 */
static void reduce_chunk(pull_t *pull, const void *own, void *dst, size_t count, int set)
{
    weft_comm_t comm = pull->comm;
    const wf_reduce_plan_t *plan = pull->plan;
    int n = comm->nranks, me = comm->rank;
    char *slots = pull->scratch + (size_t)set * (size_t)(n - 1) * PULL_CHUNK;
    char *partial = pull->scratch + 2 * (size_t)(n - 1) * PULL_CHUNK;
    int first = me == 0 ? 1 : 0, last = me == n - 1 ? n - 2 : n - 1;
    const char *first_data = slots + (size_t)((first - me + n) % n - 1) * PULL_CHUNK;
    if (n == 2) {
        plan->reduce_pair_finish(dst, own, first_data, count, n);
        return;
    }
    plan->reduce_pair(partial, own, first_data, count);
    for (int peer = first + 1; peer < n; peer++) {
        if (peer == me)
            continue;
        const char *data = slots + (size_t)((peer - me + n) % n - 1) * PULL_CHUNK;
        if (peer == last)
            plan->reduce_finish(dst, partial, data, count, n);
        else
            plan->reduce_user(partial, data, count);
    }
}

/* Wait for the writes of set `set` to every peer, so that their xfers may be reused. */
static weft_result_t wait_writes(pull_t *pull, int set)
{
    weft_comm_t comm = pull->comm;
    int n = comm->nranks;
    weft_result_t result = WEFT_SUCCESS;
    for (int peer = 0; peer < n; peer++) {
        uint32_t *posted = &pull->written[(size_t)set * (size_t)n + (size_t)peer];
        wf_xfer_t *xfers = pull->writes + ((size_t)set * (size_t)n + (size_t)peer) * pull->write_pieces;
        for (uint32_t i = 0; i < *posted; i++) {
            weft_result_t waited = wf_comm_wait_xfer(comm, &xfers[i], peer, "writing a reduced chunk");
            result = result == WEFT_SUCCESS ? waited : result;
        }
        *posted = 0;
    }
    return result;
}

/* Write the reduced chunk of bytes at byte offset of recvbuf into the same place of every peer. */
static weft_result_t write_chunk(pull_t *pull, const char *chunk, size_t offset, size_t bytes, int set)
{
    weft_comm_t comm = pull->comm;
    int n = comm->nranks;
    weft_result_t result = wait_writes(pull, set);
    for (int i = 1; i < n && result == WEFT_SUCCESS; i++) {
        int peer = (comm->rank + i) % n;
        const wf_pull_buffer_t *to = &pull->peers.theirs[peer];
        if (offset + bytes > to->bytes)
            return wf_comm_fail(comm, WEFT_ERR_MISMATCH,
                                "%s on rank %d: rank %d exposes %llu bytes of recvbuf but this rank writes bytes %zu "
                                "to %zu; the ranks passed different counts",
                                comm->coll_name, comm->rank, peer, (unsigned long long)to->bytes, offset,
                                offset + bytes);
        size_t index = (size_t)set * (size_t)n + (size_t)peer;
        result = wf_post_write(comm, peer, chunk, bytes, pull->result_mr->desc, &to->result, offset,
                               WF_IMM(WF_IMM_TOKEN, to->result.token), pull->writes + index * pull->write_pieces,
                               &pull->written[index]);
    }
    return result;
}

/* Reduce this rank's block [offset, offset + count) elements of every send buffer into dst. */
static weft_result_t reduce_own_block(pull_t *pull, const char *sendbuf, char *dst, size_t offset, size_t count)
{
    size_t size = pull->plan->user_size, step = PULL_CHUNK / size;
    size_t chunks = (count + step - 1) / step;
    weft_result_t result = WEFT_SUCCESS;
    for (size_t c = 0; c < chunks && c < 2 && result == WEFT_SUCCESS; c++) {
        size_t elements = count - c * step < step ? count - c * step : step;
        result = post_reads(pull, (offset + c * step) * size, elements * size, (int)(c & 1));
    }
    for (size_t c = 0; c < chunks && result == WEFT_SUCCESS; c++) {
        size_t first = c * step, elements = count - first < step ? count - first : step;
        result = wait_reads(pull, (int)(c & 1));
        if (result != WEFT_SUCCESS)
            break;
        reduce_chunk(pull, sendbuf + (offset + first) * size, dst + first * size, elements, (int)(c & 1));
        if (pull->result_mr != NULL)
            result = write_chunk(pull, dst + first * size, (offset + first) * size, elements * size, (int)(c & 1));
        if (c + 2 < chunks && result == WEFT_SUCCESS) {
            size_t next = (c + 2) * step, next_elements = count - next < step ? count - next : step;
            result = post_reads(pull, (offset + next) * size, next_elements * size, (int)(c & 1));
        }
    }
    return result;
}

/* Bytes of a send buffer that blocks (counts/offsets in elements) span. */
static size_t span_bytes(int n, const size_t *counts, const size_t *offsets, size_t size)
{
    size_t end = 0;
    for (int r = 0; r < n; r++)
        if (counts[r] > 0 && offsets[r] + counts[r] > end)
            end = offsets[r] + counts[r];
    return end * size;
}

weft_result_t wf_reduce_scatter_pull(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                                     const size_t *offsets, const wf_reduce_plan_t *plan)
{
    int me = comm->rank;
    size_t size = plan->user_size, exposed = span_bytes(comm->nranks, counts, offsets, size);
    pull_t pull;
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = pull_init(&pull, comm, plan);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, sendbuf, exposed, &send_ref);
    if (result == WEFT_SUCCESS) {
        wf_pull_describe(&pull.peers, sendbuf, exposed, wf_mr_of(&send_ref));
        result = wf_pull_exchange(&pull.peers);
    }
    if (result == WEFT_SUCCESS)
        result = reduce_own_block(&pull, sendbuf, recvbuf, offsets[me], counts[me]);
    if (result == WEFT_SUCCESS)
        result = wf_pull_sync(&pull.peers, 1, "telling peers this rank finished reading them");
    wf_mr_put(comm, &send_ref);
    pull_free(&pull);
    return wf_sig_finish(comm, result);
}

/* Arrivals that rank `writer` raises in every peer: one per piece of each chunk of its block. */
static uint32_t block_pieces(weft_comm_t comm, size_t count, size_t size)
{
    size_t step = PULL_CHUNK / size, pieces = 0;
    for (size_t first = 0; first < count; first += step) {
        size_t elements = count - first < step ? count - first : step;
        pieces += wf_write_pieces(comm, elements * size);
    }
    return (uint32_t)pieces;
}

/* Describe sendbuf for reads and recvbuf for the writes of each peer, which raise token + peer. */
static void describe_allreduce(pull_t *pull, const void *sendbuf, const wf_mr_t *send_mr, void *recvbuf,
                               size_t bytes, uint32_t token)
{
    weft_comm_t comm = pull->comm;
    wf_pull_describe(&pull->peers, sendbuf, bytes, send_mr);
    for (int peer = 0; peer < comm->nranks; peer++)
        if (peer != comm->rank)
            pull->peers.mine[peer].result = wf_describe_buffer(comm, pull->result_mr, recvbuf, peer, token + (uint32_t)peer);
}

weft_result_t wf_allreduce_pull(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                const wf_reduce_plan_t *plan)
{
    int n = comm->nranks, me = comm->rank;
    size_t size = plan->user_size, bytes = count * size;
    size_t *counts = malloc(2 * (size_t)n * sizeof(size_t));
    if (counts == NULL)
        return wf_sig_finish(comm, wf_pull_oom(comm));
    size_t *offsets = counts + n;
    for (int r = 0; r < n; r++) {
        counts[r] = wf_block_count(count, n, r);
        offsets[r] = wf_block_offset(count, n, r);
    }
    pull_t pull;
    wf_mr_ref_t send_ref = {0}, recv_ref = {0};
    uint32_t token = 0;
    weft_result_t result = pull_init(&pull, comm, plan);
    if (result == WEFT_SUCCESS)
        result = wf_comm_reserve_tokens(comm, (uint32_t)n, &token);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, sendbuf, bytes, &send_ref);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, recvbuf, bytes, &recv_ref);
    if (result == WEFT_SUCCESS) {
        pull.result_mr = wf_mr_of(&recv_ref);
        describe_allreduce(&pull, sendbuf, wf_mr_of(&send_ref), recvbuf, bytes, token);
        result = wf_pull_exchange(&pull.peers);
    }
    /* Reduce this rank's block into recvbuf and write each chunk into every peer's recvbuf. */
    if (result == WEFT_SUCCESS)
        result = reduce_own_block(&pull, sendbuf, (char *)recvbuf + offsets[me] * size, offsets[me], counts[me]);
    for (int set = 0; set < 2 && pull.written != NULL; set++) {
        weft_result_t waited = wait_writes(&pull, set);
        result = result == WEFT_SUCCESS ? waited : result;
    }
    /* Every peer's writes have arrived, so every peer has also finished reading this rank. */
    for (int peer = 0; peer < n && result == WEFT_SUCCESS; peer++)
        if (peer != me)
            result = wf_comm_wait_arrivals(comm, token + (uint32_t)peer, block_pieces(comm, counts[peer], size), peer);
    wf_mr_put(comm, &recv_ref);
    wf_mr_put(comm, &send_ref);
    pull_free(&pull);
    free(counts);
    return wf_sig_finish(comm, result);
}
