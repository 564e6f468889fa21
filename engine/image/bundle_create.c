/* SPDX-License-Identifier: Apache-2.0 */
/* Making an instance-store bundle (reference/FORMATS.md §1.1):
 *
 *   image extents (SEEK_DATA/SEEK_HOLE) -> old-GNU sparse tar stream
 *     -> SHA-1 (the manifest's image digest)
 *     -> gzip: fixed-size chunks deflated in parallel, each primed with the
 *        previous chunk's last 32 KiB (as pigz does), every chunk but the
 *        last ended with a sync flush, so the raw deflate pieces join into
 *        one valid member; CRC-32 combined with crc32_combine()
 *     -> AES-128-CBC (PKCS#7 padding, as `openssl enc` with -K/-iv)
 *     -> 10 MiB parts, each hashed with SHA-1.
 *
 * The main thread reads, hashes, encrypts and writes in order; only deflate
 * runs on the worker threads, which is where the time goes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <zlib.h>

#include "amiforge/bundle_create.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

#define BZ_CHUNK (1u << 20)
#define BZ_DICT 32768
#define BZ_RECORD 10240  /* GNU tar's default record: 20 blocks */

void bundle_result_release(struct bundle_result *r)
{
	free(r->manifest_path);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

/* ---- the tar stream as a list of segments ---- */

enum bz_seg_kind { SEG_MEM, SEG_FILE, SEG_ZERO };
struct bz_seg {
	enum bz_seg_kind kind;
	uint64_t off, len;  /* SEG_FILE: image offset; SEG_MEM: offset into hdr */
};

struct bz_tar {
	int fd;
	uint64_t realsize, stored, total;
	uint64_t (*map)[2];
	size_t n_map;
	unsigned char *hdr;
	struct bz_seg *segs;
	size_t n_segs;
	size_t cur;       /* reading position: segment and offset in it */
	uint64_t cur_off;
};

static void bz_tar_release(struct bz_tar *t)
{
	free(t->map);
	free(t->hdr);
	free(t->segs);
}

static void bz_map_add(struct bz_tar *t, uint64_t off, uint64_t len)
{
	t->map = xreallocarray(t->map, t->n_map + 1, sizeof(*t->map));
	t->map[t->n_map][0] = off;
	t->map[t->n_map][1] = len;
	t->n_map++;
	t->stored += len;
}

/* The data extents, as GNU tar 1.34's sparse_scan_file_seek finds them; it
 * always ends the map with an empty entry at the end of the file.  A file
 * without holes (ST_IS_SPARSE false) or a device is one plain extent and
 * becomes a regular member (bz_tar_open). */
static int bz_scan(struct bz_tar *t, const char *image, bool sparse, struct af_error **err)
{
	if (!sparse) {
		bz_map_add(t, 0, t->realsize);
		return 0;
	}
	uint64_t off = 0;
	while (off < t->realsize) {
		off_t d = lseek(t->fd, (off_t)off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0)
			return af_error_set(err, errno, "find data in image '%s'", image);
		off_t h = lseek(t->fd, d, SEEK_HOLE);
		if (h < 0)
			return af_error_set(err, errno, "find holes in image '%s'", image);
		bz_map_add(t, (uint64_t)d, (uint64_t)(h - d));
		off = (uint64_t)h;
	}
	bz_map_add(t, t->realsize, 0);
	return 0;
}

static void bz_seg_add(struct bz_tar *t, enum bz_seg_kind kind, uint64_t off, uint64_t len)
{
	if (!len)
		return;
	t->segs = xreallocarray(t->segs, t->n_segs + 1, sizeof(*t->segs));
	t->segs[t->n_segs++] = (struct bz_seg){ kind, off, len };
	t->total += len;
}

static int bz_tar_open(struct bz_tar *t, int fd, const char *image, const char *name, struct af_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return af_error_set(err, errno, "stat image '%s'", image);
	t->fd = fd;
	/* GNU tar's ST_IS_SPARSE: fewer bytes allocated than the size. */
	bool sparse = S_ISREG(st.st_mode) && (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size;
	t->realsize = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &t->realsize) < 0)
		return af_error_set(err, errno, "get size of device '%s'", image);
	if (t->realsize == 0)
		return af_error_set(err, 0, "image '%s' is empty; nothing to bundle", image);
	if (strlen(name) >= 100)
		return af_error_set(err, 0, "bundle name '%s' is too long for a tar member: use fewer than 100 characters", name);
	if (bz_scan(t, image, sparse, err) < 0)
		return -1;
	struct bundle_tar_member m = {
		.name = name, .mode = S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0644,
		.mtime = st.st_mtime, .realsize = t->realsize, .stored = t->stored, .sparse = sparse,
		.map = (const uint64_t(*)[2])t->map, .n_map = t->n_map,
	};
	size_t hlen = bundle_tar_header_size(sparse ? t->n_map : 0);
	t->hdr = xmalloc(hlen);
	bundle_tar_header(&m, t->hdr);
	bz_seg_add(t, SEG_MEM, 0, hlen);
	for (size_t i = 0; i < t->n_map; i++)
		bz_seg_add(t, SEG_FILE, t->map[i][0], t->map[i][1]);
	bz_seg_add(t, SEG_ZERO, 0, (512 - t->stored % 512) % 512);
	bz_seg_add(t, SEG_ZERO, 0, 1024);  /* end of archive */
	bz_seg_add(t, SEG_ZERO, 0, (BZ_RECORD - t->total % BZ_RECORD) % BZ_RECORD);
	return 0;
}

