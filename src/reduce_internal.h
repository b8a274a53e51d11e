/*
 * Element operations and the kernel generator shared by the reduce_*.c files.
 *
 * Every kernel is an element-wise loop over one of the inline operations below, so a vector path
 * computes exactly what the scalar path does: the kernel files are built with -ffp-contract=off and
 * without -ffast-math, and nothing here reassociates. This assumes the caller has not enabled
 * flush-to-zero or denormals-are-zero in MXCSR, as linking with -ffast-math does.
 *
 * Float rules, identical on every path and in either operand order:
 * - NaN: when one operand of SUM, PROD, MIN or MAX is NaN, the result is that NaN with its bits
 *   unchanged. When both are NaN, the result is the one whose bit pattern is larger as an unsigned
 *   integer. x86 addition of two NaNs returns the first source operand, and the compiler may swap
 *   the operands of a commutative operation, so the rule is applied explicitly.
 * - Signed zeros: MIN and MAX order -0.0 below +0.0, so min(-0.0, +0.0) = -0.0 and
 *   max(-0.0, +0.0) = +0.0.
 */
#ifndef WF_REDUCE_INTERNAL_H
#define WF_REDUCE_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "reduce.h"

/*
 * Run-time dispatch for the hot kernels: GCC emits one clone per target and an ifunc resolver that
 * picks the best one for the running CPU at load time, so one binary serves every x86-64 CPU.
 * Elsewhere (or with compilers lacking target_clones) the kernels are built once for the baseline.
 * Building with -DWF_KERNEL_CLONES= forces the baseline build everywhere, which tests use to
 * compare the paths.
 */
#ifndef WF_KERNEL_CLONES
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define WF_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#endif
#ifndef WF_KERNEL_CLONES
#define WF_KERNEL_CLONES
#endif

/* Kernels of one (datatype, op, precision), which wf_reduce_plan copies into a plan. */
typedef struct {
    size_t partial_size;
    void (*to_partial)(void *partial, const void *user, size_t n);
    void (*reduce_partial)(void *dst, const void *src, size_t n);
    void (*reduce_user)(void *dst, const void *user, size_t n);
    void (*finish)(void *user, const void *partial, size_t n, int nranks);
    void (*reduce_finish)(void *user_dst, const void *partial, const void *user_src, size_t n, int nranks);
    void (*reduce_pair)(void *partial, const void *user_a, const void *user_b, size_t n);
    void (*reduce_pair_finish)(void *user_dst, const void *user_a, const void *user_b, size_t n, int nranks);
} wf_reduce_kernels_t;

/*
 * AVX2 bfloat16 sum kernels (reduce_bf16_avx2.c), bitwise equal to the generic ones. Call them
 * only where wf_bf16_avx2_available returns non-zero.
 */
int wf_bf16_avx2_available(void);
void wf_bf16_sum_pair_avx2(void *partial, const void *user_a, const void *user_b, size_t n);
void wf_bf16_sum_pair_finish_avx2(void *user_dst, const void *user_a, const void *user_b, size_t n, int nranks);

/* Tables indexed by [datatype - first datatype of the table][op]. */
extern const wf_reduce_kernels_t wf_reduce_integer_kernels[6][WF_OP_COUNT];    /* WEFT_INT8..WEFT_UINT64 */
extern const wf_reduce_kernels_t wf_reduce_float_kernels[2][WF_OP_COUNT];      /* WEFT_FLOAT32, WEFT_FLOAT64 */
extern const wf_reduce_kernels_t wf_reduce_half_wide_kernels[2][WF_OP_COUNT];  /* float16, bfloat16 */
extern const wf_reduce_kernels_t wf_reduce_half_native_kernels[2][WF_OP_COUNT];

/* ---- Integer operations: SUM and PROD wrap because they run in the unsigned type. ---- */

#define WF_DEFINE_INTEGER_OPS(tag, T, U)                                                           \
    static inline T wf_##tag##_sum(T a, T b) { return (T)((U)a + (U)b); }                          \
    static inline T wf_##tag##_prod(T a, T b) { return (T)((U)a * (U)b); }                         \
    static inline T wf_##tag##_min(T a, T b) { return b < a ? b : a; }                             \
    static inline T wf_##tag##_max(T a, T b) { return b > a ? b : a; }

