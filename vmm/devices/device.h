/*
 * What every device offers the VMM: register access from the bus, reset, and its state
 * for snapshots. Devices keep snapshot state as plain data (no host pointers), so save is
 * a copy and restore is a validated copy.
 */
#ifndef WISP_DEVICE_H
#define WISP_DEVICE_H

#include <stddef.h>
#include <stdint.h>

struct device_ops {
	const char *name;
	void (*read)(void *device, uint64_t offset, uint8_t *data, uint32_t len);
	void (*write)(void *device, uint64_t offset, const uint8_t *data, uint32_t len);
	void (*reset)(void *device);
	/* Writes the device state into buf; returns the bytes used or -ENOSPC. */
	int (*save)(void *device, void *buf, size_t size);
	/* Loads a state written by save; -EINVAL if it is malformed. */
	int (*restore)(void *device, const void *buf, size_t size);
};

/* How a device raises its interrupt line: level true = asserted. */
struct irq_line {
	void (*set)(void *opaque, unsigned int irq, int level);
	void *opaque;
	unsigned int irq;
};

static inline void irq_line_set(const struct irq_line *line, int level)
{
	if (line->set)
		line->set(line->opaque, line->irq, level);
}

#endif
