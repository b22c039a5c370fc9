/* Unit tests for virtio-blk (devices/virtio/blk.c): a fake guest RAM holds a split
 * virtqueue that the tests fill by hand the way a driver would, over a temporary image
 * file, with both the Sync and the Async (io_uring) engines. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/blk_internal.h"
#include "event_loop.h"
#include "log.h"
#include "rate_limiter.h"
#include "test_support.h"

#define MEM_SIZE   (16u << 20)
#define IMAGE_SIZE (1u << 20)
#define SECTORS	   (IMAGE_SIZE / 512)
#define QSIZE	   16
#define DESC_GPA   0x1000
#define AVAIL_GPA  0x2000
#define USED_GPA   0x3000
#define HDR_GPA	   0x10000 /* 32 bytes per request slot */
#define STATUS_GPA 0x11000 /* one byte per request slot */
#define DATA_GPA   0x100000
#define DATA2_GPA  0x200000

struct params {
	enum io_engine engine;
	bool read_only;
	uint64_t features; /* beyond VERSION_1 */
	bool direct;
	enum cache_type cache;
};

static const struct params sync_direct = {IO_ENGINE_SYNC, false, 0, true, CACHE_UNSAFE};
static const struct params async_direct = {IO_ENGINE_ASYNC, false, 0, true, CACHE_UNSAFE};

static const struct params sync_rw = {IO_ENGINE_SYNC, false, 0, false, CACHE_UNSAFE};
static const struct params async_rw = {IO_ENGINE_ASYNC, false, 0, false, CACHE_UNSAFE};
static const struct params sync_ro = {IO_ENGINE_SYNC, true, 0, false, CACHE_UNSAFE};
static const struct params async_ro = {IO_ENGINE_ASYNC, true, 0, false, CACHE_UNSAFE};
static const struct params sync_event_idx = {IO_ENGINE_SYNC, false, 1ULL << VIRTIO_F_EVENT_IDX,
					     false, CACHE_UNSAFE};
static const struct params sync_writeback = {IO_ENGINE_SYNC, false, 0, false, CACHE_WRITEBACK};
static const struct params async_writeback = {IO_ENGINE_ASYNC, false, 0, false, CACHE_WRITEBACK};

struct fixture {
	struct params params;
	struct gmem mem;
	uint8_t *ram;
	char path[64];
	struct blk_device *blk;
	struct virtio_device *dev;
	struct guest_queue q; /* the driver's view of queue 0 */
	unsigned int slot;
};

static unsigned int signals;

static void count_signal(struct virtio_device *dev)
{
	(void)dev;
	signals++;
}

static void *gpa(struct fixture *f, uint64_t addr)
{
	return f->ram + addr;
}

static int make_image(char *path, size_t size, off_t length)
{
	int fd;

	snprintf(path, size, "/tmp/wisp-test-blk-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, length) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct drive_config drive(struct fixture *f)
{
	struct drive_config config = {.id = "rootfs",
				      .read_only = f->params.read_only,
				      .direct = f->params.direct,
				      .engine = f->params.engine,
				      .cache = f->params.cache};
	snprintf(config.path, sizeof(config.path), "%s", f->path);
	return config;
}

/* What a driver does up to DRIVER_OK, with the queue registers written directly. */
static void start_device(struct fixture *f)
{
	struct virtqueue *vq = &f->dev->queues[0];

	f->dev->driver_features = (1ULL << VIRTIO_F_VERSION_1) | f->params.features;
	f->dev->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK;
	f->dev->signal = count_signal;
	vq->state.size = QSIZE;
	vq->state.desc_gpa = DESC_GPA;
	vq->state.avail_gpa = AVAIL_GPA;
	vq->state.used_gpa = USED_GPA;
	vq->state.event_idx = !!(f->params.features & (1ULL << VIRTIO_F_EVENT_IDX));
	assert_int_equal(vq_check_config(vq), 0);
	vq->state.ready = 1;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct drive_config config;
	int fd;

	assert_non_null(f);
	f->params = *(const struct params *)*state;
	f->ram = fake_ram_new(&f->mem, MEM_SIZE, MEM_SIZE, 0);
	assert_non_null(f->ram);
	f->q = (struct guest_queue){
	    .desc = DESC_GPA, .avail = AVAIL_GPA, .used = USED_GPA, .size = QSIZE};
	fd = make_image(f->path, sizeof(f->path), IMAGE_SIZE);
	assert_true(fd >= 0);
	close(fd);
	config = drive(f);
	assert_int_equal(blk_create(&f->blk, &config, &f->mem, NULL), 0);
	assert_int_equal(blk_engine(f->blk), f->params.engine);
	f->dev = blk_virtio(f->blk);
	start_device(f);
	signals = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	blk_destroy(f->blk);
	unlink(f->path);
	free(f->ram);
	free(f);
	return 0;
}

/* Adds a chain to the descriptor table and makes it available; returns its head. */
static uint16_t add_chain(struct fixture *f, const struct seg *segs, unsigned int n)
{
	return guest_queue_add_chain(&f->mem, &f->q, segs, n);
}

/* A request in three descriptors: header, data (if len), status. Returns the gpa of
 * its status byte, preset to 0xff so that a status the device never wrote shows. */
static uint64_t add_request(struct fixture *f, uint32_t type, uint64_t sector, uint64_t data,
			    uint32_t len)
{
	uint64_t hdr_gpa = HDR_GPA + 32 * f->slot, status_gpa = STATUS_GPA + f->slot;
	struct virtio_blk_outhdr hdr = {.type = type, .sector = sector};
	struct seg segs[3];
	unsigned int n = 0;

	f->slot = (f->slot + 1) % 64;
	memcpy(gpa(f, hdr_gpa), &hdr, sizeof(hdr));
	*(uint8_t *)gpa(f, status_gpa) = 0xff;
	segs[n++] = (struct seg){hdr_gpa, sizeof(hdr), false};
	if (len)
		segs[n++] = (struct seg){data, len, type != VIRTIO_BLK_T_OUT};
	segs[n++] = (struct seg){status_gpa, 1, true};
	add_chain(f, segs, n);
	return status_gpa;
}

static uint8_t status_at(struct fixture *f, uint64_t status_gpa)
{
	return *(uint8_t *)gpa(f, status_gpa);
}

static uint16_t used_idx(struct fixture *f)
{
	return guest_queue_used_idx(&f->mem, &f->q);
}

static struct vring_used_elem used_elem(struct fixture *f, uint16_t i)
{
	return guest_queue_used_elem(&f->mem, &f->q, i);
}

/* Waits for every io_uring completion and runs the completion path the event loop
 * would run. */
static void complete_all(struct fixture *f)
{
	while (blk_inflight(f->blk)) {
		struct pollfd p = {.fd = blk_event_fd(f->blk), .events = POLLIN};
		assert_int_equal(poll(&p, 1, 5000), 1);
		blk_complete_async(f->blk);
	}
}

/* The guest's notification, then whatever the engine needs to finish. */
static void kick(struct fixture *f)
{
	virtio_queue_notified(f->dev, 0);
	complete_all(f);
}

static uint64_t metric(_Atomic uint64_t *counter)
{
	return atomic_load(counter);
}

static void read_image(struct fixture *f, void *buf, size_t len, off_t offset)
{
	int fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, offset), (ssize_t)len);
	close(fd);
}

