/*
 * virtio-blk (virtio 1.2, 5.2) over a raw image file or block device, with Firecracker's
 * two I/O engines: Sync (preadv/pwritev/fdatasync on the VMM thread, inside the queue
 * notification, with dev->lock dropped around the call: see virtio.h) and Async
 * (io_uring; completions arrive through an eventfd that the device registers with the VMM
 * thread's event loop in `attach`).
 *
 * Rate limiting (Firecracker's): each valid request costs one op, a read or write also its
 * data bytes, before it is executed. A request the limiter refuses goes back to the ring
 * and the queue waits for the limiter's timer, which `attach` registers too.
 *
 * Snapshots: the device keeps no state of its own beyond the image's capacity, which
 * restore checks. A snapshot must be taken with the device quiesced: save fails with
 * -EBUSY while io_uring requests are in flight, so the VMM calls blk_drain() first.
 */
#ifndef WISP_VIRTIO_BLK_H
#define WISP_VIRTIO_BLK_H

#include "../../config.h"
#include "../../failure.h"
#include "../../memory.h"
#include "virtio.h"

#include <stdatomic.h>
#include <stdint.h>

#define VIRTIO_BLK_SECTOR_SIZE 512
#define VIRTIO_BLK_ID_BYTES    20
#define VIRTIO_BLK_QUEUE_SIZE  256
/* A chain holds at most VQ_MAX_CHAIN descriptors, two of which are header and status. */
#define VIRTIO_BLK_SEG_MAX (VQ_MAX_CHAIN - 2)

/* Feature bits */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO	      5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9

/* Request types */
#define VIRTIO_BLK_T_IN	    0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8

/* Request status (the last writable byte of a chain) */
#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

/* The request header, at the start of the chain's readable part (little-endian). */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
} __attribute__((packed));

/* The configuration space up to blk_size; the fields after it read as zero. */
struct virtio_blk_config {
	uint64_t capacity; /* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
} __attribute__((packed));

/* Firecracker's block metrics, as far as wisp has them. io_errors counts host I/O
 * failures, invalid_requests requests the guest got wrong (range, length, type,
 * writes to a read-only drive). rate_limiter_throttled_events: requests held back by the
 * rate limiter (each time one is refused, so a request may count more than once). */
struct blk_metrics {
	_Atomic uint64_t read_bytes;
	_Atomic uint64_t write_bytes;
	_Atomic uint64_t read_count;
	_Atomic uint64_t write_count;
	_Atomic uint64_t flush_count;
	_Atomic uint64_t io_errors;
	_Atomic uint64_t invalid_requests;
	_Atomic uint64_t rate_limiter_throttled_events;
};

struct blk_device;
struct rate_limiter;

/* Opens the drive's image and sets the device up; the config's strings are copied. An
 * Async drive whose io_uring cannot be set up falls back to Sync with a warning.
 * Returns 0 or -errno, having logged which drive and path failed and why; an image that
 * cannot be opened or is no disk blames the input in *origin (may be NULL). */
int blk_create(struct blk_device **out, const struct drive_config *config, const struct gmem *mem,
	       enum failure_origin *origin);
/* Waits for requests in flight (they write guest memory), then frees everything. The
 * event loop the device was attached to must still exist. */
void blk_destroy(struct blk_device *blk);

/* The embedded transport device: its first member, so a cast converts back. */
struct virtio_device *blk_virtio(struct blk_device *blk);
const struct drive_config *blk_drive_config(const struct blk_device *blk);
/* The engine actually in use (Sync after a fallback). */
enum io_engine blk_engine(const struct blk_device *blk);
struct blk_metrics *blk_metrics(struct blk_device *blk);

/* Async engine: the eventfd io_uring signals (-1 for Sync), and the completion path
 * that `attach` hooks to it: takes dev->lock, completes every finished request,
 * interrupts the guest. VMM thread. */
int blk_event_fd(const struct blk_device *blk);
void blk_complete_async(struct blk_device *blk);
/* PATCH /drives path_on_host on a running VM: drains what is in flight, switches to the
 * new image and raises a configuration change so the guest sees its size. On error
 * (logged) the old image stays. VMM thread. */
int blk_update_path(struct blk_device *blk, const char *path);
/* PATCH /drives: replaces the buckets whose configuration changes (they start full) and
 * retries a request held back. 0 (nothing can fail yet). VMM thread; takes dev->lock. */
int blk_update_rate_limiter(struct blk_device *blk, const struct rate_limiter_config *config);
/* What `attach` hooks to the rate limiter's timerfd: takes dev->lock and processes the
 * queue again. VMM thread; tests call it directly. */
void blk_handle_rate_limiter(struct blk_device *blk);
/* The drive's limiter, for tests to set its clock; use it under dev->lock. */
struct rate_limiter *blk_rate_limiter(struct blk_device *blk);

/* Flushes that synced the image on the host (fdatasync, or io_uring's fsync, completed):
 * a Writeback drive's flushes; an Unsafe drive's never get here. Under dev->lock. */
uint64_t blk_host_syncs(struct blk_device *blk);

/* Requests submitted to io_uring and not yet completed. */
unsigned int blk_inflight(struct blk_device *blk);
/* Waits until no request is in flight, completing each to the guest; 0 or -errno.
 * VMM thread, without dev->lock held (it takes it, and drops it while it waits). */
int blk_drain(struct blk_device *blk);

#endif
