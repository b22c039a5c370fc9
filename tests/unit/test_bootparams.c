/* Unit tests for the e820 map and the Linux zero page (arch/x86_64/bootparams.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/bootparams.h"
#include "arch/x86_64/layout.h"
#include "memory.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* e820 and zero page construction only read the layout, so no host memory is needed. */
static struct gmem layout_of(uint64_t size)
{
	struct gmem mem;
	assert_int_equal(gmem_layout(&mem, size), 0);
	return mem;
}

static void assert_entry(const struct e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
	assert_int_equal(e->addr, addr);
	assert_int_equal(e->size, size);
	assert_int_equal(e->type, type);
}

static void test_boot_params_matches_linux_layout(void **state)
{
	(void)state;

	assert_int_equal(sizeof(struct boot_params), 4096);
	assert_int_equal(sizeof(struct e820_entry), 20);
	assert_int_equal(offsetof(struct boot_params, tboot_addr), 0x058);
	assert_int_equal(offsetof(struct boot_params, acpi_rsdp_addr), 0x070);
	assert_int_equal(offsetof(struct boot_params, ext_ramdisk_image), 0x0c0);
	assert_int_equal(offsetof(struct boot_params, ext_ramdisk_size), 0x0c4);
	assert_int_equal(offsetof(struct boot_params, ext_cmd_line_ptr), 0x0c8);
	assert_int_equal(offsetof(struct boot_params, alt_mem_k), 0x1e0);
	assert_int_equal(offsetof(struct boot_params, e820_entries), 0x1e8);
	assert_int_equal(offsetof(struct boot_params, sentinel), 0x1ef);
	assert_int_equal(offsetof(struct boot_params, hdr), 0x1f1);
	assert_int_equal(offsetof(struct boot_params, edd_mbr_sig_buffer), 0x290);
	assert_int_equal(offsetof(struct boot_params, e820_table), 0x2d0);
	assert_int_equal(offsetof(struct boot_params, eddbuf), 0xd00);
}

#define HDR_AT(field, off)                                                                         \
	assert_int_equal(offsetof(struct boot_params, hdr) + offsetof(struct setup_header, field), \
			 off)

static void test_setup_header_fields_are_at_boot_protocol_offsets(void **state)
{
	(void)state;

	HDR_AT(setup_sects, 0x1f1);
	HDR_AT(syssize, 0x1f4);
	HDR_AT(vid_mode, 0x1fa);
	HDR_AT(boot_flag, 0x1fe);
	HDR_AT(header, 0x202);
	HDR_AT(version, 0x206);
	HDR_AT(type_of_loader, 0x210);
	HDR_AT(loadflags, 0x211);
	HDR_AT(code32_start, 0x214);
	HDR_AT(ramdisk_image, 0x218);
	HDR_AT(ramdisk_size, 0x21c);
	HDR_AT(heap_end_ptr, 0x224);
	HDR_AT(cmd_line_ptr, 0x228);
	HDR_AT(initrd_addr_max, 0x22c);
	HDR_AT(kernel_alignment, 0x230);
	HDR_AT(relocatable_kernel, 0x234);
	HDR_AT(xloadflags, 0x236);
	HDR_AT(cmdline_size, 0x238);
	HDR_AT(hardware_subarch, 0x23c);
	HDR_AT(setup_data, 0x250);
	HDR_AT(pref_address, 0x258);
	HDR_AT(init_size, 0x260);
	HDR_AT(handover_offset, 0x264);
	HDR_AT(kernel_info_offset, 0x268);
	assert_int_equal(0x1f1 + sizeof(struct setup_header), 0x26c);
}

static void test_e820_below_gap_is_base_ram_reserved_hole_and_high_ram(void **state)
{
	struct gmem mem = layout_of(64 * MiB);
	struct e820_entry table[8];
	(void)state;

	assert_int_equal(e820_build(&mem, table, 8), 3);
	assert_entry(&table[0], 0, LAYOUT_MPTABLE, E820_RAM);
	assert_entry(&table[1], LAYOUT_MPTABLE, LAYOUT_EBDA_END - LAYOUT_MPTABLE, E820_RESERVED);
	assert_entry(&table[2], 1 * MiB, 63 * MiB, E820_RAM);
}

