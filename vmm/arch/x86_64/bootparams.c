#include "bootparams.h"

#include "layout.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

static_assert(sizeof(struct boot_params) == 4096, "boot_params must be one page");
static_assert(offsetof(struct boot_params, e820_entries) == 0x1e8, "e820_entries offset");
static_assert(offsetof(struct boot_params, hdr) == 0x1f1, "setup header offset");
static_assert(offsetof(struct boot_params, e820_table) == 0x2d0, "e820_table offset");
static_assert(offsetof(struct boot_params, ext_ramdisk_image) == 0xc0, "ext_ramdisk offset");
static_assert(sizeof(struct setup_header) == 0x26c - 0x1f1, "setup header size");

static int e820_add(struct e820_entry *table, unsigned int max_entries, unsigned int *count,
		    uint64_t addr, uint64_t size, uint32_t type)
{
	if (*count >= max_entries)
		return -E2BIG;
	table[*count] = (struct e820_entry){.addr = addr, .size = size, .type = type};
	(*count)++;
	return 0;
}

int e820_build(const struct gmem *mem, struct e820_entry *table, unsigned int max_entries)
{
	unsigned int count = 0;
	int err;

	if (mem->nr_regions == 0 || mem->regions[0].gpa != 0 ||
	    mem->regions[0].size <= LAYOUT_EBDA_END)
		return -EINVAL;
	/* Base memory up to the MP table, the reserved EBDA/BIOS hole, then the rest. */
	err = e820_add(table, max_entries, &count, 0, LAYOUT_MPTABLE, E820_RAM);
	if (!err)
		err = e820_add(table, max_entries, &count, LAYOUT_MPTABLE,
			       LAYOUT_EBDA_END - LAYOUT_MPTABLE, E820_RESERVED);
	if (!err)
		err = e820_add(table, max_entries, &count, LAYOUT_HIGH_MEMORY,
			       mem->regions[0].size - LAYOUT_HIGH_MEMORY, E820_RAM);
	for (unsigned int i = 1; !err && i < mem->nr_regions; i++)
		err = e820_add(table, max_entries, &count, mem->regions[i].gpa,
			       mem->regions[i].size, E820_RAM);
	return err ? err : (int)count;
}

uint32_t setup_header_cmdline_max(const struct setup_header *hdr)
{
	/* Protocols before 2.06 leave cmdline_size 0 and mean 255; the buffer wisp reserves
	 * bounds it from above. */
	uint32_t max = hdr->cmdline_size ? hdr->cmdline_size : 255;
	return max < LAYOUT_CMDLINE_MAX - 1 ? max : LAYOUT_CMDLINE_MAX - 1;
}

int zero_page_build(struct boot_params *params, const struct gmem *mem,
		    const struct zero_page_config *config)
{
	struct setup_header *hdr = &params->hdr;
	int count;

	memset(params, 0, sizeof(*params));
	if (config->image_header) {
		*hdr = *config->image_header;
	} else {
		/* A vmlinux has no setup header: give the kernel the fields it reads. */
		hdr->boot_flag = SETUP_BOOT_FLAG;
		hdr->header = SETUP_HEADER_MAGIC;
		hdr->version = 0x020f;
		hdr->kernel_alignment = 0x1000000;
		hdr->initrd_addr_max = 0x7fffffff;
		hdr->cmdline_size = LAYOUT_CMDLINE_MAX - 1;
	}
	if (config->cmdline_gpa > UINT32_MAX || config->initrd_gpa > UINT32_MAX ||
	    config->initrd_size > UINT32_MAX)
		return -ERANGE;
	if (config->cmdline_size > (uint64_t)setup_header_cmdline_max(hdr) + 1)
		return -E2BIG;
	hdr->type_of_loader = LOADER_TYPE_UNDEFINED;
	hdr->loadflags |= LOADFLAG_CAN_USE_HEAP | LOADFLAG_LOADED_HIGH;
	hdr->heap_end_ptr = 0xfe00;
	hdr->cmd_line_ptr = (uint32_t)config->cmdline_gpa;
	hdr->vid_mode = 0xffff; /* "normal": there is no video, the console is serial */
	/* Set both ways: a bzImage's own header could carry stale values. */
	hdr->ramdisk_image = config->initrd_size ? (uint32_t)config->initrd_gpa : 0;
	hdr->ramdisk_size = (uint32_t)config->initrd_size;
	params->acpi_rsdp_addr = config->rsdp_gpa;
	count = e820_build(mem, params->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
	if (count < 0)
		return count;
	params->e820_entries = (uint8_t)count;
	return 0;
}
