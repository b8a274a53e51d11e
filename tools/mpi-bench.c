/*
 * mpi-bench: the weft-bench measurement applied to the MPI library's collectives (MPI_Allreduce,
 * MPI_Allgather, MPI_Reduce_scatter_block, MPI_Bcast), so that the two compare directly. Same
 * options, sizes, timing, checks and table as weft-bench. Launch it with mpirun.
 */
#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_options.h"
#include "bench_report.h"
#include "bench_sweep.h"

/* Buffer alignment: page size, as weft-bench uses. */
#define BUFFER_ALIGNMENT 4096

/* Call arguments of one benchmark run, the context of its bench_backend_t. */
typedef struct {
    const bench_options_t *options;
    int rank;
    int nranks;
    MPI_Datatype datatype;
    MPI_Op op;
    size_t element_size;
} benchmark_t;

/* Print a failed MPI call with the library's message and abort the job. */
static void exit_on_mpi_error(const benchmark_t *bench, int error, const char *call)
{
    if (error == MPI_SUCCESS)
        return;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(error, message, &length);
    fprintf(stderr, "mpi-bench: rank %d: %s failed: %s\n", bench->rank, call, message);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

static MPI_Datatype mpi_datatype(bench_type_t type)
{
    switch (type) {
    case BENCH_INT8: return MPI_INT8_T;
    case BENCH_UINT8: return MPI_UINT8_T;
    case BENCH_INT32: return MPI_INT32_T;
    case BENCH_UINT32: return MPI_UINT32_T;
    case BENCH_INT64: return MPI_INT64_T;
    case BENCH_UINT64: return MPI_UINT64_T;
    case BENCH_FLOAT64: return MPI_DOUBLE;
    default: return MPI_FLOAT; /* half and bfloat16 are rejected by the option parser */
    }
}

static MPI_Op mpi_op(bench_op_t op)
{
    switch (op) {
    case BENCH_PROD: return MPI_PROD;
    case BENCH_MIN: return MPI_MIN;
    case BENCH_MAX: return MPI_MAX;
    default: return MPI_SUM; /* avg is rejected by the option parser */
    }
}

/* bench_backend_t.run. MPI counts are int, and run_benchmark checked that every count fits. */
static void run_collective(void *context, const bench_layout_t *layout, int in_place, const bench_slot_t *slot)
{
    const benchmark_t *bench = context;
    int count = (int)layout->count;
    int error = MPI_SUCCESS;
    const char *call = "";

    switch (bench->options->collective) {
    case BENCH_ALLREDUCE:
    case BENCH_ALLREDUCE_MULTI: /* rejected by the option parser: mpi-bench does not set allow_multi */
        call = "MPI_Allreduce";
        error = MPI_Allreduce(in_place ? MPI_IN_PLACE : slot->send, slot->recv, count, bench->datatype,
                              bench->op, MPI_COMM_WORLD);
        break;
    case BENCH_ALLGATHER:
        call = "MPI_Allgather";
        if (in_place)
            error = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, slot->recv, count, bench->datatype,
                                  MPI_COMM_WORLD);
        else
            error = MPI_Allgather(slot->send, count, bench->datatype, slot->recv, count, bench->datatype,
                                  MPI_COMM_WORLD);
        break;
    case BENCH_REDUCESCATTER:
        /* In place, MPI reads all blocks from recv and writes this rank's block at its start. */
        call = "MPI_Reduce_scatter_block";
        error = MPI_Reduce_scatter_block(in_place ? MPI_IN_PLACE : slot->send, slot->recv, count,
                                         bench->datatype, bench->op, MPI_COMM_WORLD);
        break;
    case BENCH_BROADCAST:
        call = "MPI_Bcast";
        error = MPI_Bcast(in_place ? slot->recv : slot->send, count, bench->datatype, bench->options->root,
                          MPI_COMM_WORLD);
        break;
    }
    exit_on_mpi_error(bench, error, call);
}

