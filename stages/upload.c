/* SPDX-License-Identifier: Apache-2.0 */
/* upload: an instance-store bundle (the bundle stage's NAME.part.N files and
 * NAME.manifest.xml) to S3 as ec2-upload-bundle does (FORMATS.md §1.7):
 * each part, then the manifest, PUT to BUCKET/PREFIX/FILE with x-amz-acl
 * (aws-exec-read by default) and Content-MD5, several at once over bounded
 * connections.  Every acknowledged object is journaled, so a resumed upload
 * sends only what is missing; the manifest goes last, so a manifest in S3
 * means its parts are there. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "amiforge/aws/awsxml.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/s3.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define UPLOAD_DEFAULT_PARALLEL 4
#define UPLOAD_MAX_PARALLEL 64

static const char *const upload_acls[] = { "aws-exec-read", "public-read", "private", NULL };

static const struct param_spec upload_params[] = {
	{ .name = "bucket", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "the S3 bucket" },
	{ .name = "prefix", .type = PT_STRING, .help = "key prefix: objects go to BUCKET/PREFIX/FILE",
	  .defval = "none" },
	{ .name = "location", .type = PT_STRING,
	  .help = "the bucket's region (also where create_bucket makes it)",
	  .defval = "AWS_REGION, AWS_DEFAULT_REGION, the profile's region" },
	{ .name = "create_bucket", .type = PT_BOOL, .help = "create the bucket if it does not exist",
	  .defval = "false" },
	{ .name = "acl", .type = PT_ENUM, .choices = upload_acls, .help = "canned ACL (x-amz-acl) of every object",
	  .defval = "aws-exec-read" },
	{ .name = "parallel", .type = PT_INT, .help = "objects sent at once (1-64)", .defval = "4" },
	{ .name = "manifest", .type = PT_PATH, .flags = PARAM_HOST_FILE,
	  .help = "a bundle's NAME.manifest.xml (its parts beside it) instead of the bundle stage's" },
	{ .name = NULL },
};

/* S3's bucket naming rules (3-63 characters of a-z, 0-9, '.', '-', starting
 * and ending with a letter or digit). */
static bool upload_bucket_valid(const char *b)
{
	size_t n = strlen(b);
	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '.' || c == '-'))
			return false;
		if ((i == 0 || i == n - 1) && !alnum)
			return false;
	}
	return strstr(b, "..") == NULL;
}

static int upload_check(const json_t *params, struct af_error **err)
{
	const char *bucket = params_str(params, "bucket", "");
	if (!upload_bucket_valid(bucket))
		return af_error_set(err, 0,
				    "upload: bucket '%s' is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')",
				    bucket);
	int64_t par = params_int(params, "parallel", UPLOAD_DEFAULT_PARALLEL);
	if (par < 1 || par > UPLOAD_MAX_PARALLEL)
		return af_error_set(err, 0, "upload: parallel must be 1 to %d, not %lld", UPLOAD_MAX_PARALLEL,
				    (long long)par);
	const char *prefix = params_str(params, "prefix", "");
	if (strstr(prefix, "//") || strstr(prefix, "/../") || !strcmp(prefix, "..") ||
	    str_has_prefix(prefix, "../"))
		return af_error_set(err, 0, "upload: prefix '%s' has an empty or '..' component", prefix);
	return 0;
}

/* PREFIX with its leading and trailing slashes dropped ("" for none). */
static char *upload_norm_prefix(const char *prefix)
{
	const char *s = prefix ? prefix : "";
	while (*s == '/')
		s++;
	size_t n = strlen(s);
	while (n && s[n - 1] == '/')
		n--;
	return xstrndup(s, n);
}

/* The object key of FILE under the normalised PREFIX. */
static char *upload_object_key(const char *prefix, const char *file)
{
	return *prefix ? xasprintf("%s/%s", prefix, file) : xstrdup(file);
}

/* ---- the manifest --------------------------------------------------------- */

struct upload_part {
	char *file;    /* NAME.part.N, from the manifest */
	char *sha1;    /* the manifest's digest, lowercase hex */
};

struct upload_bundle {
	char *name;              /* image/name */
	struct upload_part *parts;
	size_t n_parts;
};

