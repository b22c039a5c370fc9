#include "json_fields.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Values echoed in messages are cut to this many characters. */
#define ECHO_MAX 64

static const char *const type_phrases[] = {
    [FIELD_STRING] = "must be a string",
    [FIELD_BOOL] = "must be a boolean",
    [FIELD_UINT] = "must be a non-negative integer",
    [FIELD_OBJECT] = "must be an object",
    [FIELD_STRING_MAP] = "must be an object of strings",
    [FIELD_ARRAY] = "must be an array",
    [FIELD_ANY] = "",
};

/* Messages end up in JSON replies and in logs: whatever the client sent is echoed as
 * printable ASCII only, so a message is always one line and always valid UTF-8, even
 * when snprintf cuts it short. */
static void echo_copy(char *out, size_t out_size, const char *in)
{
	size_t n = 0;

	for (; *in && n + 1 < out_size; in++) {
		if (n == ECHO_MAX) {
			if (n + 3 < out_size) {
				memcpy(out + n, "...", 3);
				n += 3;
			}
			break;
		}
		out[n++] = (*in >= 0x20 && *in < 0x7f) ? *in : '?';
	}
	out[n] = '\0';
}

void fields_key_path(char *out, size_t out_size, const char *path, const char *name)
{
	if (!path || !*path)
		snprintf(out, out_size, "%s", name ? name : "");
	else if (!name)
		snprintf(out, out_size, "%s", path);
	else
		snprintf(out, out_size, "%s.%s", path, name);
}

static int vformat_error(char *err, size_t err_size, const char *subject, const char *fmt,
			 va_list args)
{
	char message[512];

	vsnprintf(message, sizeof(message), fmt, args);
	if (*subject)
		snprintf(err, err_size, "%s: %s", subject, message);
	else
		snprintf(err, err_size, "%s", message);
	return -EINVAL;
}

int fields_error(char *err, size_t err_size, const char *path, const char *name, const char *fmt,
		 ...)
{
	char subject[KEY_PATH_MAX];
	va_list args;

	fields_key_path(subject, sizeof(subject), path, name);
	va_start(args, fmt);
	vformat_error(err, err_size, subject, fmt, args);
	va_end(args);
	return -EINVAL;
}

int fields_value_error(char *err, size_t err_size, const char *path, const char *name,
		       const char *value, const char *fmt, ...)
{
	char field[KEY_PATH_MAX], echoed[ECHO_MAX + 4], subject[KEY_PATH_MAX + sizeof(echoed) + 4];
	va_list args;

	fields_key_path(field, sizeof(field), path, name);
	echo_copy(echoed, sizeof(echoed), value);
	snprintf(subject, sizeof(subject), "%s '%s'", field, echoed);
	va_start(args, fmt);
	vformat_error(err, err_size, subject, fmt, args);
	va_end(args);
	return -EINVAL;
}

static bool type_matches(const json_t *value, enum field_type type)
{
	switch (type) {
	case FIELD_STRING:
		return json_is_string(value);
	case FIELD_BOOL:
		return json_is_boolean(value);
	case FIELD_UINT:
		return json_is_integer(value) && json_integer_value(value) >= 0;
	case FIELD_OBJECT:
	case FIELD_STRING_MAP:
		return json_is_object(value);
	case FIELD_ARRAY:
		return json_is_array(value);
	case FIELD_ANY:
		return true;
	}
	return false;
}

static const struct body_field *find_field(const struct body_spec *body, const char *name)
{
	for (const struct body_field *field = body->fields; field->name; field++)
		if (!strcmp(field->name, name))
			return field;
	return NULL;
}

static int unknown_field_error(const struct body_spec *body, const char *key, const char *path,
			       char *err, size_t err_size)
{
	char echoed[ECHO_MAX + 4], expected[512] = "";
	size_t used = 0;

	for (const struct body_field *field = body->fields; field->name && used < sizeof(expected);
	     field++)
		used += snprintf(expected + used, sizeof(expected) - used, "%s%s", used ? ", " : "",
				 field->name);
	echo_copy(echoed, sizeof(echoed), key);
	return fields_error(err, err_size, path, NULL,
			    "unknown field '%s' in %s (expected one of: %s)", echoed, body->what,
			    expected);
}

