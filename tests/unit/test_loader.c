/* Unit tests for kernel image parsing and loading (arch/x86_64/loader.c). Every image is
 * crafted in memory; the hostile ones change one thing in an image that parses. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/loader.h"
#include "memory.h"
#include "test_support.h"

#define MiB (1ULL << 20)

/* ---- ELF images ---- */

#define ELF_MAX_PHDRS 20
#define ELF_TEXT_SIZE 0x800
#define ELF_LOAD_GPA  0x1000000ULL
#define ELF_LOAD_MEM  0x2000ULL
#define ELF_ENTRY64   0x1000400ULL
#define PVH_ENTRY     0x1000123ULL

struct test_elf {
	Elf64_Ehdr ehdr;
	Elf64_Phdr phdr[ELF_MAX_PHDRS];
	uint8_t notes[256];
	uint8_t text[ELF_TEXT_SIZE];
};

#define NOTES_OFFSET offsetof(struct test_elf, notes)
#define TEXT_OFFSET  offsetof(struct test_elf, text)

static size_t note_put(uint8_t *out, const char *name, uint32_t type, const void *desc,
		       uint32_t descsz)
{
	Elf64_Nhdr nhdr = {
	    .n_namesz = (Elf64_Word)strlen(name) + 1, .n_descsz = descsz, .n_type = type};
	size_t name_len = (nhdr.n_namesz + 3) & ~3u;
	size_t desc_len = (descsz + 3) & ~3u;

	memcpy(out, &nhdr, sizeof(nhdr));
	memset(out + sizeof(nhdr), 0, name_len + desc_len);
	memcpy(out + sizeof(nhdr), name, nhdr.n_namesz);
	memcpy(out + sizeof(nhdr) + name_len, desc, descsz);
	return sizeof(nhdr) + name_len + desc_len;
}

/* Puts a GNU build-id note and then a Xen PHYS32_ENTRY note with a desc of `entry_size`
 * bytes into the notes area; returns the notes' total size. */
static size_t notes_put(struct test_elf *e, unsigned int entry_size, uint64_t entry)
{
	static const uint8_t build_id[20] = {0xde, 0xad, 0xbe, 0xef};
	uint32_t entry32 = (uint32_t)entry;
	size_t len = 0;

	memset(e->notes, 0, sizeof(e->notes));
	len += note_put(e->notes + len, "GNU", NT_GNU_BUILD_ID, build_id, sizeof(build_id));
	/* A Xen note of another type must not be taken for the entry point. */
	len += note_put(e->notes + len, "Xen", 1, &entry32, sizeof(entry32));
	if (entry_size == 8)
		len += note_put(e->notes + len, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry, 8);
	else if (entry_size == 4)
		len += note_put(e->notes + len, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &entry32, 4);
	return len;
}

/* A vmlinux-like executable: one PT_LOAD with a bss and one PT_NOTE with a PVH entry. */
static void elf_init(struct test_elf *e)
{
	memset(e, 0, sizeof(*e));
	elf_exec_header(&e->ehdr, ELF_ENTRY64, offsetof(struct test_elf, phdr), 2);
	fill_pattern(e->text, ELF_TEXT_SIZE, 1, 7);
	e->phdr[0] = (Elf64_Phdr){.p_type = PT_LOAD,
				  .p_flags = PF_R | PF_X,
				  .p_offset = TEXT_OFFSET,
				  .p_vaddr = 0xffffffff81000000ULL,
				  .p_paddr = ELF_LOAD_GPA,
				  .p_filesz = ELF_TEXT_SIZE,
				  .p_memsz = ELF_LOAD_MEM,
				  .p_align = 0x1000};
	e->phdr[1] = (Elf64_Phdr){.p_type = PT_NOTE,
				  .p_flags = PF_R,
				  .p_offset = NOTES_OFFSET,
				  .p_filesz = notes_put(e, 8, PVH_ENTRY),
				  .p_align = 4};
}

static const uint8_t *bytes_of(const struct test_elf *e)
{
	return (const uint8_t *)e;
}

/* A heap copy of exactly `size` bytes, so that ASan catches a parser reading past the end. */
static uint8_t *exact_copy(const uint8_t *image, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	assert_non_null(copy);
	memcpy(copy, image, size);
	return copy;
}

static void assert_parse_fails(int (*parse)(const uint8_t *, size_t, struct kernel_info *,
					    const char **),
			       const uint8_t *image, size_t size)
{
	struct kernel_info info;
	const char *why = NULL;
	uint8_t *copy = exact_copy(image, size);

	assert_int_equal(parse(copy, size, &info, &why), -ENOEXEC);
	assert_non_null(why);
	assert_true(why[0] != '\0');
	free(copy);
}

/* Both the ELF parser and the format dispatcher must turn the image down. */
static void assert_elf_rejected(const struct test_elf *e, size_t size)
{
	assert_parse_fails(elf_parse, bytes_of(e), size);
	assert_parse_fails(kernel_parse, bytes_of(e), size);
}

static void test_elf_valid_image_parses_segment_and_8_byte_pvh_entry(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(info.format, KERNEL_FORMAT_ELF);
	assert_int_equal(info.nr_segments, 1);
	assert_int_equal(info.segments[0].file_offset, TEXT_OFFSET);
	assert_int_equal(info.segments[0].file_size, ELF_TEXT_SIZE);
	assert_int_equal(info.segments[0].gpa, ELF_LOAD_GPA);
	assert_int_equal(info.segments[0].mem_size, ELF_LOAD_MEM);
	assert_int_equal(info.entry64, ELF_ENTRY64);
	assert_int_equal(info.end, ELF_LOAD_GPA + ELF_LOAD_MEM);
	assert_true(info.has_pvh_entry);
	assert_int_equal(info.pvh_entry, PVH_ENTRY);
	assert_int_equal(info.initrd_max, 0x7fffffff);
	assert_int_equal(info.cmdline_max, LAYOUT_CMDLINE_MAX - 1);
}

static void test_elf_4_byte_pvh_entry_note_is_accepted(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	e.phdr[1].p_filesz = notes_put(&e, 4, 0x1234560);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_true(info.has_pvh_entry);
	assert_int_equal(info.pvh_entry, 0x1234560);
}

