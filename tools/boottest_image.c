/* SPDX-License-Identifier: Apache-2.0 */
/* What boot-test reads from the image before it boots, with nothing
 * mounted: the partition table (libblkid), and from the ext2/3/4
 * filesystems in it (libext2fs at an offset, extfs.h) menu.lst, the files
 * it names and its kernel command line (moved to QEMU's serial console),
 * and the ssh host keys the image ships. */
#include <blkid/blkid.h>
#include <errno.h>
#include <et/com_err.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/extfs.h"
#include "amiforge/menulst.h"
#include "amiforge/util.h"
#include "boottest_int.h"

/* ================== the kernel command line for QEMU ================== */

/* A console the PV guest has that the QEMU guest does not. */
static bool bt_is_pv_console(const char *tok)
{
	static const char *const moved[] = { "console=hvc", "console=xvc", "console=ttyS" };
	for (size_t i = 0; i < ARRAY_SIZE(moved); i++)
		if (str_has_prefix(tok, moved[i]))
			return true;
	return false;
}

char *boottest_serial_cmdline(const char *args)
{
	struct strbuf sb = STRBUF_INIT;
	_cleanup_free_ char *copy = xstrdup(args);
	char *save = NULL;

	for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (bt_is_pv_console(tok))
			continue;
		strbuf_addf(&sb, "%s%s", sb.len ? " " : "", tok);
	}
	/* Last, so that it is /dev/console: where systemd and the kernel log. */
	strbuf_addf(&sb, "%sconsole=ttyS0", sb.len ? " " : "");
	return strbuf_detach(&sb);
}

/* ================== the partition table and menu.lst ================== */

#define BT_ESP_GUID "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"

int bt_probe_disk(const char *image, struct bt_disk *d, struct af_error **err)
{
	_cleanup_blkid_probe_ blkid_probe pr = blkid_new_probe_from_filename(image);
	*d = (struct bt_disk){ .table = "none" };
	if (!pr)
		return af_error_set(err, errno, "cannot probe '%s' with libblkid", image);
	blkid_probe_enable_superblocks(pr, 0);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	blkid_partlist ls = blkid_probe_get_partitions(pr);
	blkid_parttable tab = ls ? blkid_partlist_get_table(ls) : NULL;
	if (!tab)
		return 0;
	d->table = !strcmp(blkid_parttable_get_type(tab), "gpt") ? "gpt" : "dos";
	int n = blkid_partlist_numof_partitions(ls);
	for (int i = 0; i < n && d->n < ARRAY_SIZE(d->part); i++) {
		blkid_partition p = blkid_partlist_get_partition(ls, i);
		const char *type = blkid_partition_get_type_string(p);
		d->part[d->n++] = (struct bt_part){
			.partno = blkid_partition_get_partno(p),
			.offset = (uint64_t)blkid_partition_get_start(p) * 512,
			.size = (uint64_t)blkid_partition_get_size(p) * 512,
			.esp = (type && !strcasecmp(type, BT_ESP_GUID)) || blkid_partition_get_type(p) == 0xef,
		};
	}
	return 0;
}

static const struct bt_part *bt_find_part(const struct bt_disk *d, int partno)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->part[i].partno == partno)
			return &d->part[i];
	return NULL;
}

bool bt_has_esp(const struct bt_disk *d)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->part[i].esp)
			return true;
	return false;
}

/* The ext2/3/4 filesystem at OFFSET, read-only; NULL + err if there is none. */
static ext2_filsys bt_open_fs(const char *image, uint64_t offset, struct af_error **err)
{
	ext2_filsys fs = NULL;
	return extfs_open_at(image, offset, 0, &fs, err) < 0 ? NULL : fs;
}

/* Reads PATH (symlinks followed inside the filesystem) into *data, or into
 * the file OUT when data is NULL.  0, 1 if it does not exist, -1 + err. */
static int bt_fs_read(ext2_filsys fs, const char *path, char **data, const char *out, struct af_error **err)
{
	ext2_ino_t ino;
	struct ext2_inode inode;
	if (ext2fs_namei_follow(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino) != 0)
		return 1;
	errcode_t rc = ext2fs_read_inode(fs, ino, &inode);
	if (rc)
		return af_error_set(err, 0, "read the inode of '%s': %s", path, error_message(rc));
	if (!LINUX_S_ISREG(inode.i_mode))
		return af_error_set(err, 0, "'%s' in the image is not a regular file", path);
	ext2_file_t f;
	if ((rc = ext2fs_file_open(fs, ino, 0, &f)))
		return af_error_set(err, 0, "open '%s' in the image: %s", path, error_message(rc));
	_cleanup_fd_ int fd = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
	struct strbuf sb = STRBUF_INIT;
	int ret = out && fd < 0 ? af_error_set(err, errno, "cannot create '%s'", out) : 0;
	while (ret == 0) {
		char buf[65536];
		unsigned int got = 0;
		if ((rc = ext2fs_file_read(f, buf, sizeof(buf), &got))) {
			ret = af_error_set(err, 0, "read '%s' in the image: %s", path, error_message(rc));
		} else if (got == 0) {
			break;
		} else if (fd >= 0) {
			if (write_all(fd, buf, got) < 0)
				ret = af_error_set(err, errno, "write '%s'", out);
		} else {
			strbuf_add(&sb, buf, got);
		}
	}
	ext2fs_file_close(f);
	if (ret == 0 && data)
		*data = strbuf_detach(&sb);
	else
		strbuf_release(&sb);
	return ret;
}

