/*
 * Reduction plans and kernels. Every datatype x op, and both precisions of the 16-bit floats, is
 * compared with a scalar reference written here without the library's helpers. The float16 and
 * bfloat16 conversions get exhaustive round trips and rounding checks against double precision,
 * and the averages that collective users rely on are checked with their exact values.
 *
 * The reference rules mirror the documented semantics: integer SUM and PROD wrap, AVG truncates
 * toward zero, a NaN operand is returned unchanged (of two NaNs, the larger bit pattern), MIN and
 * MAX order -0.0 below +0.0, and narrowing to 16 bits rounds to nearest even and quiets NaNs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce.h"

/* ---- Independent reference: 16-bit float formats ---- */

/* Values of the non-negative encodings in bit order. The entry at the infinity encoding is the
 * next power of two, which a round-up past the largest finite value would reach. */
static double half_values[0x7c01];
static double bfloat_values[0x7f81];

static uint32_t bits_of_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint64_t bits_of_double(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static void build_16bit_tables(void)
{
    for (uint32_t h = 0; h < 0x7c00; h++) {
        int exponent = (int)(h >> 10);
        int mantissa = (int)(h & 0x3ff);
        half_values[h] = exponent == 0 ? ldexp(mantissa, -24) : ldexp(1024 + mantissa, exponent - 25);
    }
    half_values[0x7c00] = 65536.0;
    for (uint32_t b = 0; b < 0x7f80; b++) {
        int exponent = (int)(b >> 7);
        int mantissa = (int)(b & 0x7f);
        bfloat_values[b] = exponent == 0 ? ldexp(mantissa, -133) : ldexp(128 + mantissa, exponent - 134);
    }
    bfloat_values[0x7f80] = ldexp(1.0, 128);
}

static int half_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
static int bfloat_is_nan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

/* Widening keeps NaN payloads by shifting them into the top of the float mantissa. */
static float ref_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    if ((h & 0x7c00) == 0x7c00)
        return float_of_bits(sign | 0x7f800000u | ((uint32_t)(h & 0x3ff) << 13));
    double magnitude = half_values[h & 0x7fff];
    return (float)(sign ? -magnitude : magnitude);
}

static float ref_bfloat_to_float(uint16_t b)
{
    uint32_t sign = (uint32_t)(b & 0x8000) << 16;
    if ((b & 0x7f80) == 0x7f80)
        return float_of_bits(sign | 0x7f800000u | ((uint32_t)(b & 0x7f) << 16));
    double magnitude = bfloat_values[b & 0x7fff];
    return (float)(sign ? -magnitude : magnitude);
}

/*
 * Nearest encoding to f (not NaN) in a binary format with mantissa_bits stored mantissa bits and
 * minimum normal exponent min_exponent, computed in double: scale |f| so one unit in the last place
 * is 1, round with rint (ties to even in the default rounding mode), then assemble the encoding.
 */
static uint16_t ref_round_16(float f, int mantissa_bits, int min_exponent, uint32_t infinity_bits)
{
    double x = fabs((double)f);
    uint32_t sign = signbit(f) ? 0x8000 : 0;
    int exponent;

    if (isinf(x))
        return (uint16_t)(sign | infinity_bits);
    frexp(x, &exponent); /* 2^(exponent-1) <= x < 2^exponent, or exponent 0 for x == 0 */
    exponent = exponent - 1 < min_exponent ? min_exponent : exponent - 1;
    double units = rint(ldexp(x, mantissa_bits - exponent));
    uint32_t encoding = (uint32_t)units; /* subnormal: the units are the encoding */
    if (units >= ldexp(1.0, mantissa_bits))
        encoding = ((uint32_t)(exponent - min_exponent + 1) << mantissa_bits) +
                   (uint32_t)(units - ldexp(1.0, mantissa_bits));
    if (encoding > infinity_bits)
        encoding = infinity_bits;
    return (uint16_t)(sign | encoding);
}

/* A NaN narrows to a quiet NaN with the same sign and the top payload bits. */
static uint16_t ref_float_to_half(float f)
{
    uint32_t u = bits_of_float(f);
    if (isnan(f))
        return (uint16_t)(((u >> 16) & 0x8000) | 0x7e00 | ((u >> 13) & 0x3ff));
    return ref_round_16(f, 10, -14, 0x7c00);
}

static uint16_t ref_float_to_bfloat(float f)
{
    uint32_t u = bits_of_float(f);
    if (isnan(f))
        return (uint16_t)((u >> 16) | 0x0040);
    return ref_round_16(f, 7, -126, 0x7f80);
}

/* ---- Independent reference: element operations ---- */

static float ref_f32_nan(float a, float b)
{
    if (isnan(a) && isnan(b))
        return bits_of_float(a) > bits_of_float(b) ? a : b;
    return isnan(a) ? a : b;
}

static double ref_f64_nan(double a, double b)
{
    if (isnan(a) && isnan(b))
        return bits_of_double(a) > bits_of_double(b) ? a : b;
    return isnan(a) ? a : b;
}

/* float32 results come from double arithmetic rounded once more: with 53 >= 2 * 24 + 2 bits, this
 * double rounding gives the correctly rounded float result for +, * and /. */
static float ref_f32_op(weft_op_t op, float a, float b)
{
    if (isnan(a) || isnan(b))
        return ref_f32_nan(a, b);
    switch (op) {
    case WEFT_SUM:
    case WEFT_AVG:
        return (float)((double)a + (double)b);
    case WEFT_PROD:
        return (float)((double)a * (double)b);
    case WEFT_MIN:
        if (a == b && a == 0.0f)
            return signbit(a) ? a : b;
        return b < a ? b : a;
    default:
        if (a == b && a == 0.0f)
            return signbit(a) ? b : a;
        return b > a ? b : a;
    }
}

