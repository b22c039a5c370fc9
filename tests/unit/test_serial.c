/* Unit tests for the 8250/16550A UART (devices/serial.c), driven through serial_ops the
 * way the port I/O bus drives it. A fake interrupt line records every level change and a
 * fake output callback records every transmitted byte. The console output
 * (devices/serial_output.c) is tested on real pipes and files, behind a UART. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/serial.h"
#include "devices/serial_output.h"
#include "test_support.h"

struct output_record {
	size_t len;
	size_t calls;
	uint8_t bytes[1024];
};

struct fixture {
	struct serial serial;
	struct irq_record irq;
	struct output_record out;
};

static void fake_output(void *opaque, const uint8_t *bytes, size_t len)
{
	struct output_record *rec = opaque;
	assert_true(rec->len + len <= sizeof(rec->bytes));
	memcpy(rec->bytes + rec->len, bytes, len);
	rec->len += len;
	rec->calls++;
}

static void fixture_init(struct fixture *f)
{
	memset(&f->irq, 0, sizeof(f->irq));
	memset(&f->out, 0, sizeof(f->out));
	serial_init(&f->serial, irq_record_line(&f->irq, SERIAL_COM1_IRQ), fake_output, &f->out);
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
	pthread_mutex_destroy(&f->serial.lock);
	free(f);
	return 0;
}

static uint8_t rd(struct serial *s, uint64_t offset)
{
	return (uint8_t)reg_read(&serial_ops, s, offset, 1, 0x5a);
}

static void wr(struct serial *s, uint64_t offset, uint8_t value)
{
	reg_write(&serial_ops, s, offset, 1, value);
}

static void receive_all(struct serial *s, const char *text)
{
	size_t len = strlen(text);
	assert_int_equal(serial_receive(s, (const uint8_t *)text, len), len);
}

/* ---- reset state ---- */

static void test_reset_state_is_8n1_out2_no_interrupt(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(&f->serial, UART_IER), 0);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(rd(&f->serial, UART_LCR), 0x03);
	assert_int_equal(rd(&f->serial, UART_MCR), 0x08);
	assert_int_equal(rd(&f->serial, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(&f->serial, UART_MSR), UART_MSR_DEFAULT);
	assert_int_equal(rd(&f->serial, UART_SCR), 0);
	assert_int_equal(serial_rx_space(&f->serial), SERIAL_FIFO_SIZE);
	/* The line starts low, so init has nothing to change. */
	assert_int_equal(f->irq.calls, 0);
}

static void test_read_fills_only_first_byte_and_zeroes_rest(void **state)
{
	struct fixture *f = *state;
	uint8_t data[4] = {0xaa, 0xaa, 0xaa, 0xaa};

	serial_ops.read(&f->serial, UART_LSR, data, sizeof(data));
	assert_int_equal(data[0], UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(data[1], 0);
	assert_int_equal(data[2], 0);
	assert_int_equal(data[3], 0);
}

/* ---- transmit ---- */

static void test_thr_writes_reach_output_callback_in_order(void **state)
{
	struct fixture *f = *state;
	const char *text = "wisp\r\n";

	for (const char *p = text; *p; p++)
		wr(&f->serial, UART_RBR, (uint8_t)*p);
	assert_int_equal(f->out.len, strlen(text));
	assert_int_equal(f->out.calls, strlen(text));
	assert_memory_equal(f->out.bytes, text, strlen(text));
	/* Transmitted bytes never show up on the receive side. */
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);
}

