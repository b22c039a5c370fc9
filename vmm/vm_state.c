/* The VM-wide KVM state: capture, encode, decode, validate, apply (vm_state.h). */
#include "vm_state.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define IOAPIC_BASE	 0xfec00000ull /* where the in-kernel IOAPIC answers */
#define PIT_MAX_COUNT	 0x10000u      /* a count of 0 means 65536 */
#define PIT_MAX_MODE	 5u
#define PIT_MODE_UNSET	 0xffu /* KVM's reset value, until the guest programs the channel */
#define PIT_MAX_RW_MODE	 3u    /* LSB, MSB, LSB then MSB */
#define PIT_MAX_RW_STATE 4u    /* the same, and the second byte of a word */
#define PIT_KNOWN_FLAGS	 (KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON)

static uint64_t realtime_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static int vm_call(const struct state_ioctl *ops, int fd, unsigned long request, void *arg,
		   const char *what, char *err, size_t err_size)
{
	int ret = state_ioctl_call(ops, fd, request, arg);

	if (ret == 0)
		return 0;
	if (ret > 0)
		ret = -EIO;
	snap_set_err(err, err_size, "%s failed: %s", what, strerror(-ret));
	return ret;
}

int vm_state_host_probe(int vm_fd, const struct state_ioctl *ops, struct vm_state_host *host,
			char *err, size_t err_size)
{
	int ret = state_ioctl_call(ops, vm_fd, KVM_CHECK_EXTENSION,
				   (void *)(uintptr_t)KVM_CAP_ADJUST_CLOCK);

	memset(host, 0, sizeof(*host));
	if (ret < 0) {
		snap_set_err(err, err_size, "KVM_CHECK_EXTENSION(KVM_CAP_ADJUST_CLOCK) failed: %s",
			     strerror(-ret));
		return ret;
	}
	host->clock_flags = (uint32_t)ret;
	return 0;
}

/* ---- capture ---- */

static int get_chip(int vm_fd, uint32_t chip_id, const char *what, const struct state_ioctl *ops,
		    struct kvm_irqchip *chip, char *err, size_t err_size)
{
	memset(chip, 0, sizeof(*chip));
	chip->chip_id = chip_id;
	return vm_call(ops, vm_fd, KVM_GET_IRQCHIP, chip, what, err, err_size);
}

int vm_state_capture(int vm_fd, const struct snap_mem_layout *layout, const struct state_ioctl *ops,
		     struct vm_state *st, char *err, size_t err_size)
{
	int ret;

	memset(st, 0, sizeof(*st));
	st->layout = *layout;
	ret = get_chip(vm_fd, KVM_IRQCHIP_PIC_MASTER, "KVM_GET_IRQCHIP (PIC master)", ops,
		       &st->pic_master, err, err_size);
	if (!ret)
		ret = get_chip(vm_fd, KVM_IRQCHIP_PIC_SLAVE, "KVM_GET_IRQCHIP (PIC slave)", ops,
			       &st->pic_slave, err, err_size);
	if (!ret)
		ret = get_chip(vm_fd, KVM_IRQCHIP_IOAPIC, "KVM_GET_IRQCHIP (IOAPIC)", ops,
			       &st->ioapic, err, err_size);
	if (!ret)
		ret = vm_call(ops, vm_fd, KVM_GET_PIT2, &st->pit, "KVM_GET_PIT2", err, err_size);
	if (!ret)
		ret =
		    vm_call(ops, vm_fd, KVM_GET_CLOCK, &st->clock, "KVM_GET_CLOCK", err, err_size);
	/* A KVM without KVM_CLOCK_REALTIME (a nested one, a host clock that is not the TSC)
	 * gives no wall-clock time: wisp's own reading, microseconds after KVM's, lets a
	 * restore with clock_realtime advance the clock all the same. */
	if (!ret && !(st->clock.flags & KVM_CLOCK_REALTIME)) {
		st->clock.realtime = realtime_ns();
		st->clock.flags |= KVM_CLOCK_REALTIME;
	}
	if (!ret)
		ret = vm_state_validate(st, err, err_size);
	return ret;
}

/* ---- encoding ---- */

