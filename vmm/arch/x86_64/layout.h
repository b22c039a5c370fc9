/* Where wisp puts things in guest-physical memory on x86_64. */
#ifndef WISP_X86_LAYOUT_H
#define WISP_X86_LAYOUT_H

#define LAYOUT_GDT	   0x500ULL
#define LAYOUT_PVH_INFO	   0x6000ULL /* hvm_start_info, module list, memory map */
#define LAYOUT_ZERO_PAGE   0x7000ULL /* struct boot_params */
#define LAYOUT_PML4	   0x9000ULL
#define LAYOUT_PDPT	   0xa000ULL
#define LAYOUT_PD	   0xb000ULL /* one page directory: 1 GiB in 2 MiB pages */
#define LAYOUT_CMDLINE	   0x20000ULL
#define LAYOUT_CMDLINE_MAX 2048	       /* Linux's COMMAND_LINE_SIZE on x86 */
#define LAYOUT_MPTABLE	   0x9fc00ULL  /* the last KiB of base memory, where Linux looks */
#define LAYOUT_EBDA_END	   0x100000ULL /* [LAYOUT_MPTABLE, 1 MiB) is reserved, not RAM */
/* The ACPI tables, RSDP first: in the BIOS area Linux scans for "RSD PTR ". */
#define LAYOUT_ACPI	    0xe0000ULL
#define LAYOUT_ACPI_SIZE    (LAYOUT_EBDA_END - LAYOUT_ACPI)
#define LAYOUT_HIGH_MEMORY  0x100000ULL
#define LAYOUT_BZIMAGE_LOAD 0x100000ULL /* protected-mode part of a bzImage */
#define LAYOUT_BOOT_STACK   0x8ff0ULL

#define LAYOUT_IOAPIC_ADDR  0xfec00000ULL
#define LAYOUT_LAPIC_ADDR   0xfee00000ULL
#define LAYOUT_KVM_TSS	    0xfffbd000ULL
#define LAYOUT_KVM_IDENTITY 0xfffbc000ULL

/* Interrupt lines the IOAPIC offers: ISA 0-15 plus 16-23 for virtio-mmio devices. */
#define LAYOUT_IRQ_COUNT 24

#endif
