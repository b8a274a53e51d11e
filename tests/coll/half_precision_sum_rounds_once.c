/*
 * float16 and bfloat16 sums are reduced in float32 and rounded once, to nearest even, at the end
 * (the default WEFT_REDUCE_PRECISION). The inputs add several half-ulp steps to a value: rounding
 * after every addition would drop each step and leave the value unchanged, while a single
 * rounding of the exact sum keeps them. With p significand bits (11 for float16, 8 for bfloat16):
 *   element 0: rank 0 adds 2^p, every other rank 1      -> round(2^p + n - 1)
 *   element 1: every rank adds 1                         -> n
 *   element 2: rank 0 adds 1, every other rank 2^-p      -> round(1 + (n - 1) 2^-p)
 *   element 3: the negation of element 0                 -> -round(2^p + n - 1)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coll_util.h"

#define ELEMENTS 4
#define MAX_RANKS 64

static double input_value(weft_datatype_t type, int rank, size_t i)
{
    int p = type == WEFT_FLOAT16 ? 11 : 8;
    switch (i) {
    case 0: return rank == 0 ? ldexp(1.0, p) : 1.0;
    case 1: return 1.0;
    case 2: return rank == 0 ? 1.0 : ldexp(1.0, -p);
    default: return rank == 0 ? -ldexp(1.0, p) : -1.0;
    }
}

/* Exact sum, rounded once to the type. The sum has at most 20 significant bits, so float32 is exact. */
static void fill_expected(weft_datatype_t type, int nranks, unsigned char *expected)
{
    for (size_t i = 0; i < ELEMENTS; i++) {
        double sum = 0.0;
        for (int r = 0; r < nranks; r++)
            sum += input_value(type, r, i);
        ct_store_float(type, (float)sum, expected + i * 2);
    }
}

static void check_allreduce(ct_tally_t *tally, weft_comm_t comm, weft_datatype_t type)
{
    unsigned char buffer[ELEMENTS * 2], expected[ELEMENTS * 2];
    const char *label = "allreduce sum rounded once";

    for (size_t i = 0; i < ELEMENTS; i++)
        ct_store_float(type, input_value(type, tally->rank, i), buffer + i * 2);
    fill_expected(type, tally->nranks, expected);
    weft_result_t result = weft_allreduce(buffer, buffer, ELEMENTS, type, WEFT_SUM, comm);
    if (ct_check_result(tally, comm, result, label) && ct_compare_elements(tally, label, type, buffer, expected, ELEMENTS))
        tally->passed++;
}

static void check_reduce_scatter(ct_tally_t *tally, weft_comm_t comm, weft_datatype_t type)
{
    unsigned char send[MAX_RANKS * ELEMENTS * 2], recv[ELEMENTS * 2], expected[ELEMENTS * 2];
    const char *label = "reduce_scatter sum rounded once";

    for (int block = 0; block < tally->nranks; block++) {
        for (size_t i = 0; i < ELEMENTS; i++)
            ct_store_float(type, input_value(type, tally->rank, i), send + ((size_t)block * ELEMENTS + i) * 2);
    }
    fill_expected(type, tally->nranks, expected);
    weft_result_t result = weft_reduce_scatter(send, recv, ELEMENTS, type, WEFT_SUM, comm);
    if (ct_check_result(tally, comm, result, label) && ct_compare_elements(tally, label, type, recv, expected, ELEMENTS))
        tally->passed++;
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;
    const char *precision = getenv("WEFT_REDUCE_PRECISION");

    ct_start("half_precision_sum_rounds_once", &comm, &tally);
    if (tally.nranks > MAX_RANKS) {
        printf("half_precision_sum_rounds_once: written for at most %d ranks, got %d\n", MAX_RANKS, tally.nranks);
        return 2;
    }
    if (precision != NULL && strcasecmp(precision, "native") == 0) {
        if (tally.rank == 0)
            printf("half_precision_sum_rounds_once: WEFT_REDUCE_PRECISION=native rounds on the way by design; "
                   "unset it to run this test\n");
        return ct_finish(&tally, comm);
    }
    static const weft_datatype_t types[] = {WEFT_FLOAT16, WEFT_BFLOAT16};
    for (int t = 0; t < 2 && !tally.broken; t++) {
        check_allreduce(&tally, comm, types[t]);
        if (!tally.broken)
            check_reduce_scatter(&tally, comm, types[t]);
    }
    return ct_finish(&tally, comm);
}
