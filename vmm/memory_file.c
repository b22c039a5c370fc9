#define _GNU_SOURCE /* SEEK_DATA, SEEK_HOLE, mkostemp */
#include "memory_file.h"

#include "snapshot_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE GMEM_PAGE_SIZE
/* The most one pwrite() carries: large enough to be few calls, small enough to fail fast. */
#define MAX_RUN		(64ULL << 20)
#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_SWAPPED (1ULL << 62)
#define PAGEMAP_BATCH	4096
#define COPY_PAGES	256 /* 1 MiB */

static ssize_t real_pwrite(int fd, const void *buf, size_t len, off_t offset)
{
	return pwrite(fd, buf, len, offset);
}

static int real_fsync(int fd)
{
	return fsync(fd);
}

static int real_rename(const char *from, const char *to)
{
	return rename(from, to);
}

void memory_file_offsets(const struct gmem *mem, uint64_t offsets[GMEM_MAX_REGIONS])
{
	uint64_t offset = 0;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		offsets[i] = offset;
		offset += mem->regions[i].size;
	}
}

static void set_bits(uint64_t *bits, uint64_t first, uint64_t end)
{
	for (uint64_t page = first; page < end; page++)
		bits[page / 64] |= 1ULL << (page % 64);
}

static bool test_bit(const uint64_t *bits, uint64_t page)
{
	return bits[page / 64] & (1ULL << (page % 64));
}

/* Resident per mincore(): the fallback where /proc/self/pagemap cannot be read. It misses
 * swapped-out anonymous pages, so if it fails too every page is a candidate. */
static void mark_resident_mincore(const struct gmem_region *region, uint64_t *bits)
{
	uint64_t pages = region->size / PAGE;
	unsigned char vec[PAGEMAP_BATCH];

	for (uint64_t page = 0; page < pages; page += PAGEMAP_BATCH) {
		uint64_t n = pages - page < PAGEMAP_BATCH ? pages - page : PAGEMAP_BATCH;
		if (mincore(region->host + page * PAGE, n * PAGE, vec) < 0) {
			set_bits(bits, page, n + page);
			continue;
		}
		for (uint64_t i = 0; i < n; i++)
			if (vec[i] & 1)
				set_bits(bits, page + i, page + i + 1);
	}
}

/* Marks the region's pages that are present or swapped: the pages ever touched. Pages never
 * touched are not mapped at all (anonymous memory) or still the file's (a file mapping). */
static void mark_touched(const struct gmem_region *region, uint64_t *bits)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t pages = region->size / PAGE, first = (uintptr_t)region->host / PAGE;
	uint64_t entries[PAGEMAP_BATCH];

	if (fd < 0) {
		mark_resident_mincore(region, bits);
		return;
	}
	for (uint64_t page = 0; page < pages; page += PAGEMAP_BATCH) {
		uint64_t n = pages - page < PAGEMAP_BATCH ? pages - page : PAGEMAP_BATCH;
		ssize_t got = pread(fd, entries, n * 8, (off_t)((first + page) * 8));
		if (got != (ssize_t)(n * 8)) {
			close(fd);
			mark_resident_mincore(region, bits);
			return;
		}
		for (uint64_t i = 0; i < n; i++)
			if (entries[i] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED))
				set_bits(bits, page + i, page + i + 1);
	}
	close(fd);
}

/* Marks the pages of a file-backed region whose file range holds data: those untouched pages
 * are the earlier memory file's contents, and the new file must hold them too. */
static void mark_file_data(int fd, const struct gmem_region *region, uint64_t *bits)
{
	off_t start = (off_t)region->file_offset, end = start + (off_t)region->size;

	for (off_t pos = start; pos < end;) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			return;
		if (data < 0)
			goto all; /* no SEEK_DATA here: take every page */
		if (data >= end)
			return;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			goto all;
		if (hole > end)
			hole = end;
		set_bits(bits, (uint64_t)(data - start) / PAGE,
			 ((uint64_t)(hole - start) + PAGE - 1) / PAGE);
		pos = hole;
	}
	return;
all:
	set_bits(bits, 0, region->size / PAGE);
}

static bool page_is_zero(const uint8_t *page)
{
	return page[0] == 0 && memcmp(page, page + 1, PAGE - 1) == 0;
}

