/*
 * Unit tests for the VM-wide snapshot state (vmm/vm_state.c): through a real state file and
 * back, every validation refusal, kvmclock's flags for clock_realtime, and with a fake KVM
 * ioctl: the capture's GETs, the apply's order, and no call at all for an invalid state.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot_format.h"
#include "test_state_file.h"
#include "vm_state.h"

#define ERR_SIZE  512
#define MAX_CALLS 32u

static void test_state(struct vm_state *st)
{
	memset(st, 0, sizeof(*st));
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic_master.chip.pic.irq_base = 0x20;
	st->pic_master.chip.pic.imr = 0xfb;
	st->pic_master.chip.pic.elcr_mask = 0xf8;
	st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->pic_slave.chip.pic.irq_base = 0x28;
	st->pic_slave.chip.pic.imr = 0xff;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	st->ioapic.chip.ioapic.base_address = 0xfec00000;
	for (unsigned int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		st->ioapic.chip.ioapic.redirtbl[i].bits = 0x10000 | (0x30 + i);
	st->pit.flags = KVM_PIT_FLAGS_SPEAKER_DATA_ON;
	for (unsigned int i = 0; i < 3; i++) {
		st->pit.channels[i].count = 0x10000;
		/* channel 2 as KVM leaves it until the guest programs it */
		st->pit.channels[i].mode = i == 0 ? 2 : i == 1 ? 3 : 0xff;
		st->pit.channels[i].rw_mode = 3;
		st->pit.channels[i].read_state = 3;
		st->pit.channels[i].write_state = 4;
		st->pit.channels[i].gate = i != 2;
		st->pit.channels[i].count_load_time = 123456789 + i;
	}
	st->clock.clock = 987654321000ull;
	st->clock.flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
	st->clock.realtime = 1764770000000000000ull;
	st->clock.host_tsc = 0x123456789abcull;
	st->layout.nr_regions = 2;
	st->layout.regions[0] = (struct snap_mem_region){.gpa = 0, .size = 3ull << 30};
	st->layout.regions[1] = (struct snap_mem_region){
	    .gpa = 4ull << 30, .size = 1ull << 30, .file_offset = 3ull << 30};
}

/* ---- a state file ---- */

static void file_begin(struct file *f, struct snap_writer *w)
{
	file_begin_with(f, w, "/tmp/wisp-vmstate.XXXXXX", KVM_CAP_ADJUST_CLOCK, "GenuineIntel");
}

/* ---- a fake KVM ---- */

struct fake_kvm {
	unsigned long requests[MAX_CALLS];
	uint32_t chip_ids[MAX_CALLS]; /* of each KVM_GET/SET_IRQCHIP */
	unsigned int nr_calls;
	struct kvm_clock_data clock_set;
	const struct vm_state *source;
	int fail_request_nr;
	int adjust_clock;
};

static void fake_init(struct fake_kvm *k, const struct vm_state *source)
{
	memset(k, 0, sizeof(*k));
	k->source = source;
	k->fail_request_nr = -1;
}

static int fake_ioctl(void *ctx, int fd, unsigned long request, void *arg)
{
	struct fake_kvm *k = ctx;
	const struct vm_state *s = k->source;
	unsigned int n = k->nr_calls;

	(void)fd;
	if (n < MAX_CALLS)
		k->requests[k->nr_calls++] = request;
	if ((int)_IOC_NR(request) == k->fail_request_nr)
		return -EIO;
	switch (request) {
	case KVM_CHECK_EXTENSION:
		return (uintptr_t)arg == KVM_CAP_ADJUST_CLOCK ? k->adjust_clock : 0;
	case KVM_GET_IRQCHIP:
	case KVM_SET_IRQCHIP: {
		struct kvm_irqchip *chip = arg;

		if (n < MAX_CALLS)
			k->chip_ids[n] = chip->chip_id;
		if (request == KVM_SET_IRQCHIP)
			return 0;
		if (chip->chip_id == KVM_IRQCHIP_PIC_MASTER)
			*chip = s->pic_master;
		else if (chip->chip_id == KVM_IRQCHIP_PIC_SLAVE)
			*chip = s->pic_slave;
		else if (chip->chip_id == KVM_IRQCHIP_IOAPIC)
			*chip = s->ioapic;
		else
			return -EINVAL;
		return 0;
	}
	case KVM_GET_PIT2:
		memcpy(arg, &s->pit, sizeof(s->pit));
		return 0;
	case KVM_GET_CLOCK:
		memcpy(arg, &s->clock, sizeof(s->clock));
		return 0;
	case KVM_SET_CLOCK:
		memcpy(&k->clock_set, arg, sizeof(k->clock_set));
		return 0;
	}
	return 0;
}