/* Fills buf with the next n bytes of the stream (n never runs past the end). */
static int bz_tar_read(struct bz_tar *t, unsigned char *buf, size_t n, const char *image, struct af_error **err)
{
	while (n) {
		const struct bz_seg *s = &t->segs[t->cur];
		size_t k = (size_t)(s->len - t->cur_off < n ? s->len - t->cur_off : n);
		if (s->kind == SEG_MEM) {
			memcpy(buf, t->hdr + s->off + t->cur_off, k);
		} else if (s->kind == SEG_ZERO) {
			memset(buf, 0, k);
		} else {
			ssize_t r = pread_all(t->fd, buf, k, (off_t)(s->off + t->cur_off));
			if (r < 0)
				return af_error_set(err, errno, "read image '%s'", image);
			if ((size_t)r < k)
				return af_error_set(err, 0, "image '%s' shrank while it was being bundled", image);
		}
		buf += k;
		n -= k;
		t->cur_off += k;
		if (t->cur_off == s->len) {
			t->cur++;
			t->cur_off = 0;
		}
	}
	return 0;
}

/* ---- parallel deflate ---- */

enum bz_job_state { JOB_FREE, JOB_QUEUED, JOB_DONE, JOB_FAILED };
struct bz_job {
	unsigned char *in, *out;
	size_t in_len, out_len, out_cap;
	unsigned char dict[BZ_DICT];
	size_t dict_len;
	uLong crc;
	bool last;
	enum bz_job_state state;
};

struct bz_pool {
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	struct bz_job *jobs;
	size_t n_jobs;
	uint64_t submitted, taken;
	bool stop;
	int level;
	pthread_t *threads;
	size_t n_threads;
};

static bool bz_deflate(z_stream *z, struct bz_job *j)
{
	if (deflateReset(z) != Z_OK)
		return false;
	if (j->dict_len && deflateSetDictionary(z, j->dict, (uInt)j->dict_len) != Z_OK)
		return false;
	size_t need = deflateBound(z, (uLong)j->in_len) + 64;
	if (j->out_cap < need) {
		j->out = xrealloc(j->out, need);
		j->out_cap = need;
	}
	z->next_in = j->in;
	z->avail_in = (uInt)j->in_len;
	z->next_out = j->out;
	z->avail_out = (uInt)j->out_cap;
	/* A sync flush ends the piece on a byte boundary with an empty stored
	 * block, so the next piece's raw deflate data can follow it. */
	int r = deflate(z, j->last ? Z_FINISH : Z_SYNC_FLUSH);
	if (j->last ? r != Z_STREAM_END : (r != Z_OK || z->avail_in))
		return false;
	j->out_len = j->out_cap - z->avail_out;
	j->crc = crc32(0L, j->in, (uInt)j->in_len);
	return true;
}

