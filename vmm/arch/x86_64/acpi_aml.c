#include "acpi_aml.h"

#include <errno.h>
#include <string.h>

#define PKG_LENGTH_MAX	 0x0fffffffu
#define INTEGER_MAX_SIZE 9 /* QWordPrefix and 8 bytes */
#define RES_END_TAG	 0x79

/* What aml_close() puts in front of an open object's body. */
#define OPEN_PLAIN  false
#define OPEN_BUFFER true

void aml_init(struct aml_buf *aml, void *data, size_t size)
{
	*aml = (struct aml_buf){.data = data, .size = size};
}

int aml_finish(const struct aml_buf *aml)
{
	if (aml->depth)
		return -EINVAL;
	return aml->overflow ? -ENOSPC : 0;
}

void aml_bytes(struct aml_buf *aml, const void *bytes, size_t len)
{
	if (aml->overflow || len > aml->size - aml->len) {
		aml->overflow = true;
		return;
	}
	memcpy(aml->data + aml->len, bytes, len);
	aml->len += len;
}

void aml_byte(struct aml_buf *aml, uint8_t byte)
{
	aml_bytes(aml, &byte, 1);
}

static bool name_char_ok(char c, bool first)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
}

void aml_name_string(struct aml_buf *aml, const char *path)
{
	uint8_t segs[255][4];
	unsigned int count = 0;

	if (*path == '\\') {
		aml_byte(aml, AML_ROOT_CHAR);
		path++;
	}
	while (*path) {
		size_t n = strcspn(path, ".");
		if (n == 0 || n > 4 || count == 255 || !name_char_ok(path[0], true))
			goto bad;
		for (size_t i = 0; i < 4; i++) {
			if (i < n && !name_char_ok(path[i], false))
				goto bad;
			segs[count][i] = i < n ? (uint8_t)path[i] : '_';
		}
		count++;
		path += n;
		if (*path == '.' && !*++path)
			goto bad;
	}
	if (count == 0)
		goto bad;
	if (count == 2)
		aml_byte(aml, AML_DUAL_NAME);
	else if (count > 2) {
		aml_byte(aml, AML_MULTI_NAME);
		aml_byte(aml, (uint8_t)count);
	}
	aml_bytes(aml, segs, count * 4u);
	return;
bad:
	aml->overflow = true;
}

static size_t integer_encode(uint64_t value, uint8_t out[INTEGER_MAX_SIZE])
{
	size_t width;

	if (value == 0 || value == 1) {
		out[0] = value ? AML_ONE_OP : AML_ZERO_OP;
		return 1;
	}
	if (value <= UINT8_MAX) {
		out[0] = AML_BYTE_PREFIX;
		width = 1;
	} else if (value <= UINT16_MAX) {
		out[0] = AML_WORD_PREFIX;
		width = 2;
	} else if (value <= UINT32_MAX) {
		out[0] = AML_DWORD_PREFIX;
		width = 4;
	} else {
		out[0] = AML_QWORD_PREFIX;
		width = 8;
	}
	for (size_t i = 0; i < width; i++)
		out[1 + i] = (uint8_t)(value >> (8 * i));
	return 1 + width;
}

void aml_integer(struct aml_buf *aml, uint64_t value)
{
	uint8_t bytes[INTEGER_MAX_SIZE];
	aml_bytes(aml, bytes, integer_encode(value, bytes));
}

