/*
 * Element counts and byte offsets past 2^31. A uint8 all-reduce sums 2^31 + 11 elements in place,
 * and a uint8 all-gather moves 2^30 + 5 elements per rank, so with 3 ranks the last block starts
 * past byte 2^31. Needs about 2.2 GB per rank for the all-reduce and 3.3 GB per
 * rank for the all-gather. Inputs are formulas of (rank, index); every index is checked. With the
 * argument "nonblocking", both go through weft_iallreduce / weft_iallgather and weft_wait.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define ALLREDUCE_COUNT ((size_t)1 << 31) + 11
#define ALLGATHER_COUNT ((size_t)1 << 30) + 5

static int nonblocking; /* use the i-forms and weft_wait */

static weft_result_t allreduce_u8(uint8_t *buffer, size_t count, weft_comm_t comm)
{
    if (!nonblocking)
        return weft_allreduce(buffer, buffer, count, WEFT_UINT8, WEFT_SUM, comm);
    weft_request_t request;
    weft_result_t result = weft_iallreduce(buffer, buffer, count, WEFT_UINT8, WEFT_SUM, comm, &request);
    return result == WEFT_SUCCESS ? weft_wait(request) : result;
}

static weft_result_t allgather_u8(const uint8_t *own, uint8_t *buffer, size_t count, weft_comm_t comm)
{
    if (!nonblocking)
        return weft_allgather(own, buffer, count, WEFT_UINT8, comm);
    weft_request_t request;
    weft_result_t result = weft_iallgather(own, buffer, count, WEFT_UINT8, comm, &request);
    return result == WEFT_SUCCESS ? weft_wait(request) : result;
}

static uint8_t reduce_input(int rank, size_t i)
{
    return (uint8_t)((i % 251) + 3u * (unsigned)rank);
}

static uint8_t gather_input(int rank, size_t i)
{
    return (uint8_t)((rank * 31u + i) % 251);
}

/* Report the first wrong index of a long buffer without building a second buffer of references. */
static void report_first_mismatch(ct_tally_t *tally, const char *label, size_t index, unsigned expected,
                                  unsigned got, size_t wrong)
{
    ct_fail(tally, "%s: %zu elements wrong; first at index %zu: expected %u, got %u", label, wrong, index, expected,
            got);
}

static void check_allreduce(ct_tally_t *tally, weft_comm_t comm)
{
    size_t count = ALLREDUCE_COUNT;
    uint8_t *buffer = malloc(count);
    if (buffer == NULL) {
        ct_fail(tally, "allreduce: cannot allocate %zu bytes", count);
        return;
    }
    for (size_t i = 0; i < count; i++)
        buffer[i] = reduce_input(tally->rank, i);
    if (!ct_check_result(tally, comm, allreduce_u8(buffer, count, comm),
                         "allreduce uint8 sum of 2^31+11 elements")) {
        free(buffer);
        return;
    }

    size_t wrong = 0, first = 0;
    unsigned first_expected = 0;
    for (size_t i = 0; i < count; i++) {
        unsigned expected = 0;
        for (int r = 0; r < tally->nranks; r++)
            expected += reduce_input(r, i);
        expected &= 0xffu; /* uint8 sum wraps modulo 256 */
        if (buffer[i] != expected && wrong++ == 0) {
            first = i;
            first_expected = expected;
        }
    }
    if (wrong > 0)
        report_first_mismatch(tally, "allreduce uint8 sum of 2^31+11 elements", first, first_expected, buffer[first],
                              wrong);
    else
        tally->passed++;
    free(buffer);
}

static void check_allgather(ct_tally_t *tally, weft_comm_t comm)
{
    size_t count = ALLGATHER_COUNT, total = count * (size_t)tally->nranks;
    uint8_t *buffer = malloc(total);
    if (buffer == NULL) {
        ct_fail(tally, "allgather: cannot allocate %zu bytes", total);
        return;
    }
    uint8_t *own = buffer + count * (size_t)tally->rank;
    for (size_t i = 0; i < count; i++)
        own[i] = gather_input(tally->rank, i);
    if (!ct_check_result(tally, comm, allgather_u8(own, buffer, count, comm),
                         "allgather uint8 of 2^30+5 elements per rank, in place")) {
        free(buffer);
        return;
    }

    size_t wrong = 0, first = 0;
    unsigned first_expected = 0;
    for (int r = 0; r < tally->nranks; r++) {
        const uint8_t *block = buffer + count * (size_t)r;
        for (size_t i = 0; i < count; i++) {
            unsigned expected = gather_input(r, i);
            if (block[i] != expected && wrong++ == 0) {
                first = count * (size_t)r + i;
                first_expected = expected;
            }
        }
    }
    if (wrong > 0)
        report_first_mismatch(tally, "allgather uint8 of 2^30+5 elements per rank", first, first_expected,
                              buffer[first], wrong);
    else
        tally->passed++;
    free(buffer);
}

int main(int argc, char **argv)
{
    nonblocking = argc > 1 && strcmp(argv[1], "nonblocking") == 0;
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("count_above_2g", &comm, &tally);
    check_allreduce(&tally, comm);
    if (!tally.broken)
        check_allgather(&tally, comm);
    return ct_finish(&tally, comm);
}
