#include "virtqueue.h"

#include <errno.h>
#include <string.h>

/*
 * Dirty tracking (diff snapshots): KVM's dirty log sees only the guest's writes, so every
 * write wisp makes into guest memory marks its pages with gmem_mark_dirty() (a no-op unless
 * gmem_track_dirty() was called). All of them go through here or gmem_write():
 * - the used ring: the element (vq_push, via gmem_write), used->idx (vq_push), used->flags
 *   and avail_event (vq_set_notification);
 * - every device-writable buffer, marked when vq_pop hands it out (chain_add), before any
 *   device writes it: virtio-blk's read data, its GET_ID string and status byte (blk.c,
 *   blk_io.c preadv/io_uring), virtio-net's received frames and headers (net_rx.c readv,
 *   vq_chain_write). A chain given back with vq_unpop stays marked: a page marked but not
 *   written only makes a diff a page larger.
 * Boot-time writes (kernel, command line, boot parameters, page tables: loader.c, boot.c,
 * cpu.c, pvh.c) come before any snapshot a diff could be taken against.
 */

#define DESC_SIZE sizeof(struct vring_desc)

static int vq_break(struct virtqueue *vq, const char *reason)
{
	vq->state.broken = 1;
	vq->broken_reason = reason;
	return -EIO;
}

void vq_init(struct virtqueue *vq, const struct gmem *mem, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->state.max_size = max_size;
	vq->state.size = max_size;
}

void vq_reset(struct virtqueue *vq)
{
	vq_init(vq, vq->mem, vq->state.max_size);
}

static uint64_t avail_bytes(uint16_t size)
{
	return 6 + 2ULL * size; /* flags, idx, ring[size], used_event */
}

static uint64_t used_bytes(uint16_t size)
{
	return 6 + 8ULL * size; /* flags, idx, ring[size], avail_event */
}

int vq_check_config(struct virtqueue *vq)
{
	struct vq_state *s = &vq->state;

	if (s->size == 0 || s->size > s->max_size || (s->size & (s->size - 1)))
		return vq_break(vq, "queue size is not a power of 2 within the maximum");
	if ((s->desc_gpa & 15) || (s->avail_gpa & 1) || (s->used_gpa & 3))
		return vq_break(vq, "a ring is misaligned");
	if (!gmem_ptr(vq->mem, s->desc_gpa, DESC_SIZE * s->size) ||
	    !gmem_ptr(vq->mem, s->avail_gpa, avail_bytes(s->size)) ||
	    !gmem_ptr(vq->mem, s->used_gpa, used_bytes(s->size)))
		return vq_break(vq, "a ring lies outside guest RAM");
	return 0;
}

/* The rings were checked when the queue became ready; these cannot fail after that. */
static uint16_t *avail_field(struct virtqueue *vq, uint64_t offset)
{
	return gmem_ptr(vq->mem, vq->state.avail_gpa + offset, 2);
}

static uint16_t *used_field(struct virtqueue *vq, uint64_t offset)
{
	return gmem_ptr(vq->mem, vq->state.used_gpa + offset, 2);
}

/* Every store into the used ring goes through here: it is a write into guest memory. */
static void store_used16(struct virtqueue *vq, uint64_t offset, uint16_t v)
{
	__atomic_store_n(used_field(vq, offset), v, __ATOMIC_RELEASE);
	gmem_mark_dirty(vq->mem, vq->state.used_gpa + offset, 2);
}

static uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

bool vq_has_available(struct virtqueue *vq)
{
	if (!vq->state.ready || vq->state.broken)
		return false;
	return load16(avail_field(vq, 2)) != vq->state.last_avail_idx;
}

