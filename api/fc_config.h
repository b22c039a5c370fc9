/*
 * Firecracker's JSON bodies <-> wisp's configuration (vmm/config.h), for the API and for
 * --config-file. Pure: no I/O, no VM; every function that takes a body checks it fully
 * (unknown fields, types, ranges, values wisp cannot honour) and fills `err` with a
 * message naming the field and the problem, the text of Firecracker's fault_message.
 *
 * The field tables behind the checks are also what fc_api_schema() reports, so the
 * contract check against Firecracker's swagger sees exactly what is accepted.
 */
#ifndef WISP_FC_CONFIG_H
#define WISP_FC_CONFIG_H

#include "../vmm/config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum fc_action { FC_ACTION_INSTANCE_START, FC_ACTION_SEND_CTRL_ALT_DEL, FC_ACTION_FLUSH_METRICS };
enum fc_vm_state { FC_VM_PAUSED, FC_VM_RESUMED };

/* Room for any message the functions below write. */
#define FC_ERROR_MAX 512

/* A rate limiter in a PATCH. As in Firecracker, each bucket changes only if the PATCH
 * gives it: {"bandwidth": {...}} leaves ops as it was, and a bucket given with size 0 or
 * refill_time 0 turns that limit off. */
struct fc_rate_limiter_patch {
	bool has_bandwidth;
	struct token_bucket_config bandwidth;
	bool has_ops;
	struct token_bucket_config ops;
};

/* PATCH /drives/{id}: what changes on a running VM. */
struct fc_drive_patch {
	char id[CONFIG_ID_MAX];
	bool has_path;
	char path[CONFIG_PATH_MAX];
	struct fc_rate_limiter_patch rate_limiter;
};

/* PATCH /network-interfaces/{id} */
struct fc_net_patch {
	char id[CONFIG_ID_MAX];
	struct fc_rate_limiter_patch rx;
	struct fc_rate_limiter_patch tx;
};

/* Applies the buckets the PATCH gave to `limiter`. */
void fc_rate_limiter_patch_apply(const struct fc_rate_limiter_patch *patch,
				 struct rate_limiter_config *limiter);

/* Each returns 0, or -EINVAL with err set. `body` is the parsed request body (an object;
 * anything else is an error). `path_id` is the {id} from the URL where there is one (NULL:
 * no path to match the body's id against). On error the configuration (or patch, logger,
 * path) is left exactly as it was. */
int fc_boot_source_put(const json_t *body, struct vmm_config *config, char *err, size_t err_size);
int fc_machine_config_put(const json_t *body, struct vmm_config *config, char *err,
			  size_t err_size);
int fc_machine_config_patch(const json_t *body, struct vmm_config *config, char *err,
			    size_t err_size);
/* Adds the drive, or replaces the one with the same id. */
int fc_drive_put(const json_t *body, const char *path_id, struct vmm_config *config, char *err,
		 size_t err_size);
int fc_drive_patch(const json_t *body, const char *path_id, struct fc_drive_patch *patch, char *err,
		   size_t err_size);
int fc_net_put(const json_t *body, const char *path_id, struct vmm_config *config, char *err,
	       size_t err_size);
int fc_net_patch(const json_t *body, const char *path_id, struct fc_net_patch *patch, char *err,
		 size_t err_size);
/* *logger holds the current settings (initialise it): as in Firecracker, log_path,
 * show_level and show_log_origin keep their value when the body leaves them out, and the
 * level goes back to Info (has_level is always set). "module" is refused. */
int fc_logger_put(const json_t *body, struct logger_config *logger, char *err, size_t err_size);
int fc_metrics_put(const json_t *body, char *metrics_path, size_t path_size, char *err,
		   size_t err_size);
/* Without serial_out_path, out_path becomes "" (back to stdout), as a PUT replaces. */
int fc_serial_put(const json_t *body, char *out_path, size_t path_size, char *err, size_t err_size);
int fc_action_parse(const json_t *body, enum fc_action *action, char *err, size_t err_size);
int fc_vm_patch(const json_t *body, enum fc_vm_state *state, char *err, size_t err_size);

/* PUT /snapshot/create: snapshot_type (Full unless given), snapshot_path, mem_file_path
 * (two different, non-empty paths). */
int fc_snapshot_create_parse(const json_t *body, struct snapshot_create_config *request, char *err,
			     size_t err_size);
/* PUT /snapshot/load, with Firecracker's rules: exactly one of mem_backend and the
 * deprecated mem_file_path (a File backend), the deprecated enable_diff_snapshots is
 * track_dirty_pages, network_overrides each name a different interface and TAP (at most
 * CONFIG_MAX_NETS, host_dev_name at most 15 characters). Refused as values wisp cannot
 * honour: huge_pages "2M" (no hugetlbfs) and a vsock_override (no vsock device). */
int fc_snapshot_load_parse(const json_t *body, struct snapshot_load_config *request, char *err,
			   size_t err_size);

/* Replies (new references; NULL only on allocation failure). */
json_t *fc_machine_config_json(const struct vmm_config *config);
/* GET /vm/config: Firecracker's FullVmConfiguration. */
json_t *fc_vm_config_json(const struct vmm_config *config);

/* --config-file: the same JSON Firecracker takes ("boot-source", "drives",
 * "machine-config", "network-interfaces", "logger", "metrics", ...), applied on top of
 * `config` (which holds the defaults). err names the key, e.g. "drives[1].path_on_host:
 * must be a string". */
int fc_config_file_parse(const char *text, size_t len, struct vmm_config *config, char *err,
			 size_t err_size);

/* The machine configuration a snapshot saves: GET /vm/config's JSON (fc_vm_config_json)
 * plus wisp's own section for what that cannot show, "wisp": {"direct_drives": [ids]}
 * (the drives opened with O_DIRECT, a command-line option). */
json_t *fc_snapshot_config_json(const struct vmm_config *config);
/* Reads that text (or plain GET /vm/config JSON, without the wisp section) back into
 * `config`, on top of the defaults, so that fc_snapshot_config_json(parsed) is the saved
 * text again, field for field. Drives come in the order the text lists them (the root
 * drive first, the order vm.c attaches them in). Not in the text, so not restored by
 * it: the logger, metrics, serial output and process settings (the restoring process's
 * own). On error (err names the key, after "the snapshot's VM configuration: ") *config
 * is unchanged. */
int fc_vm_config_parse(const char *json, size_t len, struct vmm_config *config, char *err,
		       size_t err_size);

/* What wisp accepts, for the contract check (tests/api_contract.py):
 *   {"paths": {"/": {"get": {"body": null}},
 *              "/drives/{drive_id}": {"put": {"body": FIELDS}, "patch": {...}}, ...}}
 * where FIELDS is {"name": null | FIELDS (a nested object's fields)}. */
json_t *fc_api_schema(void);

#endif
