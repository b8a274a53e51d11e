/*
 * Non-blocking collectives: results, ordering, many outstanding requests, and argument errors.
 *
 * - In-place float64 all-reduce of 2 elements (fewer than ranks), input [r, r == 0 ? 0 : 1/r]:
 *   element 0 is n(n-1)/2 exactly, element 1 the harmonic sum 1 + ... + 1/(n-1) within 2 ulp of a
 *   reference summed here in rank order, bitwise the same on every rank; non-blocking and blocking.
 * - A blocking all-reduce B issued while a non-blocking A is outstanding: A = n, B = 10n.
 * - 2000 outstanding int32 all-reduces, waited on in reverse order, one per value r + i.
 * - One of each non-blocking collective in flight at once, sizes on both sides of the eager limit,
 *   completed by polling weft_test on the last one and then waiting on all in a shuffled order.
 * - NULL request, NULL to test/wait, bad datatype: WEFT_ERR_INVALID_ARGUMENT, comm still usable.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

#define MANY 2000
#define BIG 100003 /* elements: above the default 32 KiB eager limit for int32 */

/* Distance in units in the last place between two finite doubles of the same sign. */
static uint64_t ulp_distance(double a, double b)
{
    int64_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x > y ? (uint64_t)(x - y) : (uint64_t)(y - x);
}

static void check_small_inplace(ct_tally_t *t, weft_comm_t comm, int nonblocking)
{
    int r = t->rank, n = t->nranks;
    const char *label = nonblocking ? "iallreduce float64 count 2 in place" : "allreduce float64 count 2 in place";
    double v[2] = {r, r == 0 ? 0.0 : 1.0 / r};
    weft_result_t result;
    if (nonblocking) {
        weft_request_t request = NULL;
        result = weft_iallreduce(v, v, 2, WEFT_FLOAT64, WEFT_SUM, comm, &request);
        if (result == WEFT_SUCCESS)
            result = weft_wait(request);
    } else {
        result = weft_allreduce(v, v, 2, WEFT_FLOAT64, WEFT_SUM, comm);
    }
    if (!ct_check_result(t, comm, result, label))
        return;
    double harmonic = 0.0;
    for (int k = 1; k < n; k++)
        harmonic += 1.0 / k;
    double first = (double)n * (n - 1) / 2.0;
    if (v[0] != first)
        ct_fail(t, "%s: element 0 is %.17g, expected %.17g", label, v[0], first);
    else if (ulp_distance(v[1], harmonic) > 2)
        ct_fail(t, "%s: element 1 is %.17g, expected %.17g within 2 ulp", label, v[1], harmonic);
    else
        t->passed++;

    /* Bitwise the same everywhere: gather every rank's two results and compare them with ours. */
    double *all = malloc((size_t)n * 2 * sizeof(double));
    if (ct_check_result(t, comm, weft_allgather(v, all, 2, WEFT_FLOAT64, comm), "allgather of results")) {
        int differ = -1;
        for (int k = 0; k < n && differ < 0; k++)
            if (memcmp(&all[2 * k], v, sizeof v) != 0)
                differ = k;
        if (differ >= 0)
            ct_fail(t, "%s: rank %d holds [%.17g, %.17g], this rank [%.17g, %.17g]", label, differ, all[2 * differ],
                    all[2 * differ + 1], v[0], v[1]);
        else
            t->passed++;
    }
    free(all);
}

static void check_blocking_while_outstanding(ct_tally_t *t, weft_comm_t comm)
{
    int n = t->nranks;
    int32_t a = 1, b = 10;
    weft_request_t request = NULL;
    if (!ct_check_result(t, comm, weft_iallreduce(&a, &a, 1, WEFT_INT32, WEFT_SUM, comm, &request), "start A"))
        return;
    int ok = ct_check_result(t, comm, weft_allreduce(&b, &b, 1, WEFT_INT32, WEFT_SUM, comm), "blocking B");
    ok = ct_check_result(t, comm, weft_wait(request), "wait A") && ok;
    if (!ok)
        return;
    if (a != n || b != 10 * n)
        ct_fail(t, "blocking B inside non-blocking A: A = %d (expected %d), B = %d (expected %d)", a, n, b, 10 * n);
    else
        t->passed++;
}

