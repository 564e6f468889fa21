/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a);
	while (la > 1 && a[la - 1] == '/')
		la--;
	while (*b == '/')
		b++;
	if (!*b)
		return xstrndup(a, la);
	return xasprintf("%.*s/%s", (int)la, a, b);
}

int mkdir_p(const char *path, mode_t mode, struct af_error **err)
{
	_cleanup_free_ char *p = xstrdup(path);
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return af_error_set(err, errno, "cannot create directory '%s'", p);
		*s = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return af_error_set(err, errno, "cannot create directory '%s'", path);
	if (!S_ISDIR(st.st_mode))
		return af_error_set(err, ENOTDIR, "cannot create directory '%s'", path);
	return 0;
}

char *read_file(const char *path, size_t *len, struct af_error **err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		af_error_set(err, errno, "cannot read '%s'", path);
		return NULL;
	}
	struct strbuf sb = STRBUF_INIT;
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			af_error_set(err, errno, "cannot read '%s'", path);
			strbuf_release(&sb);
			return NULL;
		}
		if (n == 0)
			break;
		strbuf_add(&sb, buf, (size_t)n);
	}
	if (len)
		*len = sb.len;
	return strbuf_detach(&sb);
}

int fsync_parent_dir(const char *path, struct af_error **err)
{
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	_cleanup_fd_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return af_error_set(err, errno, "cannot sync directory '%s'", dir);
	return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
		      struct af_error **err)
{
	/* A new name of our own (O_EXCL): a file or link planted at a
	 * predictable PATH.tmp.PID is never opened, let alone truncated. */
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "cannot write '%s'", tmp);
	if (fchmod(fd, mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		int errsv = errno;
		close(fd);
		unlink(tmp);
		return af_error_set(err, errsv, "cannot write '%s'", tmp);
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		int errsv = errno;
		unlink(tmp);
		return af_error_set(err, errsv, "cannot write '%s'", path);
	}
	return fsync_parent_dir(path, err);
}

int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

ssize_t read_all(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

ssize_t pread_all(int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, p + got, n - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	const char *p = buf;
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(fd, p + done, n - done, off + (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}


const char hex_digits[] = "0123456789abcdef";

char *hex_encode(const void *in, size_t n, char *out)
{
	const unsigned char *p = in;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex_digits[p[i] >> 4];
		out[2 * i + 1] = hex_digits[p[i] & 15];
	}
	out[2 * n] = '\0';
	return out;
}

char *hex_encode_dup(const void *in, size_t n)
{
	return hex_encode(in, n, xmalloc(2 * n + 1));
}

int hex_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, void *out, size_t cap, size_t *n)
{
	unsigned char *p = out;
	size_t len = strlen(in);
	if (len % 2 || len / 2 > cap)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = hex_digit_value(in[2 * i]), lo = hex_digit_value(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		p[i] = (unsigned char)(hi << 4 | lo);
	}
	if (n)
		*n = len / 2;
	return 0;
}

void sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		BUG("EVP_Digest(sha256) failed");
	hex_encode(md, 32, hex);
}

