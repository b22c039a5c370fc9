/*
 * Unit tests for PUT /snapshot/create and PUT /snapshot/load (api/api.c, api/fc_snapshot.c)
 * and for reading back the machine configuration a snapshot saves (fc_vm_config_parse).
 * The VMM is a fake ops table that records what the API asked of it; bodies are written
 * with single quotes ({'a': 1}) and turned into JSON before they are sent.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../api/api.h"
#include "api_request.h"
#include "../../api/fc_config.h"

#define MSG_BEFORE_START "The requested operation is not supported before starting the microVM."
#define MSG_AFTER_START	 "The requested operation is not supported after starting the microVM."

/* ---- the fake VMM ---- */

static struct fake {
	unsigned int starts, pauses, resumes, creates, loads, patch_drives, patch_nets;
	int create_ret, load_ret;
	struct snapshot_create_config create;
	struct snapshot_load_config load;
	struct vmm_config load_entry; /* *restored as the op found it */
	struct vmm_config restore_to; /* what the op writes into *restored */
	char patched_drive[CONFIG_ID_MAX], patched_net[CONFIG_ID_MAX];
} fake;

static int fake_start(void *opaque, const struct vmm_config *config, char *err, size_t size)
{
	(void)opaque, (void)config, (void)err, (void)size;
	fake.starts++;
	return 0;
}

static int fake_pause(void *opaque, char *err, size_t size)
{
	(void)opaque, (void)err, (void)size;
	fake.pauses++;
	return 0;
}

static int fake_resume(void *opaque, char *err, size_t size)
{
	(void)opaque, (void)err, (void)size;
	fake.resumes++;
	return 0;
}

static int fake_patch_drive(void *opaque, const char *id, const char *path,
			    const struct rate_limiter_config *limiter, char *err, size_t size)
{
	(void)opaque, (void)path, (void)limiter, (void)err, (void)size;
	fake.patch_drives++;
	snprintf(fake.patched_drive, sizeof(fake.patched_drive), "%s", id);
	return 0;
}

static int fake_patch_net(void *opaque, const char *id, const struct rate_limiter_config *rx,
			  const struct rate_limiter_config *tx, char *err, size_t size)
{
	(void)opaque, (void)rx, (void)tx, (void)err, (void)size;
	fake.patch_nets++;
	snprintf(fake.patched_net, sizeof(fake.patched_net), "%s", id);
	return 0;
}

static int fake_set_logger(void *opaque, const struct logger_config *logger, char *err, size_t size)
{
	(void)opaque, (void)logger, (void)err, (void)size;
	return 0;
}

static int fake_set_metrics(void *opaque, const char *path, char *err, size_t size)
{
	(void)opaque, (void)path, (void)err, (void)size;
	return 0;
}

static int fake_open_check(void *opaque, const char *path, int flags)
{
	(void)opaque, (void)path, (void)flags;
	return 0;
}

static int fake_snapshot_create(void *opaque, const struct snapshot_create_config *request,
				char *err, size_t size)
{
	(void)opaque;
	fake.creates++;
	fake.create = *request;
	if (fake.create_ret)
		snprintf(err, size, "Create snapshot error: disk full");
	return fake.create_ret;
}

static int fake_snapshot_load(void *opaque, const struct snapshot_load_config *request,
			      struct vmm_config *restored, char *err, size_t size)
{
	(void)opaque;
	fake.loads++;
	fake.load = *request;
	fake.load_entry = *restored;
	if (fake.load_ret) {
		snprintf(err, size, "Load snapshot error: the state file's checksum is wrong");
		return fake.load_ret;
	}
	*restored = fake.restore_to;
	return 0;
}

static const struct api_vmm_ops ops = {
    .start = fake_start,
    .pause = fake_pause,
    .resume = fake_resume,
    .patch_drive = fake_patch_drive,
    .patch_net = fake_patch_net,
    .set_logger = fake_set_logger,
    .set_metrics = fake_set_metrics,
    .open_check = fake_open_check,
    .snapshot_create = fake_snapshot_create,
    .snapshot_load = fake_snapshot_load,
};

/* The VM a load restores: 2 vCPUs, 256 MiB, a root drive and an interface. */
static void make_restored_vm(struct vmm_config *config)
{
	config_set_defaults(config);
	strcpy(config->kernel_path, "/snap/vmlinux");
	strcpy(config->cmdline, "console=ttyS0 quiet");
	config->vcpus = 2;
	config->mem_mib = 256;
	config->nr_drives = 1;
	strcpy(config->drives[0].id, "rootfs");
	strcpy(config->drives[0].path, "/snap/rootfs.ext4");
	config->drives[0].root = true;
	config->nr_nets = 1;
	strcpy(config->nets[0].id, "eth0");
	strcpy(config->nets[0].tap, "tap0");
	config->nets[0].has_mac = true;
	memcpy(config->nets[0].mac, "\x06\x00\xac\x10\x00\x02", 6);
	/* The snapshot's process settings, which must not replace this process's. */
	strcpy(config->process.id, "the-snapshotted-one");
	strcpy(config->metrics_path, "/snap/metrics");
	strcpy(config->serial_out_path, "/snap/serial");
}

static int setup(void **state)
{
	static struct vmm_config defaults;
	(void)state;

	memset(&fake, 0, sizeof(fake));
	make_restored_vm(&fake.restore_to);
	config_set_defaults(&defaults);
	strcpy(defaults.process.id, "clone-1");
	api_state_init(&api, &defaults, "1.2.3", &ops, NULL);
	return 0;
}

/* A 400 whose fault_message contains both fragments. */
static void refused_saying(enum http_method method, const char *path, const char *body,
			   const char *fragment1, const char *fragment2)
{
	expect(400, method, path, body);
	if (!strstr(text, fragment1) || (fragment2 && !strstr(text, fragment2)))
		fail_msg("%s: '%s' does not say '%s' / '%s'", body, text, fragment1,
			 fragment2 ? fragment2 : "");
}

#define CREATE_BODY "{'snapshot_path': '/s/vm.state', 'mem_file_path': '/s/vm.mem'}"
#define LOAD_BODY   "{'snapshot_path': '/s/vm.state', 'mem_file_path': '/s/vm.mem'}"

static void boot_and_pause(void)
{
	expect(204, HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}");
	expect(204, HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}");
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Paused'}");
}

