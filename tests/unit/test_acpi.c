/* Unit tests for the ACPI tables (arch/x86_64/acpi.c) and the AML emitter (acpi_aml.c):
 * every table's header, checksum and fields, the MADT for 1..32 vCPUs, the DSDT's AML
 * against sequences assembled by hand from the ACPI 6.5 encoding, and refused inputs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/acpi_aml.h"
#include "arch/x86_64/layout.h"
#include "test_support.h"

#define BASE	 0xe0000ULL
#define BUF_SIZE 0x8000
#define FILL	 0xcc

static uint8_t buf[BUF_SIZE];
static struct acpi_placement where;

static struct acpi_config config_with(unsigned int nr_cpus, unsigned int nr_virtio)
{
	struct acpi_config config = {.nr_cpus = nr_cpus, .nr_virtio = nr_virtio};
	for (unsigned int i = 0; i < nr_virtio && i < ACPI_MAX_VIRTIO; i++)
		config.virtio[i] = (struct acpi_mmio_device){
		    .base = 0xd0000000ULL + 0x1000ULL * i, .size = 0x1000, .irq = 5 + i};
	return config;
}

static void build_ok(const struct acpi_config *config)
{
	memset(buf, FILL, sizeof(buf));
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, config, &where), 0);
}

static const uint8_t *at(uint64_t gpa)
{
	assert_true(gpa >= BASE && gpa < BASE + BUF_SIZE);
	return buf + (gpa - BASE);
}

static const struct acpi_header *table(uint64_t gpa)
{
	return (const struct acpi_header *)at(gpa);
}

static void assert_header(const struct acpi_header *h, const char *signature, uint32_t length,
			  uint8_t revision)
{
	assert_memory_equal(h->signature, signature, 4);
	assert_int_equal(h->length, length);
	assert_int_equal(h->revision, revision);
	assert_memory_equal(h->oem_id, "WISP  ", 6);
	assert_int_equal(acpi_checksum(h, h->length), 0);
}

/* ---- checksums ---- */

static void test_checksum_is_byte_sum_modulo_256(void **state)
{
	static const uint8_t a[] = {1, 2, 3};
	static const uint8_t b[] = {0xff, 0x02};
	(void)state;
	assert_int_equal(acpi_checksum(a, 0), 0);
	assert_int_equal(acpi_checksum(a, sizeof(a)), 6);
	assert_int_equal(acpi_checksum(b, sizeof(b)), 1);
}

static void test_every_table_checksums_to_zero_for_many_configurations(void **state)
{
	(void)state;
	for (unsigned int cpus = 1; cpus <= ACPI_MAX_CPUS; cpus += 7) {
		for (unsigned int devices = 0; devices <= ACPI_MAX_VIRTIO; devices += 3) {
			struct acpi_config config = config_with(cpus, devices);
			build_ok(&config);
			assert_int_equal(acpi_checksum(at(where.rsdp), 20), 0);
			assert_int_equal(acpi_checksum(at(where.rsdp), ACPI_RSDP_SIZE), 0);
			uint64_t tables[] = {where.xsdt, where.fadt, where.madt, where.dsdt};
			for (size_t i = 0; i < 4; i++) {
				const struct acpi_header *h = table(tables[i]);
				assert_int_equal(tables[i] % 16, 0);
				assert_int_equal(acpi_checksum(h, h->length), 0);
				assert_true(tables[i] + h->length <= BASE + where.size);
			}
		}
	}
}

/* ---- RSDP and XSDT ---- */

static void test_rsdp_is_acpi2_at_base_and_points_at_the_xsdt(void **state)
{
	struct acpi_config config = config_with(2, 1);
	struct acpi_rsdp rsdp;
	(void)state;

	build_ok(&config);
	assert_int_equal(where.rsdp, BASE);
	memcpy(&rsdp, at(where.rsdp), sizeof(rsdp));
	assert_memory_equal(rsdp.signature, "RSD PTR ", 8);
	assert_int_equal(rsdp.revision, 2);
	assert_int_equal(rsdp.length, 36);
	assert_int_equal(rsdp.rsdt_address, 0);
	assert_int_equal(rsdp.xsdt_address, where.xsdt);
	assert_memory_equal(rsdp.oem_id, "WISP  ", 6);
	assert_int_equal(acpi_checksum(&rsdp, 20), 0);
	assert_int_equal(acpi_checksum(&rsdp, 36), 0);
}

