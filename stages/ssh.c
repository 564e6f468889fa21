/* SPDX-License-Identifier: Apache-2.0 */
/* ssh: openssh-server (installed if the image lacks it), an sshd_config.d
 * drop-in (no passwords, no root login unless the recipe says otherwise),
 * no host keys in the image (every instance must have its own), and with
 * prep_instance: /etc/prep-instance + prep-instance.service, which at boot
 * generates the host keys and installs the EC2 instance's public key for the
 * admin user (see the script below).  The script uses curl, which this stage
 * installs when prep_instance is set and the image lacks it. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/apt.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define SSH_DROPIN "/etc/ssh/sshd_config.d/10-amiforge.conf"
#define SSH_PREP_SCRIPT "/etc/prep-instance"
#define SSH_PREP_CONFIG "/etc/default/prep-instance"
#define SSH_PREP_UNIT "/etc/systemd/system/prep-instance.service"
#define SSH_DEFAULT_URL "http://169.254.169.254"

static const char *const ssh_root_login[] = { "no", "prohibit-password", "forced-commands-only", "yes", NULL };

static const struct param_spec ssh_params[] = {
	{ .name = "password_authentication", .type = PT_BOOL,
	  .help = "allow password logins (PasswordAuthentication, KbdInteractiveAuthentication)", .defval = "false" },
	{ .name = "permit_root_login", .type = PT_ENUM, .choices = ssh_root_login, .help = "PermitRootLogin",
	  .defval = "no" },
	{ .name = "options", .type = PT_MAP, .help = "more sshd_config settings (Name: value); they win over the above" },
	{ .name = "prep_instance", .type = PT_BOOL,
	  .help = "install /etc/prep-instance and its unit: host keys and the EC2 key pair at boot (installs curl)",
	  .defval = "false" },
	{ .name = "user", .type = PT_STRING, .help = "the user prep-instance installs the key for",
	  .defval = "the user stage's name, else admin" },
	{ .name = "metadata_url", .type = PT_STRING, .help = "base URL of the instance metadata service",
	  .defval = SSH_DEFAULT_URL },
	{ .name = "metadata_wait", .type = PT_DURATION,
	  .help = "how long prep-instance retries the metadata service at boot", .defval = "120s" },
	{ .name = NULL },
};

/* The prep-instance script (POSIX sh: dash runs it). */
static const char ssh_prep_script[] =
	"#!/bin/sh\n"
	"# /etc/prep-instance: installed by amiforge (ssh stage) and run at every boot\n"
	"# by prep-instance.service, before sshd.  It generates the ssh host keys the\n"
	"# image was built without and prints their fingerprints and public keys on\n"
	"# the console as cloud-init does (what `aws ec2 get-console-output` and\n"
	"# `amiforge boot-test` check the key of a first ssh login against), then\n"
	"# fetches the instance's public key from the EC2 instance metadata service\n"
	"# (an IMDSv2 token first, IMDSv1 when the token is refused) and adds it to\n"
	"# the admin user's authorized_keys once.\n"
	"# Settings come from /etc/default/prep-instance; the environment overrides\n"
	"# them: PREP_USER, IMDS_URL, IMDS_MAX_WAIT (seconds).\n"
	"set -u\n"
	"umask 077\n"
	"\n"
	"env_url=${IMDS_URL-}\n"
	"env_user=${PREP_USER-}\n"
	"env_wait=${IMDS_MAX_WAIT-}\n"
	"config=${PREP_INSTANCE_CONFIG:-/etc/default/prep-instance}\n"
	"if [ -r \"$config\" ]; then\n"
	"	. \"$config\"\n"
	"fi\n"
	"IMDS_URL=${env_url:-${IMDS_URL:-http://169.254.169.254}}\n"
	"IMDS_URL=${IMDS_URL%/}\n"
	"PREP_USER=${env_user:-${PREP_USER:-admin}}\n"
	"IMDS_MAX_WAIT=${env_wait:-${IMDS_MAX_WAIT:-120}}\n"
	"\n"
	"log() {\n"
	"	echo \"prep-instance: $*\" >&2\n"
	"	# Under systemd, stderr already goes to the journal.\n"
	"	if [ -z \"${INVOCATION_ID-}\" ] && command -v logger >/dev/null 2>&1; then\n"
	"		logger -t prep-instance -- \"$*\" 2>/dev/null || true\n"
	"	fi\n"
	"}\n"
	"\n"
	"tmp=$(mktemp -d /tmp/prep-instance.XXXXXX) || {\n"
	"	log \"cannot create a temporary directory in /tmp\"\n"
	"	exit 1\n"
	"}\n"
	"trap 'rm -rf \"$tmp\"' EXIT\n"
	"\n"
	"host_keys() {\n"
	"	before=$(ls /etc/ssh/ssh_host_*_key 2>/dev/null | wc -l)\n"
	"	if ! ssh-keygen -A >/dev/null; then\n"
	"		log \"ssh-keygen -A failed: sshd has no host keys\"\n"
	"		return 1\n"
	"	fi\n"
	"	after=$(ls /etc/ssh/ssh_host_*_key 2>/dev/null | wc -l)\n"
	"	if [ \"$after\" -gt \"$before\" ]; then\n"
	"		log \"generated $((after - before)) ssh host key(s)\"\n"
	"	fi\n"
	"}\n"
	"\n"
	"# The host keys between the markers EC2 users and tools look for in the\n"
	"# console output, in one write so that other console output does not cut\n"
	"# into it.  At boot (under systemd) to /dev/console, where the kernel's\n"
	"# console= points: the serial port (ttyS0, or hvc0 under Xen PV) that the\n"
	"# console output captures; run by hand, to stdout.\n"
	"console_keys() {\n"
	"	fps= keys=\n"
	"	for pub in /etc/ssh/ssh_host_*_key.pub; do\n"
	"		[ -f \"$pub\" ] || continue\n"
	"		fp=$(ssh-keygen -l -f \"$pub\") && key=$(cat \"$pub\") || continue\n"
	"		fps=\"$fps$fp\n"
	"\"\n"
	"		keys=\"$keys$key\n"
	"\"\n"
	"	done\n"
	"	if [ -z \"$fps\" ]; then\n"
	"		log \"no ssh host key to print on the console\"\n"
	"		return 1\n"
	"	fi\n"
	"	line=#############################################################\n"
	"	text=\"$line\n"
	"-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
	"$fps-----END SSH HOST KEY FINGERPRINTS-----\n"
	"$line\n"
	"-----BEGIN SSH HOST KEY KEYS-----\n"
	"$keys-----END SSH HOST KEY KEYS-----\"\n"
	"	if [ -n \"${INVOCATION_ID-}\" ] &&\n"
	"		{ printf '%s\\n' \"$text\" >/dev/console; } 2>/dev/null; then\n"
	"		return 0\n"
	"	fi\n"
	"	printf '%s\\n' \"$text\"\n"
	"}\n"
	"\n"
	"# http METHOD PATH OUTFILE [HEADER]: prints the HTTP status, 000 when the\n"
	"# metadata service did not answer.\n"
	"http() {\n"
	"	if [ $# -ge 4 ]; then\n"
	"		code=$(curl -s -o \"$3\" -w '%{http_code}' -X \"$1\" --connect-timeout 2 --max-time 5 \\\n"
	"			-H \"$4\" \"$IMDS_URL$2\" 2>/dev/null)\n"
	"	else\n"
	"		code=$(curl -s -o \"$3\" -w '%{http_code}' -X \"$1\" --connect-timeout 2 --max-time 5 \\\n"
	"			\"$IMDS_URL$2\" 2>/dev/null)\n"
	"	fi\n"
	"	echo \"${code:-000}\"\n"
	"}\n"
	"\n"
	"describe() {\n"
	"	if [ \"$1\" = 000 ]; then echo \"no answer\"; else echo \"HTTP $1\"; fi\n"
	"}\n"
	"\n"
	"# One attempt.  0: the key is in $tmp/key; 2: the instance has no key;\n"
	"# 1: try again ($last says why).\n"
	"v1_logged=\n"
	"fetch() {\n"
	"	token=\n"
	"	code=$(http PUT /latest/api/token \"$tmp/token\" \"X-aws-ec2-metadata-token-ttl-seconds: 300\")\n"
	"	case $code in\n"
	"	200) token=$(cat \"$tmp/token\") ;;\n"
	"	403 | 404 | 405)\n"
	"		if [ -z \"$v1_logged\" ]; then\n"
	"			log \"IMDSv2 token refused ($(describe \"$code\")): falling back to IMDSv1\"\n"
	"			v1_logged=1\n"
	"		fi\n"
	"		;;\n"
	"	*)\n"
	"		last=\"token request to $IMDS_URL: $(describe \"$code\")\"\n"
	"		return 1\n"
	"		;;\n"
	"	esac\n"
	"	if [ -n \"$token\" ]; then\n"
	"		code=$(http GET /latest/meta-data/public-keys/0/openssh-key \"$tmp/key\" \"X-aws-ec2-metadata-token: $token\")\n"
	"	else\n"
	"		code=$(http GET /latest/meta-data/public-keys/0/openssh-key \"$tmp/key\")\n"
	"	fi\n"
	"	case $code in\n"
	"	200) return 0 ;;\n"
	"	404) return 2 ;;\n"
	"	esac\n"
	"	last=\"public key request to $IMDS_URL: $(describe \"$code\")\"\n"
	"	return 1\n"
	"}\n"
	"\n"
	"# Retries with exponential backoff (1, 2, 4, 8, 8... s) for IMDS_MAX_WAIT\n"
	"# seconds at most.\n"
	"fetch_with_retries() {\n"
	"	deadline=$(($(date +%s) + IMDS_MAX_WAIT))\n"
	"	delay=1\n"
	"	while :; do\n"
	"		fetch\n"
	"		rc=$?\n"
	"		[ $rc -ne 1 ] && return $rc\n"
	"		now=$(date +%s)\n"
	"		if [ \"$now\" -ge \"$deadline\" ]; then\n"
	"			log \"gave up after ${IMDS_MAX_WAIT}s: the instance metadata service gave no key ($last); no key installed\"\n"
	"			return 1\n"
	"		fi\n"
	"		left=$((deadline - now))\n"
	"		[ \"$delay\" -gt \"$left\" ] && delay=$left\n"
	"		sleep \"$delay\"\n"
	"		[ \"$delay\" -lt 8 ] && delay=$((delay * 2))\n"
	"	done\n"
	"}\n"
	"\n"
	"install_key() {\n"
	"	key=$(tr -d '\\r' <\"$tmp/key\" | sed -n 1p)\n"
	"	case $key in\n"
	"	ssh-* | ecdsa-* | sk-*) ;;\n"
	"	*)\n"
	"		log \"the metadata service returned something that is not an OpenSSH public key; not installed\"\n"
	"		return 1\n"
	"		;;\n"
	"	esac\n"
	"	if ! entry=$(getent passwd \"$PREP_USER\"); then\n"
	"		log \"user $PREP_USER does not exist; no key installed\"\n"
	"		return 1\n"
	"	fi\n"
	"	home=$(echo \"$entry\" | cut -d: -f6)\n"
	"	group=$(id -gn \"$PREP_USER\") || return 1\n"
	"	mkdir -p \"$home/.ssh\" || return 1\n"
	"	chown \"$PREP_USER:$group\" \"$home/.ssh\" && chmod 0700 \"$home/.ssh\" || return 1\n"
	"	ak=$home/.ssh/authorized_keys\n"
	"	if [ -f \"$ak\" ] && grep -qxF -- \"$key\" \"$ak\"; then\n"
	"		log \"the instance's key is already in $ak\"\n"
	"	else\n"
	"		printf '%s\\n' \"$key\" >>\"$ak\" || return 1\n"
	"		log \"installed the instance's key for $PREP_USER in $ak\"\n"
	"	fi\n"
	"	chown \"$PREP_USER:$group\" \"$ak\" && chmod 0600 \"$ak\"\n"
	"}\n"
	"\n"
	"status=0\n"
	"host_keys || status=1\n"
	"console_keys || status=1\n"
	"fetch_with_retries\n"
	"rc=$?\n"
	"if [ $rc -eq 0 ]; then\n"
	"	install_key || status=1\n"
	"elif [ $rc -eq 2 ]; then\n"
	"	log \"the instance has no public key (HTTP 404 for public-keys/0/openssh-key): nothing to install\"\n"
	"else\n"
	"	status=1\n"
	"fi\n"
	"exit $status\n"
	;

