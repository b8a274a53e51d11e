/*
 * The measurement loop shared by weft-bench and mpi-bench: warm-up, timing, checking and one table
 * row per size. A backend supplies the library calls, so both programs measure the same way.
 */
#ifndef BENCH_SWEEP_H
#define BENCH_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "bench_options.h"
#include "bench_report.h"

/* Buffers of one call, and its request while a non-blocking call is in flight. */
typedef struct {
    unsigned char *send;
    unsigned char *recv;
    void *request; /* the library's request handle, NULL when no call is in flight */
} bench_slot_t;

/* Library calls of one benchmark program. Every function exits the process on a library error. */
typedef struct {
    void *context;
    int rank;
    int nranks;
    /* options->window slots, each with a send and a receive buffer of options->max_bytes, aligned.
     * Blocking calls use slots[0]. */
    bench_slot_t *slots;
    /*
     * Where reduce-scatter in place leaves this rank's block inside the receive buffer: at
     * rank * count elements (weft, NCCL) or at the start (MPI_Reduce_scatter_block).
     */
    int scatter_in_place_at_start;
    /*
     * Call the collective once on slot's buffers. Out of place reads send and writes recv. In place
     * works in recv; all-gather and reduce-scatter use the library's in-place addresses. Broadcast
     * has a single buffer: send for the out-of-place run, recv for the in-place run.
     */
    void (*run)(void *context, const bench_layout_t *layout, int in_place, const bench_slot_t *slot);
    void (*barrier)(void *context);
    /* Combine this rank's seconds per iteration as -a asks; every rank gets the same value. */
    double (*combine_time)(void *context, double seconds, bench_time_reduction_t reduction);
    /* Maximum of wrong over ranks. */
    int64_t (*max_over_ranks)(void *context, int64_t wrong);

    /* Non-blocking forms, NULL in programs that do not accept -B (the parser then rejects it). */
    /* Start the call that run would make on slot, leaving its request in slot->request. */
    void (*issue)(void *context, const bench_layout_t *layout, int in_place, bench_slot_t *slot);
    /* Advance slot's call; returns 1 once it has completed, else 0. */
    int (*test)(void *context, bench_slot_t *slot);
    /* Wait for slot's call to complete and release its request. */
    void (*wait)(void *context, bench_slot_t *slot);
    /* One all-reduce in place over nbufs buffers, NULL in programs without allreduce_multi. */
    void (*run_multi)(void *context, void *const *bufs, const size_t *counts, int nbufs);
} bench_backend_t;

/* This rank's block of count elements inside slot's receive buffer. */
unsigned char *bench_own_block(const bench_backend_t *backend, const bench_slot_t *slot, const bench_layout_t *layout,
                               size_t element_size);

/* Write the check inputs of this rank into slot and poison every element the collective must
 * overwrite. */
void bench_prepare_check(const bench_options_t *options, const bench_backend_t *backend, const bench_slot_t *slot,
                         const bench_layout_t *layout, int in_place);

/* Count the wrong elements of this rank's output in slot after a call prepared by bench_prepare_check. */
size_t bench_count_wrong(const bench_options_t *options, const bench_backend_t *backend, const bench_slot_t *slot,
                         const bench_layout_t *layout, int in_place);

/* Seconds of the monotonic clock. */
double bench_now(void);

/* Median of count values (the upper one of the middle two for an even count); sorts values. */
double bench_median(double *values, int count);

/* Warm up, then measure every size of the sweep; rank 0 prints the table header and rows. */
void bench_run_sweep(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals);

#endif /* BENCH_SWEEP_H */
