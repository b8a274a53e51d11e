/*
 * float32 all-reduce avg on any rank count, in particular counts that are not powers of two.
 * Rank r contributes r + 1 in every element, so every element must be (n + 1) / 2 exactly: 8.0
 * for 15 ranks, 14.5 for 28. The sum n(n + 1)/2 and the mean are exact in float32 for any rank
 * count this test runs with, so the result must match bit for bit on every rank.
 */
#include <stdio.h>

#include "coll_util.h"

/* 1000 spans more than one ring step per rank even at 28 ranks. */
static const size_t counts[] = {1, 15, 1000};

static void check_avg(ct_tally_t *tally, weft_comm_t comm, size_t count, int in_place)
{
    char label[96];
    ct_buffer_t send, recv;
    float expected[1000];
    float value = (float)(tally->rank + 1);

    snprintf(label, sizeof label, "allreduce avg count=%zu %s", count, in_place ? "in-place" : "out-of-place");
    ct_buffer_alloc(&send, in_place ? 0 : count * sizeof(float));
    ct_buffer_alloc(&recv, count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        if (!in_place)
            ((float *)send.data)[i] = value;
        ((float *)recv.data)[i] = in_place ? value : -1.0f;
        expected[i] = (float)(tally->nranks + 1) / 2.0f;
    }

    double started = ct_now();
    const void *source = in_place ? recv.data : send.data;
    weft_result_t result = weft_allreduce(source, recv.data, count, WEFT_FLOAT32, WEFT_AVG, comm);
    int ok = ct_check_result(tally, comm, result, label);
    ok = ok && ct_check_duration(tally, label, ct_now() - started, 10.0);
    ok = ok && ct_compare_elements(tally, label, WEFT_FLOAT32, recv.data, expected, count);
    if (ct_buffer_guard_damage(&recv) != 0 || ct_buffer_guard_damage(&send) != 0) {
        ct_fail(tally, "%s: a guard byte around a buffer changed", label);
        ok = 0;
    }
    tally->passed += ok;
    ct_buffer_free(&send);
    ct_buffer_free(&recv);
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;

    ct_start("avg_non_power_of_two", &comm, &tally);
    for (size_t c = 0; c < sizeof counts / sizeof counts[0] && !tally.broken; c++) {
        check_avg(&tally, comm, counts[c], 0);
        if (!tally.broken)
            check_avg(&tally, comm, counts[c], 1);
    }
    return ct_finish(&tally, comm);
}
