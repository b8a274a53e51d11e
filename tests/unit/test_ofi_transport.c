/*
 * Tests of the libfabric transport with real providers.
 *
 * Each two-rank case forks two processes. They exchange endpoint addresses over a socketpair,
 * connect, run one scenario and report through their exit status. The parent process never
 * initializes libfabric, so no libfabric state crosses a fork. A child exits with SKIP_STATUS when the provider is not offered here,
 * and the case is skipped. The tcp provider is pinned to the loopback interface (FI_TCP_IFACE=lo).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "ofi/ofi.h"
#include "param.h"
#include "transport.h"
#include "transport_harness.h"

#define SKIP_STATUS 77
#define CHILD_ALARM_SEC 60
#define MAX_IMMEDIATES 16

static const wf_transport_ops_t *const ops = &wf_ofi_transport;

typedef struct {
    int rank;
    int nranks;
    int socket;
    const char *provider;
    wf_transport_t *t;
    size_t immediate_count;
    uint32_t immediates[MAX_IMMEDIATES];
    int inside_post;                /* set by the test around send calls */
    size_t immediates_inside_post;  /* callbacks that ran while inside_post was set */
} rank_context_t;

typedef int (*scenario_fn)(rank_context_t *ctx);

#define CHECK(ctx, cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d (%s) line %d: check failed: %s: ", (ctx)->rank,              \
                    (ctx)->provider, __LINE__, #cond);                                             \
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
    if (ctx->inside_post)
        ctx->immediates_inside_post++;
}

/* Describe ctx to the harness helpers, which wait for transfers and barriers. */
static harness_rank_t harness_of(rank_context_t *ctx)
{
    return (harness_rank_t){.rank = ctx->rank, .socket = ctx->socket, .ops = ops, .t = ctx->t, .label = ctx->provider};
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
    unsigned char addresses[2][WF_OFI_ADDRESS_MAX];
    memset(addresses, 0, sizeof(addresses));
    size_t length = WF_OFI_ADDRESS_MAX;
    CHECK_OK(ctx, ops->get_address(ctx->t, addresses[ctx->rank], &length));
    CHECK(ctx, length > 0, "address length is 0");
    CHECK(ctx, length <= WF_OFI_ADDRESS_MAX, "address length %zu exceeds %d", length, WF_OFI_ADDRESS_MAX);
    if (ctx->nranks == 2) {
        int peer = 1 - ctx->rank;
        CHECK(ctx, harness_write_all(ctx->socket, addresses[ctx->rank], WF_OFI_ADDRESS_MAX) == 0, "address send failed");
        CHECK(ctx, harness_read_all(ctx->socket, addresses[peer], WF_OFI_ADDRESS_MAX) == 0, "address receive failed");
    }
    CHECK_OK(ctx, ops->connect(ctx->t, addresses, WF_OFI_ADDRESS_MAX));
    return 0;
}

/* Body of one forked rank; returns its exit status. */
static int run_rank(int rank, int nranks, int socket, const char *provider, scenario_fn scenario)
{
    alarm(CHILD_ALARM_SEC);
    /* A peer that failed closes its socket; report that as a failed check, not a SIGPIPE death. */
    signal(SIGPIPE, SIG_IGN);
    rank_context_t ctx = {.rank = rank, .nranks = nranks, .socket = socket, .provider = provider};
    wf_transport_config_t config = {.rank = rank,
                                    .nranks = nranks,
                                    .single_node = 1,
                                    .provider = provider,
                                    .on_remote_write = record_immediate,
                                    .callback_arg = &ctx};
    char err[512] = "";
    int rc = ops->create(&config, &ctx.t, err, sizeof(err));
    if (rc == -ENOENT) {
        fprintf(stderr, "rank %d: provider %s not offered, skipping: %s\n", rank, provider, err);
        return SKIP_STATUS;
    }
    if (rc != 0) {
        fprintf(stderr, "rank %d: create with provider %s failed (%d): %s\n", rank, provider, rc, err);
        return 1;
    }
    if (strcmp(ops->provider_name(ctx.t), provider) != 0) {
        fprintf(stderr, "rank %d: opened provider %s instead of %s\n", rank, ops->provider_name(ctx.t), provider);
        ops->destroy(ctx.t);
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
static void run_ranks(int nranks, const char *provider, scenario_fn scenario)
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
            exit(run_rank(rank, nranks, sockets[rank], provider, scenario));
        }
    }
    close(sockets[0]);
    close(sockets[1]);

    int statuses[2] = {0, 0};
    int skipped = 0;
    for (int rank = 0; rank < nranks; rank++) {
        int status = 0;
        assert_int_equal(waitpid(pids[rank], &status, 0), pids[rank]);
        if (WIFSIGNALED(status))
            fprintf(stderr, "rank %d was killed by signal %d\n", rank, WTERMSIG(status));
        statuses[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        skipped |= statuses[rank] == SKIP_STATUS;
    }
    if (skipped)
        skip();
    assert_int_equal(statuses[0], 0);
    if (nranks == 2)
        assert_int_equal(statuses[1], 0);
}

