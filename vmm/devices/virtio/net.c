#include "net.h"

#include "../../log.h"
#include "../../rate_limiter.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#define NET_STATE_VERSION 1
#define RX_BUDGET	  64 /* frames per TAP event: a busy TAP must not starve the loop */
#define BIT(n)		  (1ULL << (n))

/* What one receive step did. */
enum rx_result {
	RX_FRAME,      /* a frame is in net->frame, ready to deliver */
	RX_DONE,       /* a frame was delivered or dropped: go on */
	RX_TAP_EMPTY,  /* nothing (more) to read */
	RX_NO_BUFFERS, /* the driver has to add buffers first */
	RX_THROTTLED,  /* the rate limiter holds the frame (in net->frame) back */
	RX_BROKEN,     /* the receive queue is broken */
};

/* What became of the frame in net->tx_chain. */
enum tx_result {
	TX_DONE,      /* sent or dropped */
	TX_TAP_FULL,  /* EPOLLOUT resumes */
	TX_THROTTLED, /* the rate limiter's timer resumes */
};

struct net_device {
	struct virtio_device vdev; /* first: the transport's pointer converts back */
	char id[CONFIG_ID_MAX];
	char tap[IFNAMSIZ];
	int fd;
	uint8_t mac[6];
	unsigned int tap_offloads; /* TUN_F_* the TAP accepted */
	unsigned int offloads;	   /* TUN_F_* in force: what the driver negotiated */
	uint64_t features;
	struct event_loop *loop;
	uint32_t events; /* what the loop watches the fd for */
	bool rx_stopped; /* not reading the TAP: device not live, or no receive buffers */
	bool tx_blocked; /* the TAP was full: transmission resumes on EPOLLOUT */
	bool tap_gone;	 /* the TAP hung up or went away: no longer watched */
	bool tx_paid;	 /* the frame at the head of the tx ring passed the limiter, not the TAP */
	bool rx_fail_logged, tx_fail_logged;
	/* While the rx limiter is blocked the TAP is not read: its frames wait in the kernel. */
	struct rate_limiter rx_limiter, tx_limiter;
	/* Receiving through a copy: the frame (it may wait there for buffers with MRG_RXBUF,
	 * or for the rx limiter), and the chains it is spread over until they are pushed
	 * together. */
	uint8_t *frame; /* VIRTIO_NET_MAX_FRAME + 1 bytes: one more tells a truncated read */
	uint32_t frame_len;
	uint16_t held_head[VIRTIO_NET_QUEUE_SIZE];
	uint32_t held_len[VIRTIO_NET_QUEUE_SIZE];
	struct vq_chain rx_first, rx_next, tx_chain;
	struct net_metrics metrics;
};

_Static_assert(offsetof(struct net_device, vdev) == 0, "the transport casts back");

struct net_state {
	uint32_t version;
	uint32_t offloads;
	uint8_t mac[6];
	uint16_t reserved;
} __attribute__((packed));

static struct net_device *to_net(struct virtio_device *dev)
{
	return (struct net_device *)dev;
}

static struct virtqueue *rx_queue(struct net_device *net)
{
	return &net->vdev.queues[VIRTIO_NET_RX_QUEUE];
}

static struct virtqueue *tx_queue(struct net_device *net)
{
	return &net->vdev.queues[VIRTIO_NET_TX_QUEUE];
}

static bool live(const struct net_device *net)
{
	return virtio_device_live(&net->vdev);
}

static uint32_t tap_events(const struct net_device *net)
{
	bool reading = !net->rx_stopped && !rate_limiter_blocked(&net->rx_limiter);

	return (reading ? EPOLLIN : 0) | (net->tx_blocked ? EPOLLOUT : 0);
}

/* Brings the event loop's interest in the TAP in line with the device's state. */
static void watch(struct net_device *net)
{
	uint32_t events = tap_events(net);
	int err;

	if (net->tap_gone || events == net->events)
		return;
	net->events = events;
	if (!net->loop)
		return; /* attach registers what is wanted by then */
	err = event_loop_modify(net->loop, net->fd, events);
	if (err)
		log_warn("net '%s': cannot change what TAP %s is watched for: %s", net->id,
			 net->tap, strerror(-err));
}

static void tap_lost(struct net_device *net, const char *why)
{
	if (net->tap_gone)
		return;
	log_warn("net '%s': TAP %s %s: no longer receiving from it", net->id, net->tap, why);
	if (net->loop)
		event_loop_remove(net->loop, net->fd);
	net->tap_gone = true;
	net->tx_blocked = false;
	net->events = 0;
}

