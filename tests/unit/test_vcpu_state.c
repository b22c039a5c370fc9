/*
 * Unit tests for a vCPU's snapshot state (vmm/vcpu_state.c): the state goes through a real
 * state file (snap_writer, snap_parse) and back; every validation refuses what it should;
 * and KVM is a fake ioctl that answers the GETs and records the SETs, so that the order of
 * a restore, the MSR batches and "an invalid state makes no call" are checked.
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
#include "vcpu_state.h"

#define ERR_SIZE	      512
#define HOST_TSC_KHZ	      2000000u
#define NR_TEST_MSRS	      150u /* more than two batches */
#define MSR_IA32_TSC	      0x10u
#define MSR_IA32_TSC_DEADLINE 0x6e0u
#define MAX_CALLS	      256u

/* ---- a host and a valid state ---- */

static void test_host(struct vcpu_state_host *host)
{
	memset(host, 0, sizeof(*host));
	host->nr_msrs = NR_TEST_MSRS;
	/* IA32_TSC_DEADLINE first, to see that a restore puts it last. */
	host->msr_indices[0] = MSR_IA32_TSC_DEADLINE;
	host->msr_indices[1] = MSR_IA32_TSC;
	for (uint32_t i = 2; i < NR_TEST_MSRS; i++)
		host->msr_indices[i] = 0xc0010000u + i;
	host->xsave_size = 4096;
	host->supported_xcr0 = 0x7; /* x87, SSE, AVX */
	host->tsc_khz = HOST_TSC_KHZ;
}

/* A vCPU in 64-bit mode with recognisable contents in every part. */
static void test_state(struct vcpu_state *st, unsigned int index,
		       const struct vcpu_state_host *host)
{
	uint32_t apic_id = index << 24, mxcsr = 0x1f80;
	uint64_t xstate_bv = 0x3;

	memset(st, 0, sizeof(*st));
	st->regs.rip = 0x1000000 + index;
	st->regs.rsp = 0x8000;
	st->regs.rflags = 0x202;
	st->regs.rax = 0x1234567890abcdefull;
	st->sregs.cr0 = 0x80050033;
	st->sregs.cr3 = 0x9000;
	st->sregs.cr4 = 0x20;	/* PAE */
	st->sregs.efer = 0x500; /* LME, LMA */
	st->sregs.cs.l = 1;
	st->sregs.apic_base = 0xfee00900;
	st->xsave_size = host->xsave_size;
	st->xsave = calloc(1, st->xsave_size);
	assert_non_null(st->xsave);
	for (uint32_t i = 32; i < 512; i++)
		st->xsave[i] = (uint8_t)(i * 7 + index);
	memcpy(st->xsave + 24, &mxcsr, sizeof(mxcsr));
	memcpy(st->xsave + 512, &xstate_bv, sizeof(xstate_bv));
	st->xcrs.nr_xcrs = 1;
	st->xcrs.xcrs[0].value = 0x7;
	st->nr_msrs = host->nr_msrs;
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		st->msrs[i].index = host->msr_indices[i];
		st->msrs[i].data = 0x5000000000ull + i * 3 + index;
	}
	for (size_t i = 0; i < sizeof(st->lapic.regs); i++)
		st->lapic.regs[i] = (char)(i ^ index);
	memcpy(&st->lapic.regs[0x20], &apic_id, sizeof(apic_id));
	st->events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	st->events.interrupt.injected = 1;
	st->events.interrupt.nr = 0x30;
	st->mp_state.mp_state = index ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;
	st->debugregs.dr6 = 0xffff0ff0;
	st->debugregs.dr7 = 0x400;
	st->debugregs.db[1] = 0xdead0000 + index;
	st->nr_cpuid = 3;
	st->cpuid[0] = (struct kvm_cpuid_entry2){.function = 0, .eax = 0xd, .ebx = 0x68747541};
	st->cpuid[1] = (struct kvm_cpuid_entry2){.function = 1, .eax = 0x800f12, .ecx = 0x80000000};
	st->cpuid[2] = (struct kvm_cpuid_entry2){
	    .function = 0xd, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 1};
	st->tsc_khz = HOST_TSC_KHZ;
}

static void assert_states_equal(const struct vcpu_state *a, const struct vcpu_state *b)
{
	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->sregs, &b->sregs, sizeof(a->sregs));
	assert_int_equal(a->xsave_size, b->xsave_size);
	assert_memory_equal(a->xsave, b->xsave, a->xsave_size);
	assert_memory_equal(&a->xcrs, &b->xcrs, sizeof(a->xcrs));
	assert_int_equal(a->nr_msrs, b->nr_msrs);
	assert_memory_equal(a->msrs, b->msrs, a->nr_msrs * sizeof(a->msrs[0]));
	assert_memory_equal(&a->lapic, &b->lapic, sizeof(a->lapic));
	assert_memory_equal(&a->events, &b->events, sizeof(a->events));
	assert_memory_equal(&a->mp_state, &b->mp_state, sizeof(a->mp_state));
	assert_memory_equal(&a->debugregs, &b->debugregs, sizeof(a->debugregs));
	assert_int_equal(a->nr_cpuid, b->nr_cpuid);
	assert_memory_equal(a->cpuid, b->cpuid, a->nr_cpuid * sizeof(a->cpuid[0]));
	assert_int_equal(a->tsc_khz, b->tsc_khz);
}

