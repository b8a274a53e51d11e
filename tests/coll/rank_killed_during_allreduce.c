/*
 * A rank dies inside a collective. The ranks run float32 all-reduce sums of ones from a send buffer
 * into a separate receive buffer, 16 Mi elements (64 MiB) unless --count sets another count, and
 * check each result (nranks expected). After HEALTHY_ITERATIONS of them the victim (--victim RANK,
 * default 2) picks the moment of its death, half a healthy all-reduce after it enters the next
 * one, and broadcasts that CLOCK_MONOTONIC time, which every process on the machine shares. A
 * barrier follows, so every rank has the moment before the fault. A thread of the victim SIGKILLs
 * its process at that moment, or right after the barrier if that ends later, while the main
 * thread keeps calling all-reduces. Every survivor must then get a result other than WEFT_SUCCESS whose
 * weft_comm_last_error names "rank VICTIM", no later than WEFT_TIMEOUT + 2 s after the kill and
 * no earlier than the kill. Destroying the failed communicator must then return within 5 s.
 *
 * With --stall, the victim stays alive but stops calling collectives at that moment, so the
 * survivors must fail within WEFT_TIMEOUT + 5 s. They time out, except that a survivor may
 * instead see WEFT_ERR_REMOTE when rank 0, which hosts the rendezvous, has already timed out and
 * destroyed its communicator. The victim destroys its communicator after the survivors have
 * given up.
 *
 * Run it under coll_launch with -k VICTIM (without --stall), so the launcher expects that rank to
 * end by SIGKILL. It reads WEFT_TIMEOUT (the library's default when unset) for its limits.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coll_util.h"

#define PROGRAM "rank_killed_during_allreduce"
#define DEFAULT_COUNT ((size_t)16 << 20)
#define DEFAULT_VICTIM 2
#define DEFAULT_TIMEOUT_SECONDS 300 /* WEFT_TIMEOUT when unset, as in src/param.c */
#define HEALTHY_ITERATIONS 3
#define MAX_ITERATIONS 1000
#define KILL_SLACK_SECONDS 2.0  /* time allowed beyond WEFT_TIMEOUT after a kill */
#define STALL_SLACK_SECONDS 5.0 /* time allowed beyond WEFT_TIMEOUT after a stall */
#define DESTROY_LIMIT_SECONDS 5.0
/* Margin for an error just before the planned kill: the victim prints its own delay, so only
 * rounding is allowed here. */
#define EARLY_TOLERANCE_SECONDS 0.001

typedef struct {
    size_t count;
    int victim;
    int stall;
} options_t;

static void usage(const char *message, const char *value)
{
    fprintf(stderr, "%s: %s '%s'\nusage: %s [--victim RANK] [--count N] [--stall]\n", PROGRAM, message,
            value ? value : "", PROGRAM);
    exit(2);
}

static void parse_options(int argc, char **argv, options_t *options)
{
    *options = (options_t){.count = DEFAULT_COUNT, .victim = DEFAULT_VICTIM};
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--stall") == 0) {
            options->stall = 1;
        } else if (strcmp(argv[i], "--victim") == 0 && i + 1 < argc) {
            long victim = strtol(argv[++i], &end, 10);
            if (*end != '\0' || end == argv[i] || victim < 0 || victim > 1 << 20)
                usage("invalid rank after --victim", argv[i]);
            options->victim = (int)victim;
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            unsigned long long count = strtoull(argv[++i], &end, 10);
            if (*end != '\0' || end == argv[i] || count == 0 || !isdigit((unsigned char)argv[i][0]))
                usage("invalid element count after --count", argv[i]);
            options->count = (size_t)count;
        } else {
            usage("invalid or incomplete argument", argv[i]);
        }
    }
}

/* Return WEFT_TIMEOUT in seconds as the library reads it, and exit when the value is invalid. */
static double weft_timeout_seconds(void)
{
    const char *text = getenv("WEFT_TIMEOUT");
    if (text == NULL || *text == '\0')
        return DEFAULT_TIMEOUT_SECONDS;
    char *end = NULL;
    long seconds = strtol(text, &end, 10);
    if (*end != '\0' || seconds <= 0)
        usage("WEFT_TIMEOUT is not a positive whole number of seconds:", text);
    return (double)seconds;
}

