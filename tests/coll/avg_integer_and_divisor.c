/*
 * WEFT_AVG divides by the number of ranks, truncates integers toward zero and never overflows
 * the element type on the way. Written for 4 ranks, where the expected values are the ones in
 * the comments, but the references are computed for any rank count n:
 *   A: float32 all-reduce, rank r element i = i + 1 + r, counts 5, 1 and 4: (i + 1) + (n - 1)/2.
 *   B: int32 all-reduce of [r, -r, 10r + 1, 7]: [1, -1, 16, 7] for n = 4.
 *   C: uint8 all-reduce of 200 everywhere: 200, although the sum 200n does not fit in 8 bits.
 *      The same goes for int32, int64 and uint64 values next to their limits.
 *   D: int64 reduce-scatter, 2 elements per rank, element i = 3i + r: 3(2k + j) + 1 on rank k.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coll_util.h"

#define MAX_COUNT 8

typedef struct {
    ct_tally_t *tally;
    weft_comm_t comm;
} session_t;

/* Run one all-reduce avg in place on `values` and compare with `expected`. */
static void check_allreduce_avg(session_t *session, const char *label, weft_datatype_t type, void *values,
                                const void *expected, size_t count)
{
    weft_result_t result = weft_allreduce(values, values, count, type, WEFT_AVG, session->comm);
    if (ct_check_result(session->tally, session->comm, result, label) &&
        ct_compare_elements(session->tally, label, type, values, expected, count))
        session->tally->passed++;
}

static void part_a_float_divisor(session_t *session, int rank, int nranks)
{
    static const size_t counts[] = {5, 1, 4};
    for (size_t c = 0; c < 3 && !session->tally->broken; c++) {
        float values[MAX_COUNT], expected[MAX_COUNT];
        char label[64];
        for (size_t i = 0; i < counts[c]; i++) {
            values[i] = (float)(i + 1 + (size_t)rank);
            /* The sum n(i + 1) + n(n - 1)/2 is an exact float32 integer; one division rounds. */
            float sum = (float)((double)nranks * (double)(i + 1) + nranks * (nranks - 1) / 2.0);
            expected[i] = sum / (float)nranks;
        }
        snprintf(label, sizeof label, "part A: allreduce avg count=%zu", counts[c]);
        check_allreduce_avg(session, label, WEFT_FLOAT32, values, expected, counts[c]);
    }
}

static void part_b_int32_truncation(session_t *session, int rank, int nranks)
{
    int32_t values[4] = {rank, -rank, 10 * rank + 1, 7};
    int32_t expected[4];
    int64_t sums[4] = {0, 0, 0, 0};
    for (int r = 0; r < nranks; r++) {
        sums[0] += r;
        sums[1] -= r;
        sums[2] += 10 * r + 1;
        sums[3] += 7;
    }
    for (int i = 0; i < 4; i++)
        expected[i] = (int32_t)(sums[i] / nranks); /* C division truncates toward zero */
    if (!session->tally->broken)
        check_allreduce_avg(session, "part B: allreduce avg [r, -r, 10r+1, 7]", WEFT_INT32, values, expected, 4);
}

/* Values whose sum over the ranks does not fit the element type: 200 in uint8, and values within
 * n of the limits of int32, int64 and uint64. Expected: the mathematical mean, truncated. */
static void part_c_no_overflow(session_t *session, int rank, int nranks)
{
    uint8_t bytes[3] = {200, 200, 200}, bytes_expected[3] = {200, 200, 200};
    int32_t words[2] = {INT32_MAX - rank, INT32_MIN + rank}, words_expected[2];
    int64_t longs[2] = {INT64_MAX - rank, INT64_MIN + rank}, longs_expected[2];
    uint64_t ulongs[1] = {UINT64_MAX - (uint64_t)rank}, ulongs_expected[1];
    __int128 long_sums[2] = {0, 0};
    unsigned __int128 ulong_sum = 0;
    int64_t word_sums[2] = {0, 0};

    for (int r = 0; r < nranks; r++) {
        word_sums[0] += INT32_MAX - r;
        word_sums[1] += (int64_t)INT32_MIN + r;
        long_sums[0] += INT64_MAX - r;
        long_sums[1] += (__int128)INT64_MIN + r;
        ulong_sum += UINT64_MAX - (uint64_t)r;
    }
    for (int i = 0; i < 2; i++) {
        words_expected[i] = (int32_t)(word_sums[i] / nranks);
        longs_expected[i] = (int64_t)(long_sums[i] / nranks);
    }
    ulongs_expected[0] = (uint64_t)(ulong_sum / (unsigned)nranks);

    if (!session->tally->broken)
        check_allreduce_avg(session, "part C: allreduce avg of 200", WEFT_UINT8, bytes, bytes_expected, 3);
    if (!session->tally->broken)
        check_allreduce_avg(session, "part C: allreduce avg near the limits", WEFT_INT32, words, words_expected, 2);
    if (!session->tally->broken)
        check_allreduce_avg(session, "part C: allreduce avg near the limits", WEFT_INT64, longs, longs_expected, 2);
    if (!session->tally->broken)
        check_allreduce_avg(session, "part C: allreduce avg near the limits", WEFT_UINT64, ulongs, ulongs_expected, 1);
}

static void part_d_reduce_scatter(session_t *session, int rank, int nranks)
{
    int64_t send[2 * 64], recv[2] = {-1, -1}, expected[2];
    const char *label = "part D: reduce_scatter avg recvcount=2";

    if (nranks > 64 || session->tally->broken)
        return;
    for (int i = 0; i < 2 * nranks; i++)
        send[i] = 3 * i + rank;
    for (int j = 0; j < 2; j++) {
        int64_t sum = 0;
        for (int r = 0; r < nranks; r++)
            sum += 3 * (2 * rank + j) + r;
        expected[j] = sum / nranks;
    }
    weft_result_t result = weft_reduce_scatter(send, recv, 2, WEFT_INT64, WEFT_AVG, session->comm);
    if (ct_check_result(session->tally, session->comm, result, label) &&
        ct_compare_elements(session->tally, label, WEFT_INT64, recv, expected, 2))
        session->tally->passed++;
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;

    ct_start("avg_integer_and_divisor", &comm, &tally);
    session_t session = {&tally, comm};
    part_a_float_divisor(&session, tally.rank, tally.nranks);
    part_b_int32_truncation(&session, tally.rank, tally.nranks);
    part_c_no_overflow(&session, tally.rank, tally.nranks);
    part_d_reduce_scatter(&session, tally.rank, tally.nranks);
    return ct_finish(&tally, comm);
}
