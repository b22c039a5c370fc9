#define _GNU_SOURCE /* pthread_timedjoin_np */
/*
 * Unit tests for the virtio-mmio transport (vmm/devices/virtio/virtio_mmio.c), driven
 * the way a guest driver drives it: 32-bit register accesses through virtio_mmio_ops.
 * A fake device (2 queues, an echo-style queue_notify that pops, answers and pushes)
 * and a fake interrupt signal that counts stand in for a real device and irqfd.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "memory.h"
#include "devices/virtio/virtio.h"
#include "test_support.h"

#define RAM_SIZE    (1ULL << 20)
#define NR_QUEUES   2
#define QMAX	    16
#define QSIZE	    8
#define BUF_GPA	    0x80000ULL
#define FAKE_ID	    0x1f
#define FEATURE_LOW (1ULL << 5)
#define FEATURE_HI  (1ULL << 33)
#define OFFERED	    (FEATURE_LOW | FEATURE_HI | (1ULL << VIRTIO_F_EVENT_IDX))
#define ALL_OFFERED (OFFERED | (1ULL << VIRTIO_F_VERSION_1))
#define DRIVER_UP                                                                                  \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |            \
	 VIRTIO_STATUS_DRIVER_OK)

static uint64_t desc_gpa(unsigned int q)
{
	return 0x10000ULL * (q + 1);
}

static uint64_t avail_gpa(unsigned int q)
{
	return desc_gpa(q) + 0x1000;
}

static uint64_t used_gpa(unsigned int q)
{
	return desc_gpa(q) + 0x2000;
}

struct fake {
	struct virtio_device dev; /* first: the ops callbacks cast dev back to the fake */
	struct gmem mem;
	uint8_t *ram;
	unsigned int signals;
	unsigned int notifies;
	unsigned int chains_done;
	unsigned int resets;
	unsigned int activates;
	unsigned int kicks;
	unsigned int last_kick;
	int activate_result;
	uint8_t config[16];
	uint64_t config_offset;
	uint32_t config_len;
	unsigned int config_writes;
	uint32_t device_state;	      /* what the fake's own save/restore carries */
	unsigned int device_restores; /* calls of the fake's restore (side effects) */
	uint16_t avail_idx[NR_QUEUES];
	struct vq_chain chain;
	/* The blocking fake: with block_in_io, queue_notify first makes a "host call"
	 * (virtio_io_begin, a read of io_gate that blocks until the test writes to it,
	 * virtio_io_end), as the Sync block engine does around preadv. */
	bool block_in_io;
	int io_gate[2];
	sem_t io_entered;
	_Atomic bool in_io;
	_Atomic unsigned int resets_during_io;
};

/* --- the fake device ------------------------------------------------------------------ */

static uint64_t fake_features(struct virtio_device *dev)
{
	(void)dev;
	return OFFERED;
}

static void fake_config_read(struct virtio_device *dev, uint64_t offset, uint8_t *data,
			     uint32_t len)
{
	struct fake *f = (struct fake *)dev;
	f->config_offset = offset;
	f->config_len = len;
	if (offset < sizeof(f->config) && len <= sizeof(f->config) - offset)
		memcpy(data, f->config + offset, len);
}

static void fake_config_write(struct virtio_device *dev, uint64_t offset, const uint8_t *data,
			      uint32_t len)
{
	struct fake *f = (struct fake *)dev;
	f->config_offset = offset;
	f->config_len = len;
	f->config_writes++;
	if (offset < sizeof(f->config) && len <= sizeof(f->config) - offset)
		memcpy(f->config + offset, data, len);
}

static int fake_activate(struct virtio_device *dev)
{
	struct fake *f = (struct fake *)dev;
	f->activates++;
	return f->activate_result;
}

/* Answers every request with its readable bytes inverted, then interrupts if wanted;
 * hostile input makes it report the queue failed (and not interrupt for used buffers). */
static void fake_queue_notify(struct virtio_device *dev, unsigned int index)
{
	struct fake *f = (struct fake *)dev;
	struct virtqueue *vq = &dev->queues[index];
	unsigned int pushed = 0;
	int rc;

	if (f->block_in_io) {
		char byte;
		virtio_io_begin(dev);
		atomic_store(&f->in_io, true);
		sem_post(&f->io_entered);
		assert_int_equal(read(f->io_gate[0], &byte, 1), 1);
		atomic_store(&f->in_io, false);
		virtio_io_end(dev);
	}
	f->notifies++;
	while ((rc = vq_pop(vq, &f->chain)) == 1) {
		uint8_t buf[64];
		size_t n = vq_chain_read(&f->chain, 0, buf, sizeof(buf));
		for (size_t i = 0; i < n; i++)
			buf[i] ^= 0xff;
		size_t written = vq_chain_write(&f->chain, 0, buf, n);
		if (vq_push(vq, f->chain.head, (uint32_t)written)) {
			rc = -EIO;
			break;
		}
		f->chains_done++;
		pushed++;
	}
	if (rc < 0) {
		virtio_queue_failed(dev, index);
		return;
	}
	if (pushed)
		virtio_notify_used(dev, index);
}

static void fake_reset(struct virtio_device *dev)
{
	struct fake *f = (struct fake *)dev;
	f->resets++;
	if (atomic_load(&f->in_io))
		atomic_fetch_add(&f->resets_during_io, 1);
}

