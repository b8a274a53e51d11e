/*
 * weft's verbs transport between two forked ranks on this machine's first RDMA device. The tests
 * cover tagged messages of every protocol (inline, eager, RTS and RDMA READ), more sends than the
 * peer has receive slots, and writes and reads larger than one work request. A write with a key
 * the peer never issued must fail with the verbs status, the peer and the QP in the message.
 *
 * Without an RDMA device every test is skipped, except in a Soft-RoCE guest of tests/roce, which runs
 * this program with WEFT_ROCE_IB_DEVICE set.
 */
#define _GNU_SOURCE
#include <errno.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "param.h"
#include "transport.h"
#include "transport_harness.h"
#include "verbs/verbs.h"

#define SKIP_STATUS 77
#define CHILD_ALARM_SEC 120
#define ADDRESS_STRIDE 256
#define LARGE ((size_t)3 << 20) /* three work requests of WF_VERBS_WR_MAX */
#define BURST (3 * WF_VERBS_RECV_DEPTH)

static const wf_transport_ops_t *ops = &wf_verbs_transport;

typedef struct {
    harness_rank_t h;
    size_t immediates;
    uint32_t last_immediate;
} rank_context_t;

typedef int (*scenario_fn)(rank_context_t *ctx);

#define CHECK(ctx, cond, ...) HARNESS_CHECK(&(ctx)->h, cond, __VA_ARGS__)
#define CHECK_OK(ctx, call)                                                                        \
    do {                                                                                           \
        int check_rc_ = (call);                                                                    \
        CHECK(ctx, check_rc_ == 0, "returned %d: %s", check_rc_, ops->error_string((ctx)->h.t));   \
    } while (0)

static void record_immediate(void *arg, uint32_t immediate)
{
    rank_context_t *ctx = arg;
    ctx->immediates++;
    ctx->last_immediate = immediate;
}

/* A buffer registered for the whole scenario. */
typedef struct {
    uint8_t *data;
    wf_mr_t mr;
} registered_t;

static int registered_alloc(rank_context_t *ctx, registered_t *buffer, size_t length)
{
    buffer->data = calloc(1, length);
    CHECK(ctx, buffer->data != NULL, "cannot allocate %zu bytes", length);
    CHECK_OK(ctx, ops->mr_register(ctx->h.t, buffer->data, length, &buffer->mr));
    return 0;
}

static void registered_free(rank_context_t *ctx, registered_t *buffer)
{
    ops->mr_deregister(ctx->h.t, &buffer->mr);
    free(buffer->data);
}

/* Sizes that cross every protocol boundary: empty, inline, eager, the first RTS size, several work requests. */
static const size_t message_sizes[] = {0, 1, 100, WF_VERBS_EAGER_MAX, WF_VERBS_EAGER_MAX + 1, 65536, LARGE};
#define MESSAGE_SIZES (sizeof(message_sizes) / sizeof(message_sizes[0]))

/* Rank 0 sends every size; rank 1 receives half of them posted first and half after they arrived. */
static int scenario_tagged_sizes(rank_context_t *ctx)
{
    registered_t buffer;
    if (registered_alloc(ctx, &buffer, LARGE) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < MESSAGE_SIZES && rc == 0; i++) {
        size_t length = message_sizes[i];
        wf_xfer_t xfer = {0};
        if (ctx->h.rank == 0) {
            harness_fill_pattern(buffer.data, length, (uint32_t)i);
            CHECK_OK(ctx, ops->send(ctx->h.t, 1, 100 + i, buffer.data, length, buffer.mr.desc, &xfer));
            rc = harness_wait_xfer(&ctx->h, &xfer, "send");
        } else {
            memset(buffer.data, 0, LARGE);
            if (i % 2 == 1 && harness_progress_for(&ctx->h, 50) != 0) /* let it arrive unexpected */
                return -1;
            CHECK_OK(ctx, ops->recv(ctx->h.t, 0, 100 + i, buffer.data, LARGE, buffer.mr.desc, &xfer));
            rc = harness_wait_xfer(&ctx->h, &xfer, "receive");
            CHECK(ctx, xfer.length == length, "size %zu arrived as %zu bytes", length, xfer.length);
            size_t bad = harness_first_mismatch(buffer.data, length, (uint32_t)i);
            CHECK(ctx, bad == length, "size %zu: byte %zu differs", length, bad);
        }
        if (rc == 0)
            rc = harness_barrier(&ctx->h);
    }
    registered_free(ctx, &buffer);
    return rc;
}

