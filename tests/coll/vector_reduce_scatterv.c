/*
 * weft_reduce_scatterv cases: every op over every datatype on small uneven layouts with zero
 * counts, large layouts (hundreds of thousands of elements, ring path), all counts zero, and
 * invalid arguments that every rank passes alike. The expected block of each rank is the exact
 * reduction from coll_data.c: integer avg truncated toward zero, float16 and bfloat16 sums
 * rounded once from the exact float32 sum.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_data.h"
#include "vector_collectives.h"

typedef struct {
    weft_datatype_t type;
    weft_op_t op;
    int large;
    int in_place;
    int null_empty_recv; /* out of place: a rank whose count is 0 passes recvbuf NULL */
    int half_ulp;        /* VC_PATTERN_HALF_ULP inputs (16-bit sums) instead of the hashed ones */
} scatter_case_t;

static const scatter_case_t large_cases[] = {
    /* type, op, large, in_place, null_empty_recv, half_ulp */
    {WEFT_FLOAT32, WEFT_SUM, 1, 0, 0, 0},
    {WEFT_INT32, WEFT_AVG, 1, 1, 0, 0},
    {WEFT_BFLOAT16, WEFT_SUM, 1, 1, 0, 0},
    {WEFT_FLOAT16, WEFT_SUM, 1, 0, 1, 0},
    {WEFT_INT64, WEFT_MAX, 1, 0, 0, 0},
    {WEFT_UINT8, WEFT_PROD, 1, 1, 0, 0},
    {WEFT_FLOAT64, WEFT_MIN, 1, 0, 0, 0},
    {WEFT_INT8, WEFT_AVG, 1, 0, 0, 0},
    {WEFT_FLOAT16, WEFT_SUM, 1, 1, 0, 1},
    {WEFT_BFLOAT16, WEFT_SUM, 1, 0, 0, 1},
};

/* 16-bit sums whose single rounding differs from rounding after every addition on 3 or more ranks. */
static const scatter_case_t half_ulp_cases[] = {
    {WEFT_FLOAT16, WEFT_SUM, 0, 0, 0, 1},
    {WEFT_BFLOAT16, WEFT_SUM, 0, 1, 0, 1},
};

static void *allocate_or_exit(size_t bytes)
{
    void *memory = malloc(bytes ? bytes : 1);
    if (memory == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate %zu bytes for a reference\n", bytes);
        exit(2);
    }
    return memory;
}

/*
 * Run one reduce_scatterv over layout (displs are the block starts in sendbuf) with inputs from
 * seed, then check this rank's block, an out-of-place send buffer and all guards. Returns 1 when
 * every check held.
 */
static int scatter_and_check(vc_context_t *context, const char *label, const scatter_case_t *item,
                             const vc_layout_t *layout, uint64_t seed)
{
    weft_datatype_t type = item->type;
    size_t size = ct_type_size(type), total = layout->extent;
    size_t own = layout->counts[context->rank], own_first = layout->displs[context->rank];
    unsigned char *expected = allocate_or_exit(own * size);
    unsigned char *inputs = allocate_or_exit(total * size);
    ct_buffer_t send, recv = {0};
    void *recvbuf;

    int pattern = item->half_ulp ? VC_PATTERN_HALF_ULP : (int)item->op;

    vc_fill_inputs(type, pattern, seed, context->rank, 0, total, inputs);
    vc_fill_reduction(context, type, pattern, seed, own_first, own, expected);
    ct_buffer_alloc(&send, total * size);
    memcpy(send.data, inputs, total * size);
    if (item->in_place) {
        recvbuf = send.data + own_first * size;
    } else if (own == 0 && item->null_empty_recv) {
        recvbuf = NULL;
    } else {
        ct_buffer_alloc(&recv, own * size);
        memset(recv.data, VC_UNWRITTEN_FILL, recv.bytes);
        recvbuf = recv.data;
    }

    weft_result_t result = weft_reduce_scatterv(send.data, recvbuf, layout->counts, type, item->op, context->comm);
    int ok = ct_check_result(&context->tally, context->comm, result, label);
    ok = ok && vc_compare(context, label, item->in_place ? "in-place block" : "receive buffer", type, recvbuf,
                          expected, own, NULL);
    if (!item->in_place) {
        /* In place, the other blocks of sendbuf are scratch afterwards; out of place they are input. */
        ok = ok && vc_compare(context, label, "send buffer (must stay unchanged)", type, send.data, inputs, total,
                              NULL);
    }
    ok = vc_check_guards(context, label, item->in_place ? "in-place send buffer" : "send buffer", &send) && ok;
    if (recv.base != NULL) {
        ok = vc_check_guards(context, label, "receive buffer", &recv) && ok;
        ct_buffer_free(&recv);
    }
    ct_buffer_free(&send);
    free(inputs);
    free(expected);
    return ok;
}

static void run_case(vc_context_t *context, const scatter_case_t *item)
{
    uint64_t seed = context->next_seed++;
    vc_shape_t shape = {item->large, 0, 0}; /* blocks follow each other in rank order */
    vc_layout_t layout;
    char label[VC_LABEL_LENGTH];

    vc_layout_make(context, seed, &shape, &layout);
    snprintf(label, sizeof label, "reduce_scatterv %s %s%s %s %s%s", ct_type_name(item->type), ct_op_name(item->op),
             item->half_ulp ? " (half-ulp inputs, rounded once)" : "", item->large ? "large" : "small",
             item->in_place ? "in place" : "out of place", item->null_empty_recv ? " (empty recvbuf NULL)" : "");
    vc_describe_layout(context, &layout, 0, label, sizeof label);
    if (scatter_and_check(context, label, item, &layout, seed))
        context->tally.passed++;
    vc_layout_free(&layout);
}

