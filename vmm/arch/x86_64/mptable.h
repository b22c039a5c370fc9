/*
 * The Intel MultiProcessor table (spec 1.4): how a guest without ACPI learns about its
 * CPUs, its IOAPIC and how the ISA interrupts are wired. Pure data, unit-tested.
 */
#ifndef WISP_X86_MPTABLE_H
#define WISP_X86_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define MPTABLE_MAX_CPUS 32

struct mpf_intel {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;
	uint8_t length; /* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature1;
	uint8_t feature2;
	uint8_t feature3;
	uint8_t feature4;
	uint8_t feature5;
} __attribute__((packed));

struct mpc_table {
	char signature[4]; /* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type;
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag;
	uint32_t cpufeature;
	uint32_t featureflag;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type;
	uint8_t busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type;
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
	uint8_t type;
	uint8_t irqtype;
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;
} __attribute__((packed));

#define MP_PROCESSOR 0
#define MP_BUS	     1
#define MP_IOAPIC    2
#define MP_INTSRC    3
#define MP_LINTSRC   4

#define MP_IRQTYPE_INT	  0
#define MP_IRQTYPE_NMI	  1
#define MP_IRQTYPE_EXTINT 3

#define MP_CPU_ENABLED 1
#define MP_CPU_BSP     2

/* Bytes the whole structure (floating pointer + table) takes for nr_cpus CPUs. */
size_t mptable_size(unsigned int nr_cpus);
/* Writes the floating pointer at buf (guest address base_gpa) and the table right after;
 * returns 0, -EINVAL for a bad CPU count, or -ENOSPC if buf is too small. */
int mptable_build(void *buf, size_t buf_size, uint32_t base_gpa, unsigned int nr_cpus,
		  unsigned int nr_irqs);
/* Sum of bytes modulo 256 (0 for a valid MP structure). */
uint8_t mptable_checksum(const void *data, size_t len);

#endif
