/* SPDX-License-Identifier: Apache-2.0 */
/* bootloader: makes the image bootable.
 *
 * - type: pvgrub writes /boot/grub/menu.lst for Amazon's PV-GRUB (GRUB 0.97
 *   with Xen's patches, reference/FORMATS.md §6) after checking with
 *   libext2fs that GRUB legacy can read the root filesystem.
 * - type: grub installs GRUB 2 inside the chroot: BIOS (grub-pc, boot code in
 *   the MBR and the core image in the MBR gap or the GPT BIOS boot partition,
 *   written through a loop device of the whole disk while the root
 *   partition stays mounted through its own offset loop, DESIGN §6) and/or
 *   UEFI (GRUB's EFI image made by grub-mkimage in the chroot, copied onto
 *   the FAT ESP with mtools, at EFI/debian/ and at the removable path
 *   EFI/BOOT/); grub.cfg is made by grub-mkconfig in the chroot and checked
 *   for the root= it must carry.
 * - type: none does nothing (images that boot their kernel directly).
 *
 * The whole-disk loop device is attached with autoclear in the stage
 * child and its node lives in the chroot's private /dev: both vanish with
 * the child.  The ESP is never mounted (the build host's kernel may lack
 * vfat). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/extfs.h"
#include "amiforge/grublegacy.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/loopdev.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define BOOT_EFI_MAX (64u << 20) /* GRUB's EFI image: a few MiB */
#define BOOT_CFG_MAX (16u << 20)

static const char *const boot_types[] = { "grub", "pvgrub", "none", NULL };
static const char *const boot_firmwares[] = { "auto", "bios", "uefi", "both", NULL };
static const char *const boot_root_by[] = { "label", "uuid", NULL };

static const struct param_spec boot_params[] = {
	{ .name = "type", .type = PT_ENUM, .flags = PARAM_REQUIRED, .choices = boot_types,
	  .help = "grub (GRUB 2 for HVM), pvgrub (menu.lst for PV-GRUB) or none" },
	{ .name = "firmware", .type = PT_ENUM, .choices = boot_firmwares,
	  .help = "grub: bios, uefi or both; auto is uefi when the disk has an ESP (both with a BIOS boot partition), else bios",
	  .defval = "auto" },
	{ .name = "root_by", .type = PT_ENUM, .choices = boot_root_by,
	  .help = "root= on the kernel command line by LABEL= or UUID= of the root filesystem", .defval = "label" },
	{ .name = "cmdline", .type = PT_STRING, .help = "more kernel command line arguments" },
	{ .name = "menu_timeout", .type = PT_INT, .help = "seconds the boot menu waits",
	  .defval = "1 (grub), 0 (pvgrub)" },
	{ .name = "title", .type = PT_STRING, .help = "pvgrub: title of the menu entry", .defval = "Linux VERSION" },
	{ .name = NULL },
};

/* ---- the kernel ------------------------------------------------------------ */

struct boot_kernel {
	char *version;  /* "6.1.0-50-amd64" */
	char *image;    /* "/boot/vmlinuz-6.1.0-50-amd64" */
	char *initrd;   /* "/boot/initrd.img-6.1.0-50-amd64" or NULL */
};

static void boot_kernel_release(struct boot_kernel *k)
{
	free(k->version);
	free(k->image);
	free(k->initrd);
	*k = (struct boot_kernel){ 0 };
}

static char *boot_abs(const char *p)
{
	return p[0] == '/' ? xstrdup(p) : xasprintf("/%s", p);
}

/* The newest /boot/vmlinuz-VERSION in the image (Debian's version order). */
static char *boot_newest_kernel(int rootfd)
{
	_cleanup_error_ struct af_error *ignore = NULL;
	_cleanup_fd_ int bfd = inroot_open_dir(rootfd, "/boot", &ignore);
	if (bfd < 0)
		return NULL;
	DIR *d = fdopendir(steal_fd(&bfd));
	if (!d)
		return NULL;
	char *best = NULL;
	struct dirent *de;
	while ((de = readdir(d)))
		if (str_has_prefix(de->d_name, "vmlinuz-") && (!best || strverscmp(de->d_name + 8, best) > 0)) {
			free(best);
			best = xstrdup(de->d_name + 8);
		}
	closedir(d);
	return best;
}

