/*
 * A virtio device on the virtio-mmio transport (virtio 1.2, 4.2, version 2 registers).
 * Each device type is a const virtio_device_ops over the shared virtqueue layer; the
 * transport owns feature negotiation, queue setup, status and interrupts.
 *
 * Threads: the guest's register accesses arrive on vCPU threads, queue notifications
 * (ioeventfds) and device I/O on the VMM thread; dev->lock serialises them, and is never
 * held across a blocking host call, so that a vCPU never waits on the disk:
 *  - the interrupt path (INTERRUPT_STATUS, INTERRUPT_ACK) and the identification
 *    registers take no lock at all: interrupt_status is an atomic, the rest constants;
 *  - a device that must block (the Sync block engine's preadv/pwritev/fdatasync) drops
 *    the lock around the call with virtio_io_begin()/virtio_io_end(). Meanwhile register
 *    reads and the configuration space are served at once; what would pull the rings
 *    from under the call (STATUS and QUEUE_READY writes, the configuration space's
 *    writes, a reset, save and restore, another queue notification) waits for it to end.
 * What still runs under the lock is memory work and non-blocking syscalls (TAP
 * readv/writev, io_uring submissions). The VMM thread's waits for io_uring requests in
 * flight (PATCH of a drive's path, blk_drain) drop it the same way; only the guest's own
 * reset waits for its requests under the lock, since they write its memory.
 */
#ifndef WISP_VIRTIO_H
#define WISP_VIRTIO_H

#include "../device.h"
#include "../../event_loop.h"
#include "virtqueue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTIO_MAX_QUEUES 4
#define VIRTIO_MMIO_SIZE  0x1000

#define VIRTIO_ID_NET	  1
#define VIRTIO_ID_BLOCK	  2
#define VIRTIO_ID_BALLOON 5

/* Device status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER	  0x02
#define VIRTIO_STATUS_DRIVER_OK	  0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED	  0x80

/* Interrupt status bits */
#define VIRTIO_INT_USED_BUFFER 0x1
#define VIRTIO_INT_CONFIG      0x2

/* virtio-mmio register offsets */
#define VIRTIO_MMIO_MAGIC		0x000
#define VIRTIO_MMIO_VERSION		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_VENDOR_ID		0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS	0x060
#define VIRTIO_MMIO_INTERRUPT_ACK	0x064
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW	0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH	0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION	0x0fc
#define VIRTIO_MMIO_CONFIG		0x100

#define VIRTIO_MMIO_MAGIC_VALUE 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR	0x70736977 /* "wisp" */

struct virtio_device;

struct virtio_device_ops {
	const char *name;
	uint32_t device_id;
	uint16_t queue_max_size;
	/* Features the device offers (VIRTIO_F_VERSION_1 is added by the transport). */
	uint64_t (*features)(struct virtio_device *dev);
	/* Device configuration space, at offset 0x100 of the window. */
	void (*config_read)(struct virtio_device *dev, uint64_t offset, uint8_t *data,
			    uint32_t len);
	void (*config_write)(struct virtio_device *dev, uint64_t offset, const uint8_t *data,
			     uint32_t len);
	/* The driver set DRIVER_OK: dev->driver_features holds what it accepted. */
	int (*activate)(struct virtio_device *dev);
	/* The driver notified queue `index`; runs on the VMM thread with dev->lock held (a
	 * blocking host call inside goes between virtio_io_begin and virtio_io_end). */
	void (*queue_notify)(struct virtio_device *dev, unsigned int index);
	/* Device-specific part of a reset (the transport resets queues and status). */
	void (*reset)(struct virtio_device *dev);
	/* Once, when the VMM attaches the device: register the device's own file
	 * descriptors (io_uring eventfd, TAP) with the VMM thread's event loop. */
	int (*attach)(struct virtio_device *dev, struct event_loop *loop);
	/* Device-specific state for snapshots; the transport saves its own and the queues'. */
	int (*save)(struct virtio_device *dev, void *buf, size_t size);
	/* Checks a saved state without changing anything (0 or -EINVAL); restore runs only
	 * once the transport, every queue and this have passed, so that a bad snapshot
	 * leaves no side effect (a TAP's offloads, a MAC) behind. */
	int (*restore_check)(struct virtio_device *dev, const void *buf, size_t size);
	int (*restore)(struct virtio_device *dev, const void *buf, size_t size);
};

/* Transport state a snapshot keeps (the queues' states follow it). */
struct virtio_transport_state {
	uint64_t driver_features;
	uint32_t status;
	uint32_t interrupt_status;
	uint32_t config_generation;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
} __attribute__((packed));

struct virtio_device {
	const struct virtio_device_ops *ops;
	pthread_mutex_t lock;
	/* Blocking host calls in progress with the lock dropped (virtio_io_begin), and the
	 * condition their end signals; both under the lock. Not snapshot state: save waits
	 * until it is 0. */
	unsigned int io_in_progress;
	pthread_cond_t io_done;
	unsigned int nr_queues;
	struct virtqueue queues[VIRTIO_MAX_QUEUES];
	uint64_t driver_features;
	uint32_t status;
	_Atomic uint32_t interrupt_status;
	uint32_t config_generation;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	/* How the device interrupts the guest (an irqfd in the VMM); tests use a fake. */
	void (*signal)(struct virtio_device *dev);
	/* How a guest write to QueueNotify that reached the VMM (no ioeventfd) is passed
	 * to the VMM thread; NULL handles it at once. */
	void (*kick)(struct virtio_device *dev, unsigned int index);
	void *owner; /* the VMM's attachment (fds, event loop) */
	const char *id;
	_Atomic uint64_t needs_reset_events;
};

extern const struct device_ops virtio_mmio_ops;

void virtio_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
		 unsigned int nr_queues, const struct gmem *mem, const char *id);
/* Called by the VMM thread when queue `index` was notified: runs the device if live. */
void virtio_queue_notified(struct virtio_device *dev, unsigned int index);
/* Device code holding dev->lock, about to make a blocking host call: drops the lock
 * until virtio_io_end() takes it back. The device must keep what the call uses (its
 * request, buffers popped from a queue) to itself until then; the transport holds back
 * everything that could change the queues or the device's activation meanwhile. */
void virtio_io_begin(struct virtio_device *dev);
void virtio_io_end(struct virtio_device *dev);
/* Interrupts the driver if it wants to hear about what was pushed on queue `index`. */
void virtio_notify_used(struct virtio_device *dev, unsigned int index);
/* Hostile or broken input on queue `index`: set DEVICE_NEEDS_RESET, tell the driver
 * (config interrupt), log the reason once, count it. Needs dev->lock held. */
void virtio_queue_failed(struct virtio_device *dev, unsigned int index);
/* Signals a configuration change (e.g. a new balloon target). */
void virtio_config_changed(struct virtio_device *dev);
/* DRIVER_OK and neither NEEDS_RESET nor FAILED: the device may use its queues. */
bool virtio_device_live(const struct virtio_device *dev);
/* A config_read over a device's config struct: copies the part of [offset, offset+len)
 * that lies inside it, zeros for the rest (a guest may read anywhere in the window). */
void virtio_config_copy(const void *config, size_t size, uint64_t offset, uint8_t *data,
			uint32_t len);
bool virtio_has_feature(const struct virtio_device *dev, unsigned int bit);

#endif
