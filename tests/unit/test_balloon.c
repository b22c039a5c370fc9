/* Unit tests for virtio-balloon (devices/virtio/balloon.c): guest RAM is real anonymous
 * memory laid out around the 32-bit gap (3 GiB below it, reserved but untouched, and 8 MiB
 * at 4 GiB), so that a released page shows as a page that reads zero again. The tests
 * fill the driver's queues by hand, as a driver would. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "devices/virtio/balloon.h"
#include "log.h"
#include "test_support.h"

#define LOW_SIZE   (3ULL << 30)
#define HIGH_SIZE  (8ULL << 20)
#define QSIZE	   16
#define PAGE	   4096u
#define PFN(gpa)   ((uint32_t)((gpa) >> 12))
#define BUF_GPA	   0x100000ULL /* the driver's request buffers, 64 KiB per queue */
#define PAGES_GPA  0x400000ULL /* the pages the tests inflate and report */
#define HIGH_GPA   0x100000000ULL
#define STATE_SIZE 32 /* struct balloon_state */

struct params {
	uint32_t amount_mib;
	bool deflate_on_oom;
	uint16_t stats_s;
	bool reporting;
	bool negotiate_stats; /* the driver accepts the statistics queue */
};

static const struct params all = {1, true, 5, true, true};
static const struct params no_stats_driver = {1, false, 5, true, false};
static const struct params big_target = {16, false, 0, false, false};

struct fixture {
	struct params params;
	struct gmem mem;
	uint8_t *low, *high;
	struct balloon_device *balloon;
	struct virtio_device *dev;
	struct guest_queue q[4];
	uint16_t used_seen[4];
};

static unsigned int signals;

static void count_signal(struct virtio_device *dev)
{
	(void)dev;
	signals++;
}

static struct balloon_config config_of(const struct params *p)
{
	return (struct balloon_config){.configured = true,
				       .amount_mib = p->amount_mib,
				       .deflate_on_oom = p->deflate_on_oom,
				       .stats_polling_interval_s = p->stats_s,
				       .free_page_reporting = p->reporting};
}

static void *host(struct fixture *f, uint64_t gpa)
{
	return gpa_ptr(&f->mem, gpa, 1);
}

