/*
 * Node discovery with hwloc, and the rank-to-node map built from every rank's summary.
 */
#define _GNU_SOURCE
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "param.h"
#include "topo.h"

/* Host name plus kernel boot id: two containers with one host name on two machines stay apart. */
static void node_identity(char *out, size_t size, const char *hostname)
{
    const char *override = wf_param_str(WF_PARAM_HOSTID);
    if (override != NULL && override[0] != '\0') {
        snprintf(out, size, "%s", override);
        return;
    }
    char boot_id[64] = "";
    FILE *file = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (file != NULL) {
        if (fgets(boot_id, sizeof(boot_id), file) == NULL)
            boot_id[0] = '\0';
        fclose(file);
        boot_id[strcspn(boot_id, "\n")] = '\0';
    }
    snprintf(out, size, "%s/%s", hostname, boot_id);
}

int wf_topo_discover(wf_topo_summary_t *summary, char *err, size_t errlen)
{
    memset(summary, 0, sizeof(*summary));
    if (gethostname(summary->hostname, sizeof(summary->hostname) - 1) != 0)
        snprintf(summary->hostname, sizeof(summary->hostname), "unknown");
    node_identity(summary->hostid, sizeof(summary->hostid), summary->hostname);
    summary->pid = (int)getpid();
    summary->numa_node = -1;

    hwloc_topology_t topology;
    if (hwloc_topology_init(&topology) != 0 || hwloc_topology_load(topology) != 0) {
        snprintf(err, errlen, "hwloc could not load the topology of host %s", summary->hostname);
        return -1;
    }
    summary->ncores = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_CORE);

    /* The NUMA node of our binding, when the process is bound inside exactly one. */
    hwloc_bitmap_t cpus = hwloc_bitmap_alloc();
    hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
    if (cpus != NULL && nodes != NULL && hwloc_get_cpubind(topology, cpus, HWLOC_CPUBIND_PROCESS) == 0) {
        hwloc_cpuset_to_nodeset(topology, cpus, nodes);
        if (hwloc_bitmap_weight(nodes) == 1)
            summary->numa_node = hwloc_bitmap_first(nodes);
    }
    hwloc_bitmap_free(cpus);
    hwloc_bitmap_free(nodes);
    hwloc_topology_destroy(topology);
    return 0;
}

int wf_node_map_build(wf_node_map_t *map, const wf_topo_summary_t *summaries, int nranks)
{
    memset(map, 0, sizeof(*map));
    map->node_of_rank = calloc((size_t)nranks, sizeof(int));
    map->local_rank = calloc((size_t)nranks, sizeof(int));
    map->local_size = calloc((size_t)nranks, sizeof(int));
    if (map->node_of_rank == NULL || map->local_rank == NULL || map->local_size == NULL) {
        wf_node_map_free(map);
        return -1;
    }
    /* Quadratic in the number of ranks, run once at init; fine up to thousands of ranks. */
    for (int r = 0; r < nranks; r++) {
        int node = -1, local = 0;
        for (int q = 0; q < r; q++) {
            if (strcmp(summaries[q].hostid, summaries[r].hostid) == 0) {
                node = map->node_of_rank[q];
                local++;
            }
        }
        map->node_of_rank[r] = node >= 0 ? node : map->nnodes++;
        map->local_rank[r] = local;
    }
    for (int r = 0; r < nranks; r++)
        for (int q = 0; q < nranks; q++)
            if (map->node_of_rank[q] == map->node_of_rank[r])
                map->local_size[r]++;
    return 0;
}

void wf_node_map_free(wf_node_map_t *map)
{
    free(map->node_of_rank);
    free(map->local_rank);
    free(map->local_size);
    memset(map, 0, sizeof(*map));
}
