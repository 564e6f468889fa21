/* SPDX-License-Identifier: Apache-2.0 */
/* The stages' describe hooks (stage.h): what `amiforge plan` says each
 * stage will do.  Every type has one, its sentence is well formed and the
 * facts it claims to know are declared; a few sentences checked word for
 * word, alone and chained through a loaded recipe as plan chains them. */
#include "stagetest.h"

#include "amiforge/cleanup.h"
#include "amiforge/facts.h"
#include "amiforge/recipe.h"

/* One hook's sentence and the facts it knows. */
struct said {
	char *text;
	json_t *known;
};

static struct said describe_with(const char *type, const json_t *params, const json_t *facts, const char *region,
				 const struct fact_plan *plan)
{
	const struct stage_type *t = registry_find(type);
	assert_non_null(t);
	assert_non_null(t->describe);
	_cleanup_json_ json_t *none = json_object();
	struct said s = { .known = json_object() };
	const struct stage_describe d = { .params = params, .recipe_name = "debian-12-20261206", .arch = "x86_64",
					  .recipe_dir = "/recipes", .region = region, .plan = plan,
					  .facts = facts ? facts : none, .known = s.known };
	s.text = t->describe(&d);
	assert_non_null(s.text);
	return s;
}

static void said_free(struct said *s)
{
	free(s->text);
	json_decref(s->known);
}

/* TYPE's sentence for PARAMS (JSON text) equals WANT. */
static void check_says(const char *type, const char *params, const char *facts, const char *region, const char *want)
{
	_cleanup_json_ json_t *p = load_json(params);
	_cleanup_json_ json_t *f = facts ? load_json(facts) : NULL;
	struct said s = describe_with(type, p, f, region, NULL);
	assert_string_equal(s.text, want);
	said_free(&s);
}

static const char *known_str(const struct said *s, const char *fact)
{
	return json_string_value(json_object_get(s->known, fact));
}

/* The least a recipe must give: each required parameter, of its type. */
static json_t *minimal_params(const struct param_spec *spec)
{
	json_t *p = json_object();
	for (; spec->name; spec++) {
		if (!(spec->flags & PARAM_REQUIRED))
			continue;
		json_t *v = spec->type == PT_ENUM      ? json_string(spec->choices[0])
			    : spec->type == PT_STRINGS ? json_pack("[s]", "x")
			    : spec->type == PT_INT || spec->type == PT_SIZE ? json_integer(1)
			    : spec->type == PT_BOOL    ? json_true()
							: json_string("x");
		json_object_set_new(p, spec->name, v);
	}
	return p;
}

/* A new stage type cannot forget the hook, and what every hook says is
 * a sentence of plan's shape whose known facts its type provides. */
static void test_every_type_describes(void **state)
{
	(void)state;
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	for (size_t i = 0; i < n; i++) {
		const struct stage_type *t = all[i];
		if (!t->describe)
			fail_msg("stage type %s has no describe hook", t->name);
		_cleanup_json_ json_t *p = minimal_params(t->params);
		struct said s = describe_with(t->name, p, NULL, NULL, NULL);
		size_t len = strlen(s.text);
		assert_true(len > 0);
		if (s.text[0] < 'a' || s.text[0] > 'z' || s.text[len - 1] == '.' || strchr(s.text, '\n'))
			fail_msg("%s says '%s': want one lower-case line without a full stop", t->name, s.text);
		struct af_error *err = NULL;
		if (facts_check_outputs(t, s.known, &err) < 0)
			fail_msg("%s knows a fact it does not provide: %s", t->name, af_error_msg(err));
		said_free(&s);
	}
}

static void test_allocate(void **state)
{
	(void)state;
	check_says("allocate", "{\"size\": 2147483648}", NULL, NULL, "create a 2 GiB sparse image file");
	check_says("allocate", "{\"size\": 1610612736}", NULL, NULL, "create a 1536 MiB sparse image file");
	check_says("allocate", "{\"device\": \"/dev/xvdf\"}", NULL, NULL, "use block device /dev/xvdf");
}

static void test_debootstrap(void **state)
{
	(void)state;
	check_says("debootstrap",
		   "{\"suite\": \"bookworm\", \"include\": [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"]}", NULL,
		   NULL, "install Debian bookworm (minbase) for amd64 with 8 extra packages from the host's Debian mirror");
	check_says("debootstrap",
		   "{\"suite\": \"trixie\", \"variant\": \"standard\", \"include\": [\"sudo\"], \"exclude\": [\"nano\"],"
		   " \"mirror\": \"http://deb.debian.org/debian\", \"tool\": \"debootstrap\"}",
		   NULL, NULL,
		   "install Debian trixie (standard) for amd64 with 1 extra package, without 1 package from "
		   "http://deb.debian.org/debian with debootstrap");
}

