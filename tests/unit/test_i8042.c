/* Unit tests for the i8042 keyboard controller (devices/i8042.c), driven through i8042_ops
 * on its bus range: offset 0 is the data port (0x60), offset 4 the status/command port
 * (0x64). Fakes record the interrupt line and the reset requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/i8042.h"
#include "test_support.h"

struct fixture {
	struct i8042 kbc;
	struct irq_record irq;
	unsigned int resets;
	void *reset_opaque_seen;
};

static void fake_reset_request(void *opaque)
{
	struct fixture *f = opaque;
	f->resets++;
	f->reset_opaque_seen = opaque;
}

static void fixture_init(struct fixture *f)
{
	i8042_init(&f->kbc, irq_record_line(&f->irq, I8042_KBD_IRQ), fake_reset_request, f);
	memset(&f->irq, 0, sizeof(f->irq));
	f->resets = 0;
	f->reset_opaque_seen = NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	fixture_init(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	pthread_mutex_destroy(&f->kbc.lock);
	free(f);
	return 0;
}

static uint8_t rd(struct i8042 *k, uint64_t offset)
{
	return (uint8_t)reg_read(&i8042_ops, k, offset, 1, 0x5a);
}

static void wr(struct i8042 *k, uint64_t offset, uint8_t value)
{
	reg_write(&i8042_ops, k, offset, 1, value);
}

static uint8_t status(struct i8042 *k)
{
	return rd(k, I8042_COMMAND_OFFSET);
}

static void command(struct i8042 *k, uint8_t value)
{
	wr(k, I8042_COMMAND_OFFSET, value);
}

static void data_out(struct i8042 *k, uint8_t value)
{
	wr(k, I8042_DATA_OFFSET, value);
}

static uint8_t data_in(struct i8042 *k)
{
	return rd(k, I8042_DATA_OFFSET);
}

static bool obf(struct i8042 *k)
{
	return status(k) & I8042_STATUS_OBF;
}

/* Reads the output buffer and expects exactly `len` bytes, then an empty buffer. */
static void expect_output(struct i8042 *k, const uint8_t *bytes, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		assert_true(obf(k));
		assert_int_equal(data_in(k), bytes[i]);
	}
	assert_false(obf(k));
}

#define EXPECT_OUTPUT(k, ...)                                                                      \
	do {                                                                                       \
		static const uint8_t expected_[] = {__VA_ARGS__};                                  \
		expect_output(k, expected_, sizeof(expected_));                                    \
	} while (0)

/* ---- reset state and port layout ---- */

static void test_reset_state_has_empty_buffer_and_system_flag(void **state)
{
	struct fixture *f = *state;
	const uint8_t ctr = I8042_CTR_KBD_INT | I8042_CTR_SYS | I8042_CTR_XLATE;

	/* and the keyboard not inhibited: Linux warns "Keylock active" otherwise */
	assert_int_equal(status(&f->kbc), I8042_STATUS_SYS | I8042_STATUS_UNLOCKED);
	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, ctr);
	command(&f->kbc, 0xd0);
	EXPECT_OUTPUT(&f->kbc, 0x01); /* reset line not asserted */
	assert_int_equal(f->resets, 0);
}

static void test_offsets_1_to_3_read_all_ones_and_ignore_writes(void **state)
{
	struct fixture *f = *state;

	for (uint64_t offset = 1; offset <= 3; offset++) {
		assert_int_equal(rd(&f->kbc, offset), 0xff);
		wr(&f->kbc, offset, 0xaa); /* would be the self test on 0x64 */
		wr(&f->kbc, offset, 0xfe); /* would pulse reset */
	}
	assert_false(obf(&f->kbc));
	assert_int_equal(f->resets, 0);
	assert_int_equal(f->irq.calls, 0);
}

