/*
 * Helpers shared by the multi-process collective tests.
 *
 * The tests use only the public API (weft.h). Everything they compare against is computed here,
 * independently of the library: element formats (including float16 and bfloat16 conversion),
 * guarded buffers, and result reporting.
 */
#ifndef CT_COLL_UTIL_H
#define CT_COLL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "weft.h"

#define CT_NUM_TYPES 10
#define CT_NUM_OPS 5

/* Bytes of known pattern kept before and after every test buffer to catch out-of-bounds writes. */
#define CT_GUARD_BYTES 64
#define CT_GUARD_FILL 0xA5

size_t ct_type_size(weft_datatype_t type);
const char *ct_type_name(weft_datatype_t type);
const char *ct_op_name(weft_op_t op);
int ct_type_is_float(weft_datatype_t type);
int ct_type_is_signed(weft_datatype_t type);

/* IEEE binary16 and bfloat16 conversion; float to 16 bits rounds to nearest, ties to even. */
float ct_half_to_float(uint16_t half);
uint16_t ct_float_to_half(float value);
float ct_bfloat_to_float(uint16_t bfloat);
uint16_t ct_float_to_bfloat(float value);

/* Read one element of any type: integers sign- or zero-extended, floats widened exactly. */
int64_t ct_load_int(weft_datatype_t type, const void *element);
uint64_t ct_load_uint(weft_datatype_t type, const void *element);
double ct_load_float(weft_datatype_t type, const void *element);
/* Write one element: integers truncated to the width, floats rounded once to nearest even. */
void ct_store_uint(weft_datatype_t type, uint64_t value, void *element);
void ct_store_float(weft_datatype_t type, double value, void *element);

/* Print an element as "value (0xbits)" into text. */
void ct_format_element(weft_datatype_t type, const void *element, char *text, size_t length);

/* A heap buffer with CT_GUARD_BYTES of CT_GUARD_FILL on each side of `data`. */
typedef struct {
    unsigned char *base;
    unsigned char *data;
    size_t bytes;
} ct_buffer_t;

/* Allocate; exits the process with a message when memory runs out (the test cannot go on). */
void ct_buffer_alloc(ct_buffer_t *buffer, size_t bytes);
void ct_buffer_free(ct_buffer_t *buffer);
/* Return the offset of the first changed guard byte (negative: before data), or 0 when intact. */
long ct_buffer_guard_damage(const ct_buffer_t *buffer);

/* Seconds on CLOCK_MONOTONIC, which every process on one machine shares. */
double ct_now(void);

/*
 * Create the world communicator with weft_comm_init_env. On failure print the result, the
 * library's message and the launch variables, then exit 1.
 */
weft_comm_t ct_init_or_exit(const char *program);

/* Running totals of one test program on one rank. */
typedef struct {
    const char *program;
    int rank;
    int nranks;
    unsigned long passed;
    unsigned long failed;
    unsigned long printed; /* failure lines printed so far; later ones are only counted */
    int broken;            /* a collective returned an error: comm is now good only for destroy */
} ct_tally_t;

/* Create the world communicator (exits on failure) and a zeroed tally for it. */
void ct_start(const char *program, weft_comm_t *comm, ct_tally_t *tally);

/* Print one failure line prefixed with program and rank, unless too many were printed already. */
void ct_fail(ct_tally_t *tally, const char *format, ...) __attribute__((format(printf, 2, 3)));

/*
 * Record the outcome of a collective call. A result other than WEFT_SUCCESS is a failure that
 * names `label` and the library's message. It also marks the communicator broken, unless the
 * result is WEFT_ERR_INVALID_ARGUMENT. Returns 1 when the call succeeded.
 */
int ct_check_result(ct_tally_t *tally, weft_comm_t comm, weft_result_t result, const char *label);

/*
 * Compare count elements bitwise. On a mismatch, report `label`, the first wrong index with its
 * expected and actual value, and how many elements are wrong. Returns 1 when all are equal.
 */
int ct_compare_elements(ct_tally_t *tally, const char *label, weft_datatype_t type, const void *got,
                        const void *expected, size_t count);

/* Fail when `label` took longer than limit seconds. Returns 1 when it was in time. */
int ct_check_duration(ct_tally_t *tally, const char *label, double seconds, double limit);

/*
 * Print "PROGRAM: N passed, N failed" on rank 0 (totals over all ranks when the library can sum
 * them, else this rank's), destroy comm and return the process exit status: 1 when this rank saw
 * a failure.
 */
int ct_finish(ct_tally_t *tally, weft_comm_t comm);

#endif /* CT_COLL_UTIL_H */
