/*
 * Pipelined ring reduce-scatter over the ring stream.
 *
 * Rank r ends with reduced block r. In ring step s it sends block (r - s - 1) and receives block
 * (r - s - 2), which it adds to its own contribution and forwards in step s + 1. The last step
 * receives block r and writes the finished result into recvbuf. Blocks are cut into chunks of
 * WEFT_CHUNK_SIZE bytes and the loops run chunk-major (all steps of chunk 0, then of chunk 1, ...),
 * so a chunk's forward depends only on the chunk just before it on the same link. With at least
 * two slots per link (WF_STREAM_SLOTS is 8) that order cannot deadlock. A step-major order would
 * deadlock as soon as a block has more chunks than there are slots.
 *
 * Data moves by RDMA write into the right neighbour's slots: step 0 straight from sendbuf (or from
 * a staging slot when partials need a wider type), later steps from the slot the chunk arrived
 * in, after reducing into it in place. A slot is freed when its forward write completed, or at
 * once in the last step; the receiver returns freed slots to the sender as a cumulative credit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"

#define CHUNK_INDEX_MASK 0x0fffffffu /* the immediate carries the low 28 bits of a chunk number */

/* Send the cumulative number of freed slots to the left neighbour, unless the last send is pending. */
static weft_result_t send_credit(weft_comm_t comm)
{
    wf_stream_t *stream = &comm->stream;
    if (stream->freed == stream->credited || !stream->credit_out_xfer.done)
        return WEFT_SUCCESS;
    if (stream->credit_out_xfer.status != 0)
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: sending a stream credit to rank %d failed: %s",
                            comm->coll_name, comm->rank, wf_left(comm), comm->ops->error_string(comm->transport));
    comm->control->credit_out = stream->freed;
    stream->credited = stream->freed;
    return wf_post_send(comm, wf_left(comm), wf_tag(0, WF_TAG_CREDIT, 0, comm->rank), &comm->control->credit_out,
                        sizeof(comm->control->credit_out), comm->control_desc, &stream->credit_out_xfer);
}

static weft_result_t post_credit_receive(weft_comm_t comm)
{
    int right = wf_right(comm);
    return wf_post_recv(comm, right, wf_tag(0, WF_TAG_CREDIT, 0, right), &comm->control->credit_in,
                        sizeof(comm->control->credit_in), comm->control_desc, &comm->stream.credit_in_xfer);
}

/* Take in credits from the right, free finished incoming slots in order, and credit the left. */
static weft_result_t stream_poll(weft_comm_t comm)
{
    wf_stream_t *stream = &comm->stream;
    weft_result_t result = WEFT_SUCCESS;

    if (stream->credit_in_xfer.done) {
        if (stream->credit_in_xfer.status != 0)
            return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: receiving a stream credit from rank %d failed: %s",
                                comm->coll_name, comm->rank, wf_right(comm), comm->ops->error_string(comm->transport));
        uint64_t credit = comm->control->credit_in + WF_STREAM_SLOTS;
        if (credit > stream->credit)
            stream->credit = credit;
        result = post_credit_receive(comm);
    }

    while (result == WEFT_SUCCESS && stream->freed < stream->received) {
        wf_slot_state_t *slot = &stream->slot_state[stream->freed % WF_STREAM_SLOTS];
        if (!slot->releasable && (slot->forward == NULL || !slot->forward->done))
            break;
        memset(slot, 0, sizeof(*slot));
        stream->arrived[stream->freed % WF_STREAM_SLOTS] = 0;
        stream->freed++;
    }
    if (result == WEFT_SUCCESS)
        result = send_credit(comm);
    return result;
}

static weft_result_t stream_wait(weft_comm_t comm, int peer, int (*ready)(const wf_stream_t *))
{
    for (;;) {
        weft_result_t result = stream_poll(comm);
        if (result != WEFT_SUCCESS || ready(&comm->stream))
            return result;
        result = wf_comm_progress(comm, peer);
        if (result != WEFT_SUCCESS)
            return result;
    }
}

static int can_send(const wf_stream_t *s)
{
    return s->sent < s->credit && s->out_xfer[s->sent % WF_STREAM_SLOTS].done;
}

static int next_arrived(const wf_stream_t *s)
{
    return s->arrived[s->received % WF_STREAM_SLOTS] == (s->received & CHUNK_INDEX_MASK) + 1;
}

static int all_freed(const wf_stream_t *s)
{
    for (int i = 0; i < WF_STREAM_SLOTS; i++)
        if (!s->out_xfer[i].done)
            return 0;
    return s->freed == s->received;
}

