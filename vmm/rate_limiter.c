#include "rate_limiter.h"

#include "log.h"

#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS 1000000ULL
#define NS_PER_S  1000000000ULL

/* Products of two 64-bit quantities (time × size) need 128 bits. */
typedef unsigned __int128 u128;

uint64_t rate_limiter_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t saturate(u128 value)
{
	return value > UINT64_MAX ? UINT64_MAX : (uint64_t)value;
}

static u128 div_round_up(u128 dividend, u128 divisor)
{
	return dividend / divisor + (dividend % divisor != 0);
}

static void bucket_init(struct token_bucket *b, const struct token_bucket_config *config)
{
	bool enabled = token_bucket_config_enabled(config);

	memset(b, 0, sizeof(*b));
	b->config = *config;
	if (!enabled)
		return;
	b->size = config->size;
	b->refill_time_ns = saturate((u128)config->refill_time_ms * NS_PER_MS);
	b->one_time_burst = config->one_time_burst;
	b->budget = b->size;
	/* last_refill_ns 0: a full bucket takes the time of its first refill as its start. */
}

static bool bucket_same_config(const struct token_bucket *b,
			       const struct token_bucket_config *config)
{
	if (!token_bucket_config_enabled(config))
		return b->size == 0;
	return b->config.size == config->size &&
	       b->config.refill_time_ms == config->refill_time_ms &&
	       b->config.one_time_burst == config->one_time_burst;
}

static void bucket_refill(struct token_bucket *b, uint64_t now_ns)
{
	u128 elapsed, tokens, missing;

	/* A clock that went back (or a fake one) adds nothing rather than wrapping. */
	if (!b->size || now_ns <= b->last_refill_ns)
		return;
	elapsed = now_ns - b->last_refill_ns;
	missing = (u128)b->debt + (b->size - b->budget);
	tokens = elapsed * b->size / b->refill_time_ns;
	if (tokens >= missing) {
		b->debt = 0;
		b->budget = b->size;
		b->last_refill_ns = now_ns;
		return;
	}
	/* tokens * refill_time_ns <= elapsed * size: no overflow, and the result <= elapsed. */
	b->last_refill_ns += (uint64_t)div_round_up(tokens * b->refill_time_ns, b->size);
	if (tokens <= b->debt) {
		b->debt -= (uint64_t)tokens;
		return;
	}
	b->budget += (uint64_t)(tokens - b->debt);
	b->debt = 0;
}

/* What the budget must hold for `tokens` to pass: what the burst does not cover, or the
 * whole bucket for more than it holds. */
static uint64_t bucket_needs(const struct token_bucket *b, uint64_t tokens)
{
	uint64_t rest = tokens > b->one_time_burst ? tokens - b->one_time_burst : 0;

	return rest < b->size ? rest : b->size;
}

/* After a refill at the time in question. */
static bool bucket_can_take(const struct token_bucket *b, uint64_t tokens)
{
	if (!b->size || !tokens)
		return true;
	return !b->debt && b->budget >= bucket_needs(b, tokens);
}

static void bucket_take(struct token_bucket *b, uint64_t tokens)
{
	uint64_t from_burst;

	if (!b->size)
		return;
	from_burst = tokens < b->one_time_burst ? tokens : b->one_time_burst;
	b->one_time_burst -= from_burst;
	tokens -= from_burst;
	if (tokens <= b->budget) {
		b->budget -= tokens;
	} else {
		b->debt = tokens - b->budget; /* more than the bucket: it passed a full one */
		b->budget = 0;
	}
}

static uint64_t bucket_wait_ns(const struct token_bucket *b, uint64_t tokens, uint64_t now_ns)
{
	struct token_bucket at_now = *b;
	u128 missing, ready;

	bucket_refill(&at_now, now_ns);
	if (bucket_can_take(&at_now, tokens))
		return 0;
	missing = (u128)at_now.debt + (bucket_needs(&at_now, tokens) - at_now.budget);
	if (missing > UINT64_MAX)
		return UINT64_MAX;
	/* The first whole `missing` tokens after last_refill_ns; now_ns is less than a token
	 * past it, so `ready` lies ahead. */
	ready = at_now.last_refill_ns + div_round_up(missing * at_now.refill_time_ns, at_now.size);
	return saturate(ready - now_ns);
}

