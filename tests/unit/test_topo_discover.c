/*
 * Topology discovery on a made-up node (tests/data/two_packages.xml): binding, NUMA node, package,
 * caches, device locality and distance classes, the NIC choice under WEFT_IB_HCA and its errors,
 * the summary, the virtual devices read from a sysfs-like folder, and the dump files.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "topo_internal.h"

static hwloc_topology_t xml_topology;
static char temp_dir[] = "/tmp/weft-test-topo-XXXXXX";

static int setup(void **state)
{
    if (mkdtemp(temp_dir) == NULL || hwloc_topology_init(&xml_topology) != 0)
        return -1;
    hwloc_topology_set_io_types_filter(xml_topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_set_xml(xml_topology, WEFT_TEST_DATA_DIR "/two_packages.xml") != 0 ||
        hwloc_topology_load(xml_topology) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char command[256];

    hwloc_topology_destroy(xml_topology);
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    return system(command) == 0 ? 0 : -1;
}

/* Discover with the PUs in binding_list bound and WEFT_IB_HCA=spec; returns the result code. */
static int discover(const char *binding_list, const char *spec, wf_topo_local_t *local, char *err, size_t errlen)
{
    hwloc_cpuset_t binding = hwloc_bitmap_alloc();

    assert_non_null(binding);
    assert_int_equal(hwloc_bitmap_list_sscanf(binding, binding_list), 0);
    memset(local, 0, sizeof(*local));
    snprintf(local->hostname, sizeof(local->hostname), "testhost");
    int rc = wf_topo_discover_in(xml_topology, binding, spec, "the environment", local, err, errlen);
    hwloc_bitmap_free(binding);
    return rc;
}

static const wf_topo_device_t *find_device(const wf_topo_local_t *local, const char *name)
{
    for (int i = 0; i < local->ndevices; i++)
        if (strcmp(local->devices[i].name, name) == 0)
            return &local->devices[i];
    fail_msg("device %s not listed", name);
    return NULL;
}

static void expect_rails(const wf_topo_local_t *local, const char *expected, wf_topo_distance_t distance)
{
    char rails[256];

    wf_topo_format_rails(local->rails, local->nrails, rails, sizeof rails);
    if (strcmp(rails, expected) != 0)
        fail_msg("rails are %s, expected %s", rails, expected);
    if (local->nrails > 0)
        assert_int_equal(local->rail_distance, distance);
}

