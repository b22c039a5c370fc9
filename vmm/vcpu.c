#include "vcpu.h"

#include "arch/x86_64/cpu.h"
#include "log.h"
#include "metrics.h"
#include "seccomp_filter.h"
#include "vcpu_state.h"
#include "vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int vcpu_create(struct vcpu *vcpu, struct vm *vm, unsigned int index)
{
	int err;

	memset(vcpu, 0, sizeof(*vcpu));
	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->fd = ioctl(vm->kvm.vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0) {
		err = -errno;
		log_error("KVM_CREATE_VCPU %u failed: %s", index, strerror(errno));
		return err;
	}
	vcpu->run = mmap(NULL, (size_t)vm->kvm.vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		err = -errno;
		log_error("cannot map vCPU %u's kvm_run: %s", index, strerror(errno));
		close(vcpu->fd);
		vcpu->fd = -1;
		return err;
	}
	return 0;
}

static int vcpu_ioctl(struct vcpu *vcpu, unsigned long request, void *arg, const char *what)
{
	if (ioctl(vcpu->fd, request, arg) < 0) {
		int err = -errno;
		log_error("vCPU %u: %s failed: %s", vcpu->index, what, strerror(errno));
		return err;
	}
	return 0;
}

/*
 * Experiments on the nested-KVM guest deaths (README, "I/O benchmark"), set only by
 * tests/stress/guest_deaths.py: WISP_DEBUG_CPUID_FILE replaces KVM's supported CPUID
 * with a table dumped inside another VMM's guest by tests/stress/cpuid_dump.c (lines
 * that are all zero left out: KVM returns zeros for a missing leaf anyway);
 * WISP_DEBUG_NO_TSC_DEADLINE clears the TSC-deadline bit; WISP_DEBUG_MTRR_OFF starts
 * the vCPU with its MTRRs off, as QEMU's reset state does.
 */
static bool debug_setting(const char *name)
{
	const char *value = getenv(name);
	return value && *value && strcmp(value, "0") != 0;
}

static struct kvm_cpuid2 *debug_cpuid_from_file(const char *path)
{
	enum { MAX_ENTRIES = 256 };
	struct kvm_cpuid2 *cpuid =
	    calloc(1, sizeof(*cpuid) + MAX_ENTRIES * sizeof(cpuid->entries[0]));
	FILE *file = fopen(path, "r");
	char line[256];

	if (!cpuid || !file) {
		log_error("WISP_DEBUG_CPUID_FILE: cannot read %s: %s", path, strerror(errno));
		free(cpuid);
		if (file)
			fclose(file);
		return NULL;
	}
	while (fgets(line, sizeof(line), file) && cpuid->nent < MAX_ENTRIES) {
		struct kvm_cpuid_entry2 *entry = &cpuid->entries[cpuid->nent];
		const char *start = strstr(line, "cpuid ");
		if (!start || cpuid_parse_dump_line(start, entry) < 0)
			continue;
		if (entry->eax || entry->ebx || entry->ecx || entry->edx)
			cpuid->nent++;
	}
	fclose(file);
	log_info("WISP_DEBUG_CPUID_FILE: %u CPUID entries from %s", cpuid->nent, path);
	return cpuid;
}

/* XCR0 as cpuid_boot_xcr0 explains: a value KVM refuses is reported with the features
 * it named, and boot goes on with the architectural reset value (x87 only). */
static void vcpu_set_boot_xcr0(struct vcpu *vcpu, uint64_t xcr0)
{
	struct kvm_xcrs xcrs;

	if (!xcr0)
		return;
	memset(&xcrs, 0, sizeof(xcrs));
	xcrs.nr_xcrs = 1;
	xcrs.xcrs[0].xcr = 0;
	xcrs.xcrs[0].value = xcr0;
	if (ioctl(vcpu->fd, KVM_SET_XCRS, &xcrs) < 0)
		log_warn("vCPU %u: KVM_SET_XCRS of XCR0 0x%llx (leaf 0xd's user features) failed: "
			 "%s; the vCPU starts with x87 only, and a guest under an emulated SVM "
			 "may log an XSAVE consistency problem",
			 vcpu->index, (unsigned long long)xcr0, strerror(errno));
}