static void test_elf_without_pvh_note_has_no_pvh_entry(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	e.phdr[1].p_filesz = notes_put(&e, 0, 0);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_false(info.has_pvh_entry);
	assert_int_equal(info.pvh_entry, 0);
}

static void test_elf_pvh_note_needs_the_xen_name(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	uint64_t entry = PVH_ENTRY;
	(void)state;

	elf_init(&e);
	e.phdr[1].p_filesz = note_put(e.notes, "Xem", XEN_ELFNOTE_PHYS32_ENTRY, &entry, 8);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_false(info.has_pvh_entry);
	e.phdr[1].p_filesz = note_put(e.notes, "XenX", XEN_ELFNOTE_PHYS32_ENTRY, &entry, 8);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_false(info.has_pvh_entry);
}

static void test_elf_pvh_note_name_must_be_exactly_xen(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	uint64_t entry = PVH_ENTRY;
	Elf64_Nhdr nhdr = {.n_namesz = 8, .n_descsz = 8, .n_type = XEN_ELFNOTE_PHYS32_ENTRY};
	(void)state;

	/* "Xen" followed by NULs, but with a name size of 8: a different name. */
	elf_init(&e);
	memset(e.notes, 0, sizeof(e.notes));
	memcpy(e.notes, &nhdr, sizeof(nhdr));
	memcpy(e.notes + sizeof(nhdr), "Xen", 4);
	memcpy(e.notes + sizeof(nhdr) + 8, &entry, 8);
	e.phdr[1].p_filesz = sizeof(nhdr) + 16;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_false(info.has_pvh_entry);

	/* Name size 2 whose padding happens to spell the rest of "Xen\0". */
	nhdr.n_namesz = 2;
	memcpy(e.notes, &nhdr, sizeof(nhdr));
	memcpy(e.notes + sizeof(nhdr), "Xen", 4);
	memcpy(e.notes + sizeof(nhdr) + 4, &entry, 8);
	e.phdr[1].p_filesz = sizeof(nhdr) + 12;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_false(info.has_pvh_entry);
}

