#include "blk_internal.h"

#include "../../log.h"
#include "../../rate_limiter.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define BLK_STATE_VERSION 1
#define BLK_PENDING	  (-1) /* a valid request, for the rate limiter and the disk */

struct blk_state {
	uint32_t version;
	uint32_t reserved;
	uint64_t capacity;
} __attribute__((packed));

static struct blk_device *to_blk(struct virtio_device *dev)
{
	return (struct blk_device *)dev;
}

static uint64_t blk_features(struct virtio_device *dev)
{
	uint64_t features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
			    (1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << VIRTIO_F_EVENT_IDX);

	if (to_blk(dev)->config.read_only)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	/* As in Firecracker: only a Writeback drive offers flush. */
	if (to_blk(dev)->config.cache == CACHE_WRITEBACK)
		features |= 1ULL << VIRTIO_BLK_F_FLUSH;
	return features;
}

static void blk_config_read(struct virtio_device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_blk_config config = {
	    .capacity = htole64(to_blk(dev)->capacity),
	    .seg_max = htole32(VIRTIO_BLK_SEG_MAX),
	    .blk_size = htole32(VIRTIO_BLK_SECTOR_SIZE),
	};

	virtio_config_copy(&config, sizeof(config), offset, data, len);
}

static struct blk_request *take_request(struct blk_device *blk)
{
	return blk->nr_free ? &blk->pool[blk->free_list[--blk->nr_free]] : NULL;
}

static void release_request(struct blk_device *blk, struct blk_request *req)
{
	blk->free_list[blk->nr_free++] = (uint16_t)(req - blk->pool);
}

unsigned int blk_inflight(struct blk_device *blk)
{
	return blk->pool_size - blk->nr_free;
}

/* Hands the request back to the driver, or with push false (reset, teardown) only
 * frees its record: the rings then belong to nobody. */
void blk_complete_request(struct blk_device *blk, struct blk_request *req, uint8_t status,
			  bool push)
{
	uint32_t written = 1;

	if (status == VIRTIO_BLK_S_OK) {
		switch (req->type) {
		case VIRTIO_BLK_T_IN:
			atomic_fetch_add(&blk->metrics.read_bytes, req->len);
			atomic_fetch_add(&blk->metrics.read_count, 1);
			written += req->len;
			break;
		case VIRTIO_BLK_T_OUT:
			atomic_fetch_add(&blk->metrics.write_bytes, req->len);
			atomic_fetch_add(&blk->metrics.write_count, 1);
			break;
		case VIRTIO_BLK_T_FLUSH:
			atomic_fetch_add(&blk->metrics.flush_count, 1);
			break;
		case VIRTIO_BLK_T_GET_ID:
			written += req->len;
			break;
		}
	}
	if (push) {
		*req->status = status;
		vq_push(&blk->vdev.queues[0], req->chain.head, written);
	}
	release_request(blk, req);
}

static uint8_t invalid(struct blk_device *blk, uint8_t status)
{
	atomic_fetch_add(&blk->metrics.invalid_requests, 1);
	return status;
}

/* Skips `bytes` of an iovec array in place; returns the first iovec left. */
struct iovec *blk_iov_skip(struct iovec *iov, unsigned int *nr, size_t bytes)
{
	while (*nr && bytes >= iov->iov_len) {
		bytes -= iov->iov_len;
		iov++;
		(*nr)--;
	}
	if (*nr) {
		iov->iov_base = (uint8_t *)iov->iov_base + bytes;
		iov->iov_len -= bytes;
	}
	return iov;
}

static void get_id(struct blk_device *blk, struct blk_request *req)
{
	char serial[VIRTIO_BLK_ID_BYTES] = {0};

	/* Zero padded, and not NUL terminated when the id takes all 20 bytes. */
	memcpy(serial, blk->config.id, strnlen(blk->config.id, sizeof(serial)));
	if (req->len > sizeof(serial))
		req->len = sizeof(serial);
	vq_chain_write(&req->chain, 0, serial, req->len);
}

