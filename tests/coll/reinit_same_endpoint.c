/*
 * Destroy a communicator and create the next one at once from the same environment, so the
 * bootstrap reuses the same WEFT_ROOT address and port. Three rounds with no pause, then three in
 * which rank 0 destroys 2 s after the others, so the other ranks already wait in the next init
 * while the old rendezvous is still open. Each round does an int32 all-reduce sum of r + 1
 * (10 on 4 ranks) and must finish within 30 s, with no "address in use" or stale-key failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "coll_util.h"

#define ROUNDS_PER_VARIANT 3
#define ROUND_LIMIT_SECONDS 30.0

/* Run one round; returns 0 when it passed, 1 on a failure after which the test cannot go on. */
static int run_round(ct_tally_t *tally, int round, int delayed_destroy)
{
    char label[96];
    weft_comm_t comm = NULL;
    double started = ct_now();

    snprintf(label, sizeof label, "round %d (%s)", round, delayed_destroy ? "rank 0 destroys 2 s late" : "no pause");
    weft_result_t result = weft_comm_init_env(&comm);
    if (result != WEFT_SUCCESS) {
        ct_fail(tally, "%s: weft_comm_init_env returned %s: %s", label, weft_result_string(result),
                weft_comm_last_error(NULL));
        return 1;
    }
    tally->rank = weft_comm_rank(comm);
    tally->nranks = weft_comm_size(comm);

    int32_t value = tally->rank + 1;
    int32_t expected = tally->nranks * (tally->nranks + 1) / 2;
    int ok = ct_check_result(tally, comm, weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm), label);
    ok = ok && ct_compare_elements(tally, label, WEFT_INT32, &value, &expected, 1);

    if (delayed_destroy && tally->rank == 0) {
        struct timespec delay = {2, 0};
        nanosleep(&delay, NULL);
    }
    result = weft_comm_destroy(comm);
    if (result != WEFT_SUCCESS) {
        ct_fail(tally, "%s: weft_comm_destroy returned %s", label, weft_result_string(result));
        return 1;
    }
    ok = ok && ct_check_duration(tally, label, ct_now() - started, ROUND_LIMIT_SECONDS);
    tally->passed += ok;
    return 0;
}

int main(void)
{
    ct_tally_t tally = {.program = "reinit_same_endpoint", .rank = -1};
    int stop = 0;

    /* Until the first init succeeds, name this process by the launcher's rank variable. */
    const char *launcher_rank = getenv("WEFT_RANK") ? getenv("WEFT_RANK") : getenv("PMIX_RANK");
    if (launcher_rank != NULL)
        tally.rank = atoi(launcher_rank);

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int round = 1; round <= 2 * ROUNDS_PER_VARIANT && !stop; round++)
        stop = run_round(&tally, round, round > ROUNDS_PER_VARIANT);

    if (tally.rank == 0 || tally.failed > 0)
        printf("reinit_same_endpoint rank %d: %lu passed, %lu failed (this rank, %d ranks)\n", tally.rank,
               tally.passed, tally.failed, tally.nranks);
    return tally.failed > 0;
}