static void test_thr_write_without_output_callback_is_dropped(void **state)
{
	struct serial serial;
	struct irq_line line = {0};
	(void)state;

	serial_init(&serial, line, NULL, NULL);
	wr(&serial, UART_RBR, 'x');
	assert_int_equal(rd(&serial, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(serial_rx_space(&serial), SERIAL_FIFO_SIZE);
	pthread_mutex_destroy(&serial.lock);
}

/* ---- divisor latch ---- */

static void test_dlab_switches_offsets_0_and_1_to_divisor_latch(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_LCR, UART_LCR_DLAB | 0x03);
	wr(&f->serial, UART_RBR, 0x0c); /* DLL: 9600 baud */
	wr(&f->serial, UART_IER, 0x01); /* DLM */
	assert_int_equal(rd(&f->serial, UART_RBR), 0x0c);
	assert_int_equal(rd(&f->serial, UART_IER), 0x01);
	/* With DLAB set nothing was transmitted and IER was not touched. */
	assert_int_equal(f->out.len, 0);
	assert_int_equal(f->irq.calls, 0);

	wr(&f->serial, UART_LCR, 0x03);
	assert_int_equal(rd(&f->serial, UART_LCR), 0x03);
	assert_int_equal(rd(&f->serial, UART_IER), 0);
	wr(&f->serial, UART_RBR, 'A');
	assert_int_equal(f->out.len, 1);
	assert_int_equal(f->out.bytes[0], 'A');

	/* The latch kept its value while DLAB was clear. */
	wr(&f->serial, UART_LCR, UART_LCR_DLAB);
	assert_int_equal(rd(&f->serial, UART_RBR), 0x0c);
	assert_int_equal(rd(&f->serial, UART_IER), 0x01);
}

static void test_dlab_hides_received_data_from_offset_0(void **state)
{
	struct fixture *f = *state;

	receive_all(&f->serial, "Q");
	wr(&f->serial, UART_LCR, UART_LCR_DLAB);
	assert_int_equal(rd(&f->serial, UART_RBR), 0); /* DLL, not the byte */
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	wr(&f->serial, UART_LCR, 0x03);
	assert_int_equal(rd(&f->serial, UART_RBR), 'Q');
}

/* ---- line status ---- */

static void test_lsr_thre_temt_always_set_and_dr_follows_rx_fifo(void **state)
{
	struct fixture *f = *state;
	const uint8_t empty = UART_LSR_THRE | UART_LSR_TEMT;

	assert_int_equal(rd(&f->serial, UART_LSR), empty);
	wr(&f->serial, UART_RBR, 'x');
	assert_int_equal(rd(&f->serial, UART_LSR), empty);
	receive_all(&f->serial, "ab");
	assert_int_equal(rd(&f->serial, UART_LSR), empty | UART_LSR_DR);
	assert_int_equal(rd(&f->serial, UART_RBR), 'a');
	assert_int_equal(rd(&f->serial, UART_LSR), empty | UART_LSR_DR);
	assert_int_equal(rd(&f->serial, UART_RBR), 'b');
	assert_int_equal(rd(&f->serial, UART_LSR), empty);
	/* Reading an empty FIFO gives 0 and changes nothing. */
	assert_int_equal(rd(&f->serial, UART_RBR), 0);
	assert_int_equal(rd(&f->serial, UART_LSR), empty);
}

static void test_lsr_and_msr_are_read_only(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_LSR, 0x00);
	wr(&f->serial, UART_MSR, 0x00);
	assert_int_equal(rd(&f->serial, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(rd(&f->serial, UART_MSR), UART_MSR_DEFAULT);
	assert_int_equal(f->out.len, 0);
}

/* ---- interrupt identification ---- */

static void test_iir_rx_data_has_priority_over_thr_empty(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_RDI | UART_IER_THRI);
	receive_all(&f->serial, "z");
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_RDI);
	/* Reporting RX data did not acknowledge the THR-empty interrupt behind it. */
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(&f->serial, UART_RBR), 'z');
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_THRI);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
}

static void test_iir_rx_interrupt_needs_ier_rdi(void **state)
{
	struct fixture *f = *state;

	receive_all(&f->serial, "abc");
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
	assert_int_equal(f->irq.calls, 0);
	wr(&f->serial, UART_IER, UART_IER_RDI);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_RDI);
	assert_int_equal(f->irq.calls, 1);
	assert_int_equal(f->irq.level[0], 1);
}

static void test_iir_reports_fifo_bits_after_fcr_enable(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
	wr(&f->serial, UART_IIR, UART_FCR_ENABLE);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	wr(&f->serial, UART_IER, UART_IER_RDI);
	receive_all(&f->serial, "k");
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	wr(&f->serial, UART_IER, UART_IER_RDI | UART_IER_THRI);
	(void)rd(&f->serial, UART_RBR);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_FIFO | UART_IIR_THRI);
	wr(&f->serial, UART_IIR, 0);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
}

static void test_thr_empty_interrupt_raised_on_enable_and_acked_by_iir_read(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_THRI);
	assert_int_equal(f->irq.calls, 1);
	assert_int_equal(f->irq.level[0], 1);
	assert_int_equal(f->irq.irq[0], SERIAL_COM1_IRQ);

	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_THRI);
	assert_int_equal(f->irq.calls, 2);
	assert_int_equal(f->irq.level[1], 0);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);

	/* Each transmitted byte empties THR again and raises a new interrupt. */
	wr(&f->serial, UART_RBR, 'x');
	assert_int_equal(f->irq.calls, 3);
	assert_int_equal(f->irq.level[2], 1);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_THRI);
	assert_int_equal(f->irq.calls, 4);
	assert_int_equal(f->irq.level[3], 0);
}

static void test_rewriting_ier_with_thri_already_set_does_not_reraise(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_THRI);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_THRI);
	wr(&f->serial, UART_IER, UART_IER_THRI | UART_IER_RDI);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
	/* Turning THRI off and on again is how a driver asks for a fresh interrupt. */
	wr(&f->serial, UART_IER, UART_IER_RDI);
	wr(&f->serial, UART_IER, UART_IER_THRI | UART_IER_RDI);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_THRI);
}

static void test_disabling_thri_lowers_the_line(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_THRI);
	assert_int_equal(last_level(&f->irq), 1);
	wr(&f->serial, UART_IER, 0);
	assert_int_equal(f->irq.calls, 2);
	assert_int_equal(last_level(&f->irq), 0);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_NO_INT);
}

