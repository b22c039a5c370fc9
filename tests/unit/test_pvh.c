/* Unit tests for the PVH start info (arch/x86_64/pvh.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86_64/bootparams.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/pvh.h"
#include "memory.h"
#include "test_support.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

#define GUEST_SIZE (2 * MiB)
#define FILL	   0xaa

static int small_guest_setup(void **state)
{
	return guest_setup_with(state, GUEST_SIZE, GUEST_SIZE, FILL);
}

/* An 8 GiB layout of which only the first MiB has host memory behind it: pvh_build only
 * touches the page at its base address, and ASan reports any access beyond the buffer. */
static int big_guest_setup(void **state)
{
	return guest_setup_with(state, 8 * GiB, 1 * MiB, FILL);
}

static struct hvm_start_info read_info(const struct guest *g, uint64_t base)
{
	struct hvm_start_info info;
	memcpy(&info, g->ram + base, sizeof(info));
	return info;
}

static void test_structures_have_the_abi_sizes(void **state)
{
	(void)state;

	assert_int_equal(sizeof(struct hvm_start_info), 56);
	assert_int_equal(sizeof(struct hvm_modlist_entry), 32);
	assert_int_equal(sizeof(struct hvm_memmap_table_entry), 24);
	assert_int_equal(offsetof(struct hvm_start_info, modlist_paddr), 16);
	assert_int_equal(offsetof(struct hvm_start_info, cmdline_paddr), 24);
	assert_int_equal(offsetof(struct hvm_start_info, rsdp_paddr), 32);
	assert_int_equal(offsetof(struct hvm_start_info, memmap_paddr), 40);
	assert_int_equal(offsetof(struct hvm_start_info, memmap_entries), 48);
	/* Start info, module list and memory map must not overlap one another. */
	assert_true(sizeof(struct hvm_start_info) <= PVH_MODLIST_OFFSET);
	assert_true(PVH_MODLIST_OFFSET + sizeof(struct hvm_modlist_entry) <= PVH_MEMMAP_OFFSET);
}

static void test_start_info_has_magic_version_and_cmdline(void **state)
{
	struct guest *g = *state;

	assert_int_equal(pvh_build(&g->mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, 0, 0), 0);
	struct hvm_start_info info = read_info(g, LAYOUT_PVH_INFO);
	assert_int_equal(info.magic, 0x336ec578);
	assert_int_equal(info.version, 1);
	assert_int_equal(info.flags, 0);
	assert_int_equal(info.cmdline_paddr, LAYOUT_CMDLINE);
	assert_int_equal(info.rsdp_paddr, 0);
	assert_int_equal(info.memmap_paddr, LAYOUT_PVH_INFO + PVH_MEMMAP_OFFSET);
	assert_int_equal(info.reserved, 0);
}

static void test_no_initrd_means_no_module_list(void **state)
{
	struct guest *g = *state;
	uint8_t untouched[sizeof(struct hvm_modlist_entry)];

	assert_int_equal(pvh_build(&g->mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, 0x100000, 0), 0);
	struct hvm_start_info info = read_info(g, LAYOUT_PVH_INFO);
	assert_int_equal(info.nr_modules, 0);
	assert_int_equal(info.modlist_paddr, 0);
	memset(untouched, FILL, sizeof(untouched));
	assert_memory_equal(g->ram + LAYOUT_PVH_INFO + PVH_MODLIST_OFFSET, untouched,
			    sizeof(untouched));
}

static void test_initrd_is_the_one_module(void **state)
{
	struct guest *g = *state;
	struct hvm_modlist_entry module;

	assert_int_equal(pvh_build(&g->mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, 0x180000, 0x4321), 0);
	struct hvm_start_info info = read_info(g, LAYOUT_PVH_INFO);
	assert_int_equal(info.nr_modules, 1);
	assert_int_equal(info.modlist_paddr, LAYOUT_PVH_INFO + PVH_MODLIST_OFFSET);
	memcpy(&module, g->ram + info.modlist_paddr, sizeof(module));
	assert_int_equal(module.paddr, 0x180000);
	assert_int_equal(module.size, 0x4321);
	assert_int_equal(module.cmdline_paddr, 0);
	assert_int_equal(module.reserved, 0);
}

