#include "balloon.h"

#include "../../log.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BALLOON_STATE_VERSION 1
/* PFNs handled at once: duplicates are found within one batch (the Linux driver sends
 * at most 256 per request, so a request is one batch). */
#define BALLOON_BATCH_PFNS 1024
/* A longer inflate or deflate request is refused whole: no driver sends one, and a
 * hostile one must not keep the VMM thread busy. */
#define BALLOON_REQUEST_MAX_BYTES (64u << 10)
#define BALLOON_LOG_INTERVAL_NS	  (10ull * 1000000000ull)

enum balloon_queue { BQ_INFLATE, BQ_DEFLATE, BQ_STATS, BQ_REPORTING, BQ_NONE };

/* The configuration space (virtio 1.2, 5.5.4); the fields after `actual` read as zero. */
struct virtio_balloon_config {
	uint32_t num_pages;
	uint32_t actual;
	uint32_t free_page_hint_cmd_id;
	uint32_t poison_val;
} __attribute__((packed));

struct balloon_state {
	uint32_t version;
	uint32_t target_pages;
	uint32_t actual_pages;
	uint32_t inflated_pages;
	uint64_t features; /* what the device offered: the same configuration */
	uint16_t stats_desc_head;
	uint8_t stats_desc_held;
	uint8_t reserved;
	uint32_t stats_interval_s;
} __attribute__((packed));

struct balloon_device {
	struct virtio_device vdev; /* first: the transport's pointer converts back */
	struct balloon_config config;
	const struct gmem *mem;
	uint32_t target_pages;	 /* num_pages: what the host asks for */
	uint32_t actual_pages;	 /* what the driver says it holds */
	uint32_t inflated_pages; /* what the device accepted and released */
	uint32_t stats_interval_s;
	bool stats_desc_held; /* the driver's statistics buffer, kept until the next poll */
	uint16_t stats_desc_head;
	struct balloon_stats stats;
	int stats_timer_fd;
	struct event_loop *loop;
	uint64_t last_log_ns;
	uint64_t unlogged;
	bool madvise_error_logged;
	struct balloon_metrics metrics;
	uint32_t pfns[BALLOON_BATCH_PFNS];
	struct vq_chain chain;
};

_Static_assert(offsetof(struct balloon_device, vdev) == 0, "the transport casts back");
_Static_assert(sizeof(struct virtio_balloon_stat) == 10, "the driver's stat entry");

static struct balloon_device *to_balloon(struct virtio_device *dev)
{
	return (struct balloon_device *)dev;
}

static uint64_t monotonic_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static uint64_t offered_features(const struct balloon_config *config)
{
	uint64_t features = 0;

	if (config->deflate_on_oom)
		features |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (config->stats_polling_interval_s)
		features |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (config->free_page_reporting)
		features |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	return features;
}

static uint64_t balloon_features(struct virtio_device *dev)
{
	return offered_features(&to_balloon(dev)->config);
}

/* virtio-mmio gives queue numbers only to the queues whose feature was negotiated. */
static enum balloon_queue queue_role(const struct virtio_device *dev, unsigned int index)
{
	unsigned int next = 2;

	if (index == 0)
		return BQ_INFLATE;
	if (index == 1)
		return BQ_DEFLATE;
	if (virtio_has_feature(dev, VIRTIO_BALLOON_F_STATS_VQ) && index == next++)
		return BQ_STATS;
	if (virtio_has_feature(dev, VIRTIO_BALLOON_F_REPORTING) && index == next)
		return BQ_REPORTING;
	return BQ_NONE;
}

static void balloon_config_read(struct virtio_device *dev, uint64_t offset, uint8_t *data,
				uint32_t len)
{
	struct balloon_device *b = to_balloon(dev);
	struct virtio_balloon_config config = {
	    .num_pages = htole32(b->target_pages),
	    .actual = htole32(b->actual_pages),
	};

	virtio_config_copy(&config, sizeof(config), offset, data, len);
}

