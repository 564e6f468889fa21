/* SPDX-License-Identifier: Apache-2.0 */
/* Inside `amiforge boot-test` (boottest.h is the command's public face):
 * what its files share.
 *
 *   boottest_cli.c       options, required tools, signals, exit codes
 *   boottest.c           QEMU, its monitor, ssh into the guest (all through
 *                        spawn_run, spawn.h), the checks
 *   boottest_image.c     what the image holds, read with libblkid/libext2fs,
 *                        and its kernel command line for QEMU
 *   boottest_hostkeys.c  the host keys the guest prints on its console
 *   boottest_report.c    the report
 *
 * Each uses only those below it: cli -> boottest.c -> image, hostkeys, report. */
#ifndef AMIFORGE_BOOTTEST_INT_H
#define AMIFORGE_BOOTTEST_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "amiforge/boottest.h"
#include "amiforge/imds_responder.h"

struct af_error;

/* ---- the console's host key blocks (boottest_hostkeys.c) ---- */

#define BT_FP_BEGIN "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
#define BT_FP_END "-----END SSH HOST KEY FINGERPRINTS-----"
#define BT_KEYS_BEGIN "-----BEGIN SSH HOST KEY KEYS-----"
#define BT_KEYS_END "-----END SSH HOST KEY KEYS-----"

/* The first SHA-256 fingerprint in TEXT (a line of the fingerprints block,
 * "256 SHA256:<43 characters> root@host (ED25519)", or ssh's messages), or
 * NULL.  Caller frees. */
char *bt_line_fingerprint(const char *line);

/* ---- the image (boottest_image.c) ---- */

struct bt_part {
	int partno;       /* 1-based, as the kernel numbers them */
	uint64_t offset, size;
	bool esp;
};

struct bt_disk {
	const char *table;  /* "none", "dos" or "gpt" */
	size_t n;
	struct bt_part part[16];
};

/* The partition table of IMAGE (table "none" when there is none).  0 or
 * -1 + err when libblkid cannot open it. */
int bt_probe_disk(const char *image, struct bt_disk *d, struct af_error **err);
bool bt_has_esp(const struct bt_disk *d);

struct bt_pvboot {
	char *kernel, *initrd, *cmdline;  /* files in the temp dir; cmdline with the serial console */
	char *where;                      /* "(hd0)/boot/grub/menu.lst, entry 0 ('Debian')" */
};
void bt_pvboot_release(struct bt_pvboot *pv);

/* PV-GRUB: find menu.lst, take the default entry, copy its kernel and
 * initrd into DIR.  0 or -1 + err. */
int bt_read_pvgrub(const char *image, const struct bt_disk *d, const char *dir, struct bt_pvboot *pv,
		   struct af_error **err);

/* The ssh host keys the image ships in /etc/ssh (space-separated, "" if
 * none) in whichever of its filesystems has /etc/ssh; NULL if none could
 * be read.  Caller frees. */
char *bt_image_host_keys(const char *image, const struct bt_disk *d);

/* ---- the test (boottest.c) ---- */

/* The signal that interrupted the test, 0 if none: set by bt_on_signal,
 * polled by everything that waits, and what makes spawn_run stop
 * waiting for ssh. */
extern volatile sig_atomic_t bt_interrupted;
void bt_on_signal(int sig);
/* Sleeps S seconds; a signal cuts it short, which is what we want. */
void bt_sleep(double s);

enum bt_firmware { BT_FW_AUTO, BT_FW_BIOS, BT_FW_UEFI };

struct bt {
	/* options */
	const char *image;
	bool pvgrub;
	enum bt_firmware firmware;
	const char *user;
	const char *accel;
	int timeout;
	int memory;
	enum imds_mode imds_mode;
	bool keep;
	/* state */
	char *dir;
	char *key;
	char *known_hosts;  /* the pinned host keys (empty until the console printed them) */
	struct boottest_hostkeys hostkeys;
	char *hostkey_algs; /* HostKeyAlgorithms for them, or NULL */
	int qmp;            /* our end of QEMU's QMP socket until the port is known, else -1 */
	int port;
	pid_t qemu;
	double qemu_start;
	struct bt_disk disk;
	struct bt_pvboot pv;
	char *ovmf_code, *ovmf_vars;
	char *image_keys;  /* host keys in the image, or NULL when not readable */
	struct boottest_report rep;
};

/* Makes the temporary directory and the key pair, inspects the image,
 * starts QEMU and runs the checks into b->rep.  0 (the report says whether
 * they passed) or -1 + err. */
int bt_execute(struct bt *b, struct af_error **err);
/* Stops QEMU (SIGTERM, then SIGKILL after 3s); safe when it never ran. */
void bt_stop_qemu(struct bt *b);
/* Removes the temporary directory, or everything in it but the logs
 * (b->rep.kept_dir then names it). */
void bt_remove_dir(struct bt *b, bool keep_logs);
void bt_release(struct bt *b);

#endif
