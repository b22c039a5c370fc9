/*
 * Unit tests for the split virtqueue (vmm/devices/virtio/virtqueue.c): descriptor chains
 * (direct, indirect, mixed), ring index wrap-around, interrupt suppression (NO_INTERRUPT,
 * EVENT_IDX), notification suppression, chain copies, and every hostile descriptor, ring,
 * configuration or snapshot state a driver could produce. A hostile case must break the
 * queue with a reason, keep it broken until vq_reset(), and never crash.
 *
 * Guest memory: [0, 1 MiB) and [2 MiB, 2 MiB + 64 KiB), separate calloc'd host buffers,
 * so the 1 MiB gap and both region ends can be exercised.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "memory.h"
#include "devices/virtio/virtqueue.h"
#include "test_support.h"

#define RAM_SIZE  (1ULL << 20)
#define HIGH_GPA  (2ULL << 20)
#define HIGH_SIZE 0x10000ULL

#define DESC_GPA  0x1000ULL  /* room for 256 descriptors */
#define AVAIL_GPA 0x2000ULL  /* room for a 256-entry avail ring */
#define USED_GPA  0x3000ULL  /* room for a 256-entry used ring */
#define TABLE_GPA 0x5000ULL  /* indirect tables, up to 256 entries */
#define BUF_GPA	  0x10000ULL /* data buffers */
#define QSIZE	  8

struct fixture {
	struct gmem mem;
	uint8_t *ram;
	uint8_t *high;
	uint16_t ring_size; /* the avail ring size the helpers use when adding entries */
	struct virtqueue vq;
	struct vq_chain chain;
};

/* --- guest memory and ring helpers ----------------------------------------------------- */

static void put_desc_at(struct fixture *f, uint64_t table, uint16_t index, uint64_t addr,
			uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = {.addr = addr, .len = len, .flags = flags, .next = next};
	memcpy(gpa_ptr(&f->mem, table + index * sizeof(d), sizeof(d)), &d, sizeof(d));
}

static void put_desc(struct fixture *f, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	put_desc_at(f, DESC_GPA, index, addr, len, flags, next);
}

static void put_indirect(struct fixture *f, uint16_t index, uint64_t addr, uint32_t len,
			 uint16_t flags, uint16_t next)
{
	put_desc_at(f, TABLE_GPA, index, addr, len, flags, next);
}

/* The driver's side: put `head` in the next avail ring slot and publish it. */
static void make_available(struct fixture *f, uint16_t head)
{
	uint16_t idx = gpa_read16(&f->mem, AVAIL_GPA + 2);
	gpa_write16(&f->mem, AVAIL_GPA + 4 + 2 * (idx % f->ring_size), head);
	gpa_write16(&f->mem, AVAIL_GPA + 2, (uint16_t)(idx + 1));
}

static uint16_t used_idx_in_ring(struct fixture *f)
{
	return gpa_read16(&f->mem, USED_GPA + 2);
}

static struct vring_used_elem used_elem(struct fixture *f, uint16_t slot)
{
	return used_elem_at(&f->mem, USED_GPA, slot);
}

static uint64_t used_event_gpa(uint16_t size)
{
	return AVAIL_GPA + 4 + 2ULL * size;
}

static uint64_t avail_event_gpa(uint16_t size)
{
	return USED_GPA + 4 + 8ULL * size;
}

/* What a driver does to set a queue up: fresh zeroed rings, the config, then QueueReady. */
static void start_queue(struct fixture *f, uint16_t size, bool event_idx)
{
	vq_reset(&f->vq);
	memset(gpa_ptr(&f->mem, DESC_GPA, 0x1000), 0, 0x1000);
	memset(gpa_ptr(&f->mem, AVAIL_GPA, 0x1000), 0, 0x1000);
	memset(gpa_ptr(&f->mem, USED_GPA, 0x1000), 0, 0x1000);
	f->ring_size = size;
	f->vq.state.size = size;
	f->vq.state.desc_gpa = DESC_GPA;
	f->vq.state.avail_gpa = AVAIL_GPA;
	f->vq.state.used_gpa = USED_GPA;
	f->vq.state.event_idx = event_idx;
	assert_int_equal(vq_check_config(&f->vq), 0);
	f->vq.state.ready = 1;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->ram = fake_ram_new(&f->mem, RAM_SIZE, RAM_SIZE, 0);
	f->high = calloc(1, HIGH_SIZE);
	if (!f->ram || !f->high) {
		free(f->ram);
		free(f->high);
		free(f);
		return -1;
	}
	f->mem.regions[1] =
	    (struct gmem_region){.gpa = HIGH_GPA, .size = HIGH_SIZE, .host = f->high};
	f->mem.nr_regions = 2;
	f->mem.total_size = RAM_SIZE + HIGH_SIZE;
	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (unsigned int i = 0; i < f->mem.nr_regions; i++)
		free(f->mem.regions[i].dirty);
	free(f->ram);
	free(f->high);
	free(f);
	return 0;
}

static int ready_setup(void **state)
{
	int err = setup(state);
	if (!err)
		start_queue(*state, QSIZE, false);
	return err;
}

/*
 * The queue must be broken (-EIO from the call that found the problem, a reason naming it)
 * and stay broken even once a clean chain is available; vq_push must not touch the used
 * ring. After vq_reset() and a fresh valid configuration, a plain chain goes through.
 */
static void assert_broken_until_reset(struct fixture *f, int rc, const char *reason_part)
{
	uint16_t used_before;

	assert_int_equal(rc, -EIO);
	assert_int_equal(f->vq.state.broken, 1);
	assert_non_null(f->vq.broken_reason);
	if (!strstr(f->vq.broken_reason, reason_part))
		fail_msg("broken for \"%s\", expected a reason with \"%s\"", f->vq.broken_reason,
			 reason_part);

	put_desc(f, 0, BUF_GPA, 16, 0, 0);
	make_available(f, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(vq_pop(&f->vq, &f->chain), -EIO);
	assert_false(vq_has_available(&f->vq));
	used_before = used_idx_in_ring(f);
	assert_int_equal(vq_push(&f->vq, 0, 4), -EIO);
	assert_int_equal(used_idx_in_ring(f), used_before);
	assert_int_equal(f->vq.state.broken, 1);

	vq_reset(&f->vq);
	assert_int_equal(f->vq.state.broken, 0);
	assert_null(f->vq.broken_reason);
	assert_int_equal(f->vq.state.ready, 0);
	assert_int_equal(f->vq.state.max_size, VQ_MAX_SIZE);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);

	start_queue(f, QSIZE, false);
	put_desc(f, 0, BUF_GPA, 16, 0, 0);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.head, 0);
	assert_int_equal(f->chain.nr_readable, 1);
	assert_int_equal(f->chain.readable_len, 16);
	assert_int_equal(vq_push(&f->vq, 0, 0), 0);
	assert_int_equal(used_idx_in_ring(f), 1);
}

/* Pops once and expects the queue to break for `reason_part`. */
static void assert_pop_breaks(struct fixture *f, const char *reason_part)
{
	assert_broken_until_reset(f, vq_pop(&f->vq, &f->chain), reason_part);
}

