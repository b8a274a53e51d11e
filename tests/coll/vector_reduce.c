/*
 * weft_reduce cases: roots 0, nranks-1 and nranks/2; counts 0, 1, 7, 1000 and 300000 (ring path);
 * rotating datatypes and ops; in place at the root and out of place. Non-root ranks pass recvbuf
 * NULL in some cases and a filled, guarded buffer in others, which must stay untouched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_data.h"
#include "vector_collectives.h"

typedef struct {
    weft_datatype_t type;
    weft_op_t op;
    size_t count;
    int root;
    int in_place;             /* the root passes sendbuf == recvbuf */
    int null_recv_on_nonroot; /* non-root ranks pass recvbuf NULL instead of a guarded buffer */
    int half_ulp;             /* VC_PATTERN_HALF_ULP inputs (16-bit sums) instead of the hashed ones */
} reduce_case_t;

#define LARGE_COUNT 300000

static const size_t small_counts[] = {1, 7, 1000};
/* Datatype order for the small cases, so consecutive cases differ in element size and kind. */
static const weft_datatype_t rotation[CT_NUM_TYPES] = {
    WEFT_INT32, WEFT_FLOAT32, WEFT_BFLOAT16, WEFT_INT8, WEFT_FLOAT64,
    WEFT_UINT64, WEFT_FLOAT16, WEFT_UINT32, WEFT_INT64, WEFT_UINT8,
};
/* One large case per root: 16-bit sums rounded once and a truncating integer avg. */
static const reduce_case_t large_cases[] = {
    {WEFT_BFLOAT16, WEFT_SUM, LARGE_COUNT, 0, 1, 1, 0},
    {WEFT_INT32, WEFT_AVG, LARGE_COUNT, 0, 0, 0, 0},
    {WEFT_FLOAT16, WEFT_SUM, LARGE_COUNT, 0, 0, 1, 1},
};
/* 16-bit sums whose single rounding differs from rounding after every addition on 3 or more ranks. */
static const reduce_case_t half_ulp_cases[] = {
    {WEFT_FLOAT16, WEFT_SUM, 64, 0, 1, 0, 1},
    {WEFT_BFLOAT16, WEFT_SUM, 64, 0, 0, 1, 1},
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

static void describe(const reduce_case_t *item, char *label, size_t length)
{
    snprintf(label, length, "reduce %s %s%s count=%zu root=%d %s, non-root recvbuf %s", ct_type_name(item->type),
             ct_op_name(item->op), item->half_ulp ? " (half-ulp inputs, rounded once)" : "", item->count, item->root,
             item->in_place ? "in place" : "out of place", item->null_recv_on_nonroot ? "NULL" : "guarded");
}

/* Root side: the result in recvbuf, and an out-of-place sendbuf unchanged. */
static int check_root(vc_context_t *context, const char *label, const reduce_case_t *item, ct_buffer_t *send,
                      ct_buffer_t *recv, const unsigned char *inputs, uint64_t seed)
{
    unsigned char *expected = allocate_or_exit(item->count * ct_type_size(item->type));
    vc_fill_reduction(context, item->type, item->half_ulp ? VC_PATTERN_HALF_ULP : (int)item->op, seed, 0,
                      item->count, expected);
    int ok = vc_compare(context, label, item->in_place ? "root in-place buffer" : "root receive buffer", item->type,
                        recv->data, expected, item->count, NULL);
    if (!item->in_place) {
        ok = ok && vc_compare(context, label, "root send buffer (must stay unchanged)", item->type, send->data,
                              inputs, item->count, NULL);
    }
    free(expected);
    return ok;
}

/* Non-root side: sendbuf unchanged, and a guarded recvbuf still all filler. */
static int check_nonroot(vc_context_t *context, const char *label, const reduce_case_t *item, ct_buffer_t *send,
                         ct_buffer_t *recv, const unsigned char *inputs)
{
    int ok = vc_compare(context, label, "send buffer (must stay unchanged)", item->type, send->data, inputs,
                        item->count, NULL);
    if (recv->base != NULL) {
        ok = vc_check_untouched(context, label, "non-root receive buffer (must stay untouched)", recv->data,
                                recv->bytes, VC_UNWRITTEN_FILL) && ok;
    }
    return ok;
}

static void run_case(vc_context_t *context, const reduce_case_t *item)
{
    uint64_t seed = context->next_seed++;
    size_t bytes = item->count * ct_type_size(item->type);
    int is_root = context->rank == item->root;
    unsigned char *inputs = allocate_or_exit(bytes);
    ct_buffer_t send = {0}, recv = {0};
    char label[VC_LABEL_LENGTH];
    const void *sendbuf;

    describe(item, label, sizeof label);
    vc_fill_inputs(item->type, item->half_ulp ? VC_PATTERN_HALF_ULP : (int)item->op, seed, context->rank, 0,
                   item->count, inputs);
    if (is_root || !item->null_recv_on_nonroot) {
        ct_buffer_alloc(&recv, bytes);
        memset(recv.data, VC_UNWRITTEN_FILL, bytes);
    }
    if (is_root && item->in_place) {
        memcpy(recv.data, inputs, bytes);
        sendbuf = recv.data;
    } else {
        ct_buffer_alloc(&send, bytes);
        memcpy(send.data, inputs, bytes);
        sendbuf = send.data;
    }

    weft_result_t result = weft_reduce(sendbuf, recv.data, item->count, item->type, item->op, item->root,
                                       context->comm);
    int ok = ct_check_result(&context->tally, context->comm, result, label);
    if (ok && is_root)
        ok = check_root(context, label, item, &send, &recv, inputs, seed);
    else if (ok)
        ok = check_nonroot(context, label, item, &send, &recv, inputs);
    if (send.base != NULL) {
        ok = vc_check_guards(context, label, "send buffer", &send) && ok;
        ct_buffer_free(&send);
    }
    if (recv.base != NULL) {
        ok = vc_check_guards(context, label, "receive buffer", &recv) && ok;
        ct_buffer_free(&recv);
    }
    free(inputs);
    if (ok)
        context->tally.passed++;
}

/* Count 0 at this root: NULL buffers succeed, and real buffers stay untouched on every rank. */
static void run_count_zero(vc_context_t *context, int root)
{
    char null_label[96], label[96];
    ct_buffer_t send, recv;

    snprintf(null_label, sizeof null_label, "reduce int32 sum count=0 root=%d, NULL buffers", root);
    snprintf(label, sizeof label, "reduce int32 sum count=0 root=%d, real buffers", root);
    weft_result_t result = weft_reduce(NULL, NULL, 0, WEFT_INT32, WEFT_SUM, root, context->comm);
    if (ct_check_result(&context->tally, context->comm, result, null_label))
        context->tally.passed++;
    if (context->tally.broken)
        return;

    ct_buffer_alloc(&send, 16);
    ct_buffer_alloc(&recv, 16);
    memset(send.data, VC_UNWRITTEN_FILL, send.bytes);
    memset(recv.data, VC_UNWRITTEN_FILL, recv.bytes);
    result = weft_reduce(send.data, recv.data, 0, WEFT_INT32, WEFT_SUM, root, context->comm);
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

static void expect_rejected(vc_context_t *context, const char *label, const void *sendbuf, ct_buffer_t *recv,
                            weft_op_t op, int root)
{
    memset(recv->data, VC_UNWRITTEN_FILL, recv->bytes);
    weft_result_t result = weft_reduce(sendbuf, recv->data, 4, WEFT_INT32, op, root, context->comm);
    int ok = vc_expect_invalid(context, label, result);
    ok = ok && vc_check_untouched(context, label, "receive buffer", recv->data, recv->bytes, VC_UNWRITTEN_FILL);
    ok = vc_check_guards(context, label, "receive buffer", recv) && ok;
    if (ok)
        context->tally.passed++;
}

/* Invalid arguments that every rank passes alike, then a correct call on the same communicator. */
static void run_invalid_arguments(vc_context_t *context)
{
    int32_t values[4] = {1, 2, 3, 4};
    char label[96];
    ct_buffer_t recv;

    ct_buffer_alloc(&recv, sizeof values);
    snprintf(label, sizeof label, "reduce root %d (one past the last rank)", context->nranks);
    expect_rejected(context, label, values, &recv, WEFT_SUM, context->nranks);
    expect_rejected(context, "reduce root -1", values, &recv, WEFT_SUM, -1);
    expect_rejected(context, "reduce sendbuf NULL with count 4", NULL, &recv, WEFT_SUM, 0);
    expect_rejected(context, "reduce op 99", values, &recv, (weft_op_t)99, 0);
    ct_buffer_free(&recv);

    if (!context->tally.broken) {
        reduce_case_t item = {WEFT_INT32, WEFT_SUM, 4, context->nranks - 1, 0, 0, 0};
        run_case(context, &item);
    }
}

/* Roots 0, nranks-1 and nranks/2, without repeats; returns how many. */
static int pick_roots(int nranks, int *roots)
{
    int candidates[3] = {0, nranks - 1, nranks / 2}, count = 0;
    for (int c = 0; c < 3; c++) {
        int seen = 0;
        for (int k = 0; k < count; k++)
            seen |= roots[k] == candidates[c];
        if (!seen)
            roots[count++] = candidates[c];
    }
    return count;
}

void vc_run_reduce(vc_context_t *context)
{
    int roots[3];
    int root_count = pick_roots(context->nranks, roots);
    unsigned step = 0;

    for (int k = 0; k < root_count && !context->tally.broken; k++) {
        run_count_zero(context, roots[k]);
        for (size_t c = 0; c < sizeof small_counts / sizeof small_counts[0]; c++) {
            /* Two cases per root and count: one in place at the root, one out of place. The op
             * advances every case and the datatype every other case, so pairs cover all ops. */
            for (int variant = 0; variant < 2 && !context->tally.broken; variant++, step++) {
                reduce_case_t item = {rotation[(step / 2 + step) % CT_NUM_TYPES], (weft_op_t)(step % CT_NUM_OPS),
                                      small_counts[c], roots[k], variant, (int)(step / 2) % 2, 0};
                run_case(context, &item);
            }
        }
        if (!context->tally.broken) {
            reduce_case_t item = large_cases[k];
            item.root = roots[k];
            run_case(context, &item);
        }
        for (size_t c = 0; c < sizeof half_ulp_cases / sizeof half_ulp_cases[0] && !context->tally.broken; c++) {
            reduce_case_t item = half_ulp_cases[c];
            item.root = roots[k];
            run_case(context, &item);
        }
    }
    if (!context->tally.broken)
        run_invalid_arguments(context);
}
