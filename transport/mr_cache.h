/*
 * Registration cache: user buffers are registered once and reused across collectives.
 *
 * Entries are keyed by address range; a lookup of [ptr, ptr+length) hits when a cached region
 * covers it. The cache holds at most WEFT_MR_CACHE_SIZE registrations in use-order and deregisters
 * the least recently used one beyond that (never one that is pinned by an in-flight operation).
 *
 * A registration is only valid while the virtual range still maps the pages it pinned. A memory
 * monitor observes munmap, mremap, madvise(MADV_DONTNEED/FREE/REMOVE), mmap(MAP_FIXED) and brk
 * shrinking in this process, including the calls glibc's free() makes internally, and the cache
 * drops every entry that overlaps a released range before its next lookup. So free() followed by a
 * malloc() that returns the same address never reuses the old registration.
 */
#ifndef WF_MR_CACHE_H
#define WF_MR_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

typedef struct wf_mr_cache wf_mr_cache_t;

/* Register and deregister through this pair, so the cache works with any transport. */
typedef int (*wf_mr_register_fn)(void *arg, void *ptr, size_t length, wf_mr_t *mr);
typedef int (*wf_mr_deregister_fn)(void *arg, wf_mr_t *mr);

typedef struct {
    size_t max_entries; /* at most 1000000; 0 caches nothing, so every acquire registers */
    wf_mr_register_fn reg;
    wf_mr_deregister_fn dereg;
    void *arg;
    int monitor; /* 1: install the memory monitor (required for correctness); 0: tests only */
} wf_mr_cache_config_t;

/*
 * Returns 0, -EINVAL for an invalid config, -ENOMEM, or -ENOTSUP when config->monitor is set and
 * the memory monitor cannot be installed (the caller then registers per call).
 */
int wf_mr_cache_create(const wf_mr_cache_config_t *config, wf_mr_cache_t **out);
/* Deregister everything. Entries still in use are a caller bug and are reported at WARN. */
void wf_mr_cache_destroy(wf_mr_cache_t *cache);

/*
 * Return in *mr a registration covering [ptr, ptr+length), registering it on a miss. The region
 * registered on a miss is page-aligned around the request. The entry stays pinned (not evicted)
 * until wf_mr_cache_release. Returns 0 or the negative code of the failed registration.
 */
int wf_mr_cache_acquire(wf_mr_cache_t *cache, const void *ptr, size_t length, const wf_mr_t **mr);
void wf_mr_cache_release(wf_mr_cache_t *cache, const wf_mr_t *mr);

typedef struct {
    uint64_t hits, misses, evictions, invalidations;
    size_t entries;
} wf_mr_cache_stats_t;

void wf_mr_cache_get_stats(const wf_mr_cache_t *cache, wf_mr_cache_stats_t *stats);

/*
 * Process-wide memory monitor. wf_memory_monitor_install patches the libc entry points once
 * (x86_64 only; elsewhere it returns -1 and the cache must not be used across frees). The
 * generation counter increases on every observed release.
 */
int wf_memory_monitor_install(void);
uint64_t wf_memory_monitor_generation(void);

#endif /* WF_MR_CACHE_H */
