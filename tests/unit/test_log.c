/* Unit tests for the logger (log.c): levels, wisp's stderr format, Firecracker's file
 * format and its options, FIFOs without a reader, lines from several threads. Each test
 * starts from log_reset() in a fresh temporary directory. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* A FIFO that blocked wisp would hang the test: die instead. */
#define WATCHDOG_SECONDS 20

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/wisp-test-log-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/log", f->dir);
	log_reset();
	alarm(WATCHDOG_SECONDS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	alarm(0);
	log_reset();
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* The whole file, NUL-terminated; the caller frees it. */
static char *read_file(const char *path)
{
	FILE *file = fopen(path, "r");
	char *data;
	long size;

	assert_non_null(file);
	assert_int_equal(fseek(file, 0, SEEK_END), 0);
	size = ftell(file);
	assert_true(size >= 0);
	rewind(file);
	data = calloc(1, (size_t)size + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)size, file), (size_t)size);
	fclose(file);
	return data;
}

/* Runs the logging statements with stderr sent to a file, and returns what they wrote. */
#define CAPTURE_STDERR(f, ...)                                                                     \
	({                                                                                         \
		int saved = dup(STDERR_FILENO);                                                    \
		int fd = open((f)->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);                      \
		assert_true(saved >= 0 && fd >= 0);                                                \
		assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);                          \
		close(fd);                                                                         \
		__VA_ARGS__;                                                                       \
		assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);                       \
		close(saved);                                                                      \
		read_file((f)->path);                                                              \
	})

static void assert_matches(const char *text, const char *pattern)
{
	regex_t regex;

	assert_int_equal(regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&regex, text, 0, NULL, 0))
		fail_msg("'%s' does not match '%s'", text, pattern);
	regfree(&regex);
}

static void configure(const char *path, bool show_level, bool show_log_origin)
{
	char err[256] = "";

	assert_int_equal(log_configure(path, show_level, show_log_origin, err, sizeof(err)), 0);
	assert_string_equal(err, "");
}

/* ---- levels and wisp's stderr format ---- */

static void test_stderr_format_is_wisps_below_debug(void **state)
{
	struct fixture *f = *state;
	char *out;

	log_set_level(LOG_LEVEL_INFO);
	out = CAPTURE_STDERR(f, {
		log_error("disk %s failed", "rootfs");
		log_warn("slow");
		log_info("booted in %d ms", 42);
		log_debug("hidden");
	});
	assert_string_equal(out, "wisp: ERROR: disk rootfs failed\n"
				 "wisp: WARN: slow\n"
				 "wisp: INFO: booted in 42 ms\n");
	free(out);
}

static void test_stderr_format_has_the_origin_at_debug_and_trace(void **state)
{
	struct fixture *f = *state;
	char expected[256];
	int debug_line, trace_line;
	char *out;

	log_set_level(LOG_LEVEL_TRACE);
	out = CAPTURE_STDERR(f, {
		debug_line = __LINE__ + 1;
		log_debug("queue %u", 3u);
		trace_line = __LINE__ + 1;
		log_trace("deep");
	});
	snprintf(expected, sizeof(expected),
		 "wisp: DEBUG: [%s:%d] queue 3\nwisp: TRACE: [%s:%d] deep\n", __FILE__, debug_line,
		 __FILE__, trace_line);
	assert_string_equal(out, expected);
	free(out);
}

