/* Unit tests for x86_boot_setup (arch/x86_64/boot.c): crafted kernels (a vmlinux ELF with
 * and without a PVH note, a bzImage) are set up in a fake 64 MiB guest memory, and every
 * boot structure the chosen entry needs is checked where the guest will look for it. */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/boot.h"
#include "arch/x86_64/bootparams.h"
#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/loader.h"
#include "arch/x86_64/mptable.h"
#include "arch/x86_64/pvh.h"
#include "memory.h"
#include "test_support.h"

#define KiB	   (1ULL << 10)
#define MiB	   (1ULL << 20)
#define GUEST_SIZE (64 * MiB)
#define PAGE_SIZE  0x1000ULL

#define PTE_PRESENT  (1ULL << 0)
#define PTE_WRITE    (1ULL << 1)
#define PTE_PAGESIZE (1ULL << 7)

/* ---- guest memory ---- */

static int guest_setup(void **state)
{
	return guest_setup_with(state, GUEST_SIZE, GUEST_SIZE, 0);
}

/* ---- crafted ELF vmlinux ---- */

#define ELF_LOAD_GPA  0x1000000ULL
#define ELF_TEXT_SIZE 0x600
#define ELF_LOAD_MEM  0x3000ULL /* the rest is bss */
#define ELF_ENTRY64   0x1000200ULL
#define PVH_ENTRY     0x1000080ULL

struct test_elf {
	Elf64_Ehdr ehdr;
	Elf64_Phdr phdr[2];
	uint8_t notes[32];
	uint8_t text[ELF_TEXT_SIZE];
};

/* One PT_LOAD at 16 MiB and, if `pvh`, a PT_NOTE with Xen's PHYS32_ENTRY (8-byte desc). */
static void elf_build(struct test_elf *e, bool pvh)
{
	Elf64_Nhdr nhdr = {.n_namesz = 4, .n_descsz = 8, .n_type = XEN_ELFNOTE_PHYS32_ENTRY};
	uint64_t entry = PVH_ENTRY;

	memset(e, 0, sizeof(*e));
	elf_exec_header(&e->ehdr, ELF_ENTRY64, offsetof(struct test_elf, phdr), pvh ? 2 : 1);
	fill_pattern(e->text, ELF_TEXT_SIZE, 5, 13);
	e->phdr[0] = (Elf64_Phdr){.p_type = PT_LOAD,
				  .p_flags = PF_R | PF_X,
				  .p_offset = offsetof(struct test_elf, text),
				  .p_vaddr = 0xffffffff81000000ULL,
				  .p_paddr = ELF_LOAD_GPA,
				  .p_filesz = ELF_TEXT_SIZE,
				  .p_memsz = ELF_LOAD_MEM,
				  .p_align = 0x200000};
	if (!pvh)
		return;
	memcpy(e->notes, &nhdr, sizeof(nhdr));
	memcpy(e->notes + sizeof(nhdr), "Xen", 4);
	memcpy(e->notes + sizeof(nhdr) + 4, &entry, sizeof(entry));
	e->phdr[1] = (Elf64_Phdr){.p_type = PT_NOTE,
				  .p_flags = PF_R,
				  .p_offset = offsetof(struct test_elf, notes),
				  .p_filesz = sizeof(nhdr) + 4 + 8,
				  .p_align = 4};
}

/* ---- crafted bzImage ---- */

#define BZ_SETUP_SECTS	   1
#define BZ_SETUP_SIZE	   ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD_SIZE	   0x1800
#define BZ_SIZE		   (BZ_SETUP_SIZE + BZ_PAYLOAD_SIZE)
#define BZ_PREF_ADDRESS	   0x1000000ULL
#define BZ_INIT_SIZE	   0x40000
#define BZ_CMDLINE_SIZE	   0x7ff
#define BZ_INITRD_ADDR_MAX 0x37ffffff

