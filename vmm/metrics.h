/*
 * Firecracker-compatible metrics: one JSON object per line, written to the file or FIFO
 * that PUT /metrics names, on each flush (every METRICS_FLUSH_PERIOD_MS and on the
 * FlushMetrics action).
 *
 * Two kinds of metric, as in Firecracker: counters (its SharedIncMetric) are written as
 * the delta since the last line that was written; stores (SharedStoreMetric) as their
 * current value.
 *
 * Two sources of metrics:
 *  - the fixed sections below (API requests, vCPU exits, latencies, logger, signals...):
 *    globals that any thread bumps with metrics_inc() / metrics_store(), e.g.
 *    metrics_inc(&metrics.api.put.drive_count);
 *  - sections that devices register when the VM is built ("block_rootfs", "net_eth0",
 *    "uart"...): a callback reports the absolute values of the device's own monotonic
 *    counters with metrics_counter(); this module keeps the values it last wrote and
 *    computes the deltas, and sums the deltas of the sections registered with the same
 *    `aggregate_into` ("block", "net") into that section.
 *
 * Threads: metrics_flush() runs on the VMM thread and registration before the vCPUs run,
 * both under one lock; the fixed metrics are lock-free atomics, to bump from any thread
 * or signal handler.
 */
#ifndef WISP_METRICS_H
#define WISP_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_FLUSH_PERIOD_MS 60000
/* Registered sections, counters a section's callback may report, and their names'
 * lengths with the NUL (a section is "block_" or "net_" and a 63-character id). */
#define METRICS_MAX_SECTIONS	    64
#define METRICS_MAX_COUNTERS	    48
#define METRICS_SECTION_NAME_MAX    96
#define METRICS_COUNTER_NAME_MAX    48
#define METRICS_DEFAULT_PERMISSIONS 0600

typedef _Atomic uint64_t metrics_counter_t;

/* Firecracker's LatencyAggregateMetrics: min and max are stores, sum_us a counter. */
struct metrics_latency {
	metrics_counter_t min_us;
	metrics_counter_t max_us;
	metrics_counter_t sum_us;
};

/*
 * The fixed sections, each a list of X(KIND, name) with KIND one of COUNTER, STORE and
 * LATENCY: the struct below and the serialiser are both generated from these lists, so a
 * metric added here is written out without further code. Names are Firecracker's, and
 * each is counted where Firecracker counts it: a metric of Firecracker's whose event wisp
 * does not have (snapshots, seccomp, deprecated API fields, panics, the deadly signals'
 * handlers) is left out rather than written as a 0 that means nothing.
 * tests/unit/test_metrics.c lists where each one is counted.
 */

/* From wisp's start to the API socket's being ready: wall time (CLOCK_MONOTONIC) and the
 * process's CPU time. Not set without --api-sock, as in Firecracker. */
#define METRICS_API_SERVER(X)                                                                      \
	X(STORE, process_startup_time_us)                                                          \
	X(STORE, process_startup_time_cpu_us)

/* GET /, GET /machine-config, GET /version (GET /vm/config has no Firecracker metric) */
#define METRICS_GET_API_REQUESTS(X)                                                                \
	X(COUNTER, instance_info_count)                                                            \
	X(COUNTER, machine_cfg_count)                                                              \
	X(COUNTER, vmm_version_count)

#define METRICS_PUT_API_REQUESTS(X)                                                                \
	X(COUNTER, actions_count)                                                                  \
	X(COUNTER, actions_fails)                                                                  \
	X(COUNTER, boot_source_count)                                                              \
	X(COUNTER, boot_source_fails)                                                              \
	X(COUNTER, drive_count)                                                                    \
	X(COUNTER, drive_fails)                                                                    \
	X(COUNTER, logger_count)                                                                   \
	X(COUNTER, logger_fails)                                                                   \
	X(COUNTER, machine_cfg_count)                                                              \
	X(COUNTER, machine_cfg_fails)                                                              \
	X(COUNTER, metrics_count)                                                                  \
	X(COUNTER, metrics_fails)                                                                  \
	X(COUNTER, network_count)                                                                  \
	X(COUNTER, network_fails)                                                                  \
	X(COUNTER, serial_count)                                                                   \
	X(COUNTER, serial_fails)

