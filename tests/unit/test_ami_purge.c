/* SPDX-License-Identifier: Apache-2.0 */
/* `ami purge`'s decisions (tools/ami_purge_plan.c): times, the selection,
 * why an image is included or kept, orphan snapshots. */
#include "testutil.h"

#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "../../tools/ami_purge.h"

static time_t at(const char *text)
{
	time_t t;
	assert_int_equal(purge_parse_time(text, &t), 0);
	return t;
}

static void test_times(void **state)
{
	(void)state;
	assert_int_equal(at("2026-12-06T11:23:03.000Z"), at("2026-12-06T11:23:03Z"));
	assert_int_equal(at("2026-12-06T00:00:00Z"), at("2026-12-06"));
	time_t t;
	assert_int_equal(purge_parse_time("2026-12-06T11:23:03+01:00", &t), -1);
	assert_int_equal(purge_parse_time("soon", &t), -1);
	assert_int_equal(purge_parse_time(NULL, &t), -1);
	struct when_span s = { .months = 3 };
	assert_int_equal(purge_cutoff(at("2026-05-31"), &s), at("2026-02-28"));
	s = (struct when_span){ .months = 12 };
	assert_int_equal(purge_cutoff(at("2026-01-15"), &s), at("2025-01-15"));
	s = (struct when_span){ .seconds = 90 * 86400 };
	assert_int_equal(purge_cutoff(at("2026-12-06"), &s), at("2026-09-07"));
}

#define MAX_IMAGES 8
struct fixture {
	struct ec2_image img[MAX_IMAGES];
	struct ec2_kv kv[MAX_IMAGES][2];
	struct purge_image p[MAX_IMAGES];
	size_t n;
};

static struct ec2_image *add(struct fixture *f, const char *id, const char *name, const char *created,
			     const char *expires, const char *deprecation)
{
	struct ec2_image *img = &f->img[f->n];
	*img = (struct ec2_image){ .image_id = (char *)id, .name = (char *)name, .state = (char *)"available",
				   .creation_date = (char *)created, .deprecation_time = (char *)deprecation };
	if (expires) {
		f->kv[f->n][0] = (struct ec2_kv){ (char *)AMI_EXPIRES_TAG, (char *)expires };
		f->kv[f->n][1] = (struct ec2_kv){ (char *)"team", (char *)"web" };
		img->tags = (struct ec2_tag_list){ f->kv[f->n], 2 };
	}
	purge_image_init(&f->p[f->n], img);
	f->n++;
	return img;
}

static void release(struct fixture *f)
{
	for (size_t i = 0; i < f->n; i++)
		purge_image_release(&f->p[i]);
}

static struct purge_opts opts(void)
{
	return (struct purge_opts){ .keep_newest = -1, .now = at("2026-12-06T12:00:00Z") };
}

static void test_selection(void **state)
{
	(void)state;
	struct fixture f = { 0 };
	add(&f, "ami-1", "nightly-1", "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00Z", NULL);
	add(&f, "ami-2", "other", "2026-01-01T00:00:00.000Z", NULL, NULL);
	struct aws_tag any = { "team", NULL }, web = { "team", "w*" }, db = { "team", "db" };
	struct purge_opts o = opts();
	o.name_glob = "nightly-*";
	assert_true(purge_image_selected(&f.img[0], &o));
	assert_false(purge_image_selected(&f.img[1], &o));
	o.name_glob = NULL;
	o.tags = &any;
	o.n_tags = 1;
	assert_true(purge_image_selected(&f.img[0], &o));
	assert_false(purge_image_selected(&f.img[1], &o));
	o.tags = &web;
	assert_true(purge_image_selected(&f.img[0], &o));
	o.tags = &db;
	assert_false(purge_image_selected(&f.img[0], &o));
	release(&f);
}

