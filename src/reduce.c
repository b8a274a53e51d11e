/*
 * Reduction plans: which kernels and partial type serve a (datatype, op, precision), plus the
 * names and sizes of datatypes and ops. The kernels are in reduce_kernels.c (integers, float32,
 * float64) and reduce_kernels_half.c (float16, bfloat16).
 */
#include "reduce_internal.h"

static const struct {
    const char *name;
    size_t size;
} datatype_info[WF_DATATYPE_COUNT] = {
    [WEFT_INT8] = {"int8", 1},       [WEFT_UINT8] = {"uint8", 1},       [WEFT_INT32] = {"int32", 4},
    [WEFT_UINT32] = {"uint32", 4},   [WEFT_INT64] = {"int64", 8},       [WEFT_UINT64] = {"uint64", 8},
    [WEFT_FLOAT16] = {"float16", 2}, [WEFT_BFLOAT16] = {"bfloat16", 2}, [WEFT_FLOAT32] = {"float32", 4},
    [WEFT_FLOAT64] = {"float64", 8},
};

/* Names as nccl-tests prints them in its redop column. */
static const char *const op_names[WF_OP_COUNT] = {
    [WEFT_SUM] = "sum", [WEFT_PROD] = "prod", [WEFT_MIN] = "min", [WEFT_MAX] = "max", [WEFT_AVG] = "avg",
};

static int datatype_is_valid(weft_datatype_t type) { return (int)type >= 0 && (int)type < WF_DATATYPE_COUNT; }

static int op_is_valid(weft_op_t op) { return (int)op >= 0 && (int)op < WF_OP_COUNT; }

size_t wf_datatype_size(weft_datatype_t type) { return datatype_is_valid(type) ? datatype_info[type].size : 0; }

const char *wf_datatype_name(weft_datatype_t type) { return datatype_is_valid(type) ? datatype_info[type].name : NULL; }

const char *wf_op_name(weft_op_t op) { return op_is_valid(op) ? op_names[op] : NULL; }

static const wf_reduce_kernels_t *kernels_for(weft_datatype_t type, weft_op_t op, int native_precision)
{
    switch (type) {
    case WEFT_FLOAT16:
    case WEFT_BFLOAT16:
        if (native_precision)
            return &wf_reduce_half_native_kernels[type - WEFT_FLOAT16][op];
        return &wf_reduce_half_wide_kernels[type - WEFT_FLOAT16][op];
    case WEFT_FLOAT32:
    case WEFT_FLOAT64:
        return &wf_reduce_float_kernels[type - WEFT_FLOAT32][op];
    default:
        return &wf_reduce_integer_kernels[type - WEFT_INT8][op];
    }
}

int wf_reduce_plan(wf_reduce_plan_t *plan, weft_datatype_t type, weft_op_t op, int native_precision)
{
    if (plan == NULL || !datatype_is_valid(type) || !op_is_valid(op))
        return -1;

    const wf_reduce_kernels_t *kernels = kernels_for(type, op, native_precision);
    plan->type = type;
    plan->op = op;
    plan->user_size = datatype_info[type].size;
    plan->partial_size = kernels->partial_size;
    plan->to_partial = kernels->to_partial;
    plan->reduce_partial = kernels->reduce_partial;
    plan->reduce_user = kernels->reduce_user;
    plan->finish = kernels->finish;
    plan->reduce_finish = kernels->reduce_finish;
    plan->reduce_pair = kernels->reduce_pair;
    plan->reduce_pair_finish = kernels->reduce_pair_finish;
    if (type == WEFT_BFLOAT16 && op == WEFT_SUM && !native_precision && wf_bf16_avx2_available()) {
        plan->reduce_pair = wf_bf16_sum_pair_avx2;
        plan->reduce_pair_finish = wf_bf16_sum_pair_finish_avx2;
    }
    return 0;
}

/*
 * Reports the clone that WF_KERNEL_CLONES selects on this CPU: GCC's resolver and
 * __builtin_cpu_supports read the same CPU model data, including whether the OS saves the wide
 * registers. "scalar" is the baseline build, which on x86-64 still uses SSE2 vectors.
 */
const char *wf_reduce_isa(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return "avx512";
    if (__builtin_cpu_supports("avx2"))
        return "avx2";
#endif
    return "scalar";
}
