/* Unit tests for wispctl's pure logic (vmm/tools/wispctl_lib.c): its command line, the
 * names of clones' files and TAPs, requests, and the parsers of what it reads. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wispctl_lib.h"

#define MAX_ARGS 32

static const char *fake_state_dir;
static const char *fake_wisp_bin;

static const char *fake_getenv(const char *name)
{
	if (!strcmp(name, "WISPCTL_STATE_DIR"))
		return fake_state_dir;
	if (!strcmp(name, "WISP_BIN"))
		return fake_wisp_bin;
	return NULL;
}

struct parsed {
	int ret;
	struct wispctl_args args;
	char err[512];
};

/* Parses "wispctl" followed by the NULL-terminated arguments. */
static struct parsed *parse(const char *first, ...)
{
	static struct parsed result;
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	va_list ap;

	argv[argc++] = "wispctl";
	va_start(ap, first);
	for (const char *arg = first; arg; arg = va_arg(ap, const char *)) {
		assert_true(argc <= MAX_ARGS);
		argv[argc++] = (char *)arg;
	}
	va_end(ap);
	argv[argc] = NULL;
	memset(&result, 0, sizeof(result));
	result.ret = wispctl_parse_args(argc, argv, &result.args, fake_getenv, result.err,
					sizeof(result.err));
	return &result;
}

static int reset_env(void **state)
{
	(void)state;
	fake_state_dir = NULL;
	fake_wisp_bin = NULL;
	return 0;
}

static void snapshot_takes_its_options_and_defaults(void **state)
{
	struct parsed *p = parse("snapshot", "--kernel", "/k", "--initrd", "/i", "--mem", "256",
				 "--net", "--balloon", "0", "-o", "/snap", NULL);
	(void)state;
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.command, WISPCTL_SNAPSHOT);
	assert_string_equal(p->args.kernel, "/k");
	assert_string_equal(p->args.initrd, "/i");
	assert_null(p->args.rootfs);
	assert_int_equal(p->args.mem_mib, 256);
	assert_int_equal(p->args.vcpus, 1);
	assert_true(p->args.net);
	assert_int_equal(p->args.balloon_mib, 0);
	assert_string_equal(p->args.out_dir, "/snap");
	assert_string_equal(p->args.state_dir, WISPCTL_DEFAULT_STATE_DIR);
	assert_string_equal(p->args.warm_marker, WISPCTL_WARM_MARKER);
	assert_int_equal(p->args.timeout_s, WISPCTL_DEFAULT_TIMEOUT_S);

	p = parse("snapshot", "--kernel", "/k", "--output", "/o", NULL);
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.mem_mib, WISPCTL_DEFAULT_MEM_MIB);
	assert_int_equal(p->args.balloon_mib, -1);
	assert_false(p->args.net);
}

static void snapshot_needs_kernel_and_output(void **state)
{
	struct parsed *p = parse("snapshot", "-o", "/snap", NULL);
	(void)state;
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "--kernel"));
	p = parse("snapshot", "--kernel", "/k", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "-o DIR"));
}

static void bad_numbers_are_refused_with_the_option_named(void **state)
{
	static const char *const bad[][2] = {
	    {"--mem", "0"}, {"--mem", "12x"},	{"--mem", "-5"},     {"--vcpus", "33"},
	    {"--mem", ""},  {"--timeout", "0"}, {"--balloon", "-1"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parsed *p =
		    parse("snapshot", "--kernel", "/k", "-o", "/o", bad[i][0], bad[i][1], NULL);
		assert_int_equal(p->ret, -EINVAL);
		assert_non_null(strstr(p->err, bad[i][0]));
	}
	struct parsed *p = parse("clone", "/snap", "--count", "0", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "--count"));
	p = parse("clone", "/snap", "--count", "2", "--parallel", "257", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "--parallel"));
}

