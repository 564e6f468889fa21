/* SPDX-License-Identifier: Apache-2.0 */
/* sanitize: removes what must not ship in an image (shell histories, logs,
 * ssh host keys, authorized_keys, the machine id, apt lists and caches, /tmp,
 * the build's resolv.conf and policy-rc.d), then reads every file of the
 * image once and fails the build, naming each path, if it still finds a
 * private key (PEM or OpenSSH), an AWS access key id, a non-empty shell
 * history, an authorized_keys file or a file matching `deny:`.  `allow:`
 * names the exceptions.  Secrets found are never printed: only where they
 * are and what kind they are. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define SAN_CHUNK (1u << 20)
#define SAN_CARRY 1024u   /* bytes kept between chunks: a whole PEM header fits */
#define SAN_SHOWN 20      /* findings named in the error message (all are in the log) */
#define SAN_DB_MAX (16u << 20)

static const struct param_spec san_params[] = {
	{ .name = "deny", .type = PT_STRINGS,
	  .help = "globs of files that must not be in the image (on the path, or on the name when there is no /)" },
	{ .name = "allow", .type = PT_STRINGS, .help = "globs of paths whose findings are accepted" },
	{ .name = NULL },
};

static const char *const san_histories[] = {
	".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history", ".python_history",
	".mysql_history", ".psql_history", ".sqlite_history", ".lesshst", ".viminfo", ".wget-hsts",
};

static int san_check(const json_t *params, struct af_error **err)
{
	static const char *const lists[] = { "deny", "allow" };
	for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
		size_t i;
		json_t *v;
		json_array_foreach(params_get(params, lists[k]), i, v)
			if (!*json_string_value(v))
				return af_error_set(err, 0, "%s: an empty glob matches nothing; remove it", lists[k]);
	}
	return 0;
}

/* ---- removal ---- */

static int san_unlink(int rootfd, const char *root, const char *path, size_t *removed, struct af_error **err)
{
	int r = inroot_unlink(rootfd, root, path, err);
	if (r > 0)
		(*removed)++;
	return r < 0 ? -1 : 0;
}

