/*
 * hostile: a freestanding PVH guest that attacks wisp's virtio-blk device with the
 * kind of virtqueue contents a compromised guest kernel could write: descriptor
 * loops, buffers outside RAM, indexes outside the table, an avail index running ahead.
 * A robust device answers each by setting DEVICE_NEEDS_RESET (not by crashing, hanging
 * or touching memory it should not), and works again after the driver resets it.
 *
 * It runs in the 32-bit protected mode the PVH entry leaves it in (paging off, so
 * physical = virtual), polls instead of taking interrupts, and prints one line per step
 * on the 8250 console, all starting with "hostile: ":
 *   start virtio-mmio=0x<base>               (or: no virtio device at 0x<base>)
 *   init ok capacity=0x<sectors> indirect=<0|1>   (or: init failed reason=<step>)
 *   read status=<n>                          (or: read timeout)
 *   read data=<sector 0's first 8 bytes, '.' for unprintable ones>
 *   attack-<name> needs_reset=<0|1>    (or: ... skipped / ... init failed reason=<step>)
 *   after-<name> read_ok=<0|1>
 *   done                                     (only if the sequence ran to its end)
 * and then resets the VM through the i8042 (wisp exits 0). The attacks, in order: loop,
 * addr-outside-ram, addr-mmio, next-oob, head-oob, indirect-long (skipped unless the
 * device offers VIRTIO_F_INDIRECT_DESC), avail-jump. read_ok=1 means the read after the
 * reset completed with status 0 and the same 512 bytes as the first read.
 *
 * With "hostile.hammer" on the command line it attacks nothing and hammers two device
 * registers instead, for the snapshot test that pauses, snapshots and restores it in the
 * middle of that (a port-I/O or MMIO access lost on the way shows): see hammer().
 */
#include <stddef.h>
#include <stdint.h>

/* ---- CPU, port I/O, the console, the end of the VM ------------------------------ */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline void pause(void)
{
	__asm__ volatile("pause" ::: "memory");
}

/* Orders our ring writes before the device can see what follows (a notification,
 * the next index); also a compiler barrier, since the rings are not volatile. */
static inline void barrier(void)
{
	__asm__ volatile("lock; addl $0, (%%esp)" ::: "memory", "cc");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* gcc may emit calls to these even in freestanding code (struct copies). */
void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;
	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

#define COM1	 0x3f8
#define COM1_LSR (COM1 + 5)
#define COM1_SCR (COM1 + 7)
#define LSR_THRE 0x20

static void put_char(char c)
{
	/* Bounded: a missing or stuck UART must not hang the test. */
	for (int i = 0; i < 100000 && !(inb(COM1_LSR) & LSR_THRE); i++)
		pause();
	outb(COM1, (uint8_t)c);
}

static void put_str(const char *s)
{
	while (*s)
		put_char(*s++);
}

/* 64-bit values in hex: no 64-bit division in 32-bit code (no libgcc here). */
static void put_hex(uint64_t v)
{
	int shift = 60;

	put_str("0x");
	while (shift > 0 && !(v >> shift))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		put_char("0123456789abcdef"[(v >> shift) & 15]);
}

static void put_dec(uint32_t v)
{
	char buf[11];
	int i = sizeof(buf);

	buf[--i] = 0;
	do
		buf[--i] = (char)('0' + v % 10);
	while (v /= 10);
	put_str(buf + i);
}

static void say(const char *s)
{
	put_str("hostile: ");
	put_str(s);
}

static void say3(const char *a, const char *b, const char *c)
{
	say(a);
	put_str(b);
	put_str(c);
}

static void __attribute__((noreturn)) reset_vm(void)
{
	/* The i8042 reset pulse: wisp ends the VM with exit status 0. */
	outb(0x64, 0xfe);
	/* No i8042 (or it ignored us)? A triple fault also resets: no IDT, then a trap. */
	static const struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) no_idt;
	__asm__ volatile("lidt %0; int3" : : "m"(no_idt));
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* Polls done() for about 2 s. The TSC is the only clock needing no set-up; 5e9 ticks
 * is 1.5-5 s at the usual 1-3.5 GHz. The spin cap ends the wait should it not tick. */
#define POLL_TSC_TICKS 5000000000ULL
#define POLL_MAX_SPINS 50000000u

static int poll(int (*done)(void))
{
	uint64_t start = rdtsc();

	for (uint32_t i = 0; i < POLL_MAX_SPINS && rdtsc() - start < POLL_TSC_TICKS; i++) {
		if (done())
			return 1;
		pause();
	}
	return done();
}

/* ---- the PVH start info and the command line ------------------------------------- */

#define PVH_START_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
} __attribute__((packed));

