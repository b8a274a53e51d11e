/*
 * Recursive halving reduce-scatter, and Rabenseifner's all-reduce built on it.
 *
 * The vector is cut into p core blocks (p the largest power of two <= n). In halving step k a core
 * member keeps half of its current range of blocks and sends the other half to the core member
 * 2^(log2(p) - 1 - k) away. It reduces the half it receives from that member into its own. After
 * log2(p) steps core member v has block v reduced over everyone, and each rank sent and reduced
 * (p - 1)/p of the vector in log2(p) latencies. Rabenseifner's all-reduce then runs the steps in
 * reverse as a recursive-doubling all-gather of the finished blocks, written straight into recvbuf:
 * 2 log2(p) latencies and about twice the vector sent per rank, like the ring with far fewer steps.
 *
 * With n not a power of two, the first 2*rem members fold pairwise first (member 2i sends its
 * whole vector to member 2i + 1) and get their result from that partner at the end. The
 * all-reduce cuts the vector into p blocks whose sizes differ by at most one element; the
 * reduce-scatter uses the members' own blocks, a core member owning the blocks of both members
 * of its pair.
 *
 * Each block is reduced on one rank only and then copied, so every rank gets the same bits.
 * float16 and bfloat16 travel as float32 partials (unless WEFT_REDUCE_PRECISION=native) and are
 * rounded once, when the owner finishes its block.
 */
#include <stdlib.h>
#include <string.h>

#include "group.h"

typedef struct {
    weft_comm_t comm;
    const wf_group_t *group;
    wf_fold_t fold;
    const wf_reduce_plan_t *plan;
    size_t *bounds;   /* p + 1 element offsets: core block v is [bounds[v], bounds[v + 1]) */
    char *acc;        /* partials of the whole vector */
    const wf_mr_t *acc_mr;
    char *in;         /* receive area */
    const wf_mr_t *in_mr;
} halving_t;

static const wf_step_side_t no_side = {-1, NULL, 0, NULL};

/* Receive area a core member needs: the larger half of the first step, or a folded partner's vector. */
static size_t receive_area(const halving_t *h, size_t fold_bytes)
{
    size_t p = (size_t)h->fold.p, *b = h->bounds;
    size_t half = p > 1 ? b[p / 2] - b[0] : 0;
    if (p > 1 && b[p] - b[p / 2] > half)
        half = b[p] - b[p / 2];
    size_t bytes = half * h->plan->partial_size;
    int pairs_with_folded = h->group->me < 2 * h->fold.rem;
    return pairs_with_folded && fold_bytes > bytes ? fold_bytes : bytes;
}

/* Halving steps 1 .. log2(p): on return acc's block `core` is reduced over every member. */
static weft_result_t halve(halving_t *h)
{
    size_t psize = h->plan->partial_size;
    int v = h->fold.core, lo = 0, hi = h->fold.p;
    weft_result_t result = WEFT_SUCCESS;

    for (int k = 0, half = h->fold.p / 2; half > 0 && result == WEFT_SUCCESS; k++, half /= 2) {
        int mid = lo + half, keep_low = v < mid;
        int keep_first = keep_low ? lo : mid, keep_end = keep_low ? mid : hi;
        int send_first = keep_low ? mid : lo, send_end = keep_low ? hi : mid;
        size_t keep_offset = h->bounds[keep_first], keep_count = h->bounds[keep_end] - keep_offset;
        size_t send_offset = h->bounds[send_first], send_count = h->bounds[send_end] - send_offset;
        int partner = wf_group_rank(h->group, wf_fold_member(&h->fold, v ^ half));

        result = wf_step_exchange(
            h->comm, (unsigned)k + 1,
            &(wf_step_side_t){partner, h->acc + send_offset * psize, send_count * psize, h->acc_mr},
            &(wf_step_side_t){partner, h->in, keep_count * psize, h->in_mr});
        if (result == WEFT_SUCCESS)
            h->plan->reduce_partial(h->acc + keep_offset * psize, h->in, keep_count);
        lo = keep_first;
        hi = keep_end;
    }
    return result;
}

/* Doubling steps log2(p) + 1 .. 2 log2(p): gather every finished block into recvbuf. */
static weft_result_t double_up(halving_t *h, char *recvbuf, const wf_mr_t *recv_mr)
{
    size_t usize = h->plan->user_size;
    int v = h->fold.core;
    weft_result_t result = WEFT_SUCCESS;

    for (int k = 0, size = 1; size < h->fold.p && result == WEFT_SUCCESS; k++, size *= 2) {
        int mine = v & ~(size - 1), theirs = (v ^ size) & ~(size - 1);
        size_t send_offset = h->bounds[mine], send_count = h->bounds[mine + size] - send_offset;
        size_t recv_offset = h->bounds[theirs], recv_count = h->bounds[theirs + size] - recv_offset;
        int partner = wf_group_rank(h->group, wf_fold_member(&h->fold, v ^ size));

        result = wf_step_exchange(
            h->comm, (unsigned)(h->fold.steps + k + 1),
            &(wf_step_side_t){partner, recvbuf + send_offset * usize, send_count * usize, recv_mr},
            &(wf_step_side_t){partner, recvbuf + recv_offset * usize, recv_count * usize, recv_mr});
    }
    return result;
}

