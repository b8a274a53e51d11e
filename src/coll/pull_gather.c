/*
 * Pull all-gather and broadcast: every rank reads what it lacks straight out of the peers'
 * buffers into its own, with RDMA reads, and nothing is forwarded.
 *
 * All-gather: every rank describes its recvbuf (with its own block already in place) to every
 * peer, reads every peer's block from there into the same place of its recvbuf, and ends with a
 * "done reading you" message to and from every peer. One copy per block and no steps between
 * ranks, where the ring forwards each block n - 1 times in sequence.
 *
 * Broadcast: the root describes its buffer to every other rank, which reads it in pieces of
 * PULL_PIECE bytes and then sends the root a "done" message. Rank r starts at piece r of the buffer and
 * wraps around, so that the readers do not all read the same piece at once.
 */
#include <stdlib.h>
#include <string.h>

#include "pull.h"

#define PULL_PIECE ((size_t)1 << 20) /* bytes per read; a larger block is read in several */

/* Post reads of [offset, offset + bytes) of the buffer `from` describes into dst + offset, in pieces. */
static weft_result_t read_range(weft_comm_t comm, int peer, const wf_pull_buffer_t *from, char *dst, size_t offset,
                                size_t bytes, void *desc, wf_xfer_t *xfers, size_t *posted)
{
    size_t piece = comm->max_message < PULL_PIECE ? comm->max_message : PULL_PIECE;
    for (size_t done = 0; done < bytes; done += piece) {
        size_t length = bytes - done < piece ? bytes - done : piece;
        weft_result_t result =
            wf_pull_read(comm, peer, from, offset + done, dst + offset + done, length, desc, &xfers[*posted]);
        if (result != WEFT_SUCCESS)
            return result;
        (*posted)++;
    }
    return WEFT_SUCCESS;
}

static size_t pieces_of(const weft_comm_t comm, size_t bytes)
{
    size_t piece = comm->max_message < PULL_PIECE ? comm->max_message : PULL_PIECE;
    return (bytes + piece - 1) / piece;
}

/* Wait for the first `posted` reads, from the peers in peer_of, and return the first failure. */
static weft_result_t wait_reads(weft_comm_t comm, wf_xfer_t *xfers, const int *peer_of, size_t posted,
                                weft_result_t result)
{
    for (size_t p = 0; p < posted; p++) {
        weft_result_t waited = wf_comm_wait_xfer(comm, &xfers[p], peer_of[p], "reading a peer's block");
        result = result == WEFT_SUCCESS ? waited : result;
    }
    return result;
}

/* Read every peer's block (bytes and offsets in recvbuf) into place, starting with the right neighbour. */
static weft_result_t gather_blocks(wf_pull_peers_t *peers, char *recvbuf, const size_t *bytes, const size_t *offsets,
                                   void *desc)
{
    weft_comm_t comm = peers->comm;
    int n = comm->nranks;
    size_t pieces = 0;
    for (int peer = 0; peer < n; peer++)
        if (peer != comm->rank)
            pieces += pieces_of(comm, bytes[peer]);
    wf_xfer_t *xfers = calloc(pieces > 0 ? pieces : 1, sizeof(*xfers));
    int *peer_of = calloc(pieces > 0 ? pieces : 1, sizeof(*peer_of));
    weft_result_t result = xfers == NULL || peer_of == NULL ? wf_pull_oom(comm) : WEFT_SUCCESS;
    size_t posted = 0;
    for (int i = 1; i < n && result == WEFT_SUCCESS; i++) {
        int peer = (comm->rank + i) % n;
        size_t first = posted;
        result = read_range(comm, peer, &peers->theirs[peer], recvbuf, offsets[peer], bytes[peer], desc, xfers,
                            &posted);
        for (size_t p = first; p < posted; p++)
            peer_of[p] = peer;
    }
    result = wait_reads(comm, xfers, peer_of, posted, result);
    free(xfers);
    free(peer_of);
    return result;
}

weft_result_t wf_allgather_pull(weft_comm_t comm, void *recvbuf, size_t total_bytes, const size_t *bytes,
                                const size_t *offsets)
{
    wf_pull_peers_t peers;
    wf_mr_ref_t ref = {0};
    weft_result_t result = wf_pull_peers_init(&peers, comm);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, recvbuf, total_bytes, &ref);
    if (result == WEFT_SUCCESS) {
        wf_pull_describe(&peers, recvbuf, total_bytes, wf_mr_of(&ref));
        result = wf_pull_exchange(&peers);
    }
    if (result == WEFT_SUCCESS)
        result = gather_blocks(&peers, recvbuf, bytes, offsets, wf_mr_of(&ref)->desc);
    /* The peers read this rank's block until their "done" messages arrive. */
    if (result == WEFT_SUCCESS)
        result = wf_pull_sync(&peers, 1, "telling peers this rank finished reading them");
    wf_mr_put(comm, &ref);
    wf_pull_peers_free(&peers);
    return wf_sig_finish(comm, result);
}

/*
 * The root's descriptor: the root's left neighbour gets it in the signature message, every other
 * rank in a phase 0 message. A reader compares the root's signature before its first read.
 */
