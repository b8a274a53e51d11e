/*
 * Text forms of what discovery found, shared by the INFO log at init and weft-info --topo.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "param.h"
#include "topo.h"

void wf_topo_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    int unit = 0;

    while (unit < 4 && bytes >= 1024 && bytes % 1024 == 0) {
        bytes /= 1024;
        unit++;
    }
    snprintf(out, outlen, "%" PRIu64 " %s", bytes, units[unit]);
}

void wf_topo_format_rails(const wf_topo_rail_t *rails, int nrails, char *out, size_t outlen)
{
    size_t used = 0;

    snprintf(out, outlen, "none");
    for (int i = 0; i < nrails && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s:%d", i ? "," : "", rails[i].name,
                                 (int)rails[i].port);
}

void wf_topo_format_cache(const char *level, const wf_topo_cache_t *cache, char *out, size_t outlen)
{
    char size[32];

    if (cache->count == 0) {
        snprintf(out, outlen, "%s none", level);
        return;
    }
    wf_topo_format_size(cache->size, size, sizeof(size));
    snprintf(out, outlen, "%s %s x%d (%d core%s each)", level, size, cache->count, cache->cores,
             cache->cores == 1 ? "" : "s");
}

void wf_topo_format_device(const wf_topo_device_t *device, char *out, size_t outlen)
{
    size_t used = 0;

    used += (size_t)snprintf(out, outlen, "%s, ", wf_topo_dev_type_name(device->type));
    if (used < outlen && device->pci_busid[0])
        used += (size_t)snprintf(out + used, outlen - used, "PCI %s, ", device->pci_busid);
    if (used < outlen && device->is_virtual)
        used += (size_t)snprintf(out + used, outlen - used, "virtual, locality unknown");
    else if (used < outlen && device->numa_node >= 0)
        used += (size_t)snprintf(out + used, outlen - used, "NUMA node %d, %s", device->numa_node,
                                 wf_topo_distance_name(device->distance));
    else if (used < outlen)
        used += (size_t)snprintf(out + used, outlen - used, "near PUs %s, %s", device->cpuset,
                                 wf_topo_distance_name(device->distance));
    for (int port = 1; port <= device->nports && used < outlen; port++)
        used += (size_t)snprintf(out + used, outlen - used, ", port %d %s", port,
                                 device->port_state[port - 1] == WF_PORT_STATE_ACTIVE ? "active" : "down");
}

void wf_topo_format_choice(const wf_topo_local_t *local, char *out, size_t outlen)
{
    char rails[WF_TOPO_RAILS_MAX * (WF_NIC_NAME_MAX + 8)];
    int openfabrics = 0;

    for (int i = 0; i < local->ndevices; i++)
        openfabrics += local->devices[i].type == WF_TOPO_DEV_OPENFABRICS;
    if (local->nrails == 0) {
        snprintf(out, outlen, "none (%s)", openfabrics == 0 ? "no OpenFabrics device" :
                                           "WEFT_IB_HCA leaves no active port");
        return;
    }
    wf_topo_format_rails(local->rails, local->nrails, rails, sizeof(rails));
    snprintf(out, outlen, "%s (%s%s)", rails, wf_topo_distance_name(local->rail_distance),
             local->rails_left_out > 0 ? ", more equally near ports left out" : "");
}

void wf_topo_log(const wf_topo_local_t *local)
{
    char line[1024];
    char l2[96];
    char l3[96];

    WF_INFO(WF_SUB_TOPO, "host %s, node identity %s (%s)", local->hostname, local->hostid,
            local->hostid_from_env ? "from WEFT_HOSTID" : "host name and boot id");
    if (!local->hwloc_ok)
        return;
    wf_topo_format_cache("L2", &local->l2, l2, sizeof(l2));
    wf_topo_format_cache("L3", &local->l3, l3, sizeof(l3));
    char package[32] = "several packages";
    if (local->package >= 0)
        snprintf(package, sizeof(package), "package %d", local->package);
    WF_INFO(WF_SUB_TOPO, "node: packages %d, NUMA nodes %d, cores %d, PUs %d; %s PUs %s on cores: %d, NUMA node%s %s, "
            "%s; caches %s, %s", local->npackages, local->nnumanodes, local->ncores, local->npus,
            local->binding_known ? "bound to" : "binding unknown, taken as all", local->binding, local->bound_cores,
            local->numa_node >= 0 ? "" : "s", local->numa_nodes, package, l2, l3);
    for (int i = 0; i < local->ndevices; i++) {
        wf_topo_format_device(&local->devices[i], line, sizeof(line));
        WF_INFO(WF_SUB_TOPO, "device %s: %s", local->devices[i].name, line);
    }
    wf_topo_format_choice(local, line, sizeof(line));
    const char *spec = wf_param_str(WF_PARAM_IB_HCA);
    WF_INFO(WF_SUB_TOPO, "NIC: %s; WEFT_IB_HCA=%s", line, spec[0] ? spec : "(unset)");
}