static void bzimage_build(uint8_t *bz, uint32_t cmdline_size, uint32_t initrd_addr_max,
			  uint32_t init_size)
{
	struct setup_header hdr = {
	    .setup_sects = BZ_SETUP_SECTS,
	    .syssize = BZ_PAYLOAD_SIZE / 16,
	    .boot_flag = SETUP_BOOT_FLAG,
	    .jump = 0x66eb,
	    .header = SETUP_HEADER_MAGIC,
	    .version = 0x020f,
	    .loadflags = LOADFLAG_LOADED_HIGH,
	    .initrd_addr_max = initrd_addr_max,
	    .kernel_alignment = 0x200000,
	    .relocatable_kernel = 1,
	    .xloadflags = XLF_KERNEL_64,
	    .cmdline_size = cmdline_size,
	    .pref_address = BZ_PREF_ADDRESS,
	    .init_size = init_size,
	};

	memset(bz, 0, BZ_SIZE);
	memcpy(bz + 0x1f1, &hdr, sizeof(hdr));
	fill_pattern(bz + BZ_SETUP_SIZE, BZ_PAYLOAD_SIZE, 7, 31);
	/* The fields sit where the boot protocol puts them in the file. */
	assert_int_equal(bz[0x1fe], 0x55);
	assert_int_equal(bz[0x1ff], 0xaa);
	assert_memory_equal(bz + 0x202, "HdrS", 4);
	assert_int_equal(get_le16(bz + 0x206), 0x020f);
}

/* ---- payloads ---- */

struct boot_case {
	struct test_elf elf;
	uint8_t bz[BZ_SIZE];
	struct kernel_info info;
	struct boot_payload payload;
	uint8_t initrd[3 * PAGE_SIZE + 123];
};

static void initrd_fill(struct boot_case *c)
{
	fill_pattern(c->initrd, sizeof(c->initrd), 3, 7);
}

/* Parses the kernel (as wisp does before setup) and fills a payload around it. */
static void payload_init(struct boot_case *c, const uint8_t *kernel, size_t size,
			 const char *cmdline, bool with_initrd, unsigned int nr_cpus)
{
	const char *why = NULL;

	assert_int_equal(kernel_parse(kernel, size, &c->info, &why), 0);
	initrd_fill(c);
	c->payload = (struct boot_payload){
	    .kernel = kernel,
	    .kernel_size = size,
	    .info = &c->info,
	    .initrd = with_initrd ? c->initrd : NULL,
	    .initrd_size = with_initrd ? sizeof(c->initrd) : 0,
	    .cmdline = cmdline,
	    .nr_cpus = nr_cpus,
	};
}

static struct boot_case *elf_case(bool pvh, const char *cmdline, bool with_initrd,
				  unsigned int nr_cpus)
{
	struct boot_case *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	elf_build(&c->elf, pvh);
	payload_init(c, (const uint8_t *)&c->elf, sizeof(c->elf), cmdline, with_initrd, nr_cpus);
	return c;
}

static struct boot_case *bzimage_case(uint32_t cmdline_size, uint32_t initrd_addr_max,
				      uint32_t init_size, const char *cmdline, bool with_initrd)
{
	struct boot_case *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	bzimage_build(c->bz, cmdline_size, initrd_addr_max, init_size);
	payload_init(c, c->bz, sizeof(c->bz), cmdline, with_initrd, 1);
	return c;
}

static int run_setup(const struct guest *g, const struct boot_case *c, struct boot_entry *entry)
{
	const char *why = NULL;
	int err;

	memset(entry, 0xee, sizeof(*entry));
	err = x86_boot_setup(&g->mem, &c->payload, entry, &why);
	if (err) {
		/* Every failure says why. */
		assert_non_null(why);
		assert_true(strlen(why) > 0);
	}
	return err;
}

static void expect_failure(const struct guest *g, const struct boot_case *c, int expected)
{
	struct boot_entry entry;
	assert_int_equal(run_setup(g, c, &entry), expected);
}

/* ---- readers ---- */

static struct hvm_start_info read_start_info(const struct guest *g)
{
	struct hvm_start_info info;
	memcpy(&info, g->ram + LAYOUT_PVH_INFO, sizeof(info));
	return info;
}

static const struct boot_params *zero_page(const struct guest *g)
{
	return (const struct boot_params *)(g->ram + LAYOUT_ZERO_PAGE);
}