/* Return 1 when message contains "rank R" with no further digit after R. */
static int names_rank(const char *message, int rank)
{
    char needle[32];
    int length = snprintf(needle, sizeof needle, "rank %d", rank);
    for (const char *at = strstr(message, needle); at != NULL; at = strstr(at + 1, needle)) {
        if (!isdigit((unsigned char)at[length]))
            return 1;
    }
    return 0;
}

static void *kill_at_planned_time(void *arg)
{
    double planned = *(const double *)arg;
    struct timespec when = {.tv_sec = (time_t)planned};
    when.tv_nsec = (long)((planned - (double)when.tv_sec) * 1e9);
    if (when.tv_nsec >= 1000000000L)
        when.tv_nsec = 999999999L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, NULL) == EINTR)
        continue;
    /* Late only when this thread was not scheduled in time, which leaves the survivors less time. */
    printf("%s: SIGKILL now, %.1f ms after the planned moment\n", PROGRAM, (ct_now() - planned) * 1e3);
    raise(SIGKILL);
    return NULL;
}

/* Run one all-reduce, check a successful result, and set *seconds to the time the call took. */
static weft_result_t reduce_once(ct_tally_t *tally, weft_comm_t comm, const float *send, float *recv, size_t count,
                                 int iteration, double *seconds)
{
    double start = ct_now();
    weft_result_t result = weft_allreduce(send, recv, count, WEFT_FLOAT32, WEFT_SUM, comm);
    *seconds = ct_now() - start;
    if (result != WEFT_SUCCESS)
        return result;
    size_t wrong = 0;
    for (size_t i = 0; i < count; i++)
        wrong += recv[i] != (float)tally->nranks;
    if (wrong > 0)
        ct_fail(tally, "iteration %d: %zu of %zu elements differ from %d", iteration, wrong, count, tally->nranks);
    return result;
}

/* Check a survivor from the planned fault on. Its first error must come in time and name the
 * victim. */
static void check_survivor(ct_tally_t *tally, weft_comm_t comm, const options_t *options, const float *send,
                           float *recv, double planned)
{
    double timeout = weft_timeout_seconds();
    double limit = timeout + (options->stall ? STALL_SLACK_SECONDS : KILL_SLACK_SECONDS);
    weft_result_t result = WEFT_SUCCESS;
    double seconds;
    int it = HEALTHY_ITERATIONS;
    for (; it < MAX_ITERATIONS && result == WEFT_SUCCESS; it++)
        result = reduce_once(tally, comm, send, recv, options->count, it, &seconds);
    double waited = ct_now() - planned;
    const char *message = weft_comm_last_error(comm);
    printf("%s rank %d: %s %.2f s after the %s of rank %d (iteration %d): %s\n", PROGRAM, tally->rank,
           weft_result_string(result), waited, options->stall ? "stall" : "kill", options->victim, it - 1, message);

    if (result == WEFT_SUCCESS) {
        ct_fail(tally, "%d all-reduces succeeded after rank %d was %s", MAX_ITERATIONS - HEALTHY_ITERATIONS,
                options->victim, options->stall ? "stalled" : "killed");
        return;
    }
    int expected_kind = options->stall ? result == WEFT_ERR_REMOTE || result == WEFT_ERR_TIMEOUT
                                       : result == WEFT_ERR_REMOTE || result == WEFT_ERR_TIMEOUT ||
                                             result == WEFT_ERR_TRANSPORT;
    if (!expected_kind)
        ct_fail(tally, "after the fault the all-reduce returned %s, expected a peer failure or a timeout: %s",
                weft_result_string(result), message);
    else
        tally->passed++;
    if (!options->stall && !names_rank(message, options->victim))
        ct_fail(tally, "the error does not name rank %d: %s", options->victim, message);
    else if (!options->stall)
        tally->passed++;
    if (waited < -EARLY_TOLERANCE_SECONDS)
        ct_fail(tally, "the error came %.3f s before rank %d was %s", -waited, options->victim,
                options->stall ? "stalled" : "killed");
    if (ct_check_duration(tally, options->stall ? "error after the stall" : "error after the kill", waited, limit))
        tally->passed++;
}

