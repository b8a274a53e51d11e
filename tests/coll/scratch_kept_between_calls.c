/*
 * Scratch memory is kept between calls up to WEFT_SCRATCH_KEEP: repeating a call that needs large
 * scratch registers no new memory, and only above the limit does every call register its own.
 *
 * The test runs the same all-gather several times (the launcher forces Bruck, whose scratch is the
 * whole output, or the hierarchical algorithm, which packs the output) and reads the registration
 * counters of weft_comm_get_stats. The user buffers are the same every time, so after the first
 * call the cache finds them. Misses after the first call therefore count scratch registrations:
 * none when kept (the default), at least one per call with --per-call (WEFT_SCRATCH_KEEP=0 and a
 * small WEFT_CHUNK_SIZE). Every result is checked against values computed here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define BLOCK_ELEMENTS ((1u << 20) + 3) /* uint32 elements per rank: 4 MiB, above every eager limit */
#define CALLS 4

static uint32_t expected_value(int rank, size_t i, int call)
{
    return (uint32_t)rank * 2654435761u + (uint32_t)i * 7u + (uint32_t)call;
}

/* One all-gather, checked element by element. Returns 1 when it succeeded with the right result. */
static int gather_once(ct_tally_t *tally, weft_comm_t comm, uint32_t *input, uint32_t *output, int call)
{
    char label[64];
    snprintf(label, sizeof(label), "all-gather call %d", call + 1);
    for (size_t i = 0; i < BLOCK_ELEMENTS; i++)
        input[i] = expected_value(tally->rank, i, call);
    memset(output, 0xff, (size_t)tally->nranks * BLOCK_ELEMENTS * sizeof(uint32_t));
    if (!ct_check_result(tally, comm, weft_allgather(input, output, BLOCK_ELEMENTS, WEFT_UINT32, comm), label))
        return 0;

    size_t wrong = 0;
    for (int r = 0; r < tally->nranks; r++)
        for (size_t i = 0; i < BLOCK_ELEMENTS; i++)
            wrong += output[(size_t)r * BLOCK_ELEMENTS + i] != expected_value(r, i, call);
    if (wrong > 0)
        ct_fail(tally, "%s: %zu elements wrong", label, wrong);
    return wrong == 0;
}

int main(int argc, char **argv)
{
    int per_call = argc > 1 && strcmp(argv[1], "--per-call") == 0;
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("scratch_kept_between_calls", &comm, &tally);

    uint32_t *input = malloc(BLOCK_ELEMENTS * sizeof(uint32_t));
    uint32_t *output = malloc((size_t)tally.nranks * BLOCK_ELEMENTS * sizeof(uint32_t));
    if (input == NULL || output == NULL) {
        ct_fail(&tally, "out of memory for the buffers");
        return ct_finish(&tally, comm);
    }

    weft_stats_t after_first;
    memset(&after_first, 0, sizeof(after_first));
    int ok = gather_once(&tally, comm, input, output, 0);
    ct_check_result(&tally, comm, weft_comm_get_stats(comm, &after_first), "weft_comm_get_stats");
    for (int call = 1; call < CALLS && ok; call++)
        ok = gather_once(&tally, comm, input, output, call);

    weft_stats_t after_last;
    memset(&after_last, 0, sizeof(after_last));
    ct_check_result(&tally, comm, weft_comm_get_stats(comm, &after_last), "weft_comm_get_stats");
    uint64_t misses = after_last.mr_cache_misses - after_first.mr_cache_misses;
    if (ok && !per_call && misses != 0)
        ct_fail(&tally, "calls 2 to %d registered %llu new buffers; kept scratch should need none", CALLS,
                (unsigned long long)misses);
    if (ok && per_call && misses < CALLS - 1)
        ct_fail(&tally, "calls 2 to %d registered %llu new buffers with WEFT_SCRATCH_KEEP=0; expected at least %d",
                CALLS, (unsigned long long)misses, CALLS - 1);
    free(input);
    free(output);
    return ct_finish(&tally, comm);
}
