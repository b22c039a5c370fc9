/* Unit tests for guest memory layout and checked access (memory.c) and log levels (log.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "memory.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* Two small hand-made regions with a hole between them, so that gap and straddling
 * checks can be exercised without gigabytes of host memory. */
#define LOW_SIZE  0x10000ULL
#define HIGH_GPA  0x20000ULL
#define HIGH_SIZE 0x10000ULL

struct two_regions {
	struct gmem mem;
	uint8_t *low;
	uint8_t *high;
};

static int two_regions_setup(void **state)
{
	struct two_regions *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	t->low = calloc(1, LOW_SIZE);
	t->high = calloc(1, HIGH_SIZE);
	if (!t->low || !t->high) {
		free(t->low);
		free(t->high);
		free(t);
		return -1;
	}
	t->mem.regions[0] = (struct gmem_region){.gpa = 0, .size = LOW_SIZE, .host = t->low};
	t->mem.regions[1] =
	    (struct gmem_region){.gpa = HIGH_GPA, .size = HIGH_SIZE, .host = t->high};
	t->mem.nr_regions = 2;
	t->mem.total_size = LOW_SIZE + HIGH_SIZE;
	*state = t;
	return 0;
}

static int two_regions_teardown(void **state)
{
	struct two_regions *t = *state;
	free(t->low);
	free(t->high);
	free(t);
	return 0;
}

static void test_layout_rejects_zero_and_unaligned_sizes(void **state)
{
	static const uint64_t bad[] = {0, 1, 0xfff, 0x1001, 64 * MiB + 0x800, 4 * GiB + 1};
	struct gmem mem;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&mem, 0xa5, sizeof(mem));
		assert_int_equal(gmem_layout(&mem, bad[i]), -EINVAL);
		/* A failed layout must not leave stale regions behind for gmem_ptr to use. */
		assert_int_equal(mem.nr_regions, 0);
		assert_int_equal(mem.total_size, 0);
	}
}

static void test_layout_below_gap_is_one_region_at_zero(void **state)
{
	static const uint64_t sizes[] = {0x1000, 2 * MiB, 64 * MiB, 0xc0000000ULL - 0x1000};
	struct gmem mem;
	(void)state;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(gmem_layout(&mem, sizes[i]), 0);
		assert_int_equal(mem.nr_regions, 1);
		assert_int_equal(mem.regions[0].gpa, 0);
		assert_int_equal(mem.regions[0].size, sizes[i]);
		assert_null(mem.regions[0].host);
		assert_int_equal(mem.total_size, sizes[i]);
	}
}

static void test_layout_exactly_gap_start_is_still_one_region(void **state)
{
	struct gmem mem;
	(void)state;

	assert_int_equal(gmem_layout(&mem, GMEM_GAP_START), 0);
	assert_int_equal(mem.nr_regions, 1);
	assert_int_equal(mem.regions[0].size, GMEM_GAP_START);
	assert_int_equal(gmem_low_end(&mem), GMEM_GAP_START);
}

static void test_layout_above_gap_splits_around_the_hole(void **state)
{
	struct gmem mem;
	(void)state;

	assert_int_equal(gmem_layout(&mem, 8 * GiB), 0);
	assert_int_equal(mem.nr_regions, 2);
	assert_int_equal(mem.regions[0].gpa, 0);
	assert_int_equal(mem.regions[0].size, GMEM_GAP_START);
	assert_int_equal(mem.regions[1].gpa, GMEM_GAP_END);
	assert_int_equal(mem.regions[1].size, 8 * GiB - GMEM_GAP_START);
	assert_null(mem.regions[0].host);
	assert_null(mem.regions[1].host);
	assert_int_equal(mem.total_size, 8 * GiB);
	assert_int_equal(mem.regions[0].size + mem.regions[1].size, mem.total_size);
}

static void test_layout_one_page_above_gap_gives_one_page_high_region(void **state)
{
	struct gmem mem;
	(void)state;

	assert_int_equal(gmem_layout(&mem, GMEM_GAP_START + 0x1000), 0);
	assert_int_equal(mem.nr_regions, 2);
	assert_int_equal(mem.regions[1].gpa, GMEM_GAP_END);
	assert_int_equal(mem.regions[1].size, 0x1000);
}

