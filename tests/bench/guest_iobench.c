/* guest_iobench: the guest side of tests/bench/bench_io.py, built static at run time and
 * put into the benchmark's root image as /bin/iobench.
 *
 *   iobench blk write|read DEVICE BLOCK_BYTES TOTAL_BYTES
 *       sequential O_DIRECT I/O from offset 0 in BLOCK_BYTES requests, timed with
 *       CLOCK_MONOTONIC; a write ends with fsync (a virtio-blk flush), timed apart.
 *       Prints: BENCH blk op=OP bs=BS bytes=N ns=T fsync_ns=F
 *   iobench now
 *       prints CLOCK_MONOTONIC in nanoseconds (busybox's date has no %N)
 *
 * Busybox dd does O_DIRECT (iflag/oflag=direct) but Debian's build prints no rate, and
 * timing it from the shell costs a fork and exec inside the window; hence this helper.
 * Exit status 0, or 1 with a "BENCH-ERROR ..." line on stdout (the console). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int fail(const char *what, int err)
{
	printf("BENCH-ERROR iobench: %s: %s\n", what, strerror(err));
	fflush(stdout);
	return 1;
}

static int blk(const char *op, const char *device, const char *bs_arg, const char *total_arg)
{
	int writing = !strcmp(op, "write");
	char *end;
	unsigned long long bs = strtoull(bs_arg, &end, 0), total;
	void *buf;
	uint64_t start, io_done, done;
	int fd, err;

	if (*end || !bs || bs % 512)
		return fail("BLOCK_BYTES must be a multiple of 512", EINVAL);
	total = strtoull(total_arg, &end, 0);
	if (*end || !total || total % bs)
		return fail("TOTAL_BYTES must be a multiple of BLOCK_BYTES", EINVAL);
	if (!writing && strcmp(op, "read"))
		return fail("the operation must be read or write", EINVAL);
	err = posix_memalign(&buf, 4096, bs);
	if (err)
		return fail("posix_memalign", err);
	memset(buf, 0x5a, bs); /* not zeros: nothing on the way may special-case them */
	fd = open(device, (writing ? O_WRONLY : O_RDONLY) | O_DIRECT);
	if (fd < 0)
		return fail(device, errno);
	start = now_ns();
	for (unsigned long long off = 0; off < total; off += bs) {
		ssize_t n =
		    writing ? pwrite(fd, buf, bs, (off_t)off) : pread(fd, buf, bs, (off_t)off);
		if (n < 0)
			return fail(writing ? "pwrite" : "pread", errno);
		if ((unsigned long long)n != bs)
			return fail("short transfer (device smaller than TOTAL_BYTES?)", EIO);
	}
	io_done = done = now_ns();
	if (writing) {
		if (fsync(fd))
			return fail("fsync", errno);
		done = now_ns();
	}
	close(fd);
	printf("BENCH blk op=%s bs=%llu bytes=%llu ns=%llu fsync_ns=%llu\n", op, bs, total,
	       (unsigned long long)(io_done - start), (unsigned long long)(done - io_done));
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "now")) {
		printf("%llu\n", (unsigned long long)now_ns());
		return 0;
	}
	if (argc == 6 && !strcmp(argv[1], "blk"))
		return blk(argv[2], argv[3], argv[4], argv[5]);
	fprintf(stderr, "usage: iobench blk write|read DEVICE BLOCK_BYTES TOTAL_BYTES\n"
			"       iobench now\n");
	return 2;
}
