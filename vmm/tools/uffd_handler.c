/*
 * wisp-uffd-handler: serves a restored VM's guest memory from a snapshot's memory file
 * through the userfaultfd the VMM sends it (the Uffd backend of PUT /snapshot/load).
 *
 *   wisp-uffd-handler SOCKET MEMFILE [--record FILE] [--prefetch FILE]
 *
 * It listens on the Unix stream socket SOCKET (created atomically: the path appears only
 * once it listens; an existing path is refused), accepts one connection, receives
 * Firecracker's message (the mappings JSON of vmm/uffd_proto.h and the userfaultfd in
 * SCM_RIGHTS), removes SOCKET, and then fills each page the first time it faults: from
 * MEMFILE at the region's offset plus the page's offset in the region, or with zeros where
 * the file has a hole or ends, or where the VMM removed the page (UFFD_EVENT_REMOVE: a
 * balloon's MADV_DONTNEED; the kernel documents that such a page must read as zeros).
 *
 * --record FILE appends to FILE the memory-file offsets of the pages faults brought in, in
 * fault order (the page-list format of uffd_proto.h). --prefetch FILE copies the pages a
 * page list names right after the fd arrives, before serving any fault, in runs of
 * consecutive pages (one UFFDIO_COPY per run): recorded once, a restore's working set then
 * arrives in a few large copies instead of one fault per page.
 *
 * It ends when the VMM's process does (its pidfd, from the connection's SO_PEERCRED), on
 * SIGTERM or SIGINT, or when the kernel reports the process gone (ESRCH), and prints one
 * summary line on stdout: faulted_pages=N zero_pages=N prefetched_pages=N prefetch_runs=N
 * prefetch_ms=X remove_events=N total_ms=X. Exit status 0, or 1 after an error, 2 for bad
 * usage or input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "uffd_proto.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define PROG		   "wisp-uffd-handler"
#define RECEIVE_TIMEOUT_MS 10000 /* from accept to the whole message */
#define REST_TIMEOUT_MS	   1000	 /* from a message's first piece to its last */
#define UFFD_MSG_BATCH	   64
#define COPY_CHUNK	   (64ull << 20) /* one UFFDIO_COPY at most, so a run stays interruptible */
#define EXIT_ERROR	   1
#define EXIT_BAD_INPUT	   2

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", line);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A byte range [start, end) of the memory file that holds data (SEEK_DATA). */
struct extent {
	uint64_t start, end;
};

struct handler {
	int uffd;
	int pidfd; /* the VMM's process; -1 when unknown */
	struct uffd_mapping maps[UFFD_MAX_MAPPINGS];
	unsigned int nr_maps;
	uint8_t *removed[UFFD_MAX_MAPPINGS]; /* a bit per page once a remove event came */

	const uint8_t *file; /* MEMFILE mapped read-only; NULL when empty */
	uint64_t file_size;
	struct extent *extents; /* sorted; NULL with nr_extents 0: all data */
	size_t nr_extents;
	bool extents_known;
	uint8_t *bounce; /* one page: a file's last partial page and zeros */

	uint64_t *deferred; /* fault addresses the kernel said to retry (EAGAIN) */
	size_t nr_deferred, cap_deferred;
	uint64_t *recorded; /* file offsets of faulted-in pages, for --record */
	size_t nr_recorded, cap_recorded;
	bool record;
	bool gone; /* the VMM's process is gone */

	uint64_t faulted_pages, zero_pages, prefetched_pages, prefetch_runs, remove_events;
	double prefetch_ms;
};

static int push(uint64_t **list, size_t *n, size_t *cap, uint64_t value)
{
	if (*n == *cap) {
		size_t new_cap = *cap ? *cap * 2 : 1024;
		uint64_t *grown = realloc(*list, new_cap * sizeof(**list));
		if (!grown)
			return -ENOMEM;
		*list = grown;
		*cap = new_cap;
	}
	(*list)[(*n)++] = value;
	return 0;
}

/* ---- the memory file ---- */