static void test_elf_is_dispatched_by_kernel_parse(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	assert_int_equal(kernel_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(info.format, KERNEL_FORMAT_ELF);
	assert_int_equal(info.pvh_entry, PVH_ENTRY);
}

static void test_elf_end_is_the_highest_segment_end(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	e.phdr[2] = e.phdr[0];
	e.phdr[0].p_paddr = 0x3000000;
	e.phdr[0].p_memsz = 0x5000;
	e.ehdr.e_phnum = 3;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(info.nr_segments, 2);
	assert_int_equal(info.segments[0].gpa, 0x3000000);
	assert_int_equal(info.segments[1].gpa, ELF_LOAD_GPA);
	assert_int_equal(info.end, 0x3005000);
}

static void test_elf_ignores_non_load_and_empty_load_segments(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	e.phdr[2] = (Elf64_Phdr){.p_type = PT_GNU_STACK, .p_flags = PF_R | PF_W};
	e.phdr[3] = e.phdr[0];
	e.phdr[3].p_memsz = 0;
	e.phdr[3].p_filesz = 0;
	e.phdr[3].p_paddr = 0x7000000;
	e.phdr[4] = e.phdr[0];
	e.phdr[4].p_type = PT_DYNAMIC;
	e.phdr[4].p_paddr = 0x8000000;
	e.ehdr.e_phnum = 5;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(info.nr_segments, 1);
	assert_int_equal(info.end, ELF_LOAD_GPA + ELF_LOAD_MEM);
}

static void fill_loads(struct test_elf *e, unsigned int count)
{
	for (unsigned int i = 0; i < count; i++) {
		e->phdr[i] = (Elf64_Phdr){.p_type = PT_LOAD,
					  .p_offset = TEXT_OFFSET,
					  .p_paddr = ELF_LOAD_GPA + i * 0x10000ULL,
					  .p_filesz = 0x100,
					  .p_memsz = 0x1000};
	}
	e->ehdr.e_phnum = (Elf64_Half)count;
}

static void test_elf_accepts_exactly_16_loadable_segments(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	elf_init(&e);
	fill_loads(&e, KERNEL_MAX_SEGMENTS);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(info.nr_segments, KERNEL_MAX_SEGMENTS);
	assert_int_equal(info.segments[15].gpa, ELF_LOAD_GPA + 15 * 0x10000ULL);
}

static void test_elf_rejects_17_loadable_segments(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	fill_loads(&e, KERNEL_MAX_SEGMENTS + 1);
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_truncated_header(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	for (size_t size = 0; size < sizeof(Elf64_Ehdr); size++)
		assert_parse_fails(elf_parse, bytes_of(&e), size);
	assert_parse_fails(kernel_parse, bytes_of(&e), sizeof(Elf64_Ehdr) - 1);
	assert_parse_fails(kernel_parse, bytes_of(&e), SELFMAG);
}

static void test_elf_rejects_wrong_magic_class_data_machine_and_type(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.ehdr.e_ident[EI_MAG3] = 'X';
	assert_parse_fails(elf_parse, bytes_of(&e), sizeof(e));

	elf_init(&e);
	e.ehdr.e_ident[EI_CLASS] = ELFCLASS32;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_ident[EI_DATA] = ELFDATA2MSB;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_machine = EM_386;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_machine = EM_AARCH64;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_type = ET_DYN;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_type = ET_REL;
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_bad_program_header_entry_size_or_count(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.ehdr.e_phnum = 0;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phentsize = sizeof(Elf64_Phdr) - 1;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phentsize = sizeof(Elf32_Phdr);
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_program_headers_outside_the_file(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.ehdr.e_phoff = sizeof(e);
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phoff = sizeof(e) - sizeof(Elf64_Phdr);
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phoff = UINT64_MAX - 8;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phoff = (uint64_t)1 << 63;
	assert_elf_rejected(&e, sizeof(e));

	/* The file ends inside the second program header. */
	elf_init(&e);
	assert_elf_rejected(&e, offsetof(struct test_elf, phdr) + sizeof(Elf64_Phdr) + 10);
}

static void test_elf_rejects_phnum_times_phentsize_beyond_the_file(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.ehdr.e_phnum = 0xffff;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phnum = PN_XNUM;
	e.ehdr.e_phoff = sizeof(Elf64_Ehdr);
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_segment_data_beyond_the_file(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.phdr[0].p_offset = sizeof(e) - 0x10;
	e.phdr[0].p_filesz = 0x20;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.phdr[0].p_offset = sizeof(e) + 1;
	e.phdr[0].p_filesz = 0;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.phdr[0].p_offset = UINT64_MAX - 0xf;
	e.phdr[0].p_filesz = 0x20;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.phdr[0].p_filesz = UINT64_MAX;
	e.phdr[0].p_memsz = UINT64_MAX;
	assert_elf_rejected(&e, sizeof(e));

	/* The image is cut one byte short of the segment's data. */
	elf_init(&e);
	assert_elf_rejected(&e, sizeof(e) - 1);
}

static void test_elf_rejects_note_segment_beyond_the_file(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.phdr[1].p_filesz = sizeof(e);
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.phdr[1].p_offset = UINT64_MAX - 4;
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_file_size_above_memory_size(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.phdr[0].p_memsz = ELF_TEXT_SIZE - 1;
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_segment_wrapping_the_address_space(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.phdr[0].p_paddr = UINT64_MAX - 0xfff;
	assert_elf_rejected(&e, sizeof(e));

	/* Ends exactly at 2^64, i.e. wraps to 0. */
	elf_init(&e);
	e.phdr[0].p_paddr = 0 - ELF_LOAD_MEM;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.phdr[0].p_memsz = UINT64_MAX;
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_note_name_running_past_segment(void **state)
{
	static const uint32_t namesz[] = {200, 0x1000, UINT32_MAX - 2, UINT32_MAX};
	struct test_elf e;
	(void)state;

	for (size_t i = 0; i < sizeof(namesz) / sizeof(namesz[0]); i++) {
		Elf64_Nhdr nhdr;
		elf_init(&e);
		memcpy(&nhdr, e.notes, sizeof(nhdr));
		nhdr.n_namesz = namesz[i];
		memcpy(e.notes, &nhdr, sizeof(nhdr));
		assert_elf_rejected(&e, sizeof(e));
	}
}

static void test_elf_rejects_note_desc_running_past_segment(void **state)
{
	/* UINT32_MAX - 2 and UINT32_MAX round up to 2^32: wrong if rounded in 32 bits. */
	static const uint32_t descsz[] = {200, 0x10000, UINT32_MAX - 2, UINT32_MAX - 1, UINT32_MAX};
	struct test_elf e;
	(void)state;

	for (size_t i = 0; i < sizeof(descsz) / sizeof(descsz[0]); i++) {
		Elf64_Nhdr nhdr;
		elf_init(&e);
		memcpy(&nhdr, e.notes, sizeof(nhdr));
		nhdr.n_descsz = descsz[i];
		memcpy(e.notes, &nhdr, sizeof(nhdr));
		assert_elf_rejected(&e, sizeof(e));
	}
}

/* A lone note whose padded size rounds up to 2^32: only 64-bit rounding sees it is too long. */
static void test_elf_rejects_last_note_with_size_rounding_up_to_4gib(void **state)
{
	static const uint32_t sizes[] = {UINT32_MAX - 2, UINT32_MAX - 1, UINT32_MAX};
	struct test_elf e;
	Elf64_Nhdr nhdr;
	(void)state;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		elf_init(&e);
		nhdr = (Elf64_Nhdr){.n_namesz = 4, .n_descsz = sizes[i], .n_type = 1};
		memcpy(e.notes, &nhdr, sizeof(nhdr));
		memcpy(e.notes + sizeof(nhdr), "GNU", 4);
		e.phdr[1].p_filesz = sizeof(nhdr) + 4;
		assert_elf_rejected(&e, sizeof(e));

		elf_init(&e);
		nhdr = (Elf64_Nhdr){.n_namesz = sizes[i], .n_descsz = 0, .n_type = 1};
		memcpy(e.notes, &nhdr, sizeof(nhdr));
		e.phdr[1].p_filesz = sizeof(nhdr);
		assert_elf_rejected(&e, sizeof(e));
	}
}

static void test_elf_rejects_note_cut_by_segment_end(void **state)
{
	struct test_elf e;
	(void)state;

	/* The segment ends in the middle of the PVH note's 8-byte descriptor. */
	elf_init(&e);
	e.phdr[1].p_filesz -= 4;
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_pvh_note_with_bad_desc_size(void **state)
{
	static const uint32_t sizes[] = {0, 1, 2, 3, 5, 6, 7, 12, 16};
	struct test_elf e;
	uint8_t desc[16] = {0x23, 0x01, 0x00, 0x01};
	(void)state;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		elf_init(&e);
		e.phdr[1].p_filesz =
		    note_put(e.notes, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, desc, sizes[i]);
		assert_elf_rejected(&e, sizeof(e));
	}
}

static void test_elf_rejects_pvh_entry_above_4gib(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.phdr[1].p_filesz = notes_put(&e, 8, 1ULL << 32);
	assert_elf_rejected(&e, sizeof(e));
}

static void test_elf_rejects_image_without_loadable_segment(void **state)
{
	struct test_elf e;
	(void)state;

	elf_init(&e);
	e.phdr[0].p_type = PT_NULL;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.phdr[0].p_memsz = 0;
	e.phdr[0].p_filesz = 0;
	assert_elf_rejected(&e, sizeof(e));

	elf_init(&e);
	e.ehdr.e_phnum = 1;
	e.phdr[0] = e.phdr[1];
	assert_elf_rejected(&e, sizeof(e));
}

/* ---- bzImages ---- */

#define BZ_SIZE	       0x3000
#define BZ_SETUP_SECTS 3
#define BZ_SETUP_SIZE  ((BZ_SETUP_SECTS + 1) * 512)

static uint8_t bz[BZ_SIZE];

static void bz_put(const struct setup_header *h)
{
	memcpy(bz + 0x1f1, h, sizeof(*h));
}

static struct setup_header bz_header(void)
{
	struct setup_header h;
	memcpy(&h, bz + 0x1f1, sizeof(h));
	return h;
}

static void bz_init(void)
{
	struct setup_header h;

	fill_pattern(bz, BZ_SIZE, 5, 13);
	bz[0] = 'M';
	bz[1] = 'Z';
	memset(&h, 0, sizeof(h));
	h.setup_sects = BZ_SETUP_SECTS;
	h.syssize = (BZ_SIZE - BZ_SETUP_SIZE) / 16;
	h.boot_flag = SETUP_BOOT_FLAG;
	h.jump = 0x66eb;
	h.header = SETUP_HEADER_MAGIC;
	h.version = 0x020c;
	h.loadflags = LOADFLAG_LOADED_HIGH;
	h.initrd_addr_max = 0x7fffffff;
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.xloadflags = XLF_KERNEL_64;
	h.cmdline_size = 0x7ff;
	h.pref_address = 0x1000000;
	h.init_size = 0x800000;
	bz_put(&h);
}

static void assert_bz_rejected(size_t size)
{
	assert_parse_fails(bzimage_parse, bz, size);
	assert_parse_fails(kernel_parse, bz, size);
}

static void test_bzimage_valid_image_parses_payload_segment(void **state)
{
	struct kernel_info info;
	const char *why = NULL;
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(info.format, KERNEL_FORMAT_BZIMAGE);
	assert_int_equal(info.nr_segments, 1);
	assert_int_equal(info.segments[0].file_offset, BZ_SETUP_SIZE);
	assert_int_equal(info.segments[0].file_size, BZ_SIZE - BZ_SETUP_SIZE);
	assert_int_equal(info.segments[0].gpa, LAYOUT_BZIMAGE_LOAD);
	assert_int_equal(info.segments[0].mem_size, BZ_SIZE - BZ_SETUP_SIZE);
	/* The boot protocol's 64-bit entry is 0x200 into the protected-mode code. */
	assert_int_equal(info.entry64, LAYOUT_BZIMAGE_LOAD + 0x200);
	assert_false(info.has_pvh_entry);
	assert_int_equal(info.end, 0x1000000 + 0x800000);
	assert_int_equal(info.initrd_max, 0x7fffffff);
	assert_int_equal(info.cmdline_max, 0x7ff);
	assert_memory_equal(&info.header, &h, sizeof(h));
}

static void test_bzimage_is_dispatched_by_kernel_parse(void **state)
{
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	bz_init();
	assert_int_equal(kernel_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(info.format, KERNEL_FORMAT_BZIMAGE);
	assert_int_equal(info.segments[0].file_offset, BZ_SETUP_SIZE);
}

static void test_bzimage_zero_setup_sects_means_four(void **state)
{
	struct kernel_info info;
	const char *why = NULL;
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.setup_sects = 0;
	h.syssize = 0;
	bz_put(&h);
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(info.segments[0].file_offset, 5 * 512);
	assert_int_equal(info.segments[0].file_size, BZ_SIZE - 5 * 512);
}

static void test_bzimage_end_covers_payload_when_init_size_is_small(void **state)
{
	struct kernel_info info;
	const char *why = NULL;
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.pref_address = 0;
	h.init_size = 0;
	bz_put(&h);
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(info.end, LAYOUT_BZIMAGE_LOAD + BZ_SIZE - BZ_SETUP_SIZE);
}

static void test_bzimage_defaults_and_clamps_initrd_and_cmdline_limits(void **state)
{
	struct kernel_info info;
	const char *why = NULL;
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.initrd_addr_max = 0;
	h.cmdline_size = 0;
	bz_put(&h);
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(info.initrd_max, 0x37ffffff);
	assert_int_equal(info.cmdline_max, 255);

	h.cmdline_size = 0x100000;
	bz_put(&h);
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(info.cmdline_max, LAYOUT_CMDLINE_MAX - 1);
}

/* The parser and the zero page builder must agree on the limit, or a command line the
 * parser allowed could be turned away later (or one too long let through). */
static void test_bzimage_cmdline_max_equals_setup_header_cmdline_max(void **state)
{
	/* 0 means 255 (protocols before 2.06); above 2047 wisp's buffer is the limit. */
	static const uint32_t sizes[] = {0, 1, 255, 256, 0x7fe, 0x7ff, 0x800, 0x100000, UINT32_MAX};
	struct kernel_info info;
	struct setup_header h;
	(void)state;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		const char *why = NULL;
		bz_init();
		h = bz_header();
		h.cmdline_size = sizes[i];
		bz_put(&h);
		assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
		assert_int_equal(info.cmdline_max, setup_header_cmdline_max(&h));
		assert_true(info.cmdline_max <= LAYOUT_CMDLINE_MAX - 1);
	}
}

static void test_bzimage_syssize_reaching_exactly_the_end_is_accepted(void **state)
{
	struct kernel_info info;
	const char *why = NULL;
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.syssize = (BZ_SIZE - BZ_SETUP_SIZE) / 16;
	bz_put(&h);
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
}

static void test_bzimage_rejects_truncated_file(void **state)
{
	(void)state;

	bz_init();
	assert_bz_rejected(0x1f1 + sizeof(struct setup_header) - 1);
	assert_bz_rejected(0x206);
	assert_parse_fails(bzimage_parse, bz, 0);
	assert_parse_fails(bzimage_parse, bz, 0x1f1);
	/* The payload is cut below syssize. */
	assert_bz_rejected(BZ_SIZE - 1);
}

static void test_bzimage_rejects_missing_boot_flag_or_magic(void **state)
{
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.boot_flag = 0x55aa;
	bz_put(&h);
	assert_bz_rejected(BZ_SIZE);

	bz_init();
	h = bz_header();
	h.header = 0x53726449;
	bz_put(&h);
	assert_parse_fails(bzimage_parse, bz, BZ_SIZE);
	assert_parse_fails(kernel_parse, bz, BZ_SIZE);
}

static void test_bzimage_rejects_boot_protocol_older_than_2_12(void **state)
{
	static const uint16_t versions[] = {0x0200, 0x0206, 0x020b};
	struct setup_header h;
	(void)state;

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		bz_init();
		h = bz_header();
		h.version = versions[i];
		bz_put(&h);
		assert_bz_rejected(BZ_SIZE);
	}
}

static void test_bzimage_rejects_missing_64_bit_entry_flag(void **state)
{
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.xloadflags = 0x7e;
	bz_put(&h);
	assert_bz_rejected(BZ_SIZE);
}

static void test_bzimage_rejects_zimage_that_loads_low(void **state)
{
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.loadflags = 0x80;
	bz_put(&h);
	assert_bz_rejected(BZ_SIZE);
}

static void test_bzimage_rejects_setup_sects_covering_the_whole_file(void **state)
{
	static const uint8_t sects[] = {BZ_SIZE / 512 - 1, BZ_SIZE / 512, 0xff};
	struct setup_header h;
	(void)state;

	for (size_t i = 0; i < sizeof(sects) / sizeof(sects[0]); i++) {
		bz_init();
		h = bz_header();
		h.setup_sects = sects[i];
		h.syssize = 0;
		bz_put(&h);
		assert_bz_rejected(BZ_SIZE);
	}
}

static void test_bzimage_rejects_syssize_beyond_end_of_file(void **state)
{
	static const uint32_t sizes[] = {(BZ_SIZE - BZ_SETUP_SIZE) / 16 + 1, 0x10000000,
					 UINT32_MAX};
	struct setup_header h;
	(void)state;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		bz_init();
		h = bz_header();
		h.syssize = sizes[i];
		bz_put(&h);
		assert_bz_rejected(BZ_SIZE);
	}
}

static void test_bzimage_rejects_pref_address_plus_init_size_overflow(void **state)
{
	struct setup_header h;
	(void)state;

	bz_init();
	h = bz_header();
	h.pref_address = UINT64_MAX - 0xfff;
	h.init_size = 0x2000;
	bz_put(&h);
	assert_bz_rejected(BZ_SIZE);

	h.pref_address = 0 - (uint64_t)UINT32_MAX;
	h.init_size = UINT32_MAX;
	bz_put(&h);
	assert_bz_rejected(BZ_SIZE);
}

/* ---- format dispatch ---- */

static uint64_t rng_state;

static uint8_t rng_byte(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint8_t)(rng_state >> 32);
}

static void test_random_garbage_is_neither_elf_nor_bzimage(void **state)
{
	static uint8_t garbage[0x2000];
	struct kernel_info info;
	(void)state;

	rng_state = 0x9e3779b97f4a7c15ULL;
	for (int round = 0; round < 64; round++) {
		for (size_t i = 0; i < sizeof(garbage); i++)
			garbage[i] = rng_byte();
		/* Keep the garbage from accidentally carrying either format's magic. */
		garbage[0] = 0;
		garbage[0x202] = 0;
		for (size_t size = 0; size <= sizeof(garbage); size += 0x1ff) {
			const char *why = NULL;
			uint8_t *copy = exact_copy(garbage, size);
			assert_int_equal(kernel_parse(copy, size, &info, &why), -ENOEXEC);
			assert_non_null(why);
			assert_non_null(strstr(why, "neither"));
			free(copy);
		}
	}
}

static void test_partial_elf_magic_is_neither(void **state)
{
	static const uint8_t magic[] = {0x7f, 'E', 'L', 'F'};
	struct kernel_info info;
	const char *why = NULL;
	(void)state;

	assert_int_equal(kernel_parse(magic, 3, &info, &why), -ENOEXEC);
	assert_non_null(why);
	assert_non_null(strstr(why, "neither"));
}

static void test_hdrs_magic_in_a_short_file_is_rejected(void **state)
{
	uint8_t image[0x206];
	(void)state;

	memset(image, 0, sizeof(image));
	memcpy(image + 0x202, "HdrS", 4);
	assert_parse_fails(kernel_parse, image, sizeof(image));
	assert_parse_fails(kernel_parse, image, sizeof(image) - 1);
}

/* Whatever a parser accepts must describe segments that lie inside the file, so that
 * kernel_load can copy them without reading past the image. */
static void assert_parse_result_sane(int err, const struct kernel_info *info, const char *why,
				     size_t size)
{
	if (err) {
		assert_int_equal(err, -ENOEXEC);
		assert_non_null(why);
		return;
	}
	assert_in_range(info->nr_segments, 1, KERNEL_MAX_SEGMENTS);
	for (unsigned int i = 0; i < info->nr_segments; i++) {
		const struct kernel_segment *s = &info->segments[i];
		assert_true(s->file_offset <= size);
		assert_true(s->file_size <= size - s->file_offset);
		assert_true(s->file_size <= s->mem_size);
		assert_true(s->gpa + s->mem_size >= s->gpa);
		assert_true(info->end >= s->gpa + s->mem_size);
	}
}

static void test_elf_single_byte_corruptions_never_yield_bad_segments(void **state)
{
	static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
	struct test_elf e;
	struct kernel_info info;
	uint8_t *raw = (uint8_t *)&e;
	/* Past the notes only segment data follows, which the parser never interprets. */
	const size_t interesting = TEXT_OFFSET;
	(void)state;

	elf_init(&e);
	for (size_t pos = 0; pos < interesting; pos++) {
		uint8_t saved = raw[pos];
		for (size_t v = 0; v < sizeof(values); v++) {
			const char *why = NULL;
			raw[pos] = values[v];
			int err = kernel_parse(raw, sizeof(e), &info, &why);
			assert_parse_result_sane(err, &info, why, sizeof(e));
		}
		raw[pos] = saved;
	}
}

static void test_bzimage_single_byte_corruptions_never_yield_bad_segments(void **state)
{
	static const uint8_t values[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
	struct kernel_info info;
	(void)state;

	bz_init();
	for (size_t pos = 0x1f1; pos < 0x26c; pos++) {
		uint8_t saved = bz[pos];
		for (size_t v = 0; v < sizeof(values); v++) {
			const char *why = NULL;
			bz[pos] = values[v];
			int err = kernel_parse(bz, BZ_SIZE, &info, &why);
			assert_parse_result_sane(err, &info, why, BZ_SIZE);
		}
		bz[pos] = saved;
	}
}

static void test_every_truncation_is_rejected_or_stays_in_bounds(void **state)
{
	struct test_elf e;
	struct kernel_info info;
	(void)state;

	elf_init(&e);
	for (size_t size = 0; size <= sizeof(e); size++) {
		const char *why = NULL;
		uint8_t *copy = exact_copy(bytes_of(&e), size);
		int err = kernel_parse(copy, size, &info, &why);
		assert_parse_result_sane(err, &info, why, size);
		free(copy);
	}
	bz_init();
	for (size_t size = 0; size <= BZ_SIZE; size++) {
		const char *why = NULL;
		uint8_t *copy = exact_copy(bz, size);
		int err = kernel_parse(copy, size, &info, &why);
		assert_parse_result_sane(err, &info, why, size);
		free(copy);
	}
}

/* ---- kernel_load ---- */

#define GUEST_SIZE (32 * MiB)

static int guest_setup(void **state)
{
	return guest_setup_with(state, GUEST_SIZE, GUEST_SIZE, 0xaa);
}

static void assert_all_bytes(const uint8_t *p, size_t len, uint8_t value)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != value)
			fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, p[i], value);
	}
}

static void test_load_copies_elf_segment_and_zeroes_its_bss(void **state)
{
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;

	elf_init(&e);
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why), 0);
	assert_memory_equal(g->ram + ELF_LOAD_GPA, e.text, ELF_TEXT_SIZE);
	assert_all_bytes(g->ram + ELF_LOAD_GPA + ELF_TEXT_SIZE, ELF_LOAD_MEM - ELF_TEXT_SIZE, 0);
	assert_int_equal(g->ram[ELF_LOAD_GPA - 1], 0xaa);
	assert_int_equal(g->ram[ELF_LOAD_GPA + ELF_LOAD_MEM], 0xaa);
}