/* The kernel stage's facts, else the newest kernel found in /boot. */
static int boot_find_kernel(int rootfd, const json_t *facts, struct boot_kernel *k, struct af_error **err)
{
	const char *image = json_string_value(json_object_get(facts, "kernel.image"));
	const char *initrd = json_string_value(json_object_get(facts, "kernel.initrd"));
	const char *version = json_string_value(json_object_get(facts, "kernel.version"));
	if (image) {
		k->image = boot_abs(image);
		k->initrd = initrd && *initrd ? boot_abs(initrd) : NULL;
		k->version = xstrdup(version ? version : "");
	} else {
		k->version = boot_newest_kernel(rootfd);
		if (!k->version)
			return af_error_set(err, 0, "no kernel in the image (no /boot/vmlinuz-*, no kernel stage facts); add a kernel stage before the bootloader");
		k->image = xasprintf("/boot/vmlinuz-%s", k->version);
		_cleanup_free_ char *rd = xasprintf("/boot/initrd.img-%s", k->version);
		if (inroot_exists(rootfd, rd))
			k->initrd = steal_pointer(&rd);
	}
	if (!inroot_exists(rootfd, k->image))
		return af_error_set(err, 0, "the kernel '%s' is not in the image; rebuild from the kernel stage", k->image);
	if (k->initrd && !inroot_exists(rootfd, k->initrd))
		return af_error_set(err, 0, "the initrd '%s' is not in the image; rebuild from the kernel stage", k->initrd);
	return 0;
}

/* ---- PV-GRUB menu.lst ------------------------------------------------------ */

struct boot_entry {
	const char *title, *kernel, *initrd;  /* initrd may be NULL */
};

struct boot_menu {
	bool partitioned;     /* root (hd0,0) rather than (hd0) */
	int64_t timeout;
	const char *cmdline;  /* everything after the kernel path */
	struct boot_entry entries[2];  /* default, fallback */
};

/* The menu.lst text (FORMATS.md §6).  Pure. */
static char *boot_menu_lst(const struct boot_menu *m)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "# /boot/grub/menu.lst for PV-GRUB, written by amiforge.\n"
			 "default 0\nfallback 1\ntimeout %" PRId64 "\nhiddenmenu\n",
		    m->timeout);
	for (size_t i = 0; i < ARRAY_SIZE(m->entries); i++) {
		const struct boot_entry *e = &m->entries[i];
		strbuf_addf(&sb, "\ntitle %s\nroot %s\nkernel %s %s\n", e->title, m->partitioned ? "(hd0,0)" : "(hd0)",
			    e->kernel, m->cmdline);
		if (e->initrd)
			strbuf_addf(&sb, "initrd %s\n", e->initrd);
	}
	return strbuf_detach(&sb);
}

/* "root=LABEL=x ro console=... extra". */
static char *boot_cmdline(const char *root_spec, const char *console, const char *extra)
{
	return xasprintf("root=%s ro %s%s%s", root_spec, console, extra && *extra ? " " : "", extra ? extra : "");
}

/* Returns 0 if GRUB legacy (PV-GRUB) can read the root filesystem, or -1 +
 * err naming every problem and the fix (see grublegacy.h). */
static int boot_pvgrub_check_super(struct ext2_super_block *sb, struct af_error **err)
{
	struct strbuf why = STRBUF_INIT;
	if (grublegacy_can_read(sb, &why))
		return 0;
	af_error_set(err, 0, "GRUB legacy (PV-GRUB) cannot read the root filesystem: %s; make it with mkfs {pvgrub_compatible: true} (128-byte inodes, mke2fs -I 128 -O ^64bit,^metadata_csum,^inline_data)",
		     why.buf);
	strbuf_release(&why);
	return -1;
}

static int boot_pvgrub_check_fs(const char *image, uint64_t offset, const char *fstype, struct af_error **err)
{
	if (fstype && strcmp(fstype, "ext2") && strcmp(fstype, "ext3") && strcmp(fstype, "ext4"))
		return af_error_set(err, 0, "PV-GRUB support here covers ext2/3/4 only, the root filesystem is %s; make it with mkfs {type: ext4, pvgrub_compatible: true}",
				    fstype);
	_cleanup_ext2fs_ ext2_filsys fs = NULL;
	if (extfs_open_at(image, offset, 0, &fs, err) < 0)
		return af_error_wrap(err, "open the root filesystem");
	return boot_pvgrub_check_super(fs->super, err);
}

