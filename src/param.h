/*
 * The one registry of WEFT_* parameters.
 *
 * Every variable weft reads is an entry of one table (name, type, default, help, accepted values),
 * so weft-info can list them and docs/env.md can be checked against them. Values come from, in
 * increasing precedence: the default, /etc/weft.conf, ~/.weft.conf (or the file named by
 * WEFT_CONF_FILE instead of both), and the environment. A config file holds "NAME=value" lines;
 * '#' starts a comment. Parsing is strict: trailing garbage, out-of-range numbers and unknown
 * choices are errors that name the variable, the value and the accepted values.
 */
#ifndef WF_PARAM_H
#define WF_PARAM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WF_PARAM_DEBUG,            /* enum: NONE ERROR WARN INFO TRACE */
    WF_PARAM_DEBUG_SUBSYS,     /* string, parsed by log.c */
    WF_PARAM_DEBUG_FILE,       /* string */
    WF_PARAM_CONF_FILE,        /* string */
    WF_PARAM_TRANSPORT,        /* enum: auto ofi shm verbs */
    WF_PARAM_OFI_PROVIDER,     /* string, empty = automatic */
    WF_PARAM_SOCKET_IFNAME,    /* string: interface whose address the bootstrap advertises */
    WF_PARAM_ROOT,             /* string host:port */
    WF_PARAM_RANK,             /* int, -1 = unset */
    WF_PARAM_SIZE,             /* int, -1 = unset */
    WF_PARAM_JOB_KEY,          /* string, secret: never printed */
    WF_PARAM_HOSTID,           /* string, empty = hostname plus boot id */
    WF_PARAM_CHUNK_SIZE,       /* size in bytes, accepts K/M/G suffixes */
    WF_PARAM_EAGER_LIMIT,      /* size in bytes */
    WF_PARAM_REDUCE_PRECISION, /* enum: float32 native */
    WF_PARAM_TIMEOUT,          /* int seconds, > 0 */
    WF_PARAM_MR_CACHE_SIZE,    /* int: maximum number of cached registrations */
    WF_PARAM_MR_CACHE_MONITOR, /* enum: auto patch none */
    WF_PARAM_PROGRESS_THREAD,  /* int 0 or 1 */
    WF_PARAM_IB_HCA,           /* string in NCCL_IB_HCA syntax, parsed by topo/nic_select.c */
    WF_PARAM_TOPO_DUMP_FILE,   /* string: path pattern, empty = no dump */
    WF_PARAM_ALGO,             /* string, parsed at communicator init by src/coll/select_parse.c */
    WF_PARAM_TUNING_FILE,      /* string: path of the tuning file, empty = none */
    WF_PARAM_SHM_CMA,          /* enum: auto off */
    WF_PARAM_SCRATCH_KEEP,     /* size in bytes: largest scratch buffer a communicator keeps */
    WF_PARAM_IB_GID_INDEX,     /* int, -1 = automatic */
    WF_PARAM_IB_TIMEOUT,       /* int: RC ACK timeout exponent, 4.096 us * 2^value */
    WF_PARAM_IB_RETRY_CNT,     /* int 0..7 */
    WF_PARAM_IB_TC,            /* int 0..255: traffic class of RoCE packets */
    WF_PARAM_IB_SL,            /* int 0..15: InfiniBand service level */
    WF_PARAM_COUNT
} wf_param_id_t;

typedef enum { WF_PARAM_TYPE_INT, WF_PARAM_TYPE_SIZE, WF_PARAM_TYPE_STRING, WF_PARAM_TYPE_ENUM } wf_param_type_t;

typedef enum { WF_PARAM_SOURCE_DEFAULT, WF_PARAM_SOURCE_FILE, WF_PARAM_SOURCE_ENV } wf_param_source_t;

typedef struct {
    const char *name;          /* full variable name, e.g. "WEFT_CHUNK_SIZE" */
    wf_param_type_t type;
    const char *default_value; /* as text; the only place a default is written */
    const char *const *choices; /* NULL-terminated accepted values for WF_PARAM_TYPE_ENUM */
    int64_t min, max;          /* bounds for INT and SIZE; max is the longest value in bytes for STRING */
    int secret;                /* value never printed */
    const char *help;          /* one sentence: what it sets and in which unit */
} wf_param_def_t;

/*
 * Read the config files and the environment, parse every entry and store the result.
 * Returns 0, or -1 with a message naming the variable, its value, where it came from and the
 * accepted values in err. Safe to call again (re-reads everything); not thread-safe.
 */
int wf_param_load(char *err, size_t errlen);

/* Parsed values; valid after wf_param_load succeeded. */
int64_t wf_param_int(wf_param_id_t id);  /* INT and SIZE entries */
const char *wf_param_str(wf_param_id_t id); /* STRING entries, and the chosen name of ENUM entries */
int wf_param_enum(wf_param_id_t id);     /* index of the chosen value in choices */
wf_param_source_t wf_param_source(wf_param_id_t id);
const wf_param_def_t *wf_param_def(wf_param_id_t id);

/*
 * Where the current value came from, for messages: "default", "environment", or the config file's
 * path. The string stays valid until the next wf_param_load.
 */
const char *wf_param_origin(wf_param_id_t id);

/*
 * Log every value that overrides its default at INFO under WF_SUB_ENV, with its origin (secrets as
 * "(set)"). Call after wf_log_init, so the levels from the registry apply.
 */
void wf_param_log_overrides(void);

/* Parse one value as the entry's type would; exposed for unit tests. Returns 0 or -1 with err set. */
int wf_param_parse_value(const wf_param_def_t *def, const char *text, int64_t *int_out, int *enum_out,
                         char *err, size_t errlen);

#endif /* WF_PARAM_H */
