/* vCPU threads: each loops on KVM_RUN and hands port and MMIO exits to the buses. */
#ifndef WISP_VCPU_H
#define WISP_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Pausing: the VMM thread asks, every vCPU thread leaves KVM_RUN (a signal and
 * kvm_run.immediate_exit) and waits until resumed. */
struct vcpu_pause {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	bool requested;
	unsigned int paused;  /* vCPU threads waiting */
	unsigned int running; /* vCPU threads started and not ended */
};

/* Exit reasons counted for metrics and the benchmark. */
enum vcpu_exit_kind {
	VCPU_EXIT_IO,
	VCPU_EXIT_MMIO,
	VCPU_EXIT_OTHER,
	VCPU_EXIT_KINDS,
};

struct vcpu {
	struct vm *vm;
	unsigned int index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	/* The last KVM_RUN ended in a port or MMIO exit that only the next KVM_RUN finishes
	 * (vCPU thread only). */
	bool exit_unfinished;
	_Atomic uint64_t exits[VCPU_EXIT_KINDS];
};

int vcpu_create(struct vcpu *vcpu, struct vm *vm, unsigned int index);
/* CPUID, MSRs, FPU, LAPIC; the boot vCPU also gets the entry registers. */
int vcpu_configure(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu);
/* Call once before the first vcpu_start: sets up the pause state and the kick signal. */
int vcpus_pause_init(struct vcpu_pause *pause);
/* Returns once every vCPU is out of the guest and waiting (0), or -EIO if the VM ended. */
int vcpus_pause(struct vm *vm);
void vcpus_resume(struct vm *vm);

#endif
