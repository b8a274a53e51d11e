/*
 * The cost model: per algorithm, an estimate of one call's time from its size and rank count,
 *
 *   time = steps * alpha + messages * overhead + moved * beta + local * gamma
 *
 * with these counts:
 * - steps: latencies on the critical path. A step above WEFT_EAGER_LIMIT counts twice, for the
 *   receiver's descriptor and then the RDMA write;
 * - messages: the further messages a rank posts within one step (the direct algorithms post n - 1);
 * - moved: the bytes a rank sends or receives on the critical path;
 * - local: the bytes it reduces or copies.
 * The ring and the chain cut data into k chunks of WEFT_CHUNK_SIZE and overlap the transfer of one
 * chunk with local work on another, so for them max(transfer, local) + min(transfer, local) / k
 * counts instead of the sum. Partials wider than the element type (float16 sums in float32) scale
 * the bytes of the reducing phases by partial_scale.
 *
 * Parameters come per level: intra between ranks of one node, inter between nodes. A flat
 * algorithm on several nodes is priced with inter for every step. Its ring, halving or doubling
 * partners cross nodes in most steps, and each step waits for the slowest pair, so inter fits the
 * critical path. NOTE: this overestimates flat algorithms whose early steps stay inside a node,
 * such as recursive doubling with ranks numbered node by node. A hierarchical algorithm is priced
 * phase by phase: the phases inside nodes with intra, the phase across nodes with inter.
 *
 * The formulas count what src/coll/ does, and docs/algorithms.md tabulates them. They are
 * estimates for ranking algorithms, not predictions of absolute time.
 */
#include <math.h>
#include <string.h>

#include "select.h"

static const char *const param_names[WF_MODEL_PARAM_COUNT] = {"alpha_us", "overhead_us", "beta_ns_per_byte",
                                                                "gamma_ns_per_byte"};

/*
 * Defaults, rough fits to weft-bench runs of 2 ranks on one shared 2-core machine (docs/tuning.md
 * gives the method and the numbers): the shm provider of libfabric 1.17, and tcp;ofi_rxm over
 * loopback for every other provider. NOTE: overhead_us was not measurable there (more than two
 * ranks oversubscribe the cores), so it is an estimate.
 */
static const wf_model_params_t default_params[WF_TRANSPORT_CLASS_COUNT] = {
    [WF_TRANSPORT_CLASS_SHM] = {2.0, 0.3, 0.4, 0.2},
    [WF_TRANSPORT_CLASS_NET] = {15.0, 2.0, 2.0, 0.2},
};

const char *wf_model_param_name(int i)
{
    return i >= 0 && i < WF_MODEL_PARAM_COUNT ? param_names[i] : NULL;
}

double *wf_model_param_field(wf_model_params_t *params, int i)
{
    switch (i) {
    case 0: return &params->alpha_us;
    case 1: return &params->overhead_us;
    case 2: return &params->beta_ns_per_byte;
    case 3: return &params->gamma_ns_per_byte;
    default: return NULL;
    }
}

wf_model_params_t wf_model_defaults(wf_transport_class_t transport)
{
    return default_params[transport];
}

const char *wf_transport_class_name(wf_transport_class_t transport)
{
    return transport == WF_TRANSPORT_CLASS_SHM ? "shm" : "net";
}

/* Latencies of one message: one eager message, or a descriptor and an RDMA write. */
static double message_steps(const wf_model_input_t *in, double bytes)
{
    return bytes > (double)in->eager_limit ? 2.0 : 1.0;
}

static int ceil_log2(int n)
{
    int steps = 0;
    while ((1 << steps) < n)
        steps++;
    return steps;
}

static int floor_log2(int n)
{
    int steps = 0;
    while ((2 << steps) <= n)
        steps++;
    return steps;
}

/* Ring stream chunks of one block of bytes: each is a message of its own. */
static double chunks(const wf_model_input_t *in, double bytes)
{
    double chunk = in->chunk_size > 0 ? (double)in->chunk_size : 1.0;
    double count = ceil(bytes / chunk);
    return count > 1.0 ? count : 1.0;
}

/* Steps of log2(p) halving (or doubling) exchanges starting at bytes / 2. */
static double halving_steps(const wf_model_input_t *in, int log_p, double bytes)
{
    double steps = 0.0;
    for (int k = 1; k <= log_p; k++)
        steps += message_steps(in, bytes / (double)(1 << k));
    return steps;
}