/* ---- a state file in a scratch directory ---- */

static void file_begin(struct file *f, struct snap_writer *w)
{
	file_begin_with(f, w, "/tmp/wisp-vcpustate.XXXXXX", KVM_CAP_XSAVE2, "AuthenticAMD");
}

/* ---- a fake KVM ---- */

struct fake_kvm {
	unsigned long requests[MAX_CALLS];
	unsigned int nr_calls;
	unsigned int msr_batches[32]; /* nmsrs of each KVM_GET_MSRS / KVM_SET_MSRS */
	unsigned int nr_msr_batches;
	struct kvm_msr_entry msrs_set[SNAP_MAX_MSRS]; /* what KVM_SET_MSRS got, in order */
	unsigned int nr_msrs_set;
	unsigned long tsc_khz_set;
	uint32_t cpuid_nent_set;
	int msr_short_at;    /* KVM_GET/SET_MSRS stop at this MSR overall, or -1 */
	int fail_request_nr; /* the _IOC_NR of a request to fail with EIO, or -1 */
	int xsave2_size;     /* KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) */
	bool msr_list_e2big;
	bool cpuid_zero_tail; /* KVM_GET_CPUID2 as Linux 6.1 answers: all nent, zeroes after */
	const struct vcpu_state *source; /* what the GETs answer */
	unsigned int msrs_served;
};

static void fake_init(struct fake_kvm *k, const struct vcpu_state *source)
{
	memset(k, 0, sizeof(*k));
	k->msr_short_at = -1;
	k->fail_request_nr = -1;
	k->source = source;
}

static int fake_msrs(struct fake_kvm *k, struct kvm_msrs *msrs, bool set)
{
	unsigned int n = msrs->nmsrs;

	if (k->nr_msr_batches < 32)
		k->msr_batches[k->nr_msr_batches++] = n;
	for (unsigned int i = 0; i < n; i++) {
		unsigned int overall = k->msrs_served;

		if ((int)overall == k->msr_short_at)
			return (int)i;
		k->msrs_served++;
		if (set) {
			k->msrs_set[k->nr_msrs_set++] = msrs->entries[i];
		} else {
			for (uint32_t j = 0; j < k->source->nr_msrs; j++)
				if (k->source->msrs[j].index == msrs->entries[i].index)
					msrs->entries[i].data = k->source->msrs[j].data;
		}
	}
	return (int)n;
}

static int fake_ioctl(void *ctx, int fd, unsigned long request, void *arg)
{
	struct fake_kvm *k = ctx;
	const struct vcpu_state *s = k->source;

	(void)fd;
	if (k->nr_calls < MAX_CALLS)
		k->requests[k->nr_calls++] = request;
	if ((int)_IOC_NR(request) == k->fail_request_nr)
		return -EIO;
	switch (request) {
	case KVM_GET_MSR_INDEX_LIST: {
		struct kvm_msr_list *list = arg;

		if (k->msr_list_e2big) {
			list->nmsrs = 5000;
			return -E2BIG;
		}
		list->nmsrs = 3;
		list->indices[0] = 0x10;
		list->indices[1] = 0x174;
		list->indices[2] = 0x4b564d00;
		return 0;
	}
	case KVM_CHECK_EXTENSION:
		if ((uintptr_t)arg == KVM_CAP_XSAVE2)
			return k->xsave2_size;
		if ((uintptr_t)arg == KVM_CAP_TSC_CONTROL)
			return 1;
		return 0;
	case KVM_GET_SUPPORTED_CPUID: {
		struct kvm_cpuid2 *c = arg;

		c->nent = 2;
		c->entries[0] = (struct kvm_cpuid_entry2){.function = 0, .eax = 0xd};
		c->entries[1] = (struct kvm_cpuid_entry2){
		    .function = 0xd, .index = 0, .eax = 0x207, .edx = 0x1};
		return 0;
	}
	case KVM_GET_TSC_KHZ:
		return HOST_TSC_KHZ;
	case KVM_GET_MP_STATE:
		memcpy(arg, &s->mp_state, sizeof(s->mp_state));
		return 0;
	case KVM_GET_REGS:
		memcpy(arg, &s->regs, sizeof(s->regs));
		return 0;
	case KVM_GET_SREGS:
		memcpy(arg, &s->sregs, sizeof(s->sregs));
		return 0;
	case KVM_GET_XSAVE:
		memcpy(arg, s->xsave, 4096);
		return 0;
	case KVM_GET_XSAVE2:
		memcpy(arg, s->xsave, s->xsave_size);
		return 0;
	case KVM_GET_XCRS:
		memcpy(arg, &s->xcrs, sizeof(s->xcrs));
		return 0;
	case KVM_GET_DEBUGREGS:
		memcpy(arg, &s->debugregs, sizeof(s->debugregs));
		return 0;
	case KVM_GET_LAPIC:
		memcpy(arg, &s->lapic, sizeof(s->lapic));
		return 0;
	case KVM_GET_VCPU_EVENTS:
		memcpy(arg, &s->events, sizeof(s->events));
		return 0;
	case KVM_GET_CPUID2: {
		struct kvm_cpuid2 *c = arg;

		if (c->nent < s->nr_cpuid)
			return -E2BIG;
		if (k->cpuid_zero_tail)
			memset(c->entries, 0, c->nent * sizeof(c->entries[0]));
		else
			c->nent = s->nr_cpuid;
		memcpy(c->entries, s->cpuid, s->nr_cpuid * sizeof(s->cpuid[0]));
		return 0;
	}
	case KVM_GET_MSRS:
		return fake_msrs(k, arg, false);
	case KVM_SET_MSRS:
		return fake_msrs(k, arg, true);
	case KVM_SET_CPUID2:
		k->cpuid_nent_set = ((struct kvm_cpuid2 *)arg)->nent;
		return 0;
	case KVM_SET_TSC_KHZ:
		k->tsc_khz_set = (uintptr_t)arg;
		return 0;
	}
	return 0; /* the other SETs, KVM_KVMCLOCK_CTRL */
}

