/*
 * Unit tests for the snapshot state file format (vmm/snapshot_format.c) and
 * `wisp snapshot-info` (vmm/snapshot_info.c). Files are written for real into a scratch
 * directory; the write, fsync and rename calls go through fault-injecting wrappers to fail
 * each step. A second, independent encoder here (raw_*) builds files byte by byte as
 * vmm/SNAPSHOT-FORMAT.md describes them, to craft the corruptions the writer refuses to make.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot_format.h"
#include "snapshot_info.h"
#include "test_support.h"

#define ERR_SIZE 512

static void put_le64(void *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* ---- scratch directory ---- */

struct scratch {
	char dir[64];
	char path[128];
};

static int scratch_setup(void **state)
{
	struct scratch *s = calloc(1, sizeof(*s));

	if (!s)
		return -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/wisp-snapfmt.XXXXXX");
	if (!mkdtemp(s->dir)) {
		free(s);
		return -1;
	}
	snprintf(s->path, sizeof(s->path), "%s/vm.state", s->dir);
	*state = s;
	return 0;
}

/* Names of the files in the scratch directory, in one string ("a b "), for asserts. */
static void dir_listing(const struct scratch *s, char *out, size_t size)
{
	DIR *d = opendir(s->dir);
	struct dirent *e;

	out[0] = '\0';
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		strncat(out, e->d_name, size - strlen(out) - 2);
		strcat(out, " ");
	}
	closedir(d);
}

static int scratch_teardown(void **state)
{
	struct scratch *s = *state;
	DIR *d = opendir(s->dir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", s->dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(s->dir);
	free(s);
	return 0;
}

static void read_whole(const char *path, uint8_t **data, size_t *size)
{
	char err[ERR_SIZE];
	assert_int_equal(snap_read_file(path, data, size, err, sizeof(err)), 0);
}

/* ---- a complete state file, the way the snapshot code will write one ---- */

static const char config_json[] =
    "{\"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 3072, \"smt\": false}, "
    "\"drives\": [{\"drive_id\": \"rootfs\"}]}";

static struct snap_header test_header(void)
{
	struct snap_header h = {.nr_caps = 3, .caps = {KVM_CAP_IRQCHIP, KVM_CAP_XSAVE, 9999}};
	strcpy(h.wisp_version, "0.1.0-test");
	strcpy(h.cpu_vendor, "AuthenticAMD");
	return h;
}

static struct snap_mem_layout test_layout(void)
{
	/* Below the 32-bit gap and above 4 GiB, as wisp lays out 4 GiB of RAM. */
	struct snap_mem_layout l = {.nr_regions = 2};
	l.regions[0] = (struct snap_mem_region){.gpa = 0, .size = 3ull << 30, .file_offset = 0};
	l.regions[1] = (struct snap_mem_region){
	    .gpa = 4ull << 30, .size = 1ull << 30, .file_offset = 3ull << 30};
	return l;
}

/* Each payload's bytes are a pattern seeded by its type and instance. */
static void pattern_payload(uint8_t *buf, size_t len, uint32_t type, uint32_t instance)
{
	fill_pattern(buf, len, (uint8_t)(type * 7 + instance), 13);
}

/* The KVM sections of vCPU `cpu` (fixed sizes, plus MSR and CPUID lists). */
static int add_vcpu(struct snap_writer *w, uint32_t cpu, char *err)
{
	static const struct {
		uint32_t type;
		size_t len;
	} fixed[] = {
	    {SNAP_SEC_VCPU_REGS, sizeof(struct kvm_regs)},
	    {SNAP_SEC_VCPU_SREGS, sizeof(struct kvm_sregs)},
	    {SNAP_SEC_VCPU_XSAVE, 4096 + 64},
	    {SNAP_SEC_VCPU_XCRS, sizeof(struct kvm_xcrs)},
	    {SNAP_SEC_VCPU_LAPIC, sizeof(struct kvm_lapic_state)},
	    {SNAP_SEC_VCPU_EVENTS, sizeof(struct kvm_vcpu_events)},
	    {SNAP_SEC_VCPU_MP_STATE, sizeof(struct kvm_mp_state)},
	    {SNAP_SEC_VCPU_DEBUGREGS, sizeof(struct kvm_debugregs)},
	    {SNAP_SEC_VCPU_TSC_KHZ, 8},
	};
	uint8_t buf[8192];
	int ret;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		pattern_payload(buf, fixed[i].len, fixed[i].type, cpu);
		ret = snap_writer_add(w, fixed[i].type, cpu, buf, fixed[i].len, err, ERR_SIZE);
		if (ret)
			return ret;
	}
	memset(buf, 0, 8);
	put_le32(buf, 3);
	pattern_payload(buf + 8, 3 * sizeof(struct kvm_msr_entry), SNAP_SEC_VCPU_MSRS, cpu);
	ret = snap_writer_add(w, SNAP_SEC_VCPU_MSRS, cpu, buf, 8 + 3 * sizeof(struct kvm_msr_entry),
			      err, ERR_SIZE);
	if (ret)
		return ret;
	put_le32(buf, 2);
	pattern_payload(buf + 8, 2 * sizeof(struct kvm_cpuid_entry2), SNAP_SEC_VCPU_CPUID, cpu);
	return snap_writer_add(w, SNAP_SEC_VCPU_CPUID, cpu, buf,
			       8 + 2 * sizeof(struct kvm_cpuid_entry2), err, ERR_SIZE);
}

static const uint8_t serial_state[] = {1, 2, 3, 4, 5};

