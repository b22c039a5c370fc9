/*
 * The VM-wide KVM state for snapshots: the in-kernel PIC pair and IOAPIC, the PIT, kvmclock,
 * and the guest memory layout (which the VM builder maps; this layer only checks and
 * carries it). Read with KVM_GET_IRQCHIP / KVM_GET_PIT2 / KVM_GET_CLOCK, written as the
 * state file's VM sections, read back, validated, and put back with the KVM_SET_* ioctls,
 * all through a struct state_ioctl (vcpu_state.h) so that unit tests replace KVM.
 *
 * Order of a restore: memory mapped as the layout says, every vCPU's vcpu_state_apply(),
 * then vm_state_apply() (kvmclock after the vCPUs' TSCs and kvmclock MSRs, as Firecracker
 * does).
 */
#ifndef WISP_VM_STATE_H
#define WISP_VM_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot_format.h"
#include "vcpu_state.h"

/* The kvmclock flags KVM_SET_CLOCK accepts back from KVM_GET_CLOCK. */
#define VM_STATE_CLOCK_FLAGS (KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC)

struct vm_state {
	struct kvm_irqchip pic_master; /* chip_id KVM_IRQCHIP_PIC_MASTER */
	struct kvm_irqchip pic_slave;  /* chip_id KVM_IRQCHIP_PIC_SLAVE */
	struct kvm_irqchip ioapic;     /* chip_id KVM_IRQCHIP_IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock; /* as KVM_GET_CLOCK gave it: realtime valid with the flag */
	struct snap_mem_layout layout;
};

/* What this host's KVM offers for the VM state. */
struct vm_state_host {
	uint32_t clock_flags; /* KVM_CHECK_EXTENSION(KVM_CAP_ADJUST_CLOCK): KVM_CLOCK_* it takes */
};

/* Reads KVM_CAP_ADJUST_CLOCK on the VM (or /dev/kvm) fd. */
int vm_state_host_probe(int vm_fd, const struct state_ioctl *ops, struct vm_state_host *host,
			char *err, size_t err_size);

/* Reads the paused VM's irqchips, PIT and clock; the memory layout is the caller's (the
 * VM's regions as the memory file will hold them). The result is validated. */
int vm_state_capture(int vm_fd, const struct snap_mem_layout *layout, const struct state_ioctl *ops,
		     struct vm_state *st, char *err, size_t err_size);

/* Appends the VM sections (MEMORY_LAYOUT, PIC_MASTER, PIC_SLAVE, IOAPIC, PIT, KVMCLOCK). */
int vm_state_write(struct snap_writer *w, const struct vm_state *st, char *err, size_t err_size);

/* Takes the VM sections out of a parsed state file; every one must be there. */
int vm_state_decode(const uint8_t *data, const struct snap_index *idx, struct vm_state *st,
		    char *err, size_t err_size);

/* Checks the state: chip ids and padding, PIT flags and channel modes and counts, kvmclock
 * flags (only those KVM_SET_CLOCK takes) and padding, the memory layout's rules. */
int vm_state_validate(const struct vm_state *st, char *err, size_t err_size);

/* vm_state_decode() then vm_state_validate(). */
int vm_state_load(const uint8_t *data, const struct snap_index *idx, struct vm_state *st, char *err,
		  size_t err_size);

/*
 * The kvm_clock_data KVM_SET_CLOCK gets. With clock_realtime, when the saved clock carries
 * its wall-clock time (KVM_CLOCK_REALTIME: KVM's, or wisp's own reading where KVM had
 * none), the clock is advanced by the wall-clock time since the snapshot (*advanced =
 * true): by KVM (the flag stays) when the host's KVM takes the flag, else here, adding
 * now_realtime_ns - saved->realtime. Otherwise no flag, and the guest's clock carries on
 * from the saved value (never backwards, no jump).
 */
struct kvm_clock_data vm_state_clock_to_set(const struct kvm_clock_data *saved, bool clock_realtime,
					    const struct vm_state_host *host,
					    uint64_t now_realtime_ns, bool *advanced);

/*
 * Puts the state into the VM (after the vCPUs'): validates it again (an invalid state makes
 * no call), then KVM_SET_PIT2, KVM_SET_CLOCK, KVM_SET_IRQCHIP for the PIC master, the PIC
 * slave and the IOAPIC. A clock_realtime the host or file cannot honour is a warning, and
 * the clock is set plainly.
 */
int vm_state_apply(int vm_fd, const struct vm_state *st, bool clock_realtime,
		   const struct vm_state_host *host, const struct state_ioctl *ops, char *err,
		   size_t err_size);

#endif
