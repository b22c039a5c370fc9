/* Unit tests for the Intel MP table (arch/x86_64/mptable.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "arch/x86_64/mptable.h"

#define BUF_SIZE 1024
#define FILL	 0xcc

static uint8_t buf[BUF_SIZE + 64];

static void build_ok(unsigned int nr_cpus, unsigned int nr_irqs)
{
	memset(buf, FILL, sizeof(buf));
	assert_int_equal(mptable_build(buf, BUF_SIZE, LAYOUT_MPTABLE, nr_cpus, nr_irqs), 0);
}

static struct mpf_intel *mpf(void)
{
	return (struct mpf_intel *)buf;
}

static struct mpc_table *table(void)
{
	return (struct mpc_table *)(buf + sizeof(struct mpf_intel));
}

static uint8_t *entries(void)
{
	return buf + sizeof(struct mpf_intel) + sizeof(struct mpc_table);
}

static size_t entry_size(uint8_t type)
{
	return type == MP_PROCESSOR ? sizeof(struct mpc_cpu) : 8;
}

static void test_checksum_is_byte_sum_modulo_256(void **state)
{
	static const uint8_t a[] = {1, 2, 3};
	static const uint8_t b[] = {0xff, 0x02};
	static const uint8_t c[] = {0x80, 0x80};
	(void)state;

	assert_int_equal(mptable_checksum(a, 0), 0);
	assert_int_equal(mptable_checksum(a, sizeof(a)), 6);
	assert_int_equal(mptable_checksum(b, sizeof(b)), 1);
	assert_int_equal(mptable_checksum(c, sizeof(c)), 0);
}

static void test_floating_pointer_checksums_to_zero_and_points_at_table(void **state)
{
	(void)state;

	for (unsigned int cpus = 1; cpus <= MPTABLE_MAX_CPUS; cpus++) {
		build_ok(cpus, LAYOUT_IRQ_COUNT);
		assert_memory_equal(mpf()->signature, "_MP_", 4);
		assert_int_equal(mptable_checksum(mpf(), 16), 0);
		assert_int_equal(mpf()->physptr, LAYOUT_MPTABLE + 16);
		assert_int_equal(mpf()->length, 1);
		assert_int_equal(mpf()->specification, 4);
		/* feature1 == 0 means "a configuration table follows", not a default config. */
		assert_int_equal(mpf()->feature1, 0);
	}
}

static void test_physptr_follows_base_address(void **state)
{
	(void)state;

	memset(buf, 0, sizeof(buf));
	assert_int_equal(mptable_build(buf, BUF_SIZE, 0xf0000, 2, 16), 0);
	assert_int_equal(mpf()->physptr, 0xf0010);
	assert_int_equal(mptable_checksum(mpf(), 16), 0);
}

static void test_table_checksums_to_zero_over_its_length(void **state)
{
	(void)state;

	for (unsigned int cpus = 1; cpus <= MPTABLE_MAX_CPUS; cpus++) {
		for (unsigned int irqs = 1; irqs <= LAYOUT_IRQ_COUNT; irqs += 7) {
			build_ok(cpus, irqs);
			assert_memory_equal(table()->signature, "PCMP", 4);
			assert_int_equal(mptable_checksum(table(), table()->length), 0);
		}
	}
}

static void test_table_header_fields(void **state)
{
	(void)state;

	build_ok(4, LAYOUT_IRQ_COUNT);
	assert_int_equal(table()->spec, 4);
	assert_int_equal(table()->lapic, LAYOUT_LAPIC_ADDR);
	assert_int_equal(table()->lapic, 0xfee00000);
	assert_int_equal(table()->oemptr, 0);
	assert_int_equal(table()->oemsize, 0);
	assert_int_equal(table()->ext_length, 0);
	/* 4 CPUs, 1 bus, 1 IOAPIC, 24 IRQs, 2 local interrupt lines */
	assert_int_equal(table()->oemcount, 4 + 1 + 1 + 24 + 2);
	assert_int_equal(table()->length, 44 + 4 * 20 + 8 + 8 + 26 * 8);
}

static void test_entry_count_and_length_agree_with_entries_walked(void **state)
{
	(void)state;

	for (unsigned int cpus = 1; cpus <= MPTABLE_MAX_CPUS; cpus++) {
		build_ok(cpus, LAYOUT_IRQ_COUNT);
		uint8_t *p = entries();
		uint8_t *end = (uint8_t *)table() + table()->length;
		unsigned int count = 0;
		unsigned int per_type[5] = {0};
		while (p < end) {
			assert_in_range(*p, MP_PROCESSOR, MP_LINTSRC);
			per_type[*p]++;
			p += entry_size(*p);
			count++;
		}
		assert_ptr_equal(p, end);
		assert_int_equal(count, table()->oemcount);
		assert_int_equal(per_type[MP_PROCESSOR], cpus);
		assert_int_equal(per_type[MP_BUS], 1);
		assert_int_equal(per_type[MP_IOAPIC], 1);
		assert_int_equal(per_type[MP_INTSRC], LAYOUT_IRQ_COUNT);
		assert_int_equal(per_type[MP_LINTSRC], 2);
	}
}

