/*
 * Firecracker's request bodies -> wisp's configuration. Every parser checks the whole
 * body against its field table first, then the values, and only then writes the result,
 * so a rejected request changes nothing.
 */
#include "fc_bodies.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *const cpu_template_names[] = {"None", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1"};
static const char *const huge_pages_names[] = {"None", "Transparent", "2M"};
static const char *const action_names[] = {"InstanceStart", "SendCtrlAltDel", "FlushMetrics"};
static const char *const vm_state_names[] = {"Paused", "Resumed"};

static const enum fc_action actions[] = {FC_ACTION_INSTANCE_START, FC_ACTION_SEND_CTRL_ALT_DEL,
					 FC_ACTION_FLUSH_METRICS};
static const enum fc_vm_state vm_states[] = {FC_VM_PAUSED, FC_VM_RESUMED};

/* Firecracker's enum values are matched exactly, as serde does. */
static int enum_index(const char *value, const char *const names[], size_t count)
{
	for (size_t i = 0; i < count; i++)
		if (!strcmp(value, names[i]))
			return (int)i;
	return -1;
}

static int enum_error(const char *path, const char *name, const char *value,
		      const char *const names[], size_t count, char *err, size_t err_size)
{
	char expected[256] = "";
	size_t used = 0;

	for (size_t i = 0; i < count && used < sizeof(expected); i++)
		used += snprintf(expected + used, sizeof(expected) - used, "%s%s", i ? ", " : "",
				 names[i]);
	return fields_value_error(err, err_size, path, name, value, "must be one of %s", expected);
}

int fc_read_enum(const json_t *body, const char *name, const char *const names[], size_t count,
		 int fallback, const char *path, char *err, size_t err_size)
{
	const char *value = fields_string(body, name);
	int index;

	if (!value)
		return fallback;
	index = enum_index(value, names, count);
	if (index < 0)
		return enum_error(path, name, value, names, count, err, err_size);
	return index;
}

/* ---- PUT /boot-source ---- */