static void clone_takes_dir_count_parallel_and_pattern(void **state)
{
	struct parsed *p = parse("--state-dir", "/run/w", "clone", "/snap", "--count", "50",
				 "--parallel", "4", "--tap-pattern", "fc%dtap", "--jail", NULL);
	(void)state;
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.command, WISPCTL_CLONE);
	assert_string_equal(p->args.snapshot_dir, "/snap");
	assert_int_equal(p->args.count, 50);
	assert_int_equal(p->args.parallel, 4);
	assert_string_equal(p->args.tap_pattern, "fc%dtap");
	assert_true(p->args.jail);
	assert_string_equal(p->args.state_dir, "/run/w");

	p = parse("clone", "/snap", "--count", "3", NULL);
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.parallel, 1);
	assert_string_equal(p->args.tap_pattern, WISPCTL_DEFAULT_TAP_PATTERN);
	assert_int_equal(p->args.min_avail_mib, WISPCTL_DEFAULT_MIN_AVAIL);

	p = parse("clone", "--count", "3", NULL);
	assert_int_equal(p->ret, -EINVAL);
	p = parse("clone", "/snap", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "--count"));
}

static void environment_gives_state_dir_and_wisp_and_options_win(void **state)
{
	struct parsed *p;
	(void)state;
	fake_state_dir = "/env/state";
	fake_wisp_bin = "/env/wisp";
	p = parse("ls", NULL);
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.command, WISPCTL_LS);
	assert_string_equal(p->args.state_dir, "/env/state");
	assert_string_equal(p->args.wisp, "/env/wisp");
	p = parse("ls", "--state-dir", "/opt/s", "--wisp", "/opt/wisp", NULL);
	assert_int_equal(p->ret, 0);
	assert_string_equal(p->args.state_dir, "/opt/s");
	assert_string_equal(p->args.wisp, "/opt/wisp");
}

static void invoke_balloon_reap_take_an_id_or_all(void **state)
{
	struct parsed *p = parse("invoke", "c12", "hello world", NULL);
	(void)state;
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.command, WISPCTL_INVOKE);
	assert_string_equal(p->args.id, "c12");
	assert_false(p->args.all);
	assert_string_equal(p->args.request, "hello world");

	p = parse("invoke", "--all", "x", NULL);
	assert_int_equal(p->ret, 0);
	assert_true(p->args.all);
	assert_null(p->args.id);
	assert_string_equal(p->args.request, "x");

	p = parse("balloon", "--all", "64", NULL);
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.command, WISPCTL_BALLOON);
	assert_int_equal(p->args.amount_mib, 64);
	p = parse("balloon", "c0", "lots", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "lots"));

	p = parse("reap", "c3", NULL);
	assert_int_equal(p->ret, 0);
	assert_string_equal(p->args.id, "c3");
	p = parse("reap", "--all", NULL);
	assert_int_equal(p->ret, 0);
	assert_true(p->args.all);

	/* neither or both */
	assert_int_equal(parse("reap", NULL)->ret, -EINVAL);
	assert_int_equal(parse("reap", "--all", "c3", NULL)->ret, -EINVAL);
	assert_int_equal(parse("invoke", "hello", NULL)->ret, -EINVAL);
	assert_int_equal(parse("invoke", "--all", "c1", "x", NULL)->ret, -EINVAL);
	/* not an id */
	p = parse("reap", "../etc", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "not a clone id"));
}

static void unknown_commands_and_misplaced_options_are_refused(void **state)
{
	struct parsed *p = parse("start", NULL);
	(void)state;
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "unknown command 'start'"));
	p = parse(NULL, NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "no command"));
	p = parse("ls", "--count", "3", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "--count does not apply to ls"));
	p = parse("ls", "--bogus", NULL);
	assert_int_equal(p->ret, -EINVAL);
	assert_non_null(strstr(p->err, "--bogus"));
	p = parse("ls", "extra", NULL);
	assert_int_equal(p->ret, -EINVAL);
	p = parse("--help", NULL);
	assert_int_equal(p->ret, 0);
	assert_int_equal(p->args.command, WISPCTL_HELP);
}

static void requests_must_be_printable_and_short(void **state)
{
	char err[256], long_request[WISPCTL_REQUEST_MAX + 2];
	(void)state;
	assert_int_equal(wispctl_check_request("sum 1 2 3", err, sizeof(err)), 0);
	assert_int_equal(wispctl_check_request("", err, sizeof(err)), -EINVAL);
	assert_int_equal(wispctl_check_request("two\nlines", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "0x0a"));
	assert_int_equal(wispctl_check_request("ctrl-c \x03", err, sizeof(err)), -EINVAL);
	assert_int_equal(wispctl_check_request("caf\xc3\xa9", err, sizeof(err)), -EINVAL);
	memset(long_request, 'a', WISPCTL_REQUEST_MAX);
	long_request[WISPCTL_REQUEST_MAX] = '\0';
	assert_int_equal(wispctl_check_request(long_request, err, sizeof(err)), 0);
	long_request[WISPCTL_REQUEST_MAX] = 'a';
	long_request[WISPCTL_REQUEST_MAX + 1] = '\0';
	assert_int_equal(wispctl_check_request(long_request, err, sizeof(err)), -EINVAL);
	/* and on the command line */
	assert_int_equal(parse("invoke", "c0", "", NULL)->ret, -EINVAL);
}

