#define _GNU_SOURCE /* accept4 */
#include "server.h"

#include "../vmm/log.h"
#include "../vmm/seccomp_filter.h"
#include "http.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define RESPONSE_HEADROOM 512 /* status line and headers around a JSON body */
/* What a closing connection reads and drops beyond the largest request, at most. */
#define LINGER_EXTRA_BYTES (1 << 20)

struct api_connection {
	int fd; /* -1: the slot is free */
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_sent;
	bool close_when_sent;
	bool sent_continue;
	/* Answered for the last time and shut for writing: what the client still sends is
	 * read and dropped (up to linger_left bytes) until it closes its end. */
	bool lingering;
	size_t linger_left;
	uint64_t last_active; /* the server's tick at this connection's last I/O */
};

struct api_call {
	enum http_method method;
	const char *path;
	const char *body;
	size_t body_len;
};

struct api_server {
	int listen_fd;
	int epoll_fd;
	int request_fd; /* eventfd: a call waits for the VMM thread */
	size_t max_payload;
	size_t in_capacity;
	uint64_t tick;	    /* counts I/O on connections, to find the longest idle */
	uint64_t evictions; /* connections closed to make room for a new one */
	char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	pthread_t thread;
	struct api_connection connections[API_MAX_CONNECTIONS];

	pthread_mutex_t lock; /* covers the hand-off below */
	pthread_cond_t replied;
	bool has_call, has_reply;
	bool thread_ready; /* the thread has its seccomp filter (or failed: thread_error) */
	int thread_error;
	struct api_call call;
	struct api_reply reply;
};

