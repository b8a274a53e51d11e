/*
 * Communicator creation and destruction.
 *
 * Creation runs parameters, bootstrap, topology and the transport endpoint, then one allgather in
 * which every rank publishes its endpoint address, its settings and whether its own setup worked.
 * A failure on one rank thus fails init on every rank instead of leaving the others waiting. Then
 * come connection, the registration cache, the control page, the buffers of mismatch detection and
 * the ring stream.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll/coll.h"
#include "log.h"
#include "memlock.h"
#include "param.h"

#define WF_ADDRESS_MAX 256
#define WF_DRAIN_MS 1000 /* longest wait for a failed communicator's traffic to settle in destroy */

/* What every rank publishes at init. */
typedef struct {
    int32_t status; /* weft_result_t of this rank's local setup */
    int32_t native_precision;
    uint64_t chunk_size;
    uint64_t eager_limit;
    uint64_t address_length;
    uint64_t select_hash; /* of the parsed WEFT_ALGO and WEFT_TUNING_FILE */
    char provider[64];
    unsigned char address[WF_ADDRESS_MAX];
    wf_topo_summary_t topo;
} wf_rank_info_t;

static int cache_register(void *arg, void *ptr, size_t length, wf_mr_t *mr)
{
    weft_comm_t comm = arg;
    return comm->ops->mr_register(comm->transport, ptr, length, mr);
}

static int cache_deregister(void *arg, wf_mr_t *mr)
{
    weft_comm_t comm = arg;
    return comm->ops->mr_deregister(comm->transport, mr);
}

/* Turn the cache on unless WEFT_MR_CACHE_MONITOR=none or the monitor cannot be installed. */
static weft_result_t setup_mr_cache(weft_comm_t comm)
{
    if (strcmp(wf_param_str(WF_PARAM_MR_CACHE_MONITOR), "none") == 0) {
        WF_INFO(WF_SUB_ALLOC, "registration cache off (WEFT_MR_CACHE_MONITOR=none): buffers are registered per call");
        return WEFT_SUCCESS;
    }
    if (wf_memory_monitor_install() != 0) {
        WF_WARN(WF_SUB_ALLOC, "registration cache off: the memory monitor cannot be installed on this platform, so "
                              "buffers are registered on every call");
        return WEFT_SUCCESS;
    }
    wf_mr_cache_config_t config = {(size_t)wf_param_int(WF_PARAM_MR_CACHE_SIZE), cache_register, cache_deregister,
                                   comm, 1};
    if (wf_mr_cache_create(&config, &comm->mr_cache) != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: cannot create the registration cache", comm->rank);
        return WEFT_ERR_NO_MEMORY;
    }
    return WEFT_SUCCESS;
}

static weft_result_t setup_control(weft_comm_t comm)
{
    comm->control = aligned_alloc(4096, 4096);
    comm->arrivals = calloc(WF_TOKENS, sizeof(uint32_t));
    if (comm->control == NULL || comm->arrivals == NULL) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: out of memory for the control page", comm->rank);
        return WEFT_ERR_NO_MEMORY;
    }
    memset(comm->control, 0, 4096);
    if (comm->ops->mr_register(comm->transport, comm->control, 4096, &comm->control_mr) != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: cannot register the control page: %.400s",
                 comm->rank, comm->ops->error_string(comm->transport));
        free(comm->control);
        comm->control = NULL;
        return WEFT_ERR_TRANSPORT;
    }
    comm->control_desc = comm->needs_local_mr ? comm->control_mr.desc : NULL;
    return WEFT_SUCCESS;
}

/*
 * Fill the information this rank publishes: settings and topology. Failures are reported in
 * mine->status and comm->last_error, not returned, so every rank learns of them in round 2.
 */
static void setup_local(weft_comm_t comm, wf_rank_info_t *mine)
{
    char err[2048] = "";
    wf_topo_local_t local;

    memset(mine, 0, sizeof(*mine));
    mine->chunk_size = (uint64_t)wf_param_int(WF_PARAM_CHUNK_SIZE);
    mine->eager_limit = (uint64_t)wf_param_int(WF_PARAM_EAGER_LIMIT);
    mine->native_precision = strcmp(wf_param_str(WF_PARAM_REDUCE_PRECISION), "native") == 0;
    mine->status = WEFT_SUCCESS;

    int rc = wf_topo_discover(&local, err, sizeof(err));
    wf_topo_log(&local);
    wf_topo_fill_summary(&local, &mine->topo);
    wf_topo_local_free(&local);
    if (rc == WF_TOPO_ERR_HWLOC) {
        /* The node identity does not need hwloc, so ranks are still grouped by node. */
        WF_WARN(WF_SUB_TOPO, "rank %d: %s; binding, NUMA node and NIC choice are unknown", comm->rank, err);
    } else if (rc == WF_TOPO_ERR_NIC) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: %.1000s", comm->rank, err);
        mine->status = WEFT_ERR_INVALID_ARGUMENT;
    }
    /* The transport needs to know whether every rank is local, which needs everyone's topology first. */
}

