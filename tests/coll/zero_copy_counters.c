/*
 * Large collectives move their payload by RDMA write, with no copy through an intermediate
 * buffer, exactly as often as the ring and chain algorithms need. The test reads the transfer
 * counters of weft_comm_get_stats around one call of each kind and compares the differences with
 * byte counts computed here from the algorithm's definition:
 * - all-gather in place, n ranks, block B: each rank writes the n - 1 blocks other than the one
 *   its right neighbour owns, so (n - 1) * B bytes, and copies nothing;
 * - all-reduce float32 of S bytes split into blocks b_0..b_{n-1}: the reduce-scatter writes every
 *   block but the rank's own, the all-gather every block but the right neighbour's, so
 *   2S - b_r - b_{r+1} bytes, with no staged copy;
 * - broadcast of S bytes: every rank but the last of the chain writes S bytes;
 * - all-reduce bfloat16: only ring step 0 stages. It sends the rank's own raw block r - 1, converted
 *   to float32 partials in a staging slot, and every later step reduces into the receiving slot.
 * Results are checked too, so a counter cannot pass on a wrong result.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define ALLGATHER_BLOCK (4u << 20)       /* bytes per rank, far above the eager limit */
#define ALLREDUCE_COUNT ((6u << 20) + 5) /* float32 elements, not divisible by most rank counts */
#define BROADCAST_BYTES ((8u << 20) + 3)

static weft_stats_t read_stats(ct_tally_t *tally, weft_comm_t comm)
{
    weft_stats_t stats;
    memset(&stats, 0, sizeof(stats));
    ct_check_result(tally, comm, weft_comm_get_stats(comm, &stats), "weft_comm_get_stats");
    return stats;
}

static void expect_counter(ct_tally_t *tally, const char *label, const char *counter, uint64_t got,
                           uint64_t expected)
{
    if (got != expected)
        ct_fail(tally, "%s: %s grew by %llu bytes, expected %llu", label, counter, (unsigned long long)got,
                (unsigned long long)expected);
    else
        tally->passed++;
}

/* Elements of block b when count elements are split over n ranks, the first count % n blocks longer. */
static size_t block_count(size_t count, int n, int b)
{
    return count / (size_t)n + ((size_t)b < count % (size_t)n ? 1 : 0);
}

static void check_allgather(ct_tally_t *tally, weft_comm_t comm)
{
    const char *label = "allgather in place of 4 MiB per rank";
    int n = tally->nranks, rank = tally->rank;
    uint8_t *buffer = malloc((size_t)ALLGATHER_BLOCK * (size_t)n);
    for (size_t i = 0; i < ALLGATHER_BLOCK; i++)
        buffer[(size_t)rank * ALLGATHER_BLOCK + i] = (uint8_t)(i * 7 + (size_t)rank);

    weft_stats_t before = read_stats(tally, comm);
    int ok = ct_check_result(tally, comm, weft_allgather(buffer + (size_t)rank * ALLGATHER_BLOCK, buffer,
                                                         ALLGATHER_BLOCK, WEFT_UINT8, comm), label);
    weft_stats_t after = read_stats(tally, comm);
    if (ok) {
        size_t wrong = 0;
        for (int r = 0; r < n; r++)
            for (size_t i = 0; i < ALLGATHER_BLOCK; i++)
                wrong += buffer[(size_t)r * ALLGATHER_BLOCK + i] != (uint8_t)(i * 7 + (size_t)r);
        if (wrong > 0)
            ct_fail(tally, "%s: %zu bytes wrong", label, wrong);
        expect_counter(tally, label, "rdma_write_bytes", after.rdma_write_bytes - before.rdma_write_bytes,
                       (uint64_t)(n - 1) * ALLGATHER_BLOCK);
        expect_counter(tally, label, "staged_copy_bytes", after.staged_copy_bytes - before.staged_copy_bytes, 0);
        expect_counter(tally, label, "local_copy_bytes", after.local_copy_bytes - before.local_copy_bytes, 0);
    }
    free(buffer);
}

