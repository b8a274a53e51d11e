/*
 * Ranks that pass a different datatype, op, root, collective or v-form layout all fail with
 * WEFT_ERR_MISMATCH within 5 s, and the error names rank 0 and both values. On 3 ranks, rank 0
 * differs from ranks 1 and 2:
 *   datatype: all-reduce sum, count 1, 0.1 as bfloat16 on rank 0 and as float32 elsewhere;
 *   op: float32 all-reduce, count 1, max on rank 0 and sum elsewhere;
 *   root: float32 broadcast, count 8, root 0 on rank 0 and root 1 elsewhere;
 *   collective: float32 count 1, all-gather on rank 0 and all-reduce sum elsewhere;
 *   all-gather-v layout: int32 recvcounts [2, 1, 0] on rank 0 and [1, 1, 1] elsewhere (same total);
 *   reduce-scatter-v counts: int32 sum, recvcounts [2, 2, 2] on rank 0 and [1, 1, 1] elsewhere.
 * In the root case the rank that believes it is the root sees only neighbours that agree with it,
 * so it may return success; it must then fail in its next call (documented in docs/api.md).
 */
#include <stdint.h>
#include <string.h>

#include "mismatch_cases.h"

#define NRANKS 3

/* Buffers of every case, kept for the whole run: the transport may own them until weft_comm_destroy. */
static uint16_t half_value;
static float value, values[8], gathered[NRANKS];
static int32_t send_ints[6], recv_ints[4];

static weft_result_t datatype_case(weft_comm_t comm, int rank, const void *arg)
{
    if (rank == 0) {
        half_value = ct_float_to_bfloat(0.1f);
        return weft_allreduce(&half_value, &half_value, 1, WEFT_BFLOAT16, WEFT_SUM, comm);
    }
    value = 0.1f;
    return weft_allreduce(&value, &value, 1, WEFT_FLOAT32, WEFT_SUM, comm);
}

static weft_result_t op_case(weft_comm_t comm, int rank, const void *arg)
{
    value = 0.1f;
    return weft_allreduce(&value, &value, 1, WEFT_FLOAT32, rank == 0 ? WEFT_MAX : WEFT_SUM, comm);
}

static weft_result_t root_case(weft_comm_t comm, int rank, const void *arg)
{
    for (int i = 0; i < 8; i++)
        values[i] = (float)(rank * 10 + i);
    return weft_broadcast(values, 8, WEFT_FLOAT32, rank == 0 ? 0 : 1, comm);
}

static weft_result_t kind_case(weft_comm_t comm, int rank, const void *arg)
{
    value = 1.0f;
    if (rank == 0)
        return weft_allgather(&value, gathered, 1, WEFT_FLOAT32, comm);
    return weft_allreduce(&value, &value, 1, WEFT_FLOAT32, WEFT_SUM, comm);
}

static weft_result_t allgatherv_case(weft_comm_t comm, int rank, const void *arg)
{
    static const size_t rank0_counts[NRANKS] = {2, 1, 0}, rank0_displs[NRANKS] = {0, 2, 3};
    static const size_t counts[NRANKS] = {1, 1, 1}, displs[NRANKS] = {0, 1, 2};
    const size_t *c = rank == 0 ? rank0_counts : counts, *d = rank == 0 ? rank0_displs : displs;
    send_ints[0] = send_ints[1] = rank;
    return weft_allgatherv(send_ints, c[rank], recv_ints, c, d, WEFT_INT32, comm);
}

static weft_result_t reduce_scatterv_case(weft_comm_t comm, int rank, const void *arg)
{
    static const size_t rank0_counts[NRANKS] = {2, 2, 2}, counts[NRANKS] = {1, 1, 1};
    for (int i = 0; i < 6; i++)
        send_ints[i] = 1;
    return weft_reduce_scatterv(send_ints, recv_ints, rank == 0 ? rank0_counts : counts, WEFT_INT32, WEFT_SUM, comm);
}

static const mc_case_t cases[] = {
    {"datatype: bfloat16 on rank 0, float32 elsewhere", datatype_case, NULL, 0,
     {"rank 0 called allreduce with count 1 bfloat16 sum", "called allreduce with count 1 float32 sum"}},
    {"op: max on rank 0, sum elsewhere", op_case, NULL, 0,
     {"rank 0 called allreduce with count 1 float32 max", "called allreduce with count 1 float32 sum"}},
    {"root: 0 on rank 0, 1 elsewhere", root_case, NULL, 1,
     {"rank 0 called broadcast with count 8 float32 root 0", "called broadcast with count 8 float32 root 1"}},
    {"collective: all-gather on rank 0, all-reduce elsewhere", kind_case, NULL, 0,
     {"rank 0 called allgather with count 1 float32", "called allreduce with count 1 float32 sum"}},
    {"all-gather-v: recvcounts [2, 1, 0] on rank 0, [1, 1, 1] elsewhere", allgatherv_case, NULL, 0,
     {"rank 0 called allgatherv with recvcounts summing to 3 int32", "different recvcounts or displs"}},
    {"reduce-scatter-v: recvcounts [2, 2, 2] on rank 0, [1, 1, 1] elsewhere", reduce_scatterv_case, NULL, 0,
     {"rank 0 called reduce_scatterv with recvcounts summing to 6 int32 sum",
      "called reduce_scatterv with recvcounts summing to 3 int32 sum"}},
};

int main(void)
{
    return mc_run_cases("mismatched_type_op_root_fail_on_every_rank", cases, (int)(sizeof(cases) / sizeof(cases[0])));
}
