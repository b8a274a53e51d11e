/*
 * The selection configuration of a communicator (WEFT_ALGO and WEFT_TUNING_FILE, parsed at init)
 * and the choice for each call, logged once per collective, size class and algorithm under TUNE.
 */
#include <stdio.h>
#include <string.h>

#include "coll.h"
#include "log.h"
#include "param.h"

/* Size class of a call for the log: 0 for 0 bytes, else k for 2^(k-1) <= bytes < 2^k. */
static int size_class(uint64_t bytes)
{
    return bytes == 0 ? 0 : 64 - __builtin_clzll(bytes);
}

/* "shm model inside nodes: alpha 2.00 us, ..." for one level. */
static void describe_level(const wf_select_config_t *config, wf_transport_class_t level, const char *where, char *out,
                           size_t outlen)
{
    const wf_model_params_t *params = &config->params[level];
    snprintf(out, outlen, "%s model %s: alpha %.2f us, overhead %.2f us, beta %.3f ns/byte, gamma %.3f ns/byte",
             wf_transport_class_name(level), where, params->alpha_us, params->overhead_us, params->beta_ns_per_byte,
             params->gamma_ns_per_byte);
}

static void log_configuration(weft_comm_t comm)
{
    const wf_select_config_t *config = &comm->select;
    char intra[160], inter[160] = "";
    char allowed[512] = "";
    size_t used = 0;

    for (int c = 0; c < WF_COLL_COUNT && used < sizeof(allowed); c++) {
        if (!config->restricted[c])
            continue;
        used += (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s%s:", used > 0 ? "; " : "",
                                 wf_coll_name((wf_coll_t)c));
        for (int a = 0, first = 1; a < WF_ALGO_COUNT && used < sizeof(allowed); a++) {
            if (!(config->allowed[c] & WF_ALGO_BIT(a)))
                continue;
            used += (size_t)snprintf(allowed + used, sizeof(allowed) - used, "%s%s", first ? "" : ",",
                                     wf_algo_name((wf_algo_t)a));
            first = 0;
        }
    }
    describe_level(config, comm->intra_class, comm->nodes.nnodes > 1 ? "inside nodes" : "on this node", intra,
                   sizeof(intra));
    if (comm->nodes.nnodes > 1) {
        inter[0] = ';';
        inter[1] = ' ';
        describe_level(config, comm->inter_class, "between nodes", inter + 2, sizeof(inter) - 2);
    }
    WF_INFO(WF_SUB_TUNE, "algorithm selection: %s; %s%s; tuning file %s (%d rules)",
            allowed[0] ? allowed : "every algorithm allowed", intra, inter,
            config->tuning_file[0] ? config->tuning_file : "none", config->nrules);
}

weft_result_t wf_select_init(weft_comm_t comm)
{
    char err[768];
    wf_select_config_t *config = &comm->select;
    const char *path = wf_param_str(WF_PARAM_TUNING_FILE);

    wf_select_config_default(config);
    if (wf_algo_parse(wf_param_str(WF_PARAM_ALGO), config, err, sizeof(err)) != 0 ||
        (path[0] != '\0' && wf_tuning_parse_file(path, config, err, sizeof(err)) != 0)) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: %s", comm->rank, err);
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    /*
     * Shared memory: weft's own transport or libfabric's shm provider, which serve one node only.
     * The route transport uses weft's shm inside nodes and libfabric between them, and libfabric
     * alone (any other provider) goes through the network even between ranks of one node.
     */
    int shm = comm->ops == &wf_shm_transport || strcmp(comm->ops->provider_name(comm->transport), "shm") == 0;
    comm->transport_class = shm ? WF_TRANSPORT_CLASS_SHM : WF_TRANSPORT_CLASS_NET;
    comm->intra_class = shm || comm->ops == &wf_route_transport ? WF_TRANSPORT_CLASS_SHM : WF_TRANSPORT_CLASS_NET;
    comm->inter_class = comm->nodes.nnodes > 1 ? WF_TRANSPORT_CLASS_NET : comm->intra_class;
    comm->select_hash = wf_select_hash(config);
    for (int c = 0; c < WF_COLL_COUNT; c++)
        comm->select_memo[c].valid = 0;
    log_configuration(comm);
    return WEFT_SUCCESS;
}

/* Log a choice the first time this collective, size class and algorithm come together. */
static void log_choice(weft_comm_t comm, const wf_model_input_t *input, const wf_choice_t *choice)
{
    int size = size_class(input->bytes);
    uint16_t bit = (uint16_t)(1u << choice->algo);
    if (comm->tune_logged[input->coll][size] & bit)
        return;
    comm->tune_logged[input->coll][size] |= bit;

    char reason[512];
    wf_choice_describe(choice, &comm->select, input, reason, sizeof(reason));
    if (choice->kind == WF_CHOICE_FALLBACK)
        WF_WARN(WF_SUB_TUNE, "%s of %llu bytes on %d ranks uses %s: %s", wf_coll_name(input->coll),
                (unsigned long long)input->bytes, input->nranks, wf_algo_name(choice->algo), reason);
    else
        WF_INFO(WF_SUB_TUNE, "%s of %llu bytes on %d ranks uses %s: %s", wf_coll_name(input->coll),
                (unsigned long long)input->bytes, input->nranks, wf_algo_name(choice->algo), reason);
}

static wf_algo_t select_for(weft_comm_t comm, wf_coll_t coll, uint64_t bytes, uint64_t block_bytes,
                            double partial_scale, int uneven)
{
    /* Same inputs as the previous call of this collective: same choice, already logged. */
    if (comm->select_memo[coll].valid && comm->select_memo[coll].bytes == bytes &&
        comm->select_memo[coll].block_bytes == block_bytes && comm->select_memo[coll].partial_scale == partial_scale &&
        comm->select_memo[coll].uneven == uneven)
        return comm->select_memo[coll].algo;
    wf_model_input_t input = {.coll = coll,
                              .bytes = bytes,
                              .block_bytes = block_bytes,
                              .nranks = comm->nranks,
                              .nnodes = comm->nodes.nnodes,
                              .ranks_per_node = comm->max_ranks_per_node,
                              .partial_scale = partial_scale,
                              .can_read = comm->can_read,
                              .eager_limit = comm->eager_limit,
                              .chunk_size = comm->chunk_size,
                              .intra_class = comm->intra_class,
                              .inter_class = comm->inter_class,
                              .uneven = uneven};
    wf_choice_t choice;
    wf_select_decide(&comm->select, &input, &choice);
    log_choice(comm, &input, &choice);
    comm->select_memo[coll].valid = 1;
    comm->select_memo[coll].uneven = uneven;
    comm->select_memo[coll].bytes = bytes;
    comm->select_memo[coll].block_bytes = block_bytes;
    comm->select_memo[coll].partial_scale = partial_scale;
    comm->select_memo[coll].algo = choice.algo;
    return choice.algo;
}

wf_algo_t wf_select(weft_comm_t comm, wf_coll_t coll, uint64_t bytes, uint64_t block_bytes, double partial_scale)
{
    return select_for(comm, coll, bytes, block_bytes, partial_scale, 0);
}

wf_algo_t wf_select_uneven(weft_comm_t comm, wf_coll_t coll, uint64_t bytes, uint64_t block_bytes,
                           double partial_scale)
{
    return select_for(comm, coll, bytes, block_bytes, partial_scale, 1);
}