static void test_e820_above_gap_has_two_high_ram_regions(void **state)
{
	struct gmem mem = layout_of(8 * GiB);
	struct e820_entry table[8];
	(void)state;

	assert_int_equal(e820_build(&mem, table, 8), 4);
	assert_entry(&table[0], 0, LAYOUT_MPTABLE, E820_RAM);
	assert_entry(&table[1], LAYOUT_MPTABLE, LAYOUT_EBDA_END - LAYOUT_MPTABLE, E820_RESERVED);
	assert_entry(&table[2], 1 * MiB, GMEM_GAP_START - 1 * MiB, E820_RAM);
	assert_entry(&table[3], GMEM_GAP_END, 8 * GiB - GMEM_GAP_START, E820_RAM);
}

static void test_e820_exactly_gap_start_has_no_high_region(void **state)
{
	struct gmem mem = layout_of(GMEM_GAP_START);
	struct e820_entry table[8];
	(void)state;

	assert_int_equal(e820_build(&mem, table, 8), 3);
	assert_int_equal(table[2].addr + table[2].size, GMEM_GAP_START);
}

static void test_e820_is_sorted_disjoint_and_covers_all_ram_but_the_hole(void **state)
{
	static const uint64_t sizes[] = {1 * MiB + 0x1000, 2 * MiB, 64 * MiB, 3 * GiB,
					 3 * GiB + 0x1000, 4 * GiB, 8 * GiB,  1024 * GiB};
	(void)state;

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct gmem mem = layout_of(sizes[s]);
		struct e820_entry table[8];
		uint64_t ram = 0;
		int count = e820_build(&mem, table, 8);

		assert_in_range(count, 3, 4);
		for (int i = 0; i < count; i++) {
			assert_true(table[i].size > 0);
			if (i > 0)
				assert_true(table[i].addr >= table[i - 1].addr + table[i - 1].size);
			/* Nothing may be advertised inside the MMIO/IOAPIC/LAPIC gap. */
			assert_false(table[i].addr < GMEM_GAP_END &&
				     table[i].addr + table[i].size > GMEM_GAP_START);
			if (table[i].type == E820_RAM)
				ram += table[i].size;
			else
				assert_int_equal(table[i].type, E820_RESERVED);
		}
		assert_int_equal(ram, sizes[s] - (LAYOUT_EBDA_END - LAYOUT_MPTABLE));
	}
}

static void test_e820_rejects_memory_not_above_1mib(void **state)
{
	struct e820_entry table[8];
	struct gmem mem;
	(void)state;

	mem = layout_of(1 * MiB);
	assert_int_equal(e820_build(&mem, table, 8), -EINVAL);
	mem = layout_of(0x1000);
	assert_int_equal(e820_build(&mem, table, 8), -EINVAL);
	memset(&mem, 0, sizeof(mem));
	assert_int_equal(e820_build(&mem, table, 8), -EINVAL);
}

static void test_e820_rejects_first_region_not_at_zero(void **state)
{
	struct e820_entry table[8];
	struct gmem mem = {.nr_regions = 1, .total_size = 64 * MiB};
	(void)state;

	mem.regions[0] = (struct gmem_region){.gpa = 0x1000, .size = 64 * MiB};
	assert_int_equal(e820_build(&mem, table, 8), -EINVAL);
}

static void test_e820_too_small_table_is_e2big_and_not_overrun(void **state)
{
	struct e820_entry table[8];
	struct e820_entry guard;
	struct gmem small = layout_of(64 * MiB);
	struct gmem big = layout_of(8 * GiB);
	(void)state;

	memset(table, 0xcc, sizeof(table));
	memcpy(&guard, &table[2], sizeof(guard));
	assert_int_equal(e820_build(&small, table, 2), -E2BIG);
	assert_memory_equal(&table[2], &guard, sizeof(guard));

	memset(table, 0xcc, sizeof(table));
	assert_int_equal(e820_build(&big, table, 3), -E2BIG);
	assert_memory_equal(&table[3], &guard, sizeof(guard));

	assert_int_equal(e820_build(&small, table, 0), -E2BIG);
	assert_int_equal(e820_build(&small, table, 3), 3);
	assert_int_equal(e820_build(&big, table, 4), 4);
}