static bool is_printable_ascii(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

int fc_boot_source_put_at(const json_t *body, struct vmm_config *config, const char *path,
			  char *err, size_t err_size)
{
	char kernel[CONFIG_PATH_MAX], initrd[CONFIG_PATH_MAX], cmdline[CONFIG_CMDLINE_MAX];
	int ret;

	ret = fields_check_body(body, &fc_boot_source_body, path, err, err_size);
	if (ret)
		return ret;
	ret = fields_copy_string(body, "kernel_image_path", false, kernel, sizeof(kernel), path,
				 err, err_size);
	if (ret)
		return ret;
	initrd[0] = '\0';
	if (fields_given(body, "initrd_path")) {
		ret = fields_copy_string(body, "initrd_path", false, initrd, sizeof(initrd), path,
					 err, err_size);
		if (ret)
			return ret;
	}
	/* Firecracker boots with its default command line when boot_args is left out. */
	strcpy(cmdline, CONFIG_DEFAULT_CMDLINE);
	if (fields_given(body, "boot_args")) {
		ret = fields_copy_string(body, "boot_args", true, cmdline, sizeof(cmdline), path,
					 err, err_size);
		if (ret)
			return ret;
		/* The kernel command line Firecracker builds takes printable ASCII only. */
		if (!is_printable_ascii(cmdline))
			return fields_error(err, err_size, path, "boot_args",
					    "the kernel command line takes printable ASCII "
					    "characters only");
	}
	strcpy(config->kernel_path, kernel);
	strcpy(config->initrd_path, initrd);
	strcpy(config->cmdline, cmdline);
	return 0;
}

int fc_boot_source_put(const json_t *body, struct vmm_config *config, char *err, size_t err_size)
{
	return fc_boot_source_put_at(body, config, "", err, err_size);
}

/* ---- PUT and PATCH /machine-config ---- */

struct machine_values {
	uint64_t vcpus;
	uint64_t mem_mib;
	bool smt;
	bool track_dirty_pages;
};

/* Lays the body's fields over `values` and checks the result. */
static int machine_config_update(const json_t *body, struct machine_values *values,
				 const char *path, char *err, size_t err_size)
{
	const char *cpu_template = fields_string(body, "cpu_template");
	const char *huge_pages = fields_string(body, "huge_pages");
	int ret;

	ret = fc_read_enum(body, "cpu_template", cpu_template_names, ARRAY_SIZE(cpu_template_names),
			   0, path, err, err_size);
	if (ret < 0)
		return ret;
	if (ret > 0)
		return fields_value_error(err, err_size, path, "cpu_template", cpu_template,
					  "CPU templates are not supported");
	ret = fc_read_enum(body, "huge_pages", huge_pages_names, ARRAY_SIZE(huge_pages_names), 0,
			   path, err, err_size);
	if (ret < 0)
		return ret;
	if (ret > 0)
		return fields_value_error(err, err_size, path, "huge_pages", huge_pages,
					  "huge pages are not supported (guest memory uses 4 KiB "
					  "pages)");
	values->vcpus = fields_uint(body, "vcpu_count", values->vcpus);
	values->mem_mib = fields_uint(body, "mem_size_mib", values->mem_mib);
	values->smt = fields_bool(body, "smt", values->smt);
	values->track_dirty_pages =
	    fields_bool(body, "track_dirty_pages", values->track_dirty_pages);
	if (values->smt)
		return fields_error(err, err_size, path, "smt",
				    "true is not supported: wisp exposes one thread per core");
	if (values->vcpus < 1 || values->vcpus > CONFIG_MAX_VCPUS)
		return fields_error(err, err_size, path, "vcpu_count",
				    "%" PRIu64 " is out of range (1 to %d)", values->vcpus,
				    CONFIG_MAX_VCPUS);
	if (values->mem_mib < 1 || values->mem_mib > CONFIG_MAX_MEM_MIB)
		return fields_error(err, err_size, path, "mem_size_mib",
				    "%" PRIu64 " is out of range (1 to %llu)", values->mem_mib,
				    (unsigned long long)CONFIG_MAX_MEM_MIB);
	return 0;
}

static void machine_config_store(const struct machine_values *values, struct vmm_config *config)
{
	config->vcpus = (unsigned int)values->vcpus;
	config->mem_mib = values->mem_mib;
	config->smt = values->smt;
	config->track_dirty_pages = values->track_dirty_pages;
}

int fc_machine_config_put_at(const json_t *body, struct vmm_config *config, const char *path,
			     char *err, size_t err_size)
{
	/* PUT replaces the whole machine configuration: what is left out is the default. */
	struct machine_values values = {CONFIG_DEFAULT_VCPUS, CONFIG_DEFAULT_MEM_MIB, false, false};
	int ret;

	ret = fields_check_body(body, &fc_machine_config_put_body, path, err, err_size);
	if (ret)
		return ret;
	ret = machine_config_update(body, &values, path, err, err_size);
	if (ret)
		return ret;
	machine_config_store(&values, config);
	return 0;
}

int fc_machine_config_put(const json_t *body, struct vmm_config *config, char *err, size_t err_size)
{
	return fc_machine_config_put_at(body, config, "", err, err_size);
}

int fc_machine_config_patch(const json_t *body, struct vmm_config *config, char *err,
			    size_t err_size)
{
	struct machine_values values = {config->vcpus, config->mem_mib, config->smt,
					config->track_dirty_pages};
	const char *key;
	json_t *value;
	bool any_given = false;
	int ret;

	ret = fields_check_body(body, &fc_machine_config_patch_body, "", err, err_size);
	if (ret)
		return ret;
	json_object_foreach((json_t *)body, key, value) any_given |= !json_is_null(value);
	if (!any_given)
		return fields_error(err, err_size, "", NULL,
				    "Empty PATCH request: give at least one of vcpu_count, "
				    "mem_size_mib, smt, cpu_template, track_dirty_pages, "
				    "huge_pages");
	ret = machine_config_update(body, &values, "", err, err_size);
	if (ret)
		return ret;
	machine_config_store(&values, config);
	return 0;
}

/* ---- PUT /logger, /metrics, /serial ---- */

int fc_logger_put_at(const json_t *body, struct logger_config *logger, const char *path, char *err,
		     size_t err_size)
{
	struct logger_config result = *logger;
	const char *module, *level;
	int ret;

	ret = fields_check_body(body, &fc_logger_body, path, err, err_size);
	if (ret)
		return ret;
	module = fields_string(body, "module");
	if (module)
		return fields_value_error(err, err_size, path, "module", module,
					  "filtering the log by module is not supported");
	if (fields_given(body, "log_path")) {
		ret = fields_copy_string(body, "log_path", false, result.path, sizeof(result.path),
					 path, err, err_size);
		if (ret)
			return ret;
	}
	/* Firecracker sets the level on every PUT: Info unless the body names another. */
	result.has_level = true;
	result.level = LOG_LEVEL_INFO;
	level = fields_string(body, "level");
	if (level && log_parse_filter(level, &result.level))
		return fields_value_error(err, err_size, path, "level", level,
					  "must be one of Error, Warning, Info, Debug, Trace, Off "
					  "(any case)");
	/* The flags left out keep their value, as in Firecracker. */
	result.show_level = fields_bool(body, "show_level", result.show_level);
	result.show_log_origin = fields_bool(body, "show_log_origin", result.show_log_origin);
	*logger = result;
	return 0;
}

int fc_logger_put(const json_t *body, struct logger_config *logger, char *err, size_t err_size)
{
	return fc_logger_put_at(body, logger, "", err, err_size);
}

int fc_metrics_put_at(const json_t *body, char *metrics_path, size_t path_size, const char *path,
		      char *err, size_t err_size)
{
	const json_t *properties;
	int ret;

	ret = fields_check_body(body, &fc_metrics_body, path, err, err_size);
	if (ret)
		return ret;
	if (fields_bool(body, "emit_id", false))
		return fields_error(err, err_size, path, "emit_id",
				    "true is not supported: wisp's metrics lines carry no "
				    "instance id");
	properties = fields_object(body, "properties");
	if (properties && json_object_size(properties))
		return fields_error(err, err_size, path, "properties",
				    "metrics properties are not supported");
	return fields_copy_string(body, "metrics_path", false, metrics_path, path_size, path, err,
				  err_size);
}

int fc_metrics_put(const json_t *body, char *metrics_path, size_t path_size, char *err,
		   size_t err_size)
{
	return fc_metrics_put_at(body, metrics_path, path_size, "", err, err_size);
}

int fc_serial_put(const json_t *body, char *out_path, size_t path_size, char *err, size_t err_size)
{
	int ret;

	ret = fields_check_body(body, &fc_serial_body, "", err, err_size);
	if (ret)
		return ret;
	if (fields_given(body, "rate_limiter"))
		return fields_error(err, err_size, "", "rate_limiter",
				    "rate limiting the serial console is not supported");
	/* Firecracker's PUT replaces the setting: without a path, output goes back to stdout. */
	if (!fields_given(body, "serial_out_path")) {
		if (path_size)
			out_path[0] = '\0';
		return 0;
	}
	return fields_copy_string(body, "serial_out_path", false, out_path, path_size, "", err,
				  err_size);
}

/* ---- PUT /actions, PATCH /vm ---- */

int fc_action_parse(const json_t *body, enum fc_action *action, char *err, size_t err_size)
{
	int ret;

	ret = fields_check_body(body, &fc_action_body, "", err, err_size);
	if (ret)
		return ret;
	ret = fc_read_enum(body, "action_type", action_names, ARRAY_SIZE(action_names), -1, "", err,
			   err_size);
	if (ret < 0)
		return ret;
	*action = actions[ret];
	return 0;
}

int fc_vm_patch(const json_t *body, enum fc_vm_state *state, char *err, size_t err_size)
{
	int ret;

	ret = fields_check_body(body, &fc_vm_body, "", err, err_size);
	if (ret)
		return ret;
	ret = fc_read_enum(body, "state", vm_state_names, ARRAY_SIZE(vm_state_names), -1, "", err,
			   err_size);
	if (ret < 0)
		return ret;
	*state = vm_states[ret];
	return 0;
}