/* Each segmentation offload: the TAP's flag, the feature for frames to the guest (the TAP
 * produces them), the one for frames from it (the TAP takes them), its gso_type. */
static const struct {
	unsigned int tun, guest, host;
	uint8_t gso_type;
} gso_offloads[] = {
    {TUN_F_TSO4, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_HDR_GSO_TCPV4},
    {TUN_F_TSO6, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_HDR_GSO_TCPV6},
    {TUN_F_UFO, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_HDR_GSO_UDP},
};
#define NR_GSO_OFFLOADS (sizeof(gso_offloads) / sizeof(gso_offloads[0]))

/* Segmentation builds on checksum offload, for the TAP as in virtio (5.1.3.1). */
static unsigned int offloads_for(uint64_t driver_features)
{
	unsigned int offloads = TUN_F_CSUM;

	if (!(driver_features & BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	for (size_t i = 0; i < NR_GSO_OFFLOADS; i++)
		if (driver_features & BIT(gso_offloads[i].guest))
			offloads |= gso_offloads[i].tun;
	return offloads;
}

/* A TAP that takes TUN_F_CSUM is recent enough to take partial checksums and GSO frames
 * from the guest too; each kind of frame to the guest needs the TAP to produce it. */
static uint64_t features_for(unsigned int tap_offloads)
{
	uint64_t features = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_MRG_RXBUF) |
			    BIT(VIRTIO_F_EVENT_IDX) | BIT(VIRTIO_F_INDIRECT_DESC);

	if (!(tap_offloads & TUN_F_CSUM))
		return features;
	features |= BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM);
	for (size_t i = 0; i < NR_GSO_OFFLOADS; i++)
		if (tap_offloads & gso_offloads[i].tun)
			features |= BIT(gso_offloads[i].guest) | BIT(gso_offloads[i].host);
	return features;
}

static int set_offloads(struct net_device *net, unsigned int offloads)
{
	if (offloads == net->offloads)
		return 0; /* also what keeps a test socket, which has no offloads, out of this */
	if (ioctl(net->fd, TUNSETOFFLOAD, (unsigned long)offloads) < 0) {
		int err = -errno;
		log_error("net '%s': TAP %s refuses offloads %#x: %s", net->id, net->tap, offloads,
			  strerror(errno));
		return err;
	}
	net->offloads = offloads;
	return 0;
}

/* Firecracker's accounting, both ways: a frame is one op and its length, vnet header
 * included, in bytes. */
static bool admit(struct rate_limiter *limiter, uint32_t len, _Atomic uint64_t *throttled)
{
	if (!rate_limiter_enabled(limiter) ||
	    rate_limiter_consume(limiter, len, 1, rate_limiter_now(limiter)))
		return true;
	atomic_fetch_add(throttled, 1);
	return false;
}

/* ---- transmit ---- */

/* Sends the frame in net->tx_chain. The TAP takes the vnet header as it is. */
static enum tx_result tx_frame(struct net_device *net)
{
	const struct vq_chain *chain = &net->tx_chain;
	ssize_t sent;

	if (chain->nr_writable || chain->readable_len < VIRTIO_NET_HDR_LEN ||
	    chain->readable_len > VIRTIO_NET_MAX_FRAME) {
		atomic_fetch_add(&net->metrics.tx_malformed_frames, 1);
		return TX_DONE;
	}
	/* Paid once, even if the TAP is full and the frame is tried again. */
	if (!net->tx_paid &&
	    !admit(&net->tx_limiter, chain->readable_len, &net->metrics.tx_rate_limiter_throttled))
		return TX_THROTTLED;
	net->tx_paid = true;
	sent = writev(net->fd, chain->iov, (int)chain->nr_readable);
	if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return TX_TAP_FULL;
	net->tx_paid = false;
	if (sent < 0) {
		atomic_fetch_add(&net->metrics.tx_fails, 1);
		if (!net->tx_fail_logged)
			log_warn("net '%s': TAP %s refuses a frame: %s (dropped; logged once)",
				 net->id, net->tap, strerror(errno));
		net->tx_fail_logged = true;
		return TX_DONE;
	}
	atomic_fetch_add(&net->metrics.tx_packets_count, 1);
	atomic_fetch_add(&net->metrics.tx_bytes_count, chain->readable_len - VIRTIO_NET_HDR_LEN);
	return TX_DONE;
}