static void tap_patterns_hold_one_number_and_fit_ifnamsiz(void **state)
{
	char err[256], name[WISPCTL_IFNAME_MAX];
	(void)state;
	assert_int_equal(wispctl_check_tap_pattern("tap%d", err, sizeof(err)), 0);
	assert_int_equal(wispctl_check_tap_pattern("fc-%d-%%", err, sizeof(err)), 0);
	assert_int_equal(wispctl_check_tap_pattern("tap", err, sizeof(err)), -EINVAL);
	assert_int_equal(wispctl_check_tap_pattern("t%d%d", err, sizeof(err)), -EINVAL);
	assert_int_equal(wispctl_check_tap_pattern("t%s", err, sizeof(err)), -EINVAL);
	assert_int_equal(wispctl_check_tap_pattern("t%d%n", err, sizeof(err)), -EINVAL);
	/* "verylongname" + 6 digits = 18 > 15 */
	assert_int_equal(wispctl_check_tap_pattern("verylongname%d", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "15"));
	/* 9 + 6 = 15 fits */
	assert_int_equal(wispctl_check_tap_pattern("ninechars%d", err, sizeof(err)), 0);
	assert_int_equal(parse("clone", "/s", "--count", "1", "--tap-pattern", "x%s", NULL)->ret,
			 -EINVAL);

	assert_int_equal(wispctl_tap_name("tap%d", 7, name, sizeof(name)), 0);
	assert_string_equal(name, "tap7");
	assert_int_equal(wispctl_tap_name("fc-%d-%%", 123, name, sizeof(name)), 0);
	assert_string_equal(name, "fc-123-%");
	assert_int_equal(wispctl_tap_name("ninechars%d", 999999, name, sizeof(name)), 0);
	assert_string_equal(name, "ninechars999999");
	assert_int_equal(wispctl_tap_name("ninechars%d", 1000000, name, sizeof(name)),
			 -ENAMETOOLONG);
}

