#!/bin/bash
# The system stages on one shared debootstrap (recipes/sys-base.yaml): the
# first build checks what network, user, ssh, packages, files and sanitize
# leave in the image; later builds change only late stages with --set
# (resumed from a checkpoint): sanitize finds planted secrets and honours
# allow:, files refuses destinations escaping the image; prep-instance runs
# in the image's chroot against a local metadata service (tests/servers/imds.py).
. "$(dirname "$0")/lib.sh"
TESTS="sys-build interfaces hostname-hosts sudoers user-locked sshd-dropin no-host-keys prep-installed
files-copied files-template sanitized sanitize-finds-both sanitize-no-secret-in-output sanitize-allow
files-dotdot files-symlink-escape files-absolute-symlink prep-v2 prep-host-keys prep-modes prep-no-dup
prep-v1 prep-no-key prep-down sys-no-leaks"
require_root $TESTS
require_loop $TESTS
require_network $TESTS

R=$RECIPES/sys-base.yaml
S=$WORK/sys
IMG=$S/disk.img
build() { "$AMIFORGE" build "$R" --state "$S" "$@" >"$WORK/out" 2>&1; }

if build; then ok sys-build; else cat "$WORK/out"; not_ok sys-build; exit 1; fi

check interfaces with_image "$IMG" 0 bash -c 'grep -qx "allow-hotplug eth0" "$MNT/etc/network/interfaces" &&
	grep -qx "iface eth0 inet dhcp" "$MNT/etc/network/interfaces" && grep -qx "iface lo inet loopback" "$MNT/etc/network/interfaces"'
check hostname-hosts with_image "$IMG" 0 bash -c '[ "$(cat "$MNT/etc/hostname")" = sys-test ] &&
	grep -qP "^127\.0\.1\.1\tsys-test\.example\.org\tsys-test$" "$MNT/etc/hosts"'
check sudoers with_image "$IMG" 0 bash -c 'f=$MNT/etc/sudoers.d/90-amiforge-admin;
	[ "$(stat -c "%a %U %G" "$f")" = "440 root root" ] && grep -qx "admin ALL=(ALL:ALL) NOPASSWD: ALL" "$f"'
check user-locked with_image "$IMG" 0 bash -c 'grep -q "^admin:!" "$MNT/etc/shadow" &&
	grep -q "^admin:.*:/home/admin:/bin/bash$" "$MNT/etc/passwd" && grep -q "^adm:.*admin" "$MNT/etc/group" &&
	grep -q "^amiforge-test:.*admin" "$MNT/etc/group"'
check sshd-dropin with_image "$IMG" 0 bash -c 'f=$MNT/etc/ssh/sshd_config.d/10-amiforge.conf;
	grep -qx "PasswordAuthentication no" "$f" && grep -qx "PermitRootLogin no" "$f" && [ -x "$MNT/usr/sbin/sshd" ]'
check no-host-keys with_image "$IMG" 0 bash -c '! ls "$MNT"/etc/ssh/ssh_host_* 2>/dev/null'
check prep-installed with_image "$IMG" 0 bash -c '[ "$(stat -c %a "$MNT/etc/prep-instance")" = 755 ] &&
	[ -L "$MNT/etc/systemd/system/multi-user.target.wants/prep-instance.service" ] &&
	grep -qx "Before=ssh.service ssh.socket" "$MNT/etc/systemd/system/prep-instance.service" &&
	grep -qx "PREP_USER=admin" "$MNT/etc/default/prep-instance" && [ -x "$MNT/usr/bin/curl" ]'
check files-copied with_image "$IMG" 0 bash -c 'cd "$MNT/opt/tree" && [ "$(stat -c "%a %u %g" sub/run.sh)" = "755 1000 4" ] &&
	[ "$(readlink link)" = a.txt ] && [ "$(cat a.txt)" = hello ] && [ "$(stat -c "%a %u" "$MNT/etc/amiforge/motd")" = "600 0" ]'
