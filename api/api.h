/*
 * The Firecracker-compatible API's logic: a request (method, path, body) in, a status and
 * a JSON body out. It runs on the VMM thread (the server thread only moves bytes), owns
 * the configuration until InstanceStart, and reaches the running VM only through
 * `struct api_vmm_ops`, so that it is unit-tested and fuzzed without KVM.
 */
#ifndef WISP_API_H
#define WISP_API_H

#include "fc_config.h"
#include "http.h"

#include <stdbool.h>
#include <stddef.h>

enum api_endpoint {
	API_INSTANCE_INFO, /* GET / */
	API_VERSION,
	API_VM_CONFIG,
	API_MACHINE_CONFIG,
	API_BOOT_SOURCE,
	API_DRIVES,
	API_NETWORK_INTERFACES,
	API_ACTIONS,
	API_VM,
	API_LOGGER,
	API_METRICS,
	API_SERIAL,
	API_SNAPSHOT_CREATE,
	API_SNAPSHOT_LOAD,
	API_NOT_YET, /* a Firecracker resource wisp does not have yet: 400, not 404 */
};

struct api_route {
	enum api_endpoint endpoint;
	char id[CONFIG_ID_MAX + 1]; /* {drive_id} / {iface_id}; +1 so that too long is seen */
	const char *resource;	    /* for API_NOT_YET: its path, for the message */
};

/* Maps method + path to an endpoint; -ENOENT (with Firecracker's "Invalid request method
 * and/or path" message in err) for anything else. */
int api_route(enum http_method method, const char *path, struct api_route *route, char *err,
	      size_t err_size);

enum api_vm_state { API_VM_NOT_STARTED, API_VM_RUNNING, API_VM_PAUSED };

/* What the API asks of the VMM once configuration turns into a VM. Each returns 0, or
 * -errno with a message for the fault_message in err. */
struct api_vmm_ops {
	int (*start)(void *opaque, const struct vmm_config *config, char *err, size_t err_size);
	int (*pause)(void *opaque, char *err, size_t err_size);
	int (*resume)(void *opaque, char *err, size_t err_size);
	int (*send_ctrl_alt_del)(void *opaque, char *err, size_t err_size);
	int (*flush_metrics)(void *opaque, char *err, size_t err_size);
	/* PATCH on a running VM: path NULL keeps the drive's image; the limiters are the
	 * ones to be in force (the PATCH already merged in). */
	int (*patch_drive)(void *opaque, const char *id, const char *path,
			   const struct rate_limiter_config *limiter, char *err, size_t err_size);
	int (*patch_net)(void *opaque, const char *id, const struct rate_limiter_config *rx,
			 const struct rate_limiter_config *tx, char *err, size_t err_size);
	int (*set_logger)(void *opaque, const struct logger_config *logger, char *err,
			  size_t err_size);
	int (*set_metrics)(void *opaque, const char *path, char *err, size_t err_size);
	/* Opens path with open(2)'s flags (O_RDONLY or O_RDWR) and closes it again: 0 or
	 * -errno. As Firecracker does, PUT /boot-source and PUT /drives open the files they
	 * name while they are handled, so a missing file is that request's 400. */
	int (*open_check)(void *opaque, const char *path, int flags);
	/* PUT /snapshot/create on a paused VM (the API checked the body and the state):
	 * writes both files; the VM stays paused. A failure is that request's 400 (err) and
	 * leaves the VM paused, so the client may try again or resume. The API passes Diff
	 * whether or not the VM tracks dirty pages (track_dirty_pages): Firecracker 1.17
	 * then takes the pages mincore(2) reports resident instead of KVM's dirty log. */
	int (*snapshot_create)(void *opaque, const struct snapshot_create_config *request,
			       char *err, size_t err_size);
	/* PUT /snapshot/load on a fresh process (the API checked the body, that no VM was
	 * started or loaded, and that nothing was configured but the logger, metrics and
	 * serial output). On entry *restored holds the API's configuration so far (the
	 * defaults, logger, metrics_path, serial_out_path, process), which is where the
	 * serial output a client set before the load is (as in Firecracker, the restored
	 * VM's console goes there). On success *restored is the restored VM's
	 * configuration (what GET /vm/config shows from then on; the API keeps its own
	 * logger, metrics_path, serial_out_path and process over it, and sets
	 * track_dirty_pages to the request's, as Firecracker does, since the snapshot does
	 * not keep it) and the VM is paused, or running when request->resume_vm.
	 * A failure is the request's 400 (err). The op says whether the process can take
	 * another load: -ENOTRECOVERABLE when the failure left part of a VM behind (KVM's
	 * VM, threads: Firecracker ends its process there); the API then refuses a later
	 * load, InstanceStart and boot configuration with API_MSG_LOAD_FAILED, and the op
	 * need not undo the half-built VM, only leave the process able to answer GETs, the
	 * logger and metrics, and to exit cleanly. Any other -errno means nothing was built
	 * (a file missing, a bad checksum, another CPU vendor: checked before the VM is
	 * made), and the process is as fresh as before: another load, or a boot, may
	 * follow. */
	int (*snapshot_load)(void *opaque, const struct snapshot_load_config *request,
			     struct vmm_config *restored, char *err, size_t err_size);
};

