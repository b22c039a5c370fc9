/*
 * The Uffd snapshot restore backend, wisp's side (uffd.h).
 */
#define _GNU_SOURCE /* struct ucred, POLLRDHUP */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "uffd_proto.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00) /* /dev/userfaultfd, Linux 6.1 */
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* Connecting and sending to a handler that does not accept must not hang the load. */
#define UFFD_SOCKET_TIMEOUT_S 5


/* A new userfaultfd from the system call, else from /dev/userfaultfd (which a host may open
 * to a user that vm.unprivileged_userfaultfd=0 denies the system call). Kernel-mode faults
 * must be handled too (KVM reaches guest memory from the kernel), so no
 * UFFD_USER_MODE_ONLY: that is what takes the privilege. */
static int uffd_create(char *err, size_t err_size)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	int syscall_errno = errno;

	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		int dev_errno = errno;
		close(dev);
		if (fd >= 0)
			return fd;
		snap_set_err(err, err_size,
			"cannot create a userfaultfd for the Uffd backend: the userfaultfd system "
			"call failed (%s) and so did /dev/userfaultfd's USERFAULTFD_IOC_NEW (%s)",
			strerror(syscall_errno), strerror(dev_errno));
		return -dev_errno;
	}
	int dev_errno = errno;

	const char *why_syscall =
	    syscall_errno == EPERM
		? " (it needs CAP_SYS_PTRACE, or sysctl vm.unprivileged_userfaultfd=1)"
	    : syscall_errno == ENOSYS ? " (a kernel without CONFIG_USERFAULTFD)"
				      : "";
	const char *why_dev =
	    dev_errno == EACCES || dev_errno == EPERM
		? " (give this user read-write access to it, e.g. setfacl -m u:$USER:rw "
		  "/dev/userfaultfd)"
		: "";
	snap_set_err(err, err_size,
		"cannot create a userfaultfd for the Uffd backend: the userfaultfd system call: "
		"%s%s; /dev/userfaultfd: %s%s",
		strerror(syscall_errno), why_syscall, strerror(dev_errno), why_dev);
	/* The system call's answer says more than a missing device node. */
	return syscall_errno == EPERM || dev_errno == ENOENT ? -syscall_errno : -dev_errno;
}

/* A userfaultfd with its API handshake done: UFFD_FEATURE_EVENT_REMOVE where the kernel has
 * it (a balloon's MADV_DONTNEED then reaches the handler, which must serve zeros there
 * afterwards, not the snapshot's old page), else none. */
static int uffd_open(uint64_t *features, char *err, size_t err_size)
{
	const uint64_t wanted[] = {UFFD_FEATURE_EVENT_REMOVE, 0};

	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		int fd = uffd_create(err, err_size);
		if (fd < 0)
			return fd;
		struct uffdio_api api = {.api = UFFD_API, .features = wanted[i]};
		if (ioctl(fd, UFFDIO_API, &api) == 0) {
			if (!(api.ioctls & (1ull << _UFFDIO_REGISTER))) {
				close(fd);
				snap_set_err(err, err_size,
					"userfaultfd: UFFDIO_API offers no UFFDIO_REGISTER (ioctls "
					"0x%llx)",
					(unsigned long long)api.ioctls);
				return -ENOTSUP;
			}
			if (wanted[i] != UFFD_FEATURE_EVENT_REMOVE)
				log_info(
				    "userfaultfd: no UFFD_FEATURE_EVENT_REMOVE on this kernel");
			*features = api.features;
			return fd;
		}
		int e = errno;
		close(fd);
		/* The API call can be made once per fd: a refused feature needs a new one. */
		if (e != EINVAL || wanted[i] == 0) {
			snap_set_err(err, err_size, "userfaultfd: UFFDIO_API (features 0x%llx): %s",
				(unsigned long long)wanted[i], strerror(e));
			return -e;
		}
	}
	snap_set_err(err, err_size, "userfaultfd: UFFDIO_API refused every feature set");
	return -EINVAL;
}

