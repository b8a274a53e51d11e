/*
 * All-gather by Bruck's method, for small blocks and any number of members.
 *
 * Each member keeps a work buffer whose block j is member (me + j) mod n's. It starts with its own
 * block. In step k it sends its first min(2^k, n - 2^k) blocks to member me - 2^k and appends as
 * many from member me + 2^k. After ceil(log2 n) steps the work buffer has every block, and a final
 * rotation copies block j to member (me + j)'s place in recvbuf. Cost: ceil(log2 n) latencies and
 * (n - 1) blocks received, plus two local copies of the result. Blocks may differ
 * in size (all-gather-v): the work buffer packs them back to back.
 */
#include <stdlib.h>
#include <string.h>

#include "group.h"

weft_result_t wf_allgather_bruck(weft_comm_t comm, const wf_group_t *group, void *recvbuf, const size_t *bytes,
                                 const size_t *offsets)
{
    int n = group->n, me = group->me;
    wf_scratch_t work = {0};

    /* position[j]: where block j (member me + j) starts in the work buffer, and position[n] is the total. */
    size_t *position = malloc(((size_t)n + 1) * sizeof(size_t));
    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (position == NULL && result == WEFT_SUCCESS)
        result = wf_comm_fail(comm, WEFT_ERR_NO_MEMORY, "allgather on rank %d: out of memory for %d block positions",
                              comm->rank, n + 1);
    if (result == WEFT_SUCCESS) {
        position[0] = 0;
        for (int j = 0; j < n; j++)
            position[j + 1] = position[j] + bytes[(me + j) % n];
        result = wf_scratch_get(comm, position[n], &work);
    }
    if (result == WEFT_SUCCESS)
        memcpy(work.base, (const char *)recvbuf + offsets[me], bytes[me]);

    for (int k = 0, distance = 1; distance < n && result == WEFT_SUCCESS; k++, distance *= 2) {
        int blocks = distance < n - distance ? distance : n - distance;
        int to = wf_group_rank(group, (me - distance + n) % n), from = wf_group_rank(group, (me + distance) % n);
        size_t received = position[distance + blocks] - position[distance];
        result = wf_step_exchange(comm, (unsigned)k, &(wf_step_side_t){to, work.base, position[blocks], work.mr},
                                  &(wf_step_side_t){from, work.base + position[distance], received, work.mr});
    }

    /* Rotate: block j of the work buffer belongs to member me + j. */
    for (int j = 1; j < n && result == WEFT_SUCCESS; j++) {
        int member = (me + j) % n;
        memcpy((char *)recvbuf + offsets[member], work.base + position[j], bytes[member]);
    }
    if (result == WEFT_SUCCESS)
        comm->stats.staged_copy_bytes += position[n];
    result = wf_sig_finish(comm, result);
    wf_scratch_put(comm, &work, result);
    free(position);
    return result;
}
