#include "snapshot.h"

#include "../api/fc_config.h"
#include "log.h"
#include "memory_file.h"
#include "metrics.h"
#include "snapshot_format.h"
#include "vcpu_state.h"
#include "vm_state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Device sections: instance 0 the serial port, 1 the i8042, then the virtio devices in
 * the order they were attached (the same order a restore attaches them in). */
#define DEVICE_INSTANCE_SERIAL 0u
#define DEVICE_INSTANCE_I8042  1u
#define DEVICE_INSTANCE_VIRTIO 2u
#define DEVICE_STATE_MAX       4096u /* far above the largest device state */

/* The kind and id a virtio attachment is saved under: the drive's or interface's id. */
static int virtio_identity(const struct vm *vm, const struct virtio_device *dev, uint32_t *kind,
			   const char **id)
{
	for (unsigned int i = 0; i < vm->nr_drives; i++)
		if (blk_virtio(vm->drives[i]) == dev) {
			*kind = SNAP_DEV_VIRTIO_BLK;
			*id = vm->drive_ids[i];
			return 0;
		}
	for (unsigned int i = 0; i < vm->nr_nets; i++)
		if (net_virtio(vm->nets[i]) == dev) {
			*kind = SNAP_DEV_VIRTIO_NET;
			*id = vm->net_ids[i];
			return 0;
		}
	if (vm->balloon && balloon_virtio(vm->balloon) == dev) {
		*kind = SNAP_DEV_VIRTIO_BALLOON;
		*id = "balloon";
		return 0;
	}
	return -ENOENT;
}

/* ---- create ---- */

static void snapshot_header(struct snap_header *header, const char *wisp_version)
{
	memset(header, 0, sizeof(*header));
	snprintf(header->wisp_version, sizeof(header->wisp_version), "%s", wisp_version);
	snap_host_cpu_vendor(header->cpu_vendor);
	for (size_t i = 0; i < snap_nr_kvm_caps; i++)
		if (snap_kvm_caps[i].required)
			header->caps[header->nr_caps++] = snap_kvm_caps[i].cap;
}

static void memory_layout(const struct gmem *mem, struct snap_mem_layout *layout)
{
	uint64_t offset = 0;

	memset(layout, 0, sizeof(*layout));
	layout->nr_regions = mem->nr_regions;
	for (unsigned int i = 0; i < mem->nr_regions; i++) {
		layout->regions[i].gpa = mem->regions[i].gpa;
		layout->regions[i].size = mem->regions[i].size;
		layout->regions[i].file_offset = offset;
		offset += mem->regions[i].size;
	}
}

static int save_device(struct snap_writer *w, uint32_t instance, uint32_t kind, const char *id,
		       const struct device_ops *ops, void *device, char *err, size_t err_size)
{
	uint8_t state[DEVICE_STATE_MAX];
	int len = ops->save(device, state, sizeof(state));

	if (len < 0) {
		snprintf(err, err_size, "cannot save the %s '%s': %s", snap_device_kind_name(kind),
			 id, strerror(-len));
		return len;
	}
	return snap_writer_add_device(w, instance, kind, id, state, (size_t)len, err, err_size);
}

static int save_devices(struct snap_writer *w, struct vm *vm, char *err, size_t err_size)
{
	int ret = save_device(w, DEVICE_INSTANCE_SERIAL, SNAP_DEV_SERIAL, "serial0", &serial_ops,
			      &vm->serial, err, err_size);
	if (!ret)
		ret = save_device(w, DEVICE_INSTANCE_I8042, SNAP_DEV_I8042, "i8042", &i8042_ops,
				  &vm->i8042, err, err_size);
	for (unsigned int i = 0; !ret && i < vm->nr_virtio; i++) {
		uint32_t kind;
		const char *id;
		if (virtio_identity(vm, vm->virtio[i].dev, &kind, &id)) {
			snprintf(err, err_size, "virtio device %u has no drive or interface id", i);
			return -EINVAL;
		}
		ret = save_device(w, DEVICE_INSTANCE_VIRTIO + i, kind, id, &virtio_mmio_ops,
				  vm->virtio[i].dev, err, err_size);
	}
	return ret;
}

