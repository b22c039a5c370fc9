/*
 * Unit tests for the balloon's API (api/api.c, api/fc_balloon.c): PUT, PATCH and GET
 * /balloon, GET and PATCH /balloon/statistics, the config file's "balloon", GET
 * /vm/config and the round trip a snapshot makes through fc_vm_config_parse. The VMM is a
 * fake ops table that records what the API asked of it; bodies are written with single
 * quotes ({'a': 1}) and turned into JSON before they are sent.
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

#include "../../api/api.h"
#include "api_request.h"
#include "../../api/fc_balloon.h"
#include "../../api/fc_config.h"

#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_AFTER_START	 "The requested operation is not supported after starting the microVM."

static struct fake {
	unsigned int targets, intervals, stats_calls;
	uint32_t target;
	uint16_t interval;
	int target_ret;
	struct balloon_stats stats;
	struct vmm_config started; /* the configuration InstanceStart got */
} fake;

static int fake_start(void *opaque, const struct vmm_config *config, char *err, size_t size)
{
	(void)opaque, (void)err, (void)size;
	fake.started = *config;
	return 0;
}

static int fake_open_check(void *opaque, const char *path, int flags)
{
	(void)opaque, (void)path, (void)flags;
	return 0;
}

static int fake_set_target(void *opaque, uint32_t amount_mib, char *err, size_t size)
{
	(void)opaque;
	fake.targets++;
	fake.target = amount_mib;
	if (fake.target_ret == -ENODEV)
		snprintf(err, size, FC_MSG_BALLOON_NOT_ACTIVE);
	return fake.target_ret;
}

static int fake_set_interval(void *opaque, uint16_t interval_s, char *err, size_t size)
{
	(void)opaque, (void)err, (void)size;
	fake.intervals++;
	fake.interval = interval_s;
	return 0;
}

static int fake_stats(void *opaque, struct balloon_stats *stats, char *err, size_t size)
{
	(void)opaque, (void)err, (void)size;
	fake.stats_calls++;
	*stats = fake.stats;
	return 0;
}

static const struct api_vmm_ops ops = {
    .start = fake_start,
    .open_check = fake_open_check,
    .balloon_set_target = fake_set_target,
    .balloon_set_stats_interval = fake_set_interval,
    .balloon_stats = fake_stats,
};

static int setup(void **state)
{
	static struct vmm_config defaults;
	(void)state;

	memset(&fake, 0, sizeof(fake));
	config_set_defaults(&defaults);
	api_state_init(&api, &defaults, "1.2.3", &ops, NULL);
	return 0;
}

static void refused_saying(enum http_method method, const char *path, const char *body,
			   const char *fragment)
{
	expect(400, method, path, body);
	if (!strstr(text, fragment))
		fail_msg("%s %s: '%s' does not say '%s'", path, body ? body : "", text, fragment);
}

/* `text` is the JSON object `single_quoted` (keys in any order). */
static void reply_is(const char *single_quoted)
{
	char *expected_text = strdup(single_quoted);
	json_t *expected, *got;

	quotes(expected_text);
	expected = json_loads(expected_text, 0, NULL);
	got = json_loads(text, 0, NULL);
	assert_non_null(expected);
	assert_non_null(got);
	if (!json_equal(expected, got))
		fail_msg("got %s, expected %s", text, expected_text);
	json_decref(expected);
	json_decref(got);
	free(expected_text);
}

#define BALLOON_BODY                                                                               \
	"{'amount_mib': 64, 'deflate_on_oom': true, 'stats_polling_interval_s': 2, "               \
	"'free_page_reporting': true}"

static void boot(void)
{
	expect(204, HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}");
	expect(204, HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}");
}

static void test_put_configures_the_balloon_and_get_shows_it(void **state)
{
	(void)state;
	refused(HTTP_GET, "/balloon", NULL, FC_MSG_BALLOON_NOT_FOUND);
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	expect(200, HTTP_GET, "/balloon", NULL);
	reply_is("{'amount_mib': 64, 'deflate_on_oom': true, 'stats_polling_interval_s': 2, "
		 "'free_page_hinting': false, 'free_page_reporting': true}");
	/* A PUT replaces: what it leaves out takes its default. */
	expect(204, HTTP_PUT, "/balloon", "{'amount_mib': 0, 'deflate_on_oom': false}");
	expect(200, HTTP_GET, "/balloon", NULL);
	reply_is("{'amount_mib': 0, 'deflate_on_oom': false, 'stats_polling_interval_s': 0, "
		 "'free_page_hinting': false, 'free_page_reporting': false}");
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	boot();
	assert_true(fake.started.balloon.configured);
	assert_int_equal(fake.started.balloon.amount_mib, 64);
	assert_true(fake.started.balloon.deflate_on_oom);
	assert_int_equal(fake.started.balloon.stats_polling_interval_s, 2);
	assert_true(fake.started.balloon.free_page_reporting);
	refused(HTTP_PUT, "/balloon", BALLOON_BODY, MSG_AFTER_START);
}

