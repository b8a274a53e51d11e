/*
 * Registration cache and memory monitor: lookups, LRU eviction, pinning, and invalidation after
 * free(), munmap, mremap, madvise, mmap(MAP_FIXED) and brk, with a fake transport that counts
 * registrations. The monitor tests patch this process's libc, so they run after the others.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mr_cache.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define MIB ((size_t)1 << 20)
#define MAX_KEYS 4096

/* Fake transport: keys count up from 1, and every deregistered key is logged in order. */
typedef struct {
    int registrations;
    int deregistrations;
    uint64_t next_key;
    int fail_code;          /* returned for registrations of fail_min_length bytes or more */
    size_t fail_min_length;
    uint64_t deregistered[MAX_KEYS];
} fake_transport_t;

static size_t page;

static int fake_register(void *arg, void *ptr, size_t length, wf_mr_t *mr)
{
    fake_transport_t *fake = arg;
    if (fake->fail_code != 0 && length >= fake->fail_min_length)
        return fake->fail_code;
    fake->registrations++;
    mr->key = ++fake->next_key;
    mr->base = (uintptr_t)ptr;
    mr->length = length;
    mr->handle = fake;
    return 0;
}

static int fake_deregister(void *arg, wf_mr_t *mr)
{
    fake_transport_t *fake = arg;
    if (fake->deregistrations < MAX_KEYS)
        fake->deregistered[fake->deregistrations] = mr->key;
    fake->deregistrations++;
    return 0;
}

static int was_deregistered(const fake_transport_t *fake, uint64_t key)
{
    for (int i = 0; i < fake->deregistrations && i < MAX_KEYS; i++)
        if (fake->deregistered[i] == key)
            return 1;
    return 0;
}

static wf_mr_cache_t *make_cache(fake_transport_t *fake, size_t max_entries, int monitor)
{
    wf_mr_cache_config_t config = {max_entries, fake_register, fake_deregister, fake, monitor};
    wf_mr_cache_t *cache = NULL;
    memset(fake, 0, sizeof *fake);
    assert_int_equal(wf_mr_cache_create(&config, &cache), 0);
    assert_non_null(cache);
    return cache;
}

static unsigned char *map_pages(size_t n)
{
    void *region = mmap(NULL, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(region != MAP_FAILED);
    return region;
}

/* Acquire [ptr, ptr+length), check that the result covers it, and return its key. */
static uint64_t acquire_key(wf_mr_cache_t *cache, const void *ptr, size_t length, const wf_mr_t **mr)
{
    assert_int_equal(wf_mr_cache_acquire(cache, ptr, length, mr), 0);
    assert_non_null(*mr);
    assert_true((*mr)->base <= (uintptr_t)ptr);
    assert_true((*mr)->base + (*mr)->length >= (uintptr_t)ptr + length);
    assert_int_equal((*mr)->base % page, 0);
    assert_int_equal((*mr)->length % page, 0);
    return (*mr)->key;
}

static uint64_t touch(wf_mr_cache_t *cache, const void *ptr, size_t length)
{
    const wf_mr_t *mr;
    uint64_t key = acquire_key(cache, ptr, length, &mr);
    wf_mr_cache_release(cache, mr);
    return key;
}

static wf_mr_cache_stats_t stats_of(wf_mr_cache_t *cache)
{
    wf_mr_cache_stats_t stats;
    wf_mr_cache_get_stats(cache, &stats);
    return stats;
}

static void test_hit_same_and_subrange(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 0);
    unsigned char *region = map_pages(8);
    const wf_mr_t *first, *again, *inner;

    uint64_t key = acquire_key(cache, region + 100, 3 * page, &first);
    assert_int_equal(first->base, (uintptr_t)region);
    assert_int_equal(first->length, 4 * page);
    assert_int_equal(fake.registrations, 1);
    wf_mr_cache_release(cache, first);

    assert_int_equal(acquire_key(cache, region + 100, 3 * page, &again), key);
    assert_ptr_equal(again, first);
    assert_int_equal(acquire_key(cache, region + page + 7, 1000, &inner), key);
    assert_int_equal(fake.registrations, 1);
    wf_mr_cache_release(cache, again);
    wf_mr_cache_release(cache, inner);

    wf_mr_cache_stats_t stats = stats_of(cache);
    assert_int_equal(stats.hits, 2);
    assert_int_equal(stats.misses, 1);
    assert_int_equal(stats.entries, 1);
    wf_mr_cache_destroy(cache);
    assert_int_equal(fake.deregistrations, 1);
    munmap(region, 8 * page);
}

