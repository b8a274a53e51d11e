/*
 * One step of a group algorithm, the power-of-two fold, and the scratch memory of the group
 * algorithms (see group.h).
 */
#include <stdlib.h>
#include <string.h>

#include "group.h"

#define STEP_HEADER sizeof(wf_signature_t)

wf_fold_t wf_fold_of(const wf_group_t *group)
{
    wf_fold_t fold = {1, 0, 0, -1};
    while (fold.p * 2 <= group->n) {
        fold.p *= 2;
        fold.steps++;
    }
    fold.rem = group->n - fold.p;
    if (group->me >= 2 * fold.rem)
        fold.core = group->me - fold.rem;
    else if (group->me % 2 == 1)
        fold.core = group->me / 2;
    return fold;
}

/*
 * The staging area of eager step messages, out and in: the sender's signature followed by the
 * data. The receiver checks the signature before it uses the data, so data of a rank that called
 * another collective is never taken for this one's (the direct algorithms get this from tags).
 */
static weft_result_t stage_area(weft_comm_t comm, char **out, char **in)
{
    if (comm->step_stage == NULL) {
        size_t half = (STEP_HEADER + comm->eager_limit + 63) & ~(size_t)63;
        comm->step_stage = aligned_alloc(4096, (2 * half + 4095) & ~(size_t)4095);
        if (comm->step_stage == NULL)
            return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: cannot allocate %zu bytes of staging",
                                comm->coll_name, comm->rank, 2 * half);
        if (comm->ops->mr_register(comm->transport, comm->step_stage, 2 * half, &comm->step_stage_mr) != 0) {
            free(comm->step_stage);
            comm->step_stage = NULL;
            return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: registering %zu bytes of staging failed: "
                                "%s", comm->coll_name, comm->rank, 2 * half, comm->ops->error_string(comm->transport));
        }
        comm->step_stage_half = half;
    }
    *out = comm->step_stage;
    *in = comm->step_stage + comm->step_stage_half;
    return WEFT_SUCCESS;
}

/* Post what a step needs before it waits: eager receive and send, or the descriptor of the receive buffer. */
static weft_result_t post_step(weft_comm_t comm, unsigned step, const wf_step_side_t *send, const wf_step_side_t *recv,
                               wf_xfer_t xfers[2], uint32_t *token)
{
    wf_control_t *control = comm->control;
    char *out = NULL, *in = NULL;
    weft_result_t result = stage_area(comm, &out, &in);
    void *stage_desc = comm->needs_local_mr && result == WEFT_SUCCESS ? comm->step_stage_mr.desc : NULL;

    if (result == WEFT_SUCCESS && recv->peer >= 0 && recv->bytes <= comm->eager_limit) {
        /* Room for any eager message: a longer one from a mismatched rank arrives whole, with its signature. */
        result = wf_post_recv(comm, recv->peer, wf_tag(comm->seq, WF_TAG_STEP, step, recv->peer), in,
                              comm->step_stage_half, stage_desc, &xfers[0]);
    } else if (result == WEFT_SUCCESS && recv->peer >= 0) {
        result = wf_comm_reserve_tokens(comm, 1, token);
        if (result == WEFT_SUCCESS) {
            control->step_out.sig = comm->sig;
            control->step_out.buffer = wf_describe_buffer(comm, recv->mr, recv->buf, recv->peer, *token);
            control->step_out.bytes = recv->bytes;
            result = wf_post_send(comm, recv->peer, wf_tag(comm->seq, WF_TAG_STEP_DESC, step, comm->rank),
                                  &control->step_out, sizeof(control->step_out), comm->control_desc, &xfers[0]);
        }
    }
    if (result != WEFT_SUCCESS || send->peer < 0)
        return result;
    if (send->bytes <= comm->eager_limit) {
        memcpy(out, &comm->sig, STEP_HEADER);
        if (send->bytes > 0)
            memcpy(out + STEP_HEADER, send->buf, send->bytes);
        comm->stats.staged_copy_bytes += send->bytes;
        return wf_post_send(comm, send->peer, wf_tag(comm->seq, WF_TAG_STEP, step, comm->rank), out,
                            STEP_HEADER + send->bytes, stage_desc, &xfers[1]);
    }
    return wf_post_recv(comm, send->peer, wf_tag(comm->seq, WF_TAG_STEP_DESC, step, send->peer), &control->step_in,
                        sizeof(control->step_in), comm->control_desc, &xfers[1]);
}

