/* SPDX-License-Identifier: Apache-2.0 */
/* debootstrap: a Debian base system in the mounted root (ctx->root), made
 * by mmdebstrap (faster: apt resolves and downloads in one go) or
 * debootstrap, from the host's own Debian mirror unless the recipe names
 * one.  Downloaded .debs live in the shared package cache
 * (CACHE/debs, DESIGN §5) so no build downloads a package twice; apt and
 * debootstrap check every cached .deb against the archive's signed
 * checksums before using it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>

#include "amiforge/apt.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exec.h"
#include "amiforge/inroot.h"
#include "amiforge/jail.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define DEB_APT_DIR "/etc/apt"
#define DEB_UNSAFE_IO "etc/dpkg/dpkg.cfg.d/99amiforge-unsafe-io"
#define DEB_HOST_FILE_MAX (1u << 20)
#define DEB_STATUS_MAX (64u << 20)

static const char *const deb_variants[] = { "minbase", "buildd", "standard", NULL };
static const char *const deb_tools[] = { "auto", "debootstrap", "mmdebstrap", NULL };

static const struct param_spec deb_params[] = {
	{ .name = "suite", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "Debian suite, e.g. bookworm" },
	{ .name = "variant", .type = PT_ENUM, .choices = deb_variants, .help = "package selection", .defval = "minbase" },
	{ .name = "include", .type = PT_STRINGS, .help = "extra packages to install" },
	{ .name = "exclude", .type = PT_STRINGS, .help = "packages to leave out (debootstrap only)" },
	{ .name = "components", .type = PT_STRINGS, .help = "archive components", .defval = "[main]" },
	{ .name = "mirror", .type = PT_STRING, .help = "Debian mirror URL", .defval = "the host's Debian apt source" },
	{ .name = "keyring", .type = PT_STRING, .help = "keyring file (host path) to check the Release file with" },
	{ .name = "tool", .type = PT_ENUM, .choices = deb_tools,
	  .help = "bootstrap tool: auto picks mmdebstrap when installed", .defval = "auto" },
	{ .name = NULL },
};

/* ---- the host's apt sources ---- */

struct deb_source {
	char *uri;
	char *suite;
};

struct deb_sources {
	struct deb_source *v;
	size_t n, alloc;
};

static void deb_sources_add(struct deb_sources *s, const char *uri, size_t urilen, const char *suite,
			    size_t suitelen)
{
	if (s->n == s->alloc) {
		s->alloc = s->alloc ? 2 * s->alloc : 8;
		s->v = xreallocarray(s->v, s->alloc, sizeof(*s->v));
	}
	while (urilen > 1 && uri[urilen - 1] == '/')
		urilen--;
	s->v[s->n].uri = xstrndup(uri, urilen);
	s->v[s->n].suite = xstrndup(suite, suitelen);
	s->n++;
}

static void deb_sources_release(struct deb_sources *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].uri);
		free(s->v[i].suite);
	}
	free(s->v);
	*s = (struct deb_sources){ 0 };
}

/* Next whitespace-separated word of *p; NULL at the end. */
static const char *deb_word(const char **p, size_t *len)
{
	const char *s = *p + strspn(*p, " \t");
	if (!*s || *s == '\n' || *s == '#')
		return NULL;
	*len = strcspn(s, " \t\n");
	*p = s + *len;
	return s;
}

/* Only network and local archives: not cdrom:, mirror+file:, tor+... */
static bool deb_uri_usable(const char *uri, size_t len)
{
	static const char *const schemes[] = { "http://", "https://", "ftp://", "file:/" };
	for (size_t i = 0; i < ARRAY_SIZE(schemes); i++)
		if (len > strlen(schemes[i]) && strncmp(uri, schemes[i], strlen(schemes[i])) == 0)
			return true;
	return false;
}

