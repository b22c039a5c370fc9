/* Unit tests for virtio-net (devices/virtio/net.c) without a TAP: a SOCK_SEQPACKET
 * socketpair stands in for it (each message is vnet header + frame, as on a TAP with
 * IFF_VNET_HDR), the driver is played by hand through the virtio-mmio registers over fake
 * guest memory, and the VMM thread's event loop is run one round at a time. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_tun.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/net.h"
#include "log.h"
#include "rate_limiter.h"
#include "test_support.h"

#define MEM_SIZE  (16ULL << 20)
#define QSIZE	  16
#define BUF_START 0x100000ULL
#define HDR	  VIRTIO_NET_HDR_LEN
#define F(bit)	  (1ULL << (bit))
#define V1	  F(VIRTIO_F_VERSION_1)
#define MRG	  (V1 | F(VIRTIO_NET_F_MRG_RXBUF))

struct fixture {
	struct gmem mem;
	uint8_t *ram;
	struct event_loop loop;
	struct net_device *net;
	struct virtio_device *dev;
	int tap;  /* the device's end, owned by the device */
	int peer; /* the host's end of the "TAP" */
	struct guest_queue rx, tx;
	uint64_t next_buf;
};

static unsigned int interrupts;

static void count_interrupt(struct virtio_device *dev)
{
	(void)dev;
	interrupts++;
}

static const uint8_t test_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};

static int create_with_config(struct fixture *f, struct net_device **net,
			      const struct net_config *config, int sndbuf)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return -1;
	if (sndbuf)
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (net_create_on_fd(net, sv[0], config, &f->mem, 0)) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	f->tap = sv[0];
	f->peer = sv[1];
	return 0;
}

static int create_on_pair(struct fixture *f, struct net_device **net, const uint8_t *mac,
			  int sndbuf)
{
	struct net_config config = {.id = "net0", .tap = "test0", .has_mac = mac != NULL};

	if (mac)
		memcpy(config.mac, mac, 6);
	return create_with_config(f, net, &config, sndbuf);
}

static int make_fixture(void **state, int sndbuf)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = fake_ram_new(&f->mem, MEM_SIZE, MEM_SIZE, 0);
	if (!f->ram)
		return -1;
	f->rx =
	    (struct guest_queue){.desc = 0x1000, .avail = 0x2000, .used = 0x3000, .size = QSIZE};
	f->tx =
	    (struct guest_queue){.desc = 0x4000, .avail = 0x5000, .used = 0x6000, .size = QSIZE};
	f->next_buf = BUF_START;
	if (event_loop_init(&f->loop) || create_on_pair(f, &f->net, test_mac, sndbuf))
		return -1;
	f->dev = net_virtio(f->net);
	f->dev->signal = count_interrupt;
	if (f->dev->ops->attach(f->dev, &f->loop))
		return -1;
	interrupts = 0;
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return make_fixture(state, 0);
}

static int setup_small_sndbuf(void **state)
{
	return make_fixture(state, 1); /* the kernel's minimum: a frame or two */
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	net_destroy(f->net);
	close(f->peer);
	event_loop_close(&f->loop);
	free(f->ram);
	free(f);
	return 0;
}

/* ---- the driver's side ---- */

static void mmio_write(struct virtio_device *dev, uint64_t offset, uint32_t value)
{
	reg_write(&virtio_mmio_ops, dev, offset, 4, value);
}

static uint32_t mmio_read(struct virtio_device *dev, uint64_t offset, uint32_t len)
{
	return reg_read(&virtio_mmio_ops, dev, offset, len, 0);
}

