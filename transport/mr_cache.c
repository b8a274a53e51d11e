/*
 * Registration cache: a sorted array of non-overlapping cached regions, searched by binary search,
 * with an LRU list of the regions that no caller has acquired.
 *
 * Cached regions never overlap. A miss that overlaps cached regions registers their union with
 * the request and replaces them, so the one region that can contain an address is the first
 * whose end lies above it. Regions leave the cache in three ways: LRU eviction beyond
 * max_entries, invalidation by the memory monitor, and replacement by a union. A region that is
 * still acquired when it leaves becomes detached: it stays valid for its users and is
 * deregistered by the last release.
 */
#define _GNU_SOURCE
#include "mr_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "memory_monitor_internal.h"

/* Upper bound of max_entries, the same as WEFT_MR_CACHE_SIZE's. */
#define WF_MR_CACHE_MAX_ENTRIES 1000000

#define WF_MR_ENTRY_MAGIC 0x7766524du

typedef struct wf_mr_entry {
    wf_mr_t mr; /* first member: wf_mr_cache_release converts the caller's pointer back */
    uint32_t magic;
    int cached;      /* 1 while in the index, 0 once detached */
    size_t refcount; /* acquisitions not yet released */
    uintptr_t start, end;
    /* Links in the LRU list (cached, refcount 0) or in the detached list (not cached). */
    struct wf_mr_entry *prev, *next;
} wf_mr_entry_t;

struct wf_mr_cache {
    pthread_mutex_t lock;
    wf_mr_register_fn reg;
    wf_mr_deregister_fn dereg;
    void *arg;
    size_t capacity;           /* max cached entries, or 0 to register on every acquire */
    int monitored;             /* drains the memory monitor on every acquire */
    uint64_t seen_generation;  /* last monitor generation this cache processed */
    uintptr_t page_mask;
    wf_mr_entry_t **index;     /* cached entries sorted by start address */
    size_t count;
    size_t index_capacity;
    wf_mr_entry_t lru;         /* sentinel: lru.next is the most recently released entry */
    wf_mr_entry_t detached;    /* sentinel */
    wf_mr_cache_stats_t stats; /* counters; get_stats fills entries from count */
};

static void list_init(wf_mr_entry_t *head)
{
    head->prev = head;
    head->next = head;
}

static void list_remove(wf_mr_entry_t *entry)
{
    entry->prev->next = entry->next;
    entry->next->prev = entry->prev;
    entry->prev = NULL;
    entry->next = NULL;
}

static void list_push_front(wf_mr_entry_t *head, wf_mr_entry_t *entry)
{
    entry->next = head->next;
    entry->prev = head;
    head->next->prev = entry;
    head->next = entry;
}

/* Return the position of the first cached entry whose end lies above address. */
static size_t index_first_ending_after(const wf_mr_cache_t *cache, uintptr_t address)
{
    size_t low = 0, high = cache->count;

    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (cache->index[middle]->end > address)
            high = middle;
        else
            low = middle + 1;
    }
    return low;
}

/* Return how many cached entries from position first on start below end. */
static size_t index_count_overlapping(const wf_mr_cache_t *cache, size_t first, uintptr_t end)
{
    size_t n = 0;
    while (first + n < cache->count && cache->index[first + n]->start < end)
        n++;
    return n;
}

static void index_remove(wf_mr_cache_t *cache, size_t position, size_t n)
{
    if (n == 0)
        return;
    memmove(&cache->index[position], &cache->index[position + n],
            (cache->count - position - n) * sizeof(cache->index[0]));
    cache->count -= n;
}

/* Insert entry at its sorted position. Returns 0, or -ENOMEM when the index cannot grow. */
static int index_insert(wf_mr_cache_t *cache, wf_mr_entry_t *entry)
{
    if (cache->count == cache->index_capacity) {
        size_t grown = cache->index_capacity == 0 ? 64 : cache->index_capacity * 2;
        grown = grown > cache->capacity ? cache->capacity : grown;
        wf_mr_entry_t **index = realloc(cache->index, grown * sizeof(index[0]));
        if (index == NULL)
            return -ENOMEM;
        cache->index = index;
        cache->index_capacity = grown;
    }
    size_t position = index_first_ending_after(cache, entry->start);
    memmove(&cache->index[position + 1], &cache->index[position],
            (cache->count - position) * sizeof(cache->index[0]));
    cache->index[position] = entry;
    cache->count++;
    entry->cached = 1;
    return 0;
}

static void deregister_entry(wf_mr_cache_t *cache, wf_mr_entry_t *entry)
{
    int rc = cache->dereg(cache->arg, &entry->mr);
    if (rc != 0)
        WF_WARN(WF_SUB_ALLOC, "deregistration of [%#lx, %#lx) failed with code %d; the region stays pinned "
                              "until the process exits",
                (unsigned long)entry->start, (unsigned long)entry->end, rc);
    entry->magic = 0;
    free(entry);
}