static int check_string_map(const json_t *map, const char *path, char *err, size_t err_size)
{
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)map, key, value)
	{
		if (!json_is_string(value))
			return fields_error(err, err_size, path, NULL,
					    "the value of every key must be a string");
	}
	return 0;
}

/* A C string cannot hold a NUL from the JSON ("\u0000"); cutting the value there would
 * quietly open another file than the one asked for. */
static bool string_has_nul(const json_t *value)
{
	return strlen(json_string_value(value)) != json_string_length(value);
}

static int check_field(const json_t *value, const struct body_field *field, const char *path,
		       char *err, size_t err_size)
{
	char field_path[KEY_PATH_MAX];

	fields_key_path(field_path, sizeof(field_path), path, field->name);
	if (!type_matches(value, field->type))
		return fields_error(err, err_size, field_path, NULL, "%s%s",
				    type_phrases[field->type], field->nullable ? " or null" : "");
	if (field->type == FIELD_STRING && string_has_nul(value))
		return fields_error(err, err_size, field_path, NULL,
				    "must not contain a NUL character");
	if (field->type == FIELD_STRING_MAP)
		return check_string_map(value, field_path, err, err_size);
	if (field->type == FIELD_OBJECT && field->nested)
		return fields_check_body(value, field->nested, field_path, err, err_size);
	return 0;
}

int fields_check_body(const json_t *value, const struct body_spec *body, const char *path,
		      char *err, size_t err_size)
{
	const char *key;
	json_t *member;
	int ret;

	if (!json_is_object(value))
		return fields_error(err, err_size, path, NULL, "%s must be a JSON object",
				    body->what);
	json_object_foreach((json_t *)value, key, member)
	{
		const struct body_field *field = find_field(body, key);

		if (!field)
			return unknown_field_error(body, key, path, err, err_size);
		if (json_is_null(member) && field->nullable)
			continue;
		ret = check_field(member, field, path, err, err_size);
		if (ret)
			return ret;
	}
	for (const struct body_field *field = body->fields; field->name; field++) {
		if (field->required && !json_object_get(value, field->name))
			return fields_error(err, err_size, path, NULL,
					    "missing required field '%s' in %s", field->name,
					    body->what);
	}
	return 0;
}

bool fields_given(const json_t *body, const char *name)
{
	const json_t *value = json_object_get(body, name);

	return value && !json_is_null(value);
}

const char *fields_string(const json_t *body, const char *name)
{
	return json_string_value(json_object_get(body, name));
}

bool fields_bool(const json_t *body, const char *name, bool fallback)
{
	const json_t *value = json_object_get(body, name);

	return json_is_boolean(value) ? json_is_true(value) : fallback;
}

uint64_t fields_uint(const json_t *body, const char *name, uint64_t fallback)
{
	const json_t *value = json_object_get(body, name);

	return json_is_integer(value) ? (uint64_t)json_integer_value(value) : fallback;
}

const json_t *fields_object(const json_t *body, const char *name)
{
	const json_t *value = json_object_get(body, name);

	return json_is_object(value) ? value : NULL;
}

int fields_copy_string(const json_t *body, const char *name, bool allow_empty, char *dst,
		       size_t dst_size, const char *path, char *err, size_t err_size)
{
	const char *value = fields_string(body, name);
	size_t len = value ? strlen(value) : 0;

	if (!value)
		return fields_error(err, err_size, path, name, "must be given");
	if (!len && !allow_empty)
		return fields_error(err, err_size, path, name, "must not be empty");
	if (len >= dst_size)
		return fields_error(err, err_size, path, name,
				    "is %zu characters long, longer than the limit of %zu", len,
				    dst_size - 1);
	memcpy(dst, value, len + 1);
	return 0;
}

json_t *fields_schema(const struct body_spec *body)
{
	json_t *fields = json_object();

	if (!fields)
		return NULL;
	for (const struct body_field *field = body->fields; field->name; field++) {
		json_t *nested = field->nested ? fields_schema(field->nested) : json_null();

		if (!nested || json_object_set_new(fields, field->name, nested)) {
			json_decref(fields);
			return NULL;
		}
	}
	return fields;
}
