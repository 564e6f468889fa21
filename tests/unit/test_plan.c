/* SPDX-License-Identifier: Apache-2.0 */
/* Stage keys chain; the plan resumes at the first undone stage from the
 * newest usable checkpoint. */
#include "testutil.h"

#include <fcntl.h>

#include "amiforge/checkpoint.h"
#include "amiforge/journal.h"
#include "amiforge/plan.h"
#include "amiforge/recipe.h"
#include "amiforge/util.h"

#define N 4

struct fixture {
	struct recipe r;
	struct stage_inst st[N];
	char *dir;
	struct journal *j; /* in dir/state */
};

/* allocate, mkfs, run, run: built by hand so no YAML is involved. */

/* plan_make over the local checkpoints, as `plan` without --remote. */
static void plan_at(const struct recipe *r, const struct journal_log *log, const char *ck, bool fresh,
		    int from, struct plan *out)
{
	const struct plan_input in = { .log = log, .ckpt_usable = plan_ckpt_local, .ckpt_arg = (void *)ck,
				       .image_here = true, .fresh = fresh, .from = from };
	plan_make(r, &in, out);
}

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
	char *sd = path_join(f->dir, "state");
	struct af_error *err = NULL;
	f->j = journal_open(sd, &err);
	assert_non_null(f->j);
	free(sd);
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
	journal_close(f->j);
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Journals stages 1..upto as started and done, as a build does. */
static const struct journal_log *done_events(struct fixture *f, int upto)
{
	char keys[N][65];
	plan_keys(&f->r, keys);
	struct af_error *err = NULL;
	for (int i = 0; i < upto; i++) {
		struct journal_stage js = { i + 1, f->st[i].id, keys[i] };
		json_t *outs = json_pack("{s:i}", "n", i);
		assert_int_equal(journal_append_stage_start(f->j, &js, &err), 0);
		assert_int_equal(journal_append_stage_done(f->j, &js, 0.5 + i, outs, &err), 0);
		json_decref(outs);
	}
	return journal_get_log(f->j);
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

/* A host file (bundle's key) counts by its fingerprint only: moved, the
 * same key; changed, another.  A recipe's file keeps its relative path. */
static void test_keys_host_file_fingerprint(void **state)
{
	struct fixture *f = *state;
	char a[N][65], b[N][65];
	f->r.dir = (char *)"/srv/ci-1/repo";
	f->st[3].type = registry_find("bundle");
	assert_non_null(f->st[3].type);
	json_object_set_new(f->st[3].params, "key", json_string("/home/ci/.amiforge/key.pem"));
	json_object_set_new(f->st[3].file_hashes, "key", json_string("aaaa"));
	plan_keys(&f->r, a);
	json_object_set_new(f->st[3].params, "key", json_string("/run/secrets/bundle-key"));
	plan_keys(&f->r, b);
	assert_string_equal(a[3], b[3]);
	/* inside the recipe's directory too: only the content counts */
	json_object_set_new(f->st[3].params, "key", json_string("/srv/ci-1/repo/key.pem"));
	plan_keys(&f->r, b);
	assert_string_equal(a[3], b[3]);
	json_object_set_new(f->st[3].file_hashes, "key", json_string("bbbb"));
	plan_keys(&f->r, b);
	assert_string_equal(a[2], b[2]);
	assert_string_not_equal(a[3], b[3]);
	/* run's script is no host file: its path (relative) is part of the key */
	json_object_set_new(f->st[2].params, "script", json_string("/srv/ci-1/repo/a.sh"));
	plan_keys(&f->r, a);
	json_object_set_new(f->st[2].params, "script", json_string("/srv/ci-1/repo/b.sh"));
	plan_keys(&f->r, b);
	assert_string_not_equal(a[2], b[2]);
}

static void test_resume_from_checkpoint(void **state)
{
	struct fixture *f = *state;
	const struct journal_log *ev = done_events(f, 3);
	char *ck = path_join(f->dir, "ckpt");
	struct plan p;

	/* no checkpoint: everything that touches the image runs again */
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, 3);
	assert_int_equal(p.restore, -1);
	for (int i = 0; i < N; i++)
		assert_int_equal(p.stages[i].status, PLAN_RUN);
	assert_true(p.stages[2].journal_done);
	/* what the runner replays from a done stage */
	assert_true(p.stages[2].done_event->seconds == 2.5);
	assert_int_equal(json_integer_value(json_object_get(p.stages[2].done_event->outputs, "n")), 2);
	assert_null(p.stages[3].done_event);
	make_checkpoint(f, p.stages[2].disk_key);
	plan_release(&p);

	/* with a checkpoint after stage 3, only stage 4 runs */
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.restore, 2);
	assert_int_equal(p.stages[0].status, PLAN_DONE);
	assert_int_equal(p.stages[2].status, PLAN_DONE);
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* --from stage 2 restores nothing newer than stage 1 */
	plan_at(&f->r, ev, ck, false, 1, &p);
	assert_int_equal(p.first_undone, 1);
	assert_int_equal(p.stages[1].status, PLAN_RUN);
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* --fresh ignores the journal */
	plan_at(&f->r, ev, ck, true, -1, &p);
	assert_int_equal(p.first_undone, 0);
	assert_false(p.stages[0].journal_done);
	plan_release(&p);

	/* no journal at all (plan --fresh does not read one) */
	plan_at(&f->r, NULL, ck, true, -1, &p);
	assert_int_equal(p.first_undone, 0);
	assert_null(p.stages[0].done_event);
	plan_release(&p);

	/* a reset (a build with --fresh) forgets them; stages done after it count */
	struct af_error *err = NULL;
	assert_int_equal(journal_append_reset(f->j, &err), 0);
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, 0);
	plan_release(&p);
	done_events(f, 2);
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, 2);
	assert_true(p.stages[1].journal_done);
	assert_false(p.stages[2].journal_done);
	plan_release(&p);
	free(ck);
}

