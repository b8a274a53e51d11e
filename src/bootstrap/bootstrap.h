/*
 * Bootstrap: find the other ranks of a job and exchange small blobs out of band.
 *
 * A bootstrap gives a rank and a size, then serves allgather and barrier over a channel that does
 * not depend on the fabric (TCP through a rendezvous root, or PMIx). It carries the endpoint
 * addresses and node identities at communicator creation and the agreement at destruction.
 * Every blocking call gives up after timeout_s seconds with WEFT_ERR_TIMEOUT and a message that
 * names the ranks that were missing.
 */
#ifndef WF_BOOTSTRAP_H
#define WF_BOOTSTRAP_H

#include <stddef.h>

#include "weft.h"

typedef struct wf_bootstrap wf_bootstrap_t;

/*
 * Status records: a rank leaves a short record of what it is doing with the rendezvous, and a rank
 * that times out fetches everyone's to explain the timeout. A slot of the table is an 8-byte age
 * in milliseconds (UINT64_MAX when the rank never reported), a 4-byte length, then the record.
 */
#define WF_BOOT_STATUS_MAX 244
#define WF_BOOT_STATUS_SLOT (12 + WF_BOOT_STATUS_MAX)

struct wf_bootstrap {
    int rank;
    int nranks;
    const char *method; /* "tcp", "pmix", "torchrun", "unique-id" for logs */
    int skip_goodbye;   /* set before destroy to leave like a lost rank, so the others fail at once */
    /* Every rank passes length bytes; all receives nranks*length bytes in rank order. */
    weft_result_t (*allgather)(wf_bootstrap_t *b, const void *mine, void *all, size_t length);
    weft_result_t (*barrier)(wf_bootstrap_t *b);
    /*
     * Without blocking, report whether the job has failed since the last operation (a rank was
     * lost); WEFT_SUCCESS when nothing is known. NULL when the method cannot tell.
     */
    weft_result_t (*check)(wf_bootstrap_t *b);
    /*
     * Leave this rank's status record (at most WF_BOOT_STATUS_MAX bytes) with the rendezvous; may
     * be called from another thread than the other operations. NULL when the method has no root.
     */
    weft_result_t (*publish)(wf_bootstrap_t *b, const void *record, size_t length);
    /* Fetch every rank's latest record into nranks slots of WF_BOOT_STATUS_SLOT bytes; NULL as publish. */
    weft_result_t (*query)(wf_bootstrap_t *b, void *slots);
    void (*destroy)(wf_bootstrap_t *b);
};

/*
 * From the environment, in this order: WEFT_ROOT with WEFT_RANK and WEFT_SIZE; PMIx when the
 * process was started by a PMIx launcher; torchrun's MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
 * (weft listens on MASTER_PORT+1 because torchrun's own store holds MASTER_PORT).
 * On failure returns the code and writes a sentence to err.
 */
weft_result_t wf_bootstrap_from_env(wf_bootstrap_t **out, int timeout_s, char *err, size_t errlen);

/* From a unique id created by wf_bootstrap_create_id (possibly in another process). */
weft_result_t wf_bootstrap_from_id(wf_bootstrap_t **out, const weft_unique_id_t *id, int rank, int nranks,
                                   int timeout_s, char *err, size_t errlen);

/* Create a unique id and start serving its rendezvous from a thread of this process. */
weft_result_t wf_bootstrap_create_id(weft_unique_id_t *id, char *err, size_t errlen);

/*
 * Sentence describing the last failed allgather or barrier of b ("" before any failure); valid
 * until b is destroyed. After a failure every later call returns the same code.
 */
const char *wf_bootstrap_last_error(const wf_bootstrap_t *b);

#endif /* WF_BOOTSTRAP_H */
