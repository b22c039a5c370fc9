#include "memory.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int gmem_layout(struct gmem *mem, uint64_t size)
{
	memset(mem, 0, sizeof(*mem));
	if (size == 0 || (size & 0xfff))
		return -EINVAL;
	if (size <= GMEM_GAP_START) {
		mem->regions[0] = (struct gmem_region){.gpa = 0, .size = size};
		mem->nr_regions = 1;
	} else {
		mem->regions[0] = (struct gmem_region){.gpa = 0, .size = GMEM_GAP_START};
		mem->regions[1] =
		    (struct gmem_region){.gpa = GMEM_GAP_END, .size = size - GMEM_GAP_START};
		mem->nr_regions = 2;
	}
	mem->total_size = size;
	return 0;
}

/*
 * Maps `size` bytes aligned to 2 MiB, so that guest-physical and host-virtual addresses
 * agree modulo 2 MiB: only then can KVM map the guest with 2 MiB pages when the host
 * backs them with transparent huge pages. A boot then takes a few dozen nested page
 * faults instead of thousands.
 */
static void *map_aligned(uint64_t size)
{
	uint64_t padded = size + GMEM_HUGE_PAGE;
	uint8_t *raw = mmap(NULL, padded, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *aligned;

	if (raw == MAP_FAILED)
		return MAP_FAILED;
	aligned =
	    (uint8_t *)(((uintptr_t)raw + GMEM_HUGE_PAGE - 1) & ~(uintptr_t)(GMEM_HUGE_PAGE - 1));
	if (aligned > raw)
		munmap(raw, (size_t)(aligned - raw));
	if (raw + padded > aligned + size)
		munmap(aligned + size, (size_t)(raw + padded - (aligned + size)));
	return aligned;
}

int gmem_map_anonymous(struct gmem *mem)
{
	/* Ask for huge pages even where the host's THP policy is "madvise"; a host without
	 * THP refuses, which only costs speed. WISP_DEBUG_NO_HUGEPAGE: the opposite, for the
	 * nested-KVM experiments (tests/stress/guest_deaths.py). */
	const char *no_huge = getenv("WISP_DEBUG_NO_HUGEPAGE");
	bool off = no_huge && *no_huge && strcmp(no_huge, "0") != 0;
	return gmem_map_anonymous_thp(mem, off ? GMEM_THP_OFF : GMEM_THP_ON);
}

int gmem_map_anonymous_thp(struct gmem *mem, enum gmem_thp thp)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		struct gmem_region *region = &mem->regions[i];
		void *host = map_aligned(region->size);
		if (host == MAP_FAILED) {
			int err = -errno;
			log_error("cannot map %llu MiB of guest memory: %s",
				  (unsigned long long)(region->size >> 20), strerror(errno));
			gmem_unmap(mem);
			return err;
		}
		if (thp != GMEM_THP_HOST_DEFAULT &&
		    madvise(host, region->size,
			    thp == GMEM_THP_ON ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) < 0)
			log_debug("guest memory: madvise(%s) refused: %s",
				  thp == GMEM_THP_ON ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE",
				  strerror(errno));
		region->host = host;
	}
	return 0;
}

/* Checks that `fd` is a memory file of exactly the size the layout and offsets need and
 * keeps a duplicate of it in mem->file_fd. */
static int take_memory_file(struct gmem *mem, int fd, const uint64_t *file_offsets)
{
	uint64_t needed = 0;
	struct stat st;
	int err;

	if (mem->has_file) {
		log_error("guest memory already has a memory file");
		return -EBUSY;
	}
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		uint64_t offset = file_offsets[i], size = mem->regions[i].size;
		if ((offset & (GMEM_PAGE_SIZE - 1)) || offset > UINT64_MAX - size ||
		    offset + size > (uint64_t)INT64_MAX) {
			log_error("memory file: region %u's offset 0x%llx is not page aligned or "
				  "too large",
				  i, (unsigned long long)offset);
			return -EINVAL;
		}
		if (offset + size > needed)
			needed = offset + size;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		log_error("memory file: fstat failed: %s", strerror(errno));
		return err;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != needed) {
		log_error("memory file is %llu bytes%s, the snapshot's memory layout needs exactly "
			  "%llu (%llu MiB): is it the memory file of this snapshot?",
			  (unsigned long long)st.st_size,
			  S_ISREG(st.st_mode) ? "" : " and not a regular file",
			  (unsigned long long)needed, (unsigned long long)(needed >> 20));
		return -EINVAL;
	}
	mem->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (mem->file_fd < 0) {
		err = -errno;
		log_error("memory file: cannot duplicate its descriptor: %s", strerror(errno));
		return err;
	}
	mem->has_file = true;
	return 0;
}