static struct setup_header bzimage_header(void)
{
	struct setup_header h;
	memset(&h, 0, sizeof(h));
	h.setup_sects = 0x1d;
	h.root_flags = 1;
	h.syssize = 0x7b4a1;
	h.vid_mode = 0xfffd;
	h.boot_flag = SETUP_BOOT_FLAG;
	h.jump = 0x66eb;
	h.header = SETUP_HEADER_MAGIC;
	h.version = 0x020f;
	h.kernel_version = 0x3a40;
	h.type_of_loader = 0;
	h.loadflags = LOADFLAG_LOADED_HIGH | 0x20; /* QUIET_FLAG, to see it is kept */
	h.code32_start = 0x100000;
	h.initrd_addr_max = 0x7fffffff;
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.min_alignment = 0x15;
	h.xloadflags = 0x7f;
	h.cmdline_size = 0x7ff;
	h.payload_offset = 0x3a2;
	h.payload_length = 0x7a3f21;
	h.pref_address = 0x1000000;
	h.init_size = 0x2be0000;
	h.handover_offset = 0x190;
	h.kernel_info_offset = 0x7a4000;
	return h;
}

static void test_setup_header_cmdline_max_defaults_to_255_and_caps_at_2047(void **state)
{
	static const struct {
		uint32_t cmdline_size;
		uint32_t max;
	} cases[] = {
	    {0, 255},	    {1, 1},	    {255, 255},	       {256, 256},	    {0x7fe, 0x7fe},
	    {0x7ff, 0x7ff}, {0x800, 0x7ff}, {0x100000, 0x7ff}, {UINT32_MAX, 0x7ff},
	};
	struct setup_header h;
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&h, 0, sizeof(h));
		h.cmdline_size = cases[i].cmdline_size;
		assert_int_equal(setup_header_cmdline_max(&h), cases[i].max);
	}
	assert_int_equal(LAYOUT_CMDLINE_MAX - 1, 0x7ff);
}

static void test_zero_page_for_vmlinux_synthesizes_a_setup_header(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct zero_page_config cfg = {
	    .image_header = NULL, .cmdline_gpa = LAYOUT_CMDLINE, .cmdline_size = 12};
	struct setup_header expect;
	(void)state;

	assert_non_null(p);
	memset(p, 0xff, sizeof(*p));
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.boot_flag, 0xaa55);
	assert_int_equal(p->hdr.header, 0x53726448);
	assert_true(p->hdr.version >= 0x020c);
	assert_int_equal(p->hdr.kernel_alignment, 0x1000000);
	assert_int_equal(p->hdr.initrd_addr_max, 0x7fffffff);
	assert_int_equal(p->hdr.cmdline_size, LAYOUT_CMDLINE_MAX - 1);
	assert_int_equal(p->hdr.type_of_loader, 0xff);
	assert_int_equal(p->hdr.loadflags & (LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP),
			 LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP);
	assert_int_equal(p->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_int_equal(p->hdr.vid_mode, 0xffff);
	assert_int_equal(p->hdr.ramdisk_image, 0);
	assert_int_equal(p->hdr.ramdisk_size, 0);
	/* Every header field not named above must be zero, not left over from before. */
	memset(&expect, 0, sizeof(expect));
	expect.boot_flag = 0xaa55;
	expect.header = 0x53726448;
	expect.version = p->hdr.version;
	expect.kernel_alignment = 0x1000000;
	expect.initrd_addr_max = 0x7fffffff;
	expect.cmdline_size = LAYOUT_CMDLINE_MAX - 1;
	expect.type_of_loader = 0xff;
	expect.loadflags = LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP;
	expect.heap_end_ptr = 0xfe00;
	expect.cmd_line_ptr = LAYOUT_CMDLINE;
	expect.vid_mode = 0xffff;
	assert_memory_equal(&p->hdr, &expect, sizeof(expect));
	free(p);
}

