/* The wisp command line, parsed into a configuration; pure (no I/O), unit-tested. */
#ifndef WISP_CLI_H
#define WISP_CLI_H

#include "config.h"
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
	unsigned int nr_drives;
	struct drive_config drives[CONFIG_MAX_DRIVES];
	unsigned int nr_nets;
	struct net_config nets[CONFIG_MAX_NETS];
};

enum cli_result { CLI_RUN = 0, CLI_HELP = 1, CLI_VERSION = 2 };

/* Returns a cli_result, or -EINVAL with a one-line explanation in err. */
int cli_parse(int argc, char *argv[], struct vmm_config *config, char *err, size_t err_size);
/* Parses a whole decimal number in [min, max]; -EINVAL otherwise. */
int cli_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *value);
/* "id=rootfs,path=/x.img,ro=on,root=on,io_engine=Sync" -> drive; -EINVAL with a message. */
int cli_parse_drive(char *spec, struct drive_config *drive, char *err, size_t err_size);
/* "id=eth0,tap=tap0,mac=02:00:00:00:00:01" -> network interface. */
int cli_parse_net(char *spec, struct net_config *net, char *err, size_t err_size);
/* "aa:bb:cc:dd:ee:ff" -> 6 bytes; -EINVAL otherwise. */
int cli_parse_mac(const char *text, uint8_t mac[6]);
extern const char cli_usage[];

#endif
