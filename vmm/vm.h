/*
 * One microVM: KVM, guest memory, the buses and devices, the vCPUs, and the VMM thread's
 * event loop (console input, signals, the end of the VM).
 */
#ifndef WISP_VM_H
#define WISP_VM_H

#include "arch/x86_64/boot.h"
#include "bus.h"
#include "cli.h"
#include "arch/x86_64/layout.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/serial_output.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "event_loop.h"
#include "failure.h"
#include "kvm.h"
#include "memory.h"
#include "uffd.h"
#include "vcpu.h"
#include "virtio_attach.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

struct vm {
	struct kvm kvm;
	struct gmem mem;
	struct bus pio_bus;
	struct bus mmio_bus;
	struct serial serial;
	struct i8042 i8042;
	unsigned int nr_vcpus;
	struct vcpu *vcpus;
	struct kvm_cpuid2 *cpuid;
	struct boot_entry boot;
	int exit_eventfd;
	atomic_int exit_code; /* -1 while the VM runs */
	struct vcpu_pause pause;
	struct event_loop loop;
	unsigned int nr_virtio;
	struct virtio_attachment virtio[VIRTIO_MAX_DEVICES];
	unsigned int nr_drives;
	struct blk_device *drives[CONFIG_MAX_DRIVES];
	char drive_ids[CONFIG_MAX_DRIVES][CONFIG_ID_MAX];
	unsigned int nr_nets;
	struct net_device *nets[CONFIG_MAX_NETS];
	char net_ids[CONFIG_MAX_NETS][CONFIG_ID_MAX];
	char cmdline[LAYOUT_CMDLINE_MAX];
	/* console input: paused while the UART's FIFO is full */
	bool stdin_paused;
	int signal_fd;
	int serial_out_fd; /* stdout, or PUT /serial's file */
	/* The UART's output to serial_out_fd, never blocking a vCPU; console_kick_fd tells
	 * the VMM thread that bytes wait for the console to become writable. */
	struct serial_output console;
	int console_kick_fd;
	bool boot_timer;
	size_t boot_marker_seen; /* bytes of the marker matched so far */
	uint64_t start_ns;	 /* CLOCK_MONOTONIC when wisp started */
	/* A VM restored with the Uffd backend: its handler serves the memory. */
	struct uffd_backend uffd;
};

/* A kernel (and optional initrd) mapped from files and checked, before any KVM work, so
 * that bad input is reported as such. */
struct guest_files {
	const uint8_t *kernel;
	size_t kernel_size;
	struct kernel_info kernel_info;
	const uint8_t *initrd;
	size_t initrd_size;
};

/* -ENOENT/-EACCES/-ENOEXEC/... with a message naming the file and the problem; *origin
 * says whether the file or the host was at fault. */
int guest_files_open(struct guest_files *files, const struct vmm_config *config,
		     enum failure_origin *origin);
void guest_files_close(struct guest_files *files);

/* Where guest memory comes from: anonymous memory (file_fd < 0), or a snapshot's memory
 * file mapped MAP_PRIVATE with region i at file_offsets[i]. */
struct vm_memory_source {
	int file_fd;
	const uint64_t *file_offsets;
	enum gmem_thp thp; /* anonymous memory's huge pages (a Uffd restore) */
};

/* The machine without its guest: KVM VM, memory, the buses and devices, vCPUs created but
 * not configured. A boot follows with vm_boot_setup(), a restore puts a snapshot's state
 * in instead (snapshot.c). memory NULL: anonymous memory. Failures as vm_create(). */
int vm_build(struct vm *vm, const struct vmm_config *config, const struct vm_memory_source *memory,
	     enum failure_origin *origin);
/* Loads the kernel, initrd and command line and sets every vCPU up to boot. */
int vm_boot_setup(struct vm *vm, const struct vmm_config *config, const struct guest_files *files,
		  enum failure_origin *origin);
/* Ends the VM (exit status 1, logged) if its Uffd handler's process exits. */
int vm_watch_uffd_handler(struct vm *vm);
/* Creates the VM, its memory and devices, loads the guest and creates the vCPUs. Every
 * failure is logged where it happens; one that the input caused (a drive's image, a TAP,
 * a command line or kernel that does not fit) sets *origin to FAILURE_BAD_INPUT, any
 * other leaves it alone. */
int vm_create(struct vm *vm, const struct vmm_config *config, const struct guest_files *files,
	      enum failure_origin *origin);
int vm_start(struct vm *vm);
/* Runs the VMM thread's event loop until the VM ends; returns the exit status. */
int vm_run(struct vm *vm);
/* The signals that end wisp (SIGINT, SIGTERM, SIGHUP): blocked in every thread and
 * taken through a signalfd by whichever loop runs. */
void vm_ending_signals(sigset_t *set);
/* Ends the VM with `code` (the first request wins); safe from any thread. */
void vm_request_exit(struct vm *vm, int code);
bool vm_exiting(const struct vm *vm);

#endif
