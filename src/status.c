/*
 * Status records and the timeout explanation (see status.h).
 *
 * The owner thread writes the record under a sequence counter (odd while writing), so the
 * publishing thread copies a consistent record without a lock on the collective's fast path.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"
#include "log.h"

static void write_begin(wf_status_t *s)
{
    __atomic_add_fetch(&s->version, 1, __ATOMIC_ACQ_REL);
}

static void write_end(wf_status_t *s)
{
    __atomic_add_fetch(&s->version, 1, __ATOMIC_RELEASE);
}

/* Copy the record consistently; returns its version. */
static uint32_t read_record(wf_status_t *s, wf_status_record_t *out)
{
    for (;;) {
        uint32_t before = __atomic_load_n(&s->version, __ATOMIC_ACQUIRE);
        if (before & 1u) {
            sched_yield();
            continue;
        }
        memcpy(out, &s->record, sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->version, __ATOMIC_RELAXED) == before)
            return before;
    }
}

static void *publisher(void *arg)
{
    weft_comm_t comm = arg;
    wf_status_t *s = &comm->status;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += WF_STATUS_PERIOD_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
        if (s->stop)
            break;
        wf_status_record_t record;
        uint32_t version = read_record(s, &record);
        if (version == s->published)
            continue;
        if (comm->bootstrap->publish(comm->bootstrap, &record, sizeof(record)) != WEFT_SUCCESS)
            break; /* the rendezvous is gone; the collective's own checks report that */
        s->published = version;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

void wf_status_start(weft_comm_t comm)
{
    wf_status_t *s = &comm->status;
    s->record.waiting_for = -1;
    if (comm->bootstrap->publish == NULL || comm->nranks < 2)
        return;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, publisher, comm) != 0) {
        WF_WARN(WF_SUB_INIT, "rank %d could not start its status thread; timeouts will be explained from this rank's "
                "view only", comm->rank);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        return;
    }
    s->running = 1;
}

void wf_status_stop(weft_comm_t comm)
{
    wf_status_t *s = &comm->status;
    if (!s->running)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    s->running = 0;
}

static void push_done(wf_status_record_t *r)
{
    memmove(&r->done[1], &r->done[0], (WF_STATUS_HISTORY - 1) * sizeof(r->done[0]));
    r->done[0] = r->current;
    memset(&r->current, 0, sizeof(r->current));
    r->in_call = 0;
}

void wf_status_begin(weft_comm_t comm, const char *name)
{
    wf_status_t *s = &comm->status;
    write_begin(s);
    if (s->record.in_call && s->record.current.seq != 0) {
        s->record.current.result = WEFT_SUCCESS; /* a step of a composite call (multi, split) */
        push_done(&s->record);
    }
    s->record.current.seq = comm->seq;
    s->record.current.result = -1;
    /* A bounded copy, because snprintf here took more instructions than the rest of wf_coll_begin. */
    size_t length = strnlen(name, sizeof(s->record.current.name) - 1);
    memcpy(s->record.current.name, name, length);
    s->record.current.name[length] = '\0';
    s->record.in_call = 1;
    s->record.waiting_for = -1;
    write_end(s);
}

void wf_status_end(weft_comm_t comm, weft_result_t result)
{
    wf_status_t *s = &comm->status;
    if (!s->record.in_call)
        return; /* nothing started: count 0, or an argument error */
    write_begin(s);
    s->record.current.result = (int32_t)result;
    push_done(&s->record);
    s->record.waiting_for = -1;
    write_end(s);
}

void wf_status_waiting(weft_comm_t comm, int peer)
{
    wf_status_t *s = &comm->status;
    if (s->record.waiting_for == peer)
        return;
    write_begin(s);
    s->record.waiting_for = peer;
    write_end(s);
}

/* ---- timeout explanation ---------------------------------------------------------------------- */

static void append(char *out, size_t length, const char *format, ...) __attribute__((format(printf, 3, 4)));

static void append(char *out, size_t length, const char *format, ...)
{
    size_t used = strlen(out);
    if (used + 1 >= length)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(out + used, length - used, format, args);
    va_end(args);
}

