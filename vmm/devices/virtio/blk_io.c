#define _GNU_SOURCE /* O_DIRECT */
#include "blk_internal.h"

#include "../../log.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *op_name(uint32_t type)
{
	return type == VIRTIO_BLK_T_IN ? "read" : type == VIRTIO_BLK_T_OUT ? "write" : "flush";
}

/* res: bytes transferred (0 for a flush) or -errno, as io_uring reports it. A host
 * failure is the guest's I/O error, never the VMM's; only the first one is logged so a
 * failing disk cannot flood the log. */
static void finish_io(struct blk_device *blk, struct blk_request *req, int64_t res, bool push)
{
	int64_t expected = req->type == VIRTIO_BLK_T_FLUSH ? 0 : req->len;

	if (res == expected) {
		blk->host_syncs += req->type == VIRTIO_BLK_T_FLUSH;
		blk_complete_request(blk, req, VIRTIO_BLK_S_OK, push);
		return;
	}
	atomic_fetch_add(&blk->metrics.io_errors, 1);
	if (!blk->io_error_logged) {
		char why[64];

		blk->io_error_logged = true;
		if (res < 0)
			snprintf(why, sizeof(why), "%s", strerror((int)-res));
		else
			snprintf(why, sizeof(why), "short transfer (%lld bytes)", (long long)res);
		log_error("drive '%s': %s of %u bytes at offset %llu of %s failed: %s (further "
			  "I/O errors are only counted)",
			  blk->config.id, op_name(req->type), req->len,
			  (unsigned long long)req->offset, blk->config.path, why);
	}
	blk_complete_request(blk, req, VIRTIO_BLK_S_IOERR, push);
}

/* O_DIRECT wants sector-aligned buffers; a request whose buffers are not (legal, if
 * unusual) goes through the page cache instead, which Linux keeps coherent. */
static int data_fd(const struct blk_device *blk, const struct blk_request *req)
{
	if (blk->direct_fd < 0)
		return blk->fd;
	for (unsigned int i = 0; i < req->nr_data; i++)
		if (((uintptr_t)req->data[i].iov_base | req->data[i].iov_len) %
		    VIRTIO_BLK_SECTOR_SIZE)
			return blk->fd;
	return blk->direct_fd;
}

