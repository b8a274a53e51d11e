/* Overlap measurement of weft-bench (see bench_overlap.h). */
#include "bench_overlap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One unit of computation is a pass over this many floats: 4 KiB, which stays in the L1 cache, so
 * the busy loop competes with communication for the core and not for memory bandwidth. */
#define COMPUTE_FLOATS 1024

/* Computation between two test calls, so that without a progress thread the collective advances. */
#define TEST_INTERVAL_SECONDS 50e-6

/* Calibration: grow the unit count until one run lasts this long, then take the median rate of a
 * few runs. */
#define CALIBRATION_SECONDS 2e-3
#define CALIBRATION_RUNS 5

/* Sizing of the busy loop at each size: rounds of up to CALIBRATION_RUNS pilot iterations. */
#define SIZING_ROUNDS 3

typedef struct {
    float data[COMPUTE_FLOATS]; /* private buffer of the busy loop */
    double units_per_second;
    long units_per_test;        /* units between two test calls, about TEST_INTERVAL_SECONDS */
} compute_t;

/* Keeps the compiler from dropping the busy loop. */
static volatile float compute_sink;

/* Run units passes of multiply-adds over the private buffer. Each value converges to 1.0, so no
 * pass ever meets an infinity or a subnormal. */
static void compute(compute_t *compute_state, long units)
{
    float *data = compute_state->data;

    for (long unit = 0; unit < units; unit++) {
        for (int i = 0; i < COMPUTE_FLOATS; i++)
            data[i] = data[i] * 0.999f + 0.001f;
    }
    compute_sink = data[0];
}

static double time_compute(compute_t *compute_state, long units)
{
    double start = bench_now();
    compute(compute_state, units);
    return bench_now() - start;
}

/* Median of `runs` timings of compute(units), at most CALIBRATION_RUNS. */
static double median_compute_seconds(compute_t *compute_state, long units, int runs)
{
    double seconds[CALIBRATION_RUNS];

    for (int run = 0; run < runs; run++)
        seconds[run] = time_compute(compute_state, units);
    return bench_median(seconds, runs);
}

static void set_rate(compute_t *compute_state, double units_per_second)
{
    compute_state->units_per_second = units_per_second;
    compute_state->units_per_test = (long)(units_per_second * TEST_INTERVAL_SECONDS);
    if (compute_state->units_per_test < 1)
        compute_state->units_per_test = 1;
}

static void calibrate(compute_t *compute_state)
{
    long units = 1;

    for (int i = 0; i < COMPUTE_FLOATS; i++)
        compute_state->data[i] = (float)i / COMPUTE_FLOATS;
    while (time_compute(compute_state, units) < CALIBRATION_SECONDS)
        units *= 2;
    set_rate(compute_state, (double)units / median_compute_seconds(compute_state, units, CALIBRATION_RUNS));
}

/* Compute units in steps of units_per_test. After each step, test slot's call until it has
 * completed; slot NULL computes without any test call. */
static void compute_and_test(const bench_backend_t *backend, compute_t *compute_state, long units,
                             bench_slot_t *slot)
{
    int done = slot == NULL;

    for (long left = units; left > 0;) {
        long step = left < compute_state->units_per_test ? left : compute_state->units_per_test;
        compute(compute_state, step);
        left -= step;
        if (!done)
            done = backend->test(backend->context, slot);
    }
}

/* Times of one size: medians over iterations, in seconds, combined over ranks. */
typedef struct {
    double comm;
    double compute;
    double total;
    int64_t wrong; /* -1 when not checked */
} overlap_times_t;

/* The three timed phases of one iteration. */
typedef enum {
    PHASE_COMM,    /* issue + wait */
    PHASE_COMPUTE, /* the busy loop alone */
    PHASE_TOTAL,   /* issue, busy loop with test calls, wait */
    PHASE_COUNT
} overlap_phase_t;

/* Issue, compute units with test calls (none when units is 0), wait. */
static void overlapped_call(const bench_backend_t *backend, compute_t *compute_state, const bench_layout_t *layout,
                            long units)
{
    bench_slot_t *slot = &backend->slots[0];

    backend->issue(backend->context, layout, 0, slot);
    compute_and_test(backend, compute_state, units, slot);
    backend->wait(backend->context, slot);
}

