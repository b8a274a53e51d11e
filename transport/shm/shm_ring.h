/*
 * Single-producer single-consumer byte ring in shared memory, without locks.
 *
 * One process appends records and one other process consumes them. The producer owns head and the
 * consumer owns tail, each on its own cache line. Both count bytes since the ring was created, so
 * head - tail is the number of bytes waiting and no position ever wraps in 64 bits. A record is
 * published by a release store of head after its bytes are written, and freed by a release store of
 * tail after its bytes were read. A process that dies in the middle of a record thus leaves nothing
 * half-visible, and owns no lock that the other side could wait for.
 *
 * Records start at 8-byte aligned positions and may run across the end of the data area, so readers
 * copy with wf_shm_ring_read, which handles the wrap. The capacity is a power of two.
 */
#ifndef WF_SHM_RING_H
#define WF_SHM_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WF_SHM_CACHE_LINE 64
#define WF_SHM_RING_ALIGN 8 /* every record starts at a multiple of this */

/* The shared part of a ring: control words, then capacity bytes of data. */
typedef struct {
    _Alignas(WF_SHM_CACHE_LINE) _Atomic uint64_t head; /* bytes published by the producer */
    _Alignas(WF_SHM_CACHE_LINE) _Atomic uint64_t tail; /* bytes released by the consumer */
    _Alignas(WF_SHM_CACHE_LINE) unsigned char data[];
} wf_shm_ring_t;

/*
 * One side's private view of a ring. The capacity is kept here, never re-read from shared memory,
 * so a peer cannot make this process index outside the mapping.
 */
typedef struct {
    wf_shm_ring_t *shared;
    uint64_t capacity; /* bytes of data, a power of two */
    uint64_t position; /* producer: head it will publish next; consumer: tail it will release next */
    uint64_t other;    /* last value read of the other side's counter (producer: tail, consumer: head) */
} wf_shm_ring_end_t;

/* Bytes a ring of capacity data bytes occupies in shared memory, control words included. */
size_t wf_shm_ring_bytes(uint64_t capacity);

/* Record size in the ring for length bytes: rounded up to WF_SHM_RING_ALIGN. */
static inline uint64_t wf_shm_ring_record_bytes(size_t length)
{
    return ((uint64_t)length + WF_SHM_RING_ALIGN - 1) & ~(uint64_t)(WF_SHM_RING_ALIGN - 1);
}

/* Zero the control words of a new ring; only its creator calls this, before any peer maps it. */
void wf_shm_ring_init(wf_shm_ring_t *ring);

/*
 * Attach the producer's or the consumer's private end to a ring of capacity bytes. An end starts
 * where the shared counters stand, so ends attached at different times agree.
 */
void wf_shm_ring_attach_producer(wf_shm_ring_end_t *producer, wf_shm_ring_t *ring, uint64_t capacity);
void wf_shm_ring_attach_consumer(wf_shm_ring_end_t *consumer, wf_shm_ring_t *ring, uint64_t capacity);

/*
 * Producer: append one record made of header (header_length bytes) followed by payload, and
 * publish it. Returns 0, or -EAGAIN when the ring has no room now (nothing is written), or
 * -EMSGSIZE when the record can never fit.
 */
int wf_shm_ring_push(wf_shm_ring_end_t *producer, const void *header, size_t header_length, const void *payload,
                     size_t payload_length);

/* Producer: non-zero when a record of length bytes fits now. */
int wf_shm_ring_fits(wf_shm_ring_end_t *producer, size_t length);

/* Consumer: bytes published and not yet released. */
uint64_t wf_shm_ring_available(wf_shm_ring_end_t *consumer);

/* Consumer: copy length bytes that start offset bytes past the next unreleased byte into out. */
void wf_shm_ring_read(const wf_shm_ring_end_t *consumer, uint64_t offset, void *out, size_t length);

/* Consumer: release the next record of length bytes (its rounded size is released). */
void wf_shm_ring_release(wf_shm_ring_end_t *consumer, size_t length);

#endif /* WF_SHM_RING_H */
