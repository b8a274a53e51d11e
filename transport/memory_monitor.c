/*
 * Memory monitor: observes every release of virtual memory in this process, so that the
 * registration cache never reuses a registration whose pages were unmapped and mapped again.
 *
 * glibc's free(), realloc() and malloc_trim() release memory through internal calls to munmap,
 * mremap, madvise, brk and mmap(MAP_FIXED) that never go through the PLT, so symbol interposition
 * cannot see them. Instead, wf_memory_monitor_install rewrites the first 8 bytes of each of those
 * libc functions into a jump to a hook here. A hook records the range it is about to release in a
 * lock-free ring and then makes the system call itself, because the original function body is
 * gone. Recording happens before the system call: a cache that drains the ring in between drops
 * its entry early, which costs a registration but never returns stale pages.
 *
 * Supported on x86_64 Linux with glibc. Elsewhere, or when libc's code cannot be made writable,
 * installation fails and the caller registers buffers on every call.
 */
#define _GNU_SOURCE
#include "mr_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "memory_monitor_internal.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_POINTER_LOCK_FREE == 2,
               "the ring must be lock-free to be written from signal handlers and free()");
_Static_assert((WF_MEMORY_MONITOR_RING_SIZE & (WF_MEMORY_MONITOR_RING_SIZE - 1)) == 0,
               "the ring size must be a power of two");

/*
 * Hooks run inside libc's memory functions, possibly inside the sanitizer runtimes' own calls,
 * so they must not call into those runtimes.
 */
#define WF_HOOK_ATTRIBUTES __attribute__((no_sanitize("address", "undefined"), noinline))

/* One released range. sequence is the generation that wrote it, or 0 while a writer is busy. */
typedef struct {
    _Atomic uint64_t sequence;
    _Atomic uintptr_t start;
    _Atomic uintptr_t end;
} wf_release_slot_t;

static wf_release_slot_t release_ring[WF_MEMORY_MONITOR_RING_SIZE];
static _Atomic uint64_t release_generation;

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int install_state; /* 0: not attempted, 1: installed, -1: failed */

uint64_t wf_memory_monitor_generation(void)
{
    return atomic_load_explicit(&release_generation, memory_order_acquire);
}

int wf_memory_monitor_installed(void)
{
    return atomic_load_explicit(&install_state, memory_order_acquire) == 1;
}

/* Non-zero when the ring no longer contains generation `generation`. */
static int generation_overwritten(uint64_t generation)
{
    return wf_memory_monitor_generation() - (generation - 1) > WF_MEMORY_MONITOR_RING_SIZE;
}

int wf_memory_monitor_drain(uint64_t *seen, wf_released_range_fn on_release, void *arg)
{
    uint64_t current = wf_memory_monitor_generation();
    uint64_t first_incomplete = 0;

    if (current == *seen)
        return 0;
    if (current - *seen > WF_MEMORY_MONITOR_RING_SIZE) {
        *seen = current;
        return 1;
    }

    for (uint64_t generation = *seen + 1; generation <= current; generation++) {
        wf_release_slot_t *slot = &release_ring[(generation - 1) & (WF_MEMORY_MONITOR_RING_SIZE - 1)];
        uint64_t before = atomic_load_explicit(&slot->sequence, memory_order_acquire);

        if (before != generation) {
            /* Either this release is still being written, or a later one took its slot. */
            if (before > generation || generation_overwritten(generation)) {
                *seen = wf_memory_monitor_generation();
                return 1;
            }
            if (first_incomplete == 0)
                first_incomplete = generation;
            continue;
        }
        uintptr_t start = atomic_load_explicit(&slot->start, memory_order_relaxed);
        uintptr_t end = atomic_load_explicit(&slot->end, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&slot->sequence, memory_order_relaxed) != generation) {
            *seen = wf_memory_monitor_generation();
            return 1;
        }
        on_release(arg, start, end);
    }

    /* A release still being written has not reached its system call yet: replay it next time. */
    *seen = first_incomplete != 0 ? first_incomplete - 1 : current;
    return 0;
}