static void check_many_outstanding(ct_tally_t *t, weft_comm_t comm)
{
    int r = t->rank, n = t->nranks;
    int32_t *values = malloc(MANY * sizeof(int32_t));
    weft_request_t *requests = calloc(MANY, sizeof(weft_request_t));
    int issued = 0, wrong = -1;
    for (; issued < MANY; issued++) {
        values[issued] = r + issued;
        if (!ct_check_result(t, comm, weft_iallreduce(&values[issued], &values[issued], 1, WEFT_INT32, WEFT_SUM, comm,
                                                      &requests[issued]), "start one of many"))
            break;
    }
    for (int i = issued - 1; i >= 0; i--) {
        if (!ct_check_result(t, comm, weft_wait(requests[i]), "wait one of many"))
            break;
        if (values[i] != n * (n - 1) / 2 + n * i && wrong < 0)
            wrong = i;
    }
    if (wrong >= 0)
        ct_fail(t, "%d outstanding all-reduces: request %d gave %d, expected %d", MANY, wrong, values[wrong],
                n * (n - 1) / 2 + n * wrong);
    else if (issued == MANY)
        t->passed++;
    free(values);
    free(requests);
}

typedef struct {
    int32_t *allreduce;  /* BIG elements */
    int32_t *gathered;   /* BIG elements, BIG / n per rank */
    int32_t *scatter_in; /* n * 11 */
    int32_t scatter_out[11];
    uint8_t *broadcast;  /* 70000 */
    int32_t *gatherv;    /* sum of r + 1 */
    size_t *counts, *displs;
} mixed_t;

#define SCATTER 11
#define BROADCAST_BYTES 70000

static void fill_mixed(mixed_t *m, int r, int n)
{
    size_t per_rank = BIG / (size_t)n;
    m->allreduce = malloc(BIG * sizeof(int32_t));
    m->gathered = calloc(per_rank * (size_t)n, sizeof(int32_t));
    m->scatter_in = malloc((size_t)n * SCATTER * sizeof(int32_t));
    m->broadcast = malloc(BROADCAST_BYTES);
    m->counts = malloc((size_t)n * sizeof(size_t));
    m->displs = malloc((size_t)n * sizeof(size_t));
    size_t total = 0;
    for (int q = n - 1; q >= 0; q--) { /* displacements in reverse rank order */
        m->counts[q] = (size_t)q + 1;
        m->displs[q] = total;
        total += m->counts[q];
    }
    m->gatherv = calloc(total, sizeof(int32_t));
    for (size_t i = 0; i < BIG; i++)
        m->allreduce[i] = (r + 1) * (int32_t)(i % 13 + 1);
    for (size_t i = 0; i < per_rank; i++)
        m->gathered[(size_t)r * per_rank + i] = r * 100000 + (int32_t)i; /* in place */
    for (int i = 0; i < n * SCATTER; i++)
        m->scatter_in[i] = r + i;
    for (size_t i = 0; i < BROADCAST_BYTES; i++)
        m->broadcast[i] = r == n - 1 ? (uint8_t)(i * 7 + 3) : 0;
    for (size_t j = 0; j < m->counts[r]; j++)
        m->gatherv[m->displs[r] + j] = 1000 * r + (int32_t)j;
}

static int check_mixed(ct_tally_t *t, const mixed_t *m)
{
    int r = t->rank, n = t->nranks;
    size_t per_rank = BIG / (size_t)n;
    for (size_t i = 0; i < BIG; i++)
        if (m->allreduce[i] != n * (n + 1) / 2 * (int32_t)(i % 13 + 1))
            return ct_fail(t, "mixed: iallreduce element %zu is %d", i, m->allreduce[i]), 0;
    for (size_t i = 0; i < per_rank * (size_t)n; i++)
        if (m->gathered[i] != (int32_t)(i / per_rank) * 100000 + (int32_t)(i % per_rank))
            return ct_fail(t, "mixed: iallgather element %zu is %d", i, m->gathered[i]), 0;
    for (int j = 0; j < SCATTER; j++)
        if (m->scatter_out[j] != n * (n - 1) / 2 + n * (r * SCATTER + j))
            return ct_fail(t, "mixed: ireduce_scatter element %d is %d", j, m->scatter_out[j]), 0;
    for (size_t i = 0; i < BROADCAST_BYTES; i++)
        if (m->broadcast[i] != (uint8_t)(i * 7 + 3))
            return ct_fail(t, "mixed: ibroadcast byte %zu is %u", i, m->broadcast[i]), 0;
    for (int q = 0; q < n; q++)
        for (size_t j = 0; j < m->counts[q]; j++)
            if (m->gatherv[m->displs[q] + j] != 1000 * q + (int32_t)j)
                return ct_fail(t, "mixed: iallgatherv element %zu of rank %d is %d", j, q, m->gatherv[m->displs[q] + j]),
                       0;
    return 1;
}