/* ---- routes ---- */

static void test_snapshot_paths_are_served_and_only_with_put(void **state)
{
	(void)state;
	refused(HTTP_GET, "/snapshot/create", NULL,
		"Invalid request method and/or path: GET /snapshot/create.");
	refused(HTTP_PATCH, "/snapshot/load", "{}",
		"Invalid request method and/or path: PATCH /snapshot/load.");
	refused(HTTP_PUT, "/snapshot/restore", "{}",
		"Invalid request method and/or path: PUT /snapshot/restore.");
	refused(HTTP_PUT, "/snapshot/create/x", "{}",
		"Invalid request method and/or path: PUT /snapshot/create/x.");
	/* No longer "not supported by wisp yet": the body is looked at. */
	refused_saying(HTTP_PUT, "/snapshot/create", "{}", "missing required field", NULL);
	refused_saying(HTTP_PUT, "/snapshot/load", "{'snapshot_path': '/s'}", "mem_backend", NULL);
}

/* ---- PUT /snapshot/create ---- */

static void test_create_body_is_checked_field_by_field(void **state)
{
	(void)state;
	boot_and_pause();
	refused(HTTP_PUT, "/snapshot/create", "{'mem_file_path': '/m'}",
		"missing required field 'snapshot_path' in the snapshot create body");
	refused(HTTP_PUT, "/snapshot/create", "{'snapshot_path': '/s'}",
		"missing required field 'mem_file_path' in the snapshot create body");
	refused_saying(HTTP_PUT, "/snapshot/create",
		       "{'snapshot_path': '/s', 'mem_file_path': '/m', 'compress': true}",
		       "unknown field 'compress' in the snapshot create body",
		       "snapshot_type, snapshot_path, mem_file_path");
	refused(HTTP_PUT, "/snapshot/create",
		"{'snapshot_type': 'Incremental', 'snapshot_path': '/s', 'mem_file_path': '/m'}",
		"snapshot_type 'Incremental': must be one of Full, Diff");
	refused(HTTP_PUT, "/snapshot/create",
		"{'snapshot_type': 'full', 'snapshot_path': '/s', 'mem_file_path': '/m'}",
		"snapshot_type 'full': must be one of Full, Diff");
	refused(HTTP_PUT, "/snapshot/create",
		"{'snapshot_type': null, 'snapshot_path': '/s', 'mem_file_path': '/m'}",
		"snapshot_type: must be a string");
	refused(HTTP_PUT, "/snapshot/create", "{'snapshot_path': 7, 'mem_file_path': '/m'}",
		"snapshot_path: must be a string");
	refused(HTTP_PUT, "/snapshot/create", "{'snapshot_path': '', 'mem_file_path': '/m'}",
		"snapshot_path: must not be empty");
	refused(HTTP_PUT, "/snapshot/create", "{'snapshot_path': '/s', 'mem_file_path': ''}",
		"mem_file_path: must not be empty");
	refused(HTTP_PUT, "/snapshot/create",
		"{'snapshot_path': '/same', 'mem_file_path': '/same'}",
		"mem_file_path '/same': is also the snapshot_path: the state and the memory "
		"need a file each");
	refused(HTTP_PUT, "/snapshot/create", "[]",
		"the snapshot create body must be a JSON object");
	assert_int_equal(fake.creates, 0);
	assert_int_equal(api.vm_state, API_VM_PAUSED);
}

static void test_create_is_refused_before_boot_with_firecrackers_text(void **state)
{
	(void)state;
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY, MSG_BEFORE_START);
	/* The body is checked first, as Firecracker's API thread does before its VMM. */
	refused(HTTP_PUT, "/snapshot/create", "{'snapshot_path': '/s'}",
		"missing required field 'mem_file_path' in the snapshot create body");
	assert_int_equal(fake.creates, 0);
	assert_int_equal(api.vm_state, API_VM_NOT_STARTED);
}

static void test_create_is_refused_on_a_running_vm_with_firecrackers_text(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}");
	expect(204, HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}");
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY,
		"Create snapshot error: Cannot save the microVM state: Operation not allowed: "
		"save/restore unavailable while running");
	/* Paused and resumed again: running, refused again. */
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Paused'}");
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Resumed'}");
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY, API_MSG_CREATE_RUNNING);
	assert_int_equal(fake.creates, 0);
	assert_int_equal(api.vm_state, API_VM_RUNNING);
}

static void test_create_on_a_paused_vm_calls_the_vmm_and_stays_paused(void **state)
{
	(void)state;
	boot_and_pause();
	expect(204, HTTP_PUT, "/snapshot/create", CREATE_BODY);
	assert_int_equal(fake.creates, 1);
	assert_int_equal(fake.create.type, SNAPSHOT_FULL); /* Firecracker's default */
	assert_string_equal(fake.create.snapshot_path, "/s/vm.state");
	assert_string_equal(fake.create.mem_file_path, "/s/vm.mem");
	assert_int_equal(api.vm_state, API_VM_PAUSED);
	expect(204, HTTP_PUT, "/snapshot/create",
	       "{'snapshot_type': 'Full', 'snapshot_path': '/a', 'mem_file_path': '/b'}");
	assert_int_equal(fake.create.type, SNAPSHOT_FULL);
	assert_string_equal(fake.create.snapshot_path, "/a");
	/* Diff without track_dirty_pages is passed on, as Firecracker 1.17 takes it (its
	 * VMM then falls back from KVM's dirty log to mincore). */
	assert_false(api.config.track_dirty_pages);
	expect(204, HTTP_PUT, "/snapshot/create",
	       "{'snapshot_type': 'Diff', 'snapshot_path': '/d.state', 'mem_file_path': '/d.mem'}");
	assert_int_equal(fake.creates, 3);
	assert_int_equal(fake.create.type, SNAPSHOT_DIFF);
	assert_string_equal(fake.create.mem_file_path, "/d.mem");
	assert_int_equal(api.vm_state, API_VM_PAUSED);
	/* And the VM resumes as usual afterwards. */
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Resumed'}");
	assert_int_equal(api.vm_state, API_VM_RUNNING);
}

