/* Command line parsing shared by weft-bench and mpi-bench. */
#include "bench_options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* getopt values of the options without a short form. */
#define OPTION_BUFFERS 256
#define OPTION_MAX_SECONDS 257
#define OPTION_BIND 258

/* Largest --max-seconds: one hour per size and placement. */
#define MAX_SECONDS_LIMIT 3600.0

/* Largest --window and --buffers: enough for any bucket list, small enough for the request arrays. */
#define MAX_WINDOW 4096
#define MAX_BUFFERS 100000

/* Default smallest and largest buffer of allreduce_multi, a spread of gradient-bucket sizes. */
#define MULTI_DEFAULT_MIN_BYTES ((size_t)4 << 10)
#define MULTI_DEFAULT_MAX_BYTES ((size_t)4 << 20)

typedef struct {
    const char *name;
    int value;
} name_value_t;

static const name_value_t collective_names[] = {
    {"allreduce", BENCH_ALLREDUCE},
    {"allgather", BENCH_ALLGATHER},
    {"reducescatter", BENCH_REDUCESCATTER},
    {"reduce_scatter", BENCH_REDUCESCATTER},
    {"broadcast", BENCH_BROADCAST},
    {"allreduce_multi", BENCH_ALLREDUCE_MULTI},
    {NULL, 0},
};

/* The first name of each type is the one nccl-tests prints. The others are accepted aliases. */
static const name_value_t type_names[] = {
    {"int8", BENCH_INT8},         {"uint8", BENCH_UINT8},       {"int32", BENCH_INT32},
    {"uint32", BENCH_UINT32},     {"int64", BENCH_INT64},       {"uint64", BENCH_UINT64},
    {"half", BENCH_FLOAT16},      {"bfloat16", BENCH_BFLOAT16}, {"float", BENCH_FLOAT32},
    {"double", BENCH_FLOAT64},    {"float16", BENCH_FLOAT16},   {"float32", BENCH_FLOAT32},
    {"float64", BENCH_FLOAT64},   {NULL, 0},
};

static const name_value_t op_names[] = {
    {"sum", BENCH_SUM}, {"prod", BENCH_PROD}, {"min", BENCH_MIN},
    {"max", BENCH_MAX}, {"avg", BENCH_AVG},   {NULL, 0},
};

static const char *const time_reduction_names[] = {"rank 0", "average over ranks", "minimum over ranks",
                                                   "maximum over ranks"};

static int lookup_name(const name_value_t *table, const char *name, int *value)
{
    for (const name_value_t *entry = table; entry->name != NULL; entry++) {
        if (strcasecmp(entry->name, name) == 0) {
            *value = entry->value;
            return 0;
        }
    }
    return -1;
}

static const char *name_of(const name_value_t *table, int value)
{
    for (const name_value_t *entry = table; entry->name != NULL; entry++) {
        if (entry->value == value)
            return entry->name;
    }
    return "unknown";
}

const char *bench_collective_name(bench_collective_t collective)
{
    return name_of(collective_names, (int)collective);
}

const char *bench_type_name(bench_type_t type)
{
    return name_of(type_names, (int)type);
}

const char *bench_op_name(bench_op_t op)
{
    return name_of(op_names, (int)op);
}

const char *bench_time_reduction_name(bench_time_reduction_t reduction)
{
    return time_reduction_names[reduction];
}

size_t bench_type_size(bench_type_t type)
{
    switch (type) {
    case BENCH_INT8:
    case BENCH_UINT8:
        return 1;
    case BENCH_FLOAT16:
    case BENCH_BFLOAT16:
        return 2;
    case BENCH_INT32:
    case BENCH_UINT32:
    case BENCH_FLOAT32:
        return 4;
    case BENCH_INT64:
    case BENCH_UINT64:
    case BENCH_FLOAT64:
        return 8;
    }
    return 1;
}

int bench_collective_reduces(bench_collective_t collective)
{
    return collective == BENCH_ALLREDUCE || collective == BENCH_REDUCESCATTER ||
           collective == BENCH_ALLREDUCE_MULTI;
}

size_t bench_next_size(const bench_options_t *options, size_t bytes)
{
    if (options->step_factor > 1) {
        if (bytes == 0 || bytes > options->max_bytes / options->step_factor)
            return 0;
        return bytes * options->step_factor;
    }
    /* bytes never exceeds max_bytes, so the subtraction cannot wrap. */
    if (options->step_bytes == 0 || options->max_bytes - bytes < options->step_bytes)
        return 0;
    return bytes + options->step_bytes;
}

