/* Check inputs and reference results of the benchmarks (see bench_data.h for the exactness rules). */
#include "bench_data.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Byte of the poison pattern. As any element type it is a value that no check input takes, and no
 * result either, except a wrapping sum or product of 8-bit integers. */
#define POISON_BYTE 0xA5

static int is_real(bench_type_t type)
{
    return type == BENCH_FLOAT16 || type == BENCH_BFLOAT16 || type == BENCH_FLOAT32 || type == BENCH_FLOAT64;
}

static int is_signed(bench_type_t type)
{
    return is_real(type) || type == BENCH_INT8 || type == BENCH_INT32 || type == BENCH_INT64;
}

/* Convert IEEE 754 binary32 to binary16, rounding to nearest even. Overflow gives infinity. */
static uint16_t float_to_half(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t exponent = (bits >> 23) & 0xffu;
    uint32_t mantissa = bits & 0x7fffffu;

    if (exponent == 0xffu) /* infinity stays infinity, NaN stays a quiet NaN */
        return (uint16_t)(sign | 0x7c00u | (mantissa != 0 ? 0x200u : 0));
    int half_exponent = (int)exponent - 127 + 15;
    if (half_exponent >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (half_exponent <= 0) {
        /* Subnormal half: the value is m * 2^-24, so the 24-bit significand shifts right by 14 - e. */
        if (half_exponent < -10)
            return sign;
        uint32_t significand = mantissa | 0x800000u;
        int shift = 14 - half_exponent;
        uint32_t result = significand >> shift;
        uint32_t remainder = significand & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (remainder > halfway || (remainder == halfway && (result & 1u)))
            result++;
        return (uint16_t)(sign | result);
    }
    uint32_t result = ((uint32_t)half_exponent << 10) | (mantissa >> 13);
    uint32_t remainder = mantissa & 0x1fffu;
    /* A carry out of the mantissa correctly bumps the exponent, up to infinity. */
    if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u)))
        result++;
    return (uint16_t)(sign | result);
}

static float half_to_float(uint16_t half)
{
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu;
    uint32_t mantissa = half & 0x3ffu;
    uint32_t bits;

    if (exponent == 0x1fu) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent == 0) {
        float magnitude = ldexpf((float)mantissa, -24);
        return sign != 0 ? -magnitude : magnitude;
    } else {
        bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
    }
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