static void process_tx(struct net_device *net)
{
	struct virtqueue *vq = tx_queue(net);
	uint16_t used = vq->state.used_idx;
	int r;

	net->tx_blocked = false;
	/* Kicks are off while the queue is drained; after turning them back on, look again,
	 * for a buffer added in between came without one. */
	for (;;) {
		vq_set_notification(vq, false);
		while ((r = vq_pop(vq, &net->tx_chain)) == 1) {
			enum tx_result sent = tx_frame(net);
			if (sent != TX_DONE) {
				/* Kicks stay off: EPOLLOUT or the limiter's timer resumes. */
				vq_unpop(vq, 1);
				net->tx_blocked = sent == TX_TAP_FULL;
				goto out;
			}
			if (vq_push(vq, net->tx_chain.head, 0)) {
				r = -EIO;
				break;
			}
		}
		if (r < 0) {
			virtio_queue_failed(&net->vdev, VIRTIO_NET_TX_QUEUE);
			goto out;
		}
		vq_set_notification(vq, true);
		if (!vq_has_available(vq))
			break;
	}
out:
	watch(net);
	if (vq->state.used_idx != used)
		virtio_notify_used(&net->vdev, VIRTIO_NET_TX_QUEUE);
}

/* ---- receive ---- */

static void rx_drop(struct net_device *net, const char *why)
{
	atomic_fetch_add(&net->metrics.rx_dropped, 1);
	log_debug("net '%s': dropped a frame from TAP %s: %s", net->id, net->tap, why);
}

/* Whether the driver takes this frame from the TAP (one queued before the last
 * negotiation may carry an offload the driver has since refused); if so, sets in its
 * header what the device owes the driver (5.1.6.4.1). Otherwise the frame is dropped. */
static bool rx_frame_ok(struct net_device *net, ssize_t len, struct virtio_net_hdr_v1 *hdr)
{
	unsigned int needs = ~0u; /* ECN, USO: never offered */
	const char *why = NULL;

	if (hdr->gso_type == VIRTIO_NET_HDR_GSO_NONE)
		needs = 0;
	for (size_t i = 0; i < NR_GSO_OFFLOADS; i++)
		if (hdr->gso_type == gso_offloads[i].gso_type)
			needs = gso_offloads[i].tun;
	if (len < (ssize_t)VIRTIO_NET_HDR_LEN || len > VIRTIO_NET_MAX_FRAME)
		why = "shorter than its header or larger than the largest frame";
	else if ((net->offloads & needs) != needs ||
		 (!(net->offloads & TUN_F_CSUM) && (hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)))
		why = "an offload the driver did not accept";
	if (why) {
		rx_drop(net, why);
		return false;
	}
	if (!(net->offloads & TUN_F_CSUM))
		hdr->flags = 0; /* without GUEST_CSUM, not even DATA_VALID */
	hdr->num_buffers = htole16(1);
	return true;
}

static enum rx_result rx_read_failed(struct net_device *net, ssize_t len)
{
	if (len == 0) {
		tap_lost(net, "was closed");
	} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
		atomic_fetch_add(&net->metrics.rx_fails, 1);
		if (!net->rx_fail_logged)
			log_warn("net '%s': cannot read TAP %s: %s (logged once)", net->id,
				 net->tap, strerror(errno));
		net->rx_fail_logged = true;
	}
	return RX_TAP_EMPTY;
}

/* Reads the next frame into net->frame. */
static enum rx_result rx_read(struct net_device *net)
{
	ssize_t len;

	len = read(net->fd, net->frame, VIRTIO_NET_MAX_FRAME + 1);
	if (len <= 0)
		return rx_read_failed(net, len);
	if (!rx_frame_ok(net, len, (struct virtio_net_hdr_v1 *)net->frame))
		return RX_DONE;
	net->frame_len = (uint32_t)len;
	return RX_FRAME;
}

static enum rx_result rx_push(struct net_device *net, uint16_t head, uint32_t len)
{
	if (vq_push(rx_queue(net), head, len))
		return RX_BROKEN;
	atomic_fetch_add(&net->metrics.rx_packets_count, 1);
	atomic_fetch_add(&net->metrics.rx_bytes_count, len - VIRTIO_NET_HDR_LEN);
	return RX_DONE;
}

