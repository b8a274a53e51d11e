/*
 * ceiling-bench: the fastest float32 sum all-reduce that local processes can do over shared memory
 * on this machine, as a bound to compare weft and MPI with.
 *
 * The ranks are forked processes that share one float32 buffer per rank (mmap MAP_SHARED, created
 * before the fork). In each iteration rank r adds up its 1/nranks of the elements over all buffers
 * and writes the sum into every buffer, so every buffer contains the full sum afterwards, and then
 * waits at a barrier. No data is copied besides these reads and writes, and nothing is sent. The
 * table has the nccl-tests columns with the all-reduce definitions (busbw = algbw * 2(n-1)/n).
 * See docs/benchmarks.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_affinity.h"
#include "bench_options.h"
#include "bench_sweep.h"

#define MAX_RANKS 16

/* Elements that one step of the reduction sums into a stack block before writing them back: 16 KiB,
 * which stays in the L1 data cache. */
#define BLOCK_ELEMENTS 4096

/* Barrier polls before each sched_yield, so that oversubscribed ranks let the others run. */
#define SPINS_BEFORE_YIELD 256

/* getopt values of the options without a short form. */
#define OPTION_MAX_SECONDS 256
#define OPTION_BIND 257

typedef struct {
    int nranks;
    size_t min_bytes;
    size_t max_bytes;
    size_t step_factor;
    int iters;
    int warmup_iters;
    int check;
    double max_seconds; /* --max-seconds, 0 for no cap */
    int bind;           /* --bind: bind rank r to one CPU, round robin */
} ceiling_options_t;

/* Control block shared by the ranks. */
typedef struct {
    atomic_uint arrived;    /* ranks at the current barrier */
    atomic_uint generation; /* barriers completed */
    atomic_int failed;      /* set by the parent when a rank died, so the others stop waiting */
    double seconds[MAX_RANKS];
    int64_t wrong[MAX_RANKS];
} control_t;

typedef struct {
    const ceiling_options_t *options;
    int rank;
    control_t *control;
    float *buffers[MAX_RANKS]; /* one of max_bytes per rank, shared by every rank */
} ceiling_t;

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: ceiling-bench [options]\n"
            "Forks nranks processes that share one float32 buffer per rank. Each iteration, rank r sums its\n"
            "1/nranks of the elements over all buffers and writes the sum into every buffer, then all wait at a\n"
            "barrier. The table has the nccl-tests columns with the all-reduce bus bandwidth definition.\n"
            "  -N, --nranks N          processes (default 2, at most %d)\n"
            "  -b, --minbytes SIZE     first size of one buffer in bytes, suffix K, M or G (default 64M)\n"
            "  -e, --maxbytes SIZE     last size (default 64M)\n"
            "  -f, --stepfactor N      multiply the size by N after each step (default 2)\n"
            "  -n, --iters N           timed iterations per size (default 20)\n"
            "  -w, --warmup_iters N    untimed iterations at the largest and the smallest size (default 5)\n"
            "  -c, --check 0|1         check one iteration per size against exact sums (default 1)\n"
            "      --max-seconds S     run fewer than -n timed iterations (at least 1) where -n would take\n"
            "                          more than about S seconds per size, as one pilot iteration predicts\n"
            "      --bind              bind rank r to one CPU: the r-th, modulo their number, of the CPUs this\n"
            "                          process may run on (as mpirun --bind-to core places ranks)\n"
            "  -h, --help              print this help\n",
            MAX_RANKS);
}

static int reject(const char *option, const char *value, const char *expected)
{
    fprintf(stderr, "ceiling-bench: invalid value '%s' for %s: expected %s\n", value, option, expected);
    return -1;
}

static int parse_int(const char *option, const char *text, long min, long max, int *result)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        char expected[64];
        snprintf(expected, sizeof(expected), "an integer from %ld to %ld", min, max);
        return reject(option, text, expected);
    }
    *result = (int)value;
    return 0;
}

static int apply_option(int option, const char *value, ceiling_options_t *options)
{
    int number = 0;
    char *end = NULL;

    switch (option) {
    case 'N': return parse_int("-N", value, 2, MAX_RANKS, &options->nranks);
    case 'b':
        return bench_parse_bytes(value, &options->min_bytes) == 0 ? 0 : reject("-b", value, "a byte count such as 8K");
    case 'e':
        return bench_parse_bytes(value, &options->max_bytes) == 0 ? 0 : reject("-e", value, "a byte count such as 64M");
    case 'f':
        if (parse_int("-f", value, 2, INT_MAX, &number) != 0)
            return -1;
        options->step_factor = (size_t)number;
        return 0;
    case 'n': return parse_int("-n", value, 1, INT_MAX, &options->iters);
    case 'w': return parse_int("-w", value, 0, INT_MAX, &options->warmup_iters);
    case 'c': return parse_int("-c", value, 0, 1, &options->check);
    case OPTION_BIND:
        options->bind = 1;
        return 0;
    case OPTION_MAX_SECONDS:
        errno = 0;
        options->max_seconds = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || !isfinite(options->max_seconds) ||
            options->max_seconds <= 0 || options->max_seconds > 3600)
            return reject("--max-seconds", value, "a number of seconds above 0, at most 3600");
        return 0;
    default: return -1;
    }
}