/* Retire an entry that left the index. It is deregistered now, or by its last release if in use. */
static void retire_entry(wf_mr_cache_t *cache, wf_mr_entry_t *entry)
{
    entry->cached = 0;
    if (entry->refcount == 0) {
        list_remove(entry);
        deregister_entry(cache, entry);
    } else {
        list_push_front(&cache->detached, entry);
    }
}

static void retire_positions(wf_mr_cache_t *cache, size_t position, size_t n)
{
    for (size_t i = 0; i < n; i++)
        retire_entry(cache, cache->index[position + i]);
    index_remove(cache, position, n);
}

/* wf_released_range_fn: drop every cached entry that overlaps [start, end). */
static void invalidate_range(void *arg, uintptr_t start, uintptr_t end)
{
    wf_mr_cache_t *cache = arg;
    size_t first = index_first_ending_after(cache, start);
    size_t n = index_count_overlapping(cache, first, end);

    cache->stats.invalidations += n;
    retire_positions(cache, first, n);
}

static void invalidate_all(wf_mr_cache_t *cache)
{
    cache->stats.invalidations += cache->count;
    retire_positions(cache, 0, cache->count);
}

/* Apply every release the monitor observed since the last call. */
static void apply_releases(wf_mr_cache_t *cache)
{
    if (!cache->monitored)
        return;
    if (!wf_memory_monitor_intact()) {
        /* Freed memory is no longer observed, so nothing cached can be trusted from now on. */
        invalidate_all(cache);
        cache->capacity = 0;
        cache->monitored = 0;
        return;
    }
    if (wf_memory_monitor_drain(&cache->seen_generation, invalidate_range, cache) != 0)
        invalidate_all(cache);
}

static int register_range(wf_mr_cache_t *cache, wf_mr_entry_t *entry, uintptr_t start, uintptr_t end)
{
    memset(&entry->mr, 0, sizeof entry->mr);
    entry->mr.base = start;
    entry->mr.length = end - start;
    int rc = cache->reg(cache->arg, (void *)start, end - start, &entry->mr);
    if (rc != 0)
        return rc < 0 ? rc : -rc;
    entry->start = start;
    entry->end = end;
    return 0;
}

/* Deregister the least recently released entry. Returns 0, or -1 when every entry is in use. */
static int evict_one(wf_mr_cache_t *cache)
{
    wf_mr_entry_t *victim = cache->lru.prev;
    if (victim == &cache->lru)
        return -1;

    size_t position = index_first_ending_after(cache, victim->start);
    index_remove(cache, position, 1);
    victim->cached = 0;
    list_remove(victim);
    deregister_entry(cache, victim);
    cache->stats.evictions++;
    return 0;
}

/* Cache a newly registered entry, evicting if needed, or detach it when nothing can be evicted. */
static void admit_entry(wf_mr_cache_t *cache, wf_mr_entry_t *entry)
{
    while (cache->count >= cache->capacity && evict_one(cache) == 0)
        ;
    if (cache->count >= cache->capacity || index_insert(cache, entry) != 0)
        list_push_front(&cache->detached, entry);
}

/*
 * Register [start, end) merged with the cached entries it overlaps, which start at position
 * first. When the merged region fails to register, register the request alone, uncached.
 */
static int register_miss(wf_mr_cache_t *cache, size_t first, uintptr_t start, uintptr_t end,
                         wf_mr_entry_t **out)
{
    size_t n = index_count_overlapping(cache, first, end);
    uintptr_t merged_start = start, merged_end = end;
    if (n > 0) {
        merged_start = cache->index[first]->start < start ? cache->index[first]->start : start;
        merged_end = cache->index[first + n - 1]->end > end ? cache->index[first + n - 1]->end : end;
    }

    wf_mr_entry_t *entry = calloc(1, sizeof *entry);
    if (entry == NULL)
        return -ENOMEM;
    entry->magic = WF_MR_ENTRY_MAGIC;
    entry->refcount = 1;

    int rc = register_range(cache, entry, merged_start, merged_end);
    if (rc == 0) {
        retire_positions(cache, first, n);
        admit_entry(cache, entry);
    } else if (n > 0 && (rc = register_range(cache, entry, start, end)) == 0) {
        list_push_front(&cache->detached, entry);
    } else {
        free(entry);
        return rc;
    }
    *out = entry;
    return 0;
}

int wf_mr_cache_acquire(wf_mr_cache_t *cache, const void *ptr, size_t length, const wf_mr_t **mr)
{
    if (cache == NULL || ptr == NULL || mr == NULL) {
        WF_ERROR(WF_SUB_ALLOC, "wf_mr_cache_acquire: invalid argument (cache %p, ptr %p, mr %p); all three "
                               "must be non-NULL",
                 (void *)cache, ptr, (void *)mr);
        return -EINVAL;
    }
    uintptr_t address = (uintptr_t)ptr;
    /* A zero-length request is served by the page that contains ptr. */
    size_t span = length == 0 ? 1 : length;
    if (address > UINTPTR_MAX - cache->page_mask || span > UINTPTR_MAX - cache->page_mask - address) {
        WF_ERROR(WF_SUB_ALLOC, "wf_mr_cache_acquire: %zu bytes at %p run past the end of the address space",
                 length, ptr);
        return -EINVAL;
    }
    uintptr_t start = address & ~cache->page_mask;
    uintptr_t end = (address + span + cache->page_mask) & ~cache->page_mask;

    pthread_mutex_lock(&cache->lock);
    apply_releases(cache);

    size_t first = index_first_ending_after(cache, start);
    wf_mr_entry_t *entry = NULL;
    int rc = 0;
    if (first < cache->count && cache->index[first]->start <= start && cache->index[first]->end >= end) {
        entry = cache->index[first];
        if (entry->refcount++ == 0)
            list_remove(entry);
        cache->stats.hits++;
    } else {
        cache->stats.misses++;
        rc = register_miss(cache, first, start, end, &entry);
    }
    pthread_mutex_unlock(&cache->lock);

    *mr = rc == 0 ? &entry->mr : NULL;
    return rc;
}