static const char *boot_fact_str(const json_t *facts, const char *name)
{
	return json_string_value(json_object_get(facts, name));
}

/* LABEL=... or UUID=... of the root filesystem from the mkfs facts. */
static char *boot_root_spec(const struct stage_ctx *ctx, struct af_error **err)
{
	bool by_label = strcmp(params_str(ctx->params, "root_by", "label"), "label") == 0;
	const char *v = boot_fact_str(ctx->facts, by_label ? "root.label" : "root.uuid");
	if (!v || !*v) {
		af_error_set(err, 0, "the root filesystem has no %s in the build's facts; %s", by_label ? "label" : "UUID",
			     by_label ? "set label: in mkfs or use root_by: uuid" : "use root_by: label");
		return NULL;
	}
	return xasprintf("%s=%s", by_label ? "LABEL" : "UUID", v);
}

static int boot_pvgrub(struct stage_ctx *ctx, int rootfd, struct af_error **err)
{
	const char *table = boot_fact_str(ctx->facts, "partition.table");
	uint64_t off = (uint64_t)json_integer_value(json_object_get(ctx->facts, "root.offset"));
	if (boot_pvgrub_check_fs(ctx->image, off, boot_fact_str(ctx->facts, "root.fstype"), err) < 0)
		return -1;
	struct boot_kernel k = { 0 };
	if (boot_find_kernel(rootfd, ctx->facts, &k, err) < 0) {
		boot_kernel_release(&k);
		return -1;
	}
	_cleanup_free_ char *spec = boot_root_spec(ctx, err);
	if (!spec) {
		boot_kernel_release(&k);
		return -1;
	}
	_cleanup_free_ char *cmdline = boot_cmdline(spec, "console=hvc0", params_str(ctx->params, "cmdline", NULL));
	_cleanup_free_ char *title = params_get(ctx->params, "title")
					     ? xstrdup(params_str(ctx->params, "title", ""))
					     : xasprintf("Linux %s", k.version);
	_cleanup_free_ char *fb_title = xasprintf("%s (fallback)", title);
	/* The fallback boots through Debian's /vmlinuz and /initrd.img links,
	 * which follow kernel upgrades made on the instance: when an upgrade
	 * removes the version named in the first entry, this one still boots.
	 * Without the links it repeats the first entry. */
	bool links = inroot_exists(rootfd, "vmlinuz") && (!k.initrd || inroot_exists(rootfd, "initrd.img"));
	struct boot_menu m = {
		.partitioned = table && strcmp(table, "none") != 0,
		.timeout = params_int(ctx->params, "menu_timeout", 0),
		.cmdline = cmdline,
		.entries = { { title, k.image, k.initrd },
			     { fb_title, links ? "/vmlinuz" : k.image, !k.initrd ? NULL : links ? "/initrd.img" : k.initrd } },
	};
	_cleanup_free_ char *text = boot_menu_lst(&m);
	int r = inroot_write(rootfd, ctx->root, "/boot/grub/menu.lst", text, strlen(text), 0644, 0, 0, err);
	if (r == 0) {
		json_object_set_new(ctx->outputs, "bootloader.config", json_string("/boot/grub/menu.lst"));
		json_object_set_new(ctx->outputs, "bootloader.pvgrub_root", json_string(m.partitioned ? "(hd0,0)" : "(hd0)"));
		json_object_set_new(ctx->outputs, "kernel.cmdline", json_string(cmdline));
		log_info("wrote /boot/grub/menu.lst: root %s, kernel %s %s", m.partitioned ? "(hd0,0)" : "(hd0)", k.image,
			 cmdline);
	}
	boot_kernel_release(&k);
	return r;
}

/* ---- GRUB 2 ------------------------------------------------------------------ */

struct boot_grub {
	bool bios, uefi;
	const char *efi_target;   /* x86_64-efi | arm64-efi */
	const char *efi_package;  /* grub-efi-amd64 | grub-efi-arm64 (-bin with BIOS) */
	const char *efi_named;    /* EFI/debian/grubx64.efi | EFI/debian/grubaa64.efi */
	const char *removable;    /* EFI/BOOT/BOOTX64.EFI | EFI/BOOT/BOOTAA64.EFI */
	const char *console;      /* kernel console= arguments */
};

