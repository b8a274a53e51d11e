/*
 * The rank-to-node map: grouping by node identity, local ranks in rank order, the ranks and the
 * leader of each node, and regularity, on even, uneven and interleaved layouts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topo.h"

/* Build a map from a layout string: character r is the identity of rank r's node. */
static wf_node_map_t build(const char *layout, wf_topo_summary_t **summaries_out)
{
    int nranks = (int)strlen(layout);
    wf_topo_summary_t *summaries = calloc((size_t)nranks, sizeof(*summaries));
    wf_node_map_t map;

    assert_non_null(summaries);
    for (int r = 0; r < nranks; r++)
        snprintf(summaries[r].hostid, sizeof(summaries[r].hostid), "host-%c/boot", layout[r]);
    assert_int_equal(wf_node_map_build(&map, summaries, nranks), 0);
    assert_int_equal(map.nranks, nranks);
    if (summaries_out != NULL)
        *summaries_out = summaries;
    else
        free(summaries);
    return map;
}

static void expect_ints(const char *what, const int *actual, const int *expected, int count)
{
    for (int i = 0; i < count; i++)
        if (actual[i] != expected[i])
            fail_msg("%s[%d] is %d, expected %d", what, i, actual[i], expected[i]);
}

static void test_three_plus_one(void **state)
{
    wf_node_map_t map = build("AAAB", NULL);

    assert_int_equal(map.nnodes, 2);
    expect_ints("node_of_rank", map.node_of_rank, (const int[]){0, 0, 0, 1}, 4);
    expect_ints("local_rank", map.local_rank, (const int[]){0, 1, 2, 0}, 4);
    expect_ints("local_size", map.local_size, (const int[]){3, 3, 3, 1}, 4);
    expect_ints("node_size", map.node_size, (const int[]){3, 1}, 2);
    expect_ints("node_offset", map.node_offset, (const int[]){0, 3, 4}, 3);
    expect_ints("node_ranks", map.node_ranks, (const int[]){0, 1, 2, 3}, 4);
    expect_ints("leader", map.leader, (const int[]){0, 3}, 2);
    assert_int_equal(map.regular, 0);
    assert_int_equal(map.max_local_size, 3);
    wf_node_map_free(&map);
    assert_null(map.node_of_rank);
    assert_int_equal(map.nnodes, 0);
}

static void test_one_plus_three(void **state)
{
    wf_node_map_t map = build("ABBB", NULL);

    assert_int_equal(map.nnodes, 2);
    expect_ints("node_of_rank", map.node_of_rank, (const int[]){0, 1, 1, 1}, 4);
    expect_ints("local_rank", map.local_rank, (const int[]){0, 0, 1, 2}, 4);
    expect_ints("leader", map.leader, (const int[]){0, 1}, 2);
    expect_ints("node_ranks", map.node_ranks, (const int[]){0, 1, 2, 3}, 4);
    assert_int_equal(map.regular, 0);
    wf_node_map_free(&map);
}

static void test_two_by_three(void **state)
{
    wf_node_map_t map = build("XXXYYY", NULL);

    assert_int_equal(map.nnodes, 2);
    expect_ints("node_of_rank", map.node_of_rank, (const int[]){0, 0, 0, 1, 1, 1}, 6);
    expect_ints("local_rank", map.local_rank, (const int[]){0, 1, 2, 0, 1, 2}, 6);
    expect_ints("local_size", map.local_size, (const int[]){3, 3, 3, 3, 3, 3}, 6);
    expect_ints("node_offset", map.node_offset, (const int[]){0, 3, 6}, 3);
    expect_ints("leader", map.leader, (const int[]){0, 3}, 2);
    assert_int_equal(map.regular, 1);
    assert_int_equal(map.max_local_size, 3);
    wf_node_map_free(&map);
}

static void test_interleaved(void **state)
{
    /* Identities that sort in the other order than their first rank: nodes still follow rank order. */
    wf_node_map_t map = build("BABA", NULL);

    assert_int_equal(map.nnodes, 2);
    expect_ints("node_of_rank", map.node_of_rank, (const int[]){0, 1, 0, 1}, 4);
    expect_ints("local_rank", map.local_rank, (const int[]){0, 0, 1, 1}, 4);
    expect_ints("local_size", map.local_size, (const int[]){2, 2, 2, 2}, 4);
    expect_ints("node_offset", map.node_offset, (const int[]){0, 2, 4}, 3);
    expect_ints("node_ranks", map.node_ranks, (const int[]){0, 2, 1, 3}, 4);
    expect_ints("leader", map.leader, (const int[]){0, 1}, 2);
    assert_int_equal(map.regular, 1);
    wf_node_map_free(&map);
}

