/*
 * The verbs transport's GID choice on RoCE ports, on made-up GID tables: RoCE v2 before v1, an
 * IPv4-mapped address before a global IPv6 one, link-local only when nothing else is there, and
 * WEFT_IB_GID_INDEX's index whatever its rank.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "verbs/verbs.h"

/* A table entry: type, index and an address written as 16 bytes. */
static struct ibv_gid_entry entry(uint32_t index, uint32_t type, const uint8_t raw[16])
{
    struct ibv_gid_entry e;
    memset(&e, 0, sizeof(e));
    e.gid_index = index;
    e.gid_type = type;
    memcpy(e.gid.raw, raw, 16);
    return e;
}

static const uint8_t link_local[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55};
static const uint8_t ipv4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1};
static const uint8_t global6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
static const uint8_t zero[16];

/* The table rxe shows on a netdev with one IPv4 address: v1 and v2 of link-local, then of IPv4. */
static void test_prefers_ipv4_roce_v2(void **state)
{
    struct ibv_gid_entry table[] = {
        entry(0, IBV_GID_TYPE_ROCE_V1, link_local), entry(1, IBV_GID_TYPE_ROCE_V2, link_local),
        entry(2, IBV_GID_TYPE_ROCE_V1, ipv4),       entry(3, IBV_GID_TYPE_ROCE_V2, ipv4),
    };
    assert_int_equal(wf_verbs_pick_gid(table, 4, -1), 3);
}

static void test_ipv4_before_global_ipv6_and_v2_before_v1(void **state)
{
    struct ibv_gid_entry table[] = {
        entry(0, IBV_GID_TYPE_ROCE_V2, global6),
        entry(1, IBV_GID_TYPE_ROCE_V1, ipv4),
        entry(2, IBV_GID_TYPE_ROCE_V2, ipv4),
    };
    assert_int_equal(wf_verbs_pick_gid(table, 3, -1), 2);
    /* Without the IPv4 v2 entry, a routable v2 GID beats an IPv4 v1 one. */
    assert_int_equal(wf_verbs_pick_gid(table, 2, -1), 0);
}

static void test_link_local_only_when_nothing_routable(void **state)
{
    struct ibv_gid_entry table[] = {
        entry(0, IBV_GID_TYPE_ROCE_V2, link_local),
        entry(1, IBV_GID_TYPE_ROCE_V2, zero),
    };
    assert_int_equal(wf_verbs_pick_gid(table, 2, -1), 0);
    assert_int_equal(wf_verbs_gid_score(&table[1]), 0);
    assert_int_equal(wf_verbs_pick_gid(&table[1], 1, -1), -1);
}

static void test_forced_index(void **state)
{
    struct ibv_gid_entry table[] = {
        entry(0, IBV_GID_TYPE_ROCE_V2, link_local),
        entry(1, IBV_GID_TYPE_ROCE_V2, ipv4),
        entry(5, IBV_GID_TYPE_ROCE_V1, ipv4),
    };
    /* The forced index is matched against the entry's own gid_index, not its position. */
    assert_int_equal(wf_verbs_pick_gid(table, 3, 5), 2);
    assert_int_equal(wf_verbs_pick_gid(table, 3, 0), 0);
    assert_int_equal(wf_verbs_pick_gid(table, 3, 2), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefers_ipv4_roce_v2),
        cmocka_unit_test(test_ipv4_before_global_ipv6_and_v2_before_v1),
        cmocka_unit_test(test_link_local_only_when_nothing_routable),
        cmocka_unit_test(test_forced_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
