/*
 * virtio-net (virtio 1.2, 5.1) over a host TAP interface, modelled on Firecracker's net
 * device: one receive queue (0) and one transmit queue (1), the TAP opened with a 12-byte
 * vnet header so checksum and segmentation offloads pass between guest and host as they
 * are, and the TAP's offloads set to exactly what the driver accepted.
 *
 * Threads: the guest's register accesses arrive on vCPU threads; queue notifications and
 * the TAP's readiness (registered in `attach`) on the VMM thread. dev->lock covers all of it.
 *
 * Rate limiting (Firecracker's): a frame costs one op and its length, vnet header included,
 * in bytes, from the tx limiter before it goes to the TAP and from the rx limiter before it
 * goes to the guest. A frame refused stays (in the ring for tx, in the device for rx) and
 * that direction waits for its limiter's timer; rx stops reading the TAP meanwhile.
 *
 * Snapshots: the device part is the MAC and the negotiated offloads (re-applied to the TAP
 * on restore). Between events the device keeps no chain popped and unused, so the queues'
 * state says it all; a frame waiting for receive buffers or for the rx limiter at the time
 * is lost, as on a wire. The limiters' tokens are not saved: after a restore they start full.
 */
#ifndef WISP_VIRTIO_NET_H
#define WISP_VIRTIO_NET_H

#include "../../config.h"
#include "../../failure.h"
#include "../../memory.h"
#include "virtio.h"

#include <stdatomic.h>
#include <stdint.h>

#define VIRTIO_NET_QUEUE_SIZE 256
#define VIRTIO_NET_RX_QUEUE   0
#define VIRTIO_NET_TX_QUEUE   1

/* Feature bit numbers */
#define VIRTIO_NET_F_CSUM	0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC	5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_UFO	10
#define VIRTIO_NET_F_HOST_TSO4	11
#define VIRTIO_NET_F_HOST_TSO6	12
#define VIRTIO_NET_F_HOST_UFO	14
#define VIRTIO_NET_F_MRG_RXBUF	15

/* virtio_net_hdr flags and gso_type values */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE	    0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_UDP	    3
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_HDR_GSO_ECN	    0x80
#define VIRTIO_NET_S_LINK_UP	    1

/* The header in front of every frame, both ways (little-endian). With VERSION_1 it always
 * has num_buffers, so it is 12 bytes whether or not MRG_RXBUF is negotiated. */
struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));

#define VIRTIO_NET_HDR_LEN sizeof(struct virtio_net_hdr_v1)
/* The largest header + frame either way: a 64 KiB GSO frame with its Ethernet header
 * (Firecracker's MAX_BUFFER_SIZE). */
#define VIRTIO_NET_MAX_FRAME 65562

/* The configuration space (status is LINK_UP; F_STATUS is not offered, so the driver
 * treats the link as always up anyway). */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
} __attribute__((packed));

/* Firecracker's net metrics, as far as wisp has them. Bytes count frames without the
 * vnet header. rx_dropped: frames from the TAP the guest could not be given (too large
 * for its buffers, or an offload it did not accept); tx_malformed_frames: chains the
 * driver got wrong (writable parts, shorter than the header, longer than the maximum).
 * {rx,tx}_rate_limiter_throttled: each time the limiter refused a frame (the same frame
 * may count more than once). tap_{read,write}_fails: the TAP refused a read or a write
 * (as Firecracker counts them; also in rx_fails/tx_fails, as before), e.g. once the
 * interface was deleted. */
struct net_metrics {
	_Atomic uint64_t rx_bytes_count;
	_Atomic uint64_t tx_bytes_count;
	_Atomic uint64_t rx_packets_count;
	_Atomic uint64_t tx_packets_count;
	_Atomic uint64_t rx_fails;
	_Atomic uint64_t tx_fails;
	_Atomic uint64_t tx_malformed_frames;
	_Atomic uint64_t rx_dropped;
	_Atomic uint64_t rx_rate_limiter_throttled;
	_Atomic uint64_t tx_rate_limiter_throttled;
	_Atomic uint64_t tap_read_fails;
	_Atomic uint64_t tap_write_fails;
};

struct net_device;
struct rate_limiter;

/* Attaches to the existing TAP interface config->tap (opening /dev/net/tun; creating the
 * interface would need CAP_NET_ADMIN) and sets the device up; the config's strings are
 * copied. Without config->has_mac the MAC is random, locally administered. Returns 0 or
 * -errno, having logged which interface failed, why and what to do; a TAP name or device
 * that cannot be used blames the input in *origin (may be NULL). */
int net_create(struct net_device **out, const struct net_config *config, const struct gmem *mem,
	       enum failure_origin *origin);
/* The same over an fd already open: a TAP as net_create leaves it (IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, 12-byte header, offloads off), or in tests a SOCK_SEQPACKET socket whose
 * messages are header + frame. `offloads` (TUN_F_*) is what the TAP accepts; 0 for a
 * socket, so that TUNSETOFFLOAD is never tried. The device owns fd once this succeeds;
 * it makes it non-blocking. */
int net_create_on_fd(struct net_device **out, int fd, const struct net_config *config,
		     const struct gmem *mem, unsigned int offloads);
/* Stops watching the TAP and frees everything (the event loop must still exist). */
void net_destroy(struct net_device *net);

/* The embedded transport device (its first member) and back. */
struct virtio_device *net_virtio(struct net_device *net);
struct net_device *net_from_virtio(struct virtio_device *dev);
struct net_metrics *net_metrics(struct net_device *net);
void net_mac(const struct net_device *net, uint8_t mac[6]);
/* TUN_F_* the TAP accepted when it was opened, and those in force now (what the driver
 * negotiated; 0 before it did). */
unsigned int net_tap_offloads(const struct net_device *net);
unsigned int net_active_offloads(const struct net_device *net);

/* What `attach` hooks to the TAP fd: EPOLLIN receives, EPOLLOUT resumes transmission,
 * EPOLLERR/EPOLLHUP (the interface went away) stop watching it. Takes dev->lock. VMM
 * thread; tests call it directly. */
void net_handle_tap(struct net_device *net, uint32_t events);

/* PATCH /network-interfaces: replaces the buckets whose configuration changes (they start
 * full) of the rx and/or tx limiter (NULL: unchanged) and retries what they held back.
 * 0 (nothing can fail yet). VMM thread; takes dev->lock. */
int net_update_rate_limiters(struct net_device *net, const struct rate_limiter_config *rx,
			     const struct rate_limiter_config *tx);
/* What `attach` hooks to the timerfd of queue's limiter (VIRTIO_NET_RX_QUEUE or
 * VIRTIO_NET_TX_QUEUE): takes dev->lock, resumes that direction. VMM thread; tests call it
 * directly. */
void net_handle_rate_limiter(struct net_device *net, unsigned int queue);
/* The queue's limiter, for tests to set its clock; use it under dev->lock. */
struct rate_limiter *net_rate_limiter(struct net_device *net, unsigned int queue);

#endif