static void test_read_fills_only_first_byte_and_zeroes_rest(void **state)
{
	struct fixture *f = *state;
	uint8_t data[4] = {0x11, 0x11, 0x11, 0x11};

	command(&f->kbc, 0xaa);
	i8042_ops.read(&f->kbc, I8042_DATA_OFFSET, data, sizeof(data));
	assert_int_equal(data[0], 0x55);
	assert_int_equal(data[1], 0);
	assert_int_equal(data[2], 0);
	assert_int_equal(data[3], 0);
}

/* ---- controller commands ---- */

static void test_self_test_answers_0x55(void **state)
{
	struct fixture *f = *state;

	assert_false(obf(&f->kbc));
	command(&f->kbc, 0xaa);
	EXPECT_OUTPUT(&f->kbc, 0x55);
}

static void test_status_command_flag_follows_last_port_written(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xaa);
	assert_int_equal(status(&f->kbc) & I8042_STATUS_COMMAND, I8042_STATUS_COMMAND);
	(void)data_in(&f->kbc);
	data_out(&f->kbc, 0xee);
	assert_int_equal(status(&f->kbc) & I8042_STATUS_COMMAND, 0);
}

static void test_read_ctr_returns_command_byte(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, I8042_CTR_KBD_INT | I8042_CTR_SYS | I8042_CTR_XLATE);
}

static void test_write_ctr_takes_next_data_byte(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0x60);
	data_out(&f->kbc, 0x65);
	/* The data byte went to the CTR, not to the keyboard: no ACK. */
	assert_false(obf(&f->kbc));
	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, 0x65);

	/* Only one data byte is taken: the next one goes to the keyboard again. */
	data_out(&f->kbc, 0xee);
	EXPECT_OUTPUT(&f->kbc, 0xee);
	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, 0x65);
}

static void test_write_ctr_sys_bit_is_mirrored_in_status(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0x60);
	data_out(&f->kbc, 0x41);
	assert_int_equal(status(&f->kbc) & I8042_STATUS_SYS, 0);
	command(&f->kbc, 0x60);
	data_out(&f->kbc, 0x45);
	assert_int_equal(status(&f->kbc) & I8042_STATUS_SYS, I8042_STATUS_SYS);
}

static void test_keyboard_port_test_answers_0x00(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xab);
	assert_true(obf(&f->kbc));
	EXPECT_OUTPUT(&f->kbc, 0x00);
}

static void test_disable_and_enable_keyboard_toggle_ctr_bit_4(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xad);
	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, 0x55);
	command(&f->kbc, 0xae);
	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, 0x45);
}

static void test_write_keyboard_output_buffer_echoes_data_byte(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xd2);
	assert_false(obf(&f->kbc));
	data_out(&f->kbc, 0x9c);
	EXPECT_OUTPUT(&f->kbc, 0x9c);
}

/* ---- keyboard commands (data port) ---- */

static void test_keyboard_reset_answers_ack_then_self_test_ok(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xff);
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xaa);
	assert_int_equal(f->resets, 0);
}

static void test_set_leds_acks_command_and_parameter(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xed);
	EXPECT_OUTPUT(&f->kbc, 0xfa);
	data_out(&f->kbc, 0x07);
	EXPECT_OUTPUT(&f->kbc, 0xfa);
}

static void test_set_leds_parameter_is_not_taken_as_a_command(void **state)
{
	struct fixture *f = *state;

	/* 0xff as the LED mask must not reset the keyboard (which would add 0xaa). */
	data_out(&f->kbc, 0xed);
	data_out(&f->kbc, 0xff);
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xfa);
	/* After the parameter, 0xff is a reset again. */
	data_out(&f->kbc, 0xff);
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xaa);
}

static void test_set_rate_parameter_is_acked_not_echoed(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xf3);
	data_out(&f->kbc, 0xee); /* a rate byte, not ECHO */
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xfa);
}

static void test_echo_answers_0xee(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xee);
	EXPECT_OUTPUT(&f->kbc, 0xee);
}

static void test_get_id_answers_ack_and_mf2_id(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xf2);
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xab, 0x83);
}

static void test_other_keyboard_commands_are_acked(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xf4); /* enable scanning */
	data_out(&f->kbc, 0xf5); /* disable scanning */
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xfa);
}