static void connection_close(struct api_server *server, struct api_connection *conn)
{
	epoll_ctl(server->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
	close(conn->fd);
	free(conn->in);
	free(conn->out);
	memset(conn, 0, sizeof(*conn));
	conn->fd = -1;
}

/* Queues a response; the connection writes it before it reads the next request. */
static int connection_respond(struct api_connection *conn, int status, const char *body,
			      bool keep_alive)
{
	size_t size = (body ? strlen(body) : 0) + RESPONSE_HEADROOM;
	char *out = malloc(size);
	int len;

	if (!out)
		return -ENOMEM;
	len = http_format_response(out, size, status, keep_alive, body);
	if (len < 0) {
		free(out);
		return len;
	}
	free(conn->out);
	conn->out = out;
	conn->out_len = (size_t)len;
	conn->out_sent = 0;
	conn->close_when_sent = !keep_alive;
	return 0;
}

static void connection_fault(struct api_connection *conn, const char *message)
{
	struct api_reply reply;

	api_fault(&reply, 400, message);
	if (connection_respond(conn, reply.status, reply.body, false))
		conn->close_when_sent = true;
	free(reply.body);
}

/* API thread: hands the request to the VMM thread and waits for its reply. */
static void call_vmm(struct api_server *server, const struct api_call *call,
		     struct api_reply *reply)
{
	uint64_t one = 1;

	pthread_mutex_lock(&server->lock);
	server->call = *call;
	server->has_call = true;
	server->has_reply = false;
	if (write(server->request_fd, &one, sizeof(one)) < 0)
		log_error("API: cannot wake the VMM thread: %s", strerror(errno));
	while (!server->has_reply)
		pthread_cond_wait(&server->replied, &server->lock);
	*reply = server->reply;
	pthread_mutex_unlock(&server->lock);
}

void api_server_serve(struct api_server *server, struct api_state *state)
{
	struct api_reply reply;
	struct api_call call;
	uint64_t count;

	if (read(server->request_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_debug("API: reading the request eventfd failed: %s", strerror(errno));
	pthread_mutex_lock(&server->lock);
	if (!server->has_call) {
		pthread_mutex_unlock(&server->lock);
		return;
	}
	call = server->call;
	pthread_mutex_unlock(&server->lock);

	/* The API thread waits, so the call's strings stay put meanwhile. */
	api_handle(state, call.method, call.path, call.body, call.body_len, &reply);

	pthread_mutex_lock(&server->lock);
	server->reply = reply;
	server->has_call = false;
	server->has_reply = true;
	pthread_cond_signal(&server->replied);
	pthread_mutex_unlock(&server->lock);
}

/* Parses and answers requests while the connection has no response pending. */
static void connection_process(struct api_server *server, struct api_connection *conn)
{
	while (!conn->out && !conn->close_when_sent && !conn->lingering && conn->in_len) {
		struct http_request request;
		struct api_reply reply;
		char err[256] = "malformed HTTP request";
		int used = http_parse_request(conn->in, conn->in_len, server->max_payload, &request,
					      err, sizeof(err));

		if (used == 0) {
			/* curl waits up to a second for "100 Continue" before a large body. */
			if (!conn->sent_continue && request.header_len && request.expect_continue) {
				conn->sent_continue = true;
				if (send(conn->fd, HTTP_CONTINUE_RESPONSE,
					 sizeof(HTTP_CONTINUE_RESPONSE) - 1, MSG_NOSIGNAL) < 0)
					conn->close_when_sent = true;
			}
			if (conn->in_len >= server->in_capacity)
				connection_fault(conn, "request too large");
			return;
		}
		if (used < 0) {
			if (used == -EMSGSIZE)
				snprintf(
				    err, sizeof(err),
				    "Request payload with size %zu is larger than the limit of "
				    "%zu allowed by server.",
				    request.body_len, server->max_payload);
			connection_fault(conn, err);
			return;
		}
		call_vmm(server,
			 &(struct api_call){request.method, request.path, request.body,
					    request.body_len},
			 &reply);
		if (connection_respond(conn, reply.status, reply.body, request.keep_alive))
			conn->close_when_sent = true;
		free(reply.body);
		memmove(conn->in, conn->in + used, conn->in_len - (size_t)used);
		conn->in_len -= (size_t)used;
		conn->sent_continue = false;
	}
}

/*
 * The last answer is out and the connection ends. Closing a socket while its client is
 * still sending (the rest of a body the parser refused, say) makes the client's send fail
 * with EPIPE or ECONNRESET before it reads the answer. So the write side is shut (the
 * client reads the answer, then the end of the stream) and whatever the client still
 * sends is read and dropped until it closes its end, for at most the largest request
 * plus LINGER_EXTRA_BYTES. Returns false if the connection had to be closed at once.
 */
static bool connection_linger(struct api_server *server, struct api_connection *conn)
{
	struct epoll_event event = {.events = EPOLLIN, .data.ptr = conn};

	if (shutdown(conn->fd, SHUT_WR) < 0 ||
	    epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event) < 0) {
		connection_close(server, conn);
		return false;
	}
	conn->lingering = true;
	conn->close_when_sent = false;
	conn->linger_left = server->in_capacity + LINGER_EXTRA_BYTES;
	conn->in_len = 0;
	return true;
}

static void connection_linger_read(struct api_server *server, struct api_connection *conn)
{
	ssize_t n = read(conn->fd, conn->in, server->in_capacity);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || (size_t)n >= conn->linger_left) {
		connection_close(server, conn);
		return;
	}
	conn->linger_left -= (size_t)n;
	conn->last_active = ++server->tick;
}

/* Returns false once the connection takes no more requests (closed, or lingering). */
static bool connection_flush(struct api_server *server, struct api_connection *conn)
{
	while (conn->out && conn->out_sent < conn->out_len) {
		ssize_t n = send(conn->fd, conn->out + conn->out_sent,
				 conn->out_len - conn->out_sent, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct epoll_event event = {.events = EPOLLOUT, .data.ptr = conn};
			epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event);
			return true;
		}
		if (n <= 0) {
			connection_close(server, conn);
			return false;
		}
		conn->out_sent += (size_t)n;
		conn->last_active = ++server->tick;
	}
	free(conn->out);
	conn->out = NULL;
	if (conn->close_when_sent) {
		connection_linger(server, conn);
		return false;
	}
	struct epoll_event event = {.events = EPOLLIN, .data.ptr = conn};
	epoll_ctl(server->epoll_fd, EPOLL_CTL_MOD, conn->fd, &event);
	return true;
}

/* Answers every complete request in the input, one at a time, until a response cannot
 * be written at once (EPOLLOUT resumes) or the input runs out. */
