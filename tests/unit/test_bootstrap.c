/*
 * Bootstrap with real processes on 127.0.0.1: every test forks one child per rank, each child
 * reports through its exit code (0 = all checks passed; a failed check prints its line on
 * stderr), and the parent kills by PID any child that overruns its limit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap/bootstrap.h"
#include "bootstrap/frame.h"
#include "bootstrap/internal.h"
#include "bootstrap/socket.h"
#include "param.h"

#define MAX_RANKS 8
#define CHILD_LIMIT_MS 15000 /* a child still running after this is killed and the test fails */

typedef struct {
    char root[64];     /* WEFT_ROOT value */
    int nranks;        /* WEFT_SIZE of every rank unless size_of_rank is set */
    int timeout_s;
    const char *key;   /* WEFT_JOB_KEY, NULL: unset */
    int64_t start_ms;  /* CLOCK_MONOTONIC time the parent forked, shared by all children */
    int size_of_rank[MAX_RANKS]; /* per-rank WEFT_SIZE override when not 0 */
    const weft_unique_id_t *id;
    int rank0_destroy_delay_ms; /* rank 0 waits this long before each destroy */
} job_t;

typedef int (*rank_body_t)(int rank, const job_t *job);

#define CHECK(condition, ...)                                                                                      \
    do {                                                                                                           \
        if (!(condition)) {                                                                                        \
            fprintf(stderr, "rank %d: line %d: check failed: %s: ", rank, __LINE__, #condition);                  \
            fprintf(stderr, __VA_ARGS__);                                                                          \
            fprintf(stderr, "\n");                                                                                 \
            return 1;                                                                                              \
        }                                                                                                          \
    } while (0)

/* ---- harness --------------------------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);
    return ntohs(address.sin_port);
}

static void init_job(job_t *job, int nranks, int timeout_s)
{
    memset(job, 0, sizeof(*job));
    snprintf(job->root, sizeof(job->root), "127.0.0.1:%d", free_port());
    job->nranks = nranks;
    job->timeout_s = timeout_s;
    job->start_ms = wf_now_ms();
}

static pid_t spawn_rank(rank_body_t body, int rank, const job_t *job)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = body(rank, job);
        fflush(stderr);
        _exit(code);
    }
    return pid;
}

/* Wait for every child; a child alive after limit_ms is killed and reported as 255. */
static void wait_children(const pid_t *pids, int count, int limit_ms, int *codes)
{
    int64_t deadline_ms = wf_now_ms() + limit_ms;
    int left = count;
    for (int i = 0; i < count; i++)
        codes[i] = -1;
    while (left > 0) {
        for (int i = 0; i < count; i++) {
            int status;
            if (codes[i] != -1 || waitpid(pids[i], &status, WNOHANG) != pids[i])
                continue;
            codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            left--;
        }
        if (left > 0 && wf_now_ms() >= deadline_ms) {
            for (int i = 0; i < count; i++) {
                if (codes[i] != -1)
                    continue;
                kill(pids[i], SIGKILL);
                waitpid(pids[i], NULL, 0);
                codes[i] = 255;
                fprintf(stderr, "child %d (pid %d) overran %d ms and was killed\n", i, (int)pids[i], limit_ms);
            }
            left = 0;
        }
        if (left > 0)
            wf_sleep_until(-1, 10);
    }
}

static void run_ranks(rank_body_t body, int count, const job_t *job)
{
    pid_t pids[MAX_RANKS] = {0};
    int codes[MAX_RANKS];
    for (int r = 0; r < count; r++)
        pids[r] = spawn_rank(body, r, job);
    wait_children(pids, count, CHILD_LIMIT_MS, codes);
    for (int r = 0; r < count; r++) {
        if (codes[r] != 0)
            fail_msg("rank %d exited with code %d", r, codes[r]);
    }
}

/* In a child: export the WEFT_ROOT variables of rank and load the parameters. */
static int load_rank_env(int rank, const job_t *job)
{
    char text[32], err[512];
    int nranks = job->size_of_rank[rank] ? job->size_of_rank[rank] : job->nranks;
    setenv("WEFT_ROOT", job->root, 1);
    snprintf(text, sizeof(text), "%d", rank);
    setenv("WEFT_RANK", text, 1);
    snprintf(text, sizeof(text), "%d", nranks);
    setenv("WEFT_SIZE", text, 1);
    if (job->key)
        setenv("WEFT_JOB_KEY", job->key, 1);
    else
        unsetenv("WEFT_JOB_KEY");
    if (wf_param_load(err, sizeof(err)) != 0) {
        fprintf(stderr, "rank %d: wf_param_load failed: %s\n", rank, err);
        return -1;
    }
    return 0;
}

/* Allgather one uint64 per rank, (r + 1) * 1000003 from rank r, and check every entry. */
static int check_small_allgather(wf_bootstrap_t *b, int rank)
{
    uint64_t mine = (uint64_t)(rank + 1) * 1000003u, all[MAX_RANKS];
    memset(all, 0xff, sizeof(all));
    weft_result_t rc = b->allgather(b, &mine, all, sizeof(mine));
    CHECK(rc == WEFT_SUCCESS, "allgather returned %d: %s", rc, wf_bootstrap_last_error(b));
    for (int i = 0; i < b->nranks; i++)
        CHECK(all[i] == (uint64_t)(i + 1) * 1000003u, "entry %d is %llu", i, (unsigned long long)all[i]);
    return 0;
}

/* ---- 4 ranks through WEFT_ROOT --------------------------------------------------------------- */

static int body_allgather_barrier(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    CHECK(b->rank == rank, "rank %d", b->rank);
    CHECK(b->nranks == 4, "nranks %d", b->nranks);
    CHECK(strcmp(b->method, "tcp") == 0, "method %s", b->method);
    if (check_small_allgather(b, rank) != 0)
        return 1;

    /* 100003 bytes per rank: larger than a socket buffer, so reads and writes are partial. */
    size_t length = 100003;
    unsigned char *mine = malloc(length), *all = malloc(4 * length);
    for (size_t j = 0; j < length; j++)
        mine[j] = (unsigned char)(rank * 31 + j * 7);
    rc = b->allgather(b, mine, all, length);
    CHECK(rc == WEFT_SUCCESS, "large allgather returned %d: %s", rc, wf_bootstrap_last_error(b));
    for (int i = 0; i < 4; i++)
        for (size_t j = 0; j < length; j++)
            CHECK(all[(size_t)i * length + j] == (unsigned char)(i * 31 + j * 7), "block %d byte %zu", i, j);
    free(mine);
    free(all);

    rc = b->allgather(b, NULL, NULL, 0);
    CHECK(rc == WEFT_SUCCESS, "empty allgather returned %d: %s", rc, wf_bootstrap_last_error(b));

    /* Rank r enters the barrier r * 150 ms late, so no rank may leave it before 450 ms have passed. */
    wf_sleep_until(-1, rank * 150);
    rc = b->barrier(b);
    int64_t elapsed_ms = wf_now_ms() - job->start_ms;
    CHECK(rc == WEFT_SUCCESS, "barrier returned %d: %s", rc, wf_bootstrap_last_error(b));
    CHECK(elapsed_ms >= 450, "left the barrier after %lld ms", (long long)elapsed_ms);
    for (int i = 0; i < 3; i++)
        CHECK(b->barrier(b) == WEFT_SUCCESS, "barrier %d: %s", i, wf_bootstrap_last_error(b));
    if (check_small_allgather(b, rank) != 0)
        return 1;
    b->destroy(b);
    return 0;
}

static void tcp_four_ranks(void **state)
{
    job_t job;
    init_job(&job, 4, 10);
    run_ranks(body_allgather_barrier, 4, &job);

    /* The same with a job key, so the secret comes from WEFT_JOB_KEY. */
    init_job(&job, 4, 10);
    job.key = "alpha";
    run_ranks(body_allgather_barrier, 4, &job);
}

/* ---- unique id ------------------------------------------------------------------------------- */

static int body_unique_id(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    weft_result_t rc = wf_bootstrap_from_id(&b, job->id, rank, job->nranks, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_id returned %d: %s", rc, err);
    CHECK(b->rank == rank, "rank %d", b->rank);
    CHECK(b->nranks == 3, "nranks %d", b->nranks);
    CHECK(strcmp(b->method, "unique-id") == 0, "method %s", b->method);
    if (check_small_allgather(b, rank) != 0)
        return 1;
    CHECK(b->barrier(b) == WEFT_SUCCESS, "barrier: %s", wf_bootstrap_last_error(b));
    b->destroy(b);
    return 0;
}

static void unique_id_path(void **state)
{
    weft_unique_id_t id, other;
    char err[512] = "";
    job_t job;

    setenv("WEFT_SOCKET_IFNAME", "lo", 1);
    setenv("WEFT_TIMEOUT", "10", 1);
    assert_int_equal(wf_param_load(err, sizeof(err)), 0);
    assert_int_equal(wf_bootstrap_create_id(&id, err, sizeof(err)), WEFT_SUCCESS);
    assert_int_equal(wf_bootstrap_create_id(&other, err, sizeof(err)), WEFT_SUCCESS);
    unsetenv("WEFT_SOCKET_IFNAME");
    unsetenv("WEFT_TIMEOUT");

    /* IPv4 family marker and 127.0.0.1 from interface lo; two ids never share a secret. */
    assert_memory_equal(id.bytes, "WFID", 4);
    assert_int_equal(id.bytes[6], 4);
    const unsigned char loopback[4] = {127, 0, 0, 1};
    assert_memory_equal(id.bytes + 16, loopback, 4);
    assert_memory_not_equal(id.bytes + 32, other.bytes + 32, WF_BOOT_SECRET_SIZE);

    init_job(&job, 3, 10);
    job.id = &id;
    run_ranks(body_unique_id, 3, &job);

    /*
     * The second id's root is adopted by rank 0 in this process, the usual pattern when rank 0
     * creates the id: its destroy joins the root thread, so no send to ranks 1 and 2 is lost.
     */
    pid_t pids[2];
    int codes[2];
    job.id = &other;
    for (int r = 1; r < 3; r++)
        pids[r - 1] = spawn_rank(body_unique_id, r, &job);
    wf_bootstrap_t *b = NULL;
    assert_int_equal(wf_bootstrap_from_id(&b, &other, 0, 3, 10, err, sizeof(err)), WEFT_SUCCESS);
    uint64_t mine = 1000003u, all[3] = {0};
    assert_int_equal(b->allgather(b, &mine, all, sizeof(mine)), WEFT_SUCCESS);
    for (int i = 0; i < 3; i++)
        assert_true(all[i] == (uint64_t)(i + 1) * 1000003u);
    assert_int_equal(b->barrier(b), WEFT_SUCCESS);
    b->destroy(b);
    wait_children(pids, 2, CHILD_LIMIT_MS, codes);
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[1], 0);
}

static void unique_id_invalid(void **state)
{
    weft_unique_id_t id;
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    memset(&id, 0, sizeof(id));
    assert_int_equal(wf_bootstrap_from_id(&b, &id, 0, 2, 5, err, sizeof(err)), WEFT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "the unique id is not valid"));
    assert_int_equal(wf_bootstrap_from_id(&b, &id, 2, 2, 5, err, sizeof(err)), WEFT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "rank=2 is out of range for nranks=2"));
    assert_int_equal(wf_bootstrap_from_id(&b, &id, 0, 0, 5, err, sizeof(err)), WEFT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "nranks=0 is invalid"));
    assert_null(b);
}