static void test_bound_to_first_numa_node(void **state)
{
    wf_topo_local_t local;
    char err[1024] = "";

    assert_int_equal(discover("0", "", &local, err, sizeof err), 0);
    assert_int_equal(local.hwloc_ok, 1);
    assert_int_equal(local.npackages, 2);
    assert_int_equal(local.nnumanodes, 3);
    assert_int_equal(local.ncores, 6);
    assert_int_equal(local.npus, 6);
    assert_string_equal(local.binding, "0");
    assert_int_equal(local.bound_pus, 1);
    assert_int_equal(local.bound_cores, 1);
    assert_int_equal(local.numa_node, 0);
    assert_string_equal(local.numa_nodes, "0");
    assert_int_equal(local.package, 0);
    assert_int_equal(local.l2.size, 1048576);
    assert_int_equal(local.l2.count, 1);
    assert_int_equal(local.l2.cores, 1);
    assert_int_equal(local.l3.size, 16777216);
    assert_int_equal(local.l3.count, 1);
    assert_int_equal(local.l3.cores, 2);

    /* hwloc's order: depth-first through the packages, then the devices on the machine itself. */
    static const char *const names[] = {"mlx5_0", "ens1f0", "mlx5_1", "ens2f0", "mlx5_2", "rxe0", "lo"};
    assert_int_equal(local.ndevices, 7);
    for (int i = 0; i < 7; i++)
        assert_string_equal(local.devices[i].name, names[i]);

    const wf_topo_device_t *mlx5_0 = find_device(&local, "mlx5_0");
    assert_int_equal(mlx5_0->type, WF_TOPO_DEV_OPENFABRICS);
    assert_string_equal(mlx5_0->pci_busid, "0000:01:00.0");
    assert_int_equal(mlx5_0->is_virtual, 0);
    assert_int_equal(mlx5_0->numa_node, 0);
    assert_int_equal(mlx5_0->package, 0);
    assert_string_equal(mlx5_0->cpuset, "0-1");
    assert_int_equal(mlx5_0->distance, WF_TOPO_SAME_NUMA);
    assert_int_equal(mlx5_0->nports, 2);
    assert_int_equal(mlx5_0->port_state[0], WF_PORT_STATE_ACTIVE);
    assert_int_equal(mlx5_0->port_state[1], WF_PORT_STATE_DOWN);

    const wf_topo_device_t *ens1f0 = find_device(&local, "ens1f0");
    assert_int_equal(ens1f0->type, WF_TOPO_DEV_NETWORK);
    assert_string_equal(ens1f0->pci_busid, "0000:01:00.0");
    assert_int_equal(ens1f0->distance, WF_TOPO_SAME_NUMA);
    assert_int_equal(ens1f0->nports, 0);

    const wf_topo_device_t *mlx5_2 = find_device(&local, "mlx5_2");
    assert_int_equal(mlx5_2->numa_node, 2);
    assert_int_equal(mlx5_2->package, 1);
    assert_string_equal(mlx5_2->cpuset, "4-5");
    assert_int_equal(mlx5_2->distance, WF_TOPO_OTHER);
    assert_int_equal(find_device(&local, "mlx5_1")->distance, WF_TOPO_OTHER);

    const wf_topo_device_t *rxe0 = find_device(&local, "rxe0");
    assert_int_equal(rxe0->is_virtual, 1);
    assert_int_equal(rxe0->distance, WF_TOPO_UNKNOWN);
    assert_int_equal(rxe0->numa_node, -1);
    assert_string_equal(rxe0->pci_busid, "");
    assert_int_equal(find_device(&local, "lo")->is_virtual, 1);

    expect_rails(&local, "mlx5_0:1", WF_TOPO_SAME_NUMA);
    assert_int_equal(local.rails_left_out, 0);
    wf_topo_local_free(&local);
}

static void test_bound_to_second_package(void **state)
{
    wf_topo_local_t local;
    char err[1024] = "";

    assert_int_equal(discover("2-5", "", &local, err, sizeof err), 0);
    assert_int_equal(local.numa_node, -1);
    assert_string_equal(local.numa_nodes, "1-2");
    assert_int_equal(local.package, 1);
    assert_int_equal(local.bound_cores, 4);
    assert_int_equal(local.l2.count, 4);
    assert_int_equal(local.l3.count, 1);
    assert_int_equal(local.l3.cores, 4);
    assert_int_equal(find_device(&local, "mlx5_0")->distance, WF_TOPO_OTHER);
    assert_int_equal(find_device(&local, "mlx5_1")->distance, WF_TOPO_SAME_PACKAGE);
    assert_int_equal(find_device(&local, "mlx5_2")->distance, WF_TOPO_SAME_PACKAGE);
    expect_rails(&local, "mlx5_1:1,mlx5_2:1", WF_TOPO_SAME_PACKAGE);
    wf_topo_local_free(&local);

    assert_int_equal(discover("4", "", &local, err, sizeof err), 0);
    assert_int_equal(local.numa_node, 2);
    assert_int_equal(find_device(&local, "mlx5_1")->distance, WF_TOPO_SAME_PACKAGE);
    expect_rails(&local, "mlx5_2:1", WF_TOPO_SAME_NUMA);
    wf_topo_local_free(&local);
}

static void test_unbound_uses_every_rail(void **state)
{
    wf_topo_local_t local;
    char err[1024] = "";

    assert_int_equal(discover("0-5", "", &local, err, sizeof err), 0);
    assert_int_equal(local.numa_node, -1);
    assert_int_equal(local.package, -1);
    assert_int_equal(local.l3.count, 2);
    expect_rails(&local, "mlx5_0:1,mlx5_1:1,mlx5_2:1", WF_TOPO_OTHER);
    wf_topo_local_free(&local);
}

