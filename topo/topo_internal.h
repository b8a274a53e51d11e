/*
 * Internal interface of topo/ for its own files and for the unit tests, which pass a topology
 * loaded from XML and a binding of their choice instead of this machine's.
 */
#ifndef WF_TOPO_INTERNAL_H
#define WF_TOPO_INTERNAL_H

#include <hwloc.h>

#include "topo.h"

/*
 * Fill the node, binding, device and NIC fields of local from topology, for the given binding
 * (NULL: the binding of the calling process, or every PU when that cannot be read). spec_text is
 * a WEFT_IB_HCA value and spec_origin where it came from, for messages. Returns 0, WF_TOPO_ERR_NIC
 * or, when out of memory, WF_TOPO_ERR_HWLOC, with the reason in err. Identity fields are untouched.
 */
int wf_topo_discover_in(hwloc_topology_t topology, hwloc_const_cpuset_t binding, const char *spec_text,
                        const char *spec_origin, wf_topo_local_t *local, char *err, size_t errlen);

/* Append the devices hwloc listed in topology, with their distance from binding. Returns 0 or -1. */
int wf_topo_list_devices(hwloc_topology_t topology, hwloc_const_cpuset_t binding, wf_topo_local_t *local);

/*
 * Append every entry of class_dir (/sys/class/infiniband or /sys/class/net) that local does not
 * list yet, as a virtual device of unknown locality. hwloc 2.9 leaves out devices whose sysfs path
 * is under /devices/virtual (rxe0, lo) unless HWLOC_VIRTUAL_LINUX_OSDEV is set in the environment.
 * A missing directory adds nothing. Returns 0 or -1 when out of memory.
 */
int wf_topo_add_sysfs_devices(wf_topo_local_t *local, const char *class_dir, wf_topo_dev_type_t type);

/* Choose the NIC ports of local under spec_text. Returns 0 or WF_TOPO_ERR_NIC with the reason in err. */
int wf_topo_choose_nic(wf_topo_local_t *local, const char *spec_text, const char *spec_origin, char *err,
                       size_t errlen);

/* The topology of this machine with I/O devices, loaded at the first call. NULL with err set on failure. */
hwloc_topology_t wf_topo_shared(char *err, size_t errlen);

#endif /* WF_TOPO_INTERNAL_H */
