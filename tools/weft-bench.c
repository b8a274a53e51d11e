/*
 * weft-bench: nccl-tests style benchmark of the weft collectives.
 *
 * It uses only the public API (weft.h) and the shared library, as an application would. Ranks come
 * from weft_comm_init_env (mpirun, srun, torchrun, or WEFT_ROOT/WEFT_RANK/WEFT_SIZE), or from -N,
 * which forks the ranks locally. Only rank 0 prints the table. See docs/benchmarks.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_affinity.h"
#include "bench_multi.h"
#include "bench_options.h"
#include "bench_overlap.h"
#include "bench_report.h"
#include "bench_sweep.h"
#include "weft.h"

/* Seconds the spawning parent waits for the other ranks to report their own error after one
 * rank failed, before it terminates them. */
#define SPAWN_GRACE_SECONDS 10

/* Buffer alignment: page size, so registration never covers a neighbour's allocation. */
#define BUFFER_ALIGNMENT 4096

/* Communicator and call arguments of one benchmark run, the context of its bench_backend_t. */
typedef struct {
    const bench_options_t *options;
    weft_comm_t comm;
    int rank; /* -1 until the communicator exists */
    int nranks;
    weft_datatype_t datatype;
    weft_op_t op;
    size_t element_size;
    const bench_backend_t *backend;
} benchmark_t;

