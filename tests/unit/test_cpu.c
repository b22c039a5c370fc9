/* Unit tests for the x86_64 vCPU boot state (arch/x86_64/cpu.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/cpu.h"
#include "arch/x86_64/layout.h"
#include "memory.h"
#include "test_support.h"

#define MiB (1ULL << 20)

#define CR0_PE	 (1ULL << 0)
#define CR0_ET	 (1ULL << 4)
#define CR0_PG	 (1ULL << 31)
#define CR4_PAE	 (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

/* ---- GDT and segments ---- */

static void test_gdt_64_bit_has_the_usual_descriptor_encodings(void **state)
{
	uint64_t gdt[GDT_ENTRIES];
	(void)state;

	memset(gdt, 0xff, sizeof(gdt));
	gdt_build(gdt, ENTRY_LINUX64);
	assert_int_equal(gdt[0], 0);
	assert_int_equal(gdt[1], 0);
	assert_int_equal(gdt[2], 0x00af9b000000ffffULL);
	assert_int_equal(gdt[3], 0x00cf93000000ffffULL);
	assert_int_equal(gdt[4], 0x00008b0000000067ULL);
}

static void test_gdt_32_bit_differs_only_in_code_segment(void **state)
{
	uint64_t gdt32[GDT_ENTRIES], gdt64[GDT_ENTRIES];
	(void)state;

	gdt_build(gdt32, ENTRY_PVH32);
	gdt_build(gdt64, ENTRY_LINUX64);
	assert_int_equal(gdt32[2], 0x00cf9b000000ffffULL);
	assert_int_equal(gdt32[0], gdt64[0]);
	assert_int_equal(gdt32[1], gdt64[1]);
	assert_int_equal(gdt32[3], gdt64[3]);
	assert_int_equal(gdt32[4], gdt64[4]);
}

static void test_selectors_index_the_gdt_entries(void **state)
{
	(void)state;

	assert_int_equal(SEL_CODE / 8, 2);
	assert_int_equal(SEL_DATA / 8, 3);
	assert_int_equal(SEL_TSS / 8, 4);
	assert_true(SEL_TSS / 8 < GDT_ENTRIES);
}

static void test_64_bit_code_segment_is_long_mode(void **state)
{
	uint64_t gdt[GDT_ENTRIES];
	(void)state;

	gdt_build(gdt, ENTRY_LINUX64);
	struct kvm_segment cs = segment_from_gdt(gdt[2], SEL_CODE);
	assert_int_equal(cs.selector, SEL_CODE);
	assert_int_equal(cs.base, 0);
	assert_int_equal(cs.limit, 0xffffffff);
	assert_int_equal(cs.type, 0xb);
	assert_int_equal(cs.s, 1);
	assert_int_equal(cs.present, 1);
	assert_int_equal(cs.dpl, 0);
	/* With L set, D must be clear or the CPU faults on the far jump. */
	assert_int_equal(cs.l, 1);
	assert_int_equal(cs.db, 0);
	assert_int_equal(cs.g, 1);
	assert_int_equal(cs.unusable, 0);
}

static void test_32_bit_code_segment_is_flat_protected_mode(void **state)
{
	uint64_t gdt[GDT_ENTRIES];
	(void)state;

	gdt_build(gdt, ENTRY_PVH32);
	struct kvm_segment cs = segment_from_gdt(gdt[2], SEL_CODE);
	assert_int_equal(cs.l, 0);
	assert_int_equal(cs.db, 1);
	assert_int_equal(cs.g, 1);
	assert_int_equal(cs.base, 0);
	assert_int_equal(cs.limit, 0xffffffff);
	assert_int_equal(cs.type, 0xb);
}

static void test_data_segment_is_flat_4gib_read_write(void **state)
{
	static const enum boot_entry_mode modes[] = {ENTRY_PVH32, ENTRY_LINUX64};
	uint64_t gdt[GDT_ENTRIES];
	(void)state;

	for (size_t m = 0; m < 2; m++) {
		gdt_build(gdt, modes[m]);
		struct kvm_segment ds = segment_from_gdt(gdt[3], SEL_DATA);
		assert_int_equal(ds.selector, SEL_DATA);
		assert_int_equal(ds.base, 0);
		assert_int_equal(ds.limit, 0xffffffff);
		assert_int_equal(ds.g, 1);
		assert_int_equal(ds.db, 1);
		assert_int_equal(ds.l, 0);
		assert_int_equal(ds.type, 0x3);
		assert_int_equal(ds.s, 1);
		assert_int_equal(ds.present, 1);
		assert_int_equal(ds.unusable, 0);
	}
}

static void test_tss_is_a_busy_system_segment(void **state)
{
	uint64_t gdt[GDT_ENTRIES];
	(void)state;

	gdt_build(gdt, ENTRY_LINUX64);
	struct kvm_segment tr = segment_from_gdt(gdt[4], SEL_TSS);
	assert_int_equal(tr.selector, SEL_TSS);
	assert_int_equal(tr.type, 0xb);
	assert_int_equal(tr.s, 0);
	assert_int_equal(tr.present, 1);
	assert_int_equal(tr.g, 0);
	assert_int_equal(tr.limit, 0x67);
	assert_int_equal(tr.unusable, 0);
}

static void test_segment_decodes_base_limit_and_every_flag(void **state)
{
	(void)state;

	/* base 0x12345678, limit 0xabcde, access 0x93, flags D=1 G=0 */
	struct kvm_segment a = segment_from_gdt(0x124a93345678bcdeULL, 0x2b);
	assert_int_equal(a.base, 0x12345678);
	assert_int_equal(a.limit, 0xabcde);
	assert_int_equal(a.selector, 0x2b);
	assert_int_equal(a.type, 3);
	assert_int_equal(a.s, 1);
	assert_int_equal(a.dpl, 0);
	assert_int_equal(a.present, 1);
	assert_int_equal(a.avl, 0);
	assert_int_equal(a.l, 0);
	assert_int_equal(a.db, 1);
	assert_int_equal(a.g, 0);

	/* base 0xfedcba98, limit 0x00001 4 KiB granular, access 0xfa (DPL 3 code), AVL */
	struct kvm_segment b = segment_from_gdt(0xfe90fadcba980001ULL, 0x33);
	assert_int_equal(b.base, 0xfedcba98);
	assert_int_equal(b.limit, 0x1fff);
	assert_int_equal(b.type, 0xa);
	assert_int_equal(b.dpl, 3);
	assert_int_equal(b.avl, 1);
	assert_int_equal(b.g, 1);
	assert_int_equal(b.db, 0);
	assert_int_equal(b.l, 0);
}