void wf_mr_cache_release(wf_mr_cache_t *cache, const wf_mr_t *mr)
{
    if (cache == NULL || mr == NULL) {
        WF_ERROR(WF_SUB_ALLOC, "wf_mr_cache_release: invalid argument (cache %p, mr %p); pass the cache and "
                               "the registration that wf_mr_cache_acquire returned",
                 (void *)cache, (const void *)mr);
        return;
    }
    wf_mr_entry_t *entry = (wf_mr_entry_t *)mr;

    pthread_mutex_lock(&cache->lock);
    if (entry->magic != WF_MR_ENTRY_MAGIC || entry->refcount == 0) {
        pthread_mutex_unlock(&cache->lock);
        WF_ERROR(WF_SUB_ALLOC, "wf_mr_cache_release: %p is not an acquired registration of this cache "
                               "(released twice, or never acquired); ignored",
                 (const void *)mr);
        return;
    }
    if (--entry->refcount == 0) {
        if (entry->cached) {
            list_push_front(&cache->lru, entry);
        } else {
            list_remove(entry);
            deregister_entry(cache, entry);
        }
    }
    pthread_mutex_unlock(&cache->lock);
}

int wf_mr_cache_create(const wf_mr_cache_config_t *config, wf_mr_cache_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || config == NULL || config->reg == NULL || config->dereg == NULL) {
        WF_ERROR(WF_SUB_ALLOC, "wf_mr_cache_create: invalid argument (config %p, out %p); config and out must "
                               "be non-NULL and config must set both reg and dereg",
                 (const void *)config, (void *)out);
        return -EINVAL;
    }
    if (config->max_entries > WF_MR_CACHE_MAX_ENTRIES) {
        WF_ERROR(WF_SUB_ALLOC, "registration cache size %zu is above the maximum %d; lower WEFT_MR_CACHE_SIZE",
                 config->max_entries, WF_MR_CACHE_MAX_ENTRIES);
        return -EINVAL;
    }
    /* install() logs the reason at WARN. */
    if (config->monitor && wf_memory_monitor_install() != 0)
        return -ENOTSUP;

    wf_mr_cache_t *cache = calloc(1, sizeof *cache);
    if (cache == NULL)
        return -ENOMEM;
    long page_size = sysconf(_SC_PAGESIZE);
    cache->page_mask = page_size > 0 ? (uintptr_t)page_size - 1 : 4095;
    cache->reg = config->reg;
    cache->dereg = config->dereg;
    cache->arg = config->arg;
    cache->capacity = config->max_entries;
    cache->monitored = config->monitor != 0;
    cache->seen_generation = wf_memory_monitor_generation();
    list_init(&cache->lru);
    list_init(&cache->detached);
    pthread_mutex_init(&cache->lock, NULL);
    *out = cache;
    return 0;
}

void wf_mr_cache_destroy(wf_mr_cache_t *cache)
{
    if (cache == NULL)
        return;

    size_t in_use = 0;
    pthread_mutex_lock(&cache->lock);
    for (size_t i = 0; i < cache->count; i++) {
        in_use += cache->index[i]->refcount > 0;
        deregister_entry(cache, cache->index[i]);
    }
    while (cache->detached.next != &cache->detached) {
        wf_mr_entry_t *entry = cache->detached.next;
        list_remove(entry);
        in_use++;
        deregister_entry(cache, entry);
    }
    pthread_mutex_unlock(&cache->lock);

    if (in_use > 0)
        WF_WARN(WF_SUB_ALLOC, "registration cache destroyed while %zu registrations were still acquired; they "
                              "are deregistered now, so a later release of them is invalid",
                in_use);
    pthread_mutex_destroy(&cache->lock);
    free(cache->index);
    free(cache);
}

void wf_mr_cache_get_stats(const wf_mr_cache_t *cache, wf_mr_cache_stats_t *stats)
{
    if (cache == NULL || stats == NULL)
        return;
    /* The lock is not part of the cache's logical state. */
    wf_mr_cache_t *mutable_cache = (wf_mr_cache_t *)cache;
    pthread_mutex_lock(&mutable_cache->lock);
    *stats = cache->stats;
    stats->entries = cache->count;
    pthread_mutex_unlock(&mutable_cache->lock);
}