static void test_low_end_is_end_of_region_at_zero(void **state)
{
	struct gmem mem;
	(void)state;

	memset(&mem, 0, sizeof(mem));
	assert_int_equal(gmem_low_end(&mem), 0);
	assert_int_equal(gmem_layout(&mem, 64 * MiB), 0);
	assert_int_equal(gmem_low_end(&mem), 64 * MiB);
	assert_int_equal(gmem_layout(&mem, 5 * GiB), 0);
	assert_int_equal(gmem_low_end(&mem), GMEM_GAP_START);
}

static void test_ptr_translates_addresses_in_both_regions(void **state)
{
	struct two_regions *t = *state;

	assert_ptr_equal(gmem_ptr(&t->mem, 0, 1), t->low);
	assert_ptr_equal(gmem_ptr(&t->mem, 0x1234, 16), t->low + 0x1234);
	assert_ptr_equal(gmem_ptr(&t->mem, HIGH_GPA, 1), t->high);
	assert_ptr_equal(gmem_ptr(&t->mem, HIGH_GPA + 0x10, 0x100), t->high + 0x10);
}

static void test_ptr_accepts_range_ending_exactly_at_region_end(void **state)
{
	struct two_regions *t = *state;

	assert_ptr_equal(gmem_ptr(&t->mem, 0, LOW_SIZE), t->low);
	assert_ptr_equal(gmem_ptr(&t->mem, LOW_SIZE - 8, 8), t->low + LOW_SIZE - 8);
	assert_ptr_equal(gmem_ptr(&t->mem, HIGH_GPA + HIGH_SIZE - 1, 1), t->high + HIGH_SIZE - 1);
}

static void test_ptr_rejects_range_one_byte_past_region_end(void **state)
{
	struct two_regions *t = *state;

	assert_null(gmem_ptr(&t->mem, 0, LOW_SIZE + 1));
	assert_null(gmem_ptr(&t->mem, LOW_SIZE - 8, 9));
	assert_null(gmem_ptr(&t->mem, HIGH_GPA + HIGH_SIZE - 1, 2));
	assert_null(gmem_ptr(&t->mem, HIGH_GPA + HIGH_SIZE, 1));
}

static void test_ptr_rejects_addresses_in_the_hole_and_ranges_straddling_it(void **state)
{
	struct two_regions *t = *state;

	assert_null(gmem_ptr(&t->mem, LOW_SIZE, 1));
	assert_null(gmem_ptr(&t->mem, (LOW_SIZE + HIGH_GPA) / 2, 1));
	assert_null(gmem_ptr(&t->mem, HIGH_GPA - 1, 1));
	assert_null(gmem_ptr(&t->mem, LOW_SIZE - 0x10, 0x20));
	assert_null(gmem_ptr(&t->mem, HIGH_GPA - 0x10, 0x20));
	/* Spanning the whole hole from one region into the other is still not one region. */
	assert_null(gmem_ptr(&t->mem, LOW_SIZE - 1, HIGH_GPA - LOW_SIZE + 2));
}

static void test_ptr_rejects_range_across_two_adjacent_regions(void **state)
{
	uint8_t *a = calloc(1, 0x1000);
	uint8_t *b = calloc(1, 0x1000);
	struct gmem mem = {.nr_regions = 2, .total_size = 0x2000};
	(void)state;

	assert_non_null(a);
	assert_non_null(b);
	mem.regions[0] = (struct gmem_region){.gpa = 0, .size = 0x1000, .host = a};
	mem.regions[1] = (struct gmem_region){.gpa = 0x1000, .size = 0x1000, .host = b};
	/* The host buffers are not contiguous, so a range across both must be refused. */
	assert_null(gmem_ptr(&mem, 0xff0, 0x20));
	assert_ptr_equal(gmem_ptr(&mem, 0x1000, 0x20), b);
	free(a);
	free(b);
}

