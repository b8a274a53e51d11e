/*
 * coll_launch: start a weft program on N local ranks and report whether every rank succeeded.
 *
 *   coll_launch -n N [-m root|mpirun] [-p PROVIDER] [-t SECONDS] [-k RANK] [-H LAYOUT] [--mpirun PATH]
 *               [-R HOST:PORT [-r FIRST-LAST]] -- PROGRAM [ARGS...]
 *
 * root mode forks N processes with WEFT_ROOT=127.0.0.1:<free port>, WEFT_RANK, WEFT_SIZE and a
 * random WEFT_JOB_KEY (unless one is set).
 * mpirun mode runs `mpirun --oversubscribe -np N` (adding --allow-run-as-root for root) and
 * forwards every WEFT_* variable with -x, so the ranks bootstrap through PMIx. Either way the
 * ranks share one process group, which the launcher kills when the timeout expires or when the
 * remaining ranks outlive a failed one by more than a grace period. Exit status: 0 when every
 * rank exited 0, 1 otherwise, 2 for bad usage.
 *
 * -H splits the ranks into virtual nodes by giving each its own WEFT_HOSTID (root mode only).
 * "2x3" is 2 nodes of 3 consecutive ranks and "3+1" is nodes of 3 and 1 ranks. "2x2i" deals the
 * ranks out round robin: rank r is on node r % 2.
 *
 * -R and -r run one part of a job whose ranks are spread over several hosts: each host runs
 * coll_launch with the same -n, -R (WEFT_ROOT, the address where rank 0 listens) and WEFT_JOB_KEY,
 * and its own -r range. The launcher then leaves WEFT_SOCKET_IFNAME and FI_TCP_IFACE as the caller
 * set them, so the ranks advertise an address the other hosts can reach.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAUNCH_MAX_RANKS 1024
/* How long the other ranks may run on after one rank failed, in seconds. They should notice
 * the failure and return an error on their own; the launcher only ends a hang. */
#define LAUNCH_FAILURE_GRACE_SECONDS 15.0
/* Time between SIGTERM and SIGKILL when ending the ranks, in seconds. */
#define LAUNCH_KILL_GRACE_SECONDS 3.0

extern char **environ;

typedef struct {
    int nranks;
    int use_mpirun;
    const char *provider;   /* WEFT_OFI_PROVIDER for every rank, or NULL to inherit */
    double timeout_seconds;
    const char *mpirun_path;
    char **program_argv;    /* program and its arguments */
    int killed_rank;        /* -k: this rank must end by SIGKILL (fault tests), -1 for none */
    const char *layout;     /* -H: virtual node layout, NULL for one node */
    int node_of[LAUNCH_MAX_RANKS]; /* virtual node of each rank when layout is set */
    const char *root;       /* -R: WEFT_ROOT of a job spread over hosts, NULL for a local root */
    int first_rank;         /* -r: the ranks this launcher starts, first_rank to last_rank */
    int last_rank;
} launch_options_t;

typedef struct {
    pid_t pid;
    int finished;
    int status;             /* from waitpid */
} launch_child_t;

static volatile sig_atomic_t interrupted_signal;

static void on_interrupt(int signal_number)
{
    interrupted_signal = signal_number;
}

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void print_usage(FILE *out)
{
    fprintf(out, "usage: coll_launch -n N [-m root|mpirun] [-p PROVIDER] [-t SECONDS] [-k RANK] [-H LAYOUT]\n"
                 "                   [--mpirun PATH] [-R HOST:PORT [-r FIRST-LAST]] -- PROGRAM [ARGS...]\n"
                 "  -n N           number of ranks, 1 to %d\n"
                 "  -m MODE        root: fork N ranks with WEFT_ROOT/WEFT_RANK/WEFT_SIZE (default);\n"
                 "                 mpirun: run them under mpirun, which bootstraps through PMIx\n"
                 "  -p PROVIDER    set WEFT_OFI_PROVIDER for every rank, e.g. shm or 'tcp;ofi_rxm'\n"
                 "  -t SECONDS     kill every rank after this many seconds (default 300)\n"
                 "  -k RANK        RANK must end by SIGKILL (fault tests); root mode only\n"
                 "  -H LAYOUT      virtual nodes through WEFT_HOSTID: 2x3 (2 nodes of 3 ranks), 3+1 (nodes\n"
                 "                 of 3 and 1 ranks), 2x2i (round robin); root mode only\n"
                 "  --mpirun PATH  mpirun to use in mpirun mode (default: mpirun from PATH)\n"
                 "  -R HOST:PORT   WEFT_ROOT for the ranks, for a job spread over hosts (rank 0 listens\n"
                 "                 there); needs WEFT_JOB_KEY set to the same value on every host, and\n"
                 "                 leaves WEFT_SOCKET_IFNAME and FI_TCP_IFACE to the caller; root mode only\n"
                 "  -r FIRST-LAST  start only ranks FIRST to LAST of the N (needs -R)\n",
            LAUNCH_MAX_RANKS);
}

