/*
 * Which combinations coll_check runs.
 *
 * Small counts run for every datatype and op, in place and not. The counts 1000003 and 2^20 + 3
 * run for a subset: each datatype once in all-reduce with a rotating op, and a few datatypes in
 * the other collectives. A full launch on 4 ranks took 10 s over shm and 28 s over tcp;ofi_rxm
 * on a shared 2-core machine (RelWithDebInfo build).
 */
#include <stdio.h>
#include <stdlib.h>

#include "coll_check.h"

#define CT_PRIME_LARGE_COUNT 1000003
#define CT_ABOVE_2POW20_COUNT ((1u << 20) + 3)
/* Reduce-scatter count per rank for the large cases. The send buffer is nranks times as long. */
#define CT_LARGE_BLOCK_COUNT ((1u << 18) + 3)
/* Full mode only: 512 KiB of float64, more than one message for any likely eager limit. */
#define CT_MEDIUM_COUNT 65537
/* float32 elements in 64 MiB plus 3: the --large cases. */
#define CT_ABOVE_64MIB_COUNT ((64u << 20) / 4 + 3)

static const char *const coll_names[CT_NUM_COLLS] = {"allreduce", "allgather", "reduce_scatter",
                                                     "broadcast", "barrier"};

const char *ct_coll_name(ct_coll_t coll)
{
    return coll_names[coll];
}

static void add_case(ct_case_list_t *list, ct_coll_t coll, weft_datatype_t type, weft_op_t op, size_t count,
                     int in_place, int root)
{
    if (list->length == list->capacity) {
        list->capacity = list->capacity ? 2 * list->capacity : 256;
        list->items = realloc(list->items, list->capacity * sizeof *list->items);
        if (list->items == NULL) {
            fprintf(stderr, "coll_check: cannot allocate the list of %zu cases\n", list->capacity);
            exit(2);
        }
    }
    list->items[list->length++] = (ct_case_t){coll, type, op, count, in_place, root};
}

/*
 * Small counts: 0, 1, and 7, which is fewer elements than ranks at 8 ranks. The prime 1031 is
 * divisible by no rank count, and 13n + 1 leaves one element over after an even split. Full mode
 * adds CT_MEDIUM_COUNT.
 */
static size_t small_counts(int quick, int nranks, size_t counts[6])
{
    size_t length = 0;
    counts[length++] = 0;
    counts[length++] = 1;
    counts[length++] = 7;
    counts[length++] = 1031;
    counts[length++] = 13 * (size_t)nranks + 1;
    if (!quick)
        counts[length++] = CT_MEDIUM_COUNT;
    return length;
}

/* Distinct broadcast roots: the first, the last and the middle rank. */
static size_t broadcast_roots(int nranks, int roots[3])
{
    size_t length = 0;
    int candidates[3] = {0, nranks - 1, nranks / 2};
    for (int c = 0; c < 3; c++) {
        int seen = 0;
        for (size_t k = 0; k < length; k++)
            seen |= roots[k] == candidates[c];
        if (!seen)
            roots[length++] = candidates[c];
    }
    return length;
}

static void plan_small(const ct_options_t *options, int nranks, ct_coll_t coll, ct_case_list_t *list)
{
    size_t counts[6];
    int roots[3];
    size_t count_length = small_counts(options->quick, nranks, counts);
    size_t root_length = broadcast_roots(nranks, roots);

    for (size_t c = 0; c < count_length; c++) {
        for (int t = 0; t < CT_NUM_TYPES; t++) {
            weft_datatype_t type = (weft_datatype_t)t;
            switch (coll) {
            case CT_ALLREDUCE:
            case CT_REDUCE_SCATTER:
                /* The medium count alternates in place and out of place by op, halving its cost. */
                for (int op = 0; op < CT_NUM_OPS; op++) {
                    if (counts[c] != CT_MEDIUM_COUNT || op % 2 == 0)
                        add_case(list, coll, type, (weft_op_t)op, counts[c], 0, 0);
                    if (counts[c] != CT_MEDIUM_COUNT || op % 2 == 1)
                        add_case(list, coll, type, (weft_op_t)op, counts[c], 1, 0);
                }
                break;
            case CT_ALLGATHER:
                add_case(list, coll, type, WEFT_SUM, counts[c], 0, 0);
                add_case(list, coll, type, WEFT_SUM, counts[c], 1, 0);
                break;
            case CT_BROADCAST:
                for (size_t r = 0; r < root_length; r++)
                    add_case(list, coll, type, WEFT_SUM, counts[c], 0, roots[r]);
                break;
            default:
                break;
            }
        }
    }
}