/* Gives pages taken from the dirty state back to it (a failed snapshot), so that a later
 * Diff still holds them. */
static void give_back_dirty(const struct gmem *mem, uint64_t **dirty)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		if (!dirty[i])
			continue;
		for (uint64_t w = 0; w < gmem_bitmap_words(&mem->regions[i]); w++)
			if (dirty[i][w])
				__atomic_fetch_or(&mem->regions[i].dirty[w], dirty[i][w],
						  __ATOMIC_RELAXED);
	}
}

/* Takes (reads and clears) the dirty state of every region: the hypervisor's log, then
 * wisp's own bitmap, ORed into dirty[i]. */
static int take_dirty(const struct gmem *mem, const struct memory_file_request *req,
		      uint64_t **dirty, char *err, size_t err_size)
{
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *region = &mem->regions[i];
		uint64_t words = gmem_bitmap_words(region);

		dirty[i] = calloc(words, sizeof(uint64_t));
		if (!dirty[i]) {
			snap_set_err(err, err_size,
				     "memory file: out of memory for a dirty bitmap of %llu words",
				     (unsigned long long)words);
			return -ENOMEM;
		}
		if (req->dirty_log) {
			int ret = req->dirty_log(req->dirty_log_opaque, i, dirty[i]);
			if (ret) {
				memset(dirty[i], 0, words * sizeof(uint64_t));
				snap_set_err(
				    err, err_size,
				    "memory file: cannot read KVM's dirty page log of memory "
				    "region %u: %s",
				    i, strerror(-ret));
				return ret;
			}
		}
		for (uint64_t w = 0; w < words; w++)
			dirty[i][w] |= __atomic_exchange_n(&region->dirty[w], 0, __ATOMIC_RELAXED);
	}
	return 0;
}

struct file_writer {
	struct memory_file_ops ops;
	int fd;
	const char *path;
	uint64_t written;
	uint8_t *bounce; /* COPY_PAGES pages, for copies from the earlier memory file */
};

static int write_run(struct file_writer *w, const uint8_t *buf, uint64_t len, uint64_t offset,
		     char *err, size_t err_size)
{
	while (len) {
		ssize_t n = w->ops.pwrite(w->fd, buf, len, (off_t)offset);
		if (n <= 0) {
			int error = n < 0 ? errno : EIO;
			snap_set_err(err, err_size,
				     "memory file %s: writing %llu bytes at offset %llu failed: %s",
				     w->path, (unsigned long long)len, (unsigned long long)offset,
				     strerror(error));
			return -error;
		}
		buf += n;
		len -= (uint64_t)n;
		offset += (uint64_t)n;
		w->written += (uint64_t)n;
	}
	return 0;
}

/* Where a page of the new file comes from. */
enum page_source {
	FROM_NOWHERE, /* a hole */
	FROM_MEMORY,  /* guest memory (through the mapping) */
	FROM_FILE,    /* the memory file the region was restored from: never touched since */
};

/* Full: touched pages from memory unless all zero, untouched ones from the earlier memory
 * file where it holds data. Diff: every dirty page from memory, zero or not (a hole would
 * mean "unchanged"). */
static enum page_source source_of(const struct gmem_region *region, uint64_t page,
				  const uint64_t *bits, const uint64_t *file_data, bool diff)
{
	if (test_bit(bits, page))
		return diff || !page_is_zero(region->host + page * PAGE) ? FROM_MEMORY
									 : FROM_NOWHERE;
	if (file_data && test_bit(file_data, page))
		return FROM_FILE;
	return FROM_NOWHERE;
}

/* Copies `pages` pages of the earlier memory file through the bounce buffer, leaving holes
 * where they are all zero. Reading the file, not the mapping, faults nothing into the VM's
 * memory (and works where a userfaultfd handler would serve the page). */
