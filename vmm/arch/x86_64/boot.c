#include "boot.h"

#include "bootparams.h"
#include "layout.h"
#include "mptable.h"
#include "pvh.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* Writes the ACPI tables at LAYOUT_ACPI; *rsdp_gpa is where the RSDP went (0 without). */
static int acpi_place(const struct gmem *mem, const struct acpi_config *config, uint64_t *rsdp_gpa,
		      const char **why)
{
	struct acpi_placement placement;
	void *area;
	int err;

	*rsdp_gpa = 0;
	if (!config)
		return 0;
	area = gmem_ptr(mem, LAYOUT_ACPI, LAYOUT_ACPI_SIZE);
	err = area ? acpi_build(area, LAYOUT_ACPI_SIZE, LAYOUT_ACPI, config, &placement) : -EFAULT;
	if (err) {
		*why = "cannot build the ACPI tables (too many vCPUs or devices?)";
		return err;
	}
	*rsdp_gpa = placement.rsdp;
	return 0;
}

int x86_boot_setup(const struct gmem *mem, const struct boot_payload *payload,
		   struct boot_entry *entry, const char **why)
{
	const struct kernel_info *info = payload->info;
	size_t cmdline_len = strlen(payload->cmdline);
	uint64_t initrd_gpa = 0, rsdp_gpa;
	void *mptable;
	int err;

	err = kernel_load(payload->kernel, payload->kernel_size, info, mem, why);
	if (err)
		return err;
	if (cmdline_len > info->cmdline_max) {
		*why = "kernel command line is longer than the kernel accepts";
		return -E2BIG;
	}
	err = gmem_write(mem, LAYOUT_CMDLINE, payload->cmdline, cmdline_len + 1);
	if (err) {
		*why = "no guest memory for the command line";
		return err;
	}
	if (payload->initrd_size) {
		err = initrd_place(gmem_low_end(mem), info->end, info->initrd_max,
				   payload->initrd_size, &initrd_gpa);
		if (!err)
			err = gmem_write(mem, initrd_gpa, payload->initrd, payload->initrd_size);
		if (err) {
			*why = "initrd does not fit in guest memory beside the kernel (give the "
			       "VM more memory)";
			return -ERANGE;
		}
	}
	mptable = gmem_ptr(mem, LAYOUT_MPTABLE, mptable_size(payload->nr_cpus));
	err = mptable ? mptable_build(mptable, mptable_size(payload->nr_cpus),
				      (uint32_t)LAYOUT_MPTABLE, payload->nr_cpus, LAYOUT_IRQ_COUNT)
		      : -EFAULT;
	if (err) {
		*why = "cannot build the MP table";
		return err;
	}
	err = acpi_place(mem, payload->acpi, &rsdp_gpa, why);
	if (err)
		return err;

	if (info->format == KERNEL_FORMAT_ELF && info->has_pvh_entry) {
		entry->mode = ENTRY_PVH32;
		entry->rip = info->pvh_entry;
		entry->boot_info_gpa = LAYOUT_PVH_INFO;
		err = pvh_build(mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, initrd_gpa,
				payload->initrd_size);
		if (!err && rsdp_gpa)
			err = gmem_write(
			    mem, LAYOUT_PVH_INFO + offsetof(struct hvm_start_info, rsdp_paddr),
			    &rsdp_gpa, sizeof(rsdp_gpa));
	} else {
		struct zero_page_config config = {
		    .image_header = info->format == KERNEL_FORMAT_BZIMAGE ? &info->header : NULL,
		    .cmdline_gpa = LAYOUT_CMDLINE,
		    .cmdline_size = (uint32_t)cmdline_len + 1,
		    .initrd_gpa = initrd_gpa,
		    .initrd_size = payload->initrd_size,
		    .rsdp_gpa = rsdp_gpa,
		};
		struct boot_params *params =
		    gmem_ptr(mem, LAYOUT_ZERO_PAGE, sizeof(struct boot_params));
		entry->mode = ENTRY_LINUX64;
		entry->rip = info->entry64;
		entry->boot_info_gpa = LAYOUT_ZERO_PAGE;
		err = params ? zero_page_build(params, mem, &config) : -EFAULT;
	}
	if (err) {
		*why = "cannot build the boot information for the kernel";
		return err;
	}
	err = boot_tables_write(mem, entry->mode);
	if (err)
		*why = "cannot write the GDT and page tables";
	return err;
}
