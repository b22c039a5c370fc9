#include "serial_output.h"

#include "../log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A description of the console's file of wisp's own, non-blocking, or -errno. */
static int reopen_nonblocking(int fd, const struct stat *st)
{
	char path[32];
	struct stat again;
	int reopened;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	reopened = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (reopened < 0)
		return -errno;
	/* The same pipe or device, not something mounted over /proc. */
	if (fstat(reopened, &again) < 0 || again.st_dev != st->st_dev ||
	    again.st_ino != st->st_ino) {
		close(reopened);
		return -ENXIO;
	}
	return reopened;
}

static int set_nonblocking(struct serial_output *out, bool shared)
{
	int flags = fcntl(out->fd, F_GETFL);

	if (flags < 0)
		return -errno;
	if (flags & O_NONBLOCK)
		return 0;
	if (fcntl(out->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	if (shared)
		out->shared_flags = flags;
	return 0;
}

int serial_output_init(struct serial_output *out, int fd, bool owned,
		       void (*wait_writable)(void *opaque), void *opaque)
{
	struct stat st;
	int reopened, err;

	memset(out, 0, sizeof(*out));
	out->fd = fd;
	out->own_fd = -1;
	out->shared_flags = -1;
	out->wait_writable = wait_writable;
	out->opaque = opaque;
	pthread_mutex_init(&out->lock, NULL);
	{
		pthread_condattr_t attr;
		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&out->room, &attr);
		pthread_condattr_destroy(&attr);
	}
	/* A regular file never refuses bytes: nothing to buffer. A closed stdout neither:
	 * its writes fail, and the bytes are counted as missed. */
	if (fstat(fd, &st) < 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		out->direct = true;
		return 0;
	}
	out->ring = malloc(SERIAL_OUTPUT_RING_SIZE);
	if (!out->ring) {
		pthread_cond_destroy(&out->room);
		pthread_mutex_destroy(&out->lock);
		return -ENOMEM;
	}
	if (owned)
		return set_nonblocking(out, false);
	reopened = reopen_nonblocking(fd, &st);
	if (reopened >= 0) {
		out->fd = out->own_fd = reopened;
		return 0;
	}
	err = set_nonblocking(out, true);
	if (!err && out->shared_flags >= 0)
		log_info("console: cannot open fd %d again (%s): made it non-blocking, which "
			 "processes sharing it see too, until wisp ends",
			 fd, strerror(-reopened));
	return err;
}

/* Writes as much of bytes as the console takes now. *refused: it stopped on EAGAIN (try
 * later) rather than on an error (drop). */
static size_t write_some(struct serial_output *out, const uint8_t *bytes, size_t len, bool *refused)
{
	size_t done = 0;

	*refused = false;
	while (done < len) {
		ssize_t n = write(out->fd, bytes + done, len - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			*refused = true;
			break;
		}
		/* EPIPE (nobody reads any more), EIO (a hung-up terminal), a full disk... */
		if (!out->failed)
			log_warn("console: writing the guest's output failed: %s (output is "
				 "dropped while it fails, counted in uart.missed_write_count)",
				 n < 0 ? strerror(errno) : "no progress");
		out->failed = true;
		break;
	}
	if (done) {
		out->failed = false;
		atomic_fetch_add(&out->written_bytes, done);
	}
	return done;
}

static void ring_push(struct serial_output *out, const uint8_t *bytes, size_t len)
{
	size_t tail = (out->head + out->count) % SERIAL_OUTPUT_RING_SIZE;
	size_t first = len < SERIAL_OUTPUT_RING_SIZE - tail ? len : SERIAL_OUTPUT_RING_SIZE - tail;

	memcpy(out->ring + tail, bytes, first);
	memcpy(out->ring, bytes + first, len - first);
	out->count += len;
}

static void drop_ring(struct serial_output *out)
{
	atomic_fetch_add(&out->missed_bytes, out->count);
	out->head = out->count = 0;
}

/* With the lock: true if bytes remain because the console refused them for now. */
static bool flush_locked(struct serial_output *out)
{
	while (out->count) {
		size_t chunk = out->count < SERIAL_OUTPUT_RING_SIZE - out->head
				   ? out->count
				   : SERIAL_OUTPUT_RING_SIZE - out->head;
		bool refused;
		size_t n = write_some(out, out->ring + out->head, chunk, &refused);

		out->head = (out->head + n) % SERIAL_OUTPUT_RING_SIZE;
		out->count -= n;
		if (n)
			pthread_cond_broadcast(&out->room);
		if (n < chunk) {
			if (!refused)
				drop_ring(out);
			break;
		}
	}
	if (!out->count)
		out->head = 0;
	if (out->stalled && out->count <= SERIAL_OUTPUT_RING_SIZE / 2)
		out->stalled = false;
	return out->count != 0;
}

/* With the lock, the ring too full for len bytes: one grace wait for the VMM thread's
 * flush, unless the console already counts as stalled or nobody flushes. */
static void wait_for_room(struct serial_output *out, size_t len)
{
	struct timespec deadline;

	if (out->stalled || !out->wait_writable)
		return;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_nsec += (long)SERIAL_OUTPUT_GRACE_MS * 1000000L;
	deadline.tv_sec += deadline.tv_nsec / 1000000000L;
	deadline.tv_nsec %= 1000000000L;
	while (!out->closed && SERIAL_OUTPUT_RING_SIZE - out->count < len)
		if (pthread_cond_timedwait(&out->room, &out->lock, &deadline) == ETIMEDOUT) {
			out->stalled = true;
			log_debug("console: its reader took nothing for %d ms: dropping output "
				  "until it catches up",
				  SERIAL_OUTPUT_GRACE_MS);
			return;
		}
}

void serial_output_write(void *opaque, const uint8_t *bytes, size_t len)
{
	struct serial_output *out = opaque;
	bool refused = false;
	size_t done = 0, queued;

	pthread_mutex_lock(&out->lock);
	if (out->closed) {
		atomic_fetch_add(&out->missed_bytes, len);
		goto out;
	}
	if (out->direct) {
		done = write_some(out, bytes, len, &refused);
		atomic_fetch_add(&out->missed_bytes, len - done);
		goto out;
	}
	/* Nobody waits for EPOLLOUT on this console: try the ring's bytes first. */
	if (out->count && !out->wait_writable)
		flush_locked(out);
	/* Behind bytes already waiting, never before them. */
	if (!out->count) {
		done = write_some(out, bytes, len, &refused);
		if (done < len && !refused) {
			atomic_fetch_add(&out->missed_bytes, len - done);
			goto out;
		}
	}
	len -= done;
	bytes += done;
	if (!len)
		goto out;
	if (out->count && SERIAL_OUTPUT_RING_SIZE - out->count < len)
		wait_for_room(out, len);
	queued = SERIAL_OUTPUT_RING_SIZE - out->count;
	if (queued > len)
		queued = len;
	if (queued && !out->count && out->wait_writable)
		out->wait_writable(out->opaque);
	ring_push(out, bytes, queued);
	atomic_fetch_add(&out->missed_bytes, len - queued);
out:
	pthread_mutex_unlock(&out->lock);
}

bool serial_output_flush(struct serial_output *out)
{
	bool pending;

	pthread_mutex_lock(&out->lock);
	pending = !out->direct && !out->closed && flush_locked(out);
	pthread_mutex_unlock(&out->lock);
	return pending;
}

int serial_output_poll_fd(const struct serial_output *out)
{
	return out->direct ? -1 : out->fd;
}

static int64_t monotonic_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void serial_output_finish(struct serial_output *out, int timeout_ms)
{
	int64_t deadline = monotonic_ms() + timeout_ms;

	for (;;) {
		struct pollfd pfd = {.fd = out->fd, .events = POLLOUT};
		int64_t left;

		if (!serial_output_flush(out))
			break;
		left = deadline - monotonic_ms();
		if (left <= 0 || (poll(&pfd, 1, (int)left) < 0 && errno != EINTR))
			break;
	}
	/* vCPU threads may still be running: from here on their bytes are dropped, and the
	 * structure stays valid until serial_output_destroy. */
	pthread_mutex_lock(&out->lock);
	drop_ring(out);
	out->closed = true;
	pthread_cond_broadcast(&out->room);
	if (out->shared_flags >= 0)
		(void)fcntl(out->fd, F_SETFL, out->shared_flags);
	out->shared_flags = -1;
	pthread_mutex_unlock(&out->lock);
}

void serial_output_destroy(struct serial_output *out)
{
	if (out->own_fd >= 0)
		close(out->own_fd);
	out->own_fd = -1;
	free(out->ring);
	out->ring = NULL;
	pthread_cond_destroy(&out->room);
	pthread_mutex_destroy(&out->lock);
}