static int read_extents(struct handler *h, int fd)
{
	uint64_t pos = 0;
	size_t cap = 0;

	while (pos < h->file_size) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO) /* no data after pos */
				break;
			/* A file system without SEEK_DATA: every page is data. */
			free(h->extents);
			h->extents = NULL;
			h->nr_extents = 0;
			return 0;
		}
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)h->file_size;
		if (h->nr_extents == cap) {
			size_t new_cap = cap ? cap * 2 : 64;
			struct extent *grown = realloc(h->extents, new_cap * sizeof(*grown));
			if (!grown)
				return -ENOMEM;
			h->extents = grown;
			cap = new_cap;
		}
		h->extents[h->nr_extents++] = (struct extent){
		    .start = (uint64_t)data & ~(UFFD_PAGE_SIZE - 1),
		    .end = ((uint64_t)hole + UFFD_PAGE_SIZE - 1) & ~(UFFD_PAGE_SIZE - 1),
		};
		pos = (uint64_t)hole;
	}
	h->extents_known = true;
	return 0;
}

/* How many bytes from off on are data (> 0) or hole / past the end (returned negated, as
 * the hole's length; 0 never). At most len. */
static int64_t classify(const struct handler *h, uint64_t off, uint64_t len)
{
	if (off >= h->file_size)
		return -(int64_t)len;
	uint64_t in_file = h->file_size - off < len ? h->file_size - off : len;
	if (!h->extents_known)
		return (int64_t)in_file;
	/* The first extent that ends after off. */
	size_t lo = 0, hi = h->nr_extents;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (h->extents[mid].end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == h->nr_extents)
		return -(int64_t)len;
	const struct extent *e = &h->extents[lo];
	if (off >= e->start) {
		uint64_t n = e->end - off < in_file ? e->end - off : in_file;
		return (int64_t)n;
	}
	uint64_t n = e->start - off < len ? e->start - off : len;
	return -(int64_t)n;
}

/* ---- filling pages ---- */

enum fill_result {
	FILL_DONE,    /* the range is in place, copied now */
	FILL_EXISTS,  /* its first page was there already (a prefetch, a duplicate fault) */
	FILL_PARTIAL, /* *done bytes copied, the rest not yet */
	FILL_RETRY,   /* nothing done: the VMM's mappings are changing, read events first */
	FILL_GONE,    /* the VMM's process or the range is gone */
	FILL_ERROR,
};