/*
 * Checks a popped chain against the drive. Returns the status to complete an invalid
 * request with at once, BLK_PENDING for a valid one, or -EIO if it has no status byte:
 * that is a driver bug the device cannot even report, so the device needs a reset.
 */
static int prepare(struct blk_device *blk, struct blk_request *req)
{
	struct vq_chain *chain = &req->chain;
	struct virtio_blk_outhdr hdr;
	struct iovec *last;
	uint64_t sector, sectors;

	if (chain->writable_len == 0)
		return -EIO;
	/* vq_pop drops empty descriptors, so the last iovec holds the status byte. */
	last = &chain->iov[chain->nr_readable + chain->nr_writable - 1];
	req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	req->type = UINT32_MAX;
	req->len = 0;
	if (vq_chain_read(chain, 0, &hdr, sizeof(hdr)) < sizeof(hdr))
		return invalid(blk, VIRTIO_BLK_S_IOERR);

	req->type = le32toh(hdr.type);
	switch (req->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_GET_ID:
		last->iov_len--;
		req->nr_data = chain->nr_writable - (last->iov_len == 0);
		req->data = chain->iov + chain->nr_readable;
		req->len = chain->writable_len - 1;
		if (req->type == VIRTIO_BLK_T_GET_ID)
			return req->len ? BLK_PENDING : invalid(blk, VIRTIO_BLK_S_IOERR);
		break;
	case VIRTIO_BLK_T_OUT:
		if (blk->config.read_only)
			return invalid(blk, VIRTIO_BLK_S_IOERR);
		req->nr_data = chain->nr_readable;
		req->data = blk_iov_skip(chain->iov, &req->nr_data, sizeof(hdr));
		req->len = chain->readable_len - (uint32_t)sizeof(hdr);
		break;
	case VIRTIO_BLK_T_FLUSH:
		return BLK_PENDING;
	default:
		return invalid(blk, VIRTIO_BLK_S_UNSUPP);
	}

	sector = le64toh(hdr.sector);
	sectors = req->len / VIRTIO_BLK_SECTOR_SIZE;
	if (req->len % VIRTIO_BLK_SECTOR_SIZE || sector > blk->capacity ||
	    sectors > blk->capacity - sector)
		return invalid(blk, VIRTIO_BLK_S_IOERR);
	req->offset = sector * VIRTIO_BLK_SECTOR_SIZE; /* <= the image size: no overflow */
	return BLK_PENDING;
}

/* Firecracker's accounting: a valid request is one op, and a read or write also costs its
 * data bytes (a flush or GET_ID none). Invalid requests cost nothing: they never reach
 * the disk, as in Firecracker, where they fail parsing before the limiter. */
static bool admit(struct blk_device *blk, const struct blk_request *req)
{
	struct rate_limiter *limiter = &blk->limiter;
	bool data = req->type == VIRTIO_BLK_T_IN || req->type == VIRTIO_BLK_T_OUT;

	if (!rate_limiter_enabled(limiter) ||
	    rate_limiter_consume(limiter, data ? req->len : 0, 1, rate_limiter_now(limiter)))
		return true;
	atomic_fetch_add(&blk->metrics.rate_limiter_throttled_events, 1);
	return false;
}

/* 1: completed (pushed), 0: submitted to io_uring, -EAGAIN: throttled, nothing done (the
 * chain goes back to the ring), -EIO: the device needs a reset. */
