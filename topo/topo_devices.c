/*
 * Network devices of this node: the OpenFabrics (InfiniBand, RoCE, iWARP) and network (Ethernet,
 * IPoIB) OS devices hwloc reports, plus the virtual devices it leaves out. Each device gets the
 * locality of its PCI parent and its distance class from the calling process.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topo_internal.h"

/* Make room for one more device and return it zeroed, or NULL when out of memory. */
static wf_topo_device_t *append_device(wf_topo_local_t *local)
{
    wf_topo_device_t *devices = realloc(local->devices, (size_t)(local->ndevices + 1) * sizeof(*devices));

    if (devices == NULL)
        return NULL;
    local->devices = devices;
    wf_topo_device_t *device = &devices[local->ndevices++];
    memset(device, 0, sizeof(*device));
    device->numa_node = -1;
    device->package = -1;
    device->distance = WF_TOPO_UNKNOWN;
    return device;
}

/* The cpuset of every package that shares PUs with set; empty when the topology has no packages. */
static void packages_of(hwloc_topology_t topology, hwloc_const_cpuset_t set, hwloc_cpuset_t packages)
{
    hwloc_bitmap_zero(packages);
    for (hwloc_obj_t obj = NULL; (obj = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_PACKAGE, obj)) != NULL;)
        if (hwloc_bitmap_intersects(obj->cpuset, set))
            hwloc_bitmap_or(packages, packages, obj->cpuset);
}

/*
 * Distance class from a process bound to binding to a device local to `near` (its first non-I/O
 * ancestor). Same NUMA: every NUMA node the binding touches is local to the device. Same package:
 * every package the binding touches contains PUs local to the device.
 */
static wf_topo_distance_t distance_to(hwloc_topology_t topology, hwloc_const_cpuset_t binding, hwloc_obj_t near)
{
    hwloc_nodeset_t nodes = hwloc_bitmap_alloc();
    hwloc_cpuset_t process_packages = hwloc_bitmap_alloc();
    hwloc_cpuset_t device_packages = hwloc_bitmap_alloc();
    wf_topo_distance_t distance = WF_TOPO_UNKNOWN;

    if (nodes != NULL && process_packages != NULL && device_packages != NULL) {
        hwloc_cpuset_to_nodeset(topology, binding, nodes);
        packages_of(topology, binding, process_packages);
        packages_of(topology, near->cpuset, device_packages);
        if (!hwloc_bitmap_iszero(nodes) && hwloc_bitmap_isincluded(nodes, near->nodeset))
            distance = WF_TOPO_SAME_NUMA;
        else if (!hwloc_bitmap_iszero(process_packages) &&
                 hwloc_bitmap_isincluded(process_packages, device_packages))
            distance = WF_TOPO_SAME_PACKAGE;
        else
            distance = WF_TOPO_OTHER;
    }
    hwloc_bitmap_free(nodes);
    hwloc_bitmap_free(process_packages);
    hwloc_bitmap_free(device_packages);
    return distance;
}

/* Port states from hwloc's Port<N>State infos, which hold the number of the sysfs state (4 is ACTIVE). */
static void read_ports(hwloc_obj_t osdev, wf_topo_device_t *device)
{
    for (int port = 1; port <= WF_NIC_PORTS_MAX; port++) {
        char name[32];
        snprintf(name, sizeof(name), "Port%dState", port);
        const char *state = hwloc_obj_get_info_by_name(osdev, name);
        if (state == NULL)
            break;
        /* 4 is ACTIVE and 5 ACTIVE_DEFER in the InfiniBand port state machine; the others cannot carry data. */
        int value = atoi(state);
        device->port_state[port - 1] = value == 4 || value == 5 ? WF_PORT_STATE_ACTIVE : WF_PORT_STATE_DOWN;
        device->nports = port;
    }
}

