/*
 * The Uffd backend for real, without KVM: wisp's side (vmm/uffd.c) hands anonymous "guest
 * memory" to the real handler (build/wisp-uffd-handler, or $WISP_UFFD_HANDLER) serving a
 * memory file with a known pattern, a hole and a short end; a child process plays the VMM,
 * reads every page and checks it. Needs a userfaultfd: root, CAP_SYS_PTRACE,
 * vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd. Without one the tests fail
 * with uffd_backend_connect's message; they never pass without having run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory.h"
#include "snapshot_format.h"
#include "uffd.h"
#include "uffd_proto.h"

#define PAGE	     4096ull
#define LOW_SIZE     (2ull << 20) /* region 0: guest 0, file offset 0 */
#define HIGH_SIZE    (1ull << 20) /* region 1: guest 4 GiB, file offset 2 MiB */
#define TOTAL_PAGES  ((LOW_SIZE + HIGH_SIZE) / PAGE)
#define HOLE_FIRST   100 /* pages [100, 132) of the file are a hole */
#define HOLE_PAGES   32
#define SHORT_PAGES  8	/* the file ends this many pages before the last region does */
#define REMOVED	     4	/* pages MADV_DONTNEED'd after the first pass */
#define WAIT_LIMIT_S 60 /* a hang guard, not a measurement */

struct live {
	char dir[64];
	char socket[128];
	char memfile[128];
	char record[128];
	char handler[PATH_MAX];
};

/* What page p of the memory file holds (0 in the hole and past the end). */
static uint8_t pattern_byte(uint64_t page, uint64_t i)
{
	if ((page >= HOLE_FIRST && page < HOLE_FIRST + HOLE_PAGES) ||
	    page >= TOTAL_PAGES - SHORT_PAGES)
		return 0;
	return (uint8_t)(page * 131 + i * 7 + 1) | 1; /* never 0: a zero page cannot pass */
}

static void write_memfile(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint8_t page[PAGE];
	for (uint64_t p = 0; p < TOTAL_PAGES - SHORT_PAGES; p++) {
		if (p >= HOLE_FIRST && p < HOLE_FIRST + HOLE_PAGES)
			continue;
		for (uint64_t i = 0; i < PAGE; i++)
			page[i] = pattern_byte(p, i);
		assert_int_equal(pwrite(fd, page, PAGE, (off_t)(p * PAGE)), (ssize_t)PAGE);
	}
	assert_int_equal(ftruncate(fd, (off_t)((TOTAL_PAGES - SHORT_PAGES) * PAGE)), 0);
	close(fd);
}

/* Whether this file system reports the hole (then the handler serves it as zero pages). */
static int hole_reported(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t hole = lseek(fd, 0, SEEK_HOLE);
	close(fd);
	return hole == (off_t)(HOLE_FIRST * PAGE);
}

static int setup(void **state)
{
	struct live *l = calloc(1, sizeof(*l));
	assert_non_null(l);
	snprintf(l->dir, sizeof(l->dir), "/tmp/wisp-uffd-XXXXXX");
	assert_non_null(mkdtemp(l->dir));
	snprintf(l->socket, sizeof(l->socket), "%s/handler.sock", l->dir);
	snprintf(l->memfile, sizeof(l->memfile), "%s/mem", l->dir);
	snprintf(l->record, sizeof(l->record), "%s/pages", l->dir);
	const char *env = getenv("WISP_UFFD_HANDLER");
	if (env && *env) {
		snprintf(l->handler, sizeof(l->handler), "%s", env);
	} else {
		/* build/tests/test_uffd_live or build/asan/test_uffd_live -> build/ */
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		assert_true(n > 0);
		self[n] = '\0';
		snprintf(l->handler, sizeof(l->handler), "%s/../wisp-uffd-handler", dirname(self));
	}
	if (access(l->handler, X_OK) != 0)
		fail_msg("the handler %s is missing (make build/wisp-uffd-handler, or set "
			 "WISP_UFFD_HANDLER)",
			 l->handler);
	write_memfile(l->memfile);
	*state = l;
	return 0;
}

static int teardown(void **state)
{
	struct live *l = *state;
	unlink(l->socket);
	unlink(l->memfile);
	unlink(l->record);
	char path[160];
	snprintf(path, sizeof(path), "%s/stderr", l->dir);
	unlink(path);
	rmdir(l->dir);
	free(l);
	return 0;
}

/* ---- processes ---- */

