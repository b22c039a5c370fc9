#include "boot.h"

#include "bootparams.h"
#include "layout.h"
#include "mptable.h"
#include "pvh.h"

#include <errno.h>
#include <string.h>

int x86_boot_setup(const struct gmem *mem, const struct boot_payload *payload,
		   struct boot_entry *entry, const char **why)
{
	const struct kernel_info *info = payload->info;
	size_t cmdline_len = strlen(payload->cmdline);
	uint64_t initrd_gpa = 0;
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

	if (info->format == KERNEL_FORMAT_ELF && info->has_pvh_entry) {
		entry->mode = ENTRY_PVH32;
		entry->rip = info->pvh_entry;
		entry->boot_info_gpa = LAYOUT_PVH_INFO;
		err = pvh_build(mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, initrd_gpa,
				payload->initrd_size);
	} else {
		struct zero_page_config config = {
		    .image_header = info->format == KERNEL_FORMAT_BZIMAGE ? &info->header : NULL,
		    .cmdline_gpa = LAYOUT_CMDLINE,
		    .cmdline_size = (uint32_t)cmdline_len + 1,
		    .initrd_gpa = initrd_gpa,
		    .initrd_size = payload->initrd_size,
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
