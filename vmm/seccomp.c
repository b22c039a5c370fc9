#define _GNU_SOURCE /* memfd_create */
#include "seccomp_filter.h"

#include "log.h"

#include <sys/ioctl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <time.h>
#include <unistd.h>

static const char *const kind_names[SECCOMP_THREAD_KINDS] = {"vmm", "api", "vcpu"};

const char *seccomp_thread_kind_name(enum seccomp_thread_kind kind)
{
	return kind < SECCOMP_THREAD_KINDS ? kind_names[kind] : "unknown";
}

/* ------------------------------------------------------------------------------------ */
/* The allow-lists. An entry with no argument check allows the call with any arguments;
 * several entries for one call allow each of their forms. */

struct allowed_call {
	int nr;
	bool checked; /* arg holds the one comparison this form must pass */
	struct scmp_arg_cmp arg;
};

#define ANY(name)                                                                                  \
	{                                                                                          \
		SCMP_SYS(name), false,                                                             \
		{                                                                                  \
			0                                                                          \
		}                                                                                  \
	}
#define ARG_EQ(name, index, val)                                                                   \
	{                                                                                          \
		SCMP_SYS(name), true, SCMP_CMP(index, SCMP_CMP_EQ, (val), 0)                       \
	}
#define ARG_MASKED(name, index, mask, val)                                                         \
	{                                                                                          \
		SCMP_SYS(name), true, SCMP_CMP(index, SCMP_CMP_MASKED_EQ, (mask), (val))           \
	}
/* mmap/mprotect: never PROT_EXEC (argument 2 in both). */
#define NO_EXEC(name) ARG_MASKED(name, 2, PROT_EXEC, 0)
/* futex: the operation without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME. */
#define ALLOW_FUTEX(op) ARG_MASKED(futex, 1, FUTEX_CMD_MASK & 0xffffffffu, (op))
#define FCNTL_CMD(cmd)	ARG_EQ(fcntl, 1, (cmd))

/* What every thread needs, whatever it does: glibc's allocator, locks, logging, the end. */
static const struct allowed_call common_calls[] = {
    ANY(write),			       /* log lines (one write each), eventfd kicks, the console */
    ALLOW_FUTEX(FUTEX_WAIT),	       /* pthread mutexes, condition variables, rwlocks */
    ALLOW_FUTEX(FUTEX_WAKE),	       /* the same */
    ALLOW_FUTEX(FUTEX_WAIT_BITSET),    /* pthread_cond_timedwait (the console's grace wait) */
    ALLOW_FUTEX(FUTEX_WAKE_BITSET),    /* glibc's wake for those waits */
    NO_EXEC(mmap),		       /* malloc: a thread's arena and large blocks */
    NO_EXEC(mprotect),		       /* malloc: an arena grown in place */
    ANY(munmap),		       /* free() of large blocks and of arena heaps */
    ANY(brk),			       /* malloc's main arena */
    ANY(mremap),		       /* realloc() of a large block */
    ARG_EQ(madvise, 2, MADV_DONTNEED), /* malloc's trimming; the balloon's released pages */
    ANY(clock_gettime),		       /* where the vDSO falls back (nested KVM's clock source),
					* and CLOCK_PROCESS_CPUTIME_ID for the metrics */
    ANY(gettimeofday),		       /* the same fallback */
    ARG_EQ(prctl, 0, PR_GET_NAME),     /* a log line's thread name (log.c) */
    ANY(rt_sigreturn),		       /* the end of a signal handler (vCPU kick, SIGPIPE's) */
    ANY(rt_sigprocmask),	       /* glibc masks signals around some of its own work */
    ANY(restart_syscall),	       /* a wait interrupted by the vCPU kick goes on */
    ANY(sched_yield),		       /* glibc's lock back-off */
    ANY(getpid),		       /* pthread_kill names the process in its tgkill */
    ANY(gettid),		       /* glibc's own thread bookkeeping */
    ANY(exit),			       /* a thread's end */
    ANY(exit_group), /* the process's end, and _exit(148) after a forbidden call */
};

/* The VMM thread: its epoll loop, the devices' I/O, the API's commands (snapshots, drives,
 * pause and resume, the balloon, metrics), and the way out. */