static void direct(const wf_model_input_t *in, wf_estimate_t *e, double block, double senders)
{
    int n = in->nranks;
    if (in->block_bytes > in->eager_limit) {
        e->eligible = 0;
        e->reason = "blocks above WEFT_EAGER_LIMIT";
    } else if (n > WF_DIRECT_MAX_RANKS) {
        e->eligible = 0;
        e->reason = "more than 64 ranks";
    }
    e->steps = 1.0;
    e->messages = senders * (n - 1) - (senders > 1.0 ? 2.0 : 1.0);
    e->messages = e->messages > 0.0 ? e->messages : 0.0;
    e->moved = (double)(n - 1) * block;
}

/*
 * Pull: the descriptor exchange, then reads pipelined in chunks of raw user data (no partial
 * scale). The reduce-scatter ends with a "done reading" message to every peer. The all-reduce
 * instead writes each reduced chunk into every peer, which moves the same bytes again. Two more
 * steps stand for the per-call setup (descriptor tables, read slots, registrations): an estimate,
 * which keeps pull out of the small sizes where eager messages win.
 */
static void pull(const wf_model_input_t *in, wf_estimate_t *e, double block, int gather)
{
    int n = in->nranks;
    if (!in->can_read) {
        e->eligible = 0;
        e->reason = "the transport cannot read remote memory";
    }
    e->steps = 3.0 + 2.0;
    e->messages = 2.0 * (n - 1) - 3.0;
    e->messages = e->messages > 0.0 ? e->messages : 0.0;
    e->moved = (double)(n - 1) * block * (gather ? 2.0 : 1.0);
    e->local = n * block * in->partial_scale;
    e->chunks = chunks(in, block);
}

static void allreduce(const wf_model_input_t *in, wf_algo_t algo, wf_estimate_t *e)
{
    int n = in->nranks, log_p = floor_log2(n), p = 1 << log_p, folded = n > p;
    double m = (double)in->bytes, s = in->partial_scale, share = (double)(n - 1) / n;

    switch (algo) {
    case WF_ALGO_DIRECT:
        direct(in, e, m, 2.0);
        e->local = n * m * s;
        break;
    case WF_ALGO_RING: /* the neighbour's signature before the first write, the all-gather's descriptors */
        e->steps = 2.0 * (n - 1) + 2.0;
        e->messages = 2.0 * (n - 1) * (chunks(in, m * s / n) - 1.0);
        e->moved = share * m * (s + 1.0);
        e->local = share * m * s;
        e->chunks = chunks(in, m * s / n);
        break;
    case WF_ALGO_RECURSIVE_DOUBLING:
        e->steps = log_p * message_steps(in, m * s) + (folded ? 2.0 * message_steps(in, m) : 0.0);
        e->moved = log_p * m * s + (folded ? 2.0 * m : 0.0);
        e->local = (log_p + 1) * m * s + (folded ? m * s + m : 0.0);
        break;
    case WF_ALGO_RABENSEIFNER:
        e->steps = halving_steps(in, log_p, m * s) + halving_steps(in, log_p, m) +
                   (folded ? 2.0 * message_steps(in, m) : 0.0);
        e->moved = (double)(p - 1) / p * m * (s + 1.0) + (folded ? 2.0 * m : 0.0);
        e->local = (double)(p - 1) / p * m * s + m + (folded ? m * s : 0.0);
        break;
    case WF_ALGO_PULL:
        pull(in, e, m / n, 1);
        break;
    default:
        break;
    }
}

static void allgather(const wf_model_input_t *in, wf_algo_t algo, wf_estimate_t *e)
{
    int n = in->nranks;
    double m = (double)in->bytes, block = m / n;

    switch (algo) {
    case WF_ALGO_DIRECT:
        direct(in, e, block, 2.0);
        break;
    case WF_ALGO_RING: /* the descriptor exchange, then n - 1 steps */
        e->steps = (double)(n - 1) + 1.0;
        e->moved = (double)(n - 1) * block;
        break;
    case WF_ALGO_PULL: /* the descriptor exchange, the reads of every block at once, "done" messages */
        pull(in, e, block, 0);
        e->local = 0.0;
        e->chunks = 1.0;
        break;
    case WF_ALGO_BRUCK:
        for (int distance = 1; distance < n; distance *= 2) {
            int blocks = distance < n - distance ? distance : n - distance;
            e->steps += message_steps(in, blocks * block);
        }
        e->moved = (double)(n - 1) * block;
        e->local = 2.0 * m;
        break;
    default:
        break;
    }
}