static void test_ib_hca_restricts_choice(void **state)
{
    wf_topo_local_t local;
    char err[1024] = "";

    assert_int_equal(discover("0", "rxe", &local, err, sizeof err), 0);
    expect_rails(&local, "rxe0:1", WF_TOPO_UNKNOWN);
    wf_topo_local_free(&local);

    assert_int_equal(discover("0", "^=mlx5_0", &local, err, sizeof err), 0);
    expect_rails(&local, "mlx5_1:1,mlx5_2:1", WF_TOPO_OTHER);
    wf_topo_local_free(&local);

    assert_int_equal(discover("0", "^mlx5", &local, err, sizeof err), 0);
    expect_rails(&local, "rxe0:1", WF_TOPO_UNKNOWN);
    wf_topo_local_free(&local);

    /* Excluding everything is allowed: no NIC, no error. */
    assert_int_equal(discover("0", "^mlx5,rxe", &local, err, sizeof err), 0);
    expect_rails(&local, "none", WF_TOPO_UNKNOWN);
    wf_topo_local_free(&local);

    assert_int_equal(discover("2-5", "mlx5_2:1,mlx5_1:1", &local, err, sizeof err), 0);
    expect_rails(&local, "mlx5_2:1,mlx5_1:1", WF_TOPO_SAME_PACKAGE);
    wf_topo_local_free(&local);
}

static void expect_nic_error(const char *spec, const char *phrase)
{
    wf_topo_local_t local;
    char err[2048] = "";

    assert_int_equal(discover("0", spec, &local, err, sizeof err), WF_TOPO_ERR_NIC);
    if (strstr(err, phrase) == NULL)
        fail_msg("message for WEFT_IB_HCA=%s lacks \"%s\": %s", spec, phrase, err);
    assert_int_equal(local.nrails, 0);
    wf_topo_local_free(&local);
}

static void test_ib_hca_errors_name_devices(void **state)
{
    static const char devices[] = "devices here: mlx5_0 (port 1 active, port 2 down), mlx5_1 (port 1 active), "
                                  "mlx5_2 (port 1 active), rxe0 (port 1 active)";

    expect_nic_error("mlx6", "WEFT_IB_HCA=mlx6 (from the environment) matches no OpenFabrics device port on "
                             "host testhost");
    expect_nic_error("mlx6", devices);
    expect_nic_error("mlx5_0:2", "WEFT_IB_HCA=mlx5_0:2 (from the environment) matches only ports that are not "
                                 "active");
    expect_nic_error("mlx5_0:2", devices);
    expect_nic_error("=mlx5", "matches no OpenFabrics device port");
    expect_nic_error("mlx5_1:3", "matches no OpenFabrics device port");
    expect_nic_error("mlx5_0,,x", "WEFT_IB_HCA=mlx5_0,,x (from the environment) is invalid: entry 2 is empty");
}

static void test_summary_from_local(void **state)
{
    wf_topo_local_t local;
    wf_topo_summary_t summary;
    char err[1024] = "";

    assert_int_equal(discover("2-5", "", &local, err, sizeof err), 0);
    snprintf(local.hostid, sizeof local.hostid, "testhost/boot");
    wf_topo_fill_summary(&local, &summary);
    assert_string_equal(summary.hostid, "testhost/boot");
    assert_string_equal(summary.hostname, "testhost");
    assert_string_equal(summary.cpuset, "2-5");
    assert_int_equal(summary.pid, (int)getpid());
    assert_int_equal(summary.numa_node, -1);
    assert_int_equal(summary.package, 1);
    assert_int_equal(summary.ncores, 6);
    assert_int_equal(summary.nrails, 2);
    assert_int_equal(summary.rail_distance, WF_TOPO_SAME_PACKAGE);
    assert_string_equal(summary.rails[0].name, "mlx5_1");
    assert_int_equal(summary.rails[0].port, 1);
    assert_string_equal(summary.rails[1].name, "mlx5_2");

    /* A binding list too long for the summary is cut and marked. */
    memset(local.binding, '7', 100);
    local.binding[100] = '\0';
    wf_topo_fill_summary(&local, &summary);
    assert_int_equal(strlen(summary.cpuset), WF_TOPO_CPUSET_MAX - 1);
    assert_string_equal(summary.cpuset + WF_TOPO_CPUSET_MAX - 4, "...");

    /* Strings from another rank are terminated, and a bad rail count is dropped. */
    memset(&summary, 'z', sizeof summary);
    summary.nrails = 99;
    wf_topo_summary_terminate(&summary);
    assert_int_equal(strlen(summary.hostid), WF_HOSTID_MAX - 1);
    assert_int_equal(strlen(summary.hostname), WF_TOPO_HOSTNAME_MAX - 1);
    assert_int_equal(strlen(summary.rails[3].name), WF_NIC_NAME_MAX - 1);
    assert_int_equal(summary.nrails, 0);
    wf_topo_local_free(&local);
}