/* /etc/default/grub.d/amiforge.cfg: read by grub-mkconfig after
 * /etc/default/grub, here and on every update-grub on the instance.  The
 * root is named by GRUB_DEVICE with the UUID form disabled, so root= never
 * becomes the build's loop device.  Pure. */
static char *boot_grub_defaults(int64_t timeout, const char *root_spec, const char *console, const char *extra)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "# written by amiforge's bootloader stage\n"
			 "GRUB_TIMEOUT=%" PRId64 "\n"
			 "GRUB_TIMEOUT_STYLE=menu\n"
			 "GRUB_CMDLINE_LINUX=\"%s%s%s\"\n"
			 "GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n"
			 "GRUB_TERMINAL=\"console serial\"\n"
			 "GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"
			 "GRUB_DISABLE_OS_PROBER=true\n"
			 "GRUB_DEVICE=\"%s\"\n"
			 "GRUB_DISABLE_LINUX_UUID=true\n"
			 "GRUB_DISABLE_LINUX_PARTUUID=true\n",
		    timeout, console, extra && *extra ? " " : "", extra ? extra : "", root_spec);
	return strbuf_detach(&sb);
}

/* Every `linux` line of grub.cfg must boot the wanted root: returns 0, or
 * -1 + err quoting the first bad line.  Pure. */
static int boot_grub_cfg_check(const char *cfg, const char *root_spec, struct af_error **err)
{
	_cleanup_free_ char *want = xasprintf("root=%s ", root_spec);
	int n = 0;
	for (const char *line = cfg; line && *line;) {
		const char *end = strchrnul(line, '\n');
		const char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (str_has_prefix(p, "linux") && (p[5] == ' ' || p[5] == '\t')) {
			_cleanup_free_ char *l = xstrndup(p, (size_t)(end - p));
			_cleanup_free_ char *lsp = xasprintf("%s ", l);
			n++;
			if (!strstr(lsp, want) || strstr(lsp, "root=/dev/loop") || strstr(lsp, "root=/dev/mapper"))
				return af_error_set(err, 0, "grub.cfg boots the wrong root: '%s' (wanted root=%s)", l, root_spec);
		}
		line = *end ? end + 1 : end;
	}
	if (n == 0)
		return af_error_set(err, 0, "grub.cfg has no linux line: grub-mkconfig found no kernel in /boot; add a kernel stage before the bootloader");
	return 0;
}

/* The block devices grub-install and grub-probe open in the jail: the root
 * filesystem's loop device and the whole disk.  Bound into the jail's /dev;
 * nothing else of the host's /dev is there. */
struct boot_devs {
	char *root;
	char *disk;
	const char *v[3];
};

static int boot_chroot_run(const struct stage_ctx *ctx, const char *const *argv, const struct boot_devs *devs,
			   bool network, struct af_error **err)
{
	struct spawn_opts so = {
		.argv = (char *const *)argv,
		.chroot = ctx->root,
		.network = network,
		.devices = devs ? devs->v : NULL,
		.out_fd = ctx->log_fd,
		.in_fd = -1,
		.deadline = ctx->deadline,
	};
	return spawn_run(&so, err);
}

static int boot_chroot_sh(const struct stage_ctx *ctx, const char *script, bool network, struct af_error **err)
{
	const char *argv[] = { "/bin/sh", "-ec", script, NULL };
	return boot_chroot_run(ctx, argv, NULL, network, err);
}

/* Installs PKGS (space separated) with apt in the chroot unless all of them
 * already are.  grub-pc's questions are answered first (no install device:
 * the stage installs the boot code itself). */
static int boot_apt_install(const struct stage_ctx *ctx, const char *pkgs, struct af_error **err)
{
	_cleanup_free_ char *script = xasprintf(
		"missing=\n"
		"for p in %s; do\n"
		"  dpkg-query -W -f='${Status}\\n' \"$p\" 2>/dev/null | grep -q '^install ok installed$' || missing=\"$missing $p\"\n"
		"done\n"
		"[ -n \"$missing\" ] || { echo \"amiforge: already installed: %s\"; exit 0; }\n"
		"printf '%%s\\n' 'grub-pc grub-pc/install_devices multiselect' \\\n"
		"  'grub-pc grub-pc/install_devices_empty boolean true' | debconf-set-selections\n"
		"ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update -q\n"
		"apt-get install -y -q --no-install-recommends $missing || { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }\n"
		"apt-get clean\n",
		pkgs, pkgs);
	log_info("bootloader: apt-get install %s (if missing)", pkgs);
	if (boot_chroot_sh(ctx, script, true, err) < 0)
		return af_error_wrap(err, "install %s in the image", pkgs);
	return 0;
}