#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)

#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

/* Set, and never cleared, once another patch replaced one of ours. */
static _Atomic int patches_overwritten;

/* Page size minus 1, set before the first hook can run. */
static uintptr_t page_mask = 4095;

/* Return addr + length, or UINTPTR_MAX where that sum does not fit. */
static inline uintptr_t range_end(const void *addr, size_t length)
{
    uintptr_t start = (uintptr_t)addr;
    return length > UINTPTR_MAX - start ? UINTPTR_MAX : start + length;
}

/* Push [start, end), widened to whole pages, into the ring. Async-signal-safe and lock-free. */
static WF_HOOK_ATTRIBUTES void record_release(uintptr_t start, uintptr_t end)
{
    if (end <= start)
        return;
    start &= ~page_mask;
    end = end > UINTPTR_MAX - page_mask ? UINTPTR_MAX : (end + page_mask) & ~page_mask;

    uint64_t generation = atomic_fetch_add_explicit(&release_generation, 1, memory_order_acq_rel) + 1;
    wf_release_slot_t *slot = &release_ring[(generation - 1) & (WF_MEMORY_MONITOR_RING_SIZE - 1)];

    /* Seqlock write: readers that see sequence change while they read discard what they read. */
    atomic_store_explicit(&slot->sequence, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&slot->start, start, memory_order_relaxed);
    atomic_store_explicit(&slot->end, end, memory_order_relaxed);
    atomic_store_explicit(&slot->sequence, generation, memory_order_release);
}

/* libc's cached program break, which sbrk() reads and the original brk() kept up to date. */
static void **libc_curbrk;

/*
 * Make a system call directly. libc's syscall() would do, but an inline instruction cannot be
 * interposed and needs no lazy symbol binding inside a hook.
 */
static inline long raw_syscall(long number, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long result;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;

    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

/* Convert a raw kernel result to libc's convention: -1 with errno set. */
static inline long syscall_result(long result)
{
    if ((unsigned long)result > -4096UL) {
        errno = (int)-result;
        return -1;
    }
    return result;
}

static WF_HOOK_ATTRIBUTES int hook_munmap(void *addr, size_t length)
{
    record_release((uintptr_t)addr, range_end(addr, length));
    return (int)syscall_result(raw_syscall(SYS_munmap, (long)addr, (long)length, 0, 0, 0, 0));
}

static WF_HOOK_ATTRIBUTES int hook_madvise(void *addr, size_t length, int advice)
{
    /* These advices replace the pages with fresh ones on the next access. The others keep them. */
    if (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE ||
        advice == MADV_DONTNEED_LOCKED)
        record_release((uintptr_t)addr, range_end(addr, length));
    return (int)syscall_result(raw_syscall(SYS_madvise, (long)addr, (long)length, advice, 0, 0, 0));
}

/* The new address is read only with MREMAP_FIXED or MREMAP_DONTUNMAP, as glibc 2.36 does. */
static WF_HOOK_ATTRIBUTES void *hook_mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...)
{
    void *new_address = NULL;

    if (flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) {
        va_list args;
        va_start(args, flags);
        new_address = va_arg(args, void *);
        va_end(args);
    }

    /*
     * A move releases the whole old range. The hook cannot know in advance whether the kernel will
     * grow in place instead, so with MREMAP_MAYMOVE it reports the old range anyway.
     */
    if ((flags & (MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)) && old_size > 0)
        record_release((uintptr_t)old_address, range_end(old_address, old_size));
    else if (new_size < old_size)
        record_release(range_end(old_address, new_size), range_end(old_address, old_size));
    if (flags & MREMAP_FIXED)
        record_release((uintptr_t)new_address, range_end(new_address, new_size));

    long result = raw_syscall(SYS_mremap, (long)old_address, (long)old_size, (long)new_size, flags,
                              (long)new_address, 0);
    return (void *)syscall_result(result);
}

