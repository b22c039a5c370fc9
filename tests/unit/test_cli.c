/* Unit tests for the command line parser (cli.c). cli_parse resets getopt itself, so every
 * test calls it as often as it likes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

#define MAX_ARGS 32

struct parse_result {
	int ret;
	struct vmm_config config;
	char err[256];
};

/* Parses "wisp" followed by the NULL-terminated arguments. */
static struct parse_result parse_args(const char *first, ...)
{
	static struct parse_result result;
	char *argv[MAX_ARGS + 2];
	int argc = 0;
	va_list ap;

	argv[argc++] = "wisp";
	/* Writable copies, as a real argv: the k=v,k=v options are split in place. */
	va_start(ap, first);
	for (const char *arg = first; arg; arg = va_arg(ap, const char *)) {
		assert_true(argc <= MAX_ARGS);
		argv[argc] = strdup(arg);
		assert_non_null(argv[argc]);
		argc++;
	}
	va_end(ap);
	argv[argc] = NULL;

	memset(&result, 0, sizeof(result));
	memset(&result.config, 0xa5, sizeof(result.config));
	strcpy(result.err, "(untouched)");
	result.ret = cli_parse(argc, argv, &result.config, result.err, sizeof(result.err));
	for (int i = 1; i < argc; i++)
		free(argv[i]);
	return result;
}

#define PARSE(...) parse_args(__VA_ARGS__, (const char *)NULL)

/* The parse failed with -EINVAL and a message that contains every given fragment. */
static void assert_rejected(const struct parse_result *r, const char *fragment1,
			    const char *fragment2)
{
	assert_int_equal(r->ret, -EINVAL);
	assert_non_null(strstr(r->err, fragment1));
	if (fragment2)
		assert_non_null(strstr(r->err, fragment2));
	assert_null(strchr(r->err, '\n'));
}

/* ---- successful parses ---- */

static void test_defaults_with_only_kernel(void **state)
{
	struct parse_result r = PARSE("--kernel", "vmlinux");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.kernel_path, "vmlinux");
	assert_string_equal(r.config.initrd_path, "");
	assert_string_equal(r.config.cmdline, CONFIG_DEFAULT_CMDLINE);
	assert_int_equal(r.config.vcpus, CONFIG_DEFAULT_VCPUS);
	assert_int_equal(r.config.mem_mib, CONFIG_DEFAULT_MEM_MIB);
	assert_int_equal(r.config.log_level, LOG_LEVEL_WARN);
	assert_false(r.config.no_acpi); /* ACPI tables by default, as Firecracker */
	assert_string_equal(r.err, "(untouched)");
}

static void test_no_acpi_is_a_boot_option(void **state)
{
	struct parse_result r = PARSE("--kernel", "vmlinux", "--no-acpi");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_true(r.config.no_acpi);
	/* A snapshot's memory holds the tables it booted with. */
	r = PARSE("--restore", "s", "--mem-file", "m", "--resume", "--no-acpi");
	assert_rejected(&r, ": --no-acpi cannot be given with it", NULL);
}

static void test_seccomp_options(void **state)
{
	struct parse_result r = PARSE("--kernel", "vmlinux");
	(void)state;

	/* The filters are on unless asked otherwise. */
	assert_false(r.config.process.no_seccomp);
	assert_string_equal(r.config.process.seccomp_filter, "");
	r = PARSE("--kernel", "vmlinux", "--no-seccomp");
	assert_int_equal(r.ret, CLI_RUN);
	assert_true(r.config.process.no_seccomp);
	r = PARSE("--restore", "s", "--mem-file", "m", "--resume", "--seccomp-filter", "f.bpf");
	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.process.seccomp_filter, "f.bpf");
	r = PARSE("--kernel", "vmlinux", "--no-seccomp", "--seccomp-filter", "f.bpf");
	assert_rejected(&r, "--no-seccomp and --seccomp-filter", NULL);
	assert_non_null(strstr(cli_usage, "--no-seccomp"));
	assert_non_null(strstr(cli_usage, "--seccomp-filter FILE"));
	assert_non_null(strstr(cli_usage, "seccomp-filter-dump FILE"));
	assert_non_null(strstr(cli_usage, "148"));
}