static void config_read(struct fixture *f, uint64_t offset, void *buf, uint32_t len)
{
	virtio_mmio_ops.read(f->dev, VIRTIO_MMIO_CONFIG + offset, buf, len);
}

static void test_config_space(void **state)
{
	struct fixture *f = *state;
	uint64_t capacity = 0, value;
	uint32_t word;

	config_read(f, 0, &capacity, 8);
	assert_int_equal(capacity, SECTORS);
	config_read(f, offsetof(struct virtio_blk_config, seg_max), &word, 4);
	assert_int_equal(word, VQ_MAX_CHAIN - 2);
	config_read(f, offsetof(struct virtio_blk_config, blk_size), &word, 4);
	assert_int_equal(word, 512);
	/* Straddling the end: the part inside reads, the rest is zero. */
	value = ~0ULL;
	config_read(f, offsetof(struct virtio_blk_config, blk_size), &value, 8);
	assert_int_equal(value, 512);
	word = 0xffffffff;
	config_read(f, sizeof(struct virtio_blk_config), &word, 4);
	assert_int_equal(word, 0);
	value = ~0ULL;
	f->dev->ops->config_read(f->dev, UINT64_MAX - 3, (uint8_t *)&value, 8);
	assert_int_equal(value, 0);
	/* Writes are ignored. */
	value = 7;
	virtio_mmio_ops.write(f->dev, VIRTIO_MMIO_CONFIG, (uint8_t *)&value, 8);
	config_read(f, 0, &capacity, 8);
	assert_int_equal(capacity, SECTORS);
}

static void test_features(void **state)
{
	struct fixture *f = *state;
	uint64_t features = f->dev->ops->features(f->dev);

	assert_true(features & (1ULL << VIRTIO_BLK_F_SEG_MAX));
	/* As in Firecracker: flush is offered by Writeback drives only. */
	assert_int_equal(!!(features & (1ULL << VIRTIO_BLK_F_FLUSH)),
			 f->params.cache == CACHE_WRITEBACK);
	assert_true(features & (1ULL << VIRTIO_BLK_F_BLK_SIZE));
	assert_true(features & (1ULL << VIRTIO_F_INDIRECT_DESC));
	assert_true(features & (1ULL << VIRTIO_F_EVENT_IDX));
	assert_int_equal(!!(features & (1ULL << VIRTIO_BLK_F_RO)), f->params.read_only);
	assert_int_equal(f->dev->ops->device_id, VIRTIO_ID_BLOCK);
	assert_int_equal(f->dev->queues[0].state.max_size, 256);
	assert_string_equal(blk_drive_config(f->blk)->id, "rootfs");
	assert_string_equal(blk_drive_config(f->blk)->path, f->path);
	assert_ptr_equal((struct blk_device *)f->dev, f->blk);
}

