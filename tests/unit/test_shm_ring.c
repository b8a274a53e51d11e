/*
 * Tests of the shm transport's single-producer single-consumer ring (transport/shm/shm_ring.c):
 * records across the end of the data area, a full ring, order and content over many sizes, and
 * a producer and a consumer on two threads.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shm/shm_ring.h"

#define CAPACITY 4096u
#define THREAD_RECORDS 200000u

/* Header of the test's records: a sequence number and the payload length. */
typedef struct {
    uint64_t sequence;
    uint32_t length;
    uint32_t reserved;
} record_header_t;

typedef struct {
    wf_shm_ring_t *ring;
    wf_shm_ring_end_t producer, consumer;
} ring_fixture_t;

static uint8_t pattern_byte(uint64_t sequence, size_t i)
{
    return (uint8_t)((sequence * 131u + i * 7u) ^ (i >> 8));
}

static int setup_ring(void **state)
{
    ring_fixture_t *fixture = calloc(1, sizeof(*fixture));
    assert_non_null(fixture);
    fixture->ring = aligned_alloc(WF_SHM_CACHE_LINE, wf_shm_ring_bytes(CAPACITY));
    assert_non_null(fixture->ring);
    memset(fixture->ring, 0xee, wf_shm_ring_bytes(CAPACITY)); /* init must not rely on zeroed memory */
    wf_shm_ring_init(fixture->ring);
    wf_shm_ring_attach_producer(&fixture->producer, fixture->ring, CAPACITY);
    wf_shm_ring_attach_consumer(&fixture->consumer, fixture->ring, CAPACITY);
    *state = fixture;
    return 0;
}

static int teardown_ring(void **state)
{
    ring_fixture_t *fixture = *state;
    free(fixture->ring);
    free(fixture);
    return 0;
}

/* Push one record of length payload bytes with the pattern of sequence; returns the ring's result. */
static int push_record(wf_shm_ring_end_t *producer, uint64_t sequence, size_t length)
{
    static uint8_t payload[CAPACITY];
    for (size_t i = 0; i < length; i++)
        payload[i] = pattern_byte(sequence, i);
    record_header_t header = {sequence, (uint32_t)length, 0};
    return wf_shm_ring_push(producer, &header, sizeof(header), payload, length);
}

/* Read the next record, check its sequence, length and every payload byte, and release it. */
static void pop_record(wf_shm_ring_end_t *consumer, uint64_t sequence, size_t length)
{
    static uint8_t payload[CAPACITY];
    record_header_t header;
    assert_true(wf_shm_ring_available(consumer) >= wf_shm_ring_record_bytes(sizeof(header) + length));
    wf_shm_ring_read(consumer, 0, &header, sizeof(header));
    assert_int_equal(header.sequence, sequence);
    assert_int_equal(header.length, length);
    wf_shm_ring_read(consumer, sizeof(header), payload, length);
    for (size_t i = 0; i < length; i++)
        if (payload[i] != pattern_byte(sequence, i))
            fail_msg("record %llu of %zu bytes: byte %zu is 0x%02x, expected 0x%02x", (unsigned long long)sequence,
                     length, i, payload[i], pattern_byte(sequence, i));
    wf_shm_ring_release(consumer, sizeof(header) + length);
}

static void test_ring_empty_then_one_record(void **state)
{
    ring_fixture_t *fixture = *state;
    assert_int_equal(wf_shm_ring_available(&fixture->consumer), 0);
    assert_int_equal(push_record(&fixture->producer, 1, 5), 0);
    /* 16-byte header plus 5 bytes, rounded up to 8. */
    assert_int_equal(wf_shm_ring_available(&fixture->consumer), 24);
    pop_record(&fixture->consumer, 1, 5);
    assert_int_equal(wf_shm_ring_available(&fixture->consumer), 0);
    assert_int_equal(atomic_load(&fixture->ring->tail), 24);
    assert_int_equal(atomic_load(&fixture->ring->head), 24);
}