static void test_irq_line_called_only_when_interrupt_state_changes(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_RDI);
	assert_int_equal(f->irq.calls, 0);
	receive_all(&f->serial, "a");
	assert_int_equal(f->irq.calls, 1);
	assert_int_equal(f->irq.level[0], 1);
	assert_int_equal(f->irq.irq[0], SERIAL_COM1_IRQ);

	/* More data, status reads and a partial drain keep the line up without calls. */
	receive_all(&f->serial, "bc");
	(void)rd(&f->serial, UART_LSR);
	(void)rd(&f->serial, UART_IIR);
	assert_int_equal(rd(&f->serial, UART_RBR), 'a');
	assert_int_equal(rd(&f->serial, UART_RBR), 'b');
	assert_int_equal(f->irq.calls, 1);

	assert_int_equal(rd(&f->serial, UART_RBR), 'c');
	assert_int_equal(f->irq.calls, 2);
	assert_int_equal(f->irq.level[1], 0);
	assert_int_equal(f->irq.irq[1], SERIAL_COM1_IRQ);

	/* Reads of an idle UART do not touch the line. */
	(void)rd(&f->serial, UART_RBR);
	(void)rd(&f->serial, UART_IIR);
	assert_int_equal(f->irq.calls, 2);
}

static void test_no_interrupt_when_ier_is_zero(void **state)
{
	struct fixture *f = *state;

	receive_all(&f->serial, "hello");
	for (int i = 0; i < 5; i++)
		wr(&f->serial, UART_RBR, 'o');
	for (int i = 0; i < 5; i++)
		(void)rd(&f->serial, UART_RBR);
	assert_int_equal(f->irq.calls, 0);
}

/* ---- loopback ---- */

static void test_loopback_msr_mirrors_mcr_as_linux_probe_expects(void **state)
{
	struct fixture *f = *state;

	/* serial8250's autoconfig: MCR = LOOP | OUT2 | RTS, then (MSR & 0xf0) == 0x90. */
	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x0a);
	assert_int_equal(rd(&f->serial, UART_MCR), 0x1a);
	assert_int_equal(rd(&f->serial, UART_MSR), 0x90);

	wr(&f->serial, UART_MCR, UART_MCR_LOOP);
	assert_int_equal(rd(&f->serial, UART_MSR), 0x00);
	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x01); /* DTR -> DSR */
	assert_int_equal(rd(&f->serial, UART_MSR), 0x20);
	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x02); /* RTS -> CTS */
	assert_int_equal(rd(&f->serial, UART_MSR), 0x10);
	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x04); /* OUT1 -> RI */
	assert_int_equal(rd(&f->serial, UART_MSR), 0x40);
	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x08); /* OUT2 -> DCD */
	assert_int_equal(rd(&f->serial, UART_MSR), 0x80);
	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x0f);
	assert_int_equal(rd(&f->serial, UART_MSR), 0xf0);

	/* Leaving loopback restores the real modem status. */
	wr(&f->serial, UART_MCR, 0x0b);
	assert_int_equal(rd(&f->serial, UART_MSR), UART_MSR_DEFAULT);
}

static void test_mcr_keeps_only_its_five_bits(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_MCR, 0xeb);
	assert_int_equal(rd(&f->serial, UART_MCR), 0x0b);
	wr(&f->serial, UART_IER, 0xf1);
	assert_int_equal(rd(&f->serial, UART_IER), 0x01);
}

static void test_loopback_sends_thr_writes_to_rx_fifo_not_output(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_MCR, UART_MCR_LOOP | 0x0a);
	wr(&f->serial, UART_RBR, 0xa5);
	wr(&f->serial, UART_RBR, 0x5a);
	assert_int_equal(f->out.len, 0);
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, UART_LSR_DR);
	assert_int_equal(serial_rx_space(&f->serial), SERIAL_FIFO_SIZE - 2);
	assert_int_equal(rd(&f->serial, UART_RBR), 0xa5);
	assert_int_equal(rd(&f->serial, UART_RBR), 0x5a);
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);

	wr(&f->serial, UART_MCR, 0x0b);
	wr(&f->serial, UART_RBR, 'o');
	assert_int_equal(f->out.len, 1);
	assert_int_equal(f->out.bytes[0], 'o');
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);
}

static void test_loopback_raises_rx_interrupt(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_MCR, UART_MCR_LOOP);
	wr(&f->serial, UART_IER, UART_IER_RDI);
	assert_int_equal(f->irq.calls, 0);
	wr(&f->serial, UART_RBR, 0x42);
	assert_int_equal(f->irq.calls, 1);
	assert_int_equal(f->irq.level[0], 1);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_RDI);
	assert_int_equal(rd(&f->serial, UART_RBR), 0x42);
	assert_int_equal(f->irq.calls, 2);
	assert_int_equal(f->irq.level[1], 0);
}

static void test_loopback_overrun_drops_bytes_beyond_fifo(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_MCR, UART_MCR_LOOP);
	for (int i = 0; i < SERIAL_FIFO_SIZE + 10; i++)
		wr(&f->serial, UART_RBR, (uint8_t)i);
	assert_int_equal(serial_rx_space(&f->serial), 0);
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(rd(&f->serial, UART_RBR), (uint8_t)i);
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(f->out.len, 0);
}

/* ---- receive FIFO ---- */

