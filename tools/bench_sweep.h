/*
 * The measurement loop shared by weft-bench and mpi-bench: warm-up, timing, checking and one table
 * row per size. A backend supplies the library calls, so both programs measure the same way.
 */
#ifndef BENCH_SWEEP_H
#define BENCH_SWEEP_H

#include <stdint.h>

#include "bench_options.h"
#include "bench_report.h"

/* Library calls of one benchmark program. Every function exits the process on a library error. */
typedef struct {
    void *context;
    int rank;
    int nranks;
    unsigned char *send; /* options->max_bytes, aligned */
    unsigned char *recv; /* options->max_bytes, aligned */
    /*
     * Where reduce-scatter in place leaves this rank's block inside the receive buffer: at
     * rank * count elements (weft, NCCL) or at the start (MPI_Reduce_scatter_block).
     */
    int scatter_in_place_at_start;
    /*
     * Call the collective once. Out of place reads send and writes recv. In place works in recv;
     * all-gather and reduce-scatter use the library's in-place addresses. Broadcast has a single
     * buffer: send for the out-of-place run, recv for the in-place run.
     */
    void (*run)(void *context, const bench_layout_t *layout, int in_place);
    void (*barrier)(void *context);
    /* Combine this rank's seconds per iteration as -a asks; every rank gets the same value. */
    double (*combine_time)(void *context, double seconds, bench_time_reduction_t reduction);
    /* Maximum of wrong over ranks. */
    int64_t (*max_over_ranks)(void *context, int64_t wrong);
} bench_backend_t;

/* This rank's block of count elements inside the receive buffer. */
unsigned char *bench_own_block(const bench_backend_t *backend, const bench_layout_t *layout, size_t element_size);

/* Warm up, then measure every size of the sweep; rank 0 prints the table header and rows. */
void bench_run_sweep(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals);

#endif /* BENCH_SWEEP_H */
