/* SPDX-License-Identifier: Apache-2.0 */
/* bundle: the image as an EC2 instance-store bundle (ec2-bundle-image's
 * format, reference/FORMATS.md §1) in STATE/bundle/: NAME.part.N files and
 * NAME.manifest.xml, ready for the upload stage and RegisterImage with
 * ImageLocation.  The work is in engine/image/bundle_create.c; this file picks the
 * certificates, the kernel and the name. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/aws/creds.h"
#include "amiforge/bundle_create.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

static const char *const bundle_x509_choices[] = { "generate", NULL };

static const struct param_spec bundle_params[] = {
	{ .name = "account", .type = PT_STRING, .flags = PARAM_REQUIRED,
	  .help = "the AWS account number (12 digits; hyphens are dropped)" },
	{ .name = "cert", .type = PT_PATH, .flags = PARAM_HOST_FILE,
	  .help = "your X.509 certificate (PEM); its key can unbundle the image" },
	{ .name = "key", .type = PT_PATH, .flags = PARAM_HOST_FILE,
	  .help = "the private key of cert (PEM, unencrypted; mode 0600); signs the manifest" },
	{ .name = "x509", .type = PT_ENUM, .choices = bundle_x509_choices,
	  .help = "generate: make a self-signed pair once in STATE/x509/ (cert.pem, key.pem) instead of cert/key" },
	{ .name = "ec2_cert", .type = PT_PATH, .flags = PARAM_HOST_FILE, .help = "the EC2 certificate (PEM)",
	  .defval = "the shipped one for the region (commercial, GovCloud or China)" },
	{ .name = "region", .type = PT_STRING, .help = "the region the bundle is for",
	  .defval = "AWS_REGION, AWS_DEFAULT_REGION or the profile's" },
	{ .name = "name", .type = PT_STRING, .help = "file and image name: NAME.part.N, NAME.manifest.xml",
	  .defval = "the recipe's name" },
	{ .name = "kernel_id", .type = PT_STRING, .help = "the AKI in the manifest; \"none\" for none",
	  .defval = "the PV-GRUB hd0 AKI for the region and architecture" },
	{ .name = "ramdisk_id", .type = PT_STRING, .help = "an ARI for the manifest" },
	{ .name = "block_device_mapping", .type = PT_MAP,
	  .help = "virtual name -> device, e.g. {ami: sda1, root: /dev/sda1, ephemeral0: sda2}" },
	{ .name = "compression", .type = PT_INT, .help = "gzip level 1..9", .defval = "6" },
	{ .name = NULL },
};

/* As ssh does for an identity file: a key others may read is everyone's
 * key to this image.  A warning, not an error: the owner may have reasons
 * (a CI runner's shared secret mount).  Given when the recipe loads, so
 * that validate, plan and build show it on the terminal; a stage's own
 * messages go to its log only. */
static void bundle_key_mode_check(const char *key)
{
	struct stat st;
	if (key && stat(key, &st) == 0 && (st.st_mode & 077))
		log_warn("bundle key '%s' is readable by group or others (mode %04o): anyone who can read it "
			 "can decrypt the bundle; chmod 600 '%s'", key, (unsigned)(st.st_mode & 07777), key);
}

static int bundle_check(const json_t *params, struct af_error **err)
{
	bool cert = params_get(params, "cert"), key = params_get(params, "key"), gen = params_get(params, "x509");
	bundle_key_mode_check(params_str(params, "key", NULL));
	if (gen && (cert || key))
		return af_error_set(err, 0, "bundle takes x509: generate or cert and key, not both");
	if (!gen && !(cert && key))
		return af_error_set(err, 0, "bundle needs cert and key (your X.509 pair), or x509: generate");
	const char *acct = params_str(params, "account", "");
	size_t digits = 0;
	for (const char *p = acct; *p; p++) {
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (*p != '-')
			return af_error_set(err, 0, "account '%s' is not an AWS account number (12 digits)", acct);
	}
	if (digits != 12)
		return af_error_set(err, 0, "account '%s' is not an AWS account number (12 digits)", acct);
	int64_t level = params_int(params, "compression", 6);
	if (level < 1 || level > 9)
		return af_error_set(err, 0, "compression %lld is not a gzip level: use 1..9", (long long)level);
	return 0;
}

static char *bundle_account(const char *acct)
{
	char *s = xstrdup(acct), *w = s;
	for (const char *p = acct; *p; p++)
		if (*p != '-')
			*w++ = *p;
	*w = '\0';
	return s;
}

