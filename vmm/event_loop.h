/*
 * The VMM thread's epoll loop: devices register file descriptors (ioeventfds, TAP,
 * io_uring) with a callback; callbacks run on the VMM thread, one at a time.
 */
#ifndef WISP_EVENT_LOOP_H
#define WISP_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define EVENT_LOOP_MAX_SOURCES 128

typedef void (*event_callback)(void *opaque, uint32_t events);

struct event_source {
	int fd;
	event_callback callback;
	void *opaque;
};

struct event_loop {
	int epoll_fd;
	struct event_source sources[EVENT_LOOP_MAX_SOURCES];
	bool stopping;
};

int event_loop_init(struct event_loop *loop);
/* Watches fd for `events` (EPOLLIN, EPOLLOUT...); returns 0 or -errno (-EPERM for
 * regular files, which epoll cannot watch). */
int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_callback callback,
		   void *opaque);
int event_loop_modify(struct event_loop *loop, int fd, uint32_t events);
void event_loop_remove(struct event_loop *loop, int fd);
/* Runs one round: waits up to timeout_ms (-1: forever) and dispatches. */
int event_loop_run_once(struct event_loop *loop, int timeout_ms);
void event_loop_close(struct event_loop *loop);

#endif