/* ---- wrong job secret ------------------------------------------------------------------------ */

static int body_secret_rank(int rank, const job_t *job)
{
    /* Ranks 1 to 3 arrive late, so the intruder reaches the root first. */
    if (rank > 0)
        wf_sleep_until(-1, 700);
    return body_allgather_barrier(rank, job);
}

static int body_intruder(int rank, const job_t *job)
{
    job_t wrong = *job;
    wrong.key = "not-the-key";
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    rank = 1;
    CHECK(load_rank_env(rank, &wrong) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, 5, err, sizeof(err));
    CHECK(rc == WEFT_ERR_INVALID_ARGUMENT, "intruder got %d: %s", rc, err);
    CHECK(strstr(err, "the job secret does not match") != NULL, "message: %s", err);
    return 0;
}

static void wrong_secret_rejected(void **state)
{
    job_t job;
    pid_t pids[5];
    int codes[5];
    init_job(&job, 4, 10);
    job.key = "right-key";
    pids[0] = spawn_rank(body_intruder, 0, &job);
    for (int r = 0; r < 4; r++)
        pids[1 + r] = spawn_rank(body_secret_rank, r, &job);
    wait_children(pids, 5, CHILD_LIMIT_MS, codes);
    assert_int_equal(codes[0], 0); /* the intruder was rejected with the right message */
    for (int r = 0; r < 4; r++) {
        if (codes[1 + r] != 0)
            fail_msg("rank %d exited with code %d", r, codes[1 + r]);
    }
}