/* The 8-bit products are computed in int after promotion: 255 * 255 cannot overflow it. */
WF_DEFINE_INTEGER_OPS(i8, int8_t, uint8_t)
WF_DEFINE_INTEGER_OPS(u8, uint8_t, uint8_t)
WF_DEFINE_INTEGER_OPS(i32, int32_t, uint32_t)
WF_DEFINE_INTEGER_OPS(u32, uint32_t, uint32_t)
WF_DEFINE_INTEGER_OPS(i64, int64_t, uint64_t)
WF_DEFINE_INTEGER_OPS(u64, uint64_t, uint64_t)
WF_DEFINE_INTEGER_OPS(i128, __int128, unsigned __int128)
WF_DEFINE_INTEGER_OPS(u128, unsigned __int128, unsigned __int128)

/* Divisor of WEFT_AVG. nranks < 1 is a caller bug, and dividing by 1 then avoids SIGFPE. */
static inline int wf_avg_divisor(int nranks) { return nranks < 1 ? 1 : nranks; }

/* ---- Float operations, following the NaN and signed-zero rules of the file comment. ---- */

/*
 * order_key maps a float's bits to a signed integer that orders every non-NaN value by value,
 * with -0.0 directly below +0.0: negative floats get their magnitude bits flipped.
 */
#define WF_DEFINE_FLOAT_OPS(tag, F, UBITS, SBITS)                                                  \
    static inline UBITS wf_##tag##_to_bits(F f)                                                    \
    {                                                                                              \
        UBITS u;                                                                                   \
        memcpy(&u, &f, sizeof u);                                                                  \
        return u;                                                                                  \
    }                                                                                              \
    static inline F wf_##tag##_from_bits(UBITS u)                                                  \
    {                                                                                              \
        F f;                                                                                       \
        memcpy(&f, &u, sizeof f);                                                                  \
        return f;                                                                                  \
    }                                                                                              \
    static inline SBITS wf_##tag##_order_key(F f)                                                  \
    {                                                                                              \
        SBITS s = (SBITS)wf_##tag##_to_bits(f);                                                    \
        return s ^ (SBITS)((UBITS)(s >> (sizeof(F) * 8 - 1)) >> 1);                                \
    }                                                                                              \
    /* Valid only when a or b is NaN: the larger of the NaN bit patterns, a non-NaN counting as 0. */ \
    static inline F wf_##tag##_nan_result(F a, F b)                                                \
    {                                                                                              \
        UBITS nan_a = wf_##tag##_to_bits(a) & (0 - (UBITS)isnan(a));                              \
        UBITS nan_b = wf_##tag##_to_bits(b) & (0 - (UBITS)isnan(b));                              \
        return wf_##tag##_from_bits(nan_a > nan_b ? nan_a : nan_b);                                \
    }                                                                                              \
    static inline F wf_##tag##_sum(F a, F b)                                                       \
    {                                                                                              \
        F r = a + b;                                                                               \
        return isunordered(a, b) ? wf_##tag##_nan_result(a, b) : r;                                \
    }                                                                                              \
    static inline F wf_##tag##_prod(F a, F b)                                                      \
    {                                                                                              \
        F r = a * b;                                                                               \
        return isunordered(a, b) ? wf_##tag##_nan_result(a, b) : r;                                \
    }                                                                                              \
    static inline F wf_##tag##_min(F a, F b)                                                       \
    {                                                                                              \
        F r = wf_##tag##_order_key(b) < wf_##tag##_order_key(a) ? b : a;                           \
        return isunordered(a, b) ? wf_##tag##_nan_result(a, b) : r;                                \
    }                                                                                              \
    static inline F wf_##tag##_max(F a, F b)                                                       \
    {                                                                                              \
        F r = wf_##tag##_order_key(b) > wf_##tag##_order_key(a) ? b : a;                           \
        return isunordered(a, b) ? wf_##tag##_nan_result(a, b) : r;                                \
    }

WF_DEFINE_FLOAT_OPS(f32, float, uint32_t, int32_t)
WF_DEFINE_FLOAT_OPS(f64, double, uint64_t, int64_t)

/* ---- binary16 and bfloat16 conversions on bit patterns (the public wrappers are in reduce_half.c). ---- */

/*
 * Both 16-bit conversions compute every case unconditionally and then select one. Branches around
 * float operations or variable shifts would keep GCC from vectorizing the loops they are inlined in.
 */

