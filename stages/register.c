/* SPDX-License-Identifier: Apache-2.0 */
/* register: the finished disk becomes an AMI.  RegisterImage from the EBS
 * snapshot (fact "snapshot.id") or the instance-store bundle in S3 (fact
 * "bundle.manifest_location"), then tags on the image and its snapshots, an
 * expiry tag with EnableImageDeprecation, launch permissions, and CopyImage
 * to other regions, each AMI waited on (bounded) until it is available.
 *
 * Never a duplicate: each AMI id is journaled the moment EC2 returns it; a
 * resumed stage reuses the journaled ids; an AMI of the same name that
 * carries this stage's key tag (set in the RegisterImage call itself, so it
 * exists from the first moment) is adopted when the process died before the
 * journal write; an AMI of the same name without that tag is someone else's
 * and stops the build.  Copies carry a ClientToken derived from the key, so
 * a retried CopyImage answers with the same copy.  Everything after the
 * register/copy calls (tags, deprecation, sharing) is idempotent. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "amiforge/aws/ec2.h"
#include "amiforge/aws/request.h"
#include "amiforge/bundle_format.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/facts.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"
#include "amiforge/when.h"

/* Tag keys this stage writes besides the recipe's. */
#define REG_TAG_KEY "amiforge:stage-key"
#define REG_TAG_EXPIRES "amiforge:expires"

#define REG_GIB (1024ull * 1024 * 1024)
#define REG_MAX_EPHEMERAL 24

static const char *const reg_virt[] = { "hvm", "paravirtual", NULL };
static const char *const reg_volume_types[] = { "gp3", "gp2", "io1", "io2", "standard", "st1", "sc1", NULL };
static const char *const reg_boot_modes[] = { "legacy-bios", "uefi", "uefi-preferred", NULL };
static const char *const reg_imds[] = { "v2.0", "optional", NULL };

static const struct param_spec reg_params[] = {
	{ .name = "name", .type = PT_STRING, .help = "AMI name (3-128 characters: letters, digits, ( ) [ ] . / - ' @ _ and space)",
	  .defval = "the recipe name" },
	{ .name = "description", .type = PT_STRING, .help = "AMI description" },
	{ .name = "region", .type = PT_STRING, .help = "region to register in",
	  .defval = "the snapshot's or bucket's region, else AWS_REGION, AWS_DEFAULT_REGION, the profile" },
	{ .name = "virtualization", .type = PT_ENUM, .choices = reg_virt,
	  .help = "hvm, or paravirtual (booted by the PV-GRUB AKI)", .defval = "paravirtual after a pvgrub bootloader, else hvm" },
	{ .name = "snapshot_id", .type = PT_STRING, .help = "register this EBS snapshot", .defval = "the snapshot stage's" },
	{ .name = "image_location", .type = PT_STRING, .help = "register this bundle manifest (bucket/prefix/NAME.manifest.xml)",
	  .defval = "the upload stage's" },
	{ .name = "root_device", .type = PT_STRING, .help = "root device name", .defval = "/dev/xvda (hvm), /dev/sda1 (paravirtual)" },
	{ .name = "volume_type", .type = PT_ENUM, .choices = reg_volume_types, .help = "root volume type (EBS)", .defval = "gp3" },
	{ .name = "volume_size", .type = PT_SIZE, .help = "root volume size, rounded up to GiB (EBS)", .defval = "the snapshot's" },
	{ .name = "iops", .type = PT_INT, .help = "root volume IOPS (gp3, io1, io2)" },
	{ .name = "throughput", .type = PT_INT, .help = "root volume throughput in MiB/s (gp3)" },
	{ .name = "delete_on_termination", .type = PT_BOOL, .help = "delete the root volume with the instance", .defval = "true" },
	{ .name = "ephemeral", .type = PT_INT, .help = "instance-store volumes mapped: ephemeral0 on /dev/sdb, ephemeral1 on /dev/sdc, ...",
	  .defval = "0" },
	{ .name = "ena", .type = PT_BOOL, .help = "ENA enhanced networking (hvm)", .defval = "true for hvm" },
	{ .name = "sriov", .type = PT_BOOL, .help = "Intel 82599 VF networking, SriovNetSupport=simple (hvm)", .defval = "false" },
	{ .name = "boot_mode", .type = PT_ENUM, .choices = reg_boot_modes, .help = "firmware",
	  .defval = "from the bootloader stage (bios: legacy-bios, uefi: uefi, both: uefi-preferred)" },
	{ .name = "tpm", .type = PT_BOOL, .help = "NitroTPM v2.0 (needs uefi boot)", .defval = "false" },
	{ .name = "imds", .type = PT_ENUM, .choices = reg_imds, .help = "instance metadata: v2.0 (tokens required) or optional",
	  .defval = "v2.0" },
	{ .name = "kernel_id", .type = PT_STRING, .help = "AKI for paravirtual", .defval = "the PV-GRUB hd0 AKI for the region" },
	{ .name = "tags", .type = PT_MAP, .help = "tags on the AMIs and their snapshots" },
	{ .name = "expire_after", .type = PT_STRING, .help = "expiry tag and deprecation this long after the AMI was created: 90d, 2w, 3mo (calendar months), 1y, '+1 week' (as ami --expire-after)" },
	{ .name = "share", .type = PT_STRINGS, .help = "launch permissions: account ids, public, organisation or OU ARNs" },
	{ .name = "copy_to", .type = PT_STRINGS, .help = "copy the AMI to these regions" },
	{ .name = "kms_keys", .type = PT_MAP, .help = "region -> KMS key: that region's copy is encrypted with it" },
	{ .name = "wait_timeout", .type = PT_DURATION, .help = "how long to wait for each AMI to become available", .defval = "2h" },
	{ .name = NULL },
};

