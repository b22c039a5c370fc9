/* Unit tests for wisp-jailer's pure part (jailer/jail_config.c): the command line, the id,
 * path, cgroup and resource-limit rules, and the paths built from them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jail_config.h"

#define MAX_ARGS 40

struct parse_result {
	int ret;
	struct jail_config config;
	char err[1024];
};

static char *saved_argv[MAX_ARGS + 2];

/* Parses "wisp-jailer" followed by the NULL-terminated arguments. */
static struct parse_result *parse(const char *first, ...)
{
	static struct parse_result result;
	int argc = 0;
	va_list ap;

	saved_argv[argc++] = "wisp-jailer";
	va_start(ap, first);
	for (const char *arg = first; arg; arg = va_arg(ap, const char *)) {
		assert_true(argc <= MAX_ARGS);
		saved_argv[argc++] = (char *)arg;
	}
	va_end(ap);
	saved_argv[argc] = NULL;
	result.ret =
	    jail_parse_args(argc, saved_argv, &result.config, result.err, sizeof(result.err));
	return &result;
}

#define BASIC "--id", "vm-1", "--exec-file", "/usr/bin/wisp", "--uid", "123", "--gid", "100"

static void test_minimal_command_line_takes_the_defaults(void **state)
{
	(void)state;
	struct parse_result *r = parse(BASIC, NULL);

	assert_int_equal(r->ret, 0);
	assert_string_equal(r->config.id, "vm-1");
	assert_string_equal(r->config.exec_file, "/usr/bin/wisp");
	assert_string_equal(r->config.exec_name, "wisp");
	assert_int_equal(r->config.uid, 123);
	assert_int_equal(r->config.gid, 100);
	assert_string_equal(r->config.chroot_base, "/srv/jailer");
	/* Firecracker's default parent cgroup: the exec file's name. */
	assert_string_equal(r->config.parent_cgroup, "wisp");
	assert_int_equal(r->config.cgroup_version, 2);
	assert_int_equal(r->config.cgroup_count, 0);
	assert_false(r->config.daemonize);
	assert_false(r->config.new_pid_ns);
	assert_false(r->config.cleanup);
	assert_false(r->config.rlimit_set[JAIL_RLIMIT_NOFILE]);
	assert_int_equal(r->config.exec_arg_count, 0);
}

static void test_every_option_is_parsed(void **state)
{
	(void)state;
	struct parse_result *r =
	    parse(BASIC, "--chroot-base-dir", "/var/jail", "--netns", "/var/run/netns/vm1",
		  "--cgroup-version", "2", "--cgroup", "pids.max=64", "--cgroup=memory.max=256M",
		  "--cgroup", "cpu.max=50000 100000", "--parent-cgroup", "vms/tenant-a",
		  "--resource-limit", "fsize=1000", "--resource-limit=no-file=512", "--daemonize",
		  "--new-pid-ns", "--", "--api-sock", "/api.sock", "--", "x", NULL);

	assert_int_equal(r->ret, 0);
	assert_string_equal(r->config.chroot_base, "/var/jail");
	assert_string_equal(r->config.netns, "/var/run/netns/vm1");
	assert_int_equal(r->config.cgroup_count, 3);
	assert_string_equal(r->config.cgroups[0].file, "pids.max");
	assert_string_equal(r->config.cgroups[0].value, "64");
	assert_string_equal(r->config.cgroups[1].file, "memory.max");
	assert_string_equal(r->config.cgroups[1].value, "256M");
	assert_string_equal(r->config.cgroups[2].value, "50000 100000");
	assert_string_equal(r->config.parent_cgroup, "vms/tenant-a");
	assert_true(r->config.rlimit_set[JAIL_RLIMIT_FSIZE]);
	assert_int_equal(r->config.rlimit[JAIL_RLIMIT_FSIZE], 1000);
	assert_true(r->config.rlimit_set[JAIL_RLIMIT_NOFILE]);
	assert_int_equal(r->config.rlimit[JAIL_RLIMIT_NOFILE], 512);
	assert_true(r->config.daemonize);
	assert_true(r->config.new_pid_ns);
	/* Everything after the first "--" is the exec file's, a later "--" included. */
	assert_int_equal(r->config.exec_arg_count, 4);
	assert_string_equal(r->config.exec_args[0], "--api-sock");
	assert_string_equal(r->config.exec_args[1], "/api.sock");
	assert_string_equal(r->config.exec_args[2], "--");
	assert_string_equal(r->config.exec_args[3], "x");
}