static int vcpu_set_cpuid(struct vcpu *vcpu)
{
	const struct kvm_cpuid2 *supported = vcpu->vm->cpuid;
	const char *debug_file = getenv("WISP_DEBUG_CPUID_FILE");
	struct kvm_cpuid2 *cpuid;
	size_t size;
	int err;

	if (debug_file && *debug_file) {
		cpuid = debug_cpuid_from_file(debug_file);
		if (!cpuid)
			return -EINVAL;
	} else {
		size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
		cpuid = malloc(size + CPUID_TOPOLOGY_SUBLEAVES * sizeof(supported->entries[0]));
		if (!cpuid)
			return -ENOMEM;
		memcpy(cpuid, supported, size);
		cpuid->nent = cpuid_add_topology_subleaves(cpuid->entries, cpuid->nent,
							   cpuid->nent + CPUID_TOPOLOGY_SUBLEAVES);
	}
	cpuid_patch(cpuid->entries, cpuid->nent, vcpu->index, vcpu->vm->nr_vcpus);
	if (debug_setting("WISP_DEBUG_NO_TSC_DEADLINE"))
		for (unsigned int i = 0; i < cpuid->nent; i++)
			if (cpuid->entries[i].function == 1)
				cpuid->entries[i].ecx &= ~(1u << 24);
	err = vcpu_ioctl(vcpu, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");
	if (!err)
		vcpu_set_boot_xcr0(vcpu, cpuid_boot_xcr0(cpuid->entries, cpuid->nent));
	free(cpuid);
	return err;
}

static int vcpu_set_msrs(struct vcpu *vcpu)
{
	struct {
		struct kvm_msrs header;
		struct kvm_msr_entry entries[BOOT_MSR_COUNT];
	} msrs;
	int set;

	memset(&msrs, 0, sizeof(msrs));
	msrs.header.nmsrs = boot_msrs(msrs.entries);
	if (debug_setting("WISP_DEBUG_MTRR_OFF"))
		for (unsigned int i = 0; i < msrs.header.nmsrs; i++)
			if (msrs.entries[i].index == 0x2ff) /* MTRRdefType */
				msrs.entries[i].data = 0;
	set = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
	if (set < 0) {
		int err = -errno;
		log_error("vCPU %u: KVM_SET_MSRS of %u MSRs failed: %s", vcpu->index,
			  msrs.header.nmsrs, strerror(-err));
		return err;
	}
	if (set != (int)msrs.header.nmsrs) {
		log_error("vCPU %u: KVM_SET_MSRS set %d of %u MSRs (first refused: 0x%x)",
			  vcpu->index, set, msrs.header.nmsrs,
			  set < (int)msrs.header.nmsrs ? msrs.entries[set].index : 0);
		return -EINVAL;
	}
	return 0;
}

int vcpu_configure(struct vcpu *vcpu)
{
	struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
	struct kvm_lapic_state lapic;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int err;

	err = vcpu_set_cpuid(vcpu);
	if (!err)
		err = vcpu_set_msrs(vcpu);
	if (!err)
		err = vcpu_ioctl(vcpu, KVM_SET_FPU, &fpu, "KVM_SET_FPU");
	if (!err)
		err = vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
	if (!err) {
		lapic_set_lint(&lapic);
		err = vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
	}
	/* Application processors wait for INIT/SIPI from the boot CPU. */
	if (err || vcpu->index != 0)
		return err;
	err = vcpu_ioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	if (err)
		return err;
	boot_sregs(&sregs, vcpu->vm->boot.mode);
	err = vcpu_ioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	if (err)
		return err;
	boot_regs(&regs, vcpu->vm->boot.mode, vcpu->vm->boot.rip, vcpu->vm->boot.boot_info_gpa);
	return vcpu_ioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

static void vcpu_handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		bool handled;
		if (run->io.direction == KVM_EXIT_IO_OUT)
			handled = bus_write(&vcpu->vm->pio_bus, run->io.port, data, run->io.size);
		else
			handled = bus_read(&vcpu->vm->pio_bus, run->io.port, data, run->io.size);
		if (!handled)
			log_debug("vCPU %u: %s of unclaimed port 0x%x", vcpu->index,
				  run->io.direction == KVM_EXIT_IO_OUT ? "write" : "read",
				  run->io.port);
	}
}

static void vcpu_handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	bool handled;

	if (run->mmio.len > sizeof(run->mmio.data))
		return;
	if (run->mmio.is_write)
		handled = bus_write(&vcpu->vm->mmio_bus, run->mmio.phys_addr, run->mmio.data,
				    run->mmio.len);
	else
		handled = bus_read(&vcpu->vm->mmio_bus, run->mmio.phys_addr, run->mmio.data,
				   run->mmio.len);
	if (!handled)
		log_debug("vCPU %u: %s of unclaimed MMIO 0x%llx", vcpu->index,
			  run->mmio.is_write ? "write" : "read",
			  (unsigned long long)run->mmio.phys_addr);
}

/* Where the guest was when something went wrong: what a bug report needs first. The
 * pending exception says what the guest was trying to deliver (a triple fault's last). */