static void test_cpu_entries_have_apic_ids_and_only_cpu0_is_bsp(void **state)
{
	(void)state;

	build_ok(MPTABLE_MAX_CPUS, LAYOUT_IRQ_COUNT);
	const struct mpc_cpu *cpu = (const struct mpc_cpu *)entries();
	for (unsigned int i = 0; i < MPTABLE_MAX_CPUS; i++) {
		assert_int_equal(cpu[i].type, MP_PROCESSOR);
		assert_int_equal(cpu[i].apicid, i);
		assert_true(cpu[i].cpuflag & MP_CPU_ENABLED);
		assert_int_equal(!!(cpu[i].cpuflag & MP_CPU_BSP), i == 0);
		assert_true(cpu[i].apicver != 0);
	}
}

static void test_single_cpu_is_enabled_bsp(void **state)
{
	(void)state;

	build_ok(1, LAYOUT_IRQ_COUNT);
	const struct mpc_cpu *cpu = (const struct mpc_cpu *)entries();
	assert_int_equal(cpu->apicid, 0);
	assert_int_equal(cpu->cpuflag, MP_CPU_ENABLED | MP_CPU_BSP);
	assert_int_equal(entries()[sizeof(*cpu)], MP_BUS);
}

static void test_bus_is_isa_and_ioapic_id_follows_cpus(void **state)
{
	(void)state;

	for (unsigned int cpus = 1; cpus <= MPTABLE_MAX_CPUS; cpus++) {
		build_ok(cpus, LAYOUT_IRQ_COUNT);
		const struct mpc_bus *bus =
		    (const struct mpc_bus *)(entries() + cpus * sizeof(struct mpc_cpu));
		const struct mpc_ioapic *ioapic = (const struct mpc_ioapic *)(bus + 1);
		assert_int_equal(bus->type, MP_BUS);
		assert_int_equal(bus->busid, 0);
		assert_memory_equal(bus->bustype, "ISA   ", 6);
		assert_int_equal(ioapic->type, MP_IOAPIC);
		/* The IOAPIC id must not collide with any local APIC id. */
		assert_int_equal(ioapic->apicid, cpus);
		assert_int_equal(ioapic->flags & 1, 1);
		assert_int_equal(ioapic->apicaddr, LAYOUT_IOAPIC_ADDR);
	}
}

static void test_interrupt_sources_route_irq_n_to_ioapic_pin_n(void **state)
{
	const unsigned int cpus = 3;
	(void)state;

	build_ok(cpus, LAYOUT_IRQ_COUNT);
	const struct mpc_intsrc *src =
	    (const struct mpc_intsrc *)(entries() + cpus * sizeof(struct mpc_cpu) +
					sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic));
	for (unsigned int irq = 0; irq < LAYOUT_IRQ_COUNT; irq++) {
		assert_int_equal(src[irq].type, MP_INTSRC);
		assert_int_equal(src[irq].irqtype, MP_IRQTYPE_INT);
		assert_int_equal(src[irq].srcbus, 0);
		assert_int_equal(src[irq].srcbusirq, irq);
		assert_int_equal(src[irq].dstapic, cpus);
		assert_int_equal(src[irq].dstirq, irq);
	}
}

static void test_lint0_is_extint_and_lint1_is_nmi_on_all_cpus(void **state)
{
	const unsigned int cpus = 2, irqs = 16;
	(void)state;

	build_ok(cpus, irqs);
	const struct mpc_intsrc *lint =
	    (const struct mpc_intsrc *)(entries() + cpus * sizeof(struct mpc_cpu) +
					sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
					irqs * sizeof(struct mpc_intsrc));
	assert_int_equal(lint[0].type, MP_LINTSRC);
	assert_int_equal(lint[0].irqtype, MP_IRQTYPE_EXTINT);
	assert_int_equal(lint[0].dstapic, 0xff);
	assert_int_equal(lint[0].dstirq, 0);
	assert_int_equal(lint[1].type, MP_LINTSRC);
	assert_int_equal(lint[1].irqtype, MP_IRQTYPE_NMI);
	assert_int_equal(lint[1].dstapic, 0xff);
	assert_int_equal(lint[1].dstirq, 1);
	assert_ptr_equal((const uint8_t *)(lint + 2), (uint8_t *)table() + table()->length);
}

static void test_size_matches_bytes_written_and_nothing_past_it(void **state)
{
	(void)state;

	for (unsigned int cpus = 1; cpus <= MPTABLE_MAX_CPUS; cpus++) {
		size_t size = mptable_size(cpus);
		build_ok(cpus, LAYOUT_IRQ_COUNT);
		assert_int_equal(sizeof(struct mpf_intel) + table()->length, size);
		for (size_t i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], FILL);
	}
}