static void test_write_then_read_back(void **state)
{
	struct fixture *f = *state;
	uint8_t on_disk[4096];
	uint64_t st;

	fill_pattern(gpa(f, DATA_GPA), 4096, 1, 7);
	st = add_request(f, VIRTIO_BLK_T_OUT, 8, DATA_GPA, 4096);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_elem(f, 0).id, 0);
	assert_int_equal(used_elem(f, 0).len, 1);
	read_image(f, on_disk, sizeof(on_disk), 8 * 512);
	assert_memory_equal(on_disk, gpa(f, DATA_GPA), 4096);

	memset(gpa(f, DATA2_GPA), 0, 4096);
	st = add_request(f, VIRTIO_BLK_T_IN, 8, DATA2_GPA, 4096);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(used_elem(f, 1).id, 3);
	assert_int_equal(used_elem(f, 1).len, 4097);
	assert_memory_equal(gpa(f, DATA2_GPA), gpa(f, DATA_GPA), 4096);

	assert_int_equal(metric(&blk_metrics(f->blk)->write_bytes), 4096);
	assert_int_equal(metric(&blk_metrics(f->blk)->write_count), 1);
	assert_int_equal(metric(&blk_metrics(f->blk)->read_bytes), 4096);
	assert_int_equal(metric(&blk_metrics(f->blk)->read_count), 1);
	assert_int_equal(metric(&blk_metrics(f->blk)->io_errors), 0);
	assert_true(signals >= 2);
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Header split over two descriptors, data over three, the last of which also holds the
 * status byte on the way back. */
static void test_split_buffers(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_outhdr hdr = {.type = VIRTIO_BLK_T_OUT, .sector = 3};
	uint8_t on_disk[2048];

	memcpy(gpa(f, HDR_GPA), &hdr, sizeof(hdr));
	fill_pattern(gpa(f, DATA_GPA), 2048, 5, 7);
	const struct seg out[] = {
	    {HDR_GPA, 8, false},	   {HDR_GPA + 8, 8, false},	  {DATA_GPA, 512, false},
	    {DATA_GPA + 512, 1024, false}, {DATA_GPA + 1536, 512, false}, {STATUS_GPA, 1, true},
	};
	*(uint8_t *)gpa(f, STATUS_GPA) = 0xff;
	add_chain(f, out, 6);
	kick(f);
	assert_int_equal(status_at(f, STATUS_GPA), VIRTIO_BLK_S_OK);
	read_image(f, on_disk, sizeof(on_disk), 3 * 512);
	assert_memory_equal(on_disk, gpa(f, DATA_GPA), 2048);

	hdr.type = VIRTIO_BLK_T_IN;
	memcpy(gpa(f, HDR_GPA + 32), &hdr, sizeof(hdr));
	memset(gpa(f, DATA2_GPA), 0xee, 4096);
	const struct seg in[] = {
	    {HDR_GPA + 32, 16, false},
	    {DATA2_GPA, 1000, true},
	    {DATA2_GPA + 1000, 1049, true}, /* 1048 data bytes and the status */
	};
	add_chain(f, in, 3);
	kick(f);
	assert_int_equal(*(uint8_t *)gpa(f, DATA2_GPA + 2048), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(f, DATA2_GPA), gpa(f, DATA_GPA), 2048);
	assert_int_equal(used_elem(f, 1).len, 2049);
}

static void test_get_id(void **state)
{
	struct fixture *f = *state;
	char expected[VIRTIO_BLK_ID_BYTES] = "rootfs";
	uint64_t st;

	memset(gpa(f, DATA_GPA), 0xff, 64);
	st = add_request(f, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, VIRTIO_BLK_ID_BYTES);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(f, DATA_GPA), expected, sizeof(expected));
	assert_int_equal(*(uint8_t *)gpa(f, DATA_GPA + VIRTIO_BLK_ID_BYTES), 0xff);
	assert_int_equal(used_elem(f, 0).len, VIRTIO_BLK_ID_BYTES + 1);
}

static void test_flush(void **state)
{
	struct fixture *f = *state;
	uint64_t st = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);

	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(used_elem(f, 0).len, 1);
	assert_int_equal(metric(&blk_metrics(f->blk)->flush_count), 1);
}

/* Writeback: every flush syncs the image on the host, with either engine. Unsafe: a
 * flush (which the guest was not offered) is acknowledged and counted, but the image is
 * never synced. blk_host_syncs() counts the syncs that completed on the host. */
static void test_flush_syncs_the_image_only_with_writeback(void **state)
{
	struct fixture *f = *state;
	uint64_t expected = f->params.cache == CACHE_WRITEBACK;
	uint64_t st;

	assert_int_equal(blk_host_syncs(f->blk), 0);
	fill_pattern(gpa(f, DATA_GPA), 4096, 3, 7);
	st = add_request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 4096);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_host_syncs(f->blk), 0); /* a write alone syncs nothing */
	st = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_host_syncs(f->blk), expected);
	st = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(f), 4);
	assert_int_equal(blk_host_syncs(f->blk), 3 * expected);
	assert_int_equal(metric(&blk_metrics(f->blk)->flush_count), 3);
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_read_only_refuses_write(void **state)
{
	struct fixture *f = *state;
	uint8_t on_disk[1024], zero[1024] = {0};
	uint64_t st;

	fill_pattern(gpa(f, DATA_GPA), 1024, 9, 7);
	st = add_request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 1024);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_idx(f), 1);
	read_image(f, on_disk, sizeof(on_disk), 0);
	assert_memory_equal(on_disk, zero, sizeof(zero));
	assert_int_equal(metric(&blk_metrics(f->blk)->write_count), 0);

	/* Reads and flushes still work. */
	st = add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 1024);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_memory_equal(gpa(f, DATA_GPA), zero, sizeof(zero));
	st = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_out_of_range_is_ioerr(void **state)
{
	struct fixture *f = *state;
	uint64_t st[5];

	st[0] = add_request(f, VIRTIO_BLK_T_IN, SECTORS, DATA_GPA, 512);
	st[1] = add_request(f, VIRTIO_BLK_T_IN, SECTORS - 1, DATA_GPA, 1024);
	st[2] = add_request(f, VIRTIO_BLK_T_OUT, UINT64_MAX, DATA_GPA, 512);
	st[3] = add_request(f, VIRTIO_BLK_T_IN, UINT64_MAX / 512 + 1, DATA_GPA, 512);
	st[4] = add_request(f, VIRTIO_BLK_T_IN, SECTORS - 1, DATA_GPA, 512);
	kick(f);
	for (int i = 0; i < 4; i++)
		assert_int_equal(status_at(f, st[i]), VIRTIO_BLK_S_IOERR);
	assert_int_equal(status_at(f, st[4]), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(f), 5);
	assert_int_equal(used_elem(f, 0).len, 1);
	assert_int_equal(metric(&blk_metrics(f->blk)->invalid_requests), 4);
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_length_not_sector_multiple_is_ioerr(void **state)
{
	struct fixture *f = *state;
	uint64_t a = add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 100);
	uint64_t b = add_request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 513);

	kick(f);
	assert_int_equal(status_at(f, a), VIRTIO_BLK_S_IOERR);
	assert_int_equal(status_at(f, b), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_idx(f), 2);
}

