/*
 * Mismatch detection (src/mismatch.c): the signature every rank sends its left neighbour in every
 * collective, the report a rank that found a mismatch sends to every other rank, and the calls the
 * progress engine and the algorithms make.
 */
#ifndef WF_MISMATCH_H
#define WF_MISMATCH_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"
#include "weft.h"

/*
 * What a rank passed to the current collective. Every rank sends it to its left neighbour at the
 * start of every collective and compares the one from its right neighbour with its own (see
 * src/mismatch.c). Fixed layout on the wire: 32 bytes.
 */
enum {
    WF_KIND_ALLREDUCE = 1,
    WF_KIND_ALLGATHER,
    WF_KIND_REDUCE_SCATTER,
    WF_KIND_BROADCAST,
    WF_KIND_BARRIER,
    WF_KIND_REDUCE,
    WF_KIND_ALLGATHERV,
    WF_KIND_REDUCE_SCATTERV
};
#define WF_SIG_NONE 0xff  /* datatype or op of a collective that has none */
#define WF_SIG_MAGIC 0x57465347u /* "WFSG": distinguishes a signature from other bytes and other versions */

typedef struct {
    uint8_t kind;      /* WF_KIND_* */
    uint8_t datatype;  /* weft_datatype_t, or WF_SIG_NONE */
    uint8_t op;        /* weft_op_t, or WF_SIG_NONE */
    uint8_t reserved;
    int32_t root;      /* -1 when the collective has no root */
    uint64_t count;    /* elements as passed; the v-forms: sum of recvcounts */
    uint64_t layout;   /* v-forms: hash of recvcounts (and displs); 0 otherwise */
    uint32_t seq;      /* filled by wf_coll_begin */
    uint32_t magic;    /* filled by wf_coll_begin */
} wf_signature_t;

/* A signature for wf_coll_begin, built in place from the API arguments. */
#define WF_SIGNATURE(kind_, count_, datatype_, op_, root_, layout_)                                                \
    (&(const wf_signature_t){.kind = (kind_), .datatype = (uint8_t)(datatype_), .op = (uint8_t)(op_),             \
                             .root = (root_), .count = (uint64_t)(count_), .layout = (layout_)})

#define WF_REPORT_BYTES 400 /* maximum length of the mismatch report sent to the other ranks, with its NUL */

/* A mismatch report: the call it is about, and the sentence of the rank that found it. */
typedef struct {
    uint32_t seq;   /* ranks still finishing an earlier call fail only once they reach this one */
    uint32_t magic; /* WF_SIG_MAGIC */
    char text[WF_REPORT_BYTES];
} wf_report_t;

/* Mismatch detection (src/mismatch.c): buffers and the report receive, set up with the communicator. */
weft_result_t wf_mismatch_init(weft_comm_t comm);
void wf_mismatch_fini(weft_comm_t comm);

/* Hash of one or two tables of n sizes (v-form recvcounts and displs; b may be NULL), never 0. */
uint64_t wf_layout_hash(const size_t *a, const size_t *b, int n);

/*
 * Post this collective's signature to the left neighbour, followed by bytes of data for it (the
 * message that carries the algorithm's data for that neighbour), and note that this rank expects
 * expect bytes of data after the right neighbour's signature. Does nothing when already sent, so
 * an algorithm made of others sends once. Every algorithm calls it before it waits for anything.
 */
weft_result_t wf_sig_send(weft_comm_t comm, const void *data, size_t bytes, size_t expect);

/*
 * Wait until the right neighbour's signature arrived and matched, and this rank's was sent.
 * Returns at once when done for this collective. Data the right neighbour sent is then at
 * wf_sig_data(comm).
 */
weft_result_t wf_sig_wait(weft_comm_t comm);

/*
 * Compare the signature that peer sent with a buffer descriptor or a message with this rank's,
 * before writing into that peer's memory or using its data. A difference fails comm with
 * WEFT_ERR_MISMATCH and is reported to every rank. Returns WEFT_SUCCESS when they match.
 */
weft_result_t wf_sig_check_peer(weft_comm_t comm, int peer, const wf_signature_t *theirs);

/* The end of every algorithm: result, after wf_sig_wait when result is a success. */
weft_result_t wf_sig_finish(weft_comm_t comm, weft_result_t result);

/* Called by wf_coll_begin: record sig and post the receive of the right neighbour's signature. */
void wf_sig_begin(weft_comm_t comm, const wf_signature_t *sig);

/* Look at what wf_mismatch_pending found: compare the signature, or take in the report. */
weft_result_t wf_mismatch_poll(weft_comm_t comm);

/*
 * After a transport error or a lost rank, which may be the echo of another rank's failure: poll
 * briefly for a mismatch report (or this rank's own neighbour check) and fail with it. Returns
 * WEFT_SUCCESS when none came, so the caller records its own failure.
 */
weft_result_t wf_mismatch_grace(weft_comm_t comm);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t wf_mismatch_now_ns(void);

/*
 * Fail comm with the report another rank sent, unless it is about a call this rank has not
 * started yet (then it waits for that call). Sends nothing, so it is safe inside a post.
 */
weft_result_t wf_mismatch_report_received(weft_comm_t comm);

/*
 * A message from peer had an unexpected length (received bytes, or longer than expected when
 * truncated): the ranks disagree. Waits briefly for a report naming the values from the rank that
 * found it, else fails comm with WEFT_ERR_MISMATCH naming the lengths. Returns the failure.
 */
weft_result_t wf_comm_length_mismatch(weft_comm_t comm, int peer, const char *what, size_t expected, size_t received,
                                      int truncated);

/* Wait for a received message and check its length: wf_comm_wait_xfer, then wf_comm_length_mismatch. */
weft_result_t wf_comm_wait_recv(weft_comm_t comm, wf_xfer_t *xfer, int peer, const char *what, size_t expected);

#endif /* WF_MISMATCH_H */
