/*
 * Running one coll_check case: fill inputs from the pattern, call the collective, then check the
 * result element by element, the guard bytes around every buffer, and that a send buffer that is
 * not also the receive buffer kept its contents.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coll_check.h"
#include "coll_data.h"

/* Filler of receive buffers before the call, so elements the library never wrote stand out. */
#define CT_UNWRITTEN_FILL 0xCD
/* Time the late rank of a barrier case waits before entering, in nanoseconds. */
#define CT_BARRIER_DELAY_NS 50000000L

/* Writes the value element `index` of a buffer should hold. */
typedef void (*ct_element_fn)(const ct_context_t *context, const ct_case_t *item, size_t index, void *element);

static void reduced_element(const ct_context_t *context, const ct_case_t *item, size_t index, void *element)
{
    ct_expected_reduction(item->type, item->op, context->seed, context->nranks, index, element);
}

/* Reduce-scatter output: element j of this rank's block is element rank*count + j of the reduction. */
static void reduced_block_element(const ct_context_t *context, const ct_case_t *item, size_t index,
                                  void *element)
{
    size_t global = (size_t)context->rank * item->count + index;
    ct_expected_reduction(item->type, item->op, context->seed, context->nranks, global, element);
}

static void own_reduction_input(const ct_context_t *context, const ct_case_t *item, size_t index, void *element)
{
    ct_input_element(item->type, (int)item->op, context->seed, context->rank, index, element);
}

static void own_movement_input(const ct_context_t *context, const ct_case_t *item, size_t index, void *element)
{
    ct_input_element(item->type, CT_PATTERN_MOVE, context->seed, context->rank, index, element);
}

static void gathered_element(const ct_context_t *context, const ct_case_t *item, size_t index, void *element)
{
    int source = (int)(index / item->count);
    ct_input_element(item->type, CT_PATTERN_MOVE, context->seed, source, index % item->count, element);
}

static void root_element(const ct_context_t *context, const ct_case_t *item, size_t index, void *element)
{
    ct_input_element(item->type, CT_PATTERN_MOVE, context->seed, item->root, index, element);
}

static void fill_elements(const ct_context_t *context, const ct_case_t *item, unsigned char *data, size_t count,
                          ct_element_fn element_fn)
{
    size_t size = ct_type_size(item->type);
    for (size_t i = 0; i < count; i++)
        element_fn(context, item, i, data + i * size);
}

/* Compare count elements; report the first mismatch and how many there are. Returns 1 if all match. */
static int check_elements(ct_context_t *context, const ct_case_t *item, const char *buffer_name,
                          const unsigned char *data, size_t count, ct_element_fn element_fn)
{
    size_t size = ct_type_size(item->type);
    size_t wrong = 0, first_wrong = 0;
    unsigned char expected[8], first_expected[8];

    for (size_t i = 0; i < count; i++) {
        element_fn(context, item, i, expected);
        if (memcmp(expected, data + i * size, size) == 0)
            continue;
        if (wrong++ == 0) {
            first_wrong = i;
            memcpy(first_expected, expected, size);
        }
    }
    if (wrong == 0)
        return 1;

    char description[160], expected_text[64], got_text[64];
    ct_describe_case(item, description, sizeof description);
    ct_format_element(item->type, first_expected, expected_text, sizeof expected_text);
    ct_format_element(item->type, data + first_wrong * size, got_text, sizeof got_text);
    ct_fail(&context->tally, "%s: %s index %zu: expected %s, got %s (%zu of %zu elements wrong)", description,
            buffer_name, first_wrong, expected_text, got_text, wrong, count);
    return 0;
}

static int check_guards(ct_context_t *context, const ct_case_t *item, const char *buffer_name,
                        const ct_buffer_t *buffer)
{
    long offset = ct_buffer_guard_damage(buffer);
    if (offset == 0)
        return 1;

    char description[160];
    ct_describe_case(item, description, sizeof description);
    ct_fail(&context->tally, "%s: byte %ld %s the %zu-byte %s changed; the collective wrote out of bounds",
            description, offset < 0 ? -offset : offset, offset < 0 ? "before the start of" : "past the end of",
            buffer->bytes, buffer_name);
    return 0;
}

