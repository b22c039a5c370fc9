#include "cli.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char cli_usage[] =
    "Usage: wisp --kernel PATH [--initrd PATH] [--cmdline STR] [--vcpus N] [--mem-mib N]\n"
    "            [--drive id=ID,path=FILE[,ro=on][,root=on][,direct=on][,io_engine=E]\n"
    "                     [,cache=C]]...\n"
    "            [--net id=ID,tap=TAPNAME[,mac=MAC]]... [--log-level LEVEL]\n"
    "            [--api-sock PATH] [--config-file FILE] [--no-api] [--id ID]\n"
    "            [--boot-timer] [--http-api-max-payload-size BYTES] [--no-acpi]\n"
    "            [--seccomp-filter FILE | --no-seccomp]\n"
    "       wisp --api-sock PATH     (configure and start the VM through the API)\n"
    "       wisp --no-api --config-file FILE\n"
    "       wisp --restore STATE (--mem-file MEM | --uffd-sock PATH) [--resume]\n"
    "            [--clock-realtime] [--track-dirty-pages]\n"
    "            [--net-override id=ID,tap=TAPNAME]... [--api-sock PATH] [--id ID]\n"
    "            [--log-level LEVEL]   (start the VM a snapshot holds)\n"
    "       wisp snapshot-info STATE (what a snapshot state file holds, whether its\n"
    "                    checksum is good; exit status 0 when valid, 2 when not)\n"
    "       wisp snapshot-rebase BASE_MEM DIFF_MEM (copies a Diff snapshot's memory\n"
    "                    file onto its base's, in place; exit status 0 when done)\n"
    "       wisp seccomp-filter-dump FILE (writes wisp's default seccomp filters as a\n"
    "                    --seccomp-filter file)\n"
    "\n"
    "Boots a Linux guest in a KVM microVM. The guest's serial console (COM1) is this\n"
    "process's standard output and input (or PUT /serial's file).\n"
    "\n"
    "  --api-sock PATH   serve Firecracker's HTTP API on the Unix socket PATH (which must\n"
    "                    not exist); without --kernel or --config-file wisp waits for\n"
    "                    the API's InstanceStart\n"
    "  --config-file F   configure the VM from F, Firecracker's config file JSON\n"
    "                    (boot-source, drives, machine-config, network-interfaces,\n"
    "                    logger, metrics), and boot it at once\n"
    "  --no-api          no API at all (needs --config-file)\n"
    "  --id ID           the instance's id (GET /, logs); default anonymous-instance\n"
    "  --boot-timer      log the time from wisp's start to the guest init's marker\n"
    "                    (\"wisp-init: ready\" on the console)\n"
    "  --http-api-max-payload-size BYTES\n"
    "                    largest API request body (default 51200)\n"
    "  --api-schema      print the API's paths, methods and body fields as JSON (what\n"
    "                    tests/api_contract.py checks against Firecracker's swagger)\n"
    "  --kernel PATH     guest kernel: an uncompressed vmlinux ELF (booted through its\n"
    "                    PVH entry if it has one, else in 64-bit mode) or a bzImage\n"
    "  --initrd PATH     initial ramdisk (initramfs) for the guest\n"
    "  --cmdline STR     guest kernel command line, replacing the default:\n"
    "                    \"" CONFIG_DEFAULT_CMDLINE "\"\n"
    "                    (keep reboot=k: the guest's reboot then ends the VM)\n"
    "  --vcpus N         number of vCPUs, 1 to 32 (default 1)\n"
    "  --mem-mib N       guest memory in MiB (default 128; at most the host's RAM)\n"
    "  --drive SPEC      a virtio-blk disk backed by FILE (a raw image); ro=on makes it\n"
    "                    read-only (guest writes fail with an I/O error); root=on makes\n"
    "                    it /dev/vda and adds root=/dev/vda to the kernel command line;\n"
    "                    direct=on reads and writes around the host's page cache\n"
    "                    (O_DIRECT, where the file system allows it); io_engine=Async\n"
    "                    (io_uring, the default) or Sync; cache=Unsafe (the default,\n"
    "                    as in Firecracker: the guest is offered no flush and the\n"
    "                    image is never synced for it) or Writeback (flush offered,\n"
    "                    each flush syncs the image); up to 8 drives\n"
    "  --net SPEC        a virtio-net interface on the existing TAP device TAPNAME; mac\n"
    "                    defaults to a random locally administered address; up to 4\n"
    "  --log-level L     error, warn, info or debug (default warn); logs go to stderr\n"
    "  --no-acpi         build no ACPI tables: the guest learns its CPUs from the MP\n"
    "                    table and its virtio devices from virtio_mmio.device= on the\n"
    "                    command line alone (both are always given; ACPI serves kernels\n"
    "                    without CONFIG_X86_MPPARSE or CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)\n"
    "  --seccomp-filter FILE\n"
    "                    each thread's seccomp filter from FILE (compiled BPF, one\n"
    "                    program per thread kind: README \"Seccomp\") instead of wisp's\n"
    "  --no-seccomp      no seccomp filters at all: for debugging only (logged as a\n"
    "                    warning). By default each thread (VMM, API, vCPU) may make only\n"
    "                    the system calls it needs; any other ends wisp with status 148\n"
    "  --restore STATE   start the VM the snapshot STATE holds instead of booting one, as\n"
    "                    PUT /snapshot/load does: its kernel, machine, drives and\n"
    "                    interfaces are the snapshot's, so --kernel, --initrd, --cmdline,\n"
    "                    --vcpus, --mem-mib, --drive, --net, --no-acpi and --config-file\n"
    "                    are refused\n"
    "  --mem-file MEM    the snapshot's memory file, mapped privately (the File backend)\n"
    "  --uffd-sock PATH  instead of --mem-file: a userfaultfd handler listening on the\n"
    "                    Unix socket PATH serves the guest's memory (the Uffd backend)\n"
    "  --resume          run the restored VM at once; without it the VM stays paused\n"
    "                    until PATCH /vm resumes it (so it needs --api-sock)\n"
    "  --clock-realtime  advance the guest's kvmclock by the wall-clock time since the\n"
    "                    snapshot (KVM_CLOCK_REALTIME)\n"
    "  --track-dirty-pages\n"
    "                    track the pages the restored guest dirties, for Diff snapshots\n"
    "  --net-override id=ID,tap=TAPNAME\n"
    "                    the snapshot's interface ID uses the TAP device TAPNAME (up to 4)\n"
    "  --help            this text\n"
    "  --version         the version\n"
    "\n"
    "Exit status: 0 when the guest powers off (ACPI S5), reboots or resets (a triple\n"
    "fault counts as a reset, as in Firecracker),\n"
    "1 when the VMM fails (KVM error, unhandled exit), 2 for bad input (bad option,\n"
    "missing file, not a kernel, too much memory, bad vCPU count, a drive or TAP that\n"
    "cannot be opened), 148 when a thread makes a system call its seccomp filter\n"
    "forbids, 128+N when signal N ends it (SIGINT, SIGTERM or SIGHUP: 143\n"
    "for SIGTERM), after the disk requests in flight have finished.\n";

