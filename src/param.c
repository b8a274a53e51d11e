/*
 * The WEFT_* parameter table, and the loading of values from config files and the environment.
 *
 * wf_param_load builds the new values in a staging copy and publishes them only when every value
 * parsed, so a failed reload leaves the previous values in place.
 */
#define _GNU_SOURCE
#include "param.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "log.h"
#include "nic_select.h"

/* Longest stored value including its NUL, so a file path fits. */
#define WF_PARAM_VALUE_MAX 4096
#define WF_PARAM_TEXT_MAX (WF_PARAM_VALUE_MAX - 1)
/* Node identities travel in wf_topo_summary_t.hostid, which has room for 95 bytes plus the NUL. */
#define WF_PARAM_HOSTID_MAX 95

#define WF_PARAM_FILE_SLOTS 2 /* /etc/weft.conf and ~/.weft.conf, or the one WEFT_CONF_FILE names */

/* Same order as wf_log_level_t, so the chosen index is the log level. */
static const char *const level_choices[] = {"NONE", "ERROR", "WARN", "INFO", "TRACE", NULL};
static const char *const transport_choices[] = {"auto", "ofi", "shm", "verbs", NULL};
static const char *const cma_choices[] = {"auto", "off", NULL};
static const char *const precision_choices[] = {"float32", "native", NULL};
static const char *const monitor_choices[] = {"auto", "patch", "none", NULL};

