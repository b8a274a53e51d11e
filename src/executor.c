/*
 * The executor: queue of issued operations, the fiber or progress thread that runs them, and the
 * non-blocking API (weft_test, weft_wait).
 *
 * Progress without a thread is global, as MPI users expect: while a thread waits on one
 * communicator, it also resumes the fibers of its other communicators with queued operations, so
 * ranks that start non-blocking collectives on two communicators in different orders cannot
 * deadlock. Only fibers issued from the waiting thread are resumed this way, so no fiber migrates
 * between threads behind its owner's back.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "fiber.h"
#include "log.h"
#include "param.h"

#define WF_FIBER_STACK (1u << 20)  /* algorithms are shallow; sanitizers enlarge frames */
#define WF_SPIN_CHECKS 4000        /* checks of a done flag before a waiter sleeps */
#define WF_DRIVE_BATCH 16          /* other communicators resumed per pass */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_comm_t registry_head;
static int registry_count; /* communicators with queued operations run by fibers */

static int is_done(const wf_op_t *op)
{
    return __atomic_load_n(&op->done, __ATOMIC_ACQUIRE);
}

static void registry_add(weft_comm_t comm)
{
    pthread_mutex_lock(&registry_lock);
    comm->exec.registry_next = registry_head;
    registry_head = comm;
    __atomic_add_fetch(&registry_count, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(weft_comm_t comm)
{
    pthread_mutex_lock(&registry_lock);
    for (weft_comm_t *link = &registry_head; *link != NULL; link = &(*link)->exec.registry_next) {
        if (*link == comm) {
            *link = comm->exec.registry_next;
            __atomic_sub_fetch(&registry_count, 1, __ATOMIC_RELEASE);
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Append op; a fiber-run communicator joins the registry when its queue stops being empty. */
static void enqueue(weft_comm_t comm, wf_op_t *op)
{
    wf_executor_t *ex = &comm->exec;
    op->next = NULL;
    pthread_mutex_lock(&ex->lock);
    if (ex->head == NULL)
        ex->head = op;
    else
        ex->tail->next = op;
    ex->tail = op;
    ex->issuer = pthread_self();
    if (!ex->threaded && !ex->registered) {
        ex->registered = 1;
        registry_add(comm);
    }
    if (ex->threaded)
        pthread_cond_signal(&ex->wake);
    pthread_mutex_unlock(&ex->lock);
}

/* Take the completed head off the queue and publish its result. */
static void complete_head(weft_comm_t comm, weft_result_t result)
{
    wf_executor_t *ex = &comm->exec;
    pthread_mutex_lock(&ex->lock);
    wf_op_t *op = ex->head;
    ex->head = op->next;
    if (ex->head == NULL) {
        ex->tail = NULL;
        if (ex->registered) {
            registry_remove(comm);
            ex->registered = 0;
        }
    }
    op->result = result;
    __atomic_store_n(&op->done, 1, __ATOMIC_RELEASE);
    if (ex->threaded)
        pthread_cond_broadcast(&ex->done);
    pthread_mutex_unlock(&ex->lock);
}

static weft_result_t run_op(weft_comm_t comm, const wf_op_t *op)
{
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure; /* an earlier operation broke the communicator */
    if (wf_comm_check_lost_rank(comm) != WEFT_SUCCESS)
        return comm->failure;
    weft_result_t result = op->run != NULL ? op->run(comm, op) : WEFT_SUCCESS;
    wf_status_end(comm, result);
    return result;
}

static void fiber_main(void *arg)
{
    weft_comm_t comm = arg;
    wf_executor_t *ex = &comm->exec;
    for (;;) {
        pthread_mutex_lock(&ex->lock);
        wf_op_t *op = ex->head;
        pthread_mutex_unlock(&ex->lock);
        if (op == NULL) {
            wf_fiber_yield(ex->fiber);
            continue;
        }
        complete_head(comm, run_op(comm, op));
        wf_fiber_yield(ex->fiber); /* let the waiter see the completion */
    }
}

static double seconds_since(const struct timespec *then)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - then->tv_sec) + (double)(now.tv_nsec - then->tv_nsec) * 1e-9;
}

/*
 * Resume comm's fiber once; the caller has taken ex->driving. Time the fiber spent suspended in the
 * middle of an operation does not count against WEFT_TIMEOUT: nobody polled for it.
 */
static void resume(weft_comm_t comm, int yield_on_idle)
{
    wf_executor_t *ex = &comm->exec;
    if (ex->yielded_at.tv_sec != 0 && comm->deadline.tv_sec != 0) {
        double gap = seconds_since(&ex->yielded_at);
        if (gap > 0.001) {
            long nanoseconds = comm->deadline.tv_nsec + (long)((gap - (double)(long)gap) * 1e9);
            comm->deadline.tv_sec += (time_t)gap + nanoseconds / 1000000000L;
            comm->deadline.tv_nsec = nanoseconds % 1000000000L;
        }
    }
    ex->yield_on_idle = yield_on_idle;
    ex->in_fiber = 1;
    wf_fiber_resume(ex->fiber);
    ex->in_fiber = 0;
    clock_gettime(CLOCK_MONOTONIC, &ex->yielded_at);
}

static int try_take(wf_executor_t *ex)
{
    return __atomic_exchange_n(&ex->driving, 1, __ATOMIC_ACQUIRE) == 0;
}

static void release(wf_executor_t *ex)
{
    __atomic_store_n(&ex->driving, 0, __ATOMIC_RELEASE);
}

/* Resume, once each, the fibers of this thread's other communicators that have queued operations. */
static void drive_others(weft_comm_t self)
{
    weft_comm_t batch[WF_DRIVE_BATCH];
    int n = 0;
    pthread_t me = pthread_self();
    pthread_mutex_lock(&registry_lock);
    for (weft_comm_t c = registry_head; c != NULL && n < WF_DRIVE_BATCH; c = c->exec.registry_next)
        if (c != self && pthread_equal(c->exec.issuer, me) && try_take(&c->exec))
            batch[n++] = c;
    pthread_mutex_unlock(&registry_lock);
    for (int i = 0; i < n; i++) {
        resume(batch[i], 1);
        release(&batch[i]->exec);
    }
}

static int others_pending(weft_comm_t comm)
{
    int count = __atomic_load_n(&registry_count, __ATOMIC_ACQUIRE);
    return count > (comm->exec.registered ? 1 : 0);
}

void wf_exec_idle(weft_comm_t comm)
{
    wf_executor_t *ex = &comm->exec;
    if (ex->in_fiber) {
        if (ex->yield_on_idle)
            wf_fiber_yield(ex->fiber);
        return;
    }
    /* Inline blocking call or progress thread: keep this thread's other fibers moving. */
    if (!ex->threaded && others_pending(comm))
        drive_others(comm);
}

/* Progress until op is done, on the caller's thread or by waiting for the progress thread. */
static weft_result_t wait_op(weft_comm_t comm, wf_op_t *op)
{
    wf_executor_t *ex = &comm->exec;
    if (ex->threaded) {
        for (unsigned spins = 0; !is_done(op) && spins < WF_SPIN_CHECKS; spins++)
            sched_yield();
        pthread_mutex_lock(&ex->lock);
        while (!is_done(op))
            pthread_cond_wait(&ex->done, &ex->lock);
        pthread_mutex_unlock(&ex->lock);
        return op->result;
    }
    while (!is_done(op)) {
        if (!try_take(ex)) {
            sched_yield(); /* another thread resumes this fiber right now */
            continue;
        }
        int others = others_pending(comm);
        if (!is_done(op))
            resume(comm, others);
        release(ex);
        if (others)
            drive_others(comm);
    }
    return op->result;
}

static void *progress_thread(void *arg)
{
    weft_comm_t comm = arg;
    wf_executor_t *ex = &comm->exec;
    for (;;) {
        pthread_mutex_lock(&ex->lock);
        while (ex->head == NULL && !ex->stop)
            pthread_cond_wait(&ex->wake, &ex->lock);
        wf_op_t *op = ex->head;
        pthread_mutex_unlock(&ex->lock);
        if (op == NULL)
            return NULL; /* stopped with nothing queued */
        complete_head(comm, run_op(comm, op));
    }
}

weft_result_t wf_exec_init(weft_comm_t comm)
{
    wf_executor_t *ex = &comm->exec;
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->wake, NULL);
    pthread_cond_init(&ex->done, NULL);
    if (wf_param_int(WF_PARAM_PROGRESS_THREAD) == 0)
        return WEFT_SUCCESS;
    int rc = pthread_create(&ex->thread, NULL, progress_thread, comm);
    if (rc != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error),
                 "rank %d could not start its progress thread (%s); unset WEFT_PROGRESS_THREAD or raise the "
                 "process limit",
                 comm->rank, strerror(rc));
        return WEFT_ERR_NO_MEMORY;
    }
    ex->threaded = 1;
    WF_INFO(WF_SUB_INIT, "rank %d runs collectives on a progress thread (WEFT_PROGRESS_THREAD=1)", comm->rank);
    return WEFT_SUCCESS;
}

