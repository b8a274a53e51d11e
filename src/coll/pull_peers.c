/*
 * Descriptor exchange, "done" messages and bounds-checked reads of the pull algorithms (pull.h).
 */
#include <stdlib.h>
#include <string.h>

#include "pull.h"

weft_result_t wf_pull_oom(weft_comm_t comm)
{
    return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory for the pull algorithm",
                        comm->coll_name, comm->rank);
}

weft_result_t wf_pull_peers_init(wf_pull_peers_t *peers, weft_comm_t comm)
{
    int n = comm->nranks;
    memset(peers, 0, sizeof(*peers));
    peers->comm = comm;
    peers->theirs = calloc(2 * (size_t)n, sizeof(wf_pull_buffer_t));
    peers->sends = calloc(2 * (size_t)n, sizeof(wf_xfer_t));
    if (peers->theirs == NULL || peers->sends == NULL)
        return wf_pull_oom(comm);
    peers->mine = peers->theirs + n;
    peers->recvs = peers->sends + n;
    return wf_eager_desc(comm, peers->theirs, 2 * (size_t)n * sizeof(wf_pull_buffer_t), &peers->message_ref,
                         &peers->message_desc);
}

void wf_pull_peers_free(wf_pull_peers_t *peers)
{
    wf_mr_put(peers->comm, &peers->message_ref);
    free(peers->theirs);
    free(peers->sends);
}

void wf_pull_describe(wf_pull_peers_t *peers, const void *buf, size_t bytes, const wf_mr_t *mr)
{
    weft_comm_t comm = peers->comm;
    for (int peer = 0; peer < comm->nranks; peer++) {
        if (peer == comm->rank)
            continue;
        wf_remote_buffer_t described = wf_describe_buffer(comm, mr, buf, peer, 0);
        peers->mine[peer] = (wf_pull_buffer_t){comm->sig, described.address, described.key, bytes, {0, 0, 0, 0}};
    }
}

/* The left neighbour's descriptor travels in the signature message, so it is checked before anything is read. */
weft_result_t wf_pull_exchange(wf_pull_peers_t *peers)
{
    weft_comm_t comm = peers->comm;
    int left = wf_left(comm), right = wf_right(comm);
    weft_result_t result =
        wf_sig_send(comm, &peers->mine[left], sizeof(wf_pull_buffer_t), sizeof(wf_pull_buffer_t));
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank || peer == right)
            continue;
        result = wf_post_recv(comm, peer, wf_pull_tag(comm, 0, peer), &peers->theirs[peer], sizeof(wf_pull_buffer_t),
                              peers->message_desc, &peers->recvs[peer]);
    }
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank || peer == left)
            continue;
        result = wf_post_send(comm, peer, wf_pull_tag(comm, 0, comm->rank), &peers->mine[peer],
                              sizeof(wf_pull_buffer_t), peers->message_desc, &peers->sends[peer]);
    }
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank)
            continue;
        if (peer != right)
            result = wf_comm_wait_recv(comm, &peers->recvs[peer], peer, "receiving a buffer descriptor",
                                       sizeof(wf_pull_buffer_t));
        /* Every reader compares the signature of every rank it reads from before the first read. */
        if (result == WEFT_SUCCESS && peer != right)
            result = wf_sig_check_peer(comm, peer, &peers->theirs[peer].sig);
        if (result == WEFT_SUCCESS && peer != left)
            result = wf_comm_wait_xfer(comm, &peers->sends[peer], peer, "sending a buffer descriptor");
    }
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);
    if (result == WEFT_SUCCESS)
        memcpy(&peers->theirs[right], wf_sig_data(comm), sizeof(wf_pull_buffer_t));
    return result;
}

weft_result_t wf_pull_sync(wf_pull_peers_t *peers, unsigned phase, const char *label)
{
    weft_comm_t comm = peers->comm;
    weft_result_t result = WEFT_SUCCESS;
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_recv(comm, peer, wf_pull_tag(comm, phase, peer), &peers->theirs[peer],
                                  sizeof(wf_pull_buffer_t), peers->message_desc, &peers->recvs[peer]);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != comm->rank)
            result = wf_post_send(comm, peer, wf_pull_tag(comm, phase, comm->rank), &peers->mine[peer],
                                  sizeof(wf_pull_buffer_t), peers->message_desc, &peers->sends[peer]);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++) {
        if (peer == comm->rank)
            continue;
        result = wf_comm_wait_recv(comm, &peers->recvs[peer], peer, label, sizeof(wf_pull_buffer_t));
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &peers->sends[peer], peer, label);
    }
    return result;
}

weft_result_t wf_pull_read(weft_comm_t comm, int peer, const wf_pull_buffer_t *from, size_t offset, void *dst,
                           size_t bytes, void *desc, wf_xfer_t *xfer)
{
    if (offset + bytes > from->bytes)
        return wf_comm_fail(comm, WEFT_ERR_MISMATCH,
                            "%s on rank %d: rank %d exposes %llu bytes but this rank needs bytes %zu to %zu; "
                            "the ranks passed different counts",
                            comm->coll_name, comm->rank, peer, (unsigned long long)from->bytes, offset,
                            offset + bytes);
    int rc = comm->ops->read(comm->transport, peer, dst, bytes, desc, from->address + offset, from->key, xfer);
    if (rc != 0)
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: reading %zu bytes from rank %d failed: %s",
                            comm->coll_name, comm->rank, bytes, peer, comm->ops->error_string(comm->transport));
    return WEFT_SUCCESS;
}