/* How many of the recorded calls change the vCPU. */
static unsigned int count_sets(const struct fake_kvm *k)
{
	static const unsigned long sets[] = {
	    KVM_SET_CPUID2, KVM_SET_TSC_KHZ, KVM_SET_MP_STATE,	  KVM_SET_REGS,
	    KVM_SET_SREGS,  KVM_SET_XSAVE,   KVM_SET_XCRS,	  KVM_SET_DEBUGREGS,
	    KVM_SET_LAPIC,  KVM_SET_MSRS,    KVM_SET_VCPU_EVENTS, KVM_KVMCLOCK_CTRL,
	};
	unsigned int n = 0;

	for (unsigned int i = 0; i < k->nr_calls; i++)
		for (size_t j = 0; j < sizeof(sets) / sizeof(sets[0]); j++)
			n += k->requests[i] == sets[j];
	return n;
}

/* ---- round trip ---- */

static void test_round_trip_through_a_state_file(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *in = calloc(2, sizeof(*in)), *out = calloc(1, sizeof(*out));
	struct snap_writer w;
	struct file f;
	char err[ERR_SIZE];
	(void)unused;

	assert_non_null(in);
	assert_non_null(out);
	test_host(&host);
	test_state(&in[0], 0, &host);
	test_state(&in[1], 1, &host);
	file_begin(&f, &w);
	assert_int_equal(vcpu_state_write(&w, 0, &in[0], err, sizeof(err)), 0);
	assert_int_equal(vcpu_state_write(&w, 1, &in[1], err, sizeof(err)), 0);
	file_finish_and_parse(&f, &w);
	/* 11 sections per vCPU */
	assert_int_equal(f.idx.nr_sections, 22);

	for (unsigned int v = 0; v < 2; v++) {
		assert_int_equal(vcpu_state_load(f.data, &f.idx, v, &host, out, err, sizeof(err)),
				 0);
		assert_states_equal(&in[v], out);
		vcpu_state_free(out);
	}
	/* The sections are the documented bytes: the MSR list's header, then the entries. */
	{
		const struct snap_section *s = snap_find(&f.idx, SNAP_SEC_VCPU_MSRS, 1);
		uint32_t count;

		assert_non_null(s);
		assert_int_equal(s->length, 8 + NR_TEST_MSRS * 16);
		memcpy(&count, f.data + s->offset, 4);
		assert_int_equal(count, NR_TEST_MSRS);
		assert_memory_equal(f.data + s->offset + 8, in[1].msrs, 16);
	}
	/* vCPU 2 has no sections. */
	assert_int_equal(vcpu_state_load(f.data, &f.idx, 2, &host, out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no VCPU_REGS section for vCPU 2"));

	vcpu_state_free(&in[0]);
	vcpu_state_free(&in[1]);
	file_free(&f);
	free(in);
	free(out);
}

/* A file with only some of a vCPU's sections: decode names the first missing one. */
static void test_missing_section(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *st = calloc(1, sizeof(*st));
	struct snap_writer w;
	struct file f;
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	test_state(st, 0, &host);
	file_begin(&f, &w);
	assert_int_equal(
	    snap_writer_add(&w, SNAP_SEC_VCPU_REGS, 0, &st->regs, sizeof(st->regs), err, ERR_SIZE),
	    0);
	file_finish_and_parse(&f, &w);
	vcpu_state_free(st);
	assert_int_equal(vcpu_state_decode(f.data, &f.idx, 0, st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no VCPU_SREGS section for vCPU 0"));
	assert_null(st->xsave);
	file_free(&f);
	free(st);
}

/* Decoding re-checks list headers and sizes on its own (an index crafted by hand, not by
 * snap_parse, which refuses these first). */
static void test_decode_refuses_bad_lists(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *st = calloc(1, sizeof(*st));
	uint32_t types[] = {SNAP_SEC_VCPU_REGS,	  SNAP_SEC_VCPU_SREGS,	  SNAP_SEC_VCPU_XSAVE,
			    SNAP_SEC_VCPU_XCRS,	  SNAP_SEC_VCPU_MSRS,	  SNAP_SEC_VCPU_LAPIC,
			    SNAP_SEC_VCPU_EVENTS, SNAP_SEC_VCPU_MP_STATE, SNAP_SEC_VCPU_DEBUGREGS,
			    SNAP_SEC_VCPU_CPUID,  SNAP_SEC_VCPU_TSC_KHZ};
	uint64_t sizes[] = {sizeof(struct kvm_regs),
			    sizeof(struct kvm_sregs),
			    4096,
			    sizeof(struct kvm_xcrs),
			    8 + 2 * 16,
			    sizeof(struct kvm_lapic_state),
			    sizeof(struct kvm_vcpu_events),
			    4,
			    sizeof(struct kvm_debugregs),
			    8 + 40,
			    8};
	struct snap_section sections[11];
	struct snap_index idx = {.nr_sections = 11, .sections = sections};
	uint8_t *data = calloc(1, 16384);
	uint64_t offset = 0;
	uint32_t v;
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	for (unsigned int i = 0; i < 11; i++) {
		sections[i] = (struct snap_section){
		    .type = types[i], .instance = 0, .offset = offset, .length = sizes[i]};
		offset += (sizes[i] + 7) & ~7ull;
	}
	v = 2;
	memcpy(data + sections[4].offset, &v, 4); /* 2 MSRs */
	v = 1;
	memcpy(data + sections[9].offset, &v, 4); /* 1 CPUID entry */
	assert_int_equal(vcpu_state_decode(data, &idx, 0, st, err, sizeof(err)), 0);
	assert_int_equal(st->nr_msrs, 2);
	assert_int_equal(st->nr_cpuid, 1);
	vcpu_state_free(st);

	/* MSR count 3 in a section that holds 2 */
	v = 3;
	memcpy(data + sections[4].offset, &v, 4);
	assert_int_equal(vcpu_state_decode(data, &idx, 0, st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "VCPU_MSRS section holds 3 entries in 40 bytes"));
	v = 2;
	memcpy(data + sections[4].offset, &v, 4);
	/* reserved word of the CPUID header */
	memcpy(data + sections[9].offset + 4, &v, 4);
	assert_int_equal(vcpu_state_decode(data, &idx, 0, st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "VCPU_CPUID"));
	memset(data + sections[9].offset + 4, 0, 4);
	/* a fixed-size section of the wrong size */
	sections[1].length = 300;
	assert_int_equal(vcpu_state_decode(data, &idx, 0, st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "VCPU_SREGS section is 300 bytes, not 312"));
	sections[1].length = sizeof(struct kvm_sregs);
	/* XSAVE below 4 KiB */
	sections[2].length = 4000;
	assert_int_equal(vcpu_state_decode(data, &idx, 0, st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "XSAVE section is 4000 bytes"));
	vcpu_state_free(st);
	free(st);
	free(data);
}

/* ---- validation ---- */

struct refusal {
	const char *name;
	void (*mutate)(struct vcpu_state *st, struct vcpu_state_host *host);
	int expected;
	const char *message;
};

static void m_xsave_size(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)st;
	host->xsave_size = 8192;
}
static void m_xsave_features(struct vcpu_state *st, struct vcpu_state_host *host)
{
	uint64_t bv = 0xe7; /* AVX-512 */
	(void)host;
	memcpy(st->xsave + 512, &bv, 8);
}
static void m_xsave_compacted(struct vcpu_state *st, struct vcpu_state_host *host)
{
	uint64_t comp = 1ull << 63 | 3;
	(void)host;
	memcpy(st->xsave + 520, &comp, 8);
}
static void m_xsave_mxcsr(struct vcpu_state *st, struct vcpu_state_host *host)
{
	uint32_t mxcsr = 0x10000;
	(void)host;
	memcpy(st->xsave + 24, &mxcsr, 4);
}
static void m_xcr0_features(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->xcrs.xcrs[0].value = 0xe7;
}
static void m_xcr0_no_x87(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->xcrs.xcrs[0].value = 0x6;
}
static void m_xcr_count(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->xcrs.nr_xcrs = 17;
}
static void m_xcr_index(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->xcrs.xcrs[0].xcr = 1;
}
static void m_msr_not_saveable(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->msrs[77].index = 0x12345;
}
static void m_msr_host_lacks(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)st;
	host->nr_msrs--; /* the host no longer saves the last MSR */
}
static void m_msr_twice(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->msrs[100].index = st->msrs[3].index;
}
static void m_msr_count(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->nr_msrs = SNAP_MAX_MSRS + 1;
}
static void m_msr_reserved(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->msrs[5].reserved = 1;
}
static void m_cpuid_none(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->nr_cpuid = 0;
}
static void m_cpuid_too_many(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->nr_cpuid = SNAP_MAX_CPUID_ENTRIES + 1;
}
static void m_cpuid_twice(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->cpuid[2].function = 1;
	st->cpuid[2].index = 0;
}
static void m_cpuid_padding(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->cpuid[1].padding[2] = 9;
}
static void m_tsc_zero(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->tsc_khz = 0;
}
static void m_tsc_huge(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->tsc_khz = 1ull << 40;
}
static void m_tsc_other_no_scaling(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->tsc_khz = HOST_TSC_KHZ + HOST_TSC_KHZ / 1000; /* 1000 ppm off */
}
static void m_sregs_mode(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->sregs.cr4 = 0; /* long mode without PAE */
}
static void m_sregs_pg_without_pe(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->sregs.cr0 = 0x80000000;
}
static void m_sregs_two_interrupts(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->sregs.interrupt_bitmap[1] = 0x11;
}
static void m_events_flags(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->events.flags |= 0x100;
}
static void m_events_nmi_exception(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->events.exception.injected = 1;
	st->events.exception.nr = 2;
}
static void m_events_reserved(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->events.reserved[3] = 1;
}
static void m_debugregs(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->debugregs.dr7 = 1ull << 32 | 0x400;
}
static void m_debugregs_flags(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->debugregs.flags = 1;
}
static void m_mp_state(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->mp_state.mp_state = KVM_MP_STATE_STOPPED;
}
static void m_lapic_id(struct vcpu_state *st, struct vcpu_state_host *host)
{
	(void)host;
	st->lapic.regs[0x23] = 5;
}

static const struct refusal refusals[] = {
    {"XSAVE size", m_xsave_size, -ENOTSUP, "XSAVE state is 4096 bytes; this host's KVM uses 8192"},
    {"XSAVE features", m_xsave_features, -ENOTSUP, "XSAVE state holds features 0xe7"},
    {"XSAVE compacted", m_xsave_compacted, -EINVAL, "not the standard format"},
    {"MXCSR", m_xsave_mxcsr, -EINVAL, "MXCSR 0x10000"},
    {"XCR0 features", m_xcr0_features, -ENOTSUP, "XCR0 0xe7 enables features"},
    {"XCR0 x87", m_xcr0_no_x87, -EINVAL, "XCR0 0x6"},
    {"XCR count", m_xcr_count, -EINVAL, "17 XCRs (at most 16)"},
    {"XCR index", m_xcr_index, -EINVAL, "XCR1"},
    {"MSR not saveable", m_msr_not_saveable, -ENOTSUP, "MSR 0x12345 is not one this host"},
    {"MSR host lacks", m_msr_host_lacks, -ENOTSUP, "MSR 0xc0010095 is not one this host"},
    {"MSR twice", m_msr_twice, -EINVAL, "MSR 0xc0010003 is saved twice"},
    {"MSR count", m_msr_count, -EINVAL, "1025 MSRs (at most 1024)"},
    {"MSR reserved", m_msr_reserved, -EINVAL, "reserved field 0x1"},
    {"no CPUID", m_cpuid_none, -EINVAL, "0 CPUID entries (1 to 256)"},
    {"CPUID count", m_cpuid_too_many, -EINVAL, "257 CPUID entries (1 to 256)"},
    {"CPUID twice", m_cpuid_twice, -EINVAL, "CPUID entry 0x1.0 appears twice"},
    {"CPUID padding", m_cpuid_padding, -EINVAL, "CPUID entry 0x1.0 has flags 0x0 or padding"},
    {"TSC 0", m_tsc_zero, -EINVAL, "TSC frequency 0 kHz"},
    {"TSC huge", m_tsc_huge, -EINVAL, "TSC frequency 1099511627776 kHz"},
    {"TSC unscalable", m_tsc_other_no_scaling, -ENOTSUP, "cannot scale it"},
    {"SREGS mode", m_sregs_mode, -EINVAL, "do not make a valid mode"},
    {"CR0 PG without PE", m_sregs_pg_without_pe, -EINVAL, "CR0 0x80000000"},
    {"two interrupts", m_sregs_two_interrupts, -EINVAL, "2 pending interrupts"},
    {"events flags", m_events_flags, -EINVAL, "vCPU events flags 0x105"},
    {"NMI as exception", m_events_nmi_exception, -EINVAL, "exception vector 2"},
    {"events reserved", m_events_reserved, -EINVAL, "reserved bytes set"},
    {"DR7 high half", m_debugregs, -EINVAL, "DR7 0x100000400"},
    {"debugregs flags", m_debugregs_flags, -EINVAL, "flags 0x1"},
    {"MP state", m_mp_state, -EINVAL, "MP state 5"},
    {"LAPIC ID", m_lapic_id, -EINVAL, "the LAPIC's ID is 5"},
};

/* Each refusal: validate, load (through a file) and apply refuse it, and apply makes no
 * KVM call at all. */
static void test_every_refusal(void **unused)
{
	struct vcpu_state *st = calloc(1, sizeof(*st)), *out = calloc(1, sizeof(*out));
	struct state_ioctl ops;
	struct fake_kvm *k = calloc(1, sizeof(*k));
	char err[ERR_SIZE];
	(void)unused;

	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		const struct refusal *r = &refusals[i];
		struct vcpu_state_host host;
		unsigned int index = 1;

		int ret;

		test_host(&host);
		test_state(st, index, &host);
		/* valid before the change */
		assert_int_equal(vcpu_state_validate(st, index, &host, err, sizeof(err)), 0);
		r->mutate(st, &host);
		err[0] = '\0';
		ret = vcpu_state_validate(st, index, &host, err, sizeof(err));
		if (ret != r->expected)
			fail_msg("%s: validate returned %d, not %d ('%s')", r->name, ret,
				 r->expected, err);
		if (!strstr(err, r->message))
			fail_msg("%s: message '%s' lacks '%s'", r->name, err, r->message);
		assert_non_null(strstr(err, "vCPU 1"));

		fake_init(k, st);
		ops = (struct state_ioctl){.ioctl = fake_ioctl, .ctx = k};
		assert_int_equal(vcpu_state_apply(-1, index, st, &host, &ops, err, sizeof(err)),
				 r->expected);
		assert_int_equal(k->nr_calls, 0);

		/* Through a file, when the file can hold it at all (the format refuses too
		 * many MSRs or CPUID entries itself). */
		if (st->nr_msrs <= SNAP_MAX_MSRS && st->nr_cpuid <= SNAP_MAX_CPUID_ENTRIES &&
		    st->xsave_size == 4096) {
			struct snap_writer w;
			struct file f;

			file_begin(&f, &w);
			assert_int_equal(vcpu_state_write(&w, index, st, err, sizeof(err)), 0);
			file_finish_and_parse(&f, &w);
			assert_int_equal(
			    vcpu_state_load(f.data, &f.idx, index, &host, out, err, sizeof(err)),
			    r->expected);
			assert_null(out->xsave);
			file_free(&f);
		}
		vcpu_state_free(st);
	}
	free(k);
	free(st);
	free(out);
}

/* A TSC within 250 ppm needs no scaling; further off, a host with TSC control scales. */
static void test_tsc_tolerance_and_scaling(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *st = calloc(1, sizeof(*st));
	struct fake_kvm *k = calloc(1, sizeof(*k));
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = k};
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	test_state(st, 0, &host);
	st->tsc_khz = HOST_TSC_KHZ + HOST_TSC_KHZ / 5000; /* 200 ppm */
	fake_init(k, st);
	assert_int_equal(vcpu_state_apply(-1, 0, st, &host, &ops, err, sizeof(err)), 0);
	assert_int_equal(k->tsc_khz_set, 0);

	st->tsc_khz = 2500000;
	assert_int_equal(vcpu_state_validate(st, 0, &host, err, sizeof(err)), -ENOTSUP);
	host.tsc_control = true;
	fake_init(k, st);
	assert_int_equal(vcpu_state_apply(-1, 0, st, &host, &ops, err, sizeof(err)), 0);
	assert_int_equal(k->tsc_khz_set, 2500000);
	/* right after KVM_SET_CPUID2 */
	assert_int_equal(k->requests[0], KVM_SET_CPUID2);
	assert_int_equal(k->requests[1], KVM_SET_TSC_KHZ);
	vcpu_state_free(st);
	free(st);
	free(k);
}