/* Writes a 2-vCPU snapshot to `path` through `ops`; returns what finish returned. */
static int write_full(const char *path, const struct snap_file_ops *ops, char *err)
{
	struct snap_header h = test_header();
	struct snap_mem_layout layout = test_layout();
	struct snap_writer w;
	uint8_t buf[1024], blk_state[300];
	int ret;

	ret = snap_writer_begin(&w, path, &h, ops, err, ERR_SIZE);
	if (ret)
		return ret;
	if ((ret = snap_writer_add_config(&w, config_json, err, ERR_SIZE)) ||
	    (ret = snap_writer_add_mem_layout(&w, &layout, err, ERR_SIZE)))
		return ret;
	for (uint32_t type = SNAP_SEC_PIC_MASTER; type <= SNAP_SEC_KVMCLOCK; type++) {
		size_t len = type == SNAP_SEC_PIT	 ? sizeof(struct kvm_pit_state2)
			     : type == SNAP_SEC_KVMCLOCK ? sizeof(struct kvm_clock_data)
							 : sizeof(struct kvm_irqchip);
		pattern_payload(buf, len, type, 0);
		if ((ret = snap_writer_add(&w, type, 0, buf, len, err, ERR_SIZE)))
			return ret;
	}
	for (uint32_t cpu = 0; cpu < 2; cpu++)
		if ((ret = add_vcpu(&w, cpu, err)))
			return ret;
	pattern_payload(blk_state, sizeof(blk_state), SNAP_SEC_DEVICE, 2);
	if ((ret = snap_writer_add_device(&w, 0, SNAP_DEV_SERIAL, "serial0", serial_state,
					  sizeof(serial_state), err, ERR_SIZE)) ||
	    (ret =
		 snap_writer_add_device(&w, 1, SNAP_DEV_I8042, "i8042", NULL, 0, err, ERR_SIZE)) ||
	    (ret = snap_writer_add_device(&w, 2, SNAP_DEV_VIRTIO_BLK, "rootfs", blk_state,
					  sizeof(blk_state), err, ERR_SIZE)))
		return ret;
	return snap_writer_finish(&w, err, ERR_SIZE);
}

#define FULL_SECTIONS (2 + 5 + 2 * 11 + 3)

static void write_full_ok(const char *path, uint8_t **data, size_t *size)
{
	char err[ERR_SIZE] = "";
	int ret = write_full(path, NULL, err);
	if (ret)
		fail_msg("writing %s: %d: %s", path, ret, err);
	read_whole(path, data, size);
}

/* After patching a file, the checksum that makes it pass that check again. */
static void fix_crc(uint8_t *data, size_t size)
{
	uint64_t crc = snap_crc64(0, data, size - 8);
	memcpy(data + size - 8, &crc, 8);
}

/* Parses a heap copy of exactly `size` bytes (so that ASan sees any read past it). */
static int parse_copy(const uint8_t *data, size_t size, unsigned int flags, char *err)
{
	struct snap_index idx;
	uint8_t *copy = malloc(size ? size : 1);
	int ret;

	assert_non_null(copy);
	memcpy(copy, data, size);
	ret = snap_parse(copy, size, flags, &idx, err, ERR_SIZE);
	if (!ret)
		snap_index_free(&idx);
	else
		assert_null(idx.sections);
	free(copy);
	return ret;
}

static void assert_refused(const uint8_t *data, size_t size, int expected, const char *words)
{
	char err[ERR_SIZE] = "";
	int ret = parse_copy(data, size, 0, err);
	if (ret != expected || !strstr(err, words))
		fail_msg("expected %d with \"%s\", got %d: %s", expected, words, ret, err);
}

/* Offset of the header of the first section of `type` in a file from write_full(). */
static size_t section_header_at(const uint8_t *data, size_t size, uint32_t type, uint32_t instance)
{
	struct snap_index idx;
	char err[ERR_SIZE];
	const struct snap_section *s;
	size_t off;

	assert_int_equal(snap_parse(data, size, SNAP_PARSE_CRC_ADVISORY, &idx, err, sizeof(err)),
			 0);
	s = snap_find(&idx, type, instance);
	assert_non_null(s);
	off = s->offset - SNAP_SECTION_HDR_SIZE;
	snap_index_free(&idx);
	return off;
}

/* ---- an independent encoder, for files the writer would not write ---- */

struct raw {
	uint8_t buf[1 << 16];
	size_t len;
	uint32_t sections;
};

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
	assert_true(r->len + n <= sizeof(r->buf));
	memcpy(r->buf + r->len, p, n);
	r->len += n;
}

static void raw_u32(struct raw *r, uint32_t v)
{
	raw_bytes(r, &v, 4);
}

static void raw_u64(struct raw *r, uint64_t v)
{
	raw_bytes(r, &v, 8);
}

static void raw_pad(struct raw *r)
{
	static const uint8_t zeros[8];
	raw_bytes(r, zeros, (8 - r->len % 8) % 8);
}

static void raw_header(struct raw *r, uint32_t nr_caps)
{
	char field[32] = "0.1.0-raw", vendor[16] = "GenuineIntel";

	memset(r, 0, sizeof(*r));
	raw_bytes(r, "WISPSNAP", 8);
	raw_u32(r, SNAP_FORMAT_VERSION);
	raw_u32(r, nr_caps);
	raw_bytes(r, field, sizeof(field));
	raw_bytes(r, vendor, sizeof(vendor));
	for (uint32_t i = 0; i < nr_caps; i++)
		raw_u32(r, 100 + i);
	raw_pad(r);
}

static void raw_section(struct raw *r, uint32_t type, uint32_t instance, const void *p,
			uint64_t len)
{
	raw_u32(r, type);
	raw_u32(r, instance);
	raw_u64(r, len);
	raw_bytes(r, p, len);
	raw_pad(r);
	r->sections++;
}

static void raw_end(struct raw *r)
{
	raw_u32(r, SNAP_SEC_END);
	raw_u32(r, 0);
	raw_u64(r, 8);
	raw_u32(r, r->sections);
	raw_u32(r, 0);
	raw_u64(r, snap_crc64(0, r->buf, r->len));
}

static int raw_parse(const struct raw *r, char *err)
{
	return parse_copy(r->buf, r->len, 0, err);
}

static void raw_refused(const struct raw *r, const char *words)
{
	assert_refused(r->buf, r->len, -EINVAL, words);
}

/* ---- tests ---- */

static void test_crc64_xz_check_value(void **state)
{
	(void)state;
	/* The catalogue's check value of CRC-64/XZ, and pieces giving the same as one call. */
	assert_true(snap_crc64(0, "123456789", 9) == 0x995dc9bbdf1939faull);
	assert_true(snap_crc64(snap_crc64(0, "1234", 4), "56789", 5) == 0x995dc9bbdf1939faull);
	assert_true(snap_crc64(0, "", 0) == 0);
	/* Eight bytes at a time (slicing) and one at a time agree, at every alignment. */
	uint8_t buf[1000];
	fill_pattern(buf, sizeof(buf), 3, 101);
	for (size_t start = 0; start < 9; start++) {
		uint64_t bytewise = 0;
		for (size_t i = start; i < sizeof(buf); i++)
			bytewise = snap_crc64(bytewise, buf + i, 1);
		assert_true(snap_crc64(0, buf + start, sizeof(buf) - start) == bytewise);
	}
}

static void test_host_vendor_is_cpuid_string(void **state)
{
	char vendor[SNAP_VENDOR_SIZE];

	(void)state;
	memset(vendor, 'x', sizeof(vendor));
	snap_host_cpu_vendor(vendor);
	assert_int_equal(strlen(vendor), 12);
	for (unsigned int i = 12; i < SNAP_VENDOR_SIZE; i++)
		assert_int_equal(vendor[i], 0);
}

