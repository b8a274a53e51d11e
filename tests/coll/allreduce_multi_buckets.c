/*
 * weft_allreduce_multi over gradient-like buckets: many buffers of mixed sizes (empty, a few
 * elements, kilobytes, and above the 1 MiB packing threshold). Each element is checked against a
 * reference computed here, for float32 sum, int32 avg (truncated toward zero) and bfloat16 sum
 * (float32 sum rounded once). Invalid calls (negative nbufs, a NULL buffer with elements,
 * overlapping buffers) must fail with WEFT_ERR_INVALID_ARGUMENT and leave the communicator usable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define NBUFS 64

/* Element counts: a fixed mix, so every rank passes the same list. */
static size_t bucket_count(int i)
{
    static const size_t pattern[] = {0, 1, 7, 1000, 4096, 33, 300000, 65536, 5, 2};
    return pattern[i % 10] + (size_t)(i / 10);
}

static int32_t input_int(int rank, int bucket, size_t i)
{
    return (int32_t)((i * 7 + (size_t)bucket * 3 + (size_t)rank * 11) % 23) - 11;
}

static void check_type(ct_tally_t *tally, weft_comm_t comm, weft_datatype_t type, weft_op_t op, const char *label)
{
    int n = tally->nranks, rank = tally->rank;
    size_t size = ct_type_size(type);
    void *bufs[NBUFS];
    size_t counts[NBUFS];
    for (int b = 0; b < NBUFS; b++) {
        counts[b] = bucket_count(b);
        bufs[b] = malloc(counts[b] * size + 1);
        for (size_t i = 0; i < counts[b]; i++) {
            int32_t v = input_int(rank, b, i);
            if (type == WEFT_INT32)
                ((int32_t *)bufs[b])[i] = v;
            else if (type == WEFT_FLOAT32)
                ((float *)bufs[b])[i] = (float)v;
            else
                ((uint16_t *)bufs[b])[i] = ct_float_to_bfloat((float)v);
        }
    }

    if (ct_check_result(tally, comm, weft_allreduce_multi(bufs, counts, NBUFS, type, op, comm), label)) {
        size_t wrong = 0;
        for (int b = 0; b < NBUFS; b++) {
            for (size_t i = 0; i < counts[b]; i++) {
                int64_t sum = 0;
                for (int r = 0; r < n; r++)
                    sum += input_int(r, b, i);
                int ok;
                if (type == WEFT_INT32)
                    ok = ((int32_t *)bufs[b])[i] == (int32_t)(op == WEFT_AVG ? sum / n : sum);
                else if (type == WEFT_FLOAT32)
                    ok = ((float *)bufs[b])[i] == (float)sum;
                else
                    ok = ((uint16_t *)bufs[b])[i] == ct_float_to_bfloat((float)sum);
                if (!ok && wrong++ == 0)
                    ct_fail(tally, "%s: bucket %d element %zu is wrong (sum of inputs %lld)", label, b, i,
                            (long long)sum);
            }
        }
        if (wrong == 0)
            tally->passed++;
        else
            ct_fail(tally, "%s: %zu elements wrong", label, wrong);
    }
    for (int b = 0; b < NBUFS; b++)
        free(bufs[b]);
}

static void check_invalid(ct_tally_t *tally, weft_comm_t comm)
{
    float storage[16] = {0};
    void *bufs[2] = {storage, storage + 4};
    size_t overlapping[2] = {8, 8};
    void *null_bufs[2] = {storage, NULL};
    size_t counts[2] = {4, 4};
    struct {
        const char *label;
        weft_result_t got;
    } cases[] = {
        {"negative nbufs", weft_allreduce_multi(bufs, counts, -1, WEFT_FLOAT32, WEFT_SUM, comm)},
        {"overlapping buffers", weft_allreduce_multi(bufs, overlapping, 2, WEFT_FLOAT32, WEFT_SUM, comm)},
        {"NULL buffer with elements", weft_allreduce_multi(null_bufs, counts, 2, WEFT_FLOAT32, WEFT_SUM, comm)},
        {"NULL counts", weft_allreduce_multi(bufs, NULL, 2, WEFT_FLOAT32, WEFT_SUM, comm)},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        if (cases[c].got != WEFT_ERR_INVALID_ARGUMENT)
            ct_fail(tally, "%s: returned %s, expected invalid argument", cases[c].label,
                    weft_result_string(cases[c].got));
        else
            tally->passed++;
    }
    /* Still usable: a valid call afterwards. */
    storage[0] = 1.0f;
    size_t one = 1;
    void *first[1] = {storage};
    if (ct_check_result(tally, comm, weft_allreduce_multi(first, &one, 1, WEFT_FLOAT32, WEFT_SUM, comm),
                        "valid call after invalid ones")) {
        if (storage[0] != (float)tally->nranks)
            ct_fail(tally, "valid call after invalid ones: got %g, expected %d", storage[0], tally->nranks);
        else
            tally->passed++;
    }
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("allreduce_multi_buckets", &comm, &tally);
    check_type(&tally, comm, WEFT_FLOAT32, WEFT_SUM, "float32 sum over 64 buckets");
    if (!tally.broken)
        check_type(&tally, comm, WEFT_INT32, WEFT_AVG, "int32 avg over 64 buckets");
    if (!tally.broken)
        check_type(&tally, comm, WEFT_BFLOAT16, WEFT_SUM, "bfloat16 sum over 64 buckets");
    if (!tally.broken)
        check_invalid(&tally, comm);
    return ct_finish(&tally, comm);
}
