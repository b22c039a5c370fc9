#include "i8042.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Controller commands (port 0x64) */
#define CMD_READ_CTR	  0x20
#define CMD_WRITE_CTR	  0x60
#define CMD_DISABLE_AUX	  0xa7
#define CMD_ENABLE_AUX	  0xa8
#define CMD_SELF_TEST	  0xaa
#define CMD_TEST_KBD_PORT 0xab
#define CMD_DISABLE_KBD	  0xad
#define CMD_ENABLE_KBD	  0xae
#define CMD_READ_OUTPUT	  0xd0
#define CMD_WRITE_OUTPUT  0xd1
#define CMD_WRITE_KBD_OUT 0xd2
#define CMD_PULSE_RESET	  0xfe

/* Keyboard commands (port 0x60) and answers */
#define KBD_CMD_SET_LEDS 0xed
#define KBD_CMD_ECHO	 0xee
#define KBD_CMD_GET_ID	 0xf2
#define KBD_CMD_SET_RATE 0xf3
#define KBD_CMD_RESET	 0xff
#define KBD_ACK		 0xfa
#define KBD_SELF_TEST_OK 0xaa

#define CTR_DISABLE_KBD	       0x10
#define OUTPUT_PORT_RESET_HIGH 0x01 /* bit 0 low = CPU reset asserted */

static bool out_push(struct i8042_state *s, uint8_t byte)
{
	if (s->out_count == I8042_BUFFER_SIZE)
		return false;
	s->out_buffer[(s->out_head + s->out_count) % I8042_BUFFER_SIZE] = byte;
	s->out_count++;
	s->status |= I8042_STATUS_OBF;
	return true;
}

static uint8_t out_pop(struct i8042_state *s)
{
	uint8_t byte;
	if (!s->out_count)
		return 0;
	byte = s->out_buffer[s->out_head];
	s->out_head = (s->out_head + 1) % I8042_BUFFER_SIZE;
	s->out_count--;
	if (!s->out_count)
		s->status &= ~I8042_STATUS_OBF;
	return byte;
}

/* IRQ 1 follows "output buffer full" while keyboard interrupts are enabled. Each byte
 * the guest reads lets the next one raise a fresh edge. */
static void i8042_update_irq(struct i8042 *kbc, bool new_edge)
{
	bool level = kbc->state.out_count && (kbc->state.command_byte & I8042_CTR_KBD_INT);
	if (new_edge || !level)
		irq_line_set(&kbc->irq, 0);
	if (level)
		irq_line_set(&kbc->irq, 1);
}

static void keyboard_command(struct i8042_state *s, uint8_t value)
{
	if (s->pending_keyboard_cmd) {
		/* the parameter of SET_LEDS or SET_RATE */
		s->pending_keyboard_cmd = 0;
		out_push(s, KBD_ACK);
		return;
	}
	switch (value) {
	case KBD_CMD_SET_LEDS:
	case KBD_CMD_SET_RATE:
		s->pending_keyboard_cmd = value;
		out_push(s, KBD_ACK);
		break;
	case KBD_CMD_ECHO:
		out_push(s, KBD_CMD_ECHO);
		break;
	case KBD_CMD_GET_ID:
		out_push(s, KBD_ACK);
		out_push(s, 0xab);
		out_push(s, 0x83);
		break;
	case KBD_CMD_RESET:
		out_push(s, KBD_ACK);
		out_push(s, KBD_SELF_TEST_OK);
		break;
	default:
		out_push(s, KBD_ACK);
		break;
	}
}

/* Returns true if the guest asked for a CPU reset. */
static bool controller_data(struct i8042_state *s, uint8_t value)
{
	uint8_t command = s->pending_controller_cmd;

	s->pending_controller_cmd = 0;
	switch (command) {
	case CMD_WRITE_CTR:
		s->command_byte = value;
		s->status = (s->status & ~I8042_STATUS_SYS) | (value & I8042_CTR_SYS);
		return false;
	case CMD_WRITE_OUTPUT:
		s->output_port = value;
		return !(value & OUTPUT_PORT_RESET_HIGH);
	case CMD_WRITE_KBD_OUT:
		out_push(s, value);
		return false;
	default:
		keyboard_command(s, value);
		return false;
	}
}

static bool controller_command(struct i8042_state *s, uint8_t command)
{
	switch (command) {
	case CMD_READ_CTR:
		out_push(s, s->command_byte);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTPUT:
	case CMD_WRITE_KBD_OUT:
		s->pending_controller_cmd = command;
		break;
	case CMD_SELF_TEST:
		out_push(s, 0x55);
		break;
	case CMD_TEST_KBD_PORT:
		out_push(s, 0x00);
		break;
	case CMD_DISABLE_KBD:
		s->command_byte |= CTR_DISABLE_KBD;
		break;
	case CMD_ENABLE_KBD:
		s->command_byte &= ~CTR_DISABLE_KBD;
		break;
	case CMD_READ_OUTPUT:
		out_push(s, s->output_port);
		break;
	default:
		/* 0xf0-0xff pulse output port lines; bit 0 low pulses the reset line. */
		if (command >= 0xf0 && !(command & 1))
			return true;
		break;
	}
	return false;
}

