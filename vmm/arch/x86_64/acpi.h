/*
 * The ACPI tables (ACPI 6.5) that tell a guest kernel built for ACPI — distribution and
 * Firecracker-configured kernels — about its CPUs, interrupt controllers and devices, and
 * how to power off and reset: RSDP, XSDT, FADT (hardware-reduced), MADT and a DSDT with
 * the serial port, the i8042 and each virtio-mmio device. Built from the VM's
 * configuration into a caller's buffer; pure data, unit-tested.
 */
#ifndef WISP_X86_ACPI_H
#define WISP_X86_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* As many as the MP table and the configuration allow; LAPIC ids fit a byte below the
 * IOAPIC's id (which is the CPU count). */
#define ACPI_MAX_CPUS	   32
#define ACPI_MAX_VIRTIO	   19 /* interrupt lines 5..23 */
#define ACPI_IRQ_COUNT	   24 /* the IOAPIC's pins */
#define ACPI_OEM_ID	   "WISP  "
#define ACPI_OEM_TABLE	   "WISPVM  "
#define ACPI_CREATOR_ID	   "WISP"
#define ACPI_HYPERVISOR	   "WISPKVM "
#define ACPI_RSDP_SIZE	   36
#define ACPI_HEADER_SIZE   36
#define ACPI_FADT_SIZE	   276
#define ACPI_FADT_REVISION 6
#define ACPI_FADT_MINOR	   5

/* The hardware-reduced sleep and reset registers, as byte-wide I/O ports (see
 * devices/acpi_pm.h, which answers them). */
#define ACPI_PM_PORT_BASE  0x600
#define ACPI_PM_PORT_COUNT 3
#define ACPI_SLEEP_CONTROL 0x600
#define ACPI_SLEEP_STATUS  0x601
#define ACPI_RESET_PORT	   0x602
#define ACPI_RESET_VALUE   0x01
#define ACPI_S5_SLEEP_TYPE 5
/* Sleep control register bits (ACPI 6.5, 4.8.3.7): SLP_TYP in 4:2, SLP_EN in 5. */
#define ACPI_SLP_TYP_SHIFT 2
#define ACPI_SLP_TYP_MASK  0x1c
#define ACPI_SLP_EN	   0x20

/* FADT flags and IA-PC boot architecture flags used here. */
#define ACPI_FADT_PWR_BUTTON	    (1u << 4)
#define ACPI_FADT_SLP_BUTTON	    (1u << 5)
#define ACPI_FADT_RESET_REG_SUP	    (1u << 10)
#define ACPI_FADT_HW_REDUCED	    (1u << 20)
#define ACPI_IAPC_8042		    (1u << 1)
#define ACPI_IAPC_VGA_NOT_PRESENT   (1u << 2)
#define ACPI_IAPC_MSI_NOT_SUPPORTED (1u << 3)
#define ACPI_IAPC_PCIE_ASPM	    (1u << 4)

#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1

#define ACPI_MADT_LOCAL_APIC	 0
#define ACPI_MADT_IOAPIC	 1
#define ACPI_MADT_LOCAL_APIC_NMI 4
#define ACPI_MADT_LAPIC_ENABLED	 1
#define ACPI_MADT_ALL_PROCESSORS 0xff

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision; /* 2: ACPI 2.0 and later */
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));

struct acpi_fadt {
	struct acpi_header header;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk, pm1b_evt_blk, pm1a_cnt_blk, pm1b_cnt_blk;
	uint32_t pm2_cnt_blk, pm_tmr_blk, gpe0_blk, gpe1_blk;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len;
	uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk, x_pm1b_evt_blk, x_pm1a_cnt_blk, x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk, x_pm_tmr_blk, x_gpe0_blk, x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));

struct acpi_madt {
	struct acpi_header header;
	uint32_t local_apic_address;
	uint32_t flags;
} __attribute__((packed));

struct acpi_madt_local_apic {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;
} __attribute__((packed));

struct acpi_madt_ioapic {
	uint8_t type;
	uint8_t length;
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));

struct acpi_madt_lapic_nmi {
	uint8_t type;
	uint8_t length;
	uint8_t processor_uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));

struct acpi_mmio_device {
	uint64_t base;
	uint32_t size;
	uint32_t irq;
};

struct acpi_config {
	unsigned int nr_cpus;
	unsigned int nr_virtio;
	struct acpi_mmio_device virtio[ACPI_MAX_VIRTIO];
};

/* Where each table landed (guest-physical), and the bytes used from the start. */
struct acpi_placement {
	uint64_t rsdp, xsdt, fadt, madt, dsdt;
	size_t size;
};

/*
 * Writes the RSDP at buf (guest address base_gpa, 16-byte aligned) and the other tables
 * after it. Returns 0; -EINVAL for a CPU count outside 1..ACPI_MAX_CPUS, too many devices,
 * a device window outside 32-bit space or an interrupt the IOAPIC does not have (or that
 * collides with the serial port or the i8042), or a misaligned base; -ENOSPC if buf is too
 * small.
 */
int acpi_build(void *buf, size_t buf_size, uint64_t base_gpa, const struct acpi_config *config,
	       struct acpi_placement *placement);
/* Sum of bytes modulo 256 (0 for a valid table). */
uint8_t acpi_checksum(const void *data, size_t len);
/* Writes the DSDT's AML body (without the table header) for config into buf; returns the
 * bytes written, or -ENOSPC / -EINVAL. */
int acpi_dsdt_body(void *buf, size_t size, const struct acpi_config *config);

#endif
