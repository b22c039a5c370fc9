/* One vCPU's KVM state: capture, encode, decode, validate, apply (vcpu_state.h). */
#include "vcpu_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"

#define LIST_HDR 8u /* MSRs and CPUID sections: u32 count, u32 0 */

#define MSR_IA32_TSC_DEADLINE 0x6e0u

#define XCR0_X87	   (1ull << 0)
#define XCR0_SSE	   (1ull << 1)
#define XCR0_YMM	   (1ull << 2)
#define XSAVE_MXCSR	   24u	/* legacy area: MXCSR, whose high half is reserved */
#define XSAVE_HDR	   512u /* XSTATE_BV, XCOMP_BV, 48 reserved bytes */
#define XSAVE_HDR_RESERVED 48u

#define CR0_PE	 (1ull << 0)
#define CR0_NW	 (1ull << 29)
#define CR0_CD	 (1ull << 30)
#define CR0_PG	 (1ull << 31)
#define CR4_PAE	 (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

#define LAPIC_ID_REG 0x20u

#define KNOWN_EVENT_FLAGS                                                                          \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                       \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD |      \
	 KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
#define NMI_VECTOR 2u

/* KVM's variable-length arguments, with room for `n` entries (zeroed). */
static struct kvm_msrs *msrs_alloc(uint32_t n)
{
	return calloc(1, sizeof(struct kvm_msrs) + n * sizeof(struct kvm_msr_entry));
}

static struct kvm_cpuid2 *cpuid_alloc(uint32_t n)
{
	return calloc(1, sizeof(struct kvm_cpuid2) + n * sizeof(struct kvm_cpuid_entry2));
}

int state_ioctl_call(const struct state_ioctl *ops, int fd, unsigned long request, void *arg)
{
	int ret;

	if (ops && ops->ioctl)
		return ops->ioctl(ops->ctx, fd, request, arg);
	ret = ioctl(fd, request, arg);
	return ret < 0 ? -errno : ret;
}

/* An ioctl that returns 0 on success; anything else is -errno (a positive return, which
 * none of these has, counts as -EIO). */
static int call(const struct state_ioctl *ops, int fd, unsigned long request, void *arg,
		const char *what, unsigned int vcpu_index, char *err, size_t err_size)
{
	int ret = state_ioctl_call(ops, fd, request, arg);

	if (ret == 0)
		return 0;
	if (ret > 0)
		ret = -EIO;
	snap_set_err(err, err_size, "vCPU %u: %s failed: %s", vcpu_index, what, strerror(-ret));
	return ret;
}

/* ---- the host ---- */

/* KVM_GET_SUPPORTED_CPUID's leaf 0xd, subleaf 0: the XCR0 bits KVM lets a guest enable. */
static int probe_xcr0(int sys_fd, const struct state_ioctl *ops, uint64_t *xcr0, char *err,
		      size_t err_size)
{
	struct kvm_cpuid2 *cpuid;
	uint32_t nent = SNAP_MAX_CPUID_ENTRIES;
	int ret;

	for (;;) {
		cpuid = cpuid_alloc(nent);
		if (!cpuid) {
			snap_set_err(err, err_size, "out of memory for the supported CPUID");
			return -ENOMEM;
		}
		cpuid->nent = nent;
		ret = state_ioctl_call(ops, sys_fd, KVM_GET_SUPPORTED_CPUID, cpuid);
		if (ret != -E2BIG || nent >= 4096)
			break;
		free(cpuid);
		nent *= 2;
	}
	if (ret < 0) {
		snap_set_err(err, err_size, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-ret));
		free(cpuid);
		return ret;
	}
	*xcr0 = XCR0_X87 | XCR0_SSE; /* a host without XSAVE: only the legacy area */
	for (uint32_t i = 0; i < cpuid->nent && i < nent; i++) {
		const struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function == 0xd && e->index == 0)
			*xcr0 = e->eax | (uint64_t)e->edx << 32;
	}
	free(cpuid);
	return 0;
}

int vcpu_state_host_probe(int sys_fd, int vm_fd, int vcpu_fd, const struct state_ioctl *ops,
			  struct vcpu_state_host *host, char *err, size_t err_size)
{
	struct kvm_msr_list *list;
	int ret;

	memset(host, 0, sizeof(*host));
	list = calloc(1, sizeof(*list) + SNAP_MAX_MSRS * sizeof(list->indices[0]));
	if (!list) {
		snap_set_err(err, err_size, "out of memory for the MSR index list");
		return -ENOMEM;
	}
	list->nmsrs = SNAP_MAX_MSRS;
	ret = state_ioctl_call(ops, sys_fd, KVM_GET_MSR_INDEX_LIST, list);
	if (ret == -E2BIG) {
		snap_set_err(
		    err, err_size,
		    "KVM saves %u MSRs, more than the %u a state file holds; this wisp cannot "
		    "snapshot on this host",
		    list->nmsrs, SNAP_MAX_MSRS);
		free(list);
		return -E2BIG;
	}
	if (ret < 0 || list->nmsrs > SNAP_MAX_MSRS) {
		snap_set_err(err, err_size, "KVM_GET_MSR_INDEX_LIST failed: %s",
			     ret < 0 ? strerror(-ret)
				     : "it answered more MSRs than it had room for");
		free(list);
		return ret < 0 ? ret : -EIO;
	}
	host->nr_msrs = list->nmsrs;
	memcpy(host->msr_indices, list->indices, list->nmsrs * sizeof(list->indices[0]));
	free(list);

