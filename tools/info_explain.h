/* weft-info --explain: the cost model's view of one collective call (see info_explain.c). */
#ifndef WF_INFO_EXPLAIN_H
#define WF_INFO_EXPLAIN_H

typedef struct {
    const char *coll;      /* collective name, as WEFT_ALGO spells it */
    const char *size;      /* bytes as nccl-tests counts them, with an optional K, M or G suffix */
    const char *datatype;  /* weft datatype name, e.g. float32 */
    const char *op;        /* sum, prod, min, max or avg */
    const char *transport; /* "shm", "net", "route", or NULL: what WEFT_TRANSPORT=auto would open */
    int nranks;
    int nnodes;
} wf_explain_request_t;

/* Print every algorithm's estimate and the choice. Returns the exit status: 0, or 2 on invalid input. */
int wf_explain(const wf_explain_request_t *request);

#endif /* WF_INFO_EXPLAIN_H */