/* ---- a rank that never arrives --------------------------------------------------------------- */

static int body_missing_rank(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    int64_t start_ms = wf_now_ms();
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    int64_t elapsed_ms = wf_now_ms() - start_ms;
    CHECK(rc == WEFT_ERR_TIMEOUT, "from_env returned %d: %s", rc, err);
    CHECK(elapsed_ms >= 1000L * job->timeout_s - 100, "gave up after %lld ms", (long long)elapsed_ms);
    CHECK(elapsed_ms <= 1000L * job->timeout_s + 2000, "gave up after %lld ms", (long long)elapsed_ms);
    CHECK(strstr(err, "rank 3 of 4 never connected") != NULL, "message: %s", err);
    CHECK(strstr(err, job->root) != NULL, "message does not name the root: %s", err);
    return 0;
}

static void missing_rank_times_out(void **state)
{
    job_t job;
    init_job(&job, 4, 3);
    run_ranks(body_missing_rank, 3, &job); /* rank 3 is never started */
}

/* ---- a rank lost in the middle of a round ---------------------------------------------------- */

static int body_lost_rank(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    if (check_small_allgather(b, rank) != 0)
        return 1;
    if (rank == 2) {
        /* Leave without taking part, after the others have started the next round. */
        wf_sleep_until(-1, 300);
        _exit(0);
    }
    int64_t start_ms = wf_now_ms();
    uint64_t mine = 1, all[3];
    rc = b->allgather(b, &mine, all, sizeof(mine));
    CHECK(rc == WEFT_ERR_REMOTE, "allgather returned %d: %s", rc, wf_bootstrap_last_error(b));
    CHECK(strstr(wf_bootstrap_last_error(b), "rank 2 at") != NULL, "message: %s", wf_bootstrap_last_error(b));
    CHECK(wf_now_ms() - start_ms < 3000, "took %lld ms", (long long)(wf_now_ms() - start_ms));
    /* The failure sticks: the next call returns the same code without waiting. */
    CHECK(b->barrier(b) == WEFT_ERR_REMOTE, "barrier after failure");
    b->destroy(b);
    return 0;
}

