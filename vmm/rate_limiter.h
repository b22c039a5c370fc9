/*
 * Firecracker's rate limiter: two token buckets, one for bytes (bandwidth) and one for
 * operations (requests, frames). An operation passes only if both buckets have its tokens,
 * and then takes them from both; otherwise it takes nothing, the limiter is blocked and its
 * timerfd fires when both buckets will hold enough, for the device to try again.
 *
 * The bucket arithmetic is pure: every call takes the time (nanoseconds on the limiter's
 * clock), so tests drive it with a fake one. Devices call it under their dev->lock, on the
 * VMM thread; the timerfd is theirs to register with the event loop.
 *
 * Where wisp differs from Firecracker, on purpose:
 *  - the timer is armed for the exact time the refused operation needs, not a fixed 100 ms;
 *  - an operation larger than a bucket passes once the bucket is full (not at any level, so
 *    a larger request never passes more easily than a smaller one) and leaves the bucket in
 *    debt: the tokens it took beyond the bucket are paid back before any other operation
 *    passes, so the long-run rate holds (Firecracker blocks for the debt's time but then
 *    finds the bucket refilled over that time, letting up to one more bucket through).
 */
#ifndef WISP_RATE_LIMITER_H
#define WISP_RATE_LIMITER_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

/* Nanoseconds on some monotonic clock; the default is CLOCK_MONOTONIC, as for the timer. */
typedef uint64_t (*rate_limiter_clock)(void);

/*
 * `size` tokens, refilled continuously at size / refill_time_ns, plus `one_time_burst`
 * tokens that are spent first and never come back. Tokens arrive in whole units; the time
 * towards the next one carries over (last_refill_ns moves only by the time the tokens
 * credited took), so no fraction is lost or counted twice.
 */
struct token_bucket {
	struct token_bucket_config config; /* as given: an update compares against it */
	uint64_t size;			   /* 0: no limit */
	uint64_t refill_time_ns;
	uint64_t one_time_burst; /* what is left of it */
	uint64_t budget;	 /* <= size */
	uint64_t debt;		 /* taken beyond an empty bucket; nonzero only with budget 0 */
	uint64_t last_refill_ns;
};

struct rate_limiter {
	struct token_bucket bandwidth; /* bytes */
	struct token_bucket ops;
	bool blocked;		   /* an operation was refused and none has passed since */
	uint64_t blocked_until_ns; /* when the refused operation's tokens are there */
	int timer_fd;		   /* -1 until rate_limiter_open_timer */
	rate_limiter_clock clock;
};

uint64_t rate_limiter_monotonic_ns(void);

/* Buckets from `config`, full; the monotonic clock; no timer yet. Cannot fail. */
void rate_limiter_init(struct rate_limiter *rl, const struct rate_limiter_config *config);
/* The timerfd (CLOCK_MONOTONIC, non-blocking) the device watches for EPOLLIN: 0 or -errno.
 * Made whether or not the limiter limits anything, so that an update can turn it on. */
int rate_limiter_open_timer(struct rate_limiter *rl);
/* Closes the timerfd; the device stops watching it first. */
void rate_limiter_close_timer(struct rate_limiter *rl);
int rate_limiter_timer_fd(const struct rate_limiter *rl);

/* Tests replace the clock; the timerfd still counts real time. */
void rate_limiter_set_clock(struct rate_limiter *rl, rate_limiter_clock clock);
uint64_t rate_limiter_now(const struct rate_limiter *rl);
/* True if either bucket limits anything. An unlimited limiter is never blocked. */
bool rate_limiter_enabled(const struct rate_limiter *rl);

/* Takes `bytes` and `ops` tokens if both buckets have them (0 tokens always pass a bucket)
 * and the limiter is not blocked. Otherwise takes nothing, blocks the limiter until both
 * buckets will have them and arms the timer for that moment; until then every call
 * returns false at once. */
bool rate_limiter_consume(struct rate_limiter *rl, uint64_t bytes, uint64_t ops, uint64_t now_ns);
/* How long from now_ns until the buckets alone would let consume(bytes, ops) pass: 0 if
 * they would now. */
uint64_t rate_limiter_wait_ns(const struct rate_limiter *rl, uint64_t bytes, uint64_t ops,
			      uint64_t now_ns);
/* An operation was refused and none has passed since: the device holds one back. */
bool rate_limiter_blocked(const struct rate_limiter *rl);

/* The timerfd fired: clears its count (the device then retries what it held back). */
void rate_limiter_timer_expired(struct rate_limiter *rl);
/* Forgets the refused operation (device reset) and disarms the timer; the buckets keep
 * their tokens, so that a reset is no way around the limit. */
void rate_limiter_unblock(struct rate_limiter *rl);
/* PATCH: a bucket whose configuration changes starts over, full (Firecracker); one whose
 * configuration is the same keeps its tokens, so that an API that merges a partial update
 * into the old configuration leaves the bucket it did not name alone. Unblocks. */
void rate_limiter_update(struct rate_limiter *rl, const struct rate_limiter_config *config);

#endif