/* The fixed-size sections, { type, field, size }, for the writer and the decoder alike. */
#define VM_FIXED_SECTIONS(st)                                                                      \
	{SNAP_SEC_PIC_MASTER, &(st)->pic_master, sizeof((st)->pic_master)},                        \
	    {SNAP_SEC_PIC_SLAVE, &(st)->pic_slave, sizeof((st)->pic_slave)},                       \
	    {SNAP_SEC_IOAPIC, &(st)->ioapic, sizeof((st)->ioapic)},                                \
	    {SNAP_SEC_PIT, &(st)->pit, sizeof((st)->pit)},                                         \
	    {SNAP_SEC_KVMCLOCK, &(st)->clock, sizeof((st)->clock)},

int vm_state_write(struct snap_writer *w, const struct vm_state *st, char *err, size_t err_size)
{
	const struct {
		uint32_t type;
		const void *data;
		size_t len;
	} fixed[] = {VM_FIXED_SECTIONS(st)};
	int ret = snap_writer_add_mem_layout(w, &st->layout, err, err_size);

	for (size_t i = 0; !ret && i < sizeof(fixed) / sizeof(fixed[0]); i++)
		ret = snap_writer_add(w, fixed[i].type, 0, fixed[i].data, fixed[i].len, err,
				      err_size);
	return ret;
}

/* ---- decoding ---- */

int vm_state_decode(const uint8_t *data, const struct snap_index *idx, struct vm_state *st,
		    char *err, size_t err_size)
{
	const struct {
		uint32_t type;
		void *dst;
		size_t size;
	} fixed[] = {VM_FIXED_SECTIONS(st)};
	const struct snap_section *s;

	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		s = snap_find(idx, fixed[i].type, 0);
		if (!s || s->length != fixed[i].size) {
			snap_set_err(err, err_size,
				     "the state file's %s section is %s (%zu bytes wanted)",
				     snap_section_name(fixed[i].type),
				     s ? "the wrong size" : "missing", fixed[i].size);
			return -EINVAL;
		}
		memcpy(fixed[i].dst, data + s->offset, fixed[i].size);
	}
	s = snap_find(idx, SNAP_SEC_MEMORY_LAYOUT, 0);
	if (!s) {
		snap_set_err(err, err_size, "the state file has no MEMORY_LAYOUT section");
		return -EINVAL;
	}
	return snap_mem_layout_decode(data + s->offset, s->length, &st->layout, err, err_size);
}

/* ---- validation ---- */

static int check_chip(const struct kvm_irqchip *chip, uint32_t chip_id, const char *name, char *err,
		      size_t err_size)
{
	size_t used =
	    chip_id == KVM_IRQCHIP_IOAPIC ? sizeof(chip->chip.ioapic) : sizeof(chip->chip.pic);

	if (chip->chip_id != chip_id || chip->pad ||
	    !snap_all_zero((const uint8_t *)&chip->chip + used, sizeof(chip->chip) - used)) {
		snap_set_err(
		    err, err_size,
		    "%s: chip id %u (must be %u), padding 0x%x or bytes after the state set", name,
		    chip->chip_id, chip_id, chip->pad);
		return -EINVAL;
	}
	if (chip_id == KVM_IRQCHIP_IOAPIC && chip->chip.ioapic.base_address != IOAPIC_BASE) {
		snap_set_err(err, err_size, "IOAPIC at 0x%llx; it is at 0x%llx",
			     (unsigned long long)chip->chip.ioapic.base_address, IOAPIC_BASE);
		return -EINVAL;
	}
	return 0;
}

static int check_pit(const struct kvm_pit_state2 *pit, char *err, size_t err_size)
{
	if ((pit->flags & ~(uint32_t)PIT_KNOWN_FLAGS) ||
	    !snap_all_zero(pit->reserved, sizeof(pit->reserved))) {
		snap_set_err(err, err_size, "PIT flags 0x%x (known: 0x%x) or reserved words set",
			     pit->flags, PIT_KNOWN_FLAGS);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &pit->channels[i];

		if (c->count > PIT_MAX_COUNT ||
		    (c->mode > PIT_MAX_MODE && c->mode != PIT_MODE_UNSET) ||
		    c->rw_mode > PIT_MAX_RW_MODE || c->read_state > PIT_MAX_RW_STATE ||
		    c->write_state > PIT_MAX_RW_STATE || c->bcd > 1 || c->gate > 1) {
			snap_set_err(
			    err, err_size,
			    "PIT channel %u: count %u (at most %u), mode %u (at most %u, or 255), "
			    "access %u/%u/%u, bcd %u, gate %u out of range",
			    i, c->count, PIT_MAX_COUNT, c->mode, PIT_MAX_MODE, c->rw_mode,
			    c->read_state, c->write_state, c->bcd, c->gate);
			return -EINVAL;
		}
	}
	return 0;
}