static void test_round_trip(void **state)
{
	struct scratch *s = *state;
	struct snap_mem_layout layout, expected = test_layout();
	struct snap_index idx;
	struct snap_device dev;
	const struct snap_section *sec;
	char err[ERR_SIZE], *json, listing[256];
	uint8_t *data, buf[8192];
	size_t size;

	write_full_ok(s->path, &data, &size);
	dir_listing(s, listing, sizeof(listing));
	assert_string_equal(listing, "vm.state "); /* no temporary file left */
	assert_int_equal(snap_parse(data, size, 0, &idx, err, sizeof(err)), 0);
	assert_true(idx.crc_ok);
	assert_int_equal(idx.file_size, size);
	assert_int_equal(idx.header.format_version, SNAP_FORMAT_VERSION);
	assert_string_equal(idx.header.wisp_version, "0.1.0-test");
	assert_string_equal(idx.header.cpu_vendor, "AuthenticAMD");
	assert_int_equal(idx.header.nr_caps, 3);
	assert_int_equal(idx.header.caps[0], KVM_CAP_IRQCHIP);
	assert_int_equal(idx.header.caps[2], 9999);
	assert_int_equal(idx.nr_sections, FULL_SECTIONS);
	assert_int_equal(idx.sections[0].type, SNAP_SEC_MACHINE_CONFIG);
	assert_int_equal(idx.sections[1].type, SNAP_SEC_MEMORY_LAYOUT);

	sec = snap_find(&idx, SNAP_SEC_MACHINE_CONFIG, 0);
	assert_int_equal(
	    snap_config_decode(data + sec->offset, sec->length, &json, err, sizeof(err)), 0);
	assert_string_equal(json, config_json);
	free(json);

	sec = snap_find(&idx, SNAP_SEC_MEMORY_LAYOUT, 0);
	assert_int_equal(
	    snap_mem_layout_decode(data + sec->offset, sec->length, &layout, err, sizeof(err)), 0);
	assert_int_equal(layout.nr_regions, 2);
	assert_memory_equal(layout.regions, expected.regions, 2 * sizeof(expected.regions[0]));
	assert_true(snap_mem_layout_file_size(&layout) == 4ull << 30);

	/* Every vCPU section holds the bytes that went in, at an 8-aligned offset. */
	for (uint32_t cpu = 0; cpu < 2; cpu++) {
		sec = snap_find(&idx, SNAP_SEC_VCPU_XSAVE, cpu);
		assert_non_null(sec);
		assert_int_equal(sec->length, 4096 + 64);
		assert_int_equal(sec->offset % 8, 0);
		pattern_payload(buf, sec->length, SNAP_SEC_VCPU_XSAVE, cpu);
		assert_memory_equal(data + sec->offset, buf, sec->length);
		sec = snap_find(&idx, SNAP_SEC_VCPU_MP_STATE, cpu);
		assert_int_equal(sec->length, 4);
		pattern_payload(buf, 4, SNAP_SEC_VCPU_MP_STATE, cpu);
		assert_memory_equal(data + sec->offset, buf, 4);
		sec = snap_find(&idx, SNAP_SEC_VCPU_MSRS, cpu);
		assert_int_equal(get_le32(data + sec->offset), 3);
	}
	assert_null(snap_find(&idx, SNAP_SEC_VCPU_REGS, 2));

	sec = snap_find(&idx, SNAP_SEC_DEVICE, 0);
	assert_int_equal(
	    snap_device_decode(data + sec->offset, sec->length, &dev, err, sizeof(err)), 0);
	assert_int_equal(dev.kind, SNAP_DEV_SERIAL);
	assert_string_equal(dev.id, "serial0");
	assert_int_equal(dev.state_len, sizeof(serial_state));
	assert_memory_equal(dev.state, serial_state, sizeof(serial_state));
	sec = snap_find(&idx, SNAP_SEC_DEVICE, 1);
	assert_int_equal(
	    snap_device_decode(data + sec->offset, sec->length, &dev, err, sizeof(err)), 0);
	assert_string_equal(dev.id, "i8042");
	assert_int_equal(dev.state_len, 0);
	snap_index_free(&idx);
	free(data);
}

/* The writer's bytes are the format the page describes: the same as the raw encoder's. */
static void test_writer_matches_documented_layout(void **state)
{
	struct scratch *s = *state;
	struct snap_header h = {.nr_caps = 3, .caps = {100, 101, 102}};
	struct snap_writer w;
	struct raw *r = calloc(1, sizeof(*r));
	uint8_t regs[sizeof(struct kvm_regs)], *data;
	char err[ERR_SIZE];
	size_t size;

	strcpy(h.wisp_version, "0.1.0-raw");
	strcpy(h.cpu_vendor, "GenuineIntel");
	pattern_payload(regs, sizeof(regs), 1, 2);
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_add_config(&w, "{}", err, sizeof(err)), 0);
	assert_int_equal(
	    snap_writer_add(&w, SNAP_SEC_VCPU_REGS, 5, regs, sizeof(regs), err, sizeof(err)), 0);
	assert_int_equal(
	    snap_writer_add_device(&w, 7, SNAP_DEV_VIRTIO_NET, "eth0", "xyz", 3, err, sizeof(err)),
	    0);
	assert_int_equal(snap_writer_finish(&w, err, sizeof(err)), 0);
	read_whole(s->path, &data, &size);

	raw_header(r, 3);
	raw_section(r, SNAP_SEC_MACHINE_CONFIG, 0, "{}", 2);
	raw_section(r, SNAP_SEC_VCPU_REGS, 5, regs, sizeof(regs));
	raw_section(r, SNAP_SEC_DEVICE, 7, "\x05\0\0\0\x04\0\0\0eth0xyz", 15);
	raw_end(r);
	assert_int_equal(size, r->len);
	assert_memory_equal(data, r->buf, size);
	free(data);
	free(r);
}

static void test_wrong_magic(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;

	write_full_ok(s->path, &data, &size);
	data[3] ^= 0x20;
	assert_refused(data, size, -EINVAL, "offset 0: no \"WISPSNAP\" magic");
	assert_refused((const uint8_t *)"ELF", 3, -EINVAL, "not a wisp snapshot state file");
	assert_refused(data, 0, -EINVAL, "magic");
	free(data);
}