/* The initrd lies page-aligned, inside memory, above the kernel, within `max_end`
 * (inclusive), as high as those allow, and holds the initrd's bytes. */
static void assert_initrd_placed(const struct guest *g, const struct boot_case *c, uint64_t gpa,
				 uint64_t size, uint64_t max_end)
{
	uint64_t top = GUEST_SIZE < max_end + 1 ? GUEST_SIZE : max_end + 1;

	assert_int_equal(size, sizeof(c->initrd));
	assert_int_equal(gpa % PAGE_SIZE, 0);
	assert_true(gpa >= c->info.end);
	assert_true(gpa + size <= top);
	assert_true(top - (gpa + size) < PAGE_SIZE);
	assert_memory_equal(g->ram + gpa, c->initrd, sizeof(c->initrd));
}

static void assert_cmdline_at_0x20000(const struct guest *g, const char *cmdline)
{
	assert_memory_equal(g->ram + LAYOUT_CMDLINE, cmdline, strlen(cmdline) + 1);
}

static void assert_gdt(const struct guest *g, enum boot_entry_mode mode)
{
	uint64_t gdt[GDT_ENTRIES];
	gdt_build(gdt, mode);
	assert_memory_equal(g->ram + LAYOUT_GDT, gdt, sizeof(gdt));
}

/* ---- PVH entry ---- */

static const char CMDLINE[] = "console=ttyS0 reboot=k panic=-1 root=/dev/ram0";

static void test_pvh_elf_enters_at_pvh_entry_with_start_info_at_0x6000(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, true, 2);
	struct boot_entry entry;

	assert_true(c->info.has_pvh_entry);
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_int_equal(entry.mode, ENTRY_PVH32);
	assert_int_equal(entry.rip, PVH_ENTRY);
	assert_int_equal(entry.boot_info_gpa, 0x6000);

	struct hvm_start_info info = read_start_info(g);
	assert_int_equal(info.magic, PVH_START_MAGIC);
	assert_int_equal(info.version, 1);
	assert_int_equal(info.cmdline_paddr, 0x20000);
	assert_int_equal(info.rsdp_paddr, 0);
	free(c);
}

static void test_pvh_memory_map_describes_guest_ram(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, false, 1);
	struct boot_entry entry;
	struct hvm_memmap_table_entry map[3];

	assert_int_equal(run_setup(g, c, &entry), 0);
	struct hvm_start_info info = read_start_info(g);
	assert_int_equal(info.memmap_paddr, LAYOUT_PVH_INFO + PVH_MEMMAP_OFFSET);
	assert_int_equal(info.memmap_entries, 3);
	memcpy(map, g->ram + info.memmap_paddr, sizeof(map));
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, LAYOUT_MPTABLE);
	assert_int_equal(map[0].type, E820_RAM);
	assert_int_equal(map[1].addr, LAYOUT_MPTABLE);
	assert_int_equal(map[1].type, E820_RESERVED);
	assert_int_equal(map[2].addr, 1 * MiB);
	assert_int_equal(map[2].addr + map[2].size, GUEST_SIZE);
	assert_int_equal(map[2].type, E820_RAM);
	free(c);
}

static void test_pvh_initrd_copied_high_and_recorded_as_module(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, true, 1);
	struct boot_entry entry;
	struct hvm_modlist_entry module;

	assert_int_equal(run_setup(g, c, &entry), 0);
	struct hvm_start_info info = read_start_info(g);
	assert_int_equal(info.nr_modules, 1);
	assert_int_equal(info.modlist_paddr, LAYOUT_PVH_INFO + PVH_MODLIST_OFFSET);
	memcpy(&module, g->ram + info.modlist_paddr, sizeof(module));
	assert_initrd_placed(g, c, module.paddr, module.size, c->info.initrd_max);
	assert_int_equal(module.cmdline_paddr, 0);
	free(c);
}

static void test_pvh_without_initrd_has_no_modules(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, false, 1);
	struct boot_entry entry;

	assert_int_equal(run_setup(g, c, &entry), 0);
	struct hvm_start_info info = read_start_info(g);
	assert_int_equal(info.magic, PVH_START_MAGIC);
	assert_int_equal(info.nr_modules, 0);
	assert_int_equal(info.modlist_paddr, 0);
	free(c);
}