/* "/dev/loopN" for the block device DEV, as the kernel names it. */
static char *boot_devname(dev_t dev)
{
	_cleanup_free_ char *uevent = xasprintf("/sys/dev/block/%u:%u/uevent", major(dev), minor(dev));
	_cleanup_free_ char *text = read_file(uevent, NULL, NULL);
	const char *p = text ? strstr(text, "DEVNAME=") : NULL;
	if (!p)
		return xasprintf("/dev/block-%u-%u", major(dev), minor(dev));
	return xasprintf("/dev/%.*s", (int)strcspn(p + 8, "\n"), p + 8);
}

/* The whole disk through its own loop device (or the disk itself when the
 * image is a block device), for the jail's /dev. */
static int boot_disk_loop(const struct stage_ctx *ctx, struct loopdev *disk, struct af_error **err)
{
	struct stat st;
	if (stat(ctx->image, &st) < 0)
		return af_error_set(err, errno, "stat '%s'", ctx->image);
	if (S_ISBLK(st.st_mode)) {
		disk->fd = -1;
		disk->path = xstrdup(ctx->image);
		return 0;
	}
	if (loopdev_attach(ctx->image, 0, 0, false, disk, err) < 0)
		return af_error_wrap(err, "attach the whole disk for GRUB");
	return 0;
}

/* grub-install and grub-probe follow / to the root filesystem's device:
 * the runner's offset loop device. */
static int boot_root_dev(const struct stage_ctx *ctx, struct boot_devs *devs, struct af_error **err)
{
	struct stat st;
	if (stat(ctx->root, &st) < 0)
		return af_error_set(err, errno, "stat '%s'", ctx->root);
	devs->root = boot_devname(st.st_dev);
	devs->v[0] = devs->root;
	return 0;
}

/* The ESP's filesystem type as libblkid reads it, or NULL. */
static char *boot_probe_type(const char *image, uint64_t off, uint64_t size)
{
	struct extfs_probe p = { 0 };
	if (extfs_probe_range(image, off, size, &p, NULL) < 0)
		return NULL;
	char *type = steal_pointer(&p.type);
	extfs_probe_release(&p);
	return type;
}

/* The ESP's byte range, checked to hold a FAT filesystem. */
static int boot_esp(const struct stage_ctx *ctx, uint64_t *off, struct af_error **err)
{
	const json_t *o = json_object_get(ctx->facts, "esp.offset"), *size = json_object_get(ctx->facts, "esp.size");
	if (!o || !size)
		return af_error_set(err, 0, "UEFI boot needs an EFI system partition; use partition {table: gpt, esp: 128MiB}");
	*off = (uint64_t)json_integer_value(o);
	_cleanup_free_ char *type = boot_probe_type(ctx->image, *off, (uint64_t)json_integer_value(size));
	if (!type || strcmp(type, "vfat") != 0)
		return af_error_set(err, 0, "the EFI system partition holds %s, not a FAT filesystem; give mkfs esp_fstype: vfat",
				    type ? type : "no filesystem");
	return 0;
}