static void test_a_failed_create_is_its_400_and_the_vm_stays_paused(void **state)
{
	(void)state;
	boot_and_pause();
	fake.create_ret = -ENOSPC;
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY, "Create snapshot error: disk full");
	assert_int_equal(api.vm_state, API_VM_PAUSED);
	fake.create_ret = 0;
	expect(204, HTTP_PUT, "/snapshot/create", CREATE_BODY);
	assert_int_equal(fake.creates, 2);
}

static void test_create_with_long_paths(void **state)
{
	char body[2 * CONFIG_PATH_MAX + 128], *long_path = malloc(CONFIG_PATH_MAX + 1);
	(void)state;

	assert_non_null(long_path);
	boot_and_pause();
	memset(long_path, 'p', CONFIG_PATH_MAX);
	long_path[0] = '/';
	long_path[CONFIG_PATH_MAX - 1] = '\0'; /* 4095 characters: the limit */
	snprintf(body, sizeof(body), "{'snapshot_path': '%s', 'mem_file_path': '/m'}", long_path);
	expect(204, HTTP_PUT, "/snapshot/create", body);
	assert_string_equal(fake.create.snapshot_path, long_path);
	long_path[CONFIG_PATH_MAX - 1] = 'p';
	long_path[CONFIG_PATH_MAX] = '\0';
	snprintf(body, sizeof(body), "{'snapshot_path': '/s', 'mem_file_path': '%s'}", long_path);
	refused(HTTP_PUT, "/snapshot/create", body,
		"mem_file_path: is 4096 characters long, longer than the limit of 4095");
	assert_int_equal(fake.creates, 1);
	free(long_path);
}

/* ---- PUT /snapshot/load: the body ---- */

static int parse_load(const char *single_quoted, struct snapshot_load_config *request, char *err,
		      size_t err_size)
{
	char *copy = strdup(single_quoted);
	json_t *body;
	int ret;

	assert_non_null(copy);
	for (char *c = copy; *c; c++)
		if (*c == '\'')
			*c = '"';
	body = json_loads(copy, JSON_DECODE_ANY, NULL);
	assert_non_null(body);
	ret = fc_snapshot_load_parse(body, request, err, err_size);
	json_decref(body);
	free(copy);
	return ret;
}

static void test_load_body_takes_every_field(void **state)
{
	static struct snapshot_load_config request;
	char err[FC_ERROR_MAX] = "";
	(void)state;

	assert_int_equal(parse_load("{'snapshot_path': '/s/vm.state', 'mem_backend': "
				    "{'backend_type': 'Uffd', 'backend_path': '/run/uffd.sock'}, "
				    "'track_dirty_pages': true, 'resume_vm': true, "
				    "'network_overrides': [{'iface_id': 'eth0', 'host_dev_name': "
				    "'tap7'}, {'iface_id': 'eth1', 'host_dev_name': 'tap8'}], "
				    "'vsock_override': null, 'clock_realtime': true, "
				    "'huge_pages': 'Transparent'}",
				    &request, err, sizeof(err)),
			 0);
	assert_string_equal(request.snapshot_path, "/s/vm.state");
	assert_int_equal(request.backend, MEM_BACKEND_UFFD);
	assert_string_equal(request.backend_path, "/run/uffd.sock");
	assert_true(request.track_dirty_pages);
	assert_true(request.resume_vm);
	assert_true(request.clock_realtime);
	assert_int_equal(request.huge_pages, RESTORE_HUGE_PAGES_TRANSPARENT);
	assert_int_equal(request.nr_net_overrides, 2);
	assert_string_equal(request.net_overrides[0].iface_id, "eth0");
	assert_string_equal(request.net_overrides[0].tap, "tap7");
	assert_string_equal(request.net_overrides[1].iface_id, "eth1");
	assert_string_equal(request.net_overrides[1].tap, "tap8");

	/* The defaults, and the deprecated spellings: mem_file_path is a File backend,
	 * enable_diff_snapshots is track_dirty_pages. */
	memset(&request, 0xa5, sizeof(request));
	assert_int_equal(parse_load("{'snapshot_path': '/s', 'mem_file_path': '/m', "
				    "'mem_backend': null}",
				    &request, err, sizeof(err)),
			 0);
	assert_int_equal(request.backend, MEM_BACKEND_FILE);
	assert_string_equal(request.backend_path, "/m");
	assert_false(request.track_dirty_pages);
	assert_false(request.resume_vm);
	assert_false(request.clock_realtime);
	assert_int_equal(request.huge_pages, RESTORE_HUGE_PAGES_SNAPSHOT);
	assert_int_equal(request.nr_net_overrides, 0);
	assert_int_equal(parse_load("{'snapshot_path': '/s', 'mem_file_path': '/m', "
				    "'enable_diff_snapshots': true}",
				    &request, err, sizeof(err)),
			 0);
	assert_true(request.track_dirty_pages);
	assert_int_equal(parse_load("{'snapshot_path': '/s', 'mem_backend': {'backend_path': "
				    "'/m', 'backend_type': 'File'}, 'mem_file_path': null, "
				    "'huge_pages': 'None', 'network_overrides': []}",
				    &request, err, sizeof(err)),
			 0);
	assert_int_equal(request.backend, MEM_BACKEND_FILE);
	assert_string_equal(request.backend_path, "/m");
	assert_int_equal(request.huge_pages, RESTORE_HUGE_PAGES_NONE);
	assert_int_equal(parse_load("{'snapshot_path': '/s', 'mem_file_path': '/m', "
				    "'huge_pages': 'Snapshot'}",
				    &request, err, sizeof(err)),
			 0);
	assert_int_equal(request.huge_pages, RESTORE_HUGE_PAGES_SNAPSHOT);
}

static void test_load_needs_exactly_one_memory_source_with_firecrackers_texts(void **state)
{
	(void)state;
	refused(HTTP_PUT, "/snapshot/load", "{'snapshot_path': '/s'}",
		"An error occurred when deserializing the json body of a request: missing field: "
		"either `mem_backend` or `mem_file_path` is required.");
	refused(HTTP_PUT, "/snapshot/load",
		"{'snapshot_path': '/s', 'mem_file_path': null, 'mem_backend': null}",
		"An error occurred when deserializing the json body of a request: missing field: "
		"either `mem_backend` or `mem_file_path` is required.");
	refused(HTTP_PUT, "/snapshot/load",
		"{'snapshot_path': '/s', 'mem_file_path': '/m', 'mem_backend': "
		"{'backend_type': 'File', 'backend_path': '/m'}}",
		"An error occurred when deserializing the json body of a request: too many "
		"fields: either `mem_backend` or `mem_file_path` exclusively is required.");
	assert_int_equal(fake.loads, 0);
}