static void test_ptr_rejects_lengths_that_would_wrap_around(void **state)
{
	struct two_regions *t = *state;

	assert_null(gmem_ptr(&t->mem, 0x10, UINT64_MAX));
	assert_null(gmem_ptr(&t->mem, 0x10, UINT64_MAX - 0xf));
	assert_null(gmem_ptr(&t->mem, 0x10, UINT64_MAX - 0x8));
	assert_null(gmem_ptr(&t->mem, HIGH_GPA + 0x10, UINT64_MAX - HIGH_GPA));
	assert_null(gmem_ptr(&t->mem, UINT64_MAX, 1));
	assert_null(gmem_ptr(&t->mem, UINT64_MAX, 2));
	assert_null(gmem_ptr(&t->mem, UINT64_MAX - 0xff, 0x200));
}

static void test_ptr_returns_null_for_region_without_host_memory(void **state)
{
	struct gmem mem;
	(void)state;

	assert_int_equal(gmem_layout(&mem, 64 * MiB), 0);
	assert_null(gmem_ptr(&mem, 0x1000, 8));
	assert_int_equal(gmem_layout(&mem, 8 * GiB), 0);
	assert_null(gmem_ptr(&mem, GMEM_GAP_END, 8));
}

static void test_ptr_on_empty_gmem_returns_null(void **state)
{
	struct gmem mem;
	(void)state;

	memset(&mem, 0, sizeof(mem));
	assert_null(gmem_ptr(&mem, 0, 1));
	assert_null(gmem_ptr(&mem, 0, 0));
}

static void test_write_then_read_round_trips(void **state)
{
	struct two_regions *t = *state;
	const uint8_t data[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
	uint8_t back[sizeof(data)];

	assert_int_equal(gmem_write(&t->mem, HIGH_GPA + 0x100, data, sizeof(data)), 0);
	assert_memory_equal(t->high + 0x100, data, sizeof(data));
	memset(back, 0, sizeof(back));
	assert_int_equal(gmem_read(&t->mem, back, HIGH_GPA + 0x100, sizeof(back)), 0);
	assert_memory_equal(back, data, sizeof(data));
}

static void test_write_out_of_range_fails_and_writes_nothing(void **state)
{
	struct two_regions *t = *state;
	const uint8_t data[0x20] = {0xee};
	uint8_t zeros[0x20];

	memset(zeros, 0, sizeof(zeros));
	assert_int_equal(gmem_write(&t->mem, LOW_SIZE - 0x10, data, sizeof(data)), -EFAULT);
	assert_memory_equal(t->low + LOW_SIZE - 0x10, zeros, 0x10);
	assert_int_equal(gmem_write(&t->mem, HIGH_GPA - 0x10, data, sizeof(data)), -EFAULT);
	assert_memory_equal(t->high, zeros, 0x10);
	assert_int_equal(gmem_write(&t->mem, UINT64_MAX - 1, data, sizeof(data)), -EFAULT);
}

static void test_read_out_of_range_fails_and_leaves_destination_alone(void **state)
{
	struct two_regions *t = *state;
	uint8_t dst[0x20];
	uint8_t expect[0x20];

	memset(dst, 0x5a, sizeof(dst));
	memcpy(expect, dst, sizeof(dst));
	assert_int_equal(gmem_read(&t->mem, dst, HIGH_GPA + HIGH_SIZE - 0x10, sizeof(dst)),
			 -EFAULT);
	assert_memory_equal(dst, expect, sizeof(dst));
	assert_int_equal(gmem_read(&t->mem, dst, LOW_SIZE, 1), -EFAULT);
	assert_memory_equal(dst, expect, sizeof(dst));
}

static void test_map_anonymous_backs_every_region_and_unmap_clears_it(void **state)
{
	struct gmem mem;
	uint64_t value = 0x1122334455667788ULL;
	uint64_t back = 0;
	(void)state;

	assert_int_equal(gmem_layout(&mem, 4 * MiB), 0);
	assert_int_equal(gmem_map_anonymous(&mem), 0);
	assert_non_null(mem.regions[0].host);
	assert_int_equal(gmem_write(&mem, 4 * MiB - 8, &value, sizeof(value)), 0);
	assert_int_equal(gmem_read(&mem, &back, 4 * MiB - 8, sizeof(back)), 0);
	assert_int_equal(back, value);
	gmem_unmap(&mem);
	assert_null(mem.regions[0].host);
	assert_null(gmem_ptr(&mem, 0, 1));
}

static void test_log_parse_level_accepts_every_name_in_any_case(void **state)
{
	static const struct {
		const char *name;
		enum log_level level;
	} cases[] = {
	    {"error", LOG_LEVEL_ERROR}, {"ERROR", LOG_LEVEL_ERROR},  {"Warn", LOG_LEVEL_WARN},
	    {"warn", LOG_LEVEL_WARN},	{"warning", LOG_LEVEL_WARN}, {"WARNING", LOG_LEVEL_WARN},
	    {"info", LOG_LEVEL_INFO},	{"InFo", LOG_LEVEL_INFO},    {"debug", LOG_LEVEL_DEBUG},
	    {"DEBUG", LOG_LEVEL_DEBUG},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Start from a level different from the expected one so a no-op is caught. */
		enum log_level level =
		    cases[i].level == LOG_LEVEL_DEBUG ? LOG_LEVEL_ERROR : LOG_LEVEL_DEBUG;
		assert_int_equal(log_parse_level(cases[i].name, &level), 0);
		assert_int_equal(level, cases[i].level);
	}
}

static void test_log_parse_level_rejects_unknown_names_and_keeps_level(void **state)
{
	static const char *const bad[] = {"",	   "err",     "errors", "warnings", "information",
					  "trace", "verbose", " info",	"info ",    "3"};
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum log_level level = LOG_LEVEL_INFO;
		assert_int_equal(log_parse_level(bad[i], &level), -EINVAL);
		assert_int_equal(level, LOG_LEVEL_INFO);
	}
}

