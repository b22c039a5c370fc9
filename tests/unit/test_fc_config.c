/*
 * Unit tests for Firecracker's JSON bodies <-> wisp's configuration (api/fc_config.h).
 * Bodies are written with single quotes for readability ({'a': 1}); the helpers turn
 * them into double quotes before parsing, so no body here contains an apostrophe.
 *
 * Every rejection is checked three ways: -EINVAL, a one-line message that names the field
 * or value, and nothing changed (the configuration, the patch, the action or state).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../api/api.h"
#include "../../api/fc_config.h"

enum endpoint {
	BOOT_SOURCE,
	MACHINE_PUT,
	MACHINE_PATCH,
	DRIVE_PUT,
	DRIVE_PATCH,
	NET_PUT,
	NET_PATCH,
	LOGGER,
	METRICS,
	SERIAL,
	ACTION,
	VM,
};

/* Everything a call may write, so that one memcmp proves a rejection wrote nothing. */
static struct world {
	struct vmm_config config;
	struct fc_drive_patch drive_patch;
	struct fc_net_patch net_patch;
	enum fc_action action;
	enum fc_vm_state vm_state;
} w, before;

static char err[FC_ERROR_MAX];

static int setup(void **state)
{
	(void)state;
	memset(&w, 0, sizeof(w));
	config_set_defaults(&w.config);
	memset(&w.drive_patch, 0xa5, sizeof(w.drive_patch));
	memset(&w.net_patch, 0xa5, sizeof(w.net_patch));
	w.action = (enum fc_action)77;
	w.vm_state = (enum fc_vm_state)77;
	strcpy(err, "(untouched)");
	return 0;
}

/* Parses a single-quoted JSON text (any JSON value). */
static json_t *J(const char *text)
{
	char *copy = strdup(text);
	json_error_t error;
	json_t *value;

	assert_non_null(copy);
	for (char *c = copy; *c; c++)
		if (*c == '\'')
			*c = '"';
	value = json_loads(copy, JSON_DECODE_ANY, &error);
	if (!value)
		fail_msg("test JSON does not parse: %s: %s", error.text, copy);
	free(copy);
	return value;
}

static int call(enum endpoint endpoint, const char *id, const json_t *body)
{
	struct vmm_config *c = &w.config;

	switch (endpoint) {
	case BOOT_SOURCE:
		return fc_boot_source_put(body, c, err, sizeof(err));
	case MACHINE_PUT:
		return fc_machine_config_put(body, c, err, sizeof(err));
	case MACHINE_PATCH:
		return fc_machine_config_patch(body, c, err, sizeof(err));
	case DRIVE_PUT:
		return fc_drive_put(body, id, c, err, sizeof(err));
	case DRIVE_PATCH:
		return fc_drive_patch(body, id, &w.drive_patch, err, sizeof(err));
	case NET_PUT:
		return fc_net_put(body, id, c, err, sizeof(err));
	case NET_PATCH:
		return fc_net_patch(body, id, &w.net_patch, err, sizeof(err));
	case LOGGER:
		return fc_logger_put(body, &c->logger, err, sizeof(err));
	case METRICS:
		return fc_metrics_put(body, c->metrics_path, sizeof(c->metrics_path), err,
				      sizeof(err));
	case SERIAL:
		return fc_serial_put(body, c->serial_out_path, sizeof(c->serial_out_path), err,
				     sizeof(err));
	case ACTION:
		return fc_action_parse(body, &w.action, err, sizeof(err));
	case VM:
		return fc_vm_patch(body, &w.vm_state, err, sizeof(err));
	}
	return -1;
}

static void ok_json(enum endpoint endpoint, const char *id, json_t *body)
{
	int ret = call(endpoint, id, body);

	json_decref(body);
	if (ret)
		fail_msg("expected success, got %d: %s", ret, err);
}

static void ok(enum endpoint endpoint, const char *id, const char *text)
{
	ok_json(endpoint, id, J(text));
}

static void assert_contains(const char *message, const char *fragment)
{
	if (fragment && !strstr(message, fragment))
		fail_msg("message \"%s\" does not contain \"%s\"", message, fragment);
}

static void rejected_json(enum endpoint endpoint, const char *id, json_t *body,
			  const char *fragment1, const char *fragment2)
{
	int ret;

	memcpy(&before, &w, sizeof(w));
	strcpy(err, "(untouched)");
	ret = call(endpoint, id, body);
	json_decref(body);
	if (ret != -EINVAL)
		fail_msg("expected -EINVAL, got %d (%s)", ret, err);
	assert_contains(err, fragment1);
	assert_contains(err, fragment2);
	assert_null(strchr(err, '\n'));
	assert_memory_equal(&before, &w, sizeof(w));
}

static void rejected(enum endpoint endpoint, const char *id, const char *text,
		     const char *fragment1, const char *fragment2)
{
	rejected_json(endpoint, id, J(text), fragment1, fragment2);
}

/* A string of n copies of c. */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static const struct drive_config *drive(const char *id)
{
	for (unsigned int i = 0; i < w.config.nr_drives; i++)
		if (!strcmp(w.config.drives[i].id, id))
			return &w.config.drives[i];
	fail_msg("no drive '%s'", id);
	return NULL;
}

#define DRIVE(id, extra)                                                                           \
	"{'drive_id': '" id "', 'path_on_host': '/img/" id "', 'is_root_device': false" extra "}"
#define ROOT(id)	    "{'drive_id': '" id "', 'path_on_host': '/img/" id "', 'is_root_device': true}"
#define NET(id, tap, extra) "{'iface_id': '" id "', 'host_dev_name': '" tap "'" extra "}"

/* ---- PUT /boot-source ---- */

static void test_boot_source_sets_kernel_initrd_and_args(void **state)
{
	(void)state;
	ok(BOOT_SOURCE, NULL,
	   "{'kernel_image_path': '/k', 'initrd_path': '/i', 'boot_args': 'console=ttyS0 quiet'}");
	assert_string_equal(w.config.kernel_path, "/k");
	assert_string_equal(w.config.initrd_path, "/i");
	assert_string_equal(w.config.cmdline, "console=ttyS0 quiet");
}

static void test_boot_source_put_replaces_the_whole_boot_source(void **state)
{
	(void)state;
	ok(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'initrd_path': '/i', 'boot_args': 'x'}");
	/* Firecracker boots with its default command line when boot_args is left out. */
	ok(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k2'}");
	assert_string_equal(w.config.kernel_path, "/k2");
	assert_string_equal(w.config.initrd_path, "");
	assert_string_equal(w.config.cmdline, CONFIG_DEFAULT_CMDLINE);
}

static void test_boot_source_null_optionals_and_empty_args(void **state)
{
	(void)state;
	ok(BOOT_SOURCE, NULL,
	   "{'kernel_image_path': '/k', 'initrd_path': null, 'boot_args': null}");
	assert_string_equal(w.config.initrd_path, "");
	assert_string_equal(w.config.cmdline, CONFIG_DEFAULT_CMDLINE);
	ok(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'boot_args': ''}");
	assert_string_equal(w.config.cmdline, "");
}

static void test_boot_source_rejects_a_body_that_is_not_an_object(void **state)
{
	(void)state;
	rejected(BOOT_SOURCE, NULL, "['/k']", "boot-source body must be a JSON object", NULL);
	rejected(BOOT_SOURCE, NULL, "'/k'", "must be a JSON object", NULL);
	rejected(BOOT_SOURCE, NULL, "null", "must be a JSON object", NULL);
	rejected(BOOT_SOURCE, NULL, "7", "must be a JSON object", NULL);
}

static void test_boot_source_rejects_unknown_field_naming_it(void **state)
{
	(void)state;
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'kernel_path': '/k'}",
		 "unknown field 'kernel_path' in the boot-source body", "kernel_image_path");
}

static void test_boot_source_rejects_missing_kernel(void **state)
{
	(void)state;
	rejected(BOOT_SOURCE, NULL, "{'boot_args': 'x'}",
		 "missing required field 'kernel_image_path'", NULL);
	rejected(BOOT_SOURCE, NULL, "{}", "kernel_image_path", NULL);
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': null}",
		 "kernel_image_path: must be a string", NULL);
}

static void test_boot_source_rejects_wrong_types_naming_the_field(void **state)
{
	(void)state;
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': 5}",
		 "kernel_image_path: must be a string", NULL);
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'initrd_path': {}}",
		 "initrd_path: must be a string or null", NULL);
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'boot_args': true}",
		 "boot_args: must be a string", NULL);
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': ['/k']}", "kernel_image_path", NULL);
}

static void test_boot_source_rejects_strings_too_long_naming_the_limit(void **state)
{
	char *long_path = repeat('p', CONFIG_PATH_MAX);
	char *long_args = repeat('a', CONFIG_CMDLINE_MAX);
	(void)state;

	rejected_json(BOOT_SOURCE, NULL, json_pack("{s:s}", "kernel_image_path", long_path),
		      "kernel_image_path", "limit of 4095");
	rejected_json(BOOT_SOURCE, NULL,
		      json_pack("{s:s, s:s}", "kernel_image_path", "/k", "initrd_path", long_path),
		      "initrd_path", "limit of 4095");
	rejected_json(BOOT_SOURCE, NULL,
		      json_pack("{s:s, s:s}", "kernel_image_path", "/k", "boot_args", long_args),
		      "boot_args", "limit of 2047");
	long_path[CONFIG_PATH_MAX - 1] = '\0';
	long_args[CONFIG_CMDLINE_MAX - 1] = '\0';
	ok_json(BOOT_SOURCE, NULL,
		json_pack("{s:s, s:s}", "kernel_image_path", long_path, "boot_args", long_args));
	assert_int_equal(strlen(w.config.kernel_path), CONFIG_PATH_MAX - 1);
	assert_int_equal(strlen(w.config.cmdline), CONFIG_CMDLINE_MAX - 1);
	free(long_path);
	free(long_args);
}

static void test_boot_source_rejects_empty_paths(void **state)
{
	(void)state;
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': ''}",
		 "kernel_image_path: must not be empty", NULL);
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'initrd_path': ''}",
		 "initrd_path: must not be empty", NULL);
}

static void test_boot_source_rejects_boot_args_the_kernel_cannot_take(void **state)
{
	(void)state;
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'boot_args': 'a\\tb'}",
		 "boot_args", "printable ASCII");
	rejected(BOOT_SOURCE, NULL, "{'kernel_image_path': '/k', 'boot_args': 'caf\\u00e9'}",
		 "boot_args", "printable ASCII");
}

static void test_strings_with_a_nul_are_rejected(void **state)
{
	json_t *body = json_object();
	(void)state;

	/* jansson parses "\\u0000" only with JSON_ALLOW_NUL, which a caller may set */
	json_object_set_new(body, "kernel_image_path", json_stringn("/k\0/other", 9));
	rejected_json(BOOT_SOURCE, NULL, body, "kernel_image_path: must not contain a NUL", NULL);
}

/* ---- PUT and PATCH /machine-config ---- */