static void test_put_refuses_bad_bodies_naming_the_field(void **state)
{
	(void)state;
	refused_saying(HTTP_PUT, "/balloon", "{'deflate_on_oom': true}", "amount_mib");
	refused_saying(HTTP_PUT, "/balloon", "{'amount_mib': 1}", "deflate_on_oom");
	refused_saying(HTTP_PUT, "/balloon", "{'amount_mib': -1, 'deflate_on_oom': true}",
		       "amount_mib");
	refused_saying(HTTP_PUT, "/balloon", "{'amount_mib': 4294967296, 'deflate_on_oom': true}",
		       "amount_mib");
	refused_saying(HTTP_PUT, "/balloon",
		       "{'amount_mib': 1, 'deflate_on_oom': true, 'stats_polling_interval_s': "
		       "65536}",
		       "stats_polling_interval_s");
	refused_saying(HTTP_PUT, "/balloon",
		       "{'amount_mib': 1, 'deflate_on_oom': true, 'stats_polling_interval_s': "
		       "null}",
		       "stats_polling_interval_s");
	refused_saying(HTTP_PUT, "/balloon", "{'amount_mib': 1, 'deflate_on_oom': true, 'x': 1}",
		       "x");
	refused_saying(HTTP_PUT, "/balloon",
		       "{'amount_mib': 1, 'deflate_on_oom': true, 'free_page_hinting': true}",
		       "free page hinting is not supported");
	/* More than the machine's memory (128 MiB by default), as Firecracker refuses it. */
	refused_saying(HTTP_PUT, "/balloon", "{'amount_mib': 129, 'deflate_on_oom': true}",
		       FC_MSG_BALLOON_TOO_LARGE);
	refused(HTTP_GET, "/balloon", NULL, FC_MSG_BALLOON_NOT_FOUND);
	expect(204, HTTP_PUT, "/balloon", "{'amount_mib': 128, 'deflate_on_oom': true}");
}

static void test_memory_may_not_shrink_below_the_balloon(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", "{'amount_mib': 100, 'deflate_on_oom': false}");
	refused(HTTP_PATCH, "/machine-config", "{'mem_size_mib': 99}",
		FC_MSG_BALLOON_MEM_TOO_SMALL);
	refused(HTTP_PUT, "/machine-config", "{'vcpu_count': 1, 'mem_size_mib': 64}",
		FC_MSG_BALLOON_MEM_TOO_SMALL);
	expect(200, HTTP_GET, "/machine-config", NULL);
	assert_non_null(strstr(text, "\"mem_size_mib\":128"));
	expect(204, HTTP_PATCH, "/machine-config", "{'mem_size_mib': 100}");
}

static void test_patch_and_statistics_are_refused_before_boot(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	refused(HTTP_PATCH, "/balloon", "{'amount_mib': 1}", MSG_BEFORE_START);
	refused(HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 1}",
		MSG_BEFORE_START);
	refused(HTTP_GET, "/balloon/statistics", NULL, MSG_BEFORE_START);
	assert_int_equal(fake.targets + fake.intervals + fake.stats_calls, 0);
}

static void test_patch_sets_the_running_target(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	boot();
	expect(204, HTTP_PATCH, "/balloon", "{'amount_mib': 32}");
	assert_int_equal(fake.targets, 1);
	assert_int_equal(fake.target, 32);
	expect(200, HTTP_GET, "/balloon", NULL);
	assert_non_null(strstr(text, "\"amount_mib\":32"));
	refused_saying(HTTP_PATCH, "/balloon", "{'amount_mib': 129}", FC_MSG_BALLOON_TOO_LARGE);
	refused_saying(HTTP_PATCH, "/balloon", "{'amount_mib': 1, 'deflate_on_oom': true}",
		       "deflate_on_oom");
	refused_saying(HTTP_PATCH, "/balloon", "{}", "amount_mib");
	assert_int_equal(fake.targets, 1);
	/* The guest's driver has not activated the device: the VMM's refusal, kept out. */
	fake.target_ret = -ENODEV;
	refused(HTTP_PATCH, "/balloon", "{'amount_mib': 8}", FC_MSG_BALLOON_NOT_ACTIVE);
	expect(200, HTTP_GET, "/balloon", NULL);
	assert_non_null(strstr(text, "\"amount_mib\":32"));
}