static void lost_rank_reported(void **state)
{
    job_t job;
    init_job(&job, 3, 10);
    run_ranks(body_lost_rank, 3, &job);
}

/* ---- a rank that stays connected but skips a round ------------------------------------------- */

static int body_skipped_round(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    if (rank == 2) {
        wf_sleep_until(-1, 1000L * job->timeout_s + 2500); /* alive, connected, but silent */
        b->destroy(b);
        return 0;
    }
    int64_t start_ms = wf_now_ms();
    rc = b->barrier(b);
    int64_t elapsed_ms = wf_now_ms() - start_ms;
    CHECK(rc == WEFT_ERR_TIMEOUT, "barrier returned %d: %s", rc, wf_bootstrap_last_error(b));
    CHECK(strstr(wf_bootstrap_last_error(b), "rank 2 of 3 did not take part") != NULL, "message: %s",
          wf_bootstrap_last_error(b));
    CHECK(elapsed_ms >= 1000L * job->timeout_s - 100, "gave up after %lld ms", (long long)elapsed_ms);
    CHECK(elapsed_ms <= 1000L * job->timeout_s + 2000, "gave up after %lld ms", (long long)elapsed_ms);
    b->destroy(b);
    return 0;
}

static void skipped_round_times_out(void **state)
{
    job_t job;
    init_job(&job, 3, 2);
    run_ranks(body_skipped_round, 3, &job);
}

