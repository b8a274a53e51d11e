/* Measurement loop of the benchmarks (see bench_sweep.h). */
#include "bench_sweep.h"

#include <string.h>
#include <time.h>

#include "bench_data.h"

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

unsigned char *bench_own_block(const bench_backend_t *backend, const bench_layout_t *layout, size_t element_size)
{
    return backend->recv + (size_t)backend->rank * layout->count * element_size;
}

/* Where this rank's reduce-scatter result lands. */
static unsigned char *scatter_output(const bench_backend_t *backend, const bench_layout_t *layout,
                                     size_t element_size, int in_place)
{
    if (in_place && !backend->scatter_in_place_at_start)
        return bench_own_block(backend, layout, element_size);
    return backend->recv;
}

/* Write the check inputs of this rank and poison every element the collective must overwrite. */
static void prepare_check(const bench_options_t *options, const bench_backend_t *backend,
                          const bench_layout_t *layout, int in_place)
{
    bench_type_t type = options->type;
    size_t element_size = bench_type_size(type);
    int rank = backend->rank;

    switch (options->collective) {
    case BENCH_ALLREDUCE:
    case BENCH_REDUCESCATTER:
        /* Reduce-scatter in place reads all nranks blocks from the receive buffer. */
        bench_fill_reduce_input(type, options->op, rank, backend->nranks, 0, in_place ? backend->recv : backend->send,
                                layout->send_count);
        if (!in_place)
            bench_poison(type, backend->recv, layout->recv_count);
        break;
    case BENCH_ALLGATHER:
        bench_poison(type, backend->recv, layout->recv_count);
        bench_fill_data(type, rank, in_place ? bench_own_block(backend, layout, element_size) : backend->send,
                        layout->count);
        break;
    case BENCH_BROADCAST: {
        unsigned char *buf = in_place ? backend->recv : backend->send;
        if (rank == options->root)
            bench_fill_data(type, options->root, buf, layout->count);
        else
            bench_poison(type, buf, layout->count);
        break;
    }
    }
}

/* Count the wrong elements of this rank's output after a run prepared by prepare_check. */
static size_t count_wrong(const bench_options_t *options, const bench_backend_t *backend,
                          const bench_layout_t *layout, int in_place)
{
    bench_type_t type = options->type;
    size_t element_size = bench_type_size(type);
    size_t wrong = 0;

    switch (options->collective) {
    case BENCH_ALLREDUCE:
        return bench_count_wrong_reduce(type, options->op, backend->nranks, 0, backend->recv, layout->count);
    case BENCH_REDUCESCATTER:
        return bench_count_wrong_reduce(type, options->op, backend->nranks, (size_t)backend->rank * layout->count,
                                        scatter_output(backend, layout, element_size, in_place), layout->count);
    case BENCH_ALLGATHER:
        for (int source = 0; source < backend->nranks; source++) {
            const unsigned char *block = backend->recv + (size_t)source * layout->count * element_size;
            wrong += bench_count_wrong_data(type, source, block, layout->count);
        }
        return wrong;
    case BENCH_BROADCAST:
        return bench_count_wrong_data(type, options->root, in_place ? backend->recv : backend->send,
                                      layout->count);
    }
    return wrong;
}

/*
 * Time options->iters back-to-back calls after one untimed call and a barrier. The buffers start
 * zeroed so that repeated in-place reductions never reach infinities or subnormals.
 */
static double time_collective(const bench_options_t *options, const bench_backend_t *backend,
                              const bench_layout_t *layout, int in_place)
{
    memset(backend->send, 0, layout->bytes);
    memset(backend->recv, 0, layout->bytes);
    backend->run(backend->context, layout, in_place);
    backend->barrier(backend->context);

    double start = now_seconds();
    for (int iter = 0; iter < options->iters; iter++)
        backend->run(backend->context, layout, in_place);
    double seconds = (now_seconds() - start) / options->iters;
    return backend->combine_time(backend->context, seconds, options->time_reduction);
}

/* Run the checked iterations, which are never timed. Returns the maximum wrong count over ranks,
 * or -1 when -c is 0. */
static int64_t check_collective(const bench_options_t *options, const bench_backend_t *backend,
                                const bench_layout_t *layout, int in_place)
{
    int64_t wrong = options->check_iters > 0 ? 0 : -1;

    for (int iter = 0; iter < options->check_iters && wrong == 0; iter++) {
        prepare_check(options, backend, layout, in_place);
        backend->run(backend->context, layout, in_place);
        wrong = backend->max_over_ranks(backend->context, (int64_t)count_wrong(options, backend, layout, in_place));
    }
    return wrong;
}

/* Untimed out-of-place calls at the largest and the smallest size, as nccl-tests does. */
static void warm_up(const bench_options_t *options, const bench_backend_t *backend)
{
    size_t element_size = bench_type_size(options->type);
    bench_layout_t largest = bench_layout(options->collective, options->max_bytes, element_size, backend->nranks);
    bench_layout_t smallest = bench_layout(options->collective, options->min_bytes, element_size, backend->nranks);

    for (int iter = 0; iter < options->warmup_iters; iter++)
        backend->run(backend->context, &largest, 0);
    for (int iter = 0; iter < options->warmup_iters; iter++)
        backend->run(backend->context, &smallest, 0);
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
