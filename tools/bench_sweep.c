/* Measurement loop of the benchmarks (see bench_sweep.h). */
#include "bench_sweep.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_data.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *values, int count)
{
    qsort(values, (size_t)count, sizeof(values[0]), compare_doubles);
    return values[count / 2];
}

unsigned char *bench_own_block(const bench_backend_t *backend, const bench_slot_t *slot, const bench_layout_t *layout,
                               size_t element_size)
{
    return slot->recv + (size_t)backend->rank * layout->count * element_size;
}

/* Where this rank's reduce-scatter result lands. */
static unsigned char *scatter_output(const bench_backend_t *backend, const bench_slot_t *slot,
                                     const bench_layout_t *layout, size_t element_size, int in_place)
{
    if (in_place && !backend->scatter_in_place_at_start)
        return bench_own_block(backend, slot, layout, element_size);
    return slot->recv;
}

void bench_prepare_check(const bench_options_t *options, const bench_backend_t *backend, const bench_slot_t *slot,
                         const bench_layout_t *layout, int in_place)
{
    bench_type_t type = options->type;
    size_t element_size = bench_type_size(type);
    int rank = backend->rank;

    switch (options->collective) {
    case BENCH_ALLREDUCE:
    case BENCH_ALLREDUCE_MULTI:
    case BENCH_REDUCESCATTER:
        /* Reduce-scatter in place reads all nranks blocks from the receive buffer. */
        bench_fill_reduce_input(type, options->op, rank, backend->nranks, 0, in_place ? slot->recv : slot->send,
                                layout->send_count);
        if (!in_place)
            bench_poison(type, slot->recv, layout->recv_count);
        break;
    case BENCH_ALLGATHER:
        bench_poison(type, slot->recv, layout->recv_count);
        bench_fill_data(type, rank, in_place ? bench_own_block(backend, slot, layout, element_size) : slot->send,
                        layout->count);
        break;
    case BENCH_BROADCAST: {
        unsigned char *buf = in_place ? slot->recv : slot->send;
        if (rank == options->root)
            bench_fill_data(type, options->root, buf, layout->count);
        else
            bench_poison(type, buf, layout->count);
        break;
    }
    }
}

size_t bench_count_wrong(const bench_options_t *options, const bench_backend_t *backend, const bench_slot_t *slot,
                         const bench_layout_t *layout, int in_place)
{
    bench_type_t type = options->type;
    size_t element_size = bench_type_size(type);
    size_t wrong = 0;

    switch (options->collective) {
    case BENCH_ALLREDUCE:
    case BENCH_ALLREDUCE_MULTI:
        return bench_count_wrong_reduce(type, options->op, backend->nranks, 0, slot->recv, layout->count);
    case BENCH_REDUCESCATTER:
        return bench_count_wrong_reduce(type, options->op, backend->nranks, (size_t)backend->rank * layout->count,
                                        scatter_output(backend, slot, layout, element_size, in_place), layout->count);
    case BENCH_ALLGATHER:
        for (int source = 0; source < backend->nranks; source++) {
            const unsigned char *block = slot->recv + (size_t)source * layout->count * element_size;
            wrong += bench_count_wrong_data(type, source, block, layout->count);
        }
        return wrong;
    case BENCH_BROADCAST:
        return bench_count_wrong_data(type, options->root, in_place ? slot->recv : slot->send, layout->count);
    }
    return wrong;
}

/* Slots that one round uses: options->window with -B, else the first. */
static int round_slots(const bench_options_t *options)
{
    return options->nonblocking ? options->window : 1;
}

/* One round: a blocking call, or with -B an i-form call on every slot of the window, then a wait on
 * each in issue order. */
static void run_round(const bench_options_t *options, const bench_backend_t *backend, const bench_layout_t *layout,
                      int in_place)
{
    if (!options->nonblocking) {
        backend->run(backend->context, layout, in_place, &backend->slots[0]);
        return;
    }
    for (int slot = 0; slot < options->window; slot++)
        backend->issue(backend->context, layout, in_place, &backend->slots[slot]);
    for (int slot = 0; slot < options->window; slot++)
        backend->wait(backend->context, &backend->slots[slot]);
}

