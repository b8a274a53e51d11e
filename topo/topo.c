/*
 * Discovery of the calling process with hwloc: node identity, binding, NUMA node, package, cores
 * and caches. Devices are in topo_devices.c, the NIC choice in topo_nic.c.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "param.h"
#include "topo_internal.h"

/*
 * After loading, the shared topology is only read (binding queries, XML export), which hwloc allows
 * from several threads at once, so communicators created concurrently share it without a lock.
 */
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t shared_topology;
static char shared_error[256];

/* Load this machine's topology with PCI and OS devices; hwloc reads /sys once for the process. */
static void load_shared_topology(void)
{
    hwloc_topology_t topology;

    if (hwloc_topology_init(&topology) != 0) {
        snprintf(shared_error, sizeof(shared_error), "hwloc_topology_init failed");
        return;
    }
    /* KEEP_IMPORTANT keeps network, OpenFabrics and GPU devices with their PCI parents, not every bridge. */
    hwloc_topology_set_io_types_filter(topology, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(topology) != 0) {
        snprintf(shared_error, sizeof(shared_error), "hwloc_topology_load failed");
        hwloc_topology_destroy(topology);
        return;
    }
    shared_topology = topology;
}

hwloc_topology_t wf_topo_shared(char *err, size_t errlen)
{
    pthread_once(&shared_once, load_shared_topology);
    if (shared_topology == NULL)
        snprintf(err, errlen, "%s", shared_error);
    return shared_topology;
}

/* Host name plus kernel boot id: two containers with one host name on two machines stay apart. */
static void node_identity(wf_topo_local_t *local)
{
    const char *override = wf_param_str(WF_PARAM_HOSTID);
    if (override != NULL && override[0] != '\0') {
        snprintf(local->hostid, sizeof(local->hostid), "%s", override);
        local->hostid_from_env = 1;
        return;
    }
    char boot_id[64] = "";
    FILE *file = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (file != NULL) {
        if (fgets(boot_id, sizeof(boot_id), file) == NULL)
            boot_id[0] = '\0';
        fclose(file);
        boot_id[strcspn(boot_id, "\n")] = '\0';
    }
    /* A boot id is a 36-character UUID; a host name cut at 58 bytes still leaves the boot id whole. */
    snprintf(local->hostid, sizeof(local->hostid), "%.58s/%.36s", local->hostname, boot_id);
}

/* Count the objects of a type whose PUs intersect set. */
static int count_intersecting(hwloc_topology_t topology, hwloc_obj_type_t type, hwloc_const_cpuset_t set,
                              hwloc_obj_t *first)
{
    int count = 0;

    if (first != NULL)
        *first = NULL;
    for (hwloc_obj_t obj = NULL; (obj = hwloc_get_next_obj_by_type(topology, type, obj)) != NULL;) {
        if (obj->cpuset == NULL || !hwloc_bitmap_intersects(obj->cpuset, set))
            continue;
        if (count == 0 && first != NULL)
            *first = obj;
        count++;
    }
    return count;
}

static void describe_caches(hwloc_topology_t topology, hwloc_obj_type_t type, hwloc_const_cpuset_t binding,
                            wf_topo_cache_t *cache)
{
    hwloc_obj_t first = NULL;

    memset(cache, 0, sizeof(*cache));
    cache->count = count_intersecting(topology, type, binding, &first);
    if (first == NULL)
        return;
    /* NOTE: on CPUs with caches of several sizes at one level, this reports the first one only. */
    cache->size = first->attr->cache.size;
    cache->cores = count_intersecting(topology, HWLOC_OBJ_CORE, first->cpuset, NULL);
}

/* Fill the node and binding fields of local. */
static int describe_binding(hwloc_topology_t topology, hwloc_const_cpuset_t binding, wf_topo_local_t *local)
{
    hwloc_nodeset_t nodes = hwloc_bitmap_alloc();
    hwloc_obj_t package = NULL;

    if (nodes == NULL)
        return -1;
    local->npackages = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PACKAGE);
    local->nnumanodes = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE);
    local->ncores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);
    local->npus = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_PU);

    hwloc_bitmap_list_snprintf(local->binding, sizeof(local->binding), binding);
    local->bound_pus = hwloc_bitmap_weight(binding);
    local->bound_cores = count_intersecting(topology, HWLOC_OBJ_CORE, binding, NULL);

    hwloc_cpuset_to_nodeset(topology, binding, nodes);
    hwloc_bitmap_list_snprintf(local->numa_nodes, sizeof(local->numa_nodes), nodes);
    local->numa_node = hwloc_bitmap_weight(nodes) == 1 ? hwloc_bitmap_first(nodes) : -1;
    hwloc_bitmap_free(nodes);

    local->package = -1;
    if (count_intersecting(topology, HWLOC_OBJ_PACKAGE, binding, &package) == 1)
        local->package = (int)package->os_index;

    describe_caches(topology, HWLOC_OBJ_L2CACHE, binding, &local->l2);
    describe_caches(topology, HWLOC_OBJ_L3CACHE, binding, &local->l3);
    return 0;
}