static void upload_bundle_release(struct upload_bundle *b)
{
	for (size_t i = 0; i < b->n_parts; i++) {
		free(b->parts[i].file);
		free(b->parts[i].sha1);
	}
	free(b->parts);
	free(b->name);
	memset(b, 0, sizeof(*b));
}

/* A part file name must stay a plain name: it becomes a path beside the
 * manifest and an S3 key. */
static bool upload_plain_name(const char *s)
{
	return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Reads the part list from a 2007-10-10 manifest (image/parts/part, in index
 * order).  0 and *out filled, or -1 + err naming WHAT (the manifest path). */
static int upload_parse_manifest(const char *text, size_t len, const char *what,
				 struct upload_bundle *out, struct af_error **err)
{
	_cleanup_error_ struct af_error *xe = NULL;
	_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(text, len, what, &xe);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root || strcmp((const char *)root->name, "manifest") != 0)
		return af_error_set(err, 0, "bundle manifest '%s' is not a <manifest> document%s%s", what,
				    xe ? ": " : "", xe ? af_error_msg(xe) : "");
	xmlNode *image = awsxml_child(root, "image");
	xmlNode *parts = image ? awsxml_child(image, "parts") : NULL;
	struct upload_bundle b = { .name = image ? awsxml_text(image, "name") : NULL };
	if (!parts || !upload_plain_name(b.name)) {
		upload_bundle_release(&b);
		return af_error_set(err, 0, "bundle manifest '%s' has no image name or no parts", what);
	}
	for (xmlNode *p = awsxml_child(parts, "part"); p; p = awsxml_next(p, "part")) {
		_cleanup_free_ char *idx = (char *)xmlGetProp(p, (const xmlChar *)"index");
		char *file = awsxml_text(p, "filename");
		char *sha1 = awsxml_text(p, "digest");
		bool in_order = idx && strtoull(idx, NULL, 10) == b.n_parts;
		if (!upload_plain_name(file) || !sha1 || strlen(sha1) != 40 || !in_order) {
			free(file);
			free(sha1);
			upload_bundle_release(&b);
			return af_error_set(err, 0,
					    "bundle manifest '%s': part %zu has a bad index, file name or digest",
					    what, b.n_parts);
		}
		for (char *c = sha1; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
		b.parts = xreallocarray(b.parts, b.n_parts + 1, sizeof(*b.parts));
		b.parts[b.n_parts++] = (struct upload_part){ .file = file, .sha1 = sha1 };
	}
	if (b.n_parts == 0) {
		upload_bundle_release(&b);
		return af_error_set(err, 0, "bundle manifest '%s' lists no parts", what);
	}
	*out = b;
	return 0;
}

/* ---- the journal ------------------------------------------------------------ */

/* Objects earlier attempts had acknowledged: {KEY: {"size":N,"md5":HEX}} for
 * BUCKET, from ctx->resources ({"type":"s3_object",...}; later wins). */
static json_t *upload_done_objects(const json_t *resources, const char *bucket)
{
	json_t *done = json_object();
	size_t i;
	json_t *r;
	json_array_foreach((json_t *)resources, i, r) {
		const char *type = json_string_value(json_object_get(r, "type"));
		const char *b = json_string_value(json_object_get(r, "bucket"));
		const char *k = json_string_value(json_object_get(r, "key"));
		if (!type || strcmp(type, "s3_object") != 0 || !b || strcmp(b, bucket) != 0 || !k)
			continue;
		json_object_set_new(done, k, json_pack("{s:O?, s:O?}", "size", json_object_get(r, "size"),
						       "md5", json_object_get(r, "md5")));
	}
	return done;
}

/* True when DONE has KEY with this size and MD5: the same bytes are in S3. */
static bool upload_is_done(const json_t *done, const char *key, int64_t size, const char *md5_hex)
{
	const json_t *o = json_object_get(done, key);
	const char *m = json_string_value(json_object_get(o, "md5"));
	return o && json_integer_value(json_object_get(o, "size")) == size && m && !strcmp(m, md5_hex);
}

static bool upload_bucket_journaled(const json_t *resources, const char *bucket)
{
	size_t i;
	json_t *r;
	json_array_foreach((json_t *)resources, i, r) {
		const char *type = json_string_value(json_object_get(r, "type"));
		const char *b = json_string_value(json_object_get(r, "bucket"));
		if (type && !strcmp(type, "s3_bucket") && b && !strcmp(b, bucket))
			return true;
	}
	return false;
}

/* ---- one object ------------------------------------------------------------- */

struct upload_obj {
	char *path;           /* local file */
	char *key;            /* S3 key */
	const char *sha1;     /* expected (manifest), or NULL */
	void *map;            /* the file, mapped while it is in flight */
	size_t size;
	char md5_b64[25];
	char md5_hex[33];
	char sha256[65];
};

static void upload_obj_unmap(struct upload_obj *o)
{
	if (o->map && o->size)
		munmap(o->map, o->size);
	o->map = NULL;
}

/* Maps the file and computes its MD5 (hex and base64), SHA-256 (the signed
 * payload hash, once rather than per attempt) and, when the manifest gives
 * one, checks its SHA-1: a part that changed since the bundle was made must
 * not reach S3. */
static int upload_obj_load(struct upload_obj *o, struct af_error **err)
{
	_cleanup_fd_ int fd = open(o->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return af_error_set(err, errno, "upload: open '%s' (re-run the bundle stage)", o->path);
	o->size = (size_t)st.st_size;
	static char empty[1];
	o->map = o->size ? mmap(NULL, o->size, PROT_READ, MAP_PRIVATE, fd, 0) : empty;
	if (o->map == MAP_FAILED) {
		o->map = NULL;
		return af_error_set(err, errno, "upload: map '%s'", o->path);
	}
	unsigned char md5[EVP_MAX_MD_SIZE], sha1[EVP_MAX_MD_SIZE];
	unsigned int n5 = 0, n1 = 0;
	if (EVP_Digest(o->map, o->size, md5, &n5, EVP_md5(), NULL) != 1 ||
	    EVP_Digest(o->map, o->size, sha1, &n1, EVP_sha1(), NULL) != 1)
		BUG("openssl: digest failed");
	EVP_EncodeBlock((unsigned char *)o->md5_b64, md5, 16);
	hex_encode(md5, 16, o->md5_hex);
	if (o->sha1) {
		char hex[41];
		hex_encode(sha1, 20, hex);
		if (strcmp(hex, o->sha1) != 0) {
			upload_obj_unmap(o);
			return af_error_set(err, 0,
					    "upload: '%s' does not match its manifest digest (SHA-1 %s, manifest says %s): "
					    "the bundle changed or is damaged; re-run the bundle stage",
					    o->path, hex, o->sha1);
		}
	}
	sigv4_sha256_hex(o->map, o->size, o->sha256);
	return 0;
}

/* ---- the upload ------------------------------------------------------------- */

struct upload_run {
	struct stage_ctx *ctx;
	const struct s3_client *s3;
	struct aws_signer sign;
	const char *bucket, *acl;
	struct upload_obj *objs;  /* the parts */
	size_t n_objs, next;
	const json_t *done;       /* journaled before this attempt */
	size_t sent, skipped;
	uint64_t bytes_sent, bytes_skipped, bytes_total;
	double t0;
};

struct upload_item {
	struct http_batch_item item;
	struct upload_obj *obj;
	char *url, *action;
	struct sigv4_header h[3];
};

static int upload_journal_object(struct stage_ctx *ctx, const char *bucket, const struct upload_obj *o,
				 const char *etag, struct af_error **err)
{
	_cleanup_json_ json_t *r = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s?}", "type", "s3_object",
					     "bucket", bucket, "key", o->key, "size", (json_int_t)o->size,
					     "md5", o->md5_hex, "etag", etag);
	return stage_journal_resource(ctx, r, err);
}