/* ---- apply ---- */

static void test_apply_order_and_msr_batches(void **unused)
{
	static const unsigned long expected[] = {
	    KVM_SET_CPUID2, KVM_SET_MP_STATE,	 KVM_SET_REGS,	    KVM_SET_SREGS, KVM_SET_XSAVE,
	    KVM_SET_XCRS,   KVM_SET_DEBUGREGS,	 KVM_SET_LAPIC,	    KVM_SET_MSRS,  KVM_SET_MSRS,
	    KVM_SET_MSRS,   KVM_SET_VCPU_EVENTS, KVM_KVMCLOCK_CTRL,
	};
	struct vcpu_state_host host;
	struct vcpu_state *st = calloc(1, sizeof(*st));
	struct fake_kvm *k = calloc(1, sizeof(*k));
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = k};
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	test_state(st, 0, &host);
	fake_init(k, st);
	assert_int_equal(vcpu_state_apply(-1, 0, st, &host, &ops, err, sizeof(err)), 0);
	assert_int_equal(k->nr_calls, sizeof(expected) / sizeof(expected[0]));
	for (unsigned int i = 0; i < k->nr_calls; i++)
		assert_int_equal(k->requests[i], expected[i]);
	assert_int_equal(k->cpuid_nent_set, 3);
	/* 150 MSRs: 64 + 64 + 22, every one set once, IA32_TSC_DEADLINE last */
	assert_int_equal(k->nr_msr_batches, 3);
	assert_int_equal(k->msr_batches[0], VCPU_STATE_MSR_BATCH);
	assert_int_equal(k->msr_batches[2], NR_TEST_MSRS - 2 * VCPU_STATE_MSR_BATCH);
	assert_int_equal(k->nr_msrs_set, NR_TEST_MSRS);
	assert_int_equal(k->msrs_set[NR_TEST_MSRS - 1].index, MSR_IA32_TSC_DEADLINE);
	assert_int_equal(k->msrs_set[NR_TEST_MSRS - 1].data, st->msrs[0].data);
	assert_int_equal(k->msrs_set[0].index, MSR_IA32_TSC);
	for (uint32_t i = 1; i < NR_TEST_MSRS; i++) {
		bool found = false;

		for (uint32_t j = 0; j < NR_TEST_MSRS; j++)
			found |= k->msrs_set[j].index == st->msrs[i].index &&
				 k->msrs_set[j].data == st->msrs[i].data;
		assert_true(found);
	}
	vcpu_state_free(st);
	free(st);
	free(k);
}

