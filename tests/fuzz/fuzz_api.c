/*
 * libFuzzer target for the whole request path a client controls: HTTP parsing
 * (api/http.c), routing and JSON handling (api/api.c), and the JSON -> configuration
 * mapping (api/fc_config.c), with the VMM behind it replaced by stubs that succeed.
 *
 * Input: raw bytes as a client would send them on one connection, possibly several
 * pipelined requests. The first byte picks the VM state the requests meet (not started,
 * running, paused); the rest is the stream.
 *
 * Invariants (a violation calls __builtin_trap()): every reply has status 200, 204 or
 * 400; a 400 carries a body that is a JSON object with exactly one string member
 * "fault_message"; a 200 carries a JSON body; a 204 none; the configuration always keeps
 * its limits (drives, interfaces, vCPUs, memory, one root drive, NUL-terminated strings).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Ivmm tests/fuzz/fuzz_api.c \
 *        api/api.c api/http.c api/fc_config.c ... vmm/config.c vmm/log.c -ljansson
 */
#include "../../api/api.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int stub_start(void *opaque, const struct vmm_config *config, char *err, size_t size)
{
	(void)opaque;
	(void)config;
	(void)err;
	(void)size;
	return 0;
}

static int stub(void *opaque, char *err, size_t size)
{
	(void)opaque;
	(void)err;
	(void)size;
	return 0;
}

static int stub_drive(void *opaque, const char *id, const char *path,
		      const struct rate_limiter_config *limiter, char *err, size_t size)
{
	(void)id;
	(void)path;
	(void)limiter;
	return stub(opaque, err, size);
}

static int stub_net(void *opaque, const char *id, const struct rate_limiter_config *rx,
		    const struct rate_limiter_config *tx, char *err, size_t size)
{
	(void)id;
	(void)rx;
	(void)tx;
	return stub(opaque, err, size);
}

static int stub_logger(void *opaque, const struct logger_config *logger, char *err, size_t size)
{
	(void)logger;
	return stub(opaque, err, size);
}

static int stub_metrics(void *opaque, const char *path, char *err, size_t size)
{
	(void)path;
	return stub(opaque, err, size);
}

/* Never the real open(2): a fuzzed path could name a device file. A path with "missing"
 * in it fails, so the refusal path is fuzzed too. */
static int stub_open_check(void *opaque, const char *path, int flags)
{
	(void)opaque;
	(void)flags;
	return strstr(path, "missing") ? -ENOENT : 0;
}

static int stub_snapshot_create(void *opaque, const struct snapshot_create_config *request,
				char *err, size_t size)
{
	(void)request;
	return stub(opaque, err, size);
}

/* Restores a VM with one drive and one interface, or fails: before building anything (a
 * snapshot path with "missing" in it) or after (with "spent"), so that the restored, the
 * still fresh and the spent process are all fuzzed. */
static int stub_snapshot_load(void *opaque, const struct snapshot_load_config *request,
			      struct vmm_config *restored, char *err, size_t size)
{
	(void)opaque;
	if (strstr(request->snapshot_path, "missing")) {
		snprintf(err, size, "cannot open the snapshot");
		return -ENOENT;
	}
	if (strstr(request->snapshot_path, "spent")) {
		snprintf(err, size, "the vCPUs could not be restored");
		return -ENOTRECOVERABLE;
	}
	strcpy(restored->kernel_path, "/vmlinux");
	restored->nr_drives = 1;
	strcpy(restored->drives[0].id, "rootfs");
	strcpy(restored->drives[0].path, "/rootfs.ext4");
	restored->drives[0].root = true;
	restored->nr_nets = 1;
	strcpy(restored->nets[0].id, "eth0");
	strcpy(restored->nets[0].tap, "tap0");
	return 0;
}

static const struct api_vmm_ops stub_ops = {
    .start = stub_start,
    .pause = stub,
    .resume = stub,
    .send_ctrl_alt_del = stub,
    .flush_metrics = stub,
    .patch_drive = stub_drive,
    .patch_net = stub_net,
    .set_logger = stub_logger,
    .set_metrics = stub_metrics,
    .open_check = stub_open_check,
    .snapshot_create = stub_snapshot_create,
    .snapshot_load = stub_snapshot_load,
};

static void check_string(const char *text, size_t size)
{
	if (!memchr(text, '\0', size))
		__builtin_trap();
}

static void check_config(const struct vmm_config *config)
{
	unsigned int roots = 0;

	if (config->nr_drives > CONFIG_MAX_DRIVES || config->nr_nets > CONFIG_MAX_NETS ||
	    config->vcpus < 1 || config->vcpus > CONFIG_MAX_VCPUS || config->mem_mib < 1 ||
	    config->mem_mib > CONFIG_MAX_MEM_MIB)
		__builtin_trap();
	check_string(config->kernel_path, sizeof(config->kernel_path));
	check_string(config->cmdline, sizeof(config->cmdline));
	for (unsigned int i = 0; i < config->nr_drives; i++) {
		check_string(config->drives[i].id, sizeof(config->drives[i].id));
		check_string(config->drives[i].path, sizeof(config->drives[i].path));
		roots += config->drives[i].root;
	}
	for (unsigned int i = 0; i < config->nr_nets; i++)
		check_string(config->nets[i].tap, sizeof(config->nets[i].tap));
	if (roots > 1)
		__builtin_trap();
}

static void check_reply(const struct api_reply *reply)
{
	json_error_t error;
	json_t *body;

	if (reply->status == 204) {
		if (reply->body)
			__builtin_trap();
		return;
	}
	if ((reply->status != 200 && reply->status != 400) || !reply->body)
		__builtin_trap();
	body = json_loads(reply->body, 0, &error);
	if (!body)
		__builtin_trap();
	if (reply->status == 400 && (!json_is_object(body) || json_object_size(body) != 1 ||
				     !json_is_string(json_object_get(body, "fault_message"))))
		__builtin_trap();
	json_decref(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vmm_config defaults;
	static struct api_state state;
	const char *stream;
	size_t left;

	if (size < 1)
		return 0;
	config_set_defaults(&defaults);
	api_state_init(&state, &defaults, "0.0.0", &stub_ops, NULL);
	state.vm_state = (enum api_vm_state)(data[0] % 3);
	stream = (const char *)data + 1;
	left = size - 1;
	while (left) {
		struct http_request request;
		struct api_reply reply;
		char err[256];
		int used = http_parse_request(stream, left, 4096, &request, err, sizeof(err));

		if (used <= 0)
			break;
		if ((size_t)used > left)
			__builtin_trap();
		api_handle(&state, request.method, request.path, request.body, request.body_len,
			   &reply);
		check_reply(&reply);
		free(reply.body);
		check_config(&state.config);
		stream += used;
		left -= (size_t)used;
	}
	return 0;
}
