/* SPDX-License-Identifier: Apache-2.0 */
/* kernel: a Debian kernel package and its initramfs, installed with the
 * image's apt.  The installed version and the paths of the kernel and initrd
 * inside the image become outputs ("kernel.version", "kernel.image",
 * "kernel.initrd") that the bootloader stage writes into its menu. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/apt.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

static const struct param_spec kernel_params[] = {
	{ .name = "package", .type = PT_STRING, .help = "the kernel package",
	  .defval = "linux-image-amd64 (x86_64) or linux-image-arm64 (arm64)" },
	{ .name = "no_install_recommends", .type = PT_BOOL,
	  .help = "leave out recommended packages (firmware, apparmor...)", .defval = "true" },
	{ .name = NULL },
};

static const char *kernel_default_package(const char *arch)
{
	return arch && !strcmp(arch, "arm64") ? "linux-image-arm64" : "linux-image-amd64";
}

/* The newest "vmlinuz-VERSION" among NAMES (by version order); NULL if
 * none.  Pure: unit-tested. */
static const char *kernel_pick(char *const *names, size_t n)
{
	const char *best = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *v = names[i];
		if (!str_has_prefix(v, "vmlinuz-") || str_has_suffix(v, ".dpkg-tmp") || str_has_suffix(v, ".old"))
			continue;
		v += strlen("vmlinuz-");
		if (*v && (!best || strverscmp(v, best) > 0))
			best = v;
	}
	return best;
}

/* The version of the newest kernel in the image's /boot.  Caller frees. */
static char *kernel_find(int rootfd, const char *root, struct af_error **err)
{
	int fd = inroot_open_dir(rootfd, "/boot", err);
	_cleanup_dir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0) {
			af_error_set(err, errno, "cannot read '/boot' in the image");
			close(fd);
		}
		return NULL;
	}
	char **names = NULL;
	size_t n = 0;
	for (struct dirent *de; (de = readdir(d));) {
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	const char *v = kernel_pick(names, n);
	char *out = v ? xstrdup(v) : NULL;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (!out)
		af_error_set(err, 0, "no /boot/vmlinuz-* in the image after installing the kernel (see the stage log)");
	return out;
}

static int kernel_make_initrd(const struct stage_ctx *ctx, const char *version, struct af_error **err)
{
	char *argv[] = { "update-initramfs", "-c", "-k", (char *)version, NULL };
	struct spawn_opts so = { .argv = argv, .chroot = ctx->root, .out_fd = ctx->log_fd, .in_fd = -1,
				 .deadline = ctx->deadline };
	log_info("no initrd for %s: running update-initramfs", version);
	return spawn_run(&so, err);
}

static int kernel_run(struct stage_ctx *ctx, struct af_error **err)
{
	const char *pkg = params_str(ctx->params, "package", kernel_default_package(ctx->arch));
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	/* initramfs-tools explicitly: with recommends off, apt could otherwise
	 * satisfy linux-initramfs-tool with something else or nothing. */
	_cleanup_json_ json_t *install = json_pack("[s, s]", pkg, "initramfs-tools");
	struct apt_request req = {
		.install = install,
		.update = true,
		.no_install_recommends = params_bool(ctx->params, "no_install_recommends", true),
	};
	if (apt_run(ctx, &req, err) < 0)
		return -1;
	if (!apt_installed(ctx->root, pkg))
		return af_error_set(err, 0, "kernel package '%s' is not installed after apt-get (see the stage log)", pkg);
	_cleanup_free_ char *version = kernel_find(rootfd, ctx->root, err);
	if (!version)
		return -1;
	_cleanup_free_ char *image = xasprintf("/boot/vmlinuz-%s", version);
	_cleanup_free_ char *initrd = xasprintf("/boot/initrd.img-%s", version);
	if (!inroot_exists(rootfd, initrd) && kernel_make_initrd(ctx, version, err) < 0)
		return -1;
	if (!inroot_exists(rootfd, initrd))
		return af_error_set(err, 0, "no %s after update-initramfs (see the stage log)", initrd);
	log_info("kernel %s: %s, %s", version, image, initrd);
	json_object_set_new(ctx->outputs, "kernel.version", json_string(version));
	json_object_set_new(ctx->outputs, "kernel.image", json_string(image));
	json_object_set_new(ctx->outputs, "kernel.initrd", json_string(initrd));
	json_object_set_new(ctx->outputs, "kernel.package", json_string(pkg));
	return 0;
}

/* For plan (stage.h). */
static char *kernel_describe(const struct stage_describe *d)
{
	const char *pkg = params_str(d->params, "package", kernel_default_package(d->arch));
	stage_describe_know(d, "kernel.package", pkg);
	return xasprintf("install %s and its initramfs%s", pkg,
			 params_bool(d->params, "no_install_recommends", true) ? " (no recommended packages)" : "");
}

static const char *const kernel_provides[] = { "kernel.package", "kernel.version", "kernel.image", "kernel.initrd", NULL };

const struct stage_type stage_kernel = {
	.name = "kernel",
	.summary = "a Debian kernel and its initramfs; outputs kernel.version, kernel.image, kernel.initrd",
	.params = kernel_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT | STAGE_NETWORK,
	.provides = kernel_provides,
	.default_timeout = 1800,
	.describe = kernel_describe,
	.run = kernel_run,
};