static void test_unknown_type_is_unsupp(void **state)
{
	struct fixture *f = *state;
	uint64_t a = add_request(f, 11 /* DISCARD, not offered */, 0, DATA_GPA, 512);
	uint64_t b = add_request(f, 0xdeadbeef, 0, DATA_GPA, 512);

	kick(f);
	assert_int_equal(status_at(f, a), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(status_at(f, b), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(used_idx(f), 2);
}

static void test_missing_status_byte_needs_reset(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_outhdr hdr = {.type = VIRTIO_BLK_T_OUT, .sector = 0};
	const struct seg segs[] = {{HDR_GPA, 16, false}, {DATA_GPA, 512, false}};
	uint64_t before = atomic_load(&f->dev->needs_reset_events);

	memcpy(gpa(f, HDR_GPA), &hdr, sizeof(hdr));
	add_chain(f, segs, 2);
	kick(f);
	assert_true(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(atomic_load(&f->dev->needs_reset_events), before + 1);
	assert_int_equal(used_idx(f), 0);
	assert_true(atomic_load(&f->dev->interrupt_status) & VIRTIO_INT_CONFIG);
	/* Nothing more is processed until a reset. */
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(used_idx(f), 0);
}

static void test_short_header_is_ioerr(void **state)
{
	struct fixture *f = *state;
	const struct seg segs[] = {{HDR_GPA, 8, false}, {STATUS_GPA, 1, true}};

	memset(gpa(f, HDR_GPA), 0, 16);
	*(uint8_t *)gpa(f, STATUS_GPA) = 0xff;
	add_chain(f, segs, 2);
	kick(f);
	assert_int_equal(status_at(f, STATUS_GPA), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_idx(f), 1);
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_broken_ring_needs_reset(void **state)
{
	struct fixture *f = *state;
	uint16_t *avail = gpa(f, AVAIL_GPA);

	avail[1] = QSIZE + 1; /* more buffers than the queue holds */
	kick(f);
	assert_true(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f), 0);
}

/* The image shrinks under the device: reads past its new end come back short. */
static void test_host_io_error_is_ioerr(void **state)
{
	struct fixture *f = *state;
	uint64_t st;

	assert_int_equal(truncate(f->path, 4096), 0);
	st = add_request(f, VIRTIO_BLK_T_IN, 16, DATA_GPA, 4096);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_IOERR);
	assert_int_equal(used_elem(f, 0).len, 1);
	assert_int_equal(metric(&blk_metrics(f->blk)->io_errors), 1);
	/* A read that straddles the new end is short too. */
	st = add_request(f, VIRTIO_BLK_T_IN, 6, DATA_GPA, 4096);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_IOERR);
	assert_int_equal(metric(&blk_metrics(f->blk)->io_errors), 2);
	/* The device carries on. */
	st = add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 4096);
	kick(f);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_batch_interrupts_once(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 4; i++)
		add_request(f, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512 * i, 512);
	kick(f);
	assert_int_equal(used_idx(f), 4);
	assert_int_equal(signals, 1);
}

static void test_event_idx(void **state)
{
	struct fixture *f = *state;
	uint16_t *used_event = gpa(f, AVAIL_GPA + 4 + 2 * QSIZE);
	uint16_t *avail_event = gpa(f, USED_GPA + 4 + 8 * QSIZE);

	*used_event = 0;
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(signals, 1);
	/* The device asks to hear about the next buffer. */
	assert_int_equal(*avail_event, 1);
	/* The driver wants no interrupt before the 5th used buffer. */
	*used_event = 4;
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(signals, 1);
	assert_int_equal(*avail_event, 2);
}

