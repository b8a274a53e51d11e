/*
 * Topology over real ranks, with WEFT_HOSTID splitting this machine into virtual nodes.
 *
 *   topo_virtual_nodes LAYOUT          character r of LAYOUT names rank r's node, e.g. ABAB or AAAB
 *   topo_virtual_nodes --bad-hca RANK  that rank sets WEFT_IB_HCA to a device no host has
 *
 * With a layout, every rank sets WEFT_HOSTID and WEFT_TOPO_DUMP_FILE=DIR/topo-%r before init.
 * Rank 0 then checks that exactly the first rank of each node wrote DIR/topo-RANK.json and .xml,
 * and that each JSON file contains the node count, regularity, each node's leader and ranks, and
 * each rank's node and local rank, all computed here from LAYOUT. An all-reduce across the
 * virtual nodes must still give the exact sum.
 *
 * With --bad-hca, init must fail on every rank: on that rank with a message that names
 * WEFT_IB_HCA and its value, on the others with WEFT_ERR_REMOTE naming that rank.
 *
 * Needs the WEFT_ROOT launch (WEFT_RANK in the environment) and ranks that share a parent, the
 * launcher, whose pid names the folder.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coll_util.h"

#define MAX_RANKS 64

static int read_rank(void)
{
    const char *text = getenv("WEFT_RANK");
    if (text == NULL) {
        fprintf(stderr, "topo_virtual_nodes: WEFT_RANK is not set; run it under coll_launch's WEFT_ROOT mode\n");
        exit(1);
    }
    return atoi(text);
}

/* Expect init to fail everywhere when `bad_rank` names a device that does not exist. */
static int run_bad_hca(int bad_rank)
{
    int rank = read_rank();
    weft_comm_t comm = NULL;

    if (rank == bad_rank)
        setenv("WEFT_IB_HCA", "=nosuchhca0:1", 1);
    weft_result_t result = weft_comm_init_env(&comm);
    const char *message = weft_comm_last_error(NULL);
    if (result == WEFT_SUCCESS) {
        fprintf(stderr, "topo_virtual_nodes: rank %d: init succeeded with a WEFT_IB_HCA that matches nothing\n", rank);
        weft_comm_destroy(comm);
        return 1;
    }
    char expected[256];
    weft_result_t expected_result = rank == bad_rank ? WEFT_ERR_INVALID_ARGUMENT : WEFT_ERR_REMOTE;
    if (rank == bad_rank)
        snprintf(expected, sizeof expected, "WEFT_IB_HCA==nosuchhca0:1 (from the environment) ");
    else
        snprintf(expected, sizeof expected, "rank %d failed its local setup (invalid argument)", bad_rank);
    if (result != expected_result || strstr(message, expected) == NULL) {
        fprintf(stderr, "topo_virtual_nodes: rank %d: init gave %s: %s; expected %s with \"%s\"\n", rank,
                weft_result_string(result), message, weft_result_string(expected_result), expected);
        return 1;
    }
    if (rank == 0)
        printf("topo_virtual_nodes --bad-hca %d: init failed on every rank as expected\n", bad_rank);
    return 0;
}

