#include "cpu.h"

#include "layout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CR0_PE	 (1ULL << 0)
#define CR0_ET	 (1ULL << 4)
#define CR0_PG	 (1ULL << 31)
#define CR4_PAE	 (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_PRESENT  (1ULL << 0)
#define PTE_WRITE    (1ULL << 1)
#define PTE_PAGESIZE (1ULL << 7)

/* flags (bits 52-55 G/DB/L/AVL and 40-47 P/DPL/S/type), base, limit -> descriptor */
static uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000) << 32) | ((uint64_t)(flags & 0xf0ff) << 40) |
	       ((uint64_t)(limit & 0x000f0000) << 32) | ((uint64_t)(base & 0x00ffffff) << 16) |
	       (uint64_t)(limit & 0x0000ffff);
}

void gdt_build(uint64_t gdt[GDT_ENTRIES], enum boot_entry_mode mode)
{
	gdt[0] = 0;
	gdt[1] = 0;
	/* code: present, ring 0, execute/read, accessed; 64-bit (L) or 32-bit (DB) */
	gdt[2] = gdt_entry(mode == ENTRY_LINUX64 ? 0xa09b : 0xc09b, 0, 0xfffff);
	/* data: present, ring 0, read/write, accessed, 32-bit, 4 KiB granular */
	gdt[3] = gdt_entry(0xc093, 0, 0xfffff);
	/* a busy 32/64-bit TSS: VMX refuses to enter with an unusable TR */
	gdt[4] = gdt_entry(0x008b, 0, 0x67);
}

struct kvm_segment segment_from_gdt(uint64_t descriptor, uint16_t selector)
{
	uint32_t limit = (uint32_t)((descriptor & 0xffff) | ((descriptor >> 32) & 0xf0000));
	struct kvm_segment seg = {
	    .base = ((descriptor >> 16) & 0xffffff) | ((descriptor >> 32) & 0xff000000),
	    .selector = selector,
	    .type = (descriptor >> 40) & 0xf,
	    .present = (descriptor >> 47) & 1,
	    .dpl = (descriptor >> 45) & 3,
	    .db = (descriptor >> 54) & 1,
	    .s = (descriptor >> 44) & 1,
	    .l = (descriptor >> 53) & 1,
	    .g = (descriptor >> 55) & 1,
	    .avl = (descriptor >> 52) & 1,
	};
	/* KVM wants the limit in bytes; a 4 KiB-granular limit covers whole pages. */
	seg.limit = seg.g ? (limit << 12) | 0xfff : limit;
	seg.unusable = !seg.present;
	return seg;
}

int boot_tables_write(const struct gmem *mem, enum boot_entry_mode mode)
{
	uint64_t gdt[GDT_ENTRIES];
	int err;

	gdt_build(gdt, mode);
	err = gmem_write(mem, LAYOUT_GDT, gdt, sizeof(gdt));
	if (err || mode != ENTRY_LINUX64)
		return err;

	uint64_t pml4[512] = {LAYOUT_PDPT | PTE_PRESENT | PTE_WRITE};
	uint64_t pdpt[512] = {LAYOUT_PD | PTE_PRESENT | PTE_WRITE};
	uint64_t pd[512];
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_PAGESIZE;
	err = gmem_write(mem, LAYOUT_PML4, pml4, sizeof(pml4));
	if (!err)
		err = gmem_write(mem, LAYOUT_PDPT, pdpt, sizeof(pdpt));
	if (!err)
		err = gmem_write(mem, LAYOUT_PD, pd, sizeof(pd));
	return err;
}

