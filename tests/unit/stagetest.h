/* SPDX-License-Identifier: Apache-2.0 */
/* Shared fixtures of the stage tests (tests/unit/test_stage_<type>.c).
 * Files in a temporary tree and JSON parameters for the pure parts; for
 * stages run for real, a fixture with an image path and facts in a fresh
 * directory under /var/tmp (it needs root: mknod, chown, chroot), and
 * run_stage(), which checks and runs one stage as the runner would.
 * Everything is static inline: each test file uses only some of it. */
#ifndef AMIFORGE_STAGETEST_H
#define AMIFORGE_STAGETEST_H

#include "testutil.h"

#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "amiforge/error.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

/* int: the stages' facts and printf's %d take it as it is. */
#define MiB (1 << 20)
#define GiB (UINT64_C(1) << 30)

/* ---- files and parameters ---- */

/* A parsed JSON text; a typo in a test fails the test. */
static inline json_t *load_json(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad JSON in test: %s", e.text);
	return j;
}

/* Writes dir/rel, making its parent directories. */
static inline void write_at(const char *dir, const char *rel, const void *data, size_t len)
{
	char *p = path_join(dir, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(p, 0755, &err), 0);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	close(fd);
	free(p);
}

static inline void write_str(const char *dir, const char *rel, const char *text)
{
	write_at(dir, rel, text, strlen(text));
}

/* True when dir/rel exists (a dangling symlink counts). */
static inline bool exists_at(const char *dir, const char *rel)
{
	char *p = path_join(dir, rel);
	struct stat st;
	bool r = lstat(p, &st) == 0;
	free(p);
	return r;
}

/* ---- stages run for real ---- */

struct fixture {
	char *dir;
	char *image;
	json_t *facts;
};

/* cmocka setup: leaves *state NULL without root (REQUIRE_ROOT skips). */
static inline int setup(void **state)
{
	if (geteuid() != 0)
		return 0;
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = xstrdup("/var/tmp/amiforge-stagetest-XXXXXX");
	if (!mkdtemp(f->dir))
		abort();
	f->image = path_join(f->dir, "disk.img");
	f->facts = json_object();
	*state = f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f->image);
	json_decref(f->facts);
	free(f);
	return 0;
}

#define REQUIRE_ROOT()                                                                   \
	do {                                                                             \
		if (geteuid() != 0)                                                      \
			test_skip_because("stage tests need root (mknod, chown, chroot)"); \
	} while (0)

/* Runs stage NAME with PARAMS (a JSON text); merges its outputs into the
 * facts on success.  Returns the error message (caller frees) or NULL. */
static inline char *run_stage(struct fixture *f, const char *name, const char *params, const char *image,
			      const char *root)
{
	const struct stage_type *t = registry_find(name);
	assert_non_null(t);
	json_error_t jerr;
	json_t *p = json_loads(params, 0, &jerr);
	if (!p)
		fail_msg("bad test params %s: %s", params, jerr.text);
	struct stage_ctx ctx = {
		.id = name,
		.index = 1,
		.key = "5e1f0c2d9a7b4e3f8c6d1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
		.arch = "x86_64",
		.params = p,
		.recipe_dir = f->dir,
		.state_dir = f->dir,
		.cache_dir = f->dir,
		.image = image ? image : f->image,
		.root = root,
		.facts = f->facts,
		.outputs = json_object(),
		.log_fd = -1,
	};
	struct af_error *err = NULL;
	char *msg = NULL;
	if ((t->check && t->check(p, &err) < 0) || t->run(&ctx, &err) < 0)
		msg = xstrdup(af_error_msg(err));
	else
		json_object_update(f->facts, ctx.outputs);
	af_error_free(err);
	json_decref(ctx.outputs);
	json_decref(p);
	return msg;
}

static inline void expect_ok(char *msg)
{
	if (msg)
		fail_msg("stage failed: %s", msg);
}

static inline void expect_error(char *msg, const char *part)
{
	if (!msg)
		fail_msg("stage succeeded, expected an error with '%s'", part);
	if (!strstr(msg, part))
		fail_msg("error '%s' does not contain '%s'", msg, part);
	free(msg);
}

static inline int64_t fact_int(struct fixture *f, const char *k)
{
	json_t *v = json_object_get(f->facts, k);
	if (!json_is_integer(v))
		fail_msg("fact %s missing", k);
	return json_integer_value(v);
}

static inline const char *fact_str(struct fixture *f, const char *k)
{
	json_t *v = json_object_get(f->facts, k);
	if (!json_is_string(v))
		fail_msg("fact %s missing", k);
	return json_string_value(v);
}

/* Output of a shell command (first 64 KiB); a failing command fails the
 * test. */
static inline char *sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = NULL;
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, p);
	buf[n] = '\0';
	int rc = pclose(p);
	if (rc != 0)
		fail_msg("'%s' failed (%d): %s", cmd, rc, buf);
	free(cmd);
	return buf;
}

#endif
