/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge unbundle`: an instance-store bundle back to a raw image
 * (ec2-unbundle, reference/FORMATS.md §1.2), with more checks than the
 * original tool: every part's SHA-1 as well as the tar stream's.
 *
 *   parts (manifest order) -> SHA-1 per part -> AES-128-CBC decrypt
 *     -> gunzip -> SHA-1 of the tar stream -> the tar member, written
 *        sparsely (holes of the sparse map and all-zero blocks not written). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <zlib.h>

#include "amiforge/bundle_format.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/log.h"
#include "amiforge/unbundle.h"
#include "amiforge/util.h"

#define UB_BUF (1u << 20)
#define UB_ZERO_BLOCK 4096

struct ub_part {
	long index;
	char *filename, *digest;
};

struct ub_manifest {
	char *digest, *key, *iv;  /* key/iv: the user's wrapped values, hex */
	uint64_t size;
	struct ub_part *parts;
	size_t n_parts;
};

static void ub_manifest_release(struct ub_manifest *m)
{
	free(m->digest);
	free(m->key);
	free(m->iv);
	for (size_t i = 0; i < m->n_parts; i++) {
		free(m->parts[i].filename);
		free(m->parts[i].digest);
	}
	free(m->parts);
}

/* ---- manifest ---- */

static char *ub_text(xmlXPathContextPtr x, xmlNodePtr at, const char *expr)
{
	x->node = at;
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, x);
	char *s = NULL;
	if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
		xmlChar *c = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
		s = c ? xstrdup((const char *)c) : NULL;
		xmlFree(c);
	}
	xmlXPathFreeObject(o);
	return s;
}

static int ub_part_cmp(const void *a, const void *b)
{
	const struct ub_part *x = a, *y = b;
	return (x->index > y->index) - (x->index < y->index);
}

static int ub_parts(xmlXPathContextPtr x, const char *path, struct ub_manifest *m, struct af_error **err)
{
	x->node = NULL;
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)"/manifest/image/parts/part", x);
	int n = o && o->nodesetval ? o->nodesetval->nodeNr : 0;
	m->parts = xcalloc((size_t)n + 1, sizeof(*m->parts));
	int r = 0;
	for (int i = 0; i < n && r == 0; i++) {
		xmlNodePtr node = o->nodesetval->nodeTab[i];
		struct ub_part *p = &m->parts[m->n_parts++];
		xmlChar *idx = xmlGetProp(node, (const xmlChar *)"index");
		p->index = idx ? strtol((const char *)idx, NULL, 10) : -1;
		xmlFree(idx);
		p->filename = ub_text(x, node, "filename");
		p->digest = ub_text(x, node, "digest");
		if (!p->filename || !p->digest || !*p->filename || strchr(p->filename, '/') || p->index < 0)
			r = af_error_set(err, 0, "manifest '%s': part %d has no index, filename or digest, or a filename with '/'",
					 path, i);
	}
	xmlXPathFreeObject(o);
	if (r == 0 && n == 0)
		r = af_error_set(err, 0, "manifest '%s' lists no parts", path);
	qsort(m->parts, m->n_parts, sizeof(*m->parts), ub_part_cmp);
	for (size_t i = 0; r == 0 && i < m->n_parts; i++)
		if (m->parts[i].index != (long)i)
			r = af_error_set(err, 0, "manifest '%s': part indexes are not 0..%zu", path, m->n_parts - 1);
	return r;
}

#define UB_XML_FLAGS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

/* Reads the manifest at PATH, or (TEXT not NULL) the LEN bytes of TEXT,
 * PATH then naming it in messages. */
static int ub_manifest_read(const char *path, const char *text, size_t len, struct ub_manifest *m,
			    struct af_error **err)
{
	xmlDocPtr doc = text ? xmlReadMemory(text, (int)len, NULL, NULL, UB_XML_FLAGS)
			     : xmlReadFile(path, NULL, UB_XML_FLAGS);
	if (!doc)
		return af_error_set(err, 0, "manifest '%s' is not well-formed XML", path);
	xmlXPathContextPtr x = xmlXPathNewContext(doc);
	m->digest = ub_text(x, NULL, "/manifest/image/digest");
	m->key = ub_text(x, NULL, "/manifest/image/user_encrypted_key");
	m->iv = ub_text(x, NULL, "/manifest/image/user_encrypted_iv");
	_cleanup_free_ char *size = ub_text(x, NULL, "/manifest/image/size");
	int r = 0;
	if (!m->digest || !m->key || !m->iv || !size)
		r = af_error_set(err, 0, "manifest '%s' lacks image digest, user_encrypted_key, user_encrypted_iv or size",
				 path);
	if (r == 0) {
		m->size = strtoull(size, NULL, 10);
		r = ub_parts(x, path, m, err);
	}
	xmlXPathFreeContext(x);
	xmlFreeDoc(doc);
	return r;
}

/* ---- the key ---- */

/* The AES key or IV: the RSA-wrapped hex text, unwrapped to 16 bytes. */
static int ub_unwrap(EVP_PKEY *k, const char *wrapped_hex, const char *what, unsigned char out[16],
		     struct af_error **err)
{
	unsigned char in[1024], text[1024];
	size_t inlen = 0, textlen = sizeof(text) - 1, n = 0;
	if (hex_decode(wrapped_hex, in, sizeof(in), &inlen) < 0)
		return af_error_set(err, 0, "the manifest's user_encrypted_%s is not hex", what);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
	bool ok = c && EVP_PKEY_decrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
		  EVP_PKEY_decrypt(c, text, &textlen, in, inlen) == 1;
	EVP_PKEY_CTX_free(c);
	if (!ok)
		return af_error_openssl(err, "cannot decrypt the bundle %s with this private key (is it the key of the certificate the bundle was made for?)",
					what);
	text[textlen] = '\0';
	int r = textlen == 32 && hex_decode((char *)text, out, 16, &n) == 0 && n == 16 ? 0 : -1;
	OPENSSL_cleanse(text, sizeof(text));
	if (r < 0)
		return af_error_set(err, 0, "the decrypted bundle %s is not 32 hex characters", what);
	return 0;
}

static int ub_keys(const char *key_pem, const struct ub_manifest *m, unsigned char key[16], unsigned char iv[16],
		   struct af_error **err)
{
	_cleanup_file_ FILE *f = fopen(key_pem, "re");
	if (!f)
		return af_error_set(err, errno, "open private key '%s'", key_pem);
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (!k)
		return af_error_openssl(err, "'%s' is not an unencrypted PEM private key", key_pem);
	int r = ub_unwrap(k, m->key, "key", key, err);
	if (r == 0)
		r = ub_unwrap(k, m->iv, "iv", iv, err);
	EVP_PKEY_free(k);
	return r;
}

/* ---- the tar member, written sparsely ---- */

enum ub_tar_state { TAR_HEADER, TAR_EXT, TAR_DATA, TAR_PAD, TAR_END };

struct ub_tar {
	enum ub_tar_state state;
	unsigned char blk[512];
	size_t blk_len;
	uint64_t (*map)[2];
	size_t n_map, map_i;
	uint64_t map_off;     /* position inside map[map_i] */
	uint64_t realsize, stored, data_seen;
	int fd;
	const char *out;
	unbundle_sink_fn *sink;  /* instead of fd: the data handed on */
	void *sink_arg;
};

static uint64_t ub_num(const unsigned char *f, size_t width)
{
	uint64_t v = 0;
	if (f[0] & 0x80) {  /* GNU base-256 */
		for (size_t i = 1; i < width; i++)
			v = v << 8 | f[i];
		return v;
	}
	for (size_t i = 0; i < width && f[i]; i++)
		if (f[i] >= '0' && f[i] <= '7')
			v = v * 8 + (uint64_t)(f[i] - '0');
	return v;
}

static void ub_map_add(struct ub_tar *t, const unsigned char *e)
{
	uint64_t off = ub_num(e, 12), len = ub_num(e + 12, 12);
	if (!off && !len && t->n_map)
		return;  /* unused slot */
	t->map = xreallocarray(t->map, t->n_map + 1, sizeof(*t->map));
	t->map[t->n_map][0] = off;
	t->map[t->n_map][1] = len;
	t->n_map++;
}

static bool ub_checksum_ok(const unsigned char *h)
{
	unsigned sum = 0;
	for (size_t i = 0; i < 512; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	return sum == ub_num(h + 148, 8);
}

static int ub_header(struct ub_tar *t, struct af_error **err)
{
	const unsigned char *h = t->blk;
	if (!ub_checksum_ok(h))
		return af_error_set(err, 0, "the bundle's tar header is damaged (bad checksum)");
	char type = (char)h[156];
	t->stored = ub_num(h + 124, 12);
	if (type == 'S') {
		for (size_t i = 0; i < 4; i++)
			if (i == 0 || ub_num(h + 386 + i * 24 + 12, 12) || ub_num(h + 386 + i * 24, 12))
				ub_map_add(t, h + 386 + i * 24);
		t->realsize = ub_num(h + 483, 12);
		t->state = h[482] ? TAR_EXT : TAR_DATA;
		return 0;
	}
	if (type != '0' && type != '\0' && type != '7')
		return af_error_set(err, 0, "the bundle's tar member has type '%c': only a regular or old-GNU sparse file is supported",
				    type);
	t->realsize = t->stored;
	t->map = xcalloc(1, sizeof(*t->map));
	t->map[0][1] = t->stored;
	t->n_map = 1;
	t->state = TAR_DATA;
	return 0;
}

static bool ub_all_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Writes data at OFF, skipping all-zero blocks so the image stays sparse. */
static int ub_write(struct ub_tar *t, const unsigned char *p, size_t n, uint64_t off, struct af_error **err)
{
	if (t->sink)
		return n ? t->sink(t->sink_arg, off, p, n, err) : 0;
	while (n) {
		size_t k = UB_ZERO_BLOCK - (size_t)(off % UB_ZERO_BLOCK);
		if (k > n)
			k = n;
		if (!ub_all_zero(p, k) && pwrite_all(t->fd, p, k, (off_t)off) < 0)
			return af_error_set(err, errno, "write image '%s'", t->out);
		p += k;
		n -= k;
		off += k;
	}
	return 0;
}

static int ub_data(struct ub_tar *t, const unsigned char *p, size_t n, size_t *used, struct af_error **err)
{
	size_t start = n;
	while (n && t->map_i < t->n_map) {
		uint64_t left = t->map[t->map_i][1] - t->map_off;
		size_t k = left < n ? (size_t)left : n;
		if (t->map[t->map_i][0] + t->map_off + k > t->realsize)
			return af_error_set(err, 0, "the bundle's sparse map runs past the image size");
		if (ub_write(t, p, k, t->map[t->map_i][0] + t->map_off, err) < 0)
			return -1;
		p += k;
		n -= k;
		t->map_off += k;
		t->data_seen += k;
		if (t->map_off == t->map[t->map_i][1]) {
			t->map_i++;
			t->map_off = 0;
		}
	}
	*used = start - n;
	if (t->map_i == t->n_map) {
		if (t->data_seen != t->stored)
			return af_error_set(err, 0, "the bundle's tar member size does not match its sparse map");
		t->state = TAR_PAD;
		t->blk_len = (size_t)((512 - t->stored % 512) % 512);  /* padding still to skip */
	}
	return 0;
}

static int ub_block(struct ub_tar *t, struct af_error **err)
{
	if (t->state == TAR_HEADER)
		return ub_all_zero(t->blk, 512) ? af_error_set(err, 0, "the bundle's tar stream holds no file")
						: ub_header(t, err);
	for (size_t i = 0; i < 21; i++)
		if (ub_num(t->blk + i * 24 + 12, 12) || ub_num(t->blk + i * 24, 12))
			ub_map_add(t, t->blk + i * 24);
	t->state = t->blk[504] ? TAR_EXT : TAR_DATA;
	return 0;
}

static int ub_tar_feed(struct ub_tar *t, const unsigned char *p, size_t n, struct af_error **err)
{
	while (n) {
		if (t->state == TAR_HEADER || t->state == TAR_EXT) {
			size_t k = 512 - t->blk_len < n ? 512 - t->blk_len : n;
			memcpy(t->blk + t->blk_len, p, k);
			t->blk_len += k;
			p += k;
			n -= k;
			if (t->blk_len == 512) {
				t->blk_len = 0;
				if (ub_block(t, err) < 0)
					return -1;
			}
		} else if (t->state == TAR_DATA) {
			size_t used = 0;
			if (ub_data(t, p, n, &used, err) < 0)
				return -1;
			p += used;
			n -= used;
		} else if (t->state == TAR_PAD) {
			size_t k = t->blk_len < n ? t->blk_len : n;
			t->blk_len -= k;
			p += k;
			n -= k;
			if (!t->blk_len)
				t->state = TAR_END;
		} else {
			return 0;  /* end-of-archive blocks and record padding: only hashed */
		}
	}
	return 0;
}

/* ---- the stream ---- */

struct ub_stream {
	EVP_CIPHER_CTX *cipher;
	z_stream z;
	bool z_end;
	EVP_MD_CTX *tar_md;
	struct ub_tar tar;
	unsigned char *plain, *inflated;
};

static int ub_inflate(struct ub_stream *s, const unsigned char *p, size_t n, struct af_error **err)
{
	s->z.next_in = (unsigned char *)p;
	s->z.avail_in = (uInt)n;
	while (s->z.avail_in) {
		if (s->z_end) {  /* another gzip member follows: gunzip reads it too */
			inflateReset(&s->z);
			s->z_end = false;
		}
		s->z.next_out = s->inflated;
		s->z.avail_out = UB_BUF;
		int r = inflate(&s->z, Z_NO_FLUSH);
		if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
			return af_error_set(err, 0, "the bundle's gzip stream is corrupt (%s)", s->z.msg ? s->z.msg : "inflate");
		size_t got = UB_BUF - s->z.avail_out;
		EVP_DigestUpdate(s->tar_md, s->inflated, got);
		if (ub_tar_feed(&s->tar, s->inflated, got, err) < 0)
			return -1;
		if (r == Z_STREAM_END)
			s->z_end = true;
		else if (r == Z_BUF_ERROR && !got)
			break;
	}
	/* Output may still be pending with no input left. */
	while (!s->z_end) {
		s->z.next_out = s->inflated;
		s->z.avail_out = UB_BUF;
		int r = inflate(&s->z, Z_NO_FLUSH);
		size_t got = UB_BUF - s->z.avail_out;
		EVP_DigestUpdate(s->tar_md, s->inflated, got);
		if (ub_tar_feed(&s->tar, s->inflated, got, err) < 0)
			return -1;
		if (r == Z_STREAM_END)
			s->z_end = true;
		if (!got)
			break;
	}
	return 0;
}

static int ub_decrypt(struct ub_stream *s, const unsigned char *p, size_t n, struct af_error **err)
{
	int outl = 0;
	if (EVP_DecryptUpdate(s->cipher, s->plain, &outl, p, (int)n) != 1)
		return af_error_openssl(err, "aes-128-cbc decryption failed");
	return ub_inflate(s, s->plain, (size_t)outl, err);
}

/* A part's SHA-1 is checked before any of it is used, so a damaged part is
 * named as such rather than reported as a corrupt gzip stream. */
static int ub_part_digest(int fd, const char *path, const struct ub_part *p, unsigned char *buf,
			  struct af_error **err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha1(), NULL);
	ssize_t n;
	while ((n = read_all(fd, buf, UB_BUF)) > 0)
		EVP_DigestUpdate(md, buf, (size_t)n);
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_DigestFinal_ex(md, d, &dlen);
	EVP_MD_CTX_free(md);
	if (n < 0)
		return af_error_set(err, errno, "read bundle part '%s'", path);
	_cleanup_free_ char *hex = hex_encode_dup(d, dlen);
	if (strcasecmp(hex, p->digest) != 0)
		return af_error_set(err, 0, "bundle part '%s' is damaged: its SHA-1 is %s, the manifest says %s", path, hex,
				    p->digest);
	return 0;
}

static int ub_part(struct ub_stream *s, const char *dir, const struct ub_part *p, unsigned char *buf,
		   struct af_error **err)
{
	_cleanup_free_ char *path = path_join(dir, p->filename);
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "open bundle part '%s' (give --parts DIR if the parts are elsewhere)", path);
	if (ub_part_digest(fd, path, p, buf, err) < 0)
		return -1;
	ssize_t n;
	off_t off = 0;
	while ((n = pread_all(fd, buf, UB_BUF, off)) > 0) {
		if (ub_decrypt(s, buf, (size_t)n, err) < 0)
			return -1;
		off += n;
	}
	if (n < 0)
		return af_error_set(err, errno, "read bundle part '%s'", path);
	return 0;
}

/* A part the caller fetched whole: its SHA-1 checked first, as ub_part_digest
 * does for a file. */
static int ub_check_mem(const char *where, const struct ub_part *p, const unsigned char *data, size_t len,
			struct af_error **err)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_Digest(data, len, d, &dlen, EVP_sha1(), NULL);
	_cleanup_free_ char *hex = hex_encode_dup(d, dlen);
	if (strcasecmp(hex, p->digest) != 0)
		return af_error_set(err, 0, "bundle part '%s' is damaged: its SHA-1 is %s, the manifest says %s", where, hex,
				    p->digest);
	return 0;
}

static int ub_part_fetched(struct ub_stream *s, const struct unbundle_source *src, const struct ub_part *p,
			   struct af_error **err)
{
	_cleanup_free_ char *data = NULL, *where = NULL;
	size_t len = 0;
	if (src->fetch(src->arg, (size_t)p->index, p->filename, &data, &len, &where, err) < 0)
		return -1;
	if (ub_check_mem(where ? where : p->filename, p, (unsigned char *)data, len, err) < 0)
		return -1;
	for (size_t off = 0; off < len; off += UB_BUF) {
		size_t k = len - off < UB_BUF ? len - off : UB_BUF;
		if (ub_decrypt(s, (unsigned char *)data + off, k, err) < 0)
			return -1;
	}
	return 0;
}

static int ub_finish(struct ub_stream *s, const struct ub_manifest *m, struct af_error **err)
{
	unsigned char tail[32];
	int outl = 0;
	if (EVP_DecryptFinal_ex(s->cipher, tail, &outl) != 1)
		return af_error_openssl(err, "the bundle's last block does not decrypt (wrong key, or a part is missing)");
	if (ub_inflate(s, tail, (size_t)outl, err) < 0)
		return -1;
	if (!s->z_end)
		return af_error_set(err, 0, "the bundle's gzip stream is truncated");
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_DigestFinal_ex(s->tar_md, d, &dlen);
	_cleanup_free_ char *hex = hex_encode_dup(d, dlen);
	if (strcasecmp(hex, m->digest) != 0)
		return af_error_set(err, 0, "invalid image digest: the tar stream's SHA-1 is %s, the manifest says %s", hex,
				    m->digest);
	if (s->tar.state != TAR_END && s->tar.state != TAR_PAD)
		return af_error_set(err, 0, "the bundle's tar stream ends inside its file");
	if (s->tar.realsize != m->size)
		log_warn("the image is %llu bytes, the manifest says %llu", (unsigned long long)s->tar.realsize,
			 (unsigned long long)m->size);
	if (s->tar.fd >= 0 && ftruncate(s->tar.fd, (off_t)s->tar.realsize) < 0)
		return af_error_set(err, errno, "set the size of image '%s'", s->tar.out);
	return 0;
}

/* Where the parts come from: a directory, or the caller's fetch. */
struct ub_source {
	const char *dir;
	struct unbundle_source *src;
};

static int ub_part_any(struct ub_stream *s, const struct ub_source *from, const struct ub_part *p, unsigned char *buf,
		       struct af_error **err)
{
	if (!from->src)
		return ub_part(s, from->dir, p, buf, err);
	return ub_part_fetched(s, from->src, p, err);
}

static int ub_run(const struct ub_manifest *m, const unsigned char key[16], const unsigned char iv[16],
		  const struct ub_source *from, struct ub_tar tar, struct af_error **err)
{
	struct ub_stream s = { .tar = tar };
	s.cipher = EVP_CIPHER_CTX_new();
	s.tar_md = EVP_MD_CTX_new();
	s.plain = xmalloc(UB_BUF + 32);
	s.inflated = xmalloc(UB_BUF);
	_cleanup_free_ unsigned char *buf = xmalloc(UB_BUF);
	int r = 0;
	if (inflateInit2(&s.z, 15 + 16) != Z_OK || EVP_DecryptInit_ex(s.cipher, EVP_aes_128_cbc(), NULL, key, iv) != 1 ||
	    EVP_DigestInit_ex(s.tar_md, EVP_sha1(), NULL) != 1)
		r = af_error_set(err, 0, "cannot set up aes-128-cbc, gunzip and sha1");
	for (size_t i = 0; r == 0 && i < m->n_parts; i++)
		r = ub_part_any(&s, from, &m->parts[i], buf, err);
	if (r == 0)
		r = ub_finish(&s, m, err);
	if (r == 0 && from->src)
		from->src->image_size = s.tar.realsize;
	inflateEnd(&s.z);
	EVP_CIPHER_CTX_free(s.cipher);
	EVP_MD_CTX_free(s.tar_md);
	free(s.tar.map);
	free(s.plain);
	free(s.inflated);
	return r;
}

int unbundle_image(const char *manifest, const char *key_pem, const char *parts_dir, const char *output,
		    struct af_error **err)
{
	struct ub_manifest m = { 0 };
	unsigned char key[16], iv[16];
	int r = ub_manifest_read(manifest, NULL, 0, &m, err);
	if (r == 0)
		r = ub_keys(key_pem, &m, key, iv, err);
	_cleanup_free_ char *mcopy = xstrdup(manifest);
	const char *dir = parts_dir ? parts_dir : dirname(mcopy);
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", output);
	int fd = -1;
	if (r == 0) {
		/* 0600 like every image amiforge makes; a fresh name (O_EXCL,
		 * never through a link) even where others can write, as in /tmp. */
		if (unlink(tmp) < 0 && errno != ENOENT)
			r = af_error_set(err, errno, "remove the leftover '%s'", tmp);
		fd = r == 0 ? open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
		if (r == 0 && fd < 0)
			r = af_error_set(err, errno, "create image '%s'", tmp);
	}
	struct ub_source from = { .dir = dir };
	if (r == 0)
		r = ub_run(&m, key, iv, &from, (struct ub_tar){ .fd = fd, .out = output }, err);
	if (r == 0 && fsync(fd) < 0)
		r = af_error_set(err, errno, "write image '%s'", tmp);
	if (fd >= 0 && close(fd) < 0 && r == 0)
		r = af_error_set(err, errno, "write image '%s'", tmp);
	if (r == 0 && rename(tmp, output) < 0)
		r = af_error_set(err, errno, "rename '%s' to '%s'", tmp, output);
	if (r < 0 && fd >= 0)
		unlink(tmp);
	OPENSSL_cleanse(key, sizeof(key));
	ub_manifest_release(&m);
	return r;
}

/* ---- streaming ---- */

int unbundle_key_check(const char *text, size_t len, const char *name, const char *key_pem, struct af_error **err)
{
	struct ub_manifest m = { 0 };
	unsigned char key[16], iv[16];
	int r = ub_manifest_read(name, text, len, &m, err);
	if (r == 0)
		r = ub_keys(key_pem, &m, key, iv, err);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	ub_manifest_release(&m);
	return r;
}

int unbundle_stream(const char *text, size_t len, const char *name, const char *key_pem,
		    struct unbundle_source *src, struct af_error **err)
{
	struct ub_manifest m = { 0 };
	unsigned char key[16], iv[16];
	int r = ub_manifest_read(name, text, len, &m, err);
	if (r == 0)
		r = ub_keys(key_pem, &m, key, iv, err);
	struct ub_source from = { .src = src };
	if (r == 0)
		r = ub_run(&m, key, iv, &from, (struct ub_tar){ .fd = -1, .out = name, .sink = src->sink, .sink_arg = src->arg },
			   err);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	ub_manifest_release(&m);
	return r;
}

/* ---- the command ---- */

static const char ub_usage[] = "usage: amiforge unbundle MANIFEST --key PK.pem [--parts DIR] -o IMAGE\n";

int unbundle_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "parts", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *key = NULL, *parts = NULL, *out = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "k:s:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 's': parts = optarg; break;
		case 'o': out = optarg; break;
		case 'h': fputs(ub_usage, stdout); return EXIT_OK;
		default: fputs(ub_usage, stderr); return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc || !key || !out) {
		fprintf(stderr, "amiforge: unbundle needs one MANIFEST, --key and -o\n%s", ub_usage);
		return EXIT_USAGE;
	}
	_cleanup_error_ struct af_error *err = NULL;
	if (unbundle_image(argv[optind], key, parts, out, &err) < 0) {
		log_error("unbundle '%s': %s", argv[optind], af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	log_info("unbundled %s to %s", argv[optind], out);
	return EXIT_OK;
}
