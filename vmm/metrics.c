#include "metrics.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct wisp_metrics metrics;

enum metric_kind { METRIC_KIND_COUNTER, METRIC_KIND_STORE, METRIC_KIND_LATENCY };

struct fixed_metric {
	const char *name;
	enum metric_kind kind;
	size_t offset; /* in struct wisp_metrics */
};

struct fixed_section {
	const char *name;
	const struct fixed_metric *metrics;
	size_t count;
};

#define FIXED(path, kind, name)                                                                    \
	{#name, METRIC_KIND_##kind, offsetof(struct wisp_metrics, path.name)},
#define API_SERVER(kind, name)	 FIXED(api_server, kind, name)
#define GET_API(kind, name)	 FIXED(api.get, kind, name)
#define PUT_API(kind, name)	 FIXED(api.put, kind, name)
#define PATCH_API(kind, name)	 FIXED(api.patch, kind, name)
#define LATENCIES_US(kind, name) FIXED(latencies_us, kind, name)
#define LOGGER(kind, name)	 FIXED(logger, kind, name)
#define VCPU(kind, name)	 FIXED(vcpu, kind, name)
#define SIGNALS(kind, name)	 FIXED(signals, kind, name)

static const struct fixed_metric api_server_metrics[] = {METRICS_API_SERVER(API_SERVER)};
static const struct fixed_metric get_api_metrics[] = {METRICS_GET_API_REQUESTS(GET_API)};
static const struct fixed_metric put_api_metrics[] = {METRICS_PUT_API_REQUESTS(PUT_API)};
static const struct fixed_metric patch_api_metrics[] = {METRICS_PATCH_API_REQUESTS(PATCH_API)};
static const struct fixed_metric latencies_us_metrics[] = {METRICS_LATENCIES_US(LATENCIES_US)};
static const struct fixed_metric logger_metrics[] = {METRICS_LOGGER(LOGGER)};
static const struct fixed_metric vcpu_metrics[] = {METRICS_VCPU(VCPU)};
static const struct fixed_metric signals_metrics[] = {METRICS_SIGNALS(SIGNALS)};

#define FIXED_SECTION(name, array)                                                                 \
	{                                                                                          \
		name, array, ARRAY_SIZE(array)                                                     \
	}

/* In the order of Firecracker's FirecrackerMetrics struct. */
static const struct fixed_section fixed_sections[] = {
    FIXED_SECTION("api_server", api_server_metrics),
    FIXED_SECTION("get_api_requests", get_api_metrics),
    FIXED_SECTION("latencies_us", latencies_us_metrics),
    FIXED_SECTION("logger", logger_metrics),
    FIXED_SECTION("patch_api_requests", patch_api_metrics),
    FIXED_SECTION("put_api_requests", put_api_metrics),
    FIXED_SECTION("vcpu", vcpu_metrics),
    FIXED_SECTION("signals", signals_metrics),
};

struct counter_slot {
	char name[METRICS_COUNTER_NAME_MAX];
	uint64_t reported; /* by the last call of the section's callback */
	uint64_t written;  /* in the last line written */
};

struct metrics_section {
	char name[METRICS_SECTION_NAME_MAX];
	metrics_report_fn report; /* NULL for a section that only sums others */
	void *opaque;
	struct metrics_section *aggregate_into;
	bool is_aggregate; /* some section aggregates into this one */
	size_t nr_counters;
	size_t next_counter; /* callbacks report in the same order: where to look first */
	struct counter_slot counters[METRICS_MAX_COUNTERS];
};

static struct {
	pthread_mutex_t lock;
	struct metrics_section *sections[METRICS_MAX_SECTIONS];
	size_t nr_sections;
	int fd;
	char *tail; /* a line partly written: tail[tail_start..tail_len) is still to go */
	size_t tail_start;
	size_t tail_len;
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* The fixed metrics' values in the last line written: the baseline of their deltas. */
static struct wisp_metrics written_metrics;

static metrics_counter_t *fixed_field(const struct wisp_metrics *set, size_t offset)
{
	return (metrics_counter_t *)((char *)set + offset);
}

static uint64_t load(const struct wisp_metrics *set, size_t offset)
{
	return atomic_load_explicit(fixed_field(set, offset), memory_order_relaxed);
}

static void store(struct wisp_metrics *set, size_t offset, uint64_t value)
{
	atomic_store_explicit(fixed_field(set, offset), value, memory_order_relaxed);
}

/* A counter that went backwards was recreated: all of its value is new. */
static uint64_t delta(uint64_t now, uint64_t written)
{
	return now >= written ? now - written : now;
}

void metrics_latency_record(struct metrics_latency *latency, uint64_t us)
{
	uint64_t min = atomic_load_explicit(&latency->min_us, memory_order_relaxed);
	uint64_t max = atomic_load_explicit(&latency->max_us, memory_order_relaxed);

	metrics_add(&latency->sum_us, us);
	/* 0 means "no sample yet", as in Firecracker. */
	while ((min == 0 || us < min) &&
	       !atomic_compare_exchange_weak_explicit(&latency->min_us, &min, us,
						      memory_order_relaxed, memory_order_relaxed))
		;
	while (us > max &&
	       !atomic_compare_exchange_weak_explicit(&latency->max_us, &max, us,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

uint64_t metrics_monotonic_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_nsec / 1000;
}

uint64_t metrics_process_cpu_us(void)
{
	struct timespec used;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used) < 0)
		return 0;
	return (uint64_t)used.tv_sec * 1000000 + (uint64_t)used.tv_nsec / 1000;
}

uint64_t metrics_store_elapsed_us(metrics_counter_t *store, uint64_t start_us)
{
	uint64_t now_us = metrics_monotonic_us();
	uint64_t elapsed_us = now_us > start_us ? now_us - start_us : 0;

	metrics_store(store, elapsed_us);
	return elapsed_us;
}

/* ---- registration ---- */

static bool is_fixed_section_name(const char *name)
{
	if (!strcmp(name, "utc_timestamp_ms"))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(fixed_sections); i++)
		if (!strcmp(name, fixed_sections[i].name))
			return true;
	return false;
}

static struct metrics_section *find_section(const char *name)
{
	for (size_t i = 0; i < registry.nr_sections; i++)
		if (!strcmp(registry.sections[i]->name, name))
			return registry.sections[i];
	return NULL;
}

static struct metrics_section *add_section(const char *name)
{
	struct metrics_section *section = calloc(1, sizeof(*section));

	if (!section)
		return NULL;
	strcpy(section->name, name); /* length checked by the caller */
	registry.sections[registry.nr_sections++] = section;
	return section;
}

static int check_section_name(const char *name)
{
	if (!name || !*name)
		return -EINVAL;
	if (strlen(name) >= METRICS_SECTION_NAME_MAX)
		return -ENAMETOOLONG;
	if (is_fixed_section_name(name))
		return -EEXIST;
	return 0;
}

/* All checks first, so that a failed registration changes nothing. */
static int register_locked(const char *name, const char *aggregate_into, metrics_report_fn report,
			   void *opaque)
{
	struct metrics_section *section, *target = NULL;
	size_t needed;
	int ret;

	ret = check_section_name(name);
	if (ret)
		return ret;
	if (aggregate_into) {
		ret = check_section_name(aggregate_into);
		if (ret)
			return ret;
		if (!strcmp(name, aggregate_into))
			return -EINVAL;
		target = find_section(aggregate_into);
		if (target && target->aggregate_into)
			return -EINVAL;
	}
	section = find_section(name);
	if (section && section->report)
		return -EEXIST;
	if (section && aggregate_into) /* it already sums others: one level only */
		return -EINVAL;
	needed = (section ? 0 : 1) + (aggregate_into && !target ? 1 : 0);
	if (registry.nr_sections + needed > METRICS_MAX_SECTIONS)
		return -ENOSPC;

	if (aggregate_into && !target) {
		target = add_section(aggregate_into);
		if (!target)
			return -ENOMEM;
	}
	if (!section) {
		section = add_section(name);
		if (!section)
			return -ENOMEM; /* an empty aggregate left behind is harmless */
	}
	section->report = report;
	section->opaque = opaque;
	section->aggregate_into = target;
	if (target)
		target->is_aggregate = true;
	return 0;
}

int metrics_register(const char *name, const char *aggregate_into, metrics_report_fn report,
		     void *opaque)
{
	int ret;

	if (!report)
		return -EINVAL;
	pthread_mutex_lock(&registry.lock);
	ret = register_locked(name, aggregate_into, report, opaque);
	pthread_mutex_unlock(&registry.lock);
	return ret;
}

void metrics_counter(struct metrics_section *section, const char *name, uint64_t value)
{
	struct counter_slot *slot = NULL;
	size_t i = section->next_counter;

	if (i < section->nr_counters && !strcmp(section->counters[i].name, name)) {
		slot = &section->counters[i];
	} else {
		for (i = 0; i < section->nr_counters; i++) {
			if (!strcmp(section->counters[i].name, name)) {
				slot = &section->counters[i];
				break;
			}
		}
	}
	if (!slot) {
		if (section->nr_counters == METRICS_MAX_COUNTERS ||
		    strlen(name) >= METRICS_COUNTER_NAME_MAX) {
			metrics_inc(&metrics.logger.metrics_fails);
			return;
		}
		i = section->nr_counters++;
		slot = &section->counters[i];
		strcpy(slot->name, name);
	}
	slot->reported = value;
	section->next_counter = i + 1;
}

/* ---- the JSON line, built with jansson ---- */

/* Counters stay far below 2^63: jansson's integers are signed. */
static int set_value(json_t *object, const char *name, uint64_t value)
{
	return json_object_set_new(object, name, json_integer((json_int_t)value));
}

/* A counter is written as its delta; its value goes into `rendered`, the baseline that
 * metrics_flush commits once the line is written. */
static int render_fixed_leaf(json_t *object, const char *name, bool is_counter, size_t offset,
			     struct wisp_metrics *rendered)
{
	uint64_t now = load(&metrics, offset);

	store(rendered, offset, now);
	return set_value(object, name,
			 is_counter ? delta(now, load(&written_metrics, offset)) : now);
}

static json_t *render_latency(size_t offset, struct wisp_metrics *rendered)
{
	json_t *object = json_object();
	int failed;

	if (!object)
		return NULL;
	failed = render_fixed_leaf(object, "min_us", false,
				   offset + offsetof(struct metrics_latency, min_us), rendered) ||
		 render_fixed_leaf(object, "max_us", false,
				   offset + offsetof(struct metrics_latency, max_us), rendered) ||
		 render_fixed_leaf(object, "sum_us", true,
				   offset + offsetof(struct metrics_latency, sum_us), rendered);
	if (failed) {
		json_decref(object);
		return NULL;
	}
	return object;
}

/* Only runs out of memory: -1 then. */
static int render_fixed_section(json_t *root, const struct fixed_section *section,
				struct wisp_metrics *rendered)
{
	json_t *object = json_object();

	if (json_object_set_new(root, section->name, object))
		return -1;
	for (size_t i = 0; i < section->count; i++) {
		const struct fixed_metric *metric = &section->metrics[i];
		int failed;

		if (metric->kind == METRIC_KIND_LATENCY)
			failed = json_object_set_new(object, metric->name,
						     render_latency(metric->offset, rendered));
		else
			failed = render_fixed_leaf(object, metric->name,
						   metric->kind == METRIC_KIND_COUNTER,
						   metric->offset, rendered);
		if (failed)
			return -1;
	}
	return 0;
}

static uint64_t slot_delta(const struct counter_slot *slot)
{
	return delta(slot->reported, slot->written);
}

struct sum {
	const char *name;
	uint64_t value;
};

static void add_to_sums(struct sum *sums, size_t *nr_sums, const struct metrics_section *section)
{
	for (size_t i = 0; i < section->nr_counters; i++) {
		const struct counter_slot *slot = &section->counters[i];
		size_t j;

		for (j = 0; j < *nr_sums; j++)
			if (!strcmp(sums[j].name, slot->name))
				break;
		if (j == *nr_sums) {
			if (*nr_sums == METRICS_MAX_COUNTERS) {
				metrics_inc(&metrics.logger.metrics_fails);
				continue;
			}
			sums[(*nr_sums)++] = (struct sum){slot->name, 0};
		}
		sums[j].value += slot_delta(slot);
	}
}

/* A section or counter whose name jansson refuses (not UTF-8: ids come from the API) is
 * left out and counted in logger.metrics_fails; running out of memory fails the line. */
static int render_registered_section(json_t *root, const struct metrics_section *section)
{
	json_t *object = json_object();
	struct sum sums[METRICS_MAX_COUNTERS];
	size_t nr_sums = 0;

	if (!object)
		return -1;
	if (!section->is_aggregate) {
		for (size_t i = 0; i < section->nr_counters; i++)
			sums[nr_sums++] = (struct sum){section->counters[i].name,
						       slot_delta(&section->counters[i])};
	} else {
		add_to_sums(sums, &nr_sums, section);
		for (size_t i = 0; i < registry.nr_sections; i++)
			if (registry.sections[i]->aggregate_into == section)
				add_to_sums(sums, &nr_sums, registry.sections[i]);
	}
	for (size_t i = 0; i < nr_sums; i++)
		if (set_value(object, sums[i].name, sums[i].value))
			metrics_inc(&metrics.logger.metrics_fails);
	if (json_object_set_new(root, section->name, object))
		metrics_inc(&metrics.logger.metrics_fails);
	return 0;
}

static json_t *render_json_locked(uint64_t utc_ms, struct wisp_metrics *rendered)
{
	json_t *root = json_object();

	if (!root || set_value(root, "utc_timestamp_ms", utc_ms))
		goto fail;
	for (size_t i = 0; i < ARRAY_SIZE(fixed_sections); i++)
		if (render_fixed_section(root, &fixed_sections[i], rendered))
			goto fail;
	/* Per-device sections, then the sums, as Firecracker writes "block_x" before "block". */
	for (size_t i = 0; i < registry.nr_sections; i++)
		if (!registry.sections[i]->is_aggregate &&
		    render_registered_section(root, registry.sections[i]))
			goto fail;
	for (size_t i = 0; i < registry.nr_sections; i++)
		if (registry.sections[i]->is_aggregate &&
		    render_registered_section(root, registry.sections[i]))
			goto fail;
	return root;
fail:
	json_decref(root);
	return NULL;
}

/* One compact JSON object and its newline; NULL when out of memory. */
static char *render_locked(uint64_t utc_ms, struct wisp_metrics *rendered, size_t *len)
{
	json_t *root;
	char *line = NULL;
	size_t size;

	metrics_store(&metrics.logger.missed_log_count, log_missed_line_count());
	for (size_t i = 0; i < registry.nr_sections; i++) {
		struct metrics_section *section = registry.sections[i];

		section->next_counter = 0;
		if (section->report)
			section->report(section->opaque, section);
	}

	root = render_json_locked(utc_ms, rendered);
	if (!root)
		return NULL;
	size = json_dumpb(root, NULL, 0, JSON_COMPACT);
	if (size)
		line = malloc(size + 2);
	if (line && json_dumpb(root, line, size, JSON_COMPACT) == size) {
		memcpy(line + size, "\n", 2);
		*len = size + 1;
	} else {
		free(line);
		line = NULL;
	}
	json_decref(root);
	return line;
}

/* The line is out: what it said becomes the baseline of the next deltas. */
static void commit_locked(const struct wisp_metrics *rendered)
{
	for (size_t i = 0; i < ARRAY_SIZE(fixed_sections); i++) {
		for (size_t j = 0; j < fixed_sections[i].count; j++) {
			const struct fixed_metric *metric = &fixed_sections[i].metrics[j];
			size_t offset = metric->offset;

			if (metric->kind == METRIC_KIND_LATENCY)
				offset += offsetof(struct metrics_latency, sum_us);
			else if (metric->kind != METRIC_KIND_COUNTER)
				continue;
			store(&written_metrics, offset, load(rendered, offset));
		}
	}
	for (size_t i = 0; i < registry.nr_sections; i++) {
		struct metrics_section *section = registry.sections[i];

		for (size_t j = 0; j < section->nr_counters; j++)
			section->counters[j].written = section->counters[j].reported;
	}
}

char *metrics_render(uint64_t utc_ms)
{
	struct wisp_metrics rendered;
	size_t len;
	char *line;

	pthread_mutex_lock(&registry.lock);
	line = render_locked(utc_ms, &rendered, &len);
	pthread_mutex_unlock(&registry.lock);
	return line;
}

/* ---- output ---- */

int metrics_set_output(const char *path, char *err, size_t err_size)
{
	int fd, ret;

	if (!path || !*path) {
		snprintf(err, err_size, "metrics_path is empty");
		return -EINVAL;
	}
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC,
		  METRICS_DEFAULT_PERMISSIONS);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, err_size, "metrics_path %s: %s", path, strerror(-ret));
		return ret;
	}

	pthread_mutex_lock(&registry.lock);
	if (registry.fd >= 0) {
		pthread_mutex_unlock(&registry.lock);
		close(fd);
		snprintf(err, err_size, "metrics are already configured");
		return -EBUSY;
	}
	registry.fd = fd;
	pthread_mutex_unlock(&registry.lock);
	return 0;
}

