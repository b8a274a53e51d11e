/*
 * Choosing a communicator's transport from WEFT_TRANSPORT, the node layout and WEFT_OFI_PROVIDER.
 *
 * auto picks weft's own shared-memory transport when every rank of the communicator is on this
 * node, the communicator fits its rank limit, and WEFT_OFI_PROVIDER names no provider (a user who
 * names one wants libfabric). Between nodes it picks weft's verbs transport when every rank's
 * topology found an RDMA device port and WEFT_OFI_PROVIDER is unset, else libfabric. On several
 * nodes with two or more ranks on one of them, it picks the route transport: weft's shm inside
 * nodes, that network transport between them. shm, ofi and verbs force one transport. Every rank
 * makes the same choice from the node map and the topology summaries the bootstrap shared, unless
 * the ranks' settings differ, which the provider name in the init allgather then reveals.
 */
#include <stdio.h>
#include <string.h>

#include "comm.h"
#include "log.h"
#include "param.h"

enum { TRANSPORT_AUTO, TRANSPORT_OFI, TRANSPORT_SHM, TRANSPORT_VERBS }; /* order of WEFT_TRANSPORT's choices */

#define LISTED_NODES 4 /* nodes a message lists before "..." */
#define LISTED_RANKS 8 /* ranks per node a message lists */

/* First rank on node, or -1. */
static int first_rank_of(const weft_comm_t comm, int node)
{
    for (int r = 0; r < comm->nranks; r++)
        if (comm->nodes.node_of_rank[r] == node)
            return r;
    return -1;
}

/* Name of node for messages: its host name, or its node identity when another node shares the name. */
static const char *node_name(const weft_comm_t comm, int node)
{
    const wf_topo_summary_t *mine = &comm->summaries[first_rank_of(comm, node)];
    for (int other = 0; other < comm->nodes.nnodes; other++) {
        if (other != node && strcmp(comm->summaries[first_rank_of(comm, other)].hostname, mine->hostname) == 0)
            return mine->hostid;
    }
    return mine->hostname;
}

/* Write "host (ranks a, b, c); ..." for the first few nodes to out. */
static void describe_nodes(const weft_comm_t comm, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int node = 0; node < comm->nodes.nnodes && node < LISTED_NODES && used < outlen; node++) {
        int listed = 0;
        for (int r = 0; r < comm->nranks && used < outlen; r++) {
            if (comm->nodes.node_of_rank[r] != node)
                continue;
            if (listed == 0)
                snprintf(out + used, outlen - used, "%s%s (ranks %d", node > 0 ? "; " : "", node_name(comm, node), r);
            else if (listed < LISTED_RANKS)
                snprintf(out + used, outlen - used, ", %d", r);
            else if (listed == LISTED_RANKS)
                snprintf(out + used, outlen - used, ", ...");
            listed++;
            used = strlen(out);
        }
        if (used < outlen)
            snprintf(out + used, outlen - used, ")");
        used = strlen(out);
    }
    if (comm->nodes.nnodes > LISTED_NODES && used < outlen)
        snprintf(out + used, outlen - used, "; ...");
}

static void log_choice(const weft_comm_t comm, const wf_transport_ops_t *ops, const char *reason)
{
    /* Every communicator of a job usually makes the same choice, so INFO shows it once per process. */
    static int logged;
    if (__atomic_exchange_n(&logged, 1, __ATOMIC_RELAXED) == 0)
        WF_INFO(WF_SUB_NET, "rank %d: transport %s, because %s", comm->rank, ops->name, reason);
    else
        WF_TRACE(WF_SUB_NET, "rank %d: transport %s, because %s", comm->rank, ops->name, reason);
}

/*
 * Return the transport for traffic between nodes, with the reason in why. It is verbs when weft
 * was built with it, every rank found an RDMA port and no libfabric provider is named. Otherwise it is libfabric.
 */