/* The manifest's architecture, as ec2-bundle-image names it. */
static const char *bundle_arch(const char *arch)
{
	return !arch || !strcmp(arch, "x86_64") ? "x86_64" : arch;
}

static struct bundle_mapping *bundle_mappings(const json_t *map, size_t *n)
{
	*n = map ? json_object_size(map) : 0;
	struct bundle_mapping *m = xcalloc(*n + 1, sizeof(*m));
	const char *k;
	json_t *v;
	size_t i = 0;
	if (map)
		json_object_foreach((json_t *)map, k, v) m[i++] = (struct bundle_mapping){ k, json_string_value(v) };
	return m;
}

static char *bundle_region(const json_t *params)
{
	struct aws_creds_opts opts = { .no_imds = true };
	char *region = NULL;
	_cleanup_error_ struct af_error *e = NULL;
	if (aws_region_resolve(params_str(params, "region", NULL), &opts, &region, NULL, &e) < 0)
		return NULL;
	return region;
}

/* cert and key: the recipe's (read where they are: never copied into
 * STATE), or a generated pair in STATE/x509. */
static int bundle_pair(struct stage_ctx *ctx, char **cert, char **key, struct af_error **err)
{
	if (!params_get(ctx->params, "x509")) {
		*cert = xstrdup(params_str(ctx->params, "cert", ""));
		*key = xstrdup(params_str(ctx->params, "key", ""));
		return 0;
	}
	_cleanup_free_ char *dir = path_join(ctx->state_dir, "x509");
	bool created = false;
	if (bundle_x509_generate(dir, &created, err) < 0)
		return -1;
	*cert = path_join(dir, "cert.pem");
	*key = path_join(dir, "key.pem");
	_cleanup_free_ char *pem = read_file(*cert, NULL, NULL);
	log_info("%s bundle certificate %s (upload it to IAM as a signing certificate if AWS asks for it):\n%s",
		 created ? "generated" : "using the generated", *cert, pem ? pem : "");
	json_object_set_new(ctx->outputs, "bundle.x509_cert", json_string(*cert));
	return 0;
}

static char *bundle_name(const struct stage_ctx *ctx)
{
	const char *name = params_str(ctx->params, "name", NULL);
	if (name)
		return xstrdup(name);
	if (ctx->recipe_name && *ctx->recipe_name)
		return xstrdup(ctx->recipe_name);
	/* STATE defaults to .amiforge/<recipe file stem> (DESIGN §5). */
	_cleanup_free_ char *copy = xstrdup(ctx->state_dir);
	return xstrdup(basename(copy));
}

static void bundle_outputs(struct stage_ctx *ctx, const struct bundle_opts *o, const struct bundle_result *r,
			   const char *region)
{
	json_t *out = ctx->outputs;
	json_object_set_new(out, "bundle.dir", json_string(o->dir));
	json_object_set_new(out, "bundle.name", json_string(o->name));
	json_object_set_new(out, "bundle.manifest", json_string(r->manifest_path));
	json_object_set_new(out, "bundle.digest", json_string(r->digest));
	json_object_set_new(out, "bundle.parts", json_integer((json_int_t)r->n_parts));
	json_object_set_new(out, "bundle.size", json_integer((json_int_t)r->bundled_size));
	json_object_set_new(out, "bundle.arch", json_string(o->arch));
	if (o->kernel_id)
		json_object_set_new(out, "bundle.kernel_id", json_string(o->kernel_id));
	if (region)
		json_object_set_new(out, "bundle.region", json_string(region));
}

static const char *bundle_kernel(const struct stage_ctx *ctx, const char *region, const char *arch)
{
	const char *k = params_str(ctx->params, "kernel_id", NULL);
	if (k)
		return strcmp(k, "none") ? k : NULL;
	k = bundle_pvgrub_aki(region, arch);
	if (!k)
		log_warn("no PV-GRUB AKI known for region %s and %s: the manifest names no kernel (set kernel_id:)",
			 region ? region : "(none)", arch);
	return k;
}

/* STATE/bundle holds one bundle: files of an earlier name would be uploaded
 * with it. */
static void bundle_clear_dir(const char *dir)
{
	/* Never through a link planted as STATE/bundle. */
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_dir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (fd >= 0 && !d)
		close(fd);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_type == DT_REG)
			unlinkat(dirfd(d), e->d_name, 0);
}

