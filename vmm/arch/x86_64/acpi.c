#include "acpi.h"
#include "mptable.h"

#include "../../devices/i8042.h"
#include "../../devices/serial.h"
#include "acpi_aml.h"
#include "layout.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static_assert(sizeof(struct acpi_header) == ACPI_HEADER_SIZE, "table header is 36 bytes");
static_assert(sizeof(struct acpi_rsdp) == ACPI_RSDP_SIZE, "RSDP is 36 bytes");
static_assert(sizeof(struct acpi_gas) == 12, "generic address is 12 bytes");
static_assert(sizeof(struct acpi_fadt) == ACPI_FADT_SIZE, "FADT (6.5) is 276 bytes");
static_assert(offsetof(struct acpi_fadt, flags) == 112, "FADT flags offset");
static_assert(offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT X_DSDT offset");
static_assert(offsetof(struct acpi_fadt, sleep_control_reg) == 244, "FADT sleep control");
static_assert(sizeof(struct acpi_madt) == 44, "MADT fixed part is 44 bytes");
static_assert(sizeof(struct acpi_madt_local_apic) == 8, "local APIC entry is 8 bytes");
static_assert(sizeof(struct acpi_madt_ioapic) == 12, "IOAPIC entry is 12 bytes");
static_assert(sizeof(struct acpi_madt_lapic_nmi) == 6, "local APIC NMI entry is 6 bytes");

#define TABLE_ALIGN	 16
#define XSDT_REVISION	 1
#define MADT_REVISION	 5
#define DSDT_REVISION	 2 /* 64-bit integers */
#define RSDP_REVISION	 2
#define RSDP_V1_SIZE	 20
#define LINT_NMI	 1
#define CREATOR_REVISION 1
#define DSDT_MAX_BODY	 4096

/* The same 8-bit byte sum as the MP table's: one implementation for both. */
uint8_t acpi_checksum(const void *data, size_t len)
{
	return mptable_checksum(data, len);
}

static size_t align_up(size_t value)
{
	return (value + TABLE_ALIGN - 1) & ~(size_t)(TABLE_ALIGN - 1);
}

static void header_fill(struct acpi_header *header, const char *signature, uint32_t length,
			uint8_t revision)
{
	memcpy(header->signature, signature, 4);
	header->length = length;
	header->revision = revision;
	memcpy(header->oem_id, ACPI_OEM_ID, 6);
	memcpy(header->oem_table_id, ACPI_OEM_TABLE, 8);
	header->oem_revision = 1;
	memcpy(header->creator_id, ACPI_CREATOR_ID, 4);
	header->creator_revision = CREATOR_REVISION;
}

static void header_seal(struct acpi_header *header)
{
	header->checksum = 0;
	header->checksum = (uint8_t)(0 - acpi_checksum(header, header->length));
}

static bool ranges_overlap(const struct acpi_mmio_device *a, const struct acpi_mmio_device *b)
{
	return a->base < b->base + b->size && b->base < a->base + a->size;
}

static int config_check(const struct acpi_config *config)
{
	if (config->nr_cpus == 0 || config->nr_cpus > ACPI_MAX_CPUS ||
	    config->nr_virtio > ACPI_MAX_VIRTIO)
		return -EINVAL;
	for (unsigned int i = 0; i < config->nr_virtio; i++) {
		const struct acpi_mmio_device *dev = &config->virtio[i];
		if (dev->size == 0 || dev->base > UINT32_MAX ||
		    dev->size > UINT32_MAX - dev->base + 1 || dev->irq >= ACPI_IRQ_COUNT ||
		    dev->irq == 0 || dev->irq == 2 || dev->irq == SERIAL_COM1_IRQ ||
		    dev->irq == I8042_KBD_IRQ)
			return -EINVAL;
		for (unsigned int j = 0; j < i; j++)
			if (config->virtio[j].irq == dev->irq ||
			    ranges_overlap(&config->virtio[j], dev))
				return -EINVAL;
	}
	return 0;
}

static void dsdt_legacy_device(struct aml_buf *aml, const char *name, const char *eisa_id)
{
	aml_device_open(aml, name);
	aml_name(aml, "_HID");
	aml_integer(aml, aml_eisa_id(eisa_id));
	aml_name(aml, "_UID");
	aml_integer(aml, 0);
	aml_name(aml, "_CRS");
	aml_resource_template_open(aml);
}

int acpi_dsdt_body(void *buf, size_t size, const struct acpi_config *config)
{
	struct aml_buf aml;
	int err = config_check(config);

	if (err)
		return err;
	aml_init(&aml, buf, size);
	aml_scope_open(&aml, "\\_SB_");

	dsdt_legacy_device(&aml, "COM1", "PNP0501");
	aml_res_io(&aml, SERIAL_COM1_BASE, 8);
	aml_res_irq_no_flags(&aml, SERIAL_COM1_IRQ);
	aml_resource_template_close(&aml);
	aml_close(&aml);

	/* The i8042: Linux's driver finds it through ACPI when the FADT says it exists. */
	dsdt_legacy_device(&aml, "PS2K", "PNP0303");
	aml_res_io(&aml, I8042_PORT_BASE + I8042_DATA_OFFSET, 1);
	aml_res_io(&aml, I8042_PORT_BASE + I8042_COMMAND_OFFSET, 1);
	aml_res_irq_no_flags(&aml, I8042_KBD_IRQ);
	aml_resource_template_close(&aml);
	aml_close(&aml);

	for (unsigned int i = 0; i < config->nr_virtio; i++) {
		const struct acpi_mmio_device *dev = &config->virtio[i];
		char name[16];
		snprintf(name, sizeof(name), "V%03u", i);
		aml_device_open(&aml, name);
		aml_name(&aml, "_HID");
		aml_string(&aml, "LNRO0005");
		aml_name(&aml, "_UID");
		aml_integer(&aml, i);
		aml_name(&aml, "_CRS");
		aml_resource_template_open(&aml);
		aml_res_memory32_fixed(&aml, true, (uint32_t)dev->base, dev->size);
		/* Edge-triggered: wisp raises a virtio interrupt as a pulse through an irqfd. */
		aml_res_interrupt(&aml, true, false, false, dev->irq);
		aml_resource_template_close(&aml);
		aml_close(&aml);
	}
	aml_close(&aml);

	/* S5 (soft off): SLP_TYPa 5 is what the guest writes to the sleep control register. */
	aml_name(&aml, "_S5_");
	aml_package_open(&aml, 2);
	aml_integer(&aml, ACPI_S5_SLEEP_TYPE);
	aml_integer(&aml, 0);
	aml_close(&aml);

	err = aml_finish(&aml);
	return err ? err : (int)aml.len;
}

static struct acpi_gas io_port(uint16_t port)
{
	return (struct acpi_gas){.space_id = ACPI_GAS_SYSTEM_IO,
				 .bit_width = 8,
				 .access_size = ACPI_GAS_ACCESS_BYTE,
				 .address = port};
}

static void fadt_fill(struct acpi_fadt *fadt, uint64_t dsdt_gpa)
{
	memset(fadt, 0, sizeof(*fadt));
	header_fill(&fadt->header, "FACP", sizeof(*fadt), ACPI_FADT_REVISION);
	fadt->minor_version = ACPI_FADT_MINOR;
	/* Hardware-reduced: no PM1/GPE blocks, no SCI, no FACS; the buttons are absent. */
	fadt->flags = ACPI_FADT_HW_REDUCED | ACPI_FADT_RESET_REG_SUP | ACPI_FADT_PWR_BUTTON |
		      ACPI_FADT_SLP_BUTTON;
	fadt->iapc_boot_arch = ACPI_IAPC_8042 | ACPI_IAPC_VGA_NOT_PRESENT |
			       ACPI_IAPC_MSI_NOT_SUPPORTED | ACPI_IAPC_PCIE_ASPM;
	fadt->reset_reg = io_port(ACPI_RESET_PORT);
	fadt->reset_value = ACPI_RESET_VALUE;
	fadt->x_dsdt = dsdt_gpa;
	fadt->sleep_control_reg = io_port(ACPI_SLEEP_CONTROL);
	fadt->sleep_status_reg = io_port(ACPI_SLEEP_STATUS);
	memcpy(&fadt->hypervisor_vendor_id, ACPI_HYPERVISOR, 8);
	header_seal(&fadt->header);
}

static size_t madt_size(unsigned int nr_cpus)
{
	return sizeof(struct acpi_madt) + nr_cpus * sizeof(struct acpi_madt_local_apic) +
	       sizeof(struct acpi_madt_ioapic) + sizeof(struct acpi_madt_lapic_nmi);
}

/*
 * No interrupt source overrides: KVM's default routing sends GSI n to IOAPIC pin n (the
 * PIT's IRQ 0 included, unlike a PC's pin 2), the MP table says the same, and every ISA
 * line keeps its default edge/active-high mode. A hardware-reduced guest uses no PIT.
 */
static void madt_fill(uint8_t *out, unsigned int nr_cpus)
{
	struct acpi_madt *madt = (struct acpi_madt *)out;
	uint8_t *entry = out + sizeof(*madt);

	memset(out, 0, madt_size(nr_cpus));
	header_fill(&madt->header, "APIC", (uint32_t)madt_size(nr_cpus), MADT_REVISION);
	madt->local_apic_address = (uint32_t)LAYOUT_LAPIC_ADDR;
	for (unsigned int cpu = 0; cpu < nr_cpus; cpu++) {
		struct acpi_madt_local_apic lapic = {.type = ACPI_MADT_LOCAL_APIC,
						     .length = sizeof(lapic),
						     .processor_uid = (uint8_t)cpu,
						     .apic_id = (uint8_t)cpu,
						     .flags = ACPI_MADT_LAPIC_ENABLED};
		memcpy(entry, &lapic, sizeof(lapic));
		entry += sizeof(lapic);
	}
	struct acpi_madt_ioapic ioapic = {.type = ACPI_MADT_IOAPIC,
					  .length = sizeof(ioapic),
					  .ioapic_id = (uint8_t)nr_cpus, /* as in the MP table */
					  .address = (uint32_t)LAYOUT_IOAPIC_ADDR,
					  .gsi_base = 0};
	memcpy(entry, &ioapic, sizeof(ioapic));
	entry += sizeof(ioapic);
	struct acpi_madt_lapic_nmi nmi = {.type = ACPI_MADT_LOCAL_APIC_NMI,
					  .length = sizeof(nmi),
					  .processor_uid = ACPI_MADT_ALL_PROCESSORS,
					  .lint = LINT_NMI};
	memcpy(entry, &nmi, sizeof(nmi));
	header_seal(&madt->header);
}

int acpi_build(void *buf, size_t buf_size, uint64_t base_gpa, const struct acpi_config *config,
	       struct acpi_placement *placement)
{
	uint8_t dsdt_body[DSDT_MAX_BODY];
	uint8_t *out = buf;
	size_t xsdt_off, fadt_off, madt_off, dsdt_off, end;
	const size_t xsdt_size = ACPI_HEADER_SIZE + 2 * sizeof(uint64_t);
	int body_len;

	if (base_gpa % TABLE_ALIGN || base_gpa > UINT32_MAX)
		return -EINVAL;
	body_len = acpi_dsdt_body(dsdt_body, sizeof(dsdt_body), config);
	if (body_len < 0)
		return body_len;

	xsdt_off = align_up(ACPI_RSDP_SIZE);
	fadt_off = align_up(xsdt_off + xsdt_size);
	madt_off = align_up(fadt_off + sizeof(struct acpi_fadt));
	dsdt_off = align_up(madt_off + madt_size(config->nr_cpus));
	end = dsdt_off + ACPI_HEADER_SIZE + (size_t)body_len;
	if (end > buf_size)
		return -ENOSPC;
	memset(buf, 0, end);
	*placement = (struct acpi_placement){.rsdp = base_gpa,
					     .xsdt = base_gpa + xsdt_off,
					     .fadt = base_gpa + fadt_off,
					     .madt = base_gpa + madt_off,
					     .dsdt = base_gpa + dsdt_off,
					     .size = end};

	struct acpi_header *dsdt = (struct acpi_header *)(out + dsdt_off);
	header_fill(dsdt, "DSDT", (uint32_t)(ACPI_HEADER_SIZE + body_len), DSDT_REVISION);
	memcpy(out + dsdt_off + ACPI_HEADER_SIZE, dsdt_body, (size_t)body_len);
	header_seal(dsdt);

	madt_fill(out + madt_off, config->nr_cpus);

	struct acpi_fadt fadt;
	fadt_fill(&fadt, placement->dsdt);
	memcpy(out + fadt_off, &fadt, sizeof(fadt));

	struct acpi_header *xsdt = (struct acpi_header *)(out + xsdt_off);
	uint64_t entries[2] = {placement->fadt, placement->madt};
	header_fill(xsdt, "XSDT", (uint32_t)xsdt_size, XSDT_REVISION);
	memcpy(out + xsdt_off + ACPI_HEADER_SIZE, entries, sizeof(entries));
	header_seal(xsdt);

	struct acpi_rsdp rsdp = {
	    .revision = RSDP_REVISION, .length = sizeof(rsdp), .xsdt_address = placement->xsdt};
	memcpy(rsdp.signature, "RSD PTR ", 8);
	memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
	rsdp.checksum = (uint8_t)(0 - acpi_checksum(&rsdp, RSDP_V1_SIZE));
	rsdp.extended_checksum = (uint8_t)(0 - acpi_checksum(&rsdp, sizeof(rsdp)));
	memcpy(out, &rsdp, sizeof(rsdp));
	return 0;
}
