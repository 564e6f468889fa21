/* SPDX-License-Identifier: Apache-2.0 */
/* apt-get inside an image's chroot, for stages that install packages
 * (packages, ssh, kernel, bootloader).  Call it from a stage with
 * STAGE_NEEDS_CHROOT | STAGE_NETWORK: it runs in the stage child's private
 * mount namespace and bind-mounts there
 *   CACHE/debs  over ROOT/var/cache/apt/archives  (the shared package cache,
 *               DESIGN §5: apt checks every cached .deb against the
 *               archive's signed checksums before using it), and
 *   STATE/apt-lists over ROOT/var/lib/apt/lists   (the package lists stay
 *               out of the image and are refreshed cheaply next time),
 * holding CACHE/lock while apt runs.  Sources are the image's own
 * /etc/apt/sources.list (what debootstrap configured). */
#ifndef AMIFORGE_APT_H
#define AMIFORGE_APT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct af_error;
struct stage_ctx;

struct apt_request {
	const json_t *install;        /* array of package names, or NULL */
	const json_t *remove;         /* array of package names (purged), or NULL */
	bool update;                  /* apt-get update first */
	bool upgrade;                 /* apt-get upgrade */
	bool no_install_recommends;
};

/* Runs the request's apt-get commands in ctx->root, their output on the
 * stage log.  0 or -1 + err naming the command. */
int apt_run(const struct stage_ctx *ctx, const struct apt_request *req, struct af_error **err);

/* True if PKG (a name, optionally with :arch or =version) is "install ok
 * installed" in ROOT's dpkg status. */
bool apt_installed(const char *root, const char *pkg);

/* The names of INSTALL (an array of strings) that ROOT lacks, as a new
 * array (possibly empty). */
json_t *apt_missing(const char *root, const json_t *install);

/* Binds host directory SRC over DIR of the image (created if missing),
 * resolved inside ROOTFD and mounted through the opened fd, in the calling
 * process's mount namespace.  0 or -1 + err. */
int apt_bind(int rootfd, const char *root, const char *src, const char *dir, struct af_error **err);

#endif
