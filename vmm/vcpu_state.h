/*
 * One vCPU's KVM state for snapshots: read with the KVM_GET_* ioctls into a plain struct,
 * written as the state file's per-vCPU sections (vmm/SNAPSHOT-FORMAT.md), read back from a
 * parsed file, checked against this host's KVM, and only then put back with the KVM_SET_*
 * ioctls in the order KVM needs.
 *
 * Every KVM call goes through a struct state_ioctl, so that unit tests replace KVM with a
 * fake that answers the GETs and records the SETs; NULL means the real ioctl(2). Encoding
 * and decoding are pure.
 *
 * A restore of a whole VM is: vcpu_state_load() for every vCPU and vm_state_load() (which
 * decode and validate, touching nothing), then vcpu_state_apply() for every vCPU, then
 * vm_state_apply(). Nothing is changed unless every part of the file passed its checks.
 */
#ifndef WISP_VCPU_STATE_H
#define WISP_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot_format.h"

/* The ioctl(2) that the state layer calls: returns the ioctl's value (>= 0) or -errno. */
struct state_ioctl {
	int (*ioctl)(void *ctx, int fd, unsigned long request, void *arg);
	void *ctx;
};

/* KVM_GET_MSRS / KVM_SET_MSRS take at most this many MSRs per call (KVM refuses 256). */
#define VCPU_STATE_MSR_BATCH 64u
/* TSC frequencies a state file may hold, in kHz (KVM_SET_TSC_KHZ takes a u32). */
#define VCPU_STATE_TSC_KHZ_MIN 1000u	 /* 1 MHz */
#define VCPU_STATE_TSC_KHZ_MAX 20000000u /* 20 GHz */
/* A saved TSC frequency within this many parts per million of the host's needs no
 * scaling (TSC calibration differs a little from boot to boot on the same machine). */
#define VCPU_STATE_TSC_TOLERANCE_PPM 250u

/* What this host's KVM offers, read once per VM with vcpu_state_host_probe(). */
struct vcpu_state_host {
	uint32_t nr_msrs; /* the MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST) */
	uint32_t msr_indices[SNAP_MAX_MSRS];
	uint32_t xsave_size;	 /* KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2), or 4096 without it */
	bool xsave2;		 /* KVM_GET_XSAVE2 exists */
	uint64_t supported_xcr0; /* KVM_GET_SUPPORTED_CPUID leaf 0xd: XCR0 bits KVM allows */
	uint32_t tsc_khz;	 /* a fresh vCPU's TSC frequency (KVM_GET_TSC_KHZ) */
	bool tsc_control;	 /* KVM_CAP_TSC_CONTROL: KVM_SET_TSC_KHZ can scale a vCPU's TSC */
};

/* One vCPU's KVM state: plain data. xsave is malloc'd (vcpu_state_free()). */
struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t xsave_size;
	uint8_t *xsave; /* xsave_size bytes: KVM_GET_XSAVE2's buffer */
	struct kvm_xcrs xcrs;
	uint32_t nr_msrs;
	struct kvm_msr_entry msrs[SNAP_MAX_MSRS];
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	uint32_t nr_cpuid;
	struct kvm_cpuid_entry2 cpuid[SNAP_MAX_CPUID_ENTRIES]; /* what the vCPU ran with */
	uint64_t tsc_khz;
};

/*
 * Reads what the host's KVM offers: the saveable MSR list (sys_fd), the XSAVE size (vm_fd),
 * the supported XCR0 (sys_fd) and a vCPU's TSC frequency (vcpu_fd, a vCPU of this VM). A
 * host offering more than SNAP_MAX_MSRS MSRs is refused (-E2BIG). Returns 0 or -errno with
 * a message in err.
 */
int vcpu_state_host_probe(int sys_fd, int vm_fd, int vcpu_fd, const struct state_ioctl *ops,
			  struct vcpu_state_host *host, char *err, size_t err_size);