static void test_xsdt_lists_the_fadt_and_the_madt(void **state)
{
	struct acpi_config config = config_with(1, 0);
	(void)state;

	build_ok(&config);
	assert_header(table(where.xsdt), "XSDT", 36 + 16, 1);
	assert_int_equal(get_le64(at(where.xsdt) + 36), where.fadt);
	assert_int_equal(get_le64(at(where.xsdt) + 44), where.madt);
	assert_memory_equal(table(where.fadt)->signature, "FACP", 4);
	assert_memory_equal(table(where.madt)->signature, "APIC", 4);
}

/* ---- FADT ---- */

static void test_fadt_is_hardware_reduced_with_sleep_and_reset_registers(void **state)
{
	struct acpi_config config = config_with(4, 2);
	struct acpi_fadt fadt;
	static const uint8_t zeros[96];
	(void)state;

	build_ok(&config);
	assert_header(table(where.fadt), "FACP", 276, 6);
	memcpy(&fadt, at(where.fadt), sizeof(fadt));
	assert_int_equal(fadt.minor_version, 5);
	assert_int_equal(fadt.flags & ACPI_FADT_HW_REDUCED, ACPI_FADT_HW_REDUCED);
	assert_int_equal(fadt.flags & ACPI_FADT_RESET_REG_SUP, ACPI_FADT_RESET_REG_SUP);
	assert_int_equal(fadt.iapc_boot_arch & ACPI_IAPC_8042, ACPI_IAPC_8042);
	/* No FACS, SCI, SMI command port, PM1/PM2/timer/GPE blocks (offsets 36..111). */
	assert_memory_equal(at(where.fadt) + 36, zeros, 109 - 36);
	assert_int_equal(fadt.x_firmware_ctrl, 0);
	assert_int_equal(fadt.dsdt, 0);
	assert_int_equal(fadt.x_dsdt, where.dsdt);
	assert_memory_equal(at(where.fadt) + 148, zeros, 96); /* X_PM1a_EVT_BLK..X_GPE1_BLK */

	assert_int_equal(fadt.reset_reg.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(fadt.reset_reg.bit_width, 8);
	assert_int_equal(fadt.reset_reg.access_size, ACPI_GAS_ACCESS_BYTE);
	assert_int_equal(fadt.reset_reg.address, ACPI_RESET_PORT);
	assert_int_equal(fadt.reset_value, ACPI_RESET_VALUE);
	assert_int_equal(fadt.sleep_control_reg.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(fadt.sleep_control_reg.bit_width, 8);
	assert_int_equal(fadt.sleep_control_reg.address, ACPI_SLEEP_CONTROL);
	assert_int_equal(fadt.sleep_status_reg.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(fadt.sleep_status_reg.address, ACPI_SLEEP_STATUS);
	assert_memory_equal(&fadt.hypervisor_vendor_id, "WISPKVM ", 8);
	/* Raw offsets from the ACPI 6.5 FADT layout. */
	assert_int_equal(get_le32(at(where.fadt) + 112), fadt.flags);
	assert_int_equal(at(where.fadt)[116], ACPI_GAS_SYSTEM_IO);
	assert_int_equal(get_le64(at(where.fadt) + 120), ACPI_RESET_PORT);
	assert_int_equal(at(where.fadt)[128], ACPI_RESET_VALUE);
	assert_int_equal(get_le64(at(where.fadt) + 140), where.dsdt);
	assert_int_equal(get_le64(at(where.fadt) + 248), ACPI_SLEEP_CONTROL);
	assert_int_equal(get_le64(at(where.fadt) + 260), ACPI_SLEEP_STATUS);
}

/* ---- MADT ---- */

static void check_madt(unsigned int nr_cpus)
{
	struct acpi_config config = config_with(nr_cpus, 1);
	const uint8_t *madt, *entry, *end;
	unsigned int lapics = 0, ioapics = 0, nmis = 0;

	build_ok(&config);
	madt = at(where.madt);
	assert_header(table(where.madt), "APIC", 44 + 8 * nr_cpus + 12 + 6, 5);
	assert_int_equal(get_le32(madt + 36), LAYOUT_LAPIC_ADDR);
	assert_int_equal(get_le32(madt + 40), 0); /* no 8259s announced: hardware-reduced */
	entry = madt + 44;
	end = madt + table(where.madt)->length;
	while (entry < end) {
		assert_true(entry[1] >= 2 && entry + entry[1] <= end);
		switch (entry[0]) {
		case ACPI_MADT_LOCAL_APIC:
			assert_int_equal(entry[1], 8);
			assert_int_equal(entry[2], lapics); /* processor UID = index */
			assert_int_equal(entry[3], lapics); /* APIC id = index */
			assert_int_equal(get_le32(entry + 4), ACPI_MADT_LAPIC_ENABLED);
			lapics++;
			break;
		case ACPI_MADT_IOAPIC:
			assert_int_equal(entry[1], 12);
			assert_int_equal(entry[2],
					 nr_cpus); /* after the LAPIC ids, as in the MP table */
			assert_int_equal(get_le32(entry + 4), LAYOUT_IOAPIC_ADDR);
			assert_int_equal(get_le32(entry + 8), 0);
			ioapics++;
			break;
		case ACPI_MADT_LOCAL_APIC_NMI:
			assert_int_equal(entry[1], 6);
			assert_int_equal(entry[2], 0xff);
			assert_int_equal(entry[5], 1); /* LINT1 */
			nmis++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", entry[0]);
		}
		entry += entry[1];
	}
	assert_ptr_equal(entry, end);
	assert_int_equal(lapics, nr_cpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(nmis, 1);
}

static void test_madt_one_cpu(void **state)
{
	(void)state;
	check_madt(1);
}

static void test_madt_two_cpus(void **state)
{
	(void)state;
	check_madt(2);
}

static void test_madt_32_cpus(void **state)
{
	(void)state;
	check_madt(32);
}

/* ---- DSDT, byte for byte ---- */

/* Device (COM1) { _HID EisaId("PNP0501"), _UID 0,
 *   _CRS ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 1, 8) IRQNoFlags () {4} } } */
static const uint8_t com1_aml[] = {
    0x5b, 0x82, 0x2b, 'C',  'O',  'M',	'1',			/* DeviceOp, PkgLength 43 */
    0x08, '_',	'H',  'I',  'D',  0x0c, 0x41, 0xd0, 0x05, 0x01, /* DWord 0x0105d041 */
    0x08, '_',	'U',  'I',  'D',  0x00,				/* ZeroOp */
    0x08, '_',	'C',  'R',  'S',  0x11, 0x10, 0x0a, 0x0d,	/* BufferOp, PkgLength 16, 13 */
    0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,		/* IO */
    0x22, 0x10, 0x00,						/* IRQ mask 1 << 4 */
    0x79, 0x0e,							/* EndTag, checksum */
};

/* Device (PS2K) { _HID EisaId("PNP0303"), _UID 0,
 *   _CRS { IO (0x60, 1) IO (0x64, 1) IRQNoFlags () {1} } } */
static const uint8_t ps2k_aml[] = {
    0x5b, 0x82, 0x33, 'P',  'S',  '2',	'K',  0x08, '_',  'H',	'I',  'D',  0x0c, 0x41,
    0xd0, 0x03, 0x03, 0x08, '_',  'U',	'I',  'D',  0x00, 0x08, '_',  'C',  'R',  'S',
    0x11, 0x18, 0x0a, 0x15, 0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, 0x47, 0x01,
    0x64, 0x00, 0x64, 0x00, 0x01, 0x01, 0x22, 0x02, 0x00, 0x79, 0x47,
};

/* Device (V000) { _HID "LNRO0005", _UID 0, _CRS { Memory32Fixed (ReadWrite, 0xD0000000,
 *   0x1000) Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {5} } } */
static const uint8_t v000_aml[] = {
    0x5b, 0x82, 0x3a, 'V',  '0',  '0',	'0', /* PkgLength 58 */
    0x08, '_',	'H',  'I',  'D',  0x0d, 'L',  'N',  'R',  'O',	'0',  '0',
    '0',  '5',	0x00,							    /* String */
    0x08, '_',	'U',  'I',  'D',  0x00,					    /* ZeroOp */
    0x08, '_',	'C',  'R',  'S',  0x11, 0x1a, 0x0a, 0x17,		    /* 23 bytes */
    0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, /* Memory32Fixed */
    0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, /* consumer|edge, 1 interrupt: 5 */
    0x79, 0x7f,
};

/* Name (_S5_, Package (2) { 5, 0 }) */
static const uint8_t s5_aml[] = {0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00};

static void test_dsdt_without_devices_matches_hand_assembly(void **state)
{
	struct acpi_config config = config_with(1, 0);
	uint8_t expected[256];
	size_t n = 0;
	const uint8_t *body;
	(void)state;

	/* Scope (\_SB_): 5 + 45 + 53 = 103 bytes, PkgLength 105 = 0x69 in two bytes. */
	static const uint8_t scope[] = {0x10, 0x49, 0x06, 0x5c, '_', 'S', 'B', '_'};
	memcpy(expected + n, scope, sizeof(scope));
	n += sizeof(scope);
	memcpy(expected + n, com1_aml, sizeof(com1_aml));
	n += sizeof(com1_aml);
	memcpy(expected + n, ps2k_aml, sizeof(ps2k_aml));
	n += sizeof(ps2k_aml);
	memcpy(expected + n, s5_aml, sizeof(s5_aml));
	n += sizeof(s5_aml);
	assert_int_equal(sizeof(com1_aml), 45);
	assert_int_equal(sizeof(ps2k_aml), 53);

	build_ok(&config);
	assert_header(table(where.dsdt), "DSDT", 36 + n, 2);
	body = at(where.dsdt) + 36;
	assert_memory_equal(body, expected, n);
}

static const uint8_t *find(const uint8_t *hay, size_t hay_len, const void *needle, size_t len)
{
	for (size_t i = 0; i + len <= hay_len; i++)
		if (memcmp(hay + i, needle, len) == 0)
			return hay + i;
	return NULL;
}

static void test_dsdt_virtio_device_matches_hand_assembly(void **state)
{
	struct acpi_config config = config_with(1, 1);
	const uint8_t *body, *device;
	size_t len;
	(void)state;

	build_ok(&config);
	body = at(where.dsdt) + 36;
	len = table(where.dsdt)->length - 36;
	device = find(body, len, v000_aml, sizeof(v000_aml));
	assert_non_null(device);
	/* It sits inside \_SB_ after the legacy devices, and _S5_ ends the table. */
	assert_int_equal(device - body, 8 + sizeof(com1_aml) + sizeof(ps2k_aml));
	assert_memory_equal(body + len - sizeof(s5_aml), s5_aml, sizeof(s5_aml));
	/* The scope grew by the device: PkgLength 105 + 60 = 165 = 0xa5. */
	assert_int_equal(body[1], 0x45);
	assert_int_equal(body[2], 0x0a);
}

static void test_dsdt_describes_every_virtio_device_window_and_irq(void **state)
{
	(void)state;
	for (unsigned int count = 0; count <= ACPI_MAX_VIRTIO; count++) {
		struct acpi_config config = config_with(2, count);
		const uint8_t *body;
		size_t len;

		build_ok(&config);
		body = at(where.dsdt) + 36;
		len = table(where.dsdt)->length - 36;
		unsigned int found = 0;
		for (const uint8_t *p = body;
		     (p = find(p, len - (size_t)(p - body), "LNRO0005", 8)); p++)
			found++;
		assert_int_equal(found, count);
		for (unsigned int i = 0; i < count; i++) {
			char name[5] = {'V', (char)('0' + i / 100), (char)('0' + i / 10 % 10),
					(char)('0' + i % 10), 0};
			uint8_t mem[12] = {0x86, 0x09, 0x00, 0x01};
			uint8_t irq[9] = {0x89, 0x06, 0x00, 0x03, 0x01};
			put_le32(mem + 4, (uint32_t)config.virtio[i].base);
			put_le32(mem + 8, 0x1000);
			put_le32(irq + 5, config.virtio[i].irq);
			const uint8_t *dev = find(body, len, name, 4);
			assert_non_null(dev);
			assert_int_equal(dev[-3], 0x5b);
			assert_int_equal(dev[-2], 0x82);
			const uint8_t *crs =
			    find(dev, len - (size_t)(dev - body), mem, sizeof(mem));
			assert_non_null(crs);
			assert_memory_equal(crs + sizeof(mem), irq, sizeof(irq));
			/* The device's PkgLength reaches exactly past its end tag. */
			assert_true(dev[-1] < 0x40);
			assert_ptr_equal(dev - 1 + dev[-1], crs + sizeof(mem) + sizeof(irq) + 2);
			/* _UID = index, as a ZeroOp/OneOp/BytePrefix integer. */
			const uint8_t *uid = find(dev, 40, "_UID", 4);
			assert_non_null(uid);
			if (i < 2)
				assert_int_equal(uid[4], i);
			else {
				assert_int_equal(uid[4], AML_BYTE_PREFIX);
				assert_int_equal(uid[5], i);
			}
		}
	}
}

/* ---- AML primitives ---- */

static void test_pkg_length_encodings(void **state)
{
	uint8_t out[4];
	(void)state;

	assert_int_equal(aml_pkg_length_encode(0x3f, out), 1);
	assert_int_equal(out[0], 0x3f);
	assert_int_equal(aml_pkg_length_encode(0x40, out), 2);
	assert_int_equal(out[0], 0x40);
	assert_int_equal(out[1], 0x04);
	assert_int_equal(aml_pkg_length_encode(0xfff, out), 2);
	assert_int_equal(out[0], 0x4f);
	assert_int_equal(out[1], 0xff);
	assert_int_equal(aml_pkg_length_encode(0x1000, out), 3);
	assert_int_equal(out[0], 0x80);
	assert_int_equal(out[1], 0x00);
	assert_int_equal(out[2], 0x01);
	assert_int_equal(aml_pkg_length_encode(0x123456, out), 4);
	assert_int_equal(out[0], 0xc6);
	assert_int_equal(out[1], 0x45);
	assert_int_equal(out[2], 0x23);
	assert_int_equal(out[3], 0x01);
	assert_int_equal(aml_pkg_length_encode(0x10000000, out), 0);
}

static void test_close_picks_the_pkg_length_width_that_counts_itself(void **state)
{
	static uint8_t data[8192];
	static const uint8_t filler[8000];
	struct aml_buf aml;
	(void)state;

	/* 62 body bytes: 1 + 62 = 63 still fits one byte. */
	aml_init(&aml, data, sizeof(data));
	aml_scope_open(&aml, "ABCD");
	aml_bytes(&aml, filler, 58);
	aml_close(&aml);
	assert_int_equal(aml_finish(&aml), 0);
	assert_int_equal(aml.len, 1 + 1 + 62);
	assert_int_equal(data[1], 63);
	assert_memory_equal(data + 2, "ABCD", 4);

	/* 63 body bytes: 1 + 63 = 64 needs two, so the length is 65. */
	aml_init(&aml, data, sizeof(data));
	aml_scope_open(&aml, "ABCD");
	aml_bytes(&aml, filler, 59);
	aml_close(&aml);
	assert_int_equal(aml.len, 1 + 2 + 63);
	assert_int_equal(data[1], 0x41);
	assert_int_equal(data[2], 0x04);
	assert_memory_equal(data + 3, "ABCD", 4);

	/* 4094 body bytes: 2 + 4094 = 4096 does not fit two bytes; three give 4097. */
	aml_init(&aml, data, sizeof(data));
	aml_scope_open(&aml, "ABCD");
	aml_bytes(&aml, filler, 4090);
	aml_close(&aml);
	assert_int_equal(aml.len, 1 + 3 + 4094);
	assert_int_equal(data[1], 0x81);
	assert_int_equal(data[2], 0x00);
	assert_int_equal(data[3], 0x01);
}

static void test_integers_use_the_shortest_encoding(void **state)
{
	uint8_t data[64];
	struct aml_buf aml;
	static const uint8_t expected[] = {0x00, 0x01, 0x0a, 0x02, 0x0a, 0xff, 0x0b, 0x00,
					   0x01, 0x0c, 0x78, 0x56, 0x34, 0x12, 0x0e, 0x01,
					   0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00};
	(void)state;

	aml_init(&aml, data, sizeof(data));
	aml_integer(&aml, 0);
	aml_integer(&aml, 1);
	aml_integer(&aml, 2);
	aml_integer(&aml, 0xff);
	aml_integer(&aml, 0x100);
	aml_integer(&aml, 0x12345678);
	aml_integer(&aml, 0x0000000100000001ULL);
	assert_int_equal(aml_finish(&aml), 0);
	assert_int_equal(aml.len, sizeof(expected));
	assert_memory_equal(data, expected, sizeof(expected));
}

static void test_name_strings_and_eisa_ids(void **state)
{
	uint8_t data[64];
	struct aml_buf aml;
	static const uint8_t expected[] = {
	    0x5c, '_', 'S',  'B',  '_', '_', 'S', '5', '_', 0x2e, '_', 'S', 'B', '_', 'V', '0',
	    '0',  '0', 0x2f, 0x03, 'A', 'B', '_', '_', 'C', 'D',  '_', '_', 'E', '_', '_', '_'};
	(void)state;

	aml_init(&aml, data, sizeof(data));
	aml_name_string(&aml, "\\_SB_");
	aml_name_string(&aml, "_S5");
	aml_name_string(&aml, "_SB_.V000");
	aml_name_string(&aml, "AB.CD.E");
	assert_int_equal(aml_finish(&aml), 0);
	assert_int_equal(aml.len, sizeof(expected));
	assert_memory_equal(data, expected, sizeof(expected));

	assert_int_equal(aml_eisa_id("PNP0501"), 0x0105d041);
	assert_int_equal(aml_eisa_id("PNP0303"), 0x0303d041);
	assert_int_equal(aml_eisa_id("PNP0A03"), 0x030ad041);
	assert_int_equal(aml_eisa_id("pnp0501"), 0);
	assert_int_equal(aml_eisa_id("PNP050"), 0);
	assert_int_equal(aml_eisa_id("PNP05G1"), 0);
}

static void test_malformed_names_and_nesting_are_refused(void **state)
{
	static const char *const bad[] = {"", "\\", "ABCDE", "1ABC", "A.", ".A", "A..B", "a"};
	uint8_t data[64];
	struct aml_buf aml;
	(void)state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&aml, data, sizeof(data));
		aml_name_string(&aml, bad[i]);
		assert_int_equal(aml_finish(&aml), -ENOSPC);
	}
	aml_init(&aml, data, sizeof(data));
	aml_close(&aml); /* nothing open */
	assert_int_not_equal(aml_finish(&aml), 0);
	aml_init(&aml, data, sizeof(data));
	aml_scope_open(&aml, "ABCD"); /* never closed */
	assert_int_equal(aml_finish(&aml), -EINVAL);
	aml_init(&aml, data, sizeof(data));
	aml_scope_open(&aml, "ABCD");
	aml_resource_template_close(&aml); /* not a template */
	assert_int_not_equal(aml_finish(&aml), 0);
	aml_init(&aml, data, sizeof(data));
	aml_res_irq_no_flags(&aml, 16); /* IRQNoFlags covers 0..15 */
	assert_int_equal(aml_finish(&aml), -ENOSPC);
	aml_init(&aml, data, sizeof(data));
	for (int i = 0; i <= AML_MAX_DEPTH; i++)
		aml_package_open(&aml, 0);
	assert_int_not_equal(aml_finish(&aml), 0);
}

static void test_writes_past_the_buffer_are_refused_not_made(void **state)
{
	uint8_t data[16];
	struct aml_buf aml;
	(void)state;

	memset(data, FILL, sizeof(data));
	aml_init(&aml, data, 8);
	aml_string(&aml, "LNRO0005"); /* 10 bytes */
	aml_byte(&aml, 0);
	assert_int_equal(aml_finish(&aml), -ENOSPC);
	for (size_t i = 8; i < sizeof(data); i++)
		assert_int_equal(data[i], FILL);
}

static void test_resource_template_end_tag_makes_the_descriptors_sum_to_zero(void **state)
{
	uint8_t data[64];
	struct aml_buf aml;
	(void)state;

	aml_init(&aml, data, sizeof(data));
	aml_resource_template_open(&aml);
	aml_res_memory32_fixed(&aml, false, 0xfeedf00d, 0x200);
	aml_res_interrupt(&aml, false, true, true, 23);
	aml_resource_template_close(&aml);
	assert_int_equal(aml_finish(&aml), 0);
	/* BufferOp, PkgLength 26, BytePrefix 23, then the 23 descriptor bytes. */
	assert_int_equal(aml.len, 4 + 23);
	assert_int_equal(data[0], AML_BUFFER_OP);
	assert_int_equal(data[1], 26);
	assert_int_equal(data[2], AML_BYTE_PREFIX);
	assert_int_equal(data[3], 23);
	assert_int_equal(data[4 + 3], 0); /* read-only */
	assert_int_equal(get_le32(data + 4 + 4), 0xfeedf00d);
	assert_int_equal(data[16 + 3], 0x01 | 0x04 | 0x08); /* consumer, level, low, shared */
	assert_int_equal(data[25], 0x79);
	assert_int_equal(acpi_checksum(data + 4, 23), 0);
}

/* ---- refused configurations ---- */

static void test_bad_configurations_are_refused(void **state)
{
	struct acpi_config config;
	(void)state;

	config = config_with(0, 0);
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	config = config_with(ACPI_MAX_CPUS + 1, 0);
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	config = config_with(1, ACPI_MAX_VIRTIO);
	config.nr_virtio = ACPI_MAX_VIRTIO + 1;
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);

	static const uint32_t bad_irqs[] = {0, 1, 2, 4, 24, 1000};
	for (size_t i = 0; i < sizeof(bad_irqs) / sizeof(bad_irqs[0]); i++) {
		config = config_with(1, 1);
		config.virtio[0].irq = bad_irqs[i];
		assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	}
	config = config_with(1, 2);
	config.virtio[1].irq = config.virtio[0].irq; /* shared line */
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	config = config_with(1, 2);
	config.virtio[1].base = config.virtio[0].base + 0x800; /* overlapping windows */
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	config = config_with(1, 1);
	config.virtio[0].base = 0x100000000ULL; /* Memory32Fixed cannot say it */
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	config = config_with(1, 1);
	config.virtio[0].base = 0xfffff000ULL;
	config.virtio[0].size = 0x2000; /* crosses 4 GiB */
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);
	config = config_with(1, 1);
	config.virtio[0].size = 0;
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &config, &where), -EINVAL);

	config = config_with(1, 0);
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE + 8, &config, &where), -EINVAL);
	assert_int_equal(acpi_build(buf, sizeof(buf), 0x100000000ULL, &config, &where), -EINVAL);
}

