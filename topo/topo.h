/*
 * Topology: who am I, which node am I on, what does this node look like, which NIC is mine.
 *
 * topo/ knows nothing of transports. The node identity is the host name plus the kernel boot id
 * (so containers that share a host name on different machines stay apart), unless WEFT_HOSTID
 * overrides it, which lets one machine act as several nodes in tests. hwloc describes the rest:
 * the binding of the calling process, NUMA nodes, packages, cores, caches and the network devices
 * with their locality. The NIC choice (WEFT_IB_HCA, nic_select.h) picks the nearest OpenFabrics
 * device ports; docs/topology.md describes the rules.
 */
#ifndef WF_TOPO_H
#define WF_TOPO_H

#include <stddef.h>
#include <stdint.h>

#include "nic_select.h"

#define WF_HOSTID_MAX 96
#define WF_TOPO_HOSTNAME_MAX 64
#define WF_TOPO_RAILS_MAX 4   /* NIC ports one rank publishes; equally near ones beyond it are left out */
#define WF_TOPO_CPUSET_MAX 48 /* binding in the summary; longer lists are cut and end in "..." */

/* Distance classes from the calling process to a device, nearest first. */
typedef enum {
    WF_TOPO_SAME_NUMA = 0, /* the process's NUMA nodes are all local to the device */
    WF_TOPO_SAME_PACKAGE,  /* not that, but the process's packages are all the device's */
    WF_TOPO_OTHER,         /* neither: another package, or a binding that spans several */
    WF_TOPO_UNKNOWN        /* virtual device (rxe0, lo) or no hwloc: locality not known */
} wf_topo_distance_t;

/* One NIC port a rank uses. */
typedef struct {
    char name[WF_NIC_NAME_MAX]; /* OpenFabrics device, e.g. "mlx5_0" */
    int32_t port;               /* 1-based port number */
} wf_topo_rail_t;

/* Summary one rank publishes about itself, of fixed size so it can be allgathered. */
typedef struct {
    char hostid[WF_HOSTID_MAX];           /* NUL-terminated node identity */
    char hostname[WF_TOPO_HOSTNAME_MAX];  /* for messages */
    char cpuset[WF_TOPO_CPUSET_MAX];      /* PUs of the binding in hwloc list syntax, e.g. "0-3,8" */
    int32_t pid;
    int32_t numa_node;     /* OS index of the NUMA node of the binding, -1 if several or unknown */
    int32_t package;       /* OS index of the package of the binding, -1 if several or unknown */
    int32_t ncores;        /* physical cores on this node, 0 if unknown */
    int32_t nrails;        /* 0: no OpenFabrics device chosen */
    int32_t rail_distance; /* wf_topo_distance_t of the chosen rails */
    wf_topo_rail_t rails[WF_TOPO_RAILS_MAX]; /* equally near ports, in the order of the choice */
} wf_topo_summary_t;

typedef enum { WF_TOPO_DEV_OPENFABRICS, WF_TOPO_DEV_NETWORK } wf_topo_dev_type_t;

/* A network device of this node, with its locality and its distance from the calling process. */
typedef struct {
    char name[64];
    wf_topo_dev_type_t type;
    char pci_busid[16];  /* "" for a device without a PCI parent */
    int is_virtual;      /* no PCI parent and no NUMA locality: rxe0, lo, bridges */
    int numa_node;       /* OS index, -1 if its locality spans several NUMA nodes or is unknown */
    int package;         /* OS index, -1 if several or unknown */
    char cpuset[64];     /* PUs local to the device, hwloc list syntax; "" when unknown */
    wf_topo_distance_t distance;
    int nports;          /* ports hwloc reports (OpenFabrics only), 0 when none are */
    unsigned char port_state[WF_NIC_PORTS_MAX]; /* wf_port_state_t of port p at index p - 1 */
} wf_topo_device_t;

/* Caches of one level that the binding covers. */
typedef struct {
    uint64_t size; /* bytes of one cache of this level, 0 when hwloc reports none */
    int count;     /* caches of this level that contain PUs of the binding */
    int cores;     /* cores that share one such cache */
} wf_topo_cache_t;

