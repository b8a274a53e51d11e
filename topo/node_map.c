/*
 * The rank-to-node map: ranks with the same node identity form a node.
 *
 * Ranks are sorted by (identity, rank), so each run of equal identities is one node whose first
 * element is its lowest rank. Nodes are then numbered in the order of that lowest rank. This is
 * O(n log n) in the number of ranks.
 */
#include <stdlib.h>
#include <string.h>

#include "topo.h"

typedef struct {
    const char *hostid;
    int rank;
} rank_key_t;

static int compare_keys(const void *a, const void *b)
{
    const rank_key_t *x = a;
    const rank_key_t *y = b;
    int order = strcmp(x->hostid, y->hostid);

    if (order != 0)
        return order;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a;
    int y = *(const int *)b;
    return (x > y) - (x < y);
}

static int allocate(wf_node_map_t *map, int nranks)
{
    size_t n = (size_t)nranks;

    map->node_of_rank = calloc(n, sizeof(int));
    map->local_rank = calloc(n, sizeof(int));
    map->local_size = calloc(n, sizeof(int));
    map->node_ranks = calloc(n, sizeof(int));
    /* nnodes <= nranks; the per-node arrays are sized for the worst case. */
    map->node_size = calloc(n, sizeof(int));
    map->node_offset = calloc(n + 1, sizeof(int));
    map->leader = calloc(n, sizeof(int));
    return map->node_of_rank && map->local_rank && map->local_size && map->node_ranks && map->node_size &&
                   map->node_offset && map->leader
               ? 0
               : -1;
}

int wf_node_map_build(wf_node_map_t *map, const wf_topo_summary_t *summaries, int nranks)
{
    memset(map, 0, sizeof(*map));
    if (nranks < 1)
        return -1;
    rank_key_t *keys = malloc((size_t)nranks * sizeof(*keys));
    if (keys == NULL || allocate(map, nranks) != 0) {
        free(keys);
        wf_node_map_free(map);
        return -1;
    }
    map->nranks = nranks;

    for (int r = 0; r < nranks; r++) {
        keys[r].hostid = summaries[r].hostid;
        keys[r].rank = r;
    }
    qsort(keys, (size_t)nranks, sizeof(*keys), compare_keys);

    /* The first rank of each run of one identity is that node's leader. */
    for (int i = 0; i < nranks; i++)
        if (i == 0 || strcmp(keys[i].hostid, keys[i - 1].hostid) != 0)
            map->leader[map->nnodes++] = keys[i].rank;
    qsort(map->leader, (size_t)map->nnodes, sizeof(int), compare_ints);

    /* Number the nodes by leader: a leader's node index is its position in leader[]. */
    for (int n = 0; n < map->nnodes; n++)
        map->node_of_rank[map->leader[n]] = n;
    int node = 0;
    for (int i = 0; i < nranks; i++) {
        int rank = keys[i].rank;
        if (i == 0 || strcmp(keys[i].hostid, keys[i - 1].hostid) != 0)
            node = map->node_of_rank[rank]; /* the leader, first in its run */
        map->node_of_rank[rank] = node;
        map->local_rank[rank] = map->node_size[node]++;
    }
    free(keys);

    for (int n = 0; n < map->nnodes; n++)
        map->node_offset[n + 1] = map->node_offset[n] + map->node_size[n];
    for (int r = 0; r < nranks; r++) {
        int n = map->node_of_rank[r];
        map->node_ranks[map->node_offset[n] + map->local_rank[r]] = r;
        map->local_size[r] = map->node_size[n];
    }
    map->regular = 1;
    for (int n = 0; n < map->nnodes; n++) {
        if (map->node_size[n] != map->node_size[0])
            map->regular = 0;
        if (map->node_size[n] > map->max_local_size)
            map->max_local_size = map->node_size[n];
    }
    return 0;
}

void wf_node_map_free(wf_node_map_t *map)
{
    free(map->node_of_rank);
    free(map->local_rank);
    free(map->local_size);
    free(map->node_size);
    free(map->node_offset);
    free(map->node_ranks);
    free(map->leader);
    memset(map, 0, sizeof(*map));
}