static void test_rx_fifo_holds_64_bytes_and_receive_returns_how_many_fitted(void **state)
{
	struct fixture *f = *state;
	uint8_t bytes[100];

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i + 1);
	assert_int_equal(serial_receive(&f->serial, bytes, 60), 60);
	assert_int_equal(serial_rx_space(&f->serial), 4);
	assert_int_equal(serial_receive(&f->serial, bytes + 60, 40), 4);
	assert_int_equal(serial_rx_space(&f->serial), 0);
	assert_int_equal(serial_receive(&f->serial, bytes, 1), 0);
	assert_int_equal(serial_receive(&f->serial, bytes, 0), 0);

	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		assert_int_equal(rd(&f->serial, UART_RBR), bytes[i]);
	assert_int_equal(serial_rx_space(&f->serial), SERIAL_FIFO_SIZE);
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);
}

static void test_rx_fifo_wraps_around_keeping_order(void **state)
{
	struct fixture *f = *state;
	uint8_t bytes[SERIAL_FIFO_SIZE];
	uint8_t expected = 0;
	uint8_t next = 0;

	/* Fill and drain unevenly many times so head and tail cross the end repeatedly. */
	for (int round = 0; round < 20; round++) {
		size_t space = serial_rx_space(&f->serial);
		size_t want = (size_t)(round * 7 % 50) + 1;
		size_t fits = want < space ? want : space;
		for (size_t i = 0; i < want; i++)
			bytes[i] = (uint8_t)(next + i);
		assert_int_equal(serial_receive(&f->serial, bytes, want), fits);
		next = (uint8_t)(next + fits);
		for (int i = 0; i < 23 && serial_rx_space(&f->serial) < SERIAL_FIFO_SIZE; i++)
			assert_int_equal(rd(&f->serial, UART_RBR), expected++);
	}
	while (serial_rx_space(&f->serial) < SERIAL_FIFO_SIZE)
		assert_int_equal(rd(&f->serial, UART_RBR), expected++);
	assert_int_equal(expected, next);
}

static void test_fcr_clear_rx_empties_fifo_and_lowers_interrupt(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_RDI);
	receive_all(&f->serial, "12345");
	assert_int_equal(last_level(&f->irq), 1);
	wr(&f->serial, UART_IIR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX);
	assert_int_equal(serial_rx_space(&f->serial), SERIAL_FIFO_SIZE);
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_FIFO | UART_IIR_NO_INT);
	assert_int_equal(last_level(&f->irq), 0);
	assert_int_equal(f->irq.calls, 2);

	/* The FIFO works normally afterwards. */
	receive_all(&f->serial, "xy");
	assert_int_equal(rd(&f->serial, UART_RBR), 'x');
	assert_int_equal(rd(&f->serial, UART_RBR), 'y');
}

static void test_fcr_without_clear_bit_keeps_rx_data(void **state)
{
	struct fixture *f = *state;

	receive_all(&f->serial, "keep");
	wr(&f->serial, UART_IIR, UART_FCR_ENABLE);
	assert_int_equal(serial_rx_space(&f->serial), SERIAL_FIFO_SIZE - 4);
	assert_int_equal(rd(&f->serial, UART_RBR), 'k');
}

/* ---- scratch ---- */

static void test_scratch_register_holds_any_value(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_SCR, 0x5a);
	assert_int_equal(rd(&f->serial, UART_SCR), 0x5a);
	wr(&f->serial, UART_SCR, 0xa5);
	assert_int_equal(rd(&f->serial, UART_SCR), 0xa5);
	wr(&f->serial, UART_SCR, 0xff);
	assert_int_equal(rd(&f->serial, UART_SCR), 0xff);
	assert_int_equal(f->out.len, 0);
}

/* ---- reset ---- */

static void test_reset_op_restores_defaults_and_lowers_line(void **state)
{
	struct fixture *f = *state;

	wr(&f->serial, UART_IER, UART_IER_RDI);
	receive_all(&f->serial, "data");
	wr(&f->serial, UART_SCR, 0x77);
	wr(&f->serial, UART_MCR, 0x1f);
	wr(&f->serial, UART_LCR, 0x83);
	assert_int_equal(last_level(&f->irq), 1);

	serial_ops.reset(&f->serial);
	assert_int_equal(last_level(&f->irq), 0);
	assert_int_equal(rd(&f->serial, UART_LCR), 0x03);
	assert_int_equal(rd(&f->serial, UART_MCR), 0x08);
	assert_int_equal(rd(&f->serial, UART_MSR), UART_MSR_DEFAULT);
	assert_int_equal(rd(&f->serial, UART_IER), 0);
	assert_int_equal(rd(&f->serial, UART_SCR), 0);
	assert_int_equal(rd(&f->serial, UART_LSR), UART_LSR_THRE | UART_LSR_TEMT);
	assert_int_equal(serial_rx_space(&f->serial), SERIAL_FIFO_SIZE);
}

/* ---- snapshots ---- */