static void test_ring_record_across_end(void **state)
{
    ring_fixture_t *fixture = *state;
    /* 3 records of 1000 payload bytes (1016 in the ring) leave the next one straddling the end. */
    for (uint64_t sequence = 0; sequence < 3; sequence++) {
        assert_int_equal(push_record(&fixture->producer, sequence, 1000), 0);
        pop_record(&fixture->consumer, sequence, 1000);
    }
    uint64_t start = atomic_load(&fixture->ring->head) % CAPACITY;
    assert_int_equal(start, 3048);
    assert_int_equal(push_record(&fixture->producer, 3, 2000), 0);
    assert_true(start + 16 + 2000 > CAPACITY); /* the record wrapped */
    pop_record(&fixture->consumer, 3, 2000);

    /* A header split by the end: place the next record 8 bytes before it. */
    uint64_t position = atomic_load(&fixture->ring->head);
    size_t filler = (size_t)(CAPACITY - position % CAPACITY) - 8 - 16;
    assert_int_equal(push_record(&fixture->producer, 4, filler), 0);
    pop_record(&fixture->consumer, 4, filler);
    assert_int_equal(atomic_load(&fixture->ring->head) % CAPACITY, CAPACITY - 8);
    assert_int_equal(push_record(&fixture->producer, 5, 100), 0);
    pop_record(&fixture->consumer, 5, 100);
}

static void test_ring_full(void **state)
{
    ring_fixture_t *fixture = *state;
    /* Records of 16 + 112 = 128 bytes: exactly 32 fit in 4096. */
    uint64_t pushed = 0;
    while (push_record(&fixture->producer, pushed, 112) == 0)
        pushed++;
    assert_int_equal(pushed, CAPACITY / 128);
    assert_int_equal(push_record(&fixture->producer, pushed, 112), -EAGAIN);
    assert_false(wf_shm_ring_fits(&fixture->producer, 1));
    assert_int_equal(push_record(&fixture->producer, pushed, 0), -EAGAIN);

    pop_record(&fixture->consumer, 0, 112);
    assert_true(wf_shm_ring_fits(&fixture->producer, 128));
    assert_false(wf_shm_ring_fits(&fixture->producer, 129));
    assert_int_equal(push_record(&fixture->producer, pushed, 112), 0);
    assert_int_equal(push_record(&fixture->producer, pushed + 1, 0), -EAGAIN);
    for (uint64_t sequence = 1; sequence <= pushed; sequence++)
        pop_record(&fixture->consumer, sequence, 112);
    assert_int_equal(wf_shm_ring_available(&fixture->consumer), 0);
}

static void test_ring_oversized_record(void **state)
{
    ring_fixture_t *fixture = *state;
    assert_int_equal(push_record(&fixture->producer, 0, CAPACITY - 16 + 1), -EMSGSIZE);
    /* A record of exactly the capacity fits an empty ring, and only then. */
    assert_int_equal(push_record(&fixture->producer, 0, CAPACITY - 16), 0);
    assert_int_equal(push_record(&fixture->producer, 1, 0), -EAGAIN);
    pop_record(&fixture->consumer, 0, CAPACITY - 16);
    assert_int_equal(push_record(&fixture->producer, 1, 0), 0);
    pop_record(&fixture->consumer, 1, 0);
}

/* Pseudo-random sizes from 0 to 1500 bytes, produced and consumed in irregular batches. */
static void test_ring_order_many_sizes(void **state)
{
    ring_fixture_t *fixture = *state;
    uint64_t random = 0x2545F4914F6CDD1Dull;
    uint64_t produced = 0, consumed = 0;
    size_t lengths[64];
    while (consumed < 20000) {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        unsigned batch = 1 + (unsigned)(random % 7);
        for (unsigned i = 0; i < batch && produced - consumed < 64; i++) {
            size_t length = (size_t)((random >> (8 + i * 5)) % 1501);
            if (push_record(&fixture->producer, produced, length) != 0)
                break;
            lengths[produced % 64] = length;
            produced++;
        }
        unsigned drain = (unsigned)((random >> 40) % 6);
        for (unsigned i = 0; i < drain && consumed < produced; i++, consumed++)
            pop_record(&fixture->consumer, consumed, lengths[consumed % 64]);
    }
    /* Many laps: counters far past the capacity, and nothing left behind. */
    assert_true(atomic_load(&fixture->ring->head) > 1000u * CAPACITY);
    while (consumed < produced) {
        pop_record(&fixture->consumer, consumed, lengths[consumed % 64]);
        consumed++;
    }
    assert_int_equal(wf_shm_ring_available(&fixture->consumer), 0);
}

