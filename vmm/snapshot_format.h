/*
 * The snapshot state file: wisp's own format (vmm/SNAPSHOT-FORMAT.md is its page). A header
 * (magic, format version, wisp version, host CPU vendor, the KVM capabilities a restore
 * needs), typed sections (type, instance, length, data padded to 8 bytes), an end section,
 * and a CRC-64/XZ over everything before it. This layer only writes and checks files: it
 * knows no KVM call and no device, so the snapshot code fills sections and unit tests and
 * the fuzzer drive every check here.
 *
 * Writing is atomic: a temporary file in the target's directory, fsynced, renamed over the
 * target, then the directory fsynced. Any failure before the rename removes the temporary
 * file and leaves whatever was at the target untouched.
 *
 * Reading takes the whole file into memory (at most SNAP_FILE_MAX bytes) and checks the
 * magic, the format version, the checksum, then every section's bounds, padding and, for
 * the types whose layout is fixed here, its contents; the result is an index of sections.
 * All numbers are little-endian (the host's: wisp runs on x86-64 only).
 */
#ifndef WISP_SNAPSHOT_FORMAT_H
#define WISP_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SNAP_MAGIC	    "WISPSNAP" /* 8 bytes, no NUL in the file */
#define SNAP_FORMAT_VERSION 1u

#define SNAP_HEADER_SIZE       64u /* magic, version, cap count, wisp version, vendor */
#define SNAP_SECTION_HDR_SIZE  16u /* u32 type, u32 instance, u64 length */
#define SNAP_CRC_SIZE	       8u
#define SNAP_WISP_VERSION_SIZE 32u /* the field, with at least one NUL */
#define SNAP_VENDOR_SIZE       16u /* the field: CPUID leaf 0's 12 bytes and NULs */
#define SNAP_MAX_CAPS	       64u
#define SNAP_MAX_SECTIONS      4096u
#define SNAP_FILE_MAX	       (64ull << 20) /* far above 32 vCPUs' XSAVE and all devices */
#define SNAP_MAX_MEM_REGIONS   64u
#define SNAP_PAGE_SIZE	       4096ull
#define SNAP_CONFIG_MAX	       (1u << 20) /* the machine configuration's JSON text */
#define SNAP_DEVICE_ID_MAX     64u	  /* Firecracker's ids are at most 64 characters */
#define SNAP_MAX_MSRS	       1024u
#define SNAP_MAX_CPUID_ENTRIES 256u /* KVM's own limit */
#define SNAP_MAX_VCPUS	       256u /* instance numbers of per-vCPU sections */
#define SNAP_MIN_FILE_SIZE     (SNAP_HEADER_SIZE + SNAP_SECTION_HDR_SIZE + 8u + SNAP_CRC_SIZE)
#define SNAP_XSAVE_MIN	       4096u /* struct kvm_xsave; KVM_GET_XSAVE2 may give more */
#define SNAP_XSAVE_MAX	       (1u << 20)

/*
 * Section types. The instance says which one of a kind: 0 for the VM-wide ones, the vCPU
 * index for the per-vCPU ones, the device's index for device states. The payload of the
 * KVM ones is the ioctl's structure as <linux/kvm.h> lays it out (a stable ABI); their size
 * is checked on reading.
 */
enum snap_section_type {
	SNAP_SEC_END = 0x0000, /* last; payload u32 number of sections before it, u32 0 */

	/* The VM (instance 0) */
	SNAP_SEC_MACHINE_CONFIG = 0x0001, /* JSON text of GET /vm/config, no NUL */
	SNAP_SEC_MEMORY_LAYOUT = 0x0002,  /* see struct snap_mem_layout */
	SNAP_SEC_PIC_MASTER = 0x0003,	  /* struct kvm_irqchip, chip_id 0 */
	SNAP_SEC_PIC_SLAVE = 0x0004,	  /* struct kvm_irqchip, chip_id 1 */
	SNAP_SEC_IOAPIC = 0x0005,	  /* struct kvm_irqchip, chip_id 2 */
	SNAP_SEC_PIT = 0x0006,		  /* struct kvm_pit_state2 */
	SNAP_SEC_KVMCLOCK = 0x0007,	  /* struct kvm_clock_data */