static void test_load_copies_every_elf_segment(void **state)
{
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;

	elf_init(&e);
	e.phdr[2] = e.phdr[0];
	e.phdr[2].p_offset = TEXT_OFFSET + 0x100;
	e.phdr[2].p_filesz = 0x10;
	e.phdr[2].p_memsz = 0x30;
	e.phdr[2].p_paddr = 0x1800000;
	e.ehdr.e_phnum = 3;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why), 0);
	assert_memory_equal(g->ram + ELF_LOAD_GPA, e.text, ELF_TEXT_SIZE);
	assert_memory_equal(g->ram + 0x1800000, e.text + 0x100, 0x10);
	assert_all_bytes(g->ram + 0x1800010, 0x20, 0);
	assert_int_equal(g->ram[0x1800030], 0xaa);
}

static void test_load_copies_bzimage_payload_to_1mib(void **state)
{
	struct guest *g = *state;
	struct kernel_info info;
	const char *why = NULL;

	bz_init();
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	assert_int_equal(kernel_load(bz, BZ_SIZE, &info, &g->mem, &why), 0);
	assert_memory_equal(g->ram + LAYOUT_BZIMAGE_LOAD, bz + BZ_SETUP_SIZE,
			    BZ_SIZE - BZ_SETUP_SIZE);
	assert_int_equal(g->ram[LAYOUT_BZIMAGE_LOAD - 1], 0xaa);
	assert_int_equal(g->ram[LAYOUT_BZIMAGE_LOAD + BZ_SIZE - BZ_SETUP_SIZE], 0xaa);
}