/* Print a failed weft call with the library's detail and end the process. */
static void exit_on_weft_error(const benchmark_t *bench, weft_result_t result, const char *call)
{
    if (result == WEFT_SUCCESS)
        return;
    /* Print the line with one call, so lines of ranks that fail at the same time do not interleave. */
    char rank_text[32] = "";
    if (bench->rank >= 0)
        snprintf(rank_text, sizeof(rank_text), "rank %d: ", bench->rank);
    fprintf(stderr, "weft-bench: %s%s failed: %s: %s\n", rank_text, call, weft_result_string(result),
            weft_comm_last_error(bench->comm));
    exit(1);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Name of the weft call for error messages: the blocking or the non-blocking form. */
static const char *weft_function_name(bench_collective_t collective, int nonblocking)
{
    switch (collective) {
    case BENCH_ALLREDUCE:
    case BENCH_ALLREDUCE_MULTI: return nonblocking ? "weft_iallreduce" : "weft_allreduce";
    case BENCH_ALLGATHER: return nonblocking ? "weft_iallgather" : "weft_allgather";
    case BENCH_REDUCESCATTER: return nonblocking ? "weft_ireduce_scatter" : "weft_reduce_scatter";
    case BENCH_BROADCAST: return nonblocking ? "weft_ibroadcast" : "weft_broadcast";
    }
    return "weft collective";
}

/*
 * Call the collective once on slot's buffers: the blocking form when request is NULL, else the
 * non-blocking form. In place uses the addresses weft.h defines. allreduce_multi's per-buffer calls
 * are all-reduces.
 */
static weft_result_t call_collective(const benchmark_t *bench, const bench_layout_t *layout, int in_place,
                                     const bench_slot_t *slot, weft_request_t *request)
{
    unsigned char *own_block = bench_own_block(bench->backend, slot, layout, bench->element_size);
    weft_comm_t comm = bench->comm;
    size_t count = layout->count;

    switch (bench->options->collective) {
    case BENCH_ALLREDUCE:
    case BENCH_ALLREDUCE_MULTI: {
        const void *send = in_place ? slot->recv : slot->send;
        if (request == NULL)
            return weft_allreduce(send, slot->recv, count, bench->datatype, bench->op, comm);
        return weft_iallreduce(send, slot->recv, count, bench->datatype, bench->op, comm, request);
    }
    case BENCH_ALLGATHER: {
        const void *send = in_place ? own_block : slot->send;
        if (request == NULL)
            return weft_allgather(send, slot->recv, count, bench->datatype, comm);
        return weft_iallgather(send, slot->recv, count, bench->datatype, comm, request);
    }
    case BENCH_REDUCESCATTER: {
        /* In place, the send buffer is the receive buffer of nranks blocks. */
        const void *send = in_place ? slot->recv : slot->send;
        void *recv = in_place ? own_block : slot->recv;
        if (request == NULL)
            return weft_reduce_scatter(send, recv, count, bench->datatype, bench->op, comm);
        return weft_ireduce_scatter(send, recv, count, bench->datatype, bench->op, comm, request);
    }
    case BENCH_BROADCAST: {
        void *buf = in_place ? slot->recv : slot->send;
        if (request == NULL)
            return weft_broadcast(buf, count, bench->datatype, bench->options->root, comm);
        return weft_ibroadcast(buf, count, bench->datatype, bench->options->root, comm, request);
    }
    }
    return WEFT_ERR_INVALID_ARGUMENT;
}

/* bench_backend_t.run */
static void run_collective(void *context, const bench_layout_t *layout, int in_place, const bench_slot_t *slot)
{
    const benchmark_t *bench = context;
    exit_on_weft_error(bench, call_collective(bench, layout, in_place, slot, NULL),
                       weft_function_name(bench->options->collective, 0));
}

/* bench_backend_t.issue */
static void issue_collective(void *context, const bench_layout_t *layout, int in_place, bench_slot_t *slot)
{
    const benchmark_t *bench = context;
    weft_request_t request = NULL;

    exit_on_weft_error(bench, call_collective(bench, layout, in_place, slot, &request),
                       weft_function_name(bench->options->collective, 1));
    slot->request = request;
}

/* bench_backend_t.test */
static int test_collective(void *context, bench_slot_t *slot)
{
    const benchmark_t *bench = context;
    weft_result_t result = weft_test(slot->request);

    if (result == WEFT_IN_PROGRESS)
        return 0;
    exit_on_weft_error(bench, result, "weft_test");
    return 1;
}

/* bench_backend_t.wait */
static void wait_collective(void *context, bench_slot_t *slot)
{
    const benchmark_t *bench = context;
    weft_result_t result = weft_wait(slot->request);

    slot->request = NULL;
    exit_on_weft_error(bench, result, "weft_wait");
}

/* bench_backend_t.run_multi */
static void run_multi(void *context, void *const *bufs, const size_t *counts, int nbufs)
{
    const benchmark_t *bench = context;
    exit_on_weft_error(bench, weft_allreduce_multi(bufs, counts, nbufs, bench->datatype, bench->op, bench->comm),
                       "weft_allreduce_multi");
}

static void barrier(void *context)
{
    const benchmark_t *bench = context;
    exit_on_weft_error(bench, weft_barrier(bench->comm), "weft_barrier");
}

static double combine_time(void *context, double seconds, bench_time_reduction_t reduction)
{
    const benchmark_t *bench = context;
    weft_result_t result;

    switch (reduction) {
    case BENCH_TIME_RANK0:
        result = weft_broadcast(&seconds, 1, WEFT_FLOAT64, 0, bench->comm);
        break;
    case BENCH_TIME_AVG:
        result = weft_allreduce(&seconds, &seconds, 1, WEFT_FLOAT64, WEFT_SUM, bench->comm);
        seconds /= bench->nranks;
        break;
    case BENCH_TIME_MIN:
        result = weft_allreduce(&seconds, &seconds, 1, WEFT_FLOAT64, WEFT_MIN, bench->comm);
        break;
    default:
        result = weft_allreduce(&seconds, &seconds, 1, WEFT_FLOAT64, WEFT_MAX, bench->comm);
        break;
    }
    exit_on_weft_error(bench, result, "weft_allreduce of the iteration time");
    return seconds;
}

static int64_t max_over_ranks(void *context, int64_t value)
{
    const benchmark_t *bench = context;
    exit_on_weft_error(bench, weft_allreduce(&value, &value, 1, WEFT_INT64, WEFT_MAX, bench->comm),
                       "weft_allreduce of the wrong-element count");
    return value;
}

static void print_header(const benchmark_t *bench)
{
    const char *transport = getenv("WEFT_TRANSPORT");
    const char *provider = getenv("WEFT_OFI_PROVIDER");
    const char *progress_thread = getenv("WEFT_PROGRESS_THREAD");

    printf("# weft-bench: %s nranks %d weft %s transport %s provider %s progress_thread %s\n",
           bench_collective_name(bench->options->collective), bench->nranks, weft_version(),
           transport != NULL && transport[0] != '\0' ? transport : "auto",
           provider != NULL && provider[0] != '\0' ? provider : "auto",
           progress_thread != NULL && progress_thread[0] != '\0' ? progress_thread : "0");
    printf("# transport in use: %s\n", weft_comm_provider(bench->comm));
}

/* Transfer counters since the communicator was created: they include warm-up, checks and the
 * small time and error reductions, not only the timed iterations. */
static void print_stats(const benchmark_t *bench)
{
    weft_stats_t stats;
    exit_on_weft_error(bench, weft_comm_get_stats(bench->comm, &stats), "weft_comm_get_stats");
    printf("# rank 0 transfers: rdma_write_bytes=%" PRIu64 " rdma_writes=%" PRIu64 " eager_bytes=%" PRIu64
           " staged_copy_bytes=%" PRIu64 " local_copy_bytes=%" PRIu64 " mr_cache_hits=%" PRIu64
           " mr_cache_misses=%" PRIu64 "\n",
           stats.rdma_write_bytes, stats.rdma_writes, stats.eager_bytes, stats.staged_copy_bytes,
           stats.local_copy_bytes, stats.mr_cache_hits, stats.mr_cache_misses);
}

static unsigned char *allocate_buffer(const benchmark_t *bench, size_t bytes, const char *name)
{
    void *buf = NULL;
    int error = posix_memalign(&buf, BUFFER_ALIGNMENT, bytes > 0 ? bytes : 1);
    if (error != 0) {
        fprintf(stderr, "weft-bench: rank %d: cannot allocate %zu bytes for the %s buffer: %s; lower -e\n",
                bench->rank, bytes, name, strerror(error));
        exit(1);
    }
    return buf;
}

/* Allocate the -W slots, each with a send and a receive buffer of the largest size. */
static bench_slot_t *allocate_slots(const benchmark_t *bench, int count)
{
    bench_slot_t *slots = calloc((size_t)count, sizeof(*slots));
    if (slots == NULL) {
        fprintf(stderr, "weft-bench: rank %d: cannot allocate %d buffer slots; lower -W\n", bench->rank, count);
        exit(1);
    }
    for (int slot = 0; slot < count; slot++) {
        slots[slot].send = allocate_buffer(bench, bench->options->max_bytes, "send");
        slots[slot].recv = allocate_buffer(bench, bench->options->max_bytes, "receive");
    }
    return slots;
}

static void free_slots(bench_slot_t *slots, int count)
{
    for (int slot = 0; slot < count; slot++) {
        free(slots[slot].send);
        free(slots[slot].recv);
    }
    free(slots);
}

/* Run the mode the options select: allreduce_multi, -O or the nccl-tests sweep. */
static void run_mode(const bench_options_t *options, const bench_backend_t *backend, bench_totals_t *totals)
{
    if (options->collective == BENCH_ALLREDUCE_MULTI)
        bench_run_multi(options, backend, totals);
    else if (options->overlap)
        bench_run_overlap(options, backend, totals);
    else
        bench_run_sweep(options, backend, totals);
}

/* Create the communicator, run the benchmark and destroy it. Returns the process exit status. */
static int run_benchmark(const bench_options_t *options)
{
    benchmark_t bench = {.options = options, .rank = -1};
    bench_backend_t backend = {.context = &bench, .run = run_collective, .barrier = barrier,
                               .combine_time = combine_time, .max_over_ranks = max_over_ranks,
                               .issue = issue_collective, .test = test_collective, .wait = wait_collective,
                               .run_multi = run_multi};
    weft_comm_t comm = NULL;

    bench.datatype = (weft_datatype_t)options->type;
    bench.op = (weft_op_t)options->op;
    bench.element_size = bench_type_size(options->type);
    bench.backend = &backend;
    exit_on_weft_error(&bench, weft_comm_init_env(&comm), "weft_comm_init_env");
    bench.comm = comm;
    bench.rank = backend.rank = weft_comm_rank(comm);
    bench.nranks = backend.nranks = weft_comm_size(comm);

    if (options->collective == BENCH_BROADCAST && options->root >= bench.nranks) {
        if (bench.rank == 0)
            fprintf(stderr, "weft-bench: -r %d is not a rank of this %d-rank job: give 0 to %d\n", options->root,
                    bench.nranks, bench.nranks - 1);
        weft_comm_destroy(comm);
        return 2;
    }

    backend.slots = allocate_slots(&bench, options->window);
    if (bench.rank == 0)
        print_header(&bench);
    bench_totals_t totals;
    run_mode(options, &backend, &totals);
    int failed = 0;
    if (bench.rank == 0) {
        print_stats(&bench);
        failed = bench_print_summary(&totals);
    }

    exit_on_weft_error(&bench, weft_comm_destroy(comm), "weft_comm_destroy");
    free_slots(backend.slots, options->window);
    return failed;
}

/* ---- -N: fork the ranks locally ---- */

/* Ask the kernel for a free loopback port. NOTE: another process may take it before rank 0 listens. */
static int find_free_port(void)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
        getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
        fprintf(stderr, "weft-bench: cannot find a free port on 127.0.0.1: %s\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(address.sin_port);
}

/* Give the local job a random WEFT_JOB_KEY unless the user set one, so no other process can join. */
static int set_random_job_key(void)
{
    unsigned char key[16];
    char text[2 * sizeof(key) + 1];

    if (getenv("WEFT_JOB_KEY") != NULL)
        return 0;
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        fprintf(stderr, "weft-bench: cannot read random bytes for WEFT_JOB_KEY: %s\n", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof(key); i++)
        snprintf(text + 2 * i, 3, "%02x", key[i]);
    return setenv("WEFT_JOB_KEY", text, 1);
}

static void report_child_exit(int rank, pid_t pid, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        fprintf(stderr, "weft-bench: rank %d (pid %d) exited with status %d\n", rank, (int)pid,
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "weft-bench: rank %d (pid %d) was killed by signal %d (%s)\n", rank, (int)pid,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
}

/* Send signal_number to every child that has not exited yet. */
static void signal_children(const pid_t *children, int nranks, int signal_number)
{
    for (int rank = 0; rank < nranks; rank++) {
        if (children[rank] > 0)
            kill(children[rank], signal_number);
    }
}

/*
 * Wait for every child. After the first failure the others get SPAWN_GRACE_SECONDS to fail on their
 * own (a collective cannot finish without every rank), then SIGTERM, and SIGKILL after another grace
 * period. Returns 1 if any rank failed.
 */
static int wait_for_ranks(pid_t *children, int nranks)
{
    int remaining = nranks;
    int failed = 0;
    int terminations = 0;
    double deadline = 0;

    while (remaining > 0) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, failed ? WNOHANG : 0);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            break;
        if (pid == 0) {
            if (now_seconds() > deadline) {
                signal_children(children, nranks, terminations == 0 ? SIGTERM : SIGKILL);
                terminations++;
                deadline = now_seconds() + SPAWN_GRACE_SECONDS;
            }
            usleep(50 * 1000);
            continue;
        }

        for (int rank = 0; rank < nranks; rank++) {
            if (children[rank] != pid)
                continue;
            children[rank] = 0;
            remaining--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                report_child_exit(rank, pid, status);
                if (!failed)
                    deadline = now_seconds() + SPAWN_GRACE_SECONDS;
                failed = 1;
            }
        }
    }
    return failed;
}

