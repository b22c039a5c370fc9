/*
 * cpuid_dump: prints every CPUID leaf and sub-leaf the CPU it runs on reports, one line
 * each ("LEAF SUBLEAF: EAX EBX ECX EDX", hex), and XCR0. Run inside a guest (static,
 * from an initramfs) under wisp and under QEMU to compare what each VMM gives its guest
 * (tests/stress/guest_deaths.py --cpuid). Sub-leaves: 0..63 for the leaves that have
 * them, 0 for the others.
 */
#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>

static int has_subleaves(uint32_t leaf)
{
	switch (leaf) {
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
	case 0x23:
	case 0x24:
	case 0x8000001d:
	case 0x80000020:
	case 0x80000026:
		return 1;
	default:
		return 0;
	}
}

static void dump_range(uint32_t base)
{
	uint32_t eax, ebx, ecx, edx, max;

	__cpuid_count(base, 0, max, ebx, ecx, edx);
	if (max < base || max > base + 0xff)
		max = base;
	for (uint32_t leaf = base; leaf <= max; leaf++) {
		uint32_t last = has_subleaves(leaf) ? 63 : 0;
		for (uint32_t sub = 0; sub <= last; sub++) {
			__cpuid_count(leaf, sub, eax, ebx, ecx, edx);
			printf("cpuid %08x %02x: %08x %08x %08x %08x\n", leaf, sub, eax, ebx, ecx,
			       edx);
		}
	}
}

int main(void)
{
	uint32_t eax, ebx, ecx, edx;

	dump_range(0);
	dump_range(0x40000000);
	dump_range(0x80000000);
	__cpuid_count(1, 0, eax, ebx, ecx, edx);
	if (ecx & (1u << 27)) { /* OSXSAVE: xgetbv works */
		uint32_t lo, hi;
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		printf("xcr0 %08x%08x\n", hi, lo);
		__cpuid_count(0xd, 1, eax, ebx, ecx, edx);
		if (eax & (1u << 1)) { /* XGETBV with ECX=1: XINUSE */
			__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
			printf("xinuse %08x%08x\n", hi, lo);
		}
	}
	return 0;
}