static void test_overlap_misses_and_merges(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 0);
    unsigned char *region = map_pages(8);
    const wf_mr_t *merged;

    uint64_t low = touch(cache, region, 2 * page);
    uint64_t high = acquire_key(cache, region + page, 3 * page, &merged);
    assert_int_not_equal(high, low);
    assert_int_equal(fake.registrations, 2);
    assert_int_equal(merged->base, (uintptr_t)region);
    assert_int_equal(merged->length, 4 * page);
    assert_int_equal(fake.deregistrations, 1);
    assert_int_equal(fake.deregistered[0], low);
    wf_mr_cache_release(cache, merged);

    /* The merged region now serves both original requests. */
    assert_int_equal(touch(cache, region, 2 * page), high);
    assert_int_equal(touch(cache, region + 3 * page, page), high);
    /* A region that only touches the cached one's end is a separate miss. */
    assert_int_not_equal(touch(cache, region + 4 * page, page), high);
    assert_int_equal(stats_of(cache).entries, 2);
    wf_mr_cache_destroy(cache);
    assert_int_equal(fake.deregistrations, 3);
    munmap(region, 8 * page);
}

static void test_lru_eviction_order(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 4, 0);
    unsigned char *region = map_pages(16);
    uint64_t keys[6];

    /* Regions two pages apart so that none overlaps another. */
    for (int i = 0; i < 4; i++)
        keys[i] = touch(cache, region + 2 * i * page, page);
    touch(cache, region, page); /* region 0 becomes the most recent: order 1, 2, 3, 0 */
    assert_int_equal(fake.deregistrations, 0);

    keys[4] = touch(cache, region + 8 * page, page);
    assert_int_equal(fake.deregistrations, 1);
    assert_int_equal(fake.deregistered[0], keys[1]);

    keys[5] = touch(cache, region + 10 * page, page);
    assert_int_equal(fake.deregistrations, 2);
    assert_int_equal(fake.deregistered[1], keys[2]);

    wf_mr_cache_stats_t stats = stats_of(cache);
    assert_int_equal(stats.entries, 4);
    assert_int_equal(stats.evictions, 2);
    assert_int_equal(touch(cache, region, page), keys[0]);
    assert_int_equal(touch(cache, region + 6 * page, page), keys[3]);
    wf_mr_cache_destroy(cache);
    assert_int_equal(fake.deregistrations, 6);
    munmap(region, 16 * page);
}

static void test_pinned_entries_not_evicted(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 4, 0);
    unsigned char *region = map_pages(16);
    const wf_mr_t *pinned[4], *extra, *other;
    uint64_t keys[4];

    for (int i = 0; i < 4; i++)
        keys[i] = acquire_key(cache, region + 2 * i * page, page, &pinned[i]);

    /* Nothing is evictable, so the fifth registration is handed out uncached. */
    uint64_t extra_key = acquire_key(cache, region + 8 * page, page, &extra);
    assert_int_equal(stats_of(cache).entries, 4);
    assert_int_equal(fake.deregistrations, 0);
    wf_mr_cache_release(cache, extra);
    assert_int_equal(fake.deregistrations, 1);
    assert_int_equal(fake.deregistered[0], extra_key);

    /* Once region 2 is released it is the only entry that can be evicted. */
    wf_mr_cache_release(cache, pinned[2]);
    acquire_key(cache, region + 10 * page, page, &other);
    assert_int_equal(fake.deregistrations, 2);
    assert_int_equal(fake.deregistered[1], keys[2]);
    assert_false(was_deregistered(&fake, keys[0]));
    assert_false(was_deregistered(&fake, keys[1]));
    assert_false(was_deregistered(&fake, keys[3]));

    wf_mr_cache_release(cache, other);
    wf_mr_cache_release(cache, pinned[0]);
    wf_mr_cache_release(cache, pinned[1]);
    wf_mr_cache_release(cache, pinned[3]);
    wf_mr_cache_destroy(cache);
    assert_int_equal(fake.deregistrations, fake.registrations);
    munmap(region, 16 * page);
}