/* The driver's side, up to DRIVER_OK: every queue the device has, rings in low memory. */
static void start_device(struct fixture *f, struct virtio_device *dev, const struct params *p)
{
	dev->driver_features = 1ULL << VIRTIO_F_VERSION_1;
	if (p->deflate_on_oom)
		dev->driver_features |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (p->stats_s && p->negotiate_stats)
		dev->driver_features |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (p->reporting)
		dev->driver_features |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	dev->signal = count_signal;
	for (unsigned int i = 0; i < dev->nr_queues; i++) {
		struct virtqueue *vq = &dev->queues[i];
		struct guest_queue *q = &f->q[i];

		*q = (struct guest_queue){.desc = 0x10000ULL * (i + 1),
					  .avail = 0x10000ULL * (i + 1) + 0x1000,
					  .used = 0x10000ULL * (i + 1) + 0x2000,
					  .size = QSIZE};
		vq->state.size = QSIZE;
		vq->state.desc_gpa = q->desc;
		vq->state.avail_gpa = q->avail;
		vq->state.used_gpa = q->used;
		assert_int_equal(vq_check_config(vq), 0);
		vq->state.ready = 1;
		f->used_seen[i] = 0;
	}
	dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		      VIRTIO_STATUS_DRIVER_OK;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct balloon_config config;

	assert_non_null(f);
	f->params = *(const struct params *)*state;
	assert_int_equal(gmem_layout(&f->mem, LOW_SIZE + HIGH_SIZE), 0);
	assert_int_equal(f->mem.nr_regions, 2);
	f->low = mmap(NULL, LOW_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	f->high = mmap(NULL, HIGH_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(f->low != MAP_FAILED && f->high != MAP_FAILED);
	f->mem.regions[0].host = f->low;
	f->mem.regions[1].host = f->high;
	config = config_of(&f->params);
	assert_int_equal(balloon_create(&f->balloon, &config, &f->mem), 0);
	f->dev = balloon_virtio(f->balloon);
	start_device(f, f->dev, &f->params);
	signals = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	balloon_destroy(f->balloon);
	munmap(f->low, LOW_SIZE);
	munmap(f->high, HIGH_SIZE);
	free(f);
	return 0;
}

/* Fills `count` pages from gpa with 0xaa: a page the device released reads zero again. */
static void mark(struct fixture *f, uint64_t gpa, unsigned int count)
{
	for (unsigned int i = 0; i < count; i++)
		memset(host(f, gpa + (uint64_t)i * PAGE), 0xaa, PAGE);
}

static bool released(struct fixture *f, uint64_t gpa)
{
	const uint8_t *p = gpa_ptr(&f->mem, gpa, PAGE);

	for (unsigned int i = 0; i < PAGE; i++)
		if (p[i])
			return false;
	return true;
}

static bool kept(struct fixture *f, uint64_t gpa)
{
	const uint8_t *p = gpa_ptr(&f->mem, gpa, PAGE);

	for (unsigned int i = 0; i < PAGE; i++)
		if (p[i] != 0xaa)
			return false;
	return true;
}

/* Sends one chain on queue `index`, returns how many chains the device gave back. */
static unsigned int send(struct fixture *f, unsigned int index, const struct seg *segs,
			 unsigned int nr)
{
	uint16_t before = f->used_seen[index], now;

	guest_queue_add_chain(&f->mem, &f->q[index], segs, nr);
	virtio_queue_notified(f->dev, index);
	now = guest_queue_used_idx(&f->mem, &f->q[index]);
	f->used_seen[index] = now;
	return (uint16_t)(now - before);
}

/* An inflate (queue 0) or deflate (queue 1) request of `n` PFNs. */
static void send_pfns(struct fixture *f, unsigned int index, const uint32_t *pfns, unsigned int n)
{
	uint64_t buf = BUF_GPA + 0x10000ULL * index;
	struct seg seg = {buf, n * 4, false};

	memcpy(host(f, buf), pfns, n * 4);
	assert_int_equal(send(f, index, &seg, 1), 1);
}

static uint64_t metric(_Atomic uint64_t *counter)
{
	return atomic_load(counter);
}

static void test_inflate_releases_the_pages_and_counts_them(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	uint32_t pfns[] = {PFN(PAGES_GPA) + 3, PFN(PAGES_GPA), PFN(PAGES_GPA) + 1};

	mark(f, PAGES_GPA, 5);
	send_pfns(f, 0, pfns, 3);
	assert_true(released(f, PAGES_GPA));
	assert_true(released(f, PAGES_GPA + PAGE));
	assert_true(kept(f, PAGES_GPA + 2 * PAGE)); /* not in the request */
	assert_true(released(f, PAGES_GPA + 3 * PAGE));
	assert_true(kept(f, PAGES_GPA + 4 * PAGE));
	assert_int_equal(balloon_inflated_pages(f->balloon), 3);
	assert_int_equal(metric(&m->inflate_count), 1);
	assert_int_equal(metric(&m->inflated_pages_released), 3);
	assert_true(signals > 0);
}

static void test_deflate_counts_down_and_never_below_zero(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	uint32_t inflate[] = {PFN(PAGES_GPA), PFN(PAGES_GPA) + 1};
	uint32_t deflate[] = {PFN(PAGES_GPA), PFN(PAGES_GPA) + 1, PFN(PAGES_GPA) + 2};

	send_pfns(f, 0, inflate, 2);
	send_pfns(f, 1, deflate, 1);
	assert_int_equal(balloon_inflated_pages(f->balloon), 1);
	send_pfns(f, 1, deflate, 3);
	assert_int_equal(balloon_inflated_pages(f->balloon), 0);
	assert_int_equal(metric(&m->deflate_count), 2);
	assert_int_equal(metric(&m->deflate_not_inflated), 2);
}

static void test_pfns_outside_ram_or_in_the_gap_are_refused(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	uint32_t pfns[] = {
	    PFN(0xc0000000ULL),	       /* the gap's first page */
	    PFN(0xfffff000ULL),	       /* its last */
	    PFN(HIGH_GPA + HIGH_SIZE), /* just past the end of RAM */
	    0xffffffffu,	       /* far beyond */
	    PFN(HIGH_GPA),	       /* RAM above the gap: fine */
	    PFN(LOW_SIZE - PAGE),      /* the last page below the gap: fine */
	};

	mark(f, HIGH_GPA, 1);
	mark(f, LOW_SIZE - PAGE, 1);
	send_pfns(f, 0, pfns, 6);
	assert_int_equal(metric(&m->pfn_in_gap), 2);
	assert_int_equal(metric(&m->pfn_outside_ram), 2);
	assert_int_equal(balloon_inflated_pages(f->balloon), 2);
	assert_true(released(f, HIGH_GPA));
	assert_true(released(f, LOW_SIZE - PAGE));
}

static void test_a_pfn_repeated_in_one_request_counts_once(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	uint32_t pfns[] = {PFN(PAGES_GPA), PFN(PAGES_GPA) + 1, PFN(PAGES_GPA), PFN(PAGES_GPA)};

	send_pfns(f, 0, pfns, 4);
	assert_int_equal(balloon_inflated_pages(f->balloon), 2);
	assert_int_equal(metric(&m->pfn_duplicate), 2);
}

static void test_more_pages_than_the_target_are_not_released(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	uint32_t pfns[300];

	/* The target is 1 MiB: 256 pages. */
	for (unsigned int i = 0; i < 300; i++)
		pfns[i] = PFN(PAGES_GPA) + i;
	mark(f, PAGES_GPA, 300);
	send_pfns(f, 0, pfns, 300);
	assert_int_equal(balloon_inflated_pages(f->balloon), 256);
	assert_int_equal(metric(&m->pfn_over_target), 44);
	assert_true(released(f, PAGES_GPA + 255 * PAGE));
	assert_true(kept(f, PAGES_GPA + 256 * PAGE));
	assert_true(kept(f, PAGES_GPA + 299 * PAGE));
	/* Nothing more while the balloon is full. */
	send_pfns(f, 0, pfns + 256, 1);
	assert_int_equal(balloon_inflated_pages(f->balloon), 256);
	assert_int_equal(metric(&m->pfn_over_target), 45);
}

static void test_a_request_of_partial_pfns_is_refused_whole(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	struct seg seg = {BUF_GPA, 6, false};

	mark(f, PAGES_GPA, 1);
	put_le32(host(f, BUF_GPA), PFN(PAGES_GPA));
	assert_int_equal(send(f, 0, &seg, 1), 1); /* given back all the same */
	assert_int_equal(metric(&m->malformed_requests), 1);
	assert_int_equal(balloon_inflated_pages(f->balloon), 0);
	assert_true(kept(f, PAGES_GPA));
}

static uint32_t config_u32(struct fixture *f, uint64_t offset)
{
	return reg_read(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_CONFIG + offset, 4, 0xffffffff);
}

static void test_the_target_is_in_the_config_space_and_actual_is_the_drivers(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(config_u32(f, 0), 16 * 256);
	assert_int_equal(config_u32(f, 4), 0);
	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_CONFIG + 4, 4, 1234);
	assert_int_equal(config_u32(f, 4), 1234);
	/* num_pages is the device's: a write there changes nothing. */
	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_CONFIG + 0, 4, 7);
	assert_int_equal(config_u32(f, 0), 16 * 256);
	/* A byte written into actual changes that byte. */
	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_CONFIG + 5, 1, 0x01);
	assert_int_equal(config_u32(f, 4), (1234 & ~0xff00u) | 0x100);
	assert_int_equal(config_u32(f, 8), 0);
}