/* ---- pure helpers (unit-tested) ---- */

enum reg_share_kind { REG_SHARE_BAD, REG_SHARE_ACCOUNT, REG_SHARE_PUBLIC, REG_SHARE_ORG, REG_SHARE_OU };

static bool reg_all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return s[n] == '\0';
}

/* arn:PARTITION:organizations::ACCOUNT:organization/o-x or .../ou/o-x/ou-y */
static enum reg_share_kind reg_share_kind(const char *s)
{
	if (strlen(s) == 12 && reg_all_digits(s, 12))
		return REG_SHARE_ACCOUNT;
	if (!strcmp(s, "public"))
		return REG_SHARE_PUBLIC;
	if (!str_has_prefix(s, "arn:"))
		return REG_SHARE_BAD;
	const char *svc = strstr(s, ":organizations::");
	if (!svc)
		return REG_SHARE_BAD;
	const char *acct = svc + strlen(":organizations::");
	const char *colon = strchr(acct, ':');
	if (!colon || colon - acct != 12)
		return REG_SHARE_BAD;
	if (str_has_prefix(colon + 1, "organization/o-") && colon[16])
		return REG_SHARE_ORG;
	if (str_has_prefix(colon + 1, "ou/o-") && strstr(colon + 1, "/ou-"))
		return REG_SHARE_OU;
	return REG_SHARE_BAD;
}

/* AWS's rule for AMI names (RegisterImage). */
static bool reg_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 3 || n > 128)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("()[] ./-'@_", *p))
			return false;
	return true;
}

