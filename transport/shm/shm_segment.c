/*
 * Shared-memory segments of the shm transport: naming, creation, mapping the peers' segments, the
 * cross-memory-attach probe, and removal.
 *
 * A segment's name is "/weft-shm-PID-N-RANK-NONCE": the creator's pid, a per-process counter, the
 * rank and 64 random bits. The name travels to the peers in the published address, so it needs to
 * derive from nothing the peers share, and the random part makes it unguessable for other local
 * users. The file has mode 0600. Each peer increments the header's mapped counter after it mapped
 * the segment, and the last one removes the name, so after a healthy connect nothing is left in
 * /dev/shm even if every process is killed later. A process killed before all peers mapped its
 * segment leaves the file behind. A later process with the same pid removes such files before it
 * creates its first segment.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"

#define WF_SHM_NAME_PREFIX "weft-shm-"

static pthread_once_t stale_segments_once = PTHREAD_ONCE_INIT;
static unsigned segment_counter;
static int cma_denial_logged;

uint64_t wf_shm_ring_capacity(int nranks)
{
    uint64_t share = WF_SHM_RING_BUDGET / (uint64_t)(nranks > 0 ? nranks : 1);
    uint64_t capacity = WF_SHM_RING_MAX;
    while (capacity > share && capacity > WF_SHM_RING_MIN)
        capacity /= 2;
    return capacity;
}

size_t wf_shm_ring_stride(uint64_t capacity)
{
    size_t bytes = wf_shm_ring_bytes(capacity);
    return (bytes + WF_SHM_PAGE - 1) & ~(size_t)(WF_SHM_PAGE - 1);
}

size_t wf_shm_ring_offset(int sender, uint64_t capacity)
{
    return WF_SHM_PAGE + (size_t)sender * wf_shm_ring_stride(capacity);
}

size_t wf_shm_segment_bytes(int nranks, uint64_t capacity)
{
    return wf_shm_ring_offset(nranks, capacity);
}

/*
 * No live process other than this one can own names with this pid, and before this process's
 * first segment none of them is its own, so they are left over from a killed process.
 */
static void remove_stale_segments(void)
{
    char prefix[48];
    int length = snprintf(prefix, sizeof(prefix), WF_SHM_NAME_PREFIX "%d-", (int)getpid());
    DIR *directory = opendir("/dev/shm");
    if (directory == NULL)
        return;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (strncmp(entry->d_name, prefix, (size_t)length) != 0)
            continue;
        if (unlinkat(dirfd(directory), entry->d_name, 0) == 0)
            WF_SHM_INFO("removed /dev/shm/%s, a segment left by an earlier process with this process's id",
                        entry->d_name);
    }
    closedir(directory);
}

static uint64_t random_nonce(void)
{
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) == (ssize_t)sizeof(nonce) && nonce != 0)
        return nonce;
    /* Without entropy yet, the pid and counter in the name still make it unique. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ((uint64_t)now.tv_nsec << 20) ^ (uint64_t)now.tv_sec ^ ((uint64_t)getpid() << 40) ^ 1;
}

/*
 * Halve the ring capacity until every local rank's segment fits in the free space of the file
 * system behind fd. tmpfs allocates pages on first touch, and touching a page beyond its size
 * raises SIGBUS, so it is better to start with smaller rings.
 */
static uint64_t fit_capacity(struct wf_transport *t, int fd, uint64_t capacity)
{
    struct statvfs fs;
    if (fstatvfs(fd, &fs) != 0)
        return capacity;
    uint64_t available = (uint64_t)fs.f_bavail * fs.f_frsize;
    uint64_t wanted = capacity;
    while (capacity > WF_SHM_RING_MIN && (uint64_t)t->nranks * wf_shm_segment_bytes(t->nranks, capacity) > available)
        capacity /= 2;
    uint64_t needed = (uint64_t)t->nranks * wf_shm_segment_bytes(t->nranks, capacity);
    if (capacity != wanted)
        WF_SHM_INFO("rank %d: rings of %llu KiB instead of %llu KiB, because /dev/shm has %llu MiB free",
                    t->rank, (unsigned long long)(capacity >> 10), (unsigned long long)(wanted >> 10),
                    (unsigned long long)(available >> 20));
    if (needed > available)
        WF_SHM_WARN("rank %d: /dev/shm has %llu MiB free, but %d ranks may use up to %llu MiB of segments; a "
                    "process touching a page beyond the limit dies with SIGBUS, so enlarge /dev/shm or set "
                    "WEFT_TRANSPORT=ofi",
                    t->rank, (unsigned long long)(available >> 20), t->nranks, (unsigned long long)(needed >> 20));
    return capacity;
}

