#!/bin/bash
# amiforge boot-test: the three recipes build and boot under QEMU (TCG) with
# the metadata responder, and every check passes, ssh trusting only the host
# keys the guest printed on its serial console (checked here against
# ssh-keygen); an image that refuses the admin login fails naming "ssh
# login"; the metadata fallback to IMDSv1; a guest whose key is not the one
# on the console is refused, and one that prints none fails with a clear
# message (both through the test-only AMIFORGE_TEST_BOOTTEST_CONSOLE hook);
# a SIGTERM leaves nothing behind; usage and missing-menu.lst errors.
# Each TCG boot takes a minute or two: the recipes are built once each.
. "$(dirname "$0")/lib.sh"

NAMES=(usage missing-menulst boot-hvm boot-pvgrub boot-uefi console-keys refused-login forged-hostkey
	no-console-keys sigterm no-leftovers)

# boot-test keeps its temporary directory (logs only) in TMPDIR after a failure.
export TMPDIR=$WORK/tmp
mkdir -p "$TMPDIR"

# Argument errors come before any requirement.
"$AMIFORGE" boot-test >"$WORK/out" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q "boot-test takes exactly one IMAGE" "$WORK/out"; then ok usage; else
	not_ok usage; cat "$WORK/out"; fi

if ! command -v qemu-system-x86_64 >/dev/null || ! command -v ssh >/dev/null; then
	skip_all "needs qemu-system-x86_64 and ssh (make check installs qemu-system-x86 and openssh-client)" \
		"${NAMES[@]:1}"
fi

# An image without menu.lst: PV-GRUB would find nothing; the message says where it looked.
truncate -s 64M "$WORK/empty.img"
mkfs.ext4 -q -F -L rootfs "$WORK/empty.img"
"$AMIFORGE" boot-test --pvgrub "$WORK/empty.img" >"$WORK/out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -q "no menu.lst in '$WORK/empty.img' where PV-GRUB looks" "$WORK/out" &&
	[ -z "$(ls "$TMPDIR")" ]; then ok missing-menulst; else
	not_ok missing-menulst; echo "rc=$rc"; cat "$WORK/out"; ls -la "$TMPDIR"; fi
