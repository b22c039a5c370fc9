/*
 * libFuzzer target for the split virtqueue (vmm/devices/virtio/virtqueue.c).
 *
 * Input: a 32-byte header that picks the queue configuration, then a guest memory image.
 * Everything the driver controls (descriptor table, avail ring, indirect tables, used
 * ring contents, buffers) comes from the image, so the fuzzer plays a hostile driver.
 *
 *   offset size  field
 *   0      1     size choice: queue_sizes[byte % 16] (valid and invalid sizes)
 *   1      1     flags: bit 0 EVENT_IDX, bit 1 two-region memory, bit 2 start through
 *                vq_restore() (else vq_check_config() like QueueReady), bit 3 start with
 *                notifications enabled, bit 4 push the full writable length (else half),
 *                bit 5 signalled_valid in the restored state, bit 6 restore a broken
 *                queue
 *   2      2     start index (le16): last_avail_idx = used_idx = signalled_used (restore)
 *   4      1     pop budget: 1 + byte % 64
 *   5      1     restored ready value: 0 -> 1, n -> n - 1 (so 1 restores an unready
 *                queue and 3 and up are malformed)
 *   6      2     unused
 *   8      8     desc_gpa (le64)
 *   16     8     avail_gpa (le64)
 *   24     8     used_gpa (le64)
 *   32     ...   guest memory image, copied from guest address 0 on (the rest is zero)
 *
 * Memory: one 64 KiB region at 0, or (flag bit 1) 32 KiB at 0 and 32 KiB at 0x10000 with
 * a gap between. Each region is its own heap block, so ASan sees any access outside.
 *
 * Invariants (a violation calls __builtin_trap()): every iov lies inside one region's
 * host buffer and is non-empty; readable_len/writable_len are the iov sums;
 * nr_readable + nr_writable <= VQ_MAX_CHAIN; the head is < size; the chain copies move
 * exactly the chain's bytes; an accepted configuration really lies in guest RAM; a pop
 * returns 1, 0 or -EIO and -EIO leaves the queue broken (with a reason) for good; a push
 * of a popped chain succeeds and publishes the right used element and index; a second
 * vq_needs_interrupt() without a push is false; vq_set_notification() writes the flags
 * or avail_event it should.
 *
 * It also probes two bugs it found and that are fixed (vq_push on a size-0 queue,
 * restoring a ready+broken queue with rings outside RAM).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ivmm tests/fuzz/fuzz_virtqueue.c \
 *          vmm/devices/virtio/virtqueue.c vmm/memory.c vmm/log.c -o /tmp/fuzz_vq
 */
#include "memory.h"
#include "devices/virtio/virtqueue.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

#define HEADER_SIZE 32
#define MEM_SIZE    0x10000ULL
#define HALF_SIZE   0x8000ULL
#define HIGH_GPA    0x10000ULL
#define MAX_POPS    64
/* The most a chain can hold: VQ_MAX_CHAIN buffers of at most one region each. */
#define SCRATCH_SIZE (VQ_MAX_CHAIN * MEM_SIZE)

#define F_EVENT_IDX	  0x01
#define F_TWO_REGIONS	  0x02
#define F_RESTORE	  0x04
#define F_NOTIFY	  0x08
#define F_FULL_PUSH	  0x10
#define F_SIGNALLED_VALID 0x20
#define F_BROKEN	  0x40

static const uint16_t queue_sizes[16] = {1,   2, 4, 8, 16,  32,	 64,  128,
					 256, 0, 3, 6, 255, 257, 512, 0xffff};

static uint8_t *one_region;	      /* MEM_SIZE bytes */
static uint8_t *low_half, *high_half; /* HALF_SIZE bytes each */
static uint8_t *scratch;
static struct vq_chain chain;

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;
	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Independent of gmem_ptr(): the host address of [gpa, gpa + len) if one region holds it. */
static uint8_t *guest(const struct gmem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *r = &mem->regions[i];
		unsigned __int128 end = (unsigned __int128)gpa + len;
		if (gpa >= r->gpa && end <= (unsigned __int128)r->gpa + r->size)
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

static bool inside_a_region(const struct gmem *mem, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *r = &mem->regions[i];
		if (b >= r->host && len <= r->size && b - r->host <= (ptrdiff_t)(r->size - len))
			return true;
	}
	return false;
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

/* Dirty tracking is on: every page of a device-writable buffer must be marked once popped. */
static uint64_t dirty_bits[GMEM_MAX_REGIONS][(MEM_SIZE / 4096 + 63) / 64];

static bool all_marked(const struct gmem *mem, const void *p, size_t len)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *r = &mem->regions[i];
		if ((const uint8_t *)p < r->host || (const uint8_t *)p >= r->host + r->size)
			continue;
		uint64_t offset = (uint64_t)((const uint8_t *)p - r->host);
		for (uint64_t page = offset / 4096; page <= (offset + len - 1) / 4096; page++)
			if (!(r->dirty[page / 64] & (1ULL << (page % 64))))
				return false;
		return true;
	}
	return false;
}