static int boot_grub_choose(const struct stage_ctx *ctx, struct boot_grub *g, struct af_error **err)
{
	const char *fw = params_str(ctx->params, "firmware", "auto");
	bool arm = ctx->arch && strcmp(ctx->arch, "arm64") == 0;
	bool esp = json_object_get(ctx->facts, "esp.offset") != NULL;
	bool biosboot = json_object_get(ctx->facts, "bios_boot.partnum") != NULL;
	if (strcmp(fw, "auto") == 0) {
		g->uefi = esp || arm;
		g->bios = !arm && (!esp || biosboot);
	} else {
		g->bios = strcmp(fw, "bios") == 0 || strcmp(fw, "both") == 0;
		g->uefi = strcmp(fw, "uefi") == 0 || strcmp(fw, "both") == 0;
	}
	if (arm && g->bios)
		return af_error_set(err, 0, "arm64 has no BIOS: use firmware: uefi");
	const char *table = boot_fact_str(ctx->facts, "partition.table");
	if (!table || strcmp(table, "none") == 0)
		return af_error_set(err, 0, "GRUB needs a partitioned disk (the boot code lives outside the filesystem); use partition {table: mbr} or {table: gpt, ...}, or bootloader type: pvgrub");
	if (g->bios && strcmp(table, "gpt") == 0 && !biosboot)
		return af_error_set(err, 0, "GRUB for BIOS on a GPT disk needs a BIOS boot partition; use partition {table: gpt, bios_boot: true}");
	g->efi_target = arm ? "arm64-efi" : "x86_64-efi";
	g->efi_package = arm ? (g->bios ? "grub-efi-arm64-bin" : "grub-efi-arm64")
			     : (g->bios ? "grub-efi-amd64-bin" : "grub-efi-amd64");
	g->efi_named = arm ? "EFI/debian/grubaa64.efi" : "EFI/debian/grubx64.efi";
	g->removable = arm ? "EFI/BOOT/BOOTAA64.EFI" : "EFI/BOOT/BOOTX64.EFI";
	g->console = arm ? "console=tty0 console=ttyAMA0,115200" : "console=tty0 console=ttyS0,115200n8";
	return 0;
}

/* Boot code in the MBR, core image in the MBR gap / BIOS boot partition. */
static int boot_grub_bios(const struct stage_ctx *ctx, const char *disk, const struct boot_devs *devs,
			  struct af_error **err)
{
	const char *argv[] = { "grub-install", "--target=i386-pc", "--boot-directory=/boot",
			       /* The root's own loop device has no partition table: name
				* the partition maps so the core image can find it. */
			       "--modules=part_msdos part_gpt ext2", disk, NULL };
	log_info("grub-install --target=i386-pc %s", disk);
	if (boot_chroot_run(ctx, argv, devs, false, err) < 0)
		return af_error_wrap(err, "install GRUB for BIOS on %s", disk);
	return 0;
}

/* GRUB's EFI image, made in the chroot the way grub-install makes it
 * (modules copied to /boot/grub/TARGET, an early config that finds the root
 * filesystem by UUID), but without grub-install: it insists on a mounted
 * FAT efi-directory, and the build host's kernel may have no vfat. */
static int boot_grub_efi_image(const struct stage_ctx *ctx, const struct boot_grub *g, const char *uuid,
			       struct af_error **err)
{
	_cleanup_free_ char *script = xasprintf(
		"t=%s\n"
		"mkdir -p /boot/grub/$t\n"
		"cp /usr/lib/grub/$t/*.mod /usr/lib/grub/$t/*.lst /boot/grub/$t/\n"
		"printf 'search.fs_uuid %%s root\\nset prefix=($root)/boot/grub\\n' '%s' >/boot/grub/$t/load.cfg\n"
		"grub-mkimage -O $t -o /boot/grub/$t/core.efi -c /boot/grub/$t/load.cfg -p /boot/grub \\\n"
		"  part_gpt part_msdos ext2 fat search search_fs_uuid search_label normal configfile echo\n",
		g->efi_target, uuid);
	log_info("grub-mkimage -O %s (root filesystem UUID %s)", g->efi_target, uuid);
	if (boot_chroot_sh(ctx, script, false, err) < 0)
		return af_error_wrap(err, "make GRUB's EFI image");
	return 0;
}

static int boot_mtools(const struct stage_ctx *ctx, const char *const *argv, bool may_fail, struct af_error **err)
{
	char *env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
			"MTOOLS_SKIP_CHECK=1", NULL };
	struct spawn_opts so = { .argv = (char *const *)argv, .env = env, .out_fd = ctx->log_fd, .in_fd = -1,
				 .deadline = ctx->deadline };
	_cleanup_error_ struct af_error *e = NULL;
	if (spawn_run(&so, may_fail ? &e : err) < 0 && !may_fail)
		return af_error_wrap(err, "%s (mtools)", argv[0]);
	return 0;
}

/* Copies the EFI image onto the ESP with mtools (no mount): at
 * EFI/debian/grubx64.efi and at the removable path, which is what firmware
 * with an empty boot entry list (a new instance) loads. */
