/*
 * Input patterns and the independent reference for coll_check.
 *
 * Every element any rank sends is a pure function of (seed, rank, index, datatype, pattern), so
 * each rank can compute what every other rank sent and the exact expected result without talking
 * to anyone. Float inputs are chosen so that sums and products are exact in float32 (float64 for
 * double) in any order: the result then does not depend on the library's reduction order, and
 * the comparison can be bitwise.
 */
#ifndef CT_COLL_DATA_H
#define CT_COLL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

/* Pattern for data-movement collectives (all-gather, broadcast): arbitrary bits of the type. */
#define CT_PATTERN_MOVE 5

/*
 * Write element `index` of the input of `rank` into element. pattern is a weft_op_t for reduction
 * inputs (the domain depends on the op: products use values whose products stay exact) or
 * CT_PATTERN_MOVE.
 */
void ct_input_element(weft_datatype_t type, int pattern, uint64_t seed, int rank, size_t index,
                      void *element);

/*
 * Write the expected reduction over ranks 0..nranks-1 of input element `index` into element.
 * Integer sum and prod wrap modulo 2^bits. Integer avg is the 128-bit sum divided by nranks and
 * truncated toward zero. float16 and bfloat16 reduce in float32 and are rounded once to nearest
 * even. Float avg divides the float32 sum (float64 for double) by nranks.
 */
void ct_expected_reduction(weft_datatype_t type, weft_op_t op, uint64_t seed, int nranks, size_t index,
                           void *element);

#endif /* CT_COLL_DATA_H */