	/* One vCPU (instance: its index) */
	SNAP_SEC_VCPU_REGS = 0x0100,	  /* struct kvm_regs */
	SNAP_SEC_VCPU_SREGS = 0x0101,	  /* struct kvm_sregs */
	SNAP_SEC_VCPU_XSAVE = 0x0102,	  /* KVM_GET_XSAVE2's buffer, 4 KiB or more, x 4 */
	SNAP_SEC_VCPU_XCRS = 0x0103,	  /* struct kvm_xcrs */
	SNAP_SEC_VCPU_MSRS = 0x0104,	  /* u32 count, u32 0, struct kvm_msr_entry[count] */
	SNAP_SEC_VCPU_LAPIC = 0x0105,	  /* struct kvm_lapic_state */
	SNAP_SEC_VCPU_EVENTS = 0x0106,	  /* struct kvm_vcpu_events */
	SNAP_SEC_VCPU_MP_STATE = 0x0107,  /* struct kvm_mp_state */
	SNAP_SEC_VCPU_DEBUGREGS = 0x0108, /* struct kvm_debugregs */
	SNAP_SEC_VCPU_CPUID = 0x0109,	  /* u32 count, u32 0, struct kvm_cpuid_entry2[count] */
	SNAP_SEC_VCPU_TSC_KHZ = 0x010a,	  /* u64: KVM_GET_TSC_KHZ */

	/* One device (instance: its index among the devices) */
	SNAP_SEC_DEVICE = 0x0200, /* see struct snap_device */
};

/* Device kinds in a SNAP_SEC_DEVICE section. */
enum snap_device_kind {
	SNAP_DEV_SERIAL = 1,
	SNAP_DEV_I8042 = 2,
	SNAP_DEV_VIRTIO_MMIO = 3, /* a transport with its queues */
	SNAP_DEV_VIRTIO_BLK = 4,
	SNAP_DEV_VIRTIO_NET = 5,
	SNAP_DEV_VIRTIO_BALLOON = 6,
};

/* Formats the message into err (when err is not NULL and err_size is not 0), for the state
 * code's "what failed, with which value" messages (vcpu_state.c, vm_state.c and here). */
void snap_set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether all len bytes at p are zero (reserved fields and padding). */
bool snap_all_zero(const void *p, size_t len);

/* "VCPU_REGS", or NULL for a type this version does not know. */
const char *snap_section_name(uint32_t type);
/* "serial", "virtio-blk"..., or NULL. */
const char *snap_device_kind_name(uint32_t kind);

/* The KVM capabilities wisp knows by name; `required` marks those kvm_open() checks for. */
struct snap_kvm_cap {
	uint32_t cap;
	const char *name;
	bool required;
};
extern const struct snap_kvm_cap snap_kvm_caps[];
extern const size_t snap_nr_kvm_caps;
/* "KVM_CAP_XSAVE", or NULL for a capability not in snap_kvm_caps. */
const char *snap_kvm_cap_name(uint32_t cap);

/* CRC-64/XZ (ECMA-182 polynomial, reflected, initial value and final xor all ones). Start
 * with crc = 0 and feed the bytes in any number of pieces: crc = snap_crc64(crc, p, n). */
uint64_t snap_crc64(uint64_t crc, const void *data, size_t len);

/* What the header says. */
struct snap_header {
	uint32_t format_version;
	char wisp_version[SNAP_WISP_VERSION_SIZE]; /* NUL-terminated */
	char cpu_vendor[SNAP_VENDOR_SIZE];	   /* NUL-terminated, e.g. "AuthenticAMD" */
	uint32_t nr_caps;
	uint32_t caps[SNAP_MAX_CAPS]; /* KVM_CAP_* numbers a restore needs */
};

/* This host's CPU vendor string from CPUID leaf 0 ("GenuineIntel", "AuthenticAMD"). */
void snap_host_cpu_vendor(char vendor[SNAP_VENDOR_SIZE]);

/* ---- writing ---- */

/* The system calls the writer makes, replaceable so that tests can fail each one (ENOSPC
 * after a short write, EIO from fsync...). NULL fields, or NULL ops: the real calls. */
struct snap_file_ops {
	ssize_t (*write)(int fd, const void *buf, size_t len);
	int (*fsync)(int fd);
	int (*rename)(const char *from, const char *to);
};

struct snap_writer {
	int fd;	    /* the temporary file; -1 once finished or failed */
	int dir_fd; /* the target's directory, for the last fsync */
	char path[4096];
	char tmp_path[4096];
	uint64_t crc;
	uint64_t size;
	uint32_t nr_sections;
	int error;	/* 0, or the -errno that ended the writer */
	uint64_t *keys; /* (type << 32 | instance) of each section, to refuse one twice */
	struct snap_file_ops ops;
};

/*
 * Creates a temporary file next to `path` ("DIR/.NAME.XXXXXX") and writes the header.
 * header->format_version is ignored (SNAP_FORMAT_VERSION is written). Returns 0 or -errno
 * with a message in err; on failure nothing is left behind.
 */
int snap_writer_begin(struct snap_writer *w, const char *path, const struct snap_header *header,
		      const struct snap_file_ops *ops, char *err, size_t err_size);
/* Appends one section. On failure the writer is finished (temporary file removed) and every
 * later call fails with the same error. */
