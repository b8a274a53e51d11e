/*
 * weft_comm_split, then collectives on the children from one thread per communicator.
 * - A = split(color 0, key r): a duplicate of the world in the same order.
 * - B = split(color r / 2, key -r): pairs {0,1}, {2,3}, ... with the rank order reversed by key.
 * - C = split(color 0 on rank 0, -1 elsewhere): one rank gets a communicator, the others NULL.
 * Then 1000 iterations of int32 all-reduce sums of 1024 elements run concurrently on A (input r+1)
 * and B (input 100*(r+1)), each from its own thread: A must give n(n+1)/2 and B the sum over the
 * pair, on every iteration.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "coll_util.h"

#define ITERATIONS 1000
#define COUNT 1024

typedef struct {
    weft_comm_t comm;
    int32_t input;
    int32_t expected;
    unsigned long wrong_iterations;
    weft_result_t failure;
    char message[256];
} worker_t;

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    int32_t *buffer = malloc(COUNT * sizeof(int32_t));
    for (int it = 0; it < ITERATIONS && w->failure == WEFT_SUCCESS; it++) {
        for (int i = 0; i < COUNT; i++)
            buffer[i] = w->input;
        w->failure = weft_allreduce(buffer, buffer, COUNT, WEFT_INT32, WEFT_SUM, w->comm);
        if (w->failure != WEFT_SUCCESS) {
            snprintf(w->message, sizeof(w->message), "%s", weft_comm_last_error(w->comm));
            break;
        }
        for (int i = 0; i < COUNT; i++) {
            if (buffer[i] != w->expected) {
                w->wrong_iterations++;
                break;
            }
        }
    }
    free(buffer);
    return NULL;
}

static void check_rank(ct_tally_t *tally, const char *label, weft_comm_t comm, int rank, int size)
{
    if (comm == NULL) {
        ct_fail(tally, "%s: no communicator", label);
    } else if (weft_comm_rank(comm) != rank || weft_comm_size(comm) != size) {
        ct_fail(tally, "%s: rank %d of %d, expected rank %d of %d", label, weft_comm_rank(comm), weft_comm_size(comm),
                rank, size);
    } else {
        tally->passed++;
    }
}

static void check_worker(ct_tally_t *tally, const char *label, const worker_t *w)
{
    if (w->failure != WEFT_SUCCESS)
        ct_fail(tally, "%s: weft_allreduce returned %s: %s", label, weft_result_string(w->failure), w->message);
    else if (w->wrong_iterations > 0)
        ct_fail(tally, "%s: %lu of %d iterations gave a sum other than %d", label, w->wrong_iterations, ITERATIONS,
                w->expected);
    else
        tally->passed++;
}

int main(void)
{
    weft_comm_t world, a = NULL, b = NULL, c = NULL;
    ct_tally_t tally;
    ct_start("comm_split_threads", &world, &tally);
    int r = tally.rank, n = tally.nranks;

    int ok = ct_check_result(&tally, world, weft_comm_split(world, 0, r, &a), "split A (color 0, key r)");
    ok = ok && ct_check_result(&tally, world, weft_comm_split(world, r / 2, -r, &b), "split B (color r/2, key -r)");
    ok = ok && ct_check_result(&tally, world, weft_comm_split(world, r == 0 ? 0 : -1, 0, &c),
                               "split C (color 0 on rank 0 only)");
    if (ok) {
        int pair_low = (r / 2) * 2, pair_size = pair_low + 1 < n ? 2 : 1;
        check_rank(&tally, "A", a, r, n);
        /* key -r: the higher parent rank of a pair comes first. */
        check_rank(&tally, "B", b, pair_size == 2 ? 1 - (r - pair_low) : 0, pair_size);
        if (r == 0)
            check_rank(&tally, "C on rank 0", c, 0, 1);
        else if (c != NULL)
            ct_fail(&tally, "C: rank %d passed a negative color but got a communicator", r);
        else
            tally.passed++;
        if (weft_comm_split(world, 0, 0, NULL) != WEFT_ERR_INVALID_ARGUMENT)
            ct_fail(&tally, "split with newcomm NULL was accepted");
        else
            tally.passed++;

        int32_t pair_sum = 100 * (pair_low + 1) + (pair_size == 2 ? 100 * (pair_low + 2) : 0);
        worker_t wa = {a, r + 1, n * (n + 1) / 2, 0, WEFT_SUCCESS, ""};
        worker_t wb = {b, 100 * (r + 1), pair_sum, 0, WEFT_SUCCESS, ""};
        pthread_t ta, tb;
        /* Even ranks start A first, odd ranks B first. */
        pthread_create(r % 2 ? &tb : &ta, NULL, run_worker, r % 2 ? &wb : &wa);
        pthread_create(r % 2 ? &ta : &tb, NULL, run_worker, r % 2 ? &wa : &wb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        check_worker(&tally, "A, its own thread", &wa);
        check_worker(&tally, "B, its own thread", &wb);
    }
    weft_comm_destroy(a);
    weft_comm_destroy(b);
    weft_comm_destroy(c);
    return ct_finish(&tally, world);
}
