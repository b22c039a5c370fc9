#include "mptable.h"

#include "layout.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

static_assert(sizeof(struct mpf_intel) == 16, "floating pointer is 16 bytes");
static_assert(sizeof(struct mpc_table) == 44, "table header is 44 bytes");
static_assert(sizeof(struct mpc_cpu) == 20, "processor entry is 20 bytes");
static_assert(sizeof(struct mpc_intsrc) == 8, "interrupt entry is 8 bytes");

#define APIC_VERSION   0x14
#define IOAPIC_VERSION 0x11
/* Family 6 signature and FPU|APIC feature flags: Linux only reports these. */
#define CPU_SIGNATURE 0x600
#define CPU_FEATURES  0x201

uint8_t mptable_checksum(const void *data, size_t len)
{
	const uint8_t *bytes = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += bytes[i];
	return sum;
}

static size_t table_size(unsigned int nr_cpus, unsigned int nr_irqs)
{
	return sizeof(struct mpc_table) + nr_cpus * sizeof(struct mpc_cpu) +
	       sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
	       (nr_irqs + 2) * sizeof(struct mpc_intsrc);
}

size_t mptable_size(unsigned int nr_cpus)
{
	return sizeof(struct mpf_intel) + table_size(nr_cpus, LAYOUT_IRQ_COUNT);
}

int mptable_build(void *buf, size_t buf_size, uint32_t base_gpa, unsigned int nr_cpus,
		  unsigned int nr_irqs)
{
	uint8_t *out = buf;
	struct mpf_intel *mpf = buf;
	struct mpc_table *table;
	uint8_t ioapic_id = (uint8_t)nr_cpus;
	size_t size;

	if (nr_cpus == 0 || nr_cpus > MPTABLE_MAX_CPUS || nr_irqs == 0 ||
	    nr_irqs > LAYOUT_IRQ_COUNT)
		return -EINVAL;
	size = sizeof(struct mpf_intel) + table_size(nr_cpus, nr_irqs);
	if (size > buf_size)
		return -ENOSPC;
	memset(buf, 0, size);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = base_gpa + sizeof(*mpf);
	mpf->length = 1;
	mpf->specification = 4;

	table = (struct mpc_table *)(out + sizeof(*mpf));
	memcpy(table->signature, "PCMP", 4);
	table->length = (uint16_t)table_size(nr_cpus, nr_irqs);
	table->spec = 4;
	memcpy(table->oem, "WISP    ", 8);
	memcpy(table->productid, "MICROVM     ", 12);
	table->lapic = (uint32_t)LAYOUT_LAPIC_ADDR;
	table->oemcount = (uint16_t)(nr_cpus + 2 + nr_irqs + 2);

	uint8_t *entry = (uint8_t *)(table + 1);
	for (unsigned int cpu = 0; cpu < nr_cpus; cpu++) {
		struct mpc_cpu *c = (struct mpc_cpu *)entry;
		c->type = MP_PROCESSOR;
		c->apicid = (uint8_t)cpu;
		c->apicver = APIC_VERSION;
		c->cpuflag = MP_CPU_ENABLED | (cpu == 0 ? MP_CPU_BSP : 0);
		c->cpufeature = CPU_SIGNATURE;
		c->featureflag = CPU_FEATURES;
		entry += sizeof(*c);
	}
	struct mpc_bus *bus = (struct mpc_bus *)entry;
	bus->type = MP_BUS;
	bus->busid = 0;
	memcpy(bus->bustype, "ISA   ", 6);
	entry += sizeof(*bus);

	struct mpc_ioapic *ioapic = (struct mpc_ioapic *)entry;
	ioapic->type = MP_IOAPIC;
	ioapic->apicid = ioapic_id;
	ioapic->apicver = IOAPIC_VERSION;
	ioapic->flags = 1;
	ioapic->apicaddr = (uint32_t)LAYOUT_IOAPIC_ADDR;
	entry += sizeof(*ioapic);

	/* ISA IRQ n arrives on IOAPIC pin n (edge, active high: the ISA defaults). */
	for (unsigned int irq = 0; irq < nr_irqs; irq++) {
		struct mpc_intsrc *src = (struct mpc_intsrc *)entry;
		*src = (struct mpc_intsrc){.type = MP_INTSRC,
					   .irqtype = MP_IRQTYPE_INT,
					   .srcbus = 0,
					   .srcbusirq = (uint8_t)irq,
					   .dstapic = ioapic_id,
					   .dstirq = (uint8_t)irq};
		entry += sizeof(*src);
	}
	/* LINT0 takes the 8259's ExtINT, LINT1 the NMI, on every local APIC. */
	struct mpc_intsrc *lint = (struct mpc_intsrc *)entry;
	lint[0] = (struct mpc_intsrc){
	    .type = MP_LINTSRC, .irqtype = MP_IRQTYPE_EXTINT, .dstapic = 0xff, .dstirq = 0};
	lint[1] = (struct mpc_intsrc){
	    .type = MP_LINTSRC, .irqtype = MP_IRQTYPE_NMI, .dstapic = 0xff, .dstirq = 1};

	table->checksum = (uint8_t)(0 - mptable_checksum(table, table->length));
	mpf->checksum = (uint8_t)(0 - mptable_checksum(mpf, sizeof(*mpf)));
	return 0;
}