/* Puts a UART into a state where every saved field is non-default and the FIFO wraps. */
static void make_busy(struct serial *s)
{
	uint8_t bytes[SERIAL_FIFO_SIZE];

	wr(s, UART_LCR, UART_LCR_DLAB | 0x03);
	wr(s, UART_RBR, 0x01);
	wr(s, UART_IER, 0x02);
	wr(s, UART_LCR, 0x1b);
	wr(s, UART_IIR, UART_FCR_ENABLE);
	wr(s, UART_SCR, 0x3c);
	wr(s, UART_MCR, 0x0b);
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(0x80 + i);
	assert_int_equal(serial_receive(s, bytes, 60), 60);
	for (int i = 0; i < 50; i++)
		(void)rd(s, UART_RBR);
	assert_int_equal(serial_receive(s, bytes, 30), 30); /* wraps past the end */
	wr(s, UART_IER, UART_IER_RDI | UART_IER_THRI);	    /* THR-empty pending too */
}

/* Reads every register of both UARTs in the same order and expects the same answers,
 * draining the FIFOs and acknowledging interrupts on the way. */
static void assert_same_behaviour(struct serial *a, struct serial *b)
{
	static const uint8_t order[] = {UART_IER, UART_IIR, UART_LCR, UART_MCR,
					UART_LSR, UART_MSR, UART_SCR};

	for (size_t i = 0; i < sizeof(order); i++)
		assert_int_equal(rd(a, order[i]), rd(b, order[i]));
	for (int i = 0; i < SERIAL_FIFO_SIZE + 2; i++) {
		assert_int_equal(rd(a, UART_IIR), rd(b, UART_IIR));
		assert_int_equal(rd(a, UART_LSR), rd(b, UART_LSR));
		assert_int_equal(rd(a, UART_RBR), rd(b, UART_RBR));
	}
	assert_int_equal(serial_rx_space(a), serial_rx_space(b));
	wr(a, UART_LCR, UART_LCR_DLAB);
	wr(b, UART_LCR, UART_LCR_DLAB);
	assert_int_equal(rd(a, UART_RBR), rd(b, UART_RBR));
	assert_int_equal(rd(a, UART_IER), rd(b, UART_IER));
}

static void test_save_restore_round_trip_behaves_identically(void **state)
{
	struct fixture *f = *state;
	struct fixture *g = calloc(1, sizeof(*g));
	uint8_t buf[sizeof(struct serial_state) + 16];
	int size;

	assert_non_null(g);
	make_busy(&f->serial);
	size = serial_ops.save(&f->serial, buf, sizeof(buf));
	assert_int_equal(size, sizeof(struct serial_state));

	fixture_init(g);
	assert_int_equal(g->irq.calls, 0);
	assert_int_equal(serial_ops.restore(&g->serial, buf, (size_t)size), 0);
	/* The restored UART has an interrupt pending and drives its line. */
	assert_int_equal(g->irq.calls, 1);
	assert_int_equal(g->irq.level[0], 1);
	assert_int_equal(rd(&g->serial, UART_LCR), 0x1b);
	assert_int_equal(serial_rx_space(&g->serial), SERIAL_FIFO_SIZE - 40);
	assert_int_equal(rd(&g->serial, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);
	assert_int_equal(rd(&f->serial, UART_IIR), UART_IIR_FIFO | UART_IIR_RDI);

	assert_same_behaviour(&f->serial, &g->serial);
	/* Both drained to the same idle state, line low. */
	assert_int_equal(last_level(&g->irq), 0);
	assert_int_equal(last_level(&f->irq), 0);

	pthread_mutex_destroy(&g->serial.lock);
	free(g);
}

static void test_restore_rejects_wrong_size(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[sizeof(struct serial_state) + 1];

	wr(&f->serial, UART_SCR, 0x11);
	assert_int_equal(serial_ops.save(&f->serial, buf, sizeof(buf)),
			 sizeof(struct serial_state));
	assert_int_equal(serial_ops.restore(&f->serial, buf, sizeof(struct serial_state) - 1),
			 -EINVAL);
	assert_int_equal(serial_ops.restore(&f->serial, buf, sizeof(struct serial_state) + 1),
			 -EINVAL);
	assert_int_equal(serial_ops.restore(&f->serial, buf, 0), -EINVAL);
	assert_int_equal(rd(&f->serial, UART_SCR), 0x11);
}

static void assert_restore_rejected(struct serial *s, const struct serial_state *state)
{
	uint8_t scr_before = rd(s, UART_SCR);
	size_t space_before = serial_rx_space(s);

	assert_int_equal(serial_ops.restore(s, state, sizeof(*state)), -EINVAL);
	/* Nothing of the bad state was taken. */
	assert_int_equal(rd(s, UART_SCR), scr_before);
	assert_int_equal(serial_rx_space(s), space_before);
}

static void test_restore_rejects_corrupt_fifo_indices(void **state)
{
	struct fixture *f = *state;
	struct serial_state good, bad;

	wr(&f->serial, UART_SCR, 0x22);
	receive_all(&f->serial, "abc");
	assert_int_equal(serial_ops.save(&f->serial, &good, sizeof(good)), sizeof(good));
	good.scr = 0x99;

	bad = good;
	bad.rx_count = SERIAL_FIFO_SIZE + 1;
	assert_restore_rejected(&f->serial, &bad);
	bad = good;
	bad.rx_count = 0xff;
	assert_restore_rejected(&f->serial, &bad);
	bad = good;
	bad.rx_head = SERIAL_FIFO_SIZE;
	assert_restore_rejected(&f->serial, &bad);
	bad = good;
	bad.rx_head = 0xff;
	assert_restore_rejected(&f->serial, &bad);
	bad = good;
	bad.thr_empty_pending = 2;
	assert_restore_rejected(&f->serial, &bad);

	/* The largest valid values are accepted: a full FIFO starting at its last slot. */
	bad = good;
	bad.rx_count = SERIAL_FIFO_SIZE;
	bad.rx_head = SERIAL_FIFO_SIZE - 1;
	for (int i = 0; i < SERIAL_FIFO_SIZE; i++)
		bad.rx_fifo[i] = (uint8_t)i;
	assert_int_equal(serial_ops.restore(&f->serial, &bad, sizeof(bad)), 0);
	assert_int_equal(rd(&f->serial, UART_SCR), 0x99);
	assert_int_equal(serial_rx_space(&f->serial), 0);
	assert_int_equal(rd(&f->serial, UART_RBR), SERIAL_FIFO_SIZE - 1);
	for (int i = 0; i < SERIAL_FIFO_SIZE - 1; i++)
		assert_int_equal(rd(&f->serial, UART_RBR), i);
	assert_int_equal(rd(&f->serial, UART_LSR) & UART_LSR_DR, 0);
}

static void test_save_into_too_small_buffer_is_enospc(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[sizeof(struct serial_state)];

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(serial_ops.save(&f->serial, buf, sizeof(buf) - 1), -ENOSPC);
	assert_int_equal(serial_ops.save(&f->serial, buf, 0), -ENOSPC);
	assert_int_equal(buf[0], 0xee); /* untouched */
	assert_int_equal(serial_ops.save(&f->serial, buf, sizeof(buf)), sizeof(buf));
}

/* ---- the console output: never blocks, drops and counts, keeps order ---- */

struct console {
	struct serial uart;
	struct serial_output out;
	int pipe[2];
	unsigned int wait_writable_calls;
	size_t sent; /* bytes the guest transmitted */
};

static void count_wait_writable(void *opaque)
{
	struct console *c = opaque;
	c->wait_writable_calls++;
}

/* A UART whose output goes to fd through a serial_output (a pipe of its own if fd < 0). */
static void console_init(struct console *c, int fd, bool owned)
{
	struct irq_line line = {0};

	memset(c, 0, sizeof(*c));
	c->pipe[0] = c->pipe[1] = -1;
	if (fd < 0) {
		assert_int_equal(pipe(c->pipe), 0);
		fd = c->pipe[1];
	}
	assert_int_equal(serial_output_init(&c->out, fd, owned, count_wait_writable, c), 0);
	serial_init(&c->uart, line, serial_output_write, &c->out);
}

static void console_destroy(struct console *c)
{
	serial_output_destroy(&c->out);
	pthread_mutex_destroy(&c->uart.lock);
	for (int i = 0; i < 2; i++)
		if (c->pipe[i] >= 0)
			close(c->pipe[i]);
}

/* The guest's side: byte i of everything it ever sends is pattern(i). */
static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 7 + i / 251);
}

