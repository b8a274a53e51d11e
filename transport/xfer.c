/*
 * Completion helpers shared by the transports (see xfer.h).
 */
#include "xfer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void wf_xfer_format(char *err, size_t errlen, const char *format, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, errlen, format, args);
    va_end(args);
}

uint64_t wf_xfer_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

int wf_held_immediates_add(wf_held_immediates_t *queue, uint32_t immediate)
{
    if (queue->count == queue->capacity) {
        size_t capacity = queue->capacity > 0 ? 2 * queue->capacity : 64;
        uint32_t *grown = realloc(queue->values, capacity * sizeof(*grown));
        if (grown == NULL)
            return -ENOMEM;
        queue->values = grown;
        queue->capacity = capacity;
    }
    queue->values[queue->count++] = immediate;
    return 0;
}

size_t wf_held_immediates_deliver(wf_held_immediates_t *queue, wf_remote_write_fn deliver, void *arg)
{
    size_t delivered = 0;
    while (queue->count > 0) {
        wf_held_immediates_t batch = *queue;
        *queue = (wf_held_immediates_t){0};
        for (size_t i = 0; i < batch.count; i++) {
            if (deliver != NULL)
                deliver(arg, batch.values[i]);
            delivered++;
        }
        /* Keep the batch's array for reuse unless a callback started a new one. */
        if (queue->values == NULL) {
            queue->values = batch.values;
            queue->capacity = batch.capacity;
        } else {
            free(batch.values);
        }
    }
    return delivered;
}

void wf_held_immediates_free(wf_held_immediates_t *queue)
{
    free(queue->values);
    *queue = (wf_held_immediates_t){0};
}