static void vcpu_log_registers(struct vcpu *vcpu, enum log_level level)
{
	struct kvm_vcpu_events events;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (level > log_get_level() || ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
		return;
	if (ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &events) < 0)
		memset(&events, 0, sizeof(events));
	log_write(level, __FILE__, __LINE__,
		  "vCPU %u: rip 0x%llx rsp 0x%llx rflags 0x%llx cr0 0x%llx cr2 0x%llx cr3 0x%llx "
		  "cr4 0x%llx efer 0x%llx cs 0x%x idt 0x%llx; exception %s vector %u error code "
		  "0x%x",
		  vcpu->index, (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		  (unsigned long long)regs.rflags, (unsigned long long)sregs.cr0,
		  (unsigned long long)sregs.cr2, (unsigned long long)sregs.cr3,
		  (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer, sregs.cs.selector,
		  (unsigned long long)sregs.idt.base,
		  events.exception.injected || events.exception.pending ? "pending" : "none",
		  events.exception.nr, events.exception.error_code);
}

/* Returns true while the vCPU should keep running. */
static bool vcpu_handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint64_t start_us = metrics_monotonic_us(); /* the bus's time: vcpu.exit_*_agg */

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		atomic_fetch_add(&vcpu->exits[VCPU_EXIT_IO], 1);
		metrics_inc(run->io.direction == KVM_EXIT_IO_IN ? &metrics.vcpu.exit_io_in
								: &metrics.vcpu.exit_io_out);
		vcpu_handle_io(vcpu);
		metrics_latency_record(run->io.direction == KVM_EXIT_IO_IN
					   ? &metrics.vcpu.exit_io_in_agg
					   : &metrics.vcpu.exit_io_out_agg,
				       metrics_monotonic_us() - start_us);
		return true;
	case KVM_EXIT_MMIO:
		atomic_fetch_add(&vcpu->exits[VCPU_EXIT_MMIO], 1);
		metrics_inc(run->mmio.is_write ? &metrics.vcpu.exit_mmio_write
					       : &metrics.vcpu.exit_mmio_read);
		vcpu_handle_mmio(vcpu);
		metrics_latency_record(run->mmio.is_write ? &metrics.vcpu.exit_mmio_write_agg
							  : &metrics.vcpu.exit_mmio_read_agg,
				       metrics_monotonic_us() - start_us);
		return true;
	case KVM_EXIT_SHUTDOWN:
		log_info("vCPU %u: guest shut down (triple fault or reset): ending the VM",
			 vcpu->index);
		/* Intel keeps the state of the fault; on AMD KVM has already reset the vCPU
		 * (rip 0xfff0, cs 0xf000): there only the vCPU events' last exception is left. */
		vcpu_log_registers(vcpu, LOG_LEVEL_INFO);
		vm_request_exit(vcpu->vm, 0);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) {
			log_error("vCPU %u: the guest reported a crash", vcpu->index);
			vm_request_exit(vcpu->vm, 1);
		} else {
			log_info("vCPU %u: guest system event %u: ending the VM", vcpu->index,
				 run->system_event.type);
			vm_request_exit(vcpu->vm, 0);
		}
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		log_error("vCPU %u: KVM could not enter the guest (hardware reason 0x%llx)",
			  vcpu->index,
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_log_registers(vcpu, LOG_LEVEL_ERROR);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		log_error("vCPU %u: KVM internal error, suberror %u (1: instruction emulation "
			  "failed), %u data words: 0x%llx 0x%llx 0x%llx 0x%llx",
			  vcpu->index, run->internal.suberror, run->internal.ndata,
			  (unsigned long long)run->internal.data[0],
			  (unsigned long long)run->internal.data[1],
			  (unsigned long long)run->internal.data[2],
			  (unsigned long long)run->internal.data[3]);
		vcpu_log_registers(vcpu, LOG_LEVEL_ERROR);
		break;
	default:
		log_error("vCPU %u: unexpected KVM exit reason %u", vcpu->index, run->exit_reason);
		break;
	}
	atomic_fetch_add(&vcpu->exits[VCPU_EXIT_OTHER], 1);
	metrics_inc(&metrics.vcpu.failures);
	vm_request_exit(vcpu->vm, 1);
	return false;
}

/* The signal that kicks a vCPU thread out of KVM_RUN; its handler does nothing, the
 * interrupted ioctl is the point. */
#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int signal)
{
	(void)signal;
}

int vcpus_pause_init(struct vcpu_pause *pause)
{
	struct sigaction action = {.sa_handler = vcpu_kick_handler};

	memset(pause, 0, sizeof(*pause));
	pthread_mutex_init(&pause->lock, NULL);
	pthread_cond_init(&pause->changed, NULL);
	sigemptyset(&action.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &action, NULL) < 0) {
		int err = -errno;
		log_error("cannot install the vCPU kick signal handler: %s", strerror(-err));
		return err;
	}
	return 0;
}

