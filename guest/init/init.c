/*
 * wisp guest init (PID 1). Mounts the API filesystems, prints the ready marker that tests and
 * benchmarks wait for, runs the command given after " -- " on the kernel command line (if any),
 * then resets the VM: with reboot=k that is an i8042 reset, which the VMM turns into exit 0.
 *
 * Kernel command line settings (before " -- "):
 *   wisp.sleep=N   sleep N seconds after the marker, so a benchmark can sample an idle guest
 *   wisp.halt=1    never end (sleep forever instead of rebooting), for snapshot tests
 *
 * The kernel splits the arguments after " -- " on blanks and only understands double quotes:
 *   ... -- /bin/sh -c "echo hello; nproc"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PREFIX "wisp-init: "

/* Until /dev/console is open, fall back on whatever the kernel left on fd 2. */
static int console = 2;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char line[512] = PREFIX;
	size_t len = sizeof(PREFIX) - 1, room = sizeof(line) - len - 1;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line + len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		len += (size_t)n < room ? (size_t)n : room - 1;
	line[len++] = '\n';
	/* One write per line, so kernel messages cannot land in the middle of it. A failed
	 * write has nowhere to be reported. */
	if (write(console, line, len) < 0)
		return;
}

static void open_console(void)
{
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		say("open /dev/console: %s", strerror(errno));
	else
		console = fd;
}

static void mount_fs(const char *type, const char *dir, unsigned long flags, const char *data)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		say("mkdir %s: %s", dir, strerror(errno));
	/* EBUSY: it is mounted already (CONFIG_DEVTMPFS_MOUNT when not booting an initramfs). */
	if (mount(type, dir, type, flags, data) < 0 && errno != EBUSY)
		say("mount %s: %s", dir, strerror(errno));
}

static ssize_t read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0) {
		say("open %s: %s", path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, size - 1);
	if (n < 0)
		say("read %s: %s", path, strerror(errno));
	else
		buf[n] = '\0';
	close(fd);
	return n;
}

static void settings(long *sleep_secs, bool *halt)
{
	char buf[4096], *tok, *save, *end;

	if (read_text("/proc/cmdline", buf, sizeof(buf)) < 0)
		return;
	for (tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		/* Whatever follows belongs to the command, not to us. */
		if (!strcmp(tok, "--"))
			break;
		if (!strncmp(tok, "wisp.sleep=", 11)) {
			errno = 0;
			*sleep_secs = strtol(tok + 11, &end, 10);
			if (errno || end == tok + 11 || *end || *sleep_secs < 0) {
				say("ignoring bad %s", tok);
				*sleep_secs = 0;
			}
		} else if (!strncmp(tok, "wisp.halt=", 10)) {
			*halt = !strcmp(tok + 10, "1");
		}
	}
}

/*
 * Sleeps for secs seconds (forever if secs < 0) while reaping: orphans are re-parented to PID 1
 * and would pile up as zombies otherwise. SIGCHLD is blocked in main, so one that arrives between
 * waitpid and sigtimedwait stays pending instead of being lost.
 */
static void idle(long secs)
{
	struct timespec now, end, left;
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += secs;
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (secs < 0) {
			sigwaitinfo(&chld, NULL);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		left.tv_sec = end.tv_sec - now.tv_sec;
		left.tv_nsec = end.tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000L;
		}
		if (left.tv_sec < 0)
			return;
		sigtimedwait(&chld, NULL, &left);
	}
}

static void child(char **argv)
{
	sigset_t none;
	int fd;

	/* The signal mask survives exec; the command must not inherit our blocked SIGCHLD. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0)
		say("setsid: %s", strerror(errno));
	fd = open("/dev/console", O_RDWR);
	if (fd < 0) {
		say("open /dev/console: %s", strerror(errno));
	} else {
		/* /dev/console never becomes a controlling tty on open; without one, a shell
		 * turns job control off and complains. */
		if (ioctl(fd, TIOCSCTTY, 1) < 0)
			say("ioctl TIOCSCTTY: %s", strerror(errno));
		for (int i = 0; i < 3; i++)
			if (dup2(fd, i) < 0)
				say("dup2 console to fd %d: %s", i, strerror(errno));
		if (fd > 2)
			close(fd);
	}
	setenv("PATH", "/bin:/sbin:/usr/bin:/usr/sbin", 1);
	setenv("HOME", "/", 1);
	setenv("TERM", "linux", 1);
	execvp(argv[0], argv);
	say("cannot run %s: %s", argv[0], strerror(errno));
	_exit(127);
}

static void run(char **argv)
{
	pid_t pid = fork(), got;
	int status;

	if (pid < 0) {
		say("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0)
		child(argv);
	/* wait() for anyone, not just our child, so that orphans get reaped meanwhile. */
	do {
		got = wait(&status);
		if (got < 0 && errno != EINTR) {
			say("wait: %s", strerror(errno));
			return;
		}
	} while (got != pid);
	if (WIFEXITED(status))
		say("command exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		say("command killed by signal %d", WTERMSIG(status));
}

int main(int argc, char **argv)
{
	struct timespec uptime;
	long sleep_secs = 0, cpus;
	bool halt = false;
	sigset_t chld;

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
		say("sigprocmask: %s", strerror(errno));

	/* The archive's own /dev/console node, before devtmpfs covers it: errors from the
	 * mounts below then still reach the console. */
	open_console();
	mount_fs("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_fs("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_fs("devtmpfs", "/dev", MS_NOSUID, "mode=0755");
	mount_fs("tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_fs("tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755");
	if (console == 2)
		open_console();

	/* CLOCK_BOOTTIME is /proc/uptime's clock, with more than its hundredths. */
	clock_gettime(CLOCK_BOOTTIME, &uptime);
	/* glibc counts online CPUs from /sys, hence after the mounts. */
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 0)
		say("sysconf(_SC_NPROCESSORS_ONLN): %s", strerror(errno));
	say("ready uptime=%ld.%03ld cpus=%ld", (long)uptime.tv_sec, uptime.tv_nsec / 1000000, cpus);

	settings(&sleep_secs, &halt);
	if (sleep_secs > 0)
		idle(sleep_secs);
	if (argc > 1)
		run(argv + 1);
	if (halt) {
		say("halted (wisp.halt=1)");
		idle(-1);
	}

	sync();
	/* Not RB_POWER_OFF: there is no ACPI. PID 1 must never return: the kernel would panic. */
	reboot(RB_AUTOBOOT);
	say("reboot: %s", strerror(errno));
	idle(-1);
}
