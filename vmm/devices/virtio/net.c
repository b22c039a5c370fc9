#include "net_internal.h"

#include "../../log.h"
#include "../../rate_limiter.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#define NET_STATE_VERSION 1
#define BIT(n)		  (1ULL << (n))

/* What became of the frame in net->tx_chain. */
enum tx_result {
	TX_DONE,      /* sent or dropped */
	TX_TAP_FULL,  /* EPOLLOUT resumes */
	TX_THROTTLED, /* the rate limiter's timer resumes */
};

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
void net_watch(struct net_device *net)
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

void net_tap_lost(struct net_device *net, const char *why)
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

const struct net_gso_offload net_gso_offloads[] = {
    {TUN_F_TSO4, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_HDR_GSO_TCPV4},
    {TUN_F_TSO6, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_HDR_GSO_TCPV6},
    {TUN_F_UFO, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_HDR_GSO_UDP},
};
_Static_assert(sizeof(net_gso_offloads) / sizeof(net_gso_offloads[0]) == NR_GSO_OFFLOADS,
	       "net_rx.c counts NR_GSO_OFFLOADS of them");

/* Segmentation builds on checksum offload, for the TAP as in virtio (5.1.3.1). */
static unsigned int offloads_for(uint64_t driver_features)
{
	unsigned int offloads = TUN_F_CSUM;

	if (!(driver_features & BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	for (size_t i = 0; i < NR_GSO_OFFLOADS; i++)
		if (driver_features & BIT(net_gso_offloads[i].guest))
			offloads |= net_gso_offloads[i].tun;
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
		if (tap_offloads & net_gso_offloads[i].tun)
			features |= BIT(net_gso_offloads[i].guest) | BIT(net_gso_offloads[i].host);
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
bool net_admit(struct rate_limiter *limiter, uint32_t len, _Atomic uint64_t *throttled)
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
	if (!net->tx_paid && !net_admit(&net->tx_limiter, chain->readable_len,
					&net->metrics.tx_rate_limiter_throttled))
		return TX_THROTTLED;
	net->tx_paid = true;
	sent = writev(net->fd, chain->iov, (int)chain->nr_readable);
	if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return TX_TAP_FULL;
	net->tx_paid = false;
	if (sent < 0) {
		atomic_fetch_add(&net->metrics.tx_fails, 1);
		atomic_fetch_add(&net->metrics.tap_write_fails, 1);
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
	net_watch(net);
	if (vq->state.used_idx != used)
		virtio_notify_used(&net->vdev, VIRTIO_NET_TX_QUEUE);
}

/* ---- events ---- */

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
			net_process_rx(net);
	}
	if (events & (EPOLLERR | EPOLLHUP))
		net_tap_lost(net, "hung up or went away");
	net_watch(net);
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
			net_process_rx(net); /* the frame held back first */
	}
	net_watch(net);
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
			net_process_rx(net);
	}
	net_watch(net);
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
	net_watch(net);
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
			net_process_rx(net);
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
	net_watch(net);
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

static int net_restore_check(struct virtio_device *dev, const void *buf, size_t size)
{
	struct net_device *net = to_net(dev);
	struct net_state state;

	if (size < sizeof(state))
		return -EINVAL;
	memcpy(&state, buf, sizeof(state));
	if (state.version != NET_STATE_VERSION || (state.offloads & ~net->tap_offloads)) {
		log_error("net '%s': snapshot state version %u with offloads %#x, but TAP %s "
			  "takes %#x",
			  net->id, state.version, state.offloads, net->tap, net->tap_offloads);
		return -EINVAL;
	}
	return 0;
}

static int net_restore(struct virtio_device *dev, const void *buf, size_t size)
{
	struct net_device *net = to_net(dev);
	struct net_state state;
	int err = net_restore_check(dev, buf, size);

	if (err)
		return err;
	memcpy(&state, buf, sizeof(state));
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
	net_watch(net);
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
    .restore_check = net_restore_check,
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
	pthread_cond_destroy(&net->vdev.io_done);
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