/* Writes until done or the file refuses more; *done says how far it got. */
static int write_some(int fd, const char *data, size_t len, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t n = write(fd, data + *done, len - *done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		if (n == 0)
			return -EIO;
		*done += (size_t)n;
	}
	return 0;
}

/* The end of a line that a full FIFO cut short, written before anything else. */
static int finish_tail_locked(void)
{
	size_t done;
	int ret;

	if (!registry.tail)
		return 0;
	ret = write_some(registry.fd, registry.tail + registry.tail_start,
			 registry.tail_len - registry.tail_start, &done);
	registry.tail_start += done;
	if (ret)
		return ret;
	free(registry.tail);
	registry.tail = NULL;
	return 0;
}

/*
 * A pipe takes a long line (past PIPE_BUF) piecemeal, and a full one takes only part of
 * it: a line that got partly out is kept and finished first at the next flush, so that
 * readers only ever see whole lines, and wisp never waits for them.
 */
static int write_line_locked(char *line, size_t len, const struct wisp_metrics *rendered)
{
	size_t done;
	int ret;

	ret = finish_tail_locked();
	if (ret) {
		free(line);
		return ret;
	}
	ret = write_some(registry.fd, line, len, &done);
	if (done == 0) {
		free(line);
		return ret;
	}
	commit_locked(rendered); /* out, or bound to be */
	if (done < len) {
		registry.tail = line;
		registry.tail_start = done;
		registry.tail_len = len;
	} else {
		free(line);
	}
	return 0;
}