static void iov_peek(const struct iovec *iov, unsigned int nr, void *dst, size_t len)
{
	uint8_t *out = dst;
	for (unsigned int i = 0; i < nr && len; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;
		memcpy(out, iov[i].iov_base, n);
		out += n;
		len -= n;
	}
}

/* A chain larger than any frame (GUEST_TSO buffers): the TAP writes into it directly. */
static enum rx_result rx_direct(struct net_device *net)
{
	struct vq_chain *chain = &net->rx_first;
	struct iovec *iov = chain->iov + chain->nr_readable;
	struct virtio_net_hdr_v1 hdr;
	ssize_t len;

	len = readv(net->fd, iov, (int)chain->nr_writable);
	if (len <= 0) {
		vq_unpop(rx_queue(net), 1);
		return rx_read_failed(net, len);
	}
	/* The TAP skips num_buffers (it writes 10 header bytes): it is set here. */
	iov_peek(iov, chain->nr_writable, &hdr, sizeof(hdr));
	if (!rx_frame_ok(net, len, &hdr)) {
		vq_unpop(rx_queue(net), 1); /* never used: the driver does not see the frame */
		return RX_DONE;
	}
	if (!admit(&net->rx_limiter, (uint32_t)len, &net->metrics.rx_rate_limiter_throttled)) {
		/* The chain goes back; the frame waits in net->frame, as one read through it. */
		iov_peek(iov, chain->nr_writable, net->frame, (size_t)len);
		memcpy(net->frame, &hdr, sizeof(hdr));
		net->frame_len = (uint32_t)len;
		vq_unpop(rx_queue(net), 1);
		return RX_THROTTLED;
	}
	vq_chain_write(chain, 0, &hdr, sizeof(hdr));
	return rx_push(net, chain->head, (uint32_t)len);
}

/* Asks for a kick when the driver adds buffers; true if it added some before the request
 * was visible (they come without a kick). Call with every available chain popped. */
static bool rx_buffers_came(struct virtqueue *vq)
{
	vq_set_notification(vq, true);
	if (!vq_has_available(vq))
		return false;
	vq_set_notification(vq, false);
	return true;
}

/* MRG_RXBUF: spreads net->frame over as many chains as it takes, then gives them all back
 * with num_buffers in the first. Short of buffers, it gives back those it took and keeps
 * the frame until the kick: nothing stays popped while the device waits (a snapshot
 * would lose it). */
static enum rx_result rx_merge(struct net_device *net)
{
	struct virtqueue *vq = rx_queue(net);
	uint32_t copied = 0;
	uint16_t nr = 0, le;
	int popped;

	while (copied < net->frame_len) {
		struct vq_chain *chain = nr ? &net->rx_next : &net->rx_first;
		if (nr && nr >= vq->state.size) {
			vq_unpop(vq, nr);
			net->frame_len = 0;
			rx_drop(net, "larger than all the ring's buffers");
			return RX_DONE;
		}
		popped = vq_pop(vq, chain);
		if (popped < 0)
			return RX_BROKEN;
		if (popped == 0) {
			/* The kick is asked for first, so that avail_event (EVENT_IDX) names
			 * the driver's next buffer, not the ones given back. */
			if (rx_buffers_came(vq))
				continue;
			vq_unpop(vq, nr);
			return RX_NO_BUFFERS;
		}
		if (!nr && chain->writable_len < VIRTIO_NET_HDR_LEN) {
			/* No room for the header: returned empty, the driver drops it. */
			atomic_fetch_add(&net->metrics.rx_fails, 1);
			if (vq_push(vq, chain->head, 0))
				return RX_BROKEN;
			continue;
		}
		net->held_head[nr] = chain->head;
		net->held_len[nr] = (uint32_t)vq_chain_write(chain, 0, net->frame + copied,
							     net->frame_len - copied);
		copied += net->held_len[nr++];
	}
	if (!admit(&net->rx_limiter, net->frame_len, &net->metrics.rx_rate_limiter_throttled)) {
		vq_unpop(vq, nr);
		return RX_THROTTLED;
	}
	le = htole16(nr);
	vq_chain_write(&net->rx_first, offsetof(struct virtio_net_hdr_v1, num_buffers), &le,
		       sizeof(le));
	for (uint16_t i = 0; i < nr; i++)
		if (vq_push(vq, net->held_head[i], net->held_len[i]))
			return RX_BROKEN;
	atomic_fetch_add(&net->metrics.rx_packets_count, 1);
	atomic_fetch_add(&net->metrics.rx_bytes_count, net->frame_len - VIRTIO_NET_HDR_LEN);
	net->frame_len = 0;
	return RX_DONE;
}