/* Values end up in a file both sh and systemd's EnvironmentFile read:
 * nothing either would interpret. */
static bool ssh_plain_value(const char *v)
{
	if (!*v)
		return false;
	for (const char *p = v; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(":/.-_[]%@", *p))
			return false;
	return true;
}

static int ssh_check(const json_t *params, struct af_error **err)
{
	const char *url = params_str(params, "metadata_url", SSH_DEFAULT_URL);
	const char *user = params_str(params, "user", "admin");
	if ((!str_has_prefix(url, "http://") && !str_has_prefix(url, "https://")) || !ssh_plain_value(url))
		return af_error_set(err, 0, "metadata_url '%s' must be an http:// or https:// URL without spaces or quotes", url);
	if (!ssh_plain_value(user) || strpbrk(user, ":/[]%@"))
		return af_error_set(err, 0, "user '%s' is not a valid user name", user);
	if (params_int(params, "metadata_wait", 120) < 1)
		return af_error_set(err, 0, "metadata_wait must be at least 1s");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)params_get(params, "options"), key, v) {
		for (const char *p = key; *p; p++)
			if (!isalnum((unsigned char)*p))
				return af_error_set(err, 0, "options: '%s' is not an sshd_config keyword", key);
		if (!*key || strpbrk(json_string_value(v), "\n\r") || !*json_string_value(v))
			return af_error_set(err, 0, "options: %s needs a one-line, non-empty value", key);
	}
	return 0;
}