static const wf_param_def_t param_defs[WF_PARAM_COUNT] = {
    [WF_PARAM_DEBUG] = {"WEFT_DEBUG", WF_PARAM_TYPE_ENUM, "WARN", level_choices, 0, 0, 0,
                        "Sets the lowest severity that is logged: NONE, ERROR, WARN, INFO or TRACE."},
    [WF_PARAM_DEBUG_SUBSYS] = {"WEFT_DEBUG_SUBSYS", WF_PARAM_TYPE_STRING, "ALL", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                               "Selects the subsystems that log, as a comma-separated list of INIT, COLL, NET, "
                               "TOPO, ALLOC, TUNE, ENV, BOOT or ALL, with a leading ^ to exclude the listed ones."},
    [WF_PARAM_DEBUG_FILE] = {"WEFT_DEBUG_FILE", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                             "Names the file that log lines are appended to, with %h replaced by the host name "
                             "and %p by the process id (empty: stderr)."},
    [WF_PARAM_CONF_FILE] = {"WEFT_CONF_FILE", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                            "Names the only config file to read, which must exist (empty: /etc/weft.conf, "
                            "then ~/.weft.conf over it)."},
    [WF_PARAM_TRANSPORT] = {"WEFT_TRANSPORT", WF_PARAM_TYPE_ENUM, "auto", transport_choices, 0, 0, 0,
                            "Selects the transport: auto uses weft's shm transport when every rank is on one "
                            "node and WEFT_OFI_PROVIDER is unset, shared memory inside nodes and verbs (when "
                            "every rank has an RDMA device) or libfabric between them otherwise; ofi uses "
                            "libfabric for every peer, shm forces weft's own shared-memory transport, verbs "
                            "weft's own libibverbs transport."},
    [WF_PARAM_OFI_PROVIDER] = {"WEFT_OFI_PROVIDER", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                               "Names the libfabric provider to open, such as verbs;ofi_rxm or tcp;ofi_rxm "
                               "(empty: chosen automatically)."},
    [WF_PARAM_SOCKET_IFNAME] = {"WEFT_SOCKET_IFNAME", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                                "Names the network interface whose address the bootstrap advertises "
                                "(empty: chosen automatically)."},
    [WF_PARAM_ROOT] = {"WEFT_ROOT", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                       "Sets the host:port of the rendezvous that rank 0 listens on, used together with "
                       "WEFT_RANK and WEFT_SIZE."},
    [WF_PARAM_RANK] = {"WEFT_RANK", WF_PARAM_TYPE_INT, "-1", NULL, -1, (1 << 20) - 1, 0,
                       "Sets the rank of this process for the WEFT_ROOT bootstrap (-1: unset)."},
    [WF_PARAM_SIZE] = {"WEFT_SIZE", WF_PARAM_TYPE_INT, "-1", NULL, -1, 1 << 20, 0,
                       "Sets the number of ranks for the WEFT_ROOT bootstrap (-1: unset)."},
    [WF_PARAM_JOB_KEY] = {"WEFT_JOB_KEY", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 1,
                          "Sets the secret that every process of the job presents to the rendezvous."},
    [WF_PARAM_HOSTID] = {"WEFT_HOSTID", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_HOSTID_MAX, 0,
                         "Overrides the node identity of this process, so one machine can act as several "
                         "nodes (empty: host name plus boot id)."},
    [WF_PARAM_CHUNK_SIZE] = {"WEFT_CHUNK_SIZE", WF_PARAM_TYPE_SIZE, "512K", NULL, 4096, 1 << 30, 0,
                             "Sets the pipeline chunk size of large transfers, in bytes."},
    [WF_PARAM_EAGER_LIMIT] = {"WEFT_EAGER_LIMIT", WF_PARAM_TYPE_SIZE, "32K", NULL, 0, 1 << 20, 0,
                              "Sets the largest message, in bytes, that is sent as an eager message "
                              "instead of by RMA."},
    [WF_PARAM_REDUCE_PRECISION] = {"WEFT_REDUCE_PRECISION", WF_PARAM_TYPE_ENUM, "float32", precision_choices, 0,
                                   0, 0,
                                   "Selects the type in which float16 and bfloat16 partial results travel "
                                   "between ranks: float32 rounds once at the end, native halves the traffic."},
    [WF_PARAM_TIMEOUT] = {"WEFT_TIMEOUT", WF_PARAM_TYPE_INT, "300", NULL, 1, 86400, 0,
                          "Sets how long, in seconds, init and each collective wait for peers before "
                          "failing with WEFT_ERR_TIMEOUT."},
    [WF_PARAM_MR_CACHE_SIZE] = {"WEFT_MR_CACHE_SIZE", WF_PARAM_TYPE_INT, "1024", NULL, 1, 1000000, 0,
                                "Sets the maximum number of memory registrations the registration cache keeps."},
    [WF_PARAM_MR_CACHE_MONITOR] = {"WEFT_MR_CACHE_MONITOR", WF_PARAM_TYPE_ENUM, "auto", monitor_choices, 0, 0, 0,
                                   "Selects how the registration cache learns of freed memory: patch intercepts "
                                   "the libc calls that release memory, none turns the cache off so every call "
                                   "registers and deregisters, auto patches where supported."},
    [WF_PARAM_PROGRESS_THREAD] = {"WEFT_PROGRESS_THREAD", WF_PARAM_TYPE_INT, "0", NULL, 0, 1, 0,
                                  "Runs every collective of a communicator on its own progress thread when 1, "
                                  "so non-blocking collectives advance while the caller computes."},
    [WF_PARAM_IB_HCA] = {"WEFT_IB_HCA", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                         "Restricts the OpenFabrics devices a rank may use, as comma-separated name prefixes "
                         "with an optional :port, a leading = for exact names and ^ to exclude (empty: the "
                         "nearest device)."},
    [WF_PARAM_TOPO_DUMP_FILE] = {"WEFT_TOPO_DUMP_FILE", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                                 "Names the files, PATH.json and PATH.xml, where the first rank of each node "
                                 "writes the rank map and its node's hwloc topology, with %h, %p and %r replaced "
                                 "by host name, process id and rank (empty: no dump)."},
    [WF_PARAM_ALGO] = {"WEFT_ALGO", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                       "Restricts the algorithms of each collective, as in allreduce:rabenseifner,ring;"
                       "allgather:bruck, with a leading ^ to exclude (empty: every algorithm)."},
    [WF_PARAM_TUNING_FILE] = {"WEFT_TUNING_FILE", WF_PARAM_TYPE_STRING, "", NULL, 0, WF_PARAM_TEXT_MAX, 0,
                              "Names a file of cost-model parameters and size ranges that fix the algorithm "
                              "choice (empty: built-in model only)."},
    [WF_PARAM_SCRATCH_KEEP] = {"WEFT_SCRATCH_KEEP", WF_PARAM_TYPE_SIZE, "256M", NULL, 0, (int64_t)1 << 40, 0,
                               "Sets the size up to which a communicator keeps its scratch buffers for the "
                               "next call, in bytes; larger ones are allocated and registered for each call."},
    [WF_PARAM_IB_GID_INDEX] = {"WEFT_IB_GID_INDEX", WF_PARAM_TYPE_INT, "-1", NULL, -1, 1023, 0,
                               "Sets the GID table index the verbs transport uses on RoCE ports (-1: the first "
                               "RoCE v2 GID with an IPv4 address, then a global IPv6 one)."},
    [WF_PARAM_IB_TIMEOUT] = {"WEFT_IB_TIMEOUT", WF_PARAM_TYPE_INT, "20", NULL, 1, 31, 0,
                             "Sets the verbs transport's acknowledgement timeout, 4.096 us times 2 to this power "
                             "(20: about 4.3 s), before a packet is sent again."},
    [WF_PARAM_IB_RETRY_CNT] = {"WEFT_IB_RETRY_CNT", WF_PARAM_TYPE_INT, "7", NULL, 0, 7, 0,
                               "Sets how many times the verbs transport resends an unacknowledged packet before the "
                               "operation fails."},
    [WF_PARAM_IB_TC] = {"WEFT_IB_TC", WF_PARAM_TYPE_INT, "0", NULL, 0, 255, 0,
                        "Sets the traffic class of the verbs transport's RoCE packets."},
    [WF_PARAM_IB_SL] = {"WEFT_IB_SL", WF_PARAM_TYPE_INT, "0", NULL, 0, 15, 0,
                        "Sets the InfiniBand service level of the verbs transport's connections."},
    [WF_PARAM_SHM_CMA] = {"WEFT_SHM_CMA", WF_PARAM_TYPE_ENUM, "auto", cma_choices, 0, 0, 0,
                          "Selects how the shm transport moves large payloads: auto uses cross-memory attach "
                          "where the kernel allows it, off copies everything through the shared-memory rings."},
};