/* More sends than the receiver has slots, before it posts any receive: credits must hold them back in order. */
static int scenario_credit_burst(rank_context_t *ctx)
{
    uint64_t values[BURST];
    wf_xfer_t xfers[BURST];
    memset(xfers, 0, sizeof(xfers));
    if (ctx->h.rank == 0) {
        for (size_t i = 0; i < BURST; i++) {
            values[i] = 0x1000 + i;
            CHECK_OK(ctx, ops->send(ctx->h.t, 1, 7, &values[i], sizeof(values[i]), NULL, &xfers[i]));
        }
    } else {
        if (harness_progress_for(&ctx->h, 300) != 0)
            return -1;
        for (size_t i = 0; i < BURST; i++)
            CHECK_OK(ctx, ops->recv(ctx->h.t, 0, 7, &values[i], sizeof(values[i]), NULL, &xfers[i]));
    }
    for (size_t i = 0; i < BURST; i++) {
        if (harness_wait_xfer(&ctx->h, &xfers[i], ctx->h.rank == 0 ? "burst send" : "burst receive") != 0)
            return -1;
        if (ctx->h.rank == 1)
            CHECK(ctx, values[i] == 0x1000 + i, "message %zu holds 0x%llx: order lost", i,
                  (unsigned long long)values[i]);
    }
    return 0;
}

/* Exchange the peer's buffer address and key over the socket. */
static int trade_target(rank_context_t *ctx, registered_t *buffer, uint64_t *remote, uint64_t *key)
{
    uint64_t mine[2];
    mine[0] = ops->remote_address(ctx->h.t, &buffer->mr, buffer->data, 1 - ctx->h.rank, &mine[1]);
    uint64_t theirs[2];
    CHECK(ctx, harness_write_all(ctx->h.socket, mine, sizeof(mine)) == 0, "target send failed");
    CHECK(ctx, harness_read_all(ctx->h.socket, theirs, sizeof(theirs)) == 0, "target receive failed");
    *remote = theirs[0];
    *key = theirs[1];
    return 0;
}

/* Rank 0 writes LARGE bytes with an immediate into rank 1's buffer, then reads them back from there. */
static int scenario_write_and_read(rank_context_t *ctx)
{
    registered_t buffer;
    uint64_t remote = 0, key = 0;
    if (registered_alloc(ctx, &buffer, LARGE) != 0)
        return -1;
    harness_fill_pattern(buffer.data, LARGE, ctx->h.rank == 0 ? 11 : 12);
    int rc = trade_target(ctx, &buffer, &remote, &key);
    if (rc == 0 && ctx->h.rank == 0) {
        wf_xfer_t xfer = {0};
        CHECK_OK(ctx, ops->write(ctx->h.t, 1, buffer.data, LARGE, buffer.mr.desc, remote, key, 0xfeed, &xfer));
        rc = harness_wait_xfer(&ctx->h, &xfer, "write");
        rc = rc == 0 ? harness_barrier(&ctx->h) : rc;
        memset(buffer.data, 0, LARGE);
        CHECK_OK(ctx, ops->read(ctx->h.t, 1, buffer.data, LARGE, buffer.mr.desc, remote, key, &xfer));
        rc = rc == 0 ? harness_wait_xfer(&ctx->h, &xfer, "read") : rc;
        size_t bad = harness_first_mismatch(buffer.data, LARGE, 11);
        CHECK(ctx, bad == LARGE, "read: byte %zu differs from what the write put there", bad);
        rc = rc == 0 ? harness_barrier(&ctx->h) : rc; /* rank 1 keeps its buffer registered until here */
    } else if (rc == 0) {
        int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
        while (ctx->immediates == 0 && harness_now_ms() < deadline)
            CHECK(ctx, ops->progress(ctx->h.t) >= 0, "progress failed: %s", ops->error_string(ctx->h.t));
        CHECK(ctx, ctx->immediates == 1, "%zu immediates arrived, expected 1", ctx->immediates);
        CHECK(ctx, ctx->last_immediate == 0xfeed, "immediate 0x%x, expected 0xfeed", ctx->last_immediate);
        size_t bad = harness_first_mismatch(buffer.data, LARGE, 11);
        CHECK(ctx, bad == LARGE, "write: byte %zu differs", bad);
        rc = harness_barrier(&ctx->h);
        rc = rc == 0 ? harness_barrier(&ctx->h) : rc;
    }
    registered_free(ctx, &buffer);
    return rc;
}

