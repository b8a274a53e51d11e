/*
 * Status records: each rank's current and recent collectives, for the explanation of a timeout.
 *
 * Every rank keeps a record of its current collective and the last few it completed. A small
 * thread sends the record to the rendezvous whenever it changed (at most every
 * WF_STATUS_PERIOD_MS), so the rendezvous has the state of a rank even after that rank stopped
 * calling weft. When a collective times out, the rank fetches every record and names the ranks
 * that had not reached the collective and what they last completed.
 */
#ifndef WF_STATUS_H
#define WF_STATUS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "weft.h"

#define WF_STATUS_HISTORY 4
#define WF_STATUS_PERIOD_MS 100

/* One collective in the record; seq 0 marks an empty entry. */
typedef struct {
    uint32_t seq;
    int32_t result; /* weft_result_t once completed, -1 while running */
    char name[24];
} wf_status_op_t;

/* The record a rank publishes; plain fixed-size fields, because every rank runs the same build. */
typedef struct {
    uint32_t in_call;     /* inside a collective */
    int32_t waiting_for;  /* rank the current collective has waited for a while, or -1 */
    wf_status_op_t current;
    wf_status_op_t done[WF_STATUS_HISTORY]; /* most recent first */
} wf_status_record_t;

typedef struct {
    wf_status_record_t record;
    uint32_t version;     /* odd while the owner writes the record */
    uint32_t published;   /* version the thread sent last */
    int running;
    int stop;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
} wf_status_t;

/* Start publishing comm's record when its bootstrap has a rendezvous to keep it. */
void wf_status_start(weft_comm_t comm);
void wf_status_stop(weft_comm_t comm);

/* Collective seq named name started / the operation that ran it finished with result. */
void wf_status_begin(weft_comm_t comm, const char *name);
void wf_status_end(weft_comm_t comm, weft_result_t result);

/* The current collective has waited long for rank peer (-1: not for one rank). */
void wf_status_waiting(weft_comm_t comm, int peer);

/*
 * Append to out (which contains a timeout message) which ranks had not reached the current
 * collective and what they last completed, from the records at the rendezvous, or this rank's
 * own record when the bootstrap keeps none.
 */
void wf_status_explain(weft_comm_t comm, char *out, size_t length);

#endif /* WF_STATUS_H */