static void test_load_body_refusals_name_the_field(void **state)
{
	static const struct {
		const char *body, *message;
	} cases[] = {
	    {"{'mem_file_path': '/m'}",
	     "missing required field 'snapshot_path' in the snapshot load body"},
	    {"{'snapshot_path': '', 'mem_file_path': '/m'}", "snapshot_path: must not be empty"},
	    {"{'snapshot_path': '/s', 'mem_file_path': ''}", "mem_file_path: must not be empty"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'diff': true}",
	     "unknown field 'diff' in the snapshot load body"},
	    {"{'snapshot_path': '/s', 'mem_backend': {'backend_type': 'File'}}",
	     "mem_backend: missing required field 'backend_path' in the mem_backend body"},
	    {"{'snapshot_path': '/s', 'mem_backend': {'backend_path': '/m'}}",
	     "mem_backend: missing required field 'backend_type' in the mem_backend body"},
	    {"{'snapshot_path': '/s', 'mem_backend': {'backend_path': '/m', 'backend_type': "
	     "'Memfd'}}",
	     "mem_backend.backend_type 'Memfd': must be one of File, Uffd"},
	    {"{'snapshot_path': '/s', 'mem_backend': {'backend_path': '', 'backend_type': "
	     "'Uffd'}}",
	     "mem_backend.backend_path: must not be empty"},
	    {"{'snapshot_path': '/s', 'mem_backend': {'backend_path': '/m', 'backend_type': "
	     "'File', 'x': 1}}",
	     "unknown field 'x' in the mem_backend body"},
	    {"{'snapshot_path': '/s', 'mem_backend': '/m'}",
	     "mem_backend: must be an object or null"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'resume_vm': 'yes'}",
	     "resume_vm: must be a boolean"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'track_dirty_pages': null}",
	     "track_dirty_pages: must be a boolean"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'clock_realtime': 1}",
	     "clock_realtime: must be a boolean"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'huge_pages': '2M'}",
	     "huge_pages '2M': hugetlbfs pages are not supported"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'huge_pages': '1G'}",
	     "huge_pages '1G': must be one of Snapshot, None, Transparent, 2M"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'vsock_override': "
	     "{'uds_path': '/v.sock'}}",
	     "vsock_override: wisp has no vsock device to override"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'vsock_override': {}}",
	     "missing required field 'uds_path'"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': null}",
	     "network_overrides: must be an array"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': ['eth0']}",
	     "network_overrides[0]: the network override must be a JSON object"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'eth0'}]}",
	     "network_overrides[0]: missing required field 'host_dev_name' in the network "
	     "override"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'eth0', 'host_dev_name': 'tap0', 'mac': 'x'}]}",
	     "unknown field 'mac' in the network override"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'eth0', 'host_dev_name': ''}]}",
	     "network_overrides[0].host_dev_name: must not be empty"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': '', 'host_dev_name': 'tap0'}]}",
	     "network_overrides[0].iface_id: must not be empty"},
	    /* IFNAMSIZ: a TAP's name has at most 15 characters. */
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'eth0', 'host_dev_name': 'tap456789012345'}, "
	     "{'iface_id': 'eth1', 'host_dev_name': 'tap4567890123456'}]}",
	     "network_overrides[1].host_dev_name: is 16 characters long, longer than the limit "
	     "of 15"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'eth0', 'host_dev_name': 'tap1'}, "
	     "{'iface_id': 'eth0', 'host_dev_name': 'tap2'}]}",
	     "network_overrides[1].iface_id 'eth0': is overridden twice (also in "
	     "network_overrides[0])"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'eth0', 'host_dev_name': 'tap1'}, "
	     "{'iface_id': 'eth1', 'host_dev_name': 'tap1'}]}",
	     "network_overrides[1].host_dev_name 'tap1': is given to two interfaces (also in "
	     "network_overrides[0])"},
	    {"{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
	     "[{'iface_id': 'a', 'host_dev_name': 't1'}, {'iface_id': 'b', 'host_dev_name': "
	     "'t2'}, {'iface_id': 'c', 'host_dev_name': 't3'}, {'iface_id': 'd', "
	     "'host_dev_name': 't4'}, {'iface_id': 'e', 'host_dev_name': 't5'}]}",
	     "network_overrides: 5 overrides, but wisp has at most 4 network interfaces"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused_saying(HTTP_PUT, "/snapshot/load", cases[i].body, cases[i].message, NULL);
	/* None of them reached the VMM, and the process is still fresh. */
	assert_int_equal(fake.loads, 0);
	assert_false(api.load_failed);
	expect(204, HTTP_PUT, "/snapshot/load", LOAD_BODY);
	assert_int_equal(fake.loads, 1);
}