static const struct allowed_call vmm_calls[] = {
    ANY(epoll_wait),		/* the event loop */
    ANY(epoll_pwait),		/* the same, where glibc implements epoll_wait through it */
    ANY(epoll_ctl),		/* sources come and go: devices activated or reset, stdin paused */
    ANY(read),			/* eventfds, timerfds, the signalfd, stdin, TAP frames, files */
    ANY(readv),			/* frames from a TAP into guest buffers (net_rx.c) */
    ANY(writev),		/* frames from guest buffers to a TAP */
    ANY(preadv),		/* blk's Sync engine reads */
    ANY(pwritev),		/* blk's Sync engine writes */
    ANY(pread64),		/* /proc/self/pagemap while writing a snapshot's memory file */
    ANY(pwrite64),		/* a snapshot's memory file */
    ANY(fdatasync),		/* a guest's flush with cache=Writeback, Sync engine */
    ANY(fsync),			/* a snapshot's files and their directory before and after rename */
    ANY(io_uring_enter),	/* blk's Async engine: submit and reap (the ring is restricted to
				 * readv/writev/fsync, see blk_io.c) */
    ANY(ioctl),			/* replaced below by the request numbers the VMM thread uses */
    ANY(openat),		/* snapshot files, PATCH /drives' new image */
    ANY(close),			/* the fds those open, a replaced image's, a device's on reset */
    ANY(newfstatat),		/* fstat() of an opened image or snapshot file */
    ANY(fstat),			/* the same with an older glibc */
    ANY(lseek),			/* SEEK_DATA/SEEK_HOLE over a memory file, the pagemap */
    ANY(ftruncate),		/* a snapshot's memory file to the guest's size */
    ANY(rename),		/* a snapshot's files from their temporary names */
    ANY(unlink),		/* a failed snapshot's temporary file, the API socket at the end */
    ANY(mincore),		/* pages touched, where /proc/self/pagemap cannot be read */
    ANY(timerfd_settime),	/* rate limiters, the balloon's statistics, the metrics timer */
    ARG_EQ(tgkill, 2, SIGUSR1), /* pthread_kill: the kick that pauses a vCPU, nothing else */
    ANY(poll),			/* the console's last second for what is left (at exit) */
    ANY(ppoll),			/* the same, where glibc implements poll through it */
    ANY(getrandom),		/* mkostemp's random name for a snapshot file's temporary */
    ANY(sysinfo),		/* glibc's qsort() of the balloon's page numbers asks for RAM */
    /* O_NONBLOCK on and off the console's fd (serial_output.c) */
    FCNTL_CMD(F_GETFL),
    FCNTL_CMD(F_SETFL),
    FCNTL_CMD(F_GETFD),
    FCNTL_CMD(F_SETFD),
};

/* The API thread: its own epoll over the listening socket and its connections. It creates
 * no socket (the listening one exists before it starts), so socket() is not allowed. */
static const struct allowed_call api_calls[] = {
    ANY(epoll_wait),  /* its loop */
    ANY(epoll_pwait), /* the same, through epoll_pwait */
    ANY(epoll_ctl),   /* connections come and go, and wait for EPOLLOUT */
    ANY(accept4),     /* new connections on the API socket */
    ANY(read),	      /* request bytes */
    ANY(recvfrom),    /* the same through recv() */
    ANY(sendto),      /* responses (send with MSG_NOSIGNAL) and "100 Continue" */
    ANY(shutdown),    /* a connection answered for the last time */
    ANY(close),	      /* its connections */
};

/* A vCPU thread: KVM_RUN, and the devices' register handlers it runs on exits (a UART byte
 * to the console, an interrupt line, a virtio device activated or reset). */
static const struct allowed_call vcpu_calls[] = {
    ANY(ioctl),		  /* replaced below by the request numbers a vCPU thread uses */
    ANY(io_uring_enter),  /* a virtio-blk reset waits for its requests in flight */
    ANY(epoll_ctl),	  /* a device activated or reset by the guest adds or drops its fds */
    ANY(timerfd_settime), /* a rate limiter or the balloon's statistics timer re-armed */
    ANY(read),		  /* an eventfd drained on a device reset */
};

/* Each kind's ioctl request numbers. seccomp sees numbers, not which fd they go to (KVM
 * system, VM, vCPU or TAP): each list is the union over the fds the thread uses. */
