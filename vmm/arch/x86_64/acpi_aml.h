/*
 * A small emitter of ACPI Machine Language (ACPI 6.5, chapter 20) for the DSDT wisp builds:
 * names, integers, strings, packages, devices and scopes (with their PkgLength), and the
 * resource descriptors of a _CRS buffer (chapter 6.4). Writes into a caller's buffer and
 * remembers an overflow instead of failing each call, so a table is built straight through
 * and checked once at the end. Pure code, unit-tested byte for byte.
 */
#ifndef WISP_X86_ACPI_AML_H
#define WISP_X86_ACPI_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_ZERO_OP	  0x00
#define AML_ONE_OP	  0x01
#define AML_NAME_OP	  0x08
#define AML_BYTE_PREFIX	  0x0a
#define AML_WORD_PREFIX	  0x0b
#define AML_DWORD_PREFIX  0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX  0x0e
#define AML_SCOPE_OP	  0x10
#define AML_BUFFER_OP	  0x11
#define AML_PACKAGE_OP	  0x12
#define AML_DUAL_NAME	  0x2e
#define AML_MULTI_NAME	  0x2f
#define AML_ROOT_CHAR	  0x5c
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP	  0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ONES_OP	  0xff

/* Nesting depth of open scopes, devices, packages and buffers. */
#define AML_MAX_DEPTH 8

struct aml_buf {
	uint8_t *data;
	size_t size;
	size_t len;
	bool overflow; /* a write did not fit, or a name or nesting was malformed */
	unsigned int depth;
	size_t open[AML_MAX_DEPTH]; /* where each open object's PkgLength placeholder starts */
	bool open_is_buffer[AML_MAX_DEPTH]; /* a Buffer's size follows its PkgLength */
};

void aml_init(struct aml_buf *aml, void *data, size_t size);
/* 0 if everything was written and every object closed; -ENOSPC or -EINVAL otherwise. */
int aml_finish(const struct aml_buf *aml);

void aml_bytes(struct aml_buf *aml, const void *bytes, size_t len);
void aml_byte(struct aml_buf *aml, uint8_t byte);
/* A NameString: an optional leading '\', then 1..4-character segments joined by '.'
 * (short segments are padded with '_'), e.g. "\\_SB_", "_S5", "_SB_.V000". */
void aml_name_string(struct aml_buf *aml, const char *path);
/* An integer in its shortest encoding: ZeroOp, OneOp, or Byte/Word/DWord/QWord prefixed. */
void aml_integer(struct aml_buf *aml, uint64_t value);
void aml_string(struct aml_buf *aml, const char *text);
/* The 32-bit compressed form of an EISA id such as "PNP0501" (what EisaId() yields). */
uint32_t aml_eisa_id(const char *id);
/* NameOp path: the value that follows is the caller's to write (one data object). */
void aml_name(struct aml_buf *aml, const char *path);

/* Open objects end with aml_close(), which writes their PkgLength. */
void aml_scope_open(struct aml_buf *aml, const char *path);
void aml_device_open(struct aml_buf *aml, const char *path);
void aml_package_open(struct aml_buf *aml, uint8_t element_count);
void aml_close(struct aml_buf *aml);

/* Encodes a PkgLength for `length` bytes (which counts the encoding itself) into out[4];
 * returns the bytes used (1..4), or 0 if the length is beyond 2^28 - 1. */
size_t aml_pkg_length_encode(size_t length, uint8_t out[4]);

/* A resource template is a Buffer whose contents are descriptors and an end tag whose
 * checksum makes the descriptors' bytes sum to zero. */
void aml_resource_template_open(struct aml_buf *aml);
void aml_resource_template_close(struct aml_buf *aml);
void aml_res_memory32_fixed(struct aml_buf *aml, bool writable, uint32_t base, uint32_t length);
/* An Extended Interrupt descriptor for one interrupt, as its consumer. */
void aml_res_interrupt(struct aml_buf *aml, bool edge, bool active_low, bool shared, uint32_t irq);
/* An IO descriptor with 16-bit decoding and a fixed base. */
void aml_res_io(struct aml_buf *aml, uint16_t base, uint8_t length);
/* An IRQ descriptor without flags (edge, active high, exclusive): the ISA default. */
void aml_res_irq_no_flags(struct aml_buf *aml, unsigned int irq);

#endif
