/*
 * WEFT_IB_HCA: every form of the syntax, every rejected form, matching, and the choice of the
 * nearest ports on made-up devices.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "nic_select.h"

static wf_nic_spec_t parse_ok(const char *text)
{
    wf_nic_spec_t spec;
    char err[512] = "";

    if (wf_nic_spec_parse(text, &spec, err, sizeof err) != 0)
        fail_msg("\"%s\" rejected: %s", text, err);
    return spec;
}

/* Expect text to be rejected with a message containing phrase, and the spec left empty. */
static void expect_rejected(const char *text, const char *phrase)
{
    wf_nic_spec_t spec;
    char err[512] = "";

    if (wf_nic_spec_parse(text, &spec, err, sizeof err) == 0)
        fail_msg("\"%s\" was accepted", text);
    if (strstr(err, phrase) == NULL)
        fail_msg("message for \"%s\" lacks \"%s\": %s", text, phrase, err);
    assert_int_equal(spec.nentries, 0);
    assert_int_equal(spec.exclude, 0);
    assert_int_equal(spec.exact, 0);
}

static void test_parse_empty_allows_all(void **state)
{
    wf_nic_spec_t spec = parse_ok("");

    assert_int_equal(spec.nentries, 0);
    assert_int_equal(spec.exclude, 0);
    assert_int_equal(spec.exact, 0);
    assert_true(wf_nic_spec_allows(&spec, "mlx5_0", 1));
    assert_true(wf_nic_spec_allows(&spec, "rxe0", 2));
}

static void test_parse_prefixes(void **state)
{
    wf_nic_spec_t spec = parse_ok("mlx5,bnxt_re");

    assert_int_equal(spec.nentries, 2);
    assert_int_equal(spec.exclude, 0);
    assert_int_equal(spec.exact, 0);
    assert_string_equal(spec.entries[0].name, "mlx5");
    assert_int_equal(spec.entries[0].port, 0);
    assert_string_equal(spec.entries[1].name, "bnxt_re");
    assert_int_equal(spec.entries[1].port, 0);
}

static void test_parse_exact_with_ports(void **state)
{
    wf_nic_spec_t spec = parse_ok("=mlx5_0:1,mlx5_1:2");

    assert_int_equal(spec.nentries, 2);
    assert_int_equal(spec.exact, 1);
    assert_int_equal(spec.exclude, 0);
    assert_string_equal(spec.entries[0].name, "mlx5_0");
    assert_int_equal(spec.entries[0].port, 1);
    assert_string_equal(spec.entries[1].name, "mlx5_1");
    assert_int_equal(spec.entries[1].port, 2);
}

static void test_parse_exclude_forms(void **state)
{
    wf_nic_spec_t spec = parse_ok("^mlx5_1");
    assert_int_equal(spec.exclude, 1);
    assert_int_equal(spec.exact, 0);
    assert_int_equal(spec.nentries, 1);

    spec = parse_ok("^=mlx5_1,mlx5_4");
    assert_int_equal(spec.exclude, 1);
    assert_int_equal(spec.exact, 1);
    assert_int_equal(spec.nentries, 2);
    assert_string_equal(spec.entries[1].name, "mlx5_4");
}

static void test_parse_port_bounds(void **state)
{
    wf_nic_spec_t spec = parse_ok("mlx5_0:255");
    assert_int_equal(spec.entries[0].port, 255);
    spec = parse_ok("mlx5_0:1");
    assert_int_equal(spec.entries[0].port, 1);

    expect_rejected("mlx5_0:0", "invalid port \"0\"");
    expect_rejected("mlx5_0:256", "invalid port \"256\"");
    expect_rejected("mlx5_0:99999999999", "invalid port");
    expect_rejected("mlx5_0:", "invalid port \"\"");
    expect_rejected("mlx5_0:x", "invalid port \"x\"");
    expect_rejected("mlx5_0:-1", "invalid port \"-1\"");
    expect_rejected("mlx5_0:1a", "invalid port \"1a\"");
    expect_rejected("mlx5_0:+1", "invalid port \"+1\"");
    expect_rejected("mlx5_0:1:2", "more than one ':'");
    expect_rejected(":1", "entry 1 (\":1\") has no device name");
}

static void test_parse_empty_entries(void **state)
{
    expect_rejected("mlx5_0,,mlx5_1", "entry 2 is empty");
    expect_rejected(",mlx5_0", "entry 1 is empty");
    expect_rejected("mlx5_0,", "entry 2 is empty");
    expect_rejected("^mlx5_0,", "entry 2 is empty");
    expect_rejected(",", "entry 1 is empty");
}

static void test_parse_prefix_errors(void **state)
{
    expect_rejected("^", "no device name follows the '^'");
    expect_rejected("=", "no device name follows the '='");
    expect_rejected("^=", "no device name follows the '^'");
    expect_rejected("=^mlx5_0", "'^' must come first");
    expect_rejected("^^mlx5_0", "'^' must come first");
    expect_rejected("mlx5_0,^mlx5_1", "entry 2 (\"^mlx5_1\") contains '^'");
    expect_rejected("mlx5_0,=mlx5_1", "entry 2 (\"=mlx5_1\") contains '='");
    expect_rejected("^==mlx5_0", "entry 1 (\"=mlx5_0\") contains '='");
}