static void test_pvh_writes_cmdline_kernel_and_32bit_gdt(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, false, 1);
	struct boot_entry entry;

	/* Garbage where the bss goes: loading must zero it. */
	memset(g->ram + ELF_LOAD_GPA, 0xcc, ELF_LOAD_MEM + 0x100);
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_cmdline_at_0x20000(g, CMDLINE);
	assert_memory_equal(g->ram + ELF_LOAD_GPA, c->elf.text, ELF_TEXT_SIZE);
	for (uint64_t i = ELF_TEXT_SIZE; i < ELF_LOAD_MEM; i++)
		assert_int_equal(g->ram[ELF_LOAD_GPA + i], 0);
	assert_int_equal(g->ram[ELF_LOAD_GPA + ELF_LOAD_MEM], 0xcc); /* nothing beyond */
	assert_gdt(g, ENTRY_PVH32);
	/* PVH starts in 32-bit protected mode without paging: no page tables. */
	assert_int_equal(guest_u64(g, LAYOUT_PML4), 0);
	free(c);
}

/* ---- 64-bit Linux entry of a vmlinux ---- */

static void test_elf_without_note_enters_64bit_with_zero_page_at_0x7000(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(false, CMDLINE, true, 1);
	struct boot_entry entry;

	assert_false(c->info.has_pvh_entry);
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_int_equal(entry.mode, ENTRY_LINUX64);
	assert_int_equal(entry.rip, ELF_ENTRY64);
	assert_int_equal(entry.boot_info_gpa, 0x7000);

	const struct boot_params *params = zero_page(g);
	assert_int_equal(params->hdr.boot_flag, SETUP_BOOT_FLAG);
	assert_int_equal(params->hdr.header, SETUP_HEADER_MAGIC);
	assert_int_equal(params->hdr.cmd_line_ptr, 0x20000);
	assert_int_equal(params->hdr.type_of_loader, LOADER_TYPE_UNDEFINED);
	assert_int_equal(params->hdr.loadflags & LOADFLAG_LOADED_HIGH, LOADFLAG_LOADED_HIGH);
	assert_initrd_placed(g, c, params->hdr.ramdisk_image, params->hdr.ramdisk_size,
			     c->info.initrd_max);
	assert_cmdline_at_0x20000(g, CMDLINE);
	/* No PVH start info for this entry. */
	assert_int_equal(read_start_info(g).magic, 0);
	free(c);
}

static void test_zero_page_e820_covers_guest_ram(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(false, CMDLINE, false, 1);
	struct boot_entry entry;

	assert_int_equal(run_setup(g, c, &entry), 0);
	const struct boot_params *params = zero_page(g);
	assert_true(params->e820_entries > 0);
	assert_int_equal(params->e820_entries, 3);
	assert_int_equal(params->e820_table[0].addr, 0);
	assert_int_equal(params->e820_table[0].type, E820_RAM);
	assert_int_equal(params->e820_table[1].type, E820_RESERVED);
	assert_int_equal(params->e820_table[2].addr, 1 * MiB);
	assert_int_equal(params->e820_table[2].addr + params->e820_table[2].size, GUEST_SIZE);
	assert_int_equal(params->e820_table[2].type, E820_RAM);
	/* No initrd: the ramdisk fields stay empty. */
	assert_int_equal(params->hdr.ramdisk_image, 0);
	assert_int_equal(params->hdr.ramdisk_size, 0);
	free(c);
}

static void test_linux64_page_tables_at_0x9000_identity_map_first_gib(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(false, CMDLINE, false, 1);
	struct boot_entry entry;
	const uint64_t flags = PTE_PRESENT | PTE_WRITE;

	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_int_equal(LAYOUT_PML4, 0x9000);
	assert_int_equal(guest_u64(g, LAYOUT_PML4) & ~0xfffULL, LAYOUT_PDPT);
	assert_int_equal(guest_u64(g, LAYOUT_PML4) & flags, flags);
	assert_int_equal(guest_u64(g, LAYOUT_PML4 + 8), 0);
	assert_int_equal(guest_u64(g, LAYOUT_PDPT) & ~0xfffULL, LAYOUT_PD);
	assert_int_equal(guest_u64(g, LAYOUT_PDPT) & flags, flags);
	for (uint64_t i = 0; i < 512; i++)
		assert_int_equal(guest_u64(g, LAYOUT_PD + i * 8), (i << 21) | flags | PTE_PAGESIZE);
	assert_gdt(g, ENTRY_LINUX64);
	free(c);
}

