/*
 * fixture-run.h - run a unit test's suite the way every test binary does.
 */
#ifndef TEST_FIXTURE_RUN_H
#define TEST_FIXTURE_RUN_H

#include <check.h>

/* Run every test of s (Check's default fork mode, normal output) and
 * free it; EXIT_SUCCESS if none failed, else EXIT_FAILURE. */
int fx_run_suite(Suite *s);

#endif /* TEST_FIXTURE_RUN_H */