#define VIRTIO_MMIO_FALLBACK 0xd0000000ULL

/* A hexadecimal digit's value (either case), or -1. */
static int digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20; /* lower case */
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Linux's syntax, virtio_mmio.device=<size>@<base>:<irq>: the first entry's base. */
static uint64_t find_virtio_mmio(const char *cmdline)
{
	static const char key[] = "virtio_mmio.device=";

	for (int pos = 0; pos < 4096 && cmdline[pos]; pos++) {
		const char *p = cmdline + pos;
		size_t k = 0;
		uint64_t base = 0;
		int radix = 10;

		if (pos > 0 && p[-1] != ' ')
			continue;
		while (key[k] && p[k] == key[k])
			k++;
		if (key[k])
			continue;
		for (p += k; *p && *p != '@' && *p != ' '; p++)
			;
		if (*p++ != '@')
			break;
		if (p[0] == '0' && (p[1] | 0x20) == 'x') {
			radix = 16;
			p += 2;
		}
		for (int d; (d = digit(*p)) >= 0 && d < radix; p++)
			base = base * (unsigned int)radix + (unsigned int)d;
		return base ? base : VIRTIO_MMIO_FALLBACK;
	}
	return VIRTIO_MMIO_FALLBACK;
}

/* ---- virtio-mmio (version 2) and the split virtqueue ------------------------------ */

#define REG_MAGIC	    0x000
#define REG_VERSION	    0x004
#define REG_DEVICE_ID	    0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEAT_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEAT_SEL 0x024
#define REG_QUEUE_SEL	    0x030
#define REG_QUEUE_NUM_MAX   0x034
#define REG_QUEUE_NUM	    0x038
#define REG_QUEUE_READY	    0x044
#define REG_QUEUE_NOTIFY    0x050
#define REG_STATUS	    0x070
#define REG_QUEUE_DESC	    0x080 /* low, high at +4 */
#define REG_QUEUE_AVAIL	    0x090
#define REG_QUEUE_USED	    0x0a0
#define REG_CONFIG	    0x100 /* virtio_blk_config: capacity (u64) first */
#define VIRTIO_MAGIC	    0x74726976
#define VIRTIO_ID_BLOCK	    2

#define S_ACKNOWLEDGE 0x01
#define S_DRIVER      0x02
#define S_DRIVER_OK   0x04
#define S_FEATURES_OK 0x08
#define S_NEEDS_RESET 0x40

#define F_INDIRECT_DESC (1u << 28) /* feature bit 28, in the low word */
#define F_VERSION_1_HI	(1u << 0)  /* feature bit 32, in the high word */

#define QSIZE		8
#define DESC_F_NEXT	1
#define DESC_F_WRITE	2
#define DESC_F_INDIRECT 4

#define BLK_T_IN    0
#define SECTOR_SIZE 512

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* Everything the device reads or writes lives in .bss, in guest RAM above the image. */
static struct vring_desc desc[QSIZE] __attribute__((aligned(16)));
static struct {
	uint16_t flags, idx, ring[QSIZE], used_event;
} avail __attribute__((aligned(4)));
static volatile struct {
	uint16_t flags, idx;
	struct {
		uint32_t id, len;
	} ring[QSIZE];
	uint16_t avail_event;
} used __attribute__((aligned(4)));
static struct blk_req_hdr hdr;
static volatile uint8_t data[SECTOR_SIZE] __attribute__((aligned(16)));
static volatile uint8_t status;
static uint8_t reference[SECTOR_SIZE]; /* sector 0 as the first, honest read saw it */
#define ITABLE_LEN 300		       /* longer than any queue or chain wisp accepts */
static struct vring_desc itable[ITABLE_LEN] __attribute__((aligned(16)));

static volatile uint32_t *mmio;
static uint32_t offered_lo; /* the device's feature bits 0-31 */
static uint16_t avail_idx;  /* the driver's copy of avail.idx */
static uint16_t used_seen;  /* used.idx when we last looked */

