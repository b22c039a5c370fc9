/*
 * PUT /snapshot/create and PUT /snapshot/load: Firecracker's CreateSnapshotParams and
 * LoadSnapshotConfig bodies -> wisp's snapshot requests (vmm/config.h). As the other
 * parsers, each checks the whole body before it writes the request, so a refused body
 * leaves the request as it was.
 */
#include "fc_bodies.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *const snapshot_type_names[] = {"Full", "Diff"};
static const enum snapshot_type snapshot_types[] = {SNAPSHOT_FULL, SNAPSHOT_DIFF};
static const char *const backend_type_names[] = {"File", "Uffd"};
static const enum mem_backend backend_types[] = {MEM_BACKEND_FILE, MEM_BACKEND_UFFD};
/* "2M" last: the one refused. */
static const char *const load_huge_pages_names[] = {"Snapshot", "None", "Transparent", "2M"};
static const enum restore_huge_pages load_huge_pages[] = {
    RESTORE_HUGE_PAGES_SNAPSHOT, RESTORE_HUGE_PAGES_NONE, RESTORE_HUGE_PAGES_TRANSPARENT};

/* Firecracker's texts (its serde errors for LoadSnapshotConfig), which clients may match. */
#define FC_DESERIALIZE_ERROR "An error occurred when deserializing the json body of a request: "
#define FC_MEM_MISSING                                                                             \
	FC_DESERIALIZE_ERROR "missing field: either `mem_backend` or `mem_file_path` is required."
#define FC_MEM_TOO_MANY                                                                            \
	FC_DESERIALIZE_ERROR "too many fields: either `mem_backend` or `mem_file_path` "           \
			     "exclusively is required."

int fc_snapshot_create_parse(const json_t *body, struct snapshot_create_config *request, char *err,
			     size_t err_size)
{
	struct snapshot_create_config result;
	int ret;

	memset(&result, 0, sizeof(result));
	ret = fields_check_body(body, &fc_snapshot_create_body, "", err, err_size);
	if (ret)
		return ret;
	ret = fc_read_enum(body, "snapshot_type", snapshot_type_names,
			   ARRAY_SIZE(snapshot_type_names), 0, "", err, err_size);
	if (ret < 0)
		return ret;
	result.type = snapshot_types[ret];
	ret = fields_copy_string(body, "snapshot_path", false, result.snapshot_path,
				 sizeof(result.snapshot_path), "", err, err_size);
	if (!ret)
		ret = fields_copy_string(body, "mem_file_path", false, result.mem_file_path,
					 sizeof(result.mem_file_path), "", err, err_size);
	if (ret)
		return ret;
	/* Both files are written: one path would leave one of them overwritten by the other. */
	if (!strcmp(result.snapshot_path, result.mem_file_path))
		return fields_value_error(err, err_size, "", "mem_file_path", result.mem_file_path,
					  "is also the snapshot_path: the state and the memory "
					  "need a file each");
	*request = result;
	return 0;
}

static int read_mem_backend(const json_t *body, struct snapshot_load_config *result, char *err,
			    size_t err_size)
{
	const json_t *backend = fields_object(body, "mem_backend");
	bool has_file = fields_given(body, "mem_file_path");
	int ret;

	if (backend && has_file) {
		snprintf(err, err_size, "%s", FC_MEM_TOO_MANY);
		return -EINVAL;
	}
	if (!backend && !has_file) {
		snprintf(err, err_size, "%s", FC_MEM_MISSING);
		return -EINVAL;
	}
	if (has_file) {
		result->backend = MEM_BACKEND_FILE;
		return fields_copy_string(body, "mem_file_path", false, result->backend_path,
					  sizeof(result->backend_path), "", err, err_size);
	}
	ret = fc_read_enum(backend, "backend_type", backend_type_names,
			   ARRAY_SIZE(backend_type_names), -1, "mem_backend", err, err_size);
	if (ret < 0)
		return ret;
	result->backend = backend_types[ret];
	return fields_copy_string(backend, "backend_path", false, result->backend_path,
				  sizeof(result->backend_path), "mem_backend", err, err_size);
}