/* Fork nranks children that rendezvous on 127.0.0.1 and run the benchmark. */
static int spawn_local_ranks(const bench_options_t *options)
{
    int nranks = options->spawn_ranks;
    char root[64], size_text[16];

    if (getenv("PMIX_RANK") != NULL || getenv("OMPI_COMM_WORLD_RANK") != NULL) {
        fprintf(stderr, "weft-bench: -N forks its own ranks: run it without mpirun, or drop -N under mpirun\n");
        return 2;
    }
    int port = find_free_port();
    if (port < 0 || set_random_job_key() != 0)
        return 1;
    snprintf(root, sizeof(root), "127.0.0.1:%d", port);
    snprintf(size_text, sizeof(size_text), "%d", nranks);

    pid_t *children = calloc((size_t)nranks, sizeof(*children));
    if (children == NULL) {
        fprintf(stderr, "weft-bench: out of memory for %d ranks\n", nranks);
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    for (int rank = 0; rank < nranks; rank++) {
        pid_t pid = fork();
        if (pid == 0) {
            char rank_text[16];
            snprintf(rank_text, sizeof(rank_text), "%d", rank);
            setenv("WEFT_ROOT", root, 1);
            setenv("WEFT_RANK", rank_text, 1);
            setenv("WEFT_SIZE", size_text, 1);
            if (options->bind && bench_bind_to_cpu("weft-bench", rank) != 0)
                exit(1);
            exit(run_benchmark(options));
        }
        if (pid < 0) {
            fprintf(stderr, "weft-bench: fork of rank %d failed: %s\n", rank, strerror(errno));
            signal_children(children, rank, SIGTERM);
            wait_for_ranks(children, rank);
            free(children);
            return 1;
        }
        children[rank] = pid;
    }

    int failed = wait_for_ranks(children, nranks);
    free(children);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const bench_program_t program = {
        .program = "weft-bench", .allow_spawn = 1, .allow_16bit = 1, .allow_avg = 1, .allow_nonblocking = 1,
        .allow_multi = 1};
    bench_options_t options;

    switch (bench_parse_options(argc, argv, &program, &options)) {
    case BENCH_PARSE_HELP:
        return 0;
    case BENCH_PARSE_ERROR:
        return 2;
    case BENCH_PARSE_RUN:
        break;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (options.spawn_ranks > 0)
        return spawn_local_ranks(&options);
    return run_benchmark(&options);
}