/* MAP_FIXED replaces whatever was mapped in the range without a munmap call. */
static WF_HOOK_ATTRIBUTES void *hook_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
{
    if (flags & MAP_FIXED)
        record_release((uintptr_t)addr, range_end(addr, length));
    long result = raw_syscall(SYS_mmap, (long)addr, (long)length, prot, flags, fd, (long)offset);
    return (void *)syscall_result(result);
}

/*
 * Same contract as glibc 2.36's brk(): 0 on success, -1 with ENOMEM when the kernel kept a lower
 * break, and __curbrk always set to the break the kernel returned, because sbrk() relies on it.
 */
static WF_HOOK_ATTRIBUTES int hook_brk(void *address)
{
    uintptr_t old_break = (uintptr_t)*libc_curbrk;

    if (old_break == 0)
        old_break = (uintptr_t)raw_syscall(SYS_brk, 0, 0, 0, 0, 0, 0);
    /* brk(0) only queries the break. */
    if (address != NULL && (uintptr_t)address < old_break)
        record_release((uintptr_t)address, old_break);

    long new_break = raw_syscall(SYS_brk, (long)address, 0, 0, 0, 0, 0);
    *libc_curbrk = (void *)new_break;
    if ((uintptr_t)new_break < (uintptr_t)address) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* A libc entry point to patch, and the 8 bytes at its start before and after patching. */
typedef struct {
    const char *name;
    void *hook;
    unsigned char *entry;
    uint64_t original;
    uint64_t patched;
} wf_patch_target_t;

static wf_patch_target_t patch_targets[] = {
    {"munmap", (void *)hook_munmap, NULL, 0, 0},  {"mremap", (void *)hook_mremap, NULL, 0, 0},
    {"madvise", (void *)hook_madvise, NULL, 0, 0}, {"brk", (void *)hook_brk, NULL, 0, 0},
    {"mmap", (void *)hook_mmap, NULL, 0, 0},
};
#define WF_PATCH_TARGET_COUNT (sizeof patch_targets / sizeof patch_targets[0])

/* Size of one trampoline: jmp *0(%rip) (6 bytes), the 8-byte hook address, 2 bytes of int3. */
#define WF_TRAMPOLINE_SIZE 16

/*
 * Non-zero when code already starts with a jump, a breakpoint or an absolute-address load: another
 * library or a debugger patched it, and patching over it would silently disable theirs.
 */
static int starts_with_patch(const unsigned char *code)
{
    if (code[0] == 0xe9 || code[0] == 0xeb || code[0] == 0xcc || code[0] == 0x68)
        return 1;
    if (code[0] == 0xff && code[1] == 0x25)
        return 1;
    return (code[0] == 0x48 || code[0] == 0x49) && (code[1] & 0xf8) == 0xb8;
}

/* Find libc's own definitions (not a sanitizer's interceptor) and check that each can be patched. */
static int resolve_targets(char *reason, size_t reason_length)
{
    void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
    if (libc == NULL) {
        snprintf(reason, reason_length, "%s is not loaded (a static binary or another C library)", LIBC_SO);
        return -1;
    }

    int rc = 0;
    for (size_t i = 0; i < WF_PATCH_TARGET_COUNT && rc == 0; i++) {
        wf_patch_target_t *target = &patch_targets[i];
        void *address = dlsym(libc, target->name);
        Dl_info info;
        const ElfW(Sym) *symbol = NULL;

        if (address == NULL || !dladdr1(address, &info, (void **)&symbol, RTLD_DL_SYMENT) || symbol == NULL) {
            snprintf(reason, reason_length, "%s() was not found in %s", target->name, LIBC_SO);
            rc = -1;
        } else if (info.dli_saddr != address || symbol->st_size < 8 || (uintptr_t)address % 8 != 0) {
            snprintf(reason, reason_length, "%s() at %p is shorter than 8 bytes or not 8-byte aligned", target->name,
                     address);
            rc = -1;
        } else if (starts_with_patch(address)) {
            snprintf(reason, reason_length,
                     "%s() at %p already starts with a jump or breakpoint, so another library or a debugger "
                     "has patched it",
                     target->name, address);
            rc = -1;
        } else {
            target->entry = address;
            memcpy(&target->original, address, sizeof target->original);
        }
    }
    dlclose(libc);
    if (rc != 0)
        return rc;

    /* The global scope resolves __curbrk exactly as libc's own GOT entry for it was resolved. */
    libc_curbrk = dlsym(RTLD_DEFAULT, "__curbrk");
    if (libc_curbrk == NULL) {
        snprintf(reason, reason_length, "__curbrk was not found, so brk() cannot be replaced safely");
        return -1;
    }
    return 0;
}

/* Non-zero when a jmp rel32 at every target entry can reach [first, first + length). */
static int trampolines_reachable(uintptr_t first, size_t length)
{
    const int64_t limit = INT32_MAX - 4096;

    for (size_t i = 0; i < WF_PATCH_TARGET_COUNT; i++) {
        int64_t from = (int64_t)(uintptr_t)patch_targets[i].entry + 5;
        if ((int64_t)first - from < -limit || (int64_t)(first + length) - from > limit)
            return 0;
    }
    return 1;
}

/*
 * Map one page within +-1 GiB of libc's code for the trampolines. The 5-byte jump written at each
 * entry reaches only +-2 GiB, and the hooks may live much farther away, for example in an
 * executable linked with the static library.
 */
static unsigned char *map_trampoline_page(size_t page_size)
{
    uintptr_t lowest = UINTPTR_MAX, highest = 0;
    for (size_t i = 0; i < WF_PATCH_TARGET_COUNT; i++) {
        uintptr_t entry = (uintptr_t)patch_targets[i].entry;
        lowest = entry < lowest ? entry : lowest;
        highest = entry > highest ? entry : highest;
    }
    lowest &= ~page_mask;
    highest = (highest + page_size) & ~page_mask;

    const uintptr_t step = (uintptr_t)1 << 20, reach = (uintptr_t)1 << 30;
    for (uintptr_t distance = step; distance < reach; distance += step) {
        uintptr_t hints[2] = {lowest > distance ? lowest - distance : 0, highest + distance};
        for (int side = 0; side < 2; side++) {
            if (hints[side] == 0)
                continue;
            /* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint. */
            void *page = mmap((void *)hints[side], page_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (page == MAP_FAILED)
                continue;
            if (trampolines_reachable((uintptr_t)page, page_size))
                return page;
            munmap(page, page_size);
        }
    }
    return NULL;
}

/* Fill the trampolines and compute each target's patched first 8 bytes. */
static int prepare_patches(unsigned char *trampolines, size_t page_size, char *reason, size_t reason_length)
{
    memset(trampolines, 0xcc, page_size);
    for (size_t i = 0; i < WF_PATCH_TARGET_COUNT; i++) {
        wf_patch_target_t *target = &patch_targets[i];
        unsigned char *trampoline = trampolines + i * WF_TRAMPOLINE_SIZE;
        uint64_t hook = (uint64_t)(uintptr_t)target->hook;
        static const unsigned char jump_indirect[6] = {0xff, 0x25, 0, 0, 0, 0};

        memcpy(trampoline, jump_indirect, sizeof jump_indirect);
        memcpy(trampoline + sizeof jump_indirect, &hook, sizeof hook);

        /* jmp rel32 in bytes 0-4, while bytes 5-7 keep their original values. */
        int64_t displacement = (int64_t)(uintptr_t)trampoline - ((int64_t)(uintptr_t)target->entry + 5);
        target->patched = 0xe9u | ((uint64_t)(uint32_t)(int32_t)displacement << 8) |
                          (target->original & 0xffffff0000000000ull);
    }
    if (mprotect(trampolines, page_size, PROT_READ | PROT_EXEC) != 0) {
        snprintf(reason, reason_length, "mprotect(PROT_READ|PROT_EXEC) of the trampoline page failed: %s",
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Set the protection of the page that contains each target's first 8 bytes. Returns 0 or an errno. */
static int protect_target_pages(int protection, size_t page_size, size_t *changed)
{
    for (*changed = 0; *changed < WF_PATCH_TARGET_COUNT; (*changed)++) {
        uintptr_t page = (uintptr_t)patch_targets[*changed].entry & ~page_mask;
        if (mprotect((void *)page, page_size, protection) != 0)
            return errno;
    }
    return 0;
}

/*
 * Write the jumps. Each entry is 8-byte aligned, so one 8-byte store replaces the first
 * instruction(s) atomically, and another thread executes either the old or the new bytes. The
 * syscall instruction of munmap, madvise and brk sits at offset 5, which the store leaves
 * unchanged, so a thread blocked in it returns to the original code.
 * NOTE: mremap and mmap have no instruction boundary at offset 5. A thread preempted exactly
 * between their first instructions while this store runs would resume inside the new jump.
 */
static int write_patches(size_t page_size, char *reason, size_t reason_length)
{
    size_t changed = 0;
    int error = protect_target_pages(PROT_READ | PROT_WRITE | PROT_EXEC, page_size, &changed);
    if (error != 0) {
        size_t restored = 0;
        snprintf(reason, reason_length,
                 "mprotect(PROT_READ|PROT_WRITE|PROT_EXEC) of libc's code failed: %s; a security policy such "
                 "as SELinux (execmod) may forbid writable code",
                 strerror(error));
        for (; restored < changed; restored++)
            mprotect((void *)((uintptr_t)patch_targets[restored].entry & ~page_mask), page_size,
                     PROT_READ | PROT_EXEC);
        return -1;
    }

    for (size_t i = 0; i < WF_PATCH_TARGET_COUNT; i++)
        __atomic_store_n((uint64_t *)(void *)patch_targets[i].entry, patch_targets[i].patched, __ATOMIC_SEQ_CST);

    error = protect_target_pages(PROT_READ | PROT_EXEC, page_size, &changed);
    if (error != 0)
        WF_WARN(WF_SUB_ALLOC, "memory monitor: could not make libc's code read-only again (%s); it stays "
                              "writable, which works but weakens protection against code injection",
                strerror(error));
    return 0;
}

/*
 * Keep the object that contains the hooks loaded for good: after a dlclose() unmapped it, libc's
 * next munmap would jump into unmapped memory. The main program is never unloaded.
 */
static int pin_hooks_object(char *reason, size_t reason_length)
{
    Dl_info info;
    struct link_map *hooks_map = NULL, *main_map = NULL;
    void *main_program = dlopen(NULL, RTLD_LAZY);

    if (!dladdr1((void *)hook_munmap, &info, (void **)&hooks_map, RTLD_DL_LINKMAP) || hooks_map == NULL ||
        main_program == NULL || dlinfo(main_program, RTLD_DI_LINKMAP, &main_map) != 0) {
        const char *error = dlerror();
        snprintf(reason, reason_length, "the object that contains the hooks was not found: %s",
                 error != NULL ? error : "dladdr1 failed");
        return -1;
    }
    if (hooks_map == main_map)
        return 0;
    if (dlopen(hooks_map->l_name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE) == NULL) {
        const char *error = dlerror();
        snprintf(reason, reason_length, "%s could not be marked as never unloaded: %s", hooks_map->l_name,
                 error != NULL ? error : "dlopen failed");
        return -1;
    }
    return 0;
}

/* Unmap a scratch page through libc's patched munmap and check that the hook saw it. */
static int hooks_observe_munmap(size_t page_size, char *reason, size_t reason_length)
{
    int (*libc_munmap)(void *, size_t) = (int (*)(void *, size_t))(void *)patch_targets[0].entry;
    void *scratch = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED) {
        snprintf(reason, reason_length, "mmap of a scratch page failed: %s", strerror(errno));
        return -1;
    }
    uint64_t before = wf_memory_monitor_generation();
    if (libc_munmap(scratch, page_size) != 0 || wf_memory_monitor_generation() == before) {
        snprintf(reason, reason_length, "the patched munmap() did not reach the monitor");
        return -1;
    }
    return 0;
}

static int install_patches(char *reason, size_t reason_length)
{
    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0 || (page_size & (page_size - 1)) != 0) {
        snprintf(reason, reason_length, "the page size %ld is not a power of two", page_size);
        return -1;
    }
    page_mask = (uintptr_t)page_size - 1;

    /* Bind __errno_location now, so that no hook ever runs the dynamic linker's lazy binding. */
    volatile int saved_errno = errno;
    errno = saved_errno;

    if (resolve_targets(reason, reason_length) != 0 || pin_hooks_object(reason, reason_length) != 0)
        return -1;
    unsigned char *trampolines = map_trampoline_page((size_t)page_size);
    if (trampolines == NULL) {
        snprintf(reason, reason_length, "no free page within 1 GiB of libc's code for the jump trampolines");
        return -1;
    }
    if (prepare_patches(trampolines, (size_t)page_size, reason, reason_length) != 0 ||
        write_patches((size_t)page_size, reason, reason_length) != 0) {
        munmap(trampolines, (size_t)page_size);
        return -1;
    }
    if (hooks_observe_munmap((size_t)page_size, reason, reason_length) != 0)
        return -1;

    /* AddressSanitizer replaces malloc, and its allocator maps and unmaps with direct system calls. */
    if (dlsym(RTLD_DEFAULT, "__asan_init") != NULL)
        WF_WARN(WF_SUB_ALLOC, "memory monitor: AddressSanitizer's allocator releases memory with direct system "
                              "calls that the monitor does not observe, so a freed and reused buffer may get a "
                              "stale registration; set WEFT_MR_CACHE_MONITOR=none when results must be exact on "
                              "providers that pin pages");
    return 0;
}

int wf_memory_monitor_intact(void)
{
    if (!wf_memory_monitor_installed() || atomic_load_explicit(&patches_overwritten, memory_order_relaxed))
        return 0;
    for (size_t i = 0; i < WF_PATCH_TARGET_COUNT; i++) {
        const wf_patch_target_t *target = &patch_targets[i];
        if (__atomic_load_n((const uint64_t *)(const void *)target->entry, __ATOMIC_RELAXED) != target->patched) {
            if (!atomic_exchange(&patches_overwritten, 1))
                WF_WARN(WF_SUB_ALLOC,
                        "memory monitor: %s() at %p was patched again by another library or a debugger, so "
                        "freed memory is no longer observed; the registration cache now registers buffers on "
                        "every call",
                        target->name, (void *)target->entry);
            return 0;
        }
    }
    return 1;
}

#else /* not x86_64 Linux with glibc */

static int install_patches(char *reason, size_t reason_length)
{
    snprintf(reason, reason_length, "patching libc is implemented only for x86_64 Linux with glibc");
    return -1;
}

int wf_memory_monitor_intact(void)
{
    return 0;
}

#endif

int wf_memory_monitor_install(void)
{
    pthread_mutex_lock(&install_lock);
    if (atomic_load(&install_state) == 0) {
        char reason[256] = "";
        if (install_patches(reason, sizeof reason) == 0) {
            atomic_store_explicit(&install_state, 1, memory_order_release);
            WF_INFO(WF_SUB_ALLOC, "memory monitor installed: munmap, mremap, madvise, brk and mmap(MAP_FIXED) "
                                  "are observed");
        } else {
            atomic_store_explicit(&install_state, -1, memory_order_release);
            WF_WARN(WF_SUB_ALLOC,
                    "memory monitor not installed: %s; the registration cache is off, so buffers are "
                    "registered on every call (set WEFT_MR_CACHE_MONITOR=none to skip this attempt)",
                    reason);
        }
    }
    int installed = atomic_load(&install_state) == 1;
    pthread_mutex_unlock(&install_lock);
    return installed ? 0 : -1;
}
