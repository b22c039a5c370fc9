#include "kvm.h"

#include "arch/x86_64/layout.h"
#include "log.h"
#include "snapshot_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int kvm_open(struct kvm *kvm, const char *path)
{
	int version, err;

	kvm->vm_fd = -1;
	kvm->sys_fd = open(path, O_RDWR | O_CLOEXEC);
	if (kvm->sys_fd < 0) {
		err = -errno;
		log_error("cannot open %s: %s (is KVM available, and may this user use it?)", path,
			  strerror(errno));
		return err;
	}
	version = ioctl(kvm->sys_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		log_error("%s offers KVM API version %d, wisp needs %d", path, version,
			  KVM_API_VERSION);
		err = -ENOTSUP;
		goto fail;
	}
	for (size_t i = 0; i < snap_nr_kvm_caps; i++) {
		if (!snap_kvm_caps[i].required)
			continue;
		if (ioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, (int)snap_kvm_caps[i].cap) <= 0) {
			log_error("this KVM lacks %s, which wisp needs (a newer host kernel?)",
				  snap_kvm_caps[i].name);
			err = -ENOTSUP;
			goto fail;
		}
	}
	kvm->vcpu_mmap_size = ioctl(kvm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (kvm->vcpu_mmap_size < 0) {
		err = -errno;
		log_error("%s: KVM_GET_VCPU_MMAP_SIZE failed: %s", path, strerror(-err));
		goto fail;
	}
	if (kvm->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		log_error("%s: KVM_GET_VCPU_MMAP_SIZE says %d bytes, less than the %zu of struct "
			  "kvm_run",
			  path, kvm->vcpu_mmap_size, sizeof(struct kvm_run));
		err = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	close(kvm->sys_fd);
	kvm->sys_fd = -1;
	return err;
}

int kvm_create_vm(struct kvm *kvm)
{
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	int err;

	kvm->vm_fd = ioctl(kvm->sys_fd, KVM_CREATE_VM, 0);
	if (kvm->vm_fd < 0) {
		err = -errno;
		log_error("KVM_CREATE_VM failed: %s (too many VMs for this host's KVM, or out of "
			  "memory?)",
			  strerror(-err));
		return err;
	}
	/* Intel needs three pages for the real-mode TSS and one for the identity map,
	 * inside the 32-bit gap where no RAM is. */
	if (ioctl(kvm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS) < 0) {
		err = -errno;
		log_error("KVM_SET_TSS_ADDR 0x%llx failed: %s", (unsigned long long)LAYOUT_KVM_TSS,
			  strerror(-err));
		goto fail;
	}
	if (ioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
		uint64_t addr = LAYOUT_KVM_IDENTITY;
		if (ioctl(kvm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
			err = -errno;
			log_error("KVM_SET_IDENTITY_MAP_ADDR 0x%llx failed: %s",
				  (unsigned long long)addr, strerror(-err));
			goto fail;
		}
	}
	if (ioctl(kvm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		err = -errno;
		log_error("KVM_CREATE_IRQCHIP failed: %s", strerror(-err));
		goto fail;
	}
	if (ioctl(kvm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		err = -errno;
		log_error("KVM_CREATE_PIT2 failed: %s", strerror(-err));
		goto fail;
	}
	return 0;
fail:
	close(kvm->vm_fd);
	kvm->vm_fd = -1;
	return err;
}

int kvm_add_memory(struct kvm *kvm, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
		   bool track_dirty_pages)
{
	struct kvm_userspace_memory_region region = {
	    .slot = slot,
	    .flags = track_dirty_pages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
	    .guest_phys_addr = gpa,
	    .memory_size = size,
	    .userspace_addr = (uint64_t)(uintptr_t)host,
	};
	if (ioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		int err = -errno;
		log_error("KVM_SET_USER_MEMORY_REGION slot %u (0x%llx, %llu MiB) failed: %s", slot,
			  (unsigned long long)gpa, (unsigned long long)(size >> 20),
			  strerror(errno));
		return err;
	}
	return 0;
}

int kvm_get_dirty_log(struct kvm *kvm, unsigned int slot, uint64_t *bitmap)
{
	struct kvm_dirty_log log = {.slot = slot, .dirty_bitmap = bitmap};
	if (ioctl(kvm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
		int err = -errno;
		log_error("KVM_GET_DIRTY_LOG slot %u failed: %s (was the slot added with "
			  "track_dirty_pages?)",
			  slot, strerror(errno));
		return err;
	}
	return 0;
}

int kvm_dirty_log_of_region(void *kvm, unsigned int region, uint64_t *bitmap)
{
	return kvm_get_dirty_log(kvm, region, bitmap);
}

int kvm_irq_line(struct kvm *kvm, unsigned int irq, int level)
{
	struct kvm_irq_level line = {.irq = irq, .level = level};
	if (ioctl(kvm->vm_fd, KVM_IRQ_LINE, &line) < 0) {
		int err = -errno;
		log_error("KVM_IRQ_LINE irq %u level %d failed: %s", irq, level, strerror(errno));
		return err;
	}
	return 0;
}

struct kvm_cpuid2 *kvm_supported_cpuid(struct kvm *kvm)
{
	/* Grow the buffer until KVM stops saying it is too small. */
	for (unsigned int nent = 64; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *cpuid =
		    calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
		int err;

		if (!cpuid) {
			log_error("out of memory for %u CPUID entries", nent);
			return NULL;
		}
		cpuid->nent = nent;
		if (ioctl(kvm->sys_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			return cpuid;
		err = errno; /* before free() */
		free(cpuid);
		if (err != E2BIG) {
			log_error("KVM_GET_SUPPORTED_CPUID with %u entries failed: %s", nent,
				  strerror(err));
			return NULL;
		}
	}
	log_error("KVM_GET_SUPPORTED_CPUID wants more than 4096 entries");
	return NULL;
}

int kvm_irqfd(struct kvm *kvm, int fd, unsigned int gsi)
{
	struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};
	if (ioctl(kvm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
		int err = -errno;
		log_error("KVM_IRQFD for interrupt %u failed: %s", gsi, strerror(errno));
		return err;
	}
	return 0;
}

int kvm_ioeventfd(struct kvm *kvm, int fd, uint64_t addr, uint32_t value)
{
	struct kvm_ioeventfd ioeventfd = {
	    .datamatch = value,
	    .addr = addr,
	    .len = 4,
	    .fd = fd,
	    .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};
	if (ioctl(kvm->vm_fd, KVM_IOEVENTFD, &ioeventfd) < 0) {
		int err = -errno;
		log_error("KVM_IOEVENTFD at 0x%llx (value %u) failed: %s", (unsigned long long)addr,
			  value, strerror(errno));
		return err;
	}
	return 0;
}

void kvm_close(struct kvm *kvm)
{
	if (kvm->vm_fd >= 0)
		close(kvm->vm_fd);
	if (kvm->sys_fd >= 0)
		close(kvm->sys_fd);
	kvm->vm_fd = kvm->sys_fd = -1;
}
