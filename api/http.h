/*
 * A small, strict HTTP/1.1 request parser and response writer for the Firecracker-compatible
 * API on a Unix socket. Pure: no I/O, no allocation, no global state.
 *
 * The parser is stateless: each call parses the first request in the buffer from scratch, so
 * the server keeps one buffer per connection, appends what it reads and calls again. It only
 * ever looks at the first HTTP_MAX_HEADER_BYTES bytes for the head and never scans the body,
 * so a call costs O(head) however the request was split. A given prefix of a request always
 * gives either 0 or the same answer as the whole request: errors are reported in the order
 * they occur in the bytes, and never depend on bytes that have not arrived.
 *
 * What it accepts:
 *   - request line "METHOD SP TARGET SP HTTP/1.x CRLF" with single spaces; methods GET, PUT,
 *     PATCH (case-sensitive); versions HTTP/1.0 and HTTP/1.1; the target in origin form
 *     ("/path?query", printable ASCII only, no percent-decoding, no normalisation);
 *   - every line ends in CRLF: a bare LF or a bare CR anywhere in the head is -EINVAL;
 *   - empty lines (CRLF) before the request line are skipped, as RFC 9112 2.2 asks; they
 *     count towards HTTP_MAX_HEADER_BYTES and towards the return value;
 *   - header lines "Name: value": name a token, no whitespace before the colon, no obs-fold,
 *     value without control characters (HTAB excepted); names are case-insensitive; unknown
 *     headers are ignored; Host is not required (Firecracker does not require it either);
 *   - Content-Length: digits only (optional whitespace around), no overflow; repeated with
 *     the same value is accepted, with a different one -EINVAL; absent or 0 means no body;
 *   - any Transfer-Encoding is -EINVAL (no chunked bodies; this also rules out the
 *     Content-Length/Transfer-Encoding smuggling ambiguity);
 *   - Connection: a comma-separated list; "close" wins over "keep-alive"; other tokens are
 *     ignored;
 *   - Expect: "100-continue" sets expect_continue (only for HTTP/1.1: RFC 9110 10.1.1 says
 *     to ignore it from HTTP/1.0 clients); other expectations are ignored, as micro_http does.
 */
#ifndef WISP_API_HTTP_H
#define WISP_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADER_BYTES 8192 /* request line + headers, incl. the blank line */
#define HTTP_MAX_PATH	      1024 /* incl. the NUL: paths of up to 1023 bytes */

/* Send this when http_parse_request() returns 0 with header_len != 0 and expect_continue. */
#define HTTP_CONTINUE_RESPONSE "HTTP/1.1 100 Continue\r\n\r\n"

enum http_method { HTTP_GET, HTTP_PUT, HTTP_PATCH };

struct http_request {
	enum http_method method;
	char path[HTTP_MAX_PATH]; /* the target without any ?query, NUL-terminated */
	const char *body;	  /* points into the caller's buffer; NULL if no body */
	size_t body_len;	  /* Content-Length */
	/*
	 * HTTP/1.1: true unless "Connection: close"; HTTP/1.0: false unless
	 * "Connection: keep-alive".
	 */
	bool keep_alive;
	bool expect_continue; /* an HTTP/1.1 request sent "Expect: 100-continue" */
	bool http_1_0;	      /* the request line said HTTP/1.0 (else HTTP/1.1) */
	/*
	 * Bytes of the head (leading empty lines, request line, headers and the blank line);
	 * non-zero exactly when the head is complete and valid.
	 */
	size_t header_len;
};

/*
 * Parses the first request in buf[0..len). *req is filled once the head is complete and
 * valid (header_len != 0) and all zero otherwise: never half-filled.
 *
 * > 0:       a whole request is there; the return value is how many bytes it used (head +
 *            body). *req is filled; body points into buf.
 * 0:         not complete yet; read more. When the head is complete and only body bytes are
 *            missing, *req is filled (header_len != 0, body NULL): that is the moment to send
 *            HTTP_CONTINUE_RESPONSE if expect_continue.
 * -EINVAL:   malformed or unsupported; err gets a one-line message naming what is wrong.
 * -E2BIG:    the head exceeds HTTP_MAX_HEADER_BYTES (also when len already reaches it and no
 *            blank line ended the head within it), or the path is longer than
 *            HTTP_MAX_PATH - 1 bytes.
 * -EMSGSIZE: the head is complete and Content-Length exceeds max_body (or the request would
 *            be longer than INT_MAX bytes). Decided as soon as the head is complete, without
 *            waiting for the body; *req is filled as for 0 and body_len holds the announced
 *            length.
 *
 * After any negative value the connection cannot be resynchronised: answer and close it.
 * err may be NULL or err_size 0; it is set on every negative return, untouched otherwise.
 */
int http_parse_request(const char *buf, size_t len, size_t max_body, struct http_request *req,
		       char *err, size_t err_size);

/*
 * Writes a whole response into out (NUL-terminated, the NUL not counted):
 *   "HTTP/1.1 <status> <standard reason phrase>"
 *   "Server: Firecracker API"
 *   "Connection: keep-alive" or "Connection: close"
 *   "Content-Type: application/json" and "Content-Length: N" (N = strlen(body), 0 when body
 *   is NULL), except for 204, which has neither header and no body, like micro_http;
 * then the blank line and the body.
 * Returns the length written, -ENOSPC if it does not fit (out is then an empty string when
 * out_size > 0), or -EINVAL for a status without a known reason phrase (1xx included: use
 * HTTP_CONTINUE_RESPONSE) or a body on a 204.
 */
int http_format_response(char *out, size_t out_size, int status, bool keep_alive, const char *body);

/* The standard reason phrase of a status this module writes, or NULL. */
const char *http_status_reason(int status);

/* "GET", "PUT" or "PATCH"; "?" for anything else. */
const char *http_method_name(enum http_method method);

#endif /* WISP_API_HTTP_H */
