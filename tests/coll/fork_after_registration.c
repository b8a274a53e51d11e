/*
 * fork() after a buffer that does not start on a page boundary was registered.
 *
 * One page-aligned 4 KiB mapping contains two fields: a = bytes 0..2047 and b = bytes 2048..4095.
 * The all-reduce on b makes the library register b, and the registration cache widens it to the
 * whole page, so a shares the registered page. WEFT_EAGER_LIMIT defaults to 0 here (a value set by
 * the caller wins), so the 2048 bytes travel by RDMA write into registered memory rather than by
 * eager messages, and the test fails when the registration counters show no lookup of b. Then
 * every rank forks:
 *
 *   fork_after_registration write    the child writes a[0] = 1 and exits 0
 *   fork_after_registration system   the child runs system("true") and exits with its status
 *   fork_after_registration exit     the child writes a[0] = 1 and calls exit(0), which runs the
 *                                    atexit handlers and library destructors in the child
 *
 * A child ends by SIGSEGV when the registration marked the page MADV_DONTFORK (ibv_fork_init does
 * that on kernels without copy-on-fork support for pinned pages). The parent checks that the child
 * exited with status 0, that its own a was not changed by the child's write, and that a second
 * all-reduce on b (now with different values) is still correct. Both all-reduces, the fork and
 * the wait must take at most 10 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coll_util.h"

#define REGION_BYTES 4096
#define FIELD_BYTES 2048
#define LIMIT_SECONDS 10.0
/* Byte value of field a in the parent. The child's write of 1 must not reach it. */
#define FIELD_A_FILL 0x5a

typedef enum { CHILD_WRITE, CHILD_SYSTEM, CHILD_EXIT } child_kind_t;

static child_kind_t parse_kind(int argc, char **argv)
{
    static const char *names[] = {"write", "system", "exit"};
    if (argc == 1)
        return CHILD_WRITE;
    for (int k = 0; argc == 2 && k < 3; k++) {
        if (strcmp(argv[1], names[k]) == 0)
            return (child_kind_t)k;
    }
    fprintf(stderr, "fork_after_registration: invalid variant '%s': expected write, system or exit\n", argv[1]);
    exit(2);
}