/* Eager side of a step: wait for the message, check the sender's signature and length, copy the data out. */
static weft_result_t receive_eager(weft_comm_t comm, const wf_step_side_t *recv, wf_xfer_t *xfer)
{
    const char *in = comm->step_stage + comm->step_stage_half;
    weft_result_t result = wf_comm_wait_xfer(comm, xfer, recv->peer, "receiving a step's data");
    if (result == WEFT_SUCCESS && xfer->length < STEP_HEADER)
        result = wf_comm_length_mismatch(comm, recv->peer, "a step's message", STEP_HEADER + recv->bytes,
                                         xfer->length, 0);
    if (result == WEFT_SUCCESS)
        result = wf_sig_check_peer(comm, recv->peer, (const wf_signature_t *)in);
    if (result == WEFT_SUCCESS && xfer->length != STEP_HEADER + recv->bytes)
        result = wf_comm_length_mismatch(comm, recv->peer, "a step's message", STEP_HEADER + recv->bytes,
                                         xfer->length, 0);
    if (result == WEFT_SUCCESS && recv->bytes > 0) { /* an empty block may have a NULL buffer */
        memcpy(recv->buf, in + STEP_HEADER, recv->bytes);
        comm->stats.staged_copy_bytes += recv->bytes;
    }
    return result;
}

/*
 * RDMA side of a step: wait for the receiver's descriptor, check its signature and length, write.
 * Returns the number of write pieces posted into writes in *pieces.
 */
static weft_result_t write_step(weft_comm_t comm, const wf_step_side_t *send, wf_xfer_t *descriptor,
                                wf_xfer_t **writes, uint32_t *pieces)
{
    const wf_step_descriptor_t *target = &comm->control->step_in;
    weft_result_t result = wf_comm_wait_recv(comm, descriptor, send->peer, "receiving a step's buffer descriptor",
                                             sizeof(*target));
    if (result == WEFT_SUCCESS)
        result = wf_sig_check_peer(comm, send->peer, &target->sig);
    if (result == WEFT_SUCCESS && target->bytes != send->bytes)
        result = wf_comm_length_mismatch(comm, send->peer, "the length of a step's RDMA write", send->bytes,
                                         (size_t)target->bytes, 0);
    if (result != WEFT_SUCCESS)
        return result;

    *writes = calloc(wf_write_pieces(comm, send->bytes), sizeof(**writes));
    if (*writes == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory for %u RDMA writes",
                            comm->coll_name, comm->rank, wf_write_pieces(comm, send->bytes));
    void *desc = send->mr != NULL ? send->mr->desc : NULL;
    return wf_post_write(comm, send->peer, send->buf, send->bytes, desc, &target->buffer, 0,
                         WF_IMM(WF_IMM_TOKEN, target->buffer.token), *writes, pieces);
}

weft_result_t wf_step_exchange(weft_comm_t comm, unsigned step, const wf_step_side_t *send,
                               const wf_step_side_t *recv)
{
    wf_xfer_t xfers[2] = {{0}};
    wf_xfer_t *writes = NULL;
    uint32_t token = 0, pieces = 0;
    int rdma_send = send->peer >= 0 && send->bytes > comm->eager_limit;
    int rdma_recv = recv->peer >= 0 && recv->bytes > comm->eager_limit;
    if (rdma_recv && recv->mr == NULL)
        return wf_comm_fail(comm, WEFT_ERR_INTERNAL, "%s on rank %d: step %u receives %zu bytes by RDMA into an "
                            "unregistered buffer", comm->coll_name, comm->rank, step, recv->bytes);

    weft_result_t result = post_step(comm, step & 0xffu, send, recv, xfers, &token);
    if (result == WEFT_SUCCESS && rdma_send)
        result = write_step(comm, send, &xfers[1], &writes, &pieces);

    /* Receive: the eager message, or every piece of the writes, then this rank's own sends. */
    if (result == WEFT_SUCCESS && recv->peer >= 0 && !rdma_recv)
        result = receive_eager(comm, recv, &xfers[0]);
    if (result == WEFT_SUCCESS && rdma_recv)
        result = wf_comm_wait_arrivals(comm, token, wf_write_pieces(comm, recv->bytes), recv->peer);
    if (result == WEFT_SUCCESS && rdma_recv)
        result = wf_comm_wait_xfer(comm, &xfers[0], recv->peer, "sending a step's buffer descriptor");
    if (result == WEFT_SUCCESS && send->peer >= 0 && !rdma_send)
        result = wf_comm_wait_xfer(comm, &xfers[1], send->peer, "sending a step's data");
    for (uint32_t i = 0; i < pieces && result == WEFT_SUCCESS; i++)
        result = wf_comm_wait_xfer(comm, &writes[i], send->peer, "RDMA write of a step's data");
    free(writes);
    return result;
}