/* A folded member's first step: its whole vector to member me + 1. */
static weft_result_t send_to_partner(halving_t *h, const void *sendbuf, size_t bytes)
{
    wf_mr_ref_t ref;
    const wf_mr_t *mr;
    weft_result_t result = wf_step_register(h->comm, sendbuf, bytes, &ref, &mr);
    if (result == WEFT_SUCCESS)
        result = wf_step_exchange(h->comm, 0,
                                  &(wf_step_side_t){wf_group_rank(h->group, h->group->me + 1), (void *)sendbuf,
                                                    bytes, mr},
                                  &no_side);
    wf_mr_put(h->comm, &ref);
    return result;
}

/* A core member's first step: the vector of folded member me - 1, when there is one, into in. */
static weft_result_t take_from_partner(halving_t *h, size_t bytes)
{
    if (h->group->me >= 2 * h->fold.rem)
        return WEFT_SUCCESS;
    return wf_step_exchange(h->comm, 0, &no_side,
                            &(wf_step_side_t){wf_group_rank(h->group, h->group->me - 1), h->in, bytes, h->in_mr});
}

/* The all-reduce of a core member, after its partner's vector (if any) arrived in h->in. */
static weft_result_t allreduce_core(halving_t *h, const void *sendbuf, char *recvbuf, const wf_mr_t *recv_mr,
                                    size_t count)
{
    const wf_reduce_plan_t *plan = h->plan;
    size_t user_bytes = count * plan->user_size;
    int me = h->group->me;

    if (h->acc != recvbuf)
        plan->to_partial(h->acc, sendbuf, count);
    else if (sendbuf != recvbuf)
        memcpy(recvbuf, sendbuf, user_bytes); /* partials are the user type: recvbuf accumulates */
    if (me < 2 * h->fold.rem)
        plan->reduce_user(h->acc, h->in, count);

    weft_result_t result = halve(h);
    if (result != WEFT_SUCCESS)
        return result;
    size_t first = h->bounds[h->fold.core], length = h->bounds[h->fold.core + 1] - first;
    plan->finish(recvbuf + first * plan->user_size, h->acc + first * plan->partial_size, length, h->comm->nranks);
    result = double_up(h, recvbuf, recv_mr);
    if (result == WEFT_SUCCESS && me < 2 * h->fold.rem)
        result = wf_step_exchange(h->comm, (unsigned)(2 * h->fold.steps + 1),
                                  &(wf_step_side_t){wf_group_rank(h->group, me - 1), recvbuf, user_bytes, recv_mr},
                                  &no_side);
    return result;
}

/* Set up the shared state: the fold, and p + 1 block bounds. */
static weft_result_t halving_init(halving_t *h, weft_comm_t comm, const wf_group_t *group,
                                  const wf_reduce_plan_t *plan)
{
    memset(h, 0, sizeof(*h));
    h->comm = comm;
    h->group = group;
    h->fold = wf_fold_of(group);
    h->plan = plan;
    h->bounds = malloc(((size_t)h->fold.p + 1) * sizeof(size_t));
    if (h->bounds == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory for %d block bounds",
                            comm->coll_name, comm->rank, h->fold.p + 1);
    return WEFT_SUCCESS;
}

weft_result_t wf_allreduce_rabenseifner(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                        void *recvbuf, size_t count, const wf_reduce_plan_t *plan)
{
    halving_t h = {0};
    wf_scratch_t scratch = {0};
    wf_mr_ref_t recv_ref = {0};
    const wf_mr_t *recv_mr = NULL;
    size_t user_bytes = count * plan->user_size;
    int acc_in_recvbuf = plan->partial_size == plan->user_size;

    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = halving_init(&h, comm, group, plan);
    for (int v = 0; result == WEFT_SUCCESS && v <= h.fold.p; v++)
        h.bounds[v] = wf_block_offset(count, h.fold.p, v);
    if (result == WEFT_SUCCESS)
        result = wf_step_register(comm, recvbuf, user_bytes, &recv_ref, &recv_mr);

    if (result == WEFT_SUCCESS && h.fold.core < 0) {
        result = send_to_partner(&h, sendbuf, user_bytes);
        if (result == WEFT_SUCCESS)
            result = wf_step_exchange(comm, (unsigned)(2 * h.fold.steps + 1), &no_side,
                                      &(wf_step_side_t){wf_group_rank(group, group->me + 1), recvbuf, user_bytes,
                                                        recv_mr});
    } else if (result == WEFT_SUCCESS) {
        size_t in_bytes = receive_area(&h, user_bytes);
        size_t acc_bytes = acc_in_recvbuf ? 0 : count * plan->partial_size;
        result = wf_scratch_get(comm, acc_bytes + in_bytes, &scratch);
        h.acc = acc_in_recvbuf ? recvbuf : scratch.base;
        h.acc_mr = acc_in_recvbuf ? recv_mr : scratch.mr;
        h.in = scratch.base + acc_bytes;
        h.in_mr = scratch.mr;
        if (result == WEFT_SUCCESS)
            result = take_from_partner(&h, user_bytes);
        if (result == WEFT_SUCCESS)
            result = allreduce_core(&h, sendbuf, recvbuf, recv_mr, count);
    }

    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &scratch, result);
    wf_mr_put(comm, &recv_ref);
    free(h.bounds);
    return result;
}