/* Without MRG_RXBUF: the frame in net->frame goes whole into the chain popped into
 * net->rx_first, or is dropped if it does not fit. */
static enum rx_result rx_single(struct net_device *net)
{
	struct virtqueue *vq = rx_queue(net);
	uint32_t len = net->frame_len;

	if (len > net->rx_first.writable_len) {
		vq_unpop(vq, 1);
		net->frame_len = 0;
		rx_drop(net, "larger than the driver's buffer");
		return RX_DONE;
	}
	if (!admit(&net->rx_limiter, len, &net->metrics.rx_rate_limiter_throttled)) {
		vq_unpop(vq, 1);
		return RX_THROTTLED;
	}
	vq_chain_write(&net->rx_first, 0, net->frame, len);
	net->frame_len = 0;
	return rx_push(net, net->rx_first.head, len);
}

/* One frame from the TAP to the guest, or the one waiting in net->frame (for buffers with
 * MRG_RXBUF, or for the rx limiter). Without MRG_RXBUF a chain is popped first (so a
 * frame is only read when there is somewhere to put it) and the frame goes whole into it
 * or is dropped: through a copy unless the chain is larger than any frame, so that the
 * guest never gets part of a frame. */
static enum rx_result rx_frame(struct net_device *net)
{
	struct virtqueue *vq = rx_queue(net);
	enum rx_result r;
	int popped;

	if (virtio_has_feature(&net->vdev, VIRTIO_NET_F_MRG_RXBUF)) {
		if (net->frame_len)
			return rx_merge(net);
		if (vq->state.broken)
			return RX_BROKEN;
		if (!vq_has_available(vq))
			return rx_buffers_came(vq) ? RX_DONE : RX_NO_BUFFERS;
		r = rx_read(net);
		return r == RX_FRAME ? rx_merge(net) : r;
	}
	popped = vq_pop(vq, &net->rx_first);
	if (popped == 0)
		return rx_buffers_came(vq) ? RX_DONE : RX_NO_BUFFERS;
	if (popped < 0)
		return RX_BROKEN;
	if (net->frame_len)
		return rx_single(net);
	if (net->rx_first.writable_len > VIRTIO_NET_MAX_FRAME)
		return rx_direct(net);
	r = rx_read(net);
	if (r != RX_FRAME) {
		vq_unpop(vq, 1);
		return r;
	}
	return rx_single(net);
}

static void process_rx(struct net_device *net)
{
	struct virtqueue *vq = rx_queue(net);
	uint16_t used = vq->state.used_idx;

	for (unsigned int budget = RX_BUDGET; budget && !net->rx_stopped && !net->tap_gone;
	     budget--) {
		enum rx_result r = rx_frame(net);
		if (r == RX_DONE)
			continue;
		if (r == RX_TAP_EMPTY || r == RX_THROTTLED)
			break; /* throttled: watch() stops reading until the limiter's timer */
		if (r == RX_BROKEN) {
			virtio_queue_failed(&net->vdev, VIRTIO_NET_RX_QUEUE);
			net->rx_stopped = true;
			break;
		}
		/* No buffers (a kick is asked for): stop reading the TAP until it comes,
		 * rather than spin on a TAP that stays readable. */
		net->rx_stopped = true;
	}
	watch(net);
	if (vq->state.used_idx != used)
		virtio_notify_used(&net->vdev, VIRTIO_NET_RX_QUEUE);
}

void net_handle_tap(struct net_device *net, uint32_t events)
{
	pthread_mutex_lock(&net->vdev.lock);
	if (!live(net)) {
		/* Nothing to do until the driver is ready again (activate watches again). */
		net->rx_stopped = true;
		net->tx_blocked = false;
	} else {
		if (events & EPOLLOUT)
			process_tx(net);
		if (events & EPOLLIN)
			process_rx(net);
	}
	if (events & (EPOLLERR | EPOLLHUP))
		tap_lost(net, "hung up or went away");
	watch(net);
	pthread_mutex_unlock(&net->vdev.lock);
}

static void tap_event(void *opaque, uint32_t events)
{
	net_handle_tap(opaque, events);
}

static bool receiving(const struct net_device *net)
{
	return live(net) && !net->rx_stopped && !net->tap_gone;
}

