/* SPDX-License-Identifier: Apache-2.0 */
/* GRUB legacy's menu.lst, as PV-GRUB reads it: the bootloader stage (type:
 * pvgrub) writes one, `amiforge boot-test --pvgrub` boots the default entry
 * of the one in the image.  Pure text handling: reading the file out of the
 * image is the caller's (boottest, through libext2fs). */
#ifndef AMIFORGE_MENULST_H
#define AMIFORGE_MENULST_H

#include <stddef.h>

struct af_error;

struct menulst_entry {
	char *title;
	char *root;    /* "(hd0)", "(hd0,0)" or NULL when the entry has no root line */
	char *kernel;  /* path as written, possibly with a "(hd0,0)" device prefix */
	char *args;    /* the rest of the kernel line ("" when none) */
	char *initrd;  /* or NULL */
};

struct menulst {
	int default_entry;  /* "default N"; 0 when absent or "saved" */
	int fallback;       /* "fallback N"; -1 when absent */
	struct menulst_entry *entries;
	size_t n;
};

/* Parses menu.lst text (commands separated from their argument by blanks or
 * '=', '#' comments).  Lines before the first `title` are global.  0 with
 * OUT filled (release it with menulst_release), or -1 + err naming the line
 * when a command is malformed or no entry exists (OUT untouched). */
int menulst_parse(const char *text, struct menulst *out, struct af_error **err);
void menulst_release(struct menulst *m);

/* The entry PV-GRUB boots: the default one, which must exist and have a
 * kernel.  NULL + err otherwise.  Points into M. */
const struct menulst_entry *menulst_default(const struct menulst *m, struct af_error **err);

/* Splits "(hd0,1)/boot/vmlinuz" into a device "(hd0,1)" (allocated, or NULL
 * when the path has no device prefix) and returns the path part (allocated).
 * Caller frees both. */
char *menulst_split_path(const char *path, char **device);

/* The partition a GRUB legacy device names: "(hd0)" → -1 (the whole disk),
 * "(hd0,N)" → N.  Only hd0 exists for PV-GRUB.  0 or -1 + err. */
int menulst_device_partition(const char *device, int *partition, struct af_error **err);

#endif
