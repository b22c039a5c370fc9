#include "virtio.h"

#include "../../log.h"

#include <errno.h>
#include <string.h>

void virtio_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
		 unsigned int nr_queues, const struct gmem *mem, const char *id)
{
	memset(dev, 0, sizeof(*dev));
	pthread_mutex_init(&dev->lock, NULL);
	pthread_cond_init(&dev->io_done, NULL);
	dev->ops = ops;
	dev->id = id;
	dev->nr_queues = nr_queues;
	for (unsigned int i = 0; i < nr_queues; i++)
		vq_init(&dev->queues[i], mem, ops->queue_max_size);
}

void virtio_config_copy(const void *config, size_t size, uint64_t offset, uint8_t *data,
			uint32_t len)
{
	memset(data, 0, len);
	if (offset >= size)
		return;
	memcpy(data, (const uint8_t *)config + offset, len < size - offset ? len : size - offset);
}

bool virtio_has_feature(const struct virtio_device *dev, unsigned int bit)
{
	return (dev->driver_features >> bit) & 1;
}

static uint64_t device_features(struct virtio_device *dev)
{
	return dev->ops->features(dev) | (1ULL << VIRTIO_F_VERSION_1);
}

static void raise_interrupt(struct virtio_device *dev, uint32_t bits)
{
	atomic_fetch_or(&dev->interrupt_status, bits);
	if (dev->signal)
		dev->signal(dev);
}

void virtio_notify_used(struct virtio_device *dev, unsigned int index)
{
	if (index < dev->nr_queues && vq_needs_interrupt(&dev->queues[index]))
		raise_interrupt(dev, VIRTIO_INT_USED_BUFFER);
}

void virtio_config_changed(struct virtio_device *dev)
{
	dev->config_generation++;
	if (dev->status & VIRTIO_STATUS_DRIVER_OK)
		raise_interrupt(dev, VIRTIO_INT_CONFIG);
}

void virtio_queue_failed(struct virtio_device *dev, unsigned int index)
{
	const char *reason = index < dev->nr_queues ? dev->queues[index].broken_reason : NULL;

	if (dev->status & VIRTIO_STATUS_NEEDS_RESET)
		return; /* logged and counted once per reset */
	log_warn("%s '%s': queue %u: %s: device needs a reset", dev->ops->name,
		 dev->id ? dev->id : "", index, reason ? reason : "device error");
	atomic_fetch_add(&dev->needs_reset_events, 1);
	dev->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (dev->status & VIRTIO_STATUS_DRIVER_OK)
		raise_interrupt(dev, VIRTIO_INT_CONFIG);
}

