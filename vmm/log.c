#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

static enum log_level current_level = LOG_LEVEL_WARN;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
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

void log_write(enum log_level level, const char *file, int line, const char *fmt, ...)
{
	char message[1024];
	va_list args;

	if (level > current_level)
		return;
	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	/* One fprintf per line so that lines from several threads do not interleave. */
	if (current_level >= LOG_LEVEL_DEBUG)
		fprintf(stderr, "wisp: %s: [%s:%d] %s\n", level_names[level], file, line, message);
	else
		fprintf(stderr, "wisp: %s: %s\n", level_names[level], message);
}
