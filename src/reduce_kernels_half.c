/*
 * Reduction kernels of float16 (IEEE binary16) and bfloat16.
 *
 * Wide precision (the default): partials are float32. to_partial and reduce_user widen exactly,
 * the float32 ops of reduce_internal.h combine, and finish rounds to nearest even once, so the
 * only rounding to 16 bits happens at the end. AVG divides the float32 sum by nranks first.
 *
 * Native precision (WEFT_REDUCE_PRECISION=native): partials are the 16-bit values themselves and
 * every combine widens both operands, applies the float32 op and rounds back, which halves the
 * traffic but rounds at each step. AVG divides the rounded 16-bit sum.
 *
 * The conversions are fused into the loops and written with integer operations, so the AVX2 and
 * AVX-512 clones vectorize them without F16C or AVX-512 BF16 instructions.
 */
#include "reduce_internal.h"

#define WF_DEFINE_16BIT_KERNELS(tag, WIDEN, NARROW)                                                \
    static inline uint16_t tag##_round(float partial, int nranks) { return NARROW(partial); } \
    static inline uint16_t tag##_wide_mean(float sum, int nranks)                            \
    {                                                                                              \
        return NARROW(sum / (float)wf_avg_divisor(nranks));                                        \
    }                                                                                              \
    WF_DEFINE_KERNELS(tag##_wide_sum, uint16_t, float, WIDEN, wf_f32_sum, tag##_round,       \
                      WF_KERNEL_CLONES)                                                            \
    WF_DEFINE_KERNELS(tag##_wide_prod, uint16_t, float, WIDEN, wf_f32_prod, tag##_round,     \
                      WF_KERNEL_CLONES)                                                            \
    WF_DEFINE_KERNELS(tag##_wide_min, uint16_t, float, WIDEN, wf_f32_min, tag##_round,       \
                      WF_KERNEL_CLONES)                                                            \
    WF_DEFINE_KERNELS(tag##_wide_max, uint16_t, float, WIDEN, wf_f32_max, tag##_round,       \
                      WF_KERNEL_CLONES)                                                            \
    WF_DEFINE_KERNELS(tag##_wide_avg, uint16_t, float, WIDEN, wf_f32_sum, tag##_wide_mean,   \
                      WF_KERNEL_CLONES)                                                            \
                                                                                                   \
    static inline uint16_t tag##_native_sum_op(uint16_t a, uint16_t b)                             \
    {                                                                                              \
        return NARROW(wf_f32_sum(WIDEN(a), WIDEN(b)));                                             \
    }                                                                                              \
    static inline uint16_t tag##_native_prod_op(uint16_t a, uint16_t b)                            \
    {                                                                                              \
        return NARROW(wf_f32_prod(WIDEN(a), WIDEN(b)));                                            \
    }                                                                                              \
    static inline uint16_t tag##_native_min_op(uint16_t a, uint16_t b)                             \
    {                                                                                              \
        return NARROW(wf_f32_min(WIDEN(a), WIDEN(b)));                                             \
    }                                                                                              \
    static inline uint16_t tag##_native_max_op(uint16_t a, uint16_t b)                             \
    {                                                                                              \
        return NARROW(wf_f32_max(WIDEN(a), WIDEN(b)));                                             \
    }                                                                                              \
    static inline uint16_t tag##_native_mean(uint16_t sum, int nranks)                       \
    {                                                                                              \
        return NARROW(WIDEN(sum) / (float)wf_avg_divisor(nranks));                                 \
    }                                                                                              \
    WF_DEFINE_KERNELS(tag##_native_sum, uint16_t, uint16_t, WF_KEEP, tag##_native_sum_op,          \
                      WF_KEEP_FINISH, WF_KERNEL_CLONES)                                            \
    WF_DEFINE_KERNELS(tag##_native_prod, uint16_t, uint16_t, WF_KEEP, tag##_native_prod_op,        \
                      WF_KEEP_FINISH, WF_KERNEL_CLONES)                                            \
    WF_DEFINE_KERNELS(tag##_native_min, uint16_t, uint16_t, WF_KEEP, tag##_native_min_op,          \
                      WF_KEEP_FINISH, WF_KERNEL_CLONES)                                            \
    WF_DEFINE_KERNELS(tag##_native_max, uint16_t, uint16_t, WF_KEEP, tag##_native_max_op,          \
                      WF_KEEP_FINISH, WF_KERNEL_CLONES)                                            \
    WF_DEFINE_KERNELS(tag##_native_avg, uint16_t, uint16_t, WF_KEEP, tag##_native_sum_op,          \
                      tag##_native_mean, WF_KERNEL_CLONES)

WF_DEFINE_16BIT_KERNELS(fp16, wf_half_bits_to_float, wf_float_to_half_bits)
WF_DEFINE_16BIT_KERNELS(bf16, wf_bfloat16_bits_to_float, wf_float_to_bfloat16_bits)

const wf_reduce_kernels_t wf_reduce_half_wide_kernels[2][WF_OP_COUNT] = {
    [WEFT_FLOAT16 - WEFT_FLOAT16] = WF_KERNELS_ROW(fp16_wide),
    [WEFT_BFLOAT16 - WEFT_FLOAT16] = WF_KERNELS_ROW(bf16_wide),
};

const wf_reduce_kernels_t wf_reduce_half_native_kernels[2][WF_OP_COUNT] = {
    [WEFT_FLOAT16 - WEFT_FLOAT16] = WF_KERNELS_ROW(fp16_native),
    [WEFT_BFLOAT16 - WEFT_FLOAT16] = WF_KERNELS_ROW(bf16_native),
};