void aml_string(struct aml_buf *aml, const char *text)
{
	for (const char *c = text; *c; c++) {
		if ((unsigned char)*c < 0x01 || (unsigned char)*c > 0x7f) {
			aml->overflow = true;
			return;
		}
	}
	aml_byte(aml, AML_STRING_PREFIX);
	aml_bytes(aml, text, strlen(text) + 1);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint32_t aml_eisa_id(const char *id)
{
	/* Three letters in 5 bits each ('A' = 1), then four hex digits; stored big-endian. */
	uint32_t value = 0;

	if (strlen(id) != 7)
		return 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		value = (value << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (int i = 3; i < 7; i++) {
		int digit = hex_digit(id[i]);
		if (digit < 0)
			return 0;
		value = (value << 4) | (uint32_t)digit;
	}
	return __builtin_bswap32(value);
}

void aml_name(struct aml_buf *aml, const char *path)
{
	aml_byte(aml, AML_NAME_OP);
	aml_name_string(aml, path);
}

size_t aml_pkg_length_encode(size_t length, uint8_t out[4])
{
	size_t extra;

	if (length <= 0x3f) {
		out[0] = (uint8_t)length;
		return 1;
	}
	if (length > PKG_LENGTH_MAX)
		return 0;
	extra = length <= 0xfff ? 1 : length <= 0xfffff ? 2 : 3;
	/* The lead byte holds the count of following bytes and the low nibble. */
	out[0] = (uint8_t)((extra << 6) | (length & 0x0f));
	for (size_t i = 0; i < extra; i++)
		out[1 + i] = (uint8_t)(length >> (4 + 8 * i));
	return 1 + extra;
}

/* Reserves room for the PkgLength (and a Buffer's size) that aml_close() fills in. */
static void open_object(struct aml_buf *aml, bool kind)
{
	static const uint8_t placeholder[4 + INTEGER_MAX_SIZE];
	size_t reserved = kind == OPEN_BUFFER ? sizeof(placeholder) : 4;

	if (aml->depth == AML_MAX_DEPTH) {
		aml->overflow = true;
		return;
	}
	aml->open_is_buffer[aml->depth] = kind;
	aml->open[aml->depth++] = aml->len;
	aml_bytes(aml, placeholder, reserved);
}

void aml_close(struct aml_buf *aml)
{
	uint8_t header[4 + INTEGER_MAX_SIZE];
	uint8_t size_bytes[INTEGER_MAX_SIZE];
	size_t start, reserved, body, size_len = 0, pkg_len, total;
	bool kind;

	if (aml->depth == 0) {
		aml->overflow = true;
		return;
	}
	kind = aml->open_is_buffer[--aml->depth];
	if (aml->overflow)
		return;
	start = aml->open[aml->depth];
	reserved = kind == OPEN_BUFFER ? 4 + INTEGER_MAX_SIZE : 4;
	body = aml->len - start - reserved;
	if (kind == OPEN_BUFFER)
		size_len = integer_encode(body, size_bytes);
	/* The PkgLength counts its own bytes: try each width until the total fits it. */
	for (pkg_len = 1; pkg_len <= 4; pkg_len++) {
		total = pkg_len + size_len + body;
		if (aml_pkg_length_encode(total, header) == pkg_len)
			break;
	}
	if (pkg_len > 4) {
		aml->overflow = true;
		return;
	}
	memcpy(header + pkg_len, size_bytes, size_len);
	memmove(aml->data + start + pkg_len + size_len, aml->data + start + reserved, body);
	memcpy(aml->data + start, header, pkg_len + size_len);
	aml->len = start + pkg_len + size_len + body;
}

void aml_scope_open(struct aml_buf *aml, const char *path)
{
	aml_byte(aml, AML_SCOPE_OP);
	open_object(aml, OPEN_PLAIN);
	aml_name_string(aml, path);
}

void aml_device_open(struct aml_buf *aml, const char *path)
{
	aml_byte(aml, AML_EXT_OP_PREFIX);
	aml_byte(aml, AML_DEVICE_OP);
	open_object(aml, OPEN_PLAIN);
	aml_name_string(aml, path);
}

void aml_package_open(struct aml_buf *aml, uint8_t element_count)
{
	aml_byte(aml, AML_PACKAGE_OP);
	open_object(aml, OPEN_PLAIN);
	aml_byte(aml, element_count);
}

void aml_resource_template_open(struct aml_buf *aml)
{
	aml_byte(aml, AML_BUFFER_OP);
	open_object(aml, OPEN_BUFFER);
}

void aml_resource_template_close(struct aml_buf *aml)
{
	uint8_t sum = RES_END_TAG;

	if (aml->depth == 0 || !aml->open_is_buffer[aml->depth - 1]) {
		aml->overflow = true;
		return;
	}
	if (!aml->overflow) {
		size_t first = aml->open[aml->depth - 1] + 4 + INTEGER_MAX_SIZE;
		for (size_t i = first; i < aml->len; i++)
			sum += aml->data[i];
	}
	aml_byte(aml, RES_END_TAG);
	aml_byte(aml, (uint8_t)(0 - sum));
	aml_close(aml);
}

static void put_le(uint8_t *out, uint64_t value, size_t width)
{
	for (size_t i = 0; i < width; i++)
		out[i] = (uint8_t)(value >> (8 * i));
}

void aml_res_memory32_fixed(struct aml_buf *aml, bool writable, uint32_t base, uint32_t length)
{
	uint8_t d[12] = {0x86, 9, 0, writable ? 1 : 0};
	put_le(d + 4, base, 4);
	put_le(d + 8, length, 4);
	aml_bytes(aml, d, sizeof(d));
}

void aml_res_interrupt(struct aml_buf *aml, bool edge, bool active_low, bool shared, uint32_t irq)
{
	/* Flags: bit 0 consumer, bit 1 edge, bit 2 active low, bit 3 shared. */
	uint8_t d[9] = {0x89, 6, 0,
			(uint8_t)(1 | (edge ? 2 : 0) | (active_low ? 4 : 0) | (shared ? 8 : 0)), 1};
	put_le(d + 5, irq, 4);
	aml_bytes(aml, d, sizeof(d));
}

void aml_res_io(struct aml_buf *aml, uint16_t base, uint8_t length)
{
	/* Decode16, minimum = maximum = base, alignment 1. */
	uint8_t d[8] = {0x47, 1, 0, 0, 0, 0, 1, length};
	put_le(d + 2, base, 2);
	put_le(d + 4, base, 2);
	aml_bytes(aml, d, sizeof(d));
}

void aml_res_irq_no_flags(struct aml_buf *aml, unsigned int irq)
{
	uint8_t d[3] = {0x22, 0, 0};

	if (irq > 15) {
		aml->overflow = true;
		return;
	}
	put_le(d + 1, 1u << irq, 2);
	aml_bytes(aml, d, sizeof(d));
}
