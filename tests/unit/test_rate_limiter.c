/* Unit tests for the rate limiter (rate_limiter.c): token buckets on a fake clock, the time
 * passed in by hand, so nothing here waits; one test arms the real timerfd and reads its
 * setting back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/timerfd.h>

#include <cmocka.h>

#include "log.h"
#include "rate_limiter.h"

#define MS 1000000ULL
#define S  1000000000ULL
#define T0 (5 * S) /* the fake clock's start: any time will do */

static struct rate_limiter_config limits(uint64_t bytes, uint64_t bytes_burst, uint64_t bytes_ms,
					 uint64_t ops, uint64_t ops_burst, uint64_t ops_ms)
{
	return (struct rate_limiter_config){
	    .bandwidth = {.size = bytes, .one_time_burst = bytes_burst, .refill_time_ms = bytes_ms},
	    .ops = {.size = ops, .one_time_burst = ops_burst, .refill_time_ms = ops_ms},
	};
}

static struct rate_limiter limiter(struct rate_limiter_config config)
{
	struct rate_limiter rl;

	rate_limiter_init(&rl, &config);
	return rl;
}

static void test_unlimited_buckets_pass_everything(void **state)
{
	struct rate_limiter rl = limiter(limits(0, 0, 0, 0, 0, 0));
	(void)state;

	assert_false(rate_limiter_enabled(&rl));
	for (int i = 0; i < 1000; i++)
		assert_true(rate_limiter_consume(&rl, UINT64_MAX, UINT64_MAX, T0));
	assert_int_equal(rate_limiter_wait_ns(&rl, UINT64_MAX, 1, T0), 0);
	assert_int_equal(rate_limiter_timer_fd(&rl), -1);

	/* Size 0 or refill time 0: that bucket does not limit, the other one does. */
	rl = limiter(limits(100, 0, 0, 2, 0, 1000));
	assert_true(rate_limiter_enabled(&rl));
	assert_true(rate_limiter_consume(&rl, 1 << 30, 1, T0));
	assert_true(rate_limiter_consume(&rl, 1 << 30, 1, T0));
	assert_false(rate_limiter_consume(&rl, 0, 1, T0));
	rl = limiter(limits(0, 0, 1000, 0, 5, 1000));
	assert_false(rate_limiter_enabled(&rl));
}

static void test_bucket_starts_full_and_refills_over_time(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 0, 1000, 0, 0, 0)); /* 1 byte per ms */
	(void)state;

	assert_true(rate_limiter_consume(&rl, 1000, 1, T0));
	assert_false(rate_limiter_consume(&rl, 1, 1, T0));
	assert_true(rate_limiter_blocked(&rl));
	/* 250 ms later: 250 bytes. */
	assert_int_equal(rate_limiter_wait_ns(&rl, 251, 1, T0 + 250 * MS), 1 * MS);
	assert_int_equal(rate_limiter_wait_ns(&rl, 250, 1, T0 + 250 * MS), 0);
	assert_true(rate_limiter_consume(&rl, 250, 1, T0 + 250 * MS));
	assert_false(rate_limiter_blocked(&rl));
	assert_int_equal(rl.bandwidth.budget, 0);
	/* Fractions carry over: 10 times 0.5 ms makes 5 bytes. */
	for (int i = 1; i <= 10; i++)
		assert_false(rate_limiter_consume(&rl, 6, 0, T0 + 250 * MS + i * MS / 2));
	assert_int_equal(rate_limiter_wait_ns(&rl, 5, 0, T0 + 255 * MS), 0);
	/* Never above the size, however long it waits. */
	assert_true(rate_limiter_consume(&rl, 1000, 1, T0 + 3600 * S));
	assert_false(rate_limiter_consume(&rl, 1, 1, T0 + 3600 * S));
}