static void setup_queue(struct virtio_device *dev, unsigned int index, const struct guest_queue *q)
{
	mmio_write(dev, VIRTIO_MMIO_QUEUE_SEL, index);
	mmio_write(dev, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	mmio_write(dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc);
	mmio_write(dev, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)q->avail);
	mmio_write(dev, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)q->used);
	mmio_write(dev, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* The driver's initialisation (virtio 1.2, 3.1.1) up to DRIVER_OK. */
static void start_on(struct fixture *f, struct virtio_device *dev, uint64_t features)
{
	uint32_t status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	mmio_write(dev, VIRTIO_MMIO_STATUS, status);
	mmio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	mmio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_write(dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	status |= VIRTIO_STATUS_FEATURES_OK;
	mmio_write(dev, VIRTIO_MMIO_STATUS, status);
	assert_true(mmio_read(dev, VIRTIO_MMIO_STATUS, 4) & VIRTIO_STATUS_FEATURES_OK);
	setup_queue(dev, VIRTIO_NET_RX_QUEUE, &f->rx);
	setup_queue(dev, VIRTIO_NET_TX_QUEUE, &f->tx);
	mmio_write(dev, VIRTIO_MMIO_STATUS, status | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(mmio_read(dev, VIRTIO_MMIO_STATUS, 4), status | VIRTIO_STATUS_DRIVER_OK);
}

static void start(struct fixture *f, uint64_t features)
{
	start_on(f, f->dev, features);
}

static void *gpa(struct fixture *f, uint64_t addr)
{
	return f->ram + addr;
}

static uint64_t alloc_buf(struct fixture *f, uint32_t len, uint8_t fill)
{
	uint64_t addr = f->next_buf;
	memset(gpa(f, addr), fill, len);
	f->next_buf = (addr + len + 15) & ~15ULL;
	return addr;
}

static uint16_t add_chain(struct fixture *f, struct guest_queue *q, const struct seg *segs,
			  unsigned int nr)
{
	return guest_queue_add_chain(&f->mem, q, segs, nr);
}

/* A receive buffer of `len` bytes in one writable descriptor. */
static uint64_t add_rx_buffer(struct fixture *f, uint32_t len, uint16_t *head)
{
	uint64_t addr = alloc_buf(f, len, 0xaa);
	struct seg seg = {addr, len, true};
	uint16_t h = add_chain(f, &f->rx, &seg, 1);
	if (head)
		*head = h;
	return addr;
}

static uint16_t used_idx(struct fixture *f, const struct guest_queue *q)
{
	return guest_queue_used_idx(&f->mem, q);
}

static struct vring_used_elem used_elem(struct fixture *f, const struct guest_queue *q, uint16_t i)
{
	return guest_queue_used_elem(&f->mem, q, i);
}

/* ---- the host's side ---- */

static void fill_frame(uint8_t *frame, size_t len, uint8_t seed)
{
	fill_pattern(frame, len, seed, 7);
	memset(frame, 0, HDR);
}

static void peer_send(struct fixture *f, size_t len, uint8_t seed, uint8_t *copy)
{
	uint8_t *frame = malloc(len);
	assert_non_null(frame);
	fill_frame(frame, len, seed);
	((struct virtio_net_hdr_v1 *)frame)->num_buffers = 0x7777; /* the device sets it */
	assert_int_equal(send(f->peer, frame, len, 0), (ssize_t)len);
	if (copy)
		memcpy(copy, frame, len);
	free(frame);
}

static ssize_t peer_recv(struct fixture *f, uint8_t *buf, size_t size)
{
	return recv(f->peer, buf, size, MSG_DONTWAIT);
}

/* Whether the event loop would call anything now: a device that stopped reading must not. */
static int ready_sources(struct fixture *f)
{
	struct epoll_event events[4];
	return epoll_wait(f->loop.epoll_fd, events, 4, 0);
}

static bool frame_queued_for_device(struct fixture *f)
{
	uint8_t byte;
	return recv(f->tap, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/* ---- transmit ---- */

static void test_tx_frame_reaches_peer_intact(void **state)
{
	struct fixture *f = *state;
	uint8_t sent[HDR + 100], got[2048];
	uint64_t hdr = alloc_buf(f, HDR, 0), data = alloc_buf(f, 100, 0);
	struct seg segs[] = {{hdr, HDR, false}, {data, 100, false}};
	uint16_t head;

	start(f, V1);
	fill_frame(sent, sizeof(sent), 1);
	((struct virtio_net_hdr_v1 *)sent)->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	((struct virtio_net_hdr_v1 *)sent)->csum_start = 34;
	memcpy(gpa(f, hdr), sent, HDR);
	memcpy(gpa(f, data), sent + HDR, 100);
	head = add_chain(f, &f->tx, segs, 2);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);

	assert_int_equal(peer_recv(f, got, sizeof(got)), sizeof(sent));
	assert_memory_equal(got, sent, sizeof(sent)); /* the vnet header passes as it is */
	assert_int_equal(used_idx(f, &f->tx), 1);
	assert_int_equal(used_elem(f, &f->tx, 0).id, head);
	assert_int_equal(used_elem(f, &f->tx, 0).len, 0);
	assert_int_equal(net_metrics(f->net)->tx_packets_count, 1);
	assert_int_equal(net_metrics(f->net)->tx_bytes_count, 100);
	assert_int_equal(interrupts, 1);
}

static void test_tx_with_event_idx_asks_for_the_next_kick(void **state)
{
	struct fixture *f = *state;
	uint8_t got[2048];

	start(f, V1 | F(VIRTIO_F_EVENT_IDX));
	for (int i = 0; i < 2; i++) {
		struct seg seg = {alloc_buf(f, HDR + 60, 0), HDR + 60, false};
		add_chain(f, &f->tx, &seg, 1);
	}
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60);
	assert_int_equal(used_idx(f, &f->tx), 2);
	/* avail_event, after the used ring: kick me when you add the third buffer */
	assert_int_equal(*(uint16_t *)gpa(f, f->tx.used + 4 + 8 * QSIZE), 2);
}

static void test_tx_malformed_chains_are_dropped_and_counted(void **state)
{
	struct fixture *f = *state;
	uint8_t got[2048];
	uint64_t frame = alloc_buf(f, HDR + 60, 0), big = alloc_buf(f, 40000, 0);
	struct seg with_writable[] = {{frame, HDR + 60, false}, {alloc_buf(f, 64, 0), 64, true}};
	struct seg too_short = {frame, HDR - 4, false};
	struct seg too_long[] = {{big, 40000, false}, {big, 40000, false}};
	struct seg good = {frame, HDR + 60, false};

	start(f, V1);
	add_chain(f, &f->tx, with_writable, 2);
	add_chain(f, &f->tx, &too_short, 1);
	add_chain(f, &f->tx, too_long, 2);
	add_chain(f, &f->tx, &good, 1);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);

	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60); /* only the good one */
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, &f->tx), 4);
	for (uint16_t i = 0; i < 4; i++)
		assert_int_equal(used_elem(f, &f->tx, i).len, 0);
	assert_int_equal(net_metrics(f->net)->tx_malformed_frames, 3);
	assert_int_equal(net_metrics(f->net)->tx_packets_count, 1);
	assert_false(mmio_read(f->dev, VIRTIO_MMIO_STATUS, 4) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_tx_waits_for_a_full_tap_and_resumes_in_order(void **state)
{
	struct fixture *f = *state;
	enum { FRAMES = 12, LEN = HDR + 2000 };
	uint8_t got[4096];
	int received = 0;

	start(f, V1);
	for (int i = 0; i < FRAMES; i++) {
		struct seg seg = {alloc_buf(f, LEN, 0), LEN, false};
		fill_frame(gpa(f, seg.gpa), LEN, (uint8_t)i);
		add_chain(f, &f->tx, &seg, 1);
	}
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	assert_in_range(used_idx(f, &f->tx), 1, FRAMES - 1); /* the "TAP" filled up */
	assert_int_equal(ready_sources(f), 0);		     /* waits for EPOLLOUT, does not spin */

	for (int round = 0; round < 1000 && received < FRAMES; round++) {
		ssize_t n;
		while ((n = peer_recv(f, got, sizeof(got))) > 0) {
			uint8_t expect[LEN];
			fill_frame(expect, LEN, (uint8_t)received);
			assert_int_equal(n, LEN);
			assert_memory_equal(got, expect, LEN);
			received++;
		}
		assert_int_equal(event_loop_run_once(&f->loop, 10), 0);
	}
	assert_int_equal(received, FRAMES);
	assert_int_equal(used_idx(f, &f->tx), FRAMES);
	assert_int_equal(net_metrics(f->net)->tx_packets_count, FRAMES);
	assert_int_equal(net_metrics(f->net)->tx_fails, 0);
}

/* ---- receive ---- */

static void test_rx_frame_lands_in_guest_buffer(void **state)
{
	struct fixture *f = *state;
	uint8_t sent[HDR + 100];
	uint64_t hdr = alloc_buf(f, HDR, 0), data = alloc_buf(f, 1514, 0);
	struct seg segs[] = {{hdr, HDR, true}, {data, 1514, true}};
	struct virtio_net_hdr_v1 got;
	uint16_t head;

	start(f, V1);
	head = add_chain(f, &f->rx, segs, 2);
	peer_send(f, sizeof(sent), 3, sent);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_int_equal(used_idx(f, &f->rx), 1);
	assert_int_equal(used_elem(f, &f->rx, 0).id, head);
	assert_int_equal(used_elem(f, &f->rx, 0).len, sizeof(sent));
	memcpy(&got, gpa(f, hdr), HDR);
	assert_int_equal(got.num_buffers, 1);
	assert_int_equal(got.flags, 0);
	assert_memory_equal(gpa(f, data), sent + HDR, 100);
	assert_int_equal(net_metrics(f->net)->rx_packets_count, 1);
	assert_int_equal(net_metrics(f->net)->rx_bytes_count, 100);
	assert_int_equal(interrupts, 1);
}

static void test_rx_without_buffers_does_not_spin(void **state)
{
	struct fixture *f = *state;
	uint8_t sent[HDR + 80];
	uint64_t buf;

	start(f, V1);
	peer_send(f, sizeof(sent), 5, sent);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0); /* finds no buffer */
	assert_int_equal(ready_sources(f), 0);			 /* and stops reading */
	assert_true(frame_queued_for_device(f));		 /* the frame waits */
	assert_int_equal(*(uint16_t *)gpa(f, f->rx.used), 0);	 /* kicks are on */
	assert_int_equal(used_idx(f, &f->rx), 0);

	buf = add_rx_buffer(f, 1526, NULL);
	virtio_queue_notified(f->dev, VIRTIO_NET_RX_QUEUE);
	assert_int_equal(used_idx(f, &f->rx), 1);
	assert_int_equal(used_elem(f, &f->rx, 0).len, sizeof(sent));
	assert_memory_equal((uint8_t *)gpa(f, buf) + HDR, sent + HDR, 80);
	assert_int_equal(interrupts, 1);

	/* Kicks were asked for again when the ring ran dry. With a spare buffer after the
	 * kick, the device keeps reading: the next frame comes through the event loop. */
	assert_int_equal(*(uint16_t *)gpa(f, f->rx.used), 0);
	add_rx_buffer(f, 1526, NULL);
	add_rx_buffer(f, 1526, NULL);
	virtio_queue_notified(f->dev, VIRTIO_NET_RX_QUEUE);
	assert_int_equal(used_idx(f, &f->rx), 1);
	peer_send(f, sizeof(sent), 6, NULL);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(used_idx(f, &f->rx), 2);
}

