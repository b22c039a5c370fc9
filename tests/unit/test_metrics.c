/*
 * Unit tests for the metrics (metrics.c): Firecracker's names, deltas between flushes,
 * per-device sections and their aggregates, file and FIFO output, registration limits.
 * Every line is parsed back with jansson. Each test starts from metrics_reset() in a fresh
 * temporary directory.
 */
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"
#include "metrics.h"

#define WATCHDOG_SECONDS 20 /* a flush that blocked on a FIFO would hang the test */
#define UTC_MS		 1700000000123ULL

/* One line: a single JSON object ended by its only newline. */
static json_t *parse_line(const char *line)
{
	size_t len = strlen(line);
	json_error_t error;
	json_t *root;

	assert_true(len > 2);
	assert_int_equal(line[len - 1], '\n');
	assert_ptr_equal(strchr(line, '\n'), line + len - 1);
	root = json_loads(line, 0, &error);
	if (!root)
		fail_msg("not JSON (%s at %d): %s", error.text, error.position, line);
	assert_true(json_is_object(root));
	return root;
}

static void free_json(json_t *root)
{
	json_delete(root);
}

static json_t *section_of(json_t *root, const char *section)
{
	json_t *object = json_object_get(root, section);

	if (!object || !json_is_object(object))
		fail_msg("no section \"%s\"", section);
	return object;
}

static uint64_t value_of(json_t *root, const char *section, const char *name)
{
	json_t *value = json_object_get(section_of(root, section), name);

	if (!value || !json_is_integer(value))
		fail_msg("no integer \"%s\" in \"%s\"", name, section);
	return (uint64_t)json_integer_value(value);
}

/* The position of `key` among the object's keys, -1 if absent. */
static int key_index(json_t *object, const char *key)
{
	int index = 0;

	for (void *it = json_object_iter(object); it;
	     it = json_object_iter_next(object, it), index++)
		if (!strcmp(json_object_iter_key(it), key))
			return index;
	return -1;
}

/* ---- fixture ---- */

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/wisp-test-metrics-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/metrics", f->dir);
	metrics_reset();
	log_reset();
	alarm(WATCHDOG_SECONDS);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	alarm(0);
	metrics_reset();
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void set_output(const char *path)
{
	char err[256] = "";

	assert_int_equal(metrics_set_output(path, err, sizeof(err)), 0);
	assert_string_equal(err, "");
}

static json_t *render(void)
{
	char *line = metrics_render(UTC_MS);
	json_t *root;

	assert_non_null(line);
	root = parse_line(line);
	free(line);
	return root;
}

/* The file's lines, each parsed; returns how many. */
static size_t read_lines(const char *path, json_t **roots, size_t max)
{
	FILE *file = fopen(path, "r");
	char *line = NULL;
	size_t size = 0, count = 0;

	assert_non_null(file);
	while (getline(&line, &size, file) > 0) {
		assert_true(count < max);
		roots[count++] = parse_line(line);
	}
	free(line);
	fclose(file);
	return count;
}

static void free_lines(json_t **roots, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free_json(roots[i]);
}

/* A device's own monotonic counters, as blk.c and net.c keep them. */
struct fake_disk {
	_Atomic uint64_t read_bytes;
	_Atomic uint64_t write_bytes;
	_Atomic uint64_t read_count;
	_Atomic uint64_t flush_count;
	bool reports_flush;
};

static void report_fake_disk(void *opaque, struct metrics_section *section)
{
	struct fake_disk *disk = opaque;

	metrics_counter(section, "read_bytes", atomic_load(&disk->read_bytes));
	metrics_counter(section, "write_bytes", atomic_load(&disk->write_bytes));
	metrics_counter(section, "read_count", atomic_load(&disk->read_count));
	if (disk->reports_flush)
		metrics_counter(section, "flush_count", atomic_load(&disk->flush_count));
}

static void report_nothing(void *opaque, struct metrics_section *section)
{
	(void)opaque;
	(void)section;
}

/* ---- the line ---- */

static void test_line_is_one_json_object_stamped_first(void **state)
{
	json_t *root;
	(void)state;

	root = render();
	assert_int_equal(key_index(root, "utc_timestamp_ms"), 0);
	assert_int_equal(json_integer_value(json_object_get(root, "utc_timestamp_ms")), UTC_MS);
	free_json(root);
}

static void test_utc_now_is_the_realtime_clock_in_ms(void **state)
{
	uint64_t before = (uint64_t)time(NULL) * 1000, now = metrics_utc_now_ms();
	(void)state;

	assert_true(now >= before && now < before + 2000);
}

static void assert_section_has_exactly(json_t *root, const char *section, const char *const *names,
				       size_t count)
{
	json_t *object = section_of(root, section);

	for (size_t i = 0; i < count; i++) {
		if (!json_object_get(object, names[i]))
			fail_msg("\"%s\" misses \"%s\"", section, names[i]);
		assert_int_equal(key_index(object, names[i]), i); /* Firecracker's order */
	}
	assert_int_equal(json_object_size(object), count);
}

#define ASSERT_SECTION(root, section, ...)                                                         \
	do {                                                                                       \
		static const char *const names[] = {__VA_ARGS__};                                  \
		assert_section_has_exactly(root, section, names,                                   \
					   sizeof(names) / sizeof(names[0]));                      \
	} while (0)

