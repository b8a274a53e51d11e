/*
 * Tests of weft's shared-memory transport (transport/shm/) with real processes.
 *
 * Each two-rank case forks two processes that exchange their addresses over a socketpair, connect,
 * run one scenario and report through their exit status. Most scenarios run twice: with
 * cross-memory attach, and with WEFT_SHM_CMA=off (shm_cma_disabled), where every payload goes
 * through the rings.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "param.h"
#include "shm/shm.h"
#include "transport.h"
#include "transport_harness.h"

#define CHILD_ALARM_SEC 60
#define MAX_IMMEDIATES 64
#define ADDRESS_STRIDE 256

static const wf_transport_ops_t *const ops = &wf_shm_transport;

typedef struct {
    int rank;
    int nranks;
    int socket;
    int cma_disabled;
    wf_transport_t *t;
    size_t immediate_count;
    uint32_t immediates[MAX_IMMEDIATES];
    int stop;                      /* returned by should_stop */
} rank_context_t;

typedef int (*scenario_fn)(rank_context_t *ctx);

#define CHECK(ctx, cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d (cma %s) line %d: check failed: %s: ", (ctx)->rank,           \
                    (ctx)->cma_disabled ? "off" : "auto", __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_OK(ctx, call)                                                                        \
    do {                                                                                           \
        int check_rc_ = (call);                                                                    \
        CHECK(ctx, check_rc_ == 0, "returned %d: %s", check_rc_, ops->error_string((ctx)->t));     \
    } while (0)

static void record_immediate(void *arg, uint32_t immediate)
{
    rank_context_t *ctx = arg;
    if (ctx->immediate_count < MAX_IMMEDIATES)
        ctx->immediates[ctx->immediate_count] = immediate;
    ctx->immediate_count++;
}

static int should_stop(void *arg)
{
    return ((rank_context_t *)arg)->stop;
}

/* Describe ctx to the harness helpers, which wait for transfers and barriers. */
static harness_rank_t harness_of(rank_context_t *ctx)
{
    const char *label = (ctx->cma_disabled ? "cma off" : "cma auto");
    return (harness_rank_t){.rank = ctx->rank, .socket = ctx->socket, .ops = ops, .t = ctx->t, .label = label};
}

static int wait_xfer(rank_context_t *ctx, wf_xfer_t *xfer, const char *operation)
{
    harness_rank_t h = harness_of(ctx);
    return harness_wait_xfer(&h, xfer, operation);
}

static int progress_for(rank_context_t *ctx, int ms)
{
    harness_rank_t h = harness_of(ctx);
    return harness_progress_for(&h, ms);
}

static int barrier(rank_context_t *ctx)
{
    harness_rank_t h = harness_of(ctx);
    return harness_barrier(&h);
}

static int connect_ranks(rank_context_t *ctx)
{
    unsigned char addresses[2][ADDRESS_STRIDE];
    memset(addresses, 0, sizeof(addresses));
    size_t length = ADDRESS_STRIDE;
    CHECK_OK(ctx, ops->get_address(ctx->t, addresses[ctx->rank], &length));
    CHECK(ctx, length == sizeof(wf_shm_address_t), "address length %zu", length);
    if (ctx->nranks == 2) {
        int peer = 1 - ctx->rank;
        CHECK(ctx, harness_write_all(ctx->socket, addresses[ctx->rank], ADDRESS_STRIDE) == 0, "address send failed");
        CHECK(ctx, harness_read_all(ctx->socket, addresses[peer], ADDRESS_STRIDE) == 0, "address receive failed");
    }
    CHECK_OK(ctx, ops->connect(ctx->t, addresses, ADDRESS_STRIDE));
    return 0;
}

static int run_rank(int rank, int nranks, int socket, int cma_disabled, scenario_fn scenario)
{
    alarm(CHILD_ALARM_SEC);
    signal(SIGPIPE, SIG_IGN);
    rank_context_t ctx = {.rank = rank, .nranks = nranks, .socket = socket, .cma_disabled = cma_disabled};
    wf_transport_config_t config = {.rank = rank,
                                    .nranks = nranks,
                                    .single_node = 1,
                                    .on_remote_write = record_immediate,
                                    .should_stop = should_stop,
                                    .callback_arg = &ctx,
                                    .shm_cma_disabled = cma_disabled};
    char err[512] = "";
    int rc = ops->create(&config, &ctx.t, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "rank %d: create failed (%d): %s\n", rank, rc, err);
        return 1;
    }
    rc = connect_ranks(&ctx);
    if (rc == 0)
        rc = scenario(&ctx);
    if (rc == 0 && nranks == 2)
        rc = barrier(&ctx);
    ops->destroy(ctx.t);
    return rc == 0 ? 0 : 1;
}