/*
 * Runs `probe` in a child process and fails unless it exits with 0: a probe that would
 * crash the VMM (SIGSEGV, SIGFPE, a sanitizer report) fails this test, not the whole run.
 */
static void assert_survives(struct fixture *f, int (*probe)(struct fixture *f), const char *what)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Die of the signal rather than longjmp into cmocka's runner in the child. */
		const int fatal[] = {SIGSEGV, SIGFPE, SIGBUS, SIGILL, SIGABRT, SIGSYS};
		for (unsigned int i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
			signal(fatal[i], SIG_DFL);
		_exit(probe(f));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		fail_msg("%s: killed by signal %d", what, WTERMSIG(status));
	if (WEXITSTATUS(status))
		fail_msg("%s: exit status %d (1: a sanitizer report above; >1: a failed check)",
			 what, WEXITSTATUS(status));
}

/* --- normal chains ----------------------------------------------------------------- */

static void test_pop_returns_0_when_not_ready_or_empty(void **state)
{
	struct fixture *f = *state;

	vq_reset(&f->vq);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
	assert_false(vq_has_available(&f->vq));
	assert_int_equal(vq_push(&f->vq, 0, 0), -EIO);

	start_queue(f, QSIZE, false);
	assert_false(vq_has_available(&f->vq));
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
	assert_int_equal(f->vq.state.last_avail_idx, 0);
	assert_int_equal(f->vq.state.broken, 0);
}

static void test_pop_single_readable_descriptor(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 3, BUF_GPA + 0x20, 100, 0, 0);
	make_available(f, 3);
	assert_true(vq_has_available(&f->vq));
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_false(vq_has_available(&f->vq));
	assert_int_equal(f->chain.head, 3);
	assert_int_equal(f->chain.nr_readable, 1);
	assert_int_equal(f->chain.nr_writable, 0);
	assert_int_equal(f->chain.readable_len, 100);
	assert_int_equal(f->chain.writable_len, 0);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->ram + BUF_GPA + 0x20);
	assert_int_equal(f->chain.iov[0].iov_len, 100);
	assert_int_equal(f->vq.state.last_avail_idx, 1);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
}

static void test_pop_multi_descriptor_chain_readable_then_writable(void **state)
{
	struct fixture *f = *state;

	/* Out of table order: 5 -> 2 -> 7 -> 1. */
	put_desc(f, 5, BUF_GPA + 0x000, 10, VRING_DESC_F_NEXT, 2);
	put_desc(f, 2, BUF_GPA + 0x100, 20, VRING_DESC_F_NEXT, 7);
	put_desc(f, 7, BUF_GPA + 0x200, 30, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, HIGH_GPA + 0x40, 40, VRING_DESC_F_WRITE, 0);
	make_available(f, 5);

	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.head, 5);
	assert_int_equal(f->chain.nr_readable, 2);
	assert_int_equal(f->chain.nr_writable, 2);
	assert_int_equal(f->chain.readable_len, 30);
	assert_int_equal(f->chain.writable_len, 70);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->ram + BUF_GPA);
	assert_int_equal(f->chain.iov[0].iov_len, 10);
	assert_ptr_equal(f->chain.iov[1].iov_base, f->ram + BUF_GPA + 0x100);
	assert_int_equal(f->chain.iov[1].iov_len, 20);
	assert_ptr_equal(f->chain.iov[2].iov_base, f->ram + BUF_GPA + 0x200);
	assert_int_equal(f->chain.iov[2].iov_len, 30);
	/* A buffer in the second RAM region maps into that region's host buffer. */
	assert_ptr_equal(f->chain.iov[3].iov_base, f->high + 0x40);
	assert_int_equal(f->chain.iov[3].iov_len, 40);
}

static void test_pop_writable_only_chain(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA + 8, 8, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_readable, 0);
	assert_int_equal(f->chain.nr_writable, 2);
	assert_int_equal(f->chain.writable_len, 16);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->ram + BUF_GPA);
}

static void test_pop_indirect_table_chain(void **state)
{
	struct fixture *f = *state;

	/* The table's own order: 0 -> 2 -> 1; the outer descriptor's WRITE flag is ignored. */
	put_indirect(f, 0, BUF_GPA + 0x000, 12, VRING_DESC_F_NEXT, 2);
	put_indirect(f, 2, BUF_GPA + 0x100, 34, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_indirect(f, 1, BUF_GPA + 0x200, 56, VRING_DESC_F_WRITE, 0);
	put_desc(f, 4, TABLE_GPA, 3 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 4);

	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.head, 4);
	assert_int_equal(f->chain.nr_readable, 1);
	assert_int_equal(f->chain.nr_writable, 2);
	assert_int_equal(f->chain.readable_len, 12);
	assert_int_equal(f->chain.writable_len, 90);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->ram + BUF_GPA);
	assert_ptr_equal(f->chain.iov[1].iov_base, f->ram + BUF_GPA + 0x100);
	assert_ptr_equal(f->chain.iov[2].iov_base, f->ram + BUF_GPA + 0x200);
	assert_int_equal(f->chain.iov[2].iov_len, 56);
}

static void test_pop_direct_descriptor_followed_by_indirect_table(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, BUF_GPA + 0x100, 8, VRING_DESC_F_WRITE, 0);
	put_desc(f, 0, BUF_GPA, 4, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, TABLE_GPA, sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);

	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_readable, 1);
	assert_int_equal(f->chain.nr_writable, 1);
	assert_int_equal(f->chain.readable_len, 4);
	assert_int_equal(f->chain.writable_len, 8);
	assert_ptr_equal(f->chain.iov[1].iov_base, f->ram + BUF_GPA + 0x100);
}

static void test_pop_skips_zero_length_descriptors_without_checking_their_address(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, UINT64_MAX, 0, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	put_desc(f, 2, RAM_SIZE + 5, 0, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);

	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_readable, 1);
	assert_int_equal(f->chain.nr_writable, 0);
	assert_int_equal(f->chain.readable_len, 8);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->ram + BUF_GPA);
}

static void test_pop_accepts_buffers_ending_exactly_at_region_ends(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, RAM_SIZE - 16, 16, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, HIGH_GPA, HIGH_SIZE, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);

	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_ptr_equal(f->chain.iov[0].iov_base, f->ram + RAM_SIZE - 16);
	assert_ptr_equal(f->chain.iov[1].iov_base, f->high);
	assert_int_equal(f->chain.writable_len, HIGH_SIZE);
}

