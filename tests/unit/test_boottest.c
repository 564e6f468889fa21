/* SPDX-License-Identifier: Apache-2.0 */
/* boot-test's pure parts: menu.lst as PV-GRUB reads it, the console moved
 * to the serial port, the host keys read from the console, the port QEMU
 * bound, the report, and the metadata responder's answers. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "amiforge/boottest.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/imds_responder.h"
#include "amiforge/menulst.h"
#include "amiforge/util.h"
/* The image reader is internal to boot-test. */
#include "../../tools/boottest_int.h"

/* ---- menu.lst ---- */

static const char menulst_ec2[] =
	"# from the EC2 user guide\n"
	"default 0\n"
	"fallback 1\n"
	"timeout 0\n"
	"hiddenmenu\n"
	"\n"
	"title Vanilla Linux 4.16.4\n"
	"root (hd0)\n"
	"kernel /boot/vmlinuz-4.16.4 root=LABEL=/ console=hvc0\n"
	"initrd /boot/initrd.img-4.16.4\n"
	"\n"
	"title fallback\n"
	"\troot\t(hd0,0)\r\n"
	"  kernel --type=linux (hd0,0)/vmlinuz root=LABEL=rootfs ro  \n";

static void test_menulst_parse(void **state)
{
	struct menulst m = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(menulst_parse(menulst_ec2, &m, &err), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(m.default_entry, 0);
	assert_int_equal(m.fallback, 1);
	assert_string_equal(m.entries[0].title, "Vanilla Linux 4.16.4");
	assert_string_equal(m.entries[0].root, "(hd0)");
	assert_string_equal(m.entries[0].kernel, "/boot/vmlinuz-4.16.4");
	assert_string_equal(m.entries[0].args, "root=LABEL=/ console=hvc0");
	assert_string_equal(m.entries[0].initrd, "/boot/initrd.img-4.16.4");
	assert_string_equal(m.entries[1].root, "(hd0,0)");
	assert_string_equal(m.entries[1].kernel, "(hd0,0)/vmlinuz");
	assert_string_equal(m.entries[1].args, "root=LABEL=rootfs ro");
	assert_null(m.entries[1].initrd);
	const struct menulst_entry *e = menulst_default(&m, &err);
	assert_ptr_equal(e, &m.entries[0]);
	menulst_release(&m);
}

static void test_menulst_default_and_equals(void **state)
{
	struct menulst m = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(menulst_parse("default=1\ntitle a\nkernel /a\ntitle b\nkernel=/b x=1\n", &m, &err), 0);
	const struct menulst_entry *e = menulst_default(&m, &err);
	assert_non_null(e);
	assert_string_equal(e->kernel, "/b");
	assert_string_equal(e->args, "x=1");
	menulst_release(&m);

	assert_int_equal(menulst_parse("default saved\ntitle a\nkernel /a\n", &m, &err), 0);
	assert_int_equal(m.default_entry, 0);
	menulst_release(&m);
}

static void test_menulst_errors(void **state)
{
	struct menulst m = { 0 };
	struct af_error *err = NULL;

	assert_int_equal(menulst_parse("default 0\ntimeout 5\n", &m, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "no 'title' entry"));
	af_error_clear(&err);

	assert_int_equal(menulst_parse("default x\ntitle a\nkernel /a\n", &m, &err), -1);
	assert_string_equal(af_error_msg(err), "menu.lst line 1: 'default' needs an entry number");
	af_error_clear(&err);

	assert_int_equal(menulst_parse("title a\nkernel\n", &m, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "line 2: 'kernel'"));
	af_error_clear(&err);

	assert_int_equal(menulst_parse("default 3\ntitle a\nkernel /a\n", &m, &err), 0);
	assert_null(menulst_default(&m, &err));
	assert_string_equal(af_error_msg(err), "menu.lst: default entry 3 does not exist (entries 0 to 0)");
	af_error_clear(&err);
	menulst_release(&m);

	assert_int_equal(menulst_parse("title only a title\nroot (hd0)\n", &m, &err), 0);
	assert_null(menulst_default(&m, &err));
	assert_non_null(strstr(af_error_msg(err), "('only a title') has no kernel line"));
	af_error_clear(&err);
	menulst_release(&m);
}

static void test_menulst_devices(void **state)
{
	struct af_error *err = NULL;
	int part = 7;
	assert_int_equal(menulst_device_partition("(hd0)", &part, &err), 0);
	assert_int_equal(part, -1);
	assert_int_equal(menulst_device_partition("(hd0,0)", &part, &err), 0);
	assert_int_equal(part, 0);
	assert_int_equal(menulst_device_partition("(hd0,3)", &part, &err), 0);
	assert_int_equal(part, 3);
	assert_int_equal(menulst_device_partition("(hd1,0)", &part, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "use (hd0) or (hd0,N)"));
	af_error_clear(&err);
	assert_int_equal(menulst_device_partition("(hd0,0", &part, &err), -1);
	af_error_clear(&err);

	char *dev = NULL;
	char *path = menulst_split_path("(hd0,1)/boot/vmlinuz", &dev);
	assert_string_equal(dev, "(hd0,1)");
	assert_string_equal(path, "/boot/vmlinuz");
	free(dev);
	free(path);
	path = menulst_split_path("/vmlinuz", &dev);
	assert_null(dev);
	assert_string_equal(path, "/vmlinuz");
	free(path);
}

static void test_serial_cmdline(void **state)
{
	static const char *const cases[][2] = {
		{ "root=LABEL=/ console=hvc0", "root=LABEL=/ console=ttyS0" },
		{ "console=hvc0 root=LABEL=rootfs ro console=tty0", "root=LABEL=rootfs ro console=tty0 console=ttyS0" },
		{ "console=xvc0,115200 quiet", "quiet console=ttyS0" },
		{ "console=ttyS0,115200n8 console=hvc0", "console=ttyS0" },
		{ "root=/dev/xvda1", "root=/dev/xvda1 console=ttyS0" },
		{ "", "console=ttyS0" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *got = boottest_serial_cmdline(cases[i][0]);
		assert_string_equal(got, cases[i][1]);
		free(got);
	}
}

/* ---- host keys from the console ---- */

/* Made with ssh-keygen -t ... -C root@debian; fingerprints from ssh-keygen -l. */
#define K_ED25519 "AAAAC3NzaC1lZDI1NTE5AAAAIIVjsgeTaMO5C7Mi4cY6aiypZP0FCCu+SrRb5KK3mhYh"
#define FP_ED25519 "SHA256:1zwanRlOz3uLA19oxCWqxKh94eE2EocsxQvZh82uE9g"
#define K_ECDSA                                                                                  \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPAB3zNVX8HDsfrYoJZ8bO5CgqvQ5Kgx" \
	"NTjObuAFecB374amsNM/YJGUjz1wDpAOgVdJXayOfQ80bd6xK/w/x2g="
#define FP_ECDSA "SHA256:WjyJGt1kJX2krPh4qLHUMsA9Q+/Sv7zufKdBMnR3SkY"
#define K_RSA                                                                                    \
	"AAAAB3NzaC1yc2EAAAADAQABAAABgQC+XOzWETp6RqiHLRHDQKl+QZTAQgaH4lQjic5VwwkfZOHA0H4foa4l" \
	"xzyPC3SHY3xWz6WhaxGmBq1yWE1k89N2lsU9CEElpACGV8IraF489zrBBf8jg408VvcU/35LhjZONLdwlaqP" \
	"Rrn1jgge4zehN0jkdZfU9vxoeslxVf/1xTBIEvnVpzu3x2TMX2sVDi2Jkvii0jgT4C18Cq6sSuhwMQ+lQpwc" \
	"X/+7YdBUyss4DgOumbW62z9bN+oBHaDgV5erzHeABs42sQoVdg/jirH/CNbAJkNsaanmYd/iQyXALspfidgQ" \
	"PL6QobNPCdw6ZnfrO20c3QlOrVIcTcdGWP8PwmOV/1YXv0ogJs03bLr19pQinE8gKgtxzx1UMTkd8njKU6bG" \
	"ydQiBvegQAvEoxnyroCxeuhDf3P18jflSRU9AWhHTwd+oocI1trQHCv3GvBPCcxtrxWp/3/MNb8SkdPZaqW2" \
	"V0ND3nDWlnjtQHrQA8bkF6JXFhN8RSQLAXIMOEE="
#define FP_RSA "SHA256:TLun/nGnV2cXnEzpxQqQbiK3iRzGC+kzcth2QHAVx0I"
/* Another ed25519 key: what an impostor's sshd would hold. */
#define K_FORGED "AAAAC3NzaC1lZDI1NTE5AAAAIJFbmHW7hq08pdhSgidpD1doMeL7XpltRNkHiON041ZO"
#define FP_FORGED "SHA256:XYpO0B8rqMuyDXV59aCwQX7LrbSFTUITm3t0M+Atih0"

#define FP_BEGIN "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
#define FP_END "-----END SSH HOST KEY FINGERPRINTS-----\n"
#define KEYS_BEGIN "-----BEGIN SSH HOST KEY KEYS-----\n"
#define KEYS_END "-----END SSH HOST KEY KEYS-----\n"
#define FP_BLOCK(lines) FP_BEGIN lines FP_END
#define KEY_BLOCK(lines) KEYS_BEGIN lines KEYS_END
#define FP_LINE(bits, fp, type) bits " " fp " root@debian (" type ")\n"

static void test_key_fingerprint(void **state)
{
	static const char *const ok[][3] = {
		{ "ssh-ed25519", K_ED25519, FP_ED25519 },
		{ "ecdsa-sha2-nistp256", K_ECDSA, FP_ECDSA },
		{ "ssh-rsa", K_RSA, FP_RSA },
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		char *fp = boottest_key_fingerprint(ok[i][0], ok[i][1]);
		assert_non_null(fp);
		assert_string_equal(fp, ok[i][2]);
		free(fp);
	}
	/* A key under another type's name, broken base64, a cut blob. */
	assert_null(boottest_key_fingerprint("ssh-rsa", K_ED25519));
	assert_null(boottest_key_fingerprint("ssh-ed25519", K_ECDSA));
	assert_null(boottest_key_fingerprint("ssh-ed25519", "AAAAC3Nz!C1lZDI1NTE5AAAAIIVj"));
	assert_null(boottest_key_fingerprint("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5A"));
	assert_null(boottest_key_fingerprint("ssh-ed25519", "AAAA"));
	assert_null(boottest_key_fingerprint("ssh-ed25519", ""));
}

/* As EC2's console output shows cloud-init's blocks: "ec2: " before the
 * fingerprints, CRLF from the serial port, a kernel message in between. */
static const char console_ec2[] =
	"[    3.141592] EXT4-fs (vda1): mounted filesystem\r\n"
	"ec2: \r\n"
	"ec2: #############################################################\r\n"
	"ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n"
	"ec2: 256 " FP_ECDSA " root@debian (ECDSA)\r\n"
	"[   12.000001] random: crng init done\r\n"
	"ec2: 256 " FP_ED25519 " root@debian (ED25519)\r\n"
	"ec2: 3072 " FP_RSA " root@debian (RSA)\r\n"
	"ec2: 2048 MD5:12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0 root@debian (DSA)\r\n"
	"ec2: -----END SSH HOST KEY FINGERPRINTS-----\r\n"
	"ec2: #############################################################\r\n"
	"-----BEGIN SSH HOST KEY KEYS-----\r\n"
	"ecdsa-sha2-nistp256 " K_ECDSA " root@debian\r\n"
	"ssh-ed25519 " K_ED25519 " root@debian\r\n"
	"ssh-rsa " K_RSA " root@debian\r\n"
	"-----END SSH HOST KEY KEYS-----\r\n"
	"Debian GNU/Linux 12 debian ttyS0\r\n";

static void test_console_hostkeys(void **state)
{
	struct boottest_hostkeys k = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(boottest_console_hostkeys(console_ec2, &k, &err), 1);
	assert_null(err);
	assert_int_equal(k.n, 3);
	assert_int_equal(k.rejected, 0);
	assert_string_equal(k.keys[0].type, "ecdsa-sha2-nistp256");
	assert_string_equal(k.keys[0].blob, K_ECDSA);
	assert_string_equal(k.keys[0].fingerprint, FP_ECDSA);
	assert_string_equal(k.keys[1].type, "ssh-ed25519");
	assert_string_equal(k.keys[2].type, "ssh-rsa");
	assert_string_equal(k.keys[2].fingerprint, FP_RSA);

	char *kh = boottest_known_hosts(&k, "amiforge-boot-test");
	assert_string_equal(kh, "amiforge-boot-test ecdsa-sha2-nistp256 " K_ECDSA "\n"
				"amiforge-boot-test ssh-ed25519 " K_ED25519 "\n"
				"amiforge-boot-test ssh-rsa " K_RSA "\n");
	free(kh);
	char *algs = boottest_hostkey_algorithms(&k);
	assert_string_equal(algs, "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256");
	free(algs);
	boottest_hostkeys_release(&k);
	assert_int_equal(k.n, 0);
}

/* prep-instance's own output through journald's console forwarding, and
 * the block printed twice (a second boot): the last one counts. */
static void test_console_hostkeys_prefixes(void **state)
{
#define J "[   20.5] prep-instance[412]: "
	static const char console[] =
		FP_BLOCK("256 " FP_FORGED " root@old (ED25519)\n")
		KEY_BLOCK("ssh-ed25519 " K_FORGED " root@old\n")
		J FP_BEGIN
		J "256 " FP_ED25519 " root@debian (ED25519)\n"
		J FP_END
		J KEYS_BEGIN
		J "ssh-ed25519 " K_ED25519 "\n"
		J KEYS_END;
#undef J
	struct boottest_hostkeys k = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(boottest_console_hostkeys(console, &k, &err), 1);
	assert_int_equal(k.n, 1);
	assert_string_equal(k.keys[0].blob, K_ED25519);
	assert_string_equal(k.keys[0].fingerprint, FP_ED25519);
	boottest_hostkeys_release(&k);
}

/* Nothing yet, or only part of it: 0, nothing filled, no error. */
static void test_console_hostkeys_missing(void **state)
{
	static const char *const cases[] = {
		"",
		"[    0.000000] Linux version 6.1.0-18-amd64\r\nDebian GNU/Linux 12 debian ttyS0\r\n",
		/* the fingerprints, not yet the keys */
		FP_BLOCK(FP_LINE("256", FP_ED25519, "ED25519")),
		/* the keys block still being written */
		FP_BLOCK(FP_LINE("256", FP_ED25519, "ED25519")) KEYS_BEGIN "ssh-ed25519 " K_ED25519,
		/* keys without fingerprints */
		KEY_BLOCK("ssh-ed25519 " K_ED25519 "\n"),
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct boottest_hostkeys k = { 0 };
		struct af_error *err = NULL;
		assert_int_equal(boottest_console_hostkeys(cases[i], &k, &err), 0);
		assert_null(err);
		assert_int_equal(k.n, 0);
	}
}

/* Console text that must be refused: -1 and a message containing WANT. */
static void refused(const char *console, const char *want)
{
	struct boottest_hostkeys k = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(boottest_console_hostkeys(console, &k, &err), -1);
	assert_int_equal(k.n, 0);
	assert_non_null(err);
	if (!strstr(af_error_msg(err), want))
		fail_msg("'%s' does not contain '%s'", af_error_msg(err), want);
	af_error_free(err);
}

/* A printed key whose fingerprint was not printed is never trusted. */
static void test_console_hostkeys_forged(void **state)
{
	struct boottest_hostkeys k = { 0 };
	struct af_error *err = NULL;

	/* A forged ed25519 key next to the real ecdsa one: only the ecdsa one is kept. */
	static const char forged_and_real[] =
		FP_BLOCK(FP_LINE("256", FP_ECDSA, "ECDSA") FP_LINE("256", FP_ED25519, "ED25519"))
		KEY_BLOCK("ssh-ed25519 " K_FORGED " root@debian\n"
			  "ecdsa-sha2-nistp256 " K_ECDSA " root@debian\n");
	assert_int_equal(boottest_console_hostkeys(forged_and_real, &k, &err), 1);
	assert_int_equal(k.n, 1);
	assert_int_equal(k.rejected, 1);
	assert_string_equal(k.keys[0].type, "ecdsa-sha2-nistp256");
	char *algs = boottest_hostkey_algorithms(&k);
	assert_string_equal(algs, "ecdsa-sha2-nistp256");
	free(algs);
	boottest_hostkeys_release(&k);

	/* Only a forged key. */
	refused(FP_BLOCK(FP_LINE("256", FP_ED25519, "ED25519"))
		KEY_BLOCK("ssh-ed25519 " K_FORGED " root@debian\n"),
		"none of the 1 public key(s) the guest printed on its console matches a printed "
		"fingerprint: refusing to trust them");
	/* The real key relabelled as another type, and a cut key. */
	refused(FP_BLOCK(FP_LINE("256", FP_ED25519, "ED25519"))
		KEY_BLOCK("ssh-rsa " K_ED25519 " root@debian\n"
			  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIVjsgeTaMO5\n"),
		"none of the 2 public key(s)");
	/* MD5 fingerprints only: nothing to check against. */
	refused(FP_BLOCK("256 MD5:12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0 x (ED25519)\n")
		KEY_BLOCK("ssh-ed25519 " K_ED25519 "\n"),
		"holds no SHA256 fingerprint");
	/* An empty keys block. */
	refused(FP_BLOCK(FP_LINE("256", FP_ED25519, "ED25519")) KEY_BLOCK(""),
		"the console's host keys block holds no public key");
}

/* QEMU's `info usernet` (QMP human-monitor-command) after hostfwd port 0. */
static void test_usernet_port(void **state)
{
	static const char usernet[] =
		"Hub -1 (net0):\r\n"
		"  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
		"  TCP[ESTABLISHED]   14 169.254.169.254    80  169.254.169.15 41830     0     0\r\n"
		"  TCP[HOST_FORWARD]   8       127.0.0.1 39521  169.254.169.15    22     0     0\r\n"
		"  UDP[236 sec]       12       10.0.2.15   68       10.0.2.2    67     0     0\r\n";
	int port = 0;
	struct af_error *err = NULL;
	assert_int_equal(boottest_usernet_port(usernet, 22, &port, &err), 0);
	assert_int_equal(port, 39521);
	assert_int_equal(boottest_usernet_port(usernet, 2222, &port, &err), -1);
	assert_string_equal(af_error_msg(err),
			    "QEMU's 'info usernet' shows no host forward to guest port 2222");
	af_error_clear(&err);
	assert_int_equal(boottest_usernet_port("Hub -1 (net0):\r\n", 22, &port, &err), -1);
	af_error_clear(&err);
}

/* ---- the report ---- */

static void test_report_passed(void **state)
{
	struct boottest_report r = { .image = "disk.img", .boot = "pvgrub", .firmware = "direct kernel",
				     .accel = "tcg", .boot_seconds = 41.25 };
	boottest_report_add(&r, "ssh login", BOOTTEST_OK, "41.2s after QEMU started");
	boottest_report_add(&r, "whoami", BOOTTEST_OK, "admin");
	boottest_report_add(&r, "sudo", BOOTTEST_OK, NULL);
	assert_true(boottest_report_passed(&r));
	struct strbuf sb = STRBUF_INIT;
	boottest_report_format(&r, &sb);
	assert_string_equal(sb.buf, "boot-test disk.img (pvgrub, direct kernel, tcg)\n"
				    "  boot to ssh      41.2s\n"
				    "  ssh login        ok      41.2s after QEMU started\n"
				    "  whoami           ok      admin\n"
				    "  sudo             ok\n"
				    "result: passed (3 checks)\n");
	strbuf_release(&sb);
	boottest_report_release(&r);
}

static void test_report_failed(void **state)
{
	struct boottest_report r = { .image = "x.img", .boot = "hvm", .firmware = "bios", .accel = "kvm",
				     .boot_seconds = -1 };
	assert_false(boottest_report_passed(&r));  /* no check: not a pass */
	boottest_report_add(&r, "ssh login", BOOTTEST_FAILED, "no login within 300s (last: Connection refused)");
	boottest_report_add(&r, "whoami", BOOTTEST_SKIPPED, "no login");
	boottest_report_add(&r, "host keys", BOOTTEST_FAILED, NULL);
	r.kept_dir = xstrdup("/tmp/amiforge-boot-test.abc");
	assert_false(boottest_report_passed(&r));
	struct strbuf sb = STRBUF_INIT;
	boottest_report_format(&r, &sb);
	assert_string_equal(sb.buf, "boot-test x.img (hvm, bios, kvm)\n"
				    "  ssh login        FAILED  no login within 300s (last: Connection refused)\n"
				    "  whoami           skipped no login\n"
				    "  host keys        FAILED\n"
				    "result: FAILED: ssh login, host keys (3 of 3 checks not passed)\n"
				    "console log: /tmp/amiforge-boot-test.abc/console.log\n");
	strbuf_release(&sb);
	boottest_report_release(&r);
}

/* ---- the metadata responder ---- */

static struct imds_config test_config(enum imds_mode mode)
{
	return (struct imds_config){
		.token = xstrdup("TOKEN123"),
		.openssh_key = xstrdup("ssh-ed25519 AAAAC3Nza test"),
		.key_name = xstrdup("mykey"),
		.instance_id = xstrdup("i-0abc"),
		.region = xstrdup("eu-west-1"),
		.mode = mode,
	};
}

/* Handles REQ completely; returns the status; *body gets the body. */
static int handle(const struct imds_config *c, const char *req, char **body, struct imds_reply *keep)
{
	struct imds_reply r = { 0 };
	size_t used = imds_responder_handle(c, req, strlen(req), &r);
	assert_int_equal(used, strlen(req));
	const char *b = strstr(r.out.buf, "\r\n\r\n");
	assert_non_null(b);
	const char *cl = strstr(r.out.buf, "Content-Length: ");
	assert_non_null(cl);
	assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(b + 4));
	if (body)
		*body = xstrdup(b + 4);
	int status = r.status;
	if (keep)
		*keep = r;
	else
		imds_responder_reply_release(&r);
	return status;
}

#define PUT_TOKEN(ttl) "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n" \
		       "X-aws-ec2-metadata-token-ttl-seconds: " ttl "\r\nContent-Length: 0\r\n\r\n"
#define GET(path, hdr) "GET " path " HTTP/1.1\r\nHost: 169.254.169.254\r\n" hdr "\r\n"

static void test_imds_v2(void **state)
{
	struct imds_config c = test_config(IMDS_OPTIONAL);
	char *body = NULL;
	struct imds_reply r = { 0 };
	assert_int_equal(handle(&c, PUT_TOKEN("21600"), &body, &r), 200);
	assert_string_equal(body, "TOKEN123");
	assert_non_null(strstr(r.out.buf, "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"));
	assert_string_equal(r.log_line, "PUT /latest/api/token 200 ttl=21600");
	assert_null(strstr(r.log_line, "TOKEN123"));
	assert_false(r.close);
	imds_responder_reply_release(&r);
	free(body);

	assert_int_equal(handle(&c, GET("/latest/meta-data/public-keys/0/openssh-key",
					"X-aws-ec2-metadata-token: TOKEN123\r\n"), &body, &r), 200);
	assert_string_equal(body, "ssh-ed25519 AAAAC3Nza test\n");
	assert_string_equal(r.log_line, "GET /latest/meta-data/public-keys/0/openssh-key 200 v2");
	imds_responder_reply_release(&r);
	free(body);

	assert_int_equal(handle(&c, GET("/latest/meta-data/instance-id", "x-aws-ec2-metadata-token: bad\r\n"),
				&body, &r), 401);
	assert_string_equal(r.log_line, "GET /latest/meta-data/instance-id 401 bad-token");
	imds_responder_reply_release(&r);
	free(body);
	imds_responder_config_release(&c);
}

static void test_imds_token_errors(void **state)
{
	struct imds_config c = test_config(IMDS_OPTIONAL);
	assert_int_equal(handle(&c, PUT_TOKEN("0"), NULL, NULL), 400);
	assert_int_equal(handle(&c, PUT_TOKEN("21601"), NULL, NULL), 400);
	assert_int_equal(handle(&c, "PUT /latest/api/token HTTP/1.1\r\n\r\n", NULL, NULL), 400);
	assert_int_equal(handle(&c, "PUT /2021-03-23/api/token HTTP/1.1\r\n"
				    "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n", NULL, NULL), 403);
	assert_int_equal(handle(&c, "PUT /latest/api/token HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n"
				    "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n", NULL, NULL), 403);
	assert_int_equal(handle(&c, GET("/latest/api/token", ""), NULL, NULL), 405);
	assert_int_equal(handle(&c, "DELETE /latest/meta-data/ HTTP/1.1\r\n\r\n", NULL, NULL), 405);
	imds_responder_config_release(&c);

	c = test_config(IMDS_V1_ONLY);
	assert_int_equal(handle(&c, PUT_TOKEN("60"), NULL, NULL), 403);
	char *body = NULL;
	assert_int_equal(handle(&c, GET("/latest/meta-data/public-keys/0/openssh-key", ""), &body, NULL), 200);
	assert_string_equal(body, "ssh-ed25519 AAAAC3Nza test\n");
	free(body);
	imds_responder_config_release(&c);
}

static void test_imds_v1_and_required(void **state)
{
	struct imds_config c = test_config(IMDS_OPTIONAL);
	char *body = NULL;
	struct imds_reply r = { 0 };
	assert_int_equal(handle(&c, GET("/latest/meta-data/placement/region", ""), &body, &r), 200);
	assert_string_equal(body, "eu-west-1");
	assert_string_equal(r.log_line, "GET /latest/meta-data/placement/region 200 v1");
	imds_responder_reply_release(&r);
	free(body);
	imds_responder_config_release(&c);

	c = test_config(IMDS_REQUIRED);
	assert_int_equal(handle(&c, GET("/latest/meta-data/instance-id", ""), NULL, NULL), 401);
	assert_int_equal(handle(&c, GET("/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: TOKEN123\r\n"),
				&body, NULL), 200);
	assert_string_equal(body, "i-0abc");
	free(body);
	imds_responder_config_release(&c);
}

static void test_imds_listings(void **state)
{
	struct imds_config c = test_config(IMDS_OPTIONAL);
	static const char *const cases[][2] = {
		{ "/latest/meta-data/public-keys/", "0=mykey" },
		{ "/latest/meta-data/public-keys/0/", "openssh-key" },
		{ "/latest/meta-data/placement/", "availability-zone\nregion" },
		{ "/latest/meta-data/placement/availability-zone", "eu-west-1a" },
		{ "/latest/meta-data/", "ami-id\nhostname\ninstance-id\ninstance-type\nlocal-hostname\n"
					"local-ipv4\nplacement/\npublic-keys/" },
		{ "/latest/", "dynamic\nmeta-data" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *req = xasprintf("GET %s HTTP/1.1\r\n\r\n", cases[i][0]);
		char *body = NULL;
		assert_int_equal(handle(&c, req, &body, NULL), 200);
		assert_string_equal(body, cases[i][1]);
		free(body);
	}
	assert_int_equal(handle(&c, GET("/latest/meta-data/nope", ""), NULL, NULL), 404);
	assert_int_equal(handle(&c, GET("/latest/user-data", ""), NULL, NULL), 404);
	assert_int_equal(handle(&c, GET("/latest/meta-data/public-keys/1/openssh-key", ""), NULL, NULL), 404);
	char *doc = NULL;
	assert_int_equal(handle(&c, GET("/latest/dynamic/instance-identity/document", ""), &doc, NULL), 200);
	json_error_t je;
	json_t *j = json_loads(doc, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "region")), "eu-west-1");
	assert_string_equal(json_string_value(json_object_get(j, "availabilityZone")), "eu-west-1a");
	assert_string_equal(json_string_value(json_object_get(j, "instanceId")), "i-0abc");
	json_decref(j);
	free(doc);
	imds_responder_config_release(&c);
}

static void test_imds_framing(void **state)
{
	struct imds_config c = test_config(IMDS_OPTIONAL);
	struct imds_reply r = { 0 };
	/* Incomplete head or body: nothing consumed yet. */
	const char *partial = "GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n";
	assert_int_equal(imds_responder_handle(&c, partial, strlen(partial), &r), 0);
	const char *body_missing = "PUT /latest/api/token HTTP/1.1\r\nContent-Length: 4\r\n\r\nab";
	assert_int_equal(imds_responder_handle(&c, body_missing, strlen(body_missing), &r), 0);
	/* Two pipelined requests: the first one only. */
	const char *two = GET("/latest/meta-data/ami-id", "") GET("/latest/meta-data/instance-id", "");
	size_t used = imds_responder_handle(&c, two, strlen(two), &r);
	assert_int_equal(used, strlen(GET("/latest/meta-data/ami-id", "")));
	imds_responder_reply_release(&r);
	/* Malformed: 400 and close. */
	const char *bad = "HELLO\r\n\r\n";
	assert_int_equal(imds_responder_handle(&c, bad, strlen(bad), &r), strlen(bad));
	assert_int_equal(r.status, 400);
	assert_true(r.close);
	imds_responder_reply_release(&r);
	/* HTTP/1.0 closes unless asked to keep alive; HEAD has no body. */
	const char *h10 = "HEAD /latest/meta-data/instance-id HTTP/1.0\r\n\r\n";
	assert_int_equal(imds_responder_handle(&c, h10, strlen(h10), &r), strlen(h10));
	assert_true(r.close);
	assert_true(str_has_suffix(r.out.buf, "\r\n\r\n"));
	assert_non_null(strstr(r.out.buf, "Content-Length: 6\r\n"));
	imds_responder_reply_release(&r);
	/* An endless head is refused, not buffered forever. */
	char *huge = xmalloc(20000);
	memset(huge, 'a', 19999);
	huge[19999] = '\0';
	assert_int_equal(imds_responder_handle(&c, huge, strlen(huge), &r), strlen(huge));
	assert_int_equal(r.status, 400);
	imds_responder_reply_release(&r);
	free(huge);
	imds_responder_config_release(&c);
}

/* The serve loop over a socket pair, as QEMU's guestfwd drives it, and the
 * configuration files the hidden command reads. */
static void test_imds_serve_and_config(void **state)
{
	char *dir = test_mkdtemp();
	struct af_error *err = NULL;
	struct imds_config saved = test_config(IMDS_OPTIONAL);
	assert_int_equal(imds_responder_config_save(dir, &saved, &err), 0);
	char *tok_path = path_join(dir, "token");
	struct stat st;
	assert_int_equal(stat(tok_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(tok_path);
	imds_responder_config_release(&saved);
	struct imds_config c = { 0 };
	assert_int_equal(imds_responder_config_load(dir, &c, &err), 0);
	assert_string_equal(c.token, "TOKEN123");
	assert_string_equal(c.openssh_key, "ssh-ed25519 AAAAC3Nza test");

	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	const char *reqs = PUT_TOKEN("60") GET("/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: TOKEN123\r\n")
		"GET /latest/meta-data/ami-id HTTP/1.1\r\nConnection: close\r\n\r\n";
	assert_int_equal(write(sv[1], reqs, strlen(reqs)), (ssize_t)strlen(reqs));
	char *log_path = path_join(dir, "imds.log");
	int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	assert_int_equal(imds_responder_serve(&c, sv[0], sv[0], log_fd, 5, &err), 0);
	close(log_fd);
	close(sv[0]);
	char buf[8192];
	ssize_t n = read_all(sv[1], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "\r\n\r\nTOKEN123HTTP/1.1 200 OK"));
	assert_non_null(strstr(buf, "\r\n\r\ni-0abcHTTP/1.1 200 OK"));
	assert_true(str_has_suffix(buf, "Connection: close\r\n\r\nami-0a0b0c0d0e0f01234"));
	close(sv[1]);
	char *log = read_file(log_path, NULL, &err);
	assert_string_equal(log, "PUT /latest/api/token 200 ttl=60\n"
				 "GET /latest/meta-data/instance-id 200 v2\n"
				 "GET /latest/meta-data/ami-id 200 v1\n");
	free(log);
	free(log_path);
	imds_responder_config_release(&c);

	/* A missing key file is an error naming the directory. */
	char *key_path = path_join(dir, "openssh-key");
	unlink(key_path);
	free(key_path);
	assert_int_equal(imds_responder_config_load(dir, &c, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "openssh-key"));
	af_error_clear(&err);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- the image reader: menu.lst and the files it names, read out of an
 * ext4 with nothing mounted ---- */

static void put(const char *root, const char *rel, const char *text)
{
	_cleanup_free_ char *path = path_join(root, rel);
	_cleanup_free_ char *cmd = xasprintf("mkdir -p \"$(dirname '%s')\"", path);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644, NULL), 0);
}

/* An unpartitioned ext4 (PV-GRUB's (hd0)) holding TREE; NULL when mke2fs
 * is missing. */
static char *make_image(const char *dir, const char *tree)
{
	char *img = path_join(dir, "disk.img");
	_cleanup_free_ char *cmd =
		xasprintf("mke2fs -q -F -t ext4 -L rootfs -d '%s' '%s' 16M >/dev/null 2>&1", tree, img);
	if (system(cmd) != 0) {
		free(img);
		return NULL;
	}
	return img;
}

static void test_image_pvgrub(void **state)
{
	_cleanup_free_ char *dir = test_mkdtemp();
	_cleanup_free_ char *tree = path_join(dir, "tree");
	put(tree, "boot/grub/menu.lst", "default 0\ntitle Debian\nroot (hd0)\n"
					    "kernel /boot/vmlinuz root=LABEL=rootfs console=hvc0\n"
					    "initrd /boot/initrd.img\n");
	put(tree, "boot/vmlinuz", "the kernel");
	put(tree, "boot/initrd.img", "the initrd");
	put(tree, "etc/ssh/ssh_host_ed25519_key", "secret");
	_cleanup_free_ char *img = make_image(dir, tree);
	if (!img) {
		test_rmdir_r(dir);
		test_skip_because("mke2fs (e2fsprogs) is not installed");
	}
	struct af_error *err = NULL;
	struct bt_disk d;
	assert_int_equal(bt_probe_disk(img, &d, &err), 0);
	assert_string_equal(d.table, "none");
	_cleanup_free_ char *keys = bt_image_host_keys(img, &d);
	assert_string_equal(keys, "ssh_host_ed25519_key");

	struct bt_pvboot pv = { 0 };
	assert_int_equal(bt_read_pvgrub(img, &d, dir, &pv, &err), 0);
	assert_null(err);
	assert_string_equal(pv.cmdline, "root=LABEL=rootfs console=ttyS0");
	_cleanup_free_ char *kernel = read_file(pv.kernel, NULL, NULL);
	_cleanup_free_ char *initrd = read_file(pv.initrd, NULL, NULL);
	assert_string_equal(kernel, "the kernel");
	assert_string_equal(initrd, "the initrd");
	assert_non_null(strstr(pv.where, "'Debian' on (hd0)"));
	bt_pvboot_release(&pv);
	test_rmdir_r(dir);
}

static void test_image_no_menulst(void **state)
{
	_cleanup_free_ char *dir = test_mkdtemp();
	_cleanup_free_ char *tree = path_join(dir, "tree");
	put(tree, "etc/hostname", "empty\n");
	_cleanup_free_ char *img = make_image(dir, tree);
	if (!img) {
		test_rmdir_r(dir);
		test_skip_because("mke2fs (e2fsprogs) is not installed");
	}
	struct af_error *err = NULL;
	struct bt_disk d;
	assert_int_equal(bt_probe_disk(img, &d, &err), 0);
	_cleanup_free_ char *keys = bt_image_host_keys(img, &d);
	assert_null(keys);  /* no /etc/ssh */
	struct bt_pvboot pv = { 0 };
	assert_int_equal(bt_read_pvgrub(img, &d, dir, &pv, &err), -1);
	_cleanup_free_ char *want = xasprintf("no menu.lst in '%s' where PV-GRUB looks", img);
	assert_non_null(strstr(af_error_msg(err), want));
	af_error_free(err);
	bt_pvboot_release(&pv);
	test_rmdir_r(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_menulst_parse),
		cmocka_unit_test(test_menulst_default_and_equals),
		cmocka_unit_test(test_menulst_errors),
		cmocka_unit_test(test_menulst_devices),
		cmocka_unit_test(test_serial_cmdline),
		cmocka_unit_test(test_key_fingerprint),
		cmocka_unit_test(test_console_hostkeys),
		cmocka_unit_test(test_console_hostkeys_prefixes),
		cmocka_unit_test(test_console_hostkeys_missing),
		cmocka_unit_test(test_console_hostkeys_forged),
		cmocka_unit_test(test_usernet_port),
		cmocka_unit_test(test_report_passed),
		cmocka_unit_test(test_report_failed),
		cmocka_unit_test(test_imds_v2),
		cmocka_unit_test(test_imds_token_errors),
		cmocka_unit_test(test_imds_v1_and_required),
		cmocka_unit_test(test_imds_listings),
		cmocka_unit_test(test_imds_framing),
		cmocka_unit_test(test_imds_serve_and_config),
		cmocka_unit_test(test_image_pvgrub),
		cmocka_unit_test(test_image_no_menulst),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