static void i8042_read(void *device, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct i8042 *kbc = device;

	memset(data, 0, len);
	pthread_mutex_lock(&kbc->lock);
	if (offset == I8042_DATA_OFFSET) {
		data[0] = out_pop(&kbc->state);
		i8042_update_irq(kbc, true);
	} else if (offset == I8042_COMMAND_OFFSET) {
		data[0] = kbc->state.status;
	} else {
		data[0] = 0xff;
	}
	pthread_mutex_unlock(&kbc->lock);
}

static void i8042_write(void *device, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct i8042 *kbc = device;
	struct i8042_state *s = &kbc->state;
	bool reset;

	(void)len;
	if (offset != I8042_DATA_OFFSET && offset != I8042_COMMAND_OFFSET)
		return;
	pthread_mutex_lock(&kbc->lock);
	if (offset == I8042_DATA_OFFSET) {
		s->status &= ~I8042_STATUS_COMMAND;
		reset = controller_data(s, data[0]);
	} else {
		s->status |= I8042_STATUS_COMMAND;
		reset = controller_command(s, data[0]);
	}
	i8042_update_irq(kbc, false);
	pthread_mutex_unlock(&kbc->lock);
	if (reset && kbc->reset_request)
		kbc->reset_request(kbc->reset_opaque);
}

static void i8042_reset_locked(struct i8042 *kbc)
{
	memset(&kbc->state, 0, sizeof(kbc->state));
	kbc->state.status = I8042_STATUS_SYS | I8042_STATUS_UNLOCKED;
	kbc->state.command_byte = I8042_CTR_KBD_INT | I8042_CTR_SYS | I8042_CTR_XLATE;
	kbc->state.output_port = OUTPUT_PORT_RESET_HIGH;
	irq_line_set(&kbc->irq, 0);
}

static void i8042_reset(void *device)
{
	struct i8042 *kbc = device;
	pthread_mutex_lock(&kbc->lock);
	i8042_reset_locked(kbc);
	pthread_mutex_unlock(&kbc->lock);
}

static int i8042_save(void *device, void *buf, size_t size)
{
	struct i8042 *kbc = device;
	if (size < sizeof(kbc->state))
		return -ENOSPC;
	pthread_mutex_lock(&kbc->lock);
	memcpy(buf, &kbc->state, sizeof(kbc->state));
	pthread_mutex_unlock(&kbc->lock);
	return (int)sizeof(kbc->state);
}

static int i8042_restore(void *device, const void *buf, size_t size)
{
	struct i8042 *kbc = device;
	struct i8042_state state;

	if (size != sizeof(state))
		return -EINVAL;
	memcpy(&state, buf, sizeof(state));
	if (state.out_count > I8042_BUFFER_SIZE || state.out_head >= I8042_BUFFER_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&kbc->lock);
	kbc->state = state;
	i8042_update_irq(kbc, true);
	pthread_mutex_unlock(&kbc->lock);
	return 0;
}

const struct device_ops i8042_ops = {
    .name = "i8042",
    .read = i8042_read,
    .write = i8042_write,
    .reset = i8042_reset,
    .save = i8042_save,
    .restore = i8042_restore,
};

void i8042_init(struct i8042 *kbc, struct irq_line irq, void (*reset_request)(void *opaque),
		void *opaque)
{
	memset(kbc, 0, sizeof(*kbc));
	pthread_mutex_init(&kbc->lock, NULL);
	kbc->irq = irq;
	kbc->reset_request = reset_request;
	kbc->reset_opaque = opaque;
	i8042_reset_locked(kbc);
}

int i8042_send_ctrl_alt_del(struct i8042 *kbc)
{
	/* Scan code set 1 (what the guest sees with translation on): press Ctrl, Alt, Del,
	 * then release them in reverse order. */
	static const uint8_t codes[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
	int err = 0;

	pthread_mutex_lock(&kbc->lock);
	if ((size_t)(I8042_BUFFER_SIZE - kbc->state.out_count) < sizeof(codes)) {
		err = -ENOSPC;
	} else {
		for (size_t i = 0; i < sizeof(codes); i++)
			out_push(&kbc->state, codes[i]);
		i8042_update_irq(kbc, true);
	}
	pthread_mutex_unlock(&kbc->lock);
	return err;
}
