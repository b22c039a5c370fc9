/*
 * Requests straight into api_handle, for the API tests of one resource (test_api_balloon.c,
 * test_api_snapshot.c): bodies are written with single quotes, and the reply's
 * fault_message (or whole body) is left in `text`. Header-only (static), so each test
 * binary still builds from its own .c file; `api` is the state under test.
 */
#ifndef WISP_TEST_API_REQUEST_H
#define WISP_TEST_API_REQUEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../../api/api.h"

static struct api_state api;
static char text[4096];

/* Single quotes become double quotes, so JSON bodies read well in C strings. */
static void quotes(char *s)
{
	for (; s && *s; s++)
		if (*s == '\'')
			*s = '"';
}

/* Sends one request (single-quoted JSON body, or NULL); returns the status. */
static int call(enum http_method method, const char *path, const char *body_text)
{
	struct api_reply reply;
	char *body = body_text ? strdup(body_text) : NULL;

	quotes(body);
	api_handle(&api, method, path, body, body ? strlen(body) : 0, &reply);
	free(body);
	text[0] = '\0';
	if (reply.body) {
		json_t *json = json_loads(reply.body, 0, NULL);
		const char *fault = json_string_value(json_object_get(json, "fault_message"));

		assert_non_null(json);
		snprintf(text, sizeof(text), "%s", fault ? fault : reply.body);
		json_decref(json);
		free(reply.body);
	}
	return reply.status;
}

static void expect(int status, enum http_method method, const char *path, const char *body)
{
	int got = call(method, path, body);

	if (got != status)
		fail_msg("%s %s %s: %d (%s), not %d", http_method_name(method), path,
			 body ? body : "", got, text, status);
}

/* A 400 whose fault_message is exactly `message`. */
static void refused(enum http_method method, const char *path, const char *body,
		    const char *message)
{
	expect(400, method, path, body);
	if (strcmp(text, message))
		fail_msg("%s %s: '%s', not '%s'", path, body ? body : "", text, message);
}

#endif