/* Adds one descriptor's buffer to the chain, enforcing "readable before writable". */
static int chain_add(struct virtqueue *vq, struct vq_chain *chain, const struct vring_desc *desc,
		     unsigned int *count)
{
	void *host;

	if (++*count > VQ_MAX_CHAIN)
		return vq_break(vq, "descriptor chain is too long (a loop?)");
	if (desc->len == 0)
		return 0;
	host = gmem_ptr(vq->mem, desc->addr, desc->len);
	if (!host)
		return vq_break(vq, "descriptor buffer lies outside guest RAM");
	if (desc->flags & VRING_DESC_F_WRITE) {
		if ((uint64_t)chain->writable_len + desc->len > UINT32_MAX)
			return vq_break(vq, "descriptor chain is longer than 4 GiB");
		chain->writable_len += desc->len;
		chain->nr_writable++;
		gmem_mark_dirty(vq->mem, desc->addr, desc->len);
	} else {
		if (chain->nr_writable)
			return vq_break(vq, "readable descriptor after a writable one");
		if ((uint64_t)chain->readable_len + desc->len > UINT32_MAX)
			return vq_break(vq, "descriptor chain is longer than 4 GiB");
		chain->readable_len += desc->len;
		chain->nr_readable++;
	}
	chain->iov[chain->nr_readable + chain->nr_writable - 1] =
	    (struct iovec){.iov_base = host, .iov_len = desc->len};
	return 0;
}

static int walk_indirect(struct virtqueue *vq, struct vq_chain *chain,
			 const struct vring_desc *outer, unsigned int *count)
{
	const struct vring_desc *table;
	uint32_t nr;
	int err;

	if (outer->flags & VRING_DESC_F_NEXT)
		return vq_break(vq, "indirect descriptor also has NEXT set");
	if (outer->len == 0 || outer->len % DESC_SIZE || outer->len / DESC_SIZE > VQ_MAX_CHAIN)
		return vq_break(vq, "indirect table has a bad length");
	table = gmem_ptr(vq->mem, outer->addr, outer->len);
	if (!table)
		return vq_break(vq, "indirect table lies outside guest RAM");
	nr = outer->len / DESC_SIZE;
	for (uint32_t i = 0, steps = 0;; steps++) {
		struct vring_desc desc;
		if (steps >= nr)
			return vq_break(vq, "indirect chain loops");
		memcpy(&desc, &table[i], sizeof(desc));
		if (desc.flags & VRING_DESC_F_INDIRECT)
			return vq_break(vq, "indirect table inside an indirect table");
		err = chain_add(vq, chain, &desc, count);
		if (err)
			return err;
		if (!(desc.flags & VRING_DESC_F_NEXT))
			return 0;
		if (desc.next >= nr)
			return vq_break(vq, "indirect descriptor's next is outside its table");
		i = desc.next;
	}
}

int vq_pop(struct virtqueue *vq, struct vq_chain *chain)
{
	struct vq_state *s = &vq->state;
	const struct vring_desc *table;
	uint16_t avail_idx, head;
	unsigned int count = 0;
	int err;

	if (!s->ready || s->broken)
		return s->broken ? -EIO : 0;
	avail_idx = load16(avail_field(vq, 2));
	if (avail_idx == s->last_avail_idx)
		return 0;
	if ((uint16_t)(avail_idx - s->last_avail_idx) > s->size)
		return vq_break(vq, "driver made more buffers available than the queue holds");
	/* The ring entry is read only after idx (acquire above). */
	head = load16(avail_field(vq, 4 + 2ULL * (s->last_avail_idx % s->size)));
	if (head >= s->size)
		return vq_break(vq, "available ring names a descriptor outside the table");

	memset(chain, 0, offsetof(struct vq_chain, iov));
	chain->head = head;
	table = gmem_ptr(vq->mem, s->desc_gpa, DESC_SIZE * s->size);
	for (uint16_t i = head;;) {
		struct vring_desc desc;
		memcpy(&desc, &table[i], sizeof(desc));
		if (desc.flags & VRING_DESC_F_INDIRECT) {
			err = walk_indirect(vq, chain, &desc, &count);
			if (err)
				return err;
			break;
		}
		err = chain_add(vq, chain, &desc, &count);
		if (err)
			return err;
		if (!(desc.flags & VRING_DESC_F_NEXT))
			break;
		if (desc.next >= s->size)
			return vq_break(vq, "descriptor's next is outside the table");
		i = desc.next;
	}
	s->last_avail_idx++;
	return 1;
}

