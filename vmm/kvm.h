/* Thin checked wrappers over the KVM system and VM ioctls. */
#ifndef WISP_KVM_H
#define WISP_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

struct kvm {
	int sys_fd;
	int vm_fd;
	int vcpu_mmap_size;
};

/* Opens /dev/kvm (or `path`), checks the API version and every capability wisp needs. */
int kvm_open(struct kvm *kvm, const char *path);
/* Creates the VM with its in-kernel irqchip (PIC + IOAPIC + LAPICs) and PIT. */
int kvm_create_vm(struct kvm *kvm);
/* track_dirty_pages: KVM logs writes to the slot (machine-config track_dirty_pages, for
 * diff snapshots). */
int kvm_add_memory(struct kvm *kvm, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
		   bool track_dirty_pages);
/* Reads and clears KVM's log of the pages the guest wrote in memory slot `slot` since the
 * last call (the slot must have been added with track_dirty_pages): one bit per 4 KiB page,
 * `bitmap` holds the slot's pages rounded up to 64 bits (gmem_bitmap_words()). */
int kvm_get_dirty_log(struct kvm *kvm, unsigned int slot, uint64_t *bitmap);
/* The same with the signature of memory_file.h's memory_dirty_log_fn (opaque: the struct
 * kvm; wisp's memory slot i is guest memory region i). */
int kvm_dirty_log_of_region(void *kvm, unsigned int region, uint64_t *bitmap);
int kvm_irq_line(struct kvm *kvm, unsigned int irq, int level);
/* KVM's supported CPUID (caller frees); NULL on failure. */
struct kvm_cpuid2 *kvm_supported_cpuid(struct kvm *kvm);
/* Routes writes to eventfd `fd` into interrupt line `gsi` (KVM_IRQFD). */
int kvm_irqfd(struct kvm *kvm, int fd, unsigned int gsi);
/* Makes a 4-byte guest write of `value` to MMIO `addr` signal `fd` without leaving KVM. */
int kvm_ioeventfd(struct kvm *kvm, int fd, uint64_t addr, uint32_t value);
void kvm_close(struct kvm *kvm);

#endif
