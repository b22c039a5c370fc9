/*
 * Inside fc_config: the field tables of Firecracker's request bodies (fc_schema.c), and
 * the body parsers with the key path their messages start with, which --config-file
 * sets to the key the body came from ("drives[1]") and the API leaves empty.
 */
#ifndef WISP_FC_BODIES_H
#define WISP_FC_BODIES_H

#include "fc_config.h"
#include "json_fields.h"

extern const struct body_spec fc_boot_source_body;
extern const struct body_spec fc_machine_config_put_body;
extern const struct body_spec fc_machine_config_patch_body;
extern const struct body_spec fc_drive_body;
extern const struct body_spec fc_drive_patch_body;
extern const struct body_spec fc_net_body;
extern const struct body_spec fc_net_patch_body;
extern const struct body_spec fc_logger_body;
extern const struct body_spec fc_metrics_body;
extern const struct body_spec fc_serial_body;
extern const struct body_spec fc_action_body;
extern const struct body_spec fc_vm_body;
extern const struct body_spec fc_config_file_body;
extern const struct body_spec fc_snapshot_create_body;
extern const struct body_spec fc_snapshot_load_body;
extern const struct body_spec fc_net_override_body;

/* Reads the string field `name`, one of `names` (matched exactly, as serde matches
 * Firecracker's enums): its index, `fallback` if the field is not given, or -EINVAL with
 * err naming the value and listing the names. */
int fc_read_enum(const json_t *body, const char *name, const char *const names[], size_t count,
		 int fallback, const char *path, char *err, size_t err_size);

int fc_boot_source_put_at(const json_t *body, struct vmm_config *config, const char *path,
			  char *err, size_t err_size);
int fc_machine_config_put_at(const json_t *body, struct vmm_config *config, const char *path,
			     char *err, size_t err_size);
int fc_drive_put_at(const json_t *body, const char *path_id, struct vmm_config *config,
		    const char *path, char *err, size_t err_size);
int fc_net_put_at(const json_t *body, const char *path_id, struct vmm_config *config,
		  const char *path, char *err, size_t err_size);
int fc_logger_put_at(const json_t *body, struct logger_config *logger, const char *path, char *err,
		     size_t err_size);
int fc_metrics_put_at(const json_t *body, char *metrics_path, size_t path_size, const char *path,
		      char *err, size_t err_size);

#endif