static void test_reset_drops_requests_in_flight(void **state)
{
	struct fixture *f = *state;
	uint64_t a = add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 65536);
	uint64_t b = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);

	virtio_queue_notified(f->dev, 0); /* no completion path */
	virtio_mmio_ops.reset(f->dev);
	assert_int_equal(blk_inflight(f->blk), 0);
	assert_int_equal(used_idx(f), 0);
	assert_int_equal(status_at(f, a), 0xff);
	assert_int_equal(status_at(f, b), 0xff);
	assert_int_equal(f->dev->status, 0);
	/* A late eventfd wakeup finds nothing to do. */
	blk_complete_async(f->blk);
	assert_int_equal(used_idx(f), 0);

	/* The driver sets the device up again and it works. */
	memset(gpa(f, USED_GPA), 0, 8 + 8 * QSIZE);
	f->q.next_desc = f->q.avail_idx = 0;
	memset(gpa(f, AVAIL_GPA), 0, 6 + 2 * QSIZE);
	start_device(f);
	a = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(status_at(f, a), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(f), 1);
}

/* The way the VMM runs it: attach registers the eventfd, the loop runs completions. */
static void test_async_completes_through_event_loop(void **state)
{
	struct fixture *f = *state;
	struct event_loop loop;
	uint64_t st;

	assert_int_equal(event_loop_init(&loop), 0);
	assert_int_equal(f->dev->ops->attach(f->dev, &loop), 0);
	fill_pattern(gpa(f, DATA_GPA), 8192, 3, 7);
	st = add_request(f, VIRTIO_BLK_T_OUT, 100, DATA_GPA, 8192);
	virtio_queue_notified(f->dev, 0);
	for (int i = 0; i < 100 && used_idx(f) < 1; i++)
		assert_int_equal(event_loop_run_once(&loop, 100), 0);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
	assert_int_equal(blk_inflight(f->blk), 0);
	assert_true(signals >= 1);
	/* Destroyed here, while the loop still exists. */
	blk_destroy(f->blk);
	f->blk = NULL;
	event_loop_close(&loop);
}

static void test_save_restore(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[64], bad[64];
	int size;

	if (f->params.engine == IO_ENGINE_ASYNC) {
		uint64_t st = add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 65536);
		virtio_queue_notified(f->dev, 0);
		if (blk_inflight(f->blk))
			assert_int_equal(f->dev->ops->save(f->dev, buf, sizeof(buf)), -EBUSY);
		assert_int_equal(blk_drain(f->blk), 0);
		assert_int_equal(blk_inflight(f->blk), 0);
		assert_int_equal(status_at(f, st), VIRTIO_BLK_S_OK);
		assert_int_equal(used_idx(f), 1);
	}
	size = f->dev->ops->save(f->dev, buf, sizeof(buf));
	assert_true(size > 0 && size <= (int)sizeof(buf));
	assert_int_equal(f->dev->ops->save(f->dev, buf, 4), -ENOSPC);
	assert_int_equal(f->dev->ops->restore(f->dev, buf, (size_t)size), 0);
	assert_int_equal(f->dev->ops->restore(f->dev, buf, (size_t)size - 1), -EINVAL);

	/* Another image size: the snapshot does not fit this drive. */
	memcpy(bad, buf, (size_t)size);
	bad[8] ^= 1;
	assert_int_equal(f->dev->ops->restore(f->dev, bad, (size_t)size), -EINVAL);

	/* Through the transport, as the snapshot code will do it. */
	uint8_t whole[256];
	int total = virtio_mmio_ops.save(f->dev, whole, sizeof(whole));
	assert_true(total > 0);
	assert_int_equal(virtio_mmio_ops.restore(f->dev, whole, (size_t)total), 0);
	assert_int_equal(truncate(f->path, IMAGE_SIZE / 2), 0);
	struct drive_config config = drive(f);
	struct blk_device *other;
	assert_int_equal(blk_create(&other, &config, &f->mem, NULL), 0);
	assert_int_equal(virtio_mmio_ops.restore(blk_virtio(other), whole, (size_t)total), -EINVAL);
	blk_destroy(other);
}

static void test_create_errors(void **state)
{
	struct fixture *f = *state;
	struct drive_config config = drive(f);
	struct blk_device *blk = NULL;
	uint64_t capacity;
	enum failure_origin origin;
	char odd[64];
	int fd;

	/* Each is the user's image: exit status 2 at boot, whatever the errno. */
#define ASSERT_BAD_IMAGE(expected)                                                                 \
	do {                                                                                       \
		origin = FAILURE_VMM;                                                              \
		assert_int_equal(blk_create(&blk, &config, &f->mem, &origin), expected);           \
		assert_int_equal(origin, FAILURE_BAD_INPUT);                                       \
	} while (0)
	strcpy(config.path, "/nonexistent/wisp.img");
	ASSERT_BAD_IMAGE(-ENOENT);
	strcpy(config.path, "/tmp");
	ASSERT_BAD_IMAGE(-EISDIR);
	config.read_only = true; /* opens, but is no disk */
	ASSERT_BAD_IMAGE(-EINVAL);
	config.read_only = false;
	strcpy(config.path, "/dev/null");
	ASSERT_BAD_IMAGE(-EINVAL);
	assert_null(blk);
#undef ASSERT_BAD_IMAGE

	/* A size that is not a multiple of 512: the tail is not exposed. A success blames
	 * nobody. */
	fd = make_image(odd, sizeof(odd), 1000);
	assert_true(fd >= 0);
	close(fd);
	strcpy(config.path, odd);
	origin = FAILURE_VMM;
	assert_int_equal(blk_create(&blk, &config, &f->mem, &origin), 0);
	assert_int_equal(origin, FAILURE_VMM);
	blk_virtio(blk)->ops->config_read(blk_virtio(blk), 0, (uint8_t *)&capacity, 8);
	assert_int_equal(capacity, 1);
	blk_destroy(blk);
	unlink(odd);
}