static void test_rx_frame_too_large_is_dropped_whole(void **state)
{
	struct fixture *f = *state;
	uint8_t small[HDR + 50];
	uint16_t head;
	uint64_t buf;

	start(f, V1);
	buf = add_rx_buffer(f, 200, &head);
	peer_send(f, 500, 7, NULL);
	peer_send(f, sizeof(small), 8, small);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_int_equal(net_metrics(f->net)->rx_dropped, 1);
	assert_int_equal(used_idx(f, &f->rx), 1); /* the buffer went to the small frame */
	assert_int_equal(used_elem(f, &f->rx, 0).id, head);
	assert_int_equal(used_elem(f, &f->rx, 0).len, sizeof(small));
	assert_memory_equal((uint8_t *)gpa(f, buf) + HDR, small + HDR, 50);
	for (int i = sizeof(small); i < 200; i++) /* nothing of the large frame landed */
		assert_int_equal(((uint8_t *)gpa(f, buf))[i], 0xaa);
}

static void test_rx_offload_the_driver_refused_is_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[HDR + 60];

	start(f, V1); /* no GUEST_TSO4 */
	add_rx_buffer(f, 1526, NULL);
	fill_frame(frame, sizeof(frame), 9);
	((struct virtio_net_hdr_v1 *)frame)->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	assert_int_equal(send(f->peer, frame, sizeof(frame), 0), sizeof(frame));
	fill_frame(frame, sizeof(frame), 10);
	((struct virtio_net_hdr_v1 *)frame)->flags = VIRTIO_NET_HDR_F_DATA_VALID;
	assert_int_equal(send(f->peer, frame, sizeof(frame), 0), sizeof(frame));
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_int_equal(net_metrics(f->net)->rx_dropped, 1);
	assert_int_equal(used_idx(f, &f->rx), 1);
	/* Without GUEST_CSUM the flags reach the driver cleared. */
	assert_int_equal(((struct virtio_net_hdr_v1 *)gpa(f, BUF_START))->flags, 0);
}