static bool vcpu_handle_exit(struct vcpu *vcpu);

/*
 * vCPU thread, pause requested: KVM finishes a port or MMIO exit the VMM has handled (an
 * IN's or MMIO read's value stored, RIP past the instruction) only on the next KVM_RUN.
 * Parked without that, a snapshot would repeat an OUT or lose an IN's value; so the vCPU
 * enters once more with immediate_exit, which completes the exit and returns at once.
 * Returns false if the VM ended meanwhile.
 */
static bool vcpu_finish_exit_before_parking(struct vcpu *vcpu)
{
	while (vcpu->exit_unfinished) {
		char err[256];
		int ret = vcpu_state_complete_io(vcpu->fd, vcpu->index, vcpu->run, NULL, err,
						 sizeof(err));
		if (ret == -EAGAIN) { /* finishing it made another exit: handle that one too */
			if (!vcpu_handle_exit(vcpu))
				return false;
			continue;
		}
		vcpu->exit_unfinished = false;
		if (ret) {
			log_error("%s", err);
			vm_request_exit(vcpu->vm, 1);
			return false;
		}
	}
	return true;
}

/* vCPU thread: waits while a pause is requested; returns false if the VM ended. */
static bool vcpu_wait_while_paused(struct vcpu *vcpu)
{
	struct vcpu_pause *pause = &vcpu->vm->pause;

	pthread_mutex_lock(&pause->lock);
	if (pause->requested && vcpu->exit_unfinished) {
		bool running;
		pthread_mutex_unlock(&pause->lock);
		running = vcpu_finish_exit_before_parking(vcpu);
		pthread_mutex_lock(&pause->lock);
		if (!running) {
			pthread_mutex_unlock(&pause->lock);
			return false;
		}
	}
	if (pause->requested) {
		pause->paused++;
		pthread_cond_broadcast(&pause->changed);
		while (pause->requested && !vm_exiting(vcpu->vm))
			pthread_cond_wait(&pause->changed, &pause->lock);
		pause->paused--;
	}
	/* Cleared under the lock: a pause requested from now on sets it again. */
	vcpu->run->immediate_exit = 0;
	pthread_mutex_unlock(&pause->lock);
	return !vm_exiting(vcpu->vm);
}

int vcpus_pause(struct vm *vm)
{
	struct vcpu_pause *pause = &vm->pause;
	int err = 0;

	pthread_mutex_lock(&pause->lock);
	pause->requested = true;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		/* immediate_exit covers a thread that is about to enter KVM_RUN, the signal
		 * one that is already inside. */
		vm->vcpus[i].run->immediate_exit = 1;
		pthread_kill(vm->vcpus[i].thread, VCPU_KICK_SIGNAL);
	}
	while (pause->paused < pause->running && !vm_exiting(vm))
		pthread_cond_wait(&pause->changed, &pause->lock);
	if (vm_exiting(vm))
		err = -EIO;
	pthread_mutex_unlock(&pause->lock);
	return err;
}

void vcpus_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause.lock);
	vm->pause.requested = false;
	pthread_cond_broadcast(&vm->pause.changed);
	pthread_mutex_unlock(&vm->pause.lock);
}

static void vcpu_thread_ended(struct vcpu *vcpu)
{
	struct vcpu_pause *pause = &vcpu->vm->pause;

	pthread_mutex_lock(&pause->lock);
	pause->running--;
	pthread_cond_broadcast(&pause->changed);
	pthread_mutex_unlock(&pause->lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;

	/* Before the first KVM_RUN: from here on the guest's code runs in this thread. */
	if (seccomp_enter(SECCOMP_THREAD_VCPU)) {
		vm_request_exit(vcpu->vm, 1);
		vcpu_thread_ended(vcpu);
		return NULL;
	}
	while (vcpu_wait_while_paused(vcpu)) {
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_error("vCPU %u: KVM_RUN failed: %s", vcpu->index, strerror(errno));
			vm_request_exit(vcpu->vm, 1);
			break;
		}
		vcpu->exit_unfinished = vcpu->run->exit_reason == KVM_EXIT_IO ||
					vcpu->run->exit_reason == KVM_EXIT_MMIO;
		if (!vcpu_handle_exit(vcpu))
			break;
	}
	vcpu_thread_ended(vcpu);
	return NULL;
}

int vcpu_start(struct vcpu *vcpu)
{
	struct vcpu_pause *pause = &vcpu->vm->pause;
	int err;

	pthread_mutex_lock(&pause->lock);
	pause->running++;
	pthread_mutex_unlock(&pause->lock);
	err = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	if (err) {
		vcpu_thread_ended(vcpu);
		log_error("cannot start the thread of vCPU %u: %s", vcpu->index, strerror(err));
		return -err;
	}
	return 0;
}