/* Large counts for a rotating subset: datatype t uses op t % 5 and alternates the count and mode. */
static void plan_large(const ct_options_t *options, int nranks, ct_coll_t coll, ct_case_list_t *list)
{
    if (options->quick) {
        if (coll == CT_ALLREDUCE) {
            add_case(list, coll, WEFT_FLOAT32, WEFT_SUM, CT_ABOVE_2POW20_COUNT, 0, 0);
            add_case(list, coll, WEFT_BFLOAT16, WEFT_SUM, CT_PRIME_LARGE_COUNT, 1, 0);
        } else if (coll == CT_BROADCAST) {
            add_case(list, coll, WEFT_UINT8, WEFT_SUM, CT_ABOVE_2POW20_COUNT, 0, nranks - 1);
        }
        return;
    }

    for (int t = 0; t < CT_NUM_TYPES; t++) {
        weft_datatype_t type = (weft_datatype_t)t;
        size_t count = t % 2 ? CT_ABOVE_2POW20_COUNT : CT_PRIME_LARGE_COUNT;
        switch (coll) {
        case CT_ALLREDUCE:
            add_case(list, coll, type, (weft_op_t)(t % CT_NUM_OPS), count, t % 2, 0);
            break;
        case CT_REDUCE_SCATTER:
            /* The send buffer is nranks times the count: only uint8 gets a full large count. */
            if (t == WEFT_UINT8)
                add_case(list, coll, type, WEFT_MAX, count, 1, 0);
            else if (t == WEFT_FLOAT16 || t == WEFT_FLOAT32 || t == WEFT_INT64)
                add_case(list, coll, type, (weft_op_t)((t + 2) % CT_NUM_OPS), CT_LARGE_BLOCK_COUNT, t % 2, 0);
            break;
        case CT_ALLGATHER:
            if (t == WEFT_UINT8 || t == WEFT_FLOAT32)
                add_case(list, coll, type, WEFT_SUM, count, t == WEFT_FLOAT32, 0);
            break;
        case CT_BROADCAST:
            if (t == WEFT_UINT8 || t == WEFT_FLOAT64)
                add_case(list, coll, type, WEFT_SUM, count, 0, t == WEFT_UINT8 ? nranks - 1 : 0);
            break;
        default:
            break;
        }
    }
}

void ct_plan_cases(const ct_options_t *options, int nranks, ct_case_list_t *list)
{
    for (int c = 0; c < CT_NUM_COLLS; c++) {
        ct_coll_t coll = (ct_coll_t)c;
        if (options->only_coll >= 0 && options->only_coll != c)
            continue;
        if (coll == CT_BARRIER) {
            /* Each rank in turn enters the barrier late. */
            for (int late = 0; late < nranks; late++)
                add_case(list, coll, WEFT_UINT8, WEFT_SUM, 0, 0, late);
            continue;
        }
        plan_small(options, nranks, coll, list);
        plan_large(options, nranks, coll, list);
        if (options->large && coll == CT_ALLREDUCE)
            add_case(list, coll, WEFT_FLOAT32, WEFT_SUM, CT_ABOVE_64MIB_COUNT, 0, 0);
        /* All-gather: every rank's block is a share of the 64 MiB, so the output is above it. */
        if (options->large && coll == CT_ALLGATHER)
            add_case(list, coll, WEFT_FLOAT32, WEFT_SUM, CT_ABOVE_64MIB_COUNT / (size_t)nranks + 1, 0, 0);
        if (options->large && coll == CT_BROADCAST)
            add_case(list, coll, WEFT_FLOAT32, WEFT_SUM, CT_ABOVE_64MIB_COUNT, 0, nranks - 1);
    }
}

void ct_describe_case(const ct_case_t *item, char *text, size_t length)
{
    switch (item->coll) {
    case CT_ALLREDUCE:
    case CT_REDUCE_SCATTER:
        snprintf(text, length, "%s %s %s count=%zu %s", ct_coll_name(item->coll), ct_type_name(item->type),
                 ct_op_name(item->op), item->count, item->in_place ? "in-place" : "out-of-place");
        break;
    case CT_ALLGATHER:
        snprintf(text, length, "allgather %s count=%zu %s", ct_type_name(item->type), item->count,
                 item->in_place ? "in-place" : "out-of-place");
        break;
    case CT_BROADCAST:
        snprintf(text, length, "broadcast %s count=%zu root=%d", ct_type_name(item->type), item->count,
                 item->root);
        break;
    default:
        snprintf(text, length, "barrier late-rank=%d", item->root);
        break;
    }
}
