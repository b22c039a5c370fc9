/*
 * Unit tests for the snapshot side of guest memory: gmem_map_file() (memory.c), the dirty
 * bitmap of wisp's own writes, and the memory file (memory_file.c): Full writes leave holes
 * where the guest never wrote, include a restored VM's untouched file pages, Diff writes hold
 * exactly the dirty pages, rebase reproduces the Full image, and a failed write leaves the
 * file at the path untouched. Files live in a fresh directory under $TMPDIR (or /tmp).
 */
#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory.h"
#include "memory_file.h"

#define PG     4096ULL
#define MiB    (1ULL << 20)
#define NPAGES 1024 /* 4 MiB guests */

static char dir[256];

static int make_dir(void **state)
{
	const char *tmp = getenv("TMPDIR");
	(void)state;
	snprintf(dir, sizeof(dir), "%s/wisp-memfile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[300];
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

static void fill_page(uint8_t *page, uint8_t seed)
{
	for (size_t i = 0; i < PG; i++)
		page[i] = (uint8_t)(seed + i * 7 + (i >> 8));
}

/* The whole file's contents (caller frees), asserting its size. */
static uint8_t *read_all(const char *path, uint64_t size)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf = malloc(size);

	assert_true(fd >= 0);
	assert_non_null(buf);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	assert_int_equal(pread(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	return buf;
}

/* The file's data ranges as a page bitmap of `pages` bits (SEEK_DATA/SEEK_HOLE). */
static void data_pages(const char *path, uint64_t pages, bool *out)
{
	int fd = open(path, O_RDONLY);
	off_t end = (off_t)(pages * PG);

	assert_true(fd >= 0);
	memset(out, 0, pages * sizeof(bool));
	for (off_t pos = 0; pos < end;) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0) {
			assert_int_equal(errno, ENXIO);
			break;
		}
		hole = lseek(fd, data, SEEK_HOLE);
		assert_true(hole > data);
		for (off_t p = data / (off_t)PG; p < (hole + (off_t)PG - 1) / (off_t)PG; p++)
			out[p] = true;
		pos = hole;
	}
	close(fd);
}

/* Asserts that exactly the listed pages (ascending, -1 ends) hold data in the file. */
static void assert_data_pages(const char *path, uint64_t pages, const int *expected)
{
	bool *data = calloc(pages, sizeof(bool));
	assert_non_null(data);
	data_pages(path, pages, data);
	for (uint64_t p = 0; p < pages; p++) {
		bool want = false;
		for (const int *e = expected; *e >= 0; e++)
			want = want || (uint64_t)*e == p;
		if (data[p] != want)
			fail_msg("%s: page %llu %s data, expected %s", path, (unsigned long long)p,
				 data[p] ? "holds" : "does not hold", want ? "data" : "a hole");
	}
	free(data);
}

static void write_file(const char *path, const void *buf, size_t len, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	if (len)
		assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int count_temp_files(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* A 4 MiB anonymous guest without huge pages (so touching one page maps one page). */
static void anon_guest(struct gmem *mem)
{
	assert_int_equal(gmem_layout(mem, NPAGES * PG), 0);
	assert_int_equal(gmem_map_anonymous_thp(mem, GMEM_THP_OFF), 0);
}

static int full_write(const struct gmem *mem, const char *path, uint64_t *bytes)
{
	struct memory_file_request req = {.diff = false};
	char err[512];
	int ret = memory_file_write(mem, path, &req, bytes, err, sizeof(err));
	if (ret)
		print_message("memory_file_write: %s\n", err);
	return ret;
}

/* ---- gmem_map_file ---------------------------------------------------------------------- */

static void test_map_file_shows_the_file_and_keeps_guest_writes_private(void **state)
{
	char path[300];
	uint8_t *image = calloc(NPAGES, PG), page[PG];
	uint64_t offsets[GMEM_MAX_REGIONS] = {0};
	struct gmem mem;
	int fd;

	(void)state;
	assert_non_null(image);
	fill_page(image + 3 * PG, 1);
	fill_page(image + 700 * PG, 2);
	path_of(path, sizeof(path), "mem");
	write_file(path, image, NPAGES * PG, NPAGES * PG);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);

	assert_int_equal(gmem_layout(&mem, NPAGES * PG), 0);
	assert_int_equal(gmem_map_file(&mem, fd, offsets), 0);
	close(fd); /* the mapping keeps its own descriptor */
	assert_true(mem.regions[0].file_backed);
	assert_memory_equal(mem.regions[0].host, image, NPAGES * PG);

	fill_page(page, 9);
	assert_int_equal(gmem_write(&mem, 3 * PG + 100, page, 200), 0);
	assert_memory_equal(mem.regions[0].host + 3 * PG + 100, page, 200);
	free(read_all(path, NPAGES * PG)); /* size unchanged */
	{
		uint8_t *after = read_all(path, NPAGES * PG);
		assert_memory_equal(after, image, NPAGES * PG); /* the file never changes */
		free(after);
	}
	gmem_unmap(&mem);
	assert_null(mem.regions[0].host);
	assert_false(mem.has_file);
	free(image);
}

/* Two regions around the 32-bit gap: region 1 comes from its own offset. The file is sparse,
 * so 3 GiB of layout costs nothing. */
static void test_map_file_maps_each_region_at_its_offset(void **state)
{
	char path[300];
	uint8_t low[PG], high[PG];
	uint64_t offsets[GMEM_MAX_REGIONS] = {0, GMEM_GAP_START};
	struct gmem mem;
	int fd;

	(void)state;
	fill_page(low, 3);
	fill_page(high, 4);
	path_of(path, sizeof(path), "two");
	write_file(path, NULL, 0, GMEM_GAP_START + MiB);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, low, PG, 5 * PG), (ssize_t)PG);
	assert_int_equal(pwrite(fd, high, PG, GMEM_GAP_START + 2 * PG), (ssize_t)PG);

	assert_int_equal(gmem_layout(&mem, GMEM_GAP_START + MiB), 0);
	assert_int_equal(mem.nr_regions, 2);
	assert_int_equal(gmem_map_file(&mem, fd, offsets), 0);
	assert_memory_equal(gmem_ptr(&mem, 5 * PG, PG), low, PG);
	assert_memory_equal(gmem_ptr(&mem, GMEM_GAP_END + 2 * PG, PG), high, PG);
	gmem_unmap(&mem);
	close(fd);
}