static int hash_file_into(EVP_MD_CTX *md, const char *path, struct af_error **err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return af_error_set(err, errno, "cannot read '%s'", path);
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return af_error_set(err, errno, "cannot read '%s'", path);
		if (n == 0)
			return 0;
		EVP_DigestUpdate(md, buf, (size_t)n);
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Hashes one tree entry as "path\0mode\0" then its content (file), target
 * (symlink) or children (directory, sorted), so renames, mode changes and
 * edits all change the digest. */
static int hash_tree_into(EVP_MD_CTX *md, const char *path, const char *rel, struct af_error **err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return af_error_set(err, errno, "cannot read '%s'", path);
	char head[64];
	int hl = snprintf(head, sizeof(head), "%o", (unsigned)st.st_mode);
	EVP_DigestUpdate(md, rel, strlen(rel) + 1);
	EVP_DigestUpdate(md, head, (size_t)hl + 1);
	if (S_ISREG(st.st_mode))
		return hash_file_into(md, path, err);
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		ssize_t n = readlink(path, target, sizeof(target));
		if (n < 0)
			return af_error_set(err, errno, "cannot read link '%s'", path);
		EVP_DigestUpdate(md, target, (size_t)n);
		return 0;
	}
	if (!S_ISDIR(st.st_mode))
		return 0;
	_cleanup_dir_ DIR *d = opendir(path);
	if (!d)
		return af_error_set(err, errno, "cannot read directory '%s'", path);
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	qsort(names, n, sizeof(*names), cmp_names);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			_cleanup_free_ char *child = path_join(path, names[i]);
			_cleanup_free_ char *crel = xasprintf("%s/%s", rel, names[i]);
			r = hash_tree_into(md, child, crel, err);
		}
		free(names[i]);
	}
	free(names);
	return r;
}

int sha256_path_hex(const char *path, char hex[65], struct af_error **err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md)
		BUG("out of memory");
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	struct stat st;
	int r;
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
		r = hash_file_into(md, path, err);
	else
		r = hash_tree_into(md, path, ".", err);
	unsigned char out[32];
	unsigned int outlen = 0;
	EVP_DigestFinal_ex(md, out, &outlen);
	EVP_MD_CTX_free(md);
	if (r < 0)
		return -1;
	hex_encode(out, 32, hex);
	return 0;
}

void uuid_derive(const char *seed, const char *purpose, char out[37])
{
	_cleanup_free_ char *in = xasprintf("%s:%s", seed ? seed : "", purpose);
	unsigned char b[32];
	unsigned int len = 0;
	if (!EVP_Digest(in, strlen(in), b, &len, EVP_sha256(), NULL))
		BUG("EVP_Digest(sha256) failed");
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	uuid_format(b, out);
}

void uuid_format(const unsigned char u[16], char out[37])
{
	char h[33];
	hex_encode(u, 16, h);
	snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

long proc_peak_rss_kib(void)
{
	_cleanup_file_ FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	return kib;
}

double now_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_has_suffix(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

char *format_size(uint64_t bytes, char *buf, size_t bufsz)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, bufsz, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, bufsz, "%.1f %s", v, units[u]);
	return buf;
}

/* ---- printing untrusted text ---- */

/* Length of the UTF-8 sequence at s (1-4) and its code point, or 0 when the
 * bytes there are not UTF-8 (overlong forms and surrogates included). */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t min;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		n = 2, min = 0x80, *cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3, min = 0x800, *cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4, min = 0x10000, *cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return n;
}

/* Code points that change how the rest of a line is shown. */
static bool cp_hidden_control(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f || cp == 0x061c;
}

char *str_printable(const char *s)
{
	struct strbuf sb = STRBUF_INIT;
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	while (*p) {
		uint32_t cp = 0;
		size_t n = utf8_decode(p, &cp);
		if (n == 0) {
			strbuf_addf(&sb, "\\x%02x", *p);
			p++;
			continue;
		}
		if (cp == '\\')
			strbuf_addstr(&sb, "\\\\");
		else if (cp == '\n')
			strbuf_addstr(&sb, "\\n");
		else if (cp == '\t')
			strbuf_addstr(&sb, "\\t");
		else if (cp == '\r')
			strbuf_addstr(&sb, "\\r");
		else if (cp < 0x20 || cp == 0x7f)
			strbuf_addf(&sb, "\\x%02x", (unsigned)cp);
		else if (cp_hidden_control(cp))
			strbuf_addf(&sb, "\\u%04x", (unsigned)cp);
		else
			strbuf_add(&sb, p, n);
		p += n;
	}
	return strbuf_detach(&sb);
}

/* ---- removing a tree ---- */

static int rm_statx(int dirfd, const char *name, int flags, struct statx *stx)
{
	return statx(dirfd, name, flags | AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT,
		     STATX_TYPE | STATX_INO | STATX_MNT_ID, stx);
}

