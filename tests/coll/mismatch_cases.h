/*
 * Shared driver of the mismatch tests: each case runs on a fresh communicator, created from the
 * same environment (the same WEFT_ROOT, as in reinit_same_endpoint), because a mismatch leaves the
 * communicator good only for weft_comm_destroy.
 */
#ifndef CT_MISMATCH_CASES_H
#define CT_MISMATCH_CASES_H

#include "coll_util.h"

#define MC_LIMIT_SECONDS 5.0 /* every rank must have its error within this time of entering the call */
#define MC_MAX_NEEDLES 4

/* One case: the call (different arguments on rank 0) and the texts every rank's error must contain. */
typedef struct {
    const char *label;
    /*
     * Runs the collective on comm as this rank; returns its result. Its buffers must outlive
     * weft_comm_destroy (static or heap memory freed later): after a failure the transport may
     * still own them until then.
     */
    weft_result_t (*call)(weft_comm_t comm, int rank, const void *arg);
    const void *arg;
    /*
     * Non-zero when a rank may return success from the call itself, because it cannot see the
     * difference (a broadcast root whose neighbour agrees with it). Such a rank must then get the
     * error from its next call, a barrier, within the same time limit.
     */
    int next_call_may_fail;
    const char *needles[MC_MAX_NEEDLES]; /* NULL-terminated */
} mc_case_t;

/* Run the cases in order, each on its own communicator. Returns the process exit status. */
int mc_run_cases(const char *program, const mc_case_t *cases, int count);

#endif /* CT_MISMATCH_CASES_H */