static int save_machine(struct snap_writer *w, struct vm *vm, char *err, size_t err_size)
{
	struct vcpu_state_host *host = calloc(1, sizeof(*host));
	struct vcpu_state *vcpu = calloc(1, sizeof(*vcpu));
	struct vm_state *vm_st = calloc(1, sizeof(*vm_st));
	struct snap_mem_layout layout;
	int ret = -ENOMEM;

	if (!host || !vcpu || !vm_st) {
		snprintf(err, err_size, "out of memory for the VM's state");
		goto out;
	}
	ret = vcpu_state_host_probe(vm->kvm.sys_fd, vm->kvm.vm_fd, vm->vcpus[0].fd, NULL, host, err,
				    err_size);
	for (unsigned int i = 0; !ret && i < vm->nr_vcpus; i++) {
		ret = vcpu_state_save(vm->vcpus[i].fd, i, host, NULL, w, err, err_size);
	}
	if (ret)
		goto out;
	memory_layout(&vm->mem, &layout);
	ret = vm_state_capture(vm->kvm.vm_fd, &layout, NULL, vm_st, err, err_size);
	if (!ret)
		ret = vm_state_write(w, vm_st, err, err_size);
out:
	free(host);
	free(vcpu);
	free(vm_st);
	return ret;
}

static int save_config(struct snap_writer *w, const struct vmm_config *config, char *err,
		       size_t err_size)
{
	json_t *json = fc_snapshot_config_json(config);
	char *text = json ? json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	int ret;

	json_decref(json);
	if (!text) {
		snprintf(err, err_size, "out of memory for the configuration's JSON");
		return -ENOMEM;
	}
	ret = snap_writer_add_config(w, text, err, err_size);
	free(text);
	return ret;
}

static int write_state_file(struct vm *vm, const struct vmm_config *config,
			    const char *wisp_version, const char *path, char *err, size_t err_size)
{
	struct snap_writer w;
	struct snap_header header;
	int ret;

	snapshot_header(&header, wisp_version);
	ret = snap_writer_begin(&w, path, &header, NULL, err, err_size);
	if (ret)
		return ret;
	ret = save_config(&w, config, err, err_size);
	if (!ret)
		ret = save_machine(&w, vm, err, err_size);
	if (!ret)
		ret = save_devices(&w, vm, err, err_size);
	if (!ret)
		ret = snap_writer_finish(&w, err, err_size);
	snap_writer_abort(&w);
	return ret;
}

int snapshot_create(struct vm *vm, const struct vmm_config *config, const char *wisp_version,
		    const struct snapshot_create_config *request, char *err, size_t err_size)
{
	uint64_t start_us = metrics_monotonic_us(), memory_us;
	uint64_t written = 0;
	int ret;

	/* The guest saw none of these complete; finished now, they are in the memory and
	 * the rings the snapshot holds, so that none is lost or done twice. */
	for (unsigned int i = 0; i < vm->nr_drives; i++) {
		ret = blk_drain(vm->drives[i]);
		if (ret) {
			snprintf(err, err_size, "drive '%s': cannot finish its requests: %s",
				 vm->drive_ids[i], strerror(-ret));
			return ret;
		}
	}
	struct memory_file_request memory = {
	    .diff = request->type == SNAPSHOT_DIFF,
	    .dirty_log = vm->mem.tracking_dirty ? kvm_dirty_log_of_region : NULL,
	    .dirty_log_opaque = &vm->kvm,
	};
	ret = memory_file_write(&vm->mem, request->mem_file_path, &memory, &written, err, err_size);
	if (ret)
		return ret;
	memory_us = metrics_monotonic_us() - start_us;
	ret = write_state_file(vm, config, wisp_version, request->snapshot_path, err, err_size);
	if (ret)
		return ret;
	log_info("snapshot %s (%s) and memory %s (%llu MiB written) in %llu us (memory %llu us)",
		 request->snapshot_path, request->type == SNAPSHOT_DIFF ? "Diff" : "Full",
		 request->mem_file_path, (unsigned long long)(written >> 20),
		 (unsigned long long)(metrics_monotonic_us() - start_us),
		 (unsigned long long)memory_us);
	return 0;
}

