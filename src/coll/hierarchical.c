/*
 * Hierarchical all-reduce, all-gather and reduce-scatter for communicators that span nodes with
 * the same number of ranks each (at least 2 nodes and 2 ranks per node). Local rank l of every
 * node forms rail l. Inside the node the traffic goes through shared memory (the route
 * transport), and every rail runs its phase across nodes at once, one per NIC when the node has
 * several. The phases reuse the group algorithms: recursive halving, Rabenseifner and Bruck.
 *
 * - All-reduce (N nodes of L ranks): a reduce-scatter inside each node, an all-reduce of each
 *   local rank's block across its rail, then an all-gather inside each node. Between nodes each
 *   rank moves only its node's 1/L of the vector.
 * - All-gather: the rails first, so each rank receives the blocks of its rail from the other
 *   nodes, then inside the node, where each rank contributes its rail's N blocks. Every block
 *   crosses the network once per remote node, never once per local rank, as it would if the node
 *   gathered first.
 * - Reduce-scatter: inside the node first, so local rank l ends with the node's sum of its rail's
 *   N blocks, then a reduce-scatter across the rail. Only 1/L of the input crosses nodes.
 *
 * A rail's blocks lie at its ranks' places in the user buffer. They are contiguous only when
 * ranks are numbered rail by rail (rank = l * N + node, as round-robin placement does). Otherwise
 * the all-gather packs the N blocks of its rail into a scratch copy of the output and unpacks the
 * other rails' blocks at the end, and the reduce-scatter packs the input rail by rail. Either
 * copies the whole buffer once more (nranks * count elements) into a second buffer of that size,
 * which the communicator keeps for the next call up to WEFT_SCRATCH_KEEP.
 *
 * Results are rounded between phases, so the reductions need partial sums of the user's type:
 * not 16-bit floats with float32 partials, not integer WEFT_AVG (wider partials). WEFT_AVG on
 * floats sums inside the node and divides once, in the phase across nodes.
 * wf_hierarchical_fits checks the layout and the plan, and the caller takes the ring otherwise.
 */
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "group.h"

/* This rank's place in the two levels, with the comm rank of each member of both groups. */
typedef struct {
    int nodes, per_node, node, local;
    int *rail;            /* [nodes] comm rank of local rank `local` on each node */
    wf_group_t in_node;   /* the ranks of this node, member l = local rank l */
    wf_group_t across;    /* this rank's rail, member k = node k */
    int rails_contiguous; /* rank = local * nodes + node for every rank */
} levels_t;

int wf_hierarchical_fits(const weft_comm_t comm, const wf_reduce_plan_t *plan)
{
    const wf_node_map_t *map = &comm->nodes;
    return map->nnodes > 1 && map->regular && map->max_local_size > 1 &&
           (plan == NULL || plan->partial_size == plan->user_size);
}

/* Comm rank of local rank `local` on node `node`. */
static int rank_at(const wf_node_map_t *map, int node, int local)
{
    return map->node_ranks[map->node_offset[node] + local];
}

static weft_result_t levels_init(weft_comm_t comm, levels_t *levels)
{
    const wf_node_map_t *map = &comm->nodes;
    levels->nodes = map->nnodes;
    levels->node = map->node_of_rank[comm->rank];
    levels->local = map->local_rank[comm->rank];
    levels->per_node = map->node_size[levels->node];
    levels->rail = malloc((size_t)levels->nodes * sizeof(int));
    if (levels->rail == NULL)
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "%s on rank %d: out of memory for a rail of %d ranks",
                            comm->coll_name, comm->rank, levels->nodes);
    for (int k = 0; k < levels->nodes; k++)
        levels->rail[k] = rank_at(map, k, levels->local);
    levels->in_node = (wf_group_t){levels->per_node, levels->local, map->node_ranks + map->node_offset[levels->node]};
    levels->across = (wf_group_t){levels->nodes, levels->node, levels->rail};
    levels->rails_contiguous = 1;
    for (int k = 0; k < levels->nodes; k++)
        for (int l = 0; l < levels->per_node; l++)
            levels->rails_contiguous &= rank_at(map, k, l) == l * levels->nodes + k;
    return WEFT_SUCCESS;
}

