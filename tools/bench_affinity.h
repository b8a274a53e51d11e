/* CPU binding of the ranks that weft-bench -N and ceiling-bench fork themselves. */
#ifndef BENCH_AFFINITY_H
#define BENCH_AFFINITY_H

/*
 * Bind the calling process to one CPU: the index-th, counted modulo their number, of the CPUs it may
 * run on. Ranks 0, 1, 2, ... so go round robin over the CPUs, as mpirun --bind-to core places them
 * on a machine with one hardware thread per core. Returns 0, or -1 after printing an error that
 * starts with program.
 */
int bench_bind_to_cpu(const char *program, int index);

#endif /* BENCH_AFFINITY_H */
