/*
 * Bootstrap over PMIx, for jobs started by a PMIx launcher (Open MPI's mpirun, srun --mpi=pmix).
 *
 * Rank and size come from PMIx (the process rank and PMIX_JOB_SIZE of its namespace). An
 * allgather publishes this rank's block under a fresh key with PMIx_Put, then PMIx_Commit and a
 * PMIx_Fence that collects the data, then reads every rank's block with PMIx_Get. A barrier is a
 * fence without data. Compiled only when WEFT_HAVE_PMIX is defined.
 *
 * PMIx_Init and PMIx_Finalize are reference-counted so that several bootstraps in one process
 * work. Keys are "weft.ag.<instance>.<sequence>": instance numbers the bootstraps of this process
 * in creation order, so every rank must create them in the same order.
 * NOTE: fences of two bootstraps must not run at the same time from different threads; PMIx
 * matches concurrent fences over the same processes by arrival order, not by bootstrap.
 */
#include <pmix.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap/internal.h"
#include "log.h"

typedef struct {
    wf_bootstrap_common_t common;
    int timeout_s;
    unsigned instance;
    uint64_t sequence;
    weft_result_t broken; /* result of the first failed operation, WEFT_SUCCESS while healthy */
} wf_pmix_bootstrap_t;

static pthread_mutex_t pmix_lock = PTHREAD_MUTEX_INITIALIZER;
static int pmix_users;         /* bootstraps alive; PMIx is initialised while this is positive */
static unsigned pmix_instances; /* bootstraps created so far */
static pmix_proc_t pmix_self;

static weft_result_t pmix_failure(wf_pmix_bootstrap_t *b, const char *call, pmix_status_t status, const char *what)
{
    b->broken = status == PMIX_ERR_TIMEOUT ? WEFT_ERR_TIMEOUT : WEFT_ERR_REMOTE;
    if (status == PMIX_ERR_TIMEOUT)
        return wf_boot_fail(&b->common, b->broken,
                            "%s for %s on rank %d timed out after %d s; some rank did not reach the same bootstrap "
                            "step (PMIx does not report which)",
                            call, what, b->common.base.rank, b->timeout_s);
    return wf_boot_fail(&b->common, b->broken, "%s for %s on rank %d failed: %s", call, what, b->common.base.rank,
                        PMIx_Error_string(status));
}