static void test_pop_accepts_chain_of_exactly_max_chain_descriptors(void **state)
{
	struct fixture *f = *state;

	/* 256 direct descriptors in a 256-entry queue... */
	start_queue(f, VQ_MAX_SIZE, false);
	for (unsigned int i = 0; i < VQ_MAX_SIZE; i++)
		put_desc(f, (uint16_t)i, BUF_GPA + i, 1,
			 i + 1 < VQ_MAX_SIZE ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_readable, VQ_MAX_CHAIN);
	assert_int_equal(f->chain.readable_len, VQ_MAX_CHAIN);
	assert_ptr_equal(f->chain.iov[VQ_MAX_CHAIN - 1].iov_base, f->ram + BUF_GPA + 255);

	/* ...and one direct descriptor plus a 255-entry indirect table. */
	start_queue(f, QSIZE, false);
	for (unsigned int i = 0; i < VQ_MAX_CHAIN - 1; i++)
		put_indirect(f, (uint16_t)i, BUF_GPA + i, 1,
			     i + 2 < VQ_MAX_CHAIN ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	put_desc(f, 0, BUF_GPA, 1, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, TABLE_GPA, (VQ_MAX_CHAIN - 1) * sizeof(struct vring_desc),
		 VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.nr_readable, VQ_MAX_CHAIN);
}

static void test_pops_follow_avail_ring_order_and_push_fills_used_ring(void **state)
{
	struct fixture *f = *state;
	const uint16_t heads[] = {6, 0, 3};

	for (unsigned int i = 0; i < 3; i++) {
		put_desc(f, heads[i], BUF_GPA + 0x100 * i, 8, VRING_DESC_F_WRITE, 0);
		make_available(f, heads[i]);
	}
	for (unsigned int i = 0; i < 3; i++) {
		assert_true(vq_has_available(&f->vq));
		assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
		assert_int_equal(f->chain.head, heads[i]);
	}
	assert_false(vq_has_available(&f->vq));
	/* Completion out of order is allowed: the used ring records whatever is pushed. */
	assert_int_equal(vq_push(&f->vq, 3, 5), 0);
	assert_int_equal(vq_push(&f->vq, 6, 8), 0);
	assert_int_equal(used_idx_in_ring(f), 2);
	assert_int_equal(f->vq.state.used_idx, 2);
	assert_int_equal(used_elem(f, 0).id, 3);
	assert_int_equal(used_elem(f, 0).len, 5);
	assert_int_equal(used_elem(f, 1).id, 6);
	assert_int_equal(used_elem(f, 1).len, 8);
}

static void test_ring_indices_wrap_from_65535_to_0(void **state)
{
	struct fixture *f = *state;
	struct vq_state s;
	const uint16_t heads[] = {1, 2, 3, 0};

	start_queue(f, 4, false);
	s = f->vq.state;
	s.last_avail_idx = s.used_idx = s.signalled_used = 65534;
	assert_int_equal(vq_restore(&f->vq, &s), 0);
	gpa_write16(&f->mem, AVAIL_GPA + 2, 65534);
	gpa_write16(&f->mem, USED_GPA + 2, 65534);

	for (unsigned int i = 0; i < 4; i++) {
		put_desc(f, heads[i], BUF_GPA + 0x10 * i, 16, VRING_DESC_F_WRITE, 0);
		make_available(f, heads[i]);
	}
	assert_int_equal(gpa_read16(&f->mem, AVAIL_GPA + 2), 2);
	/* Ring slots 2, 3, 0, 1 hold entries 65534, 65535, 0, 1. */
	assert_int_equal(gpa_read16(&f->mem, AVAIL_GPA + 4 + 2 * 2), 1);
	assert_int_equal(gpa_read16(&f->mem, AVAIL_GPA + 4 + 2 * 0), 3);
	for (unsigned int i = 0; i < 4; i++) {
		assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
		assert_int_equal(f->chain.head, heads[i]);
		assert_int_equal(vq_push(&f->vq, f->chain.head, 100 + i), 0);
	}
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
	assert_int_equal(f->vq.state.last_avail_idx, 2);
	assert_int_equal(f->vq.state.used_idx, 2);
	assert_int_equal(used_idx_in_ring(f), 2);
	assert_int_equal(used_elem(f, 2).id, 1);
	assert_int_equal(used_elem(f, 3).id, 2);
	assert_int_equal(used_elem(f, 0).id, 3);
	assert_int_equal(used_elem(f, 1).id, 0);
	assert_int_equal(used_elem(f, 1).len, 103);
	assert_int_equal(f->vq.state.broken, 0);
}

static void test_ring_indices_wrap_when_driven_through_70000_chains(void **state)
{
	struct fixture *f = *state;

	start_queue(f, 2, false);
	put_desc(f, 0, BUF_GPA, 8, 0, 0);
	put_desc(f, 1, BUF_GPA + 8, 8, VRING_DESC_F_WRITE, 0);
	for (unsigned int i = 0; i < 70000; i++) {
		make_available(f, (uint16_t)(i & 1));
		if (vq_pop(&f->vq, &f->chain) != 1 || f->chain.head != (i & 1))
			fail_msg("chain %u: not popped or wrong head %u", i, f->chain.head);
		if (vq_push(&f->vq, f->chain.head, i & 0xff))
			fail_msg("chain %u: push failed", i);
	}
	assert_int_equal(f->vq.state.last_avail_idx, (uint16_t)70000);
	assert_int_equal(used_idx_in_ring(f), (uint16_t)70000);
	assert_int_equal(used_elem(f, 1).id, 1);
	assert_int_equal(used_elem(f, 1).len, 69999 & 0xff);
}

static void test_avail_idx_exactly_size_ahead_is_accepted(void **state)
{
	struct fixture *f = *state;

	for (uint16_t i = 0; i < QSIZE; i++) {
		put_desc(f, i, BUF_GPA + i, 1, 0, 0);
		make_available(f, i);
	}
	for (uint16_t i = 0; i < QSIZE; i++) {
		assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
		assert_int_equal(f->chain.head, i);
	}
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
}

/* --- interrupt and notification suppression ------------------------------------------ */

static void pop_and_push(struct fixture *f, uint16_t head)
{
	put_desc(f, head, BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
	make_available(f, head);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(vq_push(&f->vq, f->chain.head, 8), 0);
}

static void test_needs_interrupt_is_false_when_not_ready(void **state)
{
	struct fixture *f = *state;

	vq_reset(&f->vq);
	assert_false(vq_needs_interrupt(&f->vq));
}

static void test_needs_interrupt_honours_no_interrupt_flag(void **state)
{
	struct fixture *f = *state;

	pop_and_push(f, 0);
	gpa_write16(&f->mem, AVAIL_GPA, VRING_AVAIL_F_NO_INTERRUPT);
	assert_false(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));
	/* The driver clears the flag: the push it suppressed is still owed an interrupt. */
	gpa_write16(&f->mem, AVAIL_GPA, 0);
	assert_true(vq_needs_interrupt(&f->vq));
	/* Nothing new pushed: no second interrupt. */
	assert_false(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));
	pop_and_push(f, 1);
	assert_true(vq_needs_interrupt(&f->vq));
}

static void test_needs_interrupt_with_event_idx_fires_only_when_used_event_is_passed(void **state)
{
	struct fixture *f = *state;

	start_queue(f, QSIZE, true);
	pop_and_push(f, 0); /* used_idx 1 */
	/* The first interrupt is always sent, then only when used_idx passes used_event. */
	assert_true(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));

	gpa_write16(&f->mem, used_event_gpa(QSIZE), 2); /* "interrupt me once entry 2 is used" */
	pop_and_push(f, 1);				/* used_idx 2: entry 2 not yet used */
	assert_false(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));
	pop_and_push(f, 2); /* used_idx 3: entry 2 used */
	assert_true(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));

	/* used_event left behind (2): later pushes do not pass it again. */
	pop_and_push(f, 3);
	assert_false(vq_needs_interrupt(&f->vq));
	pop_and_push(f, 4);
	assert_false(vq_needs_interrupt(&f->vq));

	/* A batch of pushes that passes used_event inside the batch interrupts once. */
	gpa_write16(&f->mem, used_event_gpa(QSIZE), 6);
	pop_and_push(f, 5);
	pop_and_push(f, 6);
	pop_and_push(f, 7); /* used_idx 5 -> 8 since the last interrupt at 3 */
	assert_true(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));
	assert_int_equal(f->vq.state.signalled_used, 8);
}

