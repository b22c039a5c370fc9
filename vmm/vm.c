#include "vm.h"

#include "arch/x86_64/layout.h"
#include "device_metrics.h"
#include "log.h"
#include "metrics.h"
#include "seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A failure to open or read the file blames the input; one to map it, the host. */
static int map_file(const char *what, const char *path, const uint8_t **data, size_t *size,
		    enum failure_origin *origin)
{
	struct stat st;
	void *map;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("%s %s: cannot open: %s", what, path, strerror(-err));
		failure_blame(origin, FAILURE_BAD_INPUT);
		return err;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		log_error("%s %s: cannot stat: %s", what, path, strerror(-err));
		failure_blame(origin, FAILURE_BAD_INPUT);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("%s %s: not a regular file", what, path);
		failure_blame(origin, FAILURE_BAD_INPUT);
		err = -EINVAL;
		goto out;
	}
	if (st.st_size == 0) {
		log_error("%s %s: the file is empty", what, path);
		failure_blame(origin, FAILURE_BAD_INPUT);
		err = -ENOEXEC;
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		err = -errno;
		log_error("%s %s: cannot map its %lld bytes: %s", what, path, (long long)st.st_size,
			  strerror(-err));
		goto out;
	}
	*data = map;
	*size = (size_t)st.st_size;
out:
	close(fd);
	return err;
}

int guest_files_open(struct guest_files *files, const struct vmm_config *config,
		     enum failure_origin *origin)
{
	const char *why = NULL;
	int err;

	memset(files, 0, sizeof(*files));
	err = map_file("kernel", config->kernel_path, &files->kernel, &files->kernel_size, origin);
	if (err)
		return err;
	err = kernel_parse(files->kernel, files->kernel_size, &files->kernel_info, &why);
	if (err) {
		log_error("kernel %s: not a bootable x86_64 kernel: %s", config->kernel_path, why);
		failure_blame(origin, FAILURE_BAD_INPUT);
		goto fail;
	}
	if (*config->initrd_path) {
		err = map_file("initrd", config->initrd_path, &files->initrd, &files->initrd_size,
			       origin);
		if (err)
			goto fail;
	}
	return 0;
fail:
	guest_files_close(files);
	return err;
}

void guest_files_close(struct guest_files *files)
{
	if (files->kernel)
		munmap((void *)files->kernel, files->kernel_size);
	if (files->initrd)
		munmap((void *)files->initrd, files->initrd_size);
	files->kernel = files->initrd = NULL;
}

static void vm_set_irq(void *opaque, unsigned int irq, int level)
{
	struct vm *vm = opaque;
	kvm_irq_line(&vm->kvm, irq, level);
}

/* --boot-timer: the guest has booted when its init prints this on the console. */
#define BOOT_MARKER "wisp-init: ready"

static uint64_t monotonic_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* Matches BOOT_MARKER across writes, a byte at a time (the UART sends one byte per
 * write anyway); logs the time since wisp started, as Firecracker's boot timer does. */
static void watch_for_boot_marker(struct vm *vm, const uint8_t *bytes, size_t len)
{
	static const char marker[] = BOOT_MARKER;

	for (size_t i = 0; i < len && vm->boot_marker_seen < sizeof(marker) - 1; i++) {
		if (bytes[i] == (uint8_t)marker[vm->boot_marker_seen])
			vm->boot_marker_seen++;
		else
			vm->boot_marker_seen = bytes[i] == (uint8_t)marker[0];
		if (vm->boot_marker_seen == sizeof(marker) - 1) {
			uint64_t us = (monotonic_ns() - vm->start_ns) / 1000;
			log_write(
			    LOG_LEVEL_WARN, __FILE__, __LINE__,
			    "Guest-boot-time = %6llu us %llu ms (from wisp's start to \"%s\")",
			    (unsigned long long)us, (unsigned long long)(us / 1000), marker);
		}
	}
}

/* The UART's output, on a vCPU thread: never blocks (see serial_output.h). */
static void console_output(void *opaque, const uint8_t *bytes, size_t len)
{
	struct vm *vm = opaque;

	if (vm->boot_timer)
		watch_for_boot_marker(vm, bytes, len);
	serial_output_write(&vm->console, bytes, len);
}

