/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge boot-test IMAGE`: boots an image under QEMU with user
 * networking, an ssh port forwarded to 127.0.0.1 and a metadata service at
 * 169.254.169.254 (imds_responder.h) handing out a key pair made for the
 * test, logs in as the image's admin user, trusting only the host keys the
 * guest printed on its serial console, and checks what DESIGN §7 asks of
 * a bootable image.  --pvgrub boots the way PV-GRUB does: menu.lst is read
 * from the image (libext2fs, nothing mounted) and its default entry's
 * kernel, initrd and command line are booted directly.
 *
 * menu.lst itself is menulst.h's.  The pure parts (the console rewrite,
 * the host keys read from the console, QEMU's forwarded port, the report)
 * are exported for the unit tests. */
#ifndef AMIFORGE_BOOTTEST_H
#define AMIFORGE_BOOTTEST_H

#include <stdbool.h>
#include <stddef.h>

#include "amiforge/util.h"

struct af_error;

/* ---- the kernel command line ---- */

/* The kernel command line with the console moved to the serial port QEMU
 * logs: console=hvc0/xvc0/ttyS* become one console=ttyS0 (other consoles
 * such as tty0 stay), and console=ttyS0 is added when there is none.
 * Caller frees. */
char *boottest_serial_cmdline(const char *args);

/* ---- the guest's host keys, from its console ----
 *
 * EC2 users check an instance's ssh host key against the fingerprints
 * cloud-init (or amiforge's prep-instance) prints on the console at boot,
 * which `aws ec2 get-console-output` shows:
 *
 *   -----BEGIN SSH HOST KEY FINGERPRINTS-----
 *   256 SHA256:ZxQ... root@host (ED25519)
 *   -----END SSH HOST KEY FINGERPRINTS-----
 *   -----BEGIN SSH HOST KEY KEYS-----
 *   ssh-ed25519 AAAAC3Nza... root@host
 *   -----END SSH HOST KEY KEYS-----
 *
 * boot-test does the same with QEMU's serial log: it pins the printed keys
 * in a known_hosts file and logs in with StrictHostKeyChecking=yes. */

/* A host key the console printed, whose SHA-256 is among the printed
 * fingerprints. */
struct boottest_hostkey {
	char *type;        /* "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"... */
	char *blob;        /* the base64 public key */
	char *fingerprint; /* "SHA256:..." as `ssh-keygen -l` prints it */
};

struct boottest_hostkeys {
	struct boottest_hostkey *keys;
	size_t n;
	size_t rejected;   /* printed keys whose fingerprint was not printed */
};

/* Reads the last complete fingerprints block and the last complete keys
 * block of console text.  Lines may carry a prefix ("ec2: ", journald's
 * "prep-instance[412]: ") and "\r"; lines in a block that are neither a
 * SHA-256 fingerprint nor a public key (a kernel message written in
 * between, MD5 fingerprints, "#####") are skipped.  A printed key is kept
 * only if its own SHA-256 fingerprint was printed: a key that does not
 * match is rejected (counted in `rejected`), never trusted.
 * Returns 1 with OUT filled (at least one key), 0 when the blocks are not
 * (completely) there, -1 + err when they are but no key in them matches a
 * printed fingerprint.  Release OUT with boottest_hostkeys_release. */
int boottest_console_hostkeys(const char *console, struct boottest_hostkeys *out,
			      struct af_error **err);
void boottest_hostkeys_release(struct boottest_hostkeys *k);

/* The fingerprint `ssh-keygen -l` prints for a public key: "SHA256:" and
 * the unpadded base64 of the SHA-256 of the decoded blob.  NULL when BLOB
 * is not base64 of an ssh public key of TYPE.  Caller frees. */
char *boottest_key_fingerprint(const char *type, const char *blob);

/* known_hosts text: one "ALIAS TYPE BLOB" line per key.  Caller frees. */
char *boottest_known_hosts(const struct boottest_hostkeys *k, const char *alias);

/* ssh's HostKeyAlgorithms for the keys' types, in OpenSSH's order of
 * preference (ed25519, ecdsa, then ssh-rsa keys as rsa-sha2-512,
 * rsa-sha2-256: never SHA-1).  Caller frees. */
char *boottest_hostkey_algorithms(const struct boottest_hostkeys *k);

/* The host port QEMU bound for a TCP forward to GUEST_PORT, from its
 * `info usernet` text ("TCP[HOST_FORWARD]  8  127.0.0.1 39521
 * 169.254.169.15  22 ...").  0, or -1 + err when there is no such line. */
int boottest_usernet_port(const char *usernet, int guest_port, int *port, struct af_error **err);

/* Test-only: AMIFORGE_TEST_BOOTTEST_CONSOLE=forge makes boot-test read the
 * console as if it printed the test's own client key as the host key (a
 * guest whose key does not match must be refused); =drop as if it printed
 * nothing.  Never set it outside tests. */
#define BOOTTEST_TEST_CONSOLE_ENV "AMIFORGE_TEST_BOOTTEST_CONSOLE"

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