static void test_a_new_target_reaches_the_driver_with_a_config_interrupt(void **state)
{
	struct fixture *f = *state;
	struct balloon_stats stats;

	atomic_store(&f->dev->interrupt_status, 0);
	assert_int_equal(balloon_set_target(f->balloon, 3), 0);
	assert_int_equal(config_u32(f, 0), 3 * 256);
	assert_true(atomic_load(&f->dev->interrupt_status) & VIRTIO_INT_CONFIG);
	balloon_get_stats(f->balloon, &stats);
	assert_int_equal(stats.target_pages, 768);
	/* More than guest RAM (3 GiB + 8 MiB). */
	assert_int_equal(balloon_set_target(f->balloon, 3 * 1024 + 9), -E2BIG);
	assert_int_equal(config_u32(f, 0), 3 * 256);
	/* Before the driver activated the device: Firecracker's DeviceNotActive. */
	f->dev->status = 0;
	assert_int_equal(balloon_set_target(f->balloon, 2), -ENODEV);
}

static void test_a_target_beyond_guest_ram_is_refused_at_creation(void **state)
{
	struct fixture *f = *state;
	struct balloon_config config = config_of(&f->params);
	struct balloon_device *other = NULL;

	config.amount_mib = 3 * 1024 + 9;
	assert_int_equal(balloon_create(&other, &config, &f->mem), -EINVAL);
	assert_null(other);
}

