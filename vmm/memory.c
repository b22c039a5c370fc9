#include "memory.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

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
		/* Ask for huge pages even where the host's THP policy is "madvise"; a host
		 * without THP refuses, which only costs speed. WISP_DEBUG_NO_HUGEPAGE: the
		 * opposite, for the nested-KVM experiments (tests/stress/guest_deaths.py). */
		const char *no_huge = getenv("WISP_DEBUG_NO_HUGEPAGE");
		int advice = no_huge && *no_huge && strcmp(no_huge, "0") != 0 ? MADV_NOHUGEPAGE
									      : MADV_HUGEPAGE;
		if (madvise(host, region->size, advice) < 0)
			log_debug("guest memory: no transparent huge pages: %s", strerror(errno));
		region->host = host;
	}
	return 0;
}

int gmem_map_file(struct gmem *mem, int fd, const uint64_t *file_offsets)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		struct gmem_region *region = &mem->regions[i];
		if ((uint64_t)st.st_size < file_offsets[i] ||
		    (uint64_t)st.st_size - file_offsets[i] < region->size) {
			log_error("the memory file has %lld bytes, too few for guest memory at "
				  "offset %llu (%llu bytes)",
				  (long long)st.st_size, (unsigned long long)file_offsets[i],
				  (unsigned long long)region->size);
			gmem_unmap(mem);
			return -EINVAL;
		}
		void *host = mmap(NULL, region->size, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_NORESERVE, fd, (off_t)file_offsets[i]);
		if (host == MAP_FAILED) {
			int err = -errno;
			log_error("cannot map the memory file's %llu MiB: %s",
				  (unsigned long long)(region->size >> 20), strerror(errno));
			gmem_unmap(mem);
			return err;
		}
		region->host = host;
	}
	return 0;
}

void gmem_unmap(struct gmem *mem)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		if (mem->regions[i].host)
			munmap(mem->regions[i].host, mem->regions[i].size);
		mem->regions[i].host = NULL;
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
	return 0;
}

uint64_t gmem_low_end(const struct gmem *mem)
{
	return mem->nr_regions ? mem->regions[0].gpa + mem->regions[0].size : 0;
}
