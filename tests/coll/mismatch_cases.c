/*
 * Driver of the mismatch tests (see mismatch_cases.h). For each case every rank creates a
 * communicator, synchronises with a barrier, enters the mismatched call and checks that it
 * returns WEFT_ERR_MISMATCH within MC_LIMIT_SECONDS, with an error text that names the rank and
 * the values. Then it destroys the communicator, which must also be quick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mismatch_cases.h"

/* Run one case; returns 0 to go on, 1 when the next case cannot start (no communicator). */
static int run_case(ct_tally_t *tally, const mc_case_t *c)
{
    weft_comm_t comm = NULL;
    weft_result_t result = weft_comm_init_env(&comm);
    if (result != WEFT_SUCCESS) {
        ct_fail(tally, "%s: weft_comm_init_env returned %s: %s", c->label, weft_result_string(result),
                weft_comm_last_error(NULL));
        return 1;
    }
    tally->rank = weft_comm_rank(comm);
    tally->nranks = weft_comm_size(comm);
    if (!ct_check_result(tally, comm, weft_barrier(comm), "barrier before the case")) {
        weft_comm_destroy(comm);
        return 0;
    }

    double started = ct_now();
    result = c->call(comm, tally->rank, c->arg);
    const char *where = "the mismatched call";
    if (result == WEFT_SUCCESS && c->next_call_may_fail) {
        result = weft_barrier(comm);
        where = "the barrier after the mismatched call";
    }
    double waited = ct_now() - started;
    const char *message = weft_comm_last_error(comm);
    int ok = 1;
    if (result != WEFT_ERR_MISMATCH) {
        ct_fail(tally, "%s: %s returned %s, expected WEFT_ERR_MISMATCH: %s", c->label, where,
                weft_result_string(result), message);
        ok = 0;
    }
    for (int i = 0; ok && i < MC_MAX_NEEDLES && c->needles[i] != NULL; i++)
        if (strstr(message, c->needles[i]) == NULL) {
            ct_fail(tally, "%s: the error does not contain \"%s\": %s", c->label, c->needles[i], message);
            ok = 0;
        }
    ok &= ct_check_duration(tally, c->label, waited, MC_LIMIT_SECONDS);
    tally->passed += ok;
    if (tally->rank == 0 || !ok || strcmp(where, "the mismatched call") != 0)
        printf("%s rank %d: %s from %s after %.3f s: %s\n", c->label, tally->rank, weft_result_string(result), where,
               waited, message);

    double destroy_started = ct_now();
    weft_comm_destroy(comm);
    ct_check_duration(tally, "weft_comm_destroy after a mismatch", ct_now() - destroy_started, MC_LIMIT_SECONDS);
    return 0;
}

int mc_run_cases(const char *program, const mc_case_t *cases, int count)
{
    ct_tally_t tally = {.program = program, .rank = -1};
    const char *launcher_rank = getenv("WEFT_RANK") ? getenv("WEFT_RANK") : getenv("PMIX_RANK");
    if (launcher_rank != NULL)
        tally.rank = atoi(launcher_rank);
    setvbuf(stdout, NULL, _IOLBF, 0);

    for (int i = 0; i < count; i++)
        if (run_case(&tally, &cases[i]) != 0)
            break;
    if (tally.rank == 0 || tally.failed > 0)
        printf("%s rank %d: %lu passed, %lu failed (this rank, %d ranks)\n", program, tally.rank, tally.passed,
               tally.failed, tally.nranks);
    return tally.failed > 0;
}