/* With statistics negotiated, reporting is queue 3; without, queue 2. */
static unsigned int reporting_queue(const struct fixture *f)
{
	return f->params.negotiate_stats ? 3 : 2;
}

static void test_reported_free_pages_are_released_whole_pages_only(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	unsigned int index = reporting_queue(f);
	/* Unaligned: only the pages entirely inside are released. */
	struct seg segs[] = {{PAGES_GPA + 100, 3 * PAGE, true}, {HIGH_GPA, 2 * PAGE, true}};

	assert_int_equal(f->dev->nr_queues, 4);
	mark(f, PAGES_GPA, 4);
	mark(f, HIGH_GPA, 3);
	assert_int_equal(send(f, index, segs, 2), 1);
	assert_true(kept(f, PAGES_GPA));
	assert_true(released(f, PAGES_GPA + PAGE));
	assert_true(released(f, PAGES_GPA + 2 * PAGE));
	assert_true(kept(f, PAGES_GPA + 3 * PAGE));
	assert_true(released(f, HIGH_GPA));
	assert_true(released(f, HIGH_GPA + PAGE));
	assert_true(kept(f, HIGH_GPA + 2 * PAGE));
	assert_int_equal(metric(&m->free_page_report_count), 1);
	assert_int_equal(metric(&m->free_page_report_freed), 4 * PAGE);
	/* Reporting has nothing to do with inflation. */
	assert_int_equal(balloon_inflated_pages(f->balloon), 0);
}