int main(int argc, char **argv)
{
    options_t options;
    parse_options(argc, argv, &options);
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start(PROGRAM, &comm, &tally);
    if (tally.nranks <= options.victim || tally.nranks < 2) {
        ct_fail(&tally, "needs at least 2 ranks and more than %d, got %d", options.victim, tally.nranks);
        return ct_finish(&tally, comm);
    }

    float *send = malloc(options.count * sizeof(float));
    float *recv = malloc(options.count * sizeof(float));
    if (send == NULL || recv == NULL) {
        ct_fail(&tally, "cannot allocate two buffers of %zu floats", options.count);
        return ct_finish(&tally, comm);
    }
    for (size_t i = 0; i < options.count; i++)
        send[i] = 1.0f;

    /* Healthy rounds must succeed first, and the last one times an all-reduce. */
    double seconds = 0;
    for (int it = 0; it < HEALTHY_ITERATIONS; it++) {
        if (!ct_check_result(&tally, comm, reduce_once(&tally, comm, send, recv, options.count, it, &seconds),
                             "healthy all-reduce"))
            return ct_finish(&tally, comm);
    }
    if (tally.rank == options.victim)
        printf("%s rank %d: a healthy all-reduce of %zu floats took %.3f s\n", PROGRAM, tally.rank, options.count,
               seconds);

    /*
     * The victim sends the moment of the fault to everyone while the job is still healthy. The
     * barrier makes sure every rank has it before the victim can die. On a loaded machine ranks
     * drift apart by more than half an all-reduce, and a rank that reached the broadcast only
     * after the fault would fail it, because a collective that starts after a rank was lost
     * fails. When the barrier ends after the planned moment, the fault comes right after it.
     */
    double planned = ct_now() + 0.5 * seconds;
    if (!ct_check_result(&tally, comm, weft_broadcast(&planned, 1, WEFT_FLOAT64, options.victim, comm),
                         "broadcast of the moment of the fault"))
        return ct_finish(&tally, comm);
    if (!ct_check_result(&tally, comm, weft_barrier(comm), "barrier after the broadcast of the moment"))
        return ct_finish(&tally, comm);

    if (tally.rank == options.victim && options.stall) {
        double now = ct_now();
        if (planned > now)
            usleep((useconds_t)((planned - now) * 1e6));
        sleep((unsigned)(weft_timeout_seconds() + STALL_SLACK_SECONDS + 3)); /* the others give up meanwhile */
    } else if (tally.rank == options.victim) {
        pthread_t killer;
        if (pthread_create(&killer, NULL, kill_at_planned_time, &planned) != 0) {
            ct_fail(&tally, "cannot start the thread that kills this rank");
            return ct_finish(&tally, comm);
        }
        /* Die inside an all-reduce. An unexpected error before the kill is still followed by it,
         * and the survivors then report an error before the kill. */
        for (int it = HEALTHY_ITERATIONS; it < MAX_ITERATIONS; it++) {
            if (reduce_once(&tally, comm, send, recv, options.count, it, &seconds) != WEFT_SUCCESS)
                break;
        }
        for (;;)
            pause();
    } else {
        check_survivor(&tally, comm, &options, send, recv, planned);
    }

    /* The communicator failed: destroy must not wait for the lost rank. */
    double destroy_start = ct_now();
    weft_comm_destroy(comm);
    double destroy_seconds = ct_now() - destroy_start;
    if (ct_check_duration(&tally, "weft_comm_destroy after the fault", destroy_seconds, DESTROY_LIMIT_SECONDS))
        tally.passed++;
    free(send);
    free(recv);
    printf("%s rank %d: %lu passed, %lu failed (destroy took %.2f s)\n", PROGRAM, tally.rank, tally.passed,
           tally.failed, destroy_seconds);
    return tally.failed > 0;
}