/* Firecracker's names, written out by hand: the contract with its consumers. */
static void test_every_fixed_metric_has_firecrackers_name(void **state)
{
	static const char *const latency_sections[] = {"exit_io_in_agg", "exit_io_out_agg",
						       "exit_mmio_read_agg", "exit_mmio_write_agg"};
	json_t *root = render();
	(void)state;

	ASSERT_SECTION(root, "api_server", "process_startup_time_us",
		       "process_startup_time_cpu_us");
	ASSERT_SECTION(root, "get_api_requests", "instance_info_count", "machine_cfg_count",
		       "vmm_version_count");
	ASSERT_SECTION(root, "put_api_requests", "actions_count", "actions_fails",
		       "boot_source_count", "boot_source_fails", "drive_count", "drive_fails",
		       "logger_count", "logger_fails", "machine_cfg_count", "machine_cfg_fails",
		       "metrics_count", "metrics_fails", "network_count", "network_fails",
		       "serial_count", "serial_fails");
	ASSERT_SECTION(root, "patch_api_requests", "drive_count", "drive_fails", "network_count",
		       "network_fails", "machine_cfg_count", "machine_cfg_fails");
	ASSERT_SECTION(root, "latencies_us", "pause_vm", "resume_vm", "vmm_pause_vm",
		       "vmm_resume_vm", "vmm_full_create_snapshot", "vmm_diff_create_snapshot",
		       "vmm_load_snapshot");
	ASSERT_SECTION(root, "logger", "missed_metrics_count", "metrics_fails", "missed_log_count");
	ASSERT_SECTION(root, "vcpu", "exit_io_in", "exit_io_out", "exit_mmio_read",
		       "exit_mmio_write", "failures", "exit_io_in_agg", "exit_io_out_agg",
		       "exit_mmio_read_agg", "exit_mmio_write_agg");
	for (size_t i = 0; i < sizeof(latency_sections) / sizeof(latency_sections[0]); i++)
		ASSERT_SECTION(section_of(root, "vcpu"), latency_sections[i], "min_us", "max_us",
			       "sum_us");
	ASSERT_SECTION(root, "signals", "sigpipe", "sighup");
	assert_int_equal(json_object_size(root), 9); /* the timestamp and 8 sections */
	free_json(root);
}

/* Every fixed field, from the lists the struct is made of: its section in the line, its
 * kind, where it lives. */
enum field_kind { FIELD_COUNTER, FIELD_STORE, FIELD_LATENCY };

struct field {
	const char *section;
	const char *name;
	enum field_kind kind;
	void *where; /* metrics_counter_t, or struct metrics_latency for FIELD_LATENCY */
};

#define FIELD(section, path, kind, name) {section, #name, FIELD_##kind, &metrics.path.name},
#define API_SERVER_FIELD(kind, name)	 FIELD("api_server", api_server, kind, name)
#define GET_FIELD(kind, name)		 FIELD("get_api_requests", api.get, kind, name)
#define PUT_FIELD(kind, name)		 FIELD("put_api_requests", api.put, kind, name)
#define PATCH_FIELD(kind, name)		 FIELD("patch_api_requests", api.patch, kind, name)
#define LATENCIES_FIELD(kind, name)	 FIELD("latencies_us", latencies_us, kind, name)
#define LOGGER_FIELD(kind, name)	 FIELD("logger", logger, kind, name)
#define VCPU_FIELD(kind, name)		 FIELD("vcpu", vcpu, kind, name)
#define SIGNALS_FIELD(kind, name)	 FIELD("signals", signals, kind, name)

static const struct field fields[] = {
    METRICS_API_SERVER(API_SERVER_FIELD) METRICS_GET_API_REQUESTS(GET_FIELD)
	METRICS_PUT_API_REQUESTS(PUT_FIELD) METRICS_PATCH_API_REQUESTS(PATCH_FIELD)
	    METRICS_LATENCIES_US(LATENCIES_FIELD) METRICS_LOGGER(LOGGER_FIELD)
		METRICS_VCPU(VCPU_FIELD) METRICS_SIGNALS(SIGNALS_FIELD)};

#define NR_FIELDS (sizeof(fields) / sizeof(fields[0]))

/* logger.missed_log_count is log.c's own count, copied in at each flush: only the logger
 * moves it (test_missed_log_lines_are_counted). */
static bool is_set_by_tests(const struct field *field)
{
	return field->where != &metrics.logger.missed_log_count;
}

static void set_field(const struct field *field, uint64_t value)
{
	if (field->kind == FIELD_COUNTER)
		metrics_add(field->where, value);
	else if (field->kind == FIELD_STORE)
		metrics_store(field->where, value);
	else
		metrics_latency_record(field->where, value);
}

/* The field's value in the line: a latency's sum. */
static uint64_t field_value(json_t *root, const struct field *field)
{
	if (field->kind == FIELD_LATENCY)
		return value_of(section_of(root, field->section), field->name, "sum_us");
	return value_of(root, field->section, field->name);
}

/* Every field of the struct, through the lists it is made from, reaches the line with its
 * own value. */
static void test_every_fixed_field_is_written(void **state)
{
	json_t *root;
	(void)state;

	for (size_t i = 0; i < NR_FIELDS; i++)
		set_field(&fields[i], 100 + i);
	root = render();
	for (size_t i = 0; i < NR_FIELDS; i++)
		if (is_set_by_tests(&fields[i]) && field_value(root, &fields[i]) != 100 + i)
			fail_msg("%s.%s is %llu, not %zu", fields[i].section, fields[i].name,
				 (unsigned long long)field_value(root, &fields[i]), 100 + i);
	free_json(root);
}