void net_handle_rate_limiter(struct net_device *net, unsigned int queue)
{
	pthread_mutex_lock(&net->vdev.lock);
	if (queue == VIRTIO_NET_TX_QUEUE) {
		rate_limiter_timer_expired(&net->tx_limiter);
		if (live(net))
			process_tx(net);
	} else {
		rate_limiter_timer_expired(&net->rx_limiter);
		if (receiving(net))
			process_rx(net); /* the frame held back first */
	}
	watch(net);
	pthread_mutex_unlock(&net->vdev.lock);
}

static void rx_limiter_event(void *opaque, uint32_t events)
{
	(void)events;
	net_handle_rate_limiter(opaque, VIRTIO_NET_RX_QUEUE);
}

static void tx_limiter_event(void *opaque, uint32_t events)
{
	(void)events;
	net_handle_rate_limiter(opaque, VIRTIO_NET_TX_QUEUE);
}

int net_update_rate_limiters(struct net_device *net, const struct rate_limiter_config *rx,
			     const struct rate_limiter_config *tx)
{
	pthread_mutex_lock(&net->vdev.lock);
	/* An update disarms the timer: what the limiter held back is retried here. */
	if (tx) {
		bool throttled = rate_limiter_blocked(&net->tx_limiter);
		rate_limiter_update(&net->tx_limiter, tx);
		if (throttled && live(net))
			process_tx(net);
	}
	if (rx) {
		bool throttled = rate_limiter_blocked(&net->rx_limiter);
		rate_limiter_update(&net->rx_limiter, rx);
		if (throttled && receiving(net))
			process_rx(net);
	}
	watch(net);
	pthread_mutex_unlock(&net->vdev.lock);
	return 0;
}

/* ---- virtio_device_ops ---- */

static uint64_t net_features(struct virtio_device *dev)
{
	return to_net(dev)->features;
}

static void net_config_read(struct virtio_device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
	struct virtio_net_config config = {.status = htole16(VIRTIO_NET_S_LINK_UP)};

	memcpy(config.mac, to_net(dev)->mac, sizeof(config.mac));
	virtio_config_copy(&config, sizeof(config), offset, data, len);
}

static int net_activate(struct virtio_device *dev)
{
	struct net_device *net = to_net(dev);
	int err = set_offloads(net, offloads_for(dev->driver_features));

	if (err)
		return err;
	net->rx_stopped = net->tap_gone;
	net->tx_blocked = false;
	watch(net);
	return 0;
}

static void net_queue_notify(struct virtio_device *dev, unsigned int index)
{
	struct net_device *net = to_net(dev);

	if (index == VIRTIO_NET_TX_QUEUE) {
		process_tx(net);
	} else if (index == VIRTIO_NET_RX_QUEUE) {
		/* New buffers. While reading, the TAP's readiness drives receiving. */
		vq_set_notification(rx_queue(net), false);
		if (net->rx_stopped && !net->tap_gone) {
			net->rx_stopped = false;
			process_rx(net);
		}
	}
}

static void net_reset(struct virtio_device *dev)
{
	struct net_device *net = to_net(dev);

	/* The transport reset the queues: a waiting frame and a blocked one are forgotten. The
	 * limiters keep their tokens (a reset is no way around them). */
	net->rx_stopped = true;
	net->tx_blocked = false;
	net->tx_paid = false;
	net->frame_len = 0;
	rate_limiter_unblock(&net->rx_limiter);
	rate_limiter_unblock(&net->tx_limiter);
	set_offloads(net, 0); /* frames queued from now on suit any driver */
	watch(net);
}

static int net_attach(struct virtio_device *dev, struct event_loop *loop)
{
	struct net_device *net = to_net(dev);
	uint32_t events = tap_events(net);
	int err = event_loop_add(loop, net->fd, events, tap_event, net);

	if (err) {
		log_error("net '%s': cannot watch TAP %s: %s", net->id, net->tap, strerror(-err));
		return err;
	}
	err = event_loop_add(loop, rate_limiter_timer_fd(&net->rx_limiter), EPOLLIN,
			     rx_limiter_event, net);
	if (err)
		goto fail_rx;
	err = event_loop_add(loop, rate_limiter_timer_fd(&net->tx_limiter), EPOLLIN,
			     tx_limiter_event, net);
	if (err)
		goto fail_tx;
	net->loop = loop;
	net->events = events;
	return 0;

fail_tx:
	event_loop_remove(loop, rate_limiter_timer_fd(&net->rx_limiter));
fail_rx:
	event_loop_remove(loop, net->fd);
	log_error("net '%s': cannot watch its rate limiters' timers: %s", net->id, strerror(-err));
	return err;
}

