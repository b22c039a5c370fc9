/*
 * Where the UART's transmitted bytes go: the console (stdout, or PUT /serial's file),
 * without ever blocking the vCPU that transmits them.
 *
 * A console reader that stops reading (a full pipe, a stopped terminal) must not stop the
 * guest, and with it `vcpus_pause` and every API request. So the bytes are written with
 * non-blocking writes; what the console refuses goes into a ring of
 * SERIAL_OUTPUT_RING_SIZE bytes that the VMM thread flushes when the console becomes
 * writable again (EPOLLOUT), and what does not fit in the ring either is dropped and
 * counted (Firecracker's uart.missed_write_count). Bytes are never reordered: while the
 * ring holds anything, new bytes go behind it.
 *
 * A reader that is only slow for a moment (a busy host starving it) should lose nothing:
 * when the ring is full, the vCPU waits up to SERIAL_OUTPUT_GRACE_MS once for the VMM
 * thread's flush to make room. If none comes, the console counts as stalled and bytes are
 * dropped at once, with no more waiting, until the reader has drained the ring to half:
 * a reader that stopped for good costs the guest that one wait per stall.
 *
 * Non-blocking, without touching what other processes share: O_NONBLOCK belongs to the
 * open file description, which a shell or a parent shares through an inherited stdout,
 * and setting it there would make their writes fail with EAGAIN. So a pipe, FIFO,
 * terminal or character device is opened again through /proc/self/fd/N, which gives
 * wisp a description of its own to make non-blocking. Only where that is impossible (no
 * /proc, a socket, a FIFO without a reader yet) is O_NONBLOCK set on the shared
 * description, logged, and the old flags put back by serial_output_finish(). A regular
 * file or block device is written directly: it never refuses bytes (a slow disk may
 * still take its time, as any file write does).
 *
 * The ring is host-side output, not guest state: its bytes have left the UART (the
 * transmitter is empty as soon as the guest writes THR), so a snapshot does not carry
 * them, and serial_state stays what it was.
 *
 * Threads: serial_output_write() on vCPU threads (under the UART's lock), the flush on
 * the VMM thread; one mutex, held only across non-blocking calls.
 */
#ifndef WISP_SERIAL_OUTPUT_H
#define WISP_SERIAL_OUTPUT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_OUTPUT_RING_SIZE (64 * 1024)
#define SERIAL_OUTPUT_GRACE_MS	200

struct serial_output {
	pthread_mutex_t lock;
	int fd;		     /* where the bytes go: non-blocking unless `direct` */
	int own_fd;	     /* fd when serial_output_init opened it (closed at the end), or -1 */
	int shared_flags;    /* the flags to put back on a shared fd made non-blocking, or -1 */
	bool direct;	     /* a regular file or block device: written as is, no ring */
	bool failed;	     /* the last write failed (EPIPE...): logged once per failing run */
	bool closed;	     /* serial_output_finish ran: bytes are dropped */
	bool stalled;	     /* a grace wait found no room: drop until the ring is half empty */
	pthread_cond_t room; /* the flush made room in the ring, or output closed */
	uint8_t *ring;
	size_t head, count;
	/* Called (under the lock, so it must not block or call back) when bytes wait in
	 * the ring and the console must be watched for EPOLLOUT; NULL: none. */
	void (*wait_writable)(void *opaque);
	void *opaque;
	_Atomic uint64_t written_bytes; /* taken by the console */
	_Atomic uint64_t missed_bytes;	/* dropped: the ring was full, or the console gone */
};

/*
 * Prepares output to fd. `owned`: wisp opened fd itself and shares it with nobody (PUT
 * /serial's file), so it may be made non-blocking in place; else (stdout) see above.
 * Returns 0 or -errno (out of memory, fcntl failing).
 */
int serial_output_init(struct serial_output *out, int fd, bool owned,
		       void (*wait_writable)(void *opaque), void *opaque);
/* The UART's output callback: never blocks beyond one grace wait per stall (above). vCPU
 * threads. */
void serial_output_write(void *out, const uint8_t *bytes, size_t len);
/* Writes what the ring holds as far as the console takes it; true if bytes remain (watch
 * for EPOLLOUT again). VMM thread. */
bool serial_output_flush(struct serial_output *out);
/* The fd to watch for EPOLLOUT, -1 when there is nothing to watch (direct output). */
int serial_output_poll_fd(const struct serial_output *out);
/* At the end of the VM: gives the console up to timeout_ms to take what is left in the
 * ring (the rest is counted as missed) and puts a shared fd's flags back; later bytes are
 * dropped. vCPU threads may still call serial_output_write. */
void serial_output_finish(struct serial_output *out, int timeout_ms);
/* Frees the ring and closes wisp's own fd; no thread may use out any more. */
void serial_output_destroy(struct serial_output *out);

#endif