/* Convert binary32 to bfloat16 (its upper 16 bits), rounding to nearest even. */
static uint16_t float_to_bfloat16(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x7fffffu) != 0)
        return (uint16_t)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static float bfloat16_to_float(uint16_t bfloat)
{
    uint32_t bits = (uint32_t)bfloat << 16;
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

/* Store the low bits of value into element index of an integer buffer (two's complement wrap). */
static void store_integer(bench_type_t type, void *buf, size_t index, uint64_t value)
{
    switch (type) {
    case BENCH_INT8:
    case BENCH_UINT8: ((uint8_t *)buf)[index] = (uint8_t)value; break;
    case BENCH_INT32:
    case BENCH_UINT32: ((uint32_t *)buf)[index] = (uint32_t)value; break;
    default: ((uint64_t *)buf)[index] = value; break;
    }
}

static uint64_t load_integer(bench_type_t type, const void *buf, size_t index)
{
    switch (type) {
    case BENCH_INT8:
    case BENCH_UINT8: return ((const uint8_t *)buf)[index];
    case BENCH_INT32:
    case BENCH_UINT32: return ((const uint32_t *)buf)[index];
    default: return ((const uint64_t *)buf)[index];
    }
}

static uint64_t integer_mask(bench_type_t type)
{
    size_t bits = bench_type_size(type) * 8;
    return bits >= 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
}

/* Store value rounded to nearest even into element index of a floating-point buffer. */
static void store_real(bench_type_t type, void *buf, size_t index, double value)
{
    switch (type) {
    case BENCH_FLOAT16: ((uint16_t *)buf)[index] = float_to_half((float)value); break;
    case BENCH_BFLOAT16: ((uint16_t *)buf)[index] = float_to_bfloat16((float)value); break;
    case BENCH_FLOAT32: ((float *)buf)[index] = (float)value; break;
    default: ((double *)buf)[index] = value; break;
    }
}

static double load_real(bench_type_t type, const void *buf, size_t index)
{
    switch (type) {
    case BENCH_FLOAT16: return half_to_float(((const uint16_t *)buf)[index]);
    case BENCH_BFLOAT16: return bfloat16_to_float(((const uint16_t *)buf)[index]);
    case BENCH_FLOAT32: return ((const float *)buf)[index];
    default: return ((const double *)buf)[index];
    }
}

static void store_small_integer(bench_type_t type, void *buf, size_t index, int64_t value)
{
    if (is_real(type))
        store_real(type, buf, index, (double)value);
    else
        store_integer(type, buf, index, (uint64_t)value);
}

/*
 * Input of `rank` at global index `index`. Each formula has a term that depends on the index alone,
 * so the reduced result changes along the buffer whatever nranks is, and a shifted or swapped block
 * is detected. The ranges keep every result exact (see bench_data.h).
 */
static int64_t reduce_input(bench_type_t type, bench_op_t op, int rank, int nranks, size_t index)
{
    int is_signed_type = is_signed(type);
    uint64_t r = (uint64_t)rank;
    int64_t index_term = (int64_t)(index % 5);

    switch (op) {
    case BENCH_SUM:
    case BENCH_MIN:
    case BENCH_MAX: {
        /* -5..5 for signed types and floating point, 0..10 for unsigned types */
        int64_t rank_term = (int64_t)((r * 3 + index % 7) % 7);
        return index_term + rank_term - (is_signed_type ? 5 : 0);
    }
    case BENCH_PROD: {
        /* Floating point gets factors 2, -1 and 1, so the product is a signed power of two. Integers
         * get odd factors (3, and -1 or 5), so a wrapping product never collapses to 0 mod 2^bits. */
        uint64_t selector = rank == 0 ? index % 3 : (r * 5 + index % 7) % 7;
        if (selector == 0 || selector == 5)
            return is_real(type) ? 2 : 3;
        if (selector == 1)
            return is_signed_type ? -1 : 5;
        return 1;
    }
    case BENCH_AVG: {
        /* Ranks pair up with opposite offsets (the last of an odd count gets 0), so the sum is a
         * multiple of nranks and the average, index % 5 + 2, is exact even for integers. */
        int64_t direction = (rank == nranks - 1 && nranks % 2 == 1) ? 0 : (rank % 2 == 0 ? 1 : -1);
        return index_term + 2 + direction * (int64_t)(1 + index % 2);
    }
    }
    return 0;
}

/* Data block element of all-gather and broadcast: 0..112, exact in every type. */
static int64_t data_value(int rank, size_t index)
{
    return (int64_t)(((uint64_t)(rank + 1) * 37 + (index % 113) * 11) % 113);
}

void bench_fill_reduce_input(bench_type_t type, bench_op_t op, int rank, int nranks, size_t first_index,
                             void *buf, size_t count)
{
    for (size_t i = 0; i < count; i++)
        store_small_integer(type, buf, i, reduce_input(type, op, rank, nranks, first_index + i));
}

void bench_fill_data(bench_type_t type, int rank, void *buf, size_t count)
{
    for (size_t i = 0; i < count; i++)
        store_small_integer(type, buf, i, data_value(rank, i));
}

void bench_poison(bench_type_t type, void *buf, size_t count)
{
    memset(buf, POISON_BYTE, count * bench_type_size(type));
}

/* Reference integer result at one index: sum and prod wrap modulo 2^64 and are truncated later. */
static uint64_t reduce_integer(bench_type_t type, bench_op_t op, int nranks, size_t index)
{
    uint64_t wrapped = op == BENCH_PROD ? 1 : 0;
    int64_t exact = 0;

    for (int rank = 0; rank < nranks; rank++) {
        int64_t value = reduce_input(type, op, rank, nranks, index);
        switch (op) {
        case BENCH_SUM: wrapped += (uint64_t)value; break;
        case BENCH_PROD: wrapped *= (uint64_t)value; break;
        case BENCH_MIN: exact = (rank == 0 || value < exact) ? value : exact; break;
        case BENCH_MAX: exact = (rank == 0 || value > exact) ? value : exact; break;
        case BENCH_AVG: exact += value; break; /* at most 8 * nranks: no overflow in int64 */
        }
    }
    if (op == BENCH_SUM || op == BENCH_PROD)
        return wrapped;
    if (op == BENCH_AVG)
        return (uint64_t)(exact / nranks); /* C division truncates toward zero, as weft does */
    return (uint64_t)exact;
}

/* Reference floating-point result at one index, exact in double (see the file header). */
static double reduce_real(bench_type_t type, bench_op_t op, int nranks, size_t index)
{
    double result = op == BENCH_PROD ? 1.0 : 0.0;

    for (int rank = 0; rank < nranks; rank++) {
        double value = (double)reduce_input(type, op, rank, nranks, index);
        switch (op) {
        case BENCH_SUM:
        case BENCH_AVG: result += value; break;
        case BENCH_PROD: result *= value; break;
        case BENCH_MIN: result = (rank == 0 || value < result) ? value : result; break;
        case BENCH_MAX: result = (rank == 0 || value > result) ? value : result; break;
        }
    }
    return op == BENCH_AVG ? result / nranks : result;
}

size_t bench_count_wrong_reduce(bench_type_t type, bench_op_t op, int nranks, size_t first_index,
                                const void *out, size_t count)
{
    size_t wrong = 0;

    if (is_real(type)) {
        unsigned char expected_element[8];
        for (size_t i = 0; i < count; i++) {
            /* Round the exact reference to the element type the same way the output was rounded. */
            store_real(type, expected_element, 0, reduce_real(type, op, nranks, first_index + i));
            if (load_real(type, out, i) != load_real(type, expected_element, 0))
                wrong++;
        }
        return wrong;
    }

    uint64_t mask = integer_mask(type);
    for (size_t i = 0; i < count; i++) {
        if (load_integer(type, out, i) != (reduce_integer(type, op, nranks, first_index + i) & mask))
            wrong++;
    }
    return wrong;
}

size_t bench_count_wrong_data(bench_type_t type, int source_rank, const void *out, size_t count)
{
    size_t wrong = 0;

    for (size_t i = 0; i < count; i++) {
        int64_t expected = data_value(source_rank, i);
        if (is_real(type)) {
            if (load_real(type, out, i) != (double)expected)
                wrong++;
        } else if (load_integer(type, out, i) != ((uint64_t)expected & integer_mask(type))) {
            wrong++;
        }
    }
    return wrong;
}
