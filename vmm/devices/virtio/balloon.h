/*
 * virtio-balloon (virtio 1.2, 5.5) with Firecracker's semantics: the host sets a target
 * (num_pages), the guest's driver gives pages to the balloon (inflate) and takes them
 * back (deflate), writing how many it holds in `actual`.
 *
 * Queues, in the order the driver finds them (virtio-mmio numbers only the ones whose
 * feature was negotiated): inflate, deflate, then statistics (VIRTIO_BALLOON_F_STATS_VQ,
 * offered when stats_polling_interval_s > 0), then free page reporting
 * (VIRTIO_BALLOON_F_REPORTING). Free page hinting is not offered.
 *
 * Every PFN the guest sends is untrusted: one outside guest RAM, in the 32-bit gap,
 * repeated within a request, or beyond what the target asks for is counted, logged
 * (rate-limited) and skipped. Accepted inflated pages and reported free ranges are given
 * back to the host with madvise(MADV_DONTNEED): anonymous memory returns to the host; in
 * a VM restored from a MAP_PRIVATE memory file the page falls back to the file's clean
 * page; with the Uffd backend the kernel tells the handler (UFFD_EVENT_REMOVE). Deflate
 * only counts: the guest's next touch of the page brings it back.
 *
 * Statistics as Firecracker keeps them: the driver's buffer is parsed and held, and given
 * back on the polling timer (a timerfd on the VMM thread's loop), so the driver refills it.
 */
#ifndef WISP_VIRTIO_BALLOON_H
#define WISP_VIRTIO_BALLOON_H

#include "../../config.h"
#include "../../memory.h"
#include "virtio.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Feature bits */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ	1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON	4
#define VIRTIO_BALLOON_F_REPORTING	5

#define VIRTIO_BALLOON_PFN_SHIFT  12 /* balloon PFNs are 4 KiB whatever the guest's page */
#define VIRTIO_BALLOON_PAGE_SIZE  (1u << VIRTIO_BALLOON_PFN_SHIFT)
#define VIRTIO_BALLOON_QUEUE_SIZE 256
#define BALLOON_PAGES_PER_MIB	  (1u << (20 - VIRTIO_BALLOON_PFN_SHIFT))

/* The statistics tags (virtio 1.2, 5.5.6.3), in the order Firecracker names them. */
enum balloon_stat_tag {
	BALLOON_STAT_SWAP_IN = 0,
	BALLOON_STAT_SWAP_OUT = 1,
	BALLOON_STAT_MAJOR_FAULTS = 2,
	BALLOON_STAT_MINOR_FAULTS = 3,
	BALLOON_STAT_FREE_MEMORY = 4,
	BALLOON_STAT_TOTAL_MEMORY = 5,
	BALLOON_STAT_AVAILABLE_MEMORY = 6,
	BALLOON_STAT_DISK_CACHES = 7,
	BALLOON_STAT_HUGETLB_ALLOCATIONS = 8,
	BALLOON_STAT_HUGETLB_FAILURES = 9,
	BALLOON_STAT_OOM_KILL = 10,
	BALLOON_STAT_ALLOC_STALL = 11,
	BALLOON_STAT_ASYNC_SCAN = 12,
	BALLOON_STAT_DIRECT_SCAN = 13,
	BALLOON_STAT_ASYNC_RECLAIM = 14,
	BALLOON_STAT_DIRECT_RECLAIM = 15,
	BALLOON_NR_STATS = 16,
};

/* One entry of the driver's statistics buffer (little-endian, packed). */
struct virtio_balloon_stat {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

/* At most this many entries in one statistics buffer: the driver sends each tag once. */
#define BALLOON_STATS_MAX_ENTRIES 64

/* What GET /balloon/statistics reports: the target and actual size, and the guest's
 * latest values, each only if its bit in `present` is set (the guest sent it). */
struct balloon_stats {
	uint32_t target_pages;
	uint32_t actual_pages;
	uint32_t present; /* bit i: values[i] came from the guest */
	uint64_t values[BALLOON_NR_STATS];
};

/* Firecracker's balloon metrics, and wisp's counts of the guest's refused PFNs. */
struct balloon_metrics {
	_Atomic uint64_t activate_fails;
	_Atomic uint64_t inflate_count; /* inflate requests */
	_Atomic uint64_t deflate_count; /* deflate requests */
	_Atomic uint64_t stats_updates_count;
	_Atomic uint64_t stats_update_fails;
	_Atomic uint64_t event_fails; /* madvise or timer failures */
	_Atomic uint64_t free_page_report_count;
	_Atomic uint64_t free_page_report_freed; /* bytes */
	_Atomic uint64_t free_page_report_fails;
	/* not in Firecracker: PFNs refused, and pages released by inflation */
	_Atomic uint64_t pfn_outside_ram;
	_Atomic uint64_t pfn_in_gap;
	_Atomic uint64_t pfn_duplicate;
	_Atomic uint64_t pfn_over_target;
	_Atomic uint64_t deflate_not_inflated;
	_Atomic uint64_t malformed_requests;
	_Atomic uint64_t inflated_pages_released;
};

struct balloon_device;

/* Sets the device up from its configuration (configured must be true); its stats
 * timer (a timerfd) when statistics are enabled. 0 or -errno, logged. */
int balloon_create(struct balloon_device **out, const struct balloon_config *config,
		   const struct gmem *mem);
void balloon_destroy(struct balloon_device *balloon);

/* The embedded transport device: its first member. */
struct virtio_device *balloon_virtio(struct balloon_device *balloon);
struct balloon_metrics *balloon_metrics(struct balloon_device *balloon);

/* PATCH /balloon: the new target, and a configuration interrupt. -ENODEV when the driver
 * has not activated the device (Firecracker's DeviceNotActive). Takes dev->lock. */
int balloon_set_target(struct balloon_device *balloon, uint32_t amount_mib);
/* PATCH /balloon/statistics: gives the held buffer back at once (a fresh update) and
 * polls every interval_s from then on. -EINVAL when statistics would be turned on or off
 * (interval 0, or a device without them). Takes dev->lock. */
int balloon_set_stats_interval(struct balloon_device *balloon, uint16_t interval_s);
/* GET /balloon/statistics: the latest values. Takes dev->lock. */
void balloon_get_stats(struct balloon_device *balloon, struct balloon_stats *stats);
/* Pages the device accepted from inflation and has not seen deflated. Takes dev->lock. */
uint32_t balloon_inflated_pages(struct balloon_device *balloon);
/* The polling timer's work: gives the held statistics buffer back to the driver. What
 * `attach` hooks to the timerfd; tests call it directly. Takes dev->lock. */
void balloon_poll_stats(struct balloon_device *balloon);

/* Parses a statistics buffer of `len` bytes into stats->values/present (the other
 * fields untouched); unknown tags are skipped. -EINVAL (stats unchanged) when len is not
 * a whole number of entries or holds more than BALLOON_STATS_MAX_ENTRIES. Pure. */
int balloon_stats_parse(const void *buf, size_t len, struct balloon_stats *stats);

#endif