/* ---- generated text (pure, unit-tested) ---- */

static bool ssh_option_given(const json_t *options, const char *name)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)options, key, v)
		if (!strcasecmp(key, name))
			return true;
	return false;
}

/* Debian's sshd_config includes sshd_config.d/ *.conf before its own
 * settings, and sshd keeps the first value it reads: this file wins. */
static char *ssh_render_dropin(const json_t *params)
{
	const json_t *options = params_get(params, "options");
	bool pw = params_bool(params, "password_authentication", false);
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "# written by amiforge (ssh stage)\n");
	if (!ssh_option_given(options, "PasswordAuthentication"))
		strbuf_addf(&sb, "PasswordAuthentication %s\n", pw ? "yes" : "no");
	/* Keyboard-interactive through PAM asks for the same password. */
	if (!pw && !ssh_option_given(options, "KbdInteractiveAuthentication"))
		strbuf_addstr(&sb, "KbdInteractiveAuthentication no\n");
	if (!ssh_option_given(options, "PermitRootLogin"))
		strbuf_addf(&sb, "PermitRootLogin %s\n", params_str(params, "permit_root_login", "no"));
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)options, key, v)
		strbuf_addf(&sb, "%s %s\n", key, json_string_value(v));
	return strbuf_detach(&sb);
}