/* Waits for pid with a hang guard; returns its wait status. */
static int wait_for(pid_t pid, const char *what)
{
	for (int i = 0; i < WAIT_LIMIT_S * 100; i++) {
		int status;
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		assert_int_equal(r, 0);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fail_msg("%s did not end within %d s", what, WAIT_LIMIT_S);
	return -1;
}

/* Starts the handler with its stdout on a pipe (*out); returns once its socket exists. */
/* Runs the handler with its stdout on a pipe (*out) and its stderr in DIR/stderr. */
static pid_t spawn_handler(struct live *l, const char *opt, const char *opt_arg, int *out)
{
	int fds[2];
	char err_path[160];
	snprintf(err_path, sizeof(err_path), "%s/stderr", l->dir);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fds[1], 1);
		if (err_fd >= 0)
			dup2(err_fd, 2);
		execl(l->handler, l->handler, l->socket, l->memfile, opt, opt_arg, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	*out = fds[0];
	return pid;
}

/* What the handler wrote on stderr (for the messages' words). */
static const char *handler_stderr(const struct live *l)
{
	static char text[8192];
	char path[160];
	snprintf(path, sizeof(path), "%s/stderr", l->dir);
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
	if (fd >= 0)
		close(fd);
	text[n > 0 ? n : 0] = '\0';
	fputs(text, stderr); /* shown with the test's output */
	return text;
}

/* spawn_handler, returning once its socket exists. */
static pid_t start_handler(struct live *l, const char *opt, const char *opt_arg, int *out)
{
	pid_t pid = spawn_handler(l, opt, opt_arg, out);
	/* The handler creates the path only once it listens. */
	for (int i = 0; access(l->socket, F_OK) != 0; i++) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("the handler exited (status 0x%x) before listening: %s", status,
				 handler_stderr(l));
		if (i == WAIT_LIMIT_S * 100) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			fail_msg("the handler did not listen on %s within %d s", l->socket,
				 WAIT_LIMIT_S);
		}
		usleep(10000);
	}
	return pid;
}

struct summary {
	uint64_t faulted, zero, prefetched, runs, removes;
};

static void read_summary(int fd, struct summary *s)
{
	char text[4096];
	size_t len = 0;
	ssize_t n;
	while ((n = read(fd, text + len, sizeof(text) - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	text[len] = '\0';
	const char *line = strstr(text, "wisp-uffd-handler: summary: ");
	if (!line)
		fail_msg("no summary line from the handler; its stdout: %s", text);
	double prefetch_ms, total_ms;
	int got = sscanf(line,
			 "wisp-uffd-handler: summary: faulted_pages=%" SCNu64 " zero_pages=%" SCNu64
			 " prefetched_pages=%" SCNu64 " prefetch_runs=%" SCNu64
			 " prefetch_ms=%lf remove_events=%" SCNu64 " total_ms=%lf",
			 &s->faulted, &s->zero, &s->prefetched, &s->runs, &prefetch_ms, &s->removes,
			 &total_ms);
	if (got != 7)
		fail_msg("summary line not understood: %s", line);
	printf("# %.*s", (int)strcspn(line, "\n") + 1, line);
}

/* ---- the VMM's side, in a child process ---- */

static void vmm_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void vmm_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vmm child: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	_exit(1);
}

static void check_page(const uint8_t *p, uint64_t page, bool removed)
{
	for (uint64_t i = 0; i < PAGE; i++) {
		uint8_t want = removed ? 0 : pattern_byte(page, i);
		if (p[i] != want)
			vmm_fail("file page %" PRIu64 " byte %" PRIu64
				 ": 0x%02x, expected 0x%02x%s",
				 page, i, p[i], want, removed ? " (a removed page)" : "");
	}
}

/* Maps guest memory as wisp does, hands it to the handler, reads every page, then (with
 * remove) drops REMOVED pages and checks they come back as zeros. Exit status 0 if all is
 * well. */
static void run_vmm(const struct live *l, bool remove)
{
	struct gmem mem = {
	    .regions = {{.gpa = 0, .size = LOW_SIZE}, {.gpa = 1ull << 32, .size = HIGH_SIZE}},
	    .nr_regions = 2,
	    .total_size = LOW_SIZE + HIGH_SIZE,
	};
	struct snap_mem_layout layout = {
	    .nr_regions = 2,
	    .regions = {{.gpa = 0, .size = LOW_SIZE, .file_offset = 0},
			{.gpa = 1ull << 32, .size = HIGH_SIZE, .file_offset = LOW_SIZE}},
	};
	struct uffd_backend backend;
	char err[512];

	if (gmem_map_anonymous(&mem) < 0)
		vmm_fail("cannot map guest memory");
	int r = uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err));
	if (r < 0)
		vmm_fail("uffd_backend_connect: %s (%s)", err, strerror(-r));
	if (backend.uffd < 0 || backend.sock < 0)
		vmm_fail("connected without fds");
	if (backend.handler_pidfd < 0)
		vmm_fail("no pidfd for the handler (pid %d)", (int)backend.handler_pid);

	for (uint64_t p = 0; p < TOTAL_PAGES; p++) {
		uint64_t off = p * PAGE;
		const uint8_t *host = off < LOW_SIZE ? mem.regions[0].host + off
						     : mem.regions[1].host + (off - LOW_SIZE);
		check_page(host, p, false);
	}
	if (remove) {
		/* Pages 10..13 of region 0: the handler must serve zeros there from now on. */
		if (madvise(mem.regions[0].host + 10 * PAGE, REMOVED * PAGE, MADV_DONTNEED) < 0)
			vmm_fail("madvise: %s", strerror(errno));
		for (uint64_t p = 10; p < 10 + REMOVED; p++)
			check_page(mem.regions[0].host + p * PAGE, p, true);
		check_page(mem.regions[0].host + 14 * PAGE, 14, false);
	}
	if (uffd_backend_check_alive(&backend, 0, err, sizeof(err)) < 0)
		vmm_fail("the handler looks dead while serving: %s", err);
	uffd_backend_close(&backend);
	gmem_unmap(&mem);
	_exit(0);
}