static int fake_save(struct virtio_device *dev, void *buf, size_t size)
{
	struct fake *f = (struct fake *)dev;
	if (size < sizeof(f->device_state))
		return -ENOSPC;
	memcpy(buf, &f->device_state, sizeof(f->device_state));
	return sizeof(f->device_state);
}

static int fake_restore(struct virtio_device *dev, const void *buf, size_t size)
{
	struct fake *f = (struct fake *)dev;
	if (size != sizeof(f->device_state))
		return -EINVAL;
	memcpy(&f->device_state, buf, sizeof(f->device_state));
	f->device_restores++;
	return 0;
}

static const struct virtio_device_ops fake_ops = {
    .name = "fake",
    .device_id = FAKE_ID,
    .queue_max_size = QMAX,
    .features = fake_features,
    .config_read = fake_config_read,
    .config_write = fake_config_write,
    .activate = fake_activate,
    .queue_notify = fake_queue_notify,
    .reset = fake_reset,
    .save = fake_save,
    .restore = fake_restore,
};

static void fake_signal(struct virtio_device *dev)
{
	struct fake *f = (struct fake *)dev;
	f->signals++;
}

static void fake_kick(struct virtio_device *dev, unsigned int index)
{
	struct fake *f = (struct fake *)dev;
	f->kicks++;
	f->last_kick = index;
}

static void fake_init(struct fake *f, const struct gmem *mem, const char *id)
{
	virtio_init(&f->dev, &fake_ops, NR_QUEUES, mem, id);
	f->dev.signal = fake_signal;
	for (unsigned int i = 0; i < sizeof(f->config); i++)
		f->config[i] = (uint8_t)(0xa0 + i);
}

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->ram = fake_ram_new(&f->mem, RAM_SIZE, RAM_SIZE, 0);
	if (!f->ram) {
		free(f);
		return -1;
	}
	fake_init(f, &f->mem, "fake0");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;
	pthread_mutex_destroy(&f->dev.lock);
	free(f->ram);
	free(f);
	return 0;
}

/* --- the driver's side ----------------------------------------------------------------- */

static uint32_t rd(struct fake *f, uint64_t offset)
{
	return reg_read(&virtio_mmio_ops, &f->dev, offset, 4, 0);
}

static void wr(struct fake *f, uint64_t offset, uint32_t value)
{
	reg_write(&virtio_mmio_ops, &f->dev, offset, 4, value);
}

static void negotiate(struct fake *f, uint64_t features)
{
	wr(f, VIRTIO_MMIO_STATUS, 0);
	wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	wr(f, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
}

static void write_queue_config(struct fake *f, unsigned int q, uint32_t size, uint64_t desc,
			       uint64_t avail, uint64_t used)
{
	wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
	wr(f, VIRTIO_MMIO_QUEUE_NUM, size);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr(f, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
	wr(f, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr(f, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
}

/* Fresh zeroed rings for queue q, configured and made ready. */
static void setup_queue(struct fake *f, unsigned int q)
{
	memset(gpa_ptr(&f->mem, desc_gpa(q), 0x3000), 0, 0x3000);
	f->avail_idx[q] = 0;
	write_queue_config(f, q, QSIZE, desc_gpa(q), avail_gpa(q), used_gpa(q));
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 1);
}

/* The whole virtio 1.x initialisation sequence, ending with DRIVER_OK. */
static void driver_init(struct fake *f, uint64_t features)
{
	negotiate(f, features);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned int q = 0; q < NR_QUEUES; q++)
		setup_queue(f, q);
	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP);
}

static void put_desc(struct fake *f, unsigned int q, uint16_t i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(gpa_ptr(&f->mem, desc_gpa(q) + i * sizeof(d), sizeof(d)), &d, sizeof(d));
}

static void make_available(struct fake *f, unsigned int q, uint16_t head)
{
	uint16_t idx = f->avail_idx[q]++;
	gpa_write16(&f->mem, avail_gpa(q) + 4 + 2 * (idx % QSIZE), head);
	gpa_write16(&f->mem, avail_gpa(q) + 2, f->avail_idx[q]);
}

/* A 4-byte request in descriptor `head` and a 4-byte response buffer in head + 1. */
static void add_request(struct fake *f, unsigned int q, uint16_t head, uint32_t request)
{
	uint64_t buf = BUF_GPA + 0x100 * head + 0x1000 * q;
	put_le32(gpa_ptr(&f->mem, buf, 4), request);
	put_le32(gpa_ptr(&f->mem, buf + 4, 4), 0);
	put_desc(f, q, head, buf, 4, VRING_DESC_F_NEXT, (uint16_t)(head + 1));
	put_desc(f, q, (uint16_t)(head + 1), buf + 4, 4, VRING_DESC_F_WRITE, 0);
	make_available(f, q, head);
}

static uint32_t response(struct fake *f, unsigned int q, uint16_t head)
{
	return get_le32(gpa_ptr(&f->mem, BUF_GPA + 0x100 * head + 0x1000 * q + 4, 4));
}

static uint16_t used_idx(struct fake *f, unsigned int q)
{
	return gpa_read16(&f->mem, used_gpa(q) + 2);
}

static struct vring_used_elem used_elem(struct fake *f, unsigned int q, uint16_t slot)
{
	return used_elem_at(&f->mem, used_gpa(q), slot);
}

static void send_and_check_request(struct fake *f, unsigned int q, uint16_t head, uint32_t request)
{
	unsigned int done = f->chains_done;
	uint16_t used = used_idx(f, q);

	add_request(f, q, head, request);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	assert_int_equal(f->chains_done, done + 1);
	assert_int_equal(used_idx(f, q), (uint16_t)(used + 1));
	assert_int_equal(used_elem(f, q, used % QSIZE).id, head);
	assert_int_equal(used_elem(f, q, used % QSIZE).len, 4);
	assert_int_equal(response(f, q, head), ~request);
}

/* --- identification and features ------------------------------------------------------ */

static void test_identification_registers(void **state)
{
	struct fake *f = *state;

	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC), VIRTIO_MMIO_MAGIC_VALUE);
	assert_int_equal(rd(f, VIRTIO_MMIO_MAGIC), 0x74726976);
	assert_int_equal(rd(f, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_ID), FAKE_ID);
	assert_int_equal(rd(f, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	/* Unknown or write-only registers read as 0. */
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NOTIFY), 0);
	assert_int_equal(rd(f, 0x0f0), 0);
}

