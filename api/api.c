#include "api.h"

#include "../vmm/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Firecracker's texts, which clients may match on. */
#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_AFTER_START	 "The requested operation is not supported after starting the microVM."

struct fixed_route {
	const char *path;
	enum api_endpoint endpoint;
	unsigned int methods; /* 1 << enum http_method */
};

#define GET   (1u << HTTP_GET)
#define PUT   (1u << HTTP_PUT)
#define PATCH (1u << HTTP_PATCH)

static const struct fixed_route fixed_routes[] = {
    {"/", API_INSTANCE_INFO, GET},
    {"/version", API_VERSION, GET},
    {"/vm/config", API_VM_CONFIG, GET},
    {"/machine-config", API_MACHINE_CONFIG, GET | PUT | PATCH},
    {"/boot-source", API_BOOT_SOURCE, PUT},
    {"/actions", API_ACTIONS, PUT},
    {"/vm", API_VM, PATCH},
    {"/logger", API_LOGGER, PUT},
    {"/metrics", API_METRICS, PUT},
    {"/serial", API_SERIAL, PUT},
    {"/snapshot/create", API_SNAPSHOT_CREATE, PUT},
    {"/snapshot/load", API_SNAPSHOT_LOAD, PUT},
};

/* Firecracker resources that later issues bring (the balloon) or that wisp leaves out; a
 * Firecracker client gets a clear 400 for them. */
static const char *const not_yet_prefixes[] = {
    "/balloon", "/mmds", "/vsock", "/entropy", "/cpu-config", "/hotplug/", "/pmem/",
};

static int route_with_id(const char *path, const char *prefix, const char **id)
{
	size_t len = strlen(prefix);

	if (strncmp(path, prefix, len) || !path[len] || strchr(path + len, '/'))
		return 0;
	*id = path + len;
	return 1;
}

int api_route(enum http_method method, const char *path, struct api_route *route, char *err,
	      size_t err_size)
{
	const char *id = NULL;
	unsigned int methods = 0;

	memset(route, 0, sizeof(*route));
	for (size_t i = 0; i < sizeof(fixed_routes) / sizeof(fixed_routes[0]); i++)
		if (!strcmp(path, fixed_routes[i].path)) {
			route->endpoint = fixed_routes[i].endpoint;
			methods = fixed_routes[i].methods;
		}
	if (!methods && route_with_id(path, "/drives/", &id)) {
		route->endpoint = API_DRIVES;
		methods = PUT | PATCH;
	} else if (!methods && route_with_id(path, "/network-interfaces/", &id)) {
		route->endpoint = API_NETWORK_INTERFACES;
		methods = PUT | PATCH;
	}
	if (!methods)
		for (size_t i = 0; i < sizeof(not_yet_prefixes) / sizeof(not_yet_prefixes[0]);
		     i++) {
			size_t len = strlen(not_yet_prefixes[i]);
			if (!strncmp(path, not_yet_prefixes[i], len) &&
			    (!path[len] || path[len] == '/' ||
			     not_yet_prefixes[i][len - 1] == '/')) {
				route->endpoint = API_NOT_YET;
				route->resource = not_yet_prefixes[i];
				return 0;
			}
		}
	if (!(methods & (1u << method))) {
		snprintf(err, err_size, "Invalid request method and/or path: %s %s.",
			 http_method_name(method), path);
		return -ENOENT;
	}
	if (id)
		snprintf(route->id, sizeof(route->id), "%s", id);
	return 0;
}

void api_state_init(struct api_state *state, const struct vmm_config *config, const char *version,
		    const struct api_vmm_ops *ops, void *opaque)
{
	memset(state, 0, sizeof(*state));
	state->config = *config;
	state->version = version;
	state->ops = ops;
	state->opaque = opaque;
}

