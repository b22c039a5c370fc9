/*
 * wispctl: a reference control plane for wisp, using only its public API (HTTP/1.1 over
 * its Unix socket), the way a FaaS backend drives Firecracker: snapshot a warm function
 * VM, start many clones of it, invoke their function, inflate their balloons, list and
 * reap them. README "wispctl" says what each command does and where its state lives.
 *
 * wispctl does not stay resident: every clone is a wisp process in its own session whose
 * files (API socket, console FIFO and log, info.json) sit in <state>/clones/<id>/, and
 * every later command finds it there. invoke reaches the guest through the serial
 * console: it writes the request as one line into the clone's console FIFO (wisp's
 * stdin) and reads the function's answer line from its console log (wisp's stdout).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <jansson.h>

#include "wispctl_lib.h"

#define ERR_SIZE 1024

/* The guest's command line: wisp's default, quiet (serial output is slow), and init
 * running the function server in busybox sh. The server answers each line read on the
 * console with the SHA-256 of that line (newline included). The kernel passes the part
 * after " -- " to init split on blanks; it only knows double quotes, so none inside. */
#define FUNCTION_SERVER                                                                            \
	"stty -echo 2>/dev/null; echo " WISPCTL_WARM_MARKER "; "                                   \
	"while head -n 1 > /tmp/request; do set -- $(sha256sum < /tmp/request); "                  \
	"echo " WISPCTL_REPLY_PREFIX "$1; done"
#define DEFAULT_CMDLINE                                                                            \
	"console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "       \
	"quiet -- /bin/sh -c \"" FUNCTION_SERVER "\""

static struct wispctl_args args;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	fprintf(stderr, "wispctl: %s\n", line);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The whole of a (small) file, NUL-terminated, into a malloc'ed buffer; -errno. */
static int read_text(const char *path, char **out, size_t *len_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	size_t len = 0, cap = 4096;
	char *buf = NULL, *bigger;
	ssize_t n;

	if (fd < 0)
		return -errno;
	buf = malloc(cap);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (len + 1 >= cap) {
			bigger = realloc(buf, cap * 2);
			if (!bigger) {
				ret = -ENOMEM;
				goto out;
			}
			buf = bigger;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
	if (len_out)
		*len_out = len;
out:
	free(buf);
	close(fd);
	return ret;
}

/* ---- HTTP/1.1 over the API's Unix socket ----------------------------------------- */

static int connect_unix(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	/* Non-blocking: a Unix stream connect to a listener whose backlog is full would
	 * otherwise wait for as long as that wisp does not accept (EAGAIN instead). */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * One request on a fresh connection; *status and the body (NUL-terminated, cut to
 * reply_size) on success. Returns 0 or -errno (-ETIMEDOUT after timeout_ms).
 */
static int http_request(const char *socket_path, const char *method, const char *path,
			const char *body, int timeout_ms, int *status, char *reply,
			size_t reply_size)
{
	char buf[65536];
	size_t len = 0, head_len = 0, content_length = 0, body_len = body ? strlen(body) : 0;
	double deadline = now_s() + timeout_ms / 1000.0;
	int fd, ret, n;

	fd = connect_unix(socket_path);
	if (fd < 0)
		return fd;
	n = snprintf(buf, sizeof(buf),
		     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
		     "%sContent-Length: %zu\r\n\r\n",
		     method, path, body ? "Content-Type: application/json\r\n" : "", body_len);
	if (n < 0 || (size_t)n + body_len >= sizeof(buf)) {
		ret = -E2BIG;
		goto out;
	}
	memcpy(buf + n, body ? body : "", body_len);
	len = (size_t)n + body_len;
	for (size_t done = 0; done < len;) {
		ssize_t w = send(fd, buf + done, len - done, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			ret = -errno;
			goto out;
		}
		done += (size_t)w;
	}
	len = 0;
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int left = (int)((deadline - now_s()) * 1000);
		ssize_t r;

		if (head_len) {
			if (len >= head_len + content_length)
				break;
		} else {
			ret = wispctl_parse_http_head(buf, len, status, &content_length, &head_len);
			if (ret == 0) {
				if (head_len + content_length >= sizeof(buf)) {
					ret = -E2BIG;
					goto out;
				}
				continue;
			}
			if (ret != -EAGAIN) {
				ret = -EPROTO;
				goto out;
			}
		}
		if (left <= 0) {
			ret = -ETIMEDOUT;
			goto out;
		}
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno != EINTR) {
			ret = -errno;
			goto out;
		}
		if (ret <= 0)
			continue;
		r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0) {
			ret = -ECONNRESET;
			goto out;
		}
		len += (size_t)r;
	}
	if (reply && reply_size) {
		size_t n_body = content_length < reply_size - 1 ? content_length : reply_size - 1;
		memcpy(reply, buf + head_len, n_body);
		reply[n_body] = '\0';
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

/* The fault_message of an error reply, or the reply itself. */
static const char *fault_message(const char *reply, char *out, size_t size)
{
	json_t *root = json_loads(reply, 0, NULL);
	const char *msg = root ? json_string_value(json_object_get(root, "fault_message")) : NULL;

	snprintf(out, size, "%s", msg ? msg : reply);
	json_decref(root);
	return out;
}

/* A request that must answer 2xx; on failure err says what the API said. */
static int api_call(const char *socket_path, const char *method, const char *path, const char *body,
		    int timeout_ms, char *reply, size_t reply_size, char *err, size_t err_size)
{
	char local[4096], message[2048];
	int status = 0, ret;

	if (!reply) {
		reply = local;
		reply_size = sizeof(local);
	}
	ret = http_request(socket_path, method, path, body, timeout_ms, &status, reply, reply_size);
	if (ret < 0) {
		snprintf(err, err_size, "%s %s on %s: %s", method, path, socket_path,
			 strerror(-ret));
		return ret;
	}
	if (status < 200 || status > 299) {
		snprintf(err, err_size, "%s %s: HTTP %d: %s", method, path, status,
			 fault_message(reply, message, sizeof(message)));
		return -EIO;
	}
	return 0;
}

/* json_dumps of a packed object (NULL on a packing failure), freed by the caller. */
static char *json_text(json_t *value)
{
	char *text = value ? json_dumps(value, JSON_COMPACT) : NULL;

	json_decref(value);
	return text;
}

/* ---- processes ------------------------------------------------------------------- */

/* The wisp binary: --wisp, $WISP_BIN, else `wisp` beside wispctl. */
static void locate_wisp(void)
{
	char self[WISPCTL_PATH_MAX];
	ssize_t n;

	if (args.wisp[0])
		return;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash && (size_t)(slash - self) + sizeof("/wisp") <= sizeof(args.wisp)) {
			memcpy(args.wisp, self, (size_t)(slash - self));
			strcpy(args.wisp + (slash - self), "/wisp");
			if (access(args.wisp, X_OK) == 0)
				return;
		}
	}
	strcpy(args.wisp, "wisp"); /* from PATH */
}

/*
 * Starts wisp (or argv[0] when set: wisp-jailer) with argv in its own session (so that neither
 * wispctl's end nor its terminal's SIGHUP ends it), stdin/stdout/stderr from the given fds. Returns
 * the pid or -errno (fork's EAGAIN/ENOMEM: the host is full).
 */
static pid_t spawn(char **argv, int in_fd, int out_fd, int err_fd)
{
	pid_t pid;

	if (!argv[0])
		argv[0] = args.wisp;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Only async-signal-safe calls here: wispctl may have threads. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
			_exit(126);
		execvp(argv[0], argv);
		{
			static const char msg[] = "wispctl: cannot run wisp (exec failed)\n";
			if (write(2, msg, sizeof(msg) - 1) < 0)
				_exit(127);
		}
		_exit(127);
	}
	return pid;
}