static void test_upload(void **state)
{
	(void)state;
	check_says("upload", "{\"bucket\": \"amis\", \"prefix\": \"/debian/12/\"}", NULL, "eu-west-1",
		   "upload the bundle to s3://amis/debian/12/ in eu-west-1");
	/* location wins over the command's region; no prefix: the bucket's root */
	check_says("upload", "{\"bucket\": \"amis\", \"location\": \"us-east-2\", \"create_bucket\": true}", NULL,
		   "eu-west-1", "upload the bundle to s3://amis/ in us-east-2, creating the bucket if it does not exist");
	/* a bundle made for another region: said, as the build warns */
	check_says("upload", "{\"bucket\": \"amis\", \"location\": \"us-east-2\"}", "{\"bundle.region\": \"eu-west-1\"}",
		   NULL, "upload the bundle to s3://amis/ in us-east-2 (but the bundle is for eu-west-1: register needs the "
			 "bucket there)");
	_cleanup_json_ json_t *p = load_json("{\"bucket\": \"amis\", \"prefix\": \"x/\"}");
	struct said s = describe_with("upload", p, NULL, NULL, NULL);
	assert_non_null(strstr(s.text, "s3://amis/x/ in the region the build resolves"));
	assert_string_equal(known_str(&s, "bundle.bucket"), "amis");
	assert_string_equal(known_str(&s, "bundle.prefix"), "x");
	assert_null(json_object_get(s.known, "bundle.bucket_region"));
	said_free(&s);
}

static void test_register(void **state)
{
	(void)state;
	const char *params = "{\"copy_to\": [\"eu-west-1\", \"ap-south-1\"], \"share\": [\"123456789012\"],"
			     " \"expire_after\": \"90d\", \"tags\": {\"team\": \"infra\"}}";
	/* no snapshot stage before it: the bundle, in the bucket's region */
	check_says("register", params, "{\"bundle.bucket_region\": \"us-east-1\", \"bootloader.firmware\": \"uefi\"}",
		   "eu-central-1",
		   "register AMI 'debian-12-20261206' (hvm, uefi) from the bundle in us-east-1, copy to eu-west-1, "
		   "ap-south-1, share with 123456789012, 1 tag, expire after 90d");
	/* its own name and region win; a pvgrub bootloader makes it paravirtual */
	check_says("register", "{\"name\": \"mine\", \"region\": \"sa-east-1\", \"snapshot_id\": \"snap-1\"}",
		   "{\"bootloader.type\": \"pvgrub\", \"snapshot.region\": \"us-east-1\"}", NULL,
		   "register AMI 'mine' (paravirtual) from the snapshot in sa-east-1");
	/* nothing names a region: the command's */
	check_says("register", "{}", NULL, "eu-north-1", "register AMI 'debian-12-20261206' (hvm) from the bundle in eu-north-1");
	_cleanup_json_ json_t *p = load_json("{}");
	struct said s = describe_with("register", p, NULL, NULL, NULL);
	assert_string_equal(known_str(&s, "ami.name"), "debian-12-20261206");
	said_free(&s);
}

/* One line, cut short without breaking a character, argv spaces quoted,
 * env values never shown. */
static void test_run(void **state)
{
	(void)state;
	check_says("run", "{\"command\": \"echo a\\necho b\", \"env\": {\"K\": \"hidden-value\"}}", NULL, NULL,
		   "run 'echo a echo b' in the image with 1 environment variable, without a network");
	check_says("run", "{\"command\": [\"sh\", \"-c\", \"echo one\", \"\"], \"network\": true}", NULL, NULL,
		   "run 'sh -c \"echo one\" \"\"' in the image, with a network");
	/* 59 bytes, then a 2-byte character across the cut at 60: cut before it */
	char x59[60];
	memset(x59, 'x', 59);
	x59[59] = '\0';
	char *params = xasprintf("{\"command\": \"%s\xc3\xa9zz\"}", x59);
	char *want = xasprintf("run '%s...' in the image, without a network", x59);
	_cleanup_json_ json_t *p = load_json(params);
	struct said s = describe_with("run", p, NULL, NULL, NULL);
	assert_string_equal(s.text, want);
	free(params);
	free(want);
	said_free(&s);
}