/* Each counter alone: its increment shows up once, as a delta, and nowhere else. */
static void test_each_counter_shows_its_increment_as_a_delta(void **state)
{
	struct fixture *f = *state;
	json_t *lines[3 * NR_FIELDS];
	size_t count = 0;

	set_output(f->path);
	for (size_t i = 0; i < NR_FIELDS; i++) {
		if (fields[i].kind == FIELD_STORE || !is_set_by_tests(&fields[i]))
			continue;
		assert_int_equal(metrics_flush(UTC_MS), 0); /* the baseline */
		set_field(&fields[i], 7);
		assert_int_equal(metrics_flush(UTC_MS), 0);
		assert_int_equal(metrics_flush(UTC_MS), 0);
		count += 3;
	}
	assert_int_equal(read_lines(f->path, lines, 3 * NR_FIELDS), count);
	for (size_t i = 0, line = 0; i < NR_FIELDS; i++) {
		if (fields[i].kind == FIELD_STORE || !is_set_by_tests(&fields[i]))
			continue;
		for (size_t j = 0; j < NR_FIELDS; j++) {
			uint64_t expected = i == j ? 7 : 0;

			if (fields[j].kind == FIELD_STORE)
				continue;
			if (field_value(lines[line + 1], &fields[j]) != expected)
				fail_msg(
				    "after %s.%s += 7: %s.%s is %llu", fields[i].section,
				    fields[i].name, fields[j].section, fields[j].name,
				    (unsigned long long)field_value(lines[line + 1], &fields[j]));
			assert_int_equal(field_value(lines[line + 2], &fields[j]), 0);
		}
		line += 3;
	}
	free_lines(lines, count);
}

/*
 * Where each fixed field is counted: a field that nothing counts is not written (a 0 that
 * means nothing), and a field counted somewhere is in this table. `code` is the text that
 * counts it, found in `file` as a whole expression (api.c counts PUT and PATCH requests
 * through its COUNTERS() macro).
 */
static const struct {
	const char *section, *name, *file, *code;
} counted_where[] = {
    {"api_server", "process_startup_time_us", "vmm/controller.c",
     "metrics.api_server.process_startup_time_us"},
    {"api_server", "process_startup_time_cpu_us", "vmm/controller.c",
     "metrics.api_server.process_startup_time_cpu_us"},
    {"get_api_requests", "instance_info_count", "api/api.c", "metrics.api.get.instance_info_count"},
    {"get_api_requests", "machine_cfg_count", "api/api.c", "metrics.api.get.machine_cfg_count"},
    {"get_api_requests", "vmm_version_count", "api/api.c", "metrics.api.get.vmm_version_count"},
    {"put_api_requests", "actions_count", "api/api.c", "COUNTERS(put, actions)"},
    {"put_api_requests", "actions_fails", "api/api.c", "COUNTERS(put, actions)"},
    {"put_api_requests", "boot_source_count", "api/api.c", "COUNTERS(put, boot_source)"},
    {"put_api_requests", "boot_source_fails", "api/api.c", "COUNTERS(put, boot_source)"},
    {"put_api_requests", "drive_count", "api/api.c", "COUNTERS(put, drive)"},
    {"put_api_requests", "drive_fails", "api/api.c", "COUNTERS(put, drive)"},
    {"put_api_requests", "logger_count", "api/api.c", "COUNTERS(put, logger)"},
    {"put_api_requests", "logger_fails", "api/api.c", "COUNTERS(put, logger)"},
    {"put_api_requests", "machine_cfg_count", "api/api.c", "COUNTERS(put, machine_cfg)"},
    {"put_api_requests", "machine_cfg_fails", "api/api.c", "COUNTERS(put, machine_cfg)"},
    {"put_api_requests", "metrics_count", "api/api.c", "COUNTERS(put, metrics)"},
    {"put_api_requests", "metrics_fails", "api/api.c", "COUNTERS(put, metrics)"},
    {"put_api_requests", "network_count", "api/api.c", "COUNTERS(put, network)"},
    {"put_api_requests", "network_fails", "api/api.c", "COUNTERS(put, network)"},
    {"put_api_requests", "serial_count", "api/api.c", "COUNTERS(put, serial)"},
    {"put_api_requests", "serial_fails", "api/api.c", "COUNTERS(put, serial)"},
    {"patch_api_requests", "drive_count", "api/api.c", "COUNTERS(patch, drive)"},
    {"patch_api_requests", "drive_fails", "api/api.c", "COUNTERS(patch, drive)"},
    {"patch_api_requests", "network_count", "api/api.c", "COUNTERS(patch, network)"},
    {"patch_api_requests", "network_fails", "api/api.c", "COUNTERS(patch, network)"},
    {"patch_api_requests", "machine_cfg_count", "api/api.c", "COUNTERS(patch, machine_cfg)"},
    {"patch_api_requests", "machine_cfg_fails", "api/api.c", "COUNTERS(patch, machine_cfg)"},
    {"latencies_us", "pause_vm", "api/api.c", "metrics.latencies_us.pause_vm"},
    {"latencies_us", "resume_vm", "api/api.c", "metrics.latencies_us.resume_vm"},
    {"latencies_us", "vmm_pause_vm", "vmm/controller.c", "metrics.latencies_us.vmm_pause_vm"},
    {"latencies_us", "vmm_resume_vm", "vmm/controller.c", "metrics.latencies_us.vmm_resume_vm"},
    {"latencies_us", "vmm_full_create_snapshot", "vmm/controller.c",
     "metrics.latencies_us.vmm_full_create_snapshot"},
    {"latencies_us", "vmm_diff_create_snapshot", "vmm/controller.c",
     "metrics.latencies_us.vmm_diff_create_snapshot"},
    {"latencies_us", "vmm_load_snapshot", "vmm/controller.c",
     "metrics.latencies_us.vmm_load_snapshot"},
    {"logger", "missed_metrics_count", "vmm/metrics.c", "metrics.logger.missed_metrics_count"},
    {"logger", "metrics_fails", "vmm/metrics.c", "metrics.logger.metrics_fails"},
    {"logger", "missed_log_count", "vmm/metrics.c", "metrics.logger.missed_log_count"},
    {"vcpu", "exit_io_in", "vmm/vcpu.c", "metrics.vcpu.exit_io_in"},
    {"vcpu", "exit_io_out", "vmm/vcpu.c", "metrics.vcpu.exit_io_out"},
    {"vcpu", "exit_mmio_read", "vmm/vcpu.c", "metrics.vcpu.exit_mmio_read"},
    {"vcpu", "exit_mmio_write", "vmm/vcpu.c", "metrics.vcpu.exit_mmio_write"},
    {"vcpu", "failures", "vmm/vcpu.c", "metrics.vcpu.failures"},
    {"vcpu", "exit_io_in_agg", "vmm/vcpu.c", "metrics.vcpu.exit_io_in_agg"},
    {"vcpu", "exit_io_out_agg", "vmm/vcpu.c", "metrics.vcpu.exit_io_out_agg"},
    {"vcpu", "exit_mmio_read_agg", "vmm/vcpu.c", "metrics.vcpu.exit_mmio_read_agg"},
    {"vcpu", "exit_mmio_write_agg", "vmm/vcpu.c", "metrics.vcpu.exit_mmio_write_agg"},
    {"signals", "sigpipe", "vmm/metrics.c", "metrics.signals.sigpipe"},
    {"signals", "sighup", "vmm/vm.c", "metrics.signals.sighup"},
};