/* One-line format: "deb [options] URI SUITE COMPONENT...". */
static void deb_parse_list(const char *text, struct deb_sources *out)
{
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *p = line, *w, *uri, *suite;
		size_t len, urilen, suitelen;
		if (!(w = deb_word(&p, &len)) || len != 3 || strncmp(w, "deb", 3) != 0)
			continue;
		p += strspn(p, " \t");
		if (*p == '[') {
			const char *close = strchr(p, ']');
			const char *nl = strchr(p, '\n');
			if (!close || (nl && close > nl))
				continue;
			p = close + 1;
		}
		if (!(uri = deb_word(&p, &urilen)) || !(suite = deb_word(&p, &suitelen)))
			continue;
		if (deb_uri_usable(uri, urilen))
			deb_sources_add(out, uri, urilen, suite, suitelen);
	}
}

/* The value of FIELD in a deb822 paragraph [para, end), continuation
 * lines joined; NULL if absent.  Caller frees. */
static char *deb822_field(const char *para, const char *end, const char *field)
{
	size_t fl = strlen(field);
	for (const char *line = para; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *lend = nl ? nl : end;
		if ((size_t)(lend - line) > fl && strncasecmp(line, field, fl) == 0 && line[fl] == ':') {
			struct strbuf sb = STRBUF_INIT;
			strbuf_add(&sb, line + fl + 1, (size_t)(lend - line - (ptrdiff_t)fl - 1));
			for (line = nl ? nl + 1 : end; line < end && (*line == ' ' || *line == '\t');) {
				nl = memchr(line, '\n', (size_t)(end - line));
				lend = nl ? nl : end;
				strbuf_addstr(&sb, " ");
				strbuf_add(&sb, line, (size_t)(lend - line));
				line = nl ? nl + 1 : end;
			}
			return strbuf_detach(&sb);
		}
		line = nl ? nl + 1 : end;
	}
	return NULL;
}

static bool deb_has_word(const char *list, const char *word)
{
	const char *p = list, *w;
	size_t len;
	while ((w = deb_word(&p, &len)))
		if (len == strlen(word) && strncasecmp(w, word, len) == 0)
			return true;
	return false;
}

static void deb822_paragraph(const char *para, const char *end, struct deb_sources *out)
{
	_cleanup_free_ char *types = deb822_field(para, end, "Types");
	_cleanup_free_ char *uris = deb822_field(para, end, "URIs");
	_cleanup_free_ char *suites = deb822_field(para, end, "Suites");
	_cleanup_free_ char *enabled = deb822_field(para, end, "Enabled");
	if (!types || !uris || !suites || !deb_has_word(types, "deb") || (enabled && deb_has_word(enabled, "no")))
		return;
	const char *pu = uris, *u;
	size_t ul;
	while ((u = deb_word(&pu, &ul))) {
		if (!deb_uri_usable(u, ul))
			continue;
		const char *ps = suites, *s;
		size_t sl;
		while ((s = deb_word(&ps, &sl)))
			deb_sources_add(out, u, ul, s, sl);
	}
}

/* deb822 format: paragraphs separated by blank lines; '#' comments. */
static void deb_parse_sources(const char *text, struct deb_sources *out)
{
	/* Drop comment lines first so they do not split or join paragraphs. */
	struct strbuf sb = STRBUF_INIT;
	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
		if (line[strspn(line, " \t")] != '#')
			strbuf_add(&sb, line, len);
		line = nl ? nl + 1 : NULL;
	}
	_cleanup_free_ char *clean = strbuf_detach(&sb);
	const char *para = NULL;
	for (const char *line = clean;; line++) {
		const char *nl = strchr(line, '\n');
		const char *lend = nl ? nl : line + strlen(line);
		bool blank = line + strspn(line, " \t") >= lend;
		if (blank && para) {
			deb822_paragraph(para, line, out);
			para = NULL;
		} else if (!blank && !para) {
			para = line;
		}
		if (!nl)
			break;
		line = nl;
	}
	if (para)
		deb822_paragraph(para, para + strlen(para), out);
}

static int deb_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads APT_DIR/sources.list, then APT_DIR/sources.list.d/ *.list and
 * *.sources in name order, as apt does. */