static void test_lists(void **state)
{
	(void)state;
	_cleanup_json_ json_t *l = load_json("[\"a\", \"b\", \"c\", \"d\"]");
	struct strbuf sb = STRBUF_INIT;
	stage_describe_list(&sb, l, 2);
	strbuf_addstr(&sb, "|");
	stage_describe_list(&sb, l, 4);
	strbuf_addstr(&sb, "|");
	stage_describe_list(&sb, NULL, 4);
	stage_describe_count(&sb, 1, "tag");
	strbuf_addstr(&sb, "|");
	stage_describe_count(&sb, 0, "tag");
	char *text = strbuf_detach(&sb);
	assert_string_equal(text, "a, b and 2 more|a, b, c, d|1 tag|0 tags");
	free(text);
	char buf[32];
	assert_string_equal(stage_describe_size(512 * MiB, buf, sizeof(buf)), "512 MiB");
	assert_string_equal(stage_describe_size(1000, buf, sizeof(buf)), "1000 B");
}

/* A recipe's stages described in order, each seeing what the earlier
 * ones' parameters fix: plan's loop (cli.c), with REGION as resolved. */
static char **describe_recipe(const struct recipe *r, const char *region)
{
	size_t n_types;
	const struct fact_types types = { .all = registry_all(&n_types), .n = n_types };
	struct fact_stage *fs = xcalloc(r->n_stages, sizeof(*fs));
	for (size_t i = 0; i < r->n_stages; i++)
		fs[i] = (struct fact_stage){ r->stages[i].type, r->stages[i].params, r->stages[i].id };
	json_t *facts = json_object();
	char **out = xcalloc(r->n_stages, sizeof(*out));
	for (size_t i = 0; i < r->n_stages; i++) {
		const struct fact_plan plan = { .stages = fs, .upto = i, .types = &types };
		json_t *known = json_object();
		const struct stage_describe d = { .params = r->stages[i].params, .recipe_name = r->name, .arch = r->arch,
						  .recipe_dir = r->dir, .region = region, .plan = &plan, .facts = facts,
						  .known = known };
		out[i] = r->stages[i].type->describe(&d);
		json_object_update(facts, known);
		json_decref(known);
	}
	json_decref(facts);
	free(fs);
	return out;
}

static const char chained_recipe[] =
	"name: debian-12-ebs-${BUILD_DATE}\n"
	"arch: x86_64\n"
	"stages:\n"
	"  - allocate: {size: 2GiB}\n"
	"  - partition: {table: gpt, esp: 128MiB, bios_boot: true}\n"
	"  - mkfs: {type: ext4, label: root}\n"
	"  - fstab: {}\n"
	"  - bootloader: {type: grub}\n"
	"  - snapshot: {region: eu-west-1}\n"
	"  - register: {copy_to: [us-east-1], share: [123456789012], expire_after: 90d}\n";

static void test_chained_through_a_recipe(void **state)
{
	(void)state;
	char *dir = test_mkdtemp();
	write_str(dir, "r.yaml", chained_recipe);
	char *path = path_join(dir, "r.yaml");
	setenv("SOURCE_DATE_EPOCH", "1796515200", 1); /* 2026-12-06 00:00:00 UTC */
	struct recipe *r = NULL;
	struct diag_list d = { 0 };
	assert_int_equal(recipe_load(path, NULL, 0, &r, &d), 0);
	unsetenv("SOURCE_DATE_EPOCH");
	char **said = describe_recipe(r, "ap-south-1");
	static const char *const want[] = {
		"create a 2 GiB sparse image file",
		"write a GPT: BIOS boot (1 MiB), EFI system partition (128 MiB), root (the rest of the disk)",
		"make ext4 labelled root; FAT32 on the EFI system partition",
		"write /etc/fstab: root by LABEL=root (defaults), proc and sysfs",
		"install GRUB 2 for BIOS and UEFI, root by label",
		"send the image to an EBS snapshot in eu-west-1 (incremental from this stage's previous snapshot, if any)",
		/* the snapshot's region, not the command's; uefi-preferred from both firmwares */
		"register AMI 'debian-12-ebs-20261206' (hvm, uefi-preferred) from the snapshot in eu-west-1, copy to "
		"us-east-1, share with 123456789012, expire after 90d",
	};
	assert_int_equal(r->n_stages, ARRAY_SIZE(want));
	for (size_t i = 0; i < r->n_stages; i++) {
		assert_string_equal(said[i], want[i]);
		free(said[i]);
	}
	free(said);
	recipe_free(r);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type_describes),
		cmocka_unit_test(test_allocate),
		cmocka_unit_test(test_debootstrap),
		cmocka_unit_test(test_upload),
		cmocka_unit_test(test_register),
		cmocka_unit_test(test_run),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_chained_through_a_recipe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
