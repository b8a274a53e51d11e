/*
 * Building blocks of the group algorithms (recursive doubling and halving, Rabenseifner, Bruck,
 * binomial tree): one exchange step with a peer, the power-of-two fold, scratch memory and
 * registration.
 *
 * A step moves a message of at most WEFT_EAGER_LIMIT bytes as an eager message that starts with the
 * sender's signature, which the receiver compares with its own before it uses the data. A larger
 * message goes as RDMA writes into the receiver's buffer: the receiver first sends the writer a
 * descriptor of the buffer together with its own signature, and the writer compares that signature
 * with its own before it writes. So no rank writes into the memory of a rank that called another
 * collective, and no rank takes such a rank's data for its own, whichever ranks they are. Every
 * rank computes the same protocol from the same byte count, because the eager limit is agreed at
 * init.
 */
#ifndef WF_COLL_GROUP_H
#define WF_COLL_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "coll.h"

/* One direction of a step: the peer's comm rank (-1 for none), the local buffer and its registration. */
typedef struct {
    int peer;
    void *buf;
    size_t bytes;
    const wf_mr_t *mr; /* covers buf: required above the eager limit (RDMA), unused below it */
} wf_step_side_t;

/*
 * Send send->bytes to send->peer and receive recv->bytes from recv->peer, as step `step` (the tag
 * sub-index) of the current collective, and wait for both. A received length other than
 * recv->bytes is a mismatch. Either side may have peer -1.
 */
weft_result_t wf_step_exchange(weft_comm_t comm, unsigned step, const wf_step_side_t *send,
                               const wf_step_side_t *recv);

/* Member i of the group as a comm rank. */
static inline int wf_group_rank(const wf_group_t *group, int member)
{
    return group->ranks != NULL ? group->ranks[member] : member;
}

/*
 * Recursive doubling and halving run on p = 2^steps members. The other rem = n - p members fold
 * first: member 2i (i < rem) hands its data to member 2i + 1 and gets the result back at the end.
 * Core member v (0 <= v < p) is member 2v + 1 for v < rem and member v + rem above, so core order
 * follows member order.
 */
typedef struct {
    int p;     /* core members, the largest power of two <= n */
    int rem;   /* n - p */
    int steps; /* log2(p) */
    int core;  /* this member's core index, or -1 when it folds into member me + 1 */
} wf_fold_t;

wf_fold_t wf_fold_of(const wf_group_t *group);

/* The member of core index v. */
static inline int wf_fold_member(const wf_fold_t *fold, int v)
{
    return v < fold->rem ? 2 * v + 1 : v + fold->rem;
}

/*
 * Scratch memory of one collective, always registered. Requests up to WEFT_SCRATCH_KEEP (at least
 * 16 chunks) come from a buffer the communicator keeps for that use and grows as needed, so a
 * repeated call finds its scratch allocated, faulted in and registered. Larger requests are
 * allocated for the call, which costs page faults and a registration each time. Release with
 * wf_scratch_put, passing the collective's result: after a failure a peer's write may still be in
 * flight, so the memory then stays allocated until the communicator is destroyed.
 */
typedef struct {
    char *base;
    const wf_mr_t *mr;
    wf_mr_ref_t ref;   /* registration of a per-call buffer */
    int temporary;     /* allocated for this call */
} wf_scratch_t;

weft_result_t wf_scratch_get_for(weft_comm_t comm, wf_scratch_use_t use, size_t bytes, wf_scratch_t *scratch);
/* Get scratch for the group algorithms' steps. */
static inline weft_result_t wf_scratch_get(weft_comm_t comm, size_t bytes, wf_scratch_t *scratch)
{
    return wf_scratch_get_for(comm, WF_SCRATCH_STEP, bytes, scratch);
}
void wf_scratch_put(weft_comm_t comm, wf_scratch_t *scratch, weft_result_t result);

/*
 * Register a user buffer when a step may move it by RDMA: when bytes exceed the eager limit. Sets
 * *mr to NULL when no registration is needed.
 */
weft_result_t wf_step_register(weft_comm_t comm, const void *buf, size_t bytes, wf_mr_ref_t *ref,
                               const wf_mr_t **mr);

#endif /* WF_COLL_GROUP_H */
