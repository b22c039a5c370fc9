/*
 * Unit tests for the API's HTTP request parser and response writer (api/http.c). Requests
 * are byte strings with an explicit length, so they may hold NUL bytes.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../api/http.h"

#define MAX_BODY  4096
#define UNTOUCHED "(untouched)"

struct parse_result {
	int ret;
	struct http_request req;
	char err[256];
};

static struct parse_result parse_bytes(const char *buf, size_t len, size_t max_body)
{
	struct parse_result r;

	memset(&r, 0, sizeof(r));
	memset(&r.req, 0xa5, sizeof(r.req));
	strcpy(r.err, UNTOUCHED);
	r.ret = http_parse_request(buf, len, max_body, &r.req, r.err, sizeof(r.err));
	return r;
}

/* For string literals: the length excludes the terminating NUL but counts embedded ones. */
#define PARSE(literal) parse_bytes(literal, sizeof(literal) - 1, MAX_BODY)

/* Fails with `ret` and a one-line message that contains `fragment`. */
static void assert_fails(const struct parse_result *r, int ret, const char *fragment)
{
	assert_int_equal(r->ret, ret);
	if (!strstr(r->err, fragment))
		fail_msg("message '%s' lacks '%s'", r->err, fragment);
	assert_null(strchr(r->err, '\n'));
	assert_null(strchr(r->err, '\r'));
}

/* Same fields; bodies compared by offset, as the two parses may have used different copies. */
static void assert_same_request(const struct http_request *a, const char *base_a,
				const struct http_request *b, const char *base_b)
{
	assert_int_equal(a->method, b->method);
	assert_string_equal(a->path, b->path);
	assert_int_equal(a->body == NULL, b->body == NULL);
	if (a->body)
		assert_int_equal(a->body - base_a, b->body - base_b);
	assert_int_equal(a->body_len, b->body_len);
	assert_int_equal(a->keep_alive, b->keep_alive);
	assert_int_equal(a->expect_continue, b->expect_continue);
	assert_int_equal(a->http_1_0, b->http_1_0);
	assert_int_equal(a->header_len, b->header_len);
}

/*
 * Feeds buf as a server reading one byte at a time would: every prefix, each in a heap block
 * of exactly its length (so ASan catches a read past len), gives 0 until the answer is
 * known, then `ret` for good; the last one gives the same request as the whole buffer.
 */
static void assert_incremental(const char *buf, size_t len, int ret)
{
	struct parse_result whole = parse_bytes(buf, len, MAX_BODY);
	bool decided = false;

	assert_int_equal(whole.ret, ret);
	for (size_t i = 0; i <= len; i++) {
		char *copy = malloc(i ? i : 1);
		struct parse_result part;

		assert_non_null(copy);
		memcpy(copy, buf, i);
		part = parse_bytes(copy, i, MAX_BODY);
		if (part.ret != 0) {
			assert_int_equal(part.ret, ret);
			decided = true;
		} else {
			assert_false(decided);
		}
		if (i == len && ret > 0)
			assert_same_request(&part.req, copy, &whole.req, buf);
		free(copy);
	}
	assert_int_equal(decided, ret != 0);
}

/* ---- whole requests ---- */

static void test_get_complete(void **state)
{
	static const char req[] = "GET /machine-config HTTP/1.1\r\nHost: localhost\r\n"
				  "Accept: */*\r\n\r\n";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1);
	assert_int_equal(r.req.method, HTTP_GET);
	assert_string_equal(r.req.path, "/machine-config");
	assert_null(r.req.body);
	assert_int_equal(r.req.body_len, 0);
	assert_true(r.req.keep_alive);
	assert_false(r.req.expect_continue);
	assert_false(r.req.http_1_0);
	assert_int_equal(r.req.header_len, sizeof(req) - 1);
	assert_string_equal(r.err, UNTOUCHED);
}

static void test_put_with_body(void **state)
{
	static const char req[] = "PUT /boot-source HTTP/1.1\r\nContent-Type: application/json\r\n"
				  "Content-Length: 33\r\n\r\n"
				  "{\"kernel_image_path\": \"vmlinux\"}\n";
	struct parse_result r = PARSE(req);
	size_t head_len = strstr(req, "\r\n\r\n") + 4 - req;
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1);
	assert_int_equal(r.req.method, HTTP_PUT);
	assert_string_equal(r.req.path, "/boot-source");
	assert_int_equal(r.req.header_len, head_len);
	assert_ptr_equal(r.req.body, req + head_len);
	assert_int_equal(r.req.body_len, 33);
	assert_memory_equal(r.req.body, "{\"kernel_image_path\": \"vmlinux\"}\n", 33);
}

