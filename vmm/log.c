#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define LOG_MESSAGE_MAX 1024
/* The message and Firecracker's prefix: timestamp, id, thread, level, file and line. */
#define LOG_LINE_MAX (LOG_MESSAGE_MAX + LOG_INSTANCE_ID_MAX + 256)

static _Atomic int current_level = LOG_LEVEL_WARN;
static _Atomic uint64_t missed_lines;

static __thread char first_error[LOG_MESSAGE_MAX];

/* Writers of lines hold it shared: log_configure() closes a file only once none is
 * writing to it. */
static struct {
	pthread_rwlock_t lock;
	int fd; /* -1: stderr, in wisp's own format */
	bool show_level;
	bool show_log_origin;
	char instance_id[LOG_INSTANCE_ID_MAX];
	char module[LOG_MODULE_MAX];
} logger = {
    .lock = PTHREAD_RWLOCK_INITIALIZER,
    .fd = -1,
    .instance_id = LOG_DEFAULT_INSTANCE_ID,
};

/* Indexed by level; log::Level's names in Firecracker's lines too. */
static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

void log_set_level(enum log_level level)
{
	atomic_store_explicit(&current_level, level, memory_order_relaxed);
}

enum log_level log_get_level(void)
{
	return atomic_load_explicit(&current_level, memory_order_relaxed);
}

int log_parse_level(const char *name, enum log_level *level)
{
	if (!strcasecmp(name, "error"))
		*level = LOG_LEVEL_ERROR;
	else if (!strcasecmp(name, "warn") || !strcasecmp(name, "warning"))
		*level = LOG_LEVEL_WARN;
	else if (!strcasecmp(name, "info"))
		*level = LOG_LEVEL_INFO;
	else if (!strcasecmp(name, "debug"))
		*level = LOG_LEVEL_DEBUG;
	else
		return -EINVAL;
	return 0;
}

int log_parse_filter(const char *name, enum log_level *level)
{
	if (!strcasecmp(name, "trace"))
		*level = LOG_LEVEL_TRACE;
	else if (!strcasecmp(name, "off"))
		*level = LOG_LEVEL_OFF;
	else
		return log_parse_level(name, level);
	return 0;
}

const char *log_level_name(enum log_level level)
{
	static const char *const names[] = {"Error", "Warn", "Info", "Debug", "Trace"};

	if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_TRACE)
		return "Off";
	return names[level];
}

static int open_destination(const char *path, int *fd, char *err, size_t err_size)
{
	if (!*path) {
		snprintf(err, err_size, "log_path is empty");
		return -EINVAL;
	}
	*fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0600);
	if (*fd < 0) {
		int ret = -errno;

		snprintf(err, err_size, "log_path %s: %s", path, strerror(-ret));
		return ret;
	}
	return 0;
}

int log_configure(const char *path, bool show_level, bool show_log_origin, char *err,
		  size_t err_size)
{
	int fd = -1, old_fd = -1;
	int ret;

	if (path) {
		ret = open_destination(path, &fd, err, err_size);
		if (ret)
			return ret;
	}
	pthread_rwlock_wrlock(&logger.lock);
	if (path) {
		old_fd = logger.fd;
		logger.fd = fd;
	}
	logger.show_level = show_level;
	logger.show_log_origin = show_log_origin;
	pthread_rwlock_unlock(&logger.lock);
	if (old_fd >= 0)
		close(old_fd);
	return 0;
}

void log_set_instance_id(const char *id)
{
	pthread_rwlock_wrlock(&logger.lock);
	snprintf(logger.instance_id, sizeof(logger.instance_id), "%s",
		 id ? id : LOG_DEFAULT_INSTANCE_ID);
	pthread_rwlock_unlock(&logger.lock);
}

int log_set_module(const char *prefix)
{
	if (prefix && strlen(prefix) >= LOG_MODULE_MAX)
		return -ENAMETOOLONG;
	pthread_rwlock_wrlock(&logger.lock);
	snprintf(logger.module, sizeof(logger.module), "%s", prefix ? prefix : "");
	pthread_rwlock_unlock(&logger.lock);
	return 0;
}

