/*
 * libFuzzer target for the API's HTTP request parser (api/http.c).
 *
 * Input: raw bytes as a client would write them to the API socket, so the seeds in
 * corpus/http/ are plain requests. The target parses them as the server does: parse, advance
 * by the return value, parse again, for up to MAX_REQUESTS pipelined requests.
 *
 * For every request it also checks that incremental parsing agrees with whole-buffer
 * parsing: it re-parses prefixes of the remaining bytes, cut at a point derived from the
 * data and at the interesting boundaries (just before and at the end of the head and of the
 * request), each from a heap block of exactly the prefix's length so that ASan sees any read
 * past len. A prefix must give 0 or exactly the whole buffer's answer (same return value,
 * same fields), a prefix that holds the whole request must give the whole request, and once
 * a prefix gives an error every longer one gives it too.
 *
 * Invariants (a violation calls __builtin_trap()): ret <= len; ret == header_len + body_len;
 * header_len <= HTTP_MAX_HEADER_BYTES and the head ends in CRLFCRLF; path NUL-terminated,
 * starting with '/', without '?' or control bytes, and equal to the start of the request
 * target; the request line starts with the method's name; body NULL exactly when body_len is
 * 0, else buf + header_len; body_len <= max_body; a 0 with a complete head is missing body
 * bytes; -EMSGSIZE means body_len > max_body; errors leave *req zeroed and a one-line,
 * non-empty message; a parse with max_body 0 agrees with one with the normal limit. It also
 * formats a response with a data-derived status, body and buffer size.
 *
 * Build: clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Iapi \
 *          tests/fuzz/fuzz_http.c api/http.c -o /tmp/fuzz_http
 */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

#define MAX_BODY     256
#define MAX_REQUESTS 64
#define ERR_SIZE     256
#define NR_CUTS	     6

struct outcome {
	int ret;
	struct http_request req;
	char err[ERR_SIZE];
};

static struct outcome whole, part, no_body;
static char response[512];

static uint32_t fnv1a(const uint8_t *data, size_t size)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	return h;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void parse(struct outcome *o, const char *buf, size_t len, size_t max_body)
{
	memset(&o->req, 0x5a, sizeof(o->req));
	memset(o->err, 0x5a, sizeof(o->err));
	o->ret = http_parse_request(buf, len, max_body, &o->req, o->err, sizeof(o->err));
}

static void check_message(const struct outcome *o)
{
	const char *end = memchr(o->err, '\0', sizeof(o->err));
	CHECK(end != NULL && end != o->err);
	CHECK(!memchr(o->err, '\n', (size_t)(end - o->err)));
	CHECK(!memchr(o->err, '\r', (size_t)(end - o->err)));
}

/* What must hold of any single answer for buf[0..len). */
static void check_outcome(const struct outcome *o, const char *buf, size_t len, size_t max_body)
{
	const struct http_request *req = &o->req;
	const char *name, *line;
	size_t path_len, name_len;

	if (o->ret == -EINVAL || o->ret == -E2BIG || (o->ret == 0 && req->header_len == 0)) {
		CHECK(all_zero(req, sizeof(*req)));
		if (o->ret)
			check_message(o);
		return;
	}
	CHECK(o->ret > 0 || o->ret == 0 || o->ret == -EMSGSIZE);

	/* The head is complete from here on. */
	CHECK(req->header_len >= 18 && req->header_len <= HTTP_MAX_HEADER_BYTES);
	CHECK(req->header_len <= len);
	CHECK(!memcmp(buf + req->header_len - 4, "\r\n\r\n", 4));
	CHECK(req->method == HTTP_GET || req->method == HTTP_PUT || req->method == HTTP_PATCH);
	path_len = strnlen(req->path, sizeof(req->path));
	CHECK(path_len >= 1 && path_len < sizeof(req->path));
	CHECK(req->path[0] == '/');
	for (size_t i = 0; i < path_len; i++)
		CHECK(req->path[i] > 0x20 && req->path[i] < 0x7f && req->path[i] != '?');
	CHECK(!req->expect_continue || !req->http_1_0);

	/* Independent of the parser: the request line is "NAME SP path[?...] SP". */
	line = buf;
	while (line[0] == '\r')
		line += 2;
	name = http_method_name(req->method);
	name_len = strlen(name);
	CHECK(!memcmp(line, name, name_len) && line[name_len] == ' ');
	CHECK(!memcmp(line + name_len + 1, req->path, path_len));
	CHECK(line[name_len + 1 + path_len] == ' ' || line[name_len + 1 + path_len] == '?');

	if (o->ret == -EMSGSIZE) {
		CHECK(req->body_len > max_body ||
		      req->body_len > (size_t)INT_MAX - req->header_len);
		CHECK(req->body == NULL);
		check_message(o);
		return;
	}
	CHECK(req->body_len <= max_body);
	if (o->ret == 0) {
		CHECK(req->body == NULL);
		CHECK(len - req->header_len < req->body_len);
		return;
	}
	CHECK((size_t)o->ret <= len);
	CHECK((size_t)o->ret == req->header_len + req->body_len);
	CHECK((req->body == NULL) == (req->body_len == 0));
	CHECK(req->body == NULL || req->body == buf + req->header_len);
}

