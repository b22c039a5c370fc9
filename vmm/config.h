/*
 * The one configuration model: the command line, --config-file and the API all fill
 * these structs. Strings are owned (fixed arrays), so a configuration can be copied,
 * replaced piece by piece by API calls, and saved in a snapshot.
 */
#ifndef WISP_CONFIG_H
#define WISP_CONFIG_H

#include "log.h"

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MAX_DRIVES  8
#define CONFIG_MAX_NETS	   4
#define CONFIG_ID_MAX	   64	/* ids, with the NUL */
#define CONFIG_PATH_MAX	   4096 /* host paths, with the NUL */
#define CONFIG_IFNAME_MAX  16	/* IFNAMSIZ */
#define CONFIG_CMDLINE_MAX 2048 /* the guest command line, with the NUL (Linux's limit) */

#define CONFIG_MAX_VCPUS       32
#define CONFIG_DEFAULT_VCPUS   1
#define CONFIG_DEFAULT_MEM_MIB 128
#define CONFIG_MAX_MEM_MIB     (1024ULL * 1024) /* 1 TiB; the host's RAM is checked later */
#define CONFIG_DEFAULT_CMDLINE                                                                     \
	"console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux "                                 \
	"i8042.nopnp i8042.dumbkbd"

enum io_engine { IO_ENGINE_ASYNC, IO_ENGINE_SYNC }; /* Firecracker's "Async" / "Sync" */
/* Firecracker's cache_type. Unsafe (its default): the guest is not offered
 * VIRTIO_BLK_F_FLUSH and a flush it sends anyway is acknowledged without syncing the
 * image; Writeback: flush is offered and each flush syncs the image (fdatasync). */
enum cache_type { CACHE_UNSAFE, CACHE_WRITEBACK };

/* Firecracker's TokenBucket: `size` tokens, refilled completely every `refill_time_ms`,
 * plus `one_time_burst` tokens available once. size == 0 or refill_time_ms == 0 means
 * no limit. */
struct token_bucket_config {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_time_ms;
};

/* bandwidth counts bytes, ops counts requests (blk) or frames (net). */
struct rate_limiter_config {
	struct token_bucket_config bandwidth;
	struct token_bucket_config ops;
};

struct drive_config {
	char id[CONFIG_ID_MAX];
	char path[CONFIG_PATH_MAX];
	bool read_only;
	bool root;
	/* O_DIRECT: data goes around the host page cache (QEMU's cache=none) */
	bool direct;
	enum io_engine engine;
	enum cache_type cache;
	struct rate_limiter_config rate_limiter;
	/* With root: the kernel finds the root by partition (root=PARTUUID=...), not /dev/vda */
	char partuuid[CONFIG_ID_MAX];
};

struct net_config {
	char id[CONFIG_ID_MAX];
	char tap[CONFIG_IFNAME_MAX];
	uint8_t mac[6];
	bool has_mac;
	struct rate_limiter_config rx_rate_limiter;
	struct rate_limiter_config tx_rate_limiter;
};

/* Firecracker's PUT /balloon: a virtio-balloon device when `configured`. amount_mib is
 * the target (PATCH /balloon changes it on a running VM), stats_polling_interval_s 0
 * means no statistics queue. Free page hinting is refused (not implemented). */
struct balloon_config {
	bool configured;
	uint32_t amount_mib;
	bool deflate_on_oom;
	uint16_t stats_polling_interval_s;
	bool free_page_reporting;
};

/* Firecracker's PUT /logger. Lines go to stderr until a path is set. */
struct logger_config {
	char path[CONFIG_PATH_MAX];
	bool has_level;
	enum log_level level;
	bool show_level;
	bool show_log_origin;
};