	ret = state_ioctl_call(ops, vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_XSAVE2);
	if (ret < 0) {
		snap_set_err(err, err_size, "KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) failed: %s",
			     strerror(-ret));
		return ret;
	}
	host->xsave2 = ret > 0;
	host->xsave_size =
	    (uint32_t)ret > sizeof(struct kvm_xsave) ? (uint32_t)ret : sizeof(struct kvm_xsave);
	if (host->xsave_size > SNAP_XSAVE_MAX) {
		snap_set_err(err, err_size,
			     "KVM's XSAVE state is %u bytes, more than the %u a state file holds",
			     host->xsave_size, SNAP_XSAVE_MAX);
		return -E2BIG;
	}

	ret = probe_xcr0(sys_fd, ops, &host->supported_xcr0, err, err_size);
	if (ret)
		return ret;

	ret = state_ioctl_call(ops, sys_fd, KVM_CHECK_EXTENSION,
			       (void *)(uintptr_t)KVM_CAP_TSC_CONTROL);
	host->tsc_control = ret > 0;
	ret = state_ioctl_call(ops, vcpu_fd, KVM_GET_TSC_KHZ, NULL);
	if (ret <= 0) {
		snap_set_err(err, err_size, "KVM_GET_TSC_KHZ failed: %s",
			     ret < 0 ? strerror(-ret) : "it answered 0 kHz");
		return ret < 0 ? ret : -EIO;
	}
	host->tsc_khz = (uint32_t)ret;
	return 0;
}

/* ---- capture ---- */

int vcpu_state_complete_io(int vcpu_fd, unsigned int vcpu_index, struct kvm_run *run,
			   const struct state_ioctl *ops, char *err, size_t err_size)
{
	int ret;

	run->immediate_exit = 1;
	ret = state_ioctl_call(ops, vcpu_fd, KVM_RUN, NULL);
	run->immediate_exit = 0;
	if (ret == -EINTR)
		return 0;
	if (ret == 0) {
		/* Finishing the instruction needed userspace again (an MMIO access split in
		 * two): the VMM handles this exit and calls again. */
		snap_set_err(
		    err, err_size,
		    "vCPU %u: completing its last exit made another (reason %u); handle it and "
		    "complete again",
		    vcpu_index, run->exit_reason);
		return -EAGAIN;
	}
	snap_set_err(err, err_size, "vCPU %u: KVM_RUN with immediate_exit failed: %s", vcpu_index,
		     strerror(-ret));
	return ret;
}

/* Reads `count` MSRs whose indices are already in entries[], in batches. */
static int get_msrs(int vcpu_fd, unsigned int vcpu_index, const struct state_ioctl *ops,
		    struct kvm_msr_entry *entries, uint32_t count, char *err, size_t err_size)
{
	struct kvm_msrs *batch = msrs_alloc(VCPU_STATE_MSR_BATCH);
	int ret = 0;

	if (!batch) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's MSRs", vcpu_index);
		return -ENOMEM;
	}
	for (uint32_t done = 0; done < count;) {
		uint32_t n =
		    count - done < VCPU_STATE_MSR_BATCH ? count - done : VCPU_STATE_MSR_BATCH;

		memset(batch->entries, 0, VCPU_STATE_MSR_BATCH * sizeof(batch->entries[0]));
		batch->nmsrs = n;
		for (uint32_t i = 0; i < n; i++)
			batch->entries[i].index = entries[done + i].index;
		ret = state_ioctl_call(ops, vcpu_fd, KVM_GET_MSRS, batch);
		if (ret < 0) {
			snap_set_err(err, err_size, "vCPU %u: KVM_GET_MSRS failed: %s", vcpu_index,
				     strerror(-ret));
			break;
		}
		if ((uint32_t)ret != n) {
			snap_set_err(
			    err, err_size,
			    "vCPU %u: KVM_GET_MSRS read %d of %u MSRs; it stopped at MSR 0x%x, "
			    "which KVM lists as saveable but would not read",
			    vcpu_index, ret, n, (uint32_t)ret < n ? entries[done + ret].index : 0);
			ret = -EIO;
			break;
		}
		for (uint32_t i = 0; i < n; i++)
			entries[done + i] = batch->entries[i];
		done += n;
		ret = 0;
	}
	free(batch);
	return ret;
}

static int get_cpuid(int vcpu_fd, unsigned int vcpu_index, const struct state_ioctl *ops,
		     struct vcpu_state *st, char *err, size_t err_size)
{
	struct kvm_cpuid2 *cpuid = cpuid_alloc(SNAP_MAX_CPUID_ENTRIES);
	int ret;