static void test_needs_interrupt_with_event_idx_across_index_wrap(void **state)
{
	struct fixture *f = *state;
	struct vq_state s;

	start_queue(f, 4, true);
	s = f->vq.state;
	s.last_avail_idx = s.used_idx = s.signalled_used = 65534;
	s.signalled_valid = 1;
	assert_int_equal(vq_restore(&f->vq, &s), 0);
	gpa_write16(&f->mem, AVAIL_GPA + 2, 65534);
	gpa_write16(&f->mem, used_event_gpa(4), 65535);

	pop_and_push(f, 0); /* used_idx 65535: entry 65535 not yet used */
	assert_false(vq_needs_interrupt(&f->vq));
	pop_and_push(f, 1); /* used_idx 0 */
	assert_true(vq_needs_interrupt(&f->vq));
	assert_false(vq_needs_interrupt(&f->vq));
	assert_int_equal(f->vq.state.signalled_used, 0);
}

static void test_needs_interrupt_without_event_idx_ignores_used_event(void **state)
{
	struct fixture *f = *state;

	gpa_write16(&f->mem, used_event_gpa(QSIZE), 100);
	pop_and_push(f, 0);
	assert_true(vq_needs_interrupt(&f->vq));
	pop_and_push(f, 1);
	assert_true(vq_needs_interrupt(&f->vq));
}

static bool page_dirty(struct fixture *f, unsigned int region, uint64_t page)
{
	return f->mem.regions[region].dirty[page / 64] & (1ULL << (page % 64));
}

static uint64_t dirty_pages(struct fixture *f)
{
	uint64_t n = 0;
	for (unsigned int i = 0; i < f->mem.nr_regions; i++)
		for (uint64_t w = 0; w < gmem_bitmap_words(&f->mem.regions[i]); w++)
			n += (uint64_t)__builtin_popcountll(f->mem.regions[i].dirty[w]);
	return n;
}

static void clear_dirty(struct fixture *f)
{
	for (unsigned int i = 0; i < f->mem.nr_regions; i++)
		memset(f->mem.regions[i].dirty, 0,
		       gmem_bitmap_words(&f->mem.regions[i]) * sizeof(uint64_t));
}

/* Diff snapshots: every device-writable buffer is marked dirty when vq_pop hands it out
 * (direct and indirect, in both RAM regions, every page a buffer straddles), readable ones
 * are not, and each used ring write marks the ring's page. */
static void test_dirty_tracking_marks_writable_buffers_and_used_ring_writes(void **state)
{
	struct fixture *f = *state;
	const uint64_t buf_page = BUF_GPA / 0x1000, used_page = USED_GPA / 0x1000;

	assert_int_equal(gmem_track_dirty(&f->mem), 0);
	put_desc(f, 0, BUF_GPA, 10, VRING_DESC_F_NEXT, 1); /* readable */
	put_desc(f, 1, BUF_GPA + 0x1ff0, 0x20, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
		 2); /* 2 pages */
	put_desc(f, 2, HIGH_GPA + 0x40, 40, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_false(page_dirty(f, 0, buf_page));
	assert_true(page_dirty(f, 0, buf_page + 1));
	assert_true(page_dirty(f, 0, buf_page + 2));
	assert_true(page_dirty(f, 1, 0));
	assert_int_equal(dirty_pages(f), 3); /* popping wrote nothing else */

	clear_dirty(f);
	assert_int_equal(vq_push(&f->vq, 0, 42), 0);
	assert_true(page_dirty(f, 0, used_page));
	assert_int_equal(dirty_pages(f), 1);

	/* An indirect table's writable buffer; the table itself is only read. */
	clear_dirty(f);
	put_indirect(f, 1, BUF_GPA + 0x6000, 16, VRING_DESC_F_WRITE, 0);
	put_indirect(f, 0, BUF_GPA + 0x5000, 16, VRING_DESC_F_NEXT, 1);
	put_desc(f, 3, TABLE_GPA, 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 3);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_true(page_dirty(f, 0, buf_page + 6));
	assert_int_equal(dirty_pages(f), 1);

	clear_dirty(f);
	vq_set_notification(&f->vq, false); /* used->flags */
	assert_true(page_dirty(f, 0, used_page));
	assert_int_equal(dirty_pages(f), 1);
	clear_dirty(f);
	start_queue(f, QSIZE, true);
	assert_int_equal(gpa_read16(&f->mem, avail_event_gpa(QSIZE)), 0);
	vq_set_notification(&f->vq, true); /* avail_event */
	assert_true(page_dirty(f, 0, avail_event_gpa(QSIZE) / 0x1000));
}

static void test_set_notification_without_event_idx_writes_used_flags(void **state)
{
	struct fixture *f = *state;

	gpa_write16(&f->mem, avail_event_gpa(QSIZE), 0xabcd);
	vq_set_notification(&f->vq, false);
	assert_int_equal(gpa_read16(&f->mem, USED_GPA), VRING_USED_F_NO_NOTIFY);
	vq_set_notification(&f->vq, true);
	assert_int_equal(gpa_read16(&f->mem, USED_GPA), 0);
	assert_int_equal(gpa_read16(&f->mem, avail_event_gpa(QSIZE)), 0xabcd);
}

static void test_set_notification_with_event_idx_writes_avail_event(void **state)
{
	struct fixture *f = *state;

	start_queue(f, QSIZE, true);
	pop_and_push(f, 0);
	pop_and_push(f, 1);
	pop_and_push(f, 2);
	vq_set_notification(&f->vq, true);
	assert_int_equal(gpa_read16(&f->mem, avail_event_gpa(QSIZE)), 3);
	assert_int_equal(gpa_read16(&f->mem, USED_GPA), 0);
	/* Disabling with EVENT_IDX leaves avail_event (the driver notifies when it passes). */
	pop_and_push(f, 3);
	vq_set_notification(&f->vq, false);
	assert_int_equal(gpa_read16(&f->mem, avail_event_gpa(QSIZE)), 3);
	assert_int_equal(gpa_read16(&f->mem, USED_GPA), 0);
	vq_set_notification(&f->vq, true);
	assert_int_equal(gpa_read16(&f->mem, avail_event_gpa(QSIZE)), 4);
}

static void test_set_notification_writes_nothing_when_not_ready_or_broken(void **state)
{
	struct fixture *f = *state;

	gpa_write16(&f->mem, USED_GPA, 0x5555);
	f->vq.state.ready = 0;
	vq_set_notification(&f->vq, false);
	vq_set_notification(&f->vq, true);
	assert_int_equal(gpa_read16(&f->mem, USED_GPA), 0x5555);

	f->vq.state.ready = 1;
	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, QSIZE);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), -EIO);
	vq_set_notification(&f->vq, true);
	assert_int_equal(gpa_read16(&f->mem, USED_GPA), 0x5555);
}

