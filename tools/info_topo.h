/*
 * weft-info's topology report (weft-info --topo).
 */
#ifndef WEFT_INFO_TOPO_H
#define WEFT_INFO_TOPO_H

/*
 * Print this process's node identity, node, binding, caches, network devices and NIC choice to
 * stdout. Call after wf_param_load. Returns 0, 1 when hwloc cannot load the topology, or 2 when
 * WEFT_IB_HCA matches no usable device port here (the reason goes to stderr).
 */
int info_print_topology(void);

#endif /* WEFT_INFO_TOPO_H */
