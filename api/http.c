/*
 * Strict HTTP/1.1 request parsing and response writing for the API socket. The rules it
 * enforces are listed in http.h; the comments here say why the code is shaped as it is.
 */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bytes of a client-supplied value quoted in an error message, before "...". */
#define QUOTE_MAX_BYTES 40
/* Worst case: every byte as \xHH, then "..." and the NUL. */
#define QUOTE_BUF_SIZE (QUOTE_MAX_BYTES * 4 + 4)

_Static_assert(SIZE_MAX >= UINT64_MAX, "body_len holds any Content-Length");

struct head_fields {
	bool have_content_length;
	uint64_t content_length;
	bool connection_close;
	bool connection_keep_alive;
	bool expect_continue;
};

/* Sets the message when the caller gave room for one; returns ret. */
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t err_size, int ret,
						      const char *fmt, ...)
{
	va_list ap;

	if (err && err_size) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/*
 * Client bytes go into messages that end up in logs and JSON fault messages: anything but
 * printable ASCII is escaped so that a message stays one harmless line.
 */
static const char *quote(const char *s, size_t n, char out[QUOTE_BUF_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	size_t shown = n < QUOTE_MAX_BYTES ? n : QUOTE_MAX_BYTES;
	size_t o = 0;

	for (size_t i = 0; i < shown; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
			out[o++] = (char)c;
			continue;
		}
		out[o++] = '\\';
		out[o++] = 'x';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 0xf];
	}
	if (shown < n) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool equals_ignore_case(const char *s, size_t n, const char *lowercase_literal)
{
	if (n != strlen(lowercase_literal))
		return false;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(s[i]) != lowercase_literal[i])
			return false;
	return true;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_token_char(char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_whitespace(char c)
{
	return c == ' ' || c == '\t';
}

static void trim_whitespace(const char **s, size_t *n)
{
	while (*n && is_whitespace((*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_whitespace((*s)[*n - 1]))
		(*n)--;
}

/*
 * Finds the CRLF that ends the line at buf[start] within buf[0..window). Returns 1 and the
 * length without CRLF, 0 when the window ends first, or -EINVAL for a lone CR or LF. A CR as
 * the window's last byte is "not yet known": deciding it from bytes past the window would
 * let a prefix and the whole buffer disagree.
 */
static int find_line_end(const char *buf, size_t window, size_t start, size_t *line_len, char *err,
			 size_t err_size)
{
	for (size_t i = start; i < window; i++) {
		if (buf[i] == '\n')
			return fail(err, err_size, -EINVAL,
				    "bare LF in request head (lines must end in CRLF)");
		if (buf[i] != '\r')
			continue;
		if (i + 1 == window)
			return 0;
		if (buf[i + 1] != '\n')
			return fail(err, err_size, -EINVAL, "bare CR in request head");
		*line_len = i - start;
		return 1;
	}
	return 0;
}

static int parse_method(const char *s, size_t n, struct http_request *req, char *err,
			size_t err_size)
{
	char quoted[QUOTE_BUF_SIZE];

	/* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
	if (n == 3 && !memcmp(s, "GET", 3))
		req->method = HTTP_GET;
	else if (n == 3 && !memcmp(s, "PUT", 3))
		req->method = HTTP_PUT;
	else if (n == 5 && !memcmp(s, "PATCH", 5))
		req->method = HTTP_PATCH;
	else
		return fail(err, err_size, -EINVAL, "unsupported HTTP method '%s'",
			    quote(s, n, quoted));
	return 0;
}

static int parse_version(const char *s, size_t n, struct http_request *req, char *err,
			 size_t err_size)
{
	char quoted[QUOTE_BUF_SIZE];

	if (n == 8 && !memcmp(s, "HTTP/1.1", 8))
		req->http_1_0 = false;
	else if (n == 8 && !memcmp(s, "HTTP/1.0", 8))
		req->http_1_0 = true;
	else
		return fail(err, err_size, -EINVAL, "HTTP version '%s' is not supported",
			    quote(s, n, quoted));
	return 0;
}

static int parse_target(const char *s, size_t n, struct http_request *req, char *err,
			size_t err_size)
{
	char quoted[QUOTE_BUF_SIZE];
	const char *query = memchr(s, '?', n);
	size_t path_len = query ? (size_t)(query - s) : n;

	/* Origin form only: no absolute URIs, no "*", so routes see one spelling of a path. */
	if (s[0] != '/')
		return fail(err, err_size, -EINVAL, "request target '%s' does not start with '/'",
			    quote(s, n, quoted));
	if (path_len >= HTTP_MAX_PATH)
		return fail(err, err_size, -E2BIG, "request path is longer than %d bytes",
			    HTTP_MAX_PATH - 1);
	memcpy(req->path, s, path_len);
	req->path[path_len] = '\0';
	return 0;
}

static int parse_request_line(const char *line, size_t n, struct http_request *req, char *err,
			      size_t err_size)
{
	const char *method, *target, *version, *space;
	size_t method_len, target_len, version_len;
	int ret;

	/* Checked first and over the whole line, so no later step ever sees a NUL or a CTL. */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			return fail(err, err_size, -EINVAL,
				    "control character 0x%02x in request line", c);
		if (c >= 0x80)
			return fail(err, err_size, -EINVAL, "non-ASCII byte 0x%02x in request line",
				    c);
	}

	method = line;
	space = memchr(line, ' ', n);
	if (!space || space == line)
		goto malformed;
	method_len = (size_t)(space - method);

	target = space + 1;
	space = memchr(target, ' ', n - method_len - 1);
	if (!space || space == target)
		goto malformed;
	target_len = (size_t)(space - target);

	version = space + 1;
	version_len = n - method_len - 1 - target_len - 1;
	if (version_len == 0 || memchr(version, ' ', version_len))
		goto malformed;

	ret = parse_method(method, method_len, req, err, err_size);
	if (ret)
		return ret;
	ret = parse_version(version, version_len, req, err, err_size);
	if (ret)
		return ret;
	return parse_target(target, target_len, req, err, err_size);

malformed:
	return fail(err, err_size, -EINVAL,
		    "malformed request line (want 'METHOD /path HTTP/1.1' with single spaces)");
}

static int parse_content_length(const char *value, size_t n, struct head_fields *head, char *err,
				size_t err_size)
{
	char quoted[QUOTE_BUF_SIZE];
	uint64_t length = 0;

	if (n == 0)
		goto invalid;
	for (size_t i = 0; i < n; i++) {
		unsigned int digit = (unsigned char)value[i] - '0';
		if (digit > 9 || length > (UINT64_MAX - digit) / 10)
			goto invalid;
		length = length * 10 + digit;
	}
	/* RFC 9110 8.6 lets a recipient accept a repeated identical value, never differing ones. */
	if (head->have_content_length && head->content_length != length)
		return fail(err, err_size, -EINVAL,
			    "conflicting Content-Length values %llu and %llu",
			    (unsigned long long)head->content_length, (unsigned long long)length);
	head->have_content_length = true;
	head->content_length = length;
	return 0;

invalid:
	return fail(err, err_size, -EINVAL, "invalid Content-Length '%s'", quote(value, n, quoted));
}

static void parse_connection(const char *value, size_t n, struct head_fields *head)
{
	for (;;) {
		const char *comma = memchr(value, ',', n);
		const char *option = value;
		size_t option_len = comma ? (size_t)(comma - value) : n;

		trim_whitespace(&option, &option_len);
		if (equals_ignore_case(option, option_len, "close"))
			head->connection_close = true;
		else if (equals_ignore_case(option, option_len, "keep-alive"))
			head->connection_keep_alive = true;
		if (!comma)
			return;
		n -= (size_t)(comma - value) + 1;
		value = comma + 1;
	}
}

static int parse_header_line(const char *line, size_t n, struct head_fields *head, char *err,
			     size_t err_size)
{
	char quoted[QUOTE_BUF_SIZE];
	const char *colon, *value;
	size_t name_len, value_len;

	if (is_whitespace(line[0]))
		return fail(err, err_size, -EINVAL,
			    "obsolete header line folding is not supported");
	colon = memchr(line, ':', n);
	if (!colon)
		return fail(err, err_size, -EINVAL, "malformed header line '%s' (no ':')",
			    quote(line, n, quoted));
	name_len = (size_t)(colon - line);
	if (name_len == 0)
		return fail(err, err_size, -EINVAL, "empty header name");
	/* RFC 9112 5.1: a server must reject whitespace before the colon (smuggling vector). */
	if (is_whitespace(line[name_len - 1]))
		return fail(err, err_size, -EINVAL, "whitespace before ':' in header '%s'",
			    quote(line, name_len, quoted));
	for (size_t i = 0; i < name_len; i++)
		if (!is_token_char(line[i]))
			return fail(err, err_size, -EINVAL, "invalid header name '%s'",
				    quote(line, name_len, quoted));

	value = colon + 1;
	value_len = n - name_len - 1;
	for (size_t i = 0; i < value_len; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(err, err_size, -EINVAL,
				    "control character 0x%02x in header '%s'", c,
				    quote(line, name_len, quoted));
	}
	trim_whitespace(&value, &value_len);

	if (equals_ignore_case(line, name_len, "content-length"))
		return parse_content_length(value, value_len, head, err, err_size);
	if (equals_ignore_case(line, name_len, "transfer-encoding"))
		return fail(err, err_size, -EINVAL, "Transfer-Encoding is not supported");
	if (equals_ignore_case(line, name_len, "connection"))
		parse_connection(value, value_len, head);
	else if (equals_ignore_case(line, name_len, "expect") &&
		 equals_ignore_case(value, value_len, "100-continue"))
		head->expect_continue = true;
	return 0;
}

/*
 * Parses the request line and headers. Returns 1 with req->header_len set once the blank
 * line is there, 0 while it is not, or a negative errno.
 */
static int parse_head(const char *buf, size_t len, struct http_request *req,
		      struct head_fields *head, char *err, size_t err_size)
{
	/* Never look past the head limit: see find_line_end() for why. */
	size_t window = len < HTTP_MAX_HEADER_BYTES ? len : HTTP_MAX_HEADER_BYTES;
	bool have_request_line = false;
	size_t pos = 0, line_len = 0;
	int ret;

	for (;;) {
		const char *line = buf + pos;

		ret = find_line_end(buf, window, pos, &line_len, err, err_size);
		if (ret < 0)
			return ret;
		if (ret == 0) {
			if (window == HTTP_MAX_HEADER_BYTES)
				return fail(err, err_size, -E2BIG,
					    "request line and headers are longer than %d bytes",
					    HTTP_MAX_HEADER_BYTES);
			return 0;
		}
		pos += line_len + 2;
		if (!have_request_line) {
			/* RFC 9112 2.2: skip empty lines before the request line. */
			if (line_len == 0)
				continue;
			ret = parse_request_line(line, line_len, req, err, err_size);
			if (ret)
				return ret;
			have_request_line = true;
			continue;
		}
		if (line_len == 0)
			break;
		ret = parse_header_line(line, line_len, head, err, err_size);
		if (ret)
			return ret;
	}
	req->header_len = pos;
	return 1;
}

int http_parse_request(const char *buf, size_t len, size_t max_body, struct http_request *req,
		       char *err, size_t err_size)
{
	struct head_fields head = {0};
	size_t body_limit;
	int ret;

	memset(req, 0, sizeof(*req));
	ret = parse_head(buf, len, req, &head, err, err_size);
	if (ret <= 0) {
		/* Half-parsed fields would make the same input look different per split. */
		memset(req, 0, sizeof(*req));
		return ret;
	}

	req->keep_alive = req->http_1_0 ? head.connection_keep_alive && !head.connection_close
					: !head.connection_close;
	/* RFC 9110 10.1.1: an HTTP/1.0 client cannot know what 100 Continue means. */
	req->expect_continue = head.expect_continue && !req->http_1_0;
	req->body_len = head.content_length;

	/* The return value is an int: a request must fit in one. */
	body_limit = (size_t)INT_MAX - req->header_len;
	if (max_body < body_limit)
		body_limit = max_body;
	if (head.content_length > body_limit)
		return fail(err, err_size, -EMSGSIZE,
			    "request body of %llu bytes is larger than the limit of %zu bytes",
			    (unsigned long long)head.content_length, body_limit);
	if (len - req->header_len < req->body_len)
		return 0;
	if (req->body_len)
		req->body = buf + req->header_len;
	return (int)(req->header_len + req->body_len);
}

const char *http_status_reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return NULL;
	}
}

int http_format_response(char *out, size_t out_size, int status, bool keep_alive, const char *body)
{
	const char *reason = http_status_reason(status);
	const char *connection = keep_alive ? "keep-alive" : "close";
	int n;

	/* 1xx are interim (HTTP_CONTINUE_RESPONSE); 204 must not have content (RFC 9110 15.3.5). */
	if (!reason || status < 200 || (status == 204 && body))
		return -EINVAL;
	/*
	 * Like micro_http, every response but 204 says how long it is, even without a body:
	 * on a kept-alive connection the client could not find its end otherwise.
	 */
	if (status == 204)
		n = snprintf(out, out_size,
			     "HTTP/1.1 %d %s\r\nServer: Firecracker API\r\nConnection: %s\r\n\r\n",
			     status, reason, connection);
	else
		n = snprintf(out, out_size,
			     "HTTP/1.1 %d %s\r\nServer: Firecracker API\r\nConnection: %s\r\n"
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			     status, reason, connection, body ? strlen(body) : 0, body ? body : "");
	if (n < 0 || (size_t)n >= out_size) {
		if (out_size)
			out[0] = '\0';
		return -ENOSPC;
	}
	return n;
}

const char *http_method_name(enum http_method method)
{
	switch (method) {
	case HTTP_GET:
		return "GET";
	case HTTP_PUT:
		return "PUT";
	case HTTP_PATCH:
		return "PATCH";
	}
	return "?";
}
