/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoints (checkpoint.h): an image cut into 512 KiB blocks, each
 * non-zero block kept once in the block store (blockstore.h), a checkpoint
 * being the list of its blocks' hashes (KEY.ckpt).  The last block of an
 * image whose size is not a multiple of 512 KiB is zero-padded before
 * hashing, and a restore truncates to the recorded size. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

#define BS ((size_t)BLOCKSTORE_BLOCK_SIZE)
#define PAGE 4096u
#define HASH_LEN BLOCKSTORE_HASH_LEN
#define TAG_LEN 16

/* ---- small helpers ---- */

/* "Hex" of a block in a .ckpt file: exactly 64 digits. */
static bool hex_to_hash(const char *hex, uint8_t h[HASH_LEN])
{
	size_t n = 0;
	return hex && hex_decode(hex, h, HASH_LEN, &n) == 0 && n == HASH_LEN;
}

/* Keys become file names; they are hex in practice, but never let one
 * escape the directory. */
static int check_key(const char *key, struct af_error **err)
{
	if (!key || !*key || key[0] == '.' || strchr(key, '/'))
		return af_error_set(err, 0, "invalid checkpoint key '%s'", key ? key : "");
	return 0;
}

static char *ckpt_path(const char *dir, const char *key)
{
	return xasprintf("%s/%s.ckpt", dir, key);
}

static int image_size(int fd, const char *image, const struct stat *st, uint64_t *size,
		      struct af_error **err)
{
	if (S_ISREG(st->st_mode)) {
		*size = (uint64_t)st->st_size;
		return 0;
	}
	if (S_ISBLK(st->st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return af_error_set(err, errno, "cannot get the size of block device '%s'",
					    image);
		return 0;
	}
	return af_error_set(err, 0, "image '%s' is neither a regular file nor a block device",
			    image);
}

static unsigned worker_count(void)
{
	/* AMIFORGE_CKPT_THREADS is a benchmarking knob. */
	const char *env = getenv("AMIFORGE_CKPT_THREADS");
	long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > 4 ? 4 : (unsigned)n;
}

/* ---- a tiny worker pool: N threads pull item numbers from a counter ---- */

struct worker {
	struct pool *pool;
	unsigned id;
	unsigned char *buf;  /* one raw block */
	unsigned char *zbuf; /* one block file: header and payload */
	EVP_MD_CTX *md;
	EVP_MAC_CTX *mac;
	uint64_t bytes_read, blocks_data, blocks_new, blocks_hashed, bytes_new, bytes_stored;
};

struct pool {
	size_t items;
	atomic_size_t next;
	atomic_bool failed;
	int (*fn)(struct worker *w, size_t item, struct af_error **err);
	void *ctx;
	pthread_mutex_t mu;
	struct af_error *err; /* the first failure */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->pool;
	struct af_error *err = NULL;
	while (!atomic_load(&p->failed)) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->items)
			break;
		if (p->fn(w, i, &err) < 0) {
			atomic_store(&p->failed, true);
			pthread_mutex_lock(&p->mu);
			if (!p->err)
				p->err = steal_pointer(&err);
			pthread_mutex_unlock(&p->mu);
			af_error_free(err);
			break;
		}
	}
	return NULL;
}

/* Runs fn over items 0..n-1 on up to worker_count() threads (the caller's
 * thread is one of them); per-worker counters are summed into *sum. */