static void test_queue_num_max_per_queue_and_0_for_missing_queue(void **state)
{
	struct fake *f = *state;

	for (unsigned int q = 0; q < NR_QUEUES; q++) {
		wr(f, VIRTIO_MMIO_QUEUE_SEL, q);
		assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
		assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	}
	wr(f, VIRTIO_MMIO_QUEUE_SEL, NR_QUEUES);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	/* Configuring a queue that does not exist does nothing. */
	write_queue_config(f, NR_QUEUES, QSIZE, desc_gpa(0), avail_gpa(0), used_gpa(0));
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 0xffffffff);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
}

static void test_device_features_offered_in_two_words_with_version_1(void **state)
{
	struct fake *f = *state;

	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), (uint32_t)ALL_OFFERED);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), (uint32_t)(ALL_OFFERED >> 32));
	assert_true(rd(f, VIRTIO_MMIO_DEVICE_FEATURES) & 1); /* VERSION_1 is bit 32 */
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
	assert_int_equal(rd(f, VIRTIO_MMIO_DEVICE_FEATURES), 0);
}

static void test_features_ok_accepted_for_offered_subset_with_version_1(void **state)
{
	struct fake *f = *state;
	const uint64_t wanted = (1ULL << VIRTIO_F_VERSION_1) | FEATURE_HI;

	negotiate(f, wanted);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(f->dev.driver_features, wanted);
	assert_true(virtio_has_feature(&f->dev, 33));
	assert_false(virtio_has_feature(&f->dev, 5));

	negotiate(f, ALL_OFFERED);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(f->dev.driver_features, ALL_OFFERED);
}

static void test_features_ok_refused_without_version_1(void **state)
{
	struct fake *f = *state;

	negotiate(f, FEATURE_LOW);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS),
			 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	negotiate(f, 0);
	assert_false(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
}