int bench_parse_bytes(const char *text, size_t *bytes)
{
    char *end = NULL;
    errno = 0;
    if (text[0] == '-')
        return -1;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;

    unsigned long long unit = 1;
    if (*end != '\0') {
        switch (*end) {
        case 'k': case 'K': unit = 1ULL << 10; break;
        case 'm': case 'M': unit = 1ULL << 20; break;
        case 'g': case 'G': unit = 1ULL << 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'b' || *end == 'B')
            end++;
        if (*end != '\0')
            return -1;
    }
    if (value > SIZE_MAX / unit)
        return -1;
    *bytes = (size_t)(value * unit);
    return 0;
}

static int parse_int(const char *text, long min, long max, int *result)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *result = (int)value;
    return 0;
}

/* Parse a positive number of seconds up to MAX_SECONDS_LIMIT. */
static int parse_seconds(const char *text, double *seconds)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value) || value <= 0 || value > MAX_SECONDS_LIMIT)
        return -1;
    *seconds = value;
    return 0;
}

static void print_nonblocking_help(void)
{
    printf("  -B, --nonblocking       time the non-blocking form (weft_iallreduce, ...) issued and then waited\n"
           "                          on, in place of the blocking call\n"
           "  -W, --window N          issue N non-blocking calls back to back on distinct buffers, then wait on\n"
           "                          all; the time is per call. Implies -B and allocates N send and N receive\n"
           "                          buffers of -e bytes per rank (default 1)\n"
           "  -O, --overlap           per size, measure t_comm (issue + wait), t_compute (a busy loop on a\n"
           "                          private buffer, calibrated to last about t_comm) and t_total (issue,\n"
           "                          compute for t_compute with a weft_test call every 50 us, wait), and print\n"
           "                          overlap = (t_comm + t_compute - t_total) / min(t_comm, t_compute) in\n"
           "                          percent: 100 means the communication was hidden completely, 0 means\n"
           "                          none of it was, and below 0 the two slowed each other down\n"
           "      --buffers N         number of buffers of allreduce_multi (default 200)\n");
}

static void print_help(const bench_program_t *program)
{
    printf("Usage: %s allreduce|allgather|reducescatter|broadcast%s [options]\n"
           "  -b, --minbytes SIZE     first size in bytes, suffix K, M or G for powers of 1024 (default 32M)\n"
           "  -e, --maxbytes SIZE     last size in bytes (default 32M)\n"
           "  -f, --stepfactor N      multiply the size by N after each step (default 1)\n"
           "  -i, --stepbytes SIZE    add SIZE bytes after each step when -f is 1 (default 1M)\n"
           "  -d, --datatype TYPE     int8 uint8 int32 uint32 int64 uint64%s float double, or float32\n"
           "                          float64%s (default float)\n"
           "  -o, --op OP             sum prod min max%s, for allreduce and reducescatter (default sum)\n"
           "  -n, --iters N           timed iterations per size (default 20)\n"
           "      --max-seconds S     run fewer than -n timed iterations (at least 1) where -n would take\n"
           "                          more than about S seconds per size and placement, as one pilot\n"
           "                          call predicts (default: always -n)\n"
           "  -w, --warmup_iters N    untimed iterations at the largest and smallest size (default 5)\n"
           "  -c, --check N           checked iterations per size, 0 disables the check (default 1)\n"
           "  -r, --root RANK         broadcast root (default 0)\n"
           "  -a, --average 0|1|2|3   reported time: rank 0, average, minimum or maximum over ranks\n"
           "                          (default 3, the maximum, where nccl-tests defaults to 1)\n",
           program->program, program->allow_multi ? "|allreduce_multi" : "",
           program->allow_16bit ? " half bfloat16" : "",
           program->allow_16bit ? " float16" : "", program->allow_avg ? " avg" : "");
    if (program->allow_spawn)
        printf("  -N, --nranks N          fork N local ranks that rendezvous on 127.0.0.1, no launcher needed\n"
               "      --bind              with -N, bind rank r to one CPU: the r-th, modulo their number, of the\n"
               "                          CPUs this process may run on (as mpirun --bind-to core places ranks)\n");
    if (program->allow_nonblocking)
        print_nonblocking_help();
    printf("  -h, --help              print this help\n"
           "Sizes are per rank as nccl-tests counts them: for allgather and reducescatter SIZE is the\n"
           "buffer of all nranks blocks. Each size is rounded down to a whole number of elements\n"
           "(and of nranks blocks for allgather and reducescatter).\n");
    if (program->allow_multi)
        printf("allreduce_multi reduces --buffers buffers in place with one weft_allreduce_multi call and\n"
               "with one weft_allreduce per buffer (one weft_iallreduce per buffer, then a wait on each,\n"
               "with -B), and prints both times and their ratio. Its -b and -e are the smallest and the\n"
               "largest buffer (default 4K and 4M), and the sizes between are spaced evenly on a log scale.\n");
}

