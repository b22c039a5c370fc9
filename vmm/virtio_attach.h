/*
 * Puts virtio devices on the VM: a 4 KiB MMIO window and an interrupt line each, an
 * irqfd for the interrupt, an ioeventfd per queue so notifications reach the VMM thread
 * without a trip through the vCPU thread, and the virtio_mmio.device= kernel parameter
 * that tells the guest where to look.
 */
#ifndef WISP_VIRTIO_ATTACH_H
#define WISP_VIRTIO_ATTACH_H

#include "devices/virtio/virtio.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VIRTIO_MMIO_BASE   0xd0000000ULL
#define VIRTIO_FIRST_IRQ   5
#define VIRTIO_MAX_DEVICES 19 /* interrupt lines 5..23 */

struct vm;

/* An interrupt is an irqfd pulse (the lines are edge-triggered), so one that never
 * reaches the guest is never sent again, and the device's queue stalls: seen under
 * nested KVM, where a guest stopped with InterruptStatus set and unacknowledged. The
 * watch runs while some device has an interrupt outstanding, once a second on the VMM
 * thread, and signals again an interrupt that stayed set and unacknowledged for a
 * whole second, as a level-triggered line would stay asserted. */
struct virtio_irq_watch {
	int timer_fd;
	atomic_bool armed;
};

struct virtio_notify_source {
	struct virtio_device *dev;
	unsigned int queue;
	int fd;
};

struct virtio_attachment {
	struct virtio_device *dev;
	struct virtio_irq_watch *watch;
	uint64_t acks_seen; /* interrupt_acks at the watch's last look */
	bool pending_seen;  /* interrupt_status was set at the watch's last look */
	uint64_t base;
	unsigned int irq;
	int irq_fd;
	struct virtio_notify_source notify[VIRTIO_MAX_QUEUES];
};

/* Sets up the watch (its timerfd in the VM's event loop); once, before any attach. */
int virtio_irq_watch_init(struct vm *vm);
/* Attaches dev as the VM's next virtio device. */
int virtio_attach(struct vm *vm, struct virtio_device *dev);
/* Appends " virtio_mmio.device=4K@0x...:IRQ" for every attached device. */
int virtio_append_cmdline(const struct vm *vm, char *cmdline, size_t size);

#endif