static void guest_sends(struct console *c, size_t count)
{
	for (size_t i = 0; i < count; i++)
		wr(&c->uart, UART_RBR, pattern(c->sent++));
}

/* Everything the pipe holds now, appended at buf + *len (the reader drains). */
static void drain_pipe(struct console *c, uint8_t *buf, size_t size, size_t *len)
{
	int flags = fcntl(c->pipe[0], F_GETFL);

	fcntl(c->pipe[0], F_SETFL, flags | O_NONBLOCK);
	for (;;) {
		ssize_t n = read(c->pipe[0], buf + *len, size - *len);
		if (n <= 0)
			break;
		*len += (size_t)n;
	}
	fcntl(c->pipe[0], F_SETFL, flags);
}

static void test_console_stalled_pipe_buffers_then_drops_and_resumes_in_order(void **state)
{
	size_t size = 512 * 1024, len = 0, extra = 10000;
	uint8_t *got = malloc(size);
	struct console c;
	size_t pipe_took, missed;
	(void)state;

	assert_non_null(got);
	console_init(&c, -1, false);
	/* The pipe's own description stays blocking: other holders of it are unaffected
	 * (wisp writes through a description of its own). */
	assert_int_equal(fcntl(c.pipe[1], F_GETFL) & O_NONBLOCK, 0);

	/* Nobody reads: the pipe fills, then the ring, then bytes are dropped. Every write
	 * returns (the test would hang here otherwise). */
	guest_sends(&c, 8192);
	assert_int_equal(atomic_load(&c.out.missed_bytes), 0);
	assert_int_equal(c.wait_writable_calls, 0); /* the pipe took it all */
	guest_sends(&c, 2 * SERIAL_OUTPUT_RING_SIZE + extra);
	pipe_took = atomic_load(&c.out.written_bytes);
	missed = atomic_load(&c.out.missed_bytes);
	assert_true(pipe_took >= 8192);
	assert_int_equal(c.out.count, SERIAL_OUTPUT_RING_SIZE);
	assert_int_equal(pipe_took + SERIAL_OUTPUT_RING_SIZE + missed, c.sent);
	assert_true(missed >= extra);
	/* The VMM thread was asked once to wait for EPOLLOUT, when the ring started. */
	assert_int_equal(c.wait_writable_calls, 1);
	/* Still no room: a flush leaves the ring as it is. */
	assert_true(serial_output_flush(&c.out));

	/* The reader drains; the VMM thread's flushes empty the ring as it does. */
	for (int rounds = 0; rounds < 100; rounds++) {
		drain_pipe(&c, got, size, &len);
		if (!serial_output_flush(&c.out))
			break;
	}
	drain_pipe(&c, got, size, &len);
	assert_int_equal(c.out.count, 0);
	assert_int_equal(len, c.sent - missed);
	/* What arrived is the guest's output up to where the ring was full, in order: the
	 * dropped bytes are the last ones sent, none from the middle. */
	for (size_t i = 0; i < len; i++)
		if (got[i] != pattern(i))
			fail_msg("byte %zu is 0x%02x, not 0x%02x", i, got[i], pattern(i));

	/* Output resumes: new bytes go straight to the pipe, none is dropped. */
	size_t before = c.sent;
	guest_sends(&c, 1000);
	drain_pipe(&c, got, size, &len);
	assert_int_equal(atomic_load(&c.out.missed_bytes), missed);
	assert_int_equal(len, before - missed + 1000);
	for (size_t i = 0; i < 1000; i++)
		assert_int_equal(got[before - missed + i], pattern(before + i));
	assert_int_equal(c.wait_writable_calls, 1);

	console_destroy(&c);
	free(got);
}

