/*
 * Unit tests for the Uffd backend's protocol (vmm/uffd_proto.c): the mappings JSON wisp
 * sends and the handler parses (Firecracker's field set), address <-> file offset lookup,
 * and the handler's page-list format.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "uffd_proto.h"

#define ERR_SIZE 512

static const struct uffd_mapping two_regions[] = {
    {.base_host_virt_addr = 0x7f0000000000, .size = 0xc0000000, .offset = 0, .page_size = 4096},
    {.base_host_virt_addr = 0x7f1000000000,
     .size = 0x40000000,
     .offset = 0xc0000000,
     .page_size = 4096},
};

static int parse(const char *json, struct uffd_mapping *maps, unsigned int *count, char *err)
{
	return uffd_mappings_parse(json, strlen(json), maps, UFFD_MAX_MAPPINGS, count, err,
				   ERR_SIZE);
}

static void test_json_has_firecracker_fields(void **state)
{
	(void)state;
	char *json, err[ERR_SIZE];
	size_t len;

	assert_int_equal(uffd_mappings_to_json(two_regions, 2, &json, &len, err, ERR_SIZE), 0);
	assert_int_equal(strlen(json), len);
	/* Read back with jansson itself, field by field, as Firecracker's serde would. */
	json_error_t jerr;
	json_t *root = json_loads(json, 0, &jerr);
	assert_non_null(root);
	assert_true(json_is_array(root));
	assert_int_equal(json_array_size(root), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *obj = json_array_get(root, i);
		assert_int_equal(json_object_size(obj), 5);
		assert_int_equal(json_integer_value(json_object_get(obj, "base_host_virt_addr")),
				 two_regions[i].base_host_virt_addr);
		assert_int_equal(json_integer_value(json_object_get(obj, "size")),
				 two_regions[i].size);
		assert_int_equal(json_integer_value(json_object_get(obj, "offset")),
				 two_regions[i].offset);
		assert_int_equal(json_integer_value(json_object_get(obj, "page_size")), 4096);
		/* Firecracker's deprecated name carries bytes too. */
		assert_int_equal(json_integer_value(json_object_get(obj, "page_size_kib")), 4096);
	}
	json_decref(root);

	struct uffd_mapping back[UFFD_MAX_MAPPINGS];
	unsigned int count = 0;
	assert_int_equal(parse(json, back, &count, err), 0);
	assert_int_equal(count, 2);
	assert_memory_equal(back, two_regions, sizeof(two_regions));
	free(json);
}

static void test_json_refuses_what_parse_refuses(void **state)
{
	(void)state;
	char *json = NULL, err[ERR_SIZE];
	size_t len;
	struct uffd_mapping bad[2];

	memcpy(bad, two_regions, sizeof(bad));
	bad[1].offset = 0x1000; /* overlaps region 0 in the file */
	assert_int_equal(uffd_mappings_to_json(bad, 2, &json, &len, err, ERR_SIZE), -EINVAL);
	assert_non_null(strstr(err, "overlap in the memory file"));
	assert_null(json);
	assert_int_equal(uffd_mappings_to_json(two_regions, 0, &json, &len, err, ERR_SIZE),
			 -EINVAL);
}

static void test_parse_firecracker_spellings(void **state)
{
	(void)state;
	struct uffd_mapping maps[UFFD_MAX_MAPPINGS];
	unsigned int count = 0;
	char err[ERR_SIZE];

	/* Older Firecracker: only page_size_kib (bytes); no page size at all is refused. */
	assert_int_equal(parse("[{\"base_host_virt_addr\": 4096, \"size\": 8192, \"offset\": 0, "
			       "\"page_size_kib\": 4096}]",
			       maps, &count, err),
			 0);
	assert_int_equal(count, 1);
	assert_int_equal(maps[0].page_size, 4096);
	/* KiB taken as KiB where bytes make no sense; page_size wins over page_size_kib;
	 * unknown members are ignored. */
	assert_int_equal(parse("[{\"base_host_virt_addr\": 4096, \"size\": 8192, \"offset\": 0, "
			       "\"page_size_kib\": 4}]",
			       maps, &count, err),
			 0);
	assert_int_equal(maps[0].page_size, 4096);
	assert_int_equal(parse("[{\"base_host_virt_addr\": 2097152, \"size\": 2097152, "
			       "\"offset\": 0, \"page_size\": 2097152, \"page_size_kib\": 4, "
			       "\"guest_phys_addr\": 0}]",
			       maps, &count, err),
			 0);
	assert_int_equal(maps[0].page_size, 2097152);
}