static void test_rx_large_buffer_is_filled_directly(void **state)
{
	struct fixture *f = *state;
	uint8_t *sent = malloc(HDR + 3000);
	uint64_t hdr = alloc_buf(f, HDR, 0), data = alloc_buf(f, 65536, 0);
	struct seg segs[] = {
	    {hdr, HDR, true}, {data, 65536, true}, {alloc_buf(f, 4096, 0), 4096, true}};

	assert_non_null(sent);
	start(f, V1);
	add_chain(f, &f->rx, segs, 3);
	peer_send(f, VIRTIO_NET_MAX_FRAME + 100, 11, NULL); /* larger than any frame: dropped */
	peer_send(f, HDR + 3000, 12, sent);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_int_equal(net_metrics(f->net)->rx_dropped, 1);
	assert_int_equal(used_idx(f, &f->rx), 1);
	assert_int_equal(used_elem(f, &f->rx, 0).len, HDR + 3000);
	assert_int_equal(((struct virtio_net_hdr_v1 *)gpa(f, hdr))->num_buffers, 1);
	assert_memory_equal(gpa(f, data), sent + HDR, 3000);
	free(sent);
}

static void test_mrg_rxbuf_spreads_a_frame_over_several_buffers(void **state)
{
	struct fixture *f = *state;
	enum { LEN = HDR + 4000 };
	uint8_t sent[LEN], got[LEN];
	uint64_t bufs[4];
	uint32_t off = 0;

	start(f, MRG);
	for (int i = 0; i < 4; i++)
		bufs[i] = add_rx_buffer(f, 1526, NULL);
	peer_send(f, LEN, 13, sent);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_int_equal(used_idx(f, &f->rx), 3);
	assert_int_equal(used_elem(f, &f->rx, 0).len, 1526);
	assert_int_equal(used_elem(f, &f->rx, 1).len, 1526);
	assert_int_equal(used_elem(f, &f->rx, 2).len, LEN - 2 * 1526);
	for (int i = 0; i < 3; i++) {
		uint32_t n = used_elem(f, &f->rx, (uint16_t)i).len;
		memcpy(got + off, gpa(f, bufs[i]), n);
		off += n;
	}
	assert_int_equal(((struct virtio_net_hdr_v1 *)got)->num_buffers, 3);
	assert_memory_equal(got + HDR, sent + HDR, LEN - HDR);
	assert_int_equal(net_metrics(f->net)->rx_packets_count, 1);
	assert_int_equal(net_metrics(f->net)->rx_bytes_count, 4000);
	assert_int_equal(interrupts, 1);
}

static void test_mrg_rxbuf_holds_a_frame_until_enough_buffers(void **state)
{
	struct fixture *f = *state;
	enum { LEN = HDR + 4000 };
	uint8_t sent[LEN];
	uint64_t first;

	start(f, MRG);
	first = add_rx_buffer(f, 1526, NULL);
	peer_send(f, LEN, 14, sent);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(used_idx(f, &f->rx), 0); /* one buffer is not enough */
	assert_int_equal(ready_sources(f), 0);

	add_rx_buffer(f, 1526, NULL);
	add_rx_buffer(f, 1526, NULL);
	virtio_queue_notified(f->dev, VIRTIO_NET_RX_QUEUE);
	assert_int_equal(used_idx(f, &f->rx), 3);
	assert_int_equal(((struct virtio_net_hdr_v1 *)gpa(f, first))->num_buffers, 3);
	assert_memory_equal((uint8_t *)gpa(f, first) + HDR, sent + HDR, 1526 - HDR);
}

static void test_mrg_rxbuf_frame_larger_than_the_ring_is_dropped(void **state)
{
	struct fixture *f = *state;

	start(f, MRG);
	for (int i = 0; i < QSIZE; i++)
		add_rx_buffer(f, 256, NULL);
	peer_send(f, QSIZE * 256 + 100, 15, NULL);
	peer_send(f, HDR + 100, 16, NULL);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(net_metrics(f->net)->rx_dropped, 1);
	assert_int_equal(used_idx(f, &f->rx), 1); /* the small frame, in the first buffer */
	assert_int_equal(used_elem(f, &f->rx, 0).id, 0);
	assert_int_equal(used_elem(f, &f->rx, 0).len, HDR + 100);
}

static void test_mrg_rxbuf_buffer_without_room_for_the_header_is_returned_empty(void **state)
{
	struct fixture *f = *state;
	uint8_t sent[HDR + 100];
	uint16_t tiny, good;
	uint64_t buf;

	start(f, MRG);
	add_rx_buffer(f, HDR - 4, &tiny);
	buf = add_rx_buffer(f, 1526, &good);
	peer_send(f, sizeof(sent), 20, sent);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_int_equal(used_idx(f, &f->rx), 2);
	assert_int_equal(used_elem(f, &f->rx, 0).id, tiny);
	assert_int_equal(used_elem(f, &f->rx, 0).len, 0);
	assert_int_equal(used_elem(f, &f->rx, 1).id, good);
	assert_int_equal(used_elem(f, &f->rx, 1).len, sizeof(sent));
	assert_memory_equal((uint8_t *)gpa(f, buf) + HDR, sent + HDR, 100);
	assert_int_equal(net_metrics(f->net)->rx_fails, 1);
}