static int handle_request(struct blk_device *blk, struct blk_request *req)
{
	int status = prepare(blk, req);

	if (status == -EIO)
		return -EIO;
	if (status != BLK_PENDING) {
		blk_complete_request(blk, req, (uint8_t)status, true);
		return 1;
	}
	if (!admit(blk, req))
		return -EAGAIN;
	if (req->type == VIRTIO_BLK_T_GET_ID) {
		get_id(blk, req);
		blk_complete_request(blk, req, VIRTIO_BLK_S_OK, true);
		return 1;
	}
	if (req->type != VIRTIO_BLK_T_FLUSH && req->len == 0) {
		blk_complete_request(blk, req, VIRTIO_BLK_S_OK, true); /* no data to move */
		return 1;
	}
	/* Unsafe: a flush the guest sends without having been offered one is acknowledged
	 * (and counted) but never reaches the host's disk. */
	if (req->type == VIRTIO_BLK_T_FLUSH && blk->config.cache != CACHE_WRITEBACK) {
		blk_complete_request(blk, req, VIRTIO_BLK_S_OK, true);
		return 1;
	}
	return blk_start_io(blk, req);
}

static void fail_queue(struct blk_device *blk, const char *reason)
{
	struct virtqueue *vq = &blk->vdev.queues[0];

	/* Broken, so that nothing is popped or pushed until the driver resets the device. */
	vq->state.broken = 1;
	vq->broken_reason = reason;
	virtio_queue_failed(&blk->vdev, 0);
}

/* The usual loop for VIRTIO_F_EVENT_IDX: notifications off while the ring is drained,
 * back on, then a last look for buffers the driver added without notifying. */
static void process_queue(struct blk_device *blk)
{
	struct virtqueue *vq = &blk->vdev.queues[0];
	bool pushed = false;

	blk->stalled = false;
	for (;;) {
		vq_set_notification(vq, false);
		for (;;) {
			struct blk_request *req = take_request(blk);
			int ret;

			if (!req) {
				/* A completion frees a record and resumes. */
				blk->stalled = true;
				goto out;
			}
			ret = vq_pop(vq, &req->chain);
			if (ret <= 0) {
				release_request(blk, req);
				if (ret < 0) {
					virtio_queue_failed(&blk->vdev, 0);
					goto out;
				}
				break;
			}
			ret = handle_request(blk, req);
			if (ret == -EAGAIN) {
				/* Kicks stay off: the rate limiter's timer resumes. */
				release_request(blk, req);
				vq_unpop(vq, 1);
				goto out;
			}
			if (ret < 0) {
				release_request(blk, req);
				fail_queue(blk, "block request without a status byte");
				goto out;
			}
			pushed |= ret > 0;
		}
		vq_set_notification(vq, true);
		if (!vq_has_available(vq))
			break;
	}
out:
	if (blk->engine == IO_ENGINE_ASYNC)
		blk_flush_submissions(blk);
	if (pushed)
		virtio_notify_used(&blk->vdev, 0);
}

static void blk_queue_notify(struct virtio_device *dev, unsigned int index)
{
	(void)index; /* one queue: the transport checked the index */
	process_queue(to_blk(dev));
}

static bool queue_live(const struct blk_device *blk)
{
	const struct virtio_device *dev = &blk->vdev;

	return virtio_device_live(dev) && dev->queues[0].state.ready;
}

