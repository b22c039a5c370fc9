/*
 * Firecracker's balloon bodies (PUT /balloon, PATCH /balloon, PATCH /balloon/statistics,
 * the config file's "balloon") <-> wisp's balloon_config, and the replies of GET /balloon
 * and GET /balloon/statistics. Pure, as the rest of fc_config.
 */
#ifndef WISP_FC_BALLOON_H
#define WISP_FC_BALLOON_H

#include "../vmm/devices/virtio/balloon.h"
#include "fc_config.h"
#include "json_fields.h"

/* Firecracker's texts (VmmActionError::BalloonConfig around BalloonConfigError). */
#define FC_MSG_BALLOON_NOT_FOUND "Balloon config error: No balloon device found."
#define FC_MSG_BALLOON_NOT_ACTIVE                                                                  \
	"Balloon config error: Device is inactive, check if balloon driver is enabled in guest "   \
	"kernel."
#define FC_MSG_BALLOON_STATS_CHANGE                                                                \
	"Balloon config error: Cannot enable/disable the statistics after boot."
#define FC_MSG_BALLOON_TOO_LARGE "Balloon config error: Amount of pages requested is too large."
#define FC_MSG_BALLOON_NO_STATS                                                                    \
	"Balloon config error: Statistics for the balloon device are not enabled"
/* MachineConfigError::IncompatibleBalloonSize */
#define FC_MSG_BALLOON_MEM_TOO_SMALL                                                               \
	"Machine config error: The memory size (MiB) is smaller than the previously set balloon "  \
	"device target size."

extern const struct body_spec fc_balloon_body;
extern const struct body_spec fc_balloon_update_body;
extern const struct body_spec fc_balloon_stats_update_body;

/* PUT /balloon (path "") or the config file's "balloon" (path "balloon"): replaces
 * config->balloon; amount_mib may not exceed config->mem_mib. free_page_hinting true is
 * refused (not implemented). 0 or -EINVAL with err set, config unchanged. */
int fc_balloon_put_at(const json_t *body, struct vmm_config *config, const char *path, char *err,
		      size_t err_size);
/* PATCH /balloon {"amount_mib"} */
int fc_balloon_patch(const json_t *body, uint32_t *amount_mib, char *err, size_t err_size);
/* PATCH /balloon/statistics {"stats_polling_interval_s"} */
int fc_balloon_stats_patch(const json_t *body, uint16_t *interval_s, char *err, size_t err_size);

/* GET /balloon, and GET /vm/config's "balloon" (null when not configured). */
json_t *fc_balloon_json(const struct balloon_config *balloon);
/* GET /balloon/statistics: target/actual pages and MiB, then each statistic the guest
 * sent, under Firecracker's name. */
json_t *fc_balloon_stats_json(const struct balloon_stats *stats);

#endif