typedef struct {
    char text[WF_PARAM_VALUE_MAX]; /* as given; ENUM entries hold the canonical spelling of the choice */
    int64_t number;                /* INT and SIZE entries */
    int choice;                    /* ENUM entries: index into choices, -1 for other types */
    wf_param_source_t source;
    int file_slot; /* source FILE: index into param_state_t.files */
} param_value_t;

typedef struct {
    param_value_t values[WF_PARAM_COUNT];
    char files[WF_PARAM_FILE_SLOTS][WF_PARAM_VALUE_MAX]; /* config files read, for wf_param_origin */
} param_state_t;

static param_state_t current; /* read by the accessors */
static param_state_t staging; /* built by wf_param_load */
static int current_valid;     /* 0 until defaults or a successful load filled current */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

/* "NAME=value (from ORIGIN)", with the value left out for secrets. */
static void describe_value(const wf_param_def_t *def, const char *text, const char *origin, char *out,
                           size_t outlen)
{
    char where[WF_PARAM_VALUE_MAX + 32] = "";

    if (origin)
        snprintf(where, sizeof where, " (from %s)", origin);
    if (def->secret)
        snprintf(out, outlen, "%s%s", def->name, where);
    else
        snprintf(out, outlen, "%s=%.200s%s", def->name, text, where);
}

static void append_choices(const wf_param_def_t *def, char *out, size_t outlen)
{
    size_t used = strlen(out);

    for (int i = 0; def->choices[i] && used < outlen; i++) {
        snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", def->choices[i]);
        used += strlen(out + used);
    }
}

/*
 * Parse a decimal integer with an optional K, M or G suffix (binary multiples) when with_suffix.
 * Returns 0, -1 when the text is not a number, or -2 when it does not fit in int64_t.
 */
static int parse_number(const char *text, int with_suffix, int64_t *out)
{
    int negative = text[0] == '-';
    char *end = NULL;

    /* strtoll alone would accept leading spaces, a '+' and an empty digit string. */
    if (!isdigit((unsigned char)text[negative]) || (negative && with_suffix))
        return -1;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    int overflow = errno == ERANGE;

    int shift = 0;
    if (with_suffix && *end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return -1;
        }
        end++;
    }
    if (*end)
        return -1;
    if (overflow || value > (INT64_MAX >> shift))
        return -2;
    *out = (int64_t)value * ((int64_t)1 << shift); /* a shift of a negative value is undefined */
    return 0;
}