static int check_call(ct_context_t *context, const ct_case_t *item, weft_result_t result)
{
    char description[160];
    ct_describe_case(item, description, sizeof description);
    return ct_check_result(&context->tally, context->comm, result, description);
}

static int run_allreduce(ct_context_t *context, const ct_case_t *item)
{
    size_t bytes = item->count * ct_type_size(item->type);
    ct_buffer_t send, recv;
    int ok;

    ct_buffer_alloc(&recv, bytes);
    if (item->in_place) {
        fill_elements(context, item, recv.data, item->count, own_reduction_input);
        ok = check_call(context, item, weft_allreduce(recv.data, recv.data, item->count, item->type, item->op,
                                                      context->comm));
        ok = ok && check_elements(context, item, "in-place buffer", recv.data, item->count, reduced_element);
        ok = check_guards(context, item, "in-place buffer", &recv) && ok;
        ct_buffer_free(&recv);
        return ok;
    }

    ct_buffer_alloc(&send, bytes);
    fill_elements(context, item, send.data, item->count, own_reduction_input);
    memset(recv.data, CT_UNWRITTEN_FILL, bytes);
    ok = check_call(context, item, weft_allreduce(send.data, recv.data, item->count, item->type, item->op,
                                                  context->comm));
    ok = ok && check_elements(context, item, "receive buffer", recv.data, item->count, reduced_element);
    ok = ok && check_elements(context, item, "send buffer (must stay unchanged)", send.data, item->count,
                              own_reduction_input);
    ok = check_guards(context, item, "receive buffer", &recv) && ok;
    ok = check_guards(context, item, "send buffer", &send) && ok;
    ct_buffer_free(&send);
    ct_buffer_free(&recv);
    return ok;
}

static int run_reduce_scatter(ct_context_t *context, const ct_case_t *item)
{
    size_t size = ct_type_size(item->type);
    size_t total = item->count * (size_t)context->nranks;
    ct_buffer_t send, recv;
    int ok;

    ct_buffer_alloc(&send, total * size);
    fill_elements(context, item, send.data, total, own_reduction_input);
    if (item->in_place) {
        /* Only this rank's block of the in-place buffer is defined afterwards; the guards
         * around the whole buffer are still checked. */
        unsigned char *block = send.data + (size_t)context->rank * item->count * size;
        ok = check_call(context, item, weft_reduce_scatter(send.data, block, item->count, item->type, item->op,
                                                           context->comm));
        ok = ok && check_elements(context, item, "in-place block", block, item->count, reduced_block_element);
        ok = check_guards(context, item, "in-place buffer", &send) && ok;
        ct_buffer_free(&send);
        return ok;
    }

    ct_buffer_alloc(&recv, item->count * size);
    memset(recv.data, CT_UNWRITTEN_FILL, recv.bytes);
    ok = check_call(context, item, weft_reduce_scatter(send.data, recv.data, item->count, item->type, item->op,
                                                       context->comm));
    ok = ok && check_elements(context, item, "receive buffer", recv.data, item->count, reduced_block_element);
    ok = ok && check_elements(context, item, "send buffer (must stay unchanged)", send.data, total,
                              own_reduction_input);
    ok = check_guards(context, item, "receive buffer", &recv) && ok;
    ok = check_guards(context, item, "send buffer", &send) && ok;
    ct_buffer_free(&send);
    ct_buffer_free(&recv);
    return ok;
}

static int run_allgather(ct_context_t *context, const ct_case_t *item)
{
    size_t size = ct_type_size(item->type);
    size_t total = item->count * (size_t)context->nranks;
    unsigned char *own_block;
    ct_buffer_t send, recv;
    int ok;

    ct_buffer_alloc(&recv, total * size);
    memset(recv.data, CT_UNWRITTEN_FILL, recv.bytes);
    own_block = recv.data + (size_t)context->rank * item->count * size;
    if (item->in_place) {
        fill_elements(context, item, own_block, item->count, own_movement_input);
        ok = check_call(context, item, weft_allgather(own_block, recv.data, item->count, item->type, context->comm));
        ok = ok && check_elements(context, item, "in-place buffer", recv.data, total, gathered_element);
        ok = check_guards(context, item, "in-place buffer", &recv) && ok;
        ct_buffer_free(&recv);
        return ok;
    }

    ct_buffer_alloc(&send, item->count * size);
    fill_elements(context, item, send.data, item->count, own_movement_input);
    ok = check_call(context, item, weft_allgather(send.data, recv.data, item->count, item->type, context->comm));
    ok = ok && check_elements(context, item, "receive buffer", recv.data, total, gathered_element);
    ok = ok && check_elements(context, item, "send buffer (must stay unchanged)", send.data, item->count,
                              own_movement_input);
    ok = check_guards(context, item, "receive buffer", &recv) && ok;
    ok = check_guards(context, item, "send buffer", &send) && ok;
    ct_buffer_free(&send);
    ct_buffer_free(&recv);
    return ok;
}

