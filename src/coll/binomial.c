/*
 * Broadcast down a binomial tree, for small messages.
 *
 * Members are numbered relative to the root. Member r receives from r - 2^k, where 2^k is the
 * lowest set bit of r, and then sends to r + 2^j for every j < k (largest first) that exists. The
 * root sends to 1, 2, 4, ... So the data reaches all n members after ceil(log2 n) latencies,
 * against n - 1 sends from the root in the direct algorithm. Every message goes straight into the
 * receiver's buf: an eager message up to WEFT_EAGER_LIMIT, an RDMA write above it.
 */
#include "group.h"

weft_result_t wf_broadcast_binomial(weft_comm_t comm, const wf_group_t *group, void *buf, size_t bytes, int root)
{
    int n = group->n, relative = (group->me - root + n) % n;
    wf_mr_ref_t ref = {0};
    const wf_mr_t *mr = NULL;
    const wf_step_side_t none = {-1, NULL, 0, NULL};

    weft_result_t result = wf_sig_send(comm, NULL, 0, 0);
    if (result == WEFT_SUCCESS)
        result = wf_step_register(comm, buf, bytes, &ref, &mr);

    /* Receive from the parent. The step number is the bit in which parent and child differ. */
    int bit = 0;
    while ((1 << bit) < n && !(relative & (1 << bit)))
        bit++;
    if (result == WEFT_SUCCESS && relative != 0) {
        int parent = wf_group_rank(group, (relative - (1 << bit) + root) % n);
        result = wf_step_exchange(comm, (unsigned)bit, &none, &(wf_step_side_t){parent, buf, bytes, mr});
    }

    /* Send to the children, the largest subtree first. */
    for (int k = bit - 1; k >= 0 && result == WEFT_SUCCESS; k--) {
        if (relative + (1 << k) >= n)
            continue;
        int child = wf_group_rank(group, (relative + (1 << k) + root) % n);
        result = wf_step_exchange(comm, (unsigned)k, &(wf_step_side_t){child, buf, bytes, mr}, &none);
    }
    wf_mr_put(comm, &ref);
    return wf_sig_finish(comm, result);
}
