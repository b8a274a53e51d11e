/*
 * Log lines with a prefix that identifies host, process, thread and rank, written whole so that
 * lines from concurrent threads never interleave.
 */
#define _GNU_SOURCE
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "param.h"

/* Maximum line length in bytes, newline included. Longer messages are cut and end in "...". */
#define WF_LOG_LINE_MAX 2048
#define WF_LOG_PATH_MAX 4096

/* Until wf_log_init applies the registry, warnings and errors go to stderr. */
int wf_log_level = WF_LOG_WARN;
unsigned wf_log_mask = WF_SUB_ALL;

static const char *const level_names[] = {"NONE", "ERROR", "WARN", "INFO", "TRACE"};

static const struct {
    const char *name;
    unsigned bit;
} subsys_names[] = {
    {"INIT", WF_SUB_INIT}, {"COLL", WF_SUB_COLL},   {"NET", WF_SUB_NET}, {"TOPO", WF_SUB_TOPO},
    {"ALLOC", WF_SUB_ALLOC}, {"TUNE", WF_SUB_TUNE}, {"ENV", WF_SUB_ENV}, {"BOOT", WF_SUB_BOOT},
};

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER; /* guards log_file and each write */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;         /* NULL: stderr */
static int destination_chosen; /* WEFT_DEBUG_FILE was opened or rejected, and is never reopened */
static int log_rank = -1;

static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static char host_name[256];

static void read_host_name(void)
{
    if (gethostname(host_name, sizeof host_name) != 0)
        snprintf(host_name, sizeof host_name, "unknown-host");
    host_name[sizeof host_name - 1] = '\0';
}

static const char *subsys_name(unsigned subsys)
{
    for (size_t i = 0; i < sizeof subsys_names / sizeof subsys_names[0]; i++)
        if (subsys & subsys_names[i].bit)
            return subsys_names[i].name;
    return "ALL";
}

/* Bits of one name, 0 when it is not a subsystem. */
static unsigned subsys_bits(const char *name, size_t length)
{
    if (length == 3 && strncasecmp(name, "ALL", 3) == 0)
        return WF_SUB_ALL;
    for (size_t i = 0; i < sizeof subsys_names / sizeof subsys_names[0]; i++)
        if (strlen(subsys_names[i].name) == length && strncasecmp(name, subsys_names[i].name, length) == 0)
            return subsys_names[i].bit;
    return 0;
}

#define WF_SUBSYS_USAGE                                                                                           \
    "use a comma-separated list of INIT, COLL, NET, TOPO, ALLOC, TUNE, ENV, BOOT or ALL, with a leading ^ to "    \
    "exclude the listed ones"

int wf_log_parse_subsys(const char *text, unsigned *mask, char *err, size_t errlen)
{
    const char *p = text;
    int exclude = 0;
    unsigned listed = 0;

    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0') {
        *mask = WF_SUB_ALL;
        return 0;
    }
    if (*p == '^') {
        exclude = 1;
        p++;
    }

    for (;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *first = p;
        const char *last = end;
        while (first < last && isspace((unsigned char)*first))
            first++;
        while (last > first && isspace((unsigned char)last[-1]))
            last--;

        if (first == last) {
            snprintf(err, errlen, "empty subsystem name: %s", WF_SUBSYS_USAGE);
            return -1;
        }
        unsigned bits = subsys_bits(first, (size_t)(last - first));
        if (!bits) {
            snprintf(err, errlen, "unknown subsystem \"%.*s\": %s", (int)(last - first > 64 ? 64 : last - first),
                     first, WF_SUBSYS_USAGE);
            return -1;
        }
        listed |= bits;
        if (*end == '\0')
            break;
        p = end + 1;
    }

    *mask = exclude ? (WF_SUB_ALL & ~listed) : listed;
    return 0;
}

