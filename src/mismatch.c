/*
 * Mismatch detection: ranks that pass different collectives, counts, datatypes, ops, roots or
 * v-form layouts fail with WEFT_ERR_MISMATCH on every rank, instead of hanging or returning wrong
 * data.
 *
 * Every collective of more than one rank sends exactly one message with tag WF_TAG_SIG to the left
 * neighbour (rank - 1). It starts with this rank's wf_signature_t (32 bytes) and carries the data
 * the algorithm sends that neighbour anyway, if any, so the check costs no extra message where an
 * algorithm already talks to the left neighbour (the direct algorithms), and a 32-byte one
 * elsewhere. Every rank receives its right neighbour's message into sig_in, which holds a header
 * plus WEFT_EAGER_LIMIT bytes, so it can never be cut, whatever algorithm the neighbour chose.
 *
 * The comparison runs wherever completions are seen (wf_comm_progress), not only at the end of
 * the algorithm: a neighbour that passed other arguments may have chosen another algorithm, and
 * this rank may be waiting for a message that will never come. No rank returns success before its
 * right neighbour's signature matched its own; equal neighbours all around the ring mean equal
 * signatures everywhere.
 *
 * The rank that finds a difference fails and sends its sentence to every other rank (tag
 * WF_TAG_ABORT, sequence 0). Each rank keeps one receive for such a report posted from any sender
 * for the communicator's life, so a rank blocked in any algorithm fails with the same sentence.
 *
 * The direct algorithms also put 8 bits of the signature into the tags of their other data
 * messages, so a rank never consumes data from a rank that passed different arguments: the
 * receive stays unmatched until the report arrives. A received length other than the expected
 * one is also a mismatch (wf_comm_length_mismatch).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll/coll.h"
#include "log.h"

#define HEADER sizeof(wf_signature_t)
#define REPORT_SEND_WAIT_NS 1000000000ull  /* how long a report's sends may take to complete */
#define LENGTH_REPORT_WAIT_NS 1000000000ull /* wait for another rank's report after a bad length */
#define GRACE_NS 500000000ull               /* wait for a report after a transport error or lost rank */

#define now_ns wf_mismatch_now_ns

_Static_assert(sizeof(wf_signature_t) == 32, "the signature header is 32 bytes on the wire");
_Static_assert(sizeof(wf_control_t) <= 4096, "the control page holds the report buffers");

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

uint64_t wf_layout_hash(const size_t *a, const size_t *b, int n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)(unsigned)n;
    for (int i = 0; i < n; i++) {
        h = ((h ^ (uint64_t)a[i]) * 0x100000001b3ull);
        h = (h << 29 | h >> 35);
        if (b != NULL)
            h = (h ^ (uint64_t)b[i]) * 0x9e3779b97f4a7c15ull;
    }
    h = mix64(h);
    return h != 0 ? h : 1;
}

uint64_t wf_mismatch_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

weft_result_t wf_mismatch_init(weft_comm_t comm)
{
    size_t capacity = (HEADER + comm->eager_limit + 63) & ~(size_t)63;
    size_t bytes = (3 * capacity + 4095) & ~(size_t)4095; /* two receive halves and sig_out */
    char *base = aligned_alloc(4096, bytes);
    if (base == NULL) {
        snprintf(comm->last_error, sizeof(comm->last_error),
                 "rank %d: cannot allocate %zu bytes for the neighbour signatures; lower WEFT_EAGER_LIMIT", comm->rank,
                 bytes);
        return WEFT_ERR_NO_MEMORY;
    }
    memset(base, 0, bytes);
    comm->sig_halves[0] = base;
    comm->sig_halves[1] = base + capacity;
    comm->sig_out = base + 2 * capacity;
    comm->sig_half = 0;
    comm->sig_in = comm->sig_halves[0];
    comm->sig_in_xfer = &comm->sig_in_xfers[0];
    comm->sig_capacity = capacity;
    if (comm->ops->mr_register(comm->transport, base, bytes, &comm->sig_mr) != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error),
                 "rank %d: cannot register %zu bytes for the neighbour signatures: %.380s", comm->rank, bytes,
                 comm->ops->error_string(comm->transport));
        return WEFT_ERR_TRANSPORT;
    }
    comm->sig_registered = 1;
    comm->sig_desc = comm->needs_local_mr ? comm->sig_mr.desc : NULL;
    comm->sig_out_xfer.done = 1;
    if (comm->nranks == 1)
        return WEFT_SUCCESS;

    /*
     * Posted before the ring stream's bootstrap allgather, so before any rank can leave init and
     * send a report: recv_any must be posted before its message arrives (transport.h).
     */
    int rc = comm->ops->recv_any(comm->transport, wf_tag(0, WF_TAG_ABORT, 0, 0), WF_TAG_SENDER_MASK,
                                 &comm->control->report_in, sizeof(comm->control->report_in), comm->control_desc,
                                 &comm->report_in_xfer);
    if (rc != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: cannot post the receive of mismatch reports: %.400s",
                 comm->rank, comm->ops->error_string(comm->transport));
        return WEFT_ERR_TRANSPORT;
    }
    return WEFT_SUCCESS;
}