/* ---- load ---- */

struct loaded_snapshot {
	uint8_t *data;
	size_t size;
	struct snap_index idx;
	struct snap_mem_layout layout;
	struct vm_state vm;
	struct vcpu_state *vcpus;
	unsigned int nr_vcpus;
};

static void loaded_snapshot_free(struct loaded_snapshot *snap)
{
	for (unsigned int i = 0; snap->vcpus && i < snap->nr_vcpus; i++)
		vcpu_state_free(&snap->vcpus[i]);
	free(snap->vcpus);
	snap_index_free(&snap->idx);
	free(snap->data);
	memset(snap, 0, sizeof(*snap));
}

/* The file itself: format, checksum, vendor; the configuration it holds into *config, with
 * the request's overrides. Nothing is built yet. */
static int read_snapshot(const struct snapshot_load_config *request, struct loaded_snapshot *snap,
			 struct vmm_config *config, char *err, size_t err_size)
{
	const struct snap_section *section;
	char vendor[SNAP_VENDOR_SIZE];
	char *json = NULL, why[512];
	struct vmm_config *restored;
	int ret;

	ret = snap_read_file(request->snapshot_path, &snap->data, &snap->size, err, err_size);
	if (!ret)
		ret = snap_parse(snap->data, snap->size, 0, &snap->idx, err, err_size);
	if (ret)
		return ret;
	snap_host_cpu_vendor(vendor);
	ret = snap_check_vendor(&snap->idx.header, vendor, err, err_size);
	if (ret)
		return ret;
	section = snap_find(&snap->idx, SNAP_SEC_MACHINE_CONFIG, 0);
	if (!section) {
		snprintf(err, err_size, "%s holds no machine configuration",
			 request->snapshot_path);
		return -EINVAL;
	}
	ret =
	    snap_config_decode(snap->data + section->offset, section->length, &json, err, err_size);
	if (ret)
		return ret;
	restored = calloc(1, sizeof(*restored));
	if (!restored) {
		free(json);
		return -ENOMEM;
	}
	config_set_defaults(restored);
	ret = fc_vm_config_parse(json, strlen(json), restored, why, sizeof(why));
	free(json);
	if (ret) {
		snprintf(err, err_size, "the snapshot's VM configuration: %s", why);
		free(restored);
		return ret;
	}
	/* The process's own settings stay this process's. */
	restored->process = config->process;
	restored->logger = config->logger;
	memcpy(restored->metrics_path, config->metrics_path, sizeof(restored->metrics_path));
	memcpy(restored->serial_out_path, config->serial_out_path,
	       sizeof(restored->serial_out_path));
	restored->track_dirty_pages = request->track_dirty_pages;
	for (unsigned int i = 0; i < request->nr_net_overrides; i++) {
		const struct net_override *o = &request->net_overrides[i];
		unsigned int n;
		for (n = 0; n < restored->nr_nets; n++)
			if (!strcmp(restored->nets[n].id, o->iface_id))
				break;
		if (n == restored->nr_nets) {
			snprintf(err, err_size,
				 "network_overrides: the snapshot has no network interface '%s'",
				 o->iface_id);
			free(restored);
			return -EINVAL;
		}
		/* Opening a TAP that does not exist would create it (wisp may run as root):
		 * an override names a device the operator made for this clone. */
		if (!if_nametoindex(o->tap)) {
			snprintf(err, err_size,
				 "network_overrides: interface '%s': the TAP device %s does not "
				 "exist; create it first (ip tuntap add %s mode tap)",
				 o->iface_id, o->tap, o->tap);
			free(restored);
			return -ENODEV;
		}
		memcpy(restored->nets[n].tap, o->tap, sizeof(o->tap));
	}
	*config = *restored;
	free(restored);
	return 0;
}

