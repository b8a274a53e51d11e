/*
 * Logging filtered by level and subsystem, cheap when disabled.
 *
 * WEFT_DEBUG sets the level (NONE, ERROR, WARN, INFO, TRACE; default WARN), WEFT_DEBUG_SUBSYS the
 * subsystems (comma-separated INIT, COLL, NET, TOPO, ALLOC, TUNE, ENV, BOOT or ALL; a leading ^
 * excludes the listed ones), WEFT_DEBUG_FILE the destination (%h expands to the host name, %p to
 * the pid; default stderr). Every line starts with "host:pid:tid [rank] weft LEVEL SUBSYS".
 * Logging preserves errno.
 */
#ifndef WF_LOG_H
#define WF_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    WF_LOG_NONE = 0,
    WF_LOG_ERROR,
    WF_LOG_WARN,
    WF_LOG_INFO,
    WF_LOG_TRACE
} wf_log_level_t;

typedef enum {
    WF_SUB_INIT = 1u << 0,
    WF_SUB_COLL = 1u << 1,
    WF_SUB_NET = 1u << 2,
    WF_SUB_TOPO = 1u << 3,
    WF_SUB_ALLOC = 1u << 4,
    WF_SUB_TUNE = 1u << 5,
    WF_SUB_ENV = 1u << 6,
    WF_SUB_BOOT = 1u << 7,
    WF_SUB_ALL = 0xffu
} wf_log_subsys_t;

/* Current threshold and subsystem mask; read without locking by the macros below. */
extern int wf_log_level;
extern unsigned wf_log_mask;

/*
 * Apply WEFT_DEBUG, WEFT_DEBUG_SUBSYS and WEFT_DEBUG_FILE from the parameter registry
 * (wf_param_load must have succeeded). Idempotent; later calls reopen nothing.
 */
void wf_log_init(void);

/*
 * Parse a WEFT_DEBUG_SUBSYS value into a mask of wf_log_subsys_t bits. Names are case-insensitive;
 * an empty text means ALL. Returns 0, or -1 with the unknown name and the accepted names in err.
 */
int wf_log_parse_subsys(const char *text, unsigned *mask, char *err, size_t errlen);

/* Record the caller's rank for the line prefix; -1 before a communicator exists. */
void wf_log_set_rank(int rank);

void wf_log_write(wf_log_level_t level, wf_log_subsys_t subsys, const char *file, int line,
                  const char *format, ...) __attribute__((format(printf, 5, 6)));

#define WF_LOG(level, subsys, ...)                                                                 \
    do {                                                                                           \
        if ((int)(level) <= wf_log_level && ((unsigned)(subsys) & wf_log_mask))                    \
            wf_log_write((level), (subsys), __FILE__, __LINE__, __VA_ARGS__);                      \
    } while (0)

#define WF_ERROR(subsys, ...) WF_LOG(WF_LOG_ERROR, subsys, __VA_ARGS__)
#define WF_WARN(subsys, ...) WF_LOG(WF_LOG_WARN, subsys, __VA_ARGS__)
#define WF_INFO(subsys, ...) WF_LOG(WF_LOG_INFO, subsys, __VA_ARGS__)
#define WF_TRACE(subsys, ...) WF_LOG(WF_LOG_TRACE, subsys, __VA_ARGS__)

#endif /* WF_LOG_H */