static const unsigned long vmm_ioctls[] = {
    KVM_IRQ_LINE,	     /* VM: the UART's and i8042's interrupt on console input */
    KVM_GET_DIRTY_LOG,	     /* VM: a Diff snapshot's dirtied pages */
    KVM_GET_IRQCHIP,	     /* VM: snapshot of the PIC and IOAPIC */
    KVM_GET_PIT2,	     /* VM: snapshot of the PIT */
    KVM_GET_CLOCK,	     /* VM: snapshot of kvmclock */
    KVM_CHECK_EXTENSION,     /* /dev/kvm, VM: a snapshot records the capabilities it needs */
    KVM_GET_SUPPORTED_CPUID, /* /dev/kvm: a snapshot's XCR0 check */
    KVM_GET_MSR_INDEX_LIST,  /* /dev/kvm: the MSRs a snapshot saves */
    KVM_GET_MP_STATE,	     /* vCPU (paused): snapshot */
    KVM_GET_REGS,	     /* vCPU: snapshot */
    KVM_GET_SREGS,	     /* vCPU: snapshot */
    KVM_GET_XSAVE,	     /* vCPU: snapshot */
    KVM_GET_XSAVE2,	     /* vCPU: snapshot, where KVM has KVM_CAP_XSAVE2 */
    KVM_GET_XCRS,	     /* vCPU: snapshot */
    KVM_GET_DEBUGREGS,	     /* vCPU: snapshot */
    KVM_GET_LAPIC,	     /* vCPU: snapshot */
    KVM_GET_TSC_KHZ,	     /* vCPU: snapshot */
    KVM_GET_VCPU_EVENTS,     /* vCPU: snapshot */
    KVM_GET_MSRS,	     /* vCPU: snapshot */
    KVM_GET_CPUID2,	     /* vCPU: snapshot */
    TUNSETOFFLOAD,	     /* TAP: offloads set to what the guest negotiated */
    BLKGETSIZE64,	     /* PATCH /drives onto a block device: its size */
    TCGETS,		     /* isatty(), the terminal's mode restored at exit */
    TCSETS,		     /* the terminal's mode restored at exit (main.c) */
};

static const unsigned long vcpu_ioctls[] = {
    KVM_RUN,		 /* vCPU: the point of the thread */
    KVM_GET_REGS,	 /* vCPU: registers logged on a shutdown or a KVM failure */
    KVM_GET_SREGS,	 /* vCPU: the same */
    KVM_GET_VCPU_EVENTS, /* vCPU: the same */
    KVM_IRQ_LINE,	 /* VM: the UART's, i8042's and ACPI's interrupt on a register write */
    TUNSETOFFLOAD,	 /* TAP: offloads set when the guest activates virtio-net */
};

/* ------------------------------------------------------------------------------------ */

