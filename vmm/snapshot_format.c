/* The snapshot state file's format: writing atomically, reading with every field checked. */
#define _GNU_SOURCE /* mkostemp */
#include "snapshot_format.h"

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the state file is little-endian");

#define SNAP_END_PAYLOAD 8u
#define MEM_LAYOUT_HDR	 8u
#define MEM_REGION_SIZE	 24u
#define DEVICE_HDR	 8u
#define LIST_HDR	 8u /* MSRs and CPUID: u32 count, u32 0 */

void snap_set_err(char *err, size_t err_size, const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_size)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_size, fmt, ap);
	va_end(ap);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint64_t align8(uint64_t n)
{
	return (n + 7) & ~7ull;
}

bool snap_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

/* ---- names ---- */

static const struct {
	uint32_t type;
	const char *name;
} section_names[] = {
    {SNAP_SEC_END, "END"},
    {SNAP_SEC_MACHINE_CONFIG, "MACHINE_CONFIG"},
    {SNAP_SEC_MEMORY_LAYOUT, "MEMORY_LAYOUT"},
    {SNAP_SEC_PIC_MASTER, "PIC_MASTER"},
    {SNAP_SEC_PIC_SLAVE, "PIC_SLAVE"},
    {SNAP_SEC_IOAPIC, "IOAPIC"},
    {SNAP_SEC_PIT, "PIT"},
    {SNAP_SEC_KVMCLOCK, "KVMCLOCK"},
    {SNAP_SEC_VCPU_REGS, "VCPU_REGS"},
    {SNAP_SEC_VCPU_SREGS, "VCPU_SREGS"},
    {SNAP_SEC_VCPU_XSAVE, "VCPU_XSAVE"},
    {SNAP_SEC_VCPU_XCRS, "VCPU_XCRS"},
    {SNAP_SEC_VCPU_MSRS, "VCPU_MSRS"},
    {SNAP_SEC_VCPU_LAPIC, "VCPU_LAPIC"},
    {SNAP_SEC_VCPU_EVENTS, "VCPU_EVENTS"},
    {SNAP_SEC_VCPU_MP_STATE, "VCPU_MP_STATE"},
    {SNAP_SEC_VCPU_DEBUGREGS, "VCPU_DEBUGREGS"},
    {SNAP_SEC_VCPU_CPUID, "VCPU_CPUID"},
    {SNAP_SEC_VCPU_TSC_KHZ, "VCPU_TSC_KHZ"},
    {SNAP_SEC_DEVICE, "DEVICE"},
};

const char *snap_section_name(uint32_t type)
{
	for (size_t i = 0; i < sizeof(section_names) / sizeof(section_names[0]); i++)
		if (section_names[i].type == type)
			return section_names[i].name;
	return NULL;
}

const char *snap_device_kind_name(uint32_t kind)
{
	switch (kind) {
	case SNAP_DEV_SERIAL:
		return "serial";
	case SNAP_DEV_I8042:
		return "i8042";
	case SNAP_DEV_VIRTIO_MMIO:
		return "virtio-mmio";
	case SNAP_DEV_VIRTIO_BLK:
		return "virtio-blk";
	case SNAP_DEV_VIRTIO_NET:
		return "virtio-net";
	case SNAP_DEV_VIRTIO_BALLOON:
		return "virtio-balloon";
	}
	return NULL;
}

/* kvm.c refuses a KVM without the required ones, in this order; snapshot-info names them all. */
const struct snap_kvm_cap snap_kvm_caps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", true},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", true},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", true},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2", true},
    {KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2", true},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", true},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD", true},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", true},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", true},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", true},
    {KVM_CAP_XSAVE, "KVM_CAP_XSAVE", true},
    {KVM_CAP_XCRS, "KVM_CAP_XCRS", true},
    {KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS", true},
    {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", true},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", true},
    {KVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ", false},
    {KVM_CAP_TSC_CONTROL, "KVM_CAP_TSC_CONTROL", false},
    {KVM_CAP_KVMCLOCK_CTRL, "KVM_CAP_KVMCLOCK_CTRL", false},
    {KVM_CAP_XSAVE2, "KVM_CAP_XSAVE2", false},
};
const size_t snap_nr_kvm_caps = sizeof(snap_kvm_caps) / sizeof(snap_kvm_caps[0]);

const char *snap_kvm_cap_name(uint32_t cap)
{
	for (size_t i = 0; i < snap_nr_kvm_caps; i++)
		if (snap_kvm_caps[i].cap == cap)
			return snap_kvm_caps[i].name;
	return NULL;
}

/* ---- CRC-64/XZ ---- */

#define CRC64_XZ_POLY_REFLECTED 0xc96c5795d7870f42ull

/* Slicing by 8: table[k][b] is the CRC of byte b followed by k zero bytes, so that eight
 * bytes take eight lookups and no shifts between them (the fuzzer spends its time here). */
static uint64_t crc64_table[8][256];
static pthread_once_t crc64_table_once = PTHREAD_ONCE_INIT;

static void crc64_table_init(void)
{
	for (unsigned int byte = 0; byte < 256; byte++) {
		uint64_t crc = byte;
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 1) ? (crc >> 1) ^ CRC64_XZ_POLY_REFLECTED : crc >> 1;
		crc64_table[0][byte] = crc;
	}
	for (unsigned int byte = 0; byte < 256; byte++)
		for (int k = 1; k < 8; k++)
			crc64_table[k][byte] = (crc64_table[k - 1][byte] >> 8) ^
					       crc64_table[0][crc64_table[k - 1][byte] & 0xff];
}