static void test_patch_with_body(void **state)
{
	static const char req[] = "PATCH /vm HTTP/1.1\r\nContent-Length: 20\r\n\r\n"
				  "{\"state\": \"Paused\"}\n";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1);
	assert_int_equal(r.req.method, HTTP_PATCH);
	assert_string_equal(r.req.path, "/vm");
	assert_int_equal(r.req.body_len, 20);
	assert_memory_equal(r.req.body, "{\"state\": \"Paused\"}\n", 20);
}

static void test_content_length_zero_means_no_body(void **state)
{
	struct parse_result r = PARSE("PUT /actions HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	(void)state;

	assert_true(r.ret > 0);
	assert_null(r.req.body);
	assert_int_equal(r.req.body_len, 0);
}

static void test_bytes_after_request_are_not_consumed(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGARBAGE";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1 - strlen("GARBAGE"));
	assert_int_equal(r.req.body_len, 2);
}

static void test_body_is_verbatim_with_crlf_and_nul(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nContent-Length: 6\r\n\r\n\r\n\0\r\n\n";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1);
	assert_memory_equal(r.req.body, "\r\n\0\r\n\n", 6);
}

static void test_unknown_headers_are_ignored(void **state)
{
	struct parse_result r =
	    PARSE("GET / HTTP/1.1\r\nX-Empty:\r\nUser-Agent: caf\xc3\xa9/1.0\r\n"
		  "X-Tab:\tvalue\twith\ttabs\r\nAccept: whatever\r\n\r\n");
	(void)state;

	assert_true(r.ret > 0);
	assert_string_equal(r.req.path, "/");
	assert_string_equal(r.err, UNTOUCHED);
}

static void test_leading_empty_lines_are_skipped_and_counted(void **state)
{
	static const char req[] = "\r\n\r\nGET /vm HTTP/1.1\r\n\r\n";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1);
	assert_int_equal(r.req.header_len, sizeof(req) - 1);
	assert_string_equal(r.req.path, "/vm");

	r = PARSE("\r\n\r\n");
	assert_int_equal(r.ret, 0);
}

static void test_query_string_is_stripped(void **state)
{
	struct parse_result r = PARSE("GET /vm/config?full=1&x=%20 HTTP/1.1\r\n\r\n");
	(void)state;

	assert_true(r.ret > 0);
	assert_string_equal(r.req.path, "/vm/config");

	r = PARSE("GET /? HTTP/1.1\r\n\r\n");
	assert_true(r.ret > 0);
	assert_string_equal(r.req.path, "/");
}

static void test_path_is_not_decoded(void **state)
{
	struct parse_result r = PARSE("GET /drives/a%2Fb/../c HTTP/1.1\r\n\r\n");
	(void)state;

	assert_true(r.ret > 0);
	assert_string_equal(r.req.path, "/drives/a%2Fb/../c");
}

static void test_header_names_are_case_insensitive(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\ncontent-length: 1\r\n\r\na");
	(void)state;
	assert_int_equal(r.req.body_len, 1);

	r = PARSE("PUT /x HTTP/1.1\r\nCONTENT-LENGTH: 2\r\n\r\nab");
	assert_int_equal(r.req.body_len, 2);

	r = PARSE("PUT /x HTTP/1.1\r\ncOnTeNt-LeNgTh: 3\r\nCONNECTION: CLOSE\r\n"
		  "eXpEcT: 100-Continue\r\n\r\nabc");
	assert_int_equal(r.ret, r.req.header_len + 3);
	assert_int_equal(r.req.body_len, 3);
	assert_false(r.req.keep_alive);
	assert_true(r.req.expect_continue);

	r = PARSE("PUT /x HTTP/1.1\r\nTRANSFER-encoding: chunked\r\n\r\n");
	assert_fails(&r, -EINVAL, "Transfer-Encoding is not supported");
}

static void test_content_length_whitespace_is_trimmed(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: \t 4 \t\r\n\r\nabcd");
	(void)state;

	assert_true(r.ret > 0);
	assert_int_equal(r.req.body_len, 4);

	r = PARSE("PUT /x HTTP/1.1\r\nContent-Length:4\r\n\r\nabcd");
	assert_true(r.ret > 0);
	assert_int_equal(r.req.body_len, 4);
}

static void test_content_length_leading_zeros(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 0004\r\n\r\nabcd");
	(void)state;

	assert_true(r.ret > 0);
	assert_int_equal(r.req.body_len, 4);
}

static void test_identical_duplicate_content_length_is_accepted(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 2\r\n"
				      "content-length: 02\r\n\r\nab");
	(void)state;

	assert_true(r.ret > 0);
	assert_int_equal(r.req.body_len, 2);
}

