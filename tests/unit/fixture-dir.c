/*
 * fixture-dir.c - see fixture-dir.h.  Linked into every unit test (the
 * Makefile's TEST_HELPER_SRCS).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture-dir.h"

static char dir[64];

void fx_dir_new(const char *prefix)
{
	snprintf(dir, sizeof(dir), "/tmp/%s.XXXXXX", prefix);
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

void fx_dir_remove(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

const char *fx_path(const char *name)
{
	static char bufs[4][160];
	static int i;
	char *b = bufs[i++ & 3];

	snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
	return b;
}
