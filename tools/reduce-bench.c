/*
 * reduce-bench: throughput of the reduction kernels on one core, per datatype.
 *
 * For each datatype it times reduce_partial (partial op= partial), reduce_user
 * (partial op= convert(user)) and pair_finish over a buffer of --size MiB of user elements and
 * prints the best of --iterations runs. pair_finish is reduce_pair_finish, user =
 * finish(convert(user) op convert(user)), the one-pass kernel of a two-rank pull. Columns:
 *   user_GB/s  user bytes reduced per second (count * user element size / time), which is the
 *              rate a collective gets from the kernel.
 *   mem_GB/s   bytes read and written per second (both inputs plus the output), which is the
 *              load on the memory system.
 *   of_add     mem_GB/s of the kernel divided by mem_GB/s of the add_u64 baseline.
 * Two baselines run first on the same buffers: memcpy (partial buffer to partial buffer) and
 * add_u64, a plain C loop that adds the source to the destination as 64-bit integers, which
 * reads and writes the same bytes as reduce_partial. A kernel near of_add 1 is limited by memory.
 * GB is 10^9 bytes. Buffers are touched once before timing so page faults are not counted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reduce.h"

typedef struct {
    size_t size_mib;
    int iterations;
    weft_op_t op;
    int native_precision;
    unsigned types; /* bit t set: measure weft_datatype_t t */
} options_t;

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: reduce-bench [--size MIB] [--iterations N] [--op sum|prod|min|max|avg] [--types LIST] [--native]\n"
            "  --size MIB        user data per datatype in MiB (default 64)\n"
            "  --types LIST      comma-separated datatypes, e.g. float32,float64,bfloat16,float16 (default all)\n"
            "  --iterations N    timed runs per kernel; the best is printed (default 5)\n"
            "  --op NAME         reduction op (default sum)\n"
            "  --native          keep float16/bfloat16 partials in 16 bits (WEFT_REDUCE_PRECISION=native)\n");
}

static int parse_positive(const char *option, const char *text, long max, long *value)
{
    char *end;
    errno = 0;
    long parsed = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < 1 || parsed > max) {
        fprintf(stderr, "reduce-bench: invalid %s value '%s': expected a whole number from 1 to %ld\n", option,
                text, max);
        return -1;
    }
    *value = parsed;
    return 0;
}

static int parse_op(const char *text, weft_op_t *op)
{
    for (int candidate = 0; candidate < WF_OP_COUNT; candidate++) {
        if (strcmp(text, wf_op_name((weft_op_t)candidate)) == 0) {
            *op = (weft_op_t)candidate;
            return 0;
        }
    }
    fprintf(stderr, "reduce-bench: invalid --op value '%s': expected sum, prod, min, max or avg\n", text);
    return -1;
}

/* Set the bit of each datatype named in the comma-separated list text. */
static int parse_types(const char *text, unsigned *types)
{
    char list[256];
    if (snprintf(list, sizeof(list), "%s", text) >= (int)sizeof(list)) {
        fprintf(stderr, "reduce-bench: --types value '%s' is too long: name each datatype once\n", text);
        return -1;
    }
    *types = 0;
    char *saved = NULL;
    for (char *name = strtok_r(list, ",", &saved); name != NULL; name = strtok_r(NULL, ",", &saved)) {
        int type = 0;
        while (type < WF_DATATYPE_COUNT && strcmp(name, wf_datatype_name((weft_datatype_t)type)) != 0)
            type++;
        if (type == WF_DATATYPE_COUNT) {
            fprintf(stderr, "reduce-bench: invalid datatype '%s' in --types: expected int8, uint8, int32, uint32, "
                    "int64, uint64, float16, bfloat16, float32 or float64\n", name);
            return -1;
        }
        *types |= 1u << type;
    }
    if (*types == 0) {
        fprintf(stderr, "reduce-bench: invalid --types value '%s': expected at least one datatype name\n", text);
        return -1;
    }
    return 0;
}

