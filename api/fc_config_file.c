/*
 * wisp's configuration as Firecracker writes it (GET /machine-config, GET /vm/config), and
 * Firecracker's --config-file read into it through the same body parsers as the API.
 */
#include "fc_bodies.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *fc_machine_config_json(const struct vmm_config *config)
{
	/* Firecracker leaves cpu_template out when there is none, and there never is. */
	return json_pack("{s:I, s:I, s:b, s:b, s:s}", "vcpu_count", (json_int_t)config->vcpus,
			 "mem_size_mib", (json_int_t)config->mem_mib, "smt", config->smt,
			 "track_dirty_pages", config->track_dirty_pages, "huge_pages", "None");
}

static json_t *string_or_null(const char *value)
{
	return *value ? json_string(value) : json_null();
}

/* Firecracker reports only the buckets that limit something, and a one_time_burst of 0
 * as null. */
static json_t *token_bucket_json(const struct token_bucket_config *bucket)
{
	if (!token_bucket_config_enabled(bucket))
		return json_null();
	return json_pack("{s:I, s:o, s:I}", "size", (json_int_t)bucket->size, "one_time_burst",
			 bucket->one_time_burst ? json_integer((json_int_t)bucket->one_time_burst)
						: json_null(),
			 "refill_time", (json_int_t)bucket->refill_time_ms);
}

static json_t *rate_limiter_json(const struct rate_limiter_config *limiter)
{
	if (!token_bucket_config_enabled(&limiter->bandwidth) &&
	    !token_bucket_config_enabled(&limiter->ops))
		return json_null();
	return json_pack("{s:o, s:o}", "bandwidth", token_bucket_json(&limiter->bandwidth), "ops",
			 token_bucket_json(&limiter->ops));
}

static json_t *drive_json(const struct drive_config *drive)
{
	return json_pack("{s:s, s:o, s:b, s:s, s:b, s:s, s:o, s:s, s:n}", "drive_id", drive->id,
			 "partuuid", string_or_null(drive->partuuid), "is_root_device", drive->root,
			 "cache_type", drive->cache == CACHE_WRITEBACK ? "Writeback" : "Unsafe",
			 "is_read_only", drive->read_only, "path_on_host", drive->path,
			 "rate_limiter", rate_limiter_json(&drive->rate_limiter), "io_engine",
			 drive->engine == IO_ENGINE_SYNC ? "Sync" : "Async", "socket");
}

static json_t *net_json(const struct net_config *net)
{
	char mac[18];

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", net->mac[0], net->mac[1],
		 net->mac[2], net->mac[3], net->mac[4], net->mac[5]);
	return json_pack("{s:s, s:s, s:o, s:n, s:o, s:o}", "iface_id", net->id, "host_dev_name",
			 net->tap, "guest_mac", net->has_mac ? json_string(mac) : json_null(),
			 "mtu", "rx_rate_limiter", rate_limiter_json(&net->rx_rate_limiter),
			 "tx_rate_limiter", rate_limiter_json(&net->tx_rate_limiter));
}

/* Firecracker lists the root drive first. */
static json_t *drives_json(const struct vmm_config *config)
{
	json_t *drives = json_array();

	for (int pass = 0; drives && pass < 2; pass++) {
		for (unsigned int i = 0; i < config->nr_drives; i++) {
			if (config->drives[i].root != (pass == 0))
				continue;
			if (json_array_append_new(drives, drive_json(&config->drives[i]))) {
				json_decref(drives);
				return NULL;
			}
		}
	}
	return drives;
}

static json_t *nets_json(const struct vmm_config *config)
{
	json_t *nets = json_array();

	for (unsigned int i = 0; nets && i < config->nr_nets; i++) {
		if (json_array_append_new(nets, net_json(&config->nets[i]))) {
			json_decref(nets);
			return NULL;
		}
	}
	return nets;
}