static void test_other_format_version(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;

	write_full_ok(s->path, &data, &size);
	put_le32(data + 8, 2);
	fix_crc(data, size);
	assert_refused(data, size, -EPROTONOSUPPORT,
		       "offset 8: format version 2; this wisp reads version 1 only");
	/* The version is told even when the rest is damaged: it is checked first. */
	data[size / 2] ^= 1;
	assert_refused(data, size, -EPROTONOSUPPORT, "format version 2");
	free(data);
}

/* A flipped bit anywhere is refused: in the magic, in the version, else by the checksum. */
static void test_every_flipped_byte_refused(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;
	char err[ERR_SIZE];

	write_full_ok(s->path, &data, &size);
	for (size_t i = 0; i < size; i++) {
		int expected = i < 8 ? -EINVAL : i < 12 ? -EPROTONOSUPPORT : -EBADMSG;
		data[i] ^= 0x10;
		err[0] = '\0';
		if (parse_copy(data, size, 0, err) != expected)
			fail_msg("byte %zu flipped: %s", i, err);
		data[i] ^= 0x10;
	}
	free(data);
}

static void test_bad_checksum_message(void **state)
{
	struct scratch *s = *state;
	struct snap_index idx;
	char err[ERR_SIZE], words[128];
	uint8_t *data;
	size_t size;
	uint64_t good;

	write_full_ok(s->path, &data, &size);
	good = get_le64(data + size - 8);
	data[size - 1] ^= 0x80;
	snprintf(words, sizeof(words), "offset %zu: checksum 0x%016llx stored, 0x%016llx computed",
		 size - 8, (unsigned long long)(good ^ (0x80ull << 56)), (unsigned long long)good);
	assert_refused(data, size, -EBADMSG, words);
	/* Advisory: the structure is still walked, and the index says the checksum is bad. */
	assert_int_equal(snap_parse(data, size, SNAP_PARSE_CRC_ADVISORY, &idx, err, sizeof(err)),
			 0);
	assert_false(idx.crc_ok);
	assert_true(idx.crc_checked);
	assert_true(idx.crc_computed == good);
	assert_int_equal(idx.nr_sections, FULL_SECTIONS);
	snap_index_free(&idx);
	free(data);
}

/* Cut at every byte: refused, with or without the checksum check. */
static void test_truncated_at_every_byte(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;
	char err[ERR_SIZE];
	int ret;

	write_full_ok(s->path, &data, &size);
	for (size_t len = 0; len < size; len++) {
		err[0] = '\0';
		ret = parse_copy(data, len, 0, err);
		if (ret == 0 || !err[0])
			fail_msg("cut at %zu bytes of %zu: %d '%s'", len, size, ret, err);
		err[0] = '\0';
		ret = parse_copy(data, len, SNAP_PARSE_CRC_ADVISORY, err);
		if (ret == 0 || !err[0])
			fail_msg("cut at %zu bytes of %zu (advisory checksum): accepted", len,
				 size);
	}
	assert_int_equal(parse_copy(data, size, 0, err), 0);
	/* A byte more is refused too. */
	data = realloc(data, size + 1);
	data[size] = 0;
	assert_int_not_equal(parse_copy(data, size + 1, SNAP_PARSE_CRC_ADVISORY, err), 0);
	free(data);
}

/* Each field of each section header cut short names where the file ends. */
static void test_truncation_messages(void **state)
{
	struct raw *r = calloc(1, sizeof(*r));
	char err[ERR_SIZE];
	size_t full;

	(void)state;
	raw_header(r, 1);
	raw_section(r, SNAP_SEC_MACHINE_CONFIG, 0, "{}", 2);
	raw_end(r);
	full = r->len;
	assert_int_equal(raw_parse(r, err), 0);
	/* Header cut: before the version, then before the minimum size. */
	assert_refused(r->buf, 10, -EINVAL, "cut inside the header");
	assert_refused(r->buf, 60, -EINVAL, "less than the 96 of an empty one");
	/* The end section and checksum cut off, a correct checksum over what is left. */
	for (size_t cut = 88; cut < full - 8; cut += 4) {
		uint8_t copy[256];
		memcpy(copy, r->buf, cut);
		put_le32(copy + cut, 0); /* room for the checksum */
		fix_crc(copy, cut + 8);
		err[0] = '\0';
		if (parse_copy(copy, cut + 8, 0, err) == 0 || !strstr(err, "offset "))
			fail_msg("cut at %zu: %s", cut, err);
	}
	free(r);
}

static void test_absurd_section_lengths(void **state)
{
	static const uint64_t lengths[] = {UINT64_MAX, UINT64_MAX - 6, 1ull << 63, 1ull << 32,
					   SNAP_FILE_MAX};
	struct scratch *s = *state;
	uint8_t *data;
	size_t size, at;

	write_full_ok(s->path, &data, &size);
	at = section_header_at(data, size, SNAP_SEC_VCPU_XSAVE, 1);
	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		uint8_t *copy = malloc(size);
		char words[128];
		memcpy(copy, data, size);
		memcpy(copy + at + 8, &lengths[i], 8);
		fix_crc(copy, size);
		snprintf(words, sizeof(words), "offset %zu: section", at);
		assert_refused(copy, size, -EINVAL, words);
		assert_refused(copy, size, -EINVAL, "runs past the end");
		free(copy);
	}
	/* One byte longer than it is: its padding then holds the next header's bytes. */
	put_le64(data + at + 8, 4096 + 64 + 1);
	fix_crc(data, size);
	assert_refused(data, size, -EINVAL, "padding byte of section");
	free(data);
}

static void test_wrong_fixed_sizes(void **state)
{
	struct raw *r = calloc(1, sizeof(*r));
	uint8_t buf[8192] = {0};

	(void)state;
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_REGS, 0, buf, sizeof(struct kvm_regs) - 8);
	raw_end(r);
	raw_refused(r, "136 bytes, not the 144 this section has");

	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_XSAVE, 0, buf, 4094);
	raw_end(r);
	raw_refused(r, "4094 bytes of XSAVE state");

	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_XSAVE, 0, buf, 1024);
	raw_end(r);
	raw_refused(r, "1024 bytes of XSAVE state");

	raw_header(r, 0);
	raw_section(r, SNAP_SEC_PIT, 0, buf, 0);
	raw_end(r);
	raw_refused(r, "0 bytes, not the 112");
	free(r);
}

