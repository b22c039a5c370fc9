/*
 * Enough of the i8042 keyboard controller for Linux: the controller's self tests and
 * command byte, a keyboard that acknowledges its commands, the reset line (which ends the
 * VM, as a reboot does) and key injection for Ctrl-Alt-Del.
 */
#ifndef WISP_I8042_H
#define WISP_I8042_H

#include "device.h"

#include <pthread.h>
#include <stdint.h>

/* One bus range covers ports 0x60-0x64; 0x61-0x63 (the PIT's speaker port among them)
 * are not the controller's and read as all ones. */
#define I8042_PORT_BASE	     0x60
#define I8042_PORT_COUNT     5
#define I8042_DATA_OFFSET    0
#define I8042_COMMAND_OFFSET 4
#define I8042_KBD_IRQ	     1
#define I8042_BUFFER_SIZE    16

#define I8042_STATUS_OBF     0x01
#define I8042_STATUS_SYS     0x04
#define I8042_STATUS_COMMAND 0x08
/* The keyboard lock switch is open (1 = not inhibited); Linux warns "Keylock active"
 * when a controller reads 0 here. */
#define I8042_STATUS_UNLOCKED 0x10
#define I8042_CTR_KBD_INT     0x01
#define I8042_CTR_SYS	      0x04
#define I8042_CTR_XLATE	      0x40

struct i8042_state {
	uint8_t status;
	uint8_t command_byte;
	uint8_t output_port;
	uint8_t pending_controller_cmd; /* command waiting for its data byte, or 0 */
	uint8_t pending_keyboard_cmd;	/* keyboard command waiting for its parameter, or 0 */
	uint8_t out_count, out_head;
	uint8_t out_buffer[I8042_BUFFER_SIZE];
} __attribute__((packed));

struct i8042 {
	pthread_mutex_t lock;
	struct i8042_state state;
	struct irq_line irq;
	/* Called (without the lock held) when the guest pulses the CPU reset line. */
	void (*reset_request)(void *opaque);
	void *reset_opaque;
};

extern const struct device_ops i8042_ops;

void i8042_init(struct i8042 *kbc, struct irq_line irq, void (*reset_request)(void *opaque),
		void *opaque);
/* Queues the scan codes of Ctrl-Alt-Del; -ENOSPC if the buffer is too full. */
int i8042_send_ctrl_alt_del(struct i8042 *kbc);

#endif
