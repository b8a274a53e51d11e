/*
 * coll_check: one launch runs many combinations of collective, datatype, op, count and in-place
 * mode, and checks each result exactly against the reference in coll_data.c.
 */
#ifndef CT_COLL_CHECK_H
#define CT_COLL_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "coll_util.h"

typedef enum { CT_ALLREDUCE, CT_ALLGATHER, CT_REDUCE_SCATTER, CT_BROADCAST, CT_BARRIER, CT_NUM_COLLS } ct_coll_t;

/* One call to check. count is the NCCL-style count: all-gather sendcount, reduce-scatter recvcount. */
typedef struct {
    ct_coll_t coll;
    weft_datatype_t type;
    weft_op_t op;   /* reductions only */
    size_t count;
    int in_place;
    int root;       /* broadcast root, or the rank that enters the barrier late */
} ct_case_t;

typedef struct {
    ct_case_t *items;
    size_t length;
    size_t capacity;
} ct_case_list_t;

typedef struct {
    int quick;         /* fewer counts and large cases: for high rank counts */
    int large;         /* add an all-reduce, all-gather and broadcast above 64 MiB */
    int verbose;       /* rank 0 prints every case with its time */
    int only_coll;     /* run only this collective, or -1 for all */
    uint64_t seed;
} ct_options_t;

typedef struct {
    weft_comm_t comm;
    int rank;
    int nranks;
    uint64_t seed;
    ct_tally_t tally;
} ct_context_t;

const char *ct_coll_name(ct_coll_t coll);

/* Append every case the options select for nranks ranks; identical on every rank. */
void ct_plan_cases(const ct_options_t *options, int nranks, ct_case_list_t *list);

/* Run one case on this rank: call the collective, check results, guards and inputs. */
void ct_run_case(ct_context_t *context, const ct_case_t *item);

/* Write a one-line description: collective, datatype, op, count, in-place, root. */
void ct_describe_case(const ct_case_t *item, char *text, size_t length);

#endif /* CT_COLL_CHECK_H */
