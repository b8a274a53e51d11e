/*
 * Every collective with count 0 succeeds on every rank within 5 s: first with NULL buffers, then
 * with real buffers, which must stay untouched. A count-1 all-reduce afterwards proves that the
 * zero-count calls left no stray message behind that a later collective could match.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coll_util.h"

#define ZERO_COUNT_LIMIT_SECONDS 5.0
#define SENTINEL_COUNT 4

typedef struct {
    ct_tally_t *tally;
    weft_comm_t comm;
    int root;
} session_t;

static void expect_success(session_t *session, const char *label, weft_result_t result, double started)
{
    if (ct_check_result(session->tally, session->comm, result, label) &&
        ct_check_duration(session->tally, label, ct_now() - started, ZERO_COUNT_LIMIT_SECONDS))
        session->tally->passed++;
}

static void run_with_null_buffers(session_t *session)
{
    double started = ct_now();
    expect_success(session, "allgather count=0 NULL buffers",
                   weft_allgather(NULL, NULL, 0, WEFT_INT32, session->comm), started);
    started = ct_now();
    expect_success(session, "allreduce sum count=0 NULL buffers",
                   weft_allreduce(NULL, NULL, 0, WEFT_INT32, WEFT_SUM, session->comm), started);
    started = ct_now();
    expect_success(session, "reduce_scatter sum count=0 NULL buffers",
                   weft_reduce_scatter(NULL, NULL, 0, WEFT_INT32, WEFT_SUM, session->comm), started);
    started = ct_now();
    expect_success(session, "broadcast count=0 NULL buffer",
                   weft_broadcast(NULL, 0, WEFT_INT32, session->root, session->comm), started);
    started = ct_now();
    expect_success(session, "barrier", weft_barrier(session->comm), started);
}

/* Real buffers of SENTINEL_COUNT elements each; count 0 must write none of them. */
static void run_with_buffers(session_t *session)
{
    int32_t send[SENTINEL_COUNT], recv[SENTINEL_COUNT], sentinel[SENTINEL_COUNT];
    for (int i = 0; i < SENTINEL_COUNT; i++)
        sentinel[i] = 0x5a5a0000 + i;
    memcpy(send, sentinel, sizeof send);
    memcpy(recv, sentinel, sizeof recv);

    double started = ct_now();
    expect_success(session, "allgather count=0", weft_allgather(send, recv, 0, WEFT_INT32, session->comm), started);
    started = ct_now();
    expect_success(session, "allreduce sum count=0",
                   weft_allreduce(send, recv, 0, WEFT_INT32, WEFT_SUM, session->comm), started);
    started = ct_now();
    expect_success(session, "reduce_scatter sum count=0",
                   weft_reduce_scatter(send, recv, 0, WEFT_INT32, WEFT_SUM, session->comm), started);
    started = ct_now();
    expect_success(session, "broadcast count=0", weft_broadcast(recv, 0, WEFT_INT32, session->root, session->comm),
                   started);
    if (session->tally->broken)
        return;
    if (ct_compare_elements(session->tally, "send buffer after count=0 calls", WEFT_INT32, send, sentinel,
                            SENTINEL_COUNT))
        session->tally->passed++;
    if (ct_compare_elements(session->tally, "receive buffer after count=0 calls", WEFT_INT32, recv, sentinel,
                            SENTINEL_COUNT))
        session->tally->passed++;
}

static void run_count_one_after(session_t *session)
{
    int32_t value = session->tally->rank + 1;
    int32_t expected = session->tally->nranks * (session->tally->nranks + 1) / 2;
    const char *label = "allreduce sum count=1 after the count=0 calls";

    if (session->tally->broken)
        return;
    weft_result_t result = weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, session->comm);
    if (ct_check_result(session->tally, session->comm, result, label) &&
        ct_compare_elements(session->tally, label, WEFT_INT32, &value, &expected, 1))
        session->tally->passed++;
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;

    ct_start("zero_count_collectives", &comm, &tally);
    /* Root 2 as in the field report, or the last rank when there are fewer than 3. */
    session_t session = {&tally, comm, tally.nranks > 2 ? 2 : tally.nranks - 1};
    run_with_null_buffers(&session);
    if (!tally.broken)
        run_with_buffers(&session);
    run_count_one_after(&session);
    return ct_finish(&tally, comm);
}