static void test_features_ok_refused_with_unoffered_bits(void **state)
{
	struct fake *f = *state;
	const uint64_t v1 = 1ULL << VIRTIO_F_VERSION_1;

	negotiate(f, v1 | (1ULL << 6)); /* low word */
	assert_false(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	negotiate(f, v1 | (1ULL << 40)); /* high word */
	assert_false(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	negotiate(f, v1 | (1ULL << VIRTIO_F_INDIRECT_DESC)); /* not offered by this device */
	assert_false(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	/* The driver may then retry with an acceptable set. */
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	wr(f, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(f->dev.driver_features, v1);
}

static void test_driver_features_fixed_after_features_ok_and_bad_select_ignored(void **state)
{
	struct fake *f = *state;
	const uint64_t wanted = (1ULL << VIRTIO_F_VERSION_1) | FEATURE_LOW;

	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	assert_int_equal(f->dev.driver_features, 0);

	negotiate(f, wanted);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(f, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	assert_int_equal(f->dev.driver_features, wanted);
}

static void test_driver_ok_activates_and_sets_event_idx_as_negotiated(void **state)
{
	struct fake *f = *state;

	driver_init(f, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX));
	assert_int_equal(f->activates, 1);
	for (unsigned int q = 0; q < NR_QUEUES; q++)
		assert_int_equal(f->dev.queues[q].state.event_idx, 1);

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	assert_int_equal(f->activates, 2);
	for (unsigned int q = 0; q < NR_QUEUES; q++)
		assert_int_equal(f->dev.queues[q].state.event_idx, 0);
	/* Writing DRIVER_OK again does not activate again. */
	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	assert_int_equal(f->activates, 2);
}

static void test_activation_failure_sets_needs_reset(void **state)
{
	struct fake *f = *state;

	f->activate_result = -EIO;
	negotiate(f, 1ULL << VIRTIO_F_VERSION_1);
	setup_queue(f, 0);
	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	assert_int_equal(f->activates, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP | VIRTIO_STATUS_NEEDS_RESET);
	add_request(f, 0, 0, 0x12345678);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->notifies, 0);
}

/* --- queue configuration -------------------------------------------------------------- */

static void test_queue_address_registers_combine_low_and_high_halves(void **state)
{
	struct fake *f = *state;
	const struct vq_state *s = &f->dev.queues[1].state;

	write_queue_config(f, 1, 4, 0x1122334455667780ULL, 0x0000000100000002ULL,
			   0xfffffffffffffffcULL);
	assert_int_equal(s->size, 4);
	assert_int_equal(s->desc_gpa, 0x1122334455667780ULL);
	assert_int_equal(s->avail_gpa, 0x0000000100000002ULL);
	assert_int_equal(s->used_gpa, 0xfffffffffffffffcULL);
	/* Rewriting one half keeps the other. */
	wr(f, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
	assert_int_equal(s->desc_gpa, 0x1122334400001000ULL);
	wr(f, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	assert_int_equal(s->desc_gpa, 0x1000);
	/* The other queue is untouched. */
	assert_int_equal(f->dev.queues[0].state.desc_gpa, 0);
}

static void test_queue_config_writes_ignored_once_ready(void **state)
{
	struct fake *f = *state;
	struct vq_state before;

	negotiate(f, 1ULL << VIRTIO_F_VERSION_1);
	setup_queue(f, 0);
	before = f->dev.queues[0].state;
	write_queue_config(f, 0, 4, 0x7000, 0x8000, 0x9000);
	assert_memory_equal(&f->dev.queues[0].state, &before, sizeof(before));
	/* Writing 1 again to a ready queue changes nothing either. */
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_memory_equal(&f->dev.queues[0].state, &before, sizeof(before));

	/* Once the driver clears QueueReady the configuration can change again. */
	wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	write_queue_config(f, 0, 4, 0x7000, 0x8000, 0x9000);
	assert_int_equal(f->dev.queues[0].state.size, 4);
	assert_int_equal(f->dev.queues[0].state.desc_gpa, 0x7000);
	assert_int_equal(f->dev.queues[0].state.used_gpa, 0x9000);
}

static void test_queue_ready_with_bad_config_sets_needs_reset_and_stays_unready(void **state)
{
	struct fake *f = *state;
	const struct {
		uint32_t size;
		uint64_t desc, avail, used;
	} bad[] = {
	    {3, desc_gpa(0), avail_gpa(0), used_gpa(0)},
	    {0, desc_gpa(0), avail_gpa(0), used_gpa(0)},
	    {0x10000 + QSIZE, desc_gpa(0), avail_gpa(0), used_gpa(0)}, /* over 16 bits */
	    {QMAX * 2, desc_gpa(0), avail_gpa(0), used_gpa(0)},
	    {QSIZE, desc_gpa(0) + 8, avail_gpa(0), used_gpa(0)},
	    {QSIZE, desc_gpa(0), avail_gpa(0), RAM_SIZE - 8},
	    {QSIZE, desc_gpa(0), 1ULL << 36, used_gpa(0)},
	};

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		negotiate(f, 1ULL << VIRTIO_F_VERSION_1);
		write_queue_config(f, 0, bad[i].size, bad[i].desc, bad[i].avail, bad[i].used);
		wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
		if (rd(f, VIRTIO_MMIO_QUEUE_READY) != 0)
			fail_msg("case %u: a bad configuration became ready", i);
		assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
		assert_int_equal(f->dev.needs_reset_events, i + 1);
		/* Before DRIVER_OK the driver is not interrupted (virtio 1.2, 2.1.2). */
		assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
		assert_int_equal(f->signals, 0);
	}
}

static void test_queue_ready_with_bad_config_after_driver_ok_interrupts(void **state)
{
	struct fake *f = *state;

	negotiate(f, 1ULL << VIRTIO_F_VERSION_1);
	setup_queue(f, 0);
	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	write_queue_config(f, 1, 5, desc_gpa(1), avail_gpa(1), used_gpa(1));
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	assert_int_equal(f->signals, 1);
	/* The device is no longer live: the good queue is not served either. */
	add_request(f, 0, 0, 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->notifies, 0);
}

/*
 * DEVICE_NEEDS_RESET is the device's to clear (by a reset), and the device must not use
 * buffers after setting it (virtio 1.2, 2.1.1). A queue refused at QueueReady before
 * DRIVER_OK sets it; the driver's DRIVER_OK write must not clear it.
 */
static void test_needs_reset_before_driver_ok_survives_driver_ok(void **state)
{
	struct fake *f = *state;

	negotiate(f, 1ULL << VIRTIO_F_VERSION_1);
	setup_queue(f, 0);
	write_queue_config(f, 1, 3, desc_gpa(1), avail_gpa(1), used_gpa(1));
	wr(f, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);

	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	add_request(f, 0, 0, 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->notifies, 0);
}

/* --- notifications and interrupts ----------------------------------------------------- */

/* Runs fn(f) in a thread and waits for it. The deadline is generous: only a thread stuck
 * on a lock (the bug under test) misses it. A liveness check, not a timing one. */
static bool finishes(void *(*fn)(void *), struct fake *f)
{
	struct timespec deadline;
	pthread_t thread;

	assert_int_equal(pthread_create(&thread, NULL, fn, f), 0);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 30;
	return pthread_timedjoin_np(thread, NULL, &deadline) == 0;
}

static uint32_t interrupt_status_seen;

/* A guest's interrupt handler: read the status, acknowledge what it read. */
static void *interrupt_handler(void *arg)
{
	struct fake *f = arg;
	interrupt_status_seen = rd(f, VIRTIO_MMIO_INTERRUPT_STATUS);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, interrupt_status_seen);
	return NULL;
}

static void test_interrupt_status_and_ack_do_not_wait_for_the_device_lock(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 7);
	virtio_config_changed(&f->dev);
	/* The lock held as a device holds it while it waits for io_uring requests. */
	pthread_mutex_lock(&f->dev.lock);
	interrupt_status_seen = 0;
	bool done = finishes(interrupt_handler, f);
	pthread_mutex_unlock(&f->dev.lock);
	assert_true(done);
	assert_int_equal(interrupt_status_seen, VIRTIO_INT_USED_BUFFER | VIRTIO_INT_CONFIG);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

static uint32_t registers_seen[4];
static uint8_t config_seen[4];

/* What a guest may read while the device works: none of it waits. */
static void *read_registers(void *arg)
{
	struct fake *f = arg;
	registers_seen[0] = rd(f, VIRTIO_MMIO_INTERRUPT_STATUS);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, registers_seen[0]);
	registers_seen[1] = rd(f, VIRTIO_MMIO_STATUS);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 0);
	registers_seen[2] = rd(f, VIRTIO_MMIO_QUEUE_READY);
	registers_seen[3] = rd(f, VIRTIO_MMIO_CONFIG_GENERATION);
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_CONFIG, config_seen, sizeof(config_seen));
	return NULL;
}