static void usage_error(const char *message, const char *value)
{
    fprintf(stderr, "coll_launch: %s '%s'\n", message, value ? value : "");
    print_usage(stderr);
    exit(2);
}

/* Fill options->node_of from options->layout; -1 when it does not describe nranks ranks. */
static int parse_layout(launch_options_t *options)
{
    const char *text = options->layout;
    char *end = NULL;
    long nodes = strtol(text, &end, 10);
    if (nodes < 1 || nodes > LAUNCH_MAX_RANKS)
        return -1;
    if (*end == 'x') {
        long per_node = strtol(end + 1, &end, 10);
        int round_robin = strcmp(end, "i") == 0;
        if (per_node < 1 || (*end != '\0' && !round_robin) || nodes * per_node != options->nranks)
            return -1;
        for (int r = 0; r < options->nranks; r++)
            options->node_of[r] = round_robin ? r % (int)nodes : r / (int)per_node;
        return 0;
    }
    /* Sizes joined by '+': the first number was already read into nodes. */
    int rank = 0, node = 0;
    for (long size = nodes;; size = strtol(end + 1, &end, 10)) {
        if (size < 1 || rank + size > options->nranks)
            return -1;
        for (long i = 0; i < size; i++)
            options->node_of[rank++] = node;
        node++;
        if (*end == '\0')
            break;
        if (*end != '+')
            return -1;
    }
    return rank == options->nranks ? 0 : -1;
}