static bool reg_region_valid(const char *r)
{
	if (strlen(r) < 6 || !islower((unsigned char)r[0]))
		return false;
	for (const char *p = r; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
			return false;
	return strchr(r, '-') != NULL;
}

static int reg_check_share(const json_t *share, struct af_error **err)
{
	size_t i;
	json_t *v;
	json_array_foreach(share, i, v) {
		if (reg_share_kind(json_string_value(v)) == REG_SHARE_BAD)
			return af_error_set(err, 0, "share: '%s' is not a 12-digit account id, 'public' or an organisation "
					    "ARN (arn:aws:organizations::ACCOUNT:organization/o-... or .../ou/o-.../ou-...)",
					    json_string_value(v));
	}
	return 0;
}

static int reg_check_regions(const json_t *params, struct af_error **err)
{
	const json_t *copy = params_get(params, "copy_to");
	size_t i;
	json_t *v;
	json_array_foreach(copy, i, v) {
		if (!reg_region_valid(json_string_value(v)))
			return af_error_set(err, 0, "copy_to: '%s' is not a region name (like eu-west-1)",
					    json_string_value(v));
	}
	const char *region;
	json_t *key;
	json_object_foreach((json_t *)params_get(params, "kms_keys"), region, key) {
		bool listed = false;
		json_array_foreach(copy, i, v)
			listed |= !strcmp(json_string_value(v), region);
		if (!listed)
			return af_error_set(err, 0, "kms_keys: region '%s' is not in copy_to", region);
	}
	return 0;
}

static int reg_check(const json_t *params, struct af_error **err)
{
	bool pv = !strcmp(params_str(params, "virtualization", "hvm"), "paravirtual");
	const char *boot = params_str(params, "boot_mode", NULL);
	const char *name = params_str(params, "name", NULL);
	if (name && !reg_name_valid(name))
		return af_error_set(err, 0, "name '%s' is not a valid AMI name: 3-128 characters, letters, digits, "
				    "( ) [ ] . / - ' @ _ and space", name);
	if (params_get(params, "snapshot_id") && params_get(params, "image_location"))
		return af_error_set(err, 0, "register takes snapshot_id (EBS) or image_location (instance-store), not both");
	if (pv && (params_bool(params, "ena", false) || params_bool(params, "sriov", false)))
		return af_error_set(err, 0, "ena and sriov need virtualization: hvm");
	if (pv && (boot || params_bool(params, "tpm", false)))
		return af_error_set(err, 0, "boot_mode and tpm need virtualization: hvm");
	if (!pv && params_get(params, "kernel_id"))
		return af_error_set(err, 0, "kernel_id is for virtualization: paravirtual");
	if (params_bool(params, "tpm", false) && boot && strcmp(boot, "uefi"))
		return af_error_set(err, 0, "tpm needs boot_mode: uefi");
	int64_t eph = params_int(params, "ephemeral", 0);
	if (eph < 0 || eph > REG_MAX_EPHEMERAL)
		return af_error_set(err, 0, "ephemeral must be 0 to %d", REG_MAX_EPHEMERAL);
	if (reg_check_share(params_get(params, "share"), err) < 0)
		return -1;
	struct when_span span;
	const char *after = params_str(params, "expire_after", NULL);
	if (after && when_parse_span(after, &span, err) < 0)
		return af_error_wrap(err, "expire_after");
	return reg_check_regions(params, err);
}

/* "2024-05-01T12:00:00.000Z" -> seconds; 0 when unreadable. */
static time_t reg_parse_time(const char *s)
{
	struct tm tm = { 0 };
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return timegm(&tm);
}

static void reg_format_time(time_t t, char buf[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The last journaled AMI id of KIND in REGION among RESOURCES, or NULL. */
static const char *reg_journaled(const json_t *resources, const char *kind, const char *region)
{
	const char *found = NULL;
	size_t i;
	json_t *r;
	json_array_foreach(resources, i, r) {
		const char *k = json_string_value(json_object_get(r, "kind"));
		const char *reg = json_string_value(json_object_get(r, "region"));
		const char *id = json_string_value(json_object_get(r, "image_id"));
		if (k && reg && id && !strcmp(k, kind) && !strcmp(reg, region))
			found = id;
	}
	return found;
}

/* The copy's ClientToken: the same for every attempt of this stage (key)
 * into REGION, so that EC2 answers a repeated CopyImage with the same AMI. */
static void reg_copy_token(const char *key, const char *region, char out[37])
{
	_cleanup_free_ char *purpose = xasprintf("register copy_to %s", region);
	uuid_derive(key, purpose, out);
}

static const char *reg_default_boot_mode(const json_t *facts)
{
	const char *fw = json_string_value(json_object_get(facts, "bootloader.firmware"));
	if (!fw)
		return NULL;
	if (!strcmp(fw, "bios"))
		return "legacy-bios";
	if (!strcmp(fw, "uefi"))
		return "uefi";
	if (!strcmp(fw, "both"))
		return "uefi-preferred";
	return NULL;
}

static bool reg_is_pv(const json_t *params, const json_t *facts)
{
	const char *v = params_str(params, "virtualization", NULL);
	if (v)
		return !strcmp(v, "paravirtual");
	const char *bl = json_string_value(json_object_get(facts, "bootloader.type"));
	return bl && !strcmp(bl, "pvgrub");
}

/* ---- one run ---- */

struct reg {
	struct stage_ctx *ctx;
	const json_t *p;
	struct aws_session aws;
	const char *region;      /* where the AMI is registered: aws.region */
	const char *name;
	bool pv;
	const char *snapshot_id; /* EBS, or NULL */
	const char *location;    /* instance-store, or NULL */
	struct aws_tag *tags;    /* the recipe's, the key tag, the expiry tag once known */
	size_t n_tags;
	time_t expires;          /* 0: no expiry */
	char expires_text[32];   /* its tag value */
	uint64_t wait_timeout;
};

static void reg_release(struct reg *r)
{
	aws_session_close(&r->aws);
	free(r->tags);
}

static void reg_tags_init(struct reg *r)
{
	const json_t *map = params_get(r->p, "tags");
	r->tags = xcalloc(json_object_size(map) + 2, sizeof(*r->tags));
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)map, k, v)
		r->tags[r->n_tags++] = (struct aws_tag){ k, json_string_value(v) };
	r->tags[r->n_tags++] = (struct aws_tag){ REG_TAG_KEY, r->ctx->key };
}

static int reg_source(struct reg *r, struct af_error **err)
{
	const json_t *f = r->ctx->facts;
	r->snapshot_id = params_str(r->p, "snapshot_id", NULL);
	r->location = params_str(r->p, "image_location", NULL);
	if (r->snapshot_id || r->location)
		return 0;
	r->snapshot_id = json_string_value(json_object_get(f, "snapshot.id"));
	if (!r->snapshot_id)
		r->location = json_string_value(json_object_get(f, "bundle.manifest_location"));
	if (r->snapshot_id || r->location)
		return 0;
	return af_error_set(err, 0, "nothing to register: no snapshot (put a snapshot stage before register, or give "
				    "snapshot_id) and no uploaded bundle (bundle and upload stages, or image_location)");
}

static int reg_init(struct reg *r, struct stage_ctx *ctx, struct af_error **err)
{
	r->ctx = ctx;
	r->p = ctx->params;
	r->name = params_str(r->p, "name", ctx->recipe_name);
	if (!r->name || !reg_name_valid(r->name))
		return af_error_set(err, 0, "the AMI name '%s' (the recipe name) is not valid: 3-128 characters, letters, "
				    "digits, ( ) [ ] . / - ' @ _ and space; set name: in the register stage",
				    r->name ? r->name : "");
	r->pv = reg_is_pv(r->p, ctx->facts);
	/* check() saw only an explicit virtualization; a pvgrub bootloader
	 * makes it paravirtual too. */
	if (r->pv && (params_bool(r->p, "ena", false) || params_bool(r->p, "sriov", false) ||
		      params_get(r->p, "boot_mode") || params_bool(r->p, "tpm", false)))
		return af_error_set(err, 0, "ena, sriov, boot_mode and tpm need hvm, and this image boots with PV-GRUB "
				    "(paravirtual); drop them or set virtualization: hvm");
	r->wait_timeout = (uint64_t)params_int(r->p, "wait_timeout", 2 * 3600);
	if (reg_source(r, err) < 0)
		return -1;
	const char *want = params_str(r->p, "region", NULL);
	/* A snapshot or a bundle is registered where it is. */
	if (!want)
		want = json_string_value(json_object_get(ctx->facts, r->snapshot_id ? "snapshot.region"
										      : "bundle.bucket_region"));
	if (aws_session_open(&r->aws, want, ctx->deadline, err) < 0)
		return af_error_hint(err, "or set region: in the register stage");
	r->region = r->aws.region;
	reg_tags_init(r);
	return 0;
}

/* ---- finding, adopting, registering ---- */

static int reg_describe(const struct ec2_client *c, const char *id, struct ec2_image_list *out,
			struct af_error **err)
{
	const char *ids[] = { id };
	const struct ec2_image_query q = { .image_ids = ids, .n_image_ids = 1, .include_deprecated = true };
	return ec2_describe_images(c, &q, out, err);
}

static bool reg_has_key_tag(const struct ec2_image *img, const char *key)
{
	for (size_t i = 0; i < img->tags.n; i++)
		if (!strcmp(img->tags.v[i].key, REG_TAG_KEY) && img->tags.v[i].value &&
		    !strcmp(img->tags.v[i].value, key))
			return true;
	return false;
}

/* An image of our name in C's region: 1 and *id (caller frees) when it is
 * ours (key tag), 0 when there is none, -1 + err for someone else's. */
static int reg_find_by_name(struct reg *r, const struct ec2_client *c, char **id, struct af_error **err)
{
	const char *owners[] = { "self" };
	const char *names[] = { r->name };
	const struct ec2_filter f = { "name", names, 1 };
	const struct ec2_image_query q = { .owners = owners, .n_owners = 1, .filters = &f, .n_filters = 1,
					   .include_deprecated = true };
	struct ec2_image_list l = { 0 };
	if (ec2_describe_images(c, &q, &l, err) < 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < l.n && rc == 0; i++) {
		const struct ec2_image *img = &l.v[i];
		/* AWS filters take wildcards; only the exact name counts. */
		if (!img->name || strcmp(img->name, r->name))
			continue;
		if (reg_has_key_tag(img, r->ctx->key)) {
			*id = xstrdup(img->image_id);
			rc = 1;
		} else {
			rc = af_error_set(err, 0, "the AMI name '%s' is already used in %s by %s, which this build did "
					  "not make (no %s tag of this stage); set another name: or deregister %s",
					  r->name, c->region, img->image_id, REG_TAG_KEY, img->image_id);
		}
	}
	ec2_image_list_release(&l);
	return rc;
}

static int reg_journal(struct reg *r, const char *kind, const char *region, const char *id, struct af_error **err)
{
	_cleanup_json_ json_t *res = json_pack("{s:s, s:s, s:s, s:s}", "kind", kind, "region", region,
					       "image_id", id, "name", r->name);
	return stage_journal_resource(r->ctx, res, err);
}

/* The journaled AMI of KIND in C's region, if it still exists: 1 and *id,
 * else 0 (never journaled, or gone since: then made again). */
static int reg_reuse_journaled(struct reg *r, const struct ec2_client *c, const char *kind, char **id,
			       struct af_error **err)
{
	const char *old = reg_journaled(r->ctx->resources, kind, c->region);
	if (!old)
		return 0;
	struct ec2_image_list l = { 0 };
	struct af_error *e = NULL;
	if (reg_describe(c, old, &l, &e) < 0) {
		bool gone = strstr(af_error_msg(e), "InvalidAMIID.NotFound") != NULL;
		if (!gone) {
			*err = e;
			return -1;
		}
		af_error_free(e);
		log_warn("%s (journaled by an earlier attempt) no longer exists in %s; making it again", old, c->region);
		return 0;
	}
	bool usable = l.n == 1 && strcmp(l.v[0].state ?: "", "deregistered") != 0;
	ec2_image_list_release(&l);
	if (!usable)
		return 0;
	log_info("reusing %s in %s from the journal", old, c->region);
	*id = xstrdup(old);
	return 1;
}

/* The bdm: the root volume (EBS) and the ephemeral mappings.  Returns the
 * count; names point into NAMES (REG_MAX_EPHEMERAL slots). */
static size_t reg_bdm(const struct reg *r, struct ec2_block_device *bdm, char names[][2][16])
{
	size_t n = 0;
	const json_t *p = r->p;
	if (r->snapshot_id) {
		uint64_t size = (uint64_t)params_int(p, "volume_size", 0);
		bdm[n++] = (struct ec2_block_device){
			.device_name = params_str(p, "root_device", r->pv ? "/dev/sda1" : "/dev/xvda"),
			.snapshot_id = r->snapshot_id,
			.volume_type = params_str(p, "volume_type", "gp3"),
			.volume_size = (int64_t)((size + REG_GIB - 1) / REG_GIB),
			.iops = params_int(p, "iops", 0),
			.throughput = params_int(p, "throughput", 0),
			.delete_on_termination = params_bool(p, "delete_on_termination", true),
			.encrypted = -1,
		};
	}
	int64_t eph = params_int(p, "ephemeral", 0);
	for (int64_t i = 0; i < eph && i < REG_MAX_EPHEMERAL; i++) {
		snprintf(names[i][0], 16, "/dev/sd%c", (char)('b' + i));
		snprintf(names[i][1], 16, "ephemeral%" PRId64, i);
		bdm[n++] = (struct ec2_block_device){ .device_name = names[i][0], .virtual_name = names[i][1],
						      .delete_on_termination = -1, .encrypted = -1 };
	}
	return n;
}

/* PV-GRUB: the built-in table, else AWS's own image of that name. */
static int reg_pvgrub_kernel(struct reg *r, const struct ec2_client *c, char **aki, struct af_error **err)
{
	const char *arch = r->ctx->arch;
	if (strcmp(arch, "x86_64") != 0)
		return af_error_set(err, 0, "paravirtual needs arch x86_64 (there is no PV-GRUB for %s); "
				    "use virtualization: hvm", arch);
	const char *known = bundle_pvgrub_aki(c->region, arch);
	if (known) {
		*aki = xstrdup(known);
		return 0;
	}
	_cleanup_free_ char *name = xasprintf("pv-grub-hd0_1.05-%s.gz", arch);
	const char *owners[] = { "amazon" };
	const char *names[] = { name };
	const struct ec2_filter f = { "name", names, 1 };
	const struct ec2_image_query q = { .owners = owners, .n_owners = 1, .filters = &f, .n_filters = 1 };
	struct ec2_image_list l = { 0 };
	if (ec2_describe_images(c, &q, &l, err) < 0)
		return af_error_wrap(err, "looking up the PV-GRUB AKI in %s", c->region);
	const struct ec2_image *best = NULL;
	for (size_t i = 0; i < l.n; i++)
		if (!best || strcmp(l.v[i].creation_date ?: "", best->creation_date ?: "") > 0)
			best = &l.v[i];
	int rc = 0;
	if (best)
		*aki = xstrdup(best->image_id);
	else
		rc = af_error_set(err, 0, "no PV-GRUB AKI in %s: not in the built-in table and no Amazon image named '%s'; "
				  "give kernel_id", c->region, name);
	ec2_image_list_release(&l);
	return rc;
}

static int reg_register(struct reg *r, const struct ec2_client *c, char **id, struct af_error **err)
{
	struct ec2_block_device bdm[1 + REG_MAX_EPHEMERAL];
	char names[REG_MAX_EPHEMERAL][2][16];
	size_t n_bdm = reg_bdm(r, bdm, names);
	_cleanup_free_ char *aki = NULL;
	const char *kernel = params_str(r->p, "kernel_id", NULL);
	if (r->pv && !kernel) {
		if (reg_pvgrub_kernel(r, c, &aki, err) < 0)
			return -1;
		kernel = aki;
	}
	const char *imds = params_str(r->p, "imds", "v2.0");
	const struct ec2_register_image req = {
		.name = r->name,
		.description = params_str(r->p, "description", NULL),
		.architecture = r->ctx->arch,
		.image_location = r->location,
		.root_device_name = r->snapshot_id ? bdm[0].device_name : NULL,
		.virtualization_type = r->pv ? "paravirtual" : "hvm",
		.kernel_id = kernel,
		.sriov_net_support = !r->pv && params_bool(r->p, "sriov", false) ? "simple" : NULL,
		.boot_mode = r->pv ? NULL : params_str(r->p, "boot_mode", reg_default_boot_mode(r->ctx->facts)),
		.tpm_support = params_bool(r->p, "tpm", false) ? "v2.0" : NULL,
		.imds_support = !strcmp(imds, "v2.0") ? "v2.0" : NULL,
		.ena_support = r->pv ? -1 : params_bool(r->p, "ena", true),
		.bdm = bdm, .n_bdm = n_bdm,
		/* The key tag from the first moment: what makes a lost id findable. */
		.tags = r->tags, .n_tags = r->n_tags,
	};
	return ec2_register_image(c, &req, id, err);
}

/* The AMI in C's region: journaled, adopted, or registered (and journaled). */
static int reg_obtain(struct reg *r, const struct ec2_client *c, char **id, struct af_error **err)
{
	int found = reg_reuse_journaled(r, c, "ami", id, err);
	if (found != 0)
		return found < 0 ? -1 : 0;
	for (int attempt = 0;; attempt++) {
		found = reg_find_by_name(r, c, id, err);
		if (found < 0)
			return -1;
		if (found) {
			log_info("adopting %s (%s) in %s: an earlier attempt of this stage registered it", *id, r->name,
				 c->region);
			return reg_journal(r, "ami", c->region, *id, err);
		}
		struct af_error *e = NULL;
		if (reg_register(r, c, id, &e) == 0) {
			log_info("registered %s (%s) in %s", *id, r->name, c->region);
			return reg_journal(r, "ami", c->region, *id, err);
		}
		/* A retried RegisterImage whose first attempt did register: the
		 * name now exists, with our key tag; look once more. */
		if (attempt == 0 && strstr(af_error_msg(e), "InvalidAMIName.Duplicate")) {
			af_error_free(e);
			continue;
		}
		*err = e;
		return -1;
	}
}

/* ---- waiting, finishing, copying ---- */

static void reg_sleep(double secs)
{
	struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Polls until ID is available: 0 and *img filled (release it), or -1 + err
 * when it failed or the wait ran out (wait_timeout, the stage's deadline). */
static int reg_wait(struct reg *r, const struct ec2_client *c, const char *id, struct ec2_image_list *img,
		    struct af_error **err)
{
	double start = now_monotonic(), end = start + (double)r->wait_timeout, delay = 1;
	if (r->ctx->deadline > 0 && r->ctx->deadline - 5 < end)
		end = r->ctx->deadline - 5;
	for (bool said = false;; said = true) {
		struct ec2_image_list l = { 0 };
		struct af_error *e = NULL;
		const char *state = "not visible yet";
		if (reg_describe(c, id, &l, &e) < 0) {
			/* Eventual consistency: a new id may be unknown for a moment. */
			if (!strstr(af_error_msg(e), "InvalidAMIID.NotFound") || now_monotonic() - start > 120) {
				*err = e;
				return -1;
			}
			af_error_free(e);
		} else if (l.n == 1) {
			state = l.v[0].state ?: "?";
			if (!strcmp(state, "available")) {
				*img = l;
				return 0;
			}
			if (strcmp(state, "pending") != 0) {
				int rc = af_error_set(err, 0, "%s in %s is '%s'%s%s; deregister it and build again with --fresh",
						      id, c->region, state, l.v[0].state_reason ? ": " : "",
						      l.v[0].state_reason ?: "");
				ec2_image_list_release(&l);
				return rc;
			}
		}
		ec2_image_list_release(&l);
		double now = now_monotonic();
		if (now >= end)
			return af_error_set(err, 0, "%s in %s still %s after %.0f s (wait_timeout); build again later to "
					    "wait for the same AMI", id, c->region, state, now - start);
		if (!said)
			log_info("waiting for %s in %s to become available", id, c->region);
		reg_sleep(delay < end - now ? delay : end - now);
		delay = delay * 2 > 15 ? 15 : delay * 2;
	}
}

/* The expiry: expire_after from the source AMI's creation, so that a
 * resumed build computes the same time. */
static void reg_set_expiry(struct reg *r, const struct ec2_image *img)
{
	const char *after = params_str(r->p, "expire_after", NULL);
	struct when_span span;
	if (!after || r->expires || when_parse_span(after, &span, NULL) < 0)
		return; /* reg_check refused a span that does not parse */
	if (span.seconds <= 0 && span.months <= 0)
		return;
	time_t created = reg_parse_time(img->creation_date);
	r->expires = when_add(created ? created : time(NULL), &span);
	reg_format_time(r->expires, r->expires_text);
	r->tags[r->n_tags++] = (struct aws_tag){ REG_TAG_EXPIRES, r->expires_text };
}

static int reg_share(struct reg *r, const struct ec2_client *c, const char *id, struct af_error **err)
{
	const json_t *share = params_get(r->p, "share");
	if (json_array_size(share) == 0)
		return 0;
	static const char *const fields[] = {
		[REG_SHARE_ACCOUNT] = "UserId", [REG_SHARE_PUBLIC] = "Group",
		[REG_SHARE_ORG] = "OrganizationArn", [REG_SHARE_OU] = "OrganizationalUnitArn",
	};
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "ImageId", id);
	size_t i;
	json_t *v;
	json_array_foreach(share, i, v) {
		const char *s = json_string_value(v);
		enum reg_share_kind k = reg_share_kind(s);
		if (k == REG_SHARE_BAD)
			continue; /* refused by check() */
		ec2_params_addf(&p, k == REG_SHARE_PUBLIC ? "all" : s, "LaunchPermission.Add.%zu.%s", i + 1, fields[k]);
	}
	int rc = ec2_call(c, "ModifyImageAttribute", &p, NULL, err);
	ec2_params_release(&p);
	return rc < 0 ? af_error_wrap(err, "sharing %s", id) : 0;
}

/* Tags on the image and its snapshots, deprecation, launch permissions. */
static int reg_finish(struct reg *r, const struct ec2_client *c, const struct ec2_image *img, struct af_error **err)
{
	const char **ids = xcalloc(img->n_bdm + 1, sizeof(*ids));
	size_t n = 0;
	ids[n++] = img->image_id;
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id)
			ids[n++] = img->bdm[i].snapshot_id;
	int rc = ec2_create_tags(c, ids, n, r->tags, r->n_tags, err);
	free(ids);
	if (rc < 0)
		return af_error_wrap(err, "tagging %s", img->image_id);
	if (r->expires) {
		if (r->expires <= time(NULL) + 60)
			log_warn("%s: the expiry time has passed; no deprecation set", img->image_id);
		else if (ec2_enable_image_deprecation(c, img->image_id, r->expires, err) < 0)
			return af_error_wrap(err, "deprecation of %s", img->image_id);
	}
	return reg_share(r, c, img->image_id, err);
}

/* Starts (or finds again) the copy into C's region: *id. */
static int reg_copy_start(struct reg *r, const struct ec2_client *c, const char *src_region, const char *src_id,
			  char **id, struct af_error **err)
{
	int found = reg_reuse_journaled(r, c, "ami-copy", id, err);
	if (found != 0)
		return found < 0 ? -1 : 0;
	/* CopyImageTags carried the key tag: a lost copy id is found by name. */
	found = reg_find_by_name(r, c, id, err);
	if (found < 0)
		return -1;
	if (found) {
		log_info("adopting %s (%s) in %s: an earlier attempt of this stage copied it", *id, r->name, c->region);
		return reg_journal(r, "ami-copy", c->region, *id, err);
	}
	char token[37];
	reg_copy_token(r->ctx->key, c->region, token);
	const char *kms = json_string_value(json_object_get(params_get(r->p, "kms_keys"), c->region));
	const struct ec2_copy_image req = {
		.source_region = src_region, .source_image_id = src_id, .name = r->name,
		.description = params_str(r->p, "description", NULL), .client_token = token,
		.kms_key_id = kms, .encrypted = kms ? 1 : -1, .copy_image_tags = true,
	};
	if (ec2_copy_image(c, &req, id, err) < 0)
		return af_error_wrap(err, "copying %s to %s", src_id, c->region);
	log_info("copying %s to %s: %s", src_id, c->region, *id);
	return reg_journal(r, "ami-copy", c->region, *id, err);
}

/* ami.REGION and the snapshots behind that AMI (a copy has its own):
 * register.snapshots.REGION, comma-separated in block device order. */
static void reg_output(struct reg *r, const char *region, const struct ec2_image *img)
{
	_cleanup_free_ char *k = xasprintf("ami.%s", region);
	json_object_set_new(r->ctx->outputs, k, json_string(img->image_id));
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id)
			strbuf_addf(&sb, "%s%s", sb.len ? "," : "", img->bdm[i].snapshot_id);
	_cleanup_free_ char *snaps = strbuf_detach(&sb);
	_cleanup_free_ char *sk = xasprintf("register.snapshots.%s", region);
	if (*snaps)
		json_object_set_new(r->ctx->outputs, sk, json_string(snaps));
}

