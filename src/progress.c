/*
 * Progress engine: polling the transport, waiting with a deadline, arrival counters.
 *
 * Waiting spins on the completion queue for a short while and then yields the CPU: on every poll
 * when the node's ranks outnumber its CPUs, so that they all still make progress, and on every
 * 64th poll otherwise. The spin ends after comm->spin_polls polls or WF_SPIN_NS, whichever comes
 * first. A rank that shares its core
 * with the rank it waits for delays that rank by as long as it spins, and 2000 polls of weft's shm
 * transport took about 50 us. When this node has more of the communicator's ranks than CPUs that
 * its ranks may run on together, the spin is cut to WF_SPIN_POLLS_OVERSUBSCRIBED polls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "log.h"

#define WF_SPIN_POLLS 2000 /* idle polls before yielding on each further poll, at most */
#define WF_SPIN_POLLS_OVERSUBSCRIBED 16 /* the same when the node's ranks outnumber our CPUs */
#define WF_SPIN_NS 3000    /* idle time before yielding on each further poll, at most */
#define WF_SPIN_CLOCK_POLLS 16 /* idle polls between two reads of the clock while spinning */
#define WF_STATUS_POLLS 20000 /* idle polls after which a wait is recorded in the status record */
#define WF_LOST_CHECK_MS 1    /* minimum time between two checks for lost ranks when a collective starts */

static __thread char init_error[512];

void wf_set_init_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(init_error, sizeof(init_error), format, args);
    va_end(args);
}

const char *wf_init_error(void)
{
    return init_error;
}

weft_result_t wf_comm_fail(weft_comm_t comm, weft_result_t result, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    if (comm->failure == WEFT_SUCCESS) {
        comm->failure = result;
        vsnprintf(comm->last_error, sizeof(comm->last_error), format, args);
        WF_WARN(WF_SUB_COLL, "%s", comm->last_error);
    }
    va_end(args);
    return comm->failure;
}

weft_result_t wf_comm_invalid(weft_comm_t comm, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(comm->last_error, sizeof(comm->last_error), format, args);
    va_end(args);
    /* The caller gets this result and message directly, and the communicator stays usable. */
    WF_INFO(WF_SUB_COLL, "%s", comm->last_error);
    return WEFT_ERR_INVALID_ARGUMENT;
}

void wf_coll_begin(weft_comm_t comm, const char *name, const wf_signature_t *sig)
{
    comm->seq = (comm->seq + 1) & 0xffffffu;
    if (comm->seq == 0)
        comm->seq = 1; /* sequence 0 is reserved for credits and mismatch reports */
    comm->coll_name = name;
    comm->next_token = 0;
    comm->idle_polls = 0;
    /*
     * The coarse clock returns the time of the last scheduler tick without reading a timer. It
     * lags CLOCK_MONOTONIC by at most one tick, so the WEFT_TIMEOUT deadline ends that much early.
     */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &comm->deadline);
    comm->deadline.tv_sec += comm->timeout_s;
    wf_status_begin(comm, name);
    wf_sig_begin(comm, sig);
}

void wf_comm_on_remote_write(void *arg, uint32_t immediate)
{
    weft_comm_t comm = arg;
    uint32_t kind = immediate >> 28;
    uint32_t value = immediate & 0x0fffffffu;

    if (kind == WF_IMM_TOKEN && value < WF_TOKENS) {
        comm->arrivals[value]++;
    } else if (kind == WF_IMM_STREAM) {
        /* The immediate carries the low 28 bits of the chunk number; the slot is fixed by it. */
        comm->stream.arrived[value % WF_STREAM_SLOTS] = (uint64_t)value + 1;
    } else {
        wf_comm_fail(comm, WEFT_ERR_INTERNAL,
                     "rank %d received an RDMA write with unknown immediate 0x%08x during %s; "
                     "every rank must run the same weft version",
                     comm->rank, immediate, comm->coll_name ? comm->coll_name : "init");
    }
}