uint64_t log_missed_line_count(void)
{
	return atomic_load_explicit(&missed_lines, memory_order_relaxed);
}

void log_reset(void)
{
	int old_fd;

	pthread_rwlock_wrlock(&logger.lock);
	old_fd = logger.fd;
	logger.fd = -1;
	logger.show_level = false;
	logger.show_log_origin = false;
	snprintf(logger.instance_id, sizeof(logger.instance_id), "%s", LOG_DEFAULT_INSTANCE_ID);
	logger.module[0] = '\0';
	pthread_rwlock_unlock(&logger.lock);
	if (old_fd >= 0)
		close(old_fd);
	log_set_level(LOG_LEVEL_WARN);
	atomic_store_explicit(&missed_lines, 0, memory_order_relaxed);
}

void log_first_error_reset(void)
{
	first_error[0] = '\0';
}

const char *log_first_error(void)
{
	return first_error;
}

int log_file_fd(void)
{
	return logger.fd; /* read without the lock: a signal handler cannot take it */
}

/* Firecracker's LocalTime: local time with nanoseconds, 2024-05-01T12:00:00.123456789 */
static void format_timestamp(char *buffer, size_t size)
{
	struct timespec now;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	snprintf(buffer, size, "%d-%02d-%02dT%02d:%02d:%02d.%09ld", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec);
}

static int format_firecracker_line(char *out, size_t size, enum log_level level, const char *file,
				   int line, const char *message)
{
	char timestamp[64], thread[17] = "", level_part[8] = "", origin[256] = "";

	format_timestamp(timestamp, sizeof(timestamp));
	if (prctl(PR_GET_NAME, thread) || !thread[0])
		strcpy(thread, "-");
	if (logger.show_level)
		snprintf(level_part, sizeof(level_part), ":%s", level_names[level]);
	if (logger.show_log_origin)
		snprintf(origin, sizeof(origin), ":%s:%d", file, line);
	return snprintf(out, size, "%s [%s:%s%s%s] %s\n", timestamp, logger.instance_id, thread,
			level_part, origin, message);
}

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	enum log_level threshold = log_get_level();
	char message[LOG_MESSAGE_MAX], out[LOG_LINE_MAX];
	int saved_errno = errno; /* callers may still read the errno of what they log */
	bool keep_first = level == LOG_LEVEL_ERROR && !first_error[0];
	va_list args;
	ssize_t written;
	int len, fd;

	if ((level > threshold && !keep_first) || level < LOG_LEVEL_ERROR)
		return;
	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	if (keep_first)
		memcpy(first_error, message, sizeof(first_error));
	if (level > threshold)
		goto out;

	pthread_rwlock_rdlock(&logger.lock);
	if (logger.module[0] && strncmp(file, logger.module, strlen(logger.module)))
		goto unlock;
	fd = logger.fd;
	if (fd >= 0)
		len = format_firecracker_line(out, sizeof(out), level, file, line, message);
	else if (threshold >= LOG_LEVEL_DEBUG)
		len = snprintf(out, sizeof(out), "wisp: %s: [%s:%d] %s\n", level_names[level], file,
			       line, message);
	else
		len = snprintf(out, sizeof(out), "wisp: %s: %s\n", level_names[level], message);
	if (len < 0)
		goto unlock;
	if ((size_t)len >= sizeof(out)) { /* cut, but still a line */
		len = sizeof(out) - 1;
		out[len - 1] = '\n';
	}
	/* One write per line: appends to a file or a pipe (up to PIPE_BUF) stay whole. A full
	 * FIFO drops the line rather than stall a vCPU. */
	do {
		written = write(fd >= 0 ? fd : STDERR_FILENO, out, (size_t)len);
	} while (written < 0 && errno == EINTR);
	if (written != len)
		atomic_fetch_add_explicit(&missed_lines, 1, memory_order_relaxed);
unlock:
	pthread_rwlock_unlock(&logger.lock);
out:
	errno = saved_errno;
}
