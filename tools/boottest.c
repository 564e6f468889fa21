/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge boot-test IMAGE`: boot the image in QEMU the way EC2 would
 * (user networking, a metadata service at 169.254.169.254, a key pair made
 * for the test), ssh in as the admin user and check the image (DESIGN §7).
 * The command line is boottest_cli.c's; what is read from the image before
 * it boots, boottest_image.c's (see boottest_int.h).
 *
 * Nothing is left behind: QEMU runs in its own process group with
 * PR_SET_PDEATHSIG, the per-connection metadata responders (which libslirp
 * detaches from QEMU) are reparented to us as a child subreaper and killed
 * at the end, the disk is opened with snapshot=on (its overlay lives in the
 * temporary directory), and the temporary directory with the private key is
 * removed, after a failure all but the console and responder logs. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/imds_responder.h"
#include "amiforge/log.h"
#include "amiforge/spawn.h"
#include "amiforge/util.h"
#include "boottest_int.h"

extern char **environ;

/* ================ the port QEMU bound (info usernet) ================= */

int boottest_usernet_port(const char *usernet, int guest_port, int *port, struct af_error **err)
{
	_cleanup_free_ char *copy = xstrdup(usernet);
	for (char *p = copy, *line; (line = strsep(&p, "\n"));) {
		char proto[64], src[64], dst[64];
		int fd, sport, dport;
		int got = sscanf(line, " %63s %d %63s %d %63s %d", proto, &fd, src, &sport, dst,
				 &dport);
		if (got != 6)
			continue;
		if (!strcmp(proto, "TCP[HOST_FORWARD]") && dport == guest_port && sport > 0 &&
		    sport < 65536) {
			*port = sport;
			return 0;
		}
	}
	return af_error_set(err, 0, "QEMU's 'info usernet' shows no host forward to guest port %d",
			    guest_port);
}

/* ========================== child processes =========================== */

volatile sig_atomic_t bt_interrupted;

void bt_on_signal(int sig)
{
	bt_interrupted = sig;
}

void bt_sleep(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	nanosleep(&ts, NULL);  /* a signal cuts it short, which is what we want */
}

struct bt_result {
	int status;      /* exit status, or 128 + signal */
	bool timed_out;
	char *output;    /* stdout and stderr, owned */
};

/* The end of a command as bt_run reports it: a timeout is a result the
 * checks judge, a signal to us stops the test.  0 or -1 + err. */
static int bt_run_end(struct af_error *e, struct bt_result *res, struct af_error **err)
{
	if (!e)
		return 0;
	if (af_error_errno(e) == ETIMEDOUT) {
		af_error_free(e);
		res->timed_out = true;
		res->status = 128 + SIGKILL;
		return 0;
	}
	if (af_error_errno(e) == ECANCELED) {
		af_error_free(e);
		return af_error_set(err, 0, "interrupted by signal %d", (int)bt_interrupted);
	}
	if (err && !*err)
		*err = e;
	else
		af_error_free(e);
	return -1;
}

/* Runs a command with our environment to completion, until TIMEOUT seconds
 * or a signal to us, its output in a file in DIR meanwhile (a pipe would
 * need reading while we wait).  0 (res filled) or -1 + err when it could
 * not run or we were interrupted. */
static int bt_run(const char *dir, char *const argv[], double timeout, struct bt_result *res,
		  struct af_error **err)
{
	_cleanup_free_ char *out = path_join(dir, "cmd.out");
	_cleanup_fd_ int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "cannot create '%s'", out);
	struct spawn_opts o = { .argv = argv, .env = environ, .out_fd = fd, .in_fd = -1,
				.deadline = now_monotonic() + timeout, .cancel = &bt_interrupted };
	struct af_error *e = NULL;
	*res = (struct bt_result){ 0 };
	spawn_status(&o, &res->status, &e);
	int rc = bt_run_end(e, res, err);
	if (rc == 0) {
		res->output = read_file(out, NULL, NULL);
		if (!res->output)
			res->output = xstrdup("");
	}
	unlink(out);
	return rc;
}

/* ============================ the boot test =========================== */

static char *bt_random_hex(size_t bytes)
{
	unsigned char buf[64];
	if (bytes > sizeof(buf) || getrandom(buf, bytes, 0) != (ssize_t)bytes)
		BUG("getrandom failed");
	return hex_encode_dup(buf, bytes);
}

/* QEMU splits option values at ',' and libslirp splits the guestfwd
 * command line like a shell: keep the paths we put there plain. */
static int bt_plain_path(const char *p, struct af_error **err)
{
	if (p[strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._+-")] != '\0')
		return af_error_set(err, 0, "'%s' holds characters QEMU's option syntax would split: "
				    "set TMPDIR to a plain path", p);
	return 0;
}

/* The key pair and the metadata the responder serves. */
static int bt_make_keys(struct bt *b, struct af_error **err)
{
	b->key = path_join(b->dir, "id_ed25519");
	char *argv[] = { "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "amiforge-boot-test", "-f", b->key, NULL };
	struct bt_result res;
	if (bt_run(b->dir, argv, 60, &res, err) < 0)
		return -1;
	_cleanup_free_ char *out = res.output;
	if (res.status != 0)
		return af_error_set(err, 0, "ssh-keygen failed: %s", out);
	_cleanup_free_ char *pub_path = xasprintf("%s.pub", b->key);
	_cleanup_free_ char *pub = read_file(pub_path, NULL, err);
	if (!pub)
		return -1;
	pub[strcspn(pub, "\n")] = '\0';
	_cleanup_free_ char *id = bt_random_hex(9);
	id[17] = '\0';
	struct imds_config c = {
		.token = bt_random_hex(32),
		.openssh_key = xstrdup(pub),
		.key_name = xstrdup("amiforge-boot-test"),
		.instance_id = xasprintf("i-%s", id),
		.region = xstrdup("us-east-1"),
		.mode = b->imds_mode,
	};
	int rc = imds_responder_config_save(b->dir, &c, err);
	imds_responder_config_release(&c);
	/* Empty until the guest prints its keys: ssh trusts no key before. */
	b->known_hosts = path_join(b->dir, "known_hosts");
	return rc < 0 ? -1 : write_file_atomic(b->known_hosts, "", 0, 0600, err);
}

static int bt_find_ovmf(struct bt *b, struct af_error **err)
{
	static const char *const pairs[][2] = {
		{ "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd" },
		{ "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(pairs); i++) {
		if (access(pairs[i][0], R_OK) || access(pairs[i][1], R_OK))
			continue;
		size_t len;
		_cleanup_free_ char *vars = read_file(pairs[i][1], &len, err);
		if (!vars)
			return -1;
		b->ovmf_code = xstrdup(pairs[i][0]);
		b->ovmf_vars = path_join(b->dir, "OVMF_VARS.fd");
		return write_file_atomic(b->ovmf_vars, vars, len, 0600, err);
	}
	af_error_set(err, 0, "no OVMF firmware in /usr/share/OVMF to boot a UEFI image: install Debian's ovmf package");
	(*err)->errnum = ENOENT;
	return -1;
}

/* Everything about the image that is known before it boots. */
static int bt_inspect(struct bt *b, struct af_error **err)
{
	if (bt_probe_disk(b->image, &b->disk, err) < 0)
		return -1;
	b->image_keys = bt_image_host_keys(b->image, &b->disk);
	if (b->pvgrub) {
		b->rep.firmware = "direct kernel";
		return bt_read_pvgrub(b->image, &b->disk, b->dir, &b->pv, err);
	}
	if (b->firmware == BT_FW_AUTO)
		b->firmware = bt_has_esp(&b->disk) ? BT_FW_UEFI : BT_FW_BIOS;
	b->rep.firmware = b->firmware == BT_FW_UEFI ? "uefi" : "bios";
	return b->firmware == BT_FW_UEFI ? bt_find_ovmf(b, err) : 0;
}

static void strv_push(char ***v, size_t *n, char *s)
{
	*v = xreallocarray(*v, *n + 2, sizeof(**v));
	(*v)[(*n)++] = s;
	(*v)[*n] = NULL;
}

static char **bt_qemu_argv(struct bt *b, const char *self, int qmp_fd)
{
	char **v = NULL;
	size_t n = 0;
	bool kvm = !strcmp(b->accel, "kvm");
	strv_push(&v, &n, xstrdup("qemu-system-x86_64"));
	const char *fixed[] = { "-name", "amiforge-boot-test", "-nodefaults", "-no-user-config", "-display", "none",
				"-no-reboot", "-machine", "pc", "-smp", "2", "-device", "virtio-rng-pci" };
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		strv_push(&v, &n, xstrdup(fixed[i]));
	strv_push(&v, &n, xstrdup("-accel"));
	strv_push(&v, &n, xstrdup(kvm ? "kvm" : "tcg"));
	strv_push(&v, &n, xstrdup("-cpu"));
	strv_push(&v, &n, xstrdup(kvm ? "host" : "max"));
	strv_push(&v, &n, xstrdup("-m"));
	strv_push(&v, &n, xasprintf("%d", b->memory));
	strv_push(&v, &n, xstrdup("-serial"));
	strv_push(&v, &n, xasprintf("file:%s/console.log", b->dir));
	/* QMP on a socket QEMU inherits, connected from the start: how we
	 * learn the port it bound (bt_forwarded_port). */
	strv_push(&v, &n, xstrdup("-chardev"));
	strv_push(&v, &n, xasprintf("socket,id=qmp,fd=%d", qmp_fd));
	strv_push(&v, &n, xstrdup("-mon"));
	strv_push(&v, &n, xstrdup("chardev=qmp,mode=control"));
	/* snapshot=on: writes go to a temporary overlay (in TMPDIR = our
	 * directory), never to the image. */
	strv_push(&v, &n, xstrdup("-drive"));
	strv_push(&v, &n, xasprintf("file=%s,format=raw,if=virtio,snapshot=on,cache=unsafe", b->image));
	/* libslirp forwards only to addresses inside its network, so the
	 * guest's network is the metadata service's link-local /24.
	 * hostfwd port 0: libslirp binds 127.0.0.1:0 and keeps the socket, so
	 * the kernel's choice is ours from the start; a port picked by us and
	 * handed over would be free for anyone between our close and QEMU's
	 * bind (hostfwd takes no fd).  QMP's `info usernet` tells the port. */
	strv_push(&v, &n, xstrdup("-netdev"));
	strv_push(&v, &n, xasprintf("user,id=net0,net=169.254.169.0/24,host=169.254.169.1,dns=169.254.169.3,"
				    "dhcpstart=169.254.169.15,hostname=amiforge-boot-test,"
				    "hostfwd=tcp:127.0.0.1:0-:22,"
				    "guestfwd=tcp:169.254.169.254:80-cmd:%s __imds-responder %s",
				    self, b->dir));
	strv_push(&v, &n, xstrdup("-device"));
	strv_push(&v, &n, xstrdup("virtio-net-pci,netdev=net0"));
	if (b->pvgrub) {
		strv_push(&v, &n, xstrdup("-kernel"));
		strv_push(&v, &n, xstrdup(b->pv.kernel));
		if (b->pv.initrd) {
			strv_push(&v, &n, xstrdup("-initrd"));
			strv_push(&v, &n, xstrdup(b->pv.initrd));
		}
		strv_push(&v, &n, xstrdup("-append"));
		strv_push(&v, &n, xstrdup(b->pv.cmdline));
	} else if (b->firmware == BT_FW_UEFI) {
		strv_push(&v, &n, xstrdup("-drive"));
		strv_push(&v, &n, xasprintf("if=pflash,format=raw,unit=0,readonly=on,file=%s", b->ovmf_code));
		strv_push(&v, &n, xstrdup("-drive"));
		strv_push(&v, &n, xasprintf("if=pflash,format=raw,unit=1,file=%s", b->ovmf_vars));
	}
	return v;
}

/* QEMU's environment: ours, with TMPDIR for the snapshot overlay.  The
 * array is the caller's to free, not its strings (TMPDIR's is *tmpdir). */
static char **bt_qemu_env(const struct bt *b, char **tmpdir)
{
	size_t ne = 0, k = 0;
	while (environ[ne])
		ne++;
	char **env = xcalloc(ne + 2, sizeof(*env));
	for (size_t i = 0; i < ne; i++)
		if (!str_has_prefix(environ[i], "TMPDIR="))
			env[k++] = environ[i];
	env[k] = *tmpdir = xasprintf("TMPDIR=%s", b->dir);
	return env;
}

static void bt_log_argv(char *const *argv)
{
	struct strbuf cmd = STRBUF_INIT;
	for (char *const *a = argv; *a; a++)
		strbuf_addf(&cmd, "%s%s", cmd.len ? " " : "", *a);
	log_debug("%s", cmd.buf);
	strbuf_release(&cmd);
}

/* QEMU in the background, keeping its end of the monitor socket under the
 * number its command line names. */
static int bt_spawn_qemu(struct bt *b, char *const *argv, int qemu_end, struct af_error **err)
{
	_cleanup_free_ char *qlog = path_join(b->dir, "qemu.log");
	_cleanup_fd_ int fd = open(qlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "cannot create '%s'", qlog);
	_cleanup_free_ char *tmpdir = NULL;
	_cleanup_free_ char **env = bt_qemu_env(b, &tmpdir);
	struct spawn_opts o = { .argv = argv, .env = env, .out_fd = fd, .in_fd = -1,
				.keep_fd = qemu_end };
	bt_log_argv(argv);
	b->qemu_start = now_monotonic();
	b->qemu = spawn_start(&o, err);
	return b->qemu < 0 ? -1 : 0;
}

static int bt_start_qemu(struct bt *b, struct af_error **err)
{
	char self[4096];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl < 0)
		return af_error_set(err, errno, "cannot find the amiforge executable (/proc/self/exe)");
	self[sl] = '\0';
	if (bt_plain_path(self, err) < 0 || bt_plain_path(b->dir, err) < 0 || bt_plain_path(b->image, err) < 0)
		return -1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return af_error_set(err, errno, "cannot create a socket pair for QEMU's monitor");
	b->qmp = sv[0];
	_cleanup_fd_ int qemu_end = sv[1];
	_cleanup_strv_ char **argv = bt_qemu_argv(b, self, qemu_end);
	return bt_spawn_qemu(b, argv, qemu_end, err);
}

void bt_stop_qemu(struct bt *b)
{
	if (b->qemu <= 0)
		return;
	int st;
	pid_t r = 0;
	kill(b->qemu, SIGTERM);
	for (int i = 0; i < 60 && (r = waitpid(b->qemu, &st, WNOHANG)) == 0; i++)
		bt_sleep(0.05);
	if (r == b->qemu)
		kill(-b->qemu, SIGKILL);  /* what is left of its process group */
	else
		spawn_kill(b->qemu, NULL);
	b->qemu = 0;
}

/* ================= QMP: the port QEMU bound for ssh ================== */

struct bt_qmp {
	int fd;
	size_t len;
	char buf[16384];
};

/* The next reply on QMP (events skipped), NULL + err on EOF, garbage, the
 * deadline or a signal. */
static json_t *bt_qmp_next(struct bt_qmp *q, double deadline, struct af_error **err)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		if (nl) {
			size_t ll = (size_t)(nl - q->buf) + 1;
			json_error_t je;
			json_t *j = json_loadb(q->buf, ll, 0, &je);
			memmove(q->buf, q->buf + ll, q->len - ll);
			q->len -= ll;
			if (!json_is_object(j)) {
				json_decref(j);
				af_error_set(err, 0, "QEMU's monitor sent something not QMP");
				return NULL;
			}
			if (!json_object_get(j, "event"))
				return j;
			json_decref(j);
			continue;
		}
		if (q->len == sizeof(q->buf)) {
			af_error_set(err, 0, "QEMU's monitor sent a line longer than %zu bytes",
				     sizeof(q->buf));
			return NULL;
		}
		double left = deadline - now_monotonic();
		if (bt_interrupted) {
			af_error_set(err, 0, "interrupted by signal %d", (int)bt_interrupted);
			return NULL;
		}
		if (left <= 0) {
			af_error_set(err, 0, "QEMU's monitor did not answer within 60s");
			return NULL;
		}
		struct pollfd pfd = { .fd = q->fd, .events = POLLIN };
		int r = poll(&pfd, 1, left > 0.2 ? 200 : (int)(left * 1000) + 1);
		if (r < 0 && errno != EINTR) {
			af_error_set(err, errno, "cannot wait for QEMU's monitor");
			return NULL;
		}
		if (r <= 0)
			continue;
		ssize_t got = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
			af_error_set(err, got == 0 ? 0 : errno, "QEMU closed its monitor");
			return NULL;
		}
		if (got > 0)
			q->len += (size_t)got;
	}
}

/* Sends one QMP command and returns its "return" value (a new reference),
 * NULL + err when QEMU answers with an error or not at all. */
static json_t *bt_qmp_execute(struct bt_qmp *q, json_t *cmd, double deadline, struct af_error **err)
{
	_cleanup_free_ char *text = json_dumps(cmd, JSON_COMPACT);
	_cleanup_free_ char *line = xasprintf("%s\n", text);
	if (write_all(q->fd, line, strlen(line)) < 0) {
		af_error_set(err, errno, "cannot write to QEMU's monitor");
		return NULL;
	}
	_cleanup_json_ json_t *reply = bt_qmp_next(q, deadline, err);
	if (!reply)
		return NULL;
	json_t *ret = json_object_get(reply, "return");
	if (!ret) {
		json_t *e = json_object_get(reply, "error");
		const char *desc = json_string_value(json_object_get(e, "desc"));
		const char *what = json_string_value(json_object_get(cmd, "execute"));
		af_error_set(err, 0, "QEMU's monitor refused %s: %s", what,
			     desc ? desc : "no reason given");
		return NULL;
	}
	return json_incref(ret);
}

/* Asks QEMU which port on 127.0.0.1 it bound for the guest's ssh, then
 * closes the monitor (QEMU runs on without it).  0 or -1 + err. */
static int bt_forwarded_port(struct bt *b, struct af_error **err)
{
	struct bt_qmp *q = xcalloc(1, sizeof(*q));
	q->fd = b->qmp;
	double deadline = now_monotonic() + 60;
	_cleanup_json_ json_t *caps = json_pack("{s:s}", "execute", "qmp_capabilities");
	_cleanup_json_ json_t *info =
		json_pack("{s:s, s:{s:s}}", "execute", "human-monitor-command", "arguments",
			  "command-line", "info usernet");
	_cleanup_json_ json_t *greeting = bt_qmp_next(q, deadline, err);
	_cleanup_json_ json_t *r1 = greeting ? bt_qmp_execute(q, caps, deadline, err) : NULL;
	_cleanup_json_ json_t *r2 = r1 ? bt_qmp_execute(q, info, deadline, err) : NULL;
	free(q);
	close(b->qmp);
	b->qmp = -1;
	if (!r2)
		return af_error_wrap(err, "cannot learn QEMU's forwarded ssh port");
	if (!json_is_string(r2))
		return af_error_set(err, 0, "cannot learn QEMU's forwarded ssh port: "
				    "'info usernet' gave no text");
	return boottest_usernet_port(json_string_value(r2), 22, &b->port, err);
}

static char *bt_first_line(const char *s)
{
	return xstrndup(s, strcspn(s, "\r\n"));
}

/* The last lines of a file, for messages. */
static char *bt_tail(const char *path, size_t lines)
{
	_cleanup_free_ char *text = read_file(path, NULL, NULL);
	if (!text)
		return xstrdup("");
	size_t len = strlen(text);
	while (len && text[len - 1] == '\n')
		text[--len] = '\0';
	const char *p = text + len;
	for (size_t n = 0; p > text; p--)
		if (p[-1] == '\n' && ++n == lines)
			break;
	return xstrdup(p);
}

/* The name the pinned keys are filed under in known_hosts, whatever port
 * QEMU bound. */
#define BT_HOST_ALIAS "amiforge-boot-test"

enum bt_ssh_mode {
	BT_SSH_COMMAND,        /* a command with the test key, quiet */
	BT_SSH_VERBOSE,        /* the same with -v: which host key the server sent */
	BT_SSH_PASSWORD_PROBE, /* no key: what the server offers instead */
};

/* ssh to the guest as the admin user with the test key, trusting only the
 * host keys pinned from the console (none before they are printed). */
static char **bt_ssh_argv(const struct bt *b, enum bt_ssh_mode mode, const char *command)
{
	char **v = NULL;
	size_t n = 0;
	const char *common[] = {
		"ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", ("HostKeyAlias=" BT_HOST_ALIAS),
		"-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no", "-o", "VerifyHostKeyDNS=no",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
		"-o", "ServerAliveCountMax=3", "-o", "IdentityAgent=none",
		"-o", "IdentitiesOnly=yes",
	};
	for (size_t i = 0; i < ARRAY_SIZE(common); i++)
		strv_push(&v, &n, xstrdup(common[i]));
	/* b->dir passed bt_plain_path: no blank, '%' or '~' that ssh would
	 * split or expand. */
	strv_push(&v, &n, xstrdup("-o"));
	strv_push(&v, &n, xasprintf("UserKnownHostsFile=%s", b->known_hosts));
	if (b->hostkey_algs) {
		strv_push(&v, &n, xstrdup("-o"));
		strv_push(&v, &n, xasprintf("HostKeyAlgorithms=%s", b->hostkey_algs));
	}
	if (mode == BT_SSH_PASSWORD_PROBE) {
		/* -v shows "Authentications that can continue": what the server offers. */
		const char *probe[] = { "-v", "-o", "PubkeyAuthentication=no", "-o",
					"PreferredAuthentications=password,keyboard-interactive", "-o",
					"NumberOfPasswordPrompts=0" };
		for (size_t i = 0; i < ARRAY_SIZE(probe); i++)
			strv_push(&v, &n, xstrdup(probe[i]));
	} else {
		strv_push(&v, &n, xstrdup(mode == BT_SSH_VERBOSE ? "-v" : "-oLogLevel=ERROR"));
		strv_push(&v, &n, xstrdup("-o"));
		strv_push(&v, &n, xstrdup("PreferredAuthentications=publickey"));
		strv_push(&v, &n, xstrdup("-i"));
		strv_push(&v, &n, xstrdup(b->key));
	}
	strv_push(&v, &n, xstrdup("-p"));
	strv_push(&v, &n, xasprintf("%d", b->port));
	strv_push(&v, &n, xasprintf("%s@127.0.0.1", b->user));
	strv_push(&v, &n, xstrdup("--"));
	strv_push(&v, &n, xstrdup(command));
	return v;
}

static int bt_ssh(struct bt *b, const char *command, double timeout, struct bt_result *res, struct af_error **err)
{
	_cleanup_strv_ char **argv = bt_ssh_argv(b, BT_SSH_COMMAND, command);
	return bt_run(b->dir, argv, timeout, res, err);
}

static bool bt_qemu_alive(struct bt *b, int *status)
{
	return waitpid(b->qemu, status, WNOHANG) == 0;
}

static void bt_qemu_gone(struct bt *b, int st)
{
	_cleanup_free_ char *qlog = path_join(b->dir, "qemu.log");
	_cleanup_free_ char *tail = bt_tail(qlog, 3);
	b->qemu = 0;
	_cleanup_free_ char *msg = xasprintf("QEMU exited (status %d) before ssh answered%s%s",
					     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), *tail ? ": " : "",
					     tail);
	boottest_report_add(&b->rep, "ssh login", BOOTTEST_FAILED, msg);
}

/* Whether the metadata service has handed out the key. */
static bool bt_key_served(const struct bt *b)
{
	_cleanup_free_ char *path = path_join(b->dir, "imds.log");
	_cleanup_free_ char *log = read_file(path, NULL, NULL);
	return log && strstr(log, "/public-keys/0/openssh-key 200 ");
}

/* Once the guest has fetched the key, refusing it this long means it will
 * not accept it: no such user, or the key went elsewhere. */
#define BT_DENIED_GRACE 60.0

/* The console log as boot-test judges it: QEMU's serial log, or what the
 * test hook (BOOTTEST_TEST_CONSOLE_ENV, test-only) makes of it once the
 * guest printed its keys: nothing (drop), or the test's own client key
 * printed as the host key (forge). */
static char *bt_console_text(const struct bt *b)
{
	_cleanup_free_ char *path = path_join(b->dir, "console.log");
	char *text = read_file(path, NULL, NULL);
	const char *hook = getenv(BOOTTEST_TEST_CONSOLE_ENV);
	if (!text)
		return xstrdup("");
	if (!hook || (strcmp(hook, "forge") && strcmp(hook, "drop")))
		return text;
	_cleanup_free_ char *real = text;
	struct boottest_hostkeys k = { 0 };
	int printed = boottest_console_hostkeys(real, &k, NULL);
	boottest_hostkeys_release(&k);
	_cleanup_free_ char *pub_path = xasprintf("%s.pub", b->key);
	_cleanup_free_ char *pub = read_file(pub_path, NULL, NULL);
	char *blob = pub ? strchr(pub, ' ') : NULL;
	if (strcmp(hook, "forge") || printed != 1 || !blob)
		return xstrdup("");
	blob++;
	blob[strcspn(blob, " \n")] = '\0';
	_cleanup_free_ char *fp = boottest_key_fingerprint("ssh-ed25519", blob);
	return xasprintf(BT_FP_BEGIN "\n256 %s forged (ED25519)\n" BT_FP_END "\n"
			 BT_KEYS_BEGIN "\nssh-ed25519 %s forged\n" BT_KEYS_END "\n",
			 fp ? fp : "", blob);
}

/* "ssh-ed25519 SHA256:..., ssh-rsa SHA256:..." */
static char *bt_pinned_list(const struct bt *b)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < b->hostkeys.n; i++) {
		const struct boottest_hostkey *k = &b->hostkeys.keys[i];
		strbuf_addf(&sb, "%s%s %s", i ? ", " : "", k->type, k->fingerprint);
	}
	return strbuf_detach(&sb);
}

/* Once the guest printed its host keys on the console, writes them to
 * known_hosts: from then on ssh trusts those and no other.  1 pinned, 0
 * not printed yet, -1 + err when what it printed cannot be trusted. */
static int bt_pin_host_keys(struct bt *b, struct af_error **err)
{
	if (b->hostkeys.n)
		return 1;
	_cleanup_free_ char *console = bt_console_text(b);
	struct boottest_hostkeys k = { 0 };
	int rc = boottest_console_hostkeys(console, &k, err);
	if (rc <= 0)
		return rc;
	_cleanup_free_ char *kh = boottest_known_hosts(&k, BT_HOST_ALIAS);
	if (write_file_atomic(b->known_hosts, kh, strlen(kh), 0600, err) < 0) {
		boottest_hostkeys_release(&k);
		return -1;
	}
	b->hostkeys = k;
	b->hostkey_algs = boottest_hostkey_algorithms(&k);
	_cleanup_free_ char *list = bt_pinned_list(b);
	log_info("the guest printed its host keys on the console: %s", list);
	if (k.rejected)
		log_warn("%zu more key(s) on the console match no printed fingerprint: not trusted",
			 k.rejected);
	return 1;
}

/* Why ssh refused the host key, when it did: the guest's sshd sent a key
 * (or offered only key types) other than those it printed.  NULL if ssh
 * did not get that far. */
static char *bt_host_key_refusal(const struct bt *b, const char *out)
{
	static const char no_match[] = "no matching host key type found. Their offer: ";
	const char *offer = strstr(out, no_match);
	if (!strstr(out, "Host key verification failed") && !offer)
		return NULL;
	if (!b->hostkeys.n)
		return xstrdup("");
	_cleanup_free_ char *printed = bt_pinned_list(b);
	if (offer) {
		_cleanup_free_ char *types = bt_first_line(offer + strlen(no_match));
		return xasprintf("host key mismatch: the guest's sshd offers %s, none of the key "
				 "types its console printed (%s): login refused", types, printed);
	}
	const char *sent = strstr(out, "The fingerprint for the ");
	const char *t = sent ? sent + strlen("The fingerprint for the ") : NULL;
	_cleanup_free_ char *type = t ? xstrndup(t, strcspn(t, " ")) : NULL;
	_cleanup_free_ char *fp = sent ? bt_line_fingerprint(sent) : NULL;
	return xasprintf("host key mismatch: the guest's sshd sent %s %s, its console printed %s: "
			 "login refused", type ? type : "a key",
			 fp ? fp : "(fingerprint not shown)", printed);
}

/* After sshd answers, the keys must already be on the console:
 * prep-instance prints them before sshd starts. */
#define BT_CONSOLE_GRACE 20.0

/* The ssh login failed on the host key.  1 when that decides the check
 * (a failed check added), 0 to try again. */
static int bt_host_key_failed(struct bt *b, char *refusal, double *unpinned_since, char **last)
{
	const char *msg = refusal;
	_cleanup_free_ char *console = NULL;
	if (!*refusal) {
		/* Nothing pinned yet: sshd is up, the keys are not printed. */
		if (*unpinned_since == 0)
			*unpinned_since = now_monotonic();
		free(*last);
		*last = xstrdup("sshd answers, but no host keys on the guest's console yet");
		if (now_monotonic() - *unpinned_since < BT_CONSOLE_GRACE)
			return 0;
		console = bt_console_text(b);
		if (strstr(console, BT_FP_BEGIN))
			msg = "the guest printed host key fingerprints but not its public keys ("
			      BT_KEYS_BEGIN ") on its console: boot-test pins the printed keys";
		else
			msg = "the guest printed no host key fingerprints on its console; "
			      "was the image built with ssh: {prep_instance: true}?";
	}
	boottest_report_add(&b->rep, "ssh login", BOOTTEST_FAILED, msg);
	return 1;
}

/* Waits for an ssh login with the test key.  0 logged in, 1 not within
 * the time (a failed check added), -1 interrupted or error. */
static int bt_wait_ssh(struct bt *b, struct af_error **err)
{
	double deadline = b->qemu_start + b->timeout, denied_since = 0, unpinned_since = 0;
	_cleanup_free_ char *last = xstrdup("no answer");
	int st;
	if (bt_forwarded_port(b, err) < 0) {
		if (bt_interrupted || bt_qemu_alive(b, &st))
			return -1;
		af_error_clear(err);
		bt_qemu_gone(b, st);
		return 1;
	}
	log_info("waiting for ssh on 127.0.0.1:%d (up to %ds)", b->port, b->timeout);
	while (now_monotonic() < deadline) {
		if (!bt_qemu_alive(b, &st)) {
			bt_qemu_gone(b, st);
			return 1;
		}
		_cleanup_error_ struct af_error *kerr = NULL;
		if (bt_pin_host_keys(b, &kerr) < 0) {
			const char *why = af_error_msg(kerr);
			boottest_report_add(&b->rep, "ssh login", BOOTTEST_FAILED, why);
			return 1;
		}
		struct bt_result res;
		double left = deadline - now_monotonic();
		if (bt_ssh(b, "true", left < 30 ? left + 1 : 30, &res, err) < 0)
			return -1;
		if (res.status == 0) {
			free(res.output);
			b->rep.boot_seconds = now_monotonic() - b->qemu_start;
			_cleanup_free_ char *d = xasprintf(
				"%.1fs after QEMU started, host key pinned from the console",
				b->rep.boot_seconds);
			boottest_report_add(&b->rep, "ssh login", BOOTTEST_OK, d);
			return 0;
		}
		_cleanup_free_ char *refusal = bt_host_key_refusal(b, res.output);
		free(last);
		char *o = res.output;
		o[strcspn(o, "\r\n")] = '\0';
		last = *o ? o : (free(o), xstrdup(res.timed_out ? "ssh timed out" : "ssh failed"));
		if (str_has_suffix(last, "."))
			last[strlen(last) - 1] = '\0';
		if (refusal && bt_host_key_failed(b, refusal, &unpinned_since, &last))
			return 1;
		if (!strstr(last, "Permission denied"))
			denied_since = 0;
		else if (denied_since == 0 && bt_key_served(b))
			denied_since = now_monotonic();
		else if (denied_since > 0 && now_monotonic() - denied_since > BT_DENIED_GRACE) {
			_cleanup_free_ char *msg = xasprintf(
				"the guest fetched the key from the metadata service but refuses it (no user "
				"'%s', or the key was not installed for it): %s", b->user, last);
			boottest_report_add(&b->rep, "ssh login", BOOTTEST_FAILED, msg);
			return 1;
		}
		bt_sleep(2);
		if (bt_interrupted)
			return af_error_set(err, 0, "interrupted by signal %d", (int)bt_interrupted);
	}
	_cleanup_free_ char *msg = xasprintf("no login within %ds (last: %s)", b->timeout, last);
	boottest_report_add(&b->rep, "ssh login", BOOTTEST_FAILED, msg);
	return 1;
}

/* One check: a command over ssh and a judgement of its output. */
static int bt_check_cmd(struct bt *b, const char *name, const char *command, double timeout,
			bool (*judge)(const struct bt *b, const struct bt_result *res, char **detail),
			struct af_error **err)
{
	struct bt_result res;
	if (bt_ssh(b, command, timeout, &res, err) < 0)
		return -1;
	char *detail = NULL;
	bool ok = !res.timed_out && judge(b, &res, &detail);
	if (res.timed_out) {
		free(detail);
		detail = xasprintf("timed out after %.0fs", timeout);
	}
	boottest_report_add(&b->rep, name, ok ? BOOTTEST_OK : BOOTTEST_FAILED, detail);
	free(detail);
	free(res.output);
	return 0;
}

static bool bt_judge_whoami(const struct bt *b, const struct bt_result *res, char **detail)
{
	*detail = bt_first_line(res->output);
	return res->status == 0 && !strcmp(*detail, b->user);
}

static bool bt_judge_sudo(const struct bt *b, const struct bt_result *res, char **detail)
{
	*detail = res->status == 0 ? xstrdup("passwordless") : bt_first_line(res->output);
	return res->status == 0;
}

/* "state=running\nfailed=a.service b.service \n" */
static bool bt_judge_units(const struct bt *b, const struct bt_result *res, char **detail)
{
	const char *state = strstr(res->output, "state=");
	const char *failed = strstr(res->output, "failed=");
	_cleanup_free_ char *st = state ? bt_first_line(state + 6) : NULL;
	if (!st || !*st || !failed) {
		*detail = xstrdup("cannot ask systemd: systemctl failed, also through sudo -n");
		return false;
	}
	_cleanup_free_ char *f = bt_first_line(failed + 7);
	char *t = f + strlen(f);
	while (t > f && t[-1] == ' ')
		*--t = '\0';
	*detail = *f ? xasprintf("failed: %s (system %s)", f, st) : xasprintf("none (system %s)", st);
	return *f == '\0';
}

static bool bt_judge_hostkeys(const struct bt *b, const struct bt_result *res, char **detail)
{
	_cleanup_free_ char *line = bt_first_line(res->output);
	if (b->image_keys && *b->image_keys) {
		*detail = xasprintf("the image ships host keys (%s): remove them (sanitize)", b->image_keys);
		return false;
	}
	if (res->status != 0 || !*line) {
		*detail = xasprintf("no /etc/ssh/ssh_host_*_key in the booted system%s%s", *line ? ": " : "", line);
		return false;
	}
	char *t = line + strlen(line);
	while (t > line && t[-1] == ' ')
		*--t = '\0';
	*detail = xasprintf("created at boot: %s%s", line, b->image_keys ? "" : " (image not inspected)");
	return true;
}

/* Without dbus (minbase images) only root reaches systemd, through its
 * private socket: then ask through sudo. */
#define BT_UNITS_CMD                                                                                  \
	"if systemctl show -p Version >/dev/null 2>&1; then S=; else S='sudo -n'; fi; "              \
	"s=$(timeout 120 $S systemctl is-system-running --wait 2>/dev/null); "                        \
	"f=$($S systemctl list-units --state=failed --no-legend --plain --no-pager 2>/dev/null | "    \
	"cut -d' ' -f1 | tr '\\n' ' '); echo state=$s; echo failed=$f"
#define BT_HOSTKEYS_CMD                                                                              \
	"for f in /etc/ssh/ssh_host_*_key; do [ -f \"$f\" ] && printf '%s ' \"${f#/etc/ssh/ssh_host_}\"; " \
	"done | sed 's/_key//g'; echo"

/* Password and keyboard-interactive logins must be refused: ask the server
 * what it offers after the "none" attempt. */
static int bt_check_password(struct bt *b, struct af_error **err)
{
	_cleanup_strv_ char **argv = bt_ssh_argv(b, BT_SSH_PASSWORD_PROBE, "true");
	struct bt_result res;
	if (bt_run(b->dir, argv, 30, &res, err) < 0)
		return -1;
	_cleanup_free_ char *out = res.output;
	const char *m = strstr(out, "Authentications that can continue: ");
	_cleanup_free_ char *methods = m ? bt_first_line(m + strlen("Authentications that can continue: ")) : NULL;
	bool offered = methods && (strstr(methods, "password") || strstr(methods, "keyboard-interactive"));
	bool ok = res.status != 0 && !offered && !res.timed_out;
	_cleanup_free_ char *detail =
		res.status == 0 ? xstrdup("a login without the key succeeded")
		: offered	? xasprintf("the server offers %s", methods)
		: methods	? xasprintf("refused (server offers: %s)", methods)
				: xstrdup("refused");
	boottest_report_add(&b->rep, "password login", ok ? BOOTTEST_OK : BOOTTEST_FAILED, detail);
	return 0;
}

/* The host key ssh saw, as `ssh -v` names it ("Server host key:
 * ssh-ed25519 SHA256:..."), is one the console printed.  known_hosts made
 * ssh check the key itself; this shows which one and that no other path
 * (a known_hosts elsewhere, a certificate) let it in. */
static int bt_check_seen_key(struct bt *b, struct af_error **err)
{
	_cleanup_strv_ char **argv = bt_ssh_argv(b, BT_SSH_VERBOSE, "true");
	struct bt_result res;
	if (bt_run(b->dir, argv, 30, &res, err) < 0)
		return -1;
	_cleanup_free_ char *out = res.output;
	const char *m = strstr(out, "Server host key: ");
	_cleanup_free_ char *seen = m ? bt_first_line(m + strlen("Server host key: ")) : NULL;
	_cleanup_free_ char *fp = seen ? bt_line_fingerprint(seen) : NULL;
	const struct boottest_hostkey *k = NULL;
	for (size_t i = 0; fp && i < b->hostkeys.n && !k; i++)
		if (!strcmp(b->hostkeys.keys[i].fingerprint, fp))
			k = &b->hostkeys.keys[i];
	_cleanup_free_ char *printed = bt_pinned_list(b);
	bool ok = k && res.status == 0 && !res.timed_out;
	_cleanup_free_ char *detail =
		ok ? xasprintf("%s %s, as printed on the console", k->type, k->fingerprint)
		: !seen ? xasprintf("ssh -v named no server host key (exit %d)", res.status)
		: !k ? xasprintf("ssh saw %s, the console printed %s", seen, printed)
		     : xasprintf("%s, but the login failed (exit %d)", seen, res.status);
	enum boottest_status st = ok ? BOOTTEST_OK : BOOTTEST_FAILED;
	boottest_report_add(&b->rep, "console host key", st, detail);
	return 0;
}

/* The key the guest accepted came from the metadata service, with a token
 * unless the responder refused tokens. */
static void bt_check_imds(struct bt *b)
{
	_cleanup_free_ char *path = path_join(b->dir, "imds.log");
	_cleanup_free_ char *log = read_file(path, NULL, NULL);
	const char *get = "GET /latest/meta-data/public-keys/0/openssh-key 200 ";
	bool v2 = false, v1 = false;
	int puts = 0;
	for (const char *p = log; p && (p = strstr(p, get)); p += strlen(get)) {
		v2 |= str_has_prefix(p + strlen(get), "v2");
		v1 |= str_has_prefix(p + strlen(get), "v1");
	}
	for (const char *p = log; p && (p = strstr(p, "PUT /latest/api/token 200")); p++)
		puts++;
	bool ok = v2 || (v1 && b->imds_mode == IMDS_V1_ONLY);
	_cleanup_free_ char *detail =
		v2 ? xasprintf("fetched with an IMDSv2 token (%d token request%s)", puts, puts == 1 ? "" : "s")
		: v1 ? xstrdup(b->imds_mode == IMDS_V1_ONLY ? "fetched with IMDSv1 (tokens refused)"
						: "fetched without a token (IMDSv1 only): fails where IMDSv2 is required")
		     : xstrdup("public-keys/0/openssh-key never fetched");
	boottest_report_add(&b->rep, "metadata key", ok ? BOOTTEST_OK : BOOTTEST_FAILED, detail);
}

static int bt_checks(struct bt *b, struct af_error **err)
{
	int rc = bt_wait_ssh(b, err);
	static const char *const later[] = { "console host key", "whoami", "sudo", "failed units",
					     "host keys", "password login", "metadata key" };
	if (rc != 0) {
		for (size_t i = 0; rc > 0 && i < ARRAY_SIZE(later); i++)
			boottest_report_add(&b->rep, later[i], BOOTTEST_SKIPPED, "no login");
		return rc < 0 ? -1 : 0;
	}
	if (bt_check_seen_key(b, err) < 0 ||
	    bt_check_cmd(b, "whoami", "whoami", 30, bt_judge_whoami, err) < 0 ||
	    bt_check_cmd(b, "sudo", "sudo -n true", 30, bt_judge_sudo, err) < 0 ||
	    bt_check_cmd(b, "failed units", BT_UNITS_CMD, 150, bt_judge_units, err) < 0 ||
	    bt_check_cmd(b, "host keys", BT_HOSTKEYS_CMD, 30, bt_judge_hostkeys, err) < 0 ||
	    bt_check_password(b, err) < 0)
		return -1;
	bt_check_imds(b);
	return 0;
}

/* ============================== cleanup =============================== */

static const char *const bt_kept_files[] = { "console.log", "qemu.log", "imds.log" };

/* nftw has no user pointer: whether the logs stay. */
static bool bt_keep;

static int bt_rm_unkept(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (ftw->level == 0)
		return 0;
	if (bt_keep && ftw->level == 1)
		for (size_t i = 0; i < ARRAY_SIZE(bt_kept_files); i++)
			if (!strcmp(path + ftw->base, bt_kept_files[i]))
				return 0;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

void bt_remove_dir(struct bt *b, bool keep_logs)
{
	if (!b->dir)
		return;
	bt_keep = keep_logs;
	if (nftw(b->dir, bt_rm_unkept, 16, FTW_DEPTH | FTW_PHYS) < 0)
		log_warn("cannot remove everything in '%s': %s", b->dir, strerror(errno));
	if (keep_logs)
		b->rep.kept_dir = xstrdup(b->dir);
	else if (rmdir(b->dir) < 0)
		log_warn("cannot remove '%s': %s", b->dir, strerror(errno));
}

void bt_release(struct bt *b)
{
	if (b->qmp >= 0)
		close(b->qmp);
	free(b->dir);
	free(b->key);
	free(b->known_hosts);
	free(b->hostkey_algs);
	boottest_hostkeys_release(&b->hostkeys);
	bt_pvboot_release(&b->pv);
	free(b->ovmf_code);
	free(b->ovmf_vars);
	free(b->image_keys);
	boottest_report_release(&b->rep);
}

/* ============================== the run =============================== */

static int bt_make_dir(struct bt *b, struct af_error **err)
{
	const char *tmp = getenv("TMPDIR");
	_cleanup_free_ char *tmpl = xasprintf("%s/amiforge-boot-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpl))
		return af_error_set(err, errno, "cannot create a temporary directory in '%s'", tmp ? tmp : "/tmp");
	b->dir = steal_pointer(&tmpl);
	return 0;
}

int bt_execute(struct bt *b, struct af_error **err)
{
	if (access(b->image, R_OK) < 0)
		return af_error_set(err, errno, "cannot read image '%s'", b->image);
	if (bt_make_dir(b, err) < 0 || bt_make_keys(b, err) < 0 || bt_inspect(b, err) < 0)
		return -1;
	const char *hook = getenv(BOOTTEST_TEST_CONSOLE_ENV);
	if (hook && *hook)
		log_warn("%s=%s: a test hook rewrites what the guest prints on its console "
			 "(tests only)", BOOTTEST_TEST_CONSOLE_ENV, hook);
	if (b->pvgrub)
		log_info("booting %s: %s", b->pv.where, b->pv.cmdline);
	if (bt_start_qemu(b, err) < 0)
		return -1;
	return bt_checks(b, err);
}