/* ---- IPv6 loopback --------------------------------------------------------------------------- */

static int body_ipv6(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    if (check_small_allgather(b, rank) != 0)
        return 1;
    b->destroy(b);
    return 0;
}

static void ipv6_root(void **state)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 address = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    socklen_t length = sizeof(address);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        if (fd >= 0)
            close(fd);
        skip(); /* no IPv6 loopback on this host */
    }
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);

    job_t job;
    init_job(&job, 2, 10);
    snprintf(job.root, sizeof(job.root), "[::1]:%d", ntohs(address.sin6_port));
    run_ranks(body_ipv6, 2, &job);
}

/* ---- raw clients that send garbage ----------------------------------------------------------- */

static int body_late_pair(int rank, const job_t *job)
{
    if (rank == 1)
        wf_sleep_until(-1, 1500); /* give the raw clients time to reach the root first */
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    if (check_small_allgather(b, rank) != 0)
        return 1;
    b->destroy(b);
    return 0;
}

static int connect_root(const job_t *job)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = -1, error = 0;
    address.sin_port = htons((uint16_t)atoi(strchr(job->root, ':') + 1));
    assert_int_equal(wf_sock_connect((struct sockaddr *)&address, wf_now_ms() + 5000, &fd, &error), WF_IO_OK);
    return fd;
}

/*
 * Send bytes, then read until the root closes, which must happen within 3 s. The reply must be a
 * CHALLENGE, then an ERROR frame whose message contains fragment.
 */
static void expect_rejection(const job_t *job, const void *bytes, size_t size, const char *fragment)
{
    unsigned char reply[4096];
    size_t got = 0, done;
    int error = 0;
    int fd = connect_root(job);
    assert_int_equal(wf_sock_send_all(fd, bytes, size, wf_now_ms() + 2000, &error), WF_IO_OK);
    wf_io_status_t status = wf_sock_recv_all(fd, reply, sizeof(reply), wf_now_ms() + 3000, &done, &error);
    assert_true(status == WF_IO_CLOSED);
    got = done;
    wf_fd_close(fd);

    wf_frame_header_t header;
    const unsigned char *payload;
    size_t frame_size;
    char err[256], message[WF_FRAME_ERROR_TEXT_MAX + 1];
    weft_result_t code;
    assert_int_equal(wf_frame_parse(reply, got, 4096, &header, &payload, &frame_size, err, sizeof(err)), WF_FRAME_OK);
    assert_int_equal(header.type, WF_FRAME_CHALLENGE);
    assert_int_equal(wf_frame_parse(reply + frame_size, got - frame_size, 4096, &header, &payload, &frame_size, err,
                                    sizeof(err)),
                     WF_FRAME_OK);
    assert_int_equal(header.type, WF_FRAME_ERROR);
    assert_int_equal(wf_frame_error_decode(payload, (size_t)header.length, &code, message, sizeof(message)), 0);
    if (!strstr(message, fragment))
        fail_msg("expected \"%s\" in the rejection \"%s\"", fragment, message);
}