static int net_save(struct virtio_device *dev, void *buf, size_t size)
{
	struct net_device *net = to_net(dev);
	struct net_state state = {.version = NET_STATE_VERSION, .offloads = net->offloads};

	if (size < sizeof(state))
		return -ENOSPC;
	memcpy(state.mac, net->mac, sizeof(state.mac));
	memcpy(buf, &state, sizeof(state));
	return (int)sizeof(state);
}

static int net_restore(struct virtio_device *dev, const void *buf, size_t size)
{
	struct net_device *net = to_net(dev);
	struct net_state state;
	int err;

	if (size < sizeof(state))
		return -EINVAL;
	memcpy(&state, buf, sizeof(state));
	if (state.version != NET_STATE_VERSION || (state.offloads & ~net->tap_offloads)) {
		log_error("net '%s': snapshot state version %u with offloads %#x, but TAP %s "
			  "takes %#x",
			  net->id, state.version, state.offloads, net->tap, net->tap_offloads);
		return -EINVAL;
	}
	err = set_offloads(net, state.offloads);
	if (err)
		return err;
	memcpy(net->mac, state.mac, sizeof(net->mac));
	net->frame_len = 0;
	net->tx_paid = false;
	rate_limiter_unblock(&net->rx_limiter);
	rate_limiter_unblock(&net->tx_limiter);
	/* Whether the restored device is live is for the TAP's events to find out (the
	 * transport may restore the status after this); EPOLLOUT comes at once and serves a
	 * kick taken just before the snapshot. */
	net->rx_stopped = false;
	net->tx_blocked = true;
	watch(net);
	return 0;
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .queue_max_size = VIRTIO_NET_QUEUE_SIZE,
    .features = net_features,
    .config_read = net_config_read,
    /* no config_write: the MAC is not writable (VIRTIO_NET_F_CTRL_MAC_ADDR not offered) */
    .activate = net_activate,
    .queue_notify = net_queue_notify,
    .reset = net_reset,
    .attach = net_attach,
    .save = net_save,
    .restore = net_restore,
};

/* ---- creation ---- */

static int random_mac(uint8_t mac[6])
{
	if (getrandom(mac, 6, 0) != 6)
		return -errno;
	mac[0] = (uint8_t)((mac[0] & ~1) | 2); /* unicast, locally administered */
	return 0;
}

int net_create_on_fd(struct net_device **out, int fd, const struct net_config *config,
		     const struct gmem *mem, unsigned int offloads)
{
	struct net_device *net = calloc(1, sizeof(*net));
	int flags, err = -ENOMEM;

	if (!net)
		return -ENOMEM;
	snprintf(net->id, sizeof(net->id), "%s", config->id);
	rate_limiter_init(&net->rx_limiter, &config->rx_rate_limiter);
	rate_limiter_init(&net->tx_limiter, &config->tx_rate_limiter);
	net->frame = malloc(VIRTIO_NET_MAX_FRAME + 1);
	if (!net->frame)
		goto fail;
	/* Always: a PATCH may turn limiting on after attach registered the timers. */
	err = rate_limiter_open_timer(&net->rx_limiter);
	if (!err)
		err = rate_limiter_open_timer(&net->tx_limiter);
	if (err) {
		log_error("net '%s': cannot create its rate limiters' timers: %s", net->id,
			  strerror(-err));
		goto fail;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		err = -errno;
		log_error("net '%s': cannot make its TAP non-blocking: %s", net->id,
			  strerror(errno));
		goto fail;
	}
	net->fd = fd;
	snprintf(net->tap, sizeof(net->tap), "%s", config->tap);
	err = config->has_mac ? 0 : random_mac(net->mac);
	if (err) {
		log_error("net '%s': cannot make up a MAC address: %s", net->id, strerror(-err));
		goto fail;
	}
	if (config->has_mac)
		memcpy(net->mac, config->mac, sizeof(net->mac));
	net->tap_offloads = offloads;
	net->features = features_for(offloads);
	net->rx_stopped = true; /* until the driver is ready */
	virtio_init(&net->vdev, &net_ops, 2, mem, net->id);
	*out = net;
	return 0;

fail:
	rate_limiter_close_timer(&net->rx_limiter);
	rate_limiter_close_timer(&net->tx_limiter);
	free(net->frame);
	free(net);
	return err;
}

