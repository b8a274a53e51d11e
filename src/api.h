/*
 * Shared pieces of the public entry points (src/api.c and src/api_uneven.c): argument checks that
 * record a message on the communicator.
 */
#ifndef WF_API_H
#define WF_API_H

#include <stdint.h>

#include "coll/coll.h"
#include "reduce.h"

/* Partial element size over user element size: what a reduction's partials cost on the wire. */
static inline double wf_partial_scale(const wf_reduce_plan_t *plan)
{
    return (double)plan->partial_size / (double)plan->user_size;
}

/* Each check returns WEFT_SUCCESS or records a message naming `name` and the value on comm. */
weft_result_t wf_check_comm(weft_comm_t comm, const char *name);
weft_result_t wf_check_type(weft_comm_t comm, const char *name, weft_datatype_t type, size_t count, size_t multiple);
weft_result_t wf_check_op(weft_comm_t comm, const char *name, weft_op_t op);
weft_result_t wf_check_buffer(weft_comm_t comm, const char *name, const char *which, const void *buf);
weft_result_t wf_check_overlap(weft_comm_t comm, const char *name, const void *a, size_t a_bytes, const void *b,
                               size_t b_bytes, const char *in_place_rule);
weft_result_t wf_plan_for(weft_comm_t comm, const char *name, weft_datatype_t type, weft_op_t op,
                          wf_reduce_plan_t *plan);

/* Run an all-reduce whose arguments were checked (count > 0); starts its own collective. */
weft_result_t wf_allreduce_checked(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                   const wf_reduce_plan_t *plan);

/* A buffer range for overlap checks: [start, end) in bytes or elements, and whose it is. */
typedef struct {
    uintptr_t start, end;
    int index;
} wf_range_t;

/*
 * Sort ranges by start and return the position (in the sorted array) of the first range that
 * overlaps the one before it, or -1 when none do. Empty ranges must be left out by the caller.
 */
int wf_first_overlap(wf_range_t *ranges, int count);

/* tables arrays of nranks size_t in one heap block, or NULL after recording WEFT_ERR_NO_MEMORY. */
size_t *wf_block_tables(weft_comm_t comm, int tables);

/*
 * Communicators up to this size keep the block tables of a call on the stack, because a heap block
 * per call is a measurable part of the cost of a small collective.
 */
#define WF_STACK_TABLE_RANKS 16

#endif /* WF_API_H */