static int copy_file_run(struct file_writer *w, int src_fd, uint64_t src_offset,
			 uint64_t dst_offset, uint64_t pages, char *err, size_t err_size)
{
	while (pages) {
		uint64_t n = pages < COPY_PAGES ? pages : COPY_PAGES, run = 0;
		ssize_t got = pread(src_fd, w->bounce, n * PAGE, (off_t)src_offset);
		int ret;

		if (got != (ssize_t)(n * PAGE)) {
			int error = got < 0 ? errno : EIO;
			snap_set_err(
			    err, err_size,
			    "memory file %s: reading %llu bytes at offset %llu of the memory "
			    "file this VM was restored from failed: %s",
			    w->path, (unsigned long long)(n * PAGE), (unsigned long long)src_offset,
			    got < 0 ? strerror(error) : "short read (was it truncated?)");
			return -error;
		}
		for (uint64_t i = 0; i <= n; i++) {
			if (i < n && !page_is_zero(w->bounce + i * PAGE)) {
				run++;
				continue;
			}
			if (run) {
				ret = write_run(w, w->bounce + (i - run) * PAGE, run * PAGE,
						dst_offset + (i - run) * PAGE, err, err_size);
				if (ret)
					return ret;
			}
			run = 0;
		}
		pages -= n;
		src_offset += n * PAGE;
		dst_offset += n * PAGE;
	}
	return 0;
}

/* Writes region's pages at file_offset, contiguous pages of one source in one go. */
static int write_region(struct file_writer *w, const struct gmem *mem, unsigned int index,
			uint64_t file_offset, const uint64_t *bits, const uint64_t *file_data,
			bool diff, char *err, size_t err_size)
{
	const struct gmem_region *region = &mem->regions[index];
	uint64_t pages = region->size / PAGE, run_start = 0, run_len = 0;
	enum page_source run_source = FROM_NOWHERE;
	int ret = 0;

	for (uint64_t page = 0; page <= pages; page++) {
		enum page_source source =
		    page < pages ? source_of(region, page, bits, file_data, diff) : FROM_NOWHERE;
		if (source != FROM_NOWHERE && source == run_source && run_len * PAGE < MAX_RUN) {
			run_len++;
			continue;
		}
		if (run_source == FROM_MEMORY)
			ret = write_run(w, region->host + run_start * PAGE, run_len * PAGE,
					file_offset + run_start * PAGE, err, err_size);
		else if (run_source == FROM_FILE)
			ret = copy_file_run(w, mem->file_fd, region->file_offset + run_start * PAGE,
					    file_offset + run_start * PAGE, run_len, err, err_size);
		if (ret)
			return ret;
		run_start = page;
		run_len = 1;
		run_source = source;
	}
	return 0;
}