static int upload_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct upload_run *u = data;
	while (u->next < u->n_objs) {
		struct upload_obj *o = &u->objs[u->next++];
		if (upload_obj_load(o, err) < 0)
			return -1;
		if (upload_is_done(u->done, o->key, (int64_t)o->size, o->md5_hex)) {
			upload_obj_unmap(o);
			u->skipped++;
			u->bytes_skipped += o->size;
			continue;
		}
		struct upload_item *it = xcalloc(1, sizeof(*it));
		it->obj = o;
		it->url = s3_url(u->s3, u->bucket, o->key, NULL);
		it->action = xasprintf("s3 PutObject %s/%s", u->bucket, o->key);
		it->h[0] = (struct sigv4_header){ "Content-MD5", o->md5_b64 };
		it->h[1] = (struct sigv4_header){ "x-amz-acl", u->acl };
		it->h[2] = (struct sigv4_header){ "Content-Type", "application/octet-stream" };
		it->item.req = (struct http_request){
			.action = it->action, .method = "PUT", .url = it->url, .headers = it->h,
			.n_headers = ARRAY_SIZE(it->h), .body = o->map, .body_len = o->size,
			.payload_hash = o->sha256, .opts = u->s3->opts,
		};
		aws_request_bind(&it->item.req, &u->sign);
		it->item.user = it;
		*item = &it->item;
		return 1;
	}
	return 0;
}