	if (!cpuid) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's CPUID", vcpu_index);
		return -ENOMEM;
	}
	cpuid->nent = SNAP_MAX_CPUID_ENTRIES;
	ret =
	    call(ops, vcpu_fd, KVM_GET_CPUID2, cpuid, "KVM_GET_CPUID2", vcpu_index, err, err_size);
	if (!ret && cpuid->nent > SNAP_MAX_CPUID_ENTRIES) {
		snap_set_err(err, err_size,
			     "vCPU %u: KVM_GET_CPUID2 answered %u entries (at most %u)", vcpu_index,
			     cpuid->nent, SNAP_MAX_CPUID_ENTRIES);
		ret = -EIO;
	}
	/* Some kernels (6.1) answer with the nent they were given, the entries after the real
	 * ones zeroed; an all-zero entry is never a real leaf (leaf 0's EAX, the highest basic
	 * leaf, is at least 1), so those are dropped. */
	for (uint32_t i = 0; !ret && i < cpuid->nent; i++)
		if (!snap_all_zero(&cpuid->entries[i], sizeof(cpuid->entries[i])))
			st->cpuid[st->nr_cpuid++] = cpuid->entries[i];
	free(cpuid);
	return ret;
}

int vcpu_state_capture(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state_host *host,
		       const struct state_ioctl *ops, struct vcpu_state *st, char *err,
		       size_t err_size)
{
	int ret;

	memset(st, 0, sizeof(*st));
	st->xsave_size = host->xsave_size;
	st->xsave = calloc(1, st->xsave_size);
	if (!st->xsave) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's XSAVE state", vcpu_index);
		return -ENOMEM;
	}
	/*
	 * The order follows KVM's side effects: KVM_GET_MP_STATE first, since it accepts pending
	 * LAPIC events (INIT, SIPI) and so may change what the later GETs see; the vCPU events
	 * last, since the other GETs may still move an exception or interrupt between KVM's
	 * internal queues.
	 */
	ret = call(ops, vcpu_fd, KVM_GET_MP_STATE, &st->mp_state, "KVM_GET_MP_STATE", vcpu_index,
		   err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_GET_REGS, &st->regs, "KVM_GET_REGS", vcpu_index, err,
			   err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_GET_SREGS, &st->sregs, "KVM_GET_SREGS", vcpu_index,
			   err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, host->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, st->xsave,
			   host->xsave2 ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE", vcpu_index, err,
			   err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_GET_XCRS, &st->xcrs, "KVM_GET_XCRS", vcpu_index, err,
			   err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_GET_DEBUGREGS, &st->debugregs, "KVM_GET_DEBUGREGS",
			   vcpu_index, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_GET_LAPIC, &st->lapic, "KVM_GET_LAPIC", vcpu_index,
			   err, err_size);
	if (!ret) {
		int khz = state_ioctl_call(ops, vcpu_fd, KVM_GET_TSC_KHZ, NULL);

		if (khz <= 0) {
			snap_set_err(err, err_size, "vCPU %u: KVM_GET_TSC_KHZ failed: %s",
				     vcpu_index, khz < 0 ? strerror(-khz) : "it answered 0 kHz");
			ret = khz < 0 ? khz : -EIO;
		}
		st->tsc_khz = khz > 0 ? (uint64_t)khz : 0;
	}
	if (!ret)
		ret = get_cpuid(vcpu_fd, vcpu_index, ops, st, err, err_size);
	if (!ret) {
		st->nr_msrs = host->nr_msrs;
		for (uint32_t i = 0; i < st->nr_msrs; i++)
			st->msrs[i].index = host->msr_indices[i];
		ret = get_msrs(vcpu_fd, vcpu_index, ops, st->msrs, st->nr_msrs, err, err_size);
	}
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_GET_VCPU_EVENTS, &st->events, "KVM_GET_VCPU_EVENTS",
			   vcpu_index, err, err_size);
	if (!ret)
		ret = vcpu_state_validate(st, vcpu_index, host, err, err_size);
	if (ret)
		vcpu_state_free(st);
	return ret;
}

/* ---- encoding ---- */

static int add_list(struct snap_writer *w, uint32_t type, unsigned int vcpu_index, uint32_t count,
		    const void *entries, size_t entry_size, char *err, size_t err_size)
{
	size_t len = LIST_HDR + count * entry_size;
	uint8_t *buf = calloc(1, len);
	int ret;

	if (!buf) {
		snap_set_err(err, err_size, "out of memory");
		return -ENOMEM;
	}
	memcpy(buf, &count, sizeof(count));
	memcpy(buf + LIST_HDR, entries, count * entry_size);
	ret = snap_writer_add(w, type, vcpu_index, buf, len, err, err_size);
	free(buf);
	return ret;
}

int vcpu_state_write(struct snap_writer *w, unsigned int vcpu_index, const struct vcpu_state *st,
		     char *err, size_t err_size)
{
	const struct {
		uint32_t type;
		const void *data;
		size_t len;
	} fixed[] = {
	    {SNAP_SEC_VCPU_REGS, &st->regs, sizeof(st->regs)},
	    {SNAP_SEC_VCPU_SREGS, &st->sregs, sizeof(st->sregs)},
	    {SNAP_SEC_VCPU_XSAVE, st->xsave, st->xsave_size},
	    {SNAP_SEC_VCPU_XCRS, &st->xcrs, sizeof(st->xcrs)},
	    {SNAP_SEC_VCPU_LAPIC, &st->lapic, sizeof(st->lapic)},
	    {SNAP_SEC_VCPU_EVENTS, &st->events, sizeof(st->events)},
	    {SNAP_SEC_VCPU_MP_STATE, &st->mp_state, sizeof(st->mp_state)},
	    {SNAP_SEC_VCPU_DEBUGREGS, &st->debugregs, sizeof(st->debugregs)},
	    {SNAP_SEC_VCPU_TSC_KHZ, &st->tsc_khz, sizeof(st->tsc_khz)},
	};
	int ret;

	if (!st->xsave || st->nr_msrs > SNAP_MAX_MSRS || st->nr_cpuid > SNAP_MAX_CPUID_ENTRIES) {
		snap_set_err(err, err_size,
			     "vCPU %u: no XSAVE state, or %u MSRs / %u CPUID entries", vcpu_index,
			     st->nr_msrs, st->nr_cpuid);
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		ret = snap_writer_add(w, fixed[i].type, vcpu_index, fixed[i].data, fixed[i].len,
				      err, err_size);
		if (ret)
			return ret;
	}
	ret = add_list(w, SNAP_SEC_VCPU_MSRS, vcpu_index, st->nr_msrs, st->msrs,
		       sizeof(st->msrs[0]), err, err_size);
	if (ret)
		return ret;
	return add_list(w, SNAP_SEC_VCPU_CPUID, vcpu_index, st->nr_cpuid, st->cpuid,
			sizeof(st->cpuid[0]), err, err_size);
}