/* A buffer of length bytes (at least 1) registered with the transport for the whole scenario. */
typedef struct {
    uint8_t *data;
    wf_mr_t mr;
} registered_buffer_t;

static int buffer_create(rank_context_t *ctx, registered_buffer_t *buffer, size_t length)
{
    buffer->data = calloc(length > 0 ? length : 1, 1);
    CHECK(ctx, buffer->data != NULL, "calloc of %zu bytes failed", length);
    CHECK_OK(ctx, ops->mr_register(ctx->t, buffer->data, length > 0 ? length : 1, &buffer->mr));
    return 0;
}

static int buffer_destroy(rank_context_t *ctx, registered_buffer_t *buffer)
{
    CHECK_OK(ctx, ops->mr_deregister(ctx->t, &buffer->mr));
    free(buffer->data);
    return 0;
}

/*
 * Rank 0 sends length bytes with tag to rank 1. With unexpected set, the send is posted and
 * rank 1 progresses for a while before posting its receive, so the message arrives first.
 */
static int exchange_tagged(rank_context_t *ctx, size_t length, uint64_t tag, int unexpected)
{
    uint32_t seed = (uint32_t)(length * 7 + (size_t)unexpected);
    registered_buffer_t buffer;
    if (buffer_create(ctx, &buffer, length) != 0)
        return -1;
    wf_xfer_t xfer = {0};
    char operation[96];
    snprintf(operation, sizeof(operation), "%s tagged %s of %zu bytes", unexpected ? "unexpected" : "expected",
             ctx->rank == 0 ? "send" : "receive", length);

    if (ctx->rank == 0) {
        harness_fill_pattern(buffer.data, length, seed);
        if (!unexpected && barrier(ctx) != 0) /* the receive is posted */
            return -1;
        CHECK_OK(ctx, ops->send(ctx->t, 1, tag, buffer.data, length, buffer.mr.desc, &xfer));
        if (unexpected && barrier(ctx) != 0) /* the send is posted */
            return -1;
        if (wait_xfer(ctx, &xfer, operation) != 0)
            return -1;
    } else {
        if (unexpected) {
            if (barrier(ctx) != 0 || progress_for(ctx, 50) != 0)
                return -1;
        }
        CHECK_OK(ctx, ops->recv(ctx->t, 0, tag, buffer.data, length, buffer.mr.desc, &xfer));
        if (!unexpected && barrier(ctx) != 0)
            return -1;
        if (wait_xfer(ctx, &xfer, operation) != 0)
            return -1;
        CHECK(ctx, xfer.length == length, "%s: received %zu bytes", operation, xfer.length);
        size_t bad = harness_first_mismatch(buffer.data, length, seed);
        CHECK(ctx, bad == length, "%s: byte %zu is 0x%02x, expected 0x%02x", operation, bad, buffer.data[bad],
              harness_pattern_byte(seed, bad));
    }
    return buffer_destroy(ctx, &buffer);
}