static double ref_f64_op(weft_op_t op, double a, double b)
{
    if (isnan(a) || isnan(b))
        return ref_f64_nan(a, b);
    switch (op) {
    case WEFT_SUM:
    case WEFT_AVG:
        return a + b;
    case WEFT_PROD:
        return a * b;
    case WEFT_MIN:
        if (a == b && a == 0.0)
            return signbit(a) ? a : b;
        return b < a ? b : a;
    default:
        if (a == b && a == 0.0)
            return signbit(a) ? b : a;
        return b > a ? b : a;
    }
}

/* ---- Independent reference: element layouts of one (datatype, op, precision) ---- */

typedef enum { KIND_INT, KIND_F32, KIND_F64, KIND_HALF, KIND_BFLOAT } kind_t;

typedef struct {
    kind_t kind;
    size_t size;
    int is_signed;
} layout_t;

typedef struct {
    weft_datatype_t type;
    weft_op_t op;
    int native;
    layout_t user;
    layout_t partial;
} case_t;

static layout_t user_layout(weft_datatype_t type)
{
    switch (type) {
    case WEFT_INT8: return (layout_t){KIND_INT, 1, 1};
    case WEFT_UINT8: return (layout_t){KIND_INT, 1, 0};
    case WEFT_INT32: return (layout_t){KIND_INT, 4, 1};
    case WEFT_UINT32: return (layout_t){KIND_INT, 4, 0};
    case WEFT_INT64: return (layout_t){KIND_INT, 8, 1};
    case WEFT_UINT64: return (layout_t){KIND_INT, 8, 0};
    case WEFT_FLOAT16: return (layout_t){KIND_HALF, 2, 1};
    case WEFT_BFLOAT16: return (layout_t){KIND_BFLOAT, 2, 1};
    case WEFT_FLOAT32: return (layout_t){KIND_F32, 4, 1};
    default: return (layout_t){KIND_F64, 8, 1};
    }
}

static case_t make_case(weft_datatype_t type, weft_op_t op, int native)
{
    case_t c = {type, op, native, user_layout(type), user_layout(type)};
    if (c.user.kind == KIND_INT && op == WEFT_AVG)
        c.partial.size = c.user.size == 8 ? 16 : 8;
    if ((c.user.kind == KIND_HALF || c.user.kind == KIND_BFLOAT) && !native)
        c.partial = (layout_t){KIND_F32, 4, 1};
    return c;
}

/* Load with sign or zero extension; storing keeps the low bytes (little-endian), which wraps. */
static __int128 load_int(const unsigned char *p, layout_t layout)
{
    switch (layout.size) {
    case 1: return layout.is_signed ? (__int128)(int8_t)p[0] : (__int128)p[0];
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return layout.is_signed ? (__int128)(int32_t)v : (__int128)v;
    }
    case 8: {
        uint64_t v;
        memcpy(&v, p, 8);
        return layout.is_signed ? (__int128)(int64_t)v : (__int128)v;
    }
    default: {
        __int128 v;
        memcpy(&v, p, 16);
        return v;
    }
    }
}

static void store_int(unsigned char *p, layout_t layout, unsigned __int128 value)
{
    memcpy(p, &value, layout.size);
}

static float load_f32(const unsigned char *p) { float f; memcpy(&f, p, 4); return f; }
static double load_f64(const unsigned char *p) { double d; memcpy(&d, p, 8); return d; }
static uint16_t load_u16(const unsigned char *p) { uint16_t h; memcpy(&h, p, 2); return h; }

static float widen_16(kind_t kind, uint16_t bits)
{
    return kind == KIND_HALF ? ref_half_to_float(bits) : ref_bfloat_to_float(bits);
}

static uint16_t narrow_16(kind_t kind, float f)
{
    return kind == KIND_HALF ? ref_float_to_half(f) : ref_float_to_bfloat(f);
}

static void ref_to_partial(const case_t *c, const unsigned char *user, unsigned char *partial)
{
    if (c->user.kind == KIND_INT) {
        store_int(partial, c->partial, (unsigned __int128)load_int(user, c->user));
    } else if (c->user.kind != c->partial.kind) { /* 16-bit user, float32 partial */
        float f = widen_16(c->user.kind, load_u16(user));
        memcpy(partial, &f, 4);
    } else {
        memcpy(partial, user, c->user.size);
    }
}

static void ref_combine(const case_t *c, const unsigned char *a, const unsigned char *b, unsigned char *out)
{
    switch (c->partial.kind) {
    case KIND_INT: {
        __int128 x = load_int(a, c->partial), y = load_int(b, c->partial);
        unsigned __int128 r;
        if (c->op == WEFT_SUM || c->op == WEFT_AVG)
            r = (unsigned __int128)x + (unsigned __int128)y;
        else if (c->op == WEFT_PROD)
            r = (unsigned __int128)x * (unsigned __int128)y;
        else if (c->op == WEFT_MIN)
            r = (unsigned __int128)(y < x ? y : x);
        else
            r = (unsigned __int128)(y > x ? y : x);
        store_int(out, c->partial, r);
        break;
    }
    case KIND_F32: {
        float r = ref_f32_op(c->op, load_f32(a), load_f32(b));
        memcpy(out, &r, 4);
        break;
    }
    case KIND_F64: {
        double r = ref_f64_op(c->op, load_f64(a), load_f64(b));
        memcpy(out, &r, 8);
        break;
    }
    default: { /* native 16-bit: widen, operate in float, round back */
        float r = ref_f32_op(c->op, widen_16(c->partial.kind, load_u16(a)), widen_16(c->partial.kind, load_u16(b)));
        uint16_t h = narrow_16(c->partial.kind, r);
        memcpy(out, &h, 2);
        break;
    }
    }
}

