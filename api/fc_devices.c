/*
 * PUT and PATCH /drives/{drive_id} and /network-interfaces/{iface_id}: Firecracker's
 * Drive, PartialDrive, NetworkInterface and PartialNetworkInterface bodies. A PUT adds the
 * device or replaces the one with the same id; a PATCH only describes the change, which
 * the VMM applies to the running device.
 */
#include "fc_bodies.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const char *const cache_type_names[] = {"Unsafe", "Writeback"};
static const enum cache_type cache_types[] = {CACHE_UNSAFE, CACHE_WRITEBACK};
static const char *const io_engine_names[] = {"Sync", "Async"};
static const enum io_engine io_engines[] = {IO_ENGINE_SYNC, IO_ENGINE_ASYNC};

/* ---- ids: Firecracker's checked_id(), plus wisp's length limit ---- */

static bool is_id_char(char c)
{
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

static bool is_valid_id(const char *id)
{
	for (; *id; id++)
		if (!is_id_char(*id))
			return false;
	return true;
}

/* NULL (no id from a URL, as in the config file) passes. */
static int check_path_id(const char *path_id, char *err, size_t err_size)
{
	if (!path_id)
		return 0;
	if (!*path_id)
		return fields_error(err, err_size, "", "id in the path", "The ID cannot be empty.");
	if (!is_valid_id(path_id))
		return fields_value_error(err, err_size, "", "id in the path", path_id,
					  "API Resource IDs can only contain alphanumeric "
					  "characters and underscores.");
	return 0;
}

static int read_id(const json_t *body, const char *name, const char *path_id, char *id,
		   const char *path, char *err, size_t err_size)
{
	const char *value = fields_string(body, name);
	int ret;

	if (!*value)
		return fields_error(err, err_size, path, name, "The ID cannot be empty.");
	if (!is_valid_id(value))
		return fields_value_error(err, err_size, path, name, value,
					  "API Resource IDs can only contain alphanumeric "
					  "characters and underscores.");
	ret = fields_copy_string(body, name, false, id, CONFIG_ID_MAX, path, err, err_size);
	if (ret)
		return ret;
	if (path_id && strcmp(path_id, id))
		return fields_error(err, err_size, path, NULL,
				    "The id from the path [%.64s] does not match the id "
				    "from the body [%s]!",
				    path_id, id);
	return 0;
}

/* ---- rate limiters ---- */

static void read_token_bucket(const json_t *bucket, struct token_bucket_config *out)
{
	out->size = fields_uint(bucket, "size", 0);
	out->one_time_burst = fields_uint(bucket, "one_time_burst", 0);
	out->refill_time_ms = fields_uint(bucket, "refill_time", 0);
}

/* PUT: a bucket not given is no limit. */
static void read_rate_limiter(const json_t *limiter, struct rate_limiter_config *out)
{
	const json_t *bucket;

	memset(out, 0, sizeof(*out));
	if (!limiter)
		return;
	bucket = fields_object(limiter, "bandwidth");
	if (bucket)
		read_token_bucket(bucket, &out->bandwidth);
	bucket = fields_object(limiter, "ops");
	if (bucket)
		read_token_bucket(bucket, &out->ops);
}

static void read_rate_limiter_patch(const json_t *limiter, struct fc_rate_limiter_patch *out)
{
	const json_t *bucket;

	memset(out, 0, sizeof(*out));
	if (!limiter)
		return;
	bucket = fields_object(limiter, "bandwidth");
	if (bucket) {
		out->has_bandwidth = true;
		read_token_bucket(bucket, &out->bandwidth);
	}
	bucket = fields_object(limiter, "ops");
	if (bucket) {
		out->has_ops = true;
		read_token_bucket(bucket, &out->ops);
	}
}

void fc_rate_limiter_patch_apply(const struct fc_rate_limiter_patch *patch,
				 struct rate_limiter_config *limiter)
{
	if (patch->has_bandwidth)
		limiter->bandwidth = patch->bandwidth;
	if (patch->has_ops)
		limiter->ops = patch->ops;
}

/* ---- PUT and PATCH /drives/{drive_id} ---- */

static int find_drive(const struct vmm_config *config, const char *id)
{
	for (unsigned int i = 0; i < config->nr_drives; i++)
		if (!strcmp(config->drives[i].id, id))
			return (int)i;
	return -1;
}

static int read_drive(const json_t *body, const char *path_id, struct drive_config *drive,
		      const char *path, char *err, size_t err_size)
{
	const char *socket;
	int ret;

	memset(drive, 0, sizeof(*drive));
	ret = fields_check_body(body, &fc_drive_body, path, err, err_size);
	if (ret)
		return ret;
	socket = fields_string(body, "socket");
	ret = read_id(body, "drive_id", path_id, drive->id, path, err, err_size);
	if (ret)
		return ret;
	if (socket)
		return fields_value_error(err, err_size, path, "socket", socket,
					  "vhost-user drives are not supported");
	if (!fields_given(body, "path_on_host"))
		return fields_error(err, err_size, path, NULL,
				    "missing required field 'path_on_host' in the drive body "
				    "(wisp has no vhost-user drives)");
	ret = fields_copy_string(body, "path_on_host", false, drive->path, sizeof(drive->path),
				 path, err, err_size);
	if (ret)
		return ret;
	/* Firecracker's default cache type is Unsafe. */
	ret = fc_read_enum(body, "cache_type", cache_type_names, ARRAY_SIZE(cache_type_names), 0,
			   path, err, err_size);
	if (ret < 0)
		return ret;
	drive->cache = cache_types[ret];
	/* Firecracker's default engine is Sync. */
	ret = fc_read_enum(body, "io_engine", io_engine_names, ARRAY_SIZE(io_engine_names), 0, path,
			   err, err_size);
	if (ret < 0)
		return ret;
	drive->engine = io_engines[ret];
	if (fields_given(body, "partuuid")) {
		ret = fields_copy_string(body, "partuuid", false, drive->partuuid,
					 sizeof(drive->partuuid), path, err, err_size);
		if (ret)
			return ret;
	}
	drive->read_only = fields_bool(body, "is_read_only", false);
	drive->root = fields_bool(body, "is_root_device", false);
	read_rate_limiter(fields_object(body, "rate_limiter"), &drive->rate_limiter);
	return 0;
}

int fc_drive_put_at(const json_t *body, const char *path_id, struct vmm_config *config,
		    const char *path, char *err, size_t err_size)
{
	struct drive_config drive;
	int index, ret;

	ret = check_path_id(path_id, err, err_size);
	if (ret)
		return ret;
	ret = read_drive(body, path_id, &drive, path, err, err_size);
	if (ret)
		return ret;
	index = find_drive(config, drive.id);
	for (unsigned int i = 0; drive.root && i < config->nr_drives; i++) {
		if ((int)i != index && config->drives[i].root)
			return fields_error(err, err_size, path, "is_root_device",
					    "A root block device already exists! (drive "
					    "'%s')",
					    config->drives[i].id);
	}
	if (index < 0 && config->nr_drives == CONFIG_MAX_DRIVES)
		return fields_value_error(err, err_size, path, "drive_id", drive.id,
					  "cannot add another drive: wisp supports at most %d",
					  CONFIG_MAX_DRIVES);
	if (index < 0)
		index = (int)config->nr_drives++;
	config->drives[index] = drive;
	return 0;
}

int fc_drive_put(const json_t *body, const char *path_id, struct vmm_config *config, char *err,
		 size_t err_size)
{
	return fc_drive_put_at(body, path_id, config, "", err, err_size);
}

int fc_drive_patch(const json_t *body, const char *path_id, struct fc_drive_patch *patch, char *err,
		   size_t err_size)
{
	struct fc_drive_patch result;
	int ret;

	memset(&result, 0, sizeof(result));
	ret = check_path_id(path_id, err, err_size);
	if (ret)
		return ret;
	ret = fields_check_body(body, &fc_drive_patch_body, "", err, err_size);
	if (ret)
		return ret;
	ret = read_id(body, "drive_id", path_id, result.id, "", err, err_size);
	if (ret)
		return ret;
	if (fields_given(body, "path_on_host")) {
		ret = fields_copy_string(body, "path_on_host", false, result.path,
					 sizeof(result.path), "", err, err_size);
		if (ret)
			return ret;
		result.has_path = true;
	}
	/* Firecracker takes a PATCH with neither as a vhost-user reconfiguration, which a
	 * file-backed drive refuses. */
	if (!result.has_path && !fields_given(body, "rate_limiter"))
		return fields_value_error(err, err_size, "", "drive_id", result.id,
					  "nothing to change: give path_on_host or rate_limiter");
	read_rate_limiter_patch(fields_object(body, "rate_limiter"), &result.rate_limiter);
	*patch = result;
	return 0;
}

/* ---- PUT and PATCH /network-interfaces/{iface_id} ---- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Firecracker's MacAddr: six groups of exactly two hex digits, either case. */
static int parse_mac(const char *text, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		int high = hex_digit(text[0]), low = high < 0 ? -1 : hex_digit(text[1]);

		if (low < 0 || text[2] != (i == 5 ? '\0' : ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(high << 4 | low);
		text += 3;
	}
	return 0;
}

static int find_net(const struct vmm_config *config, const char *id)
{
	for (unsigned int i = 0; i < config->nr_nets; i++)
		if (!strcmp(config->nets[i].id, id))
			return (int)i;
	return -1;
}

static int read_net(const json_t *body, const char *path_id, struct net_config *net,
		    const char *path, char *err, size_t err_size)
{
	const char *mac;
	int ret;

	memset(net, 0, sizeof(*net));
	ret = fields_check_body(body, &fc_net_body, path, err, err_size);
	if (ret)
		return ret;
	mac = fields_string(body, "guest_mac");
	ret = read_id(body, "iface_id", path_id, net->id, path, err, err_size);
	if (ret)
		return ret;
	ret = fields_copy_string(body, "host_dev_name", false, net->tap, sizeof(net->tap), path,
				 err, err_size);
	if (ret)
		return ret;
	if (mac) {
		if (parse_mac(mac, net->mac))
			return fields_value_error(err, err_size, path, "guest_mac", mac,
						  "The provided MAC address is invalid (expected "
						  "the form aa:bb:cc:dd:ee:ff)");
		net->has_mac = true;
	}
	if (fields_given(body, "mtu")) {
		char mtu[24];

		snprintf(mtu, sizeof(mtu), "%" PRIu64, fields_uint(body, "mtu", 0));
		return fields_value_error(err, err_size, path, "mtu", mtu,
					  "setting the guest's MTU is not supported");
	}
	read_rate_limiter(fields_object(body, "rx_rate_limiter"), &net->rx_rate_limiter);
	read_rate_limiter(fields_object(body, "tx_rate_limiter"), &net->tx_rate_limiter);
	return 0;
}

/* Another interface on the same tap, or with the same MAC, could never work. */
static int check_net_conflicts(const struct vmm_config *config, int index,
			       const struct net_config *net, const char *path, char *err,
			       size_t err_size)
{
	char mac[18];

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", net->mac[0], net->mac[1],
		 net->mac[2], net->mac[3], net->mac[4], net->mac[5]);
	for (unsigned int i = 0; i < config->nr_nets; i++) {
		const struct net_config *other = &config->nets[i];

		if ((int)i == index)
			continue;
		if (!strcmp(other->tap, net->tap))
			return fields_value_error(err, err_size, path, "host_dev_name", net->tap,
						  "already used by network interface '%s'",
						  other->id);
		if (net->has_mac && other->has_mac && !memcmp(other->mac, net->mac, 6))
			return fields_value_error(err, err_size, path, "guest_mac", mac,
						  "The MAC address is already in use (by network "
						  "interface '%s')",
						  other->id);
	}
	return 0;
}

int fc_net_put_at(const json_t *body, const char *path_id, struct vmm_config *config,
		  const char *path, char *err, size_t err_size)
{
	struct net_config net;
	int index, ret;

	ret = check_path_id(path_id, err, err_size);
	if (ret)
		return ret;
	ret = read_net(body, path_id, &net, path, err, err_size);
	if (ret)
		return ret;
	index = find_net(config, net.id);
	ret = check_net_conflicts(config, index, &net, path, err, err_size);
	if (ret)
		return ret;
	if (index < 0 && config->nr_nets == CONFIG_MAX_NETS)
		return fields_value_error(err, err_size, path, "iface_id", net.id,
					  "cannot add another network interface: wisp supports at "
					  "most %d",
					  CONFIG_MAX_NETS);
	/* Replaced in place, so the other interfaces keep their order (eth0, eth1, ...). */
	if (index < 0)
		index = (int)config->nr_nets++;
	config->nets[index] = net;
	return 0;
}

int fc_net_put(const json_t *body, const char *path_id, struct vmm_config *config, char *err,
	       size_t err_size)
{
	return fc_net_put_at(body, path_id, config, "", err, err_size);
}

int fc_net_patch(const json_t *body, const char *path_id, struct fc_net_patch *patch, char *err,
		 size_t err_size)
{
	struct fc_net_patch result;
	int ret;

	memset(&result, 0, sizeof(result));
	ret = check_path_id(path_id, err, err_size);
	if (ret)
		return ret;
	ret = fields_check_body(body, &fc_net_patch_body, "", err, err_size);
	if (ret)
		return ret;
	ret = read_id(body, "iface_id", path_id, result.id, "", err, err_size);
	if (ret)
		return ret;
	read_rate_limiter_patch(fields_object(body, "rx_rate_limiter"), &result.rx);
	read_rate_limiter_patch(fields_object(body, "tx_rate_limiter"), &result.tx);
	*patch = result;
	return 0;
}
