/*
 * Parsers of WEFT_ALGO and of the tuning file (see select.h for both grammars). Both are strict:
 * every unknown name, malformed number or extra token is an error that names the token and the
 * accepted values, never a value silently ignored.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "select.h"

#define TEXT_MAX 4096
#define MAX_RANKS (1 << 20) /* WF_MAX_RANKS in comm.h */

static char *trim(char *text)
{
    char *end = text + strlen(text);
    while (isspace((unsigned char)*text))
        text++;
    while (end > text && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return text;
}

static int find_coll(const char *name)
{
    return wf_coll_from_name(name);
}

/* An algorithm of some collective by name (never "local"), or -1. */
static int find_algo(const char *name)
{
    for (int a = WF_ALGO_DIRECT; a < WF_ALGO_COUNT; a++)
        if (strcasecmp(name, wf_algo_name((wf_algo_t)a)) == 0)
            return a;
    return -1;
}

static void list_collectives(char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int c = 0; c < WF_COLL_COUNT && used < outlen; c++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", c > 0 ? ", " : "", wf_coll_name((wf_coll_t)c));
}

static void list_all_algorithms(char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (int a = WF_ALGO_DIRECT; a < WF_ALGO_COUNT && used < outlen; a++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", a > WF_ALGO_DIRECT ? ", " : "",
                                 wf_algo_name((wf_algo_t)a));
}

/* One WEFT_ALGO list after the optional "collective:": a mask, and whether it excludes. */
static int parse_algo_list(const char *value, char *list, int coll, uint32_t *mask, int *exclude, char *err,
                           size_t errlen)
{
    char accepted[256];
    list = trim(list);
    *exclude = list[0] == '^';
    if (*exclude)
        list = trim(list + 1);
    if (list[0] == '\0') {
        snprintf(err, errlen, "WEFT_ALGO=%.200s: an entry names no algorithm; write for example allreduce:ring",
                 value);
        return -1;
    }

    *mask = 0;
    char *token;
    while ((token = strsep(&list, ",")) != NULL) {
        char *name = trim(token);
        int algo = find_algo(name);
        if (name[0] == '\0') {
            snprintf(err, errlen, "WEFT_ALGO=%.200s: an algorithm name is empty; separate names with one ',' and "
                     "end the list with a name", value);
            return -1;
        }
        if (name[0] == '^') {
            snprintf(err, errlen, "WEFT_ALGO=%.200s: '%.64s' has a '^' inside a list; '^' goes once before the "
                     "list and excludes all of it, as in allreduce:^ring,direct", value, name);
            return -1;
        }
        if (coll >= 0 && (algo < 0 || !(wf_coll_algorithms((wf_coll_t)coll) & WF_ALGO_BIT(algo)))) {
            wf_coll_algorithm_list((wf_coll_t)coll, accepted, sizeof(accepted));
            snprintf(err, errlen, "WEFT_ALGO=%.200s: '%.64s' is not an algorithm of %s; %s accepts %s", value, name,
                     wf_coll_name((wf_coll_t)coll), wf_coll_name((wf_coll_t)coll), accepted);
            return -1;
        }
        if (algo < 0) {
            list_all_algorithms(accepted, sizeof(accepted));
            snprintf(err, errlen, "WEFT_ALGO=%.200s: unknown algorithm '%.64s'; use %s", value, name, accepted);
            return -1;
        }
        *mask |= WF_ALGO_BIT(algo);
    }
    return 0;
}

/* Turn the parsed lists into config->allowed: a collective's own list, else the bare list, else all. */
static int apply_algo_lists(const char *value, const uint32_t *masks, const int *excludes, const int *given,
                            int bare, wf_select_config_t *config, char *err, size_t errlen)
{
    for (int c = 0; c < WF_COLL_COUNT; c++) {
        uint32_t table = wf_coll_algorithms((wf_coll_t)c), allowed = table;
        int source = given[c] ? c : bare;
        if (source >= 0 && excludes[source])
            allowed = table & ~masks[source];
        else if (source >= 0 && (given[c] || (masks[source] & table)))
            allowed = masks[source] & table;
        if (allowed == 0) {
            char accepted[256];
            wf_coll_algorithm_list((wf_coll_t)c, accepted, sizeof(accepted));
            snprintf(err, errlen, "WEFT_ALGO=%.200s excludes every %s algorithm; leave at least one of %s", value,
                     wf_coll_name((wf_coll_t)c), accepted);
            return -1;
        }
        config->allowed[c] = allowed;
        config->restricted[c] = allowed != table;
    }
    return 0;
}

int wf_algo_parse(const char *text, wf_select_config_t *config, char *err, size_t errlen)
{
    char copy[TEXT_MAX];
    uint32_t masks[WF_COLL_COUNT + 1] = {0};
    int excludes[WF_COLL_COUNT + 1] = {0}, given[WF_COLL_COUNT] = {0};
    const int bare_slot = WF_COLL_COUNT;
    int bare = -1;

    if (strlen(text) >= sizeof(copy)) {
        snprintf(err, errlen, "WEFT_ALGO is too long: at most %d bytes", TEXT_MAX - 1);
        return -1;
    }
    snprintf(copy, sizeof(copy), "%s", text);

    char *save = NULL;
    for (char *entry = strtok_r(copy, ";", &save); entry != NULL; entry = strtok_r(NULL, ";", &save)) {
        char *item = trim(entry), *colon = strchr(item, ':'), *list = item;
        int slot = bare_slot;
        if (item[0] == '\0')
            continue; /* "allreduce:ring;" */
        if (colon != NULL) {
            *colon = '\0';
            char *name = trim(item), names[128];
            slot = find_coll(name);
            if (slot < 0) {
                list_collectives(names, sizeof(names));
                snprintf(err, errlen, "WEFT_ALGO=%.200s: unknown collective '%.64s'; use %s", text, name, names);
                return -1;
            }
            if (given[slot]) {
                snprintf(err, errlen, "WEFT_ALGO=%.200s: %s appears twice; give each collective one list", text,
                         wf_coll_name((wf_coll_t)slot));
                return -1;
            }
            given[slot] = 1;
            list = colon + 1;
        } else if (bare >= 0) {
            snprintf(err, errlen, "WEFT_ALGO=%.200s: two lists name no collective; write collective:list, as in "
                     "allreduce:ring;allgather:bruck", text);
            return -1;
        } else {
            bare = bare_slot;
        }
        if (parse_algo_list(text, list, slot == bare_slot ? -1 : slot, &masks[slot], &excludes[slot], err,
                            errlen) != 0)
            return -1;
    }
    return apply_algo_lists(text, masks, excludes, given, bare, config, err, errlen);
}

/*
 * A size in bytes with an optional K, M or G suffix (powers of 1024). Returns 0, or -1 when the
 * text is not a size or overflows 64 bits.
 */
static int parse_size(const char *text, uint64_t *out)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno == ERANGE)
        return -1;
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    default: break;
    }
    if (*end != '\0' || value > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)value << shift;
    return 0;
}

