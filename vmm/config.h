/* Device configuration shared by the command line (and later the API and config file). */
#ifndef WISP_CONFIG_H
#define WISP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MAX_DRIVES 8
#define CONFIG_MAX_NETS	  4

enum io_engine { IO_ENGINE_ASYNC, IO_ENGINE_SYNC }; /* Firecracker's "Async" / "Sync" */

struct drive_config {
	const char *id;
	const char *path;
	bool read_only;
	bool root;
	/* O_DIRECT: data goes around the host page cache (QEMU's cache=none) */
	bool direct;
	enum io_engine engine;
};

struct net_config {
	const char *id;
	const char *tap;
	uint8_t mac[6];
	bool has_mac;
};

#endif