int vcpu_state_save(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state_host *host,
		    const struct state_ioctl *ops, struct snap_writer *w, char *err,
		    size_t err_size)
{
	struct vcpu_state *st = malloc(sizeof(*st));
	int ret;

	if (!st) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's state", vcpu_index);
		return -ENOMEM;
	}
	ret = vcpu_state_capture(vcpu_fd, vcpu_index, host, ops, st, err, err_size);
	if (!ret) {
		ret = vcpu_state_write(w, vcpu_index, st, err, err_size);
		vcpu_state_free(st);
	}
	free(st);
	return ret;
}

/* ---- decoding ---- */

/* The payload of (type, vcpu_index), which must be there; *len its length. */
static const uint8_t *section(const uint8_t *data, const struct snap_index *idx, uint32_t type,
			      unsigned int vcpu_index, uint64_t *len, char *err, size_t err_size)
{
	const struct snap_section *s = snap_find(idx, type, vcpu_index);

	if (!s) {
		snap_set_err(err, err_size, "the state file has no %s section for vCPU %u",
			     snap_section_name(type), vcpu_index);
		return NULL;
	}
	*len = s->length;
	return data + s->offset;
}

static int copy_fixed(const uint8_t *data, const struct snap_index *idx, uint32_t type,
		      unsigned int vcpu_index, void *dst, size_t size, char *err, size_t err_size)
{
	uint64_t len;
	const uint8_t *p = section(data, idx, type, vcpu_index, &len, err, err_size);

	if (!p)
		return -EINVAL;
	if (len != size) {
		snap_set_err(err, err_size, "vCPU %u: %s section is %llu bytes, not %zu",
			     vcpu_index, snap_section_name(type), (unsigned long long)len, size);
		return -EINVAL;
	}
	memcpy(dst, p, size);
	return 0;
}

static int copy_list(const uint8_t *data, const struct snap_index *idx, uint32_t type,
		     unsigned int vcpu_index, uint32_t max, void *dst, size_t entry_size,
		     uint32_t *count, char *err, size_t err_size)
{
	uint64_t len;
	const uint8_t *p = section(data, idx, type, vcpu_index, &len, err, err_size);
	uint32_t n, reserved;

	if (!p)
		return -EINVAL;
	if (len < LIST_HDR) {
		snap_set_err(err, err_size,
			     "vCPU %u: %s section is %llu bytes, shorter than its header",
			     vcpu_index, snap_section_name(type), (unsigned long long)len);
		return -EINVAL;
	}
	memcpy(&n, p, sizeof(n));
	memcpy(&reserved, p + 4, sizeof(reserved));
	if (n > max || reserved || len != LIST_HDR + (uint64_t)n * entry_size) {
		snap_set_err(
		    err, err_size,
		    "vCPU %u: %s section holds %u entries in %llu bytes (at most %u entries "
		    "of %zu bytes after an 8-byte header)",
		    vcpu_index, snap_section_name(type), n, (unsigned long long)len, max,
		    entry_size);
		return -EINVAL;
	}
	memcpy(dst, p + LIST_HDR, n * entry_size);
	*count = n;
	return 0;
}