void blk_complete_async(struct blk_device *blk)
{
	uint64_t count;

	if (blk->engine != IO_ENGINE_ASYNC)
		return;
	/* Cleared before reaping: a completion after the reap signals again. */
	if (read(blk->event_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_debug("drive '%s': reading the io_uring eventfd failed: %s", blk->config.id,
			  strerror(errno));
	pthread_mutex_lock(&blk->vdev.lock);
	blk_flush_submissions(blk);
	if (blk_reap(blk, true))
		virtio_notify_used(&blk->vdev, 0);
	if (blk->stalled && queue_live(blk))
		process_queue(blk);
	pthread_mutex_unlock(&blk->vdev.lock);
}

static void blk_event(void *opaque, uint32_t events)
{
	(void)events;
	blk_complete_async(opaque);
}

void blk_handle_rate_limiter(struct blk_device *blk)
{
	rate_limiter_timer_expired(&blk->limiter);
	pthread_mutex_lock(&blk->vdev.lock);
	if (queue_live(blk))
		process_queue(blk);
	pthread_mutex_unlock(&blk->vdev.lock);
}

static void limiter_timer_event(void *opaque, uint32_t events)
{
	(void)events;
	blk_handle_rate_limiter(opaque);
}

int blk_update_rate_limiter(struct blk_device *blk, const struct rate_limiter_config *config)
{
	bool throttled;

	pthread_mutex_lock(&blk->vdev.lock);
	throttled = rate_limiter_blocked(&blk->limiter);
	rate_limiter_update(&blk->limiter, config);
	blk->config.rate_limiter = *config;
	/* The update disarmed the timer: the request held back is retried here. */
	if (throttled && queue_live(blk))
		process_queue(blk);
	pthread_mutex_unlock(&blk->vdev.lock);
	return 0;
}

static int blk_attach(struct virtio_device *dev, struct event_loop *loop)
{
	struct blk_device *blk = to_blk(dev);
	int err;

	err = event_loop_add(loop, rate_limiter_timer_fd(&blk->limiter), EPOLLIN,
			     limiter_timer_event, blk);
	if (err) {
		log_error("drive '%s': cannot watch its rate limiter's timer: %s", blk->config.id,
			  strerror(-err));
		return err;
	}
	blk->loop = loop;
	if (blk->engine != IO_ENGINE_ASYNC)
		return 0;
	err = event_loop_add(loop, blk->event_fd, EPOLLIN, blk_event, blk);
	if (err) {
		log_error("drive '%s': cannot watch its io_uring eventfd: %s", blk->config.id,
			  strerror(-err));
		return err;
	}
	return 0;
}

static void blk_reset(struct virtio_device *dev)
{
	struct blk_device *blk = to_blk(dev);

	blk_drain_locked(blk, false);
	blk->stalled = false;
	rate_limiter_unblock(&blk->limiter); /* the request it held back went with the rings */
}

static int blk_save(struct virtio_device *dev, void *buf, size_t size)
{
	struct blk_device *blk = to_blk(dev);
	struct blk_state state = {.version = BLK_STATE_VERSION, .capacity = blk->capacity};

	if (blk_inflight(blk))
		return -EBUSY; /* blk_drain() first: in-flight requests are not saved */
	if (size < sizeof(state))
		return -ENOSPC;
	memcpy(buf, &state, sizeof(state));
	return (int)sizeof(state);
}

static int blk_restore_check(struct virtio_device *dev, const void *buf, size_t size)
{
	struct blk_device *blk = to_blk(dev);
	struct blk_state state;

	if (size < sizeof(state))
		return -EINVAL;
	memcpy(&state, buf, sizeof(state));
	if (state.version != BLK_STATE_VERSION || state.capacity != blk->capacity) {
		log_error("drive '%s': snapshot state version %u for %llu sectors, but %s has "
			  "%llu sectors",
			  blk->config.id, state.version, (unsigned long long)state.capacity,
			  blk->config.path, (unsigned long long)blk->capacity);
		return -EINVAL;
	}
	return 0;
}

static int blk_restore(struct virtio_device *dev, const void *buf, size_t size)
{
	struct blk_device *blk = to_blk(dev);
	int err = blk_restore_check(dev, buf, size);

	if (err)
		return err;
	blk->stalled = false;
	rate_limiter_unblock(&blk->limiter);
	return 0;
}

static const struct virtio_device_ops blk_ops = {
    .name = "virtio-blk",
    .device_id = VIRTIO_ID_BLOCK,
    .queue_max_size = VIRTIO_BLK_QUEUE_SIZE,
    .features = blk_features,
    .config_read = blk_config_read,
    /* no config_write: nothing is writable (WCE, the cache mode, is not offered) */
    .queue_notify = blk_queue_notify,
    .reset = blk_reset,
    .attach = blk_attach,
    .save = blk_save,
    .restore_check = blk_restore_check,
    .restore = blk_restore,
};

int blk_create(struct blk_device **out, const struct drive_config *config, const struct gmem *mem,
	       enum failure_origin *origin)
{
	struct blk_device *blk = calloc(1, sizeof(*blk));
	int err;

	if (!blk) {
		log_error("drive '%s': out of memory for the device", config->id);
		return -ENOMEM;
	}
	blk->fd = blk->event_fd = blk->direct_fd = -1;
	blk->config = *config;
	rate_limiter_init(&blk->limiter, &config->rate_limiter);

	err = blk_open_image(blk, blk->config.path, &blk->fd, &blk->direct_fd, &blk->capacity);
	if (err) {
		failure_blame(origin, FAILURE_BAD_INPUT); /* the user's image */
		goto fail;
	}

	blk->engine = config->engine;
	if (blk->engine == IO_ENGINE_ASYNC) {
		err = blk_setup_async(blk);
		if (err) {
			log_warn("drive '%s': io_uring unavailable (%s): using the Sync engine",
				 blk->config.id, strerror(-err));
			blk_teardown_async(blk);
			blk->engine = IO_ENGINE_SYNC;
		}
	}
	blk->pool_size = blk->engine == IO_ENGINE_ASYNC ? VIRTIO_BLK_QUEUE_SIZE : 1;
	blk->pool = calloc(blk->pool_size, sizeof(*blk->pool));
	err = -ENOMEM;
	if (!blk->pool) {
		log_error("drive '%s': out of memory for %u requests", blk->config.id,
			  blk->pool_size);
		goto fail;
	}
	for (unsigned int i = 0; i < blk->pool_size; i++)
		blk->free_list[i] = (uint16_t)(blk->pool_size - 1 - i);
	blk->nr_free = blk->pool_size;
	/* Always: a PATCH may turn limiting on after the timer was registered in attach. */
	err = rate_limiter_open_timer(&blk->limiter);
	if (err) {
		log_error("drive '%s': cannot create its rate limiter's timer: %s", blk->config.id,
			  strerror(-err));
		goto fail;
	}

	virtio_init(&blk->vdev, &blk_ops, 1, mem, blk->config.id);
	*out = blk;
	return 0;

fail:
	blk_destroy(blk);
	return err;
}

/* Also frees what a failed blk_create got as far as making. */
void blk_destroy(struct blk_device *blk)
{
	if (!blk)
		return;
	if (blk->pool)
		blk_drain_locked(blk, false);
	if (blk->loop) {
		event_loop_remove(blk->loop, rate_limiter_timer_fd(&blk->limiter));
		if (blk->event_fd >= 0)
			event_loop_remove(blk->loop, blk->event_fd);
	}
	rate_limiter_close_timer(&blk->limiter);
	blk_teardown_async(blk);
	if (blk->fd >= 0)
		close(blk->fd);
	if (blk->direct_fd >= 0)
		close(blk->direct_fd);
	if (blk->vdev.ops) {
		pthread_mutex_destroy(&blk->vdev.lock);
		pthread_cond_destroy(&blk->vdev.io_done);
	}
	free(blk->pool);
	free(blk);
}

struct virtio_device *blk_virtio(struct blk_device *blk)
{
	return &blk->vdev;
}

const struct drive_config *blk_drive_config(const struct blk_device *blk)
{
	return &blk->config;
}

enum io_engine blk_engine(const struct blk_device *blk)
{
	return blk->engine;
}

struct blk_metrics *blk_metrics(struct blk_device *blk)
{
	return &blk->metrics;
}

int blk_event_fd(const struct blk_device *blk)
{
	return blk->event_fd;
}

struct rate_limiter *blk_rate_limiter(struct blk_device *blk)
{
	return &blk->limiter;
}
