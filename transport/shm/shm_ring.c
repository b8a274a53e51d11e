/*
 * The lock-free single-producer single-consumer ring of the shm transport (see shm_ring.h).
 */
#include "shm_ring.h"

#include <errno.h>
#include <string.h>

size_t wf_shm_ring_bytes(uint64_t capacity)
{
    return offsetof(wf_shm_ring_t, data) + (size_t)capacity;
}

void wf_shm_ring_init(wf_shm_ring_t *ring)
{
    atomic_store_explicit(&ring->head, 0, memory_order_relaxed);
    atomic_store_explicit(&ring->tail, 0, memory_order_relaxed);
}

void wf_shm_ring_attach_producer(wf_shm_ring_end_t *producer, wf_shm_ring_t *ring, uint64_t capacity)
{
    producer->shared = ring;
    producer->capacity = capacity;
    producer->position = atomic_load_explicit(&ring->head, memory_order_acquire);
    producer->other = atomic_load_explicit(&ring->tail, memory_order_acquire);
}

void wf_shm_ring_attach_consumer(wf_shm_ring_end_t *consumer, wf_shm_ring_t *ring, uint64_t capacity)
{
    consumer->shared = ring;
    consumer->capacity = capacity;
    consumer->position = atomic_load_explicit(&ring->tail, memory_order_acquire);
    consumer->other = atomic_load_explicit(&ring->head, memory_order_acquire);
}

/* Copy length bytes to ring position at, wrapping at the end of the data area. */
static void copy_in(const wf_shm_ring_end_t *end, uint64_t at, const void *from, size_t length)
{
    uint64_t start = at & (end->capacity - 1);
    size_t first = (size_t)(end->capacity - start);
    if (first > length)
        first = length;
    memcpy(end->shared->data + start, from, first);
    if (length > first)
        memcpy(end->shared->data, (const unsigned char *)from + first, length - first);
}

int wf_shm_ring_fits(wf_shm_ring_end_t *producer, size_t length)
{
    uint64_t needed = wf_shm_ring_record_bytes(length);
    if (producer->position + needed - producer->other <= producer->capacity)
        return 1;
    /* The cached tail is stale: read the consumer's counter once more. */
    producer->other = atomic_load_explicit(&producer->shared->tail, memory_order_acquire);
    return producer->position + needed - producer->other <= producer->capacity;
}

int wf_shm_ring_push(wf_shm_ring_end_t *producer, const void *header, size_t header_length, const void *payload,
                     size_t payload_length)
{
    size_t length = header_length + payload_length;
    if (wf_shm_ring_record_bytes(length) > producer->capacity)
        return -EMSGSIZE;
    if (!wf_shm_ring_fits(producer, length))
        return -EAGAIN;
    copy_in(producer, producer->position, header, header_length);
    if (payload_length > 0)
        copy_in(producer, producer->position + header_length, payload, payload_length);
    producer->position += wf_shm_ring_record_bytes(length);
    /* Release: the record's bytes become visible no later than the new head. */
    atomic_store_explicit(&producer->shared->head, producer->position, memory_order_release);
    return 0;
}

uint64_t wf_shm_ring_available(wf_shm_ring_end_t *consumer)
{
    consumer->other = atomic_load_explicit(&consumer->shared->head, memory_order_acquire);
    return consumer->other - consumer->position;
}

void wf_shm_ring_read(const wf_shm_ring_end_t *consumer, uint64_t offset, void *out, size_t length)
{
    uint64_t start = (consumer->position + offset) & (consumer->capacity - 1);
    size_t first = (size_t)(consumer->capacity - start);
    if (first > length)
        first = length;
    memcpy(out, consumer->shared->data + start, first);
    if (length > first)
        memcpy((unsigned char *)out + first, consumer->shared->data, length - first);
}

void wf_shm_ring_release(wf_shm_ring_end_t *consumer, size_t length)
{
    consumer->position += wf_shm_ring_record_bytes(length);
    /* Release: this side's reads of the record happen before the producer may overwrite it. */
    atomic_store_explicit(&consumer->shared->tail, consumer->position, memory_order_release);
}