static void reduce_scatter(const wf_model_input_t *in, wf_algo_t algo, wf_estimate_t *e)
{
    int n = in->nranks, log_p = floor_log2(n), p = 1 << log_p, folded = n > p;
    double m = (double)in->bytes, s = in->partial_scale, block = m / n;

    switch (algo) {
    case WF_ALGO_DIRECT:
        direct(in, e, block, 2.0);
        e->local = n * block * s;
        break;
    case WF_ALGO_RING: /* the neighbour's signature, then n - 1 steps */
        e->steps = (double)(n - 1) + 1.0;
        e->messages = 2.0 * (n - 1) * (chunks(in, block * s) - 1.0);
        e->moved = (double)(n - 1) * block * s;
        e->local = (double)(n - 1) * block * s;
        e->chunks = chunks(in, block * s);
        break;
    case WF_ALGO_RECURSIVE_HALVING:
        e->steps = halving_steps(in, log_p, m * s) + (folded ? message_steps(in, m) + message_steps(in, block) : 0.0);
        e->moved = (double)(p - 1) / p * m * s + (folded ? m + block : 0.0);
        e->local = m * s + (double)(p - 1) / p * m * s + (folded ? m * s : 0.0);
        break;
    case WF_ALGO_PULL:
        pull(in, e, block, 0);
        break;
    default:
        break;
    }
}

static void rooted(const wf_model_input_t *in, wf_algo_t algo, wf_estimate_t *e)
{
    int n = in->nranks;
    double m = (double)in->bytes, s = in->partial_scale, share = (double)(n - 1) / n;
    double chunk = in->chunk_size > 0 ? (double)in->chunk_size : m;

    switch (algo) {
    case WF_ALGO_DIRECT: /* the root sends (broadcast) or receives (reduce) n - 1 messages in turn */
        direct(in, e, m, 1.0);
        e->local = in->coll == WF_COLL_REDUCE ? n * m * s : 0.0;
        break;
    case WF_ALGO_BINOMIAL:
        e->steps = ceil_log2(n) * message_steps(in, m);
        e->moved = ceil_log2(n) * m;
        break;
    case WF_ALGO_PULL: /* the root's descriptor, every reader reads it all, then a "done" message to the root */
        pull(in, e, m, 0);
        e->messages = (double)(n - 1) - 1.0;
        e->messages = e->messages > 0.0 ? e->messages : 0.0;
        e->moved = m;
        e->local = 0.0;
        e->chunks = 1.0;
        break;
    case WF_ALGO_CHAIN:
        e->steps = (double)(n - 1) + (chunks(in, m) - 1.0) + 1.0;
        e->moved = m + (n - 2) * (m < chunk ? m : chunk);
        e->chunks = chunks(in, m);
        break;
    case WF_ALGO_RING: /* reduce: the signature, a ring reduce-scatter, then the blocks to the root */
        e->steps = (double)(n - 1) + 2.0;
        e->messages = 2.0 * (n - 1) * (chunks(in, m * s / n) - 1.0) + (n - 2);
        e->moved = share * m * s + share * m;
        e->local = share * m * s;
        e->chunks = chunks(in, m * s / n);
        break;
    default:
        break;
    }
}

/* Fill the counts of a flat algorithm. */
static void count_flat(const wf_model_input_t *in, wf_algo_t algo, wf_estimate_t *e)
{
    switch (in->coll) {
    case WF_COLL_ALLREDUCE: allreduce(in, algo, e); break;
    case WF_COLL_ALLGATHER: allgather(in, algo, e); break;
    case WF_COLL_REDUCE_SCATTER: reduce_scatter(in, algo, e); break;
    case WF_COLL_BROADCAST:
    case WF_COLL_REDUCE: rooted(in, algo, e); break;
    case WF_COLL_BARRIER:
        e->steps = (double)ceil_log2(in->nranks);
        break;
    default:
        break;
    }
}

/* Time of counted estimate e under params, with the overlap of the chunked algorithms. */
static double price(const wf_estimate_t *e, const wf_model_params_t *params)
{
    double transfer = e->moved * params->beta_ns_per_byte / 1000.0;
    double local = e->local * params->gamma_ns_per_byte / 1000.0;
    double longer = transfer > local ? transfer : local, shorter = transfer > local ? local : transfer;
    return e->steps * params->alpha_us + e->messages * params->overhead_us + longer + shorter / e->chunks;
}

/* The input of one phase of a hierarchical algorithm: coll on nranks ranks, bytes in all. */
static wf_model_input_t phase_input(const wf_model_input_t *in, wf_coll_t coll, int nranks, uint64_t bytes)
{
    wf_model_input_t phase = *in;
    phase.coll = coll;
    phase.nranks = nranks;
    phase.nnodes = 1;
    phase.ranks_per_node = nranks;
    phase.bytes = bytes;
    phase.block_bytes = coll == WF_COLL_ALLREDUCE ? bytes : bytes / (uint64_t)nranks;
    return phase;
}

