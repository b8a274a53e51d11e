/*
 * Non-blocking all-reduces on two communicators at once, started in opposite orders.
 * A = split(color 0): the world again; B = split(color r / 2): pairs {0,1}, {2,3}.
 * Each iteration starts an int32 all-reduce of 1024 elements on A (input r+1) and on B (input
 * 100*(r+1)); even ranks start A then B, odd ranks B then A, and every rank waits A then B. A must
 * give n(n+1)/2, B the sum over the pair, 1000 times, within 60 s. With the argument "threads",
 * each communicator is driven by its own thread instead.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define ITERATIONS 1000
#define COUNT 1024
#define LIMIT_SECONDS 60.0

typedef struct {
    weft_comm_t comm;
    int32_t input, expected;
    int32_t buffer[COUNT];
    weft_request_t request;
    unsigned long wrong;
    weft_result_t failure;
    char message[300];
} lane_t;

static void note_failure(lane_t *lane, weft_result_t result, const char *what)
{
    if (result != WEFT_SUCCESS && lane->failure == WEFT_SUCCESS) {
        lane->failure = result;
        snprintf(lane->message, sizeof lane->message, "%s: %s", what, weft_comm_last_error(lane->comm));
    }
}

static void start(lane_t *lane)
{
    for (int i = 0; i < COUNT; i++)
        lane->buffer[i] = lane->input;
    note_failure(lane, weft_iallreduce(lane->buffer, lane->buffer, COUNT, WEFT_INT32, WEFT_SUM, lane->comm,
                                       &lane->request), "weft_iallreduce");
}

static void finish(lane_t *lane)
{
    note_failure(lane, weft_wait(lane->request), "weft_wait");
    for (int i = 0; i < COUNT && lane->failure == WEFT_SUCCESS; i++) {
        if (lane->buffer[i] != lane->expected) {
            lane->wrong++;
            break;
        }
    }
}

static void *run_lane(void *arg)
{
    lane_t *lane = arg;
    for (int it = 0; it < ITERATIONS && lane->failure == WEFT_SUCCESS; it++) {
        start(lane);
        if (lane->failure == WEFT_SUCCESS)
            finish(lane);
    }
    return NULL;
}

static void run_interleaved(lane_t *a, lane_t *b, int rank)
{
    lane_t *first = rank % 2 == 0 ? a : b, *second = rank % 2 == 0 ? b : a;
    for (int it = 0; it < ITERATIONS && a->failure == WEFT_SUCCESS && b->failure == WEFT_SUCCESS; it++) {
        start(first);
        start(second);
        if (a->failure == WEFT_SUCCESS && b->failure == WEFT_SUCCESS) {
            finish(a);
            finish(b);
        }
    }
}

static void check_lane(ct_tally_t *t, const char *label, const lane_t *lane)
{
    if (lane->failure != WEFT_SUCCESS)
        ct_fail(t, "%s: %s returned %s", label, lane->message, weft_result_string(lane->failure));
    else if (lane->wrong > 0)
        ct_fail(t, "%s: %lu of %d iterations gave a sum other than %d", label, lane->wrong, ITERATIONS, lane->expected);
    else
        t->passed++;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 && strcmp(argv[1], "threads") == 0;
    weft_comm_t world;
    ct_tally_t tally;
    ct_start("nonblocking_on_two_communicators", &world, &tally);
    int r = tally.rank, n = tally.nranks;
    lane_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    weft_result_t result = weft_comm_split(world, 0, r, &a->comm);
    if (ct_check_result(&tally, world, result, "split A"))
        result = weft_comm_split(world, r / 2, r, &b->comm);
    if (!ct_check_result(&tally, world, result, "split B"))
        return ct_finish(&tally, world);

    int partner = (r ^ 1) < n ? r ^ 1 : r;
    a->input = r + 1, a->expected = n * (n + 1) / 2;
    b->input = 100 * (r + 1), b->expected = 100 * (r + 1) + (partner != r ? 100 * (partner + 1) : 0);

    double begin = ct_now();
    if (threads) {
        pthread_t ta, tb;
        pthread_create(&ta, NULL, run_lane, a);
        pthread_create(&tb, NULL, run_lane, b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
    } else {
        run_interleaved(a, b, r);
    }
    check_lane(&tally, "communicator A (world)", a);
    check_lane(&tally, "communicator B (pair)", b);
    ct_check_duration(&tally, threads ? "1000 iterations, a thread per communicator" : "1000 interleaved iterations",
                      ct_now() - begin, LIMIT_SECONDS);
    weft_comm_destroy(a->comm);
    weft_comm_destroy(b->comm);
    free(a), free(b);
    return ct_finish(&tally, world);
}