/* The VMM thread and the console's reader, slow for a moment: they start 50 ms late. */
struct late_reader {
	struct console *c;
	uint8_t *got;
	size_t size, len;
	atomic_bool done;
};

static void *late_reader_thread(void *arg)
{
	struct late_reader *r = arg;

	usleep(50 * 1000);
	while (!atomic_load(&r->done)) {
		drain_pipe(r->c, r->got, r->size, &r->len);
		serial_output_flush(&r->c->out);
		usleep(1000);
	}
	return NULL;
}

static void test_console_reader_slow_for_a_moment_loses_nothing(void **state)
{
	struct late_reader r = {.size = 1024 * 1024};
	pthread_t reader;
	struct console c;
	(void)state;

	r.got = malloc(r.size);
	assert_non_null(r.got);
	console_init(&c, -1, false);
	r.c = &c;
	assert_int_equal(pthread_create(&reader, NULL, late_reader_thread, &r), 0);
	/* More than the pipe and the ring hold together, sent before the reader wakes: the
	 * guest waits for room instead of dropping. */
	guest_sends(&c, 3 * SERIAL_OUTPUT_RING_SIZE);
	while (c.out.count)
		usleep(1000);
	atomic_store(&r.done, true);
	pthread_join(reader, NULL);
	drain_pipe(&c, r.got, r.size, &r.len);
	assert_int_equal(atomic_load(&c.out.missed_bytes), 0);
	assert_false(c.out.stalled);
	assert_int_equal(r.len, c.sent);
	for (size_t i = 0; i < r.len; i++)
		if (r.got[i] != pattern(i))
			fail_msg("byte %zu is 0x%02x, not 0x%02x", i, r.got[i], pattern(i));
	console_destroy(&c);
	free(r.got);
}

static void test_console_stalled_reader_costs_one_wait_then_drops_at_once(void **state)
{
	size_t size = 512 * 1024, len = 0;
	uint8_t *got = malloc(size);
	struct console c;
	(void)state;

	assert_non_null(got);
	console_init(&c, -1, false);
	guest_sends(&c, 3 * SERIAL_OUTPUT_RING_SIZE); /* past the pipe and the ring */
	/* The grace wait found no flush: the console counts as stalled, and later bytes are
	 * dropped without another wait. */
	assert_true(c.out.stalled);
	size_t missed = atomic_load(&c.out.missed_bytes);
	assert_true(missed > 0);
	guest_sends(&c, 1000);
	assert_int_equal(atomic_load(&c.out.missed_bytes), missed + 1000);
	/* Once the reader drains the ring to half, output is buffered again. */
	for (int rounds = 0; rounds < 100 && serial_output_flush(&c.out); rounds++)
		drain_pipe(&c, got, size, &len);
	assert_false(c.out.stalled);
	guest_sends(&c, 10);
	assert_int_equal(atomic_load(&c.out.missed_bytes), missed + 1000);
	console_destroy(&c);
	free(got);
}

static void test_console_to_regular_file_is_written_directly(void **state)
{
	char path[] = "/tmp/wisp-test-serial-XXXXXX";
	int fd = mkstemp(path);
	struct console c;
	char buf[64];
	(void)state;

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "log:", 4), 4);
	console_init(&c, fd, true);
	assert_int_equal(serial_output_poll_fd(&c.out), -1); /* nothing to watch */
	for (const char *p = "guest\n"; *p; p++)
		wr(&c.uart, UART_RBR, (uint8_t)*p);
	assert_int_equal(atomic_load(&c.out.written_bytes), 6);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 10);
	assert_memory_equal(buf, "log:guest\n", 10);
	assert_int_equal(c.wait_writable_calls, 0);
	console_destroy(&c);
	close(fd);
}