/* Decodes and validates the VM's and every vCPU's KVM state against what the file and the
 * configuration say; the host checks need the built VM (its KVM). */
static int decode_machine(struct loaded_snapshot *snap, const struct vmm_config *config, char *err,
			  size_t err_size)
{
	struct gmem expected;
	int ret;

	ret = vm_state_load(snap->data, &snap->idx, &snap->vm, err, err_size);
	if (ret)
		return ret;
	snap->layout = snap->vm.layout;
	memset(&expected, 0, sizeof(expected));
	if (gmem_layout(&expected, config->mem_mib << 20) ||
	    expected.nr_regions != snap->layout.nr_regions) {
		snprintf(err, err_size,
			 "the snapshot's memory layout (%u regions) is not that of %llu MiB",
			 snap->layout.nr_regions, (unsigned long long)config->mem_mib);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < expected.nr_regions; i++)
		if (expected.regions[i].gpa != snap->layout.regions[i].gpa ||
		    expected.regions[i].size != snap->layout.regions[i].size) {
			snprintf(
			    err, err_size,
			    "the snapshot's memory region %u (0x%llx, %llu bytes) is not that of "
			    "%llu MiB",
			    i, (unsigned long long)snap->layout.regions[i].gpa,
			    (unsigned long long)snap->layout.regions[i].size,
			    (unsigned long long)config->mem_mib);
			return -EINVAL;
		}
	for (uint32_t i = 0; i < snap->idx.nr_sections; i++) {
		const struct snap_section *s = &snap->idx.sections[i];
		if (s->type >= SNAP_SEC_VCPU_REGS && s->type <= SNAP_SEC_VCPU_TSC_KHZ &&
		    s->instance >= config->vcpus) {
			snprintf(err, err_size,
				 "the snapshot has state for vCPU %u but its configuration has %u "
				 "vCPUs",
				 s->instance, config->vcpus);
			return -EINVAL;
		}
	}
	snap->vcpus = calloc(config->vcpus, sizeof(*snap->vcpus));
	if (!snap->vcpus)
		return -ENOMEM;
	snap->nr_vcpus = config->vcpus;
	for (unsigned int i = 0; i < config->vcpus; i++) {
		ret = vcpu_state_decode(snap->data, &snap->idx, i, &snap->vcpus[i], err, err_size);
		if (ret)
			return ret;
	}
	return 0;
}

static int open_memory_file(const struct snapshot_load_config *request,
			    const struct snap_mem_layout *layout, int *fd, char *err,
			    size_t err_size)
{
	uint64_t expected = snap_mem_layout_file_size(layout);
	struct stat st;
	int ret;

	*fd = open(request->backend_path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		ret = -errno;
		snprintf(err, err_size, "cannot open the memory file %s: %s", request->backend_path,
			 strerror(-ret));
		return ret;
	}
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != expected) {
		snprintf(err, err_size,
			 "the memory file %s has %lld bytes; the snapshot's memory needs %llu",
			 request->backend_path, (long long)st.st_size,
			 (unsigned long long)expected);
		close(*fd);
		*fd = -1;
		return -EINVAL;
	}
	return 0;
}

static int check_kvm_caps(const struct vm *vm, const struct snap_header *header, char *err,
			  size_t err_size)
{
	for (uint32_t i = 0; i < header->nr_caps; i++)
		if (ioctl(vm->kvm.sys_fd, KVM_CHECK_EXTENSION, (int)header->caps[i]) <= 0) {
			const char *name = snap_kvm_cap_name(header->caps[i]);
			snprintf(err, err_size,
				 "the snapshot needs KVM capability %s (%u), which this host's KVM "
				 "lacks",
				 name ? name : "unknown", header->caps[i]);
			return -ENOTSUP;
		}
	return 0;
}

