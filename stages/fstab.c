/* SPDX-License-Identifier: Apache-2.0 */
/* fstab: writes /etc/fstab in the image.  The root line uses the LABEL or UUID that
 * libblkid reads from the built filesystem (what the initramfs and mount
 * will look for at boot), cross-checked against the mkfs facts. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/extfs.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

static const char *const fstab_root_by[] = { "label", "uuid", NULL };

static const struct param_spec fstab_entry_params[] = {
	{ .name = "spec", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "device, LABEL=, UUID= or remote spec" },
	{ .name = "file", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "mount point" },
	{ .name = "type", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "filesystem type" },
	{ .name = "options", .type = PT_STRING, .help = "mount options", .defval = "defaults" },
	{ .name = "dump", .type = PT_INT, .help = "dump frequency", .defval = "0" },
	{ .name = "pass", .type = PT_INT, .help = "fsck pass", .defval = "0" },
	{ .name = NULL },
};

static const struct param_spec fstab_params[] = {
	{ .name = "root_by", .type = PT_ENUM, .choices = fstab_root_by, .help = "name the root filesystem by label or uuid",
	  .defval = "label" },
	{ .name = "root_options", .type = PT_STRING, .help = "mount options of the root filesystem", .defval = "defaults" },
	{ .name = "swap", .type = PT_STRING, .help = "a swap device (mounted with nofail)" },
	{ .name = "ephemeral", .type = PT_STRING, .help = "an instance-store device mounted on /mnt with nofail" },
	{ .name = "ephemeral_fstype", .type = PT_STRING, .help = "filesystem type of the ephemeral device",
	  .defval = "auto" },
	{ .name = "proc", .type = PT_BOOL, .help = "add proc and sysfs lines", .defval = "true" },
	{ .name = "entries", .type = PT_LIST, .sub = fstab_entry_params, .help = "more fstab lines" },
	{ .name = NULL },
};

static void fstab_line(struct strbuf *sb, const char *spec, const char *file, const char *type, const char *opts,
		       int64_t dump, int64_t pass)
{
	strbuf_addf(sb, "%s\t%s\t%s\t%s\t%" PRId64 "\t%" PRId64 "\n", spec, file, type, opts, dump, pass);
}

/* The file's text.  ROOT_SPEC is "LABEL=..." or "UUID=...".  Pure. */
static char *fstab_render(const json_t *params, const char *root_spec, const char *fstype)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "# /etc/fstab: static file system information, written by amiforge.\n"
			   "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n");
	fstab_line(&sb, root_spec, "/", fstype, params_str(params, "root_options", "defaults"), 0, 1);
	if (params_bool(params, "proc", true)) {
		fstab_line(&sb, "proc", "/proc", "proc", "defaults", 0, 0);
		fstab_line(&sb, "sysfs", "/sys", "sysfs", "defaults", 0, 0);
	}
	const char *swap = params_str(params, "swap", NULL);
	if (swap)
		fstab_line(&sb, swap, "none", "swap", "sw,nofail", 0, 0);
	const char *eph = params_str(params, "ephemeral", NULL);
	if (eph)
		fstab_line(&sb, eph, "/mnt", params_str(params, "ephemeral_fstype", "auto"), "defaults,nofail", 0, 2);
	size_t i;
	json_t *e;
	json_array_foreach(params_get(params, "entries"), i, e)
		fstab_line(&sb, params_str(e, "spec", ""), params_str(e, "file", ""), params_str(e, "type", ""),
			   params_str(e, "options", "defaults"), params_int(e, "dump", 0), params_int(e, "pass", 0));
	return strbuf_detach(&sb);
}

/* LABEL and UUID of the filesystem at [offset, offset+size) of IMAGE. */
static int fstab_probe(const char *image, uint64_t offset, uint64_t size, char **label, char **uuid,
		       struct af_error **err)
{
	struct extfs_probe p = { 0 };
	if (extfs_probe_range(image, offset, size, &p, err) < 0)
		return err && af_error_errno(*err) == ENOENT ? af_error_hint(err, "run mkfs first") : -1;
	*label = steal_pointer(&p.label);
	*uuid = steal_pointer(&p.uuid);
	extfs_probe_release(&p);
	return 0;
}