/* ---- tests ---- */

static void test_round_trip_through_a_state_file(void **unused)
{
	struct vm_state in, out;
	struct snap_writer w;
	struct file f;
	char err[ERR_SIZE];
	(void)unused;

	test_state(&in);
	file_begin(&f, &w);
	assert_int_equal(vm_state_write(&w, &in, err, sizeof(err)), 0);
	file_finish_and_parse(&f, &w);
	assert_int_equal(f.idx.nr_sections, 6);
	assert_int_equal(vm_state_load(f.data, &f.idx, &out, err, sizeof(err)), 0);
	assert_memory_equal(&in, &out, sizeof(in));
	/* The KVMCLOCK section is struct kvm_clock_data as is. */
	{
		const struct snap_section *s = snap_find(&f.idx, SNAP_SEC_KVMCLOCK, 0);

		assert_non_null(s);
		assert_int_equal(s->length, 48);
		assert_memory_equal(f.data + s->offset, &in.clock, 48);
	}
	file_free(&f);
}

static void test_missing_sections(void **unused)
{
	struct vm_state in, out;
	struct snap_writer w;
	struct file f;
	char err[ERR_SIZE];
	(void)unused;

	test_state(&in);
	file_begin(&f, &w);
	assert_int_equal(snap_writer_add(&w, SNAP_SEC_PIC_MASTER, 0, &in.pic_master,
					 sizeof(in.pic_master), err, sizeof(err)),
			 0);
	assert_int_equal(snap_writer_add(&w, SNAP_SEC_PIC_SLAVE, 0, &in.pic_slave,
					 sizeof(in.pic_slave), err, sizeof(err)),
			 0);
	file_finish_and_parse(&f, &w);
	assert_int_equal(vm_state_load(f.data, &f.idx, &out, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "the state file's IOAPIC section is missing (520 bytes wanted)");
	file_free(&f);

	/* every KVM section, no memory layout */
	file_begin(&f, &w);
	assert_int_equal(vm_state_write(&w, &in, err, sizeof(err)), 0);
	file_finish_and_parse(&f, &w);
	for (uint32_t i = 0; i < f.idx.nr_sections; i++)
		if (f.idx.sections[i].type == SNAP_SEC_MEMORY_LAYOUT)
			f.idx.sections[i].type = SNAP_SEC_MACHINE_CONFIG;
	assert_int_equal(vm_state_load(f.data, &f.idx, &out, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "the state file has no MEMORY_LAYOUT section");
	file_free(&f);
}

struct refusal {
	const char *name;
	void (*mutate)(struct vm_state *st);
	const char *message;
};

static void m_master_id(struct vm_state *st)
{
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_SLAVE;
}
static void m_slave_pad(struct vm_state *st)
{
	st->pic_slave.pad = 1;
}
static void m_pic_tail(struct vm_state *st)
{
	st->pic_master.chip.dummy[400] = 1;
}
static void m_ioapic_base(struct vm_state *st)
{
	st->ioapic.chip.ioapic.base_address = 0xfed00000;
}
static void m_ioapic_id(struct vm_state *st)
{
	st->ioapic.chip_id = 3;
}
static void m_pit_flags(struct vm_state *st)
{
	st->pit.flags |= 4;
}
static void m_pit_reserved(struct vm_state *st)
{
	st->pit.reserved[8] = 1;
}
static void m_pit_mode(struct vm_state *st)
{
	st->pit.channels[1].mode = 6;
}
static void m_pit_count(struct vm_state *st)
{
	st->pit.channels[2].count = 0x10001;
}
static void m_pit_rw(struct vm_state *st)
{
	st->pit.channels[0].write_state = 5;
}
static void m_clock_flags(struct vm_state *st)
{
	st->clock.flags |= 1;
}
static void m_clock_pad(struct vm_state *st)
{
	st->clock.pad[3] = 1;
}
static void m_layout(struct vm_state *st)
{
	st->layout.regions[1].gpa = 2ull << 30; /* overlaps the first */
}
static void m_layout_empty(struct vm_state *st)
{
	st->layout.nr_regions = 0;
}

static const struct refusal refusals[] = {
    {"PIC master id", m_master_id, "PIC master: chip id 1 (must be 0)"},
    {"PIC slave pad", m_slave_pad, "PIC slave: chip id 1 (must be 1), padding 0x1"},
    {"PIC tail", m_pic_tail, "bytes after the state set"},
    {"IOAPIC base", m_ioapic_base, "IOAPIC at 0xfed00000; it is at 0xfec00000"},
    {"IOAPIC id", m_ioapic_id, "IOAPIC: chip id 3 (must be 2)"},
    {"PIT flags", m_pit_flags, "PIT flags 0x6 (known: 0x3)"},
    {"PIT reserved", m_pit_reserved, "reserved words set"},
    {"PIT mode", m_pit_mode,
     "PIT channel 1: count 65536 (at most 65536), mode 6 (at most 5, or 255)"},
    {"PIT count", m_pit_count, "PIT channel 2: count 65537"},
    {"PIT access", m_pit_rw, "access 3/3/5"},
    {"clock flags", m_clock_flags, "kvmclock flags 0xf (known: 0xe)"},
    {"clock padding", m_clock_pad, "kvmclock flags 0xe (known: 0xe) or padding set"},
    {"layout overlap", m_layout, "memory layout"},
    {"layout empty", m_layout_empty, "memory layout: 0 regions"},
};

static void test_every_refusal(void **unused)
{
	struct vm_state st, out;
	struct vm_state_host host = {.clock_flags = KVM_CLOCK_REALTIME};
	struct fake_kvm k;
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = &k};
	char err[ERR_SIZE];
	(void)unused;

	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];
		int ret;

		test_state(&st);
		assert_int_equal(vm_state_validate(&st, err, sizeof(err)), 0);
		r->mutate(&st);
		err[0] = '\0';
		ret = vm_state_validate(&st, err, sizeof(err));
		if (ret != -EINVAL || !strstr(err, r->message))
			fail_msg("%s: %d '%s', wanted -EINVAL '%s'", r->name, ret, err, r->message);
		fake_init(&k, &st);
		assert_int_equal(vm_state_apply(-1, &st, true, &host, &ops, err, sizeof(err)),
				 -EINVAL);
		assert_int_equal(k.nr_calls, 0);

		/* through a file (the writer refuses a bad memory layout itself) */
		if (r->mutate != m_layout && r->mutate != m_layout_empty) {
			struct snap_writer w;
			struct file f;

			file_begin(&f, &w);
			assert_int_equal(vm_state_write(&w, &st, err, sizeof(err)), 0);
			file_finish_and_parse(&f, &w);
			assert_int_equal(vm_state_load(f.data, &f.idx, &out, err, sizeof(err)),
					 -EINVAL);
			file_free(&f);
		}
	}
}