static void test_both_buckets_must_agree_and_refusal_takes_nothing(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 0, 1000, 2, 0, 1000));
	(void)state;

	assert_true(rate_limiter_consume(&rl, 600, 1, T0));
	assert_int_equal(rl.bandwidth.budget, 400);
	assert_int_equal(rl.ops.budget, 1);
	/* An op is there but not the bytes: neither is taken. */
	assert_false(rate_limiter_consume(&rl, 600, 1, T0));
	assert_int_equal(rl.bandwidth.budget, 400);
	assert_int_equal(rl.ops.budget, 1);

	rl = limiter(limits(1000, 0, 1000, 2, 0, 1000));
	assert_true(rate_limiter_consume(&rl, 100, 2, T0));
	/* The bytes are there but not the op: neither is taken. */
	assert_false(rate_limiter_consume(&rl, 100, 1, T0));
	assert_int_equal(rl.bandwidth.budget, 900);
	assert_int_equal(rl.ops.budget, 0);
	/* 0 tokens always pass a bucket: a flush needs no bytes, only the op. */
	assert_true(rate_limiter_consume(&rl, 0, 1, T0 + 500 * MS));
	assert_int_equal(rl.bandwidth.budget, 1000);
}

static void test_burst_is_used_first_and_never_refilled(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 5000, 1000, 0, 0, 0));
	(void)state;

	/* 6000 at once: the burst, then the bucket. */
	assert_true(rate_limiter_consume(&rl, 4000, 0, T0));
	assert_int_equal(rl.bandwidth.one_time_burst, 1000);
	assert_int_equal(rl.bandwidth.budget, 1000);
	assert_true(rate_limiter_consume(&rl, 1500, 0, T0));
	assert_int_equal(rl.bandwidth.one_time_burst, 0);
	assert_int_equal(rl.bandwidth.budget, 500);
	assert_true(rate_limiter_consume(&rl, 500, 0, T0));
	assert_false(rate_limiter_consume(&rl, 1, 0, T0));
	/* A long time later: the bucket is full, the burst stays spent. */
	assert_true(rate_limiter_consume(&rl, 1000, 0, T0 + 60 * S));
	assert_int_equal(rl.bandwidth.one_time_burst, 0);
	assert_false(rate_limiter_consume(&rl, 1, 0, T0 + 60 * S));

	/* Refused for want of an op: the byte burst is left alone. */
	rl = limiter(limits(1000, 300, 1000, 1, 0, 1000));
	assert_true(rate_limiter_consume(&rl, 100, 1, T0));
	assert_int_equal(rl.bandwidth.one_time_burst, 200);
	assert_false(rate_limiter_consume(&rl, 100, 1, T0));
	assert_int_equal(rl.bandwidth.one_time_burst, 200);
	assert_int_equal(rl.bandwidth.budget, 1000);
}

/* Larger than the bucket: passes once the bucket is full, leaving a debt that is paid
 * before anything else passes. */
static void test_oversize_request_passes_into_debt(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 0, 1000, 0, 0, 0));
	(void)state;

	assert_true(rate_limiter_consume(&rl, 3500, 0, T0));
	assert_int_equal(rl.bandwidth.budget, 0);
	assert_int_equal(rl.bandwidth.debt, 2500);
	/* 2500 ms to pay the debt, then 1 ms for one byte. */
	assert_int_equal(rate_limiter_wait_ns(&rl, 1, 0, T0), 2501 * MS);
	assert_false(rate_limiter_consume(&rl, 1, 0, T0 + 2500 * MS));
	assert_true(rate_limiter_consume(&rl, 1, 0, T0 + 2501 * MS));

	/* Not full: the oversize request waits for a full bucket, then passes. */
	assert_int_equal(rate_limiter_wait_ns(&rl, 3000, 0, T0 + 2501 * MS), 1000 * MS);
	assert_false(rate_limiter_consume(&rl, 3000, 0, T0 + 3000 * MS));
	assert_true(rate_limiter_consume(&rl, 3000, 0, T0 + 3501 * MS));
	assert_int_equal(rl.bandwidth.debt, 2000);
	/* An oversize op count works the same way. */
	rl = limiter(limits(0, 0, 0, 10, 0, 100));
	assert_true(rate_limiter_consume(&rl, 0, 25, T0));
	assert_int_equal(rate_limiter_wait_ns(&rl, 0, 1, T0), 160 * MS);
}