/* Finds the device a section is for; every device must have exactly one. */
static int restore_devices(struct vm *vm, const struct loaded_snapshot *snap, char *err,
			   size_t err_size)
{
	unsigned int expected = DEVICE_INSTANCE_VIRTIO + vm->nr_virtio, found = 0;

	for (uint32_t i = 0; i < snap->idx.nr_sections; i++) {
		const struct snap_section *s = &snap->idx.sections[i];
		const struct device_ops *ops;
		struct snap_device device;
		uint32_t kind;
		const char *id;
		void *target;
		int ret;

		if (s->type != SNAP_SEC_DEVICE)
			continue;
		ret = snap_device_decode(snap->data + s->offset, s->length, &device, err, err_size);
		if (ret)
			return ret;
		if (s->instance == DEVICE_INSTANCE_SERIAL && device.kind == SNAP_DEV_SERIAL) {
			ops = &serial_ops;
			target = &vm->serial;
		} else if (s->instance == DEVICE_INSTANCE_I8042 && device.kind == SNAP_DEV_I8042) {
			ops = &i8042_ops;
			target = &vm->i8042;
		} else if (s->instance >= DEVICE_INSTANCE_VIRTIO && s->instance < expected &&
			   !virtio_identity(vm,
					    vm->virtio[s->instance - DEVICE_INSTANCE_VIRTIO].dev,
					    &kind, &id) &&
			   kind == device.kind && !strcmp(id, device.id)) {
			ops = &virtio_mmio_ops;
			target = vm->virtio[s->instance - DEVICE_INSTANCE_VIRTIO].dev;
		} else {
			snprintf(err, err_size,
				 "the snapshot's device %u (%s '%s') is not in its configuration",
				 s->instance, snap_device_kind_name(device.kind) ?: "unknown",
				 device.id);
			return -EINVAL;
		}
		ret = ops->restore(target, device.state, device.state_len);
		if (ret) {
			snprintf(err, err_size, "the snapshot's %s '%s' state is not valid: %s",
				 snap_device_kind_name(device.kind), device.id, strerror(-ret));
			return ret;
		}
		found++;
	}
	if (found != expected) {
		snprintf(err, err_size, "the snapshot holds %u device states for %u devices", found,
			 expected);
		return -EINVAL;
	}
	return 0;
}

static int restore_machine(struct vm *vm, struct loaded_snapshot *snap,
			   const struct snapshot_load_config *request, char *err, size_t err_size)
{
	struct vcpu_state_host *host = calloc(1, sizeof(*host));
	struct vm_state_host vm_host;
	int ret = -ENOMEM;

	if (!host)
		return ret;
	ret = vcpu_state_host_probe(vm->kvm.sys_fd, vm->kvm.vm_fd, vm->vcpus[0].fd, NULL, host, err,
				    err_size);
	if (!ret)
		ret = vm_state_host_probe(vm->kvm.vm_fd, NULL, &vm_host, err, err_size);
	/* Every vCPU checked against this host before the first one is set. */
	for (unsigned int i = 0; !ret && i < snap->nr_vcpus; i++)
		ret = vcpu_state_validate(&snap->vcpus[i], i, host, err, err_size);
	if (!ret)
		ret = restore_devices(vm, snap, err, err_size);
	for (unsigned int i = 0; !ret && i < snap->nr_vcpus; i++)
		ret = vcpu_state_apply(vm->vcpus[i].fd, i, &snap->vcpus[i], host, NULL, err,
				       err_size);
	if (!ret)
		ret = vm_state_apply(vm->kvm.vm_fd, &snap->vm, request->clock_realtime, &vm_host,
				     NULL, err, err_size);
	free(host);
	return ret;
}