static void *bz_worker(void *arg)
{
	struct bz_pool *p = arg;
	z_stream z = { 0 };
	bool ok_init = deflateInit2(&z, p->level, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->taken == p->submitted)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop)
			break;
		struct bz_job *j = &p->jobs[p->taken++ % p->n_jobs];
		pthread_mutex_unlock(&p->mu);
		bool ok = ok_init && bz_deflate(&z, j);
		pthread_mutex_lock(&p->mu);
		j->state = ok ? JOB_DONE : JOB_FAILED;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	if (ok_init)
		deflateEnd(&z);
	return NULL;
}

static void bz_pool_start(struct bz_pool *p, int level, size_t n_threads)
{
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->level = level;
	p->n_jobs = 2 * n_threads + 2;
	p->jobs = xcalloc(p->n_jobs, sizeof(*p->jobs));
	for (size_t i = 0; i < p->n_jobs; i++)
		p->jobs[i].in = xmalloc(BZ_CHUNK);
	p->threads = xcalloc(n_threads, sizeof(*p->threads));
	for (size_t i = 0; i < n_threads; i++)
		if (pthread_create(&p->threads[p->n_threads], NULL, bz_worker, p) == 0)
			p->n_threads++;
	if (p->n_threads == 0)
		BUG("cannot start a compression thread");
}

static void bz_pool_stop(struct bz_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	for (size_t i = 0; i < p->n_jobs; i++) {
		free(p->jobs[i].in);
		free(p->jobs[i].out);
	}
	free(p->jobs);
	free(p->threads);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
}

static void bz_pool_submit(struct bz_pool *p, struct bz_job *j)
{
	pthread_mutex_lock(&p->mu);
	j->state = JOB_QUEUED;
	p->submitted++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
}

static bool bz_pool_wait(struct bz_pool *p, struct bz_job *j)
{
	pthread_mutex_lock(&p->mu);
	while (j->state == JOB_QUEUED)
		pthread_cond_wait(&p->done, &p->mu);
	bool ok = j->state == JOB_DONE;
	j->state = JOB_FREE;
	pthread_mutex_unlock(&p->mu);
	return ok;
}

/* ---- encrypted output split into parts ---- */

struct bz_out {
	const char *tmpdir;
	EVP_CIPHER_CTX *cipher;
	unsigned char *buf;       /* cipher output */
	size_t buf_cap;
	int fd;                   /* current part, -1 if none */
	uint64_t part_bytes, total;
	EVP_MD_CTX *part_md;
	char **digests;
	size_t n_parts;
};

static int bz_part_close(struct bz_out *o, struct af_error **err)
{
	if (o->fd < 0)
		return 0;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_DigestFinal_ex(o->part_md, md, &mdlen);
	o->digests = xreallocarray(o->digests, o->n_parts + 1, sizeof(*o->digests));
	o->digests[o->n_parts++] = hex_encode_dup(md, mdlen);
	int r = close(o->fd);
	o->fd = -1;
	if (r < 0)
		return af_error_set(err, errno, "write bundle part %zu in '%s'", o->n_parts - 1, o->tmpdir);
	return 0;
}

static int bz_write_parts(struct bz_out *o, const unsigned char *data, size_t n, struct af_error **err)
{
	while (n) {
		if (o->fd < 0) {
			_cleanup_free_ char *p = xasprintf("%s/%zu", o->tmpdir, o->n_parts);
			o->fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (o->fd < 0)
				return af_error_set(err, errno, "create bundle part '%s'", p);
			EVP_DigestInit_ex(o->part_md, EVP_sha1(), NULL);
			o->part_bytes = 0;
		}
		size_t k = BUNDLE_PART_SIZE - o->part_bytes < n ? (size_t)(BUNDLE_PART_SIZE - o->part_bytes) : n;
		if (write_all(o->fd, data, k) < 0)
			return af_error_set(err, errno, "write bundle part %zu in '%s'", o->n_parts, o->tmpdir);
		EVP_DigestUpdate(o->part_md, data, k);
		o->part_bytes += k;
		o->total += k;
		data += k;
		n -= k;
		if (o->part_bytes == BUNDLE_PART_SIZE && bz_part_close(o, err) < 0)
			return -1;
	}
	return 0;
}

static int bz_encrypt(struct bz_out *o, const unsigned char *data, size_t n, struct af_error **err)
{
	if (o->buf_cap < n + 32) {
		o->buf_cap = n + 32;
		o->buf = xrealloc(o->buf, o->buf_cap);
	}
	int outl = 0;
	if (EVP_EncryptUpdate(o->cipher, o->buf, &outl, data, (int)n) != 1)
		return af_error_openssl(err, "aes-128-cbc encryption failed");
	return bz_write_parts(o, o->buf, (size_t)outl, err);
}