static void set_defaults(bench_options_t *options)
{
    memset(options, 0, sizeof(*options));
    options->min_bytes = 32u << 20;
    options->max_bytes = 32u << 20;
    options->step_bytes = 1u << 20;
    options->step_factor = 1;
    options->type = BENCH_FLOAT32;
    options->op = BENCH_SUM;
    options->iters = 20;
    options->warmup_iters = 5;
    options->check_iters = 1;
    options->root = 0;
    options->time_reduction = BENCH_TIME_MAX;
    options->window = 1;
    options->buffers = 200;
}

static int reject_value(const bench_program_t *program, const char *option, const char *value,
                        const char *expected)
{
    fprintf(stderr, "%s: invalid value '%s' for %s: expected %s\n", program->program, value, option,
            expected);
    return -1;
}

/* Apply one parsed option. Returns -1 after printing an error. */
static int apply_option(int option, const char *value, const bench_program_t *program,
                        bench_options_t *options)
{
    int number = 0;
    switch (option) {
    case 'b':
        return bench_parse_bytes(value, &options->min_bytes) == 0
                   ? 0 : reject_value(program, "-b", value, "a byte count such as 8, 64K or 128M");
    case 'e':
        return bench_parse_bytes(value, &options->max_bytes) == 0
                   ? 0 : reject_value(program, "-e", value, "a byte count such as 8, 64K or 128M");
    case 'i':
        return bench_parse_bytes(value, &options->step_bytes) == 0
                   ? 0 : reject_value(program, "-i", value, "a byte count such as 1M");
    case 'f':
        if (parse_int(value, 1, INT_MAX, &number) != 0)
            return reject_value(program, "-f", value, "an integer of at least 1");
        options->step_factor = (size_t)number;
        return 0;
    case 'd':
        if (lookup_name(type_names, value, &number) != 0)
            return reject_value(program, "-d", value, "one of int8 uint8 int32 uint32 int64 uint64 half "
                                "bfloat16 float double float16 float32 float64");
        options->type = (bench_type_t)number;
        return 0;
    case 'o':
        if (lookup_name(op_names, value, &number) != 0)
            return reject_value(program, "-o", value, "one of sum prod min max avg");
        options->op = (bench_op_t)number;
        return 0;
    case 'n':
        return parse_int(value, 1, INT_MAX, &options->iters) == 0
                   ? 0 : reject_value(program, "-n", value, "an integer of at least 1");
    case 'w':
        return parse_int(value, 0, INT_MAX, &options->warmup_iters) == 0
                   ? 0 : reject_value(program, "-w", value, "an integer of at least 0");
    case 'c':
        return parse_int(value, 0, INT_MAX, &options->check_iters) == 0
                   ? 0 : reject_value(program, "-c", value, "an integer of at least 0");
    case 'r':
        return parse_int(value, 0, INT_MAX, &options->root) == 0
                   ? 0 : reject_value(program, "-r", value, "a rank of at least 0");
    case 'a':
        if (parse_int(value, 0, 3, &number) != 0)
            return reject_value(program, "-a", value, "0 (rank 0), 1 (average), 2 (minimum) or 3 (maximum)");
        options->time_reduction = (bench_time_reduction_t)number;
        return 0;
    case 'N':
        return parse_int(value, 1, 4096, &options->spawn_ranks) == 0
                   ? 0 : reject_value(program, "-N", value, "a number of ranks from 1 to 4096");
    case 'B':
        options->nonblocking = 1;
        return 0;
    case 'W':
        if (parse_int(value, 1, MAX_WINDOW, &options->window) != 0)
            return reject_value(program, "-W", value, "a number of calls from 1 to 4096");
        options->nonblocking = 1;
        return 0;
    case 'O':
        options->overlap = 1;
        options->nonblocking = 1;
        return 0;
    case OPTION_BUFFERS:
        return parse_int(value, 1, MAX_BUFFERS, &options->buffers) == 0
                   ? 0 : reject_value(program, "--buffers", value, "a number of buffers from 1 to 100000");
    case OPTION_BIND:
        options->bind = 1;
        return 0;
    case OPTION_MAX_SECONDS:
        return parse_seconds(value, &options->max_seconds) == 0
                   ? 0 : reject_value(program, "--max-seconds", value, "a number of seconds above 0, at most 3600");
    default:
        return -1;
    }
}