void boot_sregs(struct kvm_sregs *sregs, enum boot_entry_mode mode)
{
	uint64_t gdt[GDT_ENTRIES];

	gdt_build(gdt, mode);
	sregs->gdt.base = LAYOUT_GDT;
	sregs->gdt.limit = sizeof(gdt) - 1;
	sregs->idt.base = 0;
	sregs->idt.limit = 0;
	sregs->cs = segment_from_gdt(gdt[2], SEL_CODE);
	sregs->ds = segment_from_gdt(gdt[3], SEL_DATA);
	sregs->es = sregs->ds;
	sregs->fs = sregs->ds;
	sregs->gs = sregs->ds;
	sregs->ss = sregs->ds;
	sregs->tr = segment_from_gdt(gdt[4], SEL_TSS);
	sregs->cr0 = CR0_PE | CR0_ET;
	sregs->cr4 = 0;
	sregs->efer = 0;
	if (mode == ENTRY_LINUX64) {
		sregs->cr3 = LAYOUT_PML4;
		sregs->cr4 |= CR4_PAE;
		sregs->cr0 |= CR0_PG;
		sregs->efer |= EFER_LME | EFER_LMA;
	}
}

void boot_regs(struct kvm_regs *regs, enum boot_entry_mode mode, uint64_t entry,
	       uint64_t boot_info_gpa)
{
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 2; /* bit 1 is reserved and always set; interrupts off */
	regs->rip = entry;
	if (mode == ENTRY_PVH32) {
		regs->rbx = boot_info_gpa; /* hvm_start_info */
	} else {
		regs->rsi = boot_info_gpa; /* boot_params */
		regs->rsp = LAYOUT_BOOT_STACK;
		regs->rbp = LAYOUT_BOOT_STACK;
	}
}

static unsigned int bits_for(unsigned int count)
{
	unsigned int bits = 0;
	while ((1u << bits) < count)
		bits++;
	return bits;
}

static bool cpuid_find(const struct kvm_cpuid_entry2 *entries, unsigned int nr_entries,
		       uint32_t function, uint32_t index)
{
	for (unsigned int i = 0; i < nr_entries; i++)
		if (entries[i].function == function && entries[i].index == index)
			return true;
	return false;
}

unsigned int cpuid_add_topology_subleaves(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries,
					  unsigned int capacity)
{
	static const uint32_t leaves[] = {0xb, 0x1f};
	uint32_t max_basic = 0;

	for (unsigned int i = 0; i < nr_entries; i++)
		if (entries[i].function == 0)
			max_basic = entries[i].eax;
	for (unsigned int l = 0; l < sizeof(leaves) / sizeof(leaves[0]); l++) {
		if (max_basic < leaves[l])
			continue;
		for (uint32_t index = 0; index < 3; index++) {
			if (cpuid_find(entries, nr_entries, leaves[l], index))
				continue;
			if (nr_entries == capacity)
				return nr_entries;
			entries[nr_entries++] = (struct kvm_cpuid_entry2){
			    .function = leaves[l],
			    .index = index,
			    .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
			};
		}
	}
	return nr_entries;
}

void cpuid_patch(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries, unsigned int index,
		 unsigned int count)
{
	unsigned int sharing;

	for (unsigned int i = 0; i < nr_entries; i++) {
		struct kvm_cpuid_entry2 *e = &entries[i];
		switch (e->function) {
		case 1:
			/* initial APIC ID and logical processor count; HTT when several */
			e->ebx = (e->ebx & 0xffff) | (index << 24) | ((count & 0xff) << 16);
			e->ecx |= 1u << 31; /* running on a hypervisor */
			if (count > 1)
				e->edx |= 1u << 28;
			else
				e->edx &= ~(1u << 28);
			break;
		case 4:
		case 0x8000001d:
			/* Deterministic cache parameters (Intel 4, AMD 0x8000001d): one thread per
			 * core, so a core's own caches (L1, L2) are shared by no other CPU and the
			 * L3 by all of them (EAX[25:14] = sharing CPUs - 1); Intel's also the cores
			 * per package - 1 (EAX[31:26]). The level is EAX[7:5]; type 0 ends the
			 * list. */
			if ((e->eax & 0x1f) == 0)
				break;
			sharing = ((e->eax >> 5) & 7) >= 3 ? count - 1 : 0;
			e->eax = (e->eax & ~(0xfffu << 14)) | ((sharing & 0xfff) << 14);
			if (e->function == 4)
				e->eax = (e->eax & 0x3ffffff) | ((count - 1) << 26);
			break;
		case 0xb:
		case 0x1f:
			/* level 0: SMT (one thread per core); level 1: cores in the package */
			e->edx = index;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = bits_for(count);
				e->ebx = count;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = 0;
				e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x80000008:
			/* AMD: number of cores - 1 and the APIC ID width */
			e->ecx = (e->ecx & ~0xf0ffu) | (count - 1) | (bits_for(count) << 12);
			break;
		case 0x8000001e:
			/* AMD: extended APIC ID, core ID, one thread per core, node 0 */
			e->eax = index;
			e->ebx = index & 0xff;
			e->ecx = 0;
			break;
		case CPUID_HYPERVISOR_LEAF:
			/* KVM's signature, its feature leaf the highest: what Linux's kvm guest
			 * code looks for (kvm_para_available) */
			e->eax =
			    e->eax > CPUID_KVM_FEATURES_LEAF ? e->eax : CPUID_KVM_FEATURES_LEAF;
			memcpy(&e->ebx, "KVMK", 4);
			memcpy(&e->ecx, "VMKV", 4);
			memcpy(&e->edx, "M\0\0\0", 4);
			break;
		default:
			break;
		}
	}
	cpuid_fix_xsave(entries, nr_entries);
}