/* The mappings the handler gets: mem's host addresses, layout's file offsets. */
static int build_mappings(const struct gmem *mem, const struct snap_mem_layout *layout,
			  struct uffd_mapping *maps, char *err, size_t err_size)
{
	int ret = snap_mem_layout_check(layout, err, err_size);
	if (ret < 0)
		return ret;
	if (layout->nr_regions != mem->nr_regions) {
		snap_set_err(err, err_size,
			"Uffd backend: the snapshot's memory layout has %u regions, guest memory "
			"has %u",
			layout->nr_regions, mem->nr_regions);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		const struct gmem_region *r = &mem->regions[i];
		const struct snap_mem_region *l = &layout->regions[i];
		if (r->gpa != l->gpa || r->size != l->size) {
			snap_set_err(err, err_size,
				"Uffd backend: guest memory region %u (guest 0x%" PRIx64
				", size 0x%" PRIx64
				") does not match the snapshot's (guest 0x%" PRIx64
				", size 0x%" PRIx64 ")",
				i, r->gpa, r->size, l->gpa, l->size);
			return -EINVAL;
		}
		if (!r->host) {
			snap_set_err(err, err_size, "Uffd backend: guest memory region %u is not mapped",
				i);
			return -EINVAL;
		}
		maps[i] = (struct uffd_mapping){
		    .base_host_virt_addr = (uint64_t)(uintptr_t)r->host,
		    .size = r->size,
		    .offset = l->file_offset,
		    .page_size = UFFD_PAGE_SIZE,
		};
	}
	return uffd_mappings_check(maps, mem->nr_regions, err, err_size);
}

static int register_regions(int uffd, const struct uffd_mapping *maps, unsigned int count,
			    char *err, size_t err_size)
{
	for (unsigned int i = 0; i < count; i++) {
		struct uffdio_register reg = {
		    .range = {.start = maps[i].base_host_virt_addr, .len = maps[i].size},
		    .mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
			int e = errno;
			snap_set_err(err, err_size,
				"userfaultfd: UFFDIO_REGISTER of guest memory region %u (host "
				"0x%" PRIx64 ", %" PRIu64 " MiB): %s",
				i, maps[i].base_host_virt_addr, maps[i].size >> 20, strerror(e));
			return -e;
		}
		const uint64_t needed = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE);
		if ((reg.ioctls & needed) != needed) {
			snap_set_err(err, err_size,
				"userfaultfd: guest memory region %u takes no UFFDIO_COPY/ZEROPAGE "
				"(ioctls 0x%llx): is it anonymous memory?",
				i, (unsigned long long)reg.ioctls);
			return -ENOTSUP;
		}
	}
	return 0;
}

static int connect_handler(const char *path, char *err, size_t err_size)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snap_set_err(err, err_size,
			"the Uffd handler's socket path %s is longer than %zu characters", path,
			sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);

	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		int e = errno;
		snap_set_err(err, err_size, "cannot create a Unix socket for the Uffd handler: %s",
			strerror(e));
		return -e;
	}
	struct timeval timeout = {.tv_sec = UFFD_SOCKET_TIMEOUT_S};
	if (setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0)
		log_debug("Uffd handler socket: SO_SNDTIMEO: %s", strerror(errno));
	if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(sock);
		if (e == ECONNREFUSED || e == ENOENT)
			snap_set_err(err, err_size,
				"the Uffd handler at %s is not listening: %s (start the handler "
				"before loading the snapshot)",
				path, strerror(e));
		else if (e == EAGAIN || e == EINPROGRESS)
			snap_set_err(err, err_size,
				"the Uffd handler at %s did not accept the connection within %d s",
				path, UFFD_SOCKET_TIMEOUT_S);
		else
			snap_set_err(err, err_size, "cannot connect to the Uffd handler at %s: %s", path,
				strerror(e));
		return -e;
	}
	return sock;
}

/* The whole text, with the fd riding on its first byte. */
static int send_mappings(int sock, int uffd, const char *json, size_t len, const char *path,
			 char *err, size_t err_size)
{
	size_t sent = 0;
	bool fd_sent = false;

	while (sent < len) {
		struct iovec iov = {.iov_base = (void *)(json + sent), .iov_len = len - sent};
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} control;
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		if (!fd_sent) {
			memset(&control, 0, sizeof(control));
			msg.msg_control = control.buf;
			msg.msg_controllen = sizeof(control.buf);
			struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			cmsg->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cmsg), &uffd, sizeof(int));
		}
		ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EPIPE;
			if (e == EPIPE || e == ECONNRESET)
				snap_set_err(
				    err, err_size,
				    "the Uffd handler at %s closed the connection before taking "
				    "the memory mappings: %s",
				    path, strerror(e));
			else
				snap_set_err(
				    err, err_size,
				    "cannot send the memory mappings to the Uffd handler at %s: %s",
				    path, strerror(e));
			return -e;
		}
		fd_sent = true;
		sent += (size_t)n;
	}
	return 0;
}