uint64_t snap_crc64(uint64_t crc, const void *data, size_t len)
{
	const uint64_t(*t)[256] = crc64_table;
	const uint8_t *p = data;

	pthread_once(&crc64_table_once, crc64_table_init);
	crc = ~crc;
	for (; len >= 8; len -= 8, p += 8) {
		crc ^= get64(p);
		crc = t[7][crc & 0xff] ^ t[6][(crc >> 8) & 0xff] ^ t[5][(crc >> 16) & 0xff] ^
		      t[4][(crc >> 24) & 0xff] ^ t[3][(crc >> 32) & 0xff] ^
		      t[2][(crc >> 40) & 0xff] ^ t[1][(crc >> 48) & 0xff] ^ t[0][crc >> 56];
	}
	for (; len; len--, p++)
		crc = t[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
	return ~crc;
}

void snap_host_cpu_vendor(char vendor[SNAP_VENDOR_SIZE])
{
	unsigned int eax, ebx, ecx, edx;

	memset(vendor, 0, SNAP_VENDOR_SIZE);
	__cpuid(0, eax, ebx, ecx, edx);
	(void)eax;
	memcpy(vendor, &ebx, 4);
	memcpy(vendor + 4, &edx, 4);
	memcpy(vendor + 8, &ecx, 4);
}

/* ---- contents of the sections whose layout this file knows ---- */

/* A string field of `field_size` bytes: printable ASCII, then NULs to the end, not empty. */
static bool string_field_ok(const uint8_t *field, size_t field_size)
{
	size_t len = 0;

	for (; len < field_size && field[len]; len++)
		if (field[len] < 0x20 || field[len] > 0x7e)
			return false;
	if (len == 0 || len == field_size)
		return false;
	for (size_t i = len; i < field_size; i++)
		if (field[i])
			return false;
	return true;
}

int snap_mem_layout_check(const struct snap_mem_layout *layout, char *err, size_t err_size)
{
	uint64_t file_offset = 0;

	if (layout->nr_regions == 0 || layout->nr_regions > SNAP_MAX_MEM_REGIONS) {
		snap_set_err(err, err_size, "memory layout: %u regions (1 to %u allowed)",
			     layout->nr_regions, SNAP_MAX_MEM_REGIONS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < layout->nr_regions; i++) {
		const struct snap_mem_region *r = &layout->regions[i];

		if (r->size == 0 || r->gpa % SNAP_PAGE_SIZE || r->size % SNAP_PAGE_SIZE ||
		    r->file_offset % SNAP_PAGE_SIZE) {
			snap_set_err(
			    err, err_size,
			    "memory layout: region %u (guest 0x%llx, size 0x%llx, file offset "
			    "0x%llx) is empty or not aligned to 4 KiB pages",
			    i, (unsigned long long)r->gpa, (unsigned long long)r->size,
			    (unsigned long long)r->file_offset);
			return -EINVAL;
		}
		if (r->gpa + r->size < r->gpa) {
			snap_set_err(
			    err, err_size,
			    "memory layout: region %u (guest 0x%llx, size 0x%llx) wraps past the "
			    "end of the address space",
			    i, (unsigned long long)r->gpa, (unsigned long long)r->size);
			return -EINVAL;
		}
		if (i > 0) {
			const struct snap_mem_region *prev = &layout->regions[i - 1];
			if (r->gpa < prev->gpa + prev->size) {
				snap_set_err(
				    err, err_size,
				    "memory layout: region %u (guest 0x%llx) overlaps region %u "
				    "(guest 0x%llx-0x%llx) or is out of order",
				    i, (unsigned long long)r->gpa, i - 1,
				    (unsigned long long)prev->gpa,
				    (unsigned long long)(prev->gpa + prev->size));
				return -EINVAL;
			}
		}
		if (r->file_offset != file_offset) {
			snap_set_err(
			    err, err_size,
			    "memory layout: region %u is at file offset 0x%llx; the regions lie "
			    "back to back in the memory file, so it must be 0x%llx",
			    i, (unsigned long long)r->file_offset, (unsigned long long)file_offset);
			return -EINVAL;
		}
		if (file_offset + r->size < file_offset) {
			snap_set_err(err, err_size,
				     "memory layout: the memory file's size overflows");
			return -EINVAL;
		}
		file_offset += r->size;
	}
	return 0;
}

uint64_t snap_mem_layout_file_size(const struct snap_mem_layout *layout)
{
	uint64_t size = 0;

	for (uint32_t i = 0; i < layout->nr_regions && i < SNAP_MAX_MEM_REGIONS; i++)
		size += layout->regions[i].size;
	return size;
}

int snap_mem_layout_decode(const uint8_t *payload, uint64_t len, struct snap_mem_layout *layout,
			   char *err, size_t err_size)
{
	uint32_t count;

	memset(layout, 0, sizeof(*layout));
	if (len < MEM_LAYOUT_HDR) {
		snap_set_err(err, err_size,
			     "memory layout: %llu bytes, less than its 8-byte header",
			     (unsigned long long)len);
		return -EINVAL;
	}
	count = get32(payload);
	if (count == 0 || count > SNAP_MAX_MEM_REGIONS) {
		snap_set_err(err, err_size, "memory layout: %u regions (1 to %u allowed)", count,
			     SNAP_MAX_MEM_REGIONS);
		return -EINVAL;
	}
	if (get32(payload + 4)) {
		snap_set_err(err, err_size, "memory layout: reserved field is 0x%x, not 0",
			     get32(payload + 4));
		return -EINVAL;
	}
	if (len != MEM_LAYOUT_HDR + (uint64_t)count * MEM_REGION_SIZE) {
		snap_set_err(
		    err, err_size, "memory layout: %llu bytes for %u regions, not %llu",
		    (unsigned long long)len, count,
		    (unsigned long long)(MEM_LAYOUT_HDR + (uint64_t)count * MEM_REGION_SIZE));
		return -EINVAL;
	}
	layout->nr_regions = count;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *r = payload + MEM_LAYOUT_HDR + (size_t)i * MEM_REGION_SIZE;
		layout->regions[i].gpa = get64(r);
		layout->regions[i].size = get64(r + 8);
		layout->regions[i].file_offset = get64(r + 16);
	}
	return snap_mem_layout_check(layout, err, err_size);
}

static int config_check(const uint8_t *payload, uint64_t len, char *err, size_t err_size)
{
	if (len == 0 || len > SNAP_CONFIG_MAX) {
		snap_set_err(err, err_size, "machine configuration: %llu bytes (1 to %u allowed)",
			     (unsigned long long)len, SNAP_CONFIG_MAX);
		return -EINVAL;
	}
	if (memchr(payload, 0, len)) {
		snap_set_err(
		    err, err_size, "machine configuration: a NUL byte at offset %llu of its text",
		    (unsigned long long)((const uint8_t *)memchr(payload, 0, len) - payload));
		return -EINVAL;
	}
	return 0;
}

int snap_config_decode(const uint8_t *payload, uint64_t len, char **json, char *err,
		       size_t err_size)
{
	int ret = config_check(payload, len, err, err_size);

	*json = NULL;
	if (ret)
		return ret;
	*json = malloc(len + 1);
	if (!*json) {
		snap_set_err(err, err_size, "machine configuration: out of memory for %llu bytes",
			     (unsigned long long)len);
		return -ENOMEM;
	}
	memcpy(*json, payload, len);
	(*json)[len] = '\0';
	return 0;
}

int snap_device_decode(const uint8_t *payload, uint64_t len, struct snap_device *device, char *err,
		       size_t err_size)
{
	uint32_t id_len;

	memset(device, 0, sizeof(*device));
	if (len < DEVICE_HDR) {
		snap_set_err(err, err_size, "device state: %llu bytes, less than its 8-byte header",
			     (unsigned long long)len);
		return -EINVAL;
	}
	device->kind = get32(payload);
	id_len = get32(payload + 4);
	if (!snap_device_kind_name(device->kind)) {
		snap_set_err(err, err_size, "device state: unknown device kind %u", device->kind);
		return -EINVAL;
	}
	if (id_len == 0 || id_len > SNAP_DEVICE_ID_MAX || id_len > len - DEVICE_HDR) {
		snap_set_err(err, err_size,
			     "device state: id length %u (1 to %u allowed, %llu bytes left in the "
			     "section)",
			     id_len, SNAP_DEVICE_ID_MAX, (unsigned long long)(len - DEVICE_HDR));
		return -EINVAL;
	}
	for (uint32_t i = 0; i < id_len; i++) {
		uint8_t c = payload[DEVICE_HDR + i];
		if (c < 0x21 || c > 0x7e) {
			snap_set_err(
			    err, err_size,
			    "device state: byte %u of the id is 0x%02x, not printable ASCII", i, c);
			return -EINVAL;
		}
	}
	memcpy(device->id, payload + DEVICE_HDR, id_len);
	device->id[id_len] = '\0';
	device->state = payload + DEVICE_HDR + id_len;
	device->state_len = len - DEVICE_HDR - id_len;
	return 0;
}

enum instance_rule { INSTANCE_ZERO, INSTANCE_VCPU, INSTANCE_ANY };

/* A KVM structure's size for the types that have one, else 0. */
static uint64_t fixed_size(uint32_t type)
{
	switch (type) {
	case SNAP_SEC_PIC_MASTER:
	case SNAP_SEC_PIC_SLAVE:
	case SNAP_SEC_IOAPIC:
		return sizeof(struct kvm_irqchip);
	case SNAP_SEC_PIT:
		return sizeof(struct kvm_pit_state2);
	case SNAP_SEC_KVMCLOCK:
		return sizeof(struct kvm_clock_data);
	case SNAP_SEC_VCPU_REGS:
		return sizeof(struct kvm_regs);
	case SNAP_SEC_VCPU_SREGS:
		return sizeof(struct kvm_sregs);
	case SNAP_SEC_VCPU_XCRS:
		return sizeof(struct kvm_xcrs);
	case SNAP_SEC_VCPU_LAPIC:
		return sizeof(struct kvm_lapic_state);
	case SNAP_SEC_VCPU_EVENTS:
		return sizeof(struct kvm_vcpu_events);
	case SNAP_SEC_VCPU_MP_STATE:
		return sizeof(struct kvm_mp_state);
	case SNAP_SEC_VCPU_DEBUGREGS:
		return sizeof(struct kvm_debugregs);
	case SNAP_SEC_VCPU_TSC_KHZ:
		return sizeof(uint64_t);
	}
	return 0;
}

/* u32 count, u32 0, count entries of entry_size bytes. */
static int list_check(const char *what, const uint8_t *payload, uint64_t len, uint32_t max,
		      uint64_t entry_size, char *err, size_t err_size)
{
	uint32_t count;

	if (len < LIST_HDR) {
		snap_set_err(err, err_size, "%llu bytes, less than the 8-byte %s header",
			     (unsigned long long)len, what);
		return -EINVAL;
	}
	count = get32(payload);
	if (count > max || get32(payload + 4)) {
		snap_set_err(err, err_size, "%u %s (at most %u), reserved field 0x%x (must be 0)",
			     count, what, max, get32(payload + 4));
		return -EINVAL;
	}
	if (len != LIST_HDR + count * entry_size) {
		snap_set_err(err, err_size, "%llu bytes for %u %s, not %llu",
			     (unsigned long long)len, count, what,
			     (unsigned long long)(LIST_HDR + count * entry_size));
		return -EINVAL;
	}
	return 0;
}

/* The rules for one section's instance, size and contents; the message names no offset
 * (the caller adds where). */
static int section_check(uint32_t type, uint32_t instance, const uint8_t *payload, uint64_t len,
			 char *err, size_t err_size)
{
	enum instance_rule rule = INSTANCE_ZERO;
	uint64_t size = fixed_size(type);
	struct snap_mem_layout *layout;
	struct snap_device device;
	int ret;

	if (!snap_section_name(type) || type == SNAP_SEC_END) {
		snap_set_err(err, err_size, "unknown section type 0x%04x", type);
		return -EINVAL;
	}
	if (type >= SNAP_SEC_VCPU_REGS && type <= SNAP_SEC_VCPU_TSC_KHZ)
		rule = INSTANCE_VCPU;
	else if (type == SNAP_SEC_DEVICE)
		rule = INSTANCE_ANY;
	if ((rule == INSTANCE_ZERO && instance != 0) ||
	    (rule == INSTANCE_VCPU && instance >= SNAP_MAX_VCPUS)) {
		snap_set_err(err, err_size, "instance %u (%s)", instance,
			     rule == INSTANCE_ZERO ? "a VM-wide section's instance is 0"
						   : "a vCPU's index is below 256");
		return -EINVAL;
	}
	if (size && len != size) {
		snap_set_err(err, err_size, "%llu bytes, not the %llu this section has",
			     (unsigned long long)len, (unsigned long long)size);
		return -EINVAL;
	}
	switch (type) {
	case SNAP_SEC_VCPU_XSAVE:
		if (len < SNAP_XSAVE_MIN || len > SNAP_XSAVE_MAX || len % 4) {
			snap_set_err(err, err_size,
				     "%llu bytes of XSAVE state (a multiple of 4 from %u to %u)",
				     (unsigned long long)len, SNAP_XSAVE_MIN, SNAP_XSAVE_MAX);
			return -EINVAL;
		}
		return 0;
	case SNAP_SEC_VCPU_MSRS:
		return list_check("MSRs", payload, len, SNAP_MAX_MSRS, sizeof(struct kvm_msr_entry),
				  err, err_size);
	case SNAP_SEC_VCPU_CPUID:
		return list_check("CPUID entries", payload, len, SNAP_MAX_CPUID_ENTRIES,
				  sizeof(struct kvm_cpuid_entry2), err, err_size);
	case SNAP_SEC_MACHINE_CONFIG:
		return config_check(payload, len, err, err_size);
	case SNAP_SEC_MEMORY_LAYOUT:
		layout = malloc(sizeof(*layout));
		if (!layout) {
			snap_set_err(err, err_size, "out of memory");
			return -ENOMEM;
		}
		ret = snap_mem_layout_decode(payload, len, layout, err, err_size);
		free(layout);
		return ret;
	case SNAP_SEC_DEVICE:
		return snap_device_decode(payload, len, &device, err, err_size);
	}
	return 0;
}

/* ---- writing ---- */

static ssize_t real_write(int fd, const void *buf, size_t len)
{
	return write(fd, buf, len);
}

static int real_fsync(int fd)
{
	return fsync(fd);
}

static int real_rename(const char *from, const char *to)
{
	return rename(from, to);
}

/* Ends the writer with `error`: closes and removes the temporary file. */
static int writer_fail(struct snap_writer *w, int error)
{
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
		unlink(w->tmp_path);
	}
	if (w->dir_fd >= 0) {
		close(w->dir_fd);
		w->dir_fd = -1;
	}
	free(w->keys);
	w->keys = NULL;
	w->error = error;
	return error;
}