static void test_expired(void **state)
{
	(void)state;
	struct fixture f = { 0 };
	add(&f, "ami-1", "a", "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00Z", NULL);
	add(&f, "ami-2", "b", "2026-01-01T00:00:00.000Z", NULL, "2026-12-01T00:00:00.000Z");
	add(&f, "ami-3", "c", "2026-01-01T00:00:00.000Z", "2027-02-01T00:00:00Z", NULL);
	add(&f, "ami-4", "d", "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00Z", NULL);
	add(&f, "ami-5", "e", "2026-01-01T00:00:00.000Z", "not a date", NULL);
	f.p[3].in_use = xstrdup("used by instance i-1 (running)");
	struct purge_opts o = opts();
	o.expired = true;
	purge_decide_images(f.p, f.n, &o);
	assert_true(f.p[0].purge);
	assert_string_equal(f.p[0].why_included, "expired 2026-02-01T00:00:00Z");
	assert_null(f.p[0].why_kept);
	assert_true(f.p[1].purge); /* the deprecation time counts */
	assert_false(f.p[2].purge);
	assert_null(f.p[2].why_included);
	assert_false(f.p[3].purge); /* in use */
	assert_non_null(f.p[3].why_included);
	assert_string_equal(f.p[3].why_kept, "used by instance i-1 (running)");
	assert_false(f.p[4].purge); /* an unreadable expiry is no expiry */
	release(&f);
}

static void test_keep_newest_and_age(void **state)
{
	(void)state;
	struct fixture f = { 0 };
	add(&f, "ami-1", "ci", "2026-12-05T00:00:00.000Z", NULL, NULL);
	add(&f, "ami-9", "ci", "2026-11-27T00:00:00.000Z", NULL, NULL);
	add(&f, "ami-3", "ci", "2026-12-03T00:00:00.000Z", NULL, NULL);
	add(&f, "ami-7", "ci", "2026-11-29T00:00:00.000Z", NULL, NULL);
	add(&f, "ami-5", "ci", "2026-12-01T00:00:00.000Z", NULL, NULL);
	f.img[2].state = (char *)"pending";
	struct purge_opts o = opts();
	o.keep_newest = 2;
	o.have_older = true;
	o.older_text = "4d";
	o.older = (struct when_span){ .seconds = 4 * 86400 };
	o.cutoff = purge_cutoff(o.now, &o.older);
	purge_decide_images(f.p, f.n, &o);
	assert_false(f.p[0].purge);
	assert_string_equal(f.p[0].why_kept, "among the 2 newest");
	assert_false(f.p[2].purge);
	assert_string_equal(f.p[2].why_kept, "among the 2 newest; state pending");
	assert_true(f.p[4].purge); /* 5 days: older, and third newest */
	assert_string_equal(f.p[4].why_included, "older than 4d; beyond the 2 newest");
	assert_true(f.p[1].purge);
	assert_true(f.p[3].purge);
	release(&f);

	/* --keep-newest alone: the surplus goes, whatever its age. */
	struct fixture g = { 0 };
	add(&g, "ami-1", "ci", "2026-12-05T00:00:00.000Z", NULL, NULL);
	add(&g, "ami-2", "ci", "2026-12-04T00:00:00.000Z", NULL, NULL);
	o = opts();
	o.keep_newest = 1;
	purge_decide_images(g.p, g.n, &o);
	assert_false(g.p[0].purge);
	assert_true(g.p[1].purge);
	release(&g);
}

static struct ec2_snapshot snap(const char *id, const char *desc, const char *started, struct ec2_kv *tag)
{
	return (struct ec2_snapshot){ .snapshot_id = (char *)id, .description = (char *)desc,
				      .start_time = (char *)started, .state = (char *)"completed",
				      .tags = { tag, tag ? 1 : 0 } };
}