/* The handler's pid (from the socket) and a pidfd that becomes readable when it exits. */
static void watch_handler(struct uffd_backend *b)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(b->sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0) {
		log_debug("Uffd handler at %s: no peer pid; its connection tells when it goes",
			  b->socket_path);
		return;
	}
	b->handler_pid = cred.pid;
	int fd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (fd < 0) {
		/* ESRCH: gone already; check_alive then sees the closed connection. */
		log_debug("Uffd handler at %s: pidfd_open(%d): %s", b->socket_path, (int)cred.pid,
			  strerror(errno));
		return;
	}
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	b->handler_pidfd = fd;
}

int uffd_backend_check_alive(const struct uffd_backend *backend, int timeout_ms, char *err,
			     size_t err_size)
{
	struct pollfd pfd;

	/* The pidfd when there is one: a handler may close the connection on purpose (some of
	 * Firecracker's examples do) and still serve faults. */
	if (backend->handler_pidfd >= 0)
		pfd = (struct pollfd){.fd = backend->handler_pidfd, .events = POLLIN};
	else
		pfd = (struct pollfd){.fd = backend->sock, .events = POLLRDHUP};
	int n;
	do
		n = poll(&pfd, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;
		snap_set_err(err, err_size, "Uffd handler at %s: poll: %s", backend->socket_path,
			strerror(e));
		return -e;
	}
	if (n == 0)
		return 0;
	if (backend->handler_pidfd >= 0)
		snap_set_err(err, err_size,
			"the Uffd handler at %s (pid %d) has exited: the guest's next page fault "
			"would wait forever",
			backend->socket_path, (int)backend->handler_pid);
	else
		snap_set_err(err, err_size,
			"the Uffd handler at %s closed its connection (taken as its end): the "
			"guest's next page fault would wait forever",
			backend->socket_path);
	return -EPIPE;
}

void uffd_backend_close(struct uffd_backend *backend)
{
	if (backend->handler_pidfd >= 0)
		close(backend->handler_pidfd);
	if (backend->sock >= 0)
		close(backend->sock);
	if (backend->uffd >= 0)
		close(backend->uffd);
	backend->handler_pidfd = -1;
	backend->sock = -1;
	backend->uffd = -1;
	backend->handler_pid = 0;
}

int uffd_backend_connect(const struct gmem *mem, const struct snap_mem_layout *layout,
			 const char *socket_path, struct uffd_backend *backend, char *err,
			 size_t err_size)
{
	struct uffd_mapping maps[GMEM_MAX_REGIONS];
	struct uffd_backend b = UFFD_BACKEND_INIT;
	char *json = NULL;
	size_t json_len;
	int ret;

	*backend = b;
	if (mem->nr_regions == 0 || mem->nr_regions > GMEM_MAX_REGIONS) {
		snap_set_err(err, err_size, "Uffd backend: %u guest memory regions", mem->nr_regions);
		return -EINVAL;
	}
	ret = build_mappings(mem, layout, maps, err, err_size);
	if (ret < 0)
		return ret;
	ret = uffd_mappings_to_json(maps, mem->nr_regions, &json, &json_len, err, err_size);
	if (ret < 0)
		return ret;
	snprintf(b.socket_path, sizeof(b.socket_path), "%s", socket_path);

	ret = uffd_open(&b.features, err, err_size);
	if (ret < 0)
		goto fail;
	b.uffd = ret;
	ret = register_regions(b.uffd, maps, mem->nr_regions, err, err_size);
	if (ret < 0)
		goto fail;
	ret = connect_handler(socket_path, err, err_size);
	if (ret < 0)
		goto fail;
	b.sock = ret;
	watch_handler(&b);
	ret = send_mappings(b.sock, b.uffd, json, json_len, socket_path, err, err_size);
	if (ret < 0)
		goto fail;
	ret = uffd_backend_check_alive(&b, 0, err, err_size);
	if (ret < 0)
		goto fail;

	log_info("Uffd backend: guest memory (%u regions) handed to the handler at %s%s",
		 mem->nr_regions, socket_path,
		 b.features & UFFD_FEATURE_EVENT_REMOVE ? "" : " (without remove events)");
	free(json);
	*backend = b;
	return 0;

fail:
	free(json);
	uffd_backend_close(&b);
	return ret;
}