static void test_map_file_refuses_a_file_of_the_wrong_size_or_a_misaligned_offset(void **state)
{
	char path[300];
	uint64_t offsets[GMEM_MAX_REGIONS] = {0};
	uint64_t bad_offsets[GMEM_MAX_REGIONS] = {100};
	uint64_t sizes[] = {NPAGES * PG - PG, NPAGES * PG + PG, 0};
	struct gmem mem;

	(void)state;
	path_of(path, sizeof(path), "size");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		write_file(path, NULL, 0, sizes[i]);
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		assert_int_equal(gmem_layout(&mem, NPAGES * PG), 0);
		assert_int_equal(gmem_map_file(&mem, fd, offsets), -EINVAL);
		assert_null(mem.regions[0].host);
		assert_false(mem.has_file);
		close(fd);
	}
	write_file(path, NULL, 0, NPAGES * PG + 100);
	int fd = open(path, O_RDONLY);
	assert_int_equal(gmem_layout(&mem, NPAGES * PG), 0);
	assert_int_equal(gmem_map_file(&mem, fd, bad_offsets), -EINVAL);
	assert_null(mem.regions[0].host);
	close(fd);
}

/* ---- the dirty bitmap ------------------------------------------------------------------- */

/* Regions [0, 64 KiB) and [128 KiB, 192 KiB): 16 pages each, a 64 KiB gap between. */
struct two {
	struct gmem mem;
	uint8_t *low, *high;
};

static void two_regions(struct two *t)
{
	memset(t, 0, sizeof(*t));
	t->low = calloc(1, 16 * PG);
	t->high = calloc(1, 16 * PG);
	assert_non_null(t->low);
	assert_non_null(t->high);
	t->mem.regions[0] = (struct gmem_region){.gpa = 0, .size = 16 * PG, .host = t->low};
	t->mem.regions[1] = (struct gmem_region){.gpa = 32 * PG, .size = 16 * PG, .host = t->high};
	t->mem.nr_regions = 2;
	t->mem.total_size = 32 * PG;
}

static void two_free(struct two *t)
{
	for (unsigned int i = 0; i < 2; i++)
		free(t->mem.regions[i].dirty);
	free(t->low);
	free(t->high);
}

static uint64_t bits(const struct two *t, unsigned int region)
{
	return t->mem.regions[region].dirty[0];
}

static void clear_bits(struct two *t)
{
	t->mem.regions[0].dirty[0] = t->mem.regions[1].dirty[0] = 0;
}

