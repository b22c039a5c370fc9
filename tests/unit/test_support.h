/*
 * Helpers the unit tests share: fake guest memory, little-endian loads and stores, the
 * driver's side of a split virtqueue, a fake interrupt line that records its calls, and
 * register access through a device's bus ops. Header-only (static inline), so every test
 * binary still builds from its own .c file.
 */
#ifndef WISP_TEST_SUPPORT_H
#define WISP_TEST_SUPPORT_H

#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memory.h"
#include "devices/device.h"
#include "devices/virtio/virtqueue.h"

/* ---- little-endian loads and stores (the guest's byte order, and the host's) ---- */

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the tests assume a little-endian host");

static inline uint16_t get_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t get_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t get_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void put_le16(void *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void put_le32(void *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* Byte i of [p, p + len) becomes seed + i * step (mod 256). */
static inline void fill_pattern(void *p, size_t len, uint8_t seed, uint8_t step)
{
	uint8_t *bytes = p;
	for (size_t i = 0; i < len; i++)
		bytes[i] = (uint8_t)(seed + i * step);
}

/* ---- fake guest memory ---- */

/*
 * Lays `mem` out for `layout_size` bytes of guest RAM and backs its first region with a
 * new host buffer of `backed` bytes, every byte `fill` (calloc'd when 0). `backed` may be
 * less than the region when a test only touches its start: ASan then reports any access
 * beyond. Returns the buffer, for free(), or NULL (nothing left allocated) on failure.
 */
static inline uint8_t *fake_ram_new(struct gmem *mem, uint64_t layout_size, size_t backed,
				    uint8_t fill)
{
	uint8_t *ram = fill ? malloc(backed) : calloc(1, backed);

	if (!ram || gmem_layout(mem, layout_size)) {
		free(ram);
		return NULL;
	}
	if (fill)
		memset(ram, fill, backed);
	mem->regions[0].host = ram;
	return ram;
}

/* A fake guest whose RAM a test reads back directly: the state of guest_setup_with(). */
struct guest {
	struct gmem mem;
	uint8_t *ram;
};

/* The body of a cmocka setup: a struct guest made by fake_ram_new(). */
static inline int guest_setup_with(void **state, uint64_t layout_size, size_t backed, uint8_t fill)
{
	struct guest *g = calloc(1, sizeof(*g));

	if (!g)
		return -1;
	g->ram = fake_ram_new(&g->mem, layout_size, backed, fill);
	if (!g->ram) {
		free(g);
		return -1;
	}
	*state = g;
	return 0;
}

static inline int guest_teardown(void **state)
{
	struct guest *g = *state;
	free(g->ram);
	free(g);
	return 0;
}

static inline uint64_t guest_u64(const struct guest *g, uint64_t gpa)
{
	return get_le64(g->ram + gpa);
}

/* The host address of [gpa, gpa + len), which must lie in guest memory. */
static inline void *gpa_ptr(const struct gmem *mem, uint64_t gpa, uint64_t len)
{
	void *p = gmem_ptr(mem, gpa, len);
	assert_non_null(p);
	return p;
}

static inline uint16_t gpa_read16(const struct gmem *mem, uint64_t gpa)
{
	return get_le16(gpa_ptr(mem, gpa, 2));
}

static inline void gpa_write16(const struct gmem *mem, uint64_t gpa, uint16_t v)
{
	put_le16(gpa_ptr(mem, gpa, 2), v);
}

/* ---- the driver's side of a split virtqueue ---- */

/* Slot `slot` of the used ring at `used`. */
static inline struct vring_used_elem used_elem_at(const struct gmem *mem, uint64_t used,
						  uint16_t slot)
{
	struct vring_used_elem e;
	memcpy(&e, gpa_ptr(mem, used + 4 + 8ULL * slot, sizeof(e)), sizeof(e));
	return e;
}

/* One buffer of a descriptor chain. */
struct seg {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};

/* A queue as the driver sees it: where its rings are and what it has put in them. */
struct guest_queue {
	uint64_t desc, avail, used;
	uint16_t size;
	uint16_t next_desc, avail_idx;
};

/* Puts `segs` in the next `nr` descriptors (in ring order, wrapping) as one chain and
 * publishes its head in the avail ring; returns the head. */
static inline uint16_t guest_queue_add_chain(const struct gmem *mem, struct guest_queue *q,
					     const struct seg *segs, unsigned int nr)
{
	struct vring_desc *table = gpa_ptr(mem, q->desc, sizeof(*table) * q->size);
	uint16_t head = q->next_desc, *ring = gpa_ptr(mem, q->avail, 4 + 2ULL * q->size);

	for (unsigned int i = 0; i < nr; i++) {
		uint16_t d = (uint16_t)((head + i) % q->size);
		table[d] = (struct vring_desc){
		    .addr = segs[i].gpa,
		    .len = segs[i].len,
		    .flags = (uint16_t)((segs[i].writable ? VRING_DESC_F_WRITE : 0) |
					(i + 1 < nr ? VRING_DESC_F_NEXT : 0)),
		    .next = (uint16_t)((d + 1) % q->size)};
	}
	q->next_desc = (uint16_t)((head + nr) % q->size);
	ring[2 + q->avail_idx % q->size] = head;
	q->avail_idx++;
	__atomic_store_n(&ring[1], q->avail_idx, __ATOMIC_RELEASE);
	return head;
}

static inline uint16_t guest_queue_used_idx(const struct gmem *mem, const struct guest_queue *q)
{
	return __atomic_load_n((uint16_t *)gpa_ptr(mem, q->used + 2, 2), __ATOMIC_ACQUIRE);
}

/* The used ring entry for the i-th buffer the device returned (i counts on past size). */
static inline struct vring_used_elem guest_queue_used_elem(const struct gmem *mem,
							   const struct guest_queue *q, uint16_t i)
{
	return used_elem_at(mem, q->used, (uint16_t)(i % q->size));
}

/* ---- a fake interrupt line that records every call ---- */

#define MAX_IRQ_CALLS 256

struct irq_record {
	unsigned int calls;
	unsigned int raises; /* calls with level 1 */
	unsigned int irq[MAX_IRQ_CALLS];
	int level[MAX_IRQ_CALLS];
};

static inline void fake_irq_set(void *opaque, unsigned int irq, int level)
{
	struct irq_record *rec = opaque;
	assert_true(rec->calls < MAX_IRQ_CALLS);
	rec->irq[rec->calls] = irq;
	rec->level[rec->calls] = level;
	rec->calls++;
	if (level)
		rec->raises++;
}

/* An interrupt line `irq` whose level changes go to `rec`. */
static inline struct irq_line irq_record_line(struct irq_record *rec, unsigned int irq)
{
	return (struct irq_line){.set = fake_irq_set, .opaque = rec, .irq = irq};
}

static inline int last_level(const struct irq_record *rec)
{
	assert_true(rec->calls > 0);
	return rec->level[rec->calls - 1];
}

/* ---- register access the way the bus makes it ---- */

/* Reads `len` (1 to 4) bytes at `offset` through `ops` into a value preset to `preset`,
 * so that bytes the device leaves alone show. */
static inline uint32_t reg_read(const struct device_ops *ops, void *dev, uint64_t offset,
				uint32_t len, uint32_t preset)
{
	uint32_t value = preset;
	ops->read(dev, offset, (uint8_t *)&value, len);
	return value;
}

/* Writes the low `len` (1 to 4) bytes of `value` at `offset` through `ops`. */
static inline void reg_write(const struct device_ops *ops, void *dev, uint64_t offset, uint32_t len,
			     uint32_t value)
{
	ops->write(dev, offset, (const uint8_t *)&value, len);
}

/* ---- ELF images ---- */

/* A little-endian x86-64 ET_EXEC header: entry point and program header table given. */
static inline void elf_exec_header(Elf64_Ehdr *h, uint64_t entry, uint64_t phoff, uint16_t phnum)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->e_ident, ELFMAG, SELFMAG);
	h->e_ident[EI_CLASS] = ELFCLASS64;
	h->e_ident[EI_DATA] = ELFDATA2LSB;
	h->e_ident[EI_VERSION] = EV_CURRENT;
	h->e_type = ET_EXEC;
	h->e_machine = EM_X86_64;
	h->e_version = EV_CURRENT;
	h->e_entry = entry;
	h->e_phoff = phoff;
	h->e_ehsize = sizeof(Elf64_Ehdr);
	h->e_phentsize = sizeof(Elf64_Phdr);
	h->e_phnum = phnum;
}

#endif