static int read_net_overrides(const json_t *body, struct snapshot_load_config *result, char *err,
			      size_t err_size)
{
	const json_t *list = json_object_get(body, "network_overrides");
	char path[KEY_PATH_MAX];
	json_t *element;
	size_t i;
	int ret;

	if (json_array_size(list) > CONFIG_MAX_NETS)
		return fields_error(err, err_size, "", "network_overrides",
				    "%zu overrides, but wisp has at most %d network interfaces",
				    json_array_size(list), CONFIG_MAX_NETS);
	json_array_foreach(list, i, element)
	{
		struct net_override *override = &result->net_overrides[i];

		snprintf(path, sizeof(path), "network_overrides[%zu]", i);
		ret = fields_check_body(element, &fc_net_override_body, path, err, err_size);
		if (!ret)
			ret = fields_copy_string(element, "iface_id", false, override->iface_id,
						 sizeof(override->iface_id), path, err, err_size);
		/* A TAP's name is at most IFNAMSIZ - 1 characters. */
		if (!ret)
			ret = fields_copy_string(element, "host_dev_name", false, override->tap,
						 sizeof(override->tap), path, err, err_size);
		if (ret)
			return ret;
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(result->net_overrides[j].iface_id, override->iface_id))
				return fields_value_error(err, err_size, path, "iface_id",
							  override->iface_id,
							  "is overridden twice (also in "
							  "network_overrides[%zu])",
							  j);
			if (!strcmp(result->net_overrides[j].tap, override->tap))
				return fields_value_error(err, err_size, path, "host_dev_name",
							  override->tap,
							  "is given to two interfaces (also in "
							  "network_overrides[%zu])",
							  j);
		}
		result->nr_net_overrides = (unsigned int)i + 1;
	}
	return 0;
}

int fc_snapshot_load_parse(const json_t *body, struct snapshot_load_config *request, char *err,
			   size_t err_size)
{
	struct snapshot_load_config result;
	const char *huge_pages;
	int ret;

	memset(&result, 0, sizeof(result));
	ret = fields_check_body(body, &fc_snapshot_load_body, "", err, err_size);
	if (ret)
		return ret;
	ret = fields_copy_string(body, "snapshot_path", false, result.snapshot_path,
				 sizeof(result.snapshot_path), "", err, err_size);
	if (!ret)
		ret = read_mem_backend(body, &result, err, err_size);
	if (!ret)
		ret = read_net_overrides(body, &result, err, err_size);
	if (ret)
		return ret;
	if (fields_given(body, "vsock_override"))
		return fields_error(err, err_size, "", "vsock_override",
				    "wisp has no vsock device to override");
	huge_pages = fields_string(body, "huge_pages");
	ret = fc_read_enum(body, "huge_pages", load_huge_pages_names,
			   ARRAY_SIZE(load_huge_pages_names), 0, "", err, err_size);
	if (ret < 0)
		return ret;
	if ((size_t)ret >= ARRAY_SIZE(load_huge_pages))
		return fields_value_error(err, err_size, "", "huge_pages", huge_pages,
					  "hugetlbfs pages are not supported (wisp's guest memory "
					  "takes Snapshot, None or Transparent)");
	result.huge_pages = load_huge_pages[ret];
	/* Firecracker: the deprecated enable_diff_snapshots is track_dirty_pages. */
	result.track_dirty_pages = fields_bool(body, "track_dirty_pages", false) ||
				   fields_bool(body, "enable_diff_snapshots", false);
	result.resume_vm = fields_bool(body, "resume_vm", false);
	result.clock_realtime = fields_bool(body, "clock_realtime", false);
	*request = result;
	return 0;
}