static void arm_timer(struct rate_limiter *rl, uint64_t wait_ns)
{
	struct itimerspec spec = {
	    .it_value = {.tv_sec = (time_t)(wait_ns / NS_PER_S),
			 .tv_nsec = (long)(wait_ns % NS_PER_S)},
	};

	if (rl->timer_fd < 0)
		return;
	if (timerfd_settime(rl->timer_fd, 0, &spec, NULL) < 0)
		log_error("rate limiter: cannot arm its timer: %s (the device stays throttled)",
			  strerror(errno));
}

void rate_limiter_init(struct rate_limiter *rl, const struct rate_limiter_config *config)
{
	memset(rl, 0, sizeof(*rl));
	bucket_init(&rl->bandwidth, &config->bandwidth);
	bucket_init(&rl->ops, &config->ops);
	rl->timer_fd = -1;
	rl->clock = rate_limiter_monotonic_ns;
}

int rate_limiter_open_timer(struct rate_limiter *rl)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	rl->timer_fd = fd;
	return 0;
}

void rate_limiter_close_timer(struct rate_limiter *rl)
{
	if (rl->timer_fd >= 0)
		close(rl->timer_fd);
	rl->timer_fd = -1;
}

int rate_limiter_timer_fd(const struct rate_limiter *rl)
{
	return rl->timer_fd;
}

void rate_limiter_set_clock(struct rate_limiter *rl, rate_limiter_clock clock)
{
	rl->clock = clock;
}

uint64_t rate_limiter_now(const struct rate_limiter *rl)
{
	return rl->clock();
}

bool rate_limiter_enabled(const struct rate_limiter *rl)
{
	return rl->bandwidth.size || rl->ops.size;
}

bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops, uint64_t now_ns)
{
	uint64_t wait_ns;

	if (rl->blocked && now_ns < rl->blocked_until_ns)
		return false;
	bucket_refill(&rl->bandwidth, now_ns);
	bucket_refill(&rl->ops, now_ns);
	if (bucket_can_take(&rl->bandwidth, bytes) && bucket_can_take(&rl->ops, ops)) {
		bucket_take(&rl->bandwidth, bytes);
		bucket_take(&rl->ops, ops);
		rl->blocked = false;
		return true;
	}
	wait_ns = rate_limiter_wait_ns(rl, bytes, ops, now_ns);
	if (wait_ns == 0)
		wait_ns = 1; /* cannot happen once refused; a zero it_value would disarm */
	rl->blocked = true;
	rl->blocked_until_ns = saturate((u128)now_ns + wait_ns);
	arm_timer(rl, wait_ns);
	return false;
}

uint64_t rate_limiter_wait_ns(const struct rate_limiter *rl, uint64_t bytes, uint64_t ops,
			      uint64_t now_ns)
{
	uint64_t bandwidth = bucket_wait_ns(&rl->bandwidth, bytes, now_ns);
	uint64_t op = bucket_wait_ns(&rl->ops, ops, now_ns);

	return bandwidth > op ? bandwidth : op;
}

bool rate_limiter_blocked(const struct rate_limiter *rl)
{
	return rl->blocked;
}

void rate_limiter_timer_expired(struct rate_limiter *rl)
{
	uint64_t expirations;

	/* Nothing to read (EAGAIN) when a test, not the timer, calls the device's handler. */
	if (rl->timer_fd >= 0 && read(rl->timer_fd, &expirations, sizeof(expirations)) < 0 &&
	    errno != EAGAIN)
		log_debug("rate limiter: reading its timer failed: %s", strerror(errno));
}

void rate_limiter_unblock(struct rate_limiter *rl)
{
	rl->blocked = false;
	rl->blocked_until_ns = 0;
	arm_timer(rl, 0);
}

void rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *config)
{
	if (!bucket_same_config(&rl->bandwidth, &config->bandwidth))
		bucket_init(&rl->bandwidth, &config->bandwidth);
	if (!bucket_same_config(&rl->ops, &config->ops))
		bucket_init(&rl->ops, &config->ops);
	rate_limiter_unblock(rl);
}
