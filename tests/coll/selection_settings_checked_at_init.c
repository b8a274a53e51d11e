/*
 * WEFT_ALGO and WEFT_TUNING_FILE are checked when a communicator is created, on every rank, and no
 * rank hangs. Each case sets the variables (per rank where stated) and creates a communicator from
 * the launcher's WEFT_ROOT. It checks the result and the message of weft_comm_init_env:
 *   unknown algorithm on every rank: each rank fails naming WEFT_ALGO, the token and the accepted names;
 *   WEFT_ALGO on rank 1 only: every rank fails, naming the disagreement;
 *   a bad tuning file on the last rank: that rank names the file, line and token, and the others
 *     name that rank;
 *   valid settings on every rank: the communicator works and an all-reduce gives the exact sum.
 * Run on 3 ranks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coll_util.h"

#define LIMIT_SECONDS 20.0 /* every init must return within this time */

/* Create a communicator and check the outcome: expected result, and a message with every needle. */
static weft_comm_t expect_init(ct_tally_t *tally, const char *label, weft_result_t expected, const char *needle,
                               const char *second_needle)
{
    weft_comm_t comm = NULL;
    double started = ct_now();
    weft_result_t result = weft_comm_init_env(&comm);
    const char *message = result == WEFT_SUCCESS ? "" : weft_comm_last_error(NULL);
    int ok = ct_check_duration(tally, label, ct_now() - started, LIMIT_SECONDS);

    if (result != expected) {
        ct_fail(tally, "%s: weft_comm_init_env returned %s, expected %s: %s", label, weft_result_string(result),
                weft_result_string(expected), message);
        ok = 0;
    }
    if (ok && needle != NULL && strstr(message, needle) == NULL) {
        ct_fail(tally, "%s: the message does not contain \"%s\": %s", label, needle, message);
        ok = 0;
    }
    if (ok && second_needle != NULL && strstr(message, second_needle) == NULL) {
        ct_fail(tally, "%s: the message does not contain \"%s\": %s", label, second_needle, message);
        ok = 0;
    }
    tally->passed += ok;
    if (tally->rank == 0 && result != WEFT_SUCCESS)
        printf("%s rank %d: %s: %s\n", label, tally->rank, weft_result_string(result), message);
    if (result != WEFT_SUCCESS)
        return NULL;
    return comm;
}

/* A tuning file for this rank; bad is non-zero for the one with an invalid third line. */
static void write_tuning_file(char *path, size_t length, int bad)
{
    snprintf(path, length, "/tmp/weft-selection-init-%d-XXXXXX", (int)getpid());
    int fd = mkstemp(path);
    const char *text = bad ? "alpha_us = 3\n# next line names an all-gather algorithm for all-reduce\n"
                             "allreduce 0-4K bruck\n"
                           : "alpha_us = 3\nallreduce 0-4K recursive_doubling\nallreduce 4K- rabenseifner\n";
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        fprintf(stderr, "selection_settings_checked_at_init: cannot write %s\n", path);
        exit(2);
    }
    close(fd);
}

/* An all-reduce of rank + 1 over every rank must give n(n + 1)/2 in every element. */
static void check_allreduce(ct_tally_t *tally, weft_comm_t comm)
{
    enum { COUNT = 3001 };
    static int32_t values[COUNT];
    int n = weft_comm_size(comm);
    for (int i = 0; i < COUNT; i++)
        values[i] = tally->rank + 1;
    if (!ct_check_result(tally, comm, weft_allreduce(values, values, COUNT, WEFT_INT32, WEFT_SUM, comm),
                         "all-reduce with valid settings"))
        return;
    int32_t expected = n * (n + 1) / 2;
    int wrong = 0;
    for (int i = 0; i < COUNT; i++)
        wrong += values[i] != expected;
    if (wrong > 0)
        ct_fail(tally, "all-reduce with valid settings: %d of %d elements differ from %d", wrong, COUNT, expected);
    else
        tally->passed++;
}

int main(void)
{
    ct_tally_t tally = {.program = "selection_settings_checked_at_init", .rank = -1};
    const char *rank_text = getenv("WEFT_RANK"), *size_text = getenv("WEFT_SIZE");
    if (rank_text == NULL || size_text == NULL) {
        fprintf(stderr, "selection_settings_checked_at_init: start it with coll_launch (WEFT_RANK, WEFT_SIZE)\n");
        return 2;
    }
    tally.rank = atoi(rank_text);
    tally.nranks = atoi(size_text);
    int last = tally.nranks - 1;
    setvbuf(stdout, NULL, _IOLBF, 0);

    setenv("WEFT_ALGO", "allreduce:ring;allgather:fastest", 1);
    expect_init(&tally, "unknown algorithm", WEFT_ERR_INVALID_ARGUMENT,
                "WEFT_ALGO=allreduce:ring;allgather:fastest: 'fastest' is not an algorithm of allgather",
                "allgather accepts direct, ring, bruck");

    if (tally.rank == 1)
        setenv("WEFT_ALGO", "allreduce:ring", 1);
    else
        unsetenv("WEFT_ALGO");
    expect_init(&tally, "WEFT_ALGO on rank 1 only", WEFT_ERR_INVALID_ARGUMENT, "disagree on WEFT_ALGO", NULL);
    unsetenv("WEFT_ALGO");

    char path[128];
    write_tuning_file(path, sizeof path, tally.rank == last);
    setenv("WEFT_TUNING_FILE", path, 1);
    if (tally.rank == last)
        expect_init(&tally, "bad tuning file", WEFT_ERR_INVALID_ARGUMENT, path,
                    "line 3: 'bruck' is not an algorithm of allreduce");
    else
        expect_init(&tally, "bad tuning file elsewhere", WEFT_ERR_REMOTE, "failed its local setup",
                    NULL);
    unlink(path);

    write_tuning_file(path, sizeof path, 0);
    setenv("WEFT_TUNING_FILE", path, 1);
    setenv("WEFT_ALGO", "allreduce:^ring", 1);
    weft_comm_t comm = expect_init(&tally, "valid settings", WEFT_SUCCESS, NULL, NULL);
    if (comm != NULL) {
        check_allreduce(&tally, comm);
        weft_comm_destroy(comm);
    }
    unlink(path);

    if (tally.rank == 0 || tally.failed > 0)
        printf("%s rank %d: %lu passed, %lu failed (this rank, %d ranks)\n", tally.program, tally.rank, tally.passed,
               tally.failed, tally.nranks);
    return tally.failed > 0;
}