/* A positive rank count, or -1. */
static int parse_ranks_bound(const char *text)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno == ERANGE || *end != '\0' || value < 1 || value > MAX_RANKS)
        return -1;
    return (int)value;
}

/* "LOW-HIGH", "LOW-" (no upper bound) or, with single_allowed, "N" alone. */
static int split_range(char *text, char **low, char **high, int single_allowed)
{
    char *dash = strchr(text, '-');
    if (dash == NULL) {
        *low = text;
        *high = single_allowed ? text : NULL;
        return single_allowed ? 0 : -1;
    }
    *dash = '\0';
    *low = text;
    *high = dash + 1;
    return 0;
}

/* "LOW-HIGH" or "LOW-" of a rule: LOW <= bytes < HIGH. */
static int parse_size_range(const char *where, char *token, wf_tune_rule_t *rule, char *err, size_t errlen)
{
    char original[96], *low, *high;
    snprintf(original, sizeof(original), "%s", token);
    int valid = split_range(token, &low, &high, 0) == 0 && parse_size(low, &rule->min_bytes) == 0;
    if (valid && high[0] == '\0')
        rule->max_bytes = UINT64_MAX;
    else if (valid)
        valid = parse_size(high, &rule->max_bytes) == 0;
    if (!valid || rule->min_bytes >= rule->max_bytes) {
        snprintf(err, errlen, "%s: '%.80s' is not a size range; write LOW-HIGH (LOW <= bytes < HIGH) or LOW- with "
                 "sizes such as 0, 4096, 64K or 1M, and LOW < HIGH", where, original);
        return -1;
    }
    return 0;
}

