/*
 * libFuzzer target for the snapshot state file reader (vmm/snapshot_format.c) and
 * `wisp snapshot-info`'s printer (vmm/snapshot_info.c).
 *
 * Input: a state file, as the seeds in corpus/snapshot/ are. A mutated file almost never
 * keeps a good checksum, so the target parses each input three ways: as it is (strict), with
 * the checksum advisory (SNAP_PARSE_CRC_ADVISORY, as snapshot-info does), and with its last
 * 8 bytes replaced by the right CRC-64 so that the strict parser reaches the sections. Each
 * parse gets a heap block of exactly the input's size, so ASan sees any read past it.
 *
 * Invariants (a violation calls __builtin_trap()): an error leaves no index and a non-empty
 * message; an accepted file has a good checksum unless advisory, and the advisory parse of a
 * file agrees with the strict one on everything but crc_ok; every section lies inside
 * [end of header, size - 32) (before the end section and checksum), starts 8-aligned, after
 * the previous one, and is found by snap_find(); no (type, instance) twice; its type has a
 * name; the memory layout, configuration and device sections decode (and the layout's check
 * passes); the header's strings are NUL-terminated and non-empty, nr_caps <= SNAP_MAX_CAPS.
 * The printer runs on every input and must return what the advisory parse says.
 *
 * Build: clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Ivmm \
 *          tests/fuzz/fuzz_snapshot.c vmm/snapshot_format.c vmm/snapshot_info.c \
 *          -ljansson -o /tmp/fuzz_snapshot
 */
#include "snapshot_format.h"
#include "snapshot_info.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

#define ERR_SIZE 512

static FILE *null_out;

static void check_index(const uint8_t *data, size_t size, const struct snap_index *idx)
{
	uint64_t sections_start = SNAP_HEADER_SIZE + 4ull * idx->header.nr_caps;
	uint64_t prev_end = 0;
	char err[ERR_SIZE];

	CHECK(idx->file_size == size && size >= SNAP_MIN_FILE_SIZE && size <= SNAP_FILE_MAX);
	CHECK(idx->crc_checked);
	CHECK(idx->header.format_version == SNAP_FORMAT_VERSION);
	CHECK(idx->header.nr_caps <= SNAP_MAX_CAPS);
	CHECK(idx->header.wisp_version[0] &&
	      memchr(idx->header.wisp_version, 0, SNAP_WISP_VERSION_SIZE));
	CHECK(idx->header.cpu_vendor[0] && memchr(idx->header.cpu_vendor, 0, SNAP_VENDOR_SIZE));
	CHECK(idx->nr_sections <= SNAP_MAX_SECTIONS);
	CHECK(idx->nr_sections == 0 || idx->sections);
	for (uint32_t i = 0; i < idx->nr_sections; i++) {
		const struct snap_section *s = &idx->sections[i];
		const uint8_t *payload = data + s->offset;

		CHECK(snap_section_name(s->type) && s->type != SNAP_SEC_END);
		CHECK(s->offset % 8 == 0);
		CHECK(s->offset >= sections_start + SNAP_SECTION_HDR_SIZE);
		CHECK(s->offset - SNAP_SECTION_HDR_SIZE >= prev_end);
		/* The end section (24 bytes) and the checksum follow the last section. */
		CHECK(s->length <= size);
		prev_end = s->offset + ((s->length + 7) & ~7ull);
		CHECK(prev_end <= size - 24 - SNAP_CRC_SIZE);
		CHECK(snap_find(idx, s->type, s->instance) == s);
		if (s->type == SNAP_SEC_MEMORY_LAYOUT) {
			struct snap_mem_layout layout;
			CHECK(snap_mem_layout_decode(payload, s->length, &layout, err,
						     sizeof(err)) == 0);
			CHECK(snap_mem_layout_check(&layout, err, sizeof(err)) == 0);
			CHECK(layout.nr_regions >= 1 && layout.nr_regions <= SNAP_MAX_MEM_REGIONS);
		} else if (s->type == SNAP_SEC_MACHINE_CONFIG) {
			char *json;
			CHECK(snap_config_decode(payload, s->length, &json, err, sizeof(err)) == 0);
			CHECK(strlen(json) == s->length);
			free(json);
		} else if (s->type == SNAP_SEC_DEVICE) {
			struct snap_device dev;
			CHECK(snap_device_decode(payload, s->length, &dev, err, sizeof(err)) == 0);
			CHECK(dev.id[0] && strlen(dev.id) <= SNAP_DEVICE_ID_MAX);
			CHECK(dev.state + dev.state_len == payload + s->length);
			CHECK(snap_device_kind_name(dev.kind));
		}
	}
}

static int parse(const uint8_t *data, size_t size, unsigned int flags, struct snap_index *idx)
{
	char err[ERR_SIZE] = "";
	int ret = snap_parse(data, size, flags, idx, err, sizeof(err));

	if (ret) {
		CHECK(ret < 0 && err[0] && idx->sections == NULL && idx->nr_sections == 0);
		return ret;
	}
	CHECK(idx->crc_ok || (flags & SNAP_PARSE_CRC_ADVISORY));
	check_index(data, size, idx);
	return 0;
}

/* Strict and advisory parses of one buffer agree; returns the strict result. */
static int parse_both(const uint8_t *data, size_t size)
{
	struct snap_index strict, advisory;
	int strict_ret = parse(data, size, 0, &strict);
	int advisory_ret = parse(data, size, SNAP_PARSE_CRC_ADVISORY, &advisory);
	char err[ERR_SIZE];

	if (strict_ret == 0) {
		CHECK(advisory_ret == 0 && advisory.crc_ok);
		CHECK(advisory.nr_sections == strict.nr_sections);
		CHECK(!memcmp(&advisory.header, &strict.header, sizeof(strict.header)));
		CHECK(!memcmp(advisory.sections, strict.sections,
			      strict.nr_sections * sizeof(*strict.sections)));
		snap_index_free(&strict);
	} else if (strict_ret != -EBADMSG) {
		/* Refused before or after the checksum for a reason advisory mode shares. */
		CHECK(advisory_ret == strict_ret);
	}
	if (advisory_ret == 0) {
		CHECK(strict_ret == 0 || (strict_ret == -EBADMSG && !advisory.crc_ok));
		snap_index_free(&advisory);
	}
	/* The printer says the same as the advisory parse, plus the checksum. */
	int info_ret =
	    snapshot_info_print(null_out, "fuzz", data, size, "AuthenticAMD", err, sizeof(err));
	CHECK(info_ret == (advisory_ret ? advisory_ret : strict_ret));
	return strict_ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
	uint8_t *copy;

	if (!null_out)
		null_out = fopen("/dev/null", "w");
	CHECK(null_out);
	if (size > (1u << 20))
		return 0;
	copy = malloc(size ? size : 1);
	CHECK(copy);
	memcpy(copy, input, size);
	parse_both(copy, size);
	if (size >= SNAP_CRC_SIZE) {
		uint64_t crc = snap_crc64(0, copy, size - SNAP_CRC_SIZE);
		memcpy(copy + size - SNAP_CRC_SIZE, &crc, SNAP_CRC_SIZE);
		int ret = parse_both(copy, size);
		/* With a right checksum, only these errors remain. */
		CHECK(ret == 0 || ret == -EINVAL || ret == -EPROTONOSUPPORT);
	}
	free(copy);
	return 0;
}