/* Only `actual` is the driver's to write; bytes elsewhere are ignored. */
static void balloon_config_write(struct virtio_device *dev, uint64_t offset, const uint8_t *data,
				 uint32_t len)
{
	struct balloon_device *b = to_balloon(dev);
	const uint64_t start = offsetof(struct virtio_balloon_config, actual);
	uint8_t actual[4];
	uint32_t value = htole32(b->actual_pages);

	memcpy(actual, &value, sizeof(actual));
	for (uint32_t i = 0; i < len; i++)
		if (offset + i >= start && offset + i < start + sizeof(actual))
			actual[offset + i - start] = data[i];
	memcpy(&value, actual, sizeof(value));
	b->actual_pages = le32toh(value);
}

/* The guest's refusals are logged at most once per interval, with the count since. */
static void note_refusal(struct balloon_device *b, const char *what, uint32_t value)
{
	uint64_t now = monotonic_ns();

	if (b->last_log_ns && now - b->last_log_ns < BALLOON_LOG_INTERVAL_NS) {
		b->unlogged++;
		return;
	}
	log_warn("balloon: the guest sent %s (0x%x): ignored (%llu more refusals since the "
		 "last message; see the balloon metrics)",
		 what, value, (unsigned long long)b->unlogged);
	b->last_log_ns = now;
	b->unlogged = 0;
}

/* Gives [host, host + len) back to the host; len is a multiple of the page size. */
static int release(struct balloon_device *b, void *host, size_t len)
{
	if (!len || !madvise(host, len, MADV_DONTNEED))
		return 0;
	atomic_fetch_add(&b->metrics.event_fails, 1);
	if (!b->madvise_error_logged) {
		log_error("balloon: madvise(MADV_DONTNEED) of %zu bytes failed: %s: the host keeps "
			  "that memory",
			  len, strerror(errno));
		b->madvise_error_logged = true;
	}
	return -errno;
}