/* Write one chunk from src (partials) into the right neighbour's next slot. */
static weft_result_t stream_send(weft_comm_t comm, const void *src, size_t bytes, void *desc, wf_slot_state_t *forwarded)
{
    wf_stream_t *stream = &comm->stream;
    weft_result_t result = stream_wait(comm, wf_right(comm), can_send);
    if (result != WEFT_SUCCESS)
        return result;

    unsigned slot = (unsigned)(stream->sent % WF_STREAM_SLOTS);
    uint32_t pieces;
    result = wf_post_write(comm, wf_right(comm), src, bytes, desc, &stream->right_slots, (uint64_t)slot * comm->chunk_size,
                           WF_IMM(WF_IMM_STREAM, (uint32_t)(stream->sent & CHUNK_INDEX_MASK)), &stream->out_xfer[slot],
                           &pieces);
    if (forwarded != NULL)
        forwarded->forward = &stream->out_xfer[slot];
    stream->sent++;
    return result;
}

typedef struct {
    const char *sendbuf;
    char *recvbuf;
    const size_t *counts;
    const size_t *offsets;
    const wf_reduce_plan_t *plan;
    size_t chunk_elems;
    void *send_desc; /* sendbuf's descriptor, when step 0 writes straight from it */
} ring_args_t;

static size_t chunk_length(size_t block_count, size_t chunk, size_t chunk_elems)
{
    size_t start = chunk * chunk_elems;
    if (start >= block_count)
        return 0;
    return block_count - start < chunk_elems ? block_count - start : chunk_elems;
}

/* Step 0: send this rank's own contribution of a chunk, converted to partials when needed. */
static weft_result_t send_own_chunk(weft_comm_t comm, const ring_args_t *a, int block, size_t chunk, size_t elems)
{
    const wf_reduce_plan_t *plan = a->plan;
    const char *src = a->sendbuf + (a->offsets[block] + chunk * a->chunk_elems) * plan->user_size;
    if (plan->partial_size == plan->user_size)
        return stream_send(comm, src, elems * plan->partial_size, a->send_desc, NULL);

    /* The staging slot of this chunk is free once the previous write from it completed. */
    weft_result_t result = stream_wait(comm, wf_right(comm), can_send);
    if (result != WEFT_SUCCESS)
        return result;
    char *staging = (char *)comm->stream.staging + (comm->stream.sent % WF_STREAM_SLOTS) * comm->chunk_size;
    plan->to_partial(staging, src, elems);
    comm->stats.staged_copy_bytes += elems * plan->user_size;
    return stream_send(comm, staging, elems * plan->partial_size, comm->stream.staging_mr.desc, NULL);
}

/* Receive a chunk of `block`, add this rank's contribution, and finish it in the last step. */
static weft_result_t receive_chunk(weft_comm_t comm, const ring_args_t *a, int block, size_t chunk, size_t elems,
                                   int last_step, wf_slot_state_t **held)
{
    wf_stream_t *stream = &comm->stream;
    const wf_reduce_plan_t *plan = a->plan;
    weft_result_t result = stream_wait(comm, wf_left(comm), next_arrived);
    if (result != WEFT_SUCCESS)
        return result;

    unsigned slot = (unsigned)(stream->received % WF_STREAM_SLOTS);
    char *data = (char *)stream->slots + (size_t)slot * comm->chunk_size;
    size_t first = a->offsets[block] + chunk * a->chunk_elems;
    const char *mine = a->sendbuf + first * plan->user_size;
    wf_slot_state_t *state = &stream->slot_state[slot];
    memset(state, 0, sizeof(*state));
    if (last_step) {
        char *out = a->recvbuf + chunk * a->chunk_elems * plan->user_size;
        plan->reduce_finish(out, data, mine, elems, comm->nranks);
        state->releasable = 1;
    } else {
        plan->reduce_user(data, mine, elems);
        *held = state;
    }
    stream->received++;
    return WEFT_SUCCESS;
}

weft_result_t wf_ring_reduce_scatter(weft_comm_t comm, const void *sendbuf, void *recvbuf, const size_t *counts,
                                     const size_t *offsets, const wf_reduce_plan_t *plan)
{
    int n = comm->nranks, rank = comm->rank;
    ring_args_t a = {sendbuf, recvbuf, counts, offsets, plan, comm->chunk_size / plan->partial_size, NULL};
    size_t nchunks = 0, total = 0;
    for (int b = 0; b < n; b++) {
        size_t c = (counts[b] + a.chunk_elems - 1) / a.chunk_elems;
        nchunks = c > nchunks ? c : nchunks;
        total = offsets[b] + counts[b] > total ? offsets[b] + counts[b] : total;
    }

    /* Step 0 writes straight from sendbuf when no conversion is needed. */
    wf_mr_ref_t send_ref = {0};
    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS && plan->partial_size == plan->user_size) {
        result = wf_mr_get(comm, sendbuf, total * plan->user_size, &send_ref);
        if (result == WEFT_SUCCESS)
            a.send_desc = wf_mr_of(&send_ref)->desc;
    }
    /*
     * Write into the right neighbour's slots only once its signature matched: a neighbour that
     * passed other arguments must not receive (and may be destroying its endpoint while) a chunk.
     */
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);

    for (size_t chunk = 0; chunk < nchunks && result == WEFT_SUCCESS; chunk++) {
        wf_slot_state_t *held = NULL; /* slot reduced in the previous step, forwarded in this one */
        for (int step = 0; step < n - 1 && result == WEFT_SUCCESS; step++) {
            int send_block = (rank - step - 1 + n) % n;
            size_t send_elems = chunk_length(counts[send_block], chunk, a.chunk_elems);
            if (send_elems > 0 && step == 0) {
                result = send_own_chunk(comm, &a, send_block, chunk, send_elems);
            } else if (send_elems > 0) {
                size_t slot = (size_t)(held - comm->stream.slot_state);
                const char *src = (const char *)comm->stream.slots + slot * comm->chunk_size;
                result = stream_send(comm, src, send_elems * plan->partial_size, comm->stream.slots_mr.desc, held);
            }
            if (result != WEFT_SUCCESS)
                break;

            int recv_block = (rank - step - 2 + 2 * n) % n;
            size_t recv_elems = chunk_length(counts[recv_block], chunk, a.chunk_elems);
            if (recv_elems > 0)
                result = receive_chunk(comm, &a, recv_block, chunk, recv_elems, step == n - 2, &held);
        }
    }

    /* Drain: every forward write done, every slot freed and credited, before buffers go back. */
    if (result == WEFT_SUCCESS)
        result = stream_wait(comm, wf_left(comm), all_freed);
    wf_mr_put(comm, &send_ref);
    return wf_sig_finish(comm, result);
}

