/* Unit tests for vmm/seccomp.c's pure parts: the default filters built with libseccomp
 * (run here through a small classic-BPF interpreter, so a system call's verdict per thread
 * kind is checked without installing anything), and the --seccomp-filter file format. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/futex.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
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
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "seccomp_filter.h"

/* ---- a classic BPF interpreter over struct seccomp_data, as the kernel runs it ---- */

static uint32_t run_bpf(const struct seccomp_program *program, const struct seccomp_data *data)
{
	uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {0};

	for (uint32_t pc = 0; pc < program->len; pc++) {
		const struct sock_filter *insn = &program->insns[pc];
		uint32_t src = BPF_SRC(insn->code) == BPF_X ? x : insn->k;

		switch (BPF_CLASS(insn->code)) {
		case BPF_LD:
			if (BPF_MODE(insn->code) == BPF_ABS) {
				assert_true(insn->k + 4 <= sizeof(*data));
				memcpy(&a, (const uint8_t *)data + insn->k, 4);
			} else if (BPF_MODE(insn->code) == BPF_IMM) {
				a = insn->k;
			} else if (BPF_MODE(insn->code) == BPF_MEM) {
				a = mem[insn->k];
			} else {
				fail_msg("unexpected BPF load 0x%x at %u", insn->code, pc);
			}
			break;
		case BPF_LDX:
			x = BPF_MODE(insn->code) == BPF_MEM ? mem[insn->k] : insn->k;
			break;
		case BPF_ST:
			mem[insn->k] = a;
			break;
		case BPF_STX:
			mem[insn->k] = x;
			break;
		case BPF_ALU:
			switch (BPF_OP(insn->code)) {
			case BPF_ADD:
				a += src;
				break;
			case BPF_SUB:
				a -= src;
				break;
			case BPF_AND:
				a &= src;
				break;
			case BPF_OR:
				a |= src;
				break;
			case BPF_XOR:
				a ^= src;
				break;
			case BPF_LSH:
				a <<= src;
				break;
			case BPF_RSH:
				a >>= src;
				break;
			case BPF_NEG:
				a = -a;
				break;
			default:
				fail_msg("unexpected BPF ALU 0x%x at %u", insn->code, pc);
			}
			break;
		case BPF_JMP: {
			bool taken;
			if (BPF_OP(insn->code) == BPF_JA) {
				pc += insn->k;
				break;
			}
			switch (BPF_OP(insn->code)) {
			case BPF_JEQ:
				taken = a == src;
				break;
			case BPF_JGT:
				taken = a > src;
				break;
			case BPF_JGE:
				taken = a >= src;
				break;
			case BPF_JSET:
				taken = (a & src) != 0;
				break;
			default:
				fail_msg("unexpected BPF jump 0x%x at %u", insn->code, pc);
				return 0;
			}
			pc += taken ? insn->jt : insn->jf;
			break;
		}
		case BPF_RET:
			return BPF_RVAL(insn->code) == BPF_A ? a : insn->k;
		case BPF_MISC:
			if (BPF_MISCOP(insn->code) == BPF_TAX)
				x = a;
			else
				a = x;
			break;
		}
	}
	fail_msg("the program ran off its end");
	return 0;
}

static struct seccomp_programs defaults;

static int build_defaults(void **state)
{
	(void)state;
	return seccomp_build_default(&defaults);
}

static int free_defaults(void **state)
{
	(void)state;
	seccomp_programs_free(&defaults);
	return 0;
}

static uint32_t verdict(enum seccomp_thread_kind kind, int nr, uint64_t arg0, uint64_t arg1,
			uint64_t arg2)
{
	struct seccomp_data data = {.nr = nr, .arch = AUDIT_ARCH_X86_64};

	data.args[0] = arg0;
	data.args[1] = arg1;
	data.args[2] = arg2;
	return run_bpf(&defaults.kinds[kind], &data) & SECCOMP_RET_ACTION_FULL;
}

#define ALLOWED(kind, nr, a0, a1, a2)                                                              \
	assert_int_equal(verdict(kind, nr, a0, a1, a2), SECCOMP_RET_ALLOW)
#define FORBIDDEN(kind, nr, a0, a1, a2)                                                            \
	assert_int_equal(verdict(kind, nr, a0, a1, a2), SECCOMP_RET_TRAP)

