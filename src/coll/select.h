/*
 * Algorithm selection: which algorithms each collective has, which ones WEFT_ALGO allows, the
 * alpha-beta cost model that picks among them, and the tuning file (WEFT_TUNING_FILE) that
 * overrides the model's parameters or fixes the choice for ranges of sizes.
 *
 * Every rank must reach the same choice for the same call. So the choice depends only on the
 * call's arguments and on settings that init checks are equal on every rank: the eager limit, the
 * chunk size, the provider and the selection configuration (compared through wf_select_hash).
 *
 * The parsers and the model are pure functions of their inputs, for unit tests and weft-info.
 */
#ifndef WF_COLL_SELECT_H
#define WF_COLL_SELECT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WF_COLL_ALLREDUCE,
    WF_COLL_ALLGATHER,
    WF_COLL_REDUCE_SCATTER,
    WF_COLL_BROADCAST,
    WF_COLL_REDUCE,
    WF_COLL_BARRIER,
    WF_COLL_COUNT
} wf_coll_t;

typedef enum {
    WF_ALGO_LOCAL, /* one rank: a local copy, never listed or selectable */
    WF_ALGO_DIRECT,
    WF_ALGO_RING,
    WF_ALGO_RECURSIVE_DOUBLING,
    WF_ALGO_RABENSEIFNER,
    WF_ALGO_RECURSIVE_HALVING,
    WF_ALGO_BRUCK,
    WF_ALGO_BINOMIAL,
    WF_ALGO_CHAIN,
    WF_ALGO_DISSEMINATION,
    WF_ALGO_PULL,
    WF_ALGO_HIERARCHICAL,
    WF_ALGO_COUNT
} wf_algo_t;

#define WF_ALGO_BIT(algo) (1u << (unsigned)(algo))
#define WF_DIRECT_MAX_RANKS 64 /* the direct algorithms send O(n) messages per rank */

/* Names such as "allreduce" and "ring", or NULL outside the enums. */
const char *wf_coll_name(wf_coll_t coll);
const char *wf_algo_name(wf_algo_t algo);
/*
 * Return the collective called name (case-insensitive), or -1. Underscores are optional, so
 * "reducescatter", the spelling of weft-bench and nccl-tests, finds reduce_scatter too.
 */
int wf_coll_from_name(const char *name);

/* Bit mask of the algorithms collective coll has, and the same as a comma-separated list. */
uint32_t wf_coll_algorithms(wf_coll_t coll);
void wf_coll_algorithm_list(wf_coll_t coll, char *out, size_t outlen);

/* Model parameters of one transport class. Times in microseconds, per-byte costs in nanoseconds. */
typedef struct {
    double alpha_us;          /* latency of one step: a message and the wait for it */
    double overhead_us;       /* extra cost of each further message posted in the same step */
    double beta_ns_per_byte;  /* transfer time per byte (1 / bandwidth) */
    double gamma_ns_per_byte; /* local pass per byte: reduction or copy */
} wf_model_params_t;

typedef enum { WF_TRANSPORT_CLASS_SHM, WF_TRANSPORT_CLASS_NET, WF_TRANSPORT_CLASS_COUNT } wf_transport_class_t;

/* "shm" or "net", as the tuning file's prefixes spell the class. */
const char *wf_transport_class_name(wf_transport_class_t transport);

#define WF_MODEL_PARAM_COUNT 4
/* Parameter name i (0 .. WF_MODEL_PARAM_COUNT - 1) as the tuning file spells it, and its field. */
const char *wf_model_param_name(int i);
double *wf_model_param_field(wf_model_params_t *params, int i);
/* Built-in defaults of a transport class. */
wf_model_params_t wf_model_defaults(wf_transport_class_t transport);

/* A tuning-file rule: this algorithm for sizes in [min_bytes, max_bytes) on min_ranks..max_ranks ranks. */
typedef struct {
    wf_coll_t coll;
    wf_algo_t algo;
    uint64_t min_bytes, max_bytes;
    int min_ranks, max_ranks;
    int line; /* in the tuning file, for the log */
} wf_tune_rule_t;

#define WF_TUNE_MAX_RULES 128
#define WF_SELECT_PATH_MAX 512

/* The selection configuration of a communicator, parsed once at init. */
typedef struct {
    uint32_t allowed[WF_COLL_COUNT]; /* WF_ALGO_BIT mask per collective */
    int restricted[WF_COLL_COUNT];   /* WEFT_ALGO names this collective (or a bare list applies to it) */
    wf_model_params_t params[WF_TRANSPORT_CLASS_COUNT];
    wf_tune_rule_t rules[WF_TUNE_MAX_RULES];
    int nrules;
    char tuning_file[WF_SELECT_PATH_MAX]; /* empty when none */
} wf_select_config_t;

/* Every algorithm allowed, default parameters, no rules. */
void wf_select_config_default(wf_select_config_t *config);

