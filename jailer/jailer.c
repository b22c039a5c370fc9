/* wisp-jailer: starts wisp (or any static exec file) as Firecracker's jailer does: in its
 * own chroot under <base>/<exec name>/<id>/root, mount namespace, cgroup v2 and (optionally)
 * network and pid namespaces, as an unprivileged uid/gid without capabilities and with
 * no_new_privs. Every step that creates something records how to undo it, so a failure
 * leaves nothing behind; `--cleanup` removes a jail and its cgroup afterwards. README.md
 * "wisp-jailer" describes the steps in order. */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "jail_config.h"

#define UNDO_MAX 64
/* A jailed process can fill its root with anything; removal stops this deep. */
#define REMOVE_DEPTH_MAX 64

struct undo_dir {
	int parent_fd; /* the directory holding it, kept open: paths stop working after pivot */
	char name[256];
	bool whole_tree; /* the jail: remove what is inside too */
};

struct jail_device {
	const char *name;	   /* below /dev */
	unsigned int major, minor; /* used when the host has no such node */
	bool optional;		   /* created only when the host has it */
};

static const struct jail_device jail_devices[] = {
    {"kvm", 10, 232, false},
    {"net/tun", 10, 200, false},
    {"urandom", 1, 9, false},
    {"userfaultfd", 10, 126, true},
};
#define DEVICE_COUNT (sizeof(jail_devices) / sizeof(jail_devices[0]))

struct jail_run {
	const struct jail_config *config;
	char dir[JAIL_PATH_MAX];  /* <base>/<exec name>/<id> */
	char root[JAIL_PATH_MAX]; /* ... /root */
	char cgroup_mount[JAIL_PATH_MAX];
	char cgroup[JAIL_PATH_MAX]; /* <mount>/<parent>/<id> */
	bool device_present[DEVICE_COUNT];
	dev_t device_rdev[DEVICE_COUNT];
	struct undo_dir undo[UNDO_MAX];
	int undo_count;
	int original_procs_fd; /* cgroup.procs of the cgroup the jailer started in */
	bool joined_cgroup;
	bool bind_mounted, pivoted;
	int devnull_fd;
	int exit_status;
	char error[2048];
};