void wf_exec_fini(weft_comm_t comm)
{
    wf_executor_t *ex = &comm->exec;
    if (ex->threaded) {
        pthread_mutex_lock(&ex->lock);
        ex->stop = 1;
        pthread_cond_signal(&ex->wake);
        pthread_mutex_unlock(&ex->lock);
        pthread_join(ex->thread, NULL); /* it completes the queue before it reads stop */
        ex->threaded = 0;
    }
    if (ex->fiber != NULL) {
        while (!try_take(ex))
            sched_yield();
        while (ex->head != NULL)
            resume(comm, 0);
        release(ex);
        wf_fiber_destroy(ex->fiber);
        ex->fiber = NULL;
    }
    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->wake);
    pthread_cond_destroy(&ex->done);
}

/* Resume the fiber for a moment if no other thread is resuming it. */
static void poke(weft_comm_t comm)
{
    wf_executor_t *ex = &comm->exec;
    if (ex->threaded || !try_take(ex))
        return;
    if (ex->head != NULL)
        resume(comm, 1);
    release(ex);
    if (others_pending(comm))
        drive_others(comm);
}

weft_result_t wf_exec_submit(weft_comm_t comm, const wf_op_t *op, weft_request_t *request)
{
    wf_executor_t *ex = &comm->exec;
    if (request == NULL) {
        if (!ex->threaded && ex->head == NULL)
            return run_op(comm, op); /* nothing queued: run inline, as fast as before requests existed */
        if (op->run == NULL)
            return WEFT_SUCCESS;
        wf_op_t queued = *op;
        queued.comm = comm;
        queued.done = 0;
        enqueue(comm, &queued);
        return wait_op(comm, &queued);
    }

    size_t entries = (op->counts != NULL) + (op->displs != NULL);
    weft_request_t req = malloc(sizeof(*req) + entries * (size_t)comm->nranks * sizeof(size_t));
    if (req == NULL)
        return wf_comm_invalid(comm, "rank %d is out of memory for a request; wait on outstanding requests "
                               "before issuing more", comm->rank);
    req->op = *op;
    req->op.comm = comm;
    req->op.done = 0;
    size_t *copy = req->arrays;
    if (op->counts != NULL) {
        memcpy(copy, op->counts, (size_t)comm->nranks * sizeof(size_t));
        req->op.counts = copy;
        copy += comm->nranks;
    }
    if (op->displs != NULL) {
        memcpy(copy, op->displs, (size_t)comm->nranks * sizeof(size_t));
        req->op.displs = copy;
    }
    if (ex->fiber == NULL && !ex->threaded) {
        ex->fiber = wf_fiber_create(fiber_main, comm, WF_FIBER_STACK);
        if (ex->fiber == NULL) {
            free(req);
            return wf_comm_invalid(comm, "rank %d cannot allocate the %u-byte stack that runs non-blocking "
                                   "collectives; check the memory limit", comm->rank, WF_FIBER_STACK);
        }
    }
    enqueue(comm, &req->op);
    *request = req;
    poke(comm); /* start it now: its first messages go out before the caller computes */
    return WEFT_SUCCESS;
}

WEFT_API weft_result_t weft_test(weft_request_t request)
{
    if (request == NULL) {
        wf_set_init_error("weft_test: request is NULL; pass a request from a non-blocking call that was not "
                          "waited on yet");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    if (!is_done(&request->op))
        poke(request->op.comm);
    return is_done(&request->op) ? request->op.result : WEFT_IN_PROGRESS;
}

WEFT_API weft_result_t weft_wait(weft_request_t request)
{
    if (request == NULL) {
        wf_set_init_error("weft_wait: request is NULL; pass a request from a non-blocking call that was not "
                          "waited on yet");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    weft_result_t result = is_done(&request->op) ? request->op.result : wait_op(request->op.comm, &request->op);
    free(request);
    return result;
}
