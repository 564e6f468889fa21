/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoints to and from the remote store (remote.h): block files copied
 * byte for byte in parallel (an HTTP batch), the list after its blocks, so
 * that a list in the store is always complete.  Downloads are verified
 * block by block against their names before they enter the local store. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/blockstore.h"
#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/remote.h"
#include "amiforge/util.h"

#define HASH_LEN BLOCKSTORE_HASH_LEN
#define PULL_TRIES 2 /* a block that fails its hash is fetched once more */

int remote_ckpt_keys(struct remote *r, json_t **keys, struct af_error **err)
{
	_cleanup_free_ char *prefix = remote_name(r, "checkpoints/");
	struct s3_object_list list = { 0 };
	*keys = NULL;
	if (s3_list_objects(&r->s3, r->bucket, prefix, 0, &list, err) < 0)
		return af_error_wrap(err, "remote %s", r->url);
	json_t *set = json_object();
	size_t plen = strlen(prefix);
	for (size_t i = 0; i < list.n; i++) {
		const char *k = list.v[i].key + plen;
		size_t n = strlen(k);
		if (n == 64 + 5 && str_has_suffix(k, ".ckpt")) {
			_cleanup_free_ char *dkey = xstrndup(k, 64);
			json_object_set_new(set, dkey, json_true());
		}
	}
	s3_object_list_release(&list);
	*keys = set;
	return 0;
}

int remote_ckpt_touch(struct remote *r, const char *dkey, struct af_error **err)
{
	_cleanup_free_ char *name = remote_name(r, "used/%s", dkey);
	return s3_put_object_cond(&r->s3, r->bucket, name, "", 0, NULL, NULL, err);
}

/* ---- the distinct data blocks of a list ---- */

struct hashes {
	uint8_t (*v)[HASH_LEN];
	size_t n;
};

static void hashes_of(const struct ckpt_list *l, const json_t *known, struct hashes *out,
		      bool (*skip)(void *arg, const uint8_t *h), void *arg)
{
	_cleanup_json_ json_t *seen = json_object();
	out->v = xcalloc(l->nblocks ? l->nblocks : 1, HASH_LEN);
	out->n = 0;
	for (uint64_t b = 0; b < l->nblocks; b++) {
		char hex[2 * HASH_LEN + 1];
		if (!l->is_data[b])
			continue;
		hex_encode(l->hash[b], HASH_LEN, hex);
		if (json_object_get(seen, hex) || (known && json_object_get(known, hex)) ||
		    (skip && skip(arg, l->hash[b])))
			continue;
		json_object_set_new(seen, hex, json_true());
		memcpy(out->v[out->n++], l->hash[b], HASH_LEN);
	}
}

static void known_add(json_t *known, const uint8_t *h)
{
	char hex[2 * HASH_LEN + 1];
	if (!known)
		return;
	hex_encode(h, HASH_LEN, hex);
	json_object_set_new(known, hex, json_true());
}

static char *block_key(struct remote *r, const uint8_t *h)
{
	char name[BLOCKSTORE_NAME_LEN];
	blockstore_name(h, name);
	return remote_name(r, "blocks/%s", name);
}

/* ---- one batch of block transfers, pushing or pulling ---- */

struct xfer_item {
	struct http_batch_item item;
	struct s3_batch_req req;
	char *key;
	unsigned char *file; /* push: the block file */
	size_t idx;          /* into hashes */
	bool busy;
};

struct xfer {
	struct remote *r;
	bool push;
	int blocks_fd;
	const char *blocks_dir;
	struct hashes todo;
	size_t next;
	struct xfer_item *pool;
	int parallel;
	json_t *known;
	struct remote_xfer *st;
	unsigned char *block, *zbuf; /* pull: verification scratch */
	EVP_MD_CTX *md;
	void (*tick)(void *arg);
	void *tick_arg;
};

static struct xfer_item *free_item(struct xfer *x)
{
	for (int i = 0; i < x->parallel; i++)
		if (!x->pool[i].busy)
			return &x->pool[i];
	BUG("remote transfer: more requests in flight than items");
}

static int xfer_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct xfer *x = data;
	if (x->tick)
		x->tick(x->tick_arg);
	if (x->next >= x->todo.n)
		return 0;
	size_t idx = x->next++;
	struct xfer_item *it = free_item(x);
	*it = (struct xfer_item){ .idx = idx, .busy = true, .file = it->file };
	it->key = block_key(x->r, x->todo.v[idx]);
	if (x->push) {
		size_t len;
		if (!it->file)
			it->file = xmalloc(BLOCKSTORE_FILE_MAX);
		if (blockstore_load_file(x->blocks_fd, x->blocks_dir, x->todo.v[idx], it->file, &len,
					 err) < 0) {
			it->busy = false;
			free(it->key);
			return -1;
		}
		struct s3_cond cond = { .if_none_match_any = true };
		s3_batch_put_init(&it->req, &x->r->s3, x->r->bucket, it->key, it->file, len, &cond);
		x->st->bytes += len;
	} else {
		s3_batch_get_init(&it->req, &x->r->s3, x->r->bucket, it->key);
	}
	it->item = (struct http_batch_item){ .req = it->req.req, .user = it };
	*item = &it->item;
	return 1;
}