static void test_rx_broken_queue_needs_reset_and_stops_reading(void **state)
{
	struct fixture *f = *state;
	struct seg outside = {MEM_SIZE - 100, 1526, true}; /* runs past the end of RAM */

	start(f, V1);
	add_chain(f, &f->rx, &outside, 1);
	peer_send(f, HDR + 60, 21, NULL);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);

	assert_true(mmio_read(f->dev, VIRTIO_MMIO_STATUS, 4) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(ready_sources(f), 0);
	assert_true(frame_queued_for_device(f));
	assert_int_equal(used_idx(f, &f->rx), 0);
}

/* ---- configuration, lifecycle ---- */

static void test_config_space_holds_the_mac(void **state)
{
	struct fixture *f = *state;
	uint8_t mac[6];

	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)mmio_read(f->dev, VIRTIO_MMIO_CONFIG + i, 1);
	assert_memory_equal(mac, test_mac, 6);
	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_CONFIG, 4), 0x33221102);
	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_CONFIG + 6, 2), VIRTIO_NET_S_LINK_UP);
	assert_true(f->dev->ops->features(f->dev) & F(VIRTIO_NET_F_MAC));
}

static void test_config_reads_out_of_range_are_zero_and_writes_ignored(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_CONFIG + 8, 4), 0);
	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_CONFIG + 0xe00, 4), 0);
	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_CONFIG + 6, 4), VIRTIO_NET_S_LINK_UP);
	mmio_write(f->dev, VIRTIO_MMIO_CONFIG, 0xffffffff);
	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_CONFIG, 4), 0x33221102);
}

static void test_random_mac_is_unicast_and_locally_administered(void **state)
{
	struct fixture *f = *state;
	struct net_device *a, *b;
	uint8_t mac_a[6], mac_b[6];
	int peer = f->peer, tap = f->tap;

	assert_int_equal(create_on_pair(f, &a, NULL, 0), 0);
	close(f->peer);
	assert_int_equal(create_on_pair(f, &b, NULL, 0), 0);
	close(f->peer);
	f->peer = peer;
	f->tap = tap;
	net_mac(a, mac_a);
	net_mac(b, mac_b);
	assert_int_equal(mac_a[0] & 3, 2);
	assert_int_equal(mac_b[0] & 3, 2);
	assert_memory_not_equal(mac_a, mac_b, 6);
	net_destroy(a);
	net_destroy(b);
}

static void test_features_follow_what_the_tap_accepts(void **state)
{
	struct fixture *f = *state;
	struct net_config config = {.id = "n", .tap = "t"};
	uint64_t always = F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_F_EVENT_IDX) |
			  F(VIRTIO_F_INDIRECT_DESC);
	uint64_t csum_tso = F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) |
			    F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6) |
			    F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6);
	uint64_t ufo = F(VIRTIO_NET_F_GUEST_UFO) | F(VIRTIO_NET_F_HOST_UFO);
	const unsigned int tap[] = {0, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
				    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO};
	const uint64_t expect[] = {always, always | csum_tso, always | csum_tso | ufo};

	for (int i = 0; i < 3; i++) {
		struct net_device *net;
		int fd = dup(f->peer);
		assert_int_equal(net_create_on_fd(&net, fd, &config, &f->mem, tap[i]), 0);
		assert_int_equal(net_virtio(net)->ops->features(net_virtio(net)), expect[i]);
		assert_int_equal(net_tap_offloads(net), tap[i]);
		assert_int_equal(net_active_offloads(net), 0);
		assert_ptr_equal(net_from_virtio(net_virtio(net)), net);
		net_destroy(net);
	}
	assert_int_equal(mmio_read(f->dev, VIRTIO_MMIO_DEVICE_ID, 4), VIRTIO_ID_NET);
}

static void test_reset_stops_receiving(void **state)
{
	struct fixture *f = *state;

	start(f, V1);
	add_rx_buffer(f, 1526, NULL);
	mmio_write(f->dev, VIRTIO_MMIO_STATUS, 0);
	peer_send(f, HDR + 60, 17, NULL);
	assert_int_equal(ready_sources(f), 0);
	assert_true(frame_queued_for_device(f));
}

static void test_hangup_stops_watching_and_tx_fails_cleanly(void **state)
{
	struct fixture *f = *state;
	struct seg seg = {alloc_buf(f, HDR + 60, 0), HDR + 60, false};

	start(f, V1);
	close(f->peer);
	f->peer = dup(f->tap); /* teardown closes something */
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(ready_sources(f), 0);
	add_chain(f, &f->tx, &seg, 1);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(used_idx(f, &f->tx), 1);
	assert_int_equal(net_metrics(f->net)->tx_fails, 1);
	assert_int_equal(net_metrics(f->net)->tap_write_fails, 1);
}