static int bz_finish(struct bz_out *o, struct af_error **err)
{
	unsigned char tail[32];
	int outl = 0;
	if (EVP_EncryptFinal_ex(o->cipher, tail, &outl) != 1)
		return af_error_openssl(err, "aes-128-cbc encryption failed");
	if (bz_write_parts(o, tail, (size_t)outl, err) < 0)
		return -1;
	return bz_part_close(o, err);
}

/* ---- the pipeline ---- */

struct bz_stream {
	struct bz_tar tar;
	struct bz_pool pool;
	struct bz_out out;
	EVP_MD_CTX *tar_md;
	uLong crc;
	const char *image;
	double deadline;
};

static void bz_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static int bz_collect(struct bz_stream *s, struct bz_job *j, struct af_error **err)
{
	if (!bz_pool_wait(&s->pool, j))
		return af_error_set(err, 0, "gzip compression of image '%s' failed", s->image);
	s->crc = crc32_combine(s->crc, j->crc, (z_off_t)j->in_len);
	return bz_encrypt(&s->out, j->out, j->out_len, err);
}

static void bz_fill(struct bz_stream *s, struct bz_job *j, const struct bz_job *prev, size_t len, bool last)
{
	j->in_len = len;
	j->last = last;
	j->dict_len = 0;
	if (prev) {
		j->dict_len = prev->in_len < BZ_DICT ? prev->in_len : BZ_DICT;
		memcpy(j->dict, prev->in + prev->in_len - j->dict_len, j->dict_len);
	}
}

static int bz_run(struct bz_stream *s, int level, struct af_error **err)
{
	/* gzip header: no name, mtime 0, XFL as gzip sets it, OS unix. */
	unsigned char hdr[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level == 9 ? 2 : level == 1 ? 4 : 0, 3 };
	if (bz_encrypt(&s->out, hdr, sizeof(hdr), err) < 0)
		return -1;
	uint64_t n_chunks = (s->tar.total + BZ_CHUNK - 1) / BZ_CHUNK;
	size_t nj = s->pool.n_jobs;
	for (uint64_t c = 0; c < n_chunks; c++) {
		struct bz_job *j = &s->pool.jobs[c % nj];
		if (c >= nj && bz_collect(s, j, err) < 0)
			return -1;
		if (s->deadline > 0 && now_monotonic() > s->deadline)
			return af_error_set(err, ETIMEDOUT, "bundling image '%s' ran out of time", s->image);
		uint64_t left = s->tar.total - c * BZ_CHUNK;
		size_t len = left < BZ_CHUNK ? (size_t)left : BZ_CHUNK;
		bz_fill(s, j, c ? &s->pool.jobs[(c - 1) % nj] : NULL, len, c + 1 == n_chunks);
		if (bz_tar_read(&s->tar, j->in, len, s->image, err) < 0)
			return -1;
		EVP_DigestUpdate(s->tar_md, j->in, len);
		bz_pool_submit(&s->pool, j);
	}
	for (uint64_t c = n_chunks > nj ? n_chunks - nj : 0; c < n_chunks; c++)
		if (bz_collect(s, &s->pool.jobs[c % nj], err) < 0)
			return -1;
	unsigned char trailer[8];
	bz_le32(trailer, (uint32_t)s->crc);
	bz_le32(trailer + 4, (uint32_t)s->tar.total);
	if (bz_encrypt(&s->out, trailer, sizeof(trailer), err) < 0)
		return -1;
	return bz_finish(&s->out, err);
}

/* ---- keys, certificates, signature ---- */

static EVP_PKEY *bz_cert_pubkey(const char *path, struct af_error **err)
{
	_cleanup_file_ FILE *f = fopen(path, "re");
	if (!f) {
		af_error_set(err, errno, "open certificate '%s'", path);
		return NULL;
	}
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	if (!x) {
		af_error_openssl(err, "'%s' is not a PEM X.509 certificate", path);
		return NULL;
	}
	EVP_PKEY *k = X509_get_pubkey(x);
	X509_free(x);
	if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		af_error_set(err, 0, "certificate '%s' does not hold an RSA key", path);
		return NULL;
	}
	return k;
}

