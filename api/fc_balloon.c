#include "fc_balloon.h"

#include "fc_bodies.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Firecracker's BalloonStats names, by statistics tag. */
static const char *const stat_names[BALLOON_NR_STATS] = {
    [BALLOON_STAT_SWAP_IN] = "swap_in",
    [BALLOON_STAT_SWAP_OUT] = "swap_out",
    [BALLOON_STAT_MAJOR_FAULTS] = "major_faults",
    [BALLOON_STAT_MINOR_FAULTS] = "minor_faults",
    [BALLOON_STAT_FREE_MEMORY] = "free_memory",
    [BALLOON_STAT_TOTAL_MEMORY] = "total_memory",
    [BALLOON_STAT_AVAILABLE_MEMORY] = "available_memory",
    [BALLOON_STAT_DISK_CACHES] = "disk_caches",
    [BALLOON_STAT_HUGETLB_ALLOCATIONS] = "hugetlb_allocations",
    [BALLOON_STAT_HUGETLB_FAILURES] = "hugetlb_failures",
    [BALLOON_STAT_OOM_KILL] = "oom_kill",
    [BALLOON_STAT_ALLOC_STALL] = "alloc_stall",
    [BALLOON_STAT_ASYNC_SCAN] = "async_scan",
    [BALLOON_STAT_DIRECT_SCAN] = "direct_scan",
    [BALLOON_STAT_ASYNC_RECLAIM] = "async_reclaim",
    [BALLOON_STAT_DIRECT_RECLAIM] = "direct_reclaim",
};

/* serde's u32 and u16: a larger number does not deserialise. */
static int read_bounded(const json_t *body, const char *name, uint64_t max, uint64_t *value,
			const char *path, char *err, size_t err_size)
{
	*value = fields_uint(body, name, 0);
	if (*value > max)
		return fields_error(err, err_size, path, name,
				    "%" PRIu64 " is out of range (0 to %" PRIu64 ")", *value, max);
	return 0;
}

int fc_balloon_put_at(const json_t *body, struct vmm_config *config, const char *path, char *err,
		      size_t err_size)
{
	uint64_t amount, interval;
	int ret;

	ret = fields_check_body(body, &fc_balloon_body, path, err, err_size);
	if (!ret)
		ret = read_bounded(body, "amount_mib", UINT32_MAX, &amount, path, err, err_size);
	if (!ret)
		ret = read_bounded(body, "stats_polling_interval_s", UINT16_MAX, &interval, path,
				   err, err_size);
	if (ret)
		return ret;
	if (fields_bool(body, "free_page_hinting", false))
		return fields_error(err, err_size, path, "free_page_hinting",
				    "free page hinting is not supported by wisp: use "
				    "free_page_reporting, which returns freed memory continuously");
	if (amount > config->mem_mib) {
		snprintf(err, err_size,
			 FC_MSG_BALLOON_TOO_LARGE " (amount_mib %" PRIu64
						  " is more than mem_size_mib %" PRIu64 ")",
			 amount, config->mem_mib);
		return -EINVAL;
	}
	config->balloon = (struct balloon_config){
	    .configured = true,
	    .amount_mib = (uint32_t)amount,
	    .deflate_on_oom = fields_bool(body, "deflate_on_oom", false),
	    .stats_polling_interval_s = (uint16_t)interval,
	    .free_page_reporting = fields_bool(body, "free_page_reporting", false),
	};
	return 0;
}

int fc_balloon_patch(const json_t *body, uint32_t *amount_mib, char *err, size_t err_size)
{
	uint64_t amount;
	int ret = fields_check_body(body, &fc_balloon_update_body, "", err, err_size);

	if (!ret)
		ret = read_bounded(body, "amount_mib", UINT32_MAX, &amount, "", err, err_size);
	if (!ret)
		*amount_mib = (uint32_t)amount;
	return ret;
}

int fc_balloon_stats_patch(const json_t *body, uint16_t *interval_s, char *err, size_t err_size)
{
	uint64_t interval;
	int ret = fields_check_body(body, &fc_balloon_stats_update_body, "", err, err_size);

	if (!ret)
		ret = read_bounded(body, "stats_polling_interval_s", UINT16_MAX, &interval, "", err,
				   err_size);
	if (!ret)
		*interval_s = (uint16_t)interval;
	return ret;
}

json_t *fc_balloon_json(const struct balloon_config *balloon)
{
	if (!balloon->configured)
		return json_null();
	return json_pack("{s:I, s:b, s:I, s:b, s:b}", "amount_mib", (json_int_t)balloon->amount_mib,
			 "deflate_on_oom", balloon->deflate_on_oom, "stats_polling_interval_s",
			 (json_int_t)balloon->stats_polling_interval_s, "free_page_hinting", 0,
			 "free_page_reporting", balloon->free_page_reporting);
}

json_t *fc_balloon_stats_json(const struct balloon_stats *stats)
{
	json_t *reply =
	    json_pack("{s:I, s:I, s:I, s:I}", "target_pages", (json_int_t)stats->target_pages,
		      "actual_pages", (json_int_t)stats->actual_pages, "target_mib",
		      (json_int_t)(stats->target_pages / BALLOON_PAGES_PER_MIB), "actual_mib",
		      (json_int_t)(stats->actual_pages / BALLOON_PAGES_PER_MIB));

	for (unsigned int tag = 0; reply && tag < BALLOON_NR_STATS; tag++) {
		json_int_t value;

		if (!(stats->present & (1u << tag)))
			continue;
		/* Firecracker's fields are u64; jansson's integers are signed 64-bit. */
		value = stats->values[tag] > INT64_MAX ? INT64_MAX : (json_int_t)stats->values[tag];
		if (json_object_set_new(reply, stat_names[tag], json_integer(value))) {
			json_decref(reply);
			return NULL;
		}
	}
	return reply;
}
