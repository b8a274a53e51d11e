/*
 * Algorithm tables, the choice for one call, and its log (see select.h).
 *
 * A choice goes, in order:
 * - one rank copies locally;
 * - else, among the collective's algorithms that WEFT_ALGO allows and that can serve the call, the
 *   first tuning-file rule that covers the size and rank count and names one of them wins;
 * - else the one of them with the lowest model estimate wins.
 * WEFT_ALGO may allow none that can serve the call, for example only direct with blocks above
 * WEFT_EAGER_LIMIT. The model then picks among all of the collective's algorithms and logs one
 * warning.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "select.h"

static const char *const coll_names[WF_COLL_COUNT] = {
    [WF_COLL_ALLREDUCE] = "allreduce", [WF_COLL_ALLGATHER] = "allgather", [WF_COLL_REDUCE_SCATTER] = "reduce_scatter",
    [WF_COLL_BROADCAST] = "broadcast", [WF_COLL_REDUCE] = "reduce",       [WF_COLL_BARRIER] = "barrier",
};

static const char *const algo_names[WF_ALGO_COUNT] = {
    [WF_ALGO_LOCAL] = "local",
    [WF_ALGO_DIRECT] = "direct",
    [WF_ALGO_RING] = "ring",
    [WF_ALGO_RECURSIVE_DOUBLING] = "recursive_doubling",
    [WF_ALGO_RABENSEIFNER] = "rabenseifner",
    [WF_ALGO_RECURSIVE_HALVING] = "recursive_halving",
    [WF_ALGO_BRUCK] = "bruck",
    [WF_ALGO_BINOMIAL] = "binomial",
    [WF_ALGO_CHAIN] = "chain",
    [WF_ALGO_DISSEMINATION] = "dissemination",
    [WF_ALGO_PULL] = "pull",
    [WF_ALGO_HIERARCHICAL] = "hierarchical",
};

#define BIT WF_ALGO_BIT
static const uint32_t coll_algorithms[WF_COLL_COUNT] = {
    [WF_COLL_ALLREDUCE] = BIT(WF_ALGO_DIRECT) | BIT(WF_ALGO_RING) | BIT(WF_ALGO_RECURSIVE_DOUBLING) |
                          BIT(WF_ALGO_RABENSEIFNER) | BIT(WF_ALGO_PULL) | BIT(WF_ALGO_HIERARCHICAL),
    [WF_COLL_ALLGATHER] = BIT(WF_ALGO_DIRECT) | BIT(WF_ALGO_RING) | BIT(WF_ALGO_BRUCK) | BIT(WF_ALGO_PULL) |
                          BIT(WF_ALGO_HIERARCHICAL),
    [WF_COLL_REDUCE_SCATTER] = BIT(WF_ALGO_DIRECT) | BIT(WF_ALGO_RING) | BIT(WF_ALGO_RECURSIVE_HALVING) |
                               BIT(WF_ALGO_PULL) | BIT(WF_ALGO_HIERARCHICAL),
    [WF_COLL_BROADCAST] = BIT(WF_ALGO_DIRECT) | BIT(WF_ALGO_BINOMIAL) | BIT(WF_ALGO_CHAIN) | BIT(WF_ALGO_PULL),
    [WF_COLL_REDUCE] = BIT(WF_ALGO_DIRECT) | BIT(WF_ALGO_RING),
    [WF_COLL_BARRIER] = BIT(WF_ALGO_DISSEMINATION),
};

const char *wf_coll_name(wf_coll_t coll)
{
    return (int)coll >= 0 && coll < WF_COLL_COUNT ? coll_names[coll] : NULL;
}

int wf_coll_from_name(const char *name)
{
    for (int c = 0; c < WF_COLL_COUNT; c++) {
        const char *want = coll_names[c], *got = name;
        while (*want != '\0' || *got != '\0') {
            if (*want == '_' && *got != '_') {
                want++;
                continue;
            }
            if (tolower((unsigned char)*want) != tolower((unsigned char)*got))
                break;
            want++;
            got++;
        }
        if (*want == '\0' && *got == '\0')
            return c;
    }
    return -1;
}

const char *wf_algo_name(wf_algo_t algo)
{
    return (int)algo >= 0 && algo < WF_ALGO_COUNT ? algo_names[algo] : NULL;
}

uint32_t wf_coll_algorithms(wf_coll_t coll)
{
    return (int)coll >= 0 && coll < WF_COLL_COUNT ? coll_algorithms[coll] : 0;
}

void wf_coll_algorithm_list(wf_coll_t coll, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int a = 0; a < WF_ALGO_COUNT && used < outlen; a++)
        if (wf_coll_algorithms(coll) & BIT(a))
            used += (size_t)snprintf(out + used, outlen - used, "%s%s", used > 0 ? ", " : "", algo_names[a]);
}

void wf_select_config_default(wf_select_config_t *config)
{
    memset(config, 0, sizeof(*config));
    for (int c = 0; c < WF_COLL_COUNT; c++)
        config->allowed[c] = coll_algorithms[c];
    for (int t = 0; t < WF_TRANSPORT_CLASS_COUNT; t++)
        config->params[t] = wf_model_defaults((wf_transport_class_t)t);
}

static uint64_t mix(uint64_t hash, uint64_t value)
{
    hash ^= value + 0x9e3779b97f4a7c15ull + (hash << 6) + (hash >> 2);
    return hash * 0xbf58476d1ce4e5b9ull;
}

uint64_t wf_select_hash(const wf_select_config_t *config)
{
    uint64_t hash = 0x5745465453454cull;
    for (int c = 0; c < WF_COLL_COUNT; c++)
        hash = mix(mix(hash, config->allowed[c]), (uint64_t)config->restricted[c]);
    for (int t = 0; t < WF_TRANSPORT_CLASS_COUNT; t++) {
        wf_model_params_t params = config->params[t];
        for (int i = 0; i < WF_MODEL_PARAM_COUNT; i++) {
            uint64_t bits;
            memcpy(&bits, wf_model_param_field(&params, i), sizeof(bits));
            hash = mix(hash, bits);
        }
    }
    for (int r = 0; r < config->nrules; r++) {
        const wf_tune_rule_t *rule = &config->rules[r];
        hash = mix(mix(hash, (uint64_t)rule->coll << 8 | (uint64_t)rule->algo), rule->min_bytes);
        hash = mix(mix(hash, rule->max_bytes), (uint64_t)(uint32_t)rule->min_ranks << 32 | (uint32_t)rule->max_ranks);
    }
    return hash;
}

/* The cheapest algorithm of mask by estimate. Ties go to the earlier algorithm in the table. */
static wf_algo_t cheapest(const wf_choice_t *choice, uint32_t mask)
{
    wf_algo_t best = WF_ALGO_COUNT;
    for (int a = 0; a < WF_ALGO_COUNT; a++) {
        if (!(mask & BIT(a)))
            continue;
        if (best == WF_ALGO_COUNT || choice->estimates[a].time_us < choice->estimates[best].time_us)
            best = (wf_algo_t)a;
    }
    return best;
}