static void describe_device(hwloc_topology_t topology, hwloc_const_cpuset_t binding, hwloc_obj_t osdev,
                            wf_topo_device_t *device)
{
    hwloc_obj_t pci = NULL;
    hwloc_obj_t near = hwloc_get_non_io_ancestor_obj(topology, osdev);

    snprintf(device->name, sizeof(device->name), "%s", osdev->name);
    device->type = osdev->attr->osdev.type == HWLOC_OBJ_OSDEV_OPENFABRICS ? WF_TOPO_DEV_OPENFABRICS
                                                                          : WF_TOPO_DEV_NETWORK;
    for (hwloc_obj_t obj = osdev->parent; obj != NULL && hwloc_obj_type_is_io(obj->type); obj = obj->parent) {
        if (obj->type == HWLOC_OBJ_PCI_DEVICE) {
            pci = obj;
            break;
        }
    }
    if (pci != NULL)
        snprintf(device->pci_busid, sizeof(device->pci_busid), "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain,
                 pci->attr->pcidev.bus, pci->attr->pcidev.dev, pci->attr->pcidev.func);
    if (device->type == WF_TOPO_DEV_OPENFABRICS)
        read_ports(osdev, device);

    /* hwloc hangs a device whose locality it does not know (no PCI parent, no NUMA node) off the root. */
    device->is_virtual = pci == NULL && (near == NULL || near == hwloc_get_root_obj(topology));
    if (device->is_virtual || near == NULL || near->cpuset == NULL || near->nodeset == NULL)
        return;

    hwloc_bitmap_list_snprintf(device->cpuset, sizeof(device->cpuset), near->cpuset);
    if (hwloc_bitmap_weight(near->nodeset) == 1)
        device->numa_node = hwloc_bitmap_first(near->nodeset);
    /* The one package local to the device; on a one-package machine hwloc may hang PCI off the root. */
    hwloc_obj_t package = NULL;
    int npackages = 0;
    for (hwloc_obj_t obj = NULL; (obj = hwloc_get_next_obj_by_type(topology, HWLOC_OBJ_PACKAGE, obj)) != NULL;) {
        if (hwloc_bitmap_intersects(obj->cpuset, near->cpuset)) {
            package = obj;
            npackages++;
        }
    }
    if (npackages == 1)
        device->package = (int)package->os_index;
    device->distance = distance_to(topology, binding, near);
}

int wf_topo_list_devices(hwloc_topology_t topology, hwloc_const_cpuset_t binding, wf_topo_local_t *local)
{
    for (hwloc_obj_t osdev = NULL; (osdev = hwloc_get_next_osdev(topology, osdev)) != NULL;) {
        hwloc_obj_osdev_type_t type = osdev->attr->osdev.type;
        if ((type != HWLOC_OBJ_OSDEV_OPENFABRICS && type != HWLOC_OBJ_OSDEV_NETWORK) || osdev->name == NULL)
            continue;
        wf_topo_device_t *device = append_device(local);
        if (device == NULL)
            return -1;
        describe_device(topology, binding, osdev, device);
    }
    return 0;
}

static int is_listed(const wf_topo_local_t *local, const char *name, wf_topo_dev_type_t type)
{
    for (int i = 0; i < local->ndevices; i++)
        if (local->devices[i].type == type && strcmp(local->devices[i].name, name) == 0)
            return 1;
    return 0;
}

int wf_topo_add_sysfs_devices(wf_topo_local_t *local, const char *class_dir, wf_topo_dev_type_t type)
{
    DIR *dir = opendir(class_dir);
    int first = local->ndevices;

    if (dir == NULL)
        return 0;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        if (entry->d_name[0] == '.' || is_listed(local, entry->d_name, type))
            continue;
        wf_topo_device_t *device = append_device(local);
        if (device == NULL) {
            closedir(dir);
            return -1;
        }
        /* Interface names have at most 15 bytes and RDMA device names 63, so nothing is cut. */
        snprintf(device->name, sizeof(device->name), "%.63s", entry->d_name);
        device->type = type;
        device->is_virtual = 1;
    }
    closedir(dir);

    /* readdir order is arbitrary; sort the new ones by name so every run lists them alike. */
    for (int i = first + 1; i < local->ndevices; i++) {
        wf_topo_device_t moving = local->devices[i];
        int j = i;
        for (; j > first && strcmp(local->devices[j - 1].name, moving.name) > 0; j--)
            local->devices[j] = local->devices[j - 1];
        local->devices[j] = moving;
    }
    return 0;
}
