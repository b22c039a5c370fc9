/*
 * x86_64 vCPU boot state: GDT, identity page tables, registers for the PVH and 64-bit
 * entries, CPUID topology patching, boot MSRs and the LAPIC's LINT pins. Pure functions
 * over KVM's structures, unit-tested without KVM.
 */
#ifndef WISP_X86_CPU_H
#define WISP_X86_CPU_H

#include "../../memory.h"

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#define GDT_ENTRIES 5
#define SEL_CODE    0x10 /* __BOOT_CS of the Linux boot protocol */
#define SEL_DATA    0x18 /* __BOOT_DS */
#define SEL_TSS	    0x20

enum boot_entry_mode { ENTRY_PVH32, ENTRY_LINUX64 };

/* GDT entries for the given mode (code segment 32- or 64-bit). */
void gdt_build(uint64_t gdt[GDT_ENTRIES], enum boot_entry_mode mode);
/* Converts a GDT descriptor into KVM's segment form. */
struct kvm_segment segment_from_gdt(uint64_t descriptor, uint16_t selector);
/* Writes the GDT and, for 64-bit entry, identity page tables for the first 1 GiB. */
int boot_tables_write(const struct gmem *mem, enum boot_entry_mode mode);
void boot_sregs(struct kvm_sregs *sregs, enum boot_entry_mode mode);
void boot_regs(struct kvm_regs *regs, enum boot_entry_mode mode, uint64_t entry,
	       uint64_t boot_info_gpa);

/* Adjusts KVM's supported CPUID for vCPU `index` of `count`: APIC IDs and topology
 * (leaves 1, 4, 0xb, 0x1f, 0x80000008, 0x8000001d, 0x8000001e: one package of `count`
 * single-thread cores, APIC id = index), the hypervisor bit and KVM's signature leaf,
 * leaf 0xd (cpuid_fix_xsave). */
void cpuid_patch(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries, unsigned int index,
		 unsigned int count);

#define CPUID_HYPERVISOR_LEAF	     0x40000000u
#define CPUID_KVM_FEATURES_LEAF	     0x40000001u
#define CPUID_1_ECX_XSAVE	     (1u << 26)
#define XCR0_X87		     1ULL
#define XSAVE_LEGACY_AND_HEADER_SIZE 576u /* FXSAVE area (x87, SSE) + XSAVE header */

/* Makes leaf 0xd describe what it offers (called by cpuid_patch): a feature XCR0 (sub-leaf
 * 0 EAX/EDX) or IA32_XSS (sub-leaf 1 ECX/EDX) may enable keeps its bit only if its
 * sub-leaf gives it a size and the right kind (user or supervisor); a component's
 * sub-leaf whose bit is offered nowhere is zeroed; sub-leaf 0's ECX (and EBX, see
 * cpuid_boot_xcr0) is the standard-format size for every user feature offered, so a
 * guest summing the sub-leaves gets the size leaf 0xd states. */
void cpuid_fix_xsave(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries);

/* The XCR0 a vCPU starts with: every user feature leaf 0xd offers (a Linux guest
 * enables all of them it knows), 0 when the CPUID has no XSAVE (leave XCR0 alone).
 * Invisible to the guest until it sets CR4.OSXSAVE and its own XCR0; but KVM sizes leaf
 * 0xd's EBX by its idea of XCR0, which an emulated SVM that does not intercept XSETBV
 * (QEMU TCG, ci/kvm-harness) never updates: with this the size the guest reads matches
 * the features it enabled ("XSAVE consistency problem" otherwise). */
uint64_t cpuid_boot_xcr0(const struct kvm_cpuid_entry2 *entries, unsigned int nr_entries);

/* KVM's supported CPUID may hold only sub-leaf 0 of the x2APIC topology leaves (0xb,
 * 0x1f): seen under nested KVM, where the guest then found no core level (sub-leaf 1
 * all zero), against leaves 1 and 0x80000008 (a Linux guest on AMD reads the latter; one
 * on Intel reads 0xb, and would take each vCPU for a package). Adds the missing
 * sub-leaves 0 to 2 of each topology leaf up to the maximum basic leaf (for cpuid_patch
 * to fill in), at most up to `capacity` entries; returns the new number of entries. */
#define CPUID_TOPOLOGY_SUBLEAVES 6
unsigned int cpuid_add_topology_subleaves(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries,
					  unsigned int capacity);

/* Advertises the LAPIC's TSC-deadline mode (CPUID.1:ECX[24]): KVM emulates it but leaves
 * the bit out of its supported CPUID. Without it the guest calibrates its LAPIC timer,
 * which costs a quarter of a second of boot. */
void cpuid_enable_tsc_deadline(struct kvm_cpuid_entry2 *entries, unsigned int nr_entries);

/* Parses one line of tests/stress/cpuid_dump's output ("cpuid LEAF SUBLEAF: EAX EBX ECX
 * EDX", hex) into `entry` (the sub-leaf significant for the leaves that have them).
 * Returns 0 or -EINVAL. For the nested-KVM experiments only (WISP_DEBUG_CPUID_FILE). */
int cpuid_parse_dump_line(const char *line, struct kvm_cpuid_entry2 *entry);

#define BOOT_MSR_COUNT 10
/* Fills the MSRs every vCPU starts with; returns how many. */
unsigned int boot_msrs(struct kvm_msr_entry *entries);

/* Points LINT0 at ExtINT and LINT1 at NMI in a KVM_GET_LAPIC image. */
void lapic_set_lint(struct kvm_lapic_state *lapic);

#endif