static void test_default_cmdline_keeps_reboot_k_and_serial_console(void **state)
{
	(void)state;
	assert_non_null(strstr(CONFIG_DEFAULT_CMDLINE, "console=ttyS0"));
	assert_non_null(strstr(CONFIG_DEFAULT_CMDLINE, "reboot=k"));
	assert_non_null(strstr(cli_usage, CONFIG_DEFAULT_CMDLINE));
}

static void test_every_option_is_taken(void **state)
{
	struct parse_result r = PARSE("--kernel", "/k/bzImage", "--initrd", "/k/initrd.gz",
				      "--cmdline", "console=ttyS0 quiet", "--vcpus", "4",
				      "--mem-mib", "512", "--log-level", "debug");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.kernel_path, "/k/bzImage");
	assert_string_equal(r.config.initrd_path, "/k/initrd.gz");
	assert_string_equal(r.config.cmdline, "console=ttyS0 quiet");
	assert_int_equal(r.config.vcpus, 4);
	assert_int_equal(r.config.mem_mib, 512);
	assert_int_equal(r.config.log_level, LOG_LEVEL_DEBUG);
}

static void test_options_accept_equals_form_and_any_order(void **state)
{
	struct parse_result r = PARSE("--mem-mib=2048", "--vcpus=32", "--cmdline=", "--initrd=i",
				      "--log-level=ERROR", "--kernel=k");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.kernel_path, "k");
	assert_string_equal(r.config.initrd_path, "i");
	assert_string_equal(r.config.cmdline, ""); /* an empty command line is allowed */
	assert_int_equal(r.config.vcpus, 32);
	assert_int_equal(r.config.mem_mib, 2048);
	assert_int_equal(r.config.log_level, LOG_LEVEL_ERROR);
}

static void test_option_value_may_start_with_a_dash(void **state)
{
	struct parse_result r = PARSE("--cmdline", "--help", "--kernel", "-k");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.cmdline, "--help");
	assert_string_equal(r.config.kernel_path, "-k");
}

static void test_later_option_overrides_earlier(void **state)
{
	struct parse_result r =
	    PARSE("--vcpus", "2", "--kernel", "a", "--vcpus", "3", "--kernel", "b");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_int_equal(r.config.vcpus, 3);
	assert_string_equal(r.config.kernel_path, "b");
}

static void test_unambiguous_option_prefix_is_accepted(void **state)
{
	/* "--mem" alone would be --mem-mib or --mem-file. */
	struct parse_result r = PARSE("--ker", "k", "--mem-m", "64");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.kernel_path, "k");
	assert_int_equal(r.config.mem_mib, 64);
}

static void test_vcpus_and_mem_limits_are_inclusive(void **state)
{
	struct parse_result r;
	(void)state;

	r = PARSE("--kernel", "k", "--vcpus", "1", "--mem-mib", "1");
	assert_int_equal(r.ret, CLI_RUN);
	assert_int_equal(r.config.vcpus, 1);
	assert_int_equal(r.config.mem_mib, 1);

	r = PARSE("--kernel", "k", "--vcpus", "32", "--mem-mib", "1048576");
	assert_int_equal(r.ret, CLI_RUN);
	assert_int_equal(r.config.vcpus, CONFIG_MAX_VCPUS);
	assert_int_equal(r.config.mem_mib, CONFIG_MAX_MEM_MIB);
}

static void test_every_log_level_name_is_accepted(void **state)
{
	static const struct {
		const char *name;
		enum log_level level;
	} cases[] = {
	    {"error", LOG_LEVEL_ERROR}, {"warn", LOG_LEVEL_WARN},   {"warning", LOG_LEVEL_WARN},
	    {"info", LOG_LEVEL_INFO},	{"debug", LOG_LEVEL_DEBUG}, {"Info", LOG_LEVEL_INFO},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct parse_result r = PARSE("--log-level", cases[i].name, "--kernel", "k");
		assert_int_equal(r.ret, CLI_RUN);
		assert_int_equal(r.config.log_level, cases[i].level);
	}
}