int cli_check_instance_id(const char *id)
{
	size_t len = strlen(id);

	if (!len || len > CONFIG_ID_MAX)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '-')
			return -EINVAL;
	return 0;
}

int cli_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
	char *end;
	unsigned long long parsed;

	if (!text || !isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	parsed = strtoull(text, &end, 10);
	if (errno || *end || parsed < min || parsed > max)
		return -EINVAL;
	*value = parsed;
	return 0;
}

enum {
	OPT_KERNEL = 256,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_VCPUS,
	OPT_MEM,
	OPT_LOG,
	OPT_API_SOCK,
	OPT_CONFIG_FILE,
	OPT_NO_API,
	OPT_ID,
	OPT_BOOT_TIMER,
	OPT_MAX_PAYLOAD,
	OPT_API_SCHEMA,
	OPT_VERSION,
	OPT_DRIVE,
	OPT_NET,
	OPT_RESTORE,
	OPT_MEM_FILE,
	OPT_UFFD_SOCK,
	OPT_RESUME,
	OPT_CLOCK_REALTIME,
	OPT_TRACK_DIRTY_PAGES,
	OPT_NET_OVERRIDE,
	OPT_NO_ACPI,
	OPT_NO_SECCOMP,
	OPT_SECCOMP_FILTER,
};

