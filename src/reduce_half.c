/*
 * IEEE binary16 and bfloat16 conversions of the public interface.
 *
 * The bit manipulation is in reduce_internal.h as inline functions, so the kernels can fuse it into
 * their loops. These wrappers give the rest of weft and the tests one out-of-line copy.
 * Widening is exact and keeps NaN payloads. Narrowing rounds to nearest even, turns values past
 * the largest finite one into infinity, produces subnormals and signed zeros where they belong,
 * and turns every NaN into a quiet NaN of the same sign with the top payload bits.
 */
#include "reduce_internal.h"

float wf_half_to_float(uint16_t h) { return wf_half_bits_to_float(h); }

uint16_t wf_float_to_half(float f) { return wf_float_to_half_bits(f); }

float wf_bfloat16_to_float(uint16_t b) { return wf_bfloat16_bits_to_float(b); }

uint16_t wf_float_to_bfloat16(float f) { return wf_float_to_bfloat16_bits(f); }