/* ---- bzImage ---- */

static void test_bzimage_enters_at_0x100200_with_protected_mode_code_at_1mib(void **state)
{
	struct guest *g = *state;
	struct boot_case *c =
	    bzimage_case(BZ_CMDLINE_SIZE, BZ_INITRD_ADDR_MAX, BZ_INIT_SIZE, CMDLINE, true);
	struct boot_entry entry;

	assert_int_equal(c->info.format, KERNEL_FORMAT_BZIMAGE);
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_int_equal(entry.mode, ENTRY_LINUX64);
	assert_int_equal(entry.rip, 0x100200);
	assert_int_equal(entry.boot_info_gpa, LAYOUT_ZERO_PAGE);
	assert_memory_equal(g->ram + 0x100000, c->bz + BZ_SETUP_SIZE, BZ_PAYLOAD_SIZE);
	/* The setup code itself is not loaded. */
	assert_int_equal(g->ram[0x100000 - 1], 0);
	assert_gdt(g, ENTRY_LINUX64);
	assert_cmdline_at_0x20000(g, CMDLINE);
	free(c);
}

static void test_bzimage_zero_page_carries_the_image_setup_header(void **state)
{
	struct guest *g = *state;
	struct boot_case *c =
	    bzimage_case(BZ_CMDLINE_SIZE, BZ_INITRD_ADDR_MAX, BZ_INIT_SIZE, CMDLINE, true);
	struct boot_entry entry;

	assert_int_equal(run_setup(g, c, &entry), 0);
	const struct boot_params *params = zero_page(g);
	assert_int_equal(params->hdr.setup_sects, BZ_SETUP_SECTS);
	assert_int_equal(params->hdr.version, 0x020f);
	assert_int_equal(params->hdr.pref_address, BZ_PREF_ADDRESS);
	assert_int_equal(params->hdr.init_size, BZ_INIT_SIZE);
	assert_int_equal(params->hdr.cmdline_size, BZ_CMDLINE_SIZE);
	assert_int_equal(params->hdr.xloadflags & XLF_KERNEL_64, XLF_KERNEL_64);
	assert_int_equal(params->hdr.loadflags & (LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP),
			 LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP);
	assert_int_equal(params->hdr.type_of_loader, LOADER_TYPE_UNDEFINED);
	assert_int_equal(params->hdr.cmd_line_ptr, LAYOUT_CMDLINE);
	assert_true(params->e820_entries > 0);
	assert_initrd_placed(g, c, params->hdr.ramdisk_image, params->hdr.ramdisk_size,
			     BZ_INITRD_ADDR_MAX);
	free(c);
}

static void test_bzimage_initrd_stays_below_initrd_addr_max(void **state)
{
	struct guest *g = *state;
	const uint32_t max = 0x2ffffff; /* ends at 48 MiB, below the end of memory */
	struct boot_case *c = bzimage_case(BZ_CMDLINE_SIZE, max, BZ_INIT_SIZE, CMDLINE, true);
	struct boot_entry entry;

	assert_int_equal(run_setup(g, c, &entry), 0);
	const struct boot_params *params = zero_page(g);
	assert_initrd_placed(g, c, params->hdr.ramdisk_image, params->hdr.ramdisk_size, max);
	assert_true(params->hdr.ramdisk_image + params->hdr.ramdisk_size <= 48 * MiB);
	/* Above the decompressed kernel, which needs init_size bytes at pref_address. */
	assert_true(params->hdr.ramdisk_image >= BZ_PREF_ADDRESS + BZ_INIT_SIZE);
	free(c);
}

/* ---- MP table ---- */

