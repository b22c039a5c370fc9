#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cli_usage[] =
    "Usage: wisp --kernel PATH [--initrd PATH] [--cmdline STR] [--vcpus N] [--mem-mib N]\n"
    "            [--log-level LEVEL]\n"
    "\n"
    "Boots a Linux guest in a KVM microVM. The guest's serial console (COM1) is this\n"
    "process's standard output and input.\n"
    "\n"
    "  --kernel PATH     guest kernel: an uncompressed vmlinux ELF (booted through its\n"
    "                    PVH entry if it has one, else in 64-bit mode) or a bzImage\n"
    "  --initrd PATH     initial ramdisk (initramfs) for the guest\n"
    "  --cmdline STR     guest kernel command line, replacing the default:\n"
    "                    \"" CLI_DEFAULT_CMDLINE "\"\n"
    "                    (keep reboot=k: the guest's reboot then ends the VM)\n"
    "  --vcpus N         number of vCPUs, 1 to 32 (default 1)\n"
    "  --mem-mib N       guest memory in MiB (default 128; at most the host's RAM)\n"
    "  --log-level L     error, warn, info or debug (default warn); logs go to stderr\n"
    "  --help            this text\n"
    "  --version         the version\n"
    "\n"
    "Exit status: 0 when the guest reboots or resets (there is no ACPI, so a guest ends\n"
    "its VM by rebooting; a triple fault counts as a reset, as in Firecracker),\n"
    "1 when the VMM fails (KVM error, unhandled exit), 2 for bad input (bad option,\n"
    "missing file, not a kernel, too much memory, bad vCPU count).\n";

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

enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_VCPUS, OPT_MEM, OPT_LOG, OPT_VERSION };

int cli_parse(int argc, char *const argv[], struct vmm_config *config, char *err, size_t err_size)
{
	static const struct option options[] = {
	    {"kernel", required_argument, NULL, OPT_KERNEL},
	    {"initrd", required_argument, NULL, OPT_INITRD},
	    {"cmdline", required_argument, NULL, OPT_CMDLINE},
	    {"vcpus", required_argument, NULL, OPT_VCPUS},
	    {"mem-mib", required_argument, NULL, OPT_MEM},
	    {"log-level", required_argument, NULL, OPT_LOG},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {NULL, 0, NULL, 0},
	};
	uint64_t number;
	int opt;

	*config = (struct vmm_config){
	    .cmdline = CLI_DEFAULT_CMDLINE,
	    .vcpus = CLI_DEFAULT_VCPUS,
	    .mem_mib = CLI_DEFAULT_MEM_MIB,
	    .log_level = LOG_LEVEL_WARN,
	};
	optind = 0; /* full re-initialisation, so the parser can run more than once */
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
		switch (opt) {
		case OPT_KERNEL:
			config->kernel_path = optarg;
			break;
		case OPT_INITRD:
			config->initrd_path = optarg;
			break;
		case OPT_CMDLINE:
			config->cmdline = optarg;
			break;
		case OPT_VCPUS:
			if (cli_parse_u64(optarg, 1, CLI_MAX_VCPUS, &number)) {
				snprintf(err, err_size,
					 "--vcpus '%s': must be a whole number from 1 to %d",
					 optarg, CLI_MAX_VCPUS);
				return -EINVAL;
			}
			config->vcpus = (unsigned int)number;
			break;
		case OPT_MEM:
			if (cli_parse_u64(optarg, 1, CLI_MAX_MEM_MIB, &number)) {
				snprintf(err, err_size,
					 "--mem-mib '%s': must be a whole number from 1 to %llu",
					 optarg, (unsigned long long)CLI_MAX_MEM_MIB);
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
		case 'h':
			return CLI_HELP;
		case OPT_VERSION:
			return CLI_VERSION;
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
	if (!config->kernel_path) {
		snprintf(err, err_size, "--kernel PATH is required (see --help)");
		return -EINVAL;
	}
	return CLI_RUN;
}