static void expect_refused(const char *json, const char *words)
{
	struct uffd_mapping maps[UFFD_MAX_MAPPINGS];
	unsigned int count = 99;
	char err[ERR_SIZE] = "";

	int r = parse(json, maps, &count, err);
	if (r != -EINVAL || !strstr(err, words))
		fail_msg("%s: got %d \"%s\", wanted -EINVAL with \"%s\"", json, r, err, words);
	assert_int_equal(count, 99); /* untouched */
}

#define M(addr, size, off)                                                                         \
	"{\"base_host_virt_addr\": " addr ", \"size\": " size ", \"offset\": " off                 \
	", \"page_size\": 4096}"

static void test_parse_refuses_bad_mappings(void **state)
{
	(void)state;
	expect_refused("", "not JSON");
	expect_refused("[{\"size\": 1", "not JSON");
	expect_refused("{}", "not a JSON array");
	expect_refused("[]", "0 regions");
	expect_refused("[1]", "element 0 is not an object");
	expect_refused("[{\"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		       "no \"base_host_virt_addr\"");
	expect_refused("[{\"base_host_virt_addr\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		       "no \"size\"");
	expect_refused("[{\"base_host_virt_addr\": 4096, \"size\": 4096, \"page_size\": 4096}]",
		       "no \"offset\"");
	expect_refused("[{\"base_host_virt_addr\": 4096, \"size\": 4096, \"offset\": 0}]",
		       "neither \"page_size\" nor \"page_size_kib\"");
	expect_refused("[" M("-4096", "4096", "0") "]", "\"base_host_virt_addr\" is not a "
							"non-negative integer");
	expect_refused("[" M("4096", "\"4096\"", "0") "]", "\"size\" is not");
	expect_refused("[" M("4096", "4096.0", "0") "]", "\"size\" is not");
	expect_refused("[{\"base_host_virt_addr\": 4096, \"size\": 4096, \"offset\": 0, "
		       "\"page_size\": 65536}]",
		       "page size 65536");
	expect_refused("[" M("4097", "4096", "0") "]", "not aligned");
	expect_refused("[" M("4096", "4095", "0") "]", "not aligned");
	expect_refused("[" M("4096", "4096", "100") "]", "not aligned");
	expect_refused("[" M("4096", "0", "0") "]", "empty");
	expect_refused("[" M("9223372036854771712", "8192", "0") "]", "overflows");
	expect_refused("[" M("4096", "8192", "9223372036854771712") "]", "overflows");
	expect_refused("[" M("4096", "8192", "0") ", " M("8192", "4096", "8192") "]",
		       "overlap in host memory");
	expect_refused("[" M("4096", "8192", "0") ", " M("65536", "4096", "4096") "]",
		       "overlap in the memory file");
	expect_refused("[" M("4096", "4096", "0") ", " M("4096", "4096", "0") "]", "overlap");
	/* jansson refuses a key twice: the two values could be read either way. */
	expect_refused("[{\"base_host_virt_addr\": 4096, \"base_host_virt_addr\": 8192, "
		       "\"size\": 4096, \"offset\": 0, \"page_size\": 4096}]",
		       "not JSON");

	/* More than UFFD_MAX_MAPPINGS, and more than the caller's room. */
	char big[UFFD_MAX_MAPPINGS * 128 + 64];
	size_t len = 0;
	big[len++] = '[';
	for (unsigned int i = 0; i <= UFFD_MAX_MAPPINGS; i++)
		len += (size_t)snprintf(big + len, sizeof(big) - len,
					"%s{\"base_host_virt_addr\": %u, \"size\": 4096, "
					"\"offset\": %u, \"page_size\": 4096}",
					i ? "," : "", (i + 1) * 4096, i * 4096);
	big[len++] = ']';
	big[len] = '\0';
	expect_refused(big, "65 regions");
	struct uffd_mapping maps[2];
	unsigned int count;
	char err[ERR_SIZE];
	assert_int_equal(uffd_mappings_parse(
			     "[" M("4096", "4096", "0") "," M("8192", "4096", "4096") "]",
			     strlen("[" M("4096", "4096", "0") "," M("8192", "4096", "4096") "]"),
			     maps, 1, &count, err, ERR_SIZE),
			 -EINVAL);
	assert_non_null(strstr(err, "2 regions (1 to 1 allowed)"));
}