void api_state_restored(struct api_state *state, const struct vmm_config *restored, bool running)
{
	struct vmm_config *config = &state->config;
	struct logger_config logger = config->logger;
	struct process_config process = config->process;
	char metrics_path[sizeof(config->metrics_path)];
	char serial_out_path[sizeof(config->serial_out_path)];

	memcpy(metrics_path, config->metrics_path, sizeof(metrics_path));
	memcpy(serial_out_path, config->serial_out_path, sizeof(serial_out_path));
	*config = *restored;
	config->logger = logger;
	config->process = process;
	memcpy(config->metrics_path, metrics_path, sizeof(metrics_path));
	memcpy(config->serial_out_path, serial_out_path, sizeof(serial_out_path));
	/* The configuration now describes the VM; the request that made it is done. */
	config->has_restore = false;
	memset(&config->restore, 0, sizeof(config->restore));
	state->vm_state = running ? API_VM_RUNNING : API_VM_PAUSED;
}

static void reply_json(struct api_reply *reply, int status, json_t *body)
{
	reply->status = status;
	reply->body = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (!reply->body) {
		reply->status = 500;
		reply->lost_memory = true;
	}
	json_decref(body);
}

void api_fault(struct api_reply *reply, int status, const char *message)
{
	reply_json(reply, status, json_pack("{s:s}", "fault_message", message));
}

static void reply_done(struct api_reply *reply)
{
	reply->status = 204;
	reply->body = NULL;
}

static const char *state_name(enum api_vm_state state)
{
	return state == API_VM_RUNNING	? "Running"
	       : state == API_VM_PAUSED ? "Paused"
					: "Not started";
}

static void handle_get(struct api_state *state, enum api_endpoint endpoint, struct api_reply *reply)
{
	switch (endpoint) {
	case API_INSTANCE_INFO:
		reply_json(reply, 200,
			   json_pack("{s:s,s:s,s:s,s:s}", "id", state->config.process.id, "state",
				     state_name(state->vm_state), "vmm_version", state->version,
				     "app_name", "wisp"));
		return;
	case API_VERSION:
		reply_json(reply, 200, json_pack("{s:s}", "firecracker_version", state->version));
		return;
	case API_VM_CONFIG:
		reply_json(reply, 200, fc_vm_config_json(&state->config));
		return;
	default:
		reply_json(reply, 200, fc_machine_config_json(&state->config));
		return;
	}
}

static int handle_action(struct api_state *state, const json_t *body, char *err, size_t err_size)
{
	enum fc_action action;
	int ret = fc_action_parse(body, &action, err, err_size);

	if (ret)
		return ret;
	switch (action) {
	case FC_ACTION_INSTANCE_START:
		if (state->vm_state != API_VM_NOT_STARTED) {
			snprintf(err, err_size, MSG_AFTER_START);
			return -EINVAL;
		}
		if (state->load_failed) {
			snprintf(err, err_size, API_MSG_LOAD_FAILED);
			return -EINVAL;
		}
		if (!*state->config.kernel_path) {
			snprintf(err, err_size,
				 "Cannot start microvm without kernel configuration: "
				 "PUT /boot-source first.");
			return -EINVAL;
		}
		ret = state->ops->start(state->opaque, &state->config, err, err_size);
		if (!ret)
			state->vm_state = API_VM_RUNNING;
		return ret;
	case FC_ACTION_SEND_CTRL_ALT_DEL:
		if (state->vm_state == API_VM_NOT_STARTED) {
			snprintf(err, err_size, MSG_BEFORE_START);
			return -EINVAL;
		}
		return state->ops->send_ctrl_alt_del(state->opaque, err, err_size);
	case FC_ACTION_FLUSH_METRICS:
	default:
		return state->ops->flush_metrics(state->opaque, err, err_size);
	}
}

static int handle_vm_state(struct api_state *state, const json_t *body, char *err, size_t err_size)
{
	enum fc_vm_state wanted;
	int ret = fc_vm_patch(body, &wanted, err, err_size);

	if (ret)
		return ret;
	/* Firecracker's latencies_us.pause_vm and resume_vm: the request, on success. */
	uint64_t start_us = metrics_monotonic_us();

	if (wanted == FC_VM_PAUSED) {
		ret = state->ops->pause(state->opaque, err, err_size);
		if (!ret) {
			state->vm_state = API_VM_PAUSED;
			metrics_store_elapsed_us(&metrics.latencies_us.pause_vm, start_us);
		}
	} else {
		ret = state->ops->resume(state->opaque, err, err_size);
		if (!ret) {
			state->vm_state = API_VM_RUNNING;
			metrics_store_elapsed_us(&metrics.latencies_us.resume_vm, start_us);
		}
	}
	return ret;
}