/* Reject sweeps that would never end. */
static int validate_sweep(const char *name, const bench_options_t *options)
{
    if (options->min_bytes == options->max_bytes)
        return 0;
    if (options->step_factor > 1 && options->min_bytes == 0) {
        fprintf(stderr, "%s: -b 0 with -f %zu never grows: start at -b 1 or more\n", name, options->step_factor);
        return -1;
    }
    if (options->step_factor == 1 && options->step_bytes == 0) {
        fprintf(stderr, "%s: -i 0 with -f 1 never grows: set -f 2 or -i to a positive size\n", name);
        return -1;
    }
    return 0;
}

/* Reject mode combinations that have no meaning. buffers_given: --buffers was on the command line. */
static int validate_modes(const char *name, const bench_options_t *options, int buffers_given)
{
    if (options->max_seconds > 0 && (options->overlap || options->collective == BENCH_ALLREDUCE_MULTI)) {
        fprintf(stderr, "%s: --max-seconds applies to the size sweep only: drop it with -O and allreduce_multi\n",
                name);
        return -1;
    }
    if (options->collective != BENCH_ALLREDUCE_MULTI) {
        if (buffers_given) {
            fprintf(stderr, "%s: --buffers applies to allreduce_multi only\n", name);
            return -1;
        }
        if (options->overlap && options->window > 1) {
            fprintf(stderr, "%s: -O measures one call at a time: drop -W %d\n", name, options->window);
            return -1;
        }
        return 0;
    }
    if (options->overlap || options->window > 1) {
        fprintf(stderr, "%s: allreduce_multi accepts -B but not -O or -W\n", name);
        return -1;
    }
    if (options->min_bytes < bench_type_size(options->type)) {
        fprintf(stderr, "%s: -b %zu is smaller than one %s element: allreduce_multi needs at least one element "
                "per buffer\n", name, options->min_bytes, bench_type_name(options->type));
        return -1;
    }
    return 0;
}

/* Reject combinations that the program cannot run or that would never end. */
static int validate_options(const bench_program_t *program, const bench_options_t *options, int buffers_given)
{
    const char *name = program->program;
    if (options->bind && options->spawn_ranks == 0) {
        fprintf(stderr, "%s: --bind applies to the ranks that -N forks: add -N, or let the launcher bind "
                "(mpirun --bind-to core)\n", name);
        return -1;
    }
    if (options->min_bytes > options->max_bytes) {
        fprintf(stderr, "%s: -b %zu is larger than -e %zu: the first size must not exceed the last\n",
                name, options->min_bytes, options->max_bytes);
        return -1;
    }
    if (options->collective != BENCH_ALLREDUCE_MULTI && validate_sweep(name, options) != 0)
        return -1;
    if (validate_modes(name, options, buffers_given) != 0)
        return -1;
    if (!program->allow_16bit && (options->type == BENCH_FLOAT16 || options->type == BENCH_BFLOAT16)) {
        fprintf(stderr, "%s: -d %s has no standard MPI datatype: use int8 to double\n", name,
                bench_type_name(options->type));
        return -1;
    }
    if (!program->allow_avg && options->op == BENCH_AVG && bench_collective_reduces(options->collective)) {
        fprintf(stderr, "%s: -o avg has no MPI operation: use sum, prod, min or max\n", name);
        return -1;
    }
    return 0;
}

/* Whether the program accepts a known option that getopt_long returned. */
static int option_allowed(const bench_program_t *program, int option)
{
    switch (option) {
    case 'N':
    case OPTION_BIND:
        return program->allow_spawn;
    case 'B':
    case 'W':
    case 'O':
    case OPTION_BUFFERS:
        return program->allow_nonblocking;
    default:
        return 1;
    }
}