/* Returns 0 to run, 1 after --help, -1 after an error message. */
static int parse_options(int argc, char **argv, ceiling_options_t *options)
{
    static const struct option long_options[] = {
        {"nranks", required_argument, NULL, 'N'},     {"minbytes", required_argument, NULL, 'b'},
        {"maxbytes", required_argument, NULL, 'e'},   {"stepfactor", required_argument, NULL, 'f'},
        {"iters", required_argument, NULL, 'n'},      {"warmup_iters", required_argument, NULL, 'w'},
        {"check", required_argument, NULL, 'c'},      {"max-seconds", required_argument, NULL, OPTION_MAX_SECONDS},
        {"bind", no_argument, NULL, OPTION_BIND},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *options = (ceiling_options_t){.nranks = 2, .min_bytes = 64u << 20, .max_bytes = 64u << 20, .step_factor = 2,
                                   .iters = 20, .warmup_iters = 5, .check = 1};
    opterr = 0;
    int option;
    while ((option = getopt_long(argc, argv, "N:b:e:f:n:w:c:h", long_options, NULL)) != -1) {
        if (option == 'h') {
            print_usage(stdout);
            return 1;
        }
        if (option == '?' || option == ':') {
            fprintf(stderr, "ceiling-bench: unknown option or missing value in '%s': see ceiling-bench --help\n",
                    argv[optind - 1]);
            return -1;
        }
        if (apply_option(option, optarg, options) != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "ceiling-bench: unexpected argument '%s': see ceiling-bench --help\n", argv[optind]);
        return -1;
    }
    if (options->min_bytes < sizeof(float) || options->min_bytes > options->max_bytes) {
        fprintf(stderr, "ceiling-bench: invalid sizes -b %zu -e %zu: expected 4 <= -b <= -e\n", options->min_bytes,
                options->max_bytes);
        return -1;
    }
    return 0;
}

/* Wait until every rank has arrived. Ends the process when the parent reports a dead rank. */
static void barrier(const ceiling_t *bench)
{
    control_t *control = bench->control;
    unsigned generation = atomic_load(&control->generation);

    if (atomic_fetch_add(&control->arrived, 1) == (unsigned)bench->options->nranks - 1) {
        atomic_store(&control->arrived, 0);
        atomic_fetch_add(&control->generation, 1);
        return;
    }
    for (unsigned spins = 1; atomic_load(&control->generation) == generation; spins++) {
        if (atomic_load(&control->failed))
            _exit(1);
        if (spins % SPINS_BEFORE_YIELD == 0)
            sched_yield();
    }
}

/* block[i] = a[i] + b[i]. target_clones lets the loader pick the AVX2 loop where the CPU has it. */
__attribute__((target_clones("avx2", "default"))) static void add_pair(float *restrict block, const float *restrict a,
                                                                      const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        block[i] = a[i] + b[i];
}

/* block[i] += a[i] */
__attribute__((target_clones("avx2", "default"))) static void add_into(float *restrict block, const float *restrict a,
                                                                      size_t n)
{
    for (size_t i = 0; i < n; i++)
        block[i] += a[i];
}

/* Sum elements [begin, end) over all buffers, in rank order, and write the sum into every buffer. */
static void reduce_slice(const ceiling_t *bench, size_t begin, size_t end)
{
    float block[BLOCK_ELEMENTS];
    int nranks = bench->options->nranks;

    for (size_t start = begin; start < end; start += BLOCK_ELEMENTS) {
        size_t n = end - start < BLOCK_ELEMENTS ? end - start : BLOCK_ELEMENTS;
        add_pair(block, bench->buffers[0] + start, bench->buffers[1] + start, n);
        for (int rank = 2; rank < nranks; rank++)
            add_into(block, bench->buffers[rank] + start, n);
        for (int rank = 0; rank < nranks; rank++)
            memcpy(bench->buffers[rank] + start, block, n * sizeof(float));
    }
}

/* One all-reduce of count elements: this rank's slice, then the barrier. */
static void run_iteration(const ceiling_t *bench, size_t count)
{
    size_t nranks = (size_t)bench->options->nranks;
    size_t rank = (size_t)bench->rank;

    reduce_slice(bench, count * rank / nranks, count * (rank + 1) / nranks);
    barrier(bench);
}

/* Maximum of value over ranks, the same on every rank, exchanged through control->seconds. */
static double max_over_ranks(const ceiling_t *bench, double value)
{
    control_t *control = bench->control;
    double max = 0;

    control->seconds[bench->rank] = value;
    barrier(bench);
    for (int rank = 0; rank < bench->options->nranks; rank++)
        max = control->seconds[rank] > max ? control->seconds[rank] : max;
    barrier(bench);
    return max;
}

/* Timed iterations: -n, or with --max-seconds as many as fit at the pace of one pilot iteration. */
static int timed_iterations(const ceiling_t *bench, size_t count)
{
    const ceiling_options_t *options = bench->options;

    if (options->max_seconds <= 0)
        return options->iters;
    double start = bench_now();
    run_iteration(bench, count);
    double pilot = max_over_ranks(bench, bench_now() - start);
    if (pilot <= 0 || options->max_seconds / pilot >= (double)options->iters)
        return options->iters;
    int iterations = (int)(options->max_seconds / pilot);
    return iterations > 0 ? iterations : 1;
}

/* Seconds per iteration at count elements, the maximum over ranks. The buffers start zeroed, so the
 * sums never reach infinities or subnormals. */
static double time_size(const ceiling_t *bench, size_t count)
{
    size_t nranks = (size_t)bench->options->nranks;
    size_t rank = (size_t)bench->rank;
    size_t begin = count * rank / nranks, end = count * (rank + 1) / nranks;

    for (size_t buffer = 0; buffer < nranks; buffer++)
        memset(bench->buffers[buffer] + begin, 0, (end - begin) * sizeof(float));
    barrier(bench);
    run_iteration(bench, count);
    int iterations = timed_iterations(bench, count);

    double start = bench_now();
    for (int iter = 0; iter < iterations; iter++)
        run_iteration(bench, count);
    return max_over_ranks(bench, (bench_now() - start) / iterations);
}

/* Input of buffer `buffer` at element i: small integers, so every sum is exact in float32. */
static float check_input(int buffer, size_t i)
{
    return (float)(i % 61) + 3.0f * (float)buffer + 1.0f;
}

/* Run one iteration on check data and return the maximum over ranks of the wrong elements. Rank r
 * checks every element of buffer r, so together the ranks check every element of every buffer. */
static int64_t check_size(const ceiling_t *bench, size_t count)
{
    int nranks = bench->options->nranks;
    size_t begin = count * (size_t)bench->rank / (size_t)nranks;
    size_t end = count * ((size_t)bench->rank + 1) / (size_t)nranks;
    int64_t wrong = 0;

    for (int buffer = 0; buffer < nranks; buffer++)
        for (size_t i = begin; i < end; i++)
            bench->buffers[buffer][i] = check_input(buffer, i);
    barrier(bench);
    run_iteration(bench, count);

    for (size_t i = 0; i < count; i++) {
        float expected = 0;
        for (int buffer = 0; buffer < nranks; buffer++)
            expected += check_input(buffer, i);
        wrong += bench->buffers[bench->rank][i] != expected;
    }
    return (int64_t)max_over_ranks(bench, (double)wrong);
}

static void print_header(const ceiling_options_t *options)
{
    printf("# ceiling-bench: float32 sum over %d shared buffers by %d processes, each over its 1/%d of the "
           "elements, written back into every buffer\n", options->nranks, options->nranks, options->nranks);
    printf("# minBytes %zu maxBytes %zu step: %zu(factor) warmup iters: %d iters: %d validation: %d time: maximum "
           "over ranks\n", options->min_bytes, options->max_bytes, options->step_factor, options->warmup_iters,
           options->iters, options->check);
    if (options->max_seconds > 0)
        printf("# --max-seconds %g: fewer than %d timed iterations where one pilot iteration predicts more than "
               "%g s\n", options->max_seconds, options->iters, options->max_seconds);
    printf("#\n# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s\n", "size", "count", "type", "redop", "root", "time",
           "algbw", "busbw", "#wrong");
    printf("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s\n", "(B)", "(elements)", "", "", "", "(us)", "(GB/s)",
           "(GB/s)", "");
}

static void print_row(const ceiling_options_t *options, size_t count, double seconds, int64_t wrong)
{
    size_t bytes = count * sizeof(float);
    double microseconds = seconds * 1e6;
    double algbw = seconds > 0 ? (double)bytes / 1e9 / seconds : 0;
    double busbw = algbw * 2.0 * (options->nranks - 1) / options->nranks;

    printf("%12zu  %12zu  %8s  %6s  %6d", bytes, count, "float", "sum", -1);
    /* Seven characters whatever the magnitude, as weft-bench prints them. */
    if (microseconds >= 10000)
        printf("  %7.0f", microseconds);
    else if (microseconds >= 100)
        printf("  %7.1f", microseconds);
    else
        printf("  %7.2f", microseconds);
    printf("  %6.2f  %6.2f", algbw, busbw);
    if (wrong < 0)
        printf("  %5s\n", "N/A");
    else
        printf("  %5lld\n", (long long)wrong);
}

/* Body of one rank: warm-up, then every size. Returns the exit status. */
static int run_rank(const ceiling_t *bench)
{
    const ceiling_options_t *options = bench->options;
    size_t largest = options->max_bytes / sizeof(float), smallest = options->min_bytes / sizeof(float);
    int failed_sizes = 0;

    for (int iter = 0; iter < options->warmup_iters; iter++)
        run_iteration(bench, largest);
    for (int iter = 0; iter < options->warmup_iters; iter++)
        run_iteration(bench, smallest);

    for (size_t bytes = options->min_bytes;;) {
        size_t count = bytes / sizeof(float);
        double seconds = time_size(bench, count);
        int64_t wrong = options->check ? check_size(bench, count) : -1;
        failed_sizes += wrong > 0;
        if (bench->rank == 0)
            print_row(options, count, seconds, wrong);
        if (bytes > options->max_bytes / options->step_factor || bytes == options->max_bytes)
            break;
        bytes *= options->step_factor;
    }
    if (bench->rank == 0)
        printf("# Out of bounds values : %d %s\n#\n", failed_sizes, failed_sizes ? "FAILED" : "OK");
    return failed_sizes > 0;
}

/* Map the control block and one buffer per rank, shared with the children forked later. */
static int map_shared(const ceiling_options_t *options, ceiling_t *bench)
{
    bench->control = mmap(NULL, sizeof(control_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (bench->control == MAP_FAILED) {
        fprintf(stderr, "ceiling-bench: mmap of the control block failed: %s\n", strerror(errno));
        return -1;
    }
    for (int rank = 0; rank < options->nranks; rank++) {
        void *buffer = mmap(NULL, options->max_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (buffer == MAP_FAILED) {
            fprintf(stderr, "ceiling-bench: mmap of %zu bytes for buffer %d failed: %s: lower -e\n",
                    options->max_bytes, rank, strerror(errno));
            return -1;
        }
        bench->buffers[rank] = buffer;
    }
    return 0;
}

/* Wait for every child. When one was killed, tell the others to stop waiting at the barrier. A
 * child that found wrong elements exits with status 1 after the run, like the others. */
static int wait_for_ranks(control_t *control, pid_t *children, int nranks)
{
    int failed = 0;

    for (int remaining = nranks; remaining > 0;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            break;
        remaining--;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        failed = 1;
        for (int rank = 0; rank < nranks; rank++) {
            if (children[rank] == pid && WIFSIGNALED(status))
                fprintf(stderr, "ceiling-bench: rank %d (pid %d) was killed by signal %d (%s)\n", rank, (int)pid,
                        WTERMSIG(status), strsignal(WTERMSIG(status)));
        }
        atomic_store(&control->failed, 1);
    }
    return failed;
}

int main(int argc, char **argv)
{
    ceiling_options_t options;
    ceiling_t bench = {.options = &options};
    pid_t children[MAX_RANKS] = {0};

    int parsed = parse_options(argc, argv, &options);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    if (map_shared(&options, &bench) != 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    print_header(&options);
    fflush(stdout);

    for (int rank = 0; rank < options.nranks; rank++) {
        pid_t pid = fork();
        if (pid == 0) {
            bench.rank = rank;
            if (options.bind && bench_bind_to_cpu("ceiling-bench", rank) != 0) {
                atomic_store(&bench.control->failed, 1);
                exit(1);
            }
            exit(run_rank(&bench));
        }
        if (pid < 0) {
            fprintf(stderr, "ceiling-bench: fork of rank %d failed: %s\n", rank, strerror(errno));
            atomic_store(&bench.control->failed, 1);
            wait_for_ranks(bench.control, children, rank);
            return 1;
        }
        children[rank] = pid;
    }
    return wait_for_ranks(bench.control, children, options.nranks) ? 1 : 0;
}