static void test_every_kind_has_a_program(void **state)
{
	(void)state;
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		assert_true(defaults.kinds[kind].len > 1);
		assert_true(defaults.kinds[kind].len <= SECCOMP_FILE_MAX_INSNS);
	}
	assert_string_equal(seccomp_thread_kind_name(SECCOMP_THREAD_VMM), "vmm");
	assert_string_equal(seccomp_thread_kind_name(SECCOMP_THREAD_API), "api");
	assert_string_equal(seccomp_thread_kind_name(SECCOMP_THREAD_VCPU), "vcpu");
}

static void test_nobody_may_exec_fork_or_open_sockets(void **state)
{
	(void)state;
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		FORBIDDEN(kind, SYS_execve, 0, 0, 0);
		FORBIDDEN(kind, SYS_execveat, 0, 0, 0);
		FORBIDDEN(kind, SYS_fork, 0, 0, 0);
		FORBIDDEN(kind, SYS_clone, 0, 0, 0);
		FORBIDDEN(kind, SYS_clone3, 0, 0, 0);
		FORBIDDEN(kind, SYS_ptrace, 0, 0, 0);
		FORBIDDEN(kind, SYS_socket, AF_INET, SOCK_STREAM, 0);
		FORBIDDEN(kind, SYS_socket, AF_UNIX, SOCK_STREAM, 0);
		FORBIDDEN(kind, SYS_connect, 3, 0, 0);
		FORBIDDEN(kind, SYS_mount, 0, 0, 0);
		FORBIDDEN(kind, SYS_setuid, 0, 0, 0);
		FORBIDDEN(kind, SYS_seccomp, 0, 0, 0);
		FORBIDDEN(kind, SYS_io_uring_setup, 0, 0, 0);
		/* ... but all may log and end. */
		ALLOWED(kind, SYS_write, 2, 0, 0);
		ALLOWED(kind, SYS_exit_group, 148, 0, 0);
	}
}

static void test_memory_is_never_executable(void **state)
{
	(void)state;
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		ALLOWED(kind, SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE);
		ALLOWED(kind, SYS_mmap, 0, 4096, PROT_NONE);
		FORBIDDEN(kind, SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC);
		FORBIDDEN(kind, SYS_mmap, 0, 4096, PROT_EXEC);
		ALLOWED(kind, SYS_mprotect, 0, 4096, PROT_READ | PROT_WRITE);
		FORBIDDEN(kind, SYS_mprotect, 0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
		FORBIDDEN(kind, SYS_pkey_mprotect, 0, 4096, PROT_READ);
		ALLOWED(kind, SYS_madvise, 0, 4096, MADV_DONTNEED);
		FORBIDDEN(kind, SYS_madvise, 0, 4096, MADV_HUGEPAGE);
	}
}

static void test_futex_operations(void **state)
{
	(void)state;
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		ALLOWED(kind, SYS_futex, 0, FUTEX_WAIT_PRIVATE, 1);
		ALLOWED(kind, SYS_futex, 0, FUTEX_WAKE, 1);
		ALLOWED(kind, SYS_futex, 0, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 1);
		FORBIDDEN(kind, SYS_futex, 0, FUTEX_FD, 0);
		FORBIDDEN(kind, SYS_futex, 0, FUTEX_LOCK_PI, 0);
		FORBIDDEN(kind, SYS_futex, 0, FUTEX_WAKE_OP_PRIVATE, 0);
	}
}

static void test_ioctls_per_thread_kind(void **state)
{
	(void)state;
	ALLOWED(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, KVM_RUN, 0);
	ALLOWED(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, KVM_IRQ_LINE, 0);
	ALLOWED(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, TUNSETOFFLOAD, 0);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, KVM_CREATE_VM, 0);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, KVM_SET_USER_MEMORY_REGION, 0);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, KVM_SET_REGS, 0);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_ioctl, 10, TUNSETIFF, 0);

	/* The VMM thread snapshots vCPUs but never runs one, nor builds a VM at run time. */
	ALLOWED(SECCOMP_THREAD_VMM, SYS_ioctl, 10, KVM_GET_REGS, 0);
	ALLOWED(SECCOMP_THREAD_VMM, SYS_ioctl, 10, KVM_GET_DIRTY_LOG, 0);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_ioctl, 10, KVM_RUN, 0);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_ioctl, 10, KVM_CREATE_VM, 0);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_ioctl, 10, KVM_CREATE_VCPU, 0);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_ioctl, 10, KVM_SET_USER_MEMORY_REGION, 0);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_ioctl, 10, TUNSETIFF, 0);

	/* The API thread has no ioctl at all. */
	FORBIDDEN(SECCOMP_THREAD_API, SYS_ioctl, 10, KVM_RUN, 0);
	FORBIDDEN(SECCOMP_THREAD_API, SYS_ioctl, 10, KVM_GET_REGS, 0);
}