/* An end attached while the counters are far from zero starts where they stand. */
static void test_ring_late_attach(void **state)
{
    ring_fixture_t *fixture = *state;
    for (uint64_t sequence = 0; sequence < 100; sequence++) {
        assert_int_equal(push_record(&fixture->producer, sequence, 300), 0);
        pop_record(&fixture->consumer, sequence, 300);
    }
    assert_int_equal(push_record(&fixture->producer, 100, 40), 0);
    wf_shm_ring_end_t producer, consumer;
    wf_shm_ring_attach_producer(&producer, fixture->ring, CAPACITY);
    wf_shm_ring_attach_consumer(&consumer, fixture->ring, CAPACITY);
    assert_int_equal(push_record(&producer, 101, 41), 0);
    pop_record(&consumer, 100, 40);
    pop_record(&consumer, 101, 41);
}

typedef struct {
    wf_shm_ring_end_t *end;
    uint64_t failures;
} thread_arg_t;

static void *produce(void *arg)
{
    thread_arg_t *thread = arg;
    for (uint64_t sequence = 0; sequence < THREAD_RECORDS; sequence++) {
        size_t length = (size_t)(sequence * 37 % 700);
        while (push_record(thread->end, sequence, length) == -EAGAIN)
            continue;
    }
    return NULL;
}

static void *consume(void *arg)
{
    thread_arg_t *thread = arg;
    uint8_t payload[700];
    for (uint64_t sequence = 0; sequence < THREAD_RECORDS; sequence++) {
        size_t length = (size_t)(sequence * 37 % 700);
        while (wf_shm_ring_available(thread->end) == 0)
            continue;
        record_header_t header;
        wf_shm_ring_read(thread->end, 0, &header, sizeof(header));
        wf_shm_ring_read(thread->end, sizeof(header), payload, length);
        int wrong = header.sequence != sequence || header.length != length;
        for (size_t i = 0; i < length && !wrong; i++)
            wrong = payload[i] != pattern_byte(sequence, i);
        thread->failures += (uint64_t)wrong;
        wf_shm_ring_release(thread->end, sizeof(header) + length);
    }
    return NULL;
}

static void test_ring_two_threads(void **state)
{
    ring_fixture_t *fixture = *state;
    thread_arg_t producer = {&fixture->producer, 0}, consumer = {&fixture->consumer, 0};
    pthread_t threads[2];
    assert_int_equal(pthread_create(&threads[0], NULL, produce, &producer), 0);
    assert_int_equal(pthread_create(&threads[1], NULL, consume, &consumer), 0);
    assert_int_equal(pthread_join(threads[0], NULL), 0);
    assert_int_equal(pthread_join(threads[1], NULL), 0);
    assert_int_equal(consumer.failures, 0);
    assert_int_equal(wf_shm_ring_available(&fixture->consumer), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ring_empty_then_one_record, setup_ring, teardown_ring),
        cmocka_unit_test_setup_teardown(test_ring_record_across_end, setup_ring, teardown_ring),
        cmocka_unit_test_setup_teardown(test_ring_full, setup_ring, teardown_ring),
        cmocka_unit_test_setup_teardown(test_ring_oversized_record, setup_ring, teardown_ring),
        cmocka_unit_test_setup_teardown(test_ring_order_many_sizes, setup_ring, teardown_ring),
        cmocka_unit_test_setup_teardown(test_ring_late_attach, setup_ring, teardown_ring),
        cmocka_unit_test_setup_teardown(test_ring_two_threads, setup_ring, teardown_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
