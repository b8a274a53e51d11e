/* Result table in the nccl-tests layout (see bench_report.h). */
#include "bench_report.h"

#include <stdio.h>

bench_layout_t bench_layout(bench_collective_t collective, size_t requested_bytes, size_t element_size,
                            int nranks)
{
    bench_layout_t layout;
    size_t elements = requested_bytes / element_size;
    size_t block = elements / (size_t)nranks;

    switch (collective) {
    case BENCH_ALLGATHER:
        layout.count = block;
        layout.send_count = block;
        layout.recv_count = block * (size_t)nranks;
        layout.bytes = layout.recv_count * element_size;
        break;
    case BENCH_REDUCESCATTER:
        layout.count = block;
        layout.send_count = block * (size_t)nranks;
        layout.recv_count = block;
        layout.bytes = layout.send_count * element_size;
        break;
    default:
        layout.count = elements;
        layout.send_count = elements;
        layout.recv_count = elements;
        layout.bytes = elements * element_size;
        break;
    }
    return layout;
}

double bench_bus_factor(bench_collective_t collective, int nranks)
{
    double n = (double)nranks;
    switch (collective) {
    case BENCH_ALLREDUCE:
    case BENCH_ALLREDUCE_MULTI: return 2.0 * (n - 1.0) / n;
    case BENCH_ALLGATHER:
    case BENCH_REDUCESCATTER: return (n - 1.0) / n;
    case BENCH_BROADCAST: return 1.0;
    }
    return 1.0;
}

void bench_print_parameters(const bench_options_t *options)
{
    int factor = options->step_factor > 1;
    printf("# minBytes %zu maxBytes %zu step: %zu(%s) warmup iters: %d iters: %d validation: %d "
           "time: %s\n",
           options->min_bytes, options->max_bytes, factor ? options->step_factor : options->step_bytes,
           factor ? "factor" : "bytes", options->warmup_iters, options->iters, options->check_iters,
           bench_time_reduction_name(options->time_reduction));
    if (options->max_seconds > 0)
        printf("# --max-seconds %g: fewer than %d timed iterations where one pilot call predicts more than %g s\n",
               options->max_seconds, options->iters, options->max_seconds);
    if (options->overlap)
        return;
    if (options->nonblocking && options->window > 1)
        printf("# non-blocking: %d calls issued on distinct buffers, then a wait on each; time per call\n",
               options->window);
    else if (options->nonblocking)
        printf("# non-blocking: each call is issued, then waited on\n");
}

void bench_print_table_header(const bench_options_t *options)
{
    bench_print_parameters(options);
    printf("#\n");
    printf("# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          \n",
           "", "", "", "", "");
    printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s\n", "size", "count", "type",
           "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
    printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s\n", "(B)", "(elements)", "",
           "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
}

/* Print the four columns of one measurement and add it to the totals. */
static void print_measure(const bench_measure_t *measure, size_t bytes, double bus_factor,
                          bench_totals_t *totals)
{
    double microseconds = measure->seconds * 1.0e6;
    double algorithm_bandwidth = measure->seconds > 0 ? (double)bytes / 1.0e9 / measure->seconds : 0.0;
    double bus_bandwidth = algorithm_bandwidth * bus_factor;

    /* Seven characters whatever the magnitude: fewer decimals for longer times. */
    if (microseconds >= 10000.0)
        printf("  %7.0f", microseconds);
    else if (microseconds >= 100.0)
        printf("  %7.1f", microseconds);
    else
        printf("  %7.2f", microseconds);
    printf("  %6.2f  %6.2f", algorithm_bandwidth, bus_bandwidth);
    if (measure->wrong < 0)
        printf("  %5s", "N/A");
    else
        printf("  %5lld", (long long)measure->wrong);

    totals->bus_bandwidth_sum += bus_bandwidth;
    totals->measurements++;
    if (measure->wrong > 0)
        totals->failed_measurements++;
}

void bench_print_row(const bench_options_t *options, const bench_layout_t *layout, int nranks,
                     const bench_measure_t *out_of_place, const bench_measure_t *in_place,
                     bench_totals_t *totals)
{
    const char *op = bench_collective_reduces(options->collective) ? bench_op_name(options->op) : "none";
    int root = options->collective == BENCH_BROADCAST ? options->root : -1;
    double bus_factor = bench_bus_factor(options->collective, nranks);

    printf("%12zu  %12zu  %8s  %6s  %6d", layout->bytes, layout->count, bench_type_name(options->type), op,
           root);
    print_measure(out_of_place, layout->bytes, bus_factor, totals);
    print_measure(in_place, layout->bytes, bus_factor, totals);
    printf("\n");
    fflush(stdout);
}

int bench_print_summary(const bench_totals_t *totals)
{
    double average = totals->measurements > 0 ? totals->bus_bandwidth_sum / totals->measurements : 0.0;

    printf("# Out of bounds values : %d %s\n", totals->failed_measurements,
           totals->failed_measurements != 0 ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %g \n", average);
    printf("#\n");
    fflush(stdout);
    return totals->failed_measurements != 0;
}
