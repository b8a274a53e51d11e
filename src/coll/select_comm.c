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

static void log_configuration(weft_comm_t comm)
{
    const wf_select_config_t *config = &comm->select;
    const wf_model_params_t *params = &config->params[comm->transport_class];
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
    WF_INFO(WF_SUB_TUNE, "algorithm selection: %s; %s model: alpha %.2f us, overhead %.2f us, beta %.3f ns/byte, "
            "gamma %.3f ns/byte; tuning file %s (%d rules)", allowed[0] ? allowed : "every algorithm allowed",
            comm->transport_class == WF_TRANSPORT_CLASS_SHM ? "shm" : "net", params->alpha_us, params->overhead_us,
            params->beta_ns_per_byte, params->gamma_ns_per_byte,
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
    /* Shared memory: weft's own transport or libfabric's shm provider; the route counts as network. */
    int shm = comm->ops == &wf_shm_transport || strcmp(comm->ops->provider_name(comm->transport), "shm") == 0;
    comm->transport_class = shm ? WF_TRANSPORT_CLASS_SHM : WF_TRANSPORT_CLASS_NET;
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

wf_algo_t wf_select(weft_comm_t comm, wf_coll_t coll, uint64_t bytes, uint64_t block_bytes, double partial_scale)
{
    /* Same inputs as the previous call of this collective: same choice, already logged. */
    if (comm->select_memo[coll].valid && comm->select_memo[coll].bytes == bytes &&
        comm->select_memo[coll].block_bytes == block_bytes && comm->select_memo[coll].partial_scale == partial_scale)
        return comm->select_memo[coll].algo;
    wf_model_input_t input = {coll,
                              bytes,
                              block_bytes,
                              comm->nranks,
                              comm->nodes.nnodes,
                              comm->max_ranks_per_node,
                              partial_scale,
                              comm->can_read,
                              comm->eager_limit,
                              comm->chunk_size};
    wf_choice_t choice;
    wf_select_decide(&comm->select, comm->transport_class, &input, &choice);
    log_choice(comm, &input, &choice);
    comm->select_memo[coll].valid = 1;
    comm->select_memo[coll].bytes = bytes;
    comm->select_memo[coll].block_bytes = block_bytes;
    comm->select_memo[coll].partial_scale = partial_scale;
    comm->select_memo[coll].algo = choice.algo;
    return choice.algo;
}
