/* wisp-jailer's command line and the checks and paths built from it: pure code (no system
 * calls), unit tested in tests/unit/test_jailer.c. jailer.c does the work. */
#ifndef WISP_JAIL_CONFIG_H
#define WISP_JAIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define JAIL_ID_MAX	      64
#define JAIL_PATH_MAX	      4096
#define JAIL_CGROUPS_MAX      32
#define JAIL_CGROUP_FILE_MAX  64
#define JAIL_CGROUP_VALUE_MAX 256
#define JAIL_DEFAULT_BASE     "/srv/jailer"
/* Firecracker's jailer bounds no-file to 2048 when no --resource-limit names it. */
#define JAIL_DEFAULT_NOFILE 2048

/* Exit statuses: 0 never (the jailer becomes the exec file; --cleanup and the parent of
 * --new-pid-ns exit 0), JAIL_EXIT_STEP when a host step fails, JAIL_EXIT_INPUT for bad
 * input (arguments, id, paths, exec file, a jail that already exists, a cgroup file). */
#define JAIL_EXIT_STEP	1
#define JAIL_EXIT_INPUT 2

enum jail_rlimit_kind {
	JAIL_RLIMIT_FSIZE,
	JAIL_RLIMIT_NOFILE,
	JAIL_RLIMIT_KINDS,
};

struct jail_cgroup_setting {
	char file[JAIL_CGROUP_FILE_MAX];   /* e.g. "pids.max" */
	char value[JAIL_CGROUP_VALUE_MAX]; /* written as given */
};

struct jail_config {
	bool cleanup; /* --cleanup: remove the jail and its cgroup, run nothing */
	char id[JAIL_ID_MAX + 1];
	const char *exec_file;
	char exec_name[256]; /* the exec file's last path component */
	bool have_uid, have_gid;
	uid_t uid;
	gid_t gid;
	bool allow_root; /* --allow-root: uid or gid 0 accepted */
	const char *chroot_base;
	const char *netns;
	int cgroup_version;
	const char *parent_cgroup; /* relative to the cgroup2 mount; default exec_name */
	struct jail_cgroup_setting cgroups[JAIL_CGROUPS_MAX];
	int cgroup_count;
	bool rlimit_set[JAIL_RLIMIT_KINDS];
	uint64_t rlimit[JAIL_RLIMIT_KINDS];
	bool daemonize;
	bool new_pid_ns;
	char **exec_args; /* what follows "--" */
	int exec_arg_count;
};

/* Parses argv into config (argv is not modified; exec_args points into it). Returns 0 or
 * -EINVAL with a message in err naming the option and the value. */
int jail_parse_args(int argc, char **argv, struct jail_config *config, char *err, size_t err_size);

/* 0 when id is 1 to 64 letters, digits and dashes (Firecracker's rule), else -EINVAL. */
int jail_check_id(const char *id);
/* 0 when path is absolute with no "." or ".." component and no empty one, else -EINVAL. */
int jail_check_absolute_path(const char *path);
/* 0 when path is relative, made of 1 or more names of [A-Za-z0-9_.-] that are not "." or
 * "..", separated by single slashes, else -EINVAL (the --parent-cgroup rule). */
int jail_check_relative_path(const char *path);
/* Parses "FILE=VALUE" for --cgroup: FILE is CONTROLLER.NAME of letters, digits, '_' and
 * '.' (the controller in lower case), not one of the files the jailer itself manages (cgroup.procs,
 * cgroup.threads, cgroup.subtree_control); VALUE is 1 or more printable characters. */
int jail_parse_cgroup(const char *arg, struct jail_cgroup_setting *setting);
/* The controller a cgroup file belongs to ("pids" for "pids.max"), or "" for the core
 * "cgroup.*" files that need none. Writes at most size bytes. */
void jail_cgroup_controller(const char *file, char *controller, size_t size);
/* Parses "fsize=N" or "no-file=N" (N decimal, 0 to 2^63-1). */
int jail_parse_rlimit(const char *arg, enum jail_rlimit_kind *kind, uint64_t *value);
/* Parses a decimal uid or gid (0 to 2^32-2: -1 means "unchanged" to the kernel). */
int jail_parse_id_number(const char *arg, uint32_t *value);

/* <base>/<exec name>/<id> and its "root" below: -ENAMETOOLONG when they do not fit. */
int jail_dir_path(const struct jail_config *config, char *out, size_t size);
int jail_root_path(const struct jail_config *config, char *out, size_t size);
/* <mount>/<parent cgroup>/<id> */
int jail_cgroup_path(const struct jail_config *config, const char *cgroup_mount, char *out,
		     size_t size);

/* Whether `word` is one of the space-separated words in `list` (cgroup.controllers). */
bool jail_word_in_list(const char *list, const char *word);

#endif
