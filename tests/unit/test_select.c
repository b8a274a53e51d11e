/*
 * Algorithm selection: the WEFT_ALGO parser, the tuning-file parser (every error it reports), the
 * choice the selector makes from rules, restrictions and the cost model, and the fold arithmetic
 * of the group algorithms.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coll/group.h"
#include "coll/select.h"

#define BIT WF_ALGO_BIT
#define ALL_ALLREDUCE (BIT(WF_ALGO_DIRECT) | BIT(WF_ALGO_RING) | BIT(WF_ALGO_RECURSIVE_DOUBLING) | \
                       BIT(WF_ALGO_RABENSEIFNER) | BIT(WF_ALGO_PULL) | BIT(WF_ALGO_HIERARCHICAL))

static wf_select_config_t config;

static void parse_algo_ok(const char *text)
{
    char err[1024] = "";
    wf_select_config_default(&config);
    if (wf_algo_parse(text, &config, err, sizeof err) != 0)
        fail_msg("WEFT_ALGO=\"%s\" rejected: %s", text, err);
}

/* Expect text to be rejected with a message that contains every phrase. */
static void parse_algo_rejected(const char *text, const char *first, const char *second)
{
    char err[1024] = "";
    wf_select_config_default(&config);
    if (wf_algo_parse(text, &config, err, sizeof err) == 0)
        fail_msg("WEFT_ALGO=\"%s\" accepted", text);
    if (strstr(err, "WEFT_ALGO") == NULL)
        fail_msg("error for \"%s\" does not name WEFT_ALGO: %s", text, err);
    if (strstr(err, first) == NULL)
        fail_msg("error for \"%s\" lacks \"%s\": %s", text, first, err);
    if (second != NULL && strstr(err, second) == NULL)
        fail_msg("error for \"%s\" lacks \"%s\": %s", text, second, err);
}

static void test_algo_empty_allows_all(void **state)
{
    parse_algo_ok("");
    for (int c = 0; c < WF_COLL_COUNT; c++) {
        assert_int_equal(config.allowed[c], wf_coll_algorithms((wf_coll_t)c));
        assert_int_equal(config.restricted[c], 0);
    }
}

static void test_algo_per_collective(void **state)
{
    parse_algo_ok("allreduce:rabenseifner,ring;allgather:bruck");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], BIT(WF_ALGO_RABENSEIFNER) | BIT(WF_ALGO_RING));
    assert_int_equal(config.allowed[WF_COLL_ALLGATHER], BIT(WF_ALGO_BRUCK));
    assert_int_equal(config.allowed[WF_COLL_BROADCAST], wf_coll_algorithms(WF_COLL_BROADCAST));
    assert_int_equal(config.restricted[WF_COLL_ALLREDUCE], 1);
    assert_int_equal(config.restricted[WF_COLL_ALLGATHER], 1);
    assert_int_equal(config.restricted[WF_COLL_BROADCAST], 0);
}

static void test_algo_exclusion(void **state)
{
    parse_algo_ok("allreduce:^ring");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], ALL_ALLREDUCE & ~BIT(WF_ALGO_RING));
    parse_algo_ok("allreduce:^ring,direct");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE],
                     BIT(WF_ALGO_RECURSIVE_DOUBLING) | BIT(WF_ALGO_RABENSEIFNER) | BIT(WF_ALGO_PULL) |
                         BIT(WF_ALGO_HIERARCHICAL));
}

static void test_algo_bare_list(void **state)
{
    parse_algo_ok("ring");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], BIT(WF_ALGO_RING));
    assert_int_equal(config.allowed[WF_COLL_ALLGATHER], BIT(WF_ALGO_RING));
    assert_int_equal(config.allowed[WF_COLL_REDUCE_SCATTER], BIT(WF_ALGO_RING));
    assert_int_equal(config.allowed[WF_COLL_REDUCE], BIT(WF_ALGO_RING));
    /* Broadcast and barrier have no ring: they keep every algorithm. */
    assert_int_equal(config.allowed[WF_COLL_BROADCAST], wf_coll_algorithms(WF_COLL_BROADCAST));
    assert_int_equal(config.restricted[WF_COLL_BROADCAST], 0);
    assert_int_equal(config.allowed[WF_COLL_BARRIER], BIT(WF_ALGO_DISSEMINATION));

    parse_algo_ok("^direct");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], ALL_ALLREDUCE & ~BIT(WF_ALGO_DIRECT));
    assert_int_equal(config.allowed[WF_COLL_BROADCAST], BIT(WF_ALGO_BINOMIAL) | BIT(WF_ALGO_CHAIN) | BIT(WF_ALGO_PULL));
    assert_int_equal(config.restricted[WF_COLL_BARRIER], 0);
}

