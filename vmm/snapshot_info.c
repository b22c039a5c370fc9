/* `wisp snapshot-info STATE`: reads a state file and prints what it holds. */
#include "snapshot_info.h"
#include "snapshot_format.h"

#include <errno.h>
#include <jansson.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_VALID   0
#define EXIT_INVALID 2 /* wisp's status for bad input */

static void print_caps(FILE *out, const struct snap_header *h)
{
	fprintf(out, "KVM capabilities: %u\n", h->nr_caps);
	for (uint32_t i = 0; i < h->nr_caps; i++) {
		const char *name = snap_kvm_cap_name(h->caps[i]);
		if (name)
			fprintf(out, "  %s (%u)\n", name, h->caps[i]);
		else
			fprintf(out, "  capability %u\n", h->caps[i]);
	}
}

static void print_vcpus(FILE *out, const struct snap_index *idx)
{
	bool seen[SNAP_MAX_VCPUS] = {false};
	unsigned int count = 0;

	for (uint32_t i = 0; i < idx->nr_sections; i++) {
		const struct snap_section *s = &idx->sections[i];
		if (s->type >= SNAP_SEC_VCPU_REGS && s->type <= SNAP_SEC_VCPU_TSC_KHZ &&
		    s->instance < SNAP_MAX_VCPUS && !seen[s->instance]) {
			seen[s->instance] = true;
			count++;
		}
	}
	fprintf(out, "vCPUs: %u", count);
	for (unsigned int i = 0, n = 0; i < SNAP_MAX_VCPUS; i++)
		if (seen[i])
			fprintf(out, "%s%u", n++ ? ", " : " (", i);
	fprintf(out, "%s\n", count ? ")" : "");
}

static void print_mem_layout(FILE *out, const uint8_t *data, const struct snap_index *idx)
{
	const struct snap_section *s = snap_find(idx, SNAP_SEC_MEMORY_LAYOUT, 0);
	struct snap_mem_layout *layout;
	char err[256];

	if (!s) {
		fprintf(out, "memory layout: none\n");
		return;
	}
	layout = malloc(sizeof(*layout));
	if (!layout ||
	    snap_mem_layout_decode(data + s->offset, s->length, layout, err, sizeof(err))) {
		fprintf(out, "memory layout: %s\n", layout ? err : "out of memory");
		free(layout);
		return;
	}
	fprintf(out, "memory layout: %u region%s, %llu MiB, memory file of %llu bytes\n",
		layout->nr_regions, layout->nr_regions == 1 ? "" : "s",
		(unsigned long long)(snap_mem_layout_file_size(layout) >> 20),
		(unsigned long long)snap_mem_layout_file_size(layout));
	for (uint32_t i = 0; i < layout->nr_regions; i++) {
		const struct snap_mem_region *r = &layout->regions[i];
		fprintf(out, "  guest 0x%llx-0x%llx (%llu KiB) at memory file offset 0x%llx\n",
			(unsigned long long)r->gpa, (unsigned long long)(r->gpa + r->size - 1),
			(unsigned long long)(r->size >> 10), (unsigned long long)r->file_offset);
	}
	free(layout);
}

/* The configuration is GET /vm/config's JSON; its machine-config says what the VM was. */
static void print_config(FILE *out, const uint8_t *data, const struct snap_index *idx)
{
	const struct snap_section *s = snap_find(idx, SNAP_SEC_MACHINE_CONFIG, 0);
	json_t *root, *machine;
	json_error_t error;

	if (!s) {
		fprintf(out, "machine configuration: none\n");
		return;
	}
	fprintf(out, "machine configuration: %llu bytes of JSON", (unsigned long long)s->length);
	root = json_loadb((const char *)data + s->offset, s->length, 0, &error);
	if (!root) {
		fprintf(out, " that do not parse: %s (line %d)\n", error.text, error.line);
		return;
	}
	machine = json_object_get(root, "machine-config");
	if (json_is_object(machine)) {
		json_t *vcpus = json_object_get(machine, "vcpu_count");
		json_t *mem = json_object_get(machine, "mem_size_mib");
		if (json_is_integer(vcpus))
			fprintf(out, ", vcpu_count %lld", (long long)json_integer_value(vcpus));
		if (json_is_integer(mem))
			fprintf(out, ", mem_size_mib %lld", (long long)json_integer_value(mem));
	}
	fputc('\n', out);
	json_decref(root);
}