static struct drive_config *find_drive(struct vmm_config *config, const char *id)
{
	for (unsigned int i = 0; i < config->nr_drives; i++)
		if (!strcmp(config->drives[i].id, id))
			return &config->drives[i];
	return NULL;
}

static struct net_config *find_net(struct vmm_config *config, const char *id)
{
	for (unsigned int i = 0; i < config->nr_nets; i++)
		if (!strcmp(config->nets[i].id, id))
			return &config->nets[i];
	return NULL;
}

/* The PATCH merged into the configuration's limiters goes to the VM, and into the
 * configuration once the VM took it. */
static int handle_patch_drive(struct api_state *state, const json_t *body, const char *id,
			      char *err, size_t err_size)
{
	struct rate_limiter_config limiter;
	struct fc_drive_patch patch;
	struct drive_config *drive;
	int ret = fc_drive_patch(body, id, &patch, err, err_size);

	if (ret)
		return ret;
	drive = find_drive(&state->config, patch.id);
	if (!drive) {
		snprintf(err, err_size, "drive '%s' does not exist", patch.id);
		return -ENOENT;
	}
	limiter = drive->rate_limiter;
	fc_rate_limiter_patch_apply(&patch.rate_limiter, &limiter);
	ret = state->ops->patch_drive(state->opaque, patch.id, patch.has_path ? patch.path : NULL,
				      &limiter, err, err_size);
	if (ret)
		return ret;
	if (patch.has_path)
		memcpy(drive->path, patch.path, sizeof(drive->path));
	drive->rate_limiter = limiter;
	return 0;
}

static int handle_patch_net(struct api_state *state, const json_t *body, const char *id, char *err,
			    size_t err_size)
{
	struct rate_limiter_config rx, tx;
	struct fc_net_patch patch;
	struct net_config *net;
	int ret = fc_net_patch(body, id, &patch, err, err_size);

	if (ret)
		return ret;
	net = find_net(&state->config, patch.id);
	if (!net) {
		snprintf(err, err_size, "network interface '%s' does not exist", patch.id);
		return -ENOENT;
	}
	rx = net->rx_rate_limiter;
	tx = net->tx_rate_limiter;
	fc_rate_limiter_patch_apply(&patch.rx, &rx);
	fc_rate_limiter_patch_apply(&patch.tx, &tx);
	ret = state->ops->patch_net(state->opaque, patch.id, &rx, &tx, err, err_size);
	if (ret)
		return ret;
	net->rx_rate_limiter = rx;
	net->tx_rate_limiter = tx;
	return 0;
}

/* Firecracker's texts (VmmActionError around BootSourceConfigError and DriveError), with
 * Rust's io::Error display: "<strerror> (os error N)". */
static int check_boot_files(struct api_state *state, const struct vmm_config *config, char *err,
			    size_t err_size)
{
	int ret = state->ops->open_check(state->opaque, config->kernel_path, O_RDONLY);

	if (ret) {
		snprintf(err, err_size,
			 "Boot source error: The kernel file cannot be opened: %s (os error %d)",
			 strerror(-ret), -ret);
		return ret;
	}
	if (!*config->initrd_path)
		return 0;
	ret = state->ops->open_check(state->opaque, config->initrd_path, O_RDONLY);
	if (ret)
		snprintf(err, err_size,
			 "Boot source error: The initrd file cannot be opened due to invalid path "
			 "or invalid permissions. %s (os error %d)",
			 strerror(-ret), -ret);
	return ret;
}

