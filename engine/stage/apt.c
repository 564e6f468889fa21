/* SPDX-License-Identifier: Apache-2.0 */
/* apt-get in an image's chroot with the shared package cache (see apt.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/apt.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exec.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define APT_STATUS_MAX (64u << 20)

/* Options for every apt-get run: keep the config files the image has,
 * let dpkg skip fsyncs (DESIGN §6: durability comes from checkpoints), keep
 * the downloaded .debs (they are the shared cache) and write no binary
 * package caches into the image. */
static const char *const apt_common[] = {
	"apt-get", "-y", "-q",
	"-o", "Dpkg::Options::=--force-confdef",
	"-o", "Dpkg::Options::=--force-confold",
	"-o", "Dpkg::Options::=--force-unsafe-io",
	"-o", "APT::Keep-Downloaded-Packages=true",
	"-o", "Acquire::Retries=3",
	"-o", "Dir::Cache::pkgcache=",
	"-o", "Dir::Cache::srcpkgcache=",
};

static int apt_spawn(const struct stage_ctx *ctx, const char *verb, const char *const *extra, const json_t *pkgs,
		     struct af_error **err)
{
	size_t npkgs = json_array_size(pkgs), nextra = 0, n = 0;
	while (extra && extra[nextra])
		nextra++;
	const char **argv = xcalloc(ARRAY_SIZE(apt_common) + nextra + npkgs + 2, sizeof(*argv));
	for (size_t i = 0; i < ARRAY_SIZE(apt_common); i++)
		argv[n++] = apt_common[i];
	for (size_t i = 0; i < nextra; i++)
		argv[n++] = extra[i];
	argv[n++] = verb;
	size_t i;
	json_t *v;
	json_array_foreach(pkgs, i, v)
		argv[n++] = json_string_value(v);

	char **env = exec_env_new(true, NULL);

	struct strbuf shown = STRBUF_INIT;
	strbuf_addf(&shown, "apt-get %s", verb);
	json_array_foreach(pkgs, i, v)
		strbuf_addf(&shown, " %s", json_string_value(v));
	log_info("%s", shown.buf);
	struct spawn_opts so = {
		.argv = (char *const *)argv,
		.chroot = ctx->root,
		.network = true,
		.env = env,
		.out_fd = ctx->log_fd,
		.in_fd = -1,
		.deadline = ctx->deadline,
	};
	int r = spawn_run(&so, err);
	if (r < 0)
		af_error_wrap(err, "%s", shown.buf);
	strbuf_release(&shown);
	exec_env_free(env);
	free(argv);
	return r;
}

/* flock CACHE/lock: builds share the cache but must not race on a .deb. */
static int apt_lock_cache(const char *cache_dir, struct af_error **err)
{
	_cleanup_free_ char *path = path_join(cache_dir, "lock");
	_cleanup_fd_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return af_error_set(err, errno, "open package cache lock '%s'", path);
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return steal_fd(&fd);
	if (errno != EWOULDBLOCK)
		return af_error_set(err, errno, "lock '%s'", path);
	log_info("waiting for another build to release the package cache %s", cache_dir);
	if (flock(fd, LOCK_EX) < 0)
		return af_error_set(err, errno, "lock '%s'", path);
	return steal_fd(&fd);
}

/* Binds host directory SRC over DIR of the image, resolved inside it and
 * mounted through the opened fd so the kernel mounts on what was checked. */
int apt_bind(int rootfd, const char *root, const char *src, const char *dir, struct af_error **err)
{
	_cleanup_fd_ int fd = inroot_mkdirs(rootfd, root, dir, 0755, err);
	if (fd < 0)
		return -1;
	char target[64];
	snprintf(target, sizeof(target), "/proc/self/fd/%d", fd);
	if (mount(src, target, NULL, MS_BIND, NULL) < 0)
		return af_error_set(err, errno, "cannot bind '%s' on '%s%s'", src, root, dir);
	return 0;
}

/* Unmounts what apt_bind mounted on DIR, reached the same way: resolved
 * inside the image, unmounted through the fd of the mount's root. */