rm -rf "${TMPDIR:?}"/*

require_root "${NAMES[@]:2}"
require_loop "${NAMES[@]:2}"
require_network "${NAMES[@]:2}"

# Builds recipes/NAME.yaml into $WORK/NAME; prints the image path.
build() {
	local name=$1
	if ! "$AMIFORGE" build "$TOP/recipes/$name.yaml" --state "$WORK/$name" >"$WORK/$name.build" 2>&1; then
		sed 's/^/  build: /' "$WORK/$name.build" | tail -20 >&2
		return 1
	fi
	echo "$WORK/$name/disk.img"
}

# Every check of a passing report, in order.
CHECKS=("ssh login" "console host key" "whoami" "sudo" "failed units" "host keys" "password login"
	"metadata key")
report_ok() { # FILE
	local c
	for c in "${CHECKS[@]}"; do
		grep -Eq "^  $c +ok( |$)" "$1" || { echo "check '$c' not ok"; return 1; }
	done
	grep -q '^result: passed (8 checks)$' "$1" && grep -Eq '^  boot to ssh +[0-9.]+s$' "$1"
}

# boot-test NAME IMAGE OPTIONS...: passes, and leaves no temporary directory
# (with --keep-logs: only the logs; the console log is copied to
# $WORK/NAME.console).
boot_ok() {
	local test=$1 img=$2; shift 2
	"$AMIFORGE" boot-test "$img" "$@" >"$WORK/$test.out" 2>&1
	local rc=$? left want=
	left=$(cd "$TMPDIR" && find . -mindepth 1 -printf '%P\n' |
		sed 's#^amiforge-boot-test\.[^/]*#D#' | sort | tr '\n' ' ')
	case " $* " in *" --keep-logs "*) want="D D/console.log D/imds.log D/qemu.log " ;; esac
	cat "$TMPDIR"/*/console.log >"$WORK/$test.console" 2>/dev/null
	if [ $rc = 0 ] && report_ok "$WORK/$test.out" && [ "$left" = "$want" ]; then
		ok "$test"
		grep -E '^  boot to ssh' "$WORK/$test.out"
	else
		not_ok "$test"; echo "rc=$rc"; cat "$WORK/$test.out"; ls -la "$TMPDIR"
		tail -30 "$TMPDIR"/*/console.log 2>/dev/null
	fi
	rm -rf "${TMPDIR:?}"/*
}

# The host key ssh accepted is one the console printed, as ssh-keygen reads
# the console's public keys; and the report's fingerprint is in the
# console's fingerprints block.
console_keys() { # REPORT CONSOLE_LOG
	local seen fps keys b='SSH HOST KEY'
	local ok_line='^  console host key +ok +[^ ]+ (SHA256:[^,]+), as printed on the console$'
	seen=$(sed -nE "s/$ok_line/\\1/p" "$1")
	fps=$(tr -d '\r' <"$2" |
		sed -n "/-----BEGIN $b FINGERPRINTS-----/,/-----END $b FINGERPRINTS-----/p")
	keys=$(tr -d '\r' <"$2" | sed -n "/-----BEGIN $b KEYS-----/,/-----END $b KEYS-----/p" |
		grep -E '^(ssh|ecdsa)-' | ssh-keygen -l -f - 2>/dev/null | awk '{print $2}')
	if [ -n "$seen" ] && grep -qF " $seen " <<<"$fps" && grep -qxF "$seen" <<<"$keys" &&
		[ "$(wc -l <<<"$keys")" -ge 2 ] &&
		grep -q "the guest printed its host keys on the console: .*$seen" "$1"; then
		ok console-keys
	else
		not_ok console-keys; echo "seen=$seen"; echo "$fps"; echo "$keys"; cat "$1"
	fi
}

pvgrub_img=
for kind in hvm pvgrub uefi; do
	recipe=debian-12-$kind
	if [ ! -f "$TOP/recipes/$recipe.yaml" ]; then
		skip "boot-$kind" "recipes/$recipe.yaml is not written yet"
		continue
	fi
	if ! img=$(build "$recipe"); then
		not_ok "boot-$kind"; echo "  building $recipe failed"
		continue
	fi
	case $kind in
	pvgrub)
		boot_ok "boot-$kind" "$img" --pvgrub --keep-logs; pvgrub_img=$img
		console_keys "$WORK/boot-$kind.out" "$WORK/boot-$kind.console"
		;;
	uefi) boot_ok "boot-$kind" "$img" --uefi ;;
	*) boot_ok "boot-$kind" "$img" ;;
	esac
	# The image itself is untouched (snapshot): still no host keys in it.
	[ "$kind" != pvgrub ] && rm -f "$img"  # keep $WORK small; the pvgrub image is reused below
done

if [ -z "$pvgrub_img" ]; then
	skip_all "needs the debian-12-pvgrub image" console-keys refused-login forged-hostkey \
		no-console-keys sigterm no-leftovers
fi

# An image without the admin user we ask for: the guest fetches the key
# (with tokens refused: prep-instance falls back to IMDSv1) but refuses the
# login, and the report names "ssh login"; the console log is kept.
"$AMIFORGE" boot-test "$pvgrub_img" --pvgrub --user ghost --imds v1-only >"$WORK/refused.out" 2>&1
rc=$?
kept=$(ls -d "$TMPDIR"/amiforge-boot-test.* 2>/dev/null)
if [ $rc = 1 ] && grep -Eq "^  ssh login +FAILED .*no user 'ghost'.*Permission denied \(publickey\)$" "$WORK/refused.out" &&
	grep -Eq '^  whoami +skipped' "$WORK/refused.out" &&
	grep -q "^result: FAILED: ssh login " "$WORK/refused.out" &&
	grep -q "^console log: $kept/console.log$" "$WORK/refused.out" && [ -s "$kept/console.log" ] &&
	grep -q '^PUT /latest/api/token 403' "$kept/imds.log" &&
	grep -q '^GET /latest/meta-data/public-keys/0/openssh-key 200 v1$' "$kept/imds.log" &&
	[ "$(ls "$kept" | sort | tr '\n' ' ')" = "console.log imds.log qemu.log " ]; then
	ok refused-login
else
	not_ok refused-login; echo "rc=$rc"; cat "$WORK/refused.out"; ls -la "$kept"; cat "$kept/imds.log"
fi
rm -rf "${TMPDIR:?}"/*

# The console claims the host key is boot-test's own client key (the test
# hook rewrites the log once the guest printed its real keys): ssh, told to
# trust that key only, refuses the guest's real one before logging in.
AMIFORGE_TEST_BOOTTEST_CONSOLE=forge "$AMIFORGE" boot-test "$pvgrub_img" --pvgrub \
	>"$WORK/forged.out" 2>&1
rc=$?
fp='SHA256:[A-Za-z0-9+/]{43}'
mismatch="host key mismatch: the guest's sshd sent [A-Z0-9]+ $fp,"
mismatch+=" its console printed ssh-ed25519 $fp"
if [ $rc = 1 ] && grep -Eq "^  ssh login +FAILED +$mismatch: login refused$" "$WORK/forged.out" &&
	grep -Eq '^  whoami +skipped' "$WORK/forged.out" &&
	grep -q "^result: FAILED: ssh login " "$WORK/forged.out" &&
	! grep -q "Permission denied" "$WORK/forged.out"; then
	ok forged-hostkey
else
	not_ok forged-hostkey; echo "rc=$rc"; cat "$WORK/forged.out"
fi
rm -rf "${TMPDIR:?}"/*

# A guest that prints no keys (the hook hides them): sshd answers, boot-test
# never logs in and says what the image lacks.
AMIFORGE_TEST_BOOTTEST_CONSOLE=drop "$AMIFORGE" boot-test "$pvgrub_img" --pvgrub \
	>"$WORK/nokeys.out" 2>&1
rc=$?
nokeys="the guest printed no host key fingerprints on its console; was the image built with ssh:"
nokeys+=" {prep_instance: true}?"
if [ $rc = 1 ] && grep -Fqx "  ssh login        FAILED  $nokeys" "$WORK/nokeys.out" &&
	grep -q "^result: FAILED: ssh login " "$WORK/nokeys.out"; then
	ok no-console-keys
else
	not_ok no-console-keys; echo "rc=$rc"; cat "$WORK/nokeys.out"
fi
rm -rf "${TMPDIR:?}"/*

# SIGTERM while the guest boots: exit 130, QEMU and the responders gone, the
# temporary directory (with the private key) removed.
"$AMIFORGE" boot-test "$pvgrub_img" --pvgrub >"$WORK/term.out" 2>&1 &
pid=$!
for _ in $(seq 100); do
	pgrep -f "$TMPDIR/amiforge-boot-test" >/dev/null && [ -s "$(ls "$TMPDIR"/*/console.log 2>/dev/null | head -1)" ] && break
	sleep 0.2
done
sleep 3
kill -TERM $pid
wait $pid
rc=$?
if [ $rc = 130 ] && grep -q "interrupted by signal 15" "$WORK/term.out" && [ -z "$(ls "$TMPDIR")" ] &&
	! pgrep -f "$TMPDIR/amiforge-boot-test" >/dev/null; then ok sigterm; else
	not_ok sigterm; echo "rc=$rc"; cat "$WORK/term.out"; ls -laR "$TMPDIR"; pgrep -af "$TMPDIR/amiforge-boot-test"; fi

# Nothing of any boot left: no QEMU, no responder, no mount or loop device.
if ! pgrep -f "$TMPDIR/amiforge-boot-test" >/dev/null && no_leaks "$WORK"; then ok no-leftovers; else
	not_ok no-leftovers; pgrep -af "$TMPDIR/amiforge-boot-test"; fi
exit $T_FAILED