static void test_not_present_descriptor_is_unusable(void **state)
{
	(void)state;

	struct kvm_segment null_seg = segment_from_gdt(0, 0);
	assert_int_equal(null_seg.present, 0);
	assert_int_equal(null_seg.unusable, 1);
	struct kvm_segment cleared = segment_from_gdt(0x00cf13000000ffffULL, SEL_DATA);
	assert_int_equal(cleared.present, 0);
	assert_int_equal(cleared.unusable, 1);
}

/* ---- boot tables in guest memory ---- */

#define GUEST_SIZE (2 * MiB)

static int guest_setup(void **state)
{
	return guest_setup_with(state, GUEST_SIZE, GUEST_SIZE, 0xaa);
}

static void test_boot_tables_write_gdt_at_0x500(void **state)
{
	static const enum boot_entry_mode modes[] = {ENTRY_PVH32, ENTRY_LINUX64};
	struct guest *g = *state;
	uint64_t gdt[GDT_ENTRIES];

	for (size_t m = 0; m < 2; m++) {
		gdt_build(gdt, modes[m]);
		assert_int_equal(boot_tables_write(&g->mem, modes[m]), 0);
		assert_memory_equal(g->ram + LAYOUT_GDT, gdt, sizeof(gdt));
		assert_int_equal(g->ram[LAYOUT_GDT - 1], 0xaa);
		assert_int_equal(g->ram[LAYOUT_GDT + sizeof(gdt)], 0xaa);
	}
}

static void test_boot_tables_identity_map_first_gib_for_64_bit_entry(void **state)
{
	struct guest *g = *state;

	assert_int_equal(boot_tables_write(&g->mem, ENTRY_LINUX64), 0);
	assert_int_equal(guest_u64(g, LAYOUT_PML4), LAYOUT_PDPT | 0x3);
	assert_int_equal(guest_u64(g, LAYOUT_PDPT), LAYOUT_PD | 0x3);
	for (uint64_t i = 1; i < 512; i++) {
		assert_int_equal(guest_u64(g, LAYOUT_PML4 + i * 8), 0);
		assert_int_equal(guest_u64(g, LAYOUT_PDPT + i * 8), 0);
	}
	for (uint64_t i = 0; i < 512; i++)
		assert_int_equal(guest_u64(g, LAYOUT_PD + i * 8), (i << 21) | 0x83);
	assert_int_equal(g->ram[LAYOUT_PD + 0x1000], 0xaa);
}

static void test_boot_tables_for_pvh_write_no_page_tables(void **state)
{
	struct guest *g = *state;

	assert_int_equal(boot_tables_write(&g->mem, ENTRY_PVH32), 0);
	for (uint64_t gpa = LAYOUT_PML4; gpa < LAYOUT_PD + 0x1000; gpa++) {
		if (g->ram[gpa] != 0xaa)
			fail_msg("PVH boot wrote page-table byte at 0x%llx",
				 (unsigned long long)gpa);
	}
}

static void test_boot_tables_fail_when_guest_memory_is_missing(void **state)
{
	struct gmem mem;
	uint8_t *ram = malloc(0x9000);
	(void)state;

	/* Enough memory for the GDT but not for the page tables at 0x9000. */
	assert_non_null(ram);
	assert_int_equal(gmem_layout(&mem, 0x9000), 0);
	mem.regions[0].host = ram;
	assert_int_equal(boot_tables_write(&mem, ENTRY_PVH32), 0);
	assert_int_equal(boot_tables_write(&mem, ENTRY_LINUX64), -EFAULT);
	free(ram);

	assert_int_equal(gmem_layout(&mem, GUEST_SIZE), 0);
	assert_int_equal(boot_tables_write(&mem, ENTRY_PVH32), -EFAULT);
	assert_int_equal(boot_tables_write(&mem, ENTRY_LINUX64), -EFAULT);
}

/* ---- special and general registers ---- */

static void assert_segments_from_gdt(const struct kvm_sregs *s, enum boot_entry_mode mode)
{
	uint64_t gdt[GDT_ENTRIES];
	struct kvm_segment ds;

	gdt_build(gdt, mode);
	struct kvm_segment cs = segment_from_gdt(gdt[2], SEL_CODE);
	ds = segment_from_gdt(gdt[3], SEL_DATA);
	struct kvm_segment tr = segment_from_gdt(gdt[4], SEL_TSS);
	assert_memory_equal(&s->cs, &cs, sizeof(cs));
	assert_memory_equal(&s->ds, &ds, sizeof(ds));
	assert_memory_equal(&s->es, &ds, sizeof(ds));
	assert_memory_equal(&s->fs, &ds, sizeof(ds));
	assert_memory_equal(&s->gs, &ds, sizeof(ds));
	assert_memory_equal(&s->ss, &ds, sizeof(ds));
	assert_memory_equal(&s->tr, &tr, sizeof(tr));
	assert_int_equal(s->gdt.base, LAYOUT_GDT);
	assert_int_equal(s->gdt.limit, GDT_ENTRIES * 8 - 1);
	assert_int_equal(s->idt.base, 0);
	assert_int_equal(s->idt.limit, 0);
}