static void test_load_overrides_at_the_limits_are_taken(void **state)
{
	static struct snapshot_load_config request;
	char err[FC_ERROR_MAX] = "";
	char id[CONFIG_ID_MAX + 32], body[1024];
	(void)state;

	memset(id, 'i', CONFIG_ID_MAX - 1);
	id[CONFIG_ID_MAX - 1] = '\0';
	snprintf(body, sizeof(body),
		 "{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
		 "[{'iface_id': 'a', 'host_dev_name': 't1'}, {'iface_id': 'b', 'host_dev_name': "
		 "'t2'}, {'iface_id': 'c', 'host_dev_name': 't3'}, {'iface_id': '%s', "
		 "'host_dev_name': 'tap456789012345'}]}",
		 id);
	assert_int_equal(parse_load(body, &request, err, sizeof(err)), 0);
	assert_int_equal(request.nr_net_overrides, CONFIG_MAX_NETS);
	assert_string_equal(request.net_overrides[3].iface_id, id);
	assert_string_equal(request.net_overrides[3].tap, "tap456789012345");
	strcat(id, "i");
	snprintf(body, sizeof(body),
		 "{'snapshot_path': '/s', 'mem_file_path': '/m', 'network_overrides': "
		 "[{'iface_id': '%s', 'host_dev_name': 'tap0'}]}",
		 id);
	memset(&request, 0x5a, sizeof(request));
	assert_int_equal(parse_load(body, &request, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "network_overrides[0].iface_id: is 64 characters long, longer "
				 "than the limit of 63");
	/* A refused body leaves the request as it was. */
	assert_int_equal(request.nr_net_overrides, 0x5a5a5a5a);
}

/* ---- PUT /snapshot/load: the state it needs and the state it leaves ---- */

static void test_load_on_a_fresh_process_calls_the_vmm_and_leaves_it_paused(void **state)
{
	(void)state;
	/* The logger, metrics and serial output may be set before, as in Firecracker. */
	expect(204, HTTP_PUT, "/logger", "{'log_path': '/run/wisp.log', 'level': 'Debug'}");
	expect(204, HTTP_PUT, "/metrics", "{'metrics_path': '/run/metrics.fifo'}");
	expect(204, HTTP_PUT, "/serial", "{'serial_out_path': '/run/console.log'}");
	expect(204, HTTP_PUT, "/snapshot/load",
	       "{'snapshot_path': '/s/vm.state', 'mem_backend': {'backend_type': 'File', "
	       "'backend_path': '/s/vm.mem'}, 'network_overrides': [{'iface_id': 'eth0', "
	       "'host_dev_name': 'tap9'}], 'track_dirty_pages': true}");
	assert_int_equal(fake.loads, 1);
	assert_string_equal(fake.load.snapshot_path, "/s/vm.state");
	assert_int_equal(fake.load.backend, MEM_BACKEND_FILE);
	assert_string_equal(fake.load.backend_path, "/s/vm.mem");
	assert_int_equal(fake.load.nr_net_overrides, 1);
	assert_string_equal(fake.load.net_overrides[0].tap, "tap9");
	assert_true(fake.load.track_dirty_pages);
	assert_false(fake.load.resume_vm);
	/* The op found the process's settings in *restored. */
	assert_string_equal(fake.load_entry.serial_out_path, "/run/console.log");
	assert_string_equal(fake.load_entry.logger.path, "/run/wisp.log");
	assert_string_equal(fake.load_entry.metrics_path, "/run/metrics.fifo");
	assert_string_equal(fake.load_entry.process.id, "clone-1");
	/* Afterwards: the restored VM, paused, with this process's own settings. */
	assert_int_equal(api.vm_state, API_VM_PAUSED);
	assert_int_equal(api.config.vcpus, 2);
	assert_int_equal(api.config.mem_mib, 256);
	assert_string_equal(api.config.kernel_path, "/snap/vmlinux");
	assert_int_equal(api.config.nr_drives, 1);
	assert_string_equal(api.config.process.id, "clone-1");
	assert_string_equal(api.config.logger.path, "/run/wisp.log");
	assert_int_equal(api.config.logger.level, LOG_LEVEL_DEBUG);
	assert_string_equal(api.config.metrics_path, "/run/metrics.fifo");
	assert_string_equal(api.config.serial_out_path, "/run/console.log");
	/* Firecracker: the snapshot does not keep track_dirty_pages; the load sets it. */
	assert_true(api.config.track_dirty_pages);
	assert_false(api.config.has_restore);
	expect(200, HTTP_GET, "/", NULL);
	assert_non_null(strstr(text, "\"id\":\"clone-1\",\"state\":\"Paused\""));
	expect(200, HTTP_GET, "/vm/config", NULL);
	assert_non_null(strstr(text, "\"kernel_image_path\":\"/snap/vmlinux\""));
	assert_non_null(strstr(text, "\"path_on_host\":\"/snap/rootfs.ext4\""));
	assert_non_null(strstr(text, "\"guest_mac\":\"06:00:ac:10:00:02\""));
	assert_non_null(strstr(text, "\"vcpu_count\":2,\"mem_size_mib\":256"));
	assert_non_null(strstr(text, "\"track_dirty_pages\":true"));
	expect(200, HTTP_GET, "/machine-config", NULL);
	assert_non_null(strstr(text, "\"vcpu_count\":2"));
}

static void test_a_loaded_vm_works_through_the_normal_paths(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/snapshot/load", LOAD_BODY);
	assert_int_equal(api.vm_state, API_VM_PAUSED);
	assert_false(fake.load.track_dirty_pages);
	assert_false(api.config.track_dirty_pages);
	/* Snapshot again right away (the VM is paused), then resume, pause, ... */
	expect(204, HTTP_PUT, "/snapshot/create", CREATE_BODY);
	assert_int_equal(fake.creates, 1);
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Resumed'}");
	assert_int_equal(fake.resumes, 1);
	assert_int_equal(api.vm_state, API_VM_RUNNING);
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY, API_MSG_CREATE_RUNNING);
	expect(204, HTTP_PATCH, "/drives/rootfs",
	       "{'drive_id': 'rootfs', 'path_on_host': '/other.ext4'}");
	assert_int_equal(fake.patch_drives, 1);
	assert_string_equal(fake.patched_drive, "rootfs");
	assert_string_equal(api.config.drives[0].path, "/other.ext4");
	expect(204, HTTP_PATCH, "/network-interfaces/eth0",
	       "{'iface_id': 'eth0', 'rx_rate_limiter': {'ops': {'size': 10, 'refill_time': "
	       "100}}}");
	assert_int_equal(fake.patch_nets, 1);
	assert_int_equal(api.config.nets[0].rx_rate_limiter.ops.size, 10);
	refused_saying(HTTP_PATCH, "/drives/nope", "{'drive_id': 'nope', 'path_on_host': '/x'}",
		       "drive 'nope' does not exist", NULL);
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Paused'}");
	expect(204, HTTP_PUT, "/snapshot/create", CREATE_BODY);
	assert_int_equal(fake.creates, 2);
	/* What only a fresh process may do is refused: it is a started VM now. */
	refused(HTTP_PUT, "/snapshot/load", LOAD_BODY, MSG_AFTER_START);
	refused(HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}", MSG_AFTER_START);
	refused(HTTP_PUT, "/boot-source", "{'kernel_image_path': '/k'}", MSG_AFTER_START);
	refused(HTTP_PATCH, "/machine-config", "{'vcpu_count': 1}", MSG_AFTER_START);
	assert_int_equal(fake.loads, 1);
	assert_int_equal(fake.starts, 0);
}

