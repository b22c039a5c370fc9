/*
 * The Uffd snapshot backend's protocol, shared by wisp (vmm/uffd.c) and its page-fault
 * handler (vmm/tools/uffd_handler.c). Pure code, no system call: unit-tested in
 * tests/unit/test_uffd_proto.c.
 *
 * What wisp sends, once, on a Unix stream socket, as Firecracker does: a JSON array with one
 * object per guest memory region, and the userfaultfd in SCM_RIGHTS:
 *   [{"base_host_virt_addr": 140..., "size": 134217728, "offset": 0,
 *     "page_size": 4096, "page_size_kib": 4096}, ...]
 * base_host_virt_addr: where the region is mapped in wisp; size: its length in bytes;
 * offset: where its contents start in the memory file. page_size is in bytes;
 * page_size_kib is Firecracker's older, misnamed spelling of the same value (also bytes:
 * Firecracker sends page_size_kib = page_size).
 *
 * The handler's page lists (--record writes one, --prefetch reads one): text, one page per
 * line, its byte offset in the memory file in hex ("0x1f000") or decimal, page aligned;
 * blank lines and lines starting with '#' are ignored. A written list starts with a '#'
 * line and keeps the order in which the pages faulted; a read list may repeat pages.
 */
#ifndef WISP_UFFD_PROTO_H
#define WISP_UFFD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define UFFD_PAGE_SIZE	    4096ull
#define UFFD_HUGE_PAGE_SIZE (2ull << 20)
#define UFFD_MAX_MAPPINGS   64u
#define UFFD_MESSAGE_MAX    65536u	  /* the JSON text, far above 64 mappings */
#define UFFD_PAGE_LIST_MAX  (64ull << 20) /* a page list file's size: 4 M lines and more */
#define UFFD_PAGE_LIST_HEADER                                                                      \
	"# wisp-uffd-handler page list: memory-file offsets of pages, one per line, in fault "     \
	"order\n"

struct uffd_mapping {
	uint64_t base_host_virt_addr;
	uint64_t size;
	uint64_t offset;    /* in the memory file */
	uint64_t page_size; /* bytes */
};

/* Formats the mappings as Firecracker's JSON array (malloc'd, NUL-terminated, *len without
 * the NUL). Refuses (-EINVAL, message in err) what uffd_mappings_parse would refuse. */
int uffd_mappings_to_json(const struct uffd_mapping *maps, unsigned int count, char **json,
			  size_t *len, char *err, size_t err_size);

/*
 * Parses and checks the JSON array (len bytes, no NUL needed). Each object needs
 * base_host_virt_addr, size, offset (non-negative integers) and page_size or page_size_kib:
 * page_size wins; either may be in bytes (4096, 2097152) or, as the name says, KiB (4, 2048).
 * Other members are ignored. Refuses (-EINVAL, message naming the element and field):
 * anything but an array of 1 to UFFD_MAX_MAPPINGS objects, a missing or non-integer field,
 * another page size, an address, size or offset not aligned to the page size, an empty
 * region, one that wraps, host ranges that overlap, file ranges that overlap.
 */
int uffd_mappings_parse(const char *json, size_t len, struct uffd_mapping *maps, unsigned int max,
			unsigned int *count, char *err, size_t err_size);

/* Checks the same rules on mappings built in C (wisp's side). */
int uffd_mappings_check(const struct uffd_mapping *maps, unsigned int count, char *err,
			size_t err_size);

/* The mapping holding host address addr (its index), and addr's offset in the memory file.
 * -ENOENT when no mapping holds it. */
int uffd_mapping_find_addr(const struct uffd_mapping *maps, unsigned int count, uint64_t addr,
			   unsigned int *index, uint64_t *file_offset);

/* The mapping holding memory-file offset file_offset, and its host address. -ENOENT. */
int uffd_mapping_find_offset(const struct uffd_mapping *maps, unsigned int count,
			     uint64_t file_offset, unsigned int *index, uint64_t *addr);

/*
 * Parses a page list (len bytes of text). Refuses (-EINVAL, message with the line number) a
 * line that is not a number, one that overflows, or an offset not aligned to page_size.
 * *offsets is malloc'd (NULL when *count is 0), in file order, duplicates kept.
 */
int uffd_page_list_parse(const char *text, size_t len, uint64_t page_size, uint64_t **offsets,
			 size_t *count, char *err, size_t err_size);

/* Sorts offsets and drops duplicates; returns the new count. */
size_t uffd_page_list_normalize(uint64_t *offsets, size_t count);

/* The run of consecutive pages starting at offsets[*pos] of a normalized list: its first
 * offset and length in bytes; *pos moves past it. Returns 0 when the list is exhausted. */
int uffd_page_list_next_run(const uint64_t *offsets, size_t count, uint64_t page_size, size_t *pos,
			    uint64_t *start, uint64_t *len);

/* One page list line for offset ("0x1f000\n") into buf (at least 24 bytes); returns its
 * length. */
size_t uffd_page_list_format(uint64_t offset, char *buf, size_t size);

#endif
