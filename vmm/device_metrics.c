#include "device_metrics.h"

#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

static void report_blk(void *opaque, struct metrics_section *section)
{
	struct blk_device *blk = opaque;
	struct blk_metrics *m = blk_metrics(blk);

	metrics_counter(section, "read_bytes", atomic_load(&m->read_bytes));
	metrics_counter(section, "write_bytes", atomic_load(&m->write_bytes));
	metrics_counter(section, "read_count", atomic_load(&m->read_count));
	metrics_counter(section, "write_count", atomic_load(&m->write_count));
	metrics_counter(section, "flush_count", atomic_load(&m->flush_count));
	metrics_counter(section, "execute_fails", atomic_load(&m->io_errors));
	metrics_counter(section, "invalid_reqs_count", atomic_load(&m->invalid_requests));
	metrics_counter(section, "rate_limiter_throttled_events",
			atomic_load(&m->rate_limiter_throttled_events));
	/* not in Firecracker: a hostile or broken driver made the device need a reset */
	metrics_counter(section, "device_needs_reset_count",
			atomic_load(&blk_virtio(blk)->needs_reset_events));
}

static void report_net(void *opaque, struct metrics_section *section)
{
	struct net_device *net = opaque;
	struct net_metrics *m = net_metrics(net);

	metrics_counter(section, "rx_bytes_count", atomic_load(&m->rx_bytes_count));
	metrics_counter(section, "tx_bytes_count", atomic_load(&m->tx_bytes_count));
	metrics_counter(section, "rx_packets_count", atomic_load(&m->rx_packets_count));
	metrics_counter(section, "tx_packets_count", atomic_load(&m->tx_packets_count));
	metrics_counter(section, "rx_fails", atomic_load(&m->rx_fails));
	metrics_counter(section, "tx_fails", atomic_load(&m->tx_fails));
	metrics_counter(section, "tap_read_fails", atomic_load(&m->tap_read_fails));
	metrics_counter(section, "tap_write_fails", atomic_load(&m->tap_write_fails));
	metrics_counter(section, "tx_malformed_frames", atomic_load(&m->tx_malformed_frames));
	metrics_counter(section, "rx_rate_limiter_throttled",
			atomic_load(&m->rx_rate_limiter_throttled));
	metrics_counter(section, "tx_rate_limiter_throttled",
			atomic_load(&m->tx_rate_limiter_throttled));
	metrics_counter(section, "device_needs_reset_count",
			atomic_load(&net_virtio(net)->needs_reset_events));
}

static int register_section(const char *kind, const char *id, metrics_report_fn report,
			    void *opaque)
{
	char name[METRICS_SECTION_NAME_MAX];
	int err;

	snprintf(name, sizeof(name), "%s_%s", kind, id);
	err = metrics_register(name, kind, report, opaque);
	if (err)
		log_error("metrics: cannot add the section %s: %s", name, strerror(-err));
	return err;
}

int device_metrics_register_blk(const char *id, struct blk_device *blk)
{
	return register_section("block", id, report_blk, blk);
}

int device_metrics_register_net(const char *id, struct net_device *net)
{
	return register_section("net", id, report_net, net);
}