static int topology_dumped; /* WEFT_TOPO_DUMP_FILE describes the first communicator of the process only */

/* Write WEFT_TOPO_DUMP_FILE from the first rank of each node; a failure is a warning, not an error. */
static void dump_topology(weft_comm_t comm, const wf_topo_summary_t *summaries)
{
    const char *pattern = wf_param_str(WF_PARAM_TOPO_DUMP_FILE);
    char err[512] = "";
    char path[4200] = "";

    if (pattern[0] == '\0' || __atomic_exchange_n(&topology_dumped, 1, __ATOMIC_ACQ_REL))
        return;
    if (comm->nodes.local_rank[comm->rank] != 0)
        return;
    if (wf_topo_dump(pattern, comm->rank, &comm->nodes, summaries, path, sizeof(path), err, sizeof(err)) != 0)
        WF_WARN(WF_SUB_TOPO, "rank %d: no topology dump: %s", comm->rank, err);
    else
        WF_INFO(WF_SUB_TOPO, "wrote the topology dump %s.json and %s.xml", path, path);
}

static weft_result_t open_transport(weft_comm_t comm, wf_rank_info_t *mine)
{
    weft_result_t result = wf_comm_choose_transport(comm);
    if (result != WEFT_SUCCESS)
        return result;
    wf_transport_config_t config = {.rank = comm->rank,
                                    .nranks = comm->nranks,
                                    .single_node = comm->nodes.nnodes == 1,
                                    .provider = wf_param_str(WF_PARAM_OFI_PROVIDER),
                                    .on_remote_write = wf_comm_on_remote_write,
                                    .should_stop = wf_comm_should_stop,
                                    .callback_arg = comm,
                                    .node_of_rank = comm->nodes.node_of_rank,
                                    .shm_cma_disabled = wf_param_enum(WF_PARAM_SHM_CMA) == 1};
    /* Local rank l takes rail l modulo the equally near ones, so a node's ranks spread over its NICs. */
    const wf_topo_summary_t *me = &comm->summaries[comm->rank];
    if (me->nrails > 0) {
        const wf_topo_rail_t *rail = &me->rails[comm->nodes.local_rank[comm->rank] % me->nrails];
        config.rail = rail->name;
        config.rail_port = rail->port;
    }
    char err[512] = "";
    int rc;
    if (comm->ops == &wf_route_transport) {
        wf_route_parts_t parts = {{&wf_shm_transport, comm->inter_ops}, {NULL, config.provider}};
        rc = wf_route_create(&config, &parts, &comm->transport, err, sizeof(err));
    } else {
        rc = comm->ops->create(&config, &comm->transport, err, sizeof(err));
    }
    if (rc != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d could not open its %s transport: %.400s",
                 comm->rank, comm->ops->name, err);
        return WEFT_ERR_TRANSPORT;
    }
    size_t length = sizeof(mine->address);
    if (comm->ops->get_address(comm->transport, mine->address, &length) != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d could not read its endpoint address: %.400s",
                 comm->rank, comm->ops->error_string(comm->transport));
        return WEFT_ERR_TRANSPORT;
    }
    mine->address_length = length;
    snprintf(mine->provider, sizeof(mine->provider), "%s", comm->ops->provider_name(comm->transport));
    comm->needs_local_mr = comm->ops->needs_local_mr(comm->transport);
    comm->max_message = comm->ops->max_message_size(comm->transport);
    return WEFT_SUCCESS;
}