/* Same filesystem and, where the kernel says (5.8+), the same mount: a bind
 * mount of the same filesystem has the same st_dev. */
static bool rm_same_mount(const struct statx *a, const struct statx *b)
{
	if (a->stx_dev_major != b->stx_dev_major || a->stx_dev_minor != b->stx_dev_minor)
		return false;
	if ((a->stx_mask & STATX_MNT_ID) && (b->stx_mask & STATX_MNT_ID))
		return a->stx_mnt_id == b->stx_mnt_id;
	return true;
}

static bool rm_same_node(const struct statx *a, const struct statx *b)
{
	return rm_same_mount(a, b) && a->stx_ino == b->stx_ino;
}

static int rm_tree_rec(int dirfd, const char *name, const char *shown, const struct statx *top,
		       struct af_error **err);

/* -1 with errnum EXDEV, the message saying why (not strerror's words). */
static int rm_refuse(struct af_error **err, const char *shown, const char *why)
{
	af_error_set(err, 0, "not removing '%s': %s", shown, why);
	if (err && *err)
		(*err)->errnum = EXDEV;
	return -1;
}

/* Empties the directory open at FD (taken) named SHOWN. */
static int rm_dir_contents(int fd, const char *shown, const struct statx *top, struct af_error **err)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		int errsv = errno;
		close(fd);
		return af_error_set(err, errsv, "cannot read directory '%s'", shown);
	}
	int r = 0;
	errno = 0;
	for (struct dirent *e; r == 0 && (e = readdir(d)); errno = 0) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		_cleanup_free_ char *child = path_join(shown, e->d_name);
		r = rm_tree_rec(dirfd(d), e->d_name, child, top, err);
	}
	if (r == 0 && errno)
		r = af_error_set(err, errno, "cannot read directory '%s'", shown);
	closedir(d);
	return r;
}

static int rm_tree_rec(int dirfd, const char *name, const char *shown, const struct statx *top,
		       struct af_error **err)
{
	struct statx st;
	if (rm_statx(dirfd, name, 0, &st) < 0)
		return errno == ENOENT ? 0 : af_error_set(err, errno, "cannot remove '%s'", shown);
	if (!S_ISDIR(st.stx_mode)) {
		if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			return af_error_set(err, errno, "cannot remove '%s'", shown);
		return 0;
	}
	if (!rm_same_mount(&st, top))
		return rm_refuse(err, shown, "another filesystem is mounted there; unmount it and run "
				 "the command again");
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : af_error_set(err, errno, "cannot open '%s'", shown);
	/* What was opened must be what was checked: a rename in between could
	 * have put a mount point or another tree there. */
	struct statx opened;
	if (rm_statx(fd, "", AT_EMPTY_PATH, &opened) < 0 || !rm_same_node(&st, &opened)) {
		close(fd);
		return rm_refuse(err, shown, "it changed while being removed; run the command again");
	}
	/* Entries a concurrent writer adds while we read come back on a later pass. */
	for (int pass = 0;; pass++) {
		int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (dup_fd < 0 || rm_dir_contents(dup_fd, shown, top, err) < 0) {
			int errsv = errno;
			close(fd);
			return dup_fd < 0 ? af_error_set(err, errsv, "cannot read directory '%s'", shown) : -1;
		}
		if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			break;
		if (errno != ENOTEMPTY || pass == 2) {
			int errsv = errno;
			close(fd);
			return af_error_set(err, errsv, "cannot remove '%s'", shown);
		}
		lseek(fd, 0, SEEK_SET);
	}
	close(fd);
	return 0;
}

int rm_tree_at(int dirfd, const char *name, const char *shown, struct af_error **err)
{
	struct statx top;
	if (rm_statx(dirfd, "", AT_EMPTY_PATH, &top) < 0)
		return af_error_set(err, errno, "cannot remove '%s'", shown);
	return rm_tree_rec(dirfd, name, shown, &top, err);
}