/* The reduce-scatter of a core member: halve, finish its block, and its folded partner's. */
static weft_result_t reduce_scatter_core(halving_t *h, const void *sendbuf, void *recvbuf, const size_t *counts,
                                         const size_t *offsets, size_t total)
{
    const wf_reduce_plan_t *plan = h->plan;
    int me = h->group->me;

    plan->to_partial(h->acc, sendbuf, total);
    if (me < 2 * h->fold.rem)
        plan->reduce_user(h->acc, h->in, total);
    weft_result_t result = halve(h);
    if (result != WEFT_SUCCESS)
        return result;
    plan->finish(recvbuf, h->acc + offsets[me] * plan->partial_size, counts[me], h->comm->nranks);
    if (me >= 2 * h->fold.rem)
        return WEFT_SUCCESS;

    /* The folded partner's block, finished in the receive area, which is registered. */
    plan->finish(h->in, h->acc + offsets[me - 1] * plan->partial_size, counts[me - 1], h->comm->nranks);
    return wf_step_exchange(h->comm, (unsigned)h->fold.steps + 1,
                            &(wf_step_side_t){wf_group_rank(h->group, me - 1), h->in,
                                              counts[me - 1] * plan->user_size, h->in_mr},
                            &no_side);
}

weft_result_t wf_reduce_scatter_halving(weft_comm_t comm, const wf_group_t *group, const void *sendbuf,
                                        void *recvbuf, const size_t *counts, const size_t *offsets,
                                        const wf_reduce_plan_t *plan)
{
    halving_t h = {0};
    wf_scratch_t scratch = {0};
    int n = group->n, me = group->me;
    size_t total = offsets[n - 1] + counts[n - 1];

    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = halving_init(&h, comm, group, plan);
    /* Core block v holds the blocks of the members it stands for: 2v and 2v + 1, or v + rem. */
    for (int v = 0; result == WEFT_SUCCESS && v < h.fold.p; v++)
        h.bounds[v] = offsets[v < h.fold.rem ? 2 * v : v + h.fold.rem];
    if (result == WEFT_SUCCESS)
        h.bounds[h.fold.p] = total;

    if (result == WEFT_SUCCESS && h.fold.core < 0) {
        wf_mr_ref_t ref;
        const wf_mr_t *mr;
        size_t own_bytes = counts[me] * plan->user_size;
        result = send_to_partner(&h, sendbuf, total * plan->user_size);
        if (result == WEFT_SUCCESS)
            result = wf_step_register(comm, recvbuf, own_bytes, &ref, &mr);
        if (result == WEFT_SUCCESS) {
            result = wf_step_exchange(comm, (unsigned)h.fold.steps + 1, &no_side,
                                      &(wf_step_side_t){wf_group_rank(group, me + 1), recvbuf, own_bytes, mr});
            wf_mr_put(comm, &ref);
        }
    } else if (result == WEFT_SUCCESS) {
        size_t acc_bytes = total * plan->partial_size;
        size_t in_bytes = receive_area(&h, total * plan->user_size);
        if (me < 2 * h.fold.rem && counts[me - 1] * plan->user_size > in_bytes)
            in_bytes = counts[me - 1] * plan->user_size;
        result = wf_scratch_get(comm, acc_bytes + in_bytes, &scratch);
        h.acc = scratch.base;
        h.acc_mr = scratch.mr;
        h.in = scratch.base + acc_bytes;
        h.in_mr = scratch.mr;
        if (result == WEFT_SUCCESS)
            result = take_from_partner(&h, total * plan->user_size);
        if (result == WEFT_SUCCESS)
            result = reduce_scatter_core(&h, sendbuf, recvbuf, counts, offsets, total);
    }

    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &scratch, result);
    free(h.bounds);
    return result;
}