static int pool_run(size_t n, void *ctx, int (*fn)(struct worker *, size_t, struct af_error **),
		    struct worker *sum, struct af_error **err)
{
	struct pool p = {.items = n, .fn = fn, .ctx = ctx};
	unsigned nw = worker_count();
	if (nw > n)
		nw = n ? (unsigned)n : 1;
	struct worker w[4] = {0};
	pthread_t tid[4];
	bool started[4] = {false};
	const EVP_MD *sha = EVP_sha256();
	EVP_MAC *poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);

	if (!poly)
		BUG("cannot set up Poly1305 (OpenSSL)");
	pthread_mutex_init(&p.mu, NULL);
	atomic_init(&p.next, 0);
	atomic_init(&p.failed, false);
	for (unsigned i = 0; i < nw; i++) {
		w[i].pool = &p;
		w[i].id = i;
		void *buf = NULL;
		if (posix_memalign(&buf, PAGE, BS) != 0)
			BUG("out of memory");
		w[i].buf = buf;
		w[i].zbuf = xmalloc(BLOCKSTORE_FILE_MAX);
		w[i].md = EVP_MD_CTX_new();
		w[i].mac = EVP_MAC_CTX_new(poly);
		if (!w[i].md || !EVP_DigestInit_ex(w[i].md, sha, NULL) || !w[i].mac)
			BUG("cannot set up SHA-256 and Poly1305 (OpenSSL)");
	}
	/* Signals stay with the engine's main thread: workers start with all
	 * of them blocked. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 1; i < nw; i++)
		started[i] = pthread_create(&tid[i], NULL, worker_main, &w[i]) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	worker_main(&w[0]);
	for (unsigned i = 0; i < nw; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		sum->bytes_read += w[i].bytes_read;
		sum->blocks_data += w[i].blocks_data;
		sum->blocks_new += w[i].blocks_new;
		sum->blocks_hashed += w[i].blocks_hashed;
		sum->bytes_new += w[i].bytes_new;
		sum->bytes_stored += w[i].bytes_stored;
		free(w[i].buf);
		free(w[i].zbuf);
		EVP_MD_CTX_free(w[i].md);
		EVP_MAC_CTX_free(w[i].mac);
	}
	EVP_MAC_free(poly);
	pthread_mutex_destroy(&p.mu);
	if (p.err) {
		if (err && !*err)
			*err = p.err;
		else
			af_error_free(p.err);
		return -1;
	}
	return 0;
}

/* ---- the memo: fingerprints of the last checkpoint's blocks ---- */

/* Why a fingerprint may stand in for SHA-256 here: Poly1305 under a secret
 * random key is a universal hash.  For two different 512 KiB messages the
 * tags are equal with probability at most 8 * 2^15 / 2^106 = 2^-88 over the
 * key (Bernstein, "The Poly1305-AES message-authentication code", theorem
 * 3.3), whatever the content, as long as the content cannot depend on the
 * key.  It cannot: the key comes from OpenSSL's DRBG, lives only in the
 * engine's memory, and tags are never written anywhere or shown, so one key
 * may serve every block of a build (Poly1305's one key per message rule
 * protects tags an attacker can see).  Poly1305 runs at over 10 GB/s a core
 * here, about 6 times SHA-256; GMAC was slower and its carry-less multiply
 * code trips valgrind. */
struct ckpt_memo {
	unsigned char key[32];
	uint64_t nblocks;
	uint8_t (*tag)[TAG_LEN];
	uint8_t (*hash)[HASH_LEN];
	uint8_t *known; /* tag[b] and hash[b] are of one content */
};

struct ckpt_memo *ckpt_memo_new(void)
{
	struct ckpt_memo *m = xcalloc(1, sizeof(*m));
	if (RAND_priv_bytes(m->key, sizeof(m->key)) != 1) {
		free(m);
		return NULL;
	}
	return m;
}

void ckpt_memo_free(struct ckpt_memo *m)
{
	if (!m)
		return;
	OPENSSL_cleanse(m->key, sizeof(m->key));
	free(m->tag);
	free(m->hash);
	free(m->known);
	free(m);
}

/* Entries are only valid per block number of one image size. */
static void memo_fit(struct ckpt_memo *m, uint64_t nblocks)
{
	if (m->nblocks == nblocks && m->known)
		return;
	free(m->tag);
	free(m->hash);
	free(m->known);
	m->nblocks = nblocks;
	m->tag = xcalloc(nblocks ? nblocks : 1, TAG_LEN);
	m->hash = xcalloc(nblocks ? nblocks : 1, HASH_LEN);
	m->known = xcalloc(nblocks ? nblocks : 1, 1);
}

static int worker_tag(struct worker *w, const struct ckpt_memo *m, const void *data,
		      uint8_t out[TAG_LEN])
{
	size_t len = 0;
	if (!EVP_MAC_init(w->mac, m->key, sizeof(m->key), NULL) ||
	    !EVP_MAC_update(w->mac, data, BS) || !EVP_MAC_final(w->mac, out, &len, TAG_LEN) ||
	    len != TAG_LEN)
		return -1;
	return 0;
}

/* Entry b is written by one worker only during a pool run. */
static void memo_set(struct ckpt_memo *m, uint64_t b, const uint8_t tag[TAG_LEN],
		     const uint8_t hash[HASH_LEN])
{
	memcpy(m->tag[b], tag, TAG_LEN);
	memcpy(m->hash[b], hash, HASH_LEN);
	m->known[b] = 1;
}