static weft_result_t exchange_root_buffer(wf_pull_peers_t *peers, int root)
{
    weft_comm_t comm = peers->comm;
    int me = comm->rank, left = wf_left(comm), right = wf_right(comm);
    weft_result_t result = wf_sig_send(comm, me == root ? &peers->mine[left] : NULL,
                                       me == root ? sizeof(wf_pull_buffer_t) : 0,
                                       right == root ? sizeof(wf_pull_buffer_t) : 0);
    if (me == root) {
        for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
            if (peer != me && peer != left)
                result = wf_post_send(comm, peer, wf_pull_tag(comm, 0, me), &peers->mine[peer],
                                      sizeof(wf_pull_buffer_t), peers->message_desc, &peers->sends[peer]);
        for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
            if (peer != me && peer != left)
                result = wf_comm_wait_xfer(comm, &peers->sends[peer], peer, "sending the root's buffer descriptor");
        return result;
    }
    if (right == root) {
        if (result == WEFT_SUCCESS)
            result = wf_sig_wait(comm);
        if (result == WEFT_SUCCESS)
            memcpy(&peers->theirs[root], wf_sig_data(comm), sizeof(wf_pull_buffer_t));
        return result;
    }
    if (result == WEFT_SUCCESS)
        result = wf_post_recv(comm, root, wf_pull_tag(comm, 0, root), &peers->theirs[root], sizeof(wf_pull_buffer_t),
                              peers->message_desc, &peers->recvs[root]);
    if (result == WEFT_SUCCESS)
        result = wf_comm_wait_recv(comm, &peers->recvs[root], root, "receiving the root's buffer descriptor",
                                   sizeof(wf_pull_buffer_t));
    if (result == WEFT_SUCCESS)
        result = wf_sig_check_peer(comm, root, &peers->theirs[root].sig);
    return result;
}

/* Read the root's buffer into buf, starting at this rank's distance from the root, in pieces, wrapping around. */
static weft_result_t read_root(wf_pull_peers_t *peers, int root, char *buf, size_t bytes, void *desc)
{
    weft_comm_t comm = peers->comm;
    size_t pieces = pieces_of(comm, bytes), posted = 0;
    size_t piece = comm->max_message < PULL_PIECE ? comm->max_message : PULL_PIECE;
    size_t start = (size_t)((comm->rank - root + comm->nranks) % comm->nranks) % pieces;
    wf_xfer_t *xfers = calloc(pieces, sizeof(*xfers));
    int *peer_of = calloc(pieces, sizeof(*peer_of));
    weft_result_t result = xfers == NULL || peer_of == NULL ? wf_pull_oom(comm) : WEFT_SUCCESS;
    for (size_t k = 0; k < pieces && result == WEFT_SUCCESS; k++) {
        size_t offset = (start + k) % pieces * piece;
        size_t length = bytes - offset < piece ? bytes - offset : piece;
        peer_of[posted] = root;
        result = wf_pull_read(comm, root, &peers->theirs[root], offset, buf + offset, length, desc, &xfers[posted]);
        if (result == WEFT_SUCCESS)
            posted++;
    }
    result = wait_reads(comm, xfers, peer_of, posted, result);
    free(xfers);
    free(peer_of);
    return result;
}

/* The root waits for a "done reading you" message from every other rank, which each of them sends. */
static weft_result_t finish_broadcast(wf_pull_peers_t *peers, int root)
{
    weft_comm_t comm = peers->comm;
    int me = comm->rank;
    weft_result_t result = WEFT_SUCCESS;
    if (me != root) {
        result = wf_post_send(comm, root, wf_pull_tag(comm, 1, me), &peers->mine[root], sizeof(wf_pull_buffer_t),
                              peers->message_desc, &peers->sends[root]);
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &peers->sends[root], root, "telling the root this rank is done");
        return result;
    }
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != me)
            result = wf_post_recv(comm, peer, wf_pull_tag(comm, 1, peer), &peers->theirs[peer],
                                  sizeof(wf_pull_buffer_t), peers->message_desc, &peers->recvs[peer]);
    for (int peer = 0; peer < comm->nranks && result == WEFT_SUCCESS; peer++)
        if (peer != me)
            result = wf_comm_wait_recv(comm, &peers->recvs[peer], peer, "waiting for readers of the root's buffer",
                                       sizeof(wf_pull_buffer_t));
    return result;
}

weft_result_t wf_broadcast_pull(weft_comm_t comm, void *buf, size_t bytes, int root)
{
    wf_pull_peers_t peers;
    wf_mr_ref_t ref = {0};
    weft_result_t result = wf_pull_peers_init(&peers, comm);
    if (result == WEFT_SUCCESS)
        result = wf_mr_get(comm, buf, bytes, &ref);
    if (result == WEFT_SUCCESS) {
        wf_pull_describe(&peers, buf, bytes, wf_mr_of(&ref));
        result = exchange_root_buffer(&peers, root);
    }
    if (result == WEFT_SUCCESS && comm->rank != root)
        result = read_root(&peers, root, buf, bytes, wf_mr_of(&ref)->desc);
    if (result == WEFT_SUCCESS)
        result = finish_broadcast(&peers, root);
    wf_mr_put(comm, &ref);
    wf_pull_peers_free(&peers);
    return wf_sig_finish(comm, result);
}