static void parse_options(int argc, char **argv, launch_options_t *options)
{
    memset(options, 0, sizeof(*options));
    options->timeout_seconds = 300.0;
    options->mpirun_path = "mpirun";
    options->killed_rank = -1;
    int i = 1;
    const char *range_text = NULL; /* the -r text, NULL without -r */

    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            print_usage(stdout);
            exit(0);
        }
        if (value == NULL)
            usage_error("missing value after option", argv[i]);
        if (strcmp(argv[i], "-n") == 0) {
            long n = strtol(value, &end, 10);
            if (*end != '\0' || n < 1 || n > LAUNCH_MAX_RANKS)
                usage_error("invalid rank count (-n)", value);
            options->nranks = (int)n;
        } else if (strcmp(argv[i], "-m") == 0) {
            if (strcmp(value, "root") != 0 && strcmp(value, "mpirun") != 0)
                usage_error("invalid mode (-m), expected root or mpirun:", value);
            options->use_mpirun = strcmp(value, "mpirun") == 0;
        } else if (strcmp(argv[i], "-p") == 0) {
            options->provider = value;
        } else if (strcmp(argv[i], "-t") == 0) {
            options->timeout_seconds = strtod(value, &end);
            if (*end != '\0' || options->timeout_seconds <= 0)
                usage_error("invalid timeout in seconds (-t)", value);
        } else if (strcmp(argv[i], "--mpirun") == 0) {
            options->mpirun_path = value;
        } else if (strcmp(argv[i], "-k") == 0) {
            long rank = strtol(value, &end, 10);
            if (*end != '\0' || rank < 0 || rank >= LAUNCH_MAX_RANKS)
                usage_error("invalid rank expected to be killed (-k)", value);
            options->killed_rank = (int)rank;
        } else if (strcmp(argv[i], "-H") == 0) {
            options->layout = value;
        } else if (strcmp(argv[i], "-R") == 0 || strcmp(argv[i], "--root") == 0) {
            if (value[0] == '\0' || strchr(value, ':') == NULL)
                usage_error("invalid root address (-R), expected HOST:PORT:", value);
            options->root = value;
        } else if (strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--ranks") == 0) {
            long first = strtol(value, &end, 10), last = -1;
            if (end != value && *end == '-')
                last = strtol(end + 1, &end, 10);
            if (*end != '\0' || first < 0 || last < first || last >= LAUNCH_MAX_RANKS)
                usage_error("invalid rank range (-r), expected FIRST-LAST:", value);
            options->first_rank = (int)first;
            options->last_rank = (int)last;
            range_text = value;
        } else {
            usage_error("invalid option", argv[i]);
        }
        i++;
    }
    if (options->nranks == 0)
        usage_error("missing rank count (-n)", "");
    if (i + 1 >= argc)
        usage_error("missing program after --", "");
    options->program_argv = argv + i + 1;
    if (options->layout != NULL && (options->use_mpirun || parse_layout(options) != 0))
        usage_error("invalid layout (-H) for the rank count, or in mpirun mode:", options->layout);
    if (!range_text) {
        options->first_rank = 0;
        options->last_rank = options->nranks - 1;
    } else if (options->root == NULL) {
        usage_error("missing root address (-R), which a rank range (-r) needs:", range_text);
    } else if (options->last_rank >= options->nranks) {
        usage_error("invalid rank range (-r), past the last rank of -n:", range_text);
    }
    if (options->root != NULL && options->use_mpirun)
        usage_error("invalid mode for a root address (-R), which needs root mode:", "mpirun");
    if (options->root != NULL && getenv("WEFT_JOB_KEY") == NULL)
        usage_error("missing WEFT_JOB_KEY: a root address (-R) needs the same WEFT_JOB_KEY on every host; root", options->root);
}

/*
 * Return a TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it for a bind to
 * port 0). Another process may take it before rank 0 listens. That is rare, because the kernel
 * spreads ephemeral ports out, and rank 0 then fails with an error rather than silently.
 */
static int find_free_port(void)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t length = sizeof address;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
        fprintf(stderr, "coll_launch: cannot find a free TCP port on 127.0.0.1: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return ntohs(address.sin_port);
}

/* Give the ranks a fresh shared secret, so no other process on this machine can join the
 * rendezvous, unless the caller set WEFT_JOB_KEY already. */
static void set_job_key(void)
{
    unsigned char secret[16];
    char text[2 * sizeof secret + 1];
    FILE *random = fopen("/dev/urandom", "rb");

    if (getenv("WEFT_JOB_KEY") != NULL)
        return;
    if (random == NULL || fread(secret, 1, sizeof secret, random) != sizeof secret) {
        fprintf(stderr, "coll_launch: cannot read /dev/urandom for WEFT_JOB_KEY: %s\n", strerror(errno));
        exit(1);
    }
    fclose(random);
    for (size_t i = 0; i < sizeof secret; i++)
        snprintf(text + 2 * i, 3, "%02x", secret[i]);
    setenv("WEFT_JOB_KEY", text, 1);
}

/* Fork and exec one process in process group *group (created by the first child). */
static pid_t spawn(char **argv, pid_t *group, int rank, int node)
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "coll_launch: fork failed: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        char rank_text[16];
        setpgid(0, *group);
        /* Die with the launcher, so no rank survives a launcher killed by CTest. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (rank >= 0) {
            snprintf(rank_text, sizeof rank_text, "%d", rank);
            setenv("WEFT_RANK", rank_text, 1);
        }
        if (node >= 0) {
            char hostid[32];
            snprintf(hostid, sizeof hostid, "vnode%d", node);
            setenv("WEFT_HOSTID", hostid, 1);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "coll_launch: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    /* Also set the group from the parent: whichever of the two runs first wins the race. */
    setpgid(pid, *group);
    if (*group == 0)
        *group = pid;
    return pid;
}

