/*
 * weft-info's topology report: the calling process's node and binding, its network devices, and
 * the NIC ports it would use under the current WEFT_IB_HCA.
 */
#include "info_topo.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "param.h"
#include "topo.h"

/* "1 package", "2 packages": the noun gets an s unless count is 1. */
static const char *counted(int count, const char *noun, char *out, size_t outlen)
{
    snprintf(out, outlen, "%d %s%s", count, noun, count == 1 ? "" : "s");
    return out;
}

static void print_process(const wf_topo_local_t *local)
{
    char a[48], b[48], c[48], d[48];

    printf("Topology seen by this process (pid %d):\n", (int)getpid());
    printf("  host           %s\n", local->hostname);
    printf("  node identity  %s (%s)\n", local->hostid,
           local->hostid_from_env ? "from WEFT_HOSTID" : "host name and kernel boot id");
    if (!local->hwloc_ok)
        return;
    printf("  node           %s, %s, %s, %s\n", counted(local->npackages, "package", a, sizeof a),
           counted(local->nnumanodes, "NUMA node", b, sizeof b), counted(local->ncores, "core", c, sizeof c),
           counted(local->npus, "PU", d, sizeof d));

    char numa[96] = "";
    char package[32] = "several packages";
    if (local->numa_node >= 0)
        snprintf(numa, sizeof numa, "NUMA node %d", local->numa_node);
    else
        snprintf(numa, sizeof numa, "NUMA nodes %s", local->numa_nodes);
    if (local->package >= 0)
        snprintf(package, sizeof package, "package %d", local->package);
    printf("  binding        PUs %s (%s), %s, %s%s\n", local->binding,
           counted(local->bound_cores, "core", a, sizeof a), numa, package,
           local->binding_known ? "" : "; binding unknown (topology not read from this machine), so all PUs");

    char l2[96], l3[96];
    wf_topo_format_cache("L2", &local->l2, l2, sizeof l2);
    wf_topo_format_cache("L3", &local->l3, l3, sizeof l3);
    printf("  caches         %s, %s\n", l2, l3);
}

static void format_ports(const wf_topo_device_t *device, char *out, size_t outlen)
{
    size_t used = 0;

    snprintf(out, outlen, "-");
    for (int port = 1; port <= device->nports && used < outlen; port++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%d %s", port > 1 ? ", " : "", port,
                                 device->port_state[port - 1] == WF_PORT_STATE_ACTIVE ? "active" : "down");
    if (device->nports == 0 && device->type == WF_TOPO_DEV_OPENFABRICS)
        snprintf(out, outlen, "not reported");
}

static void print_devices(const wf_topo_local_t *local)
{
    int width = (int)strlen("NAME");

    for (int i = 0; i < local->ndevices; i++) {
        int length = (int)strlen(local->devices[i].name);
        width = length > width ? length : width;
    }
    printf("\nNetwork devices, with their distance from this binding:\n");
    if (local->ndevices == 0) {
        printf("  none\n");
        return;
    }
    printf("  %-*s  %-11s  %-12s  %-4s  %-7s  %-14s  %s\n", width, "NAME", "TYPE", "PCI", "NUMA", "PACKAGE",
           "DISTANCE", "PORTS");
    for (int i = 0; i < local->ndevices; i++) {
        const wf_topo_device_t *device = &local->devices[i];
        char numa[16] = "-";
        char package[16] = "-";
        char ports[96];
        if (device->numa_node >= 0)
            snprintf(numa, sizeof numa, "%d", device->numa_node);
        if (device->package >= 0)
            snprintf(package, sizeof package, "%d", device->package);
        format_ports(device, ports, sizeof ports);
        printf("  %-*s  %-11s  %-12s  %-4s  %-7s  %-14s  %s\n", width, device->name,
               wf_topo_dev_type_name(device->type),
               device->is_virtual ? "virtual" : (device->pci_busid[0] ? device->pci_busid : "-"), numa, package,
               wf_topo_distance_name(device->distance), ports);
    }
}

int info_print_topology(void)
{
    wf_topo_local_t local;
    char err[2048] = "";

    int rc = wf_topo_discover(&local, err, sizeof err);
    print_process(&local);
    if (rc == WF_TOPO_ERR_HWLOC) {
        fflush(stdout);
        fprintf(stderr, "weft-info: %s\n", err);
        wf_topo_local_free(&local);
        return 1;
    }
    print_devices(&local);

    const char *spec = wf_param_str(WF_PARAM_IB_HCA);
    char choice[512];
    if (spec[0])
        printf("\nNIC choice (WEFT_IB_HCA=%s):\n", spec);
    else
        printf("\nNIC choice (WEFT_IB_HCA unset):\n");
    if (rc == WF_TOPO_ERR_NIC) {
        printf("  none: communicator initialisation would fail here\n");
        fflush(stdout);
        fprintf(stderr, "weft-info: %s\n", err);
        wf_topo_local_free(&local);
        return 2;
    }
    wf_topo_format_choice(&local, choice, sizeof choice);
    printf("  %s\n", choice);
    wf_topo_local_free(&local);
    return 0;
}
