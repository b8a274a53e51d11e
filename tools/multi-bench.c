/*
 * multi-bench: weft_allreduce_multi against one weft_allreduce per buffer, on gradient-like
 * buckets. Launch it like any weft program (mpirun, or WEFT_ROOT/WEFT_RANK/WEFT_SIZE).
 *
 *   multi-bench [-n BUFFERS] [-s MIN_BYTES] [-S MAX_BYTES] [-i ITERATIONS]
 *
 * Buffer sizes grow geometrically from MIN_BYTES to MAX_BYTES (defaults: 200 buffers, 4 KiB to
 * 4 MiB, float32 sum). Rank 0 prints the time per call of both ways, the maximum over ranks, and
 * their ratio. Results are checked once.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void check(weft_result_t result, weft_comm_t comm, const char *what)
{
    if (result != WEFT_SUCCESS) {
        fprintf(stderr, "multi-bench: %s failed: %s: %s\n", what, weft_result_string(result), weft_comm_last_error(comm));
        exit(1);
    }
}

/* Time `iterations` rounds of either one multi call or a loop of single calls; max over ranks. */
static double time_rounds(weft_comm_t comm, void **bufs, const size_t *counts, int nbufs, int iterations, int multi)
{
    check(weft_barrier(comm), comm, "weft_barrier");
    double start = now();
    for (int it = 0; it < iterations; it++) {
        if (multi) {
            check(weft_allreduce_multi(bufs, counts, nbufs, WEFT_FLOAT32, WEFT_SUM, comm), comm, "weft_allreduce_multi");
        } else {
            for (int b = 0; b < nbufs; b++)
                check(weft_allreduce(bufs[b], bufs[b], counts[b], WEFT_FLOAT32, WEFT_SUM, comm), comm, "weft_allreduce");
        }
    }
    double elapsed = (now() - start) / iterations, slowest;
    check(weft_allreduce(&elapsed, &slowest, 1, WEFT_FLOAT64, WEFT_MAX, comm), comm, "weft_allreduce of the time");
    return slowest;
}

int main(int argc, char **argv)
{
    int nbufs = 200, iterations = 10;
    double min_bytes = 4096, max_bytes = 4 << 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-n") == 0)
            nbufs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-s") == 0)
            min_bytes = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-S") == 0)
            max_bytes = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-i") == 0)
            iterations = atoi(argv[i + 1]);
    }
    if (nbufs < 1 || iterations < 1 || min_bytes < 4 || max_bytes < min_bytes) {
        fprintf(stderr, "usage: multi-bench [-n BUFFERS >= 1] [-s MIN_BYTES >= 4] [-S MAX_BYTES] [-i ITERATIONS]\n");
        return 2;
    }

    weft_comm_t comm;
    if (weft_comm_init_env(&comm) != WEFT_SUCCESS) {
        fprintf(stderr, "multi-bench: init failed: %s\n", weft_comm_last_error(NULL));
        return 1;
    }
    int rank = weft_comm_rank(comm), nranks = weft_comm_size(comm);
    void **bufs = calloc((size_t)nbufs, sizeof(*bufs));
    size_t *counts = calloc((size_t)nbufs, sizeof(*counts)), total = 0;
    double growth = nbufs > 1 ? pow(max_bytes / min_bytes, 1.0 / (nbufs - 1)) : 1.0;
    for (int b = 0; b < nbufs; b++) {
        counts[b] = (size_t)(min_bytes * pow(growth, b)) / sizeof(float);
        bufs[b] = malloc(counts[b] * sizeof(float));
        for (size_t i = 0; i < counts[b]; i++)
            ((float *)bufs[b])[i] = 1.0f;
        total += counts[b] * sizeof(float);
    }

    /* Warm up both paths (registration, pack buffer), then check one multi call exactly. */
    time_rounds(comm, bufs, counts, nbufs, 1, 0);
    for (int b = 0; b < nbufs; b++)
        for (size_t i = 0; i < counts[b]; i++)
            ((float *)bufs[b])[i] = 1.0f;
    time_rounds(comm, bufs, counts, nbufs, 1, 1);
    for (int b = 0; b < nbufs; b++)
        for (size_t i = 0; i < counts[b]; i++)
            if (((float *)bufs[b])[i] != (float)nranks) {
                fprintf(stderr, "multi-bench: rank %d buffer %d element %zu is %g, expected %d\n", rank, b, i,
                        ((float *)bufs[b])[i], nranks);
                return 1;
            }

    double single = time_rounds(comm, bufs, counts, nbufs, iterations, 0);
    double multi = time_rounds(comm, bufs, counts, nbufs, iterations, 1);
    if (rank == 0)
        printf("# multi-bench: %d ranks, %d float32 buffers of %.0f to %.0f bytes, %.1f MiB in all, %d iterations\n"
               "one weft_allreduce per buffer: %10.1f us\n"
               "weft_allreduce_multi:         %10.1f us\n"
               "speedup (per-buffer / multi): %10.2f\n",
               nranks, nbufs, min_bytes, max_bytes, (double)total / (1 << 20), iterations, single * 1e6, multi * 1e6,
               single / multi);
    for (int b = 0; b < nbufs; b++)
        free(bufs[b]);
    free(bufs);
    free(counts);
    weft_comm_destroy(comm);
    return 0;
}