/*
 * Parse a WEFT_ALGO value (NCCL's grammar) into config->allowed and config->restricted:
 *   allreduce:rabenseifner,ring;allgather:bruck   only these for those collectives
 *   allreduce:^ring                               every allreduce algorithm but ring
 *   ring                                          ring for every collective that has it
 * Entries are separated by ';', algorithms by ','; a leading '^' excludes the listed algorithms.
 * A list without "collective:" applies to every collective that has one of its algorithms, and a
 * collective's own entry replaces it. Names are case-insensitive, and spaces around them are
 * ignored. Returns 0, or -1 with a message naming WEFT_ALGO, the bad token and the accepted names.
 */
int wf_algo_parse(const char *text, wf_select_config_t *config, char *err, size_t errlen);

/*
 * Parse a tuning file into config (parameters and rules). Lines:
 *   # comment
 *   alpha_us = 2.5                  a model parameter for every transport
 *   shm.beta_ns_per_byte = 0.08     only for shared memory (net.*: only for the network)
 *   allreduce 0-4K recursive_doubling            sizes 0 <= bytes < 4096
 *   allreduce 4K-64M rabenseifner ranks=4-64     and only on 4 to 64 ranks
 *   broadcast 1M- chain                           1 MiB and above
 * Sizes take K, M, G suffixes (powers of 1024). shm.* applies between ranks that talk through
 * shared memory (weft's shm transport, libfabric's shm provider, and ranks of one node under the
 * route transport), net.* to every other pair. Returns 0, or -1 with "FILE line N: ..." naming the
 * token in err.
 */
int wf_tuning_parse_file(const char *path, wf_select_config_t *config, char *err, size_t errlen);
/* Parse one line of a tuning file (for unit tests). line_number and path only label messages. */
int wf_tuning_parse_line(const char *path, int line_number, char *line, wf_select_config_t *config, char *err,
                         size_t errlen);

/* Hash of everything in config that affects a choice, for the agreement check at init. */
uint64_t wf_select_hash(const wf_select_config_t *config);

/* The model's input for one call. */
typedef struct {
    wf_coll_t coll;
    uint64_t bytes;       /* the call's size as nccl-tests counts it: the vector (all-reduce, broadcast,
                             reduce), the whole output (all-gather) or the whole input (reduce-scatter) */
    uint64_t block_bytes; /* the largest per-rank block (all-gather, reduce-scatter), else bytes */
    int nranks;
    int nnodes;           /* nodes the ranks are on */
    int ranks_per_node;   /* ranks on the most populated node */
    double partial_scale; /* partial size / element size of the reduction (2 for float16 sums), 1 without */
    int can_read;         /* the transport offers RDMA read (the pull algorithms need it) */
    uint64_t eager_limit;
    uint64_t chunk_size;
    wf_transport_class_t intra_class; /* transport class between ranks of one node */
    wf_transport_class_t inter_class; /* between ranks of different nodes (intra_class on one node) */
    int uneven;           /* a v form: blocks may differ in size and place (no hierarchical algorithm) */
} wf_model_input_t;

/* The model's estimate of one algorithm for one call. */
typedef struct {
    int eligible;        /* the algorithm can serve this call */
    const char *reason;  /* why not, when not eligible */
    double steps;        /* latencies on the critical path, RDMA handshakes included */
    double messages;     /* messages posted beyond one per step */
    double moved;        /* bytes sent or received on the critical path */
    double local;        /* bytes reduced or copied locally */
    double chunks;       /* pieces whose transfer overlaps local work on others (1: no overlap) */
    double time_us;
} wf_estimate_t;

/*
 * Estimate one algorithm. intra applies between ranks of one node, inter between nodes. A flat
 * algorithm on several nodes waits for the network in most of its steps, so inter prices all of
 * them, and on one node intra does. A hierarchical algorithm prices its phases inside nodes with
 * intra and its phase across nodes with inter.
 */
void wf_model_estimate(const wf_model_input_t *input, const wf_model_params_t *intra, const wf_model_params_t *inter,
                       wf_algo_t algo, wf_estimate_t *estimate);

/* How a choice was made. */
typedef enum {
    WF_CHOICE_SINGLE_RANK,
    WF_CHOICE_ONLY,          /* the collective has one algorithm */
    WF_CHOICE_FORCED,        /* WEFT_ALGO left one eligible algorithm */
    WF_CHOICE_RULE,          /* a tuning-file rule */
    WF_CHOICE_MODEL,         /* the cheapest estimate among the allowed algorithms */
    WF_CHOICE_FALLBACK       /* WEFT_ALGO allows no algorithm that can serve the call */
} wf_choice_kind_t;

typedef struct {
    wf_algo_t algo;
    wf_choice_kind_t kind;
    const wf_tune_rule_t *rule; /* for WF_CHOICE_RULE */
    wf_estimate_t estimates[WF_ALGO_COUNT];
} wf_choice_t;

/*
 * Pick the algorithm for one call, and fill in the estimate of every algorithm of the collective,
 * with the parameters of input->intra_class and input->inter_class.
 */
void wf_select_decide(const wf_select_config_t *config, const wf_model_input_t *input, wf_choice_t *choice);

/* One sentence on why choice was made, for the TUNE log and weft-info --explain. */
void wf_choice_describe(const wf_choice_t *choice, const wf_select_config_t *config, const wf_model_input_t *input,
                        char *out, size_t outlen);

#endif /* WF_COLL_SELECT_H */
