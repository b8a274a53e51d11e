/*
 * Which transport a communicator gets from WEFT_TRANSPORT, WEFT_OFI_PROVIDER and the node layout.
 * Each case sets the variables, creates a communicator, checks weft_comm_provider and an int32
 * all-reduce sum of rank + 1, and destroys it. Two virtual nodes come from WEFT_HOSTID: the first
 * half of the ranks on node-a, the rest on node-b.
 *   auto on one node                         -> "shm (weft)"
 *   WEFT_TRANSPORT=shm on one node           -> "shm (weft)"
 *   auto with WEFT_OFI_PROVIDER=shm          -> libfabric's "shm"
 *   WEFT_TRANSPORT=ofi on one node           -> libfabric's "shm"
 *   auto on two nodes, one with two ranks    -> weft's shm inside nodes, "tcp;ofi_rxm" between them
 *                                               (with 2 ranks, one per node: "tcp;ofi_rxm" alone)
 *   WEFT_TRANSPORT=ofi on two nodes          -> "tcp;ofi_rxm" (FI_TCP_IFACE=lo keeps it on loopback)
 *   WEFT_TRANSPORT=shm on two nodes          -> WEFT_ERR_INVALID_ARGUMENT on every rank, naming both
 *                                               nodes and their ranks
 * Run it with WEFT_ROOT (coll_launch's root mode) and at least 2 ranks: it reads WEFT_RANK and
 * WEFT_SIZE to pick each rank's node before init.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll_util.h"

typedef struct {
    const char *label;
    const char *transport;    /* WEFT_TRANSPORT */
    const char *provider;     /* WEFT_OFI_PROVIDER, "" for unset */
    int two_nodes;
    const char *expected;     /* weft_comm_provider, or NULL when init must fail */
} choice_case_t;

/* Expected name of the route transport's provider: weft's shm inside nodes, tcp between them. */
#define ROUTED "shm (weft) inside nodes, tcp;ofi_rxm between nodes"

static const choice_case_t cases[] = {
    {"auto on one node", "auto", "", 0, "shm (weft)"},
    {"WEFT_TRANSPORT=shm on one node", "shm", "", 0, "shm (weft)"},
    {"auto with WEFT_OFI_PROVIDER=shm", "auto", "shm", 0, "shm"},
    {"WEFT_TRANSPORT=ofi on one node", "ofi", "", 0, "shm"},
    {"auto on two nodes", "auto", "", 1, ROUTED},
    {"WEFT_TRANSPORT=ofi on two nodes", "ofi", "", 1, "tcp;ofi_rxm"},
    {"WEFT_TRANSPORT=shm on two nodes", "shm", "", 1, NULL},
};

static void set_case_environment(const choice_case_t *c, int rank, int nranks)
{
    setenv("WEFT_TRANSPORT", c->transport, 1);
    if (c->provider[0] != '\0')
        setenv("WEFT_OFI_PROVIDER", c->provider, 1);
    else
        unsetenv("WEFT_OFI_PROVIDER");
    if (c->two_nodes)
        setenv("WEFT_HOSTID", rank < nranks / 2 ? "node-a" : "node-b", 1);
    else
        unsetenv("WEFT_HOSTID");
}

/* The expected init failure: the right result and a message naming both nodes. */
static void check_init_rejected(ct_tally_t *tally, const choice_case_t *c, weft_result_t result, int nranks)
{
    const char *message = weft_comm_last_error(NULL);
    char first[64], second[64];
    snprintf(first, sizeof first, "node-a (ranks 0");
    snprintf(second, sizeof second, "node-b (ranks %d", nranks / 2);
    if (result != WEFT_ERR_INVALID_ARGUMENT)
        ct_fail(tally, "%s: init returned %s, expected an invalid argument: %s", c->label, weft_result_string(result),
                message);
    else if (strstr(message, first) == NULL || strstr(message, second) == NULL ||
             strstr(message, "WEFT_TRANSPORT=shm") == NULL)
        ct_fail(tally, "%s: the message does not name the variable, \"%s\" and \"%s\": %s", c->label, first, second,
                message);
    else
        tally->passed++;
}

static void run_case(ct_tally_t *tally, const choice_case_t *c, int rank, int nranks)
{
    set_case_environment(c, rank, nranks);
    weft_comm_t comm = NULL;
    weft_result_t result = weft_comm_init_env(&comm);
    if (c->expected == NULL) {
        check_init_rejected(tally, c, result, nranks);
        if (result == WEFT_SUCCESS)
            weft_comm_destroy(comm);
        return;
    }
    if (result != WEFT_SUCCESS) {
        ct_fail(tally, "%s: weft_comm_init_env returned %s: %s", c->label, weft_result_string(result),
                weft_comm_last_error(NULL));
        return;
    }
    const char *provider = weft_comm_provider(comm);
    /* With two ranks each node has one, and nothing goes through shared memory. */
    const char *wanted = strcmp(c->expected, ROUTED) == 0 && nranks < 3 ? "tcp;ofi_rxm" : c->expected;
    if (strcmp(provider, wanted) != 0)
        ct_fail(tally, "%s: the communicator uses \"%s\", expected \"%s\"", c->label, provider, wanted);
    else
        tally->passed++;
    int32_t value = rank + 1, expected = nranks * (nranks + 1) / 2;
    if (ct_check_result(tally, comm, weft_allreduce(&value, &value, 1, WEFT_INT32, WEFT_SUM, comm), c->label) &&
        ct_compare_elements(tally, c->label, WEFT_INT32, &value, &expected, 1))
        tally->passed++;
    result = weft_comm_destroy(comm);
    if (result != WEFT_SUCCESS)
        ct_fail(tally, "%s: weft_comm_destroy returned %s", c->label, weft_result_string(result));
}

int main(void)
{
    ct_tally_t tally = {.program = "transport_choice", .rank = -1};
    const char *rank_text = getenv("WEFT_RANK"), *size_text = getenv("WEFT_SIZE");
    if (rank_text == NULL || size_text == NULL || atoi(size_text) < 2) {
        fprintf(stderr, "transport_choice: needs WEFT_RANK and WEFT_SIZE of at least 2 (coll_launch, root mode)\n");
        return 2;
    }
    tally.rank = atoi(rank_text);
    tally.nranks = atoi(size_text);
    setenv("FI_TCP_IFACE", "lo", 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&tally, &cases[i], tally.rank, tally.nranks);
    if (tally.rank == 0 || tally.failed > 0)
        printf("transport_choice rank %d: %lu passed, %lu failed (this rank, %d ranks)\n", tally.rank, tally.passed,
               tally.failed, tally.nranks);
    return tally.failed > 0;
}