/* KVM_SET_MSRS taking fewer than given is an error naming the MSR; nothing after it. */
static void test_apply_msr_count_mismatch(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *st = calloc(1, sizeof(*st));
	struct fake_kvm *k = calloc(1, sizeof(*k));
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = k};
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	test_state(st, 0, &host);
	fake_init(k, st);
	k->msr_short_at = 70; /* the 7th of the second batch */
	assert_int_equal(vcpu_state_apply(-1, 0, st, &host, &ops, err, sizeof(err)), -EIO);
	assert_non_null(
	    strstr(err, "vCPU 0: KVM_SET_MSRS set 6 of 64 MSRs; it refused MSR 0xc0010047"));
	assert_int_equal(k->requests[k->nr_calls - 1], KVM_SET_MSRS);

	/* A failing SET stops there too. */
	fake_init(k, st);
	k->fail_request_nr = _IOC_NR(KVM_SET_SREGS);
	assert_int_equal(vcpu_state_apply(-1, 0, st, &host, &ops, err, sizeof(err)), -EIO);
	assert_string_equal(err, "vCPU 0: KVM_SET_SREGS failed: Input/output error");
	assert_int_equal(k->requests[k->nr_calls - 1], KVM_SET_SREGS);
	vcpu_state_free(st);
	free(st);
	free(k);
}