static void test_files_and_sockets_per_thread_kind(void **state)
{
	(void)state;
	/* Snapshots, PATCH /drives, the logger: the VMM thread opens files. */
	ALLOWED(SECCOMP_THREAD_VMM, SYS_openat, AT_FDCWD, 0, O_RDWR);
	ALLOWED(SECCOMP_THREAD_VMM, SYS_rename, 0, 0, 0);
	ALLOWED(SECCOMP_THREAD_VMM, SYS_io_uring_enter, 5, 1, 0);
	ALLOWED(SECCOMP_THREAD_VMM, SYS_fcntl, 1, F_SETFL, O_NONBLOCK);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_fcntl, 1, F_SETOWN, 0);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_accept4, 3, 0, 0);
	/* Signals: only the vCPU kick, from the VMM thread. */
	ALLOWED(SECCOMP_THREAD_VMM, SYS_tgkill, 100, 101, SIGUSR1);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_tgkill, 100, 101, SIGKILL);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_kill, 100, SIGUSR1, 0);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_tgkill, 100, 101, SIGUSR1);
	FORBIDDEN(SECCOMP_THREAD_API, SYS_tgkill, 100, 101, SIGUSR1);
	FORBIDDEN(SECCOMP_THREAD_VMM, SYS_timerfd_create, 1, 0, 0);
	/* The API thread reads requests, never files. */
	ALLOWED(SECCOMP_THREAD_API, SYS_accept4, 3, 0, 0);
	ALLOWED(SECCOMP_THREAD_API, SYS_recvfrom, 3, 0, 0);
	FORBIDDEN(SECCOMP_THREAD_API, SYS_openat, AT_FDCWD, 0, O_RDONLY);
	FORBIDDEN(SECCOMP_THREAD_API, SYS_io_uring_enter, 5, 1, 0);
	/* A vCPU thread opens nothing and accepts nothing. */
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_openat, AT_FDCWD, 0, O_RDONLY);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_accept4, 3, 0, 0);
	FORBIDDEN(SECCOMP_THREAD_VCPU, SYS_unlink, 0, 0, 0);
}

static void test_another_architecture_is_refused(void **state)
{
	struct seccomp_data data = {.nr = SYS_write, .arch = AUDIT_ARCH_I386};
	(void)state;

	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++)
		assert_int_not_equal(run_bpf(&defaults.kinds[kind], &data) &
					 SECCOMP_RET_ACTION_FULL,
				     SECCOMP_RET_ALLOW);
}

/* ---- the filter file ---- */

static void test_file_round_trip(void **state)
{
	struct seccomp_programs parsed;
	uint8_t *data;
	size_t len;
	char err[256] = "";
	(void)state;

	assert_int_equal(seccomp_file_format(&defaults, &data, &len), 0);
	assert_memory_equal(data, SECCOMP_FILE_MAGIC, 8);
	assert_int_equal(seccomp_file_parse(data, len, &parsed, err, sizeof(err)), 0);
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		assert_int_equal(parsed.kinds[kind].len, defaults.kinds[kind].len);
		assert_memory_equal(parsed.kinds[kind].insns, defaults.kinds[kind].insns,
				    defaults.kinds[kind].len * sizeof(struct sock_filter));
	}
	seccomp_programs_free(&parsed);
	free(data);
}

/* A file of three one-instruction programs, sections in the given order. */
static size_t small_file(uint8_t *out, const char *const names[3], uint32_t ret_value)
{
	struct sock_filter ret = BPF_STMT(BPF_RET | BPF_K, ret_value);
	size_t pos = 8;

	memcpy(out, SECCOMP_FILE_MAGIC, 8);
	for (int i = 0; i < 3; i++) {
		uint32_t count = 1, zero = 0;
		memset(out + pos, 0, 8);
		memcpy(out + pos, names[i], strlen(names[i]));
		memcpy(out + pos + 8, &count, 4);
		memcpy(out + pos + 12, &zero, 4);
		memcpy(out + pos + 16, &ret, sizeof(ret));
		pos += 16 + sizeof(ret);
	}
	return pos;
}

static void test_file_sections_in_any_order(void **state)
{
	static const char *const order[3] = {"vcpu", "vmm", "api"};
	struct seccomp_programs parsed;
	uint8_t file[256];
	size_t len = small_file(file, order, SECCOMP_RET_ALLOW);
	char err[256] = "";
	(void)state;

	assert_int_equal(seccomp_file_parse(file, len, &parsed, err, sizeof(err)), 0);
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++) {
		assert_int_equal(parsed.kinds[kind].len, 1);
		assert_int_equal(parsed.kinds[kind].insns[0].k, SECCOMP_RET_ALLOW);
	}
	seccomp_programs_free(&parsed);
}

