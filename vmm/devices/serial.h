/*
 * An 8250/16550A UART as Linux's 8250 driver sees it: 8 registers, a receive FIFO, the
 * THR-empty and data-ready interrupts, and loopback for the driver's probe. Bytes the guest
 * transmits go straight to an output callback, so the transmitter is always empty.
 */
#ifndef WISP_SERIAL_H
#define WISP_SERIAL_H

#include "device.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ	 4
#define SERIAL_FIFO_SIZE 64

/* Register offsets */
#define UART_RBR 0 /* receive buffer (read), THR (write), DLL with DLAB */
#define UART_IER 1 /* interrupt enable, DLM with DLAB */
#define UART_IIR 2 /* interrupt identification (read), FCR (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define UART_IER_RDI	  0x01
#define UART_IER_THRI	  0x02
#define UART_IER_MSI	  0x08
#define UART_IIR_NO_INT	  0x01
#define UART_IIR_THRI	  0x02
#define UART_IIR_RDI	  0x04
#define UART_IIR_FIFO	  0xc0
#define UART_FCR_ENABLE	  0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_LCR_DLAB	  0x80
#define UART_MCR_LOOP	  0x10
#define UART_LSR_DR	  0x01
#define UART_LSR_THRE	  0x20
#define UART_LSR_TEMT	  0x40
#define UART_MSR_DEFAULT  0xb0 /* DCD, DSR, CTS: a connected, ready line */

/* The part of the UART a snapshot keeps. */
struct serial_state {
	uint8_t ier, lcr, mcr, msr, scr, dll, dlm, fcr;
	uint8_t thr_empty_pending;
	uint8_t rx_count, rx_head;
	uint8_t rx_fifo[SERIAL_FIFO_SIZE];
} __attribute__((packed));

struct serial {
	pthread_mutex_t lock;
	struct serial_state state;
	struct irq_line irq;
	int irq_level;
	void (*output)(void *opaque, const uint8_t *bytes, size_t len);
	void *output_opaque;
};

extern const struct device_ops serial_ops;

void serial_init(struct serial *serial, struct irq_line irq,
		 void (*output)(void *opaque, const uint8_t *bytes, size_t len), void *opaque);
/* Queues bytes from the host side (stdin); returns how many fitted in the FIFO. */
size_t serial_receive(struct serial *serial, const uint8_t *bytes, size_t len);
/* Free space in the receive FIFO. */
size_t serial_rx_space(struct serial *serial);

#endif
