/* vCPU threads: each loops on KVM_RUN and hands port and MMIO exits to the buses. */
#ifndef WISP_VCPU_H
#define WISP_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct vm;

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
	_Atomic uint64_t exits[VCPU_EXIT_KINDS];
};

int vcpu_create(struct vcpu *vcpu, struct vm *vm, unsigned int index);
/* CPUID, MSRs, FPU, LAPIC; the boot vCPU also gets the entry registers. */
int vcpu_configure(struct vcpu *vcpu);
int vcpu_start(struct vcpu *vcpu);

#endif