static void test_machine_config_put_sets_every_field(void **state)
{
	(void)state;
	ok(MACHINE_PUT, NULL,
	   "{'vcpu_count': 4, 'mem_size_mib': 2048, 'smt': false, 'track_dirty_pages': true, "
	   "'cpu_template': 'None', 'huge_pages': 'None'}");
	assert_int_equal(w.config.vcpus, 4);
	assert_int_equal(w.config.mem_mib, 2048);
	assert_false(w.config.smt);
	assert_true(w.config.track_dirty_pages);
}

static void test_machine_config_put_resets_what_it_leaves_out(void **state)
{
	(void)state;
	ok(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'track_dirty_pages': true}");
	ok(MACHINE_PUT, NULL, "{'vcpu_count': 3, 'mem_size_mib': 512, 'cpu_template': null}");
	assert_int_equal(w.config.vcpus, 3);
	assert_int_equal(w.config.mem_mib, 512);
	assert_false(w.config.track_dirty_pages);
}

static void test_machine_config_range_limits_are_inclusive(void **state)
{
	(void)state;
	ok(MACHINE_PUT, NULL, "{'vcpu_count': 1, 'mem_size_mib': 1}");
	assert_int_equal(w.config.vcpus, 1);
	assert_int_equal(w.config.mem_mib, 1);
	ok_json(MACHINE_PUT, NULL,
		json_pack("{s:i, s:I}", "vcpu_count", CONFIG_MAX_VCPUS, "mem_size_mib",
			  (json_int_t)CONFIG_MAX_MEM_MIB));
	assert_int_equal(w.config.vcpus, CONFIG_MAX_VCPUS);
	assert_int_equal(w.config.mem_mib, CONFIG_MAX_MEM_MIB);
}

static void test_machine_config_put_rejects_missing_required(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'mem_size_mib': 256}", "missing required field 'vcpu_count'",
		 "machine-config body");
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2}", "missing required field 'mem_size_mib'",
		 NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': null, 'mem_size_mib': 256}",
		 "vcpu_count: must be a non-negative integer", NULL);
}

static void test_machine_config_rejects_wrong_integer_types(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': '2', 'mem_size_mib': 256}",
		 "vcpu_count: must be a non-negative integer", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2.0, 'mem_size_mib': 256}",
		 "vcpu_count: must be a non-negative integer", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': -1, 'mem_size_mib': 256}",
		 "vcpu_count: must be a non-negative integer", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': true, 'mem_size_mib': 256}",
		 "vcpu_count: must be a non-negative integer", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256.5}",
		 "mem_size_mib: must be a non-negative integer", NULL);
}

static void test_machine_config_rejects_wrong_bool_and_string_types(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'smt': 'no'}",
		 "smt: must be a boolean", NULL);
	rejected(MACHINE_PUT, NULL,
		 "{'vcpu_count': 2, 'mem_size_mib': 256, 'track_dirty_pages': 0}",
		 "track_dirty_pages: must be a boolean", NULL);
	/* serde's default fields are not Option: null is a type error there */
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'huge_pages': null}",
		 "huge_pages: must be a string", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'cpu_template': 1}",
		 "cpu_template: must be a string or null", NULL);
}

static void test_machine_config_rejects_out_of_range_values(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 0, 'mem_size_mib': 256}", "vcpu_count: 0",
		 "1 to 32");
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 33, 'mem_size_mib': 256}", "vcpu_count: 33",
		 "1 to 32");
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 4294967297, 'mem_size_mib': 256}",
		 "vcpu_count: 4294967297", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 0}", "mem_size_mib: 0",
		 "1 to 1048576");
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 1048577}",
		 "mem_size_mib: 1048577", NULL);
}

static void test_machine_config_rejects_cpu_templates(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'cpu_template': 'T2'}",
		 "cpu_template 'T2': CPU templates are not supported", NULL);
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'cpu_template': 'C3'}",
		 "cpu_template 'C3'", "not supported");
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'cpu_template': 'T9'}",
		 "cpu_template 'T9': must be one of None, C3, T2", NULL);
	/* Firecracker's enum values are case-sensitive */
	rejected(MACHINE_PUT, NULL,
		 "{'vcpu_count': 2, 'mem_size_mib': 256, 'cpu_template': 'none'}",
		 "cpu_template 'none'", "must be one of");
}

static void test_machine_config_rejects_huge_pages(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'huge_pages': '2M'}",
		 "huge_pages '2M'", "not supported");
	rejected(MACHINE_PUT, NULL,
		 "{'vcpu_count': 2, 'mem_size_mib': 256, 'huge_pages': 'Transparent'}",
		 "huge_pages 'Transparent'", "not supported");
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'huge_pages': '1G'}",
		 "huge_pages '1G': must be one of None, Transparent, 2M", NULL);
}

static void test_machine_config_rejects_smt(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'smt': true}",
		 "smt: true is not supported", "one thread per core");
	rejected(MACHINE_PATCH, NULL, "{'smt': true}", "smt: true is not supported", NULL);
}

static void test_machine_config_put_rejects_unknown_field(void **state)
{
	(void)state;
	rejected(MACHINE_PUT, NULL,
		 "{'vcpu_count': 2, 'mem_size_mib': 256, 'gdb_socket_path': '/s'}",
		 "unknown field 'gdb_socket_path' in the machine-config body", "vcpu_count");
}

static void test_machine_config_patch_changes_only_what_it_gives(void **state)
{
	(void)state;
	ok(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 256, 'track_dirty_pages': true}");
	ok(MACHINE_PATCH, NULL, "{'mem_size_mib': 1024}");
	assert_int_equal(w.config.vcpus, 2);
	assert_int_equal(w.config.mem_mib, 1024);
	assert_true(w.config.track_dirty_pages);
	ok(MACHINE_PATCH, NULL, "{'vcpu_count': 8, 'mem_size_mib': null, 'huge_pages': 'None'}");
	assert_int_equal(w.config.vcpus, 8);
	assert_int_equal(w.config.mem_mib, 1024);
	ok(MACHINE_PATCH, NULL, "{'track_dirty_pages': false}");
	assert_false(w.config.track_dirty_pages);
}

static void test_machine_config_patch_rejects_an_empty_patch(void **state)
{
	(void)state;
	rejected(MACHINE_PATCH, NULL, "{}", "Empty PATCH request", "vcpu_count");
	rejected(MACHINE_PATCH, NULL, "{'vcpu_count': null, 'smt': null}", "Empty PATCH request",
		 NULL);
}

static void test_machine_config_patch_checks_like_put(void **state)
{
	(void)state;
	rejected(MACHINE_PATCH, NULL, "{'vcpu_count': 0}", "vcpu_count: 0", NULL);
	rejected(MACHINE_PATCH, NULL, "{'mem_size_mib': -5}", "mem_size_mib: must be", NULL);
	rejected(MACHINE_PATCH, NULL, "{'cpu_template': 'T2S'}", "cpu_template 'T2S'", NULL);
	rejected(MACHINE_PATCH, NULL, "{'vcpus': 2}", "unknown field 'vcpus'", NULL);
	rejected(MACHINE_PATCH, NULL, "[]", "must be a JSON object", NULL);
}

/* ---- PUT /drives/{drive_id} ---- */

static void test_drive_put_adds_a_drive_with_firecracker_defaults(void **state)
{
	const struct drive_config *d;
	(void)state;

	ok(DRIVE_PUT, "rootfs",
	   "{'drive_id': 'rootfs', 'path_on_host': '/img/root.ext4', "
	   "'is_root_device': true}");
	assert_int_equal(w.config.nr_drives, 1);
	d = drive("rootfs");
	assert_string_equal(d->path, "/img/root.ext4");
	assert_true(d->root);
	assert_false(d->read_only);
	assert_false(d->direct);
	assert_int_equal(d->engine, IO_ENGINE_SYNC);
	assert_int_equal(d->cache, CACHE_UNSAFE); /* Firecracker's default cache_type */
	assert_string_equal(d->partuuid, "");
	assert_false(token_bucket_config_enabled(&d->rate_limiter.bandwidth));
	assert_false(token_bucket_config_enabled(&d->rate_limiter.ops));
}

static void test_drive_put_takes_every_field(void **state)
{
	const struct drive_config *d;
	(void)state;

	ok(DRIVE_PUT, "data_1",
	   "{'drive_id': 'data_1', 'partuuid': '0eaa91a0-01', 'is_root_device': true, "
	   "'cache_type': 'Writeback', 'is_read_only': true, 'path_on_host': '/img/data', "
	   "'rate_limiter': {'bandwidth': {'size': 1000, 'one_time_burst': 5, 'refill_time': 100}, "
	   "'ops': {'size': 10, 'refill_time': 1000}}, 'io_engine': 'Async', 'socket': null}");
	d = drive("data_1");
	assert_string_equal(d->partuuid, "0eaa91a0-01");
	assert_true(d->read_only);
	assert_int_equal(d->engine, IO_ENGINE_ASYNC);
	assert_int_equal(d->rate_limiter.bandwidth.size, 1000);
	assert_int_equal(d->rate_limiter.bandwidth.one_time_burst, 5);
	assert_int_equal(d->rate_limiter.bandwidth.refill_time_ms, 100);
	assert_int_equal(d->rate_limiter.ops.size, 10);
	assert_int_equal(d->rate_limiter.ops.one_time_burst, 0);
	assert_int_equal(d->rate_limiter.ops.refill_time_ms, 1000);
}

static void test_drive_put_accepts_null_for_optional_fields(void **state)
{
	const struct drive_config *d;
	(void)state;

	ok(DRIVE_PUT, "d",
	   "{'drive_id': 'd', 'path_on_host': '/d', 'is_root_device': false, 'partuuid': null, "
	   "'is_read_only': null, 'rate_limiter': {'bandwidth': null, 'ops': {'size': 1, "
	   "'one_time_burst': null, 'refill_time': 1}}, 'io_engine': null, 'socket': null, "
	   "'cache_type': 'Unsafe'}");
	d = drive("d");
	assert_false(d->read_only);
	assert_int_equal(d->engine, IO_ENGINE_SYNC);
	assert_int_equal(d->rate_limiter.bandwidth.size, 0);
	assert_int_equal(d->rate_limiter.ops.size, 1);
}

static void test_drive_put_replaces_the_drive_with_the_same_id(void **state)
{
	(void)state;
	ok(DRIVE_PUT, "a", DRIVE("a", ", 'is_read_only': true"));
	ok(DRIVE_PUT, "b", DRIVE("b", ""));
	ok(DRIVE_PUT, "a", "{'drive_id': 'a', 'path_on_host': '/new', 'is_root_device': false}");
	assert_int_equal(w.config.nr_drives, 2);
	assert_string_equal(w.config.drives[0].id, "a");
	assert_string_equal(w.config.drives[0].path, "/new");
	assert_false(w.config.drives[0].read_only);
	assert_string_equal(w.config.drives[1].id, "b");
}

static void test_drive_put_rejects_an_id_mismatch_naming_both(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, "rootfs", DRIVE("data", ""),
		 "The id from the path [rootfs] does not match the id from the body [data]!", NULL);
}

static void test_drive_put_rejects_a_bad_id_in_the_path(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, "", DRIVE("a", ""), "The ID cannot be empty", NULL);
	rejected(DRIVE_PUT, "a-b", DRIVE("a", ""), "'a-b'",
		 "API Resource IDs can only contain alphanumeric characters and underscores");
}