static void test_sregs_for_pvh_are_protected_mode_without_paging(void **state)
{
	struct kvm_sregs s;
	(void)state;

	memset(&s, 0, sizeof(s));
	s.cr0 = 0x60000010 | CR0_PG;
	s.cr4 = 0xffff;
	s.efer = 0xd01;
	boot_sregs(&s, ENTRY_PVH32);
	assert_int_equal(s.cr0, CR0_PE | CR0_ET);
	assert_int_equal(s.cr4, 0);
	assert_int_equal(s.efer, 0);
	assert_int_equal(s.cs.db, 1);
	assert_int_equal(s.cs.l, 0);
	assert_segments_from_gdt(&s, ENTRY_PVH32);
}

static void test_sregs_for_64_bit_enable_long_mode_paging(void **state)
{
	struct kvm_sregs s;
	(void)state;

	memset(&s, 0, sizeof(s));
	s.cr4 = 0xffff;
	s.efer = 0x1;
	boot_sregs(&s, ENTRY_LINUX64);
	assert_int_equal(s.cr0, CR0_PE | CR0_ET | CR0_PG);
	assert_int_equal(s.cr4, CR4_PAE);
	assert_int_equal(s.efer, EFER_LME | EFER_LMA);
	assert_int_equal(s.cr3, LAYOUT_PML4);
	assert_int_equal(s.cs.l, 1);
	assert_int_equal(s.cs.db, 0);
	assert_segments_from_gdt(&s, ENTRY_LINUX64);
}

static void test_sregs_keep_fields_kvm_owns(void **state)
{
	struct kvm_sregs s;
	(void)state;

	memset(&s, 0, sizeof(s));
	s.apic_base = 0xfee00900;
	s.cr8 = 5;
	s.interrupt_bitmap[0] = 0x1234;
	boot_sregs(&s, ENTRY_LINUX64);
	assert_int_equal(s.apic_base, 0xfee00900);
	assert_int_equal(s.cr8, 5);
	assert_int_equal(s.interrupt_bitmap[0], 0x1234);
}

static void test_regs_for_pvh_pass_start_info_in_rbx(void **state)
{
	struct kvm_regs r;
	struct kvm_regs expect;
	(void)state;

	memset(&r, 0xff, sizeof(r));
	boot_regs(&r, ENTRY_PVH32, 0x1000123, LAYOUT_PVH_INFO);
	memset(&expect, 0, sizeof(expect));
	expect.rip = 0x1000123;
	expect.rbx = LAYOUT_PVH_INFO;
	expect.rflags = 2;
	assert_memory_equal(&r, &expect, sizeof(r));
}

static void test_regs_for_64_bit_pass_boot_params_in_rsi_with_a_stack(void **state)
{
	struct kvm_regs r;
	struct kvm_regs expect;
	(void)state;

	memset(&r, 0xff, sizeof(r));
	boot_regs(&r, ENTRY_LINUX64, 0x100200, LAYOUT_ZERO_PAGE);
	memset(&expect, 0, sizeof(expect));
	expect.rip = 0x100200;
	expect.rsi = LAYOUT_ZERO_PAGE;
	expect.rsp = LAYOUT_BOOT_STACK;
	expect.rbp = LAYOUT_BOOT_STACK;
	expect.rflags = 2;
	assert_memory_equal(&r, &expect, sizeof(r));
}

static void test_boot_stack_does_not_overlap_boot_structures(void **state)
{
	(void)state;

	/* The stack grows down from LAYOUT_BOOT_STACK towards the zero page below it. */
	assert_true(LAYOUT_BOOT_STACK > LAYOUT_ZERO_PAGE + 0x1000);
	assert_true(LAYOUT_BOOT_STACK < LAYOUT_PML4);
	assert_int_equal(LAYOUT_BOOT_STACK & 0xf, 0);
}

/* ---- CPUID ---- */

#define NR_CPUID 10

static void cpuid_init(struct kvm_cpuid_entry2 *e)
{
	memset(e, 0, NR_CPUID * sizeof(*e));
	e[0] = (struct kvm_cpuid_entry2){.function = 0, .eax = 0x1f, .ebx = 0x756e6547};
	e[1] = (struct kvm_cpuid_entry2){
	    .function = 1, .eax = 0x906ea, .ebx = 0xff12abcd, .ecx = 0x7ffa3203, .edx = 0xfffffbff};
	e[2] = (struct kvm_cpuid_entry2){
	    .function = 4, .index = 0, .eax = 0xfc004121, .ebx = 0x1c0003f, .ecx = 0x3f};
	e[3] = (struct kvm_cpuid_entry2){
	    .function = 0xb, .index = 0, .eax = 9, .ebx = 9, .ecx = 0x155, .edx = 0x77};
	e[4] = (struct kvm_cpuid_entry2){
	    .function = 0xb, .index = 1, .eax = 9, .ebx = 9, .ecx = 0x155, .edx = 0x77};
	e[5] = (struct kvm_cpuid_entry2){
	    .function = 0xb, .index = 2, .eax = 9, .ebx = 9, .ecx = 0x155, .edx = 0x77};
	e[6] = (struct kvm_cpuid_entry2){.function = 0x1f, .index = 1, .eax = 9, .ebx = 9};
	e[7] = (struct kvm_cpuid_entry2){.function = 0x80000008, .eax = 0x3027, .ecx = 0x3ffff};
	e[8] = (struct kvm_cpuid_entry2){
	    .function = 0x8000001e, .eax = 0x77, .ebx = 0x1ff, .ecx = 0x3ff, .edx = 0x5};
	e[9] = (struct kvm_cpuid_entry2){.function = 7, .ebx = 0xdeadbeef, .ecx = 0x12345678};
}

static void test_cpuid_leaf1_has_apic_id_count_hypervisor_and_htt(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 3, 4);
	assert_int_equal(e[1].ebx >> 24, 3);
	assert_int_equal((e[1].ebx >> 16) & 0xff, 4);
	/* CLFLUSH line size and brand index stay as KVM reported them. */
	assert_int_equal(e[1].ebx & 0xffff, 0xabcd);
	assert_int_equal(e[1].ecx, 0x7ffa3203 | (1u << 31));
	assert_true(e[1].edx & (1u << 28));
	assert_int_equal(e[1].eax, 0x906ea);
}