/* The facts from mkfs must agree with the disk; a mismatch means a stale
 * journal or another tool touched the image. */
static int fstab_compare(const json_t *facts, const char *name, const char *on_disk, struct af_error **err)
{
	char key[32];
	snprintf(key, sizeof(key), "root.%s", name);
	const char *fact = json_string_value(json_object_get(facts, key));
	if (fact && (!on_disk || strcasecmp(fact, on_disk) != 0))
		return af_error_set(err, 0, "the root filesystem's %s is '%s' on disk but '%s' in the build's facts; rebuild from mkfs (--from mkfs)",
				    name, on_disk ? on_disk : "", fact);
	return 0;
}

static int fstab_run(struct stage_ctx *ctx, struct af_error **err)
{
	uint64_t off = (uint64_t)json_integer_value(json_object_get(ctx->facts, "root.offset"));
	uint64_t size = (uint64_t)json_integer_value(json_object_get(ctx->facts, "root.size"));
	const char *fstype = json_string_value(json_object_get(ctx->facts, "root.fstype"));
	_cleanup_free_ char *label = NULL, *uuid = NULL;
	if (fstab_probe(ctx->image, off, size, &label, &uuid, err) < 0)
		return -1;
	if (fstab_compare(ctx->facts, "label", label, err) < 0 || fstab_compare(ctx->facts, "uuid", uuid, err) < 0)
		return -1;
	bool by_label = strcmp(params_str(ctx->params, "root_by", "label"), "label") == 0;
	if (by_label && (!label || !*label))
		return af_error_set(err, 0, "the root filesystem has no label; set label: in mkfs or use root_by: uuid");
	if (!by_label && !uuid)
		return af_error_set(err, 0, "the root filesystem has no UUID; use root_by: label");
	_cleanup_free_ char *spec = xasprintf("%s=%s", by_label ? "LABEL" : "UUID", by_label ? label : uuid);
	_cleanup_free_ char *text = fstab_render(ctx->params, spec, fstype ? fstype : "auto");
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0 || inroot_write(rootfd, ctx->root, "/etc/fstab", text, strlen(text), 0644, 0, 0, err) < 0)
		return af_error_wrap(err, "write fstab");
	log_info("wrote /etc/fstab with root %s", spec);
	return 0;
}

/* For plan (stage.h): the root's label or UUID when the mkfs stage's
 * parameters fix it. */
static char *fstab_describe(const struct stage_describe *d)
{
	bool uuid = strcmp(params_str(d->params, "root_by", "label"), "uuid") == 0;
	const char *v = stage_describe_fact(d, uuid ? "root.uuid" : "root.label");
	const char *swap = params_str(d->params, "swap", NULL), *eph = params_str(d->params, "ephemeral", NULL);
	size_t more = json_array_size(params_get(d->params, "entries"));
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "write /etc/fstab: root by %s%s (%s)", uuid ? "UUID=" : "LABEL=",
		    v ? v : "(the filesystem's)", params_str(d->params, "root_options", "defaults"));
	if (swap)
		strbuf_addf(&sb, ", swap on %s", swap);
	if (eph)
		strbuf_addf(&sb, ", %s on /mnt", eph);
	if (params_bool(d->params, "proc", true))
		strbuf_addstr(&sb, ", proc and sysfs");
	if (more) {
		strbuf_addstr(&sb, ", ");
		stage_describe_count(&sb, more, "more line");
	}
	return strbuf_detach(&sb);
}

const struct stage_type stage_fstab = {
	.name = "fstab",
	.summary = "write /etc/fstab with the root by LABEL= or UUID= as libblkid reads them",
	.params = fstab_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT,
	.describe = fstab_describe,
	.run = fstab_run,
};