static void assert_mptable(const struct guest *g, unsigned int nr_cpus)
{
	struct mpf_intel mpf;
	struct mpc_table table;
	const uint8_t *entry;
	unsigned int cpus = 0;

	memcpy(&mpf, g->ram + LAYOUT_MPTABLE, sizeof(mpf));
	assert_memory_equal(mpf.signature, "_MP_", 4);
	assert_int_equal(mpf.length, 1);
	assert_int_equal(mptable_checksum(g->ram + LAYOUT_MPTABLE, sizeof(mpf)), 0);
	assert_int_equal(mpf.physptr, LAYOUT_MPTABLE + sizeof(mpf));

	memcpy(&table, g->ram + mpf.physptr, sizeof(table));
	assert_memory_equal(table.signature, "PCMP", 4);
	assert_true(mpf.physptr + table.length <= LAYOUT_EBDA_END);
	assert_int_equal(mptable_checksum(g->ram + mpf.physptr, table.length), 0);

	entry = g->ram + mpf.physptr + sizeof(table);
	while (entry[0] == MP_PROCESSOR && cpus <= nr_cpus) {
		struct mpc_cpu cpu;
		memcpy(&cpu, entry, sizeof(cpu));
		assert_int_equal(cpu.apicid, cpus);
		assert_int_equal(cpu.cpuflag & MP_CPU_ENABLED, MP_CPU_ENABLED);
		assert_int_equal(cpu.cpuflag & MP_CPU_BSP, cpus == 0 ? MP_CPU_BSP : 0);
		entry += sizeof(cpu);
		cpus++;
	}
	assert_int_equal(cpus, nr_cpus);
	assert_int_equal(entry[0], MP_BUS);
}

static void test_mptable_at_0x9fc00_is_valid_with_one_entry_per_cpu(void **state)
{
	struct guest *g = *state;
	static const unsigned int counts[] = {1, 2, 7, MPTABLE_MAX_CPUS};

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct boot_case *c = elf_case(i % 2 == 0, CMDLINE, false, counts[i]);
		struct boot_entry entry;
		memset(g->ram + LAYOUT_MPTABLE, 0, LAYOUT_EBDA_END - LAYOUT_MPTABLE);
		assert_int_equal(run_setup(g, c, &entry), 0);
		assert_mptable(g, counts[i]);
		free(c);
	}
}

static void test_bad_cpu_count_fails_with_reason(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, false, 0);

	assert_true(run_setup(g, c, &(struct boot_entry){0}) < 0);
	c->payload.nr_cpus = MPTABLE_MAX_CPUS + 1;
	assert_true(run_setup(g, c, &(struct boot_entry){0}) < 0);
	free(c);
}

/* ---- ACPI ---- */

static const struct acpi_config ACPI_TWO_CPUS_ONE_DISK = {
    .nr_cpus = 2, .nr_virtio = 1, .virtio = {{.base = 0xd0000000, .size = 0x1000, .irq = 5}}};

/* What Linux's acpi_find_root_pointer does without a hint: "RSD PTR " on a 16-byte
 * boundary in [0xe0000, 0x100000) whose first 20 bytes sum to zero. */
static uint64_t scan_bios_area_for_rsdp(const struct guest *g)
{
	for (uint64_t gpa = 0xe0000; gpa < 0x100000; gpa += 16)
		if (!memcmp(g->ram + gpa, "RSD PTR ", 8) && acpi_checksum(g->ram + gpa, 20) == 0)
			return gpa;
	return 0;
}

static void assert_acpi_tables_at(const struct guest *g, uint64_t rsdp, unsigned int nr_cpus)
{
	uint64_t xsdt = get_le64(g->ram + rsdp + 24);
	uint64_t madt = get_le64(g->ram + xsdt + 44);

	assert_int_equal(acpi_checksum(g->ram + rsdp, 36), 0);
	assert_memory_equal(g->ram + xsdt, "XSDT", 4);
	assert_memory_equal(g->ram + madt, "APIC", 4);
	assert_int_equal(get_le32(g->ram + madt + 4), 44 + 8 * nr_cpus + 12 + 6);
	assert_int_equal(acpi_checksum(g->ram + madt, get_le32(g->ram + madt + 4)), 0);
}