static struct kvm_cpuid_entry2 *cpuid_entry(struct kvm_cpuid_entry2 *entries,
					    unsigned int nr_entries, uint32_t function,
					    uint32_t index)
{
	for (unsigned int i = 0; i < nr_entries; i++)
		if (entries[i].function == function && entries[i].index == index)
			return &entries[i];
	return NULL;
}

void cpuid_fix_xsave(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries)
{
	struct kvm_cpuid_entry2 *leaf0 = cpuid_entry(entries, nr_entries, 0xd, 0);
	struct kvm_cpuid_entry2 *leaf1 = cpuid_entry(entries, nr_entries, 0xd, 1);
	uint64_t xcr0, xss = 0;
	uint32_t max_size = XSAVE_LEGACY_AND_HEADER_SIZE;

	if (!leaf0)
		return;
	xcr0 = leaf0->eax | (uint64_t)leaf0->edx << 32;
	if (leaf1)
		xss = leaf1->ecx | (uint64_t)leaf1->edx << 32;
	/* x87 and SSE live in the legacy area; every other component needs its sub-leaf
	 * (size in EAX, offset in EBX, ECX bit 0 set for a supervisor component). */
	for (unsigned int bit = 2; bit < 63; bit++) {
		struct kvm_cpuid_entry2 *component = cpuid_entry(entries, nr_entries, 0xd, bit);
		uint64_t mask = 1ULL << bit;
		bool user = component && component->eax && !(component->ecx & 1);
		bool supervisor = component && component->eax && (component->ecx & 1);

		if ((xcr0 & mask) && !user)
			xcr0 &= ~mask; /* offered without a size or as supervisor state */
		if ((xss & mask) && !supervisor)
			xss &= ~mask;
		if (!component)
			continue;
		if (!((xcr0 | xss) & mask)) {
			/* a component nobody may enable describes nothing */
			component->eax = component->ebx = component->ecx = component->edx = 0;
			continue;
		}
		if ((xcr0 & mask) && component->ebx + component->eax > max_size)
			max_size = component->ebx + component->eax;
	}
	leaf0->eax = (uint32_t)xcr0;
	leaf0->edx = (uint32_t)(xcr0 >> 32);
	/* ECX: the standard-format area for every feature XCR0 may enable; EBX: for the
	 * features enabled now, which is what cpuid_boot_xcr0 gives the vCPU at boot (KVM
	 * keeps EBX current after each XSETBV it sees). */
	leaf0->ecx = max_size;
	leaf0->ebx = max_size;
	if (leaf1) {
		leaf1->ecx = (uint32_t)xss;
		leaf1->edx = (uint32_t)(xss >> 32);
	}
}