static void test_load_with_resume_vm_leaves_it_running(void **state)
{
	(void)state;
	expect(204, HTTP_PUT, "/snapshot/load",
	       "{'snapshot_path': '/s', 'mem_file_path': '/m', 'resume_vm': true}");
	assert_true(fake.load.resume_vm);
	assert_int_equal(api.vm_state, API_VM_RUNNING);
	expect(200, HTTP_GET, "/", NULL);
	assert_non_null(strstr(text, "\"state\":\"Running\""));
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY, API_MSG_CREATE_RUNNING);
	expect(204, HTTP_PATCH, "/vm", "{'state': 'Paused'}");
	assert_int_equal(fake.pauses, 1);
	expect(204, HTTP_PUT, "/snapshot/create", CREATE_BODY);
}

static void test_load_is_refused_after_boot_configuration_with_firecrackers_text(void **state)
{
	static const struct {
		enum http_method method;
		const char *path, *body;
	} configured[] = {
	    {HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}"},
	    {HTTP_PUT, "/drives/rootfs",
	     "{'drive_id': 'rootfs', 'path_on_host': '/r', 'is_root_device': true}"},
	    {HTTP_PUT, "/network-interfaces/eth0", "{'iface_id': 'eth0', 'host_dev_name': 'tap0'}"},
	    {HTTP_PUT, "/machine-config", "{'vcpu_count': 2, 'mem_size_mib': 256}"},
	    {HTTP_PATCH, "/machine-config", "{'mem_size_mib': 256}"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(configured) / sizeof(configured[0]); i++) {
		setup(NULL);
		expect(204, configured[i].method, configured[i].path, configured[i].body);
		refused(HTTP_PUT, "/snapshot/load", LOAD_BODY,
			"Load snapshot error: Loading a microVM snapshot not allowed after "
			"configuring boot-specific resources.");
		assert_int_equal(fake.loads, 0);
		/* A refusal by state is no failed load: the process may still boot. */
		assert_false(api.load_failed);
	}
	expect(204, HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}");
	expect(204, HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}");
	assert_int_equal(fake.starts, 1);
	/* Once started, Firecracker's post-boot text. */
	refused(HTTP_PUT, "/snapshot/load", LOAD_BODY, MSG_AFTER_START);
}

static void test_load_is_allowed_after_refused_configuration(void **state)
{
	(void)state;
	/* Requests that configured nothing leave the process fresh. */
	refused_saying(HTTP_PUT, "/machine-config", "{'vcpu_count': 0, 'mem_size_mib': 1}",
		       "vcpu_count", NULL);
	refused_saying(HTTP_PUT, "/drives/a",
		       "{'drive_id': 'b', 'path_on_host': '/x', "
		       "'is_root_device': false}",
		       "does not match", NULL);
	refused_saying(HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}", "kernel", NULL);
	expect(204, HTTP_PUT, "/snapshot/load", LOAD_BODY);
	assert_int_equal(fake.loads, 1);
}

static void test_a_load_that_failed_before_building_leaves_the_process_fresh(void **state)
{
	(void)state;
	fake.load_ret = -EINVAL; /* say, a bad checksum: nothing built */
	refused(HTTP_PUT, "/snapshot/load", LOAD_BODY,
		"Load snapshot error: the state file's checksum is wrong");
	assert_false(api.load_failed);
	assert_int_equal(api.vm_state, API_VM_NOT_STARTED);
	assert_string_equal(api.config.kernel_path, "");
	/* Another load goes to the VMM, and works. */
	fake.load_ret = 0;
	expect(204, HTTP_PUT, "/snapshot/load", LOAD_BODY);
	assert_int_equal(fake.loads, 2);
	assert_int_equal(api.vm_state, API_VM_PAUSED);
	/* Or, after such a failure, a boot. */
	setup(NULL);
	fake.load_ret = -ENOENT;
	expect(400, HTTP_PUT, "/snapshot/load", LOAD_BODY);
	expect(204, HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}");
	expect(204, HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}");
	assert_int_equal(fake.starts, 1);
}

static void test_a_failed_load_that_left_part_of_a_vm_spends_the_process(void **state)
{
	(void)state;
	fake.load_ret = -ENOTRECOVERABLE;
	refused(HTTP_PUT, "/snapshot/load", LOAD_BODY,
		"Load snapshot error: the state file's checksum is wrong");
	assert_int_equal(fake.loads, 1);
	assert_true(api.load_failed);
	assert_int_equal(api.vm_state, API_VM_NOT_STARTED);
	/* The configuration is not the half-restored one. */
	assert_string_equal(api.config.kernel_path, "");
	assert_int_equal(api.config.nr_drives, 0);
	/* Another load, a boot or boot configuration: refused, the VMM not asked. */
	fake.load_ret = 0;
	refused(HTTP_PUT, "/snapshot/load", LOAD_BODY,
		"Load snapshot error: a snapshot load already failed in this process, which may "
		"hold part of that VM: start a new wisp process to load or boot a VM.");
	refused(HTTP_PUT, "/boot-source", "{'kernel_image_path': '/vmlinux'}", API_MSG_LOAD_FAILED);
	refused(HTTP_PUT, "/drives/rootfs",
		"{'drive_id': 'rootfs', 'path_on_host': '/r', 'is_root_device': true}",
		API_MSG_LOAD_FAILED);
	refused(HTTP_PUT, "/network-interfaces/eth0",
		"{'iface_id': 'eth0', 'host_dev_name': 'tap0'}", API_MSG_LOAD_FAILED);
	refused(HTTP_PUT, "/machine-config", "{'vcpu_count': 1, 'mem_size_mib': 128}",
		API_MSG_LOAD_FAILED);
	refused(HTTP_PATCH, "/machine-config", "{'vcpu_count': 1}", API_MSG_LOAD_FAILED);
	refused(HTTP_PUT, "/actions", "{'action_type': 'InstanceStart'}", API_MSG_LOAD_FAILED);
	assert_int_equal(fake.loads, 1);
	assert_int_equal(fake.starts, 0);
	/* What does not build a VM still works. */
	expect(200, HTTP_GET, "/", NULL);
	assert_non_null(strstr(text, "\"state\":\"Not started\""));
	expect(200, HTTP_GET, "/vm/config", NULL);
	expect(204, HTTP_PUT, "/logger", "{'level': 'Debug'}");
	expect(204, HTTP_PUT, "/metrics", "{'metrics_path': '/m'}");
	/* A bad body is still answered as a bad body. */
	refused_saying(HTTP_PUT, "/snapshot/load", "{'snapshot_path': '/s'}", "missing field",
		       NULL);
}

static void test_an_unimplemented_op_is_a_400_not_a_crash(void **state)
{
	static const struct api_vmm_ops without = {.start = fake_start, .pause = fake_pause};
	static struct vmm_config defaults;
	(void)state;

	config_set_defaults(&defaults);
	api_state_init(&api, &defaults, "1.2.3", &without, NULL);
	refused(HTTP_PUT, "/snapshot/load", LOAD_BODY,
		"/snapshot/load is not supported by this wisp build.");
	assert_false(api.load_failed);
	api.vm_state = API_VM_PAUSED;
	refused(HTTP_PUT, "/snapshot/create", CREATE_BODY,
		"/snapshot/create is not supported by this wisp build.");
}

static void test_api_state_restored_keeps_the_process_settings(void **state)
{
	static struct vmm_config restored;
	(void)state;

	strcpy(api.config.logger.path, "/log");
	strcpy(api.config.metrics_path, "/metrics");
	strcpy(api.config.serial_out_path, "");
	strcpy(api.config.process.api_sock, "/run/api.sock");
	make_restored_vm(&restored);
	restored.has_restore = true;
	strcpy(restored.restore.snapshot_path, "/s");
	api_state_restored(&api, &restored, true);
	assert_int_equal(api.vm_state, API_VM_RUNNING);
	assert_string_equal(api.config.kernel_path, "/snap/vmlinux");
	assert_int_equal(api.config.nr_nets, 1);
	assert_string_equal(api.config.logger.path, "/log");
	assert_string_equal(api.config.metrics_path, "/metrics");
	assert_string_equal(api.config.serial_out_path, ""); /* not the snapshot's */
	assert_string_equal(api.config.process.api_sock, "/run/api.sock");
	assert_string_equal(api.config.process.id, "clone-1");
	assert_false(api.config.has_restore);
	assert_string_equal(api.config.restore.snapshot_path, "");
	api_state_restored(&api, &restored, false);
	assert_int_equal(api.vm_state, API_VM_PAUSED);
}

/* ---- the machine configuration a snapshot saves ---- */

/* Every field GET /vm/config shows, set to something other than its default. */
static void make_full_config(struct vmm_config *config)
{
	config_set_defaults(config);
	strcpy(config->kernel_path, "/boot/vmlinux");
	strcpy(config->initrd_path, "/boot/initrd.gz");
	strcpy(config->cmdline, "console=ttyS0 reboot=k panic=-1 -- /bin/sh -c \"echo hi\"");
	config->vcpus = 3;
	config->mem_mib = 1536;
	config->track_dirty_pages = true;
	config->nr_drives = 3;
	strcpy(config->drives[0].id, "data");
	strcpy(config->drives[0].path, "/img/data.raw");
	config->drives[0].engine = IO_ENGINE_SYNC;
	config->drives[0].cache = CACHE_WRITEBACK;
	config->drives[0].direct = true;
	config->drives[0].rate_limiter = (struct rate_limiter_config){
	    .bandwidth = {.size = 1 << 20, .one_time_burst = 4096, .refill_time_ms = 100},
	    .ops = {.size = 500, .one_time_burst = 0, .refill_time_ms = 1000}};
	strcpy(config->drives[1].id, "rootfs");
	strcpy(config->drives[1].path, "/img/rootfs.ext4");
	config->drives[1].root = true;
	config->drives[1].read_only = true;
	strcpy(config->drives[1].partuuid, "0eaa91a0-01");
	config->drives[1].engine = IO_ENGINE_ASYNC;
	strcpy(config->drives[2].id, "scratch");
	strcpy(config->drives[2].path, "/img/scratch.raw");
	config->drives[2].engine = IO_ENGINE_ASYNC;
	config->drives[2].direct = true;
	config->drives[2].rate_limiter.ops = (struct token_bucket_config){7, 3, 9};
	config->nr_nets = 2;
	strcpy(config->nets[0].id, "eth0");
	strcpy(config->nets[0].tap, "tap456789012345");
	config->nets[0].has_mac = true;
	memcpy(config->nets[0].mac, "\x02\xfc\x00\x00\x00\x05", 6);
	config->nets[0].rx_rate_limiter.bandwidth = (struct token_bucket_config){1000, 0, 10};
	config->nets[0].tx_rate_limiter.ops = (struct token_bucket_config){20, 5, 30};
	strcpy(config->nets[1].id, "eth1");
	strcpy(config->nets[1].tap, "tap1");
}

static char *snapshot_config_text(const struct vmm_config *config)
{
	json_t *json = fc_snapshot_config_json(config);
	char *out;

	assert_non_null(json);
	out = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(out);
	json_decref(json);
	return out;
}

static void test_vm_config_round_trips_through_its_json(void **state)
{
	static struct vmm_config original, parsed;
	char err[FC_ERROR_MAX] = "";
	char *first, *second;
	(void)state;

	make_full_config(&original);
	first = snapshot_config_text(&original);
	memset(&parsed, 0xa5, sizeof(parsed));
	if (fc_vm_config_parse(first, strlen(first), &parsed, err, sizeof(err)))
		fail_msg("%s: %s", err, first);
	second = snapshot_config_text(&parsed);
	assert_string_equal(second, first);
	/* Field by field: the root drive comes first, as GET /vm/config lists it and vm.c
	 * attaches it; the others keep their order. */
	assert_string_equal(parsed.kernel_path, original.kernel_path);
	assert_string_equal(parsed.initrd_path, original.initrd_path);
	assert_string_equal(parsed.cmdline, original.cmdline);
	assert_int_equal(parsed.vcpus, 3);
	assert_int_equal(parsed.mem_mib, 1536);
	assert_true(parsed.track_dirty_pages);
	assert_false(parsed.smt);
	assert_int_equal(parsed.nr_drives, 3);
	assert_memory_equal(&parsed.drives[0], &original.drives[1], sizeof(struct drive_config));
	assert_memory_equal(&parsed.drives[1], &original.drives[0], sizeof(struct drive_config));
	assert_memory_equal(&parsed.drives[2], &original.drives[2], sizeof(struct drive_config));
	assert_int_equal(parsed.nr_nets, 2);
	assert_memory_equal(&parsed.nets[0], &original.nets[0], sizeof(struct net_config));
	assert_memory_equal(&parsed.nets[1], &original.nets[1], sizeof(struct net_config));
	/* Read on top of the defaults: no process settings, no logger, no metrics. */
	assert_string_equal(parsed.process.id, CONFIG_DEFAULT_ID);
	assert_string_equal(parsed.logger.path, "");
	assert_string_equal(parsed.metrics_path, "");
	assert_false(parsed.has_restore);
	/* The text is GET /vm/config's, plus wisp's section for the O_DIRECT drives. */
	assert_non_null(strstr(first, "\"wisp\":{\"direct_drives\":[\"data\",\"scratch\"]}"));
	free(first);
	free(second);
}

static void test_vm_config_parse_takes_plain_get_vm_config_json(void **state)
{
	static struct vmm_config original, parsed;
	char err[FC_ERROR_MAX] = "";
	json_t *json;
	char *text, *again;
	(void)state;

	make_full_config(&original);
	json = fc_vm_config_json(&original);
	text = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_non_null(text);
	assert_int_equal(fc_vm_config_parse(text, strlen(text), &parsed, err, sizeof(err)), 0);
	json_decref(json);
	json = fc_vm_config_json(&parsed);
	again = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(again, text);
	/* Without wisp's section no drive is O_DIRECT. */
	for (unsigned int i = 0; i < parsed.nr_drives; i++)
		assert_false(parsed.drives[i].direct);
	json_decref(json);
	free(text);
	free(again);
}

static void test_vm_config_round_trips_a_minimal_vm(void **state)
{
	static struct vmm_config original, parsed;
	char err[FC_ERROR_MAX] = "";
	char *first, *second;
	(void)state;

	config_set_defaults(&original);
	strcpy(original.kernel_path, "/k");
	strcpy(original.cmdline, "");
	first = snapshot_config_text(&original);
	assert_int_equal(fc_vm_config_parse(first, strlen(first), &parsed, err, sizeof(err)), 0);
	second = snapshot_config_text(&parsed);
	assert_string_equal(second, first);
	assert_string_equal(parsed.cmdline, "");
	assert_string_equal(parsed.initrd_path, "");
	assert_int_equal(parsed.nr_drives, 0);
	assert_int_equal(parsed.nr_nets, 0);
	free(first);
	free(second);
}

static void test_vm_config_parse_refuses_bad_text_and_changes_nothing(void **state)
{
	static const struct {
		const char *text, *message;
	} cases[] = {
	    {"{\"boot-source\": ", "the snapshot's VM configuration: invalid JSON at line 1"},
	    {"{}", "the snapshot's VM configuration: missing required field 'boot-source'"},
	    {"{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"machine-config\": "
	     "{\"vcpu_count\": 99, \"mem_size_mib\": 128}}",
	     "the snapshot's VM configuration: machine-config.vcpu_count: 99 is out of range"},
	    {"{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"vsock\": {\"x\": 1}}",
	     "the snapshot's VM configuration: vsock: not supported yet"},
	    {"{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"wisp\": {}}",
	     "the snapshot's VM configuration: wisp: missing required field 'direct_drives'"},
	    {"{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"wisp\": "
	     "{\"direct_drives\": [\"rootfs\"]}}",
	     "the snapshot's VM configuration: wisp.direct_drives: element 0 is not the id of one "
	     "of the drives"},
	    {"{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"wisp\": "
	     "{\"direct_drives\": [], \"x\": 1}}",
	     "the snapshot's VM configuration: wisp: unknown field 'x'"},
	    {"{\"boot-source\": {\"kernel_image_path\": \"/k\"}, \"boot-source\": {}}",
	     "the snapshot's VM configuration: invalid JSON"},
	};
	static struct vmm_config config, before;
	char err[FC_ERROR_MAX];
	(void)state;

	make_full_config(&config);
	before = config;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		strcpy(err, "(untouched)");
		assert_int_equal(fc_vm_config_parse(cases[i].text, strlen(cases[i].text), &config,
						    err, sizeof(err)),
				 -EINVAL);
		if (strncmp(err, cases[i].message, strlen(cases[i].message)))
			fail_msg("'%s' does not start with '%s'", err, cases[i].message);
		assert_memory_equal(&config, &before, sizeof(config));
	}
}

