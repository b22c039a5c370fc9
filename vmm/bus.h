/*
 * Address ranges -> devices, one bus for port I/O and one for MMIO. Ranges are fixed
 * before the vCPUs start, so lookups need no lock; devices lock themselves.
 */
#ifndef WISP_BUS_H
#define WISP_BUS_H

#include "devices/device.h"

#include <stdbool.h>
#include <stdint.h>

#define BUS_MAX_RANGES 32

struct bus_range {
	uint64_t base;
	uint64_t size;
	const struct device_ops *ops;
	void *device;
};

struct bus {
	struct bus_range ranges[BUS_MAX_RANGES];
	unsigned int nr_ranges;
};

/* Returns 0, -EINVAL for an empty or wrapping range, -EEXIST for an overlap, -ENOSPC. */
int bus_add(struct bus *bus, uint64_t base, uint64_t size, const struct device_ops *ops,
	    void *device);
const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, uint32_t len);
/* false if no device claims the whole access (reads then see all ones). */
bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