static void test_each_level_lets_through_itself_and_the_more_severe(void **state)
{
	struct fixture *f = *state;
	static const struct {
		enum log_level level;
		const char *expected;
	} cases[] = {
	    {LOG_LEVEL_OFF, ""},     {LOG_LEVEL_ERROR, "E"},	{LOG_LEVEL_WARN, "EW"},
	    {LOG_LEVEL_INFO, "EWI"}, {LOG_LEVEL_DEBUG, "EWID"}, {LOG_LEVEL_TRACE, "EWIDT"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char seen[8] = "";
		char *out, *line;

		log_set_level(cases[i].level);
		assert_int_equal(log_get_level(), cases[i].level);
		out = CAPTURE_STDERR(f, {
			log_error("mark E");
			log_warn("mark W");
			log_info("mark I");
			log_debug("mark D");
			log_trace("mark T");
		});
		for (line = strstr(out, "mark "); line; line = strstr(line + 1, "mark "))
			strncat(seen, line + 5, 1);
		assert_string_equal(seen, cases[i].expected);
		free(out);
	}
}

static void test_log_parse_level_keeps_the_command_line_names_only(void **state)
{
	enum log_level level = LOG_LEVEL_INFO;
	(void)state;

	assert_int_equal(log_parse_level("Warning", &level), 0);
	assert_int_equal(level, LOG_LEVEL_WARN);
	level = LOG_LEVEL_INFO;
	assert_int_equal(log_parse_level("trace", &level), -EINVAL);
	assert_int_equal(log_parse_level("off", &level), -EINVAL);
	assert_int_equal(level, LOG_LEVEL_INFO);
}

static void test_log_parse_filter_accepts_firecrackers_names_in_any_case(void **state)
{
	static const struct {
		const char *name;
		enum log_level level;
	} cases[] = {
	    {"Error", LOG_LEVEL_ERROR}, {"error", LOG_LEVEL_ERROR}, {"Warning", LOG_LEVEL_WARN},
	    {"WARN", LOG_LEVEL_WARN},	{"warn", LOG_LEVEL_WARN},   {"Info", LOG_LEVEL_INFO},
	    {"Debug", LOG_LEVEL_DEBUG}, {"Trace", LOG_LEVEL_TRACE}, {"TRACE", LOG_LEVEL_TRACE},
	    {"Off", LOG_LEVEL_OFF},	{"oFF", LOG_LEVEL_OFF},
	};
	static const char *const bad[] = {"", "none", "all", "tracing", " Off", "Info ", "5"};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum log_level level =
		    cases[i].level == LOG_LEVEL_ERROR ? LOG_LEVEL_TRACE : LOG_LEVEL_ERROR;

		assert_int_equal(log_parse_filter(cases[i].name, &level), 0);
		assert_int_equal(level, cases[i].level);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum log_level level = LOG_LEVEL_INFO;

		assert_int_equal(log_parse_filter(bad[i], &level), -EINVAL);
		assert_int_equal(level, LOG_LEVEL_INFO);
	}
}