static void upload_progress(struct upload_run *u)
{
	double secs = now_monotonic() - u->t0;
	double rate = secs > 0 ? (double)u->bytes_sent / secs : 0;
	uint64_t done = u->bytes_sent + u->bytes_skipped;
	uint64_t left = u->bytes_total > done ? u->bytes_total - done : 0;
	char a[32], b[32], r[32];
	log_info("upload: %zu of %zu parts in S3 (%s of %s, %s/s, about %.0f s left)", u->sent + u->skipped,
		 u->n_objs, format_size(done, a, sizeof(a)),
		 format_size(u->bytes_total, b, sizeof(b)), format_size((uint64_t)rate, r, sizeof(r)),
		 rate > 0 ? (double)left / rate : 0.0);
}

static int upload_done_cb(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct upload_run *u = data;
	struct upload_item *it = item->user;
	struct upload_obj *o = it->obj;
	int r = 0;
	if (!item->err) {
		const char *etag = http_response_header(&item->resp, "ETag");
		_cleanup_free_ char *bare = etag ? xstrndup(etag + (*etag == '"'), strcspn(etag + (*etag == '"'), "\"")) : NULL;
		r = upload_journal_object(u->ctx, u->bucket, o, bare, err);
		u->sent++;
		u->bytes_sent += o->size;
		upload_progress(u);
	}
	upload_obj_unmap(o);
	http_response_release(&item->resp);
	af_error_free(item->err);
	free(it->url);
	free(it->action);
	free(it);
	return r;
}

/* Sends every part not yet in S3, at most PARALLEL at once. */
static int upload_parts(struct upload_run *u, int parallel, struct af_error **err)
{
	for (size_t i = 0; i < u->n_objs; i++) {
		struct stat st;
		if (stat(u->objs[i].path, &st) < 0)
			return af_error_set(err, errno, "upload: bundle part '%s' (re-run the bundle stage)",
					    u->objs[i].path);
		u->bytes_total += (uint64_t)st.st_size;
	}
	const struct http_batch batch = {
		.max_parallel = parallel, .next = upload_next, .done = upload_done_cb, .data = u,
	};
	int r = http_batch_run(&batch, err);
	if (r < 0 && strstr(af_error_msg(*err), "NoSuchBucket"))
		af_error_hint(err, "create bucket '%s' in %s, or set create_bucket: true", u->bucket, u->s3->region);
	for (size_t i = 0; i < u->n_objs; i++)
		upload_obj_unmap(&u->objs[i]);
	return r;
}

/* The manifest last: once it is in S3, every part it names is too. */
static int upload_manifest(struct upload_run *u, struct upload_obj *m, struct af_error **err)
{
	if (upload_obj_load(m, err) < 0)
		return -1;
	int r = 0;
	if (upload_is_done(u->done, m->key, (int64_t)m->size, m->md5_hex)) {
		log_info("upload: manifest %s/%s already uploaded", u->bucket, m->key);
	} else {
		_cleanup_free_ char *etag = NULL;
		r = s3_put_object(u->s3, u->bucket, m->key, m->map, m->size, u->acl, "text/xml", &etag, err);
		if (r == 0)
			r = upload_journal_object(u->ctx, u->bucket, m, etag, err);
	}
	upload_obj_unmap(m);
	return r;
}

