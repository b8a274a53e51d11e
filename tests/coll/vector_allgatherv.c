/*
 * weft_allgatherv cases: the 4-rank field case, generated layouts (zero counts, reversed
 * displacements, gaps, in place and out of place, small and large), all counts zero, and invalid
 * arguments that every rank passes alike. Every element of the receive buffer is checked: each
 * rank's block against that rank's input, and every gap against the filler written before the call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_data.h"
#include "vector_collectives.h"

typedef struct {
    weft_datatype_t type;
    vc_shape_t shape;
    int in_place;
    int null_empty_send; /* out of place: a rank whose count is 0 passes sendbuf NULL */
} gather_case_t;

/* Small layouts run this many times with fresh seeds, for more variety of counts and zeros. */
#define SMALL_ROUNDS 2

static const gather_case_t generic_cases[] = {
    /* type, {large, reversed, gaps}, in_place, null_empty_send */
    {WEFT_INT32, {0, 0, 0}, 0, 0},
    {WEFT_INT8, {0, 1, 0}, 1, 0},
    {WEFT_FLOAT16, {0, 0, 1}, 0, 1},
    {WEFT_FLOAT64, {0, 1, 1}, 1, 0},
    {WEFT_UINT64, {0, 1, 1}, 0, 0},
    {WEFT_BFLOAT16, {0, 0, 1}, 1, 0},
    {WEFT_UINT8, {0, 1, 0}, 0, 1},
    {WEFT_FLOAT32, {0, 0, 0}, 1, 0},
    {WEFT_INT32, {1, 0, 0}, 0, 0},
    {WEFT_FLOAT64, {1, 1, 1}, 1, 0},
    {WEFT_UINT8, {1, 1, 1}, 0, 1},
    {WEFT_FLOAT16, {1, 0, 1}, 1, 0},
};

static void *allocate_or_exit(size_t bytes)
{
    void *memory = malloc(bytes ? bytes : 1);
    if (memory == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate %zu bytes for an expected result\n", bytes);
        exit(2);
    }
    return memory;
}

/*
 * Run one allgatherv over layout with movement inputs from seed, then check the receive buffer
 * (blocks and gaps), the send buffer and all guards. Returns 1 when every check held.
 */
static int gather_and_check(vc_context_t *context, const char *label, const gather_case_t *item,
                            const vc_layout_t *layout, uint64_t seed)
{
    weft_datatype_t type = item->type;
    size_t size = ct_type_size(type);
    size_t own = layout->counts[context->rank];
    size_t own_offset = layout->displs[context->rank] * size;
    unsigned char *expected = allocate_or_exit(layout->extent * size);
    ct_buffer_t recv, send = {0};
    const void *sendbuf;

    memset(expected, VC_UNWRITTEN_FILL, layout->extent * size);
    for (int r = 0; r < context->nranks; r++)
        vc_fill_inputs(type, CT_PATTERN_MOVE, seed, r, 0, layout->counts[r], expected + layout->displs[r] * size);

    ct_buffer_alloc(&recv, layout->extent * size);
    memset(recv.data, VC_UNWRITTEN_FILL, recv.bytes);
    if (item->in_place) {
        memcpy(recv.data + own_offset, expected + own_offset, own * size);
        sendbuf = recv.data + own_offset;
    } else if (own == 0 && item->null_empty_send) {
        sendbuf = NULL;
    } else {
        ct_buffer_alloc(&send, own * size);
        memcpy(send.data, expected + own_offset, own * size);
        sendbuf = send.data;
    }

    weft_result_t result = weft_allgatherv(sendbuf, own, recv.data, layout->counts, layout->displs, type,
                                           context->comm);
    int ok = ct_check_result(&context->tally, context->comm, result, label);
    ok = ok && vc_compare(context, label, item->in_place ? "in-place receive buffer" : "receive buffer", type,
                          recv.data, expected, layout->extent, layout);
    if (send.base != NULL) {
        ok = ok && vc_compare(context, label, "send buffer (must stay unchanged)", type, send.data,
                              expected + own_offset, own, NULL);
        ok = vc_check_guards(context, label, "send buffer", &send) && ok;
        ct_buffer_free(&send);
    }
    ok = vc_check_guards(context, label, "receive buffer", &recv) && ok;
    ct_buffer_free(&recv);
    free(expected);
    return ok;
}