#define NR_COUNTED_WHERE (sizeof(counted_where) / sizeof(counted_where[0]))

/* The source tree, from where this file was compiled (make runs at its top). */
static char *read_source(const char *file)
{
	static const char self[] = "tests/unit/test_metrics.c";
	size_t root_len = strlen(__FILE__) - strlen(self);
	char path[512];
	FILE *source;
	char *text;
	long size;

	snprintf(path, sizeof(path), "%.*s%s", (int)root_len, __FILE__, file);
	source = fopen(path, "r");
	if (!source)
		fail_msg("cannot read %s (run the test from the top of the tree): %s", path,
			 strerror(errno));
	assert_int_equal(fseek(source, 0, SEEK_END), 0);
	size = ftell(source);
	assert_true(size > 0);
	rewind(source);
	text = calloc(1, (size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)size, source), (size_t)size);
	fclose(source);
	return text;
}

/* `code` as a whole expression: not the start of a longer name (exit_io_in of
 * exit_io_in_agg). */
static bool source_has(const char *text, const char *code)
{
	size_t len = strlen(code);

	for (const char *at = strstr(text, code); at; at = strstr(at + 1, code)) {
		char next = at[len];

		if (next != '_' && !(next >= 'a' && next <= 'z') && !(next >= '0' && next <= '9'))
			return true;
	}
	return false;
}

static void test_every_written_field_is_counted_somewhere(void **state)
{
	json_t *root = render();
	size_t written = 0;
	(void)state;

	/* The table and the line name the same fields. */
	for (size_t i = 0; i < NR_COUNTED_WHERE; i++)
		if (!json_object_get(section_of(root, counted_where[i].section),
				     counted_where[i].name))
			fail_msg("%s.%s is in the table but not in the line",
				 counted_where[i].section, counted_where[i].name);
	for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it))
		if (json_is_object(json_object_iter_value(it)))
			written += json_object_size(json_object_iter_value(it));
	assert_int_equal(written, NR_COUNTED_WHERE);
	assert_int_equal(NR_FIELDS, NR_COUNTED_WHERE);

	/* And the code counts each where the table says. */
	for (size_t i = 0; i < NR_COUNTED_WHERE; i++) {
		char *text;

		text = read_source(counted_where[i].file);
		if (!source_has(text, counted_where[i].code))
			fail_msg("%s.%s: %s does not count it (no \"%s\")",
				 counted_where[i].section, counted_where[i].name,
				 counted_where[i].file, counted_where[i].code);
		free(text);
	}
	free_json(root);
}

static void test_latency_keeps_min_max_and_sum(void **state)
{
	json_t *root, *vcpu;
	(void)state;

	metrics_latency_record(&metrics.vcpu.exit_io_out_agg, 30);
	metrics_latency_record(&metrics.vcpu.exit_io_out_agg, 10);
	metrics_latency_record(&metrics.vcpu.exit_io_out_agg, 50);
	root = render();
	vcpu = section_of(root, "vcpu");
	assert_int_equal(value_of(vcpu, "exit_io_out_agg", "min_us"), 10);
	assert_int_equal(value_of(vcpu, "exit_io_out_agg", "max_us"), 50);
	assert_int_equal(value_of(vcpu, "exit_io_out_agg", "sum_us"), 90);
	assert_int_equal(value_of(vcpu, "exit_io_in_agg", "min_us"), 0);
	free_json(root);
}

/* ---- deltas ---- */

