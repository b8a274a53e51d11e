/* allreduce_multi mode of weft-bench (see bench_multi.h). */
#include "bench_multi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_data.h"

/* Buffer alignment: page size, as the other modes use. */
#define BUFFER_ALIGNMENT 4096

/* The buffers of one run, each with its own slot for the per-buffer calls. */
typedef struct {
    int nbufs;
    void **bufs;
    size_t *counts;
    size_t *first_index;  /* index of each buffer's first element in the concatenation of all buffers */
    bench_slot_t *slots;  /* slots[b].recv == bufs[b] */
    size_t total_bytes;
} bucket_set_t;

/* The two ways of reducing the whole set. */
typedef enum { FORM_PER_BUFFER, FORM_MULTI } multi_form_t;

static void *allocate_or_exit(const bench_backend_t *backend, size_t bytes, const char *purpose)
{
    void *memory = NULL;
    int error = posix_memalign(&memory, BUFFER_ALIGNMENT, bytes > 0 ? bytes : 1);
    if (error != 0) {
        fprintf(stderr, "weft-bench: rank %d: cannot allocate %zu bytes for %s: %s; lower --buffers or -e\n",
                backend->rank, bytes, purpose, strerror(error));
        exit(1);
    }
    return memory;
}

/* Buffer sizes spaced evenly on a log scale from min_bytes to max_bytes, rounded down to whole
 * elements, so the set is the same on every rank and in every run. */
static void create_buckets(const bench_options_t *options, const bench_backend_t *backend, bucket_set_t *set)
{
    int nbufs = options->buffers;
    size_t element_size = bench_type_size(options->type);
    double ratio = (double)options->max_bytes / (double)options->min_bytes;

    set->nbufs = nbufs;
    set->bufs = allocate_or_exit(backend, (size_t)nbufs * sizeof(*set->bufs), "the buffer list");
    set->counts = allocate_or_exit(backend, (size_t)nbufs * sizeof(*set->counts), "the buffer counts");
    set->first_index = allocate_or_exit(backend, (size_t)nbufs * sizeof(*set->first_index), "the buffer offsets");
    set->slots = allocate_or_exit(backend, (size_t)nbufs * sizeof(*set->slots), "the requests");
    set->total_bytes = 0;

    size_t first_index = 0;
    for (int b = 0; b < nbufs; b++) {
        double position = nbufs > 1 ? (double)b / (double)(nbufs - 1) : 0.0;
        size_t bytes = (size_t)((double)options->min_bytes * pow(ratio, position));
        /* pow may round the last size just below or above the largest. */
        if (bytes > options->max_bytes || (nbufs > 1 && b == nbufs - 1))
            bytes = options->max_bytes;
        set->counts[b] = bytes / element_size;
        set->first_index[b] = first_index;
        set->bufs[b] = allocate_or_exit(backend, set->counts[b] * element_size, "a bucket");
        set->slots[b] = (bench_slot_t){.send = set->bufs[b], .recv = set->bufs[b], .request = NULL};
        first_index += set->counts[b];
        set->total_bytes += set->counts[b] * element_size;
    }
}

static void destroy_buckets(bucket_set_t *set)
{
    for (int b = 0; b < set->nbufs; b++)
        free(set->bufs[b]);
    free(set->bufs);
    free(set->counts);
    free(set->first_index);
    free(set->slots);
}

static void run_form(const bench_options_t *options, const bench_backend_t *backend, bucket_set_t *set,
                     multi_form_t form)
{
    size_t element_size = bench_type_size(options->type);

    if (form == FORM_MULTI) {
        backend->run_multi(backend->context, set->bufs, set->counts, set->nbufs);
        return;
    }
    for (int b = 0; b < set->nbufs; b++) {
        bench_layout_t layout = bench_layout(BENCH_ALLREDUCE, set->counts[b] * element_size, element_size,
                                             backend->nranks);
        if (options->nonblocking)
            backend->issue(backend->context, &layout, 1, &set->slots[b]);
        else
            backend->run(backend->context, &layout, 1, &set->slots[b]);
    }
    if (options->nonblocking) {
        for (int b = 0; b < set->nbufs; b++)
            backend->wait(backend->context, &set->slots[b]);
    }
}

/*
 * Time options->iters iterations of both forms on zeroed buffers, after one untimed call of each.
 * Each iteration runs the two forms in turn after a barrier each, so that a burst of load from other
 * processes falls on both alike, and each time is the median over iterations, combined over ranks.
 */
static void time_forms(const bench_options_t *options, const bench_backend_t *backend, bucket_set_t *set,
                       double *samples, double *per_buffer, double *multi)
{
    size_t element_size = bench_type_size(options->type);
    int iters = options->iters;

    for (int b = 0; b < set->nbufs; b++)
        memset(set->bufs[b], 0, set->counts[b] * element_size);
    run_form(options, backend, set, FORM_PER_BUFFER);
    run_form(options, backend, set, FORM_MULTI);

    for (int iter = 0; iter < iters; iter++) {
        for (int form = FORM_PER_BUFFER; form <= FORM_MULTI; form++) {
            backend->barrier(backend->context);
            double start = bench_now();
            run_form(options, backend, set, (multi_form_t)form);
            samples[form * iters + iter] = bench_now() - start;
        }
    }
    *per_buffer = backend->combine_time(backend->context, bench_median(samples + FORM_PER_BUFFER * iters, iters),
                                        options->time_reduction);
    *multi = backend->combine_time(backend->context, bench_median(samples + FORM_MULTI * iters, iters),
                                   options->time_reduction);
}