/* A block whose content failed its hash is fetched again at once, on its
 * own: a bit flipped in transit should not cost the checkpoint. */
static int refetch(struct xfer *x, struct xfer_item *it, char **body, size_t *len,
		   struct af_error **err)
{
	bool found;
	log_warn("block %s from s3://%s does not match its hash; fetching it again", it->key,
		 x->r->bucket);
	if (s3_get_object_found(&x->r->s3, x->r->bucket, it->key, body, len, NULL, &found, err) < 0)
		return -1;
	if (!found)
		return af_error_set(err, 0, "block s3://%s/%s is gone", x->r->bucket, it->key);
	return 0;
}

/* A pulled block: verified, then stored.  0 or -1 + err. */
static int pull_store(struct xfer *x, struct xfer_item *it, struct af_error **err)
{
	const uint8_t *h = x->todo.v[it->idx];
	const char *body = it->item.resp.body;
	size_t len = it->item.resp.body_len;
	_cleanup_free_ char *again = NULL;
	for (int tries = 1; !blockstore_verify_file(body, len, h, x->block, x->md); tries++) {
		if (tries >= PULL_TRIES)
			return af_error_set(err, 0, "block s3://%s/%s is corrupt (its content does not match its hash, %d times)",
					    x->r->bucket, it->key, tries);
		free(again);
		again = NULL;
		if (refetch(x, it, &again, &len, err) < 0)
			return -1;
		body = again;
	}
	if (blockstore_put_file(x->blocks_fd, h, body, len, (unsigned)it->idx, err) < 0)
		return -1;
	x->st->bytes += len;
	return 0;
}

static int xfer_outcome(struct xfer *x, struct xfer_item *it, struct af_error **err)
{
	const uint8_t *h = x->todo.v[it->idx];
	int o = x->push ? s3_batch_put_outcome(&it->item) : s3_batch_get_outcome(&it->item);
	if (o < 0) {
		*err = steal_pointer(&it->item.err);
		if (!*err)
			af_error_set(err, 0, "s3://%s/%s: failed", x->r->bucket, it->key);
		return -1;
	}
	if (!x->push && o == 1)
		return af_error_set(err, 0, "the remote checkpoint names block s3://%s/%s, which the store lacks",
				    x->r->bucket, it->key);
	if (!x->push && pull_store(x, it, err) < 0)
		return -1;
	if (o == 1)
		x->st->blocks_skip++;
	else
		x->st->blocks++;
	known_add(x->known, h);
	return 0;
}

static void item_release(struct xfer_item *it)
{
	http_response_release(&it->item.resp);
	af_error_free(it->item.err);
	it->item.err = NULL;
	s3_batch_req_release(&it->req);
	free(it->key);
	it->key = NULL;
	it->busy = false;
}

static int xfer_done(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct xfer *x = data;
	struct xfer_item *it = item->user;
	int r = xfer_outcome(x, it, err);
	item_release(it);
	return r;
}