static int fail(struct jail_run *run, int status, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the failure (the step, the path or value, the errno's text) and returns -1. */
static int fail(struct jail_run *run, int status, int err, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(run->error, sizeof(run->error), fmt, ap);
	va_end(ap);
	len = strlen(run->error);
	if (err && len < sizeof(run->error))
		snprintf(run->error + len, sizeof(run->error) - len, ": %s", strerror(err));
	run->exit_status = status;
	return -1;
}

/* --- removal ------------------------------------------------------------------------ */

/* Removes parent_fd/name and everything below it without following symlinks. */
static int remove_tree_at(int parent_fd, const char *name, int depth)
{
	int fd, ret = 0;
	DIR *dir;
	struct dirent *entry;

	if (depth > REMOVE_DEPTH_MAX)
		return -ELOOP;
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(parent_fd, name, 0) ? -errno : 0;
		return -errno;
	}
	dir = fdopendir(fd);
	if (!dir) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((entry = readdir(dir))) {
		if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
			continue;
		if (entry->d_type == DT_DIR) {
			ret = remove_tree_at(fd, entry->d_name, depth + 1);
		} else if (unlinkat(fd, entry->d_name, 0)) {
			ret =
			    errno == EISDIR ? remove_tree_at(fd, entry->d_name, depth + 1) : -errno;
		}
		if (ret)
			break;
	}
	closedir(dir);
	if (ret)
		return ret;
	return unlinkat(parent_fd, name, AT_REMOVEDIR) ? -errno : 0;
}

static int push_undo(struct jail_run *run, int parent_fd, const char *name, bool whole_tree)
{
	struct undo_dir *undo;
	int fd;

	if (run->undo_count == UNDO_MAX)
		return -ENOSPC;
	fd = fcntl(parent_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	undo = &run->undo[run->undo_count++];
	undo->parent_fd = fd;
	snprintf(undo->name, sizeof(undo->name), "%s", name);
	undo->whole_tree = whole_tree;
	return 0;
}

/* Takes back what this run created, newest first; reports what it could not remove. */
static void undo_all(struct jail_run *run)
{
	if (run->joined_cgroup && run->original_procs_fd >= 0) {
		char pid[32];
		int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());

		if (write(run->original_procs_fd, pid, len) != len)
			fprintf(stderr, "wisp-jailer: undo: cannot leave cgroup %s: %s\n",
				run->cgroup, strerror(errno));
	}
	if (run->bind_mounted && !run->pivoted && umount2(run->root, MNT_DETACH))
		fprintf(stderr, "wisp-jailer: undo: cannot unmount %s: %s\n", run->root,
			strerror(errno));
	while (run->undo_count > 0) {
		struct undo_dir *undo = &run->undo[--run->undo_count];
		int ret = undo->whole_tree
			      ? remove_tree_at(undo->parent_fd, undo->name, 0)
			      : (unlinkat(undo->parent_fd, undo->name, AT_REMOVEDIR) ? -errno : 0);

		if (ret && ret != -ENOENT)
			fprintf(stderr,
				"wisp-jailer: undo: cannot remove '%s' (created by this run): "
				"%s\n",
				undo->name, strerror(-ret));
		close(undo->parent_fd);
	}
}

/* --- helpers ------------------------------------------------------------------------ */

/* mkdir -p: opens path, creating what is missing (mode 0755), each creation recorded for
 * undo. Returns the directory's fd (O_CLOEXEC) or -errno. */
static int make_dirs(struct jail_run *run, const char *path)
{
	char copy[JAIL_PATH_MAX];
	char *name, *save = NULL;
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	snprintf(copy, sizeof(copy), "%s", path);
	for (name = strtok_r(copy, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
		int next, ret;

		if (!mkdirat(fd, name, 0755)) {
			ret = push_undo(run, fd, name, false);
			if (ret) {
				close(fd);
				return ret;
			}
		} else if (errno != EEXIST) {
			ret = -errno;
			close(fd);
			return ret;
		}
		next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ret = -errno;
		close(fd);
		if (next < 0)
			return ret;
		fd = next;
	}
	return fd;
}

static int write_file_at(int dir_fd, const char *name, const char *text)
{
	int fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t len = (ssize_t)strlen(text);
	int ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != len)
		ret = errno ? -errno : -EIO;
	close(fd);
	return ret;
}

static int read_file(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return -errno;
	len = read(fd, out, size - 1);
	if (len < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	out[len] = '\0';
	close(fd);
	return 0;
}

/* The mount point of the first cgroup2 file system in /proc/self/mountinfo. */
static int find_cgroup2_mount(char *out, size_t size)
{
	FILE *mounts = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int ret = -ENOENT;

	if (!mounts)
		return -errno;
	while (fgets(line, sizeof(line), mounts)) {
		char mount_point[JAIL_PATH_MAX];
		const char *sep = strstr(line, " - ");
		char *src, *dst;

		if (!sep || strncmp(sep, " - cgroup2 ", 11))
			continue;
		/* id parent major:minor root mount-point ... */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mount_point) != 1)
			continue;
		/* Octal escapes (\040 for a space) back to bytes. */
		for (src = dst = mount_point; *src; dst++) {
			if (src[0] == '\\' && src[1] >= '0' && src[1] <= '7' && src[2] && src[3]) {
				*dst = (char)(((src[1] - '0') << 6) | ((src[2] - '0') << 3) |
					      (src[3] - '0'));
				src += 4;
			} else {
				*dst = *src++;
			}
		}
		*dst = '\0';
		if (strlen(mount_point) < size) {
			strcpy(out, mount_point);
			ret = 0;
		}
		break;
	}
	fclose(mounts);
	return ret;
}

/* The exec file must be a static ELF executable: the jail holds no loader or libraries. */
static int check_exec_file(struct jail_run *run)
{
	const char *path = run->config->exec_file;
	struct stat st;
	Elf64_Ehdr header;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(run, JAIL_EXIT_INPUT, errno, "validate: --exec-file %s", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || !(st.st_mode & 0111)) {
		ret = fail(run, JAIL_EXIT_INPUT, 0,
			   "validate: --exec-file %s: not an executable regular file", path);
		goto out;
	}
	if (pread(fd, &header, sizeof(header), 0) != sizeof(header) ||
	    memcmp(header.e_ident, ELFMAG, SELFMAG) || header.e_ident[EI_CLASS] != ELFCLASS64 ||
	    header.e_phentsize != sizeof(Elf64_Phdr)) {
		ret = fail(run, JAIL_EXIT_INPUT, 0,
			   "validate: --exec-file %s: not a 64-bit ELF executable", path);
		goto out;
	}
	for (unsigned int i = 0; i < header.e_phnum; i++) {
		Elf64_Phdr phdr;

		if (pread(fd, &phdr, sizeof(phdr), (off_t)(header.e_phoff + i * sizeof(phdr))) !=
		    sizeof(phdr)) {
			ret = fail(run, JAIL_EXIT_INPUT, 0,
				   "validate: --exec-file %s: truncated program headers", path);
			goto out;
		}
		if (phdr.p_type == PT_INTERP) {
			ret = fail(run, JAIL_EXIT_INPUT, 0,
				   "validate: --exec-file %s: dynamically linked; the jail holds "
				   "no loader or libraries, so link it statically",
				   path);
			goto out;
		}
	}
out:
	close(fd);
	return ret;
}

