/*
 * A rank dies inside a collective: 4 ranks loop over float32 all-reduce sums of 1,048,576 ones
 * (4.0 expected while healthy). At iteration 10, rank 2 starts a thread that SIGKILLs the process
 * 20 ms later and enters the all-reduce. Each survivor must get an error from the in-flight or the
 * next call within 15 s of the kill: WEFT_ERR_REMOTE naming rank 2, or WEFT_ERR_TIMEOUT where the
 * transport cannot tell (the test runs with WEFT_TIMEOUT=10). Destroying the failed communicator
 * must then return within 5 s.
 *
 * With the argument "stall", rank 2 stays alive but stops calling collectives at iteration 10, so
 * the survivors must fail within 15 s. They time out, except that a survivor may instead see
 * WEFT_ERR_REMOTE when rank 0, which hosts the rendezvous, has already timed out and destroyed
 * its communicator. Rank 2 destroys its communicator after the survivors have given up.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coll_util.h"

#define COUNT (1u << 20)
#define FAULT_ITERATION 10
#define VICTIM 2
#define ERROR_LIMIT_SECONDS 15.0
#define DESTROY_LIMIT_SECONDS 5.0

static void *kill_soon(void *arg)
{
    (void)arg;
    usleep(20000);
    raise(SIGKILL);
    return NULL;
}

int main(int argc, char **argv)
{
    int stall = argc > 1 && strcmp(argv[1], "stall") == 0;
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("rank_killed_during_allreduce", &comm, &tally);
    if (tally.nranks <= VICTIM) {
        ct_fail(&tally, "needs more than %d ranks, got %d", VICTIM, tally.nranks);
        return ct_finish(&tally, comm);
    }

    float *buffer = malloc(COUNT * sizeof(float));
    double fault_time = 0;
    weft_result_t result = WEFT_SUCCESS;
    for (int it = 0; it < 1000 && result == WEFT_SUCCESS; it++) {
        if (it == FAULT_ITERATION) {
            fault_time = ct_now();
            if (tally.rank == VICTIM && stall) {
                sleep((unsigned)ERROR_LIMIT_SECONDS + 3); /* the others give up meanwhile */
                break;
            }
            if (tally.rank == VICTIM) {
                pthread_t killer;
                pthread_create(&killer, NULL, kill_soon, NULL);
            }
        }
        for (size_t i = 0; i < COUNT; i++)
            buffer[i] = 1.0f;
        result = weft_allreduce(buffer, buffer, COUNT, WEFT_FLOAT32, WEFT_SUM, comm);
        if (result == WEFT_SUCCESS && it < FAULT_ITERATION) {
            size_t wrong = 0;
            for (size_t i = 0; i < COUNT; i++)
                wrong += buffer[i] != (float)tally.nranks;
            if (wrong > 0)
                ct_fail(&tally, "iteration %d: %zu elements differ from %d", it, wrong, tally.nranks);
        }
    }

    if (tally.rank != VICTIM) {
        double waited = ct_now() - fault_time;
        const char *message = weft_comm_last_error(comm);
        if (result != WEFT_ERR_REMOTE && result != WEFT_ERR_TIMEOUT)
            ct_fail(&tally, "after the fault the all-reduce returned %s, expected a peer failure or a timeout: %s",
                    weft_result_string(result), message);
        else
            tally.passed++;
        if (!stall && result == WEFT_ERR_REMOTE && strstr(message, "rank 2") == NULL)
            ct_fail(&tally, "the error does not name rank 2: %s", message);
        ct_check_duration(&tally, "error after the fault", waited, ERROR_LIMIT_SECONDS);
        printf("rank %d: %s after %.1f s: %s\n", tally.rank, weft_result_string(result), waited, message);
    }

    /* The communicator failed: destroy must not wait for the lost rank. */
    double destroy_start = ct_now();
    weft_comm_destroy(comm);
    ct_check_duration(&tally, "weft_comm_destroy after the fault", ct_now() - destroy_start, DESTROY_LIMIT_SECONDS);
    free(buffer);
    if (tally.failed > 0)
        printf("rank_killed_during_allreduce rank %d: %lu passed, %lu failed\n", tally.rank, tally.passed, tally.failed);
    return tally.failed > 0;
}