static int boot_grub_efi_copy(const struct stage_ctx *ctx, int rootfd, const struct boot_grub *g, uint64_t esp_off,
			      struct af_error **err)
{
	_cleanup_free_ char *rel = xasprintf("/boot/grub/%s/core.efi", g->efi_target);
	size_t len = 0;
	_cleanup_free_ char *data = inroot_read(rootfd, ctx->root, rel, BOOT_EFI_MAX, &len, err);
	if (!data)
		return -1;
	_cleanup_free_ char *tmp = path_join(ctx->state_dir, "bootloader-core.efi");
	if (write_file_atomic(tmp, data, len, 0600, err) < 0)
		return -1;
	_cleanup_free_ char *drive = xasprintf("%s@@%" PRIu64, ctx->image, esp_off);
	const char *dirs[] = { "::/EFI", "::/EFI/BOOT", "::/EFI/debian" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		/* -D s: an existing directory is fine (mmd then exits 1). */
		const char *argv[] = { "mmd", "-D", "s", "-i", drive, dirs[i], NULL };
		boot_mtools(ctx, argv, true, err);
	}
	_cleanup_free_ char *removable = xasprintf("::/%s", g->removable);
	_cleanup_free_ char *named = xasprintf("::/%s", g->efi_named);
	const char *dests[] = { named, removable };
	int r = 0;
	for (size_t i = 0; i < ARRAY_SIZE(dests) && r == 0; i++) {
		const char *argv[] = { "mcopy", "-o", "-i", drive, tmp, dests[i], NULL };
		log_info("mcopy %s to the ESP at %s", rel, dests[i] + 2);
		r = boot_mtools(ctx, argv, false, err);
	}
	unlink(tmp);
	return r;
}

static int boot_grub_efi(const struct stage_ctx *ctx, int rootfd, const struct boot_grub *g, struct af_error **err)
{
	uint64_t off = 0;
	const char *uuid = boot_fact_str(ctx->facts, "root.uuid");
	if (!uuid)
		return af_error_set(err, 0, "the root filesystem's UUID is not in the build's facts; rebuild from mkfs");
	if (boot_esp(ctx, &off, err) < 0 || boot_grub_efi_image(ctx, g, uuid, err) < 0)
		return -1;
	return boot_grub_efi_copy(ctx, rootfd, g, off, err);
}

static int boot_grub_config(const struct stage_ctx *ctx, int rootfd, const struct boot_grub *g, const char *spec,
			    const struct boot_devs *devs, struct af_error **err)
{
	_cleanup_free_ char *defaults = boot_grub_defaults(params_int(ctx->params, "menu_timeout", 1), spec, g->console,
							    params_str(ctx->params, "cmdline", NULL));
	if (inroot_write(rootfd, ctx->root, "/etc/default/grub.d/amiforge.cfg", defaults, strlen(defaults), 0644, 0, 0,
			 err) < 0)
		return -1;
	const char *argv[] = { "grub-mkconfig", "-o", "/boot/grub/grub.cfg", NULL };
	if (boot_chroot_run(ctx, argv, devs, false, err) < 0)
		return af_error_wrap(err, "generate grub.cfg");
	_cleanup_free_ char *cfg = inroot_read(rootfd, ctx->root, "/boot/grub/grub.cfg", BOOT_CFG_MAX, NULL, err);
	if (!cfg)
		return -1;
	return boot_grub_cfg_check(cfg, spec, err);
}