/* Count and price one phase with params, adding copy_bytes of packing to its local work, into e. */
static void add_phase(wf_estimate_t *e, const wf_model_input_t *phase_in, wf_algo_t algo,
                      const wf_model_params_t *params, double copy_bytes)
{
    wf_estimate_t phase;
    memset(&phase, 0, sizeof(phase));
    phase.chunks = 1.0;
    count_flat(phase_in, algo, &phase);
    phase.local += copy_bytes;
    e->steps += phase.steps;
    e->messages += phase.messages;
    e->moved += phase.moved;
    e->local += phase.local;
    e->time_us += price(&phase, params);
}

/*
 * Hierarchical algorithms, as src/coll/hierarchical.c runs them on N nodes of L ranks:
 * - all-reduce: recursive halving inside nodes, Rabenseifner across nodes on 1/L of the vector,
 *   Bruck inside nodes;
 * - all-gather: Bruck across nodes on one block each, then Bruck inside nodes on N blocks each,
 *   with the output packed and unpacked once more;
 * - reduce-scatter: the input packed by rail, recursive halving inside nodes, then recursive
 *   halving across nodes on 1/L of the input.
 * NOTE: the phase across nodes is priced as if each rail had the network to itself. When the L
 * rails of a node share one NIC, each gets about 1/L of its bandwidth, so for large messages the
 * estimate favours hierarchical more than such a node would.
 */
static void hierarchical(const wf_model_input_t *in, const wf_model_params_t *intra, const wf_model_params_t *inter,
                         wf_estimate_t *e)
{
    int per_node = in->ranks_per_node, nodes = in->nnodes;
    uint64_t m = in->bytes, node_share = in->bytes / (uint64_t)(per_node > 0 ? per_node : 1);
    if (nodes < 2 || per_node < 2 || nodes * per_node != in->nranks) {
        e->eligible = 0;
        e->reason = "needs at least 2 nodes with the same number (at least 2) of ranks each";
        return;
    }
    if (in->partial_scale != 1.0) {
        e->eligible = 0;
        e->reason = "needs partials of the user type (16-bit floats are summed in float32)";
        return;
    }
    if (in->uneven) {
        e->eligible = 0;
        e->reason = "the v forms have no hierarchical algorithm";
        return;
    }
    wf_model_input_t phase;
    switch (in->coll) {
    case WF_COLL_ALLREDUCE:
        phase = phase_input(in, WF_COLL_REDUCE_SCATTER, per_node, m);
        add_phase(e, &phase, WF_ALGO_RECURSIVE_HALVING, intra, 0.0);
        phase = phase_input(in, WF_COLL_ALLREDUCE, nodes, node_share);
        add_phase(e, &phase, WF_ALGO_RABENSEIFNER, inter, 0.0);
        phase = phase_input(in, WF_COLL_ALLGATHER, per_node, m);
        add_phase(e, &phase, WF_ALGO_BRUCK, intra, 0.0);
        break;
    case WF_COLL_ALLGATHER:
        phase = phase_input(in, WF_COLL_ALLGATHER, nodes, node_share);
        add_phase(e, &phase, WF_ALGO_BRUCK, inter, 0.0);
        phase = phase_input(in, WF_COLL_ALLGATHER, per_node, m);
        add_phase(e, &phase, WF_ALGO_BRUCK, intra, (double)m);
        break;
    case WF_COLL_REDUCE_SCATTER:
        phase = phase_input(in, WF_COLL_REDUCE_SCATTER, per_node, m);
        add_phase(e, &phase, WF_ALGO_RECURSIVE_HALVING, intra, (double)m);
        phase = phase_input(in, WF_COLL_REDUCE_SCATTER, nodes, node_share);
        add_phase(e, &phase, WF_ALGO_RECURSIVE_HALVING, inter, 0.0);
        break;
    default:
        e->eligible = 0;
        e->reason = "no hierarchical form";
        break;
    }
}

void wf_model_estimate(const wf_model_input_t *input, const wf_model_params_t *intra, const wf_model_params_t *inter,
                       wf_algo_t algo, wf_estimate_t *estimate)
{
    memset(estimate, 0, sizeof(*estimate));
    estimate->eligible = 1;
    estimate->chunks = 1.0;
    if (input->nranks < 2)
        return; /* one rank copies locally whatever the algorithm */
    if (algo == WF_ALGO_HIERARCHICAL) {
        hierarchical(input, intra, inter, estimate);
        return;
    }
    count_flat(input, algo, estimate);
    estimate->time_us = price(estimate, input->nnodes > 1 ? inter : intra);
}
