/*
 * The split virtqueue (virtio 1.2, 2.7) as the device sees it, shared by every device.
 * It turns descriptor chains into iovecs over guest memory and treats every field the
 * driver wrote as hostile: an index, address or length that does not check out marks
 * the queue broken (the transport then sets DEVICE_NEEDS_RESET) instead of being used.
 */
#ifndef WISP_VIRTQUEUE_H
#define WISP_VIRTQUEUE_H

#include "../../memory.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define VQ_MAX_SIZE  256 /* the largest queue any wisp device offers */
#define VQ_MAX_CHAIN 256 /* descriptors in one chain, indirect ones included */

#define VRING_DESC_F_NEXT	   1
#define VRING_DESC_F_WRITE	   2
#define VRING_DESC_F_INDIRECT	   4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY	   1

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
} __attribute__((packed));

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
} __attribute__((packed));

/* The queue's state: plain data, so a snapshot copies it as it is. */
struct vq_state {
	uint16_t size; /* set by the driver, a power of 2 <= max_size */
	uint16_t max_size;
	uint8_t ready;
	uint8_t event_idx; /* VIRTIO_F_EVENT_IDX negotiated */
	uint8_t broken;	   /* hostile input seen: nothing more until a reset */
	uint8_t signalled_valid;
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;
	uint16_t last_avail_idx; /* next available entry the device will take */
	uint16_t used_idx;	 /* next used entry the device will write */
	uint16_t signalled_used; /* used_idx when the driver was last interrupted */
	uint16_t reserved;
} __attribute__((packed));

struct virtqueue {
	struct vq_state state;
	const struct gmem *mem;
	const char *broken_reason; /* why the queue broke, for the log */
};

/* A popped chain: the device-readable buffers first, then the device-writable ones. */
struct vq_chain {
	uint16_t head;
	unsigned int nr_readable;
	unsigned int nr_writable;
	uint32_t readable_len;
	uint32_t writable_len;
	struct iovec iov[VQ_MAX_CHAIN];
};

void vq_init(struct virtqueue *vq, const struct gmem *mem, uint16_t max_size);
/* Back to the state after a device reset (not ready, no addresses, not broken). */
void vq_reset(struct virtqueue *vq);
/* Checks the driver's configuration when it sets QueueReady; -EIO (queue broken) if the size is
 * not a power of 2 <= max_size or a ring is misaligned or outside guest RAM. */
int vq_check_config(struct virtqueue *vq);

/* 1: a chain was popped into *chain; 0: nothing available; -EIO: the queue is (now)
 * broken, see vq->broken_reason. */
int vq_pop(struct virtqueue *vq, struct vq_chain *chain);
/* Gives back the last `count` chains popped and not pushed: they become available again,
 * so a device that must wait (TAP full, frame held back) keeps nothing popped that a
 * snapshot would lose. */
void vq_unpop(struct virtqueue *vq, uint16_t count);
/* Returns a popped chain to the driver with `written` bytes written into it. */
int vq_push(struct virtqueue *vq, uint16_t head, uint32_t written);
/* Whether the driver wants an interrupt for what was pushed since the last one
 * (NO_INTERRUPT flag, or used_event with VIRTIO_F_EVENT_IDX); records that it got one. */
bool vq_needs_interrupt(struct virtqueue *vq);
/* Asks the driver to notify (or not) when it adds buffers: used flags or avail_event. */
void vq_set_notification(struct virtqueue *vq, bool enable);
/* True if the driver has made buffers available that the device has not popped. */
bool vq_has_available(struct virtqueue *vq);

/* Copies between a chain's buffers and a flat buffer, starting `offset` bytes into the
 * readable (resp. writable) part; return the bytes copied. */
size_t vq_chain_read(const struct vq_chain *chain, size_t offset, void *dst, size_t len);
size_t vq_chain_write(const struct vq_chain *chain, size_t offset, const void *src, size_t len);

/* Snapshot support: the state is validated against guest memory on restore. */
int vq_restore(struct virtqueue *vq, const struct vq_state *state);
/* Whether vq_restore(vq, state) would succeed; changes nothing. */
int vq_restore_check(const struct virtqueue *vq, const struct vq_state *state);

#endif
