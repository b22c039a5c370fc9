#include "net_internal.h"

#include "../../log.h"

#include <endian.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define RX_BUDGET 64 /* frames per TAP event: a busy TAP must not starve the loop */

/* What one receive step did. */
enum rx_result {
	RX_FRAME,      /* a frame is in net->frame, ready to deliver */
	RX_DONE,       /* a frame was delivered or dropped: go on */
	RX_TAP_EMPTY,  /* nothing (more) to read */
	RX_NO_BUFFERS, /* the driver has to add buffers first */
	RX_THROTTLED,  /* the rate limiter holds the frame (in net->frame) back */
	RX_BROKEN,     /* the receive queue is broken */
};

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
		if (hdr->gso_type == net_gso_offloads[i].gso_type)
			needs = net_gso_offloads[i].tun;
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
		net_tap_lost(net, "was closed");
	} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
		atomic_fetch_add(&net->metrics.rx_fails, 1);
		atomic_fetch_add(&net->metrics.tap_read_fails, 1);
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
	if (!net_admit(&net->rx_limiter, (uint32_t)len, &net->metrics.rx_rate_limiter_throttled)) {
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
	if (!net_admit(&net->rx_limiter, net->frame_len, &net->metrics.rx_rate_limiter_throttled)) {
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
	if (!net_admit(&net->rx_limiter, len, &net->metrics.rx_rate_limiter_throttled)) {
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

void net_process_rx(struct net_device *net)
{
	struct virtqueue *vq = rx_queue(net);
	uint16_t used = vq->state.used_idx;

	for (unsigned int budget = RX_BUDGET; budget && !net->rx_stopped && !net->tap_gone;
	     budget--) {
		enum rx_result r = rx_frame(net);
		if (r == RX_DONE)
			continue;
		if (r == RX_TAP_EMPTY || r == RX_THROTTLED)
			break; /* throttled: net_watch() stops reading until the limiter's timer */
		if (r == RX_BROKEN) {
			virtio_queue_failed(&net->vdev, VIRTIO_NET_RX_QUEUE);
			net->rx_stopped = true;
			break;
		}
		/* No buffers (a kick is asked for): stop reading the TAP until it comes,
		 * rather than spin on a TAP that stays readable. */
		net->rx_stopped = true;
	}
	net_watch(net);
	if (vq->state.used_idx != used)
		virtio_notify_used(&net->vdev, VIRTIO_NET_RX_QUEUE);
}