static void check_same(const struct outcome *a, const char *base_a, const struct outcome *b,
		       const char *base_b)
{
	CHECK(a->ret == b->ret);
	CHECK(a->req.method == b->req.method);
	CHECK(!strcmp(a->req.path, b->req.path));
	CHECK((a->req.body == NULL) == (b->req.body == NULL));
	CHECK(a->req.body == NULL || a->req.body - base_a == b->req.body - base_b);
	CHECK(a->req.body_len == b->req.body_len);
	CHECK(a->req.keep_alive == b->req.keep_alive);
	CHECK(a->req.expect_continue == b->req.expect_continue);
	CHECK(a->req.http_1_0 == b->req.http_1_0);
	CHECK(a->req.header_len == b->req.header_len);
}

static int compare_sizes(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* Prefixes of buf[0..len) must agree with `whole`, the answer for all of it. */
static void check_prefixes(const char *buf, size_t len, uint32_t seed)
{
	size_t cuts[NR_CUTS] = {seed % (len + 1), len ? len - 1 : 0, 0, 0, 0, 0};
	bool failed = false;

	if (whole.req.header_len) {
		cuts[2] = whole.req.header_len - 1;
		cuts[3] = whole.req.header_len;
	}
	if (whole.ret > 0) {
		cuts[4] = (size_t)whole.ret - 1;
		cuts[5] = (size_t)whole.ret;
	}
	qsort(cuts, NR_CUTS, sizeof(cuts[0]), compare_sizes);

	for (int i = 0; i < NR_CUTS; i++) {
		size_t cut = cuts[i];
		char *copy = malloc(cut ? cut : 1);

		CHECK(copy != NULL);
		memcpy(copy, buf, cut);
		parse(&part, copy, cut, MAX_BODY);
		check_outcome(&part, copy, cut, MAX_BODY);
		if (whole.ret > 0 && cut >= (size_t)whole.ret) {
			check_same(&part, copy, &whole, buf);
		} else if (whole.ret > 0) {
			CHECK(part.ret == 0);
		} else if (part.ret != 0 || part.req.header_len) {
			/* An answer other than "nothing yet" is final. */
			check_same(&part, copy, &whole, buf);
		}
		CHECK(!failed || part.ret < 0);
		failed = part.ret < 0;
		free(copy);
	}
}

/* The same request with no body allowed: only bodies change the answer. */
static void check_without_body_allowance(const char *buf, size_t len)
{
	parse(&no_body, buf, len, 0);
	check_outcome(&no_body, buf, len, 0);
	if (whole.req.header_len && whole.req.body_len) {
		CHECK(no_body.ret == -EMSGSIZE);
		CHECK(no_body.req.header_len == whole.req.header_len);
		CHECK(no_body.req.body_len == whole.req.body_len);
	} else if (whole.ret != -EMSGSIZE) {
		check_same(&no_body, buf, &whole, buf);
	}
}

static void check_response(const uint8_t *data, size_t size, uint32_t seed)
{
	static const int statuses[] = {100, 200, 201, 204, 400, 401, 403, 404, 405, 408, 411, 413,
				       414, 415, 417, 431, 500, 501, 503, 505, 0,   299, -1,  1000};
	int status = statuses[seed % (sizeof(statuses) / sizeof(statuses[0]))];
	size_t body_len = size < 200 ? size : 200;
	size_t out_size = (seed >> 5) % (sizeof(response) + 1);
	bool with_body = (seed >> 14) & 1;
	char body[201], length[32];
	int n;

	memcpy(body, data, body_len);
	body[body_len] = '\0';
	n = http_format_response(response, out_size, status, (seed >> 15) & 1,
				 with_body ? body : NULL);
	if (!http_status_reason(status) || status < 200 || (status == 204 && with_body)) {
		CHECK(n == -EINVAL);
		return;
	}
	if (n == -ENOSPC) {
		CHECK(out_size == 0 || response[0] == '\0');
		return;
	}
	CHECK(n > 0 && (size_t)n < out_size && strlen(response) == (size_t)n);
	CHECK(!memcmp(response, "HTTP/1.1 ", 9));
	CHECK(strstr(response, http_status_reason(status)) != NULL);
	CHECK(strstr(response, "\r\nServer: Firecracker API\r\n") != NULL);
	snprintf(length, sizeof(length), "\r\nContent-Length: %zu\r\n\r\n",
		 with_body ? strlen(body) : 0);
	CHECK((strstr(response, length) != NULL) == (status != 204));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	uint32_t seed = fnv1a(data, size);
	size_t off = 0;

	for (int i = 0; i < MAX_REQUESTS; i++) {
		const char *rest = buf + off;
		size_t rest_len = size - off;

		parse(&whole, rest, rest_len, MAX_BODY);
		check_outcome(&whole, rest, rest_len, MAX_BODY);
		check_prefixes(rest, rest_len, seed + (uint32_t)i);
		check_without_body_allowance(rest, rest_len);
		if (whole.ret <= 0)
			break;
		off += (size_t)whole.ret;
	}
	check_response(data, size, seed);
	return 0;
}