static int64_t sync_io(struct blk_device *blk, struct blk_request *req)
{
	struct iovec *iov = req->data;
	unsigned int nr = req->nr_data;
	uint64_t offset = req->offset;
	int fd = data_fd(blk, req);
	int64_t done = 0;

	if (req->type == VIRTIO_BLK_T_FLUSH)
		return fdatasync(blk->fd) ? -errno : 0;
	while (done < req->len) {
		ssize_t n = req->type == VIRTIO_BLK_T_IN ? preadv(fd, iov, (int)nr, (off_t)offset)
							 : pwritev(fd, iov, (int)nr, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* the end of a shrunk image */
		done += n;
		offset += (uint64_t)n;
		iov = blk_iov_skip(iov, &nr, (size_t)n);
	}
	return done;
}

static int submit_async(struct blk_device *blk, struct blk_request *req)
{
	/* The ring has as many entries as the pool has records: never full. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(&blk->ring);

	if (!sqe)
		return -EAGAIN;
	if (req->type == VIRTIO_BLK_T_IN)
		io_uring_prep_readv(sqe, data_fd(blk, req), req->data, req->nr_data, req->offset);
	else if (req->type == VIRTIO_BLK_T_OUT)
		io_uring_prep_writev(sqe, data_fd(blk, req), req->data, req->nr_data, req->offset);
	else
		io_uring_prep_fsync(sqe, blk->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, req);
	return 0;
}

/* A valid read, write or flush, to the engine in use. 1: completed (Sync, or a failed
 * submission), 0: submitted to io_uring. */
int blk_start_io(struct blk_device *blk, struct blk_request *req)
{
	int64_t res;

	if (blk->engine == IO_ENGINE_ASYNC) {
		if (!submit_async(blk, req))
			return 0;
		finish_io(blk, req, -EAGAIN, true);
		return 1;
	}
	/* The only blocking call: without dev->lock, so that the guest's register accesses
	 * (its interrupt handler's above all) never wait for the disk. The record and the
	 * buffers popped into it are this request's alone until the lock is back. */
	virtio_io_begin(&blk->vdev);
	res = sync_io(blk, req);
	virtio_io_end(&blk->vdev);
	finish_io(blk, req, res, true);
	return 1;
}

void blk_flush_submissions(struct blk_device *blk)
{
	int ret = io_uring_submit(&blk->ring);

	/* Failed SQEs stay in the ring: the next notification or completion retries. */
	if (ret < 0 && !blk->submit_error_logged) {
		blk->submit_error_logged = true;
		log_error("drive '%s': io_uring submission failed: %s", blk->config.id,
			  strerror(-ret));
	}
}

unsigned int blk_reap(struct blk_device *blk, bool push)
{
	struct io_uring_cqe *cqe;
	unsigned int head, count = 0;

	io_uring_for_each_cqe(&blk->ring, head, cqe)
	{
		finish_io(blk, io_uring_cqe_get_data(cqe), cqe->res, push);
		count++;
	}
	io_uring_cq_advance(&blk->ring, count);
	return count;
}

/* Waits for the requests in flight and completes them (pushed to the guest, or with push
 * false only taken out of the kernel). Needs dev->lock. With drop_lock (VMM thread only)
 * the wait itself runs without it (virtio_io_begin), so that the guest's register
 * accesses do not wait on the disk; a vCPU reset, the other user of the ring, then waits
 * for the wait to end. */
static int drain(struct blk_device *blk, bool push, bool drop_lock)
{
	bool pushed = false;
	int ret = 0;

	if (blk->engine != IO_ENGINE_ASYNC)
		return 0;
	while (blk_inflight(blk)) {
		if (drop_lock)
			virtio_io_begin(&blk->vdev);
		ret = io_uring_submit_and_wait(&blk->ring, 1);
		if (drop_lock)
			virtio_io_end(&blk->vdev);
		if (ret == -EINTR)
			continue;
		if (ret < 0) {
			log_error("drive '%s': waiting for %u requests in flight failed: %s",
				  blk->config.id, blk_inflight(blk), strerror(-ret));
			break;
		}
		ret = 0;
		pushed |= blk_reap(blk, push) > 0;
	}
	if (pushed && push)
		virtio_notify_used(&blk->vdev, 0);
	return ret;
}

/* With push false the requests only leave the kernel: the guest's memory is then no
 * longer written behind the back of a reset or a teardown. Needs dev->lock (a reset's,
 * held throughout: the queues are being reset under it). */
int blk_drain_locked(struct blk_device *blk, bool push)
{
	return drain(blk, push, false);
}

uint64_t blk_host_syncs(struct blk_device *blk)
{
	return blk->host_syncs;
}

int blk_drain(struct blk_device *blk)
{
	int ret;

	pthread_mutex_lock(&blk->vdev.lock);
	ret = drain(blk, true, true);
	pthread_mutex_unlock(&blk->vdev.lock);
	return ret;
}

/* The size in bytes of the image open as fd (a regular file or a block device). */
static int image_size(const struct blk_device *blk, int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		int err = -errno;
		log_error("drive '%s': cannot stat %s: %s", blk->config.id, path, strerror(errno));
		return err;
	}
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) == 0)
			return 0;
		int err = -errno;
		log_error("drive '%s': cannot get the size of block device %s: %s", blk->config.id,
			  path, strerror(errno));
		return err;
	}
	log_error("drive '%s': %s is not a regular file or a block device", blk->config.id, path);
	return -EINVAL;
}

/* Opens `path` as this drive's image (and its O_DIRECT twin with direct=on): the fds in
 * *fd_out and *direct_fd_out, its size in sectors in *capacity. Logs what failed. */