static int bundle_run(struct stage_ctx *ctx, struct af_error **err)
{
	_cleanup_free_ char *region = bundle_region(ctx->params);
	_cleanup_free_ char *ec2_cert = NULL, *cert = NULL, *key = NULL;
	const char *given = params_str(ctx->params, "ec2_cert", NULL);
	ec2_cert = given ? xstrdup(given) : bundle_find_cert(bundle_ec2_cert_name(region), err);
	if (!ec2_cert || bundle_pair(ctx, &cert, &key, err) < 0)
		return -1;
	_cleanup_free_ char *account = bundle_account(params_str(ctx->params, "account", ""));
	_cleanup_free_ char *name = bundle_name(ctx);
	_cleanup_free_ char *dir = path_join(ctx->state_dir, "bundle");
	size_t n_map = 0;
	_cleanup_free_ struct bundle_mapping *maps = bundle_mappings(params_get(ctx->params, "block_device_mapping"), &n_map);
	const char *arch = bundle_arch(ctx->arch);
	struct bundle_opts o = {
		.image = ctx->image, .name = name, .dir = dir, .user_cert = cert, .user_key = key,
		.ec2_cert = ec2_cert, .account = account, .arch = arch,
		.kernel_id = bundle_kernel(ctx, region, arch), .ramdisk_id = params_str(ctx->params, "ramdisk_id", NULL),
		.mappings = maps, .n_mappings = n_map, .level = (int)params_int(ctx->params, "compression", 6),
		.deadline = ctx->deadline,
	};
	log_info("bundling %s as %s for region %s with %s", ctx->image, name, region ? region : "(unknown)", ec2_cert);
	bundle_clear_dir(dir);
	double t0 = now_monotonic();
	struct bundle_result r = { 0 };
	if (bundle_create(&o, &r, err) < 0)
		return af_error_wrap(err, "bundle '%s'", name);
	char a[32], b[32];
	log_info("bundle %s: %zu parts, %s (image %s) in %.1fs; manifest %s", name, r.n_parts,
		 format_size(r.bundled_size, a, sizeof(a)), format_size(r.size, b, sizeof(b)), now_monotonic() - t0,
		 r.manifest_path);
	bundle_outputs(ctx, &o, &r, region);
	bundle_result_release(&r);
	return 0;
}

/* For plan (stage.h).  The certificate's path is shown relative to the
 * recipe, as the recipe names it. */
static char *bundle_describe(const struct stage_describe *d)
{
	const char *name = params_str(d->params, "name", d->recipe_name);
	const char *given = params_str(d->params, "region", NULL);
	const char *cert = params_str(d->params, "cert", NULL);
	const char *kernel = params_str(d->params, "kernel_id", NULL);
	size_t dirlen = d->recipe_dir ? strlen(d->recipe_dir) : 0;
	if (cert && dirlen && !strncmp(cert, d->recipe_dir, dirlen) && cert[dirlen] == '/')
		cert += dirlen + 1;
	stage_describe_know(d, "bundle.name", name);
	stage_describe_know(d, "bundle.arch", bundle_arch(d->arch));
	stage_describe_know(d, "bundle.region", given ? given : d->region);
	if (kernel && strcmp(kernel, "none") != 0)
		stage_describe_know(d, "bundle.kernel_id", kernel);
	_cleanup_free_ char *signer = cert ? xasprintf("signed with %s", cert)
					   : xstrdup("signed with a self-signed certificate made once in STATE/x509/");
	return xasprintf("bundle the image for instance store as %s (%s) for %s, %s, kernel %s", name,
			 bundle_arch(d->arch), stage_describe_region(d, given), signer,
			 !kernel ? "the region's PV-GRUB AKI" : strcmp(kernel, "none") ? kernel : "none");
}

static const struct fact_need bundle_needs[] = { { "disk.path", NULL }, { NULL, NULL } };
static const char *const bundle_provides[] = { "bundle.dir", "bundle.name", "bundle.manifest", "bundle.digest", "bundle.parts", "bundle.size", "bundle.arch", "bundle.kernel_id", "bundle.region", "bundle.x509_cert", NULL };

const struct stage_type stage_bundle = {
	.name = "bundle",
	.summary = "an EC2 instance-store bundle (ec2-bundle-image format) of the image in STATE/bundle/",
	.params = bundle_params,
	.flags = STAGE_NEEDS_IMAGE,
	.needs = bundle_needs,
	.provides = bundle_provides,
	.check = bundle_check,
	.describe = bundle_describe,
	.run = bundle_run,
};