static void check_mixed_in_flight(ct_tally_t *t, weft_comm_t comm)
{
    int r = t->rank, n = t->nranks;
    mixed_t m;
    fill_mixed(&m, r, n);
    size_t per_rank = BIG / (size_t)n;
    weft_request_t q[6] = {0};
    weft_result_t started[6] = {
        weft_iallreduce(m.allreduce, m.allreduce, BIG, WEFT_INT32, WEFT_SUM, comm, &q[0]),
        weft_iallgather(m.gathered + (size_t)r * per_rank, m.gathered, per_rank, WEFT_INT32, comm, &q[1]),
        weft_ireduce_scatter(m.scatter_in, m.scatter_out, SCATTER, WEFT_INT32, WEFT_SUM, comm, &q[2]),
        weft_ibroadcast(m.broadcast, BROADCAST_BYTES, WEFT_UINT8, n - 1, comm, &q[3]),
        weft_ibarrier(comm, &q[4]),
        weft_iallgatherv(m.gatherv + m.displs[r], m.counts[r], m.gatherv, m.counts, m.displs, WEFT_INT32, comm, &q[5]),
    };
    /* The arrays were copied: scribbling on them now must not matter. */
    memset(m.counts, 0xff, (size_t)n * sizeof(size_t));
    int ok = 1;
    for (int k = 0; k < 6; k++)
        ok = ct_check_result(t, comm, started[k], "start of a mixed request") && ok;
    if (!ok)
        return;

    double begin = ct_now();
    weft_result_t polled;
    while ((polled = weft_test(q[5])) == WEFT_IN_PROGRESS && ct_now() - begin < 60.0)
        ;
    ok = ct_check_result(t, comm, polled, "weft_test of the last mixed request");
    static const int order[6] = {3, 0, 5, 1, 4, 2};
    for (int k = 0; k < 6; k++)
        ok = ct_check_result(t, comm, weft_wait(q[order[k]]), "wait of a mixed request") && ok;
    for (int k = 0; k < n; k++)
        m.counts[k] = (size_t)k + 1;
    if (ok && check_mixed(t, &m))
        t->passed++;
    free(m.allreduce), free(m.gathered), free(m.scatter_in), free(m.broadcast), free(m.gatherv);
    free(m.counts), free(m.displs);
}

static void expect_invalid(ct_tally_t *t, weft_result_t result, const char *what)
{
    if (result != WEFT_ERR_INVALID_ARGUMENT)
        ct_fail(t, "%s returned %s, expected WEFT_ERR_INVALID_ARGUMENT", what, weft_result_string(result));
    else
        t->passed++;
}

static void check_invalid_arguments(ct_tally_t *t, weft_comm_t comm)
{
    int32_t v = 1;
    weft_request_t request = (weft_request_t)&v; /* must be overwritten with NULL */
    expect_invalid(t, weft_iallreduce(&v, &v, 1, WEFT_INT32, WEFT_SUM, comm, NULL), "weft_iallreduce with request NULL");
    expect_invalid(t, weft_iallreduce(&v, &v, 1, (weft_datatype_t)99, WEFT_SUM, comm, &request),
                   "weft_iallreduce with datatype 99");
    if (request != NULL)
        ct_fail(t, "weft_iallreduce with datatype 99 left *request non-NULL");
    if (strstr(weft_comm_last_error(comm), "99") == NULL)
        ct_fail(t, "the message for datatype 99 does not name the value: %s", weft_comm_last_error(comm));
    expect_invalid(t, weft_ibroadcast(&v, 1, WEFT_INT32, t->nranks, comm, &request), "weft_ibroadcast with root n");
    expect_invalid(t, weft_test(NULL), "weft_test(NULL)");
    expect_invalid(t, weft_wait(NULL), "weft_wait(NULL)");
    /* Still usable. */
    weft_request_t ok_request;
    if (ct_check_result(t, comm, weft_ibarrier(comm, &ok_request), "ibarrier after invalid arguments"))
        ct_check_result(t, comm, weft_wait(ok_request), "wait of the ibarrier");
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("nonblocking_collectives", &comm, &tally);
    check_invalid_arguments(&tally, comm);
    if (!tally.broken)
        check_small_inplace(&tally, comm, 1);
    if (!tally.broken)
        check_small_inplace(&tally, comm, 0);
    if (!tally.broken)
        check_blocking_while_outstanding(&tally, comm);
    if (!tally.broken)
        check_many_outstanding(&tally, comm);
    if (!tally.broken)
        check_mixed_in_flight(&tally, comm);
    return ct_finish(&tally, comm);
}