static __int128 truncated_quotient(__int128 sum, int n)
{
    return sum >= 0 ? sum / n : -((-sum) / n);
}

static void ref_finish(const case_t *c, const unsigned char *partial, int nranks, unsigned char *user)
{
    int avg = c->op == WEFT_AVG;

    if (c->partial.kind == KIND_INT) {
        __int128 sum = load_int(partial, c->partial);
        store_int(user, c->user, (unsigned __int128)(avg ? truncated_quotient(sum, nranks) : sum));
    } else if (c->partial.kind == KIND_F32) {
        float f = load_f32(partial);
        if (avg)
            f = (float)((double)f / nranks);
        if (c->user.kind == KIND_F32) {
            memcpy(user, &f, 4);
        } else {
            uint16_t h = narrow_16(c->user.kind, f);
            memcpy(user, &h, 2);
        }
    } else if (c->partial.kind == KIND_F64) {
        double d = load_f64(partial);
        if (avg)
            d /= nranks;
        memcpy(user, &d, 8);
    } else {
        uint16_t h = load_u16(partial);
        if (avg)
            h = narrow_16(c->partial.kind, (float)((double)widen_16(c->partial.kind, h) / nranks));
        memcpy(user, &h, 2);
    }
}

/* ---- Test data: every pair of edge values meets in the first elements, then random bits ---- */

static uint64_t rng_state;

static uint64_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Bit patterns of edge values, stored in the low bytes of each entry. */
static const uint64_t edges_int8[] = {(uint8_t)INT8_MIN, INT8_MAX, (uint8_t)-1, 0, 1, 2, (uint8_t)-2, (uint8_t)(INT8_MIN + 1), 100, (uint8_t)-100};
static const uint64_t edges_uint8[] = {0, 1, 2, 127, 128, 200, 254, 255};
static const uint64_t edges_int32[] = {(uint32_t)INT32_MIN, INT32_MAX, (uint32_t)-1, 0, 1, 2, (uint32_t)-2,
                                       (uint32_t)(INT32_MIN + 1), 65536, (uint32_t)-65537, 46341};
static const uint64_t edges_uint32[] = {0, 1, 2, 0x7fffffff, 0x80000000u, 0xfffffffeu, 0xffffffffu, 65536, 200};
static const uint64_t edges_int64[] = {(uint64_t)INT64_MIN, INT64_MAX, (uint64_t)-1, 0, 1, 2, (uint64_t)-2,
                                       (uint64_t)(INT64_MIN + 1), 1ull << 32, (uint64_t)(-(1ll << 32) - 1), 3037000500u};
static const uint64_t edges_uint64[] = {0, 1, 2, INT64_MAX, 1ull << 63, UINT64_MAX - 1, UINT64_MAX, 1ull << 32};
/* float16: zeros, 1, -2, 3, 2048 (2048 + 1 and 2048 + 3 are ties), the largest finite, subnormal
 * limits, infinities, quiet NaNs, a signaling NaN, a NaN with payload. */
static const uint64_t edges_half[] = {0x0000, 0x8000, 0x3c00, 0xc000, 0x4200, 0x6800, 0x7bff, 0xfbff, 0x0001, 0x03ff,
                                      0x0400, 0x8001, 0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7d00, 0x7e01, 0x3555};
/* bfloat16: as above with 256 (256 + 1 and 256 + 3 are ties). */
static const uint64_t edges_bfloat[] = {0x0000, 0x8000, 0x3f80, 0xc000, 0x4040, 0x4380, 0x7f7f, 0xff7f, 0x0001, 0x007f,
                                        0x0080, 0x8001, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7fa0, 0x3eab};
static const uint64_t edges_f32[] = {0x00000000, 0x80000000u, 0x3f800000, 0xbf800000u, 0x7f800000, 0xff800000u,
                                     0x7fc00000, 0xffc00001u, 0x7f800001, 0x7fa00000, 0x7f7fffff, 0xff7fffffu,
                                     0x00000001, 0x807fffffu, 0x00800000, 0x4b800000, 0x33800000};
static const uint64_t edges_f64[] = {0, 1ull << 63, 0x3ff0000000000000ull, 0xbff0000000000000ull,
                                     0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull,
                                     0xfff8000000000001ull, 0x7ff0000000000001ull, 0x7ff4000000000000ull,
                                     0x7fefffffffffffffull, 0xffefffffffffffffull, 1, 0x800fffffffffffffull,
                                     0x0010000000000000ull, 0x4340000000000000ull};