/* Remembers block b, whose content DATA is known to have SHA-256 HASH. */
static int memo_record(struct ckpt_memo *m, struct worker *w, uint64_t b, const void *data,
		       const uint8_t hash[HASH_LEN])
{
	uint8_t tag[TAG_LEN];
	if (worker_tag(w, m, data, tag) < 0)
		return -1;
	memo_set(m, b, tag, hash);
	return 0;
}

/* ---- checkpoint files ---- */

/* is_data values: BLOCK_DATA is checkpoint.h's 1; BLOCK_NEW marks data stored by this ckpt_take. */
enum { BLOCK_ZERO = 0, BLOCK_DATA = 1, BLOCK_NEW = 2 };

void ckpt_list_release(struct ckpt_list *c)
{
	free(c->hash);
	free(c->is_data);
}

static void ckpt_alloc(struct ckpt_list *c, uint64_t size)
{
	c->size = size;
	c->nblocks = (size + BS - 1) / BS;
	c->hash = xcalloc(c->nblocks ? c->nblocks : 1, HASH_LEN);
	c->is_data = xcalloc(c->nblocks ? c->nblocks : 1, 1);
}

/* Written by hand rather than through jansson: an image of many GiB has a
 * long "blocks" array, and a json_t per entry would cost far more memory
 * than the text. */
static char *ckpt_serialise(const struct ckpt_list *c, size_t *len)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "{\"version\":1,\"size\":%" PRIu64 ",\"block_size\":%zu,\"blocks\":[",
		    c->size, BS);
	for (uint64_t b = 0; b < c->nblocks; b++) {
		char hex[65];
		if (b)
			strbuf_add(&sb, ",", 1);
		if (!c->is_data[b]) {
			strbuf_add(&sb, "null", 4);
			continue;
		}
		hex_encode(c->hash[b], HASH_LEN, hex);
		strbuf_addf(&sb, "\"%s\"", hex);
	}
	strbuf_addstr(&sb, "]}\n");
	*len = sb.len;
	return strbuf_detach(&sb);
}

int ckpt_list_parse(const char *text, size_t len, const char *what, struct ckpt_list *c,
		    struct af_error **err)
{
	json_error_t jerr;
	_cleanup_json_ json_t *root = json_loadb(text, len, 0, &jerr);
	if (!root)
		return af_error_set(err, 0, "checkpoint '%s': invalid JSON at line %d: %s", what,
				    jerr.line, jerr.text);
	json_t *blocks = json_object_get(root, "blocks");
	json_t *size = json_object_get(root, "size");
	if (json_integer_value(json_object_get(root, "version")) != 1 ||
	    json_integer_value(json_object_get(root, "block_size")) != (json_int_t)BS ||
	    !json_is_integer(size) || json_integer_value(size) < 0 || !json_is_array(blocks))
		return af_error_set(
		    err, 0, "checkpoint '%s': not a version 1 checkpoint with %zu-byte blocks",
		    what, BS);
	ckpt_alloc(c, (uint64_t)json_integer_value(size));
	if (json_array_size(blocks) != c->nblocks) {
		ckpt_list_release(c);
		return af_error_set(err, 0,
				    "checkpoint '%s': %zu blocks listed for %" PRIu64 " bytes",
				    what, json_array_size(blocks), c->size);
	}
	for (size_t b = 0; b < c->nblocks; b++) {
		json_t *e = json_array_get(blocks, b);
		if (json_is_null(e))
			continue;
		if (!hex_to_hash(json_string_value(e), c->hash[b])) {
			ckpt_list_release(c);
			return af_error_set(
			    err, 0, "checkpoint '%s': block %zu is not a SHA-256 hex", what, b);
		}
		c->is_data[b] = BLOCK_DATA;
	}
	return 0;
}

int ckpt_list_load(const char *dir, const char *key, struct ckpt_list *c, struct af_error **err)
{
	_cleanup_free_ char *path = ckpt_path(dir, key);
	size_t len;

	if (check_key(key, err) < 0)
		return -1;
	_cleanup_free_ char *text = read_file(path, &len, err);
	if (!text)
		return -1;
	return ckpt_list_parse(text, len, path, c, err);
}

/* ---- taking a checkpoint ---- */

