/* aletheia unit tests: a tiny check macro set that prints the last aletheia error on failure. */
#ifndef ALETHEIA_TEST_CHECK_H
#define ALETHEIA_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include "aletheia/common.h"

static int check_failures;

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	check_failures++; } } while (0)

/* Asserts an aletheia call returned 0, printing al_error_last() otherwise. */
#define CHECK_OK(expr) do { int check_rc_ = (expr); if (check_rc_ != 0) { \
	fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #expr, \
		check_rc_, al_strerror(check_rc_), al_error_last()); check_failures++; } } while (0)

#define CHECK_EQ_INT(a, b) do { long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
	if (check_a_ != check_b_) { fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", \
		__FILE__, __LINE__, #a, check_a_, check_b_); check_failures++; } } while (0)

#define CHECK_EQ_STR(a, b) do { const char *check_a_ = (a), *check_b_ = (b); \
	if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) { \
		fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
			check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)"); \
		check_failures++; } } while (0)

#define CHECK_DONE() do { if (check_failures) { \
	fprintf(stderr, "%d check(s) failed\n", check_failures); return 1; } \
	printf("all checks passed\n"); return 0; } while (0)

#endif