static void test_absurd_counts(void **state)
{
	struct raw *r = calloc(1, sizeof(*r));
	uint8_t buf[64] = {0};

	(void)state;
	/* KVM capabilities */
	raw_header(r, 0);
	put_le32(r->buf + 12, 0xffffffff);
	raw_end(r);
	raw_refused(r, "offset 12: 4294967295 KVM capabilities (at most 64)");
	raw_header(r, 64); /* 64 caps, fine, but the list must fit */
	put_le32(r->buf + 12, 64);
	r->len = 64 + 16;
	raw_end(r);
	raw_refused(r, "runs past the sections' end");

	/* MSRs: a count larger than the limit, then larger than the section. */
	put_le32(buf, 0xffffffff);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_MSRS, 0, buf, 8);
	raw_end(r);
	raw_refused(r, "4294967295 MSRs (at most 1024)");
	put_le32(buf, 2);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_MSRS, 0, buf, 24);
	raw_end(r);
	raw_refused(r, "24 bytes for 2 MSRs, not 40");

	/* CPUID entries */
	put_le32(buf, 257);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_CPUID, 0, buf, 8);
	raw_end(r);
	raw_refused(r, "257 CPUID entries (at most 256)");

	/* Memory regions */
	put_le32(buf, 0x10000000);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_MEMORY_LAYOUT, 0, buf, 32);
	raw_end(r);
	raw_refused(r, "268435456 regions (1 to 64 allowed)");
	put_le32(buf, 0);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_MEMORY_LAYOUT, 0, buf, 8);
	raw_end(r);
	raw_refused(r, "0 regions");
	put_le32(buf, 2);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_MEMORY_LAYOUT, 0, buf, 32);
	raw_end(r);
	raw_refused(r, "32 bytes for 2 regions, not 56");

	/* Device id length */
	put_le32(buf, SNAP_DEV_SERIAL);
	put_le32(buf + 4, 0xfffffff0);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_DEVICE, 0, buf, 12);
	raw_end(r);
	raw_refused(r, "id length 4294967280 (1 to 64 allowed, 4 bytes left");

	/* vCPU index */
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_MP_STATE, 256, buf, 4);
	raw_end(r);
	raw_refused(r, "instance 256 (a vCPU's index is below 256)");
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_IOAPIC, 1, buf, 0);
	raw_end(r);
	raw_refused(r, "instance 1 (a VM-wide section's instance is 0)");
	free(r);
}

static void test_too_many_sections(void **state)
{
	struct raw *r = calloc(1, sizeof(*r));
	uint8_t *big;
	size_t len = 0, size;
	uint32_t mp = 0;

	(void)state;
	/* 4097 devices of 16 bytes each, built by hand (the writer stops at 4096). */
	raw_header(r, 0);
	size = r->len + 4097 * 32 + 24 + 8;
	big = malloc(size);
	memcpy(big, r->buf, r->len);
	len = r->len;
	for (uint32_t i = 0; i < 4097; i++) {
		uint8_t sec[32] = {0};
		put_le32(sec, SNAP_SEC_DEVICE);
		put_le32(sec + 4, i);
		put_le32(sec + 8, 9);
		put_le32(sec + 16, SNAP_DEV_SERIAL);
		put_le32(sec + 20, 1);
		sec[24] = 'a';
		memcpy(big + len, sec, 32);
		len += 32;
	}
	memset(big + len, 0, 24);
	put_le32(big + len + 8, 8);
	put_le32(big + len + 16, 4097);
	fix_crc(big, size);
	assert_refused(big, size, -EINVAL, "more than 4096 sections");
	free(big);

	/* The end section must count the sections, and end the file. */
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_MP_STATE, 0, &mp, 4);
	r->sections = 5;
	raw_end(r);
	raw_refused(r, "does not say 1 sections");
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_MP_STATE, 0, &mp, 4);
	raw_end(r);
	r->len -= 8;
	raw_u64(r, 0); /* 8 stray bytes, then a checksum over them */
	raw_u64(r, snap_crc64(0, r->buf, r->len));
	raw_refused(r, "8 bytes after the end section");
	/* No end section at all */
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_VCPU_MP_STATE, 0, &mp, 4);
	raw_section(r, SNAP_SEC_VCPU_MP_STATE, 1, &mp, 4);
	raw_u64(r, snap_crc64(0, r->buf, r->len));
	raw_refused(r, "no end section");
	free(r);
}

static void test_unknown_type_duplicates_padding(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size, at, at2;
	char words[128];

	write_full_ok(s->path, &data, &size);
	at = section_header_at(data, size, SNAP_SEC_KVMCLOCK, 0);
	put_le32(data + at, 0x0042);
	fix_crc(data, size);
	snprintf(words, sizeof(words), "offset %zu: section 6 (type 0x0042 unknown", at);
	assert_refused(data, size, -EINVAL, words);
	assert_refused(data, size, -EINVAL, "unknown section type 0x0042");
	put_le32(data + at, SNAP_SEC_KVMCLOCK);

	/* vCPU 1's LAPIC relabelled as vCPU 0's */
	at = section_header_at(data, size, SNAP_SEC_VCPU_LAPIC, 0);
	at2 = section_header_at(data, size, SNAP_SEC_VCPU_LAPIC, 1);
	put_le32(data + at2 + 4, 0);
	fix_crc(data, size);
	snprintf(words, sizeof(words),
		 "offset %zu: section VCPU_LAPIC instance 0 appears twice (first at offset %zu)",
		 at2, at);
	assert_refused(data, size, -EINVAL, words);
	put_le32(data + at2 + 4, 1);

	/* The padding after the serial's 7-byte id + 5 bytes of state (20 bytes) */
	at = section_header_at(data, size, SNAP_SEC_DEVICE, 0);
	assert_int_equal(get_le64(data + at + 8), 8 + 7 + 5);
	data[at + 16 + 20 + 2] = 1;
	fix_crc(data, size);
	snprintf(words, sizeof(words), "offset %zu: padding byte of section", at + 16 + 22);
	assert_refused(data, size, -EINVAL, words);
	free(data);
}

static void test_header_strings(void **state)
{
	struct raw *r = calloc(1, sizeof(*r));
	uint32_t mp = 0;

	(void)state;
	raw_header(r, 0);
	memset(r->buf + 16, 'v', 32); /* no NUL */
	raw_section(r, SNAP_SEC_VCPU_MP_STATE, 0, &mp, 4);
	raw_end(r);
	raw_refused(r, "offset 16: the wisp version");
	raw_header(r, 0);
	r->buf[48] = 0; /* empty vendor */
	raw_end(r);
	raw_refused(r, "offset 48: the CPU vendor");
	raw_header(r, 0);
	r->buf[62] = 'x'; /* a byte after the NUL */
	raw_end(r);
	raw_refused(r, "offset 48: the CPU vendor");
	raw_header(r, 0);
	r->buf[20] = '\n';
	raw_end(r);
	raw_refused(r, "offset 16: the wisp version");
	raw_header(r, 1);
	r->buf[68] = 1; /* the capability list's padding */
	raw_end(r);
	raw_refused(r, "offset 68: padding byte is not 0");
	free(r);
}