static void test_clock_realtime(void **unused)
{
	struct kvm_clock_data saved = {.clock = 5000,
				       .flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME |
						KVM_CLOCK_HOST_TSC,
				       .realtime = 77,
				       .host_tsc = 88};
	struct vm_state_host host = {.clock_flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME |
						    KVM_CLOCK_HOST_TSC};
	struct kvm_clock_data set;
	bool advanced;
	(void)unused;

	/* asked, in the file, on the host: KVM advances the clock by the wall-clock time */
	set = vm_state_clock_to_set(&saved, true, &host, 1000077, &advanced);
	assert_true(advanced);
	assert_int_equal(set.flags, KVM_CLOCK_REALTIME);
	assert_int_equal(set.clock, 5000);
	assert_int_equal(set.realtime, 77);
	/* not asked: the clock carries on from the saved value, no flag at all */
	set = vm_state_clock_to_set(&saved, false, &host, 1000077, &advanced);
	assert_false(advanced);
	assert_int_equal(set.flags, 0);
	assert_int_equal(set.clock, 5000);
	/* asked, but the file's host had no wall-clock time */
	saved.flags = KVM_CLOCK_TSC_STABLE;
	set = vm_state_clock_to_set(&saved, true, &host, 1000077, &advanced);
	assert_false(advanced);
	assert_int_equal(set.flags, 0);
	/* asked, but this host's KVM cannot: wisp adds the wall-clock time since (1 ms) */
	saved.flags = KVM_CLOCK_REALTIME;
	host.clock_flags = KVM_CLOCK_TSC_STABLE;
	set = vm_state_clock_to_set(&saved, true, &host, 1000077, &advanced);
	assert_true(advanced);
	assert_int_equal(set.flags, 0);
	assert_int_equal(set.clock, 5000 + 1000000);
	/* a wall clock that went backwards since: no advance, never a clock going back */
	set = vm_state_clock_to_set(&saved, true, &host, 50, &advanced);
	assert_int_equal(set.clock, 5000);
}