int wf_shm_segment_create(struct wf_transport *t, char *err, size_t errlen)
{
    pthread_once(&stale_segments_once, remove_stale_segments);
    uint64_t nonce = random_nonce();
    unsigned counter = __atomic_fetch_add(&segment_counter, 1, __ATOMIC_RELAXED);
    snprintf(t->name, sizeof(t->name), "/" WF_SHM_NAME_PREFIX "%d-%u-%d-%016llx", (int)getpid(), counter, t->rank,
             (unsigned long long)nonce);

    int fd = shm_open(t->name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        int error = errno;
        wf_xfer_format(err, errlen, "shm_open of %s failed on rank %d: %s; check that /dev/shm is mounted and "
                       "writable, or set WEFT_TRANSPORT=ofi", t->name, t->rank, strerror(error));
        return -error;
    }
    t->capacity = fit_capacity(t, fd, wf_shm_ring_capacity(t->nranks));
    size_t bytes = wf_shm_segment_bytes(t->nranks, t->capacity);
    const char *step = "ftruncate";
    void *base = MAP_FAILED;
    if (ftruncate(fd, (off_t)bytes) == 0) {
        step = "mmap";
        base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    int error = errno;
    close(fd);
    if (base == MAP_FAILED) {
        shm_unlink(t->name);
        wf_xfer_format(err, errlen, "%s of the %zu-byte shared-memory segment %s failed on rank %d: %s", step, bytes,
                       t->name, t->rank, strerror(error));
        return -error;
    }
    t->segment = base;
    t->segment_bytes = bytes;

    /* A new tmpfs file reads as zeros, which is the initial state of every ring and doorbell. */
    wf_shm_header_t *header = t->segment;
    header->nonce = nonce;
    header->pid = (int32_t)getpid();
    header->rank = (uint32_t)t->rank;
    header->nranks = (uint32_t)t->nranks;
    header->capacity = t->capacity;
    header->polls_rings = t->polled != NULL;
    atomic_store_explicit(&header->mapped, 0, memory_order_relaxed);
    header->magic = WF_SHM_SEGMENT_MAGIC;
    for (int s = 0; s < t->nranks; s++)
        wf_shm_ring_attach_consumer(&t->peers[s].in,
                                    (wf_shm_ring_t *)((char *)base + wf_shm_ring_offset(s, t->capacity)), t->capacity);
    return 0;
}

static void remove_name(struct wf_transport *t)
{
    if (t->unlinked)
        return;
    t->unlinked = 1;
    if (shm_unlink(t->name) != 0 && errno != ENOENT)
        WF_SHM_WARN("rank %d: shm_unlink of %s failed: %s; remove /dev/shm%s by hand", t->rank, t->name,
                    strerror(errno), t->name);
}

/* Map one peer's header page and the ring this rank writes into. Returns 0 or a negative errno. */
static int map_peer(struct wf_transport *t, int p, const wf_shm_address_t *address)
{
    wf_shm_peer_t *peer = &t->peers[p];
    int fd = shm_open(address->name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int error = errno;
        wf_shm_set_error(t, "rank %d cannot open the shared-memory segment %s of rank %d (pid %d): %s; every rank "
                         "must run as the same user on this node", t->rank, address->name, p, (int)address->pid,
                         strerror(error));
        return -error;
    }
    struct stat status = {0};
    size_t expected = wf_shm_segment_bytes(t->nranks, address->capacity);
    size_t ring_offset = wf_shm_ring_offset(t->rank, address->capacity);
    size_t ring_bytes = wf_shm_ring_stride(address->capacity);
    int rc = 0;
    if (fstat(fd, &status) != 0 || (size_t)status.st_size < expected) {
        wf_shm_set_error(t, "the shared-memory segment %s of rank %d has %lld bytes, expected %zu", address->name, p,
                         (long long)status.st_size, expected);
        rc = -EPROTO;
    }
    if (rc == 0) {
        peer->header = mmap(NULL, WF_SHM_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        peer->ring_map = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)ring_offset);
        if (peer->header == MAP_FAILED || peer->ring_map == MAP_FAILED)
            rc = -errno;
        if (peer->header == MAP_FAILED)
            peer->header = NULL;
        if (peer->ring_map == MAP_FAILED)
            peer->ring_map = NULL;
        if (rc != 0)
            wf_shm_set_error(t, "mmap of the shared-memory segment %s of rank %d failed: %s", address->name, p,
                             strerror(-rc));
    }
    close(fd);
    if (rc != 0)
        return rc;
    peer->ring_map_bytes = ring_bytes;
    if (peer->header->magic != WF_SHM_SEGMENT_MAGIC || peer->header->nonce != address->nonce) {
        wf_shm_set_error(t, "the shared-memory segment %s does not belong to rank %d (wrong magic or nonce); a "
                         "stale file may have replaced it", address->name, p);
        return -EPROTO;
    }
    wf_shm_ring_attach_producer(&peer->out, peer->ring_map, address->capacity);
    peer->rings_doorbell = peer->header->polls_rings == 0;
    return 0;
}