static void touch(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fclose(file);
}

static void test_sysfs_adds_unlisted_devices(void **state)
{
    wf_topo_local_t local;
    char err[1024] = "";
    char dir[512];

    snprintf(dir, sizeof dir, "%s/infiniband", temp_dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    touch(dir, "siw_lo");
    touch(dir, "mlx5_0");
    touch(dir, "bnxt_re0");

    assert_int_equal(discover("0", "", &local, err, sizeof err), 0);
    assert_int_equal(wf_topo_add_sysfs_devices(&local, dir, WF_TOPO_DEV_OPENFABRICS), 0);
    assert_int_equal(local.ndevices, 9);
    assert_string_equal(local.devices[7].name, "bnxt_re0");
    assert_string_equal(local.devices[8].name, "siw_lo");
    assert_int_equal(local.devices[8].type, WF_TOPO_DEV_OPENFABRICS);
    assert_int_equal(local.devices[8].is_virtual, 1);
    assert_int_equal(local.devices[8].distance, WF_TOPO_UNKNOWN);
    assert_int_equal(local.devices[8].nports, 0);

    /* A missing folder adds nothing. */
    assert_int_equal(wf_topo_add_sysfs_devices(&local, "/nonexistent/weft", WF_TOPO_DEV_NETWORK), 0);
    assert_int_equal(local.ndevices, 9);
    wf_topo_local_free(&local);
}

static char *read_file(const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL)
        fail_msg("cannot open %s", path);
    static char text[16384];
    size_t length = fread(text, 1, sizeof text - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

static void test_dump_files(void **state)
{
    wf_topo_summary_t summaries[4];
    wf_node_map_t map;
    char pattern[512];
    char path[1024];
    char err[1024] = "";

    memset(summaries, 0, sizeof summaries);
    for (int r = 0; r < 4; r++) {
        snprintf(summaries[r].hostid, sizeof summaries[r].hostid, "%s", r % 2 ? "B\"\\" : "A");
        snprintf(summaries[r].hostname, sizeof summaries[r].hostname, "h%d", r % 2);
        snprintf(summaries[r].cpuset, sizeof summaries[r].cpuset, "%d", r);
        summaries[r].pid = 100 + r;
        summaries[r].numa_node = r == 3 ? -1 : r % 2;
        summaries[r].package = 0;
    }
    summaries[1].nrails = 2;
    summaries[1].rail_distance = WF_TOPO_SAME_PACKAGE;
    snprintf(summaries[1].rails[0].name, WF_NIC_NAME_MAX, "mlx5_1");
    summaries[1].rails[0].port = 1;
    snprintf(summaries[1].rails[1].name, WF_NIC_NAME_MAX, "mlx5_2");
    summaries[1].rails[1].port = 2;
    assert_int_equal(wf_node_map_build(&map, summaries, 4), 0);

    snprintf(pattern, sizeof pattern, "%s/topo-%%h-%%r-%%%%", temp_dir);
    assert_int_equal(wf_topo_dump(pattern, 1, &map, summaries, path, sizeof path, err, sizeof err), 0);
    char base[512];
    snprintf(base, sizeof base, "%s/topo-h1-1-%%", temp_dir);
    assert_string_equal(path, base);

    char expected[4096];
    snprintf(expected, sizeof expected,
             "{\n  \"weft_version\": \"%s\",\n  \"written_by_rank\": 1,\n  \"hostname\": \"h1\",\n"
             "  \"hwloc_xml\": \"%s.xml\",\n  \"nranks\": 4,\n  \"nnodes\": 2,\n  \"regular\": true,\n"
             "  \"nodes\": [\n"
             "    {\"node\": 0, \"hostid\": \"A\", \"hostname\": \"h0\", \"leader\": 0, \"ranks\": [0, 2]},\n"
             "    {\"node\": 1, \"hostid\": \"B\\\"\\\\\", \"hostname\": \"h1\", \"leader\": 1, \"ranks\": [1, 3]}\n"
             "  ],\n  \"ranks\": [\n"
             "    {\"rank\": 0, \"node\": 0, \"local_rank\": 0, \"hostname\": \"h0\", \"pid\": 100, \"numa_node\": 0, "
             "\"package\": 0, \"cpuset\": \"0\", \"nics\": [], \"nic_distance\": null},\n"
             "    {\"rank\": 1, \"node\": 1, \"local_rank\": 0, \"hostname\": \"h1\", \"pid\": 101, \"numa_node\": 1, "
             "\"package\": 0, \"cpuset\": \"1\", \"nics\": [\"mlx5_1:1\", \"mlx5_2:2\"], "
             "\"nic_distance\": \"same package\"},\n"
             "    {\"rank\": 2, \"node\": 0, \"local_rank\": 1, \"hostname\": \"h0\", \"pid\": 102, \"numa_node\": 0, "
             "\"package\": 0, \"cpuset\": \"2\", \"nics\": [], \"nic_distance\": null},\n"
             "    {\"rank\": 3, \"node\": 1, \"local_rank\": 1, \"hostname\": \"h1\", \"pid\": 103, \"numa_node\": null, "
             "\"package\": 0, \"cpuset\": \"3\", \"nics\": [], \"nic_distance\": null}\n"
             "  ]\n}\n",
             WEFT_VERSION_STRING, base);
    char json_path[1024];
    snprintf(json_path, sizeof json_path, "%s.json", base);
    assert_string_equal(read_file(json_path), expected);

    char xml_path[1024];
    snprintf(xml_path, sizeof xml_path, "%s.xml", base);
    const char *xml = read_file(xml_path);
    assert_memory_equal(xml, "<?xml", 5);
    assert_non_null(strstr(xml, "type=\"Machine\""));

    /* A pattern too long once expanded is rejected with the variable's name. */
    char long_pattern[5000];
    memset(long_pattern, 'p', sizeof long_pattern - 1);
    long_pattern[sizeof long_pattern - 1] = '\0';
    assert_int_equal(wf_topo_dump(long_pattern, 0, &map, summaries, path, sizeof path, err, sizeof err), -1);
    assert_non_null(strstr(err, "WEFT_TOPO_DUMP_FILE="));

    /* A folder that does not exist gives an error naming the file. */
    snprintf(pattern, sizeof pattern, "%s/missing/topo", temp_dir);
    assert_int_equal(wf_topo_dump(pattern, 0, &map, summaries, path, sizeof path, err, sizeof err), -1);
    assert_non_null(strstr(err, "/missing/topo.xml"));
    wf_node_map_free(&map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_to_first_numa_node),
        cmocka_unit_test(test_bound_to_second_package),
        cmocka_unit_test(test_unbound_uses_every_rail),
        cmocka_unit_test(test_ib_hca_restricts_choice),
        cmocka_unit_test(test_ib_hca_errors_name_devices),
        cmocka_unit_test(test_summary_from_local),
        cmocka_unit_test(test_sysfs_adds_unlisted_devices),
        cmocka_unit_test(test_dump_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