/* ---- output buffer ---- */

static void test_status_obf_follows_output_buffer(void **state)
{
	struct fixture *f = *state;

	assert_false(obf(&f->kbc));
	data_out(&f->kbc, 0xf2);
	assert_true(obf(&f->kbc));
	assert_int_equal(data_in(&f->kbc), 0xfa);
	assert_true(obf(&f->kbc));
	assert_int_equal(data_in(&f->kbc), 0xab);
	assert_true(obf(&f->kbc));
	assert_int_equal(data_in(&f->kbc), 0x83);
	assert_false(obf(&f->kbc));
	/* Reading an empty buffer gives 0 and leaves OBF clear. */
	assert_int_equal(data_in(&f->kbc), 0);
	assert_false(obf(&f->kbc));
	/* Reading the status port does not consume data. */
	command(&f->kbc, 0xaa);
	assert_true(obf(&f->kbc));
	assert_true(obf(&f->kbc));
	EXPECT_OUTPUT(&f->kbc, 0x55);
}

static void test_output_buffer_keeps_16_bytes_and_drops_the_rest(void **state)
{
	struct fixture *f = *state;

	/* 6 x GET_ID = 18 bytes; the last two do not fit. */
	for (int i = 0; i < 6; i++)
		data_out(&f->kbc, 0xf2);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(data_in(&f->kbc), 0xfa);
		assert_int_equal(data_in(&f->kbc), 0xab);
		assert_int_equal(data_in(&f->kbc), 0x83);
	}
	EXPECT_OUTPUT(&f->kbc, 0xfa);
}

/* ---- reset line ---- */

static void test_pulse_reset_0xfe_requests_reset_once(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xfe);
	assert_int_equal(f->resets, 1);
	assert_ptr_equal(f->reset_opaque_seen, f);
	assert_false(obf(&f->kbc));
}

static void test_pulse_0xff_does_not_request_reset(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xff); /* pulses no line */
	command(&f->kbc, 0xf1); /* bit 0 high: not the reset line */
	assert_int_equal(f->resets, 0);
	command(&f->kbc, 0xf0); /* bit 0 low: reset */
	assert_int_equal(f->resets, 1);
}

static void test_write_output_port_with_bit0_clear_requests_reset(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xd1);
	assert_int_equal(f->resets, 0);
	data_out(&f->kbc, 0xfe);
	assert_int_equal(f->resets, 1);
	assert_ptr_equal(f->reset_opaque_seen, f);
	assert_false(obf(&f->kbc)); /* not taken for a keyboard command */
}

static void test_write_output_port_with_bit0_set_does_not_reset(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xd1);
	data_out(&f->kbc, 0xdf);
	assert_int_equal(f->resets, 0);
	assert_false(obf(&f->kbc));
	command(&f->kbc, 0xd0);
	EXPECT_OUTPUT(&f->kbc, 0xdf);
}

static void test_reset_without_callback_is_harmless(void **state)
{
	struct i8042 kbc;
	struct irq_line line = {0};
	(void)state;

	i8042_init(&kbc, line, NULL, NULL);
	command(&kbc, 0xfe);
	command(&kbc, 0xd1);
	data_out(&kbc, 0x00);
	command(&kbc, 0xaa);
	EXPECT_OUTPUT(&kbc, 0x55);
	pthread_mutex_destroy(&kbc.lock);
}

/* ---- interrupts ---- */

static void test_irq1_raised_when_output_is_queued(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0xaa);
	assert_int_equal(f->irq.raises, 1);
	assert_int_equal(last_level(&f->irq), 1);
	for (unsigned int i = 0; i < f->irq.calls; i++)
		assert_int_equal(f->irq.irq[i], I8042_KBD_IRQ);
	assert_int_equal(data_in(&f->kbc), 0x55);
	assert_int_equal(last_level(&f->irq), 0);
	assert_int_equal(f->irq.raises, 1);
}