static void track_dirty(struct gmem *mem)
{
	memset(dirty_bits, 0, sizeof(dirty_bits));
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		CHECK(gmem_bitmap_words(&mem->regions[i]) <= sizeof(dirty_bits[i]) / 8);
		mem->regions[i].dirty = dirty_bits[i];
	}
	mem->tracking_dirty = true;
}

static void lay_out_memory(struct gmem *mem, bool two_regions, const uint8_t *image, size_t len)
{
	memset(mem, 0, sizeof(*mem));
	if (two_regions) {
		size_t low = len < HALF_SIZE ? len : HALF_SIZE;
		size_t high = len - low < HALF_SIZE ? len - low : HALF_SIZE;
		memset(low_half, 0, HALF_SIZE);
		memset(high_half, 0, HALF_SIZE);
		memcpy(low_half, image, low);
		memcpy(high_half, image + low, high);
		mem->regions[0] =
		    (struct gmem_region){.gpa = 0, .size = HALF_SIZE, .host = low_half};
		mem->regions[1] =
		    (struct gmem_region){.gpa = HIGH_GPA, .size = HALF_SIZE, .host = high_half};
		mem->nr_regions = 2;
		mem->total_size = 2 * HALF_SIZE;
	} else {
		CHECK(gmem_layout(mem, MEM_SIZE) == 0);
		memset(one_region, 0, MEM_SIZE);
		memcpy(one_region, image, len < MEM_SIZE ? len : MEM_SIZE);
		mem->regions[0].host = one_region;
	}
	track_dirty(mem);
}

/* The queue is broken for good: every entry point refuses it until a reset. */
static void check_broken(struct virtqueue *vq)
{
	CHECK(vq->state.broken == 1);
	CHECK(vq->broken_reason != NULL && vq->broken_reason[0] != '\0');
	CHECK(vq_pop(vq, &chain) == -EIO);
	CHECK(!vq_has_available(vq));
	CHECK(vq_push(vq, 0, 0) == -EIO);
}

static void check_chain(const struct gmem *mem, const struct virtqueue *vq)
{
	uint64_t readable = 0, writable = 0;
	unsigned int nr = chain.nr_readable + chain.nr_writable;

	CHECK(chain.head < vq->state.size);
	CHECK(nr <= VQ_MAX_CHAIN);
	for (unsigned int i = 0; i < nr; i++) {
		CHECK(chain.iov[i].iov_len > 0);
		CHECK(inside_a_region(mem, chain.iov[i].iov_base, chain.iov[i].iov_len));
		if (i < chain.nr_readable) {
			readable += chain.iov[i].iov_len;
		} else {
			writable += chain.iov[i].iov_len;
			CHECK(all_marked(mem, chain.iov[i].iov_base, chain.iov[i].iov_len));
		}
	}
	CHECK(readable == chain.readable_len);
	CHECK(writable == chain.writable_len);
	CHECK(readable <= SCRATCH_SIZE && writable <= SCRATCH_SIZE);
}

static void copy_chain(void)
{
	size_t n, at = 0;

	/* Read everything readable and compare it with the buffers themselves. */
	n = vq_chain_read(&chain, 0, scratch, chain.readable_len);
	CHECK(n == chain.readable_len);
	for (unsigned int i = 0; i < chain.nr_readable; i++) {
		CHECK(memcmp(scratch + at, chain.iov[i].iov_base, chain.iov[i].iov_len) == 0);
		at += chain.iov[i].iov_len;
	}
	CHECK(vq_chain_read(&chain, chain.readable_len, scratch, 1) == 0);
	if (chain.readable_len > 1) /* a copy that starts and ends inside buffers */
		CHECK(vq_chain_read(&chain, 1, scratch, chain.readable_len / 2) ==
		      chain.readable_len / 2);
	CHECK(vq_chain_read(&chain, chain.readable_len / 2, scratch, SCRATCH_SIZE) ==
	      chain.readable_len - chain.readable_len / 2);

	/* Write everything writable (the readable bytes, whatever they were). */
	n = vq_chain_write(&chain, 0, scratch, chain.writable_len);
	CHECK(n == chain.writable_len);
	CHECK(vq_chain_write(&chain, chain.writable_len, scratch, 1) == 0);
	CHECK(vq_chain_write(&chain, chain.writable_len / 3, scratch, SCRATCH_SIZE) ==
	      chain.writable_len - chain.writable_len / 3);
}

