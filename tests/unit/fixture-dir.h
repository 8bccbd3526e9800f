/*
 * fixture-dir.h - a scratch directory per test (check's checked fixture:
 * setup makes it, teardown removes it with everything in it).
 */
#ifndef TEST_FIXTURE_DIR_H
#define TEST_FIXTURE_DIR_H

/* mkdtemp("/tmp/PREFIX.XXXXXX"); fails the test if it cannot. */
void fx_dir_new(const char *prefix);
/* rm -rf the directory. */
void fx_dir_remove(void);
/* DIR/name, in one of 4 rotating buffers: up to 4 paths at once. */
const char *fx_path(const char *name);

#endif /* TEST_FIXTURE_DIR_H */