static void test_a_reported_range_crossing_the_gap_breaks_the_queue(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	unsigned int index = reporting_queue(f);
	struct seg seg = {LOW_SIZE - PAGE, 2 * PAGE, true};

	mark(f, LOW_SIZE - PAGE, 1);
	assert_int_equal(send(f, index, &seg, 1), 0);
	assert_true(kept(f, LOW_SIZE - PAGE));
	assert_true(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(metric(&m->free_page_report_fails), 1);
	assert_int_equal(metric(&m->free_page_report_freed), 0);
}

static void put_stat(uint8_t *p, uint16_t tag, uint64_t value)
{
	struct virtio_balloon_stat stat = {.tag = tag, .val = value};
	memcpy(p, &stat, sizeof(stat));
}

/* Linux queues its first statistics buffer and kicks before DRIVER_OK; the transport drops
 * that kick, so the device must take the buffer when the driver sets DRIVER_OK. */
static void test_a_stats_buffer_queued_before_driver_ok_is_taken_at_activation(void **state)
{
	struct fixture *f = *state;
	struct virtio_balloon_stat stat = {.tag = BALLOON_STAT_FREE_MEMORY, .val = 4242};
	struct seg seg = {BUF_GPA + 0x30000, sizeof(stat), false};
	struct balloon_stats stats;
	uint32_t status =
	    VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;

	f->dev->status = status;
	memcpy(host(f, seg.gpa), &stat, sizeof(stat));
	guest_queue_add_chain(&f->mem, &f->q[2], &seg, 1);
	virtio_queue_notified(f->dev, 2); /* not live yet: dropped */
	balloon_get_stats(f->balloon, &stats);
	assert_false(stats.present & (1u << BALLOON_STAT_FREE_MEMORY));
	status |= VIRTIO_STATUS_DRIVER_OK;
	virtio_mmio_ops.write(f->dev, VIRTIO_MMIO_STATUS, (const uint8_t *)&status, 4);
	balloon_get_stats(f->balloon, &stats);
	assert_true(stats.present & (1u << BALLOON_STAT_FREE_MEMORY));
	assert_int_equal(stats.values[BALLOON_STAT_FREE_MEMORY], 4242);
}

static void test_stats_parsing_keeps_known_tags_and_refuses_bad_lengths(void **state)
{
	uint8_t buf[(BALLOON_STATS_MAX_ENTRIES + 1) * 10];
	struct balloon_stats stats;
	(void)state;

	memset(&stats, 0, sizeof(stats));
	put_stat(buf, BALLOON_STAT_FREE_MEMORY, 1111);
	put_stat(buf + 10, 99, 5); /* unknown: skipped */
	put_stat(buf + 20, BALLOON_STAT_TOTAL_MEMORY, 2222);
	put_stat(buf + 30, BALLOON_STAT_DIRECT_RECLAIM, 3333);
	assert_int_equal(balloon_stats_parse(buf, 40, &stats), 0);
	assert_int_equal(stats.present, (1u << BALLOON_STAT_FREE_MEMORY) |
					    (1u << BALLOON_STAT_TOTAL_MEMORY) |
					    (1u << BALLOON_STAT_DIRECT_RECLAIM));
	assert_int_equal(stats.values[BALLOON_STAT_FREE_MEMORY], 1111);
	assert_int_equal(stats.values[BALLOON_STAT_TOTAL_MEMORY], 2222);
	assert_int_equal(stats.values[BALLOON_STAT_DIRECT_RECLAIM], 3333);
	/* Not whole entries, or too many: refused, nothing changes. */
	assert_int_equal(balloon_stats_parse(buf, 15, &stats), -EINVAL);
	for (unsigned int i = 0; i <= BALLOON_STATS_MAX_ENTRIES; i++)
		put_stat(buf + 10 * i, BALLOON_STAT_SWAP_IN, i);
	assert_int_equal(balloon_stats_parse(buf, sizeof(buf), &stats), -EINVAL);
	assert_int_equal(stats.values[BALLOON_STAT_FREE_MEMORY], 1111);
	assert_int_equal(stats.values[BALLOON_STAT_SWAP_IN], 0);
	/* A later buffer replaces the earlier one: only what it holds is present. */
	assert_int_equal(balloon_stats_parse(buf, 20, &stats), 0);
	assert_int_equal(stats.present, 1u << BALLOON_STAT_SWAP_IN);
	assert_int_equal(stats.values[BALLOON_STAT_SWAP_IN], 1);
}

static void send_stats(struct fixture *f, uint64_t free_memory, unsigned int expect_returned)
{
	uint64_t buf = BUF_GPA + 0x20000;
	struct seg seg = {buf, 20, false};

	put_stat(host(f, buf), BALLOON_STAT_FREE_MEMORY, free_memory);
	put_stat(host(f, buf + 10), BALLOON_STAT_OOM_KILL, 1);
	assert_int_equal(send(f, 2, &seg, 1), expect_returned);
}

static void test_the_stats_buffer_is_held_until_the_next_poll(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	struct balloon_stats stats;

	send_stats(f, 4242, 0);
	balloon_get_stats(f->balloon, &stats);
	assert_int_equal(stats.values[BALLOON_STAT_FREE_MEMORY], 4242);
	assert_true(stats.present & (1u << BALLOON_STAT_OOM_KILL));
	assert_int_equal(metric(&m->stats_updates_count), 1);
	signals = 0;
	balloon_poll_stats(f->balloon);
	assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[2]), 1);
	assert_int_equal(signals, 1);
	/* Nothing held: a poll gives nothing back. */
	balloon_poll_stats(f->balloon);
	assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[2]), 1);
	f->used_seen[2] = 1;
	/* A second buffer while one is held: the first comes back, counted. */
	send_stats(f, 1, 0);
	send_stats(f, 2, 1);
	assert_int_equal(metric(&m->stats_update_fails), 1);
	balloon_get_stats(f->balloon, &stats);
	assert_int_equal(stats.values[BALLOON_STAT_FREE_MEMORY], 2);
}

static void test_a_bad_stats_buffer_is_counted_and_still_returned(void **state)
{
	struct fixture *f = *state;
	struct balloon_metrics *m = balloon_metrics(f->balloon);
	struct seg seg = {BUF_GPA + 0x20000, 15, false};

	assert_int_equal(send(f, 2, &seg, 1), 0);
	assert_int_equal(metric(&m->stats_update_fails), 1);
	assert_int_equal(metric(&m->stats_updates_count), 0);
	balloon_poll_stats(f->balloon);
	assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[2]), 1);
}