/* UFFDIO_COPY of len bytes from src to addr, or UFFDIO_ZEROPAGE when src is NULL. */
static enum fill_result fill(struct handler *h, uint64_t addr, const void *src, uint64_t len,
			     uint64_t *done)
{
	int r;
	int64_t result;

	*done = 0;
	if (src) {
		struct uffdio_copy copy = {
		    .dst = addr, .src = (uint64_t)(uintptr_t)src, .len = len};
		r = ioctl(h->uffd, UFFDIO_COPY, &copy);
		result = copy.copy;
	} else {
		struct uffdio_zeropage zero = {.range = {.start = addr, .len = len}};
		r = ioctl(h->uffd, UFFDIO_ZEROPAGE, &zero);
		result = zero.zeropage;
	}
	if (r == 0)
		return FILL_DONE;
	int e = errno;
	if (result > 0) {
		*done = (uint64_t)result;
		return FILL_PARTIAL;
	}
	switch (e) {
	case EEXIST: {
		/* Make sure nobody waits on a page that is there. */
		struct uffdio_range range = {.start = addr, .len = UFFD_PAGE_SIZE};
		ioctl(h->uffd, UFFDIO_WAKE, &range);
		return FILL_EXISTS;
	}
	case EAGAIN:
		return FILL_RETRY;
	case ESRCH:
		h->gone = true;
		return FILL_GONE;
	case ENOENT: /* the range was unmapped under us */
		return FILL_GONE;
	default:
		say("%s at 0x%" PRIx64 " (%" PRIu64 " bytes): %s",
		    src ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE", addr, len, strerror(e));
		return FILL_ERROR;
	}
}

/* Fills len bytes at addr with the zero page. */
static enum fill_result fill_zero(struct handler *h, uint64_t addr, uint64_t len, uint64_t *done)
{
	return fill(h, addr, NULL, len, done);
}

static bool page_removed(const struct handler *h, unsigned int map, uint64_t addr)
{
	const struct uffd_mapping *m = &h->maps[map];
	if (!h->removed[map])
		return false;
	uint64_t page = (addr - m->base_host_virt_addr) / m->page_size;
	return h->removed[map][page / 8] & (1u << (page % 8));
}

/* One faulting page: returns FILL_DONE, FILL_RETRY (keep it for later), FILL_GONE (nothing
 * to serve there any more) or FILL_ERROR. */
static enum fill_result serve_fault(struct handler *h, uint64_t fault_addr)
{
	unsigned int map;
	uint64_t off, done;

	if (uffd_mapping_find_addr(h->maps, h->nr_maps, fault_addr, &map, &off) < 0) {
		/* The VMM registered more than it described: its bug, its thread waits. */
		say("fault at 0x%" PRIx64 " outside every mapping the VMM sent: left unserved",
		    fault_addr);
		return FILL_GONE;
	}
	const struct uffd_mapping *m = &h->maps[map];
	uint64_t page_size = m->page_size;
	uint64_t in_map = (fault_addr - m->base_host_virt_addr) & ~(page_size - 1);
	uint64_t addr = m->base_host_virt_addr + in_map;
	off = m->offset + in_map;

	enum fill_result r;
	bool zero = false;
	if (page_removed(h, map, addr)) {
		zero = true;
		r = fill_zero(h, addr, page_size, &done);
	} else {
		int64_t kind = classify(h, off, page_size);
		if (kind < 0) {
			zero = true;
			r = fill_zero(h, addr, page_size, &done);
		} else if ((uint64_t)kind == page_size) {
			r = fill(h, addr, h->file + off, page_size, &done);
		} else {
			/* The file ends inside this page: its tail, then zeros. */
			memset(h->bounce, 0, page_size);
			memcpy(h->bounce, h->file + off, (size_t)kind);
			r = fill(h, addr, h->bounce, page_size, &done);
		}
	}
	if (r == FILL_PARTIAL) /* cannot happen for one page; take it as a retry */
		r = FILL_RETRY;
	if (r == FILL_EXISTS) /* served already: not counted, not recorded */
		return FILL_DONE;
	if (r != FILL_DONE)
		return r;
	h->faulted_pages++;
	if (zero)
		h->zero_pages++;
	if (h->record && !page_removed(h, map, addr) &&
	    push(&h->recorded, &h->nr_recorded, &h->cap_recorded, off) < 0) {
		say("out of memory recording pages: the record stops here");
		h->record = false;
	}
	return FILL_DONE;
}

static void mark_removed(struct handler *h, uint64_t start, uint64_t end)
{
	for (unsigned int i = 0; i < h->nr_maps; i++) {
		const struct uffd_mapping *m = &h->maps[i];
		uint64_t lo = start > m->base_host_virt_addr ? start : m->base_host_virt_addr;
		uint64_t hi =
		    end < m->base_host_virt_addr + m->size ? end : m->base_host_virt_addr + m->size;
		if (lo >= hi)
			continue;
		uint64_t pages = m->size / m->page_size;
		if (!h->removed[i]) {
			h->removed[i] = calloc((size_t)(pages + 7) / 8, 1);
			if (!h->removed[i]) {
				say("out of memory tracking removed pages: they will be served "
				    "from the memory file");
				continue;
			}
		}
		/* Only whole pages are gone; a partial one keeps its contents. */
		uint64_t first = (lo - m->base_host_virt_addr + m->page_size - 1) / m->page_size;
		uint64_t last = (hi - m->base_host_virt_addr) / m->page_size;
		for (uint64_t p = first; p < last; p++)
			h->removed[i][p / 8] |= (uint8_t)(1u << (p % 8));
	}
}

/* Reads what the uffd has (non-blocking): handles events at once and serves faults, or, when
 * `defer_faults` (during the prefetch), queues them. Returns 0, or -1 on a fatal error. */
static int drain_messages(struct handler *h, bool defer_faults)
{
	struct uffd_msg msgs[UFFD_MSG_BATCH];

	for (;;) {
		ssize_t n = read(h->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			say("reading the userfaultfd: %s", strerror(errno));
			return -1;
		}
		if (n == 0) {
			h->gone = true;
			return 0;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			const struct uffd_msg *msg = &msgs[i];
			switch (msg->event) {
			case UFFD_EVENT_PAGEFAULT: {
				uint64_t addr = msg->arg.pagefault.address;
				enum fill_result r =
				    defer_faults ? FILL_RETRY : serve_fault(h, addr);
				if (r == FILL_RETRY && push(&h->deferred, &h->nr_deferred,
							    &h->cap_deferred, addr) < 0) {
					say("out of memory queueing a fault");
					return -1;
				}
				if (r == FILL_ERROR)
					return -1;
				break;
			}
			case UFFD_EVENT_REMOVE:
				h->remove_events++;
				mark_removed(h, msg->arg.remove.start, msg->arg.remove.end);
				break;
			case UFFD_EVENT_UNMAP:
				/* No longer registered: nothing will fault there. */
				break;
			case UFFD_EVENT_REMAP:
				say("the VMM moved guest memory 0x%llx -> 0x%llx: faults there are "
				    "no longer served",
				    (unsigned long long)msg->arg.remap.from,
				    (unsigned long long)msg->arg.remap.to);
				break;
			case UFFD_EVENT_FORK:
				close((int)msg->arg.fork.ufd);
				break;
			default:
				say("unknown userfaultfd event 0x%x ignored", msg->event);
				break;
			}
		}
	}
}

/* Faults the kernel asked to retry (EAGAIN: mappings changing); keeps those still refused. */
static int retry_deferred(struct handler *h)
{
	size_t kept = 0;
	for (size_t i = 0; i < h->nr_deferred; i++) {
		enum fill_result r = serve_fault(h, h->deferred[i]);
		if (r == FILL_ERROR)
			return -1;
		if (r == FILL_RETRY)
			h->deferred[kept++] = h->deferred[i];
	}
	h->nr_deferred = kept;
	return 0;
}

/* ---- prefetch ---- */

/* [off, off + len) of mapping m, all of it, in as few ioctls as the file's holes allow. */
static int prefetch_range(struct handler *h, const struct uffd_mapping *m, uint64_t off,
			  uint64_t len)
{
	while (len && !h->gone && !stop_signal) {
		uint64_t addr = m->base_host_virt_addr + (off - m->offset);
		uint64_t chunk = len < COPY_CHUNK ? len : COPY_CHUNK;
		int64_t kind = classify(h, off, chunk);
		uint64_t n = kind < 0 ? (uint64_t)-kind : (uint64_t)kind;
		enum fill_result r;
		uint64_t done;

		if (kind > 0 && n < m->page_size) {
			/* The file ends inside this page: left to its fault (a bounce copy). */
			off += m->page_size;
			len -= m->page_size;
			continue;
		}
		if (kind > 0) {
			n -= n % m->page_size;
			r = fill(h, addr, h->file + off, n, &done);
		} else {
			r = fill_zero(h, addr, n, &done);
		}
		switch (r) {
		case FILL_DONE:
			done = n;
			break;
		case FILL_PARTIAL:
			break;
		case FILL_EXISTS: /* step over that page without counting it */
			off += m->page_size;
			len -= m->page_size;
			continue;
		case FILL_RETRY:
			if (drain_messages(h, true) < 0)
				return -1;
			continue;
		case FILL_GONE:
			return 0;
		case FILL_ERROR:
			return -1;
		}
		h->prefetched_pages += done / m->page_size;
		off += done;
		len -= done;
	}
	return 0;
}

static int prefetch(struct handler *h, uint64_t *offsets, size_t count, const char *path)
{
	double start = now_ms();
	size_t pos = 0;
	uint64_t run, len;

	count = uffd_page_list_normalize(offsets, count);
	/* Check the whole list against the mappings before copying anything: a list from
	 * another snapshot is refused, not half applied. */
	for (size_t i = 0; i < count; i++) {
		unsigned int map;
		uint64_t addr;
		if (uffd_mapping_find_offset(h->maps, h->nr_maps, offsets[i], &map, &addr) < 0) {
			say("prefetch list %s: offset 0x%" PRIx64
			    " lies outside every region the VMM sent (is it another snapshot's "
			    "list?): no prefetch, pages are served as they fault",
			    path, offsets[i]);
			return 0;
		}
	}
	while (uffd_page_list_next_run(offsets, count, UFFD_PAGE_SIZE, &pos, &run, &len)) {
		h->prefetch_runs++;
		/* A run may cross from one region to the next in the file. */
		while (len) {
			unsigned int map;
			uint64_t addr;
			if (uffd_mapping_find_offset(h->maps, h->nr_maps, run, &map, &addr) < 0)
				break; /* between regions; the check above saw the pages */
			const struct uffd_mapping *m = &h->maps[map];
			uint64_t start_off = run & ~(m->page_size - 1);
			uint64_t end = m->offset + m->size;
			uint64_t stop = run + len < end ? run + len : end;
			stop = (stop + m->page_size - 1) & ~(m->page_size - 1);
			if (prefetch_range(h, m, start_off, stop - start_off) < 0)
				return -1;
			if (h->gone || stop_signal)
				goto out;
			uint64_t moved = stop - run < len ? stop - run : len;
			run += moved;
			len -= moved;
		}
	}
out:
	h->prefetch_ms = now_ms() - start;
	return 0;
}

/* ---- the connection ---- */

/* Listens on path, atomically: bound and listening under a temporary name in the same
 * directory, then renamed, so that the path exists only once a connect would succeed.
 * Returns the socket, -2 for a path that cannot be used, -1 for another failure. */
static int listen_on(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char tmp[sizeof(addr.sun_path)];

	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp)) {
		say("socket path %s is too long (at most %zu characters with a temporary "
		    "suffix)",
		    path, sizeof(addr.sun_path) - 16);
		return -2;
	}
	if (access(path, F_OK) == 0) {
		say("socket path %s exists already: remove it or choose another", path);
		return -2;
	}
	memcpy(addr.sun_path, tmp, strlen(tmp) + 1);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		say("socket: %s", strerror(errno));
		return -1;
	}
	if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(sock, 1) < 0) {
		say("cannot listen on %s: %s", tmp, strerror(errno));
		unlink(tmp);
		close(sock);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		say("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		close(sock);
		return -1;
	}
	return sock;
}

