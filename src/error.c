/*
 * Version, result strings, and the small accessors of the public API.
 */
#include "comm.h"

WEFT_API const char *weft_version(void)
{
    return WEFT_VERSION_STRING;
}

WEFT_API const char *weft_result_string(weft_result_t result)
{
    switch (result) {
    case WEFT_SUCCESS:
        return "success";
    case WEFT_IN_PROGRESS:
        return "operation in progress";
    case WEFT_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case WEFT_ERR_MISMATCH:
        return "ranks called mismatching collectives";
    case WEFT_ERR_TIMEOUT:
        return "timed out";
    case WEFT_ERR_REMOTE:
        return "a peer failed";
    case WEFT_ERR_TRANSPORT:
        return "transport error";
    case WEFT_ERR_NO_MEMORY:
        return "out of memory";
    case WEFT_ERR_UNSUPPORTED:
        return "unsupported";
    case WEFT_ERR_ABORTED:
        return "communicator aborted";
    case WEFT_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown result code";
}

WEFT_API const char *weft_comm_last_error(weft_comm_t comm)
{
    if (comm == NULL || comm->last_error[0] == '\0')
        return comm == NULL ? wf_init_error() : "";
    return comm->last_error;
}

WEFT_API int weft_comm_rank(weft_comm_t comm)
{
    return comm != NULL ? comm->rank : -1;
}

WEFT_API int weft_comm_size(weft_comm_t comm)
{
    return comm != NULL ? comm->nranks : -1;
}

WEFT_API weft_result_t weft_comm_get_stats(weft_comm_t comm, weft_stats_t *stats)
{
    if (comm == NULL) {
        wf_set_init_error("weft_comm_get_stats: comm is NULL");
        return WEFT_ERR_INVALID_ARGUMENT;
    }
    if (stats == NULL)
        return wf_comm_invalid(comm, "weft_comm_get_stats on rank %d: stats is NULL; pass a weft_stats_t to fill",
                               comm->rank);
    *stats = comm->stats;
    if (comm->mr_cache != NULL) {
        wf_mr_cache_stats_t cache;
        wf_mr_cache_get_stats(comm->mr_cache, &cache);
        stats->mr_cache_hits += cache.hits;
        stats->mr_cache_misses += cache.misses;
    }
    return WEFT_SUCCESS;
}

WEFT_API const char *weft_comm_provider(weft_comm_t comm)
{
    if (comm == NULL || comm->transport == NULL)
        return "";
    return comm->ops->provider_name(comm->transport);
}