int snapshot_load(struct vm *vm, const struct snapshot_load_config *request,
		  struct vmm_config *config, bool *vm_built, enum failure_origin *origin, char *err,
		  size_t err_size)
{
	struct loaded_snapshot snap;
	struct vmm_config *restored = malloc(sizeof(*restored));
	uint64_t offsets[GMEM_MAX_REGIONS];
	uint64_t start_us = metrics_monotonic_us();
	int ret, mem_fd = -1;

	*vm_built = false;
	memset(&snap, 0, sizeof(snap));
	if (!restored) {
		snprintf(err, err_size, "out of memory for the restored configuration");
		return -ENOMEM;
	}
	*restored = *config;
	failure_blame(origin, FAILURE_BAD_INPUT);
	ret = read_snapshot(request, &snap, restored, err, err_size);
	if (!ret)
		ret = decode_machine(&snap, restored, err, err_size);
	if (ret)
		goto out;
	if (snap.layout.nr_regions > GMEM_MAX_REGIONS) {
		ret = -EINVAL;
		snprintf(err, err_size, "the snapshot has %u memory regions",
			 snap.layout.nr_regions);
		goto out;
	}
	for (unsigned int i = 0; i < snap.layout.nr_regions; i++)
		offsets[i] = snap.layout.regions[i].file_offset;
	if (request->backend == MEM_BACKEND_FILE) {
		ret = open_memory_file(request, &snap.layout, &mem_fd, err, err_size);
		if (ret)
			goto out;
	}

	*vm_built = true;
	log_first_error_reset();
	{
		/* wisp's own snapshots have no huge pages ("Snapshot" means "None"); a File
		 * restore maps the page cache, where the choice does not apply. */
		struct vm_memory_source source = {
		    .file_fd = mem_fd,
		    .file_offsets = offsets,
		    .thp = request->huge_pages == RESTORE_HUGE_PAGES_TRANSPARENT ? GMEM_THP_ON
										 : GMEM_THP_OFF,
		};
		ret = vm_build(vm, restored, &source, origin);
	}
	if (ret) {
		const char *cause = log_first_error();
		snprintf(err, err_size, "cannot build the VM: %s", *cause ? cause : strerror(-ret));
		goto out;
	}
	/* Before anything touches guest memory: a page already there would never fault. */
	if (request->backend == MEM_BACKEND_UFFD) {
		ret = uffd_backend_connect(&vm->mem, &snap.layout, request->backend_path, &vm->uffd,
					   err, err_size);
		/* A later Full snapshot reads these pages through the handler. */
		for (unsigned int i = 0; i < vm->mem.nr_regions; i++)
			vm->mem.regions[i].served_on_fault = true;
		if (!ret)
			ret = vm_watch_uffd_handler(vm);
		if (ret)
			goto out;
	}
	ret = check_kvm_caps(vm, &snap.idx.header, err, err_size);
	if (!ret)
		ret = restore_machine(vm, &snap, request, err, err_size);
	if (ret)
		goto out;
	/* The vCPU threads start parked; resumed below or by PATCH /vm. */
	vm->pause.requested = true;
	failure_blame(origin, FAILURE_VMM);
	ret = vm_start(vm);
	if (ret) {
		snprintf(err, err_size, "cannot start the vCPUs: %s", strerror(-ret));
		goto out;
	}
	if (request->backend == MEM_BACKEND_UFFD) {
		ret = uffd_backend_check_alive(&vm->uffd, 0, err, err_size);
		if (ret)
			goto out;
	}
	if (request->resume_vm)
		vcpus_resume(vm);
	*config = *restored;
	log_info("snapshot %s loaded in %llu us (%u vCPUs, %llu MiB, memory from %s)",
		 request->snapshot_path, (unsigned long long)(metrics_monotonic_us() - start_us),
		 restored->vcpus, (unsigned long long)restored->mem_mib, request->backend_path);
out:
	if (mem_fd >= 0)
		close(mem_fd); /* the mapping keeps the file */
	loaded_snapshot_free(&snap);
	free(restored);
	return ret;
}
