/* Element formats, guarded buffers and reporting for the collective tests (see coll_util.h). */
#include "coll_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Failure lines printed per rank before the rest are only counted. */
#define CT_MAX_PRINTED_FAILURES 40

static const char *const type_names[CT_NUM_TYPES] = {
    "int8", "uint8", "int32", "uint32", "int64", "uint64", "float16", "bfloat16", "float32", "float64",
};
static const size_t type_sizes[CT_NUM_TYPES] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
static const char *const op_names[CT_NUM_OPS] = {"sum", "prod", "min", "max", "avg"};

size_t ct_type_size(weft_datatype_t type)
{
    return type_sizes[type];
}

const char *ct_type_name(weft_datatype_t type)
{
    return type_names[type];
}

const char *ct_op_name(weft_op_t op)
{
    return op_names[op];
}

int ct_type_is_float(weft_datatype_t type)
{
    return type >= WEFT_FLOAT16;
}

int ct_type_is_signed(weft_datatype_t type)
{
    return type == WEFT_INT8 || type == WEFT_INT32 || type == WEFT_INT64;
}

float ct_half_to_float(uint16_t half)
{
    unsigned exponent = (half >> 10) & 0x1f;
    unsigned mantissa = half & 0x3ff;
    float magnitude;

    if (exponent == 0)
        magnitude = ldexpf((float)mantissa, -24); /* zero or subnormal: mantissa * 2^-24 */
    else if (exponent == 31)
        magnitude = mantissa ? NAN : INFINITY;
    else
        magnitude = ldexpf((float)(1024 + mantissa), (int)exponent - 25);
    return (half & 0x8000) ? -magnitude : magnitude;
}

/* Shift `value` right by `shift` bits, rounding to nearest with ties to even; shift is 1..31. */
static uint32_t shift_round_even(uint32_t value, unsigned shift)
{
    uint32_t rounded = value >> shift;
    uint32_t rest = value & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);

    if (rest > halfway || (rest == halfway && (rounded & 1)))
        rounded++;
    return rounded;
}

uint16_t ct_float_to_half(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
    int exponent = (int)((bits >> 23) & 0xff);
    uint32_t mantissa = bits & 0x7fffff;

    if (exponent == 0xff) /* infinity stays infinity, NaN stays a quiet NaN */
        return (uint16_t)(sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >> 13) : 0));

    int half_exponent = exponent - 127 + 15;
    if (half_exponent >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (half_exponent <= 0) {
        /* Subnormal result: the half mantissa counts units of 2^-24. A float zero or float
         * subnormal is far below that unit and rounds to zero. */
        unsigned shift = (unsigned)(14 - half_exponent);
        if (exponent == 0 || shift > 24)
            return sign;
        return (uint16_t)(sign | shift_round_even(mantissa | 0x800000, shift));
    }
    /* A carry out of the mantissa correctly bumps the exponent, up to infinity (0x7c00). */
    uint32_t combined = (uint32_t)half_exponent << 23 | mantissa;
    return (uint16_t)(sign | shift_round_even(combined, 13));
}