#define T(name) cmocka_unit_test_setup(name, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_snapshot_paths_are_served_and_only_with_put),
	    T(test_create_body_is_checked_field_by_field),
	    T(test_create_is_refused_before_boot_with_firecrackers_text),
	    T(test_create_is_refused_on_a_running_vm_with_firecrackers_text),
	    T(test_create_on_a_paused_vm_calls_the_vmm_and_stays_paused),
	    T(test_a_failed_create_is_its_400_and_the_vm_stays_paused),
	    T(test_create_with_long_paths),
	    T(test_load_body_takes_every_field),
	    T(test_load_needs_exactly_one_memory_source_with_firecrackers_texts),
	    T(test_load_body_refusals_name_the_field),
	    T(test_load_overrides_at_the_limits_are_taken),
	    T(test_load_on_a_fresh_process_calls_the_vmm_and_leaves_it_paused),
	    T(test_a_loaded_vm_works_through_the_normal_paths),
	    T(test_load_with_resume_vm_leaves_it_running),
	    T(test_load_is_refused_after_boot_configuration_with_firecrackers_text),
	    T(test_load_is_allowed_after_refused_configuration),
	    T(test_a_load_that_failed_before_building_leaves_the_process_fresh),
	    T(test_a_failed_load_that_left_part_of_a_vm_spends_the_process),
	    T(test_an_unimplemented_op_is_a_400_not_a_crash),
	    T(test_api_state_restored_keeps_the_process_settings),
	    T(test_vm_config_round_trips_through_its_json),
	    T(test_vm_config_round_trips_a_minimal_vm),
	    T(test_vm_config_parse_takes_plain_get_vm_config_json),
	    T(test_vm_config_parse_refuses_bad_text_and_changes_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
