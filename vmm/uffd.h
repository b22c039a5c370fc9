/*
 * The Uffd snapshot restore backend, wisp's side (Firecracker's `mem_backend` of type
 * "Uffd"): guest memory is registered with a new userfaultfd, and the fd goes with the
 * memory layout to a page-fault handler listening on a Unix socket, which fills each page
 * the first time the guest (or wisp, or KVM) touches it. The message is Firecracker's
 * (vmm/uffd_proto.h), so Firecracker's handlers serve wisp and wisp's handler
 * (build/wisp-uffd-handler) serves Firecracker.
 *
 * What the caller guarantees:
 * - mem's regions are mapped anonymous and private (gmem_map_anonymous) and nothing has
 *   touched them yet: a page already present never faults, so it would keep its zeros
 *   instead of the snapshot's contents;
 * - layout is the snapshot's memory layout and matches mem region by region (same guest
 *   address and size; checked here);
 * - backend->uffd stays open for the VM's life (uffd_backend_close after gmem_unmap):
 *   closing the last copy of a userfaultfd unregisters the memory, and every page the
 *   handler has not filled would then read as zeros instead of the snapshot's contents.
 *   (While it stays open, a handler that dies leaves the next fault waiting forever, as
 *   with Firecracker; uffd_backend_check_alive and backend->handler_pidfd tell.)
 */
#ifndef WISP_UFFD_H
#define WISP_UFFD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "memory.h"
#include "snapshot_format.h"

struct uffd_backend {
	int uffd;	   /* registered over all of guest memory; keep open */
	int sock;	   /* the connection to the handler, kept so that it sees wisp go */
	int handler_pidfd; /* readable once the handler exits; -1 when unknown */
	pid_t handler_pid; /* from SO_PEERCRED; 0 when unknown (another pid namespace) */
	uint64_t features; /* what UFFDIO_API granted (UFFD_FEATURE_EVENT_REMOVE...) */
	char socket_path[108];
};

#define UFFD_BACKEND_INIT                                                                          \
	{                                                                                          \
		.uffd = -1, .sock = -1, .handler_pidfd = -1                                        \
	}

/*
 * Creates a userfaultfd (O_CLOEXEC | O_NONBLOCK; the userfaultfd system call, else
 * /dev/userfaultfd), enables it asking for UFFD_FEATURE_EVENT_REMOVE where the kernel has
 * it, registers every region of mem for missing-page faults, connects to the handler's
 * Unix stream socket at socket_path, and sends the mappings JSON with the fd. Then checks
 * once, without waiting, that the handler has not already gone.
 *
 * Returns 0 with *backend filled, or -errno with a message in err and *backend holding no
 * fd: -ECONNREFUSED/-ENOENT "the Uffd handler at PATH is not listening", -EPERM/-EACCES
 * saying which of the system call (vm.unprivileged_userfaultfd) or /dev/userfaultfd
 * refused, -EINVAL for a layout that does not match mem, -EPIPE for a handler that went
 * away. On a failure after the send, the handler may already have filled pages: the memory
 * is no longer untouched and must be mapped afresh before another attempt.
 */
int uffd_backend_connect(const struct gmem *mem, const struct snap_mem_layout *layout,
			 const char *socket_path, struct uffd_backend *backend, char *err,
			 size_t err_size);

/*
 * Whether the handler is still there: waits up to timeout_ms (0: just looks) for its
 * process to exit (through its pidfd) or, when its pid is unknown, for it to close the
 * connection. Returns 0 while it lives, -EPIPE with a message once it is gone (the guest's
 * next page fault would then wait forever).
 */
int uffd_backend_check_alive(const struct uffd_backend *backend, int timeout_ms, char *err,
			     size_t err_size);

/* Closes every fd; safe on UFFD_BACKEND_INIT and twice. Call after gmem_unmap. */
void uffd_backend_close(struct uffd_backend *backend);

#endif