static int parse_numeric(const wf_param_def_t *def, const char *text, const char *what, int64_t *int_out,
                         char *err, size_t errlen)
{
    int is_size = def->type == WF_PARAM_TYPE_SIZE;
    const char *accepted = is_size ? "a number of bytes with an optional K, M or G suffix," : "a whole number";
    int64_t value = 0;
    int rc = parse_number(text, is_size, &value);

    if (rc == 0 && value >= def->min && value <= def->max) {
        if (int_out)
            *int_out = value;
        return 0;
    }
    const char *problem = "out of range";
    if (rc == -1)
        problem = is_size ? "not a size" : "not an integer";
    snprintf(err, errlen, "%s is %s: use %s between %" PRId64 " and %" PRId64, what, problem, accepted, def->min,
             def->max);
    return -1;
}

static int parse_choice(const wf_param_def_t *def, const char *text, const char *what, int *enum_out, char *err,
                        size_t errlen)
{
    for (int i = 0; def->choices[i]; i++) {
        if (strcasecmp(text, def->choices[i]) == 0) {
            if (enum_out)
                *enum_out = i;
            return 0;
        }
    }
    snprintf(err, errlen, "%s is not a valid choice: use one of ", what);
    append_choices(def, err, errlen);
    return -1;
}

/* wf_param_parse_value, with origin ("the environment", "FILE line N" or NULL) added to errors. */
static int parse_value(const wf_param_def_t *def, const char *text, const char *origin, int64_t *int_out,
                       int *enum_out, char *err, size_t errlen)
{
    char what[WF_PARAM_VALUE_MAX + 512];
    size_t length = strlen(text);
    int64_t max_length = def->type == WF_PARAM_TYPE_STRING ? def->max : WF_PARAM_TEXT_MAX;

    describe_value(def, text, origin, what, sizeof what);
    if ((int64_t)length > max_length) {
        /* Name only: a value this long is unreadable in a message, and it may be a secret. */
        snprintf(err, errlen, "%s%s%s%s is too long: %zu bytes, at most %" PRId64 " allowed", def->name,
                 origin ? " (from " : "", origin ? origin : "", origin ? ")" : "", length, max_length);
        return -1;
    }

    switch (def->type) {
    case WF_PARAM_TYPE_INT:
    case WF_PARAM_TYPE_SIZE:
        return parse_numeric(def, text, what, int_out, err, errlen);
    case WF_PARAM_TYPE_ENUM:
        return parse_choice(def, text, what, enum_out, err, errlen);
    case WF_PARAM_TYPE_STRING:
        break;
    }

    /* log.c owns the subsystem names, but an unknown name must fail here, where errors are returned. */
    if (def == &param_defs[WF_PARAM_DEBUG_SUBSYS]) {
        unsigned mask = 0;
        char reason[512];

        if (wf_log_parse_subsys(text, &mask, reason, sizeof reason) != 0) {
            snprintf(err, errlen, "%s: %s", what, reason);
            return -1;
        }
    }
    if (def == &param_defs[WF_PARAM_IB_HCA]) {
        wf_nic_spec_t spec;
        char reason[512];

        if (wf_nic_spec_parse(text, &spec, reason, sizeof reason) != 0) {
            snprintf(err, errlen, "%s is invalid: %s", what, reason);
            return -1;
        }
    }
    return 0;
}

int wf_param_parse_value(const wf_param_def_t *def, const char *text, int64_t *int_out, int *enum_out, char *err,
                         size_t errlen)
{
    return parse_value(def, text, NULL, int_out, enum_out, err, errlen);
}

/* Parse text for entry id and store it in state with its source. */
static int set_value(param_state_t *state, wf_param_id_t id, const char *text, wf_param_source_t source,
                     int file_slot, const char *origin, char *err, size_t errlen)
{
    const wf_param_def_t *def = &param_defs[id];
    param_value_t *value = &state->values[id];
    int64_t number = 0;
    int choice = -1;

    if (parse_value(def, text, origin, &number, &choice, err, errlen) != 0)
        return -1;
    /* ENUM entries store the canonical spelling, so callers may compare with strcmp. */
    snprintf(value->text, sizeof value->text, "%s", choice >= 0 ? def->choices[choice] : text);
    value->number = number;
    value->choice = choice;
    value->source = source;
    value->file_slot = file_slot;
    return 0;
}