void wf_mismatch_fini(weft_comm_t comm)
{
    if (comm->sig_registered)
        comm->ops->mr_deregister(comm->transport, &comm->sig_mr);
    comm->sig_registered = 0;
}

/* Post the receive of the right neighbour's signature message of collective seq into a half. */
static int post_signature_receive(weft_comm_t comm, uint32_t seq, int half)
{
    int right = wf_right(comm);
    return wf_post_recv(comm, right, wf_tag(seq, WF_TAG_SIG, 0, right), comm->sig_halves[half], comm->sig_capacity,
                        comm->sig_desc, &comm->sig_in_xfers[half]) == WEFT_SUCCESS;
}

void wf_sig_begin(weft_comm_t comm, const wf_signature_t *sig)
{
    comm->sig = *sig;
    comm->sig.reserved = 0;
    comm->sig.seq = comm->seq;
    comm->sig.magic = WF_SIG_MAGIC;
    /* Two multiplications: the top bits depend on every input bit, enough for an 8-bit tag field. */
    uint64_t h = (sig->kind | (uint64_t)sig->datatype << 8 | (uint64_t)sig->op << 16 |
                  (uint64_t)(uint32_t)sig->root << 32) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 29) ^ sig->count ^ sig->layout) * 0xbf58476d1ce4e5b9ull;
    comm->sig_sub = (unsigned)(h >> 56);
    comm->sig_expect = 0;
    comm->sig_waiting = 0;
    if (comm->nranks == 1) {
        comm->sig_sent = comm->sig_checked = comm->sig_done = 1;
        return;
    }
    comm->sig_sent = comm->sig_checked = comm->sig_done = 0;

    /* Use the half the previous collective did not use, where this one's receive may be posted already. */
    comm->sig_half ^= 1;
    comm->sig_in = comm->sig_halves[comm->sig_half];
    comm->sig_in_xfer = &comm->sig_in_xfers[comm->sig_half];
    if (comm->sig_ahead_seq == comm->seq || post_signature_receive(comm, comm->seq, comm->sig_half))
        comm->sig_waiting = 1;

    /*
     * Post the next collective's receive into the other half now. A right neighbour that starts
     * it before this rank does then finds the receive posted, and its message is not copied
     * into an unexpected message and out again. wf_coll_begin is the only place that advances
     * seq, and it always calls this function, so the receive posted ahead is never left over
     * while the communicator works.
     */
    uint32_t next = (comm->seq + 1) & 0xffffffu;
    next = next != 0 ? next : 1;
    comm->sig_ahead_seq = comm->sig_waiting && post_signature_receive(comm, next, comm->sig_half ^ 1) ? next : 0;
}

weft_result_t wf_sig_send(weft_comm_t comm, const void *data, size_t bytes, size_t expect)
{
    if (comm->sig_sent)
        return comm->failure;
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    if (bytes > comm->sig_capacity - HEADER || expect > comm->sig_capacity - HEADER)
        return wf_comm_fail(comm, WEFT_ERR_INTERNAL,
                            "%s on rank %d: %zu bytes for the left neighbour (%zu expected from the right) exceed "
                            "the %zu-byte signature message", comm->coll_name, comm->rank, bytes, expect,
                            comm->sig_capacity - HEADER);
    comm->sig_expect = expect;
    memcpy(comm->sig_out, &comm->sig, HEADER);
    if (bytes > 0) {
        memcpy(comm->sig_out + HEADER, data, bytes);
        comm->stats.staged_copy_bytes += bytes;
    }
    comm->sig_sent = 1;
    return wf_post_send(comm, wf_left(comm), wf_tag(comm->seq, WF_TAG_SIG, 0, comm->rank), comm->sig_out,
                        HEADER + bytes, comm->sig_desc, &comm->sig_out_xfer);
}