static void garbage_does_not_hang_root(void **state)
{
    job_t job;
    pid_t pids[2];
    int codes[2];
    init_job(&job, 2, 10);
    pids[0] = spawn_rank(body_late_pair, 0, &job);

    /* A silent connection occupies a handshake slot but must not hold up the others. */
    int silent = connect_root(&job);

    const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    expect_rejection(&job, http, sizeof(http) - 1, "invalid frame: magic");

    unsigned char oversized[WF_FRAME_HEADER_SIZE];
    wf_frame_header_encode(oversized, WF_FRAME_HELLO, (uint64_t)1 << 62);
    expect_rejection(&job, oversized, sizeof(oversized), "exceeds the limit");

    unsigned char wrong_type[WF_FRAME_HEADER_SIZE + 8] = {0};
    wf_frame_header_encode(wrong_type, WF_FRAME_DATA, 8);
    expect_rejection(&job, wrong_type, sizeof(wrong_type), "expected a HELLO frame");

    pids[1] = spawn_rank(body_late_pair, 1, &job);
    wait_children(pids, 2, CHILD_LIMIT_MS, codes);
    wf_fd_close(silent);
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[1], 0);
}

/*
 * An admitted rank (the test plays rank 1 with the real handshake and the job's zero secret)
 * that announces an allgather above the limit ends the rendezvous with a clear error on rank 0.
 */
static int body_oversized_victim(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    wf_sleep_until(-1, 300); /* let the fake rank's header arrive first */
    uint64_t mine = 0, all[2];
    rc = b->allgather(b, &mine, all, sizeof(mine));
    CHECK(rc == WEFT_ERR_INVALID_ARGUMENT, "allgather returned %d: %s", rc, wf_bootstrap_last_error(b));
    CHECK(strstr(wf_bootstrap_last_error(b), "exceeds the rendezvous limit") != NULL, "message: %s",
          wf_bootstrap_last_error(b));
    b->destroy(b);
    return 0;
}

static void oversized_round_rejected(void **state)
{
    job_t job;
    pid_t pid;
    int code;
    unsigned char frame[WF_FRAME_HEADER_SIZE + WF_HELLO_SIZE], secret[WF_BOOT_SECRET_SIZE] = {0};
    size_t done;
    int error = 0;
    init_job(&job, 2, 10);
    pid = spawn_rank(body_oversized_victim, 0, &job);

    int fd = connect_root(&job);
    wf_challenge_t challenge;
    assert_int_equal(wf_sock_recv_all(fd, frame, WF_FRAME_HEADER_SIZE + WF_CHALLENGE_SIZE, wf_now_ms() + 5000, &done,
                                      &error),
                     WF_IO_OK);
    wf_challenge_decode(frame + WF_FRAME_HEADER_SIZE, &challenge);
    wf_hello_t hello = {.version = WF_BOOT_PROTOCOL_VERSION, .rank = 1, .nranks = 2};
    wf_hello_mac(secret, challenge.nonce, &hello, hello.mac);
    wf_frame_header_encode(frame, WF_FRAME_HELLO, WF_HELLO_SIZE);
    wf_hello_encode(frame + WF_FRAME_HEADER_SIZE, &hello);
    assert_int_equal(wf_sock_send_all(fd, frame, sizeof(frame), wf_now_ms() + 2000, &error), WF_IO_OK);
    assert_int_equal(wf_sock_recv_all(fd, frame, WF_FRAME_HEADER_SIZE + WF_WELCOME_SIZE, wf_now_ms() + 5000, &done,
                                      &error),
                     WF_IO_OK);

    /* 40 MiB per rank is below the frame limit, but 2 ranks together exceed 64 MiB. */
    wf_frame_header_encode(frame, WF_FRAME_DATA, (uint64_t)40 << 20);
    assert_int_equal(wf_sock_send_all(fd, frame, WF_FRAME_HEADER_SIZE, wf_now_ms() + 2000, &error), WF_IO_OK);
    wait_children(&pid, 1, CHILD_LIMIT_MS, &code);
    wf_fd_close(fd);
    assert_int_equal(code, 0);
}

/* ---- destroy and re-initialise at the same port ---------------------------------------------- */