static void test_irq1_not_raised_when_keyboard_interrupt_disabled(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0x60);
	data_out(&f->kbc, I8042_CTR_SYS | I8042_CTR_XLATE);
	f->irq = (struct irq_record){0};

	command(&f->kbc, 0xaa);
	data_out(&f->kbc, 0xff);
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_true(obf(&f->kbc));
	assert_int_equal(f->irq.raises, 0);

	/* Enabling the interrupt with data waiting raises it. */
	command(&f->kbc, 0x60);
	data_out(&f->kbc, I8042_CTR_KBD_INT | I8042_CTR_SYS | I8042_CTR_XLATE);
	assert_int_equal(f->irq.raises, 1);
	assert_int_equal(last_level(&f->irq), 1);
}

static void test_each_byte_read_with_more_queued_gives_a_new_edge(void **state)
{
	struct fixture *f = *state;

	data_out(&f->kbc, 0xff);
	assert_int_equal(last_level(&f->irq), 1);
	f->irq = (struct irq_record){0};
	assert_int_equal(data_in(&f->kbc), 0xfa);
	/* Low, then high again: an edge-triggered pin sees the second byte. */
	assert_int_equal(f->irq.calls, 2);
	assert_int_equal(f->irq.level[0], 0);
	assert_int_equal(f->irq.level[1], 1);
	assert_int_equal(data_in(&f->kbc), 0xaa);
	assert_int_equal(last_level(&f->irq), 0);
	assert_int_equal(f->irq.raises, 1);
}

/* ---- Ctrl-Alt-Del ---- */

static void test_ctrl_alt_del_queues_eight_scan_codes_in_order(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_int_equal(last_level(&f->irq), 1);
	EXPECT_OUTPUT(&f->kbc, 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d);
	assert_int_equal(last_level(&f->irq), 0);
}

static void test_ctrl_alt_del_fits_exactly_with_eight_bytes_queued(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 4; i++)
		data_out(&f->kbc, 0xff); /* 4 x (fa aa) = 8 bytes */
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xaa, 0xfa, 0xaa, 0xfa, 0xaa, 0xfa, 0xaa, 0x1d, 0x38, 0xe0,
		      0x53, 0xe0, 0xd3, 0xb8, 0x9d);
}

static void test_ctrl_alt_del_is_enospc_when_buffer_cannot_hold_it(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 3; i++)
		data_out(&f->kbc, 0xf2); /* 9 bytes: 7 free */
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), -ENOSPC);
	/* Nothing was queued: the buffer holds just the 9 bytes. */
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xab, 0x83, 0xfa, 0xab, 0x83, 0xfa, 0xab, 0x83);

	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), 0);
	assert_int_equal(i8042_send_ctrl_alt_del(&f->kbc), -ENOSPC);
}

/* ---- reset op ---- */

static void test_reset_op_restores_defaults_and_lowers_line(void **state)
{
	struct fixture *f = *state;

	command(&f->kbc, 0x60);
	data_out(&f->kbc, 0x01);
	command(&f->kbc, 0xd1);
	data_out(&f->kbc, 0x03);
	data_out(&f->kbc, 0xed); /* leaves a keyboard command pending */
	assert_true(obf(&f->kbc));
	assert_int_equal(last_level(&f->irq), 1);

	i8042_ops.reset(&f->kbc);
	assert_int_equal(last_level(&f->irq), 0);
	assert_int_equal(status(&f->kbc), I8042_STATUS_SYS | I8042_STATUS_UNLOCKED);
	command(&f->kbc, 0x20);
	EXPECT_OUTPUT(&f->kbc, 0x45);
	command(&f->kbc, 0xd0);
	EXPECT_OUTPUT(&f->kbc, 0x01);
	data_out(&f->kbc, 0xff); /* a command again, not the LED parameter */
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xaa);
}

/* ---- snapshots ---- */

/* A controller with a wrapped output buffer, a custom CTR and output port, and a
 * keyboard command waiting for its parameter. */
