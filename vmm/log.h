/*
 * One small logger for the whole VMM: levels, printf-checked, one write per line so that
 * lines from several threads never interleave.
 *
 * Until log_configure() names a file, lines go to stderr as "wisp: LEVEL: message" (with
 * "[file:line] " before the message at debug level and above), a format the integration
 * tests read. Once it has, they go to that file or FIFO in Firecracker's format:
 *   2024-05-01T12:00:00.123456789 [instance-id:thread:LEVEL:vmm/vcpu.c:42] message
 * where ":LEVEL" comes with show_level and ":file:line" with show_log_origin.
 */
#ifndef WISP_LOG_H
#define WISP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Messages at a level above the current one are dropped; LOG_LEVEL_OFF drops them all. */
enum log_level {
	LOG_LEVEL_OFF = -1,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_TRACE,
};

#define LOG_DEFAULT_INSTANCE_ID "anonymous-instance" /* Firecracker's */
#define LOG_INSTANCE_ID_MAX	65		     /* with the NUL */
#define LOG_MODULE_MAX		256		     /* with the NUL */

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warn"/"warning", "info", "debug" (any case): the --log-level names.
 * Returns 0 or -EINVAL, leaving *level alone. */
int log_parse_level(const char *name, enum log_level *level);
/* Parses Firecracker's level filter (PUT /logger "level"): the names above and "trace"
 * and "off", any case ("Error", "Warning", "Info", "Debug", "Trace", "Off"...). */
int log_parse_filter(const char *name, enum log_level *level);
/* Firecracker's spelling of a level filter: "Off", "Error", "Warn", "Info", "Debug",
 * "Trace" (GET /vm/config). */
const char *log_level_name(enum log_level level);

/*
 * Firecracker's PUT /logger, but for the level (log_set_level) and the module
 * (log_set_module). path: the file or FIFO to write to from now on, created 0600 if
 * missing and opened non-blocking (a FIFO read-write, as Firecracker does, so that the
 * open succeeds without a reader); NULL keeps the current destination. Returns 0 or
 * -errno with a message in err; on failure nothing changes.
 */
int log_configure(const char *path, bool show_level, bool show_log_origin, char *err,
		  size_t err_size);
/* The id in Firecracker-format lines; NULL: LOG_DEFAULT_INSTANCE_ID. Longer ids are cut. */
void log_set_instance_id(const char *id);
/* Firecracker's "module" filter: only lines logged from source files whose path starts
 * with `prefix` ("vmm/devices/") are written; NULL or "" writes them all. -ENAMETOOLONG
 * past LOG_MODULE_MAX - 1 characters. */
int log_set_module(const char *prefix);
/* Lines not written (a full FIFO, a write error), for the metrics' logger.missed_log_count. */
uint64_t log_missed_line_count(void);
/* Back to the start: stderr, level warn, default instance id, no module filter, no
 * missed lines. For tests, with no other thread logging. */
void log_reset(void);

/*
 * The first error-level message this thread logged since log_first_error_reset(), ""
 * if none (whatever the level filter let through). Failures are logged where they happen,
 * with their context; a caller that must answer for a failure from deep down (an API
 * request's fault_message) takes the cause from here instead of a bare errno.
 */
void log_first_error_reset(void);
const char *log_first_error(void);
/* The log file's fd (PUT /logger), or -1 for stderr: for the SIGSYS handler, which may
 * only write(). */
int log_file_fd(void);

/* Leaves errno as it found it: a caller may log what failed and then read errno. */
void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_LEVEL_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define log_info(...)  log_write(LOG_LEVEL_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define log_trace(...) log_write(LOG_LEVEL_TRACE, __FILE__, __LINE__, __VA_ARGS__)

#endif