/* ---- capture and probe ---- */

static void test_capture_reads_everything(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *src = calloc(1, sizeof(*src)), *st = calloc(1, sizeof(*st));
	struct fake_kvm *k = calloc(1, sizeof(*k));
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = k};
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	test_state(src, 2, &host);
	fake_init(k, src);
	assert_int_equal(vcpu_state_capture(-1, 2, &host, &ops, st, err, sizeof(err)), 0);
	assert_states_equal(src, st);
	/* MP state first, events last; MSRs in batches of at most 64 */
	assert_int_equal(k->requests[0], KVM_GET_MP_STATE);
	assert_int_equal(k->requests[k->nr_calls - 1], KVM_GET_VCPU_EVENTS);
	assert_int_equal(k->nr_msr_batches, 3);
	assert_int_equal(count_sets(k), 0);
	vcpu_state_free(st);

	/* KVM_GET_XSAVE2 when the host has it, of its size */
	host.xsave2 = true;
	fake_init(k, src);
	assert_int_equal(vcpu_state_capture(-1, 2, &host, &ops, st, err, sizeof(err)), 0);
	for (unsigned int i = 0; i < k->nr_calls; i++)
		assert_int_not_equal(k->requests[i], KVM_GET_XSAVE);
	vcpu_state_free(st);

	/* Linux 6.1's KVM_GET_CPUID2: the zeroed entries after the real ones are not kept */
	fake_init(k, src);
	k->cpuid_zero_tail = true;
	assert_int_equal(vcpu_state_capture(-1, 2, &host, &ops, st, err, sizeof(err)), 0);
	assert_int_equal(st->nr_cpuid, src->nr_cpuid);
	assert_memory_equal(st->cpuid, src->cpuid, src->nr_cpuid * sizeof(src->cpuid[0]));
	vcpu_state_free(st);

	/* KVM reading fewer MSRs than asked is an error, not a skip */
	fake_init(k, src);
	k->msr_short_at = 66;
	assert_int_equal(vcpu_state_capture(-1, 2, &host, &ops, st, err, sizeof(err)), -EIO);
	assert_non_null(
	    strstr(err, "KVM_GET_MSRS read 2 of 64 MSRs; it stopped at MSR 0xc0010042"));
	assert_null(st->xsave);

	/* A state this host could not restore is refused at save time */
	src->lapic.regs[0x23] = 7;
	fake_init(k, src);
	assert_int_equal(vcpu_state_capture(-1, 2, &host, &ops, st, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "LAPIC's ID is 7"));
	assert_null(st->xsave);

	vcpu_state_free(src);
	free(src);
	free(st);
	free(k);
}