static void test_zero_page_for_bzimage_copies_the_image_header(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct setup_header image = bzimage_header();
	struct setup_header image_copy = image;
	struct setup_header expect = image;
	struct zero_page_config cfg = {
	    .image_header = &image, .cmdline_gpa = LAYOUT_CMDLINE, .cmdline_size = 100};
	(void)state;

	assert_non_null(p);
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	/* Exactly the loader-owned fields differ from the image's header. */
	expect.type_of_loader = 0xff;
	expect.loadflags = LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP | 0x20;
	expect.heap_end_ptr = 0xfe00;
	expect.cmd_line_ptr = LAYOUT_CMDLINE;
	expect.vid_mode = 0xffff;
	assert_memory_equal(&p->hdr, &expect, sizeof(expect));
	assert_memory_equal(&image, &image_copy, sizeof(image));
	free(p);
}

static void test_zero_page_clears_everything_outside_header_and_e820(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE, .cmdline_size = 1};
	const uint8_t *bytes = (const uint8_t *)p;
	size_t e820_start = offsetof(struct boot_params, e820_table);
	size_t e820_end = e820_start + 3 * sizeof(struct e820_entry);
	(void)state;

	assert_non_null(p);
	memset(p, 0xff, sizeof(*p));
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	/* A non-zero sentinel makes Linux wipe parts of the header we filled in. */
	assert_int_equal(p->sentinel, 0);
	assert_int_equal(p->e820_entries, 3);
	for (size_t i = 0; i < sizeof(*p); i++) {
		if (i == offsetof(struct boot_params, e820_entries))
			continue;
		if (i >= 0x1f1 && i < 0x26c)
			continue;
		if (i >= e820_start && i < e820_end)
			continue;
		if (bytes[i] != 0)
			fail_msg("zero page byte 0x%zx is 0x%02x, expected 0", i, bytes[i]);
	}
	free(p);
}

static void test_zero_page_e820_matches_e820_build(void **state)
{
	static const uint64_t sizes[] = {2 * MiB, 512 * MiB, 3 * GiB, 6 * GiB};
	struct boot_params *p = malloc(sizeof(*p));
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE, .cmdline_size = 1};
	(void)state;

	assert_non_null(p);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct gmem mem = layout_of(sizes[s]);
		struct e820_entry table[8];
		int count = e820_build(&mem, table, 8);

		assert_true(count > 0);
		assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
		assert_int_equal(p->e820_entries, count);
		assert_memory_equal(p->e820_table, table, count * sizeof(table[0]));
	}
	free(p);
}

static void test_zero_page_above_gap_lists_ram_above_4gib(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(5 * GiB);
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE, .cmdline_size = 1};
	(void)state;

	assert_non_null(p);
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->e820_entries, 4);
	assert_entry(&p->e820_table[2], 1 * MiB, GMEM_GAP_START - 1 * MiB, E820_RAM);
	assert_entry(&p->e820_table[3], GMEM_GAP_END, 2 * GiB, E820_RAM);
	free(p);
}

static void test_zero_page_sets_initrd_fields(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE,
				       .cmdline_size = 1,
				       .initrd_gpa = 0xf000000,
				       .initrd_size = 0xabc123};
	(void)state;

	assert_non_null(p);
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.ramdisk_image, 0xf000000);
	assert_int_equal(p->hdr.ramdisk_size, 0xabc123);
	assert_int_equal(p->ext_ramdisk_image, 0);
	assert_int_equal(p->ext_ramdisk_size, 0);
	free(p);
}