int vm_state_validate(const struct vm_state *st, char *err, size_t err_size)
{
	int ret;

	ret = check_chip(&st->pic_master, KVM_IRQCHIP_PIC_MASTER, "PIC master", err, err_size);
	if (!ret)
		ret = check_chip(&st->pic_slave, KVM_IRQCHIP_PIC_SLAVE, "PIC slave", err, err_size);
	if (!ret)
		ret = check_chip(&st->ioapic, KVM_IRQCHIP_IOAPIC, "IOAPIC", err, err_size);
	if (!ret)
		ret = check_pit(&st->pit, err, err_size);
	if (ret)
		return ret;
	if ((st->clock.flags & ~(uint32_t)VM_STATE_CLOCK_FLAGS) || st->clock.pad0 ||
	    !snap_all_zero(st->clock.pad, sizeof(st->clock.pad))) {
		snap_set_err(err, err_size, "kvmclock flags 0x%x (known: 0x%x) or padding set",
			     st->clock.flags, VM_STATE_CLOCK_FLAGS);
		return -EINVAL;
	}
	return snap_mem_layout_check(&st->layout, err, err_size);
}

int vm_state_load(const uint8_t *data, const struct snap_index *idx, struct vm_state *st, char *err,
		  size_t err_size)
{
	int ret = vm_state_decode(data, idx, st, err, err_size);

	return ret ? ret : vm_state_validate(st, err, err_size);
}

/* ---- apply ---- */

struct kvm_clock_data vm_state_clock_to_set(const struct kvm_clock_data *saved, bool clock_realtime,
					    const struct vm_state_host *host,
					    uint64_t now_realtime_ns, bool *advanced)
{
	struct kvm_clock_data clock = *saved;
	bool wall_clock_known = saved->flags & KVM_CLOCK_REALTIME;

	*advanced = clock_realtime && wall_clock_known;
	/* Kernels before KVM_CLOCK_REALTIME refuse any flag, so none unless asked for. */
	clock.flags = 0;
	if (!*advanced)
		return clock;
	if (host->clock_flags & KVM_CLOCK_REALTIME) {
		clock.flags = KVM_CLOCK_REALTIME; /* KVM adds the time since, to the TSC */
	} else if (now_realtime_ns > saved->realtime) {
		/* This KVM cannot: the same advance, read here (a few microseconds later). */
		clock.clock += now_realtime_ns - saved->realtime;
	}
	return clock;
}

int vm_state_apply(int vm_fd, const struct vm_state *st, bool clock_realtime,
		   const struct vm_state_host *host, const struct state_ioctl *ops, char *err,
		   size_t err_size)
{
	struct kvm_clock_data clock;
	bool advanced;
	int ret = vm_state_validate(st, err, err_size);

	if (ret)
		return ret;
	clock = vm_state_clock_to_set(&st->clock, clock_realtime, host, realtime_ns(), &advanced);
	if (clock_realtime && !advanced)
		log_warn("clock_realtime: the snapshot's kvmclock has no wall-clock time; the "
			 "guest's clock carries on from the snapshot's time instead");
	ret = vm_call(ops, vm_fd, KVM_SET_PIT2, (void *)&st->pit, "KVM_SET_PIT2", err, err_size);
	if (!ret)
		ret = vm_call(ops, vm_fd, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK", err, err_size);
	if (!ret)
		ret = vm_call(ops, vm_fd, KVM_SET_IRQCHIP, (void *)&st->pic_master,
			      "KVM_SET_IRQCHIP (PIC master)", err, err_size);
	if (!ret)
		ret = vm_call(ops, vm_fd, KVM_SET_IRQCHIP, (void *)&st->pic_slave,
			      "KVM_SET_IRQCHIP (PIC slave)", err, err_size);
	if (!ret)
		ret = vm_call(ops, vm_fd, KVM_SET_IRQCHIP, (void *)&st->ioapic,
			      "KVM_SET_IRQCHIP (IOAPIC)", err, err_size);
	return ret;
}
