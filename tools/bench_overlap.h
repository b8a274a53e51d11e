/*
 * Overlap measurement of weft-bench (-O): how much of a non-blocking collective a computation
 * running between its issue and its wait hides. Uses the backend's issue, test and wait.
 */
#ifndef BENCH_OVERLAP_H
#define BENCH_OVERLAP_H

#include "bench_options.h"
#include "bench_report.h"
#include "bench_sweep.h"

/*
 * For every size of the sweep, out of place: t_comm (issue + wait), t_compute (a busy loop on a
 * private buffer sized to last about t_comm) and t_total (issue, the same busy loop with a test call
 * about every 50 us, wait), each combined over ranks as -a selects. Rank 0 prints one row per size with
 * overlap = (t_comm + t_compute - t_total) / min(t_comm, t_compute) in percent.
 */
void bench_run_overlap(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals);

#endif /* BENCH_OVERLAP_H */
