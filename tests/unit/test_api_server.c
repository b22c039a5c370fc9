/*
 * Unit tests for the API server thread (api/server.c) over a real Unix socket, with a
 * thread of the test standing in for the VMM thread: what a client sees when the server
 * refuses a request it is still sending, and when more clients connect than the server
 * holds connections.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../api/server.h"
#include "log.h"

static struct api_server *server;
static struct api_state api;
static char socket_path[64];
static pthread_t vmm_thread;
static atomic_bool stopping;

/* The VMM thread's part: runs each request the server hands over. */
static void *vmm_loop(void *arg)
{
	(void)arg;
	while (!atomic_load(&stopping)) {
		struct pollfd p = {.fd = api_server_request_fd(server), .events = POLLIN};

		if (poll(&p, 1, 100) == 1)
			api_server_serve(server, &api);
	}
	return NULL;
}

static const struct api_vmm_ops no_ops;

static int start_server(void **state)
{
	static struct vmm_config config;
	(void)state;

	config_set_defaults(&config);
	strcpy(config.process.id, "server_test");
	api_state_init(&api, &config, "0.0.0", &no_ops, NULL);
	snprintf(socket_path, sizeof(socket_path), "/tmp/wisp-test-server-%d.sock", getpid());
	unlink(socket_path);
	if (api_server_start(&server, socket_path, API_DEFAULT_MAX_PAYLOAD, NULL))
		return -1;
	return pthread_create(&vmm_thread, NULL, vmm_loop, NULL) ? -1 : 0;
}

static int stop_server(void **state)
{
	(void)state;
	atomic_store(&stopping, true);
	pthread_join(vmm_thread, NULL);
	api_server_remove_socket(server);
	return 0;
}

/* A blocking client; every wait is bounded so that a broken server fails the test
 * instead of hanging it. sndbuf > 0 shrinks the send buffer, so that a large request
 * can only be sent if the server keeps reading it. */
static int client(int sndbuf)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct timeval timeout = {.tv_sec = 20};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(addr.sun_path, socket_path);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)), 0);
	if (sndbuf)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

