/*
 * Pull algorithms: every rank reads its block of the result straight out of every peer's send
 * buffer with RDMA reads, and reduces it itself.
 *
 * Each element is reduced once, from the peers' raw data, by the rank that owns its block. So
 * 16-bit floats cross the wire as 16 bits and are still rounded once, and no rank needs scratch
 * slots that a writer must be granted credits for: the reader owns its scratch. Reads of the next
 * chunk from every peer are in flight while the current chunk is reduced.
 *
 * The all-reduce form then reads every peer's reduced block into place (an all-gather by reads).
 * The price of pulling is that a rank's buffers must stay put until every reader is done: each
 * phase ends with one small message to and from every peer.
 *
 * Messages have tag kind WF_TAG_PULL and the phase as sub-index. Phase 0 carries a rank's send
 * buffer descriptor to each peer (to the left neighbour inside the signature message instead).
 * Phase 1 means "done reading you" and, for all-reduce, carries where the sender's reduced block
 * is. Phase 2 means "done reading your reduced block".
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"

#define PULL_CHUNK ((size_t)128 * 1024) /* bytes read from each peer per step; two steps in flight */

/* Where a peer may read one of this rank's buffers, and the sender's signature to compare. */
typedef struct {
    wf_signature_t sig;
    uint64_t address;
    uint64_t key;
    uint64_t bytes; /* readable bytes from address; a reader checks its reads against it */
} pull_buffer_t;

/* State of one pull collective on one rank. */
typedef struct {
    weft_comm_t comm;
    const wf_reduce_plan_t *plan;
    pull_buffer_t *theirs; /* every peer's send buffer (phase 0), then reduced block (phase 1) */
    pull_buffer_t *mine;   /* what this rank sends each peer */
    wf_xfer_t *sends, *recvs, *reads;
    wf_mr_ref_t message_ref; /* registration of mine/theirs when the provider needs descriptors */
    void *message_desc;
    char *scratch;           /* 2 * (n - 1) read slots of PULL_CHUNK bytes, then the partial sums */
    wf_mr_ref_t scratch_ref;
} pull_t;

static uint64_t pull_tag(const weft_comm_t comm, unsigned phase, int sender)
{
    return wf_tag(comm->seq, WF_TAG_PULL, phase, sender);
}

static weft_result_t pull_oom(weft_comm_t comm)
{
    return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory for the pull algorithm",
                        comm->coll_name, comm->rank);
}

static void pull_free(pull_t *pull)
{
    wf_mr_put(pull->comm, &pull->message_ref);
    wf_mr_put(pull->comm, &pull->scratch_ref);
    free(pull->theirs);
    free(pull->sends);
    free(pull->scratch);
}

static weft_result_t pull_init(pull_t *pull, weft_comm_t comm, const wf_reduce_plan_t *plan)
{
    int n = comm->nranks;
    memset(pull, 0, sizeof(*pull));
    pull->comm = comm;
    pull->plan = plan;
    pull->theirs = calloc(2 * (size_t)n, sizeof(pull_buffer_t));
    pull->sends = calloc(3 * (size_t)n * 2, sizeof(wf_xfer_t));
    size_t partial_bytes = PULL_CHUNK / plan->user_size * plan->partial_size;
    size_t scratch_bytes = 2 * (size_t)(n - 1) * PULL_CHUNK + partial_bytes;
    pull->scratch = aligned_alloc(4096, (scratch_bytes + 4095) & ~(size_t)4095);
    if (pull->theirs == NULL || pull->sends == NULL || pull->scratch == NULL)
        return pull_oom(comm);
    pull->mine = pull->theirs + n;
    pull->recvs = pull->sends + 2 * n;
    pull->reads = pull->sends + 4 * n; /* two per peer: the chunk in flight and the next */
    weft_result_t result = wf_eager_desc(comm, pull->theirs, 2 * (size_t)n * sizeof(pull_buffer_t),
                                         &pull->message_ref, &pull->message_desc);
    if (result == WEFT_SUCCESS && comm->needs_local_mr)
        result = wf_mr_get(comm, pull->scratch, scratch_bytes, &pull->scratch_ref);
    return result;
}

/* Describe [buf, buf + bytes) to every peer that will read it. */
static void describe_to_peers(pull_t *pull, const void *buf, size_t bytes, const wf_mr_t *mr)
{
    weft_comm_t comm = pull->comm;
    for (int peer = 0; peer < comm->nranks; peer++) {
        if (peer == comm->rank)
            continue;
        wf_remote_buffer_t described = wf_describe_buffer(comm, mr, buf, peer, 0);
        pull->mine[peer] = (pull_buffer_t){comm->sig, described.address, described.key, bytes};
    }
}

/*
 * Phase 0: give every peer the send buffer's descriptor, and get theirs. The left neighbour's
 * travels in the signature message, so it is checked before anything is read.
 */