static void test_zero_page_without_initrd_leaves_ramdisk_fields_zero(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct setup_header image = bzimage_header();
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE,
				       .cmdline_size = 1,
				       .initrd_gpa = 0xf000000,
				       .initrd_size = 0};
	(void)state;

	assert_non_null(p);
	memset(p, 0xff, sizeof(*p));
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.ramdisk_image, 0);
	assert_int_equal(p->hdr.ramdisk_size, 0);
	cfg.image_header = &image;
	memset(p, 0xff, sizeof(*p));
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.ramdisk_image, 0);
	assert_int_equal(p->hdr.ramdisk_size, 0);
	free(p);
}

/* A bzImage's own header may carry ramdisk values (stale, or planted): without an initrd
 * the kernel must not be told there is one. */
static void test_zero_page_without_initrd_clears_ramdisk_fields_from_image_header(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct setup_header image = bzimage_header();
	struct zero_page_config cfg = {.image_header = &image,
				       .cmdline_gpa = LAYOUT_CMDLINE,
				       .cmdline_size = 1,
				       .initrd_gpa = 0,
				       .initrd_size = 0};
	(void)state;

	assert_non_null(p);
	image.ramdisk_image = 0x1234000;
	image.ramdisk_size = 0x56789;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.ramdisk_image, 0);
	assert_int_equal(p->hdr.ramdisk_size, 0);

	/* An address without a size is no initrd either. */
	cfg.initrd_gpa = 0xf000000;
	memset(p, 0xff, sizeof(*p));
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.ramdisk_image, 0);
	assert_int_equal(p->hdr.ramdisk_size, 0);

	/* With an initrd, the loader's values replace the image's. */
	cfg.initrd_size = 0x4000;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.ramdisk_image, 0xf000000);
	assert_int_equal(p->hdr.ramdisk_size, 0x4000);
	assert_int_equal(image.ramdisk_image, 0x1234000); /* the image's header is not changed */
	free(p);
}

static void test_zero_page_vmlinux_cmdline_limit_is_2048_with_nul(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE};
	(void)state;

	assert_non_null(p);
	cfg.cmdline_size = LAYOUT_CMDLINE_MAX;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	cfg.cmdline_size = LAYOUT_CMDLINE_MAX + 1;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	cfg.cmdline_size = UINT32_MAX;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	free(p);
}

static void test_zero_page_bzimage_cmdline_limit_comes_from_header(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct setup_header image = bzimage_header();
	struct zero_page_config cfg = {.image_header = &image, .cmdline_gpa = LAYOUT_CMDLINE};
	(void)state;

	assert_non_null(p);
	image.cmdline_size = 255;
	cfg.cmdline_size = 256;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	cfg.cmdline_size = 257;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	/* cmdline_size + 1 must not wrap to 0 and turn every command line away. */
	image.cmdline_size = UINT32_MAX;
	cfg.cmdline_size = 2;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	free(p);
}

/* Boot protocols before 2.06 have no cmdline_size field: 0 there means 255 bytes. */
static void test_zero_page_header_without_cmdline_size_accepts_up_to_255_bytes(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct setup_header image = bzimage_header();
	struct zero_page_config cfg = {.image_header = &image, .cmdline_gpa = LAYOUT_CMDLINE};
	(void)state;

	assert_non_null(p);
	image.cmdline_size = 0;
	cfg.cmdline_size = 11; /* 10 characters and the NUL */
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	assert_int_equal(p->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	cfg.cmdline_size = 256;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	cfg.cmdline_size = 257;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	free(p);
}

/* A header may claim any cmdline_size, but wisp reserves LAYOUT_CMDLINE_MAX bytes for the
 * command line: a longer one would run over whatever follows the buffer. */
static void test_zero_page_huge_header_cmdline_size_is_capped_at_2048_with_nul(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(256 * MiB);
	struct setup_header image = bzimage_header();
	struct zero_page_config cfg = {.image_header = &image, .cmdline_gpa = LAYOUT_CMDLINE};
	(void)state;

	assert_non_null(p);
	image.cmdline_size = 0x100000;
	cfg.cmdline_size = 4096;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	cfg.cmdline_size = 4097;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	cfg.cmdline_size = LAYOUT_CMDLINE_MAX + 1;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	cfg.cmdline_size = LAYOUT_CMDLINE_MAX; /* 2047 characters and the NUL */
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	image.cmdline_size = UINT32_MAX;
	cfg.cmdline_size = LAYOUT_CMDLINE_MAX + 1;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -E2BIG);
	free(p);
}