static bool is_userfaultfd(int fd)
{
	char link[64], target[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return true; /* no /proc: the first ioctl will tell */
	target[n] = '\0';
	return strcmp(target, "anon_inode:[userfaultfd]") == 0;
}

/* Receives the mappings and the uffd: the text may come in pieces, the fd with the first. */
static int receive(struct handler *h, int conn)
{
	static char text[UFFD_MESSAGE_MAX];
	char err[512] = "";
	size_t len = 0;
	int uffd = -1;
	double deadline = now_ms() + RECEIVE_TIMEOUT_MS;

	for (;;) {
		struct pollfd pfd = {.fd = conn, .events = POLLIN};
		int wait = (int)(deadline - now_ms());
		/* Once text has come, the rest of it follows at once or not at all. */
		if (len && wait > REST_TIMEOUT_MS)
			wait = REST_TIMEOUT_MS;
		if (wait < 0 || poll(&pfd, 1, wait) == 0) {
			if (len)
				say("the VMM's message is not valid: %s", err);
			else
				say("the VMM sent nothing within %d s", RECEIVE_TIMEOUT_MS / 1000);
			goto fail;
		}
		if (stop_signal)
			goto fail;
		union {
			char buf[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} control;
		struct iovec iov = {.iov_base = text + len, .iov_len = sizeof(text) - len};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = control.buf,
				     .msg_controllen = sizeof(control.buf)};
		if (iov.iov_len == 0) {
			say("the VMM's message is longer than %u bytes", UFFD_MESSAGE_MAX);
			goto fail;
		}
		ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			say("receiving from the VMM: %s", strerror(errno));
			goto fail;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfds; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (uffd < 0)
					uffd = fd;
				else
					close(fd); /* one fd is the protocol; extras are dropped */
			}
		}
		if (msg.msg_flags & MSG_CTRUNC)
			say("warning: the VMM sent more file descriptors than expected");
		len += (size_t)n;
		if (n == 0 || uffd_mappings_parse(text, len, h->maps, UFFD_MAX_MAPPINGS,
						  &h->nr_maps, err, sizeof(err)) == 0)
			break;
	}
	if (h->nr_maps == 0) {
		say("the VMM closed the connection %s: %s",
		    len ? "after an invalid message" : "without a message",
		    err[0] ? err : "nothing received");
		goto fail;
	}
	if (uffd < 0) {
		say("the VMM's message carried no file descriptor (SCM_RIGHTS)");
		goto fail;
	}
	if (!is_userfaultfd(uffd)) {
		say("the file descriptor the VMM sent is not a userfaultfd");
		goto fail;
	}
	/* A blocking uffd polls as an error; the flag is the open file's, which the VMM never
	 * reads. */
	fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK);
	h->uffd = uffd;
	return 0;