static void test_drive_put_rejects_a_bad_id_in_the_body(void **state)
{
	char *long_id = repeat('x', CONFIG_ID_MAX);
	(void)state;

	rejected(DRIVE_PUT, NULL, DRIVE("a.b", ""), "drive_id 'a.b'", "alphanumeric");
	rejected(DRIVE_PUT, NULL, DRIVE("", ""), "drive_id: The ID cannot be empty", NULL);
	rejected_json(DRIVE_PUT, long_id,
		      json_pack("{s:s, s:s, s:b}", "drive_id", long_id, "path_on_host", "/p",
				"is_root_device", 0),
		      "drive_id", "limit of 63");
	long_id[CONFIG_ID_MAX - 1] = '\0';
	ok_json(DRIVE_PUT, long_id,
		json_pack("{s:s, s:s, s:b}", "drive_id", long_id, "path_on_host", "/p",
			  "is_root_device", 0));
	free(long_id);
}

static void test_drive_put_rejects_more_than_the_maximum(void **state)
{
	char id[16];
	(void)state;

	for (int i = 0; i < CONFIG_MAX_DRIVES; i++) {
		snprintf(id, sizeof(id), "d%d", i);
		ok_json(DRIVE_PUT, id,
			json_pack("{s:s, s:s, s:b}", "drive_id", id, "path_on_host", "/p",
				  "is_root_device", 0));
	}
	rejected(DRIVE_PUT, "extra", DRIVE("extra", ""), "drive_id 'extra'", "at most 8");
	/* replacing one is still fine when full */
	ok(DRIVE_PUT, "d3", DRIVE("d3", ""));
	assert_int_equal(w.config.nr_drives, CONFIG_MAX_DRIVES);
}

static void test_drive_put_allows_only_one_root(void **state)
{
	(void)state;
	ok(DRIVE_PUT, "root1", ROOT("root1"));
	ok(DRIVE_PUT, "data", DRIVE("data", ""));
	rejected(DRIVE_PUT, "root2", ROOT("root2"), "A root block device already exists!",
		 "'root1'");
	/* turning another drive into a second root is the same mistake */
	rejected(DRIVE_PUT, "data", ROOT("data"), "A root block device already exists!", NULL);
	/* the root itself may be replaced, as root or not */
	ok(DRIVE_PUT, "root1", ROOT("root1"));
	ok(DRIVE_PUT, "root1", DRIVE("root1", ""));
	ok(DRIVE_PUT, "data", ROOT("data"));
	assert_true(drive("data")->root);
	assert_false(drive("root1")->root);
}

static void test_drive_put_rejects_missing_required_fields(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, NULL, "{'path_on_host': '/p', 'is_root_device': false}",
		 "missing required field 'drive_id' in the drive body", NULL);
	rejected(DRIVE_PUT, "a", "{'drive_id': 'a', 'path_on_host': '/p'}",
		 "missing required field 'is_root_device'", NULL);
	rejected(DRIVE_PUT, "a", "{'drive_id': 'a', 'is_root_device': false}",
		 "missing required field 'path_on_host'", "vhost-user");
	rejected(DRIVE_PUT, "a", "{'drive_id': 'a', 'is_root_device': false, 'path_on_host': null}",
		 "path_on_host", NULL);
}

static void test_drive_put_rejects_vhost_user_sockets(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, "a",
		 "{'drive_id': 'a', 'is_root_device': false, 'socket': '/vhost.sock'}",
		 "socket '/vhost.sock': vhost-user drives are not supported", NULL);
}

static void test_drive_put_checks_cache_type_and_io_engine(void **state)
{
	(void)state;
	ok(DRIVE_PUT, "a", DRIVE("a", ", 'cache_type': 'Unsafe', 'io_engine': 'Sync'"));
	ok(DRIVE_PUT, "b", DRIVE("b", ", 'cache_type': 'Writeback', 'io_engine': 'Async'"));
	assert_int_equal(drive("a")->cache, CACHE_UNSAFE);
	assert_int_equal(drive("b")->cache, CACHE_WRITEBACK);
	rejected(DRIVE_PUT, "c", DRIVE("c", ", 'cache_type': 'None'"),
		 "cache_type 'None': must be one of Unsafe, Writeback", NULL);
	rejected(DRIVE_PUT, "c", DRIVE("c", ", 'cache_type': null"), "cache_type: must be a string",
		 NULL);
	rejected(DRIVE_PUT, "c", DRIVE("c", ", 'io_engine': 'async'"),
		 "io_engine 'async': must be one of Sync, Async", NULL);
	rejected(DRIVE_PUT, "c", DRIVE("c", ", 'io_engine': 1"), "io_engine: must be a string",
		 NULL);
}

static void test_drive_put_rejects_wrong_types_naming_the_field(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'is_read_only': 'no'"),
		 "is_read_only: must be a boolean", NULL);
	rejected(DRIVE_PUT, "a", "{'drive_id': 'a', 'path_on_host': '/p', 'is_root_device': 1}",
		 "is_root_device: must be a boolean", NULL);
	rejected(DRIVE_PUT, "a", "{'drive_id': 'a', 'path_on_host': 5, 'is_root_device': false}",
		 "path_on_host: must be a string", NULL);
	rejected(DRIVE_PUT, "a", "{'drive_id': 7, 'path_on_host': '/p', 'is_root_device': false}",
		 "drive_id: must be a string", NULL);
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'partuuid': true"), "partuuid: must be a string",
		 NULL);
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'rate_limiter': []"),
		 "rate_limiter: must be an object", NULL);
}

static void test_drive_put_checks_rate_limiter_fields_by_key_path(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'rate_limiter': {'bandwith': {}}"),
		 "rate_limiter: unknown field 'bandwith' in the rate limiter", "bandwidth, ops");
	rejected(DRIVE_PUT, "a",
		 DRIVE("a", ", 'rate_limiter': {'ops': {'size': 1, 'refill_time': 1, 'burst': 2}}"),
		 "rate_limiter.ops: unknown field 'burst' in the token bucket", NULL);
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'rate_limiter': {'bandwidth': {'refill_time': 1}}"),
		 "rate_limiter.bandwidth: missing required field 'size'", NULL);
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'rate_limiter': {'bandwidth': {'size': 1}}"),
		 "rate_limiter.bandwidth: missing required field 'refill_time'", NULL);
	rejected(DRIVE_PUT, "a",
		 DRIVE("a", ", 'rate_limiter': {'bandwidth': {'size': 1, 'refill_time': -1}}"),
		 "rate_limiter.bandwidth.refill_time: must be a non-negative integer", NULL);
	rejected(DRIVE_PUT, "a",
		 DRIVE("a", ", 'rate_limiter': {'ops': {'size': 1.5, 'refill_time': 1}}"),
		 "rate_limiter.ops.size: must be a non-negative integer", NULL);
	rejected(DRIVE_PUT, "a",
		 DRIVE("a", ", 'rate_limiter': {'ops': {'size': 1, 'refill_time': 1, "
			    "'one_time_burst': '5'}}"),
		 "rate_limiter.ops.one_time_burst: must be a non-negative integer or null", NULL);
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'rate_limiter': {'ops': 5}"),
		 "rate_limiter.ops: must be an object or null", NULL);
}

static void test_drive_put_rejects_unknown_field_listing_the_accepted_ones(void **state)
{
	(void)state;
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'foo': 1"), "unknown field 'foo' in the drive body",
		 "drive_id, partuuid, is_root_device, cache_type, is_read_only, path_on_host, "
		 "rate_limiter, io_engine, socket");
	/* wisp's own --drive option is not part of Firecracker's body */
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'direct': true"), "unknown field 'direct'", NULL);
}

static void test_drive_put_rejects_bad_strings(void **state)
{
	char *long_path = repeat('p', CONFIG_PATH_MAX);
	char *long_uuid = repeat('u', CONFIG_ID_MAX);
	(void)state;

	rejected(DRIVE_PUT, "a", "{'drive_id': 'a', 'path_on_host': '', 'is_root_device': false}",
		 "path_on_host: must not be empty", NULL);
	rejected_json(DRIVE_PUT, "a",
		      json_pack("{s:s, s:s, s:b}", "drive_id", "a", "path_on_host", long_path,
				"is_root_device", 0),
		      "path_on_host", "limit of 4095");
	rejected_json(DRIVE_PUT, "a",
		      json_pack("{s:s, s:s, s:b, s:s}", "drive_id", "a", "path_on_host", "/p",
				"is_root_device", 1, "partuuid", long_uuid),
		      "partuuid", "limit of 63");
	rejected(DRIVE_PUT, "a", DRIVE("a", ", 'partuuid': ''"), "partuuid: must not be empty",
		 NULL);
	free(long_path);
	free(long_uuid);
}

/* ---- PATCH /drives/{drive_id} ---- */

static void test_drive_patch_describes_path_and_the_buckets_given(void **state)
{
	(void)state;
	ok(DRIVE_PATCH, "rootfs",
	   "{'drive_id': 'rootfs', 'path_on_host': '/new.img', "
	   "'rate_limiter': {'bandwidth': {'size': 100, 'refill_time': 10}}}");
	assert_string_equal(w.drive_patch.id, "rootfs");
	assert_true(w.drive_patch.has_path);
	assert_string_equal(w.drive_patch.path, "/new.img");
	assert_true(w.drive_patch.rate_limiter.has_bandwidth);
	assert_int_equal(w.drive_patch.rate_limiter.bandwidth.size, 100);
	assert_int_equal(w.drive_patch.rate_limiter.bandwidth.refill_time_ms, 10);
	assert_false(w.drive_patch.rate_limiter.has_ops);
}

static void test_drive_patch_with_only_one_part(void **state)
{
	(void)state;
	ok(DRIVE_PATCH, "d", "{'drive_id': 'd', 'path_on_host': '/other'}");
	assert_true(w.drive_patch.has_path);
	assert_false(w.drive_patch.rate_limiter.has_bandwidth);
	assert_false(w.drive_patch.rate_limiter.has_ops);
	ok(DRIVE_PATCH, "d",
	   "{'drive_id': 'd', 'rate_limiter': {'ops': {'size': 0, 'refill_time': 0}}}");
	assert_false(w.drive_patch.has_path);
	assert_true(w.drive_patch.rate_limiter.has_ops);
	assert_false(token_bucket_config_enabled(&w.drive_patch.rate_limiter.ops));
	/* an empty rate limiter is a valid patch that changes nothing */
	ok(DRIVE_PATCH, "d", "{'drive_id': 'd', 'rate_limiter': {}, 'path_on_host': null}");
	assert_false(w.drive_patch.has_path);
	assert_false(w.drive_patch.rate_limiter.has_bandwidth);
}

static void test_drive_patch_rejects_a_patch_with_nothing_to_change(void **state)
{
	(void)state;
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'd'}", "drive_id 'd': nothing to change",
		 "path_on_host or rate_limiter");
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'd', 'rate_limiter': null}", "nothing to change",
		 NULL);
}