/* "ranks=LOW-HIGH" of a rule. */
static int parse_rule_ranks(const char *where, char *token, wf_tune_rule_t *rule, char *err, size_t errlen)
{
    char original[96], *low, *high;
    snprintf(original, sizeof(original), "%s", token);
    if (strncasecmp(token, "ranks=", 6) != 0 || split_range(token + 6, &low, &high, 1) != 0 ||
        (rule->min_ranks = parse_ranks_bound(low)) < 0 ||
        (rule->max_ranks = high[0] == '\0' ? MAX_RANKS : parse_ranks_bound(high)) < 0 ||
        rule->min_ranks > rule->max_ranks) {
        snprintf(err, errlen, "%s: '%.80s' is not a rank range; write ranks=LOW-HIGH, ranks=LOW- or ranks=N with "
                 "1 <= LOW <= HIGH <= %d", where, original, MAX_RANKS);
        return -1;
    }
    return 0;
}

/* "COLLECTIVE LOW-HIGH ALGORITHM [ranks=LOW-HIGH]" */
static int parse_rule(const char *where, int line_number, char *line, wf_select_config_t *config, char *err,
                      size_t errlen)
{
    char *save = NULL, *tokens[5], names[256];
    int count = 0;
    for (char *token = strtok_r(line, " \t", &save); token != NULL && count < 5; token = strtok_r(NULL, " \t", &save))
        tokens[count++] = token;
    if (count > 4) {
        snprintf(err, errlen, "%s: unexpected '%.40s' after the rule; expected COLLECTIVE SIZE-RANGE ALGORITHM "
                 "[ranks=LOW-HIGH], as in allreduce 0-4K recursive_doubling", where, tokens[4]);
        return -1;
    }
    if (count < 3) {
        snprintf(err, errlen, "%s: expected NAME = VALUE or COLLECTIVE SIZE-RANGE ALGORITHM [ranks=LOW-HIGH], as "
                 "in allreduce 0-4K recursive_doubling", where);
        return -1;
    }

    wf_tune_rule_t rule = {.min_ranks = 1, .max_ranks = MAX_RANKS, .line = line_number};
    int coll = find_coll(tokens[0]);
    if (coll < 0) {
        list_collectives(names, sizeof(names));
        snprintf(err, errlen, "%s: unknown collective '%.64s'; use %s", where, tokens[0], names);
        return -1;
    }
    rule.coll = (wf_coll_t)coll;

    if (parse_size_range(where, tokens[1], &rule, err, errlen) != 0)
        return -1;

    int algo = find_algo(tokens[2]);
    if (algo < 0 || !(wf_coll_algorithms(rule.coll) & WF_ALGO_BIT(algo))) {
        wf_coll_algorithm_list(rule.coll, names, sizeof(names));
        snprintf(err, errlen, "%s: '%.64s' is not an algorithm of %s; %s accepts %s", where, tokens[2],
                 wf_coll_name(rule.coll), wf_coll_name(rule.coll), names);
        return -1;
    }
    rule.algo = (wf_algo_t)algo;
    if (count == 4 && parse_rule_ranks(where, tokens[3], &rule, err, errlen) != 0)
        return -1;
    if (config->nrules == WF_TUNE_MAX_RULES) {
        snprintf(err, errlen, "%s: more than %d rules; merge adjacent size ranges", where, WF_TUNE_MAX_RULES);
        return -1;
    }
    config->rules[config->nrules++] = rule;
    return 0;
}

