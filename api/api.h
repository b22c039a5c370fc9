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
	/* PUT /snapshot/create on a paused VM (the API checked the state): writes both files;
	 * the VM stays paused. */
	int (*snapshot_create)(void *opaque, const struct snapshot_create_config *request,
			       char *err, size_t err_size);
	/* PUT /snapshot/load on a fresh process (the API checked that nothing was configured
	 * but the logger and metrics): on success *restored is the restored VM's
	 * configuration (what GET /vm/config shows from then on) and the VM is paused, or
	 * running when request->resume_vm. */
	int (*snapshot_load)(void *opaque, const struct snapshot_load_config *request,
			     struct vmm_config *restored, char *err, size_t err_size);
};

struct api_state {
	struct vmm_config config;
	enum api_vm_state vm_state;
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
/* Handles one request. body may be NULL (no body). reply->body is the caller's to free. */
void api_handle(struct api_state *state, enum http_method method, const char *path,
		const char *body, size_t body_len, struct api_reply *reply);
/* {"fault_message": message} as a reply (status 400), for errors found before api_handle
 * (malformed HTTP, too large a body). */
void api_fault(struct api_reply *reply, int status, const char *message);

#endif
