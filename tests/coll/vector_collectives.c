/*
 * vector_collectives: exact checks of weft_reduce, weft_allgatherv and weft_reduce_scatterv on every
 * rank, with guard bytes around every buffer. Start it on every rank with coll_launch or mpirun:
 *
 *   vector_collectives [allgatherv] [reduce_scatterv] [reduce]
 *
 * With no argument every group runs. Every rank must get the same arguments, because they decide
 * the sequence of collective calls.
 */
#include "vector_collectives.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_data.h"

/*
 * The float inputs of coll_data.c keep products exact in float16 and bfloat16 up to 8 ranks (sums
 * up to 16), so the bitwise comparison is only meaningful up to 8 ranks.
 */
#define VC_MAX_RANKS 8
/* First case seed; any value works as long as every rank uses the same one. */
#define VC_FIRST_SEED 0x7e57ab1e0001ull

uint64_t vc_hash(uint64_t seed, uint64_t value)
{
    uint64_t x = seed ^ (value * 0xd1b54a32d192ed03ull);
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t draw_count(uint64_t seed, int rank, int forced_zero, int large)
{
    uint64_t h = vc_hash(seed, (uint64_t)rank);
    if (rank == forced_zero || h % 4 == 0)
        return 0;
    if (large)
        return 40000 + (size_t)((h >> 8) % 120000);
    return 1 + (size_t)((h >> 8) % 9);
}

/* Point every zero-count rank into the middle of the first block of at least 2 elements. An empty
 * range overlaps nothing, so the library must accept this and write nothing there for it. */
static void move_empty_blocks_inside(int nranks, vc_layout_t *layout)
{
    int host = -1;
    for (int r = 0; r < nranks && host < 0; r++) {
        if (layout->counts[r] >= 2)
            host = r;
    }
    if (host < 0)
        return;
    for (int r = 0; r < nranks; r++) {
        if (layout->counts[r] == 0)
            layout->displs[r] = layout->displs[host] + 1;
    }
}

void vc_layout_make(const vc_context_t *context, uint64_t seed, const vc_shape_t *shape, vc_layout_t *layout)
{
    int n = context->nranks;
    layout->counts = calloc(2 * (size_t)n, sizeof(size_t));
    if (layout->counts == NULL) {
        fprintf(stderr, "vector_collectives: cannot allocate a layout for %d ranks\n", n);
        exit(2);
    }
    layout->displs = layout->counts + n;

    int forced_zero = n > 1 ? (int)(vc_hash(seed, 0xffff) % (uint64_t)n) : -1;
    for (int r = 0; r < n; r++)
        layout->counts[r] = draw_count(seed, r, forced_zero, shape->large);

    size_t cursor = 0;
    for (int k = 0; k < n; k++) {
        int r = shape->reversed ? n - 1 - k : k;
        if (shape->gaps)
            cursor += 1 + (size_t)(vc_hash(seed, (uint64_t)(n + r)) % 3);
        layout->displs[r] = cursor;
        cursor += layout->counts[r];
    }
    layout->extent = cursor + (shape->gaps ? 2 : 0);
    if (shape->gaps)
        move_empty_blocks_inside(n, layout);
}

void vc_layout_free(vc_layout_t *layout)
{
    free(layout->counts);
    layout->counts = layout->displs = NULL;
}

static void append_list(char *text, size_t length, const char *name, const size_t *values, int n)
{
    size_t used = strlen(text);
    used += (size_t)snprintf(text + used, used < length ? length - used : 0, " %s=[", name);
    for (int r = 0; r < n && r < 8 && used < length; r++)
        used += (size_t)snprintf(text + used, length - used, "%s%zu", r ? "," : "", values[r]);
    if (used < length)
        snprintf(text + used, length - used, "%s]", n > 8 ? ",..." : "");
}

void vc_describe_layout(const vc_context_t *context, const vc_layout_t *layout, int with_displs, char *text,
                        size_t length)
{
    append_list(text, length, "counts", layout->counts, context->nranks);
    if (with_displs)
        append_list(text, length, "displs", layout->displs, context->nranks);
}

/*
 * Half-ulp input of a float16 (p = 11 significand bits) or bfloat16 (p = 8) sum, scaled by
 * 2^(k-2) with k = (index / 4) % 4. By index % 4:
 *   0: rank 0 adds 2^p, every other rank 1        -> 2^p + n - 1
 *   1: rank 0 adds 1, every other rank 2^-p       -> 1 + (n - 1) 2^-p
 *   2: the negation of case 0
 *   3: rank 1 adds 2^p, every other rank 1        -> the large term later in rank order
 * Once the large term is in the running sum, each small term is half an ulp of it, so rounding to
 * the 16-bit type after every addition loses the term (the tie rounds to the even large term).
 * Rounding the exact sum once keeps their total, to within that one rounding. Sums have at most
 * p + 4 significant bits, so float32 represents them exactly.
 */
static double half_ulp_input(weft_datatype_t type, int rank, size_t index)
{
    int p = type == WEFT_FLOAT16 ? 11 : 8;
    int scale = (int)((index / 4) % 4) - 2;
    double value;

    switch (index % 4) {
    case 0: value = rank == 0 ? ldexp(1.0, p) : 1.0; break;
    case 1: value = rank == 0 ? 1.0 : ldexp(1.0, -p); break;
    case 2: value = rank == 0 ? -ldexp(1.0, p) : -1.0; break;
    default: value = rank == 1 ? ldexp(1.0, p) : 1.0; break;
    }
    return ldexp(value, scale);
}

void vc_fill_inputs(weft_datatype_t type, int pattern, uint64_t seed, int rank, size_t first, size_t count,
                    void *data)
{
    size_t size = ct_type_size(type);
    unsigned char *bytes = data;

    for (size_t i = 0; i < count; i++) {
        if (pattern == VC_PATTERN_HALF_ULP)
            ct_store_float(type, half_ulp_input(type, rank, first + i), bytes + i * size);
        else
            ct_input_element(type, pattern, seed, rank, first + i, bytes + i * size);
    }
}

void vc_fill_reduction(const vc_context_t *context, weft_datatype_t type, int pattern, uint64_t seed, size_t first,
                       size_t count, void *data)
{
    size_t size = ct_type_size(type);
    unsigned char *bytes = data;

    for (size_t i = 0; i < count; i++) {
        if (pattern != VC_PATTERN_HALF_ULP) {
            ct_expected_reduction(type, (weft_op_t)pattern, seed, context->nranks, first + i, bytes + i * size);
            continue;
        }
        double sum = 0.0; /* exact, see half_ulp_input */
        for (int r = 0; r < context->nranks; r++)
            sum += half_ulp_input(type, r, first + i);
        ct_store_float(type, (float)sum, bytes + i * size);
    }
}

static void describe_position(const vc_context_t *context, const vc_layout_t *layout, size_t index, char *text,
                              size_t length)
{
    for (int r = 0; r < context->nranks; r++) {
        size_t start = layout->displs[r];
        if (layout->counts[r] > 0 && index >= start && index - start < layout->counts[r]) {
            snprintf(text, length, " (element %zu of rank %d's block)", index - start, r);
            return;
        }
    }
    snprintf(text, length, " (a gap outside every block, which must stay unwritten)");
}

int vc_compare(vc_context_t *context, const char *label, const char *buffer_name, weft_datatype_t type,
               const void *got, const void *expected, size_t count, const vc_layout_t *layout)
{
    size_t size = ct_type_size(type);
    size_t wrong = 0, first_wrong = 0;
    const unsigned char *got_bytes = got, *expected_bytes = expected;

    for (size_t i = 0; i < count; i++) {
        if (memcmp(got_bytes + i * size, expected_bytes + i * size, size) == 0)
            continue;
        if (wrong++ == 0)
            first_wrong = i;
    }
    if (wrong == 0)
        return 1;

    char expected_text[64], got_text[64], position[96] = "";
    ct_format_element(type, expected_bytes + first_wrong * size, expected_text, sizeof expected_text);
    ct_format_element(type, got_bytes + first_wrong * size, got_text, sizeof got_text);
    if (layout != NULL)
        describe_position(context, layout, first_wrong, position, sizeof position);
    ct_fail(&context->tally, "%s: %s index %zu%s: expected %s, got %s (%zu of %zu elements wrong)", label,
            buffer_name, first_wrong, position, expected_text, got_text, wrong, count);
    return 0;
}

int vc_check_untouched(vc_context_t *context, const char *label, const char *buffer_name, const void *data,
                       size_t bytes, unsigned char fill)
{
    const unsigned char *bytes_in = data;
    for (size_t i = 0; i < bytes; i++) {
        if (bytes_in[i] != fill) {
            ct_fail(&context->tally, "%s: %s byte %zu changed from 0x%02x to 0x%02x; this buffer must stay untouched",
                    label, buffer_name, i, fill, bytes_in[i]);
            return 0;
        }
    }
    return 1;
}

int vc_check_guards(vc_context_t *context, const char *label, const char *buffer_name, const ct_buffer_t *buffer)
{
    long offset = ct_buffer_guard_damage(buffer);
    if (offset == 0)
        return 1;
    ct_fail(&context->tally, "%s: byte %ld %s the %zu-byte %s changed; the collective wrote out of bounds", label,
            offset < 0 ? -offset : offset, offset < 0 ? "before the start of" : "past the end of", buffer->bytes,
            buffer_name);
    return 0;
}

int vc_expect_invalid(vc_context_t *context, const char *label, weft_result_t result)
{
    if (result == WEFT_ERR_INVALID_ARGUMENT) {
        const char *message = weft_comm_last_error(context->comm);
        if (message != NULL && message[0] != '\0')
            return 1;
        ct_fail(&context->tally, "%s: returned WEFT_ERR_INVALID_ARGUMENT but weft_comm_last_error is empty", label);
        return 0;
    }
    ct_fail(&context->tally, "%s: expected WEFT_ERR_INVALID_ARGUMENT, got %s%s%s", label, weft_result_string(result),
            result == WEFT_SUCCESS ? "" : ": ", result == WEFT_SUCCESS ? "" : weft_comm_last_error(context->comm));
    if (result != WEFT_SUCCESS)
        context->tally.broken = 1;
    return 0;
}

typedef struct {
    const char *name;
    void (*run)(vc_context_t *context);
} group_t;

static const group_t groups[] = {
    {"allgatherv", vc_run_allgatherv},
    {"reduce_scatterv", vc_run_reduce_scatterv},
    {"reduce", vc_run_reduce},
};
#define GROUP_COUNT (sizeof groups / sizeof groups[0])

/* Mark the groups named on the command line; exits with status 2 on an unknown name. */
static void select_groups(int argc, char **argv, int *selected)
{
    for (size_t g = 0; g < GROUP_COUNT; g++)
        selected[g] = argc <= 1;
    for (int i = 1; i < argc; i++) {
        size_t g = 0;
        while (g < GROUP_COUNT && strcmp(argv[i], groups[g].name) != 0)
            g++;
        if (g == GROUP_COUNT) {
            fprintf(stderr, "vector_collectives: unknown group '%s'; use allgatherv, reduce_scatterv or reduce\n",
                    argv[i]);
            exit(2);
        }
        selected[g] = 1;
    }
}

int main(int argc, char **argv)
{
    int selected[GROUP_COUNT];
    vc_context_t context = {.next_seed = VC_FIRST_SEED};

    select_groups(argc, argv, selected);
    ct_start("vector_collectives", &context.comm, &context.tally);
    context.rank = context.tally.rank;
    context.nranks = context.tally.nranks;
    if (context.nranks > VC_MAX_RANKS) {
        printf("vector_collectives: written for at most %d ranks, got %d; start fewer ranks\n", VC_MAX_RANKS,
               context.nranks);
        return 2;
    }

    for (size_t g = 0; g < GROUP_COUNT && !context.tally.broken; g++) {
        if (!selected[g])
            continue;
        double started = ct_now();
        unsigned long passed_before = context.tally.passed;
        groups[g].run(&context);
        if (context.rank == 0)
            printf("vector_collectives: %s: %lu cases passed on rank 0 in %.2f s\n", groups[g].name,
                   context.tally.passed - passed_before, ct_now() - started);
    }
    return ct_finish(&context.tally, context.comm);
}