static int check_drive_file(struct api_state *state, const struct drive_config *drive, char *err,
			    size_t err_size)
{
	int ret = state->ops->open_check(state->opaque, drive->path,
					 drive->read_only ? O_RDONLY : O_RDWR);

	if (ret)
		snprintf(
		    err, err_size,
		    "Drive config error: Unable to create the virtio block device: Virtio "
		    "backend error: Error manipulating the backing file: %s (os error %d) %.300s",
		    strerror(-ret), -ret, drive->path);
	return ret;
}

/* PUT /boot-source and PUT /drives/{id}: the body is applied to a copy of the
 * configuration, the files it names are opened, and only then does the copy replace the
 * configuration, so that a request refused for its files changes nothing (a drive with
 * a missing image must not hold the root place, say). */
static int put_with_files(struct api_state *state, const struct api_route *route,
			  const json_t *body, char *err, size_t err_size)
{
	struct vmm_config *candidate = malloc(sizeof(*candidate));
	int ret;

	if (!candidate) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	*candidate = state->config;
	if (route->endpoint == API_BOOT_SOURCE) {
		ret = fc_boot_source_put(body, candidate, err, err_size);
		if (!ret)
			ret = check_boot_files(state, candidate, err, err_size);
	} else {
		ret = fc_drive_put(body, route->id, candidate, err, err_size);
		if (!ret)
			ret = check_drive_file(state, find_drive(candidate, route->id), err,
					       err_size);
	}
	if (!ret)
		state->config = *candidate;
	free(candidate);
	return ret;
}

/* PUT /snapshot/create: the body first, then the state, as in Firecracker (its API
 * thread parses, its VMM checks). */
static int handle_snapshot_create(struct api_state *state, const json_t *body, char *err,
				  size_t err_size)
{
	struct snapshot_create_config *request = malloc(sizeof(*request));
	int ret;

	if (!request) {
		snprintf(err, err_size, "out of memory");
		return -ENOMEM;
	}
	ret = fc_snapshot_create_parse(body, request, err, err_size);
	if (!ret && state->vm_state == API_VM_NOT_STARTED) {
		snprintf(err, err_size, MSG_BEFORE_START);
		ret = -EINVAL;
	} else if (!ret && state->vm_state == API_VM_RUNNING) {
		snprintf(err, err_size, API_MSG_CREATE_RUNNING);
		ret = -EINVAL;
	}
	if (!ret && !state->ops->snapshot_create) {
		snprintf(err, err_size, "/snapshot/create is not supported by this wisp build.");
		ret = -EOPNOTSUPP;
	}
	if (!ret)
		ret = state->ops->snapshot_create(state->opaque, request, err, err_size);
	free(request);
	return ret;
}

/* PUT /snapshot/load: only on a fresh process (no VM, no boot configuration, no failed
 * load before). */
static int handle_snapshot_load(struct api_state *state, const json_t *body, char *err,
				size_t err_size)
{
	struct snapshot_load_config *request = malloc(sizeof(*request));
	struct vmm_config *restored = malloc(sizeof(*restored));
	int ret = -ENOMEM;

	if (!request || !restored) {
		snprintf(err, err_size, "out of memory");
		goto out;
	}
	ret = fc_snapshot_load_parse(body, request, err, err_size);
	if (ret)
		goto out;
	ret = -EINVAL;
	if (state->vm_state != API_VM_NOT_STARTED)
		snprintf(err, err_size, MSG_AFTER_START);
	else if (state->load_failed)
		snprintf(err, err_size, API_MSG_LOAD_FAILED);
	else if (state->boot_configured)
		snprintf(err, err_size, API_MSG_LOAD_AFTER_CONFIG);
	else if (!state->ops->snapshot_load)
		snprintf(err, err_size, "/snapshot/load is not supported by this wisp build.");
	else
		ret = 0;
	if (ret)
		goto out;
	*restored = state->config;
	ret = state->ops->snapshot_load(state->opaque, request, restored, err, err_size);
	if (ret) {
		/* The op's word: only a failure that left part of a VM spends the process. */
		state->load_failed = ret == -ENOTRECOVERABLE;
		goto out;
	}
	api_state_restored(state, restored, request->resume_vm);
	state->config.track_dirty_pages = request->track_dirty_pages;
out:
	free(restored);
	free(request);
	return ret;
}

