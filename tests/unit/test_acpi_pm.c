/* Unit tests for the ACPI sleep and reset registers (devices/acpi_pm.c): which writes
 * power off or reset the VM, and which are ignored. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/acpi.h"
#include "devices/acpi_pm.h"

static unsigned int poweroffs, resets;

static void on_poweroff(void *opaque)
{
	assert_ptr_equal(opaque, &poweroffs);
	poweroffs++;
}

static void on_reset(void *opaque)
{
	assert_ptr_equal(opaque, &poweroffs);
	resets++;
}

static struct acpi_pm pm;

static int setup(void **state)
{
	(void)state;
	poweroffs = resets = 0;
	acpi_pm_init(&pm, on_poweroff, on_reset, &poweroffs);
	return 0;
}

static void write_byte(uint16_t port, uint8_t value)
{
	acpi_pm_ops.write(&pm, port - ACPI_PM_PORT_BASE, &value, 1);
}

static void test_s5_with_slp_en_powers_off(void **state)
{
	(void)state;
	/* What Linux's acpi_hw_extended_sleep writes: SLP_TYP 5 in bits 4:2, SLP_EN. */
	write_byte(ACPI_SLEEP_CONTROL, (5 << 2) | 0x20);
	assert_int_equal(poweroffs, 1);
	assert_int_equal(resets, 0);
}

static void test_sleep_writes_that_are_not_s5_entry_are_ignored(void **state)
{
	(void)state;
	write_byte(ACPI_SLEEP_STATUS, 0x80);		 /* clearing WAK_STS before sleeping */
	write_byte(ACPI_SLEEP_CONTROL, 5 << 2);		 /* SLP_TYP without SLP_EN */
	write_byte(ACPI_SLEEP_CONTROL, (3 << 2) | 0x20); /* S3: not in the DSDT */
	write_byte(ACPI_SLEEP_CONTROL, (3 << 2) | 0x20);
	write_byte(ACPI_SLEEP_STATUS, (5 << 2) | 0x20); /* the status register */
	uint8_t wide[2] = {(5 << 2) | 0x20, 0};
	acpi_pm_ops.write(&pm, ACPI_PM_SLEEP_CONTROL_OFFSET, wide, 2); /* not byte-wide */
	assert_int_equal(poweroffs, 0);
	assert_int_equal(resets, 0);
	assert_true(pm.warned);
}

static void test_reset_value_on_reset_register_resets(void **state)
{
	(void)state;
	write_byte(ACPI_RESET_PORT, 0x00);
	write_byte(ACPI_RESET_PORT, 0x06);
	write_byte(ACPI_SLEEP_CONTROL, ACPI_RESET_VALUE);
	assert_int_equal(resets, 0);
	write_byte(ACPI_RESET_PORT, ACPI_RESET_VALUE);
	assert_int_equal(resets, 1);
	assert_int_equal(poweroffs, 0);
}

static void test_registers_read_zero(void **state)
{
	uint8_t data[4];
	(void)state;
	for (uint64_t offset = 0; offset < ACPI_PM_PORT_COUNT; offset++) {
		memset(data, 0xcc, sizeof(data));
		acpi_pm_ops.read(&pm, offset, data, 1);
		assert_int_equal(data[0], 0);
		assert_int_equal(data[1], 0xcc);
	}
}

static void test_state_is_empty_for_snapshots(void **state)
{
	uint8_t buf[8];
	(void)state;
	assert_int_equal(acpi_pm_ops.save(&pm, buf, sizeof(buf)), 0);
	assert_int_equal(acpi_pm_ops.restore(&pm, buf, 0), 0);
	assert_int_equal(acpi_pm_ops.restore(&pm, buf, 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_s5_with_slp_en_powers_off, setup),
	    cmocka_unit_test_setup(test_sleep_writes_that_are_not_s5_entry_are_ignored, setup),
	    cmocka_unit_test_setup(test_reset_value_on_reset_register_resets, setup),
	    cmocka_unit_test_setup(test_registers_read_zero, setup),
	    cmocka_unit_test_setup(test_state_is_empty_for_snapshots, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