static void assert_memmap_matches_e820(const struct guest *g, uint64_t base)
{
	struct e820_entry e820[PVH_MEMMAP_MAX];
	int count = e820_build(&g->mem, e820, PVH_MEMMAP_MAX);
	struct hvm_start_info info = read_info(g, base);

	assert_true(count > 0);
	assert_int_equal(info.memmap_entries, count);
	for (int i = 0; i < count; i++) {
		struct hvm_memmap_table_entry entry;
		memcpy(&entry, g->ram + info.memmap_paddr + i * sizeof(entry), sizeof(entry));
		assert_int_equal(entry.addr, e820[i].addr);
		assert_int_equal(entry.size, e820[i].size);
		assert_int_equal(entry.type, e820[i].type);
		assert_int_equal(entry.reserved, 0);
	}
	/* Nothing written past the last entry. */
	assert_int_equal(g->ram[info.memmap_paddr + count * sizeof(struct hvm_memmap_table_entry)],
			 FILL);
}

static void test_memmap_equals_e820_below_gap(void **state)
{
	struct guest *g = *state;

	assert_int_equal(pvh_build(&g->mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, 0, 0), 0);
	assert_int_equal(read_info(g, LAYOUT_PVH_INFO).memmap_entries, 3);
	assert_memmap_matches_e820(g, LAYOUT_PVH_INFO);
}

static void test_memmap_equals_e820_above_gap(void **state)
{
	struct guest *g = *state;
	struct hvm_memmap_table_entry last;

	assert_int_equal(pvh_build(&g->mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, 0x200000, 0x1000), 0);
	assert_int_equal(read_info(g, LAYOUT_PVH_INFO).memmap_entries, 4);
	assert_memmap_matches_e820(g, LAYOUT_PVH_INFO);
	memcpy(&last, g->ram + LAYOUT_PVH_INFO + PVH_MEMMAP_OFFSET + 3 * sizeof(last),
	       sizeof(last));
	assert_int_equal(last.addr, GMEM_GAP_END);
	assert_int_equal(last.size, 8 * GiB - GMEM_GAP_START);
	assert_int_equal(last.type, E820_RAM);
}

static void test_structures_follow_a_different_base(void **state)
{
	struct guest *g = *state;
	const uint64_t base = 0x10000;

	assert_int_equal(pvh_build(&g->mem, base, 0x20000, 0x180000, 0x100), 0);
	struct hvm_start_info info = read_info(g, base);
	assert_int_equal(info.magic, PVH_START_MAGIC);
	assert_int_equal(info.modlist_paddr, base + PVH_MODLIST_OFFSET);
	assert_int_equal(info.memmap_paddr, base + PVH_MEMMAP_OFFSET);
	assert_memmap_matches_e820(g, base);
	/* The default location stays untouched. */
	assert_int_equal(g->ram[LAYOUT_PVH_INFO], FILL);
}

static void test_base_outside_guest_memory_fails(void **state)
{
	static const uint64_t bases[] = {GUEST_SIZE, GUEST_SIZE + 0x1000, GMEM_GAP_START,
					 1ULL << 40, UINT64_MAX - 0x20};
	struct guest *g = *state;

	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
		assert_int_equal(pvh_build(&g->mem, bases[i], LAYOUT_CMDLINE, 0x100000, 0x1000),
				 -EFAULT);
}

static void test_structures_running_past_end_of_memory_fail_and_write_nothing(void **state)
{
	/* The start info itself fits at these bases, but the memory map after it does not. */
	static const uint64_t bases[] = {GUEST_SIZE - 0x40, GUEST_SIZE - 0x80, GUEST_SIZE - 0x88};
	struct guest *g = *state;
	uint8_t untouched[0x100];

	memset(untouched, FILL, sizeof(untouched));
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		assert_int_equal(pvh_build(&g->mem, bases[i], LAYOUT_CMDLINE, 0x100000, 0x1000),
				 -EFAULT);
		assert_memory_equal(g->ram + GUEST_SIZE - sizeof(untouched), untouched,
				    sizeof(untouched));
	}
}