static void test_all_done_keeps_image(void **state)
{
	struct fixture *f = *state;
	const struct journal_log *ev = done_events(f, N);
	char *ck = path_join(f->dir, "ckpt");
	struct plan p;
	struct af_error *err = NULL;
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(p.stages[i].status, PLAN_DONE);
	plan_release(&p);

	/* a checkpoint or a resource after it does not touch the image */
	char keys[N][65];
	plan_keys(&f->r, keys);
	struct journal_stage last = { 4, "run-2", keys[3] };
	struct journal_ckpt c = { 0 };
	json_t *res = json_object();
	assert_int_equal(journal_append_checkpoint(f->j, &last, keys[3], &c, &err), 0);
	assert_int_equal(journal_append_resource(f->j, &last, res, &err), 0);
	json_decref(res);
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.stages[3].status, PLAN_DONE);
	plan_release(&p);

	/* a stage started after the final one finished: the image is dirty */
	struct journal_stage other = { 4, "run-2", "0000" };
	assert_int_equal(journal_append_stage_start(f->j, &other, &err), 0);
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, N); /* still done in the journal */
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* and so after a failure */
	assert_int_equal(journal_append_stage_fail(f->j, &other, 1, "x", &err), 0);
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.stages[3].status, PLAN_RUN);
	plan_release(&p);

	/* a reset (--fresh) forgets every stage_done before it */
	assert_int_equal(journal_append_reset(f->j, &err), 0);
	plan_at(&f->r, ev, ck, false, -1, &p);
	assert_int_equal(p.first_undone, 0);
	plan_release(&p);

	/* all done again after the reset: the final image is intact again */
	done_events(f, N);
	plan_at(&f->r, ev, ck, false, -1, &p);
	for (int i = 0; i < N; i++)
		assert_int_equal(p.stages[i].status, PLAN_DONE);
	plan_release(&p);
	free(ck);
}

/* A journal written before the line format had a version (no "v") plans
 * like one written now. */
static void test_format1_journal(void **state)
{
	struct fixture *f = *state;
	char keys[N][65];
	plan_keys(&f->r, keys);
	char *sd = path_join(f->dir, "old");
	char *path = path_join(sd, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(sd, 0700, &err), 0);
	FILE *out = fopen(path, "w");
	assert_non_null(out);
	fprintf(out, "{\"event\":\"reset\",\"time\":\"t\"}\n"
		     "{\"event\":\"build_start\",\"recipe\":\"r.yaml\",\"fresh\":true,\"pid\":1,\"time\":\"t\"}\n");
	for (int i = 0; i < N; i++) {
		fprintf(out, "{\"event\":\"stage_start\",\"index\":%d,\"id\":\"%s\",\"key\":\"%s\",\"time\":\"t\"}\n",
			i + 1, f->st[i].id, keys[i]);
		/* format 1 named the disk key "key" in a checkpoint */
		fprintf(out, "{\"event\":\"checkpoint\",\"index\":%d,\"id\":\"%s\",\"key\":\"%s\",\"seconds\":0.1,\"bytes_new\":1,\"bytes_stored\":1,\"blocks_data\":1,\"time\":\"t\"}\n",
			i + 1, f->st[i].id, keys[i]);
		fprintf(out, "{\"event\":\"stage_done\",\"index\":%d,\"id\":\"%s\",\"key\":\"%s\",\"seconds\":1.0,\"outputs\":{\"i\":%d},\"time\":\"t\"}\n",
			i + 1, f->st[i].id, keys[i], i);
	}
	fprintf(out, "{\"event\":\"build_end\",\"status\":\"ok\",\"time\":\"t\"}\n");
	assert_int_equal(fclose(out), 0);

	struct journal_log *log = journal_read(sd, &err);
	assert_non_null(log);
	char *ck = path_join(f->dir, "ckpt");
	struct plan p;
	plan_at(&f->r, log, ck, false, -1, &p);
	assert_int_equal(p.first_undone, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(p.stages[i].status, PLAN_DONE);
		assert_int_equal(json_integer_value(json_object_get(p.stages[i].done_event->outputs, "i")), i);
	}
	plan_release(&p);
	journal_log_free(log);
	free(ck);
	free(path);
	free(sd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keys_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_independent_of_checkout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_host_file_fingerprint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume_from_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_done_keeps_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format1_journal, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