/* Fork nranks (1 or 2) processes running scenario and check that both exit 0. */
static void run_ranks(int nranks, int cma_disabled, scenario_fn scenario)
{
    int sockets[2] = {-1, -1};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets), 0);
    fflush(NULL);
    pid_t pids[2];
    for (int rank = 0; rank < nranks; rank++) {
        pids[rank] = fork();
        assert_true(pids[rank] >= 0);
        if (pids[rank] == 0) {
            close(sockets[1 - rank]);
            _exit(run_rank(rank, nranks, sockets[rank], cma_disabled, scenario));
        }
    }
    close(sockets[0]);
    close(sockets[1]);
    /* Reap in exit order, so a rank that exits early is no zombie while the other still runs. */
    int statuses[2] = {-1, -1};
    for (int reaped = 0; reaped < nranks; reaped++) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, 0);
        assert_true(pid > 0);
        int rank = pid == pids[0] ? 0 : 1;
        if (WIFSIGNALED(status))
            fprintf(stderr, "rank %d was killed by signal %d\n", rank, WTERMSIG(status));
        statuses[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    assert_int_equal(statuses[0], 0);
    if (nranks == 2)
        assert_int_equal(statuses[1], 0);
}

/*
 * Rank 0 sends length bytes with tag to rank 1. With unexpected set, rank 1 progresses for a while
 * before it posts the receive, so the message (or its RTS) arrives first.
 */
static int exchange_tagged(rank_context_t *ctx, size_t length, uint64_t tag, int unexpected)
{
    uint32_t seed = (uint32_t)(length * 7 + (size_t)unexpected);
    uint8_t *buffer = calloc(length > 0 ? length : 1, 1);
    CHECK(ctx, buffer != NULL, "calloc of %zu bytes failed", length);
    wf_xfer_t xfer = {0};
    char operation[96];
    snprintf(operation, sizeof(operation), "%s tagged %s of %zu bytes", unexpected ? "unexpected" : "expected",
             ctx->rank == 0 ? "send" : "receive", length);
    if (ctx->rank == 0) {
        harness_fill_pattern(buffer, length, seed);
        if (!unexpected && barrier(ctx) != 0)
            return -1;
        CHECK_OK(ctx, ops->send(ctx->t, 1, tag, buffer, length, NULL, &xfer));
        if (unexpected && barrier(ctx) != 0)
            return -1;
        if (wait_xfer(ctx, &xfer, operation) != 0)
            return -1;
        CHECK(ctx, xfer.length == length, "%s: xfer length %zu", operation, xfer.length);
    } else {
        if (unexpected && (barrier(ctx) != 0 || progress_for(ctx, 30) != 0))
            return -1;
        CHECK_OK(ctx, ops->recv(ctx->t, 0, tag, buffer, length, NULL, &xfer));
        if (!unexpected && barrier(ctx) != 0)
            return -1;
        if (wait_xfer(ctx, &xfer, operation) != 0)
            return -1;
        CHECK(ctx, xfer.length == length, "%s: received %zu bytes", operation, xfer.length);
        size_t bad = harness_first_mismatch(buffer, length, seed);
        CHECK(ctx, bad == length, "%s: byte %zu is 0x%02x, expected 0x%02x", operation, bad, buffer[bad],
              harness_pattern_byte(seed, bad));
    }
    free(buffer);
    return 0;
}

/* Around the inline limit, one ring, a full ring, and megabytes (RTS, or pieces without CMA). */
static int scenario_tagged_sizes(rank_context_t *ctx)
{
    static const size_t sizes[] = {0, 8, WF_SHM_INLINE_MAX, WF_SHM_INLINE_MAX + 1, 300 * 1024, 8 * 1024 * 1024 + 3};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t tag = 0xfff0000000000000ull | sizes[i];
        if (exchange_tagged(ctx, sizes[i], tag, 0) != 0 || exchange_tagged(ctx, sizes[i], tag ^ 1, 1) != 0)
            return -1;
    }
    return 0;
}

/*
 * Order and matching. Three messages with one tag arrive in send order. Receives of two tags sent
 * in the opposite order each take their own. A large message and a small one with the same tag keep
 * their order, although the large one is pulled later.
 */