static void run_restore(struct live *l, const char *opt, const char *opt_arg, bool remove,
			struct summary *s)
{
	int out;
	pid_t handler = start_handler(l, opt, opt_arg, &out);
	pid_t vmm = fork();
	assert_true(vmm >= 0);
	if (vmm == 0)
		run_vmm(l, remove);
	int status = wait_for(vmm, "the VMM child");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		kill(handler, SIGKILL);
		waitpid(handler, NULL, 0);
		fail_msg("the VMM child failed (status 0x%x): see its message above", status);
	}
	/* The handler ends by itself once the VMM's process is gone. */
	status = wait_for(handler, "the handler, after the VMM child ended,");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	read_summary(out, s);
	assert_int_equal(access(l->socket, F_OK), -1); /* removed once connected */
}

static void test_record_then_prefetch(void **state)
{
	struct live *l = *state;
	struct summary s;
	uint64_t zero_in_file = SHORT_PAGES + (hole_reported(l->memfile) ? HOLE_PAGES : 0);

	/* On demand, recording: every page faults once; the removed ones once more. */
	run_restore(l, "--record", l->record, true, &s);
	assert_int_equal(s.faulted, TOTAL_PAGES + REMOVED);
	assert_int_equal(s.zero, zero_in_file + REMOVED);
	assert_int_equal(s.prefetched, 0);
	assert_int_equal(s.removes, 1);

	/* The record: the header line, then every page once (the removed pages' second fault
	 * is not part of the working set), in fault order, which here is file order. */
	int fd = open(l->record, O_RDONLY);
	assert_true(fd >= 0);
	static char text[1 << 16];
	ssize_t n = read(fd, text, sizeof(text));
	close(fd);
	assert_true(n > 0);
	assert_memory_equal(text, UFFD_PAGE_LIST_HEADER, strlen(UFFD_PAGE_LIST_HEADER));
	uint64_t *offsets;
	size_t count;
	char err[256];
	assert_int_equal(
	    uffd_page_list_parse(text, (size_t)n, PAGE, &offsets, &count, err, sizeof(err)), 0);
	assert_int_equal(count, TOTAL_PAGES);
	for (size_t i = 0; i < count; i++)
		assert_int_equal(offsets[i], i * PAGE);
	free(offsets);

	/* With the record as the prefetch list: all pages arrive in one run before any
	 * fault is served, so none is served as a fault; the contents are the same. */
	run_restore(l, "--prefetch", l->record, false, &s);
	assert_int_equal(s.prefetched, TOTAL_PAGES);
	assert_int_equal(s.runs, 1);
	assert_int_equal(s.faulted, 0);
	assert_int_equal(s.removes, 0);
}

