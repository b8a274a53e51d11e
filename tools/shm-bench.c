/*
 * shm-bench: latency and bandwidth of weft's shm transport between two processes, per protocol.
 *
 *   shm-bench send|write [--protocol P] [--chunk BYTES] [--min BYTES] [--max BYTES] [--iterations N] [--pin]
 *
 * It forks two ranks that connect over a socketpair and run a ping-pong for each size from --min
 * to --max (factor 4). send: rank 0 sends the message and rank 1 sends it back; the table shows
 * half the round trip. write: rank 0 writes the bytes into rank 1's region and rank 1 replies with
 * an empty send; the table shows the whole round trip. Protocols (the transport picks one by size,
 * this tool forces one):
 *   send:  inline (copied through the ring, up to a quarter of it), rts (pulled by
 *          process_vm_readv), pieces (through the ring in pieces, as without CMA)
 *   write: inline (WRITE records through the ring), cma (process_vm_writev in --chunk pieces)
 * Every iteration's data is checked at its first and last byte; the median over --iterations
 * round trips (after as many warm-up ones) is printed with the bandwidth it implies (GB = 1e9 B).
 * --pin binds rank r to CPU r, so that the two ranks never share a core: when they do, each wait
 * lasts until the scheduler switches, and the table shows the scheduler instead of the transport.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "param.h"
#include "shm/shm.h"

#define ADDRESS_STRIDE 256

typedef struct {
    int write_mode;     /* 0: send, 1: write */
    const char *protocol;
    size_t chunk;
    size_t min_bytes, max_bytes;
    int iterations;
    int pin;            /* bind rank r to CPU r */
} options_t;

typedef struct {
    int rank;
    int socket;
    wf_transport_t *t;
    size_t immediates;
} bench_rank_t;

static const wf_transport_ops_t *const ops = &wf_shm_transport;

static void usage(const char *message, const char *value)
{
    fprintf(stderr, "shm-bench: %s '%s'\nusage: shm-bench send|write [--protocol P] [--chunk BYTES] [--min BYTES] "
                    "[--max BYTES] [--iterations N] [--pin]\n  send protocols: inline, rts, pieces; write protocols: inline, "
                    "cma\n", message, value ? value : "");
    exit(2);
}

static size_t parse_size(const char *text)
{
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (end == text)
        usage("invalid size", text);
    if (*end == 'K' || *end == 'k')
        value <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        value <<= 20, end++;
    if (*end != '\0')
        usage("invalid size", text);
    return (size_t)value;
}

static options_t parse_options(int argc, char **argv)
{
    options_t options = {0, NULL, WF_SHM_CMA_CHUNK, 64, 64u << 20, 50, 0};
    if (argc < 2 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "write") != 0))
        usage("expected send or write, got", argc > 1 ? argv[1] : "");
    options.write_mode = strcmp(argv[1], "write") == 0;
    options.protocol = options.write_mode ? "cma" : "rts";
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--pin") == 0) {
            options.pin = 1;
            continue;
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL)
            usage("missing value after", argv[i]);
        if (strcmp(argv[i], "--protocol") == 0)
            options.protocol = value;
        else if (strcmp(argv[i], "--chunk") == 0)
            options.chunk = parse_size(value);
        else if (strcmp(argv[i], "--min") == 0)
            options.min_bytes = parse_size(value);
        else if (strcmp(argv[i], "--max") == 0)
            options.max_bytes = parse_size(value);
        else if (strcmp(argv[i], "--iterations") == 0)
            options.iterations = atoi(value);
        else
            usage("invalid option", argv[i]);
        i++;
    }
    const char *valid = options.write_mode ? " inline cma " : " inline rts pieces ";
    char padded[64];
    snprintf(padded, sizeof(padded), " %s ", options.protocol);
    if (strstr(valid, padded) == NULL)
        usage("invalid protocol for this mode", options.protocol);
    if (options.chunk < 4096 || options.iterations < 1 || options.min_bytes == 0 || options.max_bytes < options.min_bytes)
        usage("invalid --chunk (at least 4096), --iterations (at least 1) or --min/--max", "");
    return options;
}

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void on_write(void *arg, uint32_t immediate)
{
    ((bench_rank_t *)arg)->immediates++;
}