static void print_devices(FILE *out, const uint8_t *data, const struct snap_index *idx)
{
	unsigned int count = 0;

	for (uint32_t i = 0; i < idx->nr_sections; i++)
		count += idx->sections[i].type == SNAP_SEC_DEVICE;
	fprintf(out, "devices: %u\n", count);
	for (uint32_t i = 0; i < idx->nr_sections; i++) {
		const struct snap_section *s = &idx->sections[i];
		struct snap_device dev;
		char err[256];

		if (s->type != SNAP_SEC_DEVICE)
			continue;
		if (snap_device_decode(data + s->offset, s->length, &dev, err, sizeof(err))) {
			fprintf(out, "  instance %u: %s\n", s->instance, err);
			continue;
		}
		fprintf(out, "  %s '%s' (instance %u): %llu bytes of state\n",
			snap_device_kind_name(dev.kind), dev.id, s->instance,
			(unsigned long long)dev.state_len);
	}
}

static void print_sections(FILE *out, const struct snap_index *idx)
{
	fprintf(out, "sections: %u\n", idx->nr_sections);
	for (uint32_t i = 0; i < idx->nr_sections; i++) {
		const struct snap_section *s = &idx->sections[i];
		fprintf(out, "  %-15s instance %-3u %8llu bytes at offset %llu\n",
			snap_section_name(s->type), s->instance, (unsigned long long)s->length,
			(unsigned long long)s->offset);
	}
}

static void print_checksum(FILE *out, const struct snap_index *idx)
{
	if (idx->crc_ok)
		fprintf(out, "checksum: good (0x%016llx)\n", (unsigned long long)idx->crc_stored);
	else
		fprintf(out, "checksum: BAD (stored 0x%016llx, computed 0x%016llx)\n",
			(unsigned long long)idx->crc_stored, (unsigned long long)idx->crc_computed);
}

int snapshot_info_print(FILE *out, const char *name, const uint8_t *data, size_t size,
			const char *host_vendor, char *err, size_t err_size)
{
	struct snap_index idx;
	int ret = snap_parse(data, size, SNAP_PARSE_CRC_ADVISORY, &idx, err, err_size);

	fprintf(out, "state file: %s (%zu bytes)\n", name, size);
	if (ret) {
		fprintf(out, "invalid: %s\n", err);
		if (idx.crc_checked)
			print_checksum(out, &idx);
		return ret;
	}
	fprintf(out, "format version: %u\n", idx.header.format_version);
	fprintf(out, "wisp version: %s\n", idx.header.wisp_version);
	fprintf(out, "CPU vendor: %s", idx.header.cpu_vendor);
	if (host_vendor)
		fprintf(out, " (%s)",
			strcmp(host_vendor, idx.header.cpu_vendor)
			    ? "not this host's: it cannot be restored here"
			    : "this host's");
	fputc('\n', out);
	print_caps(out, &idx.header);
	print_vcpus(out, &idx);
	print_mem_layout(out, data, &idx);
	print_config(out, data, &idx);
	print_devices(out, data, &idx);
	print_sections(out, &idx);
	print_checksum(out, &idx);
	if (!idx.crc_ok) {
		snprintf(err, err_size,
			 "state file %s: checksum 0x%016llx stored, 0x%016llx computed (damaged or "
			 "truncated)",
			 name, (unsigned long long)idx.crc_stored,
			 (unsigned long long)idx.crc_computed);
		ret = -EBADMSG;
	}
	snap_index_free(&idx);
	return ret;
}

int snapshot_info_main(int argc, char *argv[])
{
	char err[512], vendor[SNAP_VENDOR_SIZE];
	uint8_t *data;
	size_t size;
	int ret;

	static const char usage[] =
	    "Usage: wisp snapshot-info STATE\n"
	    "Prints what a snapshot state file holds (versions, CPU vendor, KVM capabilities,\n"
	    "vCPUs, memory layout, devices, sections and their sizes) and whether its checksum\n"
	    "is good. Exit status 0 when the file is valid, 2 when not.\n";

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return EXIT_VALID;
	}
	if (argc != 2) {
		fprintf(stderr, "wisp: snapshot-info takes one state file\n%s", usage);
		return EXIT_INVALID;
	}
	if (snap_read_file(argv[1], &data, &size, err, sizeof(err))) {
		fprintf(stderr, "wisp: %s\n", err);
		return EXIT_INVALID;
	}
	snap_host_cpu_vendor(vendor);
	ret = snapshot_info_print(stdout, argv[1], data, size, vendor, err, sizeof(err));
	free(data);
	fflush(stdout);
	if (ret) {
		fprintf(stderr, "wisp: %s\n", err);
		return EXIT_INVALID;
	}
	return EXIT_VALID;
}