static void test_help_and_version_need_no_kernel(void **state)
{
	struct parse_result r;
	(void)state;

	r = PARSE("--help");
	assert_int_equal(r.ret, CLI_HELP);
	r = PARSE("-h");
	assert_int_equal(r.ret, CLI_HELP);
	r = PARSE("--version");
	assert_int_equal(r.ret, CLI_VERSION);
	r = PARSE("--kernel", "k", "--vcpus", "2", "--help");
	assert_int_equal(r.ret, CLI_HELP);
	r = PARSE("--vcpus", "2", "--version", "--kernel", "k");
	assert_int_equal(r.ret, CLI_VERSION);
}

static void test_end_of_options_marker_is_accepted(void **state)
{
	struct parse_result r = PARSE("--kernel", "k", "--");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_string_equal(r.config.kernel_path, "k");
}

static void test_parse_can_run_repeatedly(void **state)
{
	struct parse_result r;
	(void)state;

	r = PARSE("--kernel", "a", "--bogus");
	assert_int_equal(r.ret, -EINVAL);
	r = PARSE("--kernel");
	assert_int_equal(r.ret, -EINVAL);
	/* The next parse starts from the first argument again and sees every option. */
	r = PARSE("--vcpus", "5", "--kernel", "b");
	assert_int_equal(r.ret, CLI_RUN);
	assert_int_equal(r.config.vcpus, 5);
	assert_string_equal(r.config.kernel_path, "b");
	r = PARSE("--kernel", "c");
	assert_int_equal(r.ret, CLI_RUN);
	assert_int_equal(r.config.vcpus, CONFIG_DEFAULT_VCPUS); /* defaults reset each time */
	assert_string_equal(r.config.kernel_path, "c");
}

/* ---- errors ---- */

static void test_bad_vcpus_values_are_rejected_naming_the_option(void **state)
{
	static const char *const bad[] = {"0", "33", "abc", "-1", "", "2x", " 2", "+2", "0x2"};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parse_result r = PARSE("--kernel", "k", "--vcpus", bad[i]);
		char quoted[32];
		snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
		assert_rejected(&r, "--vcpus", quoted);
	}
}

static void test_bad_mem_mib_values_are_rejected_naming_the_option(void **state)
{
	static const char *const bad[] = {"0",	"1048577", "99999999999999999999999", "12x", "",
					  "-5", "1e3"};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct parse_result r = PARSE("--mem-mib", bad[i], "--kernel", "k");
		char quoted[48];
		snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
		assert_rejected(&r, "--mem-mib", quoted);
	}
}

static void test_bad_log_level_is_rejected_naming_the_option(void **state)
{
	struct parse_result r = PARSE("--kernel", "k", "--log-level", "verbose");
	(void)state;

	assert_rejected(&r, "--log-level", "'verbose'");
}

static void test_unknown_long_option_is_rejected_naming_it(void **state)
{
	struct parse_result r = PARSE("--kernel", "k", "--bogus");
	(void)state;

	assert_rejected(&r, "unknown option", "'--bogus'");
	r = PARSE("--frobnicate=1", "--kernel", "k");
	assert_rejected(&r, "unknown option", "--frobnicate");
}

static void test_unknown_short_option_is_rejected_naming_it(void **state)
{
	struct parse_result r = PARSE("--kernel", "k", "-x");
	(void)state;

	assert_rejected(&r, "unknown option", "'-x'");
	r = PARSE("-v", "--kernel", "k");
	assert_rejected(&r, "unknown option", "'-v'");
}

/* Inside a bundle getopt has not moved past the argument yet, so argv[optind - 1] is the
 * argument before it: the program name, or another option's value. */
static void test_unknown_short_option_in_a_bundle_is_rejected_naming_it(void **state)
{
	struct parse_result r = PARSE("-xh");
	(void)state;

	assert_rejected(&r, "unknown option", "'-x'");
	assert_null(strstr(r.err, "'wisp'"));
	assert_null(strstr(r.err, "-xh"));

	r = PARSE("--kernel", "k", "-kx");
	assert_rejected(&r, "unknown option", "'-k'");
	assert_null(strstr(r.err, "'k'"));
	assert_null(strstr(r.err, "-kx"));

	/* -h comes first and wins; the unknown option after it is never reached. */
	r = PARSE("-hx");
	assert_int_equal(r.ret, CLI_HELP);
}