/* Every rank checks every other rank's status and settings, so all reach the same verdict. */
static weft_result_t check_agreement(weft_comm_t comm, const wf_rank_info_t *all)
{
    const wf_rank_info_t *first = &all[0];
    for (int r = 0; r < comm->nranks; r++) {
        const wf_rank_info_t *info = &all[r];
        if (all[comm->rank].status != WEFT_SUCCESS)
            return (weft_result_t)all[comm->rank].status; /* last_error already contains the reason */
        if (info->status != WEFT_SUCCESS) {
            snprintf(comm->last_error, sizeof(comm->last_error),
                     "rank %d failed its local setup (%s), so the communicator cannot be created; see "
                     "that rank's log", r, weft_result_string((weft_result_t)info->status));
            return WEFT_ERR_REMOTE;
        }
        if (info->select_hash != first->select_hash) {
            snprintf(comm->last_error, sizeof(comm->last_error),
                     "ranks 0 and %d disagree on WEFT_ALGO or the contents of WEFT_TUNING_FILE, so they could "
                     "choose different algorithms for the same call; set the same values on every rank", r);
            return WEFT_ERR_INVALID_ARGUMENT;
        }
        const char *differs = info->chunk_size != first->chunk_size           ? "WEFT_CHUNK_SIZE"
                              : info->eager_limit != first->eager_limit       ? "WEFT_EAGER_LIMIT"
                              : info->native_precision != first->native_precision ? "WEFT_REDUCE_PRECISION"
                              : strcmp(info->provider, first->provider) != 0  ? "the fabric provider"
                                                                              : NULL;
        if (differs != NULL) {
            snprintf(comm->last_error, sizeof(comm->last_error),
                     "ranks 0 and %d disagree on %s (rank 0: chunk %llu, eager %llu, %s precision, provider %s; "
                     "rank %d: chunk %llu, eager %llu, %s precision, provider %s); set the same WEFT_* values on "
                     "every rank", r, differs, (unsigned long long)first->chunk_size,
                     (unsigned long long)first->eager_limit, first->native_precision ? "native" : "float32",
                     first->provider, r, (unsigned long long)info->chunk_size, (unsigned long long)info->eager_limit,
                     info->native_precision ? "native" : "float32", info->provider);
            return WEFT_ERR_INVALID_ARGUMENT;
        }
    }
    return WEFT_SUCCESS;
}

/* Connect every endpoint with the published addresses and take over the agreed settings. */
static weft_result_t apply_rank_info(weft_comm_t comm, const wf_rank_info_t *all)
{
    comm->chunk_size = (size_t)all[0].chunk_size;
    comm->eager_limit = (size_t)all[0].eager_limit;
    comm->native_precision = all[0].native_precision;
    /* A local setting: it decides only where scratch memory comes from, never an algorithm. */
    comm->scratch_keep_limit = (size_t)wf_param_int(WF_PARAM_SCRATCH_KEEP);
    if (comm->scratch_keep_limit < 16 * comm->chunk_size)
        comm->scratch_keep_limit = 16 * comm->chunk_size;
    for (int r = 0; r < comm->nranks; r++)
        if (comm->nodes.local_size[r] > comm->max_ranks_per_node)
            comm->max_ranks_per_node = comm->nodes.local_size[r];
    unsigned char *addresses = calloc((unsigned)comm->nranks, WF_ADDRESS_MAX);
    if (addresses == NULL) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: out of memory at init", comm->rank);
        return WEFT_ERR_NO_MEMORY;
    }
    for (int r = 0; r < comm->nranks; r++)
        memcpy(addresses + (size_t)r * WF_ADDRESS_MAX, all[r].address, WF_ADDRESS_MAX);
    int rc = comm->ops->connect(comm->transport, addresses, WF_ADDRESS_MAX);
    free(addresses);
    if (rc != 0) {
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d could not insert the peers' addresses: %.400s",
                 comm->rank, comm->ops->error_string(comm->transport));
        return WEFT_ERR_TRANSPORT;
    }
    /*
     * NOTE: ranks decide this alone. Were cross-memory attach allowed on some ranks of a node and
     * not on others, they could choose different algorithms and time out.
     */
    comm->can_read = comm->ops->read != NULL && comm->ops->can_read != NULL && comm->ops->can_read(comm->transport);
    return WEFT_SUCCESS;
}

static weft_result_t bootstrap_allgather(weft_comm_t comm, const void *mine, void *all, size_t length)
{
    weft_result_t result = comm->bootstrap->allgather(comm->bootstrap, mine, all, length);
    if (result != WEFT_SUCCESS)
        snprintf(comm->last_error, sizeof(comm->last_error), "rank %d: %.480s", comm->rank,
                 wf_bootstrap_last_error(comm->bootstrap));
    return result;
}