/* "DIR/.NAME.XXXXXX" for mkstemp and DIR itself. */
static int temp_names(const char *path, char *tmp, size_t tmp_size, char *dir, size_t dir_size)
{
	const char *slash = strrchr(path, '/');

	if (!*path || (slash && !slash[1]) || strlen(path) + 9 > tmp_size)
		return -EINVAL;
	if (slash) {
		snprintf(tmp, tmp_size, "%.*s/.%s.XXXXXX", (int)(slash - path), path, slash + 1);
		snprintf(dir, dir_size, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	} else {
		snprintf(tmp, tmp_size, ".%s.XXXXXX", path);
		snprintf(dir, dir_size, ".");
	}
	return 0;
}

int memory_file_write(const struct gmem *mem, const char *path,
		      const struct memory_file_request *req, uint64_t *bytes_written, char *err,
		      size_t err_size)
{
	uint64_t *dirty[GMEM_MAX_REGIONS] = {NULL}, *bits[GMEM_MAX_REGIONS] = {NULL};
	uint64_t *file_data[GMEM_MAX_REGIONS] = {NULL};
	uint64_t offsets[GMEM_MAX_REGIONS], total = 0;
	struct file_writer w = {.fd = -1, .path = path};
	char tmp[4096], dir[4096];
	bool renamed = false;
	int dir_fd = -1, ret;

	w.ops.pwrite = req->ops && req->ops->pwrite ? req->ops->pwrite : real_pwrite;
	w.ops.fsync = req->ops && req->ops->fsync ? req->ops->fsync : real_fsync;
	w.ops.rename = req->ops && req->ops->rename ? req->ops->rename : real_rename;
	*bytes_written = 0;

	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		if (!mem->regions[i].host || (mem->regions[i].size % PAGE)) {
			snap_set_err(err, err_size,
				     "memory file %s: guest memory region %u is not mapped", path,
				     i);
			return -EINVAL;
		}
		total += mem->regions[i].size;
	}
	if (req->diff && !mem->tracking_dirty) {
		snap_set_err(err, err_size,
			     "a Diff snapshot needs dirty page tracking: set track_dirty_pages "
			     "in the machine configuration (or on snapshot load)");
		return -EINVAL;
	}
	if (temp_names(path, tmp, sizeof(tmp), dir, sizeof(dir))) {
		snap_set_err(err, err_size,
			     "memory file path '%.256s': empty, a directory or too long", path);
		return -EINVAL;
	}
	memory_file_offsets(mem, offsets);

	/* The dirty state is taken by a Full snapshot too: the next Diff starts from here. */
	if (mem->tracking_dirty) {
		ret = take_dirty(mem, req, dirty, err, err_size);
		if (ret)
			goto fail;
	}
	for (unsigned int i = 0; i < mem->nr_regions && !req->diff; i++) {
		const struct gmem_region *region = &mem->regions[i];
		bits[i] = calloc(gmem_bitmap_words(region), sizeof(uint64_t));
		if (!bits[i]) {
			snap_set_err(err, err_size, "memory file: out of memory for a page bitmap");
			ret = -ENOMEM;
			goto fail;
		}
		mark_touched(region, bits[i]);
		if ((!region->file_backed || !mem->has_file) && region->served_on_fault)
			set_bits(bits[i], 0, region->size / PAGE); /* the handler has the data */
		if (!region->file_backed || !mem->has_file)
			continue;
		file_data[i] = calloc(gmem_bitmap_words(region), sizeof(uint64_t));
		if (!file_data[i] || (!w.bounce && !(w.bounce = malloc(COPY_PAGES * PAGE)))) {
			snap_set_err(err, err_size, "memory file: out of memory for a page bitmap");
			ret = -ENOMEM;
			goto fail;
		}
		mark_file_data(mem->file_fd, region, file_data[i]);
	}

	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "memory file %s: cannot open its directory %s: %s",
			     path, dir, strerror(errno));
		goto fail;
	}
	w.fd = mkostemp(tmp, O_CLOEXEC);
	if (w.fd < 0) {
		ret = -errno;
		snap_set_err(err, err_size,
			     "memory file %s: cannot create a temporary file in %s: %s", path, dir,
			     strerror(errno));
		goto fail;
	}
	if (ftruncate(w.fd, (off_t)total) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "memory file %s: cannot size it to %llu bytes: %s",
			     path, (unsigned long long)total, strerror(errno));
		goto fail;
	}
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		ret = write_region(&w, mem, i, offsets[i], req->diff ? dirty[i] : bits[i],
				   file_data[i], req->diff, err, err_size);
		if (ret)
			goto fail;
	}
	if (w.ops.fsync(w.fd) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "memory file %s: fsync failed: %s", path,
			     strerror(errno));
		goto fail;
	}
	if (w.ops.rename(tmp, path) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "memory file %s: cannot rename %s over it: %s", path,
			     tmp, strerror(errno));
		goto fail;
	}
	renamed = true;
	if (w.ops.fsync(dir_fd) < 0) {
		ret = -errno;
		snap_set_err(
		    err, err_size,
		    "memory file %s is written, but fsync of its directory %s failed (%s): "
		    "the new file may not survive a crash",
		    path, dir, strerror(errno));
		goto fail;
	}
	*bytes_written = w.written;
	ret = 0;
	goto out;
fail:
	if (w.fd >= 0 && !renamed)
		unlink(tmp);
	give_back_dirty(mem, dirty);
out:
	if (w.fd >= 0)
		close(w.fd);
	if (dir_fd >= 0)
		close(dir_fd);
	for (unsigned int i = 0; i < GMEM_MAX_REGIONS; i++) {
		free(dirty[i]);
		free(bits[i]);
		free(file_data[i]);
	}
	free(w.bounce);
	return ret;
}

static int copy_range(int from, int to, off_t start, off_t end, uint8_t *buf, size_t buf_size,
		      uint64_t *copied)
{
	while (start < end) {
		size_t want = (uint64_t)(end - start) < buf_size ? (size_t)(end - start) : buf_size;
		ssize_t got = pread(from, buf, want, start);
		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		for (ssize_t done = 0; done < got;) {
			ssize_t n = pwrite(to, buf + done, (size_t)(got - done), start + done);
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			done += n;
		}
		start += got;
		*copied += (uint64_t)got;
	}
	return 0;
}

