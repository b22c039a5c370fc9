/*
 * The snapshot's memory file: the guest's memory regions back to back in layout order (the
 * offset of region i is the sum of the earlier regions' sizes), as Firecracker lays it out,
 * so a restore maps it directly (gmem_map_file).
 *
 * Full: only pages that hold data are written; the rest are holes (a sparse file), so a
 * 2 GiB guest that used 100 MiB writes about 100 MiB. A page holds data when it is resident
 * or swapped (/proc/self/pagemap; mincore() where pagemap is unreadable) and not all zero;
 * for a region mapped from an earlier memory file (a restored VM), the earlier file's data
 * ranges (SEEK_DATA/SEEK_HOLE) count too, copied from that file (the VM's memory is not
 * faulted in). A region served by a userfaultfd handler without the file (served_on_fault)
 * is read whole, each page not yet served faulting in through the handler.
 *
 * Diff: only the pages dirtied since the previous snapshot (KVM's dirty log OR the pages wisp
 * wrote itself), zero pages included, into a sparse file of the full size: holes mean
 * "unchanged". It restores only after memory_file_rebase() copied it onto its base.
 *
 * Writing is atomic: a temporary file in the target's directory, fsynced, renamed, the
 * directory fsynced. A failure (ENOSPC, EIO...) removes the temporary file and leaves
 * whatever was at the path untouched.
 */
#ifndef WISP_MEMORY_FILE_H
#define WISP_MEMORY_FILE_H

#include "memory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The system calls the writer makes, replaceable so that tests can fail each one. NULL
 * fields, or NULL ops: the real calls. */
struct memory_file_ops {
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t offset);
	int (*fsync)(int fd);
	int (*rename)(const char *from, const char *to);
};

/* Reads and clears the hypervisor's log of the pages the guest wrote in region `region`
 * since the last call, ORing nothing: it fills `bitmap` (gmem_bitmap_words() words, one bit
 * per 4 KiB page). kvm.h's kvm_dirty_log_of_region() is one. */
typedef int (*memory_dirty_log_fn)(void *opaque, unsigned int region, uint64_t *bitmap);

struct memory_file_request {
	bool diff;
	/* With dirty tracking on (gmem_track_dirty): where the guest's own writes are logged.
	 * Both kinds of snapshot read and clear the dirty state (KVM's log and wisp's bitmap),
	 * so that a following Diff holds only later changes; on failure the pages stay dirty.
	 * NULL: wisp's bitmap only (unit tests). */
	memory_dirty_log_fn dirty_log;
	void *dirty_log_opaque;
	const struct memory_file_ops *ops;
};

/* Region i's offset in the memory file: the sum of the earlier regions' sizes. */
void memory_file_offsets(const struct gmem *mem, uint64_t offsets[GMEM_MAX_REGIONS]);

/*
 * Writes the memory file of `mem` (guest paused: nothing may write guest memory meanwhile)
 * at `path`. *bytes_written: the data written (pages, not holes). A Diff needs dirty
 * tracking (-EINVAL otherwise). Returns 0 or -errno with a message in err.
 */
int memory_file_write(const struct gmem *mem, const char *path,
		      const struct memory_file_request *req, uint64_t *bytes_written, char *err,
		      size_t err_size);

/*
 * Copies the data ranges of the Diff memory file `diff` (SEEK_DATA/SEEK_HOLE) onto the
 * memory file `base` in place and fsyncs it: `base` then holds the Diff's state. Both must
 * be the same size (refused otherwise, nothing changed). Needs a filesystem that reports
 * holes (ext4, xfs, btrfs, tmpfs). *bytes_copied may be NULL.
 */
int memory_file_rebase(const char *base, const char *diff, uint64_t *bytes_copied, char *err,
		       size_t err_size);

/* `wisp snapshot-rebase BASE_MEM DIFF_MEM`: argv[0] is "snapshot-rebase". Exit status 0 on
 * success, 2 on failure (the message on stderr), as snapshot-info. */
int memory_file_rebase_main(int argc, char **argv);

#endif