/* PATCH /vm (pause, resume) has no Firecracker metric */
#define METRICS_PATCH_API_REQUESTS(X)                                                              \
	X(COUNTER, drive_count)                                                                    \
	X(COUNTER, drive_fails)                                                                    \
	X(COUNTER, network_count)                                                                  \
	X(COUNTER, network_fails)                                                                  \
	X(COUNTER, machine_cfg_count)                                                              \
	X(COUNTER, machine_cfg_fails)

/* Durations in microseconds of the last successful PATCH /vm: pause_vm and resume_vm the
 * request's handling (api.c), vmm_* the VMM's action alone (controller.c). The snapshot
 * latencies come with snapshots. */
#define METRICS_LATENCIES_US(X)                                                                    \
	X(STORE, pause_vm)                                                                         \
	X(STORE, resume_vm)                                                                        \
	X(STORE, vmm_pause_vm)                                                                     \
	X(STORE, vmm_resume_vm)                                                                    \
	X(STORE, vmm_full_create_snapshot)                                                         \
	X(STORE, vmm_diff_create_snapshot)                                                         \
	X(STORE, vmm_load_snapshot)

/* missed_*: lines not written (a full FIFO included); metrics_fails: lines not written
 * for any other reason than a full FIFO. missed_log_count is log.c's own count, copied
 * in at each flush (log.c stays free of this module: the fuzzers link it alone). */
#define METRICS_LOGGER(X)                                                                          \
	X(COUNTER, missed_metrics_count)                                                           \
	X(COUNTER, metrics_fails)                                                                  \
	X(COUNTER, missed_log_count)

/* Exits by kind, counted after the bus handled them (failures: any other exit, which
 * ends the VM), and the time the bus took for each kind, in microseconds. */
#define METRICS_VCPU(X)                                                                            \
	X(COUNTER, exit_io_in)                                                                     \
	X(COUNTER, exit_io_out)                                                                    \
	X(COUNTER, exit_mmio_read)                                                                 \
	X(COUNTER, exit_mmio_write)                                                                \
	X(COUNTER, failures)                                                                       \
	X(LATENCY, exit_io_in_agg)                                                                 \
	X(LATENCY, exit_io_out_agg)                                                                \
	X(LATENCY, exit_mmio_read_agg)                                                             \
	X(LATENCY, exit_mmio_write_agg)

/* SIGPIPE is survived and counted (main.c's handler); SIGHUP ends wisp and is a store (0 or
 * 1), as in Firecracker. */
#define METRICS_SIGNALS(X)                                                                         \
	X(COUNTER, sigpipe)                                                                        \
	X(STORE, sighup)

#define METRICS_TYPE_COUNTER		  metrics_counter_t
#define METRICS_TYPE_STORE		  metrics_counter_t
#define METRICS_TYPE_LATENCY		  struct metrics_latency
#define METRICS_DECLARE_FIELD(kind, name) METRICS_TYPE_##kind name;

struct wisp_metrics {
	struct {
		METRICS_API_SERVER(METRICS_DECLARE_FIELD)
	} api_server;
	struct {
		struct {
			METRICS_GET_API_REQUESTS(METRICS_DECLARE_FIELD)
		} get;
		struct {
			METRICS_PUT_API_REQUESTS(METRICS_DECLARE_FIELD)
		} put;
		struct {
			METRICS_PATCH_API_REQUESTS(METRICS_DECLARE_FIELD)
		} patch;
	} api;
	struct {
		METRICS_LATENCIES_US(METRICS_DECLARE_FIELD)
	} latencies_us;
	struct {
		METRICS_LOGGER(METRICS_DECLARE_FIELD)
	} logger;
	struct {
		METRICS_VCPU(METRICS_DECLARE_FIELD)
	} vcpu;
	struct {
		METRICS_SIGNALS(METRICS_DECLARE_FIELD)
	} signals;
};

extern struct wisp_metrics metrics;