/* Where PV-GRUB looks for menu.lst, in its order (FORMATS.md §6). */
static const struct { int part; const char *path; } bt_menulst_places[] = {
	{ -1, "/boot/grub/menu.lst" }, { 0, "/boot/grub/menu.lst" }, { 0, "/grub/menu.lst" },
	{ 1, "/boot/grub/menu.lst" },  { 1, "/grub/menu.lst" },      { 2, "/boot/grub/menu.lst" },
	{ 2, "/grub/menu.lst" },       { 3, "/boot/grub/menu.lst" }, { 3, "/grub/menu.lst" },
};

/* The filesystem GRUB legacy calls (hd0) (part -1) or (hd0,N). */
static ext2_filsys bt_open_grub_device(const char *image, const struct bt_disk *d, int part, struct af_error **err)
{
	if (part < 0) {
		if (strcmp(d->table, "none") != 0) {
			af_error_set(err, 0, "'%s' has a partition table: PV-GRUB's (hd0) is the whole disk, "
				     "use (hd0,0) for its first partition", image);
			return NULL;
		}
		return bt_open_fs(image, 0, err);
	}
	const struct bt_part *p = bt_find_part(d, part + 1);
	if (!p) {
		af_error_set(err, 0, "'%s' has no partition %d for (hd0,%d)", image, part + 1, part);
		return NULL;
	}
	return bt_open_fs(image, p->offset, err);
}

void bt_pvboot_release(struct bt_pvboot *pv)
{
	free(pv->kernel);
	free(pv->initrd);
	free(pv->cmdline);
	free(pv->where);
}

/* Copies FILE (as written in menu.lst) out of the image into DEST. */
static int bt_copy_boot_file(const char *image, const struct bt_disk *d, int def_part, const char *file,
			     const char *dest, struct af_error **err)
{
	_cleanup_free_ char *dev = NULL;
	_cleanup_free_ char *path = menulst_split_path(file, &dev);
	int part = def_part;
	if (dev && menulst_device_partition(dev, &part, err) < 0)
		return -1;
	_cleanup_ext2fs_ ext2_filsys fs = bt_open_grub_device(image, d, part, err);
	if (!fs)
		return -1;
	int rc = bt_fs_read(fs, path, NULL, dest, err);
	if (rc == 1)
		return af_error_set(err, 0, "menu.lst names '%s', which is not in the image", file);
	return rc;
}

int bt_read_pvgrub(const char *image, const struct bt_disk *d, const char *dir, struct bt_pvboot *pv,
		   struct af_error **err)
{
	_cleanup_free_ char *text = NULL;
	int found = -1;
	for (size_t i = 0; i < ARRAY_SIZE(bt_menulst_places) && !text; i++) {
		struct af_error *ignored = NULL;
		_cleanup_ext2fs_ ext2_filsys fs =
			bt_open_grub_device(image, d, bt_menulst_places[i].part, &ignored);
		af_error_free(ignored);
		if (fs && bt_fs_read(fs, bt_menulst_places[i].path, &text, NULL, err) < 0)
			return -1;
		if (text)
			found = (int)i;
	}
	if (!text)
		return af_error_set(err, 0, "no menu.lst in '%s' where PV-GRUB looks ((hd0) and (hd0,0..3), "
				    "/boot/grub and /grub): build it with the bootloader stage, type pvgrub", image);
	struct menulst m = { 0 };
	if (menulst_parse(text, &m, err) < 0)
		return -1;
	const struct menulst_entry *e = menulst_default(&m, err);
	int part = bt_menulst_places[found].part, rc = -1;
	if (e && (!e->root || menulst_device_partition(e->root, &part, err) == 0)) {
		pv->kernel = path_join(dir, "vmlinuz");
		pv->initrd = e->initrd ? path_join(dir, "initrd.img") : NULL;
		pv->cmdline = boottest_serial_cmdline(e->args);
		pv->where = xasprintf("menu.lst entry %d '%s' on %s", m.default_entry, e->title,
				      e->root ? e->root : part < 0 ? "(hd0)" : "(hd0,N)");
		rc = bt_copy_boot_file(image, d, part, e->kernel, pv->kernel, err);
		if (rc == 0 && e->initrd)
			rc = bt_copy_boot_file(image, d, part, e->initrd, pv->initrd, err);
	}
	menulst_release(&m);
	return rc;
}

struct bt_hostkeys_ctx {
	struct strbuf names;
};

static int bt_hostkey_entry(struct ext2_dir_entry *de, int offset, int blocksize, char *buf, void *priv)
{
	struct bt_hostkeys_ctx *c = priv;
	int len = ext2fs_dirent_name_len(de);
	_cleanup_free_ char *name = xstrndup(de->name, (size_t)len);
	if (str_has_prefix(name, "ssh_host_") && str_has_suffix(name, "_key"))
		strbuf_addf(&c->names, "%s%s", c->names.len ? " " : "", name);
	return 0;
}

char *bt_image_host_keys(const char *image, const struct bt_disk *d)
{
	size_t n = strcmp(d->table, "none") ? d->n : 1;
	for (size_t i = 0; i < n; i++) {
		struct af_error *ignored = NULL;
		_cleanup_ext2fs_ ext2_filsys fs =
			bt_open_fs(image, strcmp(d->table, "none") ? d->part[i].offset : 0, &ignored);
		af_error_free(ignored);
		ext2_ino_t ino;
		if (!fs || ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, "/etc/ssh", &ino) != 0)
			continue;
		struct bt_hostkeys_ctx c = { STRBUF_INIT };
		if (ext2fs_dir_iterate(fs, ino, 0, NULL, bt_hostkey_entry, &c) != 0) {
			strbuf_release(&c.names);
			return NULL;
		}
		return strbuf_detach(&c.names);
	}
	return NULL;
}