/* Sends everything; 0 or -errno (EPIPE, ECONNRESET: the server closed on the client). */
static int send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads until the end of the stream (or `want` bytes); returns the length or -errno. */
static ssize_t receive(int fd, char *buf, size_t size, size_t want)
{
	size_t got = 0;

	while (got < size - 1 && got < want) {
		ssize_t n = recv(fd, buf + got, size - 1 - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/* One whole response on a kept-alive connection: the head, then Content-Length bytes. */
static void receive_response(int fd, char *buf, size_t size)
{
	size_t got = 0;
	char *end = NULL;

	while (!end) {
		ssize_t n = recv(fd, buf + got, size - 1 - got, 0);

		assert_true(n > 0);
		got += (size_t)n;
		buf[got] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	const char *length = strstr(buf, "Content-Length: ");
	size_t total = (size_t)(end + 4 - buf) + (length ? strtoul(length + 16, NULL, 10) : 0);
	while (got < total) {
		ssize_t n = recv(fd, buf + got, size - 1 - got, 0);

		assert_true(n > 0);
		got += (size_t)n;
	}
	buf[got] = '\0';
	assert_int_equal(got, total);
}

/* A request the server refuses at its first line, with a body: the client sends all of
 * it, then reads the 400. */
static void refused_with_body(const char *method, size_t body_len, const char *fragment)
{
	char head[256], answer[4096];
	char *body = malloc(body_len);
	int fd = client(4096);
	ssize_t len;

	assert_non_null(body);
	memset(body, 'x', body_len);
	snprintf(head, sizeof(head),
		 "%s /machine-config HTTP/1.1\r\nHost: localhost\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 method, body_len);
	assert_int_equal(send_all(fd, head, strlen(head)), 0);
	/* Without lingering, the server closes here and this send fails with EPIPE. */
	assert_int_equal(send_all(fd, body, body_len), 0);
	len = receive(fd, answer, sizeof(answer), SIZE_MAX);
	assert_true(len > 0);
	if (strncmp(answer, "HTTP/1.1 400 ", 13) || !strstr(answer, "{\"fault_message\":") ||
	    !strstr(answer, fragment))
		fail_msg("unexpected answer: %s", answer);
	assert_non_null(strstr(answer, "Connection: close"));
	close(fd);
	free(body);
}

static void test_an_unknown_method_with_a_body_gets_its_400(void **state)
{
	(void)state;
	refused_with_body("POST", 50000, "unsupported HTTP method 'POST'");
	refused_with_body("DELETE", 1000, "'DELETE'");
}

static void test_a_body_over_the_limit_gets_its_400(void **state)
{
	(void)state;
	refused_with_body("PUT", 60000, "larger than the limit of 51200");
	refused_with_body("POST", 60000, "unsupported HTTP method 'POST'");
}

static void get_root(int fd)
{
	static const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char answer[1024];

	assert_int_equal(send_all(fd, request, sizeof(request) - 1), 0);
	receive_response(fd, answer, sizeof(answer));
	if (strncmp(answer, "HTTP/1.1 200 ", 13) || !strstr(answer, "\"id\":\"server_test\""))
		fail_msg("GET /: %s", answer);
}

/* A closed-for-room connection gets a 408 and then the end of the stream. */
static void assert_evicted(int fd)
{
	char answer[1024];
	ssize_t len = receive(fd, answer, sizeof(answer), SIZE_MAX);

	if (len <= 0)
		fail_msg("evicted connection: nothing to read (%zd)", len);
	if (strncmp(answer, "HTTP/1.1 408 ", 13) || !strstr(answer, "to accept a new one"))
		fail_msg("evicted connection: %s", answer);
}

static bool still_open(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 0;
}

static void test_stalled_connections_make_room_longest_idle_first(void **state)
{
	int stalled[API_MAX_CONNECTIONS], active, late;
	(void)state;

	for (int i = 0; i < API_MAX_CONNECTIONS; i++) {
		stalled[i] = client(0);
		assert_int_equal(send_all(stalled[i], "GET / HT", 8), 0);
		/* Let the server take these bytes before the next client's: idleness is the
		 * order of its I/O, and a loaded machine could otherwise have it read two
		 * clients in the other order (seen once under a busy host). */
		usleep(5000);
	}
	/* Every slot is taken: the 65th client still gets in and is answered, and the
	 * connection idle longest (the first) made room. */
	active = client(0);
	get_root(active);
	assert_evicted(stalled[0]);
	for (int i = 1; i < API_MAX_CONNECTIONS; i++)
		assert_true(still_open(stalled[i]));
	/* A client that keeps talking is never the longest idle: the next newcomer
	 * evicts the second stalled one, not it. */
	get_root(active);
	late = client(0);
	get_root(late);
	assert_evicted(stalled[1]);
	get_root(active);
	for (int i = 2; i < API_MAX_CONNECTIONS; i++)
		assert_true(still_open(stalled[i]));
	/* A stalled client that finishes its request is answered. */
	assert_int_equal(send_all(stalled[2], "TP/1.1\r\n\r\n", 10), 0);
	{
		char answer[1024];
		receive_response(stalled[2], answer, sizeof(answer));
		assert_int_equal(strncmp(answer, "HTTP/1.1 200 ", 13), 0);
	}
	for (int i = 0; i < API_MAX_CONNECTIONS; i++)
		close(stalled[i]);
	close(active);
	close(late);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_an_unknown_method_with_a_body_gets_its_400),
	    cmocka_unit_test(test_a_body_over_the_limit_gets_its_400),
	    cmocka_unit_test(test_stalled_connections_make_room_longest_idle_first),
	};

	log_set_level(LOG_LEVEL_ERROR);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, start_server, stop_server);
}
