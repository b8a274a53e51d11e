/*
 * allreduce_multi mode of weft-bench: one all-reduce over many buffers of gradient-bucket sizes,
 * against one all-reduce per buffer.
 */
#ifndef BENCH_MULTI_H
#define BENCH_MULTI_H

#include "bench_options.h"
#include "bench_report.h"
#include "bench_sweep.h"

/*
 * Reduce options->buffers buffers of options->min_bytes to options->max_bytes, in place, with one
 * run_multi call and with one call per buffer (blocking run, or with -B an issue per buffer and then
 * a wait on each). Both forms are timed and checked; rank 0 prints one row with both times and
 * their ratio. Exits the process when the buffers cannot be allocated.
 */
void bench_run_multi(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals);

#endif /* BENCH_MULTI_H */