static void test_load_rejects_segment_outside_guest_memory(void **state)
{
	static const uint64_t gpas[] = {GUEST_SIZE, GUEST_SIZE - 0x1000, 0xc0000000ULL,
					0x100000000ULL, UINT64_MAX - ELF_LOAD_MEM};
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;

	for (size_t i = 0; i < sizeof(gpas) / sizeof(gpas[0]); i++) {
		const char *why = NULL;
		elf_init(&e);
		e.phdr[0].p_paddr = gpas[i];
		assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
		why = NULL;
		assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why),
				 -ERANGE);
		assert_non_null(why);
	}
}

static void test_load_rejects_bzimage_whose_decompressor_needs_more_memory(void **state)
{
	struct guest *g = *state;
	struct kernel_info info;
	const char *why = NULL;
	struct setup_header h;

	bz_init();
	h = bz_header();
	h.pref_address = 0x1000000;
	h.init_size = GUEST_SIZE;
	bz_put(&h);
	assert_int_equal(bzimage_parse(bz, BZ_SIZE, &info, &why), 0);
	why = NULL;
	assert_int_equal(kernel_load(bz, BZ_SIZE, &info, &g->mem, &why), -ERANGE);
	assert_non_null(why);
}

static void test_load_accepts_kernel_ending_exactly_at_end_of_memory(void **state)
{
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;

	elf_init(&e);
	e.phdr[0].p_paddr = GUEST_SIZE - ELF_LOAD_MEM;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why), 0);
	assert_memory_equal(g->ram + GUEST_SIZE - ELF_LOAD_MEM, e.text, ELF_TEXT_SIZE);
}