static void assert_reserved_in_e820(const struct e820_entry *table, unsigned int count,
				    uint64_t start, uint64_t end)
{
	for (unsigned int i = 0; i < count; i++)
		if (table[i].addr <= start && end <= table[i].addr + table[i].size) {
			assert_int_equal(table[i].type, E820_RESERVED);
			return;
		}
	fail_msg("no e820 entry covers [%#llx, %#llx)", (unsigned long long)start,
		 (unsigned long long)end);
}

static void test_acpi_rsdp_in_the_bios_area_and_in_the_zero_page(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(false, CMDLINE, false, 2);
	struct boot_entry entry;

	c->payload.acpi = &ACPI_TWO_CPUS_ONE_DISK;
	assert_int_equal(run_setup(g, c, &entry), 0);
	uint64_t rsdp = scan_bios_area_for_rsdp(g);
	assert_int_equal(rsdp, LAYOUT_ACPI);
	assert_int_equal(zero_page(g)->acpi_rsdp_addr, rsdp);
	assert_acpi_tables_at(g, rsdp, 2);
	assert_reserved_in_e820(zero_page(g)->e820_table, zero_page(g)->e820_entries, LAYOUT_ACPI,
				LAYOUT_EBDA_END);
	/* The MP table stays for kernels without ACPI. */
	assert_memory_equal(g->ram + LAYOUT_MPTABLE, "_MP_", 4);
	free(c);
}

static void test_acpi_rsdp_in_the_pvh_start_info(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, false, 2);
	struct boot_entry entry;

	c->payload.acpi = &ACPI_TWO_CPUS_ONE_DISK;
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_int_equal(entry.mode, ENTRY_PVH32);
	assert_int_equal(read_start_info(g).rsdp_paddr, LAYOUT_ACPI);
	assert_int_equal(scan_bios_area_for_rsdp(g), LAYOUT_ACPI);
	assert_acpi_tables_at(g, LAYOUT_ACPI, 2);
	free(c);
}

static void test_without_acpi_there_is_no_rsdp(void **state)
{
	struct guest *g = *state;
	struct boot_case *c =
	    bzimage_case(BZ_CMDLINE_SIZE, BZ_INITRD_ADDR_MAX, BZ_INIT_SIZE, CMDLINE, false);
	struct boot_entry entry;

	assert_null(c->payload.acpi);
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_int_equal(scan_bios_area_for_rsdp(g), 0);
	assert_int_equal(zero_page(g)->acpi_rsdp_addr, 0);
	free(c);
}

static void test_bad_acpi_configuration_fails_with_reason(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(false, CMDLINE, false, 2);
	struct acpi_config bad = ACPI_TWO_CPUS_ONE_DISK;

	bad.virtio[0].irq = 4; /* the serial port's */
	c->payload.acpi = &bad;
	assert_int_equal(run_setup(g, c, &(struct boot_entry){0}), -EINVAL);
	free(c);
}

/* ---- errors ---- */

static char *repeat(char ch, size_t len)
{
	char *s = malloc(len + 1);
	assert_non_null(s);
	memset(s, ch, len);
	s[len] = '\0';
	return s;
}

static void test_cmdline_longer_than_vmlinux_limit_is_e2big(void **state)
{
	struct guest *g = *state;
	char *longest = repeat('a', LAYOUT_CMDLINE_MAX - 1);
	char *too_long = repeat('b', LAYOUT_CMDLINE_MAX);
	struct boot_case *c = elf_case(false, too_long, false, 1);
	struct boot_entry entry;

	expect_failure(g, c, -E2BIG);
	c->payload.cmdline = longest;
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_cmdline_at_0x20000(g, longest);
	assert_int_equal(zero_page(g)->hdr.cmd_line_ptr, LAYOUT_CMDLINE);

	/* The PVH entry has the same limit. */
	free(c);
	c = elf_case(true, too_long, false, 1);
	expect_failure(g, c, -E2BIG);
	free(c);
	free(longest);
	free(too_long);
}