/* Every home directory: /root, /home/ *, and those /etc/passwd names. */
static int san_homes(int rootfd, const char *root, char ***out, size_t *n)
{
	size_t cap = 0;
	*out = NULL;
	*n = 0;
#define SAN_ADD(s)                                                   \
	do {                                                         \
		if (*n == cap) {                                     \
			cap = cap ? cap * 2 : 16;                    \
			*out = xreallocarray(*out, cap, sizeof(char *)); \
		}                                                    \
		(*out)[(*n)++] = (s);                                \
	} while (0)
	SAN_ADD(xstrdup("/root"));
	_cleanup_error_ struct af_error *ignore = NULL;
	_cleanup_free_ char *passwd = inroot_read(rootfd, root, "/etc/passwd", SAN_DB_MAX, NULL, &ignore);
	for (const char *l = passwd; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		const char *f = l;
		for (int k = 0; k < 5 && f; k++)
			f = strchr(f, ':') ? strchr(f, ':') + 1 : NULL;
		if (f && *f == '/' && strncmp(f, "/\n", 2) && strncmp(f, "/:", 2))
			SAN_ADD(xstrndup(f, strcspn(f, ":\n")));
	}
	_cleanup_fd_ int hfd = inroot_open(rootfd, "/home", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	_cleanup_dir_ DIR *d = hfd >= 0 ? fdopendir(steal_fd(&hfd)) : NULL;
	for (struct dirent *de; d && (de = readdir(d));)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			SAN_ADD(xasprintf("/home/%s", de->d_name));
#undef SAN_ADD
	return 0;
}

static int san_clean_homes(int rootfd, const char *root, size_t *removed, struct af_error **err)
{
	char **homes = NULL;
	size_t n = 0;
	int r = 0;
	san_homes(rootfd, root, &homes, &n);
	for (size_t i = 0; i < n && r == 0; i++) {
		for (size_t k = 0; k < ARRAY_SIZE(san_histories) && r == 0; k++) {
			_cleanup_free_ char *p = xasprintf("%s/%s", homes[i], san_histories[k]);
			r = san_unlink(rootfd, root, p, removed, err);
		}
		_cleanup_free_ char *ak = xasprintf("%s/.ssh/authorized_keys", homes[i]);
		_cleanup_free_ char *ak2 = xasprintf("%s/.ssh/authorized_keys2", homes[i]);
		if (r == 0)
			r = san_unlink(rootfd, root, ak, removed, err);
		if (r == 0)
			r = san_unlink(rootfd, root, ak2, removed, err);
	}
	for (size_t i = 0; i < n; i++)
		free(homes[i]);
	free(homes);
	return r;
}

/* systemd treats an empty /etc/machine-id as "first boot": it makes a new
 * id instead of every instance sharing the build's. */
static int san_machine_id(int rootfd, const char *root, struct af_error **err)
{
	if (inroot_write(rootfd, root, "/etc/machine-id", "", 0, 0444, 0, 0, err) < 0)
		return -1;
	/* dbus's copy; a symlink to /etc/machine-id is Debian's own design. */
	struct stat st;
	if (inroot_lstat(rootfd, "/var/lib/dbus/machine-id", &st) == 0 && S_ISREG(st.st_mode) &&
	    inroot_unlink(rootfd, root, "/var/lib/dbus/machine-id", err) < 0)
		return -1;
	return 0;
}

/* A regular resolv.conf is the build's (a symlink, e.g. to a resolver's
 * runtime file, is the image's own design and stays). */
static int san_resolv_conf(int rootfd, const char *root, size_t *removed, struct af_error **err)
{
	struct stat st;
	if (inroot_lstat(rootfd, "/etc/resolv.conf", &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	return san_unlink(rootfd, root, "/etc/resolv.conf", removed, err);
}

static int san_remove_all(int rootfd, const char *root, size_t *removed, struct af_error **err)
{
	if (san_clean_homes(rootfd, root, removed, err) < 0 ||
	    inroot_empty(rootfd, "/var/log", true, removed, err) < 0 ||
	    inroot_unlink_glob(rootfd, "/etc/ssh", "ssh_host_*", removed, err) < 0 ||
	    san_machine_id(rootfd, root, err) < 0 ||
	    inroot_unlink_glob(rootfd, "/var/lib/apt/lists", "*", removed, err) < 0 ||
	    inroot_empty(rootfd, "/var/lib/apt/lists/partial", true, removed, err) < 0 ||
	    inroot_unlink_glob(rootfd, "/var/cache/apt", "*.bin", removed, err) < 0 ||
	    inroot_unlink_glob(rootfd, "/var/cache/apt/archives", "*.deb", removed, err) < 0 ||
	    inroot_empty(rootfd, "/var/cache/apt/archives/partial", true, removed, err) < 0 ||
	    inroot_empty(rootfd, "/tmp", false, removed, err) < 0 ||
	    inroot_empty(rootfd, "/var/tmp", false, removed, err) < 0 ||
	    san_resolv_conf(rootfd, root, removed, err) < 0 ||
	    san_unlink(rootfd, root, "/usr/sbin/policy-rc.d", removed, err) < 0 ||
	    san_unlink(rootfd, root, "/var/lib/systemd/random-seed", removed, err) < 0)
		return -1;
	return 0;
}

/* ---- the scan ---- */

struct san_scan {
	const json_t *deny, *allow;
	struct strbuf found;     /* "path: what\n" lines */
	size_t n_found, n_allowed;
	uint64_t files, bytes;
	unsigned char *buf;      /* SAN_CARRY + SAN_CHUNK */
};

static bool san_glob_match(const json_t *globs, const char *path)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t i;
	json_t *v;
	json_array_foreach(globs, i, v) {
		const char *g = json_string_value(v);
		if (fnmatch(g, strchr(g, '/') ? path : base, strchr(g, '/') ? FNM_PATHNAME : 0) == 0)
			return true;
	}
	return false;
}

static void san_report(struct san_scan *s, const char *path, const char *what)
{
	if (san_glob_match(s->allow, path)) {
		log_info("allowed: %s: %s", path, what);
		s->n_allowed++;
		return;
	}
	log_error("found %s: %s", path, what);
	strbuf_addf(&s->found, "%s: %s\n", path, what);
	s->n_found++;
}

static bool san_b64(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
	       c == '=';
}

static bool san_upper_alnum(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* At P: "-----BEGIN [X ]PRIVATE KEY-----", a line break, optional
 * RFC 1421 headers (Proc-Type:, DEK-Info:) and a blank line, then a base64
 * line.  Programs (ssh-keygen, libcrypto) carry the marker as a string
 * constant but never followed by key material.  0: no, 1: PEM, 2: OpenSSH. */
static int san_pem_at(const unsigned char *p, const unsigned char *end)
{
	static const char begin[] = "-----BEGIN ";
	static const char tail[] = "PRIVATE KEY-----";
	const unsigned char *q = p + strlen(begin);
	const unsigned char *lim = q + 40 < end ? q + 40 : end;
	const unsigned char *t = memmem(q, (size_t)(lim - q), tail, strlen(tail));
	if (!t)
		return 0;
	for (const unsigned char *c = q; c < t; c++)
		if (!(*c >= 'A' && *c <= 'Z') && *c != ' ')
			return 0;
	bool openssh = (size_t)(t - q) == 8 && !memcmp(q, "OPENSSH ", 8);
	q = t + strlen(tail);
	for (int line = 0; line < 8 && q < end; line++) {
		if (*q == '\r')
			q++;
		if (q >= end || *q != '\n')
			return 0;
		q++;
		const unsigned char *nl = memchr(q, '\n', (size_t)(end - q));
		const unsigned char *lend = nl ? nl : end;
		if (lend > q && lend[-1] == '\r')
			lend--;
		if (lend - q >= 32) {
			const unsigned char *c = q;
			while (c < lend && san_b64(*c))
				c++;
			if (c == lend)
				return openssh ? 2 : 1;
		}
		/* A header line or the blank line after the headers. */
		if (lend != q && !memchr(q, ':', (size_t)(lend - q)))
			return 0;
		q = lend;
	}
	return 0;
}

/* "AKIA"/"ASIA" + 16 of [A-Z0-9], not inside a longer such word.  AWS's
 * documentation key (ending in EXAMPLE) ships in SDK docs and is not one. */
static bool san_akid_at(const unsigned char *p, const unsigned char *start, const unsigned char *end)
{
	if (end - p < 20 || (p > start && san_upper_alnum(p[-1])))
		return false;
	for (int i = 4; i < 20; i++)
		if (!san_upper_alnum(p[i]))
			return false;
	if (end - p > 20 && san_upper_alnum(p[20]))
		return false;
	return memcmp(p + 13, "EXAMPLE", 7) != 0;
}

/* Flags found in [start, limit) of [start, end). */
enum { SAN_PEM = 1, SAN_OPENSSH = 2, SAN_AKID = 4, SAN_SKIP_PEM = 8 };

static unsigned san_scan_buf(const unsigned char *start, size_t limit, size_t len, unsigned have)
{
	const unsigned char *end = start + len;
	unsigned found = 0;
	/* Matches may run past LIMIT (into the carried bytes) but must start
	 * before it: the next round starts there. */
	for (const unsigned char *p = start; !(have & (SAN_PEM | SAN_OPENSSH | SAN_SKIP_PEM)) && (size_t)(p - start) < limit &&
					     (p = memmem(p, (size_t)(end - p), "-----BEGIN ", 11)) && (size_t)(p - start) < limit;
	     p++) {
		int k = san_pem_at(p, end);
		if (k) {
			found |= k == 2 ? SAN_OPENSSH : SAN_PEM;
			break;
		}
	}
	static const char *const prefixes[] = { "AKIA", "ASIA" };
	for (size_t k = 0; k < 2 && !(have & SAN_AKID) && !(found & SAN_AKID); k++) {
		for (const unsigned char *p = start; (size_t)(p - start) < limit &&
						     (p = memmem(p, (size_t)(end - p), prefixes[k], 4)) && (size_t)(p - start) < limit;
		     p++) {
			if (san_akid_at(p, start, end)) {
				found |= SAN_AKID;
				break;
			}
		}
	}
	return found;
}

static int san_scan_content(struct san_scan *s, int fd, const char *path, struct af_error **err)
{
	size_t carry = 0;
	unsigned found = 0;
	for (;;) {
		ssize_t n = read_all(fd, s->buf + carry, SAN_CHUNK);
		if (n < 0)
			return af_error_set(err, errno, "cannot read '%s'", path);
		size_t len = carry + (size_t)n;
		bool eof = (size_t)n < SAN_CHUNK;
		size_t limit = eof ? len : len - SAN_CARRY;
		/* Libraries embed PEM keys as self-test vectors (GnuTLS's GOST
		 * keys); a key that leaked from a build is a file of its own. */
		if (!carry && len >= 4 && !memcmp(s->buf, "\x7f" "ELF", 4))
			found |= SAN_SKIP_PEM;
		found |= san_scan_buf(s->buf, limit, len, found);
		s->bytes += (uint64_t)n;
		if (eof || (found & SAN_AKID && found & (SAN_PEM | SAN_OPENSSH | SAN_SKIP_PEM)))
			break;
		memmove(s->buf, s->buf + len - SAN_CARRY, SAN_CARRY);
		carry = SAN_CARRY;
	}
	if (found & SAN_PEM)
		san_report(s, path, "private key (PEM)");
	if (found & SAN_OPENSSH)
		san_report(s, path, "private key (OpenSSH)");
	if (found & SAN_AKID)
		san_report(s, path, "AWS access key id");
	return 0;
}

static bool san_is_history(const char *name)
{
	for (size_t k = 0; k < ARRAY_SIZE(san_histories); k++)
		if (!strcmp(name, san_histories[k]))
			return true;
	return false;
}

/* NAME in DFD, a regular file by its directory entry: opened without
 * following a link or waiting on a FIFO, and checked again on the fd. */
static int san_scan_file(struct san_scan *s, int dfd, const char *name, const char *path, struct af_error **err)
{
	_cleanup_fd_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot open '%s' in the image", path);
	if (!S_ISREG(st.st_mode))
		return af_error_set(err, 0, "'%s' in the image is %s, not a regular file; is a process of the build still running?",
				    path, inroot_type_name(st.st_mode));
	s->files++;
	if (san_is_history(name) && st.st_size > 0)
		san_report(s, path, "non-empty shell history");
	if (st.st_size == 0)
		return 0;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return san_scan_content(s, fd, path, err);
}

static int san_walk(struct san_scan *s, int dfd, const char *dir, struct af_error **err)
{
	int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	_cleanup_dir_ DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
	if (!d) {
		if (dup >= 0)
			close(dup);
		return af_error_set(err, errno, "cannot read '%s'", *dir ? dir : "/");
	}
	for (struct dirent *de; (de = readdir(d));) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		/* Kernel filesystems at boot; empty in the image. */
		if (!*dir && (!strcmp(name, "proc") || !strcmp(name, "sys") || !strcmp(name, "dev")))
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
		unsigned char type = de->d_type;
		if (type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				return af_error_set(err, errno, "cannot stat '%s'", path);
			type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
		}
		if (type != DT_DIR && (!strcmp(name, "authorized_keys") || !strcmp(name, "authorized_keys2")))
			san_report(s, path, "authorized_keys file");
		if (type != DT_DIR && san_glob_match(s->deny, path))
			san_report(s, path, "listed in deny:");
		if (type == DT_DIR) {
			_cleanup_fd_ int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return af_error_set(err, errno, "cannot open '%s'", path);
			if (san_walk(s, sub, path, err) < 0)
				return -1;
		} else if (type == DT_REG && san_scan_file(s, dfd, name, path, err) < 0) {
			return -1;
		}
	}
	return 0;
}

/* The error: every finding's path (the first SAN_SHOWN; all are in the log). */
static int san_fail(const struct san_scan *s, struct af_error **err)
{
	struct strbuf sb = STRBUF_INIT;
	size_t shown = 0;
	for (const char *l = s->found.buf; l && *l && shown < SAN_SHOWN; shown++) {
		const char *nl = strchr(l, '\n');
		strbuf_addf(&sb, "%s%.*s", shown ? ", " : "", (int)(nl - l), l);
		l = nl + 1;
	}
	if (s->n_found > shown)
		strbuf_addf(&sb, ", and %zu more (see the stage log)", s->n_found - shown);
	af_error_set(err, 0, "the image holds %zu thing%s that must not ship: %s; remove them in the recipe, or list the path in allow:",
		     s->n_found, s->n_found == 1 ? "" : "s", sb.buf);
	strbuf_release(&sb);
	return -1;
}

/* Scans ROOTFD's tree; 0 when clean, -1 + err listing the findings. */
static int san_scan_root(int rootfd, const json_t *params, struct san_scan *s, struct af_error **err)
{
	s->deny = params_get(params, "deny");
	s->allow = params_get(params, "allow");
	_cleanup_fd_ int top = inroot_open_dir(rootfd, "/", err);
	if (top < 0)
		return -1;
	s->buf = xmalloc(SAN_CARRY + SAN_CHUNK);
	int r = san_walk(s, top, "", err);
	free(s->buf);
	s->buf = NULL;
	if (r < 0)
		return -1;
	return s->n_found ? san_fail(s, err) : 0;
}

static int san_run(struct stage_ctx *ctx, struct af_error **err)
{
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	size_t removed = 0;
	if (san_remove_all(rootfd, ctx->root, &removed, err) < 0)
		return -1;
	log_info("removed %zu file%s (histories, logs, host keys, authorized_keys, apt lists, /tmp...)", removed,
		 removed == 1 ? "" : "s");
	struct san_scan s = { .found = STRBUF_INIT };
	double t0 = now_monotonic();
	int r = san_scan_root(rootfd, ctx->params, &s, err);
	char size[32];
	log_info("scanned %llu files (%s) in %.1fs: %zu finding%s, %zu allowed", (unsigned long long)s.files,
		 format_size(s.bytes, size, sizeof(size)), now_monotonic() - t0, s.n_found, s.n_found == 1 ? "" : "s",
		 s.n_allowed);
	strbuf_release(&s.found);
	if (r < 0)
		return -1;
	json_object_set_new(ctx->outputs, "sanitize.files_scanned", json_integer((json_int_t)s.files));
	json_object_set_new(ctx->outputs, "sanitize.removed", json_integer((json_int_t)removed));
	return 0;
}

/* For plan (stage.h). */
static char *san_describe(const struct stage_describe *d)
{
	const json_t *deny = params_get(d->params, "deny"), *allow = params_get(d->params, "allow");
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "remove histories, logs, host keys, authorized_keys, machine-id and apt lists, then scan for secrets");
	if (json_array_size(deny)) {
		strbuf_addstr(&sb, "; also refuse ");
		stage_describe_list(&sb, deny, 5);
	}
	if (json_array_size(allow)) {
		strbuf_addstr(&sb, "; accept findings in ");
		stage_describe_list(&sb, allow, 5);
	}
	return strbuf_detach(&sb);
}

static const char *const sanitize_provides[] = { "sanitize.removed", "sanitize.files_scanned", NULL };

const struct stage_type stage_sanitize = {
	.name = "sanitize",
	.summary = "remove histories, logs, host keys, authorized_keys, machine-id, apt lists; then scan for secrets",
	.params = san_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT,
	.provides = sanitize_provides,
	.default_timeout = 1200,
	.check = san_check,
	.describe = san_describe,
	.run = san_run,
};