static int writer_put(struct snap_writer *w, const void *data, size_t len, bool in_crc, char *err,
		      size_t err_size)
{
	const uint8_t *p = data;
	size_t done = 0;

	while (done < len) {
		ssize_t n = w->ops.write(w->fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int error = n < 0 ? -errno : -EIO;
			snap_set_err(err, err_size, "snapshot %s: cannot write %s: %s", w->path,
				     w->tmp_path, strerror(-error));
			return writer_fail(w, error);
		}
		done += (size_t)n;
	}
	if (in_crc)
		w->crc = snap_crc64(w->crc, data, len);
	w->size += len;
	return 0;
}

static int writer_usable(struct snap_writer *w, char *err, size_t err_size)
{
	if (w->error || w->fd < 0) {
		snap_set_err(err, err_size, "snapshot %s: the writer has already %s", w->path,
			     w->error ? "failed" : "finished");
		return w->error ? w->error : -EINVAL;
	}
	return 0;
}

int snap_writer_begin(struct snap_writer *w, const char *path, const struct snap_header *header,
		      const struct snap_file_ops *ops, char *err, size_t err_size)
{
	uint8_t head[SNAP_HEADER_SIZE + SNAP_MAX_CAPS * 4] = {0};
	size_t head_len, wv_len, vendor_len;
	const char *slash = strrchr(path, '/');

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	w->dir_fd = -1;
	w->ops.write = ops && ops->write ? ops->write : real_write;
	w->ops.fsync = ops && ops->fsync ? ops->fsync : real_fsync;
	w->ops.rename = ops && ops->rename ? ops->rename : real_rename;

	wv_len = strnlen(header->wisp_version, SNAP_WISP_VERSION_SIZE);
	vendor_len = strnlen(header->cpu_vendor, SNAP_VENDOR_SIZE);
	memcpy(head, SNAP_MAGIC, 8);
	put32(head + 8, SNAP_FORMAT_VERSION);
	put32(head + 12, header->nr_caps);
	if (wv_len < SNAP_WISP_VERSION_SIZE)
		memcpy(head + 16, header->wisp_version, wv_len);
	if (vendor_len < SNAP_VENDOR_SIZE)
		memcpy(head + 48, header->cpu_vendor, vendor_len);
	if (!string_field_ok(head + 16, SNAP_WISP_VERSION_SIZE) ||
	    !string_field_ok(head + 48, SNAP_VENDOR_SIZE) || header->nr_caps > SNAP_MAX_CAPS) {
		snap_set_err(
		    err, err_size,
		    "snapshot %s: bad header: wisp version and CPU vendor must be 1 to %u and "
		    "%u printable characters, capabilities at most %u (%u given)",
		    path, SNAP_WISP_VERSION_SIZE - 1, SNAP_VENDOR_SIZE - 1, SNAP_MAX_CAPS,
		    header->nr_caps);
		return writer_fail(w, -EINVAL);
	}
	for (uint32_t i = 0; i < header->nr_caps; i++)
		put32(head + SNAP_HEADER_SIZE + 4 * i, header->caps[i]);
	head_len = align8(SNAP_HEADER_SIZE + 4ull * header->nr_caps);

	if (!*path || strlen(path) + 9 > sizeof(w->tmp_path) || (slash && !slash[1])) {
		snap_set_err(err, err_size,
			     "snapshot path '%.256s': empty, a directory or too long", path);
		return writer_fail(w, -EINVAL);
	}
	snprintf(w->path, sizeof(w->path), "%s", path);
	if (slash)
		snprintf(w->tmp_path, sizeof(w->tmp_path), "%.*s/.%s.XXXXXX", (int)(slash - path),
			 path, slash + 1);
	else
		snprintf(w->tmp_path, sizeof(w->tmp_path), ".%s.XXXXXX", path);
	{
		char dir[sizeof(w->path)];
		if (!slash)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == path)
			snprintf(dir, sizeof(dir), "/");
		else
			snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
		w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (w->dir_fd < 0) {
			int error = -errno;
			snap_set_err(err, err_size, "snapshot %s: cannot open its directory %s: %s",
				     path, dir, strerror(errno));
			return writer_fail(w, error);
		}
	}
	w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
	if (w->fd < 0) {
		int error = -errno;
		snap_set_err(err, err_size, "snapshot %s: cannot create a temporary file %s: %s",
			     path, w->tmp_path, strerror(errno));
		return writer_fail(w, error);
	}
	w->keys = calloc(SNAP_MAX_SECTIONS, sizeof(*w->keys));
	if (!w->keys) {
		snap_set_err(err, err_size, "snapshot %s: out of memory", path);
		return writer_fail(w, -ENOMEM);
	}
	return writer_put(w, head, head_len, true, err, err_size);
}

