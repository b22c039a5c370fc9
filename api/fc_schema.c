/*
 * Firecracker's request bodies as field tables: the fields of each swagger definition, in
 * the order of Firecracker's own structs. `nullable` marks the fields Firecracker
 * deserialises as Option<T>, which take null as "not given" (GET /vm/config writes null
 * for them, so its output can be fed back as a config file).
 */
#include "fc_balloon.h"
#include "fc_bodies.h"

#define END                                                                                        \
	{                                                                                          \
		NULL, 0, false, false, NULL                                                        \
	}

static const struct body_field token_bucket_fields[] = {
    {"size", FIELD_UINT, true, false, NULL},
    {"one_time_burst", FIELD_UINT, false, true, NULL},
    {"refill_time", FIELD_UINT, true, false, NULL},
    END,
};
static const struct body_spec token_bucket_body = {"the token bucket", token_bucket_fields};

static const struct body_field rate_limiter_fields[] = {
    {"bandwidth", FIELD_OBJECT, false, true, &token_bucket_body},
    {"ops", FIELD_OBJECT, false, true, &token_bucket_body},
    END,
};
static const struct body_spec rate_limiter_body = {"the rate limiter", rate_limiter_fields};

static const struct body_field boot_source_fields[] = {
    {"kernel_image_path", FIELD_STRING, true, false, NULL},
    {"initrd_path", FIELD_STRING, false, true, NULL},
    {"boot_args", FIELD_STRING, false, true, NULL},
    END,
};
const struct body_spec fc_boot_source_body = {"the boot-source body", boot_source_fields};

static const struct body_field machine_config_put_fields[] = {
    {"vcpu_count", FIELD_UINT, true, false, NULL},
    {"mem_size_mib", FIELD_UINT, true, false, NULL},
    {"smt", FIELD_BOOL, false, false, NULL},
    {"cpu_template", FIELD_STRING, false, true, NULL},
    {"track_dirty_pages", FIELD_BOOL, false, false, NULL},
    {"huge_pages", FIELD_STRING, false, false, NULL},
    END,
};
const struct body_spec fc_machine_config_put_body = {"the machine-config body",
						     machine_config_put_fields};

/* PATCH: the same fields, every one optional (Firecracker's MachineConfigUpdate). */
static const struct body_field machine_config_patch_fields[] = {
    {"vcpu_count", FIELD_UINT, false, true, NULL},
    {"mem_size_mib", FIELD_UINT, false, true, NULL},
    {"smt", FIELD_BOOL, false, true, NULL},
    {"cpu_template", FIELD_STRING, false, true, NULL},
    {"track_dirty_pages", FIELD_BOOL, false, true, NULL},
    {"huge_pages", FIELD_STRING, false, true, NULL},
    END,
};
const struct body_spec fc_machine_config_patch_body = {"the machine-config body",
						       machine_config_patch_fields};

static const struct body_field drive_fields[] = {
    {"drive_id", FIELD_STRING, true, false, NULL},
    {"partuuid", FIELD_STRING, false, true, NULL},
    {"is_root_device", FIELD_BOOL, true, false, NULL},
    {"cache_type", FIELD_STRING, false, false, NULL},
    {"is_read_only", FIELD_BOOL, false, true, NULL},
    {"path_on_host", FIELD_STRING, false, true, NULL},
    {"rate_limiter", FIELD_OBJECT, false, true, &rate_limiter_body},
    {"io_engine", FIELD_STRING, false, true, NULL},
    {"socket", FIELD_STRING, false, true, NULL},
    END,
};
const struct body_spec fc_drive_body = {"the drive body", drive_fields};

static const struct body_field drive_patch_fields[] = {
    {"drive_id", FIELD_STRING, true, false, NULL},
    {"path_on_host", FIELD_STRING, false, true, NULL},
    {"rate_limiter", FIELD_OBJECT, false, true, &rate_limiter_body},
    END,
};
const struct body_spec fc_drive_patch_body = {"the drive body", drive_patch_fields};

static const struct body_field net_fields[] = {
    {"iface_id", FIELD_STRING, true, false, NULL},
    {"host_dev_name", FIELD_STRING, true, false, NULL},
    {"guest_mac", FIELD_STRING, false, true, NULL},
    {"mtu", FIELD_UINT, false, true, NULL},
    {"rx_rate_limiter", FIELD_OBJECT, false, true, &rate_limiter_body},
    {"tx_rate_limiter", FIELD_OBJECT, false, true, &rate_limiter_body},
    END,
};
const struct body_spec fc_net_body = {"the network-interface body", net_fields};