int snap_writer_add(struct snap_writer *w, uint32_t type, uint32_t instance, const void *data,
		    size_t len, char *err, size_t err_size);
/*
 * Writes the end section and the checksum, fsyncs, renames over the target and fsyncs the
 * directory. Returns 0 when the new file is in place. If only the directory's fsync fails,
 * the new file is complete and in place, but the rename may not survive a crash: -errno with
 * a message saying so.
 */
int snap_writer_finish(struct snap_writer *w, char *err, size_t err_size);
/* Gives up (e.g. a device failed to save): removes the temporary file. Safe to call at any
 * time, more than once, and after finish. */
void snap_writer_abort(struct snap_writer *w);

/* ---- reading ---- */

struct snap_section {
	uint32_t type;
	uint32_t instance;
	uint64_t offset; /* of the payload in the file */
	uint64_t length; /* of the payload, without padding */
};

struct snap_index {
	struct snap_header header;
	uint64_t file_size;
	uint64_t crc_stored;
	uint64_t crc_computed;
	bool crc_checked; /* the file got as far as its checksum: crc_* are set */
	bool crc_ok;
	uint32_t nr_sections;	       /* without the end section */
	struct snap_section *sections; /* in file order; snap_index_free() */
};

/* snap_parse() flags */
#define SNAP_PARSE_CRC_ADVISORY 1u /* a bad checksum only clears crc_ok (snapshot-info) */

/*
 * Checks a whole state file in memory and fills idx. Order: size, magic, format version,
 * checksum, header fields, then each section (bounds, zero padding, known type, no
 * (type, instance) twice, per-type size and contents), the end section, nothing after it.
 * Returns 0, or -EINVAL (not a state file / malformed), -EPROTONOSUPPORT (another format
 * version), -EBADMSG (checksum), -EFBIG (too large), -ENOMEM, each with a message naming the
 * problem and its file offset; on failure idx holds nothing to free.
 */
int snap_parse(const uint8_t *data, size_t size, unsigned int flags, struct snap_index *idx,
	       char *err, size_t err_size);
void snap_index_free(struct snap_index *idx);

/* Reads a whole regular file of at most SNAP_FILE_MAX bytes into a malloc'd buffer. */
int snap_read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t err_size);

/* Refuses (-ENOTSUP with a message) a file written on another CPU vendor than `host`. */
int snap_check_vendor(const struct snap_header *header, const char *host_vendor, char *err,
		      size_t err_size);

/* The section (type, instance), or NULL. */
const struct snap_section *snap_find(const struct snap_index *idx, uint32_t type,
				     uint32_t instance);

/* ---- typed sections ---- */

/* Guest memory: each region is stored at file_offset in the memory file. Regions are
 * page-aligned, sorted by guest address, do not overlap, and lie back to back in the
 * memory file in that order (the first at offset 0). */
struct snap_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t file_offset;
};

struct snap_mem_layout {
	uint32_t nr_regions;
	struct snap_mem_region regions[SNAP_MAX_MEM_REGIONS];
};

/* Encoded: u32 count, u32 0, then count x (u64 gpa, u64 size, u64 file_offset). */
int snap_mem_layout_check(const struct snap_mem_layout *layout, char *err, size_t err_size);
/* The memory file's size the layout implies (call after a successful check). */
uint64_t snap_mem_layout_file_size(const struct snap_mem_layout *layout);
int snap_writer_add_mem_layout(struct snap_writer *w, const struct snap_mem_layout *layout,
			       char *err, size_t err_size);
int snap_mem_layout_decode(const uint8_t *payload, uint64_t len, struct snap_mem_layout *layout,
			   char *err, size_t err_size);

/* The machine configuration: JSON text (1 to SNAP_CONFIG_MAX bytes, no NUL, not parsed
 * here). decode returns a malloc'd NUL-terminated copy. */
int snap_writer_add_config(struct snap_writer *w, const char *json, char *err, size_t err_size);
int snap_config_decode(const uint8_t *payload, uint64_t len, char **json, char *err,
		       size_t err_size);

/* A device's saved state, keyed by kind and id ("rootfs", "eth0", "serial0").
 * Encoded: u32 kind, u32 id length (1 to 64), the id (printable ASCII, no NUL), the state. */
struct snap_device {
	uint32_t kind;
	char id[SNAP_DEVICE_ID_MAX + 1];
	const uint8_t *state; /* points into the payload */
	uint64_t state_len;
};

int snap_writer_add_device(struct snap_writer *w, uint32_t instance, uint32_t kind, const char *id,
			   const void *state, size_t state_len, char *err, size_t err_size);
int snap_device_decode(const uint8_t *payload, uint64_t len, struct snap_device *device, char *err,
		       size_t err_size);

#endif