/* Allocate and register one region of WF_STREAM_SLOTS chunks. */
static weft_result_t stream_region(weft_comm_t comm, void **region, wf_mr_t *mr, char *err, size_t errlen)
{
    size_t bytes = (size_t)WF_STREAM_SLOTS * comm->chunk_size;
    *region = aligned_alloc(4096, bytes);
    if (*region == NULL) {
        snprintf(err, errlen, "rank %d cannot allocate %zu bytes of ring slots; lower WEFT_CHUNK_SIZE", comm->rank, bytes);
        return WEFT_ERR_NO_MEMORY;
    }
    memset(*region, 0, bytes);
    if (comm->ops->mr_register(comm->transport, *region, bytes, mr) != 0) {
        snprintf(err, errlen, "rank %d cannot register %zu bytes of ring slots: %s; check the memlock limit (ulimit -l)",
                 comm->rank, bytes, comm->ops->error_string(comm->transport));
        free(*region);
        *region = NULL;
        return WEFT_ERR_TRANSPORT;
    }
    return WEFT_SUCCESS;
}

weft_result_t wf_stream_init(weft_comm_t comm)
{
    wf_stream_t *stream = &comm->stream;
    char err[256];
    memset(stream, 0, sizeof(*stream));
    stream->credit = WF_STREAM_SLOTS;
    stream->credit_out_xfer.done = 1;
    for (int i = 0; i < WF_STREAM_SLOTS; i++)
        stream->out_xfer[i].done = 1;

    weft_result_t result = stream_region(comm, &stream->slots, &stream->slots_mr, err, sizeof(err));
    if (result == WEFT_SUCCESS) {
        result = stream_region(comm, &stream->staging, &stream->staging_mr, err, sizeof(err));
        if (result != WEFT_SUCCESS) {
            comm->ops->mr_deregister(comm->transport, &stream->slots_mr);
            free(stream->slots);
            stream->slots = NULL;
        }
    }
    if (result != WEFT_SUCCESS) {
        snprintf(comm->last_error, sizeof(comm->last_error), "%s", err);
        return result;
    }

    /* Every rank learns where to write: its right neighbour's slots. */
    wf_remote_buffer_t mine = wf_describe_buffer(comm, &stream->slots_mr, stream->slots, wf_left(comm), 0);
    wf_remote_buffer_t *all = calloc((unsigned)comm->nranks, sizeof(*all));
    if (all == NULL)
        return WEFT_ERR_NO_MEMORY;
    result = comm->bootstrap->allgather(comm->bootstrap, &mine, all, sizeof(mine));
    if (result == WEFT_SUCCESS)
        stream->right_slots = all[wf_right(comm)];
    free(all);
    if (result != WEFT_SUCCESS) {
        snprintf(comm->last_error, sizeof(comm->last_error),
                 "rank %d could not exchange ring slot addresses through the bootstrap: %.400s", comm->rank,
                 wf_bootstrap_last_error(comm->bootstrap));
        return result;
    }
    stream->active = 1;
    if (comm->nranks > 1) {
        comm->coll_name = "init";
        result = post_credit_receive(comm);
    }
    return result;
}

void wf_stream_fini(weft_comm_t comm)
{
    wf_stream_t *stream = &comm->stream;
    if (stream->slots != NULL)
        comm->ops->mr_deregister(comm->transport, &stream->slots_mr);
    if (stream->staging != NULL)
        comm->ops->mr_deregister(comm->transport, &stream->staging_mr);
}

void wf_stream_free(weft_comm_t comm)
{
    wf_stream_t *stream = &comm->stream;
    free(stream->slots);
    free(stream->staging);
    memset(stream, 0, sizeof(*stream));
}
