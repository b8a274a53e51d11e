/*
 * Many ranks on one node, far more than it has cores. Each rank runs init, a barrier, an int32
 * all-reduce sum of 1 (expect n) and an int32 all-gather of its rank number (expect 0, 1, ...,
 * n-1). All of it must finish within a time limit counted from the start of the process.
 *
 *   many_ranks_on_one_node [LIMIT_SECONDS] [--expect-init-error TEXT]
 *
 * LIMIT_SECONDS defaults to 120. With --expect-init-error, the rank count is beyond a known limit:
 * init must fail within the time limit with a message that contains TEXT, and the rank then exits
 * 0. The launcher fails the test unless every rank exits 0, so every rank must see that error.
 *
 * Rank 0 prints the slowest rank's time for each phase, so a slow configuration shows where the
 * time went.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define DEFAULT_LIMIT_SECONDS 120.0

typedef struct {
    double limit;               /* seconds from the start of the process */
    const char *expected_error; /* text the init error must contain, or NULL when init must succeed */
} options_t;

static void usage_error(const char *value)
{
    fprintf(stderr,
            "many_ranks_on_one_node: invalid argument '%s': expected [LIMIT_SECONDS] [--expect-init-error TEXT], "
            "with a positive number of seconds such as 120\n",
            value);
    exit(2);
}

/* Parse the arguments. Exits with status 2 on an invalid one. */
static options_t parse_options(int argc, char **argv)
{
    options_t options = {DEFAULT_LIMIT_SECONDS, NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect-init-error") == 0) {
            if (i + 1 == argc || argv[i + 1][0] == '\0')
                usage_error(argv[i]);
            options.expected_error = argv[++i];
            continue;
        }
        char *end = NULL;
        options.limit = strtod(argv[i], &end);
        if (end == argv[i] || *end != '\0' || !(options.limit > 0))
            usage_error(argv[i]);
    }
    return options;
}

/*
 * Run init where it must fail: it must return an error whose message contains expected, within
 * the limit. Returns the exit status: 0 when it did.
 */
static int expect_init_error(const options_t *options, double started)
{
    const char *rank = getenv("WEFT_RANK") != NULL ? getenv("WEFT_RANK") : "unknown";
    weft_comm_t comm = NULL;
    weft_result_t result = weft_comm_init_env(&comm);
    double seconds = ct_now() - started;

    if (result == WEFT_SUCCESS) {
        printf("FAIL many_ranks_on_one_node rank %s: init of %d ranks succeeded, expected an error containing "
               "\"%s\"\n",
               rank, weft_comm_size(comm), options->expected_error);
        weft_comm_destroy(comm);
        return 1;
    }
    const char *message = weft_comm_last_error(NULL);
    if (message == NULL || strstr(message, options->expected_error) == NULL) {
        printf("FAIL many_ranks_on_one_node rank %s: init returned %s: \"%s\", expected a message containing "
               "\"%s\"\n",
               rank, weft_result_string(result), message != NULL ? message : "(none)", options->expected_error);
        return 1;
    }
    if (seconds > options->limit) {
        printf("FAIL many_ranks_on_one_node rank %s: init took %.2f s to fail, more than the %.0f s allowed\n", rank,
               seconds, options->limit);
        return 1;
    }
    if (strcmp(rank, "0") == 0)
        printf("many_ranks_on_one_node rank 0: init failed as expected after %.2f s: %s: %s\n", seconds,
               weft_result_string(result), message);
    return 0;
}

/* Check that the communicator has as many ranks as the launcher started (WEFT_SIZE, when set). */
static void check_size(ct_tally_t *tally)
{
    const char *launched = getenv("WEFT_SIZE");
    if (launched != NULL && atoi(launched) != tally->nranks)
        ct_fail(tally, "weft_comm_size returned %d, but the launcher started WEFT_SIZE=%s ranks", tally->nranks,
                launched);
}

/* Check that an all-reduce sum of 1 from every rank gives the rank count. */
static void check_allreduce(ct_tally_t *tally, weft_comm_t comm)
{
    int32_t value = 1;
    int32_t expected = tally->nranks;
    if (ct_check_result(tally, comm, weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm),
                        "all-reduce int32 sum of 1") &&
        ct_compare_elements(tally, "all-reduce int32 sum of 1", WEFT_INT32, &value, &expected, 1))
        tally->passed++;
}

/* Check an out-of-place all-gather of each rank's number into a guarded buffer. */
static void check_allgather(ct_tally_t *tally, weft_comm_t comm)
{
    size_t n = (size_t)tally->nranks;
    int32_t mine = tally->rank;
    int32_t *expected = malloc(n * sizeof *expected);
    ct_buffer_t gathered;

    if (expected == NULL) {
        ct_fail(tally, "no memory for the %zu-element reference of the all-gather", n);
        return;
    }
    ct_buffer_alloc(&gathered, n * sizeof(int32_t));
    for (size_t r = 0; r < n; r++) {
        expected[r] = (int32_t)r;
        ((int32_t *)(void *)gathered.data)[r] = -1;
    }

    const char *label = "all-gather int32 of the rank number";
    if (ct_check_result(tally, comm, weft_allgather(&mine, gathered.data, 1, WEFT_INT32, comm), label) &&
        ct_compare_elements(tally, label, WEFT_INT32, gathered.data, expected, n))
        tally->passed++;
    long damage = ct_buffer_guard_damage(&gathered);
    if (damage != 0)
        ct_fail(tally, "%s wrote outside the %zu-byte receive buffer (guard byte %ld changed)", label, gathered.bytes,
                damage);
    ct_buffer_free(&gathered);
    free(expected);
}

int main(int argc, char **argv)
{
    options_t options = parse_options(argc, argv);
    double limit = options.limit;
    double marks[5];
    weft_comm_t comm;
    ct_tally_t tally;

    marks[0] = ct_now();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (options.expected_error != NULL)
        return expect_init_error(&options, marks[0]);
    ct_start("many_ranks_on_one_node", &comm, &tally);
    marks[1] = ct_now();
    check_size(&tally);

    if (ct_check_result(&tally, comm, weft_barrier(comm), "barrier"))
        tally.passed++;
    marks[2] = ct_now();
    if (!tally.broken)
        check_allreduce(&tally, comm);
    marks[3] = ct_now();
    if (!tally.broken)
        check_allgather(&tally, comm);
    marks[4] = ct_now();
    ct_check_duration(&tally, "init, barrier, all-reduce and all-gather", marks[4] - marks[0], limit);

    /* Each phase's time on the slowest rank, through the library only while it still works. */
    double slowest[5];
    for (int phase = 0; phase < 4; phase++)
        slowest[phase] = marks[phase + 1] - marks[phase];
    slowest[4] = marks[4] - marks[0];
    if (!tally.broken && weft_allreduce(slowest, slowest, 5, WEFT_FLOAT64, WEFT_MAX, comm) == WEFT_SUCCESS &&
        tally.rank == 0)
        printf("many_ranks_on_one_node: %d ranks, slowest rank's seconds: init %.2f, barrier %.2f, all-reduce %.2f, "
               "all-gather %.2f, total %.2f (limit %.0f)\n",
               tally.nranks, slowest[0], slowest[1], slowest[2], slowest[3], slowest[4], limit);
    return ct_finish(&tally, comm);
}