static int bit_count(uint32_t mask)
{
    return __builtin_popcount(mask);
}

void wf_select_decide(const wf_select_config_t *config, const wf_model_input_t *input, wf_choice_t *choice)
{
    uint32_t table = wf_coll_algorithms(input->coll), can_serve = 0;
    const wf_model_params_t *intra = &config->params[input->intra_class];
    const wf_model_params_t *inter = &config->params[input->inter_class];
    memset(choice, 0, sizeof(*choice));
    for (int a = 0; a < WF_ALGO_COUNT; a++) {
        if (!(table & BIT(a)))
            continue;
        wf_model_estimate(input, intra, inter, (wf_algo_t)a, &choice->estimates[a]);
        if (choice->estimates[a].eligible)
            can_serve |= BIT(a);
    }
    if (input->nranks < 2) {
        choice->algo = WF_ALGO_LOCAL;
        choice->kind = WF_CHOICE_SINGLE_RANK;
        return;
    }
    if (bit_count(table) == 1) {
        choice->algo = cheapest(choice, table);
        choice->kind = WF_CHOICE_ONLY;
        return;
    }

    uint32_t eligible = config->allowed[input->coll] & can_serve;
    if (eligible == 0) {
        choice->algo = cheapest(choice, can_serve);
        choice->kind = WF_CHOICE_FALLBACK;
        return;
    }
    for (int r = 0; r < config->nrules; r++) {
        const wf_tune_rule_t *rule = &config->rules[r];
        if (rule->coll == input->coll && input->bytes >= rule->min_bytes && input->bytes < rule->max_bytes &&
            input->nranks >= rule->min_ranks && input->nranks <= rule->max_ranks && (eligible & BIT(rule->algo))) {
            choice->algo = rule->algo;
            choice->kind = WF_CHOICE_RULE;
            choice->rule = rule;
            return;
        }
    }
    choice->algo = cheapest(choice, eligible);
    choice->kind = config->restricted[input->coll] && bit_count(eligible) == 1 ? WF_CHOICE_FORCED : WF_CHOICE_MODEL;
}