static void test_ambiguous_prefix_is_rejected(void **state)
{
	/* --v could be --vcpus or --version. */
	struct parse_result r = PARSE("--v", "2", "--kernel", "k");
	(void)state;

	assert_rejected(&r, "--v", NULL);
}

static void test_missing_value_is_rejected_naming_the_option(void **state)
{
	static const char *const options[] = {"--kernel", "--initrd",  "--cmdline",
					      "--vcpus",  "--mem-mib", "--log-level"};
	struct parse_result r;
	(void)state;

	r = PARSE("--kernel");
	assert_rejected(&r, "option --kernel needs a value", NULL);
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		r = PARSE("--kernel", "k", options[i]);
		assert_rejected(&r, options[i], "needs a value");
	}
}

static void test_stray_positional_argument_is_rejected_naming_it(void **state)
{
	struct parse_result r = PARSE("--kernel", "k", "extra");
	(void)state;

	assert_rejected(&r, "unexpected argument", "'extra'");
	/* Parsing stops at the first positional argument, so options after it don't help. */
	r = PARSE("vmlinux", "--kernel", "k");
	assert_rejected(&r, "unexpected argument", "'vmlinux'");
	r = PARSE("--kernel", "k", "--", "--vcpus");
	assert_rejected(&r, "unexpected argument", "'--vcpus'");
}