/* Two receives with different tags, sent in the opposite order: each must match its own tag. */
static int check_tag_matching(rank_context_t *ctx)
{
    const uint64_t tag_a = 0x00ab000000000001ull, tag_b = 0x00ab000000000002ull;
    uint64_t a = 0, b = 0;
    wf_xfer_t xa = {0}, xb = {0};
    if (ctx->rank == 1) {
        CHECK_OK(ctx, ops->recv(ctx->t, 0, tag_a, &a, sizeof(a), NULL, &xa));
        CHECK_OK(ctx, ops->recv(ctx->t, 0, tag_b, &b, sizeof(b), NULL, &xb));
        if (barrier(ctx) != 0 || wait_xfer(ctx, &xa, "receive tag a") || wait_xfer(ctx, &xb, "receive tag b"))
            return -1;
        CHECK(ctx, a == 0x1111111111111111ull, "tag a buffer holds 0x%016llx", (unsigned long long)a);
        CHECK(ctx, b == 0x2222222222222222ull, "tag b buffer holds 0x%016llx", (unsigned long long)b);
    } else {
        a = 0x1111111111111111ull;
        b = 0x2222222222222222ull;
        if (barrier(ctx) != 0)
            return -1;
        CHECK_OK(ctx, ops->send(ctx->t, 1, tag_b, &b, sizeof(b), NULL, &xb));
        CHECK_OK(ctx, ops->send(ctx->t, 1, tag_a, &a, sizeof(a), NULL, &xa));
        if (wait_xfer(ctx, &xb, "send tag b") || wait_xfer(ctx, &xa, "send tag a"))
            return -1;
    }
    return 0;
}

/*
 * recv_any: a receive from any rank, posted before the messages arrive, matches every tag bit
 * outside the ignore mask. Rank 0 sends a message whose tag differs outside the mask, then one
 * that differs only inside it (another sender field); the receive must take the second, and the
 * first must still be there for a receive of its own tag.
 */
static int scenario_receive_from_any(rank_context_t *ctx)
{
    const uint64_t base = 0x0000000060000000ull, ignore = 0xfffffull;
    const uint64_t other_kind = 0x0000000070000000ull, sender_field = 0x00000000000abcdeull;
    uint64_t value = 0;
    wf_xfer_t xfer = {0};
    if (ctx->rank == 1) {
        CHECK_OK(ctx, ops->recv_any(ctx->t, base, ignore, &value, sizeof(value), NULL, &xfer));
        if (barrier(ctx) != 0 || wait_xfer(ctx, &xfer, "receive from any rank") != 0)
            return -1;
        CHECK(ctx, xfer.length == sizeof(value), "received %zu bytes", xfer.length);
        CHECK(ctx, value == 0x2222222222222222ull, "the receive took 0x%016llx, not the message inside the mask",
              (unsigned long long)value);
        /* Directed: shm of libfabric 1.17 never matches a message that is already there to a receive with ignore bits. */
        CHECK_OK(ctx, ops->recv(ctx->t, 0, other_kind | sender_field, &value, sizeof(value), NULL, &xfer));
        if (wait_xfer(ctx, &xfer, "second receive from any rank") != 0)
            return -1;
        CHECK(ctx, value == 0x1111111111111111ull, "the second receive took 0x%016llx", (unsigned long long)value);
    } else {
        uint64_t outside = 0x1111111111111111ull, inside = 0x2222222222222222ull;
        wf_xfer_t first = {0};
        if (barrier(ctx) != 0)
            return -1;
        CHECK_OK(ctx, ops->send(ctx->t, 1, other_kind | sender_field, &outside, sizeof(outside), NULL, &first));
        CHECK_OK(ctx, ops->send(ctx->t, 1, base | sender_field, &inside, sizeof(inside), NULL, &xfer));
        if (wait_xfer(ctx, &first, "send outside the mask") != 0 || wait_xfer(ctx, &xfer, "send inside the mask"))
            return -1;
    }
    return 0;
}

static int scenario_tagged_sizes(rank_context_t *ctx)
{
    static const size_t sizes[] = {8, 60 * 1024, 8 * 1024 * 1024};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        /* Tags use the top of the 56 bits callers may use, to catch providers that drop high bits. */
        uint64_t tag = 0x00f0000000000000ull | sizes[i];
        if (exchange_tagged(ctx, sizes[i], tag, 0) != 0)
            return -1;
        if (exchange_tagged(ctx, sizes[i], tag | 0x0001000000000000ull, 1) != 0)
            return -1;
    }
    return check_tag_matching(ctx);
}