static int add_calls(scmp_filter_ctx ctx, const struct allowed_call *calls, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int ret;

		if (calls[i].nr == SCMP_SYS(ioctl) && !calls[i].checked)
			continue; /* the request numbers are added one by one */
		if (calls[i].checked)
			ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i].nr, 1, calls[i].arg);
		else
			ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i].nr, 0);
		if (ret < 0) {
			log_error("seccomp: cannot add system call %d to a filter: %s", calls[i].nr,
				  strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int add_ioctls(scmp_filter_ctx ctx, const unsigned long *requests, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					   SCMP_A1(SCMP_CMP_EQ, requests[i], 0));
		if (ret < 0) {
			log_error("seccomp: cannot add ioctl 0x%lx to a filter: %s", requests[i],
				  strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* The compiled program of ctx, through a memfd (libseccomp 2.5 exports to an fd only). */
static int export_program(scmp_filter_ctx ctx, struct seccomp_program *program)
{
	int fd = memfd_create("wisp-seccomp", MFD_CLOEXEC);
	struct stat st;
	int ret;

	if (fd < 0)
		return -errno;
	ret = seccomp_export_bpf(ctx, fd);
	if (ret < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (st.st_size <= 0 || st.st_size % (off_t)sizeof(struct sock_filter) ||
	    st.st_size / (off_t)sizeof(struct sock_filter) > SECCOMP_FILE_MAX_INSNS) {
		ret = -E2BIG;
		goto out;
	}
	program->len = (uint32_t)(st.st_size / (off_t)sizeof(struct sock_filter));
	program->insns = malloc((size_t)st.st_size);
	if (!program->insns) {
		ret = -ENOMEM;
		goto out;
	}
	if (pread(fd, program->insns, (size_t)st.st_size, 0) != st.st_size) {
		ret = -EIO;
		free(program->insns);
		program->insns = NULL;
		goto out;
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

static int build_kind(enum seccomp_thread_kind kind, struct seccomp_program *program)
{
	/* Anything not allowed traps: the SIGSYS handler names it and ends the process. */
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	int ret;

	if (!ctx)
		return -ENOMEM;
	ret = add_calls(ctx, common_calls, sizeof(common_calls) / sizeof(common_calls[0]));
	if (!ret && kind == SECCOMP_THREAD_VMM) {
		ret = add_calls(ctx, vmm_calls, sizeof(vmm_calls) / sizeof(vmm_calls[0]));
		if (!ret)
			ret =
			    add_ioctls(ctx, vmm_ioctls, sizeof(vmm_ioctls) / sizeof(vmm_ioctls[0]));
	} else if (!ret && kind == SECCOMP_THREAD_API) {
		ret = add_calls(ctx, api_calls, sizeof(api_calls) / sizeof(api_calls[0]));
	} else if (!ret) {
		ret = add_calls(ctx, vcpu_calls, sizeof(vcpu_calls) / sizeof(vcpu_calls[0]));
		if (!ret)
			ret = add_ioctls(ctx, vcpu_ioctls,
					 sizeof(vcpu_ioctls) / sizeof(vcpu_ioctls[0]));
	}
	if (!ret)
		ret = export_program(ctx, program);
	if (ret)
		log_error("seccomp: cannot build the %s thread's filter: %s", kind_names[kind],
			  strerror(-ret));
	seccomp_release(ctx);
	return ret;
}

int seccomp_build_default(struct seccomp_programs *out)
{
	memset(out, 0, sizeof(*out));
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		int ret = build_kind(kind, &out->kinds[kind]);
		if (ret) {
			seccomp_programs_free(out);
			return ret;
		}
	}
	return 0;
}

void seccomp_programs_free(struct seccomp_programs *programs)
{
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		free(programs->kinds[kind].insns);
		programs->kinds[kind].insns = NULL;
		programs->kinds[kind].len = 0;
	}
}

/* ------------------------------------------------------------------------------------ */
/* The filter file (seccomp.h). */

#define SECTION_HEADER_SIZE 16
#define SECTION_NAME_SIZE   8

/* Cheap checks the kernel would make anyway, so that a bad file fails at start with a
 * message rather than in a thread: jumps stay inside, the last instruction returns. */
static int check_program(const struct sock_filter *insns, uint32_t len, char *why, size_t size)
{
	for (uint32_t i = 0; i < len; i++) {
		const struct sock_filter *insn = &insns[i];

		if (BPF_CLASS(insn->code) != BPF_JMP)
			continue;
		if (BPF_OP(insn->code) == BPF_JA
			? insn->k >= len - i - 1
			: (uint32_t)insn->jt >= len - i - 1 || (uint32_t)insn->jf >= len - i - 1) {
			snprintf(why, size, "instruction %u jumps past the end", i);
			return -EINVAL;
		}
	}
	if (BPF_CLASS(insns[len - 1].code) != BPF_RET) {
		snprintf(why, size, "the last instruction (%u) does not return", len - 1);
		return -EINVAL;
	}
	return 0;
}

int seccomp_file_parse(const uint8_t *data, size_t len, struct seccomp_programs *out, char *err,
		       size_t err_size)
{
	size_t pos = sizeof(SECCOMP_FILE_MAGIC) - 1;
	char why[128];
	int kind;

	memset(out, 0, sizeof(*out));
	if (len < pos || memcmp(data, SECCOMP_FILE_MAGIC, pos)) {
		snprintf(err, err_size, "not a wisp seccomp filter file (no \"%s\" at the start)",
			 SECCOMP_FILE_MAGIC);
		return -EINVAL;
	}
	while (pos < len) {
		char name[SECTION_NAME_SIZE + 1] = "";
		uint32_t count, zero;

		if (len - pos < SECTION_HEADER_SIZE) {
			snprintf(err, err_size, "a section header at byte %zu is cut short", pos);
			goto fail;
		}
		memcpy(name, data + pos, SECTION_NAME_SIZE);
		memcpy(&count, data + pos + 8, 4);
		memcpy(&zero, data + pos + 12, 4);
		for (kind = 0; kind < SECCOMP_THREAD_KINDS; kind++)
			if (!strcmp(name, kind_names[kind]))
				break;
		for (size_t i = strlen(name); i < SECTION_NAME_SIZE; i++)
			if (data[pos + i]) /* NUL-padded, nothing after the name */
				kind = SECCOMP_THREAD_KINDS;
		if (kind == SECCOMP_THREAD_KINDS) {
			snprintf(err, err_size,
				 "the section at byte %zu is for thread kind '%.8s': "
				 "vmm, api or vcpu expected",
				 pos, name);
			goto fail;
		}
		if (out->kinds[kind].insns) {
			snprintf(err, err_size, "the %s thread's section is there twice",
				 kind_names[kind]);
			goto fail;
		}
		if (!count || count > SECCOMP_FILE_MAX_INSNS || zero) {
			snprintf(err, err_size,
				 "the %s thread's section holds %u instructions (1 to %d) and %u "
				 "in its reserved field (0)",
				 kind_names[kind], count, SECCOMP_FILE_MAX_INSNS, zero);
			goto fail;
		}
		pos += SECTION_HEADER_SIZE;
		if ((len - pos) / sizeof(struct sock_filter) < count) {
			snprintf(err, err_size,
				 "the %s thread's section should hold %u instructions, the file "
				 "ends after %zu",
				 kind_names[kind], count, (len - pos) / sizeof(struct sock_filter));
			goto fail;
		}
		out->kinds[kind].insns = malloc(count * sizeof(struct sock_filter));
		if (!out->kinds[kind].insns) {
			snprintf(err, err_size, "out of memory for %u instructions", count);
			seccomp_programs_free(out);
			return -ENOMEM;
		}
		memcpy(out->kinds[kind].insns, data + pos, count * sizeof(struct sock_filter));
		out->kinds[kind].len = count;
		pos += count * sizeof(struct sock_filter);
		if (check_program(out->kinds[kind].insns, count, why, sizeof(why))) {
			snprintf(err, err_size, "the %s thread's program: %s", kind_names[kind],
				 why);
			goto fail;
		}
	}
	for (kind = 0; kind < SECCOMP_THREAD_KINDS; kind++)
		if (!out->kinds[kind].insns) {
			snprintf(err, err_size, "no section for the %s thread", kind_names[kind]);
			goto fail;
		}
	return 0;
fail:
	seccomp_programs_free(out);
	return -EINVAL;
}

int seccomp_file_format(const struct seccomp_programs *programs, uint8_t **data, size_t *len)
{
	size_t size = sizeof(SECCOMP_FILE_MAGIC) - 1, pos;
	uint8_t *out;

	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		if (!programs->kinds[kind].len ||
		    programs->kinds[kind].len > SECCOMP_FILE_MAX_INSNS)
			return -EINVAL;
		size +=
		    SECTION_HEADER_SIZE + programs->kinds[kind].len * sizeof(struct sock_filter);
	}
	out = calloc(1, size);
	if (!out)
		return -ENOMEM;
	memcpy(out, SECCOMP_FILE_MAGIC, sizeof(SECCOMP_FILE_MAGIC) - 1);
	pos = sizeof(SECCOMP_FILE_MAGIC) - 1;
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		uint32_t count = programs->kinds[kind].len;

		memcpy(out + pos, kind_names[kind], strlen(kind_names[kind]));
		memcpy(out + pos + 8, &count, 4);
		pos += SECTION_HEADER_SIZE;
		memcpy(out + pos, programs->kinds[kind].insns, count * sizeof(struct sock_filter));
		pos += count * sizeof(struct sock_filter);
	}
	*data = out;
	*len = size;
	return 0;
}

int seccomp_file_load(const char *path, struct seccomp_programs *out, char *err, size_t err_size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t *data = NULL;
	size_t len = 0;
	char why[256];
	int ret;

	if (fd < 0) {
		ret = -errno;
		snprintf(err, err_size, "--seccomp-filter %s: cannot open: %s", path,
			 strerror(-ret));
		return ret;
	}
	data = malloc(SECCOMP_FILE_MAX_SIZE + 1);
	ret = -ENOMEM;
	if (!data) {
		snprintf(err, err_size, "--seccomp-filter %s: out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, data + len, SECCOMP_FILE_MAX_SIZE + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(err, err_size, "--seccomp-filter %s: cannot read: %s", path,
				 strerror(-ret));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > SECCOMP_FILE_MAX_SIZE) {
			ret = -EFBIG;
			snprintf(err, err_size, "--seccomp-filter %s: larger than %zu bytes", path,
				 (size_t)SECCOMP_FILE_MAX_SIZE);
			goto out;
		}
	}
	ret = seccomp_file_parse(data, len, out, why, sizeof(why));
	if (ret)
		snprintf(err, err_size, "--seccomp-filter %s: %s", path, why);
out:
	free(data);
	close(fd);
	return ret;
}

/* ------------------------------------------------------------------------------------ */
/* Installing, and the SIGSYS handler. */

static struct seccomp_programs active;
static bool filters_on;
/* The embedded table, set before any filter is installed: the handler may only write(). */
static const char *const *syscall_names;
static __thread int thread_kind = -1;

static size_t append(char *buf, size_t pos, size_t size, const char *text)
{
	while (*text && pos + 1 < size)
		buf[pos++] = *text++;
	return pos;
}

static size_t append_number(char *buf, size_t pos, size_t size, long value)
{
	char digits[24];
	int n = 0;
	unsigned long v = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (value < 0)
		digits[n++] = '-';
	while (n && pos + 1 < size)
		buf[pos++] = digits[--n];
	return pos;
}

static size_t append_hex(char *buf, size_t pos, size_t size, unsigned long value)
{
	char digits[16];
	int n = 0;

	do {
		digits[n++] = "0123456789abcdef"[value & 15];
		value >>= 4;
	} while (value);
	pos = append(buf, pos, size, "0x");
	while (n && pos + 1 < size)
		buf[pos++] = digits[--n];
	return pos;
}

#ifdef WISP_SECCOMP_SELFTEST
/* Test builds only: WISP_SECCOMP_SELFTEST=audit logs each forbidden call and fails it with
 * ENOSYS instead of ending the process, to list what a workload lacks in one run; the lines
 * go to stderr and, with WISP_SECCOMP_AUDIT_FILE, are appended to that file too. */
static bool audit_mode;
static int audit_fd = -1;
#endif

static void on_sigsys(int signal, siginfo_t *info, void *context)
{
	int nr = info->si_syscall;
	const char *name =
	    syscall_names && nr >= 0 && nr < SECCOMP_SYSCALL_NAMES && syscall_names[nr]
		? syscall_names[nr]
		: "unknown";
	char line[256];
	size_t len = 0;
	int log_fd;
	(void)signal;
	(void)context;

	len = append(line, len, sizeof(line), "wisp: seccomp: the ");
	len = append(line, len, sizeof(line),
		     thread_kind >= 0 ? kind_names[thread_kind] : "unfiltered");
	len = append(line, len, sizeof(line), " thread made the forbidden system call ");
	len = append_number(line, len, sizeof(line), nr);
	len = append(line, len, sizeof(line), " (");
	len = append(line, len, sizeof(line), name);
	len = append(line, len, sizeof(line), ")");
	if (nr == SCMP_SYS(ioctl) || nr == SCMP_SYS(fcntl) || nr == SCMP_SYS(futex) ||
	    nr == SCMP_SYS(prctl)) {
		len = append(line, len, sizeof(line), " with argument 2 = ");
		len =
		    append_hex(line, len, sizeof(line),
			       (unsigned long)((ucontext_t *)context)->uc_mcontext.gregs[REG_RSI]);
	} else if (nr == SCMP_SYS(mmap) || nr == SCMP_SYS(mprotect) || nr == SCMP_SYS(madvise)) {
		len = append(line, len, sizeof(line), " with argument 3 = ");
		len =
		    append_hex(line, len, sizeof(line),
			       (unsigned long)((ucontext_t *)context)->uc_mcontext.gregs[REG_RDX]);
	}
#ifdef WISP_SECCOMP_SELFTEST
	if (audit_mode) {
		len = append(line, len, sizeof(line), ": audit, failed with ENOSYS\n");
		(void)!write(STDERR_FILENO, line, len);
		if (audit_fd >= 0)
			(void)!write(audit_fd, line, len);
		((ucontext_t *)context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
		return;
	}
#endif
	len = append(line, len, sizeof(line), "; exiting with status 148\n");
	(void)!write(STDERR_FILENO, line, len);
	log_fd = log_file_fd();
	if (log_fd >= 0)
		(void)!write(log_fd, line, len);
	_exit(SECCOMP_EXIT_STATUS);
}

int seccomp_prepare(struct seccomp_programs *programs, const char *const *names)
{
	struct sigaction action = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	sigset_t sigsys;

	if (!programs) {
		filters_on = false;
		log_warn("seccomp: the system call filters are OFF (--no-seccomp): a guest that "
			 "escapes into wisp, or a bug in its API, can make any system call; for "
			 "debugging only, never in production");
		return 0;
	}
	syscall_names = names;
	/* The first log line in Firecracker's format reads the time zone: read it now. */
	tzset();
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGSYS, &action, NULL) < 0) {
		int err = -errno;
		log_error("seccomp: cannot install the SIGSYS handler: %s", strerror(-err));
		return err;
	}
	sigemptyset(&sigsys);
	sigaddset(&sigsys, SIGSYS);
	pthread_sigmask(SIG_UNBLOCK, &sigsys, NULL);
#ifdef WISP_SECCOMP_SELFTEST
	{
		const char *mode = getenv("WISP_SECCOMP_SELFTEST");
		const char *file = getenv("WISP_SECCOMP_AUDIT_FILE");
		audit_mode = mode && !strcmp(mode, "audit");
		if (audit_mode && file && *file)
			audit_fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	}
#endif
	active = *programs;
	memset(programs, 0, sizeof(*programs));
	filters_on = true;
	return 0;
}

#ifdef WISP_SECCOMP_SELFTEST
/* Test builds only (build/wisp-seccomp-test): WISP_SECCOMP_SELFTEST=vmm, api or vcpu makes
 * that thread kind call socket(AF_INET), which none may, right after its filter is in. */
static void selftest_forbidden_call(enum seccomp_thread_kind kind)
{
	const char *want = getenv("WISP_SECCOMP_SELFTEST");
	long fd;

	if (!want || strcmp(want, kind_names[kind]))
		return;
	log_warn("seccomp self-test: the %s thread calls socket(AF_INET)", kind_names[kind]);
	fd = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
	log_warn("seccomp self-test: socket(AF_INET) in the %s thread returned %ld",
		 kind_names[kind], fd);
	if (fd >= 0)
		close((int)fd);
}
#endif

int seccomp_enter(enum seccomp_thread_kind kind)
{
	struct sock_fprog prog;

	if (filters_on) {
		prog.len = (unsigned short)active.kinds[kind].len;
		prog.filter = active.kinds[kind].insns;
		/* Needed without CAP_SYS_ADMIN; the thread's children could not gain privileges
		 * anyway (wisp execs nothing). */
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
			int err = -errno;
			log_error("seccomp: cannot install the %s thread's filter: %s",
				  kind_names[kind], strerror(-err));
			return err;
		}
		thread_kind = kind;
	}
#ifdef WISP_SECCOMP_SELFTEST
	selftest_forbidden_call(kind);
#endif
	return 0;
}