/* --- chain copies ------------------------------------------------------------------ */

/* Readable buffers of 3, 5 and 4 bytes, then writable ones of 4 and 4. */
static void pop_copy_chain(struct fixture *f)
{
	put_desc(f, 0, BUF_GPA + 0x000, 3, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA + 0x100, 5, VRING_DESC_F_NEXT, 2);
	put_desc(f, 2, BUF_GPA + 0x200, 4, VRING_DESC_F_NEXT, 3);
	put_desc(f, 3, BUF_GPA + 0x300, 4, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4);
	put_desc(f, 4, BUF_GPA + 0x400, 4, VRING_DESC_F_WRITE, 0);
	fill_pattern(gpa_ptr(&f->mem, BUF_GPA, 0x500), 0x500, 1, 7);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	assert_int_equal(f->chain.readable_len, 12);
	assert_int_equal(f->chain.writable_len, 8);
}

static void test_chain_read_crosses_iov_boundaries_from_an_offset(void **state)
{
	struct fixture *f = *state;
	const uint8_t *g = f->ram + BUF_GPA;
	uint8_t out[16], expected[16];

	pop_copy_chain(f);
	memset(out, 0xee, sizeof(out));
	assert_int_equal(vq_chain_read(&f->chain, 2, out, 7), 7);
	expected[0] = g[0x002];
	memcpy(expected + 1, g + 0x100, 5);
	expected[6] = g[0x200];
	assert_memory_equal(out, expected, 7);
	assert_int_equal(out[7], 0xee);

	/* Starting exactly at an iov boundary. */
	assert_int_equal(vq_chain_read(&f->chain, 3, out, 5), 5);
	assert_memory_equal(out, g + 0x100, 5);

	/* The whole readable part, and no more even if asked for more. */
	assert_int_equal(vq_chain_read(&f->chain, 0, out, sizeof(out)), 12);
	assert_memory_equal(out, g, 3);
	assert_memory_equal(out + 3, g + 0x100, 5);
	assert_memory_equal(out + 8, g + 0x200, 4);
	assert_int_equal(vq_chain_read(&f->chain, 10, out, 10), 2);
	assert_memory_equal(out, g + 0x202, 2);
	assert_int_equal(vq_chain_read(&f->chain, 12, out, 4), 0);
	assert_int_equal(vq_chain_read(&f->chain, 1000, out, 4), 0);
	assert_int_equal(vq_chain_read(&f->chain, 0, out, 0), 0);
}

static void test_chain_write_crosses_iov_boundaries_and_stays_in_writable_part(void **state)
{
	struct fixture *f = *state;
	uint8_t *g = f->ram + BUF_GPA;
	uint8_t before[0x500];

	pop_copy_chain(f);
	memcpy(before, g, sizeof(before));
	assert_int_equal(vq_chain_write(&f->chain, 3, "ABCD", 4), 4);
	assert_memory_equal(g + 0x300, before + 0x300, 3);
	assert_int_equal(g[0x303], 'A');
	assert_memory_equal(g + 0x400, "BCD", 3);
	assert_int_equal(g[0x403], before[0x403]);
	/* The readable buffers are never written. */
	assert_memory_equal(g, before, 0x300);

	assert_int_equal(vq_chain_write(&f->chain, 6, "0123456789", 10), 2);
	assert_memory_equal(g + 0x402, "01", 2);
	assert_int_equal(vq_chain_write(&f->chain, 8, "x", 1), 0);
	assert_int_equal(vq_chain_write(&f->chain, 0, "wxyzWXYZ!", 9), 8);
	assert_memory_equal(g + 0x300, "wxyz", 4);
	assert_memory_equal(g + 0x400, "WXYZ", 4);
	assert_memory_equal(g, before, 0x300);
}

static void test_chain_write_on_readable_only_chain_copies_nothing(void **state)
{
	struct fixture *f = *state;
	uint8_t before[8];

	put_desc(f, 0, BUF_GPA, 8, 0, 0);
	make_available(f, 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 1);
	memcpy(before, f->ram + BUF_GPA, 8);
	assert_int_equal(vq_chain_write(&f->chain, 0, "12345678", 8), 0);
	assert_memory_equal(f->ram + BUF_GPA, before, 8);
}

/* --- hostile chains ---------------------------------------------------------------- */

static void test_pop_breaks_on_next_index_loop(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "too long");
}

static void test_pop_breaks_on_descriptor_pointing_at_itself(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 2, BUF_GPA, 0, VRING_DESC_F_NEXT, 2); /* zero-length: no iov, still counted */
	make_available(f, 2);
	assert_pop_breaks(f, "too long");
}

static void test_pop_breaks_on_chain_longer_than_max_chain(void **state)
{
	struct fixture *f = *state;

	/* One direct descriptor and a full 256-entry indirect table: 257 descriptors. */
	for (unsigned int i = 0; i < VQ_MAX_CHAIN; i++)
		put_indirect(f, (uint16_t)i, BUF_GPA + i, 1,
			     i + 1 < VQ_MAX_CHAIN ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	put_desc(f, 0, BUF_GPA, 1, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, TABLE_GPA, VQ_MAX_CHAIN * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT,
		 0);
	make_available(f, 0);
	assert_pop_breaks(f, "too long");
}

static void test_pop_breaks_on_head_index_at_or_above_size(void **state)
{
	struct fixture *f = *state;

	make_available(f, QSIZE);
	assert_pop_breaks(f, "outside the table");
	make_available(f, 0xffff);
	assert_pop_breaks(f, "outside the table");
}

static void test_pop_breaks_on_next_index_at_or_above_size(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, QSIZE);
	make_available(f, 0);
	assert_pop_breaks(f, "next is outside the table");
}

static void test_pop_breaks_on_buffer_outside_guest_memory(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, RAM_SIZE + 0x100, 8, 0, 0); /* in the gap */
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
	put_desc(f, 0, HIGH_GPA + HIGH_SIZE, 1, 0, 0); /* above the last region */
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
	put_desc(f, 0, 1ULL << 40, 1, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
}