static void test_counters_are_deltas_and_stores_are_values(void **state)
{
	struct fixture *f = *state;
	static const uint64_t sums[] = {7, 5, 0};
	json_t *lines[4];

	set_output(f->path);
	metrics_inc(&metrics.api.put.drive_count);
	metrics_inc(&metrics.api.put.drive_count);
	metrics_inc(&metrics.api.put.drive_count);
	metrics_store(&metrics.api_server.process_startup_time_us, 1234);
	metrics_latency_record(&metrics.vcpu.exit_mmio_read_agg, 7);
	assert_int_equal(metrics_flush(UTC_MS), 0);
	metrics_add(&metrics.api.put.drive_count, 2);
	metrics_latency_record(&metrics.vcpu.exit_mmio_read_agg, 5);
	assert_int_equal(metrics_flush(UTC_MS + 1), 0);
	assert_int_equal(metrics_flush(UTC_MS + 2), 0);

	assert_int_equal(read_lines(f->path, lines, 4), 3);
	assert_int_equal(value_of(lines[0], "put_api_requests", "drive_count"), 3);
	assert_int_equal(value_of(lines[1], "put_api_requests", "drive_count"), 2);
	assert_int_equal(value_of(lines[2], "put_api_requests", "drive_count"), 0);
	for (int i = 0; i < 3; i++) {
		json_t *vcpu = section_of(lines[i], "vcpu");

		assert_int_equal(value_of(lines[i], "api_server", "process_startup_time_us"), 1234);
		assert_int_equal(value_of(vcpu, "exit_mmio_read_agg", "min_us"), i ? 5 : 7);
		assert_int_equal(value_of(vcpu, "exit_mmio_read_agg", "max_us"), 7);
		assert_int_equal(value_of(vcpu, "exit_mmio_read_agg", "sum_us"), sums[i]);
		assert_int_equal(json_integer_value(json_object_get(lines[i], "utc_timestamp_ms")),
				 UTC_MS + i);
	}
	free_lines(lines, 3);
}

static void test_render_does_not_move_the_baseline(void **state)
{
	json_t *root;
	(void)state;

	metrics_inc(&metrics.vcpu.exit_io_in);
	root = render();
	free_json(root);
	root = render();
	assert_int_equal(value_of(root, "vcpu", "exit_io_in"), 1);
	free_json(root);
}

static void test_device_sections_are_written_as_deltas(void **state)
{
	struct fixture *f = *state;
	struct fake_disk disk = {.read_bytes = 4096, .read_count = 1};
	json_t *lines[3];

	assert_int_equal(metrics_register("block_rootfs", NULL, report_fake_disk, &disk), 0);
	set_output(f->path);
	assert_int_equal(metrics_flush(UTC_MS), 0);
	disk.read_bytes += 8192;
	disk.read_count += 2;
	disk.write_bytes += 512;
	assert_int_equal(metrics_flush(UTC_MS), 0);

	assert_int_equal(read_lines(f->path, lines, 3), 2);
	ASSERT_SECTION(lines[0], "block_rootfs", "read_bytes", "write_bytes", "read_count");
	assert_int_equal(value_of(lines[0], "block_rootfs", "read_bytes"), 4096);
	assert_int_equal(value_of(lines[0], "block_rootfs", "read_count"), 1);
	assert_int_equal(value_of(lines[1], "block_rootfs", "read_bytes"), 8192);
	assert_int_equal(value_of(lines[1], "block_rootfs", "read_count"), 2);
	assert_int_equal(value_of(lines[1], "block_rootfs", "write_bytes"), 512);
	free_lines(lines, 2);
}

static void test_aggregate_is_the_sum_of_the_devices(void **state)
{
	struct fixture *f = *state;
	struct fake_disk rootfs = {.read_bytes = 100, .read_count = 1};
	struct fake_disk scratch = {.read_bytes = 20, .write_bytes = 7, .reports_flush = true};
	json_t *lines[3];

	assert_int_equal(metrics_register("block_rootfs", "block", report_fake_disk, &rootfs), 0);
	assert_int_equal(metrics_register("net_eth0", "net", report_nothing, NULL), 0);
	assert_int_equal(metrics_register("block_scratch", "block", report_fake_disk, &scratch), 0);
	set_output(f->path);
	assert_int_equal(metrics_flush(UTC_MS), 0);
	rootfs.read_bytes += 1000;
	scratch.read_bytes += 30;
	scratch.flush_count += 4;
	assert_int_equal(metrics_flush(UTC_MS), 0);

	assert_int_equal(read_lines(f->path, lines, 3), 2);
	for (int i = 0; i < 2; i++) {
		static const char *const names[] = {"read_bytes", "write_bytes", "read_count",
						    "flush_count"};

		for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
			uint64_t scratch_value = value_of(lines[i], "block_scratch", names[n]);
			uint64_t rootfs_value =
			    n == 3 ? 0 : value_of(lines[i], "block_rootfs", names[n]);

			assert_int_equal(value_of(lines[i], "block", names[n]),
					 rootfs_value + scratch_value);
		}
		/* Per-device sections first, then the sums. */
		assert_true(key_index(lines[i], "block_rootfs") < key_index(lines[i], "block"));
		assert_true(key_index(lines[i], "block_scratch") < key_index(lines[i], "block"));
		assert_true(key_index(lines[i], "net_eth0") < key_index(lines[i], "net"));
		assert_int_equal(json_object_size(section_of(lines[i], "net")), 0);
	}
	assert_int_equal(value_of(lines[0], "block", "read_bytes"), 120);
	assert_int_equal(value_of(lines[1], "block", "read_bytes"), 1030);
	assert_int_equal(value_of(lines[1], "block", "flush_count"), 4);
	assert_int_equal(value_of(lines[1], "block", "write_bytes"), 0);
	free_lines(lines, 2);
}