/*
 * The plan of the phase inside the node: the user's op, except that WEFT_AVG sums there and
 * divides only at the end, in the phase across nodes (the kernels divide by comm->nranks).
 */
static weft_result_t node_plan(weft_comm_t comm, const wf_reduce_plan_t *plan, wf_reduce_plan_t *out)
{
    *out = *plan;
    if (plan->op == WEFT_AVG && wf_reduce_plan(out, plan->type, WEFT_SUM, comm->native_precision) != 0)
        return wf_comm_fail(comm, WEFT_ERR_INTERNAL, "%s on rank %d: no sum kernels for %s", comm->coll_name,
                            comm->rank, wf_datatype_name(plan->type));
    return WEFT_SUCCESS;
}

weft_result_t wf_allreduce_hierarchical(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                        const wf_reduce_plan_t *plan)
{
    levels_t levels = {0};
    wf_reduce_plan_t in_node_plan;
    int per_node = comm->nodes.node_size[comm->nodes.node_of_rank[comm->rank]];
    size_t size = plan->user_size;
    size_t *tables = malloc(4 * (size_t)per_node * sizeof(size_t));
    weft_result_t result = tables != NULL ? WEFT_SUCCESS
                                          : wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allreduce on rank %d: out of "
                                                         "memory for %d block tables", comm->rank, per_node);
    if (result == WEFT_SUCCESS)
        result = levels_init(comm, &levels);
    if (result == WEFT_SUCCESS)
        result = node_plan(comm, plan, &in_node_plan);
    if (result != WEFT_SUCCESS) {
        free(tables);
        free(levels.rail);
        return wf_sig_finish(comm, result);
    }

    size_t *counts = tables, *offsets = tables + per_node, *bytes = tables + 2 * per_node;
    size_t *byte_offsets = tables + 3 * per_node;
    for (int i = 0; i < per_node; i++) {
        counts[i] = wf_block_count(count, per_node, i);
        offsets[i] = wf_block_offset(count, per_node, i);
        bytes[i] = counts[i] * size;
        byte_offsets[i] = offsets[i] * size;
    }
    char *block = (char *)recvbuf + byte_offsets[levels.local];

    result = wf_reduce_scatter_halving(comm, &levels.in_node, sendbuf, block, counts, offsets, &in_node_plan);
    if (result == WEFT_SUCCESS && counts[levels.local] > 0)
        result = wf_allreduce_rabenseifner(comm, &levels.across, block, block, counts[levels.local], plan);
    if (result == WEFT_SUCCESS)
        result = wf_allgather_bruck(comm, &levels.in_node, recvbuf, bytes, byte_offsets);
    free(levels.rail);
    free(tables);
    return wf_sig_finish(comm, result);
}

/* Copy the N blocks of rail `local` from their ranks' places (by_rank) to their place in rail order. */
static void pack_rail(const weft_comm_t comm, int local, const char *by_rank, char *by_rail, size_t block)
{
    int nodes = comm->nodes.nnodes;
    for (int k = 0; k < nodes; k++)
        memcpy(by_rail + ((size_t)local * (size_t)nodes + (size_t)k) * block,
               by_rank + (size_t)rank_at(&comm->nodes, k, local) * block, block);
    comm->stats.local_copy_bytes += (uint64_t)nodes * block;
}

/* The reverse of pack_rail. */
static void unpack_rail(const weft_comm_t comm, int local, const char *by_rail, char *by_rank, size_t block)
{
    int nodes = comm->nodes.nnodes;
    for (int k = 0; k < nodes; k++)
        memcpy(by_rank + (size_t)rank_at(&comm->nodes, k, local) * block,
               by_rail + ((size_t)local * (size_t)nodes + (size_t)k) * block, block);
    comm->stats.local_copy_bytes += (uint64_t)nodes * block;
}