/* base + PVH_MODLIST_OFFSET and base + PVH_MEMMAP_OFFSET wrap past 2^64 to the bottom of
 * guest memory: the module list and memory map must not land there while the start info
 * itself fails. */
static void test_base_wrapping_past_2_64_fails_and_leaves_low_memory_untouched(void **state)
{
	static const uint64_t bases[] = {UINT64_MAX - 0x3f, UINT64_MAX - 0x7f, UINT64_MAX - 0xfff,
					 UINT64_MAX};
	struct guest *g = *state;
	uint8_t untouched[0x1000];

	memset(untouched, 0xab, sizeof(untouched));
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		memset(g->ram, 0xab, sizeof(untouched));
		assert_int_equal(pvh_build(&g->mem, bases[i], LAYOUT_CMDLINE, 0x100000, 0x1000),
				 -EFAULT);
		assert_memory_equal(g->ram, untouched, sizeof(untouched));
		assert_int_equal(pvh_build(&g->mem, bases[i], LAYOUT_CMDLINE, 0, 0), -EFAULT);
		assert_memory_equal(g->ram, untouched, sizeof(untouched));
	}
}

/* Start info, module list and memory map would all fit at these bases, but the page that
 * pvh_build owns at its base does not. */
static void test_base_whose_page_straddles_end_of_memory_fails_and_writes_nothing(void **state)
{
	static const uint64_t bases[] = {GUEST_SIZE - 0x100, GUEST_SIZE - 0x800,
					 GUEST_SIZE - PVH_INFO_SIZE + 1};
	struct guest *g = *state;
	uint8_t untouched[PVH_INFO_SIZE];

	memset(untouched, FILL, sizeof(untouched));
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		assert_int_equal(pvh_build(&g->mem, bases[i], LAYOUT_CMDLINE, 0x100000, 0x1000),
				 -EFAULT);
		assert_memory_equal(g->ram + GUEST_SIZE - sizeof(untouched), untouched,
				    sizeof(untouched));
	}
}

static void test_base_on_the_last_page_of_memory_succeeds(void **state)
{
	struct guest *g = *state;
	const uint64_t base = GUEST_SIZE - PVH_INFO_SIZE;

	assert_int_equal(pvh_build(&g->mem, base, LAYOUT_CMDLINE, 0x100000, 0x1000), 0);
	struct hvm_start_info info = read_info(g, base);
	assert_int_equal(info.magic, PVH_START_MAGIC);
	assert_int_equal(info.nr_modules, 1);
	assert_int_equal(info.modlist_paddr, base + PVH_MODLIST_OFFSET);
	assert_memmap_matches_e820(g, base);
	assert_int_equal(g->ram[base - 1], FILL);
}

static void test_memory_too_small_for_e820_fails(void **state)
{
	struct guest g;
	(void)state;

	g.ram = fake_ram_new(&g.mem, 1 * MiB, 1 * MiB, FILL);
	assert_non_null(g.ram);
	assert_int_equal(pvh_build(&g.mem, LAYOUT_PVH_INFO, LAYOUT_CMDLINE, 0, 0), -EINVAL);
	assert_int_equal(g.ram[LAYOUT_PVH_INFO], FILL);
	free(g.ram);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_structures_have_the_abi_sizes),
	    cmocka_unit_test_setup_teardown(test_start_info_has_magic_version_and_cmdline,
					    small_guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(test_no_initrd_means_no_module_list, small_guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(test_initrd_is_the_one_module, small_guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(test_memmap_equals_e820_below_gap, small_guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(test_memmap_equals_e820_above_gap, big_guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(test_structures_follow_a_different_base,
					    small_guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(test_base_outside_guest_memory_fails, small_guest_setup,
					    guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_structures_running_past_end_of_memory_fail_and_write_nothing,
		small_guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_base_wrapping_past_2_64_fails_and_leaves_low_memory_untouched,
		small_guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(
		test_base_whose_page_straddles_end_of_memory_fails_and_writes_nothing,
		small_guest_setup, guest_teardown),
	    cmocka_unit_test_setup_teardown(test_base_on_the_last_page_of_memory_succeeds,
					    small_guest_setup, guest_teardown),
	    cmocka_unit_test(test_memory_too_small_for_e820_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