/* Exact. NaN payloads are kept, so a signaling NaN stays signaling. */
static inline float wf_half_bits_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    uint32_t special = 0x7f800000u | (mantissa << 13);                /* infinity or NaN */
    uint32_t normal = ((exponent + 112u) << 23) | (mantissa << 13);    /* rebias 15 -> 127 */
    /* Zero or subnormal: mantissa * 2^-24, exact in float (a normal float there, so the result
     * does not depend on flush-to-zero either). */
    uint32_t subnormal = wf_f32_to_bits((float)mantissa * 0x1p-24f);

    /* Masks rather than ?: here, because GCC would sink the float conversion into a branch. */
    uint32_t is_special = 0u - (uint32_t)(exponent == 0x1f);
    uint32_t is_subnormal = 0u - (uint32_t)(exponent == 0);
    uint32_t magnitude = (special & is_special) | (subnormal & is_subnormal) | (normal & ~(is_special | is_subnormal));
    return wf_f32_from_bits(sign | magnitude);
}

/*
 * Returns value >> shift rounded to nearest even: adding just under half a unit, plus one more when
 * the kept part is odd, carries into the kept part exactly when rounding up is due.
 * value + 2^(shift - 1) must not overflow.
 */
static inline uint32_t wf_shift_round_even(uint32_t value, uint32_t shift)
{
    return (value + ((1u << (shift - 1u)) - 1u) + ((value >> shift) & 1u)) >> shift;
}

/* Rounds to nearest even. Overflow gives infinity, and a NaN keeps its top payload bits and becomes quiet. */
static inline uint16_t wf_float_to_half_bits(float f)
{
    uint32_t u = wf_f32_to_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;

    uint32_t nan = 0x7e00u | ((a >> 13) & 0x3ffu);
    /* Normal half (2^-14 <= |f| < 65520): rebias the exponent and drop 13 mantissa bits. A carry out
     * of the mantissa correctly bumps the exponent. 0x38000000 is (127 - 15) << 23. */
    uint32_t normal = wf_shift_round_even(a - 0x38000000u, 13);
    /* Subnormal half (|f| < 2^-14): the result counts units of 2^-24, so the shift is 126 - exponent.
     * Clamping it to 25 sends everything below 2^-25 to zero (the implicit bit set for float zeros
     * and subnormals does not matter there), and 2^-25 itself ties to the even result 0. The lower
     * clamp keeps the shift defined for the inputs that take another case. */
    int32_t shift = 126 - (int32_t)(a >> 23);
    if (shift < 14)
        shift = 14;
    if (shift > 25)
        shift = 25;
    uint32_t subnormal = wf_shift_round_even((a & 0x7fffffu) | 0x800000u, (uint32_t)shift);

    uint32_t h = a > 0x7f800000u ? nan
                 : a >= 0x477ff000u ? 0x7c00u /* past the midpoint between 65504 and 2^16 */
                 : a >= 0x38800000u ? normal
                                    : subnormal;
    return (uint16_t)(sign | h);
}

static inline float wf_bfloat16_bits_to_float(uint16_t b) { return wf_f32_from_bits((uint32_t)b << 16); }

/* Rounds to nearest even. Values past the largest finite one round to infinity, and a NaN becomes quiet. */
static inline uint16_t wf_float_to_bfloat16_bits(float f)
{
    uint32_t u = wf_f32_to_bits(f);

    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)wf_shift_round_even(u, 16);
}

/* ---- Kernel generator ---- */

#define WF_KEEP(x) (x)
#define WF_KEEP_FINISH(p, nranks) (p)

/*
 * Defines the seven kernels name_to_partial ... name_reduce_pair_finish of one plan:
 *   CONVERT(user element) -> partial element
 *   COMBINE(partial, partial) -> partial
 *   FINISH(partial, nranks) -> user element
 * Element typedefs with alignment 1 let every kernel accept buffers at any byte offset, such as a
 * 16-byte partial at an 8-byte boundary. The vector loops then use unaligned loads and stores.
 * finish, to_partial, reduce_finish and the pair kernels read element i before writing element i,
 * so an output may be the same buffer as an input of the same element size, but no other overlap
 * is allowed.
 */