static int upload_bucket(struct stage_ctx *ctx, const struct s3_client *s3, const char *bucket,
			 struct af_error **err)
{
	if (!params_bool(ctx->params, "create_bucket", false) ||
	    upload_bucket_journaled(ctx->resources, bucket))
		return 0;
	if (s3_create_bucket(s3, bucket, err) < 0)
		return af_error_hint(err, "or create bucket '%s' in %s yourself and drop create_bucket", bucket,
				     s3->region);
	_cleanup_json_ json_t *r = json_pack("{s:s, s:s, s:s}", "type", "s3_bucket", "bucket", bucket,
					     "region", s3->region);
	log_info("upload: bucket %s ready in %s", bucket, s3->region);
	return stage_journal_resource(ctx, r, err);
}

/* The manifest to upload: the parameter, else the bundle stage's fact. */
static const char *upload_manifest_path(const struct stage_ctx *ctx, struct af_error **err)
{
	const char *m = params_str(ctx->params, "manifest", NULL);
	if (!m)
		m = json_string_value(json_object_get(ctx->facts, "bundle.manifest"));
	if (!m)
		af_error_set(err, 0,
			     "upload: no bundle to upload: put a bundle stage before upload, or give manifest");
	return m;
}

static void upload_objs_release(struct upload_obj *objs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		upload_obj_unmap(&objs[i]);
		free(objs[i].path);
		free(objs[i].key);
	}
	free(objs);
}

static void upload_outputs(struct stage_ctx *ctx, const char *bucket, const char *prefix,
			   const char *region, const char *manifest_key)
{
	json_object_set_new(ctx->outputs, "bundle.bucket", json_string(bucket));
	json_object_set_new(ctx->outputs, "bundle.prefix", json_string(prefix));
	json_object_set_new(ctx->outputs, "bundle.bucket_region", json_string(region));
	json_object_set_new(ctx->outputs, "bundle.manifest_location",
			    json_sprintf("%s/%s", bucket, manifest_key));
}

static int upload_go(struct stage_ctx *ctx, const char *manifest, const struct upload_bundle *b,
		     const struct s3_client *s3, struct af_error **err)
{
	const char *bucket = params_str(ctx->params, "bucket", "");
	_cleanup_free_ char *prefix = upload_norm_prefix(params_str(ctx->params, "prefix", ""));
	_cleanup_free_ char *dir = xstrndup(manifest, (size_t)(strrchr(manifest, '/') - manifest));
	const char *mfile = strrchr(manifest, '/') + 1;
	_cleanup_json_ json_t *done = upload_done_objects(ctx->resources, bucket);
	struct upload_run u = {
		.ctx = ctx, .s3 = s3, .bucket = bucket, .done = done, .t0 = now_monotonic(),
		.acl = params_str(ctx->params, "acl", "aws-exec-read"), .n_objs = b->n_parts,
		.sign = { .creds = s3->creds, .region = s3->region, .service = "s3", .sigv4_flags = SIGV4_S3 },
	};
	u.objs = xcalloc(b->n_parts + 1, sizeof(*u.objs));
	for (size_t i = 0; i < b->n_parts; i++) {
		u.objs[i].path = path_join(dir, b->parts[i].file);
		u.objs[i].key = upload_object_key(prefix, b->parts[i].file);
		u.objs[i].sha1 = b->parts[i].sha1;
	}
	struct upload_obj *m = &u.objs[b->n_parts];
	m->path = xstrdup(manifest);
	m->key = upload_object_key(prefix, mfile);
	log_info("upload: %zu parts of %s and its manifest to s3://%s/%s (%s, acl %s, %lld at once)",
		 b->n_parts, b->name, bucket, prefix, s3->region, u.acl,
		 (long long)params_int(ctx->params, "parallel", UPLOAD_DEFAULT_PARALLEL));
	int r = upload_bucket(ctx, s3, bucket, err);
	if (r == 0)
		r = upload_parts(&u, (int)params_int(ctx->params, "parallel", UPLOAD_DEFAULT_PARALLEL), err);
	if (r == 0 && u.skipped)
		log_info("upload: %zu parts were already in S3 (journaled by an earlier attempt)", u.skipped);
	if (r == 0)
		r = upload_manifest(&u, m, err);
	if (r == 0)
		upload_outputs(ctx, bucket, prefix, s3->region, m->key);
	upload_objs_release(u.objs, b->n_parts + 1);
	return r;
}

