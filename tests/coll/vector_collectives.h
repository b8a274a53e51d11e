/*
 * vector_collectives: exact multi-process checks of weft_reduce, weft_allgatherv and
 * weft_reduce_scatterv. Inputs and expected results come from coll_data.c, a pure function of
 * (seed, rank, index, datatype, op), so every rank computes what every other rank sent without asking
 * the library. Each case takes the next seed, so all ranks agree on the case sequence and data.
 */
#ifndef VC_VECTOR_COLLECTIVES_H
#define VC_VECTOR_COLLECTIVES_H

#include <stddef.h>
#include <stdint.h>

#include "coll_util.h"

/* Filler of receive buffers before a call, so elements the library never wrote stand out. */
#define VC_UNWRITTEN_FILL 0xCD
/*
 * Input pattern for float16 and bfloat16 sums in which rounding after every addition drops
 * half-ulp steps that a single rounding of the exact sum keeps (coll_data.c uses 0 to 5).
 */
#define VC_PATTERN_HALF_ULP 6
/* Room for a case description in failure lines. */
#define VC_LABEL_LENGTH 256

typedef struct {
    weft_comm_t comm;
    int rank;
    int nranks;
    uint64_t next_seed; /* advanced once per case, identically on every rank */
    ct_tally_t tally;
} vc_context_t;

/* Per-rank block sizes and positions of one uneven collective, in elements. */
typedef struct {
    size_t *counts;
    size_t *displs;  /* start of block r: in recvbuf for allgatherv, in sendbuf for reduce_scatterv */
    size_t extent;   /* elements the receive buffer spans (allgatherv) or sendbuf contains (reduce_scatterv) */
} vc_layout_t;

/* Shape of a generated layout. */
typedef struct {
    int large;    /* 40000 to 160000 elements per non-empty rank (ring path); else 1 to 9 (direct path) */
    int reversed; /* blocks placed from rank nranks-1 down to rank 0 */
    int gaps;     /* unused elements between blocks, and zero-count ranks pointing inside other blocks */
} vc_shape_t;

/* splitmix64 step: a well-mixed hash of seed and value. */
uint64_t vc_hash(uint64_t seed, uint64_t value);

/*
 * Build a layout from seed, the same on every rank. Roughly one rank in four gets count 0, and with
 * more than one rank at least one does. Exits when memory runs out. Free with vc_layout_free.
 */
void vc_layout_make(const vc_context_t *context, uint64_t seed, const vc_shape_t *shape, vc_layout_t *layout);
void vc_layout_free(vc_layout_t *layout);

/* Append "counts=[..] displs=[..]" to text, shortened after 8 ranks. */
void vc_describe_layout(const vc_context_t *context, const vc_layout_t *layout, int with_displs, char *text,
                        size_t length);

/*
 * Write input elements first..first+count-1 of `rank` for the pattern: a weft_op_t,
 * CT_PATTERN_MOVE or VC_PATTERN_HALF_ULP.
 */
void vc_fill_inputs(weft_datatype_t type, int pattern, uint64_t seed, int rank, size_t first, size_t count,
                    void *data);

/*
 * Write elements first..first+count-1 of the expected reduction over all ranks. pattern is the
 * weft_op_t of the inputs, or VC_PATTERN_HALF_ULP for a sum of those inputs.
 */
void vc_fill_reduction(const vc_context_t *context, weft_datatype_t type, int pattern, uint64_t seed, size_t first,
                       size_t count, void *data);

/*
 * Compare count elements of got with expected. On a mismatch, report label, the buffer name, the
 * first wrong index with its expected and actual value, where the index lies in layout (when not
 * NULL: which rank's block, or a gap), and how many elements are wrong. Returns 1 when all match.
 */
int vc_compare(vc_context_t *context, const char *label, const char *buffer_name, weft_datatype_t type,
               const void *got, const void *expected, size_t count, const vc_layout_t *layout);

/* Fail when any of bytes bytes at data differs from fill. Returns 1 when all are intact. */
int vc_check_untouched(vc_context_t *context, const char *label, const char *buffer_name, const void *data,
                       size_t bytes, unsigned char fill);

/* Fail when a guard byte of buffer changed. Returns 1 when the guards are intact. */
int vc_check_guards(vc_context_t *context, const char *label, const char *buffer_name, const ct_buffer_t *buffer);

/*
 * Expect WEFT_ERR_INVALID_ARGUMENT with a non-empty message from weft_comm_last_error. Any other
 * error marks the communicator broken. Returns 1 when the result was as expected.
 */
int vc_expect_invalid(vc_context_t *context, const char *label, weft_result_t result);

/* The case groups, one file each. Each counts one pass per case whose every check held. */
void vc_run_allgatherv(vc_context_t *context);
void vc_run_reduce_scatterv(vc_context_t *context);
void vc_run_reduce(vc_context_t *context);

#endif /* VC_VECTOR_COLLECTIVES_H */