static void check_layout_refused(struct snap_mem_layout *l, const char *words)
{
	struct raw *r = calloc(1, sizeof(*r));
	uint8_t payload[8 + 24 * 4] = {0};
	char err[ERR_SIZE] = "";

	assert_int_equal(snap_mem_layout_check(l, err, sizeof(err)), -EINVAL);
	if (!strstr(err, words))
		fail_msg("expected \"%s\", got: %s", words, err);
	/* The same layout in a file */
	assert_true(l->nr_regions <= 4);
	put_le32(payload, l->nr_regions);
	for (uint32_t i = 0; i < l->nr_regions; i++)
		memcpy(payload + 8 + 24 * i, &l->regions[i], 24);
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_MEMORY_LAYOUT, 0, payload, 8 + 24 * l->nr_regions);
	raw_end(r);
	raw_refused(r, words);
	free(r);
}

static void test_memory_layout_rules(void **state)
{
	struct snap_mem_layout l = test_layout();
	char err[ERR_SIZE];

	(void)state;
	assert_int_equal(snap_mem_layout_check(&l, err, sizeof(err)), 0);
	l.regions[1].gpa = (3ull << 30) - 4096; /* overlaps the first */
	check_layout_refused(&l, "region 1 (guest 0xbffff000) overlaps region 0");
	l = test_layout();
	l.regions[1].gpa = 0x100000; /* out of order */
	check_layout_refused(&l, "overlaps region 0");
	l = test_layout();
	l.regions[1].gpa += 512;
	check_layout_refused(&l, "not aligned to 4 KiB pages");
	l = test_layout();
	l.regions[0].size = 0;
	check_layout_refused(&l, "region 0 (guest 0x0, size 0x0, file offset 0x0) is empty");
	l = test_layout();
	l.regions[1].gpa = 0xfffffffffffff000ull;
	check_layout_refused(&l, "wraps past the end of the address space");
	l = test_layout();
	l.regions[1].file_offset = 0; /* both regions at the same place in the memory file */
	check_layout_refused(&l, "region 1 is at file offset 0x0; the regions lie back to back");
	l = test_layout();
	l.regions[0].file_offset = 4096;
	check_layout_refused(&l, "must be 0x0");
	l.nr_regions = 65;
	assert_int_equal(snap_mem_layout_check(&l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "65 regions"));
}

static void test_config_and_device_contents(void **state)
{
	struct raw *r = calloc(1, sizeof(*r));
	struct snap_device dev;
	char err[ERR_SIZE], *json;
	uint8_t dev_payload[16] = {5, 0, 0, 0, 3, 0, 0, 0, 'a', ' ', 'b'};

	(void)state;
	raw_header(r, 0);
	raw_section(r, SNAP_SEC_MACHINE_CONFIG, 0, "{\"a\":\0}", 7);
	raw_end(r);
	raw_refused(r, "machine configuration: a NUL byte at offset 5 of its text");
	assert_int_equal(snap_config_decode((const uint8_t *)"x", 0, &json, err, sizeof(err)),
			 -EINVAL);
	assert_null(json);

	raw_header(r, 0);
	raw_section(r, SNAP_SEC_DEVICE, 0, dev_payload, 11);
	raw_end(r);
	raw_refused(r, "byte 1 of the id is 0x20, not printable ASCII");
	dev_payload[0] = 99;
	assert_int_equal(snap_device_decode(dev_payload, 11, &dev, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown device kind 99"));
	assert_int_equal(snap_device_decode(dev_payload, 7, &dev, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "less than its 8-byte header"));
	free(r);
}

static void test_writer_refuses_bad_input(void **state)
{
	struct scratch *s = *state;
	struct snap_header h = test_header();
	struct snap_writer w;
	uint8_t buf[200] = {0};
	char err[ERR_SIZE], listing[256], long_id[80];

	memset(h.cpu_vendor, 'A', sizeof(h.cpu_vendor)); /* no NUL */
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad header"));
	h = test_header();
	h.nr_caps = 65;
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), -EINVAL);
	h = test_header();
	assert_int_equal(
	    snap_writer_begin(&w, "/nonexistent-dir/x.state", &h, NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot open its directory /nonexistent-dir"));
	assert_int_equal(snap_writer_begin(&w, "/tmp/", &h, NULL, err, sizeof(err)), -EINVAL);

	/* Each bad section ends the writer, removes its file, and later calls fail. */
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_add(&w, SNAP_SEC_VCPU_REGS, 0, buf, 100, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "section VCPU_REGS instance 0: 100 bytes, not the 144"));
	assert_int_equal(snap_writer_add_config(&w, "{}", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "already failed"));
	assert_int_equal(snap_writer_finish(&w, err, sizeof(err)), -EINVAL);
	dir_listing(s, listing, sizeof(listing));
	assert_string_equal(listing, "");

	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_add(&w, 0x7777, 0, buf, 8, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "unknown section type 0x7777"));
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_add(&w, SNAP_SEC_END, 0, buf, 8, err, sizeof(err)), -EINVAL);
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_add(&w, SNAP_SEC_VCPU_MP_STATE, 3, buf, 4, err, sizeof(err)),
			 0);
	assert_int_equal(snap_writer_add(&w, SNAP_SEC_VCPU_MP_STATE, 3, buf, 4, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "section VCPU_MP_STATE instance 3 added twice"));
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	memset(long_id, 'd', sizeof(long_id));
	long_id[65] = '\0';
	assert_int_equal(
	    snap_writer_add_device(&w, 0, SNAP_DEV_VIRTIO_BLK, long_id, buf, 1, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "id length 65"));
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	struct snap_mem_layout l = test_layout();
	l.regions[1].gpa = 0;
	assert_int_equal(snap_writer_add_mem_layout(&w, &l, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "overlaps"));
	dir_listing(s, listing, sizeof(listing));
	assert_string_equal(listing, "");

	/* abort: the temporary file goes, the target was never created */
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	dir_listing(s, listing, sizeof(listing));
	assert_true(strncmp(listing, ".vm.state.", 10) == 0);
	snap_writer_abort(&w);
	snap_writer_abort(&w);
	dir_listing(s, listing, sizeof(listing));
	assert_string_equal(listing, "");
}

/* 4096 sections is the limit the writer keeps, so that it never writes what the reader
 * refuses. */