static void expect_refused(const uint8_t *file, size_t len, const char *needle)
{
	struct seccomp_programs parsed;
	char err[256] = "";

	assert_int_equal(seccomp_file_parse(file, len, &parsed, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("message '%s' does not say '%s'", err, needle);
	for (int kind = 0; kind < SECCOMP_THREAD_KINDS; kind++)
		assert_null(parsed.kinds[kind].insns);
}

static void test_file_bad_input(void **state)
{
	static const char *const good[3] = {"vmm", "api", "vcpu"};
	static const char *const twice[3] = {"vmm", "api", "api"};
	static const char *const unknown[3] = {"vmm", "api", "gpu"};
	uint8_t file[256];
	size_t len;
	uint32_t value;
	(void)state;

	len = small_file(file, good, SECCOMP_RET_ALLOW);
	expect_refused(file, 4, "not a wisp seccomp filter file");
	file[0] = 'X';
	expect_refused(file, len, "not a wisp seccomp filter file");
	file[0] = SECCOMP_FILE_MAGIC[0];
	expect_refused(file, len - 24, "no section for the vcpu thread");
	expect_refused(file, len - 1, "should hold 1 instructions");
	expect_refused(file, len - 20, "cut short");
	file[len] = 0;
	expect_refused(file, len + 1, "cut short");

	len = small_file(file, twice, SECCOMP_RET_ALLOW);
	expect_refused(file, len, "api thread's section is there twice");
	len = small_file(file, unknown, SECCOMP_RET_ALLOW);
	expect_refused(file, len, "'gpu'");

	len = small_file(file, good, SECCOMP_RET_ALLOW);
	file[8 + 4] = 'x'; /* "vmm\0x": a name that is not NUL-padded */
	expect_refused(file, len, "vmm, api or vcpu expected");

	len = small_file(file, good, SECCOMP_RET_ALLOW);
	value = 0;
	memcpy(file + 8 + 8, &value, 4);
	expect_refused(file, len, "holds 0 instructions");
	value = 1;
	memcpy(file + 8 + 12, &value, 4);
	expect_refused(file, len, "reserved field");

	/* Programs the kernel would refuse: a jump past the end, no return at the end. */
	len = small_file(file, good, SECCOMP_RET_ALLOW);
	{
		struct sock_filter jump = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
		memcpy(file + 8 + 16, &jump, sizeof(jump));
		expect_refused(file, len, "jumps past the end");
		struct sock_filter load = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);
		memcpy(file + 8 + 16, &load, sizeof(load));
		expect_refused(file, len, "does not return");
	}
}

static void test_file_load_names_the_path(void **state)
{
	struct seccomp_programs parsed;
	char path[] = "/tmp/wisp-seccomp-test-XXXXXX";
	char err[512] = "";
	uint8_t *data;
	size_t len;
	int fd;
	(void)state;

	assert_int_equal(seccomp_file_load("/nonexistent/filter.bpf", &parsed, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/filter.bpf"));

	assert_int_equal(seccomp_file_format(&defaults, &data, &len), 0);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	assert_int_equal(seccomp_file_load(path, &parsed, err, sizeof(err)), 0);
	assert_int_equal(parsed.kinds[SECCOMP_THREAD_VCPU].len,
			 defaults.kinds[SECCOMP_THREAD_VCPU].len);
	seccomp_programs_free(&parsed);

	/* Cut: named with its path and what is wrong. */
	assert_int_equal(truncate(path, (off_t)len - 3), 0);
	assert_int_equal(seccomp_file_load(path, &parsed, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	unlink(path);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_kind_has_a_program),
	    cmocka_unit_test(test_nobody_may_exec_fork_or_open_sockets),
	    cmocka_unit_test(test_memory_is_never_executable),
	    cmocka_unit_test(test_futex_operations),
	    cmocka_unit_test(test_ioctls_per_thread_kind),
	    cmocka_unit_test(test_files_and_sockets_per_thread_kind),
	    cmocka_unit_test(test_another_architecture_is_refused),
	    cmocka_unit_test(test_file_round_trip),
	    cmocka_unit_test(test_file_sections_in_any_order),
	    cmocka_unit_test(test_file_bad_input),
	    cmocka_unit_test(test_file_load_names_the_path),
	};
	return cmocka_run_group_tests(tests, build_defaults, free_defaults);
}
