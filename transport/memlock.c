/*
 * RLIMIT_MEMLOCK check at init, for transports that pin registered memory. See memlock.h.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"
#include "memlock.h"

#define CAP_IPC_LOCK_BIT 14 /* linux/capability.h */

/* Non-zero when CAP_IPC_LOCK is in the effective set: the kernel then ignores RLIMIT_MEMLOCK for pinning. */
static int has_ipc_lock(void)
{
    FILE *file = fopen("/proc/self/status", "r");
    if (file == NULL)
        return 0;
    char line[256];
    unsigned long long effective = 0;
    int found = 0;
    while (!found && fgets(line, sizeof(line), file) != NULL)
        found = sscanf(line, "CapEff: %llx", &effective) == 1;
    fclose(file);
    return found && (effective >> CAP_IPC_LOCK_BIT & 1u);
}

/* Print bytes as "N bytes (X MiB)". */
static void describe(uint64_t bytes, char *out, size_t length)
{
    snprintf(out, length, "%llu bytes (%.1f MiB)", (unsigned long long)bytes, (double)bytes / (1024.0 * 1024.0));
}

int wf_memlock_check(int rank, uint64_t needed, char *message, size_t length)
{
    if (message != NULL && length > 0)
        message[0] = '\0';
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY || (uint64_t)limit.rlim_cur >= needed)
        return 0;
    if (has_ipc_lock()) {
        WF_TRACE(WF_SUB_INIT, "rank %d: the memlock limit %llu bytes is below weft's estimate of %llu, but the "
                              "process has CAP_IPC_LOCK, so the limit does not apply",
                 rank, (unsigned long long)limit.rlim_cur, (unsigned long long)needed);
        return 0;
    }
    char have[64], want[64], text[600];
    describe((uint64_t)limit.rlim_cur, have, sizeof(have));
    describe(needed, want, sizeof(want));
    snprintf(text, sizeof(text),
             "rank %d: the locked-memory limit (RLIMIT_MEMLOCK, ulimit -l) is %s, below the %s weft estimates it "
             "registers for its own buffers (WEFT_SCRATCH_KEEP scratch, ring slots, control and eager buffers), "
             "before any application buffer; registrations beyond the limit fail. Raise it: 'ulimit -l unlimited' "
             "in the job script, 'memlock unlimited' in /etc/security/limits.conf, or the launcher's setting "
             "(systemd LimitMEMLOCK, Slurm PropagateResourceLimits)",
             rank, have, want);
    WF_WARN(WF_SUB_INIT, "%s", text);
    if (message != NULL && length > 0)
        snprintf(message, length, "%s", text);
    return 1;
}

static int copies(const char *name, size_t length)
{
    static const char *const copying[] = {"shm", "tcp", "sockets", "udp", "net"};
    for (size_t i = 0; i < sizeof(copying) / sizeof(copying[0]); i++) {
        size_t n = strlen(copying[i]);
        /* "shm", "shm (weft)", "tcp;ofi_rxm", "udp;ofi_rxd": the name up to a space or ';'. */
        if (length >= n && strncmp(name, copying[i], n) == 0 && (length == n || name[n] == ';' || name[n] == ' '))
            return 1;
    }
    return 0;
}

int wf_memlock_provider_pins(const char *provider)
{
    if (provider == NULL || provider[0] == '\0')
        return 0;
    /* The route transport: "<local> inside nodes, <remote> between nodes"; the remote part decides. */
    const char *inside = strstr(provider, " inside nodes, ");
    const char *between = strstr(provider, " between nodes");
    if (inside != NULL && between != NULL && between > inside) {
        const char *remote = inside + strlen(" inside nodes, ");
        return !copies(remote, (size_t)(between - remote));
    }
    return !copies(provider, strlen(provider));
}