static const uint64_t *edge_values(weft_datatype_t type, size_t *count)
{
    switch (type) {
    case WEFT_INT8: *count = sizeof(edges_int8) / 8; return edges_int8;
    case WEFT_UINT8: *count = sizeof(edges_uint8) / 8; return edges_uint8;
    case WEFT_INT32: *count = sizeof(edges_int32) / 8; return edges_int32;
    case WEFT_UINT32: *count = sizeof(edges_uint32) / 8; return edges_uint32;
    case WEFT_INT64: *count = sizeof(edges_int64) / 8; return edges_int64;
    case WEFT_UINT64: *count = sizeof(edges_uint64) / 8; return edges_uint64;
    case WEFT_FLOAT16: *count = sizeof(edges_half) / 8; return edges_half;
    case WEFT_BFLOAT16: *count = sizeof(edges_bfloat) / 8; return edges_bfloat;
    case WEFT_FLOAT32: *count = sizeof(edges_f32) / 8; return edges_f32;
    default: *count = sizeof(edges_f64) / 8; return edges_f64;
    }
}

/* Small whole numbers as the type's bits: sums of them hit exact ties in the 16-bit formats. */
static uint64_t small_number_bits(weft_datatype_t type, int value)
{
    float f = (float)value;
    double d = (double)value;
    uint64_t bits = (uint64_t)(int64_t)value;
    if (type == WEFT_FLOAT16)
        bits = ref_float_to_half(f);
    else if (type == WEFT_BFLOAT16)
        bits = ref_float_to_bfloat(f);
    else if (type == WEFT_FLOAT32)
        bits = bits_of_float(f);
    else if (type == WEFT_FLOAT64)
        bits = bits_of_double(d);
    return bits;
}

/*
 * Fills n user elements. Role 0 walks the edge list fastest and role 1 slowest, so the first
 * edges^2 elements pair every edge with every edge. Later elements alternate random bit patterns
 * and small whole numbers.
 */
static void fill_user(weft_datatype_t type, unsigned char *buffer, size_t n, int role)
{
    size_t edge_count;
    const uint64_t *edges = edge_values(type, &edge_count);
    size_t size = user_layout(type).size;

    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        if (i < edge_count * edge_count)
            bits = edges[role == 0 ? i % edge_count : i / edge_count];
        else if (i % 2 == 0)
            bits = next_random();
        else
            bits = small_number_bits(type, (int)(next_random() % 4097) - 2048);
        memcpy(buffer + i * size, &bits, size);
    }
}

/* ---- Kernel checks ---- */

static const char *const type_names[] = {"int8", "uint8", "int32", "uint32", "int64", "uint64",
                                         "float16", "bfloat16", "float32", "float64"};
static const char *const op_names[] = {"sum", "prod", "min", "max", "avg"};

static void print_element(const char *label, const unsigned char *p, size_t size)
{
    fprintf(stderr, " %s=0x", label);
    for (size_t b = size; b-- > 0;)
        fprintf(stderr, "%02x", p[b]);
}

/* Fails the test at the first element whose bytes differ, printing the inputs of that element. */
static void expect_elements(const case_t *c, const char *kernel, const unsigned char *got,
                            const unsigned char *expected, size_t n, size_t size,
                            const unsigned char *a, const unsigned char *b)
{
    if (n == 0 || memcmp(got, expected, n * size) == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(got + i * size, expected + i * size, size) == 0)
            continue;
        fprintf(stderr, "%s %s%s %s, n=%zu, element %zu:", type_names[c->type], op_names[c->op],
                c->native ? " native" : "", kernel, n, i);
        print_element("got", got + i * size, size);
        print_element("expected", expected + i * size, size);
        print_element("a", a + i * c->user.size, c->user.size);
        print_element("b", b + i * c->user.size, c->user.size);
        fprintf(stderr, "\n");
        fail_msg("%s differs from the reference", kernel);
    }
}

enum { MAX_COUNT = 1000003, TEST_NRANKS = 3 }; /* AVG divisor 3 leaves remainders, so truncation shows */

/* Inputs and reference results of one (datatype, precision) for MAX_COUNT elements. */
typedef struct {
    unsigned char *a, *b;          /* user inputs */
    unsigned char *pa, *pb, *pab;  /* reference partials: convert(a), convert(b), combined */
    unsigned char *expected;       /* reference finish(pab) */
    unsigned char *partial, *user; /* kernel outputs */
} buffers_t;

static void *checked_malloc(size_t bytes)
{
    void *p = malloc(bytes);
    assert_non_null(p);
    return p;
}

/* Partials are at most 16 bytes and user elements at most 8, whatever the op. */
static void alloc_buffers(buffers_t *buf)
{
    buf->a = checked_malloc(MAX_COUNT * 8);
    buf->b = checked_malloc(MAX_COUNT * 8);
    buf->expected = checked_malloc(MAX_COUNT * 8);
    buf->user = checked_malloc(MAX_COUNT * 8);
    buf->pa = checked_malloc(MAX_COUNT * 16);
    buf->pb = checked_malloc(MAX_COUNT * 16);
    buf->pab = checked_malloc(MAX_COUNT * 16);
    buf->partial = checked_malloc(MAX_COUNT * 16);
}

static void free_buffers(buffers_t *buf)
{
    free(buf->a);
    free(buf->b);
    free(buf->expected);
    free(buf->user);
    free(buf->pa);
    free(buf->pb);
    free(buf->pab);
    free(buf->partial);
}