static void test_load_refuses_segments_not_inside_the_image(void **state)
{
	struct guest *g = *state;
	struct kernel_info info;
	const char *why = NULL;
	uint8_t image[0x100] = {0};

	memset(&info, 0, sizeof(info));
	info.nr_segments = 1;
	info.segments[0] = (struct kernel_segment){
	    .file_offset = 0x80, .file_size = 0x81, .gpa = 0x200000, .mem_size = 0x1000};
	info.end = 0x201000;
	assert_int_equal(kernel_load(image, sizeof(image), &info, &g->mem, &why), -EINVAL);
	assert_non_null(why);
	assert_int_equal(g->ram[0x200000], 0xaa);

	info.segments[0] = (struct kernel_segment){
	    .file_offset = 0, .file_size = 0x20, .gpa = 0x200000, .mem_size = 0x10};
	why = NULL;
	assert_int_equal(kernel_load(image, sizeof(image), &info, &g->mem, &why), -EINVAL);
	assert_non_null(why);
	assert_int_equal(g->ram[0x200000], 0xaa);
}

/* Below 1 MiB live the GDT, the PVH start info, the zero page, the page tables and the
 * command line: a kernel segment there would overwrite (or be overwritten by) them. */
static void test_load_refuses_segment_below_1mib_and_leaves_it_unwritten(void **state)
{
	static const uint64_t gpas[] = {0,
					LAYOUT_PVH_INFO,
					LAYOUT_ZERO_PAGE,
					LAYOUT_CMDLINE,
					LAYOUT_HIGH_MEMORY - ELF_LOAD_MEM,
					LAYOUT_HIGH_MEMORY - 0x1000,
					LAYOUT_HIGH_MEMORY - 1};
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;

	for (size_t i = 0; i < sizeof(gpas) / sizeof(gpas[0]); i++) {
		const char *why = NULL;
		elf_init(&e);
		e.phdr[0].p_paddr = gpas[i];
		assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
		why = NULL;
		assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why),
				 -EINVAL);
		assert_non_null(why);
		assert_true(why[0] != '\0');
		assert_all_bytes(g->ram, LAYOUT_HIGH_MEMORY + ELF_LOAD_MEM, 0xaa);
	}
}