weft_result_t wf_step_register(weft_comm_t comm, const void *buf, size_t bytes, wf_mr_ref_t *ref,
                               const wf_mr_t **mr)
{
    memset(ref, 0, sizeof(*ref));
    *mr = NULL;
    if (bytes <= comm->eager_limit)
        return WEFT_SUCCESS; /* eager messages go through the registered staging area */
    weft_result_t result = wf_mr_get(comm, buf, bytes, ref);
    if (result == WEFT_SUCCESS)
        *mr = wf_mr_of(ref);
    return result;
}

/* Grow one of the communicator's kept scratch buffers to at least bytes, registered. */
static weft_result_t grow_kept_scratch(weft_comm_t comm, wf_kept_scratch_t *buffer, size_t bytes)
{
    if (bytes <= buffer->size)
        return WEFT_SUCCESS;
    if (buffer->base != NULL)
        comm->ops->mr_deregister(comm->transport, &buffer->mr);
    free(buffer->base);
    buffer->base = NULL;
    buffer->size = 0;
    size_t rounded = (bytes + 4095) & ~(size_t)4095;
    buffer->base = aligned_alloc(4096, rounded);
    if (buffer->base == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: cannot allocate %zu bytes of scratch; lower "
                            "WEFT_SCRATCH_KEEP or the message size", comm->coll_name, comm->rank, rounded);
    if (comm->ops->mr_register(comm->transport, buffer->base, rounded, &buffer->mr) != 0) {
        free(buffer->base);
        buffer->base = NULL;
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: registering %zu bytes of scratch failed: %s; "
                            "check the memlock limit (ulimit -l)", comm->coll_name, comm->rank, rounded,
                            comm->ops->error_string(comm->transport));
    }
    buffer->size = rounded;
    return WEFT_SUCCESS;
}

weft_result_t wf_scratch_get_for(weft_comm_t comm, wf_scratch_use_t use, size_t bytes, wf_scratch_t *scratch)
{
    memset(scratch, 0, sizeof(*scratch));
    bytes = bytes > 0 ? bytes : 1;
    if (bytes <= comm->scratch_keep_limit) {
        wf_kept_scratch_t *buffer = &comm->kept_scratch[use];
        weft_result_t result = grow_kept_scratch(comm, buffer, bytes);
        scratch->base = buffer->base;
        scratch->mr = &buffer->mr;
        return result;
    }

    size_t rounded = (bytes + 4095) & ~(size_t)4095;
    scratch->base = aligned_alloc(4096, rounded);
    if (scratch->base == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: cannot allocate %zu bytes of scratch",
                            comm->coll_name, comm->rank, rounded);
    scratch->temporary = 1;
    weft_result_t result = wf_mr_get(comm, scratch->base, rounded, &scratch->ref);
    if (result == WEFT_SUCCESS)
        scratch->mr = wf_mr_of(&scratch->ref);
    return result;
}

void wf_scratch_put(weft_comm_t comm, wf_scratch_t *scratch, weft_result_t result)
{
    if (!scratch->temporary)
        return;
    wf_mr_put(comm, &scratch->ref);
    if (result == WEFT_SUCCESS) {
        free(scratch->base);
    } else {
        /* A failed communicator runs no further collective, and one call has one buffer per use. */
        for (int i = 0; i < WF_SCRATCH_USES && scratch->base != NULL; i++) {
            if (comm->failed_scratch[i] == NULL) {
                comm->failed_scratch[i] = scratch->base;
                scratch->base = NULL;
            }
        }
    }
    scratch->base = NULL;
    scratch->temporary = 0;
}