int wf_shm_segment_map_peers(struct wf_transport *t, const wf_shm_address_t *addresses)
{
    for (int p = 0; p < t->nranks; p++) {
        wf_shm_peer_t *peer = &t->peers[p];
        if (!wf_shm_serves(t, p))
            continue;
        peer->pid = addresses[p].pid;
        peer->capacity = addresses[p].capacity;
        if (p == t->rank) {
            peer->header = t->segment;
            peer->rings_doorbell = t->polled == NULL;
            wf_shm_ring_attach_producer(&peer->out, peer->in.shared, t->capacity);
            continue;
        }
        int rc = map_peer(t, p, &addresses[p]);
        if (rc != 0)
            return rc;
        /* The last peer to map a segment removes its name, because no rank needs it afterwards. */
        uint32_t before = atomic_fetch_add_explicit(&peer->header->mapped, 1, memory_order_acq_rel);
        if (before + 2 == (uint32_t)t->served_count && shm_unlink(addresses[p].name) != 0 && errno != ENOENT)
            WF_SHM_WARN("rank %d: shm_unlink of %s of rank %d failed: %s", t->rank, addresses[p].name, p,
                        strerror(errno));
    }
    if (t->served_count == 1)
        remove_name(t);
    return 0;
}

void wf_shm_probe_cma(struct wf_transport *t, const wf_shm_address_t *addresses)
{
    for (int p = 0; p < t->nranks; p++) {
        if (!wf_shm_serves(t, p))
            continue;
        int result = WF_SHM_CMA_REFUSED;
        int error = 0;
        if (t->cma_allowed) {
            /* Read the nonce from the peer's own mapping of its header: it proves the pid is that peer. */
            uint64_t nonce = 0;
            error = -wf_shm_cma_read(t, addresses[p].pid, &nonce,
                                     addresses[p].header_address + offsetof(wf_shm_header_t, nonce), sizeof(nonce));
            if (error == 0 && nonce == addresses[p].nonce)
                result = WF_SHM_CMA_ALLOWED;
            else if (error == 0)
                error = EPROTO;
        }
        /* Reading and writing another process's memory pass the same ptrace access check. */
        t->peers[p].cma_writable = result == WF_SHM_CMA_ALLOWED;
        atomic_store_explicit(&t->segment->pullable[p], (uint8_t)result, memory_order_release);
        if (error != 0 && !__atomic_exchange_n(&cma_denial_logged, 1, __ATOMIC_RELAXED))
            WF_SHM_INFO("rank %d cannot access the memory of rank %d (pid %d) by cross-memory attach: %s; messages "
                        "above %zu bytes go through the shared-memory rings instead (ptrace restrictions such as "
                        "Yama's ptrace_scope or a seccomp filter cause this)",
                        t->rank, p, (int)addresses[p].pid, strerror(error), t->peers[p].inline_max);
    }
}

void wf_shm_segment_release(struct wf_transport *t)
{
    for (int p = 0; t->peers != NULL && p < t->nranks; p++) {
        wf_shm_peer_t *peer = &t->peers[p];
        if (p != t->rank && peer->header != NULL)
            munmap(peer->header, WF_SHM_PAGE);
        if (peer->ring_map != NULL)
            munmap(peer->ring_map, peer->ring_map_bytes);
        peer->header = NULL;
        peer->ring_map = NULL;
    }
    if (t->segment != NULL) {
        munmap(t->segment, t->segment_bytes);
        t->segment = NULL;
        remove_name(t);
    }
}