int snap_writer_add(struct snap_writer *w, uint32_t type, uint32_t instance, const void *data,
		    size_t len, char *err, size_t err_size)
{
	static const uint8_t zeros[8];
	uint8_t hdr[SNAP_SECTION_HDR_SIZE];
	uint64_t key = (uint64_t)type << 32 | instance;
	char why[256];
	int ret = writer_usable(w, err, err_size);

	if (ret)
		return ret;
	ret = section_check(type, instance, data, len, why, sizeof(why));
	if (ret) {
		snap_set_err(err, err_size, "snapshot %s: section %s instance %u: %s", w->path,
			     snap_section_name(type) ? snap_section_name(type) : "?", instance,
			     why);
		return writer_fail(w, ret);
	}
	for (uint32_t i = 0; i < w->nr_sections; i++) {
		if (w->keys[i] == key) {
			snap_set_err(err, err_size,
				     "snapshot %s: section %s instance %u added twice", w->path,
				     snap_section_name(type), instance);
			return writer_fail(w, -EINVAL);
		}
	}
	if (w->nr_sections >= SNAP_MAX_SECTIONS || w->size + SNAP_SECTION_HDR_SIZE + align8(len) +
							   SNAP_SECTION_HDR_SIZE +
							   SNAP_END_PAYLOAD + SNAP_CRC_SIZE >
						       SNAP_FILE_MAX) {
		snap_set_err(
		    err, err_size,
		    "snapshot %s: more than %u sections or %llu bytes: the reader would refuse "
		    "the file",
		    w->path, SNAP_MAX_SECTIONS, SNAP_FILE_MAX);
		return writer_fail(w, -EFBIG);
	}
	put32(hdr, type);
	put32(hdr + 4, instance);
	put64(hdr + 8, len);
	ret = writer_put(w, hdr, sizeof(hdr), true, err, err_size);
	if (!ret)
		ret = writer_put(w, data, len, true, err, err_size);
	if (!ret)
		ret = writer_put(w, zeros, align8(len) - len, true, err, err_size);
	if (ret)
		return ret;
	w->keys[w->nr_sections++] = key;
	return 0;
}