static void test_lookup(void **state)
{
	(void)state;
	unsigned int index = 99;
	uint64_t v = 0;

	/* address -> file offset */
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0x7f0000000000, &index, &v), 0);
	assert_int_equal(index, 0);
	assert_int_equal(v, 0);
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0x7f00bffff123, &index, &v), 0);
	assert_int_equal(v, 0xbffff123);
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0x7f1000001000, &index, &v), 0);
	assert_int_equal(index, 1);
	assert_int_equal(v, 0xc0001000);
	/* just past each end, below the first, and in between */
	index = 99;
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0x7f00c0000000, &index, &v),
			 -ENOENT);
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0x7f1040000000, &index, &v),
			 -ENOENT);
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0x7effffffffff, &index, &v),
			 -ENOENT);
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, 0, &index, &v), -ENOENT);
	assert_int_equal(uffd_mapping_find_addr(two_regions, 2, UINT64_MAX, &index, &v), -ENOENT);
	assert_int_equal(index, 99);

	/* file offset -> address */
	assert_int_equal(uffd_mapping_find_offset(two_regions, 2, 0xbffff000, &index, &v), 0);
	assert_int_equal(index, 0);
	assert_int_equal(v, 0x7f00bffff000);
	assert_int_equal(uffd_mapping_find_offset(two_regions, 2, 0xc0000000, &index, &v), 0);
	assert_int_equal(index, 1);
	assert_int_equal(v, 0x7f1000000000);
	assert_int_equal(uffd_mapping_find_offset(two_regions, 2, 0x100000000, &index, &v),
			 -ENOENT);
	assert_int_equal(uffd_mapping_find_offset(two_regions, 2, UINT64_MAX, &index, &v), -ENOENT);
	assert_int_equal(uffd_mapping_find_offset(two_regions, 0, 0, &index, &v), -ENOENT);
}

static void test_page_list_round_trip(void **state)
{
	(void)state;
	const uint64_t pages[] = {0x3000, 0, 0x1000, 0x7fff0000000, 0x2000, 0x1000};
	char text[1024];
	size_t len = 0;
	char err[ERR_SIZE];

	memcpy(text, UFFD_PAGE_LIST_HEADER, strlen(UFFD_PAGE_LIST_HEADER));
	len = strlen(UFFD_PAGE_LIST_HEADER);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		len += uffd_page_list_format(pages[i], text + len, sizeof(text) - len);
	assert_string_equal(text + strlen(UFFD_PAGE_LIST_HEADER),
			    "0x3000\n0x0\n0x1000\n0x7fff0000000\n0x2000\n0x1000\n");

	uint64_t *offsets;
	size_t count;
	assert_int_equal(uffd_page_list_parse(text, len, 4096, &offsets, &count, err, ERR_SIZE), 0);
	assert_int_equal(count, 6);
	assert_memory_equal(offsets, pages, sizeof(pages)); /* file order, duplicates kept */

	/* Sorted, unique, then runs of consecutive pages: [0, 0x4000) and the far page. */
	count = uffd_page_list_normalize(offsets, count);
	assert_int_equal(count, 5);
	size_t pos = 0;
	uint64_t start, run;
	assert_int_equal(uffd_page_list_next_run(offsets, count, 4096, &pos, &start, &run), 1);
	assert_int_equal(start, 0);
	assert_int_equal(run, 0x4000);
	assert_int_equal(uffd_page_list_next_run(offsets, count, 4096, &pos, &start, &run), 1);
	assert_int_equal(start, 0x7fff0000000);
	assert_int_equal(run, 0x1000);
	assert_int_equal(uffd_page_list_next_run(offsets, count, 4096, &pos, &start, &run), 0);
	free(offsets);
}

