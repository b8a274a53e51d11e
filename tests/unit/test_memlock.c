/*
 * The memlock check of pinning transports (transport/memlock.c): its verdict and warning for soft
 * RLIMIT_MEMLOCK values set here with setrlimit, with and without CAP_IPC_LOCK in the effective
 * set, and which provider names count as pinning memory.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <linux/capability.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memlock.h"

static struct rlimit original;

/* Read or write this process's capability sets (no libcap needed). */
static int capabilities(struct __user_cap_data_struct data[2], int write)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    return (int)syscall(write ? SYS_capset : SYS_capget, &header, data);
}

/* Add CAP_IPC_LOCK to the effective set or remove it. Returns 0 on success. */
static int set_ipc_lock(int on)
{
    struct __user_cap_data_struct data[2];
    if (capabilities(data, 0) != 0)
        return -1;
    if (on && !(data[0].permitted & (1u << CAP_IPC_LOCK)))
        return -1;
    if (on)
        data[0].effective |= 1u << CAP_IPC_LOCK;
    else
        data[0].effective &= ~(1u << CAP_IPC_LOCK);
    return capabilities(data, 1);
}

static void set_soft_limit(rlim_t value)
{
    struct rlimit limit = original;
    limit.rlim_cur = value;
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &limit), 0);
}

static int setup(void **state)
{
    (void)state;
    return getrlimit(RLIMIT_MEMLOCK, &original);
}

static int teardown(void **state)
{
    (void)state;
    set_ipc_lock(1); /* back to what root started with; fails harmlessly without the permitted bit */
    return setrlimit(RLIMIT_MEMLOCK, &original);
}

static void low_limit_warns_with_values_and_advice(void **state)
{
    (void)state;
    assert_int_equal(set_ipc_lock(0), 0);
    set_soft_limit(65536);
    char message[1024] = "not cleared";
    assert_int_equal(wf_memlock_check(3, 1048576, message, sizeof(message)), 1);
    assert_non_null(strstr(message, "rank 3: "));
    assert_non_null(strstr(message, "is 65536 bytes (0.1 MiB)"));
    assert_non_null(strstr(message, "below the 1048576 bytes (1.0 MiB)"));
    assert_non_null(strstr(message, "RLIMIT_MEMLOCK"));
    assert_non_null(strstr(message, "ulimit -l unlimited"));
    assert_non_null(strstr(message, "/etc/security/limits.conf"));
}

static void limit_at_or_above_estimate_is_quiet(void **state)
{
    (void)state;
    assert_int_equal(set_ipc_lock(0), 0);
    set_soft_limit(1048576);
    char message[1024] = "not cleared";
    assert_int_equal(wf_memlock_check(0, 1048576, message, sizeof(message)), 0);
    assert_string_equal(message, "");
    assert_int_equal(wf_memlock_check(0, 1048577, message, sizeof(message)), 1);
    assert_non_null(strstr(message, "1048577 bytes"));
    /* Without an output buffer the verdict is the same. */
    assert_int_equal(wf_memlock_check(0, 1048577, NULL, 0), 1);
    assert_int_equal(wf_memlock_check(0, 4096, NULL, 0), 0);
}

static void unlimited_is_quiet(void **state)
{
    (void)state;
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    if (setrlimit(RLIMIT_MEMLOCK, &unlimited) != 0)
        skip(); /* the hard limit is finite and this process may not raise it */
    assert_int_equal(set_ipc_lock(0), 0);
    char message[64] = "not cleared";
    assert_int_equal(wf_memlock_check(1, UINT64_MAX, message, sizeof(message)), 0);
    assert_string_equal(message, "");
}

static void ipc_lock_capability_exempts(void **state)
{
    (void)state;
    if (set_ipc_lock(1) != 0)
        skip(); /* not root: CAP_IPC_LOCK is not permitted */
    set_soft_limit(65536);
    assert_int_equal(wf_memlock_check(2, 1048576, NULL, 0), 0);
}

static void providers_that_pin(void **state)
{
    (void)state;
    assert_true(wf_memlock_provider_pins("verbs;ofi_rxm"));
    assert_true(wf_memlock_provider_pins("efa"));
    assert_true(wf_memlock_provider_pins("cxi"));
    assert_true(wf_memlock_provider_pins("verbs"));
    assert_true(wf_memlock_provider_pins("shm (weft) inside nodes, verbs;ofi_rxm between nodes"));
    assert_false(wf_memlock_provider_pins("shm (weft)"));
    assert_false(wf_memlock_provider_pins("shm"));
    assert_false(wf_memlock_provider_pins("tcp;ofi_rxm"));
    assert_false(wf_memlock_provider_pins("tcp"));
    assert_false(wf_memlock_provider_pins("sockets"));
    assert_false(wf_memlock_provider_pins("udp;ofi_rxd"));
    assert_false(wf_memlock_provider_pins("shm (weft) inside nodes, tcp;ofi_rxm between nodes"));
    assert_false(wf_memlock_provider_pins(""));
    assert_false(wf_memlock_provider_pins(NULL));
    /* Only a whole first name counts: "tcpx" and "shmem" are other providers. */
    assert_true(wf_memlock_provider_pins("tcpx"));
    assert_true(wf_memlock_provider_pins("shmem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(low_limit_warns_with_values_and_advice, setup, teardown),
        cmocka_unit_test_setup_teardown(limit_at_or_above_estimate_is_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(unlimited_is_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(ipc_lock_capability_exempts, setup, teardown),
        cmocka_unit_test(providers_that_pin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