/* Fence over every process of the namespace, with collection of the committed data when collect. */
static pmix_status_t fence(wf_pmix_bootstrap_t *b, bool collect)
{
    pmix_info_t info[2];
    int timeout = b->timeout_s;
    PMIX_INFO_CONSTRUCT(&info[0]);
    PMIX_INFO_CONSTRUCT(&info[1]);
    PMIX_INFO_LOAD(&info[0], PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
    PMIX_INFO_LOAD(&info[1], PMIX_TIMEOUT, &timeout, PMIX_INT);
    pmix_status_t status = PMIx_Fence(NULL, 0, info, 2);
    PMIX_INFO_DESTRUCT(&info[0]);
    PMIX_INFO_DESTRUCT(&info[1]);
    return status;
}

static weft_result_t pmix_barrier(wf_bootstrap_t *base)
{
    wf_pmix_bootstrap_t *b = (wf_pmix_bootstrap_t *)base;
    if (b->broken != WEFT_SUCCESS)
        return b->broken;
    pmix_status_t status = fence(b, false);
    if (status != PMIX_SUCCESS)
        return pmix_failure(b, "PMIx_Fence", status, "a barrier");
    return WEFT_SUCCESS;
}

/* Copy rank r's block published under key into out. */
static weft_result_t fetch_block(wf_pmix_bootstrap_t *b, const char *key, int r, void *out, size_t length)
{
    pmix_proc_t proc;
    pmix_value_t *value = NULL;
    PMIX_PROC_LOAD(&proc, pmix_self.nspace, (pmix_rank_t)r);
    pmix_status_t status = PMIx_Get(&proc, key, NULL, 0, &value);
    if (status != PMIX_SUCCESS)
        return pmix_failure(b, "PMIx_Get", status, key);

    weft_result_t result = WEFT_SUCCESS;
    if (value->type != PMIX_BYTE_OBJECT || value->data.bo.size != length) {
        b->broken = WEFT_ERR_MISMATCH;
        result = wf_boot_fail(&b->common, WEFT_ERR_MISMATCH,
                              "rank %d published %zu bytes under %s but rank %d expected %zu; the ranks passed "
                              "different lengths or are at different bootstrap steps",
                              r, value->type == PMIX_BYTE_OBJECT ? value->data.bo.size : 0, key,
                              b->common.base.rank, length);
    } else {
        memcpy(out, value->data.bo.bytes, length);
    }
    PMIX_VALUE_RELEASE(value);
    return result;
}

static weft_result_t pmix_allgather(wf_bootstrap_t *base, const void *mine, void *all, size_t length)
{
    wf_pmix_bootstrap_t *b = (wf_pmix_bootstrap_t *)base;
    if (b->broken != WEFT_SUCCESS)
        return b->broken;
    if (length == 0)
        return pmix_barrier(base);
    if (!mine || !all)
        return wf_boot_fail(&b->common, WEFT_ERR_INVALID_ARGUMENT,
                            "bootstrap allgather of %zu bytes on rank %d got a NULL buffer", length, base->rank);

    char key[PMIX_MAX_KEYLEN + 1];
    snprintf(key, sizeof(key), "weft.ag.%u.%llu", b->instance, (unsigned long long)b->sequence++);

    pmix_value_t value;
    PMIX_VALUE_CONSTRUCT(&value);
    value.type = PMIX_BYTE_OBJECT;
    value.data.bo.bytes = (char *)mine; /* PMIx_Put copies; the cast only satisfies the field type */
    value.data.bo.size = length;
    pmix_status_t status = PMIx_Put(PMIX_GLOBAL, key, &value);
    if (status != PMIX_SUCCESS)
        return pmix_failure(b, "PMIx_Put", status, key);
    status = PMIx_Commit();
    if (status != PMIX_SUCCESS)
        return pmix_failure(b, "PMIx_Commit", status, key);
    status = fence(b, true);
    if (status != PMIX_SUCCESS)
        return pmix_failure(b, "PMIx_Fence", status, key);

    for (int r = 0; r < base->nranks; r++) {
        weft_result_t result = fetch_block(b, key, r, (char *)all + (size_t)r * length, length);
        if (result != WEFT_SUCCESS)
            return result;
    }
    return WEFT_SUCCESS;
}

static void release_pmix(void)
{
    pthread_mutex_lock(&pmix_lock);
    if (--pmix_users == 0) {
        pmix_status_t status = PMIx_Finalize(NULL, 0);
        if (status != PMIX_SUCCESS)
            WF_WARN(WF_SUB_BOOT, "PMIx_Finalize failed: %s", PMIx_Error_string(status));
    }
    pthread_mutex_unlock(&pmix_lock);
}

static void pmix_destroy(wf_bootstrap_t *base)
{
    if (!base)
        return;
    free(base);
    release_pmix();
}

/* Initialise PMIx on first use; returns the process's instance number through *instance. */
static weft_result_t acquire_pmix(unsigned *instance, char *err, size_t errlen)
{
    weft_result_t result = WEFT_SUCCESS;
    pthread_mutex_lock(&pmix_lock);
    if (pmix_users == 0) {
        pmix_status_t status = PMIx_Init(&pmix_self, NULL, 0);
        if (status != PMIX_SUCCESS)
            result = wf_boot_error(err, errlen, WEFT_ERR_INTERNAL,
                                   "PMIx_Init failed: %s; PMIX_RANK or PMIX_NAMESPACE is set, so the launcher's PMIx "
                                   "server should be reachable (unset them to use another bootstrap)",
                                   PMIx_Error_string(status));
    }
    if (result == WEFT_SUCCESS) {
        pmix_users++;
        *instance = pmix_instances++;
    }
    pthread_mutex_unlock(&pmix_lock);
    return result;
}

static weft_result_t query_job_size(int *nranks, char *err, size_t errlen)
{
    pmix_proc_t wildcard;
    pmix_value_t *value = NULL;
    PMIX_PROC_LOAD(&wildcard, pmix_self.nspace, PMIX_RANK_WILDCARD);
    pmix_status_t status = PMIx_Get(&wildcard, PMIX_JOB_SIZE, NULL, 0, &value);
    if (status != PMIX_SUCCESS)
        return wf_boot_error(err, errlen, WEFT_ERR_INTERNAL, "PMIx_Get(PMIX_JOB_SIZE) failed: %s",
                             PMIx_Error_string(status));
    weft_result_t result = WEFT_SUCCESS;
    if (value->type != PMIX_UINT32 || value->data.uint32 < 1 || value->data.uint32 > (uint32_t)WF_BOOT_MAX_RANKS)
        result = wf_boot_error(err, errlen, WEFT_ERR_INTERNAL,
                               "PMIx reported an unusable job size (value type %d); expected 1 to %d ranks",
                               (int)value->type, WF_BOOT_MAX_RANKS);
    else
        *nranks = (int)value->data.uint32;
    PMIX_VALUE_RELEASE(value);
    return result;
}

weft_result_t wf_pmix_bootstrap_create(wf_bootstrap_t **out, int timeout_s, char *err, size_t errlen)
{
    unsigned instance;
    int nranks = 0;
    weft_result_t result = acquire_pmix(&instance, err, errlen);
    if (result != WEFT_SUCCESS)
        return result;
    result = query_job_size(&nranks, err, errlen);
    if (result == WEFT_SUCCESS && pmix_self.rank >= (pmix_rank_t)nranks)
        result = wf_boot_error(err, errlen, WEFT_ERR_INTERNAL, "PMIx rank %u is out of range for a job of %d ranks",
                               (unsigned)pmix_self.rank, nranks);
    if (result != WEFT_SUCCESS)
        goto fail_release;

    wf_pmix_bootstrap_t *b = calloc(1, sizeof(*b));
    if (!b) {
        result = wf_boot_error(err, errlen, WEFT_ERR_NO_MEMORY, "failed to allocate the PMIx bootstrap");
        goto fail_release;
    }
    b->common.base = (wf_bootstrap_t){.rank = (int)pmix_self.rank,
                                      .nranks = nranks,
                                      .method = "pmix",
                                      .allgather = pmix_allgather,
                                      .barrier = pmix_barrier,
                                      .destroy = pmix_destroy};
    b->timeout_s = timeout_s;
    b->instance = instance;
    WF_INFO(WF_SUB_BOOT, "rank %d of %d bootstrapped through PMIx namespace %s", b->common.base.rank, nranks,
            pmix_self.nspace);
    *out = &b->common.base;
    return WEFT_SUCCESS;

fail_release:
    release_pmix();
    return result;
}