/* Run the child's part of the variant and exit. Called in the child only. */
static void run_child(child_kind_t kind, unsigned char *a)
{
    if (kind == CHILD_SYSTEM) {
        int status = system("true");
        if (status == -1)
            _exit(126);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    a[0] = 1;
    if (kind == CHILD_EXIT)
        exit(a[0] == 1 ? 0 : 3);
    _exit(a[0] == 1 ? 0 : 3);
}

/* Wait for the child until the deadline, then kill it. Returns 1 when it exited with status 0. */
static int wait_child(ct_tally_t *tally, pid_t child, double deadline)
{
    int status = 0;
    pid_t done;

    while ((done = waitpid(child, &status, WNOHANG)) == 0 && ct_now() < deadline) {
        struct timespec pause = {0, 5000000};
        nanosleep(&pause, NULL);
    }
    if (done == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        ct_fail(tally, "the forked child (pid %d) had not exited by the %.0f s limit and was killed", (int)child,
                LIMIT_SECONDS);
        return 0;
    }
    if (done < 0) {
        ct_fail(tally, "waitpid for the forked child (pid %d) failed: %s", (int)child, strerror(errno));
        return 0;
    }
    if (WIFSIGNALED(status)) {
        ct_fail(tally, "the forked child (pid %d) was killed by signal %d (%s); a SIGSEGV means the registered "
                "page was not inherited (MADV_DONTFORK)", (int)child, WTERMSIG(status), strsignal(WTERMSIG(status)));
        return 0;
    }
    if (WEXITSTATUS(status) != 0) {
        /* libinfinipath, which libfabric's psm provider loads, turns a crash into exit status 1. */
        ct_fail(tally, "the forked child (pid %d) exited with status %d, expected 0%s", (int)child,
                WEXITSTATUS(status),
                WEXITSTATUS(status) == 1 && getenv("IPATH_NO_BACKTRACE") == NULL
                    ? "; status 1 may hide a SIGSEGV: set IPATH_NO_BACKTRACE=1 to see the signal"
                    : "");
        return 0;
    }
    return 1;
}

/* Fill b with input_factor * (rank + 1), all-reduce it in place and compare with the reference. */
static int reduce_field(ct_tally_t *tally, weft_comm_t comm, unsigned char *b, unsigned input_factor,
                        const char *label)
{
    unsigned char expected[FIELD_BYTES];
    unsigned sum = 0;

    /* Rank q contributes input_factor * (q + 1). uint8 sums wrap modulo 256. */
    for (int q = 0; q < tally->nranks; q++)
        sum += input_factor * (unsigned)(q + 1);
    memset(expected, (int)(sum & 0xffu), sizeof expected);
    memset(b, (int)((input_factor * (unsigned)(tally->rank + 1)) & 0xffu), FIELD_BYTES);

    return ct_check_result(tally, comm, weft_allreduce(b, b, FIELD_BYTES, WEFT_UINT8, WEFT_SUM, comm), label) &&
           ct_compare_elements(tally, label, WEFT_UINT8, b, expected, FIELD_BYTES);
}

/* Registration-cache lookups and registrations so far on this rank. */
static uint64_t registrations(ct_tally_t *tally, weft_comm_t comm)
{
    weft_stats_t stats;
    memset(&stats, 0, sizeof stats);
    if (!ct_check_result(tally, comm, weft_comm_get_stats(comm, &stats), "weft_comm_get_stats"))
        return 0;
    return stats.mr_cache_hits + stats.mr_cache_misses;
}

/* Field a belongs to the parent alone: neither the collectives nor the child may change it. */
static int check_field_a(ct_tally_t *tally, const unsigned char *a, const char *when)
{
    unsigned char expected[FIELD_BYTES];
    memset(expected, FIELD_A_FILL, sizeof expected);
    return ct_compare_elements(tally, when, WEFT_UINT8, a, expected, FIELD_BYTES);
}

int main(int argc, char **argv)
{
    child_kind_t kind = parse_kind(argc, argv);
    weft_comm_t comm;
    ct_tally_t tally;

    setenv("WEFT_EAGER_LIMIT", "0", 0);
    ct_start("fork_after_registration", &comm, &tally);
    unsigned char *region = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        ct_fail(&tally, "mmap of a %d-byte region failed: %s", REGION_BYTES, strerror(errno));
        return ct_finish(&tally, comm);
    }
    unsigned char *a = region, *b = region + FIELD_BYTES;
    memset(a, FIELD_A_FILL, FIELD_BYTES);

    double started = ct_now();
    uint64_t lookups_before = registrations(&tally, comm);
    int ok = reduce_field(&tally, comm, b, 1, "all-reduce uint8 sum of r+1 on b before fork");
    if (ok && tally.nranks > 1 && registrations(&tally, comm) == lookups_before) {
        ct_fail(&tally, "the first all-reduce did not register b (no registration-cache lookup), so the fork "
                "would not test a registered page; WEFT_EAGER_LIMIT=%s sends it as eager messages: unset it or set 0",
                getenv("WEFT_EAGER_LIMIT"));
        ok = 0;
    }
    ok = ok && check_field_a(&tally, a, "field a after the first all-reduce");

    if (ok) {
        fflush(NULL); /* the child must not print the parent's buffered output again */
        pid_t child = fork();
        if (child == 0)
            run_child(kind, a);
        if (child < 0) {
            ct_fail(&tally, "fork failed: %s", strerror(errno));
            ok = 0;
        } else {
            ok = wait_child(&tally, child, started + LIMIT_SECONDS);
        }
        ok = check_field_a(&tally, a, "field a in the parent after the child wrote its copy") && ok;
    }
    /* Every rank runs the second all-reduce, so a failure on one rank does not leave the others waiting. */
    if (!tally.broken) {
        ok = reduce_field(&tally, comm, b, 10, "all-reduce uint8 sum of 10*(r+1) on b after fork") && ok;
        ok = check_field_a(&tally, a, "field a after the second all-reduce") && ok;
    }
    ok = ct_check_duration(&tally, "the two all-reduces, fork and wait", ct_now() - started, LIMIT_SECONDS) && ok;
    tally.passed += ok;

    munmap(region, REGION_BYTES);
    return ct_finish(&tally, comm);
}