static int upload_run_stage(struct stage_ctx *ctx, struct af_error **err)
{
	const char *manifest = upload_manifest_path(ctx, err);
	if (!manifest)
		return -1;
	if (!strchr(manifest, '/'))
		return af_error_set(err, 0, "upload: manifest path '%s' is not absolute", manifest);
	size_t len = 0;
	_cleanup_free_ char *text = read_file(manifest, &len, err);
	if (!text)
		return af_error_wrap(err, "upload: read the bundle manifest (re-run the bundle stage)");
	struct upload_bundle b = { 0 };
	if (upload_parse_manifest(text, len, manifest, &b, err) < 0)
		return -1;
	struct aws_session aws;
	const char *location = params_str(ctx->params, "location", NULL);
	if (aws_session_open(&aws, location, ctx->deadline, err) < 0) {
		upload_bundle_release(&b);
		return af_error_hint(err, "or give the bucket's region as location");
	}
	const char *region = aws.region;
	/* EC2 registers a bundle only from a bucket in the AMI's region. */
	const char *bregion = json_string_value(json_object_get(ctx->facts, "bundle.region"));
	if (bregion && strcmp(bregion, region) != 0)
		log_warn("upload: the bundle was made for %s but bucket '%s' is in %s: "
			 "RegisterImage needs the bucket in the AMI's region",
			 bregion, params_str(ctx->params, "bucket", ""), region);
	struct s3_client s3;
	s3_client_init(&s3, region, aws.creds, &aws.opts);
	int r = upload_go(ctx, manifest, &b, &s3, err);
	s3_client_release(&s3);
	aws_session_close(&aws);
	upload_bundle_release(&b);
	return r;
}

/* For plan (stage.h). */
static char *upload_describe(const struct stage_describe *d)
{
	const char *bucket = params_str(d->params, "bucket", "");
	const char *given = params_str(d->params, "location", NULL);
	const char *manifest = params_str(d->params, "manifest", NULL);
	_cleanup_free_ char *prefix = upload_norm_prefix(params_str(d->params, "prefix", ""));
	stage_describe_know(d, "bundle.bucket", bucket);
	stage_describe_know(d, "bundle.prefix", prefix);
	stage_describe_know(d, "bundle.bucket_region", given ? given : d->region);
	_cleanup_free_ char *what = manifest ? xasprintf("the bundle of %s", strrchr(manifest, '/') ? strrchr(manifest, '/') + 1 : manifest)
					     : xstrdup("the bundle");
	/* As upload_run_stage warns: the bucket must be in the AMI's region. */
	const char *region = given ? given : d->region, *bregion = stage_describe_fact(d, "bundle.region");
	_cleanup_free_ char *clash = region && bregion && strcmp(region, bregion)
					     ? xasprintf(" (but the bundle is for %s: register needs the bucket there)", bregion)
					     : xstrdup("");
	return xasprintf("upload %s to s3://%s/%s%s in %s%s%s", what, bucket, prefix, *prefix ? "/" : "",
			 stage_describe_region(d, given),
			 params_bool(d->params, "create_bucket", false) ? ", creating the bucket if it does not exist" : "",
			 clash);
}

static const struct fact_need upload_needs[] = { { "bundle.manifest", "manifest" }, { NULL, NULL } };
static const char *const upload_provides[] = { "bundle.bucket", "bundle.bucket_region", "bundle.prefix", "bundle.manifest_location", NULL };

const struct stage_type stage_upload = {
	.name = "upload",
	.summary = "upload an instance-store bundle (parts, then manifest) to S3, resumably",
	.params = upload_params,
	.flags = STAGE_NETWORK | STAGE_REMOTE,
	.needs = upload_needs,
	.provides = upload_provides,
	.default_timeout = 4 * 3600,
	.check = upload_check,
	.describe = upload_describe,
	.run = upload_run_stage,
};