/* Wait until at least count immediates arrived on this rank. */
static int wait_immediates(rank_context_t *ctx, size_t count)
{
    int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
    while (ctx->immediate_count < count) {
        int rc = ops->progress(ctx->t);
        CHECK(ctx, rc >= 0, "progress returned %d: %s", rc, ops->error_string(ctx->t));
        CHECK(ctx, harness_now_ms() < deadline, "only %zu of %zu immediates arrived within %d s",
              ctx->immediate_count, count, HARNESS_WAIT_TIMEOUT_SEC);
    }
    return 0;
}

/*
 * Rank 0 writes 8 MiB into rank 1's registered buffer with immediate 0xabcd1234, then 4096 bytes
 * at an odd offset with immediate 7, then 0 bytes with immediate 0x55. Rank 1 checks each
 * callback arrives once, and reads the data only after it.
 */
static int scenario_rdma_write(rank_context_t *ctx)
{
    const size_t length = 8 * 1024 * 1024, offset = 1024 * 1024 + 3, small = 4096;
    registered_buffer_t buffer;
    if (buffer_create(ctx, &buffer, length) != 0)
        return -1;
    uint64_t target[2]; /* remote address of the buffer start, key */

    if (ctx->rank == 1) {
        target[0] = ops->remote_address(ctx->t, &buffer.mr, buffer.data, 0, &target[1]);
        uint64_t key = 0;
        uint64_t at_offset = ops->remote_address(ctx->t, &buffer.mr, buffer.data + offset, 0, &key);
        CHECK(ctx, at_offset - target[0] == offset, "remote_address is not linear: %llu - %llu",
              (unsigned long long)at_offset, (unsigned long long)target[0]);
        CHECK(ctx, harness_write_all(ctx->socket, target, sizeof(target)) == 0, "key send failed");

        if (wait_immediates(ctx, 1) != 0)
            return -1;
        CHECK(ctx, ctx->immediates[0] == 0xabcd1234u, "immediate 0x%08x", ctx->immediates[0]);
        size_t bad = harness_first_mismatch(buffer.data, length, 1);
        CHECK(ctx, bad == length, "byte %zu is 0x%02x, expected 0x%02x", bad, buffer.data[bad], harness_pattern_byte(1, bad));
        if (barrier(ctx) != 0) /* rank 0 may post the next write */
            return -1;

        if (wait_immediates(ctx, 3) != 0 || progress_for(ctx, 50) != 0)
            return -1;
        CHECK(ctx, ctx->immediate_count == 3, "%zu immediates instead of 3", ctx->immediate_count);
        CHECK(ctx, ctx->immediates[1] == 7u, "second immediate 0x%08x", ctx->immediates[1]);
        CHECK(ctx, ctx->immediates[2] == 0x55u, "third immediate 0x%08x", ctx->immediates[2]);
        bad = harness_first_mismatch(buffer.data + offset, small, 2);
        CHECK(ctx, bad == small, "byte %zu after offset %zu is wrong", bad, offset);
        CHECK(ctx, buffer.data[offset - 1] == harness_pattern_byte(1, offset - 1), "byte before the small write changed");
        CHECK(ctx, buffer.data[offset + small] == harness_pattern_byte(1, offset + small), "byte after it changed");
    } else {
        CHECK(ctx, harness_read_all(ctx->socket, target, sizeof(target)) == 0, "key receive failed");
        harness_fill_pattern(buffer.data, length, 1);
        wf_xfer_t xfer = {0};
        CHECK_OK(ctx, ops->write(ctx->t, 1, buffer.data, length, buffer.mr.desc, target[0], target[1],
                                 0xabcd1234u, &xfer));
        if (wait_xfer(ctx, &xfer, "RDMA write of 8 MiB") != 0 || barrier(ctx) != 0)
            return -1;

        harness_fill_pattern(buffer.data, small, 2);
        CHECK_OK(ctx, ops->write(ctx->t, 1, buffer.data, small, buffer.mr.desc, target[0] + offset, target[1],
                                 7u, &xfer));
        if (wait_xfer(ctx, &xfer, "RDMA write of 4096 bytes") != 0)
            return -1;
        CHECK_OK(ctx, ops->write(ctx->t, 1, buffer.data, 0, buffer.mr.desc, target[0], target[1], 0x55u, &xfer));
        if (wait_xfer(ctx, &xfer, "RDMA write of 0 bytes") != 0)
            return -1;
        CHECK(ctx, ctx->immediate_count == 0, "the writer received %zu immediates", ctx->immediate_count);
    }
    return buffer_destroy(ctx, &buffer);
}

