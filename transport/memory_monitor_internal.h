/*
 * What the registration cache needs from the memory monitor beyond mr_cache.h: the released ranges
 * themselves, and whether the patches are still in place.
 *
 * Released ranges go into a process-wide ring of WF_MEMORY_MONITOR_RING_SIZE slots. Each release
 * takes the next generation number g and the slot (g - 1) % WF_MEMORY_MONITOR_RING_SIZE. Readers
 * never consume slots, so any number of caches can drain the same ring, each from its own
 * generation.
 */
#ifndef WF_MEMORY_MONITOR_INTERNAL_H
#define WF_MEMORY_MONITOR_INTERNAL_H

#include <stdint.h>

#define WF_MEMORY_MONITOR_RING_SIZE 1024

/* Called with a released range [start, end), page-aligned. */
typedef void (*wf_released_range_fn)(void *arg, uintptr_t start, uintptr_t end);

/*
 * Call on_release for every range released after generation *seen, then advance *seen. A release
 * whose slot is still being written is left for the next call. Returns 1 when releases were lost
 * because more than WF_MEMORY_MONITOR_RING_SIZE happened since *seen: the caller must then treat
 * all of memory as released. Returns 0 otherwise. Takes no lock and allocates nothing.
 */
int wf_memory_monitor_drain(uint64_t *seen, wf_released_range_fn on_release, void *arg);

/* Non-zero once wf_memory_monitor_install has succeeded. */
int wf_memory_monitor_installed(void);

/*
 * Non-zero while every patched libc entry point still jumps to the monitor. Another library that
 * patches the same functions later (a debugger breakpoint, another memory hook) makes it 0 for
 * good. Costs one load per patched function.
 */
int wf_memory_monitor_intact(void);

#endif /* WF_MEMORY_MONITOR_INTERNAL_H */
