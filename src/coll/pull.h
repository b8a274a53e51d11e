/*
 * Shared parts of the pull algorithms (pull.c for the reductions, pull_gather.c for all-gather
 * and broadcast): the exchange of buffer descriptors with every peer, the "done" messages that
 * end a pull collective, and bounds-checked reads.
 *
 * Messages have tag kind WF_TAG_PULL and the phase as sub-index. Phase 0 carries a rank's buffer
 * descriptor to each peer (to the left neighbour inside the signature message instead), so every
 * reader compares the signature of every rank it reads from before its first read. Phase 1 means
 * "done reading you".
 */
#ifndef WF_COLL_PULL_H
#define WF_COLL_PULL_H

#include "coll.h"

/* Where a peer may read one of this rank's buffers, and the sender's signature to compare. */
typedef struct {
    wf_signature_t sig;
    uint64_t address;
    uint64_t key;
    uint64_t bytes;            /* readable bytes from address; a reader checks its reads against it */
    wf_remote_buffer_t result; /* all-reduce: where the peer writes into recvbuf, and its arrival counter */
} wf_pull_buffer_t;

/* Descriptors exchanged with every peer, and the messages that carry them. */
typedef struct {
    weft_comm_t comm;
    wf_pull_buffer_t *theirs; /* every peer's descriptor (phase 0) */
    wf_pull_buffer_t *mine;   /* what this rank sends each peer */
    wf_xfer_t *sends, *recvs; /* one per peer */
    wf_mr_ref_t message_ref;  /* registration of mine/theirs when the provider needs descriptors */
    void *message_desc;
} wf_pull_peers_t;

static inline uint64_t wf_pull_tag(const weft_comm_t comm, unsigned phase, int sender)
{
    return wf_tag(comm->seq, WF_TAG_PULL, phase, sender);
}

/* Fail comm with WEFT_ERR_NO_MEMORY, naming the collective and rank. */
weft_result_t wf_pull_oom(weft_comm_t comm);

weft_result_t wf_pull_peers_init(wf_pull_peers_t *peers, weft_comm_t comm);
void wf_pull_peers_free(wf_pull_peers_t *peers);

/* Describe [buf, buf + bytes) inside mr to every peer that will read it. */
void wf_pull_describe(wf_pull_peers_t *peers, const void *buf, size_t bytes, const wf_mr_t *mr);

/* Phase 0: send mine[peer] to every peer and receive theirs, checking every peer's signature. */
weft_result_t wf_pull_exchange(wf_pull_peers_t *peers);

/* Send mine[peer] to every peer under `phase` and receive theirs[peer] from each. */
weft_result_t wf_pull_sync(wf_pull_peers_t *peers, unsigned phase, const char *label);

/*
 * Post a read of bytes at offset of the buffer that `from` describes on peer into dst. Fails comm
 * with WEFT_ERR_MISMATCH when the range is beyond what the peer exposes.
 */
weft_result_t wf_pull_read(weft_comm_t comm, int peer, const wf_pull_buffer_t *from, size_t offset, void *dst,
                           size_t bytes, void *desc, wf_xfer_t *xfer);

#endif /* WF_COLL_PULL_H */