weft_result_t wf_allgather_hierarchical(weft_comm_t comm, void *recvbuf, size_t block)
{
    levels_t levels = {0};
    size_t *tables = NULL;
    wf_scratch_t pack = {0};
    char *packed = recvbuf;
    weft_result_t result = levels_init(comm, &levels);
    int nodes = levels.nodes, per_node = levels.per_node;
    size_t rail_bytes = block * (size_t)nodes;

    if (result == WEFT_SUCCESS) {
        tables = malloc(2 * ((size_t)nodes + (size_t)per_node) * sizeof(size_t));
        if (tables == NULL)
            result = wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allgather on rank %d: out of memory", comm->rank);
    }
    if (result == WEFT_SUCCESS && !levels.rails_contiguous) {
        result = wf_scratch_get_for(comm, WF_SCRATCH_PACK, rail_bytes * (size_t)per_node, &pack);
        packed = pack.base;
    }

    /* Across the rail: each node's block of this rail lands at its rank's place in recvbuf. */
    if (result == WEFT_SUCCESS) {
        size_t *bytes = tables, *offsets = tables + nodes;
        for (int k = 0; k < nodes; k++) {
            bytes[k] = block;
            offsets[k] = (size_t)levels.rail[k] * block;
        }
        result = wf_allgather_bruck(comm, &levels.across, recvbuf, bytes, offsets);
    }

    /* Inside the node: local rank l contributes the N blocks of rail l, contiguous in rail order. */
    if (result == WEFT_SUCCESS) {
        size_t *bytes = tables + 2 * nodes, *offsets = bytes + per_node;
        for (int l = 0; l < per_node; l++) {
            bytes[l] = rail_bytes;
            offsets[l] = (size_t)l * rail_bytes;
        }
        if (!levels.rails_contiguous)
            pack_rail(comm, levels.local, recvbuf, packed, block);
        result = wf_allgather_bruck(comm, &levels.in_node, packed, bytes, offsets);
    }
    for (int l = 0; l < per_node && result == WEFT_SUCCESS && !levels.rails_contiguous; l++)
        if (l != levels.local)
            unpack_rail(comm, l, packed, recvbuf, block);

    free(tables);
    free(levels.rail);
    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &pack, result);
    return result;
}

weft_result_t wf_reduce_scatter_hierarchical(weft_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                                             const wf_reduce_plan_t *plan)
{
    levels_t levels = {0};
    wf_reduce_plan_t in_node_plan;
    size_t *tables = NULL;
    wf_scratch_t scratch = {0};
    char *work = NULL;
    weft_result_t result = levels_init(comm, &levels);
    int nodes = levels.nodes, per_node = levels.per_node;
    size_t block = count * plan->user_size, rail_count = count * (size_t)nodes;
    size_t rail_bytes = rail_count * plan->user_size;
    size_t packed_bytes = levels.rails_contiguous ? 0 : block * (size_t)comm->nranks;

    if (result == WEFT_SUCCESS)
        result = node_plan(comm, plan, &in_node_plan);
    if (result == WEFT_SUCCESS) {
        tables = malloc(2 * ((size_t)nodes + (size_t)per_node) * sizeof(size_t));
        if (tables == NULL)
            result = wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "reduce_scatter on rank %d: out of memory", comm->rank);
    }
    if (result == WEFT_SUCCESS) {
        result = wf_scratch_get_for(comm, WF_SCRATCH_PACK, rail_bytes + packed_bytes, &scratch);
        work = scratch.base;
    }

    /* Inside the node: local rank l gets the node's reduction of rail l's N blocks, into work. */
    if (result == WEFT_SUCCESS) {
        const char *packed = levels.rails_contiguous ? sendbuf : work + rail_bytes;
        size_t *counts = tables, *offsets = tables + per_node;
        for (int l = 0; l < per_node; l++) {
            counts[l] = rail_count;
            offsets[l] = (size_t)l * rail_count;
            if (!levels.rails_contiguous)
                pack_rail(comm, l, sendbuf, work + rail_bytes, block);
        }
        result = wf_reduce_scatter_halving(comm, &levels.in_node, packed, work, counts, offsets, &in_node_plan);
    }

    /* Across the rail: node k's block of the rail is rank rail[k]'s, and this rank's lands in recvbuf. */
    if (result == WEFT_SUCCESS) {
        size_t *counts = tables + 2 * per_node, *offsets = counts + nodes;
        for (int k = 0; k < nodes; k++) {
            counts[k] = count;
            offsets[k] = (size_t)k * count;
        }
        result = wf_reduce_scatter_halving(comm, &levels.across, work, recvbuf, counts, offsets, plan);
    }

    free(tables);
    free(levels.rail);
    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &scratch, result);
    return result;
}