static void test_parse_name_errors(void **state)
{
    expect_rejected("mlx5_0, mlx5_1", "entry 2 (\" mlx5_1\") contains a space");
    expect_rejected("mlx5\t0", "contains a space or a control character");
    expect_rejected("a234567890123456789012345678901x", "longer than 31 bytes");
    parse_ok("a234567890123456789012345678901");

    char many[512] = "";
    for (int i = 0; i < WF_NIC_ENTRIES_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sd%d", i ? "," : "", i);
    wf_nic_spec_t spec = parse_ok(many);
    assert_int_equal(spec.nentries, WF_NIC_ENTRIES_MAX);
    snprintf(many + strlen(many), sizeof many - strlen(many), ",d%d", WF_NIC_ENTRIES_MAX);
    expect_rejected(many, "more than 32 entries");
}

static void test_match_prefix_and_exact(void **state)
{
    wf_nic_spec_t prefix = parse_ok("mlx5_1");
    assert_true(wf_nic_spec_allows(&prefix, "mlx5_1", 1));
    assert_true(wf_nic_spec_allows(&prefix, "mlx5_12", 1)); /* a prefix, as in NCCL */
    assert_false(wf_nic_spec_allows(&prefix, "mlx5_0", 1));
    assert_false(wf_nic_spec_allows(&prefix, "mlx5_", 1));

    wf_nic_spec_t exact = parse_ok("=mlx5_1");
    assert_true(wf_nic_spec_allows(&exact, "mlx5_1", 1));
    assert_false(wf_nic_spec_allows(&exact, "mlx5_12", 1));
    assert_int_equal(wf_nic_spec_find(&exact, "mlx5_1", 2), 0);
    assert_int_equal(wf_nic_spec_find(&exact, "mlx5_12", 1), -1);
}

static void test_match_ports(void **state)
{
    wf_nic_spec_t spec = parse_ok("mlx5_0:1,mlx5_1:2");

    assert_true(wf_nic_spec_allows(&spec, "mlx5_0", 1));
    assert_false(wf_nic_spec_allows(&spec, "mlx5_0", 2));
    assert_false(wf_nic_spec_allows(&spec, "mlx5_1", 1));
    assert_true(wf_nic_spec_allows(&spec, "mlx5_1", 2));
    assert_int_equal(wf_nic_spec_find(&spec, "mlx5_1", 2), 1);
}

static void test_match_exclude(void **state)
{
    wf_nic_spec_t prefix = parse_ok("^mlx5_1");
    assert_true(wf_nic_spec_allows(&prefix, "mlx5_0", 1));
    assert_false(wf_nic_spec_allows(&prefix, "mlx5_1", 1));
    assert_false(wf_nic_spec_allows(&prefix, "mlx5_10", 1));

    wf_nic_spec_t exact = parse_ok("^=mlx5_1");
    assert_false(wf_nic_spec_allows(&exact, "mlx5_1", 1));
    assert_true(wf_nic_spec_allows(&exact, "mlx5_10", 1));

    wf_nic_spec_t port = parse_ok("^mlx5_0:1");
    assert_false(wf_nic_spec_allows(&port, "mlx5_0", 1));
    assert_true(wf_nic_spec_allows(&port, "mlx5_0", 2));
}

/* Four devices: two near (distance 0), one farther (1), one of unknown locality (3). */
static void make_devices(wf_nic_device_t devices[4])
{
    memset(devices, 0, 4 * sizeof(*devices));
    devices[0] = (wf_nic_device_t){"mlx5_0", 1, 2, {WF_PORT_STATE_ACTIVE, WF_PORT_STATE_DOWN}};
    devices[1] = (wf_nic_device_t){"mlx5_1", 0, 1, {WF_PORT_STATE_ACTIVE}};
    devices[2] = (wf_nic_device_t){"mlx5_2", 0, 2, {WF_PORT_STATE_ACTIVE, WF_PORT_STATE_ACTIVE}};
    devices[3] = (wf_nic_device_t){"rxe0", 3, 0, {0}};
}

static void expect_choice(const char *text, int max_chosen, int expected_count, const int (*expected)[2],
                          int nearest, int distance)
{
    wf_nic_device_t devices[4];
    wf_nic_choice_t chosen[8];
    wf_nic_outcome_t outcome;
    wf_nic_spec_t spec = parse_ok(text);

    make_devices(devices);
    int count = wf_nic_choose(&spec, devices, 4, chosen, max_chosen, &outcome);
    if (count != expected_count)
        fail_msg("WEFT_IB_HCA=\"%s\": %d ports chosen, expected %d", text, count, expected_count);
    for (int i = 0; i < count; i++) {
        if (chosen[i].device != expected[i][0] || chosen[i].port != expected[i][1])
            fail_msg("WEFT_IB_HCA=\"%s\": choice %d is %s:%d, expected %s:%d", text, i, devices[chosen[i].device].name,
                     chosen[i].port, devices[expected[i][0]].name, expected[i][1]);
    }
    assert_int_equal(outcome.nearest, nearest);
    if (count > 0)
        assert_int_equal(outcome.distance, distance);
}

static void test_choose_nearest_rails(void **state)
{
    /* Both ports of mlx5_2 and the one of mlx5_1 are at distance 0, in device then port order. */
    const int all[][2] = {{1, 1}, {2, 1}, {2, 2}};
    expect_choice("", 4, 3, all, 3, 0);
    /* Capped: the third equally near port is counted but left out. */
    expect_choice("", 2, 2, all, 3, 0);
}

static void test_choose_follows_entry_order(void **state)
{
    const int reversed[][2] = {{2, 1}, {2, 2}, {1, 1}};
    expect_choice("mlx5_2,mlx5_1", 4, 3, reversed, 3, 0);
    /* A list restricts, it does not make a farther device win over a nearer one. */
    const int near_only[][2] = {{1, 1}};
    expect_choice("mlx5_0,mlx5_1", 4, 1, near_only, 1, 0);
}

static void test_choose_skips_down_ports(void **state)
{
    const int port1[][2] = {{0, 1}};
    expect_choice("mlx5_0", 4, 1, port1, 1, 1);
    expect_choice("mlx5_0:2", 4, 0, NULL, 0, 0);

    wf_nic_device_t devices[4];
    wf_nic_choice_t chosen[4];
    wf_nic_outcome_t outcome;
    wf_nic_spec_t spec = parse_ok("mlx5_0:2");
    make_devices(devices);
    assert_int_equal(wf_nic_choose(&spec, devices, 4, chosen, 4, &outcome), 0);
    assert_int_equal(outcome.allowed, 1);
    assert_int_equal(outcome.usable, 0);
}

static void test_choose_exclude_and_unknown(void **state)
{
    /* Without the two near devices, mlx5_0 (distance 1) beats rxe0 (unknown locality). */
    const int far[][2] = {{0, 1}};
    expect_choice("^mlx5_1,mlx5_2", 4, 1, far, 1, 1);
    /* A device with unknown ports counts as port 1 in an unknown state, which is usable. */
    const int rxe[][2] = {{3, 1}};
    expect_choice("rxe", 4, 1, rxe, 1, 3);
    expect_choice("rxe0:1", 4, 1, rxe, 1, 3);
    expect_choice("^mlx5", 4, 1, rxe, 1, 3);
    expect_choice("nosuch", 4, 0, NULL, 0, 0);
    expect_choice("^mlx5,rxe", 4, 0, NULL, 0, 0);
}

static void test_choose_no_devices(void **state)
{
    wf_nic_choice_t chosen[4];
    wf_nic_outcome_t outcome;
    wf_nic_spec_t spec = parse_ok("");

    assert_int_equal(wf_nic_choose(&spec, NULL, 0, chosen, 4, &outcome), 0);
    assert_int_equal(outcome.allowed, 0);
    assert_int_equal(outcome.usable, 0);
    assert_int_equal(outcome.nearest, 0);
}

static void test_describe_devices(void **state)
{
    wf_nic_device_t devices[4];
    char text[256];

    make_devices(devices);
    wf_nic_describe_devices(devices, 4, text, sizeof text);
    assert_string_equal(text, "mlx5_0 (port 1 active, port 2 down), mlx5_1 (port 1 active), "
                              "mlx5_2 (port 1 active, port 2 active), rxe0 (port 1)");
    wf_nic_describe_devices(devices, 0, text, sizeof text);
    assert_string_equal(text, "none");
    /* A short buffer is cut, never overrun. */
    char small[12];
    memset(small, 'x', sizeof small);
    wf_nic_describe_devices(devices, 4, small, 10);
    assert_int_equal(strlen(small), 9);
    assert_int_equal(small[11], 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_empty_allows_all),
        cmocka_unit_test(test_parse_prefixes),
        cmocka_unit_test(test_parse_exact_with_ports),
        cmocka_unit_test(test_parse_exclude_forms),
        cmocka_unit_test(test_parse_port_bounds),
        cmocka_unit_test(test_parse_empty_entries),
        cmocka_unit_test(test_parse_prefix_errors),
        cmocka_unit_test(test_parse_name_errors),
        cmocka_unit_test(test_match_prefix_and_exact),
        cmocka_unit_test(test_match_ports),
        cmocka_unit_test(test_match_exclude),
        cmocka_unit_test(test_choose_nearest_rails),
        cmocka_unit_test(test_choose_follows_entry_order),
        cmocka_unit_test(test_choose_skips_down_ports),
        cmocka_unit_test(test_choose_exclude_and_unknown),
        cmocka_unit_test(test_choose_no_devices),
        cmocka_unit_test(test_describe_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