/* What every AMI got: the expiry (the amiforge:expires tag, and the
 * deprecation time unless it had passed) and the launch permissions, as
 * the recipe names them. */
static void reg_output_grants(struct reg *r)
{
	if (r->expires)
		json_object_set_new(r->ctx->outputs, "register.expires", json_string(r->expires_text));
	const json_t *share = params_get(r->p, "share");
	struct strbuf sb = STRBUF_INIT;
	size_t i;
	json_t *v;
	json_array_foreach(share, i, v)
		strbuf_addf(&sb, "%s%s", i ? "," : "", json_string_value(v));
	_cleanup_free_ char *shares = strbuf_detach(&sb);
	if (*shares)
		json_object_set_new(r->ctx->outputs, "register.shares", json_string(shares));
}

/* Wait for and finish one AMI in C's region. */
static int reg_complete(struct reg *r, const struct ec2_client *c, const char *id, struct af_error **err)
{
	struct ec2_image_list l = { 0 };
	if (reg_wait(r, c, id, &l, err) < 0)
		return -1;
	reg_set_expiry(r, &l.v[0]);
	int rc = reg_finish(r, c, &l.v[0], err);
	if (rc == 0)
		reg_output(r, c->region, &l.v[0]);
	ec2_image_list_release(&l);
	return rc;
}

