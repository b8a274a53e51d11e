/*
 * Helpers of the transport unit tests (test_shm_transport.c, test_ofi_transport.c and
 * test_verbs_transport.c), which fork two ranks that talk over a socketpair besides the transport
 * under test: the data pattern, the socket I/O, and waits that keep the transport progressing.
 */
#ifndef WF_TRANSPORT_HARNESS_H
#define WF_TRANSPORT_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "transport.h"

#define HARNESS_WAIT_TIMEOUT_SEC 20 /* maximum wait for a transfer, a peer or a barrier, in seconds */

/* What the waits need of a forked rank. */
typedef struct {
    int rank;
    int socket;                    /* this rank's end of the socketpair */
    const wf_transport_ops_t *ops;
    wf_transport_t *t;
    const char *label;             /* printed after the rank in failed checks, e.g. the provider */
} harness_rank_t;

/* Print a failed check with the rank, its label and the harness line, and return -1. */
#define HARNESS_CHECK(h, cond, ...)                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d (%s) %s:%d: check failed: %s: ", (h)->rank, (h)->label,       \
                    __FILE__, __LINE__, #cond);                                                    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* Byte i of the test pattern for seed; receivers recompute it instead of copying the sender's. */
uint8_t harness_pattern_byte(uint32_t seed, size_t i);
void harness_fill_pattern(uint8_t *buf, size_t length, uint32_t seed);
/* Index of the first byte of buf that differs from the pattern, or length. */
size_t harness_first_mismatch(const uint8_t *buf, size_t length, uint32_t seed);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t harness_now_ms(void);

/* Write or read exactly length bytes. Returns 0, or -1 when the peer closed or the call failed. */
int harness_write_all(int fd, const void *buf, size_t length);
int harness_read_all(int fd, void *buf, size_t length);

/* Progress until xfer is done with status 0. Fails on a progress error or after the timeout. */
int harness_wait_xfer(harness_rank_t *h, wf_xfer_t *xfer, const char *operation);

/* Keep progressing for ms milliseconds, so that messages sent to this rank arrive unexpected. */
int harness_progress_for(harness_rank_t *h, int ms);

/* Barrier over the socket that keeps progressing, since the peer may need this rank's progress. */
int harness_barrier(harness_rank_t *h);

#endif /* WF_TRANSPORT_HARNESS_H */