static int boot_grub_run(struct stage_ctx *ctx, int rootfd, struct af_error **err)
{
	struct boot_grub g = { 0 };
	if (boot_grub_choose(ctx, &g, err) < 0)
		return -1;
	_cleanup_free_ char *spec = boot_root_spec(ctx, err);
	if (!spec)
		return -1;
	struct boot_kernel k = { 0 };
	int r = boot_find_kernel(rootfd, ctx->facts, &k, err);
	boot_kernel_release(&k);
	if (r < 0)
		return -1;
	_cleanup_free_ char *pkgs = xasprintf("%s%s%s", g.bios ? "grub-pc" : "", g.bios && g.uefi ? " " : "",
					      g.uefi ? g.efi_package : "");
	if (boot_apt_install(ctx, pkgs, err) < 0)
		return -1;
	struct boot_devs devs = { 0 };
	r = boot_root_dev(ctx, &devs, err);
	if (r == 0 && g.bios) {
		struct loopdev disk = { .fd = -1 };
		r = boot_disk_loop(ctx, &disk, err);
		devs.disk = disk.path ? xstrdup(disk.path) : NULL;
		devs.v[1] = devs.disk;
		if (r == 0)
			r = boot_grub_bios(ctx, disk.path, &devs, err);
		if (disk.fd >= 0 && fsync(disk.fd) < 0 && r == 0)
			r = af_error_set(err, errno, "sync %s", disk.path);
		loopdev_release(&disk);
		devs.v[1] = NULL;
	}
	if (r == 0 && g.uefi)
		r = boot_grub_efi(ctx, rootfd, &g, err);
	if (r == 0)
		r = boot_grub_config(ctx, rootfd, &g, spec, &devs, err);
	free(devs.root);
	free(devs.disk);
	if (r < 0)
		return -1;
	json_object_set_new(ctx->outputs, "bootloader.config", json_string("/boot/grub/grub.cfg"));
	json_object_set_new(ctx->outputs, "bootloader.firmware",
			    json_string(g.bios && g.uefi ? "both" : g.bios ? "bios" : "uefi"));
	log_info("GRUB installed for %s; grub.cfg boots root=%s", g.bios && g.uefi ? "BIOS and UEFI" : g.bios ? "BIOS" : "UEFI",
		 spec);
	return 0;
}

static int boot_run(struct stage_ctx *ctx, struct af_error **err)
{
	const char *type = params_str(ctx->params, "type", "none");
	json_object_set_new(ctx->outputs, "bootloader.type", json_string(type));
	if (strcmp(type, "none") == 0) {
		log_info("bootloader: none (the image boots its kernel directly)");
		return 0;
	}
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	if (strcmp(type, "pvgrub") == 0)
		return boot_pvgrub(ctx, rootfd, err);
	return boot_grub_run(ctx, rootfd, err);
}

/* The firmware boot_grub_choose will pick, from what the partition stage's
 * parameters already say of the disk. */
static const char *boot_describe_firmware(const struct stage_describe *d)
{
	const char *fw = params_str(d->params, "firmware", "auto");
	if (strcmp(fw, "auto") != 0)
		return fw;
	bool arm = d->arch && strcmp(d->arch, "arm64") == 0;
	bool esp = json_object_get(d->facts, "esp.offset") != NULL;
	bool biosboot = json_object_get(d->facts, "bios_boot.partnum") != NULL;
	bool uefi = esp || arm, bios = !arm && (!esp || biosboot);
	return uefi && bios ? "both" : uefi ? "uefi" : "bios";
}

/* For plan (stage.h). */
static char *boot_describe(const struct stage_describe *d)
{
	const char *type = params_str(d->params, "type", "none");
	const char *by = params_str(d->params, "root_by", "label");
	const char *cmdline = params_str(d->params, "cmdline", NULL);
	stage_describe_know(d, "bootloader.type", type);
	if (strcmp(type, "none") == 0)
		return xstrdup("install no bootloader: the image boots its kernel directly");
	_cleanup_free_ char *extra = cmdline ? xasprintf(", kernel arguments '%s'", cmdline) : xstrdup("");
	if (strcmp(type, "pvgrub") == 0)
		return xasprintf("write /boot/grub/menu.lst for PV-GRUB, root by %s%s", by, extra);
	const char *fw = boot_describe_firmware(d);
	stage_describe_know(d, "bootloader.firmware", fw);
	return xasprintf("install GRUB 2 for %s, root by %s%s",
			 !strcmp(fw, "both") ? "BIOS and UEFI" : !strcmp(fw, "bios") ? "BIOS" : "UEFI", by, extra);
}

static const struct fact_need bootloader_needs[] = { { "partition.table", NULL }, { "root.uuid", NULL }, { NULL, NULL } };
static const char *const bootloader_provides[] = { "bootloader.type", "bootloader.firmware", "bootloader.config", "bootloader.pvgrub_root", "kernel.cmdline", NULL };

const struct stage_type stage_bootloader = {
	.name = "bootloader",
	.summary = "make the image bootable: GRUB 2 (BIOS/UEFI), a PV-GRUB menu.lst, or none",
	.params = boot_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT | STAGE_NETWORK,
	.needs = bootloader_needs,
	.provides = bootloader_provides,
	.default_timeout = 1800,
	.describe = boot_describe,
	.run = boot_run,
};