/* A prefetch list naming some pages: those are copied, the others fault. */
static void test_partial_prefetch(void **state)
{
	struct live *l = *state;
	struct summary s;
	FILE *f = fopen(l->record, "w");
	assert_non_null(f);
	/* Two runs, unsorted, one page twice: pages 0-15 and 600-603. */
	fprintf(f, "# hand-written\n0x%llx\n", 600 * PAGE);
	for (unsigned int p = 0; p < 16; p++)
		fprintf(f, "%llu\n", p * PAGE);
	fprintf(f, "0x%llx\n0x%llx\n0x%llx\n0x%llx\n", 601 * PAGE, 602 * PAGE, 603 * PAGE,
		0 * PAGE);
	fclose(f);

	run_restore(l, "--prefetch", l->record, false, &s);
	assert_int_equal(s.prefetched, 20);
	assert_int_equal(s.runs, 2);
	assert_int_equal(s.faulted, TOTAL_PAGES - 20);
}

/* A Firecracker-style client: only the JSON and the fd, then it closes the connection at
 * once (wisp keeps it). The handler serves all the same. */
static void test_firecracker_style_client(void **state)
{
	struct live *l = *state;
	int out;
	pid_t handler = start_handler(l, NULL, NULL, &out);
	pid_t vmm = fork();
	assert_true(vmm >= 0);
	if (vmm == 0) {
		struct gmem mem = {.regions = {{.gpa = 0, .size = LOW_SIZE + HIGH_SIZE}},
				   .nr_regions = 1};
		struct snap_mem_layout layout = {
		    .nr_regions = 1, .regions = {{.gpa = 0, .size = LOW_SIZE + HIGH_SIZE}}};
		struct uffd_backend backend;
		char err[512];
		if (gmem_map_anonymous(&mem) < 0)
			vmm_fail("cannot map guest memory");
		if (uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err)) < 0)
			vmm_fail("uffd_backend_connect: %s", err);
		close(backend.sock); /* as Firecracker does after sending */
		backend.sock = -1;
		for (uint64_t p = 0; p < TOTAL_PAGES; p++)
			check_page(mem.regions[0].host + p * PAGE, p, false);
		_exit(0);
	}
	int status = wait_for(vmm, "the VMM child");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		kill(handler, SIGKILL);
		waitpid(handler, NULL, 0);
		fail_msg("the VMM child failed (status 0x%x)", status);
	}
	status = wait_for(handler, "the handler");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	struct summary s;
	read_summary(out, &s);
	assert_int_equal(s.faulted, TOTAL_PAGES);
}

/* ---- wisp's errors ---- */

static void set_path(struct sockaddr_un *addr, const char *path)
{
	assert_true(strlen(path) < sizeof(addr->sun_path));
	memcpy(addr->sun_path, path, strlen(path) + 1);
}

static void map_one_region(struct gmem *mem, struct snap_mem_layout *layout)
{
	*mem = (struct gmem){.regions = {{.gpa = 0, .size = LOW_SIZE}}, .nr_regions = 1};
	*layout =
	    (struct snap_mem_layout){.nr_regions = 1, .regions = {{.gpa = 0, .size = LOW_SIZE}}};
	assert_int_equal(gmem_map_anonymous(mem), 0);
}

static void test_handler_not_listening(void **state)
{
	struct live *l = *state;
	struct gmem mem;
	struct snap_mem_layout layout;
	struct uffd_backend backend;
	char err[512];

	map_one_region(&mem, &layout);
	/* No file at the path. */
	int r = uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err));
	if (r == -EPERM || r == -EACCES)
		fail_msg("no userfaultfd here: %s", err);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(err, "is not listening"));
	assert_non_null(strstr(err, l->socket));
	assert_int_equal(backend.uffd, -1);

	/* A socket file nobody listens on. */
	int sock = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	set_path(&addr, l->socket);
	assert_int_equal(bind(sock, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(sock);
	r = uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err));
	assert_int_equal(r, -ECONNREFUSED);
	assert_non_null(strstr(err, "is not listening"));
	unlink(l->socket);
	gmem_unmap(&mem);
}

static void test_layout_mismatch(void **state)
{
	struct live *l = *state;
	struct gmem mem;
	struct snap_mem_layout layout;
	struct uffd_backend backend;
	char err[512];

	map_one_region(&mem, &layout);
	layout.regions[0].size = LOW_SIZE / 2;
	assert_int_equal(uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "does not match"));
	layout.regions[0].size = LOW_SIZE;
	layout.nr_regions = 2;
	layout.regions[1] =
	    (struct snap_mem_region){.gpa = 1ull << 32, .size = PAGE, .file_offset = LOW_SIZE};
	assert_int_equal(uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "2 regions"));
	gmem_unmap(&mem);
}