/* Every count zero: NULL buffers succeed, and real buffers stay untouched. */
static void run_all_counts_zero(vc_context_t *context)
{
    size_t *zeros = calloc((size_t)context->nranks, sizeof(size_t));
    const char *null_label = "reduce_scatterv sum all counts zero, NULL buffers";
    const char *label = "reduce_scatterv sum all counts zero, real buffers";
    ct_buffer_t send, recv;

    if (zeros == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate count tables\n");
        exit(2);
    }
    weft_result_t result = weft_reduce_scatterv(NULL, NULL, zeros, WEFT_FLOAT32, WEFT_SUM, context->comm);
    if (ct_check_result(&context->tally, context->comm, result, null_label))
        context->tally.passed++;

    if (!context->tally.broken) {
        ct_buffer_alloc(&send, 16);
        ct_buffer_alloc(&recv, 16);
        memset(send.data, VC_UNWRITTEN_FILL, send.bytes);
        memset(recv.data, VC_UNWRITTEN_FILL, recv.bytes);
        result = weft_reduce_scatterv(send.data, recv.data, zeros, WEFT_FLOAT32, WEFT_SUM, context->comm);
        int ok = ct_check_result(&context->tally, context->comm, result, label);
        ok = ok && vc_check_untouched(context, label, "receive buffer", recv.data, recv.bytes, VC_UNWRITTEN_FILL);
        ok = ok && vc_check_untouched(context, label, "send buffer", send.data, send.bytes, VC_UNWRITTEN_FILL);
        ok = vc_check_guards(context, label, "receive buffer", &recv) && ok;
        ok = vc_check_guards(context, label, "send buffer", &send) && ok;
        ct_buffer_free(&send);
        ct_buffer_free(&recv);
        if (ok)
            context->tally.passed++;
    }
    free(zeros);
}

static void expect_rejected(vc_context_t *context, const char *label, const void *sendbuf, ct_buffer_t *recv,
                            const size_t *counts, weft_datatype_t type, weft_op_t op)
{
    memset(recv->data, VC_UNWRITTEN_FILL, recv->bytes);
    weft_result_t result = weft_reduce_scatterv(sendbuf, recv->data, counts, type, op, context->comm);
    int ok = vc_expect_invalid(context, label, result);
    ok = ok && vc_check_untouched(context, label, "receive buffer", recv->data, recv->bytes, VC_UNWRITTEN_FILL);
    ok = vc_check_guards(context, label, "receive buffer", recv) && ok;
    if (ok)
        context->tally.passed++;
}

/*
 * Invalid arguments that every rank passes alike (each rank gets 2 int32 elements), then a correct
 * call that shows the communicator still works.
 */
static void run_invalid_arguments(vc_context_t *context)
{
    int n = context->nranks;
    vc_layout_t layout = {calloc(2 * (size_t)n, sizeof(size_t)), NULL, 2 * (size_t)n};
    ct_buffer_t send, recv;

    if (layout.counts == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate count tables\n");
        exit(2);
    }
    layout.displs = layout.counts + n;
    for (int r = 0; r < n; r++) {
        layout.counts[r] = 2;
        layout.displs[r] = 2 * (size_t)r;
    }
    ct_buffer_alloc(&send, layout.extent * sizeof(int32_t));
    memset(send.data, 0, send.bytes);
    ct_buffer_alloc(&recv, 2 * sizeof(int32_t));

    expect_rejected(context, "reduce_scatterv recvcounts NULL", send.data, &recv, NULL, WEFT_INT32, WEFT_SUM);
    expect_rejected(context, "reduce_scatterv sendbuf NULL with non-zero counts", NULL, &recv, layout.counts,
                    WEFT_INT32, WEFT_SUM);
    expect_rejected(context, "reduce_scatterv op 99", send.data, &recv, layout.counts, WEFT_INT32, (weft_op_t)99);
    expect_rejected(context, "reduce_scatterv datatype 99", send.data, &recv, layout.counts, (weft_datatype_t)99,
                    WEFT_SUM);
    ct_buffer_free(&send);
    ct_buffer_free(&recv);

    if (!context->tally.broken) {
        scatter_case_t item = {WEFT_INT32, WEFT_SUM, 0, 0, 0, 0};
        if (scatter_and_check(context, "reduce_scatterv int32 sum counts all 2 after the rejected calls", &item,
                              &layout, context->next_seed++))
            context->tally.passed++;
    }
    vc_layout_free(&layout);
}

void vc_run_reduce_scatterv(vc_context_t *context)
{
    /* Small: every op over every datatype, alternating in place and out of place. */
    for (int t = 0; t < CT_NUM_TYPES && !context->tally.broken; t++) {
        for (int o = 0; o < CT_NUM_OPS && !context->tally.broken; o++) {
            int in_place = (t + o) % 2;
            scatter_case_t item = {(weft_datatype_t)t, (weft_op_t)o, 0, in_place, !in_place && t % 3 == 0, 0};
            run_case(context, &item);
        }
    }
    for (size_t c = 0; c < sizeof half_ulp_cases / sizeof half_ulp_cases[0] && !context->tally.broken; c++)
        run_case(context, &half_ulp_cases[c]);
    for (size_t c = 0; c < sizeof large_cases / sizeof large_cases[0] && !context->tally.broken; c++)
        run_case(context, &large_cases[c]);
    if (!context->tally.broken)
        run_all_counts_zero(context);
    if (!context->tally.broken)
        run_invalid_arguments(context);
}