/* Exchange topology, open the transport, exchange addresses and settings, connect. */
static weft_result_t setup_transport(weft_comm_t comm)
{
    wf_rank_info_t mine;
    wf_rank_info_t *all = calloc((unsigned)comm->nranks, sizeof(*all));
    if (all == NULL)
        return WEFT_ERR_NO_MEMORY;
    setup_local(comm, &mine);

    /* Round 1: topology, to know whether every rank shares this node (the transport default depends on it). */
    weft_result_t result = bootstrap_allgather(comm, &mine, all, sizeof(mine));
    if (result == WEFT_SUCCESS) {
        comm->summaries = calloc((unsigned)comm->nranks, sizeof(*comm->summaries));
        for (int r = 0; comm->summaries != NULL && r < comm->nranks; r++) {
            comm->summaries[r] = all[r].topo;
            wf_topo_summary_terminate(&comm->summaries[r]);
        }
        if (comm->summaries == NULL || wf_node_map_build(&comm->nodes, comm->summaries, comm->nranks) != 0)
            result = WEFT_ERR_NO_MEMORY;
        else if (mine.status == WEFT_SUCCESS)
            dump_topology(comm, comm->summaries);
    }
    /* Round 2: endpoint addresses, settings and each rank's verdict on its own setup. */
    if (result == WEFT_SUCCESS) {
        if (mine.status == WEFT_SUCCESS)
            mine.status = open_transport(comm, &mine);
        if (mine.status == WEFT_SUCCESS)
            mine.status = wf_select_init(comm);
        mine.select_hash = comm->select_hash;
        result = bootstrap_allgather(comm, &mine, all, sizeof(mine));
    }
    if (result == WEFT_SUCCESS)
        result = check_agreement(comm, all);
    if (result == WEFT_SUCCESS)
        result = apply_rank_info(comm, all);
    free(all);
    return result;
}

static void log_layout(weft_comm_t comm)
{
    int node = comm->nodes.node_of_rank[comm->rank];
    WF_INFO(WF_SUB_INIT,
            "weft %s rank %d of %d on %s: node %d of %d, local rank %d of %d; bootstrap %s, provider %s%s, chunk %zu "
            "bytes, eager limit %zu bytes, kernels %s",
            weft_version(), comm->rank, comm->nranks, comm->summaries[comm->rank].hostname, node, comm->nodes.nnodes,
            comm->nodes.local_rank[comm->rank], comm->nodes.local_size[comm->rank], comm->bootstrap->method,
            comm->ops->provider_name(comm->transport), comm->needs_local_mr ? " (local registration)" : "",
            comm->chunk_size, comm->eager_limit, wf_reduce_isa());
}

/*
 * Return an upper estimate of the bytes this communicator registers for its own buffers. The sum
 * has five terms:
 * - the kept scratch, one per use, up to WEFT_SCRATCH_KEEP each;
 * - the ring slots and staging;
 * - the control page;
 * - five buffers of a header plus the eager limit, for mismatch signatures and group step staging;
 * - the receive area of the direct algorithms.
 */
static uint64_t memlock_estimate(const weft_comm_t comm)
{
    uint64_t eager_with_header = comm->eager_limit + 4096;
    return (uint64_t)WF_SCRATCH_USES * comm->scratch_keep_limit + 2u * WF_STREAM_SLOTS * (uint64_t)comm->chunk_size +
           4096u + 5u * eager_with_header + (uint64_t)(comm->nranks + 1) * comm->eager_limit;
}

static int memlock_checked; /* the limit is the process's, so the first communicator that pins memory checks it */

static void check_memlock(weft_comm_t comm)
{
    if (!wf_memlock_provider_pins(comm->ops->provider_name(comm->transport)) ||
        __atomic_exchange_n(&memlock_checked, 1, __ATOMIC_RELAXED))
        return;
    wf_memlock_check(comm->rank, memlock_estimate(comm), NULL, 0);
}