static bool parse_on_off(const char *value, bool *out)
{
	if (!strcmp(value, "on") || !strcmp(value, "true") || !strcmp(value, "1"))
		*out = true;
	else if (!strcmp(value, "off") || !strcmp(value, "false") || !strcmp(value, "0"))
		*out = false;
	else
		return false;
	return true;
}

/* Splits "k=v,k=v" in place; calls `field` for each pair. */
static int parse_kv(char *spec, const char *what, char *err, size_t err_size,
		    int (*field)(void *target, const char *key, const char *value, char *err,
				 size_t err_size),
		    void *target)
{
	char *saveptr = NULL;
	for (char *item = strtok_r(spec, ",", &saveptr); item;
	     item = strtok_r(NULL, ",", &saveptr)) {
		char *eq = strchr(item, '=');
		if (!eq || eq == item) {
			snprintf(err, err_size, "%s: '%s' is not key=value", what, item);
			return -EINVAL;
		}
		*eq = '\0';
		int rc = field(target, item, eq + 1, err, err_size);
		if (rc)
			return rc;
	}
	return 0;
}

static int drive_field(void *target, const char *key, const char *value, char *err, size_t err_size)
{
	struct drive_config *drive = target;
	if (!strcmp(key, "id") || !strcmp(key, "path")) {
		char *dst = !strcmp(key, "id") ? drive->id : drive->path;
		size_t size = !strcmp(key, "id") ? sizeof(drive->id) : sizeof(drive->path);
		if (config_copy_string(dst, size, value)) {
			snprintf(err, err_size, "--drive %s: at most %zu characters", key,
				 size - 1);
			return -EINVAL;
		}
	} else if (!strcmp(key, "ro") || !strcmp(key, "root") || !strcmp(key, "direct")) {
		bool *flag = !strcmp(key, "ro")	    ? &drive->read_only
			     : !strcmp(key, "root") ? &drive->root
						    : &drive->direct;
		if (!parse_on_off(value, flag)) {
			snprintf(err, err_size, "--drive %s='%s': must be on or off", key, value);
			return -EINVAL;
		}
	} else if (!strcmp(key, "io_engine")) {
		if (!strcasecmp(value, "async"))
			drive->engine = IO_ENGINE_ASYNC;
		else if (!strcasecmp(value, "sync"))
			drive->engine = IO_ENGINE_SYNC;
		else {
			snprintf(err, err_size, "--drive io_engine='%s': must be Async or Sync",
				 value);
			return -EINVAL;
		}
	} else if (!strcmp(key, "cache")) {
		if (!strcasecmp(value, "unsafe"))
			drive->cache = CACHE_UNSAFE;
		else if (!strcasecmp(value, "writeback"))
			drive->cache = CACHE_WRITEBACK;
		else {
			snprintf(err, err_size, "--drive cache='%s': must be Unsafe or Writeback",
				 value);
			return -EINVAL;
		}
	} else {
		snprintf(err, err_size,
			 "--drive: unknown key '%s' (id, path, ro, root, direct, io_engine, cache)",
			 key);
		return -EINVAL;
	}
	return 0;
}

int cli_parse_drive(char *spec, struct drive_config *drive, char *err, size_t err_size)
{
	*drive = (struct drive_config){.engine = IO_ENGINE_ASYNC, .cache = CACHE_UNSAFE};
	int rc = parse_kv(spec, "--drive", err, err_size, drive_field, drive);
	if (rc)
		return rc;
	if (!*drive->id || !*drive->path) {
		snprintf(err, err_size, "--drive needs both id= and path=");
		return -EINVAL;
	}
	return 0;
}