static void test_wait_is_the_exact_time_the_request_needs(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 0, 1000, 10, 0, 1000));
	(void)state;

	assert_true(rate_limiter_consume(&rl, 1000, 10, T0));
	/* 300 bytes: 300 ms; one op: 100 ms. The slower bucket decides. */
	assert_int_equal(rate_limiter_wait_ns(&rl, 300, 1, T0), 300 * MS);
	assert_int_equal(rate_limiter_wait_ns(&rl, 50, 1, T0), 100 * MS);
	assert_int_equal(rate_limiter_wait_ns(&rl, 300, 1, T0 + 120 * MS), 180 * MS);
	assert_false(rate_limiter_consume(&rl, 300, 1, T0 + 120 * MS));
	assert_int_equal(rl.blocked_until_ns, T0 + 300 * MS);
	/* Blocked: refused until then, even for what the buckets would allow. */
	assert_false(rate_limiter_consume(&rl, 1, 1, T0 + 299 * MS));
	assert_true(rate_limiter_consume(&rl, 300, 1, T0 + 300 * MS));

	/* A rate that is no whole number of nanoseconds per token rounds the wait up. */
	rl = limiter(limits(3, 0, 1, 0, 0, 0)); /* 3 bytes per ms */
	assert_true(rate_limiter_consume(&rl, 3, 0, T0));
	assert_int_equal(rate_limiter_wait_ns(&rl, 1, 0, T0), 333334);
	assert_false(rate_limiter_consume(&rl, 1, 0, T0 + 333333));
	assert_true(rate_limiter_consume(&rl, 1, 0, T0 + 333334));
}

static void test_update_replaces_changed_buckets_full_and_unblocks(void **state)
{
	struct rate_limiter_config config = limits(1000, 0, 1000, 5, 0, 1000);
	struct rate_limiter rl = limiter(config);
	(void)state;

	assert_true(rate_limiter_consume(&rl, 1000, 5, T0));
	assert_false(rate_limiter_consume(&rl, 10, 1, T0));
	assert_true(rate_limiter_blocked(&rl));

	/* The same configuration: the buckets stay empty. */
	rate_limiter_update(&rl, &config);
	assert_false(rate_limiter_blocked(&rl));
	assert_false(rate_limiter_consume(&rl, 10, 1, T0));

	/* A new bandwidth bucket starts full; the unchanged ops bucket stays empty. */
	config.bandwidth.size = 2000;
	rate_limiter_update(&rl, &config);
	assert_int_equal(rl.bandwidth.budget, 2000);
	assert_int_equal(rl.ops.budget, 0);
	assert_false(rate_limiter_consume(&rl, 10, 1, T0));
	assert_int_equal(rate_limiter_wait_ns(&rl, 10, 0, T0), 0);

	/* Off altogether, then on again with a burst. */
	config = limits(0, 0, 0, 0, 0, 0);
	rate_limiter_update(&rl, &config);
	assert_false(rate_limiter_enabled(&rl));
	assert_true(rate_limiter_consume(&rl, 1 << 20, 100, T0));
	config = limits(100, 50, 1000, 0, 0, 0);
	rate_limiter_update(&rl, &config);
	assert_true(rate_limiter_consume(&rl, 150, 1, T0));
	assert_false(rate_limiter_consume(&rl, 1, 1, T0));
}

static void test_unblock_keeps_the_tokens(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 0, 1000, 0, 0, 0));
	(void)state;

	assert_true(rate_limiter_consume(&rl, 1000, 1, T0));
	assert_false(rate_limiter_consume(&rl, 500, 1, T0));
	rate_limiter_unblock(&rl); /* a device reset */
	assert_false(rate_limiter_blocked(&rl));
	assert_int_equal(rate_limiter_wait_ns(&rl, 500, 1, T0), 500 * MS);
	assert_false(rate_limiter_consume(&rl, 500, 1, T0 + 100 * MS));
}

static uint64_t transfer(struct rate_limiter *rl, uint64_t request, uint64_t ops, uint64_t duration)
{
	uint64_t now = T0, moved = 0;

	/* The device's loop: consume until refused, then sleep until the timer fires. */
	while (now < T0 + duration) {
		if (rate_limiter_consume(rl, request, ops, now)) {
			moved += request;
			continue;
		}
		now = rl->blocked_until_ns;
	}
	return moved;
}