int vcpu_state_decode(const uint8_t *data, const struct snap_index *idx, unsigned int vcpu_index,
		      struct vcpu_state *st, char *err, size_t err_size)
{
	const struct {
		uint32_t type;
		void *dst;
		size_t size;
	} fixed[] = {
	    {SNAP_SEC_VCPU_REGS, &st->regs, sizeof(st->regs)},
	    {SNAP_SEC_VCPU_SREGS, &st->sregs, sizeof(st->sregs)},
	    {SNAP_SEC_VCPU_XCRS, &st->xcrs, sizeof(st->xcrs)},
	    {SNAP_SEC_VCPU_LAPIC, &st->lapic, sizeof(st->lapic)},
	    {SNAP_SEC_VCPU_EVENTS, &st->events, sizeof(st->events)},
	    {SNAP_SEC_VCPU_MP_STATE, &st->mp_state, sizeof(st->mp_state)},
	    {SNAP_SEC_VCPU_DEBUGREGS, &st->debugregs, sizeof(st->debugregs)},
	    {SNAP_SEC_VCPU_TSC_KHZ, &st->tsc_khz, sizeof(st->tsc_khz)},
	};
	const uint8_t *p;
	uint64_t len;
	int ret;

	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		ret = copy_fixed(data, idx, fixed[i].type, vcpu_index, fixed[i].dst, fixed[i].size,
				 err, err_size);
		if (ret)
			return ret;
	}
	ret = copy_list(data, idx, SNAP_SEC_VCPU_MSRS, vcpu_index, SNAP_MAX_MSRS, st->msrs,
			sizeof(st->msrs[0]), &st->nr_msrs, err, err_size);
	if (!ret)
		ret = copy_list(data, idx, SNAP_SEC_VCPU_CPUID, vcpu_index, SNAP_MAX_CPUID_ENTRIES,
				st->cpuid, sizeof(st->cpuid[0]), &st->nr_cpuid, err, err_size);
	if (ret)
		return ret;
	p = section(data, idx, SNAP_SEC_VCPU_XSAVE, vcpu_index, &len, err, err_size);
	if (!p)
		return -EINVAL;
	if (len < SNAP_XSAVE_MIN || len > SNAP_XSAVE_MAX || len % 4) {
		snap_set_err(err, err_size,
			     "vCPU %u: XSAVE section is %llu bytes (a multiple of 4 from "
			     "%u to %u)",
			     vcpu_index, (unsigned long long)len, SNAP_XSAVE_MIN, SNAP_XSAVE_MAX);
		return -EINVAL;
	}
	st->xsave = malloc(len);
	if (!st->xsave) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's XSAVE state", vcpu_index);
		return -ENOMEM;
	}
	memcpy(st->xsave, p, len);
	st->xsave_size = (uint32_t)len;
	return 0;
}

/* ---- validation ---- */

static int check_xsave(const struct vcpu_state *st, unsigned int vcpu_index,
		       const struct vcpu_state_host *host, char *err, size_t err_size)
{
	uint64_t xstate_bv, xcomp_bv;
	uint32_t mxcsr;

	if (!st->xsave || st->xsave_size != host->xsave_size) {
		snap_set_err(
		    err, err_size,
		    "vCPU %u: the XSAVE state is %u bytes; this host's KVM uses %u (another "
		    "CPU or kernel wrote the snapshot)",
		    vcpu_index, st->xsave_size, host->xsave_size);
		return -ENOTSUP;
	}
	memcpy(&mxcsr, st->xsave + XSAVE_MXCSR, sizeof(mxcsr));
	memcpy(&xstate_bv, st->xsave + XSAVE_HDR, sizeof(xstate_bv));
	memcpy(&xcomp_bv, st->xsave + XSAVE_HDR + 8, sizeof(xcomp_bv));
	if (mxcsr >> 16) {
		snap_set_err(err, err_size, "vCPU %u: XSAVE MXCSR 0x%x sets reserved bits 16-31",
			     vcpu_index, mxcsr);
		return -EINVAL;
	}
	if (xstate_bv & ~host->supported_xcr0) {
		snap_set_err(err, err_size,
			     "vCPU %u: XSAVE state holds features 0x%llx; this host's KVM allows "
			     "0x%llx",
			     vcpu_index, (unsigned long long)xstate_bv,
			     (unsigned long long)host->supported_xcr0);
		return -ENOTSUP;
	}
	if (xcomp_bv || !snap_all_zero(st->xsave + XSAVE_HDR + 16, XSAVE_HDR_RESERVED)) {
		snap_set_err(
		    err, err_size,
		    "vCPU %u: XSAVE header is not the standard format (XCOMP_BV 0x%llx, or "
		    "reserved bytes set)",
		    vcpu_index, (unsigned long long)xcomp_bv);
		return -EINVAL;
	}
	return 0;
}

static int check_xcrs(const struct kvm_xcrs *xcrs, unsigned int vcpu_index,
		      const struct vcpu_state_host *host, char *err, size_t err_size)
{
	if (xcrs->nr_xcrs > KVM_MAX_XCRS || xcrs->flags ||
	    !snap_all_zero(xcrs->padding, sizeof(xcrs->padding))) {
		snap_set_err(err, err_size, "vCPU %u: %u XCRs (at most %u), flags 0x%x (must be 0)",
			     vcpu_index, xcrs->nr_xcrs, KVM_MAX_XCRS, xcrs->flags);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < xcrs->nr_xcrs; i++) {
		const struct kvm_xcr *x = &xcrs->xcrs[i];

		if (x->xcr != 0 || x->reserved) {
			snap_set_err(err, err_size, "vCPU %u: XCR%u (only XCR0 exists)", vcpu_index,
				     x->xcr);
			return -EINVAL;
		}
		if (!(x->value & XCR0_X87) || ((x->value & XCR0_YMM) && !(x->value & XCR0_SSE))) {
			snap_set_err(err, err_size,
				     "vCPU %u: XCR0 0x%llx (x87 must be on, AVX needs SSE)",
				     vcpu_index, (unsigned long long)x->value);
			return -EINVAL;
		}
		if (x->value & ~host->supported_xcr0) {
			snap_set_err(
			    err, err_size,
			    "vCPU %u: XCR0 0x%llx enables features this host's KVM does not "
			    "allow (0x%llx)",
			    vcpu_index, (unsigned long long)x->value,
			    (unsigned long long)host->supported_xcr0);
			return -ENOTSUP;
		}
	}
	return 0;
}

