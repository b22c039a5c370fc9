/*
 * The hardware-reduced ACPI sleep control, sleep status and reset registers the FADT
 * announces (arch/x86_64/acpi.h): a guest writing SLP_TYP 5 with SLP_EN powers off, and a
 * guest writing the reset value to the reset register reboots; both end the VM. Stateless
 * (the status register reads 0 and a sleep state other than S5 is ignored), so there is
 * nothing to save in a snapshot.
 */
#ifndef WISP_ACPI_PM_H
#define WISP_ACPI_PM_H

#include "device.h"

#include <stdbool.h>
#include <stdint.h>

#define ACPI_PM_SLEEP_CONTROL_OFFSET 0
#define ACPI_PM_SLEEP_STATUS_OFFSET  1
#define ACPI_PM_RESET_OFFSET	     2

struct acpi_pm {
	/* Called from the vCPU thread that wrote the register. */
	void (*poweroff)(void *opaque);
	void (*reset)(void *opaque);
	void *opaque;
	bool warned; /* about an unsupported sleep type, once: a guest could repeat it */
};

extern const struct device_ops acpi_pm_ops;

void acpi_pm_init(struct acpi_pm *pm, void (*poweroff)(void *opaque), void (*reset)(void *opaque),
		  void *opaque);

#endif
