/*
 * Table-driven checks of JSON request bodies: a body is described once, as a table of
 * its fields, and the same table both checks a body (unknown fields, types, required
 * fields) and describes the body for fc_api_schema(). Messages name the field by its key
 * path ("drives[1].rate_limiter.bandwidth.size"), so --config-file errors point at the
 * exact key.
 */
#ifndef WISP_JSON_FIELDS_H
#define WISP_JSON_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum field_type {
	FIELD_STRING,
	FIELD_BOOL,
	FIELD_UINT, /* a non-negative integer */
	/* An object: with `nested`, checked against its fields; without, checked by its owner */
	FIELD_OBJECT,
	FIELD_STRING_MAP, /* an object with any keys and string values */
	FIELD_ARRAY,	  /* the elements are checked by the owner */
	FIELD_ANY,	  /* a section wisp recognises but does not support */
};

struct body_spec;

struct body_field {
	const char *name;
	enum field_type type;
	bool required;
	/* Firecracker's Option<T> fields: null is the same as leaving the field out */
	bool nullable;
	const struct body_spec *nested;
};

struct body_spec {
	const char *what;		 /* "the drive body", for messages */
	const struct body_field *fields; /* ends with a field without a name */
};

/* Longest path a message names; deeper paths are cut, never overflowed. */
#define KEY_PATH_MAX 128

/* Checks that `value` is an object with only the body's fields, each of its type, and
 * every required one there. `path` is the key path of the body ("" for a request body).
 * Returns 0 or -EINVAL with err set. */
int fields_check_body(const json_t *value, const struct body_spec *body, const char *path,
		      char *err, size_t err_size);

/* "path.name", or "name" when path is empty. */
void fields_key_path(char *out, size_t out_size, const char *path, const char *name);

/* Messages, as "<path.name>: <message>" (name may be NULL: "<path>: <message>"). */
int fields_error(char *err, size_t err_size, const char *path, const char *name, const char *fmt,
		 ...) __attribute__((format(printf, 5, 6)));
/* "<path.name> '<value>': <message>", the value cut short and made printable. */
int fields_value_error(char *err, size_t err_size, const char *path, const char *name,
		       const char *value, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Readers for a body fields_check_body accepted; absent and null fields give NULL or
 * the fallback. */
bool fields_given(const json_t *body, const char *name);
const char *fields_string(const json_t *body, const char *name);
bool fields_bool(const json_t *body, const char *name, bool fallback);
uint64_t fields_uint(const json_t *body, const char *name, uint64_t fallback);
const json_t *fields_object(const json_t *body, const char *name);

/* Copies the string field `name` (which must be given) into dst[dst_size]; an error
 * naming the field and the limit if it does not fit, or if it is empty and
 * allow_empty is false. */
int fields_copy_string(const json_t *body, const char *name, bool allow_empty, char *dst,
		       size_t dst_size, const char *path, char *err, size_t err_size);

/* The table as FIELDS for fc_api_schema(): {"name": null | FIELDS}. */
json_t *fields_schema(const struct body_spec *body);

#endif
