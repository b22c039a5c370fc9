/*
 * What the parts of virtio-net share, for them alone (net.h is the interface): net.c is the
 * device (features and offloads, transmit, the TAP's and the limiters' events, snapshots,
 * lifetime), net_rx.c the receive path. net_tap.c, which opens the TAP, needs only net.h.
 */
#ifndef WISP_VIRTIO_NET_INTERNAL_H
#define WISP_VIRTIO_NET_INTERNAL_H

#include "net.h"

#include "../../rate_limiter.h"

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Each segmentation offload: the TAP's flag, the feature for frames to the guest (the TAP
 * produces them), the one for frames from it (the TAP takes them), its gso_type. */
struct net_gso_offload {
	unsigned int tun, guest, host;
	uint8_t gso_type;
};
/* The table is net.c's, which checks this count: net_rx.c cannot size it from here. */
#define NR_GSO_OFFLOADS 3
extern const struct net_gso_offload net_gso_offloads[];

static inline struct virtqueue *rx_queue(struct net_device *net)
{
	return &net->vdev.queues[VIRTIO_NET_RX_QUEUE];
}

static inline struct virtqueue *tx_queue(struct net_device *net)
{
	return &net->vdev.queues[VIRTIO_NET_TX_QUEUE];
}

/* net.c: the TAP's event mask and its loss, and the limiters' price of a frame. */
void net_watch(struct net_device *net);
void net_tap_lost(struct net_device *net, const char *why);
bool net_admit(struct rate_limiter *limiter, uint32_t len, _Atomic uint64_t *throttled);

/* net_rx.c */
void net_process_rx(struct net_device *net);

#endif