static void *notify_queue_0(void *arg)
{
	struct fake *f = arg;
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0); /* no kick callback: runs the device here */
	return NULL;
}

static void *reset_device(void *arg)
{
	struct fake *f = arg;
	wr(f, VIRTIO_MMIO_STATUS, 0);
	return NULL;
}

static void test_blocking_io_leaves_registers_readable_and_holds_back_a_reset(void **state)
{
	struct fake *f = *state;
	pthread_t worker, resetter;
	unsigned int resets;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 7); /* an interrupt pending */
	resets = f->resets;
	assert_int_equal(pipe(f->io_gate), 0);
	assert_int_equal(sem_init(&f->io_entered, 0, 0), 0);
	f->block_in_io = true;

	/* The "VMM thread" runs the device, which blocks in its host call. */
	add_request(f, 0, 2, 0x55);
	assert_int_equal(pthread_create(&worker, NULL, notify_queue_0, f), 0);
	sem_wait(&f->io_entered);

	/* Meanwhile the guest's reads and its interrupt acknowledgement all complete. */
	assert_true(finishes(read_registers, f));
	assert_int_equal(registers_seen[0], VIRTIO_INT_USED_BUFFER);
	assert_int_equal(registers_seen[1], DRIVER_UP);
	assert_int_equal(registers_seen[2], 1);
	assert_int_equal(registers_seen[3], 0); /* no configuration change yet */
	assert_memory_equal(config_seen, f->config, sizeof(config_seen));
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

	/* A reset must wait for the host call: the request's buffers are in use. Give the
	 * resetting thread time to reach the lock (if it is slower, the check below holds
	 * anyway; with the bug it would reset under the call). */
	assert_int_equal(pthread_create(&resetter, NULL, reset_device, f), 0);
	usleep(100 * 1000);
	assert_int_equal(f->resets, resets);
	assert_int_equal(write(f->io_gate[1], "x", 1), 1);
	assert_int_equal(pthread_join(worker, NULL), 0);
	assert_int_equal(pthread_join(resetter, NULL), 0);
	assert_int_equal(atomic_load(&f->resets_during_io), 0);
	assert_int_equal(f->resets, resets + 1);
	/* The request that was in the host call completed before the reset. */
	assert_int_equal(response(f, 0, 2), ~0x55u);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);

	f->block_in_io = false;
	close(f->io_gate[0]);
	close(f->io_gate[1]);
	sem_destroy(&f->io_entered);
}

static void test_queue_notify_runs_the_device_and_interrupts(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 0x11223344);
	assert_int_equal(f->notifies, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED_BUFFER);
	assert_int_equal(f->signals, 1);
	send_and_check_request(f, 1, 2, 0xcafef00d);
	assert_int_equal(f->signals, 2);
	/* Two requests at once, one notification. */
	add_request(f, 0, 2, 5);
	add_request(f, 0, 4, 6);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->chains_done, 4);
	assert_int_equal(response(f, 0, 4), ~6u);
	assert_int_equal(used_idx(f, 0), 3);
}

static void test_queue_notify_ignored_before_driver_ok_or_for_unready_or_missing_queue(void **state)
{
	struct fake *f = *state;

	negotiate(f, 1ULL << VIRTIO_F_VERSION_1);
	setup_queue(f, 0);
	add_request(f, 0, 0, 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->notifies, 0);

	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1); /* queue 1 never made ready */
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, NR_QUEUES);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
	assert_int_equal(f->notifies, 0);
	virtio_queue_notified(&f->dev, VIRTIO_MAX_QUEUES + 1);
	assert_int_equal(f->notifies, 0);
	/* The earlier request is picked up by the first notification that counts. */
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->notifies, 1);
	assert_int_equal(f->chains_done, 1);
}

