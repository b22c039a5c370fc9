#include "config.h"

#include <errno.h>
#include <string.h>

int config_copy_string(char *dst, unsigned long size, const char *src)
{
	size_t len = strlen(src);

	if (len >= size)
		return -ENAMETOOLONG;
	memcpy(dst, src, len + 1);
	return 0;
}

void config_set_defaults(struct vmm_config *config)
{
	memset(config, 0, sizeof(*config));
	strcpy(config->cmdline, CONFIG_DEFAULT_CMDLINE);
	config->vcpus = CONFIG_DEFAULT_VCPUS;
	config->mem_mib = CONFIG_DEFAULT_MEM_MIB;
	config->log_level = LOG_LEVEL_WARN;
	strcpy(config->process.id, CONFIG_DEFAULT_ID);
	config->process.max_payload = CONFIG_DEFAULT_MAX_PAYLOAD;
}