static void test_get_with_body_keeps_the_body(void **state)
{
	struct parse_result r = PARSE("GET /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
	(void)state;

	assert_true(r.ret > 0);
	assert_int_equal(r.req.method, HTTP_GET);
	assert_int_equal(r.req.body_len, 2);
	assert_memory_equal(r.req.body, "{}", 2);
}

/* ---- pipelining and partial input ---- */

static void test_pipelined_requests(void **state)
{
	static const char buf[] =
	    "GET /a HTTP/1.1\r\n\r\n"
	    "PUT /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
	    "PATCH /c?q HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
	    "\r\n{}"
	    "GET /d HTTP/1.1\r\n";
	static const char *paths[] = {"/a", "/b", "/c"};
	static const enum http_method methods[] = {HTTP_GET, HTTP_PUT, HTTP_PATCH};
	size_t off = 0;
	(void)state;

	for (int i = 0; i < 3; i++) {
		struct parse_result r = parse_bytes(buf + off, sizeof(buf) - 1 - off, MAX_BODY);
		assert_true(r.ret > 0);
		assert_int_equal(r.req.method, methods[i]);
		assert_string_equal(r.req.path, paths[i]);
		assert_true(r.req.keep_alive);
		if (i == 1)
			assert_memory_equal(r.req.body, "hello", 5);
		if (i == 2)
			assert_memory_equal(r.req.body, "{}", 2);
		off += r.ret;
	}
	/* The fourth request has not fully arrived. */
	assert_int_equal(parse_bytes(buf + off, sizeof(buf) - 1 - off, MAX_BODY).ret, 0);
	assert_string_equal(buf + off, "GET /d HTTP/1.1\r\n");
}

static void test_one_byte_at_a_time(void **state)
{
	static const char req[] = "PUT /drives/rootfs HTTP/1.1\r\nHost: localhost\r\n"
				  "Expect: 100-continue\r\nContent-Length: 11\r\n\r\n{\"a\": true}";
	(void)state;

	assert_incremental(req, sizeof(req) - 1, sizeof(req) - 1);
}

static void test_one_byte_at_a_time_get(void **state)
{
	static const char req[] = "\r\nGET /?x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
	(void)state;

	assert_incremental(req, sizeof(req) - 1, sizeof(req) - 1);
}

static void test_one_byte_at_a_time_error_sticks(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
				  "Content-Length: 3\r\n\r\nabc";
	struct parse_result r;
	size_t te_end = strstr(req, "chunked\r\n") + strlen("chunked\r\n") - req;
	(void)state;

	assert_incremental(req, sizeof(req) - 1, -EINVAL);
	/* Decided as soon as the offending line is complete, not before. */
	assert_int_equal(parse_bytes(req, te_end - 1, MAX_BODY).ret, 0);
	r = parse_bytes(req, te_end, MAX_BODY);
	assert_fails(&r, -EINVAL, "Transfer-Encoding");
}

static void test_split_inside_blank_line(void **state)
{
	static const char req[] = "GET /vm HTTP/1.1\r\nHost: localhost\r\n\r\n";
	size_t len = sizeof(req) - 1;
	(void)state;

	/* Cut after "\r", "\r\n" and "\r\n\r" of the final CRLFCRLF. */
	for (size_t cut = len - 3; cut < len; cut++) {
		struct parse_result r = parse_bytes(req, cut, MAX_BODY);
		assert_int_equal(r.ret, 0);
		assert_int_equal(r.req.header_len, 0);
		assert_string_equal(r.err, UNTOUCHED);
	}
	assert_int_equal(parse_bytes(req, len, MAX_BODY).ret, len);
}

static void test_missing_body_waits(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabcd";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, 0);
	assert_int_equal(r.req.body_len, 10);
	assert_null(r.req.body);
	assert_int_equal(r.req.header_len, sizeof(req) - 1 - 4);
	assert_int_equal(r.req.method, HTTP_PUT);
	assert_string_equal(r.req.path, "/x");
	assert_string_equal(r.err, UNTOUCHED);
}

static void test_incomplete_head_leaves_request_zeroed(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 10\r\n");
	struct http_request zero;
	(void)state;

	memset(&zero, 0, sizeof(zero));
	assert_int_equal(r.ret, 0);
	assert_memory_equal(&r.req, &zero, sizeof(zero));
}

static void test_bad_line_is_reported_before_the_head_ends(void **state)
{
	struct parse_result r = PARSE("POST /vm HTTP/1.1\r\n");
	(void)state;

	assert_fails(&r, -EINVAL, "unsupported HTTP method 'POST'");

	r = PARSE("GET /vm HTTP/1.1\r\nContent-Length: x\r\nHost: loc");
	assert_fails(&r, -EINVAL, "invalid Content-Length 'x'");
}

/* ---- Expect: 100-continue ---- */

static void test_expect_continue_known_once_head_is_complete(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
				  "\r\n";
	struct parse_result r = PARSE(req);
	(void)state;

	assert_int_equal(r.ret, 0);
	assert_int_equal(r.req.header_len, sizeof(req) - 1);
	assert_true(r.req.expect_continue);
	assert_int_equal(r.req.body_len, 4);
	assert_string_equal(HTTP_CONTINUE_RESPONSE, "HTTP/1.1 100 Continue\r\n\r\n");
}

static void test_expect_continue_ignored_for_http_1_0(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\n"
				      "Content-Length: 4\r\n\r\n");
	(void)state;

	assert_int_equal(r.ret, 0);
	assert_true(r.req.header_len > 0);
	assert_false(r.req.expect_continue);
	assert_true(r.req.http_1_0);
}