/*
 * Build the mpirun command line: options, -x for every WEFT_* variable, then the program.
 * *launcher_args receives the number of entries before the program's.
 */
static char **mpirun_argv(const launch_options_t *options, size_t *launcher_args)
{
    size_t program_length = 0, environ_length = 0;
    while (options->program_argv[program_length] != NULL)
        program_length++;
    while (environ[environ_length] != NULL)
        environ_length++;

    char **argv = calloc(16 + 2 * environ_length + program_length + 1, sizeof *argv);
    static char count_text[16];
    size_t n = 0;
    if (argv == NULL) {
        fprintf(stderr, "coll_launch: out of memory building the mpirun command line\n");
        exit(1);
    }
    snprintf(count_text, sizeof count_text, "%d", options->nranks);
    argv[n++] = (char *)options->mpirun_path;
    argv[n++] = "--oversubscribe";
    argv[n++] = "--bind-to";
    argv[n++] = "none";
    argv[n++] = "-np";
    argv[n++] = count_text;
    if (geteuid() == 0) /* Open MPI refuses to start as root without this */
        argv[n++] = "--allow-run-as-root";
    /* Open MPI's own daemons talk over loopback too, like every test of this suite. */
    argv[n++] = "--mca";
    argv[n++] = "oob_tcp_if_include";
    argv[n++] = "lo";
    for (size_t e = 0; e < environ_length; e++) {
        if (strncmp(environ[e], "WEFT_", 5) != 0 && strncmp(environ[e], "FI_TCP_IFACE=", 13) != 0)
            continue;
        argv[n++] = "-x";
        argv[n++] = strndup(environ[e], strcspn(environ[e], "="));
    }
    *launcher_args = n;
    for (size_t p = 0; p < program_length; p++)
        argv[n++] = options->program_argv[p];
    return argv;
}

/* Free what mpirun_argv allocated: the array and the variable name after each of its "-x". */
static void free_mpirun_argv(char **argv, size_t launcher_args)
{
    for (size_t i = 0; i + 1 < launcher_args; i++)
        if (strcmp(argv[i], "-x") == 0)
            free(argv[++i]);
    free(argv);
}

/* Send SIGTERM to the group, then SIGKILL to whatever is left after a grace period. */
static void end_group(pid_t group, launch_child_t *children, int nchildren)
{
    kill(-group, SIGTERM);
    double deadline = now_seconds() + LAUNCH_KILL_GRACE_SECONDS;
    while (now_seconds() < deadline) {
        int running = 0;
        for (int i = 0; i < nchildren; i++) {
            if (!children[i].finished && waitpid(children[i].pid, &children[i].status, WNOHANG) == children[i].pid)
                children[i].finished = 1;
            running += !children[i].finished;
        }
        if (running == 0)
            return;
        usleep(20000);
    }
    kill(-group, SIGKILL);
}

/* Wait for every child; end the group on timeout, interrupt, or too long after a failure.
 * Returns the number of children that did not exit with status 0. */
