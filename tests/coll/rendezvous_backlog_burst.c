/*
 * More ranks than the rendezvous root keeps handshakes for (64) connect while the root's process
 * is stopped, so their connections pile up in the listen backlog and reach the root in one burst.
 * Every rank must still be admitted: the root may not evict a handshake that has just begun to
 * make room for the next connection of the same burst.
 *
 * Rank 0 hosts the root. Before its init, it forks a helper that waits until the WEFT_ROOT port
 * is listening (read from /proc/net/tcp and /proc/net/tcp6, so the helper opens no connection of
 * its own), stops rank 0 with SIGSTOP for STOP_SECONDS and continues it. Then every rank checks an
 * int32 all-reduce sum of 1, which must equal the rank count. Needs the WEFT_ROOT bootstrap, which
 * coll_launch sets up.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coll_util.h"

#define STOP_SECONDS 3
#define LISTEN_WAIT_SECONDS 60.0
#define TCP_STATE_LISTEN 0x0A

/* Non-zero when a socket in table (a /proc/net/tcp file) listens on port. */
static int port_is_listening(const char *table, unsigned port)
{
    FILE *file = fopen(table, "r");
    char line[512];
    int found = 0;

    if (file == NULL)
        return 0;
    if (fgets(line, sizeof line, file) == NULL) { /* column headings */
        fclose(file);
        return 0;
    }
    while (!found && fgets(line, sizeof line, file) != NULL) {
        char local[128];
        unsigned state = 0;
        /* "  0: 0100007F:9C41 00000000:0000 0A ...": slot, local address:port, remote, state. */
        if (sscanf(line, " %*s %127s %*s %x", local, &state) != 2)
            continue;
        const char *colon = strrchr(local, ':');
        found = colon != NULL && strtoul(colon + 1, NULL, 16) == port && state == TCP_STATE_LISTEN;
    }
    fclose(file);
    return found;
}

/* Stop rank 0 once it listens, continue it, and exit 0. Called in the helper only. */
static void stop_parent_once_listening(pid_t parent, unsigned port)
{
    struct timespec poll_pause = {0, 2000000}, stop = {STOP_SECONDS, 0};
    double deadline = ct_now() + LISTEN_WAIT_SECONDS;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    while (!port_is_listening("/proc/net/tcp", port) && !port_is_listening("/proc/net/tcp6", port)) {
        if (ct_now() > deadline || getppid() != parent)
            _exit(3);
        nanosleep(&poll_pause, NULL);
    }
    if (kill(parent, SIGSTOP) != 0)
        _exit(4);
    nanosleep(&stop, NULL);
    _exit(kill(parent, SIGCONT) == 0 ? 0 : 5);
}

/* Fork the helper on the rank that hosts the root. Returns its pid, 0 on other ranks, or -1. */
static pid_t start_helper(void)
{
    const char *root = getenv("WEFT_ROOT");
    const char *rank = getenv("WEFT_RANK");
    const char *colon = root != NULL ? strrchr(root, ':') : NULL;

    if (colon == NULL || rank == NULL) {
        fprintf(stderr, "rendezvous_backlog_burst: missing WEFT_ROOT=%s or WEFT_RANK=%s, so start the test with "
                        "coll_launch in its default (root) mode\n",
                root ? root : "unset", rank ? rank : "unset");
        exit(1);
    }
    if (strcmp(rank, "0") != 0)
        return 0;
    unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
    pid_t parent = getpid();
    pid_t helper = fork();
    if (helper == 0)
        stop_parent_once_listening(parent, port);
    if (helper < 0)
        perror("rendezvous_backlog_burst: fork of the helper that stops rank 0 failed");
    return helper;
}

/* Check that the helper stopped and continued rank 0, without which no burst was tested. */
static void check_helper(ct_tally_t *tally, pid_t helper)
{
    int status = 0;
    if (helper < 0) {
        ct_fail(tally, "the helper that stops rank 0 could not be started");
        return;
    }
    if (waitpid(helper, &status, 0) != helper || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ct_fail(tally, "the helper that stops rank 0 failed (wait status 0x%x; 3: the WEFT_ROOT port never "
                "listened, 4 or 5: SIGSTOP or SIGCONT failed)", (unsigned)status);
    else
        tally->passed++;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t helper = start_helper();
    weft_comm_t comm;
    ct_tally_t tally;

    ct_start("rendezvous_backlog_burst", &comm, &tally);
    if (tally.rank == 0)
        check_helper(&tally, helper);

    int32_t value = 1;
    int32_t expected = tally.nranks;
    const char *label = "all-reduce int32 sum of 1 after the burst";
    if (ct_check_result(&tally, comm, weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm), label) &&
        ct_compare_elements(&tally, label, WEFT_INT32, &value, &expected, 1))
        tally.passed++;
    return ct_finish(&tally, comm);
}
