/* `wisp snapshot-info STATE`: what a snapshot state file holds and whether it is intact. */
#ifndef WISP_SNAPSHOT_INFO_H
#define WISP_SNAPSHOT_INFO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Prints to `out` what the state file in [data, data + size) holds: format and wisp
 * version, CPU vendor (and whether `host_vendor` matches, unless NULL), KVM capabilities,
 * vCPUs, memory layout, machine configuration, devices, every section, and the line
 * "checksum: good (0x...)" or "checksum: BAD (stored 0x..., computed 0x...)". Returns 0
 * when the file is valid, else -errno with the reason in err (a bad checksum is one).
 */
int snapshot_info_print(FILE *out, const char *name, const uint8_t *data, size_t size,
			const char *host_vendor, char *err, size_t err_size);

/* The subcommand: argv[0] is "snapshot-info", argv[1] the state file. Returns the exit
 * status: 0 for a valid file, 2 otherwise (bad usage, unreadable, invalid). */
int snapshot_info_main(int argc, char *argv[]);

#endif
