/*
 * Operations, requests and the executor that runs them in issue order.
 *
 * Every collective becomes a wf_op_t: arguments already checked by the API layer, plus the
 * function that runs the algorithm. A communicator runs its operations one at a time, in the order
 * they were issued, because the algorithms share the communicator's sequence numbers, arrival
 * counters and ring stream. Three ways to run them:
 *
 *  - inline: a blocking call with nothing queued before it runs on the caller's stack;
 *  - fiber: queued operations run on the communicator's fiber, which weft_test, weft_wait and
 *    blocking calls resume; an algorithm that waits for a peer yields back after an idle poll, so
 *    weft_test returns at once while the operation keeps its place in the algorithm;
 *  - thread (WEFT_PROGRESS_THREAD=1): a progress thread per communicator runs every operation,
 *    blocking calls included, so communication overlaps the caller's computation.
 */
#ifndef WF_EXECUTOR_H
#define WF_EXECUTOR_H

#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "reduce.h"
#include "weft.h"

typedef struct wf_op wf_op_t;
typedef struct wf_fiber wf_fiber_t;

/* Runs the algorithm of op on comm; NULL for operations with nothing to do (count 0). */
typedef weft_result_t (*wf_op_fn)(weft_comm_t comm, const wf_op_t *op);

struct wf_op {
    wf_op_fn run;
    weft_comm_t comm;
    /* arguments, checked by the API layer */
    const void *sendbuf;
    void *recvbuf;
    size_t count;
    weft_datatype_t datatype;
    weft_op_t reduce_op;
    int root;
    wf_reduce_plan_t plan;
    const size_t *counts; /* v-forms: one entry per rank, NULL otherwise */
    const size_t *displs;
    void *const *bufs;    /* weft_allreduce_multi */
    int nbufs;
    /* completion */
    weft_result_t result;
    int done;             /* set with release order once result is final */
    wf_op_t *next;        /* queue link */
};

struct weft_request {
    wf_op_t op;
    size_t arrays[]; /* copies of the caller's counts and displs for the v-forms */
};

typedef struct {
    pthread_mutex_t lock; /* guards the queue and the registry link */
    pthread_cond_t wake;  /* progress thread: work arrived or stop */
    pthread_cond_t done;  /* progress thread: an operation completed */
    wf_op_t *head, *tail; /* issued and not yet completed, oldest first */

    int threaded;         /* a progress thread runs the operations */
    int stop;
    pthread_t thread;

    wf_fiber_t *fiber;    /* created at the first queued operation */
    int in_fiber;         /* the fiber is running (set by the thread that resumed it) */
    int yield_on_idle;    /* the fiber yields after an idle poll, not only after a completion */
    int driving;          /* taken by the thread resuming the fiber */
    pthread_t issuer;     /* thread that issued the last operation */
    struct timespec yielded_at; /* when the fiber last yielded in the middle of an operation */
    int registered;       /* listed among communicators with queued operations */
    weft_comm_t registry_next;
} wf_executor_t;

/* Set up comm's executor; starts the progress thread when WEFT_PROGRESS_THREAD=1. */
weft_result_t wf_exec_init(weft_comm_t comm);

/* Complete every queued operation (they succeed or fail), then stop the thread and free the fiber. */
void wf_exec_fini(weft_comm_t comm);

/*
 * Issue op. Blocking calls pass request NULL and get the operation's result; non-blocking calls
 * get WEFT_SUCCESS and a request to test and wait on, which owns a copy of op (and of its v-form
 * arrays, nranks entries each).
 */
weft_result_t wf_exec_submit(weft_comm_t comm, const wf_op_t *op, weft_request_t *request);

/* Called by the progress engine after a poll that found nothing: the fiber's chance to yield. */
void wf_exec_idle(weft_comm_t comm);

#endif /* WF_EXECUTOR_H */