/*
 * Completes an I/O or MMIO exit that the VMM has handled but KVM has not finished yet: KVM
 * finishes the instruction (moves RIP past an OUT, stores an IN's or MMIO read's value) only
 * on the next KVM_RUN. This is that KVM_RUN with run->immediate_exit set, which returns
 * EINTR without running the guest. Call it for every paused vCPU before
 * vcpu_state_capture(); without it a restore repeats an OUT or loses an IN's value (seen on
 * real KVM). run is the vCPU's mmap'd struct kvm_run.
 */
int vcpu_state_complete_io(int vcpu_fd, unsigned int vcpu_index, struct kvm_run *run,
			   const struct state_ioctl *ops, char *err, size_t err_size);

/*
 * Reads a paused vCPU's whole state: every MSR of host->msr_indices in batches (a batch KVM
 * answers short is an error naming the MSR it stopped at), then checks it with
 * vcpu_state_validate(), so that a snapshot which could not be restored here is refused now.
 * Every vCPU of the VM must be out of KVM_RUN (KVM serialises a vCPU's ioctls, and the
 * vCPU events are only consistent with the others stopped). st must be zeroed or freed; on
 * failure it holds nothing to free.
 */
int vcpu_state_capture(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state_host *host,
		       const struct state_ioctl *ops, struct vcpu_state *st, char *err,
		       size_t err_size);

/* Appends the vCPU's sections (instance vcpu_index) to the writer. */
int vcpu_state_write(struct snap_writer *w, unsigned int vcpu_index, const struct vcpu_state *st,
		     char *err, size_t err_size);

/* vcpu_state_capture() then vcpu_state_write(). */
int vcpu_state_save(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state_host *host,
		    const struct state_ioctl *ops, struct snap_writer *w, char *err,
		    size_t err_size);

/*
 * Takes vCPU vcpu_index's sections out of a parsed state file (`data` is the file, `idx`
 * what snap_parse() made of it): every one must be there, with the size its type has.
 * No check against the host (vcpu_state_validate()).
 */
int vcpu_state_decode(const uint8_t *data, const struct snap_index *idx, unsigned int vcpu_index,
		      struct vcpu_state *st, char *err, size_t err_size);

/*
 * Whether this host's KVM can take the state, checked before anything is set: the XSAVE
 * size equals the host's and its features are ones KVM allows, XCRs, every MSR is one the
 * host saves (no index twice), the CPUID has 1 to 256 entries with no (function, index)
 * twice, a sane TSC frequency the host can run at (its own, or scaled with
 * KVM_CAP_TSC_CONTROL), the LAPIC's ID is the vCPU's index, and the fields KVM would
 * refuse (flags, reserved bytes, MP state, exception vectors, debug registers' high bits,
 * the control registers' combinations) are valid. Returns 0 or -EINVAL (-ENOTSUP for what
 * this host lacks) with a message naming the vCPU and the field.
 */
int vcpu_state_validate(const struct vcpu_state *st, unsigned int vcpu_index,
			const struct vcpu_state_host *host, char *err, size_t err_size);

/* vcpu_state_decode() then vcpu_state_validate(); on failure st holds nothing to free. */
int vcpu_state_load(const uint8_t *data, const struct snap_index *idx, unsigned int vcpu_index,
		    const struct vcpu_state_host *host, struct vcpu_state *st, char *err,
		    size_t err_size);

/*
 * Puts the state into a fresh vCPU (created, never run): validates it again (an invalid
 * state makes no call), then KVM_SET_CPUID2, KVM_SET_TSC_KHZ (only when the host's
 * frequency is off by more than the tolerance), KVM_SET_MP_STATE, KVM_SET_REGS,
 * KVM_SET_SREGS, KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_DEBUGREGS, KVM_SET_LAPIC,
 * KVM_SET_MSRS in batches (IA32_TSC_DEADLINE last; each batch must be taken whole),
 * KVM_SET_VCPU_EVENTS, and a best-effort KVM_KVMCLOCK_CTRL (tells the guest it was paused).
 */
int vcpu_state_apply(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state *st,
		     const struct vcpu_state_host *host, const struct state_ioctl *ops, char *err,
		     size_t err_size);

void vcpu_state_free(struct vcpu_state *st);

/* The real ioctl(2) behind a NULL ops, for vm_state.c. */
int state_ioctl_call(const struct state_ioctl *ops, int fd, unsigned long request, void *arg);

#endif