static void test_cmdline_longer_than_bzimage_cmdline_size_is_e2big(void **state)
{
	struct guest *g = *state;
	struct boot_case *c =
	    bzimage_case(16, BZ_INITRD_ADDR_MAX, BZ_INIT_SIZE, "0123456789abcdefX", false);
	struct boot_entry entry;

	expect_failure(g, c, -E2BIG);
	c->payload.cmdline = "0123456789abcdef"; /* exactly cmdline_size */
	assert_int_equal(run_setup(g, c, &entry), 0);
	assert_cmdline_at_0x20000(g, "0123456789abcdef");
	free(c);
}

static void test_initrd_too_big_for_memory_is_erange(void **state)
{
	struct guest *g = *state;
	struct boot_case *c = elf_case(true, CMDLINE, false, 1);
	uint8_t *huge = calloc(1, GUEST_SIZE);

	assert_non_null(huge);
	c->payload.initrd = huge;
	c->payload.initrd_size = GUEST_SIZE;
	expect_failure(g, c, -ERANGE);
	c->payload.initrd_size = GUEST_SIZE + 1;
	expect_failure(g, c, -ERANGE);
	/* Fits in memory, but not between the kernel's end and the end of memory. */
	c->payload.initrd_size = GUEST_SIZE - ELF_LOAD_GPA - PAGE_SIZE;
	expect_failure(g, c, -ERANGE);
	free(c);

	c = bzimage_case(BZ_CMDLINE_SIZE, 0xffffff, BZ_INIT_SIZE, CMDLINE, true);
	/* initrd_addr_max below the kernel leaves no room at all. */
	expect_failure(g, c, -ERANGE);
	free(c);
	free(huge);
}

static void test_kernel_not_fitting_in_memory_is_erange(void **state)
{
	struct guest *g = *state;
	struct gmem small = g->mem;
	struct boot_case *c = elf_case(true, CMDLINE, false, 1);
	struct boot_entry entry;
	const char *why = NULL;

	/* A 16 MiB guest ends where the vmlinux starts. */
	assert_int_equal(gmem_layout(&small, 16 * MiB), 0);
	small.regions[0].host = g->ram;
	assert_int_equal(x86_boot_setup(&small, &c->payload, &entry, &why), -ERANGE);
	assert_non_null(why);
	free(c);

	/* A bzImage whose decompressor needs more than the guest has. */
	c = bzimage_case(BZ_CMDLINE_SIZE, BZ_INITRD_ADDR_MAX, (uint32_t)GUEST_SIZE, CMDLINE, false);
	expect_failure(g, c, -ERANGE);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, guest_setup, guest_teardown)
	    T(test_pvh_elf_enters_at_pvh_entry_with_start_info_at_0x6000),
	    T(test_pvh_memory_map_describes_guest_ram),
	    T(test_pvh_initrd_copied_high_and_recorded_as_module),
	    T(test_pvh_without_initrd_has_no_modules),
	    T(test_pvh_writes_cmdline_kernel_and_32bit_gdt),
	    T(test_elf_without_note_enters_64bit_with_zero_page_at_0x7000),
	    T(test_zero_page_e820_covers_guest_ram),
	    T(test_linux64_page_tables_at_0x9000_identity_map_first_gib),
	    T(test_bzimage_enters_at_0x100200_with_protected_mode_code_at_1mib),
	    T(test_bzimage_zero_page_carries_the_image_setup_header),
	    T(test_bzimage_initrd_stays_below_initrd_addr_max),
	    T(test_mptable_at_0x9fc00_is_valid_with_one_entry_per_cpu),
	    T(test_bad_cpu_count_fails_with_reason),
	    T(test_acpi_rsdp_in_the_bios_area_and_in_the_zero_page),
	    T(test_acpi_rsdp_in_the_pvh_start_info),
	    T(test_without_acpi_there_is_no_rsdp),
	    T(test_bad_acpi_configuration_fails_with_reason),
	    T(test_cmdline_longer_than_vmlinux_limit_is_e2big),
	    T(test_cmdline_longer_than_bzimage_cmdline_size_is_e2big),
	    T(test_initrd_too_big_for_memory_is_erange),
	    T(test_kernel_not_fitting_in_memory_is_erange),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