static const char *kind_name(unsigned kind)
{
    static const char *const names[] = {NULL, "allreduce", "allgather", "reduce_scatter", "broadcast", "barrier",
                                        "reduce", "allgatherv", "reduce_scatterv"};
    return kind > 0 && kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "an unknown collective";
}

/* " with count 512000 float32 sum root 0", or "" for a barrier. */
static void describe(const wf_signature_t *sig, char *out, size_t length)
{
    size_t used = 0;
#define APPEND(...)                                                                                                    \
    do {                                                                                                               \
        if (used < length)                                                                                             \
            used += (size_t)snprintf(out + used, length - used, __VA_ARGS__);                                         \
    } while (0)
    out[0] = '\0';
    if (sig->kind == WF_KIND_BARRIER)
        return;
    if (sig->kind == WF_KIND_ALLGATHERV || sig->kind == WF_KIND_REDUCE_SCATTERV)
        APPEND(" with recvcounts summing to %llu", (unsigned long long)sig->count);
    else
        APPEND(" with count %llu", (unsigned long long)sig->count);
    if (sig->datatype != WF_SIG_NONE) {
        const char *name = wf_datatype_name((weft_datatype_t)sig->datatype);
        if (name != NULL)
            APPEND(" %s", name);
        else
            APPEND(" datatype %d", sig->datatype);
    }
    if (sig->op != WF_SIG_NONE) {
        const char *name = wf_op_name((weft_op_t)sig->op);
        if (name != NULL)
            APPEND(" %s", name);
        else
            APPEND(" op %d", sig->op);
    }
    if (sig->root >= 0)
        APPEND(" root %d", (int)sig->root);
    if (sig->layout != 0)
        APPEND(" (layout hash %08llx)", (unsigned long long)(sig->layout >> 32));
#undef APPEND
}

/* Post this rank's report to every other rank and give the sends a moment to leave. */
static void send_report(weft_comm_t comm)
{
    int n = comm->nranks;
    if (n == 1)
        return;
    if (comm->report_xfers == NULL)
        comm->report_xfers = calloc((unsigned)n, sizeof(*comm->report_xfers));
    if (comm->report_xfers == NULL) {
        WF_WARN(WF_SUB_COLL, "rank %d: out of memory for sending the mismatch report; the other ranks will time out",
                comm->rank);
        return;
    }
    wf_report_t *report = &comm->control->report_out;
    size_t length = offsetof(wf_report_t, text) + strlen(report->text) + 1;
    int posted = 0;
    /* The communicator has failed, so wf_comm_should_stop would cancel a post that waits for queue space. */
    comm->report_until = now_ns() + REPORT_SEND_WAIT_NS;
    for (int i = 1; i < n; i++) {
        int peer = (comm->rank + i) % n;
        wf_xfer_t *xfer = &comm->report_xfers[peer];
        int rc = comm->ops->send(comm->transport, peer, wf_tag(0, WF_TAG_ABORT, 0, comm->rank), report, length,
                                 comm->control_desc, xfer);
        if (rc != 0) {
            xfer->done = 1;
            WF_WARN(WF_SUB_COLL, "rank %d could not send its mismatch report to rank %d: %s", comm->rank, peer,
                    comm->ops->error_string(comm->transport));
        } else {
            posted++;
        }
    }
    /* Small reports are injected and done at once; otherwise drive them out, for a bounded time. */
    for (int peer = 0; peer < n && posted > 0; peer++)
        while (peer != comm->rank && !comm->report_xfers[peer].done && now_ns() < comm->report_until)
            comm->ops->progress(comm->transport); /* errors: the failure is recorded already */
    comm->report_until = 0;
}