static void test_algo_collective_entry_wins(void **state)
{
    parse_algo_ok("ring,chain;allreduce:rabenseifner");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], BIT(WF_ALGO_RABENSEIFNER));
    assert_int_equal(config.allowed[WF_COLL_ALLGATHER], BIT(WF_ALGO_RING));
    assert_int_equal(config.allowed[WF_COLL_BROADCAST], BIT(WF_ALGO_CHAIN));
    parse_algo_ok("allreduce:rabenseifner;ring");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], BIT(WF_ALGO_RABENSEIFNER));
}

static void test_algo_spacing_and_case(void **state)
{
    parse_algo_ok("  AllReduce : Ring , DIRECT ;broadcast:Binomial;");
    assert_int_equal(config.allowed[WF_COLL_ALLREDUCE], BIT(WF_ALGO_RING) | BIT(WF_ALGO_DIRECT));
    assert_int_equal(config.allowed[WF_COLL_BROADCAST], BIT(WF_ALGO_BINOMIAL));
}

static void test_algo_errors(void **state)
{
    parse_algo_rejected("allreduc:ring", "unknown collective 'allreduc'",
                        "allreduce, allgather, reduce_scatter, broadcast, reduce, barrier");
    parse_algo_rejected("allreduce:ringg", "'ringg' is not an algorithm of allreduce",
                        "direct, ring, recursive_doubling, rabenseifner");
    parse_algo_rejected("allreduce:bruck", "'bruck' is not an algorithm of allreduce", "allreduce accepts");
    parse_algo_rejected("allgather:ring;broadcast:ring", "'ring' is not an algorithm of broadcast",
                        "direct, binomial, chain");
    parse_algo_rejected("fastest", "unknown algorithm 'fastest'", "direct, ring, recursive_doubling");
    parse_algo_rejected("allreduce:", "names no algorithm", NULL);
    parse_algo_rejected("allreduce:^", "names no algorithm", NULL);
    parse_algo_rejected("allreduce:ring,,direct", "an algorithm name is empty", NULL);
    parse_algo_rejected("allreduce:ring,", "an algorithm name is empty", NULL);
    parse_algo_rejected("allreduce:ring;allreduce:direct", "allreduce appears twice", NULL);
    parse_algo_rejected("ring;direct", "two lists name no collective", NULL);
    parse_algo_rejected("allreduce:ring,^direct", "'^direct' has a '^' inside a list", NULL);
    parse_algo_rejected("barrier:^dissemination", "excludes every barrier algorithm", "dissemination");
    parse_algo_rejected("allreduce:^direct,ring,recursive_doubling,rabenseifner,pull,hierarchical",
                        "excludes every allreduce",
                        NULL);
    parse_algo_rejected("allreduce:local", "'local' is not an algorithm of allreduce", NULL);

    char text[5000];
    memset(text, 'r', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    parse_algo_rejected(text, "too long", NULL);
}

/* Parse one tuning line into config (defaults first); fail the test when it is rejected. */
static void tune_ok(const char *line)
{
    char copy[512], err[1024] = "";
    snprintf(copy, sizeof copy, "%s", line);
    if (wf_tuning_parse_line("tune.txt", 7, copy, &config, err, sizeof err) != 0)
        fail_msg("\"%s\" rejected: %s", line, err);
}

static void tune_rejected(const char *line, const char *first, const char *second)
{
    char copy[512], err[1024] = "";
    snprintf(copy, sizeof copy, "%s", line);
    wf_select_config_default(&config);
    if (wf_tuning_parse_line("tune.txt", 7, copy, &config, err, sizeof err) == 0)
        fail_msg("\"%s\" accepted", line);
    if (strstr(err, "tune.txt line 7") == NULL)
        fail_msg("error for \"%s\" does not name the file and line: %s", line, err);
    if (strstr(err, first) == NULL)
        fail_msg("error for \"%s\" lacks \"%s\": %s", line, first, err);
    if (second != NULL && strstr(err, second) == NULL)
        fail_msg("error for \"%s\" lacks \"%s\": %s", line, second, err);
    assert_int_equal(config.nrules, 0);
}

static void test_tuning_settings(void **state)
{
    wf_select_config_default(&config);
    tune_ok("alpha_us = 1.5");
    tune_ok("shm.beta_ns_per_byte=0.125   # comment");
    tune_ok("NET.gamma_ns_per_byte = 2");
    tune_ok("  # only a comment");
    tune_ok("");
    assert_true(config.params[WF_TRANSPORT_CLASS_SHM].alpha_us == 1.5);
    assert_true(config.params[WF_TRANSPORT_CLASS_NET].alpha_us == 1.5);
    assert_true(config.params[WF_TRANSPORT_CLASS_SHM].beta_ns_per_byte == 0.125);
    assert_true(config.params[WF_TRANSPORT_CLASS_NET].beta_ns_per_byte ==
                wf_model_defaults(WF_TRANSPORT_CLASS_NET).beta_ns_per_byte);
    assert_true(config.params[WF_TRANSPORT_CLASS_NET].gamma_ns_per_byte == 2.0);
    assert_true(config.params[WF_TRANSPORT_CLASS_SHM].gamma_ns_per_byte ==
                wf_model_defaults(WF_TRANSPORT_CLASS_SHM).gamma_ns_per_byte);
    assert_int_equal(config.nrules, 0);
}

static void test_tuning_rules(void **state)
{
    wf_select_config_default(&config);
    tune_ok("allreduce 0-4K recursive_doubling");
    tune_ok("allreduce 4K-64M rabenseifner ranks=4-64");
    tune_ok("broadcast 1M- chain ranks=8");
    tune_ok("allgather 100-200 bruck ranks=3-");
    assert_int_equal(config.nrules, 4);

    const wf_tune_rule_t *r = config.rules;
    assert_int_equal(r[0].coll, WF_COLL_ALLREDUCE);
    assert_int_equal(r[0].algo, WF_ALGO_RECURSIVE_DOUBLING);
    assert_int_equal(r[0].min_bytes, 0);
    assert_int_equal(r[0].max_bytes, 4096);
    assert_int_equal(r[0].min_ranks, 1);
    assert_int_equal(r[0].max_ranks, 1 << 20);
    assert_int_equal(r[1].min_bytes, 4096);
    assert_int_equal(r[1].max_bytes, 64ull << 20);
    assert_int_equal(r[1].min_ranks, 4);
    assert_int_equal(r[1].max_ranks, 64);
    assert_int_equal(r[2].coll, WF_COLL_BROADCAST);
    assert_true(r[2].max_bytes == UINT64_MAX);
    assert_int_equal(r[2].min_ranks, 8);
    assert_int_equal(r[2].max_ranks, 8);
    assert_int_equal(r[3].min_ranks, 3);
    assert_int_equal(r[3].max_ranks, 1 << 20);
}

static void test_tuning_errors(void **state)
{
    tune_rejected("alpha = 1", "unknown parameter 'alpha'", "alpha_us, overhead_us, beta_ns_per_byte");
    tune_rejected("gpu.alpha_us = 1", "unknown parameter 'gpu.alpha_us'", "shm. or net.");
    tune_rejected("alpha_us = fast", "'fast' is not a valid value of alpha_us", "from 0 to 1e9");
    tune_rejected("alpha_us = -1", "'-1' is not a valid value", NULL);
    tune_rejected("alpha_us =", "'' is not a valid value", NULL);
    tune_rejected("alpha_us = 1.5us", "'1.5us' is not a valid value", NULL);
    tune_rejected("beta_ns_per_byte = nan", "'nan' is not a valid value", NULL);
    tune_rejected("allreduc 0-4K ring", "unknown collective 'allreduc'", "allreduce, allgather");
    tune_rejected("allreduce 4K ring", "'4K' is not a size range", "LOW-HIGH");
    tune_rejected("allreduce 4K-1K ring", "'4K-1K' is not a size range", "LOW < HIGH");
    tune_rejected("allreduce 4K-4K ring", "'4K-4K' is not a size range", NULL);
    tune_rejected("allreduce 0-4Q ring", "'0-4Q' is not a size range", NULL);
    tune_rejected("allreduce -4K ring", "'-4K' is not a size range", NULL);
    tune_rejected("allreduce 0-99999999999999999999 ring", "is not a size range", NULL);
    tune_rejected("allreduce 0-4K bruck", "'bruck' is not an algorithm of allreduce",
                  "direct, ring, recursive_doubling, rabenseifner");
    tune_rejected("allreduce 0-4K ring extra", "'extra' is not a rank range", NULL);
    tune_rejected("allreduce 0-4K ring ranks=0-4", "'ranks=0-4' is not a rank range", NULL);
    tune_rejected("allreduce 0-4K ring ranks=9-4", "'ranks=9-4' is not a rank range", NULL);
    tune_rejected("allreduce 0-4K ring ranks=x", "'ranks=x' is not a rank range", NULL);
    tune_rejected("allreduce 0-4K", "expected NAME = VALUE or COLLECTIVE SIZE-RANGE ALGORITHM", NULL);
    tune_rejected("allreduce 0-4K ring ranks=2-4 more", "unexpected 'more' after the rule", NULL);
}

static void test_tuning_rule_limit(void **state)
{
    char line[64], err[1024] = "";
    wf_select_config_default(&config);
    for (int i = 0; i < WF_TUNE_MAX_RULES; i++) {
        snprintf(line, sizeof line, "allreduce %d-%d ring", i, i + 1);
        assert_int_equal(wf_tuning_parse_line("tune.txt", i + 1, line, &config, err, sizeof err), 0);
    }
    snprintf(line, sizeof line, "allreduce 500-600 ring");
    assert_int_equal(wf_tuning_parse_line("tune.txt", 200, line, &config, err, sizeof err), -1);
    assert_non_null(strstr(err, "tune.txt line 200: more than 128 rules"));
}

/* Write text to a temporary file; its path goes to path. */
static void write_temp(const char *text, size_t length, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "/tmp/weft-test-select-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, length), (ssize_t)length);
    close(fd);
}

static void test_tuning_file(void **state)
{
    char path[64], err[1024] = "";
    const char text[] = "# measured on the test cluster\n"
                        "alpha_us = 3\n"
                        "\n"
                        "allreduce 0-64K recursive_doubling\n";
    write_temp(text, sizeof text - 1, path, sizeof path);
    wf_select_config_default(&config);
    assert_int_equal(wf_tuning_parse_file(path, &config, err, sizeof err), 0);
    assert_int_equal(config.nrules, 1);
    assert_int_equal(config.rules[0].line, 4);
    assert_true(config.params[WF_TRANSPORT_CLASS_SHM].alpha_us == 3.0);
    assert_string_equal(config.tuning_file, path);
    unlink(path);

    const char bad[] = "alpha_us = 3\n\nallreduce 0-64K sideways\n";
    write_temp(bad, sizeof bad - 1, path, sizeof path);
    wf_select_config_default(&config);
    assert_int_equal(wf_tuning_parse_file(path, &config, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 3: 'sideways' is not an algorithm of allreduce"));
    unlink(path);

    const char nul[] = "alpha_us = 3\nbeta\0_ns_per_byte = 1\n";
    write_temp(nul, sizeof nul - 1, path, sizeof path);
    assert_int_equal(wf_tuning_parse_file(path, &config, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2: contains a NUL byte"));
    unlink(path);

    assert_int_equal(wf_tuning_parse_file("/nonexistent/weft.tune", &config, err, sizeof err), -1);
    assert_non_null(strstr(err, "failed to open WEFT_TUNING_FILE=/nonexistent/weft.tune"));
    assert_non_null(strstr(err, "No such file"));
}

/* An input of coll, bytes and ranks with the default limits: 32 KiB eager, 512 KiB chunks. */
static wf_model_input_t input_of(wf_coll_t coll, uint64_t bytes, int nranks)
{
    int per_rank = coll == WF_COLL_ALLGATHER || coll == WF_COLL_REDUCE_SCATTER;
    return (wf_model_input_t){.coll = coll,
                              .bytes = bytes,
                              .block_bytes = per_rank ? bytes / (uint64_t)nranks : bytes,
                              .nranks = nranks,
                              .nnodes = 1,
                              .ranks_per_node = nranks,
                              .partial_scale = 1.0,
                              .can_read = 1,
                              .eager_limit = 32768,
                              .chunk_size = 524288,
                              .intra_class = WF_TRANSPORT_CLASS_SHM,
                              .inter_class = WF_TRANSPORT_CLASS_SHM};
}

static wf_choice_t decide(wf_coll_t coll, uint64_t bytes, int nranks)
{
    wf_choice_t choice;
    wf_model_input_t input = input_of(coll, bytes, nranks);
    wf_select_decide(&config, &input, &choice);
    return choice;
}

/* The same input on nnodes nodes with ranks_per_node on the fullest one, shm inside nodes, net between. */
static wf_model_input_t multi_node_input(wf_coll_t coll, uint64_t bytes, int nranks, int nnodes, int ranks_per_node)
{
    wf_model_input_t input = input_of(coll, bytes, nranks);
    input.nnodes = nnodes;
    input.ranks_per_node = ranks_per_node;
    input.inter_class = WF_TRANSPORT_CLASS_NET;
    return input;
}

static void test_decide_single_and_only(void **state)
{
    wf_select_config_default(&config);
    wf_choice_t choice = decide(WF_COLL_ALLREDUCE, 1 << 20, 1);
    assert_int_equal(choice.algo, WF_ALGO_LOCAL);
    assert_int_equal(choice.kind, WF_CHOICE_SINGLE_RANK);
    choice = decide(WF_COLL_BARRIER, 0, 5);
    assert_int_equal(choice.algo, WF_ALGO_DISSEMINATION);
    assert_int_equal(choice.kind, WF_CHOICE_ONLY);
}

static void test_decide_model(void **state)
{
    wf_select_config_default(&config);
    wf_choice_t choice = decide(WF_COLL_ALLREDUCE, 8, 2);
    assert_int_equal(choice.kind, WF_CHOICE_MODEL);
    assert_int_equal(choice.algo, WF_ALGO_DIRECT);
    /* Large vectors: the pipelined ring. */
    choice = decide(WF_COLL_ALLREDUCE, 64u << 20, 8);
    assert_int_equal(choice.algo, WF_ALGO_RING);
    /* Large broadcasts: every rank reads the root's buffer where the transport can read, else the chain. */
    choice = decide(WF_COLL_BROADCAST, 64u << 20, 8);
    assert_int_equal(choice.algo, WF_ALGO_PULL);
    wf_model_input_t no_reads = input_of(WF_COLL_BROADCAST, 64u << 20, 8);
    no_reads.can_read = 0;
    wf_select_decide(&config, &no_reads, &choice);
    assert_int_equal(choice.algo, WF_ALGO_CHAIN);
    /* Direct cannot serve blocks above the eager limit, nor more than 64 ranks. */
    choice = decide(WF_COLL_ALLGATHER, 8u << 20, 4);
    assert_int_equal(choice.estimates[WF_ALGO_DIRECT].eligible, 0);
    assert_string_equal(choice.estimates[WF_ALGO_DIRECT].reason, "blocks above WEFT_EAGER_LIMIT");
    assert_int_not_equal(choice.algo, WF_ALGO_DIRECT);
    choice = decide(WF_COLL_ALLREDUCE, 8, 65);
    assert_string_equal(choice.estimates[WF_ALGO_DIRECT].reason, "more than 64 ranks");
    assert_int_not_equal(choice.algo, WF_ALGO_DIRECT);
}

static void test_decide_forced_and_fallback(void **state)
{
    parse_algo_ok("allreduce:rabenseifner");
    wf_choice_t choice = decide(WF_COLL_ALLREDUCE, 8, 4);
    assert_int_equal(choice.algo, WF_ALGO_RABENSEIFNER);
    assert_int_equal(choice.kind, WF_CHOICE_FORCED);

    parse_algo_ok("allreduce:direct");
    choice = decide(WF_COLL_ALLREDUCE, 1 << 20, 4);
    assert_int_equal(choice.kind, WF_CHOICE_FALLBACK);
    assert_int_not_equal(choice.algo, WF_ALGO_DIRECT);
    char text[512];
    wf_model_input_t input = input_of(WF_COLL_ALLREDUCE, 1 << 20, 4);
    wf_choice_describe(&choice, &config, &input, text, sizeof text);
    assert_non_null(strstr(text, "WEFT_ALGO allows no allreduce algorithm that can serve this call"));
    assert_non_null(strstr(text, "direct: blocks above WEFT_EAGER_LIMIT"));

    /* Two allowed algorithms: the model picks between them. */
    parse_algo_ok("allreduce:ring,recursive_doubling");
    choice = decide(WF_COLL_ALLREDUCE, 8, 4);
    assert_int_equal(choice.kind, WF_CHOICE_MODEL);
    assert_int_equal(choice.algo, WF_ALGO_RECURSIVE_DOUBLING);
}

static void test_decide_rules(void **state)
{
    wf_select_config_default(&config);
    tune_ok("allreduce 0-4K rabenseifner ranks=2-8");
    tune_ok("allreduce 0-4K ring");
    wf_choice_t choice = decide(WF_COLL_ALLREDUCE, 1000, 4);
    assert_int_equal(choice.kind, WF_CHOICE_RULE);
    assert_int_equal(choice.algo, WF_ALGO_RABENSEIFNER);
    assert_int_equal(choice.rule->line, 7);
    /* The upper bound is exclusive; a later rule covers other rank counts. */
    choice = decide(WF_COLL_ALLREDUCE, 4096, 4);
    assert_int_not_equal(choice.kind, WF_CHOICE_RULE);
    choice = decide(WF_COLL_ALLREDUCE, 1000, 16);
    assert_int_equal(choice.algo, WF_ALGO_RING);
    assert_int_equal(choice.kind, WF_CHOICE_RULE);
    /* A rule naming an algorithm WEFT_ALGO excludes is skipped. */
    char err[512];
    assert_int_equal(wf_algo_parse("allreduce:^rabenseifner", &config, err, sizeof err), 0);
    choice = decide(WF_COLL_ALLREDUCE, 1000, 4);
    assert_int_equal(choice.algo, WF_ALGO_RING);
}

static void test_hash_tracks_configuration(void **state)
{
    wf_select_config_default(&config);
    uint64_t base = wf_select_hash(&config);
    parse_algo_ok("");
    assert_true(wf_select_hash(&config) == base);
    parse_algo_ok("allreduce:ring");
    assert_true(wf_select_hash(&config) != base);
    wf_select_config_default(&config);
    tune_ok("shm.alpha_us = 2.5");
    assert_true(wf_select_hash(&config) != base);
    wf_select_config_default(&config);
    tune_ok("allreduce 0-1K ring");
    uint64_t with_rule = wf_select_hash(&config);
    assert_true(with_rule != base);
    wf_select_config_default(&config);
    tune_ok("allreduce 0-2K ring");
    assert_true(wf_select_hash(&config) != with_rule);
}

/* Derivation checks of the model against the counts docs/algorithms.md gives. */
static void test_model_counts(void **state)
{
    wf_model_params_t params = {1.0, 0.0, 1.0, 1.0};
    wf_estimate_t e;
    wf_model_input_t input = input_of(WF_COLL_ALLREDUCE, 4 << 20, 4);

    wf_model_estimate(&input, &params, &params, WF_ALGO_RING, &e);
    assert_true(e.steps == 8.0);
    assert_true(e.moved == 0.75 * (4 << 20) * 2);
    assert_true(e.local == 0.75 * (4 << 20));
    assert_true(e.chunks == 2.0); /* 1 MiB blocks of 512 KiB chunks */

    /* Three ranks: two core members, one folded; every step above the eager limit counts twice. */
    input = input_of(WF_COLL_ALLREDUCE, 1 << 20, 3);
    wf_model_estimate(&input, &params, &params, WF_ALGO_RABENSEIFNER, &e);
    assert_true(e.steps == 2.0 + 2.0 + 4.0);
    assert_true(e.moved == 0.5 * (1 << 20) * 2 + 2.0 * (1 << 20));
    wf_model_estimate(&input, &params, &params, WF_ALGO_RECURSIVE_DOUBLING, &e);
    assert_true(e.steps == 2.0 + 4.0);

    input = input_of(WF_COLL_ALLGATHER, 8 * 1024, 8);
    wf_model_estimate(&input, &params, &params, WF_ALGO_BRUCK, &e);
    assert_true(e.steps == 3.0);
    assert_true(e.moved == 7 * 1024);
    wf_model_estimate(&input, &params, &params, WF_ALGO_DIRECT, &e);
    assert_true(e.steps == 1.0);
    assert_true(e.messages == 12.0);
}

/* Large multi-node calls with shm inside nodes and net between them: hierarchical wins. */
static void test_decide_hierarchical_across_nodes(void **state)
{
    static const wf_coll_t colls[] = {WF_COLL_ALLREDUCE, WF_COLL_ALLGATHER, WF_COLL_REDUCE_SCATTER};
    wf_select_config_default(&config);
    for (size_t c = 0; c < sizeof(colls) / sizeof(colls[0]); c++) {
        wf_model_input_t input = multi_node_input(colls[c], 16u << 20, 8, 2, 4);
        wf_choice_t choice;
        wf_select_decide(&config, &input, &choice);
        assert_int_equal(choice.estimates[WF_ALGO_HIERARCHICAL].eligible, 1);
        assert_int_equal(choice.kind, WF_CHOICE_MODEL);
        assert_int_equal(choice.algo, WF_ALGO_HIERARCHICAL);

        /* With the network inside nodes too (libfabric alone), the extra phases do not pay. */
        input.intra_class = WF_TRANSPORT_CLASS_NET;
        wf_select_decide(&config, &input, &choice);
        assert_int_equal(choice.estimates[WF_ALGO_HIERARCHICAL].eligible, 1);
        assert_int_not_equal(choice.algo, WF_ALGO_HIERARCHICAL);
    }
}

static void test_decide_hierarchical_ineligible(void **state)
{
    wf_select_config_default(&config);
    /* One node. */
    wf_choice_t choice = decide(WF_COLL_ALLREDUCE, 16u << 20, 8);
    assert_int_equal(choice.estimates[WF_ALGO_HIERARCHICAL].eligible, 0);
    assert_int_not_equal(choice.algo, WF_ALGO_HIERARCHICAL);

    /* Irregular: 7 ranks on 2 nodes, 4 on the fuller one; and one rank per node. */
    const int layouts[][3] = {{7, 2, 4}, {4, 4, 1}};
    for (int l = 0; l < 2; l++) {
        wf_model_input_t input = multi_node_input(WF_COLL_REDUCE_SCATTER, 16u << 20, layouts[l][0], layouts[l][1],
                                                  layouts[l][2]);
        wf_select_decide(&config, &input, &choice);
        assert_int_equal(choice.estimates[WF_ALGO_HIERARCHICAL].eligible, 0);
        assert_int_not_equal(choice.algo, WF_ALGO_HIERARCHICAL);
    }

    /* float16 sums in float32 partials. */
    wf_model_input_t input = multi_node_input(WF_COLL_ALLREDUCE, 16u << 20, 8, 2, 4);
    input.partial_scale = 2.0;
    wf_select_decide(&config, &input, &choice);
    assert_int_equal(choice.estimates[WF_ALGO_HIERARCHICAL].eligible, 0);
    assert_int_not_equal(choice.algo, WF_ALGO_HIERARCHICAL);

    /* The v forms, whose blocks may differ. */
    input = multi_node_input(WF_COLL_ALLGATHER, 16u << 20, 8, 2, 4);
    input.uneven = 1;
    wf_select_decide(&config, &input, &choice);
    assert_int_equal(choice.estimates[WF_ALGO_HIERARCHICAL].eligible, 0);
    assert_string_equal(choice.estimates[WF_ALGO_HIERARCHICAL].reason, "the v forms have no hierarchical algorithm");
    assert_int_not_equal(choice.algo, WF_ALGO_HIERARCHICAL);

    /* Forced where it cannot serve: the model falls back to the flat algorithms. */
    parse_algo_ok("allgather:hierarchical");
    input = multi_node_input(WF_COLL_ALLGATHER, 16u << 20, 7, 2, 4);
    wf_select_decide(&config, &input, &choice);
    assert_int_equal(choice.kind, WF_CHOICE_FALLBACK);
    assert_int_not_equal(choice.algo, WF_ALGO_HIERARCHICAL);
}

/* Flat algorithms on several nodes pay the inter parameters; hierarchical phases pay their level's. */
static void test_model_levels(void **state)
{
    wf_model_params_t intra = {1.0, 0.0, 1.0, 0.0}, inter = {10.0, 0.0, 10.0, 0.0};
    wf_estimate_t e;
    wf_model_input_t input = multi_node_input(WF_COLL_ALLGATHER, 8 * 1024, 8, 2, 4);

    /* Ring: 8 steps and 7 blocks of 1 KiB, all at the inter price. */
    wf_model_estimate(&input, &intra, &inter, WF_ALGO_RING, &e);
    assert_true(fabs(e.time_us - (8 * 10.0 + 7 * 1024 * 10.0 / 1000.0)) < 1e-9);
    input.nnodes = 1;
    input.ranks_per_node = 8;
    wf_model_estimate(&input, &intra, &inter, WF_ALGO_RING, &e);
    assert_true(fabs(e.time_us - (8 * 1.0 + 7 * 1024 * 1.0 / 1000.0)) < 1e-9);

    /* Hierarchical: Bruck across 2 nodes (1 step, 1 block), then Bruck inside 4 ranks (2 steps, 3 x 2 KiB). */
    input = multi_node_input(WF_COLL_ALLGATHER, 8 * 1024, 8, 2, 4);
    wf_model_estimate(&input, &intra, &inter, WF_ALGO_HIERARCHICAL, &e);
    assert_int_equal(e.eligible, 1);
    assert_true(e.steps == 3.0);
    assert_true(e.moved == 1024 + 3 * 2048);
    assert_true(e.local == 2 * 2048 + 2 * 8192 + 8192); /* Bruck's two copies per phase, and the packing */
    assert_true(fabs(e.time_us - (10.0 + 1024 * 10.0 / 1000.0 + 2 * 1.0 + 3 * 2048 * 1.0 / 1000.0)) < 1e-9);

    /* Reduce-scatter: halving inside 4 ranks on the whole input, then across 2 nodes on a quarter. */
    input = multi_node_input(WF_COLL_REDUCE_SCATTER, 8 * 1024, 8, 2, 4);
    wf_model_estimate(&input, &intra, &inter, WF_ALGO_HIERARCHICAL, &e);
    assert_true(e.steps == 2.0 + 1.0);
    assert_true(e.moved == 0.75 * 8192 + 0.5 * 2048);
    assert_true(fabs(e.time_us - (2 * 1.0 + 0.75 * 8192 / 1000.0 + 10.0 + 0.5 * 2048 * 10.0 / 1000.0)) < 1e-9);
}

/* Collective names: case-insensitive, underscores optional, nothing else loose. */
static void test_collective_names(void **state)
{
    (void)state;
    assert_int_equal(wf_coll_from_name("reduce_scatter"), WF_COLL_REDUCE_SCATTER);
    assert_int_equal(wf_coll_from_name("reducescatter"), WF_COLL_REDUCE_SCATTER);
    assert_int_equal(wf_coll_from_name("ReduceScatter"), WF_COLL_REDUCE_SCATTER);
    assert_int_equal(wf_coll_from_name("allreduce"), WF_COLL_ALLREDUCE);
    assert_int_equal(wf_coll_from_name("reduce"), WF_COLL_REDUCE);
    assert_int_equal(wf_coll_from_name("reduce-scatter"), -1);
    assert_int_equal(wf_coll_from_name("reducescatte"), -1);
    assert_int_equal(wf_coll_from_name("reduce_scatter_"), -1);
    assert_int_equal(wf_coll_from_name("all_reduce"), -1);
    assert_int_equal(wf_coll_from_name(""), -1);
}

static void test_fold_arithmetic(void **state)
{
    static const int expected_core[8][8] = {
        {0}, {0, 1}, {-1, 0, 1}, {0, 1, 2, 3}, {-1, 0, 1, 2, 3}, {-1, 0, -1, 1, 2, 3},
        {-1, 0, -1, 1, -1, 2, 3}, {0, 1, 2, 3, 4, 5, 6, 7},
    };
    for (int n = 1; n <= 8; n++) {
        for (int me = 0; me < n; me++) {
            wf_group_t group = {n, me, NULL};
            wf_fold_t fold = wf_fold_of(&group);
            assert_int_equal(fold.p + fold.rem, n);
            assert_int_equal(1 << fold.steps, fold.p);
            assert_true(fold.p <= n && 2 * fold.p > n);
            assert_int_equal(fold.core, expected_core[n - 1][me]);
            if (fold.core >= 0)
                assert_int_equal(wf_fold_member(&fold, fold.core), me);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collective_names),
        cmocka_unit_test(test_algo_empty_allows_all),
        cmocka_unit_test(test_algo_per_collective),
        cmocka_unit_test(test_algo_exclusion),
        cmocka_unit_test(test_algo_bare_list),
        cmocka_unit_test(test_algo_collective_entry_wins),
        cmocka_unit_test(test_algo_spacing_and_case),
        cmocka_unit_test(test_algo_errors),
        cmocka_unit_test(test_tuning_settings),
        cmocka_unit_test(test_tuning_rules),
        cmocka_unit_test(test_tuning_errors),
        cmocka_unit_test(test_tuning_rule_limit),
        cmocka_unit_test(test_tuning_file),
        cmocka_unit_test(test_decide_single_and_only),
        cmocka_unit_test(test_decide_model),
        cmocka_unit_test(test_decide_forced_and_fallback),
        cmocka_unit_test(test_decide_rules),
        cmocka_unit_test(test_hash_tracks_configuration),
        cmocka_unit_test(test_model_counts),
        cmocka_unit_test(test_decide_hierarchical_across_nodes),
        cmocka_unit_test(test_decide_hierarchical_ineligible),
        cmocka_unit_test(test_model_levels),
        cmocka_unit_test(test_fold_arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
