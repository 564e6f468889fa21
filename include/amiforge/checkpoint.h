/* SPDX-License-Identifier: Apache-2.0 */
/* Checkpoints: an image as the list of its 512 KiB blocks' SHA-256, the
 * shape of an EBS snapshot, with the blocks in a content-addressed store
 * (blockstore.h).  Layout under STATE/checkpoints:
 *   blocks/ab/abcdef...        one file per distinct non-zero block, named by
 *                              the SHA-256 of its 512 KiB of raw content
 *   KEY.ckpt                   JSON: {"version":1,"size":BYTES,"block_size":524288,
 *                               "blocks":[null | "hex", ...]}  (null = all zero)
 * Zero blocks are never stored; a block already present is not stored again.
 * Only allocated extents of the image are read (SEEK_DATA/SEEK_HOLE); holes
 * are zero blocks.  A restore is exact: byte-for-byte the image that was
 * checkpointed, and sparse where it was zero.
 *
 * Durability: KEY.ckpt is written atomically and fsync'd; block data is
 * written back by the kernel without waiting for it (waiting cost as much as
 * the checkpoint itself).  After a power loss a checkpoint can therefore
 * name a short or missing block: ckpt_usable() says false and ckpt_restore()
 * (which verifies every block's SHA-256) fails cleanly, and the runner falls
 * back to an earlier checkpoint.  A crash of the engine alone loses nothing. */
#ifndef AMIFORGE_CHECKPOINT_H
#define AMIFORGE_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "amiforge/blockstore.h"

struct af_error;

struct ckpt_stats {
	uint64_t image_size;     /* bytes */
	uint64_t blocks_total;   /* image_size / block size, rounded up */
	uint64_t blocks_data;    /* non-zero blocks */
	uint64_t blocks_new;     /* blocks written to the store by this call */
	uint64_t blocks_hashed;  /* data blocks whose SHA-256 was computed (see ckpt_memo) */
	uint64_t bytes_read;     /* bytes read from the image */
	uint64_t bytes_new;      /* raw bytes of the new blocks (512 KiB each) */
	uint64_t bytes_stored;   /* bytes written to the store (compressed, with headers) */
	double seconds;
};

/* What one build remembers between its checkpoints, in memory only: for
 * each block of the image, the SHA-256 and a keyed fingerprint (Poly1305
 * under a random key of this memo) of its content at the last checkpoint.  A block
 * whose fingerprint is unchanged is not hashed again, which makes the
 * checkpoint after a small stage a read of the image instead of a SHA-256
 * of all of it.  Entries are pairs of values of one content, so a memo stays
 * correct whatever happens to the image in between (restores included).
 * ckpt_memo_new() returns NULL only if no random key could be made; a NULL
 * memo means "hash everything". */
struct ckpt_memo;
struct ckpt_memo *ckpt_memo_new(void);
void ckpt_memo_free(struct ckpt_memo *memo);

/* Reads the image (a regular file or a block device; nothing may be mounted
 * from it, or the filesystem must be frozen) and records checkpoint KEY
 * under DIR.  The .ckpt file is written atomically and fsync'd; new blocks
 * are not waited for (see above).  stats may be NULL.  0 or -1 + err. */
int ckpt_take(const char *dir, const char *key, const char *image, struct ckpt_stats *stats,
	      struct af_error **err);
/* The same, remembering blocks in MEMO (may be NULL) for the next call. */
int ckpt_take_memo(const char *dir, const char *key, const char *image, struct ckpt_memo *memo,
		   struct ckpt_stats *stats, struct af_error **err);

/* Restores checkpoint KEY to IMAGE.  A regular file is rebuilt as a new
 * sparse file (IMAGE.restore, then renamed over IMAGE); a block device is
 * written in place, zero blocks zeroed.  Every block's hash is verified as it
 * is read; a missing or corrupt block is an error naming it and the image is
 * left untouched (regular file case).  0 or -1 + err. */
int ckpt_restore(const char *dir, const char *key, const char *image, struct af_error **err);
/* The same, remembering the restored blocks in MEMO (may be NULL), so that
 * the next ckpt_take_memo() does not hash them again. */
int ckpt_restore_memo(const char *dir, const char *key, const char *image, struct ckpt_memo *memo,
		      struct af_error **err);

/* A checkpoint's block list, as KEY.ckpt holds it: for block b,
 * is_data[b] is nonzero when it holds data, whose SHA-256 is hash[b]; a zero
 * block has is_data[b] == 0.  What the remote store copies and the
 * snapshot stage compares against a parent snapshot. */
struct ckpt_list {
	uint64_t size;    /* image bytes */
	uint64_t nblocks; /* size / 512 KiB, rounded up */
	uint8_t (*hash)[BLOCKSTORE_HASH_LEN];
	uint8_t *is_data;
};
/* Reads DIR/KEY.ckpt.  0 or -1 + err (naming the file). */
int ckpt_list_load(const char *dir, const char *key, struct ckpt_list *out, struct af_error **err);
/* Parses a .ckpt file's TEXT (LEN bytes); WHAT names it in messages.  0 or
 * -1 + err. */
int ckpt_list_parse(const char *text, size_t len, const char *what, struct ckpt_list *out,
		    struct af_error **err);
void ckpt_list_release(struct ckpt_list *l);

/* True if DIR/KEY.ckpt exists and every block it names is present (a whole
 * block file: its header and its length agree). */
bool ckpt_usable(const char *dir, const char *key);

/* Removes every checkpoint and block under DIR.  0 or -1 + err. */
int ckpt_clean(const char *dir, struct af_error **err);

/* Bytes the stored blocks under DIR take on disk (allocated blocks, for
 * status and bench). */
uint64_t ckpt_store_bytes(const char *dir);

/* Writes LIST as DIR/NAME.ckpt, atomically and fsync'd (0600), in KEY.ckpt's
 * format.  Its blocks need not be in the store: the snapshot stage records
 * this way what a snapshot holds when no checkpoint of the image says it.
 * 0 or -1 + err. */
int ckpt_list_write(const char *dir, const char *name, const struct ckpt_list *list,
		    struct af_error **err);

#endif