static void test_other_expectations_are_ignored(void **state)
{
	struct parse_result r = PARSE("GET /x HTTP/1.1\r\nExpect: 200-ok\r\n\r\n");
	(void)state;

	assert_true(r.ret > 0);
	assert_false(r.req.expect_continue);
}

/* ---- keep-alive ---- */

static void test_keep_alive_defaults(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.1\r\n\r\n");
	(void)state;
	assert_true(r.ret > 0);
	assert_true(r.req.keep_alive);
	assert_false(r.req.http_1_0);

	r = PARSE("GET / HTTP/1.0\r\n\r\n");
	assert_true(r.ret > 0);
	assert_false(r.req.keep_alive);
	assert_true(r.req.http_1_0);
}

static void test_connection_header(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	(void)state;
	assert_false(r.req.keep_alive);

	r = PARSE("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	assert_true(r.req.keep_alive);

	r = PARSE("GET / HTTP/1.0\r\nConnection: Upgrade, Keep-Alive\r\n\r\n");
	assert_true(r.req.keep_alive);

	r = PARSE("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n");
	assert_true(r.req.keep_alive);

	r = PARSE("GET / HTTP/1.1\r\nConnection: Upgrade,close\r\n\r\n");
	assert_false(r.req.keep_alive);

	/* Unknown options and empty list elements change nothing. */
	r = PARSE("GET / HTTP/1.0\r\nConnection: ,, closed, keep-alives\r\n\r\n");
	assert_true(r.ret > 0);
	assert_false(r.req.keep_alive);
}

static void test_connection_close_wins(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.0\r\nConnection: keep-alive\r\n"
				      "Connection: close\r\n\r\n");
	(void)state;
	assert_false(r.req.keep_alive);

	r = PARSE("GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n");
	assert_false(r.req.keep_alive);
}

/* ---- limits ---- */

/* A GET whose head is exactly `head_len` bytes (at least 40), padded by one header. */
static char *make_head(size_t head_len)
{
	static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
	char *buf = malloc(head_len + 1);
	size_t pad = head_len - (sizeof(start) - 1) - 4;

	assert_non_null(buf);
	memcpy(buf, start, sizeof(start) - 1);
	memset(buf + sizeof(start) - 1, 'p', pad);
	memcpy(buf + sizeof(start) - 1 + pad, "\r\n\r\n", 5);
	assert_int_equal(strlen(buf), head_len);
	return buf;
}

static void test_head_of_exactly_the_limit_is_accepted(void **state)
{
	char *buf = make_head(HTTP_MAX_HEADER_BYTES);
	struct parse_result r = parse_bytes(buf, HTTP_MAX_HEADER_BYTES, MAX_BODY);
	(void)state;

	assert_int_equal(r.ret, HTTP_MAX_HEADER_BYTES);
	free(buf);
}

static void test_head_over_the_limit(void **state)
{
	char *buf = make_head(HTTP_MAX_HEADER_BYTES + 1);
	struct parse_result r = parse_bytes(buf, HTTP_MAX_HEADER_BYTES + 1, MAX_BODY);
	(void)state;

	assert_fails(&r, -E2BIG, "longer than 8192 bytes");
	/* Already known when the limit is reached without a blank line... */
	r = parse_bytes(buf, HTTP_MAX_HEADER_BYTES, MAX_BODY);
	assert_fails(&r, -E2BIG, "longer than 8192 bytes");
	/* ...and not before. */
	r = parse_bytes(buf, HTTP_MAX_HEADER_BYTES - 1, MAX_BODY);
	assert_int_equal(r.ret, 0);
	free(buf);
}

static void test_endless_request_line_is_e2big(void **state)
{
	size_t len = HTTP_MAX_HEADER_BYTES + 100;
	char *buf = malloc(len);
	struct parse_result r;
	(void)state;

	assert_non_null(buf);
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', len - 5);
	r = parse_bytes(buf, len, MAX_BODY);
	assert_fails(&r, -E2BIG, "8192");
	free(buf);
}

/* "GET <path of path_len bytes>[?<query_len bytes>] HTTP/1.1\r\n\r\n" */
static struct parse_result parse_long_path(size_t path_len, size_t query_len)
{
	char buf[4096];
	size_t n = 0;

	memcpy(buf, "GET /", 5);
	n = 5;
	memset(buf + n, 'p', path_len - 1);
	n += path_len - 1;
	if (query_len) {
		buf[n++] = '?';
		memset(buf + n, 'q', query_len);
		n += query_len;
	}
	memcpy(buf + n, " HTTP/1.1\r\n\r\n", 13);
	n += 13;
	return parse_bytes(buf, n, MAX_BODY);
}