static void test_missing_or_bad_options_are_refused_with_a_message(void **state)
{
	(void)state;
	struct {
		const char *args[12];
		const char *message;
	} cases[] = {
	    {{"--exec-file", "/w", "--uid", "1", "--gid", "1"}, "--id is required"},
	    {{"--id", "a", "--uid", "1", "--gid", "1"}, "--exec-file is required"},
	    {{"--id", "a", "--exec-file", "/w", "--gid", "1"}, "--uid is required"},
	    {{"--id", "a", "--exec-file", "/w", "--uid", "1"}, "--gid is required"},
	    {{BASIC, "--bogus"}, "unknown option '--bogus'"},
	    {{BASIC, "--netns"}, "--netns needs a value"},
	    {{BASIC, "--cgroup-version", "1"}, "--cgroup-version '1'"},
	    {{BASIC, "--cgroup", "pids.max"}, "--cgroup 'pids.max'"},
	    {{BASIC, "--resource-limit", "stack=5"}, "--resource-limit 'stack=5'"},
	    {{"--id", "a", "--exec-file", "wisp", "--uid", "1", "--gid", "1"},
	     "--exec-file 'wisp'"},
	    {{"--id", "a", "--exec-file", "/w", "--uid", "-1", "--gid", "1"}, "--uid '-1'"},
	    {{"--id", "a", "--exec-file", "/w", "--uid", "1", "--gid", "4294967295"},
	     "--gid '4294967295'"},
	    {{BASIC, "--chroot-base-dir", "/"}, "--chroot-base-dir '/'"},
	    {{BASIC, "--chroot-base-dir", "/srv/../etc"}, "--chroot-base-dir '/srv/../etc'"},
	    {{BASIC, "--netns", "netns/x"}, "--netns 'netns/x'"},
	    {{BASIC, "--parent-cgroup", "/abs"}, "--parent-cgroup '/abs'"},
	    {{BASIC, "--parent-cgroup", "a/../b"}, "--parent-cgroup 'a/../b'"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[16] = {"wisp-jailer"};
		int argc = 1;
		struct jail_config config;
		char err[1024];

		for (int a = 0; cases[i].args[a]; a++)
			argv[argc++] = (char *)cases[i].args[a];
		assert_int_equal(jail_parse_args(argc, argv, &config, err, sizeof(err)), -EINVAL);
		if (!strstr(err, cases[i].message))
			fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].message);
	}
}

static void test_root_uid_or_gid_needs_allow_root(void **state)
{
	(void)state;
	struct parse_result *r =
	    parse("--id", "a", "--exec-file", "/w", "--uid", "0", "--gid", "100", NULL);

	assert_int_equal(r->ret, -EINVAL);
	assert_non_null(strstr(r->err, "root"));
	r = parse("--id", "a", "--exec-file", "/w", "--uid", "100", "--gid", "0", NULL);
	assert_int_equal(r->ret, -EINVAL);
	r = parse("--id", "a", "--exec-file", "/w", "--uid", "0", "--gid", "0", "--allow-root",
		  NULL);
	assert_int_equal(r->ret, 0);
}

static void test_cleanup_takes_only_the_naming_options(void **state)
{
	(void)state;
	struct parse_result *r = parse("--cleanup", "--id", "vm-1", "--exec-file", "/usr/bin/wisp",
				       "--chroot-base-dir", "/j", "--parent-cgroup", "p", NULL);

	assert_int_equal(r->ret, 0);
	assert_true(r->config.cleanup);
	assert_string_equal(r->config.parent_cgroup, "p");
	r = parse("--cleanup", BASIC, NULL);
	assert_int_equal(r->ret, -EINVAL);
	assert_non_null(strstr(r->err, "--cleanup takes only"));
	r = parse("--cleanup", "--id", "a", "--exec-file", "/w", "--", "x", NULL);
	assert_int_equal(r->ret, -EINVAL);
}

