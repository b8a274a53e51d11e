/*
 * A NaN from any rank makes the result NaN through sum, min and max, for every float type, in
 * all-reduce and reduce-scatter. Element k carries a NaN from rank k % n only; the other
 * elements hold small integers and must come out exact. min and max are the ops that lose NaN
 * when written as `a < b ? a : b` or with fmin/fmax, which return the non-NaN argument.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coll_util.h"

#define ELEMENTS_PER_BLOCK 8
#define MAX_RANKS 64

static const weft_datatype_t float_types[] = {WEFT_FLOAT16, WEFT_BFLOAT16, WEFT_FLOAT32, WEFT_FLOAT64};
static const weft_op_t nan_ops[] = {WEFT_SUM, WEFT_MIN, WEFT_MAX};

/* Element i of block b on rank r: NaN when i comes from this rank, else the integer i - r + b. */
static double input_value(int rank, int nranks, size_t block, size_t i)
{
    if ((int)(i % (size_t)nranks) == rank)
        return NAN;
    return (double)i - rank + (double)block;
}

static double expected_value(int nranks, weft_op_t op, size_t block, size_t i)
{
    double result = 0.0;
    for (int r = 0; r < nranks; r++) {
        double value = input_value(r, nranks, block, i);
        if (isnan(value))
            return NAN;
        if (op == WEFT_SUM)
            result += value;
        else if (r == 0 || (op == WEFT_MIN ? value < result : value > result))
            result = value;
    }
    return result;
}

/* Compare NaN by class (any NaN passes), everything else bit for bit. Returns 1 when all match. */
static int check_values(ct_tally_t *tally, const char *label, weft_datatype_t type, const unsigned char *got,
                        size_t block, weft_op_t op)
{
    size_t size = ct_type_size(type);
    for (size_t i = 0; i < ELEMENTS_PER_BLOCK; i++) {
        unsigned char expected[8];
        double want = expected_value(tally->nranks, op, block, i);
        double have = ct_load_float(type, got + i * size);
        ct_store_float(type, want, expected);
        int match = isnan(want) ? isnan(have) : memcmp(expected, got + i * size, size) == 0;
        if (!match) {
            ct_fail(tally, "%s %s: index %zu: expected %.17g, got %.17g", label, ct_type_name(type), i, want, have);
            return 0;
        }
    }
    return 1;
}

static void check_allreduce(ct_tally_t *tally, weft_comm_t comm, weft_datatype_t type, weft_op_t op)
{
    unsigned char buffer[ELEMENTS_PER_BLOCK * 8];
    char label[64];
    size_t size = ct_type_size(type);

    snprintf(label, sizeof label, "allreduce %s with a NaN from one rank", ct_op_name(op));
    for (size_t i = 0; i < ELEMENTS_PER_BLOCK; i++)
        ct_store_float(type, input_value(tally->rank, tally->nranks, 0, i), buffer + i * size);
    weft_result_t result = weft_allreduce(buffer, buffer, ELEMENTS_PER_BLOCK, type, op, comm);
    if (ct_check_result(tally, comm, result, label) && check_values(tally, label, type, buffer, 0, op))
        tally->passed++;
}

static void check_reduce_scatter(ct_tally_t *tally, weft_comm_t comm, weft_datatype_t type, weft_op_t op)
{
    static unsigned char send[MAX_RANKS * ELEMENTS_PER_BLOCK * 8];
    unsigned char recv[ELEMENTS_PER_BLOCK * 8];
    char label[64];
    size_t size = ct_type_size(type);

    snprintf(label, sizeof label, "reduce_scatter %s with a NaN from one rank", ct_op_name(op));
    for (size_t block = 0; block < (size_t)tally->nranks; block++) {
        for (size_t i = 0; i < ELEMENTS_PER_BLOCK; i++) {
            double value = input_value(tally->rank, tally->nranks, block, i);
            ct_store_float(type, value, send + (block * ELEMENTS_PER_BLOCK + i) * size);
        }
    }
    weft_result_t result = weft_reduce_scatter(send, recv, ELEMENTS_PER_BLOCK, type, op, comm);
    if (ct_check_result(tally, comm, result, label) &&
        check_values(tally, label, type, recv, (size_t)tally->rank, op))
        tally->passed++;
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;

    ct_start("nan_propagates_through_reductions", &comm, &tally);
    if (tally.nranks > MAX_RANKS) {
        printf("nan_propagates_through_reductions: written for at most %d ranks, got %d\n", MAX_RANKS, tally.nranks);
        return 2;
    }
    for (size_t t = 0; t < sizeof float_types / sizeof float_types[0]; t++) {
        for (size_t o = 0; o < sizeof nan_ops / sizeof nan_ops[0] && !tally.broken; o++) {
            check_allreduce(&tally, comm, float_types[t], nan_ops[o]);
            if (!tally.broken)
                check_reduce_scatter(&tally, comm, float_types[t], nan_ops[o]);
        }
    }
    return ct_finish(&tally, comm);
}