/* Ordered before sshd so that sshd starts with host keys; after the network
 * so that the metadata service is reachable.  Runs at every boot: the
 * script is idempotent and a stopped-and-started instance may have a new
 * key pair. */
static char *ssh_render_unit(int64_t wait)
{
	return xasprintf("# written by amiforge (ssh stage)\n"
			 "[Unit]\n"
			 "Description=Prepare the instance: ssh host keys and the EC2 key pair\n"
			 "Wants=network-online.target\n"
			 "After=network-online.target\n"
			 "Before=ssh.service ssh.socket\n"
			 "\n"
			 "[Service]\n"
			 "Type=oneshot\n"
			 "RemainAfterExit=yes\n"
			 "EnvironmentFile=-" SSH_PREP_CONFIG "\n"
			 "ExecStart=" SSH_PREP_SCRIPT "\n"
			 "StandardOutput=journal+console\n"
			 "StandardError=journal+console\n"
			 "SyslogIdentifier=prep-instance\n"
			 "TimeoutStartSec=%" PRId64 "\n"
			 "\n"
			 "[Install]\n"
			 "WantedBy=multi-user.target\n",
			 wait + 60);
}

static char *ssh_render_config(const char *user, const char *url, int64_t wait)
{
	return xasprintf("# prep-instance settings, written by amiforge (ssh stage)\n"
			 "PREP_USER=%s\n"
			 "IMDS_URL=%s\n"
			 "IMDS_MAX_WAIT=%" PRId64 "\n",
			 user, url, wait);
}

