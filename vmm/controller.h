/*
 * The VMM thread's top level: one configuration, three front doors (command line,
 * --config-file, API). Boots the VM at once when the configuration names a kernel, else
 * serves the API until InstanceStart; then runs the VM's event loop with the API's
 * requests in it.
 */
#ifndef WISP_CONTROLLER_H
#define WISP_CONTROLLER_H

#include "../api/api.h"
#include "../api/server.h"
#include "config.h"
#include "vm.h"

#include <stdbool.h>

struct controller {
	struct vm vm;
	bool vm_created;
	enum failure_origin boot_failure; /* where the last failed boot's failure came from */
	struct api_server *server;
	struct api_state api;
	const char *version;
	int metrics_timer_fd;	 /* -1 until PUT /metrics */
	struct event_loop *loop; /* the loop running now, before or after InstanceStart */
};

/* Exit statuses, as documented in --help. */
enum { EXIT_GUEST_DONE = 0, EXIT_VMM_FAILURE = 1, EXIT_BAD_INPUT = 2 };

/* The exit status of a failure that came from `origin`. */
static inline int controller_exit_status(enum failure_origin origin)
{
	return origin == FAILURE_BAD_INPUT ? EXIT_BAD_INPUT : EXIT_VMM_FAILURE;
}

/* Reads and applies --config-file on top of config; -EINVAL etc. with err set, and
 * *origin blamed unless wisp ran out of memory. */
int controller_load_config_file(const char *path, struct vmm_config *config, char *err,
				size_t err_size, enum failure_origin *origin);
/* Sets up the logger and metrics of --config-file and the API server if config asks for
 * them; a path that cannot be used blames the input in *origin. Logs what failed. */
int controller_init(struct controller *ctl, const struct vmm_config *config, const char *version,
		    enum failure_origin *origin);
/* Boots (now, or when the API says InstanceStart) and runs the VM; returns wisp's exit
 * status. */
int controller_run(struct controller *ctl);

#endif