/* Topology of the calling process and its node, filled by wf_topo_discover and released by wf_topo_local_free. */
typedef struct {
    char hostname[WF_TOPO_HOSTNAME_MAX];
    char hostid[WF_HOSTID_MAX];
    int hostid_from_env;  /* WEFT_HOSTID set the identity */
    int hwloc_ok;         /* 0 when hwloc failed: everything below is unknown */

    /* the node */
    int npackages, nnumanodes, ncores, npus;

    /* the binding of this process */
    int binding_known;    /* 0 when it could not be read, and binding lists every PU */
    char binding[256];    /* PUs, hwloc list syntax */
    int bound_pus, bound_cores;
    char numa_nodes[64];  /* NUMA nodes of the binding, list syntax */
    int numa_node;        /* the one NUMA node, or -1 when the binding spans several */
    int package;          /* the one package, or -1 */
    wf_topo_cache_t l2, l3;

    /* network devices in the order hwloc lists them, then virtual ones read from sysfs */
    wf_topo_device_t *devices;
    int ndevices;

    /* the NIC choice */
    int nrails;
    wf_topo_rail_t rails[WF_TOPO_RAILS_MAX];
    wf_topo_distance_t rail_distance;
    int rails_left_out;   /* equally near ports beyond WF_TOPO_RAILS_MAX */
} wf_topo_local_t;

#define WF_TOPO_ERR_HWLOC -1 /* hwloc failed; identity is set, the rest is unknown */
#define WF_TOPO_ERR_NIC -2   /* WEFT_IB_HCA matches no usable device port */

/*
 * Discover this process and its node, and choose its NIC ports under WEFT_IB_HCA. The hwloc
 * topology is loaded once per process (about 30 ms with I/O discovery) and reused. Returns 0,
 * WF_TOPO_ERR_HWLOC or WF_TOPO_ERR_NIC with the reason in err. *local is usable in every case and
 * must be released with wf_topo_local_free.
 */
int wf_topo_discover(wf_topo_local_t *local, char *err, size_t errlen);
void wf_topo_local_free(wf_topo_local_t *local);

/* Copy what other ranks need from local into the fixed-size summary. */
void wf_topo_fill_summary(const wf_topo_local_t *local, wf_topo_summary_t *summary);

/* NUL-terminate every string of a summary received from another rank, and bound its rail count. */
void wf_topo_summary_terminate(wf_topo_summary_t *summary);

/* Log at INFO under TOPO what was found and chosen. */
void wf_topo_log(const wf_topo_local_t *local);

const char *wf_topo_distance_name(wf_topo_distance_t distance);
const char *wf_topo_dev_type_name(wf_topo_dev_type_t type);

/* Text forms for logs and weft-info; each writes a NUL-terminated, possibly cut, string to out. */
void wf_topo_format_size(uint64_t bytes, char *out, size_t outlen);      /* "512 KiB" */
void wf_topo_format_rails(const wf_topo_rail_t *rails, int nrails, char *out, size_t outlen); /* "mlx5_0:1" */
void wf_topo_format_cache(const char *level, const wf_topo_cache_t *cache, char *out, size_t outlen);
void wf_topo_format_device(const wf_topo_device_t *device, char *out, size_t outlen);
void wf_topo_format_choice(const wf_topo_local_t *local, char *out, size_t outlen);

/* Node layout derived from every rank's summary. Nodes are numbered in the order of their lowest rank. */
typedef struct {
    int nranks;
    int nnodes;
    int *node_of_rank;  /* [nranks] node index of each rank */
    int *local_rank;    /* [nranks] rank among the ranks of its node, in rank order */
    int *local_size;    /* [nranks] ranks on the node of each rank */
    int *node_size;     /* [nnodes] ranks on each node */
    int *node_offset;   /* [nnodes + 1] node n's ranks are node_ranks[node_offset[n] .. node_offset[n + 1]) */
    int *node_ranks;    /* [nranks] ranks grouped by node, ascending within a node */
    int *leader;        /* [nnodes] lowest rank of each node; ascending, since nodes follow it */
    int regular;        /* 1 when every node has the same number of ranks */
    int max_local_size; /* ranks on the most populated node */
} wf_node_map_t;

/* Group ranks by summaries[r].hostid. Returns 0, or -1 when out of memory (map is then empty). */
int wf_node_map_build(wf_node_map_t *map, const wf_topo_summary_t *summaries, int nranks);
void wf_node_map_free(wf_node_map_t *map);

/*
 * Write the topology dump that WEFT_TOPO_DUMP_FILE names (pattern: %h host, %p pid, %r rank, %%),
 * as PATH.json (the rank map of every rank) and PATH.xml (this node's hwloc topology), and store
 * the expanded PATH in path. Called by one rank per node. Returns 0, or -1 with the reason in err.
 */
int wf_topo_dump(const char *pattern, int rank, const wf_node_map_t *map, const wf_topo_summary_t *summaries,
                 char *path, size_t pathlen, char *err, size_t errlen);

#endif /* WF_TOPO_H */