static int reg_copies(struct reg *r, const char *src_id, struct af_error **err)
{
	const json_t *regions = params_get(r->p, "copy_to");
	size_t n = json_array_size(regions);
	if (n == 0)
		return 0;
	struct ec2_client *cs = xcalloc(n, sizeof(*cs));
	char **ids = xcalloc(n, sizeof(*ids));
	int rc = 0;
	/* Start every copy first: they proceed in parallel at AWS. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		ec2_client_init(&cs[i], json_string_value(json_array_get(regions, i)), r->aws.creds,
				&r->aws.opts);
		rc = reg_copy_start(r, &cs[i], r->region, src_id, &ids[i], err);
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = reg_complete(r, &cs[i], ids[i], err);
	for (size_t i = 0; i < n; i++) {
		if (cs[i].region)
			ec2_client_release(&cs[i]);
		free(ids[i]);
	}
	free(cs);
	free(ids);
	return rc;
}

static int reg_run_in(struct reg *r, struct af_error **err)
{
	struct ec2_client c;
	ec2_client_init(&c, r->region, r->aws.creds, &r->aws.opts);
	_cleanup_free_ char *id = NULL;
	int rc = reg_obtain(r, &c, &id, err);
	if (rc == 0)
		rc = reg_complete(r, &c, id, err);
	if (rc == 0) {
		json_object_set_new(r->ctx->outputs, "ami.id", json_string(id));
		json_object_set_new(r->ctx->outputs, "ami.name", json_string(r->name));
		rc = reg_copies(r, id, err);
	}
	if (rc == 0)
		reg_output_grants(r);
	ec2_client_release(&c);
	return rc;
}

static int reg_run(struct stage_ctx *ctx, struct af_error **err)
{
	struct reg r = { 0 };
	int rc = reg_init(&r, ctx, err);
	if (rc == 0)
		rc = reg_run_in(&r, err);
	reg_release(&r);
	return rc;
}

/* ---- at load time: combinations that cannot boot ---- */

/* The bundle stage whose manifest names a kernel (kernel_id other than
 * "none"), when the AMI comes from that bundle: a paravirtual kernel (AKI)
 * that an HVM AMI refuses.  NULL otherwise. */
static const struct fact_stage *reg_planned_aki(const json_t *params, const struct fact_plan *plan)
{
	if (params_get(params, "snapshot_id") || params_get(params, "image_location") ||
	    facts_plan_provider(plan, "snapshot.id"))
		return NULL;
	const struct fact_stage *b = facts_plan_provider(plan, "bundle.kernel_id");
	const char *k = b ? params_str(b->params, "kernel_id", NULL) : NULL;
	return k && strcmp(k, "none") ? b : NULL;
}

static int reg_plan_check(const json_t *params, const struct fact_plan *plan, struct af_error **err)
{
	const char *virt = params_str(params, "virtualization", NULL);
	const struct fact_stage *boot = facts_plan_provider(plan, "bootloader.type");
	const char *type = boot ? params_str(boot->params, "type", NULL) : NULL;
	if (virt && !strcmp(virt, "hvm")) {
		const struct fact_stage *bundle = reg_planned_aki(params, plan);
		if (bundle)
			return af_error_set(err, 0, "virtualization: hvm, but the bundle stage '%s' names kernel_id %s, "
						    "a paravirtual kernel; set kernel_id: none there, or virtualization: paravirtual",
					    bundle->id, params_str(bundle->params, "kernel_id", ""));
		if (type && !strcmp(type, "pvgrub"))
			return af_error_set(err, 0, "virtualization: hvm, but the bootloader stage '%s' writes menu.lst "
						    "for PV-GRUB (type: pvgrub), which HVM instances never read; use type: grub there, "
						    "or virtualization: paravirtual", boot->id);
	}
	if (virt && !strcmp(virt, "paravirtual") && type && !strcmp(type, "grub"))
		return af_error_set(err, 0, "virtualization: paravirtual boots PV-GRUB, which reads menu.lst, but the "
					    "bootloader stage '%s' installs GRUB 2 (type: grub); use type: pvgrub there, or "
					    "virtualization: hvm", boot->id);
	return 0;
}

/* For plan (stage.h): what reg_init and the copies will use, from the
 * parameters and what the earlier stages' parameters fix. */
static char *reg_plan_describe(const struct stage_describe *d)
{
	const json_t *p = d->params;
	const char *name = params_str(p, "name", d->recipe_name);
	bool pv = reg_is_pv(p, d->facts);
	const char *boot = pv ? NULL : params_str(p, "boot_mode", reg_default_boot_mode(d->facts));
	bool snap = params_get(p, "snapshot_id") ||
		    (!params_get(p, "image_location") && d->plan && facts_plan_provider(d->plan, "snapshot.id"));
	const char *given = params_str(p, "region", stage_describe_fact(d, snap ? "snapshot.region" : "bundle.bucket_region"));
	const char *after = params_str(p, "expire_after", NULL);
	struct strbuf sb = STRBUF_INIT;
	stage_describe_know(d, "ami.name", name);
	strbuf_addf(&sb, "register AMI '%s' (%s%s%s) from the %s in %s", name, pv ? "paravirtual" : "hvm",
		    boot ? ", " : "", boot ? boot : "", snap ? "snapshot" : "bundle", stage_describe_region(d, given));
	if (json_array_size(params_get(p, "copy_to"))) {
		strbuf_addstr(&sb, ", copy to ");
		stage_describe_list(&sb, params_get(p, "copy_to"), 8);
	}
	if (json_array_size(params_get(p, "share"))) {
		strbuf_addstr(&sb, ", share with ");
		stage_describe_list(&sb, params_get(p, "share"), 8);
	}
	if (json_object_size(params_get(p, "tags"))) {
		strbuf_addstr(&sb, ", ");
		stage_describe_count(&sb, json_object_size(params_get(p, "tags")), "tag");
	}
	if (after)
		strbuf_addf(&sb, ", expire after %s", after);
	return strbuf_detach(&sb);
}

static const struct fact_need register_needs[] = {
	{ "snapshot.id|bundle.manifest_location", "snapshot_id|image_location" }, { NULL, NULL }
};
static const char *const register_provides[] = { "ami.id", "ami.name", "ami.*", "register.snapshots.*",
						  "register.expires", "register.shares", NULL };

const struct stage_type stage_register = {
	.name = "register",
	.summary = "register the snapshot or bundle as an AMI; tags, expiry, sharing, copies to other regions",
	.params = reg_params,
	.flags = STAGE_REMOTE | STAGE_NETWORK,
	.needs = register_needs,
	.provides = register_provides,
	.default_timeout = 8 * 3600,
	.check = reg_check,
	.plan_check = reg_plan_check,
	.describe = reg_plan_describe,
	.run = reg_run,
};