int snap_writer_finish(struct snap_writer *w, char *err, size_t err_size)
{
	uint8_t end[SNAP_SECTION_HDR_SIZE + SNAP_END_PAYLOAD] = {0}, crc[SNAP_CRC_SIZE];
	int ret = writer_usable(w, err, err_size), fd;

	if (ret)
		return ret;
	put32(end, SNAP_SEC_END);
	put64(end + 8, SNAP_END_PAYLOAD);
	put32(end + SNAP_SECTION_HDR_SIZE, w->nr_sections);
	ret = writer_put(w, end, sizeof(end), true, err, err_size);
	if (ret)
		return ret;
	put64(crc, w->crc);
	ret = writer_put(w, crc, sizeof(crc), false, err, err_size);
	if (ret)
		return ret;
	if (w->ops.fsync(w->fd) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "snapshot %s: cannot fsync %s: %s", w->path,
			     w->tmp_path, strerror(errno));
		return writer_fail(w, ret);
	}
	fd = w->fd;
	w->fd = -1;
	if (close(fd) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "snapshot %s: cannot close %s: %s", w->path,
			     w->tmp_path, strerror(errno));
		unlink(w->tmp_path);
		return writer_fail(w, ret);
	}
	if (w->ops.rename(w->tmp_path, w->path) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "snapshot %s: cannot rename %s to it: %s", w->path,
			     w->tmp_path, strerror(errno));
		unlink(w->tmp_path);
		return writer_fail(w, ret);
	}
	ret = w->ops.fsync(w->dir_fd) < 0 ? -errno : 0;
	if (ret)
		snap_set_err(
		    err, err_size,
		    "snapshot %s: written and renamed, but fsync of its directory failed (%s): "
		    "after a crash the path may still hold the previous file",
		    w->path, strerror(-ret));
	writer_fail(w, ret);
	return ret;
}