/* Runs the seven kernels of c on the first n elements and compares them with the reference. */
static void check_kernels(const case_t *c, const buffers_t *buf, size_t n)
{
    wf_reduce_plan_t plan;
    assert_int_equal(wf_reduce_plan(&plan, c->type, c->op, c->native), 0);
    assert_int_equal(plan.type, c->type);
    assert_int_equal(plan.op, c->op);
    assert_int_equal(plan.user_size, c->user.size);
    assert_int_equal(plan.partial_size, c->partial.size);
    size_t ps = c->partial.size, us = c->user.size;

    plan.to_partial(buf->partial, buf->a, n);
    expect_elements(c, "to_partial", buf->partial, buf->pa, n, ps, buf->a, buf->b);

    memcpy(buf->partial, buf->pa, n * ps);
    plan.reduce_partial(buf->partial, buf->pb, n);
    expect_elements(c, "reduce_partial", buf->partial, buf->pab, n, ps, buf->a, buf->b);

    memcpy(buf->partial, buf->pa, n * ps);
    plan.reduce_user(buf->partial, buf->b, n);
    expect_elements(c, "reduce_user", buf->partial, buf->pab, n, ps, buf->a, buf->b);

    plan.finish(buf->user, buf->pab, n, TEST_NRANKS);
    expect_elements(c, "finish", buf->user, buf->expected, n, us, buf->a, buf->b);

    memset(buf->user, 0, n * us);
    plan.reduce_finish(buf->user, buf->pa, buf->b, n, TEST_NRANKS);
    expect_elements(c, "reduce_finish", buf->user, buf->expected, n, us, buf->a, buf->b);

    memset(buf->partial, 0, n * ps);
    plan.reduce_pair(buf->partial, buf->a, buf->b, n);
    expect_elements(c, "reduce_pair", buf->partial, buf->pab, n, ps, buf->a, buf->b);

    memset(buf->user, 0, n * us);
    plan.reduce_pair_finish(buf->user, buf->a, buf->b, n, TEST_NRANKS);
    expect_elements(c, "reduce_pair_finish", buf->user, buf->expected, n, us, buf->a, buf->b);
}

/* Every op of one precision: the reference is computed once for MAX_COUNT elements, and the
 * kernels run on prefixes of 0, 1, 7 and MAX_COUNT elements (odd tails for the vector loops). */
static void check_precision(weft_datatype_t type, int native, buffers_t *buf)
{
    static const size_t counts[] = {0, 1, 7, MAX_COUNT};

    layout_t converted = {KIND_INT, 0, 0}; /* layout of buf->pa and buf->pb, none yet */

    for (int op = 0; op < WF_OP_COUNT; op++) {
        case_t c = make_case(type, (weft_op_t)op, native);
        size_t us = c.user.size, ps = c.partial.size;
        if (memcmp(&converted, &c.partial, sizeof converted) != 0) {
            for (size_t i = 0; i < MAX_COUNT; i++) {
                ref_to_partial(&c, buf->a + i * us, buf->pa + i * ps);
                ref_to_partial(&c, buf->b + i * us, buf->pb + i * ps);
            }
            converted = c.partial;
        }
        for (size_t i = 0; i < MAX_COUNT; i++) {
            ref_combine(&c, buf->pa + i * ps, buf->pb + i * ps, buf->pab + i * ps);
            ref_finish(&c, buf->pab + i * ps, TEST_NRANKS, buf->expected + i * us);
        }
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
            check_kernels(&c, buf, counts[k]);
    }
}

static void check_datatype(weft_datatype_t type)
{
    buffers_t buf;
    alloc_buffers(&buf);
    rng_state = 0x9e3779b97f4a7c15ull + (uint64_t)type;
    fill_user(type, buf.a, MAX_COUNT, 0);
    fill_user(type, buf.b, MAX_COUNT, 1);

    check_precision(type, 0, &buf);
    if (type == WEFT_FLOAT16 || type == WEFT_BFLOAT16)
        check_precision(type, 1, &buf);
    free_buffers(&buf);
}

#define KERNEL_TEST(name, type)                                                                    \
    static void test_kernels_##name(void **state)                                                  \
    {                                                                                              \
        (void)state;                                                                               \
        check_datatype(type);                                                                      \
    }

KERNEL_TEST(int8, WEFT_INT8)
KERNEL_TEST(uint8, WEFT_UINT8)
KERNEL_TEST(int32, WEFT_INT32)
KERNEL_TEST(uint32, WEFT_UINT32)
KERNEL_TEST(int64, WEFT_INT64)
KERNEL_TEST(uint64, WEFT_UINT64)
KERNEL_TEST(float16, WEFT_FLOAT16)
KERNEL_TEST(bfloat16, WEFT_BFLOAT16)
KERNEL_TEST(float32, WEFT_FLOAT32)
KERNEL_TEST(float64, WEFT_FLOAT64)

/* Count 0 must not touch the buffers, which may then be NULL. */
static void test_kernels_zero_count_null(void **state)
{
    (void)state;
    for (int type = 0; type < WF_DATATYPE_COUNT; type++)
        for (int op = 0; op < WF_OP_COUNT; op++) {
            wf_reduce_plan_t plan;
            assert_int_equal(wf_reduce_plan(&plan, (weft_datatype_t)type, (weft_op_t)op, 0), 0);
            plan.to_partial(NULL, NULL, 0);
            plan.reduce_partial(NULL, NULL, 0);
            plan.reduce_user(NULL, NULL, 0);
            plan.finish(NULL, NULL, 0, 4);
            plan.reduce_finish(NULL, NULL, NULL, 0, 4);
            plan.reduce_pair(NULL, NULL, NULL, 0);
            plan.reduce_pair_finish(NULL, NULL, NULL, 0, 4);
        }
}

/* ---- Aliasing and alignment promised by the kernels ---- */