/* The start time (clock ticks after boot) of pid, from /proc/PID/stat: 0 when gone. A
 * zombie counts as gone. */
static unsigned long long process_start_time(pid_t pid)
{
	char path[64], *text = NULL, *p;
	unsigned long long start = 0;
	char state;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_text(path, &text, NULL) < 0)
		return 0;
	p = strrchr(text, ')');
	/* after ")": state, then fields 4..22; starttime is field 22 */
	if (p &&
	    sscanf(p + 2,
		   "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
		   "%*d %*d %*d %llu",
		   &state, &start) == 2 &&
	    state == 'Z')
		start = 0;
	free(text);
	return start;
}

/* Ends pid (if it still is the process started at start_time): SIGTERM, then SIGKILL
 * after 3 s; waits until it is gone (reaping it when it is our child). */
static void stop_process(pid_t pid, unsigned long long start_time)
{
	double deadline;
	int sig = SIGTERM;

	if (pid <= 0 || !start_time || process_start_time(pid) != start_time)
		return;
	for (int round = 0; round < 2; round++, sig = SIGKILL) {
		if (kill(pid, sig) < 0)
			return;
		deadline = now_s() + (round ? 10 : 3);
		while (now_s() < deadline) {
			waitpid(pid, NULL, WNOHANG); /* our own child: reap it */
			if (process_start_time(pid) != start_time)
				return;
			sleep_ms(10);
		}
	}
	say("process %d survived SIGKILL for 10 s", (int)pid);
}

/* ---- TAP devices ------------------------------------------------------------------ */

/* Creates a persistent TAP (as wisp opens it: no packet info, vnet header) and brings it
 * up. owner >= 0: only that uid (a jailed clone's) may attach to it (TUNSETOWNER). */
static int tap_create(const char *name, long owner, char *err, size_t err_size)
{
	struct ifreq ifr = {0};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), sock, ret = 0;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, err_size, "cannot open /dev/net/tun for TAP %s: %s", name,
			 strerror(errno));
		return ret;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0 ||
	    (owner >= 0 && ioctl(fd, TUNSETOWNER, (unsigned long)owner) < 0)) {
		ret = -errno;
		snprintf(err, err_size, "cannot create TAP %s: %s (needs CAP_NET_ADMIN)", name,
			 strerror(errno));
		goto out;
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock >= 0) {
		if (ioctl(sock, SIOCGIFFLAGS, &ifr) == 0) {
			ifr.ifr_flags |= IFF_UP;
			if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
				say("TAP %s stays down: %s", name, strerror(errno));
		}
		close(sock);
	}
out:
	close(fd);
	return ret;
}

/* Removes a persistent TAP; a TAP that does not exist is fine. */
static void tap_delete(const char *name)
{
	struct ifreq ifr = {0};
	int fd;

	if (!if_nametoindex(name))
		return;
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	/* EBUSY: a wisp still holds it. Its process shows as a zombie once its main thread
	 * has ended, while other threads of it may still be closing their files. */
	for (int tries = 0; ioctl(fd, TUNSETIFF, &ifr) < 0; tries++) {
		if (errno != EBUSY || tries == 300) {
			say("cannot remove TAP %s: %s", name, strerror(errno));
			goto out;
		}
		sleep_ms(10);
	}
	if (ioctl(fd, TUNSETPERSIST, 0) < 0)
		say("cannot remove TAP %s: %s", name, strerror(errno));
out:
	close(fd);
}

/* ---- a clone's files -------------------------------------------------------------- */

struct clone {
	char id[WISPCTL_ID_MAX];
	char dir[WISPCTL_PATH_MAX], socket[WISPCTL_SUN_PATH_MAX], console_in[WISPCTL_PATH_MAX],
	    console_log[WISPCTL_PATH_MAX], stderr_path[WISPCTL_PATH_MAX], info[WISPCTL_PATH_MAX],
	    lock[WISPCTL_PATH_MAX];
	char tap[WISPCTL_IFNAME_MAX];
	pid_t pid;
	unsigned long long start_time;
	double started_unix;
	/* clone --jail: the jailer and the exec file it was started with (for --cleanup);
	 * the socket is then in the jail root. */
	bool jailed;
	char jailer[WISPCTL_PATH_MAX], exec_file[WISPCTL_PATH_MAX];
};

static int clone_paths(struct clone *c, const char *id)
{
	const char *dir = args.state_dir;

	snprintf(c->id, sizeof(c->id), "%s", id);
	if (wispctl_clone_path(dir, id, WISPCTL_FILE_DIR, c->dir, sizeof(c->dir)) < 0 ||
	    wispctl_clone_path(dir, id, WISPCTL_FILE_SOCKET, c->socket, sizeof(c->socket)) < 0 ||
	    wispctl_clone_path(dir, id, WISPCTL_FILE_CONSOLE_IN, c->console_in,
			       sizeof(c->console_in)) < 0 ||
	    wispctl_clone_path(dir, id, WISPCTL_FILE_CONSOLE_LOG, c->console_log,
			       sizeof(c->console_log)) < 0 ||
	    wispctl_clone_path(dir, id, WISPCTL_FILE_STDERR, c->stderr_path,
			       sizeof(c->stderr_path)) < 0 ||
	    wispctl_clone_path(dir, id, WISPCTL_FILE_INFO, c->info, sizeof(c->info)) < 0 ||
	    wispctl_clone_path(dir, id, WISPCTL_FILE_LOCK, c->lock, sizeof(c->lock)) < 0)
		return -ENAMETOOLONG;
	return 0;
}

/* info.json, written to a temporary name and renamed. */
static int clone_write_info(const struct clone *c, const char *snapshot_dir)
{
	char tmp[WISPCTL_PATH_MAX + 8];
	json_t *info = json_pack("{s:s,s:i,s:I,s:f,s:s,s:s}", "id", c->id, "pid", (int)c->pid,
				 "start_time", (json_int_t)c->start_time, "started_unix",
				 c->started_unix, "tap", c->tap, "snapshot", snapshot_dir);
	int ret;

	if (info && c->jailed)
		json_object_set_new(
		    info, "jail",
		    json_pack("{s:s,s:s}", "jailer", c->jailer, "exec_file", c->exec_file));
	if (!info)
		return -ENOMEM;
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->info);
	ret = json_dump_file(info, tmp, JSON_COMPACT) < 0 ? -EIO : 0;
	json_decref(info);
	if (!ret && rename(tmp, c->info) < 0)
		ret = -errno;
	return ret;
}

/* A jailed clone's API socket: in its jail root. */
static int clone_jail_socket(struct clone *c)
{
	const char *slash = strrchr(c->exec_file, '/');

	return wispctl_jail_socket(args.state_dir, slash ? slash + 1 : c->exec_file, c->id,
				   c->socket, sizeof(c->socket));
}