/* A child process where io_uring_setup fails the way a seccomp filter or an old kernel
 * makes it fail: the Async drive falls back to Sync and still serves requests. */
static void test_async_falls_back_to_sync(void **state)
{
	struct fixture *f = *state;
	int status;
	pid_t pid;

	blk_destroy(f->blk); /* the child makes its own */
	f->blk = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sock_filter filter[] = {
		    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = {.len = 4, .filter = filter};
		struct drive_config config = drive(f);
		struct event_loop loop;

		/* Writeback, so that the flush below goes through the Sync engine. */
		config.cache = CACHE_WRITEBACK;
		uint64_t st;

		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
			_exit(10);
		if (blk_create(&f->blk, &config, &f->mem, NULL))
			_exit(11);
		if (blk_engine(f->blk) != IO_ENGINE_SYNC || blk_event_fd(f->blk) != -1)
			_exit(12);
		f->dev = blk_virtio(f->blk);
		if (event_loop_init(&loop) || f->dev->ops->attach(f->dev, &loop))
			_exit(13);
		start_device(f);
		st = add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
		virtio_queue_notified(f->dev, 0);
		_exit(status_at(f, st) == VIRTIO_BLK_S_OK && blk_host_syncs(f->blk) == 1 ? 0 : 14);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The Async engine's ring runs readv, writev and fsync only, and takes no io_uring_register
 * call once enabled: seccomp cannot see its operations (README "Seccomp"). */
static void test_async_ring_is_restricted(void **state)
{
	struct fixture *f = *state;
	struct blk_device *blk = calloc(1, sizeof(*blk));
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	char buf[512];
	struct iovec iov = {buf, sizeof(buf)};
	int fd = open(f->path, O_RDONLY | O_CLOEXEC), extra_fd;

	assert_non_null(blk);
	assert_true(fd >= 0);
	blk->event_fd = -1;
	assert_int_equal(blk_setup_async(blk), 0);

	sqe = io_uring_get_sqe(&blk->ring);
	io_uring_prep_readv(sqe, fd, &iov, 1, 0);
	assert_int_equal(io_uring_submit_and_wait(&blk->ring, 1), 1);
	assert_int_equal(io_uring_wait_cqe(&blk->ring, &cqe), 0);
	assert_int_equal(cqe->res, (int)sizeof(buf));
	io_uring_cqe_seen(&blk->ring, cqe);

	/* Not among the three: refused by the ring. */
	sqe = io_uring_get_sqe(&blk->ring);
	io_uring_prep_openat(sqe, AT_FDCWD, f->path, O_RDONLY, 0);
	io_uring_submit_and_wait(&blk->ring, 1);
	assert_int_equal(io_uring_wait_cqe(&blk->ring, &cqe), 0);
	assert_int_equal(cqe->res, -EACCES);
	io_uring_cqe_seen(&blk->ring, cqe);

	/* One of the three, but with an SQE flag: refused too. */
	sqe = io_uring_get_sqe(&blk->ring);
	io_uring_prep_readv(sqe, fd, &iov, 1, 0);
	sqe->flags |= IOSQE_IO_DRAIN;
	io_uring_submit_and_wait(&blk->ring, 1);
	assert_int_equal(io_uring_wait_cqe(&blk->ring, &cqe), 0);
	assert_int_equal(cqe->res, -EACCES);
	io_uring_cqe_seen(&blk->ring, cqe);

	/* No register operation once enabled. */
	extra_fd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(io_uring_register_eventfd(&blk->ring, extra_fd), -EACCES);
	close(extra_fd);

	blk_teardown_async(blk);
	free(blk);
	close(fd);
}

/* ---- rate limiting ---- */

#define MS 1000000ULL

static uint64_t fake_now = 1000 * MS;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static struct rate_limiter_config ops_per_s(uint64_t ops)
{
	return (struct rate_limiter_config){.ops = {.size = ops, .refill_time_ms = 1000}};
}

static struct rate_limiter_config bytes_per_s(uint64_t bytes)
{
	return (struct rate_limiter_config){.bandwidth = {.size = bytes, .refill_time_ms = 1000}};
}

/* The driver's side of the rings as new, for a device that starts over. */
static void clear_rings(struct fixture *f)
{
	memset(gpa(f, USED_GPA), 0, 8 + 8 * QSIZE);
	memset(gpa(f, AVAIL_GPA), 0, 6 + 2 * QSIZE);
	f->q.next_desc = f->q.avail_idx = 0;
}

/* The fixture's drive made again with `limits` (blk_create honours them), on the fake
 * clock, and started over new rings. */
static void limit_drive(struct fixture *f, struct rate_limiter_config limits)
{
	struct drive_config config = drive(f);

	blk_destroy(f->blk);
	clear_rings(f);
	config.rate_limiter = limits;
	assert_int_equal(blk_create(&f->blk, &config, &f->mem, NULL), 0);
	rate_limiter_set_clock(blk_rate_limiter(f->blk), fake_clock);
	f->dev = blk_virtio(f->blk);
	start_device(f);
}

/* The limiter's timer firing, as the event loop would run it, then the completions. */
static void fire_timer(struct fixture *f)
{
	blk_handle_rate_limiter(f->blk);
	complete_all(f);
}

static uint64_t throttled(struct fixture *f)
{
	return metric(&blk_metrics(f->blk)->rate_limiter_throttled_events);
}

static void test_rate_limited_drive_completes_what_the_budget_allows(void **state)
{
	struct fixture *f = *state;
	uint64_t st[5];

	limit_drive(f, ops_per_s(2));
	for (int i = 0; i < 5; i++)
		st[i] = add_request(f, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512 * i, 512);
	kick(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(status_at(f, st[2]), 0xff); /* untouched: back in the ring */
	assert_int_equal(throttled(f), 1);
	assert_int_equal(blk_inflight(f->blk), 0);
	assert_true(rate_limiter_blocked(blk_rate_limiter(f->blk)));

	/* Another kick, or the timer before its time: still held back. */
	kick(f);
	fake_now += 499 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(throttled(f), 3);

	/* One op every 500 ms. */
	fake_now += 1 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 3);
	assert_int_equal(throttled(f), 4);
	fake_now += 1000 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 5);
	assert_int_equal(throttled(f), 4);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(status_at(f, st[i]), VIRTIO_BLK_S_OK);
		assert_int_equal(used_elem(f, (uint16_t)i).id, 3 * i); /* in ring order */
	}
	assert_int_equal(metric(&blk_metrics(f->blk)->read_count), 5);
	assert_false(rate_limiter_blocked(blk_rate_limiter(f->blk)));
	assert_false(f->dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* Reads and writes cost their bytes, flush and GET_ID one op and no bytes, invalid
 * requests nothing. */
static void test_rate_limiter_accounting_by_request_type(void **state)
{
	struct fixture *f = *state;
	uint64_t bad;

	limit_drive(f, bytes_per_s(1024));
	add_request(f, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 1024);
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	add_request(f, VIRTIO_BLK_T_GET_ID, 0, DATA2_GPA, VIRTIO_BLK_ID_BYTES);
	add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512);
	kick(f);
	assert_int_equal(used_idx(f), 3);
	assert_int_equal(throttled(f), 1);
	/* 512 bytes at 1024 per second: exactly 500 ms. */
	fake_now += 499 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 3);
	fake_now += 1 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 4);

	limit_drive(f, ops_per_s(2));
	bad = add_request(f, 11, 0, DATA_GPA, 512);		 /* unsupported */
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);		 /* op 1 */
	add_request(f, VIRTIO_BLK_T_IN, SECTORS, DATA_GPA, 512); /* out of range */
	add_request(f, VIRTIO_BLK_T_GET_ID, 0, DATA2_GPA, 20);	 /* op 2 */
	add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 0);	 /* op 3: held */
	kick(f);
	assert_int_equal(used_idx(f), 4);
	assert_int_equal(status_at(f, bad), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(metric(&blk_metrics(f->blk)->invalid_requests), 2);
	assert_int_equal(throttled(f), 1);
	fake_now += 500 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 5);
}