/* reduce_finish and reduce_pair_finish into their own user input, and finish into its own partial. */
static void test_kernels_in_place(void **state)
{
    (void)state;
    enum { N = 1001 };
    float a[N], b[N], out_of_place[N], in_place[N];
    for (int i = 0; i < N; i++) {
        a[i] = (float)i * 0.37f - 90.0f;
        b[i] = (float)(N - i) * 1.91f;
    }
    wf_reduce_plan_t plan;
    assert_int_equal(wf_reduce_plan(&plan, WEFT_FLOAT32, WEFT_AVG, 0), 0);

    plan.reduce_finish(out_of_place, a, b, N, 2);
    memcpy(in_place, b, sizeof b);
    plan.reduce_finish(in_place, a, in_place, N, 2);
    assert_memory_equal(in_place, out_of_place, sizeof in_place);
    for (int i = 0; i < N; i++)
        assert_true(bits_of_float(out_of_place[i]) == bits_of_float((float)(((double)a[i] + b[i]) / 2)));

    plan.reduce_pair_finish(in_place, a, b, N, 2);
    assert_memory_equal(in_place, out_of_place, sizeof in_place);
    memcpy(in_place, a, sizeof a);
    plan.reduce_pair_finish(in_place, in_place, b, N, 2);
    assert_memory_equal(in_place, out_of_place, sizeof in_place);

    plan.finish(out_of_place, a, N, 3);
    memcpy(in_place, a, sizeof a);
    plan.finish(in_place, in_place, N, 3);
    assert_memory_equal(in_place, out_of_place, sizeof in_place);
}

/* 128-bit partials at an 8-byte boundary and floats at odd addresses give the aligned results. */
static void test_kernels_unaligned(void **state)
{
    (void)state;
    enum { N = 257 };
    int64_t user[N];
    unsigned char storage[N * 16 + 32];
    unsigned char *partial = storage + 8; /* malloc-style 16-byte alignment broken on purpose */
    if (((uintptr_t)partial % 16) == 0)
        partial += 8;
    for (int i = 0; i < N; i++)
        user[i] = INT64_MAX - i;

    wf_reduce_plan_t plan;
    assert_int_equal(wf_reduce_plan(&plan, WEFT_INT64, WEFT_AVG, 0), 0);
    plan.to_partial(partial, user, N);
    plan.reduce_user(partial, user, N);
    int64_t result[N];
    plan.finish(result, partial, N, 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(result[i], INT64_MAX - i); /* (2 * x) / 2 without overflow */

    float values[N], sums[N];
    unsigned char odd[N * 4 + 1];
    for (int i = 0; i < N; i++)
        values[i] = (float)i + 0.5f;
    memcpy(odd + 1, values, sizeof values);
    assert_int_equal(wf_reduce_plan(&plan, WEFT_FLOAT32, WEFT_SUM, 0), 0);
    plan.reduce_partial(odd + 1, values, N);
    memcpy(sums, odd + 1, sizeof sums);
    for (int i = 0; i < N; i++)
        assert_true(sums[i] == 2.0f * values[i]);
}

/* ---- Averages and 16-bit sums as collectives use them ---- */

/* Reduces one row per rank: to_partial, reduce_user for the middle ranks, reduce_finish for the last. */
static void reduce_rows(weft_datatype_t type, weft_op_t op, int native, const void *rows, int nranks,
                        size_t n, void *out)
{
    wf_reduce_plan_t plan;
    assert_int_equal(wf_reduce_plan(&plan, type, op, native), 0);
    const unsigned char *row = rows;
    size_t row_bytes = n * plan.user_size;
    unsigned char *partial = malloc(n * plan.partial_size + 1);
    assert_non_null(partial);

    plan.to_partial(partial, row, n);
    for (int r = 1; r < nranks - 1; r++)
        plan.reduce_user(partial, row + r * row_bytes, n);
    plan.reduce_finish(out, partial, row + (nranks - 1) * row_bytes, n, nranks);
    free(partial);
}

/* The same reduction through partials only: every rank converts, then reduce_partial, then finish. */
static void reduce_rows_via_partials(weft_datatype_t type, weft_op_t op, const void *rows, int nranks,
                                     size_t n, void *out)
{
    wf_reduce_plan_t plan;
    assert_int_equal(wf_reduce_plan(&plan, type, op, 0), 0);
    const unsigned char *row = rows;
    unsigned char *sum = malloc(n * plan.partial_size + 1), *next = malloc(n * plan.partial_size + 1);
    assert_non_null(sum);
    assert_non_null(next);

    plan.to_partial(sum, row, n);
    for (int r = 1; r < nranks; r++) {
        plan.to_partial(next, row + r * n * plan.user_size, n);
        plan.reduce_partial(sum, next, n);
    }
    plan.finish(out, sum, n, nranks);
    free(sum);
    free(next);
}

static void test_avg_int32_truncates(void **state)
{
    (void)state;
    int32_t rows[4][4], out[4];
    for (int r = 0; r < 4; r++) {
        rows[r][0] = r;
        rows[r][1] = -r;
        rows[r][2] = 10 * r + 1;
        rows[r][3] = 7;
    }
    const int32_t expected[4] = {1, -1, 16, 7};

    reduce_rows(WEFT_INT32, WEFT_AVG, 0, rows, 4, 4, out);
    assert_memory_equal(out, expected, sizeof out);
    reduce_rows_via_partials(WEFT_INT32, WEFT_AVG, rows, 4, 4, out);
    assert_memory_equal(out, expected, sizeof out);
}

static void test_avg_uint8_no_wrap(void **state)
{
    (void)state;
    uint8_t rows[4][3], out[3];
    memset(rows, 200, sizeof rows);
    reduce_rows(WEFT_UINT8, WEFT_AVG, 0, rows, 4, 3, out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i], 200);
    reduce_rows_via_partials(WEFT_UINT8, WEFT_AVG, rows, 4, 3, out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i], 200);
}

