/*
 * Which libfabric domain a rank takes for the NIC the topology chose (its rail): device names
 * against the domain names providers list, on a made-up fi_getinfo list with two devices.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <rdma/fabric.h>

#include "ofi/ofi.h"

/* Provider and domain pairs, in the order providers on a node with two devices would list them. */
static const char *const listed[][2] = {
    {"verbs;ofi_rxm", "mlx5_0"}, {"verbs;ofi_rxm", "mlx5_1"},  {"verbs;ofi_rxm", "mlx5_10"},
    {"verbs", "mlx5_0-xrc"},     {"verbs", "mlx5_1-dgram"},    {"tcp;ofi_rxm", "eth0"},
};
#define LISTED (sizeof(listed) / sizeof(listed[0]))

static struct fi_info *make_list(void)
{
    struct fi_info *head = NULL, **tail = &head;
    for (size_t i = 0; i < LISTED; i++) {
        struct fi_info *entry = fi_allocinfo();
        assert_non_null(entry);
        entry->fabric_attr->prov_name = strdup(listed[i][0]);
        entry->domain_attr->name = strdup(listed[i][1]);
        *tail = entry;
        tail = &entry->next;
    }
    return head;
}

/* Return the domain name of the entry chosen for rail, or NULL. */
static const char *domain_for(const struct fi_info *list, const char *provider, const char *rail)
{
    const struct fi_info *entry = wf_ofi_rail_entry(list, provider, rail);
    if (entry != NULL)
        assert_string_equal(entry->fabric_attr->prov_name, provider);
    return entry != NULL ? entry->domain_attr->name : NULL;
}

static void exact_device_name(void **state)
{
    (void)state;
    struct fi_info *list = make_list();
    assert_string_equal(domain_for(list, "verbs;ofi_rxm", "mlx5_0"), "mlx5_0");
    assert_string_equal(domain_for(list, "verbs;ofi_rxm", "mlx5_1"), "mlx5_1");
    assert_string_equal(domain_for(list, "verbs;ofi_rxm", "mlx5_10"), "mlx5_10");
    fi_freeinfo(list);
}

static void device_name_with_suffix(void **state)
{
    (void)state;
    struct fi_info *list = make_list();
    assert_string_equal(domain_for(list, "verbs", "mlx5_0"), "mlx5_0-xrc");
    assert_string_equal(domain_for(list, "verbs", "mlx5_1"), "mlx5_1-dgram");
    fi_freeinfo(list);
}

/* A prefix of a device name is not that device: mlx5_1 must not take mlx5_10, nor mlx5 mlx5_0. */
static void prefix_is_not_a_match(void **state)
{
    (void)state;
    struct fi_info *list = make_list();
    assert_null(domain_for(list, "verbs;ofi_rxm", "mlx5"));
    assert_null(domain_for(list, "verbs;ofi_rxm", "mlx5_"));
    assert_null(domain_for(list, "verbs", "mlx5_10"));
    fi_freeinfo(list);
}

static void other_provider_or_no_rail(void **state)
{
    (void)state;
    struct fi_info *list = make_list();
    assert_null(domain_for(list, "tcp;ofi_rxm", "mlx5_0"));
    assert_null(domain_for(list, "efa", "mlx5_0"));
    assert_null(domain_for(list, "verbs;ofi_rxm", ""));
    assert_string_equal(domain_for(list, "tcp;ofi_rxm", "eth0"), "eth0");
    fi_freeinfo(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_device_name),
        cmocka_unit_test(device_name_with_suffix),
        cmocka_unit_test(prefix_is_not_a_match),
        cmocka_unit_test(other_provider_or_no_rail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