static int set_defaults(param_state_t *state, char *err, size_t errlen)
{
    memset(state->files, 0, sizeof state->files);
    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        const wf_param_def_t *def = &param_defs[id];
        char reason[1024];

        if (!def->name || !def->default_value || !def->help) {
            snprintf(err, errlen, "internal error: parameter %d has no table entry", id);
            return -1;
        }
        if (set_value(state, (wf_param_id_t)id, def->default_value, WF_PARAM_SOURCE_DEFAULT, -1, "the default",
                      reason, sizeof reason) != 0) {
            snprintf(err, errlen, "internal error: %s", reason);
            return -1;
        }
    }
    return 0;
}

static int find_param(const char *name)
{
    for (int id = 0; id < WF_PARAM_COUNT; id++)
        if (strcmp(param_defs[id].name, name) == 0)
            return id;
    return -1;
}

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

static int is_identifier(const char *name)
{
    if (!*name)
        return 0;
    for (; *name; name++)
        if (!isalnum((unsigned char)*name) && *name != '_')
            return 0;
    return 1;
}

/* Apply one "NAME=value" line of a config file; blank and comment lines are skipped. */
static int apply_conf_line(param_state_t *state, int slot, char *line, int line_number, char *err, size_t errlen)
{
    const char *path = state->files[slot];
    char *hash = strchr(line, '#');

    if (hash)
        *hash = '\0';
    char *content = trim(line);
    if (!*content)
        return 0;

    /* Malformed lines are not echoed: they may hold a secret with its '=' missing. */
    char *equals = strchr(content, '=');
    if (!equals) {
        snprintf(err, errlen, "%s line %d: expected NAME=value, for example WEFT_DEBUG=INFO", path, line_number);
        return -1;
    }
    *equals = '\0';
    char *name = trim(content);
    char *text = trim(equals + 1);
    if (!is_identifier(name)) {
        snprintf(err, errlen, "%s line %d: expected NAME=value with a variable name before the '='", path,
                 line_number);
        return -1;
    }

    int id = find_param(name);
    if (id < 0) {
        snprintf(err, errlen, "%s line %d: unknown parameter %.100s: run weft-info --params for the list", path,
                 line_number, name);
        return -1;
    }
    if (id == WF_PARAM_CONF_FILE) {
        snprintf(err, errlen, "%s line %d: WEFT_CONF_FILE cannot be set in a config file: set it in the environment",
                 path, line_number);
        return -1;
    }
    /* As in the environment, an empty number or choice leaves the lower-precedence value. */
    if (!*text && param_defs[id].type != WF_PARAM_TYPE_STRING)
        return 0;

    char origin[WF_PARAM_VALUE_MAX + 32];
    snprintf(origin, sizeof origin, "%s line %d", path, line_number);
    return set_value(state, (wf_param_id_t)id, text, WF_PARAM_SOURCE_FILE, slot, origin, err, errlen);
}

/*
 * Read the config file whose path is in state->files[slot]. A missing file is skipped unless
 * required (WEFT_CONF_FILE), and then forgotten so that no origin points to it.
 */