static void describe_op(const wf_status_op_t *op, char *text, size_t length)
{
    if (op->seq == 0)
        snprintf(text, length, "no collective yet");
    else
        snprintf(text, length, "%.24s (call %u)", op->name, op->seq);
}

/* Read rank q's record from the table; returns 0 when it never reported. */
static int slot_record(const unsigned char *slots, int q, wf_status_record_t *record, double *age_s)
{
    const unsigned char *slot = slots + (size_t)q * WF_BOOT_STATUS_SLOT;
    uint64_t age_ms = 0;
    uint32_t bytes = 0;
    for (int i = 7; i >= 0; i--)
        age_ms = (age_ms << 8) | slot[i];
    for (int i = 3; i >= 0; i--)
        bytes = (bytes << 8) | slot[8 + i];
    if (age_ms == UINT64_MAX || bytes != sizeof(*record))
        return 0;
    memcpy(record, slot + 12, sizeof(*record));
    *age_s = (double)age_ms / 1000.0;
    return 1;
}

/* Describe a rank that has not reached collective seq. */
static void describe_behind(char *out, size_t length, int q, const wf_status_record_t *r, double age_s)
{
    char last[64], current[64];
    describe_op(&r->done[0], last, sizeof(last));
    if (!r->in_call) {
        append(out, length, " rank %d (no weft call for about %.1f s; last completed %s)", q, age_s, last);
        return;
    }
    describe_op(&r->current, current, sizeof(current));
    if (r->waiting_for >= 0)
        append(out, length, " rank %d (in %s, waiting for rank %d)", q, current, r->waiting_for);
    else
        append(out, length, " rank %d (in %s)", q, current);
}

/* Classify every rank against collective seq and append the result. */
static void explain_from_table(weft_comm_t comm, const unsigned char *slots, char *out, size_t length)
{
    uint32_t seq = comm->seq;
    int behind = 0, in_it = 0, listed = 0;
    char in_list[128] = "";
    append(out, length, ". Ranks that had not reached it:");
    for (int q = 0; q < comm->nranks; q++) {
        wf_status_record_t record;
        double age_s = 0;
        if (q == comm->rank) {
            read_record(&comm->status, &record);
        } else if (!slot_record(slots, q, &record, &age_s)) {
            if (listed++ < 6)
                append(out, length, "%s rank %d (never reported its state)", behind++ ? "," : "", q);
            continue;
        }
        int reached = (record.in_call && record.current.seq >= seq) || record.done[0].seq >= seq;
        if (reached) {
            size_t used = strlen(in_list);
            if (used + 12 < sizeof(in_list))
                snprintf(in_list + used, sizeof(in_list) - used, "%s%d", in_it ? ", " : "", q);
            in_it++;
            continue;
        }
        if (listed++ < 6) {
            if (behind)
                append(out, length, ",");
            describe_behind(out, length, q, &record, age_s);
        }
        behind++;
    }
    if (behind == 0)
        append(out, length, " none (every rank is in it or past it, so a message was lost or a rank is stuck in "
                            "the fabric)");
    else if (listed > 6)
        append(out, length, ", and %d more", listed - 6);
    append(out, length, ". Ranks in it or past it: %s%s", in_it ? in_list : "none",
           in_it > 0 && strlen(in_list) + 12 >= sizeof(in_list) ? ", ..." : "");
}

void wf_status_explain(weft_comm_t comm, char *out, size_t length)
{
    unsigned char *slots = NULL;
    if (comm->bootstrap->query != NULL && comm->nranks > 1) {
        slots = malloc((size_t)comm->nranks * WF_BOOT_STATUS_SLOT);
        if (slots != NULL && comm->bootstrap->query(comm->bootstrap, slots) != WEFT_SUCCESS) {
            free(slots);
            slots = NULL;
        }
    }
    if (slots != NULL) {
        explain_from_table(comm, slots, out, length);
        free(slots);
        return;
    }
    wf_status_record_t own;
    char last[64];
    read_record(&comm->status, &own);
    describe_op(&own.done[0], last, sizeof(last));
    append(out, length, ". This rank last completed %s; the states of the other ranks are unknown because the %s "
           "bootstrap keeps no status records", last, comm->bootstrap->method);
}