static void test_cpuid_leaf1_single_cpu_clears_htt(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 0, 1);
	assert_int_equal(e[1].ebx >> 24, 0);
	assert_int_equal((e[1].ebx >> 16) & 0xff, 1);
	assert_false(e[1].edx & (1u << 28));
	assert_int_equal(e[1].edx, 0xfffffbff & ~(1u << 28));
	assert_true(e[1].ecx & (1u << 31));
}

static void test_cpuid_apic_id_matches_index_for_every_cpu(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	for (unsigned int count = 1; count <= 32; count++) {
		for (unsigned int index = 0; index < count; index++) {
			cpuid_init(e);
			cpuid_patch(e, NR_CPUID, index, count);
			assert_int_equal(e[1].ebx >> 24, index);
			assert_int_equal((e[1].ebx >> 16) & 0xff, count);
			assert_int_equal(e[3].edx, index);
			assert_int_equal(e[4].edx, index);
			assert_int_equal(e[8].eax, index);
		}
	}
}

static void test_cpuid_leaf1_count_uses_all_eight_bits(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 199, 200);
	assert_int_equal(e[1].ebx >> 24, 199);
	assert_int_equal((e[1].ebx >> 16) & 0xff, 200);
}

static void test_cpuid_leaf4_reports_cores_per_package(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 0, 6);
	assert_int_equal(e[2].eax >> 26, 5);
	assert_int_equal(e[2].eax & 0x3ff, 0x121);
	assert_int_equal(e[2].ebx, 0x1c0003f);
}

static void test_cpuid_leaf_b_describes_smt_and_core_levels(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 5, 6);
	/* subleaf 0: SMT level, one thread per core */
	assert_int_equal(e[3].eax, 0);
	assert_int_equal(e[3].ebx, 1);
	assert_int_equal(e[3].ecx, (1u << 8) | 0);
	assert_int_equal(e[3].edx, 5);
	/* subleaf 1: core level, 6 CPUs need 3 APIC-id bits */
	assert_int_equal(e[4].eax, 3);
	assert_int_equal(e[4].ebx, 6);
	assert_int_equal(e[4].ecx, (2u << 8) | 1);
	assert_int_equal(e[4].edx, 5);
	/* subleaf 2: invalid level terminates the enumeration */
	assert_int_equal(e[5].eax, 0);
	assert_int_equal(e[5].ebx, 0);
	assert_int_equal(e[5].ecx, 2);
	assert_int_equal(e[5].edx, 5);
	/* leaf 0x1f gets the same treatment */
	assert_int_equal(e[6].eax, 3);
	assert_int_equal(e[6].ebx, 6);
}

static void test_cpuid_leaf_b_shift_is_ceil_log2_of_count(void **state)
{
	static const struct {
		unsigned int count, bits;
	} cases[] = {{1, 0}, {2, 1}, {3, 2},  {4, 2},  {5, 3},
		     {8, 3}, {9, 4}, {16, 4}, {17, 5}, {32, 5}};
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cpuid_init(e);
		cpuid_patch(e, NR_CPUID, 0, cases[i].count);
		assert_int_equal(e[4].eax, cases[i].bits);
		assert_true((1u << e[4].eax) >= cases[i].count);
		assert_int_equal((e[7].ecx >> 12) & 0xf, cases[i].bits);
	}
}

static void test_cpuid_amd_leaves_report_core_count_and_ids(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 2, 4);
	/* 0x80000008: NC = count - 1, ApicIdSize = 2; the other bits are kept */
	assert_int_equal(e[7].ecx & 0xff, 3);
	assert_int_equal((e[7].ecx >> 12) & 0xf, 2);
	assert_int_equal(e[7].ecx & ~0xf0ffu, 0x3ffff & ~0xf0ffu);
	assert_int_equal(e[7].eax, 0x3027);
	/* 0x8000001e: extended APIC id, core id, one thread per core, node 0 */
	assert_int_equal(e[8].eax, 2);
	assert_int_equal(e[8].ebx, 2);
	assert_int_equal(e[8].ecx, 0);
}

static void test_cpuid_leaves_it_does_not_know_are_untouched(void **state)
{
	struct kvm_cpuid_entry2 before[NR_CPUID], e[NR_CPUID];
	(void)state;

	cpuid_init(before);
	cpuid_init(e);
	cpuid_patch(e, NR_CPUID, 1, 2);
	assert_memory_equal(&e[0], &before[0], sizeof(e[0]));
	assert_memory_equal(&e[9], &before[9], sizeof(e[9]));
}

static void test_cpuid_only_patches_the_first_nr_entries(void **state)
{
	struct kvm_cpuid_entry2 before[NR_CPUID], e[NR_CPUID];
	(void)state;

	cpuid_init(before);
	cpuid_init(e);
	cpuid_patch(e, 1, 1, 2);
	assert_memory_equal(e, before, sizeof(e));
}

/* KVM's table as seen under nested KVM: leaf 0xb has only sub-leaf 0. */
static unsigned int cpuid_init_without_core_level(struct kvm_cpuid_entry2 *e, uint32_t max_basic)
{
	memset(e, 0, NR_CPUID * sizeof(*e));
	e[0] = (struct kvm_cpuid_entry2){.function = 0, .eax = max_basic};
	e[1] = (struct kvm_cpuid_entry2){.function = 1, .eax = 0x60fb1};
	e[2] = (struct kvm_cpuid_entry2){.function = 0xb,
					 .index = 0,
					 .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
					 .ebx = 1,
					 .ecx = 0x100};
	return 3;
}

static const struct kvm_cpuid_entry2 *cpuid_entry(const struct kvm_cpuid_entry2 *e, unsigned int nr,
						  uint32_t function, uint32_t index)
{
	for (unsigned int i = 0; i < nr; i++)
		if (e[i].function == function && e[i].index == index)
			return &e[i];
	return NULL;
}