static void test_drive_patch_rejects_bad_bodies(void **state)
{
	(void)state;
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'e', 'path_on_host': '/p'}",
		 "The id from the path [d] does not match the id from the body [e]!", NULL);
	rejected(DRIVE_PATCH, "d", "{'path_on_host': '/p'}", "missing required field 'drive_id'",
		 NULL);
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'd', 'is_read_only': true}",
		 "unknown field 'is_read_only' in the drive body", "path_on_host");
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'd', 'path_on_host': ''}",
		 "path_on_host: must not be empty", NULL);
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'd', 'path_on_host': 3}",
		 "path_on_host: must be a string", NULL);
	rejected(DRIVE_PATCH, "d", "{'drive_id': 'd', 'rate_limiter': {'ops': {'size': 1}}}",
		 "rate_limiter.ops: missing required field 'refill_time'", NULL);
	rejected(DRIVE_PATCH, "d!", "{'drive_id': 'd', 'path_on_host': '/p'}", "'d!'",
		 "alphanumeric");
	rejected(DRIVE_PATCH, "d", "'x'", "must be a JSON object", NULL);
}

static void test_rate_limiter_patch_changes_only_the_buckets_given(void **state)
{
	struct rate_limiter_config limiter = {{1, 2, 3}, {4, 5, 6}};
	struct fc_rate_limiter_patch patch = {0};
	(void)state;

	fc_rate_limiter_patch_apply(&patch, &limiter);
	assert_int_equal(limiter.bandwidth.size, 1);
	assert_int_equal(limiter.ops.size, 4);
	patch.has_ops = true;
	patch.ops = (struct token_bucket_config){7, 8, 9};
	fc_rate_limiter_patch_apply(&patch, &limiter);
	assert_int_equal(limiter.bandwidth.size, 1);
	assert_int_equal(limiter.bandwidth.refill_time_ms, 3);
	assert_int_equal(limiter.ops.size, 7);
	assert_int_equal(limiter.ops.one_time_burst, 8);
	assert_int_equal(limiter.ops.refill_time_ms, 9);
}

/* ---- PUT /network-interfaces/{iface_id} ---- */

static void test_net_put_adds_an_interface(void **state)
{
	const struct net_config *n;
	(void)state;

	ok(NET_PUT, "eth0",
	   NET("eth0", "tap0",
	       ", 'guest_mac': 'AA:fc:00:00:00:0b', "
	       "'rx_rate_limiter': {'ops': {'size': 5, 'refill_time': 50}}, "
	       "'tx_rate_limiter': {'bandwidth': {'size': 6, 'refill_time': 60, "
	       "'one_time_burst': 7}}, 'mtu': null"));
	assert_int_equal(w.config.nr_nets, 1);
	n = &w.config.nets[0];
	assert_string_equal(n->id, "eth0");
	assert_string_equal(n->tap, "tap0");
	assert_true(n->has_mac);
	assert_memory_equal(n->mac, ((uint8_t[]){0xaa, 0xfc, 0, 0, 0, 0x0b}), 6);
	assert_int_equal(n->rx_rate_limiter.ops.size, 5);
	assert_int_equal(n->rx_rate_limiter.bandwidth.size, 0);
	assert_int_equal(n->tx_rate_limiter.bandwidth.one_time_burst, 7);
	ok(NET_PUT, "eth1", NET("eth1", "tap1", ", 'guest_mac': null"));
	assert_false(w.config.nets[1].has_mac);
}

static void test_net_put_replaces_in_place(void **state)
{
	(void)state;
	ok(NET_PUT, "eth0", NET("eth0", "tap0", ""));
	ok(NET_PUT, "eth1", NET("eth1", "tap1", ""));
	/* the same tap for the same interface is no conflict */
	ok(NET_PUT, "eth0", NET("eth0", "tap0", ", 'guest_mac': '02:00:00:00:00:01'"));
	ok(NET_PUT, "eth0", NET("eth0", "tap9", ""));
	assert_int_equal(w.config.nr_nets, 2);
	assert_string_equal(w.config.nets[0].id, "eth0");
	assert_string_equal(w.config.nets[0].tap, "tap9");
	assert_false(w.config.nets[0].has_mac);
	assert_string_equal(w.config.nets[1].id, "eth1");
}

static void test_net_put_rejects_id_problems(void **state)
{
	(void)state;
	rejected(NET_PUT, "eth0", NET("eth1", "tap0", ""),
		 "The id from the path [eth0] does not match the id from the body [eth1]!", NULL);
	rejected(NET_PUT, "", NET("eth0", "tap0", ""), "The ID cannot be empty", NULL);
	rejected(NET_PUT, "eth 0", NET("eth 0", "tap0", ""), "'eth 0'", "alphanumeric");
	rejected(NET_PUT, NULL, NET("eth-0", "tap0", ""), "iface_id 'eth-0'", "alphanumeric");
}

static void test_net_put_rejects_a_tap_used_by_another_interface(void **state)
{
	(void)state;
	ok(NET_PUT, "eth0", NET("eth0", "tap0", ""));
	rejected(NET_PUT, "eth1", NET("eth1", "tap0", ""),
		 "host_dev_name 'tap0': already used by network interface 'eth0'", NULL);
}

static void test_net_put_rejects_a_mac_used_by_another_interface(void **state)
{
	(void)state;
	ok(NET_PUT, "eth0", NET("eth0", "tap0", ", 'guest_mac': '06:00:00:00:00:01'"));
	rejected(NET_PUT, "eth1", NET("eth1", "tap1", ", 'guest_mac': '06:00:00:00:00:01'"),
		 "guest_mac '06:00:00:00:00:01': The MAC address is already in use", "'eth0'");
}

static void test_net_put_rejects_bad_macs_naming_them(void **state)
{
	static const char *const bad[] = {
	    "aa:bb:cc:dd:ee",	  "aa:bb:cc:dd:ee:fg",
	    "aabbccddeeff",	  "a:bb:cc:dd:ee:ff0",
	    "aa:bb:cc:dd:ee:ff:", "aa:bb:cc:dd:ee:ff:00",
	    "+a:bb:cc:dd:ee:ff",  "aa-bb-cc-dd-ee-ff",
	    "aa:bb:cc:dd:ee:f",	  "",
	};
	char body[128];
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char expected[64];

		snprintf(body, sizeof(body), NET("eth0", "tap0", ", 'guest_mac': '%s'"), bad[i]);
		snprintf(expected, sizeof(expected), "guest_mac '%s'", bad[i]);
		rejected(NET_PUT, "eth0", body, expected, "aa:bb:cc:dd:ee:ff");
	}
	rejected(NET_PUT, "eth0", NET("eth0", "tap0", ", 'guest_mac': 5"),
		 "guest_mac: must be a string", NULL);
}

static void test_net_put_checks_host_dev_name_length(void **state)
{
	(void)state;
	ok(NET_PUT, "eth0", NET("eth0", "tap456789012345", ""));
	assert_string_equal(w.config.nets[0].tap, "tap456789012345");
	rejected(NET_PUT, "eth1", NET("eth1", "tap4567890123456", ""), "host_dev_name",
		 "limit of 15");
	rejected(NET_PUT, "eth1", NET("eth1", "", ""), "host_dev_name: must not be empty", NULL);
}

static void test_net_put_rejects_more_than_the_maximum(void **state)
{
	char id[16], tap[16];
	(void)state;

	for (int i = 0; i < CONFIG_MAX_NETS; i++) {
		snprintf(id, sizeof(id), "eth%d", i);
		snprintf(tap, sizeof(tap), "tap%d", i);
		ok_json(NET_PUT, id, json_pack("{s:s, s:s}", "iface_id", id, "host_dev_name", tap));
	}
	rejected(NET_PUT, "eth9", NET("eth9", "tap9", ""), "iface_id 'eth9'", "at most 4");
	ok(NET_PUT, "eth2", NET("eth2", "tap2", ""));
}

static void test_net_put_rejects_an_mtu(void **state)
{
	(void)state;
	rejected(NET_PUT, "eth0", NET("eth0", "tap0", ", 'mtu': 1500"),
		 "mtu '1500': setting the guest's MTU is not supported", NULL);
	rejected(NET_PUT, "eth0", NET("eth0", "tap0", ", 'mtu': '1500'"),
		 "mtu: must be a non-negative integer", NULL);
}

static void test_net_put_rejects_missing_wrong_and_unknown_fields(void **state)
{
	(void)state;
	rejected(NET_PUT, "eth0", "{'iface_id': 'eth0'}",
		 "missing required field 'host_dev_name' in the network-interface body", NULL);
	rejected(NET_PUT, "eth0", "{'host_dev_name': 'tap0'}", "missing required field 'iface_id'",
		 NULL);
	rejected(NET_PUT, "eth0", NET("eth0", "tap0", ", 'allow_mmds_requests': true"),
		 "unknown field 'allow_mmds_requests' in the network-interface body", "guest_mac");
	rejected(NET_PUT, "eth0", "{'iface_id': 'eth0', 'host_dev_name': false}",
		 "host_dev_name: must be a string", NULL);
	rejected(NET_PUT, "eth0", NET("eth0", "tap0", ", 'rx_rate_limiter': {'ops': {'size': -1}}"),
		 "rx_rate_limiter.ops.size: must be a non-negative integer", NULL);
	rejected(NET_PUT, "eth0", NET("eth0", "tap0", ", 'tx_rate_limiter': 'fast'"),
		 "tx_rate_limiter: must be an object", NULL);
}

/* ---- PATCH /network-interfaces/{iface_id} ---- */

static void test_net_patch_describes_the_buckets_given(void **state)
{
	(void)state;
	ok(NET_PATCH, "eth0",
	   "{'iface_id': 'eth0', 'rx_rate_limiter': {'bandwidth': {'size': 9, 'refill_time': 8}}}");
	assert_string_equal(w.net_patch.id, "eth0");
	assert_true(w.net_patch.rx.has_bandwidth);
	assert_int_equal(w.net_patch.rx.bandwidth.size, 9);
	assert_false(w.net_patch.rx.has_ops);
	assert_false(w.net_patch.tx.has_bandwidth);
	assert_false(w.net_patch.tx.has_ops);
	/* Firecracker takes a patch without limiters as a change of nothing */
	ok(NET_PATCH, "eth0", "{'iface_id': 'eth0', 'tx_rate_limiter': null}");
	assert_false(w.net_patch.rx.has_bandwidth);
}

static void test_net_patch_rejects_bad_bodies(void **state)
{
	(void)state;
	rejected(NET_PATCH, "eth0", "{'iface_id': 'eth1'}",
		 "The id from the path [eth0] does not match the id from the body [eth1]!", NULL);
	rejected(NET_PATCH, "eth0", "{'iface_id': 'eth0', 'host_dev_name': 'tap1'}",
		 "unknown field 'host_dev_name'", "rx_rate_limiter");
	rejected(NET_PATCH, "eth0", "{}", "missing required field 'iface_id'", NULL);
	rejected(
	    NET_PATCH, "eth0",
	    "{'iface_id': 'eth0', 'tx_rate_limiter': {'ops': {'size': 1, 'refill_time': true}}}",
	    "tx_rate_limiter.ops.refill_time: must be a non-negative integer", NULL);
	rejected(NET_PATCH, "", "{'iface_id': 'eth0'}", "The ID cannot be empty", NULL);
}