/* Returns 0, 1 after --help, or -1 on invalid arguments (already reported). */
static int parse_options(int argc, char **argv, options_t *options)
{
    *options = (options_t){64, 5, WEFT_SUM, 0, (1u << WF_DATATYPE_COUNT) - 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        long value;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--native") == 0) {
            options->native_precision = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "reduce-bench: %s '%s'\n", strncmp(arg, "--", 2) == 0 ? "missing value after" : "unknown argument", arg);
            print_usage(stderr);
            return -1;
        }
        const char *text = argv[++i];
        if (strcmp(arg, "--size") == 0) {
            if (parse_positive(arg, text, 16384, &value) != 0)
                return -1;
            options->size_mib = (size_t)value;
        } else if (strcmp(arg, "--iterations") == 0) {
            if (parse_positive(arg, text, 1000, &value) != 0)
                return -1;
            options->iterations = (int)value;
        } else if (strcmp(arg, "--op") == 0) {
            if (parse_op(text, &options->op) != 0)
                return -1;
        } else if (strcmp(arg, "--types") == 0) {
            if (parse_types(text, &options->types) != 0)
                return -1;
        } else {
            fprintf(stderr, "reduce-bench: unknown option '%s'\n", arg);
            print_usage(stderr);
            return -1;
        }
    }
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Fills n elements with the value 1 in the plan's user type, so floats stay normal and finite
 * (subnormal operands would measure the CPU's slow path instead of the kernel). */
static void fill_ones(const wf_reduce_plan_t *plan, void *user, size_t n)
{
    static const uint64_t one_bits[WF_DATATYPE_COUNT] = {
        [WEFT_INT8] = 1,          [WEFT_UINT8] = 1,         [WEFT_INT32] = 1,
        [WEFT_UINT32] = 1,        [WEFT_INT64] = 1,         [WEFT_UINT64] = 1,
        [WEFT_FLOAT16] = 0x3c00,  [WEFT_BFLOAT16] = 0x3f80, [WEFT_FLOAT32] = 0x3f800000,
        [WEFT_FLOAT64] = 0x3ff0000000000000ull,
    };
    unsigned char *p = user;
    for (size_t i = 0; i < n; i++)
        memcpy(p + i * plan->user_size, &one_bits[plan->type], plan->user_size); /* little-endian */
}

typedef struct {
    void *user, *dst, *src;
    void *user2; /* second user input of reduce_pair_finish */
} bench_buffers_t;

typedef enum {
    KERNEL_MEMCPY,
    KERNEL_ADD_U64,
    KERNEL_REDUCE_PARTIAL,
    KERNEL_REDUCE_USER,
    KERNEL_REDUCE_PAIR_FINISH
} kernel_t;

static const char *const kernel_names[] = {"memcpy", "add_u64", "reduce_partial", "reduce_user",
                                           "pair_finish"};

/* dst[i] += src[i] over 64-bit words: the memory traffic of reduce_partial with the simplest
 * arithmetic, as the compiler vectorizes it (the file is built with -O3). */
static void add_u64(void *dst, const void *src, size_t bytes)
{
    uint64_t *restrict out = dst;
    const uint64_t *restrict in = src;
    for (size_t i = 0; i < bytes / sizeof(uint64_t); i++)
        out[i] += in[i];
}

/* Returns the best time in seconds of `iterations` runs of one kernel or baseline. */
static double time_kernel(const wf_reduce_plan_t *plan, bench_buffers_t *buf, size_t n, int iterations, kernel_t kernel)
{
    size_t partial_bytes = n * plan->partial_size;
    double best = 0;
    for (int run = 0; run < iterations; run++) {
        plan->to_partial(buf->dst, buf->user, n); /* restart from ones so PROD and SUM stay finite */
        double start = now_seconds();
        switch (kernel) {
        case KERNEL_MEMCPY: memcpy(buf->dst, buf->src, partial_bytes); break;
        case KERNEL_ADD_U64: add_u64(buf->dst, buf->src, partial_bytes); break;
        case KERNEL_REDUCE_PARTIAL: plan->reduce_partial(buf->dst, buf->src, n); break;
        case KERNEL_REDUCE_USER: plan->reduce_user(buf->dst, buf->user, n); break;
        case KERNEL_REDUCE_PAIR_FINISH: plan->reduce_pair_finish(buf->dst, buf->user, buf->user2, n, 2); break;
        }
        double elapsed = now_seconds() - start;
        if (run == 0 || elapsed < best)
            best = elapsed;
    }
    return best;
}

/* Bytes that one run of the kernel reads and writes. */
static double kernel_memory_bytes(const wf_reduce_plan_t *plan, size_t n, kernel_t kernel)
{
    double partial_bytes = (double)n * (double)plan->partial_size;
    switch (kernel) {
    case KERNEL_MEMCPY: return 2 * partial_bytes;
    case KERNEL_ADD_U64:
    case KERNEL_REDUCE_PARTIAL: return 3 * partial_bytes;
    case KERNEL_REDUCE_USER: return 2 * partial_bytes + (double)n * (double)plan->user_size;
    case KERNEL_REDUCE_PAIR_FINISH: return 3 * (double)n * (double)plan->user_size;
    }
    return 0;
}

static int bench_datatype(const options_t *options, weft_datatype_t type)
{
    wf_reduce_plan_t plan;
    if (wf_reduce_plan(&plan, type, options->op, options->native_precision) != 0) {
        fprintf(stderr, "reduce-bench: no reduction plan for datatype %d and op %d\n", (int)type, (int)options->op);
        return -1;
    }
    size_t n = options->size_mib * 1024 * 1024 / plan.user_size;
    bench_buffers_t buf = {malloc(n * plan.user_size), malloc(n * plan.partial_size), malloc(n * plan.partial_size),
                           malloc(n * plan.user_size)};
    if (buf.user == NULL || buf.dst == NULL || buf.src == NULL || buf.user2 == NULL) {
        fprintf(stderr, "reduce-bench: out of memory allocating %zu MiB buffers for %s: try a smaller --size\n",
                options->size_mib, wf_datatype_name(type));
        free(buf.user);
        free(buf.dst);
        free(buf.src);
        free(buf.user2);
        return -1;
    }
    fill_ones(&plan, buf.user, n);
    fill_ones(&plan, buf.user2, n);
    plan.to_partial(buf.src, buf.user, n);

    double add_rate = 0;
    for (kernel_t kernel = KERNEL_MEMCPY; kernel <= KERNEL_REDUCE_PAIR_FINISH; kernel++) {
        double seconds = time_kernel(&plan, &buf, n, options->iterations, kernel);
        double mem_rate = kernel_memory_bytes(&plan, n, kernel) / seconds / 1e9;
        char user_rate[16] = "-", of_add[16] = "-";
        if (kernel == KERNEL_ADD_U64)
            add_rate = mem_rate;
        if (kernel >= KERNEL_REDUCE_PARTIAL) {
            snprintf(user_rate, sizeof(user_rate), "%.2f", (double)n * (double)plan.user_size / seconds / 1e9);
            snprintf(of_add, sizeof(of_add), "%.2f", mem_rate / add_rate);
        }
        printf("%-9s %-5s %-7s %-15s %10zu %9.3f %10s %10.2f %7s\n", wf_datatype_name(type), wf_op_name(options->op),
               options->native_precision ? "native" : "wide", kernel_names[kernel], n, seconds * 1e3, user_rate,
               mem_rate, of_add);
    }
    free(buf.user);
    free(buf.dst);
    free(buf.src);
    free(buf.user2);
    return 0;
}

int main(int argc, char **argv)
{
    options_t options;
    int parsed = parse_options(argc, argv, &options);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;

    printf("# reduce-bench: kernels dispatched to %s, %zu MiB of user data per datatype, best of %d runs\n",
           wf_reduce_isa(), options.size_mib, options.iterations);
    printf("# baselines on the same buffers: memcpy (dst = src), add_u64 (dst += src as 64-bit integers)\n");
    printf("%-9s %-5s %-7s %-15s %10s %9s %10s %10s %7s\n", "type", "op", "partial", "kernel", "count", "time_ms",
           "user_GB/s", "mem_GB/s", "of_add");
    for (int type = 0; type < WF_DATATYPE_COUNT; type++) {
        if ((options.types & (1u << type)) != 0 && bench_datatype(&options, (weft_datatype_t)type) != 0)
            return 1;
    }
    return 0;
}