static void test_page_list_lenient_where_harmless(void **state)
{
	(void)state;
	const char *text = "# comment\n\n  0x1000 \r\n4096\n\t8192\n# another\n0X2000";
	uint64_t *offsets;
	size_t count;
	char err[ERR_SIZE];

	assert_int_equal(
	    uffd_page_list_parse(text, strlen(text), 4096, &offsets, &count, err, ERR_SIZE), 0);
	assert_int_equal(count, 4);
	assert_int_equal(offsets[0], 0x1000);
	assert_int_equal(offsets[1], 4096);
	assert_int_equal(offsets[2], 8192);
	assert_int_equal(offsets[3], 0x2000);
	free(offsets);

	/* Empty and comment-only lists hold no page. */
	assert_int_equal(uffd_page_list_parse("", 0, 4096, &offsets, &count, err, ERR_SIZE), 0);
	assert_int_equal(count, 0);
	assert_null(offsets);
	assert_int_equal(uffd_page_list_normalize(NULL, 0), 0);
}

static void expect_list_refused(const char *text, const char *words)
{
	uint64_t *offsets = (uint64_t *)1;
	size_t count = 99;
	char err[ERR_SIZE] = "";
	int r = uffd_page_list_parse(text, strlen(text), 4096, &offsets, &count, err, ERR_SIZE);
	if (r != -EINVAL || !strstr(err, words))
		fail_msg("\"%s\": got %d \"%s\", wanted -EINVAL with \"%s\"", text, r, err, words);
	assert_int_equal(count, 99);
	assert_ptr_equal(offsets, (uint64_t *)1);
}

static void test_page_list_refuses_bad_lines(void **state)
{
	(void)state;
	expect_list_refused("0x1000\nxyz\n", "line 2: \"xyz\" is not a hex");
	expect_list_refused("0x\n", "line 1");
	expect_list_refused("-4096\n", "not a hex");
	expect_list_refused("+4096\n", "not a hex");
	expect_list_refused("0x1000 0x2000\n", "not a hex");
	expect_list_refused("4096abc\n", "not a hex");
	expect_list_refused("0x1g00\n", "not a hex");
	expect_list_refused("\n\n0x1001\n", "line 3: offset 0x1001 is not aligned");
	expect_list_refused("4095\n", "not aligned");
	expect_list_refused("0x10000000000000000\n", "too large");
	expect_list_refused("18446744073709551616\n", "too large");
	/* The largest aligned value is fine. */
	uint64_t *offsets;
	size_t count;
	char err[ERR_SIZE];
	const char *max = "0xfffffffffffff000";
	assert_int_equal(
	    uffd_page_list_parse(max, strlen(max), 4096, &offsets, &count, err, ERR_SIZE), 0);
	assert_int_equal(offsets[0], 0xfffffffffffff000ull);
	free(offsets);
	assert_int_equal(uffd_page_list_parse("0", 1, 0, &offsets, &count, err, ERR_SIZE), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_has_firecracker_fields),
	    cmocka_unit_test(test_json_refuses_what_parse_refuses),
	    cmocka_unit_test(test_parse_firecracker_spellings),
	    cmocka_unit_test(test_parse_refuses_bad_mappings),
	    cmocka_unit_test(test_lookup),
	    cmocka_unit_test(test_page_list_round_trip),
	    cmocka_unit_test(test_page_list_lenient_where_harmless),
	    cmocka_unit_test(test_page_list_refuses_bad_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
