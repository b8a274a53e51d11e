/*
 * weft_comm_split: new communicators from the colors and keys of a parent's ranks.
 *
 * Two all-gathers over the parent do the agreement. The first publishes every rank's (color, key),
 * from which each rank computes the members of its group and its new rank. Members are ordered by
 * key, and ties are broken by parent rank, as MPI_Comm_split does. The group's new rank 0 (its leader) then creates a
 * unique id, whose rendezvous its process serves, and the second all-gather hands every leader's
 * id to its members. Each group is finally created like weft_comm_init_rank, with its own bootstrap
 * and its own fabric endpoint, so it shares no state with the parent that a thread could race on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "log.h"
#include "param.h"

typedef struct {
    int32_t color;
    int32_t key;
} split_entry_t;

/* New rank of `rank` in its color group and the group's size and leader (parent ranks). */
static void place_in_group(const split_entry_t *all, int nranks, int rank, int *new_rank, int *group_size,
                           int *leader)
{
    *new_rank = 0;
    *group_size = 0;
    *leader = -1;
    for (int r = 0; r < nranks; r++) {
        if (all[r].color != all[rank].color)
            continue;
        (*group_size)++;
        if (all[r].key < all[rank].key || (all[r].key == all[rank].key && r < rank))
            (*new_rank)++;
    }
    /* The leader is the member that every other member of the group sorts after. */
    for (int r = 0; r < nranks; r++) {
        if (all[r].color != all[rank].color)
            continue;
        if (*leader < 0 || all[r].key < all[*leader].key || (all[r].key == all[*leader].key && r < *leader))
            *leader = r;
    }
}

WEFT_API weft_result_t weft_comm_split(weft_comm_t comm, int color, int key, weft_comm_t *newcomm)
{
    if (comm == NULL || newcomm == NULL) {
        wf_set_init_error("weft_comm_split: %s is NULL", comm == NULL ? "comm" : "newcomm");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    *newcomm = NULL;
    if (comm->failure != WEFT_SUCCESS)
        return comm->failure;

    int n = comm->nranks;
    split_entry_t mine = {color < 0 ? -1 : color, key};
    split_entry_t *all = calloc((unsigned)n, sizeof(*all));
    weft_unique_id_t *ids = calloc((unsigned)n, sizeof(*ids));
    if (all == NULL || ids == NULL) {
        free(all);
        free(ids);
        return wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "weft_comm_split on rank %d: out of memory", comm->rank);
    }

    /* Round 1: colors and keys. */
    weft_result_t result = weft_allgather(&mine, all, sizeof(mine), WEFT_UINT8, comm);
    int new_rank = 0, group_size = 0, leader = -1;
    if (result == WEFT_SUCCESS && color >= 0)
        place_in_group(all, n, comm->rank, &new_rank, &group_size, &leader);

    /* Round 2: each leader's unique id. A leader that cannot create one publishes zeros. */
    weft_unique_id_t own_id;
    memset(&own_id, 0, sizeof(own_id));
    char err[512] = "";
    if (result == WEFT_SUCCESS && color >= 0 && leader == comm->rank &&
        wf_bootstrap_create_id(&own_id, err, sizeof(err)) != WEFT_SUCCESS)
        WF_WARN(WF_SUB_INIT, "weft_comm_split on rank %d: cannot create the rendezvous of color %d: %s", comm->rank,
                color, err);
    if (result == WEFT_SUCCESS)
        result = weft_allgather(&own_id, ids, sizeof(own_id), WEFT_UINT8, comm);

    static const weft_unique_id_t zero_id;
    if (result == WEFT_SUCCESS && color >= 0) {
        if (memcmp(&ids[leader], &zero_id, sizeof(zero_id)) == 0) {
            snprintf(comm->last_error, sizeof(comm->last_error),
                     "weft_comm_split on rank %d: rank %d, the first rank of color %d, could not create its "
                     "rendezvous; see its log", comm->rank, leader, color);
            result = WEFT_ERR_REMOTE;
        } else {
            WF_INFO(WF_SUB_INIT, "weft_comm_split: rank %d joins color %d as rank %d of %d (key %d)", comm->rank, color,
                    new_rank, group_size, key);
            result = wf_comm_create_from_id(newcomm, group_size, &ids[leader], new_rank);
            if (result != WEFT_SUCCESS)
                snprintf(comm->last_error, sizeof(comm->last_error), "weft_comm_split on rank %d: %.440s", comm->rank,
                         wf_init_error());
        }
    }
    free(all);
    free(ids);
    return result;
}