/* --- the steps ---------------------------------------------------------------------- */

static int step_validate(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	struct stat st;

	if (check_exec_file(run))
		return -1;
	if (!stat(config->chroot_base, &st) && !S_ISDIR(st.st_mode))
		return fail(run, JAIL_EXIT_INPUT, 0,
			    "validate: --chroot-base-dir %s: exists and is not a directory",
			    config->chroot_base);
	jail_dir_path(config, run->dir, sizeof(run->dir));
	jail_root_path(config, run->root, sizeof(run->root));
	if (!lstat(run->dir, &st))
		return fail(run, JAIL_EXIT_INPUT, 0,
			    "validate: jail %s already exists: pick another --id or remove it "
			    "(wisp-jailer --cleanup --id %s --exec-file %s --chroot-base-dir %s)",
			    run->dir, config->id, config->exec_file, config->chroot_base);
	if (config->netns && stat(config->netns, &st))
		return fail(run, JAIL_EXIT_INPUT, errno, "validate: --netns %s", config->netns);

	if (config->cgroup_count) {
		char controllers[4096];
		int ret = find_cgroup2_mount(run->cgroup_mount, sizeof(run->cgroup_mount));
		char path[JAIL_PATH_MAX + 32];

		if (ret)
			return fail(run, JAIL_EXIT_INPUT, 0,
				    "validate: --cgroup: no cgroup2 file system is mounted "
				    "(/proc/self/mountinfo); mount one: mount -t cgroup2 none "
				    "/sys/fs/cgroup");
		if (jail_cgroup_path(config, run->cgroup_mount, run->cgroup, sizeof(run->cgroup)))
			return fail(run, JAIL_EXIT_INPUT, 0,
				    "validate: --parent-cgroup %s: the cgroup path is too long",
				    config->parent_cgroup);
		if (!lstat(run->cgroup, &st))
			return fail(run, JAIL_EXIT_INPUT, 0,
				    "validate: cgroup %s already exists: pick another --id or "
				    "remove it (wisp-jailer --cleanup)",
				    run->cgroup);
		snprintf(path, sizeof(path), "%s/cgroup.controllers", run->cgroup_mount);
		ret = read_file(path, controllers, sizeof(controllers));
		if (ret)
			return fail(run, JAIL_EXIT_STEP, -ret, "validate: cannot read %s", path);
		for (int i = 0; i < config->cgroup_count; i++) {
			char controller[JAIL_CGROUP_FILE_MAX];

			jail_cgroup_controller(config->cgroups[i].file, controller,
					       sizeof(controller));
			if (controller[0] && !jail_word_in_list(controllers, controller))
				return fail(run, JAIL_EXIT_INPUT, 0,
					    "validate: --cgroup %s=%s: controller '%s' is not "
					    "available in %s (cgroup.controllers: %.200s)",
					    config->cgroups[i].file, config->cgroups[i].value,
					    controller, run->cgroup_mount,
					    strtok(controllers, "\n"));
		}
	}

	for (size_t i = 0; i < DEVICE_COUNT; i++) {
		char path[64];

		snprintf(path, sizeof(path), "/dev/%s", jail_devices[i].name);
		if (!stat(path, &st) && S_ISCHR(st.st_mode)) {
			run->device_present[i] = true;
			run->device_rdev[i] = st.st_rdev;
		} else if (!jail_devices[i].optional) {
			run->device_present[i] = true;
			run->device_rdev[i] = makedev(jail_devices[i].major, jail_devices[i].minor);
		}
	}
	return 0;
}

static void step_close_fds_and_env(void)
{
	sigset_t none;

	/* Blocked and ignored signals survive exec: the exec file starts from the defaults. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL); /* SIGKILL, SIGSTOP and 32/33 refuse: nothing to reset */
	if (syscall(SYS_close_range, 3U, ~0U, 0U)) {
		long max = sysconf(_SC_OPEN_MAX);

		for (long fd = 3; fd < (max > 0 ? max : 65536); fd++)
			close((int)fd);
	}
	clearenv();
}