static inline void metrics_add(metrics_counter_t *counter, uint64_t value)
{
	atomic_fetch_add_explicit(counter, value, memory_order_relaxed);
}

static inline void metrics_inc(metrics_counter_t *counter)
{
	metrics_add(counter, 1);
}

static inline void metrics_store(metrics_counter_t *store, uint64_t value)
{
	atomic_store_explicit(store, value, memory_order_relaxed);
}

/* Adds one sample to a latency aggregate: sum, and min and max over wisp's lifetime. */
void metrics_latency_record(struct metrics_latency *latency, uint64_t us);

/* CLOCK_MONOTONIC in microseconds, Firecracker's clock for latencies. */
uint64_t metrics_monotonic_us(void);
/* The CPU time this process has used, in microseconds. */
uint64_t metrics_process_cpu_us(void);
/* Stores the microseconds since start_us (metrics_monotonic_us) in `store`; returns them. */
uint64_t metrics_store_elapsed_us(metrics_counter_t *store, uint64_t start_us);

/* ---- sections registered by devices ---- */

struct metrics_section;

/* Reports the section's counters by calling metrics_counter() for each, every time with
 * the absolute value since the device was created (atomic loads of the device's own
 * counters). Runs on the VMM thread, with the registry locked: it must not register. */
typedef void (*metrics_report_fn)(void *opaque, struct metrics_section *section);

/* Called from a metrics_report_fn. A counter reported for the first time is added after
 * those reported before; a name longer than METRICS_COUNTER_NAME_MAX - 1 or a counter
 * past METRICS_MAX_COUNTERS is dropped and counted in logger.metrics_fails. */
void metrics_counter(struct metrics_section *section, const char *name, uint64_t value);

/*
 * Adds section `name`, reported by `report`, and summed into section `aggregate_into`
 * (NULL: none) which is created on first use and written after the sections that feed
 * it. A section may both report and be an aggregate (its own deltas are summed with its
 * contributors'), but aggregation is one level deep. The strings are copied.
 * Returns 0, -EINVAL (empty name, no callback, aggregating into itself or into a section
 * that itself aggregates), -ENAMETOOLONG, -EEXIST (the name is taken, by a fixed section
 * too), -ENOSPC (METRICS_MAX_SECTIONS reached) or -ENOMEM.
 */
int metrics_register(const char *name, const char *aggregate_into, metrics_report_fn report,
		     void *opaque);

/*
 * Opens the metrics file or FIFO (created 0600 if missing). Once only, as in Firecracker:
 * -EBUSY after a success. A FIFO is opened read-write, as Firecracker does, so that the
 * open succeeds before a reader comes and writes never raise SIGPIPE. Returns 0 or
 * -errno with a message in err.
 */
int metrics_set_output(const char *path, char *err, size_t err_size);

/*
 * Writes one line, stamped utc_ms; nothing (0) before metrics_set_output. Never blocks:
 * a full FIFO refuses the line (-EAGAIN, counted in logger.missed_metrics_count), a write
 * error too (-errno, also in logger.metrics_fails). A line refused loses nothing: the
 * next line written carries the deltas since the last one that was. A line that a FIFO
 * took only part of (lines can be longer than PIPE_BUF) is kept, and its end written
 * before anything else at the next flush, so that readers only ever see whole lines.
 */
int metrics_flush(uint64_t utc_ms);

/* The line metrics_flush would write, without writing it or moving the deltas' baseline;
 * NULL when out of memory. The caller frees it. */
char *metrics_render(uint64_t utc_ms);

/* Firecracker's SIGPIPE handling: a handler that counts signals.sigpipe and lets wisp go
 * on (the write that raised it fails with EPIPE, which its caller handles). Returns 0 or
 * -errno. */
int metrics_count_sigpipe(void);

/* Milliseconds since the epoch (CLOCK_REALTIME), for utc_timestamp_ms. */
uint64_t metrics_utc_now_ms(void);

/* Forgets every registered section, closes the output and zeroes the fixed metrics: for
 * VM teardown and tests, with no other thread touching metrics. */
void metrics_reset(void);

#endif