/*
 * Number of timed rounds: options->iters, or with --max-seconds as many as fit in that time at the
 * pace of one pilot round, at least 1. The pilot time is the maximum over ranks, so every rank
 * computes the same number and the ranks keep calling the same collectives.
 */
static int timed_rounds(const bench_options_t *options, const bench_backend_t *backend, const bench_layout_t *layout,
                        int in_place)
{
    if (options->max_seconds <= 0)
        return options->iters;

    double start = bench_now();
    run_round(options, backend, layout, in_place);
    double pilot = backend->combine_time(backend->context, bench_now() - start, BENCH_TIME_MAX);
    backend->barrier(backend->context);
    if (pilot <= 0 || options->max_seconds / pilot >= (double)options->iters)
        return options->iters;
    int rounds = (int)(options->max_seconds / pilot);
    return rounds > 0 ? rounds : 1;
}

/*
 * Time the rounds of timed_rounds after one untimed round and a barrier, and return the time per
 * call. The buffers start zeroed so that repeated in-place reductions never reach infinities or
 * subnormals.
 */
static double time_collective(const bench_options_t *options, const bench_backend_t *backend,
                              const bench_layout_t *layout, int in_place)
{
    int slots = round_slots(options);

    for (int slot = 0; slot < slots; slot++) {
        memset(backend->slots[slot].send, 0, layout->bytes);
        memset(backend->slots[slot].recv, 0, layout->bytes);
    }
    run_round(options, backend, layout, in_place);
    backend->barrier(backend->context);
    int rounds = timed_rounds(options, backend, layout, in_place);

    double start = bench_now();
    for (int iter = 0; iter < rounds; iter++)
        run_round(options, backend, layout, in_place);
    double seconds = (bench_now() - start) / rounds / slots;
    return backend->combine_time(backend->context, seconds, options->time_reduction);
}

/* Run the checked rounds, which are never timed; every slot of a window is checked. Returns the
 * maximum wrong count over ranks, or -1 when -c is 0. */
static int64_t check_collective(const bench_options_t *options, const bench_backend_t *backend,
                                const bench_layout_t *layout, int in_place)
{
    int64_t wrong = options->check_iters > 0 ? 0 : -1;
    int slots = round_slots(options);

    for (int iter = 0; iter < options->check_iters && wrong == 0; iter++) {
        size_t local_wrong = 0;
        for (int slot = 0; slot < slots; slot++)
            bench_prepare_check(options, backend, &backend->slots[slot], layout, in_place);
        run_round(options, backend, layout, in_place);
        for (int slot = 0; slot < slots; slot++)
            local_wrong += bench_count_wrong(options, backend, &backend->slots[slot], layout, in_place);
        wrong = backend->max_over_ranks(backend->context, (int64_t)local_wrong);
    }
    return wrong;
}

/* Untimed out-of-place rounds at the largest and the smallest size, as nccl-tests does. */
static void warm_up(const bench_options_t *options, const bench_backend_t *backend)
{
    size_t element_size = bench_type_size(options->type);
    bench_layout_t largest = bench_layout(options->collective, options->max_bytes, element_size, backend->nranks);
    bench_layout_t smallest = bench_layout(options->collective, options->min_bytes, element_size, backend->nranks);

    for (int iter = 0; iter < options->warmup_iters; iter++)
        run_round(options, backend, &largest, 0);
    for (int iter = 0; iter < options->warmup_iters; iter++)
        run_round(options, backend, &smallest, 0);
}

void bench_run_sweep(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals)
{
    size_t element_size = bench_type_size(options->type);

    memset(totals, 0, sizeof(*totals));
    if (backend->rank == 0)
        bench_print_table_header(options);
    warm_up(options, backend);

    size_t bytes = options->min_bytes;
    for (;;) {
        bench_layout_t layout = bench_layout(options->collective, bytes, element_size, backend->nranks);
        bench_measure_t out_of_place, in_place;

        out_of_place.seconds = time_collective(options, backend, &layout, 0);
        out_of_place.wrong = check_collective(options, backend, &layout, 0);
        in_place.seconds = time_collective(options, backend, &layout, 1);
        in_place.wrong = check_collective(options, backend, &layout, 1);
        if (backend->rank == 0)
            bench_print_row(options, &layout, backend->nranks, &out_of_place, &in_place, totals);

        bytes = bench_next_size(options, bytes);
        if (bytes == 0)
            break;
    }
}