int blk_open_image(struct blk_device *blk, const char *path, int *fd_out, int *direct_fd_out,
		   uint64_t *capacity)
{
	int flags = (blk->config.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	int fd, direct_fd = -1, err;
	uint64_t size;

	fd = open(path, flags);
	if (fd < 0) {
		err = -errno;
		log_error("drive '%s': cannot open %s: %s", blk->config.id, path, strerror(errno));
		return err;
	}
	if (blk->config.direct) {
		direct_fd = open(path, flags | O_DIRECT);
		if (direct_fd < 0)
			log_warn("drive '%s': %s cannot be opened with O_DIRECT (%s): direct=on "
				 "is ignored, I/O goes through the page cache",
				 blk->config.id, path, strerror(errno));
	}
	err = image_size(blk, fd, path, &size);
	if (err) {
		close(fd);
		if (direct_fd >= 0)
			close(direct_fd);
		return err;
	}
	*capacity = size / VIRTIO_BLK_SECTOR_SIZE;
	if (size % VIRTIO_BLK_SECTOR_SIZE)
		log_warn("drive '%s': %s is %llu bytes, not a multiple of %d: the last %llu "
			 "bytes are not exposed",
			 blk->config.id, path, (unsigned long long)size, VIRTIO_BLK_SECTOR_SIZE,
			 (unsigned long long)(size % VIRTIO_BLK_SECTOR_SIZE));
	*fd_out = fd;
	*direct_fd_out = direct_fd;
	return 0;
}

int blk_update_path(struct blk_device *blk, const char *path)
{
	int fd, direct_fd, err;
	uint64_t capacity;

	if (strlen(path) >= sizeof(blk->config.path))
		return -ENAMETOOLONG;
	/* Opened before taking the lock: an open may wait on a slow file system. */
	err = blk_open_image(blk, path, &fd, &direct_fd, &capacity);
	if (err)
		return err;
	pthread_mutex_lock(&blk->vdev.lock);
	/* Requests in flight finish on the old file; none start until the swap is done (this
	 * thread is the one that would start them). */
	err = drain(blk, true, true);
	if (err) {
		close(fd);
		if (direct_fd >= 0)
			close(direct_fd);
		goto out;
	}
	close(blk->fd);
	if (blk->direct_fd >= 0)
		close(blk->direct_fd);
	blk->fd = fd;
	blk->direct_fd = direct_fd;
	blk->capacity = capacity;
	strcpy(blk->config.path, path);
	/* The driver re-reads the capacity on a configuration change interrupt. */
	virtio_config_changed(&blk->vdev);
out:
	pthread_mutex_unlock(&blk->vdev.lock);
	return err;
}

void blk_teardown_async(struct blk_device *blk)
{
	if (blk->ring_ready)
		io_uring_queue_exit(&blk->ring);
	blk->ring_ready = false;
	if (blk->event_fd >= 0)
		close(blk->event_fd);
	blk->event_fd = -1;
}

/*
 * seccomp sees io_uring_enter, not the operations the ring carries out: the ring itself is
 * restricted (README "Seccomp"). It is created disabled, told the only operations it may
 * run (readv, writev, fsync: what submit_async prepares; no SQE flags) and that no
 * io_uring_register call may follow, and only then enabled.
 */
int blk_setup_async(struct blk_device *blk)
{
	struct io_uring_params params = {.flags = IORING_SETUP_R_DISABLED};
	struct io_uring_restriction allowed[] = {
	    {.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_READV},
	    {.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_WRITEV},
	    {.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_FSYNC},
	};
	int err = io_uring_queue_init_params(VIRTIO_BLK_QUEUE_SIZE, &blk->ring, &params);

	if (err)
		return err;
	blk->ring_ready = true;
	blk->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (blk->event_fd < 0)
		return -errno;
	err = io_uring_register_eventfd(&blk->ring, blk->event_fd);
	if (err)
		return err;
	/* The system calls themselves: Debian's shared liburing 2.3 does not export
	 * io_uring_register_restrictions and io_uring_enable_rings (the unit tests link it). */
	if (syscall(__NR_io_uring_register, blk->ring.ring_fd, IORING_REGISTER_RESTRICTIONS,
		    allowed, sizeof(allowed) / sizeof(allowed[0])) < 0 ||
	    syscall(__NR_io_uring_register, blk->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
		    0) < 0)
		return -errno;
	return 0;
}
