/*
 * wispctl's pure logic (no processes, sockets or files): its command line, the names of
 * every clone's files and TAP, the checks on a request, and the parsers of what it reads
 * (an HTTP response head, /proc files). tests/unit/test_wispctl.c tests it; wispctl.c does
 * the rest.
 */
#ifndef WISPCTL_LIB_H
#define WISPCTL_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WISPCTL_DEFAULT_STATE_DIR   "/tmp/wispctl"
#define WISPCTL_DEFAULT_TAP_PATTERN "wtap%d"
#define WISPCTL_DEFAULT_MEM_MIB	    128
#define WISPCTL_DEFAULT_TIMEOUT_S   120
#define WISPCTL_DEFAULT_MIN_AVAIL   256	 /* MiB of MemAvailable below which clone stops */
#define WISPCTL_REQUEST_MAX	    1000 /* bytes of one request line */
#define WISPCTL_PATH_MAX	    4096
#define WISPCTL_ID_MAX		    32
#define WISPCTL_IFNAME_MAX	    16	/* IFNAMSIZ, with the NUL */
#define WISPCTL_SUN_PATH_MAX	    108 /* sizeof(sockaddr_un.sun_path), with the NUL */

/* What the guest prints: the function server's warm marker and the prefix of its answers. */
#define WISPCTL_WARM_MARKER  "wispctl-fn: warm"
#define WISPCTL_REPLY_PREFIX "wispctl-fn: reply "

/* The files in a snapshot directory. */
#define WISPCTL_SNAP_STATE "vm.state"
#define WISPCTL_SNAP_MEM   "vm.mem"
#define WISPCTL_SNAP_META  "wispctl.json"

enum wispctl_command {
	WISPCTL_NONE,
	WISPCTL_SNAPSHOT,
	WISPCTL_CLONE,
	WISPCTL_INVOKE,
	WISPCTL_BALLOON,
	WISPCTL_LS,
	WISPCTL_REAP,
	WISPCTL_HELP,
};

struct wispctl_args {
	enum wispctl_command command;
	char state_dir[WISPCTL_PATH_MAX];
	char wisp[WISPCTL_PATH_MAX]; /* --wisp, else $WISP_BIN, else beside wispctl */
	unsigned timeout_s;	     /* --timeout: boot to warm, one invocation */
	/* snapshot */
	const char *kernel, *initrd, *rootfs, *cmdline, *out_dir, *warm_marker;
	unsigned mem_mib, vcpus;
	bool net;	 /* --net: the VM gets eth0 (on a TAP), clones get their own */
	int balloon_mib; /* --balloon MIB: a balloon device at that size; -1: none */
	/* clone */
	const char *snapshot_dir;
	unsigned count, parallel;
	char tap_pattern[WISPCTL_IFNAME_MAX];
	bool jail;
	unsigned min_avail_mib; /* --min-available */
	/* invoke, balloon, reap: one clone or --all */
	const char *id;
	bool all;
	const char *request;
	unsigned amount_mib;
};

/*
 * Parses wispctl's command line (argv[0] is the program). Fills *args with defaults first;
 * getenv_fn (getenv in wispctl, a stub in tests) gives $WISPCTL_STATE_DIR and $WISP_BIN.
 * Returns 0 or -EINVAL with a message in err naming the option and its value.
 */
int wispctl_parse_args(int argc, char **argv, struct wispctl_args *args,
		       const char *(*getenv_fn)(const char *), char *err, size_t err_size);

/* The usage text (wispctl --help). */
const char *wispctl_usage(void);

/*
 * A TAP pattern holds exactly one %d (and no other %, "%%" excepted) and, for every
 * number up to 999999, names an interface that fits IFNAMSIZ. Returns 0 or -EINVAL.
 */
int wispctl_check_tap_pattern(const char *pattern, char *err, size_t err_size);
/* The pattern with `number` in it. Returns 0 or -ENAMETOOLONG. */
int wispctl_tap_name(const char *pattern, unsigned number, char *out, size_t size);

