/* Per-thread seccomp filters (README "Seccomp"): one allow-list per thread kind, compiled to
 * classic BPF with libseccomp (or read from a --seccomp-filter file), installed by each
 * thread itself before it runs guest code, touches guest memory or reads a request byte. */
#ifndef WISP_SECCOMP_FILTER_H
#define WISP_SECCOMP_FILTER_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>

enum seccomp_thread_kind {
	SECCOMP_THREAD_VMM,  /* the event loop: devices, io_uring, snapshots, balloon */
	SECCOMP_THREAD_API,  /* api/server.c: HTTP on the API socket */
	SECCOMP_THREAD_VCPU, /* vmm/vcpu.c: KVM_RUN and the exits it hands to the buses */
	SECCOMP_THREAD_KINDS
};

/* A forbidden system call ends wisp with this status, as Firecracker's does. */
#define SECCOMP_EXIT_STATUS 148

/* One compiled BPF program (struct sock_filter as the kernel takes it). */
struct seccomp_program {
	struct sock_filter *insns;
	uint32_t len;
};

struct seccomp_programs {
	struct seccomp_program kinds[SECCOMP_THREAD_KINDS];
};

/*
 * The filter file (--seccomp-filter, `wisp seccomp-filter-dump`), host byte order:
 *   8 bytes  "WISPBPF1"
 *   then one section per thread kind, each kind exactly once, in any order:
 *     8 bytes  the kind's name, NUL-padded: "vmm", "api" or "vcpu"
 *     4 bytes  n, the number of instructions (1 to SECCOMP_FILE_MAX_INSNS)
 *     4 bytes  zero
 *     n * 8    struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
 *   and nothing after the last section.
 */
#define SECCOMP_FILE_MAGIC     "WISPBPF1"
#define SECCOMP_FILE_MAX_INSNS 4096 /* BPF_MAXINSNS */
#define SECCOMP_FILE_MAX_SIZE                                                                      \
	(8 + SECCOMP_THREAD_KINDS * (16 + SECCOMP_FILE_MAX_INSNS * sizeof(struct sock_filter)))

/* System call numbers the SIGSYS log line can name. */
#define SECCOMP_SYSCALL_NAMES 512

/* wisp's default filters as a filter file, and the names for the SIGSYS line, made at
 * build time by vmm/tools/seccomp_embed.c with seccomp_build_default (build/gen/
 * seccomp_embedded.c, linked into wisp only): nothing is compiled when wisp starts. */
extern const uint8_t seccomp_embedded_filter[];
extern const size_t seccomp_embedded_filter_len;
extern const char *const seccomp_embedded_syscall_names[SECCOMP_SYSCALL_NAMES];

/* "vmm", "api", "vcpu". */
const char *seccomp_thread_kind_name(enum seccomp_thread_kind kind);

/* wisp's own allow-lists, compiled with libseccomp (the default filters). */
int seccomp_build_default(struct seccomp_programs *out);
/* The default filters as a filter file, in *data (malloc'd) and *len; on failure a line
 * on stderr that names `who`. */
int seccomp_default_file(const char *who, uint8_t **data, size_t *len);
/* Parses a filter file; -EINVAL with what is wrong (and where) in err. Pure. */
int seccomp_file_parse(const uint8_t *data, size_t len, struct seccomp_programs *out, char *err,
		       size_t err_size);
/* The filter file holding programs, in *data (malloc'd) and *len. Pure. */
int seccomp_file_format(const struct seccomp_programs *programs, uint8_t **data, size_t *len);
/* Reads and parses a filter file; -errno with the path and the reason in err. */
int seccomp_file_load(const char *path, struct seccomp_programs *out, char *err, size_t err_size);
void seccomp_programs_free(struct seccomp_programs *programs);

/* Process set-up, before any thread starts: takes the programs over (NULL: the filters
 * are off, --no-seccomp, and `names` is not read), installs the SIGSYS handler and keeps
 * `names` (SECCOMP_SYSCALL_NAMES of them, NULL where unknown; static storage, not copied)
 * for its log line. */
int seccomp_prepare(struct seccomp_programs *programs, const char *const *names);
/* In the thread itself: installs its kind's program (nothing when the filters are off). */
int seccomp_enter(enum seccomp_thread_kind kind);

/* `wisp seccomp-filter-dump FILE`: writes the default filters as a filter file. */
int seccomp_dump_main(int argc, char *argv[]);

#endif