/* Firecracker's texts for the snapshot requests refused by state (tests match them). */
#define API_MSG_CREATE_RUNNING                                                                     \
	"Create snapshot error: Cannot save the microVM state: Operation not allowed: "            \
	"save/restore unavailable while running"
#define API_MSG_LOAD_AFTER_CONFIG                                                                  \
	"Load snapshot error: Loading a microVM snapshot not allowed after configuring "           \
	"boot-specific resources."
/* wisp's own (Firecracker ends the process instead). */
#define API_MSG_LOAD_FAILED                                                                        \
	"Load snapshot error: a snapshot load already failed in this process, which may hold "     \
	"part of that VM: start a new wisp process to load or boot a VM."

struct api_state {
	struct vmm_config config;
	enum api_vm_state vm_state;
	/* A boot-specific resource was configured through the API (a successful PUT
	 * /boot-source, /drives, /network-interfaces, PUT or PATCH /machine-config): PUT
	 * /snapshot/load is refused from then on (API_MSG_LOAD_AFTER_CONFIG). The logger,
	 * metrics and serial output do not count, as in Firecracker. */
	bool boot_configured;
	/* ops->snapshot_load failed with -ENOTRECOVERABLE (part of a VM is left behind): no
	 * further load, InstanceStart or boot configuration (API_MSG_LOAD_FAILED). A load
	 * the API refused itself (body, state) or that failed before anything was built
	 * leaves this false and the process fresh. */
	bool load_failed;
	const char *version;
	const struct api_vmm_ops *ops;
	void *opaque;
};

struct api_reply {
	int status;	  /* 200, 204 or 400 */
	char *body;	  /* JSON text (malloc'd), or NULL for 204 */
	bool lost_memory; /* the reply could not be built (500) */
};

/* The state keeps its own copy of config (the instance id included): the caller may free
 * its configuration afterwards. */
void api_state_init(struct api_state *state, const struct vmm_config *config, const char *version,
		    const struct api_vmm_ops *ops, void *opaque);
/* The VM was loaded from a snapshot (PUT /snapshot/load, or --restore before the API
 * started): the API's configuration becomes `restored`, except the process's own
 * settings (logger, metrics_path, serial_out_path, process), which stay the API's; the
 * VM is running or paused. From then on it is an ordinary started VM: PATCH /vm,
 * PATCH drives and interfaces, GET /vm/config and snapshot/create work as after
 * InstanceStart. */
void api_state_restored(struct api_state *state, const struct vmm_config *restored, bool running);
/* Handles one request. body may be NULL (no body). reply->body is the caller's to free. */
void api_handle(struct api_state *state, enum http_method method, const char *path,
		const char *body, size_t body_len, struct api_reply *reply);
/* {"fault_message": message} as a reply (status 400), for errors found before api_handle
 * (malformed HTTP, too large a body). */
void api_fault(struct api_reply *reply, int status, const char *message);

#endif