static char *read_text(const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return NULL;
    static char text[65536];
    size_t length = fread(text, 1, sizeof text - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

static void expect_contains(ct_tally_t *tally, const char *path, const char *text, const char *phrase)
{
    if (strstr(text, phrase) != NULL)
        tally->passed++;
    else
        ct_fail(tally, "%s lacks %s", path, phrase);
}

/* The expected layout, computed from the letters alone. */
typedef struct {
    int nranks, nnodes, regular;
    int node_of_rank[MAX_RANKS], local_rank[MAX_RANKS], leader[MAX_RANKS], node_size[MAX_RANKS];
} layout_t;

static void compute_layout(const char *letters, layout_t *layout)
{
    memset(layout, 0, sizeof(*layout));
    layout->nranks = (int)strlen(letters);
    for (int r = 0; r < layout->nranks; r++) {
        int node = -1;
        for (int n = 0; n < layout->nnodes && node < 0; n++)
            if (letters[layout->leader[n]] == letters[r])
                node = n;
        if (node < 0) {
            node = layout->nnodes++;
            layout->leader[node] = r;
        }
        layout->node_of_rank[r] = node;
        layout->local_rank[r] = layout->node_size[node]++;
    }
    layout->regular = 1;
    for (int n = 0; n < layout->nnodes; n++)
        layout->regular &= layout->node_size[n] == layout->node_size[0];
}

static void check_dump(ct_tally_t *tally, const char *dir, const layout_t *layout)
{
    for (int r = 0; r < layout->nranks; r++) {
        char path[512], phrase[512];
        int is_leader = layout->local_rank[r] == 0;
        snprintf(path, sizeof path, "%s/topo-%d.xml", dir, r);
        char *xml = read_text(path);
        if ((xml != NULL) != is_leader || (xml != NULL && strncmp(xml, "<?xml", 5) != 0)) {
            ct_fail(tally, "%s: %s", path, is_leader ? "missing or not XML" : "written by a rank that leads no node");
            continue;
        }
        snprintf(path, sizeof path, "%s/topo-%d.json", dir, r);
        char *json = read_text(path);
        if ((json != NULL) != is_leader) {
            ct_fail(tally, "%s: %s", path, is_leader ? "missing" : "written by a rank that leads no node");
            continue;
        }
        if (json == NULL)
            continue;
        snprintf(phrase, sizeof phrase, "\"nranks\": %d,\n  \"nnodes\": %d,\n  \"regular\": %s,", layout->nranks,
                 layout->nnodes, layout->regular ? "true" : "false");
        expect_contains(tally, path, json, phrase);
        for (int n = 0; n < layout->nnodes; n++) {
            int length = snprintf(phrase, sizeof phrase, "\"leader\": %d, \"ranks\": [", layout->leader[n]);
            for (int q = 0, first = 1; q < layout->nranks; q++) {
                if (layout->node_of_rank[q] != n)
                    continue;
                length += snprintf(phrase + length, sizeof phrase - (size_t)length, "%s%d", first ? "" : ", ", q);
                first = 0;
            }
            snprintf(phrase + length, sizeof phrase - (size_t)length, "]}");
            expect_contains(tally, path, json, phrase);
        }
        for (int q = 0; q < layout->nranks; q++) {
            snprintf(phrase, sizeof phrase, "{\"rank\": %d, \"node\": %d, \"local_rank\": %d, ", q,
                     layout->node_of_rank[q], layout->local_rank[q]);
            expect_contains(tally, path, json, phrase);
        }
    }
}

static void remove_dump(const char *dir, int nranks)
{
    for (int r = 0; r < nranks; r++) {
        char path[512];
        snprintf(path, sizeof path, "%s/topo-%d.json", dir, r);
        unlink(path);
        snprintf(path, sizeof path, "%s/topo-%d.xml", dir, r);
        unlink(path);
    }
    rmdir(dir);
}

static int run_layout(const char *letters)
{
    layout_t layout;
    int rank = read_rank();
    char dir[256], pattern[300], hostid[32];

    compute_layout(letters, &layout);
    if (layout.nranks > MAX_RANKS || rank >= layout.nranks) {
        fprintf(stderr, "topo_virtual_nodes: layout %s does not fit rank %d (at most %d ranks)\n", letters, rank,
                MAX_RANKS);
        return 1;
    }
    snprintf(dir, sizeof dir, "/tmp/weft-topo-virtual-%d-%s", (int)getppid(), letters);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "topo_virtual_nodes: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    snprintf(pattern, sizeof pattern, "%s/topo-%%r", dir);
    snprintf(hostid, sizeof hostid, "virtual-node-%c", letters[rank]);
    setenv("WEFT_TOPO_DUMP_FILE", pattern, 1);
    setenv("WEFT_HOSTID", hostid, 1);

    weft_comm_t comm;
    ct_tally_t tally;
    ct_start("topo_virtual_nodes", &comm, &tally);
    if (tally.nranks != layout.nranks)
        ct_fail(&tally, "layout %s has %d ranks but the job has %d", letters, layout.nranks, tally.nranks);

    int64_t value = rank + 1;
    weft_result_t result = weft_allreduce(&value, &value, 1, WEFT_INT64, WEFT_SUM, comm);
    int64_t expected = (int64_t)tally.nranks * (tally.nranks + 1) / 2;
    if (ct_check_result(&tally, comm, result, "allreduce across virtual nodes")) {
        if (value == expected)
            tally.passed++;
        else
            ct_fail(&tally, "allreduce across virtual nodes gave %lld, expected %lld", (long long)value,
                    (long long)expected);
    }

    /* Every leader wrote its files during init, which every rank has finished after this barrier. */
    ct_check_result(&tally, comm, weft_barrier(comm), "barrier before reading the dump");
    if (rank == 0) {
        check_dump(&tally, dir, &layout);
        remove_dump(dir, layout.nranks);
    }
    return ct_finish(&tally, comm);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--bad-hca") == 0)
        return run_bad_hca(atoi(argv[2]));
    if (argc == 2 && argv[1][0] != '-')
        return run_layout(argv[1]);
    fprintf(stderr, "usage: topo_virtual_nodes LAYOUT | --bad-hca RANK\n");
    return 2;
}