static int body_reinit(int rank, const job_t *job)
{
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    for (int round = 0; round < 3; round++) {
        wf_bootstrap_t *b = NULL;
        char err[512] = "";
        int64_t start_ms = wf_now_ms();
        weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
        CHECK(rc == WEFT_SUCCESS, "round %d: from_env returned %d: %s", round, rc, err);
        int32_t mine = rank + 1, all[4];
        rc = b->allgather(b, &mine, all, sizeof(mine));
        CHECK(rc == WEFT_SUCCESS, "round %d: allgather returned %d: %s", round, rc, wf_bootstrap_last_error(b));
        CHECK(all[0] + all[1] + all[2] + all[3] == 10, "round %d: sum %d", round, all[0] + all[1] + all[2] + all[3]);
        CHECK(b->barrier(b) == WEFT_SUCCESS, "round %d: barrier: %s", round, wf_bootstrap_last_error(b));
        if (rank == 0)
            wf_sleep_until(-1, job->rank0_destroy_delay_ms);
        b->destroy(b);
        CHECK(wf_now_ms() - start_ms < 30000, "round %d took %lld ms", round, (long long)(wf_now_ms() - start_ms));
    }
    return 0;
}

static void reinit_same_port(void **state)
{
    job_t job;
    init_job(&job, 4, 10);
    run_ranks(body_reinit, 4, &job);

    /* Variant: rank 0 destroys 2 s after the others, which re-initialise at once. */
    init_job(&job, 4, 10);
    job.rank0_destroy_delay_ms = 2000;
    run_ranks(body_reinit, 4, &job);
}

/* ---- configuration errors -------------------------------------------------------------------- */

static int body_size_mismatch(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    if (rank == 1)
        wf_sleep_until(-1, 200); /* rank 0 fixes the size first */
    CHECK(load_rank_env(rank, job) == 0, "parameters");
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_ERR_INVALID_ARGUMENT, "from_env returned %d: %s", rc, err);
    CHECK(strstr(err, "was started with 3 ranks but the rendezvous at WEFT_ROOT=") != NULL, "message: %s", err);
    CHECK(strstr(err, "expects 2") != NULL, "message: %s", err);
    return 0;
}

static void size_mismatch_named(void **state)
{
    job_t job;
    init_job(&job, 2, 10);
    job.size_of_rank[1] = 3;
    run_ranks(body_size_mismatch, 2, &job);
}

static void expect_env_error(weft_result_t expected, const char *fragment)
{
    wf_bootstrap_t *b = NULL;
    char err[512] = "";
    assert_int_equal(wf_param_load(err, sizeof(err)), 0);
    weft_result_t rc = wf_bootstrap_from_env(&b, 5, err, sizeof(err));
    assert_int_equal(rc, expected);
    assert_null(b);
    if (!strstr(err, fragment))
        fail_msg("expected \"%s\" in \"%s\"", fragment, err);
}

static void env_errors_named(void **state)
{
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "no bootstrap found in the environment");

    setenv("WEFT_ROOT", "127.0.0.1:29500", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "WEFT_RANK and WEFT_SIZE are missing");
    setenv("WEFT_SIZE", "4", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "WEFT_ROOT=127.0.0.1:29500 is set but WEFT_RANK is missing");
    setenv("WEFT_RANK", "4", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "WEFT_RANK=4 is out of range for WEFT_SIZE=4");
    setenv("WEFT_RANK", "1", 1);
    setenv("WEFT_ROOT", "127.0.0.1", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "invalid WEFT_ROOT=127.0.0.1: the port is missing");
    unsetenv("WEFT_ROOT");
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "WEFT_RANK is set but WEFT_ROOT is not");
    unsetenv("WEFT_RANK");
    unsetenv("WEFT_SIZE");

    setenv("MASTER_ADDR", "127.0.0.1", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "MASTER_PORT, RANK, WORLD_SIZE missing");
    setenv("MASTER_PORT", "65535", 1);
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "2", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "MASTER_PORT=65535 is invalid");
    setenv("MASTER_PORT", "29500", 1);
    setenv("RANK", "2", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "RANK=2 is out of range for WORLD_SIZE=2");
    setenv("RANK", "x1", 1);
    expect_env_error(WEFT_ERR_INVALID_ARGUMENT, "RANK=x1 or WORLD_SIZE=2 is not an integer");
    unsetenv("MASTER_ADDR");
    unsetenv("MASTER_PORT");
    unsetenv("RANK");
    unsetenv("WORLD_SIZE");
}

