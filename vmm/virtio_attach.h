/*
 * Puts virtio devices on the VM: a 4 KiB MMIO window and an interrupt line each, an
 * irqfd for the interrupt, an ioeventfd per queue so notifications reach the VMM thread
 * without a trip through the vCPU thread, and the virtio_mmio.device= kernel parameter
 * that tells the guest where to look.
 */
#ifndef WISP_VIRTIO_ATTACH_H
#define WISP_VIRTIO_ATTACH_H

#include "devices/virtio/virtio.h"

#include <stddef.h>
#include <stdint.h>

#define VIRTIO_MMIO_BASE   0xd0000000ULL
#define VIRTIO_FIRST_IRQ   5
#define VIRTIO_MAX_DEVICES 19 /* interrupt lines 5..23 */

struct vm;

struct virtio_notify_source {
	struct virtio_device *dev;
	unsigned int queue;
	int fd;
};

struct virtio_attachment {
	struct virtio_device *dev;
	uint64_t base;
	unsigned int irq;
	int irq_fd;
	struct virtio_notify_source notify[VIRTIO_MAX_QUEUES];
};

/* Attaches dev as the VM's next virtio device. */
int virtio_attach(struct vm *vm, struct virtio_device *dev);
/* Appends " virtio_mmio.device=4K@0x...:IRQ" for every attached device. */
int virtio_append_cmdline(const struct vm *vm, char *cmdline, size_t size);

#endif
