/*
 * weft-info --explain: the cost model's estimate of every algorithm of one collective call, and
 * the algorithm the selector would choose, with WEFT_ALGO and WEFT_TUNING_FILE applied, without
 * starting a job.
 */
#include "info_explain.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coll/select.h"
#include "param.h"
#include "reduce.h"

/* Parse a size with an optional K, M or G suffix (powers of 1024). Returns 0, or -1 when invalid. */
static int parse_size(const char *text, uint64_t *out)
{
    char *end = NULL;
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    default: break;
    }
    if (errno == ERANGE || *end != '\0' || value > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)value << shift;
    return 0;
}

static int find_by_name(const char *name, const char *(*name_of)(int), int count)
{
    for (int i = 0; i < count; i++)
        if (name_of(i) != NULL && strcasecmp(name, name_of(i)) == 0)
            return i;
    return -1;
}

static const char *type_name_of(int i) { return wf_datatype_name((weft_datatype_t)i); }
static const char *op_name_of(int i) { return wf_op_name((weft_op_t)i); }

/* The selection configuration from WEFT_ALGO and WEFT_TUNING_FILE, as a communicator would parse it. */
static int load_config(wf_select_config_t *config)
{
    char err[1024];
    const char *path = wf_param_str(WF_PARAM_TUNING_FILE);
    wf_select_config_default(config);
    if (wf_algo_parse(wf_param_str(WF_PARAM_ALGO), config, err, sizeof(err)) != 0 ||
        (path[0] != '\0' && wf_tuning_parse_file(path, config, err, sizeof(err)) != 0)) {
        fprintf(stderr, "weft-info: %s\n", err);
        return -1;
    }
    return 0;
}

/* Fill input from the request; prints the reason and returns -1 when an argument is invalid. */
static int build_input(const wf_explain_request_t *request, wf_model_input_t *input)
{
    int coll = wf_coll_from_name(request->coll);
    int type = find_by_name(request->datatype, type_name_of, WF_DATATYPE_COUNT);
    int op = find_by_name(request->op, op_name_of, WF_OP_COUNT);
    uint64_t bytes = 0;

    if (coll < 0) {
        fprintf(stderr, "weft-info: unknown collective '%s'; use allreduce, allgather, reduce_scatter, broadcast, "
                "reduce or barrier\n", request->coll);
        return -1;
    }
    if (parse_size(request->size, &bytes) != 0) {
        fprintf(stderr, "weft-info: '%s' is not a size; use bytes with an optional K, M or G suffix, as in 1M\n",
                request->size);
        return -1;
    }
    if (type < 0) {
        fprintf(stderr, "weft-info: unknown datatype '%s'; use int8, uint8, int32, uint32, int64, uint64, "
                "float16, bfloat16, float32 or float64\n", request->datatype);
        return -1;
    }
    if (op < 0) {
        fprintf(stderr, "weft-info: unknown op '%s'; use sum, prod, min, max or avg\n", request->op);
        return -1;
    }

    wf_reduce_plan_t plan;
    int native = strcmp(wf_param_str(WF_PARAM_REDUCE_PRECISION), "native") == 0;
    wf_reduce_plan(&plan, (weft_datatype_t)type, (weft_op_t)op, native);
    int reduces = coll == WF_COLL_ALLREDUCE || coll == WF_COLL_REDUCE_SCATTER || coll == WF_COLL_REDUCE;
    int per_rank = coll == WF_COLL_ALLGATHER || coll == WF_COLL_REDUCE_SCATTER;
    *input = (wf_model_input_t){.coll = (wf_coll_t)coll,
                                .bytes = bytes,
                                .block_bytes = per_rank ? bytes / (uint64_t)request->nranks : bytes,
                                .nranks = request->nranks,
                                .nnodes = request->nnodes,
                                .ranks_per_node = (request->nranks + request->nnodes - 1) / request->nnodes,
                                .partial_scale = reduces ? (double)plan.partial_size / (double)plan.user_size : 1.0,
                                .can_read = 1, /* every transport weft opens today can read remote memory */
                                .eager_limit = (uint64_t)wf_param_int(WF_PARAM_EAGER_LIMIT),
                                .chunk_size = (uint64_t)wf_param_int(WF_PARAM_CHUNK_SIZE)};
    return 0;
}