static const wf_transport_ops_t *network_transport(const weft_comm_t comm, const char *provider, char *why,
                                                   size_t whylen)
{
#ifdef WEFT_HAVE_VERBS
    int without_device = -1;
    for (int r = 0; r < comm->nranks && without_device < 0; r++)
        if (comm->summaries[r].nrails == 0)
            without_device = r;
    if (provider[0] == '\0' && without_device < 0) {
        snprintf(why, whylen, "weft's verbs transport between nodes, since every rank has an RDMA port (rank %d: %s)",
                 comm->rank, comm->summaries[comm->rank].rails[0].name);
        return &wf_verbs_transport;
    }
    if (provider[0] != '\0')
        snprintf(why, whylen, "libfabric (%.60s from WEFT_OFI_PROVIDER) between nodes", provider);
    else
        snprintf(why, whylen, "libfabric between nodes, since rank %d has no RDMA device port for verbs",
                 without_device);
#else
    snprintf(why, whylen, "libfabric between nodes (this libweft was built without libibverbs)");
#endif
    return &wf_ofi_transport;
}

weft_result_t wf_comm_choose_transport(weft_comm_t comm)
{
    int requested = wf_param_enum(WF_PARAM_TRANSPORT);
    const char *provider = wf_param_str(WF_PARAM_OFI_PROVIDER);
    int single_node = comm->nodes.nnodes == 1;
    char reason[256], network[160];

    if (requested == TRANSPORT_SHM && !single_node) {
        char nodes[400];
        describe_nodes(comm, nodes, sizeof(nodes));
        snprintf(comm->last_error, sizeof(comm->last_error),
                 "WEFT_TRANSPORT=shm needs every rank of the communicator on one node, but its %d ranks are on %d "
                 "nodes: %s; set WEFT_TRANSPORT=auto or ofi", comm->nranks, comm->nodes.nnodes, nodes);
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    if (requested == TRANSPORT_SHM) {
        comm->ops = &wf_shm_transport;
        snprintf(reason, sizeof(reason), "WEFT_TRANSPORT=shm (from %s)", wf_param_origin(WF_PARAM_TRANSPORT));
    } else if (requested == TRANSPORT_OFI) {
        comm->ops = &wf_ofi_transport;
        snprintf(reason, sizeof(reason), "WEFT_TRANSPORT=ofi (from %s)", wf_param_origin(WF_PARAM_TRANSPORT));
    } else if (requested == TRANSPORT_VERBS) {
#ifdef WEFT_HAVE_VERBS
        comm->ops = &wf_verbs_transport;
        snprintf(reason, sizeof(reason), "WEFT_TRANSPORT=verbs (from %s)", wf_param_origin(WF_PARAM_TRANSPORT));
#else
        snprintf(comm->last_error, sizeof(comm->last_error),
                 "rank %d: WEFT_TRANSPORT=verbs, but this libweft was built without libibverbs; install "
                 "libibverbs-dev and rebuild, or set WEFT_TRANSPORT=ofi", comm->rank);
        return WEFT_ERR_INVALID_ARGUMENT;
#endif
    } else if (!single_node && comm->nodes.max_local_size > 1 && comm->nranks <= WF_SHM_MAX_RANKS) {
        comm->ops = &wf_route_transport;
        comm->inter_ops = network_transport(comm, provider, network, sizeof(network));
        snprintf(reason, sizeof(reason), "the ranks are on %d nodes, up to %d on one: weft's shm transport inside "
                 "each node, %s", comm->nodes.nnodes, comm->nodes.max_local_size, network);
    } else if (!single_node) {
        comm->ops = network_transport(comm, provider, network, sizeof(network));
        snprintf(reason, sizeof(reason), "the ranks are on %d nodes, one on each: %s", comm->nodes.nnodes, network);
    } else if (provider[0] != '\0') {
        comm->ops = &wf_ofi_transport;
        snprintf(reason, sizeof(reason), "WEFT_OFI_PROVIDER=%.100s (from %s) asks for libfabric", provider,
                 wf_param_origin(WF_PARAM_OFI_PROVIDER));
    } else if (comm->nranks > WF_SHM_MAX_RANKS) {
        comm->ops = &wf_ofi_transport;
        snprintf(reason, sizeof(reason), "the %d ranks exceed the %d ranks weft's shm transport serves", comm->nranks,
                 WF_SHM_MAX_RANKS);
    } else {
        comm->ops = &wf_shm_transport;
        snprintf(reason, sizeof(reason), "every rank is on this node and WEFT_OFI_PROVIDER is not set");
    }
    log_choice(comm, comm->ops, reason);
    return WEFT_SUCCESS;
}