static void test_mark_dirty_is_a_no_op_until_tracking_is_on(void **state)
{
	struct two t;
	uint8_t byte = 1;

	(void)state;
	two_regions(&t);
	gmem_mark_dirty(&t.mem, 0, PG);
	assert_int_equal(gmem_write(&t.mem, 0, &byte, 1), 0);
	assert_null(t.mem.regions[0].dirty);
	assert_int_equal(gmem_track_dirty(&t.mem), 0);
	assert_non_null(t.mem.regions[0].dirty);
	assert_non_null(t.mem.regions[1].dirty);
	assert_int_equal(bits(&t, 0) | bits(&t, 1), 0);
	assert_int_equal(gmem_track_dirty(&t.mem), 0); /* twice: keeps the bitmaps */
	two_free(&t);
}

static void test_mark_dirty_marks_every_page_a_range_touches_and_ignores_the_outside(void **state)
{
	struct two t;

	(void)state;
	two_regions(&t);
	assert_int_equal(gmem_track_dirty(&t.mem), 0);

	gmem_mark_dirty(&t.mem, 0, 1);
	assert_int_equal(bits(&t, 0), 0x1);
	clear_bits(&t);
	gmem_mark_dirty(&t.mem, PG - 1, 2); /* straddles pages 0 and 1 */
	assert_int_equal(bits(&t, 0), 0x3);
	clear_bits(&t);
	gmem_mark_dirty(&t.mem, 2 * PG, PG); /* exactly page 2 */
	assert_int_equal(bits(&t, 0), 0x4);
	clear_bits(&t);
	gmem_mark_dirty(&t.mem, 5 * PG, 0); /* empty */
	assert_int_equal(bits(&t, 0), 0);
	gmem_mark_dirty(&t.mem, 16 * PG - 1, 2); /* last byte of region 0, then the gap */
	assert_int_equal(bits(&t, 0), 0x8000);
	assert_int_equal(bits(&t, 1), 0);
	clear_bits(&t);
	gmem_mark_dirty(&t.mem, 20 * PG, PG); /* the gap only */
	assert_int_equal(bits(&t, 0) | bits(&t, 1), 0);
	gmem_mark_dirty(&t.mem, 31 * PG, 2 * PG); /* gap into region 1's page 0 */
	assert_int_equal(bits(&t, 0), 0);
	assert_int_equal(bits(&t, 1), 0x1);
	clear_bits(&t);
	gmem_mark_dirty(&t.mem, 0, 64 * PG); /* everything and beyond */
	assert_int_equal(bits(&t, 0), 0xffff);
	assert_int_equal(bits(&t, 1), 0xffff);
	clear_bits(&t);
	gmem_mark_dirty(&t.mem, 48 * PG, PG);	       /* just past the end */
	gmem_mark_dirty(&t.mem, UINT64_MAX - 10, 100); /* would wrap */
	gmem_mark_dirty(&t.mem, 47 * PG, UINT64_MAX);  /* huge length from inside */
	assert_int_equal(bits(&t, 0), 0);
	assert_int_equal(bits(&t, 1), 0x8000);
	two_free(&t);
}

static void test_gmem_write_marks_what_it_wrote_and_a_refused_write_marks_nothing(void **state)
{
	struct two t;
	uint8_t buf[3 * PG] = {1};

	(void)state;
	two_regions(&t);
	assert_int_equal(gmem_track_dirty(&t.mem), 0);
	assert_int_equal(gmem_write(&t.mem, 33 * PG + 10, buf, 2 * PG), 0);
	assert_int_equal(bits(&t, 1), 0x6 | 0x8 /* page 3: 10 bytes into it */);
	clear_bits(&t);
	assert_int_equal(gmem_write(&t.mem, 15 * PG, buf, 2 * PG), -EFAULT);
	assert_int_equal(bits(&t, 0) | bits(&t, 1), 0);
	two_free(&t);
}

/* ---- memory_file_write: Full ------------------------------------------------------------ */