fail:
	if (uffd >= 0)
		close(uffd);
	return -1;
}

static void watch_peer(struct handler *h, int conn)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	h->pidfd = -1;
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0) {
		say("warning: the VMM's pid is unknown: only a signal ends this handler");
		return;
	}
	h->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (h->pidfd < 0) {
		if (errno == ESRCH)
			h->gone = true;
		else
			say("warning: pidfd_open(%d): %s: only a signal ends this handler",
			    (int)cred.pid, strerror(errno));
	}
}

/* ---- serving ---- */

static int serve(struct handler *h)
{
	while (!h->gone && !stop_signal) {
		struct pollfd pfds[2] = {{.fd = h->uffd, .events = POLLIN},
					 {.fd = h->pidfd, .events = POLLIN}};
		int n = poll(pfds, h->pidfd >= 0 ? 2 : 1, h->nr_deferred ? 1 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			say("poll: %s", strerror(errno));
			return -1;
		}
		if (pfds[0].revents & (POLLERR | POLLNVAL)) {
			say("the userfaultfd reports an error (revents 0x%x)", pfds[0].revents);
			return -1;
		}
		if (drain_messages(h, false) < 0 || retry_deferred(h) < 0)
			return -1;
		/* The VMM exited: whatever faults it had can no longer be served. */
		if (h->pidfd >= 0 && (pfds[1].revents & POLLIN))
			h->gone = true;
	}
	return 0;
}