/* A vCPU left bytes in the console's ring (under its lock: only signal). */
static void console_wait_writable(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;

	if (write(vm->console_kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("console: cannot signal the VMM thread: %s", strerror(errno));
}

/* VMM thread: writes what the console takes; watches for EPOLLOUT while bytes remain. */
static void console_flush(struct vm *vm)
{
	int fd = serial_output_poll_fd(&vm->console);

	if (serial_output_flush(&vm->console) &&
	    event_loop_modify(&vm->loop, fd, EPOLLOUT | EPOLLONESHOT))
		log_debug("console: cannot watch fd %d for EPOLLOUT", fd);
}

static void on_console_kick(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t count;

	(void)events;
	if (read(vm->console_kick_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_debug("console: reading its eventfd failed: %s", strerror(errno));
	console_flush(vm);
}

static void on_console_writable(void *opaque, uint32_t events)
{
	(void)events;
	console_flush(opaque);
}

static void report_uart(void *opaque, struct metrics_section *section)
{
	struct vm *vm = opaque;

	metrics_counter(section, "missed_write_count", atomic_load(&vm->console.missed_bytes));
	metrics_counter(section, "write_count", atomic_load(&vm->console.written_bytes));
}

/* The console's VMM-thread half: the kick eventfd, and the console watched for EPOLLOUT
 * (one shot, armed only while bytes wait: HUP or ERR on a console nobody reads would
 * wake a level-triggered watch forever). A console epoll cannot watch (/dev/null) is
 * flushed by the vCPUs' next writes instead. */
static int vm_watch_console(struct vm *vm)
{
	int fd = serial_output_poll_fd(&vm->console);
	int err;

	if (fd < 0)
		return 0;
	err = event_loop_add(&vm->loop, vm->console_kick_fd, EPOLLIN, on_console_kick, vm);
	if (err) {
		log_error("cannot watch the console's eventfd: %s", strerror(-err));
		return err;
	}
	if (event_loop_add(&vm->loop, fd, EPOLLONESHOT, on_console_writable, vm)) {
		log_debug("console: epoll cannot watch fd %d: flushed on the guest's writes", fd);
		vm->console.wait_writable = NULL;
	}
	return 0;
}

static void on_uffd_handler_exit(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	(void)events;
	log_error("the Uffd handler (pid %d) serving the guest's memory at %s has exited: "
		  "pages it has not served cannot be read; ending the VM",
		  (int)vm->uffd.handler_pid, vm->uffd.socket_path);
	event_loop_remove(&vm->loop, vm->uffd.handler_pidfd);
	vm_request_exit(vm, 1);
}

int vm_watch_uffd_handler(struct vm *vm)
{
	int err;

	if (vm->uffd.handler_pidfd < 0)
		return 0; /* another pid namespace: a dead handler shows only as a hung guest */
	err = event_loop_add(&vm->loop, vm->uffd.handler_pidfd, EPOLLIN, on_uffd_handler_exit, vm);
	if (err)
		log_error("cannot watch the Uffd handler's process: %s", strerror(-err));
	return err;
}

static void i8042_reset_line(void *opaque)
{
	log_info("guest pulsed the i8042 reset line (reboot): ending the VM");
	vm_request_exit(opaque, 0);
}

_Static_assert(VIRTIO_MAX_DEVICES <= ACPI_MAX_VIRTIO, "the DSDT describes every virtio device");

static void acpi_poweroff(void *opaque)
{
	vm_request_exit(opaque, 0);
}

static void acpi_reset(void *opaque)
{
	vm_request_exit(opaque, 0);
}

static int vm_add_devices(struct vm *vm)
{
	struct irq_line serial_irq = {.set = vm_set_irq, .opaque = vm, .irq = SERIAL_COM1_IRQ};
	struct irq_line kbd_irq = {.set = vm_set_irq, .opaque = vm, .irq = I8042_KBD_IRQ};
	int err;

	serial_init(&vm->serial, serial_irq, console_output, vm);
	i8042_init(&vm->i8042, kbd_irq, i8042_reset_line, vm);
	err = bus_add(&vm->pio_bus, SERIAL_COM1_BASE, 8, &serial_ops, &vm->serial);
	if (!err)
		err = bus_add(&vm->pio_bus, I8042_PORT_BASE, I8042_PORT_COUNT, &i8042_ops,
			      &vm->i8042);
	acpi_pm_init(&vm->acpi_pm, acpi_poweroff, acpi_reset, vm);
	if (!err)
		err = bus_add(&vm->pio_bus, ACPI_PM_PORT_BASE, ACPI_PM_PORT_COUNT, &acpi_pm_ops,
			      &vm->acpi_pm);
	if (err) {
		log_error("cannot place the legacy devices on the port bus: %s", strerror(-err));
		return err;
	}
	err = vm_watch_console(vm);
	if (err)
		return err;
	err = metrics_register("uart", NULL, report_uart, vm);
	if (err)
		log_error("metrics: cannot add the section uart: %s", strerror(-err));
	return err;
}

static int vm_add_memory(struct vm *vm, uint64_t mem_mib, bool track_dirty_pages,
			 const struct vm_memory_source *source, enum failure_origin *origin)
{
	int err = gmem_layout(&vm->mem, mem_mib << 20);
	if (err) {
		log_error("cannot lay out %llu MiB of guest memory: choose another size",
			  (unsigned long long)mem_mib);
		failure_blame(origin, FAILURE_BAD_INPUT);
		return err;
	}
	if (source && source->file_fd >= 0) {
		err = gmem_map_file(&vm->mem, source->file_fd, source->file_offsets);
		if (err)
			failure_blame(origin, FAILURE_BAD_INPUT);
	} else if (source) {
		err = gmem_map_anonymous_thp(&vm->mem, source->thp);
	} else {
		err = gmem_map_anonymous(&vm->mem);
	}
	/* Before any device runs: every page wisp writes from then on is marked. */
	if (!err && track_dirty_pages)
		err = gmem_track_dirty(&vm->mem);
	for (unsigned int i = 0; !err && i < vm->mem.nr_regions; i++)
		err = kvm_add_memory(&vm->kvm, i, vm->mem.regions[i].gpa, vm->mem.regions[i].size,
				     vm->mem.regions[i].host, track_dirty_pages);
	return err;
}

/* Root drive first, so that it is /dev/vda; the others keep their order. */
static int vm_add_drives(struct vm *vm, const struct vmm_config *config,
			 enum failure_origin *origin)
{
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned int i = 0; i < config->nr_drives; i++) {
			const struct drive_config *drive = &config->drives[i];
			struct blk_device *blk;
			int err;
			if (drive->root != (pass == 0))
				continue;
			err = blk_create(&blk, drive, &vm->mem, origin);
			if (err)
				return err;
			snprintf(vm->drive_ids[vm->nr_drives], CONFIG_ID_MAX, "%s", drive->id);
			vm->drives[vm->nr_drives++] = blk;
			err = device_metrics_register_blk(drive->id, blk);
			if (!err)
				err = virtio_attach(vm, blk_virtio(blk));
			if (err)
				return err;
		}
	}
	return 0;
}

static int vm_add_nets(struct vm *vm, const struct vmm_config *config, enum failure_origin *origin)
{
	for (unsigned int i = 0; i < config->nr_nets; i++) {
		struct net_device *net;
		int err = net_create(&net, &config->nets[i], &vm->mem, origin);
		if (err)
			return err;
		snprintf(vm->net_ids[vm->nr_nets], CONFIG_ID_MAX, "%s", config->nets[i].id);
		vm->nets[vm->nr_nets++] = net;
		err = device_metrics_register_net(config->nets[i].id, net);
		if (!err)
			err = virtio_attach(vm, net_virtio(net));
		if (err)
			return err;
	}
	return 0;
}

static void report_balloon(void *opaque, struct metrics_section *section)
{
	struct balloon_device *balloon = opaque;
	struct balloon_metrics *m = balloon_metrics(balloon);

	metrics_counter(section, "activate_fails", atomic_load(&m->activate_fails));
	metrics_counter(section, "inflate_count", atomic_load(&m->inflate_count));
	metrics_counter(section, "stats_updates_count", atomic_load(&m->stats_updates_count));
	metrics_counter(section, "stats_update_fails", atomic_load(&m->stats_update_fails));
	metrics_counter(section, "deflate_count", atomic_load(&m->deflate_count));
	metrics_counter(section, "event_fails", atomic_load(&m->event_fails));
	metrics_counter(section, "free_page_report_count", atomic_load(&m->free_page_report_count));
	metrics_counter(section, "free_page_report_freed", atomic_load(&m->free_page_report_freed));
	metrics_counter(section, "free_page_report_fails", atomic_load(&m->free_page_report_fails));
	/* not in Firecracker: what the guest sent that was refused, and pages released */
	metrics_counter(section, "pfn_outside_ram", atomic_load(&m->pfn_outside_ram));
	metrics_counter(section, "pfn_in_gap", atomic_load(&m->pfn_in_gap));
	metrics_counter(section, "pfn_duplicate", atomic_load(&m->pfn_duplicate));
	metrics_counter(section, "pfn_over_target", atomic_load(&m->pfn_over_target));
	metrics_counter(section, "deflate_not_inflated", atomic_load(&m->deflate_not_inflated));
	metrics_counter(section, "malformed_requests", atomic_load(&m->malformed_requests));
	metrics_counter(section, "inflated_pages_released",
			atomic_load(&m->inflated_pages_released));
	metrics_counter(section, "device_needs_reset_count",
			atomic_load(&balloon_virtio(balloon)->needs_reset_events));
}

/* After the drives and interfaces, so that their MMIO windows and interrupts stay put. */
static int vm_add_balloon(struct vm *vm, const struct vmm_config *config,
			  enum failure_origin *origin)
{
	int err;

	if (!config->balloon.configured)
		return 0;
	err = balloon_create(&vm->balloon, &config->balloon, &vm->mem);
	if (err) {
		if (err == -EINVAL)
			failure_blame(origin, FAILURE_BAD_INPUT); /* a target beyond guest RAM */
		return err;
	}
	err = metrics_register("balloon", NULL, report_balloon, vm->balloon);
	if (err) {
		log_error("metrics: cannot add the section balloon: %s", strerror(-err));
		return err;
	}
	return virtio_attach(vm, balloon_virtio(vm->balloon));
}

/* The user's command line with wisp's parameters inserted before " -- " (what follows
 * it belongs to the guest's init). */
static int vm_build_cmdline(struct vm *vm, const struct vmm_config *config)
{
	const char *user = config->cmdline;
	const char *init_args = strstr(user, " -- ");
	size_t head = init_args ? (size_t)(init_args - user) : strlen(user);
	size_t size = sizeof(vm->cmdline), used;
	int n;

	if (!init_args && !strncmp(user, "-- ", 3)) {
		init_args = user;
		head = 0;
	}
	n = snprintf(vm->cmdline, size, "%.*s", (int)head, user);
	if (n < 0 || (size_t)n >= size)
		goto too_long;
	for (unsigned int i = 0; i < config->nr_drives; i++) {
		if (!config->drives[i].root)
			continue;
		used = strlen(vm->cmdline);
		/* With a partuuid the kernel finds the root partition itself (Firecracker's
		 * is_root_device + partuuid); else the root drive is the whole /dev/vda. */
		if (*config->drives[i].partuuid)
			n = snprintf(vm->cmdline + used, size - used, " root=PARTUUID=%s %s",
				     config->drives[i].partuuid,
				     config->drives[i].read_only ? "ro" : "rw");
		else
			n = snprintf(vm->cmdline + used, size - used, " root=/dev/vda %s",
				     config->drives[i].read_only ? "ro" : "rw");
		if (n < 0 || (size_t)n >= size - used)
			goto too_long;
	}
	if (virtio_append_cmdline(vm, vm->cmdline, size))
		goto too_long;
	if (init_args) {
		used = strlen(vm->cmdline);
		n = snprintf(vm->cmdline + used, size - used, "%s%s", head ? "" : " ", init_args);
		if (n < 0 || (size_t)n >= size - used)
			goto too_long;
	}
	return 0;
too_long:
	log_error("the kernel command line with wisp's device parameters is longer than %d bytes: "
		  "shorten --cmdline (boot_args)",
		  LAYOUT_CMDLINE_MAX - 1);
	return -E2BIG;
}

int vm_build(struct vm *vm, const struct vmm_config *config, const struct vm_memory_source *memory,
	     enum failure_origin *origin)
{
	int err;

	memset(vm, 0, sizeof(*vm));
	vm->uffd = (struct uffd_backend)UFFD_BACKEND_INIT;
	atomic_init(&vm->exit_code, -1);
	vm->signal_fd = -1;
	vm->console_kick_fd = -1;
	vm->nr_vcpus = config->vcpus;
	vm->exit_eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_eventfd < 0) {
		err = -errno;
		log_error("cannot create the eventfd that ends the VM: %s", strerror(-err));
		return err;
	}
	err = vcpus_pause_init(&vm->pause);
	if (err)
		return err;
	vm->boot_timer = config->process.boot_timer;
	vm->start_ns = config->process.start_ns ? config->process.start_ns : monotonic_ns();
	vm->serial_out_fd = STDOUT_FILENO;
	if (*config->serial_out_path) {
		vm->serial_out_fd =
		    open(config->serial_out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (vm->serial_out_fd < 0) {
			err = -errno;
			log_error("serial_out_path %s: cannot open: %s", config->serial_out_path,
				  strerror(-err));
			failure_blame(origin, FAILURE_BAD_INPUT);
			return err;
		}
	}
	vm->console_kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->console_kick_fd < 0) {
		err = -errno;
		log_error("cannot create the console's eventfd: %s", strerror(-err));
		return err;
	}
	err = serial_output_init(&vm->console, vm->serial_out_fd, *config->serial_out_path,
				 console_wait_writable, vm);
	if (err) {
		log_error("cannot set up the console's output (fd %d): %s", vm->serial_out_fd,
			  strerror(-err));
		return err;
	}
	err = kvm_open(&vm->kvm, "/dev/kvm");
	if (!err)
		err = kvm_create_vm(&vm->kvm);
	if (!err)
		err = vm_add_memory(vm, config->mem_mib, config->track_dirty_pages, memory, origin);
	if (!err)
		err = event_loop_init(&vm->loop);
	if (!err)
		err = vm_add_devices(vm);
	if (err)
		return err;
	err = vm_add_drives(vm, config, origin);
	if (!err)
		err = vm_add_nets(vm, config, origin);
	if (!err)
		err = vm_add_balloon(vm, config, origin);
	if (err)
		return err;
	vm->vcpus = calloc(vm->nr_vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		log_error("out of memory for %u vCPUs", vm->nr_vcpus);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		err = vcpu_create(&vm->vcpus[i], vm, i);
		if (err)
			return err;
	}
	return 0;
}

int vm_boot_setup(struct vm *vm, const struct vmm_config *config, const struct guest_files *files,
		  enum failure_origin *origin)
{
	const char *why = NULL;
	int err;

	err = vm_build_cmdline(vm, config);
	if (err) {
		failure_blame(origin, FAILURE_BAD_INPUT);
		return err;
	}

	struct acpi_config acpi = {.nr_cpus = config->vcpus, .nr_virtio = vm->nr_virtio};
	for (unsigned int i = 0; i < vm->nr_virtio; i++)
		acpi.virtio[i] = (struct acpi_mmio_device){
		    .base = vm->virtio[i].base, .size = VIRTIO_MMIO_SIZE, .irq = vm->virtio[i].irq};
	struct boot_payload payload = {
	    .kernel = files->kernel,
	    .kernel_size = files->kernel_size,
	    .info = &files->kernel_info,
	    .initrd = files->initrd,
	    .initrd_size = files->initrd_size,
	    .cmdline = vm->cmdline,
	    .nr_cpus = config->vcpus,
	    .acpi = config->no_acpi ? NULL : &acpi,
	};
	err = x86_boot_setup(&vm->mem, &payload, &vm->boot, &why);
	if (err) {
		log_error("cannot load the guest into %llu MiB: %s",
			  (unsigned long long)config->mem_mib, why);
		failure_blame(origin, FAILURE_BAD_INPUT);
		return err;
	}

	vm->cpuid = kvm_supported_cpuid(&vm->kvm);
	if (!vm->cpuid)
		return -EIO;
	if (ioctl(vm->kvm.sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
		cpuid_enable_tsc_deadline(vm->cpuid->entries, vm->cpuid->nent);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		err = vcpu_configure(&vm->vcpus[i]);
		if (err)
			return err;
	}
	return 0;
}

int vm_create(struct vm *vm, const struct vmm_config *config, const struct guest_files *files,
	      enum failure_origin *origin)
{
	int err = vm_build(vm, config, NULL, origin);
	return err ? err : vm_boot_setup(vm, config, files, origin);
}

int vm_start(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		int err = vcpu_start(&vm->vcpus[i]);
		if (err)
			return err;
	}
	return 0;
}

void vm_ending_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

void vm_request_exit(struct vm *vm, int code)
{
	int expected = -1;
	if (atomic_compare_exchange_strong(&vm->exit_code, &expected, code)) {
		uint64_t one = 1;
		if (write(vm->exit_eventfd, &one, sizeof(one)) < 0)
			log_error("cannot signal the end of the VM: %s", strerror(errno));
		/* Paused vCPU threads, and a VMM thread waiting for them, must see it. */
		pthread_mutex_lock(&vm->pause.lock);
		pthread_cond_broadcast(&vm->pause.changed);
		pthread_mutex_unlock(&vm->pause.lock);
	}
}

bool vm_exiting(const struct vm *vm)
{
	return atomic_load(&vm->exit_code) != -1;
}

/* Moves console input into the UART's FIFO; returns false once stdin is finished. */
static bool forward_stdin(struct vm *vm)
{
	uint8_t buf[SERIAL_FIFO_SIZE];
	size_t space = serial_rx_space(&vm->serial);
	ssize_t got;

	if (!space)
		return true;
	got = read(STDIN_FILENO, buf, space);
	if (got < 0)
		return errno == EINTR || errno == EAGAIN;
	if (got == 0)
		return false;
	serial_receive(&vm->serial, buf, (size_t)got);
	return true;
}

static void on_stdin(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	(void)events;
	if (!forward_stdin(vm)) {
		event_loop_remove(&vm->loop, STDIN_FILENO); /* end of input */
	} else if (!serial_rx_space(&vm->serial)) {
		/* The guest has not drained the FIFO: look again every 10 ms instead of
		 * spinning on a readable stdin. */
		event_loop_remove(&vm->loop, STDIN_FILENO);
		vm->stdin_paused = true;
	}
}

static void on_exit_request(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	(void)events;
	vm->loop.stopping = true;
}

static void on_signal(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo info;
	(void)events;
	if (read(vm->signal_fd, &info, sizeof(info)) == sizeof(info)) {
		log_warn("received signal %u: ending the VM", info.ssi_signo);
		if (info.ssi_signo == SIGHUP) /* a store, as in Firecracker: it ends wisp */
			metrics_store(&metrics.signals.sighup, 1);
		vm_request_exit(vm, 128 + (int)info.ssi_signo);
	}
}

int vm_run(struct vm *vm)
{
	sigset_t signals;
	int err;

	vm_ending_signals(&signals);
	vm->signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0) {
		log_error("cannot create the signalfd for SIGINT, SIGTERM and SIGHUP: %s",
			  strerror(errno));
		return 1;
	}
	err = event_loop_add(&vm->loop, vm->signal_fd, EPOLLIN, on_signal, vm);
	if (!err)
		err = event_loop_add(&vm->loop, vm->exit_eventfd, EPOLLIN, on_exit_request, vm);
	if (err) {
		log_error("cannot watch the signals and the end of the VM: %s", strerror(-err));
		return 1;
	}
	/* stdin may be a file or /dev/null, which epoll refuses: then there is no input. */
	(void)event_loop_add(&vm->loop, STDIN_FILENO, EPOLLIN, on_stdin, vm);
	/* The VM is built: from here on this thread serves the guest's devices. */
	if (seccomp_enter(SECCOMP_THREAD_VMM)) {
		vm_request_exit(vm, 1);
		return 1;
	}

	while (!vm->loop.stopping) {
		if (event_loop_run_once(&vm->loop, vm->stdin_paused ? 10 : -1) < 0) {
			vm_request_exit(vm, 1);
			break;
		}
		if (vm->stdin_paused && serial_rx_space(&vm->serial)) {
			vm->stdin_paused = false;
			event_loop_add(&vm->loop, STDIN_FILENO, EPOLLIN, on_stdin, vm);
		}
	}
	/* The guest's last words, if the console takes them within a second. */
	serial_output_finish(&vm->console, 1000);
	return atomic_load(&vm->exit_code);
}