/* Remote buffer that rank 1 writes into during the flood, and the source it writes from. */
typedef struct {
    uint64_t address, key;
    registered_buffer_t local;
} flood_writes_t;

enum { FLOOD_WRITES = 4 };

/*
 * count small sends back to back. Rank 1 pre-posts count / 2 receives when prepost is set, then
 * sleeps pause_ms without progress, so with a large count the provider's queues fill and rank 0
 * must retry on FI_EAGAIN. With writes set, rank 1 first posts FLOOD_WRITES writes with
 * immediates into rank 0, which reads them while it retries. The remaining receives are posted
 * with at most WINDOW outstanding, below the receive queue size of shm (1024) and
 * tcp;ofi_rxm (2048).
 */
static int exchange_small(rank_context_t *ctx, int count, int prepost, int pause_ms, flood_writes_t *writes,
                          uint64_t *values, wf_xfer_t *xfers)
{
    enum { WINDOW = 256 };
    const uint64_t multiplier = 0x9E3779B97F4A7C15ull;
    if (ctx->rank == 1) {
        int posted = prepost ? count / 2 : 0;
        for (int i = 0; i < posted; i++)
            CHECK_OK(ctx, ops->recv(ctx->t, 0, (uint64_t)i, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        if (barrier(ctx) != 0)
            return -1;
        wf_xfer_t write_xfers[FLOOD_WRITES];
        for (int w = 0; writes != NULL && w < FLOOD_WRITES; w++)
            CHECK_OK(ctx, ops->write(ctx->t, 0, writes->local.data + 8 * w, 8, writes->local.mr.desc,
                                     writes->address + 8 * (uint64_t)w, writes->key, 100u + (uint32_t)w,
                                     &write_xfers[w]));
        usleep((useconds_t)pause_ms * 1000);
        if (progress_for(ctx, 50) != 0)
            return -1;
        for (int w = 0; writes != NULL && w < FLOOD_WRITES; w++)
            if (wait_xfer(ctx, &write_xfers[w], "write during the flood") != 0)
                return -1;
        for (int i = posted; i < count; i++) {
            if (i - posted >= WINDOW && wait_xfer(ctx, &xfers[i - WINDOW], "small receive") != 0)
                return -1;
            CHECK_OK(ctx, ops->recv(ctx->t, 0, (uint64_t)i, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        }
        for (int i = 0; i < count; i++) {
            if (wait_xfer(ctx, &xfers[i], "small receive") != 0)
                return -1;
            CHECK(ctx, xfers[i].length == sizeof(uint64_t), "receive %d got %zu bytes", i, xfers[i].length);
            CHECK(ctx, values[i] == (uint64_t)i * multiplier, "receive %d holds 0x%016llx", i,
                  (unsigned long long)values[i]);
        }
    } else {
        for (int i = 0; i < count; i++)
            values[i] = (uint64_t)i * multiplier;
        if (barrier(ctx) != 0)
            return -1;
        ctx->inside_post = 1;
        for (int i = 0; i < count; i++)
            CHECK_OK(ctx, ops->send(ctx->t, 1, (uint64_t)i, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        ctx->inside_post = 0;
        for (int i = 0; i < count; i++)
            if (wait_xfer(ctx, &xfers[i], "small send") != 0)
                return -1;
    }
    return 0;
}

/* Rank 0 checks the flood writes: each immediate once, outside send(), and the data in place. */
static int check_flood_writes(rank_context_t *ctx, const flood_writes_t *writes)
{
    if (wait_immediates(ctx, FLOOD_WRITES) != 0 || progress_for(ctx, 20) != 0)
        return -1;
    CHECK(ctx, ctx->immediate_count == FLOOD_WRITES, "%zu immediates instead of %d", ctx->immediate_count,
          FLOOD_WRITES);
    CHECK(ctx, ctx->immediates_inside_post == 0, "%zu immediates were delivered inside send()",
          ctx->immediates_inside_post);
    for (int w = 0; w < FLOOD_WRITES; w++) {
        CHECK(ctx, ctx->immediates[w] == 100u + (uint32_t)w, "immediate %d is %u", w, ctx->immediates[w]);
        size_t bad = harness_first_mismatch(writes->local.data + 8 * w, 8, 3 + (uint32_t)w);
        CHECK(ctx, bad == 8, "byte %zu of write %d is wrong", bad, w);
    }
    return 0;
}

static int scenario_small_sends(rank_context_t *ctx)
{
    enum { COUNT = 1000, FLOOD_COUNT = 8192 };
    static uint64_t values[FLOOD_COUNT];
    static wf_xfer_t xfers[FLOOD_COUNT];
    if (exchange_small(ctx, COUNT, 1, 0, NULL, values, xfers) != 0 || barrier(ctx) != 0)
        return -1;

    flood_writes_t writes;
    if (buffer_create(ctx, &writes.local, 8 * FLOOD_WRITES) != 0)
        return -1;
    if (ctx->rank == 0) {
        uint64_t target[2];
        target[0] = ops->remote_address(ctx->t, &writes.local.mr, writes.local.data, 1, &target[1]);
        CHECK(ctx, harness_write_all(ctx->socket, target, sizeof(target)) == 0, "key send failed");
    } else {
        uint64_t target[2];
        CHECK(ctx, harness_read_all(ctx->socket, target, sizeof(target)) == 0, "key receive failed");
        writes.address = target[0];
        writes.key = target[1];
        for (int w = 0; w < FLOOD_WRITES; w++)
            harness_fill_pattern(writes.local.data + 8 * w, 8, 3 + (uint32_t)w);
    }

    uint64_t retries_before = ctx->t->eagain_retries;
    if (exchange_small(ctx, FLOOD_COUNT, 0, 200, &writes, values, xfers) != 0)
        return -1;
    /* shm's queues of 1024 entries always fill; tcp;ofi_rxm on loopback sometimes buffers every send. */
    if (ctx->rank == 0 && strcmp(ctx->provider, "shm") == 0)
        CHECK(ctx, ctx->t->eagain_retries > retries_before,
              "%d sends to a paused peer never met FI_EAGAIN, so the retry path did not run", FLOOD_COUNT);
    if (ctx->rank == 0 && check_flood_writes(ctx, &writes) != 0)
        return -1;
    if (barrier(ctx) != 0)
        return -1;
    return buffer_destroy(ctx, &writes.local);
}

/* One rank, connected to itself: argument checks, a self send, and a truncated receive. */
static int scenario_bad_arguments(rank_context_t *ctx)
{
    wf_transport_t *t = ctx->t;
    unsigned char small[4];
    size_t length = sizeof(small);
    CHECK(ctx, ops->get_address(t, small, &length) == -ENOSPC, "4-byte address buffer accepted");
    CHECK(ctx, length > sizeof(small), "needed address size %zu not reported", length);
    CHECK(ctx, ops->connect(t, small, 256) == -EINVAL, "second connect accepted");

    uint64_t value = 0x0123456789abcdefull, received = 0;
    wf_xfer_t xfer = {0};
    CHECK(ctx, ops->send(t, 1, 0, &value, sizeof(value), NULL, &xfer) == -EINVAL, "peer 1 of 1 rank accepted");
    CHECK(ctx, strstr(ops->error_string(t), "peer rank 1") != NULL, "error: %s", ops->error_string(t));
    CHECK(ctx, ops->recv(t, -1, 0, &value, sizeof(value), NULL, &xfer) == -EINVAL, "peer -1 accepted");
    CHECK(ctx, ops->send(t, 0, 0, &value, sizeof(value), NULL, NULL) == -EINVAL, "NULL xfer accepted");
    size_t too_long = ops->max_message_size(t) + 1;
    CHECK(ctx, ops->write(t, 0, &value, too_long, NULL, 0, 0, 1, &xfer) == -EMSGSIZE, "oversized write accepted");
    CHECK(ctx, strstr(ops->error_string(t), "maximum message size") != NULL, "error: %s", ops->error_string(t));
    wf_mr_t mr;
    CHECK(ctx, ops->mr_register(t, &value, 0, &mr) == -EINVAL, "empty region accepted");

    CHECK_OK(ctx, ops->recv(t, 0, 42, &received, sizeof(received), NULL, &xfer));
    wf_xfer_t send_xfer = {0};
    CHECK_OK(ctx, ops->send(t, 0, 42, &value, sizeof(value), NULL, &send_xfer));
    if (wait_xfer(ctx, &send_xfer, "self send") != 0 || wait_xfer(ctx, &xfer, "self receive") != 0)
        return -1;
    CHECK(ctx, received == value, "self receive holds 0x%016llx", (unsigned long long)received);

    uint8_t big[64], tiny[16];
    memset(big, 0x5a, sizeof(big));
    CHECK_OK(ctx, ops->recv(t, 0, 43, tiny, sizeof(tiny), NULL, &xfer));
    CHECK_OK(ctx, ops->send(t, 0, 43, big, sizeof(big), NULL, &send_xfer));
    int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
    while (!xfer.done && harness_now_ms() < deadline)
        CHECK(ctx, ops->progress(t) >= 0, "progress failed: %s", ops->error_string(t));
    CHECK(ctx, xfer.done, "truncated receive never completed");
    CHECK(ctx, xfer.status == -EMSGSIZE, "truncated receive status %d", xfer.status);
    CHECK(ctx, strstr(ops->error_string(t), "truncated") != NULL, "error: %s", ops->error_string(t));
    return wait_xfer(ctx, &send_xfer, "send into a short receive");
}

static int run_unknown_provider(void)
{
    wf_transport_config_t config = {.rank = 0, .nranks = 1, .provider = "nosuch;ofi_rxm"};
    wf_transport_t *t = NULL;
    char err[512] = "";
    int rc = ops->create(&config, &t, err, sizeof(err));
    if (rc != -ENOENT || t != NULL) {
        fprintf(stderr, "create with an unknown provider returned %d\n", rc);
        return 1;
    }
    if (strstr(err, "\"nosuch;ofi_rxm\"") == NULL || strstr(err, "WEFT_OFI_PROVIDER") == NULL) {
        fprintf(stderr, "message names neither the provider nor the variable: %s\n", err);
        return 1;
    }
    config.rank = 1;
    rc = ops->create(&config, &t, err, sizeof(err));
    if (rc != -EINVAL || strstr(err, "rank 1") == NULL) {
        fprintf(stderr, "rank 1 of 1 returned %d: %s\n", rc, err);
        return 1;
    }
    return 0;
}

static void test_unknown_provider_rejected(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exit(run_unknown_provider());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int run_print_providers(void)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out == NULL)
        return 1;
    wf_ofi_print_providers(out);
    fclose(out);
    int rc = 0;
    /* shm offers exactly one fabric and domain here, named after itself, without FI_MR_LOCAL. */
    const char *shm_line = strncmp(text, "shm ", 4) == 0 ? text : strstr(text, "\nshm ");
    if (shm_line != NULL && shm_line != text)
        shm_line++;
    if (shm_line == NULL) {
        fprintf(stderr, "no line for shm in:\n%s", text);
        rc = 1;
    } else if (strstr(shm_line, "fabric shm ") == NULL || strstr(shm_line, "no FI_MR_LOCAL\n") == NULL) {
        fprintf(stderr, "unexpected shm line in:\n%s", text);
        rc = 1;
    } else if (strstr(shm_line, "\nshm ") != NULL) {
        fprintf(stderr, "shm is listed twice:\n%s", text);
        rc = 1;
    }
    free(text);
    return rc;
}

static void test_print_providers_lists_shm(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        exit(run_print_providers());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_provider_choice(void **state)
{
    const char *reason = NULL;
    const char *local[] = {"shm", "tcp;ofi_rxm"};
    assert_int_equal(wf_ofi_choose_provider(local, 2, NULL, 1, &reason), 0);
    assert_int_equal(wf_ofi_choose_provider(local, 2, "", 0, &reason), 1);
    assert_int_equal(wf_ofi_choose_provider(local, 2, "tcp;ofi_rxm", 1, &reason), 1);
    assert_int_equal(wf_ofi_choose_provider(local, 2, "tcp", 0, &reason), -1);

    const char *cluster[] = {"shm", "tcp;ofi_rxm", "cxi", "efa", "verbs;ofi_rxm"};
    assert_int_equal(wf_ofi_choose_provider(cluster, 5, NULL, 0, &reason), 4);
    assert_int_equal(wf_ofi_choose_provider(cluster, 4, NULL, 0, &reason), 3);
    assert_int_equal(wf_ofi_choose_provider(cluster, 3, NULL, 0, &reason), 2);

    const char *others[] = {"sockets", "udp;ofi_rxd", "net", "psm2"};
    assert_int_equal(wf_ofi_choose_provider(others, 4, NULL, 0, &reason), 2);
    assert_int_equal(wf_ofi_choose_provider(others, 2, NULL, 0, &reason), -1);

    const char *network_only[] = {"tcp;ofi_rxm"};
    assert_int_equal(wf_ofi_choose_provider(network_only, 1, NULL, 1, &reason), 0);
}

static void test_tag_bits_from_format(void **state)
{
    assert_int_equal(wf_ofi_tag_bits(0xaaaaaaaaaaaaaaaaull), 64);
    assert_int_equal(wf_ofi_tag_bits(0x30ff), 14);
    assert_int_equal(wf_ofi_tag_bits(0x00ffffffffffffffull), 56);
    assert_int_equal(wf_ofi_tag_bits(1), 1);
    assert_int_equal(wf_ofi_tag_bits(0), 64);
}

static void test_shm_tagged_sizes(void **state) { run_ranks(2, "shm", scenario_tagged_sizes); }
static void test_tcp_tagged_sizes(void **state) { run_ranks(2, "tcp;ofi_rxm", scenario_tagged_sizes); }
static void test_shm_rdma_write(void **state) { run_ranks(2, "shm", scenario_rdma_write); }
static void test_tcp_rdma_write(void **state) { run_ranks(2, "tcp;ofi_rxm", scenario_rdma_write); }
static void test_shm_small_sends(void **state) { run_ranks(2, "shm", scenario_small_sends); }
static void test_tcp_small_sends(void **state) { run_ranks(2, "tcp;ofi_rxm", scenario_small_sends); }
static void test_shm_receive_from_any(void **state) { run_ranks(2, "shm", scenario_receive_from_any); }
static void test_tcp_receive_from_any(void **state) { run_ranks(2, "tcp;ofi_rxm", scenario_receive_from_any); }
static void test_shm_bad_arguments(void **state) { run_ranks(1, "shm", scenario_bad_arguments); }
static void test_tcp_bad_arguments(void **state) { run_ranks(1, "tcp;ofi_rxm", scenario_bad_arguments); }

int main(void)
{
    /* Keep tcp traffic on the loopback interface whatever other interfaces the machine has. */
    setenv("FI_TCP_IFACE", "lo", 1);
    /* WEFT_DEBUG=INFO shows the transport's provider choice while the tests run. */
    char err[512];
    if (wf_param_load(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    wf_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_choice),
        cmocka_unit_test(test_tag_bits_from_format),
        cmocka_unit_test(test_unknown_provider_rejected),
        cmocka_unit_test(test_print_providers_lists_shm),
        cmocka_unit_test(test_shm_bad_arguments),
        cmocka_unit_test(test_tcp_bad_arguments),
        cmocka_unit_test(test_shm_tagged_sizes),
        cmocka_unit_test(test_tcp_tagged_sizes),
        cmocka_unit_test(test_shm_rdma_write),
        cmocka_unit_test(test_tcp_rdma_write),
        cmocka_unit_test(test_shm_small_sends),
        cmocka_unit_test(test_tcp_small_sends),
        cmocka_unit_test(test_shm_receive_from_any),
        cmocka_unit_test(test_tcp_receive_from_any),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