/* "[shm.|net.]NAME = VALUE" */
static int parse_setting(const char *where, char *name, char *value, wf_select_config_t *config, char *err,
                         size_t errlen)
{
    int first = 0, last = WF_TRANSPORT_CLASS_COUNT - 1, index = -1;
    const char *bare = name;
    if (strncasecmp(name, "shm.", 4) == 0)
        last = WF_TRANSPORT_CLASS_SHM, bare = name + 4;
    else if (strncasecmp(name, "net.", 4) == 0)
        first = WF_TRANSPORT_CLASS_NET, bare = name + 4;
    for (int i = 0; i < WF_MODEL_PARAM_COUNT; i++)
        if (strcasecmp(bare, wf_model_param_name(i)) == 0)
            index = i;
    if (index < 0) {
        snprintf(err, errlen, "%s: unknown parameter '%.64s'; use alpha_us, overhead_us, beta_ns_per_byte or "
                 "gamma_ns_per_byte, optionally prefixed by shm. or net.", where, name);
        return -1;
    }

    char *end = NULL;
    errno = 0;
    double number = strtod(value, &end);
    if (value[0] == '\0' || isspace((unsigned char)value[0]) || *end != '\0' || errno == ERANGE ||
        !isfinite(number) || number < 0.0 || number > 1e9) {
        snprintf(err, errlen, "%s: '%.64s' is not a valid value of %s; use a decimal number from 0 to 1e9", where,
                 value, bare);
        return -1;
    }
    for (int t = first; t <= last; t++)
        *wf_model_param_field(&config->params[t], index) = number;
    return 0;
}

int wf_tuning_parse_line(const char *path, int line_number, char *line, wf_select_config_t *config, char *err,
                         size_t errlen)
{
    char where[WF_SELECT_PATH_MAX + 32];
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    char *content = trim(line);
    if (content[0] == '\0')
        return 0;

    snprintf(where, sizeof(where), "%s line %d", path, line_number);
    /* A setting is one name and then '=', while a rule's only '=' is in its ranks= token. */
    char *equals = strchr(content, '=');
    size_t name_end = equals != NULL ? (size_t)(equals - content) : 0;
    while (name_end > 0 && isspace((unsigned char)content[name_end - 1]))
        name_end--;
    if (equals != NULL && strcspn(content, " \t") >= name_end) {
        *equals = '\0';
        return parse_setting(where, trim(content), trim(equals + 1), config, err, errlen);
    }
    return parse_rule(where, line_number, content, config, err, errlen);
}

int wf_tuning_parse_file(const char *path, wf_select_config_t *config, char *err, size_t errlen)
{
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        snprintf(err, errlen, "failed to open WEFT_TUNING_FILE=%.400s: %s; name a readable file or unset "
                 "WEFT_TUNING_FILE", path, strerror(errno));
        return -1;
    }
    snprintf(config->tuning_file, sizeof(config->tuning_file), "%s", path);

    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int line_number = 0, rc = 0;
    while (rc == 0 && (length = getline(&line, &capacity, file)) >= 0) {
        line_number++;
        if (strlen(line) != (size_t)length) {
            snprintf(err, errlen, "%.400s line %d: contains a NUL byte; the tuning file must be text", path,
                     line_number);
            rc = -1;
        } else {
            rc = wf_tuning_parse_line(path, line_number, line, config, err, errlen);
        }
    }
    if (rc == 0 && ferror(file)) {
        snprintf(err, errlen, "failed to read WEFT_TUNING_FILE=%.400s: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(file);
    return rc;
}