static void test_full_write_of_anonymous_memory_holds_only_pages_with_data(void **state)
{
	char path[300];
	struct gmem mem;
	uint64_t bytes = 0;
	volatile uint8_t sink;
	struct stat st;

	(void)state;
	anon_guest(&mem);
	fill_page(mem.regions[0].host + 3 * PG, 1);
	fill_page(mem.regions[0].host + 100 * PG, 2);
	fill_page(mem.regions[0].host + 101 * PG, 3);
	mem.regions[0].host[1023 * PG + PG - 1] = 0x5a; /* last byte of the last page */
	sink = mem.regions[0].host[200 * PG];		/* read only: the zero page */
	memset(mem.regions[0].host + 300 * PG, 0, PG);	/* written, but all zero */
	(void)sink;
	path_of(path, sizeof(path), "full");

	assert_int_equal(full_write(&mem, path, &bytes), 0);
	assert_int_equal(bytes, 4 * PG);
	{
		uint8_t *file = read_all(path, NPAGES * PG);
		assert_memory_equal(file, mem.regions[0].host, NPAGES * PG);
		free(file);
	}
	assert_data_pages(path, NPAGES, (const int[]){3, 100, 101, 1023, -1});
	assert_int_equal(stat(path, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 <= 8 * PG); /* sparse: not 4 MiB */
	assert_int_equal(count_temp_files(), 0);
	gmem_unmap(&mem);
}

/* Region 1 (above the 32-bit gap) lands at offset 3 GiB, after region 0. */
static void test_full_write_lays_regions_back_to_back(void **state)
{
	char path[300];
	struct gmem mem;
	uint64_t bytes = 0, offsets[GMEM_MAX_REGIONS];
	uint8_t page[PG], back[PG];
	int fd;

	(void)state;
	assert_int_equal(gmem_layout(&mem, GMEM_GAP_START + MiB), 0);
	assert_int_equal(gmem_map_anonymous_thp(&mem, GMEM_THP_OFF), 0);
	memory_file_offsets(&mem, offsets);
	assert_int_equal(offsets[0], 0);
	assert_int_equal(offsets[1], GMEM_GAP_START);
	fill_page(page, 7);
	assert_int_equal(gmem_write(&mem, GMEM_GAP_END + 4 * PG, page, PG), 0);
	assert_int_equal(gmem_write(&mem, 8 * PG, page, 10), 0);
	path_of(path, sizeof(path), "twofull");
	assert_int_equal(full_write(&mem, path, &bytes), 0);
	assert_int_equal(bytes, 2 * PG);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, back, PG, (off_t)(GMEM_GAP_START + 4 * PG)), (ssize_t)PG);
	assert_memory_equal(back, page, PG);
	assert_int_equal(lseek(fd, 0, SEEK_END), (off_t)(GMEM_GAP_START + MiB));
	assert_int_equal(lseek(fd, 0, SEEK_DATA), (off_t)(8 * PG));
	assert_int_equal(lseek(fd, 9 * PG, SEEK_DATA), (off_t)(GMEM_GAP_START + 4 * PG));
	close(fd);
	gmem_unmap(&mem);
}

/* Writes the image's non-zero pages only, so the file has holes where the image is zero. */
static void write_sparse(const char *path, const uint8_t *image, uint64_t pages)
{
	int fd;

	write_file(path, NULL, 0, pages * PG);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	for (uint64_t p = 0; p < pages; p++) {
		static const uint8_t zero[PG];
		if (memcmp(image + p * PG, zero, PG))
			assert_int_equal(pwrite(fd, image + p * PG, PG, (off_t)(p * PG)),
					 (ssize_t)PG);
	}
	close(fd);
}

static void map_path(struct gmem *mem, const char *path)
{
	uint64_t offsets[GMEM_MAX_REGIONS] = {0};
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(gmem_layout(mem, NPAGES * PG), 0);
	assert_int_equal(gmem_map_file(mem, fd, offsets), 0);
	close(fd);
}

/* Whether this process maps the page (/proc/self/pagemap: present or swapped). */
static bool page_mapped(const void *addr)
{
	uint64_t entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &entry, 8, (off_t)((uintptr_t)addr / PG * 8)), 8);
	close(fd);
	return entry & (3ULL << 62);
}

/* A restored VM (memory mapped from an earlier file) snapshotted again: the pages it never
 * touched are still the earlier file's and must be in the new file, next to its changes;
 * also when the new file replaces the very file the VM is mapped from. The result restores
 * again. */