/* Run one phase after a barrier, so that no rank's time includes another rank's previous phase.
 * Returns its seconds on this rank. */
static double time_phase(const bench_backend_t *backend, compute_t *compute_state, const bench_layout_t *layout,
                         long units, overlap_phase_t phase)
{
    backend->barrier(backend->context);
    double start = bench_now();
    if (phase == PHASE_COMPUTE)
        compute_and_test(backend, compute_state, units, NULL);
    else
        overlapped_call(backend, compute_state, layout, phase == PHASE_COMM ? 0 : units);
    return bench_now() - start;
}

/*
 * Return the units of busy loop that last about t_comm. Pilot iterations run the comm and compute
 * phases as the timed loop runs them, and each round rescales the units by the median times,
 * because the rate of the loop changes with the load of the machine. t_comm is combined over
 * ranks, so every rank aims at the same length with its own rate. The test interval follows the
 * measured rate.
 */
static long size_busy_loop(const bench_options_t *options, const bench_backend_t *backend, compute_t *compute_state,
                           const bench_layout_t *layout)
{
    double comm[CALIBRATION_RUNS], compute[CALIBRATION_RUNS];
    int runs = options->iters < CALIBRATION_RUNS ? options->iters : CALIBRATION_RUNS;
    long units = 0; /* 0 in the first round, which times t_comm alone */

    for (int round = 0; round < SIZING_ROUNDS; round++) {
        for (int run = 0; run < runs; run++) {
            comm[run] = time_phase(backend, compute_state, layout, 0, PHASE_COMM);
            if (units > 0)
                compute[run] = time_phase(backend, compute_state, layout, units, PHASE_COMPUTE);
        }
        double target = backend->combine_time(backend->context, bench_median(comm, runs), options->time_reduction);
        if (units > 0)
            set_rate(compute_state, (double)units / bench_median(compute, runs));
        units = (long)(target * compute_state->units_per_second);
        if (units < 1)
            units = 1;
    }
    return units;
}

/* Checked iterations of the overlapped pattern. Returns the maximum wrong count over ranks, or -1. */
static int64_t check_overlapped(const bench_options_t *options, const bench_backend_t *backend,
                                compute_t *compute_state, const bench_layout_t *layout, long units)
{
    int64_t wrong = options->check_iters > 0 ? 0 : -1;

    for (int iter = 0; iter < options->check_iters && wrong == 0; iter++) {
        bench_prepare_check(options, backend, &backend->slots[0], layout, 0);
        overlapped_call(backend, compute_state, layout, units);
        size_t local_wrong = bench_count_wrong(options, backend, &backend->slots[0], layout, 0);
        wrong = backend->max_over_ranks(backend->context, (int64_t)local_wrong);
    }
    return wrong;
}

/*
 * Each iteration runs the three phases one after the other, so that a burst of load from other
 * processes falls on all three alike. Each time is the median over iterations, because the
 * overlap subtracts times, and a mean would let a single descheduled iteration dominate it.
 */
static void measure_size(const bench_options_t *options, const bench_backend_t *backend, compute_t *compute_state,
                         const bench_layout_t *layout, double *samples, overlap_times_t *times)
{
    int iters = options->iters;

    memset(backend->slots[0].send, 0, layout->bytes);
    memset(backend->slots[0].recv, 0, layout->bytes);
    overlapped_call(backend, compute_state, layout, 0);

    long units = size_busy_loop(options, backend, compute_state, layout);
    for (int iter = 0; iter < iters; iter++) {
        for (int phase = 0; phase < PHASE_COUNT; phase++)
            samples[phase * iters + iter] = time_phase(backend, compute_state, layout, units, (overlap_phase_t)phase);
    }
    times->comm = backend->combine_time(backend->context, bench_median(samples + PHASE_COMM * iters, iters),
                                        options->time_reduction);
    times->compute = backend->combine_time(backend->context, bench_median(samples + PHASE_COMPUTE * iters, iters),
                                           options->time_reduction);
    times->total = backend->combine_time(backend->context, bench_median(samples + PHASE_TOTAL * iters, iters),
                                         options->time_reduction);
    times->wrong = check_overlapped(options, backend, compute_state, layout, units);
}