#define WF_DEFINE_KERNELS(name, user_t, partial_t, CONVERT, COMBINE, FINISH, ATTRIBUTES)          \
    typedef user_t name##_user_t __attribute__((aligned(1)));                                      \
    typedef partial_t name##_partial_t __attribute__((aligned(1)));                                \
                                                                                                   \
    ATTRIBUTES static void name##_to_partial(void *partial, const void *user, size_t n)            \
    {                                                                                              \
        name##_partial_t *p = partial;                                                             \
        const name##_user_t *u = user;                                                             \
        for (size_t i = 0; i < n; i++)                                                             \
            p[i] = CONVERT(u[i]);                                                                  \
    }                                                                                              \
                                                                                                   \
    ATTRIBUTES static void name##_reduce_partial(void *dst, const void *src, size_t n)             \
    {                                                                                              \
        name##_partial_t *d = dst;                                                                 \
        const name##_partial_t *s = src;                                                           \
        for (size_t i = 0; i < n; i++)                                                             \
            d[i] = COMBINE(d[i], s[i]);                                                            \
    }                                                                                              \
                                                                                                   \
    ATTRIBUTES static void name##_reduce_user(void *dst, const void *user, size_t n)               \
    {                                                                                              \
        name##_partial_t *d = dst;                                                                 \
        const name##_user_t *u = user;                                                             \
        for (size_t i = 0; i < n; i++)                                                             \
            d[i] = COMBINE(d[i], CONVERT(u[i]));                                                   \
    }                                                                                              \
                                                                                                   \
    ATTRIBUTES static void name##_finish(void *user, const void *partial, size_t n, int nranks)    \
    {                                                                                              \
        name##_user_t *u = user;                                                                   \
        const name##_partial_t *p = partial;                                                       \
        for (size_t i = 0; i < n; i++)                                                             \
            u[i] = FINISH(p[i], nranks);                                                           \
    }                                                                                              \
                                                                                                   \
    ATTRIBUTES static void name##_reduce_finish(void *user_dst, const void *partial,               \
                                                const void *user_src, size_t n, int nranks)        \
    {                                                                                              \
        name##_user_t *d = user_dst;                                                               \
        const name##_partial_t *p = partial;                                                       \
        const name##_user_t *u = user_src;                                                         \
        for (size_t i = 0; i < n; i++)                                                             \
            d[i] = FINISH(COMBINE(p[i], CONVERT(u[i])), nranks);                                   \
    }                                                                                              \
                                                                                                   \
    ATTRIBUTES static void name##_reduce_pair(void *partial, const void *user_a, const void *user_b, \
                                              size_t n)                                            \
    {                                                                                              \
        name##_partial_t *p = partial;                                                             \
        const name##_user_t *a = user_a, *b = user_b;                                              \
        for (size_t i = 0; i < n; i++)                                                             \
            p[i] = COMBINE(CONVERT(a[i]), CONVERT(b[i]));                                          \
    }                                                                                              \
                                                                                                   \
    ATTRIBUTES static void name##_reduce_pair_finish(void *user_dst, const void *user_a,           \
                                                     const void *user_b, size_t n, int nranks)     \
    {                                                                                              \
        name##_user_t *d = user_dst;                                                               \
        const name##_user_t *a = user_a, *b = user_b;                                              \
        for (size_t i = 0; i < n; i++)                                                             \
            d[i] = FINISH(COMBINE(CONVERT(a[i]), CONVERT(b[i])), nranks);                          \
    }

/* Table entry for the kernels generated under name. */
#define WF_KERNELS_ENTRY(name)                                                                     \
    {                                                                                              \
        sizeof(name##_partial_t), name##_to_partial, name##_reduce_partial, name##_reduce_user,   \
            name##_finish, name##_reduce_finish, name##_reduce_pair, name##_reduce_pair_finish     \
    }

/* Table row of the five ops generated under prefix_sum ... prefix_avg. */
#define WF_KERNELS_ROW(prefix)                                                                     \
    {                                                                                              \
        [WEFT_SUM] = WF_KERNELS_ENTRY(prefix##_sum), [WEFT_PROD] = WF_KERNELS_ENTRY(prefix##_prod), \
        [WEFT_MIN] = WF_KERNELS_ENTRY(prefix##_min), [WEFT_MAX] = WF_KERNELS_ENTRY(prefix##_max),   \
        [WEFT_AVG] = WF_KERNELS_ENTRY(prefix##_avg),                                               \
    }

#endif /* WF_REDUCE_INTERNAL_H */