void vq_unpop(struct virtqueue *vq, uint16_t count)
{
	vq->state.last_avail_idx -= count;
}

int vq_push(struct virtqueue *vq, uint16_t head, uint32_t written)
{
	struct vq_state *s = &vq->state;
	struct vring_used_elem elem = {.id = head, .len = written};
	uint64_t offset;

	if (!s->ready || s->broken)
		return -EIO;
	/* Only now: a queue that is not ready may have size 0. */
	offset = 4 + sizeof(elem) * (uint64_t)(s->used_idx % s->size);
	if (gmem_write(vq->mem, s->used_gpa + offset, &elem, sizeof(elem)))
		return vq_break(vq, "used ring lies outside guest RAM");
	s->used_idx++;
	/* The element is visible before the index that publishes it (release). */
	store_used16(vq, 2, s->used_idx);
	return 0;
}

bool vq_needs_interrupt(struct virtqueue *vq)
{
	struct vq_state *s = &vq->state;
	uint16_t old = s->signalled_used, now = s->used_idx;
	bool needed;

	if (!s->ready || s->broken)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* used idx written before used_event read */
	if (s->event_idx) {
		uint16_t used_event = load16(avail_field(vq, 4 + 2ULL * s->size));
		/* vring_need_event(): did used_idx just pass used_event? */
		needed =
		    !s->signalled_valid || (uint16_t)(now - used_event - 1) < (uint16_t)(now - old);
	} else {
		needed = !(load16(avail_field(vq, 0)) & VRING_AVAIL_F_NO_INTERRUPT);
	}
	if (old == now && s->signalled_valid)
		needed = false;
	if (needed) {
		s->signalled_used = now;
		s->signalled_valid = 1;
	}
	return needed;
}

void vq_set_notification(struct virtqueue *vq, bool enable)
{
	struct vq_state *s = &vq->state;

	if (!s->ready || s->broken)
		return;
	if (s->event_idx) {
		if (enable)
			store_used16(vq, 4 + 8ULL * s->size, s->last_avail_idx);
	} else {
		store_used16(vq, 0, enable ? 0 : VRING_USED_F_NO_NOTIFY);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* flag written before avail idx re-read */
}

static size_t chain_copy(const struct iovec *iov, unsigned int nr, size_t offset, void *flat,
			 size_t len, bool to_chain)
{
	size_t done = 0;
	for (unsigned int i = 0; i < nr && done < len; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - offset;
		if (n > len - done)
			n = len - done;
		if (to_chain)
			memcpy((uint8_t *)iov[i].iov_base + offset, (uint8_t *)flat + done, n);
		else
			memcpy((uint8_t *)flat + done, (uint8_t *)iov[i].iov_base + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

size_t vq_chain_read(const struct vq_chain *chain, size_t offset, void *dst, size_t len)
{
	return chain_copy(chain->iov, chain->nr_readable, offset, dst, len, false);
}

size_t vq_chain_write(const struct vq_chain *chain, size_t offset, const void *src, size_t len)
{
	return chain_copy(chain->iov + chain->nr_readable, chain->nr_writable, offset, (void *)src,
			  len, true);
}

int vq_restore(struct virtqueue *vq, const struct vq_state *state)
{
	uint16_t max_size = vq->state.max_size;

	if (state->max_size != max_size || state->ready > 1 || state->broken > 1)
		return -EINVAL;
	vq->state = *state;
	vq->broken_reason = state->broken ? "broken before the snapshot" : NULL;
	if (state->ready && vq_check_config(vq)) {
		vq->state.ready = 0;
		return -EINVAL;
	}
	return 0;
}

int vq_restore_check(const struct virtqueue *vq, const struct vq_state *state)
{
	struct virtqueue scratch = *vq; /* vq_check_config marks what it checks as broken */

	if (state->max_size != vq->state.max_size || state->ready > 1 || state->broken > 1)
		return -EINVAL;
	scratch.state = *state;
	return state->ready && vq_check_config(&scratch) ? -EINVAL : 0;
}
