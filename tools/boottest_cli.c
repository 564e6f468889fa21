/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge boot-test`: its options, the tools it needs, its signals and
 * exit codes (boottest.h); the test itself is boottest.c's. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/cli.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/log.h"
#include "amiforge/util.h"
#include "boottest_int.h"

static const char bt_usage[] =
	"usage: amiforge boot-test IMAGE [--hvm | --pvgrub] [--uefi | --bios] [--user NAME]\n"
	"                          [--accel tcg|kvm] [--timeout SECONDS] [--memory MIB]\n"
	"                          [--imds optional|required|v1-only] [--keep-logs]\n"
	"  --hvm        boot the disk's own bootloader (default); UEFI when it has an EFI system partition\n"
	"  --pvgrub     boot the kernel, initrd and command line of menu.lst's default entry, as PV-GRUB does\n"
	"  --uefi, --bios   force the firmware (UEFI uses OVMF from Debian's ovmf package)\n"
	"  --user       the admin user to log in as (default admin)\n"
	"  --accel      tcg (default: KVM is not usable everywhere) or kvm\n"
	"  --timeout    seconds from QEMU's start to an ssh login (default 300 with tcg, 120 with kvm)\n"
	"  --imds       the metadata service: tokens optional (default), required, or refused (v1-only)\n"
	"  --keep-logs  keep the console log even when every check passes\n";

#define bt_usage_error(...) cli_usage_error("amiforge", bt_usage, __VA_ARGS__)

static int bt_parse(int argc, char **argv, struct bt *b)
{
	static const struct option opts[] = {
		{ "hvm", no_argument, NULL, 'H' },	   { "pvgrub", no_argument, NULL, 'P' },
		{ "uefi", no_argument, NULL, 'U' },	   { "bios", no_argument, NULL, 'B' },
		{ "user", required_argument, NULL, 'u' },  { "accel", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' }, { "memory", required_argument, NULL, 'm' },
		{ "imds", required_argument, NULL, 'i' },  { "keep-logs", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },	   { NULL, 0, NULL, 0 },
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end = NULL;
		switch (c) {
		case 'H': b->pvgrub = false; break;
		case 'P': b->pvgrub = true; break;
		case 'U': b->firmware = BT_FW_UEFI; break;
		case 'B': b->firmware = BT_FW_BIOS; break;
		case 'u': b->user = optarg; break;
		case 'k': b->keep = true; break;
		case 'a':
			if (strcmp(optarg, "tcg") && strcmp(optarg, "kvm"))
				return bt_usage_error("--accel '%s': expected tcg or kvm", optarg);
			b->accel = optarg;
			break;
		case 't':
		case 'm': {
			long v = strtol(optarg, &end, 10);
			if (*end || v <= 0 || v > 100000)
				return bt_usage_error("'%s': expected a positive number", optarg);
			*(c == 't' ? &b->timeout : &b->memory) = (int)v;
			break;
		}
		case 'i':
			if (!strcmp(optarg, "optional"))
				b->imds_mode = IMDS_OPTIONAL;
			else if (!strcmp(optarg, "required"))
				b->imds_mode = IMDS_REQUIRED;
			else if (!strcmp(optarg, "v1-only"))
				b->imds_mode = IMDS_V1_ONLY;
			else
				return bt_usage_error("--imds '%s': expected optional, required or v1-only", optarg);
			break;
		case 'h': fputs(bt_usage, stdout); return -1;
		default: return bt_usage_error("%s", "boot-test: unexpected option");
		}
	}
	if (argc - optind != 1)
		return bt_usage_error("%s", "boot-test takes exactly one IMAGE");
	b->image = argv[optind];
	if (b->pvgrub && b->firmware != BT_FW_AUTO)
		return bt_usage_error("%s", "--pvgrub boots the kernel directly: --uefi and --bios do not apply");
	if (!b->timeout)
		b->timeout = !strcmp(b->accel, "kvm") ? 120 : 300;
	return 0;
}

/* 0, or EXIT_UNAVAILABLE with a message naming the package. */
static int bt_require_tools(void)
{
	static const char *const tools[][2] = { { "qemu-system-x86_64", "qemu-system-x86" },
						{ "ssh", "openssh-client" },
						{ "ssh-keygen", "openssh-client" } };
	const char *path = getenv("PATH");
	for (size_t i = 0; i < ARRAY_SIZE(tools); i++) {
		bool found = false;
		_cleanup_free_ char *copy = xstrdup(path ? path : "/usr/bin:/bin");
		char *save = NULL;
		for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
			_cleanup_free_ char *p = path_join(d, tools[i][0]);
			found = access(p, X_OK) == 0;
		}
		if (!found) {
			log_error("boot-test needs %s: install Debian's %s package", tools[i][0], tools[i][1]);
			return EXIT_UNAVAILABLE;
		}
	}
	return 0;
}

/* Kills and reaps every child left: QEMU's metadata responders, which
 * libslirp detaches and which come back to us as the subreaper. */
static void bt_reap_all(void)
{
	for (int round = 0; round < 3; round++) {
		_cleanup_dir_ DIR *d = opendir("/proc");
		struct dirent *de;
		pid_t self = getpid();
		while (d && (de = readdir(d))) {
			pid_t pid = (pid_t)atoi(de->d_name);
			if (pid <= 0)
				continue;
			char path[64];
			snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
			_cleanup_free_ char *stat = read_file(path, NULL, NULL);
			const char *rp = stat ? strrchr(stat, ')') : NULL;
			int ppid = 0;
			if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self)
				kill(pid, SIGKILL);
		}
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		bt_sleep(0.05);
	}
}

static void bt_signals(void (*handler)(int))
{
	struct sigaction sa = { .sa_handler = handler };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

int boottest_main(int argc, char **argv)
{
	struct bt b = { .user = "admin", .accel = "tcg", .memory = 1024, .qmp = -1,
			.rep = { .boot = "hvm", .firmware = "bios", .boot_seconds = -1 } };
	int rc = bt_parse(argc, argv, &b);
	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	if ((rc = bt_require_tools()))
		return rc;
	b.rep.image = b.image;
	b.rep.boot = b.pvgrub ? "pvgrub" : "hvm";
	b.rep.accel = b.accel;
	bt_interrupted = 0;
	bt_signals(bt_on_signal);
	/* libslirp detaches the per-connection responders from QEMU: as the
	 * subreaper we get them back and can kill them at the end. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);

	_cleanup_error_ struct af_error *err = NULL;
	int r = bt_execute(&b, &err);
	bt_stop_qemu(&b);
	bt_reap_all();
	bool passed = r == 0 && boottest_report_passed(&b.rep);
	/* Logs are worth keeping only once QEMU ran; an interrupted test
	 * leaves nothing. */
	bt_remove_dir(&b, (!passed || b.keep) && b.qemu_start > 0 && !bt_interrupted);
	if (bt_interrupted) {
		log_error("boot-test interrupted by signal %d: QEMU stopped, temporary files removed",
			  (int)bt_interrupted);
		rc = EXIT_INTERRUPTED;
	} else if (r < 0) {
		log_error("boot-test '%s': %s", b.image, af_error_msg(err));
		if (b.rep.kept_dir)
			log_error("logs kept in %s", b.rep.kept_dir);
		rc = af_error_errno(err) == ENOENT && b.ovmf_code == NULL && b.firmware == BT_FW_UEFI
			     ? EXIT_UNAVAILABLE : EXIT_STAGE_FAILED;
	} else {
		struct strbuf out = STRBUF_INIT;
		boottest_report_format(&b.rep, &out);
		fputs(out.buf, stdout);
		fflush(stdout);
		strbuf_release(&out);
		rc = passed ? EXIT_OK : EXIT_STAGE_FAILED;
	}
	bt_signals(SIG_DFL);
	bt_release(&b);
	return rc;
}
