/* SPDX-License-Identifier: Apache-2.0 */
/* STATE/manifest.json (build_manifest.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "amiforge/build_manifest.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/redact.h"
#include "amiforge/spawn.h"
#include "amiforge/util.h"

#include "version.h" /* generated: AMIFORGE_VERSION, AMIFORGE_GIT_DESC */

#define HASH_CHUNK (1u << 20)
#define GIT_SECONDS 10.0
#define GIT_OUTPUT_MAX 4096

/* ---- the image ------------------------------------------------------------- */

/* Adds LEN bytes of FD from OFF to MD (0, or -1 + err). */
static int hash_range(EVP_MD_CTX *md, int fd, const char *path, uint64_t off, uint64_t len,
		      unsigned char *buf, struct af_error **err)
{
	while (len) {
		ssize_t n = pread(fd, buf, len < HASH_CHUNK ? len : HASH_CHUNK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return af_error_set(err, errno, "cannot read '%s'", path);
		if (n == 0)
			return af_error_set(err, 0, "'%s' ended while being hashed (it shrank)", path);
		EVP_DigestUpdate(md, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* LEN zero bytes to MD: a hole reads as zeros. */
static void hash_zeros(EVP_MD_CTX *md, uint64_t len, const unsigned char *zeros)
{
	for (; len; len -= len < HASH_CHUNK ? len : HASH_CHUNK)
		EVP_DigestUpdate(md, zeros, len < HASH_CHUNK ? len : HASH_CHUNK);
}

/* SHA-256 of the SIZE bytes of FD, in hex.  A file's holes (SEEK_HOLE) are
 * hashed as the zeros they read as, without reading them: reading the
 * unwritten extents mke2fs leaves in an image (BLKZEROOUT through the
 * loop device) would put them in the page cache, after which ext4 reports
 * them as data, and the bundle's and GNU tar's sparse maps of the same
 * image would no longer agree.  A device is read whole. */
static int hash_fd(int fd, const char *path, uint64_t size, bool device, char hex[65],
		   struct af_error **err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md)
		BUG("out of memory");
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	_cleanup_free_ unsigned char *buf = xmalloc(HASH_CHUNK);
	_cleanup_free_ unsigned char *zeros = xcalloc(1, HASH_CHUNK);
	int r = 0;
	uint64_t off = 0;
	while (r == 0 && off < size) {
		off_t d = device ? (off_t)off : lseek(fd, (off_t)off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			d = (off_t)size; /* only a hole is left */
		off_t h = d < 0 || device || (uint64_t)d >= size ? (off_t)size : lseek(fd, d, SEEK_HOLE);
		if (d < 0 || h < 0) {
			r = af_error_set(err, errno, "cannot find the data in '%s'", path);
			break;
		}
		uint64_t data = (uint64_t)d < size ? (uint64_t)d : size;
		uint64_t end = (uint64_t)h < size ? (uint64_t)h : size;
		hash_zeros(md, data - off, zeros);
		r = hash_range(md, fd, path, data, end - data, buf, err);
		off = end;
	}
	unsigned char out[32];
	unsigned int outlen = 0;
	EVP_DigestFinal_ex(md, out, &outlen);
	EVP_MD_CTX_free(md);
	if (r == 0)
		hex_encode(out, sizeof(out), hex);
	return r;
}

struct image_facts {
	uint64_t size;      /* apparent bytes */
	uint64_t allocated; /* bytes on disk (a device: its size) */
	int64_t ctime_ns;   /* inode change time (a device: 0, it says nothing) */
};

static int image_stat(int fd, const char *path, bool device, struct image_facts *f, struct af_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s'", path);
	if (device) {
		uint64_t bytes = 0;
		if (ioctl(fd, BLKGETSIZE64, &bytes) < 0)
			return af_error_set(err, errno, "cannot read the size of '%s'", path);
		*f = (struct image_facts){ .size = bytes, .allocated = bytes };
		return 0;
	}
	*f = (struct image_facts){
		.size = (uint64_t)st.st_size, .allocated = (uint64_t)st.st_blocks * 512,
		.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec,
	};
	return 0;
}

/* The previous manifest's SHA-256 when it was taken of this very image:
 * the same final disk key, size and change time. */
static const char *reusable_hash(const json_t *prev, const char *disk_key, const struct image_facts *f)
{
	const json_t *img = json_object_get(prev, "image");
	const char *key = json_string_value(json_object_get(img, "disk_key"));
	const char *sha = json_string_value(json_object_get(img, "sha256"));
	if (!disk_key || !key || !sha || strcmp(key, disk_key) != 0 || strlen(sha) != 64)
		return NULL;
	if ((uint64_t)json_integer_value(json_object_get(img, "size")) != f->size ||
	    json_integer_value(json_object_get(img, "ctime_ns")) != f->ctime_ns)
		return NULL;
	return sha;
}

/* The manifest already in STATE, or NULL. */
static json_t *previous_manifest(const char *state)
{
	_cleanup_free_ char *path = path_join(state, "manifest.json");
	return json_load_file(path, 0, NULL);
}

/* {path, device, size, allocated, sha256, disk_key, ctime_ns}, or NULL when
 * there is no image (a recipe that only registers). */
static json_t *image_object(const struct build_manifest *m)
{
	_cleanup_error_ struct af_error *err = NULL;
	if (!m->image)
		return NULL;
	_cleanup_fd_ int fd = open(m->image, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("manifest: cannot open the image '%s': %s", m->image, strerror(errno));
		return NULL;
	}
	struct image_facts f = { 0 };
	if (image_stat(fd, m->image, m->image_is_device, &f, &err) < 0) {
		log_warn("manifest: %s", af_error_msg(err));
		return NULL;
	}
	json_t *o = json_pack("{s:s, s:b, s:I, s:I}", "path", m->image, "device", m->image_is_device,
			      "size", (json_int_t)f.size, "allocated", (json_int_t)f.allocated);
	/* After a failure the failing stage may have written to the image:
	 * no disk key names what it holds. */
	const char *disk_key = !strcmp(m->status, "ok") ? m->disk_key : NULL;
	_cleanup_json_ json_t *prev = previous_manifest(m->state);
	char hex[65];
	const char *sha = reusable_hash(prev, disk_key, &f);
	if (!sha && hash_fd(fd, m->image, f.size, m->image_is_device, hex, &err) == 0)
		sha = hex;
	if (sha)
		json_object_set_new(o, "sha256", json_string(sha));
	else
		log_warn("manifest: no SHA-256 of the image: %s", af_error_msg(err));
	if (sha && disk_key) {
		json_object_set_new(o, "disk_key", json_string(disk_key));
		json_object_set_new(o, "ctime_ns", json_integer(f.ctime_ns));
	}
	return o;
}

/* ---- the recipe and its repository ----------------------------------------- */

static json_t *recipe_object(const char *path)
{
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *abs = realpath(path, NULL);
	json_t *o = json_pack("{s:s}", "path", abs ? abs : path);
	char hex[65];
	if (sha256_path_hex(path, hex, &err) == 0)
		json_object_set_new(o, "sha256", json_string(hex));
	else
		log_warn("manifest: no SHA-256 of the recipe: %s", af_error_msg(err));
	return o;
}

/* git's first output line in DIR, or NULL when it fails or git is
 * missing.  safe.directory=*: we run as root over a tree someone else
 * may own, and only read. */
static char *git_line(const char *dir, const char *const *args, size_t n_args)
{
	_cleanup_fd_ int out = memfd_create("git-output", MFD_CLOEXEC);
	if (out < 0)
		return NULL;
	const char *argv[16] = { "git", "-c", "safe.directory=*", "-C", dir };
	size_t n = 5;
	for (size_t i = 0; i < n_args && n < ARRAY_SIZE(argv) - 1; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	const struct spawn_opts o = { .argv = (char *const *)argv, .out_fd = out, .in_fd = -1,
				      .deadline = now_monotonic() + GIT_SECONDS };
	struct af_error *err = NULL;
	int status = -1;
	int r = spawn_status(&o, &status, &err);
	af_error_free(err);
	if (r < 0 || status != 0)
		return NULL;
	char buf[GIT_OUTPUT_MAX];
	ssize_t got = pread_all(out, buf, sizeof(buf) - 1, 0);
	if (got < 0)
		return NULL;
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return xstrdup(buf);
}

/* {commit, dirty} of the work tree holding DIR, or NULL: no git, not a
 * repository, no commit yet.  Never an error: the build does not depend
 * on it. */
static json_t *git_object(const char *recipe_path)
{
	_cleanup_free_ char *abs = realpath(recipe_path, NULL);
	if (!abs)
		return NULL;
	char *slash = strrchr(abs, '/');
	if (slash)
		*(slash == abs ? slash + 1 : slash) = '\0';
	static const char *const head[] = { "rev-parse", "--verify", "-q", "HEAD^{commit}" };
	_cleanup_free_ char *commit = git_line(abs, head, ARRAY_SIZE(head));
	if (!commit || strlen(commit) < 40)
		return NULL;
	/* Tracked files only: an untracked scratch file does not change what
	 * the commit names. */
	static const char *const status[] = { "status", "--porcelain", "--untracked-files=no" };
	_cleanup_free_ char *changes = git_line(abs, status, ARRAY_SIZE(status));
	json_t *o = json_pack("{s:s}", "commit", commit);
	if (changes)
		json_object_set_new(o, "dirty", json_boolean(*changes != '\0'));
	return o;
}

/* ---- the AMI ------------------------------------------------------------------ */

/* "a,b" as ["a", "b"]. */
static json_t *split_list(const char *s)
{
	json_t *a = json_array();
	_cleanup_free_ char *copy = xstrdup(s);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(a, json_string(t));
	return a;
}

static json_t *ami_from_outputs(const json_t *o)
{
	const char *id = json_string_value(json_object_get(o, "ami.id"));
	json_t *ami = json_pack("{s:s}", "id", id);
	const char *name = json_string_value(json_object_get(o, "ami.name"));
	if (name)
		json_object_set_new(ami, "name", json_string(name));
	json_t *regions = json_object(), *snaps = json_object();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		if (!json_is_string(v))
			continue;
		if (str_has_prefix(k, "ami.") && strcmp(k, "ami.id") && strcmp(k, "ami.name")) {
			json_object_set(regions, k + 4, v);
			if (!strcmp(json_string_value(v), id) && !json_object_get(ami, "region"))
				json_object_set_new(ami, "region", json_string(k + 4));
		} else if (str_has_prefix(k, "register.snapshots.")) {
			json_object_set_new(snaps, k + strlen("register.snapshots."),
					    split_list(json_string_value(v)));
		}
	}
	json_object_set_new(ami, "regions", regions);
	json_object_set_new(ami, "snapshots", snaps);
	const char *expires = json_string_value(json_object_get(o, "register.expires"));
	if (expires)
		json_object_set_new(ami, "expires", json_string(expires));
	const char *shares = json_string_value(json_object_get(o, "register.shares"));
	json_object_set_new(ami, "shares", split_list(shares ? shares : ""));
	return ami;
}

json_t *build_manifest_ami(const json_t *stages)
{
	for (size_t i = json_array_size(stages); i-- > 0;) {
		const json_t *s = json_array_get(stages, i);
		const json_t *o = json_object_get(s, "outputs");
		if (json_is_string(json_object_get(o, "ami.id")) &&
		    !strcmp(json_string_value(json_object_get(s, "status")) ?: "", "done"))
			return ami_from_outputs(o);
	}
	return NULL;
}

/* ---- the manifest ---------------------------------------------------------------- */

static void set_if(json_t *o, const char *key, json_t *v)
{
	if (v)
		json_object_set_new(o, key, v);
}

json_t *build_manifest_json(const struct build_manifest *m)
{
	char stamp[32];
	struct tm tm;
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&m->finished, &tm));
	const struct build_manifest_timings *t = &m->timings;
	json_t *j = json_pack("{s:i, s:s}", "version", BUILD_MANIFEST_VERSION, "status", m->status);
	set_if(j, "failed_stage", m->failed_stage ? json_string(m->failed_stage) : NULL);
	set_if(j, "error", m->error ? json_string(m->error) : NULL);
	json_object_set_new(j, "amiforge_version", json_string(AMIFORGE_VERSION));
	set_if(j, "amiforge_git", *AMIFORGE_GIT_DESC ? json_string(AMIFORGE_GIT_DESC) : NULL);
	json_object_set_new(j, "name", json_string(m->name));
	json_object_set_new(j, "arch", json_string(m->arch));
	json_object_set_new(j, "recipe", recipe_object(m->recipe_path));
	set_if(j, "git", git_object(m->recipe_path));
	json_object_set_new(j, "state", json_string(m->state));
	set_if(j, "image", image_object(m));
	set_if(j, "ami", build_manifest_ami(m->stages));
	json_object_set_new(j, "stages", json_deep_copy(m->stages));
	json_object_set_new(j, "outputs", json_deep_copy(m->outputs));
	json_object_set_new(j, "timings",
			    json_pack("{s:f, s:f, s:I, s:I}", "total_seconds", t->total_seconds,
				      "checkpoint_seconds", t->checkpoint_seconds, "checkpoint_bytes_new",
				      (json_int_t)t->checkpoint_bytes_new, "engine_peak_rss_kib",
				      (json_int_t)t->engine_peak_rss_kib));
	json_object_set_new(j, "finished", json_string(stamp));
	redact_json(j);
	return j;
}

int build_manifest_write(const struct build_manifest *m, struct af_error **err)
{
	_cleanup_json_ json_t *j = build_manifest_json(m);
	_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	_cleanup_free_ char *path = path_join(m->state, "manifest.json");
	if (!text)
		BUG("json_dumps of the manifest failed");
	return write_file_atomic(path, text, strlen(text), 0600, err);
}