static int run_broadcast(ct_context_t *context, const ct_case_t *item)
{
    size_t size = ct_type_size(item->type);
    ct_buffer_t buffer;
    int ok;

    ct_buffer_alloc(&buffer, item->count * size);
    fill_elements(context, item, buffer.data, item->count, root_element);
    if (context->rank != item->root) {
        /* Every bit differs from the root's data, so an element left as it was is caught. */
        for (size_t i = 0; i < buffer.bytes; i++)
            buffer.data[i] = (unsigned char)~buffer.data[i];
    }
    ok = check_call(context, item, weft_broadcast(buffer.data, item->count, item->type, item->root, context->comm));
    ok = ok && check_elements(context, item, context->rank == item->root ? "root buffer" : "buffer", buffer.data,
                              item->count, root_element);
    ok = check_guards(context, item, "buffer", &buffer) && ok;
    ct_buffer_free(&buffer);
    return ok;
}

/* Return a hash of this boot's /proc/sys/kernel/random/boot_id, or 0 when it cannot be read. */
static uint64_t boot_id_hash(void)
{
    char text[64] = "";
    FILE *file = fopen("/proc/sys/kernel/random/boot_id", "r");
    uint64_t hash = 14695981039346656037ull; /* 64-bit FNV-1a */

    if (file == NULL)
        return 0;
    if (fgets(text, sizeof text, file) == NULL)
        text[0] = '\0';
    fclose(file);
    for (const char *c = text; *c != '\0' && *c != '\n'; c++)
        hash = (hash ^ (unsigned char)*c) * 1099511628211ull;
    return text[0] != '\0' ? hash : 0;
}

/*
 * The late rank sleeps, then notes when it entered the barrier. That time is broadcast afterwards,
 * with the late rank's boot id. No rank may leave the barrier before it. CLOCK_MONOTONIC is one
 * clock for every process of one boot, so ranks booted elsewhere (other hosts or guests) skip the
 * comparison.
 */
static int run_barrier(ct_context_t *context, const ct_case_t *item)
{
    static uint64_t this_boot;
    double entered = 0.0;
    uint64_t message[2] = {0, 0}; /* the late rank's entry time (a double's bytes) and boot id hash */

    if (this_boot == 0)
        this_boot = boot_id_hash();
    if (context->rank == item->root) {
        struct timespec delay = {0, CT_BARRIER_DELAY_NS};
        nanosleep(&delay, NULL);
        entered = ct_now();
        memcpy(&message[0], &entered, sizeof entered);
        message[1] = this_boot;
    }
    if (!check_call(context, item, weft_barrier(context->comm)))
        return 0;
    double left = ct_now();
    if (!check_call(context, item, weft_broadcast(message, 2, WEFT_UINT64, item->root, context->comm)))
        return 0;
    memcpy(&entered, &message[0], sizeof entered);
    if (message[1] == this_boot && left < entered) {
        ct_fail(&context->tally, "barrier late-rank=%d: this rank left the barrier %.6f s before rank %d entered it",
                item->root, entered - left, item->root);
        return 0;
    }
    return 1;
}

void ct_run_case(ct_context_t *context, const ct_case_t *item)
{
    int ok = 0;

    switch (item->coll) {
    case CT_ALLREDUCE: ok = run_allreduce(context, item); break;
    case CT_REDUCE_SCATTER: ok = run_reduce_scatter(context, item); break;
    case CT_ALLGATHER: ok = run_allgather(context, item); break;
    case CT_BROADCAST: ok = run_broadcast(context, item); break;
    default: ok = run_barrier(context, item); break;
    }
    if (ok)
        context->tally.passed++;
}