static void test_pop_breaks_on_address_plus_length_overflow(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, UINT64_MAX - 7, 16, 0, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
	/* Wrapping around to land inside RAM must not count as inside. */
	put_desc(f, 0, UINT64_MAX - 0xf, 0x1000, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
	put_desc(f, 0, UINT64_MAX, 1, 0, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
}

static void test_pop_breaks_on_buffer_crossing_the_end_of_memory(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, RAM_SIZE - 8, 16, 0, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
	put_desc(f, 0, HIGH_GPA + HIGH_SIZE - 8, 9, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
	/* From the low region across the whole gap into the high one. */
	put_desc(f, 0, RAM_SIZE - 8, (uint32_t)(HIGH_GPA - RAM_SIZE + 16), 0, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
}

static void test_pop_breaks_on_bad_buffer_later_in_the_chain(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA + 8, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	put_desc(f, 2, RAM_SIZE, 8, VRING_DESC_F_WRITE, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "outside guest RAM");
}

static void test_pop_breaks_on_readable_after_writable(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA + 8, 8, 0, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "readable descriptor after a writable one");
}

static void test_pop_breaks_on_readable_after_writable_inside_indirect_table(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, BUF_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	put_indirect(f, 1, BUF_GPA + 8, 8, 0, 0);
	put_desc(f, 0, TABLE_GPA, 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "readable descriptor after a writable one");
}

static void test_pop_breaks_on_indirect_with_next(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, BUF_GPA, 8, 0, 0);
	put_desc(f, 0, TABLE_GPA, sizeof(struct vring_desc),
		 VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 8, 0, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "NEXT");
}

static void test_pop_breaks_on_indirect_inside_indirect(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	put_indirect(f, 1, TABLE_GPA, 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	put_desc(f, 0, TABLE_GPA, 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "indirect table inside an indirect table");
}

static void test_pop_breaks_on_indirect_table_of_bad_length(void **state)
{
	struct fixture *f = *state;
	const uint32_t lengths[] = {
	    0, 8, 17, 31, (VQ_MAX_CHAIN + 1) * sizeof(struct vring_desc), UINT32_MAX & ~15u};

	for (unsigned int i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		put_desc(f, 0, TABLE_GPA, lengths[i], VRING_DESC_F_INDIRECT, 0);
		make_available(f, 0);
		assert_pop_breaks(f, "indirect table has a bad length");
	}
}

static void test_pop_breaks_on_indirect_table_outside_guest_memory(void **state)
{
	struct fixture *f = *state;
	const uint64_t addrs[] = {RAM_SIZE - 16, RAM_SIZE, HIGH_GPA + HIGH_SIZE - 16,
				  UINT64_MAX - 15};

	for (unsigned int i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		put_desc(f, 0, addrs[i], 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
		make_available(f, 0);
		assert_pop_breaks(f, "indirect table lies outside guest RAM");
	}
}

static void test_pop_breaks_on_indirect_loop(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
	put_indirect(f, 1, BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
	put_desc(f, 0, TABLE_GPA, 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "indirect chain loops");
}

static void test_pop_breaks_on_indirect_next_outside_its_table(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, BUF_GPA, 8, VRING_DESC_F_NEXT, 2);
	put_indirect(f, 2, BUF_GPA, 8, 0, 0); /* exists in memory but not in the 2-entry table */
	put_desc(f, 0, TABLE_GPA, 2 * sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "next is outside its table");
}

static void test_pop_breaks_on_bad_buffer_inside_indirect_table(void **state)
{
	struct fixture *f = *state;

	put_indirect(f, 0, RAM_SIZE - 4, 8, 0, 0);
	put_desc(f, 0, TABLE_GPA, sizeof(struct vring_desc), VRING_DESC_F_INDIRECT, 0);
	make_available(f, 0);
	assert_pop_breaks(f, "descriptor buffer lies outside guest RAM");
}

static void test_pop_breaks_on_avail_idx_more_than_size_ahead(void **state)
{
	struct fixture *f = *state;

	put_desc(f, 0, BUF_GPA, 8, 0, 0);
	gpa_write16(&f->mem, AVAIL_GPA + 2, QSIZE + 1);
	assert_pop_breaks(f, "more buffers available than the queue holds");
	gpa_write16(&f->mem, AVAIL_GPA + 2, 0x8000);
	assert_pop_breaks(f, "more buffers available than the queue holds");
	/* An index behind the device's by one is 65535 ahead. */
	gpa_write16(&f->mem, AVAIL_GPA + 2, (uint16_t)(f->vq.state.last_avail_idx - 1));
	assert_pop_breaks(f, "more buffers available than the queue holds");
}

static void test_pop_breaks_when_chain_exceeds_4_gib(void **state)
{
	/* 256 x 17 MiB readable buffers over one 32 MiB region (calloc'd lazily). */
	const uint64_t region = 32ULL << 20, piece = 17ULL << 20;
	struct fixture *f = *state;
	uint8_t *big = calloc(1, region);
	struct gmem mem;

	assert_non_null(big);
	assert_int_equal(gmem_layout(&mem, region), 0);
	mem.regions[0].host = big;
	vq_init(&f->vq, &mem, VQ_MAX_SIZE);
	f->vq.state.size = QSIZE;
	f->vq.state.desc_gpa = DESC_GPA;
	f->vq.state.avail_gpa = AVAIL_GPA;
	f->vq.state.used_gpa = USED_GPA;
	assert_int_equal(vq_check_config(&f->vq), 0);
	f->vq.state.ready = 1;
	for (unsigned int i = 0; i < VQ_MAX_CHAIN; i++) {
		struct vring_desc d = {.addr = 0,
				       .len = (uint32_t)piece,
				       .flags = i + 1 < VQ_MAX_CHAIN ? VRING_DESC_F_NEXT : 0,
				       .next = (uint16_t)(i + 1)};
		memcpy(big + TABLE_GPA + i * sizeof(d), &d, sizeof(d));
	}
	struct vring_desc outer = {.addr = TABLE_GPA,
				   .len = VQ_MAX_CHAIN * sizeof(struct vring_desc),
				   .flags = VRING_DESC_F_INDIRECT};
	memcpy(big + DESC_GPA, &outer, sizeof(outer));
	uint16_t one = 1;
	memcpy(big + AVAIL_GPA + 2, &one, 2);

	int rc = vq_pop(&f->vq, &f->chain);
	assert_int_equal(rc, -EIO);
	assert_non_null(f->vq.broken_reason);
	assert_non_null(strstr(f->vq.broken_reason, "longer than 4 GiB"));
	assert_int_equal(vq_pop(&f->vq, &f->chain), -EIO);

	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	free(big);
}

/* --- configuration checks ---------------------------------------------------------- */

static void set_config(struct fixture *f, uint16_t size, uint64_t desc, uint64_t avail,
		       uint64_t used)
{
	vq_reset(&f->vq);
	f->ring_size = size ? size : 1;
	f->vq.state.size = size;
	f->vq.state.desc_gpa = desc;
	f->vq.state.avail_gpa = avail;
	f->vq.state.used_gpa = used;
}

static void assert_config_breaks(struct fixture *f, const char *reason_part)
{
	assert_broken_until_reset(f, vq_check_config(&f->vq), reason_part);
}

static void test_check_config_rejects_sizes_not_power_of_2_or_above_max(void **state)
{
	struct fixture *f = *state;
	const uint16_t sizes[] = {3, 6, 12, 255, 257, 512, 0x8000, 0xffff};

	for (unsigned int i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		set_config(f, sizes[i], DESC_GPA, AVAIL_GPA, USED_GPA);
		assert_config_breaks(f, "power of 2");
	}
	/* Size 0 (QueueNum written as 0): checked without the vq_push of the helper above,
	 * which test_push_on_unready_queue_of_size_0_fails_without_crashing covers. */
	set_config(f, 0, DESC_GPA, AVAIL_GPA, USED_GPA);
	assert_int_equal(vq_check_config(&f->vq), -EIO);
	assert_int_equal(f->vq.state.broken, 1);
	assert_non_null(strstr(f->vq.broken_reason, "power of 2"));
	assert_int_equal(vq_pop(&f->vq, &f->chain), -EIO);
	assert_false(vq_has_available(&f->vq));
	/* A power of 2 above a smaller device maximum. */
	vq_init(&f->vq, &f->mem, 16);
	f->vq.state.size = 32;
	f->vq.state.desc_gpa = DESC_GPA;
	f->vq.state.avail_gpa = AVAIL_GPA;
	f->vq.state.used_gpa = USED_GPA;
	assert_int_equal(vq_check_config(&f->vq), -EIO);
	assert_int_equal(f->vq.state.broken, 1);
	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
}

static void test_check_config_accepts_every_power_of_2_up_to_max(void **state)
{
	struct fixture *f = *state;

	for (unsigned int size = 1; size <= VQ_MAX_SIZE; size <<= 1) {
		set_config(f, (uint16_t)size, DESC_GPA, AVAIL_GPA, USED_GPA);
		assert_int_equal(vq_check_config(&f->vq), 0);
		assert_int_equal(f->vq.state.broken, 0);
	}
}

static void test_check_config_rejects_misaligned_rings(void **state)
{
	struct fixture *f = *state;

	set_config(f, QSIZE, DESC_GPA + 8, AVAIL_GPA, USED_GPA);
	assert_config_breaks(f, "misaligned");
	set_config(f, QSIZE, DESC_GPA, AVAIL_GPA + 1, USED_GPA);
	assert_config_breaks(f, "misaligned");
	set_config(f, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA + 2);
	assert_config_breaks(f, "misaligned");
	/* The minimum alignments themselves are fine. */
	set_config(f, QSIZE, DESC_GPA + 16, AVAIL_GPA + 2, USED_GPA + 4);
	assert_int_equal(vq_check_config(&f->vq), 0);
}

static void test_check_config_rejects_rings_outside_ram(void **state)
{
	struct fixture *f = *state;
	const uint64_t avail_len = 6 + 2 * QSIZE, used_len = 6 + 8 * QSIZE;

	set_config(f, QSIZE, RAM_SIZE, AVAIL_GPA, USED_GPA);
	assert_config_breaks(f, "outside guest RAM");
	set_config(f, QSIZE, DESC_GPA, 1ULL << 40, USED_GPA);
	assert_config_breaks(f, "outside guest RAM");
	set_config(f, QSIZE, DESC_GPA, AVAIL_GPA, HIGH_GPA + HIGH_SIZE);
	assert_config_breaks(f, "outside guest RAM");
	/* Straddling the end of the low region. */
	set_config(f, QSIZE, RAM_SIZE - 16 * QSIZE + 16, AVAIL_GPA, USED_GPA);
	assert_config_breaks(f, "outside guest RAM");
	/* Only the trailing used_event / avail_event fields cross the end. */
	set_config(f, QSIZE, DESC_GPA, RAM_SIZE - avail_len + 2, USED_GPA);
	assert_config_breaks(f, "outside guest RAM");
	set_config(f, QSIZE, DESC_GPA, AVAIL_GPA, RAM_SIZE - used_len + 2);
	assert_config_breaks(f, "outside guest RAM");
	/* Near UINT64_MAX, so that address + length wraps. */
	set_config(f, QSIZE, UINT64_MAX - 15, AVAIL_GPA, USED_GPA);
	assert_config_breaks(f, "outside guest RAM");
}

static void test_check_config_accepts_rings_ending_at_region_ends(void **state)
{
	struct fixture *f = *state;
	const uint64_t avail_len = 6 + 2 * QSIZE;

	set_config(f, QSIZE, RAM_SIZE - 16 * QSIZE, RAM_SIZE - avail_len, HIGH_GPA);
	assert_int_equal(vq_check_config(&f->vq), 0);
	set_config(f, QSIZE, HIGH_GPA + HIGH_SIZE - 16 * QSIZE, HIGH_GPA, USED_GPA);
	assert_int_equal(vq_check_config(&f->vq), 0);
}

/* --- snapshots --------------------------------------------------------------------- */

static void test_restore_of_saved_state_continues_where_it_left_off(void **state)
{
	struct fixture *f = *state;
	struct vq_state saved;

	pop_and_push(f, 0);
	pop_and_push(f, 1);
	pop_and_push(f, 2);
	saved = f->vq.state;

	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	assert_int_equal(vq_restore(&f->vq, &saved), 0);
	assert_memory_equal(&f->vq.state, &saved, sizeof(saved));
	assert_null(f->vq.broken_reason);
	pop_and_push(f, 5);
	assert_int_equal(f->chain.head, 5);
	assert_int_equal(used_idx_in_ring(f), 4);
	assert_int_equal(used_elem(f, 3).id, 5);
}

static void test_restore_rejects_malformed_states_and_keeps_the_queue(void **state)
{
	struct fixture *f = *state;
	struct vq_state before = f->vq.state, bad;

	bad = before;
	bad.max_size = 128;
	assert_int_equal(vq_restore(&f->vq, &bad), -EINVAL);
	bad = before;
	bad.ready = 2;
	assert_int_equal(vq_restore(&f->vq, &bad), -EINVAL);
	bad = before;
	bad.broken = 2;
	assert_int_equal(vq_restore(&f->vq, &bad), -EINVAL);
	assert_memory_equal(&f->vq.state, &before, sizeof(before));
}

static void test_restore_rejects_ready_queue_with_bad_config(void **state)
{
	struct fixture *f = *state;
	struct vq_state good = f->vq.state, bad;
	const struct {
		uint16_t size;
		uint64_t desc, avail, used;
	} cases[] = {
	    {0, DESC_GPA, AVAIL_GPA, USED_GPA},		{3, DESC_GPA, AVAIL_GPA, USED_GPA},
	    {512, DESC_GPA, AVAIL_GPA, USED_GPA},	{QSIZE, DESC_GPA + 4, AVAIL_GPA, USED_GPA},
	    {QSIZE, DESC_GPA, AVAIL_GPA + 1, USED_GPA}, {QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA + 2},
	    {QSIZE, RAM_SIZE, AVAIL_GPA, USED_GPA},	{QSIZE, DESC_GPA, UINT64_MAX - 1, USED_GPA},
	    {QSIZE, DESC_GPA, AVAIL_GPA, RAM_SIZE - 8},
	};

	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
		bad = good;
		bad.size = cases[i].size;
		bad.desc_gpa = cases[i].desc;
		bad.avail_gpa = cases[i].avail;
		bad.used_gpa = cases[i].used;
		if (vq_restore(&f->vq, &bad) != -EINVAL)
			fail_msg("case %u: restore accepted a ready queue with a bad config", i);
		assert_int_equal(f->vq.state.ready, 0);
		assert_false(vq_needs_interrupt(&f->vq));
		assert_false(vq_has_available(&f->vq));
		assert_int_not_equal(vq_pop(&f->vq, &f->chain), 1);
	}
}

static void test_restore_of_broken_queue_keeps_it_broken_until_reset(void **state)
{
	struct fixture *f = *state;
	struct vq_state s = f->vq.state;

	s.broken = 1;
	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	assert_int_equal(vq_restore(&f->vq, &s), 0);
	assert_broken_until_reset(f, vq_pop(&f->vq, &f->chain), "broken before the snapshot");
}

static void test_restore_accepts_unready_queue_and_checks_config_when_ready(void **state)
{
	struct fixture *f = *state;
	struct vq_state s = f->vq.state;

	s.ready = 0;
	s.size = 3; /* a driver mid-setup: checked when it sets QueueReady */
	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	assert_int_equal(vq_restore(&f->vq, &s), 0);
	assert_int_equal(vq_pop(&f->vq, &f->chain), 0);
	assert_int_equal(vq_check_config(&f->vq), -EIO);
}

/*
 * A queue that broke while ready was validated when it became ready, so a genuine
 * snapshot of one has rings inside RAM. A crafted one need not: restore must still check
 * the rings of any ready queue, because vq_needs_interrupt() reads the avail ring of a
 * ready queue whether or not it is broken.
 */
static void test_restore_rejects_ready_broken_queue_with_rings_outside_ram(void **state)
{
	struct fixture *f = *state;
	struct vq_state s = f->vq.state;

	s.broken = 1;
	s.avail_gpa = 1ULL << 40;
	s.used_gpa = 1ULL << 40;
	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	assert_int_equal(vq_restore(&f->vq, &s), -EINVAL);
	assert_int_equal(f->vq.state.ready, 0);
}

static int probe_ready_broken_queue_outside_ram(struct fixture *f)
{
	struct vq_state s = f->vq.state;

	s.broken = 1;
	s.event_idx = 1;
	s.avail_gpa = 1ULL << 40;
	s.used_gpa = 1ULL << 40;
	vq_init(&f->vq, &f->mem, VQ_MAX_SIZE);
	(void)vq_restore(&f->vq, &s);
	(void)vq_has_available(&f->vq);
	vq_set_notification(&f->vq, true);
	(void)vq_needs_interrupt(&f->vq);
	f->vq.state.event_idx = 0;
	(void)vq_needs_interrupt(&f->vq);
	if (vq_pop(&f->vq, &f->chain) == 1)
		return 2;
	if (vq_push(&f->vq, 0, 0) == 0)
		return 3;
	return 0;
}

static void test_restored_ready_broken_queue_with_rings_outside_ram_is_safe_to_use(void **state)
{
	assert_survives(*state, probe_ready_broken_queue_outside_ram,
			"vq_* on a restored ready+broken queue with rings outside RAM");
}

static int probe_push_on_size_0_queue(struct fixture *f)
{
	/* QueueNum may be written as 0 while the queue is not ready; a device completing an
	 * old request after a reset then pushes onto such a queue. */
	vq_reset(&f->vq);
	f->vq.state.size = 0;
	return vq_push(&f->vq, 0, 0) == -EIO ? 0 : 2;
}

static void test_push_on_unready_queue_of_size_0_fails_without_crashing(void **state)
{
	assert_survives(*state, probe_push_on_size_0_queue, "vq_push on an unready size-0 queue");
}

#define T(name)	 cmocka_unit_test_setup_teardown(name, setup, teardown)
#define TR(name) cmocka_unit_test_setup_teardown(name, ready_setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_pop_returns_0_when_not_ready_or_empty),
	    TR(test_pop_single_readable_descriptor),
	    TR(test_pop_multi_descriptor_chain_readable_then_writable),
	    TR(test_pop_writable_only_chain),
	    TR(test_pop_indirect_table_chain),
	    TR(test_pop_direct_descriptor_followed_by_indirect_table),
	    TR(test_pop_skips_zero_length_descriptors_without_checking_their_address),
	    TR(test_pop_accepts_buffers_ending_exactly_at_region_ends),
	    TR(test_pop_accepts_chain_of_exactly_max_chain_descriptors),
	    TR(test_pops_follow_avail_ring_order_and_push_fills_used_ring),
	    TR(test_ring_indices_wrap_from_65535_to_0),
	    TR(test_ring_indices_wrap_when_driven_through_70000_chains),
	    TR(test_avail_idx_exactly_size_ahead_is_accepted),
	    TR(test_needs_interrupt_is_false_when_not_ready),
	    TR(test_needs_interrupt_honours_no_interrupt_flag),
	    TR(test_needs_interrupt_with_event_idx_fires_only_when_used_event_is_passed),
	    TR(test_needs_interrupt_with_event_idx_across_index_wrap),
	    TR(test_needs_interrupt_without_event_idx_ignores_used_event),
	    TR(test_dirty_tracking_marks_writable_buffers_and_used_ring_writes),
	    TR(test_set_notification_without_event_idx_writes_used_flags),
	    TR(test_set_notification_with_event_idx_writes_avail_event),
	    TR(test_set_notification_writes_nothing_when_not_ready_or_broken),
	    TR(test_chain_read_crosses_iov_boundaries_from_an_offset),
	    TR(test_chain_write_crosses_iov_boundaries_and_stays_in_writable_part),
	    TR(test_chain_write_on_readable_only_chain_copies_nothing),
	    TR(test_pop_breaks_on_next_index_loop),
	    TR(test_pop_breaks_on_descriptor_pointing_at_itself),
	    TR(test_pop_breaks_on_chain_longer_than_max_chain),
	    TR(test_pop_breaks_on_head_index_at_or_above_size),
	    TR(test_pop_breaks_on_next_index_at_or_above_size),
	    TR(test_pop_breaks_on_buffer_outside_guest_memory),
	    TR(test_pop_breaks_on_address_plus_length_overflow),
	    TR(test_pop_breaks_on_buffer_crossing_the_end_of_memory),
	    TR(test_pop_breaks_on_bad_buffer_later_in_the_chain),
	    TR(test_pop_breaks_on_readable_after_writable),
	    TR(test_pop_breaks_on_readable_after_writable_inside_indirect_table),
	    TR(test_pop_breaks_on_indirect_with_next),
	    TR(test_pop_breaks_on_indirect_inside_indirect),
	    TR(test_pop_breaks_on_indirect_table_of_bad_length),
	    TR(test_pop_breaks_on_indirect_table_outside_guest_memory),
	    TR(test_pop_breaks_on_indirect_loop),
	    TR(test_pop_breaks_on_indirect_next_outside_its_table),
	    TR(test_pop_breaks_on_bad_buffer_inside_indirect_table),
	    TR(test_pop_breaks_on_avail_idx_more_than_size_ahead),
	    TR(test_pop_breaks_when_chain_exceeds_4_gib),
	    T(test_check_config_rejects_sizes_not_power_of_2_or_above_max),
	    T(test_check_config_accepts_every_power_of_2_up_to_max),
	    T(test_check_config_rejects_misaligned_rings),
	    T(test_check_config_rejects_rings_outside_ram),
	    T(test_check_config_accepts_rings_ending_at_region_ends),
	    TR(test_restore_of_saved_state_continues_where_it_left_off),
	    TR(test_restore_rejects_malformed_states_and_keeps_the_queue),
	    TR(test_restore_rejects_ready_queue_with_bad_config),
	    TR(test_restore_of_broken_queue_keeps_it_broken_until_reset),
	    TR(test_restore_accepts_unready_queue_and_checks_config_when_ready),
	    TR(test_restore_rejects_ready_broken_queue_with_rings_outside_ram),
	    TR(test_restored_ready_broken_queue_with_rings_outside_ram_is_safe_to_use),
	    TR(test_push_on_unready_queue_of_size_0_fails_without_crashing),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
