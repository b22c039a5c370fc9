/*
 * Kernel images: the uncompressed vmlinux ELF (entered through its PVH note, or directly
 * in 64-bit mode) and the bzImage (64-bit entry of the boot protocol). Parsing works on a
 * byte buffer and treats every field as hostile; `why` names what was wrong.
 */
#ifndef WISP_X86_LOADER_H
#define WISP_X86_LOADER_H

#include "../../memory.h"
#include "bootparams.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kernel_format { KERNEL_FORMAT_ELF, KERNEL_FORMAT_BZIMAGE };

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define KERNEL_MAX_SEGMENTS	 16

struct kernel_segment {
	uint64_t file_offset;
	uint64_t file_size;
	uint64_t gpa;
	uint64_t mem_size;
};

struct kernel_info {
	enum kernel_format format;
	bool has_pvh_entry;
	uint32_t pvh_entry;   /* 32-bit protected-mode entry (PVH) */
	uint64_t entry64;     /* 64-bit entry of the Linux boot protocol */
	uint64_t end;	      /* first guest address above everything the kernel uses */
	uint64_t initrd_max;  /* highest address the initrd may end at, inclusive */
	uint32_t cmdline_max; /* longest command line, without the NUL */
	unsigned int nr_segments;
	struct kernel_segment segments[KERNEL_MAX_SEGMENTS];
	struct setup_header header; /* bzImage only */
};

/* Returns 0, or -ENOEXEC with *why set to a static description of the problem. */
int kernel_parse(const uint8_t *image, size_t size, struct kernel_info *info, const char **why);
int elf_parse(const uint8_t *image, size_t size, struct kernel_info *info, const char **why);
int bzimage_parse(const uint8_t *image, size_t size, struct kernel_info *info, const char **why);

/* Copies the image's segments into guest memory; -ERANGE if one does not fit. */
int kernel_load(const uint8_t *image, size_t size, const struct kernel_info *info,
		const struct gmem *mem, const char **why);

/* Picks a page-aligned initrd address: as high as possible below low_end and max_end,
 * above kernel_end. Returns 0 or -ENOSPC. */
int initrd_place(uint64_t low_end, uint64_t kernel_end, uint64_t max_end, uint64_t size,
		 uint64_t *gpa);

#endif
