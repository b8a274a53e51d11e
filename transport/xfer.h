/*
 * Pieces that every transport in transport/ needs in the same form. They format their error texts
 * and time their waits with the monotonic clock here. The immediates of remote writes that arrive
 * while a post waits for room are held here until progress() delivers them.
 */
#ifndef WF_XFER_H
#define WF_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

/*
 * snprintf into err, unless err is NULL or errlen is 0. The transports keep their last error and
 * report errors met before an instance exists with it.
 */
void wf_xfer_format(char *err, size_t errlen, const char *format, ...) __attribute__((format(printf, 3, 4)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t wf_xfer_now_ns(void);

/*
 * Immediates in arrival order. A transport calls on_remote_write only from progress() (see
 * transport.h), so an immediate that arrives while a post drains the inbound side waits here.
 */
typedef struct {
    uint32_t *values;
    size_t count;
    size_t capacity;
} wf_held_immediates_t;

/* Append immediate. Returns 0, or -ENOMEM with the queue unchanged. */
int wf_held_immediates_add(wf_held_immediates_t *queue, uint32_t immediate);

/*
 * Call deliver(arg, value) for every held immediate in arrival order and empty the queue. The
 * queue is detached first, so a callback that posts (and holds back more) or calls progress()
 * again never delivers an entry twice. Returns how many immediates left the queue. With deliver NULL
 * they are dropped.
 */
size_t wf_held_immediates_deliver(wf_held_immediates_t *queue, wf_remote_write_fn deliver, void *arg);

void wf_held_immediates_free(wf_held_immediates_t *queue);

#endif /* WF_XFER_H */