static void test_full_write_of_a_restored_vm_holds_old_and_new_pages(void **state)
{
	char src[300], copy[300];
	uint8_t *image = calloc(NPAGES, PG), *expect;
	uint64_t bytes = 0;
	struct gmem mem, mem2;

	(void)state;
	assert_non_null(image);
	fill_page(image + 10 * PG, 1);
	fill_page(image + 11 * PG, 2);
	fill_page(image + 50 * PG, 3);
	fill_page(image + 900 * PG, 4);
	path_of(src, sizeof(src), "restored");
	write_sparse(src, image, NPAGES);
	map_path(&mem, src);

	/* The restored guest: page 11 changed, page 70 (a hole) written, page 50 zeroed;
	 * pages 10 and 900 never touched (nothing here reads them through the mapping). */
	expect = malloc(NPAGES * PG);
	assert_non_null(expect);
	memcpy(expect, image, NPAGES * PG);
	fill_page(mem.regions[0].host + 11 * PG, 5);
	fill_page(expect + 11 * PG, 5);
	fill_page(mem.regions[0].host + 70 * PG, 6);
	fill_page(expect + 70 * PG, 6);
	memset(mem.regions[0].host + 50 * PG, 0, PG);
	memset(expect + 50 * PG, 0, PG);

	path_of(copy, sizeof(copy), "again");
	assert_int_equal(full_write(&mem, copy, &bytes), 0);
	assert_int_equal(bytes, 4 * PG);
	{
		uint8_t *file = read_all(copy, NPAGES * PG);
		assert_memory_equal(file, expect, NPAGES * PG);
		free(file);
	}
	assert_data_pages(copy, NPAGES, (const int[]){10, 11, 70, 900, -1});
	/* The untouched pages came from the file: none was faulted into the VM's memory. */
	assert_false(page_mapped(mem.regions[0].host + 900 * PG));
	assert_false(page_mapped(mem.regions[0].host + 10 * PG));

	/* Over the file the VM is mapped from: the mapping keeps the old file. */
	assert_int_equal(full_write(&mem, src, &bytes), 0);
	assert_memory_equal(mem.regions[0].host, expect, NPAGES * PG);
	gmem_unmap(&mem);

	map_path(&mem2, src); /* restores again */
	assert_memory_equal(mem2.regions[0].host, expect, NPAGES * PG);
	gmem_unmap(&mem2);
	free(expect);
	free(image);
}

/* Memory filled from the file by someone else (a userfaultfd handler): pages never faulted
 * in are taken from the file, pages written since from memory. */