/* How this process runs, beside the VM it runs: the API, the instance's name. */
struct process_config {
	char api_sock[108]; /* sizeof(sockaddr_un.sun_path) */
	char config_file[CONFIG_PATH_MAX];
	bool no_api;
	char id[CONFIG_ID_MAX + 1]; /* Firecracker: up to 64 characters */
	bool boot_timer;
	uint64_t start_ns; /* CLOCK_MONOTONIC at process start, for --boot-timer */
	uint64_t max_payload;
	bool no_seccomp;		      /* --no-seccomp: no filters (debugging) */
	char seccomp_filter[CONFIG_PATH_MAX]; /* --seccomp-filter: filters from this file */
};

#define CONFIG_DEFAULT_ID	   "anonymous-instance"
#define CONFIG_DEFAULT_MAX_PAYLOAD 51200

/* PUT /snapshot/create. */
enum snapshot_type { SNAPSHOT_FULL, SNAPSHOT_DIFF };
struct snapshot_create_config {
	enum snapshot_type type;
	char snapshot_path[CONFIG_PATH_MAX];
	char mem_file_path[CONFIG_PATH_MAX];
};

/* Where a restored VM's memory comes from: the memory file mapped MAP_PRIVATE (File), or
 * a userfaultfd handler listening on a Unix socket (Uffd), as in Firecracker. */
enum mem_backend { MEM_BACKEND_FILE, MEM_BACKEND_UFFD };
/* PUT /snapshot/load's huge_pages ("2M" is refused: wisp has no hugetlbfs backing). */
enum restore_huge_pages {
	RESTORE_HUGE_PAGES_SNAPSHOT, /* the default: what the snapshot's VM had */
	RESTORE_HUGE_PAGES_NONE,
	RESTORE_HUGE_PAGES_TRANSPARENT,
};

/* network_overrides: the interface iface_id gets the TAP tap instead of the saved one. */
struct net_override {
	char iface_id[CONFIG_ID_MAX];
	char tap[CONFIG_IFNAME_MAX];
};

/* PUT /snapshot/load, or --restore on the command line. */
struct snapshot_load_config {
	char snapshot_path[CONFIG_PATH_MAX];
	enum mem_backend backend;
	char backend_path[CONFIG_PATH_MAX]; /* the memory file, or the handler's socket */
	bool track_dirty_pages;
	bool resume_vm;
	bool clock_realtime;
	enum restore_huge_pages huge_pages;
	unsigned int nr_net_overrides;
	struct net_override net_overrides[CONFIG_MAX_NETS];
};

/* The whole VM: what the command line, --config-file or API calls before InstanceStart
 * describe. Empty strings mean "not set". */
struct vmm_config {
	char kernel_path[CONFIG_PATH_MAX];
	char initrd_path[CONFIG_PATH_MAX];
	char cmdline[CONFIG_CMDLINE_MAX];
	unsigned int vcpus;
	uint64_t mem_mib;
	bool smt;
	bool track_dirty_pages;
	bool no_acpi; /* --no-acpi: the MP table and virtio_mmio.device= only */
	enum log_level log_level;
	unsigned int nr_drives;
	struct drive_config drives[CONFIG_MAX_DRIVES];
	unsigned int nr_nets;
	struct net_config nets[CONFIG_MAX_NETS];
	struct balloon_config balloon;
	/* PUT /logger, PUT /metrics, PUT /serial: empty paths mean not configured */
	struct logger_config logger;
	char metrics_path[CONFIG_PATH_MAX];
	char serial_out_path[CONFIG_PATH_MAX];
	struct process_config process;
	/* --restore: start from this snapshot instead of booting (nothing else is set). */
	bool has_restore;
	struct snapshot_load_config restore;
};

/* Copies src into dst[size]; -ENAMETOOLONG (dst untouched) if it does not fit. */
int config_copy_string(char *dst, unsigned long size, const char *src);
/* The defaults: 1 vCPU, 128 MiB, the default command line, no kernel, no devices. */
void config_set_defaults(struct vmm_config *config);
/* True if the bucket limits anything. */
static inline bool token_bucket_config_enabled(const struct token_bucket_config *bucket)
{
	return bucket->size && bucket->refill_time_ms;
}

#endif
