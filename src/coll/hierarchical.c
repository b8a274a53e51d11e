/*
 * Hierarchical all-reduce for communicators that span nodes with the same number of ranks each.
 * It runs a reduce-scatter inside each node, then an all-reduce of each local rank's block across
 * the nodes (local rank l of every node forms rail l), then an all-gather inside each node.
 *
 * Between nodes each rank moves only its node's 1/L of the vector (L ranks per node), and every
 * rail runs at once, one per NIC when the node has several. Inside the node the traffic goes
 * through shared memory (the route transport). The phases reuse the group algorithms: recursive
 * halving, Rabenseifner and Bruck.
 *
 * Results are rounded between phases, so the algorithm serves only reductions whose partial sums
 * are of the user's type and that need no final division: not 16-bit floats in float32 precision,
 * not WEFT_AVG. wf_allreduce_hierarchical_fits checks this, and the caller takes the ring otherwise.
 */
#include <stdlib.h>

#include "coll.h"

int wf_allreduce_hierarchical_fits(const weft_comm_t comm, const wf_reduce_plan_t *plan)
{
    const wf_node_map_t *map = &comm->nodes;
    return map->nnodes > 1 && map->regular && map->max_local_size > 1 && plan->partial_size == plan->user_size &&
           plan->op != WEFT_AVG;
}

weft_result_t wf_allreduce_hierarchical(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                        const wf_reduce_plan_t *plan)
{
    const wf_node_map_t *map = &comm->nodes;
    int node = map->node_of_rank[comm->rank], local = map->local_rank[comm->rank];
    int per_node = map->node_size[node], nodes = map->nnodes;
    size_t size = plan->user_size;

    int *rail = malloc((size_t)nodes * sizeof(int));
    size_t *tables = malloc(4 * (size_t)per_node * sizeof(size_t));
    if (rail == NULL || tables == NULL) {
        free(rail);
        free(tables);
        return wf_sig_finish(comm, wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allreduce on rank %d: out of memory",
                                                comm->rank));
    }
    for (int k = 0; k < nodes; k++)
        rail[k] = map->node_ranks[map->node_offset[k] + local];
    size_t *counts = tables, *offsets = tables + per_node, *bytes = tables + 2 * per_node;
    size_t *byte_offsets = tables + 3 * per_node;
    for (int i = 0; i < per_node; i++) {
        counts[i] = wf_block_count(count, per_node, i);
        offsets[i] = wf_block_offset(count, per_node, i);
        bytes[i] = counts[i] * size;
        byte_offsets[i] = offsets[i] * size;
    }
    wf_group_t in_node = {per_node, local, map->node_ranks + map->node_offset[node]};
    wf_group_t across = {nodes, node, rail};
    char *block = (char *)recvbuf + byte_offsets[local];

    weft_result_t result = wf_reduce_scatter_halving(comm, &in_node, sendbuf, block, counts, offsets, plan);
    if (result == WEFT_SUCCESS && counts[local] > 0)
        result = wf_allreduce_rabenseifner(comm, &across, block, block, counts[local], plan);
    if (result == WEFT_SUCCESS)
        result = wf_allgather_bruck(comm, &in_node, recvbuf, bytes, byte_offsets);
    free(rail);
    free(tables);
    return wf_sig_finish(comm, result);
}