static int clone_load(struct clone *c, const char *id)
{
	char *text = NULL;
	json_t *info, *jail;
	int ret;

	memset(c, 0, sizeof(*c));
	ret = clone_paths(c, id);
	if (ret < 0)
		return ret;
	ret = read_text(c->info, &text, NULL);
	if (ret < 0)
		return ret;
	info = json_loads(text, 0, NULL);
	free(text);
	if (!info)
		return -EINVAL;
	c->pid = (pid_t)json_integer_value(json_object_get(info, "pid"));
	c->start_time = (unsigned long long)json_integer_value(json_object_get(info, "start_time"));
	c->started_unix = json_number_value(json_object_get(info, "started_unix"));
	snprintf(c->tap, sizeof(c->tap), "%s",
		 json_string_value(json_object_get(info, "tap")) ?: "");
	jail = json_object_get(info, "jail");
	if (json_is_object(jail)) {
		c->jailed = true;
		snprintf(c->jailer, sizeof(c->jailer), "%s",
			 json_string_value(json_object_get(jail, "jailer")) ?: "");
		snprintf(c->exec_file, sizeof(c->exec_file), "%s",
			 json_string_value(json_object_get(jail, "exec_file")) ?: "");
		ret = clone_jail_socket(c);
	}
	json_decref(info);
	return ret;
}

/* The cgroup2 mount point (the first in /proc/self/mountinfo, as wisp-jailer takes it). */
static int cgroup2_mount(char *out, size_t size)
{
	char *text = NULL, *line, *save = NULL;
	int ret = read_text("/proc/self/mountinfo", &text, NULL);

	if (ret < 0)
		return ret;
	ret = -ENOENT;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char mount_point[WISPCTL_PATH_MAX], *sep = strstr(line, " - ");
		if (!sep || strncmp(sep, " - cgroup2 ", 11) != 0 ||
		    sscanf(line, "%*s %*s %*s %*s %4095s", mount_point) != 1)
			continue;
		snprintf(out, size, "%s", mount_point);
		ret = 0;
		break;
	}
	free(text);
	return ret;
}

/*
 * Removes a jailed clone's jail and cgroup with `wisp-jailer --cleanup` (its wisp has
 * ended; KVM's per-VM kernel thread may stay in the cgroup a moment longer, so a refusal
 * is tried again for a few seconds, the last try's message shown), then the shared
 * directories and parent cgroup once no other clone uses them.
 */
static void jail_cleanup(const struct clone *c)
{
	const char *slash = strrchr(c->exec_file, '/');
	char base[WISPCTL_PATH_MAX], parent[32], dir[WISPCTL_PATH_MAX + 64];
	char *argv[] = {(char *)c->jailer,
			"--cleanup",
			"--id",
			(char *)c->id,
			"--exec-file",
			(char *)c->exec_file,
			"--chroot-base-dir",
			base,
			"--parent-cgroup",
			parent,
			NULL};
	int status = -1;

	if (wispctl_jail_base(args.state_dir, base, sizeof(base)) < 0)
		return;
	wispctl_jail_parent_cgroup(args.state_dir, parent, sizeof(parent));
	for (int attempt = 0; attempt < 50 && status != 0; attempt++) {
		bool last = attempt == 49;
		pid_t pid = fork();
		if (pid < 0) {
			say("%s: cannot run %s --cleanup: %s", c->id, c->jailer, strerror(errno));
			return;
		}
		if (pid == 0) {
			int null = open("/dev/null", O_RDWR);
			if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
			    (!last && dup2(null, 2) < 0))
				_exit(126);
			execv(argv[0], argv);
			_exit(127);
		}
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (status != 0 && !last)
			sleep_ms(100);
	}
	if (status != 0)
		say("%s: %s --cleanup failed (status %d): its jail or cgroup may be left", c->id,
		    c->jailer, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	/* Only if empty: other clones may still use them. */
	snprintf(dir, sizeof(dir), "%s/%s", base, slash ? slash + 1 : c->exec_file);
	rmdir(dir);
	rmdir(base);
	if (cgroup2_mount(dir, sizeof(dir) - sizeof(parent) - 1) == 0) {
		strcat(dir, "/");
		strcat(dir, parent);
		if (rmdir(dir) < 0 && errno != ENOENT && errno != EBUSY)
			say("cannot remove the cgroup %s: %s", dir, strerror(errno));
	}
}