void snap_writer_abort(struct snap_writer *w)
{
	if (!w->error)
		writer_fail(w, -ECANCELED);
}

int snap_writer_add_mem_layout(struct snap_writer *w, const struct snap_mem_layout *layout,
			       char *err, size_t err_size)
{
	uint8_t buf[MEM_LAYOUT_HDR + SNAP_MAX_MEM_REGIONS * MEM_REGION_SIZE] = {0};
	char why[256];
	int ret = writer_usable(w, err, err_size);

	if (ret)
		return ret;
	ret = snap_mem_layout_check(layout, why, sizeof(why));
	if (ret) {
		snap_set_err(err, err_size, "snapshot %s: %s", w->path, why);
		return writer_fail(w, ret);
	}
	put32(buf, layout->nr_regions);
	for (uint32_t i = 0; i < layout->nr_regions; i++) {
		uint8_t *r = buf + MEM_LAYOUT_HDR + (size_t)i * MEM_REGION_SIZE;
		put64(r, layout->regions[i].gpa);
		put64(r + 8, layout->regions[i].size);
		put64(r + 16, layout->regions[i].file_offset);
	}
	return snap_writer_add(w, SNAP_SEC_MEMORY_LAYOUT, 0, buf,
			       MEM_LAYOUT_HDR + (size_t)layout->nr_regions * MEM_REGION_SIZE, err,
			       err_size);
}

int snap_writer_add_config(struct snap_writer *w, const char *json, char *err, size_t err_size)
{
	return snap_writer_add(w, SNAP_SEC_MACHINE_CONFIG, 0, json, strlen(json), err, err_size);
}

int snap_writer_add_device(struct snap_writer *w, uint32_t instance, uint32_t kind, const char *id,
			   const void *state, size_t state_len, char *err, size_t err_size)
{
	size_t id_len = strnlen(id, SNAP_DEVICE_ID_MAX + 1);
	uint8_t *payload;
	int ret = writer_usable(w, err, err_size);

	if (ret)
		return ret;
	if (state_len > SNAP_FILE_MAX) {
		snap_set_err(err, err_size, "snapshot %s: device '%.64s': %zu bytes of state",
			     w->path, id, state_len);
		return writer_fail(w, -EFBIG);
	}
	payload = malloc(DEVICE_HDR + id_len + state_len);
	if (!payload) {
		snap_set_err(err, err_size, "snapshot %s: out of memory", w->path);
		return writer_fail(w, -ENOMEM);
	}
	put32(payload, kind);
	put32(payload + 4, (uint32_t)id_len);
	memcpy(payload + DEVICE_HDR, id, id_len);
	if (state_len)
		memcpy(payload + DEVICE_HDR + id_len, state, state_len);
	ret = snap_writer_add(w, SNAP_SEC_DEVICE, instance, payload,
			      DEVICE_HDR + id_len + state_len, err, err_size);
	free(payload);
	return ret;
}

/* ---- reading ---- */

void snap_index_free(struct snap_index *idx)
{
	free(idx->sections);
	idx->sections = NULL;
	idx->nr_sections = 0;
}

static int compare_sections(const void *a, const void *b)
{
	const struct snap_section *x = a, *y = b;
	uint64_t kx = (uint64_t)x->type << 32 | x->instance;
	uint64_t ky = (uint64_t)y->type << 32 | y->instance;
	return kx < ky ? -1 : kx > ky;
}