static void connection_work(struct api_server *server, struct api_connection *conn)
{
	for (;;) {
		connection_process(server, conn);
		if (!conn->out || !connection_flush(server, conn) || conn->out)
			return;
	}
}

static void connection_readable(struct api_server *server, struct api_connection *conn)
{
	ssize_t n;

	if (conn->lingering) {
		connection_linger_read(server, conn);
		return;
	}
	n = read(conn->fd, conn->in + conn->in_len, server->in_capacity - conn->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		connection_close(server, conn);
		return;
	}
	conn->in_len += (size_t)n;
	conn->last_active = ++server->tick;
	connection_work(server, conn);
}

/*
 * All API_MAX_CONNECTIONS slots are taken and a client connects: the connection that
 * has waited longest (one that lingers first, else the one whose last byte in or out is
 * the oldest) makes room. Requests are answered one at a time on this thread, so none is
 * half-handled here; a connection with no answer pending gets a 408 first (best effort:
 * never blocking). A stalled client thus cannot lock the others out, as 64 silent
 * connections would; one that sends a request and reads its answer is never the oldest.
 */
static struct api_connection *connection_evict_longest_idle(struct api_server *server)
{
	struct api_connection *victim = &server->connections[0];

	for (size_t i = 1; i < API_MAX_CONNECTIONS; i++) {
		struct api_connection *conn = &server->connections[i];

		if (conn->lingering != victim->lingering ? conn->lingering
							 : conn->last_active < victim->last_active)
			victim = conn;
	}
	if (!server->evictions++)
		log_warn("API: %d connections open: closing the longest idle one for a new one "
			 "(later ones are logged at debug level)",
			 API_MAX_CONNECTIONS);
	else
		log_debug("API: %d connections open: closing the longest idle one for a new one",
			  API_MAX_CONNECTIONS);
	if (!victim->out && !victim->lingering) {
		char body[160], out[sizeof(body) + RESPONSE_HEADROOM];
		int len;

		snprintf(body, sizeof(body),
			 "{\"fault_message\":\"The API closed this idle connection to accept a new "
			 "one (it holds at most %d).\"}",
			 API_MAX_CONNECTIONS);
		len = http_format_response(out, sizeof(out), 408, false, body);
		if (len > 0)
			(void)!send(victim->fd, out, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	/* Bytes left unread would turn the close into a reset that can hide the 408. */
	for (int reads = 0; reads < 16; reads++)
		if (recv(victim->fd, victim->in, server->in_capacity, MSG_DONTWAIT) <= 0)
			break;
	connection_close(server, victim);
	return victim;
}

static void accept_connections(struct api_server *server)
{
	for (;;) {
		int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct api_connection *conn = NULL;

		if (fd < 0)
			return;
		for (size_t i = 0; i < API_MAX_CONNECTIONS && !conn; i++)
			if (server->connections[i].fd < 0)
				conn = &server->connections[i];
		if (!conn)
			conn = connection_evict_longest_idle(server);
		conn->in = malloc(server->in_capacity);
		struct epoll_event event = {.events = EPOLLIN, .data.ptr = conn};
		if (!conn->in || epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0) {
			free(conn->in);
			conn->in = NULL;
			close(fd);
			continue;
		}
		conn->fd = fd;
		conn->last_active = ++server->tick;
	}
}

static void *api_thread(void *arg)
{
	struct api_server *server = arg;
	struct epoll_event events[16];
	/* Before the first accept: from here on this thread reads what clients send. */
	int err = seccomp_enter(SECCOMP_THREAD_API);

	pthread_mutex_lock(&server->lock);
	server->thread_ready = true;
	server->thread_error = err;
	pthread_cond_broadcast(&server->replied);
	pthread_mutex_unlock(&server->lock);
	if (err)
		return NULL;
	for (;;) {
		int n = epoll_wait(server->epoll_fd, events, 16, -1);
		if (n < 0 && errno != EINTR) {
			log_error("API: epoll_wait failed: %s; the API stops answering",
				  strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			struct api_connection *conn = events[i].data.ptr;
			if (!conn) {
				accept_connections(server);
			} else if (conn->fd >= 0) {
				if (!(events[i].events & EPOLLOUT))
					connection_readable(server, conn);
				else if (connection_flush(server, conn) && !conn->out)
					connection_work(server, conn);
			}
		}
	}
	return NULL;
}

/* A path too long, taken, or in a directory wisp may not write to is the user's. */
static int bind_socket(struct api_server *server, const char *socket_path,
		       enum failure_origin *origin)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct stat st;

	if (strlen(socket_path) >= sizeof(addr.sun_path)) {
		log_error(
		    "--api-sock %s: longer than the %zu characters a Unix socket path can have",
		    socket_path, sizeof(addr.sun_path) - 1);
		failure_blame(origin, FAILURE_BAD_INPUT);
		return -ENAMETOOLONG;
	}
	if (lstat(socket_path, &st) == 0) {
		log_error(
		    "--api-sock %s: the file already exists; remove it or choose another path",
		    socket_path);
		failure_blame(origin, FAILURE_BAD_INPUT);
		return -EEXIST;
	}
	server->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (server->listen_fd < 0) {
		int err = -errno;
		log_error("API: cannot create a Unix socket: %s", strerror(-err));
		return err;
	}
	strcpy(addr.sun_path, socket_path);
	if (bind(server->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = -errno;
		log_error("--api-sock %s: cannot bind there: %s (does the directory exist, and "
			  "may this user write to it?)",
			  socket_path, strerror(-err));
		failure_blame(origin, FAILURE_BAD_INPUT);
		return err;
	}
	strcpy(server->socket_path, socket_path); /* from now on, removed on the way out */
	if (listen(server->listen_fd, API_MAX_CONNECTIONS) < 0) {
		int err = -errno;
		log_error("--api-sock %s: cannot listen there: %s", socket_path, strerror(-err));
		return err;
	}
	return 0;
}

int api_server_start(struct api_server **out, const char *socket_path, size_t max_payload,
		     enum failure_origin *origin)
{
	struct api_server *server = calloc(1, sizeof(*server));
	struct epoll_event event = {.events = EPOLLIN, .data.ptr = NULL};
	int err;

	if (!server)
		return -ENOMEM;
	server->listen_fd = server->epoll_fd = server->request_fd = -1;
	server->max_payload = max_payload;
	server->in_capacity = HTTP_MAX_HEADER_BYTES + max_payload + 1;
	for (size_t i = 0; i < API_MAX_CONNECTIONS; i++)
		server->connections[i].fd = -1;
	pthread_mutex_init(&server->lock, NULL);
	pthread_cond_init(&server->replied, NULL);
	err = bind_socket(server, socket_path, origin);
	if (err)
		goto fail;
	server->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	server->request_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (server->epoll_fd < 0 || server->request_fd < 0 ||
	    epoll_ctl(server->epoll_fd, EPOLL_CTL_ADD, server->listen_fd, &event) < 0) {
		err = -errno;
		log_error("API: cannot set up its epoll: %s", strerror(errno));
		goto fail;
	}
	err = -pthread_create(&server->thread, NULL, api_thread, server);
	if (err) {
		log_error("API: cannot start its thread: %s", strerror(-err));
		goto fail;
	}
	/* The socket answers only once its thread is filtered; a thread that could not
	 * install its filter has ended. */
	pthread_mutex_lock(&server->lock);
	while (!server->thread_ready)
		pthread_cond_wait(&server->replied, &server->lock);
	err = server->thread_error;
	pthread_mutex_unlock(&server->lock);
	if (err) {
		pthread_join(server->thread, NULL);
		goto fail;
	}
	*out = server;
	return 0;
fail:
	if (server->listen_fd >= 0) {
		close(server->listen_fd);
		if (*server->socket_path)
			unlink(server->socket_path);
	}
	if (server->epoll_fd >= 0)
		close(server->epoll_fd);
	if (server->request_fd >= 0)
		close(server->request_fd);
	free(server);
	return err;
}

int api_server_request_fd(const struct api_server *server)
{
	return server->request_fd;
}

void api_server_remove_socket(struct api_server *server)
{
	if (server && *server->socket_path)
		unlink(server->socket_path);
}