static void test_longest_path_is_accepted(void **state)
{
	struct parse_result r = parse_long_path(HTTP_MAX_PATH - 1, 0);
	(void)state;

	assert_true(r.ret > 0);
	assert_int_equal(strlen(r.req.path), HTTP_MAX_PATH - 1);
	assert_int_equal(r.req.path[0], '/');
}

static void test_path_too_long(void **state)
{
	struct parse_result r = parse_long_path(HTTP_MAX_PATH, 0);
	(void)state;

	assert_fails(&r, -E2BIG, "request path is longer than 1023 bytes");
}

static void test_query_does_not_count_towards_path_limit(void **state)
{
	struct parse_result r = parse_long_path(HTTP_MAX_PATH - 1, 2000);
	(void)state;

	assert_true(r.ret > 0);
	assert_int_equal(strlen(r.req.path), HTTP_MAX_PATH - 1);
}

static void test_body_too_large_decided_with_the_head(void **state)
{
	static const char req[] =
	    "PUT /x HTTP/1.1\r\nConnection: close\r\nContent-Length: 100\r\n\r\n";
	struct parse_result r = parse_bytes(req, sizeof(req) - 1, 99);
	(void)state;

	assert_fails(&r, -EMSGSIZE, "request body of 100 bytes is larger than the limit of 99");
	assert_int_equal(r.req.body_len, 100);
	assert_int_equal(r.req.header_len, sizeof(req) - 1);
	assert_null(r.req.body);
	assert_false(r.req.keep_alive);

	/* One byte short of the head: still waiting. */
	assert_int_equal(parse_bytes(req, sizeof(req) - 2, 99).ret, 0);
}

static void test_body_of_exactly_max_body_is_accepted(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
	struct parse_result r = parse_bytes(req, sizeof(req) - 1, 4);
	(void)state;

	assert_int_equal(r.ret, sizeof(req) - 1);
	r = parse_bytes(req, sizeof(req) - 1, 3);
	assert_int_equal(r.ret, -EMSGSIZE);
	r = parse_bytes("GET / HTTP/1.1\r\n\r\n", 18, 0);
	assert_int_equal(r.ret, 18);
}

static void test_request_must_fit_in_an_int(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nContent-Length: 2147483647\r\n\r\n";
	struct parse_result r = parse_bytes(req, sizeof(req) - 1, SIZE_MAX);
	(void)state;

	assert_int_equal(r.ret, -EMSGSIZE);
	assert_int_equal(r.req.body_len, 2147483647);
}