/* Checked calls of one form. Each buffer contains the inputs of its place in the concatenation, so a
 * buffer reduced into another one's place shows up. Returns the maximum wrong count over ranks, or -1. */
static int64_t check_form(const bench_options_t *options, const bench_backend_t *backend, bucket_set_t *set,
                          multi_form_t form)
{
    int64_t wrong = options->check_iters > 0 ? 0 : -1;

    for (int iter = 0; iter < options->check_iters && wrong == 0; iter++) {
        size_t local_wrong = 0;
        for (int b = 0; b < set->nbufs; b++)
            bench_fill_reduce_input(options->type, options->op, backend->rank, backend->nranks, set->first_index[b],
                                    set->bufs[b], set->counts[b]);
        run_form(options, backend, set, form);
        for (int b = 0; b < set->nbufs; b++)
            local_wrong += bench_count_wrong_reduce(options->type, options->op, backend->nranks, set->first_index[b],
                                                    set->bufs[b], set->counts[b]);
        wrong = backend->max_over_ranks(backend->context, (int64_t)local_wrong);
    }
    return wrong;
}

static void print_header(const bench_options_t *options, const bucket_set_t *set)
{
    size_t element_size = bench_type_size(options->type);

    bench_print_parameters(options);
    printf("# allreduce_multi: %d buffers in place, %zu to %zu bytes spaced evenly on a log scale, %.1f MiB in all\n"
           "#   per-buffer: %s; multi: one weft_allreduce_multi call\n"
           "#   ratio = per-buffer time / multi time: above 1, weft_allreduce_multi is faster. Each time is the\n"
           "#   median over the iterations, which run the two forms in turn.\n",
           set->nbufs, set->counts[0] * element_size, set->counts[set->nbufs - 1] * element_size,
           (double)set->total_bytes / (1 << 20),
           options->nonblocking ? "one weft_iallreduce per buffer, then a wait on each" : "one weft_allreduce per buffer");
    printf("#\n");
    printf("# %7s  %10s  %10s  %12s  %8s  %6s  %11s  %6s  %11s  %6s  %6s\n", "buffers", "smallest", "largest",
           "total", "type", "redop", "per-buffer", "#wrong", "multi", "#wrong", "ratio");
    printf("# %7s  %10s  %10s  %12s  %8s  %6s  %11s  %6s  %11s  %6s  %6s\n", "", "(B)", "(B)", "(B)", "", "", "(us)",
           "", "(us)", "", "");
}

/* Add one measurement to the totals; its bus bandwidth counts the whole set as one all-reduce. */
static void add_to_totals(const bucket_set_t *set, int nranks, double seconds, int64_t wrong, bench_totals_t *totals)
{
    double algorithm_bandwidth = seconds > 0 ? (double)set->total_bytes / 1.0e9 / seconds : 0.0;
    totals->bus_bandwidth_sum += algorithm_bandwidth * bench_bus_factor(BENCH_ALLREDUCE, nranks);
    totals->measurements++;
    if (wrong > 0)
        totals->failed_measurements++;
}

static void print_wrong(int64_t wrong)
{
    if (wrong < 0)
        printf("  %6s", "N/A");
    else
        printf("  %6lld", (long long)wrong);
}

void bench_run_multi(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals)
{
    size_t element_size = bench_type_size(options->type);
    bucket_set_t set;

    memset(totals, 0, sizeof(*totals));
    create_buckets(options, backend, &set);
    if (backend->rank == 0)
        print_header(options, &set);
    for (int iter = 0; iter < options->warmup_iters; iter++) {
        run_form(options, backend, &set, FORM_PER_BUFFER);
        run_form(options, backend, &set, FORM_MULTI);
    }

    double *samples = allocate_or_exit(backend, 2 * (size_t)options->iters * sizeof(*samples), "the time samples");
    double per_buffer = 0.0, multi = 0.0;
    time_forms(options, backend, &set, samples, &per_buffer, &multi);
    free(samples);
    int64_t per_buffer_wrong = check_form(options, backend, &set, FORM_PER_BUFFER);
    int64_t multi_wrong = check_form(options, backend, &set, FORM_MULTI);

    if (backend->rank == 0) {
        printf("  %7d  %10zu  %10zu  %12zu  %8s  %6s  %11.1f", set.nbufs, set.counts[0] * element_size,
               set.counts[set.nbufs - 1] * element_size, set.total_bytes, bench_type_name(options->type),
               bench_op_name(options->op), per_buffer * 1e6);
        print_wrong(per_buffer_wrong);
        printf("  %11.1f", multi * 1e6);
        print_wrong(multi_wrong);
        printf("  %6.2f\n", multi > 0 ? per_buffer / multi : 0.0);
        fflush(stdout);
        add_to_totals(&set, backend->nranks, per_buffer, per_buffer_wrong, totals);
        add_to_totals(&set, backend->nranks, multi, multi_wrong, totals);
    }
    destroy_buckets(&set);
}