static int deadline_passed(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec || (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Turn a weft_comm_abort from another thread into this thread's failure. */
static weft_result_t check_aborted(weft_comm_t comm)
{
    if (!__atomic_load_n(&comm->aborted, __ATOMIC_ACQUIRE))
        return WEFT_SUCCESS;
    return wf_comm_fail(comm, WEFT_ERR_ABORTED, "%s on rank %d was aborted: weft_comm_abort was called on this "
                        "communicator; destroy it", comm->coll_name ? comm->coll_name : "a call", comm->rank);
}

/* Fail comm with a timeout message that names the ranks that had not reached the collective, and where they are. */
static weft_result_t timed_out(weft_comm_t comm, int waiting_for)
{
    char message[sizeof(comm->last_error)];
    if (waiting_for >= 0)
        snprintf(message, sizeof(message), "%s (call %u) on rank %d timed out after %d s waiting for rank %d",
                 comm->coll_name, comm->seq, comm->rank, comm->timeout_s, waiting_for);
    else
        snprintf(message, sizeof(message), "%s (call %u) on rank %d timed out after %d s", comm->coll_name,
                 comm->seq, comm->rank, comm->timeout_s);
    wf_status_waiting(comm, waiting_for);
    wf_status_explain(comm, message, sizeof(message));
    size_t used = strlen(message);
    snprintf(message + used, sizeof(message) - used,
             ". Check that every rank calls the same collectives in the same order, or raise WEFT_TIMEOUT if the "
             "operation is legitimately that slow");
    return wf_comm_fail(comm, WEFT_ERR_TIMEOUT, "%s", message);
}

/*
 * Fail comm when the bootstrap reports a lost rank or the collective's deadline passed. Outside
 * a post (may_wait), a lost rank first gets a moment for a mismatch report: a rank that found a
 * mismatch reports it and then may destroy its communicator at once.
 */
static weft_result_t check_job(weft_comm_t comm, int waiting_for, int may_wait)
{
    if (comm->bootstrap->check != NULL && comm->bootstrap->check(comm->bootstrap) != WEFT_SUCCESS) {
        if (may_wait && wf_mismatch_grace(comm) != WEFT_SUCCESS)
            return comm->failure;
        return wf_comm_fail(comm, WEFT_ERR_REMOTE, "%s (call %u) on rank %d failed because the job lost a rank: %.380s",
                            comm->coll_name, comm->seq, comm->rank, wf_bootstrap_last_error(comm->bootstrap));
    }
    if (comm->deadline.tv_sec == 0 || !deadline_passed(&comm->deadline)) {
        if (comm->deadline.tv_sec != 0 && comm->idle_polls >= WF_STATUS_POLLS)
            wf_status_waiting(comm, waiting_for); /* long enough to matter to a timeout explanation */
        return WEFT_SUCCESS;
    }
    return timed_out(comm, waiting_for);
}

int wf_comm_should_stop(void *arg)
{
    weft_comm_t comm = arg;
    if (comm->report_until != 0) /* sending a mismatch report after the failure: only time stops it */
        return wf_mismatch_now_ns() > comm->report_until;
    /*
     * The peer may need this thread's help to drain its queue: on a new endpoint, the shm provider
     * completes its connection only when the peer polls, and the peer may be waiting on another of
     * this thread's communicators. So let the other fibers run while this post waits.
     */
    wf_exec_idle(comm);
    /* Inside a post: take in another rank's mismatch report, but send nothing from here. */
    if (comm->report_in_xfer.done && comm->failure == WEFT_SUCCESS)
        wf_mismatch_report_received(comm);
    return comm->failure != WEFT_SUCCESS || check_aborted(comm) != WEFT_SUCCESS ||
           check_job(comm, -1, 0) != WEFT_SUCCESS;
}

/*
 * A transport error is often the first sign that a peer died: its memory or queue is gone. The
 * rendezvous names the lost rank a moment later, so give it up to WF_BLAME_MS before reporting the
 * transport error itself. Returns the WEFT_ERR_REMOTE failure, or WEFT_SUCCESS when no rank was lost.
 */
#define WF_BLAME_MS 1000
static weft_result_t blame_lost_rank(weft_comm_t comm)
{
    if (comm->bootstrap->check == NULL)
        return WEFT_SUCCESS;
    for (int waited = 0; waited <= WF_BLAME_MS; waited += 10) {
        if (comm->bootstrap->check(comm->bootstrap) != WEFT_SUCCESS) {
            char detail[400] = "";
            const char *text = comm->ops->error_string(comm->transport);
            if (text[0] != '\0')
                snprintf(detail, sizeof(detail), " (the transport reported: %.300s)", text);
            return wf_comm_fail(comm, WEFT_ERR_REMOTE,
                                "%s (call %u) on rank %d failed because the job lost a rank: %.380s%s", comm->coll_name,
                                comm->seq, comm->rank, wf_bootstrap_last_error(comm->bootstrap), detail);
        }
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep(&pause, NULL);
    }
    return WEFT_SUCCESS;
}

/* Add the CPUs of a list in hwloc's syntax, such as "0-3,8", to set. Returns -1 if it does not parse. */
static int add_cpu_list(const char *list, cpu_set_t *set)
{
    const char *p = list;
    if (*p == '\0')
        return -1;
    while (*p != '\0') {
        char *end;
        long first = strtol(p, &end, 10), last;
        if (end == p || first < 0)
            return -1;
        last = first;
        if (*end == '-') {
            p = end + 1;
            last = strtol(p, &end, 10);
            if (end == p || last < first)
                return -1;
        }
        if (last >= CPU_SETSIZE)
            return -1;
        for (long cpu = first; cpu <= last; cpu++)
            CPU_SET((int)cpu, set);
        if (*end == ',')
            end++;
        else if (*end != '\0')
            return -1;
        p = end;
    }
    return 0;
}

/*
 * Count the CPUs that the ranks of this rank's node may run on, from the bindings they published
 * at init. Two ranks bound to one CPU each have two CPUs between them, although each process is
 * allowed only one. Counts this process's own CPUs when a binding is unknown or was cut.
 */
static int node_cpus(weft_comm_t comm)
{
    cpu_set_t allowed;
    int own = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
    if (comm->summaries == NULL || comm->nodes.node_of_rank == NULL)
        return own;
    cpu_set_t node;
    CPU_ZERO(&node);
    int my_node = comm->nodes.node_of_rank[comm->rank];
    for (int r = 0; r < comm->nranks; r++)
        if (comm->nodes.node_of_rank[r] == my_node && add_cpu_list(comm->summaries[r].cpuset, &node) != 0)
            return own;
    return CPU_COUNT(&node);
}

void wf_comm_set_spin(weft_comm_t comm)
{
    int cpus = node_cpus(comm);
    int local = comm->nodes.local_size != NULL ? comm->nodes.local_size[comm->rank] : 1;
    int oversubscribed = cpus > 0 && local > cpus;
    comm->oversubscribed = oversubscribed;
    comm->spin_polls = oversubscribed ? WF_SPIN_POLLS_OVERSUBSCRIBED : WF_SPIN_POLLS;
    WF_INFO(WF_SUB_INIT, "rank %d: %d ranks on this node, %d CPUs allowed to them: %s", comm->rank, local,
            cpus, oversubscribed ? "oversubscribed, so waits yield the core after 16 idle polls"
                                 : "waits spin for 2000 idle polls, then yield the core on every 64th poll");
}

weft_result_t wf_comm_check_lost_rank(weft_comm_t comm)
{
    if (comm->bootstrap->check == NULL)
        return WEFT_SUCCESS;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now); /* one tick of resolution is enough here */
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    if (now_ms - comm->lost_check_ms < WF_LOST_CHECK_MS)
        return WEFT_SUCCESS;
    comm->lost_check_ms = now_ms;
    if (comm->bootstrap->check(comm->bootstrap) == WEFT_SUCCESS)
        return WEFT_SUCCESS;
    if (wf_mismatch_grace(comm) != WEFT_SUCCESS)
        return comm->failure;
    uint32_t next = (comm->seq + 1) & 0xffffffu; /* the number wf_coll_begin would give this call */
    return wf_comm_fail(comm, WEFT_ERR_REMOTE, "collective call %u on rank %d failed before it started because the job "
                        "lost a rank: %.380s", next != 0 ? next : 1, comm->rank, wf_bootstrap_last_error(comm->bootstrap));
}

weft_result_t wf_comm_transport_error(weft_comm_t comm, const char *format, ...)
{
    char message[sizeof(comm->last_error)];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    /*
     * A post can fail at once when its peer died (weft's shm transport finds its process gone).
     * Failing now would end this rank before the rendezvous names the lost rank, and the other
     * ranks would then blame this one.
     */
    if (wf_mismatch_grace(comm) != WEFT_SUCCESS || blame_lost_rank(comm) != WEFT_SUCCESS)
        return comm->failure;
    return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s", message);
}

/* Count one idle poll; returns 1 once the spin is over, and from then on until an event arrives. */
static int spin_ended(weft_comm_t comm)
{
    if (++comm->idle_polls >= comm->spin_polls)
        return 1;
    if (comm->idle_polls != 1 && comm->idle_polls % WF_SPIN_CLOCK_POLLS != 0)
        return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    if (comm->idle_polls == 1)
        comm->idle_since_ns = now_ns;
    if (now_ns - comm->idle_since_ns < WF_SPIN_NS)
        return 0;
    comm->idle_polls = comm->spin_polls; /* later polls skip the clock */
    return 1;
}

weft_result_t wf_comm_progress(weft_comm_t comm, int waiting_for)
{
    if (comm->failure != WEFT_SUCCESS || check_aborted(comm) != WEFT_SUCCESS)
        return comm->failure;

    int events = comm->ops->progress(comm->transport);
    if (events < 0) {
        /* Maybe the echo of another rank's failure: a mismatch report or a lost rank names the cause. */
        char error[400];
        snprintf(error, sizeof(error), "%s", comm->ops->error_string(comm->transport));
        if (wf_mismatch_grace(comm) != WEFT_SUCCESS || blame_lost_rank(comm) != WEFT_SUCCESS)
            return comm->failure;
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d failed in the transport: %s", comm->coll_name,
                            comm->rank, error);
    }
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;
    /* Two flag tests: the neighbour's signature to compare, or another rank's mismatch report. */
    if (wf_mismatch_pending(comm) && wf_mismatch_poll(comm) != WEFT_SUCCESS)
        return comm->failure;
    if (events > 0) {
        comm->idle_polls = 0;
        return WEFT_SUCCESS;
    }

    wf_exec_idle(comm); /* a fiber returns to weft_test here, or other fibers get a turn */
    if (!spin_ended(comm))
        return WEFT_SUCCESS;
    /* Idle for a while: check for lost ranks and the clock (cheap enough now), and give the core away. */
    if ((comm->idle_polls & 63u) == 0 && check_job(comm, waiting_for, 1) != WEFT_SUCCESS)
        return comm->failure;
    /*
     * With a CPU for every rank of the node, the rank awaited runs elsewhere, and a yield on every
     * poll only hands this core to unrelated processes and costs a system call per poll. Yield on
     * every 64th poll instead, which still lets this process's other threads run.
     */
    if (!comm->oversubscribed && (comm->idle_polls & 63u) != 0)
        return WEFT_SUCCESS;
    sched_yield();
    return WEFT_SUCCESS;
}