/* Finish creating comm around an established bootstrap; on failure the caller destroys comm. */
static weft_result_t comm_setup(weft_comm_t comm)
{
    comm->rank = comm->bootstrap->rank;
    comm->nranks = comm->bootstrap->nranks;
    comm->timeout_s = (int)wf_param_int(WF_PARAM_TIMEOUT);
    comm->coll_name = "init";
    wf_log_set_rank(comm->rank);
    if (comm->nranks > WF_MAX_RANKS) {
        snprintf(comm->last_error, sizeof(comm->last_error), "%d ranks exceed weft's limit of %d ranks", comm->nranks,
                 WF_MAX_RANKS);
        return WEFT_ERR_UNSUPPORTED;
    }

    weft_result_t result = setup_transport(comm);
    if (result == WEFT_SUCCESS)
        check_memlock(comm);
    if (result == WEFT_SUCCESS)
        wf_comm_set_spin(comm);
    if (result == WEFT_SUCCESS)
        result = setup_mr_cache(comm);
    if (result == WEFT_SUCCESS)
        result = setup_control(comm);
    if (result == WEFT_SUCCESS)
        result = wf_mismatch_init(comm);
    if (result == WEFT_SUCCESS)
        result = wf_stream_init(comm);
    if (result == WEFT_SUCCESS && (result = wf_exec_init(comm)) == WEFT_SUCCESS)
        comm->exec_ready = 1;
    if (result == WEFT_SUCCESS)
        wf_status_start(comm);
    if (result == WEFT_SUCCESS)
        log_layout(comm);
    return result;
}

static void comm_free(weft_comm_t comm)
{
    wf_status_stop(comm);
    if (comm->exec_ready)
        wf_exec_fini(comm);
    comm->exec_ready = 0;
    if (comm->transport != NULL) {
        /* A failed collective may leave operations posted and peers still sending; let that settle first. */
        if (comm->failure != WEFT_SUCCESS)
            comm->ops->drain(comm->transport, WF_DRAIN_MS);
        wf_stream_fini(comm);
        wf_mismatch_fini(comm);
        if (comm->eager_registered)
            comm->ops->mr_deregister(comm->transport, &comm->eager_mr);
        for (int i = 0; i < WF_SCRATCH_USES; i++)
            if (comm->kept_scratch[i].base != NULL)
                comm->ops->mr_deregister(comm->transport, &comm->kept_scratch[i].mr);
        if (comm->step_stage != NULL)
            comm->ops->mr_deregister(comm->transport, &comm->step_stage_mr);
        if (comm->control != NULL)
            comm->ops->mr_deregister(comm->transport, &comm->control_mr);
        if (comm->mr_cache != NULL)
            wf_mr_cache_destroy(comm->mr_cache);
        comm->ops->destroy(comm->transport);
    }
    /* Memory that peers write into is freed only now: after a failure a write may be in flight until the endpoint closes. */
    wf_stream_free(comm);
    free(comm->eager_buffer);
    for (int i = 0; i < WF_SCRATCH_USES; i++) {
        free(comm->kept_scratch[i].base);
        free(comm->failed_scratch[i]);
    }
    free(comm->step_stage);
    free(comm->sig_halves[0]); /* sig_halves[1] and sig_out are in the same block */
    free(comm->report_xfers);
    free(comm->pack_buffer);
    free(comm->control);
    free((void *)comm->arrivals);
    free(comm->summaries);
    wf_node_map_free(&comm->nodes);
    if (comm->bootstrap != NULL)
        comm->bootstrap->destroy(comm->bootstrap);
    free(comm);
}

