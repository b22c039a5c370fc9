/* Unit tests for the address-range bus (bus.c): range registration and dispatch of reads
 * and writes to fake devices that record what they were asked. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus.h"

struct fake_device {
	unsigned int reads, writes;
	uint64_t offset;
	uint32_t len;
	uint8_t written[8];
	uint8_t tag; /* what reads return: tag + offset + byte index */
};

static void fake_read(void *device, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct fake_device *d = device;
	d->reads++;
	d->offset = offset;
	d->len = len;
	for (uint32_t i = 0; i < len; i++)
		data[i] = (uint8_t)(d->tag + offset + i);
}

static void fake_write(void *device, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct fake_device *d = device;
	d->writes++;
	d->offset = offset;
	d->len = len;
	memcpy(d->written, data, len < sizeof(d->written) ? len : sizeof(d->written));
}

static const struct device_ops fake_ops = {
    .name = "fake",
    .read = fake_read,
    .write = fake_write,
};

static const struct device_ops no_access_ops = {.name = "mute"};

struct fixture {
	struct bus bus;
	struct fake_device a, b;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->a.tag = 0x10;
	f->b.tag = 0x80;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

/* ---- bus_add ---- */

static void test_add_records_ranges(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(bus_add(&f->bus, 0x3f8, 8, &fake_ops, &f->a), 0);
	assert_int_equal(bus_add(&f->bus, 0x60, 5, &fake_ops, &f->b), 0);
	assert_int_equal(f->bus.nr_ranges, 2);
	assert_int_equal(f->bus.ranges[0].base, 0x3f8);
	assert_int_equal(f->bus.ranges[0].size, 8);
	assert_ptr_equal(f->bus.ranges[0].ops, &fake_ops);
	assert_ptr_equal(f->bus.ranges[0].device, &f->a);
	assert_int_equal(f->bus.ranges[1].base, 0x60);
	assert_ptr_equal(f->bus.ranges[1].device, &f->b);
}

static void test_add_rejects_empty_range(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(bus_add(&f->bus, 0x1000, 0, &fake_ops, &f->a), -EINVAL);
	assert_int_equal(bus_add(&f->bus, 0, 0, &fake_ops, &f->a), -EINVAL);
	assert_int_equal(f->bus.nr_ranges, 0);
}

static void test_add_rejects_wrapping_range(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(bus_add(&f->bus, UINT64_MAX - 0xf, 0x20, &fake_ops, &f->a), -EINVAL);
	assert_int_equal(bus_add(&f->bus, 1, UINT64_MAX, &fake_ops, &f->a), -EINVAL);
	assert_int_equal(bus_add(&f->bus, UINT64_MAX, UINT64_MAX, &fake_ops, &f->a), -EINVAL);
	assert_int_equal(f->bus.nr_ranges, 0);
}

static void test_add_accepts_range_ending_just_below_top_of_address_space(void **state)
{
	struct fixture *f = *state;
	uint8_t data[2];

	assert_int_equal(bus_add(&f->bus, UINT64_MAX - 0x10, 0x10, &fake_ops, &f->a), 0);
	assert_true(bus_read(&f->bus, UINT64_MAX - 2, data, 2));
	assert_int_equal(f->a.offset, 0xe);
	/* The last byte of the space is not part of the range. */
	assert_false(bus_read(&f->bus, UINT64_MAX - 1, data, 2));
	assert_false(bus_read(&f->bus, UINT64_MAX, data, 1));
	assert_int_equal(f->a.reads, 1);
}

static void test_add_rejects_overlaps_with_eexist(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(bus_add(&f->bus, 0x100, 0x10, &fake_ops, &f->a), 0);
	assert_int_equal(bus_add(&f->bus, 0x100, 0x10, &fake_ops, &f->b), -EEXIST); /* same */
	assert_int_equal(bus_add(&f->bus, 0xf8, 0x10, &fake_ops, &f->b), -EEXIST);  /* low */
	assert_int_equal(bus_add(&f->bus, 0x10f, 0x10, &fake_ops, &f->b), -EEXIST); /* high */
	assert_int_equal(bus_add(&f->bus, 0x104, 0x4, &fake_ops, &f->b), -EEXIST);  /* inside */
	assert_int_equal(bus_add(&f->bus, 0x0, 0x1000, &fake_ops, &f->b), -EEXIST); /* around */
	assert_int_equal(bus_add(&f->bus, 0x10f, 1, &fake_ops, &f->b), -EEXIST);    /* last */
	assert_int_equal(bus_add(&f->bus, 0x100, 1, &fake_ops, &f->b), -EEXIST);    /* first */
	assert_int_equal(f->bus.nr_ranges, 1);

	/* Ranges that only touch are fine on both sides. */
	assert_int_equal(bus_add(&f->bus, 0xf0, 0x10, &fake_ops, &f->b), 0);
	assert_int_equal(bus_add(&f->bus, 0x110, 0x10, &fake_ops, &f->b), 0);
	assert_int_equal(f->bus.nr_ranges, 3);
}

static void test_add_rejects_more_than_max_ranges_with_enospc(void **state)
{
	struct fixture *f = *state;

	for (unsigned int i = 0; i < BUS_MAX_RANGES; i++)
		assert_int_equal(bus_add(&f->bus, 0x1000 + i * 0x10, 0x10, &fake_ops, &f->a), 0);
	assert_int_equal(f->bus.nr_ranges, BUS_MAX_RANGES);
	assert_int_equal(bus_add(&f->bus, 0x9000, 0x10, &fake_ops, &f->b), -ENOSPC);
	assert_int_equal(f->bus.nr_ranges, BUS_MAX_RANGES);
	/* The last range added still works; the rejected one does not. */
	uint8_t data;
	assert_true(bus_read(&f->bus, 0x1000 + (BUS_MAX_RANGES - 1) * 0x10 + 3, &data, 1));
	assert_int_equal(f->a.offset, 3);
	assert_false(bus_read(&f->bus, 0x9000, &data, 1));
	assert_int_equal(f->b.reads, 0);
}

/* ---- dispatch ---- */

static void test_read_dispatches_with_offset_relative_to_base(void **state)
{
	struct fixture *f = *state;
	uint8_t data[4] = {0};

	assert_int_equal(bus_add(&f->bus, 0x3f8, 8, &fake_ops, &f->a), 0);
	assert_int_equal(bus_add(&f->bus, 0x60, 5, &fake_ops, &f->b), 0);

	assert_true(bus_read(&f->bus, 0x3fd, data, 1));
	assert_int_equal(f->a.reads, 1);
	assert_int_equal(f->a.offset, 5);
	assert_int_equal(f->a.len, 1);
	assert_int_equal(data[0], 0x10 + 5);

	assert_true(bus_read(&f->bus, 0x64, data, 1));
	assert_int_equal(f->b.reads, 1);
	assert_int_equal(f->b.offset, 4);
	assert_int_equal(data[0], 0x80 + 4);

	assert_true(bus_read(&f->bus, 0x3f8, data, 4));
	assert_int_equal(f->a.reads, 2);
	assert_int_equal(f->a.offset, 0);
	assert_int_equal(f->a.len, 4);
	assert_int_equal(data[0], 0x10);
	assert_int_equal(data[3], 0x13);
	assert_int_equal(f->b.reads, 1);
}

static void test_write_dispatches_with_offset_and_data(void **state)
{
	struct fixture *f = *state;
	const uint8_t data[4] = {0xde, 0xad, 0xbe, 0xef};

	assert_int_equal(bus_add(&f->bus, 0xd0000000ULL, 0x1000, &fake_ops, &f->a), 0);
	assert_int_equal(bus_add(&f->bus, 0xd0001000ULL, 0x1000, &fake_ops, &f->b), 0);

	assert_true(bus_write(&f->bus, 0xd0001070ULL, data, 4));
	assert_int_equal(f->b.writes, 1);
	assert_int_equal(f->b.offset, 0x70);
	assert_int_equal(f->b.len, 4);
	assert_memory_equal(f->b.written, data, 4);
	assert_int_equal(f->a.writes, 0);

	assert_true(bus_write(&f->bus, 0xd0000ffcULL, data, 4));
	assert_int_equal(f->a.writes, 1);
	assert_int_equal(f->a.offset, 0xffc);
	assert_int_equal(f->b.writes, 1);
	assert_int_equal(f->a.reads + f->b.reads, 0);
}

static void test_access_straddling_end_of_range_is_not_dispatched(void **state)
{
	struct fixture *f = *state;
	uint8_t data[4] = {0, 0, 0, 0};
	const uint8_t ones[4] = {0xff, 0xff, 0xff, 0xff};

	assert_int_equal(bus_add(&f->bus, 0x3f8, 8, &fake_ops, &f->a), 0);
	assert_false(bus_read(&f->bus, 0x3ff, data, 2));
	assert_memory_equal(data, ones, 2);
	assert_false(bus_read(&f->bus, 0x3fd, data, 4));
	assert_false(bus_write(&f->bus, 0x3fe, data, 4));
	assert_int_equal(f->a.reads + f->a.writes, 0);

	/* Starting before the range is no better. */
	assert_false(bus_read(&f->bus, 0x3f7, data, 2));
	assert_false(bus_write(&f->bus, 0x3f6, data, 4));
	assert_int_equal(f->a.reads + f->a.writes, 0);

	/* An access ending exactly at the end is inside. */
	assert_true(bus_read(&f->bus, 0x3fc, data, 4));
	assert_true(bus_read(&f->bus, 0x3ff, data, 1));
	assert_int_equal(f->a.reads, 2);
}

static void test_straddling_two_adjacent_ranges_is_not_dispatched(void **state)
{
	struct fixture *f = *state;
	uint8_t data[2] = {0, 0};

	assert_int_equal(bus_add(&f->bus, 0x60, 1, &fake_ops, &f->a), 0);
	assert_int_equal(bus_add(&f->bus, 0x61, 1, &fake_ops, &f->b), 0);
	assert_false(bus_read(&f->bus, 0x60, data, 2));
	assert_int_equal(data[0], 0xff);
	assert_int_equal(data[1], 0xff);
	assert_int_equal(f->a.reads + f->b.reads, 0);
}

static void test_huge_access_length_is_not_dispatched(void **state)
{
	struct fixture *f = *state;
	uint8_t data;

	assert_int_equal(bus_add(&f->bus, 0x1000, 0x10, &fake_ops, &f->a), 0);
	assert_null(bus_find(&f->bus, 0x1008, UINT32_MAX));
	assert_null(bus_find(&f->bus, 0x1000, 0x11));
	assert_false(bus_write(&f->bus, 0x1000, &data, UINT32_MAX));
	assert_int_equal(f->a.writes, 0);
}

static void test_unclaimed_read_gives_all_ones_and_returns_false(void **state)
{
	struct fixture *f = *state;
	uint8_t data[8];

	memset(data, 0, sizeof(data));
	assert_false(bus_read(&f->bus, 0x80, data, 8)); /* empty bus */
	for (int i = 0; i < 8; i++)
		assert_int_equal(data[i], 0xff);

	assert_int_equal(bus_add(&f->bus, 0x3f8, 8, &fake_ops, &f->a), 0);
	memset(data, 0, sizeof(data));
	assert_false(bus_read(&f->bus, 0x2f8, data, 1));
	assert_int_equal(data[0], 0xff);
	assert_int_equal(data[1], 0); /* only len bytes are filled */
	assert_false(bus_read(&f->bus, 0x400, data, 1));
	assert_false(bus_write(&f->bus, 0x400, data, 1));
	assert_int_equal(f->a.reads + f->a.writes, 0);
}

static void test_device_without_read_or_write_is_treated_as_unclaimed(void **state)
{
	struct fixture *f = *state;
	uint8_t data[2] = {0, 0};

	assert_int_equal(bus_add(&f->bus, 0x80, 1, &no_access_ops, NULL), 0);
	assert_false(bus_read(&f->bus, 0x80, data, 1));
	assert_int_equal(data[0], 0xff);
	assert_false(bus_write(&f->bus, 0x80, data, 1));
	/* The range is still registered: nothing else can take it. */
	assert_int_equal(bus_add(&f->bus, 0x80, 1, &fake_ops, &f->a), -EEXIST);
}

static void test_find_returns_the_claiming_range(void **state)
{
	struct fixture *f = *state;
	const struct bus_range *r;

	assert_int_equal(bus_add(&f->bus, 0x3f8, 8, &fake_ops, &f->a), 0);
	assert_int_equal(bus_add(&f->bus, 0x60, 5, &fake_ops, &f->b), 0);
	r = bus_find(&f->bus, 0x62, 1);
	assert_non_null(r);
	assert_ptr_equal(r->device, &f->b);
	r = bus_find(&f->bus, 0x3f8, 1);
	assert_non_null(r);
	assert_ptr_equal(r->device, &f->a);
	assert_null(bus_find(&f->bus, 0x65, 1));
	assert_null(bus_find(&f->bus, 0x5f, 1));
	assert_null(bus_find(&f->bus, 0x400, 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(test_add_records_ranges),
	    T(test_add_rejects_empty_range),
	    T(test_add_rejects_wrapping_range),
	    T(test_add_accepts_range_ending_just_below_top_of_address_space),
	    T(test_add_rejects_overlaps_with_eexist),
	    T(test_add_rejects_more_than_max_ranges_with_enospc),
	    T(test_read_dispatches_with_offset_relative_to_base),
	    T(test_write_dispatches_with_offset_and_data),
	    T(test_access_straddling_end_of_range_is_not_dispatched),
	    T(test_straddling_two_adjacent_ranges_is_not_dispatched),
	    T(test_huge_access_length_is_not_dispatched),
	    T(test_unclaimed_read_gives_all_ones_and_returns_false),
	    T(test_device_without_read_or_write_is_treated_as_unclaimed),
	    T(test_find_returns_the_claiming_range),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
