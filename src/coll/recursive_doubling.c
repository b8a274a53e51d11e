/*
 * All-reduce by recursive doubling, for small vectors.
 *
 * In step k every core member exchanges its whole partial vector with core member (v XOR 2^k)
 * and reduces the two, so after log2(p) steps every core member has the full reduction. With n
 * not a power of two, the first 2*rem members fold pairwise first: member 2i sends its vector to
 * member 2i + 1, which reduces it into its own and sends the finished result back at the end, so
 * log2(p) + 2 steps in all. Each step costs a latency and a whole vector sent and reduced, which
 * beats the ring's 2(n - 1) latencies when the vector is small.
 *
 * Partials travel in the plan's partial type (float16 and bfloat16 as float32 unless
 * WEFT_REDUCE_PRECISION=native), and the result is rounded once at the end. When partials are the
 * user type, recvbuf accumulates them and only the receive area is scratch. The reduction kernels
 * give the same bits in either operand order (src/reduce_internal.h), so both members of a pair
 * compute the same partial and every rank ends with bitwise the same result.
 */
#include <string.h>

#include "group.h"

typedef struct {
    weft_comm_t comm;
    const wf_group_t *group;
    const wf_fold_t *fold;
    const wf_reduce_plan_t *plan;
    size_t count;
    char *acc;            /* partials of the whole vector: recvbuf when they are the user type */
    const wf_mr_t *acc_mr;
    char *in;             /* receive area of count partials */
    const wf_mr_t *in_mr;
    const wf_mr_t *recv_mr; /* registration of recvbuf for RDMA, or NULL */
} doubling_t;

static const wf_step_side_t no_side = {-1, NULL, 0, NULL};

/* A member that folds: hand the vector to member me + 1, then take the finished result from it. */
static weft_result_t run_folded(doubling_t *d, const void *sendbuf, void *recvbuf)
{
    weft_comm_t comm = d->comm;
    int partner = wf_group_rank(d->group, d->group->me + 1);
    size_t bytes = d->count * d->plan->user_size;
    wf_mr_ref_t ref;
    const wf_mr_t *send_mr;

    weft_result_t result = wf_step_register(comm, sendbuf, bytes, &ref, &send_mr);
    if (result == WEFT_SUCCESS)
        result = wf_step_exchange(comm, 0, &(wf_step_side_t){partner, (void *)sendbuf, bytes, send_mr}, &no_side);
    wf_mr_put(comm, &ref);
    if (result == WEFT_SUCCESS)
        result = wf_step_exchange(comm, (unsigned)d->fold->steps + 1, &no_side,
                                  &(wf_step_side_t){partner, recvbuf, bytes, d->recv_mr});
    return result;
}

static weft_result_t run_core(doubling_t *d, const void *sendbuf, void *recvbuf)
{
    weft_comm_t comm = d->comm;
    const wf_reduce_plan_t *plan = d->plan;
    const wf_fold_t *fold = d->fold;
    size_t user_bytes = d->count * plan->user_size, partial_bytes = d->count * plan->partial_size;
    int me = d->group->me, pairs_with_folded = me < 2 * fold->rem;
    weft_result_t result = WEFT_SUCCESS;

    if (d->acc != recvbuf)
        plan->to_partial(d->acc, sendbuf, d->count);
    else if (sendbuf != recvbuf)
        memcpy(recvbuf, sendbuf, user_bytes); /* partials are the user type: recvbuf accumulates */

    /* Fold: add member me - 1's vector. */
    if (pairs_with_folded) {
        result = wf_step_exchange(comm, 0, &no_side,
                                  &(wf_step_side_t){wf_group_rank(d->group, me - 1), d->in, user_bytes, d->in_mr});
        if (result == WEFT_SUCCESS)
            plan->reduce_user(d->acc, d->in, d->count);
    }

    /* Doubling: exchange whole partial vectors with the core member 2^k away. */
    for (int k = 0; k < fold->steps && result == WEFT_SUCCESS; k++) {
        int partner = wf_group_rank(d->group, wf_fold_member(fold, fold->core ^ (1 << k)));
        result = wf_step_exchange(comm, (unsigned)k + 1, &(wf_step_side_t){partner, d->acc, partial_bytes, d->acc_mr},
                                  &(wf_step_side_t){partner, d->in, partial_bytes, d->in_mr});
        if (result == WEFT_SUCCESS)
            plan->reduce_partial(d->acc, d->in, d->count);
    }
    if (result != WEFT_SUCCESS)
        return result;

    /* Round once, then hand the result back to member me - 1. */
    plan->finish(recvbuf, d->acc, d->count, comm->nranks);
    if (pairs_with_folded)
        result = wf_step_exchange(comm, (unsigned)fold->steps + 1,
                                  &(wf_step_side_t){wf_group_rank(d->group, me - 1), recvbuf, user_bytes, d->recv_mr},
                                  &no_side);
    return result;
}

weft_result_t wf_allreduce_recursive_doubling(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                              void *recvbuf, size_t count, const wf_reduce_plan_t *plan)
{
    wf_fold_t fold = wf_fold_of(group);
    doubling_t d = {comm, group, &fold, plan, count, NULL, NULL, NULL, NULL, NULL};
    wf_scratch_t scratch = {0};
    wf_mr_ref_t recv_ref = {0};
    size_t partial_bytes = count * plan->partial_size;
    int acc_in_recvbuf = plan->partial_size == plan->user_size;

    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = wf_step_register(comm, recvbuf, count * plan->user_size, &recv_ref, &d.recv_mr);
    if (result == WEFT_SUCCESS && fold.core < 0) {
        result = run_folded(&d, sendbuf, recvbuf);
    } else if (result == WEFT_SUCCESS) {
        result = wf_scratch_get(comm, (acc_in_recvbuf ? 1 : 2) * partial_bytes, &scratch);
        d.acc = acc_in_recvbuf ? recvbuf : scratch.base + partial_bytes;
        d.acc_mr = acc_in_recvbuf ? d.recv_mr : scratch.mr;
        d.in = scratch.base;
        d.in_mr = scratch.mr;
        if (result == WEFT_SUCCESS)
            result = run_core(&d, sendbuf, recvbuf);
    }
    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &scratch, result);
    wf_mr_put(comm, &recv_ref);
    return result;
}
