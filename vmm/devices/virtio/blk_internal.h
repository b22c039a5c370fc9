/*
 * What the two halves of virtio-blk share, for them alone (blk.h is the interface): blk.c
 * is the device (requests, the queue, rate limiting, snapshots, lifetime), blk_io.c the
 * image and the two I/O engines that carry its requests out.
 */
#ifndef WISP_VIRTIO_BLK_INTERNAL_H
#define WISP_VIRTIO_BLK_INTERNAL_H

#include "blk.h"

#include "../../rate_limiter.h"

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One request between vq_pop and vq_push. The chain lives here, not on a stack, because
 * io_uring reads its iovecs after queue_notify has returned. */
struct blk_request {
	struct vq_chain chain;
	struct iovec *data; /* the data buffers, inside chain.iov */
	unsigned int nr_data;
	uint32_t type;
	uint32_t len;	 /* data bytes */
	uint64_t offset; /* in the image, bytes */
	uint8_t *status; /* the chain's last writable byte */
};

struct blk_device {
	struct virtio_device vdev; /* first: the transport's pointer converts back */
	struct drive_config config;
	int fd;
	int direct_fd;	   /* O_DIRECT twin of fd (direct=on), or -1 */
	uint64_t capacity; /* sectors */
	enum io_engine engine;
	struct io_uring ring;
	bool ring_ready;
	int event_fd;
	struct event_loop *loop;
	/* Async: one record per queue entry, so a driver that plays by the rules never
	 * waits for one; Sync: a single record, reused. */
	struct blk_request *pool;
	unsigned int pool_size;
	uint16_t free_list[VIRTIO_BLK_QUEUE_SIZE];
	unsigned int nr_free;
	bool stalled; /* buffers left in the ring for want of a record */
	bool io_error_logged;
	bool submit_error_logged;
	struct rate_limiter limiter;
	struct blk_metrics metrics;
	uint64_t host_syncs; /* see blk_host_syncs() */
};

_Static_assert(offsetof(struct blk_device, vdev) == 0, "the transport casts back");

/* blk.c: how the engines hand a request back and step over the bytes they moved. */
void blk_complete_request(struct blk_device *blk, struct blk_request *req, uint8_t status,
			  bool push);
struct iovec *blk_iov_skip(struct iovec *iov, unsigned int *nr, size_t bytes);

/* blk_io.c: the image, and the engines: starting a request; submitting, reaping and
 * draining io_uring's. */
int blk_open_image(struct blk_device *blk, const char *path, int *fd_out, int *direct_fd_out,
		   uint64_t *capacity);
int blk_setup_async(struct blk_device *blk);
void blk_teardown_async(struct blk_device *blk);
int blk_start_io(struct blk_device *blk, struct blk_request *req);
void blk_flush_submissions(struct blk_device *blk);
unsigned int blk_reap(struct blk_device *blk, bool push);
int blk_drain_locked(struct blk_device *blk, bool push);

#endif