static void test_missing_kernel_is_rejected(void **state)
{
	struct parse_result r;
	(void)state;

	r = PARSE("--vcpus", "2", "--initrd", "i");
	assert_rejected(&r, "--kernel", "what to boot");
	{
		char *argv[] = {"wisp", NULL};
		struct vmm_config config;
		char err[128] = "";
		assert_int_equal(cli_parse(1, argv, &config, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--kernel"));
	}
}

static void test_error_message_is_truncated_to_the_buffer(void **state)
{
	char *argv[] = {"wisp", "--kernel", "k", "--vcpus", "999", NULL};
	struct vmm_config config;
	char err[12];
	(void)state;

	memset(err, 'Z', sizeof(err));
	assert_int_equal(cli_parse(5, argv, &config, err, 8), -EINVAL);
	assert_int_equal(strlen(err), 7);
	assert_memory_equal(err, "--vcpus", 7);
	assert_int_equal(err[8], 'Z'); /* nothing written past err_size */
}

/* ---- --restore ---- */

static void test_restore_with_a_memory_file(void **state)
{
	struct parse_result r =
	    PARSE("--restore", "/s/vm.state", "--mem-file", "/s/vm.mem", "--resume");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_true(r.config.has_restore);
	assert_string_equal(r.config.restore.snapshot_path, "/s/vm.state");
	assert_int_equal(r.config.restore.backend, MEM_BACKEND_FILE);
	assert_string_equal(r.config.restore.backend_path, "/s/vm.mem");
	assert_true(r.config.restore.resume_vm);
	assert_false(r.config.restore.clock_realtime);
	assert_false(r.config.restore.track_dirty_pages);
	assert_int_equal(r.config.restore.huge_pages, RESTORE_HUGE_PAGES_SNAPSHOT);
	assert_int_equal(r.config.restore.nr_net_overrides, 0);
	/* Nothing to boot: the rest of the configuration is the defaults. */
	assert_string_equal(r.config.kernel_path, "");
	assert_int_equal(r.config.nr_drives, 0);
	assert_int_equal(r.config.nr_nets, 0);
}

static void test_restore_takes_every_restore_option(void **state)
{
	struct parse_result r =
	    PARSE("--api-sock", "/run/api.sock", "--id", "clone-7", "--log-level", "debug",
		  "--restore", "/s/vm.state", "--uffd-sock", "/run/uffd.sock", "--clock-realtime",
		  "--track-dirty-pages", "--net-override", "id=eth0,tap=tap7", "--net-override",
		  "tap=tap456789012345,id=eth1");
	(void)state;

	assert_int_equal(r.ret, CLI_RUN);
	assert_true(r.config.has_restore);
	assert_int_equal(r.config.restore.backend, MEM_BACKEND_UFFD);
	assert_string_equal(r.config.restore.backend_path, "/run/uffd.sock");
	assert_false(r.config.restore.resume_vm); /* paused: PATCH /vm resumes it */
	assert_true(r.config.restore.clock_realtime);
	assert_true(r.config.restore.track_dirty_pages);
	assert_int_equal(r.config.restore.nr_net_overrides, 2);
	assert_string_equal(r.config.restore.net_overrides[0].iface_id, "eth0");
	assert_string_equal(r.config.restore.net_overrides[0].tap, "tap7");
	assert_string_equal(r.config.restore.net_overrides[1].iface_id, "eth1");
	assert_string_equal(r.config.restore.net_overrides[1].tap, "tap456789012345");
	assert_string_equal(r.config.process.api_sock, "/run/api.sock");
	assert_string_equal(r.config.process.id, "clone-7");
	assert_int_equal(r.config.log_level, LOG_LEVEL_DEBUG);
	/* Without the API at all, as long as the VM resumes at once. */
	r = PARSE("--no-api", "--restore", "s", "--mem-file", "m", "--resume");
	assert_int_equal(r.ret, CLI_RUN);
	assert_true(r.config.process.no_api);
	assert_true(r.config.has_restore);
}

static void test_restore_refuses_boot_options_naming_them(void **state)
{
	static const char *const options[][2] = {
	    {"--kernel", "k"},
	    {"--initrd", "i"},
	    {"--cmdline", "quiet"},
	    {"--vcpus", "2"},
	    {"--mem-mib", "256"},
	    {"--drive", "id=rootfs,path=/r"},
	    {"--net", "id=eth0,tap=tap0"},
	    {"--config-file", "/c.json"},
	};
	char expected[64];
	struct parse_result r;
	(void)state;

	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		snprintf(expected, sizeof(expected), ": %s cannot be given with it", options[i][0]);
		r = PARSE("--restore", "s", "--mem-file", "m", "--resume", options[i][0],
			  options[i][1]);
		assert_rejected(&r, "--restore starts the VM the snapshot holds", expected);
		/* The order does not matter. */
		r = PARSE(options[i][0], options[i][1], "--restore", "s", "--mem-file", "m",
			  "--resume");
		assert_rejected(&r, expected, NULL);
	}
	/* A prefix is named by the option's full name. */
	r = PARSE("--restore", "s", "--mem-file", "m", "--resume", "--ker", "k");
	assert_rejected(&r, ": --kernel cannot be given with it", NULL);
}

static void test_restore_needs_exactly_one_memory_source(void **state)
{
	struct parse_result r;
	(void)state;

	r = PARSE("--restore", "s", "--resume");
	assert_rejected(&r, "--restore needs the guest memory", "--mem-file MEM");
	r = PARSE("--restore", "s", "--resume", "--mem-file", "m", "--uffd-sock", "u");
	assert_rejected(&r, "--mem-file and --uffd-sock contradict each other", NULL);
	r = PARSE("--restore", "", "--resume", "--mem-file", "m");
	assert_rejected(&r, "--restore: a path of 1 to 4095 characters", NULL);
	r = PARSE("--restore", "s", "--resume", "--mem-file", "");
	assert_rejected(&r, "--mem-file: a path of 1 to 4095 characters", NULL);
	r = PARSE("--restore", "s", "--resume", "--uffd-sock", "");
	assert_rejected(&r, "--uffd-sock: a path of 1 to 4095 characters", NULL);
}

static void test_restore_without_resume_needs_the_api(void **state)
{
	struct parse_result r = PARSE("--restore", "s", "--mem-file", "m");
	(void)state;

	assert_rejected(&r, "--restore without --resume leaves the VM paused",
			"add --resume or --api-sock PATH");
	r = PARSE("--no-api", "--restore", "s", "--mem-file", "m");
	assert_rejected(&r, "--restore without --resume", NULL);
}

static void test_restore_options_need_restore(void **state)
{
	static const char *const options[][2] = {
	    {"--mem-file", "m"},
	    {"--uffd-sock", "u"},
	    {"--resume", NULL},
	    {"--clock-realtime", NULL},
	    {"--track-dirty-pages", NULL},
	    {"--net-override", "id=eth0,tap=tap1"},
	};
	struct parse_result r;
	(void)state;

	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (options[i][1])
			r = PARSE("--kernel", "k", options[i][0], options[i][1]);
		else
			r = PARSE("--kernel", "k", options[i][0]);
		assert_rejected(&r, options[i][0], "needs --restore STATE");
	}
}