static void test_id_rules_are_firecrackers(void **state)
{
	(void)state;
	char longest[JAIL_ID_MAX + 2];

	assert_int_equal(jail_check_id("a"), 0);
	assert_int_equal(jail_check_id("551e7604-e35c-42b3-b825-416853441234"), 0);
	assert_int_equal(jail_check_id("ABC-xyz-09"), 0);
	memset(longest, 'a', JAIL_ID_MAX);
	longest[JAIL_ID_MAX] = '\0';
	assert_int_equal(jail_check_id(longest), 0);
	longest[JAIL_ID_MAX] = 'a';
	longest[JAIL_ID_MAX + 1] = '\0';
	assert_int_equal(jail_check_id(longest), -EINVAL);
	assert_int_equal(jail_check_id(""), -EINVAL);
	assert_int_equal(jail_check_id("a/b"), -EINVAL);
	assert_int_equal(jail_check_id(".."), -EINVAL);
	assert_int_equal(jail_check_id("a_b"), -EINVAL);
	assert_int_equal(jail_check_id("a b"), -EINVAL);
	assert_int_equal(jail_check_id("a.b"), -EINVAL);
	assert_int_equal(jail_check_id("é"), -EINVAL);
}

static void test_path_rules(void **state)
{
	(void)state;
	assert_int_equal(jail_check_absolute_path("/srv/jailer"), 0);
	assert_int_equal(jail_check_absolute_path("/"), 0);
	assert_int_equal(jail_check_absolute_path("/a/.hidden/b"), 0);
	assert_int_equal(jail_check_absolute_path("srv"), -EINVAL);
	assert_int_equal(jail_check_absolute_path(""), -EINVAL);
	assert_int_equal(jail_check_absolute_path("/srv/../etc"), -EINVAL);
	assert_int_equal(jail_check_absolute_path("/srv/./x"), -EINVAL);
	assert_int_equal(jail_check_absolute_path("/srv//x"), -EINVAL);
	assert_int_equal(jail_check_absolute_path("/srv/"), -EINVAL);
	assert_int_equal(jail_check_absolute_path("/.."), -EINVAL);

	assert_int_equal(jail_check_relative_path("wisp"), 0);
	assert_int_equal(jail_check_relative_path("all_uvms/external-uvms.v2"), 0);
	assert_int_equal(jail_check_relative_path(""), -EINVAL);
	assert_int_equal(jail_check_relative_path("/wisp"), -EINVAL);
	assert_int_equal(jail_check_relative_path(".."), -EINVAL);
	assert_int_equal(jail_check_relative_path("a/./b"), -EINVAL);
	assert_int_equal(jail_check_relative_path("a//b"), -EINVAL);
	assert_int_equal(jail_check_relative_path("a/"), -EINVAL);
	assert_int_equal(jail_check_relative_path("a b"), -EINVAL);
	assert_int_equal(jail_check_relative_path("a\nb"), -EINVAL);
}

