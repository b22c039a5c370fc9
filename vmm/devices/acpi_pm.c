#include "acpi_pm.h"

#include "../arch/x86_64/acpi.h"
#include "../log.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

static_assert(ACPI_SLEEP_CONTROL - ACPI_PM_PORT_BASE == ACPI_PM_SLEEP_CONTROL_OFFSET,
	      "sleep control register offset");
static_assert(ACPI_SLEEP_STATUS - ACPI_PM_PORT_BASE == ACPI_PM_SLEEP_STATUS_OFFSET,
	      "sleep status register offset");
static_assert(ACPI_RESET_PORT - ACPI_PM_PORT_BASE == ACPI_PM_RESET_OFFSET, "reset register offset");

void acpi_pm_init(struct acpi_pm *pm, void (*poweroff)(void *opaque), void (*reset)(void *opaque),
		  void *opaque)
{
	*pm = (struct acpi_pm){.poweroff = poweroff, .reset = reset, .opaque = opaque};
}

static void acpi_pm_read(void *device, uint64_t offset, uint8_t *data, uint32_t len)
{
	(void)device;
	(void)offset;
	memset(data, 0, len);
}

static void acpi_pm_write(void *device, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct acpi_pm *pm = device;
	uint8_t value;

	/* The FADT declares byte-wide registers; other widths are not the guest's ACPI. */
	if (len != 1)
		return;
	value = data[0];
	if (offset == ACPI_PM_SLEEP_CONTROL_OFFSET && (value & ACPI_SLP_EN)) {
		unsigned int type = (value & ACPI_SLP_TYP_MASK) >> ACPI_SLP_TYP_SHIFT;
		if (type != ACPI_S5_SLEEP_TYPE) {
			if (pm->warned)
				return;
			pm->warned = true;
			log_warn(
			    "guest asked for ACPI sleep type %u, which the DSDT does not offer: "
			    "ignored",
			    type);
			return;
		}
		log_info("guest powered off through ACPI (S5): ending the VM");
		if (pm->poweroff)
			pm->poweroff(pm->opaque);
	} else if (offset == ACPI_PM_RESET_OFFSET && value == ACPI_RESET_VALUE) {
		log_info("guest wrote the ACPI reset register (reboot): ending the VM");
		if (pm->reset)
			pm->reset(pm->opaque);
	}
}

static void acpi_pm_reset(void *device)
{
	(void)device;
}

static int acpi_pm_save(void *device, void *buf, size_t size)
{
	(void)device;
	(void)buf;
	(void)size;
	return 0;
}

static int acpi_pm_restore(void *device, const void *buf, size_t size)
{
	(void)device;
	(void)buf;
	return size == 0 ? 0 : -EINVAL;
}

const struct device_ops acpi_pm_ops = {
    .name = "acpi-pm",
    .read = acpi_pm_read,
    .write = acpi_pm_write,
    .reset = acpi_pm_reset,
    .save = acpi_pm_save,
    .restore = acpi_pm_restore,
};