static int xfer_run(struct xfer *x, struct af_error **err)
{
	x->pool = xcalloc((size_t)x->parallel, sizeof(*x->pool));
	if (!x->push) {
		x->block = xmalloc(BLOCKSTORE_BLOCK_SIZE);
		x->md = EVP_MD_CTX_new();
		if (!x->md || !EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
			BUG("cannot set up SHA-256");
	}
	const struct http_batch b = { .max_parallel = x->parallel, .next = xfer_next,
				      .done = xfer_done, .data = x };
	int r = x->todo.n ? http_batch_run(&b, err) : 0;
	for (int i = 0; i < x->parallel; i++) {
		if (x->pool[i].busy)
			item_release(&x->pool[i]);
		free(x->pool[i].file);
	}
	free(x->pool);
	free(x->block);
	EVP_MD_CTX_free(x->md);
	return r;
}

/* ---- push ---- */

int remote_ckpt_push(struct remote *r, const char *ckpt_dir, const char *dkey, json_t *known,
		     int parallel, void (*tick)(void *arg), void *tick_arg, struct remote_xfer *st,
		     struct af_error **err)
{
	double t0 = now_monotonic();
	struct ckpt_list l = { 0 };
	_cleanup_free_ char *blocks_dir = path_join(ckpt_dir, "blocks");
	_cleanup_free_ char *path = xasprintf("%s/%s.ckpt", ckpt_dir, dkey);
	size_t len;
	_cleanup_free_ char *text = read_file(path, &len, err);
	if (!text || ckpt_list_parse(text, len, path, &l, err) < 0)
		return -1;
	_cleanup_fd_ int fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct xfer x = { .r = r, .push = true, .blocks_fd = fd, .blocks_dir = blocks_dir,
			  .parallel = parallel, .known = known, .st = st, .tick = tick,
			  .tick_arg = tick_arg };
	*st = (struct remote_xfer){ 0 };
	hashes_of(&l, known, &x.todo, NULL, NULL);
	ckpt_list_release(&l);
	int rc = (fd < 0 && x.todo.n) ? af_error_set(err, errno, "cannot open '%s'", blocks_dir)
				      : xfer_run(&x, err);
	free(x.todo.v);
	if (rc == 0) {
		_cleanup_free_ char *name = remote_name(r, "checkpoints/%s.ckpt", dkey);
		struct s3_cond cond = { .if_none_match_any = true };
		rc = s3_put_object_cond(&r->s3, r->bucket, name, text, len, &cond, NULL, err);
		/* The list of that key is there already: a list names whole
		 * blocks only, and either is a valid state of the disk key. */
		if (rc < 0 && af_error_errno(*err) == S3_CONDITION_FAILED) {
			af_error_clear(err);
			rc = 0;
		}
	}
	if (rc == 0)
		rc = remote_ckpt_touch(r, dkey, err);
	st->seconds = now_monotonic() - t0;
	return rc < 0 ? af_error_wrap(err, "pushing checkpoint %.12s to %s", dkey, r->url) : 0;
}

/* ---- pull ---- */

static bool have_local(void *arg, const uint8_t *h)
{
	return blockstore_present(*(int *)arg, h);
}

static int fetch_list(struct remote *r, const char *dkey, char **text, size_t *len,
		      struct af_error **err)
{
	_cleanup_free_ char *name = remote_name(r, "checkpoints/%s.ckpt", dkey);
	bool found;
	if (s3_get_object_found(&r->s3, r->bucket, name, text, len, NULL, &found, err) < 0)
		return -1;
	if (!found)
		return af_error_set(err, ENOENT, "s3://%s/%s is gone", r->bucket, name);
	return 0;
}

int remote_ckpt_pull(struct remote *r, const char *ckpt_dir, const char *dkey, json_t *known,
		     int parallel, struct remote_xfer *st, struct af_error **err)
{
	double t0 = now_monotonic();
	*st = (struct remote_xfer){ 0 };
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ char *blocks_dir = path_join(ckpt_dir, "blocks");
	_cleanup_free_ char *path = xasprintf("%s/%s.ckpt", ckpt_dir, dkey);
	size_t len;
	struct ckpt_list l = { 0 };
	if (fetch_list(r, dkey, &text, &len, err) < 0 || ckpt_list_parse(text, len, path, &l, err) < 0 ||
	    mkdir_p(blocks_dir, 0700, err) < 0)
		return af_error_wrap(err, "pulling checkpoint %.12s from %s", dkey, r->url);
	_cleanup_fd_ int fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ckpt_list_release(&l);
		return af_error_set(err, errno, "cannot open '%s'", blocks_dir);
	}
	struct xfer x = { .r = r, .push = false, .blocks_fd = fd, .blocks_dir = blocks_dir,
			  .parallel = parallel, .known = known, .st = st };
	hashes_of(&l, NULL, &x.todo, have_local, &fd);
	int rc = xfer_run(&x, err);
	free(x.todo.v);
	for (uint64_t b = 0; rc == 0 && b < l.nblocks; b++)
		if (l.is_data[b])
			known_add(known, l.hash[b]);
	ckpt_list_release(&l);
	if (rc == 0)
		rc = write_file_atomic(path, text, len, 0600, err);
	if (rc == 0)
		rc = remote_ckpt_touch(r, dkey, err);
	st->seconds = now_monotonic() - t0;
	return rc < 0 ? af_error_wrap(err, "pulling checkpoint %.12s from %s", dkey, r->url) : 0;
}

int remote_ckpt_pull_list(struct remote *r, const char *ckpt_dir, const char *dkey,
			  struct af_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s.ckpt", ckpt_dir, dkey);
	if (access(path, F_OK) == 0)
		return 0;
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (fetch_list(r, dkey, &text, &len, err) < 0) {
		if (af_error_errno(*err) != ENOENT)
			return -1;
		af_error_clear(err);
		return 0;
	}
	return write_file_atomic(path, text, len, 0600, err);
}