static void test_32_cpus_fit_in_the_last_kib_of_base_memory(void **state)
{
	(void)state;

	assert_true(mptable_size(MPTABLE_MAX_CPUS) <= 1024);
	assert_true(LAYOUT_MPTABLE + mptable_size(MPTABLE_MAX_CPUS) <= 0xa0000);
	memset(buf, FILL, sizeof(buf));
	assert_int_equal(mptable_build(buf, 1024, LAYOUT_MPTABLE, 32, LAYOUT_IRQ_COUNT), 0);
}

static void test_bad_cpu_counts_are_einval_and_write_nothing(void **state)
{
	static const unsigned int bad[] = {0, MPTABLE_MAX_CPUS + 1, 255, 256, UINT32_MAX};
	uint8_t untouched[sizeof(buf)];
	(void)state;

	memset(untouched, FILL, sizeof(untouched));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(buf, FILL, sizeof(buf));
		assert_int_equal(mptable_build(buf, BUF_SIZE, LAYOUT_MPTABLE, bad[i], 16), -EINVAL);
		assert_memory_equal(buf, untouched, sizeof(buf));
	}
}

static void test_bad_irq_counts_are_einval(void **state)
{
	(void)state;

	memset(buf, FILL, sizeof(buf));
	assert_int_equal(mptable_build(buf, BUF_SIZE, LAYOUT_MPTABLE, 1, 0), -EINVAL);
	assert_int_equal(mptable_build(buf, BUF_SIZE, LAYOUT_MPTABLE, 1, LAYOUT_IRQ_COUNT + 1),
			 -EINVAL);
	assert_int_equal(buf[0], FILL);
}

static void test_too_small_buffer_is_enospc_and_exact_size_fits(void **state)
{
	uint8_t untouched[sizeof(buf)];
	(void)state;

	memset(untouched, FILL, sizeof(untouched));
	for (unsigned int cpus = 1; cpus <= MPTABLE_MAX_CPUS; cpus += 31) {
		size_t size = mptable_size(cpus);
		memset(buf, FILL, sizeof(buf));
		assert_int_equal(
		    mptable_build(buf, size - 1, LAYOUT_MPTABLE, cpus, LAYOUT_IRQ_COUNT), -ENOSPC);
		assert_memory_equal(buf, untouched, sizeof(buf));
		assert_int_equal(mptable_build(buf, 0, LAYOUT_MPTABLE, cpus, LAYOUT_IRQ_COUNT),
				 -ENOSPC);
		assert_int_equal(mptable_build(buf, size, LAYOUT_MPTABLE, cpus, LAYOUT_IRQ_COUNT),
				 0);
	}
}

static void test_rebuilding_over_old_contents_gives_identical_table(void **state)
{
	uint8_t first[BUF_SIZE];
	size_t size = mptable_size(5);
	(void)state;

	memset(buf, 0, sizeof(buf));
	assert_int_equal(mptable_build(buf, BUF_SIZE, LAYOUT_MPTABLE, 5, LAYOUT_IRQ_COUNT), 0);
	memcpy(first, buf, size);
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(mptable_build(buf, BUF_SIZE, LAYOUT_MPTABLE, 5, LAYOUT_IRQ_COUNT), 0);
	assert_memory_equal(buf, first, size);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_checksum_is_byte_sum_modulo_256),
	    cmocka_unit_test(test_floating_pointer_checksums_to_zero_and_points_at_table),
	    cmocka_unit_test(test_physptr_follows_base_address),
	    cmocka_unit_test(test_table_checksums_to_zero_over_its_length),
	    cmocka_unit_test(test_table_header_fields),
	    cmocka_unit_test(test_entry_count_and_length_agree_with_entries_walked),
	    cmocka_unit_test(test_cpu_entries_have_apic_ids_and_only_cpu0_is_bsp),
	    cmocka_unit_test(test_single_cpu_is_enabled_bsp),
	    cmocka_unit_test(test_bus_is_isa_and_ioapic_id_follows_cpus),
	    cmocka_unit_test(test_interrupt_sources_route_irq_n_to_ioapic_pin_n),
	    cmocka_unit_test(test_lint0_is_extint_and_lint1_is_nmi_on_all_cpus),
	    cmocka_unit_test(test_size_matches_bytes_written_and_nothing_past_it),
	    cmocka_unit_test(test_32_cpus_fit_in_the_last_kib_of_base_memory),
	    cmocka_unit_test(test_bad_cpu_counts_are_einval_and_write_nothing),
	    cmocka_unit_test(test_bad_irq_counts_are_einval),
	    cmocka_unit_test(test_too_small_buffer_is_enospc_and_exact_size_fits),
	    cmocka_unit_test(test_rebuilding_over_old_contents_gives_identical_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