bool virtio_device_live(const struct virtio_device *dev)
{
	return (dev->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(dev->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

void virtio_io_begin(struct virtio_device *dev)
{
	dev->io_in_progress++;
	pthread_mutex_unlock(&dev->lock);
}

void virtio_io_end(struct virtio_device *dev)
{
	pthread_mutex_lock(&dev->lock);
	if (--dev->io_in_progress == 0)
		pthread_cond_broadcast(&dev->io_done);
}

/* With dev->lock held: waits until no blocking call of the device is in progress, for
 * what must not change under one (see virtio.h). */
static void wait_for_io(struct virtio_device *dev)
{
	while (dev->io_in_progress)
		pthread_cond_wait(&dev->io_done, &dev->lock);
}

void virtio_queue_notified(struct virtio_device *dev, unsigned int index)
{
	pthread_mutex_lock(&dev->lock);
	wait_for_io(dev); /* one piece of device work at a time */
	if (index < dev->nr_queues && virtio_device_live(dev) && dev->queues[index].state.ready)
		dev->ops->queue_notify(dev, index);
	pthread_mutex_unlock(&dev->lock);
}

static void virtio_reset(struct virtio_device *dev)
{
	for (unsigned int i = 0; i < dev->nr_queues; i++)
		vq_reset(&dev->queues[i]);
	dev->driver_features = 0;
	dev->status = 0;
	atomic_store(&dev->interrupt_status, 0);
	dev->device_features_sel = dev->driver_features_sel = dev->queue_sel = 0;
	if (dev->ops->reset)
		dev->ops->reset(dev);
}

static struct virtqueue *selected_queue(struct virtio_device *dev)
{
	return dev->queue_sel < dev->nr_queues ? &dev->queues[dev->queue_sel] : NULL;
}

/* The registers read without dev->lock: constants, and the interrupt status a guest's
 * interrupt handler reads, which must never wait for the device's work. False for the
 * others. */
static bool read_register_unlocked(const struct virtio_device *dev, uint64_t offset,
				   uint32_t *value)
{
	switch (offset) {
	case VIRTIO_MMIO_MAGIC:
		*value = VIRTIO_MMIO_MAGIC_VALUE;
		return true;
	case VIRTIO_MMIO_VERSION:
		*value = 2;
		return true;
	case VIRTIO_MMIO_DEVICE_ID:
		*value = dev->ops->device_id;
		return true;
	case VIRTIO_MMIO_VENDOR_ID:
		*value = VIRTIO_MMIO_VENDOR;
		return true;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		*value = atomic_load(&dev->interrupt_status);
		return true;
	default:
		return false;
	}
}

/* The other registers, under dev->lock. */
static uint32_t read_register(struct virtio_device *dev, uint64_t offset)
{
	struct virtqueue *vq = selected_queue(dev);

	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES:
		if (dev->device_features_sel > 1)
			return 0;
		return (uint32_t)(device_features(dev) >> (32 * dev->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? vq->state.max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->state.ready : 0;
	case VIRTIO_MMIO_STATUS:
		return dev->status;
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return dev->config_generation;
	default:
		return 0;
	}
}

static uint64_t with_half(uint64_t address, bool high, uint32_t value)
{
	if (high)
		return (address & 0xffffffffULL) | ((uint64_t)value << 32);
	return (address & ~0xffffffffULL) | value;
}

static void write_status(struct virtio_device *dev, uint32_t value)
{
	if (value == 0) {
		virtio_reset(dev);
		return;
	}
	if ((value & VIRTIO_STATUS_FEATURES_OK) && !(dev->status & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t offered = device_features(dev);
		/* A modern device: the driver must take VERSION_1, and only what is offered. */
		if ((dev->driver_features & ~offered) ||
		    !(dev->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
			value &= ~VIRTIO_STATUS_FEATURES_OK;
	}
	/* DRIVER_OK only counts after a successful feature negotiation. */
	if ((value & VIRTIO_STATUS_DRIVER_OK) && !(value & VIRTIO_STATUS_FEATURES_OK))
		value &= ~VIRTIO_STATUS_DRIVER_OK;
	if ((value & VIRTIO_STATUS_DRIVER_OK) && !(dev->status & VIRTIO_STATUS_DRIVER_OK)) {
		/* NEEDS_RESET is the device's to clear, on a reset only. */
		dev->status = (dev->status & VIRTIO_STATUS_NEEDS_RESET) | value;
		for (unsigned int i = 0; i < dev->nr_queues; i++)
			dev->queues[i].state.event_idx =
			    virtio_has_feature(dev, VIRTIO_F_EVENT_IDX);
		if (dev->ops->activate && dev->ops->activate(dev)) {
			log_warn("%s '%s': activation failed", dev->ops->name,
				 dev->id ? dev->id : "");
			dev->status |= VIRTIO_STATUS_NEEDS_RESET;
		}
		return;
	}
	/* The driver may not clear bits other than by a reset; NEEDS_RESET is the device's. */
	dev->status = (dev->status & VIRTIO_STATUS_NEEDS_RESET) | value;
}

static void write_queue_register(struct virtio_device *dev, uint64_t offset, uint32_t value)
{
	struct virtqueue *vq = selected_queue(dev);
	struct vq_state *s;

	if (!vq)
		return;
	s = &vq->state;
	if (offset == VIRTIO_MMIO_QUEUE_READY) {
		wait_for_io(dev); /* the device may be using the queue */
		if (value == 1 && !s->ready) {
			s->ready = 1;
			if (vq_check_config(vq)) {
				s->ready = 0;
				virtio_queue_failed(dev, dev->queue_sel);
			}
		} else if (value == 0) {
			s->ready = 0;
		}
		return;
	}
	if (s->ready)
		return; /* a live queue's configuration is fixed */
	switch (offset) {
	case VIRTIO_MMIO_QUEUE_NUM:
		s->size = (uint16_t)(value > UINT16_MAX ? 0 : value);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		s->desc_gpa = with_half(s->desc_gpa, offset == VIRTIO_MMIO_QUEUE_DESC_HIGH, value);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		s->avail_gpa =
		    with_half(s->avail_gpa, offset == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, value);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		s->used_gpa = with_half(s->used_gpa, offset == VIRTIO_MMIO_QUEUE_USED_HIGH, value);
		break;
	}
}

static void write_register(struct virtio_device *dev, uint64_t offset, uint32_t value)
{
	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		dev->device_features_sel = value;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (dev->status & VIRTIO_STATUS_FEATURES_OK)
			break; /* negotiation is over */
		if (dev->driver_features_sel == 0)
			dev->driver_features = (dev->driver_features & ~0xffffffffULL) | value;
		else if (dev->driver_features_sel == 1)
			dev->driver_features =
			    (dev->driver_features & 0xffffffffULL) | ((uint64_t)value << 32);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		dev->driver_features_sel = value;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		dev->queue_sel = value;
		break;
	case VIRTIO_MMIO_STATUS:
		wait_for_io(dev); /* a reset or an activation must not run under a request */
		write_status(dev, value);
		break;
	default:
		write_queue_register(dev, offset, value);
		break;
	}
}

static void virtio_mmio_read(void *device, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_device *dev = device;
	uint32_t value;

	memset(data, 0, len);
	if (len == 4 && !(offset & 3) && read_register_unlocked(dev, offset, &value)) {
		memcpy(data, &value, 4);
		return;
	}
	pthread_mutex_lock(&dev->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		if (dev->ops->config_read)
			dev->ops->config_read(dev, offset - VIRTIO_MMIO_CONFIG, data, len);
	} else if (len == 4 && !(offset & 3)) {
		uint32_t value = read_register(dev, offset);
		memcpy(data, &value, 4);
	}
	pthread_mutex_unlock(&dev->lock);
}

static void virtio_mmio_write(void *device, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_device *dev = device;
	uint32_t value;

	if (offset >= VIRTIO_MMIO_CONFIG) {
		pthread_mutex_lock(&dev->lock);
		wait_for_io(dev);
		if (dev->ops->config_write)
			dev->ops->config_write(dev, offset - VIRTIO_MMIO_CONFIG, data, len);
		pthread_mutex_unlock(&dev->lock);
		return;
	}
	if (len != 4 || (offset & 3))
		return; /* the transport's registers are 32-bit only */
	memcpy(&value, data, 4);
	if (offset == VIRTIO_MMIO_QUEUE_NOTIFY) {
		/* Normally an ioeventfd takes this write before it exits to the VMM. */
		if (dev->kick)
			dev->kick(dev, value);
		else
			virtio_queue_notified(dev, value);
		return;
	}
	if (offset == VIRTIO_MMIO_INTERRUPT_ACK) {
		/* The interrupt handler's write: an atomic, never behind the device's work. */
		atomic_fetch_and(&dev->interrupt_status, ~value);
		return;
	}
	pthread_mutex_lock(&dev->lock);
	write_register(dev, offset, value);
	pthread_mutex_unlock(&dev->lock);
}

static void virtio_mmio_reset(void *device)
{
	struct virtio_device *dev = device;
	pthread_mutex_lock(&dev->lock);
	wait_for_io(dev);
	virtio_reset(dev);
	pthread_mutex_unlock(&dev->lock);
}

/* Layout: transport state, the queues' states, then the device's own state. */
static int virtio_mmio_save(void *device, void *buf, size_t size)
{
	struct virtio_device *dev = device;
	struct virtio_transport_state transport;
	size_t fixed = sizeof(transport) + dev->nr_queues * sizeof(struct vq_state);
	uint8_t *out = buf;
	int device_bytes = 0;

	if (size < fixed)
		return -ENOSPC;
	pthread_mutex_lock(&dev->lock);
	wait_for_io(dev);
	transport = (struct virtio_transport_state){
	    .driver_features = dev->driver_features,
	    .status = dev->status,
	    .interrupt_status = atomic_load(&dev->interrupt_status),
	    .config_generation = dev->config_generation,
	    .device_features_sel = dev->device_features_sel,
	    .driver_features_sel = dev->driver_features_sel,
	    .queue_sel = dev->queue_sel,
	};
	memcpy(out, &transport, sizeof(transport));
	for (unsigned int i = 0; i < dev->nr_queues; i++)
		memcpy(out + sizeof(transport) + i * sizeof(struct vq_state), &dev->queues[i].state,
		       sizeof(struct vq_state));
	if (dev->ops->save)
		device_bytes = dev->ops->save(dev, out + fixed, size - fixed);
	pthread_mutex_unlock(&dev->lock);
	return device_bytes < 0 ? device_bytes : (int)(fixed + (size_t)device_bytes);
}

static int virtio_mmio_restore(void *device, const void *buf, size_t size)
{
	struct virtio_device *dev = device;
	struct virtio_transport_state transport;
	size_t fixed = sizeof(transport) + dev->nr_queues * sizeof(struct vq_state);
	const uint8_t *in = buf;
	struct vq_state queues[VIRTIO_MAX_QUEUES];
	int err = 0;

	if (size < fixed)
		return -EINVAL;
	memcpy(&transport, in, sizeof(transport));
	if (transport.driver_features & ~device_features(dev))
		return -EINVAL;
	memcpy(queues, in + sizeof(transport), dev->nr_queues * sizeof(struct vq_state));
	pthread_mutex_lock(&dev->lock);
	wait_for_io(dev);
	/* All or nothing: every part is checked before the device's restore, which may
	 * reach the host (a TAP's offloads), and before any queue changes. */
	for (unsigned int i = 0; i < dev->nr_queues && !err; i++)
		err = vq_restore_check(&dev->queues[i], &queues[i]);
	if (!err && dev->ops->restore_check)
		err = dev->ops->restore_check(dev, in + fixed, size - fixed);
	if (!err && dev->ops->restore)
		err = dev->ops->restore(dev, in + fixed, size - fixed);
	for (unsigned int i = 0; i < dev->nr_queues && !err; i++)
		err = vq_restore(&dev->queues[i], &queues[i]); /* checked: cannot fail */
	if (!err) {
		dev->driver_features = transport.driver_features;
		dev->status = transport.status;
		atomic_store(&dev->interrupt_status, transport.interrupt_status);
		dev->config_generation = transport.config_generation;
		dev->device_features_sel = transport.device_features_sel;
		dev->driver_features_sel = transport.driver_features_sel;
		dev->queue_sel = transport.queue_sel;
	}
	pthread_mutex_unlock(&dev->lock);
	return err;
}

const struct device_ops virtio_mmio_ops = {
    .name = "virtio-mmio",
    .read = virtio_mmio_read,
    .write = virtio_mmio_write,
    .reset = virtio_mmio_reset,
    .save = virtio_mmio_save,
    .restore = virtio_mmio_restore,
};