static int scenario_tag_order(rank_context_t *ctx)
{
    enum { BIG = 100000 };
    uint64_t values[3] = {0}, a = 0, b = 0;
    static uint8_t big[BIG];
    uint64_t small = 0;
    wf_xfer_t xfers[6] = {{0}};
    if (ctx->rank == 1) {
        if (barrier(ctx) != 0 || progress_for(ctx, 30) != 0)
            return -1;
        for (int i = 0; i < 3; i++)
            CHECK_OK(ctx, ops->recv(ctx->t, 0, 7, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        CHECK_OK(ctx, ops->recv(ctx->t, 0, 0xa, &a, sizeof(a), NULL, &xfers[3]));
        CHECK_OK(ctx, ops->recv(ctx->t, 0, 0xb, &b, sizeof(b), NULL, &xfers[4]));
        for (int i = 0; i < 5; i++)
            if (wait_xfer(ctx, &xfers[i], "ordered receive") != 0)
                return -1;
        for (int i = 0; i < 3; i++)
            CHECK(ctx, values[i] == 100u + (uint64_t)i, "message %d of tag 7 holds %llu", i,
                  (unsigned long long)values[i]);
        CHECK(ctx, a == 0xaaaa, "tag a holds 0x%llx", (unsigned long long)a);
        CHECK(ctx, b == 0xbbbb, "tag b holds 0x%llx", (unsigned long long)b);
        /* Big then small, same tag: the first receive must get the big one. */
        CHECK_OK(ctx, ops->recv(ctx->t, 0, 9, big, sizeof(big), NULL, &xfers[0]));
        CHECK_OK(ctx, ops->recv(ctx->t, 0, 9, &small, sizeof(small), NULL, &xfers[1]));
        if (barrier(ctx) != 0 || wait_xfer(ctx, &xfers[0], "big receive") || wait_xfer(ctx, &xfers[1], "small"))
            return -1;
        CHECK(ctx, xfers[0].length == BIG, "the big receive got %zu bytes", xfers[0].length);
        CHECK(ctx, harness_first_mismatch(big, BIG, 9) == BIG, "byte %zu of the big message is wrong", harness_first_mismatch(big, BIG, 9));
        CHECK(ctx, small == 0x5555, "small message holds 0x%llx", (unsigned long long)small);
        return 0;
    }
    uint64_t out[3] = {100, 101, 102}, out_a = 0xaaaa, out_b = 0xbbbb, out_small = 0x5555;
    for (int i = 0; i < 3; i++)
        CHECK_OK(ctx, ops->send(ctx->t, 1, 7, &out[i], sizeof(out[i]), NULL, &xfers[i]));
    CHECK_OK(ctx, ops->send(ctx->t, 1, 0xb, &out_b, sizeof(out_b), NULL, &xfers[4]));
    CHECK_OK(ctx, ops->send(ctx->t, 1, 0xa, &out_a, sizeof(out_a), NULL, &xfers[3]));
    if (barrier(ctx) != 0)
        return -1;
    for (int i = 0; i < 5; i++)
        if (wait_xfer(ctx, &xfers[i], "ordered send") != 0)
            return -1;
    harness_fill_pattern(big, BIG, 9);
    if (barrier(ctx) != 0)
        return -1;
    CHECK_OK(ctx, ops->send(ctx->t, 1, 9, big, BIG, NULL, &xfers[0]));
    CHECK_OK(ctx, ops->send(ctx->t, 1, 9, &out_small, sizeof(out_small), NULL, &xfers[1]));
    return wait_xfer(ctx, &xfers[0], "big send") || wait_xfer(ctx, &xfers[1], "small send") ? -1 : 0;
}

/*
 * recv_any matches every tag bit outside the ignore mask, whether its message arrives before or
 * after the post: one receive is posted first, one after the messages are there.
 */
static int scenario_receive_from_any(rank_context_t *ctx)
{
    const uint64_t base = 0x60000000ull, ignore = 0xfffffull, other = 0x70000000ull, sender = 0xabcdeull;
    uint64_t value = 0, later = 0, outside = 0;
    wf_xfer_t xfer = {0}, later_xfer = {0}, outside_xfer = {0};
    if (ctx->rank == 1) {
        CHECK_OK(ctx, ops->recv_any(ctx->t, base, ignore, &value, sizeof(value), NULL, &xfer));
        if (barrier(ctx) != 0 || wait_xfer(ctx, &xfer, "posted receive from any rank") != 0)
            return -1;
        CHECK(ctx, value == 0x2222, "the receive took 0x%llx, not the message inside the mask",
              (unsigned long long)value);
        if (progress_for(ctx, 20) != 0)
            return -1;
        CHECK_OK(ctx, ops->recv_any(ctx->t, base, ignore, &later, sizeof(later), NULL, &later_xfer));
        if (wait_xfer(ctx, &later_xfer, "receive from any rank after arrival") != 0)
            return -1;
        CHECK(ctx, later == 0x3333, "the late receive took 0x%llx", (unsigned long long)later);
        CHECK_OK(ctx, ops->recv(ctx->t, 0, other | sender, &outside, sizeof(outside), NULL, &outside_xfer));
        if (wait_xfer(ctx, &outside_xfer, "directed receive outside the mask") != 0)
            return -1;
        CHECK(ctx, outside == 0x1111, "the directed receive took 0x%llx", (unsigned long long)outside);
        return 0;
    }
    uint64_t first = 0x1111, second = 0x2222, third = 0x3333;
    if (barrier(ctx) != 0)
        return -1;
    CHECK_OK(ctx, ops->send(ctx->t, 1, other | sender, &first, sizeof(first), NULL, &outside_xfer));
    CHECK_OK(ctx, ops->send(ctx->t, 1, base | sender, &second, sizeof(second), NULL, &xfer));
    CHECK_OK(ctx, ops->send(ctx->t, 1, base | 3, &third, sizeof(third), NULL, &later_xfer));
    return 0;
}

static int wait_immediates(rank_context_t *ctx, size_t count)
{
    int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
    while (ctx->immediate_count < count) {
        int rc = ops->progress(ctx->t);
        CHECK(ctx, rc >= 0, "progress returned %d: %s", rc, ops->error_string(ctx->t));
        CHECK(ctx, harness_now_ms() < deadline, "only %zu of %zu immediates arrived within %d s", ctx->immediate_count,
              count, HARNESS_WAIT_TIMEOUT_SEC);
    }
    return 0;
}

/*
 * Rank 0 writes 8 MiB + 5 into rank 1's region (immediate 0xabcd1234), then 4096 bytes at an odd
 * offset (immediate 7), then 0 bytes (immediate 0x55). Rank 1 checks the data after each immediate
 * and that the bytes around the small write are untouched.
 */
static int scenario_write(rank_context_t *ctx)
{
    const size_t length = 8 * 1024 * 1024 + 5, offset = 1024 * 1024 + 3, small = 4096;
    uint8_t *buffer = calloc(length, 1);
    CHECK(ctx, buffer != NULL, "calloc failed");
    wf_mr_t mr;
    CHECK_OK(ctx, ops->mr_register(ctx->t, buffer, length, &mr));
    uint64_t target[2];
    if (ctx->rank == 1) {
        uint64_t mine[2];
        mine[0] = ops->remote_address(ctx->t, &mr, buffer, 0, &mine[1]);
        CHECK(ctx, mine[0] == (uint64_t)(uintptr_t)buffer, "remote_address is not the virtual address");
        CHECK(ctx, harness_write_all(ctx->socket, mine, sizeof(mine)) == 0, "key send failed");
        if (wait_immediates(ctx, 1) != 0)
            return -1;
        CHECK(ctx, ctx->immediates[0] == 0xabcd1234u, "immediate 0x%08x", ctx->immediates[0]);
        size_t bad = harness_first_mismatch(buffer, length, 1);
        CHECK(ctx, bad == length, "byte %zu is 0x%02x, expected 0x%02x", bad, buffer[bad], harness_pattern_byte(1, bad));
        if (barrier(ctx) != 0 || wait_immediates(ctx, 3) != 0 || progress_for(ctx, 20) != 0)
            return -1;
        CHECK(ctx, ctx->immediate_count == 3, "%zu immediates instead of 3", ctx->immediate_count);
        CHECK(ctx, ctx->immediates[1] == 7u, "second immediate 0x%x", ctx->immediates[1]);
        CHECK(ctx, ctx->immediates[2] == 0x55u, "third immediate 0x%x", ctx->immediates[2]);
        bad = harness_first_mismatch(buffer + offset, small, 2);
        CHECK(ctx, bad == small, "byte %zu after offset %zu is wrong", bad, offset);
        CHECK(ctx, buffer[offset - 1] == harness_pattern_byte(1, offset - 1), "byte before the small write changed");
        CHECK(ctx, buffer[offset + small] == harness_pattern_byte(1, offset + small), "byte after it changed");
    } else {
        CHECK(ctx, harness_read_all(ctx->socket, target, sizeof(target)) == 0, "key receive failed");
        harness_fill_pattern(buffer, length, 1);
        wf_xfer_t xfer = {0};
        CHECK_OK(ctx, ops->write(ctx->t, 1, buffer, length, NULL, target[0], target[1], 0xabcd1234u, &xfer));
        if (wait_xfer(ctx, &xfer, "write of 8 MiB") != 0 || barrier(ctx) != 0)
            return -1;
        harness_fill_pattern(buffer, small, 2);
        CHECK_OK(ctx, ops->write(ctx->t, 1, buffer, small, NULL, target[0] + offset, target[1], 7u, &xfer));
        CHECK(ctx, xfer.done, "a write is done when it returns");
        CHECK_OK(ctx, ops->write(ctx->t, 1, buffer, 0, NULL, target[0], target[1], 0x55u, &xfer));
        CHECK(ctx, ctx->immediate_count == 0, "the writer received %zu immediates", ctx->immediate_count);
    }
    CHECK_OK(ctx, ops->mr_deregister(ctx->t, &mr));
    free(buffer);
    return 0;
}

/*
 * A write outside the target's region, and one with a deregistered key, are rejected by the
 * target's progress() with a message naming the writer, and leave memory untouched.
 */
static int scenario_write_outside_region(rank_context_t *ctx)
{
    uint8_t region[64], outside[64];
    memset(region, 0x11, sizeof(region));
    memset(outside, 0x22, sizeof(outside));
    wf_mr_t mr;
    CHECK_OK(ctx, ops->mr_register(ctx->t, region, sizeof(region), &mr));
    uint64_t info[3] = {(uint64_t)(uintptr_t)region, (uint64_t)(uintptr_t)outside, mr.key}, theirs[3];
    CHECK(ctx, harness_write_all(ctx->socket, info, sizeof(info)) == 0, "send failed");
    CHECK(ctx, harness_read_all(ctx->socket, theirs, sizeof(theirs)) == 0, "receive failed");
    if (ctx->rank == 0) {
        uint8_t data[64];
        memset(data, 0x99, sizeof(data));
        wf_xfer_t xfer = {0};
        /* 8 bytes past the region's end. */
        CHECK_OK(ctx, ops->write(ctx->t, 1, data, 16, NULL, theirs[0] + 56, theirs[2], 1, &xfer));
        CHECK_OK(ctx, ops->write(ctx->t, 1, data, 8, NULL, theirs[1], theirs[2], 2, &xfer));
        return barrier(ctx);
    }
    int errors = 0;
    int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
    while (errors < 2 && harness_now_ms() < deadline) {
        int rc = ops->progress(ctx->t);
        if (rc < 0) {
            CHECK(ctx, rc == -EFAULT, "progress returned %d", rc);
            CHECK(ctx, strstr(ops->error_string(ctx->t), "rank 0 wrote") != NULL, "error: %s",
                  ops->error_string(ctx->t));
            errors++;
        }
    }
    CHECK(ctx, errors == 2, "%d of 2 bad writes were reported", errors);
    CHECK(ctx, ctx->immediate_count == 0, "a rejected write raised an immediate");
    for (size_t i = 0; i < sizeof(region); i++) {
        CHECK(ctx, region[i] == 0x11, "byte %zu of the region changed", i);
        CHECK(ctx, outside[i] == 0x22, "byte %zu outside the region changed", i);
    }
    CHECK_OK(ctx, ops->mr_deregister(ctx->t, &mr));
    return barrier(ctx);
}

/*
 * Rank 1 sleeps without progress while rank 0 sends 20000 small messages, so rank 0's posts find
 * the ring full and must wait. Then both ranks flood each other at once with no receive posted, so
 * a ring fills and a rank must drain its own rings while it waits.
 */
static int scenario_full_ring(rank_context_t *ctx)
{
    enum { COUNT = 20000 };
    static uint64_t values[COUNT];
    static wf_xfer_t xfers[COUNT];
    const uint64_t multiplier = 0x9E3779B97F4A7C15ull;
    if (barrier(ctx) != 0)
        return -1;
    if (ctx->rank == 0) {
        for (int i = 0; i < COUNT; i++) {
            values[i] = (uint64_t)i * multiplier;
            CHECK_OK(ctx, ops->send(ctx->t, 1, (uint64_t)i, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        }
        CHECK(ctx, ctx->t->full_waits > 0, "%d sends to a sleeping rank never found its ring full", COUNT);
    } else {
        usleep(200 * 1000);
        for (int i = 0; i < COUNT; i++)
            CHECK_OK(ctx, ops->recv(ctx->t, 0, (uint64_t)i, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        for (int i = 0; i < COUNT; i++) {
            if (wait_xfer(ctx, &xfers[i], "small receive") != 0)
                return -1;
            CHECK(ctx, values[i] == (uint64_t)i * multiplier, "receive %d holds 0x%016llx", i,
                  (unsigned long long)values[i]);
        }
    }
    if (barrier(ctx) != 0)
        return -1;

    uint64_t waits_before = ctx->t->full_waits;
    int peer = 1 - ctx->rank;
    for (int i = 0; i < COUNT; i++) {
        values[i] = (uint64_t)i * multiplier + (uint64_t)ctx->rank;
        CHECK_OK(ctx, ops->send(ctx->t, peer, (uint64_t)i, &values[i], sizeof(values[i]), NULL, &xfers[i]));
    }
    char waited = ctx->t->full_waits > waits_before, peer_waited = 0;
    for (int i = 0; i < COUNT; i++) {
        uint64_t got = 0;
        wf_xfer_t xfer = {0};
        CHECK_OK(ctx, ops->recv(ctx->t, peer, (uint64_t)i, &got, sizeof(got), NULL, &xfer));
        if (wait_xfer(ctx, &xfer, "receive of the crossing flood") != 0)
            return -1;
        CHECK(ctx, got == (uint64_t)i * multiplier + (uint64_t)peer, "message %d holds 0x%016llx", i,
              (unsigned long long)got);
    }
    /* Nothing drains a ring but the other rank's waits, so at least one of the two ranks waited. */
    CHECK(ctx, harness_write_all(ctx->socket, &waited, 1) == 0, "socket write failed");
    CHECK(ctx, harness_read_all(ctx->socket, &peer_waited, 1) == 0, "socket read failed");
    CHECK(ctx, waited || peer_waited, "neither rank found a ring full during the crossing flood");
    return 0;
}

/* A message longer than its receive: -EMSGSIZE, "truncated", and the sender completes normally. */
static int scenario_truncated(rank_context_t *ctx)
{
    enum { LARGE = 1 << 20 };
    static uint8_t data[LARGE];
    wf_xfer_t xfer = {0};
    if (ctx->rank == 0) {
        harness_fill_pattern(data, LARGE, 5);
        CHECK_OK(ctx, ops->send(ctx->t, 1, 1, data, 64, NULL, &xfer));
        if (wait_xfer(ctx, &xfer, "send into a short receive") != 0)
            return -1;
        CHECK_OK(ctx, ops->send(ctx->t, 1, 2, data, LARGE, NULL, &xfer));
        return wait_xfer(ctx, &xfer, "large send into a short receive");
    }
    static const size_t cut[2] = {16, LARGE / 2};
    for (int i = 0; i < 2; i++) {
        memset(data, 0, LARGE);
        CHECK_OK(ctx, ops->recv(ctx->t, 0, (uint64_t)i + 1, data, cut[i], NULL, &xfer));
        int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
        while (!xfer.done && harness_now_ms() < deadline)
            CHECK(ctx, ops->progress(ctx->t) >= 0, "progress failed: %s", ops->error_string(ctx->t));
        CHECK(ctx, xfer.done, "truncated receive %d never completed", i);
        CHECK(ctx, xfer.status == -EMSGSIZE, "truncated receive %d status %d", i, xfer.status);
        CHECK(ctx, xfer.length == cut[i], "truncated receive %d reports %zu bytes", i, xfer.length);
        CHECK(ctx, strstr(ops->error_string(ctx->t), "truncated") != NULL, "error: %s", ops->error_string(ctx->t));
        CHECK(ctx, harness_first_mismatch(data, cut[i], 5) == cut[i], "the kept bytes of receive %d are wrong", i);
        CHECK(ctx, data[cut[i]] == 0, "receive %d wrote past its buffer", i);
    }
    return 0;
}

/*
 * Rank 1 dies while rank 0 floods it with sends: rank 0's send fails with -EPIPE within a few
 * seconds and names rank 1, instead of waiting for ring space forever.
 */
static int scenario_peer_dies(rank_context_t *ctx)
{
    if (ctx->rank == 1) {
        if (barrier(ctx) != 0)
            return -1;
        _exit(0); /* like a kill: no destroy, no progress */
    }
    if (barrier(ctx) != 0)
        return -1;
    uint64_t value = 1;
    wf_xfer_t xfer = {0};
    int64_t start = harness_now_ms();
    int rc = 0;
    for (int i = 0; i < 1000000 && rc == 0; i++)
        rc = ops->send(ctx->t, 1, 3, &value, sizeof(value), NULL, &xfer);
    CHECK(ctx, rc == -EPIPE, "the send to a dead rank returned %d: %s", rc, ops->error_string(ctx->t));
    CHECK(ctx, strstr(ops->error_string(ctx->t), "rank 1") != NULL, "error: %s", ops->error_string(ctx->t));
    CHECK(ctx, harness_now_ms() - start < 10000, "noticing the dead rank took %lld ms", (long long)(harness_now_ms() - start));
    /* The harness's closing barrier would fail, so end here. */
    ops->destroy(ctx->t);
    _exit(0);
}

/*
 * should_stop makes a post that waits for ring space give up with -ECANCELED. Rank 1 blocks on the
 * socket, without progress, until rank 0 is done.
 */
static int scenario_should_stop(rank_context_t *ctx)
{
    uint64_t value = 1;
    wf_xfer_t xfer = {0};
    char token = 'x';
    if (ctx->rank == 1) {
        CHECK(ctx, harness_read_all(ctx->socket, &token, 1) == 0, "rank 0 exited before it finished");
        return barrier(ctx);
    }
    /* should_stop is called only while a post waits, so it may return 1 from the start. */
    ctx->stop = 1;
    int rc = 0;
    for (int i = 0; i < 1000000 && rc == 0; i++)
        rc = ops->send(ctx->t, 1, 3, &value, sizeof(value), NULL, &xfer);
    CHECK(ctx, ctx->t->full_waits == 1, "%llu sends waited", (unsigned long long)ctx->t->full_waits);
    CHECK(ctx, rc == -ECANCELED, "the send returned %d: %s", rc, ops->error_string(ctx->t));
    CHECK(ctx, strstr(ops->error_string(ctx->t), "abandoned") != NULL, "error: %s", ops->error_string(ctx->t));
    ctx->stop = 0;
    CHECK(ctx, harness_write_all(ctx->socket, &token, 1) == 0, "socket write failed");
    return barrier(ctx);
}

/* drain() sends DONE for an RTS that no receive took, so the sender's large send ends with -ECANCELED. */
static int scenario_drain_answers_rts(rank_context_t *ctx)
{
    enum { LARGE = 1 << 20 };
    static uint8_t data[LARGE];
    wf_xfer_t xfer = {0};
    /* After the barrier, rank 1's probe result is published, so the send goes by RTS. */
    if (barrier(ctx) != 0)
        return -1;
    if (ctx->rank == 0) {
        CHECK_OK(ctx, ops->send(ctx->t, 1, 4, data, LARGE, NULL, &xfer));
        CHECK(ctx, !xfer.done, "a send of %d bytes completed before the receiver answered", LARGE);
        int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
        while (!xfer.done && harness_now_ms() < deadline)
            CHECK(ctx, ops->progress(ctx->t) >= 0, "progress failed: %s", ops->error_string(ctx->t));
        CHECK(ctx, xfer.done, "the send did not end within %d s", HARNESS_WAIT_TIMEOUT_SEC);
        CHECK(ctx, xfer.status == -ECANCELED, "the send ended with status %d", xfer.status);
        return barrier(ctx);
    }
    if (progress_for(ctx, 50) != 0)
        return -1;
    ops->drain(ctx->t, 200);
    return barrier(ctx);
}

/* After both ranks connected, neither segment name is left in /dev/shm. */
static int scenario_names_removed(rank_context_t *ctx)
{
    if (barrier(ctx) != 0)
        return -1;
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm%s", ctx->t->name);
    int exists = access(path, F_OK) == 0;
    CHECK(ctx, !exists, "%s still exists after every rank connected", path);
    return 0;
}

/* One rank: argument checks, self sends by ring and by RTS, and the self write. */
static int scenario_one_rank(rank_context_t *ctx)
{
    wf_transport_t *t = ctx->t;
    unsigned char small[4];
    size_t length = sizeof(small);
    CHECK(ctx, ops->get_address(t, small, &length) == -ENOSPC, "4-byte address buffer accepted");
    CHECK(ctx, length == sizeof(wf_shm_address_t), "needed address size %zu not reported", length);
    CHECK(ctx, ops->connect(t, small, 256) == -EINVAL, "second connect accepted");
    uint64_t value = 0x0123456789abcdefull, received = 0;
    wf_xfer_t xfer = {0}, send_xfer = {0};
    CHECK(ctx, ops->send(t, 1, 0, &value, sizeof(value), NULL, &xfer) == -EINVAL, "peer 1 of 1 rank accepted");
    CHECK(ctx, strstr(ops->error_string(t), "peer rank 1") != NULL, "error: %s", ops->error_string(t));
    CHECK(ctx, ops->recv(t, -1, 0, &value, sizeof(value), NULL, &xfer) == -EINVAL, "peer -1 accepted");
    CHECK(ctx, ops->send(t, 0, 0, &value, sizeof(value), NULL, NULL) == -EINVAL, "NULL xfer accepted");
    CHECK(ctx, ops->send(t, 0, 0, NULL, 8, NULL, &xfer) == -EINVAL, "NULL buffer accepted");
    size_t too_long = ops->max_message_size(t) + 1;
    CHECK(ctx, ops->write(t, 0, &value, too_long, NULL, 0, 0, 1, &xfer) == -EMSGSIZE, "oversized write accepted");
    wf_mr_t mr;
    CHECK(ctx, ops->mr_register(t, &value, 0, &mr) == -EINVAL, "empty region accepted");

    CHECK_OK(ctx, ops->recv(t, 0, 42, &received, sizeof(received), NULL, &xfer));
    CHECK_OK(ctx, ops->send(t, 0, 42, &value, sizeof(value), NULL, &send_xfer));
    if (wait_xfer(ctx, &send_xfer, "self send") != 0 || wait_xfer(ctx, &xfer, "self receive") != 0)
        return -1;
    CHECK(ctx, received == value, "self receive holds 0x%016llx", (unsigned long long)received);

    enum { LARGE = 3 << 20 };
    uint8_t *source = malloc(LARGE), *sink = calloc(LARGE, 1);
    CHECK(ctx, source != NULL, "malloc of %d bytes failed", LARGE);
    CHECK(ctx, sink != NULL, "calloc of %d bytes failed", LARGE);
    harness_fill_pattern(source, LARGE, 3);
    CHECK_OK(ctx, ops->send(t, 0, 43, source, LARGE, NULL, &send_xfer));
    CHECK_OK(ctx, ops->recv(t, 0, 43, sink, LARGE, NULL, &xfer));
    if (wait_xfer(ctx, &xfer, "large self receive") != 0 || wait_xfer(ctx, &send_xfer, "large self send") != 0)
        return -1;
    CHECK(ctx, harness_first_mismatch(sink, LARGE, 3) == LARGE, "large self message is wrong");

    memset(sink, 0, LARGE);
    CHECK_OK(ctx, ops->mr_register(t, sink, LARGE, &mr));
    uint64_t key = 0, address = ops->remote_address(t, &mr, sink, 0, &key);
    CHECK_OK(ctx, ops->write(t, 0, source, LARGE, NULL, address, key, 9, &xfer));
    if (wait_immediates(ctx, 1) != 0)
        return -1;
    CHECK(ctx, ctx->immediates[0] == 9, "self write raised 0x%x", ctx->immediates[0]);
    CHECK(ctx, harness_first_mismatch(sink, LARGE, 3) == LARGE, "self write is wrong");
    CHECK_OK(ctx, ops->mr_deregister(t, &mr));
    CHECK(ctx, ops->mr_deregister(t, &mr) == -EINVAL, "second deregistration accepted");
    free(source);
    free(sink);
    return 0;
}

/* A file named like a segment of this pid, left by a dead process, is removed at the first create. */
static void test_stale_segment_removed(void **state)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char name[96];
        snprintf(name, sizeof(name), "/weft-shm-%d-7-0-00000000000000aa", (int)getpid());
        int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
        if (fd < 0)
            _exit(2);
        close(fd);
        wf_transport_config_t config = {.rank = 0, .nranks = 1};
        wf_transport_t *t = NULL;
        char err[512] = "";
        if (ops->create(&config, &t, err, sizeof(err)) != 0)
            _exit(3);
        int removed = shm_open(name, O_RDWR, 0) < 0 && errno == ENOENT;
        ops->destroy(t);
        if (!removed)
            shm_unlink(name);
        _exit(removed ? 0 : 4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_ring_capacity_bounds(void **state)
{
    assert_int_equal(wf_shm_ring_capacity(2), 256 << 10);
    assert_int_equal(wf_shm_ring_capacity(64), 256 << 10);
    assert_int_equal(wf_shm_ring_capacity(65), 128 << 10);
    assert_int_equal(wf_shm_ring_capacity(257), 32 << 10);
    assert_int_equal(wf_shm_ring_capacity(1024), 16 << 10);
    /* Rings of one segment stay within the budget from 64 ranks on. */
    for (int n = 64; n <= WF_SHM_MAX_RANKS; n++)
        assert_true((uint64_t)n * wf_shm_ring_capacity(n) <= WF_SHM_RING_BUDGET);
}

static void test_too_many_ranks_rejected(void **state)
{
    wf_transport_config_t config = {.rank = 0, .nranks = WF_SHM_MAX_RANKS + 1};
    wf_transport_t *t = NULL;
    char err[512] = "";
    assert_int_equal(ops->create(&config, &t, err, sizeof(err)), -E2BIG);
    assert_null(t);
    assert_non_null(strstr(err, "WEFT_TRANSPORT=ofi"));
}

static void test_one_rank(void **state) { run_ranks(1, 0, scenario_one_rank); }
static void test_one_rank_without_cma(void **state) { run_ranks(1, 1, scenario_one_rank); }
static void test_tagged_sizes(void **state) { run_ranks(2, 0, scenario_tagged_sizes); }
static void test_tagged_sizes_without_cma(void **state) { run_ranks(2, 1, scenario_tagged_sizes); }
static void test_tag_order(void **state) { run_ranks(2, 0, scenario_tag_order); }
static void test_tag_order_without_cma(void **state) { run_ranks(2, 1, scenario_tag_order); }
static void test_receive_from_any(void **state) { run_ranks(2, 0, scenario_receive_from_any); }
static void test_write(void **state) { run_ranks(2, 0, scenario_write); }
static void test_write_without_cma(void **state) { run_ranks(2, 1, scenario_write); }
static void test_write_outside_region(void **state) { run_ranks(2, 0, scenario_write_outside_region); }
static void test_full_ring(void **state) { run_ranks(2, 0, scenario_full_ring); }
static void test_truncated(void **state) { run_ranks(2, 0, scenario_truncated); }
static void test_truncated_without_cma(void **state) { run_ranks(2, 1, scenario_truncated); }
static void test_peer_dies(void **state) { run_ranks(2, 0, scenario_peer_dies); }
static void test_should_stop(void **state) { run_ranks(2, 0, scenario_should_stop); }
static void test_drain_answers_rts(void **state) { run_ranks(2, 0, scenario_drain_answers_rts); }
static void test_names_removed(void **state) { run_ranks(2, 0, scenario_names_removed); }

int main(void)
{
    char err[512];
    if (wf_param_load(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    wf_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_capacity_bounds),
        cmocka_unit_test(test_too_many_ranks_rejected),
        cmocka_unit_test(test_stale_segment_removed),
        cmocka_unit_test(test_one_rank),
        cmocka_unit_test(test_one_rank_without_cma),
        cmocka_unit_test(test_tagged_sizes),
        cmocka_unit_test(test_tagged_sizes_without_cma),
        cmocka_unit_test(test_tag_order),
        cmocka_unit_test(test_tag_order_without_cma),
        cmocka_unit_test(test_receive_from_any),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_write_without_cma),
        cmocka_unit_test(test_write_outside_region),
        cmocka_unit_test(test_full_ring),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_truncated_without_cma),
        cmocka_unit_test(test_peer_dies),
        cmocka_unit_test(test_should_stop),
        cmocka_unit_test(test_drain_answers_rts),
        cmocka_unit_test(test_names_removed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