static void test_zero_capacity_registers_per_call(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 0, 0);
    unsigned char *region = map_pages(2);

    uint64_t first = touch(cache, region, page);
    uint64_t second = touch(cache, region, page);
    assert_int_not_equal(first, second);
    assert_int_equal(fake.registrations, 2);
    assert_int_equal(fake.deregistrations, 2);
    assert_int_equal(stats_of(cache).entries, 0);
    wf_mr_cache_destroy(cache);
    munmap(region, 2 * page);
}

static void test_registration_failure_returns_code(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 0);
    unsigned char *region = map_pages(8);
    const wf_mr_t *mr = (const wf_mr_t *)&fake;

    fake.fail_code = -ENOMEM;
    fake.fail_min_length = 4 * page;
    assert_int_equal(wf_mr_cache_acquire(cache, region, 4 * page, &mr), -ENOMEM);
    assert_null(mr);
    assert_int_equal(stats_of(cache).entries, 0);

    /* When the merged region fails, the request alone is registered, uncached. */
    uint64_t low = touch(cache, region, 2 * page);
    uint64_t alone = acquire_key(cache, region + page, 3 * page, &mr);
    assert_int_not_equal(alone, low);
    assert_int_equal(mr->base, (uintptr_t)region + page);
    assert_int_equal(mr->length, 3 * page);
    wf_mr_cache_release(cache, mr);
    assert_true(was_deregistered(&fake, alone));
    assert_false(was_deregistered(&fake, low));
    assert_int_equal(touch(cache, region, page), low);
    wf_mr_cache_destroy(cache);
    munmap(region, 8 * page);
}

static void test_invalid_arguments(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 0);
    const wf_mr_t *mr;
    wf_mr_cache_t *other = (wf_mr_cache_t *)&fake;
    wf_mr_cache_config_t config = {16, NULL, fake_deregister, &fake, 0};

    assert_int_equal(wf_mr_cache_create(&config, &other), -EINVAL);
    assert_null(other);
    config.reg = fake_register;
    config.max_entries = 1000001;
    assert_int_equal(wf_mr_cache_create(&config, &other), -EINVAL);
    assert_int_equal(wf_mr_cache_create(NULL, &other), -EINVAL);

    assert_int_equal(wf_mr_cache_acquire(NULL, &fake, 8, &mr), -EINVAL);
    assert_int_equal(wf_mr_cache_acquire(cache, NULL, 8, &mr), -EINVAL);
    assert_int_equal(wf_mr_cache_acquire(cache, &fake, 8, NULL), -EINVAL);
    assert_int_equal(wf_mr_cache_acquire(cache, (void *)(UINTPTR_MAX - 100), 200, &mr), -EINVAL);
    assert_int_equal(fake.registrations, 0);

    /* A zero-length request is served by the page that contains it. */
    uint64_t key = acquire_key(cache, &fake, 0, &mr);
    assert_int_equal(mr->length, page);
    wf_mr_cache_release(cache, mr);
    /* A second release is reported and ignored: the entry stays cached and usable. */
    wf_mr_cache_release(cache, mr);
    wf_mr_cache_release(cache, NULL);
    assert_int_equal(fake.deregistrations, 0);
    assert_int_equal(touch(cache, &fake, 1), key);
    wf_mr_cache_destroy(cache);
    assert_int_equal(fake.deregistrations, 1);
}

static void test_destroy_deregisters_in_use(void **state)
{
    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 1, 0);
    unsigned char *region = map_pages(8);
    const wf_mr_t *cached, *uncached;

    acquire_key(cache, region, page, &cached);
    acquire_key(cache, region + 4 * page, page, &uncached);
    touch(cache, region + 6 * page, page);
    assert_int_equal(fake.registrations, 3);
    assert_int_equal(fake.deregistrations, 1);
    wf_mr_cache_destroy(cache); /* logs a warning about the two still acquired */
    assert_int_equal(fake.deregistrations, 3);
    munmap(region, 8 * page);
}

/* Everything below installs the memory monitor in this process. */