static void test_queue_notify_goes_to_kick_callback_when_set(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	f->dev.kick = fake_kick;
	add_request(f, 1, 0, 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(f->kicks, 1);
	assert_int_equal(f->last_kick, 1);
	assert_int_equal(f->notifies, 0);
	virtio_queue_notified(&f->dev, f->last_kick);
	assert_int_equal(f->notifies, 1);
	assert_int_equal(response(f, 1, 0), ~1u);
}

static void test_interrupt_ack_clears_only_acknowledged_bits(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 7);
	virtio_config_changed(&f->dev);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_INT_USED_BUFFER | VIRTIO_INT_CONFIG);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_INT_USED_BUFFER);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	wr(f, VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

static void test_used_interrupt_suppressed_by_no_interrupt_flag(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	gpa_write16(&f->mem, avail_gpa(0), VRING_AVAIL_F_NO_INTERRUPT);
	send_and_check_request(f, 0, 0, 1);
	assert_int_equal(f->signals, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	gpa_write16(&f->mem, avail_gpa(0), 0);
	send_and_check_request(f, 0, 2, 2);
	assert_int_equal(f->signals, 1);
}

static void test_used_interrupt_with_event_idx_follows_used_event(void **state)
{
	struct fake *f = *state;

	driver_init(f, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX));
	send_and_check_request(f, 0, 0, 1); /* the first one always interrupts */
	assert_int_equal(f->signals, 1);
	gpa_write16(&f->mem, avail_gpa(0) + 4 + 2 * QSIZE, 2); /* used_event: after entry 2 */
	send_and_check_request(f, 0, 2, 2);		       /* used idx 2 */
	assert_int_equal(f->signals, 1);
	send_and_check_request(f, 0, 4, 3); /* used idx 3: passed 2 */
	assert_int_equal(f->signals, 2);
}

static void test_config_changed_bumps_generation_and_interrupts_only_when_live(void **state)
{
	struct fake *f = *state;

	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 0);
	virtio_config_changed(&f->dev);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(f->signals, 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	virtio_config_changed(&f->dev);
	assert_int_equal(rd(f, VIRTIO_MMIO_CONFIG_GENERATION), 2);
	assert_int_equal(f->signals, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
}

/* --- hostile queues and reset ---------------------------------------------------------- */

static void break_queue_0(struct fake *f)
{
	put_desc(f, 0, 0, BUF_GPA, 4, VRING_DESC_F_NEXT, QSIZE); /* next outside the table */
	make_available(f, 0, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

static void test_broken_queue_sets_needs_reset_with_config_interrupt_once(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	break_queue_0(f);
	assert_int_equal(f->notifies, 1);
	assert_int_equal(f->dev.queues[0].state.broken, 1);
	assert_non_null(f->dev.queues[0].broken_reason);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP | VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_CONFIG);
	assert_int_equal(f->signals, 1);
	assert_int_equal(f->dev.needs_reset_events, 1);
	assert_int_equal(used_idx(f, 0), 0);

	/* Nothing more runs, on this queue or the other, and it is reported only once. */
	add_request(f, 1, 0, 1);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(f->notifies, 1);
	assert_int_equal(used_idx(f, 1), 0);
	pthread_mutex_lock(&f->dev.lock);
	virtio_queue_failed(&f->dev, 0);
	pthread_mutex_unlock(&f->dev.lock);
	assert_int_equal(f->dev.needs_reset_events, 1);
	assert_int_equal(f->signals, 1);
}

static void test_driver_cannot_clear_needs_reset_by_writing_status(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	break_queue_0(f);
	wr(f, VIRTIO_MMIO_STATUS, DRIVER_UP);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP | VIRTIO_STATUS_NEEDS_RESET);
	wr(f, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
}

static void assert_device_is_reset(struct fake *f)
{
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(f->dev.driver_features, 0);
	assert_int_equal(f->dev.queue_sel, 0);
	assert_int_equal(f->dev.device_features_sel, 0);
	assert_int_equal(f->dev.driver_features_sel, 0);
	for (unsigned int q = 0; q < NR_QUEUES; q++) {
		const struct virtqueue *vq = &f->dev.queues[q];
		assert_int_equal(vq->state.ready, 0);
		assert_int_equal(vq->state.broken, 0);
		assert_null(vq->broken_reason);
		assert_int_equal(vq->state.last_avail_idx, 0);
		assert_int_equal(vq->state.used_idx, 0);
		assert_int_equal(vq->state.desc_gpa, 0);
		assert_int_equal(vq->state.size, QMAX);
	}
}

static void test_status_0_resets_everything_and_device_works_again(void **state)
{
	struct fake *f = *state;

	driver_init(f, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX));
	send_and_check_request(f, 1, 0, 42);
	break_queue_0(f);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);

	f->resets = 0;
	wr(f, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(f->resets, 1);
	assert_device_is_reset(f);
	assert_int_equal(f->dev.queues[0].state.event_idx, 0);

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 0x01020304);
	send_and_check_request(f, 1, 0, 0x05060708);
	assert_int_equal(f->dev.needs_reset_events, 1);
	/* A second failure after the reset is reported again. */
	break_queue_0(f);
	assert_true(rd(f, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(f->dev.needs_reset_events, 2);
}

static void test_transport_reset_op_resets_like_status_0(void **state)
{
	struct fake *f = *state;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 1);
	f->resets = 0;
	virtio_mmio_ops.reset(&f->dev);
	assert_int_equal(f->resets, 1);
	assert_device_is_reset(f);
	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 2);
}

/* --- access sizes and the configuration space ------------------------------------------ */

static void test_unaligned_and_short_register_accesses_are_ignored(void **state)
{
	struct fake *f = *state;
	uint8_t data[8];
	uint32_t v;

	memset(data, 0xcc, sizeof(data));
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_MAGIC, data, 2);
	assert_int_equal(data[0], 0);
	assert_int_equal(data[1], 0);
	assert_int_equal(data[2], 0xcc); /* only `len` bytes are touched */
	memset(data, 0xcc, sizeof(data));
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_MAGIC + 1, data, 4);
	memcpy(&v, data, 4);
	assert_int_equal(v, 0);
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_MAGIC, data, 1);
	assert_int_equal(data[0], 0);

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	f->resets = 0;
	v = 0;
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_STATUS, (const uint8_t *)&v, 1);
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_STATUS, (const uint8_t *)&v, 2);
	memset(data, 0, sizeof(data));
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_STATUS, data, 8);
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_STATUS + 2, data, 4);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP);
	assert_int_equal(f->resets, 0);

	/* A short QueueNotify does not run the device; a short ack clears nothing. */
	add_request(f, 0, 0, 1);
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_QUEUE_NOTIFY, data, 2);
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_QUEUE_NOTIFY + 1, data, 4);
	assert_int_equal(f->notifies, 0);
	wr(f, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_int_equal(f->notifies, 1);
	v = 0xffffffff;
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_INTERRUPT_ACK, (const uint8_t *)&v, 2);
	assert_int_equal(rd(f, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_INT_USED_BUFFER);
	/* A short write to a queue register leaves the queue alone. */
	wr(f, VIRTIO_MMIO_QUEUE_READY, 0);
	v = 3;
	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_QUEUE_NUM, (const uint8_t *)&v, 2);
	assert_int_equal(f->dev.queues[0].state.size, QSIZE);
}