/* ---- run ---- */

static int ssh_spawn(const struct stage_ctx *ctx, char **argv, struct af_error **err)
{
	struct spawn_opts so = { .argv = argv, .chroot = ctx->root, .out_fd = ctx->log_fd, .in_fd = -1,
				 .deadline = ctx->deadline };
	return spawn_run(&so, err);
}

static int ssh_install_packages(const struct stage_ctx *ctx, bool prep, struct af_error **err)
{
	_cleanup_json_ json_t *want = json_pack("[s]", "openssh-server");
	if (prep)
		json_array_append_new(want, json_string("curl"));
	_cleanup_json_ json_t *missing = apt_missing(ctx->root, want);
	if (!json_array_size(missing))
		return 0;
	struct apt_request req = { .install = missing, .update = true, .no_install_recommends = true };
	if (apt_run(ctx, &req, err) < 0)
		return -1;
	_cleanup_json_ json_t *still = apt_missing(ctx->root, want);
	if (json_array_size(still))
		return af_error_set(err, 0, "'%s' is not installed after apt-get install (see the stage log)",
				    json_string_value(json_array_get(still, 0)));
	return 0;
}

/* sshd -t with a throw-away host key: a broken drop-in fails the build, not
 * the first boot. */
static int ssh_test_config(const struct stage_ctx *ctx, struct af_error **err)
{
	char *argv[] = { "/bin/sh", "-c",
			 "set -e; k=$(mktemp -u /tmp/amiforge-hostkey.XXXXXX); trap 'rm -f \"$k\" \"$k.pub\"' EXIT; "
			 "ssh-keygen -q -t ed25519 -N '' -f \"$k\"; mkdir -p /run/sshd; "
			 "/usr/sbin/sshd -t -f /etc/ssh/sshd_config -h \"$k\"",
			 NULL };
	if (ssh_spawn(ctx, argv, err) < 0)
		return af_error_wrap(err, "sshd -t rejects the configuration (see the stage log); check options:");
	return 0;
}

/* Every instance must make its own host keys: copies would let one
 * instance impersonate all the others. */
static int ssh_remove_host_keys(int rootfd, struct af_error **err)
{
	size_t n = 0;
	if (inroot_unlink_glob(rootfd, "/etc/ssh", "ssh_host_*", &n, err) < 0)
		return -1;
	log_info("removed %zu host key file(s) from /etc/ssh", n);
	return 0;
}

static const char *ssh_user(const struct stage_ctx *ctx)
{
	const char *u = params_str(ctx->params, "user", NULL);
	if (!u)
		u = json_string_value(json_object_get(ctx->facts, "user.name"));
	return u ? u : "admin";
}