static void fail(bench_rank_t *rank, const char *what)
{
    fprintf(stderr, "shm-bench rank %d: %s: %s\n", rank->rank, what, ops->error_string(rank->t));
    exit(1);
}

/* Poll once; after many idle polls give the core away, as weft's own waits do, for oversubscribed runs. */
static void poll_once(bench_rank_t *rank, unsigned *idle)
{
    int events = ops->progress(rank->t);
    if (events < 0)
        fail(rank, "progress failed");
    *idle = events > 0 ? 0 : *idle + 1;
    if (*idle > 2000)
        sched_yield();
}

static void wait_xfer(bench_rank_t *rank, wf_xfer_t *xfer)
{
    unsigned idle = 0;
    while (!xfer->done)
        poll_once(rank, &idle);
    if (xfer->status != 0)
        fail(rank, "transfer failed");
}

static void socket_exchange(bench_rank_t *rank, void *mine, void *theirs, size_t length)
{
    if (write(rank->socket, mine, length) != (ssize_t)length || read(rank->socket, theirs, length) != (ssize_t)length)
        fail(rank, "socket exchange with the other rank failed");
}

/* Make the transport use the forced protocol towards its peer. */
static void force_protocol(bench_rank_t *rank, const options_t *options)
{
    wf_shm_peer_t *peer = &rank->t->peers[1 - rank->rank];
    size_t quarter = (size_t)peer->capacity / 4 - sizeof(wf_shm_msg_t);
    int inline_all = strcmp(options->protocol, "inline") == 0;
    peer->inline_max = inline_all ? quarter : 0;
    peer->write_inline_max = inline_all ? quarter : 0;
    rank->t->cma_chunk = options->chunk;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One ping-pong of size bytes; returns the round trip in seconds. */
static double round_trip(bench_rank_t *rank, const options_t *options, unsigned char *buffer, size_t size,
                         const uint64_t *target, unsigned char stamp)
{
    int peer = 1 - rank->rank;
    wf_xfer_t xfer = {0};
    double start = now_seconds();
    if (rank->rank == 0) {
        buffer[0] = buffer[size - 1] = stamp;
        if (options->write_mode) {
            if (ops->write(rank->t, peer, buffer, size, NULL, target[0], target[1], 1, &xfer) != 0)
                fail(rank, "write failed");
            wait_xfer(rank, &xfer);
            if (ops->recv(rank->t, peer, 2, NULL, 0, NULL, &xfer) != 0)
                fail(rank, "receive failed");
            wait_xfer(rank, &xfer);
        } else {
            if (ops->send(rank->t, peer, 1, buffer, size, NULL, &xfer) != 0)
                fail(rank, "send failed");
            wait_xfer(rank, &xfer);
            if (ops->recv(rank->t, peer, 2, buffer, size, NULL, &xfer) != 0)
                fail(rank, "receive failed");
            wait_xfer(rank, &xfer);
            if (buffer[0] != (unsigned char)(stamp + 1) || buffer[size - 1] != (unsigned char)(stamp + 1))
                fail(rank, "the echoed message holds the wrong bytes");
        }
        return now_seconds() - start;
    }
    if (options->write_mode) {
        size_t expected = rank->immediates + 1;
        unsigned idle = 0;
        while (rank->immediates < expected)
            poll_once(rank, &idle);
        if (buffer[0] != stamp || buffer[size - 1] != stamp)
            fail(rank, "the written bytes are wrong");
        if (ops->send(rank->t, peer, 2, NULL, 0, NULL, &xfer) != 0)
            fail(rank, "send failed");
        wait_xfer(rank, &xfer);
    } else {
        if (ops->recv(rank->t, peer, 1, buffer, size, NULL, &xfer) != 0)
            fail(rank, "receive failed");
        wait_xfer(rank, &xfer);
        if (buffer[0] != stamp || buffer[size - 1] != stamp)
            fail(rank, "the received message holds the wrong bytes");
        buffer[0] = buffer[size - 1] = (unsigned char)(stamp + 1);
        if (ops->send(rank->t, peer, 2, buffer, size, NULL, &xfer) != 0)
            fail(rank, "send failed");
        wait_xfer(rank, &xfer);
    }
    return 0.0;
}

static int run_rank(int rank_index, int socket, const options_t *options)
{
    bench_rank_t rank = {.rank = rank_index, .socket = socket};
    if (options->pin) {
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET(rank_index, &cpus);
        if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0)
            fprintf(stderr, "shm-bench rank %d: cannot bind to CPU %d: %s\n", rank_index, rank_index, strerror(errno));
    }
    wf_transport_config_t config = {.rank = rank_index, .nranks = 2, .single_node = 1, .on_remote_write = on_write,
                                    .callback_arg = &rank,
                                    .shm_cma_disabled = strcmp(options->protocol, "pieces") == 0};
    char err[512] = "";
    if (ops->create(&config, &rank.t, err, sizeof(err)) != 0) {
        fprintf(stderr, "shm-bench rank %d: %s\n", rank_index, err);
        return 1;
    }
    unsigned char addresses[2][ADDRESS_STRIDE];
    memset(addresses, 0, sizeof(addresses));
    size_t length = ADDRESS_STRIDE;
    if (ops->get_address(rank.t, addresses[rank_index], &length) != 0)
        fail(&rank, "get_address failed");
    socket_exchange(&rank, addresses[rank_index], addresses[1 - rank_index], ADDRESS_STRIDE);
    if (ops->connect(rank.t, addresses, ADDRESS_STRIDE) != 0)
        fail(&rank, "connect failed");
    char ready = 'r', peer_ready;
    socket_exchange(&rank, &ready, &peer_ready, 1); /* both probes are published */
    force_protocol(&rank, options);

    unsigned char *buffer = calloc(options->max_bytes, 1);
    wf_mr_t mr;
    if (buffer == NULL || ops->mr_register(rank.t, buffer, options->max_bytes, &mr) != 0)
        fail(&rank, "cannot allocate or register the buffer");
    uint64_t mine[2], target[2];
    mine[0] = ops->remote_address(rank.t, &mr, buffer, 1 - rank_index, &mine[1]);
    socket_exchange(&rank, mine, target, sizeof(mine));
    double *times = calloc((size_t)options->iterations, sizeof(double));
    if (rank_index == 0)
        printf("# shm-bench %s, protocol %s%s, median of %d round trips\n# %10s %12s %10s\n",
               options->write_mode ? "write" : "send", options->protocol, options->write_mode ? "" : " (half round trip)",
               options->iterations, "size (B)", "time (us)", "GB/s");
    for (size_t size = options->min_bytes; size <= options->max_bytes; size *= 4) {
        if (!options->write_mode && strcmp(options->protocol, "inline") == 0 &&
            size > rank.t->peers[1 - rank_index].inline_max)
            break;
        for (int i = 0; i < 2 * options->iterations; i++) {
            double t = round_trip(&rank, options, buffer, size, target, (unsigned char)(i * 2 + 1));
            if (i >= options->iterations)
                times[i - options->iterations] = t;
        }
        if (rank_index != 0)
            continue;
        qsort(times, (size_t)options->iterations, sizeof(double), compare_doubles);
        double median = times[options->iterations / 2] / (options->write_mode ? 1.0 : 2.0);
        printf("  %10zu %12.2f %10.3f\n", size, median * 1e6, (double)size / median / 1e9);
        fflush(stdout);
    }
    socket_exchange(&rank, &ready, &peer_ready, 1);
    ops->mr_deregister(rank.t, &mr);
    ops->destroy(rank.t);
    free(times);
    free(buffer);
    return 0;
}

int main(int argc, char **argv)
{
    options_t options = parse_options(argc, argv);
    char err[512];
    if (wf_param_load(err, sizeof(err)) != 0) {
        fprintf(stderr, "shm-bench: %s\n", err);
        return 1;
    }
    int sockets[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) {
        perror("shm-bench: socketpair");
        return 1;
    }
    fflush(NULL);
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            close(sockets[1 - r]);
            _exit(run_rank(r, sockets[r], &options));
        }
    }
    close(sockets[0]);
    close(sockets[1]);
    int failed = 0;
    for (int r = 0; r < 2; r++) {
        int status = 0;
        waitpid(pids[r], &status, 0);
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    return failed;
}