static void test_cgroup_settings(void **state)
{
	(void)state;
	struct jail_cgroup_setting setting;
	char controller[32];

	assert_int_equal(jail_parse_cgroup("pids.max=64", &setting), 0);
	assert_string_equal(setting.file, "pids.max");
	assert_string_equal(setting.value, "64");
	/* The value is everything after the first '=', spaces and '=' included. */
	assert_int_equal(jail_parse_cgroup("io.max=8:0 rbps=1048576", &setting), 0);
	assert_string_equal(setting.file, "io.max");
	assert_string_equal(setting.value, "8:0 rbps=1048576");
	assert_int_equal(jail_parse_cgroup("hugetlb.2MB.max=0", &setting), 0);
	assert_string_equal(setting.file, "hugetlb.2MB.max");
	assert_int_equal(jail_parse_cgroup("cpuset.cpus=0-1", &setting), 0);
	assert_int_equal(jail_parse_cgroup("cgroup.max.descendants=5", &setting), 0);

	assert_int_equal(jail_parse_cgroup("pids.max", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("pids.max=", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("pids=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup(".max=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("pids.=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("../pids.max=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("x/pids.max=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("Pids.max=5", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("pids.max=5\n6", &setting), -EINVAL);
	/* The files the jailer itself writes, or that would move or kill processes. */
	assert_int_equal(jail_parse_cgroup("cgroup.procs=1", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("cgroup.threads=1", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("cgroup.subtree_control=+pids", &setting), -EINVAL);
	assert_int_equal(jail_parse_cgroup("cgroup.kill=1", &setting), -EINVAL);

	jail_cgroup_controller("pids.max", controller, sizeof(controller));
	assert_string_equal(controller, "pids");
	jail_cgroup_controller("memory.swap.max", controller, sizeof(controller));
	assert_string_equal(controller, "memory");
	jail_cgroup_controller("cgroup.max.depth", controller, sizeof(controller));
	assert_string_equal(controller, "");
	jail_cgroup_controller("cpuset.cpus", controller, 4);
	assert_string_equal(controller, "cpu");
}

static void test_rlimits(void **state)
{
	(void)state;
	enum jail_rlimit_kind kind;
	uint64_t value;

	assert_int_equal(jail_parse_rlimit("fsize=250000000", &kind, &value), 0);
	assert_int_equal(kind, JAIL_RLIMIT_FSIZE);
	assert_int_equal(value, 250000000);
	assert_int_equal(jail_parse_rlimit("no-file=1024", &kind, &value), 0);
	assert_int_equal(kind, JAIL_RLIMIT_NOFILE);
	assert_int_equal(value, 1024);
	assert_int_equal(jail_parse_rlimit("no-file=0", &kind, &value), 0);
	assert_int_equal(jail_parse_rlimit("fsize=9223372036854775807", &kind, &value), 0);
	assert_int_equal(jail_parse_rlimit("fsize=9223372036854775808", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("fsize=-1", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("fsize=1k", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("fsize=", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("fsize", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("nofile=5", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("no-files=5", &kind, &value), -EINVAL);
	assert_int_equal(jail_parse_rlimit("=5", &kind, &value), -EINVAL);
}

static void test_uid_gid_numbers(void **state)
{
	(void)state;
	uint32_t value;

	assert_int_equal(jail_parse_id_number("0", &value), 0);
	assert_int_equal(value, 0);
	assert_int_equal(jail_parse_id_number("4294967294", &value), 0);
	assert_int_equal(value, 4294967294u);
	assert_int_equal(jail_parse_id_number("4294967295", &value), -EINVAL);
	assert_int_equal(jail_parse_id_number("", &value), -EINVAL);
	assert_int_equal(jail_parse_id_number("12a", &value), -EINVAL);
	assert_int_equal(jail_parse_id_number("+5", &value), -EINVAL);
	assert_int_equal(jail_parse_id_number(" 5", &value), -EINVAL);
}

static void test_paths_are_built_as_firecracker_lays_them_out(void **state)
{
	(void)state;
	struct parse_result *r =
	    parse(BASIC, "--chroot-base-dir", "/srv/jailer", "--parent-cgroup", "all/ext", NULL);
	char path[JAIL_PATH_MAX];

	assert_int_equal(r->ret, 0);
	assert_int_equal(jail_dir_path(&r->config, path, sizeof(path)), 0);
	assert_string_equal(path, "/srv/jailer/wisp/vm-1");
	assert_int_equal(jail_root_path(&r->config, path, sizeof(path)), 0);
	assert_string_equal(path, "/srv/jailer/wisp/vm-1/root");
	assert_int_equal(jail_cgroup_path(&r->config, "/sys/fs/cgroup", path, sizeof(path)), 0);
	assert_string_equal(path, "/sys/fs/cgroup/all/ext/vm-1");
	/* Too small a buffer is an error, never a cut path. */
	assert_int_equal(jail_root_path(&r->config, path, 10), -ENAMETOOLONG);
	assert_int_equal(jail_cgroup_path(&r->config, "/sys/fs/cgroup", path, 27), -ENAMETOOLONG);
}

static void test_word_lists(void **state)
{
	(void)state;
	assert_true(jail_word_in_list("cpuset cpu io memory pids\n", "pids"));
	assert_true(jail_word_in_list("cpuset cpu io memory pids\n", "cpu"));
	assert_false(jail_word_in_list("cpuset io memory pids\n", "cpu"));
	assert_false(jail_word_in_list("", "cpu"));
	assert_false(jail_word_in_list("cpu", ""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal_command_line_takes_the_defaults),
	    cmocka_unit_test(test_every_option_is_parsed),
	    cmocka_unit_test(test_missing_or_bad_options_are_refused_with_a_message),
	    cmocka_unit_test(test_root_uid_or_gid_needs_allow_root),
	    cmocka_unit_test(test_cleanup_takes_only_the_naming_options),
	    cmocka_unit_test(test_id_rules_are_firecrackers),
	    cmocka_unit_test(test_path_rules),
	    cmocka_unit_test(test_cgroup_settings),
	    cmocka_unit_test(test_rlimits),
	    cmocka_unit_test(test_uid_gid_numbers),
	    cmocka_unit_test(test_paths_are_built_as_firecracker_lays_them_out),
	    cmocka_unit_test(test_word_lists),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
