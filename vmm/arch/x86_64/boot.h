/*
 * Puts a parsed kernel, its initrd and command line into guest memory with every boot
 * structure the chosen entry needs (PVH start info or zero page, MP table, GDT, page
 * tables). Works on guest memory only, so it is unit-tested without KVM.
 */
#ifndef WISP_X86_BOOT_H
#define WISP_X86_BOOT_H

#include "../../memory.h"
#include "acpi.h"
#include "cpu.h"
#include "loader.h"

#include <stddef.h>
#include <stdint.h>

struct boot_entry {
	enum boot_entry_mode mode;
	uint64_t rip;
	uint64_t boot_info_gpa; /* hvm_start_info (PVH) or boot_params (64-bit) */
};

struct boot_payload {
	const uint8_t *kernel;
	size_t kernel_size;
	const struct kernel_info *info;
	const uint8_t *initrd; /* may be NULL */
	size_t initrd_size;
	const char *cmdline;
	unsigned int nr_cpus;
	/* The ACPI tables to build and announce, or NULL for the MP table alone. */
	const struct acpi_config *acpi;
};

/* Returns 0, or a negative errno with *why saying what did not fit or was wrong. */
int x86_boot_setup(const struct gmem *mem, const struct boot_payload *payload,
		   struct boot_entry *entry, const char **why);

#endif