static void test_a_section_can_report_and_aggregate(void **state)
{
	struct fake_disk zeros = {0}, disk = {.read_bytes = 5};
	json_t *root;
	(void)state;

	/* How a device type keeps its aggregate in the line with no device attached. */
	assert_int_equal(metrics_register("block", NULL, report_fake_disk, &zeros), 0);
	root = render();
	ASSERT_SECTION(root, "block", "read_bytes", "write_bytes", "read_count");
	free_json(root);
	assert_int_equal(metrics_register("block_a", "block", report_fake_disk, &disk), 0);
	root = render();
	assert_int_equal(value_of(root, "block", "read_bytes"), 5);
	free_json(root);
}

static void test_a_counter_that_goes_back_counts_from_zero(void **state)
{
	struct fixture *f = *state;
	struct fake_disk disk = {.read_count = 10};
	json_t *lines[3];

	assert_int_equal(metrics_register("block_a", NULL, report_fake_disk, &disk), 0);
	set_output(f->path);
	assert_int_equal(metrics_flush(UTC_MS), 0);
	disk.read_count = 3; /* the device was recreated */
	assert_int_equal(metrics_flush(UTC_MS), 0);
	assert_int_equal(read_lines(f->path, lines, 3), 2);
	assert_int_equal(value_of(lines[1], "block_a", "read_count"), 3);
	free_lines(lines, 2);
}

struct bump_args {
	metrics_counter_t *counter;
	int times;
};

static void *bump(void *opaque)
{
	struct bump_args *args = opaque;

	for (int i = 0; i < args->times; i++)
		metrics_inc(args->counter);
	return NULL;
}

static void test_counters_bumped_from_many_threads_add_up(void **state)
{
	struct bump_args args = {&metrics.vcpu.exit_mmio_write, 100000};
	pthread_t threads[4];
	json_t *root;
	(void)state;

	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, bump, &args), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	root = render();
	assert_int_equal(value_of(root, "vcpu", "exit_mmio_write"), 400000);
	free_json(root);
}

/* ---- output ---- */

static void test_file_gets_one_line_appended_per_flush(void **state)
{
	struct fixture *f = *state;
	FILE *file = fopen(f->path, "w");
	char line[64];
	struct stat st;
	int count = 0;

	assert_non_null(file);
	fputs("earlier\n", file);
	fclose(file);
	set_output(f->path);
	for (int i = 0; i < 3; i++)
		assert_int_equal(metrics_flush(UTC_MS), 0);
	file = fopen(f->path, "r");
	assert_non_null(file);
	assert_non_null(fgets(line, sizeof(line), file));
	assert_string_equal(line, "earlier\n");
	for (int c; (c = fgetc(file)) != EOF;)
		count += c == '\n';
	fclose(file);
	assert_int_equal(count, 3);

	metrics_reset();
	unlink(f->path);
	set_output(f->path);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_flush_without_output_writes_nothing_and_loses_nothing(void **state)
{
	struct fixture *f = *state;
	json_t *lines[2];

	metrics_inc(&metrics.api.get.instance_info_count);
	assert_int_equal(metrics_flush(UTC_MS), 0);
	metrics_inc(&metrics.api.get.instance_info_count);
	set_output(f->path);
	assert_int_equal(metrics_flush(UTC_MS), 0);
	assert_int_equal(read_lines(f->path, lines, 2), 1);
	assert_int_equal(value_of(lines[0], "get_api_requests", "instance_info_count"), 2);
	free_lines(lines, 1);
}

static void test_output_errors_and_a_second_output(void **state)
{
	struct fixture *f = *state;
	char err[256], missing[192];

	snprintf(missing, sizeof(missing), "%s/no/such/dir/metrics", f->dir);
	assert_int_equal(metrics_set_output(missing, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, missing));
	assert_int_equal(metrics_set_output("", err, sizeof(err)), -EINVAL);
	assert_int_equal(metrics_set_output(f->dir, err, sizeof(err)), -EISDIR);
	set_output(f->path);
	assert_int_equal(metrics_set_output(f->path, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "already"));
}

static void test_fifo_without_reader_does_not_block_and_counts_missed_lines(void **state)
{
	struct fixture *f = *state;
	static char content[1 << 20];
	size_t len = 0;
	int reader, ret = 0, flushed = 0;
	char *line, *save = NULL;
	json_t *root;
	ssize_t n;

	assert_int_equal(mkfifo(f->path, 0600), 0);
	set_output(f->path); /* no reader: opens all the same */
	metrics_inc(&metrics.api.put.actions_count);
	for (int i = 0; i < 1000 && ret == 0; i++) {
		ret = metrics_flush(UTC_MS);
		flushed += ret == 0;
	}
	assert_int_equal(ret, -EAGAIN);
	assert_true(flushed > 0);
	metrics_inc(&metrics.api.put.actions_count); /* after the last line that got out */
	assert_int_equal(metrics_flush(UTC_MS), -EAGAIN);

	/* A reader drains the FIFO: only whole lines were written. */
	reader = open(f->path, O_RDONLY | O_NONBLOCK);
	assert_true(reader >= 0);
	while ((n = read(reader, content + len, sizeof(content) - 1 - len)) > 0)
		len += (size_t)n;
	assert_true(len > 0 && content[len - 1] == '\n');
	content[len] = '\0';
	for (line = strtok_r(content, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char whole[8192];

		snprintf(whole, sizeof(whole), "%s\n", line);
		free_json(parse_line(whole));
		flushed--;
	}
	assert_int_equal(flushed, 0);

	/* The next line that gets out carries what the missed ones would have. */
	assert_int_equal(metrics_flush(UTC_MS), 0);
	len = 0;
	while ((n = read(reader, content + len, sizeof(content) - 1 - len)) > 0)
		len += (size_t)n;
	content[len] = '\0';
	close(reader);
	root = parse_line(content);
	assert_int_equal(value_of(root, "put_api_requests", "actions_count"), 1);
	assert_int_equal(value_of(root, "logger", "missed_metrics_count"), 2);
	assert_int_equal(value_of(root, "logger", "metrics_fails"), 0);
	free_json(root);
}

static void report_many(void *opaque, struct metrics_section *section)
{
	char name[METRICS_COUNTER_NAME_MAX];
	(void)opaque;

	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "a_rather_long_counter_name_%02d", i);
		metrics_counter(section, name, 1000000u + (uint64_t)i);
	}
}