static int ssh_write_prep(const struct stage_ctx *ctx, int rootfd, struct af_error **err)
{
	int64_t wait = params_int(ctx->params, "metadata_wait", 120);
	const char *url = params_str(ctx->params, "metadata_url", SSH_DEFAULT_URL);
	_cleanup_free_ char *unit = ssh_render_unit(wait);
	_cleanup_free_ char *config = ssh_render_config(ssh_user(ctx), url, wait);
	if (inroot_write(rootfd, ctx->root, SSH_PREP_SCRIPT, ssh_prep_script, strlen(ssh_prep_script), 0755, 0, 0,
			 err) < 0 ||
	    inroot_write(rootfd, ctx->root, SSH_PREP_CONFIG, config, strlen(config), 0644, 0, 0, err) < 0 ||
	    inroot_write(rootfd, ctx->root, SSH_PREP_UNIT, unit, strlen(unit), 0644, 0, 0, err) < 0)
		return -1;
	char *argv[] = { "systemctl", "enable", "prep-instance.service", NULL };
	if (ssh_spawn(ctx, argv, err) < 0)
		return af_error_hint(err, "prep_instance needs systemd: add systemd-sysv to debootstrap include:");
	log_info("installed " SSH_PREP_SCRIPT " and prep-instance.service for user %s (metadata %s)", ssh_user(ctx), url);
	return 0;
}

static int ssh_run(struct stage_ctx *ctx, struct af_error **err)
{
	bool prep = params_bool(ctx->params, "prep_instance", false);
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	if (ssh_install_packages(ctx, prep, err) < 0)
		return -1;
	_cleanup_free_ char *main_cfg = inroot_read(rootfd, ctx->root, "/etc/ssh/sshd_config", 1u << 20, NULL, err);
	if (!main_cfg)
		return -1;
	if (!strstr(main_cfg, "Include /etc/ssh/sshd_config.d/"))
		log_warn("/etc/ssh/sshd_config does not include sshd_config.d: " SSH_DROPIN " has no effect");
	_cleanup_free_ char *dropin = ssh_render_dropin(ctx->params);
	if (inroot_write(rootfd, ctx->root, SSH_DROPIN, dropin, strlen(dropin), 0644, 0, 0, err) < 0 ||
	    ssh_test_config(ctx, err) < 0 || ssh_remove_host_keys(rootfd, err) < 0)
		return -1;
	if (prep && ssh_write_prep(ctx, rootfd, err) < 0)
		return -1;
	if (!prep)
		log_warn("the image has no ssh host keys and prep_instance is off: sshd will not start until something generates them (ssh-keygen -A)");
	json_object_set_new(ctx->outputs, "ssh.prep_instance", json_boolean(prep));
	json_object_set_new(ctx->outputs, "ssh.user", json_string(ssh_user(ctx)));
	return 0;
}

/* For plan (stage.h). */
static char *ssh_describe(const struct stage_describe *d)
{
	bool prep = params_bool(d->params, "prep_instance", false);
	size_t more = json_object_size(params_get(d->params, "options"));
	const char *user = params_str(d->params, "user", stage_describe_fact(d, "user.name"));
	struct strbuf sb = STRBUF_INIT;
	json_object_set_new(d->known, "ssh.prep_instance", json_boolean(prep));
	stage_describe_know(d, "ssh.user", user);
	strbuf_addf(&sb, "configure sshd: password logins %s, PermitRootLogin %s",
		    params_bool(d->params, "password_authentication", false) ? "on" : "off",
		    params_str(d->params, "permit_root_login", "no"));
	if (more) {
		strbuf_addstr(&sb, ", ");
		stage_describe_count(&sb, more, "more setting");
	}
	if (prep)
		strbuf_addf(&sb, "; at boot prep-instance makes host keys and installs the EC2 key for %s",
			    user ? user : "the user stage's user, else admin");
	return strbuf_detach(&sb);
}

static const char *const ssh_provides[] = { "ssh.user", "ssh.prep_instance", NULL };

const struct stage_type stage_ssh = {
	.name = "ssh",
	.summary = "openssh-server without passwords or host keys; prep_instance: host keys and the EC2 key at boot",
	.params = ssh_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT | STAGE_NETWORK,
	.provides = ssh_provides,
	.default_timeout = 1200,
	.check = ssh_check,
	.describe = ssh_describe,
	.run = ssh_run,
};