static void test_load_refuses_low_segment_after_a_good_one(void **state)
{
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;

	elf_init(&e);
	e.phdr[2] = e.phdr[0];
	e.phdr[2].p_paddr = LAYOUT_ZERO_PAGE;
	e.ehdr.e_phnum = 3;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(info.nr_segments, 2);
	why = NULL;
	assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why), -EINVAL);
	assert_non_null(why);
	assert_all_bytes(g->ram, LAYOUT_HIGH_MEMORY, 0xaa);
}

static void test_load_accepts_elf_segment_starting_exactly_at_1mib(void **state)
{
	struct guest *g = *state;
	struct test_elf e;
	struct kernel_info info;
	const char *why = NULL;

	elf_init(&e);
	e.phdr[0].p_paddr = LAYOUT_HIGH_MEMORY;
	assert_int_equal(elf_parse(bytes_of(&e), sizeof(e), &info, &why), 0);
	assert_int_equal(kernel_load(bytes_of(&e), sizeof(e), &info, &g->mem, &why), 0);
	assert_memory_equal(g->ram + LAYOUT_HIGH_MEMORY, e.text, ELF_TEXT_SIZE);
	assert_int_equal(g->ram[LAYOUT_HIGH_MEMORY - 1], 0xaa);
}

/* ---- initrd_place ---- */

static void test_initrd_is_placed_page_aligned_as_high_as_possible(void **state)
{
	const uint64_t low_end = 64 * MiB, kernel_end = 0x1234567, size = 0x12345;
	uint64_t gpa = 0;
	(void)state;

	assert_int_equal(initrd_place(low_end, kernel_end, 0x7fffffff, size, &gpa), 0);
	assert_int_equal(gpa & 0xfff, 0);
	assert_true(gpa + size <= low_end);
	assert_true(gpa >= kernel_end);
	/* One page higher would no longer fit: it really is as high as possible. */
	assert_true(gpa + 0x1000 + size > low_end);
	assert_int_equal(gpa, (low_end - size) & ~0xfffULL);
}

static void test_initrd_ends_at_or_below_max_end_inclusive(void **state)
{
	const uint64_t max_end = 0x37ffffff, size = 0x400000;
	uint64_t gpa = 0;
	(void)state;

	assert_int_equal(initrd_place(0xc0000000ULL, 16 * MiB, max_end, size, &gpa), 0);
	assert_int_equal(gpa & 0xfff, 0);
	assert_true(gpa + size - 1 <= max_end);
	assert_int_equal(gpa, 0x38000000 - size);
}

static void test_initrd_with_unlimited_max_end_uses_low_end(void **state)
{
	uint64_t gpa = 0;
	(void)state;

	assert_int_equal(initrd_place(64 * MiB, 16 * MiB, UINT64_MAX, 0x100000, &gpa), 0);
	assert_int_equal(gpa, 63 * MiB);
}

static void test_initrd_max_end_above_low_end_is_ignored(void **state)
{
	uint64_t gpa = 0;
	(void)state;

	assert_int_equal(initrd_place(64 * MiB, 16 * MiB, 0xffffffffULL, 0x100000, &gpa), 0);
	assert_int_equal(gpa, 63 * MiB);
}

static void test_initrd_larger_than_memory_is_enospc(void **state)
{
	uint64_t gpa = 0x5a5a;
	(void)state;

	assert_int_equal(initrd_place(64 * MiB, 16 * MiB, UINT64_MAX, 64 * MiB + 1, &gpa), -ENOSPC);
	assert_int_equal(initrd_place(64 * MiB, 16 * MiB, UINT64_MAX, UINT64_MAX, &gpa), -ENOSPC);
	assert_int_equal(initrd_place(64 * MiB, 0, 0xfffff, 0x100001, &gpa), -ENOSPC);
	assert_int_equal(gpa, 0x5a5a);
}

static void test_initrd_overlapping_kernel_is_enospc(void **state)
{
	uint64_t gpa = 0x5a5a;
	(void)state;

	assert_int_equal(initrd_place(64 * MiB, 60 * MiB, UINT64_MAX, 5 * MiB, &gpa), -ENOSPC);
	assert_int_equal(initrd_place(64 * MiB, 64 * MiB, UINT64_MAX, 0x1000, &gpa), -ENOSPC);
	assert_int_equal(initrd_place(64 * MiB, 80 * MiB, UINT64_MAX, 0x1000, &gpa), -ENOSPC);
	/* Fits below low_end but not below max_end without touching the kernel. */
	assert_int_equal(initrd_place(64 * MiB, 30 * MiB, 32 * MiB - 1, 3 * MiB, &gpa), -ENOSPC);
	assert_int_equal(gpa, 0x5a5a);
}

static void test_initrd_just_fitting_above_unaligned_kernel_end(void **state)
{
	const uint64_t kernel_end = 60 * MiB + 1; /* rounds up to 60 MiB + 4 KiB */
	uint64_t gpa = 0;
	(void)state;

	assert_int_equal(initrd_place(64 * MiB, kernel_end, UINT64_MAX, 4 * MiB - 0x1000, &gpa), 0);
	assert_int_equal(gpa, 60 * MiB + 0x1000);
	/* One byte more and rounding down to a page would land on the kernel's last page. */
	assert_int_equal(initrd_place(64 * MiB, kernel_end, UINT64_MAX, 4 * MiB - 0xfff, &gpa),
			 -ENOSPC);
}

/* Rounding such a kernel_end up to a page used to wrap to 0, so the initrd was "placed"
 * on top of everything, kernel included. */
