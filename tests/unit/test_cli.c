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
	va_start(ap, first);
	for (const char *arg = first; arg; arg = va_arg(ap, const char *)) {
		assert_true(argc <= MAX_ARGS);
		argv[argc++] = (char *)arg;
	}
	va_end(ap);
	argv[argc] = NULL;

	memset(&result, 0, sizeof(result));
	memset(&result.config, 0xa5, sizeof(result.config));
	strcpy(result.err, "(untouched)");
	result.ret = cli_parse(argc, argv, &result.config, result.err, sizeof(result.err));
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
	assert_string_equal(r.err, "(untouched)");
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
	struct parse_result r = PARSE("--ker", "k", "--mem", "64");
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
	    cmocka_unit_test(test_parse_u64_accepts_whole_numbers_in_range),
	    cmocka_unit_test(test_parse_u64_rejects_out_of_range),
	    cmocka_unit_test(test_parse_u64_rejects_anything_but_plain_digits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
