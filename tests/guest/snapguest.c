/*
 * snapguest: the guest program of the snapshot tests and benchmark (a static Linux binary
 * run by the guest's init). It shows, from inside the guest, whether a restored VM goes on
 * where it stopped:
 *
 *   - a counter: every interval (default 100 ms) one line on stdout (the serial console),
 *       snap seq=<n> mono=<s.ns> real=<s.ns> id=<run id>
 *     seq counts from 1 without gaps, mono/real are CLOCK_MONOTONIC and CLOCK_REALTIME when
 *     the line was made, and the run id is random per start of this program: a guest that
 *     rebooted starts again at seq=1 with another id. A CLOCK_MONOTONIC reading below the
 *     previous one prints "snap mono-backwards ..." (the tests look for it). With -s the
 *     line is only "t<seq>" (for the benchmark: less console traffic per tick).
 *   - -c HOST:PORT: a TCP connection to the host, opened at start (retried for 60 s), that
 *     carries the same tick lines; its end or failure prints "snap conn-closed ..." once.
 *   - -l PORT: a TCP server; each connection sends one request line and gets one line back:
 *       token T          -> "reply prev=<the token before> token=T seq=<n> id=<run id>"
 *       read PATH        -> "file <first line of PATH>" or "file-error <errno text>"
 *       write PATH TEXT  -> TEXT written to PATH, fsynced, read back: "wrote <what was read>"
 *     The token lives in this process's memory, so clones of one snapshot that get
 *     different tokens show that each has its own memory.
 *
 * Usage: snapguest [-i MS] [-s] [-c HOST:PORT] [-l PORT]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN 512

static char run_id[17];
static unsigned long seq;
static char token[64] = "none";
static int host_conn = -1;

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One write per line, so that nothing else on the console lands inside it. */
static void say(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(1, line, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

__attribute__((format(printf, 1, 2))) static void sayf(const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		say(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void make_run_id(void)
{
	uint64_t x = (uint64_t)clock_ns(CLOCK_MONOTONIC) * 0x9e3779b97f4a7c15ULL;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		uint64_t r = 0;

		if (read(fd, &r, sizeof(r)) == (ssize_t)sizeof(r))
			x ^= r;
		close(fd);
	}
	x ^= (uint64_t)clock_ns(CLOCK_REALTIME);
	snprintf(run_id, sizeof(run_id), "%016llx", (unsigned long long)x);
}

static void tick(bool short_lines)
{
	static int64_t last_mono;
	int64_t mono = clock_ns(CLOCK_MONOTONIC), real = clock_ns(CLOCK_REALTIME);
	char line[LINE_MAX_LEN];
	int n;

	if (mono < last_mono)
		sayf("snap mono-backwards prev=%lld now=%lld\n", (long long)last_mono,
		     (long long)mono);
	last_mono = mono;
	seq++;
	if (short_lines)
		n = snprintf(line, sizeof(line), "t%lu\n", seq);
	else
		n = snprintf(
		    line, sizeof(line), "snap seq=%lu mono=%lld.%09lld real=%lld.%09lld id=%s\n",
		    seq, (long long)(mono / 1000000000), (long long)(mono % 1000000000),
		    (long long)(real / 1000000000), (long long)(real % 1000000000), run_id);
	say(line, (size_t)n);
	if (host_conn >= 0 && send(host_conn, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
	    errno != EAGAIN && errno != EWOULDBLOCK) {
		sayf("snap conn-closed send: %s\n", strerror(errno));
		close(host_conn);
		host_conn = -1;
	}
}

static int parse_addr(const char *text, struct sockaddr_in *addr)
{
	char host[64];
	const char *colon = strrchr(text, ':');

	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -EINVAL;
}

static void connect_host(const char *where)
{
	struct sockaddr_in addr;

	if (parse_addr(where, &addr) < 0) {
		sayf("snap bad address %s\n", where);
		return;
	}
	for (int attempt = 0; attempt < 600; attempt++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			break;
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			host_conn = fd;
			sayf("snap connected %s\n", where);
			return;
		}
		close(fd);
		usleep(100000);
	}
	sayf("snap cannot connect to %s: %s\n", where, strerror(errno));
}

static int listen_on(int port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 8) < 0) {
		sayf("snap cannot listen on %d: %s\n", port, strerror(errno));
		close(fd);
		return -1;
	}
	sayf("snap listening %d\n", port);
	return fd;
}

static void first_line(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");

	if (!f) {
		snprintf(out, size, "file-error %s\n", strerror(errno));
		return;
	}
	if (!fgets(out + 5, (int)size - 6, f))
		out[5] = '\0';
	fclose(f);
	memcpy(out, "file ", 5);
	out[strcspn(out, "\n")] = '\0';
	strncat(out, "\n", size - strlen(out) - 1);
}

static void write_back(const char *path, const char *text, char *out, size_t size)
{
	char got[LINE_MAX_LEN] = "";
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || dprintf(fd, "%s\n", text) < 0 || fsync(fd) < 0) {
		snprintf(out, size, "write-error %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	first_line(path, got, sizeof(got));
	/* got is "file <line>\n" or "file-error ..." */
	snprintf(out, size, "wrote %s", strncmp(got, "file ", 5) ? got : got + 5);
}

/* One request line in, one reply line out; a client that sends nothing in 5 s is dropped. */
static void serve(int listener)
{
	struct timeval limit = {.tv_sec = 5};
	char request[LINE_MAX_LEN], reply[2 * LINE_MAX_LEN];
	size_t have = 0;
	int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	while (have < sizeof(request) - 1 && !memchr(request, '\n', have)) {
		ssize_t n = recv(fd, request + have, sizeof(request) - 1 - have, 0);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	request[have] = '\0';
	request[strcspn(request, "\r\n")] = '\0';
	if (!strncmp(request, "token ", 6)) {
		snprintf(reply, sizeof(reply), "reply prev=%s token=%s seq=%lu id=%s\n", token,
			 request + 6, seq, run_id);
		/* Tokens are short; a longer one is cut to fit. */
		size_t len = strnlen(request + 6, sizeof(token) - 1);

		memcpy(token, request + 6, len);
		token[len] = '\0';
	} else if (!strncmp(request, "read ", 5)) {
		first_line(request + 5, reply, sizeof(reply));
	} else if (!strncmp(request, "write ", 6) && strchr(request + 6, ' ')) {
		char *text = strchr(request + 6, ' ');

		*text++ = '\0';
		write_back(request + 6, text, reply, sizeof(reply));
	} else {
		snprintf(reply, sizeof(reply), "unknown request\n");
	}
	send(fd, reply, strlen(reply), MSG_NOSIGNAL);
	close(fd);
}

int main(int argc, char **argv)
{
	const char *connect_to = NULL;
	int interval_ms = 100, listen_port = 0, listener = -1, opt;
	bool short_lines = false;
	int64_t next;

	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt(argc, argv, "i:sc:l:")) != -1) {
		switch (opt) {
		case 'i':
			interval_ms = atoi(optarg);
			break;
		case 's':
			short_lines = true;
			break;
		case 'c':
			connect_to = optarg;
			break;
		case 'l':
			listen_port = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: snapguest [-i MS] [-s] [-c HOST:PORT] [-l PORT]\n");
			return 2;
		}
	}
	if (interval_ms < 1)
		interval_ms = 1;
	make_run_id();
	if (listen_port > 0)
		listener = listen_on(listen_port);
	if (connect_to)
		connect_host(connect_to);
	sayf("snap start id=%s interval=%d\n", run_id, interval_ms);

	/* Relative to the last tick, not a fixed grid: should the clock jump (a restore with
	 * clock_realtime), the counter goes on at its pace instead of catching up in a burst. */
	next = clock_ns(CLOCK_MONOTONIC);
	for (;;) {
		struct pollfd fds[2];
		int nfds = 0, wait_ms;
		int64_t now = clock_ns(CLOCK_MONOTONIC);

		if (now >= next) {
			tick(short_lines);
			next = clock_ns(CLOCK_MONOTONIC) + (int64_t)interval_ms * 1000000;
			continue;
		}
		wait_ms = (int)((next - now + 999999) / 1000000);
		if (listener >= 0)
			fds[nfds++] = (struct pollfd){.fd = listener, .events = POLLIN};
		if (host_conn >= 0)
			fds[nfds++] = (struct pollfd){.fd = host_conn, .events = POLLIN};
		if (poll(fds, (nfds_t)nfds, wait_ms) <= 0)
			continue;
		for (int i = 0; i < nfds; i++) {
			if (!fds[i].revents)
				continue;
			if (fds[i].fd == listener) {
				serve(listener);
			} else {
				char buf[256];
				ssize_t n = recv(host_conn, buf, sizeof(buf), MSG_DONTWAIT);

				/* The host sends nothing; EOF or an error ends the connection. */
				if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
					sayf("snap conn-closed recv: %s\n",
					     n == 0 ? "end of stream" : strerror(errno));
					close(host_conn);
					host_conn = -1;
				}
			}
		}
	}
}