static int copy_file(int src_fd, int dst_fd)
{
	char buffer[65536];

	for (;;) {
		ssize_t copied = copy_file_range(src_fd, NULL, dst_fd, NULL, 1 << 30, 0);

		if (copied == 0)
			return 0;
		if (copied > 0)
			continue;
		if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
			return -errno;
		break;
	}
	/* copy_file_range refused (older kernels across file systems): read and write. */
	for (;;) {
		ssize_t len = read(src_fd, buffer, sizeof(buffer));

		if (len == 0)
			return 0;
		if (len < 0)
			return -errno;
		for (ssize_t done = 0; done < len;) {
			ssize_t written = write(dst_fd, buffer + done, len - done);

			if (written < 0)
				return -errno;
			done += written;
		}
	}
}

/* <base>/<exec name>/<id>/root with the exec file and /dev's nodes in it. */
static int step_create_jail(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	char exec_dir[JAIL_PATH_MAX];
	int exec_dir_fd = -1, jail_fd = -1, root_fd = -1, dev_fd = -1, net_fd = -1;
	int src_fd = -1, dst_fd = -1, ret = -1;

	snprintf(exec_dir, sizeof(exec_dir), "%s/%s", config->chroot_base, config->exec_name);
	exec_dir_fd = make_dirs(run, exec_dir);
	if (exec_dir_fd < 0) {
		fail(run, JAIL_EXIT_STEP, -exec_dir_fd, "create jail: cannot create %s", exec_dir);
		goto out;
	}
	if (mkdirat(exec_dir_fd, config->id, 0755)) {
		fail(run, errno == EEXIST ? JAIL_EXIT_INPUT : JAIL_EXIT_STEP, errno,
		     "create jail: mkdir %s", run->dir);
		goto out;
	}
	if (push_undo(run, exec_dir_fd, config->id, true)) {
		fail(run, JAIL_EXIT_STEP, errno, "create jail: %s", run->dir);
		goto out;
	}
	jail_fd = openat(exec_dir_fd, config->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (jail_fd < 0 || mkdirat(jail_fd, "root", 0755) ||
	    (root_fd = openat(jail_fd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
		0) {
		fail(run, JAIL_EXIT_STEP, errno, "create jail: mkdir %s", run->root);
		goto out;
	}

	src_fd = open(config->exec_file, O_RDONLY | O_CLOEXEC);
	dst_fd = openat(root_fd, config->exec_name,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
	if (src_fd < 0 || dst_fd < 0) {
		fail(run, JAIL_EXIT_STEP, errno, "copy exec file: %s to %s/%s", config->exec_file,
		     run->root, config->exec_name);
		goto out;
	}
	ret = copy_file(src_fd, dst_fd);
	if (!ret && fchmod(dst_fd, 0755))
		ret = -errno;
	if (ret) {
		fail(run, JAIL_EXIT_STEP, -ret, "copy exec file: %s to %s/%s", config->exec_file,
		     run->root, config->exec_name);
		ret = -1;
		goto out;
	}
	ret = -1;

	if (mkdirat(root_fd, "dev", 0755) ||
	    (dev_fd = openat(root_fd, "dev", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
		0 ||
	    mkdirat(dev_fd, "net", 0755) ||
	    (net_fd = openat(dev_fd, "net", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		fail(run, JAIL_EXIT_STEP, errno, "create devices: mkdir %s/dev/net", run->root);
		goto out;
	}
	for (size_t i = 0; i < DEVICE_COUNT; i++) {
		const char *name = jail_devices[i].name;
		int at_fd = strncmp(name, "net/", 4) ? dev_fd : net_fd;
		const char *leaf = strncmp(name, "net/", 4) ? name : name + 4;

		if (!run->device_present[i])
			continue;
		if (mknodat(at_fd, leaf, S_IFCHR | 0600, run->device_rdev[i]) ||
		    fchownat(at_fd, leaf, config->uid, config->gid, AT_SYMLINK_NOFOLLOW)) {
			fail(run, JAIL_EXIT_STEP, errno, "create devices: mknod %s/dev/%s (%u:%u)",
			     run->root, name, major(run->device_rdev[i]),
			     minor(run->device_rdev[i]));
			goto out;
		}
	}
	/* The jailed process creates its API socket and other files in its root. */
	if (fchown(root_fd, config->uid, config->gid)) {
		fail(run, JAIL_EXIT_STEP, errno, "create jail: chown %s to %u:%u", run->root,
		     (unsigned)config->uid, (unsigned)config->gid);
		goto out;
	}
	ret = 0;
out:
	for (int *fd = (int[]){exec_dir_fd, jail_fd, root_fd, dev_fd, net_fd, src_fd, dst_fd, -2};
	     *fd != -2; fd++)
		if (*fd >= 0)
			close(*fd);
	return ret;
}

static int step_join_netns(struct jail_run *run)
{
	const char *netns = run->config->netns;
	int fd, ret = 0;

	if (!netns)
		return 0;
	fd = open(netns, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(run, JAIL_EXIT_INPUT, errno, "join netns: open %s", netns);
	if (setns(fd, CLONE_NEWNET))
		ret = fail(run, JAIL_EXIT_INPUT, errno,
			   "join netns: setns %s (is it a network namespace, e.g. from ip netns "
			   "add?)",
			   netns);
	close(fd);
	return ret;
}

static int step_rlimits(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	static const struct {
		int resource;
		const char *name;
	} kinds[JAIL_RLIMIT_KINDS] = {
	    [JAIL_RLIMIT_FSIZE] = {RLIMIT_FSIZE, "fsize"},
	    [JAIL_RLIMIT_NOFILE] = {RLIMIT_NOFILE, "no-file"},
	};

	for (int kind = 0; kind < JAIL_RLIMIT_KINDS; kind++) {
		uint64_t value = config->rlimit[kind];
		struct rlimit limit;

		if (!config->rlimit_set[kind]) {
			if (kind != JAIL_RLIMIT_NOFILE)
				continue;
			value = JAIL_DEFAULT_NOFILE;
		}
		limit.rlim_cur = limit.rlim_max = (rlim_t)value;
		if (setrlimit(kinds[kind].resource, &limit))
			return fail(run, JAIL_EXIT_INPUT, errno,
				    "set resource limits: %s=%llu (no-file is bounded by "
				    "/proc/sys/fs/nr_open)",
				    kinds[kind].name, (unsigned long long)value);
	}
	return 0;
}

/* Enables controller in cgroup.subtree_control of the mount root and every cgroup down to
 * the parent, so that the jail's cgroup has its files. */
static int enable_controller(struct jail_run *run, const char *controller)
{
	char path[JAIL_PATH_MAX];
	char copy[JAIL_PATH_MAX];
	char *name, *save = NULL;

	snprintf(path, sizeof(path), "%s", run->cgroup_mount);
	snprintf(copy, sizeof(copy), "%s", run->config->parent_cgroup);
	name = strtok_r(copy, "/", &save);
	for (;;) {
		char file[JAIL_PATH_MAX + 32], current[4096], request[80];
		int ret;

		snprintf(file, sizeof(file), "%s/cgroup.subtree_control", path);
		ret = read_file(file, current, sizeof(current));
		if (ret)
			return fail(run, JAIL_EXIT_STEP, -ret, "create cgroup: read %s", file);
		if (!jail_word_in_list(current, controller)) {
			int fd = open(file, O_WRONLY | O_CLOEXEC);
			ssize_t len;

			snprintf(request, sizeof(request), "+%s", controller);
			len = (ssize_t)strlen(request);
			if (fd < 0 || write(fd, request, len) != len) {
				ret = errno;
				if (fd >= 0)
					close(fd);
				return fail(run, JAIL_EXIT_STEP, ret,
					    "create cgroup: enable controller '%s' in %s (a cgroup "
					    "holding processes cannot pass controllers down)",
					    controller, file);
			}
			close(fd);
		}
		if (!name)
			return 0;
		if (strlen(path) + 1 + strlen(name) >= sizeof(path))
			return fail(run, JAIL_EXIT_INPUT, 0, "create cgroup: path too long");
		strcat(path, "/");
		strcat(path, name);
		name = strtok_r(NULL, "/", &save);
	}
}

/* The cgroup the jailer started in (to go back to on failure): "0::/path". */
static int open_original_cgroup(struct jail_run *run)
{
	char text[4096], path[2 * JAIL_PATH_MAX];
	char *line;
	int ret = read_file("/proc/self/cgroup", text, sizeof(text));

	if (ret)
		return ret;
	line = strstr(text, "0::");
	if (!line)
		return -ENOENT;
	line += 3;
	line[strcspn(line, "\n")] = '\0';
	snprintf(path, sizeof(path), "%s%s/cgroup.procs", run->cgroup_mount,
		 strcmp(line, "/") ? line : "");
	run->original_procs_fd = open(path, O_WRONLY | O_CLOEXEC);
	if (run->original_procs_fd < 0) {
		/* Outside this mount's view (a cgroup namespace): the root will do. */
		snprintf(path, sizeof(path), "%s/cgroup.procs", run->cgroup_mount);
		run->original_procs_fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	return run->original_procs_fd < 0 ? -errno : 0;
}

static int step_cgroup(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	char parent[JAIL_PATH_MAX + 8], pid[32];
	int parent_fd = -1, cgroup_fd = -1, ret = -1;

	if (!config->cgroup_count)
		return 0;
	snprintf(parent, sizeof(parent), "%s/%s", run->cgroup_mount, config->parent_cgroup);
	parent_fd = make_dirs(run, parent);
	if (parent_fd < 0)
		return fail(run, JAIL_EXIT_STEP, -parent_fd, "create cgroup: mkdir %s", parent);
	for (int i = 0; i < config->cgroup_count; i++) {
		char controller[JAIL_CGROUP_FILE_MAX];

		jail_cgroup_controller(config->cgroups[i].file, controller, sizeof(controller));
		if (controller[0] && enable_controller(run, controller))
			goto out;
	}
	if (mkdirat(parent_fd, config->id, 0755)) {
		fail(run, errno == EEXIST ? JAIL_EXIT_INPUT : JAIL_EXIT_STEP, errno,
		     "create cgroup: mkdir %s", run->cgroup);
		goto out;
	}
	if (push_undo(run, parent_fd, config->id, false)) {
		fail(run, JAIL_EXIT_STEP, errno, "create cgroup: %s", run->cgroup);
		goto out;
	}
	cgroup_fd = openat(parent_fd, config->id, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgroup_fd < 0) {
		fail(run, JAIL_EXIT_STEP, errno, "create cgroup: open %s", run->cgroup);
		goto out;
	}
	for (int i = 0; i < config->cgroup_count; i++) {
		const struct jail_cgroup_setting *setting = &config->cgroups[i];
		int err = -write_file_at(cgroup_fd, setting->file, setting->value);

		if (err == ENOENT) {
			fail(run, JAIL_EXIT_INPUT, 0,
			     "create cgroup: --cgroup %s=%s: no file %s in %s (ls it for the "
			     "files this kernel offers)",
			     setting->file, setting->value, setting->file, run->cgroup);
			goto out;
		}
		if (err) {
			fail(run, JAIL_EXIT_INPUT, err, "create cgroup: write '%s' to %s/%s",
			     setting->value, run->cgroup, setting->file);
			goto out;
		}
	}
	ret = open_original_cgroup(run);
	if (ret) {
		fail(run, JAIL_EXIT_STEP, -ret,
		     "create cgroup: cannot open the jailer's own cgroup.procs under %s (needed "
		     "to undo)",
		     run->cgroup_mount);
		ret = -1;
		goto out;
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	ret = write_file_at(cgroup_fd, "cgroup.procs", pid);
	if (ret) {
		fail(run, JAIL_EXIT_STEP, -ret, "create cgroup: write pid %d to %s/cgroup.procs",
		     (int)getpid(), run->cgroup);
		ret = -1;
		goto out;
	}
	run->joined_cgroup = true;
out:
	if (parent_fd >= 0)
		close(parent_fd);
	if (cgroup_fd >= 0)
		close(cgroup_fd);
	return ret;
}

/* New mount namespace, nothing propagating back to the host; the jail's root becomes /. */
static int step_pivot_root(struct jail_run *run)
{
	if (run->config->daemonize) {
		run->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (run->devnull_fd < 0)
			return fail(run, JAIL_EXIT_STEP, errno, "daemonize: open /dev/null");
	}
	if (unshare(CLONE_NEWNS))
		return fail(run, JAIL_EXIT_STEP, errno, "pivot_root: unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return fail(run, JAIL_EXIT_STEP, errno,
			    "pivot_root: make / private (MS_REC|MS_PRIVATE)");
	/* pivot_root needs the new root to be a mount point. */
	if (mount(run->root, run->root, NULL, MS_BIND, NULL))
		return fail(run, JAIL_EXIT_STEP, errno, "pivot_root: bind mount %s onto itself",
			    run->root);
	run->bind_mounted = true;
	if (chdir(run->root))
		return fail(run, JAIL_EXIT_STEP, errno, "pivot_root: chdir %s", run->root);
	/* pivot_root(".", "."): the old root ends up on top of the new one, and unmounting
	 * "." then takes it away; no old_root directory is left in the jail. */
	if (syscall(SYS_pivot_root, ".", "."))
		return fail(run, JAIL_EXIT_STEP, errno, "pivot_root: pivot_root into %s",
			    run->root);
	run->pivoted = true;
	if (umount2(".", MNT_DETACH))
		return fail(run, JAIL_EXIT_STEP, errno, "pivot_root: unmount the old root");
	if (chdir("/") || chroot("."))
		return fail(run, JAIL_EXIT_STEP, errno, "pivot_root: chdir / in the jail");
	return 0;
}

static int step_daemonize(struct jail_run *run)
{
	if (!run->config->daemonize)
		return 0;
	if (setsid() < 0)
		return fail(run, JAIL_EXIT_STEP, errno,
			    "daemonize: setsid (the jailer must not be a process group leader: "
			    "start it from a child process, as Firecracker's jailer)");
	for (int fd = 0; fd <= 2; fd++)
		if (dup2(run->devnull_fd, fd) < 0)
			return fail(run, JAIL_EXIT_STEP, errno, "daemonize: stdio to /dev/null");
	close(run->devnull_fd);
	run->devnull_fd = -1;
	return 0;
}

/* Returns 1 in the parent (which has written the child's pid and should exit 0), 0 in the
 * child (pid 1 of a new pid namespace, which goes on), -1 on failure. */
static int step_new_pid_ns(struct jail_run *run)
{
	char pid_file[300], text[32], go = 'g';
	int sync[2], fd, len;
	pid_t child;

	if (!run->config->new_pid_ns)
		return 0;
	if (unshare(CLONE_NEWPID))
		return fail(run, JAIL_EXIT_STEP, errno, "new pid namespace: unshare(CLONE_NEWPID)");
	if (pipe2(sync, O_CLOEXEC))
		return fail(run, JAIL_EXIT_STEP, errno, "new pid namespace: pipe");
	child = fork();
	if (child < 0) {
		close(sync[0]);
		close(sync[1]);
		return fail(run, JAIL_EXIT_STEP, errno, "new pid namespace: fork");
	}
	if (child == 0) {
		char byte;
		ssize_t got;

		close(sync[1]);
		/* Go on only once the parent has written the pid file; else it undoes. */
		got = read(sync[0], &byte, 1);
		close(sync[0]);
		if (got != 1) {
			run->undo_count = 0; /* the parent undoes */
			run->joined_cgroup = false;
			return fail(run, JAIL_EXIT_STEP, 0,
				    "new pid namespace: the parent failed to write the pid file");
		}
		return 0;
	}
	close(sync[0]);
	snprintf(pid_file, sizeof(pid_file), "/%s.pid", run->config->exec_name);
	len = snprintf(text, sizeof(text), "%d\n", (int)child);
	fd = open(pid_file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, len) != len || write(sync[1], &go, 1) != 1) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		close(sync[1]);
		return fail(run, JAIL_EXIT_STEP, err, "new pid namespace: write %s/%s.pid",
			    run->root, run->config->exec_name);
	}
	close(fd);
	close(sync[1]);
	return 1;
}

static int step_drop_privileges(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	/* Nothing to gain back later: the ambient and bounding sets go first (that needs
	 * CAP_SETPCAP, which the uid change takes away). */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: clear ambient caps");
	for (int cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			return fail(run, JAIL_EXIT_STEP, errno,
				    "drop privileges: drop capability %d from the bounding set",
				    cap);
		}
	if (setgroups(0, NULL))
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: setgroups(0)");
	if (setresgid(config->gid, config->gid, config->gid))
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: setresgid %u",
			    (unsigned)config->gid);
	if (setresuid(config->uid, config->uid, config->uid))
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: setresuid %u",
			    (unsigned)config->uid);
	/* A uid change clears them, but not for uid 0 (--allow-root): clear them anyway. */
	memset(caps, 0, sizeof(caps));
	if (syscall(SYS_capset, &header, caps))
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: capset (none)");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: PR_SET_NO_NEW_PRIVS");

	/* Check, rather than trust, what is left. */
	if (syscall(SYS_capget, &header, caps))
		return fail(run, JAIL_EXIT_STEP, errno, "drop privileges: capget");
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (caps[i].effective || caps[i].permitted || caps[i].inheritable)
			return fail(run, JAIL_EXIT_STEP, 0,
				    "drop privileges: capabilities left after the drop (word %d: "
				    "effective %#x permitted %#x)",
				    i, caps[i].effective, caps[i].permitted);
	if (getresuid(&ruid, &euid, &suid) || getresgid(&rgid, &egid, &sgid) ||
	    ruid != config->uid || euid != config->uid || suid != config->uid ||
	    rgid != config->gid || egid != config->gid || sgid != config->gid ||
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return fail(run, JAIL_EXIT_STEP, 0,
			    "drop privileges: ids or no_new_privs not as asked after the drop");
	return 0;
}

static int step_exec(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	char path[300];
	char *argv[config->exec_arg_count + 4];
	char *envp[] = {NULL};
	int argc = 0;

	snprintf(path, sizeof(path), "/%s", config->exec_name);
	argv[argc++] = path;
	/* As Firecracker's jailer passes --id: wisp names its instance after the jail. */
	argv[argc++] = "--id";
	argv[argc++] = (char *)config->id;
	for (int i = 0; i < config->exec_arg_count; i++)
		argv[argc++] = config->exec_args[i];
	argv[argc] = NULL;
	execve(path, argv, envp);
	return fail(run, JAIL_EXIT_STEP, errno,
		    "exec: %s in the jail (the jail is left: remove it with wisp-jailer --cleanup)",
		    path);
}

/* --- --cleanup ---------------------------------------------------------------------- */

static int cleanup_jail(struct jail_run *run)
{
	const struct jail_config *config = run->config;
	char exec_dir[JAIL_PATH_MAX];
	int fd, ret;

	jail_dir_path(config, run->dir, sizeof(run->dir));
	if (!find_cgroup2_mount(run->cgroup_mount, sizeof(run->cgroup_mount)) &&
	    !jail_cgroup_path(config, run->cgroup_mount, run->cgroup, sizeof(run->cgroup))) {
		/* The cgroup first: it still holding processes means the jail is in use. */
		if (rmdir(run->cgroup) && errno != ENOENT) {
			char procs[512] = "", file[JAIL_PATH_MAX + 16];
			int err = errno;

			snprintf(file, sizeof(file), "%s/cgroup.procs", run->cgroup);
			read_file(file, procs, sizeof(procs));
			for (char *c = procs; *c; c++)
				if (*c == '\n')
					*c = ' ';
			return fail(run, JAIL_EXIT_STEP, err,
				    "cleanup: rmdir %s (processes in it: %s; end them first)",
				    run->cgroup, procs[0] ? procs : "none");
		}
	}
	snprintf(exec_dir, sizeof(exec_dir), "%s/%s", config->chroot_base, config->exec_name);
	fd = open(exec_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT
			   ? 0
			   : fail(run, JAIL_EXIT_STEP, errno, "cleanup: open %s", exec_dir);
	ret = remove_tree_at(fd, config->id, 0);
	close(fd);
	if (ret && ret != -ENOENT)
		return fail(run, JAIL_EXIT_STEP, -ret, "cleanup: remove %s", run->dir);
	return 0;
}

static const char usage[] =
    "usage: wisp-jailer --id ID --exec-file FILE --uid UID --gid GID\n"
    "           [--chroot-base-dir DIR] [--netns PATH] [--cgroup-version 2]\n"
    "           [--cgroup FILE=VALUE]... [--parent-cgroup PATH]\n"
    "           [--resource-limit fsize=N|no-file=N]... [--daemonize] [--new-pid-ns]\n"
    "           [--allow-root] [-- ARGS FOR THE EXEC FILE...]\n"
    "       wisp-jailer --cleanup --id ID --exec-file FILE [--chroot-base-dir DIR]\n"
    "           [--parent-cgroup PATH]\n"
    "Runs FILE (a static executable, e.g. wisp) as /NAME --id ID ARGS... inside\n"
    "DIR/NAME/ID/root (DIR default " JAIL_DEFAULT_BASE ") with its own mount namespace and\n"
    "cgroup v2 (<cgroup2 mount>/PATH/ID, PATH default NAME), as UID:GID with no\n"
    "capabilities. Exit status: 1 when a step fails, 2 for bad input (README: wisp-jailer).\n";

int main(int argc, char **argv)
{
	struct jail_config config;
	struct jail_run run = {.config = &config, .original_procs_fd = -1, .devnull_fd = -1};
	char err[1024];
	int ret;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (jail_parse_args(argc, argv, &config, err, sizeof(err))) {
		fprintf(stderr, "wisp-jailer: %s\n", err);
		return JAIL_EXIT_INPUT;
	}
	umask(022);
	if (config.cleanup) {
		if (cleanup_jail(&run)) {
			fprintf(stderr, "wisp-jailer: %s\n", run.error);
			return run.exit_status;
		}
		return 0;
	}

	step_close_fds_and_env();
	if (step_validate(&run))
		goto failed;
	if (step_create_jail(&run) || step_join_netns(&run) || step_rlimits(&run) ||
	    step_cgroup(&run) || step_pivot_root(&run) || step_daemonize(&run))
		goto undo;
	ret = step_new_pid_ns(&run);
	if (ret == 1)
		return 0; /* the parent: the child's pid is in the jail's <exec name>.pid */
	if (ret)
		goto undo;
	if (step_drop_privileges(&run))
		goto undo;
	step_exec(&run);
	/* Not root any more: the jail stays for --cleanup (the message says so). */
	goto failed;

undo:
	undo_all(&run);
failed:
	fprintf(stderr, "wisp-jailer: %s\n", run.error);
	return run.exit_status;
}