check files-template with_image "$IMG" 0 bash -c 'grep -qx "Welcome to sys-test, built [0-9]\{8\}\." "$MNT/etc/motd" &&
	grep -qxF "Literal: \$HOME and \$PATH" "$MNT/etc/motd"'
check sanitized with_image "$IMG" 0 bash -c '[ ! -s "$MNT/etc/machine-id" ] && [ -e "$MNT/etc/machine-id" ] &&
	[ -z "$(find "$MNT/var/log" "$MNT/tmp" "$MNT/var/lib/apt/lists" -type f)" ] && [ -d "$MNT/var/log/apt" ] &&
	[ ! -e "$MNT/etc/resolv.conf" ] && [ ! -e "$MNT/usr/sbin/policy-rc.d" ]'

# ---- sanitize finds planted secrets ----
# The access key id is put together at run time so that this file holds none.
PLANT='mkdir -p /root/.ssh && ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/id_test && printf "aws_access_key_id = %s%s\n" AK IAQ7Y6X5W4V3U2T1S0 > /etc/aws.txt'
build --set PLANT="$PLANT"
rc=$?
check sanitize-finds-both bash -c '[ '$rc' = 1 ] && grep -q "stage 12 .sanitize. (sanitize) failed" "$0" &&
	grep -q "/root/.ssh/id_test: private key (OpenSSH)" "$0" && grep -q "/etc/aws.txt: AWS access key id" "$0"' "$WORK/out"
check sanitize-no-secret-in-output bash -c '! grep -rq "AKIAQ7Y6X5W4V3U2T1S0" "$0" "$1/logs" "$1/journal"' "$WORK/out" "$S"
build --set PLANT="$PLANT" --set ALLOW=/etc/aws.txt
rc=$?
check sanitize-allow bash -c '[ '$rc' = 1 ] && grep -q "/root/.ssh/id_test: private key" "$0" &&
	! grep -q "found /etc/aws.txt" "$0" && grep -q "allowed: /etc/aws.txt" "$1/logs/12-sanitize.log"' "$WORK/out" "$S"

# ---- files never writes outside the image ----
build --set FILES_DEST=/etc/../../../tmp/amiforge-escape
rc=$?
check files-dotdot bash -c '[ '$rc' = 65 ] && grep -q "holds .\.\.." "$0" && [ ! -e /tmp/amiforge-escape ]' "$WORK/out"
HOSTDIR=$WORK/hostdir
mkdir -p "$HOSTDIR"
build --set PLANT="mkdir -p /opt && ln -s ../../../../../../../../../..$HOSTDIR /opt/evil" --set FILES_DEST=/opt/evil/x
rc=$?
check files-symlink-escape bash -c '[ '$rc' = 1 ] && grep -q "the symlink ./opt/evil. in the image points outside the image" "$0" &&
	[ -z "$(ls -A "$1")" ]' "$WORK/out" "$HOSTDIR"
# An absolute symlink is followed the way the booted system would: inside the image.
build --set PLANT="mkdir -p /opt && ln -s $HOSTDIR /opt/evil" --set FILES_DEST=/opt/evil/x
rc=$?
check files-absolute-symlink bash -c '[ '$rc' = 0 ] && [ -z "$(ls -A "$1")" ]' "$WORK/out" "$HOSTDIR"