/* The requests that configure the VM to boot: they end the process's chance to load a
 * snapshot, and a failed load ends theirs. */
static bool configures_boot(enum api_endpoint endpoint)
{
	return endpoint == API_BOOT_SOURCE || endpoint == API_DRIVES ||
	       endpoint == API_NETWORK_INTERFACES || endpoint == API_MACHINE_CONFIG;
}

static int handle_put(struct api_state *state, const struct api_route *route, const json_t *body,
		      char *err, size_t err_size)
{
	bool started = state->vm_state != API_VM_NOT_STARTED;
	int ret;

	if (route->endpoint == API_ACTIONS)
		return handle_action(state, body, err, err_size);
	if (route->endpoint == API_SNAPSHOT_CREATE)
		return handle_snapshot_create(state, body, err, err_size);
	if (route->endpoint == API_SNAPSHOT_LOAD)
		return handle_snapshot_load(state, body, err, err_size);
	if (started) {
		snprintf(err, err_size, MSG_AFTER_START);
		return -EINVAL;
	}
	if (state->load_failed && configures_boot(route->endpoint)) {
		snprintf(err, err_size, API_MSG_LOAD_FAILED);
		return -EINVAL;
	}
	switch (route->endpoint) {
	case API_BOOT_SOURCE:
	case API_DRIVES:
		ret = put_with_files(state, route, body, err, err_size);
		state->boot_configured |= !ret;
		return ret;
	case API_MACHINE_CONFIG:
		ret = fc_machine_config_put(body, &state->config, err, err_size);
		state->boot_configured |= !ret;
		return ret;
	case API_NETWORK_INTERFACES:
		ret = fc_net_put(body, route->id, &state->config, err, err_size);
		state->boot_configured |= !ret;
		return ret;
	case API_SERIAL:
		return fc_serial_put(body, state->config.serial_out_path,
				     sizeof(state->config.serial_out_path), err, err_size);
	case API_LOGGER: {
		struct logger_config logger = state->config.logger;
		int ret = fc_logger_put(body, &logger, err, err_size);
		if (!ret)
			ret = state->ops->set_logger(state->opaque, &logger, err, err_size);
		if (!ret)
			state->config.logger = logger;
		return ret;
	}
	case API_METRICS: {
		char path[CONFIG_PATH_MAX];
		int ret = fc_metrics_put(body, path, sizeof(path), err, err_size);
		if (!ret && *state->config.metrics_path) {
			snprintf(err, err_size, "Reinitialization of metrics not allowed.");
			ret = -EINVAL;
		}
		if (!ret)
			ret = state->ops->set_metrics(state->opaque, path, err, err_size);
		if (!ret)
			memcpy(state->config.metrics_path, path, sizeof(path));
		return ret;
	}
	default:
		snprintf(err, err_size, "internal error: no PUT handler");
		return -EINVAL;
	}
}

static int handle_patch(struct api_state *state, const struct api_route *route, const json_t *body,
			char *err, size_t err_size)
{
	bool started = state->vm_state != API_VM_NOT_STARTED;

	if (route->endpoint == API_MACHINE_CONFIG) {
		int ret;

		if (started) {
			snprintf(err, err_size, MSG_AFTER_START);
			return -EINVAL;
		}
		if (state->load_failed) {
			snprintf(err, err_size, API_MSG_LOAD_FAILED);
			return -EINVAL;
		}
		ret = fc_machine_config_patch(body, &state->config, err, err_size);
		state->boot_configured |= !ret;
		return ret;
	}
	if (!started) {
		snprintf(err, err_size, MSG_BEFORE_START);
		return -EINVAL;
	}
	if (route->endpoint == API_VM)
		return handle_vm_state(state, body, err, err_size);
	if (route->endpoint == API_DRIVES)
		return handle_patch_drive(state, body, route->id, err, err_size);
	return handle_patch_net(state, body, route->id, err, err_size);
}

