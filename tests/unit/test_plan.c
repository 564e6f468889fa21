/* SPDX-License-Identifier: Apache-2.0 */
/* Stage keys chain; the plan resumes at the first undone stage from the
 * newest usable checkpoint. */
#include "testutil.h"

#include <fcntl.h>

#include "amiforge/blockstore.h"
#include "amiforge/plan.h"
#include "amiforge/recipe.h"
#include "amiforge/util.h"

#define N 4

struct fixture {
	struct recipe r;
	struct stage_inst st[N];
	char *dir;
};

/* allocate, mkfs, run, run: built by hand so no YAML is involved. */
static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	static const char *const types[N] = { "allocate", "mkfs", "run", "run" };
	static const char *const ids[N] = { "allocate", "mkfs", "run", "run-2" };
	for (int i = 0; i < N; i++) {
		f->st[i].type = registry_find(types[i]);
		assert_non_null(f->st[i].type);
		f->st[i].id = (char *)ids[i];
		f->st[i].index = i + 1;
		f->st[i].params = json_pack("{s:s}", "command", ids[i]);
		f->st[i].file_hashes = json_object();
	}
	f->r.arch = (char *)"x86_64";
	f->r.stages = f->st;
	f->r.n_stages = N;
	f->dir = test_mkdtemp();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < N; i++) {
		json_decref(f->st[i].params);
		json_decref(f->st[i].file_hashes);
	}
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static json_t *done_events(struct fixture *f, int upto)
{
	char keys[N][65];
	plan_keys(&f->r, keys);
	json_t *ev = json_array();
	for (int i = 0; i < upto; i++)
		json_array_append_new(ev, json_pack("{s:s, s:i, s:s, s:s, s:{}}", "event", "stage_done",
						    "index", i + 1, "id", f->st[i].id, "key", keys[i],
						    "outputs"));
	return ev;
}

/* Writes a real checkpoint of a small image under disk key KEY. */
static void make_checkpoint(struct fixture *f, const char *key)
{
	char *img = path_join(f->dir, "img");
	int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "data", 4, 4096), 4);
	close(fd);
	char *ck = path_join(f->dir, "ckpt");
	struct af_error *err = NULL;
	assert_int_equal(ckpt_take(ck, key, img, NULL, &err), 0);
	free(ck);
	free(img);
}

static void test_keys_chain(void **state)
{
	struct fixture *f = *state;
	char a[N][65], b[N][65];
	plan_keys(&f->r, a);
	plan_keys(&f->r, b);
	for (int i = 0; i < N; i++) {
		assert_int_equal(strlen(a[i]), 64);
		assert_string_equal(a[i], b[i]);
	}
	/* a change in stage 3 changes keys 3 and 4 only */
	json_object_set_new(f->st[2].params, "command", json_string("changed"));
	plan_keys(&f->r, b);
	assert_string_equal(a[0], b[0]);
	assert_string_equal(a[1], b[1]);
	assert_string_not_equal(a[2], b[2]);
	assert_string_not_equal(a[3], b[3]);
	/* the arch is part of every key */
	f->r.arch = (char *)"arm64";
	plan_keys(&f->r, b);
	assert_string_not_equal(a[0], b[0]);
}

/* The same recipe checked out elsewhere has the same keys. */
static void test_keys_independent_of_checkout(void **state)
{
	struct fixture *f = *state;
	char a[N][65], b[N][65];
	f->r.dir = (char *)"/srv/ci-1/repo";
	json_object_set_new(f->st[2].params, "script", json_string("/srv/ci-1/repo/setup.sh"));
	plan_keys(&f->r, a);
	f->r.dir = (char *)"/home/runner/work/repo";
	json_object_set_new(f->st[2].params, "script", json_string("/home/runner/work/repo/setup.sh"));
	plan_keys(&f->r, b);
	assert_string_equal(a[3], b[3]);
	json_object_set_new(f->st[2].params, "script", json_string("/home/runner/work/repo/other.sh"));
	plan_keys(&f->r, b);
	assert_string_not_equal(a[2], b[2]);
}

static void test_resume_from_checkpoint(void **state)
{
	struct fixture *f = *state;
	json_t *ev = done_events(f, 3);
	char *ck = path_join(f->dir, "ckpt");
	struct plan p;

	/* no checkpoint: everything that touches the image runs again */
	plan_make(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, 3);
	assert_int_equal(p.restore, -1);
	for (int i = 0; i < N; i++)
		assert_int_equal(p.stages[i].status, PLAN_RUN);
	assert_true(p.stages[2].journal_done);
	make_checkpoint(f, p.stages[2].disk_key);
	plan_release(&p);

	/* with a checkpoint after stage 3, only stage 4 runs */
	plan_make(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.restore, 2);
	assert_int_equal(p.stages[0].status, PLAN_DONE);
	assert_int_equal(p.stages[2].status, PLAN_DONE);
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* --from stage 2 restores nothing newer than stage 1 */
	plan_make(&f->r, ev, ck, false, 1, &p);
	assert_int_equal(p.first_undone, 1);
	assert_int_equal(p.stages[1].status, PLAN_RUN);
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* --fresh ignores the journal */
	plan_make(&f->r, ev, ck, true, -1, &p);
	assert_int_equal(p.first_undone, 0);
	assert_false(p.stages[0].journal_done);
	plan_release(&p);
	json_decref(ev);
	free(ck);
}

static void test_all_done_keeps_image(void **state)
{
	struct fixture *f = *state;
	json_t *ev = done_events(f, N);
	char *ck = path_join(f->dir, "ckpt");
	struct plan p;
	plan_make(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(p.stages[i].status, PLAN_DONE);
	plan_release(&p);

	/* a stage started after the final one finished: the image is dirty */
	json_array_append_new(ev, json_pack("{s:s, s:i, s:s, s:s}", "event", "stage_start", "index", 4,
					    "id", "run-2", "key", "0000"));
	plan_make(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* a reset (--fresh) forgets every stage_done before it */
	json_array_append_new(ev, json_pack("{s:s}", "event", "reset"));
	plan_make(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, 0);
	plan_release(&p);
	json_decref(ev);
	free(ck);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keys_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_independent_of_checkout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_from_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_done_keeps_image, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