/* Rank 0 writes with a key rank 1 never issued: the write fails, and later posts to rank 1 fail too. */
static int scenario_bad_key(rank_context_t *ctx)
{
    registered_t buffer;
    uint64_t remote = 0, key = 0;
    if (registered_alloc(ctx, &buffer, 4096) != 0 || trade_target(ctx, &buffer, &remote, &key) != 0)
        return -1;
    if (ctx->h.rank == 0) {
        wf_xfer_t xfer = {0};
        CHECK_OK(ctx, ops->write(ctx->h.t, 1, buffer.data, 64, buffer.mr.desc, remote, key ^ 0x5a5a00, 1, &xfer));
        int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
        while (!xfer.done && harness_now_ms() < deadline)
            CHECK(ctx, ops->progress(ctx->h.t) >= 0, "progress failed: %s", ops->error_string(ctx->h.t));
        CHECK(ctx, xfer.done, "the write with a bad key never completed");
        CHECK(ctx, xfer.status != 0, "the write with a bad key succeeded");
        const char *message = ops->error_string(ctx->h.t);
        CHECK(ctx, strstr(message, "RDMA write to rank 1") != NULL, "message names no peer: %s", message);
        CHECK(ctx, strstr(message, "QP 0x") != NULL, "message names no QP: %s", message);
        CHECK(ctx, strstr(message, "verbs status") != NULL, "message has no verbs status: %s", message);
        uint64_t value = 1;
        wf_xfer_t later = {0};
        int send_rc = ops->send(ctx->h.t, 1, 9, &value, sizeof(value), NULL, &later);
        CHECK(ctx, send_rc != 0 || (later.done && later.status != 0), "a send to the failed peer was accepted");
    }
    /* Rank 1 progresses here, so it replies to the connection request and its QP receives the write. */
    int rc = harness_barrier(&ctx->h);
    registered_free(ctx, &buffer);
    return rc;
}

static int connect_ranks(rank_context_t *ctx)
{
    unsigned char addresses[2][ADDRESS_STRIDE];
    memset(addresses, 0, sizeof(addresses));
    size_t length = ADDRESS_STRIDE;
    int peer = 1 - ctx->h.rank;
    CHECK_OK(ctx, ops->get_address(ctx->h.t, addresses[ctx->h.rank], &length));
    CHECK(ctx, harness_write_all(ctx->h.socket, addresses[ctx->h.rank], ADDRESS_STRIDE) == 0, "address send failed");
    CHECK(ctx, harness_read_all(ctx->h.socket, addresses[peer], ADDRESS_STRIDE) == 0, "address receive failed");
    CHECK_OK(ctx, ops->connect(ctx->h.t, addresses, ADDRESS_STRIDE));
    return 0;
}

static int run_rank(int rank, int socket, scenario_fn scenario)
{
    alarm(CHILD_ALARM_SEC);
    signal(SIGPIPE, SIG_IGN);
    rank_context_t ctx = {.h = {.rank = rank, .socket = socket, .ops = ops, .label = "verbs"}};
    wf_transport_config_t config = {.rank = rank, .nranks = 2, .on_remote_write = record_immediate,
                                    .callback_arg = &ctx};
    char err[512] = "";
    int rc = ops->create(&config, &ctx.h.t, err, sizeof(err));
    /* guest-run sets WEFT_ROCE_IB_DEVICE: inside a Soft-RoCE guest a missing device is a failure. */
    if (rc == -ENODEV && getenv("WEFT_ROCE_IB_DEVICE") == NULL) {
        fprintf(stderr, "rank %d: skipping: %s\n", rank, err);
        return SKIP_STATUS;
    }
    if (rc != 0) {
        fprintf(stderr, "rank %d: create failed (%d): %s\n", rank, rc, err);
        return 1;
    }
    rc = connect_ranks(&ctx);
    if (rc == 0)
        rc = scenario(&ctx);
    ops->destroy(ctx.h.t);
    return rc == 0 ? 0 : 1;
}

static void run_ranks(scenario_fn scenario)
{
    int sockets[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets), 0);
    fflush(NULL);
    pid_t pids[2];
    for (int rank = 0; rank < 2; rank++) {
        pids[rank] = fork();
        assert_true(pids[rank] >= 0);
        if (pids[rank] == 0) {
            close(sockets[1 - rank]);
            exit(run_rank(rank, sockets[rank], scenario));
        }
    }
    close(sockets[0]);
    close(sockets[1]);
    int statuses[2];
    for (int rank = 0; rank < 2; rank++) {
        int status = 0;
        assert_int_equal(waitpid(pids[rank], &status, 0), pids[rank]);
        statuses[rank] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (statuses[0] == SKIP_STATUS || statuses[1] == SKIP_STATUS)
        skip();
    assert_int_equal(statuses[0], 0);
    assert_int_equal(statuses[1], 0);
}

static void test_tagged_sizes(void **state) { run_ranks(scenario_tagged_sizes); }
static void test_credit_burst(void **state) { run_ranks(scenario_credit_burst); }
static void test_write_and_read(void **state) { run_ranks(scenario_write_and_read); }
static void test_bad_key_fails_peer(void **state) { run_ranks(scenario_bad_key); }

int main(void)
{
    char err[512];
    if (wf_param_load(err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    wf_log_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tagged_sizes),
        cmocka_unit_test(test_credit_burst),
        cmocka_unit_test(test_write_and_read),
        cmocka_unit_test(test_bad_key_fails_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
