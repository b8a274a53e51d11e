/*
 * All-reduce by recursive doubling, for small vectors.
 *
 * In step k every core member exchanges its whole partial vector with core member (v XOR 2^k)
 * and reduces the two, so after log2(p) steps every core member holds the full reduction. With n
 * not a power of two, the first 2*rem members fold pairwise first (member 2i sends its vector to
 * member 2i + 1, which reduces it into its own) and get the finished result back at the end:
 * log2(p) + 2 steps in all. Cost: that many latencies, and log2(p) vectors sent and reduced per
 * rank, which beats the ring's 2(n - 1) latencies when the vector is small.
 *
 * Partials travel in the plan's partial type (float16 and bfloat16 as float32 unless
 * WEFT_REDUCE_PRECISION=native), and the result is rounded once at the end. The reduction kernels
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
    wf_scratch_t scratch; /* accumulator, then the receive area: count partials each */
} doubling_t;

/* A member that folds: hand the vector to member me + 1, then take the finished result from it. */
static weft_result_t run_folded(doubling_t *d, const void *sendbuf, void *recvbuf)
{
    weft_comm_t comm = d->comm;
    int partner = wf_group_rank(d->group, d->group->me + 1);
    size_t bytes = d->count * d->plan->user_size;
    char *in = d->scratch.base + d->count * d->plan->partial_size;
    wf_mr_ref_t ref;
    const wf_mr_t *send_mr;

    weft_result_t result = wf_step_register(comm, sendbuf, bytes, &ref, &send_mr);
    if (result == WEFT_SUCCESS)
        result = wf_step_exchange(comm, 0, &(wf_step_side_t){partner, (void *)sendbuf, bytes, send_mr},
                                  &(wf_step_side_t){-1, NULL, 0, NULL});
    wf_mr_put(comm, &ref);
    if (result == WEFT_SUCCESS)
        result = wf_step_exchange(comm, (unsigned)d->fold->steps + 1, &(wf_step_side_t){-1, NULL, 0, NULL},
                                  &(wf_step_side_t){partner, in, bytes, d->scratch.mr});
    if (result == WEFT_SUCCESS)
        memcpy(recvbuf, in, bytes);
    return result;
}

static weft_result_t run_core(doubling_t *d, const void *sendbuf, void *recvbuf)
{
    weft_comm_t comm = d->comm;
    const wf_reduce_plan_t *plan = d->plan;
    const wf_fold_t *fold = d->fold;
    size_t user_bytes = d->count * plan->user_size, partial_bytes = d->count * plan->partial_size;
    char *acc = d->scratch.base, *in = acc + partial_bytes;
    int me = d->group->me, pairs_with_folded = me < 2 * fold->rem;
    weft_result_t result = WEFT_SUCCESS;

    /* Fold: take member me - 1's vector first, so the reduction runs in member order. */
    if (pairs_with_folded) {
        int partner = wf_group_rank(d->group, me - 1);
        result = wf_step_exchange(comm, 0, &(wf_step_side_t){-1, NULL, 0, NULL},
                                  &(wf_step_side_t){partner, in, user_bytes, d->scratch.mr});
        if (result == WEFT_SUCCESS) {
            plan->to_partial(acc, in, d->count);
            plan->reduce_user(acc, sendbuf, d->count);
        }
    } else {
        plan->to_partial(acc, sendbuf, d->count);
    }

    /* Doubling: exchange whole partial vectors with the core member 2^k away. */
    for (int k = 0; k < fold->steps && result == WEFT_SUCCESS; k++) {
        int partner = wf_group_rank(d->group, wf_fold_member(fold, fold->core ^ (1 << k)));
        result = wf_step_exchange(comm, (unsigned)k + 1, &(wf_step_side_t){partner, acc, partial_bytes, d->scratch.mr},
                                  &(wf_step_side_t){partner, in, partial_bytes, d->scratch.mr});
        if (result == WEFT_SUCCESS)
            plan->reduce_partial(acc, in, d->count);
    }
    if (result != WEFT_SUCCESS)
        return result;

    /* Unfold: the result goes back to member me - 1 from registered scratch. */
    if (!pairs_with_folded) {
        plan->finish(recvbuf, acc, d->count, comm->nranks);
        return WEFT_SUCCESS;
    }
    plan->finish(in, acc, d->count, comm->nranks);
    result = wf_step_exchange(comm, (unsigned)fold->steps + 1,
                              &(wf_step_side_t){wf_group_rank(d->group, me - 1), in, user_bytes, d->scratch.mr},
                              &(wf_step_side_t){-1, NULL, 0, NULL});
    if (result == WEFT_SUCCESS)
        memcpy(recvbuf, in, user_bytes);
    return result;
}

weft_result_t wf_allreduce_recursive_doubling(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                              void *recvbuf, size_t count, const wf_reduce_plan_t *plan)
{
    wf_fold_t fold = wf_fold_of(group);
    doubling_t d = {comm, group, &fold, plan, count, {0}};

    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = wf_scratch_get(comm, 2 * count * plan->partial_size, &d.scratch);
    if (result == WEFT_SUCCESS)
        result = fold.core < 0 ? run_folded(&d, sendbuf, recvbuf) : run_core(&d, sendbuf, recvbuf);
    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &d.scratch, result);
    return result;
}