/* Fail comm with WEFT_ERR_MISMATCH and the sentence, and send the sentence to every other rank. */
static weft_result_t report_mismatch(weft_comm_t comm, const char *format, ...) __attribute__((format(printf, 2, 3)));
static weft_result_t report_mismatch(weft_comm_t comm, const char *format, ...)
{
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    wf_report_t *report = &comm->control->report_out;
    char *text = report->text;
    report->seq = comm->seq;
    report->magic = WF_SIG_MAGIC;
    va_list args;
    va_start(args, format);
    vsnprintf(text, WF_REPORT_BYTES, format, args);
    va_end(args);
    wf_comm_fail(comm, WEFT_ERR_MISMATCH, "%s", text);
    send_report(comm);
    return comm->failure;
}

/* Compare peer's signature (readable: magic checked) with this rank's, and report a difference. */
static weft_result_t compare_signature(weft_comm_t comm, int peer, const wf_signature_t *theirs)
{
    const wf_signature_t *mine = &comm->sig;
    if (memcmp(theirs, mine, HEADER) == 0)
        return WEFT_SUCCESS;

    char their_text[128], my_text[128];
    describe(theirs, their_text, sizeof(their_text));
    describe(mine, my_text, sizeof(my_text));
    const char *hint = "";
    if (theirs->kind == mine->kind && theirs->count == mine->count && theirs->datatype == mine->datatype &&
        theirs->op == mine->op && theirs->root == mine->root && theirs->layout != mine->layout)
        hint = " (the same total, but different recvcounts or displs)";
    return report_mismatch(comm, "%s (call %u) on rank %d: rank %d called %s%s, but rank %d called %s%s%s; every "
                           "rank must call the same collectives in the same order with the same count, datatype, op "
                           "and root", comm->coll_name, comm->seq, comm->rank, peer, kind_name(theirs->kind),
                           their_text, comm->rank, kind_name(mine->kind), my_text, hint);
}

/* Compare the right neighbour's signature, which has arrived, with this rank's. */
static weft_result_t check_signature(weft_comm_t comm)
{
    wf_xfer_t *xfer = comm->sig_in_xfer;
    int right = wf_right(comm);
    comm->sig_waiting = 0;
    if (xfer->status != 0)
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s (call %u) on rank %d: receiving the signature of rank %d "
                            "failed: %s", comm->coll_name, comm->seq, comm->rank, right,
                            comm->ops->error_string(comm->transport));
    const wf_signature_t *theirs = (const wf_signature_t *)comm->sig_in;
    if (xfer->length < HEADER || theirs->magic != WF_SIG_MAGIC)
        return report_mismatch(comm, "%s (call %u) on rank %d: rank %d sent a signature of %zu bytes that this rank "
                               "cannot read; every rank must run the same weft version", comm->coll_name, comm->seq,
                               comm->rank, right, xfer->length);
    weft_result_t result = compare_signature(comm, right, theirs);
    if (result == WEFT_SUCCESS)
        comm->sig_checked = 1;
    return result;
}

weft_result_t wf_sig_check_peer(weft_comm_t comm, int peer, const wf_signature_t *theirs)
{
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    if (theirs->magic != WF_SIG_MAGIC)
        return report_mismatch(comm, "%s (call %u) on rank %d: rank %d sent a buffer descriptor whose signature this "
                               "rank cannot read; every rank must run the same weft version", comm->coll_name,
                               comm->seq, comm->rank, peer);
    return compare_signature(comm, peer, theirs);
}

weft_result_t wf_mismatch_report_received(weft_comm_t comm)
{
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    wf_xfer_t *xfer = &comm->report_in_xfer;
    wf_report_t *report = &comm->control->report_in;
    size_t header = offsetof(wf_report_t, text);
    int readable = xfer->status == 0 && xfer->length > header && report->magic == WF_SIG_MAGIC;
    /* About a later call (24-bit sequence numbers, compared modulo 2^24): finish this one first. */
    if (readable && (int32_t)((report->seq - comm->seq) << 8) > 0)
        return WEFT_SUCCESS;
    if (!readable)
        return wf_comm_fail(comm, WEFT_ERR_MISMATCH, "%s (call %u) on rank %d failed: another rank reported a mismatch "
                            "that could not be read (%s)", comm->coll_name ? comm->coll_name : "a call", comm->seq,
                            comm->rank, comm->ops->error_string(comm->transport));
    size_t length = xfer->length - header;
    report->text[length < WF_REPORT_BYTES ? length : WF_REPORT_BYTES - 1] = '\0';
    return wf_comm_fail(comm, WEFT_ERR_MISMATCH, "%s (call %u) on rank %d failed because another rank found a "
                        "mismatch: %s", comm->coll_name ? comm->coll_name : "a call", comm->seq, comm->rank,
                        report->text);
}

