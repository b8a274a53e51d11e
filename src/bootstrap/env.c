/*
 * Choosing a bootstrap from the environment, and the helpers every bootstrap shares.
 *
 * The order is: WEFT_ROOT with WEFT_RANK and WEFT_SIZE, then PMIx, then torchrun's MASTER_ADDR,
 * MASTER_PORT, RANK and WORLD_SIZE. PMIx is chosen when PMIX_RANK or PMIX_NAMESPACE is set, which
 * is checked before PMIx_Init so that a plain run never tries to reach a server. Under torchrun
 * weft's root listens on MASTER_PORT + 1, because torchrun's own store listens on MASTER_PORT.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "bootstrap/internal.h"
#include "bootstrap/sha256.h"
#include "bootstrap/socket.h"
#include "log.h"
#include "param.h"

/* ---- shared helpers -------------------------------------------------------------------------- */

weft_result_t wf_boot_error(char *err, size_t errlen, weft_result_t code, const char *format, ...)
{
    if (err && errlen > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(err, errlen, format, args);
        va_end(args);
    }
    return code;
}

weft_result_t wf_boot_fail(wf_bootstrap_common_t *b, weft_result_t code, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(b->last_error, sizeof(b->last_error), format, args);
    va_end(args);
    WF_ERROR(WF_SUB_BOOT, "%s", b->last_error);
    return code;
}

const char *wf_bootstrap_last_error(const wf_bootstrap_t *b)
{
    return b ? ((const wf_bootstrap_common_t *)b)->last_error : "";
}

int wf_boot_random(void *buf, size_t size)
{
    unsigned char *bytes = buf;
    while (size > 0) {
        ssize_t n = getrandom(bytes, size, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        bytes += n;
        size -= (size_t)n;
    }
    return 0;
}

void wf_boot_secret_from_key(const char *key, unsigned char secret[WF_BOOT_SECRET_SIZE])
{
    static const char label[] = "weft-job-key:";
    wf_sha256_t ctx;
    wf_sha256_init(&ctx);
    wf_sha256_update(&ctx, label, sizeof(label) - 1);
    wf_sha256_update(&ctx, key, strlen(key));
    wf_sha256_final(&ctx, secret);
}

/* ---- TCP jobs named by an address (WEFT_ROOT, torchrun) -------------------------------------- */

static void job_secret(unsigned char secret[WF_BOOT_SECRET_SIZE])
{
    static atomic_int warned;
    const char *key = wf_param_str(WF_PARAM_JOB_KEY);
    if (key && key[0]) {
        wf_boot_secret_from_key(key, secret);
        return;
    }
    memset(secret, 0, WF_BOOT_SECRET_SIZE);
    if (!atomic_exchange(&warned, 1))
        WF_WARN(WF_SUB_BOOT, "WEFT_JOB_KEY is not set, so any process that can reach the rendezvous port can join "
                             "the job; set WEFT_JOB_KEY to the same secret value on every rank to prevent that");
}

/*
 * Rank 0 listens on the loopback address itself when the job is local to this host, else on the
 * wildcard address of the same family, because the name may resolve differently on other hosts.
 * It then reaches its own root through loopback.
 * NOTE: the unit tests use loopback roots only; the wildcard case runs only in multi-host jobs.
 */
static void root_addresses(const struct sockaddr_storage *named, struct sockaddr_storage *listen_address,
                           struct sockaddr_storage *self_address)
{
    int port = wf_addr_port((const struct sockaddr *)named);
    if (wf_addr_is_loopback((const struct sockaddr *)named)) {
        *listen_address = *named;
        *self_address = *named;
        return;
    }
    memset(listen_address, 0, sizeof(*listen_address));
    memset(self_address, 0, sizeof(*self_address));
    if (named->ss_family == AF_INET6) {
        struct sockaddr_in6 *any = (struct sockaddr_in6 *)listen_address, *self = (struct sockaddr_in6 *)self_address;
        any->sin6_family = self->sin6_family = AF_INET6;
        any->sin6_addr = in6addr_any;
        self->sin6_addr = in6addr_loopback;
    } else {
        struct sockaddr_in *any = (struct sockaddr_in *)listen_address, *self = (struct sockaddr_in *)self_address;
        any->sin_family = self->sin_family = AF_INET;
        any->sin_addr.s_addr = htonl(INADDR_ANY);
        self->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    wf_addr_set_port((struct sockaddr *)listen_address, port);
    wf_addr_set_port((struct sockaddr *)self_address, port);
}

static weft_result_t start_tcp_job(wf_bootstrap_t **out, const char *method, const char *display, const char *host,
                                   int port, int rank, int nranks, int timeout_s, char *err, size_t errlen)
{
    struct sockaddr_storage named, listen_address, self_address, bound;
    unsigned char secret[WF_BOOT_SECRET_SIZE];
    char reason[256];

    if (wf_addr_resolve(host, port, &named, reason, sizeof(reason)) < 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "invalid %s: %s", display, reason);
    job_secret(secret);

    const struct sockaddr *connect_address = (struct sockaddr *)&named;
    wf_root_t *root = NULL;
    weft_result_t result = WEFT_SUCCESS;
    if (rank == 0) {
        root_addresses(&named, &listen_address, &self_address);
        result = wf_root_start((struct sockaddr *)&listen_address, display, secret, nranks, timeout_s, &bound, &root,
                               err, errlen);
        connect_address = (struct sockaddr *)&self_address;
    }
    if (result == WEFT_SUCCESS)
        result = wf_tcp_bootstrap_connect(out, method, connect_address, secret, rank, nranks, timeout_s, root, err,
                                          errlen);
    explicit_bzero(secret, sizeof(secret));
    return result;
}

static weft_result_t check_rank_size(const char *rank_name, int rank, const char *size_name, int nranks, char *err,
                                     size_t errlen)
{
    if (nranks < 1 || nranks > WF_BOOT_MAX_RANKS)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "%s=%d is invalid: the TCP rendezvous serves 1 to %d ranks", size_name, nranks,
                             WF_BOOT_MAX_RANKS);
    if (rank < 0 || rank >= nranks)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "%s=%d is out of range for %s=%d; ranks are numbered 0 to %d", rank_name, rank,
                             size_name, nranks, nranks - 1);
    return WEFT_SUCCESS;
}

