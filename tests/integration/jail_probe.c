/* jail-probe: the exec file test_jailer.py runs under wisp-jailer. It prints, one
 * "key=value" line each, what a jailed process sees from inside (ids, capabilities,
 * no_new_privs, limits, its root and /dev, open fds, environment, arguments), then
 * "ready", and waits for its stdin to close. With "--fork N" it first tries N forks
 * (the children wait too) and prints how many the pids cgroup let through. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

extern char **environ;

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "name,name,..." of a directory, sorted. */
static void print_listing(const char *key, const char *path)
{
	char *names[256];
	int count = 0;
	DIR *dir = opendir(path);
	struct dirent *entry;

	printf("%s=", key);
	if (!dir) {
		printf("error:%s\n", strerror(errno));
		return;
	}
	while ((entry = readdir(dir)) && count < 256)
		if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, ".."))
			names[count++] = strdup(entry->d_name);
	closedir(dir);
	qsort(names, count, sizeof(names[0]), compare_names);
	for (int i = 0; i < count; i++) {
		printf("%s%s", i ? "," : "", names[i]);
		free(names[i]);
	}
	printf("\n");
}

static void print_device(const char *path)
{
	struct stat st;

	if (stat(path, &st)) {
		printf("dev %s=missing\n", path);
		return;
	}
	printf("dev %s=%s %u:%u %u:%u %04o\n", path, S_ISCHR(st.st_mode) ? "char" : "other",
	       major(st.st_rdev), minor(st.st_rdev), (unsigned)st.st_uid, (unsigned)st.st_gid,
	       (unsigned)(st.st_mode & 07777));
}

static void print_limit(const char *key, int resource)
{
	struct rlimit limit;

	if (getrlimit(resource, &limit))
		printf("%s=error\n", key);
	else
		printf("%s=%llu/%llu\n", key, (unsigned long long)limit.rlim_cur,
		       (unsigned long long)limit.rlim_max);
}

int main(int argc, char **argv)
{
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {{0}};
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	char cwd[4096];
	int bounding = 0, env_count = 0, forks = 0;
	pid_t children[64];
	int child_count = 0, fork_failed = 0;
	char buffer[64];

	for (int i = 1; i < argc; i++) {
		printf("arg %d=%s\n", i, argv[i]);
		if (!strcmp(argv[i], "--fork") && i + 1 < argc)
			forks = atoi(argv[i + 1]);
	}
	getresuid(&ruid, &euid, &suid);
	getresgid(&rgid, &egid, &sgid);
	printf("uid=%u,%u,%u\n", (unsigned)ruid, (unsigned)euid, (unsigned)suid);
	printf("gid=%u,%u,%u\n", (unsigned)rgid, (unsigned)egid, (unsigned)sgid);
	printf("groups=%d\n", getgroups(0, NULL));
	if (syscall(SYS_capget, &header, caps))
		printf("caps=error:%s\n", strerror(errno));
	else
		printf("caps=eff:%x%08x prm:%x%08x inh:%x%08x\n", caps[1].effective,
		       caps[0].effective, caps[1].permitted, caps[0].permitted, caps[1].inheritable,
		       caps[0].inheritable);
	for (int cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
			bounding++;
	printf("bounding=%d\n", bounding);
	printf("no_new_privs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	printf("pid=%d\n", (int)getpid());
	printf("cwd=%s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "error");
	print_listing("root", "/");
	print_listing("devdir", "/dev");
	print_device("/dev/kvm");
	print_device("/dev/net/tun");
	print_device("/dev/urandom");
	print_device("/dev/userfaultfd");
	print_limit("nofile", RLIMIT_NOFILE);
	print_limit("fsize", RLIMIT_FSIZE);
	printf("etc_passwd=%s\n", access("/etc/passwd", F_OK) ? strerror(errno) : "visible");
	for (char **env = environ; *env; env++)
		env_count++;
	printf("env=%d\n", env_count);
	printf("fds=");
	for (int fd = 0, first = 1; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0) {
			printf("%s%d", first ? "" : ",", fd);
			first = 0;
		}
	printf("\n");
	/* The jail's root belongs to the jailed user: a file can be made there. */
	{
		int fd = open("/probe-file", O_WRONLY | O_CREAT | O_EXCL, 0600);

		printf("root_writable=%s\n", fd >= 0 ? "yes" : strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	fflush(stdout);

	for (int i = 0; i < forks && i < 64; i++) {
		pid_t child = fork();

		if (child == 0) {
			pause();
			_exit(0);
		}
		if (child < 0)
			fork_failed++;
		else
			children[child_count++] = child;
	}
	if (forks)
		printf("forks=%d ok %d failed\n", child_count, fork_failed);
	printf("ready\n");
	fflush(stdout);
	while (read(0, buffer, sizeof(buffer)) > 0)
		;
	for (int i = 0; i < child_count; i++) {
		kill(children[i], SIGKILL);
		waitpid(children[i], NULL, 0);
	}
	return 0;
}