static void test_full_write_with_a_source_file_takes_untouched_pages_from_it(void **state)
{
	char src[300], out[300];
	uint8_t *image = calloc(NPAGES, PG), *expect;
	uint64_t offsets[GMEM_MAX_REGIONS] = {0}, bytes = 0;
	struct gmem mem;
	int fd;

	(void)state;
	assert_non_null(image);
	fill_page(image + 1 * PG, 1);
	fill_page(image + 2 * PG, 2);
	fill_page(image + 600 * PG, 3);
	path_of(src, sizeof(src), "served");
	write_sparse(src, image, NPAGES);
	anon_guest(&mem);
	fd = open(src, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(gmem_set_source_file(&mem, fd, offsets), 0);
	assert_int_equal(gmem_set_source_file(&mem, fd, offsets), -EBUSY);
	close(fd);
	/* "Served": page 1 as in the file; written since: page 2 and page 5. */
	memcpy(mem.regions[0].host + 1 * PG, image + 1 * PG, PG);
	fill_page(mem.regions[0].host + 2 * PG, 9);
	fill_page(mem.regions[0].host + 5 * PG, 8);
	expect = malloc(NPAGES * PG);
	assert_non_null(expect);
	memcpy(expect, image, NPAGES * PG);
	fill_page(expect + 2 * PG, 9);
	fill_page(expect + 5 * PG, 8);

	path_of(out, sizeof(out), "served-full");
	assert_int_equal(full_write(&mem, out, &bytes), 0);
	assert_int_equal(bytes, 4 * PG);
	{
		uint8_t *file = read_all(out, NPAGES * PG);
		assert_memory_equal(file, expect, NPAGES * PG);
		free(file);
	}
	assert_data_pages(out, NPAGES, (const int[]){1, 2, 5, 600, -1});
	gmem_unmap(&mem);
	assert_false(mem.has_file);
	free(expect);
	free(image);
}

/* Memory a userfaultfd handler fills, without the file at hand: a page not present may
 * still hold data, so every page is read (here the untouched ones read as zero). */
static void test_full_write_of_memory_served_on_fault_reads_every_page(void **state)
{
	char out[300];
	uint64_t bytes = 0;
	struct gmem mem;

	(void)state;
	anon_guest(&mem);
	mem.regions[0].served_on_fault = true;
	fill_page(mem.regions[0].host + 4 * PG, 4);
	assert_false(page_mapped(mem.regions[0].host + 700 * PG));
	path_of(out, sizeof(out), "served-on-fault");
	assert_int_equal(full_write(&mem, out, &bytes), 0);
	assert_int_equal(bytes, PG);
	assert_true(page_mapped(mem.regions[0].host + 700 * PG)); /* it was read */
	assert_data_pages(out, NPAGES, (const int[]){4, -1});
	gmem_unmap(&mem);
	assert_false(mem.regions[0].served_on_fault);
}

/* ---- memory_file_write: Diff, and rebase ------------------------------------------------ */

struct fake_log {
	uint64_t page; /* the page the "guest" wrote in region 0 */
	int calls;
	int fail;
};

static int fake_dirty_log(void *opaque, unsigned int region, uint64_t *bitmap)
{
	struct fake_log *log = opaque;
	log->calls++;
	if (log->fail)
		return -log->fail;
	if (region == 0 && log->page != UINT64_MAX) {
		bitmap[log->page / 64] |= 1ULL << (log->page % 64);
		log->page = UINT64_MAX; /* read and cleared */
	}
	return 0;
}

static int diff_write(const struct gmem *mem, const char *path, struct fake_log *log,
		      const struct memory_file_ops *ops, uint64_t *bytes)
{
	struct memory_file_request req = {
	    .diff = true, .dirty_log = fake_dirty_log, .dirty_log_opaque = log, .ops = ops};
	char err[512];
	int ret = memory_file_write(mem, path, &req, bytes, err, sizeof(err));
	if (ret)
		print_message("memory_file_write: %s\n", err);
	return ret;
}

static void test_diff_holds_exactly_the_pages_dirtied_since_the_last_snapshot(void **state)
{
	char base[300], diff[300], full[300], empty[300];
	struct fake_log log = {.page = UINT64_MAX};
	struct memory_file_request req = {
	    .diff = false, .dirty_log = fake_dirty_log, .dirty_log_opaque = &log};
	uint8_t page[PG], zero[PG] = {0};
	uint64_t bytes = 0;
	struct gmem mem;
	char err[512];

	(void)state;
	anon_guest(&mem);
	assert_int_equal(gmem_track_dirty(&mem), 0);
	fill_page(page, 1);
	assert_int_equal(gmem_write(&mem, 5 * PG, page, PG), 0);
	assert_int_equal(gmem_write(&mem, 6 * PG, page, PG), 0);
	assert_int_equal(gmem_write(&mem, 20 * PG, page, PG), 0);
	log.page = 7; /* the guest wrote page 7 itself */
	mem.regions[0].host[7 * PG] = 0x77;

	/* A Full snapshot takes the dirty state too. */
	path_of(base, sizeof(base), "base");
	assert_int_equal(memory_file_write(&mem, base, &req, &bytes, err, sizeof(err)), 0);
	assert_int_equal(bytes, 4 * PG);
	assert_int_equal(log.calls, 1);
	assert_int_equal(mem.regions[0].dirty[0], 0);

	/* Later: wisp rewrites page 5 and zeroes page 20, the guest writes page 40. */
	fill_page(page, 2);
	assert_int_equal(gmem_write(&mem, 5 * PG + 8, page, 64), 0);
	assert_int_equal(gmem_write(&mem, 20 * PG, zero, PG), 0);
	log.page = 40;
	mem.regions[0].host[40 * PG + 9] = 0x40;
	path_of(diff, sizeof(diff), "diff");
	assert_int_equal(diff_write(&mem, diff, &log, NULL, &bytes), 0);
	assert_int_equal(bytes, 3 * PG);
	assert_data_pages(diff, NPAGES, (const int[]){5, 20, 40, -1}); /* the zeroed page too */

	/* Nothing since: an empty (all-hole) diff of the full size. */
	path_of(empty, sizeof(empty), "empty");
	assert_int_equal(diff_write(&mem, empty, &log, NULL, &bytes), 0);
	assert_int_equal(bytes, 0);
	assert_data_pages(empty, NPAGES, (const int[]){-1});
	free(read_all(empty, NPAGES * PG));

	/* base + diff == a Full snapshot of the current state. */
	path_of(full, sizeof(full), "full");
	assert_int_equal(full_write(&mem, full, &bytes), 0);
	assert_int_equal(memory_file_rebase(base, diff, &bytes, err, sizeof(err)), 0);
	assert_int_equal(bytes, 3 * PG);
	{
		uint8_t *a = read_all(base, NPAGES * PG), *b = read_all(full, NPAGES * PG);
		assert_memory_equal(a, b, NPAGES * PG);
		assert_memory_equal(a, mem.regions[0].host, NPAGES * PG);
		free(a);
		free(b);
	}
	gmem_unmap(&mem);
}

static void test_diff_needs_dirty_tracking(void **state)
{
	char path[300];
	struct fake_log log = {.page = UINT64_MAX};
	uint64_t bytes = 1;
	struct gmem mem;

	(void)state;
	anon_guest(&mem);
	path_of(path, sizeof(path), "notrack");
	assert_int_equal(diff_write(&mem, path, &log, NULL, &bytes), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(count_temp_files(), 0);
	gmem_unmap(&mem);
}

static void test_rebase_refuses_files_of_different_sizes_and_changes_nothing(void **state)
{
	char base[300], diff[300], err[512];
	uint8_t page[PG];

	(void)state;
	fill_page(page, 3);
	path_of(base, sizeof(base), "rb-base");
	path_of(diff, sizeof(diff), "rb-diff");
	write_file(base, page, PG, 4 * PG);
	write_file(diff, page, PG / 2, 8 * PG);
	assert_int_equal(memory_file_rebase(base, diff, NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "16384"));
	assert_non_null(strstr(err, "32768"));
	{
		uint8_t *after = read_all(base, 4 * PG);
		assert_memory_equal(after, page, PG);
		free(after);
	}
	assert_int_equal(memory_file_rebase(base, base, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(memory_file_rebase(base, "/nonexistent/diff", NULL, err, sizeof(err)),
			 -ENOENT);
}

/* The command: `wisp snapshot-rebase BASE_MEM DIFF_MEM`. */
static void test_snapshot_rebase_command_merges_and_exits_2_on_refusal(void **state)
{
	char base[300], diff[300], other[300];
	uint8_t a[PG], b[PG];

	(void)state;
	fill_page(a, 1);
	fill_page(b, 2);
	path_of(base, sizeof(base), "cmd-base");
	path_of(diff, sizeof(diff), "cmd-diff");
	path_of(other, sizeof(other), "cmd-other");
	write_file(base, a, PG, 3 * PG);
	write_file(diff, NULL, 0, 3 * PG);
	{
		int fd = open(diff, O_WRONLY);
		assert_int_equal(pwrite(fd, b, PG, (off_t)(2 * PG)), (ssize_t)PG);
		close(fd);
	}
	write_file(other, NULL, 0, 4 * PG);

	assert_int_equal(
	    memory_file_rebase_main(3, (char *[]){"snapshot-rebase", base, diff, NULL}), 0);
	{
		uint8_t *after = read_all(base, 3 * PG);
		assert_memory_equal(after, a, PG);	    /* kept where the diff has a hole */
		assert_memory_equal(after + 2 * PG, b, PG); /* the diff's page */
		free(after);
	}
	assert_int_equal(
	    memory_file_rebase_main(3, (char *[]){"snapshot-rebase", base, other, NULL}), 2);
	assert_int_equal(memory_file_rebase_main(2, (char *[]){"snapshot-rebase", base, NULL}), 2);
	assert_int_equal(memory_file_rebase_main(2, (char *[]){"snapshot-rebase", "--help", NULL}),
			 0);
}

/* ---- failures leave the file at the path untouched -------------------------------------- */

static int fail_after; /* calls that succeed before the injected failure */
static int fail_errno;

static ssize_t failing_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	if (fail_after-- <= 0) {
		if (fail_errno == -1)
			return pwrite(fd, buf, len / 2, offset) >= 0 ? 0 : -1; /* short, then 0 */
		errno = fail_errno;
		return -1;
	}
	return pwrite(fd, buf, len, offset);
}

static int failing_fsync(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

static int failing_rename(const char *from, const char *to)
{
	(void)from;
	(void)to;
	errno = EXDEV;
	return -1;
}

static void test_a_failed_write_leaves_the_old_file_and_the_dirty_pages(void **state)
{
	static const struct {
		struct memory_file_ops ops;
		int after, err;
		int expect;
	} cases[] = {
	    {{.pwrite = failing_pwrite}, 0, ENOSPC, -ENOSPC},
	    {{.pwrite = failing_pwrite}, 1, EIO, -EIO},
	    {{.pwrite = failing_pwrite}, 0, -1, -EIO}, /* a write that makes no progress */
	    {{.fsync = failing_fsync}, 0, 0, -EIO},
	    {{.rename = failing_rename}, 0, 0, -EXDEV},
	};
	char path[300];
	struct fake_log log = {.page = UINT64_MAX};
	uint8_t old[PG], page[PG];
	uint64_t bytes;
	struct gmem mem;

	(void)state;
	anon_guest(&mem);
	assert_int_equal(gmem_track_dirty(&mem), 0);
	fill_page(old, 42);
	fill_page(page, 1);
	path_of(path, sizeof(path), "keep");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(path, old, PG, PG);
		assert_int_equal(gmem_write(&mem, 3 * PG, page, PG), 0);
		assert_int_equal(gmem_write(&mem, 9 * PG, page, PG), 0);
		log.page = 12;
		fail_after = cases[i].after;
		fail_errno = cases[i].err;
		assert_int_equal(diff_write(&mem, path, &log, &cases[i].ops, &bytes),
				 cases[i].expect);
		{
			uint8_t *after = read_all(path, PG);
			assert_memory_equal(after, old, PG);
			free(after);
		}
		assert_int_equal(count_temp_files(), 0);
		/* Every dirty page, the guest's included, is still dirty for the next try. */
		assert_int_equal(mem.regions[0].dirty[0], (1ULL << 3) | (1ULL << 9) | (1ULL << 12));
		/* ... and the next try holds them. */
		assert_int_equal(diff_write(&mem, path, &log, NULL, &bytes), 0);
		assert_int_equal(bytes, 3 * PG);
		assert_data_pages(path, NPAGES, (const int[]){3, 9, 12, -1});
		assert_int_equal(mem.regions[0].dirty[0], 0);
	}
	gmem_unmap(&mem);
}

static void test_a_failed_dirty_log_read_keeps_what_was_taken(void **state)
{
	char path[300];
	struct fake_log log = {.fail = EINVAL};
	uint64_t bytes;
	struct gmem mem;
	uint8_t b = 1;

	(void)state;
	anon_guest(&mem);
	assert_int_equal(gmem_track_dirty(&mem), 0);
	assert_int_equal(gmem_write(&mem, 2 * PG, &b, 1), 0);
	path_of(path, sizeof(path), "logfail");
	assert_int_equal(diff_write(&mem, path, &log, NULL, &bytes), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(mem.regions[0].dirty[0], 1ULL << 2);
	gmem_unmap(&mem);
}

static void test_write_into_a_missing_directory_fails_with_its_name(void **state)
{
	struct memory_file_request req = {.diff = false};
	char err[512];
	uint64_t bytes;
	struct gmem mem;

	(void)state;
	anon_guest(&mem);
	assert_int_equal(
	    memory_file_write(&mem, "/nonexistent-wisp-dir/mem", &req, &bytes, err, sizeof(err)),
	    -ENOENT);
	assert_non_null(strstr(err, "/nonexistent-wisp-dir"));
	assert_int_equal(memory_file_write(&mem, "", &req, &bytes, err, sizeof(err)), -EINVAL);
	gmem_unmap(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_map_file_shows_the_file_and_keeps_guest_writes_private),
	    cmocka_unit_test(test_map_file_maps_each_region_at_its_offset),
	    cmocka_unit_test(test_map_file_refuses_a_file_of_the_wrong_size_or_a_misaligned_offset),
	    cmocka_unit_test(test_mark_dirty_is_a_no_op_until_tracking_is_on),
	    cmocka_unit_test(
		test_mark_dirty_marks_every_page_a_range_touches_and_ignores_the_outside),
	    cmocka_unit_test(test_gmem_write_marks_what_it_wrote_and_a_refused_write_marks_nothing),
	    cmocka_unit_test(test_full_write_of_anonymous_memory_holds_only_pages_with_data),
	    cmocka_unit_test(test_full_write_lays_regions_back_to_back),
	    cmocka_unit_test(test_full_write_of_a_restored_vm_holds_old_and_new_pages),
	    cmocka_unit_test(test_full_write_with_a_source_file_takes_untouched_pages_from_it),
	    cmocka_unit_test(test_full_write_of_memory_served_on_fault_reads_every_page),
	    cmocka_unit_test(test_diff_holds_exactly_the_pages_dirtied_since_the_last_snapshot),
	    cmocka_unit_test(test_diff_needs_dirty_tracking),
	    cmocka_unit_test(test_rebase_refuses_files_of_different_sizes_and_changes_nothing),
	    cmocka_unit_test(test_snapshot_rebase_command_merges_and_exits_2_on_refusal),
	    cmocka_unit_test(test_a_failed_write_leaves_the_old_file_and_the_dirty_pages),
	    cmocka_unit_test(test_a_failed_dirty_log_read_keeps_what_was_taken),
	    cmocka_unit_test(test_write_into_a_missing_directory_fails_with_its_name),
	};
	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