/* Look up the collective named on the command line. Returns -1 after printing an error. */
static int set_collective(const bench_program_t *program, const char *collective, bench_options_t *options)
{
    const char *choices = program->allow_multi ? "allreduce, allgather, reducescatter, broadcast or allreduce_multi"
                                               : "allreduce, allgather, reducescatter or broadcast";
    int value = 0;

    if (collective == NULL) {
        fprintf(stderr, "%s: missing collective: give %s\n", program->program, choices);
        return -1;
    }
    if (lookup_name(collective_names, collective, &value) != 0 ||
        (value == BENCH_ALLREDUCE_MULTI && !program->allow_multi)) {
        fprintf(stderr, "%s: unknown collective '%s': give %s\n", program->program, collective, choices);
        return -1;
    }
    options->collective = (bench_collective_t)value;
    return 0;
}

bench_parse_result_t bench_parse_options(int argc, char **argv, const bench_program_t *program,
                                         bench_options_t *options)
{
    static const struct option long_options[] = {
        {"minbytes", required_argument, NULL, 'b'},   {"maxbytes", required_argument, NULL, 'e'},
        {"stepbytes", required_argument, NULL, 'i'},  {"stepfactor", required_argument, NULL, 'f'},
        {"datatype", required_argument, NULL, 'd'},   {"op", required_argument, NULL, 'o'},
        {"iters", required_argument, NULL, 'n'},      {"warmup_iters", required_argument, NULL, 'w'},
        {"check", required_argument, NULL, 'c'},      {"root", required_argument, NULL, 'r'},
        {"average", required_argument, NULL, 'a'},    {"nranks", required_argument, NULL, 'N'},
        {"nonblocking", no_argument, NULL, 'B'},      {"window", required_argument, NULL, 'W'},
        {"overlap", no_argument, NULL, 'O'},          {"buffers", required_argument, NULL, OPTION_BUFFERS},
        {"max-seconds", required_argument, NULL, OPTION_MAX_SECONDS}, {"bind", no_argument, NULL, OPTION_BIND},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    /* Options that a program does not accept are rejected after getopt_long returns them. */
    const char *short_options = "+b:e:i:f:d:o:n:w:c:r:a:N:BW:Oh";
    const char *collective = NULL;
    int min_given = 0, max_given = 0, buffers_given = 0;

    set_defaults(options);
    opterr = 0;
    optind = 1;
    while (optind < argc) {
        int option = getopt_long(argc, argv, short_options, long_options, NULL);
        if (option == -1) {
            /* A positional argument: the collective. Options may follow it. */
            if (collective != NULL) {
                fprintf(stderr, "%s: unexpected argument '%s': give one collective\n", program->program,
                        argv[optind]);
                return BENCH_PARSE_ERROR;
            }
            collective = argv[optind++];
            continue;
        }
        if (option == 'h') {
            print_help(program);
            return BENCH_PARSE_HELP;
        }
        if (option == '?' || option == ':') {
            fprintf(stderr, "%s: unknown option or missing value in '%s': see %s --help\n",
                    program->program, argv[optind - 1], program->program);
            return BENCH_PARSE_ERROR;
        }
        if (!option_allowed(program, option)) {
            char shown[16];
            if (option == OPTION_BUFFERS)
                snprintf(shown, sizeof(shown), "--buffers");
            else if (option == OPTION_BIND)
                snprintf(shown, sizeof(shown), "--bind");
            else
                snprintf(shown, sizeof(shown), "-%c", option);
            fprintf(stderr, "%s: %s is a weft-bench option that %s does not accept: see %s --help\n",
                    program->program, shown, program->program, program->program);
            return BENCH_PARSE_ERROR;
        }
        if (apply_option(option, optarg, program, options) != 0)
            return BENCH_PARSE_ERROR;
        min_given |= option == 'b';
        max_given |= option == 'e';
        buffers_given |= option == OPTION_BUFFERS;
    }

    if (set_collective(program, collective, options) != 0)
        return BENCH_PARSE_ERROR;
    if (options->collective == BENCH_ALLREDUCE_MULTI) {
        if (!min_given)
            options->min_bytes = MULTI_DEFAULT_MIN_BYTES;
        if (!max_given)
            options->max_bytes = MULTI_DEFAULT_MAX_BYTES;
    }
    return validate_options(program, options, buffers_given) == 0 ? BENCH_PARSE_RUN : BENCH_PARSE_ERROR;
}
