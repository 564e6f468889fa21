/* SPDX-License-Identifier: Apache-2.0 */
/* Shared helpers for cmocka unit tests. */
#ifndef AMIFORGE_TESTUTIL_H
#define AMIFORGE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp); caller frees
 * and removes it with test_rmdir_r. */
static inline char *test_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char *p = NULL;
	if (asprintf(&p, "%s/amiforge-test-XXXXXX", base && *base ? base : "/tmp") < 0)
		abort();
	if (!mkdtemp(p))
		abort();
	return p;
}

static inline void test_rmdir_r(const char *dir)
{
	char *cmd = NULL;
	if (!dir || asprintf(&cmd, "rm -rf -- '%s'", dir) < 0)
		return;
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	free(cmd);
}

/* A test's own JSON data (new reference): a test that cannot parse what
 * it wrote fails, naming the text. */
static inline json_t *test_json(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad JSON in test: %s: %s", text, e.text);
	return j;
}

/* Skip a test (cmocka 1.1 has skip()) with a reason printed. */
#define test_skip_because(reason)                                   \
	do {                                                        \
		fprintf(stderr, "[  SKIP    ] %s\n", (reason));     \
		skip();                                             \
	} while (0)

/* Valgrind does not emulate seccomp, pidfd_open or mount_setattr, which the
 * jail is made of: under `make valgrind` a test that jails a command is
 * skipped (make check runs it natively). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TEST_UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef TEST_UNDER_VALGRIND
#define TEST_UNDER_VALGRIND() 0
#endif
#define REQUIRE_NO_VALGRIND()                                                                          \
	do {                                                                                           \
		if (TEST_UNDER_VALGRIND())                                                             \
			test_skip_because("the jail under valgrind (no seccomp, pidfd_open or mount_setattr)"); \
	} while (0)

#endif