weft_result_t wf_mismatch_poll(weft_comm_t comm)
{
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    if (comm->report_in_xfer.done && wf_mismatch_report_received(comm) != WEFT_SUCCESS)
        return comm->failure;
    if (comm->sig_waiting && comm->sig_in_xfer->done)
        return check_signature(comm);
    return WEFT_SUCCESS;
}

weft_result_t wf_mismatch_grace(weft_comm_t comm)
{
    if (comm->nranks == 1 || comm->failure != WEFT_SUCCESS)
        return comm->failure;
    uint64_t until = now_ns() + GRACE_NS;
    for (;;) {
        if (wf_mismatch_pending(comm) && wf_mismatch_poll(comm) != WEFT_SUCCESS)
            return comm->failure;
        if (now_ns() >= until)
            return WEFT_SUCCESS;
        /* Errors here are more of what the caller is about to report. */
        if (comm->ops->progress(comm->transport) == 0)
            sched_yield();
    }
}

weft_result_t wf_sig_wait(weft_comm_t comm)
{
    if (comm->sig_done || comm->failure != WEFT_SUCCESS)
        return comm->failure;
    weft_result_t result = wf_sig_send(comm, NULL, 0, comm->sig_expect); /* no-op unless an algorithm forgot */
    int right = wf_right(comm), left = wf_left(comm);
    while (result == WEFT_SUCCESS && !comm->sig_checked) {
        if (!comm->sig_waiting) /* the receive could not be posted; comm->failure contains the reason */
            return comm->failure != WEFT_SUCCESS ? comm->failure
                                                 : wf_comm_fail(comm, WEFT_ERR_INTERNAL, "%s on rank %d: no signature "
                                                                "receive is posted", comm->coll_name, comm->rank);
        result = wf_comm_progress(comm, right);
    }
    if (result != WEFT_SUCCESS)
        return result;
    size_t received = comm->sig_in_xfer->length - HEADER;
    if (received != comm->sig_expect)
        return wf_comm_length_mismatch(comm, right, "the signature message", comm->sig_expect, received, 0);
    while (result == WEFT_SUCCESS && !comm->sig_out_xfer.done)
        result = wf_comm_progress(comm, left);
    if (result == WEFT_SUCCESS && comm->sig_out_xfer.status != 0)
        result = wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: sending the signature to rank %d failed: %s",
                              comm->coll_name, comm->rank, left, comm->ops->error_string(comm->transport));
    /* A report that arrived meanwhile wins: a rank elsewhere in the ring disagrees. */
    if (result == WEFT_SUCCESS && comm->report_in_xfer.done)
        result = wf_mismatch_report_received(comm);
    if (result == WEFT_SUCCESS)
        comm->sig_done = 1;
    return result;
}

weft_result_t wf_sig_finish(weft_comm_t comm, weft_result_t result)
{
    return result == WEFT_SUCCESS ? wf_sig_wait(comm) : result;
}

weft_result_t wf_comm_length_mismatch(weft_comm_t comm, int peer, const char *what, size_t expected, size_t received,
                                      int truncated)
{
    /* Usually the rank that found the difference in a signature reports it within microseconds. */
    uint64_t until = now_ns() + LENGTH_REPORT_WAIT_NS;
    while (comm->failure == WEFT_SUCCESS && now_ns() < until)
        wf_comm_progress(comm, peer);
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    if (truncated)
        return report_mismatch(comm, "%s (call %u) on rank %d: rank %d sent a longer message than this rank expects "
                               "(%s); the ranks passed different counts, datatypes or collectives, and every rank "
                               "must pass the same", comm->coll_name, comm->seq, comm->rank, peer, what);
    return report_mismatch(comm, "%s (call %u) on rank %d: rank %d sent %zu bytes where this rank expects %zu (%s); the "
                           "ranks passed different counts, datatypes or collectives, and every rank must pass the same",
                           comm->coll_name, comm->seq, comm->rank, peer, received, expected, what);
}