# ---- prep-instance in the chroot against a local metadata service ----
cp --sparse=always "$IMG" "$WORK/prep.img"
# in_image COMMAND...: the copy mounted read-write at $MNT in a private namespace.
in_image() {
	MNT=$(mktemp -d "$WORK/mnt.XXXXXX")
	export MNT
	unshare -m --propagation private bash -c 'mount -o loop "$0" "$MNT" || exit 90; "$@"' "$WORK/prep.img" "$@"
	local rc=$?
	rmdir "$MNT"
	return $rc
}
IMDS_PID=
start_imds() { # MODE KEY: v2 (tokens only), v1 (the token PUT answers 405), nokey (v2, no key pair)
	rm -f "$WORK/port"
	local mode=$1 key=(--public-key "$WORK/imds.key")
	printf '%s\n' "$2" >"$WORK/imds.key"
	[ "$mode" = nokey ] && mode=v2 key=()
	python3 "$TOP/tests/servers/imds.py" --mode "$mode" --v1-token-status 405 "${key[@]}" --log-requests \
		--port-file "$WORK/port" >/dev/null 2>"$WORK/imds.log" &
	IMDS_PID=$!
	for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
	PORT=$(cat "$WORK/port")
}
stop_imds() { [ -n "$IMDS_PID" ] && kill "$IMDS_PID" && wait "$IMDS_PID" 2>/dev/null; IMDS_PID=; }
trap 'stop_imds; cleanup_work' EXIT
prep() { # URL MAXWAIT: runs /etc/prep-instance in the chroot; output in $WORK/prep.out, status in $PREP_RC
	in_image bash -c 'chroot "$MNT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin IMDS_URL="$0" IMDS_MAX_WAIT="$1" \
		/etc/prep-instance' "$1" "$2" >"$WORK/prep.out" 2>&1
	PREP_RC=$?
}
KEY1="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2VrZXlmb3JhbWlmb3JnZXRlc3RzMDAwMDAwMDAw test-v2"
KEY2="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2VrZXlmb3JhbWlmb3JnZXRlc3RzMTExMTExMTEx test-v1"
AK=/home/admin/.ssh/authorized_keys

start_imds v2 "$KEY1"
prep "http://127.0.0.1:$PORT" 10
check prep-v2 bash -c '[ '$PREP_RC' = 0 ] && grep -q "installed the instance.s key for admin" "$0" &&
	grep -q "^PUT /latest/api/token" "$1" && grep -q "^GET /latest/meta-data/public-keys/0/openssh-key token=yes" "$1"' \
	"$WORK/prep.out" "$WORK/imds.log"
check prep-host-keys in_image bash -c 'ls "$MNT"/etc/ssh/ssh_host_ed25519_key "$MNT"/etc/ssh/ssh_host_rsa_key >/dev/null'
check prep-modes in_image bash -c '[ "$(stat -c "%a %u" "$MNT/home/admin/.ssh")" = "700 1000" ] &&
	[ "$(stat -c "%a %u" "$MNT'$AK'")" = "600 1000" ] && grep -qxF "$0" "$MNT'$AK'"' "$KEY1"
prep "http://127.0.0.1:$PORT" 10
check prep-no-dup in_image bash -c 'grep -q "already in" "$1" && [ "$(grep -cxF "$0" "$MNT'$AK'")" = 1 ] &&
	[ "$(wc -l <"$MNT'$AK'")" = 1 ]' "$KEY1" "$WORK/prep.out"
stop_imds

start_imds v1 "$KEY2"
prep "http://127.0.0.1:$PORT" 10
check prep-v1 bash -c '[ '$PREP_RC' = 0 ] && grep -q "falling back to IMDSv1" "$0" && grep -q "token=no" "$1"' "$WORK/prep.out" "$WORK/imds.log"
in_image bash -c 'grep -qxF "$0" "$MNT'$AK'" && [ "$(wc -l <"$MNT'$AK'")" = 2 ]' "$KEY2" || not_ok prep-v1-appended
stop_imds

start_imds nokey "$KEY1"
prep "http://127.0.0.1:$PORT" 10
check prep-no-key bash -c '[ '$PREP_RC' = 0 ] && grep -q "has no public key" "$0"' "$WORK/prep.out"
stop_imds

# Nothing listens on the port any more: bounded retries, a clear message.
t0=$(date +%s)
prep "http://127.0.0.1:$PORT" 5
rc=$PREP_RC
t1=$(date +%s)
check prep-down bash -c '[ '$rc' = 1 ] && [ $(('$t1' - '$t0')) -lt 30 ] &&
	grep -q "gave up after 5s: the instance metadata service gave no key (token request to http://127.0.0.1:[0-9]*: no answer); no key installed" "$0"' "$WORK/prep.out"

check sys-no-leaks no_leaks "$S"
exit $T_FAILED