static void clone_ids_and_their_files(void **state)
{
	char id[WISPCTL_ID_MAX], path[WISPCTL_PATH_MAX], long_dir[200];
	unsigned number;
	(void)state;
	wispctl_clone_id(42, id, sizeof(id));
	assert_string_equal(id, "c42");
	assert_int_equal(wispctl_parse_clone_id("c42", &number), 0);
	assert_int_equal(number, 42);
	assert_int_equal(wispctl_parse_clone_id("c0", &number), 0);
	assert_int_equal(number, 0);
	static const char *const not_ids[] = {"c", "c07",      "x1", "c1a", "c-1",
					      "",  "c9999999", "..", "c1/"};
	for (size_t i = 0; i < sizeof(not_ids) / sizeof(not_ids[0]); i++)
		assert_int_equal(wispctl_parse_clone_id(not_ids[i], &number), -EINVAL);

	assert_int_equal(wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_DIR, path, sizeof(path)),
			 0);
	assert_string_equal(path, "/tmp/w/clones/c3");
	assert_int_equal(
	    wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_SOCKET, path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/clones/c3/api.sock");
	assert_int_equal(
	    wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_CONSOLE_IN, path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/clones/c3/console.in");
	assert_int_equal(
	    wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_CONSOLE_LOG, path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/clones/c3/console.log");
	assert_int_equal(
	    wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_STDERR, path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/clones/c3/wisp.stderr");
	assert_int_equal(wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_INFO, path, sizeof(path)),
			 0);
	assert_string_equal(path, "/tmp/w/clones/c3/info.json");
	assert_int_equal(wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_LOCK, path, sizeof(path)),
			 0);
	assert_string_equal(path, "/tmp/w/clones/c3/invoke.lock");

	/* The socket must fit sun_path (107 bytes and the NUL); other files may be longer. */
	memset(long_dir, 'd', sizeof(long_dir));
	long_dir[0] = '/';
	long_dir[107 - strlen("/clones/c3/api.sock")] = '\0';
	assert_int_equal(
	    wispctl_clone_path(long_dir, "c3", WISPCTL_FILE_SOCKET, path, sizeof(path)), 0);
	assert_int_equal(strlen(path), 107);
	long_dir[107 - strlen("/clones/c3/api.sock")] = 'd';
	long_dir[108 - strlen("/clones/c3/api.sock")] = '\0';
	assert_int_equal(
	    wispctl_clone_path(long_dir, "c3", WISPCTL_FILE_SOCKET, path, sizeof(path)),
	    -ENAMETOOLONG);
	assert_int_equal(
	    wispctl_clone_path(long_dir, "c3", WISPCTL_FILE_CONSOLE_LOG, path, sizeof(path)), 0);
	assert_int_equal(wispctl_clone_path("/tmp/w", "c3", WISPCTL_FILE_DIR, path, 10),
			 -ENAMETOOLONG);
}

/* clone --jail: where a clone's jail and socket are, and its parent cgroup's name. */
static void jail_paths_and_cgroup_names(void **state)
{
	char path[WISPCTL_PATH_MAX], long_dir[128], a[32], b[32];
	size_t tail = strlen("/jails/wisp/c3/root/api.sock");

	(void)state;
	assert_int_equal(wispctl_jail_base("/tmp/w", path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/jails");
	assert_int_equal(wispctl_jail_root("/tmp/w", "wisp", "c3", path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/jails/wisp/c3/root");
	assert_int_equal(wispctl_jail_socket("/tmp/w", "wisp", "c3", path, sizeof(path)), 0);
	assert_string_equal(path, "/tmp/w/jails/wisp/c3/root/api.sock");
	assert_int_equal(wispctl_jail_root("/tmp/w", "wisp", "c3", path, 10), -ENAMETOOLONG);

	/* The socket must fit sun_path: 107 bytes and the NUL. */
	memset(long_dir, 'd', sizeof(long_dir));
	long_dir[0] = '/';
	long_dir[107 - tail] = '\0';
	assert_int_equal(wispctl_jail_socket(long_dir, "wisp", "c3", path, sizeof(path)), 0);
	assert_int_equal(strlen(path), 107);
	long_dir[107 - tail] = 'd';
	long_dir[108 - tail] = '\0';
	assert_int_equal(wispctl_jail_socket(long_dir, "wisp", "c3", path, sizeof(path)),
			 -ENAMETOOLONG);

	/* One name per state directory, the same every time: a valid jailer cgroup path. */
	wispctl_jail_parent_cgroup("/tmp/w", a, sizeof(a));
	wispctl_jail_parent_cgroup("/tmp/w", b, sizeof(b));
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), strlen("wispctl-") + 8);
	assert_int_equal(strncmp(a, "wispctl-", 8), 0);
	assert_int_equal(strspn(a + 8, "0123456789abcdef"), 8);
	wispctl_jail_parent_cgroup("/tmp/x", b, sizeof(b));
	assert_string_not_equal(a, b);

	/* cgroup.controllers: whole words only. */
	assert_true(wispctl_has_word("cpuset cpu io memory pids\n", "pids"));
	assert_true(wispctl_has_word("pids", "pids"));
	assert_true(wispctl_has_word("cpu pids memory", "pids"));
	assert_false(wispctl_has_word("hugetlb\n", "pids"));
	assert_false(wispctl_has_word("mypids rdma", "pids"));
	assert_false(wispctl_has_word("pidsx", "pids"));
	assert_false(wispctl_has_word("", "pids"));
}

static void http_heads_are_parsed_and_incomplete_ones_wait(void **state)
{
	static const char ok[] = "HTTP/1.1 204 No Content\r\nServer: wisp\r\n\r\n";
	static const char body[] =
	    "HTTP/1.1 400 Bad Request\r\ncontent-length: 27\r\nContent-Type: x\r\n\r\n"
	    "{\"fault_message\": \"nope\"}\n";
	size_t content_length, head_len;
	int status;
	(void)state;
	assert_int_equal(
	    wispctl_parse_http_head(ok, strlen(ok), &status, &content_length, &head_len), 0);
	assert_int_equal(status, 204);
	assert_int_equal(content_length, 0);
	assert_int_equal(head_len, strlen(ok));
	assert_int_equal(
	    wispctl_parse_http_head(body, strlen(body), &status, &content_length, &head_len), 0);
	assert_int_equal(status, 400);
	assert_int_equal(content_length, 27);
	assert_string_equal(body + head_len, "{\"fault_message\": \"nope\"}\n");
	for (size_t cut = 0; cut < strlen(ok); cut++)
		assert_int_equal(
		    wispctl_parse_http_head(ok, cut, &status, &content_length, &head_len), -EAGAIN);
	assert_int_equal(
	    wispctl_parse_http_head("SSH-2.0\r\n\r\n", 11, &status, &content_length, &head_len),
	    -EINVAL);
	assert_int_equal(wispctl_parse_http_head("HTTP/1.1 abc\r\n\r\n", 17, &status,
						 &content_length, &head_len),
			 -EINVAL);
	assert_int_equal(wispctl_parse_http_head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 38,
						 &status, &content_length, &head_len),
			 -EINVAL);
}

static void proc_values_and_answer_lines(void **state)
{
	static const char smaps[] = "55d0-7ffe ---p 00000000 00:00 0 [rollup]\n"
				    "Rss:                4580 kB\nPss:                1696 kB\n"
				    "Pss_Dirty:          1000 kB\n";
	static const char log[] = "wisp-init: ready uptime=0.5 cpus=1\r\n"
				  "noise wispctl-fn: reply fake\r\n"
				  "wispctl-fn: reply 5891b5b5  -\r\n"
				  "wispctl-fn: reply later\r\n";
	char out[64];
	uint64_t kb;
	(void)state;
	assert_int_equal(wispctl_proc_kb(smaps, "Pss:", &kb), 0);
	assert_int_equal(kb, 1696);
	assert_int_equal(wispctl_proc_kb(smaps, "Rss:", &kb), 0);
	assert_int_equal(kb, 4580);
	assert_int_equal(wispctl_proc_kb(smaps, "Swap:", &kb), -ENOENT);
	assert_int_equal(
	    wispctl_proc_kb("MemTotal: 100 kB\nMemAvailable: 42 kB\n", "MemAvailable:", &kb), 0);
	assert_int_equal(kb, 42);

	/* the first line that starts with the prefix, without \r */
	assert_int_equal(
	    wispctl_find_line(log, strlen(log), WISPCTL_REPLY_PREFIX, out, sizeof(out)), 0);
	assert_string_equal(out, "5891b5b5  -");
	/* an answer whose line has not ended yet is not taken */
	assert_int_equal(
	    wispctl_find_line("wispctl-fn: reply 58", 20, WISPCTL_REPLY_PREFIX, out, sizeof(out)),
	    -EAGAIN);
	assert_int_equal(wispctl_find_line("", 0, WISPCTL_REPLY_PREFIX, out, sizeof(out)), -EAGAIN);
	/* cut to the buffer */
	assert_int_equal(wispctl_find_line(log, strlen(log), WISPCTL_REPLY_PREFIX, out, 5), 0);
	assert_string_equal(out, "5891");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(snapshot_takes_its_options_and_defaults, reset_env),
	    cmocka_unit_test_setup(snapshot_needs_kernel_and_output, reset_env),
	    cmocka_unit_test_setup(bad_numbers_are_refused_with_the_option_named, reset_env),
	    cmocka_unit_test_setup(clone_takes_dir_count_parallel_and_pattern, reset_env),
	    cmocka_unit_test_setup(environment_gives_state_dir_and_wisp_and_options_win, reset_env),
	    cmocka_unit_test_setup(invoke_balloon_reap_take_an_id_or_all, reset_env),
	    cmocka_unit_test_setup(unknown_commands_and_misplaced_options_are_refused, reset_env),
	    cmocka_unit_test_setup(requests_must_be_printable_and_short, reset_env),
	    cmocka_unit_test_setup(tap_patterns_hold_one_number_and_fit_ifnamsiz, reset_env),
	    cmocka_unit_test_setup(clone_ids_and_their_files, reset_env),
	    cmocka_unit_test_setup(jail_paths_and_cgroup_names, reset_env),
	    cmocka_unit_test_setup(http_heads_are_parsed_and_incomplete_ones_wait, reset_env),
	    cmocka_unit_test_setup(proc_values_and_answer_lines, reset_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
