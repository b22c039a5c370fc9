/*
 * The state-file fixture test_vcpu_state.c and test_vm_state.c share: a state file written in
 * a scratch directory under /tmp, read back and parsed, then removed. Header-only (static),
 * so each test binary still builds from its own .c file.
 */
#ifndef WISP_TEST_STATE_FILE_H
#define WISP_TEST_STATE_FILE_H

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

#define STATE_FILE_ERR_SIZE 512

struct file {
	char dir[64];
	char path[128];
	uint8_t *data;
	size_t size;
	struct snap_index idx;
};

/* Starts a state file in a new directory made from dir_template ("/tmp/name.XXXXXX"), whose
 * header records one KVM capability and the given CPU vendor. */
static void file_begin_with(struct file *f, struct snap_writer *w, const char *dir_template,
			    uint32_t cap, const char *cpu_vendor)
{
	struct snap_header h = {.nr_caps = 1, .caps = {cap}};
	char err[STATE_FILE_ERR_SIZE];

	memset(f, 0, sizeof(*f));
	strcpy(h.wisp_version, "0.1.0-test");
	strcpy(h.cpu_vendor, cpu_vendor);
	snprintf(f->dir, sizeof(f->dir), "%s", dir_template);
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/vm.state", f->dir);
	assert_int_equal(snap_writer_begin(w, f->path, &h, NULL, err, sizeof(err)), 0);
}

static void file_finish_and_parse(struct file *f, struct snap_writer *w)
{
	char err[STATE_FILE_ERR_SIZE];

	assert_int_equal(snap_writer_finish(w, err, sizeof(err)), 0);
	assert_int_equal(snap_read_file(f->path, &f->data, &f->size, err, sizeof(err)), 0);
	assert_int_equal(snap_parse(f->data, f->size, 0, &f->idx, err, sizeof(err)), 0);
}

static void file_free(struct file *f)
{
	snap_index_free(&f->idx);
	free(f->data);
	unlink(f->path);
	rmdir(f->dir);
}

#endif