static void test_the_polling_interval_changes_but_statistics_stay_on(void **state)
{
	struct fixture *f = *state;
	struct balloon_config config = config_of(&big_target);
	struct balloon_device *plain;

	send_stats(f, 1, 0);
	assert_int_equal(balloon_set_stats_interval(f->balloon, 0), -EINVAL);
	assert_int_equal(balloon_set_stats_interval(f->balloon, 5), 0); /* unchanged */
	assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[2]), 0);
	/* A new interval gives the buffer back at once, for a fresh update. */
	assert_int_equal(balloon_set_stats_interval(f->balloon, 1), 0);
	assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[2]), 1);
	/* A device without statistics cannot get them. */
	assert_int_equal(balloon_create(&plain, &config, &f->mem), 0);
	assert_int_equal(balloon_set_stats_interval(plain, 3), -EINVAL);
	assert_int_equal(balloon_set_stats_interval(plain, 0), 0);
	balloon_destroy(plain);
}

static void test_a_reset_forgets_the_drivers_pages(void **state)
{
	struct fixture *f = *state;
	uint32_t pfns[] = {PFN(PAGES_GPA)};

	send_pfns(f, 0, pfns, 1);
	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_CONFIG + 4, 4, 1);
	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_STATUS, 4, 0);
	assert_int_equal(balloon_inflated_pages(f->balloon), 0);
	assert_int_equal(config_u32(f, 4), 0);
}

/* Saves the device; returns the length, the device's own state at buf + len - STATE_SIZE. */
static int save(struct fixture *f, uint8_t *buf, size_t size)
{
	int len = virtio_mmio_ops.save(f->dev, buf, size);

	assert_true(len > STATE_SIZE);
	return len;
}

static void test_save_and_restore_keep_the_balloon(void **state)
{
	struct fixture *f = *state;
	struct balloon_config config = config_of(&f->params);
	uint32_t pfns[] = {PFN(PAGES_GPA), PFN(PAGES_GPA) + 1, PFN(PAGES_GPA) + 2};
	struct balloon_device *clone;
	struct balloon_stats stats;
	uint8_t buf[4096];
	int len;

	send_pfns(f, 0, pfns, 3);
	assert_int_equal(balloon_set_target(f->balloon, 1), 0);
	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_CONFIG + 4, 4, 3);
	send_stats(f, 77, 0);
	len = save(f, buf, sizeof(buf));

	assert_int_equal(balloon_create(&clone, &config, &f->mem), 0);
	assert_int_equal(virtio_mmio_ops.restore(balloon_virtio(clone), buf, (size_t)len), 0);
	assert_int_equal(balloon_inflated_pages(clone), 3);
	balloon_get_stats(clone, &stats);
	assert_int_equal(stats.target_pages, 256);
	assert_int_equal(stats.actual_pages, 3);
	/* The held statistics buffer comes back on the clone's first poll. */
	balloon_virtio(clone)->signal = count_signal;
	balloon_poll_stats(clone);
	assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[2]), 1);
	/* And it keeps working: inflation continues from where it was. */
	{
		uint16_t before = guest_queue_used_idx(&f->mem, &f->q[0]);
		uint32_t more = PFN(PAGES_GPA) + 3;

		memcpy(host(f, BUF_GPA), &more, 4);
		guest_queue_add_chain(&f->mem, &f->q[0], &(struct seg){BUF_GPA, 4, false}, 1);
		virtio_queue_notified(balloon_virtio(clone), 0);
		assert_int_equal(guest_queue_used_idx(&f->mem, &f->q[0]), before + 1);
		assert_int_equal(balloon_inflated_pages(clone), 4);
	}
	balloon_destroy(clone);
}