static int write_record(const struct handler *h, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		say("cannot open the record file %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	FILE *out = fdopen(fd, "a");
	if (!out) {
		close(fd);
		return -1;
	}
	if (fstat(fd, &st) == 0 && st.st_size == 0)
		fputs(UFFD_PAGE_LIST_HEADER, out);
	for (size_t i = 0; i < h->nr_recorded; i++) {
		char line[32];
		size_t n = uffd_page_list_format(h->recorded[i], line, sizeof(line));
		fwrite(line, 1, n, out);
	}
	if (fclose(out) != 0) {
		say("writing the record file %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int read_page_list(const char *path, uint64_t **offsets, size_t *count)
{
	char err[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		say("cannot open the prefetch list %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > UFFD_PAGE_LIST_MAX) {
		say("prefetch list %s: unreadable or larger than %llu MiB", path,
		    (unsigned long long)(UFFD_PAGE_LIST_MAX >> 20));
		close(fd);
		return -1;
	}
	char *text = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (text && got < (size_t)st.st_size) {
		ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!text || got != (size_t)st.st_size) {
		say("cannot read the prefetch list %s", path);
		free(text);
		return -1;
	}
	int r = uffd_page_list_parse(text, got, UFFD_PAGE_SIZE, offsets, count, err, sizeof(err));
	free(text);
	if (r < 0) {
		say("prefetch list %s: %s", path, err + strlen("page list: "));
		return -1;
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: " PROG " SOCKET MEMFILE [--record FILE] [--prefetch FILE]\n");
}

int main(int argc, char **argv)
{
	const char *socket_path = NULL, *mem_path = NULL, *record_path = NULL,
		   *prefetch_path = NULL;
	struct handler h = {.uffd = -1, .pidfd = -1};
	uint64_t *prefetch_list = NULL;
	size_t prefetch_count = 0;
	int listener = -1, conn = -1, mem_fd = -1;
	int status = EXIT_ERROR;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--record") == 0 && i + 1 < argc)
			record_path = argv[++i];
		else if (strcmp(argv[i], "--prefetch") == 0 && i + 1 < argc)
			prefetch_path = argv[++i];
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			say("unknown option or missing value: %s", argv[i]);
			usage(stderr);
			return EXIT_BAD_INPUT;
		} else if (!socket_path)
			socket_path = argv[i];
		else if (!mem_path)
			mem_path = argv[i];
		else {
			usage(stderr);
			return EXIT_BAD_INPUT;
		}
	}
	if (!socket_path || !mem_path) {
		usage(stderr);
		return EXIT_BAD_INPUT;
	}

	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll must wake */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Everything that can be refused is checked before listening. */
	mem_fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (mem_fd < 0 || fstat(mem_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		say("memory file %s: %s", mem_path,
		    mem_fd < 0 ? strerror(errno) : "not a regular file");
		status = EXIT_BAD_INPUT;
		goto out;
	}
	h.file_size = (uint64_t)st.st_size;
	if (h.file_size) {
		void *p =
		    mmap(NULL, h.file_size, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, mem_fd, 0);
		if (p == MAP_FAILED) {
			say("cannot map the memory file %s: %s", mem_path, strerror(errno));
			goto out;
		}
		h.file = p;
	}
	if (read_extents(&h, mem_fd) < 0) {
		say("out of memory reading the memory file's holes");
		goto out;
	}
	h.bounce = malloc(UFFD_PAGE_SIZE);
	if (!h.bounce) {
		say("out of memory");
		goto out;
	}
	if (prefetch_path && read_page_list(prefetch_path, &prefetch_list, &prefetch_count) < 0) {
		status = EXIT_BAD_INPUT;
		goto out;
	}
	h.record = record_path != NULL;

	listener = listen_on(socket_path);
	if (listener < 0) {
		status = listener == -2 ? EXIT_BAD_INPUT : EXIT_ERROR;
		goto out;
	}
	say("listening on %s", socket_path);
	do
		conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	while (conn < 0 && errno == EINTR && !stop_signal);
	close(listener);
	listener = -1;
	unlink(socket_path);
	if (conn < 0) {
		if (stop_signal)
			status = 0;
		else
			say("accept on %s: %s", socket_path, strerror(errno));
		goto out;
	}
	double start = now_ms();
	watch_peer(&h, conn);
	if (receive(&h, conn) < 0) {
		status = EXIT_BAD_INPUT;
		goto out;
	}
	uint64_t mapped_end = 0;
	for (unsigned int i = 0; i < h.nr_maps; i++) {
		if (h.maps[i].page_size != UFFD_PAGE_SIZE) {
			say("mapping %u has %" PRIu64
			    "-byte pages: this handler serves 4 KiB pages "
			    "only (no huge pages)",
			    i, h.maps[i].page_size);
			status = EXIT_BAD_INPUT;
			goto out;
		}
	}
	for (unsigned int i = 0; i < h.nr_maps; i++)
		if (h.maps[i].offset + h.maps[i].size > mapped_end)
			mapped_end = h.maps[i].offset + h.maps[i].size;
	if (mapped_end > h.file_size)
		say("warning: the memory file is %" PRIu64 " bytes, the regions reach %" PRIu64
		    ": pages past its end read as zeros",
		    h.file_size, mapped_end);

	status = 0;
	if (prefetch_count && prefetch(&h, prefetch_list, prefetch_count, prefetch_path) < 0)
		status = EXIT_ERROR;
	if (status == 0 && retry_deferred(&h) < 0)
		status = EXIT_ERROR;
	if (status == 0 && serve(&h) < 0)
		status = EXIT_ERROR;
	if (record_path && write_record(&h, record_path) < 0)
		status = EXIT_ERROR;
	printf(PROG ": summary: faulted_pages=%" PRIu64 " zero_pages=%" PRIu64
		    " prefetched_pages=%" PRIu64 " prefetch_runs=%" PRIu64
		    " prefetch_ms=%.1f remove_events=%" PRIu64 " total_ms=%.1f\n",
	       h.faulted_pages, h.zero_pages, h.prefetched_pages, h.prefetch_runs, h.prefetch_ms,
	       h.remove_events, now_ms() - start);
	fflush(stdout);

out:
	if (conn >= 0)
		close(conn);
	if (listener >= 0)
		close(listener);
	if (h.uffd >= 0)
		close(h.uffd);
	if (h.pidfd >= 0)
		close(h.pidfd);
	if (mem_fd >= 0)
		close(mem_fd);
	if (h.file)
		munmap((void *)h.file, h.file_size);
	free(h.bounce);
	for (unsigned int i = 0; i < UFFD_MAX_MAPPINGS; i++)
		free(h.removed[i]);
	free(h.extents);
	free(h.deferred);
	free(h.recorded);
	free(prefetch_list);
	return status;
}