/* Refuses a (type, instance) that appears twice. */
static int check_duplicates(const struct snap_index *idx, char *err, size_t err_size)
{
	struct snap_section *sorted;
	int ret = 0;

	if (idx->nr_sections < 2)
		return 0;
	sorted = malloc(idx->nr_sections * sizeof(*sorted));
	if (!sorted) {
		snap_set_err(err, err_size, "state file: out of memory");
		return -ENOMEM;
	}
	memcpy(sorted, idx->sections, idx->nr_sections * sizeof(*sorted));
	qsort(sorted, idx->nr_sections, sizeof(*sorted), compare_sections);
	for (uint32_t i = 1; i < idx->nr_sections; i++) {
		if (!compare_sections(&sorted[i - 1], &sorted[i])) {
			uint64_t first = sorted[i - 1].offset, second = sorted[i].offset;
			if (first > second) {
				uint64_t t = first;
				first = second;
				second = t;
			}
			snap_set_err(
			    err, err_size,
			    "state file: offset %llu: section %s instance %u appears twice (first "
			    "at offset %llu)",
			    (unsigned long long)(second - SNAP_SECTION_HDR_SIZE),
			    snap_section_name(sorted[i].type), sorted[i].instance,
			    (unsigned long long)(first - SNAP_SECTION_HDR_SIZE));
			ret = -EINVAL;
			break;
		}
	}
	free(sorted);
	return ret;
}

static int parse_header(const uint8_t *data, uint64_t end, struct snap_header *h, uint64_t *pos,
			char *err, size_t err_size)
{
	uint64_t caps_end;

	h->format_version = get32(data + 8);
	h->nr_caps = get32(data + 12);
	if (!string_field_ok(data + 16, SNAP_WISP_VERSION_SIZE)) {
		snap_set_err(err, err_size,
			     "state file: offset 16: the wisp version is not 1 to %u printable "
			     "characters followed by NULs",
			     SNAP_WISP_VERSION_SIZE - 1);
		return -EINVAL;
	}
	if (!string_field_ok(data + 48, SNAP_VENDOR_SIZE)) {
		snap_set_err(
		    err, err_size,
		    "state file: offset 48: the CPU vendor is not 1 to %u printable characters "
		    "followed by NULs",
		    SNAP_VENDOR_SIZE - 1);
		return -EINVAL;
	}
	memcpy(h->wisp_version, data + 16, SNAP_WISP_VERSION_SIZE);
	memcpy(h->cpu_vendor, data + 48, SNAP_VENDOR_SIZE);
	if (h->nr_caps > SNAP_MAX_CAPS) {
		snap_set_err(err, err_size,
			     "state file: offset 12: %u KVM capabilities (at most %u)", h->nr_caps,
			     SNAP_MAX_CAPS);
		h->nr_caps = 0;
		return -EINVAL;
	}
	caps_end = align8(SNAP_HEADER_SIZE + 4ull * h->nr_caps);
	if (caps_end > end) {
		snap_set_err(err, err_size,
			     "state file: offset %u: the list of %u KVM capabilities runs past the "
			     "sections' end at offset %llu",
			     SNAP_HEADER_SIZE, h->nr_caps, (unsigned long long)end);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < h->nr_caps; i++)
		h->caps[i] = get32(data + SNAP_HEADER_SIZE + 4 * i);
	for (uint64_t off = SNAP_HEADER_SIZE + 4ull * h->nr_caps; off < caps_end; off++) {
		if (data[off]) {
			snap_set_err(err, err_size,
				     "state file: offset %llu: padding byte is not 0",
				     (unsigned long long)off);
			return -EINVAL;
		}
	}
	*pos = caps_end;
	return 0;
}