/* Expand %h (host name), %p (pid) and %% in a WEFT_DEBUG_FILE pattern. Returns 0, or -1 if too long. */
static int expand_path(const char *pattern, char *out, size_t outlen)
{
    size_t used = 0;

    for (const char *p = pattern; *p; p++) {
        char number[24];
        const char *piece = number;

        if (p[0] == '%' && p[1] == 'h') {
            piece = host_name;
            p++;
        } else if (p[0] == '%' && p[1] == 'p') {
            snprintf(number, sizeof number, "%d", (int)getpid());
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            snprintf(number, sizeof number, "%%");
            p++;
        } else {
            number[0] = *p;
            number[1] = '\0';
        }
        size_t length = strlen(piece);
        if (used + length >= outlen)
            return -1;
        memcpy(out + used, piece, length);
        used += length;
    }
    out[used] = '\0';
    return 0;
}

static void open_destination(void)
{
    const char *pattern = wf_param_str(WF_PARAM_DEBUG_FILE);
    char path[WF_LOG_PATH_MAX];

    if (!pattern[0])
        return;
    if (expand_path(pattern, path, sizeof path) != 0) {
        WF_WARN(WF_SUB_INIT, "WEFT_DEBUG_FILE=%.200s is too long after expanding %%h and %%p (at most %d bytes), "
                "logging to stderr instead", pattern, WF_LOG_PATH_MAX - 1);
        return;
    }
    /* Append, so several processes that share one file each add whole lines. */
    FILE *file = fopen(path, "ae");
    if (!file) {
        WF_WARN(WF_SUB_INIT, "failed to open WEFT_DEBUG_FILE %s: %s, logging to stderr instead", path,
                strerror(errno));
        return;
    }
    pthread_mutex_lock(&write_lock);
    log_file = file;
    pthread_mutex_unlock(&write_lock);
}

void wf_log_init(void)
{
    int saved_errno = errno;
    unsigned mask = WF_SUB_ALL;
    char err[512];

    pthread_once(&host_once, read_host_name);
    pthread_mutex_lock(&init_lock);
    /* Level and mask follow every reload of the registry, but the destination is chosen only once. */
    wf_log_level = wf_param_enum(WF_PARAM_DEBUG);
    if (wf_log_parse_subsys(wf_param_str(WF_PARAM_DEBUG_SUBSYS), &mask, err, sizeof err) == 0)
        wf_log_mask = mask;
    /* A process that logs nothing creates no file, so the file opens at the first init that logs. */
    if (!destination_chosen && wf_log_level > WF_LOG_NONE) {
        destination_chosen = 1;
        open_destination();
    }
    pthread_mutex_unlock(&init_lock);
    errno = saved_errno;
}

void wf_log_set_rank(int rank)
{
    __atomic_store_n(&log_rank, rank, __ATOMIC_RELAXED);
}

void wf_log_write(wf_log_level_t level, wf_log_subsys_t subsys, const char *file, int line, const char *format,
                  ...)
{
    int saved_errno = errno;
    char text[WF_LOG_LINE_MAX];
    const size_t capacity = sizeof text - 1; /* one byte stays free for the newline */
    const char *base = strrchr(file, '/');
    int rank = __atomic_load_n(&log_rank, __ATOMIC_RELAXED);
    char rank_text[16] = "-";

    pthread_once(&host_once, read_host_name);
    if (rank >= 0)
        snprintf(rank_text, sizeof rank_text, "%d", rank);
    const char *level_name = (unsigned)level < 5 ? level_names[level] : "?";

    int prefix = snprintf(text, capacity, "%s:%d:%ld [%s] weft %s %s %s:%d ", host_name, (int)getpid(),
                          (long)syscall(SYS_gettid), rank_text, level_name, subsys_name(subsys),
                          base ? base + 1 : file, line);
    size_t used = prefix < 0 ? 0 : ((size_t)prefix >= capacity ? capacity - 1 : (size_t)prefix);

    va_list args;
    va_start(args, format);
    int message = vsnprintf(text + used, capacity - used, format, args);
    va_end(args);

    if (message > 0 && used + (size_t)message >= capacity) {
        used = capacity;
        memcpy(text + used - 3, "...", 3);
    } else if (message > 0) {
        used += (size_t)message;
    }
    if (used > 0 && text[used - 1] == '\n')
        used--;
    text[used++] = '\n';

    pthread_mutex_lock(&write_lock);
    FILE *out = log_file ? log_file : stderr;
    fwrite(text, 1, used, out);
    fflush(out);
    pthread_mutex_unlock(&write_lock);
    errno = saved_errno;
}
