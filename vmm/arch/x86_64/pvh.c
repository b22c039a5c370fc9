#include "pvh.h"

#include "bootparams.h"

#include <assert.h>
#include <errno.h>

static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info v1 is 56 bytes");
static_assert(PVH_MEMMAP_OFFSET + PVH_MEMMAP_MAX * sizeof(struct hvm_memmap_table_entry) <=
		  PVH_INFO_SIZE,
	      "PVH structures fit in one page");

int pvh_build(const struct gmem *mem, uint64_t base_gpa, uint64_t cmdline_gpa, uint64_t initrd_gpa,
	      uint64_t initrd_size)
{
	struct e820_entry e820[PVH_MEMMAP_MAX];
	struct hvm_start_info info = {
	    .magic = PVH_START_MAGIC,
	    .version = 1,
	    .cmdline_paddr = cmdline_gpa,
	    .memmap_paddr = base_gpa + PVH_MEMMAP_OFFSET,
	};
	int count = e820_build(mem, e820, PVH_MEMMAP_MAX);
	int err;

	if (count < 0)
		return count;
	/* Everything below lives in one page at base_gpa: check it whole before writing. */
	if (!gmem_ptr(mem, base_gpa, PVH_INFO_SIZE))
		return -EFAULT;
	for (int i = 0; i < count; i++) {
		struct hvm_memmap_table_entry entry = {
		    .addr = e820[i].addr, .size = e820[i].size, .type = e820[i].type};
		err = gmem_write(mem, info.memmap_paddr + i * sizeof(entry), &entry, sizeof(entry));
		if (err)
			return err;
	}
	info.memmap_entries = (uint32_t)count;
	if (initrd_size) {
		struct hvm_modlist_entry module = {.paddr = initrd_gpa, .size = initrd_size};
		info.nr_modules = 1;
		info.modlist_paddr = base_gpa + PVH_MODLIST_OFFSET;
		err = gmem_write(mem, info.modlist_paddr, &module, sizeof(module));
		if (err)
			return err;
	}
	return gmem_write(mem, base_gpa, &info, sizeof(info));
}