static int supervise(const launch_options_t *options, pid_t group, launch_child_t *children, int nchildren)
{
    double started = now_seconds();
    double deadline = started + options->timeout_seconds;
    const char *reason = NULL;
    int running = nchildren;
    int failure_seen = 0;

    while (running > 0) {
        int status;
        pid_t pid = waitpid(-group, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < nchildren; i++) {
                if (children[i].pid != pid)
                    continue;
                children[i].finished = 1;
                children[i].status = status;
                running--;
                int failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
                if (failed && !failure_seen && now_seconds() + LAUNCH_FAILURE_GRACE_SECONDS < deadline) {
                    failure_seen = 1;
                    deadline = now_seconds() + LAUNCH_FAILURE_GRACE_SECONDS;
                }
            }
            continue;
        }
        if (interrupted_signal != 0)
            reason = "the launcher was interrupted";
        else if (now_seconds() > deadline && failure_seen)
            reason = "they outlived a failed rank by the grace period";
        else if (now_seconds() > deadline)
            reason = "the timeout (-t) expired";
        if (reason != NULL) {
            fprintf(stderr, "coll_launch: ending %d running process(es) of group %d after %.0f s: %s\n", running,
                    (int)group, now_seconds() - started, reason);
            end_group(group, children, nchildren);
            break;
        }
        usleep(20000);
    }

    int failures = 0;
    for (int i = 0; i < nchildren; i++) {
        const char *process_kind = options->use_mpirun ? "mpirun" : "rank";
        int id = options->use_mpirun ? 0 : options->first_rank + i;
        if (!children[i].finished && waitpid(children[i].pid, &children[i].status, 0) == children[i].pid)
            children[i].finished = 1;
        int status = children[i].status;
        int expect_kill = !options->use_mpirun && id == options->killed_rank;
        if (!children[i].finished) {
            fprintf(stderr, "coll_launch: %s %d (pid %d) could not be reaped\n", process_kind, id, (int)children[i].pid);
            failures++;
        } else if (expect_kill) {
            if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
                fprintf(stderr, "coll_launch: rank %d (pid %d) should have been killed by SIGKILL but was not\n", id,
                        (int)children[i].pid);
                failures++;
            }
        } else if (WIFSIGNALED(status)) {
            fprintf(stderr, "coll_launch: %s %d (pid %d) was killed by signal %d (%s)\n", process_kind, id,
                    (int)children[i].pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
            failures++;
        } else if (WEXITSTATUS(status) != 0) {
            fprintf(stderr, "coll_launch: %s %d (pid %d) exited with status %d\n", process_kind, id, (int)children[i].pid,
                    WEXITSTATUS(status));
            failures++;
        }
    }
    return failures;
}

int main(int argc, char **argv)
{
    launch_options_t options;
    launch_child_t children[LAUNCH_MAX_RANKS] = {{0}};
    int nchildren = 0;
    pid_t group = 0;

    parse_options(argc, argv, &options);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);
    signal(SIGHUP, on_interrupt);

    if (options.provider != NULL)
        setenv("WEFT_OFI_PROVIDER", options.provider, 1);
    /*
     * Keep all test traffic on loopback: the tcp provider would otherwise open the first interface
     * it finds, and the bootstrap would advertise a non-loopback address. A value set by the
     * caller wins.
     */
    if (options.root == NULL) {
        setenv("FI_TCP_IFACE", "lo", 0);
        setenv("WEFT_SOCKET_IFNAME", "lo", 0);
    }

    if (options.use_mpirun) {
        /* Leftover WEFT_ROOT variables would win over PMIx in weft_comm_init_env. */
        unsetenv("WEFT_ROOT");
        unsetenv("WEFT_RANK");
        unsetenv("WEFT_SIZE");
        size_t launcher_args = 0;
        char **mpirun = mpirun_argv(&options, &launcher_args);
        children[0].pid = spawn(mpirun, &group, -1, -1);
        free_mpirun_argv(mpirun, launcher_args);
        nchildren = children[0].pid > 0;
    } else {
        char root[64], size[16];
        int local_ranks = options.last_rank - options.first_rank + 1;
        set_job_key();
        if (options.root == NULL)
            snprintf(root, sizeof root, "127.0.0.1:%d", find_free_port());
        snprintf(size, sizeof size, "%d", options.nranks);
        setenv("WEFT_ROOT", options.root != NULL ? options.root : root, 1);
        setenv("WEFT_SIZE", size, 1);
        for (int rank = options.first_rank; rank <= options.last_rank; rank++) {
            children[nchildren].pid =
                spawn(options.program_argv, &group, rank, options.layout != NULL ? options.node_of[rank] : -1);
            if (children[nchildren].pid < 0)
                break;
            nchildren++;
        }
        if (nchildren > 0 && nchildren < local_ranks) {
            /* The started ranks would only wait for the missing ones until WEFT_TIMEOUT. */
            fprintf(stderr, "coll_launch: only %d of %d ranks could be started; ending them\n", nchildren,
                    local_ranks);
            end_group(group, children, nchildren);
            return 1;
        }
    }
    if (nchildren == 0)
        return 1;
    return supervise(&options, group, children, nchildren) == 0 ? 0 : 1;
}
