#include "loader.h"

#include "layout.h"

#include <elf.h>
#include <errno.h>
#include <string.h>

#define PAGE_MASK 0xfffULL

static int fail(const char **why, const char *reason)
{
	*why = reason;
	return -ENOEXEC;
}

/* true if [offset, offset+len) lies inside a buffer of `size` bytes, without overflow. */
static bool in_bounds(uint64_t offset, uint64_t len, uint64_t size)
{
	return offset <= size && len <= size - offset;
}

static int elf_parse_notes(const uint8_t *image, uint64_t offset, uint64_t len,
			   struct kernel_info *info, const char **why)
{
	uint64_t pos = 0;

	while (len - pos >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr note;
		memcpy(&note, image + offset + pos, sizeof(note));
		pos += sizeof(note);
		uint64_t name_len = ((uint64_t)note.n_namesz + 3) & ~3ULL;
		uint64_t desc_len = ((uint64_t)note.n_descsz + 3) & ~3ULL;
		if (name_len > len - pos || desc_len > len - pos - name_len)
			return fail(why, "ELF note runs past its segment");
		const uint8_t *name = image + offset + pos;
		const uint8_t *desc = name + name_len;
		if (note.n_type == XEN_ELFNOTE_PHYS32_ENTRY && note.n_namesz == 4 &&
		    !memcmp(name, "Xen", 4)) {
			uint64_t entry = 0;
			if (note.n_descsz == 4) {
				uint32_t entry32;
				memcpy(&entry32, desc, 4);
				entry = entry32;
			} else if (note.n_descsz == 8) {
				memcpy(&entry, desc, 8);
			} else {
				return fail(why, "PVH entry note has a bad size");
			}
			if (entry > UINT32_MAX)
				return fail(why, "PVH entry point is above 4 GiB");
			info->has_pvh_entry = true;
			info->pvh_entry = (uint32_t)entry;
		}
		pos += name_len + desc_len;
	}
	return 0;
}

int elf_parse(const uint8_t *image, size_t size, struct kernel_info *info, const char **why)
{
	Elf64_Ehdr ehdr;
	int err;

	memset(info, 0, sizeof(*info));
	if (size < sizeof(ehdr))
		return fail(why, "file too small for an ELF header");
	memcpy(&ehdr, image, sizeof(ehdr));
	if (memcmp(ehdr.e_ident, ELFMAG, SELFMAG))
		return fail(why, "not an ELF file");
	if (ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_ident[EI_DATA] != ELFDATA2LSB)
		return fail(why, "ELF file is not 64-bit little-endian");
	if (ehdr.e_machine != EM_X86_64)
		return fail(why, "ELF file is not for x86_64");
	if (ehdr.e_type != ET_EXEC)
		return fail(why, "ELF file is not an executable");
	if (ehdr.e_phentsize != sizeof(Elf64_Phdr) || ehdr.e_phnum == 0)
		return fail(why, "ELF file has no usable program headers");
	if (!in_bounds(ehdr.e_phoff, (uint64_t)ehdr.e_phnum * sizeof(Elf64_Phdr), size))
		return fail(why, "ELF program header table lies outside the file");

	info->format = KERNEL_FORMAT_ELF;
	info->entry64 = ehdr.e_entry;
	info->initrd_max = 0x7fffffff;
	info->cmdline_max = LAYOUT_CMDLINE_MAX - 1;
	for (unsigned int i = 0; i < ehdr.e_phnum; i++) {
		Elf64_Phdr phdr;
		memcpy(&phdr, image + ehdr.e_phoff + i * sizeof(phdr), sizeof(phdr));
		if (!in_bounds(phdr.p_offset, phdr.p_filesz, size))
			return fail(why, "ELF segment lies outside the file");
		if (phdr.p_type == PT_NOTE) {
			err = elf_parse_notes(image, phdr.p_offset, phdr.p_filesz, info, why);
			if (err)
				return err;
			continue;
		}
		if (phdr.p_type != PT_LOAD || phdr.p_memsz == 0)
			continue;
		if (phdr.p_filesz > phdr.p_memsz)
			return fail(why, "ELF segment's file size exceeds its memory size");
		if (phdr.p_paddr + phdr.p_memsz < phdr.p_paddr)
			return fail(why, "ELF segment wraps around the address space");
		if (info->nr_segments == KERNEL_MAX_SEGMENTS)
			return fail(why, "ELF file has too many loadable segments");
		info->segments[info->nr_segments++] = (struct kernel_segment){
		    .file_offset = phdr.p_offset,
		    .file_size = phdr.p_filesz,
		    .gpa = phdr.p_paddr,
		    .mem_size = phdr.p_memsz,
		};
		if (phdr.p_paddr + phdr.p_memsz > info->end)
			info->end = phdr.p_paddr + phdr.p_memsz;
	}
	if (info->nr_segments == 0)
		return fail(why, "ELF file has no loadable segment");
	return 0;
}