static void print_table(const wf_select_config_t *config, const wf_model_input_t *input, const wf_choice_t *choice)
{
    printf("%-20s %12s %8s %9s %14s %14s  %s\n", "ALGORITHM", "ESTIMATE_US", "STEPS", "MESSAGES", "MOVED_BYTES",
           "LOCAL_BYTES", "NOTE");
    for (int a = 0; a < WF_ALGO_COUNT; a++) {
        if (!(wf_coll_algorithms(input->coll) & WF_ALGO_BIT(a)))
            continue;
        const wf_estimate_t *e = &choice->estimates[a];
        const char *note = "";
        if (!e->eligible)
            note = e->reason;
        else if (!(config->allowed[input->coll] & WF_ALGO_BIT(a)))
            note = "excluded by WEFT_ALGO";
        char estimate[32] = "-"; /* an algorithm that cannot serve the call has no meaningful estimate */
        if (e->eligible)
            snprintf(estimate, sizeof(estimate), "%.1f", e->time_us);
        const char *chosen = "";
        if (a == (int)choice->algo)
            chosen = note[0] != '\0' ? "; chosen" : "chosen";
        printf("%-20s %12s %8.0f %9.0f %14.0f %14.0f  %s%s\n", wf_algo_name((wf_algo_t)a), estimate, e->steps,
               e->messages, e->moved, e->local, note, chosen);
    }
}

/*
 * Set the transport class of each level from --transport, or as WEFT_TRANSPORT=auto would choose:
 * weft's shm on one node, the route transport (shm inside nodes, net between them) on several,
 * and libfabric alone when every node has one rank. Prints the reason and returns -1 when invalid.
 */
static int set_levels(const wf_explain_request_t *request, wf_model_input_t *input)
{
    const char *transport = request->transport;
    if (transport == NULL && input->nnodes == 1)
        transport = "shm";
    else if (transport == NULL && input->nranks > input->nnodes)
        transport = "route";
    else if (transport == NULL)
        transport = "net";
    if (strcasecmp(transport, "shm") == 0) {
        input->intra_class = input->inter_class = WF_TRANSPORT_CLASS_SHM;
    } else if (strcasecmp(transport, "net") == 0) {
        input->intra_class = input->inter_class = WF_TRANSPORT_CLASS_NET;
    } else if (strcasecmp(transport, "route") == 0) {
        input->intra_class = WF_TRANSPORT_CLASS_SHM;
        input->inter_class = input->nnodes > 1 ? WF_TRANSPORT_CLASS_NET : WF_TRANSPORT_CLASS_SHM;
    } else {
        fprintf(stderr, "weft-info: unknown transport '%s'; use shm, net or route\n", transport);
        return -1;
    }
    return 0;
}

static void print_level(const wf_select_config_t *config, wf_transport_class_t level, const char *where)
{
    const wf_model_params_t *params = &config->params[level];
    printf("%s model %s: alpha %.2f us, overhead %.2f us, beta %.3f ns/byte, gamma %.3f ns/byte\n",
           wf_transport_class_name(level), where, params->alpha_us, params->overhead_us, params->beta_ns_per_byte,
           params->gamma_ns_per_byte);
}

int wf_explain(const wf_explain_request_t *request)
{
    wf_select_config_t config;
    wf_model_input_t input;
    wf_choice_t choice;
    char reason[512];

    if (request->nranks < 1 || request->nranks > (1 << 20) || request->nnodes < 1 ||
        request->nnodes > request->nranks) {
        fprintf(stderr, "weft-info: need 1 <= nodes <= ranks <= 1048576 (got %d ranks, %d nodes)\n",
                request->nranks, request->nnodes);
        return 2;
    }
    if (load_config(&config) != 0 || build_input(request, &input) != 0)
        return 2;
    if (set_levels(request, &input) != 0)
        return 2;
    wf_select_decide(&config, &input, &choice);
    char what[96] = "";
    if (input.coll != WF_COLL_BARRIER)
        snprintf(what, sizeof(what), " (%s %s)", request->datatype, request->op);
    if (input.coll == WF_COLL_ALLGATHER || input.coll == WF_COLL_BROADCAST)
        snprintf(what, sizeof(what), " (%s)", request->datatype);
    printf("%s of %llu bytes%s on %d ranks, %d node%s\n", wf_coll_name(input.coll), (unsigned long long)input.bytes,
           what, input.nranks, input.nnodes, input.nnodes == 1 ? "" : "s");
    print_level(&config, input.intra_class, input.nnodes > 1 ? "inside nodes" : "on the node");
    if (input.nnodes > 1)
        print_level(&config, input.inter_class, "between nodes");
    printf("eager limit %llu, chunk %llu bytes\n\n", (unsigned long long)input.eager_limit,
           (unsigned long long)input.chunk_size);
    print_table(&config, &input, &choice);
    wf_choice_describe(&choice, &config, &input, reason, sizeof(reason));
    printf("\nchoice: %s (%s)\n", wf_algo_name(choice.algo), reason);
    return 0;
}
