/*
 * uint8 broadcast of fewer bytes than ranks (counts 1 to 7, then 9) from root 3, 0 and n - 1.
 * The root sends 0xA0 + i; every rank must end with byte i = 0xA0 + i for i < count, within 5 s,
 * while the bytes past count keep their fill (0x00 on other ranks, 0xEE on the root).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "coll_util.h"

#define CALL_LIMIT_SECONDS 5.0
#define BUFFER_BYTES 16

static void check_broadcast(ct_tally_t *tally, weft_comm_t comm, int root, size_t count)
{
    char label[80];
    uint8_t expected[BUFFER_BYTES];
    ct_buffer_t buffer;
    int is_root = tally->rank == root;

    snprintf(label, sizeof label, "broadcast root=%d count=%zu", root, count);
    ct_buffer_alloc(&buffer, BUFFER_BYTES);
    for (size_t i = 0; i < BUFFER_BYTES; i++) {
        uint8_t fill = is_root ? 0xEE : 0x00;
        expected[i] = i < count ? (uint8_t)(0xA0 + i) : fill;
        buffer.data[i] = is_root ? expected[i] : 0x00;
    }

    double started = ct_now();
    weft_result_t result = weft_broadcast(buffer.data, count, WEFT_UINT8, root, comm);
    int ok = ct_check_result(tally, comm, result, label);
    ok = ok && ct_check_duration(tally, label, ct_now() - started, CALL_LIMIT_SECONDS);
    ok = ok && ct_compare_elements(tally, label, WEFT_UINT8, buffer.data, expected, BUFFER_BYTES);
    if (ct_buffer_guard_damage(&buffer) != 0) {
        ct_fail(tally, "%s: a guard byte around the buffer changed: the broadcast wrote out of bounds", label);
        ok = 0;
    }
    tally->passed += ok;
    ct_buffer_free(&buffer);
}

int main(void)
{
    weft_comm_t comm;
    ct_tally_t tally;

    ct_start("broadcast_fewer_elements_than_ranks", &comm, &tally);
    static const size_t counts[] = {1, 2, 3, 4, 5, 6, 7, 9};
    int roots[3] = {3, 0, tally.nranks - 1};
    for (int r = 0; r < 3; r++) {
        if (roots[r] >= tally.nranks || (r == 2 && (roots[2] == 0 || roots[2] == 3)))
            continue; /* root 3 needs 4 ranks; n - 1 only when it is a new root */
        for (size_t c = 0; c < sizeof counts / sizeof counts[0] && !tally.broken; c++)
            check_broadcast(&tally, comm, roots[r], counts[c]);
    }
    return ct_finish(&tally, comm);
}
