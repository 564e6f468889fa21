/* SPDX-License-Identifier: Apache-2.0 */
/* packages: apt-get in the image (update, upgrade, install, purge) from the
 * sources debootstrap configured, with the shared package cache (apt.h). */
#include <ctype.h>
#include <string.h>

#include "amiforge/apt.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

static const struct param_spec pkg_params[] = {
	{ .name = "install", .type = PT_STRINGS, .help = "packages to install (name, name=version, name:arch)" },
	{ .name = "remove", .type = PT_STRINGS, .help = "packages to remove with their configuration (purge)" },
	{ .name = "no_install_recommends", .type = PT_BOOL, .help = "leave out recommended packages",
	  .defval = "false" },
	{ .name = "update", .type = PT_BOOL, .help = "apt-get update first", .defval = "true" },
	{ .name = "upgrade", .type = PT_BOOL, .help = "apt-get upgrade before installing", .defval = "false" },
	{ .name = NULL },
};

/* Debian package names, with an optional =version, :arch or /release:
 * nothing apt-get would read as an option. */
static bool pkg_name_valid(const char *p)
{
	if (!isalnum((unsigned char)*p))
		return false;
	for (; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("+-.:=~/_", *p))
			return false;
	return true;
}

static int pkg_check_list(const json_t *list, const char *what, struct af_error **err)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
		if (!pkg_name_valid(json_string_value(v)))
			return af_error_set(err, 0, "%s: '%s' is not a package name", what, json_string_value(v));
	return 0;
}

static int pkg_check(const json_t *params, struct af_error **err)
{
	if (pkg_check_list(params_get(params, "install"), "install", err) < 0 ||
	    pkg_check_list(params_get(params, "remove"), "remove", err) < 0)
		return -1;
	if (!json_array_size(params_get(params, "install")) && !json_array_size(params_get(params, "remove")) &&
	    !params_bool(params, "upgrade", false))
		return af_error_set(err, 0, "packages has nothing to do: give install, remove or upgrade: true");
	return 0;
}

static int pkg_run(struct stage_ctx *ctx, struct af_error **err)
{
	struct apt_request req = {
		.install = params_get(ctx->params, "install"),
		.remove = params_get(ctx->params, "remove"),
		.update = params_bool(ctx->params, "update", true),
		.upgrade = params_bool(ctx->params, "upgrade", false),
		.no_install_recommends = params_bool(ctx->params, "no_install_recommends", false),
	};
	if (apt_run(ctx, &req, err) < 0)
		return -1;
	_cleanup_json_ json_t *missing = apt_missing(ctx->root, req.install);
	if (json_array_size(missing))
		return af_error_set(err, 0, "package '%s' is not installed after apt-get install (see the stage log)",
				    json_string_value(json_array_get(missing, 0)));
	size_t i;
	json_t *v;
	json_array_foreach(req.remove, i, v)
		if (apt_installed(ctx->root, json_string_value(v)))
			return af_error_set(err, 0, "package '%s' is still installed after apt-get purge",
					    json_string_value(v));
	log_info("packages: %zu installed, %zu removed", json_array_size(req.install), json_array_size(req.remove));
	return 0;
}

/* For plan (stage.h). */
static char *pkg_describe(const struct stage_describe *d)
{
	const json_t *inst = params_get(d->params, "install"), *rm = params_get(d->params, "remove");
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, params_bool(d->params, "update", true) ? "apt-get update" : "no apt-get update");
	if (params_bool(d->params, "upgrade", false))
		strbuf_addstr(&sb, ", upgrade");
	if (json_array_size(inst)) {
		strbuf_addstr(&sb, ", install ");
		stage_describe_count(&sb, json_array_size(inst), "package");
		strbuf_addstr(&sb, ": ");
		stage_describe_list(&sb, inst, 6);
		if (params_bool(d->params, "no_install_recommends", false))
			strbuf_addstr(&sb, " (no recommended packages)");
	}
	if (json_array_size(rm)) {
		strbuf_addstr(&sb, json_array_size(inst) ? "; purge " : ", purge ");
		stage_describe_count(&sb, json_array_size(rm), "package");
		strbuf_addstr(&sb, ": ");
		stage_describe_list(&sb, rm, 6);
	}
	return strbuf_detach(&sb);
}

const struct stage_type stage_packages = {
	.name = "packages",
	.summary = "apt-get update, upgrade, install and purge in the image (shared package cache)",
	.params = pkg_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT | STAGE_NETWORK,
	.default_timeout = 3600,
	.check = pkg_check,
	.describe = pkg_describe,
	.run = pkg_run,
};