static void test_cpuid_missing_core_level_is_added_and_describes_every_vcpu(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	unsigned int nr = cpuid_init_without_core_level(e, 0xd);
	nr = cpuid_add_topology_subleaves(e, nr, NR_CPUID);
	assert_int_equal(nr, 5); /* sub-leaves 1 and 2 of 0xb; no 0x1f below max leaf 0xd */
	cpuid_patch(e, nr, 2, 4);
	const struct kvm_cpuid_entry2 *smt = cpuid_entry(e, nr, 0xb, 0);
	const struct kvm_cpuid_entry2 *core = cpuid_entry(e, nr, 0xb, 1);
	const struct kvm_cpuid_entry2 *end = cpuid_entry(e, nr, 0xb, 2);
	assert_non_null(smt);
	assert_non_null(core);
	assert_non_null(end);
	assert_int_equal(smt->ebx, 1);
	assert_int_equal(smt->ecx, 0x100);
	/* 4 vCPUs in the package, 2 APIC-id bits, x2APIC id 2 */
	assert_int_equal(core->eax, 2);
	assert_int_equal(core->ebx, 4);
	assert_int_equal(core->ecx, 0x201);
	assert_int_equal(core->edx, 2);
	assert_int_equal(core->flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	/* level type 0 ends the enumeration */
	assert_int_equal(end->ecx, 2);
	assert_int_equal(end->ebx, 0);
	assert_int_equal(end->flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	assert_null(cpuid_entry(e, nr, 0x1f, 0));
}

static void test_cpuid_topology_subleaves_complete_0x1f_only_up_to_the_max_leaf(void **state)
{
	struct kvm_cpuid_entry2 e[NR_CPUID];
	(void)state;

	unsigned int nr = cpuid_init_without_core_level(e, 0x1f);
	nr = cpuid_add_topology_subleaves(e, nr, NR_CPUID);
	assert_int_equal(nr, 8);
	for (uint32_t index = 0; index < 3; index++) {
		assert_non_null(cpuid_entry(e, nr, 0xb, index));
		assert_non_null(cpuid_entry(e, nr, 0x1f, index));
	}
	/* a CPU whose basic leaves end below 0xb gets none */
	nr = cpuid_init_without_core_level(e, 0xa);
	e[2].function = 7;
	assert_int_equal(cpuid_add_topology_subleaves(e, nr, NR_CPUID), nr);
}

static void test_cpuid_topology_subleaves_keep_existing_ones_and_the_capacity(void **state)
{
	struct kvm_cpuid_entry2 before[NR_CPUID], e[NR_CPUID];
	(void)state;

	/* the full table already has 0xb sub-leaves 0-2 and 0x1f sub-leaf 1 */
	cpuid_init(before);
	cpuid_init(e);
	assert_int_equal(cpuid_add_topology_subleaves(e, NR_CPUID - 2, NR_CPUID), NR_CPUID);
	assert_memory_equal(e, before, (NR_CPUID - 2) * sizeof(e[0]));
	assert_int_equal(e[NR_CPUID - 2].function, 0x1f);
	assert_int_equal(e[NR_CPUID - 2].index, 0);
	assert_int_equal(e[NR_CPUID - 1].function, 0x1f);
	assert_int_equal(e[NR_CPUID - 1].index, 2);
	/* no room: nothing written past the capacity */
	struct kvm_cpuid_entry2 small[NR_CPUID];
	unsigned int nr = cpuid_init_without_core_level(small, 0xd);
	memset(&small[nr], 0xab, sizeof(small[nr]) * (NR_CPUID - nr));
	assert_int_equal(cpuid_add_topology_subleaves(small, nr, nr + 1), nr + 1);
	assert_int_equal(small[nr].index, 1);
	assert_int_equal(small[nr + 1].function, 0xabababab);
}

/* ---- CPUID: caches, the hypervisor leaf, XSAVE ---- */

static void cpuid_cache_leaf(struct kvm_cpuid_entry2 *e, uint32_t function, uint32_t index,
			     unsigned int level, unsigned int type)
{
	*e = (struct kvm_cpuid_entry2){.function = function,
				       .index = index,
				       .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
				       /* host values: 2 threads share it, 8 cores, fully assoc. */
				       .eax = (7u << 26) | (1u << 14) | (1u << 9) | (level << 5) |
					      type,
				       .ebx = 0x1c0003f,
				       .ecx = 0x3f};
}

static void test_cpuid_cache_leaves_share_l1_l2_per_core_and_l3_by_all(void **state)
{
	struct kvm_cpuid_entry2 e[8];
	(void)state;

	for (unsigned int count = 1; count <= 32; count++) {
		uint32_t functions[] = {4, 0x8000001d};
		for (unsigned int f = 0; f < 2; f++) {
			cpuid_cache_leaf(&e[0], functions[f], 0, 1, 1);
			cpuid_cache_leaf(&e[1], functions[f], 1, 1, 2);
			cpuid_cache_leaf(&e[2], functions[f], 2, 2, 3);
			cpuid_cache_leaf(&e[3], functions[f], 3, 3, 3);
			e[4] = (struct kvm_cpuid_entry2){.function = functions[f], .index = 4};
			cpuid_patch(e, 5, count - 1, count);
			for (unsigned int i = 0; i < 4; i++) {
				unsigned int sharing = ((e[i].eax >> 14) & 0xfff) + 1;
				assert_int_equal(sharing, i == 3 ? count : 1);
				assert_int_equal(e[i].ebx, 0x1c0003f);
			}
			/* type, level, self-initialising kept */
			assert_int_equal(e[3].eax & 0x3fff, (1u << 9) | (3u << 5) | 3);
			if (functions[f] == 4)
				assert_int_equal((e[0].eax >> 26) + 1, count);
			else
				assert_int_equal(e[0].eax >> 26, 7); /* AMD's: left as given */
			/* the terminating sub-leaf stays all zero */
			assert_int_equal(e[4].eax, 0);
		}
	}
}

static void test_cpuid_hypervisor_leaf_says_kvm_and_reaches_its_feature_leaf(void **state)
{
	struct kvm_cpuid_entry2 e[2];
	char signature[13] = {0};
	(void)state;

	/* a table whose signature leaf is wrong or points nowhere */
	e[0] = (struct kvm_cpuid_entry2){.function = CPUID_HYPERVISOR_LEAF, .ebx = 0x12345678};
	e[1] = (struct kvm_cpuid_entry2){.function = CPUID_KVM_FEATURES_LEAF, .eax = 0x1fb};
	cpuid_patch(e, 2, 0, 1);
	memcpy(signature, &e[0].ebx, 4);
	memcpy(signature + 4, &e[0].ecx, 4);
	memcpy(signature + 8, &e[0].edx, 4);
	assert_memory_equal(signature, "KVMKVMKVM\0\0\0", 12);
	assert_int_equal(e[0].eax, CPUID_KVM_FEATURES_LEAF);
	/* KVM's features are its own */
	assert_int_equal(e[1].eax, 0x1fb);
	/* a higher maximum (Hyper-V leaves above) is kept */
	e[0].eax = 0x40000010;
	cpuid_patch(e, 2, 0, 1);
	assert_int_equal(e[0].eax, 0x40000010);
}

/* Leaf 0xd as KVM gives it on a CPU with AVX, MPX, AVX-512 and PKRU (offsets and sizes of
 * the standard format), plus whatever the test changes. */
#define NR_XSAVE 12
static unsigned int xsave_init(struct kvm_cpuid_entry2 *e)
{
	static const struct {
		uint32_t bit, size, offset;
	} components[] = {{2, 256, 576},  {3, 64, 960},	   {4, 64, 1024}, {5, 64, 1088},
			  {6, 512, 1152}, {7, 1024, 1664}, {9, 8, 2688}};
	unsigned int nr = 0;

	memset(e, 0, NR_XSAVE * sizeof(*e));
	e[nr++] = (struct kvm_cpuid_entry2){.function = 1, .ecx = CPUID_1_ECX_XSAVE};
	e[nr++] = (struct kvm_cpuid_entry2){
	    .function = 0xd, .index = 0, .eax = 0x2ff, .ebx = 576, .ecx = 2696};
	e[nr++] = (struct kvm_cpuid_entry2){.function = 0xd, .index = 1, .eax = 0xf};
	for (unsigned int i = 0; i < sizeof(components) / sizeof(components[0]); i++)
		e[nr++] = (struct kvm_cpuid_entry2){.function = 0xd,
						    .index = components[i].bit,
						    .eax = components[i].size,
						    .ebx = components[i].offset};
	return nr;
}

/* What a guest does: the standard-format size summed over the features XCR0 enables. */
static uint32_t xsave_size_from_subleaves(const struct kvm_cpuid_entry2 *e, unsigned int nr,
					  uint64_t xcr0)
{
	uint32_t size = 576;
	for (unsigned int bit = 2; bit < 63; bit++) {
		const struct kvm_cpuid_entry2 *c = cpuid_entry(e, nr, 0xd, bit);
		if ((xcr0 >> bit) & 1) {
			assert_non_null(c);
			if (c->ebx + c->eax > size)
				size = c->ebx + c->eax;
		}
	}
	return size;
}

static void test_cpuid_xsave_sizes_match_the_features_offered(void **state)
{
	struct kvm_cpuid_entry2 e[NR_XSAVE];
	(void)state;

	unsigned int nr = xsave_init(e);
	e[1].ecx = 4096; /* a stale maximum */
	cpuid_patch(e, nr, 0, 2);
	const struct kvm_cpuid_entry2 *leaf0 = cpuid_entry(e, nr, 0xd, 0);
	uint64_t xcr0 = leaf0->eax | (uint64_t)leaf0->edx << 32;
	assert_int_equal(xcr0, 0x2ff);
	assert_int_equal(leaf0->ecx, 2696);
	assert_int_equal(leaf0->ecx, xsave_size_from_subleaves(e, nr, xcr0));
	/* EBX is the size for the XCR0 the vCPU boots with */
	assert_int_equal(cpuid_boot_xcr0(e, nr), 0x2ff);
	assert_int_equal(leaf0->ebx, xsave_size_from_subleaves(e, nr, cpuid_boot_xcr0(e, nr)));
}

static void test_cpuid_xsave_drops_a_feature_without_a_size_and_sizes_without_it(void **state)
{
	struct kvm_cpuid_entry2 e[NR_XSAVE];
	(void)state;

	/* PKRU (bit 9) offered but its sub-leaf says nothing: the guest could not place it */
	unsigned int nr = xsave_init(e);
	struct kvm_cpuid_entry2 *pkru = (struct kvm_cpuid_entry2 *)cpuid_entry(e, nr, 0xd, 9);
	pkru->eax = 0;
	pkru->ebx = 0;
	cpuid_patch(e, nr, 0, 1);
	const struct kvm_cpuid_entry2 *leaf0 = cpuid_entry(e, nr, 0xd, 0);
	assert_int_equal(leaf0->eax, 0xff);
	assert_int_equal(leaf0->ecx, 2688); /* AVX-512's Hi16_ZMM ends there */
	assert_int_equal(leaf0->ecx, xsave_size_from_subleaves(e, nr, 0xff));
	assert_int_equal(cpuid_boot_xcr0(e, nr), 0xff);

	/* a sub-leaf missing altogether, and a user bit whose sub-leaf says supervisor */
	nr = xsave_init(e);
	e[nr - 1].function = 0x7; /* PKRU's sub-leaf gone */
	((struct kvm_cpuid_entry2 *)cpuid_entry(e, nr, 0xd, 3))->ecx = 1;
	cpuid_patch(e, nr, 0, 1);
	leaf0 = cpuid_entry(e, nr, 0xd, 0);
	assert_int_equal(leaf0->eax, 0xf7);
	assert_int_equal(leaf0->ecx, 2688);
}

static void test_cpuid_xsave_clears_subleaves_of_features_not_offered(void **state)
{
	struct kvm_cpuid_entry2 e[NR_XSAVE];
	(void)state;

	/* AVX-512 not offered (as with a host that has it but a KVM that hides it) */
	unsigned int nr = xsave_init(e);
	e[1].eax = 0x21f;
	cpuid_patch(e, nr, 0, 1);
	for (unsigned int bit = 5; bit <= 7; bit++) {
		const struct kvm_cpuid_entry2 *c = cpuid_entry(e, nr, 0xd, bit);
		assert_int_equal(c->eax | c->ebx | c->ecx | c->edx, 0);
	}
	const struct kvm_cpuid_entry2 *leaf0 = cpuid_entry(e, nr, 0xd, 0);
	assert_int_equal(leaf0->eax, 0x21f);
	assert_int_equal(leaf0->ecx, 2696); /* PKRU's place in the standard format */
	assert_int_equal(leaf0->ecx, xsave_size_from_subleaves(e, nr, 0x21f));
	/* x87 and SSE only: the legacy area and the header */
	nr = xsave_init(e);
	e[1].eax = 0x3;
	cpuid_patch(e, nr, 0, 1);
	assert_int_equal(cpuid_entry(e, nr, 0xd, 0)->ecx, XSAVE_LEGACY_AND_HEADER_SIZE);
	assert_int_equal(cpuid_entry(e, nr, 0xd, 0)->ebx, XSAVE_LEGACY_AND_HEADER_SIZE);
}

static void test_cpuid_xsave_keeps_supervisor_components_offered_in_xss(void **state)
{
	struct kvm_cpuid_entry2 e[NR_XSAVE + 1];
	(void)state;

	unsigned int nr = xsave_init(e);
	/* CET user state (bit 11), supervisor, offered in IA32_XSS */
	e[nr++] = (struct kvm_cpuid_entry2){.function = 0xd, .index = 11, .eax = 16, .ecx = 1};
	e[2].ecx = 1u << 11;
	cpuid_patch(e, nr, 0, 1);
	const struct kvm_cpuid_entry2 *cet = cpuid_entry(e, nr, 0xd, 11);
	assert_int_equal(cet->eax, 16);
	assert_int_equal(cpuid_entry(e, nr, 0xd, 1)->ecx, 1u << 11);
	/* not part of XCR0's standard-format size */
	assert_int_equal(cpuid_entry(e, nr, 0xd, 0)->ecx, 2696);
	/* a supervisor bit in XSS whose sub-leaf says user is dropped */
	nr = xsave_init(e);
	e[2].ecx = 1u << 9;
	cpuid_patch(e, nr, 0, 1);
	assert_int_equal(cpuid_entry(e, nr, 0xd, 1)->ecx, 0);
	assert_int_equal(cpuid_entry(e, nr, 0xd, 9)->eax, 8); /* still PKRU's, in XCR0 */
}

static void test_cpuid_boot_xcr0_is_zero_without_xsave_and_always_has_x87(void **state)
{
	struct kvm_cpuid_entry2 e[NR_XSAVE];
	(void)state;

	unsigned int nr = xsave_init(e);
	e[0].ecx = 0;
	assert_int_equal(cpuid_boot_xcr0(e, nr), 0);
	nr = xsave_init(e);
	e[1].eax = 0x6;
	assert_int_equal(cpuid_boot_xcr0(e, nr), 0x7);
	/* no leaf 0xd at all */
	assert_int_equal(cpuid_boot_xcr0(e, 1), 0);
	/* a table without leaf 0xd is left alone by the fix */
	struct kvm_cpuid_entry2 before[NR_XSAVE];
	nr = xsave_init(e);
	e[1].function = 0x7;
	memcpy(before, e, sizeof(e));
	cpuid_fix_xsave(e, nr);
	assert_memory_equal(e, before, sizeof(e));
}

static void test_cpuid_dump_line_parses_into_an_entry(void **state)
{
	struct kvm_cpuid_entry2 entry;
	(void)state;

	assert_int_equal(cpuid_parse_dump_line(
			     "cpuid 0000000d 01: 00000005 00000348 00000000 00000000\n", &entry),
			 0);
	assert_int_equal(entry.function, 0xd);
	assert_int_equal(entry.index, 1);
	assert_int_equal(entry.flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	assert_int_equal(entry.eax, 5);
	assert_int_equal(entry.ebx, 0x348);
	assert_int_equal(entry.ecx, 0);
	assert_int_equal(cpuid_parse_dump_line("cpuid 40000001 00: 0100fafb 0 0 1", &entry), 0);
	assert_int_equal(entry.function, 0x40000001);
	assert_int_equal(entry.flags, 0);
	assert_int_equal(entry.eax, 0x0100fafb);
	assert_int_equal(entry.edx, 1);
	assert_int_equal(cpuid_parse_dump_line("xcr0 00000000000000e7", &entry), -EINVAL);
	assert_int_equal(cpuid_parse_dump_line("cpuid 0000000d 01: 00000005", &entry), -EINVAL);
	assert_int_equal(cpuid_parse_dump_line("", &entry), -EINVAL);
}

/* ---- MSRs ---- */

static void test_boot_msrs_lists_each_msr_once_with_its_value(void **state)
{
	struct kvm_msr_entry msrs[BOOT_MSR_COUNT + 1];
	(void)state;

	memset(msrs, 0xff, sizeof(msrs));
	assert_int_equal(boot_msrs(msrs), BOOT_MSR_COUNT);
	for (unsigned int i = 0; i < BOOT_MSR_COUNT; i++) {
		assert_int_equal(msrs[i].reserved, 0);
		for (unsigned int j = 0; j < i; j++)
			assert_int_not_equal(msrs[i].index, msrs[j].index);
		switch (msrs[i].index) {
		case 0x1a0:
			assert_int_equal(msrs[i].data, 1);
			break;
		case 0x2ff:
			/* MTRRs enabled, default type write-back */
			assert_int_equal(msrs[i].data, 0x806);
			break;
		case 0x174:
		case 0x175:
		case 0x176:
		case 0xc0000081:
		case 0xc0000082:
		case 0xc0000083:
		case 0xc0000084:
		case 0xc0000102:
			assert_int_equal(msrs[i].data, 0);
			break;
		default:
			fail_msg("unexpected MSR 0x%x", msrs[i].index);
		}
	}
	assert_int_equal(msrs[BOOT_MSR_COUNT].index, 0xffffffff);
}

/* ---- LAPIC ---- */

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned int offset)
{
	return get_le32(&l->regs[offset]);
}

static void lapic_set_reg(struct kvm_lapic_state *l, unsigned int offset, uint32_t value)
{
	put_le32(&l->regs[offset], value);
}

static void test_lapic_lint0_is_extint_and_lint1_is_nmi(void **state)
{
	struct kvm_lapic_state l;
	(void)state;

	memset(&l, 0, sizeof(l));
	lapic_set_lint(&l);
	assert_int_equal((lapic_reg(&l, 0x350) >> 8) & 7, 7);
	assert_int_equal((lapic_reg(&l, 0x360) >> 8) & 7, 4);
	assert_int_equal(lapic_reg(&l, 0x350), 0x700);
	assert_int_equal(lapic_reg(&l, 0x360), 0x400);
}

static void test_lapic_lint_keeps_other_bits_and_registers(void **state)
{
	struct kvm_lapic_state l, before;
	(void)state;

	for (size_t i = 0; i < sizeof(l.regs); i++)
		l.regs[i] = (char)(i * 31 + 7);
	lapic_set_reg(&l, 0x350, 0x000105f5); /* masked, SMI mode, vector 0xf5 */
	lapic_set_reg(&l, 0x360, 0xfffffbff);
	before = l;
	lapic_set_lint(&l);
	assert_int_equal(lapic_reg(&l, 0x350), 0x000107f5);
	assert_int_equal(lapic_reg(&l, 0x360), 0xfffffcff);
	assert_memory_equal(l.regs, before.regs, 0x350);
	assert_memory_equal(l.regs + 0x354, before.regs + 0x354, 0x360 - 0x354);
	assert_memory_equal(l.regs + 0x364, before.regs + 0x364, sizeof(l.regs) - 0x364);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_gdt_64_bit_has_the_usual_descriptor_encodings),
	    cmocka_unit_test(test_gdt_32_bit_differs_only_in_code_segment),
	    cmocka_unit_test(test_selectors_index_the_gdt_entries),
	    cmocka_unit_test(test_64_bit_code_segment_is_long_mode),
	    cmocka_unit_test(test_32_bit_code_segment_is_flat_protected_mode),
	    cmocka_unit_test(test_data_segment_is_flat_4gib_read_write),
	    cmocka_unit_test(test_tss_is_a_busy_system_segment),
	    cmocka_unit_test(test_segment_decodes_base_limit_and_every_flag),
	    cmocka_unit_test(test_not_present_descriptor_is_unusable),
	    cmocka_unit_test_setup_teardown(test_boot_tables_write_gdt_at_0x500, guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_boot_tables_identity_map_first_gib_for_64_bit_entry, guest_setup,
		guest_teardown),
	    cmocka_unit_test_setup_teardown(test_boot_tables_for_pvh_write_no_page_tables,
					    guest_setup, guest_teardown),
	    cmocka_unit_test(test_boot_tables_fail_when_guest_memory_is_missing),
	    cmocka_unit_test(test_sregs_for_pvh_are_protected_mode_without_paging),
	    cmocka_unit_test(test_sregs_for_64_bit_enable_long_mode_paging),
	    cmocka_unit_test(test_sregs_keep_fields_kvm_owns),
	    cmocka_unit_test(test_regs_for_pvh_pass_start_info_in_rbx),
	    cmocka_unit_test(test_regs_for_64_bit_pass_boot_params_in_rsi_with_a_stack),
	    cmocka_unit_test(test_boot_stack_does_not_overlap_boot_structures),
	    cmocka_unit_test(test_cpuid_leaf1_has_apic_id_count_hypervisor_and_htt),
	    cmocka_unit_test(test_cpuid_leaf1_single_cpu_clears_htt),
	    cmocka_unit_test(test_cpuid_apic_id_matches_index_for_every_cpu),
	    cmocka_unit_test(test_cpuid_leaf1_count_uses_all_eight_bits),
	    cmocka_unit_test(test_cpuid_leaf4_reports_cores_per_package),
	    cmocka_unit_test(test_cpuid_leaf_b_describes_smt_and_core_levels),
	    cmocka_unit_test(test_cpuid_leaf_b_shift_is_ceil_log2_of_count),
	    cmocka_unit_test(test_cpuid_amd_leaves_report_core_count_and_ids),
	    cmocka_unit_test(test_cpuid_leaves_it_does_not_know_are_untouched),
	    cmocka_unit_test(test_cpuid_only_patches_the_first_nr_entries),
	    cmocka_unit_test(test_cpuid_missing_core_level_is_added_and_describes_every_vcpu),
	    cmocka_unit_test(test_cpuid_topology_subleaves_complete_0x1f_only_up_to_the_max_leaf),
	    cmocka_unit_test(test_cpuid_topology_subleaves_keep_existing_ones_and_the_capacity),
	    cmocka_unit_test(test_cpuid_cache_leaves_share_l1_l2_per_core_and_l3_by_all),
	    cmocka_unit_test(test_cpuid_hypervisor_leaf_says_kvm_and_reaches_its_feature_leaf),
	    cmocka_unit_test(test_cpuid_xsave_sizes_match_the_features_offered),
	    cmocka_unit_test(test_cpuid_xsave_drops_a_feature_without_a_size_and_sizes_without_it),
	    cmocka_unit_test(test_cpuid_xsave_clears_subleaves_of_features_not_offered),
	    cmocka_unit_test(test_cpuid_xsave_keeps_supervisor_components_offered_in_xss),
	    cmocka_unit_test(test_cpuid_boot_xcr0_is_zero_without_xsave_and_always_has_x87),
	    cmocka_unit_test(test_cpuid_dump_line_parses_into_an_entry),
	    cmocka_unit_test(test_boot_msrs_lists_each_msr_once_with_its_value),
	    cmocka_unit_test(test_lapic_lint0_is_extint_and_lint1_is_nmi),
	    cmocka_unit_test(test_lapic_lint_keeps_other_bits_and_registers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