static weft_result_t exchange_send_buffers(pull_t *pull)
{
    weft_comm_t comm = pull->comm;
    int left = wf_left(comm), right = wf_right(comm);
    weft_result_t result =
        wf_sig_send(comm, &pull->mine[left], sizeof(pull_buffer_t), sizeof(pull_buffer_t));
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank || peer == right)
            continue;
        result = wf_post_recv(comm, peer, pull_tag(comm, 0, peer), &pull->theirs[peer], sizeof(pull_buffer_t),
                              pull->message_desc, &pull->recvs[peer]);
    }
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank || peer == left)
            continue;
        result = wf_post_send(comm, peer, pull_tag(comm, 0, comm->rank), &pull->mine[peer], sizeof(pull_buffer_t),
                              pull->message_desc, &pull->sends[peer]);
    }
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank)
            continue;
        if (peer != right)
            result = wf_comm_wait_recv(comm, &pull->recvs[peer], peer, "receiving a send buffer descriptor",
                                       sizeof(pull_buffer_t));
        /* Every reader compares the signature of every rank it reads from before the first read. */
        if (result == WEFT_SUCCESS && peer != right)
            result = wf_sig_check_peer(comm, peer, &pull->theirs[peer].sig);
        if (result == WEFT_SUCCESS && peer != left)
            result = wf_comm_wait_xfer(comm, &pull->sends[peer], peer, "sending a send buffer descriptor");
    }
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);
    if (result == WEFT_SUCCESS)
        memcpy(&pull->theirs[right], wf_sig_data(comm), sizeof(pull_buffer_t));
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
        const pull_buffer_t *from = &pull->theirs[peer];
        if (offset + bytes > from->bytes)
            return wf_comm_fail(comm, WEFT_ERR_MISMATCH,
                                "%s on rank %d: rank %d exposes %llu bytes but this rank needs bytes %zu to %zu; "
                                "the ranks passed different counts",
                                comm->coll_name, comm->rank, peer, (unsigned long long)from->bytes, offset,
                                offset + bytes);
        char *slot = pull->scratch + ((size_t)set * (size_t)(n - 1) + (size_t)(i - 1)) * PULL_CHUNK;
        int rc = comm->ops->read(comm->transport, peer, slot, bytes, desc, from->address + offset, from->key,
                                 &pull->reads[2 * peer + set]);
        if (rc != 0)
            return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: reading %zu bytes from rank %d failed: %s",
                                comm->coll_name, comm->rank, bytes, peer, comm->ops->error_string(comm->transport));
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
 * `set`. The last contribution is fused with the final rounding into dst.
 */
static void reduce_chunk(pull_t *pull, const void *own, void *dst, size_t count, int set)
{
    weft_comm_t comm = pull->comm;
    const wf_reduce_plan_t *plan = pull->plan;
    int n = comm->nranks;
    char *slots = pull->scratch + (size_t)set * (size_t)(n - 1) * PULL_CHUNK;
    char *partial = pull->scratch + 2 * (size_t)(n - 1) * PULL_CHUNK;
    const void *acc = own;
    /* With two ranks and no conversion, this rank's data already is the partial sum. */
    if (n > 2 || plan->partial_size != plan->user_size) {
        plan->to_partial(partial, own, count);
        acc = partial;
    }
    int last = comm->rank == n - 1 ? n - 2 : n - 1;
    for (int peer = 0; peer < n; peer++) {
        if (peer == comm->rank)
            continue;
        int index = (peer - comm->rank + n) % n - 1;
        const char *data = slots + (size_t)index * PULL_CHUNK;
        if (peer == last)
            plan->reduce_finish(dst, acc, data, count, n);
        else
            plan->reduce_user(partial, data, count);
    }
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
        if (c + 2 < chunks) {
            size_t next = (c + 2) * step, next_elements = count - next < step ? count - next : step;
            result = post_reads(pull, (offset + next) * size, next_elements * size, (int)(c & 1));
        }
    }
    return result;
}

/* Send mine[peer] to every peer under `phase` and receive theirs[peer] from each. */
static weft_result_t sync_peers(pull_t *pull, unsigned phase, const char *what)
{
    weft_comm_t comm = pull->comm;
    weft_result_t result = WEFT_SUCCESS;
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_recv(comm, peer, pull_tag(comm, phase, peer), &pull->theirs[peer],
                                  sizeof(pull_buffer_t), pull->message_desc, &pull->recvs[peer]);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_send(comm, peer, pull_tag(comm, phase, comm->rank), &pull->mine[peer],
                                  sizeof(pull_buffer_t), pull->message_desc, &pull->sends[peer]);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank)
            continue;
        result = wf_comm_wait_recv(comm, &pull->recvs[peer], peer, what, sizeof(pull_buffer_t));
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &pull->sends[peer], peer, what);
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
        describe_to_peers(&pull, sendbuf, exposed, wf_mr_of(&send_ref));
        result = exchange_send_buffers(&pull);
    }
    if (result == WEFT_SUCCESS)
        result = reduce_own_block(&pull, sendbuf, recvbuf, offsets[me], counts[me]);
    if (result == WEFT_SUCCESS)
        result = sync_peers(&pull, 1, "telling peers this rank finished reading them");
    wf_mr_put(comm, &send_ref);
    pull_free(&pull);
    return wf_sig_finish(comm, result);
}