static void test_level_names_are_firecrackers_and_parse_back(void **state)
{
	static const struct {
		enum log_level level;
		const char *name;
	} cases[] = {
	    {LOG_LEVEL_OFF, "Off"},   {LOG_LEVEL_ERROR, "Error"}, {LOG_LEVEL_WARN, "Warn"},
	    {LOG_LEVEL_INFO, "Info"}, {LOG_LEVEL_DEBUG, "Debug"}, {LOG_LEVEL_TRACE, "Trace"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum log_level parsed = LOG_LEVEL_INFO;

		assert_string_equal(log_level_name(cases[i].level), cases[i].name);
		assert_int_equal(log_parse_filter(cases[i].name, &parsed), 0);
		assert_int_equal(parsed, cases[i].level);
	}
}

/* ---- Firecracker's format, to a file ---- */

#define TIMESTAMP "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{9}"

static void test_file_lines_without_level_or_origin(void **state)
{
	struct fixture *f = *state;
	char *out;

	assert_int_equal(pthread_setname_np(pthread_self(), "log-test"), 0);
	configure(f->path, false, false);
	log_warn("vcpu %d stopped", 1);
	out = read_file(f->path);
	assert_matches(out, "^" TIMESTAMP " \\[anonymous-instance:log-test\\] vcpu 1 stopped\n$");
	free(out);
}

static void test_file_lines_with_level_and_origin(void **state)
{
	struct fixture *f = *state;
	char pattern[512];
	int line;
	char *out;

	assert_int_equal(pthread_setname_np(pthread_self(), "log-test"), 0);
	log_set_instance_id("vm-42");
	configure(f->path, true, true);
	line = __LINE__ + 1;
	log_error("boom");
	out = read_file(f->path);
	snprintf(pattern, sizeof(pattern),
		 "^" TIMESTAMP " \\[vm-42:log-test:ERROR:%s:%d\\] boom\n$", __FILE__, line);
	assert_matches(out, pattern);
	free(out);
}

static void test_file_lines_with_level_only_and_with_origin_only(void **state)
{
	struct fixture *f = *state;
	char pattern[512];
	int line;
	char *out;

	assert_int_equal(pthread_setname_np(pthread_self(), "log-test"), 0);
	configure(f->path, true, false);
	log_warn("first");
	configure(NULL, false, true); /* same file, new options */
	line = __LINE__ + 1;
	log_warn("second");
	out = read_file(f->path);
	snprintf(pattern, sizeof(pattern),
		 "^" TIMESTAMP " \\[anonymous-instance:log-test:WARN\\] first\n" TIMESTAMP
		 " \\[anonymous-instance:log-test:%s:%d\\] second\n$",
		 __FILE__, line);
	assert_matches(out, pattern);
	free(out);
}

static void test_the_level_filters_file_lines_too(void **state)
{
	struct fixture *f = *state;
	char *out;

	configure(f->path, true, false);
	log_set_level(LOG_LEVEL_ERROR);
	log_warn("dropped");
	log_error("kept");
	log_set_level(LOG_LEVEL_OFF);
	log_error("dropped too");
	out = read_file(f->path);
	assert_null(strstr(out, "dropped"));
	assert_non_null(strstr(out, ":ERROR] kept\n"));
	free(out);
}

static void test_file_is_appended_to_and_created_0600(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	FILE *file = fopen(f->path, "w");
	char *out;

	assert_non_null(file);
	fputs("earlier line\n", file);
	fclose(file);
	configure(f->path, false, false);
	log_warn("later line");
	out = read_file(f->path);
	assert_true(!strncmp(out, "earlier line\n", 13));
	assert_non_null(strstr(out + 13, "] later line\n"));
	free(out);

	unlink(f->path);
	configure(f->path, false, false);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_stderr_keeps_wisps_format_whatever_the_options(void **state)
{
	struct fixture *f = *state;
	char *out;

	configure(NULL, true, true);
	out = CAPTURE_STDERR(f, log_warn("plain"));
	assert_string_equal(out, "wisp: WARN: plain\n");
	free(out);
}

static void test_configure_failure_changes_nothing(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", missing[192];
	char *out;

	configure(f->path, true, false);
	snprintf(missing, sizeof(missing), "%s/no/such/dir/log", f->dir);
	assert_int_equal(log_configure(missing, false, true, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, missing));
	assert_int_equal(log_configure("", false, true, err, sizeof(err)), -EINVAL);
	log_warn("still here");
	out = read_file(f->path);
	assert_non_null(strstr(out, ":WARN] still here\n"));
	free(out);
}

static void test_module_filter_keeps_lines_from_files_under_the_prefix(void **state)
{
	struct fixture *f = *state;
	char too_long[LOG_MODULE_MAX + 1];
	char *out;

	configure(f->path, false, false);
	assert_int_equal(log_set_module("vmm/devices/"), 0);
	log_warn("from the tests: dropped");
	assert_int_equal(log_set_module("tests/unit/"), 0);
	log_warn("from the tests: kept");
	assert_int_equal(log_set_module(NULL), 0);
	log_warn("no filter: kept");
	memset(too_long, 'x', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	assert_int_equal(log_set_module(too_long), -ENAMETOOLONG);
	out = read_file(f->path);
	assert_null(strstr(out, "dropped"));
	assert_non_null(strstr(out, "] from the tests: kept\n"));
	assert_non_null(strstr(out, "] no filter: kept\n"));
	free(out);
}

static void test_long_messages_are_cut_but_stay_one_line(void **state)
{
	struct fixture *f = *state;
	static char message[8192];
	char *out;

	memset(message, 'm', sizeof(message) - 1);
	configure(f->path, true, true);
	log_warn("%s", message);
	out = read_file(f->path);
	assert_true(strlen(out) < 2048);
	assert_int_equal(strchr(out, '\n') - out, strlen(out) - 1);
	free(out);
}

/* ---- FIFOs and threads ---- */

static void test_fifo_without_reader_does_not_block_and_counts_missed_lines(void **state)
{
	struct fixture *f = *state;
	static char content[1 << 20];
	size_t len = 0;
	int reader, lines = 0;
	char *line, *save = NULL;
	ssize_t n;

	assert_int_equal(mkfifo(f->path, 0600), 0);
	configure(f->path, true, true);
	/* 64 KiB of pipe fill up after some hundreds of lines; the watchdog catches a hang. */
	for (int i = 0; i < 100000 && log_missed_line_count() == 0; i++)
		log_warn("line %d of a FIFO nobody reads", i);
	assert_true(log_missed_line_count() > 0);

	reader = open(f->path, O_RDONLY | O_NONBLOCK);
	assert_true(reader >= 0);
	while ((n = read(reader, content + len, sizeof(content) - 1 - len)) > 0)
		len += (size_t)n;
	close(reader);
	/* Lines are written whole or not at all. */
	assert_true(len > 0 && content[len - 1] == '\n');
	content[len] = '\0';
	for (line = strtok_r(content, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		assert_matches(line,
			       "^" TIMESTAMP " \\[[^]]+\\] line [0-9]+ of a FIFO nobody reads$");
		lines++;
	}
	assert_true(lines > 100);
}

/* Callers read errno after logging what failed (err = -errno after log_error): a line that
 * is written, dropped by a full FIFO, refused by a closed stderr or filtered out must leave
 * errno as it found it. */
static void test_logging_preserves_errno(void **state)
{
	struct fixture *f = *state;
	int saved_stderr;

	/* A full FIFO: the write fails with EAGAIN. */
	assert_int_equal(mkfifo(f->path, 0600), 0);
	configure(f->path, true, true);
	for (int i = 0; i < 100000 && log_missed_line_count() == 0; i++) {
		errno = ENOTTY;
		log_error("line %d of a FIFO nobody reads", i);
		assert_int_equal(errno, ENOTTY);
	}
	assert_true(log_missed_line_count() > 0);
	errno = EXDEV;
	log_error("one more line the full FIFO refuses");
	assert_int_equal(errno, EXDEV);

	/* stderr closed: the write fails with EBADF. */
	log_reset();
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	close(STDERR_FILENO);
	errno = ENOTTY;
	log_error("nowhere to go");
	assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
	close(saved_stderr);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(log_missed_line_count(), 1);

	/* Written, and filtered out. */
	unlink(f->path);
	configure(f->path, true, true);
	errno = ENOTTY;
	log_error("written to a file");
	assert_int_equal(errno, ENOTTY);
	errno = EXDEV;
	log_debug("below the level");
	assert_int_equal(errno, EXDEV);
	assert_int_equal(log_set_module("vmm/nothing-here/"), 0);
	log_error("filtered out by the module");
	assert_int_equal(errno, EXDEV);
}

static void *log_an_error(void *arg)
{
	(void)arg;
	log_error("an error on another thread");
	return NULL;
}

/* What InstanceStart's fault_message takes its cause from. */
static void test_first_error_is_kept_per_thread_until_reset(void **state)
{
	pthread_t thread;
	(void)state;

	log_first_error_reset();
	assert_string_equal(log_first_error(), "");
	log_warn("a warning is no error");
	assert_string_equal(log_first_error(), "");
	log_set_level(LOG_LEVEL_OFF); /* kept even when no line is written */
	log_error("drive '%s': cannot open %s", "rootfs", "/x.img");
	log_error("a consequence of the first");
	assert_string_equal(log_first_error(), "drive 'rootfs': cannot open /x.img");
	assert_int_equal(pthread_create(&thread, NULL, log_an_error, NULL), 0);
	pthread_join(thread, NULL);
	assert_string_equal(log_first_error(), "drive 'rootfs': cannot open /x.img");
	log_first_error_reset();
	assert_string_equal(log_first_error(), "");
	log_error("the next failure");
	assert_string_equal(log_first_error(), "the next failure");
}

#define THREADS		 4
#define LINES_PER_THREAD 500

static void *log_lines(void *arg)
{
	int thread = (int)(intptr_t)arg;

	for (int i = 0; i < LINES_PER_THREAD; i++)
		log_warn("thread %d line %d %s", thread, i, "padding padding padding padding");
	return NULL;
}

static void test_lines_from_several_threads_never_interleave(void **state)
{
	struct fixture *f = *state;
	pthread_t threads[THREADS];
	int count = 0;
	char *out, *line, *save = NULL;

	configure(f->path, true, true);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, log_lines, (void *)(intptr_t)i),
				 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	out = read_file(f->path);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		assert_matches(line, "^" TIMESTAMP " \\[[^]]+:WARN:[^]]+\\] thread [0-3] line "
				     "[0-9]+ padding padding padding padding$");
		count++;
	}
	assert_int_equal(count, THREADS * LINES_PER_THREAD);
	assert_int_equal(log_missed_line_count(), 0);
	free(out);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_stderr_format_is_wisps_below_debug),
	    T(test_stderr_format_has_the_origin_at_debug_and_trace),
	    T(test_each_level_lets_through_itself_and_the_more_severe),
	    T(test_log_parse_level_keeps_the_command_line_names_only),
	    T(test_log_parse_filter_accepts_firecrackers_names_in_any_case),
	    T(test_level_names_are_firecrackers_and_parse_back),
	    T(test_file_lines_without_level_or_origin),
	    T(test_file_lines_with_level_and_origin),
	    T(test_file_lines_with_level_only_and_with_origin_only),
	    T(test_the_level_filters_file_lines_too),
	    T(test_file_is_appended_to_and_created_0600),
	    T(test_stderr_keeps_wisps_format_whatever_the_options),
	    T(test_configure_failure_changes_nothing),
	    T(test_module_filter_keeps_lines_from_files_under_the_prefix),
	    T(test_long_messages_are_cut_but_stay_one_line),
	    T(test_fifo_without_reader_does_not_block_and_counts_missed_lines),
	    T(test_lines_from_several_threads_never_interleave),
	    T(test_logging_preserves_errno),
	    T(test_first_error_is_kept_per_thread_until_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