static const struct body_field net_patch_fields[] = {
    {"iface_id", FIELD_STRING, true, false, NULL},
    {"rx_rate_limiter", FIELD_OBJECT, false, true, &rate_limiter_body},
    {"tx_rate_limiter", FIELD_OBJECT, false, true, &rate_limiter_body},
    END,
};
const struct body_spec fc_net_patch_body = {"the network-interface body", net_patch_fields};

static const struct body_field logger_fields[] = {
    {"log_path", FIELD_STRING, false, true, NULL},
    {"level", FIELD_STRING, false, true, NULL},
    {"show_level", FIELD_BOOL, false, true, NULL},
    {"show_log_origin", FIELD_BOOL, false, true, NULL},
    {"module", FIELD_STRING, false, true, NULL},
    END,
};
const struct body_spec fc_logger_body = {"the logger body", logger_fields};

static const struct body_field metrics_fields[] = {
    {"metrics_path", FIELD_STRING, true, false, NULL},
    {"emit_id", FIELD_BOOL, false, false, NULL},
    {"properties", FIELD_STRING_MAP, false, true, NULL},
    END,
};
const struct body_spec fc_metrics_body = {"the metrics body", metrics_fields};

static const struct body_field serial_fields[] = {
    {"serial_out_path", FIELD_STRING, false, true, NULL},
    {"rate_limiter", FIELD_OBJECT, false, true, &token_bucket_body},
    END,
};
const struct body_spec fc_serial_body = {"the serial body", serial_fields};

static const struct body_field action_fields[] = {
    {"action_type", FIELD_STRING, true, false, NULL},
    END,
};
const struct body_spec fc_action_body = {"the actions body", action_fields};

static const struct body_field vm_fields[] = {
    {"state", FIELD_STRING, true, false, NULL},
    END,
};
const struct body_spec fc_vm_body = {"the vm body", vm_fields};

/* Firecracker's CreateSnapshotParams: snapshot_type defaults to Full (serde's default, so
 * null is refused). */
static const struct body_field snapshot_create_fields[] = {
    {"snapshot_type", FIELD_STRING, false, false, NULL},
    {"snapshot_path", FIELD_STRING, true, false, NULL},
    {"mem_file_path", FIELD_STRING, true, false, NULL},
    END,
};
const struct body_spec fc_snapshot_create_body = {"the snapshot create body",
						  snapshot_create_fields};

static const struct body_field mem_backend_fields[] = {
    {"backend_path", FIELD_STRING, true, false, NULL},
    {"backend_type", FIELD_STRING, true, false, NULL},
    END,
};
static const struct body_spec mem_backend_body = {"the mem_backend body", mem_backend_fields};

static const struct body_field vsock_override_fields[] = {
    {"uds_path", FIELD_STRING, true, false, NULL},
    END,
};
static const struct body_spec vsock_override_body = {"the vsock_override body",
						     vsock_override_fields};

/* An element of network_overrides (checked by the load parser). */
static const struct body_field net_override_fields[] = {
    {"iface_id", FIELD_STRING, true, false, NULL},
    {"host_dev_name", FIELD_STRING, true, false, NULL},
    END,
};
const struct body_spec fc_net_override_body = {"the network override", net_override_fields};

/* Firecracker's LoadSnapshotConfig: the Option<T> fields take null, the serde defaults
 * (booleans, the list, huge_pages) do not. */
static const struct body_field snapshot_load_fields[] = {
    {"snapshot_path", FIELD_STRING, true, false, NULL},
    {"mem_file_path", FIELD_STRING, false, true, NULL},
    {"mem_backend", FIELD_OBJECT, false, true, &mem_backend_body},
    {"enable_diff_snapshots", FIELD_BOOL, false, false, NULL},
    {"track_dirty_pages", FIELD_BOOL, false, false, NULL},
    {"resume_vm", FIELD_BOOL, false, false, NULL},
    {"network_overrides", FIELD_ARRAY, false, false, NULL},
    {"vsock_override", FIELD_OBJECT, false, true, &vsock_override_body},
    {"clock_realtime", FIELD_BOOL, false, false, NULL},
    {"huge_pages", FIELD_STRING, false, false, NULL},
    END,
};
const struct body_spec fc_snapshot_load_body = {"the snapshot load body", snapshot_load_fields};