static void test_a_buffer_too_small_is_refused_without_writing_past_it(void **state)
{
	struct acpi_config config = config_with(ACPI_MAX_CPUS, ACPI_MAX_VIRTIO);
	(void)state;

	build_ok(&config);
	size_t needed = where.size;
	assert_true(needed < 0x20000); /* fits the reserved [0xe0000, 1 MiB) */
	memset(buf, FILL, sizeof(buf));
	assert_int_equal(acpi_build(buf, needed - 1, BASE, &config, &where), -ENOSPC);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], FILL);
	assert_int_equal(acpi_build(buf, needed, BASE, &config, &where), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_checksum_is_byte_sum_modulo_256),
	    cmocka_unit_test(test_every_table_checksums_to_zero_for_many_configurations),
	    cmocka_unit_test(test_rsdp_is_acpi2_at_base_and_points_at_the_xsdt),
	    cmocka_unit_test(test_xsdt_lists_the_fadt_and_the_madt),
	    cmocka_unit_test(test_fadt_is_hardware_reduced_with_sleep_and_reset_registers),
	    cmocka_unit_test(test_madt_one_cpu),
	    cmocka_unit_test(test_madt_two_cpus),
	    cmocka_unit_test(test_madt_32_cpus),
	    cmocka_unit_test(test_dsdt_without_devices_matches_hand_assembly),
	    cmocka_unit_test(test_dsdt_virtio_device_matches_hand_assembly),
	    cmocka_unit_test(test_dsdt_describes_every_virtio_device_window_and_irq),
	    cmocka_unit_test(test_pkg_length_encodings),
	    cmocka_unit_test(test_close_picks_the_pkg_length_width_that_counts_itself),
	    cmocka_unit_test(test_integers_use_the_shortest_encoding),
	    cmocka_unit_test(test_name_strings_and_eisa_ids),
	    cmocka_unit_test(test_malformed_names_and_nesting_are_refused),
	    cmocka_unit_test(test_writes_past_the_buffer_are_refused_not_made),
	    cmocka_unit_test(test_resource_template_end_tag_makes_the_descriptors_sum_to_zero),
	    cmocka_unit_test(test_bad_configurations_are_refused),
	    cmocka_unit_test(test_a_buffer_too_small_is_refused_without_writing_past_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