/* Stops the clone's wisp, removes its TAP, its jail and every file, then its directory. */
static void clone_remove(struct clone *c)
{
	const char *files[] = {c->socket,      c->console_in, c->console_log,
			       c->stderr_path, c->info,	      c->lock};
	char tmp[WISPCTL_PATH_MAX + 8];

	stop_process(c->pid, c->start_time);
	if (c->jailed && c->jailer[0] && c->exec_file[0])
		jail_cleanup(c); /* the socket is in the jail: removed with it */
	if (c->tap[0])
		tap_delete(c->tap);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (unlink(files[i]) < 0 && errno != ENOENT)
			say("cannot remove %s: %s", files[i], strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s.tmp", c->info);
	unlink(tmp);
	if (rmdir(c->dir) < 0 && errno != ENOENT)
		say("cannot remove %s: %s (files wispctl did not make are left)", c->dir,
		    strerror(errno));
}

static int compare_ids(const void *a, const void *b)
{
	unsigned x = 0, y = 0;

	wispctl_parse_clone_id(*(char *const *)a, &x);
	wispctl_parse_clone_id(*(char *const *)b, &y);
	return x < y ? -1 : x > y;
}

/* Every clone id in the state directory, sorted by number; *count of them. */
static int list_clones(char ***ids_out, size_t *count)
{
	char dir[WISPCTL_PATH_MAX + 8];
	char **ids = NULL, **bigger;
	size_t n = 0, cap = 0;
	struct dirent *entry;
	unsigned number;
	DIR *d;

	*ids_out = NULL;
	*count = 0;
	snprintf(dir, sizeof(dir), "%s/clones", args.state_dir);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((entry = readdir(d))) {
		if (wispctl_parse_clone_id(entry->d_name, &number) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			bigger = realloc(ids, cap * sizeof(*ids));
			if (!bigger)
				break;
			ids = bigger;
		}
		ids[n] = strdup(entry->d_name);
		if (ids[n])
			n++;
	}
	closedir(d);
	qsort(ids, n, sizeof(*ids), compare_ids);
	*ids_out = ids;
	*count = n;
	return 0;
}

static void free_ids(char **ids, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(ids[i]);
	free(ids);
}

/* The ids a command works on: the one given (which must exist) or all. */
static int selected_clones(char ***ids, size_t *count)
{
	char dir[WISPCTL_PATH_MAX];
	struct stat st;
	int ret;

	if (args.all) {
		ret = list_clones(ids, count);
		if (ret < 0)
			say("cannot list %s/clones: %s", args.state_dir, strerror(-ret));
		return ret;
	}
	if (wispctl_clone_path(args.state_dir, args.id, WISPCTL_FILE_DIR, dir, sizeof(dir)) < 0 ||
	    stat(dir, &st) < 0) {
		say("no clone %s in %s (wispctl ls lists them)", args.id, args.state_dir);
		return -ENOENT;
	}
	*ids = malloc(sizeof(**ids));
	if (!*ids || !((*ids)[0] = strdup(args.id))) {
		free(*ids);
		return -ENOMEM;
	}
	*count = 1;
	return 0;
}

static int mkdir_p(const char *path)
{
	char buf[WISPCTL_PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The last lines of wisp's stderr, to show why it failed. */
static void show_stderr(const char *path, const char *who)
{
	char *text = NULL, *start;
	size_t len = 0;

	if (read_text(path, &text, &len) < 0 || !len) {
		say("%s wrote nothing on stderr", who);
		free(text);
		return;
	}
	start = len > 1500 ? text + len - 1500 : text;
	fprintf(stderr, "wispctl: %s said:\n%s%s", who, start, text[len - 1] == '\n' ? "" : "\n");
	free(text);
}

/*
 * Waits until wisp's API socket accepts a connection. -ECHILD when wisp ended first
 * (its stderr then says why), -ETIMEDOUT.
 */
static int wait_for_socket(const char *socket_path, pid_t pid, double timeout_s)
{
	double deadline = now_s() + timeout_s;
	int status, fd;

	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return -ECHILD;
		fd = connect_unix(socket_path);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (now_s() > deadline)
			return -ETIMEDOUT;
		sleep_ms(5);
	}
}

/* ---- snapshot --------------------------------------------------------------------- */

/* Polls a console log until `marker` shows up; -ECHILD if wisp ends first. */
static int wait_for_console(const char *log, const char *marker, pid_t pid, unsigned timeout_s)
{
	double deadline = now_s() + timeout_s;
	int status;

	for (;;) {
		char *text = NULL;
		bool found = read_text(log, &text, NULL) == 0 && strstr(text, marker);

		free(text);
		if (found)
			return 0;
		if (waitpid(pid, &status, WNOHANG) == pid)
			return -ECHILD;
		if (now_s() > deadline)
			return -ETIMEDOUT;
		sleep_ms(20);
	}
}

static int cmd_snapshot(void)
{
	char dir[WISPCTL_PATH_MAX], work[WISPCTL_PATH_MAX], sock[WISPCTL_SUN_PATH_MAX + 64],
	    log[WISPCTL_PATH_MAX + 16], errpath[WISPCTL_PATH_MAX + 16],
	    state[WISPCTL_PATH_MAX + 16], mem[WISPCTL_PATH_MAX + 16], meta[WISPCTL_PATH_MAX + 16],
	    tmp[WISPCTL_PATH_MAX + 24], err[ERR_SIZE], abs_kernel[PATH_MAX], abs_initrd[PATH_MAX],
	    abs_rootfs[PATH_MAX], tap[WISPCTL_IFNAME_MAX] = "";
	char *argv[] = {NULL, "--api-sock", sock, "--id", "wispctl-snapshot", NULL};
	const char *cmdline = args.cmdline ? args.cmdline : DEFAULT_CMDLINE;
	int in_fd = -1, out_fd = -1, err_fd = -1, ret = 1, r;
	double t0 = now_s(), t_started = 0, t_warm = 0, t_done;
	pid_t pid = -1;
	char *body;
	json_t *meta_json;

	if (!realpath(args.kernel, abs_kernel)) {
		say("kernel %s: %s", args.kernel, strerror(errno));
		return 2;
	}
	if (args.initrd && !realpath(args.initrd, abs_initrd)) {
		say("initrd %s: %s", args.initrd, strerror(errno));
		return 2;
	}
	if (args.rootfs && !realpath(args.rootfs, abs_rootfs)) {
		say("rootfs %s: %s", args.rootfs, strerror(errno));
		return 2;
	}
	r = mkdir_p(args.out_dir);
	if (r < 0 || !realpath(args.out_dir, dir)) {
		say("cannot make the snapshot directory %s: %s", args.out_dir,
		    strerror(r < 0 ? -r : errno));
		return 2;
	}
	snprintf(work, sizeof(work), "%s/snapshot-%d", args.state_dir, (int)getpid());
	snprintf(sock, sizeof(sock), "%s/api.sock", work);
	snprintf(errpath, sizeof(errpath), "%s/wisp.stderr", work);
	snprintf(log, sizeof(log), "%s/boot-console.log", dir);
	snprintf(state, sizeof(state), "%s/" WISPCTL_SNAP_STATE, dir);
	snprintf(mem, sizeof(mem), "%s/" WISPCTL_SNAP_MEM, dir);
	snprintf(meta, sizeof(meta), "%s/" WISPCTL_SNAP_META, dir);
	if (strlen(sock) >= WISPCTL_SUN_PATH_MAX) {
		say("the API socket path %s is too long for a Unix socket (--state-dir shorter)",
		    sock);
		return 2;
	}
	r = mkdir_p(work);
	if (r < 0) {
		say("cannot make %s: %s", work, strerror(-r));
		return 1;
	}
	unlink(sock);
	in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	out_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	err_fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (in_fd < 0 || out_fd < 0 || err_fd < 0) {
		say("cannot open the console files %s, %s: %s", log, errpath, strerror(errno));
		goto out;
	}
	if (args.net) {
		snprintf(tap, sizeof(tap), "wsnap%d", (int)(getpid() % 1000000));
		if (tap_create(tap, -1, err, sizeof(err)) < 0) {
			say("%s", err);
			tap[0] = '\0';
			goto out;
		}
	}
	pid = spawn(argv, in_fd, out_fd, err_fd);
	if (pid < 0) {
		say("cannot start %s: %s", args.wisp, strerror(-pid));
		goto out;
	}
	r = wait_for_socket(sock, pid, 30);
	if (r < 0) {
		say("wisp (%s) %s", args.wisp,
		    r == -ECHILD ? "ended before its API socket was up"
				 : "did not open its API socket within 30 s");
		show_stderr(errpath, "wisp");
		goto out;
	}
#define CALL(method, path, json)                                                                   \
	do {                                                                                       \
		body = json_text(json);                                                            \
		r = body ? api_call(sock, method, path, body, 30000, NULL, 0, err, sizeof(err))    \
			 : -ENOMEM;                                                                \
		free(body);                                                                        \
		if (r < 0) {                                                                       \
			say("snapshot: %s", r == -ENOMEM ? "out of memory" : err);                 \
			show_stderr(errpath, "wisp");                                              \
			goto out;                                                                  \
		}                                                                                  \
	} while (0)
	CALL("PUT", "/boot-source",
	     args.initrd
		 ? json_pack("{s:s,s:s,s:s}", "kernel_image_path", abs_kernel, "initrd_path",
			     abs_initrd, "boot_args", cmdline)
		 : json_pack("{s:s,s:s}", "kernel_image_path", abs_kernel, "boot_args", cmdline));
	CALL("PUT", "/machine-config",
	     json_pack("{s:i,s:i}", "vcpu_count", (int)args.vcpus, "mem_size_mib",
		       (int)args.mem_mib));
	if (args.rootfs)
		/* read-only: every clone shares the one image file */
		CALL("PUT", "/drives/rootfs",
		     json_pack("{s:s,s:s,s:b,s:b}", "drive_id", "rootfs", "path_on_host",
			       abs_rootfs, "is_root_device", 1, "is_read_only", 1));
	if (args.net)
		CALL("PUT", "/network-interfaces/eth0",
		     json_pack("{s:s,s:s}", "iface_id", "eth0", "host_dev_name", tap));
	if (args.balloon_mib >= 0)
		CALL("PUT", "/balloon",
		     json_pack("{s:i,s:b,s:i}", "amount_mib", args.balloon_mib, "deflate_on_oom", 1,
			       "stats_polling_interval_s", 0));
	t_started = now_s();
	CALL("PUT", "/actions", json_pack("{s:s}", "action_type", "InstanceStart"));
	r = wait_for_console(log, args.warm_marker, pid, args.timeout_s);
	if (r < 0) {
		say("the guest did not print its warm marker '%s' %s (console: %s)",
		    args.warm_marker,
		    r == -ECHILD ? "before wisp ended" : "in time (--timeout to wait longer)", log);
		show_stderr(errpath, "wisp");
		goto out;
	}
	t_warm = now_s();
	CALL("PATCH", "/vm", json_pack("{s:s}", "state", "Paused"));
	CALL("PUT", "/snapshot/create",
	     json_pack("{s:s,s:s}", "snapshot_path", state, "mem_file_path", mem));
#undef CALL
	meta_json = json_pack("{s:i,s:s,s:s?,s:s?,s:s,s:i,s:i,s:[],s:s,s:s,s:f}", "format", 1,
			      "kernel", abs_kernel, "initrd", args.initrd ? abs_initrd : NULL,
			      "rootfs", args.rootfs ? abs_rootfs : NULL, "boot_args", cmdline,
			      "mem_mib", (int)args.mem_mib, "vcpus", (int)args.vcpus, "ifaces",
			      "warm_marker", args.warm_marker, "reply_prefix", WISPCTL_REPLY_PREFIX,
			      "created_unix", wall_s());
	if (meta_json && args.net)
		json_array_append_new(json_object_get(meta_json, "ifaces"), json_string("eth0"));
	if (meta_json)
		json_object_set_new(meta_json, "balloon_mib",
				    args.balloon_mib >= 0 ? json_integer(args.balloon_mib)
							  : json_null());
	snprintf(tmp, sizeof(tmp), "%s.tmp", meta);
	if (!meta_json || json_dump_file(meta_json, tmp, JSON_INDENT(1)) < 0 ||
	    rename(tmp, meta) < 0) {
		say("cannot write %s: %s", meta, strerror(errno));
		json_decref(meta_json);
		goto out;
	}
	json_decref(meta_json);
	t_done = now_s();
	printf("snapshot: %s (%s, %s, %s): boot to warm %.0f ms, pause+snapshot %.0f ms, "
	       "total %.0f ms\n",
	       dir, WISPCTL_SNAP_STATE, WISPCTL_SNAP_MEM, WISPCTL_SNAP_META,
	       (t_warm - t_started) * 1000, (t_done - t_warm) * 1000, (t_done - t0) * 1000);
	ret = 0;
out:
	if (pid > 0) {
		stop_process(pid, process_start_time(pid));
		waitpid(pid, NULL, WNOHANG);
	}
	if (tap[0])
		tap_delete(tap);
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	unlink(sock);
	unlink(errpath);
	rmdir(work);
	rmdir(args.state_dir); /* only if empty */
	return ret;
}

/* ---- clone ------------------------------------------------------------------------ */

struct clone_run {
	char snapshot_dir[PATH_MAX];
	char state[WISPCTL_PATH_MAX + 16], mem[WISPCTL_PATH_MAX + 16];
	bool has_net;
	/* --jail: wisp-jailer, the absolute path of wisp, the chroot base and cgroup parent */
	char jailer[WISPCTL_PATH_MAX], exec_file[WISPCTL_PATH_MAX], jail_base[WISPCTL_PATH_MAX];
	char jail_parent[32];
	bool jail_pids; /* the cgroup2 root offers the pids controller */
	pthread_mutex_t lock;
	unsigned next_number; /* the next clone number to try */
	unsigned started, attempted;
	bool stop;
	char stop_reason[ERR_SIZE];
	pid_t *pids;
	double t0;
};

static void clone_stop(struct clone_run *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void clone_stop(struct clone_run *run, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&run->lock);
	if (!run->stop) {
		run->stop = true;
		va_start(ap, fmt);
		vsnprintf(run->stop_reason, sizeof(run->stop_reason), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&run->lock);
}

static int mem_available_mib(uint64_t *mib)
{
	char *text = NULL;
	uint64_t kb;
	int ret = read_text("/proc/meminfo", &text, NULL);

	if (ret < 0)
		return ret;
	ret = wispctl_proc_kb(text, "MemAvailable:", &kb);
	free(text);
	if (ret == 0)
		*mib = kb / 1024;
	return ret;
}

static void progress(struct clone_run *run, bool final)
{
	static bool tty = false, checked = false;
	double elapsed = now_s() - run->t0;
	unsigned step = args.count / 10 ? args.count / 10 : 1;

	if (!checked) {
		tty = isatty(STDERR_FILENO);
		checked = true;
	}
	if (!tty && (final ? run->started && run->started % step == 0 : run->started % step != 0))
		return; /* without a terminal: every tenth, and the last once */
	fprintf(stderr, "%swispctl: clone: %u/%u started, %.1f s, %.1f clones/s%s", tty ? "\r" : "",
		run->started, args.count, elapsed, elapsed > 0 ? run->started / elapsed : 0.0,
		tty && !final ? "" : "\n");
}

/* One snapshot file into a jail root: a hard link (the clones then share its page
 * cache), a copy (readable by the jail's group) when it is on another file system. */
static int jail_put(const char *source, const char *root, const char *name, char *err,
		    size_t err_size)
{
	char target[WISPCTL_PATH_MAX + 64];
	int in = -1, out = -1, ret = 0;
	struct stat st;

	snprintf(target, sizeof(target), "%s/%s", root, name);
	if (link(source, target) == 0)
		return 0;
	if (errno != EXDEV) {
		ret = -errno;
		snprintf(err, err_size, "cannot link %s into the jail as %s: %s", source, target,
			 strerror(errno));
		return ret;
	}
	in = open(source, O_RDONLY | O_CLOEXEC);
	out = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (in < 0 || out < 0 || fstat(in, &st) < 0 ||
	    fchown(out, (uid_t)-1, WISPCTL_JAIL_GID) < 0) {
		ret = -errno;
		goto fail;
	}
	for (off_t left = st.st_size; left > 0;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
		if (n <= 0) {
			ret = n < 0 ? -errno : -EIO;
			goto fail;
		}
		left -= n;
	}
	close(in);
	if (close(out) < 0) {
		out = -1;
		ret = -errno;
		goto fail;
	}
	return 0;
fail:
	snprintf(err, err_size, "cannot copy %s into the jail as %s: %s", source, target,
		 strerror(-ret));
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	unlink(target);
	return ret;
}

/* Starts one clone; returns 0, or -errno after clone_stop() said why. */
static int start_one(struct clone_run *run)
{
	char id[WISPCTL_ID_MAX], err[ERR_SIZE], reply[4096];
	char *argv[] = {NULL, "--api-sock", NULL, "--id", id, NULL};
	char uid[16], gid[16], pids[32], root[WISPCTL_PATH_MAX];
	char *jail_argv[24];
	size_t n = 0;
	const char *state_path = run->state, *mem_path = run->mem;
	struct clone c;
	unsigned number;
	uint64_t avail;
	int in_fd = -1, out_fd = -1, err_fd = -1, ret;
	char *body = NULL;
	json_t *load;

	if (args.min_avail_mib && mem_available_mib(&avail) == 0 && avail < args.min_avail_mib) {
		clone_stop(run,
			   "the host is full: MemAvailable %llu MiB is below %u MiB "
			   "(--min-available)",
			   (unsigned long long)avail, args.min_avail_mib);
		return -ENOMEM;
	}
	/* A number and directory of our own: mkdir is the atomic claim. */
	for (;;) {
		pthread_mutex_lock(&run->lock);
		number = run->next_number++;
		pthread_mutex_unlock(&run->lock);
		wispctl_clone_id(number, id, sizeof(id));
		if (clone_paths(&c, id) < 0) {
			clone_stop(run,
				   "the state directory %s is too long for a clone's socket "
				   "path (at most %d bytes)",
				   args.state_dir, WISPCTL_SUN_PATH_MAX - 1);
			return -ENAMETOOLONG;
		}
		if (mkdir(c.dir, 0755) == 0)
			break;
		if (errno != EEXIST) {
			clone_stop(run, "cannot make %s: %s", c.dir, strerror(errno));
			return -errno;
		}
	}
	argv[2] = c.socket;
	c.pid = 0;
	c.tap[0] = '\0';
	c.jailed = args.jail;
	if (c.jailed) {
		snprintf(c.jailer, sizeof(c.jailer), "%s", run->jailer);
		snprintf(c.exec_file, sizeof(c.exec_file), "%s", run->exec_file);
		snprintf(uid, sizeof(uid), "%u", WISPCTL_JAIL_UID_BASE + number);
		snprintf(gid, sizeof(gid), "%u", WISPCTL_JAIL_GID);
		snprintf(pids, sizeof(pids), "pids.max=%d", WISPCTL_JAIL_PIDS_MAX);
		char *fixed[] = {run->jailer,
				 "--id",
				 id,
				 "--exec-file",
				 run->exec_file,
				 "--uid",
				 uid,
				 "--gid",
				 gid,
				 "--chroot-base-dir",
				 run->jail_base,
				 "--parent-cgroup",
				 run->jail_parent};
		for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
			jail_argv[n++] = fixed[i];
		if (run->jail_pids) { /* a cgroup of its own where the host can limit tasks */
			jail_argv[n++] = "--cgroup";
			jail_argv[n++] = pids;
		}
		jail_argv[n++] = "--";
		jail_argv[n++] = "--api-sock";
		jail_argv[n++] = "/api.sock";
		jail_argv[n] = NULL;
		if (clone_jail_socket(&c) < 0 ||
		    wispctl_jail_root(args.state_dir, strrchr(run->exec_file, '/') + 1, id, root,
				      sizeof(root)) < 0) {
			clone_stop(run,
				   "the state directory %s is too long for a jailed clone's "
				   "socket path (at most %d bytes)",
				   args.state_dir, WISPCTL_SUN_PATH_MAX - 1);
			ret = -ENAMETOOLONG;
			goto fail;
		}
		state_path = "/" WISPCTL_SNAP_STATE;
		mem_path = "/" WISPCTL_SNAP_MEM;
	}
	if (run->has_net && wispctl_tap_name(args.tap_pattern, number, c.tap, sizeof(c.tap)) < 0) {
		clone_stop(run, "TAP pattern %s gives no name for %u", args.tap_pattern, number);
		ret = -EINVAL;
		goto fail;
	}
	/* Written before anything is made, so that reap finds the TAP even if we die. */
	ret = clone_write_info(&c, run->snapshot_dir);
	if (ret < 0) {
		clone_stop(run, "cannot write %s: %s", c.info, strerror(-ret));
		goto fail;
	}
	if (c.tap[0] && tap_create(c.tap, c.jailed ? (long)(WISPCTL_JAIL_UID_BASE + number) : -1,
				   err, sizeof(err)) < 0) {
		clone_stop(run, "%s", err);
		c.tap[0] = '\0'; /* not ours to delete (it may have existed) */
		ret = -EIO;
		goto fail;
	}
	if (mkfifo(c.console_in, 0600) < 0) {
		ret = -errno;
		clone_stop(run, "cannot make the FIFO %s: %s", c.console_in, strerror(errno));
		goto fail;
	}
	/* Read-write: wisp's stdin then never sees end-of-file between invocations. */
	in_fd = open(c.console_in, O_RDWR | O_CLOEXEC);
	out_fd = open(c.console_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	err_fd = open(c.stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (in_fd < 0 || out_fd < 0 || err_fd < 0) {
		ret = -errno;
		clone_stop(run, "cannot open %s's console files: %s%s", id, strerror(errno),
			   errno == EMFILE || errno == ENFILE ? " (the host is full: files)" : "");
		goto fail;
	}
	c.pid = spawn(c.jailed ? jail_argv : argv, in_fd, out_fd, err_fd);
	if (c.pid < 0) {
		ret = c.pid;
		c.pid = 0;
		clone_stop(run, "the host is full: fork: %s", strerror(-ret));
		goto fail;
	}
	c.start_time = process_start_time(c.pid);
	c.started_unix = wall_s();
	ret = clone_write_info(&c, run->snapshot_dir);
	if (ret < 0) {
		clone_stop(run, "cannot write %s: %s", c.info, strerror(-ret));
		goto fail;
	}
	ret = wait_for_socket(c.socket, c.pid, 30);
	if (ret < 0) {
		show_stderr(c.stderr_path, "wisp");
		clone_stop(run, "wisp for %s %s (its message is above)", id,
			   ret == -ECHILD ? "ended before its API socket was up"
					  : "did not open its API socket within 30 s");
		goto fail;
	}
	/* Jailed: wisp sees only its jail root, where the jailer has just made it. */
	if (c.jailed &&
	    ((ret = jail_put(run->state, root, WISPCTL_SNAP_STATE, err, sizeof(err))) < 0 ||
	     (ret = jail_put(run->mem, root, WISPCTL_SNAP_MEM, err, sizeof(err))) < 0)) {
		clone_stop(run, "%s: %s", id, err);
		goto fail;
	}
	load = json_pack("{s:s,s:{s:s,s:s},s:b}", "snapshot_path", state_path, "mem_backend",
			 "backend_type", "File", "backend_path", mem_path, "resume_vm", 1);
	if (load && c.tap[0])
		json_object_set_new(
		    load, "network_overrides",
		    json_pack("[{s:s,s:s}]", "iface_id", "eth0", "host_dev_name", c.tap));
	body = json_text(load);
	ret = body ? api_call(c.socket, "PUT", "/snapshot/load", body, args.timeout_s * 1000, reply,
			      sizeof(reply), err, sizeof(err))
		   : -ENOMEM;
	free(body);
	if (ret < 0) {
		show_stderr(c.stderr_path, "wisp");
		clone_stop(run, "%s: %s", id, ret == -ENOMEM ? "out of memory" : err);
		goto fail;
	}
	close(in_fd);
	close(out_fd);
	close(err_fd);
	pthread_mutex_lock(&run->lock);
	run->pids[run->started++] = c.pid;
	progress(run, false);
	pthread_mutex_unlock(&run->lock);
	return 0;

fail:
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	clone_remove(&c);
	return ret;
}

static void *clone_worker(void *opaque)
{
	struct clone_run *run = opaque;

	for (;;) {
		pthread_mutex_lock(&run->lock);
		bool go = !run->stop && run->attempted < args.count;
		if (go)
			run->attempted++;
		pthread_mutex_unlock(&run->lock);
		if (!go)
			return NULL;
		start_one(run);
	}
}

/* Sums Rss, Pss and private memory of the pids (kB) from smaps_rollup. */
static unsigned memory_of(const pid_t *pids, unsigned n, uint64_t *rss, uint64_t *pss,
			  uint64_t *priv)
{
	unsigned measured = 0;

	*rss = *pss = *priv = 0;
	for (unsigned i = 0; i < n; i++) {
		char path[64], *text = NULL;
		uint64_t r, p, pc, pd;

		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pids[i]);
		if (read_text(path, &text, NULL) < 0)
			continue;
		if (!wispctl_proc_kb(text, "Rss:", &r) && !wispctl_proc_kb(text, "Pss:", &p) &&
		    !wispctl_proc_kb(text, "Private_Clean:", &pc) &&
		    !wispctl_proc_kb(text, "Private_Dirty:", &pd)) {
			*rss += r;
			*pss += p;
			*priv += pc + pd;
			measured++;
		}
		free(text);
	}
	return measured;
}

/*
 * clone --jail: wisp-jailer beside wisp, wisp's absolute path (the jailer wants one), and
 * the snapshot's two files readable by the jails' group (they are hard-linked into
 * every jail, so their owner and mode are the jails' too).
 */
static int jail_setup(struct clone_run *run)
{
	const char *files[] = {run->state, run->mem};
	char *slash, controllers[WISPCTL_PATH_MAX];

	/* The jails and their cgroup's name derive from it: one spelling for every command. */
	if (args.state_dir[0] != '/') {
		say("clone --jail: the state directory %s must be an absolute path",
		    args.state_dir);
		return -EINVAL;
	}
	if (!realpath(args.wisp, run->exec_file)) {
		say("clone --jail: wisp %s: %s (--wisp gives its path)", args.wisp,
		    strerror(errno));
		return -ENOENT;
	}
	snprintf(run->jailer, sizeof(run->jailer), "%s", run->exec_file);
	slash = strrchr(run->jailer, '/');
	snprintf(slash + 1, sizeof(run->jailer) - (size_t)(slash + 1 - run->jailer), "wisp-jailer");
	if (access(run->jailer, X_OK) < 0) {
		say("clone --jail: %s: %s (it is built beside wisp: make all)", run->jailer,
		    strerror(errno));
		return -ENOENT;
	}
	if (wispctl_jail_base(args.state_dir, run->jail_base, sizeof(run->jail_base)) < 0)
		return -ENAMETOOLONG;
	wispctl_jail_parent_cgroup(args.state_dir, run->jail_parent, sizeof(run->jail_parent));
	if (cgroup2_mount(controllers, sizeof(controllers) - sizeof("/cgroup.controllers")) == 0) {
		char *text = NULL;
		strcat(controllers, "/cgroup.controllers");
		if (read_text(controllers, &text, NULL) == 0)
			run->jail_pids = wispctl_has_word(text, "pids");
		free(text);
	}
	if (!run->jail_pids)
		say("clone --jail: the host's cgroup2 has no pids controller: the clones get no "
		    "cgroup of their own");
	for (size_t i = 0; i < 2; i++) {
		struct stat st;
		if (stat(files[i], &st) < 0 || chown(files[i], (uid_t)-1, WISPCTL_JAIL_GID) < 0 ||
		    chmod(files[i], (st.st_mode & 07777) | S_IRGRP) < 0) {
			say("clone --jail: cannot give %s to the jails' group %u: %s", files[i],
			    WISPCTL_JAIL_GID, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

static int cmd_clone(void)
{
	static struct clone_run run;
	char meta_path[PATH_MAX + 32], *text = NULL, **ids = NULL;
	pthread_t threads[256];
	unsigned threads_started = 0, measured;
	uint64_t rss, pss, priv;
	size_t existing = 0;
	json_t *meta, *ifaces;
	double elapsed;
	int ret;

	if (!realpath(args.snapshot_dir, run.snapshot_dir)) {
		say("snapshot directory %s: %s (make one with wispctl snapshot ... -o %s)",
		    args.snapshot_dir, strerror(errno), args.snapshot_dir);
		return 2;
	}
	snprintf(meta_path, sizeof(meta_path), "%s/" WISPCTL_SNAP_META, run.snapshot_dir);
	snprintf(run.state, sizeof(run.state), "%s/" WISPCTL_SNAP_STATE, run.snapshot_dir);
	snprintf(run.mem, sizeof(run.mem), "%s/" WISPCTL_SNAP_MEM, run.snapshot_dir);
	ret = read_text(meta_path, &text, NULL);
	if (ret < 0 || access(run.state, R_OK) < 0 || access(run.mem, R_OK) < 0) {
		say("%s is not a wispctl snapshot: %s, %s and %s are needed (%s)", run.snapshot_dir,
		    WISPCTL_SNAP_META, WISPCTL_SNAP_STATE, WISPCTL_SNAP_MEM,
		    strerror(ret < 0 ? -ret : errno));
		free(text);
		return 2;
	}
	meta = json_loads(text, 0, NULL);
	free(text);
	ifaces = meta ? json_object_get(meta, "ifaces") : NULL;
	if (!meta || !json_is_array(ifaces) || json_array_size(ifaces) > 1) {
		say("%s: not a snapshot description wispctl understands (at most one interface)",
		    meta_path);
		json_decref(meta);
		return 2;
	}
	run.has_net = json_array_size(ifaces) == 1;
	json_decref(meta);
	if (args.jail && jail_setup(&run) < 0)
		return 2;

	snprintf(meta_path, sizeof(meta_path), "%s/clones", args.state_dir);
	ret = mkdir_p(meta_path);
	if (ret < 0) {
		say("cannot make %s: %s", meta_path, strerror(-ret));
		return 1;
	}
	/* New clones are numbered after the existing ones. */
	list_clones(&ids, &existing);
	if (existing)
		wispctl_parse_clone_id(ids[existing - 1], &run.next_number), run.next_number++;
	free_ids(ids, existing);
	run.pids = calloc(args.count, sizeof(*run.pids));
	if (!run.pids) {
		say("out of memory");
		return 1;
	}
	pthread_mutex_init(&run.lock, NULL);
	run.t0 = now_s();
	for (unsigned i = 0; i < args.parallel && i < args.count; i++) {
		if (pthread_create(&threads[i], NULL, clone_worker, &run) != 0) {
			if (!threads_started)
				clone_worker(&run); /* at least this thread */
			break;
		}
		threads_started++;
	}
	for (unsigned i = 0; i < threads_started; i++)
		pthread_join(threads[i], NULL);
	elapsed = now_s() - run.t0;
	progress(&run, true);
	measured = memory_of(run.pids, run.started, &rss, &pss, &priv);
	printf("clone: %u of %u clones started from %s in %.2f s: %.1f clones/s (parallel %u)\n",
	       run.started, args.count, run.snapshot_dir, elapsed,
	       elapsed > 0 ? run.started / elapsed : 0.0, args.parallel);
	if (measured)
		printf("clone: memory per clone (smaps_rollup, %u clones): PSS %.1f MiB, RSS %.1f "
		       "MiB, private %.1f MiB\n",
		       measured, pss / 1024.0 / measured, rss / 1024.0 / measured,
		       priv / 1024.0 / measured);
	free(run.pids);
	if (!run.started) { /* nothing of ours is left in them: remove them if empty */
		rmdir(meta_path);
		rmdir(args.state_dir);
	}
	if (run.stop) {
		say("stopped after %u of %u clones: %s; %u clones run (wispctl ls, wispctl reap "
		    "--all)",
		    run.started, args.count, run.stop_reason, run.started);
		return 1;
	}
	return 0;
}

/* ---- invoke ----------------------------------------------------------------------- */

struct invocation {
	struct clone c;
	int lock_fd;
	off_t offset;
	int error; /* -errno: not sent, or no answer */
	char answer[256];
};

/* Sends the request line into the clone's console FIFO; remembers where its answer will
 * start in the console log. The lock keeps other invocations of this clone out. */
static int invoke_send(struct invocation *inv, const char *request)
{
	struct stat st;
	int fd, ret = 0;
	size_t len = strlen(request);
	char *line;

	inv->lock_fd = open(inv->c.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (inv->lock_fd < 0 || flock(inv->lock_fd, LOCK_EX) < 0)
		return -errno;
	if (stat(inv->c.console_log, &st) < 0)
		return -errno;
	inv->offset = st.st_size;
	/* A clone whose wisp is gone has a FIFO without reader: ENXIO. */
	fd = open(inv->c.console_in, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	line = malloc(len + 1);
	if (!line) {
		close(fd);
		return -ENOMEM;
	}
	memcpy(line, request, len);
	line[len] = '\n';
	/* At most PIPE_BUF bytes: one atomic write, never short. */
	if (write(fd, line, len + 1) != (ssize_t)(len + 1))
		ret = errno ? -errno : -EIO;
	free(line);
	close(fd);
	return ret;
}

/* Looks once for the answer in the console log after the offset. */
static int invoke_poll(struct invocation *inv)
{
	char buf[8192];
	int fd = open(inv->c.console_log, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, buf, sizeof(buf) - 1, inv->offset);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return wispctl_find_line(buf, (size_t)n, WISPCTL_REPLY_PREFIX, inv->answer,
				 sizeof(inv->answer));
}

static int cmd_invoke(void)
{
	struct invocation *invs;
	char **ids = NULL;
	size_t count = 0, pending = 0, answered = 0;
	double t0 = now_s(), deadline;
	int ret = selected_clones(&ids, &count);

	if (ret < 0)
		return 1;
	if (!count) {
		say("no clones in %s", args.state_dir);
		free_ids(ids, count);
		return 1;
	}
	invs = calloc(count, sizeof(*invs));
	if (!invs) {
		free_ids(ids, count);
		return 1;
	}
	for (size_t i = 0; i < count; i++) {
		invs[i].lock_fd = -1;
		invs[i].error = clone_load(&invs[i].c, ids[i]);
		if (!invs[i].error)
			invs[i].error = invoke_send(&invs[i], args.request);
		if (invs[i].error)
			continue;
		invs[i].error = -EAGAIN;
		pending++;
	}
	deadline = now_s() + args.timeout_s;
	while (pending && now_s() < deadline) {
		for (size_t i = 0; i < count; i++) {
			if (invs[i].error != -EAGAIN)
				continue;
			invs[i].error = invoke_poll(&invs[i]);
			if (invs[i].error != -EAGAIN)
				pending--;
		}
		if (pending)
			sleep_ms(5);
	}
	for (size_t i = 0; i < count; i++) {
		if (invs[i].error == 0) {
			printf("%s: %s\n", ids[i], invs[i].answer);
			answered++;
		} else if (invs[i].error == -EAGAIN) {
			say("%s: no answer within %u s (console: %s)", ids[i], args.timeout_s,
			    invs[i].c.console_log);
		} else {
			say("%s: cannot invoke: %s%s", ids[i], strerror(-invs[i].error),
			    invs[i].error == -ENXIO ? " (its wisp is not running)" : "");
		}
		if (invs[i].lock_fd >= 0)
			close(invs[i].lock_fd);
	}
	if (count > 1)
		printf("invoke: %zu of %zu clones answered in %.0f ms\n", answered, count,
		       (now_s() - t0) * 1000);
	free(invs);
	free_ids(ids, count);
	return answered == count ? 0 : 1;
}

/* ---- balloon, ls, reap ------------------------------------------------------------ */

static int cmd_balloon(void)
{
	char **ids = NULL, err[ERR_SIZE], body[64];
	size_t count = 0, done = 0;
	double t0 = now_s();
	int ret = selected_clones(&ids, &count);

	if (ret < 0)
		return 1;
	snprintf(body, sizeof(body), "{\"amount_mib\":%u}", args.amount_mib);
	for (size_t i = 0; i < count; i++) {
		struct clone c;
		ret = clone_load(&c, ids[i]);
		if (ret < 0)
			snprintf(err, sizeof(err), "cannot read its info.json: %s", strerror(-ret));
		else
			ret = api_call(c.socket, "PATCH", "/balloon", body, 30000, NULL, 0, err,
				       sizeof(err));
		if (ret < 0) {
			say("%s: %s", ids[i], err);
			continue;
		}
		done++;
	}
	printf("balloon: %zu of %zu clones set to %u MiB in %.0f ms\n", done, count,
	       args.amount_mib, (now_s() - t0) * 1000);
	free_ids(ids, count);
	return done == count ? 0 : 1;
}

static int cmd_ls(void)
{
	char **ids = NULL;
	size_t count = 0;
	int ret = list_clones(&ids, &count);

	if (ret < 0) {
		say("cannot list %s/clones: %s", args.state_dir, strerror(-ret));
		return 1;
	}
	printf("%-8s %-10s %8s %10s %10s %10s  %s\n", "ID", "STATE", "PID", "RSS_KIB", "PSS_KIB",
	       "UPTIME_S", "TAP");
	for (size_t i = 0; i < count; i++) {
		char reply[1024], state[32] = "dead", rss_text[16] = "-", pss_text[16] = "-";
		struct clone c;
		uint64_t rss, pss, priv;
		int status;

		if (clone_load(&c, ids[i]) < 0) {
			printf("%-8s %-10s\n", ids[i], "broken");
			continue;
		}
		if (c.pid > 0 && process_start_time(c.pid) == c.start_time) {
			snprintf(state, sizeof(state), "no-api");
			if (http_request(c.socket, "GET", "/", NULL, 2000, &status, reply,
					 sizeof(reply)) == 0 &&
			    status == 200) {
				json_t *root = json_loads(reply, 0, NULL);
				const char *s = json_string_value(json_object_get(root, "state"));
				snprintf(state, sizeof(state), "%s", s ? s : "?");
				json_decref(root);
			}
			if (memory_of(&c.pid, 1, &rss, &pss, &priv)) {
				snprintf(rss_text, sizeof(rss_text), "%llu",
					 (unsigned long long)rss);
				snprintf(pss_text, sizeof(pss_text), "%llu",
					 (unsigned long long)pss);
			}
		}
		printf("%-8s %-10s %8d %10s %10s %10.1f  %s\n", ids[i], state, (int)c.pid, rss_text,
		       pss_text, c.started_unix ? wall_s() - c.started_unix : 0.0,
		       c.tap[0] ? c.tap : "-");
	}
	free_ids(ids, count);
	return 0;
}

static int cmd_reap(void)
{
	char **ids = NULL, path[WISPCTL_PATH_MAX + 16];
	size_t count = 0;
	double t0 = now_s();
	int ret = selected_clones(&ids, &count);

	if (ret < 0)
		return 1;
	/* SIGTERM to all first, so that they end together rather than one after another. */
	for (size_t i = 0; i < count; i++) {
		struct clone c;
		if (clone_load(&c, ids[i]) == 0 && c.pid > 0 && c.start_time &&
		    process_start_time(c.pid) == c.start_time)
			kill(c.pid, SIGTERM);
	}
	for (size_t i = 0; i < count; i++) {
		struct clone c;
		if (clone_load(&c, ids[i]) < 0) {
			/* No info.json: nothing was started; the files only. */
			memset(&c, 0, sizeof(c));
			if (clone_paths(&c, ids[i]) < 0)
				continue;
		}
		clone_remove(&c);
	}
	snprintf(path, sizeof(path), "%s/clones", args.state_dir);
	rmdir(path);	       /* only if empty */
	rmdir(args.state_dir); /* likewise */
	printf("reap: %zu clones stopped and removed in %.0f ms\n", count, (now_s() - t0) * 1000);
	free_ids(ids, count);
	return 0;
}

int main(int argc, char **argv)
{
	char err[ERR_SIZE];
	struct rlimit nofile;

	if (wispctl_parse_args(argc, argv, &args, (const char *(*)(const char *))getenv, err,
			       sizeof(err)) < 0) {
		say("%s", err);
		return 2;
	}
	if (args.command == WISPCTL_HELP) {
		fputs(wispctl_usage(), stdout);
		return 0;
	}
	/* invoke --all holds one lock per clone. */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	locate_wisp();
	switch (args.command) {
	case WISPCTL_SNAPSHOT:
		return cmd_snapshot();
	case WISPCTL_CLONE:
		return cmd_clone();
	case WISPCTL_INVOKE:
		return cmd_invoke();
	case WISPCTL_BALLOON:
		return cmd_balloon();
	case WISPCTL_LS:
		return cmd_ls();
	case WISPCTL_REAP:
		return cmd_reap();
	default:
		return 2;
	}
}