static weft_result_t from_weft_root(wf_bootstrap_t **out, const char *root, int timeout_s, char *err, size_t errlen)
{
    int rank = (int)wf_param_int(WF_PARAM_RANK), nranks = (int)wf_param_int(WF_PARAM_SIZE), port;
    char host[256], display[320];

    if (rank < 0 || nranks < 0) {
        const char *missing = rank < 0 && nranks < 0 ? "WEFT_RANK and WEFT_SIZE are"
                              : rank < 0             ? "WEFT_RANK is"
                                                     : "WEFT_SIZE is";
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "WEFT_ROOT=%s is set but %s missing; set WEFT_RANK to this process's rank and WEFT_SIZE "
                             "to the number of ranks",
                             root, missing);
    }
    weft_result_t result = check_rank_size("WEFT_RANK", rank, "WEFT_SIZE", nranks, err, errlen);
    if (result != WEFT_SUCCESS)
        return result;
    if (wf_addr_parse(root, "WEFT_ROOT", host, sizeof(host), &port, err, errlen) < 0)
        return WEFT_ERR_INVALID_ARGUMENT;
    snprintf(display, sizeof(display), "WEFT_ROOT=%s", root);
    return start_tcp_job(out, "tcp", display, host, port, rank, nranks, timeout_s, err, errlen);
}

/* Parse a whole decimal integer from min to max; returns -1 when text is not one. */
static int parse_int(const char *text, long min, long max, int *value)
{
    char *end;
    errno = 0;
    long parsed = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < min || parsed > max)
        return -1;
    *value = (int)parsed;
    return 0;
}

