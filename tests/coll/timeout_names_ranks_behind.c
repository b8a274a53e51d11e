/*
 * A collective times out because one rank never arrives, and the message names that rank. Every rank does
 * one int32 all-reduce (call 1); then ranks other than LATE start a second all-reduce (call 2)
 * while LATE (the last rank, or rank 1 with the argument "rank1") sleeps. Each waiting rank must
 * get WEFT_ERR_TIMEOUT within WEFT_TIMEOUT + 3 s, and its message must name the late rank, say it
 * made no weft call and that it last completed "allreduce (call 1)", and list the waiting ranks as
 * in it. The late rank wakes after the others have given up and destroys its communicator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coll_util.h"

static void expect_text(ct_tally_t *t, const char *message, const char *text)
{
    if (strstr(message, text) == NULL)
        ct_fail(t, "the timeout message lacks \"%s\": %s", text, message);
    else
        t->passed++;
}

int main(int argc, char **argv)
{
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("timeout_names_ranks_behind", &comm, &tally);
    int r = tally.rank, n = tally.nranks;
    int late = argc > 1 && strcmp(argv[1], "rank1") == 0 ? 1 : n - 1;
    const char *limit_text = getenv("WEFT_TIMEOUT");
    int limit = limit_text != NULL ? atoi(limit_text) : 300;

    int32_t value = r + 1;
    if (!ct_check_result(&tally, comm, weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm), "call 1"))
        return ct_finish(&tally, comm);

    if (r == late) {
        sleep((unsigned)limit + 6); /* the others time out and report meanwhile */
        weft_comm_destroy(comm);
        printf("timeout_names_ranks_behind rank %d: stayed away as planned\n", r);
        return 0;
    }
    double begin = ct_now();
    weft_result_t result = weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm);
    double took = ct_now() - begin;
    const char *message = weft_comm_last_error(comm);
    if (result != WEFT_ERR_TIMEOUT) {
        ct_fail(&tally, "call 2 returned %s, expected a timeout: %s", weft_result_string(result), message);
    } else {
        char text[96];
        snprintf(text, sizeof text, "Ranks that had not reached it: rank %d (no weft call for", late);
        expect_text(&tally, message, text);
        expect_text(&tally, message, "last completed allreduce (call 1))");
        char list[64] = "";
        for (int q = 0; q < n; q++)
            if (q != late)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", list[0] ? ", " : "", q);
        snprintf(text, sizeof text, "Ranks in it or past it: %s.", list);
        expect_text(&tally, message, text);
        ct_check_duration(&tally, "the timeout", took, limit + 3.0);
    }
    /* The rendezvous lives in rank 0: let every waiting rank fetch the states before it closes. */
    sleep(2);
    tally.broken = 1;
    weft_comm_destroy(comm);
    if (tally.failed == 0)
        printf("timeout_names_ranks_behind rank %d: %lu passed\n", r, tally.passed);
    return tally.failed > 0;
}