/* ---- PUT /logger ---- */

static void test_logger_put_takes_every_field(void **state)
{
	(void)state;
	ok(LOGGER, NULL,
	   "{'log_path': '/tmp/fc.log', 'level': 'Debug', 'show_level': true, "
	   "'show_log_origin': true, 'module': null}");
	assert_string_equal(w.config.logger.path, "/tmp/fc.log");
	assert_true(w.config.logger.has_level);
	assert_int_equal(w.config.logger.level, LOG_LEVEL_DEBUG);
	assert_true(w.config.logger.show_level);
	assert_true(w.config.logger.show_log_origin);
}

static void test_logger_level_names_are_firecrackers_in_any_case(void **state)
{
	static const struct {
		const char *name;
		enum log_level level;
	} levels[] = {
	    {"Error", LOG_LEVEL_ERROR}, {"Warning", LOG_LEVEL_WARN}, {"warn", LOG_LEVEL_WARN},
	    {"INFO", LOG_LEVEL_INFO},	{"debug", LOG_LEVEL_DEBUG},  {"Trace", LOG_LEVEL_TRACE},
	    {"off", LOG_LEVEL_OFF},	{"Off", LOG_LEVEL_OFF},
	};
	char body[64];
	(void)state;

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		snprintf(body, sizeof(body), "{'level': '%s'}", levels[i].name);
		ok(LOGGER, NULL, body);
		assert_int_equal(w.config.logger.level, levels[i].level);
	}
}

static void test_logger_put_keeps_what_it_leaves_out_but_resets_the_level(void **state)
{
	(void)state;
	ok(LOGGER, NULL, "{'log_path': '/l', 'level': 'Error', 'show_level': true}");
	ok(LOGGER, NULL, "{'show_log_origin': true}");
	assert_string_equal(w.config.logger.path, "/l");
	assert_true(w.config.logger.show_level);
	assert_true(w.config.logger.show_log_origin);
	/* Firecracker sets its default level, Info, on every PUT without one */
	assert_true(w.config.logger.has_level);
	assert_int_equal(w.config.logger.level, LOG_LEVEL_INFO);
	ok(LOGGER, NULL, "{'show_level': false, 'log_path': null}");
	assert_false(w.config.logger.show_level);
	assert_string_equal(w.config.logger.path, "/l");
}

static void test_logger_rejects_a_module_filter(void **state)
{
	(void)state;
	rejected(LOGGER, NULL, "{'level': 'Info', 'module': 'api_server::request'}",
		 "module 'api_server::request'", "not supported");
}

static void test_logger_rejects_bad_bodies(void **state)
{
	(void)state;
	rejected(LOGGER, NULL, "{'level': 'Verbose'}", "level 'Verbose'",
		 "Error, Warning, Info, Debug, Trace, Off");
	rejected(LOGGER, NULL, "{'level': 3}", "level: must be a string", NULL);
	rejected(LOGGER, NULL, "{'show_level': 'yes'}", "show_level: must be a boolean", NULL);
	rejected(LOGGER, NULL, "{'show_log_origin': 1}", "show_log_origin: must be a boolean",
		 NULL);
	rejected(LOGGER, NULL, "{'log_path': ''}", "log_path: must not be empty", NULL);
	rejected(LOGGER, NULL, "{'log_file': '/l'}", "unknown field 'log_file' in the logger body",
		 "log_path");
	rejected(LOGGER, NULL, "[]", "logger body must be a JSON object", NULL);
}

/* ---- PUT /metrics, PUT /serial ---- */

static void test_metrics_put_sets_the_path(void **state)
{
	(void)state;
	ok(METRICS, NULL, "{'metrics_path': '/m.fifo'}");
	assert_string_equal(w.config.metrics_path, "/m.fifo");
	ok(METRICS, NULL, "{'metrics_path': '/m2', 'emit_id': false, 'properties': {}}");
	assert_string_equal(w.config.metrics_path, "/m2");
	ok(METRICS, NULL, "{'metrics_path': '/m3', 'properties': null}");
	assert_string_equal(w.config.metrics_path, "/m3");
}

static void test_metrics_put_rejects_bad_bodies(void **state)
{
	char small[4];
	json_t *body;
	(void)state;

	rejected(METRICS, NULL, "{}", "missing required field 'metrics_path' in the metrics body",
		 NULL);
	rejected(METRICS, NULL, "{'metrics_path': 1}", "metrics_path: must be a string", NULL);
	rejected(METRICS, NULL, "{'metrics_path': ''}", "metrics_path: must not be empty", NULL);
	rejected(METRICS, NULL, "{'metrics_path': '/m', 'emit_id': true}",
		 "emit_id: true is not supported", NULL);
	rejected(METRICS, NULL, "{'metrics_path': '/m', 'emit_id': null}",
		 "emit_id: must be a boolean", NULL);
	rejected(METRICS, NULL, "{'metrics_path': '/m', 'properties': {'team': 'vm'}}",
		 "properties: metrics properties are not supported", NULL);
	rejected(METRICS, NULL, "{'metrics_path': '/m', 'properties': {'team': 1}}",
		 "properties: the value of every key must be a string", NULL);
	rejected(METRICS, NULL, "{'metrics_path': '/m', 'format': 'json'}",
		 "unknown field 'format'", NULL);
	/* the caller's buffer is the limit */
	strcpy(small, "ab");
	body = J("{'metrics_path': '/long'}");
	assert_int_equal(fc_metrics_put(body, small, sizeof(small), err, sizeof(err)), -EINVAL);
	assert_contains(err, "metrics_path");
	assert_contains(err, "limit of 3");
	assert_string_equal(small, "ab");
	json_decref(body);
}

static void test_serial_put_sets_and_clears_the_path(void **state)
{
	(void)state;
	ok(SERIAL, NULL, "{'serial_out_path': '/serial.log'}");
	assert_string_equal(w.config.serial_out_path, "/serial.log");
	ok(SERIAL, NULL, "{}");
	assert_string_equal(w.config.serial_out_path, "");
	ok(SERIAL, NULL, "{'serial_out_path': '/s', 'rate_limiter': null}");
	assert_string_equal(w.config.serial_out_path, "/s");
}

static void test_serial_put_rejects_bad_bodies(void **state)
{
	(void)state;
	rejected(SERIAL, NULL,
		 "{'serial_out_path': '/s', 'rate_limiter': {'size': 1, "
		 "'refill_time': 1}}",
		 "rate_limiter: rate limiting the serial console is not supported", NULL);
	rejected(SERIAL, NULL, "{'serial_out_path': '/s', 'rate_limiter': {'size': 1}}",
		 "rate_limiter: missing required field 'refill_time'", NULL);
	rejected(SERIAL, NULL, "{'serial_out_path': 5}", "serial_out_path: must be a string", NULL);
	rejected(SERIAL, NULL, "{'serial_out_path': ''}", "serial_out_path: must not be empty",
		 NULL);
	rejected(SERIAL, NULL, "{'path': '/s'}", "unknown field 'path' in the serial body", NULL);
}

/* ---- PUT /actions, PATCH /vm ---- */

static void test_action_parse_knows_each_action(void **state)
{
	(void)state;
	ok(ACTION, NULL, "{'action_type': 'InstanceStart'}");
	assert_int_equal(w.action, FC_ACTION_INSTANCE_START);
	ok(ACTION, NULL, "{'action_type': 'SendCtrlAltDel'}");
	assert_int_equal(w.action, FC_ACTION_SEND_CTRL_ALT_DEL);
	ok(ACTION, NULL, "{'action_type': 'FlushMetrics'}");
	assert_int_equal(w.action, FC_ACTION_FLUSH_METRICS);
}

static void test_action_parse_rejects_bad_bodies(void **state)
{
	(void)state;
	rejected(ACTION, NULL, "{'action_type': 'Reboot'}", "action_type 'Reboot'",
		 "InstanceStart, SendCtrlAltDel, FlushMetrics");
	rejected(ACTION, NULL, "{'action_type': 'instancestart'}", "action_type 'instancestart'",
		 NULL);
	rejected(ACTION, NULL, "{}", "missing required field 'action_type' in the actions body",
		 NULL);
	rejected(ACTION, NULL, "{'action_type': 1}", "action_type: must be a string", NULL);
	rejected(ACTION, NULL, "{'action_type': 'InstanceStart', 'force': true}",
		 "unknown field 'force'", NULL);
}

static void test_vm_patch_knows_each_state(void **state)
{
	(void)state;
	ok(VM, NULL, "{'state': 'Paused'}");
	assert_int_equal(w.vm_state, FC_VM_PAUSED);
	ok(VM, NULL, "{'state': 'Resumed'}");
	assert_int_equal(w.vm_state, FC_VM_RESUMED);
}

static void test_vm_patch_rejects_bad_bodies(void **state)
{
	(void)state;
	rejected(VM, NULL, "{'state': 'Running'}",
		 "state 'Running': must be one of Paused, Resumed", NULL);
	rejected(VM, NULL, "{'state': 'paused'}", "state 'paused'", NULL);
	rejected(VM, NULL, "{}", "missing required field 'state' in the vm body", NULL);
	rejected(VM, NULL, "{'state': null}", "state: must be a string", NULL);
	rejected(VM, NULL, "{'state': 'Paused', 'x': 1}", "unknown field 'x' in the vm body", NULL);
}

/* ---- GET /machine-config, GET /vm/config ---- */

/* The object's keys, in order, joined by commas. */
static void assert_keys(const json_t *object, const char *expected)
{
	char keys[512] = "";
	const char *key;
	json_t *value;

	assert_true(json_is_object(object));
	json_object_foreach((json_t *)object, key, value)
	{
		if (*keys)
			strcat(keys, ",");
		strcat(keys, key);
	}
	assert_string_equal(keys, expected);
}

/* Compares with a single-quoted JSON text. */
static void assert_json_equal(const json_t *actual, const char *expected_text)
{
	json_t *expected = J(expected_text);

	if (!json_equal((json_t *)actual, expected)) {
		char *dump = json_dumps(actual, JSON_SORT_KEYS);

		fail_msg("got %s", dump);
	}
	json_decref(expected);
}

static void test_machine_config_json_mirrors_firecracker(void **state)
{
	json_t *reply;
	(void)state;

	reply = fc_machine_config_json(&w.config);
	assert_keys(reply, "vcpu_count,mem_size_mib,smt,track_dirty_pages,huge_pages");
	assert_json_equal(reply, "{'vcpu_count': 1, 'mem_size_mib': 128, 'smt': false, "
				 "'track_dirty_pages': false, 'huge_pages': 'None'}");
	json_decref(reply);
	ok(MACHINE_PUT, NULL, "{'vcpu_count': 6, 'mem_size_mib': 3000, 'track_dirty_pages': true}");
	reply = fc_machine_config_json(&w.config);
	assert_json_equal(reply, "{'vcpu_count': 6, 'mem_size_mib': 3000, 'smt': false, "
				 "'track_dirty_pages': true, 'huge_pages': 'None'}");
	json_decref(reply);
}

