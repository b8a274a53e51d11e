/*
 * Fibers: a second stack on which one function runs and from which it can hand control back.
 *
 * The executor runs blocking collective algorithms on a fiber, so that weft_test can poll an
 * operation for a moment and return while the operation keeps its place in the middle of its
 * algorithm. A fiber is resumed by one thread at a time; it yields back to the thread that resumed it.
 */
#ifndef WF_FIBER_H
#define WF_FIBER_H

#include <stddef.h>

typedef struct wf_fiber wf_fiber_t;

/* Create a fiber that will run entry(arg) on its own stack of stack_bytes; NULL when out of memory. */
wf_fiber_t *wf_fiber_create(void (*entry)(void *arg), void *arg, size_t stack_bytes);

/* Run the fiber until it yields. Must not be called from the fiber itself. */
void wf_fiber_resume(wf_fiber_t *fiber);

/* From inside the fiber: return control to the wf_fiber_resume that started this run. */
void wf_fiber_yield(wf_fiber_t *fiber);

/* Free a fiber that is suspended in wf_fiber_yield (its entry function never returns). */
void wf_fiber_destroy(wf_fiber_t *fiber);

#endif /* WF_FIBER_H */