static size_t read_fifo(int reader, char *content, size_t len, size_t size)
{
	ssize_t n;

	while ((n = read(reader, content + len, size - 1 - len)) > 0)
		len += (size_t)n;
	content[len] = '\0';
	return len;
}

/* Past PIPE_BUF a full pipe takes part of a line: the rest must follow, before the next. */
static void test_fifo_gets_whole_lines_longer_than_pipe_buf(void **state)
{
	struct fixture *f = *state;
	static char content[1 << 20];
	int reader, ret = 0, flushed = 0;
	char *line, *save = NULL, *rendered;
	char name[32];
	size_t len;

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "block_disk%d", i);
		assert_int_equal(metrics_register(name, "block", report_many, NULL), 0);
	}
	rendered = metrics_render(UTC_MS);
	assert_true(strlen(rendered) > 2 * PIPE_BUF);
	free(rendered);
	assert_int_equal(mkfifo(f->path, 0600), 0);
	set_output(f->path);
	for (int i = 0; i < 1000 && ret == 0; i++) {
		ret = metrics_flush(UTC_MS);
		flushed += ret == 0;
	}
	assert_int_equal(ret, -EAGAIN);

	reader = open(f->path, O_RDONLY | O_NONBLOCK);
	assert_true(reader >= 0);
	len = read_fifo(reader, content, 0, sizeof(content));
	assert_int_equal(metrics_flush(UTC_MS), 0);
	flushed++;
	len = read_fifo(reader, content, len, sizeof(content));
	close(reader);
	assert_true(len > 0 && content[len - 1] == '\n');
	for (line = strtok_r(content, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		static char whole[1 << 16];

		snprintf(whole, sizeof(whole), "%s\n", line);
		free_json(parse_line(whole));
		flushed--;
	}
	assert_int_equal(flushed, 0);
}

static void test_missed_log_lines_are_counted(void **state)
{
	struct fixture *f = *state;
	char err[256];
	json_t *root;

	assert_int_equal(mkfifo(f->path, 0600), 0);
	assert_int_equal(log_configure(f->path, true, true, err, sizeof(err)), 0);
	for (int i = 0; i < 100000 && log_missed_line_count() < 3; i++)
		log_warn("filling the FIFO with line %d", i);
	root = render();
	assert_int_equal(value_of(root, "logger", "missed_log_count"), 3);
	free_json(root);
	log_reset();
}

/* ---- limits ---- */