static void test_avg_float32_exact(void **state)
{
    (void)state;
    float rows[4][5], out[5];
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 5; i++)
            rows[r][i] = (float)(i + 1 + r);
    const float expected[5] = {2.5f, 3.5f, 4.5f, 5.5f, 6.5f};

    reduce_rows(WEFT_FLOAT32, WEFT_AVG, 0, rows, 4, 5, out);
    assert_memory_equal(out, expected, sizeof out);
    reduce_rows_via_partials(WEFT_FLOAT32, WEFT_AVG, rows, 4, 5, out);
    assert_memory_equal(out, expected, sizeof out);
}

/* Rank r contributes 3*i + r; the mean over 4 ranks is 3*i + 6/4, truncated to 3*i + 1. */
static void test_avg_int64_wide_sum(void **state)
{
    (void)state;
    int64_t rows[4][4], out[4];
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 4; i++)
            rows[r][i] = 3 * i + r;
    reduce_rows(WEFT_INT64, WEFT_AVG, 0, rows, 4, 4, out);
    for (int i = 0; i < 4; i++)
        assert_int_equal(out[i], 3 * i + 1);

    /* Near INT64_MAX a 64-bit sum would overflow; the 128-bit partial does not. */
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 4; i++)
            rows[r][i] = INT64_MAX - i;
    reduce_rows_via_partials(WEFT_INT64, WEFT_AVG, rows, 4, 4, out);
    for (int i = 0; i < 4; i++)
        assert_int_equal(out[i], INT64_MAX - i);
}

/* 300 ranks adding 1.0: float32 partials give 300; bfloat16 partials stop at 256 (256 + 1 ties to 256). */
static void test_sum_300_ones(void **state)
{
    (void)state;
    enum { RANKS = 300 };
    uint16_t half_rows[RANKS], bfloat_rows[RANKS], out;
    for (int r = 0; r < RANKS; r++) {
        half_rows[r] = 0x3c00;
        bfloat_rows[r] = 0x3f80;
    }

    reduce_rows(WEFT_FLOAT16, WEFT_SUM, 0, half_rows, RANKS, 1, &out);
    assert_int_equal(out, 0x5cb0); /* 300 */
    reduce_rows(WEFT_BFLOAT16, WEFT_SUM, 0, bfloat_rows, RANKS, 1, &out);
    assert_int_equal(out, 0x4396); /* 300 */
    reduce_rows(WEFT_BFLOAT16, WEFT_SUM, 1, bfloat_rows, RANKS, 1, &out);
    assert_int_equal(out, 0x4380); /* 256 */
}

/* ---- Conversions ---- */

static void test_half_round_trip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = wf_half_to_float((uint16_t)h);
        assert_int_equal(bits_of_float(f), bits_of_float(ref_half_to_float((uint16_t)h)));
        if (half_is_nan((uint16_t)h))
            assert_int_equal(wf_float_to_half(f), h | 0x0200); /* a signaling NaN comes back quiet */
        else
            assert_int_equal(wf_float_to_half(f), h);
    }
}

static void test_bfloat16_round_trip(void **state)
{
    (void)state;
    for (uint32_t b = 0; b <= 0xffff; b++) {
        float f = wf_bfloat16_to_float((uint16_t)b);
        assert_int_equal(bits_of_float(f), (uint32_t)b << 16);
        if (bfloat_is_nan((uint16_t)b))
            assert_int_equal(wf_float_to_bfloat16(f), b | 0x0040);
        else
            assert_int_equal(wf_float_to_bfloat16(f), b);
    }
}

/*
 * For every pair of neighbouring non-negative encodings: the float midpoint ties to the even one,
 * one float ulp either side goes to the nearer one, and the negated values mirror that.
 */
static void check_midpoints(const double *values, uint32_t infinity_bits, uint16_t (*narrow)(float))
{
    for (uint32_t k = 0; k < infinity_bits; k++) {
        float mid = (float)((values[k] + values[k + 1]) / 2);
        assert_true((double)mid == (values[k] + values[k + 1]) / 2); /* representable in float */
        uint32_t even = k % 2 == 0 ? k : k + 1;
        assert_int_equal(narrow(mid), even);
        assert_int_equal(narrow(-mid), 0x8000 | even);
        assert_int_equal(narrow(nextafterf(mid, 0.0f)), k);
        assert_int_equal(narrow(nextafterf(mid, INFINITY)), k + 1);
        assert_int_equal(narrow(-nextafterf(mid, INFINITY)), 0x8000 | (k + 1));
    }
}

