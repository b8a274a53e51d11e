/* Input patterns and the independent reference for coll_check (see coll_data.h). */
#include "coll_data.h"

#include "coll_util.h"

/* splitmix64 finalizer: a cheap, well-mixed 64-bit hash step. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Per-rank hash prefixes for one (seed, type, pattern). The reference needs the same ranks again
 * for every element, so they are computed once. Not thread-safe, like the rest of the test. */
#define CT_CACHED_RANKS 64
static struct {
    int valid;
    uint64_t seed;
    weft_datatype_t type;
    int pattern;
    uint64_t rank_prefix[CT_CACHED_RANKS];
} prefix_cache;

static uint64_t rank_prefix(weft_datatype_t type, int pattern, uint64_t seed, int rank)
{
    if (rank >= CT_CACHED_RANKS)
        return mix64(mix64(seed ^ ((uint64_t)type << 8 | (uint64_t)pattern)) ^ (uint64_t)rank);
    if (!prefix_cache.valid || prefix_cache.seed != seed || prefix_cache.type != type ||
        prefix_cache.pattern != pattern) {
        uint64_t base = mix64(seed ^ ((uint64_t)type << 8 | (uint64_t)pattern));
        for (int r = 0; r < CT_CACHED_RANKS; r++)
            prefix_cache.rank_prefix[r] = mix64(base ^ (uint64_t)r);
        prefix_cache.valid = 1;
        prefix_cache.seed = seed;
        prefix_cache.type = type;
        prefix_cache.pattern = pattern;
    }
    return prefix_cache.rank_prefix[rank];
}

static uint64_t element_hash(weft_datatype_t type, int pattern, uint64_t seed, int rank, size_t index)
{
    return mix64(rank_prefix(type, pattern, seed, rank) ^ (uint64_t)index);
}

/*
 * Factors for float products. Each has at most two significant bits, so the product of up to
 * 8 ranks has at most 13 significant bits and lies within [2^-8, 2^8]: exact in float32 and
 * inside the normal range of float16 and bfloat16. Rank counts above 8 keep products exact in
 * float32 up to about 16 ranks. Zero is left out because the sign of a zero product is a detail
 * no test here cares about.
 */
static const double product_factors[10] = {0.5, 0.75, 1.0, 1.5, 2.0, -0.5, -0.75, -1.0, -1.5, -2.0};

/*
 * Value of a float input for sum, min, max and avg: an integer k in [-limit, limit] times
 * 2^-scale_bits. The significant bits of k fit the type exactly, and a sum over up to 16 ranks
 * needs at most 4 more bits, which float32 (float64 for double) still represents exactly.
 */
static double float_sum_input(weft_datatype_t type, uint64_t h)
{
    int64_t limit;
    int scale_bits;

    switch (type) {
    case WEFT_FLOAT16: limit = 1024; scale_bits = 4; break;  /* 11 bits: [-64, 64] in steps of 1/16 */
    case WEFT_BFLOAT16: limit = 128; scale_bits = 4; break;  /* 8 bits: [-8, 8] in steps of 1/16 */
    case WEFT_FLOAT32: limit = 1 << 19; scale_bits = 6; break; /* 20 bits */
    default: limit = (int64_t)1 << 39; scale_bits = 10; break; /* 40 bits */
    }
    /* Scale the hash to [0, 2*limit] with a multiply instead of a slow 64-bit modulo. */
    uint64_t range = (uint64_t)(2 * limit + 1);
    int64_t k = (int64_t)(((unsigned __int128)h * range) >> 64) - limit;
    return (double)k / (double)((int64_t)1 << scale_bits);
}

void ct_input_element(weft_datatype_t type, int pattern, uint64_t seed, int rank, size_t index,
                      void *element)
{
    uint64_t h = element_hash(type, pattern, seed, rank, index);

    if (pattern == CT_PATTERN_MOVE || !ct_type_is_float(type)) {
        /* Integer products use odd factors: a product of odd numbers is odd, so it never
         * collapses to zero and every bit of the wrapped result is checked. */
        ct_store_uint(type, pattern == WEFT_PROD ? h | 1 : h, element);
        return;
    }
    if (pattern == WEFT_PROD)
        ct_store_float(type, product_factors[((unsigned __int128)h * 10) >> 64], element);
    else
        ct_store_float(type, float_sum_input(type, h), element);
}

static void reduce_integers(weft_datatype_t type, weft_op_t op, uint64_t seed, int nranks, size_t index,
                            void *element)
{
    unsigned char input[8];
    int is_signed = ct_type_is_signed(type);
    uint64_t wrapped = op == WEFT_PROD ? 1 : 0; /* sum or prod modulo 2^64; the low bits are the result */
    __int128 signed_sum = 0;
    unsigned __int128 unsigned_sum = 0;
    int64_t signed_best = 0;
    uint64_t unsigned_best = 0;

    for (int rank = 0; rank < nranks; rank++) {
        ct_input_element(type, op, seed, rank, index, input);
        int64_t s = ct_load_int(type, input);
        uint64_t u = ct_load_uint(type, input);
        int first = rank == 0;

        switch (op) {
        case WEFT_SUM: wrapped += u; break;
        case WEFT_PROD: wrapped *= u; break;
        case WEFT_AVG:
            signed_sum += s;
            unsigned_sum += u;
            break;
        case WEFT_MIN:
            if (first || s < signed_best) signed_best = s;
            if (first || u < unsigned_best) unsigned_best = u;
            break;
        case WEFT_MAX:
            if (first || s > signed_best) signed_best = s;
            if (first || u > unsigned_best) unsigned_best = u;
            break;
        }
    }

    uint64_t result;
    if (op == WEFT_SUM || op == WEFT_PROD)
        result = wrapped;
    else if (op == WEFT_AVG) /* C division truncates toward zero, as weft.h specifies */
        result = is_signed ? (uint64_t)(int64_t)(signed_sum / nranks) : (uint64_t)(unsigned_sum / (unsigned)nranks);
    else
        result = is_signed ? (uint64_t)signed_best : unsigned_best;
    ct_store_uint(type, result, element);
}

static void reduce_floats(weft_datatype_t type, weft_op_t op, uint64_t seed, int nranks, size_t index,
                          void *element)
{
    unsigned char input[8];
    double accumulator = op == WEFT_PROD ? 1.0 : 0.0; /* exact by the choice of inputs */

    for (int rank = 0; rank < nranks; rank++) {
        ct_input_element(type, op, seed, rank, index, input);
        double value = ct_load_float(type, input);

        switch (op) {
        case WEFT_SUM:
        case WEFT_AVG: accumulator += value; break;
        case WEFT_PROD: accumulator *= value; break;
        case WEFT_MIN:
            if (rank == 0 || value < accumulator) accumulator = value;
            break;
        case WEFT_MAX:
            if (rank == 0 || value > accumulator) accumulator = value;
            break;
        }
    }

    if (op == WEFT_AVG && type == WEFT_FLOAT64) {
        accumulator /= nranks;
    } else if (op == WEFT_AVG) {
        /* The sum is exact in float32; the division rounds once in float32, and the 16-bit types
         * round a second time when stored, as a float32 reduction followed by one final
         * conversion does. */
        float quotient = (float)accumulator / (float)nranks;
        accumulator = quotient;
    }
    ct_store_float(type, accumulator, element);
}

void ct_expected_reduction(weft_datatype_t type, weft_op_t op, uint64_t seed, int nranks, size_t index,
                           void *element)
{
    if (ct_type_is_float(type))
        reduce_floats(type, op, seed, nranks, index, element);
    else
        reduce_integers(type, op, seed, nranks, index, element);
}
