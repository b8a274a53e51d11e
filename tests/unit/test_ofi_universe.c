/*
 * The FI_UNIVERSE_SIZE weft sets before libfabric starts (transport/ofi/ofi_info.c): the
 * communicator size with a floor, only when the user left it unset and a verbs-based provider may
 * be chosen. The value must keep ofi_rxm's completion queue on Soft-RoCE within max_cqe 32767.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "ofi/ofi.h"

static int universe(const char *provider, int nranks, const char *current)
{
    const char *reason = NULL;
    int size = wf_ofi_universe_size(provider, nranks, current, &reason);
    assert_non_null(reason);
    assert_true(reason[0] != '\0');
    return size;
}

static void communicator_size_with_floor(void **state)
{
    (void)state;
    assert_int_equal(universe(NULL, 2, NULL), WF_OFI_MIN_UNIVERSE);
    assert_int_equal(universe("", 1, NULL), WF_OFI_MIN_UNIVERSE);
    assert_int_equal(universe("", WF_OFI_MIN_UNIVERSE + 1, NULL), WF_OFI_MIN_UNIVERSE + 1);
    assert_int_equal(universe("verbs;ofi_rxm", 8, NULL), WF_OFI_MIN_UNIVERSE);
    assert_int_equal(universe("verbs;ofi_rxm", 1000, NULL), 1000);
    /* An empty value counts as unset. */
    assert_int_equal(universe("verbs;ofi_rxm", 4, ""), WF_OFI_MIN_UNIVERSE);
}

static void user_value_or_other_provider_left_alone(void **state)
{
    (void)state;
    assert_int_equal(universe("verbs;ofi_rxm", 4, "32"), 0);
    assert_int_equal(universe(NULL, 4, "1024"), 0);
    assert_int_equal(universe("tcp;ofi_rxm", 4, NULL), 0);
    assert_int_equal(universe("shm", 4, NULL), 0);
    assert_int_equal(universe("efa", 4, NULL), 0);
}

static void floor_fits_soft_roce(void **state)
{
    (void)state;
    /* ofi_rxm's default core-endpoint sizes are 128 transmit and 128 receive entries per peer. */
    assert_true((128 + 128) * WF_OFI_MIN_UNIVERSE <= 32767);
    assert_string_equal(WF_OFI_MIN_UNIVERSE_TEXT, "64");
    assert_int_equal(WF_OFI_MIN_UNIVERSE, 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(communicator_size_with_floor),
        cmocka_unit_test(user_value_or_other_provider_left_alone),
        cmocka_unit_test(floor_fits_soft_roce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
