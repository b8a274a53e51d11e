/*
 * Node discovery: who am I, which node am I on, and what does this node look like.
 *
 * topo/ knows nothing of transports. The node identity is the host name plus the kernel boot id
 * (so containers that share a host name on different machines stay apart), unless WEFT_HOSTID
 * overrides it, which lets one machine act as several nodes in tests.
 */
#ifndef WF_TOPO_H
#define WF_TOPO_H

#include <stddef.h>

#define WF_HOSTID_MAX 96

/* Summary one rank publishes about itself, of fixed size so it can be allgathered. */
typedef struct {
    char hostid[WF_HOSTID_MAX]; /* NUL-terminated node identity */
    char hostname[64];          /* for messages */
    int numa_node;              /* NUMA node of the CPUs this process is bound to, -1 if several or unknown */
    int ncores;                 /* physical cores on this node */
    int pid;
} wf_topo_summary_t;

/* Fill *summary for the calling process (hwloc). Returns 0 or -1 with a message in err. */
int wf_topo_discover(wf_topo_summary_t *summary, char *err, size_t errlen);

/* Node layout derived from every rank's summary. */
typedef struct {
    int nnodes;
    int *node_of_rank;   /* node index of each rank, nodes numbered in order of first rank */
    int *local_rank;     /* rank among the ranks of its node */
    int *local_size;     /* ranks on the node of each rank */
} wf_node_map_t;

int wf_node_map_build(wf_node_map_t *map, const wf_topo_summary_t *summaries, int nranks);
void wf_node_map_free(wf_node_map_t *map);

#endif /* WF_TOPO_H */