static void test_registration_errors_change_nothing(void **state)
{
	char long_name[METRICS_SECTION_NAME_MAX + 1];
	struct fake_disk disk = {0};
	char *before, *after;
	(void)state;

	memset(long_name, 'b', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(metrics_register("block_a", "block", report_fake_disk, &disk), 0);
	before = metrics_render(UTC_MS);

	assert_int_equal(metrics_register(NULL, NULL, report_nothing, NULL), -EINVAL);
	assert_int_equal(metrics_register("", NULL, report_nothing, NULL), -EINVAL);
	assert_int_equal(metrics_register("vsock", NULL, NULL, NULL), -EINVAL);
	assert_int_equal(metrics_register("vsock", "", report_nothing, NULL), -EINVAL);
	assert_int_equal(metrics_register(long_name, NULL, report_nothing, NULL), -ENAMETOOLONG);
	assert_int_equal(metrics_register("vsock", long_name, report_nothing, NULL), -ENAMETOOLONG);
	assert_int_equal(metrics_register("block_a", NULL, report_nothing, NULL), -EEXIST);
	assert_int_equal(metrics_register("vcpu", NULL, report_nothing, NULL), -EEXIST);
	assert_int_equal(metrics_register("utc_timestamp_ms", NULL, report_nothing, NULL), -EEXIST);
	assert_int_equal(metrics_register("vsock", "logger", report_nothing, NULL), -EEXIST);
	assert_int_equal(metrics_register("vsock", "vsock", report_nothing, NULL), -EINVAL);
	/* One level of aggregation: not into a contributor, nor an aggregate into another. */
	assert_int_equal(metrics_register("block_b", "block_a", report_nothing, NULL), -EINVAL);
	assert_int_equal(metrics_register("block", "all", report_nothing, NULL), -EINVAL);

	after = metrics_render(UTC_MS);
	assert_string_equal(before, after);
	free(before);
	free(after);
	long_name[METRICS_SECTION_NAME_MAX - 1] = '\0'; /* the longest name that fits */
	assert_int_equal(metrics_register(long_name, NULL, report_nothing, NULL), 0);
}

static void test_sections_are_limited(void **state)
{
	char name[32];
	(void)state;

	/* An aggregate takes a place too: 62 devices and their sum fill the 64. */
	for (int i = 0; i < METRICS_MAX_SECTIONS - 2; i++) {
		snprintf(name, sizeof(name), "net_%d", i);
		assert_int_equal(metrics_register(name, "net", report_nothing, NULL), 0);
	}
	assert_int_equal(metrics_register("block_a", "block", report_nothing, NULL), -ENOSPC);
	assert_int_equal(metrics_register("net_last", "net", report_nothing, NULL), 0);
	assert_int_equal(metrics_register("vsock", NULL, report_nothing, NULL), -ENOSPC);
	metrics_reset();
	assert_int_equal(metrics_register("vsock", NULL, report_nothing, NULL), 0);
}

static void report_too_much(void *opaque, struct metrics_section *section)
{
	char name[32];
	(void)opaque;

	for (int i = 0; i < METRICS_MAX_COUNTERS + 2; i++) {
		snprintf(name, sizeof(name), "counter_%d", i);
		metrics_counter(section, name, (uint64_t)i);
	}
	metrics_counter(section, "a_counter_name_much_too_long_to_be_one_of_firecrackers", 1);
}

static void test_counters_past_the_limits_are_dropped_and_counted(void **state)
{
	json_t *root;
	(void)state;

	assert_int_equal(metrics_register("vsock", NULL, report_too_much, NULL), 0);
	root = render();
	assert_int_equal(json_object_size(section_of(root, "vsock")), METRICS_MAX_COUNTERS);
	assert_int_equal(value_of(root, "vsock", "counter_47"), 47);
	assert_null(json_object_get(section_of(root, "vsock"), "counter_48"));
	/* Sections report before the fixed metrics are read: the drops show at once. */
	assert_int_equal(value_of(root, "logger", "metrics_fails"), 3);
	free_json(root);
}

static void test_names_are_escaped(void **state)
{
	json_t *root;
	(void)state;

	assert_int_equal(metrics_register("net_\"odd\\id\"\n", NULL, report_nothing, NULL), 0);
	root = render();
	assert_true(json_is_object(json_object_get(root, "net_\"odd\\id\"\n")));
	free_json(root);
}

/* A write to a pipe nobody reads: counted, and the writer carries on with EPIPE. */
static void test_sigpipe_is_counted_and_survived(void **state)
{
	char byte = 'x';
	int fds[2];
	json_t *root;
	(void)state;

	assert_int_equal(metrics_count_sigpipe(), 0);
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(write(fds[1], &byte, 1), -1);
		assert_int_equal(errno, EPIPE);
	}
	close(fds[1]);
	root = render();
	assert_int_equal(value_of(root, "signals", "sigpipe"), 2);
	free_json(root);
	signal(SIGPIPE, SIG_DFL);
}

/* jansson writes UTF-8 only: a section whose name is not is left out, and counted. */
static void test_a_name_that_is_not_utf8_is_left_out_and_counted(void **state)
{
	struct fake_disk disk = {.read_bytes = 9};
	json_t *root;
	(void)state;

	assert_int_equal(metrics_register("block_\xff\xfe", "block", report_fake_disk, &disk), 0);
	root = render();
	assert_int_equal(value_of(root, "block", "read_bytes"), 9);
	assert_int_equal(value_of(root, "logger", "metrics_fails"), 0); /* read before */
	free_json(root);
	root = render(); /* the first render's drop (renders move no baseline) */
	assert_int_equal(value_of(root, "logger", "metrics_fails"), 1);
	assert_null(json_object_get(root, "block_\xff\xfe"));
	free_json(root);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_line_is_one_json_object_stamped_first),
	    T(test_utc_now_is_the_realtime_clock_in_ms),
	    T(test_every_fixed_metric_has_firecrackers_name),
	    T(test_every_fixed_field_is_written),
	    T(test_each_counter_shows_its_increment_as_a_delta),
	    T(test_every_written_field_is_counted_somewhere),
	    T(test_latency_keeps_min_max_and_sum),
	    T(test_counters_are_deltas_and_stores_are_values),
	    T(test_render_does_not_move_the_baseline),
	    T(test_device_sections_are_written_as_deltas),
	    T(test_aggregate_is_the_sum_of_the_devices),
	    T(test_a_section_can_report_and_aggregate),
	    T(test_a_counter_that_goes_back_counts_from_zero),
	    T(test_counters_bumped_from_many_threads_add_up),
	    T(test_file_gets_one_line_appended_per_flush),
	    T(test_flush_without_output_writes_nothing_and_loses_nothing),
	    T(test_output_errors_and_a_second_output),
	    T(test_fifo_without_reader_does_not_block_and_counts_missed_lines),
	    T(test_fifo_gets_whole_lines_longer_than_pipe_buf),
	    T(test_missed_log_lines_are_counted),
	    T(test_registration_errors_change_nothing),
	    T(test_sections_are_limited),
	    T(test_counters_past_the_limits_are_dropped_and_counted),
	    T(test_names_are_escaped),
	    T(test_a_name_that_is_not_utf8_is_left_out_and_counted),
	    T(test_sigpipe_is_counted_and_survived),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