static bool host_saves_msr(const struct vcpu_state_host *host, uint32_t index)
{
	for (uint32_t i = 0; i < host->nr_msrs; i++)
		if (host->msr_indices[i] == index)
			return true;
	return false;
}

static int check_msrs(const struct vcpu_state *st, unsigned int vcpu_index,
		      const struct vcpu_state_host *host, char *err, size_t err_size)
{
	if (st->nr_msrs > SNAP_MAX_MSRS) {
		snap_set_err(err, err_size, "vCPU %u: %u MSRs (at most %u)", vcpu_index,
			     st->nr_msrs, SNAP_MAX_MSRS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		const struct kvm_msr_entry *m = &st->msrs[i];

		if (m->reserved) {
			snap_set_err(err, err_size, "vCPU %u: MSR 0x%x has reserved field 0x%x",
				     vcpu_index, m->index, m->reserved);
			return -EINVAL;
		}
		if (!host_saves_msr(host, m->index)) {
			snap_set_err(
			    err, err_size,
			    "vCPU %u: MSR 0x%x is not one this host's KVM saves and restores "
			    "(KVM_GET_MSR_INDEX_LIST)",
			    vcpu_index, m->index);
			return -ENOTSUP;
		}
		for (uint32_t j = 0; j < i; j++) {
			if (st->msrs[j].index == m->index) {
				snap_set_err(err, err_size, "vCPU %u: MSR 0x%x is saved twice",
					     vcpu_index, m->index);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static int check_cpuid(const struct vcpu_state *st, unsigned int vcpu_index, char *err,
		       size_t err_size)
{
	if (st->nr_cpuid == 0 || st->nr_cpuid > SNAP_MAX_CPUID_ENTRIES) {
		snap_set_err(err, err_size, "vCPU %u: %u CPUID entries (1 to %u)", vcpu_index,
			     st->nr_cpuid, SNAP_MAX_CPUID_ENTRIES);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < st->nr_cpuid; i++) {
		const struct kvm_cpuid_entry2 *e = &st->cpuid[i];

		if ((e->flags & ~(uint32_t)KVM_CPUID_FLAG_SIGNIFCANT_INDEX) ||
		    !snap_all_zero(e->padding, sizeof(e->padding))) {
			snap_set_err(err, err_size,
				     "vCPU %u: CPUID entry 0x%x.%u has flags 0x%x or padding set",
				     vcpu_index, e->function, e->index, e->flags);
			return -EINVAL;
		}
		for (uint32_t j = 0; j < i; j++) {
			if (st->cpuid[j].function == e->function &&
			    st->cpuid[j].index == e->index) {
				snap_set_err(err, err_size,
					     "vCPU %u: CPUID entry 0x%x.%u appears twice",
					     vcpu_index, e->function, e->index);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Whether `khz` is more than the tolerance away from the host's `host_khz`. */
static bool tsc_needs_scaling(uint64_t khz, uint32_t host_khz)
{
	uint64_t diff = khz > host_khz ? khz - host_khz : host_khz - khz;

	return diff * 1000000u > khz * VCPU_STATE_TSC_TOLERANCE_PPM;
}

static int check_tsc(uint64_t khz, unsigned int vcpu_index, const struct vcpu_state_host *host,
		     char *err, size_t err_size)
{
	if (khz < VCPU_STATE_TSC_KHZ_MIN || khz > VCPU_STATE_TSC_KHZ_MAX) {
		snap_set_err(err, err_size, "vCPU %u: TSC frequency %llu kHz (%u to %u)",
			     vcpu_index, (unsigned long long)khz, VCPU_STATE_TSC_KHZ_MIN,
			     VCPU_STATE_TSC_KHZ_MAX);
		return -EINVAL;
	}
	if (tsc_needs_scaling(khz, host->tsc_khz) && !host->tsc_control) {
		snap_set_err(
		    err, err_size,
		    "vCPU %u: the snapshot's TSC runs at %llu kHz, this host's at %u kHz, and "
		    "this KVM cannot scale it (no KVM_CAP_TSC_CONTROL); restore on a host with "
		    "the same TSC frequency",
		    vcpu_index, (unsigned long long)khz, host->tsc_khz);
		return -ENOTSUP;
	}
	return 0;
}

static int check_sregs(const struct kvm_sregs *s, unsigned int vcpu_index, char *err,
		       size_t err_size)
{
	unsigned int pending = 0;
	bool long_mode = (s->efer & EFER_LME) && (s->cr0 & CR0_PG);

	for (size_t i = 0; i < sizeof(s->interrupt_bitmap) / sizeof(s->interrupt_bitmap[0]); i++)
		pending += (unsigned int)__builtin_popcountll(s->interrupt_bitmap[i]);
	if (pending > 1) {
		snap_set_err(err, err_size, "vCPU %u: %u pending interrupts in SREGS (at most 1)",
			     vcpu_index, pending);
		return -EINVAL;
	}
	if ((s->cr0 >> 32) || ((s->cr0 & CR0_PG) && !(s->cr0 & CR0_PE)) ||
	    ((s->cr0 & CR0_NW) && !(s->cr0 & CR0_CD))) {
		snap_set_err(err, err_size,
			     "vCPU %u: CR0 0x%llx (paging needs protection, NW needs CD)",
			     vcpu_index, (unsigned long long)s->cr0);
		return -EINVAL;
	}
	if (long_mode ? (!(s->cr4 & CR4_PAE) || !(s->efer & EFER_LMA))
		      : ((s->efer & EFER_LMA) || s->cs.l)) {
		snap_set_err(
		    err, err_size,
		    "vCPU %u: EFER 0x%llx, CR0 0x%llx, CR4 0x%llx, CS.L %u do not make a valid "
		    "mode",
		    vcpu_index, (unsigned long long)s->efer, (unsigned long long)s->cr0,
		    (unsigned long long)s->cr4, s->cs.l);
		return -EINVAL;
	}
	return 0;
}

static int check_events(const struct kvm_vcpu_events *e, unsigned int vcpu_index, char *err,
			size_t err_size)
{
	if ((e->flags & ~(uint32_t)KNOWN_EVENT_FLAGS) ||
	    !snap_all_zero(e->reserved, sizeof(e->reserved))) {
		snap_set_err(err, err_size,
			     "vCPU %u: vCPU events flags 0x%x (known: 0x%x) or reserved "
			     "bytes set",
			     vcpu_index, e->flags, KNOWN_EVENT_FLAGS);
		return -EINVAL;
	}
	if ((e->exception.injected || e->exception.pending) &&
	    (e->exception.nr > 31 || e->exception.nr == NMI_VECTOR)) {
		snap_set_err(err, err_size, "vCPU %u: pending exception vector %u (0-31, not NMI)",
			     vcpu_index, e->exception.nr);
		return -EINVAL;
	}
	return 0;
}

static int check_debugregs(const struct kvm_debugregs *d, unsigned int vcpu_index, char *err,
			   size_t err_size)
{
	if (d->flags || (d->dr6 >> 32) || (d->dr7 >> 32) ||
	    !snap_all_zero(d->reserved, sizeof(d->reserved))) {
		snap_set_err(err, err_size,
			     "vCPU %u: debug registers DR6 0x%llx, DR7 0x%llx, flags 0x%llx (high "
			     "halves, flags and reserved must be 0)",
			     vcpu_index, (unsigned long long)d->dr6, (unsigned long long)d->dr7,
			     (unsigned long long)d->flags);
		return -EINVAL;
	}
	return 0;
}

int vcpu_state_validate(const struct vcpu_state *st, unsigned int vcpu_index,
			const struct vcpu_state_host *host, char *err, size_t err_size)
{
	uint32_t apic_id;
	int ret;

	ret = check_xsave(st, vcpu_index, host, err, err_size);
	if (!ret)
		ret = check_xcrs(&st->xcrs, vcpu_index, host, err, err_size);
	if (!ret)
		ret = check_msrs(st, vcpu_index, host, err, err_size);
	if (!ret)
		ret = check_cpuid(st, vcpu_index, err, err_size);
	if (!ret)
		ret = check_tsc(st->tsc_khz, vcpu_index, host, err, err_size);
	if (!ret)
		ret = check_sregs(&st->sregs, vcpu_index, err, err_size);
	if (!ret)
		ret = check_events(&st->events, vcpu_index, err, err_size);
	if (!ret)
		ret = check_debugregs(&st->debugregs, vcpu_index, err, err_size);
	if (ret)
		return ret;
	if (st->mp_state.mp_state > KVM_MP_STATE_SIPI_RECEIVED) {
		snap_set_err(err, err_size, "vCPU %u: MP state %u (0 to %u on x86)", vcpu_index,
			     st->mp_state.mp_state, KVM_MP_STATE_SIPI_RECEIVED);
		return -EINVAL;
	}
	/* KVM reads the LAPIC ID in the xAPIC layout (bits 24-31) in both APIC modes. */
	memcpy(&apic_id, &st->lapic.regs[LAPIC_ID_REG], sizeof(apic_id));
	if (apic_id >> 24 != vcpu_index) {
		snap_set_err(err, err_size,
			     "vCPU %u: the LAPIC's ID is %u; a vCPU's LAPIC ID is its index",
			     vcpu_index, apic_id >> 24);
		return -EINVAL;
	}
	return 0;
}

int vcpu_state_load(const uint8_t *data, const struct snap_index *idx, unsigned int vcpu_index,
		    const struct vcpu_state_host *host, struct vcpu_state *st, char *err,
		    size_t err_size)
{
	int ret = vcpu_state_decode(data, idx, vcpu_index, st, err, err_size);

	if (!ret)
		ret = vcpu_state_validate(st, vcpu_index, host, err, err_size);
	if (ret)
		vcpu_state_free(st);
	return ret;
}

/* ---- apply ---- */

static int set_cpuid(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state *st,
		     const struct state_ioctl *ops, char *err, size_t err_size)
{
	struct kvm_cpuid2 *cpuid = cpuid_alloc(SNAP_MAX_CPUID_ENTRIES);
	int ret;

	if (!cpuid) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's CPUID", vcpu_index);
		return -ENOMEM;
	}
	cpuid->nent = st->nr_cpuid;
	memcpy(cpuid->entries, st->cpuid, st->nr_cpuid * sizeof(st->cpuid[0]));
	ret =
	    call(ops, vcpu_fd, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2", vcpu_index, err, err_size);
	free(cpuid);
	return ret;
}

/* In batches, IA32_TSC_DEADLINE after every other (KVM takes a deadline relative to the
 * TSC, so IA32_TSC must be in place first); each batch must be taken whole. */
static int set_msrs(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state *st,
		    const struct state_ioctl *ops, char *err, size_t err_size)
{
	struct kvm_msrs *batch = msrs_alloc(VCPU_STATE_MSR_BATCH);
	struct kvm_msr_entry *order = malloc(st->nr_msrs * sizeof(*order) + 1);
	uint32_t n = 0;
	int ret = 0;

	if (!order || !batch) {
		snap_set_err(err, err_size, "out of memory for vCPU %u's MSRs", vcpu_index);
		free(order);
		free(batch);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < st->nr_msrs; i++)
		if (st->msrs[i].index != MSR_IA32_TSC_DEADLINE)
			order[n++] = st->msrs[i];
	for (uint32_t i = 0; i < st->nr_msrs; i++)
		if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE)
			order[n++] = st->msrs[i];

	for (uint32_t done = 0; done < n;) {
		uint32_t count = n - done < VCPU_STATE_MSR_BATCH ? n - done : VCPU_STATE_MSR_BATCH;

		batch->nmsrs = count;
		memcpy(batch->entries, order + done, count * sizeof(order[0]));
		ret = state_ioctl_call(ops, vcpu_fd, KVM_SET_MSRS, batch);
		if (ret < 0) {
			snap_set_err(err, err_size, "vCPU %u: KVM_SET_MSRS failed: %s", vcpu_index,
				     strerror(-ret));
			break;
		}
		if ((uint32_t)ret != count) {
			const struct kvm_msr_entry *refused =
			    (uint32_t)ret < count ? &order[done + ret] : &order[done];

			snap_set_err(
			    err, err_size,
			    "vCPU %u: KVM_SET_MSRS set %d of %u MSRs; it refused MSR 0x%x = "
			    "0x%llx",
			    vcpu_index, ret, count, refused->index,
			    (unsigned long long)refused->data);
			ret = -EIO;
			break;
		}
		done += count;
		ret = 0;
	}
	free(order);
	free(batch);
	return ret;
}

int vcpu_state_apply(int vcpu_fd, unsigned int vcpu_index, const struct vcpu_state *st,
		     const struct vcpu_state_host *host, const struct state_ioctl *ops, char *err,
		     size_t err_size)
{
	int ret = vcpu_state_validate(st, vcpu_index, host, err, err_size);

	if (ret)
		return ret;
	/*
	 * The order KVM needs: CPUID first, since it decides which MSRs, XSAVE features and
	 * LAPIC modes the vCPU has; the TSC frequency before IA32_TSC is written; the MP state
	 * early, before the registers it could reset; SREGS before the LAPIC (SREGS carries
	 * the APIC base); the LAPIC before the MSRs (the TSC deadline MSR only takes with the
	 * LAPIC in TSC-deadline mode); the vCPU events last, since KVM_SET_REGS and
	 * KVM_SET_SREGS clear a pending exception that the events put back.
	 */
	ret = set_cpuid(vcpu_fd, vcpu_index, st, ops, err, err_size);
	if (ret)
		return ret;
	if (tsc_needs_scaling(st->tsc_khz, host->tsc_khz)) {
		ret =
		    state_ioctl_call(ops, vcpu_fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)st->tsc_khz);
		if (ret) {
			snap_set_err(err, err_size,
				     "vCPU %u: KVM_SET_TSC_KHZ %llu (host: %u kHz) failed: %s",
				     vcpu_index, (unsigned long long)st->tsc_khz, host->tsc_khz,
				     strerror(ret < 0 ? -ret : EIO));
			return ret < 0 ? ret : -EIO;
		}
	}
	ret = call(ops, vcpu_fd, KVM_SET_MP_STATE, (void *)&st->mp_state, "KVM_SET_MP_STATE",
		   vcpu_index, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_REGS, (void *)&st->regs, "KVM_SET_REGS",
			   vcpu_index, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_SREGS, (void *)&st->sregs, "KVM_SET_SREGS",
			   vcpu_index, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_XSAVE, st->xsave, "KVM_SET_XSAVE", vcpu_index, err,
			   err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_XCRS, (void *)&st->xcrs, "KVM_SET_XCRS",
			   vcpu_index, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_DEBUGREGS, (void *)&st->debugregs,
			   "KVM_SET_DEBUGREGS", vcpu_index, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_LAPIC, (void *)&st->lapic, "KVM_SET_LAPIC",
			   vcpu_index, err, err_size);
	if (!ret)
		ret = set_msrs(vcpu_fd, vcpu_index, st, ops, err, err_size);
	if (!ret)
		ret = call(ops, vcpu_fd, KVM_SET_VCPU_EVENTS, (void *)&st->events,
			   "KVM_SET_VCPU_EVENTS", vcpu_index, err, err_size);
	if (ret)
		return ret;
	/* Tells a kvmclock guest that it was paused, so that its soft-lockup watchdog does not
	 * count the time in the snapshot; EINVAL when the guest has no kvmclock. */
	ret = state_ioctl_call(ops, vcpu_fd, KVM_KVMCLOCK_CTRL, NULL);
	if (ret < 0)
		log_debug("vCPU %u: KVM_KVMCLOCK_CTRL: %s (the guest's watchdog may see the pause)",
			  vcpu_index, strerror(-ret));
	return 0;
}

void vcpu_state_free(struct vcpu_state *st)
{
	free(st->xsave);
	st->xsave = NULL;
	st->xsave_size = 0;
}