/* RSAES-PKCS1-v1_5 of TEXT for the certificate's key, as hex. */
static char *bz_wrap(EVP_PKEY *k, const char *text, const char *what, struct af_error **err)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
	unsigned char out[1024];
	size_t outlen = sizeof(out);
	bool ok = c && EVP_PKEY_encrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
		  EVP_PKEY_encrypt(c, out, &outlen, (const unsigned char *)text, strlen(text)) == 1;
	EVP_PKEY_CTX_free(c);
	if (!ok) {
		af_error_openssl(err, "wrap the bundle key for %s", what);
		return NULL;
	}
	return hex_encode_dup(out, outlen);
}

static char *bz_sign(const char *key_path, const char *data, struct af_error **err)
{
	_cleanup_file_ FILE *f = fopen(key_path, "re");
	if (!f) {
		af_error_set(err, errno, "open private key '%s'", key_path);
		return NULL;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (!k) {
		af_error_openssl(err, "'%s' is not an unencrypted PEM private key", key_path);
		return NULL;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[1024];
	size_t siglen = sizeof(sig);
	bool ok = EVP_DigestSignInit(md, NULL, EVP_sha1(), NULL, k) == 1 &&
		  EVP_DigestSign(md, sig, &siglen, (const unsigned char *)data, strlen(data)) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	if (!ok) {
		af_error_openssl(err, "sign the manifest with '%s'", key_path);
		return NULL;
	}
	return hex_encode_dup(sig, siglen);
}

/* The four wrapped values: ec2 key, user key, ec2 iv, user iv. */
static int bz_wrap_all(const struct bundle_opts *o, const char *key_hex, const char *iv_hex, char *wrapped[4],
		       struct af_error **err)
{
	EVP_PKEY *ec2 = bz_cert_pubkey(o->ec2_cert, err);
	if (!ec2)
		return -1;
	EVP_PKEY *user = bz_cert_pubkey(o->user_cert, err);
	if (!user) {
		EVP_PKEY_free(ec2);
		return -1;
	}
	wrapped[0] = bz_wrap(ec2, key_hex, "the EC2 certificate", err);
	wrapped[1] = wrapped[0] ? bz_wrap(user, key_hex, "the user certificate", err) : NULL;
	wrapped[2] = wrapped[1] ? bz_wrap(ec2, iv_hex, "the EC2 certificate", err) : NULL;
	wrapped[3] = wrapped[2] ? bz_wrap(user, iv_hex, "the user certificate", err) : NULL;
	EVP_PKEY_free(ec2);
	EVP_PKEY_free(user);
	return wrapped[3] ? 0 : -1;
}

/* ---- files ---- */

/* Removes DIR/NAME.part.* and DIR/NAME.manifest.xml left by an earlier run. */
static void bz_remove_old(const char *dir, const char *name)
{
	_cleanup_dir_ DIR *d = opendir(dir);
	if (!d)
		return;
	_cleanup_free_ char *parts = xasprintf("%s.part.", name);
	_cleanup_free_ char *manifest = xasprintf("%s.manifest.xml", name);
	struct dirent *e;
	while ((e = readdir(d)))
		if (str_has_prefix(e->d_name, parts) || !strcmp(e->d_name, manifest))
			unlinkat(dirfd(d), e->d_name, 0);
}

static void bz_remove_tmpdir(const char *tmpdir)
{
	_cleanup_dir_ DIR *d = opendir(tmpdir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				unlinkat(dirfd(d), e->d_name, 0);
	}
	rmdir(tmpdir);
}

static int bz_install_parts(const struct bundle_opts *o, const char *tmpdir, size_t n, char **names,
			    struct af_error **err)
{
	bz_remove_old(o->dir, o->name);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *from = xasprintf("%s/%zu", tmpdir, i);
		_cleanup_free_ char *to = path_join(o->dir, names[i]);
		if (rename(from, to) < 0)
			return af_error_set(err, errno, "move bundle part to '%s'", to);
	}
	return 0;
}

static int bz_write_manifest(const struct bundle_opts *o, struct bz_stream *s, const char *digest,
			     char *wrapped[4], char **names, char **manifest_path, struct af_error **err)
{
	struct bundle_manifest m = {
		.arch = o->arch, .mappings = o->mappings, .n_mappings = o->n_mappings,
		.kernel_id = o->kernel_id, .ramdisk_id = o->ramdisk_id, .name = o->name, .user = o->account,
		.digest = digest, .size = s->tar.realsize, .bundled_size = s->out.total,
		.ec2_encrypted_key = wrapped[0], .user_encrypted_key = wrapped[1],
		.ec2_encrypted_iv = wrapped[2], .user_encrypted_iv = wrapped[3],
		.n_parts = s->out.n_parts, .part_names = names, .part_digests = s->out.digests,
	};
	_cleanup_free_ char *unsigned_text = bundle_manifest_text(&m, NULL);
	_cleanup_free_ char *signed_data = bundle_signed_data(unsigned_text);
	_cleanup_free_ char *sig = bz_sign(o->user_key, signed_data, err);
	if (!sig)
		return -1;
	_cleanup_free_ char *text = bundle_manifest_text(&m, sig);
	_cleanup_free_ char *path = xasprintf("%s/%s.manifest.xml", o->dir, o->name);
	if (write_file_atomic(path, text, strlen(text), 0600, err) < 0)
		return -1;
	*manifest_path = steal_pointer(&path);
	return 0;
}

static int bz_stream_init(struct bz_stream *s, const struct bundle_opts *o, const char *tmpdir,
			  const unsigned char key[16], const unsigned char iv[16])
{
	s->image = o->image;
	s->deadline = o->deadline;
	s->tar_md = EVP_MD_CTX_new();
	s->out.cipher = EVP_CIPHER_CTX_new();
	s->out.part_md = EVP_MD_CTX_new();
	s->out.fd = -1;
	s->out.tmpdir = tmpdir;
	s->crc = crc32(0L, Z_NULL, 0);
	if (!s->tar_md || !s->out.cipher || !s->out.part_md)
		return -1;
	if (EVP_DigestInit_ex(s->tar_md, EVP_sha1(), NULL) != 1 ||
	    EVP_EncryptInit_ex(s->out.cipher, EVP_aes_128_cbc(), NULL, key, iv) != 1)
		return -1;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t threads = o->threads > 0 ? (size_t)o->threads : cpus > 0 ? (size_t)cpus : 1;
	bz_pool_start(&s->pool, o->level >= 1 && o->level <= 9 ? o->level : 6, threads);
	return 0;
}

static void bz_stream_release(struct bz_stream *s)
{
	if (s->pool.jobs)
		bz_pool_stop(&s->pool);
	if (s->out.fd >= 0)
		close(s->out.fd);
	for (size_t i = 0; i < s->out.n_parts; i++)
		free(s->out.digests[i]);
	free(s->out.digests);
	free(s->out.buf);
	EVP_MD_CTX_free(s->out.part_md);
	EVP_CIPHER_CTX_free(s->out.cipher);
	EVP_MD_CTX_free(s->tar_md);
	bz_tar_release(&s->tar);
	OPENSSL_cleanse(s, sizeof(*s));
}

static int bz_create_in(const struct bundle_opts *o, const char *tmpdir, int fd, struct bundle_result *out,
			struct af_error **err)
{
	unsigned char key[16], iv[16];
	if (RAND_bytes(key, sizeof(key)) != 1 || RAND_bytes(iv, sizeof(iv)) != 1)
		return af_error_openssl(err, "no random bytes for the bundle key");
	char *key_hex = hex_encode_dup(key, 16), *iv_hex = hex_encode_dup(iv, 16);
	struct bz_stream s = { 0 };
	char *wrapped[4] = { NULL };
	char **names = NULL;
	char *digest = NULL, *manifest = NULL;
	int r = bz_wrap_all(o, key_hex, iv_hex, wrapped, err);
	if (r == 0 && bz_stream_init(&s, o, tmpdir, key, iv) < 0)
		r = af_error_openssl(err, "set up sha1 and aes-128-cbc");
	if (r == 0)
		r = bz_tar_open(&s.tar, fd, o->image, o->name, err);
	if (r == 0)
		r = bz_run(&s, o->level, err);
	if (r == 0) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned mdlen = 0;
		EVP_DigestFinal_ex(s.tar_md, md, &mdlen);
		digest = hex_encode_dup(md, mdlen);
		names = xcalloc(s.out.n_parts + 1, sizeof(*names));
		for (size_t i = 0; i < s.out.n_parts; i++)
			names[i] = bundle_part_name(o->name, i, s.out.n_parts);
		r = bz_install_parts(o, tmpdir, s.out.n_parts, names, err);
	}
	if (r == 0)
		r = bz_write_manifest(o, &s, digest, wrapped, names, &manifest, err);
	if (r == 0) {
		*out = (struct bundle_result){ .manifest_path = manifest, .digest = digest, .size = s.tar.realsize,
					       .bundled_size = s.out.total, .tar_bytes = s.tar.total,
					       .n_parts = s.out.n_parts };
		digest = NULL;
	}
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
	free(digest);
	for (int i = 0; i < 4; i++)
		free(wrapped[i]);
	OPENSSL_cleanse(key_hex, strlen(key_hex));
	OPENSSL_cleanse(iv_hex, strlen(iv_hex));
	OPENSSL_cleanse(key, sizeof(key));
	free(key_hex);
	free(iv_hex);
	bz_stream_release(&s);
	return r;
}

