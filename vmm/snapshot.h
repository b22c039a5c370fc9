/*
 * Snapshots of a whole VM: PUT /snapshot/create writes a paused VM's state file (vCPUs,
 * irqchips, PIT, kvmclock, devices, configuration; vmm/SNAPSHOT-FORMAT.md) and its memory
 * file; PUT /snapshot/load (or --restore) builds the same machine in a fresh process from
 * them, memory mapped copy-on-write from the memory file or served by a userfaultfd
 * handler, and leaves it paused or running.
 */
#ifndef WISP_SNAPSHOT_H
#define WISP_SNAPSHOT_H

#include "config.h"
#include "failure.h"
#include "vm.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Writes the snapshot of a VM whose vCPUs are paused: the block devices' requests in
 * flight finish first, then the memory file and the state file are each written to a
 * temporary name, fsynced and renamed, so that a failure leaves no file that looks valid
 * and an older snapshot at the same paths intact. config is the VM's configuration as
 * GET /vm/config shows it. Returns 0 or -errno with the reason in err.
 */
int snapshot_create(struct vm *vm, const struct vmm_config *config, const char *wisp_version,
		    const struct snapshot_create_config *request, char *err, size_t err_size);

/*
 * Builds a VM from a snapshot in *vm (not yet created) and starts its vCPU threads,
 * paused, or running with request->resume_vm. *config holds the process's own settings
 * (id, API socket, logger, metrics) on entry and the restored configuration on success.
 * Every check of the files (format, checksum, vendor, KVM capabilities, sizes, vCPU
 * count, the network overrides) comes before the VM is built; *vm_built says whether it
 * got that far, after which the process cannot take another load. *origin says whether
 * the input or the host was at fault.
 */
int snapshot_load(struct vm *vm, const struct snapshot_load_config *request,
		  struct vmm_config *config, bool *vm_built, enum failure_origin *origin, char *err,
		  size_t err_size);

#endif