static void log_tap_error(const char *id, const char *tap, int error)
{
	bool exists = if_nametoindex(tap) != 0;

	if (error == EPERM && !exists)
		log_error("net '%s': TAP %s does not exist and creating it needs CAP_NET_ADMIN: "
			  "create it first (ip tuntap add dev %s mode tap user $(id -u); ip "
			  "link set %s up)",
			  id, tap, tap, tap);
	else if (error == EPERM)
		log_error("net '%s': not allowed to use TAP %s: it belongs to another user or "
			  "group (recreate it with ip tuntap add dev %s mode tap user $(id -u))",
			  id, tap, tap);
	else if (error == EBUSY)
		log_error("net '%s': TAP %s is already in use (by another VMM, or another "
			  "--net of this one)",
			  id, tap);
	else if (error == EINVAL && exists)
		log_error("net '%s': %s is not a single-queue TAP interface (a TUN, multi-queue, "
			  "or not a tun/tap device at all)",
			  id, tap);
	else
		log_error("net '%s': cannot attach to TAP %s: %s", id, tap, strerror(error));
}

int net_create(struct net_device **out, const struct net_config *config, const struct gmem *mem)
{
	/* Old kernels refuse UFO, very old ones every offload: the best the TAP takes. */
	static const unsigned int tries[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO,
					     TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, 0};
	const char *id = config->id;
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
	int hdr_len = VIRTIO_NET_HDR_LEN, fd, err;
	unsigned int offloads = 0;

	if (!*config->tap || strlen(config->tap) >= IFNAMSIZ) {
		log_error("net '%s': TAP name '%s' must have 1 to %d characters", id, config->tap,
			  IFNAMSIZ - 1);
		return -EINVAL;
	}
	memcpy(ifr.ifr_name, config->tap, strlen(config->tap) + 1);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("net '%s': cannot open /dev/net/tun: %s (%s)", id, strerror(errno),
			  errno == ENOENT ? "load the tun module: modprobe tun"
					  : "wisp needs read-write access to it");
		return err;
	}
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		err = -errno;
		log_tap_error(id, config->tap, errno);
		goto fail;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		err = -errno;
		log_error("net '%s': TAP %s refuses a %d-byte vnet header: %s", id, config->tap,
			  hdr_len, strerror(errno));
		goto fail;
	}
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) {
			offloads = tries[i];
			break;
		}
	}
	/* Off until the driver says what it takes: frames queued until then suit any. */
	if (offloads && ioctl(fd, TUNSETOFFLOAD, 0UL) < 0) {
		err = -errno;
		log_error("net '%s': cannot turn TAP %s's offloads off: %s", id, config->tap,
			  strerror(errno));
		goto fail;
	}
	err = net_create_on_fd(out, fd, config, mem, offloads);
	if (err)
		goto fail;
	log_debug("net '%s': TAP %s, offloads %#x", id, config->tap, offloads);
	return 0;

fail:
	close(fd);
	return err;
}

void net_destroy(struct net_device *net)
{
	if (!net)
		return;
	if (net->loop && !net->tap_gone)
		event_loop_remove(net->loop, net->fd);
	if (net->loop) {
		event_loop_remove(net->loop, rate_limiter_timer_fd(&net->rx_limiter));
		event_loop_remove(net->loop, rate_limiter_timer_fd(&net->tx_limiter));
	}
	rate_limiter_close_timer(&net->rx_limiter);
	rate_limiter_close_timer(&net->tx_limiter);
	close(net->fd);
	pthread_mutex_destroy(&net->vdev.lock);
	free(net->frame);
	free(net);
}

struct virtio_device *net_virtio(struct net_device *net)
{
	return &net->vdev;
}

struct net_device *net_from_virtio(struct virtio_device *dev)
{
	return dev->ops == &net_ops ? to_net(dev) : NULL;
}

struct net_metrics *net_metrics(struct net_device *net)
{
	return &net->metrics;
}

void net_mac(const struct net_device *net, uint8_t mac[6])
{
	memcpy(mac, net->mac, 6);
}

unsigned int net_tap_offloads(const struct net_device *net)
{
	return net->tap_offloads;
}

unsigned int net_active_offloads(const struct net_device *net)
{
	return net->offloads;
}

struct rate_limiter *net_rate_limiter(struct net_device *net, unsigned int queue)
{
	return queue == VIRTIO_NET_TX_QUEUE ? &net->tx_limiter : &net->rx_limiter;
}