static void check_config_accepted(const struct gmem *mem, const struct vq_state *s)
{
	CHECK(s->size >= 1 && s->size <= s->max_size && !(s->size & (s->size - 1)));
	CHECK(!(s->desc_gpa & 15) && !(s->avail_gpa & 1) && !(s->used_gpa & 3));
	CHECK(guest(mem, s->desc_gpa, 16ULL * s->size));
	CHECK(guest(mem, s->avail_gpa, 6 + 2ULL * s->size));
	CHECK(guest(mem, s->used_gpa, 6 + 8ULL * s->size));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	one_region = malloc(MEM_SIZE);
	low_half = malloc(HALF_SIZE);
	high_half = malloc(HALF_SIZE);
	scratch = malloc(SCRATCH_SIZE);
	if (!one_region || !low_half || !high_half || !scratch)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gmem mem;
	struct virtqueue vq;
	struct vq_state *s = &vq.state;
	uint8_t flags;
	unsigned int budget;
	bool notify;
	int rc;

	if (size < HEADER_SIZE)
		return 0;
	flags = data[1];
	budget = 1 + data[4] % MAX_POPS;
	notify = flags & F_NOTIFY;
	lay_out_memory(&mem, flags & F_TWO_REGIONS, data + HEADER_SIZE, size - HEADER_SIZE);

	vq_init(&vq, &mem, VQ_MAX_SIZE);
	s->size = queue_sizes[data[0] % 16];
	s->desc_gpa = le(data + 8, 8);
	s->avail_gpa = le(data + 16, 8);
	s->used_gpa = le(data + 24, 8);
	s->event_idx = flags & F_EVENT_IDX;

	if (flags & F_RESTORE) {
		struct vq_state saved = *s;
		saved.ready = data[5] == 0 ? 1 : (uint8_t)(data[5] - 1);
		saved.last_avail_idx = saved.used_idx = saved.signalled_used =
		    (uint16_t)le(data + 2, 2);
		saved.signalled_valid = !!(flags & F_SIGNALLED_VALID);
		saved.broken = !!(flags & F_BROKEN);
		rc = vq_restore(&vq, &saved);
		CHECK(rc == 0 || rc == -EINVAL);
		if (rc) {
			CHECK(!s->ready);
			CHECK(vq_pop(&vq, &chain) != 1);
			CHECK(!vq_needs_interrupt(&vq));
			return 0;
		}
		if (!s->ready) {
			/* Restored unready: inert until a QueueReady checks its config. */
			CHECK(vq_pop(&vq, &chain) == (s->broken ? -EIO : 0));
			CHECK(!vq_has_available(&vq) && !vq_needs_interrupt(&vq));
			vq_set_notification(&vq, true);
			return 0;
		}
		if (s->broken) {
			/* Whatever the snapshot said, a broken queue is inert and safe to poke. */
			check_broken(&vq);
			(void)vq_needs_interrupt(&vq);
			vq_set_notification(&vq, true);
			return 0;
		}
	} else {
		rc = vq_check_config(&vq);
		CHECK(rc == 0 || rc == -EIO);
		if (rc) {
			check_broken(&vq);
			return 0;
		}
		s->ready = 1;
	}
	check_config_accepted(&mem, s);
	uint8_t *avail = guest(&mem, s->avail_gpa, 6 + 2ULL * s->size);
	uint8_t *used = guest(&mem, s->used_gpa, 6 + 8ULL * s->size);

	for (unsigned int i = 0; i < budget; i++) {
		bool had = vq_has_available(&vq);
		uint16_t before = s->last_avail_idx;
		uint32_t written;

		CHECK(had == (get16(avail + 2) != before));

		rc = vq_pop(&vq, &chain);
		if (rc == 0) {
			CHECK(!had);
			CHECK(s->last_avail_idx == before);
			break;
		}
		if (rc != 1) {
			CHECK(rc == -EIO);
			check_broken(&vq);
			break;
		}
		CHECK(had);
		CHECK(s->last_avail_idx == (uint16_t)(before + 1));
		check_chain(&mem, &vq);
		copy_chain();

		written = flags & F_FULL_PUSH ? chain.writable_len : chain.writable_len / 2;
		CHECK(vq_push(&vq, chain.head, written) == 0);
		CHECK(get16(used + 2) == s->used_idx);
		uint16_t slot = (uint16_t)(s->used_idx - 1) % s->size;
		struct vring_used_elem elem;
		memcpy(&elem, used + 4 + 8ULL * slot, sizeof(elem));
		CHECK(elem.id == chain.head && elem.len == written);

		(void)vq_needs_interrupt(&vq);
		CHECK(!vq_needs_interrupt(&vq));

		notify = !notify;
		uint16_t flags_before = get16(used);
		vq_set_notification(&vq, notify);
		if (s->event_idx) {
			if (notify)
				CHECK(get16(used + 4 + 8ULL * s->size) == s->last_avail_idx);
			CHECK(get16(used) == flags_before);
		} else {
			CHECK(get16(used) == (notify ? 0 : VRING_USED_F_NO_NOTIFY));
		}
	}

	/* A reset always brings the queue back to a clean, unready state. */
	vq_reset(&vq);
	CHECK(!s->ready && !s->broken && vq.broken_reason == NULL);
	CHECK(vq_pop(&vq, &chain) == 0);
	return 0;
}
