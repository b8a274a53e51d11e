/*
 * Ranks that pass different counts to an all-reduce all fail with WEFT_ERR_MISMATCH within 5 s,
 * and the error names rank 0 and both counts. float32 sum, every element 1.0, rank 0's count
 * against everybody else's:
 *   case A: 256000 against 512000 (ring algorithm on both sides);
 *   case B: 409600 against 409598 (ring on both sides, blocks differ by one element);
 *   direct vs ring: 8 against 1000000 (rank 0 chooses the direct algorithm, the others the ring).
 * Each case runs on a fresh communicator. Run on 4 and 8 ranks.
 */
#include "mismatch_cases.h"

#define MAX_COUNT 1000000

typedef struct {
    size_t rank0_count;
    size_t other_count;
} counts_t;

/* Kept for the whole run: after a failure the transport may own the buffer until weft_comm_destroy. */
static float buffer[MAX_COUNT];

static weft_result_t mismatched_allreduce(weft_comm_t comm, int rank, const void *arg)
{
    const counts_t *counts = arg;
    size_t count = rank == 0 ? counts->rank0_count : counts->other_count;
    for (size_t i = 0; i < count; i++)
        buffer[i] = 1.0f;
    return weft_allreduce(buffer, buffer, count, WEFT_FLOAT32, WEFT_SUM, comm);
}

static const counts_t case_a = {256000, 512000}, case_b = {409600, 409598}, direct_vs_ring = {8, 1000000};

static const mc_case_t cases[] = {
    {"case A: rank 0 count 256000, others 512000", mismatched_allreduce, &case_a, 0,
     {"rank 0 called allreduce with count 256000 float32 sum", "called allreduce with count 512000 float32 sum"}},
    {"case B: rank 0 count 409600, others 409598", mismatched_allreduce, &case_b, 0,
     {"rank 0 called allreduce with count 409600 float32 sum", "called allreduce with count 409598 float32 sum"}},
    {"direct vs ring: rank 0 count 8, others 1000000", mismatched_allreduce, &direct_vs_ring, 0,
     {"rank 0 called allreduce with count 8 float32 sum", "called allreduce with count 1000000 float32 sum"}},
};

int main(void)
{
    return mc_run_cases("mismatched_counts_fail_on_every_rank", cases, (int)(sizeof(cases) / sizeof(cases[0])));
}