int cli_parse_mac(const char *text, uint8_t mac[6])
{
	unsigned int bytes[6];
	char tail;
	if (strlen(text) != 17 || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &bytes[0], &bytes[1],
					 &bytes[2], &bytes[3], &bytes[4], &bytes[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (!isxdigit((unsigned char)text[i * 3]) ||
		    !isxdigit((unsigned char)text[i * 3 + 1]))
			return -EINVAL;
		mac[i] = (uint8_t)bytes[i];
	}
	return 0;
}

static int net_field(void *target, const char *key, const char *value, char *err, size_t err_size)
{
	struct net_config *net = target;
	if (!strcmp(key, "id") || !strcmp(key, "tap")) {
		char *dst = !strcmp(key, "id") ? net->id : net->tap;
		size_t size = !strcmp(key, "id") ? sizeof(net->id) : sizeof(net->tap);
		if (config_copy_string(dst, size, value)) {
			snprintf(err, err_size, "--net %s='%s': at most %zu characters", key, value,
				 size - 1);
			return -EINVAL;
		}
	} else if (!strcmp(key, "mac")) {
		if (cli_parse_mac(value, net->mac)) {
			snprintf(err, err_size, "--net mac='%s': must look like 02:00:00:00:00:01",
				 value);
			return -EINVAL;
		}
		net->has_mac = true;
	} else {
		snprintf(err, err_size, "--net: unknown key '%s' (id, tap, mac)", key);
		return -EINVAL;
	}
	return 0;
}

int cli_parse_net(char *spec, struct net_config *net, char *err, size_t err_size)
{
	*net = (struct net_config){0};
	int rc = parse_kv(spec, "--net", err, err_size, net_field, net);
	if (rc)
		return rc;
	if (!*net->id || !*net->tap) {
		snprintf(err, err_size, "--net needs both id= and tap=");
		return -EINVAL;
	}
	return 0;
}

static int net_override_field(void *target, const char *key, const char *value, char *err,
			      size_t err_size)
{
	struct net_override *override = target;
	bool is_id = !strcmp(key, "id");

	if (!is_id && strcmp(key, "tap")) {
		snprintf(err, err_size, "--net-override: unknown key '%s' (id, tap)", key);
		return -EINVAL;
	}
	if (config_copy_string(is_id ? override->iface_id : override->tap,
			       is_id ? sizeof(override->iface_id) : sizeof(override->tap), value)) {
		snprintf(err, err_size, "--net-override %s='%s': at most %zu characters", key,
			 value, (is_id ? sizeof(override->iface_id) : sizeof(override->tap)) - 1);
		return -EINVAL;
	}
	return 0;
}

int cli_parse_net_override(char *spec, struct net_override *override, char *err, size_t err_size)
{
	*override = (struct net_override){0};
	int rc = parse_kv(spec, "--net-override", err, err_size, net_override_field, override);
	if (rc)
		return rc;
	if (!*override->iface_id || !*override->tap) {
		snprintf(err, err_size, "--net-override needs both id= and tap=");
		return -EINVAL;
	}
	return 0;
}

/* --restore starts the VM a snapshot holds: what would configure a VM to boot has no
 * place beside it, and the memory comes from exactly one source. `boot_option` is the
 * name of the first boot option given (NULL: none), `restore_option` that of the first
 * option only --restore takes. */
static int cli_check_restore(const struct vmm_config *config, const char *boot_option,
			     const char *restore_option, bool mem_file, bool uffd_sock, char *err,
			     size_t err_size)
{
	const struct snapshot_load_config *restore = &config->restore;

	if (!config->has_restore) {
		if (!restore_option)
			return 0;
		snprintf(err, err_size, "--%s needs --restore STATE (see --help)", restore_option);
		return -EINVAL;
	}
	if (boot_option) {
		snprintf(err, err_size,
			 "--restore starts the VM the snapshot holds, with its own kernel, "
			 "machine and devices: --%s cannot be given with it (use --net-override to "
			 "give an interface another TAP)",
			 boot_option);
		return -EINVAL;
	}
	if (mem_file && uffd_sock) {
		snprintf(err, err_size,
			 "--mem-file and --uffd-sock contradict each other: the guest memory "
			 "comes from one of them");
		return -EINVAL;
	}
	if (!restore->resume_vm && !*config->process.api_sock) {
		snprintf(err, err_size,
			 "--restore without --resume leaves the VM paused, and without --api-sock "
			 "nothing could resume it: add --resume or --api-sock PATH");
		return -EINVAL;
	}
	if (!mem_file && !uffd_sock) {
		snprintf(err, err_size,
			 "--restore needs the guest memory: --mem-file MEM (the snapshot's memory "
			 "file) or --uffd-sock PATH (a userfaultfd handler's socket)");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < restore->nr_net_overrides; i++)
		for (unsigned int j = 0; j < i; j++) {
			const struct net_override *a = &restore->net_overrides[i],
						  *b = &restore->net_overrides[j];
			if (!strcmp(a->iface_id, b->iface_id) || !strcmp(a->tap, b->tap)) {
				snprintf(err, err_size,
					 "--net-override id or tap '%s' is used twice",
					 !strcmp(a->iface_id, b->iface_id) ? a->iface_id : a->tap);
				return -EINVAL;
			}
		}
	return 0;
}

/* Ids are unique per kind, and only one drive can be the root. */
static int cli_check_devices(const struct vmm_config *config, char *err, size_t err_size)
{
	unsigned int roots = 0;
	for (unsigned int i = 0; i < config->nr_drives; i++) {
		roots += config->drives[i].root;
		for (unsigned int j = 0; j < i; j++)
			if (!strcmp(config->drives[i].id, config->drives[j].id)) {
				snprintf(err, err_size, "--drive id '%s' is used twice",
					 config->drives[i].id);
				return -EINVAL;
			}
	}
	if (roots > 1) {
		snprintf(err, err_size, "only one --drive can have root=on");
		return -EINVAL;
	}
	for (unsigned int i = 0; i < config->nr_nets; i++)
		for (unsigned int j = 0; j < i; j++)
			if (!strcmp(config->nets[i].id, config->nets[j].id) ||
			    !strcmp(config->nets[i].tap, config->nets[j].tap)) {
				snprintf(err, err_size, "--net id or tap '%s' is used twice",
					 config->nets[i].id);
				return -EINVAL;
			}
	return 0;
}

int cli_parse(int argc, char *argv[], struct vmm_config *config, char *err, size_t err_size)
{
	static const struct option options[] = {
	    {"kernel", required_argument, NULL, OPT_KERNEL},
	    {"api-sock", required_argument, NULL, OPT_API_SOCK},
	    {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
	    {"no-api", no_argument, NULL, OPT_NO_API},
	    {"id", required_argument, NULL, OPT_ID},
	    {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
	    {"no-acpi", no_argument, NULL, OPT_NO_ACPI},
	    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
	    {"seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER},
	    {"http-api-max-payload-size", required_argument, NULL, OPT_MAX_PAYLOAD},
	    {"api-schema", no_argument, NULL, OPT_API_SCHEMA},
	    {"initrd", required_argument, NULL, OPT_INITRD},
	    {"cmdline", required_argument, NULL, OPT_CMDLINE},
	    {"vcpus", required_argument, NULL, OPT_VCPUS},
	    {"mem-mib", required_argument, NULL, OPT_MEM},
	    {"log-level", required_argument, NULL, OPT_LOG},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {"drive", required_argument, NULL, OPT_DRIVE},
	    {"net", required_argument, NULL, OPT_NET},
	    {"restore", required_argument, NULL, OPT_RESTORE},
	    {"mem-file", required_argument, NULL, OPT_MEM_FILE},
	    {"uffd-sock", required_argument, NULL, OPT_UFFD_SOCK},
	    {"resume", no_argument, NULL, OPT_RESUME},
	    {"clock-realtime", no_argument, NULL, OPT_CLOCK_REALTIME},
	    {"track-dirty-pages", no_argument, NULL, OPT_TRACK_DIRTY_PAGES},
	    {"net-override", required_argument, NULL, OPT_NET_OVERRIDE},
	    {NULL, 0, NULL, 0},
	};
	struct snapshot_load_config *restore = &config->restore;
	const char *boot_option = NULL, *restore_option = NULL;
	bool mem_file = false, uffd_sock = false;
	uint64_t number;
	int opt;

	config_set_defaults(config);
	optind = 0; /* full re-initialisation, so the parser can run more than once */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
		/* For the --restore checks: the first option of each kind, by its full name
		 * (getopt also takes a prefix of it). */
		for (const struct option *o = options; o->name; o++) {
			if (o->val != opt)
				continue;
			bool boot = opt == OPT_KERNEL || opt == OPT_INITRD || opt == OPT_CMDLINE ||
				    opt == OPT_VCPUS || opt == OPT_MEM || opt == OPT_DRIVE ||
				    opt == OPT_NET || opt == OPT_CONFIG_FILE || opt == OPT_NO_ACPI;
			bool restore_only = opt == OPT_MEM_FILE || opt == OPT_UFFD_SOCK ||
					    opt == OPT_RESUME || opt == OPT_CLOCK_REALTIME ||
					    opt == OPT_TRACK_DIRTY_PAGES || opt == OPT_NET_OVERRIDE;
			if (boot && !boot_option)
				boot_option = o->name;
			if (restore_only && !restore_option)
				restore_option = o->name;
		}
		switch (opt) {
		case OPT_KERNEL:
		case OPT_INITRD:
		case OPT_CMDLINE: {
			char *dst = opt == OPT_KERNEL	? config->kernel_path
				    : opt == OPT_INITRD ? config->initrd_path
							: config->cmdline;
			size_t size = opt == OPT_CMDLINE ? sizeof(config->cmdline)
							 : sizeof(config->kernel_path);
			if (config_copy_string(dst, size, optarg)) {
				snprintf(err, err_size, "--%s: longer than %zu characters",
					 opt == OPT_KERNEL   ? "kernel"
					 : opt == OPT_INITRD ? "initrd"
							     : "cmdline",
					 size - 1);
				return -EINVAL;
			}
			break;
		}
		case OPT_API_SOCK:
			if (config_copy_string(config->process.api_sock,
					       sizeof(config->process.api_sock), optarg)) {
				snprintf(
				    err, err_size,
				    "--api-sock: a Unix socket path has at most %zu characters",
				    sizeof(config->process.api_sock) - 1);
				return -EINVAL;
			}
			break;
		case OPT_CONFIG_FILE:
			if (config_copy_string(config->process.config_file,
					       sizeof(config->process.config_file), optarg)) {
				snprintf(err, err_size, "--config-file: longer than %d characters",
					 CONFIG_PATH_MAX - 1);
				return -EINVAL;
			}
			break;
		case OPT_NO_API:
			config->process.no_api = true;
			break;
		case OPT_BOOT_TIMER:
			config->process.boot_timer = true;
			break;
		case OPT_NO_ACPI:
			config->no_acpi = true;
			break;
		case OPT_NO_SECCOMP:
			config->process.no_seccomp = true;
			break;
		case OPT_SECCOMP_FILTER:
			if (config_copy_string(config->process.seccomp_filter,
					       sizeof(config->process.seccomp_filter), optarg)) {
				snprintf(err, err_size,
					 "--seccomp-filter: longer than %d characters",
					 CONFIG_PATH_MAX - 1);
				return -EINVAL;
			}
			break;
		case OPT_ID:
			if (cli_check_instance_id(optarg)) {
				snprintf(err, err_size,
					 "--id '%s': 1 to %d letters, digits and dashes", optarg,
					 CONFIG_ID_MAX);
				return -EINVAL;
			}
			strcpy(config->process.id, optarg);
			break;
		case OPT_MAX_PAYLOAD:
			if (cli_parse_u64(optarg, 1, 16 << 20, &config->process.max_payload)) {
				snprintf(
				    err, err_size,
				    "--http-api-max-payload-size '%s': a whole number of bytes "
				    "from 1 to %d",
				    optarg, 16 << 20);
				return -EINVAL;
			}
			break;
		case OPT_VCPUS:
			if (cli_parse_u64(optarg, 1, CONFIG_MAX_VCPUS, &number)) {
				snprintf(err, err_size,
					 "--vcpus '%s': must be a whole number from 1 to %d",
					 optarg, CONFIG_MAX_VCPUS);
				return -EINVAL;
			}
			config->vcpus = (unsigned int)number;
			break;
		case OPT_MEM:
			if (cli_parse_u64(optarg, 1, CONFIG_MAX_MEM_MIB, &number)) {
				snprintf(err, err_size,
					 "--mem-mib '%s': must be a whole number from 1 to %llu",
					 optarg, (unsigned long long)CONFIG_MAX_MEM_MIB);
				return -EINVAL;
			}
			config->mem_mib = number;
			break;
		case OPT_LOG:
			if (log_parse_level(optarg, &config->log_level)) {
				snprintf(err, err_size,
					 "--log-level '%s': must be error, warn, info or debug",
					 optarg);
				return -EINVAL;
			}
			break;
		case OPT_DRIVE:
			if (config->nr_drives == CONFIG_MAX_DRIVES) {
				snprintf(err, err_size, "at most %d --drive options",
					 CONFIG_MAX_DRIVES);
				return -EINVAL;
			}
			if (cli_parse_drive(optarg, &config->drives[config->nr_drives], err,
					    err_size))
				return -EINVAL;
			config->nr_drives++;
			break;
		case OPT_NET:
			if (config->nr_nets == CONFIG_MAX_NETS) {
				snprintf(err, err_size, "at most %d --net options",
					 CONFIG_MAX_NETS);
				return -EINVAL;
			}
			if (cli_parse_net(optarg, &config->nets[config->nr_nets], err, err_size))
				return -EINVAL;
			config->nr_nets++;
			break;
		case OPT_RESTORE:
			if (config_copy_string(restore->snapshot_path,
					       sizeof(restore->snapshot_path), optarg) ||
			    !*optarg) {
				snprintf(err, err_size, "--restore: a path of 1 to %d characters",
					 CONFIG_PATH_MAX - 1);
				return -EINVAL;
			}
			config->has_restore = true;
			break;
		case OPT_MEM_FILE:
		case OPT_UFFD_SOCK:
			if (config_copy_string(restore->backend_path, sizeof(restore->backend_path),
					       optarg) ||
			    !*optarg) {
				snprintf(err, err_size, "--%s: a path of 1 to %d characters",
					 opt == OPT_MEM_FILE ? "mem-file" : "uffd-sock",
					 CONFIG_PATH_MAX - 1);
				return -EINVAL;
			}
			restore->backend =
			    opt == OPT_MEM_FILE ? MEM_BACKEND_FILE : MEM_BACKEND_UFFD;
			mem_file |= opt == OPT_MEM_FILE;
			uffd_sock |= opt == OPT_UFFD_SOCK;
			break;
		case OPT_RESUME:
			restore->resume_vm = true;
			break;
		case OPT_CLOCK_REALTIME:
			restore->clock_realtime = true;
			break;
		case OPT_TRACK_DIRTY_PAGES:
			restore->track_dirty_pages = true;
			break;
		case OPT_NET_OVERRIDE:
			if (restore->nr_net_overrides == CONFIG_MAX_NETS) {
				snprintf(err, err_size, "at most %d --net-override options",
					 CONFIG_MAX_NETS);
				return -EINVAL;
			}
			if (cli_parse_net_override(
				optarg, &restore->net_overrides[restore->nr_net_overrides], err,
				err_size))
				return -EINVAL;
			restore->nr_net_overrides++;
			break;
		case 'h':
			return CLI_HELP;
		case OPT_VERSION:
			return CLI_VERSION;
		case OPT_API_SCHEMA:
			return CLI_API_SCHEMA;
		case ':':
			snprintf(err, err_size, "option %s needs a value", argv[optind - 1]);
			return -EINVAL;
		default:
			if (optopt >= OPT_KERNEL)
				snprintf(err, err_size, "option %s needs a value",
					 argv[optind - 1]);
			else if (optopt)
				/* inside a bundle like -xh, optind still points at it */
				snprintf(err, err_size, "unknown option '-%c' (see --help)",
					 optopt);
			else
				snprintf(err, err_size, "unknown option '%s' (see --help)",
					 argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		snprintf(err, err_size, "unexpected argument '%s' (see --help)", argv[optind]);
		return -EINVAL;
	}
	if (cli_check_devices(config, err, err_size))
		return -EINVAL;
	if (cli_check_restore(config, boot_option, restore_option, mem_file, uffd_sock, err,
			      err_size))
		return -EINVAL;
	if (config->process.no_api && !*config->process.config_file && !config->has_restore) {
		snprintf(err, err_size,
			 "--no-api needs --config-file FILE or --restore STATE to say what to run");
		return -EINVAL;
	}
	if (config->process.no_seccomp && *config->process.seccomp_filter) {
		snprintf(err, err_size, "--no-seccomp and --seccomp-filter contradict each other");
		return -EINVAL;
	}
	if (config->process.no_api && *config->process.api_sock) {
		snprintf(err, err_size, "--no-api and --api-sock contradict each other");
		return -EINVAL;
	}
	if (!*config->kernel_path && !*config->process.config_file && !*config->process.api_sock &&
	    !config->has_restore) {
		snprintf(err, err_size,
			 "say what to boot: --kernel PATH, --config-file FILE, --restore STATE, or "
			 "--api-sock PATH to wait for the API (see --help)");
		return -EINVAL;
	}
	return CLI_RUN;
}