/* Load parameters and logging; shared first step of every entry point that creates something. */
static weft_result_t load_parameters(void)
{
    char err[512];
    if (wf_param_load(err, sizeof(err)) != 0) {
        wf_set_init_error("%s", err);
        wf_log_init();
        WF_ERROR(WF_SUB_INIT, "%s", err);
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    wf_log_init();
    wf_param_log_overrides();
    return WEFT_SUCCESS;
}

static weft_result_t comm_create(weft_comm_t *out, wf_bootstrap_t *bootstrap)
{
    weft_comm_t comm = calloc(1, sizeof(*comm));
    if (comm == NULL) {
        bootstrap->destroy(bootstrap);
        wf_set_init_error("out of memory creating a communicator");
        return WEFT_ERR_NO_MEMORY;
    }
    comm->bootstrap = bootstrap;
    weft_result_t result = comm_setup(comm);
    if (result != WEFT_SUCCESS) {
        wf_set_init_error("%s", comm->last_error[0] ? comm->last_error : weft_result_string(result));
        WF_ERROR(WF_SUB_INIT, "communicator creation failed: %s", wf_init_error());
        comm_free(comm);
        return result;
    }
    *out = comm;
    return WEFT_SUCCESS;
}

WEFT_API weft_result_t weft_comm_init_env(weft_comm_t *comm)
{
    if (comm == NULL) {
        wf_set_init_error("weft_comm_init_env: comm is NULL; pass the address of a weft_comm_t");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    *comm = NULL;
    weft_result_t result = load_parameters();
    if (result != WEFT_SUCCESS)
        return result;
    char err[512] = "";
    wf_bootstrap_t *bootstrap = NULL;
    result = wf_bootstrap_from_env(&bootstrap, (int)wf_param_int(WF_PARAM_TIMEOUT), err, sizeof(err));
    if (result != WEFT_SUCCESS) {
        wf_set_init_error("%s", err);
        WF_ERROR(WF_SUB_INIT, "%s", err);
        return result;
    }
    return comm_create(comm, bootstrap);
}

WEFT_API weft_result_t weft_get_unique_id(weft_unique_id_t *id)
{
    if (id == NULL) {
        wf_set_init_error("weft_get_unique_id: id is NULL");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    weft_result_t result = load_parameters();
    if (result != WEFT_SUCCESS)
        return result;
    char err[512] = "";
    result = wf_bootstrap_create_id(id, err, sizeof(err));
    if (result != WEFT_SUCCESS) {
        wf_set_init_error("%s", err);
        WF_ERROR(WF_SUB_INIT, "%s", err);
    }
    return result;
}

/* Create a communicator from a unique id; the shared step of weft_comm_init_rank and weft_comm_split. */
weft_result_t wf_comm_create_from_id(weft_comm_t *comm, int nranks, const weft_unique_id_t *id, int rank)
{
    weft_result_t result = load_parameters();
    if (result != WEFT_SUCCESS)
        return result;
    char err[512] = "";
    wf_bootstrap_t *bootstrap = NULL;
    result = wf_bootstrap_from_id(&bootstrap, id, rank, nranks, (int)wf_param_int(WF_PARAM_TIMEOUT), err, sizeof(err));
    if (result != WEFT_SUCCESS) {
        wf_set_init_error("%s", err);
        WF_ERROR(WF_SUB_INIT, "%s", err);
        return result;
    }
    return comm_create(comm, bootstrap);
}

WEFT_API weft_result_t weft_comm_init_rank(weft_comm_t *comm, int nranks, const weft_unique_id_t *id, int rank)
{
    if (comm == NULL || id == NULL) {
        wf_set_init_error("weft_comm_init_rank: %s is NULL", comm == NULL ? "comm" : "id");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    *comm = NULL;
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        wf_set_init_error("weft_comm_init_rank: rank %d with nranks %d is invalid; need 0 <= rank < nranks", rank,
                          nranks);
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    return wf_comm_create_from_id(comm, nranks, id, rank);
}

WEFT_API weft_result_t weft_comm_abort(weft_comm_t comm)
{
    if (comm == NULL) {
        wf_set_init_error("weft_comm_abort: comm is NULL");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    /* Only a flag: the thread inside a collective notices it at its next poll and fails there. */
    __atomic_store_n(&comm->aborted, 1, __ATOMIC_RELEASE);
    WF_WARN(WF_SUB_INIT, "rank %d: weft_comm_abort called; calls on this communicator now fail with "
                         "WEFT_ERR_ABORTED", comm->rank);
    return WEFT_SUCCESS;
}

WEFT_API weft_result_t weft_comm_destroy(weft_comm_t comm)
{
    if (comm == NULL)
        return WEFT_SUCCESS;
    if (__atomic_load_n(&comm->aborted, __ATOMIC_ACQUIRE)) {
        comm->failure = comm->failure != WEFT_SUCCESS ? comm->failure : WEFT_ERR_ABORTED;
        comm->bootstrap->skip_goodbye = 1; /* the other ranks learn at once that this rank left */
    }
    /* Operations still queued run to completion (or fail) before anything is freed. */
    if (comm->exec_ready)
        wf_exec_fini(comm);
    comm->exec_ready = 0;
    wf_status_stop(comm); /* its frames must not mix with the closing barrier's */
    weft_result_t result = WEFT_SUCCESS;
    /* A healthy communicator agrees first, so no peer still writes into memory we free. */
    if (comm->failure == WEFT_SUCCESS && comm->nranks > 1) {
        result = comm->bootstrap->barrier(comm->bootstrap);
        if (result != WEFT_SUCCESS)
            WF_WARN(WF_SUB_INIT, "rank %d: the closing barrier of weft_comm_destroy failed (%s: %s); freeing anyway",
                    comm->rank, weft_result_string(result), wf_bootstrap_last_error(comm->bootstrap));
    }
    comm_free(comm);
    return result;
}