/* Firecracker's BalloonDeviceConfig: serde defaults, so null is refused. */
static const struct body_field balloon_fields[] = {
    {"amount_mib", FIELD_UINT, true, false, NULL},
    {"deflate_on_oom", FIELD_BOOL, true, false, NULL},
    {"stats_polling_interval_s", FIELD_UINT, false, false, NULL},
    {"free_page_hinting", FIELD_BOOL, false, false, NULL},
    {"free_page_reporting", FIELD_BOOL, false, false, NULL},
    END,
};
const struct body_spec fc_balloon_body = {"the balloon body", balloon_fields};

static const struct body_field balloon_update_fields[] = {
    {"amount_mib", FIELD_UINT, true, false, NULL},
    END,
};
const struct body_spec fc_balloon_update_body = {"the balloon body", balloon_update_fields};

static const struct body_field balloon_stats_update_fields[] = {
    {"stats_polling_interval_s", FIELD_UINT, true, false, NULL},
    END,
};
const struct body_spec fc_balloon_stats_update_body = {"the balloon statistics body",
						       balloon_stats_update_fields};

/* Firecracker's VmmConfig. The sections without `nested` are checked by the endpoint
 * parser they feed; the FIELD_ANY ones are Firecracker devices wisp does not have. */
static const struct body_field config_file_fields[] = {
    {"balloon", FIELD_OBJECT, false, true, NULL},
    {"drives", FIELD_ARRAY, false, false, NULL},
    {"boot-source", FIELD_OBJECT, true, false, NULL},
    {"cpu-config", FIELD_ANY, false, true, NULL},
    {"logger", FIELD_OBJECT, false, true, NULL},
    {"machine-config", FIELD_OBJECT, false, true, NULL},
    {"metrics", FIELD_OBJECT, false, true, NULL},
    {"mmds-config", FIELD_ANY, false, true, NULL},
    {"network-interfaces", FIELD_ARRAY, false, false, NULL},
    {"vsock", FIELD_ANY, false, true, NULL},
    {"entropy", FIELD_ANY, false, true, NULL},
    {"pmem", FIELD_ANY, false, true, NULL},
    {"memory-hotplug", FIELD_ANY, false, true, NULL},
    END,
};
const struct body_spec fc_config_file_body = {"the config file", config_file_fields};

struct schema_operation {
	const char *path;
	const char *method;
	const struct body_spec *body; /* NULL: a GET without a body */
};

/* Every path and method wisp serves, with the swagger's path templates. */
static const struct schema_operation operations[] = {
    {"/", "get", NULL},
    {"/version", "get", NULL},
    {"/vm/config", "get", NULL},
    {"/machine-config", "get", NULL},
    {"/machine-config", "put", &fc_machine_config_put_body},
    {"/machine-config", "patch", &fc_machine_config_patch_body},
    {"/boot-source", "put", &fc_boot_source_body},
    {"/drives/{drive_id}", "put", &fc_drive_body},
    {"/drives/{drive_id}", "patch", &fc_drive_patch_body},
    {"/network-interfaces/{iface_id}", "put", &fc_net_body},
    {"/network-interfaces/{iface_id}", "patch", &fc_net_patch_body},
    {"/actions", "put", &fc_action_body},
    {"/vm", "patch", &fc_vm_body},
    {"/logger", "put", &fc_logger_body},
    {"/metrics", "put", &fc_metrics_body},
    {"/serial", "put", &fc_serial_body},
    {"/snapshot/create", "put", &fc_snapshot_create_body},
    {"/snapshot/load", "put", &fc_snapshot_load_body},
    {"/balloon", "get", NULL},
    {"/balloon", "put", &fc_balloon_body},
    {"/balloon", "patch", &fc_balloon_update_body},
    {"/balloon/statistics", "get", NULL},
    {"/balloon/statistics", "patch", &fc_balloon_stats_update_body},
};

static int schema_add_operation(json_t *paths, const struct schema_operation *operation)
{
	json_t *methods = json_object_get(paths, operation->path);
	json_t *entry = json_object();

	if (!entry)
		return -1;
	if (!methods) {
		methods = json_object();
		if (json_object_set_new(paths, operation->path, methods))
			goto fail;
	}
	if (json_object_set_new(entry, "body",
				operation->body ? fields_schema(operation->body) : json_null()))
		goto fail;
	return json_object_set_new(methods, operation->method, entry);
fail:
	json_decref(entry);
	return -1;
}

json_t *fc_api_schema(void)
{
	json_t *schema = json_object();
	json_t *paths = json_object();

	if (json_object_set_new(schema, "paths", paths))
		goto fail;
	for (size_t i = 0; i < sizeof(operations) / sizeof(operations[0]); i++) {
		if (schema_add_operation(paths, &operations[i]))
			goto fail;
	}
	return schema;
fail:
	json_decref(schema);
	return NULL;
}