static void test_log_set_level_is_returned_by_get_level(void **state)
{
	enum log_level saved = log_get_level();
	(void)state;

	log_set_level(LOG_LEVEL_DEBUG);
	assert_int_equal(log_get_level(), LOG_LEVEL_DEBUG);
	log_set_level(LOG_LEVEL_ERROR);
	assert_int_equal(log_get_level(), LOG_LEVEL_ERROR);
	log_set_level(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_rejects_zero_and_unaligned_sizes),
	    cmocka_unit_test(test_layout_below_gap_is_one_region_at_zero),
	    cmocka_unit_test(test_layout_exactly_gap_start_is_still_one_region),
	    cmocka_unit_test(test_layout_above_gap_splits_around_the_hole),
	    cmocka_unit_test(test_layout_one_page_above_gap_gives_one_page_high_region),
	    cmocka_unit_test(test_low_end_is_end_of_region_at_zero),
	    cmocka_unit_test_setup_teardown(test_ptr_translates_addresses_in_both_regions,
					    two_regions_setup, two_regions_teardown),
	    cmocka_unit_test_setup_teardown(test_ptr_accepts_range_ending_exactly_at_region_end,
					    two_regions_setup, two_regions_teardown),
	    cmocka_unit_test_setup_teardown(test_ptr_rejects_range_one_byte_past_region_end,
					    two_regions_setup, two_regions_teardown),
	    cmocka_unit_test_setup_teardown(
		test_ptr_rejects_addresses_in_the_hole_and_ranges_straddling_it, two_regions_setup,
		two_regions_teardown),
	    cmocka_unit_test(test_ptr_rejects_range_across_two_adjacent_regions),
	    cmocka_unit_test_setup_teardown(test_ptr_rejects_lengths_that_would_wrap_around,
					    two_regions_setup, two_regions_teardown),
	    cmocka_unit_test(test_ptr_returns_null_for_region_without_host_memory),
	    cmocka_unit_test(test_ptr_on_empty_gmem_returns_null),
	    cmocka_unit_test_setup_teardown(test_write_then_read_round_trips, two_regions_setup,
					    two_regions_teardown),
	    cmocka_unit_test_setup_teardown(test_write_out_of_range_fails_and_writes_nothing,
					    two_regions_setup, two_regions_teardown),
	    cmocka_unit_test_setup_teardown(
		test_read_out_of_range_fails_and_leaves_destination_alone, two_regions_setup,
		two_regions_teardown),
	    cmocka_unit_test(test_map_anonymous_backs_every_region_and_unmap_clears_it),
	    cmocka_unit_test(test_log_parse_level_accepts_every_name_in_any_case),
	    cmocka_unit_test(test_log_parse_level_rejects_unknown_names_and_keeps_level),
	    cmocka_unit_test(test_log_set_level_is_returned_by_get_level),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