static void print_header(const bench_options_t *options, const compute_t *compute_state)
{
    bench_print_parameters(options);
    printf("# overlap: t_comm = issue + wait; t_compute = busy loop sized to t_comm; t_total = issue, busy loop\n"
           "#   with a test call about every 50 us (%ld units at rank 0's first rate, %.3g units per second), wait.\n"
           "#   Each time is the median over the iterations, which run the three phases in turn.\n"
           "#   overlap = (t_comm + t_compute - t_total) / min(t_comm, t_compute): 100%% hides the\n"
           "#   communication completely, 0%% hides nothing, below 0 the two slowed each other down\n",
           compute_state->units_per_test, compute_state->units_per_second);
    printf("#\n");
    printf("# %10s  %12s  %8s  %6s  %6s  %10s  %10s  %10s  %8s  %6s\n", "size", "count", "type", "redop", "root",
           "t_comm", "t_compute", "t_total", "overlap", "#wrong");
    printf("# %10s  %12s  %8s  %6s  %6s  %10s  %10s  %10s  %8s  %6s\n", "(B)", "(elements)", "", "", "", "(us)",
           "(us)", "(us)", "(%)", "");
}

static void print_row(const bench_options_t *options, const bench_layout_t *layout, int nranks,
                      const overlap_times_t *times, bench_totals_t *totals)
{
    const char *op = bench_collective_reduces(options->collective) ? bench_op_name(options->op) : "none";
    int root = options->collective == BENCH_BROADCAST ? options->root : -1;
    double shorter = times->comm < times->compute ? times->comm : times->compute;
    double overlap = shorter > 0 ? 100.0 * (times->comm + times->compute - times->total) / shorter : 0.0;

    printf("%12zu  %12zu  %8s  %6s  %6d  %10.1f  %10.1f  %10.1f  %8.1f", layout->bytes, layout->count,
           bench_type_name(options->type), op, root, times->comm * 1e6, times->compute * 1e6, times->total * 1e6,
           overlap);
    if (times->wrong < 0)
        printf("  %6s\n", "N/A");
    else
        printf("  %6lld\n", (long long)times->wrong);
    fflush(stdout);

    double algorithm_bandwidth = times->comm > 0 ? (double)layout->bytes / 1.0e9 / times->comm : 0.0;
    totals->bus_bandwidth_sum += algorithm_bandwidth * bench_bus_factor(options->collective, nranks);
    totals->measurements++;
    if (times->wrong > 0)
        totals->failed_measurements++;
}

void bench_run_overlap(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals)
{
    static compute_t compute_state;
    size_t element_size = bench_type_size(options->type);
    bench_layout_t largest = bench_layout(options->collective, options->max_bytes, element_size, backend->nranks);
    bench_layout_t smallest = bench_layout(options->collective, options->min_bytes, element_size, backend->nranks);

    double *samples = malloc((size_t)PHASE_COUNT * (size_t)options->iters * sizeof(*samples));
    if (samples == NULL) {
        fprintf(stderr, "weft-bench: rank %d: cannot allocate the time samples of %d iterations; lower -n\n",
                backend->rank, options->iters);
        exit(1);
    }
    memset(totals, 0, sizeof(*totals));
    calibrate(&compute_state);
    if (backend->rank == 0)
        print_header(options, &compute_state);
    for (int iter = 0; iter < options->warmup_iters; iter++)
        overlapped_call(backend, &compute_state, &largest, 0);
    for (int iter = 0; iter < options->warmup_iters; iter++)
        overlapped_call(backend, &compute_state, &smallest, 0);

    size_t bytes = options->min_bytes;
    for (;;) {
        bench_layout_t layout = bench_layout(options->collective, bytes, element_size, backend->nranks);
        overlap_times_t times;

        measure_size(options, backend, &compute_state, &layout, samples, &times);
        if (backend->rank == 0)
            print_row(options, &layout, backend->nranks, &times, totals);

        bytes = bench_next_size(options, bytes);
        if (bytes == 0)
            break;
    }
    free(samples);
}