static void test_zero_page_rejects_addresses_and_sizes_above_4gib(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(8 * GiB);
	struct zero_page_config base = {.cmdline_gpa = LAYOUT_CMDLINE,
					.cmdline_size = 1,
					.initrd_gpa = 0x10000000,
					.initrd_size = 0x1000};
	struct zero_page_config cfg;
	(void)state;

	assert_non_null(p);
	cfg = base;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	cfg = base;
	cfg.cmdline_gpa = 1ULL << 32;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -ERANGE);
	cfg = base;
	cfg.initrd_gpa = 1ULL << 32;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -ERANGE);
	cfg = base;
	cfg.initrd_size = 1ULL << 32;
	assert_int_equal(zero_page_build(p, &mem, &cfg), -ERANGE);
	cfg = base;
	cfg.cmdline_gpa = UINT32_MAX;
	assert_int_equal(zero_page_build(p, &mem, &cfg), 0);
	free(p);
}

static void test_zero_page_fails_when_memory_has_no_room_for_e820(void **state)
{
	struct boot_params *p = malloc(sizeof(*p));
	struct gmem mem = layout_of(1 * MiB);
	struct zero_page_config cfg = {.cmdline_gpa = LAYOUT_CMDLINE, .cmdline_size = 1};
	(void)state;

	assert_non_null(p);
	assert_int_equal(zero_page_build(p, &mem, &cfg), -EINVAL);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_boot_params_matches_linux_layout),
	    cmocka_unit_test(test_setup_header_fields_are_at_boot_protocol_offsets),
	    cmocka_unit_test(test_e820_below_gap_is_base_ram_reserved_hole_and_high_ram),
	    cmocka_unit_test(test_e820_above_gap_has_two_high_ram_regions),
	    cmocka_unit_test(test_e820_exactly_gap_start_has_no_high_region),
	    cmocka_unit_test(test_e820_is_sorted_disjoint_and_covers_all_ram_but_the_hole),
	    cmocka_unit_test(test_e820_rejects_memory_not_above_1mib),
	    cmocka_unit_test(test_e820_rejects_first_region_not_at_zero),
	    cmocka_unit_test(test_e820_too_small_table_is_e2big_and_not_overrun),
	    cmocka_unit_test(test_setup_header_cmdline_max_defaults_to_255_and_caps_at_2047),
	    cmocka_unit_test(test_zero_page_for_vmlinux_synthesizes_a_setup_header),
	    cmocka_unit_test(test_zero_page_for_bzimage_copies_the_image_header),
	    cmocka_unit_test(test_zero_page_clears_everything_outside_header_and_e820),
	    cmocka_unit_test(test_zero_page_e820_matches_e820_build),
	    cmocka_unit_test(test_zero_page_above_gap_lists_ram_above_4gib),
	    cmocka_unit_test(test_zero_page_sets_initrd_fields),
	    cmocka_unit_test(test_zero_page_without_initrd_leaves_ramdisk_fields_zero),
	    cmocka_unit_test(test_zero_page_without_initrd_clears_ramdisk_fields_from_image_header),
	    cmocka_unit_test(test_zero_page_vmlinux_cmdline_limit_is_2048_with_nul),
	    cmocka_unit_test(test_zero_page_bzimage_cmdline_limit_comes_from_header),
	    cmocka_unit_test(test_zero_page_header_without_cmdline_size_accepts_up_to_255_bytes),
	    cmocka_unit_test(test_zero_page_huge_header_cmdline_size_is_capped_at_2048_with_nul),
	    cmocka_unit_test(test_zero_page_rejects_addresses_and_sizes_above_4gib),
	    cmocka_unit_test(test_zero_page_fails_when_memory_has_no_room_for_e820),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
