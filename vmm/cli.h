/* The wisp command line, parsed into a configuration; pure (no I/O), unit-tested. */
#ifndef WISP_CLI_H
#define WISP_CLI_H

#include "config.h"
#include "log.h"

#include <stddef.h>
#include <stdint.h>

enum cli_result { CLI_RUN = 0, CLI_HELP = 1, CLI_VERSION = 2, CLI_API_SCHEMA = 3 };

/* Returns a cli_result, or -EINVAL with a one-line explanation in err. */
int cli_parse(int argc, char *argv[], struct vmm_config *config, char *err, size_t err_size);
/* Firecracker's rule for --id: 1 to 64 letters, digits and dashes. */
int cli_check_instance_id(const char *id);
/* Parses a whole decimal number in [min, max]; -EINVAL otherwise. */
int cli_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *value);
/* "id=rootfs,path=/x.img,ro=on,root=on,io_engine=Sync" -> drive; -EINVAL with a message. */
int cli_parse_drive(char *spec, struct drive_config *drive, char *err, size_t err_size);
/* "id=eth0,tap=tap0,mac=02:00:00:00:00:01" -> network interface. */
int cli_parse_net(char *spec, struct net_config *net, char *err, size_t err_size);
/* "id=eth0,tap=tap7" -> a --restore network override; -EINVAL with a message. */
int cli_parse_net_override(char *spec, struct net_override *override, char *err, size_t err_size);
/* "aa:bb:cc:dd:ee:ff" -> 6 bytes; -EINVAL otherwise. */
int cli_parse_mac(const char *text, uint8_t mac[6]);
extern const char cli_usage[];

#endif
