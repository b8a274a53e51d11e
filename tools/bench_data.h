/*
 * Check data of the benchmarks: input values that every rank can recompute for every other rank,
 * and exact comparison of collective outputs against a reference computed here.
 *
 * Inputs are integers from -5 to 112 (signed powers of two for floating-point
 * products), so every sum, product, minimum, maximum and average is exact in every datatype and in
 * any reduction order. Integer overflow wraps modulo 2^bits, as the weft contract defines it, and
 * the reference wraps the same way. Limits:
 * - bfloat16 represents integers exactly only up to 256 (half up to 2048). With
 *   WEFT_REDUCE_PRECISION=native, which sends 16-bit partial sums, sums and averages over more
 *   than 32 bfloat16 ranks (256 half ranks) may round and count as wrong.
 * - half products overflow to infinity beyond 2^15, and the reference then expects infinity too.
 * - Integer products use odd factors, so they wrap but never reach 0.
 */
#ifndef BENCH_DATA_H
#define BENCH_DATA_H

#include <stddef.h>

#include "bench_options.h"

/*
 * Fill count elements of buf with the reduction input of `rank` at global indices
 * first_index .. first_index + count - 1.
 */
void bench_fill_reduce_input(bench_type_t type, bench_op_t op, int rank, int nranks, size_t first_index,
                             void *buf, size_t count);

/* Fill count elements of buf with the data block of `rank` for all-gather and broadcast. */
void bench_fill_data(bench_type_t type, int rank, void *buf, size_t count);

/* Overwrite count elements with a pattern (bytes 0xA5) that equals no expected value, except
 * where a wrapping 8-bit integer sum or product happens to reach it. */
void bench_poison(bench_type_t type, void *buf, size_t count);

/*
 * Count the elements of out that differ from the reduction over all nranks of the inputs at global
 * indices first_index .. first_index + count - 1. Floating-point values compare as numbers:
 * -0 equals +0 and NaN equals nothing.
 */
size_t bench_count_wrong_reduce(bench_type_t type, bench_op_t op, int nranks, size_t first_index,
                                const void *out, size_t count);

/* Count the elements of out that differ from the data block of source_rank. */
size_t bench_count_wrong_data(bench_type_t type, int source_rank, const void *out, size_t count);

#endif /* BENCH_DATA_H */