static uint32_t rd(uint32_t reg)
{
	return mmio[reg / 4]; /* volatile uint32_t: one 32-bit access, as virtio-mmio wants */
}

static void wr(uint32_t reg, uint32_t v)
{
	mmio[reg / 4] = v;
}

static void wr64(uint32_t reg, uint64_t v)
{
	wr(reg, (uint32_t)v);
	wr(reg + 4, (uint32_t)(v >> 32));
}

/* Brings the device up as a minimal virtio 1.x driver does (virtio 1.2, 3.1.1),
 * accepting VERSION_1 and the low feature bits `want`. Returns NULL, or the failed step. */
static const char *dev_init(uint32_t want)
{
	wr(REG_STATUS, 0); /* reset */
	if (rd(REG_STATUS) != 0)
		return "reset";
	wr(REG_STATUS, S_ACKNOWLEDGE);
	wr(REG_STATUS, S_ACKNOWLEDGE | S_DRIVER);
	wr(REG_DEVICE_FEAT_SEL, 1);
	if (!(rd(REG_DEVICE_FEATURES) & F_VERSION_1_HI))
		return "no-version-1";
	wr(REG_DEVICE_FEAT_SEL, 0);
	offered_lo = rd(REG_DEVICE_FEATURES);
	wr(REG_DRIVER_FEAT_SEL, 0);
	wr(REG_DRIVER_FEATURES, want & offered_lo);
	wr(REG_DRIVER_FEAT_SEL, 1);
	wr(REG_DRIVER_FEATURES, F_VERSION_1_HI);
	wr(REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
	if (!(rd(REG_STATUS) & S_FEATURES_OK))
		return "features";

	wr(REG_QUEUE_SEL, 0);
	if (rd(REG_QUEUE_READY) != 0)
		return "queue-not-reset";
	if (rd(REG_QUEUE_NUM_MAX) < QSIZE)
		return "queue-size";
	memset(desc, 0, sizeof(desc));
	memset(&avail, 0, sizeof(avail));
	memset((void *)&used, 0, sizeof(used));
	avail_idx = used_seen = 0;
	wr(REG_QUEUE_NUM, QSIZE);
	wr64(REG_QUEUE_DESC, (uintptr_t)desc);
	wr64(REG_QUEUE_AVAIL, (uintptr_t)&avail);
	wr64(REG_QUEUE_USED, (uintptr_t)&used);
	wr(REG_QUEUE_READY, 1);
	if (rd(REG_QUEUE_READY) != 1)
		return "queue-ready";

	wr(REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	if (rd(REG_STATUS) & S_NEEDS_RESET)
		return "needs-reset";
	return NULL;
}

/* The honest request every test starts from: read sector 0 into data_addr. */
static void read_chain(uint64_t data_addr)
{
	hdr = (struct blk_req_hdr){.type = BLK_T_IN, .sector = 0};
	desc[0] = (struct vring_desc){(uintptr_t)&hdr, sizeof(hdr), DESC_F_NEXT, 1};
	desc[1] = (struct vring_desc){data_addr, SECTOR_SIZE, DESC_F_WRITE | DESC_F_NEXT, 2};
	desc[2] = (struct vring_desc){(uintptr_t)&status, 1, DESC_F_WRITE, 0};
}

/* Puts `head` in the avail ring, moves avail.idx on by `count` (1 for an honest
 * driver) and notifies queue 0. */
static void publish(uint16_t head, uint16_t count)
{
	avail.ring[avail_idx % QSIZE] = head;
	barrier(); /* the entry (and the descriptors) before the index */
	avail_idx = (uint16_t)(avail_idx + count);
	avail.idx = avail_idx;
	barrier(); /* the index before the notification */
	wr(REG_QUEUE_NOTIFY, 0);
}

static int used_moved(void)
{
	return used.idx != used_seen;
}

static int needs_reset(void)
{
	return (rd(REG_STATUS) & S_NEEDS_RESET) != 0;
}

/* One honest read of sector 0: its status byte, or -1 if it never completed. */
static int valid_read(void)
{
	for (int i = 0; i < SECTOR_SIZE; i++)
		data[i] = 0;
	status = 0xff; /* not a status the device could write */
	read_chain((uintptr_t)data);
	publish(0, 1);
	if (!poll(used_moved))
		return -1;
	used_seen = used.idx;
	return status;
}

static int data_is_reference(void)
{
	for (int i = 0; i < SECTOR_SIZE; i++)
		if (data[i] != reference[i])
			return 0;
	return 1;
}

/* ---- the attacks: each leaves one hostile request available and notifies --------- */

/* 0 -> 1 -> 0 -> ...: both readable, so only a chain-length limit stops the walk
 * (not the "readable after writable" rule). */
static void attack_loop(void)
{
	read_chain((uintptr_t)data);
	desc[1] = (struct vring_desc){(uintptr_t)data, SECTOR_SIZE, DESC_F_NEXT, 0};
	publish(0, 1);
}

/* A data buffer far beyond guest RAM (8 TiB). */
static void attack_addr_outside_ram(void)
{
	read_chain(0x7ff00000000ULL);
	publish(0, 1);
}

/* A data buffer over the device's own register window: not RAM either. */
static void attack_addr_mmio(void)
{
	read_chain((uintptr_t)mmio);
	publish(0, 1);
}

/* A chain whose next index points past the end of the descriptor table. */
static void attack_next_oob(void)
{
	read_chain((uintptr_t)data);
	desc[0].next = QSIZE;
	publish(0, 1);
}

/* An avail ring entry naming a descriptor past the end of the table. */
static void attack_head_oob(void)
{
	read_chain((uintptr_t)data);
	publish(QSIZE, 1);
}

/* A chain longer than the queue (and than any sane limit), through one indirect
 * table of ITABLE_LEN entries linked by next: header, 1-byte writable pieces, status. */
static void attack_indirect_long(void)
{
	itable[0] = (struct vring_desc){(uintptr_t)&hdr, sizeof(hdr), DESC_F_NEXT, 1};
	for (int i = 1; i < ITABLE_LEN - 1; i++)
		itable[i] = (struct vring_desc){(uintptr_t)data + i % SECTOR_SIZE, 1,
						DESC_F_WRITE | DESC_F_NEXT, (uint16_t)(i + 1)};
	itable[ITABLE_LEN - 1] = (struct vring_desc){(uintptr_t)&status, 1, DESC_F_WRITE, 0};
	hdr = (struct blk_req_hdr){.type = BLK_T_IN, .sector = 0};
	desc[0] = (struct vring_desc){(uintptr_t)itable, sizeof(itable), DESC_F_INDIRECT, 0};
	publish(0, 1);
}

/* avail.idx jumps 100 ahead: more requests than the 8-entry ring can hold. */
static void attack_avail_jump(void)
{
	read_chain((uintptr_t)data);
	for (int i = 0; i < QSIZE; i++)
		avail.ring[i] = 0;
	publish(0, 100);
}

static const struct attack {
	const char *name;
	uint32_t features; /* low feature bits the attack needs (skipped if not offered) */
	void (*run)(void);
} attacks[] = {
    {"loop", 0, attack_loop},
    {"addr-outside-ram", 0, attack_addr_outside_ram},
    {"addr-mmio", 0, attack_addr_mmio},
    {"next-oob", 0, attack_next_oob},
    {"head-oob", 0, attack_head_oob},
    {"indirect-long", F_INDIRECT_DESC, attack_indirect_long},
    {"avail-jump", 0, attack_avail_jump},
};

/* "hostile.hammer": a tight loop that writes the 8250's scratch register and reads it
 * back (port I/O) and reads the virtio-mmio magic value (MMIO), so that a pause almost
 * always finds the vCPU in or right after one of those exits. A write or read lost across
 * a pause, snapshot and restore counts in bad. Every HAMMER_TURNS turns it prints
 *   hammer n=<lines so far> bad=<wrong values so far>
 * forever: n goes on without a gap or a restart after a correct restore. */
#define HAMMER_TURNS 2048u

static void __attribute__((noreturn)) hammer(void)
{
	uint32_t turns = 0, bad = 0, lines = 0;

	for (;;) {
		uint8_t v = (uint8_t)(turns * 7u + 1u);

		outb(COM1_SCR, v);
		if (inb(COM1_SCR) != v)
			bad++;
		if (rd(REG_MAGIC) != VIRTIO_MAGIC)
			bad++;
		if (++turns % HAMMER_TURNS == 0) {
			say("hammer n=");
			put_dec(++lines);
			put_str(" bad=");
			put_dec(bad);
			put_str("\n");
		}
	}
}

/* Whether the command line has word as one of its blank-separated words. */
static int has_word(const char *cmdline, const char *word)
{
	for (int pos = 0; pos < 4096 && cmdline[pos]; pos++) {
		int k = 0;

		if (pos > 0 && cmdline[pos - 1] != ' ')
			continue;
		while (word[k] && cmdline[pos + k] == word[k])
			k++;
		if (!word[k] && (cmdline[pos + k] == ' ' || !cmdline[pos + k]))
			return 1;
	}
	return 0;
}

void hostile_main(const struct hvm_start_info *si);

void hostile_main(const struct hvm_start_info *si)
{
	uint64_t base = VIRTIO_MMIO_FALLBACK;
	const char *why, *cmdline = "";
	int st;

	if (si && si->magic == PVH_START_MAGIC && si->cmdline_paddr &&
	    si->cmdline_paddr < 0x100000000ULL) {
		cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
		base = find_virtio_mmio(cmdline);
	} else
		say("no hvm_start_info: using the default virtio-mmio base\n");

	/* Paging is off: only the low 4 GiB are reachable. Early exits print no "done". */
	mmio = (volatile uint32_t *)(uintptr_t)base;
	if (base > 0xfffff000ULL || rd(REG_MAGIC) != VIRTIO_MAGIC) {
		say("no virtio device at ");
		put_hex(base);
		put_str("\n");
		reset_vm();
	}
	say("start virtio-mmio=");
	put_hex(base);
	put_str("\n");
	if (has_word(cmdline, "hostile.hammer")) {
		say("hammer start\n");
		hammer();
	}
	if (rd(REG_VERSION) != 2 || rd(REG_DEVICE_ID) != VIRTIO_ID_BLOCK) {
		say("no virtio-blk (version 2) device: version=");
		put_dec(rd(REG_VERSION));
		put_str(" id=");
		put_dec(rd(REG_DEVICE_ID));
		put_str("\n");
		reset_vm();
	}

	/* 1. The honest driver: init and read sector 0. */
	why = dev_init(0);
	if (why) {
		say("init failed reason=");
		put_str(why);
		put_str("\n");
		reset_vm();
	}
	say("init ok capacity=");
	put_hex(rd(REG_CONFIG) | (uint64_t)rd(REG_CONFIG + 4) << 32);
	put_str(" indirect=");
	put_dec((offered_lo & F_INDIRECT_DESC) != 0);
	put_str("\n");
	st = valid_read();
	if (st < 0) {
		say("read timeout\n");
	} else {
		say("read status=");
		put_dec((uint32_t)st);
		put_str("\n");
		say("read data=");
		for (int i = 0; i < 8; i++)
			put_char(data[i] >= 0x20 && data[i] < 0x7f ? (char)data[i] : '.');
		put_str("\n");
	}
	for (int i = 0; i < SECTOR_SIZE; i++)
		reference[i] = data[i];

	/* 2. Each attack on a freshly initialised device, then a reset and an honest read.
	 * Lines are printed whole, after the fact: the VMM's own warnings may share the
	 * output and must not split them. */
	for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		const struct attack *a = &attacks[i];
		int hit, ok;

		if (a->features & ~offered_lo) {
			say3("attack-", a->name, " skipped\n");
			continue;
		}
		why = dev_init(a->features);
		if (why) {
			say3("attack-", a->name, " init failed reason=");
			put_str(why);
			put_str("\n");
			continue;
		}
		a->run();
		hit = poll(needs_reset);
		say3("attack-", a->name, " needs_reset=");
		put_dec((uint32_t)hit);
		put_str("\n");

		why = dev_init(0); /* starts with the reset (Status = 0) */
		ok = !why && valid_read() == 0 && data_is_reference();
		if (why) {
			say3("after-", a->name, " init failed reason=");
			put_str(why);
			put_str("\n");
		}
		say3("after-", a->name, " read_ok=");
		put_dec((uint32_t)ok);
		put_str("\n");
	}

	/* 3. */
	say("done\n");
	reset_vm();
}
