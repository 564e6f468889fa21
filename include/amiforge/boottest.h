/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge boot-test IMAGE`: boots an image under QEMU with user
 * networking, an ssh port forwarded to 127.0.0.1 and a metadata service at
 * 169.254.169.254 (imds_responder.h) handing out a key pair made for the
 * test, logs in as the image's admin user and checks what DESIGN §7 asks of
 * a bootable image.  --pvgrub boots the way PV-GRUB does: menu.lst is read
 * from the image (libext2fs, nothing mounted) and its default entry's
 * kernel, initrd and command line are booted directly.
 *
 * The pure parts (menu.lst parsing, the console rewrite, the report) are
 * exported for the unit tests. */
#ifndef AMIFORGE_BOOTTEST_H
#define AMIFORGE_BOOTTEST_H

#include <stdbool.h>
#include <stddef.h>

#include "amiforge/util.h"

struct af_error;

/* ---- GRUB legacy menu.lst (what PV-GRUB reads) ---- */

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
 * '=', '#' comments).  Lines before the first `title` are global.  0, or -1
 * + err naming the line when a command is malformed or no entry exists. */
int menulst_parse(const char *text, struct menulst *out, struct af_error **err);
void menulst_release(struct menulst *m);

/* The entry PV-GRUB boots: the default one, which must exist and have a
 * kernel.  NULL + err otherwise. */
const struct menulst_entry *menulst_default(const struct menulst *m, struct af_error **err);

/* Splits "(hd0,1)/boot/vmlinuz" into a device "(hd0,1)" (allocated, or NULL
 * when the path has no device prefix) and returns the path part (allocated). */
char *menulst_split_path(const char *path, char **device);

/* The partition a GRUB legacy device names: "(hd0)" → -1 (the whole disk),
 * "(hd0,N)" → N.  Only hd0 exists for PV-GRUB.  0 or -1 + err. */
int menulst_device_partition(const char *device, int *partition, struct af_error **err);

/* The kernel command line with the console moved to the serial port QEMU
 * logs: console=hvc0/xvc0/ttyS* become one console=ttyS0 (other consoles
 * such as tty0 stay), and console=ttyS0 is added when there is none.
 * Caller frees. */
char *boottest_serial_cmdline(const char *args);

/* ---- the report ---- */

enum boottest_status { BOOTTEST_OK, BOOTTEST_FAILED, BOOTTEST_SKIPPED };

struct boottest_check {
	const char *name;  /* "ssh login", "whoami", ... (static) */
	enum boottest_status status;
	char *detail;      /* owned, may be NULL */
};

#define BOOTTEST_MAX_CHECKS 8

struct boottest_report {
	const char *image;
	const char *boot;     /* "hvm" | "pvgrub" */
	const char *firmware; /* "bios" | "uefi" | "direct kernel" */
	const char *accel;    /* "tcg" | "kvm" */
	double boot_seconds;  /* QEMU start to the first ssh login; < 0 if none */
	struct boottest_check checks[BOOTTEST_MAX_CHECKS];
	size_t n;
	char *kept_dir;       /* where the console log stays after a failure, or NULL */
};

/* Adds a check (detail is copied, may be NULL). */
void boottest_report_add(struct boottest_report *r, const char *name, enum boottest_status st,
			 const char *detail);
/* true if there is at least one check and every one is ok. */
bool boottest_report_passed(const struct boottest_report *r);
/* The report as printed: a header, one line per check, a result line. */
void boottest_report_format(const struct boottest_report *r, struct strbuf *out);
void boottest_report_release(struct boottest_report *r);

/* ---- the command ---- */

/* `amiforge boot-test IMAGE [options]`: returns the exit code (0 every
 * check passed, 1 one failed, 2 usage, 69 QEMU/ssh/OVMF missing, 130
 * interrupted).  Prints the report on stdout and errors on stderr.  QEMU,
 * the responders and the temporary key are gone when it returns, also after
 * SIGINT/SIGTERM/SIGHUP. */
int boottest_main(int argc, char **argv);

#endif
