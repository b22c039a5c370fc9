/* The PVH boot ABI's hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h). */
#ifndef WISP_X86_PVH_H
#define WISP_X86_PVH_H

#include "../../memory.h"

#include <stdint.h>

#define PVH_START_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
} __attribute__((packed));

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
} __attribute__((packed));

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
} __attribute__((packed));

#define PVH_MODLIST_OFFSET 0x40
#define PVH_MEMMAP_OFFSET  0x80
#define PVH_MEMMAP_MAX	   64
#define PVH_INFO_SIZE	   0x1000

/* Writes start info, module list (the initrd, if any) and memory map at base_gpa. */
int pvh_build(const struct gmem *mem, uint64_t base_gpa, uint64_t cmdline_gpa, uint64_t initrd_gpa,
	      uint64_t initrd_size);

#endif