static void test_initrd_kernel_end_in_the_last_page_of_the_address_space_is_enospc(void **state)
{
	static const uint64_t kernel_ends[] = {UINT64_MAX - 10, 0xfffffffffffff001ULL,
					       UINT64_MAX - 0xffe, UINT64_MAX,
					       0xfffffffffffff000ULL};
	uint64_t gpa = 0x5a5a;
	(void)state;

	for (size_t i = 0; i < sizeof(kernel_ends) / sizeof(kernel_ends[0]); i++) {
		assert_int_equal(initrd_place(64 * MiB, kernel_ends[i], UINT64_MAX, 0x1000, &gpa),
				 -ENOSPC);
		assert_int_equal(initrd_place(64 * MiB, kernel_ends[i], 0x7fffffff, 1, &gpa),
				 -ENOSPC);
		assert_int_equal(initrd_place(UINT64_MAX, kernel_ends[i], UINT64_MAX, 0x1000, &gpa),
				 -ENOSPC);
	}
	assert_int_equal(gpa, 0x5a5a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_elf_valid_image_parses_segment_and_8_byte_pvh_entry),
	    cmocka_unit_test(test_elf_4_byte_pvh_entry_note_is_accepted),
	    cmocka_unit_test(test_elf_without_pvh_note_has_no_pvh_entry),
	    cmocka_unit_test(test_elf_pvh_note_needs_the_xen_name),
	    cmocka_unit_test(test_elf_pvh_note_name_must_be_exactly_xen),
	    cmocka_unit_test(test_elf_is_dispatched_by_kernel_parse),
	    cmocka_unit_test(test_elf_end_is_the_highest_segment_end),
	    cmocka_unit_test(test_elf_ignores_non_load_and_empty_load_segments),
	    cmocka_unit_test(test_elf_accepts_exactly_16_loadable_segments),
	    cmocka_unit_test(test_elf_rejects_17_loadable_segments),
	    cmocka_unit_test(test_elf_rejects_truncated_header),
	    cmocka_unit_test(test_elf_rejects_wrong_magic_class_data_machine_and_type),
	    cmocka_unit_test(test_elf_rejects_bad_program_header_entry_size_or_count),
	    cmocka_unit_test(test_elf_rejects_program_headers_outside_the_file),
	    cmocka_unit_test(test_elf_rejects_phnum_times_phentsize_beyond_the_file),
	    cmocka_unit_test(test_elf_rejects_segment_data_beyond_the_file),
	    cmocka_unit_test(test_elf_rejects_note_segment_beyond_the_file),
	    cmocka_unit_test(test_elf_rejects_file_size_above_memory_size),
	    cmocka_unit_test(test_elf_rejects_segment_wrapping_the_address_space),
	    cmocka_unit_test(test_elf_rejects_note_name_running_past_segment),
	    cmocka_unit_test(test_elf_rejects_note_desc_running_past_segment),
	    cmocka_unit_test(test_elf_rejects_last_note_with_size_rounding_up_to_4gib),
	    cmocka_unit_test(test_elf_rejects_note_cut_by_segment_end),
	    cmocka_unit_test(test_elf_rejects_pvh_note_with_bad_desc_size),
	    cmocka_unit_test(test_elf_rejects_pvh_entry_above_4gib),
	    cmocka_unit_test(test_elf_rejects_image_without_loadable_segment),
	    cmocka_unit_test(test_bzimage_valid_image_parses_payload_segment),
	    cmocka_unit_test(test_bzimage_is_dispatched_by_kernel_parse),
	    cmocka_unit_test(test_bzimage_zero_setup_sects_means_four),
	    cmocka_unit_test(test_bzimage_end_covers_payload_when_init_size_is_small),
	    cmocka_unit_test(test_bzimage_defaults_and_clamps_initrd_and_cmdline_limits),
	    cmocka_unit_test(test_bzimage_cmdline_max_equals_setup_header_cmdline_max),
	    cmocka_unit_test(test_bzimage_syssize_reaching_exactly_the_end_is_accepted),
	    cmocka_unit_test(test_bzimage_rejects_truncated_file),
	    cmocka_unit_test(test_bzimage_rejects_missing_boot_flag_or_magic),
	    cmocka_unit_test(test_bzimage_rejects_boot_protocol_older_than_2_12),
	    cmocka_unit_test(test_bzimage_rejects_missing_64_bit_entry_flag),
	    cmocka_unit_test(test_bzimage_rejects_zimage_that_loads_low),
	    cmocka_unit_test(test_bzimage_rejects_setup_sects_covering_the_whole_file),
	    cmocka_unit_test(test_bzimage_rejects_syssize_beyond_end_of_file),
	    cmocka_unit_test(test_bzimage_rejects_pref_address_plus_init_size_overflow),
	    cmocka_unit_test(test_random_garbage_is_neither_elf_nor_bzimage),
	    cmocka_unit_test(test_partial_elf_magic_is_neither),
	    cmocka_unit_test(test_hdrs_magic_in_a_short_file_is_rejected),
	    cmocka_unit_test(test_elf_single_byte_corruptions_never_yield_bad_segments),
	    cmocka_unit_test(test_bzimage_single_byte_corruptions_never_yield_bad_segments),
	    cmocka_unit_test(test_every_truncation_is_rejected_or_stays_in_bounds),
	    cmocka_unit_test_setup_teardown(test_load_copies_elf_segment_and_zeroes_its_bss,
					    guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(test_load_copies_every_elf_segment, guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(test_load_copies_bzimage_payload_to_1mib, guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(test_load_rejects_segment_outside_guest_memory,
					    guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_load_rejects_bzimage_whose_decompressor_needs_more_memory, guest_setup,
		guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_load_accepts_kernel_ending_exactly_at_end_of_memory, guest_setup,
		guest_teardown),
	    cmocka_unit_test_setup_teardown(test_load_refuses_segments_not_inside_the_image,
					    guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_load_refuses_segment_below_1mib_and_leaves_it_unwritten, guest_setup,
		guest_teardown),
	    cmocka_unit_test_setup_teardown(test_load_refuses_low_segment_after_a_good_one,
					    guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(test_load_accepts_elf_segment_starting_exactly_at_1mib,
					    guest_setup, guest_teardown),
	    cmocka_unit_test(test_initrd_is_placed_page_aligned_as_high_as_possible),
	    cmocka_unit_test(test_initrd_ends_at_or_below_max_end_inclusive),
	    cmocka_unit_test(test_initrd_with_unlimited_max_end_uses_low_end),
	    cmocka_unit_test(test_initrd_max_end_above_low_end_is_ignored),
	    cmocka_unit_test(test_initrd_larger_than_memory_is_enospc),
	    cmocka_unit_test(test_initrd_overlapping_kernel_is_enospc),
	    cmocka_unit_test(test_initrd_just_fitting_above_unaligned_kernel_end),
	    cmocka_unit_test(
		test_initrd_kernel_end_in_the_last_page_of_the_address_space_is_enospc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