static void test_net_overrides_are_checked(void **state)
{
	struct parse_result r;
	(void)state;

#define RESTORE "--restore", "s", "--mem-file", "m", "--resume"
	r = PARSE(RESTORE, "--net-override", "id=eth0");
	assert_rejected(&r, "--net-override needs both id= and tap=", NULL);
	r = PARSE(RESTORE, "--net-override", "tap=tap0");
	assert_rejected(&r, "--net-override needs both id= and tap=", NULL);
	r = PARSE(RESTORE, "--net-override", "id=eth0,tap=tap0,mac=02:00:00:00:00:01");
	assert_rejected(&r, "--net-override: unknown key 'mac' (id, tap)", NULL);
	r = PARSE(RESTORE, "--net-override", "eth0");
	assert_rejected(&r, "--net-override: 'eth0' is not key=value", NULL);
	r = PARSE(RESTORE, "--net-override", "id=eth0,tap=tap4567890123456");
	assert_rejected(&r, "--net-override tap='tap4567890123456': at most 15 characters", NULL);
	r = PARSE(RESTORE, "--net-override", "id=eth0,tap=tap1", "--net-override",
		  "id=eth0,tap=tap2");
	assert_rejected(&r, "--net-override id or tap 'eth0' is used twice", NULL);
	r = PARSE(RESTORE, "--net-override", "id=eth0,tap=tap1", "--net-override",
		  "id=eth1,tap=tap1");
	assert_rejected(&r, "--net-override id or tap 'tap1' is used twice", NULL);
	r = PARSE(RESTORE, "--net-override", "id=a,tap=t1", "--net-override", "id=b,tap=t2",
		  "--net-override", "id=c,tap=t3", "--net-override", "id=d,tap=t4");
	assert_int_equal(r.ret, CLI_RUN);
	assert_int_equal(r.config.restore.nr_net_overrides, CONFIG_MAX_NETS);
	r = PARSE(RESTORE, "--net-override", "id=a,tap=t1", "--net-override", "id=b,tap=t2",
		  "--net-override", "id=c,tap=t3", "--net-override", "id=d,tap=t4",
		  "--net-override", "id=e,tap=t5");
	assert_rejected(&r, "at most 4 --net-override options", NULL);
#undef RESTORE
}

static void test_help_describes_restore(void **state)
{
	static const char *const options[] = {"--restore STATE",
					      "--mem-file MEM",
					      "--uffd-sock PATH",
					      "--resume",
					      "--clock-realtime",
					      "--track-dirty-pages",
					      "--net-override id=ID,tap=TAPNAME"};
	(void)state;

	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (!strstr(cli_usage, options[i]))
			fail_msg("--help does not mention '%s'", options[i]);
}

/* ---- cli_parse_u64 ---- */

static void test_parse_u64_accepts_whole_numbers_in_range(void **state)
{
	uint64_t value = 0;
	(void)state;

	assert_int_equal(cli_parse_u64("0", 0, 10, &value), 0);
	assert_int_equal(value, 0);
	assert_int_equal(cli_parse_u64("10", 0, 10, &value), 0);
	assert_int_equal(value, 10);
	assert_int_equal(cli_parse_u64("007", 0, 10, &value), 0); /* decimal, not octal */
	assert_int_equal(value, 7);
	assert_int_equal(cli_parse_u64("18446744073709551615", 0, UINT64_MAX, &value), 0);
	assert_true(value == UINT64_MAX);
}