static void apt_unbind(int rootfd, const char *dir)
{
	_cleanup_fd_ int fd = inroot_open(rootfd, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
	char target[64];
	snprintf(target, sizeof(target), "/proc/self/fd/%d", fd);
	if (fd < 0 || umount2(target, MNT_DETACH) < 0)
		log_debug("umount '%s' in the image: %s", dir, strerror(errno));
}

static int apt_commands(const struct stage_ctx *ctx, const struct apt_request *req, struct af_error **err)
{
	static const char *const no_rec[] = { "--no-install-recommends", NULL };
	if (req->update && apt_spawn(ctx, "update", NULL, NULL, err) < 0)
		return -1;
	if (req->upgrade && apt_spawn(ctx, "upgrade", NULL, NULL, err) < 0)
		return -1;
	if (json_array_size(req->install) &&
	    apt_spawn(ctx, "install", req->no_install_recommends ? no_rec : NULL, req->install, err) < 0)
		return -1;
	if (json_array_size(req->remove) && apt_spawn(ctx, "purge", NULL, req->remove, err) < 0)
		return -1;
	return 0;
}

int apt_run(const struct stage_ctx *ctx, const struct apt_request *req, struct af_error **err)
{
	_cleanup_free_ char *debs = path_join(ctx->cache_dir, "debs");
	_cleanup_free_ char *lists = path_join(ctx->state_dir, "apt-lists");
	_cleanup_free_ char *partial = path_join(lists, "partial");
	if (mkdir_p(debs, 0755, err) < 0 || mkdir_p(partial, 0700, err) < 0)
		return af_error_wrap(err, "apt");
	_cleanup_fd_ int lock = apt_lock_cache(ctx->cache_dir, err);
	if (lock < 0)
		return -1;
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	if (apt_bind(rootfd, ctx->root, debs, "/var/cache/apt/archives", err) < 0)
		return -1;
	if (apt_bind(rootfd, ctx->root, lists, "/var/lib/apt/lists", err) < 0) {
		apt_unbind(rootfd, "/var/cache/apt/archives");
		return -1;
	}
	int r = apt_commands(ctx, req, err);
	apt_unbind(rootfd, "/var/lib/apt/lists");
	apt_unbind(rootfd, "/var/cache/apt/archives");
	return r;
}

/* ---- dpkg status ---- */

static bool apt_para_installed(const char *para, const char *end)
{
	const char *st = strstr(para, "\nStatus: install ok installed\n");
	return st && st < end;
}

static bool apt_status_has(const char *status, const char *pkg)
{
	size_t len = strcspn(pkg, "=:/");
	_cleanup_free_ char *needle = xasprintf("Package: %.*s\n", (int)len, pkg);
	size_t nl = strlen(needle);
	for (const char *p = status; (p = strstr(p, needle)); p += nl) {
		if (p != status && p[-1] != '\n')
			continue;
		const char *end = strstr(p, "\n\n");
		if (!end)
			end = p + strlen(p);
		if (apt_para_installed(p - (p != status), end))
			return true;
	}
	return false;
}

/* The image's dpkg status, or NULL (none, or not a regular file: then
 * nothing counts as installed and apt runs). */
static char *apt_read_status(const char *root)
{
	_cleanup_error_ struct af_error *ignore = NULL;
	_cleanup_fd_ int rootfd = inroot_root_open(root, &ignore);
	if (rootfd < 0)
		return NULL;
	return inroot_read(rootfd, root, "/var/lib/dpkg/status", APT_STATUS_MAX, NULL, &ignore);
}

bool apt_installed(const char *root, const char *pkg)
{
	_cleanup_free_ char *status = apt_read_status(root);
	return status && apt_status_has(status, pkg);
}

json_t *apt_missing(const char *root, const json_t *install)
{
	_cleanup_free_ char *status = apt_read_status(root);
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(install, i, v)
		if (!status || !apt_status_has(status, json_string_value(v)))
			json_array_append(out, v);
	return out;
}