/* A clone's id: "c<number>". */
void wispctl_clone_id(unsigned number, char *out, size_t size);
/* The number in a clone's id, or -EINVAL for anything else ("c7" -> 7; "c", "c07", "x1"
 * are not ids). */
int wispctl_parse_clone_id(const char *id, unsigned *number);

/* The files of one clone, all in <state>/clones/<id>/ (README "wispctl"). */
enum wispctl_clone_file {
	WISPCTL_FILE_DIR,	  /* the clone's directory */
	WISPCTL_FILE_SOCKET,	  /* api.sock: wisp's API socket */
	WISPCTL_FILE_CONSOLE_IN,  /* console.in: FIFO, wisp's stdin (the serial input) */
	WISPCTL_FILE_CONSOLE_LOG, /* console.log: wisp's stdout (the serial output) */
	WISPCTL_FILE_STDERR,	  /* wisp.stderr: wisp's own messages */
	WISPCTL_FILE_INFO,	  /* info.json: pid, start time, TAP, snapshot */
	WISPCTL_FILE_LOCK,	  /* invoke.lock: one invocation at a time */
};
/* The path of one of them; -ENAMETOOLONG when it does not fit (the socket: its 108
 * bytes of sun_path). */
int wispctl_clone_path(const char *state_dir, const char *id, enum wispctl_clone_file file,
		       char *out, size_t size);

/*
 * clone --jail (README "wispctl"): clone cN runs through wisp-jailer as uid
 * WISPCTL_JAIL_UID_BASE + N (each clone its own user) and gid WISPCTL_JAIL_GID (shared:
 * the group that may read the snapshot files every jail links to), in
 * <state>/jails/<wisp's file name>/<id>/root, its cgroup <parent>/<id> with
 * WISPCTL_JAIL_PIDS_MAX tasks at most.
 */
#define WISPCTL_JAIL_UID_BASE 900000u
#define WISPCTL_JAIL_GID      900000u
#define WISPCTL_JAIL_PIDS_MAX 128
/* <state>/jails: the jailer's --chroot-base-dir. -ENAMETOOLONG when it does not fit. */
int wispctl_jail_base(const char *state_dir, char *out, size_t size);
/* A clone's jail root, <state>/jails/<exec_name>/<id>/root, and in it the API socket
 * (root + "/api.sock", which must fit sun_path). -ENAMETOOLONG when they do not fit. */
int wispctl_jail_root(const char *state_dir, const char *exec_name, const char *id, char *out,
		      size_t size);
int wispctl_jail_socket(const char *state_dir, const char *exec_name, const char *id, char *out,
			size_t size);
/* The parent cgroup of one state directory's jails: "wispctl-" and 8 hex digits of a hash
 * of its path, so that two state directories' clones (both have a c0) never share a
 * cgroup. */
void wispctl_jail_parent_cgroup(const char *state_dir, char *out, size_t size);

/* Whether text (e.g. cgroup.controllers) holds word as a whole blank-separated word. */
bool wispctl_has_word(const char *text, const char *word);

/* A request: 1 to WISPCTL_REQUEST_MAX printable ASCII characters (no newline or control
 * character, which the guest's terminal would interpret). Returns 0 or -EINVAL. */
int wispctl_check_request(const char *request, char *err, size_t err_size);

/*
 * An HTTP/1.1 response head in buf[0..len): *status, *content_length (0 if absent) and
 * *head_len (up to and including the blank line). Returns 0, -EAGAIN while the head is
 * incomplete, -EINVAL when it is not a response.
 */
int wispctl_parse_http_head(const char *buf, size_t len, int *status, size_t *content_length,
			    size_t *head_len);

/* The value in kB of `key` ("Pss:", "MemAvailable:") in a /proc file's text: -ENOENT
 * when it is missing. */
int wispctl_proc_kb(const char *text, const char *key, uint64_t *kb);

/* The first line of text starting with `prefix` at or after a line start; the rest of
 * that line (without \r\n) into out. Returns 0, -EAGAIN when no complete such line yet. */
int wispctl_find_line(const char *text, size_t len, const char *prefix, char *out, size_t size);

#endif