int wf_topo_discover_in(hwloc_topology_t topology, hwloc_const_cpuset_t binding, const char *spec_text,
                        const char *spec_origin, wf_topo_local_t *local, char *err, size_t errlen)
{
    hwloc_cpuset_t own = NULL;

    if (binding == NULL) {
        own = hwloc_bitmap_alloc();
        if (own == NULL) {
            snprintf(err, errlen, "out of memory describing the topology");
            return WF_TOPO_ERR_HWLOC;
        }
        /*
         * A topology from XML (HWLOC_XMLFILE) is not this machine's, so its binding means nothing
         * there, and hwloc returns every PU.
         */
        local->binding_known = hwloc_topology_is_thissystem(topology) &&
                               hwloc_get_cpubind(topology, own, HWLOC_CPUBIND_PROCESS) == 0;
        if (local->binding_known)
            hwloc_bitmap_and(own, own, hwloc_topology_get_topology_cpuset(topology));
        if (!local->binding_known || hwloc_bitmap_iszero(own))
            hwloc_bitmap_copy(own, hwloc_topology_get_topology_cpuset(topology));
        binding = own;
    } else {
        local->binding_known = 1;
    }

    int rc = describe_binding(topology, binding, local);
    if (rc == 0)
        rc = wf_topo_list_devices(topology, binding, local);
    if (rc == 0 && hwloc_topology_is_thissystem(topology)) {
        rc = wf_topo_add_sysfs_devices(local, "/sys/class/infiniband", WF_TOPO_DEV_OPENFABRICS);
        if (rc == 0)
            rc = wf_topo_add_sysfs_devices(local, "/sys/class/net", WF_TOPO_DEV_NETWORK);
    }
    hwloc_bitmap_free(own);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory describing the topology");
        return WF_TOPO_ERR_HWLOC;
    }
    local->hwloc_ok = 1;
    return wf_topo_choose_nic(local, spec_text, spec_origin, err, errlen);
}

/* "the environment" or the config file that set WEFT_IB_HCA, for messages. */
static const char *ib_hca_origin(void)
{
    return wf_param_source(WF_PARAM_IB_HCA) == WF_PARAM_SOURCE_ENV ? "the environment"
                                                                   : wf_param_origin(WF_PARAM_IB_HCA);
}

int wf_topo_discover(wf_topo_local_t *local, char *err, size_t errlen)
{
    memset(local, 0, sizeof(*local));
    local->numa_node = -1;
    local->package = -1;
    local->rail_distance = WF_TOPO_UNKNOWN;
    if (gethostname(local->hostname, sizeof(local->hostname) - 1) != 0)
        snprintf(local->hostname, sizeof(local->hostname), "unknown");
    node_identity(local);

    char reason[256] = "";
    hwloc_topology_t topology = wf_topo_shared(reason, sizeof(reason));
    if (topology == NULL) {
        snprintf(err, errlen, "hwloc could not load the topology of host %s (%s)", local->hostname, reason);
        return WF_TOPO_ERR_HWLOC;
    }
    return wf_topo_discover_in(topology, NULL, wf_param_str(WF_PARAM_IB_HCA), ib_hca_origin(), local, err, errlen);
}

void wf_topo_local_free(wf_topo_local_t *local)
{
    free(local->devices);
    local->devices = NULL;
    local->ndevices = 0;
}

void wf_topo_fill_summary(const wf_topo_local_t *local, wf_topo_summary_t *summary)
{
    memset(summary, 0, sizeof(*summary));
    snprintf(summary->hostid, sizeof(summary->hostid), "%s", local->hostid);
    snprintf(summary->hostname, sizeof(summary->hostname), "%s", local->hostname);
    summary->pid = (int32_t)getpid();
    summary->numa_node = local->hwloc_ok ? local->numa_node : -1;
    summary->package = local->hwloc_ok ? local->package : -1;
    summary->ncores = local->hwloc_ok ? local->ncores : 0;

    size_t length = strlen(local->binding);
    if (!local->hwloc_ok)
        snprintf(summary->cpuset, sizeof(summary->cpuset), "unknown");
    else if (length < sizeof(summary->cpuset))
        memcpy(summary->cpuset, local->binding, length + 1);
    else
        snprintf(summary->cpuset, sizeof(summary->cpuset), "%.*s...", (int)sizeof(summary->cpuset) - 4,
                 local->binding);

    summary->nrails = local->nrails;
    summary->rail_distance = (int32_t)local->rail_distance;
    memcpy(summary->rails, local->rails, sizeof(summary->rails));
}

void wf_topo_summary_terminate(wf_topo_summary_t *summary)
{
    summary->hostid[sizeof(summary->hostid) - 1] = '\0';
    summary->hostname[sizeof(summary->hostname) - 1] = '\0';
    summary->cpuset[sizeof(summary->cpuset) - 1] = '\0';
    if (summary->nrails < 0 || summary->nrails > WF_TOPO_RAILS_MAX)
        summary->nrails = 0;
    for (int i = 0; i < WF_TOPO_RAILS_MAX; i++)
        summary->rails[i].name[sizeof(summary->rails[i].name) - 1] = '\0';
}

const char *wf_topo_distance_name(wf_topo_distance_t distance)
{
    switch (distance) {
    case WF_TOPO_SAME_NUMA:
        return "same NUMA node";
    case WF_TOPO_SAME_PACKAGE:
        return "same package";
    case WF_TOPO_OTHER:
        return "other";
    case WF_TOPO_UNKNOWN:
        break;
    }
    return "unknown";
}

const char *wf_topo_dev_type_name(wf_topo_dev_type_t type)
{
    return type == WF_TOPO_DEV_OPENFABRICS ? "OpenFabrics" : "network";
}