static void test_writer_section_limit(void **state)
{
	struct scratch *s = *state;
	struct snap_header h = test_header();
	struct snap_writer w;
	char err[ERR_SIZE];
	uint8_t *data;
	size_t size;

	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	for (uint32_t i = 0; i < SNAP_MAX_SECTIONS; i++)
		assert_int_equal(
		    snap_writer_add_device(&w, i, SNAP_DEV_SERIAL, "s", NULL, 0, err, sizeof(err)),
		    0);
	assert_int_equal(
	    snap_writer_add_device(&w, 4096, SNAP_DEV_SERIAL, "s", NULL, 0, err, sizeof(err)),
	    -EFBIG);
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	for (uint32_t i = 0; i < SNAP_MAX_SECTIONS; i++)
		assert_int_equal(
		    snap_writer_add_device(&w, i, SNAP_DEV_SERIAL, "s", NULL, 0, err, sizeof(err)),
		    0);
	assert_int_equal(snap_writer_finish(&w, err, sizeof(err)), 0);
	read_whole(s->path, &data, &size);
	assert_int_equal(parse_copy(data, size, 0, err), 0);
	free(data);
}

/* ---- fault injection: each system call of a write fails in turn ---- */

static struct {
	int write_calls, fsync_calls, rename_calls;
	int fail_write_at, fail_fsync_at, fail_rename_at; /* 1-based; 0: never */
	int error;
} faults;

static ssize_t faulty_write(int fd, const void *buf, size_t len)
{
	if (++faults.write_calls == faults.fail_write_at) {
		/* A full disk: half of it goes, the next call would say ENOSPC. */
		if (len > 1) {
			ssize_t n = write(fd, buf, len / 2);
			(void)n;
		}
		errno = faults.error;
		return -1;
	}
	/* Short writes otherwise, to exercise the writer's loop. */
	return write(fd, buf, len > 3 ? len - 3 : len);
}

static int faulty_fsync(int fd)
{
	if (++faults.fsync_calls == faults.fail_fsync_at) {
		errno = faults.error;
		return -1;
	}
	return fsync(fd);
}

static int faulty_rename(const char *from, const char *to)
{
	if (++faults.rename_calls == faults.fail_rename_at) {
		errno = faults.error;
		return -1;
	}
	return rename(from, to);
}

static const struct snap_file_ops faulty_ops = {faulty_write, faulty_fsync, faulty_rename};

static void assert_old_file_intact(const struct scratch *s, const uint8_t *old, size_t old_size)
{
	uint8_t *now;
	size_t now_size;
	char listing[256];

	read_whole(s->path, &now, &now_size);
	assert_int_equal(now_size, old_size);
	assert_memory_equal(now, old, old_size);
	free(now);
	dir_listing(s, listing, sizeof(listing));
	assert_string_equal(listing, "vm.state ");
}

static void test_failed_writes_keep_the_old_file(void **state)
{
	struct scratch *s = *state;
	struct snap_header h = test_header();
	struct snap_writer w;
	uint8_t *old, *now;
	size_t old_size, now_size;
	char err[ERR_SIZE], other[256];
	int total_writes;

	/* The old snapshot: a small, different one. */
	assert_int_equal(snap_writer_begin(&w, s->path, &h, NULL, err, sizeof(err)), 0);
	assert_int_equal(snap_writer_add_config(&w, "{\"old\": true}", err, sizeof(err)), 0);
	assert_int_equal(snap_writer_finish(&w, err, sizeof(err)), 0);
	read_whole(s->path, &old, &old_size);

	/* How many writes a full snapshot takes (with the short writes above) */
	memset(&faults, 0, sizeof(faults));
	snprintf(other, sizeof(other), "%s/other.state", s->dir);
	assert_int_equal(write_full(other, &faulty_ops, err), 0);
	total_writes = faults.write_calls;
	assert_true(total_writes > 3 * FULL_SECTIONS);
	assert_int_equal(faults.fsync_calls, 2); /* the file and the directory */
	assert_int_equal(faults.rename_calls, 1);
	unlink(other);

	for (int at = 1; at <= total_writes; at++) {
		memset(&faults, 0, sizeof(faults));
		faults.fail_write_at = at;
		faults.error = at % 2 ? ENOSPC : EIO;
		err[0] = '\0';
		assert_int_equal(write_full(s->path, &faulty_ops, err), -faults.error);
		assert_non_null(
		    strstr(err, at % 2 ? "No space left on device" : "Input/output error"));
		assert_old_file_intact(s, old, old_size);
	}
	/* fsync of the file, then the rename */
	memset(&faults, 0, sizeof(faults));
	faults.fail_fsync_at = 1;
	faults.error = EIO;
	assert_int_equal(write_full(s->path, &faulty_ops, err), -EIO);
	assert_non_null(strstr(err, "cannot fsync"));
	assert_old_file_intact(s, old, old_size);
	memset(&faults, 0, sizeof(faults));
	faults.fail_rename_at = 1;
	faults.error = EXDEV;
	assert_int_equal(write_full(s->path, &faulty_ops, err), -EXDEV);
	assert_non_null(strstr(err, "cannot rename"));
	assert_old_file_intact(s, old, old_size);

	/* The directory's fsync comes after the rename: the new, complete file is there. */
	memset(&faults, 0, sizeof(faults));
	faults.fail_fsync_at = 2;
	faults.error = EIO;
	assert_int_equal(write_full(s->path, &faulty_ops, err), -EIO);
	assert_non_null(strstr(err, "written and renamed, but fsync of its directory failed"));
	read_whole(s->path, &now, &now_size);
	assert_int_equal(parse_copy(now, now_size, 0, err), 0);
	assert_int_not_equal(now_size, old_size);
	free(now);
	free(old);
}

static void test_vendor_check(void **state)
{
	struct snap_header h = test_header();
	char err[ERR_SIZE];

	(void)state;
	assert_int_equal(snap_check_vendor(&h, "AuthenticAMD", err, sizeof(err)), 0);
	assert_int_equal(snap_check_vendor(&h, "GenuineIntel", err, sizeof(err)), -ENOTSUP);
	assert_string_equal(err, "state file was written on a host whose CPU vendor is "
				 "AuthenticAMD; this host's is GenuineIntel: restore it on a host "
				 "with the same CPU vendor");
}