static void run_generic(vc_context_t *context, const gather_case_t *item)
{
    uint64_t seed = context->next_seed++;
    vc_layout_t layout;
    char label[VC_LABEL_LENGTH];

    vc_layout_make(context, seed, &item->shape, &layout);
    snprintf(label, sizeof label, "allgatherv %s %s%s%s %s%s", ct_type_name(item->type),
             item->shape.large ? "large" : "small", item->shape.reversed ? " reversed" : "",
             item->shape.gaps ? " gaps" : "", item->in_place ? "in place" : "out of place",
             item->null_empty_send ? " (empty sendbuf NULL)" : "");
    vc_describe_layout(context, &layout, 1, label, sizeof label);
    if (gather_and_check(context, label, item, &layout, seed))
        context->tally.passed++;
    vc_layout_free(&layout);
}

/*
 * Case from a field report: 4 ranks, int32, recvcounts [0, 3, 0, 2], displs [0, 0, 3, 3], rank r sends
 * 10*r + j. Ranks 0 and 2 contribute nothing, and their displacements coincide with the start of
 * a non-empty block, so every rank must receive exactly [10, 11, 12, 30, 31].
 */
static void run_field_case(vc_context_t *context, int in_place)
{
    size_t counts[4] = {0, 3, 0, 2}, displs[4] = {0, 0, 3, 3};
    static const int32_t expected[5] = {10, 11, 12, 30, 31};
    vc_layout_t layout = {counts, displs, 5};
    int32_t values[3];
    ct_buffer_t recv, send = {0};
    const char *label = in_place ? "allgatherv field case counts=[0,3,0,2] displs=[0,0,3,3] in place"
                                 : "allgatherv field case counts=[0,3,0,2] displs=[0,0,3,3] out of place";
    size_t own = counts[context->rank];
    void *own_block;

    for (size_t j = 0; j < own; j++)
        values[j] = 10 * context->rank + (int32_t)j;
    ct_buffer_alloc(&recv, sizeof expected);
    memset(recv.data, VC_UNWRITTEN_FILL, recv.bytes);
    own_block = recv.data + displs[context->rank] * sizeof(int32_t);
    if (in_place) {
        memcpy(own_block, values, own * sizeof(int32_t));
    } else {
        ct_buffer_alloc(&send, own * sizeof(int32_t));
        memcpy(send.data, values, own * sizeof(int32_t));
    }

    weft_result_t result = weft_allgatherv(in_place ? own_block : send.data, own, recv.data, counts, displs,
                                           WEFT_INT32, context->comm);
    int ok = ct_check_result(&context->tally, context->comm, result, label);
    ok = ok && vc_compare(context, label, "receive buffer", WEFT_INT32, recv.data, expected, 5, &layout);
    if (!in_place) {
        ok = ok && vc_compare(context, label, "send buffer (must stay unchanged)", WEFT_INT32, send.data, values,
                              own, NULL);
        ok = vc_check_guards(context, label, "send buffer", &send) && ok;
        ct_buffer_free(&send);
    }
    ok = vc_check_guards(context, label, "receive buffer", &recv) && ok;
    ct_buffer_free(&recv);
    if (ok)
        context->tally.passed++;
}

