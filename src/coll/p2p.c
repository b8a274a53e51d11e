/*
 * Point-to-point helpers shared by the algorithms: registrations, eager messages, RDMA writes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "log.h"

weft_result_t wf_mr_get(weft_comm_t comm, const void *ptr, size_t length, wf_mr_ref_t *ref)
{
    memset(ref, 0, sizeof(*ref));
    if (comm->mr_cache != NULL) {
        int rc = wf_mr_cache_acquire(comm->mr_cache, ptr, length, &ref->cached);
        if (rc != 0)
            return wf_comm_fail(comm, WEFT_ERR_TRANSPORT,
                                "%s on rank %d could not register %zu bytes at %p: %s; check the "
                                "memlock limit (ulimit -l)",
                                comm->coll_name, comm->rank, length, ptr, comm->ops->error_string(comm->transport));
        return WEFT_SUCCESS;
    }
    int rc = comm->ops->mr_register(comm->transport, (void *)ptr, length, &ref->owned);
    if (rc != 0)
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT,
                            "%s on rank %d could not register %zu bytes at %p: %s; check the memlock "
                            "limit (ulimit -l)",
                            comm->coll_name, comm->rank, length, ptr, comm->ops->error_string(comm->transport));
    comm->stats.mr_cache_misses++;
    ref->is_owned = 1;
    return WEFT_SUCCESS;
}

void wf_mr_put(weft_comm_t comm, wf_mr_ref_t *ref)
{
    if (ref->is_owned) {
        comm->ops->mr_deregister(comm->transport, &ref->owned);
        ref->is_owned = 0;
    } else if (ref->cached != NULL) {
        wf_mr_cache_release(comm->mr_cache, ref->cached);
        ref->cached = NULL;
    }
}

const wf_mr_t *wf_mr_of(const wf_mr_ref_t *ref)
{
    return ref->is_owned ? &ref->owned : ref->cached;
}

weft_result_t wf_eager_desc(weft_comm_t comm, const void *ptr, size_t length, wf_mr_ref_t *ref, void **desc)
{
    memset(ref, 0, sizeof(*ref));
    *desc = NULL;
    if (!comm->needs_local_mr || length == 0)
        return WEFT_SUCCESS;
    weft_result_t result = wf_mr_get(comm, ptr, length, ref);
    if (result == WEFT_SUCCESS)
        *desc = wf_mr_of(ref)->desc;
    return result;
}

weft_result_t wf_post_send(weft_comm_t comm, int peer, uint64_t tag, const void *buf, size_t length, void *desc,
                           wf_xfer_t *xfer)
{
    memset(xfer, 0, sizeof(*xfer));
    int rc = comm->ops->send(comm->transport, peer, tag, buf, length, desc, xfer);
    if (rc != 0)
        return wf_comm_transport_error(comm, "%s on rank %d: sending %zu bytes to rank %d failed: %s",
                                       comm->coll_name, comm->rank, length, peer,
                                       comm->ops->error_string(comm->transport));
    comm->stats.eager_bytes += length;
    return WEFT_SUCCESS;
}

weft_result_t wf_post_recv(weft_comm_t comm, int peer, uint64_t tag, void *buf, size_t length, void *desc,
                           wf_xfer_t *xfer)
{
    memset(xfer, 0, sizeof(*xfer));
    int rc = comm->ops->recv(comm->transport, peer, tag, buf, length, desc, xfer);
    if (rc != 0)
        return wf_comm_transport_error(comm, "%s on rank %d: posting a receive of %zu bytes from rank %d failed: %s",
                                       comm->coll_name, comm->rank, length, peer,
                                       comm->ops->error_string(comm->transport));
    return WEFT_SUCCESS;
}

uint32_t wf_write_pieces(weft_comm_t comm, size_t length)
{
    if (length == 0)
        return 0;
    return (uint32_t)((length + comm->max_message - 1) / comm->max_message);
}

weft_result_t wf_post_write(weft_comm_t comm, int peer, const void *buf, size_t length, void *desc,
                            const wf_remote_buffer_t *dest, uint64_t offset, uint32_t immediate, wf_xfer_t *xfers,
                            uint32_t *pieces)
{
    uint32_t n = wf_write_pieces(comm, length);
    for (uint32_t i = 0; i < n; i++) {
        size_t start = (size_t)i * comm->max_message;
        size_t piece = length - start < comm->max_message ? length - start : comm->max_message;
        memset(&xfers[i], 0, sizeof(xfers[i]));
        int rc = comm->ops->write(comm->transport, peer, (const char *)buf + start, piece, desc,
                                  dest->address + offset + start, dest->key, immediate, &xfers[i]);
        if (rc != 0)
            return wf_comm_transport_error(comm, "%s on rank %d: RDMA write of %zu bytes to rank %d failed: %s",
                                           comm->coll_name, comm->rank, piece, peer,
                                           comm->ops->error_string(comm->transport));
        comm->stats.rdma_writes++;
        comm->stats.rdma_write_bytes += piece;
    }
    *pieces = n;
    return WEFT_SUCCESS;
}

weft_result_t wf_eager_buffer(weft_comm_t comm, size_t bytes, void **buffer, void **desc)
{
    if (bytes > comm->eager_buffer_size) {
        if (comm->eager_registered) {
            comm->ops->mr_deregister(comm->transport, &comm->eager_mr);
            comm->eager_registered = 0;
        }
        free(comm->eager_buffer);
        comm->eager_buffer_size = 0;
        comm->eager_buffer = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
        if (comm->eager_buffer == NULL)
            return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: cannot allocate %zu bytes of eager buffer",
                                comm->coll_name, comm->rank, bytes);
        comm->eager_buffer_size = (bytes + 4095) & ~(size_t)4095;
        if (comm->needs_local_mr) {
            int rc = comm->ops->mr_register(comm->transport, comm->eager_buffer, comm->eager_buffer_size,
                                            &comm->eager_mr);
            if (rc != 0)
                return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: registering the eager buffer failed: %s",
                                    comm->coll_name, comm->rank, comm->ops->error_string(comm->transport));
            comm->eager_registered = 1;
        }
    }
    *buffer = comm->eager_buffer;
    *desc = comm->eager_registered ? comm->eager_mr.desc : NULL;
    return WEFT_SUCCESS;
}

weft_result_t wf_exchange_buffers(weft_comm_t comm, int writer, const wf_remote_buffer_t *mine, int target,
                                  wf_remote_buffer_t *theirs)
{
    wf_control_t *control = comm->control;
    wf_xfer_t send = {0}, recv = {0};
    weft_result_t result = WEFT_SUCCESS;

    if (target >= 0)
        result = wf_post_recv(comm, target, wf_tag(comm->seq, WF_TAG_CTRL, 0, target), &control->peer_buffer,
                              sizeof(control->peer_buffer), comm->control_desc, &recv);
    if (result == WEFT_SUCCESS && writer >= 0) {
        control->local_buffer = *mine;
        result = wf_post_send(comm, writer, wf_tag(comm->seq, WF_TAG_CTRL, 0, comm->rank), &control->local_buffer,
                              sizeof(control->local_buffer), comm->control_desc, &send);
    }
    if (result == WEFT_SUCCESS && target >= 0)
        result = wf_comm_wait_xfer(comm, &recv, target, "receiving a buffer descriptor");
    if (result == WEFT_SUCCESS && writer >= 0)
        result = wf_comm_wait_xfer(comm, &send, writer, "sending a buffer descriptor");
    /* Write into the target's memory only once its signature matched: same counts, same layout. */
    if (result == WEFT_SUCCESS && target >= 0)
        result = wf_sig_wait(comm);
    if (result == WEFT_SUCCESS && target >= 0)
        *theirs = control->peer_buffer;
    return result;
}