static void test_balloon_requests_without_a_balloon_say_so(void **state)
{
	(void)state;
	boot();
	refused(HTTP_GET, "/balloon", NULL, FC_MSG_BALLOON_NOT_FOUND);
	refused(HTTP_PATCH, "/balloon", "{'amount_mib': 1}", FC_MSG_BALLOON_NOT_FOUND);
	refused(HTTP_GET, "/balloon/statistics", NULL, FC_MSG_BALLOON_NOT_FOUND);
	refused(HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 1}",
		FC_MSG_BALLOON_NOT_FOUND);
	assert_int_equal(fake.targets + fake.intervals + fake.stats_calls, 0);
}

static void test_statistics_report_every_field_the_guest_sent(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	boot();
	fake.stats.target_pages = 64 * 256;
	fake.stats.actual_pages = 1000;
	for (unsigned int tag = 0; tag < BALLOON_NR_STATS; tag++)
		fake.stats.values[tag] = 100 + tag;
	fake.stats.present = (1u << BALLOON_NR_STATS) - 1;
	expect(200, HTTP_GET, "/balloon/statistics", NULL);
	reply_is("{'target_pages': 16384, 'actual_pages': 1000, 'target_mib': 64, 'actual_mib': 3, "
		 "'swap_in': 100, 'swap_out': 101, 'major_faults': 102, 'minor_faults': 103, "
		 "'free_memory': 104, 'total_memory': 105, 'available_memory': 106, "
		 "'disk_caches': 107, 'hugetlb_allocations': 108, 'hugetlb_failures': 109, "
		 "'oom_kill': 110, 'alloc_stall': 111, 'async_scan': 112, 'direct_scan': 113, "
		 "'async_reclaim': 114, 'direct_reclaim': 115}");
	/* Only what the guest sent: an older guest has none of the newer fields. */
	fake.stats.present = (1u << BALLOON_STAT_FREE_MEMORY) | (1u << BALLOON_STAT_TOTAL_MEMORY);
	fake.stats.values[BALLOON_STAT_FREE_MEMORY] = UINT64_MAX;
	expect(200, HTTP_GET, "/balloon/statistics", NULL);
	reply_is("{'target_pages': 16384, 'actual_pages': 1000, 'target_mib': 64, 'actual_mib': 3, "
		 "'free_memory': 9223372036854775807, 'total_memory': 105}");
}

static void test_statistics_cannot_be_turned_on_or_off_after_boot(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	boot();
	refused(HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 0}",
		FC_MSG_BALLOON_STATS_CHANGE);
	expect(204, HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 7}");
	assert_int_equal(fake.intervals, 1);
	assert_int_equal(fake.interval, 7);
	expect(200, HTTP_GET, "/balloon", NULL);
	assert_non_null(strstr(text, "\"stats_polling_interval_s\":7"));
	/* The same interval again: nothing to do. */
	expect(204, HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 7}");
	assert_int_equal(fake.intervals, 1);
	refused_saying(HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 70000}",
		       "stats_polling_interval_s");
}

static void test_statistics_without_polling_are_refused_with_firecrackers_texts(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", "{'amount_mib': 0, 'deflate_on_oom': false}");
	boot();
	refused(HTTP_GET, "/balloon/statistics", NULL, FC_MSG_BALLOON_NO_STATS);
	refused(HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 3}",
		FC_MSG_BALLOON_STATS_CHANGE);
	expect(204, HTTP_PATCH, "/balloon/statistics", "{'stats_polling_interval_s': 0}");
	assert_int_equal(fake.intervals + fake.stats_calls, 0);
}

static void test_hinting_paths_are_a_clear_400(void **state)
{
	(void)state;
	refused_saying(HTTP_PATCH, "/balloon/hinting/start", "{}", "not supported");
	refused_saying(HTTP_GET, "/balloon/hinting/status", NULL, "not supported");
	refused_saying(HTTP_PUT, "/balloon/statistics", "{'stats_polling_interval_s': 1}",
		       "Invalid request method");
}

static void test_a_balloon_ends_the_chance_to_load_a_snapshot(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	refused(HTTP_PUT, "/snapshot/load", "{'snapshot_path': '/s', 'mem_file_path': '/m'}",
		API_MSG_LOAD_AFTER_CONFIG);
}

