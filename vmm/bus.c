#include "bus.h"

#include <errno.h>
#include <string.h>

int bus_add(struct bus *bus, uint64_t base, uint64_t size, const struct device_ops *ops,
	    void *device)
{
	if (size == 0 || base + size < base)
		return -EINVAL;
	for (unsigned int i = 0; i < bus->nr_ranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (base < r->base + r->size && r->base < base + size)
			return -EEXIST;
	}
	if (bus->nr_ranges == BUS_MAX_RANGES)
		return -ENOSPC;
	bus->ranges[bus->nr_ranges++] =
	    (struct bus_range){.base = base, .size = size, .ops = ops, .device = device};
	return 0;
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr, uint32_t len)
{
	for (unsigned int i = 0; i < bus->nr_ranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (addr >= r->base && addr - r->base < r->size &&
		    len <= r->size - (addr - r->base))
			return r;
	}
	return NULL;
}

bool bus_read(const struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
	const struct bus_range *r = bus_find(bus, addr, len);
	if (!r || !r->ops->read) {
		memset(data, 0xff, len);
		return false;
	}
	r->ops->read(r->device, addr - r->base, data, len);
	return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
	const struct bus_range *r = bus_find(bus, addr, len);
	if (!r || !r->ops->write)
		return false;
	r->ops->write(r->device, addr - r->base, data, len);
	return true;
}