static void test_three_nodes_interleaved_uneven(void **state)
{
    wf_node_map_t map = build("CABCAC", NULL);

    assert_int_equal(map.nnodes, 3);
    expect_ints("node_of_rank", map.node_of_rank, (const int[]){0, 1, 2, 0, 1, 0}, 6);
    expect_ints("local_rank", map.local_rank, (const int[]){0, 0, 0, 1, 1, 2}, 6);
    expect_ints("node_size", map.node_size, (const int[]){3, 2, 1}, 3);
    expect_ints("node_offset", map.node_offset, (const int[]){0, 3, 5, 6}, 4);
    expect_ints("node_ranks", map.node_ranks, (const int[]){0, 3, 5, 1, 4, 2}, 6);
    expect_ints("leader", map.leader, (const int[]){0, 1, 2}, 3);
    assert_int_equal(map.regular, 0);
    assert_int_equal(map.max_local_size, 3);
    wf_node_map_free(&map);
}

static void test_single_rank_and_all_distinct(void **state)
{
    wf_node_map_t one = build("Q", NULL);
    assert_int_equal(one.nnodes, 1);
    assert_int_equal(one.local_rank[0], 0);
    assert_int_equal(one.leader[0], 0);
    assert_int_equal(one.regular, 1);
    wf_node_map_free(&one);

    wf_node_map_t distinct = build("DCBA", NULL);
    assert_int_equal(distinct.nnodes, 4);
    expect_ints("node_of_rank", distinct.node_of_rank, (const int[]){0, 1, 2, 3}, 4);
    expect_ints("local_rank", distinct.local_rank, (const int[]){0, 0, 0, 0}, 4);
    expect_ints("leader", distinct.leader, (const int[]){0, 1, 2, 3}, 4);
    assert_int_equal(distinct.regular, 1);
    assert_int_equal(distinct.max_local_size, 1);
    wf_node_map_free(&distinct);
}

static void test_zero_ranks_rejected(void **state)
{
    wf_node_map_t map;
    assert_int_equal(wf_node_map_build(&map, NULL, 0), -1);
    assert_null(map.leader);
}

/* A pseudo-random layout of 2000 ranks on 37 nodes against a quadratic reference. */
static void test_random_layout_against_reference(void **state)
{
    enum { NRANKS = 2000, NHOSTS = 37 };
    static wf_topo_summary_t summaries[NRANKS];
    uint32_t seed = 12345;

    for (int r = 0; r < NRANKS; r++) {
        seed = seed * 1103515245u + 12345u;
        snprintf(summaries[r].hostid, sizeof(summaries[r].hostid), "node%u", (seed >> 16) % NHOSTS);
    }
    wf_node_map_t map;
    assert_int_equal(wf_node_map_build(&map, summaries, NRANKS), 0);

    int nodes_seen = 0;
    for (int r = 0; r < NRANKS; r++) {
        /* Reference: the first earlier rank with this identity gives the node, earlier ranks give the local rank. */
        int first = r, local = 0, size = 0;
        for (int q = 0; q < NRANKS; q++) {
            if (strcmp(summaries[q].hostid, summaries[r].hostid) != 0)
                continue;
            if (q < first)
                first = q;
            if (q < r)
                local++;
            size++;
        }
        if (first == r) {
            assert_int_equal(map.node_of_rank[r], nodes_seen);
            assert_int_equal(map.leader[nodes_seen], r);
            nodes_seen++;
        }
        assert_int_equal(map.node_of_rank[r], map.node_of_rank[first]);
        assert_int_equal(map.local_rank[r], local);
        assert_int_equal(map.local_size[r], size);
        int node = map.node_of_rank[r];
        assert_int_equal(map.node_ranks[map.node_offset[node] + local], r);
    }
    assert_int_equal(map.nnodes, nodes_seen);
    assert_int_equal(map.node_offset[map.nnodes], NRANKS);
    wf_node_map_free(&map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_plus_one),
        cmocka_unit_test(test_one_plus_three),
        cmocka_unit_test(test_two_by_three),
        cmocka_unit_test(test_interleaved),
        cmocka_unit_test(test_three_nodes_interleaved_uneven),
        cmocka_unit_test(test_single_rank_and_all_distinct),
        cmocka_unit_test(test_zero_ranks_rejected),
        cmocka_unit_test(test_random_layout_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
