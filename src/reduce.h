/*
 * Datatypes and reduction kernels.
 *
 * A reduction moves "partials" between ranks. The partial type is the user's element type, except:
 * - float16 and bfloat16 accumulate in float32 unless WEFT_REDUCE_PRECISION=native;
 * - WEFT_AVG on 8- and 32-bit integers accumulates in int64 (uint64 for unsigned), and on int64 and
 *   uint64 in 128-bit integers, so the sum cannot overflow before the division.
 * Kernels are element-wise and may be called on any sub-range, so the collective layer can pipeline.
 * They are deterministic: the same inputs in the same order give bitwise the same output on every
 * rank and every CPU, whichever vector path runs.
 */
#ifndef WF_REDUCE_H
#define WF_REDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

#define WF_DATATYPE_COUNT 10
#define WF_OP_COUNT 5

/* Element size in bytes of a public datatype; 0 for a value outside the enum. */
size_t wf_datatype_size(weft_datatype_t type);

/* "float32", "bfloat16", ... or NULL for a value outside the enum. */
const char *wf_datatype_name(weft_datatype_t type);
const char *wf_op_name(weft_op_t op);

/*
 * A reduction plan for one (datatype, op, precision): partial element size and the kernels.
 * All kernels take element counts, never bytes. Buffers of one call may not overlap, except that
 * dst may equal the first input where stated.
 */
typedef struct {
    weft_datatype_t type;
    weft_op_t op;
    size_t user_size;    /* bytes per user element */
    size_t partial_size; /* bytes per partial element on the wire */

    /* partial[i] = convert(user[i]) */
    void (*to_partial)(void *partial, const void *user, size_t n);
    /* dst[i] = dst[i] (op) src[i], both partials */
    void (*reduce_partial)(void *dst, const void *src, size_t n);
    /* dst[i] = dst[i] (op) convert(user[i]); dst is partial, user is the user type */
    void (*reduce_user)(void *dst, const void *user, size_t n);
    /* user[i] = finish(partial[i]): AVG divides by nranks, 16-bit floats round to nearest even */
    void (*finish)(void *user, const void *partial, size_t n, int nranks);
    /* user_dst[i] = finish(partial[i] (op) convert(user_src[i])), fusing the last step of a ring */
    void (*reduce_finish)(void *user_dst, const void *partial, const void *user_src, size_t n, int nranks);
    /* partial[i] = convert(user_a[i]) (op) convert(user_b[i]): the first step from two raw inputs */
    void (*reduce_pair)(void *partial, const void *user_a, const void *user_b, size_t n);
    /* user_dst[i] = finish(convert(user_a[i]) (op) convert(user_b[i])): two inputs, one pass */
    void (*reduce_pair_finish)(void *user_dst, const void *user_a, const void *user_b, size_t n, int nranks);
} wf_reduce_plan_t;

/*
 * Fill *plan for (type, op). native_precision != 0 keeps 16-bit floats as 16-bit partials (each
 * step rounds). Returns 0, or -1 when type or op is outside the enum.
 */
int wf_reduce_plan(wf_reduce_plan_t *plan, weft_datatype_t type, weft_op_t op, int native_precision);

/* IEEE binary16 and bfloat16 conversions; the narrowing ones round to nearest even, NaN stays NaN. */
float wf_half_to_float(uint16_t h);
uint16_t wf_float_to_half(float f);
float wf_bfloat16_to_float(uint16_t b);
uint16_t wf_float_to_bfloat16(float f);

/* Name of the vector path the kernels dispatched to at run time: "avx512", "avx2" or "scalar". */
const char *wf_reduce_isa(void);

#endif /* WF_REDUCE_H */