static void test_config_space_accesses_are_delegated_with_offsets(void **state)
{
	struct fake *f = *state;
	uint8_t data[8];

	memset(data, 0xcc, sizeof(data));
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_CONFIG + 4, data, 2);
	assert_int_equal(f->config_offset, 4);
	assert_int_equal(f->config_len, 2);
	assert_int_equal(data[0], 0xa4);
	assert_int_equal(data[1], 0xa5);
	assert_int_equal(data[2], 0xcc);

	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_CONFIG, data, 8);
	assert_int_equal(f->config_offset, 0);
	assert_int_equal(f->config_len, 8);
	assert_memory_equal(data, f->config, 8);

	/* Unaligned and odd-sized accesses are the device's business, not refused. */
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_CONFIG + 7, data, 1);
	assert_int_equal(f->config_offset, 7);
	assert_int_equal(data[0], 0xa7);
	/* Past the device's config: it leaves the data alone, which reads as zero. */
	memset(data, 0xcc, sizeof(data));
	virtio_mmio_ops.read(&f->dev, VIRTIO_MMIO_CONFIG + 0x40, data, 4);
	assert_int_equal(f->config_offset, 0x40);
	assert_int_equal(data[0], 0);
	assert_int_equal(data[3], 0);

	virtio_mmio_ops.write(&f->dev, VIRTIO_MMIO_CONFIG + 9, (const uint8_t *)"\x5a", 1);
	assert_int_equal(f->config_writes, 1);
	assert_int_equal(f->config_offset, 9);
	assert_int_equal(f->config_len, 1);
	assert_int_equal(f->config[9], 0x5a);
	/* Transport registers do not reach the device's config. */
	wr(f, VIRTIO_MMIO_CONFIG - 4, 0);
	assert_int_equal(f->config_writes, 1);
}

/* --- snapshots --------------------------------------------------------------------- */

#define SNAPSHOT_FIXED (sizeof(struct virtio_transport_state) + NR_QUEUES * sizeof(struct vq_state))