/* A handler that takes the message and exits: check_alive says so. */
static void test_handler_exits_early(void **state)
{
	struct live *l = *state;
	struct gmem mem;
	struct snap_mem_layout layout;
	struct uffd_backend backend;
	char err[512];
	int ready[2];

	map_one_region(&mem, &layout);
	assert_int_equal(pipe(ready), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int sock = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un addr = {.sun_family = AF_UNIX};
		set_path(&addr, l->socket);
		if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(sock, 1) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		int conn = accept(sock, NULL, NULL);
		char buf[4096];
		if (conn < 0 || recv(conn, buf, sizeof(buf), 0) <= 0)
			_exit(1);
		_exit(0); /* the fd it got dies with it */
	}
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	int r = uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err));
	if (r == 0) {
		/* It was still there when wisp looked; it goes now. */
		r = uffd_backend_check_alive(&backend, WAIT_LIMIT_S * 1000, err, sizeof(err));
		uffd_backend_close(&backend);
	}
	assert_int_equal(r, -EPIPE);
	assert_non_null(strstr(err, "has exited"));
	assert_int_equal(wait_for(child, "the fake handler"), 0);
	unlink(l->socket);
	close(ready[0]);
	close(ready[1]);
	gmem_unmap(&mem);
}

/* ---- the handler's refusals ---- */

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* A bad page list is refused before the handler listens: no socket, exit status 2. */
static void test_handler_refuses_bad_prefetch_list(void **state)
{
	struct live *l = *state;
	int out;

	write_text(l->record, "0x1000\n0x1001\n");
	pid_t pid = spawn_handler(l, "--prefetch", l->record, &out);
	int status = wait_for(pid, "the handler");
	close(out);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	assert_int_equal(access(l->socket, F_OK), -1);
	const char *text = handler_stderr(l);
	assert_non_null(strstr(text, "line 2: offset 0x1001 is not aligned"));
}

static void test_handler_refuses_existing_socket_path(void **state)
{
	struct live *l = *state;
	int out;

	write_text(l->socket, "not a socket");
	pid_t pid = spawn_handler(l, NULL, NULL, &out);
	int status = wait_for(pid, "the handler");
	close(out);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	assert_non_null(strstr(handler_stderr(l), "exists already"));
	assert_int_equal(access(l->socket, F_OK), 0); /* left alone */
}

/* Connects to the handler as a VMM would and sends text, with fd in SCM_RIGHTS when
 * fd >= 0, then closes; returns the handler's exit status. */
static int send_to_handler(struct live *l, const char *text, int fd)
{
	int out;
	pid_t pid = start_handler(l, NULL, NULL, &out);
	int sock = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	set_path(&addr, l->socket);
	assert_int_equal(connect(sock, (struct sockaddr *)&addr, sizeof(addr)), 0);
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &msg, 0), (ssize_t)strlen(text));
	close(sock);
	int status = wait_for(pid, "the handler");
	close(out);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void test_handler_refuses_bad_messages(void **state)
{
	struct live *l = *state;
	const char *good = "[{\"base_host_virt_addr\": 4096, \"size\": 4096, \"offset\": 0, "
			   "\"page_size\": 4096}]";
	int pipe_fds[2];
	assert_int_equal(pipe(pipe_fds), 0);

	assert_int_equal(send_to_handler(l, good, -1), 2);
	assert_non_null(strstr(handler_stderr(l), "no file descriptor"));

	assert_int_equal(send_to_handler(l, "[{\"size\": 4096}]", pipe_fds[0]), 2);
	assert_non_null(strstr(handler_stderr(l), "no \"base_host_virt_addr\""));

	assert_int_equal(send_to_handler(l, good, pipe_fds[0]), 2);
	assert_non_null(strstr(handler_stderr(l), "not a userfaultfd"));

	close(pipe_fds[0]);
	close(pipe_fds[1]);
}

/* A list from another snapshot (an offset past every region) is not applied at all; the
 * restore works by faults. */