int memory_file_rebase(const char *base, const char *diff, uint64_t *bytes_copied, char *err,
		       size_t err_size)
{
	size_t buf_size = 1 << 20;
	uint8_t *buf = NULL;
	uint64_t copied = 0;
	int base_fd = -1, diff_fd = -1, ret;
	struct stat base_st, diff_st;

	diff_fd = open(diff, O_RDONLY | O_CLOEXEC);
	if (diff_fd < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "cannot open the diff memory file %s: %s", diff,
			     strerror(errno));
		goto out;
	}
	base_fd = open(base, O_WRONLY | O_CLOEXEC);
	if (base_fd < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "cannot open the base memory file %s for writing: %s",
			     base, strerror(errno));
		goto out;
	}
	if (fstat(diff_fd, &diff_st) < 0 || fstat(base_fd, &base_st) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "cannot fstat the memory files: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(diff_st.st_mode) || !S_ISREG(base_st.st_mode)) {
		ret = -EINVAL;
		snap_set_err(err, err_size, "%s and %s must both be regular files", base, diff);
		goto out;
	}
	if (diff_st.st_dev == base_st.st_dev && diff_st.st_ino == base_st.st_ino) {
		ret = -EINVAL;
		snap_set_err(err, err_size, "%s and %s are the same file", base, diff);
		goto out;
	}
	if (diff_st.st_size != base_st.st_size) {
		ret = -EINVAL;
		snap_set_err(err, err_size,
			     "the diff memory file %s is %lld bytes, the base %s is %lld: a diff "
			     "applies only to a base of the same VM (same size); nothing changed",
			     diff, (long long)diff_st.st_size, base, (long long)base_st.st_size);
		goto out;
	}
	buf = malloc(buf_size);
	if (!buf) {
		ret = -ENOMEM;
		snap_set_err(err, err_size, "out of memory for a copy buffer");
		goto out;
	}
	for (off_t pos = 0; pos < diff_st.st_size;) {
		off_t data = lseek(diff_fd, pos, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0 || (hole = lseek(diff_fd, data, SEEK_HOLE)) < 0) {
			ret = -errno;
			snap_set_err(err, err_size,
				     "cannot find the data ranges of %s (SEEK_DATA/SEEK_HOLE: %s): "
				     "its filesystem must report holes",
				     diff, strerror(errno));
			goto out;
		}
		ret = copy_range(diff_fd, base_fd, data, hole, buf, buf_size, &copied);
		if (ret) {
			snap_set_err(
			    err, err_size,
			    "copying %s's bytes %lld..%lld onto %s failed: %s (the base is "
			    "now partly rebased: restore it from a copy)",
			    diff, (long long)data, (long long)hole, base, strerror(-ret));
			goto out;
		}
		pos = hole;
	}
	if (fsync(base_fd) < 0) {
		ret = -errno;
		snap_set_err(err, err_size, "fsync of %s failed: %s", base, strerror(errno));
		goto out;
	}
	if (bytes_copied)
		*bytes_copied = copied;
	ret = 0;
out:
	free(buf);
	if (base_fd >= 0)
		close(base_fd);
	if (diff_fd >= 0)
		close(diff_fd);
	return ret;
}

int memory_file_rebase_main(int argc, char **argv)
{
	static const char usage[] =
	    "Usage: wisp snapshot-rebase BASE_MEM DIFF_MEM\n"
	    "Copies the pages a Diff snapshot's memory file holds onto the memory file of the\n"
	    "snapshot it was taken after (in place): BASE_MEM then restores with the Diff's\n"
	    "state file. Both must be the same size. Exit status 0 when done, 2 when not.\n";
	char err[1024];
	uint64_t copied = 0;

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc != 3) {
		fprintf(stderr, "wisp: snapshot-rebase takes a base and a diff memory file\n%s",
			usage);
		return 2;
	}
	if (memory_file_rebase(argv[1], argv[2], &copied, err, sizeof(err))) {
		fprintf(stderr, "wisp: %s\n", err);
		return 2;
	}
	printf("%s: %s's pages copied onto it (%llu bytes)\n", argv[1], argv[2],
	       (unsigned long long)copied);
	return 0;
}