static void test_snapshot_restores_mac_and_keeps_no_buffer_taken(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[1024], mac[6];
	struct net_device *copy;
	int peer = f->peer, tap = f->tap, size, copy_peer;
	uint16_t head;

	start(f, MRG);
	add_rx_buffer(f, 1526, &head);
	peer_send(f, HDR + 4000, 18, NULL); /* waits for more buffers */
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(used_idx(f, &f->rx), 0);
	size = virtio_mmio_ops.save(f->dev, buf, sizeof(buf));
	assert_true(size > 0);

	static const uint8_t other_mac[6] = {0x02, 9, 9, 9, 9, 9};
	assert_int_equal(create_on_pair(f, &copy, other_mac, 0), 0);
	copy_peer = f->peer;
	f->peer = peer;
	f->tap = tap;
	net_virtio(copy)->signal = count_interrupt;
	assert_int_equal(net_virtio(copy)->ops->attach(net_virtio(copy), &f->loop), 0);
	assert_int_equal(virtio_mmio_ops.restore(net_virtio(copy), buf, (size_t)size), 0);
	net_mac(copy, mac);
	assert_memory_equal(mac, test_mac, 6);

	/* The buffer is the copy's to use. */
	uint8_t frame[HDR + 60];
	fill_frame(frame, sizeof(frame), 19);
	assert_int_equal(send(copy_peer, frame, sizeof(frame), 0), sizeof(frame));
	for (int i = 0; i < 3 && used_idx(f, &f->rx) == 0; i++)
		assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(used_idx(f, &f->rx), 1);
	assert_int_equal(used_elem(f, &f->rx, 0).id, head);
	assert_int_equal(used_elem(f, &f->rx, 0).len, sizeof(frame));

	/* Offloads the copy's TAP does not take are refused. */
	buf[size - 16 + 4] = TUN_F_CSUM; /* the device state ends the snapshot: offloads at 4 */
	assert_int_equal(virtio_mmio_ops.restore(net_virtio(copy), buf, (size_t)size), -EINVAL);
	net_destroy(copy);
	close(copy_peer);
}

/* ---- rate limiting ---- */

#define MS 1000000ULL

static uint64_t fake_now = 1000 * MS;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static const struct rate_limiter_config unlimited;

/* `ops` frames every 10 s: the real timer, armed for fake waits that long, never fires
 * while a test runs. */
static struct rate_limiter_config frames_per_10s(uint64_t ops)
{
	return (struct rate_limiter_config){.ops = {.size = ops, .refill_time_ms = 10000}};
}

static void use_fake_clock(struct net_device *net)
{
	rate_limiter_set_clock(net_rate_limiter(net, VIRTIO_NET_RX_QUEUE), fake_clock);
	rate_limiter_set_clock(net_rate_limiter(net, VIRTIO_NET_TX_QUEUE), fake_clock);
}

/* The fixture's device made again with these limiters (net_create honours them), on the
 * fake clock, attached. */
static void limit_net(struct fixture *f, struct rate_limiter_config rx,
		      struct rate_limiter_config tx)
{
	struct net_config config = {.id = "net0",
				    .tap = "test0",
				    .has_mac = true,
				    .rx_rate_limiter = rx,
				    .tx_rate_limiter = tx};

	memcpy(config.mac, test_mac, 6);
	net_destroy(f->net);
	close(f->peer);
	assert_int_equal(create_with_config(f, &f->net, &config, 0), 0);
	f->dev = net_virtio(f->net);
	f->dev->signal = count_interrupt;
	assert_int_equal(f->dev->ops->attach(f->dev, &f->loop), 0);
	use_fake_clock(f->net);
}

/* A frame of HDR + `len` bytes on the tx ring, its bytes after the header from `seed`. */
static void add_tx_frame(struct fixture *f, uint32_t len, uint8_t seed)
{
	struct seg seg = {alloc_buf(f, HDR + len, 0), HDR + len, false};

	fill_frame(gpa(f, seg.gpa), HDR + len, seed);
	add_chain(f, &f->tx, &seg, 1);
}

static void expect_peer_frame(struct fixture *f, uint32_t len, uint8_t seed)
{
	uint8_t got[2048], expect[2048];

	fill_frame(expect, HDR + len, seed);
	assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + len);
	assert_memory_equal(got, expect, HDR + len);
}

static void assert_timer_disarmed(struct rate_limiter *limiter)
{
	struct itimerspec timer;

	assert_int_equal(timerfd_gettime(rate_limiter_timer_fd(limiter), &timer), 0);
	assert_false(timer.it_value.tv_sec || timer.it_value.tv_nsec);
}

static void test_tx_rate_limiter_holds_frames_in_the_ring(void **state)
{
	struct fixture *f = *state;
	uint8_t got[2048];

	limit_net(f, unlimited, frames_per_10s(2));
	start(f, V1);
	for (int i = 0; i < 4; i++)
		add_tx_frame(f, 100, (uint8_t)i);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	expect_peer_frame(f, 100, 0);
	expect_peer_frame(f, 100, 1);
	assert_int_equal(peer_recv(f, got, sizeof(got)), -1);
	assert_int_equal(used_idx(f, &f->tx), 2);
	assert_int_equal(net_metrics(f->net)->tx_rate_limiter_throttled, 1);
	assert_int_equal(ready_sources(f), 0); /* waits for the timer: no EPOLLOUT, no spin */

	/* A kick, or the timer before its time: still held back. */
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	fake_now += 4999 * MS;
	net_handle_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(used_idx(f, &f->tx), 2);
	assert_int_equal(net_metrics(f->net)->tx_rate_limiter_throttled, 3);

	fake_now += 1 * MS; /* one frame every 5 s */
	net_handle_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	expect_peer_frame(f, 100, 2);
	assert_int_equal(used_idx(f, &f->tx), 3);
	fake_now += 5000 * MS;
	net_handle_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	expect_peer_frame(f, 100, 3);
	assert_int_equal(used_idx(f, &f->tx), 4);
	assert_int_equal(net_metrics(f->net)->tx_packets_count, 4);
	assert_int_equal(net_metrics(f->net)->tx_rate_limiter_throttled, 4);
	assert_false(rate_limiter_blocked(net_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE)));
}