int metrics_flush(uint64_t utc_ms)
{
	struct wisp_metrics rendered;
	size_t len = 0;
	char *line;
	int ret;

	pthread_mutex_lock(&registry.lock);
	if (registry.fd < 0) {
		ret = 0;
		goto unlock;
	}
	line = render_locked(utc_ms, &rendered, &len);
	ret = line ? write_line_locked(line, len, &rendered) : -ENOMEM;
	if (ret) {
		metrics_inc(&metrics.logger.missed_metrics_count);
		if (ret != -EAGAIN)
			metrics_inc(&metrics.logger.metrics_fails);
	}
unlock:
	pthread_mutex_unlock(&registry.lock);
	return ret;
}

/* Only an atomic add: async-signal-safe. */
static void count_sigpipe(int signal)
{
	(void)signal;
	metrics_inc(&metrics.signals.sigpipe);
}

int metrics_count_sigpipe(void)
{
	struct sigaction action = {.sa_handler = count_sigpipe, .sa_flags = SA_RESTART};

	sigemptyset(&action.sa_mask);
	return sigaction(SIGPIPE, &action, NULL) < 0 ? -errno : 0;
}

uint64_t metrics_utc_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

void metrics_reset(void)
{
	pthread_mutex_lock(&registry.lock);
	for (size_t i = 0; i < registry.nr_sections; i++)
		free(registry.sections[i]);
	registry.nr_sections = 0;
	if (registry.fd >= 0)
		close(registry.fd);
	registry.fd = -1;
	free(registry.tail);
	registry.tail = NULL;
	memset(&metrics, 0, sizeof(metrics));
	memset(&written_metrics, 0, sizeof(written_metrics));
	pthread_mutex_unlock(&registry.lock);
}