weft_result_t wf_comm_wait_xfer(weft_comm_t comm, wf_xfer_t *xfer, int peer, const char *what)
{
    while (!xfer->done) {
        weft_result_t result = wf_comm_progress(comm, peer);
        if (result != WEFT_SUCCESS)
            return result;
    }
    if (xfer->status == -EMSGSIZE) /* a receive too short for the message: the ranks disagree */
        return wf_comm_length_mismatch(comm, peer, what, xfer->length, xfer->length, 1);
    if (xfer->status != 0) {
        char error[400];
        snprintf(error, sizeof(error), "%s", comm->ops->error_string(comm->transport));
        if (wf_mismatch_grace(comm) != WEFT_SUCCESS || blame_lost_rank(comm) != WEFT_SUCCESS)
            return comm->failure;
        return wf_comm_fail(comm, WEFT_ERR_TRANSPORT, "%s on rank %d: %s with rank %d failed: %s", comm->coll_name,
                            comm->rank, what, peer, error);
    }
    return WEFT_SUCCESS;
}

weft_result_t wf_comm_wait_arrivals(weft_comm_t comm, uint32_t token, uint32_t count, int peer)
{
    while (comm->arrivals[token] < count) {
        weft_result_t result = wf_comm_progress(comm, peer);
        if (result != WEFT_SUCCESS)
            return result;
    }
    return WEFT_SUCCESS;
}

weft_result_t wf_comm_wait_recv(weft_comm_t comm, wf_xfer_t *xfer, int peer, const char *what, size_t expected)
{
    weft_result_t result = wf_comm_wait_xfer(comm, xfer, peer, what);
    if (result == WEFT_SUCCESS && xfer->length != expected)
        result = wf_comm_length_mismatch(comm, peer, what, expected, xfer->length, 0);
    return result;
}

weft_result_t wf_comm_reserve_tokens(weft_comm_t comm, uint32_t n, uint32_t *first)
{
    if (n > WF_TOKENS - comm->next_token)
        return wf_comm_fail(comm, WEFT_ERR_INTERNAL,
                            "%s on rank %d needs %u arrival counters but only %u remain; raise "
                            "WEFT_CHUNK_SIZE to use fewer chunks",
                            comm->coll_name, comm->rank, n, WF_TOKENS - comm->next_token);
    *first = comm->next_token;
    for (uint32_t i = 0; i < n; i++)
        comm->arrivals[comm->next_token + i] = 0;
    comm->next_token += n;
    return WEFT_SUCCESS;
}