static void test_vm_config_json_has_firecrackers_keys_and_nulls(void **state)
{
	json_t *reply;
	(void)state;

	reply = fc_vm_config_json(&w.config);
	assert_keys(reply, "balloon,drives,boot-source,cpu-config,logger,machine-config,metrics,"
			   "mmds-config,network-interfaces,vsock,entropy,pmem,memory-hotplug");
	assert_json_equal(
	    reply, "{'balloon': null, 'drives': [], 'boot-source': {'kernel_image_path': '', "
		   "'initrd_path': null, 'boot_args': '" CONFIG_DEFAULT_CMDLINE "'}, "
		   "'cpu-config': null, 'logger': null, 'machine-config': {'vcpu_count': 1, "
		   "'mem_size_mib': 128, 'smt': false, 'track_dirty_pages': false, "
		   "'huge_pages': 'None'}, 'metrics': null, 'mmds-config': null, "
		   "'network-interfaces': [], 'vsock': null, 'entropy': null, 'pmem': [], "
		   "'memory-hotplug': null}");
	json_decref(reply);
}

static void test_vm_config_json_writes_devices_as_firecracker_does(void **state)
{
	json_t *reply;
	(void)state;

	ok(DRIVE_PUT, "data",
	   DRIVE("data", ", 'rate_limiter': {'bandwidth': {'size': 10, "
			 "'refill_time': 0}, 'ops': {'size': 5, 'refill_time': 7}}"));
	ok(DRIVE_PUT, "rootfs",
	   "{'drive_id': 'rootfs', 'path_on_host': '/r', 'is_root_device': true, "
	   "'partuuid': 'abcd-01', 'is_read_only': true, 'io_engine': 'Async', "
	   "'cache_type': 'Writeback'}");
	ok(NET_PUT, "eth0",
	   NET("eth0", "tap0",
	       ", 'guest_mac': '0A:0B:0C:0D:0E:0F', "
	       "'tx_rate_limiter': {'bandwidth': {'size': 100, "
	       "'one_time_burst': 50, 'refill_time': 1000}}"));
	reply = fc_vm_config_json(&w.config);
	/* the root drive first; only buckets that limit something; a zero burst is null;
	 * cache_type as given, Unsafe by default */
	assert_json_equal(
	    json_object_get(reply, "drives"),
	    "[{'drive_id': 'rootfs', 'partuuid': 'abcd-01', 'is_root_device': true, "
	    "'cache_type': 'Writeback', 'is_read_only': true, 'path_on_host': '/r', "
	    "'rate_limiter': null, 'io_engine': 'Async', 'socket': null}, "
	    "{'drive_id': 'data', 'partuuid': null, 'is_root_device': false, "
	    "'cache_type': 'Unsafe', 'is_read_only': false, 'path_on_host': '/img/data', "
	    "'rate_limiter': {'bandwidth': null, 'ops': {'size': 5, 'one_time_burst': null, "
	    "'refill_time': 7}}, 'io_engine': 'Sync', 'socket': null}]");
	assert_keys(json_array_get(json_object_get(reply, "drives"), 0),
		    "drive_id,partuuid,is_root_device,cache_type,is_read_only,path_on_host,"
		    "rate_limiter,io_engine,socket");
	assert_json_equal(json_object_get(reply, "network-interfaces"),
			  "[{'iface_id': 'eth0', 'host_dev_name': 'tap0', "
			  "'guest_mac': '0a:0b:0c:0d:0e:0f', 'mtu': null, 'rx_rate_limiter': null, "
			  "'tx_rate_limiter': {'bandwidth': {'size': 100, 'one_time_burst': 50, "
			  "'refill_time': 1000}, 'ops': null}}]");
	json_decref(reply);
}

/* What GET /vm/config writes, --config-file reads back into the same configuration. */
static void test_vm_config_json_round_trips_through_the_config_file(void **state)
{
	static struct vmm_config reread;
	json_t *reply;
	char *text;
	(void)state;

	ok(BOOT_SOURCE, NULL,
	   "{'kernel_image_path': '/vmlinux', 'initrd_path': '/initrd', 'boot_args': 'quiet'}");
	ok(MACHINE_PUT, NULL, "{'vcpu_count': 2, 'mem_size_mib': 512, 'track_dirty_pages': true}");
	ok(DRIVE_PUT, "rootfs",
	   "{'drive_id': 'rootfs', 'path_on_host': '/r', 'is_root_device': true, "
	   "'partuuid': 'ab-01', 'is_read_only': true, 'io_engine': 'Async', "
	   "'rate_limiter': {'ops': {'size': 5, 'one_time_burst': 2, "
	   "'refill_time': 7}}}");
	ok(DRIVE_PUT, "data", DRIVE("data", ""));
	ok(NET_PUT, "eth0",
	   NET("eth0", "tap0",
	       ", 'guest_mac': '02:fc:00:00:00:05', "
	       "'rx_rate_limiter': {'bandwidth': {'size': 1, 'refill_time': 2}}"));
	ok(NET_PUT, "eth1", NET("eth1", "tap1", ""));
	reply = fc_vm_config_json(&w.config);
	text = json_dumps(reply, 0);
	assert_non_null(text);
	config_set_defaults(&reread);
	if (fc_config_file_parse(text, strlen(text), &reread, err, sizeof(err)))
		fail_msg("%s: %s", err, text);
	assert_string_equal(reread.kernel_path, "/vmlinux");
	assert_string_equal(reread.initrd_path, "/initrd");
	assert_string_equal(reread.cmdline, "quiet");
	assert_int_equal(reread.vcpus, 2);
	assert_int_equal(reread.mem_mib, 512);
	assert_true(reread.track_dirty_pages);
	assert_int_equal(reread.nr_drives, 2);
	assert_memory_equal(&reread.drives[0], drive("rootfs"), sizeof(struct drive_config));
	assert_memory_equal(&reread.drives[1], drive("data"), sizeof(struct drive_config));
	assert_int_equal(reread.nr_nets, 2);
	assert_memory_equal(&reread.nets[0], &w.config.nets[0], sizeof(struct net_config));
	assert_memory_equal(&reread.nets[1], &w.config.nets[1], sizeof(struct net_config));
	free(text);
	json_decref(reply);
}

/* ---- --config-file ---- */

static int parse_file(const char *single_quoted)
{
	char *text = strdup(single_quoted);
	int ret;

	assert_non_null(text);
	for (char *c = text; *c; c++)
		if (*c == '\'')
			*c = '"';
	memcpy(&before, &w, sizeof(w));
	strcpy(err, "(untouched)");
	ret = fc_config_file_parse(text, strlen(text), &w.config, err, sizeof(err));
	free(text);
	return ret;
}

static void file_rejected(const char *text, const char *fragment1, const char *fragment2)
{
	int ret = parse_file(text);

	if (ret != -EINVAL)
		fail_msg("expected -EINVAL, got %d (%s)", ret, err);
	assert_contains(err, fragment1);
	assert_contains(err, fragment2);
	assert_null(strchr(err, '\n'));
	assert_memory_equal(&before, &w, sizeof(w));
}

#define BOOT "'boot-source': {'kernel_image_path': '/k'}"

static void test_config_file_configures_everything(void **state)
{
	int ret;
	(void)state;

	ret = parse_file(
	    "{'boot-source': {'kernel_image_path': '/k', 'boot_args': 'a=b'}, "
	    "'machine-config': {'vcpu_count': 2, 'mem_size_mib': 1024}, "
	    "'drives': [" ROOT("rootfs") ", " DRIVE(
		"data", "") "], "
			    "'network-interfaces': [" NET(
				"eth0", "tap0",
				"") "], "
				    "'logger': {'log_path': '/log', 'level': 'Warning'}, "
				    "'metrics': {'metrics_path': '/metrics'}}");
	if (ret)
		fail_msg("%s", err);
	assert_string_equal(w.config.kernel_path, "/k");
	assert_string_equal(w.config.cmdline, "a=b");
	assert_int_equal(w.config.vcpus, 2);
	assert_int_equal(w.config.mem_mib, 1024);
	assert_int_equal(w.config.nr_drives, 2);
	assert_true(drive("rootfs")->root);
	assert_int_equal(w.config.nr_nets, 1);
	assert_string_equal(w.config.nets[0].tap, "tap0");
	assert_string_equal(w.config.logger.path, "/log");
	assert_int_equal(w.config.logger.level, LOG_LEVEL_WARN);
	assert_string_equal(w.config.metrics_path, "/metrics");
}

static void test_config_file_needs_only_a_boot_source(void **state)
{
	(void)state;
	assert_int_equal(parse_file("{" BOOT "}"), 0);
	assert_string_equal(w.config.kernel_path, "/k");
	assert_int_equal(w.config.vcpus, CONFIG_DEFAULT_VCPUS);
	assert_int_equal(w.config.nr_drives, 0);
}

static void test_config_file_without_boot_source_is_rejected(void **state)
{
	(void)state;
	file_rejected("{'drives': []}", "missing required field 'boot-source' in the config file",
		      NULL);
	file_rejected("{'boot-source': null}", "boot-source: must be an object", NULL);
	file_rejected("{'boot-source': {}}",
		      "boot-source: missing required field 'kernel_image_path'", NULL);
}

static void test_config_file_errors_name_the_key_path(void **state)
{
	(void)state;
	file_rejected("{" BOOT ", 'drives': [" DRIVE("a", "") ", " DRIVE("b", ", 'foo': 1") "]}",
		      "drives[1]: unknown field 'foo'", NULL);
	file_rejected(
	    "{" BOOT ", 'drives': [" DRIVE("a", ", 'rate_limiter': {'bandwidth': {'size': "
						"'big', 'refill_time': 1}}") "]}",
	    "drives[0].rate_limiter.bandwidth.size: must be a non-negative integer", NULL);
	file_rejected("{" BOOT ", 'drives': [" ROOT("a") ", " ROOT("b") "]}",
		      "drives[1].is_root_device: A root block device already exists!", NULL);
	file_rejected("{" BOOT ", 'drives': [5]}",
		      "drives[0]: the drive body must be a JSON object", NULL);
	file_rejected("{" BOOT ", 'machine-config': {'vcpu_count': 64, 'mem_size_mib': 128}}",
		      "machine-config.vcpu_count: 64", NULL);
	file_rejected("{" BOOT ", 'machine-config': {'vcpu_count': 2}}",
		      "machine-config: missing required field 'mem_size_mib'", NULL);
	file_rejected("{" BOOT
		      ", 'network-interfaces': [" NET("eth0", "tap0", ", 'guest_mac': 'zz'") "]}",
		      "network-interfaces[0].guest_mac 'zz'", NULL);
	file_rejected("{" BOOT ", 'logger': {'level': 'Loud'}}", "logger.level 'Loud'", NULL);
	file_rejected("{" BOOT ", 'metrics': {}}", "metrics: missing required field 'metrics_path'",
		      NULL);
	file_rejected("{'boot-source': {'kernel_image_path': 1}}",
		      "boot-source.kernel_image_path: must be a string", NULL);
}