/* vcpu_state_save(): the capture, written; what a load gets back is what KVM had. */
static void test_save_then_load(void **unused)
{
	struct vcpu_state_host host;
	struct vcpu_state *src = calloc(1, sizeof(*src)), *st = calloc(1, sizeof(*st));
	struct fake_kvm *k = calloc(1, sizeof(*k));
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = k};
	struct snap_writer w;
	struct file f;
	char err[ERR_SIZE];
	(void)unused;

	test_host(&host);
	test_state(src, 3, &host);
	fake_init(k, src);
	file_begin(&f, &w);
	assert_int_equal(vcpu_state_save(-1, 3, &host, &ops, &w, err, sizeof(err)), 0);
	file_finish_and_parse(&f, &w);
	assert_int_equal(vcpu_state_load(f.data, &f.idx, 3, &host, st, err, sizeof(err)), 0);
	assert_states_equal(src, st);
	vcpu_state_free(st);
	file_free(&f);

	/* a failed capture writes nothing */
	file_begin(&f, &w);
	fake_init(k, src);
	k->fail_request_nr = _IOC_NR(KVM_GET_LAPIC);
	assert_int_equal(vcpu_state_save(-1, 3, &host, &ops, &w, err, sizeof(err)), -EIO);
	assert_string_equal(err, "vCPU 3: KVM_GET_LAPIC failed: Input/output error");
	file_finish_and_parse(&f, &w);
	assert_int_equal(f.idx.nr_sections, 0);
	file_free(&f);

	vcpu_state_free(src);
	free(src);
	free(st);
	free(k);
}

