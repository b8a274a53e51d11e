/*
 * weft_comm_abort from another thread unblocks a collective, and the other ranks learn of it.
 * On 3 ranks, rank 1 enters an int32 all-reduce that ranks 0 and 2 join only 1.5 s later. A second
 * thread of rank 1 calls weft_comm_abort after 0.3 s. Rank 1's all-reduce must return
 * WEFT_ERR_ABORTED within 2 s, and so must a later call; its weft_comm_destroy then leaves the job
 * without a goodbye. Ranks 0 and 2 must get WEFT_ERR_REMOTE naming rank 1 within 5 s of entering.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "coll_util.h"

#define ABORTING_RANK 1

static void *abort_soon(void *arg)
{
    usleep(300000);
    weft_comm_abort((weft_comm_t)arg);
    return NULL;
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("comm_abort_unblocks", &comm, &tally);
    if (tally.nranks != 3) {
        ct_fail(&tally, "needs 3 ranks, got %d", tally.nranks);
        return ct_finish(&tally, comm);
    }

    int32_t value = tally.rank + 1;
    if (tally.rank == ABORTING_RANK) {
        pthread_t aborter;
        pthread_create(&aborter, NULL, abort_soon, comm);
        double start = ct_now();
        weft_result_t result = weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm);
        double waited = ct_now() - start;
        pthread_join(aborter, NULL);
        if (result != WEFT_ERR_ABORTED)
            ct_fail(&tally, "blocked all-reduce returned %s, expected aborted: %s", weft_result_string(result),
                    weft_comm_last_error(comm));
        else
            tally.passed++;
        ct_check_duration(&tally, "all-reduce unblocked by weft_comm_abort", waited, 2.0);
        result = weft_barrier(comm);
        if (result != WEFT_ERR_ABORTED)
            ct_fail(&tally, "a call after the abort returned %s, expected aborted", weft_result_string(result));
        else
            tally.passed++;
    } else {
        usleep(1500000);
        double start = ct_now();
        weft_result_t result = weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm);
        double waited = ct_now() - start;
        const char *message = weft_comm_last_error(comm);
        if (result != WEFT_ERR_REMOTE)
            ct_fail(&tally, "all-reduce with an aborted rank returned %s, expected a peer failure: %s",
                    weft_result_string(result), message);
        else if (strstr(message, "rank 1") == NULL)
            ct_fail(&tally, "the error does not name rank 1: %s", message);
        else
            tally.passed++;
        ct_check_duration(&tally, "all-reduce after another rank aborted", waited, 5.0);
    }

    /* ct_finish would sum the tallies with a collective, which this failed communicator cannot do. */
    weft_comm_destroy(comm);
    printf("comm_abort_unblocks rank %d: %lu passed, %lu failed\n", tally.rank, tally.passed, tally.failed);
    return tally.failed > 0;
}