/* Bytes count the whole chain, vnet header included, as in Firecracker. */
static void test_tx_rate_limiter_bandwidth_counts_the_header(void **state)
{
	struct fixture *f = *state;
	struct rate_limiter_config bytes = {
	    .bandwidth = {.size = 2 * (HDR + 100), .refill_time_ms = 10000}};

	limit_net(f, unlimited, bytes);
	start(f, V1);
	for (int i = 0; i < 3; i++)
		add_tx_frame(f, 100, (uint8_t)i);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(used_idx(f, &f->tx), 2);
	fake_now += 4999 * MS;
	net_handle_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(used_idx(f, &f->tx), 2);
	fake_now += 1 * MS;
	net_handle_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(used_idx(f, &f->tx), 3);
	assert_int_equal(net_metrics(f->net)->tx_bytes_count, 300);
}

/* A frame the rx limiter refuses is kept, not dropped, and the TAP is not read meanwhile;
 * for each way a frame reaches the guest. */
static void rx_throttled(struct fixture *f, uint64_t features, uint32_t buffer_len)
{
	uint8_t sent[3][HDR + 100];
	uint64_t bufs[3];

	limit_net(f, frames_per_10s(1), unlimited);
	start(f, features);
	for (int i = 0; i < 3; i++)
		bufs[i] = add_rx_buffer(f, buffer_len, NULL);
	for (int i = 0; i < 3; i++)
		peer_send(f, HDR + 100, (uint8_t)(30 + i), sent[i]);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(used_idx(f, &f->rx), 1);
	assert_int_equal(net_metrics(f->net)->rx_rate_limiter_throttled, 1);
	assert_int_equal(net_metrics(f->net)->rx_dropped, 0);
	assert_int_equal(ready_sources(f), 0); /* the TAP is not read */
	assert_true(frame_queued_for_device(f));

	/* The driver's kick, or the timer before its time, changes nothing. */
	virtio_queue_notified(f->dev, VIRTIO_NET_RX_QUEUE);
	net_handle_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE);
	assert_int_equal(used_idx(f, &f->rx), 1);

	fake_now += 10000 * MS;
	net_handle_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE); /* the frame held, then the next */
	assert_int_equal(used_idx(f, &f->rx), 2);
	assert_false(frame_queued_for_device(f));
	fake_now += 10000 * MS;
	net_handle_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE);
	assert_int_equal(used_idx(f, &f->rx), 3);
	for (uint16_t i = 0; i < 3; i++) {
		struct vring_used_elem e = used_elem(f, &f->rx, i);
		assert_int_equal(e.id, i);
		assert_int_equal(e.len, HDR + 100);
		assert_int_equal(((struct virtio_net_hdr_v1 *)gpa(f, bufs[i]))->num_buffers, 1);
		assert_memory_equal((uint8_t *)gpa(f, bufs[i]) + HDR, sent[i] + HDR, 100);
	}
	assert_int_equal(net_metrics(f->net)->rx_packets_count, 3);
	assert_int_equal(net_metrics(f->net)->rx_dropped, 0);
	/* Back to reading the TAP. */
	assert_false(rate_limiter_blocked(net_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE)));
	add_rx_buffer(f, buffer_len, NULL);
	virtio_queue_notified(f->dev, VIRTIO_NET_RX_QUEUE);
	peer_send(f, HDR + 100, 40, NULL);
	assert_int_equal(ready_sources(f), 1);
}

static void test_rx_rate_limiter_holds_a_frame_copied(void **state)
{
	rx_throttled(*state, V1, 1526);
}

static void test_rx_rate_limiter_holds_a_frame_read_directly(void **state)
{
	rx_throttled(*state, V1, VIRTIO_NET_MAX_FRAME + 1000);
}

static void test_rx_rate_limiter_holds_a_merged_frame(void **state)
{
	rx_throttled(*state, MRG, 1526);
}

static void test_update_rate_limiters_takes_effect(void **state)
{
	struct fixture *f = *state;
	struct rate_limiter_config one = frames_per_10s(1);
	uint8_t got[2048];

	use_fake_clock(f->net);
	start(f, V1);
	assert_int_equal(net_update_rate_limiters(f->net, NULL, &one), 0);
	assert_false(rate_limiter_enabled(net_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE)));
	for (int i = 0; i < 3; i++)
		add_tx_frame(f, 60, (uint8_t)i);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(used_idx(f, &f->tx), 1);
	/* Off: the held frames go at once, without the timer. */
	assert_int_equal(net_update_rate_limiters(f->net, NULL, &unlimited), 0);
	assert_int_equal(used_idx(f, &f->tx), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(peer_recv(f, got, sizeof(got)), HDR + 60);

	assert_int_equal(net_update_rate_limiters(f->net, &one, NULL), 0);
	for (int i = 0; i < 2; i++) {
		add_rx_buffer(f, 1526, NULL);
		peer_send(f, HDR + 60, (uint8_t)(50 + i), NULL);
	}
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	assert_int_equal(used_idx(f, &f->rx), 1);
	assert_int_equal(net_update_rate_limiters(f->net, &unlimited, &unlimited), 0);
	assert_int_equal(used_idx(f, &f->rx), 2);
	assert_int_equal(net_metrics(f->net)->rx_dropped, 0);
}