/* KVM_RUN with immediate_exit finishes a handled exit without running the guest. */
static int run_ioctl(void *ctx, int fd, unsigned long request, void *arg)
{
	struct kvm_run *run = ctx;

	(void)fd;
	(void)arg;
	assert_int_equal(request, KVM_RUN);
	/* the answer is in the exit reason the test put there */
	if (!run->immediate_exit)
		return -EBADE;
	if (run->exit_reason == KVM_EXIT_MMIO)
		return 0;
	if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
		return -EFAULT;
	run->exit_reason = KVM_EXIT_INTR;
	return -EINTR;
}

static void test_complete_io(void **unused)
{
	struct kvm_run run = {.exit_reason = KVM_EXIT_IO};
	struct state_ioctl ops = {.ioctl = run_ioctl, .ctx = &run};
	char err[ERR_SIZE];
	(void)unused;

	assert_int_equal(vcpu_state_complete_io(-1, 1, &run, &ops, err, sizeof(err)), 0);
	assert_int_equal(run.immediate_exit, 0);
	assert_int_equal(run.exit_reason, KVM_EXIT_INTR);

	run.exit_reason = KVM_EXIT_MMIO; /* another exit to handle first */
	assert_int_equal(vcpu_state_complete_io(-1, 1, &run, &ops, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "vCPU 1: completing its last exit made another (reason 6)"));
	assert_int_equal(run.immediate_exit, 0);

	run.exit_reason = KVM_EXIT_FAIL_ENTRY;
	assert_int_equal(vcpu_state_complete_io(-1, 1, &run, &ops, err, sizeof(err)), -EFAULT);
	assert_string_equal(err, "vCPU 1: KVM_RUN with immediate_exit failed: Bad address");
}

static void test_host_probe(void **unused)
{
	struct vcpu_state_host host;
	struct fake_kvm *k = calloc(1, sizeof(*k));
	struct state_ioctl ops = {.ioctl = fake_ioctl, .ctx = k};
	char err[ERR_SIZE];
	(void)unused;

	fake_init(k, NULL);
	assert_int_equal(vcpu_state_host_probe(-1, -1, -1, &ops, &host, err, sizeof(err)), 0);
	assert_int_equal(host.nr_msrs, 3);
	assert_int_equal(host.msr_indices[2], 0x4b564d00);
	assert_int_equal(host.xsave_size, 4096);
	assert_false(host.xsave2);
	assert_int_equal(host.supported_xcr0, 0x100000207ull);
	assert_int_equal(host.tsc_khz, HOST_TSC_KHZ);
	assert_true(host.tsc_control);

	fake_init(k, NULL);
	k->xsave2_size = 11008; /* with AMX */
	assert_int_equal(vcpu_state_host_probe(-1, -1, -1, &ops, &host, err, sizeof(err)), 0);
	assert_int_equal(host.xsave_size, 11008);
	assert_true(host.xsave2);

	fake_init(k, NULL);
	k->msr_list_e2big = true;
	assert_int_equal(vcpu_state_host_probe(-1, -1, -1, &ops, &host, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "KVM saves 5000 MSRs, more than the 1024"));
	free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_through_a_state_file),
	    cmocka_unit_test(test_missing_section),
	    cmocka_unit_test(test_decode_refuses_bad_lists),
	    cmocka_unit_test(test_every_refusal),
	    cmocka_unit_test(test_tsc_tolerance_and_scaling),
	    cmocka_unit_test(test_apply_order_and_msr_batches),
	    cmocka_unit_test(test_apply_msr_count_mismatch),
	    cmocka_unit_test(test_capture_reads_everything),
	    cmocka_unit_test(test_save_then_load),
	    cmocka_unit_test(test_complete_io),
	    cmocka_unit_test(test_host_probe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