static void assert_near(uint64_t got, uint64_t expected)
{
	if (got < expected - expected / 10 || got > expected + expected / 10)
		fail_msg("%llu is not within 10%% of %llu", (unsigned long long)got,
			 (unsigned long long)expected);
}

/* Over a minute of fake time the rate is size / refill_time, whatever the request size. */
static void test_long_run_rate_is_size_per_refill_time(void **state)
{
	static const uint64_t requests[] = {512, 4096, 65536, 100000, 250000, 1 << 20};
	(void)state;

	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		struct rate_limiter rl = limiter(limits(100000, 0, 100, 0, 0, 0)); /* 1 MB/s */
		uint64_t moved = transfer(&rl, requests[i], 1, 60 * S);
		/* The bucket's first fill comes on top; over a minute it is lost in the 10%. */
		assert_near(moved, 60 * 1000000ULL);
	}
	/* The ops bucket, 1000 ops/s, with bytes unlimited. */
	struct rate_limiter rl = limiter(limits(0, 0, 0, 50, 0, 50));
	assert_near(transfer(&rl, 1, 1, 30 * S), 30 * 1000);
	/* With a burst: the burst, then the rate. */
	rl = limiter(limits(100000, 5000000, 100, 0, 0, 0));
	assert_near(transfer(&rl, 65536, 1, 60 * S), 5000000 + 60 * 1000000ULL);
}

static void test_timer_is_armed_for_the_wait_and_disarmed_by_unblock(void **state)
{
	struct rate_limiter rl = limiter(limits(1000, 0, 100000, 0, 0, 0)); /* 1 byte per 100 ms */
	struct itimerspec spec;
	(void)state;

	assert_int_equal(rate_limiter_open_timer(&rl), 0);
	assert_true(rate_limiter_timer_fd(&rl) >= 0);
	assert_true(rate_limiter_consume(&rl, 1000, 1, rate_limiter_now(&rl)));
	assert_false(rate_limiter_consume(&rl, 100, 1, rate_limiter_now(&rl)));
	assert_int_equal(timerfd_gettime(rate_limiter_timer_fd(&rl), &spec), 0);
	/* 10 s, less the little time since (no more than a few seconds on any machine). */
	assert_in_range(spec.it_value.tv_sec, 5, 10);
	rate_limiter_timer_expired(&rl); /* nothing to read yet: no harm */
	rate_limiter_unblock(&rl);
	assert_int_equal(timerfd_gettime(rate_limiter_timer_fd(&rl), &spec), 0);
	assert_int_equal(spec.it_value.tv_sec, 0);
	assert_int_equal(spec.it_value.tv_nsec, 0);
	rate_limiter_close_timer(&rl);
	assert_int_equal(rate_limiter_timer_fd(&rl), -1);
	rate_limiter_close_timer(&rl);
}

static uint64_t fake_now;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static void test_clock_can_be_replaced(void **state)
{
	struct rate_limiter rl = limiter(limits(10, 0, 10, 0, 0, 0));
	(void)state;

	assert_true(rate_limiter_now(&rl) > 0);
	rate_limiter_set_clock(&rl, fake_clock);
	fake_now = 42;
	assert_int_equal(rate_limiter_now(&rl), 42);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unlimited_buckets_pass_everything),
	    cmocka_unit_test(test_bucket_starts_full_and_refills_over_time),
	    cmocka_unit_test(test_both_buckets_must_agree_and_refusal_takes_nothing),
	    cmocka_unit_test(test_burst_is_used_first_and_never_refilled),
	    cmocka_unit_test(test_oversize_request_passes_into_debt),
	    cmocka_unit_test(test_wait_is_the_exact_time_the_request_needs),
	    cmocka_unit_test(test_update_replaces_changed_buckets_full_and_unblocks),
	    cmocka_unit_test(test_unblock_keeps_the_tokens),
	    cmocka_unit_test(test_long_run_rate_is_size_per_refill_time),
	    cmocka_unit_test(test_timer_is_armed_for_the_wait_and_disarmed_by_unblock),
	    cmocka_unit_test(test_clock_can_be_replaced),
	};
	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