int seccomp_default_file(const char *who, uint8_t **data, size_t *len)
{
	struct seccomp_programs programs;
	int ret = seccomp_build_default(&programs);

	if (ret)
		return ret;
	ret = seccomp_file_format(&programs, data, len);
	seccomp_programs_free(&programs);
	if (ret)
		fprintf(stderr, "%s: cannot format the filters: %s\n", who, strerror(-ret));
	return ret;
}

int seccomp_dump_main(int argc, char *argv[])
{
	uint8_t *data = NULL;
	size_t len = 0, done = 0;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: wisp seccomp-filter-dump FILE\n");
		return 2;
	}
	if (seccomp_default_file("wisp: seccomp-filter-dump", &data, &len))
		return 1;
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "wisp: seccomp-filter-dump: cannot create %s: %s\n", argv[1],
			strerror(errno));
		free(data);
		return 2;
	}
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "wisp: seccomp-filter-dump: cannot write %s: %s\n", argv[1],
				strerror(errno));
			free(data);
			close(fd);
			return 1;
		}
		done += (size_t)n;
	}
	free(data);
	if (close(fd) < 0) {
		fprintf(stderr, "wisp: seccomp-filter-dump: cannot write %s: %s\n", argv[1],
			strerror(errno));
		return 1;
	}
	return 0;
}