static void test_largest_content_length_is_emsgsize(void **state)
{
	struct parse_result r =
	    PARSE("PUT /x HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
	(void)state;

	assert_int_equal(r.ret, -EMSGSIZE);
	assert_true(r.req.body_len == UINT64_MAX);
}

/* ---- malformed input ---- */

static void test_malformed_request_lines(void **state)
{
	static const char *const lines[] = {
	    "GET\r\n\r\n",
	    "GET /\r\n\r\n",
	    "GET / \r\n\r\n",
	    " GET / HTTP/1.1\r\n\r\n",
	    "GET  / HTTP/1.1\r\n\r\n",
	    "GET /  HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1 \r\n\r\n",
	    "GET / HTTP/1.1 extra\r\n\r\n",
	    "GET/ HTTP/1.1\r\n\r\n",
	    "GET /HTTP/1.1\r\n\r\n",
	    "GET /a /b HTTP/1.1\r\n\r\n",
	    "   \r\n\r\n",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct parse_result r = parse_bytes(lines[i], strlen(lines[i]), MAX_BODY);
		assert_fails(&r, -EINVAL, "malformed request line");
	}
}

static void test_unsupported_methods(void **state)
{
	struct parse_result r = PARSE("POST /vm HTTP/1.1\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "unsupported HTTP method 'POST'");

	r = PARSE("DELETE /vm HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "'DELETE'");
	r = PARSE("HEAD /vm HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "'HEAD'");
	r = PARSE("get /vm HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "unsupported HTTP method 'get'");
	r = PARSE("GETS /vm HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "'GETS'");
}

static void test_method_in_message_is_escaped_and_truncated(void **state)
{
	struct parse_result r = PARSE("PO'S\\T /vm HTTP/1.1\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "unsupported HTTP method 'PO\\x27S\\x5cT'");

	r = PARSE(
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\n"
	    "\r\n");
	assert_fails(&r, -EINVAL, "'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...'");
}

static void test_unsupported_versions(void **state)
{
	static const char *const versions[] = {"HTTP/2.0",  "HTTP/1.2", "HTTP/0.9",  "http/1.1",
					       "HTTP/1.10", "HTTP/1",	"HTTP/1.1x", "HTTP/11"};
	(void)state;

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		char req[64], want[64];
		struct parse_result r;
		snprintf(req, sizeof(req), "GET / %s\r\n\r\n", versions[i]);
		snprintf(want, sizeof(want), "HTTP version '%s' is not supported", versions[i]);
		r = parse_bytes(req, strlen(req), MAX_BODY);
		assert_fails(&r, -EINVAL, want);
	}
}

static void test_target_must_start_with_slash(void **state)
{
	struct parse_result r = PARSE("GET vm HTTP/1.1\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "request target 'vm' does not start with '/'");

	r = PARSE("GET http://localhost/vm HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "does not start with '/'");
	r = PARSE("GET * HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "does not start with '/'");
	r = PARSE("GET ?x HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "does not start with '/'");
}

static void test_nul_bytes_are_rejected(void **state)
{
	struct parse_result r = PARSE("GET /a\0b HTTP/1.1\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "control character 0x00 in request line");

	r = PARSE("G\0T / HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "0x00");
	r = PARSE("GET / HTTP/1.1\0\r\n\r\n");
	assert_fails(&r, -EINVAL, "0x00");
	r = PARSE("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n");
	assert_fails(&r, -EINVAL, "control character 0x00 in header 'X-A'");
	r = PARSE("GET / HTTP/1.1\r\nX\0A: ab\r\n\r\n");
	assert_fails(&r, -EINVAL, "invalid header name 'X\\x00A'");
	r = PARSE("\0GET / HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "0x00");
}

static void test_control_and_non_ascii_bytes_in_request_line(void **state)
{
	struct parse_result r = PARSE("GET\t/ HTTP/1.1\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "control character 0x09 in request line");

	r = PARSE("GET /a\x7f HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "control character 0x7f");
	r = PARSE("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "non-ASCII byte 0xc3 in request line");
	r = PARSE("GET /\x1b[31m HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "control character 0x1b");
}

static void test_bare_lf_is_rejected(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.1\n\n");
	(void)state;
	assert_fails(&r, -EINVAL, "bare LF");

	r = PARSE("GET / HTTP/1.1\r\nHost: x\n\r\n");
	assert_fails(&r, -EINVAL, "bare LF");
	r = PARSE("GET / HTTP/1.1\r\n\n");
	assert_fails(&r, -EINVAL, "bare LF");
	r = PARSE("\nGET / HTTP/1.1\r\n\r\n");
	assert_fails(&r, -EINVAL, "bare LF");
}

static void test_bare_cr_is_rejected(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.1\r\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "bare CR");

	r = PARSE("GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n");
	assert_fails(&r, -EINVAL, "bare CR");
	/* A CR as the last byte so far may still be followed by LF. */
	r = PARSE("GET / HTTP/1.1\r");
	assert_int_equal(r.ret, 0);
}

static void test_bad_content_length_values(void **state)
{
	static const char *const values[] = {"",    "-1",   "+1",  "1x",  "x1",
					     "1 2", "0x10", "1,1", "1.0", "١"};
	(void)state;

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char req[128];
		struct parse_result r;
		snprintf(req, sizeof(req), "PUT /x HTTP/1.1\r\nContent-Length: %s\r\n\r\n",
			 values[i]);
		r = parse_bytes(req, strlen(req), MAX_BODY);
		assert_fails(&r, -EINVAL, "invalid Content-Length '");
	}
}

static void test_content_length_overflow(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n"
				      "\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "invalid Content-Length '18446744073709551616'");

	r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n");
	assert_fails(&r, -EINVAL, "invalid Content-Length");
}

static void test_conflicting_content_lengths(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 2\r\n"
				      "Content-Length: 3\r\n\r\nabc");
	(void)state;
	assert_fails(&r, -EINVAL, "conflicting Content-Length values 2 and 3");

	r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 10\r\n\r\n");
	assert_fails(&r, -EINVAL, "conflicting Content-Length");
}

static void test_transfer_encoding_is_rejected(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "4\r\nabcd\r\n0\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "Transfer-Encoding is not supported");

	r = PARSE("PUT /x HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: identity\r\n\r\n"
		  "abcd");
	assert_fails(&r, -EINVAL, "Transfer-Encoding is not supported");
}

static void test_obs_fold_is_rejected(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "line folding");

	r = PARSE("GET / HTTP/1.1\r\n\tContent-Length: 1\r\n\r\n");
	assert_fails(&r, -EINVAL, "line folding");
}

static void test_whitespace_before_colon_is_rejected(void **state)
{
	struct parse_result r = PARSE("PUT /x HTTP/1.1\r\nContent-Length : 4\r\n\r\nabcd");
	(void)state;
	assert_fails(&r, -EINVAL, "whitespace before ':' in header 'Content-Length '");

	r = PARSE("PUT /x HTTP/1.1\r\nContent-Length\t: 4\r\n\r\nabcd");
	assert_fails(&r, -EINVAL, "whitespace before ':'");
	r = PARSE("PUT /x HTTP/1.1\r\nContent Length: 4\r\n\r\nabcd");
	assert_fails(&r, -EINVAL, "invalid header name 'Content Length'");
}

static void test_malformed_header_lines(void **state)
{
	struct parse_result r = PARSE("GET / HTTP/1.1\r\nHost localhost\r\n\r\n");
	(void)state;
	assert_fails(&r, -EINVAL, "malformed header line 'Host localhost'");

	r = PARSE("GET / HTTP/1.1\r\n: value\r\n\r\n");
	assert_fails(&r, -EINVAL, "empty header name");
	r = PARSE("GET / HTTP/1.1\r\nX(y): 1\r\n\r\n");
	assert_fails(&r, -EINVAL, "invalid header name 'X(y)'");
	r = PARSE("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n");
	assert_fails(&r, -EINVAL, "control character 0x7f in header 'X-A'");
}

static void test_null_err_is_allowed(void **state)
{
	struct http_request req;
	char small[8];
	(void)state;

	assert_int_equal(http_parse_request("POST / HTTP/1.1\r\n\r\n", 19, 0, &req, NULL, 0),
			 -EINVAL);
	memset(small, 'x', sizeof(small));
	assert_int_equal(
	    http_parse_request("POST / HTTP/1.1\r\n\r\n", 19, 0, &req, small, sizeof(small)),
	    -EINVAL);
	assert_string_equal(small, "unsuppo");
}

static void test_empty_buffer(void **state)
{
	struct parse_result r = parse_bytes("", 0, MAX_BODY);
	(void)state;

	assert_int_equal(r.ret, 0);
	assert_string_equal(r.err, UNTOUCHED);
}

/* ---- responses ---- */

static void test_format_200_with_body(void **state)
{
	char out[256];
	int n = http_format_response(out, sizeof(out), 200, true, "{\"id\":\"a\"}");
	static const char want[] = "HTTP/1.1 200 OK\r\nServer: Firecracker API\r\n"
				   "Connection: keep-alive\r\nContent-Type: application/json\r\n"
				   "Content-Length: 10\r\n\r\n{\"id\":\"a\"}";
	(void)state;

	assert_int_equal(n, sizeof(want) - 1);
	assert_string_equal(out, want);
}

static void test_format_204_has_no_length_nor_type(void **state)
{
	char out[256];
	int n = http_format_response(out, sizeof(out), 204, true, NULL);
	static const char want[] = "HTTP/1.1 204 No Content\r\nServer: Firecracker API\r\n"
				   "Connection: keep-alive\r\n\r\n";
	(void)state;

	assert_int_equal(n, sizeof(want) - 1);
	assert_string_equal(out, want);
	assert_int_equal(http_format_response(out, sizeof(out), 204, true, "{}"), -EINVAL);
}

static void test_format_400_close(void **state)
{
	char out[256];
	int n = http_format_response(out, sizeof(out), 400, false, "{\"fault_message\": \"bad\"}");
	static const char want[] = "HTTP/1.1 400 Bad Request\r\nServer: Firecracker API\r\n"
				   "Connection: close\r\nContent-Type: application/json\r\n"
				   "Content-Length: 24\r\n\r\n{\"fault_message\": \"bad\"}";
	(void)state;

	assert_int_equal(n, sizeof(want) - 1);
	assert_string_equal(out, want);
}

static void test_format_without_body_says_length_zero(void **state)
{
	char out[256];
	int n = http_format_response(out, sizeof(out), 404, true, NULL);
	(void)state;

	assert_true(n > 0);
	assert_non_null(strstr(out, "HTTP/1.1 404 Not Found\r\n"));
	assert_non_null(strstr(out, "\r\nContent-Length: 0\r\n\r\n"));
	assert_int_equal(strlen(out), n);
}

static void test_format_enospc(void **state)
{
	char out[256];
	int n = http_format_response(out, sizeof(out), 200, true, "{}");
	char *small = malloc(n + 1);
	(void)state;

	assert_true(n > 0);
	assert_non_null(small);
	/* Room for the response and its NUL fits; one byte less does not. */
	assert_int_equal(http_format_response(small, n + 1, 200, true, "{}"), n);
	assert_string_equal(small, out);
	assert_int_equal(http_format_response(small, n, 200, true, "{}"), -ENOSPC);
	assert_string_equal(small, "");
	assert_int_equal(http_format_response(NULL, 0, 200, true, "{}"), -ENOSPC);
	free(small);
}

static void test_format_rejects_unknown_and_interim_statuses(void **state)
{
	char out[256];
	(void)state;

	assert_int_equal(http_format_response(out, sizeof(out), 299, true, NULL), -EINVAL);
	assert_int_equal(http_format_response(out, sizeof(out), 100, true, NULL), -EINVAL);
	assert_int_equal(http_format_response(out, sizeof(out), -1, true, NULL), -EINVAL);
	assert_string_equal(http_status_reason(413), "Payload Too Large");
	assert_string_equal(http_status_reason(500), "Internal Server Error");
	assert_null(http_status_reason(299));
}

static void test_method_names(void **state)
{
	(void)state;

	assert_string_equal(http_method_name(HTTP_GET), "GET");
	assert_string_equal(http_method_name(HTTP_PUT), "PUT");
	assert_string_equal(http_method_name(HTTP_PATCH), "PATCH");
	assert_string_equal(http_method_name((enum http_method)42), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get_complete),
	    cmocka_unit_test(test_put_with_body),
	    cmocka_unit_test(test_patch_with_body),
	    cmocka_unit_test(test_content_length_zero_means_no_body),
	    cmocka_unit_test(test_bytes_after_request_are_not_consumed),
	    cmocka_unit_test(test_body_is_verbatim_with_crlf_and_nul),
	    cmocka_unit_test(test_unknown_headers_are_ignored),
	    cmocka_unit_test(test_leading_empty_lines_are_skipped_and_counted),
	    cmocka_unit_test(test_query_string_is_stripped),
	    cmocka_unit_test(test_path_is_not_decoded),
	    cmocka_unit_test(test_header_names_are_case_insensitive),
	    cmocka_unit_test(test_content_length_whitespace_is_trimmed),
	    cmocka_unit_test(test_content_length_leading_zeros),
	    cmocka_unit_test(test_identical_duplicate_content_length_is_accepted),
	    cmocka_unit_test(test_get_with_body_keeps_the_body),
	    cmocka_unit_test(test_pipelined_requests),
	    cmocka_unit_test(test_one_byte_at_a_time),
	    cmocka_unit_test(test_one_byte_at_a_time_get),
	    cmocka_unit_test(test_one_byte_at_a_time_error_sticks),
	    cmocka_unit_test(test_split_inside_blank_line),
	    cmocka_unit_test(test_missing_body_waits),
	    cmocka_unit_test(test_incomplete_head_leaves_request_zeroed),
	    cmocka_unit_test(test_bad_line_is_reported_before_the_head_ends),
	    cmocka_unit_test(test_expect_continue_known_once_head_is_complete),
	    cmocka_unit_test(test_expect_continue_ignored_for_http_1_0),
	    cmocka_unit_test(test_other_expectations_are_ignored),
	    cmocka_unit_test(test_keep_alive_defaults),
	    cmocka_unit_test(test_connection_header),
	    cmocka_unit_test(test_connection_close_wins),
	    cmocka_unit_test(test_head_of_exactly_the_limit_is_accepted),
	    cmocka_unit_test(test_head_over_the_limit),
	    cmocka_unit_test(test_endless_request_line_is_e2big),
	    cmocka_unit_test(test_longest_path_is_accepted),
	    cmocka_unit_test(test_path_too_long),
	    cmocka_unit_test(test_query_does_not_count_towards_path_limit),
	    cmocka_unit_test(test_body_too_large_decided_with_the_head),
	    cmocka_unit_test(test_body_of_exactly_max_body_is_accepted),
	    cmocka_unit_test(test_request_must_fit_in_an_int),
	    cmocka_unit_test(test_largest_content_length_is_emsgsize),
	    cmocka_unit_test(test_malformed_request_lines),
	    cmocka_unit_test(test_unsupported_methods),
	    cmocka_unit_test(test_method_in_message_is_escaped_and_truncated),
	    cmocka_unit_test(test_unsupported_versions),
	    cmocka_unit_test(test_target_must_start_with_slash),
	    cmocka_unit_test(test_nul_bytes_are_rejected),
	    cmocka_unit_test(test_control_and_non_ascii_bytes_in_request_line),
	    cmocka_unit_test(test_bare_lf_is_rejected),
	    cmocka_unit_test(test_bare_cr_is_rejected),
	    cmocka_unit_test(test_bad_content_length_values),
	    cmocka_unit_test(test_content_length_overflow),
	    cmocka_unit_test(test_conflicting_content_lengths),
	    cmocka_unit_test(test_transfer_encoding_is_rejected),
	    cmocka_unit_test(test_obs_fold_is_rejected),
	    cmocka_unit_test(test_whitespace_before_colon_is_rejected),
	    cmocka_unit_test(test_malformed_header_lines),
	    cmocka_unit_test(test_null_err_is_allowed),
	    cmocka_unit_test(test_empty_buffer),
	    cmocka_unit_test(test_format_200_with_body),
	    cmocka_unit_test(test_format_204_has_no_length_nor_type),
	    cmocka_unit_test(test_format_400_close),
	    cmocka_unit_test(test_format_without_body_says_length_zero),
	    cmocka_unit_test(test_format_enospc),
	    cmocka_unit_test(test_format_rejects_unknown_and_interim_statuses),
	    cmocka_unit_test(test_method_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