/* ---- torchrun variables ---------------------------------------------------------------------- */

static int body_torchrun(int rank, const job_t *job)
{
    wf_bootstrap_t *b = NULL;
    char text[32], err[512] = "";
    int port = atoi(strchr(job->root, ':') + 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    snprintf(text, sizeof(text), "%d", port - 1); /* weft listens on MASTER_PORT + 1 */
    setenv("MASTER_PORT", text, 1);
    snprintf(text, sizeof(text), "%d", rank);
    setenv("RANK", text, 1);
    setenv("WORLD_SIZE", "2", 1);
    CHECK(wf_param_load(err, sizeof(err)) == 0, "parameters: %s", err);
    weft_result_t rc = wf_bootstrap_from_env(&b, job->timeout_s, err, sizeof(err));
    CHECK(rc == WEFT_SUCCESS, "from_env returned %d: %s", rc, err);
    CHECK(strcmp(b->method, "torchrun") == 0, "method %s", b->method);
    if (check_small_allgather(b, rank) != 0)
        return 1;
    b->destroy(b);
    return 0;
}

static void torchrun_variables(void **state)
{
    job_t job;
    init_job(&job, 2, 10);
    run_ranks(body_torchrun, 2, &job);
}

static void job_key_secret(void **state)
{
    unsigned char secret[WF_BOOT_SECRET_SIZE], again[WF_BOOT_SECRET_SIZE];
    /* SHA-256 of "weft-job-key:alpha", computed independently with Python's hashlib. */
    static const unsigned char expected[WF_BOOT_SECRET_SIZE] = {
        0x58, 0xe6, 0x08, 0xb2, 0x2a, 0x9e, 0xb9, 0x88, 0xe9, 0xf5, 0x2c, 0x68, 0x4b, 0x79, 0x3c, 0x3e,
        0x9a, 0xcb, 0x6d, 0x62, 0xc6, 0x3f, 0xee, 0x1a, 0xc0, 0x63, 0xea, 0x66, 0xab, 0x37, 0x43, 0x72};
    wf_boot_secret_from_key("alpha", secret);
    assert_memory_equal(secret, expected, sizeof(expected));
    wf_boot_secret_from_key("alphb", again);
    assert_memory_not_equal(secret, again, sizeof(secret));
}

static int clean_environment(void **state)
{
    static const char *const names[] = {"WEFT_ROOT", "WEFT_RANK", "WEFT_SIZE", "WEFT_JOB_KEY", "WEFT_SOCKET_IFNAME",
                                        "WEFT_TIMEOUT", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                                        "PMIX_RANK", "PMIX_NAMESPACE"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
    setenv("WEFT_CONF_FILE", "/dev/null", 1);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(job_key_secret, clean_environment),
        cmocka_unit_test_setup(env_errors_named, clean_environment),
        cmocka_unit_test_setup(tcp_four_ranks, clean_environment),
        cmocka_unit_test_setup(torchrun_variables, clean_environment),
        cmocka_unit_test_setup(unique_id_path, clean_environment),
        cmocka_unit_test_setup(unique_id_invalid, clean_environment),
        cmocka_unit_test_setup(wrong_secret_rejected, clean_environment),
        cmocka_unit_test_setup(missing_rank_times_out, clean_environment),
        cmocka_unit_test_setup(lost_rank_reported, clean_environment),
        cmocka_unit_test_setup(skipped_round_times_out, clean_environment),
        cmocka_unit_test_setup(ipv6_root, clean_environment),
        cmocka_unit_test_setup(garbage_does_not_hang_root, clean_environment),
        cmocka_unit_test_setup(oversized_round_rejected, clean_environment),
        cmocka_unit_test_setup(size_mismatch_named, clean_environment),
        cmocka_unit_test_setup(reinit_same_port, clean_environment),
    };
    /* TEST_FILTER=name runs only the matching tests (cmocka pattern syntax). */
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