static void test_apply_order(void **unused)
{
	static const unsigned long expected[] = {KVM_SET_PIT2, KVM_SET_CLOCK, KVM_SET_IRQCHIP,
						 KVM_SET_IRQCHIP, KVM_SET_IRQCHIP};
	struct vm_state st;
	struct vm_state_host host = {.clock_flags = KVM_CLOCK_REALTIME};
	struct fake_kvm k;
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = &k};
	char err[ERR_SIZE];
	(void)unused;

	test_state(&st);
	fake_init(&k, &st);
	assert_int_equal(vm_state_apply(-1, &st, true, &host, &ops, err, sizeof(err)), 0);
	assert_int_equal(k.nr_calls, 5);
	for (unsigned int i = 0; i < 5; i++)
		assert_int_equal(k.requests[i], expected[i]);
	assert_int_equal(k.chip_ids[2], KVM_IRQCHIP_PIC_MASTER);
	assert_int_equal(k.chip_ids[3], KVM_IRQCHIP_PIC_SLAVE);
	assert_int_equal(k.chip_ids[4], KVM_IRQCHIP_IOAPIC);
	assert_int_equal(k.clock_set.flags, KVM_CLOCK_REALTIME);
	assert_int_equal(k.clock_set.clock, st.clock.clock);

	fake_init(&k, &st);
	assert_int_equal(vm_state_apply(-1, &st, false, &host, &ops, err, sizeof(err)), 0);
	assert_int_equal(k.clock_set.flags, 0);

	/* a failing SET stops there */
	fake_init(&k, &st);
	k.fail_request_nr = _IOC_NR(KVM_SET_CLOCK);
	assert_int_equal(vm_state_apply(-1, &st, false, &host, &ops, err, sizeof(err)), -EIO);
	assert_string_equal(err, "KVM_SET_CLOCK failed: Input/output error");
	assert_int_equal(k.nr_calls, 2);
}

static void test_capture_and_probe(void **unused)
{
	struct vm_state src, st;
	struct vm_state_host host;
	struct fake_kvm k;
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = &k};
	char err[ERR_SIZE];
	(void)unused;

	test_state(&src);
	fake_init(&k, &src);
	assert_int_equal(vm_state_capture(-1, &src.layout, &ops, &st, err, sizeof(err)), 0);
	assert_memory_equal(&src, &st, sizeof(st));
	assert_int_equal(k.chip_ids[0], KVM_IRQCHIP_PIC_MASTER);
	assert_int_equal(k.chip_ids[1], KVM_IRQCHIP_PIC_SLAVE);
	assert_int_equal(k.chip_ids[2], KVM_IRQCHIP_IOAPIC);
	for (unsigned int i = 0; i < k.nr_calls; i++)
		assert_true(k.requests[i] == KVM_GET_IRQCHIP || k.requests[i] == KVM_GET_PIT2 ||
			    k.requests[i] == KVM_GET_CLOCK);

	/* a KVM that gives no wall-clock time: wisp's own reading, now, goes with the clock */
	src.clock.flags = KVM_CLOCK_TSC_STABLE;
	src.clock.realtime = 0;
	fake_init(&k, &src);
	assert_int_equal(vm_state_capture(-1, &src.layout, &ops, &st, err, sizeof(err)), 0);
	assert_int_equal(st.clock.flags, KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME);
	assert_true(st.clock.realtime > 1700000000ull * 1000000000ull); /* after 2023 */
	assert_int_equal(st.clock.clock, src.clock.clock);
	test_state(&src);

	/* a state KVM gave that could not be restored is refused at save time */
	src.pit.channels[0].mode = 7;
	fake_init(&k, &src);
	assert_int_equal(vm_state_capture(-1, &src.layout, &ops, &st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "mode 7"));
	src.pit.channels[0].mode = 2;
	fake_init(&k, &src);
	k.fail_request_nr = _IOC_NR(KVM_GET_PIT2);
	assert_int_equal(vm_state_capture(-1, &src.layout, &ops, &st, err, sizeof(err)), -EIO);
	assert_string_equal(err, "KVM_GET_PIT2 failed: Input/output error");

	fake_init(&k, &src);
	k.adjust_clock = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
	assert_int_equal(vm_state_host_probe(-1, &ops, &host, err, sizeof(err)), 0);
	assert_int_equal(host.clock_flags, k.adjust_clock);
	k.fail_request_nr = _IOC_NR(KVM_CHECK_EXTENSION);
	assert_int_equal(vm_state_host_probe(-1, &ops, &host, err, sizeof(err)), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_through_a_state_file),
	    cmocka_unit_test(test_missing_sections),
	    cmocka_unit_test(test_every_refusal),
	    cmocka_unit_test(test_clock_realtime),
	    cmocka_unit_test(test_apply_order),
	    cmocka_unit_test(test_capture_and_probe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