static void check_allreduce(ct_tally_t *tally, weft_comm_t comm, weft_datatype_t type)
{
    int n = tally->nranks, rank = tally->rank;
    size_t element = type == WEFT_FLOAT32 ? 4 : 2;
    const char *label = type == WEFT_FLOAT32 ? "allreduce float32 of 24 MiB" : "allreduce bfloat16 of 12 MiB";
    void *data = malloc(ALLREDUCE_COUNT * element);
    for (size_t i = 0; i < ALLREDUCE_COUNT; i++) {
        float value = (float)((i + (size_t)rank) % 16);
        if (type == WEFT_FLOAT32)
            ((float *)data)[i] = value;
        else
            ((uint16_t *)data)[i] = ct_float_to_bfloat(value);
    }

    weft_stats_t before = read_stats(tally, comm);
    int ok = ct_check_result(tally, comm, weft_allreduce(data, data, ALLREDUCE_COUNT, type, WEFT_SUM, comm), label);
    weft_stats_t after = read_stats(tally, comm);
    if (ok) {
        size_t wrong = 0;
        for (size_t i = 0; i < ALLREDUCE_COUNT; i++) {
            float expected = 0;
            for (int r = 0; r < n; r++)
                expected += (float)((i + (size_t)r) % 16);
            float got = type == WEFT_FLOAT32 ? ((float *)data)[i] : ct_bfloat_to_float(((uint16_t *)data)[i]);
            wrong += got != expected;
        }
        if (wrong > 0)
            ct_fail(tally, "%s: %zu elements wrong", label, wrong);

        size_t own = block_count(ALLREDUCE_COUNT, n, rank), right = block_count(ALLREDUCE_COUNT, n, (rank + 1) % n);
        /* Reduce-scatter partials are float32 whatever the type; the all-gather moves user elements. */
        uint64_t scatter_bytes = (uint64_t)(ALLREDUCE_COUNT - own) * 4;
        uint64_t gather_bytes = (uint64_t)(ALLREDUCE_COUNT - right) * element;
        expect_counter(tally, label, "rdma_write_bytes", after.rdma_write_bytes - before.rdma_write_bytes,
                       scatter_bytes + gather_bytes);
        /* Only bfloat16 stages: block r - 1 in step 0, counted in user bytes. */
        size_t first_sent = block_count(ALLREDUCE_COUNT, n, (rank + n - 1) % n);
        expect_counter(tally, label, "staged_copy_bytes", after.staged_copy_bytes - before.staged_copy_bytes,
                       type == WEFT_FLOAT32 ? 0 : (uint64_t)first_sent * element);
    }
    free(data);
}

static void check_broadcast(ct_tally_t *tally, weft_comm_t comm)
{
    const char *label = "broadcast of 8 MiB + 3 bytes from rank 1";
    int n = tally->nranks, rank = tally->rank, root = 1 % n;
    uint8_t *buffer = malloc(BROADCAST_BYTES);
    for (size_t i = 0; i < BROADCAST_BYTES; i++)
        buffer[i] = rank == root ? (uint8_t)(i * 13 + 5) : 0;

    weft_stats_t before = read_stats(tally, comm);
    int ok = ct_check_result(tally, comm, weft_broadcast(buffer, BROADCAST_BYTES, WEFT_UINT8, root, comm), label);
    weft_stats_t after = read_stats(tally, comm);
    if (ok) {
        size_t wrong = 0;
        for (size_t i = 0; i < BROADCAST_BYTES; i++)
            wrong += buffer[i] != (uint8_t)(i * 13 + 5);
        if (wrong > 0)
            ct_fail(tally, "%s: %zu bytes wrong", label, wrong);
        int last_in_chain = rank == (root + n - 1) % n;
        expect_counter(tally, label, "rdma_write_bytes", after.rdma_write_bytes - before.rdma_write_bytes,
                       last_in_chain ? 0 : BROADCAST_BYTES);
        expect_counter(tally, label, "staged_copy_bytes", after.staged_copy_bytes - before.staged_copy_bytes, 0);
    }
    free(buffer);
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("zero_copy_counters", &comm, &tally);
    if (tally.nranks < 2) {
        ct_fail(&tally, "needs at least 2 ranks, got %d", tally.nranks);
        return ct_finish(&tally, comm);
    }
    check_allgather(&tally, comm);
    if (!tally.broken)
        check_allreduce(&tally, comm, WEFT_FLOAT32);
    if (!tally.broken)
        check_allreduce(&tally, comm, WEFT_BFLOAT16);
    if (!tally.broken)
        check_broadcast(&tally, comm);
    return ct_finish(&tally, comm);
}