static int read_conf_file(param_state_t *state, int slot, int required, char *err, size_t errlen)
{
    const char *path = state->files[slot];
    FILE *file = fopen(path, "re");

    if (!file) {
        if (errno == ENOENT && !required) {
            state->files[slot][0] = '\0';
            return 0;
        }
        if (required)
            snprintf(err, errlen,
                     "failed to open WEFT_CONF_FILE=%s (from the environment): %s: name a readable file, or "
                     "unset WEFT_CONF_FILE to read /etc/weft.conf and ~/.weft.conf",
                     path, strerror(errno));
        else
            snprintf(err, errlen, "failed to open config file %s: %s: make it readable or remove it", path,
                     strerror(errno));
        return -1;
    }

    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int line_number = 0;
    int rc = 0;
    while (rc == 0 && (length = getline(&line, &capacity, file)) >= 0) {
        line_number++;
        if (strlen(line) != (size_t)length) {
            snprintf(err, errlen, "%s line %d: contains a NUL byte: the file must be text", path, line_number);
            rc = -1;
        } else {
            rc = apply_conf_line(state, slot, line, line_number, err, errlen);
        }
    }
    if (rc == 0 && ferror(file)) {
        snprintf(err, errlen, "failed to read config file %s: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(file);
    return rc;
}

static int read_conf_files(param_state_t *state, char *err, size_t errlen)
{
    const char *named = getenv("WEFT_CONF_FILE");

    if (named && *named) {
        if (strlen(named) > WF_PARAM_TEXT_MAX) {
            snprintf(err, errlen, "WEFT_CONF_FILE (from the environment) is too long: at most %d bytes allowed",
                     WF_PARAM_TEXT_MAX);
            return -1;
        }
        snprintf(state->files[0], WF_PARAM_VALUE_MAX, "%s", named);
        return read_conf_file(state, 0, 1, err, errlen);
    }

    snprintf(state->files[0], WF_PARAM_VALUE_MAX, "/etc/weft.conf");
    if (read_conf_file(state, 0, 0, err, errlen) != 0)
        return -1;

    /* NOTE: without HOME (some batch systems clear it) only /etc/weft.conf applies. */
    const char *home = getenv("HOME");
    if (!home || !*home)
        return 0;
    int n = snprintf(state->files[1], WF_PARAM_VALUE_MAX, "%s/.weft.conf", home);
    if (n < 0 || n >= WF_PARAM_VALUE_MAX) {
        snprintf(err, errlen, "HOME is too long for a path (at most %d bytes): fix HOME or set WEFT_CONF_FILE",
                 WF_PARAM_TEXT_MAX - 11);
        return -1;
    }
    return read_conf_file(state, 1, 0, err, errlen);
}

static int read_environment(param_state_t *state, char *err, size_t errlen)
{
    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        const char *text = getenv(param_defs[id].name);

        /* An empty number or choice means unset, as `export WEFT_TIMEOUT=` suggests. */
        if (!text || (!*text && param_defs[id].type != WF_PARAM_TYPE_STRING))
            continue;
        if (set_value(state, (wf_param_id_t)id, text, WF_PARAM_SOURCE_ENV, -1, "the environment", err, errlen) != 0)
            return -1;
    }
    return 0;
}

int wf_param_load(char *err, size_t errlen)
{
    int rc = -1;

    /*
     * The lock keeps concurrent loads from sharing the staging copy. NOTE: readers take no lock, so
     * a load that runs while another thread reads a value is a race, as param.h states.
     */
    pthread_mutex_lock(&load_lock);
    if (set_defaults(&staging, err, errlen) == 0 && read_conf_files(&staging, err, errlen) == 0 &&
        read_environment(&staging, err, errlen) == 0) {
        current = staging;
        current_valid = 1;
        rc = 0;
    }
    pthread_mutex_unlock(&load_lock);
    return rc;
}

/* Accessors used before any wf_param_load see the defaults, so early logging still works. */
static const param_value_t *value_of(wf_param_id_t id)
{
    if (!current_valid) {
        char err[1024];

        if (set_defaults(&current, err, sizeof err) != 0)
            fprintf(stderr, "weft: %s\n", err); /* a broken table; every test would show it */
        current_valid = 1;
    }
    return &current.values[id];
}

int64_t wf_param_int(wf_param_id_t id)
{
    return value_of(id)->number;
}

const char *wf_param_str(wf_param_id_t id)
{
    return value_of(id)->text;
}

int wf_param_enum(wf_param_id_t id)
{
    return value_of(id)->choice;
}

wf_param_source_t wf_param_source(wf_param_id_t id)
{
    return value_of(id)->source;
}

const wf_param_def_t *wf_param_def(wf_param_id_t id)
{
    if ((int)id < 0 || id >= WF_PARAM_COUNT)
        return NULL;
    return &param_defs[id];
}

const char *wf_param_origin(wf_param_id_t id)
{
    const param_value_t *value = value_of(id);

    switch (value->source) {
    case WF_PARAM_SOURCE_FILE:
        return current.files[value->file_slot];
    case WF_PARAM_SOURCE_ENV:
        return "environment";
    case WF_PARAM_SOURCE_DEFAULT:
        break;
    }
    return "default";
}

void wf_param_log_overrides(void)
{
    for (int id = 0; id < WF_PARAM_COUNT; id++) {
        const param_value_t *value = value_of((wf_param_id_t)id);
        const char *printed_value = value->text;

        if (param_defs[id].secret)
            printed_value = value->text[0] ? "(set)" : "(unset)";

        if (value->source == WF_PARAM_SOURCE_ENV)
            WF_INFO(WF_SUB_ENV, "%s=%s (from the environment)", param_defs[id].name, printed_value);
        else if (value->source == WF_PARAM_SOURCE_FILE)
            WF_INFO(WF_SUB_ENV, "%s=%s (from %s)", param_defs[id].name, printed_value, current.files[value->file_slot]);
    }
}
