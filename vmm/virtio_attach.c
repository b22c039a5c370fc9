#include "virtio_attach.h"

#include "log.h"
#include "vm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void signal_irqfd(struct virtio_device *dev)
{
	struct virtio_attachment *attachment = dev->owner;
	uint64_t one = 1;
	if (write(attachment->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s '%s': cannot raise its interrupt: %s", dev->ops->name, dev->id,
			 strerror(errno));
}

/* A QueueNotify write that reached the VMM (KVM takes it through the ioeventfd
 * normally): hand it to the VMM thread the same way. */
static void kick_eventfd(struct virtio_device *dev, unsigned int queue)
{
	struct virtio_attachment *attachment = dev->owner;
	uint64_t one = 1;
	if (queue < dev->nr_queues && write(attachment->notify[queue].fd, &one, sizeof(one)) < 0)
		log_debug("%s: queue %u kick lost: %s", dev->ops->name, queue, strerror(errno));
}

static void on_queue_notify(void *opaque, uint32_t events)
{
	struct virtio_notify_source *source = opaque;
	uint64_t count;
	(void)events;
	if (read(source->fd, &count, sizeof(count)) == sizeof(count))
		virtio_queue_notified(source->dev, source->queue);
}

int virtio_attach(struct vm *vm, struct virtio_device *dev)
{
	struct virtio_attachment *attachment;
	int err;

	if (vm->nr_virtio == VIRTIO_MAX_DEVICES) {
		log_error("too many virtio devices (at most %d)", VIRTIO_MAX_DEVICES);
		return -ENOSPC;
	}
	attachment = &vm->virtio[vm->nr_virtio];
	*attachment = (struct virtio_attachment){
	    .dev = dev,
	    .base = VIRTIO_MMIO_BASE + vm->nr_virtio * VIRTIO_MMIO_SIZE,
	    .irq = VIRTIO_FIRST_IRQ + vm->nr_virtio,
	    .irq_fd = -1,
	};
	dev->owner = attachment;
	dev->signal = signal_irqfd;
	dev->kick = kick_eventfd;
	attachment->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (attachment->irq_fd < 0) {
		err = -errno;
		log_error("%s '%s': cannot create the eventfd of interrupt %u: %s", dev->ops->name,
			  dev->id, attachment->irq, strerror(-err));
		return err;
	}
	err = kvm_irqfd(&vm->kvm, attachment->irq_fd, attachment->irq);
	if (err)
		return err;
	for (unsigned int q = 0; q < dev->nr_queues; q++) {
		struct virtio_notify_source *source = &attachment->notify[q];
		*source = (struct virtio_notify_source){.dev = dev, .queue = q};
		source->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (source->fd < 0) {
			err = -errno;
			log_error("%s '%s': cannot create the eventfd of queue %u: %s",
				  dev->ops->name, dev->id, q, strerror(-err));
			return err;
		}
		err = kvm_ioeventfd(&vm->kvm, source->fd,
				    attachment->base + VIRTIO_MMIO_QUEUE_NOTIFY, q);
		if (err)
			return err;
		err = event_loop_add(&vm->loop, source->fd, EPOLLIN, on_queue_notify, source);
		if (err) {
			log_error("%s '%s': cannot watch queue %u's notifications: %s",
				  dev->ops->name, dev->id, q, strerror(-err));
			return err;
		}
	}
	if (dev->ops->attach) {
		err = dev->ops->attach(dev, &vm->loop);
		if (err)
			return err;
	}
	err = bus_add(&vm->mmio_bus, attachment->base, VIRTIO_MMIO_SIZE, &virtio_mmio_ops, dev);
	if (err) {
		log_error("%s '%s': cannot place its window at 0x%llx on the MMIO bus: %s",
			  dev->ops->name, dev->id, (unsigned long long)attachment->base,
			  strerror(-err));
		return err;
	}
	vm->nr_virtio++;
	return 0;
}

int virtio_append_cmdline(const struct vm *vm, char *cmdline, size_t size)
{
	size_t used = strlen(cmdline);
	for (unsigned int i = 0; i < vm->nr_virtio; i++) {
		int n = snprintf(cmdline + used, size - used, " virtio_mmio.device=4K@0x%llx:%u",
				 (unsigned long long)vm->virtio[i].base, vm->virtio[i].irq);
		if (n < 0 || (size_t)n >= size - used)
			return -E2BIG;
		used += (size_t)n;
	}
	return 0;
}