int snap_parse(const uint8_t *data, size_t size, unsigned int flags, struct snap_index *idx,
	       char *err, size_t err_size)
{
	uint64_t pos, end;
	uint32_t capacity;
	char why[256];
	int ret;

	memset(idx, 0, sizeof(*idx));
	idx->file_size = size;
	if (size > SNAP_FILE_MAX) {
		snap_set_err(err, err_size,
			     "state file: %zu bytes, more than the %llu a state file has", size,
			     SNAP_FILE_MAX);
		return -EFBIG;
	}
	if (size < 8 || memcmp(data, SNAP_MAGIC, 8)) {
		snap_set_err(err, err_size,
			     "not a wisp snapshot state file: offset 0: no \"" SNAP_MAGIC
			     "\" magic");
		return -EINVAL;
	}
	if (size < 12) {
		snap_set_err(err, err_size,
			     "state file truncated: %zu bytes, cut inside the header", size);
		return -EINVAL;
	}
	idx->header.format_version = get32(data + 8);
	if (idx->header.format_version != SNAP_FORMAT_VERSION) {
		snap_set_err(
		    err, err_size,
		    "state file: offset 8: format version %u; this wisp reads version %u only",
		    idx->header.format_version, SNAP_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (size < SNAP_MIN_FILE_SIZE) {
		snap_set_err(err, err_size,
			     "state file truncated: %zu bytes, less than the %u of an empty one",
			     size, SNAP_MIN_FILE_SIZE);
		return -EINVAL;
	}
	end = size - SNAP_CRC_SIZE;
	idx->crc_stored = get64(data + end);
	idx->crc_computed = snap_crc64(0, data, end);
	idx->crc_checked = true;
	idx->crc_ok = idx->crc_stored == idx->crc_computed;
	if (!idx->crc_ok && !(flags & SNAP_PARSE_CRC_ADVISORY)) {
		snap_set_err(
		    err, err_size,
		    "state file: offset %llu: checksum 0x%016llx stored, 0x%016llx computed "
		    "(damaged or truncated)",
		    (unsigned long long)end, (unsigned long long)idx->crc_stored,
		    (unsigned long long)idx->crc_computed);
		return -EBADMSG;
	}
	ret = parse_header(data, end, &idx->header, &pos, err, err_size);
	if (ret)
		return ret;

	capacity = (uint32_t)((end - pos) / (SNAP_SECTION_HDR_SIZE + 8) + 1);
	if (capacity > SNAP_MAX_SECTIONS)
		capacity = SNAP_MAX_SECTIONS;
	idx->sections = calloc(capacity, sizeof(*idx->sections));
	if (!idx->sections) {
		snap_set_err(err, err_size, "state file: out of memory for %u sections", capacity);
		return -ENOMEM;
	}
	for (;;) {
		uint64_t section_start = pos, len, padded;
		uint32_t type, instance;
		const uint8_t *payload;

		if (end - pos < SNAP_SECTION_HDR_SIZE) {
			snap_set_err(
			    err, err_size,
			    "state file: offset %llu: no end section (%llu bytes left where a "
			    "section header needs %u): truncated?",
			    (unsigned long long)pos, (unsigned long long)(end - pos),
			    SNAP_SECTION_HDR_SIZE);
			ret = -EINVAL;
			goto fail;
		}
		type = get32(data + pos);
		instance = get32(data + pos + 4);
		len = get64(data + pos + 8);
		pos += SNAP_SECTION_HDR_SIZE;
		padded = len > end - pos ? UINT64_MAX : align8(len);
		if (padded > end - pos) {
			snap_set_err(
			    err, err_size,
			    "state file: offset %llu: section %u (type 0x%04x, instance %u): "
			    "length %llu runs past the end (%llu bytes left)",
			    (unsigned long long)section_start, idx->nr_sections, type, instance,
			    (unsigned long long)len, (unsigned long long)(end - pos));
			ret = -EINVAL;
			goto fail;
		}
		payload = data + pos;
		for (uint64_t i = len; i < padded; i++) {
			if (payload[i]) {
				snap_set_err(
				    err, err_size,
				    "state file: offset %llu: padding byte of section %u is not 0",
				    (unsigned long long)(pos + i), idx->nr_sections);
				ret = -EINVAL;
				goto fail;
			}
		}
		pos += padded;
		if (type == SNAP_SEC_END) {
			if (len != SNAP_END_PAYLOAD || instance || get32(payload + 4) ||
			    get32(payload) != idx->nr_sections) {
				snap_set_err(
				    err, err_size,
				    "state file: offset %llu: end section (instance %u, length "
				    "%llu) does not say %u sections",
				    (unsigned long long)section_start, instance,
				    (unsigned long long)len, idx->nr_sections);
				ret = -EINVAL;
				goto fail;
			}
			if (pos != end) {
				snap_set_err(
				    err, err_size,
				    "state file: offset %llu: %llu bytes after the end section",
				    (unsigned long long)pos, (unsigned long long)(end - pos));
				ret = -EINVAL;
				goto fail;
			}
			break;
		}
		ret = section_check(type, instance, payload, len, why, sizeof(why));
		if (ret) {
			snap_set_err(
			    err, err_size,
			    "state file: offset %llu: section %u (type 0x%04x %s, instance %u): "
			    "%s",
			    (unsigned long long)section_start, idx->nr_sections, type,
			    snap_section_name(type) ? snap_section_name(type) : "unknown", instance,
			    why);
			goto fail;
		}
		/* Every section takes 24 bytes or more, so only the limit stops this. */
		if (idx->nr_sections >= capacity) {
			snap_set_err(err, err_size,
				     "state file: offset %llu: more than %u sections",
				     (unsigned long long)section_start, SNAP_MAX_SECTIONS);
			ret = -EINVAL;
			goto fail;
		}
		idx->sections[idx->nr_sections++] = (struct snap_section){
		    .type = type, .instance = instance, .offset = pos - padded, .length = len};
	}
	ret = check_duplicates(idx, err, err_size);
	if (ret)
		goto fail;
	return 0;
fail:
	snap_index_free(idx);
	return ret;
}

int snap_read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t err_size)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, ret;

	*data = NULL;
	*size = 0;
	/* O_NONBLOCK: a FIFO at the path is refused below instead of waiting for a writer. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "state file %s: cannot open: %s", path,
			     strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "state file %s: cannot stat: %s", path,
			     strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		snap_set_err(err, err_size, "state file %s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > SNAP_FILE_MAX) {
		ret = -EFBIG;
		snap_set_err(err, err_size,
			     "state file %s: %lld bytes, more than the %llu a state file has", path,
			     (long long)st.st_size, SNAP_FILE_MAX);
		goto out;
	}
	/* One byte more than the size, to see a file that grew meanwhile. */
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		snap_set_err(err, err_size, "state file %s: out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snap_set_err(err, err_size, "state file %s: cannot read: %s", path,
				     strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > (size_t)st.st_size) {
			ret = -EAGAIN;
			snap_set_err(err, err_size, "state file %s: it grew while being read",
				     path);
			goto out;
		}
	}
	*data = buf;
	*size = len;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

int snap_check_vendor(const struct snap_header *header, const char *host_vendor, char *err,
		      size_t err_size)
{
	if (strncmp(header->cpu_vendor, host_vendor, SNAP_VENDOR_SIZE)) {
		snap_set_err(
		    err, err_size,
		    "state file was written on a host whose CPU vendor is %.16s; this host's is "
		    "%.16s: restore it on a host with the same CPU vendor",
		    header->cpu_vendor, host_vendor);
		return -ENOTSUP;
	}
	return 0;
}

const struct snap_section *snap_find(const struct snap_index *idx, uint32_t type, uint32_t instance)
{
	for (uint32_t i = 0; i < idx->nr_sections; i++)
		if (idx->sections[i].type == type && idx->sections[i].instance == instance)
			return &idx->sections[i];
	return NULL;
}