static void test_reset_leaves_no_stale_throttling(void **state)
{
	struct fixture *f = *state;
	struct rate_limiter *rx, *tx;

	limit_net(f, frames_per_10s(1), frames_per_10s(1));
	rx = net_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE);
	tx = net_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	start(f, V1);
	add_rx_buffer(f, 1526, NULL);
	add_rx_buffer(f, 1526, NULL);
	peer_send(f, HDR + 60, 1, NULL);
	peer_send(f, HDR + 60, 2, NULL);
	assert_int_equal(event_loop_run_once(&f->loop, 100), 0);
	add_tx_frame(f, 60, 1);
	add_tx_frame(f, 60, 2);
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	assert_true(rate_limiter_blocked(rx));
	assert_true(rate_limiter_blocked(tx));

	mmio_write(f->dev, VIRTIO_MMIO_STATUS, 0);
	assert_false(rate_limiter_blocked(rx));
	assert_false(rate_limiter_blocked(tx));
	assert_timer_disarmed(rx);
	assert_timer_disarmed(tx);
	/* A late timer event finds nothing to do. */
	net_handle_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE);
	net_handle_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE);
	assert_int_equal(ready_sources(f), 0);
}

/* The way the VMM runs it, on the real clock: attach registers both timers, the event loop
 * runs them, destroy unregisters them. */
static void test_rate_limiter_timers_run_through_event_loop(void **state)
{
	struct fixture *f = *state;
	struct rate_limiter_config fast = {.ops = {.size = 1, .refill_time_ms = 20}};
	int timers[2], watched = 0;

	limit_net(f, fast, fast);
	rate_limiter_set_clock(net_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE),
			       rate_limiter_monotonic_ns);
	rate_limiter_set_clock(net_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE),
			       rate_limiter_monotonic_ns);
	timers[0] = rate_limiter_timer_fd(net_rate_limiter(f->net, VIRTIO_NET_RX_QUEUE));
	timers[1] = rate_limiter_timer_fd(net_rate_limiter(f->net, VIRTIO_NET_TX_QUEUE));
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		watched += f->loop.sources[i].fd == timers[0] || f->loop.sources[i].fd == timers[1];
	assert_int_equal(watched, 2);

	start(f, V1);
	for (int i = 0; i < 3; i++) {
		add_tx_frame(f, 60, (uint8_t)i);
		add_rx_buffer(f, 1526, NULL);
		peer_send(f, HDR + 60, (uint8_t)i, NULL);
	}
	virtio_queue_notified(f->dev, VIRTIO_NET_TX_QUEUE);
	for (int i = 0; i < 200 && (used_idx(f, &f->tx) < 3 || used_idx(f, &f->rx) < 3); i++)
		assert_int_equal(event_loop_run_once(&f->loop, 1000), 0);
	assert_int_equal(used_idx(f, &f->tx), 3);
	assert_int_equal(used_idx(f, &f->rx), 3);

	net_destroy(f->net);
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		assert_true(f->loop.sources[i].fd < 0);
	close(f->peer);
	assert_int_equal(create_on_pair(f, &f->net, test_mac, 0), 0); /* for the teardown */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(test_tx_frame_reaches_peer_intact),
	    T(test_tx_with_event_idx_asks_for_the_next_kick),
	    T(test_tx_malformed_chains_are_dropped_and_counted),
	    cmocka_unit_test_setup_teardown(test_tx_waits_for_a_full_tap_and_resumes_in_order,
					    setup_small_sndbuf, teardown),
	    T(test_rx_frame_lands_in_guest_buffer),
	    T(test_rx_without_buffers_does_not_spin),
	    T(test_rx_frame_too_large_is_dropped_whole),
	    T(test_rx_offload_the_driver_refused_is_dropped),
	    T(test_rx_large_buffer_is_filled_directly),
	    T(test_mrg_rxbuf_spreads_a_frame_over_several_buffers),
	    T(test_mrg_rxbuf_holds_a_frame_until_enough_buffers),
	    T(test_mrg_rxbuf_frame_larger_than_the_ring_is_dropped),
	    T(test_mrg_rxbuf_buffer_without_room_for_the_header_is_returned_empty),
	    T(test_rx_broken_queue_needs_reset_and_stops_reading),
	    T(test_config_space_holds_the_mac),
	    T(test_config_reads_out_of_range_are_zero_and_writes_ignored),
	    T(test_random_mac_is_unicast_and_locally_administered),
	    T(test_features_follow_what_the_tap_accepts),
	    T(test_reset_stops_receiving),
	    T(test_hangup_stops_watching_and_tx_fails_cleanly),
	    T(test_snapshot_restores_mac_and_keeps_no_buffer_taken),
	    T(test_tx_rate_limiter_holds_frames_in_the_ring),
	    T(test_tx_rate_limiter_bandwidth_counts_the_header),
	    T(test_rx_rate_limiter_holds_a_frame_copied),
	    T(test_rx_rate_limiter_holds_a_frame_read_directly),
	    T(test_rx_rate_limiter_holds_a_merged_frame),
	    T(test_update_rate_limiters_takes_effect),
	    T(test_reset_leaves_no_stale_throttling),
	    T(test_rate_limiter_timers_run_through_event_loop),
#undef T
	};
	signal(SIGPIPE, SIG_IGN); /* a socket whose peer closed raises it; a TAP does not */
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