static void deb_read_apt_sources(const char *apt_dir, struct deb_sources *out)
{
	_cleanup_free_ char *list = path_join(apt_dir, "sources.list");
	_cleanup_free_ char *text = read_file(list, NULL, NULL);
	if (text)
		deb_parse_list(text, out);
	_cleanup_free_ char *dpath = path_join(apt_dir, "sources.list.d");
	_cleanup_dir_ DIR *d = opendir(dpath);
	if (!d)
		return;
	char **names = NULL;
	size_t n = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (de->d_name[0] == '.' ||
		    (!str_has_suffix(de->d_name, ".list") && !str_has_suffix(de->d_name, ".sources")))
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	if (n)
		qsort(names, n, sizeof(*names), deb_cmp_str);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *p = path_join(dpath, names[i]);
		_cleanup_free_ char *t = read_file(p, NULL, NULL);
		if (t) {
			if (str_has_suffix(names[i], ".sources"))
				deb_parse_sources(t, out);
			else
				deb_parse_list(t, out);
		}
		free(names[i]);
	}
	free(names);
}

/* A plain release suite, not one of its overlays. */
static bool deb_plain_suite(const char *suite)
{
	static const char *const overlays[] = { "-security", "-updates", "-backports", "-proposed-updates" };
	if (strchr(suite, '/'))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(overlays); i++)
		if (str_has_suffix(suite, overlays[i]))
			return false;
	return true;
}

/* The mirror to use for SUITE: an entry for exactly that suite, else the
 * first plain suite's URI, else the first deb URI.  NULL if none. */
static const char *deb_choose_mirror(const struct deb_sources *s, const char *suite)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].suite, suite) == 0)
			return s->v[i].uri;
	for (size_t i = 0; i < s->n; i++)
		if (deb_plain_suite(s->v[i].suite))
			return s->v[i].uri;
	return s->n ? s->v[0].uri : NULL;
}

static char *deb_host_mirror(const char *apt_dir, const char *suite, struct af_error **err)
{
	struct deb_sources s = { 0 };
	deb_read_apt_sources(apt_dir, &s);
	const char *m = deb_choose_mirror(&s, suite);
	char *r = m ? xstrdup(m) : NULL;
	deb_sources_release(&s);
	if (!r)
		af_error_set(err, 0, "no Debian mirror found in the host's apt sources (%s/sources.list, %s/sources.list.d); set mirror: in the recipe",
			     apt_dir, apt_dir);
	return r;
}

/* ---- the mirror probe ---- */

static size_t deb_discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

/* Fetches MIRROR/dists/SUITE/Release so a dead mirror fails in seconds,
 * not after debootstrap's own long retries. */
static int deb_probe_mirror(const char *mirror, const char *suite, struct af_error **err)
{
	_cleanup_free_ char *url = xasprintf("%s/dists/%s/Release", mirror, suite);
	char ebuf[CURL_ERROR_SIZE] = "";
	CURL *c = curl_easy_init();
	if (!c)
		return af_error_set(err, 0, "cannot initialise libcurl");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, deb_discard);
	CURLcode rc = curl_easy_perform(c);
	curl_easy_cleanup(c);
	if (rc == CURLE_OK)
		return 0;
	const char *why = ebuf[0] ? ebuf : curl_easy_strerror(rc);
	if (rc == CURLE_HTTP_RETURNED_ERROR || rc == CURLE_FILE_COULDNT_READ_FILE)
		return af_error_set(err, 0, "mirror %s has no suite '%s' (%s: %s); check suite: and mirror: in the recipe",
				    mirror, suite, url, why);
	return af_error_set(err, 0, "mirror URL %s does not answer: %s; check the network or set mirror: in the recipe",
			    mirror, why);
}

/* ---- running the tool ---- */