uint64_t cpuid_boot_xcr0(const struct kvm_cpuid_entry2 *entries, unsigned int nr_entries)
{
	for (unsigned int i = 0; i < nr_entries; i++) {
		const struct kvm_cpuid_entry2 *e = &entries[i];
		if (e->function == 1 && !(e->ecx & CPUID_1_ECX_XSAVE))
			return 0;
	}
	for (unsigned int i = 0; i < nr_entries; i++) {
		const struct kvm_cpuid_entry2 *e = &entries[i];
		if (e->function == 0xd && e->index == 0)
			return (e->eax | (uint64_t)e->edx << 32) | XCR0_X87;
	}
	return 0;
}

void cpuid_enable_tsc_deadline(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries)
{
	for (unsigned int i = 0; i < nr_entries; i++)
		if (entries[i].function == 1)
			entries[i].ecx |= 1u << 24;
}

static bool cpuid_has_subleaves(uint32_t function)
{
	switch (function) {
	case 0x4:
	case 0x7:
	case 0xb:
	case 0xd:
	case 0xf:
	case 0x10:
	case 0x12:
	case 0x14:
	case 0x17:
	case 0x18:
	case 0x1d:
	case 0x1f:
	case 0x20:
	case 0x8000001d:
	case 0x80000020:
		return true;
	default:
		return false;
	}
}

int cpuid_parse_dump_line(const char *line, struct kvm_cpuid_entry2 *entry)
{
	unsigned int function, index, eax, ebx, ecx, edx;
	int end = 0;

	if (sscanf(line, "cpuid %x %x: %x %x %x %x%n", &function, &index, &eax, &ebx, &ecx, &edx,
		   &end) != 6 ||
	    end == 0)
		return -EINVAL;
	memset(entry, 0, sizeof(*entry));
	entry->function = function;
	entry->index = index;
	entry->flags = cpuid_has_subleaves(function) ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
	entry->eax = eax;
	entry->ebx = ebx;
	entry->ecx = ecx;
	entry->edx = edx;
	return 0;
}

unsigned int boot_msrs(struct kvm_msr_entry *entries)
{
	static const struct {
		uint32_t index;
		uint64_t value;
	} msrs[BOOT_MSR_COUNT] = {
	    {0x174, 0},		    /* IA32_SYSENTER_CS */
	    {0x175, 0},		    /* IA32_SYSENTER_ESP */
	    {0x176, 0},		    /* IA32_SYSENTER_EIP */
	    {0xc0000081, 0},	    /* STAR */
	    {0xc0000082, 0},	    /* LSTAR */
	    {0xc0000083, 0},	    /* CSTAR */
	    {0xc0000084, 0},	    /* SYSCALL_MASK */
	    {0xc0000102, 0},	    /* KERNEL_GS_BASE */
	    {0x1a0, 1},		    /* IA32_MISC_ENABLE: fast strings */
	    {0x2ff, (1 << 11) | 6}, /* MTRRdefType: MTRRs on, default write-back */
	};
	for (unsigned int i = 0; i < BOOT_MSR_COUNT; i++) {
		memset(&entries[i], 0, sizeof(entries[i]));
		entries[i].index = msrs[i].index;
		entries[i].data = msrs[i].value;
	}
	return BOOT_MSR_COUNT;
}

#define APIC_LVT0	 0x350
#define APIC_LVT1	 0x360
#define APIC_MODE_MASK	 0x700
#define APIC_MODE_NMI	 0x400
#define APIC_MODE_EXTINT 0x700

static void lapic_set_mode(struct kvm_lapic_state *lapic, unsigned int reg, uint32_t mode)
{
	uint32_t value;
	memcpy(&value, &lapic->regs[reg], sizeof(value));
	value = (value & ~APIC_MODE_MASK) | mode;
	memcpy(&lapic->regs[reg], &value, sizeof(value));
}

void lapic_set_lint(struct kvm_lapic_state *lapic)
{
	lapic_set_mode(lapic, APIC_LVT0, APIC_MODE_EXTINT);
	lapic_set_mode(lapic, APIC_LVT1, APIC_MODE_NMI);
}