static void make_busy(struct i8042 *k)
{
	command(k, 0x60);
	data_out(k, 0x47);
	command(k, 0xd1);
	data_out(k, 0x0b);
	for (int i = 0; i < 4; i++)
		data_out(k, 0xf2); /* 12 bytes */
	for (int i = 0; i < 10; i++)
		(void)data_in(k);
	command(k, 0xaa);
	for (int i = 0; i < 3; i++)
		data_out(k, 0xff); /* 2 + 1 + 6 = 9 bytes, wrapping past the end */
	data_out(k, 0xed);	   /* + ACK = 10 bytes, parameter pending */
}

static void test_save_restore_round_trip_behaves_identically(void **state)
{
	struct fixture *f = *state;
	struct fixture *g = calloc(1, sizeof(*g));
	uint8_t buf[sizeof(struct i8042_state) + 8];
	int size;

	assert_non_null(g);
	make_busy(&f->kbc);
	size = i8042_ops.save(&f->kbc, buf, sizeof(buf));
	assert_int_equal(size, sizeof(struct i8042_state));

	fixture_init(g);
	assert_int_equal(i8042_ops.restore(&g->kbc, buf, (size_t)size), 0);
	assert_int_equal(last_level(&g->irq), 1);

	assert_int_equal(status(&g->kbc), status(&f->kbc));
	for (int i = 0; i < 12; i++) {
		assert_int_equal(status(&g->kbc), status(&f->kbc));
		assert_int_equal(data_in(&g->kbc), data_in(&f->kbc));
	}
	assert_false(obf(&g->kbc));
	/* The pending SET_LEDS takes its parameter in both. */
	data_out(&f->kbc, 0xff);
	data_out(&g->kbc, 0xff);
	EXPECT_OUTPUT(&f->kbc, 0xfa);
	EXPECT_OUTPUT(&g->kbc, 0xfa);
	command(&g->kbc, 0x20);
	EXPECT_OUTPUT(&g->kbc, 0x47);
	command(&g->kbc, 0xd0);
	EXPECT_OUTPUT(&g->kbc, 0x0b);

	pthread_mutex_destroy(&g->kbc.lock);
	free(g);
}

static void test_restore_rejects_wrong_size(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[sizeof(struct i8042_state) + 1];

	assert_int_equal(i8042_ops.save(&f->kbc, buf, sizeof(buf)), sizeof(struct i8042_state));
	command(&f->kbc, 0xaa);
	assert_int_equal(i8042_ops.restore(&f->kbc, buf, sizeof(struct i8042_state) - 1), -EINVAL);
	assert_int_equal(i8042_ops.restore(&f->kbc, buf, sizeof(struct i8042_state) + 1), -EINVAL);
	assert_int_equal(i8042_ops.restore(&f->kbc, buf, 0), -EINVAL);
	EXPECT_OUTPUT(&f->kbc, 0x55); /* the state was not replaced */
}

static void assert_restore_rejected(struct i8042 *k, const struct i8042_state *state)
{
	assert_int_equal(i8042_ops.restore(k, state, sizeof(*state)), -EINVAL);
	/* The controller kept its own state: one byte (0x55) queued. */
	EXPECT_OUTPUT(k, 0x55);
	command(k, 0xaa);
}

