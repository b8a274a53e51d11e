/*
 * Helpers of the transport unit tests (see transport_harness.h).
 */
#define _GNU_SOURCE
#include "transport_harness.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint8_t harness_pattern_byte(uint32_t seed, size_t i)
{
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ull + seed;
    return (uint8_t)(x >> 29);
}

void harness_fill_pattern(uint8_t *buf, size_t length, uint32_t seed)
{
    for (size_t i = 0; i < length; i++)
        buf[i] = harness_pattern_byte(seed, i);
}

size_t harness_first_mismatch(const uint8_t *buf, size_t length, uint32_t seed)
{
    for (size_t i = 0; i < length; i++)
        if (buf[i] != harness_pattern_byte(seed, i))
            return i;
    return length;
}

int64_t harness_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int harness_write_all(int fd, const void *buf, size_t length)
{
    const char *p = buf;
    while (length > 0) {
        ssize_t n = write(fd, p, length);
        if (n <= 0)
            return -1;
        p += n;
        length -= (size_t)n;
    }
    return 0;
}

int harness_read_all(int fd, void *buf, size_t length)
{
    char *p = buf;
    while (length > 0) {
        ssize_t n = read(fd, p, length);
        if (n <= 0)
            return -1;
        p += n;
        length -= (size_t)n;
    }
    return 0;
}

int harness_wait_xfer(harness_rank_t *h, wf_xfer_t *xfer, const char *operation)
{
    int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
    while (!xfer->done) {
        int rc = h->ops->progress(h->t);
        HARNESS_CHECK(h, rc >= 0, "progress during %s returned %d: %s", operation, rc, h->ops->error_string(h->t));
        HARNESS_CHECK(h, harness_now_ms() < deadline, "%s did not complete within %d s", operation,
                      HARNESS_WAIT_TIMEOUT_SEC);
    }
    HARNESS_CHECK(h, xfer->status == 0, "%s completed with status %d: %s", operation, xfer->status,
                  h->ops->error_string(h->t));
    return 0;
}

int harness_progress_for(harness_rank_t *h, int ms)
{
    int64_t end = harness_now_ms() + ms;
    while (harness_now_ms() < end) {
        int rc = h->ops->progress(h->t);
        HARNESS_CHECK(h, rc >= 0, "progress returned %d: %s", rc, h->ops->error_string(h->t));
    }
    return 0;
}

int harness_barrier(harness_rank_t *h)
{
    char token = 'b';
    HARNESS_CHECK(h, harness_write_all(h->socket, &token, 1) == 0, "barrier write failed: %s", strerror(errno));
    int64_t deadline = harness_now_ms() + HARNESS_WAIT_TIMEOUT_SEC * 1000;
    for (;;) {
        struct pollfd pfd = {.fd = h->socket, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0)
            break;
        int rc = h->ops->progress(h->t);
        HARNESS_CHECK(h, rc >= 0, "progress in barrier returned %d: %s", rc, h->ops->error_string(h->t));
        HARNESS_CHECK(h, harness_now_ms() < deadline, "barrier: peer did not arrive within %d s",
                      HARNESS_WAIT_TIMEOUT_SEC);
    }
    HARNESS_CHECK(h, harness_read_all(h->socket, &token, 1) == 0, "barrier read failed: the peer exited");
    HARNESS_CHECK(h, token == 'b', "barrier read the byte 0x%02x instead of 'b'", (unsigned char)token);
    return 0;
}
