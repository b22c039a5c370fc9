/*
 * Guest memory: up to a few regions of guest-physical address space backed by host
 * mappings. Everything that touches guest memory goes through gmem_ptr()/gmem_read()/
 * gmem_write(), which check range and overflow, so a guest-provided address can never
 * reach outside the guest's own RAM.
 */
#ifndef WISP_MEMORY_H
#define WISP_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#define GMEM_MAX_REGIONS 2
#define GMEM_HUGE_PAGE	 (2ULL << 20)

/* The 32-bit gap: guest RAM stops here and resumes at 4 GiB; MMIO devices, the IOAPIC and
 * the LAPIC live in between. */
#define GMEM_GAP_START 0xc0000000ULL
#define GMEM_GAP_END   0x100000000ULL

struct gmem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
};

struct gmem {
	struct gmem_region regions[GMEM_MAX_REGIONS];
	unsigned int nr_regions;
	uint64_t total_size;
};

/* Lays out `size` bytes of RAM around the 32-bit gap (no host memory yet). */
int gmem_layout(struct gmem *mem, uint64_t size);
/* Backs every region with an anonymous private mapping, 2 MiB aligned, with
 * transparent huge pages where the host allows them. */
int gmem_map_anonymous(struct gmem *mem);
/* Backs region i with the memory file fd mapped MAP_PRIVATE at file_offsets[i]. */
int gmem_map_file(struct gmem *mem, int fd, const uint64_t *file_offsets);
void gmem_unmap(struct gmem *mem);

/* Host pointer for [gpa, gpa+len) if the whole range lies in one region, else NULL. */
void *gmem_ptr(const struct gmem *mem, uint64_t gpa, uint64_t len);
int gmem_read(const struct gmem *mem, void *dst, uint64_t gpa, uint64_t len);
int gmem_write(const struct gmem *mem, uint64_t gpa, const void *src, uint64_t len);
/* End of the RAM region that starts at 0 (the highest address below the gap + 1). */
uint64_t gmem_low_end(const struct gmem *mem);

#endif