static void test_restore_rejects_corrupt_buffer_indices(void **state)
{
	struct fixture *f = *state;
	struct i8042_state good, bad;

	data_out(&f->kbc, 0xff);
	assert_int_equal(i8042_ops.save(&f->kbc, &good, sizeof(good)), sizeof(good));
	EXPECT_OUTPUT(&f->kbc, 0xfa, 0xaa);
	command(&f->kbc, 0xaa);

	bad = good;
	bad.out_count = I8042_BUFFER_SIZE + 1;
	assert_restore_rejected(&f->kbc, &bad);
	bad = good;
	bad.out_count = 0xff;
	assert_restore_rejected(&f->kbc, &bad);
	bad = good;
	bad.out_head = I8042_BUFFER_SIZE;
	assert_restore_rejected(&f->kbc, &bad);
	bad = good;
	bad.out_head = 0xff;
	assert_restore_rejected(&f->kbc, &bad);

	/* The largest valid indices: a full buffer starting at its last slot. */
	bad = good;
	bad.out_count = I8042_BUFFER_SIZE;
	bad.out_head = I8042_BUFFER_SIZE - 1;
	bad.status |= I8042_STATUS_OBF;
	for (int i = 0; i < I8042_BUFFER_SIZE; i++)
		bad.out_buffer[i] = (uint8_t)(0x30 + i);
	assert_int_equal(i8042_ops.restore(&f->kbc, &bad, sizeof(bad)), 0);
	assert_int_equal(data_in(&f->kbc), 0x30 + I8042_BUFFER_SIZE - 1);
	for (int i = 0; i < I8042_BUFFER_SIZE - 1; i++)
		assert_int_equal(data_in(&f->kbc), 0x30 + i);
	assert_false(obf(&f->kbc));
}

static void test_save_into_too_small_buffer_is_enospc(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[sizeof(struct i8042_state)];

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(i8042_ops.save(&f->kbc, buf, sizeof(buf) - 1), -ENOSPC);
	assert_int_equal(i8042_ops.save(&f->kbc, buf, 0), -ENOSPC);
	assert_int_equal(buf[0], 0xee);
	assert_int_equal(i8042_ops.save(&f->kbc, buf, sizeof(buf)), sizeof(buf));
	/* status is the first field */
	assert_int_equal(buf[0], I8042_STATUS_SYS | I8042_STATUS_UNLOCKED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(test_reset_state_has_empty_buffer_and_system_flag),
	    T(test_offsets_1_to_3_read_all_ones_and_ignore_writes),
	    T(test_read_fills_only_first_byte_and_zeroes_rest),
	    T(test_self_test_answers_0x55),
	    T(test_status_command_flag_follows_last_port_written),
	    T(test_read_ctr_returns_command_byte),
	    T(test_write_ctr_takes_next_data_byte),
	    T(test_write_ctr_sys_bit_is_mirrored_in_status),
	    T(test_keyboard_port_test_answers_0x00),
	    T(test_disable_and_enable_keyboard_toggle_ctr_bit_4),
	    T(test_write_keyboard_output_buffer_echoes_data_byte),
	    T(test_keyboard_reset_answers_ack_then_self_test_ok),
	    T(test_set_leds_acks_command_and_parameter),
	    T(test_set_leds_parameter_is_not_taken_as_a_command),
	    T(test_set_rate_parameter_is_acked_not_echoed),
	    T(test_echo_answers_0xee),
	    T(test_get_id_answers_ack_and_mf2_id),
	    T(test_other_keyboard_commands_are_acked),
	    T(test_status_obf_follows_output_buffer),
	    T(test_output_buffer_keeps_16_bytes_and_drops_the_rest),
	    T(test_pulse_reset_0xfe_requests_reset_once),
	    T(test_pulse_0xff_does_not_request_reset),
	    T(test_write_output_port_with_bit0_clear_requests_reset),
	    T(test_write_output_port_with_bit0_set_does_not_reset),
	    cmocka_unit_test(test_reset_without_callback_is_harmless),
	    T(test_irq1_raised_when_output_is_queued),
	    T(test_irq1_not_raised_when_keyboard_interrupt_disabled),
	    T(test_each_byte_read_with_more_queued_gives_a_new_edge),
	    T(test_ctrl_alt_del_queues_eight_scan_codes_in_order),
	    T(test_ctrl_alt_del_fits_exactly_with_eight_bytes_queued),
	    T(test_ctrl_alt_del_is_enospc_when_buffer_cannot_hold_it),
	    T(test_reset_op_restores_defaults_and_lowers_line),
	    T(test_save_restore_round_trip_behaves_identically),
	    T(test_restore_rejects_wrong_size),
	    T(test_restore_rejects_corrupt_buffer_indices),
	    T(test_save_into_too_small_buffer_is_enospc),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