static void barrier(void *context)
{
    exit_on_mpi_error(context, MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

static double combine_time(void *context, double seconds, bench_time_reduction_t reduction)
{
    const benchmark_t *bench = context;
    int error;

    switch (reduction) {
    case BENCH_TIME_RANK0:
        error = MPI_Bcast(&seconds, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        break;
    case BENCH_TIME_AVG:
        error = MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        seconds /= bench->nranks;
        break;
    case BENCH_TIME_MIN:
        error = MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
        break;
    default:
        error = MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        break;
    }
    exit_on_mpi_error(bench, error, "MPI_Allreduce of the iteration time");
    return seconds;
}

static int64_t max_over_ranks(void *context, int64_t value)
{
    exit_on_mpi_error(context, MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD),
                      "MPI_Allreduce of the wrong-element count");
    return value;
}

/* Print the program line with the first line of the MPI library's version string. */
static void print_header(const benchmark_t *bench)
{
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;

    MPI_Get_library_version(version, &length);
    version[strcspn(version, "\n")] = '\0';
    printf("# mpi-bench: %s nranks %d mpi %s\n", bench_collective_name(bench->options->collective), bench->nranks,
           version);
}

static unsigned char *allocate_buffer(const benchmark_t *bench, size_t bytes, const char *name)
{
    void *buf = NULL;
    int error = posix_memalign(&buf, BUFFER_ALIGNMENT, bytes > 0 ? bytes : 1);
    if (error != 0) {
        fprintf(stderr, "mpi-bench: rank %d: cannot allocate %zu bytes for the %s buffer: %s; lower -e\n",
                bench->rank, bytes, name, strerror(error));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return buf;
}

/* Reject what MPI cannot run: a root outside the job, or counts beyond int. Returns 0 when valid. */
static int validate_for_mpi(const benchmark_t *bench)
{
    const bench_options_t *options = bench->options;

    if (options->collective == BENCH_BROADCAST && options->root >= bench->nranks) {
        if (bench->rank == 0)
            fprintf(stderr, "mpi-bench: -r %d is not a rank of this %d-rank job: give 0 to %d\n", options->root,
                    bench->nranks, bench->nranks - 1);
        return -1;
    }
    if (options->max_bytes / bench->element_size > (size_t)INT_MAX) {
        if (bench->rank == 0)
            fprintf(stderr, "mpi-bench: -e %zu needs more than %d elements of %s, beyond an MPI int count: "
                    "lower -e\n", options->max_bytes, INT_MAX, bench_type_name(options->type));
        return -1;
    }
    return 0;
}

/* Run the sweep on MPI_COMM_WORLD and return the process exit status. */
static int run_benchmark(const bench_options_t *options)
{
    benchmark_t bench = {.options = options};
    bench_backend_t backend = {.context = &bench, .scatter_in_place_at_start = 1, .run = run_collective,
                               .barrier = barrier, .combine_time = combine_time, .max_over_ranks = max_over_ranks};

    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &bench.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &bench.nranks);
    bench.datatype = mpi_datatype(options->type);
    bench.op = mpi_op(options->op);
    bench.element_size = bench_type_size(options->type);
    backend.rank = bench.rank;
    backend.nranks = bench.nranks;
    if (validate_for_mpi(&bench) != 0)
        return 2;

    bench_slot_t slot = {.send = allocate_buffer(&bench, options->max_bytes, "send"),
                         .recv = allocate_buffer(&bench, options->max_bytes, "receive")};
    backend.slots = &slot;
    if (bench.rank == 0)
        print_header(&bench);
    bench_totals_t totals;
    bench_run_sweep(options, &backend, &totals);
    int failed = bench.rank == 0 ? bench_print_summary(&totals) : 0;

    free(slot.send);
    free(slot.recv);
    return failed;
}

/* Parse the options on every rank, with the help and error output of ranks other than 0 discarded
 * so that it appears once. */
static bench_parse_result_t parse_options(int argc, char **argv, int rank, bench_options_t *options)
{
    static const bench_program_t program = {.program = "mpi-bench"};

    if (rank == 0)
        return bench_parse_options(argc, argv, &program, options);

    fflush(stdout);
    fflush(stderr);
    int saved_stdout = dup(STDOUT_FILENO);
    int saved_stderr = dup(STDERR_FILENO);
    int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd >= 0) {
        dup2(null_fd, STDOUT_FILENO);
        dup2(null_fd, STDERR_FILENO);
        close(null_fd);
    }
    bench_parse_result_t result = bench_parse_options(argc, argv, &program, options);
    fflush(stdout);
    fflush(stderr);
    if (saved_stdout >= 0) {
        dup2(saved_stdout, STDOUT_FILENO);
        close(saved_stdout);
    }
    if (saved_stderr >= 0) {
        dup2(saved_stderr, STDERR_FILENO);
        close(saved_stderr);
    }
    return result;
}

int main(int argc, char **argv)
{
    bench_options_t options;
    int status = 0;
    int rank = 0;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    switch (parse_options(argc, argv, rank, &options)) {
    case BENCH_PARSE_HELP: status = 0; break;
    case BENCH_PARSE_ERROR: status = 2; break;
    case BENCH_PARSE_RUN:
        setvbuf(stdout, NULL, _IOLBF, 0);
        status = run_benchmark(&options);
        break;
    }
    MPI_Finalize();
    return status;
}