int bundle_create(const struct bundle_opts *o, struct bundle_result *out, struct af_error **err)
{
	/* The parts are the image, encrypted with a key the manifest carries
	 * wrapped for the user's certificate: private like the image. */
	if (mkdir_p(o->dir, 0700, err) < 0)
		return -1;
	_cleanup_fd_ int fd = open(o->image, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "open image '%s'", o->image);
	_cleanup_free_ char *tmpdir = xasprintf("%s/.%s.tmp-XXXXXX", o->dir, o->name);
	if (!mkdtemp(tmpdir))
		return af_error_set(err, errno, "create a temporary directory in '%s'", o->dir);
	int r = bz_create_in(o, tmpdir, fd, out, err);
	bz_remove_tmpdir(tmpdir);
	return r;
}

/* ---- a generated certificate ---- */

static int bz_write_pem(const char *path, EVP_PKEY *k, X509 *x, struct af_error **err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "create '%s'", tmp);
	/* A leftover from an interrupted run keeps its mode through O_TRUNC. */
	if (fchmod(fd, 0600) < 0) {
		int errsv = errno;
		close(fd);
		return af_error_set(err, errsv, "make '%s' private (mode 0600)", tmp);
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return af_error_set(err, errno, "open '%s'", tmp);
	}
	bool ok = k ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1 : PEM_write_X509(f, x) == 1;
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		int errsv = errno;
		unlink(tmp);
		return af_error_set(err, ok ? errsv : 0, "write '%s'", path);
	}
	return 0;
}

