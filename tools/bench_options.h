/*
 * Command line of weft-bench and mpi-bench, shared so both programs accept the same options and
 * print the same names. The options follow nccl-tests (all_reduce_perf and friends).
 */
#ifndef BENCH_OPTIONS_H
#define BENCH_OPTIONS_H

#include <stddef.h>

/* BENCH_ALLREDUCE_MULTI is weft_allreduce_multi over a set of buffers, against one call per buffer. */
typedef enum {
    BENCH_ALLREDUCE,
    BENCH_ALLGATHER,
    BENCH_REDUCESCATTER,
    BENCH_BROADCAST,
    BENCH_ALLREDUCE_MULTI
} bench_collective_t;

/* Same order as weft_datatype_t. */
typedef enum {
    BENCH_INT8,
    BENCH_UINT8,
    BENCH_INT32,
    BENCH_UINT32,
    BENCH_INT64,
    BENCH_UINT64,
    BENCH_FLOAT16,
    BENCH_BFLOAT16,
    BENCH_FLOAT32,
    BENCH_FLOAT64
} bench_type_t;

/* Same order as weft_op_t. */
typedef enum { BENCH_SUM, BENCH_PROD, BENCH_MIN, BENCH_MAX, BENCH_AVG } bench_op_t;

/* How the per-rank iteration times become the reported time (-a, numbered as in nccl-tests). */
typedef enum { BENCH_TIME_RANK0, BENCH_TIME_AVG, BENCH_TIME_MIN, BENCH_TIME_MAX } bench_time_reduction_t;

typedef struct {
    bench_collective_t collective;
    size_t min_bytes;   /* -b: first size in bytes, as nccl-tests defines size per collective */
    size_t max_bytes;   /* -e: last size in bytes */
    size_t step_bytes;  /* -i: additive step, used when step_factor is 1 */
    size_t step_factor; /* -f: multiplicative step, used when greater than 1 */
    bench_type_t type;
    bench_op_t op;
    int iters;        /* -n: timed iterations per size and placement */
    double max_seconds; /* --max-seconds: cap on the timed seconds per size and placement, 0 for none */
    int warmup_iters; /* -w: untimed iterations at the largest and the smallest size */
    int check_iters;  /* -c: checked iterations per size and placement, 0 disables checking */
    int root;         /* -r: broadcast root */
    bench_time_reduction_t time_reduction; /* -a */
    int spawn_ranks;  /* -N: ranks that weft-bench forks itself, 0 when launched externally */
    int bind;         /* --bind: bind each rank that -N forks to one CPU, round robin */
    int nonblocking;  /* -B: time the i-form followed by a wait instead of the blocking call */
    int window;       /* -W: i-form calls issued on distinct buffers before waiting on all, 1 without -W */
    int overlap;      /* -O: measure how much of the communication a computation hides */
    int buffers;      /* --buffers: number of buffers of allreduce_multi */
} bench_options_t;

/* Features of the calling program that change which options are accepted. */
typedef struct {
    const char *program; /* name used in messages and help */
    int allow_spawn;     /* accept -N */
    int allow_16bit;     /* accept half and bfloat16 */
    int allow_avg;       /* accept -o avg */
    int allow_nonblocking; /* accept -B, -W and -O */
    int allow_multi;     /* accept the allreduce_multi collective */
} bench_program_t;

/* Result of bench_parse_options. */
typedef enum { BENCH_PARSE_RUN, BENCH_PARSE_HELP, BENCH_PARSE_ERROR } bench_parse_result_t;

/*
 * Parse argv into *options. Prints the help text on stdout for BENCH_PARSE_HELP, and an error
 * that names the option and its value on stderr for BENCH_PARSE_ERROR.
 */
bench_parse_result_t bench_parse_options(int argc, char **argv, const bench_program_t *program,
                                         bench_options_t *options);

/* Parse a byte count with an optional K, M or G suffix (powers of 1024, as nccl-tests reads them).
 * Returns 0, or -1 when text is not such a count or the count overflows size_t. */
int bench_parse_bytes(const char *text, size_t *bytes);

/* Name of the collective as typed on the command line ("allreduce"). */
const char *bench_collective_name(bench_collective_t collective);

/* Type and op names as nccl-tests prints them in the type and redop columns ("float", "sum"). */
const char *bench_type_name(bench_type_t type);
const char *bench_op_name(bench_op_t op);
const char *bench_time_reduction_name(bench_time_reduction_t reduction);

/* Size of one element in bytes. */
size_t bench_type_size(bench_type_t type);

/* Whether the collective reduces, so that -o applies to it. */
int bench_collective_reduces(bench_collective_t collective);

/* Next size of the sweep after `bytes`, or 0 when the sweep is over (every next size is above 0). */
size_t bench_next_size(const bench_options_t *options, size_t bytes);

#endif /* BENCH_OPTIONS_H */