struct take {
	const char *image;
	int img_fd;
	int blocks_fd;
	struct ckpt_list c;
	struct ckpt_memo *memo; /* may be NULL */
	uint64_t *todo;         /* block numbers that may hold data */
	size_t ntodo;
};

/* Block numbers touched by allocated extents.  Holes read as zero and are
 * skipped without reading; a block device, or a filesystem without
 * SEEK_DATA, is read whole. */
static int list_data_blocks(struct take *t, bool seek_data, struct af_error **err)
{
	uint64_t nb = t->c.nblocks;
	t->todo = xreallocarray(NULL, nb ? nb : 1, sizeof(*t->todo));
	t->ntodo = 0;
	if (!seek_data) {
		for (uint64_t b = 0; b < nb; b++)
			t->todo[t->ntodo++] = b;
		return 0;
	}
	off_t off = 0;
	while ((uint64_t)off < t->c.size) {
		off_t data = lseek(t->img_fd, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0 && (errno == EINVAL || errno == EOPNOTSUPP))
			return list_data_blocks(t, false, err);
		if (data < 0)
			return af_error_set(err, errno, "cannot find data in '%s'", t->image);
		off_t hole = lseek(t->img_fd, data, SEEK_HOLE);
		if (hole < 0)
			return af_error_set(err, errno, "cannot find holes in '%s'", t->image);
		uint64_t first = (uint64_t)data / BS, last = ((uint64_t)hole - 1) / BS;
		if (t->ntodo && t->todo[t->ntodo - 1] >= first)
			first = t->todo[t->ntodo - 1] + 1;
		for (uint64_t b = first; b <= last && b < nb; b++)
			t->todo[t->ntodo++] = b;
		off = hole;
	}
	return 0;
}

static int store_block(struct take *t, struct worker *w, uint64_t b, const unsigned char *data,
		       struct af_error **err)
{
	size_t stored = 0;
	if (blockstore_put(t->blocks_fd, t->c.hash[b], data, w->zbuf, w->id, &stored, err) < 0)
		return -1;
	t->c.is_data[b] = BLOCK_NEW;
	w->blocks_new++;
	w->bytes_new += BS;
	w->bytes_stored += stored;
	return 0;
}

/* The block's SHA-256 into t->c.hash[b]: from the memo when the block's
 * fingerprint did not change since it was last hashed, else computed (and
 * remembered). */
static int block_hash(struct take *t, struct worker *w, uint64_t b, const unsigned char *data,
		      struct af_error **err)
{
	struct ckpt_memo *m = t->memo;
	uint8_t tag[TAG_LEN];
	if (m && worker_tag(w, m, data, tag) < 0)
		return af_error_openssl(err, "Poly1305 failed (OpenSSL)");
	if (m && m->known[b] && !memcmp(m->tag[b], tag, TAG_LEN)) {
		memcpy(t->c.hash[b], m->hash[b], HASH_LEN);
		return 0;
	}
	if (blockstore_sha256(w->md, data, t->c.hash[b]) < 0)
		return af_error_openssl(err, "SHA-256 failed (OpenSSL)");
	w->blocks_hashed++;
	if (m)
		memo_set(m, b, tag, t->c.hash[b]);
	return 0;
}

/* Reads a block into w->buf, the last one zero-padded.  Not mmap: faulting
 * the pages in cost as much as copying them, and mapped pages count in the
 * engine's resident size. */
static const unsigned char *take_read(struct take *t, struct worker *w, uint64_t off, size_t len,
				      struct af_error **err)
{
	ssize_t n = pread_all(t->img_fd, w->buf, len, (off_t)off);
	if (n < 0) {
		af_error_set(err, errno, "cannot read '%s' at byte %" PRIu64, t->image, off);
		return NULL;
	}
	if ((size_t)n != len) {
		af_error_set(err, 0, "image '%s' shrank while it was read; is it in use?",
			     t->image);
		return NULL;
	}
	memset(w->buf + len, 0, BS - len);
	return w->buf;
}

static int take_one(struct worker *w, size_t item, struct af_error **err)
{
	struct take *t = w->pool->ctx;
	uint64_t b = t->todo[item];
	uint64_t off = b * BS;
	size_t len = t->c.size - off < BS ? (size_t)(t->c.size - off) : BS;

	const unsigned char *data = take_read(t, w, off, len, err);
	if (!data)
		return -1;
	w->bytes_read += len;
	if (mem_is_zero(data, BS))
		return 0;
	if (block_hash(t, w, b, data, err) < 0)
		return -1;
	t->c.is_data[b] = BLOCK_DATA;
	w->blocks_data++;
	/* The memo vouches for content, not for the store: a block it knows was
	 * present at the last checkpoint, but `amiforge clean` may have run. */
	if (blockstore_present(t->blocks_fd, t->c.hash[b]))
		return 0;
	return store_block(t, w, b, data, err);
}