static void api_handle_request(struct api_state *state, enum http_method method, const char *path,
			       const char *body, size_t body_len, struct api_reply *reply,
			       struct api_route *matched)
{
	struct api_route route;
	char err[512] = "";
	json_error_t json_err;
	json_t *json;
	int ret;

	memset(reply, 0, sizeof(*reply));
	matched->endpoint = API_NOT_YET;
	if (api_route(method, path, &route, err, sizeof(err))) {
		api_fault(reply, 400, err);
		return;
	}
	*matched = route;
	if (route.endpoint == API_NOT_YET) {
		snprintf(err, sizeof(err), "%s is not supported by wisp yet.", route.resource);
		api_fault(reply, 400, err);
		return;
	}
	if (strlen(route.id) >= CONFIG_ID_MAX) {
		snprintf(err, sizeof(err), "the id in the path is longer than %d characters",
			 CONFIG_ID_MAX - 1);
		api_fault(reply, 400, err);
		return;
	}
	if (method == HTTP_GET) {
		handle_get(state, route.endpoint, reply);
		return;
	}
	if (!body || !body_len) {
		api_fault(reply, 400, "Empty request body: this request needs a JSON body.");
		return;
	}
	json = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &json_err);
	if (!json) {
		snprintf(err, sizeof(err),
			 "An error occurred when deserializing the json body of a request: %s at "
			 "line %d column %d.",
			 json_err.text, json_err.line, json_err.column);
		api_fault(reply, 400, err);
		return;
	}
	ret = method == HTTP_PUT ? handle_put(state, &route, json, err, sizeof(err))
				 : handle_patch(state, &route, json, err, sizeof(err));
	json_decref(json);
	if (ret) {
		api_fault(reply, 400, err);
		return;
	}
	reply_done(reply);
}

/* Firecracker's per-endpoint request counters: a count, and fails for PUT and PATCH. */
static void count_request(enum http_method method, enum api_endpoint endpoint, bool failed)
{
	metrics_counter_t *count = NULL, *fails = NULL;

	if (method == HTTP_GET) {
		if (endpoint == API_INSTANCE_INFO)
			metrics_inc(&metrics.api.get.instance_info_count);
		else if (endpoint == API_VERSION)
			metrics_inc(&metrics.api.get.vmm_version_count);
		else if (endpoint == API_MACHINE_CONFIG)
			metrics_inc(&metrics.api.get.machine_cfg_count);
		return;
	}
#define COUNTERS(kind, name)                                                                       \
	(count = &metrics.api.kind.name##_count, fails = &metrics.api.kind.name##_fails)
	if (method == HTTP_PUT) {
		switch (endpoint) {
		case API_ACTIONS:
			COUNTERS(put, actions);
			break;
		case API_BOOT_SOURCE:
			COUNTERS(put, boot_source);
			break;
		case API_DRIVES:
			COUNTERS(put, drive);
			break;
		case API_LOGGER:
			COUNTERS(put, logger);
			break;
		case API_MACHINE_CONFIG:
			COUNTERS(put, machine_cfg);
			break;
		case API_METRICS:
			COUNTERS(put, metrics);
			break;
		case API_NETWORK_INTERFACES:
			COUNTERS(put, network);
			break;
		case API_SERIAL:
			COUNTERS(put, serial);
			break;
		default:
			break;
		}
	} else {
		switch (endpoint) {
		case API_DRIVES:
			COUNTERS(patch, drive);
			break;
		case API_NETWORK_INTERFACES:
			COUNTERS(patch, network);
			break;
		case API_MACHINE_CONFIG:
			COUNTERS(patch, machine_cfg);
			break;
		default:
			break;
		}
	}
#undef COUNTERS
	if (count)
		metrics_inc(count);
	if (fails && failed)
		metrics_inc(fails);
}

void api_handle(struct api_state *state, enum http_method method, const char *path,
		const char *body, size_t body_len, struct api_reply *reply)
{
	struct api_route route;

	api_handle_request(state, method, path, body, body_len, reply, &route);
	count_request(method, route.endpoint, reply->status >= 400);
}