static void test_restore_refuses_a_state_that_does_not_fit(void **state)
{
	struct fixture *f = *state;
	struct balloon_config config = config_of(&f->params);
	struct balloon_config other_config = config;
	struct balloon_device *clone, *other;
	uint8_t buf[4096], bad[4096];
	uint8_t *own;
	int len;

	len = save(f, buf, sizeof(buf));
	own = bad + len - STATE_SIZE;
	assert_int_equal(balloon_create(&clone, &config, &f->mem), 0);

	/* Truncated. */
	assert_int_equal(virtio_mmio_ops.restore(balloon_virtio(clone), buf, (size_t)len - 1),
			 -EINVAL);
	/* Another version. */
	memcpy(bad, buf, (size_t)len);
	put_le32(own, 99);
	assert_int_equal(virtio_mmio_ops.restore(balloon_virtio(clone), bad, (size_t)len), -EINVAL);
	/* A target beyond guest RAM. */
	memcpy(bad, buf, (size_t)len);
	put_le32(own + 4, 0xffffffffu);
	assert_int_equal(virtio_mmio_ops.restore(balloon_virtio(clone), bad, (size_t)len), -EINVAL);
	/* A held statistics buffer outside the queue. */
	memcpy(bad, buf, (size_t)len);
	put_le16(own + 24, VIRTIO_BALLOON_QUEUE_SIZE);
	own[26] = 1;
	assert_int_equal(virtio_mmio_ops.restore(balloon_virtio(clone), bad, (size_t)len), -EINVAL);
	/* Nothing of the refused states reached the device. */
	assert_int_equal(balloon_inflated_pages(clone), 0);
	balloon_destroy(clone);

	/* A device configured otherwise (no deflate on OOM): other features. */
	other_config.deflate_on_oom = !config.deflate_on_oom;
	assert_int_equal(balloon_create(&other, &other_config, &f->mem), 0);
	assert_int_equal(virtio_mmio_ops.restore(balloon_virtio(other), buf, (size_t)len), -EINVAL);
	balloon_destroy(other);
}

static void test_features_follow_the_configuration(void **state)
{
	struct fixture *f = *state;
	uint32_t features;

	reg_write(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 4, 0);
	features = reg_read(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_DEVICE_FEATURES, 4, 0);
	assert_int_equal(reg_read(&virtio_mmio_ops, f->dev, VIRTIO_MMIO_DEVICE_ID, 4, 0),
			 VIRTIO_ID_BALLOON);
	assert_int_equal(!!(features & (1u << VIRTIO_BALLOON_F_DEFLATE_ON_OOM)),
			 f->params.deflate_on_oom);
	assert_int_equal(!!(features & (1u << VIRTIO_BALLOON_F_STATS_VQ)), !!f->params.stats_s);
	assert_int_equal(!!(features & (1u << VIRTIO_BALLOON_F_REPORTING)), f->params.reporting);
	assert_false(features & (1u << VIRTIO_BALLOON_F_FREE_PAGE_HINT));
	assert_false(features & (1u << VIRTIO_BALLOON_F_MUST_TELL_HOST));
	assert_int_equal(f->dev->nr_queues, 2 + !!f->params.stats_s + f->params.reporting);
}

#define T(name, params)                                                                            \
	cmocka_unit_test_prestate_setup_teardown(name, setup, teardown, (void *)&params)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_inflate_releases_the_pages_and_counts_them, all),
	    T(test_deflate_counts_down_and_never_below_zero, all),
	    T(test_pfns_outside_ram_or_in_the_gap_are_refused, all),
	    T(test_a_pfn_repeated_in_one_request_counts_once, all),
	    T(test_more_pages_than_the_target_are_not_released, all),
	    T(test_a_request_of_partial_pfns_is_refused_whole, all),
	    T(test_the_target_is_in_the_config_space_and_actual_is_the_drivers, big_target),
	    T(test_a_new_target_reaches_the_driver_with_a_config_interrupt, all),
	    T(test_a_target_beyond_guest_ram_is_refused_at_creation, all),
	    T(test_reported_free_pages_are_released_whole_pages_only, all),
	    T(test_reported_free_pages_are_released_whole_pages_only, no_stats_driver),
	    T(test_a_reported_range_crossing_the_gap_breaks_the_queue, all),
	    T(test_stats_parsing_keeps_known_tags_and_refuses_bad_lengths, all),
	    T(test_the_stats_buffer_is_held_until_the_next_poll, all),
	    T(test_a_bad_stats_buffer_is_counted_and_still_returned, all),
	    T(test_the_polling_interval_changes_but_statistics_stay_on, all),
	    T(test_a_reset_forgets_the_drivers_pages, all),
	    T(test_save_and_restore_keep_the_balloon, all),
	    T(test_restore_refuses_a_state_that_does_not_fit, all),
	    T(test_a_stats_buffer_queued_before_driver_ok_is_taken_at_activation, all),
	    T(test_features_follow_the_configuration, all),
	    T(test_features_follow_the_configuration, big_target),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