static void test_read_file_errors(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;
	char err[ERR_SIZE];
	int fd;

	assert_int_equal(snap_read_file(s->path, &data, &size, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot open"));
	assert_int_equal(snap_read_file(s->dir, &data, &size, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	/* A FIFO without a writer: refused at once, not waited on */
	assert_int_equal(mkfifo(s->path, 0600), 0);
	assert_int_equal(snap_read_file(s->path, &data, &size, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	unlink(s->path);
	fd = open(s->path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)SNAP_FILE_MAX + 1), 0);
	close(fd);
	assert_int_equal(snap_read_file(s->path, &data, &size, err, sizeof(err)), -EFBIG);
	assert_null(data);
	unlink(s->path);
}

/* ---- snapshot-info ---- */

static char *info_of(const uint8_t *data, size_t size, const char *host, int *ret, char *err)
{
	char *text = NULL;
	size_t text_size = 0;
	FILE *out = open_memstream(&text, &text_size);

	assert_non_null(out);
	*ret = snapshot_info_print(out, "vm.state", data, size, host, err, ERR_SIZE);
	fclose(out);
	return text;
}

static void assert_has(const char *text, const char *words)
{
	if (!strstr(text, words))
		fail_msg("\"%s\" not in:\n%s", words, text);
}

static void test_snapshot_info_valid(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;
	char err[ERR_SIZE], *text, line[128];
	int ret;

	write_full_ok(s->path, &data, &size);
	text = info_of(data, size, "AuthenticAMD", &ret, err);
	assert_int_equal(ret, 0);
	snprintf(line, sizeof(line), "state file: vm.state (%zu bytes)\n", size);
	assert_has(text, line);
	assert_has(text, "format version: 1\nwisp version: 0.1.0-test\n");
	assert_has(text, "CPU vendor: AuthenticAMD (this host's)\n");
	assert_has(text, "KVM capabilities: 3\n  KVM_CAP_IRQCHIP (0)\n  KVM_CAP_XSAVE (55)\n"
			 "  capability 9999\n");
	assert_has(text, "vCPUs: 2 (0, 1)\n");
	assert_has(text, "memory layout: 2 regions, 4096 MiB, memory file of 4294967296 bytes\n"
			 "  guest 0x0-0xbfffffff (3145728 KiB) at memory file offset 0x0\n"
			 "  guest 0x100000000-0x13fffffff (1048576 KiB) at memory file offset "
			 "0xc0000000\n");
	snprintf(line, sizeof(line),
		 "machine configuration: %zu bytes of JSON, vcpu_count 2, mem_size_mib 3072\n",
		 strlen(config_json));
	assert_has(text, line);
	assert_has(text, "devices: 3\n  serial 'serial0' (instance 0): 5 bytes of state\n"
			 "  i8042 'i8042' (instance 1): 0 bytes of state\n"
			 "  virtio-blk 'rootfs' (instance 2): 300 bytes of state\n");
	snprintf(line, sizeof(line),
		 "sections: 32\n  MACHINE_CONFIG  instance 0   %8zu bytes at offset 96\n",
		 strlen(config_json));
	assert_has(text, line);
	assert_has(text, "  VCPU_XSAVE      instance 1       4160 bytes at offset ");
	snprintf(line, sizeof(line), "checksum: good (0x%016llx)\n",
		 (unsigned long long)get_le64(data + size - 8));
	assert_has(text, line);
	free(text);

	text = info_of(data, size, "GenuineIntel", &ret, err);
	assert_int_equal(ret, 0);
	assert_has(text, "CPU vendor: AuthenticAMD (not this host's: it cannot be restored here)");
	free(text);
	free(data);
}

static void test_snapshot_info_bad(void **state)
{
	struct scratch *s = *state;
	uint8_t *data;
	size_t size;
	char err[ERR_SIZE], *text, line[160];
	uint64_t good;
	int ret;

	write_full_ok(s->path, &data, &size);
	good = get_le64(data + size - 8);
	data[200] ^= 4;
	text = info_of(data, size, NULL, &ret, err);
	assert_int_equal(ret, -EBADMSG);
	assert_has(err, "checksum");
	assert_has(text, "vCPUs: 2 (0, 1)\n"); /* still shows what it holds */
	snprintf(line, sizeof(line), "checksum: BAD (stored 0x%016llx, computed 0x",
		 (unsigned long long)good);
	assert_has(text, line);
	free(text);

	/* Structure broken too: the reason, and the checksum line */
	put_le64(data + section_header_at(data, size, SNAP_SEC_PIT, 0) + 8, UINT64_MAX);
	text = info_of(data, size, NULL, &ret, err);
	assert_int_equal(ret, -EINVAL);
	assert_has(text, "invalid: state file: offset ");
	assert_has(text, "runs past the end");
	assert_has(text, "checksum: BAD (stored");
	free(text);

	/* Not a state file: no checksum to speak of */
	text = info_of((const uint8_t *)"#!/bin/sh\n", 10, NULL, &ret, err);
	assert_int_equal(ret, -EINVAL);
	assert_has(text, "invalid: not a wisp snapshot state file");
	assert_null(strstr(text, "checksum"));
	free(text);
	free(data);
}

#define SCRATCH_TEST(f) cmocka_unit_test_setup_teardown(f, scratch_setup, scratch_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc64_xz_check_value),
	    cmocka_unit_test(test_host_vendor_is_cpuid_string),
	    SCRATCH_TEST(test_round_trip),
	    SCRATCH_TEST(test_writer_matches_documented_layout),
	    SCRATCH_TEST(test_wrong_magic),
	    SCRATCH_TEST(test_other_format_version),
	    SCRATCH_TEST(test_every_flipped_byte_refused),
	    SCRATCH_TEST(test_bad_checksum_message),
	    SCRATCH_TEST(test_truncated_at_every_byte),
	    cmocka_unit_test(test_truncation_messages),
	    SCRATCH_TEST(test_absurd_section_lengths),
	    cmocka_unit_test(test_wrong_fixed_sizes),
	    cmocka_unit_test(test_absurd_counts),
	    cmocka_unit_test(test_too_many_sections),
	    SCRATCH_TEST(test_unknown_type_duplicates_padding),
	    cmocka_unit_test(test_header_strings),
	    cmocka_unit_test(test_memory_layout_rules),
	    cmocka_unit_test(test_config_and_device_contents),
	    SCRATCH_TEST(test_writer_refuses_bad_input),
	    SCRATCH_TEST(test_writer_section_limit),
	    SCRATCH_TEST(test_failed_writes_keep_the_old_file),
	    cmocka_unit_test(test_vendor_check),
	    SCRATCH_TEST(test_read_file_errors),
	    SCRATCH_TEST(test_snapshot_info_valid),
	    SCRATCH_TEST(test_snapshot_info_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