/* Install the monitor. Where patching is not implemented, check the fallback and skip the test. */
static void require_monitor(void)
{
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
    assert_int_equal(wf_memory_monitor_install(), 0);
#else
    if (wf_memory_monitor_install() != 0) {
        fake_transport_t fake;
        wf_mr_cache_config_t config = {16, fake_register, fake_deregister, &fake, 1};
        wf_mr_cache_t *cache = (wf_mr_cache_t *)&fake;
        assert_int_equal(wf_mr_cache_create(&config, &cache), -ENOTSUP);
        assert_null(cache);
        skip();
    }
#endif
}

static void *install_from_thread(void *arg)
{
    return (void *)(intptr_t)wf_memory_monitor_install();
}

static void test_monitor_install_idempotent(void **state)
{
    require_monitor();

    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, install_from_thread, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *result;
        assert_int_equal(pthread_join(threads[i], &result), 0);
        assert_int_equal((intptr_t)result, 0);
    }
    assert_int_equal(wf_memory_monitor_install(), 0);
}

static void test_generation_counts_releases(void **state)
{
    require_monitor();

    unsigned char *region = map_pages(4);
    uint64_t before = wf_memory_monitor_generation();

    assert_int_equal(madvise(region, page, MADV_WILLNEED), 0);
    assert_int_equal(wf_memory_monitor_generation(), before);
    assert_int_equal(madvise(region, page, MADV_DONTNEED), 0);
    assert_int_equal(wf_memory_monitor_generation(), before + 1);
    assert_int_equal(munmap(region, 4 * page), 0);
    assert_int_equal(wf_memory_monitor_generation(), before + 2);
}