static void test_half_rounding(void **state)
{
    (void)state;
    check_midpoints(half_values, 0x7c00, wf_float_to_half);

    assert_int_equal(wf_float_to_half(65504.0f), 0x7bff);
    assert_int_equal(wf_float_to_half(nextafterf(65520.0f, 0.0f)), 0x7bff);
    assert_int_equal(wf_float_to_half(65520.0f), 0x7c00);
    assert_int_equal(wf_float_to_half(-1e30f), 0xfc00);
    assert_int_equal(wf_float_to_half(INFINITY), 0x7c00);
    assert_int_equal(wf_float_to_half(0x1p-25f), 0x0000);
    assert_int_equal(wf_float_to_half(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    assert_int_equal(wf_float_to_half(-0x1.8p-24f), 0x8002); /* 1.5 units ties to 2 */
    assert_int_equal(wf_float_to_half(0x1p-149f), 0x0000);
    assert_int_equal(wf_float_to_half(-0.0f), 0x8000);
    assert_int_equal(wf_float_to_half(float_of_bits(0x7f800001)), 0x7e00);
    assert_int_equal(wf_float_to_half(float_of_bits(0xffc02000u)), 0xfe01);

    rng_state = 12345;
    for (int i = 0; i < 2000000; i++) {
        float f = float_of_bits((uint32_t)next_random());
        assert_int_equal(wf_float_to_half(f), ref_float_to_half(f));
    }
}

static void test_bfloat16_rounding(void **state)
{
    (void)state;
    check_midpoints(bfloat_values, 0x7f80, wf_float_to_bfloat16);

    assert_int_equal(wf_float_to_bfloat16(float_of_bits(0x7f7fffff)), 0x7f80); /* FLT_MAX rounds up */
    assert_int_equal(wf_float_to_bfloat16(float_of_bits(0x7f7f7fff)), 0x7f7f);
    assert_int_equal(wf_float_to_bfloat16(257.0f), 0x4380);                    /* tie to even 256 */
    assert_int_equal(wf_float_to_bfloat16(259.0f), 0x4382);                    /* tie to even 260 */
    assert_int_equal(wf_float_to_bfloat16(float_of_bits(0x00008000)), 0x0000); /* subnormal tie */
    assert_int_equal(wf_float_to_bfloat16(float_of_bits(0x00018000)), 0x0002);
    assert_int_equal(wf_float_to_bfloat16(float_of_bits(0x7f800001)), 0x7fc0);
    assert_int_equal(wf_float_to_bfloat16(float_of_bits(0xff810000u)), 0xffc1);

    rng_state = 54321;
    for (int i = 0; i < 2000000; i++) {
        float f = float_of_bits((uint32_t)next_random());
        assert_int_equal(wf_float_to_bfloat16(f), ref_float_to_bfloat(f));
    }
}

/* ---- Plans, names, sizes, ISA ---- */

static void test_plan_rejects_bad_values(void **state)
{
    (void)state;
    wf_reduce_plan_t plan;
    assert_int_equal(wf_reduce_plan(&plan, (weft_datatype_t)WF_DATATYPE_COUNT, WEFT_SUM, 0), -1);
    assert_int_equal(wf_reduce_plan(&plan, (weft_datatype_t)-1, WEFT_SUM, 0), -1);
    assert_int_equal(wf_reduce_plan(&plan, WEFT_FLOAT32, (weft_op_t)WF_OP_COUNT, 0), -1);
    assert_int_equal(wf_reduce_plan(&plan, WEFT_FLOAT32, (weft_op_t)-1, 0), -1);
    assert_int_equal(wf_reduce_plan(NULL, WEFT_FLOAT32, WEFT_SUM, 0), -1);
    assert_int_equal(wf_datatype_size((weft_datatype_t)WF_DATATYPE_COUNT), 0);
    assert_null(wf_datatype_name((weft_datatype_t)-1));
    assert_null(wf_op_name((weft_op_t)WF_OP_COUNT));
}

static void test_names_and_sizes(void **state)
{
    (void)state;
    static const size_t sizes[WF_DATATYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
    for (int type = 0; type < WF_DATATYPE_COUNT; type++) {
        assert_string_equal(wf_datatype_name((weft_datatype_t)type), type_names[type]);
        assert_int_equal(wf_datatype_size((weft_datatype_t)type), sizes[type]);
    }
    for (int op = 0; op < WF_OP_COUNT; op++)
        assert_string_equal(wf_op_name((weft_op_t)op), op_names[op]);
}

static void test_isa_matches_cpu(void **state)
{
    (void)state;
    const char *expected = "scalar";
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        expected = "avx512";
    else if (__builtin_cpu_supports("avx2"))
        expected = "avx2";
#endif
    assert_string_equal(wf_reduce_isa(), expected);
}

static int setup_tables(void **state)
{
    (void)state;
    build_16bit_tables();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_sizes),
        cmocka_unit_test(test_plan_rejects_bad_values),
        cmocka_unit_test(test_isa_matches_cpu),
        cmocka_unit_test(test_half_round_trip),
        cmocka_unit_test(test_bfloat16_round_trip),
        cmocka_unit_test(test_half_rounding),
        cmocka_unit_test(test_bfloat16_rounding),
        cmocka_unit_test(test_kernels_int8),
        cmocka_unit_test(test_kernels_uint8),
        cmocka_unit_test(test_kernels_int32),
        cmocka_unit_test(test_kernels_uint32),
        cmocka_unit_test(test_kernels_int64),
        cmocka_unit_test(test_kernels_uint64),
        cmocka_unit_test(test_kernels_float16),
        cmocka_unit_test(test_kernels_bfloat16),
        cmocka_unit_test(test_kernels_float32),
        cmocka_unit_test(test_kernels_float64),
        cmocka_unit_test(test_kernels_zero_count_null),
        cmocka_unit_test(test_kernels_in_place),
        cmocka_unit_test(test_kernels_unaligned),
        cmocka_unit_test(test_avg_int32_truncates),
        cmocka_unit_test(test_avg_uint8_no_wrap),
        cmocka_unit_test(test_avg_float32_exact),
        cmocka_unit_test(test_avg_int64_wide_sum),
        cmocka_unit_test(test_sum_300_ones),
    };
    return cmocka_run_group_tests(tests, setup_tables, NULL);
}