static void test_vm_config_and_the_snapshot_round_trip_keep_the_balloon(void **state)
{
	struct vmm_config *parsed = malloc(sizeof(*parsed));
	char err[FC_ERROR_MAX];
	char *dumped;
	json_t *json;
	(void)state;

	expect(200, HTTP_GET, "/vm/config", NULL);
	assert_non_null(strstr(text, "\"balloon\":null"));
	expect(204, HTTP_PUT, "/balloon", BALLOON_BODY);
	expect(204, HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}");
	expect(200, HTTP_GET, "/vm/config", NULL);
	assert_non_null(strstr(text, "\"balloon\":{\"amount_mib\":64,\"deflate_on_oom\":true,"
				     "\"stats_polling_interval_s\":2,\"free_page_hinting\":false,"
				     "\"free_page_reporting\":true}"));
	/* What a snapshot saves comes back field for field. */
	assert_int_equal(fc_vm_config_parse(text, strlen(text), parsed, err, sizeof(err)), 0);
	assert_true(parsed->balloon.configured);
	assert_int_equal(parsed->balloon.amount_mib, 64);
	assert_true(parsed->balloon.deflate_on_oom);
	assert_int_equal(parsed->balloon.stats_polling_interval_s, 2);
	assert_true(parsed->balloon.free_page_reporting);
	json = fc_vm_config_json(parsed);
	dumped = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(dumped, text);
	free(dumped);
	json_decref(json);
	free(parsed);
}

static void test_the_config_file_takes_a_balloon(void **state)
{
	struct vmm_config *config = malloc(sizeof(*config));
	char err[FC_ERROR_MAX];
	char body[1024];
	(void)state;

	config_set_defaults(config);
	snprintf(body, sizeof(body), "%s",
		 "{'boot-source': {'kernel_image_path': '/k'}, 'machine-config': {'vcpu_count': 1, "
		 "'mem_size_mib': 256}, 'balloon': {'amount_mib': 200, 'deflate_on_oom': false, "
		 "'free_page_reporting': true}}");
	quotes(body);
	assert_int_equal(fc_config_file_parse(body, strlen(body), config, err, sizeof(err)), 0);
	assert_true(config->balloon.configured);
	assert_int_equal(config->balloon.amount_mib, 200);
	assert_false(config->balloon.deflate_on_oom);
	assert_true(config->balloon.free_page_reporting);
	/* Errors name the key; a refused file changes nothing. */
	config_set_defaults(config);
	snprintf(body, sizeof(body), "%s",
		 "{'boot-source': {'kernel_image_path': '/k'}, 'balloon': {'amount_mib': 1}}");
	quotes(body);
	assert_int_equal(fc_config_file_parse(body, strlen(body), config, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "balloon: missing required field 'deflate_on_oom'"));
	assert_false(config->balloon.configured);
	snprintf(body, sizeof(body), "%s",
		 "{'boot-source': {'kernel_image_path': '/k'}, 'balloon': {'amount_mib': 129, "
		 "'deflate_on_oom': true}}");
	quotes(body);
	assert_int_equal(fc_config_file_parse(body, strlen(body), config, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, FC_MSG_BALLOON_TOO_LARGE));
	/* null: no balloon, as GET /vm/config writes it. */
	snprintf(body, sizeof(body), "%s",
		 "{'boot-source': {'kernel_image_path': '/k'}, 'balloon': null}");
	quotes(body);
	assert_int_equal(fc_config_file_parse(body, strlen(body), config, err, sizeof(err)), 0);
	assert_false(config->balloon.configured);
	free(config);
}

#define T(name) cmocka_unit_test_setup(name, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_put_configures_the_balloon_and_get_shows_it),
	    T(test_put_refuses_bad_bodies_naming_the_field),
	    T(test_memory_may_not_shrink_below_the_balloon),
	    T(test_patch_and_statistics_are_refused_before_boot),
	    T(test_patch_sets_the_running_target),
	    T(test_balloon_requests_without_a_balloon_say_so),
	    T(test_statistics_report_every_field_the_guest_sent),
	    T(test_statistics_cannot_be_turned_on_or_off_after_boot),
	    T(test_statistics_without_polling_are_refused_with_firecrackers_texts),
	    T(test_hinting_paths_are_a_clear_400),
	    T(test_a_balloon_ends_the_chance_to_load_a_snapshot),
	    T(test_vm_config_and_the_snapshot_round_trip_keep_the_balloon),
	    T(test_the_config_file_takes_a_balloon),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