int gmem_map_file(struct gmem *mem, int fd, const uint64_t *file_offsets)
{
	int err = take_memory_file(mem, fd, file_offsets);

	if (err)
		return err;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		struct gmem_region *region = &mem->regions[i];
		void *host =
		    mmap(NULL, region->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
			 mem->file_fd, (off_t)file_offsets[i]);
		if (host == MAP_FAILED) {
			err = -errno;
			log_error("cannot map %llu MiB of the memory file at offset 0x%llx: %s",
				  (unsigned long long)(region->size >> 20),
				  (unsigned long long)file_offsets[i], strerror(errno));
			gmem_unmap(mem);
			return err;
		}
		region->host = host;
		region->file_backed = true;
		region->file_offset = file_offsets[i];
	}
	return 0;
}

int gmem_set_source_file(struct gmem *mem, int fd, const uint64_t *file_offsets)
{
	int err = take_memory_file(mem, fd, file_offsets);

	if (err)
		return err;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		mem->regions[i].file_backed = true;
		mem->regions[i].file_offset = file_offsets[i];
	}
	return 0;
}

void gmem_unmap(struct gmem *mem)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		struct gmem_region *region = &mem->regions[i];
		if (region->host)
			munmap(region->host, region->size);
		region->host = NULL;
		region->file_backed = false;
		region->served_on_fault = false;
		free(region->dirty);
		region->dirty = NULL;
	}
	mem->tracking_dirty = false;
	if (mem->has_file)
		close(mem->file_fd);
	mem->has_file = false;
}

uint64_t gmem_bitmap_words(const struct gmem_region *region)
{
	return ((region->size >> GMEM_PAGE_SHIFT) + 63) / 64;
}

int gmem_track_dirty(struct gmem *mem)
{
	if (mem->tracking_dirty)
		return 0;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		struct gmem_region *region = &mem->regions[i];
		region->dirty = calloc(gmem_bitmap_words(region), sizeof(uint64_t));
		if (!region->dirty) {
			log_error("out of memory for the dirty page bitmap of %llu MiB of guest "
				  "memory",
				  (unsigned long long)(region->size >> 20));
			for (unsigned int j = 0; j <= i; j++) {
				free(mem->regions[j].dirty);
				mem->regions[j].dirty = NULL;
			}
			return -ENOMEM;
		}
	}
	mem->tracking_dirty = true;
	return 0;
}

void gmem_mark_dirty(const struct gmem *mem, uint64_t gpa, uint64_t len)
{
	if (!mem->tracking_dirty || len == 0)
		return;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *region = &mem->regions[i];
		/* The part of [gpa, gpa + len) inside the region, without overflow. */
		uint64_t start = gpa > region->gpa ? gpa - region->gpa : 0;
		uint64_t before = region->gpa > gpa ? region->gpa - gpa : 0;
		uint64_t end;

		if (before >= len || start >= region->size)
			continue;
		end = len - before > region->size - start ? region->size : start + (len - before);
		for (uint64_t page = start >> GMEM_PAGE_SHIFT; page <= (end - 1) >> GMEM_PAGE_SHIFT;
		     page++)
			__atomic_fetch_or(&region->dirty[page / 64], 1ULL << (page % 64),
					  __ATOMIC_RELAXED);
	}
}

void *gmem_ptr(const struct gmem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *region = &mem->regions[i];
		if (gpa < region->gpa)
			continue;
		uint64_t offset = gpa - region->gpa;
		/* Written so that neither gpa + len nor offset + len can overflow. */
		if (offset >= region->size || len > region->size - offset)
			continue;
		if (!region->host)
			return NULL;
		return region->host + offset;
	}
	return NULL;
}

int gmem_read(const struct gmem *mem, void *dst, uint64_t gpa, uint64_t len)
{
	const void *src = gmem_ptr(mem, gpa, len);
	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int gmem_write(const struct gmem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = gmem_ptr(mem, gpa, len);
	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	gmem_mark_dirty(mem, gpa, len);
	return 0;
}

uint64_t gmem_low_end(const struct gmem *mem)
{
	return mem->nr_regions ? mem->regions[0].gpa + mem->regions[0].size : 0;
}
