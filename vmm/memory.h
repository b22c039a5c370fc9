/*
 * Guest memory: up to a few regions of guest-physical address space backed by host
 * mappings. Everything that touches guest memory goes through gmem_ptr()/gmem_read()/
 * gmem_write(), which check range and overflow, so a guest-provided address can never
 * reach outside the guest's own RAM.
 */
#ifndef WISP_MEMORY_H
#define WISP_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMEM_MAX_REGIONS 2
#define GMEM_HUGE_PAGE	 (2ULL << 20)
#define GMEM_PAGE_SIZE	 4096ULL
#define GMEM_PAGE_SHIFT	 12

/* The 32-bit gap: guest RAM stops here and resumes at 4 GiB; MMIO devices, the IOAPIC and
 * the LAPIC live in between. */
#define GMEM_GAP_START 0xc0000000ULL
#define GMEM_GAP_END   0x100000000ULL

struct gmem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
	/* Pages wisp itself wrote (one bit per 4 KiB page, atomic), NULL unless tracking. */
	uint64_t *dirty;
	/* The region's contents start as gmem.file_fd's from file_offset on (a restored
	 * snapshot): a page not touched since is still the file's, and a Full snapshot of this
	 * VM takes it from there. */
	bool file_backed;
	uint64_t file_offset;
	/* Registered with a userfaultfd whose handler fills pages on first touch (a Uffd
	 * restore): a page not present may still hold data, so a Full snapshot reads every
	 * page (each one not yet served faults in through the handler) unless file_backed
	 * says where the unserved ones are. Set by the Uffd backend. */
	bool served_on_fault;
};

struct gmem {
	struct gmem_region regions[GMEM_MAX_REGIONS];
	unsigned int nr_regions;
	uint64_t total_size;
	bool tracking_dirty; /* gmem_track_dirty() was called: every region has a bitmap */
	bool has_file;	     /* file_fd is open (gmem_map_file) */
	int file_fd;	     /* the memory file the file-backed regions map (our own dup) */
};

/* How anonymous guest memory asks for transparent huge pages. */
enum gmem_thp {
	GMEM_THP_HOST_DEFAULT, /* no madvise: whatever the host's THP policy gives */
	GMEM_THP_ON,	       /* MADV_HUGEPAGE, also where the host policy is "madvise" */
	GMEM_THP_OFF,	       /* MADV_NOHUGEPAGE */
};

/* Lays out `size` bytes of RAM around the 32-bit gap (no host memory yet). */
int gmem_layout(struct gmem *mem, uint64_t size);
/* Backs every region with an anonymous private mapping, 2 MiB aligned, with
 * transparent huge pages where the host allows them. */
int gmem_map_anonymous(struct gmem *mem);
/* The same with an explicit huge page choice (a restore's huge_pages setting). */
int gmem_map_anonymous_thp(struct gmem *mem, enum gmem_thp thp);
/*
 * Backs region i with the memory file `fd` from file_offsets[i] on, mapped MAP_PRIVATE and
 * MAP_NORESERVE: pages come in on demand from the page cache, clones of one snapshot share
 * the clean ones, guest writes stay private (the file never changes), and nothing here reads
 * or touches memory in proportion to the guest's size. The file must be exactly as large as
 * the layout needs (the end of the last region); -EINVAL otherwise. The fd is dup'ed (the
 * caller keeps its own); a later memory_file_write() of this VM reads the file through it.
 */
int gmem_map_file(struct gmem *mem, int fd, const uint64_t *file_offsets);
/* For memory that is filled from the memory file by other means (a userfaultfd handler
 * serving it): records the file (same checks, dup'ed), so that a Full snapshot of this VM
 * still holds the pages never faulted in. The regions are mapped by the caller. */
int gmem_set_source_file(struct gmem *mem, int fd, const uint64_t *file_offsets);
/* Unmaps every region, closes the memory file and frees the dirty bitmaps. */
void gmem_unmap(struct gmem *mem);

/*
 * Dirty tracking of the pages wisp itself writes into guest memory (KVM's dirty log only
 * sees the guest's own writes): gmem_write() and the virtqueue layer mark what they write.
 * Off by default (marking then costs one test); gmem_track_dirty() allocates the bitmaps
 * and must be called before any device runs. Marking is an atomic OR, safe from any thread;
 * a range outside guest RAM is ignored (the part inside a region is marked).
 */
int gmem_track_dirty(struct gmem *mem);
void gmem_mark_dirty(const struct gmem *mem, uint64_t gpa, uint64_t len);
/* Words in region i's dirty bitmap: one bit per 4 KiB page, rounded up to 64 pages. */
uint64_t gmem_bitmap_words(const struct gmem_region *region);

/* Host pointer for [gpa, gpa+len) if the whole range lies in one region, else NULL. */
void *gmem_ptr(const struct gmem *mem, uint64_t gpa, uint64_t len);
int gmem_read(const struct gmem *mem, void *dst, uint64_t gpa, uint64_t len);
int gmem_write(const struct gmem *mem, uint64_t gpa, const void *src, uint64_t len);
/* End of the RAM region that starts at 0 (the highest address below the gap + 1). */
uint64_t gmem_low_end(const struct gmem *mem);

#endif
