/*
 * Fibers on ucontext. glibc's swapcontext also saves the signal mask (one system call per
 * switch); a switch happens once per weft_test and once per idle poll of a waiting fiber, so the
 * cost stays far below that of the collectives themselves.
 *
 * AddressSanitizer must be told about stack switches, or it reports the fiber's frames as stack
 * overflows of the thread: every switch is bracketed by the sanitizer's fiber annotations.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "fiber.h"

#if defined(__SANITIZE_ADDRESS__)
#define WF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WF_ASAN 1
#endif
#endif

#ifdef WF_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
#endif

struct wf_fiber {
    ucontext_t context;  /* the fiber's registers while it is suspended */
    ucontext_t resumer;  /* the resuming thread's registers while the fiber runs */
    void (*entry)(void *arg);
    void *arg;
    void *mapping;       /* guard page followed by the stack */
    size_t mapping_bytes;
    void *stack;
    size_t stack_bytes;
#ifdef WF_ASAN
    const void *resumer_bottom; /* the resuming thread's stack, for the switch back */
    size_t resumer_size;
    void *fake_stack;
#endif
};

/* makecontext passes int arguments only, so the pointer travels in two halves. */
static void trampoline(unsigned int high, unsigned int low)
{
    wf_fiber_t *fiber = (wf_fiber_t *)(((uintptr_t)high << 32) | (uintptr_t)low);
#ifdef WF_ASAN
    __sanitizer_finish_switch_fiber(NULL, &fiber->resumer_bottom, &fiber->resumer_size);
#endif
    fiber->entry(fiber->arg);
    abort(); /* entry functions loop forever; returning would resume nothing */
}

/* Kept apart from wf_fiber_create: getcontext returns like setjmp, which clobbers the caller's locals. */
static __attribute__((noinline)) void prepare_context(wf_fiber_t *fiber)
{
    getcontext(&fiber->context);
    fiber->context.uc_stack.ss_sp = fiber->stack;
    fiber->context.uc_stack.ss_size = fiber->stack_bytes;
    fiber->context.uc_link = NULL;
    uintptr_t self = (uintptr_t)fiber;
    makecontext(&fiber->context, (void (*)(void))trampoline, 2, (unsigned int)(self >> 32),
                (unsigned int)(self & 0xffffffffu));
}

wf_fiber_t *wf_fiber_create(void (*entry)(void *arg), void *arg, size_t stack_bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    stack_bytes = (stack_bytes + page - 1) & ~(page - 1);
    wf_fiber_t *fiber = calloc(1, sizeof(*fiber));
    if (fiber == NULL)
        return NULL;
    fiber->mapping_bytes = stack_bytes + page;
    fiber->mapping = mmap(NULL, fiber->mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fiber->mapping == MAP_FAILED) {
        free(fiber);
        return NULL;
    }
    mprotect(fiber->mapping, page, PROT_NONE); /* an overflow faults instead of corrupting the heap */
    fiber->stack = (char *)fiber->mapping + page;
    fiber->stack_bytes = stack_bytes;
    fiber->entry = entry;
    fiber->arg = arg;
    prepare_context(fiber);
    return fiber;
}

void wf_fiber_resume(wf_fiber_t *fiber)
{
#ifdef WF_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, fiber->stack, fiber->stack_bytes);
#endif
    swapcontext(&fiber->resumer, &fiber->context);
#ifdef WF_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

void wf_fiber_yield(wf_fiber_t *fiber)
{
#ifdef WF_ASAN
    __sanitizer_start_switch_fiber(&fiber->fake_stack, fiber->resumer_bottom, fiber->resumer_size);
#endif
    swapcontext(&fiber->context, &fiber->resumer);
#ifdef WF_ASAN
    __sanitizer_finish_switch_fiber(fiber->fake_stack, &fiber->resumer_bottom, &fiber->resumer_size);
#endif
}

void wf_fiber_destroy(wf_fiber_t *fiber)
{
    if (fiber == NULL)
        return;
    munmap(fiber->mapping, fiber->mapping_bytes);
    free(fiber);
}