static X509 *bz_self_signed(EVP_PKEY *k)
{
	X509 *x = X509_new();
	unsigned char serial[16];
	if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_NAME *n = X509_get_subject_name(x);
	ok = ok && X509_set_version(x, 2) == 1 &&
	     X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"amiforge", -1, -1, 0) == 1 &&
	     X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"amiforge bundle signing",
					-1, -1, 0) == 1 &&
	     X509_set_issuer_name(x, n) == 1 && X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400) && X509_set_pubkey(x, k) == 1 &&
	     X509_sign(x, k, EVP_sha256()) > 0;
	if (ok)
		return x;
fail:
	X509_free(x);
	return NULL;
}

int bundle_x509_generate(const char *dir, bool *created, struct af_error **err)
{
	_cleanup_free_ char *cert = path_join(dir, "cert.pem");
	_cleanup_free_ char *key = path_join(dir, "key.pem");
	*created = false;
	if (access(cert, R_OK) == 0 && access(key, R_OK) == 0)
		return 0;
	if (mkdir_p(dir, 0700, err) < 0)
		return -1;
	EVP_PKEY *k = EVP_RSA_gen(2048);
	if (!k)
		return af_error_openssl(err, "generate an RSA key for '%s'", key);
	X509 *x = bz_self_signed(k);
	int r = x ? 0 : af_error_openssl(err, "make a self-signed certificate for '%s'", cert);
	if (r == 0)
		r = bz_write_pem(key, k, NULL, err);
	if (r == 0)
		r = bz_write_pem(cert, NULL, x, err);
	if (r == 0)
		r = fsync_parent_dir(cert, err);
	X509_free(x);
	EVP_PKEY_free(k);
	if (r == 0)
		*created = true;
	return r;
}
