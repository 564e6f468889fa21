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

/* Skip a test (cmocka 1.1 has skip()) with a reason printed. */
#define test_skip_because(reason)                                   \
	do {                                                        \
		fprintf(stderr, "[  SKIP    ] %s\n", (reason));     \
		skip();                                             \
	} while (0)

#endif