static void test_config_file_refuses_sections_wisp_lacks(void **state)
{
	static const char *const sections[] = {"vsock", "mmds-config", "entropy", "cpu-config",
					       "memory-hotplug"};
	char text[256], expected[64];
	(void)state;

	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		snprintf(text, sizeof(text), "{" BOOT ", '%s': {'a': 1}}", sections[i]);
		snprintf(expected, sizeof(expected), "%s: not supported yet", sections[i]);
		file_rejected(text, expected, NULL);
	}
	file_rejected("{" BOOT ", 'pmem': [{'id': 'p'}]}", "pmem: not supported yet", NULL);
	/* what GET /vm/config writes for them reads back fine */
	assert_int_equal(parse_file("{" BOOT
				    ", 'balloon': null, 'vsock': null, 'mmds-config': null, "
				    "'entropy': null, 'cpu-config': null, 'pmem': [], "
				    "'memory-hotplug': null, 'logger': null, 'metrics': null, "
				    "'machine-config': null}"),
			 0);
}

static void test_config_file_rejects_malformed_files(void **state)
{
	(void)state;
	file_rejected("{'boot-source': {'kernel_image_path': '/k'},\n 'drives': [}",
		      "config file: invalid JSON at line 2", NULL);
	file_rejected("", "config file: invalid JSON", NULL);
	file_rejected("{" BOOT ", " BOOT "}", "invalid JSON", "duplicate");
	file_rejected("[]", "the config file must be a JSON object", NULL);
	file_rejected("{" BOOT ", 'serial': {}}", "unknown field 'serial' in the config file",
		      "network-interfaces");
	file_rejected("{" BOOT ", 'drives': {}}", "drives: must be an array", NULL);
	file_rejected("{" BOOT ", 'network-interfaces': null}",
		      "network-interfaces: must be an array", NULL);
}

static void test_config_file_error_late_in_the_file_changes_nothing(void **state)
{
	(void)state;
	file_rejected(
	    "{'boot-source': {'kernel_image_path': '/k'}, "
	    "'machine-config': {'vcpu_count': 4, 'mem_size_mib': 512}, "
	    "'logger': {'log_path': '/log'}, 'metrics': {'metrics_path': '/m'}, "
	    "'drives': [" DRIVE("a", "") "], "
					 "'network-interfaces': [" NET("eth0", "tap0", "") ", " NET(
					     "eth1", "tap0", "") "]}",
	    "network-interfaces[1].host_dev_name 'tap0': already used", NULL);
}

static void test_config_file_applies_on_top_of_the_given_configuration(void **state)
{
	(void)state;
	ok(DRIVE_PUT, "cli", DRIVE("cli", ""));
	assert_int_equal(parse_file("{" BOOT ", 'drives': [" DRIVE("file", "") "]}"), 0);
	assert_int_equal(w.config.nr_drives, 2);
	drive("cli");
	drive("file");
}

/* ---- fc_api_schema ---- */

static void test_schema_lists_every_path_and_method_wisp_serves(void **state)
{
	json_t *schema = fc_api_schema();
	json_t *paths = json_object_get(schema, "paths");
	(void)state;

	assert_non_null(schema);
	assert_keys(schema, "paths");
	assert_keys(paths, "/,/version,/vm/config,/machine-config,/boot-source,/drives/{drive_id},"
			   "/network-interfaces/{iface_id},/actions,/vm,/logger,/metrics,/serial,"
			   "/snapshot/create,/snapshot/load,/balloon,/balloon/statistics");
	assert_keys(json_object_get(paths, "/balloon"), "get,put,patch");
	assert_keys(json_object_get(paths, "/balloon/statistics"), "get,patch");
	assert_keys(json_object_get(paths, "/machine-config"), "get,put,patch");
	assert_keys(json_object_get(paths, "/drives/{drive_id}"), "put,patch");
	assert_keys(json_object_get(paths, "/network-interfaces/{iface_id}"), "put,patch");
	assert_keys(json_object_get(paths, "/vm"), "patch");
	assert_keys(json_object_get(paths, "/actions"), "put");
	assert_keys(json_object_get(paths, "/snapshot/create"), "put");
	assert_keys(json_object_get(paths, "/snapshot/load"), "put");
	assert_json_equal(json_object_get(paths, "/"), "{'get': {'body': null}}");
	assert_json_equal(json_object_get(paths, "/version"), "{'get': {'body': null}}");
	assert_json_equal(json_object_get(paths, "/vm/config"), "{'get': {'body': null}}");
	assert_json_equal(json_object_get(json_object_get(paths, "/machine-config"), "get"),
			  "{'body': null}");
	json_decref(schema);
}

static void test_schema_reports_the_fields_each_body_accepts(void **state)
{
	json_t *schema = fc_api_schema();
	json_t *paths = json_object_get(schema, "paths");
	const char *bucket = "{'size': null, 'one_time_burst': null, 'refill_time': null}";
	char limiter[256], expected[2048];
	(void)state;

	snprintf(limiter, sizeof(limiter), "{'bandwidth': %s, 'ops': %s}", bucket, bucket);
	snprintf(expected, sizeof(expected),
		 "{'body': {'drive_id': null, 'partuuid': null, 'is_root_device': null, "
		 "'cache_type': null, 'is_read_only': null, 'path_on_host': null, "
		 "'rate_limiter': %s, 'io_engine': null, 'socket': null}}",
		 limiter);
	assert_json_equal(json_object_get(json_object_get(paths, "/drives/{drive_id}"), "put"),
			  expected);
	snprintf(expected, sizeof(expected),
		 "{'body': {'drive_id': null, 'path_on_host': null, 'rate_limiter': %s}}", limiter);
	assert_json_equal(json_object_get(json_object_get(paths, "/drives/{drive_id}"), "patch"),
			  expected);
	snprintf(expected, sizeof(expected),
		 "{'put': {'body': {'iface_id': null, 'host_dev_name': null, 'guest_mac': null, "
		 "'mtu': null, 'rx_rate_limiter': %s, 'tx_rate_limiter': %s}}, "
		 "'patch': {'body': {'iface_id': null, 'rx_rate_limiter': %s, "
		 "'tx_rate_limiter': %s}}}",
		 limiter, limiter, limiter, limiter);
	assert_json_equal(json_object_get(paths, "/network-interfaces/{iface_id}"), expected);
	assert_json_equal(json_object_get(json_object_get(paths, "/machine-config"), "put"),
			  "{'body': {'vcpu_count': null, 'mem_size_mib': null, 'smt': null, "
			  "'cpu_template': null, 'track_dirty_pages': null, 'huge_pages': null}}");
	assert_json_equal(json_object_get(json_object_get(paths, "/machine-config"), "patch"),
			  "{'body': {'vcpu_count': null, 'mem_size_mib': null, 'smt': null, "
			  "'cpu_template': null, 'track_dirty_pages': null, 'huge_pages': null}}");
	assert_json_equal(json_object_get(paths, "/boot-source"),
			  "{'put': {'body': {'kernel_image_path': null, 'initrd_path': null, "
			  "'boot_args': null}}}");
	assert_json_equal(json_object_get(paths, "/actions"),
			  "{'put': {'body': {'action_type': null}}}");
	assert_json_equal(json_object_get(paths, "/vm"), "{'patch': {'body': {'state': null}}}");
	assert_json_equal(json_object_get(paths, "/logger"),
			  "{'put': {'body': {'log_path': null, 'level': null, 'show_level': null, "
			  "'show_log_origin': null, 'module': null}}}");
	assert_json_equal(json_object_get(paths, "/metrics"),
			  "{'put': {'body': {'metrics_path': null, 'emit_id': null, "
			  "'properties': null}}}");
	snprintf(expected, sizeof(expected),
		 "{'put': {'body': {'serial_out_path': null, 'rate_limiter': %s}}}", bucket);
	assert_json_equal(json_object_get(paths, "/serial"), expected);
	json_decref(schema);
}

/* Every field the schema lists passes the unknown-field check: none is reported, only
 * accepted and then judged on its value. */
static void test_schema_fields_are_exactly_the_accepted_ones(void **state)
{
	json_t *schema = fc_api_schema();
	const char *key;
	json_t *value;
	(void)state;

	json_object_foreach(
	    json_object_get(json_object_get(json_object_get(schema, "paths"), "/drives/{drive_id}"),
			    "put"),
	    key, value)
	{
		const char *field;
		json_t *ignored;

		json_object_foreach(value, field, ignored)
		{
			json_t *body = J(DRIVE("a", ""));

			json_object_set_new(body, field, json_integer(12345));
			memcpy(&before, &w, sizeof(w));
			assert_int_equal(fc_drive_put(body, "a", &w.config, err, sizeof(err)),
					 -EINVAL);
			if (strstr(err, "unknown field"))
				fail_msg("%s: %s", field, err);
			assert_contains(err, field);
			json_decref(body);
		}
	}
	json_decref(schema);
}

/* ---- messages ---- */

static void test_messages_echo_client_text_as_printable_ascii(void **state)
{
	static const char *const bodies[] = {
	    "{'kernel_image_path': '/k', 'line\\nbreak': 1}",
	    "{'kernel_image_path': '/k', 'caf\\u00e9': 1}",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		rejected(BOOT_SOURCE, NULL, bodies[i], "unknown field '", NULL);
		for (const char *c = err; *c; c++)
			assert_true(*c >= 0x20 && *c < 0x7f);
	}
	rejected(ACTION, NULL, "{'action_type': 'Start\\u0007\\r\\n'}", "action_type 'Start\?\?\?'",
		 NULL);
}

static void test_messages_cut_long_values_and_fit_small_buffers(void **state)
{
	char *long_value = repeat('v', 500);
	char tiny[16];
	json_t *body;
	(void)state;

	rejected_json(ACTION, NULL, json_pack("{s:s}", "action_type", long_value), "...'",
		      "must be one of");
	assert_true(strlen(err) < 200);
	body = json_pack("{s:s}", "action_type", long_value);
	memset(tiny, 'x', sizeof(tiny));
	assert_int_equal(fc_action_parse(body, &w.action, tiny, sizeof(tiny)), -EINVAL);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
	assert_int_equal(strncmp(tiny, "action_type 'vv", 15), 0);
	json_decref(body);
	free(long_value);
}

/* ---- api_handle: the instance id, and the files a request names ---- */