/* Every count zero: NULL buffers succeed, and real buffers stay untouched. */
static void run_all_counts_zero(vc_context_t *context)
{
    size_t *zeros = calloc(2 * (size_t)context->nranks, sizeof(size_t));
    size_t *displs = zeros + context->nranks;
    ct_buffer_t send, recv;
    const char *null_label = "allgatherv all counts zero, NULL buffers";
    const char *label = "allgatherv all counts zero, real buffers";

    if (zeros == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate count tables\n");
        exit(2);
    }
    weft_result_t result = weft_allgatherv(NULL, 0, NULL, zeros, displs, WEFT_INT32, context->comm);
    if (ct_check_result(&context->tally, context->comm, result, null_label))
        context->tally.passed++;

    if (!context->tally.broken) {
        ct_buffer_alloc(&send, 16);
        ct_buffer_alloc(&recv, 16);
        memset(send.data, VC_UNWRITTEN_FILL, send.bytes);
        memset(recv.data, VC_UNWRITTEN_FILL, recv.bytes);
        result = weft_allgatherv(send.data, 0, recv.data, zeros, displs, WEFT_INT32, context->comm);
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

/* Call with the given arguments, expect WEFT_ERR_INVALID_ARGUMENT, and check recv stayed untouched. */
static void expect_rejected(vc_context_t *context, const char *label, const void *sendbuf, size_t sendcount,
                            ct_buffer_t *recv, int pass_recvbuf, const size_t *counts, const size_t *displs)
{
    memset(recv->data, VC_UNWRITTEN_FILL, recv->bytes);
    weft_result_t result = weft_allgatherv(sendbuf, sendcount, pass_recvbuf ? recv->data : NULL, counts, displs,
                                           WEFT_INT32, context->comm);
    int ok = vc_expect_invalid(context, label, result);
    ok = ok && vc_check_untouched(context, label, "receive buffer", recv->data, recv->bytes, VC_UNWRITTEN_FILL);
    ok = vc_check_guards(context, label, "receive buffer", recv) && ok;
    if (ok)
        context->tally.passed++;
}

/*
 * Invalid arguments that every rank passes alike, so each rank rejects them before any
 * communication. Every rank has 2 elements at displacement 2*rank; a correct call afterwards shows
 * that the communicator still works.
 */
static void run_invalid_arguments(vc_context_t *context)
{
    int n = context->nranks;
    vc_layout_t layout = {calloc(2 * (size_t)n, sizeof(size_t)), NULL, 2 * (size_t)n};
    ct_buffer_t send, recv;
    int32_t values[3] = {1, 2, 3};

    if (layout.counts == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate count tables\n");
        exit(2);
    }
    layout.displs = layout.counts + n;
    for (int r = 0; r < n; r++) {
        layout.counts[r] = 2;
        layout.displs[r] = 2 * (size_t)r;
    }
    ct_buffer_alloc(&send, sizeof values);
    memcpy(send.data, values, sizeof values);
    ct_buffer_alloc(&recv, layout.extent * sizeof(int32_t));

    expect_rejected(context, "allgatherv sendcount 3 != recvcounts[rank] 2", send.data, 3, &recv, 1, layout.counts,
                    layout.displs);
    expect_rejected(context, "allgatherv recvcounts NULL", send.data, 2, &recv, 1, NULL, layout.displs);
    expect_rejected(context, "allgatherv displs NULL", send.data, 2, &recv, 1, layout.counts, NULL);
    expect_rejected(context, "allgatherv recvbuf NULL with non-zero counts", send.data, 2, &recv, 0, layout.counts,
                    layout.displs);
    if (n >= 2) {
        /* Only the last two ranks' ranges overlap (by one element): the other ranks must see it too. */
        layout.displs[n - 1] = layout.displs[n - 2] + 1;
        expect_rejected(context, "allgatherv ranges of the last two ranks overlap", send.data, 2, &recv, 1,
                        layout.counts, layout.displs);
        layout.displs[n - 1] = 2 * (size_t)(n - 1);
    }
    ct_buffer_free(&send);
    ct_buffer_free(&recv);

    if (!context->tally.broken) {
        gather_case_t item = {WEFT_INT32, {0, 0, 0}, 0, 0};
        if (gather_and_check(context, "allgatherv counts all 2 after the rejected calls", &item, &layout,
                             context->next_seed++))
            context->tally.passed++;
    }
    vc_layout_free(&layout);
}

void vc_run_allgatherv(vc_context_t *context)
{
    size_t case_count = sizeof generic_cases / sizeof generic_cases[0];

    if (context->nranks == 4) {
        run_field_case(context, 0);
        if (!context->tally.broken)
            run_field_case(context, 1);
    }
    for (int round = 0; round < SMALL_ROUNDS; round++) {
        for (size_t c = 0; c < case_count && !context->tally.broken; c++) {
            if (!generic_cases[c].shape.large)
                run_generic(context, &generic_cases[c]);
        }
    }
    for (size_t c = 0; c < case_count && !context->tally.broken; c++) {
        if (generic_cases[c].shape.large)
            run_generic(context, &generic_cases[c]);
    }
    if (!context->tally.broken)
        run_all_counts_zero(context);
    if (!context->tally.broken)
        run_invalid_arguments(context);
}
