/*
 * The API server thread: HTTP/1.1 over a Unix socket, several connections, one request at
 * a time per connection. It only moves bytes: each complete request is handed to the
 * VMM thread (an eventfd wakes it; api_server_serve runs the request there) and the
 * thread waits for the reply. A client that sends nothing, or a byte at a time, holds
 * only its own connection: every socket is non-blocking and watched by one epoll. With
 * all API_MAX_CONNECTIONS taken, a new client evicts the longest idle connection; a
 * connection the server ends is shut for writing and drained (it lingers) so that a
 * client still sending reads its answer.
 */
#ifndef WISP_API_SERVER_H
#define WISP_API_SERVER_H

#include "../vmm/failure.h"
#include "api.h"

#include <stddef.h>

#define API_DEFAULT_MAX_PAYLOAD 51200 /* Firecracker's --http-api-max-payload-size default */
#define API_MAX_CONNECTIONS	64

struct api_server;

/* Binds socket_path (which must not exist) and starts the thread. Returns 0 or -errno,
 * having logged why; a path that cannot be bound blames the input in *origin (NULL: no
 * one asks). */
int api_server_start(struct api_server **out, const char *socket_path, size_t max_payload,
		     enum failure_origin *origin);
/* Readable when a request waits for api_server_serve (VMM thread). */
int api_server_request_fd(const struct api_server *server);
/* VMM thread: runs the waiting request (if any) through api_handle and wakes the API
 * thread with the reply. */
void api_server_serve(struct api_server *server, struct api_state *state);
/* Removes the socket file (the thread ends with the process). */
void api_server_remove_socket(struct api_server *server);

#endif