/* Read every peer's reduced block (described in pull->theirs) into its place in recvbuf. */
static weft_result_t gather_blocks(pull_t *pull, char *recvbuf, const size_t *offsets, size_t size, void *desc)
{
    weft_comm_t comm = pull->comm;
    int n = comm->nranks;
    size_t piece = comm->max_message;
    size_t pieces = 0;
    for (int peer = 0; peer < n; peer++)
        if (peer != comm->rank)
            pieces += (pull->theirs[peer].bytes + piece - 1) / piece;
    wf_xfer_t *xfers = calloc(pieces > 0 ? pieces : 1, sizeof(*xfers));
    int *peer_of = calloc(pieces > 0 ? pieces : 1, sizeof(*peer_of));
    if (xfers == NULL || peer_of == NULL) {
        free(xfers);
        free(peer_of);
        return pull_oom(comm);
    }
    weft_result_t result = WEFT_SUCCESS;
    size_t posted = 0;
    for (int i = 1; i < n && result == WEFT_SUCCESS; i++) {
        int peer = (comm->rank + i) % n;
        const pull_buffer_t *from = &pull->theirs[peer];
        char *dst = recvbuf + offsets[peer] * size;
        for (size_t done = 0; done < from->bytes && result == WEFT_SUCCESS; done += piece) {
            size_t bytes = from->bytes - done < piece ? from->bytes - done : piece;
            int rc = comm->ops->read(comm->transport, peer, dst + done, bytes, desc, from->address + done, from->key,
                                     &xfers[posted]);
            if (rc != 0)
                result = wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: reading %zu bytes from rank %d failed: %s",
                                      comm->coll_name, comm->rank, bytes, peer,
                                      comm->ops->error_string(comm->transport));
            else
                peer_of[posted++] = peer;
        }
    }
    for (size_t p = 0; p < posted; p++) {
        weft_result_t waited = wf_comm_wait_xfer(comm, &xfers[p], peer_of[p], "reading a peer's reduced block");
        if (result == WEFT_SUCCESS)
            result = waited;
    }
    free(xfers);
    free(peer_of);
    return result;
}

weft_result_t wf_allreduce_pull(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                const wf_reduce_plan_t *plan)
{
    int n = comm->nranks, me = comm->rank;
    size_t size = plan->user_size, bytes = count * size;
    size_t *counts = malloc(2 * (size_t)n * sizeof(size_t));
    if (counts == NULL)
        return wf_sig_finish(comm, pull_oom(comm));
    size_t *offsets = counts + n;
    for (int r = 0; r < n; r++) {
        counts[r] = wf_block_count(count, n, r);
        offsets[r] = wf_block_offset(count, n, r);
    }
    pull_t pull;
    wf_mr_ref_t send_ref = {0}, recv_ref = {0};
    weft_result_t result = pull_init(&pull, comm, plan);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, sendbuf, bytes, &send_ref);
    if (result == WEFT_SUCCESS) {
        describe_to_peers(&pull, sendbuf, bytes, wf_mr_of(&send_ref));
        result = exchange_send_buffers(&pull);
    }
    char *own_block = (char *)recvbuf + offsets[me] * size;
    if (result == WEFT_SUCCESS)
        result = reduce_own_block(&pull, sendbuf, own_block, offsets[me], counts[me]);
    /* Phase 1: this rank finished reading the peers' send buffers, and its reduced block is ready. */
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, recvbuf, bytes, &recv_ref);
    if (result == WEFT_SUCCESS) {
        describe_to_peers(&pull, own_block, counts[me] * size, wf_mr_of(&recv_ref));
        result = sync_peers(&pull, 1, "exchanging reduced block descriptors");
    }
    if (result == WEFT_SUCCESS)
        result = gather_blocks(&pull, recvbuf, offsets, size, wf_mr_of(&recv_ref)->desc);
    /* Phase 2: done reading the peers' reduced blocks, so they may return. */
    if (result == WEFT_SUCCESS)
        result = sync_peers(&pull, 2, "telling peers this rank finished reading their blocks");
    wf_mr_put(comm, &recv_ref);
    wf_mr_put(comm, &send_ref);
    pull_free(&pull);
    free(counts);
    return wf_sig_finish(comm, result);
}