int bzimage_parse(const uint8_t *image, size_t size, struct kernel_info *info, const char **why)
{
	struct setup_header *hdr = &info->header;
	uint64_t setup_size;

	memset(info, 0, sizeof(*info));
	if (size < 0x1f1 + sizeof(*hdr))
		return fail(why, "file too small for a bzImage setup header");
	memcpy(hdr, image + 0x1f1, sizeof(*hdr));
	if (hdr->boot_flag != SETUP_BOOT_FLAG || hdr->header != SETUP_HEADER_MAGIC)
		return fail(why, "not a bzImage (no HdrS setup header)");
	if (hdr->version < 0x020c)
		return fail(why, "bzImage boot protocol older than 2.12 (no 64-bit entry)");
	if (!(hdr->xloadflags & XLF_KERNEL_64))
		return fail(why, "bzImage has no 64-bit entry point");
	if (!(hdr->loadflags & LOADFLAG_LOADED_HIGH))
		return fail(why, "bzImage is a zImage (loads low)");
	setup_size = ((uint64_t)(hdr->setup_sects ? hdr->setup_sects : 4) + 1) * 512;
	if (setup_size >= size)
		return fail(why, "bzImage setup code covers the whole file (truncated?)");
	if ((uint64_t)hdr->syssize * 16 > size - setup_size)
		return fail(why, "bzImage is truncated (syssize beyond end of file)");

	info->format = KERNEL_FORMAT_BZIMAGE;
	info->nr_segments = 1;
	info->segments[0] = (struct kernel_segment){
	    .file_offset = setup_size,
	    .file_size = size - setup_size,
	    .gpa = LAYOUT_BZIMAGE_LOAD,
	    .mem_size = size - setup_size,
	};
	/* The 64-bit entry is 0x200 past the start of the protected-mode code. */
	info->entry64 = LAYOUT_BZIMAGE_LOAD + 0x200;
	info->end = LAYOUT_BZIMAGE_LOAD + (size - setup_size);
	/* The decompressor extracts to pref_address and needs init_size bytes there. */
	uint64_t decompressed_end = hdr->pref_address + hdr->init_size;
	if (decompressed_end < hdr->pref_address)
		return fail(why, "bzImage pref_address + init_size overflows");
	if (decompressed_end > info->end)
		info->end = decompressed_end;
	info->initrd_max = hdr->initrd_addr_max ? hdr->initrd_addr_max : 0x37ffffff;
	info->cmdline_max = setup_header_cmdline_max(hdr);
	return 0;
}

int kernel_parse(const uint8_t *image, size_t size, struct kernel_info *info, const char **why)
{
	if (size >= SELFMAG && !memcmp(image, ELFMAG, SELFMAG))
		return elf_parse(image, size, info, why);
	if (size >= 0x206 && !memcmp(image + 0x202, "HdrS", 4))
		return bzimage_parse(image, size, info, why);
	return fail(why, "neither an ELF vmlinux nor a bzImage");
}

int kernel_load(const uint8_t *image, size_t size, const struct kernel_info *info,
		const struct gmem *mem, const char **why)
{
	for (unsigned int i = 0; i < info->nr_segments; i++) {
		const struct kernel_segment *seg = &info->segments[i];
		if (!in_bounds(seg->file_offset, seg->file_size, size) ||
		    seg->file_size > seg->mem_size) {
			*why = "kernel segment lies outside the file";
			return -EINVAL;
		}
		if (seg->gpa < LAYOUT_HIGH_MEMORY) {
			*why = "kernel segment lies below 1 MiB, where the boot structures are";
			return -EINVAL;
		}
		uint8_t *dst = gmem_ptr(mem, seg->gpa, seg->mem_size);
		if (!dst) {
			*why = "kernel does not fit in guest memory (give the VM more memory)";
			return -ERANGE;
		}
		memcpy(dst, image + seg->file_offset, seg->file_size);
		memset(dst + seg->file_size, 0, seg->mem_size - seg->file_size);
	}
	if (info->end > gmem_low_end(mem)) {
		*why = "kernel needs more memory than the VM has below 3 GiB (give it more memory)";
		return -ERANGE;
	}
	return 0;
}

int initrd_place(uint64_t low_end, uint64_t kernel_end, uint64_t max_end, uint64_t size,
		 uint64_t *gpa)
{
	uint64_t top = low_end;
	uint64_t kernel_top;

	if (kernel_end > UINT64_MAX - PAGE_MASK)
		return -ENOSPC;
	kernel_top = (kernel_end + PAGE_MASK) & ~PAGE_MASK;
	if (max_end != UINT64_MAX && max_end + 1 < top)
		top = max_end + 1;
	if (size > top || ((top - size) & ~PAGE_MASK) < kernel_top)
		return -ENOSPC;
	*gpa = (top - size) & ~PAGE_MASK;
	return 0;
}