/* A request larger than the bucket passes a full bucket and leaves it in debt. */
static void test_rate_limiter_oversize_request_passes_then_waits(void **state)
{
	struct fixture *f = *state;

	limit_drive(f, bytes_per_s(1024));
	add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 4096);
	add_request(f, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	/* 3072 bytes of debt and 512 more: 3.5 s. */
	fake_now += 3499 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 1);
	fake_now += 1 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(metric(&blk_metrics(f->blk)->read_bytes), 4608);
}

static void test_update_rate_limiter_takes_effect(void **state)
{
	struct fixture *f = *state;
	struct rate_limiter_config one = ops_per_s(1), none = {0};

	rate_limiter_set_clock(blk_rate_limiter(f->blk), fake_clock);
	assert_int_equal(blk_update_rate_limiter(f->blk, &one), 0);
	assert_int_equal(blk_drive_config(f->blk)->rate_limiter.ops.size, 1);
	for (int i = 0; i < 3; i++)
		add_request(f, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512 * i, 512);
	kick(f);
	assert_int_equal(used_idx(f), 1);

	/* Off: what was held back goes at once, without the timer. */
	assert_int_equal(blk_update_rate_limiter(f->blk, &none), 0);
	complete_all(f);
	assert_int_equal(used_idx(f), 3);
	assert_false(rate_limiter_blocked(blk_rate_limiter(f->blk)));
	assert_int_equal(blk_drive_config(f->blk)->rate_limiter.ops.size, 0);

	/* On again: a new bucket starts full. */
	struct rate_limiter_config two = ops_per_s(2);
	assert_int_equal(blk_update_rate_limiter(f->blk, &two), 0);
	for (int i = 0; i < 3; i++)
		add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(used_idx(f), 5);
	/* A larger bucket takes the held request through, not waiting for the timer. */
	struct rate_limiter_config three = ops_per_s(3);
	assert_int_equal(blk_update_rate_limiter(f->blk, &three), 0);
	complete_all(f);
	assert_int_equal(used_idx(f), 6);
}

