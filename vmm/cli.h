/* The wisp command line, parsed into a configuration; pure (no I/O), unit-tested. */
#ifndef WISP_CLI_H
#define WISP_CLI_H

#include "log.h"

#include <stddef.h>
#include <stdint.h>

#define CLI_MAX_VCPUS	    32
#define CLI_DEFAULT_VCPUS   1
#define CLI_DEFAULT_MEM_MIB 128
#define CLI_MAX_MEM_MIB	    (1024ULL * 1024) /* 1 TiB; the host's RAM is checked later */
#define CLI_DEFAULT_CMDLINE                                                                        \
	"console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux "                                 \
	"i8042.nopnp i8042.dumbkbd"

struct vmm_config {
	const char *kernel_path;
	const char *initrd_path;
	const char *cmdline;
	unsigned int vcpus;
	uint64_t mem_mib;
	enum log_level log_level;
};

enum cli_result { CLI_RUN = 0, CLI_HELP = 1, CLI_VERSION = 2 };

/* Returns a cli_result, or -EINVAL with a one-line explanation in err. */
int cli_parse(int argc, char *const argv[], struct vmm_config *config, char *err, size_t err_size);
/* Parses a whole decimal number in [min, max]; -EINVAL otherwise. */
int cli_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *value);
extern const char cli_usage[];

#endif