json_t *fc_vm_config_json(const struct vmm_config *config)
{
	json_t *boot_source =
	    json_pack("{s:s, s:o, s:s}", "kernel_image_path", config->kernel_path, "initrd_path",
		      string_or_null(config->initrd_path), "boot_args", config->cmdline);

	/* Firecracker's keys, in its order, with its nulls: it reports neither the logger
	 * nor the metrics here, and wisp has none of the other devices. */
	return json_pack("{s:n, s:o, s:o, s:n, s:n, s:o, s:n, s:n, s:o, s:n, s:n, s:[], s:n}",
			 "balloon", "drives", drives_json(config), "boot-source", boot_source,
			 "cpu-config", "logger", "machine-config", fc_machine_config_json(config),
			 "metrics", "mmds-config", "network-interfaces", nets_json(config), "vsock",
			 "entropy", "pmem", "memory-hotplug");
}

/* ---- --config-file ---- */

/* Firecracker sections wisp has no device for: only null (GET /vm/config's "none") or,
 * for the pmem list, an empty list. */
static int check_unsupported_sections(const json_t *root, char *err, size_t err_size)
{
	for (const struct body_field *field = fc_config_file_body.fields; field->name; field++) {
		const json_t *value = json_object_get(root, field->name);

		if (field->type != FIELD_ANY || !value || json_is_null(value))
			continue;
		if (json_is_array(value) && !json_array_size(value) && !strcmp(field->name, "pmem"))
			continue;
		return fields_error(err, err_size, "", field->name, "not supported yet");
	}
	return 0;
}

typedef int (*device_put)(const json_t *body, const char *path_id, struct vmm_config *config,
			  const char *path, char *err, size_t err_size);

static int put_each(const json_t *root, const char *key, device_put put, struct vmm_config *config,
		    char *err, size_t err_size)
{
	const json_t *list = json_object_get(root, key);
	char path[KEY_PATH_MAX];
	size_t i;
	json_t *element;
	int ret;

	json_array_foreach(list, i, element)
	{
		snprintf(path, sizeof(path), "%s[%zu]", key, i);
		ret = put(element, NULL, config, path, err, err_size);
		if (ret)
			return ret;
	}
	return 0;
}

/* In Firecracker's order: logger, metrics, machine-config, boot-source, drives, network
 * interfaces; so the first error is the one Firecracker would report. */
static int apply_config_file(const json_t *root, struct vmm_config *config, char *err,
			     size_t err_size)
{
	const json_t *section;
	int ret;

	ret = fields_check_body(root, &fc_config_file_body, "", err, err_size);
	if (!ret)
		ret = check_unsupported_sections(root, err, err_size);
	section = fields_object(root, "logger");
	if (!ret && section)
		ret = fc_logger_put_at(section, &config->logger, "logger", err, err_size);
	section = fields_object(root, "metrics");
	if (!ret && section)
		ret = fc_metrics_put_at(section, config->metrics_path, sizeof(config->metrics_path),
					"metrics", err, err_size);
	section = fields_object(root, "machine-config");
	if (!ret && section)
		ret = fc_machine_config_put_at(section, config, "machine-config", err, err_size);
	if (!ret)
		ret = fc_boot_source_put_at(json_object_get(root, "boot-source"), config,
					    "boot-source", err, err_size);
	if (!ret)
		ret = put_each(root, "drives", fc_drive_put_at, config, err, err_size);
	if (!ret)
		ret = put_each(root, "network-interfaces", fc_net_put_at, config, err, err_size);
	return ret;
}

int fc_config_file_parse(const char *text, size_t len, struct vmm_config *config, char *err,
			 size_t err_size)
{
	struct vmm_config *work = NULL;
	json_error_t json_error;
	json_t *root;
	int ret;

	/* serde refuses a key given twice; jansson would keep the last one. */
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &json_error);
	if (!root) {
		for (char *c = json_error.text; *c; c++)
			if (*c < 0x20 || *c > 0x7e)
				*c = '?';
		snprintf(err, err_size, "config file: invalid JSON at line %d, column %d: %s",
			 json_error.line, json_error.column, json_error.text);
		return -EINVAL;
	}
	/* Applied to a copy, so that a bad file leaves the configuration as it was. */
	work = malloc(sizeof(*work));
	if (!work) {
		snprintf(err, err_size, "config file: out of memory");
		ret = -ENOMEM;
		goto out;
	}
	*work = *config;
	ret = apply_config_file(root, work, err, err_size);
	if (!ret)
		*config = *work;
