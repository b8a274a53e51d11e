/*
 * The locked-memory limit check of transports that pin the memory they register (libfabric on
 * verbs, efa and similar providers, and a native verbs transport). Pinned pages count against
 * RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK, and a registration beyond the limit fails.
 */
#ifndef WF_MEMLOCK_H
#define WF_MEMLOCK_H

#include <stddef.h>
#include <stdint.h>

/*
 * Log one WARN when the soft RLIMIT_MEMLOCK is finite, below needed bytes, and the process lacks
 * CAP_IPC_LOCK. The warning names the rank, the limit, the estimate and how to raise the limit.
 * A non-NULL message receives the same sentence, or "" without a warning. Returns 1 when it
 * warned, else 0.
 */
int wf_memlock_check(int rank, uint64_t needed, char *message, size_t length);

/*
 * Non-zero when a transport whose provider_name() is provider pins registered memory: everything
 * except weft's own shm transport and libfabric's shm, tcp, sockets and udp providers, which copy.
 * A route transport's name lists both parts, and it pins when its inter-node part does.
 */
int wf_memlock_provider_pins(const char *provider);

#endif /* WF_MEMLOCK_H */