static void test_parse_u64_rejects_out_of_range(void **state)
{
	uint64_t value = 42;
	(void)state;

	assert_int_equal(cli_parse_u64("4", 5, 10, &value), -EINVAL);
	assert_int_equal(cli_parse_u64("11", 5, 10, &value), -EINVAL);
	assert_int_equal(cli_parse_u64("18446744073709551616", 0, UINT64_MAX, &value), -EINVAL);
	assert_int_equal(cli_parse_u64("99999999999999999999999", 0, UINT64_MAX, &value), -EINVAL);
	assert_int_equal(value, 42); /* untouched on error */
}

static void test_parse_u64_rejects_anything_but_plain_digits(void **state)
{
	static const char *const bad[] = {"",	 " 5",	"5 ",	"+5",  "-5",  "-0",	 "0x10",
					  "5.0", "1e3", "five", "\t5", "5\n", "\xd9\xa5"};
	uint64_t value = 42;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cli_parse_u64(bad[i], 0, UINT64_MAX, &value), -EINVAL);
	assert_int_equal(cli_parse_u64(NULL, 0, UINT64_MAX, &value), -EINVAL);
	assert_int_equal(value, 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults_with_only_kernel),
	    cmocka_unit_test(test_default_cmdline_keeps_reboot_k_and_serial_console),
	    cmocka_unit_test(test_every_option_is_taken),
	    cmocka_unit_test(test_options_accept_equals_form_and_any_order),
	    cmocka_unit_test(test_option_value_may_start_with_a_dash),
	    cmocka_unit_test(test_later_option_overrides_earlier),
	    cmocka_unit_test(test_unambiguous_option_prefix_is_accepted),
	    cmocka_unit_test(test_vcpus_and_mem_limits_are_inclusive),
	    cmocka_unit_test(test_every_log_level_name_is_accepted),
	    cmocka_unit_test(test_help_and_version_need_no_kernel),
	    cmocka_unit_test(test_end_of_options_marker_is_accepted),
	    cmocka_unit_test(test_parse_can_run_repeatedly),
	    cmocka_unit_test(test_bad_vcpus_values_are_rejected_naming_the_option),
	    cmocka_unit_test(test_bad_mem_mib_values_are_rejected_naming_the_option),
	    cmocka_unit_test(test_bad_log_level_is_rejected_naming_the_option),
	    cmocka_unit_test(test_unknown_long_option_is_rejected_naming_it),
	    cmocka_unit_test(test_unknown_short_option_is_rejected_naming_it),
	    cmocka_unit_test(test_unknown_short_option_in_a_bundle_is_rejected_naming_it),
	    cmocka_unit_test(test_ambiguous_prefix_is_rejected),
	    cmocka_unit_test(test_missing_value_is_rejected_naming_the_option),
	    cmocka_unit_test(test_stray_positional_argument_is_rejected_naming_it),
	    cmocka_unit_test(test_missing_kernel_is_rejected),
	    cmocka_unit_test(test_error_message_is_truncated_to_the_buffer),
	    cmocka_unit_test(test_restore_with_a_memory_file),
	    cmocka_unit_test(test_restore_takes_every_restore_option),
	    cmocka_unit_test(test_restore_refuses_boot_options_naming_them),
	    cmocka_unit_test(test_no_acpi_is_a_boot_option),
	    cmocka_unit_test(test_restore_needs_exactly_one_memory_source),
	    cmocka_unit_test(test_restore_without_resume_needs_the_api),
	    cmocka_unit_test(test_restore_options_need_restore),
	    cmocka_unit_test(test_net_overrides_are_checked),
	    cmocka_unit_test(test_help_describes_restore),
	    cmocka_unit_test(test_seccomp_options),
	    cmocka_unit_test(test_parse_u64_accepts_whole_numbers_in_range),
	    cmocka_unit_test(test_parse_u64_rejects_out_of_range),
	    cmocka_unit_test(test_parse_u64_rejects_anything_but_plain_digits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