out:
	free(work);
	json_decref(root);
	return ret;
}

/* ---- the machine configuration a snapshot saves ---- */

/* What a snapshot needs beyond GET /vm/config: the drives opened with O_DIRECT. */
static const struct body_field wisp_section_fields[] = {
    {"direct_drives", FIELD_ARRAY, true, false, NULL},
    {NULL, 0, false, false, NULL},
};
static const struct body_spec wisp_section_body = {"wisp's section", wisp_section_fields};

json_t *fc_snapshot_config_json(const struct vmm_config *config)
{
	json_t *root = fc_vm_config_json(config);
	json_t *section = json_object();
	json_t *direct = json_array();

	if (!root || !section || !direct)
		goto fail;
	for (unsigned int i = 0; i < config->nr_drives; i++)
		if (config->drives[i].direct &&
		    json_array_append_new(direct, json_string(config->drives[i].id)))
			goto fail;
	if (json_object_set_new(section, "direct_drives", direct)) {
		direct = NULL;
		goto fail;
	}
	direct = NULL;
	if (json_object_set_new(root, "wisp", section)) {
		section = NULL;
		goto fail;
	}
	return root;
fail:
	json_decref(direct);
	json_decref(section);
	json_decref(root);
	return NULL;
}

static int apply_wisp_section(const json_t *section, struct vmm_config *config, char *err,
			      size_t err_size)
{
	const json_t *list;
	json_t *element;
	size_t index;
	int ret;

	if (!section)
		return 0;
	ret = fields_check_body(section, &wisp_section_body, "wisp", err, err_size);
	if (ret)
		return ret;
	list = json_object_get(section, "direct_drives");
	json_array_foreach(list, index, element)
	{
		const char *id = json_string_value(element);
		unsigned int i;

		for (i = 0; id && i < config->nr_drives; i++)
			if (!strcmp(config->drives[i].id, id))
				break;
		if (!id || i == config->nr_drives)
			return fields_error(err, err_size, "wisp", "direct_drives",
					    "element %zu is not the id of one of the drives",
					    index);
		config->drives[i].direct = true;
	}
	return 0;
}

int fc_vm_config_parse(const char *json, size_t len, struct vmm_config *config, char *err,
		       size_t err_size)
{
	struct vmm_config *work = NULL;
	char reason[FC_ERROR_MAX];
	json_error_t json_error;
	json_t *root, *section;
	int ret;

	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &json_error);
	if (!root) {
		for (char *c = json_error.text; *c; c++)
			if (*c < 0x20 || *c > 0x7e)
				*c = '?';
		snprintf(err, err_size,
			 "the snapshot's VM configuration: invalid JSON at line %d, column %d: %s",
			 json_error.line, json_error.column, json_error.text);
		return -EINVAL;
	}
	work = malloc(sizeof(*work));
	if (!work) {
		snprintf(err, err_size, "the snapshot's VM configuration: out of memory");
		ret = -ENOMEM;
		goto out;
	}
	/* GET /vm/config's text is a config file (the same keys, with nulls for what is not
	 * there) plus wisp's own section; read on top of the defaults, not on top of this
	 * process's settings. */
	config_set_defaults(work);
	section = json_incref(json_object_get(root, "wisp"));
	json_object_del(root, "wisp");
	ret = apply_config_file(root, work, reason, sizeof(reason));
	if (!ret)
		ret = apply_wisp_section(section, work, reason, sizeof(reason));
	json_decref(section);
	if (ret)
		snprintf(err, err_size, "the snapshot's VM configuration: %s", reason);
	else
		*config = *work;
out:
	free(work);
	json_decref(root);
	return ret;
}