/* The hooks must keep libc's return values and errno. */
static void test_hooks_keep_libc_semantics(void **state)
{
    require_monitor();

    unsigned char *region = map_pages(2);

    errno = 1234;
    assert_int_equal(madvise(region, page, MADV_DONTNEED), 0);
    assert_int_equal(errno, 1234);
    assert_int_equal(munmap(region + 1, page), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(madvise(region + 1, page, MADV_DONTNEED), -1);
    assert_int_equal(errno, EINVAL);
    assert_ptr_equal(mremap(region, page, 2 * page, 0x80), MAP_FAILED);
    assert_int_equal(errno, EINVAL);
    assert_ptr_equal(mmap(NULL, page, PROT_READ, MAP_PRIVATE, -1, 0), MAP_FAILED);
    assert_int_equal(errno, EBADF);
    assert_int_equal(munmap(region, 2 * page), 0);

    void *current = sbrk(0);
    assert_ptr_equal(current, (void *)syscall(SYS_brk, 0));
    assert_int_equal(brk(current), 0);
    assert_int_equal(brk((void *)(UINTPTR_MAX & ~(uintptr_t)0xfff)), -1);
    assert_int_equal(errno, ENOMEM);
    assert_ptr_equal(sbrk(0), current);
}

static void test_munmap_then_mmap_fixed_misses(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    unsigned char *region = map_pages(4);

    uint64_t old = touch(cache, region, 4 * page);
    assert_int_equal(munmap(region, 4 * page), 0);
    void *again = mmap(region, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    assert_ptr_equal(again, region);

    uint64_t fresh = touch(cache, region, 4 * page);
    assert_int_not_equal(fresh, old);
    assert_int_equal(fake.registrations, 2);
    assert_true(was_deregistered(&fake, old));
    assert_int_equal(stats_of(cache).invalidations, 1);
    wf_mr_cache_destroy(cache);
    munmap(region, 4 * page);
}

static void test_free_then_malloc_misses(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    const size_t size = 8 * MIB;

    /* Keep glibc from raising its mmap threshold after the free, so the block is mmap'd again. */
    mallopt(M_MMAP_THRESHOLD, (int)MIB);
    unsigned char *first = malloc(size);
    assert_non_null(first);
    memset(first, 0x5a, size);
    uint64_t old = touch(cache, first, size);
    uintptr_t first_address = (uintptr_t)first;
    free(first);

    unsigned char *second = malloc(size);
    assert_non_null(second);
    if ((uintptr_t)second == first_address) {
        uint64_t fresh = touch(cache, second, size);
        assert_int_not_equal(fresh, old);
        assert_int_equal(fake.registrations, 2);
        assert_true(was_deregistered(&fake, old));
    } else {
        /* ASan's allocator quarantines freed blocks, so the address is not reused at once. */
        print_message("malloc returned a new address %p, not the freed %#lx; the munmap test covers reuse\n",
                      (void *)second, (unsigned long)first_address);
        assert_true(UNDER_ASAN);
    }
    free(second);
    wf_mr_cache_destroy(cache);
}

static void test_mremap_invalidates(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    unsigned char *region = map_pages(4);

    /* Moving (or possibly moving) releases the old range. */
    uint64_t moved = touch(cache, region, 4 * page);
    unsigned char *grown = mremap(region, 4 * page, 64 * page, MREMAP_MAYMOVE);
    assert_true(grown != MAP_FAILED);
    touch(cache, grown, 4 * page);
    assert_true(was_deregistered(&fake, moved));

    /* Shrinking in place releases the tail. */
    uint64_t shrunk = touch(cache, grown, 64 * page);
    assert_ptr_equal(mremap(grown, 64 * page, 8 * page, 0), grown);
    touch(cache, grown, page);
    assert_true(was_deregistered(&fake, shrunk));

    /* Growing in place without MREMAP_MAYMOVE releases nothing. */
    assert_int_equal(munmap(grown + 8 * page, 8 * page), 0);
    uint64_t in_place_key = touch(cache, grown, 8 * page);
    int deregistrations = fake.deregistrations;
    assert_ptr_equal(mremap(grown, 8 * page, 16 * page, 0), grown);
    assert_int_equal(touch(cache, grown, 8 * page), in_place_key);
    assert_int_equal(fake.deregistrations, deregistrations);

    /* MREMAP_FIXED replaces whatever was mapped at the destination. */
    unsigned char *target = map_pages(2);
    uint64_t replaced = touch(cache, target, 2 * page);
    assert_ptr_equal(mremap(grown, 2 * page, 2 * page, MREMAP_MAYMOVE | MREMAP_FIXED, target), target);
    touch(cache, grown + 2 * page, page);
    assert_true(was_deregistered(&fake, replaced));
    assert_true(was_deregistered(&fake, in_place_key));

    wf_mr_cache_destroy(cache);
    munmap(target, 2 * page);
    munmap(grown + 2 * page, 14 * page);
}

static void test_madvise_and_mmap_fixed_invalidate(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    unsigned char *region = map_pages(16);

    uint64_t willneed_key = touch(cache, region, 4 * page);
    assert_int_equal(madvise(region, 4 * page, MADV_WILLNEED), 0);
    assert_int_equal(touch(cache, region, 4 * page), willneed_key);

    assert_int_equal(madvise(region + page, page, MADV_DONTNEED), 0);
    uint64_t after_dontneed = touch(cache, region, 4 * page);
    assert_int_not_equal(after_dontneed, willneed_key);
    assert_true(was_deregistered(&fake, willneed_key));

    uint64_t freed = touch(cache, region + 8 * page, 2 * page);
    assert_int_equal(madvise(region + 8 * page, 2 * page, MADV_FREE), 0);
    assert_int_not_equal(touch(cache, region + 8 * page, 2 * page), freed);

    void *over = mmap(region + 2 * page, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                      -1, 0);
    assert_ptr_equal(over, region + 2 * page);
    assert_int_not_equal(touch(cache, region, 4 * page), after_dontneed);
    assert_int_equal(stats_of(cache).invalidations, 3);
    wf_mr_cache_destroy(cache);
    munmap(region, 16 * page);
}

static void test_brk_shrink_invalidates(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    unsigned char *other = map_pages(1);

    unsigned char *old_break = sbrk(0);
    assert_ptr_equal(sbrk((intptr_t)(16 * page)), old_break);
    unsigned char *base = (unsigned char *)(((uintptr_t)old_break + page - 1) & ~(uintptr_t)(page - 1));
    memset(base, 1, 8 * page);
    uint64_t heap = touch(cache, base, 8 * page);

    /* Nothing else may have moved the break, or shrinking it would cut into malloc's heap. */
    assert_ptr_equal(sbrk(0), old_break + 16 * page);
    assert_ptr_equal(sbrk(-(intptr_t)(16 * page)), old_break + 16 * page);
    assert_ptr_equal(sbrk(0), old_break);
    assert_ptr_equal((void *)syscall(SYS_brk, 0), old_break);

    touch(cache, other, page);
    assert_true(was_deregistered(&fake, heap));
    assert_int_equal(stats_of(cache).invalidations, 1);
    wf_mr_cache_destroy(cache);
    munmap(other, page);
}

static void test_invalidated_while_pinned(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    unsigned char *region = map_pages(4);
    unsigned char *other = map_pages(1);
    const wf_mr_t *pinned;

    uint64_t key = acquire_key(cache, region, 4 * page, &pinned);
    assert_int_equal(munmap(region, 4 * page), 0);
    touch(cache, other, page);
    assert_int_equal(stats_of(cache).invalidations, 1);
    assert_int_equal(stats_of(cache).entries, 1);
    assert_false(was_deregistered(&fake, key));
    assert_int_equal(pinned->key, key);

    wf_mr_cache_release(cache, pinned);
    assert_true(was_deregistered(&fake, key));
    wf_mr_cache_destroy(cache);
    munmap(other, page);
}

static void test_ring_overflow_drops_all(void **state)
{
    require_monitor();

    fake_transport_t fake;
    wf_mr_cache_t *cache = make_cache(&fake, 16, 1);
    unsigned char *region = map_pages(8);
    const wf_mr_t *pinned;

    uint64_t pinned_key = acquire_key(cache, region, page, &pinned);
    uint64_t idle_key = touch(cache, region + 4 * page, page);
    uint64_t before = wf_memory_monitor_generation();
    for (int i = 0; i < 1100; i++)
        munmap(map_pages(1), page);
    assert_true(wf_memory_monitor_generation() - before >= 1100);

    uint64_t fresh = touch(cache, region + 4 * page, page);
    assert_int_not_equal(fresh, idle_key);
    assert_true(was_deregistered(&fake, idle_key));
    assert_false(was_deregistered(&fake, pinned_key));
    assert_int_equal(stats_of(cache).invalidations, 2);
    wf_mr_cache_release(cache, pinned);
    assert_true(was_deregistered(&fake, pinned_key));
    wf_mr_cache_destroy(cache);
    munmap(region, 8 * page);
}

/* Bytes of block `slot` at offset i, so that any mix-up between blocks is caught. */
static unsigned char pattern(size_t slot, size_t i)
{
    return (unsigned char)(slot * 131 + i * 7 + 1);
}

/* Write (check 0) or check byte i of block `slot`. Returns -1 on a mismatch. */
static int visit_byte(unsigned char *block, size_t slot, size_t i, int check)
{
    if (!check)
        block[i] = pattern(slot, i);
    return block[i] == pattern(slot, i) ? 0 : -1;
}

/* Write or check the first 64 bytes, every 65536th byte and the last 64 bytes of a block. */
static int visit_block(unsigned char *block, size_t size, size_t slot, int check)
{
    int rc = 0;
    for (size_t i = 0; i < size && i < 64; i++)
        rc |= visit_byte(block, slot, i, check);
    for (size_t i = 64; i + 64 < size; i += 65536)
        rc |= visit_byte(block, slot, i, check);
    for (size_t i = size > 64 ? size - 64 : 0; i < size; i++)
        rc |= visit_byte(block, slot, i, check);
    return rc;
}

static size_t random_size(unsigned *seed)
{
    unsigned kind = (unsigned)rand_r(seed) % 100;
    if (kind < 70)
        return 1 + (size_t)rand_r(seed) % 4096;
    if (kind < 95)
        return 4096 + (size_t)rand_r(seed) % (256 * 1024);
    return 256 * 1024 + (size_t)rand_r(seed) % (4 * MIB);
}

static void test_malloc_stress_after_install(void **state)
{
    require_monitor();

    enum { SLOTS = 512, OPERATIONS = 100000 };
    static unsigned char *blocks[SLOTS];
    static size_t sizes[SLOTS];
    unsigned seed = 12345;
    uint64_t before = wf_memory_monitor_generation();

    for (int op = 0; op < OPERATIONS; op++) {
        size_t slot = (size_t)rand_r(&seed) % SLOTS;
        if (blocks[slot] == NULL) {
            sizes[slot] = random_size(&seed);
            blocks[slot] = malloc(sizes[slot]);
            assert_non_null(blocks[slot]);
            visit_block(blocks[slot], sizes[slot], slot, 0);
            continue;
        }
        if (visit_block(blocks[slot], sizes[slot], slot, 1) != 0)
            fail_msg("block %zu of %zu bytes was corrupted at operation %d", slot, sizes[slot], op);
        if (rand_r(&seed) % 3 == 0) {
            size_t size = random_size(&seed);
            size_t preserved = size < sizes[slot] ? size : sizes[slot];
            unsigned char *moved = realloc(blocks[slot], size);
            assert_non_null(moved);
            for (size_t i = 0; i < preserved && i < 64; i++)
                assert_int_equal(moved[i], pattern(slot, i));
            blocks[slot] = moved;
            sizes[slot] = size;
            visit_block(moved, size, slot, 0);
        } else {
            free(blocks[slot]);
            blocks[slot] = NULL;
        }
        if (op % 10000 == 0)
            malloc_trim(0);
    }
    for (size_t slot = 0; slot < SLOTS; slot++) {
        if (blocks[slot] != NULL && visit_block(blocks[slot], sizes[slot], slot, 1) != 0)
            fail_msg("block %zu of %zu bytes was corrupted at the end", slot, sizes[slot]);
        free(blocks[slot]);
        blocks[slot] = NULL;
    }
    malloc_trim(0);
    /* glibc frees blocks above the mmap threshold with munmap, but ASan's allocator bypasses libc. */
    if (!UNDER_ASAN)
        assert_true(wf_memory_monitor_generation() > before);
}

typedef struct {
    wf_mr_cache_t *cache;
    unsigned char *region;
    unsigned seed;
    atomic_int failures;
} concurrent_run_t;

static void *acquire_release_loop(void *arg)
{
    concurrent_run_t *run = arg;
    unsigned seed = __atomic_add_fetch(&run->seed, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 20000; i++) {
        unsigned char *ptr = run->region + (size_t)(rand_r(&seed) % 16) * page + (size_t)(rand_r(&seed) % 100);
        size_t length = 1 + (size_t)rand_r(&seed) % (4 * page);
        const wf_mr_t *mr;
        if (wf_mr_cache_acquire(run->cache, ptr, length, &mr) != 0 || mr->base > (uintptr_t)ptr ||
            mr->base + mr->length < (uintptr_t)ptr + length)
            atomic_fetch_add(&run->failures, 1);
        else
            wf_mr_cache_release(run->cache, mr);
        if (i % 64 == 0)
            free(malloc(2 * MIB)); /* an munmap the monitor records while others acquire */
    }
    return NULL;
}

static void test_concurrent_acquire_release(void **state)
{
    require_monitor();

    fake_transport_t fake;
    concurrent_run_t run = {make_cache(&fake, 8, 1), map_pages(24), 7, 0};
    pthread_t threads[4];

    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, acquire_release_loop, &run), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_int_equal(atomic_load(&run.failures), 0);
    wf_mr_cache_stats_t stats = stats_of(run.cache);
    assert_int_equal(stats.hits + stats.misses, 4 * 20000);
    assert_true(stats.entries <= 8);
    wf_mr_cache_destroy(run.cache);
    assert_int_equal(fake.deregistrations, fake.registrations);
    munmap(run.region, 24 * page);
}

int main(void)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_same_and_subrange),
        cmocka_unit_test(test_overlap_misses_and_merges),
        cmocka_unit_test(test_lru_eviction_order),
        cmocka_unit_test(test_pinned_entries_not_evicted),
        cmocka_unit_test(test_zero_capacity_registers_per_call),
        cmocka_unit_test(test_registration_failure_returns_code),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_destroy_deregisters_in_use),
        cmocka_unit_test(test_monitor_install_idempotent),
        cmocka_unit_test(test_generation_counts_releases),
        cmocka_unit_test(test_hooks_keep_libc_semantics),
        cmocka_unit_test(test_munmap_then_mmap_fixed_misses),
        cmocka_unit_test(test_free_then_malloc_misses),
        cmocka_unit_test(test_mremap_invalidates),
        cmocka_unit_test(test_madvise_and_mmap_fixed_invalidate),
        cmocka_unit_test(test_brk_shrink_invalidates),
        cmocka_unit_test(test_invalidated_while_pinned),
        cmocka_unit_test(test_ring_overflow_drops_all),
        cmocka_unit_test(test_malloc_stress_after_install),
        cmocka_unit_test(test_concurrent_acquire_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