static weft_result_t from_torchrun(wf_bootstrap_t **out, int timeout_s, char *err, size_t errlen)
{
    static const char *const names[] = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"};
    const char *values[4];
    char missing[64] = "";
    for (int i = 0; i < 4; i++) {
        values[i] = getenv(names[i]);
        if (!values[i] || !values[i][0])
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s", missing[0] ? ", " : "",
                     names[i]);
    }
    if (missing[0])
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "torchrun variables are incomplete: %s missing; start the job with torchrun, or set "
                             "WEFT_ROOT, WEFT_RANK and WEFT_SIZE instead",
                             missing);

    int port, rank, nranks;
    if (parse_int(values[1], 1, 65534, &port) < 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "MASTER_PORT=%s is invalid: weft listens on MASTER_PORT+1, so it must be a number from "
                             "1 to 65534",
                             values[1]);
    if (parse_int(values[2], INT_MIN, INT_MAX, &rank) < 0 || parse_int(values[3], INT_MIN, INT_MAX, &nranks) < 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "RANK=%s or WORLD_SIZE=%s is not an integer",
                             values[2], values[3]);
    weft_result_t result = check_rank_size("RANK", rank, "WORLD_SIZE", nranks, err, errlen);
    if (result != WEFT_SUCCESS)
        return result;

    /* torchrun accepts a bare or bracketed IPv6 address in MASTER_ADDR. */
    char host[256], display[320];
    const char *address = values[0];
    size_t length = strlen(address);
    if (address[0] == '[' && length > 2 && address[length - 1] == ']') {
        address++;
        length -= 2;
    }
    if (length >= sizeof(host))
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "MASTER_ADDR is longer than %zu characters",
                             sizeof(host) - 1);
    memcpy(host, address, length);
    host[length] = '\0';
    snprintf(display, sizeof(display), "MASTER_ADDR=%s port %d (MASTER_PORT+1)", values[0], port + 1);
    return start_tcp_job(out, "torchrun", display, host, port + 1, rank, nranks, timeout_s, err, errlen);
}

static int torchrun_detected(void)
{
    return getenv("MASTER_ADDR") || getenv("MASTER_PORT") || getenv("RANK") || getenv("WORLD_SIZE");
}

weft_result_t wf_bootstrap_from_env(wf_bootstrap_t **out, int timeout_s, char *err, size_t errlen)
{
    if (!out)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "the bootstrap pointer is NULL");
    if (timeout_s <= 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT, "timeout of %d s is invalid; it must be positive",
                             timeout_s);
    *out = NULL;

    const char *root = wf_param_str(WF_PARAM_ROOT);
    if (root && root[0])
        return from_weft_root(out, root, timeout_s, err, errlen);
    if (wf_param_int(WF_PARAM_RANK) >= 0 || wf_param_int(WF_PARAM_SIZE) >= 0)
        return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                             "%s is set but WEFT_ROOT is not; set WEFT_ROOT=host:port to the address where rank 0 "
                             "listens",
                             wf_param_int(WF_PARAM_RANK) >= 0 ? "WEFT_RANK" : "WEFT_SIZE");

    const char *pmix_variable = getenv("PMIX_RANK") ? "PMIX_RANK" : getenv("PMIX_NAMESPACE") ? "PMIX_NAMESPACE" : NULL;
    if (pmix_variable) {
#ifdef WEFT_HAVE_PMIX
        return wf_pmix_bootstrap_create(out, timeout_s, err, errlen);
#else
        if (!torchrun_detected())
            return wf_boot_error(err, errlen, WEFT_ERR_UNSUPPORTED,
                                 "the process was started by a PMIx launcher (%s is set) but this weft was built "
                                 "without PMIx; rebuild with libpmix-dev installed, or set WEFT_ROOT, WEFT_RANK and "
                                 "WEFT_SIZE",
                                 pmix_variable);
#endif
    }
    if (torchrun_detected())
        return from_torchrun(out, timeout_s, err, errlen);
    return wf_boot_error(err, errlen, WEFT_ERR_INVALID_ARGUMENT,
                         "no bootstrap found in the environment: set WEFT_ROOT=host:port, WEFT_RANK and WEFT_SIZE; "
                         "or start the job with a PMIx launcher (mpirun, srun --mpi=pmix); or with torchrun");
}
