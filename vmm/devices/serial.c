#include "serial.h"

#include <errno.h>
#include <string.h>

static uint8_t serial_iir(const struct serial_state *s)
{
	uint8_t fifo_bits = (s->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0;
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return UART_IIR_RDI | fifo_bits;
	if ((s->ier & UART_IER_THRI) && s->thr_empty_pending)
		return UART_IIR_THRI | fifo_bits;
	return UART_IIR_NO_INT | fifo_bits;
}

/* Called with the lock held after every state change: drive the line to match. */
static void serial_update_irq(struct serial *serial)
{
	int level = !(serial_iir(&serial->state) & UART_IIR_NO_INT);
	if (level != serial->irq_level) {
		serial->irq_level = level;
		irq_line_set(&serial->irq, level);
	}
}

static void rx_push(struct serial_state *s, uint8_t byte)
{
	if (s->rx_count == SERIAL_FIFO_SIZE)
		return; /* overrun: a real UART drops the byte too */
	s->rx_fifo[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = byte;
	s->rx_count++;
}

static uint8_t rx_pop(struct serial_state *s)
{
	uint8_t byte;
	if (!s->rx_count)
		return 0;
	byte = s->rx_fifo[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
	s->rx_count--;
	return byte;
}

static uint8_t serial_msr(const struct serial_state *s)
{
	if (!(s->mcr & UART_MCR_LOOP))
		return s->msr;
	/* Loopback wires the modem outputs back to the inputs: DTR->DSR, RTS->CTS,
	 * OUT1->RI, OUT2->DCD. The 8250 driver checks this when it probes the port. */
	return (uint8_t)(((s->mcr & 0x01) << 5) | ((s->mcr & 0x02) << 3) | ((s->mcr & 0x04) << 4) |
			 ((s->mcr & 0x08) << 4));
}

static uint8_t serial_read_reg(struct serial *serial, uint64_t offset)
{
	struct serial_state *s = &serial->state;
	uint8_t iir;

	switch (offset) {
	case UART_RBR:
		if (s->lcr & UART_LCR_DLAB)
			return s->dll;
		return rx_pop(s);
	case UART_IER:
		if (s->lcr & UART_LCR_DLAB)
			return s->dlm;
		return s->ier;
	case UART_IIR:
		iir = serial_iir(s);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((iir & 0x0f) == UART_IIR_THRI)
			s->thr_empty_pending = 0;
		return iir;
	case UART_LCR:
		return s->lcr;
	case UART_MCR:
		return s->mcr;
	case UART_LSR:
		return UART_LSR_THRE | UART_LSR_TEMT | (s->rx_count ? UART_LSR_DR : 0);
	case UART_MSR:
		return serial_msr(s);
	case UART_SCR:
		return s->scr;
	default:
		return 0xff;
	}
}

static void serial_write_reg(struct serial *serial, uint64_t offset, uint8_t value)
{
	struct serial_state *s = &serial->state;

	switch (offset) {
	case UART_RBR:
		if (s->lcr & UART_LCR_DLAB) {
			s->dll = value;
			return;
		}
		if (s->mcr & UART_MCR_LOOP)
			rx_push(s, value);
		else if (serial->output)
			serial->output(serial->output_opaque, &value, 1);
		/* The byte left at once: the transmitter is empty again. */
		s->thr_empty_pending = 1;
		return;
	case UART_IER:
		if (s->lcr & UART_LCR_DLAB) {
			s->dlm = value;
			return;
		}
		/* Enabling the THR-empty interrupt while THR is empty raises it at once. */
		if (!(s->ier & UART_IER_THRI) && (value & UART_IER_THRI))
			s->thr_empty_pending = 1;
		s->ier = value & 0x0f;
		return;
	case UART_IIR: /* FCR */
		if (value & UART_FCR_CLEAR_RX)
			s->rx_count = 0;
		s->fcr = value & UART_FCR_ENABLE;
		return;
	case UART_LCR:
		s->lcr = value;
		return;
	case UART_MCR:
		s->mcr = value & 0x1f;
		return;
	case UART_SCR:
		s->scr = value;
		return;
	default: /* LSR and MSR are read-only */
		return;
	}
}

static void serial_read(void *device, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct serial *serial = device;

	memset(data, 0, len);
	pthread_mutex_lock(&serial->lock);
	data[0] = serial_read_reg(serial, offset);
	serial_update_irq(serial);
	pthread_mutex_unlock(&serial->lock);
}

static void serial_write(void *device, uint64_t offset, const uint8_t *data, uint32_t len)
{
	struct serial *serial = device;

	(void)len;
	pthread_mutex_lock(&serial->lock);
	serial_write_reg(serial, offset, data[0]);
	serial_update_irq(serial);
	pthread_mutex_unlock(&serial->lock);
}

static void serial_reset_locked(struct serial *serial)
{
	memset(&serial->state, 0, sizeof(serial->state));
	serial->state.msr = UART_MSR_DEFAULT;
	serial->state.lcr = 0x03; /* 8N1 */
	serial->state.mcr = 0x08; /* OUT2: interrupts routed to the PIC */
	serial_update_irq(serial);
}

static void serial_reset(void *device)
{
	struct serial *serial = device;
	pthread_mutex_lock(&serial->lock);
	serial_reset_locked(serial);
	pthread_mutex_unlock(&serial->lock);
}

static int serial_save(void *device, void *buf, size_t size)
{
	struct serial *serial = device;
	if (size < sizeof(serial->state))
		return -ENOSPC;
	pthread_mutex_lock(&serial->lock);
	memcpy(buf, &serial->state, sizeof(serial->state));
	pthread_mutex_unlock(&serial->lock);
	return (int)sizeof(serial->state);
}

static int serial_restore(void *device, const void *buf, size_t size)
{
	struct serial *serial = device;
	struct serial_state state;

	if (size != sizeof(state))
		return -EINVAL;
	memcpy(&state, buf, sizeof(state));
	if (state.rx_count > SERIAL_FIFO_SIZE || state.rx_head >= SERIAL_FIFO_SIZE ||
	    state.thr_empty_pending > 1)
		return -EINVAL;
	pthread_mutex_lock(&serial->lock);
	serial->state = state;
	serial_update_irq(serial);
	pthread_mutex_unlock(&serial->lock);
	return 0;
}

const struct device_ops serial_ops = {
    .name = "serial",
    .read = serial_read,
    .write = serial_write,
    .reset = serial_reset,
    .save = serial_save,
    .restore = serial_restore,
};

void serial_init(struct serial *serial, struct irq_line irq,
		 void (*output)(void *opaque, const uint8_t *bytes, size_t len), void *opaque)
{
	memset(serial, 0, sizeof(*serial));
	pthread_mutex_init(&serial->lock, NULL);
	serial->irq = irq;
	serial->output = output;
	serial->output_opaque = opaque;
	serial_reset_locked(serial);
}

size_t serial_receive(struct serial *serial, const uint8_t *bytes, size_t len)
{
	size_t taken;

	pthread_mutex_lock(&serial->lock);
	for (taken = 0; taken < len && serial->state.rx_count < SERIAL_FIFO_SIZE; taken++)
		rx_push(&serial->state, bytes[taken]);
	serial_update_irq(serial);
	pthread_mutex_unlock(&serial->lock);
	return taken;
}

size_t serial_rx_space(struct serial *serial)
{
	size_t space;
	pthread_mutex_lock(&serial->lock);
	space = SERIAL_FIFO_SIZE - serial->state.rx_count;
	pthread_mutex_unlock(&serial->lock);
	return space;
}
