#include "event_loop.h"

#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int event_loop_init(struct event_loop *loop)
{
	memset(loop, 0, sizeof(*loop));
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		loop->sources[i].fd = -1;
	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epoll_fd < 0) {
		int err = -errno;
		log_error("epoll_create1 failed: %s", strerror(errno));
		return err;
	}
	return 0;
}

int event_loop_add(struct event_loop *loop, int fd, uint32_t events, event_callback callback,
		   void *opaque)
{
	struct epoll_event ev = {.events = events};

	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++) {
		struct event_source *source = &loop->sources[i];
		if (source->fd != -1)
			continue;
		ev.data.ptr = source;
		if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		*source = (struct event_source){.fd = fd, .callback = callback, .opaque = opaque};
		return 0;
	}
	log_error("event loop: more than %d file descriptors to watch (fd %d is one too many)",
		  EVENT_LOOP_MAX_SOURCES, fd);
	return -ENOSPC;
}

static struct event_source *find_source(struct event_loop *loop, int fd)
{
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		if (loop->sources[i].fd == fd)
			return &loop->sources[i];
	return NULL;
}

int event_loop_modify(struct event_loop *loop, int fd, uint32_t events)
{
	struct event_source *source = find_source(loop, fd);
	struct epoll_event ev = {.events = events, .data.ptr = source};

	if (!source)
		return -ENOENT;
	return epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void event_loop_remove(struct event_loop *loop, int fd)
{
	struct event_source *source = find_source(loop, fd);
	if (!source)
		return;
	epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	/* Not reused until the next round: a pending event may still point at it. */
	source->callback = NULL;
	source->fd = -2;
}

int event_loop_run_once(struct event_loop *loop, int timeout_ms)
{
	struct epoll_event events[32];
	int n = epoll_wait(loop->epoll_fd, events, 32, timeout_ms);

	if (n < 0) {
		int err = -errno;

		if (err == -EINTR)
			return 0;
		log_error("epoll_wait on the event loop failed: %s", strerror(-err));
		return err;
	}
	for (int i = 0; i < n && !loop->stopping; i++) {
		struct event_source *source = events[i].data.ptr;
		if (source->callback)
			source->callback(source->opaque, events[i].events);
	}
	for (int i = 0; i < EVENT_LOOP_MAX_SOURCES; i++)
		if (loop->sources[i].fd == -2)
			loop->sources[i].fd = -1;
	return 0;
}

void event_loop_close(struct event_loop *loop)
{
	if (loop->epoll_fd >= 0)
		close(loop->epoll_fd);
	loop->epoll_fd = -1;
}
