/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers every layer uses: paths, files, hashing, hex, strings
 * (allocation and strbuf: mem.h, included here). */
#ifndef AMIFORGE_UTIL_H
#define AMIFORGE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct af_error;

#include "amiforge/mem.h"

/* "a" + "/" + "b", without doubling slashes.  Caller frees. */
char *path_join(const char *a, const char *b);
/* mkdir -p with the given mode for created directories.  0 or -1 + err. */
int mkdir_p(const char *path, mode_t mode, struct af_error **err);
/* Reads a whole file; *len gets its size; result NUL-terminated.  NULL + err. */
char *read_file(const char *path, size_t *len, struct af_error **err);
/* Writes data to PATH atomically (PATH.tmp, fsync, rename, fsync dir).
 * 0 or -1 + err. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
		      struct af_error **err);
/* fsync the directory containing PATH.  0 or -1 + err. */
int fsync_parent_dir(const char *path, struct af_error **err);
/* Writes all of buf, retrying on EINTR and short writes.  0 or -1 (errno). */
int write_all(int fd, const void *buf, size_t n);
/* Reads up to n bytes, retrying on EINTR and short reads; returns bytes read
 * (less than n only at EOF) or -1 (errno). */
ssize_t read_all(int fd, void *buf, size_t n);
/* pread/pwrite loops with the same conventions. */
ssize_t pread_all(int fd, void *buf, size_t n, off_t off);
int pwrite_all(int fd, const void *buf, size_t n, off_t off);

/* Hex of bytes: the one encoder and decoder.  hex_digits is the lower-case
 * digit table, for encoders of other shapes (UUIDs, escapes).  hex_encode
 * writes 2 * N lower-case digits and a NUL to OUT (2 * N + 1 bytes) and
 * returns OUT; hex_encode_dup returns the same in a new string (caller
 * frees).  hex_digit_value gives 0..15 for a digit of either case, or
 * -1.  hex_decode decodes the whole string IN (digits of either case, an
 * even number of them) into at most CAP bytes at OUT and sets *N (may be
 * NULL) to their number; 0, or -1 if IN is not such a string or too long
 * (OUT may then be partly written). */
extern const char hex_digits[];
char *hex_encode(const void *in, size_t n, char *out);
char *hex_encode_dup(const void *in, size_t n);
int hex_digit_value(char c);
int hex_decode(const char *in, void *out, size_t cap, size_t *n);

/* SHA-256 helpers (OpenSSL EVP).  hex must hold 65 bytes. */
void sha256_hex(const void *data, size_t len, char hex[65]);
/* Hex SHA-256 of a file's content, or of a directory tree (paths, modes,
 * symlink targets and file contents, in sorted order).  0 or -1 + err. */
int sha256_path_hex(const char *path, char hex[65], struct af_error **err);

/* A UUID (lower case, 36 characters + NUL) from SHA-256(seed ":" purpose)
 * with the version-4/variant bits set: random-looking, but the same for the
 * same stage key, so rebuilds are identical. */
void uuid_derive(const char *seed, const char *purpose, char out[37]);
/* The 16 bytes U as a lower-case UUID string. */
void uuid_format(const unsigned char u[16], char out[37]);

/* This process's peak resident set (VmHWM) in KiB, or -1. */
long proc_peak_rss_kib(void);

/* Monotonic clock in seconds. */
double now_monotonic(void);

bool str_has_prefix(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);

/* Formats a byte count as "1.5 GiB" into buf.  Returns buf. */
char *format_size(uint64_t bytes, char *buf, size_t bufsz);

/* A copy of S safe to print on a terminal (caller frees): control
 * characters (C0, DEL, C1), Unicode bidirectional overrides and bytes that
 * are not UTF-8 become escapes ("\n", "\t", "\r", "\xHH", "\u202e") and a
 * backslash is doubled, so text from a journal or a recipe can neither move
 * the cursor, recolour the terminal nor pass for other text.  NULL gives
 * "". */
char *str_printable(const char *s);

/* Removes NAME (relative to DIRFD) and, when it is a directory, everything
 * under it, walking by file descriptor (openat, unlinkat): no shell, no
 * path built for a syscall.  A symbolic link is removed, never followed.  A
 * directory on another filesystem or mount than DIRFD (a mount point) is
 * refused before anything under it is touched, with errnum EXDEV.  A
 * missing NAME is not an error.  SHOWN names NAME in messages.  0 or -1 +
 * err. */
int rm_tree_at(int dirfd, const char *name, const char *shown, struct af_error **err);

#endif
