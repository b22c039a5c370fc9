/*
 * The Uffd backend's mappings JSON and the handler's page lists (uffd_proto.h).
 */
#include "uffd_proto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "snapshot_format.h"


static bool valid_page_size(uint64_t page_size)
{
	return page_size == UFFD_PAGE_SIZE || page_size == UFFD_HUGE_PAGE_SIZE;
}

int uffd_mappings_check(const struct uffd_mapping *maps, unsigned int count, char *err,
			size_t err_size)
{
	if (count == 0 || count > UFFD_MAX_MAPPINGS) {
		snap_set_err(err, err_size, "uffd mappings: %u regions (1 to %u allowed)", count,
			UFFD_MAX_MAPPINGS);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < count; i++) {
		const struct uffd_mapping *m = &maps[i];

		if (!valid_page_size(m->page_size)) {
			snap_set_err(err, err_size,
				"uffd mapping %u: page size %" PRIu64 " (4096 or 2097152 allowed)",
				i, m->page_size);
			return -EINVAL;
		}
		if (m->size == 0 || m->base_host_virt_addr % m->page_size ||
		    m->size % m->page_size || m->offset % m->page_size) {
			snap_set_err(err, err_size,
				"uffd mapping %u: address 0x%" PRIx64 ", size 0x%" PRIx64
				", offset 0x%" PRIx64 ": empty or not aligned to its %" PRIu64
				"-byte pages",
				i, m->base_host_virt_addr, m->size, m->offset, m->page_size);
			return -EINVAL;
		}
		/* Both ends must stay below 2^63: JSON integers are signed 64-bit. */
		if (m->base_host_virt_addr > INT64_MAX ||
		    m->size > INT64_MAX - m->base_host_virt_addr || m->offset > INT64_MAX ||
		    m->size > INT64_MAX - m->offset) {
			snap_set_err(err, err_size,
				"uffd mapping %u: address 0x%" PRIx64 " or offset 0x%" PRIx64
				" plus size 0x%" PRIx64 " overflows",
				i, m->base_host_virt_addr, m->offset, m->size);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < i; j++) {
			const struct uffd_mapping *o = &maps[j];
			if (m->base_host_virt_addr < o->base_host_virt_addr + o->size &&
			    o->base_host_virt_addr < m->base_host_virt_addr + m->size) {
				snap_set_err(err, err_size,
					"uffd mappings %u and %u overlap in host memory (0x%" PRIx64
					" and 0x%" PRIx64 ")",
					j, i, o->base_host_virt_addr, m->base_host_virt_addr);
				return -EINVAL;
			}
			if (m->offset < o->offset + o->size && o->offset < m->offset + m->size) {
				snap_set_err(
				    err, err_size,
				    "uffd mappings %u and %u overlap in the memory file (offsets "
				    "0x%" PRIx64 " and 0x%" PRIx64 ")",
				    j, i, o->offset, m->offset);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int uffd_mappings_to_json(const struct uffd_mapping *maps, unsigned int count, char **json,
			  size_t *len, char *err, size_t err_size)
{
	int ret = uffd_mappings_check(maps, count, err, err_size);
	if (ret < 0)
		return ret;

	json_t *array = json_array();
	if (!array)
		goto nomem;
	for (unsigned int i = 0; i < count; i++) {
		json_t *obj = json_pack(
		    "{s:I, s:I, s:I, s:I, s:I}", "base_host_virt_addr",
		    (json_int_t)maps[i].base_host_virt_addr, "size", (json_int_t)maps[i].size,
		    "offset", (json_int_t)maps[i].offset, "page_size",
		    (json_int_t)maps[i].page_size, "page_size_kib", (json_int_t)maps[i].page_size);
		if (!obj || json_array_append_new(array, obj) < 0)
			goto nomem_array;
	}
	char *text = json_dumps(array, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(array);
	if (!text)
		goto nomem;
	*json = text;
	*len = strlen(text);
	return 0;

nomem_array:
	json_decref(array);
nomem:
	snap_set_err(err, err_size, "uffd mappings: out of memory formatting the JSON");
	return -ENOMEM;
}

static int get_u64(json_t *obj, unsigned int index, const char *name, bool required,
		   uint64_t *value, char *err, size_t err_size)
{
	json_t *v = json_object_get(obj, name);
	if (!v) {
		if (!required)
			return -ENOENT;
		snap_set_err(err, err_size, "uffd mappings: element %u has no \"%s\"", index, name);
		return -EINVAL;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snap_set_err(err, err_size,
			"uffd mappings: element %u: \"%s\" is not a non-negative integer", index,
			name);
		return -EINVAL;
	}
	*value = (uint64_t)json_integer_value(v);
	return 0;
}

int uffd_mappings_parse(const char *json, size_t len, struct uffd_mapping *maps, unsigned int max,
			unsigned int *count, char *err, size_t err_size)
{
	json_error_t jerr;
	int ret = -EINVAL;

	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snap_set_err(err, err_size, "uffd mappings: not JSON: %s (at byte %d)", jerr.text,
			jerr.position);
		return -EINVAL;
	}
	if (!json_is_array(root)) {
		snap_set_err(err, err_size, "uffd mappings: not a JSON array");
		goto out;
	}
	size_t n = json_array_size(root);
	if (n == 0 || n > max || n > UFFD_MAX_MAPPINGS) {
		snap_set_err(err, err_size, "uffd mappings: %zu regions (1 to %u allowed)", n,
			max < UFFD_MAX_MAPPINGS ? max : UFFD_MAX_MAPPINGS);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *obj = json_array_get(root, i);
		struct uffd_mapping *m = &maps[i];
		if (!json_is_object(obj)) {
			snap_set_err(err, err_size, "uffd mappings: element %zu is not an object", i);
			goto out;
		}
		if (get_u64(obj, i, "base_host_virt_addr", true, &m->base_host_virt_addr, err,
			    err_size) < 0 ||
		    get_u64(obj, i, "size", true, &m->size, err, err_size) < 0 ||
		    get_u64(obj, i, "offset", true, &m->offset, err, err_size) < 0)
			goto out;
		int r = get_u64(obj, i, "page_size", false, &m->page_size, err, err_size);
		if (r == -ENOENT)
			r = get_u64(obj, i, "page_size_kib", false, &m->page_size, err, err_size);
		if (r == -ENOENT) {
			snap_set_err(err, err_size,
				"uffd mappings: element %zu has neither \"page_size\" nor "
				"\"page_size_kib\"",
				i);
			goto out;
		}
		if (r < 0)
			goto out;
		/* Firecracker sends bytes under both names; a value that can only be KiB (no
		 * page is 4 or 2048 bytes) is taken as KiB. */
		if (m->page_size == UFFD_PAGE_SIZE / 1024 ||
		    m->page_size == UFFD_HUGE_PAGE_SIZE / 1024)
			m->page_size *= 1024;
	}
	ret = uffd_mappings_check(maps, (unsigned int)n, err, err_size);
	if (ret == 0)
		*count = (unsigned int)n;
out:
	json_decref(root);
	return ret;
}

int uffd_mapping_find_addr(const struct uffd_mapping *maps, unsigned int count, uint64_t addr,
			   unsigned int *index, uint64_t *file_offset)
{
	for (unsigned int i = 0; i < count; i++) {
		const struct uffd_mapping *m = &maps[i];
		if (addr >= m->base_host_virt_addr && addr - m->base_host_virt_addr < m->size) {
			*index = i;
			*file_offset = m->offset + (addr - m->base_host_virt_addr);
			return 0;
		}
	}
	return -ENOENT;
}

int uffd_mapping_find_offset(const struct uffd_mapping *maps, unsigned int count,
			     uint64_t file_offset, unsigned int *index, uint64_t *addr)
{
	for (unsigned int i = 0; i < count; i++) {
		const struct uffd_mapping *m = &maps[i];
		if (file_offset >= m->offset && file_offset - m->offset < m->size) {
			*index = i;
			*addr = m->base_host_virt_addr + (file_offset - m->offset);
			return 0;
		}
	}
	return -ENOENT;
}

/* Parses one number: "0x..." hex or decimal, no sign, nothing after it. */
static int parse_offset(const char *s, size_t len, uint64_t *value)
{
	unsigned int base = 10;
	uint64_t v = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		len -= 2;
	}
	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned int digit;
		char c = s[i];
		if (c >= '0' && c <= '9')
			digit = (unsigned int)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			digit = (unsigned int)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			digit = (unsigned int)(c - 'A' + 10);
		else
			return -EINVAL;
		if (v > (UINT64_MAX - digit) / base)
			return -ERANGE;
		v = v * base + digit;
	}
	*value = v;
	return 0;
}

int uffd_page_list_parse(const char *text, size_t len, uint64_t page_size, uint64_t **offsets,
			 size_t *count, char *err, size_t err_size)
{
	uint64_t *list = NULL;
	size_t n = 0, cap = 0;
	unsigned long line_no = 0;
	size_t pos = 0;

	if (page_size == 0) {
		snap_set_err(err, err_size, "page list: page size 0");
		return -EINVAL;
	}
	while (pos < len) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - line) : len - pos;
		pos += line_len + (nl ? 1 : 0);
		line_no++;

		/* Trim spaces, tabs and a CR at both ends. */
		while (line_len && (line[0] == ' ' || line[0] == '\t')) {
			line++;
			line_len--;
		}
		while (line_len && (line[line_len - 1] == ' ' || line[line_len - 1] == '\t' ||
				    line[line_len - 1] == '\r'))
			line_len--;
		if (line_len == 0 || line[0] == '#')
			continue;

		uint64_t offset;
		int r = parse_offset(line, line_len, &offset);
		if (r < 0) {
			snap_set_err(err, err_size, "page list: line %lu: \"%.*s\" is %s", line_no,
				(int)(line_len > 40 ? 40 : line_len), line,
				r == -ERANGE ? "too large" : "not a hex (0x...) or decimal offset");
			goto fail;
		}
		if (offset % page_size) {
			snap_set_err(err, err_size,
				"page list: line %lu: offset 0x%" PRIx64
				" is not aligned to the %" PRIu64 "-byte page",
				line_no, offset, page_size);
			goto fail;
		}
		if (n == cap) {
			size_t new_cap = cap ? cap * 2 : 256;
			uint64_t *grown = realloc(list, new_cap * sizeof(*list));
			if (!grown) {
				snap_set_err(err, err_size, "page list: out of memory at line %lu",
					line_no);
				free(list);
				return -ENOMEM;
			}
			list = grown;
			cap = new_cap;
		}
		list[n++] = offset;
	}
	*offsets = list;
	*count = n;
	return 0;

fail:
	free(list);
	return -EINVAL;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

size_t uffd_page_list_normalize(uint64_t *offsets, size_t count)
{
	if (count == 0)
		return 0;
	qsort(offsets, count, sizeof(*offsets), compare_u64);
	size_t out = 1;
	for (size_t i = 1; i < count; i++)
		if (offsets[i] != offsets[out - 1])
			offsets[out++] = offsets[i];
	return out;
}

int uffd_page_list_next_run(const uint64_t *offsets, size_t count, uint64_t page_size, size_t *pos,
			    uint64_t *start, uint64_t *len)
{
	if (*pos >= count)
		return 0;
	size_t i = *pos;
	*start = offsets[i];
	*len = page_size;
	while (i + 1 < count && offsets[i + 1] == offsets[i] + page_size) {
		*len += page_size;
		i++;
	}
	*pos = i + 1;
	return 1;
}

size_t uffd_page_list_format(uint64_t offset, char *buf, size_t size)
{
	int n = snprintf(buf, size, "0x%" PRIx64 "\n", offset);
	return n < 0 ? 0 : (size_t)n;
}