static void test_snapshot_ami(void **state)
{
	(void)state;
	struct ec2_kv t = { (char *)"amiforge:image", (char *)"ami-0123456789abcdef0" };
	struct ec2_snapshot s = snap("snap-1", "Created by CreateImage(i-0abc) for ami-0deadbeefdeadbeef0 from vol-1",
				     NULL, NULL);
	char *a = purge_snapshot_ami(&s);
	assert_string_equal(a, "ami-0deadbeefdeadbeef0");
	free(a);
	s = snap("snap-1", "Copied for DestinationAmi ami-0aaaabbbbccccdddd0 from SourceAmi ami-01234567", NULL, NULL);
	a = purge_snapshot_ami(&s);
	assert_string_equal(a, "ami-0aaaabbbbccccdddd0");
	free(a);
	s = snap("snap-1", "a backup for ami-0aaaabbbbccccdddd0", NULL, NULL);
	assert_null(purge_snapshot_ami(&s));
	s = snap("snap-1", NULL, NULL, &t);
	a = purge_snapshot_ami(&s);
	assert_string_equal(a, "ami-0123456789abcdef0");
	free(a);
}

static void test_orphans(void **state)
{
	(void)state;
	struct ec2_block_mapping bdm = { .snapshot_id = (char *)"snap-mapped" };
	struct ec2_image img = { .image_id = (char *)"ami-0aaaaaaaaaaaaaaa0", .bdm = &bdm, .n_bdm = 1 };
	struct ec2_image_list all = { &img, 1 };
	struct ec2_kv tag = { (char *)"amiforge:stage-key", (char *)"k" };
	struct purge_opts o = opts();
	struct purge_snap p;
	const char *old = "2026-11-01T00:00:00.000Z", *young = "2026-12-06T00:00:00.000Z";

	struct ec2_snapshot s = snap("snap-1", "Created by CreateImage(i-0abc) for ami-0deadbeefdeadbeef0", old, NULL);
	assert_true(purge_decide_snapshot(&s, &all, &o, &p));
	assert_true(p.purge);
	assert_string_equal(p.why_included, "its AMI ami-0deadbeefdeadbeef0 is gone");
	purge_snap_release(&p);

	s = snap("snap-2", "Created by CreateImage(i-0abc) for ami-0deadbeefdeadbeef0", young, NULL);
	assert_true(purge_decide_snapshot(&s, &all, &o, &p)); /* younger than the default day */
	assert_false(p.purge);
	assert_non_null(p.why_kept);
	purge_snap_release(&p);

	s = snap("snap-3", "made by the snapshot stage", old, &tag);
	assert_true(purge_decide_snapshot(&s, &all, &o, &p));
	assert_true(p.purge);
	assert_null(p.ami);
	purge_snap_release(&p);

	s = snap("snap-mapped", NULL, old, &tag); /* an image maps it */
	assert_false(purge_decide_snapshot(&s, &all, &o, &p));
	s = snap("snap-5", "Created by CreateImage(i-0abc) for ami-0aaaaaaaaaaaaaaa0", old, NULL); /* AMI exists */
	assert_false(purge_decide_snapshot(&s, &all, &o, &p));
	s = snap("snap-6", "my backup", old, NULL); /* not made for an AMI */
	assert_false(purge_decide_snapshot(&s, &all, &o, &p));
	s = snap("snap-7", NULL, old, &tag);
	s.state = (char *)"pending";
	assert_false(purge_decide_snapshot(&s, &all, &o, &p));

	o.have_older = true;
	o.older_text = "60d";
	o.older = (struct when_span){ .seconds = 60 * 86400 };
	o.cutoff = purge_cutoff(o.now, &o.older);
	s = snap("snap-8", NULL, old, &tag);
	assert_true(purge_decide_snapshot(&s, &all, &o, &p));
	assert_false(p.purge);
	assert_string_equal(p.why_kept, "younger than 60d");
	purge_snap_release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_selection),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_keep_newest_and_age),
		cmocka_unit_test(test_snapshot_ami),
		cmocka_unit_test(test_orphans),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
