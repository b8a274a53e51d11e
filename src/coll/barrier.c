/*
 * Dissemination barrier: in round k every rank signals rank - 2^k and waits for rank + 2^k, so
 * after ceil(log2 n) rounds each rank has heard, directly or not, from every other rank.
 *
 * The direction is the mirror of the usual one so that round 0 is the signature exchange every
 * collective makes anyway (to the left neighbour, from the right one): a two-rank barrier sends
 * one message per rank, the signature.
 */
#include "coll.h"

weft_result_t wf_dissemination_barrier(weft_comm_t comm)
{
    int n = comm->nranks;
    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = wf_sig_wait(comm);
    for (unsigned round = 1; (1 << round) < n && result == WEFT_SUCCESS; round++) {
        int to = (comm->rank - (1 << round) % n + n) % n;
        int from = (comm->rank + (1 << round)) % n;
        wf_xfer_t send, recv;
        result = wf_post_recv(comm, from, wf_tag(comm->seq, WF_TAG_BARRIER, round, from), &comm->control->barrier_in, 1,
                              comm->control_desc, &recv);
        if (result == WEFT_SUCCESS)
            result = wf_post_send(comm, to, wf_tag(comm->seq, WF_TAG_BARRIER, round, comm->rank),
                                  &comm->control->barrier_out, 1, comm->control_desc, &send);
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &recv, from, "waiting in the barrier");
        if (result == WEFT_SUCCESS)
            result = wf_comm_wait_xfer(comm, &send, to, "signalling in the barrier");
    }
    return result;
}