static bool deb_installed(const char *tool)
{
	static const char *const dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *p = path_join(dirs[i], tool);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

static int deb_pick_tool(const char *want, bool has_exclude, const char **tool, struct af_error **err)
{
	if (strcmp(want, "mmdebstrap") == 0 && has_exclude)
		return af_error_set(err, 0, "mmdebstrap has no --exclude; use tool: debootstrap (or auto) with exclude:");
	if (strcmp(want, "auto") == 0)
		want = !has_exclude && deb_installed("mmdebstrap") ? "mmdebstrap" : "debootstrap";
	if (!deb_installed(want))
		return af_error_set(err, ENOENT, "%s is not installed; install it (apt-get install %s) or choose another tool:",
				    want, want);
	*tool = want;
	return 0;
}

static const char *deb_arch(const char *arch)
{
	if (!arch || strcmp(arch, "x86_64") == 0 || strcmp(arch, "amd64") == 0)
		return "amd64";
	if (strcmp(arch, "arm64") == 0 || strcmp(arch, "aarch64") == 0)
		return "arm64";
	return arch;
}

/* "a,b,c" from a PT_STRINGS array; NULL when empty.  Caller frees. */
static char *deb_join(const json_t *arr, const char *sep)
{
	if (!json_array_size(arr))
		return NULL;
	struct strbuf sb = STRBUF_INIT;
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
		strbuf_addf(&sb, "%s%s", i ? sep : "", json_string_value(v));
	return strbuf_detach(&sb);
}

struct deb_argv {
	char *v[40];
	size_t n;
};

static void deb_arg(struct deb_argv *a, char *s)
{
	if (a->n + 1 >= ARRAY_SIZE(a->v))
		BUG("too many debootstrap arguments");
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void deb_argv_release(struct deb_argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
}

/* The command line for TOOL.  Pure: unit-tested. */
static void deb_build_argv(const char *tool, const json_t *params, const char *arch, const char *mirror,
			   const char *target, const char *cache, struct deb_argv *a)
{
	const char *variant = params_str(params, "variant", "minbase");
	_cleanup_free_ char *include = deb_join(params_get(params, "include"), ",");
	_cleanup_free_ char *exclude = deb_join(params_get(params, "exclude"), ",");
	_cleanup_free_ char *components = deb_join(params_get(params, "components"), ",");
	const char *keyring = params_str(params, "keyring", NULL);
	bool mm = strcmp(tool, "mmdebstrap") == 0;

	deb_arg(a, xstrdup(tool));
	if (mm)
		deb_arg(a, xstrdup("--mode=root"));
	/* debootstrap's default selection is what mmdebstrap calls standard. */
	if (mm || strcmp(variant, "standard") != 0)
		deb_arg(a, xasprintf("--variant=%s", variant));
	deb_arg(a, xasprintf("--arch=%s", deb_arch(arch)));
	deb_arg(a, xasprintf("--components=%s", components ? components : "main"));
	if (include)
		deb_arg(a, xasprintf("--include=%s", include));
	if (exclude && !mm)
		deb_arg(a, xasprintf("--exclude=%s", exclude));
	if (keyring)
		deb_arg(a, xasprintf("--keyring=%s", keyring));
	if (mm) {
		/* The stage binds the shared cache over the target's apt archive
		 * before mmdebstrap starts, so no .deb is copied in or out, and
		 * the jail mounts /proc, /dev and /sys in the target: mmdebstrap
		 * mounts nothing (it may not: the jail forbids mount) and the
		 * target is not empty.  essential/unlink and download/empty are
		 * skipped so the .debs stay cached.  The unsafe-io file makes dpkg
		 * skip fsyncs (DESIGN §6) and is removed before the end. */
		deb_arg(a, xstrdup("--skip=check/empty,chroot/mount,download/empty,essential/unlink"));
		/* /proc and /sys are mounted (read-only for tar) before the
		 * archives are extracted: base-files' entries for them are
		 * filtered out of the extraction, and the filter is dropped
		 * from the image's dpkg configuration at the end. */
		deb_arg(a, xstrdup("--dpkgopt=path-exclude=/proc"));
		deb_arg(a, xstrdup("--dpkgopt=path-exclude=/sys"));
		deb_arg(a, xstrdup("--aptopt=Acquire::Retries \"3\""));
		deb_arg(a, xstrdup("--setup-hook=mkdir -p \"$1\"/etc/dpkg/dpkg.cfg.d"
				   " && echo force-unsafe-io > \"$1\"/" DEB_UNSAFE_IO));
		deb_arg(a, xstrdup("--customize-hook=rm -f \"$1\"/" DEB_UNSAFE_IO));
		deb_arg(a, xstrdup("--customize-hook=f=\"$1\"/etc/dpkg/dpkg.cfg.d/99mmdebstrap; "
				   "sed -i '\\#^path-exclude=/\\(proc\\|sys\\)$#d' \"$f\" && { [ -s \"$f\" ] || rm -f \"$f\"; }"));
	} else {
		deb_arg(a, xasprintf("--cache-dir=%s", cache));
	}
	deb_arg(a, xstrdup(params_str(params, "suite", "")));
	deb_arg(a, xstrdup(target));
	deb_arg(a, xstrdup(mirror));
}

/* debootstrap and mmdebstrap copy the /etc/resolv.conf and /etc/hostname
 * they see into the target: the jail's resolver and the build host's name.
 * Neither belongs in an image: the resolver is the sandbox's (DESIGN §6:
 * visible only while building; networked commands get it bound in) and
 * the name is the build machine's. */
static int deb_drop_host_files(int rootfd, const char *root, struct af_error **err)
{
	static const char *const files[] = { "/etc/resolv.conf", "/etc/hostname" };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		struct stat st;
		/* A symlink (a resolver's runtime file) is the image's design. */
		if (inroot_lstat(rootfd, files[i], &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		size_t hl = 0, il = 0;
		_cleanup_error_ struct af_error *ignore = NULL;
		_cleanup_free_ char *host = i == 0 ? xstrdup(jail_resolv_conf()) : read_file(files[i], &hl, &ignore);
		if (i == 0)
			hl = strlen(host);
		_cleanup_free_ char *img = host ? inroot_read(rootfd, root, files[i], DEB_HOST_FILE_MAX, &il, err) : NULL;
		if (host && !img) {
			/* Larger than any resolv.conf or hostname: not the host's. */
			if (af_error_errno(*err) != EFBIG)
				return -1;
			af_error_clear(err);
		}
		if (!img || hl != il || memcmp(host, img, hl) != 0)
			continue;
		if (inroot_unlink(rootfd, root, files[i], err) < 0)
			return af_error_wrap(err, "remove the build host's copy");
		log_info("removed %s copied from the build host", files[i]);
	}
	return 0;
}

/* debootstrap has no unsafe-io switch: dpkg reads this file in the target
 * from its first run. */
static int deb_write_unsafe_io(int rootfd, const char *root, struct af_error **err)
{
	return inroot_write(rootfd, root, DEB_UNSAFE_IO, "force-unsafe-io\n", 16, 0644, 0, 0, err);
}

/* The shared cache over the target's apt archive, in the stage's mount
 * namespace (it vanishes with the stage); the jail inherits the bind. */
static int deb_bind_cache(const struct stage_ctx *ctx, const char *cache, struct af_error **err)
{
	_cleanup_fd_ int rootfd = open(ctx->root, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (rootfd < 0)
		return af_error_set(err, errno, "cannot open the image root '%s'", ctx->root);
	return apt_bind(rootfd, ctx->root, cache, "/var/cache/apt/archives", err);
}

static int deb_spawn(const struct deb_argv *a, const struct stage_ctx *ctx, struct af_error **err)
{
	bool mm = strcmp(a->v[0], "mmdebstrap") == 0;
	/* debootstrap refuses a nodev target unless it runs in a container,
	 * which the jail is: its /dev is the jail's own, with working nodes. */
	static const char *const container[] = { "container=lxc", NULL };
	/* The cleared environment, plus the host's proxy settings. */
	char **env = exec_env_new(true, mm ? NULL : container);
	/* mmdebstrap and debootstrap run on the host's tools but execute the
	 * archive's maintainer scripts: jailed, seeing the host read-only and
	 * the image and the package cache as the only writable places. */
	const char *writable[] = { ctx->cache_dir, NULL };
	struct spawn_opts so = {
		.argv = a->v,
		.chroot = ctx->root,
		.host_view = true,
		.bare_target = !mm,
		.writable = writable,
		.network = true,
		.env = env,
		.out_fd = ctx->log_fd,
		.in_fd = -1,
		.deadline = ctx->deadline,
	};
	int r = spawn_run(&so, err);
	exec_env_free(env);
	return r;
}

/* ---- checks and cleanup ---- */

/* Every package of INCLUDE must be "install ok installed" in the image's
 * dpkg status. */
static int deb_verify_status(int rootfd, const char *root, const json_t *include, struct af_error **err)
{
	_cleanup_error_ struct af_error *why = NULL;
	_cleanup_free_ char *status = inroot_read(rootfd, root, "/var/lib/dpkg/status", DEB_STATUS_MAX, NULL, &why);
	if (!status)
		return af_error_set(err, 0, "the bootstrap left no dpkg status (%s): it did not install a Debian system",
				    af_error_msg(why));
	size_t i;
	json_t *v;
	json_array_foreach(include, i, v) {
		const char *pkg = json_string_value(v);
		size_t len = strcspn(pkg, "=:/");
		_cleanup_free_ char *needle = xasprintf("\nPackage: %.*s\n", (int)len, pkg);
		bool ok = false;
		for (const char *p = strstr(status, needle); p && !ok; p = strstr(p + 1, needle)) {
			const char *end = strstr(p + 1, "\n\n");
			const char *st = strstr(p + 1, "\nStatus: install ok installed\n");
			ok = st && (!end || st < end);
		}
		if (!ok && strncmp(status, needle + 1, strlen(needle) - 1) == 0) {
			const char *end = strstr(status, "\n\n");
			const char *st = strstr(status, "\nStatus: install ok installed\n");
			ok = st && (!end || st < end);
		}
		if (!ok)
			return af_error_set(err, 0, "package '%.*s' is not installed in the image (see the stage log)",
					    (int)len, pkg);
	}
	return 0;
}

/* The .debs are in the shared cache; the image need not carry them. */
static void deb_remove_debs(int rootfd, const char *dir)
{
	_cleanup_error_ struct af_error *e = NULL;
	if (inroot_unlink_glob(rootfd, dir, "*.deb", NULL, &e) < 0)
		log_warn("%s", af_error_msg(e));
}

/* flock CACHE/lock: builds share the cache but must not race on a .deb. */
static int deb_lock_cache(const char *cache_dir, struct af_error **err)
{
	_cleanup_free_ char *path = path_join(cache_dir, "lock");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return af_error_set(err, errno, "open package cache lock '%s'", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			int e = errno;
			close(fd);
			return af_error_set(err, e, "lock '%s'", path);
		}
		log_info("waiting for another build to release the package cache %s", cache_dir);
		if (flock(fd, LOCK_EX) < 0) {
			int e = errno;
			close(fd);
			return af_error_set(err, e, "lock '%s'", path);
		}
	}
	return fd;
}

static int deb_run(struct stage_ctx *ctx, struct af_error **err)
{
	const char *suite = params_str(ctx->params, "suite", NULL);
	const char *tool = NULL;
	_cleanup_free_ char *mirror = NULL;
	if (!suite || !*suite)
		return af_error_set(err, 0, "debootstrap needs a suite (e.g. suite: bookworm)");
	if (params_str(ctx->params, "mirror", NULL)) {
		mirror = xstrdup(params_str(ctx->params, "mirror", NULL));
		size_t l = strlen(mirror);
		while (l > 1 && mirror[l - 1] == '/')
			mirror[--l] = '\0';
	} else if (!(mirror = deb_host_mirror(DEB_APT_DIR, suite, err))) {
		return -1;
	}
	if (deb_pick_tool(params_str(ctx->params, "tool", "auto"), json_array_size(params_get(ctx->params, "exclude")) > 0,
			  &tool, err) < 0)
		return -1;
	if (deb_probe_mirror(mirror, suite, err) < 0)
		return -1;

	_cleanup_free_ char *cache = path_join(ctx->cache_dir, "debs");
	if (mkdir_p(cache, 0755, err) < 0)
		return af_error_wrap(err, "package cache");
	_cleanup_fd_ int lock = deb_lock_cache(ctx->cache_dir, err);
	if (lock < 0)
		return -1;
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	if (strcmp(tool, "debootstrap") == 0 && deb_write_unsafe_io(rootfd, ctx->root, err) < 0)
		return -1;

	if (strcmp(tool, "mmdebstrap") == 0 && deb_bind_cache(ctx, cache, err) < 0)
		return -1;
	struct deb_argv a = { 0 };
	deb_build_argv(tool, ctx->params, ctx->arch, mirror, ctx->root, cache, &a);
	log_info("%s %s from %s into %s (package cache %s)", tool, suite, mirror, ctx->root, cache);
	int r = deb_spawn(&a, ctx, err);
	deb_argv_release(&a);
	if (r < 0)
		return af_error_wrap(err, "%s %s", tool, suite);

	if (inroot_unlink(rootfd, ctx->root, DEB_UNSAFE_IO, err) < 0)
		return -1;
	deb_remove_debs(rootfd, "/var/cache/apt/archives");
	deb_remove_debs(rootfd, "/var/cache/apt/archives/partial");
	if (deb_drop_host_files(rootfd, ctx->root, err) < 0)
		return -1;
	if (deb_verify_status(rootfd, ctx->root, params_get(ctx->params, "include"), err) < 0)
		return -1;
	json_object_set_new(ctx->outputs, "debootstrap.suite", json_string(suite));
	json_object_set_new(ctx->outputs, "debootstrap.mirror", json_string(mirror));
	json_object_set_new(ctx->outputs, "debootstrap.tool", json_string(tool));
	return 0;
}

/* For plan (stage.h). */
static char *deb_describe(const struct stage_describe *d)
{
	const char *suite = params_str(d->params, "suite", "");
	const char *tool = params_str(d->params, "tool", "auto");
	const char *mirror = params_str(d->params, "mirror", NULL);
	size_t n_inc = json_array_size(params_get(d->params, "include"));
	size_t n_exc = json_array_size(params_get(d->params, "exclude"));
	struct strbuf sb = STRBUF_INIT;
	stage_describe_know(d, "debootstrap.suite", suite);
	stage_describe_know(d, "debootstrap.mirror", mirror);
	if (strcmp(tool, "auto") != 0)
		stage_describe_know(d, "debootstrap.tool", tool);
	strbuf_addf(&sb, "install Debian %s (%s) for %s", suite, params_str(d->params, "variant", "minbase"),
		    d->arch && !strcmp(d->arch, "arm64") ? "arm64" : "amd64");
	if (n_inc) {
		strbuf_addstr(&sb, " with ");
		stage_describe_count(&sb, n_inc, "extra package");
	}
	if (n_exc) {
		strbuf_addstr(&sb, n_inc ? ", without " : " without ");
		stage_describe_count(&sb, n_exc, "package");
	}
	strbuf_addf(&sb, " from %s", mirror ? mirror : "the host's Debian mirror");
	if (strcmp(tool, "auto") != 0)
		strbuf_addf(&sb, " with %s", tool);
	return strbuf_detach(&sb);
}

static const char *const debootstrap_provides[] = { "debootstrap.tool", "debootstrap.suite", "debootstrap.mirror", NULL };

const struct stage_type stage_debootstrap = {
	.name = "debootstrap",
	.summary = "install a Debian base system with mmdebstrap or debootstrap (shared package cache)",
	.params = deb_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NETWORK,
	.provides = debootstrap_provides,
	.default_timeout = 1800,
	.describe = deb_describe,
	.run = deb_run,
};