static void test_save_restore_round_trip(void **state)
{
	struct fake *f = *state;
	struct fake *g = calloc(1, sizeof(*g));
	uint8_t buf[512];
	int size;

	assert_non_null(g);
	driver_init(f, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_EVENT_IDX) | FEATURE_HI);
	send_and_check_request(f, 0, 0, 1);
	send_and_check_request(f, 0, 2, 2);
	send_and_check_request(f, 1, 0, 3);
	virtio_config_changed(&f->dev);
	wr(f, VIRTIO_MMIO_QUEUE_SEL, 1);
	wr(f, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	f->device_state = 0xdeadbeef;

	size = virtio_mmio_ops.save(&f->dev, buf, sizeof(buf));
	assert_int_equal(size, SNAPSHOT_FIXED + sizeof(uint32_t));

	fake_init(g, &f->mem, "fake1");
	g->mem = f->mem; /* the driver-side helpers' view of the same guest RAM */
	assert_int_equal(virtio_mmio_ops.restore(&g->dev, buf, (size_t)size), 0);
	assert_int_equal(g->device_state, 0xdeadbeef);
	assert_int_equal(g->dev.driver_features, f->dev.driver_features);
	assert_int_equal(rd(g, VIRTIO_MMIO_STATUS), DRIVER_UP);
	assert_int_equal(rd(g, VIRTIO_MMIO_INTERRUPT_STATUS), rd(f, VIRTIO_MMIO_INTERRUPT_STATUS));
	assert_int_equal(rd(g, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_int_equal(rd(g, VIRTIO_MMIO_DEVICE_FEATURES), rd(f, VIRTIO_MMIO_DEVICE_FEATURES));
	assert_int_equal(g->dev.queue_sel, 1);
	assert_int_equal(rd(g, VIRTIO_MMIO_QUEUE_READY), 1);
	for (unsigned int q = 0; q < NR_QUEUES; q++)
		assert_memory_equal(&g->dev.queues[q].state, &f->dev.queues[q].state,
				    sizeof(struct vq_state));
	assert_int_equal(g->activates, 0); /* restore does not re-run activation */

	/* The restored device carries on where the saved one stopped. */
	g->avail_idx[0] = f->avail_idx[0];
	g->avail_idx[1] = f->avail_idx[1];
	send_and_check_request(g, 0, 4, 4);
	assert_int_equal(used_idx(g, 0), 3);
	assert_int_equal(g->dev.queues[0].state.last_avail_idx, 3);
	send_and_check_request(g, 1, 2, 5);
	assert_int_equal(used_idx(g, 1), 2);

	pthread_mutex_destroy(&g->dev.lock);
	free(g);
}

static void test_save_into_small_buffer_fails(void **state)
{
	struct fake *f = *state;
	uint8_t buf[SNAPSHOT_FIXED + 4];

	assert_int_equal(virtio_mmio_ops.save(&f->dev, buf, SNAPSHOT_FIXED - 1), -ENOSPC);
	/* Room for the transport but not the device's own state. */
	assert_int_equal(virtio_mmio_ops.save(&f->dev, buf, SNAPSHOT_FIXED), -ENOSPC);
	assert_int_equal(virtio_mmio_ops.save(&f->dev, buf, sizeof(buf)), sizeof(buf));
}

static void test_restore_rejects_malformed_snapshots(void **state)
{
	struct fake *f = *state;
	uint8_t good[512], bad[512];
	struct virtio_transport_state t;
	struct vq_state q;
	int size;

	driver_init(f, 1ULL << VIRTIO_F_VERSION_1);
	send_and_check_request(f, 0, 0, 1);
	size = virtio_mmio_ops.save(&f->dev, good, sizeof(good));
	assert_true(size > 0);
	wr(f, VIRTIO_MMIO_STATUS, 0);

	/* Too short for the transport and queue states. */
	assert_int_equal(virtio_mmio_ops.restore(&f->dev, good, SNAPSHOT_FIXED - 1), -EINVAL);
	/* Features the device does not offer. */
	memcpy(bad, good, (size_t)size);
	memcpy(&t, bad, sizeof(t));
	t.driver_features |= 1ULL << 40;
	memcpy(bad, &t, sizeof(t));
	assert_int_equal(virtio_mmio_ops.restore(&f->dev, bad, (size_t)size), -EINVAL);
	/* A ready queue whose rings are misaligned. */
	memcpy(bad, good, (size_t)size);
	memcpy(&q, bad + sizeof(t), sizeof(q));
	q.desc_gpa += 8;
	memcpy(bad + sizeof(t), &q, sizeof(q));
	assert_int_equal(virtio_mmio_ops.restore(&f->dev, bad, (size_t)size), -EINVAL);
	/* A queue state of another device model (different maximum size). */
	memcpy(bad, good, (size_t)size);
	memcpy(&q, bad + sizeof(t) + sizeof(q), sizeof(q));
	q.max_size = QMAX * 2;
	memcpy(bad + sizeof(t) + sizeof(q), &q, sizeof(q));
	assert_int_equal(virtio_mmio_ops.restore(&f->dev, bad, (size_t)size), -EINVAL);
	/* None of them reached the device's own restore (its side effects on the host): the
	 * queues and transport are checked first. */
	assert_int_equal(f->device_restores, 0);
	/* Every refusal above left the transport registers as they were: reset. */
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(f->dev.driver_features, 0);
	/* The device's own state is checked too (the fake wants exactly 4 bytes). */
	assert_int_equal(virtio_mmio_ops.restore(&f->dev, good, (size_t)size - 1), -EINVAL);

	assert_int_equal(virtio_mmio_ops.restore(&f->dev, good, (size_t)size), 0);
	assert_int_equal(f->device_restores, 1);
	assert_int_equal(rd(f, VIRTIO_MMIO_STATUS), DRIVER_UP);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_identification_registers),
	    T(test_queue_num_max_per_queue_and_0_for_missing_queue),
	    T(test_device_features_offered_in_two_words_with_version_1),
	    T(test_features_ok_accepted_for_offered_subset_with_version_1),
	    T(test_features_ok_refused_without_version_1),
	    T(test_features_ok_refused_with_unoffered_bits),
	    T(test_driver_features_fixed_after_features_ok_and_bad_select_ignored),
	    T(test_driver_ok_activates_and_sets_event_idx_as_negotiated),
	    T(test_activation_failure_sets_needs_reset),
	    T(test_queue_address_registers_combine_low_and_high_halves),
	    T(test_queue_config_writes_ignored_once_ready),
	    T(test_queue_ready_with_bad_config_sets_needs_reset_and_stays_unready),
	    T(test_queue_ready_with_bad_config_after_driver_ok_interrupts),
	    T(test_needs_reset_before_driver_ok_survives_driver_ok),
	    T(test_queue_notify_runs_the_device_and_interrupts),
	    T(test_queue_notify_ignored_before_driver_ok_or_for_unready_or_missing_queue),
	    T(test_queue_notify_goes_to_kick_callback_when_set),
	    T(test_interrupt_ack_clears_only_acknowledged_bits),
	    T(test_interrupt_status_and_ack_do_not_wait_for_the_device_lock),
	    T(test_blocking_io_leaves_registers_readable_and_holds_back_a_reset),
	    T(test_used_interrupt_suppressed_by_no_interrupt_flag),
	    T(test_used_interrupt_with_event_idx_follows_used_event),
	    T(test_config_changed_bumps_generation_and_interrupts_only_when_live),
	    T(test_broken_queue_sets_needs_reset_with_config_interrupt_once),
	    T(test_driver_cannot_clear_needs_reset_by_writing_status),
	    T(test_status_0_resets_everything_and_device_works_again),
	    T(test_transport_reset_op_resets_like_status_0),
	    T(test_unaligned_and_short_register_accesses_are_ignored),
	    T(test_config_space_accesses_are_delegated_with_offsets),
	    T(test_save_restore_round_trip),
	    T(test_save_into_small_buffer_fails),
	    T(test_restore_rejects_malformed_snapshots),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