static void test_reset_leaves_no_stale_throttling(void **state)
{
	struct fixture *f = *state;
	struct itimerspec timer;

	limit_drive(f, ops_per_s(1));
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(used_idx(f), 1);
	assert_int_equal(timerfd_gettime(rate_limiter_timer_fd(blk_rate_limiter(f->blk)), &timer),
			 0);
	assert_true(timer.it_value.tv_sec || timer.it_value.tv_nsec);

	virtio_mmio_ops.reset(f->dev);
	assert_false(rate_limiter_blocked(blk_rate_limiter(f->blk)));
	assert_int_equal(timerfd_gettime(rate_limiter_timer_fd(blk_rate_limiter(f->blk)), &timer),
			 0);
	assert_false(timer.it_value.tv_sec || timer.it_value.tv_nsec);

	/* Set up again: the bucket is as empty as before the reset. */
	clear_rings(f);
	start_device(f);
	add_request(f, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
	kick(f);
	assert_int_equal(used_idx(f), 0);
	fake_now += 1000 * MS;
	fire_timer(f);
	assert_int_equal(used_idx(f), 1);
}

/* The way the VMM runs it, on the real clock: attach registers the timer, the event loop
 * runs it, destroy unregisters it. */
static void test_rate_limiter_timer_runs_through_event_loop(void **state)
{
	struct fixture *f = *state;
	struct rate_limiter_config fast = {.ops = {.size = 1, .refill_time_ms = 20}};
	struct event_loop loop;
	int timer_fd, watched = 0;

	limit_drive(f, fast);
	rate_limiter_set_clock(blk_rate_limiter(f->blk), rate_limiter_monotonic_ns);
	assert_int_equal(event_loop_init(&loop), 0);
	assert_int_equal(f->dev->ops->attach(f->dev, &loop), 0);
	timer_fd = rate_limiter_timer_fd(blk_rate_limiter(f->blk));
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		watched += loop.sources[i].fd == timer_fd;
	assert_int_equal(watched, 1);

	for (int i = 0; i < 3; i++)
		add_request(f, VIRTIO_BLK_T_IN, (uint64_t)i, DATA_GPA + 512 * i, 512);
	virtio_queue_notified(f->dev, 0);
	for (int i = 0; i < 200 && used_idx(f) < 3; i++)
		assert_int_equal(event_loop_run_once(&loop, 1000), 0);
	assert_int_equal(used_idx(f), 3);
	assert_true(throttled(f) >= 2);

	blk_destroy(f->blk);
	f->blk = NULL;
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		assert_true(loop.sources[i].fd < 0);
	event_loop_close(&loop);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
#define T(name, params) {#name "_" #params, name, setup, teardown, (void *)&params}
	    T(test_config_space, sync_rw),
	    T(test_features, sync_rw),
	    T(test_features, async_ro),
	    T(test_features, sync_writeback),
	    T(test_write_then_read_back, sync_rw),
	    T(test_write_then_read_back, async_rw),
	    T(test_write_then_read_back, sync_direct),
	    T(test_write_then_read_back, async_direct),
	    T(test_split_buffers, sync_rw),
	    T(test_split_buffers, async_rw),
	    T(test_get_id, sync_rw),
	    T(test_get_id, async_rw),
	    T(test_flush, sync_rw),
	    T(test_flush, async_rw),
	    T(test_flush, sync_writeback),
	    T(test_flush, async_writeback),
	    T(test_flush_syncs_the_image_only_with_writeback, sync_rw),
	    T(test_flush_syncs_the_image_only_with_writeback, async_rw),
	    T(test_flush_syncs_the_image_only_with_writeback, sync_writeback),
	    T(test_flush_syncs_the_image_only_with_writeback, async_writeback),
	    T(test_read_only_refuses_write, sync_ro),
	    T(test_read_only_refuses_write, async_ro),
	    T(test_out_of_range_is_ioerr, sync_rw),
	    T(test_out_of_range_is_ioerr, async_rw),
	    T(test_length_not_sector_multiple_is_ioerr, sync_rw),
	    T(test_unknown_type_is_unsupp, sync_rw),
	    T(test_missing_status_byte_needs_reset, sync_rw),
	    T(test_missing_status_byte_needs_reset, async_rw),
	    T(test_short_header_is_ioerr, sync_rw),
	    T(test_broken_ring_needs_reset, async_rw),
	    T(test_host_io_error_is_ioerr, sync_rw),
	    T(test_host_io_error_is_ioerr, async_rw),
	    T(test_batch_interrupts_once, sync_rw),
	    T(test_event_idx, sync_event_idx),
	    T(test_reset_drops_requests_in_flight, async_writeback), /* the flush in flight */
	    T(test_async_completes_through_event_loop, async_rw),
	    T(test_save_restore, sync_rw),
	    T(test_save_restore, async_rw),
	    T(test_create_errors, sync_rw),
	    T(test_async_ring_is_restricted, async_rw),
	    T(test_async_falls_back_to_sync, async_rw),
	    T(test_rate_limited_drive_completes_what_the_budget_allows, sync_rw),
	    T(test_rate_limited_drive_completes_what_the_budget_allows, async_rw),
	    T(test_rate_limiter_accounting_by_request_type, sync_rw),
	    T(test_rate_limiter_accounting_by_request_type, async_rw),
	    T(test_rate_limiter_oversize_request_passes_then_waits, sync_rw),
	    T(test_rate_limiter_oversize_request_passes_then_waits, async_rw),
	    T(test_update_rate_limiter_takes_effect, sync_rw),
	    T(test_update_rate_limiter_takes_effect, async_rw),
	    T(test_reset_leaves_no_stale_throttling, sync_rw),
	    T(test_reset_leaves_no_stale_throttling, async_rw),
	    T(test_rate_limiter_timer_runs_through_event_loop, sync_rw),
	    T(test_rate_limiter_timer_runs_through_event_loop, async_rw),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