static void test_console_without_reader_drops_and_counts(void **state)
{
	struct console c;
	(void)state;

	console_init(&c, -1, false);
	close(c.pipe[0]);
	c.pipe[0] = -1;
	guest_sends(&c, 100); /* EPIPE (SIGPIPE is ignored, as in wisp) */
	assert_int_equal(atomic_load(&c.out.missed_bytes), 100);
	assert_int_equal(atomic_load(&c.out.written_bytes), 0);
	assert_int_equal(c.out.count, 0);
	assert_int_equal(c.wait_writable_calls, 0);
	console_destroy(&c);
}

static void test_console_owned_fd_is_made_nonblocking_in_place(void **state)
{
	int fds[2];
	struct console c;
	(void)state;

	assert_int_equal(pipe(fds), 0);
	console_init(&c, fds[1], true);
	assert_int_equal(c.out.fd, fds[1]);
	assert_true(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
	serial_output_finish(&c.out, 0);
	/* Only a shared description has its flags put back; this one is wisp's. */
	assert_true(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
	console_destroy(&c);
	close(fds[0]);
	close(fds[1]);
}

static void test_console_finish_delivers_the_ring_then_drops(void **state)
{
	uint8_t *got = malloc(4 * SERIAL_OUTPUT_RING_SIZE);
	size_t len = 0;
	struct console c;
	(void)state;

	assert_non_null(got);
	console_init(&c, -1, false);
	guest_sends(&c, 2 * SERIAL_OUTPUT_RING_SIZE); /* the pipe and part of the ring */
	assert_true(c.out.count > 0);
	/* A reader that empties the pipe once: what the pipe then takes is delivered. */
	drain_pipe(&c, got, 4 * SERIAL_OUTPUT_RING_SIZE, &len);
	serial_output_finish(&c.out, 1000);
	drain_pipe(&c, got, 4 * SERIAL_OUTPUT_RING_SIZE, &len);
	assert_int_equal(len + atomic_load(&c.out.missed_bytes), c.sent);
	assert_int_equal(atomic_load(&c.out.missed_bytes), 0);
	/* After the end, bytes are dropped and counted, never block. */
	guest_sends(&c, 10);
	assert_int_equal(atomic_load(&c.out.missed_bytes), 10);
	console_destroy(&c);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(test_reset_state_is_8n1_out2_no_interrupt),
	    T(test_read_fills_only_first_byte_and_zeroes_rest),
	    T(test_thr_writes_reach_output_callback_in_order),
	    cmocka_unit_test(test_thr_write_without_output_callback_is_dropped),
	    T(test_dlab_switches_offsets_0_and_1_to_divisor_latch),
	    T(test_dlab_hides_received_data_from_offset_0),
	    T(test_lsr_thre_temt_always_set_and_dr_follows_rx_fifo),
	    T(test_lsr_and_msr_are_read_only),
	    T(test_iir_rx_data_has_priority_over_thr_empty),
	    T(test_iir_rx_interrupt_needs_ier_rdi),
	    T(test_iir_reports_fifo_bits_after_fcr_enable),
	    T(test_thr_empty_interrupt_raised_on_enable_and_acked_by_iir_read),
	    T(test_rewriting_ier_with_thri_already_set_does_not_reraise),
	    T(test_disabling_thri_lowers_the_line),
	    T(test_irq_line_called_only_when_interrupt_state_changes),
	    T(test_no_interrupt_when_ier_is_zero),
	    T(test_loopback_msr_mirrors_mcr_as_linux_probe_expects),
	    T(test_mcr_keeps_only_its_five_bits),
	    T(test_loopback_sends_thr_writes_to_rx_fifo_not_output),
	    T(test_loopback_raises_rx_interrupt),
	    T(test_loopback_overrun_drops_bytes_beyond_fifo),
	    T(test_rx_fifo_holds_64_bytes_and_receive_returns_how_many_fitted),
	    T(test_rx_fifo_wraps_around_keeping_order),
	    T(test_fcr_clear_rx_empties_fifo_and_lowers_interrupt),
	    T(test_fcr_without_clear_bit_keeps_rx_data),
	    T(test_scratch_register_holds_any_value),
	    T(test_reset_op_restores_defaults_and_lowers_line),
	    T(test_save_restore_round_trip_behaves_identically),
	    T(test_restore_rejects_wrong_size),
	    T(test_restore_rejects_corrupt_fifo_indices),
	    T(test_save_into_too_small_buffer_is_enospc),
	    cmocka_unit_test(test_console_stalled_pipe_buffers_then_drops_and_resumes_in_order),
	    cmocka_unit_test(test_console_reader_slow_for_a_moment_loses_nothing),
	    cmocka_unit_test(test_console_stalled_reader_costs_one_wait_then_drops_at_once),
	    cmocka_unit_test(test_console_to_regular_file_is_written_directly),
	    cmocka_unit_test(test_console_without_reader_drops_and_counts),
	    cmocka_unit_test(test_console_owned_fd_is_made_nonblocking_in_place),
	    cmocka_unit_test(test_console_finish_delivers_the_ring_then_drops),
#undef T
	};
	signal(SIGPIPE, SIG_IGN); /* as wisp's main() does */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