static void test_prefetch_list_of_another_snapshot(void **state)
{
	struct live *l = *state;
	struct summary s;

	write_text(l->record, "0x0\n0x1000\n0x40000000\n");
	run_restore(l, "--prefetch", l->record, false, &s);
	assert_int_equal(s.prefetched, 0);
	assert_int_equal(s.faulted, TOTAL_PAGES);
	assert_non_null(strstr(handler_stderr(l), "lies outside every region"));
}

/* SIGTERM while the VMM lives: the handler still writes its record and summary. */
static void test_sigterm_keeps_the_record(void **state)
{
	struct live *l = *state;
	int out, done[2], release[2];

	assert_int_equal(pipe(done), 0);
	assert_int_equal(pipe(release), 0);
	pid_t handler = start_handler(l, "--record", l->record, &out);
	pid_t vmm = fork();
	assert_true(vmm >= 0);
	if (vmm == 0) {
		struct gmem mem = {.regions = {{.gpa = 0, .size = LOW_SIZE}}, .nr_regions = 1};
		struct snap_mem_layout layout = {.nr_regions = 1,
						 .regions = {{.gpa = 0, .size = LOW_SIZE}}};
		struct uffd_backend backend;
		char err[512], c;
		if (gmem_map_anonymous(&mem) < 0 ||
		    uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err)) < 0)
			vmm_fail("connect: %s", err);
		for (uint64_t p = 0; p < 10; p++)
			check_page(mem.regions[0].host + p * PAGE, p, false);
		if (write(done[1], "x", 1) != 1 || read(release[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	char c;
	assert_int_equal(read(done[0], &c, 1), 1);
	kill(handler, SIGTERM);
	int status = wait_for(handler, "the handler after SIGTERM");
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(write(release[1], "x", 1), 1);
	assert_int_equal(wait_for(vmm, "the VMM child"), 0);
	struct summary s;
	read_summary(out, &s);
	assert_int_equal(s.faulted, 10);

	int fd = open(l->record, O_RDONLY);
	assert_true(fd >= 0);
	char text[4096];
	ssize_t n = read(fd, text, sizeof(text));
	close(fd);
	uint64_t *offsets;
	size_t count;
	char err[256];
	assert_true(n > 0);
	assert_int_equal(
	    uffd_page_list_parse(text, (size_t)n, PAGE, &offsets, &count, err, sizeof(err)), 0);
	assert_int_equal(count, 10);
	assert_int_equal(offsets[9], 9 * PAGE);
	free(offsets);
	for (int i = 0; i < 2; i++) {
		close(done[i]);
		close(release[i]);
	}
}

/* Without the privilege (here: root dropped to nobody in a child), the error says which
 * way to a userfaultfd refused and what to change. Where this host lets nobody have one
 * (vm.unprivileged_userfaultfd=1, or /dev/userfaultfd open to all), the connect gets as
 * far as the missing socket instead. */
static void test_unprivileged_userfaultfd(void **state)
{
	struct live *l = *state;
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct gmem mem;
		struct snap_mem_layout layout;
		struct uffd_backend backend;
		char err[1024] = "", sysctl[8] = "";
		map_one_region(&mem, &layout);
		if (getuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			vmm_fail("cannot drop to uid 65534: %s", strerror(errno));
		FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
		if (f) {
			if (!fgets(sysctl, sizeof(sysctl), f))
				sysctl[0] = '\0';
			fclose(f);
		}
		bool syscall_allowed = sysctl[0] == '1';
		bool dev_allowed = access("/dev/userfaultfd", R_OK | W_OK) == 0;
		int r = uffd_backend_connect(&mem, &layout, l->socket, &backend, err, sizeof(err));
		if (syscall_allowed || dev_allowed) {
			if (r != -ENOENT || !strstr(err, "is not listening"))
				vmm_fail("with a userfaultfd allowed: %d %s", r, err);
			_exit(0);
		}
		if (r != -EPERM || !strstr(err, "vm.unprivileged_userfaultfd") ||
		    !strstr(err, "/dev/userfaultfd"))
			vmm_fail("expected -EPERM naming both ways, got %d: %s", r, err);
		fprintf(stderr, "# %s\n", err);
		_exit(0);
	}
	assert_int_equal(wait_for(child, "the unprivileged child"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_record_then_prefetch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partial_prefetch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_firecracker_style_client, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handler_not_listening, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_layout_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handler_exits_early, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handler_refuses_bad_prefetch_list, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_handler_refuses_existing_socket_path, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_handler_refuses_bad_messages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prefetch_list_of_another_snapshot, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sigterm_keeps_the_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unprivileged_userfaultfd, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