static int compare_pfns(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Checks a batch of PFNs (little-endian, sorted here) and inflates or deflates the ones
 * that pass; inflated pages are released in runs of contiguous host memory. */
static void process_pfns(struct balloon_device *b, uint32_t *pfns, size_t n, bool inflate)
{
	uint32_t budget =
	    inflate
		? (b->target_pages > b->inflated_pages ? b->target_pages - b->inflated_pages : 0)
		: b->inflated_pages;
	uint8_t *run = NULL;
	size_t run_len = 0;
	uint32_t accepted = 0;

	for (size_t i = 0; i < n; i++)
		pfns[i] = le32toh(pfns[i]);
	qsort(pfns, n, sizeof(*pfns), compare_pfns);
	for (size_t i = 0; i < n; i++) {
		uint64_t gpa = (uint64_t)pfns[i] << VIRTIO_BALLOON_PFN_SHIFT;
		uint8_t *host;

		if (i && pfns[i] == pfns[i - 1]) {
			atomic_fetch_add(&b->metrics.pfn_duplicate, 1);
			note_refusal(b, "a PFN twice in one request", pfns[i]);
			continue;
		}
		if (gpa >= GMEM_GAP_START && gpa < GMEM_GAP_END) {
			atomic_fetch_add(&b->metrics.pfn_in_gap, 1);
			note_refusal(b, "a PFN in the 32-bit gap, where there is no RAM", pfns[i]);
			continue;
		}
		host = gmem_ptr(b->mem, gpa, VIRTIO_BALLOON_PAGE_SIZE);
		if (!host) {
			atomic_fetch_add(&b->metrics.pfn_outside_ram, 1);
			note_refusal(b, "a PFN outside guest RAM", pfns[i]);
			continue;
		}
		if (!budget) {
			if (inflate) {
				atomic_fetch_add(&b->metrics.pfn_over_target, 1);
				note_refusal(b, "more PFNs than the balloon's target asks for",
					     pfns[i]);
			} else {
				atomic_fetch_add(&b->metrics.deflate_not_inflated, 1);
				note_refusal(b, "more PFNs to deflate than were inflated", pfns[i]);
			}
			continue;
		}
		budget--;
		accepted++;
		if (!inflate)
			continue;
		if (run && host == run + run_len) {
			run_len += VIRTIO_BALLOON_PAGE_SIZE;
			continue;
		}
		release(b, run, run_len);
		run = host;
		run_len = VIRTIO_BALLOON_PAGE_SIZE;
	}
	if (inflate) {
		release(b, run, run_len);
		b->inflated_pages += accepted;
		atomic_fetch_add(&b->metrics.inflated_pages_released, accepted);
	} else {
		b->inflated_pages -= accepted;
	}
}

static void handle_pfn_request(struct balloon_device *b, const struct vq_chain *chain, bool inflate)
{
	uint32_t len = chain->readable_len;

	atomic_fetch_add(inflate ? &b->metrics.inflate_count : &b->metrics.deflate_count, 1);
	if (len % sizeof(uint32_t) || len > BALLOON_REQUEST_MAX_BYTES) {
		atomic_fetch_add(&b->metrics.malformed_requests, 1);
		log_warn("balloon: %s request of %u bytes (not a whole number of 4-byte PFNs, or "
			 "more than %u bytes): ignored",
			 inflate ? "inflate" : "deflate", len, BALLOON_REQUEST_MAX_BYTES);
		return;
	}
	for (uint32_t offset = 0; offset < len;) {
		size_t bytes = len - offset < sizeof(b->pfns) ? len - offset : sizeof(b->pfns);

		vq_chain_read(chain, offset, b->pfns, bytes);
		process_pfns(b, b->pfns, bytes / sizeof(uint32_t), inflate);
		offset += (uint32_t)bytes;
	}
}

/* Releases the whole pages inside one reported buffer; returns the bytes released. */
static size_t release_reported(struct balloon_device *b, const struct iovec *iov)
{
	uintptr_t start = (uintptr_t)iov->iov_base, end = start + iov->iov_len;
	uintptr_t mask = VIRTIO_BALLOON_PAGE_SIZE - 1;

	start = (start + mask) & ~mask;
	end &= ~mask;
	if (end <= start)
		return 0;
	if (release(b, (void *)start, end - start)) {
		atomic_fetch_add(&b->metrics.free_page_report_fails, 1);
		return 0;
	}
	return end - start;
}

int balloon_stats_parse(const void *buf, size_t len, struct balloon_stats *stats)
{
	const uint8_t *bytes = buf;
	struct balloon_stats parsed = *stats;

	if (len % sizeof(struct virtio_balloon_stat) ||
	    len / sizeof(struct virtio_balloon_stat) > BALLOON_STATS_MAX_ENTRIES)
		return -EINVAL;
	parsed.present = 0;
	for (size_t off = 0; off < len; off += sizeof(struct virtio_balloon_stat)) {
		struct virtio_balloon_stat stat;
		uint16_t tag;

		memcpy(&stat, bytes + off, sizeof(stat));
		tag = le16toh(stat.tag);
		if (tag >= BALLOON_NR_STATS)
			continue; /* a newer driver's statistic */
		parsed.values[tag] = le64toh(stat.val);
		parsed.present |= 1u << tag;
	}
	*stats = parsed;
	return 0;
}

static void handle_stats_buffer(struct balloon_device *b, unsigned int index, bool *pushed)
{
	uint8_t buf[BALLOON_STATS_MAX_ENTRIES * sizeof(struct virtio_balloon_stat)];
	struct vq_chain *chain = &b->chain;

	if (b->stats_desc_held) {
		/* The driver keeps one buffer out at a time; give the older one back. */
		log_warn("balloon: the driver sent a second statistics buffer before the first "
			 "came back: returning the first");
		atomic_fetch_add(&b->metrics.stats_update_fails, 1);
		vq_push(&b->vdev.queues[index], b->stats_desc_head, 0);
		*pushed = true;
	}
	if (chain->readable_len > sizeof(buf) ||
	    balloon_stats_parse(buf, vq_chain_read(chain, 0, buf, chain->readable_len),
				&b->stats)) {
		atomic_fetch_add(&b->metrics.stats_update_fails, 1);
		note_refusal(b, "a statistics buffer of a bad length", chain->readable_len);
	} else {
		atomic_fetch_add(&b->metrics.stats_updates_count, 1);
	}
	b->stats_desc_head = chain->head;
	b->stats_desc_held = true;
}

static void balloon_queue_notify(struct virtio_device *dev, unsigned int index)
{
	struct balloon_device *b = to_balloon(dev);
	struct virtqueue *vq = &dev->queues[index];
	enum balloon_queue role = queue_role(dev, index);
	bool pushed = false;
	int ret;

	if (role == BQ_NONE)
		return;
	while ((ret = vq_pop(vq, &b->chain)) > 0) {
		switch (role) {
		case BQ_INFLATE:
		case BQ_DEFLATE:
			handle_pfn_request(b, &b->chain, role == BQ_INFLATE);
			break;
		case BQ_STATS:
			handle_stats_buffer(b, index, &pushed);
			continue; /* held until the next poll */
		case BQ_REPORTING: {
			size_t freed = 0;

			for (unsigned int i = 0; i < b->chain.nr_readable + b->chain.nr_writable;
			     i++)
				freed += release_reported(b, &b->chain.iov[i]);
			atomic_fetch_add(&b->metrics.free_page_report_count, 1);
			atomic_fetch_add(&b->metrics.free_page_report_freed, freed);
			break;
		}
		default:
			break;
		}
		vq_push(vq, b->chain.head, 0);
		pushed = true;
	}
	if (ret < 0) {
		if (role == BQ_REPORTING)
			atomic_fetch_add(&b->metrics.free_page_report_fails, 1);
		virtio_queue_failed(dev, index);
	}
	if (pushed)
		virtio_notify_used(dev, index);
}

/* Inflate and deflate must be there; the others only when negotiated. */
static int balloon_activate(struct virtio_device *dev)
{
	struct balloon_device *b = to_balloon(dev);

	if (!dev->queues[0].state.ready || !dev->queues[1].state.ready) {
		atomic_fetch_add(&b->metrics.activate_fails, 1);
		log_warn(
		    "balloon: the driver set DRIVER_OK without its inflate and deflate queues");
		return -EINVAL;
	}
	/* Linux queues its first statistics buffer and kicks before DRIVER_OK, a kick the
	 * transport drops; it then waits for that buffer forever. Take it now. */
	if (virtio_has_feature(dev, VIRTIO_BALLOON_F_STATS_VQ) && dev->nr_queues > 2 &&
	    dev->queues[2].state.ready)
		balloon_queue_notify(dev, 2);
	return 0;
}

static void balloon_reset(struct virtio_device *dev)
{
	struct balloon_device *b = to_balloon(dev);

	/* The driver starts over: it holds no pages and no statistics buffer. */
	b->actual_pages = 0;
	b->inflated_pages = 0;
	b->stats_desc_held = false;
}

void balloon_poll_stats(struct balloon_device *b)
{
	struct virtio_device *dev = &b->vdev;

	pthread_mutex_lock(&dev->lock);
	/* The statistics queue, when negotiated, is always the third. */
	if (b->stats_desc_held && virtio_device_live(dev) &&
	    virtio_has_feature(dev, VIRTIO_BALLOON_F_STATS_VQ) && dev->queues[2].state.ready) {
		b->stats_desc_held = false;
		if (!vq_push(&dev->queues[2], b->stats_desc_head, 0))
			virtio_notify_used(dev, 2);
	}
	pthread_mutex_unlock(&dev->lock);
}

static void stats_timer_event(void *opaque, uint32_t events)
{
	struct balloon_device *b = opaque;
	uint64_t expirations;

	(void)events;
	if (read(b->stats_timer_fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		atomic_fetch_add(&b->metrics.event_fails, 1);
	balloon_poll_stats(b);
}

static int arm_stats_timer(struct balloon_device *b, uint32_t interval_s)
{
	struct itimerspec period = {.it_interval = {interval_s, 0}, .it_value = {interval_s, 0}};

	if (b->stats_timer_fd < 0)
		return 0;
	if (timerfd_settime(b->stats_timer_fd, 0, &period, NULL) < 0) {
		int err = -errno;
		log_error("balloon: cannot set the statistics timer to %u s: %s", interval_s,
			  strerror(-err));
		return err;
	}
	return 0;
}

static int balloon_attach(struct virtio_device *dev, struct event_loop *loop)
{
	struct balloon_device *b = to_balloon(dev);
	int err;

	if (b->stats_timer_fd < 0)
		return 0;
	err = event_loop_add(loop, b->stats_timer_fd, EPOLLIN, stats_timer_event, b);
	if (err) {
		log_error("balloon: cannot watch the statistics timer: %s", strerror(-err));
		return err;
	}
	b->loop = loop;
	return 0;
}

static int balloon_save(struct virtio_device *dev, void *buf, size_t size)
{
	struct balloon_device *b = to_balloon(dev);
	struct balloon_state state = {
	    .version = BALLOON_STATE_VERSION,
	    .target_pages = b->target_pages,
	    .actual_pages = b->actual_pages,
	    .inflated_pages = b->inflated_pages,
	    .features = offered_features(&b->config),
	    .stats_desc_head = b->stats_desc_head,
	    .stats_desc_held = b->stats_desc_held,
	    .stats_interval_s = b->stats_interval_s,
	};

	if (size < sizeof(state))
		return -ENOSPC;
	memcpy(buf, &state, sizeof(state));
	return (int)sizeof(state);
}

static int balloon_restore_check(struct virtio_device *dev, const void *buf, size_t size)
{
	struct balloon_device *b = to_balloon(dev);
	uint64_t ram_pages = b->mem->total_size >> VIRTIO_BALLOON_PFN_SHIFT;
	struct balloon_state state;
	const char *why = NULL;

	if (size != sizeof(state)) {
		log_error("balloon: snapshot state of %zu bytes, expected %zu", size,
			  sizeof(state));
		return -EINVAL;
	}
	memcpy(&state, buf, sizeof(state));
	if (state.version != BALLOON_STATE_VERSION)
		why = "an unknown state version";
	else if (state.features != offered_features(&b->config))
		why = "other features than this configuration offers";
	else if (state.target_pages > ram_pages || state.inflated_pages > ram_pages)
		why = "a target or inflated size beyond guest RAM";
	else if (state.stats_desc_held > 1 ||
		 (state.stats_desc_held && (!b->config.stats_polling_interval_s ||
					    state.stats_desc_head >= VIRTIO_BALLOON_QUEUE_SIZE)))
		why = "a statistics buffer the device cannot hold";
	else if (!state.stats_interval_s != !b->config.stats_polling_interval_s ||
		 state.stats_interval_s > UINT16_MAX)
		why = "a statistics interval that does not match its configuration";
	if (why) {
		log_error("balloon: the snapshot's state has %s (version %u, features 0x%llx, "
			  "target %u pages, inflated %u, guest RAM %llu pages)",
			  why, state.version, (unsigned long long)state.features,
			  state.target_pages, state.inflated_pages, (unsigned long long)ram_pages);
		return -EINVAL;
	}
	return 0;
}

static int balloon_restore(struct virtio_device *dev, const void *buf, size_t size)
{
	struct balloon_device *b = to_balloon(dev);
	struct balloon_state state;
	int err = balloon_restore_check(dev, buf, size);

	if (err)
		return err;
	memcpy(&state, buf, sizeof(state));
	b->target_pages = state.target_pages;
	b->actual_pages = state.actual_pages;
	b->inflated_pages = state.inflated_pages;
	b->stats_desc_head = state.stats_desc_head;
	b->stats_desc_held = state.stats_desc_held;
	if (b->stats_interval_s != state.stats_interval_s && state.stats_interval_s) {
		b->stats_interval_s = state.stats_interval_s;
		arm_stats_timer(b, b->stats_interval_s); /* logged; the old period goes on */
	}
	return 0;
}

static const struct virtio_device_ops balloon_ops = {
    .name = "virtio-balloon",
    .device_id = VIRTIO_ID_BALLOON,
    .queue_max_size = VIRTIO_BALLOON_QUEUE_SIZE,
    .features = balloon_features,
    .config_read = balloon_config_read,
    .config_write = balloon_config_write,
    .activate = balloon_activate,
    .queue_notify = balloon_queue_notify,
    .reset = balloon_reset,
    .attach = balloon_attach,
    .save = balloon_save,
    .restore_check = balloon_restore_check,
    .restore = balloon_restore,
};

int balloon_create(struct balloon_device **out, const struct balloon_config *config,
		   const struct gmem *mem)
{
	struct balloon_device *b = calloc(1, sizeof(*b));
	unsigned int nr_queues = 2;
	int err;

	if (!b) {
		log_error("balloon: out of memory for the device");
		return -ENOMEM;
	}
	b->stats_timer_fd = -1;
	b->config = *config;
	b->mem = mem;
	b->target_pages = config->amount_mib * BALLOON_PAGES_PER_MIB;
	if ((uint64_t)b->target_pages << VIRTIO_BALLOON_PFN_SHIFT > mem->total_size) {
		log_error("balloon: a target of %u MiB is more than the guest's %llu MiB: lower "
			  "amount_mib",
			  config->amount_mib, (unsigned long long)(mem->total_size >> 20));
		err = -EINVAL;
		goto fail;
	}
	b->stats_interval_s = config->stats_polling_interval_s;
	if (b->stats_interval_s) {
		nr_queues++;
		b->stats_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (b->stats_timer_fd < 0) {
			err = -errno;
			log_error("balloon: cannot create the statistics timer: %s",
				  strerror(-err));
			goto fail;
		}
		err = arm_stats_timer(b, b->stats_interval_s);
		if (err)
			goto fail;
	}
	if (config->free_page_reporting)
		nr_queues++;
	virtio_init(&b->vdev, &balloon_ops, nr_queues, mem, "balloon");
	*out = b;
	return 0;
fail:
	balloon_destroy(b);
	return err;
}

void balloon_destroy(struct balloon_device *b)
{
	if (!b)
		return;
	if (b->stats_timer_fd >= 0) {
		if (b->loop)
			event_loop_remove(b->loop, b->stats_timer_fd);
		close(b->stats_timer_fd);
	}
	if (b->vdev.ops) {
		pthread_mutex_destroy(&b->vdev.lock);
		pthread_cond_destroy(&b->vdev.io_done);
	}
	free(b);
}

struct virtio_device *balloon_virtio(struct balloon_device *b)
{
	return &b->vdev;
}

struct balloon_metrics *balloon_metrics(struct balloon_device *b)
{
	return &b->metrics;
}

int balloon_set_target(struct balloon_device *b, uint32_t amount_mib)
{
	struct virtio_device *dev = &b->vdev;
	uint64_t pages = (uint64_t)amount_mib * BALLOON_PAGES_PER_MIB;
	int err = 0;

	if (pages << VIRTIO_BALLOON_PFN_SHIFT > b->mem->total_size)
		return -E2BIG;
	pthread_mutex_lock(&dev->lock);
	if (!(dev->status & VIRTIO_STATUS_DRIVER_OK)) {
		err = -ENODEV;
	} else {
		b->target_pages = (uint32_t)pages;
		b->config.amount_mib = amount_mib;
		virtio_config_changed(dev);
	}
	pthread_mutex_unlock(&dev->lock);
	return err;
}

int balloon_set_stats_interval(struct balloon_device *b, uint16_t interval_s)
{
	int err;

	if (b->stats_interval_s == interval_s)
		return 0;
	if (!interval_s || !b->stats_interval_s)
		return -EINVAL; /* statistics on or off: the queue exists or not since boot */
	/* As Firecracker: a fresh update now, then the new period. */
	balloon_poll_stats(b);
	pthread_mutex_lock(&b->vdev.lock);
	err = arm_stats_timer(b, interval_s);
	if (!err) {
		b->stats_interval_s = interval_s;
		b->config.stats_polling_interval_s = interval_s;
	}
	pthread_mutex_unlock(&b->vdev.lock);
	return err;
}

void balloon_get_stats(struct balloon_device *b, struct balloon_stats *stats)
{
	pthread_mutex_lock(&b->vdev.lock);
	*stats = b->stats;
	stats->target_pages = b->target_pages;
	stats->actual_pages = b->actual_pages;
	pthread_mutex_unlock(&b->vdev.lock);
}

uint32_t balloon_inflated_pages(struct balloon_device *b)
{
	uint32_t pages;

	pthread_mutex_lock(&b->vdev.lock);
	pages = b->inflated_pages;
	pthread_mutex_unlock(&b->vdev.lock);
	return pages;
}