float ct_bfloat_to_float(uint16_t bfloat)
{
    uint32_t bits = (uint32_t)bfloat << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

uint16_t ct_float_to_bfloat(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((bits >> 16) | 0x40);
    return (uint16_t)((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
}

int64_t ct_load_int(weft_datatype_t type, const void *element)
{
    switch (type) {
    case WEFT_INT8: return *(const int8_t *)element;
    case WEFT_INT32: return *(const int32_t *)element;
    case WEFT_INT64: return *(const int64_t *)element;
    default: return (int64_t)ct_load_uint(type, element);
    }
}

uint64_t ct_load_uint(weft_datatype_t type, const void *element)
{
    switch (type) {
    case WEFT_INT8: return (uint64_t)(int64_t)*(const int8_t *)element;
    case WEFT_INT32: return (uint64_t)(int64_t)*(const int32_t *)element;
    case WEFT_UINT8: return *(const uint8_t *)element;
    case WEFT_UINT32: return *(const uint32_t *)element;
    default: {
        uint64_t value = 0;
        memcpy(&value, element, ct_type_size(type));
        return value;
    }
    }
}

double ct_load_float(weft_datatype_t type, const void *element)
{
    switch (type) {
    case WEFT_FLOAT16: return ct_half_to_float(*(const uint16_t *)element);
    case WEFT_BFLOAT16: return ct_bfloat_to_float(*(const uint16_t *)element);
    case WEFT_FLOAT32: return *(const float *)element;
    case WEFT_FLOAT64: return *(const double *)element;
    default: return (double)ct_load_int(type, element);
    }
}

void ct_store_uint(weft_datatype_t type, uint64_t value, void *element)
{
    /* Little-endian truncation: the low bytes of the 64-bit value are the element. */
    switch (ct_type_size(type)) {
    case 1: *(uint8_t *)element = (uint8_t)value; break;
    case 2: *(uint16_t *)element = (uint16_t)value; break;
    case 4: *(uint32_t *)element = (uint32_t)value; break;
    default: *(uint64_t *)element = value; break;
    }
}

void ct_store_float(weft_datatype_t type, double value, void *element)
{
    switch (type) {
    case WEFT_FLOAT16: *(uint16_t *)element = ct_float_to_half((float)value); break;
    case WEFT_BFLOAT16: *(uint16_t *)element = ct_float_to_bfloat((float)value); break;
    case WEFT_FLOAT32: *(float *)element = (float)value; break;
    case WEFT_FLOAT64: *(double *)element = value; break;
    default: ct_store_uint(type, (uint64_t)(int64_t)value, element); break;
    }
}

void ct_format_element(weft_datatype_t type, const void *element, char *text, size_t length)
{
    int hex_digits = (int)ct_type_size(type) * 2;
    uint64_t bits = 0;
    memcpy(&bits, element, ct_type_size(type));

    if (ct_type_is_float(type))
        snprintf(text, length, "%.17g (0x%0*" PRIx64 ")", ct_load_float(type, element), hex_digits, bits);
    else if (ct_type_is_signed(type))
        snprintf(text, length, "%" PRId64 " (0x%0*" PRIx64 ")", ct_load_int(type, element), hex_digits, bits);
    else
        snprintf(text, length, "%" PRIu64 " (0x%0*" PRIx64 ")", bits, hex_digits, bits);
}

void ct_buffer_alloc(ct_buffer_t *buffer, size_t bytes)
{
    buffer->base = malloc(bytes + 2 * CT_GUARD_BYTES);
    if (buffer->base == NULL) {
        fprintf(stderr, "coll test: cannot allocate %zu bytes for a test buffer; free memory or run "
                        "fewer ranks\n", bytes + 2 * CT_GUARD_BYTES);
        exit(2);
    }
    buffer->data = buffer->base + CT_GUARD_BYTES;
    buffer->bytes = bytes;
    memset(buffer->base, CT_GUARD_FILL, CT_GUARD_BYTES);
    memset(buffer->data + bytes, CT_GUARD_FILL, CT_GUARD_BYTES);
}

void ct_buffer_free(ct_buffer_t *buffer)
{
    free(buffer->base);
    buffer->base = buffer->data = NULL;
    buffer->bytes = 0;
}

long ct_buffer_guard_damage(const ct_buffer_t *buffer)
{
    for (long i = 0; i < CT_GUARD_BYTES; i++) {
        if (buffer->base[i] != CT_GUARD_FILL)
            return i - CT_GUARD_BYTES;
    }
    for (long i = 0; i < CT_GUARD_BYTES; i++) {
        if (buffer->data[buffer->bytes + (size_t)i] != CT_GUARD_FILL)
            return i + 1;
    }
    return 0;
}

double ct_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

weft_comm_t ct_init_or_exit(const char *program)
{
    weft_comm_t comm = NULL;

    /* Whole lines from each rank, so the output of several ranks on one terminal stays readable. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    weft_result_t result = weft_comm_init_env(&comm);
    if (result != WEFT_SUCCESS) {
        const char *root = getenv("WEFT_ROOT");
        const char *rank = getenv("WEFT_RANK");
        const char *size = getenv("WEFT_SIZE");
        fprintf(stderr, "%s: weft_comm_init_env failed: %s: %s (WEFT_ROOT=%s WEFT_RANK=%s WEFT_SIZE=%s); "
                        "start the test with coll_launch or mpirun\n",
                program, weft_result_string(result), weft_comm_last_error(NULL), root ? root : "unset",
                rank ? rank : "unset", size ? size : "unset");
        exit(1);
    }
    return comm;
}

void ct_start(const char *program, weft_comm_t *comm, ct_tally_t *tally)
{
    *comm = ct_init_or_exit(program);
    *tally = (ct_tally_t){.program = program, .rank = weft_comm_rank(*comm), .nranks = weft_comm_size(*comm)};
}

void ct_fail(ct_tally_t *tally, const char *format, ...)
{
    tally->failed++;
    if (tally->printed >= CT_MAX_PRINTED_FAILURES)
        return;
    tally->printed++;

    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    printf("FAIL %s rank %d: %s\n", tally->program, tally->rank, line);
    if (tally->printed == CT_MAX_PRINTED_FAILURES)
        printf("FAIL %s rank %d: more failures are counted but not printed\n", tally->program, tally->rank);
}

int ct_check_result(ct_tally_t *tally, weft_comm_t comm, weft_result_t result, const char *label)
{
    if (result == WEFT_SUCCESS)
        return 1;
    ct_fail(tally, "%s returned %s: %s", label, weft_result_string(result), weft_comm_last_error(comm));
    if (result != WEFT_ERR_INVALID_ARGUMENT)
        tally->broken = 1;
    return 0;
}

int ct_compare_elements(ct_tally_t *tally, const char *label, weft_datatype_t type, const void *got,
                        const void *expected, size_t count)
{
    size_t size = ct_type_size(type);
    size_t wrong = 0, first_wrong = 0;

    for (size_t i = 0; i < count; i++) {
        if (memcmp((const char *)got + i * size, (const char *)expected + i * size, size) == 0)
            continue;
        if (wrong++ == 0)
            first_wrong = i;
    }
    if (wrong == 0)
        return 1;

    char expected_text[64], got_text[64];
    ct_format_element(type, (const char *)expected + first_wrong * size, expected_text, sizeof expected_text);
    ct_format_element(type, (const char *)got + first_wrong * size, got_text, sizeof got_text);
    ct_fail(tally, "%s %s: index %zu: expected %s, got %s (%zu of %zu elements wrong)", label, ct_type_name(type),
            first_wrong, expected_text, got_text, wrong, count);
    return 0;
}

int ct_check_duration(ct_tally_t *tally, const char *label, double seconds, double limit)
{
    if (seconds <= limit)
        return 1;
    ct_fail(tally, "%s took %.2f s, more than the %.0f s allowed", label, seconds, limit);
    return 0;
}

int ct_finish(ct_tally_t *tally, weft_comm_t comm)
{
    uint64_t totals[2] = {tally->passed, tally->failed};
    const char *scope = "this rank";

    /* The totals travel through the library under test, so each rank still exits on its own
     * count: a broken sum cannot turn a local failure into a pass. */
    if (!tally->broken && weft_allreduce(totals, totals, 2, WEFT_UINT64, WEFT_SUM, comm) == WEFT_SUCCESS)
        scope = "all ranks";
    else {
        totals[0] = tally->passed;
        totals[1] = tally->failed;
    }
    if (tally->rank == 0 || tally->failed > 0 || tally->broken)
        printf("%s rank %d: %" PRIu64 " passed, %" PRIu64 " failed (%s, %d ranks)\n", tally->program,
               tally->rank, totals[0], totals[1], scope, tally->nranks);

    weft_result_t result = weft_comm_destroy(comm);
    if (result != WEFT_SUCCESS) {
        printf("FAIL %s rank %d: weft_comm_destroy returned %s\n", tally->program, tally->rank,
               weft_result_string(result));
        return 1;
    }
    return tally->failed > 0 || tally->broken;
}