/* "; next ring at 12.5 us", naming the runner-up among mask, or "" when there is none. */
static void describe_runner_up(const wf_choice_t *choice, uint32_t mask, char *out, size_t outlen)
{
    for (int algo = 0; algo < WF_ALGO_COUNT; algo++)
        if (!choice->estimates[algo].eligible)
            mask &= ~BIT(algo); /* an algorithm that cannot serve the call is nobody's runner-up */
    wf_algo_t next = cheapest(choice, mask & ~BIT(choice->algo));
    out[0] = '\0';
    if (next != WF_ALGO_COUNT)
        snprintf(out, outlen, "; next %s at %.1f us", algo_names[next], choice->estimates[next].time_us);
}

void wf_choice_describe(const wf_choice_t *choice, const wf_select_config_t *config, const wf_model_input_t *input,
                        char *out, size_t outlen)
{
    const wf_estimate_t *mine = &choice->estimates[choice->algo];
    uint32_t table = wf_coll_algorithms(input->coll);
    char next[96];

    switch (choice->kind) {
    case WF_CHOICE_SINGLE_RANK:
        snprintf(out, outlen, "one rank, so a local copy");
        break;
    case WF_CHOICE_ONLY:
        snprintf(out, outlen, "the only %s algorithm", coll_names[input->coll]);
        break;
    case WF_CHOICE_FORCED:
        snprintf(out, outlen, "forced by WEFT_ALGO (model estimate %.1f us)", mine->time_us);
        break;
    case WF_CHOICE_RULE:
        snprintf(out, outlen, "tuning file %s line %d (model estimate %.1f us)", config->tuning_file,
                 choice->rule->line, mine->time_us);
        break;
    case WF_CHOICE_MODEL:
        describe_runner_up(choice, config->allowed[input->coll] & table, next, sizeof(next));
        snprintf(out, outlen, "model estimate %.1f us%s", mine->time_us, next);
        break;
    case WF_CHOICE_FALLBACK: {
        int excluded = 0; /* the first allowed algorithm, which cannot serve the call */
        while (excluded < WF_ALGO_COUNT && !(config->allowed[input->coll] & table & BIT(excluded)))
            excluded++;
        const char *reason = excluded < WF_ALGO_COUNT ? choice->estimates[excluded].reason : NULL;
        snprintf(out, outlen, "WEFT_ALGO allows no %s algorithm that can serve this call (%s: %s), so the model "
                 "chose among all of them (estimate %.1f us)", coll_names[input->coll],
                 excluded < WF_ALGO_COUNT ? algo_names[excluded] : "none", reason ? reason : "not eligible",
                 mine->time_us);
        break;
    }
    }
}
