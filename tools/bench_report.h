/*
 * Result table of the benchmarks, printed with the columns, widths and definitions of nccl-tests
 * so that tools which parse nccl-tests output read ours too.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "bench_options.h"

/* Buffer layout of one size of the sweep. */
typedef struct {
    size_t bytes;      /* size column: all-reduce and broadcast count, all-gather receive and
                          reduce-scatter send buffer of nranks blocks, times the element size */
    size_t count;      /* count column: the count argument of the call (per rank for all-gather
                          and reduce-scatter) */
    size_t send_count; /* elements read from the send buffer */
    size_t recv_count; /* elements written to the receive buffer */
} bench_layout_t;

/* Layout of a requested size, rounded down to whole elements and, where needed, nranks blocks. */
bench_layout_t bench_layout(bench_collective_t collective, size_t requested_bytes, size_t element_size,
                            int nranks);

/* Bus bandwidth factor of nccl-tests: 2(n-1)/n for all-reduce, (n-1)/n for all-gather and
 * reduce-scatter, 1 for broadcast. */
double bench_bus_factor(bench_collective_t collective, int nranks);

/* One timed measurement: time in seconds per iteration and wrong elements (-1: not checked). */
typedef struct {
    double seconds;
    int64_t wrong;
} bench_measure_t;

/* Sums that feed the two summary lines. */
typedef struct {
    double bus_bandwidth_sum; /* GB/s, over every measurement */
    int measurements;
    int failed_measurements; /* measurements with at least one wrong element */
} bench_totals_t;

/* Print the parameter line, and with -B or -W the line that describes the non-blocking mode. */
void bench_print_parameters(const bench_options_t *options);

/* Print the parameter lines and the three column header lines. */
void bench_print_table_header(const bench_options_t *options);

/* Print one row: layout columns, then the out-of-place and in-place measurements. */
void bench_print_row(const bench_options_t *options, const bench_layout_t *layout, int nranks,
                     const bench_measure_t *out_of_place, const bench_measure_t *in_place,
                     bench_totals_t *totals);

/* Print "# Out of bounds values" and "# Avg bus bandwidth"; returns 1 when a check failed. */
int bench_print_summary(const bench_totals_t *totals);

#endif /* BENCH_REPORT_H */