static int take_open(struct take *t, const char *image, struct af_error **err)
{
	struct stat st;
	t->img_fd = open(image, O_RDONLY | O_CLOEXEC);
	if (t->img_fd < 0)
		return af_error_set(err, errno, "cannot open image '%s'", image);
	if (fstat(t->img_fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s'", image);
	uint64_t size;
	if (image_size(t->img_fd, image, &st, &size, err) < 0)
		return -1;
	ckpt_alloc(&t->c, size);
	posix_fadvise(t->img_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return list_data_blocks(t, S_ISREG(st.st_mode), err);
}

int ckpt_take(const char *dir, const char *key, const char *image, struct ckpt_stats *stats,
	      struct af_error **err)
{
	return ckpt_take_memo(dir, key, image, NULL, stats, err);
}

int ckpt_take_memo(const char *dir, const char *key, const char *image, struct ckpt_memo *memo,
		   struct ckpt_stats *stats, struct af_error **err)
{
	double start = now_monotonic();
	struct take t = {.image = image, .img_fd = -1, .blocks_fd = -1, .memo = memo};
	struct worker sum = {0};
	_cleanup_free_ char *blocks_dir = path_join(dir, "blocks");
	_cleanup_free_ char *path = NULL, *text = NULL;
	size_t len;
	int ret = -1;

	if (check_key(key, err) < 0 || mkdir_p(blocks_dir, 0700, err) < 0)
		goto out;
	t.blocks_fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t.blocks_fd < 0) {
		af_error_set(err, errno, "cannot open '%s'", blocks_dir);
		goto out;
	}
	if (take_open(&t, image, err) < 0)
		goto out;
	if (memo)
		memo_fit(memo, t.c.nblocks);
	if (pool_run(t.ntodo, &t, take_one, &sum, err) < 0)
		goto out;
	path = ckpt_path(dir, key);
	text = ckpt_serialise(&t.c, &len);
	if (write_file_atomic(path, text, len, 0600, err) < 0)
		goto out;
	if (stats)
		*stats = (struct ckpt_stats){
		    .image_size = t.c.size,
		    .blocks_total = t.c.nblocks,
		    .blocks_data = sum.blocks_data,
		    .blocks_new = sum.blocks_new,
		    .blocks_hashed = sum.blocks_hashed,
		    .bytes_read = sum.bytes_read,
		    .bytes_new = sum.bytes_new,
		    .bytes_stored = sum.bytes_stored,
		    .seconds = now_monotonic() - start,
		};
	log_debug("checkpoint %.12s: %" PRIu64 " of %" PRIu64 " blocks hold data, %" PRIu64
		  " hashed, %" PRIu64 " new (%" PRIu64 " bytes stored), %.2fs",
		  key, sum.blocks_data, t.c.nblocks, sum.blocks_hashed, sum.blocks_new,
		  sum.bytes_stored, now_monotonic() - start);
	ret = 0;
out:
	if (ret < 0)
		af_error_wrap(err, "cannot checkpoint '%s' as %s", image, key);
	if (t.img_fd >= 0)
		close(t.img_fd);
	if (t.blocks_fd >= 0)
		close(t.blocks_fd);
	free(t.todo);
	ckpt_list_release(&t.c);
	return ret;
}

/* ---- restoring ---- */

struct restore {
	const char *key;
	const char *image;
	const char *blocks_dir;
	int blocks_fd;
	int out_fd;
	bool is_blk;
	struct ckpt_list c;
	struct ckpt_memo *memo; /* may be NULL */
	uint64_t *todo;         /* data blocks */
	size_t ntodo;
};

/* A regular file stays sparse: only the non-zero pages of a block are
 * written into the freshly truncated file. */
static int write_sparse(struct restore *r, const unsigned char *buf, size_t len, uint64_t off,
			struct af_error **err)
{
	size_t i = 0;
	while (i < len) {
		size_t n = len - i < PAGE ? len - i : PAGE;
		if (mem_is_zero(buf + i, n)) {
			i += n;
			continue;
		}
		size_t j = i + n;
		while (j < len) {
			size_t m = len - j < PAGE ? len - j : PAGE;
			if (mem_is_zero(buf + j, m))
				break;
			j += m;
		}
		if (pwrite_all(r->out_fd, buf + i, j - i, (off_t)(off + i)) < 0)
			return af_error_set(err, errno, "cannot write '%s'", r->image);
		i = j;
	}
	return 0;
}

static int restore_one(struct worker *w, size_t item, struct af_error **err)
{
	struct restore *r = w->pool->ctx;
	uint64_t b = r->todo[item], off = b * BS;
	size_t len = r->c.size - off < BS ? (size_t)(r->c.size - off) : BS;

	if (blockstore_read(r->blocks_fd, r->blocks_dir, r->c.hash[b], w->buf, w->zbuf, w->md, err) <
	    0)
		return -1;
	if (r->memo && memo_record(r->memo, w, b, w->buf, r->c.hash[b]) < 0)
		return af_error_openssl(err, "Poly1305 failed (OpenSSL)");
	if (!r->is_blk)
		return write_sparse(r, w->buf, len, off, err);
	if (pwrite_all(r->out_fd, w->buf, len, (off_t)off) < 0)
		return af_error_set(err, errno, "cannot write '%s'", r->image);
	return 0;
}

static int zero_range(struct restore *r, uint64_t off, uint64_t len, struct af_error **err)
{
	uint64_t range[2] = {off, len};
	if (ioctl(r->out_fd, BLKZEROOUT, range) == 0)
		return 0;
	static const unsigned char zeros[64 * 1024];
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		if (pwrite_all(r->out_fd, zeros, n, (off_t)off) < 0)
			return af_error_set(err, errno, "cannot zero '%s' at byte %" PRIu64,
					    r->image, off);
		off += n;
		len -= n;
	}
	return 0;
}

static int zero_null_blocks(struct restore *r, struct af_error **err)
{
	uint64_t b = 0;
	while (b < r->c.nblocks) {
		if (r->c.is_data[b]) {
			b++;
			continue;
		}
		uint64_t first = b;
		while (b < r->c.nblocks && !r->c.is_data[b])
			b++;
		uint64_t end = b * BS < r->c.size ? b * BS : r->c.size;
		if (zero_range(r, first * BS, end - first * BS, err) < 0)
			return -1;
	}
	return 0;
}

/* A block device is written in place, so every block is checked to exist
 * before the first write. */
static int restore_blockdev(struct restore *r, struct worker *sum, struct af_error **err)
{
	uint64_t devsize;
	struct stat st;
	r->out_fd = open(r->image, O_WRONLY | O_EXCL | O_CLOEXEC);
	if (r->out_fd < 0)
		return af_error_set(err, errno, "cannot open '%s'", r->image);
	if (fstat(r->out_fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s'", r->image);
	if (image_size(r->out_fd, r->image, &st, &devsize, err) < 0)
		return -1;
	if (devsize < r->c.size)
		return af_error_set(err, 0,
				    "block device '%s' (%" PRIu64 " bytes) is smaller than the "
				    "checkpoint (%" PRIu64 " bytes)",
				    r->image, devsize, r->c.size);
	for (size_t i = 0; i < r->ntodo; i++) {
		char name[BLOCKSTORE_NAME_LEN];
		if (blockstore_present(r->blocks_fd, r->c.hash[r->todo[i]]))
			continue;
		blockstore_name(r->c.hash[r->todo[i]], name);
		return af_error_set(err, 0, "block '%s/%s' is missing%s", r->blocks_dir, name,
				    BLOCKSTORE_DAMAGED_HINT);
	}
	if (pool_run(r->ntodo, r, restore_one, sum, err) < 0 || zero_null_blocks(r, err) < 0)
		return -1;
	if (fsync(r->out_fd) < 0)
		return af_error_set(err, errno, "cannot sync '%s'", r->image);
	return 0;
}

/* A regular file is rebuilt beside the image and renamed over it, so a
 * failure leaves the old image as it was. */
static int restore_file(struct restore *r, mode_t mode, struct worker *sum, struct af_error **err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.restore", r->image);
	r->out_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (r->out_fd < 0)
		return af_error_set(err, errno, "cannot create '%s'", tmp);
	if (ftruncate(r->out_fd, (off_t)r->c.size) < 0) {
		af_error_set(err, errno, "cannot set the size of '%s'", tmp);
		goto fail;
	}
	if (pool_run(r->ntodo, r, restore_one, sum, err) < 0)
		goto fail;
	if (fsync(r->out_fd) < 0) {
		af_error_set(err, errno, "cannot sync '%s'", tmp);
		goto fail;
	}
	if (rename(tmp, r->image) < 0) {
		af_error_set(err, errno, "cannot rename '%s' to '%s'", tmp, r->image);
		goto fail;
	}
	return fsync_parent_dir(r->image, err);
fail:
	unlink(tmp);
	return -1;
}

int ckpt_restore(const char *dir, const char *key, const char *image, struct af_error **err)
{
	return ckpt_restore_memo(dir, key, image, NULL, err);
}

int ckpt_restore_memo(const char *dir, const char *key, const char *image, struct ckpt_memo *memo,
		      struct af_error **err)
{
	_cleanup_free_ char *blocks_dir = path_join(dir, "blocks");
	struct restore r = {.key = key,
			    .image = image,
			    .blocks_dir = blocks_dir,
			    .blocks_fd = -1,
			    .out_fd = -1,
			    .memo = memo};
	struct worker sum = {0};
	struct stat st;
	int ret = -1;

	if (ckpt_list_load(dir, key, &r.c, err) < 0)
		goto out;
	if (memo)
		memo_fit(memo, r.c.nblocks);
	r.todo = xreallocarray(NULL, r.c.nblocks ? r.c.nblocks : 1, sizeof(*r.todo));
	for (uint64_t b = 0; b < r.c.nblocks; b++)
		if (r.c.is_data[b])
			r.todo[r.ntodo++] = b;
	r.blocks_fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r.blocks_fd < 0 && r.ntodo) {
		af_error_set(err, errno, "cannot open '%s'", blocks_dir);
		goto out;
	}
	bool exists = stat(image, &st) == 0;
	r.is_blk = exists && S_ISBLK(st.st_mode);
	if (r.is_blk)
		ret = restore_blockdev(&r, &sum, err);
	else
		ret = restore_file(&r, exists ? st.st_mode & 07777 : 0600, &sum, err);
out:
	if (ret < 0)
		af_error_wrap(err, "cannot restore '%s' from checkpoint %s", image, key);
	if (r.out_fd >= 0)
		close(r.out_fd);
	if (r.blocks_fd >= 0)
		close(r.blocks_fd);
	free(r.todo);
	ckpt_list_release(&r.c);
	return ret;
}

/* ---- inspection and cleanup ---- */

bool ckpt_usable(const char *dir, const char *key)
{
	struct ckpt_list c = {0};
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *blocks_dir = path_join(dir, "blocks");
	bool ok = true;

	if (ckpt_list_load(dir, key, &c, &err) < 0)
		return false;
	_cleanup_fd_ int fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (uint64_t b = 0; ok && b < c.nblocks; b++)
		if (c.is_data[b])
			ok = fd >= 0 && blockstore_present(fd, c.hash[b]);
	ckpt_list_release(&c);
	return ok;
}

/* Only names this module makes are removed: a mistaken --state never costs
 * anything else. */
int ckpt_clean(const char *dir, struct af_error **err)
{
	_cleanup_free_ char *blocks_dir = path_join(dir, "blocks");
	_cleanup_dir_ DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		if (errno == ENOENT)
			return 0;
		return af_error_set(err, errno, "cannot open checkpoint directory '%s'", dir);
	}
	while ((de = readdir(d)))
		if ((str_has_suffix(de->d_name, ".ckpt") ||
		     str_has_suffix(de->d_name, ".ckpt.tmp")) &&
		    unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			return af_error_set(err, errno, "cannot remove '%s/%s'", dir, de->d_name);

	return blockstore_clean(blocks_dir, err);
}

uint64_t ckpt_store_bytes(const char *dir)
{
	_cleanup_free_ char *blocks_dir = path_join(dir, "blocks");
	return blockstore_bytes(blocks_dir);
}

int ckpt_list_write(const char *dir, const char *name, const struct ckpt_list *list,
		    struct af_error **err)
{
	_cleanup_free_ char *path = ckpt_path(dir, name);
	size_t len;

	if (check_key(name, err) < 0 || mkdir_p(dir, 0700, err) < 0)
		return -1;
	_cleanup_free_ char *text = ckpt_serialise(list, &len);
	return write_file_atomic(path, text, len, 0600, err);
}