/* The VMM behind the API as far as these tests need it: open_check opens for real. */
static int real_open_check(void *opaque, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	(void)opaque;

	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

static const struct api_vmm_ops file_ops = {.open_check = real_open_check};

/* Sends one request (single-quoted JSON body or NULL); returns the status, the reply's
 * fault_message (or body) in *text. */
static int api_call(struct api_state *api, enum http_method method, const char *path,
		    const char *body_text, char *text, size_t text_size)
{
	struct api_reply reply;
	char *body = body_text ? strdup(body_text) : NULL;

	for (char *c = body; c && *c; c++)
		if (*c == '\'')
			*c = '"';
	api_handle(api, method, path, body, body ? strlen(body) : 0, &reply);
	free(body);
	snprintf(text, text_size, "%s", "");
	if (reply.body) {
		json_t *json = json_loads(reply.body, 0, NULL);
		const char *fault = json_string_value(json_object_get(json, "fault_message"));

		snprintf(text, text_size, "%s", fault ? fault : reply.body);
		json_decref(json);
		free(reply.body);
	}
	return reply.status;
}

static void make_temp_file(char *path, size_t size)
{
	int fd;

	snprintf(path, size, "/tmp/wisp-test-api-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static void test_api_get_root_reads_the_id_from_its_own_configuration(void **state)
{
	struct vmm_config *config = malloc(sizeof(*config));
	struct api_state *api = malloc(sizeof(*api));
	char text[512];
	(void)state;

	assert_non_null(config);
	assert_non_null(api);
	config_set_defaults(config);
	strcpy(config->process.id, "vm_42");
	api_state_init(api, config, "1.2.3", &file_ops, NULL);
	/* The controller's caller frees its configuration once the API has its copy. */
	memset(config->process.id, 'X', sizeof(config->process.id));
	free(config);
	assert_int_equal(api_call(api, HTTP_GET, "/", NULL, text, sizeof(text)), 200);
	assert_string_equal(text, "{\"id\":\"vm_42\",\"state\":\"Not started\",\"vmm_version\":"
				  "\"1.2.3\",\"app_name\":\"wisp\"}");
	free(api);
}

static void test_api_boot_source_opens_kernel_and_initrd_at_the_request(void **state)
{
	static struct api_state api;
	char kernel[64], initrd[64], body[512], text[512];
	(void)state;

	make_temp_file(kernel, sizeof(kernel));
	make_temp_file(initrd, sizeof(initrd));
	api_state_init(&api, &w.config, "1.2.3", &file_ops, NULL);
	assert_int_equal(api_call(&api, HTTP_PUT, "/boot-source",
				  "{'kernel_image_path': '/nonexistent/vmlinux'}", text,
				  sizeof(text)),
			 400);
	assert_string_equal(text, "Boot source error: The kernel file cannot be opened: No such "
				  "file or directory (os error 2)");
	assert_string_equal(api.config.kernel_path, "");
	snprintf(body, sizeof(body),
		 "{'kernel_image_path': '%s', 'initrd_path': '/nonexistent/initrd', "
		 "'boot_args': 'console=ttyS0'}",
		 kernel);
	assert_int_equal(api_call(&api, HTTP_PUT, "/boot-source", body, text, sizeof(text)), 400);
	assert_string_equal(text, "Boot source error: The initrd file cannot be opened due to "
				  "invalid path or invalid permissions. No such file or directory "
				  "(os error 2)");
	assert_string_equal(api.config.kernel_path, "");
	assert_string_equal(api.config.cmdline, CONFIG_DEFAULT_CMDLINE);
	snprintf(body, sizeof(body), "{'kernel_image_path': '%s', 'initrd_path': '%s'}", kernel,
		 initrd);
	assert_int_equal(api_call(&api, HTTP_PUT, "/boot-source", body, text, sizeof(text)), 204);
	assert_string_equal(api.config.kernel_path, kernel);
	assert_string_equal(api.config.initrd_path, initrd);
	/* A later bad PUT leaves the good boot source in place. */
	assert_int_equal(api_call(&api, HTTP_PUT, "/boot-source",
				  "{'kernel_image_path': '/nonexistent/other'}", text,
				  sizeof(text)),
			 400);
	assert_string_equal(api.config.kernel_path, kernel);
	assert_string_equal(api.config.initrd_path, initrd);
	unlink(kernel);
	unlink(initrd);
}

static void test_api_drive_opens_its_image_and_a_refused_root_takes_no_place(void **state)
{
	static struct api_state api;
	char image[64], body[512], text[512];
	(void)state;

	make_temp_file(image, sizeof(image));
	api_state_init(&api, &w.config, "1.2.3", &file_ops, NULL);
	assert_int_equal(api_call(&api, HTTP_PUT, "/drives/broken",
				  "{'drive_id': 'broken', 'path_on_host': '/nonexistent/disk.img', "
				  "'is_root_device': true, 'is_read_only': false}",
				  text, sizeof(text)),
			 400);
	assert_string_equal(text, "Drive config error: Unable to create the virtio block device: "
				  "Virtio backend error: Error manipulating the backing file: No "
				  "such file or directory (os error 2) /nonexistent/disk.img");
	assert_int_equal(api.config.nr_drives, 0);
	/* The refused drive did not take the root place: a valid root drive is accepted. */
	snprintf(body, sizeof(body),
		 "{'drive_id': 'rootfs', 'path_on_host': '%s', 'is_root_device': true, "
		 "'is_read_only': true}",
		 image);
	assert_int_equal(api_call(&api, HTTP_PUT, "/drives/rootfs", body, text, sizeof(text)), 204);
	assert_int_equal(api.config.nr_drives, 1);
	assert_string_equal(api.config.drives[0].path, image);
	assert_true(api.config.drives[0].root);
	/* GET /vm/config reports Firecracker's default cache type for it. */
	assert_int_equal(api_call(&api, HTTP_GET, "/vm/config", NULL, text, sizeof(text)), 200);
	assert_non_null(strstr(text, "\"is_root_device\":true,\"cache_type\":\"Unsafe\""));
	/* Replacing it with a missing image keeps the one that works. */
	assert_int_equal(api_call(&api, HTTP_PUT, "/drives/rootfs",
				  "{'drive_id': 'rootfs', 'path_on_host': '/nonexistent/x', "
				  "'is_root_device': true}",
				  text, sizeof(text)),
			 400);
	assert_string_equal(api.config.drives[0].path, image);
	unlink(image);
}

#define T(name) cmocka_unit_test_setup(name, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_boot_source_sets_kernel_initrd_and_args),
	    T(test_boot_source_put_replaces_the_whole_boot_source),
	    T(test_boot_source_null_optionals_and_empty_args),
	    T(test_boot_source_rejects_a_body_that_is_not_an_object),
	    T(test_boot_source_rejects_unknown_field_naming_it),
	    T(test_boot_source_rejects_missing_kernel),
	    T(test_boot_source_rejects_wrong_types_naming_the_field),
	    T(test_boot_source_rejects_strings_too_long_naming_the_limit),
	    T(test_boot_source_rejects_empty_paths),
	    T(test_boot_source_rejects_boot_args_the_kernel_cannot_take),
	    T(test_strings_with_a_nul_are_rejected),
	    T(test_machine_config_put_sets_every_field),
	    T(test_machine_config_put_resets_what_it_leaves_out),
	    T(test_machine_config_range_limits_are_inclusive),
	    T(test_machine_config_put_rejects_missing_required),
	    T(test_machine_config_rejects_wrong_integer_types),
	    T(test_machine_config_rejects_wrong_bool_and_string_types),
	    T(test_machine_config_rejects_out_of_range_values),
	    T(test_machine_config_rejects_cpu_templates),
	    T(test_machine_config_rejects_huge_pages),
	    T(test_machine_config_rejects_smt),
	    T(test_machine_config_put_rejects_unknown_field),
	    T(test_machine_config_patch_changes_only_what_it_gives),
	    T(test_machine_config_patch_rejects_an_empty_patch),
	    T(test_machine_config_patch_checks_like_put),
	    T(test_drive_put_adds_a_drive_with_firecracker_defaults),
	    T(test_drive_put_takes_every_field),
	    T(test_drive_put_accepts_null_for_optional_fields),
	    T(test_drive_put_replaces_the_drive_with_the_same_id),
	    T(test_drive_put_rejects_an_id_mismatch_naming_both),
	    T(test_drive_put_rejects_a_bad_id_in_the_path),
	    T(test_drive_put_rejects_a_bad_id_in_the_body),
	    T(test_drive_put_rejects_more_than_the_maximum),
	    T(test_drive_put_allows_only_one_root),
	    T(test_drive_put_rejects_missing_required_fields),
	    T(test_drive_put_rejects_vhost_user_sockets),
	    T(test_drive_put_checks_cache_type_and_io_engine),
	    T(test_drive_put_rejects_wrong_types_naming_the_field),
	    T(test_drive_put_checks_rate_limiter_fields_by_key_path),
	    T(test_drive_put_rejects_unknown_field_listing_the_accepted_ones),
	    T(test_drive_put_rejects_bad_strings),
	    T(test_drive_patch_describes_path_and_the_buckets_given),
	    T(test_drive_patch_with_only_one_part),
	    T(test_drive_patch_rejects_a_patch_with_nothing_to_change),
	    T(test_drive_patch_rejects_bad_bodies),
	    T(test_rate_limiter_patch_changes_only_the_buckets_given),
	    T(test_net_put_adds_an_interface),
	    T(test_net_put_replaces_in_place),
	    T(test_net_put_rejects_id_problems),
	    T(test_net_put_rejects_a_tap_used_by_another_interface),
	    T(test_net_put_rejects_a_mac_used_by_another_interface),
	    T(test_net_put_rejects_bad_macs_naming_them),
	    T(test_net_put_checks_host_dev_name_length),
	    T(test_net_put_rejects_more_than_the_maximum),
	    T(test_net_put_rejects_an_mtu),
	    T(test_net_put_rejects_missing_wrong_and_unknown_fields),
	    T(test_net_patch_describes_the_buckets_given),
	    T(test_net_patch_rejects_bad_bodies),
	    T(test_logger_put_takes_every_field),
	    T(test_logger_level_names_are_firecrackers_in_any_case),
	    T(test_logger_put_keeps_what_it_leaves_out_but_resets_the_level),
	    T(test_logger_rejects_a_module_filter),
	    T(test_logger_rejects_bad_bodies),
	    T(test_metrics_put_sets_the_path),
	    T(test_metrics_put_rejects_bad_bodies),
	    T(test_serial_put_sets_and_clears_the_path),
	    T(test_serial_put_rejects_bad_bodies),
	    T(test_action_parse_knows_each_action),
	    T(test_action_parse_rejects_bad_bodies),
	    T(test_vm_patch_knows_each_state),
	    T(test_vm_patch_rejects_bad_bodies),
	    T(test_machine_config_json_mirrors_firecracker),
	    T(test_vm_config_json_has_firecrackers_keys_and_nulls),
	    T(test_vm_config_json_writes_devices_as_firecracker_does),
	    T(test_vm_config_json_round_trips_through_the_config_file),
	    T(test_config_file_configures_everything),
	    T(test_config_file_needs_only_a_boot_source),
	    T(test_config_file_without_boot_source_is_rejected),
	    T(test_config_file_errors_name_the_key_path),
	    T(test_config_file_refuses_sections_wisp_lacks),
	    T(test_config_file_rejects_malformed_files),
	    T(test_config_file_error_late_in_the_file_changes_nothing),
	    T(test_config_file_applies_on_top_of_the_given_configuration),
	    T(test_schema_lists_every_path_and_method_wisp_serves),
	    T(test_schema_reports_the_fields_each_body_accepts),
	    T(test_schema_fields_are_exactly_the_accepted_ones),
	    T(test_messages_echo_client_text_as_printable_ascii),
	    T(test_messages_cut_long_values_and_fit_small_buffers),
	    T(test_api_get_root_reads_the_id_from_its_own_configuration),
	    T(test_api_boot_source_opens_kernel_and_initrd_at_the_request),
	    T(test_api_drive_opens_its_image_and_a_refused_root_takes_no_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
