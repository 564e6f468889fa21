#!/bin/bash
# Issue 8: nothing inside the image can reach the host.  One base image
# (debootstrap minbase) per run, then:
# - probes: escape-probes.yaml, `run` stages that try the escapes from inside
#   (escape-files/probe.pl: /proc/1/root and /proc/self/root, chroot tricks,
#   mount/umount/remount/pivot_root/unshare/setns, sethostname, mknod and open
#   of the host's disk and of a scratch block device, sysrq-trigger and
#   core_pattern, ptrace and the memory and environment of the jail's PID 1,
#   inherited and visible fds, the network with and without `network: true`,
#   capabilities, no_new_privs and seccomp read back) and write PASS/FAIL to
#   /root/escape-results, read here with debugfs.  The build runs in a network
#   namespace of the test's own (escape-files/netns.sh) whose listeners on
#   127.0.0.1, ::1, 169.254.169.254 and fd00:ec2::254 stand for the build
#   host's loopback and the metadata service: no probe sends anything off this
#   machine, and a listener that sees a connection is judged from the host.
# - traps: escape-trap-STAGE.yaml, a `run` stage plants a symlink (absolute,
#   climbing, /proc magic), a FIFO, a device node, a socket or a hard link
#   where a later fstab, network, user, files, ssh, sanitize, makedev,
#   packages or `run script:` stage writes or reads; the stage must succeed
#   inside the image (checked in the image) or fail fast naming the image path.
# Every build is judged from the host: the canaries ($WORK/host: a file, a
# directory, a name that must not appear), the scratch device's content, the
# host's hostname and /etc files, the stage logs' mode and owner; then
# no_leaks (in one process after each build, lib.sh's at the end) and no
# pasta left behind.  The engine runs with a secret in its environment
# ($AMIFORGE_TEST_SECRET, as AWS_SECRET_ACCESS_KEY too): it must reach neither
# the image (the raw disk is searched), the logs, nor pasta's environment.
# AMIFORGE_TEST_CACHE, when set, is passed as --cache.
. "$(dirname "$0")/lib.sh"
T=escape
require_root $T
require_loop $T
for tool in pasta ip python3 debugfs losetup unshare perl; do
	command -v $tool >/dev/null || skip_all "needs $tool" $T
done
require_network $T

R=$RECIPES
F=$R/escape-files
S=$WORK/state
CACHE=()
[ -n "${AMIFORGE_TEST_CACHE:-}" ] && CACHE=(--cache "$AMIFORGE_TEST_CACHE")
export AMIFORGE_TEST_SECRET AWS_SECRET_ACCESS_KEY=$AMIFORGE_TEST_SECRET
FAST=45  # seconds: a trap build (restore, plant, stage) that takes longer hung

# ---- the host's side ----------------------------------------------------------------

HOST=$WORK/host
CAN=$HOST/canary CAN_DIR=$HOST/dir CAN_NEW=$HOST/dir/new
mkdir -p "$CAN_DIR"
head -c 24 /dev/urandom | base64 >"$CAN"
chmod 0600 "$CAN"
echo "keep me" >"$CAN_DIR/keep.log"
echo "keep me too" >"$CAN_DIR/keep2"
chmod 0700 "$CAN_DIR"

# A scratch block device stands in for a host disk wherever a trap could get
# something written into it (never the real one).  Its content holds an AWS
# access key id: the sanitize scan would name it if it read the device.
DEVDIR=$(mktemp -d /var/tmp/amiforge-esc-dev.XXXXXX)
SCRATCH_IMG=$DEVDIR/scratch.img
head -c 65536 /dev/zero >"$SCRATCH_IMG"
printf 'escape test scratch device\n AKIAESCAPETESTSCRTCH \n' | dd of="$SCRATCH_IMG" conv=notrunc status=none
SCRATCH_DEV=$(losetup -f --show "$SCRATCH_IMG") || skip_all "cannot attach a loop device" $T
cleanup_escape() {
	losetup -d "$SCRATCH_DEV" 2>/dev/null
	rm -rf "$DEVDIR"
	cleanup_work
}
trap cleanup_escape EXIT
majmin() { echo "$((0x$(stat -c %t "$1"))):$((0x$(stat -c %T "$1")))"; }
SCRATCH=$(majmin "$SCRATCH_DEV")
SCRATCH_MAJ=${SCRATCH%:*} SCRATCH_MIN=${SCRATCH#*:}
# The host's root disk: only ever opened read-only from inside (and that must fail).
HOSTDISK=$(majmin "$(findmnt -n -o SOURCE / | sed 's/\[.*//')" 2>/dev/null)
case "$HOSTDISK" in *[0-9]:[0-9]*) ;; *) HOSTDISK=$(printf '%d:%d' $(( $(stat -c %d /) >> 8 )) $(( $(stat -c %d /) & 255 ))) ;; esac
HOSTRESOLVER=$(awk '/^nameserver/ {print $2; exit}' /etc/resolv.conf)

# What must not change, whatever a build does.
host_state() {
	stat -c '%n %F %a %u:%g %s %i %Y' "$CAN" "$CAN_DIR" "$CAN_DIR"/* 2>&1
	sha256sum "$CAN" "$CAN_DIR"/* "$SCRATCH_IMG" 2>&1
	cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname
	for f in /etc/hostname /etc/hosts /etc/fstab /etc/passwd /etc/group /etc/shadow /etc/motd \
		/etc/machine-id /etc/sudoers; do
		[ -e "$f" ] && stat -c '%n %F %a %u:%g %i' "$f" && sha256sum "$f"
	done
	ls -A /etc/sudoers.d /etc/ssh/sshd_config.d 2>&1
}
HOST_BEFORE=$(host_state)
host_untouched() { # NAME
	local now; now=$(host_state)
	if [ "$now" = "$HOST_BEFORE" ]; then ok "$1"; return; fi
	not_ok "$1"
	diff <(echo "$HOST_BEFORE") <(echo "$now") | sed 's/^/    /'
	HOST_BEFORE=$now  # report a change once
}
# Every stage log the last build touched, as the engine left it: 0600, root's.
logs_untouched() { # NAME
	local bad
	bad=$(find "$S/logs" -type f -cnewer "$WORK/mark" ! \( -perm 0600 -user 0 -group 0 \) -printf '%p %m %u:%g\n' 2>/dev/null)
	if [ -z "$bad" ]; then ok "$1"; else not_ok "$1"; echo "$bad" | sed 's/^/    changed from inside: /'; fi
}
no_secret() { ! grep -rqaF -e "$AMIFORGE_TEST_SECRET" "$@" 2>/dev/null; }
# pasta processes that no amiforge is running (ours would have been left
# behind).  pasta runs as passt.avx2 where the CPU has AVX2: pgrep -x pasta
# alone finds nothing.
pasta_pids() { pgrep 'pasta|passt'; }
PASTA_BEFORE=" $(pasta_pids | tr '\n' ' ') "
pasta_left() {
	local p parent
	for p in $(pasta_pids); do
		case "$PASTA_BEFORE" in *" $p "*) continue ;; esac
		parent=$(ps -o comm= -p "$(ps -o ppid= -p "$p" | tr -d ' ')" 2>/dev/null)
		[ "$parent" = amiforge ] || echo "$p"
	done
}
# no_leaks of lib.sh in one process: it forks three times per process of the
# machine, seconds on a busy one, too slow after each of the trap builds.
quick_leaks() { # DIR
	python3 - "$1" <<'PY'
import os, subprocess, sys, time
d, own, p = sys.argv[1], set(), os.getpid()
while p > 1:  # this test and its ancestors
    own.add(p)
    with open("/proc/%d/status" % p) as f:
        p = int([l for l in f if l.startswith("PPid:")][0].split()[1])
def leaks():
    out = [w for w, cmd in (("mount", ["findmnt", "-rn", "-o", "TARGET,SOURCE"]), ("loop device", ["losetup", "-a"]))
           if d in subprocess.run(cmd, capture_output=True, text=True).stdout]
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) in own:
            continue
        s = ""
        for x in ("root", "cwd"):
            try:
                s += os.readlink("/proc/%s/%s" % (e, x)) + " "
            except OSError:
                pass
        try:
            with open("/proc/%s/cmdline" % e, "rb") as f:
                s += f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
        if d in s:
            out.append("process %s: %s" % (e, s[:200]))
    return out
for _ in range(25):
    left = leaks()
    if not left:
        sys.exit(0)
    time.sleep(0.2)
print("\n".join(left))
sys.exit(1)
PY
}
clean_after() { # NAME [quick]: nothing of the build left on the host
	local left
	for _ in $(seq 25); do left=$(pasta_left); [ -z "$left" ] && break; sleep 0.2; done
	if { if [ "${2:-}" = quick ]; then quick_leaks "$WORK"; else no_leaks "$WORK"; fi; } >"$WORK/leaks.out" 2>&1 &&
		[ -z "$left" ]; then
		ok "$1"
	else
		not_ok "$1"
		sed 's/^/    /' "$WORK/leaks.out"
		[ -n "$left" ] && echo "    pasta left running: $left"
	fi
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Files of the image (partition: none: the filesystem is the whole disk.img).
img_cat() { debugfs -R "cat $1" "$S/disk.img" 2>/dev/null; }
img_type() { debugfs -R "stat $1" "$S/disk.img" 2>/dev/null | sed -n 's/.*Type: \([A-Za-z]*\) *Mode: *\([0-7]*\).*/\1 \2/p'; }
img_has() { [ -n "$(img_type "$1")" ]; }

build() { # OUT RECIPE ARGS...: the engine, with the secret in its environment
	local out=$1 recipe=$2; shift 2
	"$AMIFORGE" build "$R/$recipe" --state "$S" "${CACHE[@]}" \
		--set CANARY="$CAN" --set CANARY_DIR="$CAN_DIR" --set CANARY_NEW="$CAN_NEW" \
		--set HOSTDISK="$HOSTDISK" --set SCRATCH="$SCRATCH" --set HOSTRESOLVER="$HOSTRESOLVER" \
		"$@" >"$out.out" 2>"$out.err"
}

# ---- the base image ------------------------------------------------------------------

t0=$(now)
touch "$WORK/mark"
"$AMIFORGE" build "$R/escape-trap-fstab.yaml" --state "$S" "${CACHE[@]}" >"$WORK/base.out" 2>"$WORK/base.err"
rc=$?
if [ $rc != 0 ] || ! grep -q 'debootstrap .*done' "$WORK/base.out"; then
	not_ok base-image
	tail -20 "$WORK/base.err" | sed 's/^/    /'
	exit 1
fi
ok "base-image ($(secs "$t0" "$(now)")s)"
host_untouched base-host-untouched
clean_after base-clean quick

# ---- probes from inside ----------------------------------------------------------------

PORT=$((20000 + RANDOM % 20000))
LISTEN=$WORK/listeners.log
t0=$(now)
touch "$WORK/mark"
unshare -n bash "$F/netns.sh" "$LISTEN" "$PORT" \
	"$AMIFORGE" build "$R/escape-probes.yaml" --state "$S" "${CACHE[@]}" \
	--set CANARY="$CAN" --set CANARY_DIR="$CAN_DIR" --set CANARY_NEW="$CAN_NEW" \
	--set HOSTDISK="$HOSTDISK" --set SCRATCH="$SCRATCH" --set HOSTRESOLVER="$HOSTRESOLVER" \
	--set PORT="$PORT" >"$WORK/probes.out" 2>"$WORK/probes.err"
rc=$?
if [ $rc = 0 ]; then
	ok "probes-build ($(secs "$t0" "$(now)")s)"
else
	not_ok "probes-build (exit $rc)"
	tail -20 "$WORK/probes.err" | sed 's/^/    /'
fi
img_cat /root/escape-results >"$WORK/results"
while read -r kind name detail; do
	case "$kind" in
	PASS) ok "probe-$name" ;;
	FAIL) not_ok "probe-$name: $detail" ;;
	INFO) echo "# probe-$name: $detail" ;;
	SKIP) skip "probe-$name" "$detail" ;;
	esac
done <"$WORK/results"
for g in caps syscalls chroot proc devices fds net-off net-on; do
	if grep -q "^END $g-done" "$WORK/results"; then ok "probe-group-$g-ran"; else not_ok "probe-group-$g-ran"; fi
done

# The host's side of the probes.
host_untouched probes-host-untouched
check probes-no-file-via-proc-root test ! -e "$CAN_NEW"
# What the reads through /proc brought back is never the host's.
mine=$(sha256sum <"$CAN")
reads_ok=1
for n in 1 2 3 4 5; do
	img_has "/root/escape-read/canary.$n" || continue
	[ "$(img_cat "/root/escape-read/canary.$n" | sha256sum)" = "$mine" ] && { reads_ok=0; echo "    canary.$n is the host's canary"; }
done
check probes-host-canary-not-read test $reads_ok = 1
shadow=$(sha256sum </etc/shadow)
shadow_ok=1
for f in $(debugfs -R "ls /root/escape-read" "$S/disk.img" 2>/dev/null | grep -o 'shadow[^ ]*\.sum'); do
	[ "$(img_cat "/root/escape-read/$f")" = "$shadow" ] && { shadow_ok=0; echo "    $f is the host's /etc/shadow"; }
done
check probes-host-shadow-not-read test $shadow_ok = 1
check probes-environ-dump-made img_has /root/escape-read/environ
# The listeners of the test's namespace: the control connection and the LAN
# peer only; nothing on the loopback or metadata addresses from inside.
check probes-listener-control bash -c '[ "$(grep -c "^127.0.0.1 " "$0")" = 1 ]' "$LISTEN"
check probes-lan-peer-reached grep -q '^10.99.0.3 ' "$LISTEN"
if grep -v '^10.99.0.3 ' "$LISTEN" | grep -qv "^127.0.0.1 $PORT 127.0.0.1\$" ||
	[ "$(grep -c '^127.0.0.1 ' "$LISTEN")" != 1 ]; then
	not_ok probes-host-loopback-and-metadata-unreached
	sed 's/^/    listener: /' "$LISTEN"
else
	ok probes-host-loopback-and-metadata-unreached
fi
# pasta, outside the jail, reads what the jail sends: the engine's
# credentials have no business in its environment.
# The sampler polls; a short networked probe can end between two looks.
if [ -s "$LISTEN.pasta" ]; then ok probes-pasta-seen; else not_ok "probes-pasta-seen: the sampler saw no pasta, not even during net-hold's 2 s"; fi
if [ ! -s "$LISTEN.pasta" ]; then
	not_ok "probes-pasta-env-without-secret: no pasta sampled (see probes-pasta-seen)"
elif awk '$2 != 0 { bad = 1 } END { exit bad }' "$LISTEN.pasta"; then
	ok probes-pasta-env-without-secret
else
	not_ok "probes-pasta-env-without-secret: pasta's environment holds the engine's secret ($(tr '\n' ' ' <"$LISTEN.pasta" 2>/dev/null)= pid, variables)"
fi
logs_untouched probes-stage-logs-untouched
# The raw disk: whatever the probes could read of the environments is in it.
check probes-secret-not-in-image no_secret "$S/disk.img"
check probes-secret-not-in-logs no_secret "$S/logs" "$S/journal" "$WORK/probes.out" "$WORK/probes.err"
clean_after probes-clean quick

# ---- traps for the stages that write into the image -----------------------------------

# trap NAME RECIPE IMAGE-PATH PLANT [CHECK [--set ...]]: builds the base +
# PLANT + the recipe's stage.  IMAGE-PATH is what a failure must name; CHECK,
# a command run after a success, looks at the image.
trap_case() {
	local name=$1 recipe=$2 path=$3 plant=$4 check_fn=${5:-true}
	shift 5 2>/dev/null || shift $#
	local out=$WORK/trap-$name t0 t1 rc
	t0=$(now)
	touch "$WORK/mark"
	build "$out" "escape-trap-$recipe.yaml" --set PLANT="$plant" "$@"
	rc=$?
	t1=$(now)
	host_untouched "trap-$name-host-untouched"
	if ! grep -q '] plant .*done' "$out.out"; then
		not_ok "trap-$name: the trap could not be planted"
		tail -8 "$out.err" | sed 's/^/    /'
	elif [ $rc = 0 ]; then
		if $check_fn; then
			ok "trap-$name: succeeded inside the image ($(secs "$t0" "$t1")s)"
		else
			not_ok "trap-$name: succeeded, but the image is not as expected"
		fi
	elif awk -v a="$t0" -v b="$t1" -v f=$FAST 'BEGIN { exit !(b - a < f) }' && grep -qF -- "$path" "$out.err"; then
		ok "trap-$name: failed fast naming $path ($(secs "$t0" "$t1")s): $(grep -m1 'error: stage' "$out.err" | cut -c1-240)"
	else
		not_ok "trap-$name: failed after $(secs "$t0" "$t1")s without naming $path"
		grep -v '^\[' "$out.err" | tail -8 | sed 's/^/    /'
	fi
	logs_untouched "trap-$name-logs-untouched"
	clean_after "trap-$name-clean" quick
}

# In-image checks after a success.
is_amiforge_file() { # PATH TEXT: a regular file holding TEXT
	[ "$(img_type "$1" | cut -d' ' -f1)" = regular ] && img_cat "$1" | grep -qF -- "$2" ||
		{ echo "    $1: $(img_type "$1"), not a regular file with '$2'"; return 1; }
}
fstab_ok() { is_amiforge_file /etc/fstab "written by amiforge"; }
fstab_in_canary_ok() { is_amiforge_file "$CAN_DIR/fstab" "written by amiforge"; }
hosts_ok() { is_amiforge_file /etc/hosts "127.0.1.1"$'\t'"escaped" && is_amiforge_file /etc/hostname escaped; }
interfaces_ok() { is_amiforge_file /etc/network/interfaces "written by amiforge"; }
net_in_canary_ok() { is_amiforge_file "$CAN_DIR/interfaces" "written by amiforge"; }
sudoers_ok() { is_amiforge_file /etc/sudoers.d/90-amiforge-esc esc && [ "$(img_type /etc/sudoers.d/90-amiforge-esc)" = "regular 0440" ]; }
user_ok() { img_cat /etc/passwd | grep -q '^esc:'; }
motd_ok() { is_amiforge_file /etc/motd "escape test motd"; }
hardlink_ok() { motd_ok && [ "$(img_cat /root/hl-target)" = original ] || { echo "    /root/hl-target: $(img_cat /root/hl-target)"; return 1; }; }
motd_in_canary_ok() { is_amiforge_file "$CAN_DIR/motd" "escape test motd"; }
# files follows a destination's symlinks inside the image (as cp would): the
# file is either at the name or where the link leads in the image.
issue_ok() { is_amiforge_file /etc/issue.net "escape test motd" >/dev/null || is_amiforge_file "/proc/1/root$CAN" "escape test motd"; }
dropin_ok() { is_amiforge_file /etc/ssh/sshd_config.d/10-amiforge.conf "PasswordAuthentication"; }
ssh_keys_gone() { ! debugfs -R "ls /etc/ssh" "$S/disk.img" 2>/dev/null | grep -q 'ssh_host_[a-z0-9]*_key'; }
machine_id_ok() { [ "$(img_type /etc/machine-id)" = "regular 0444" ] && ! img_has /root/.bash_history && ! img_has /root/.ssh/authorized_keys; }
sanitize_nodes_ok() { ! grep -q 'esc-disk' "$WORK/trap-sanitize-nodes.err"; }
script_ran() { img_cat /root/escape-script-ran | grep -q 'script ran'; }
apt_ok() { true; }

MM="$SCRATCH_MAJ $SCRATCH_MIN"
SOCK() { echo "perl -MSocket -e 'socket(S, PF_UNIX, SOCK_STREAM, 0) or die \$!; bind(S, pack_sockaddr_un(\"$1\")) or die \$!'"; }

trap_case fstab-magiclink fstab /etc/fstab "ln -sf /proc/1/root$CAN /etc/fstab" fstab_ok
trap_case fstab-tempnames fstab /etc/fstab \
	"cd /etc && for n in fstab.tmp fstab.tmp.1 fstab.tmp.2 fstab.tmp.3 .fstab.tmp fstab.new fstab~ fstab.amiforge .fstab.amiforge; do ln -sf $CAN \$n; done; ln -sf $CAN fstab" fstab_ok
trap_case fstab-etc-symlink fstab /etc "mv /etc /etc.moved && ln -s $CAN_DIR /etc" fstab_in_canary_ok
trap_case fstab-fifo fstab /etc/fstab "rm -f /etc/fstab && mkfifo /etc/fstab" fstab_ok
trap_case fstab-blockdev fstab /etc/fstab "rm -f /etc/fstab && mknod /etc/fstab b $MM" fstab_ok

trap_case network-fifo-hosts network /etc/hosts "rm -f /etc/hosts && mkfifo /etc/hosts" hosts_ok
trap_case network-blockdev-hostname network /etc/hostname "rm -f /etc/hostname && mknod /etc/hostname b $MM" hosts_ok
trap_case network-socket-interfaces network /etc/network/interfaces \
	"mkdir -p /etc/network && rm -f /etc/network/interfaces && $(SOCK /etc/network/interfaces)" interfaces_ok
trap_case network-climbing-dir network /etc/network \
	"mkdir -p $CAN_DIR && rm -rf /etc/network && ln -s ../../../../../../../..$CAN_DIR /etc/network" net_in_canary_ok
trap_case network-magiclinks network /etc/host \
	"ln -sf /proc/1/root$CAN /etc/hostname && ln -sf /proc/self/cwd/../../../../..$CAN /etc/hosts" hosts_ok

trap_case user-sudoers-link user /etc/sudoers.d/90-amiforge-esc \
	"ln -sf $CAN /etc/sudoers.d/90-amiforge-esc" sudoers_ok
trap_case user-passwd-fifo user /etc/passwd "cp -p /etc/passwd /etc/passwd.orig && rm /etc/passwd && mkfifo /etc/passwd" user_ok
trap_case user-shadow-magiclink user /etc/shadow \
	"cp -p /etc/shadow /etc/shadow.orig && ln -sf /proc/1/root$CAN /etc/shadow" user_ok

trap_case files-hardlink files /etc/motd \
	"echo original > /root/hl-target && rm -f /etc/motd && ln /root/hl-target /etc/motd" hardlink_ok --set DEST=/etc/motd
trap_case files-parent-link files /opt/esc "mkdir -p /opt && ln -s $CAN_DIR /opt/esc" motd_in_canary_ok --set DEST=/opt/esc/motd
trap_case files-final-magiclink files /etc/issue.net "ln -sf /proc/1/root$CAN /etc/issue.net" issue_ok --set DEST=/etc/issue.net
trap_case files-fifo-dest files /etc/motd "rm -f /etc/motd && mkfifo /etc/motd" motd_ok --set DEST=/etc/motd
trap_case files-group-fifo files /etc/group \
	"cp -p /etc/group /etc/group.orig && rm /etc/group && mkfifo /etc/group" motd_ok --set DEST=/etc/motd --set OWNER=daemon:daemon

trap_case ssh-dropin-link ssh /etc/ssh/sshd_config.d/10-amiforge.conf \
	"mkdir -p /etc/ssh/sshd_config.d && ln -sf $CAN /etc/ssh/sshd_config.d/10-amiforge.conf" dropin_ok
trap_case ssh-config-fifo ssh /etc/ssh/sshd_config \
	"mv /etc/ssh/sshd_config /etc/ssh/sshd_config.orig && mkfifo /etc/ssh/sshd_config" dropin_ok
trap_case ssh-hostkey-links ssh /etc/ssh/ssh_host \
	"cd /etc/ssh && for k in ssh_host_*; do ln -sf $CAN \$k; done; ln -s $CAN_DIR ssh_host_dir_key && mknod ssh_host_node_key b $MM" ssh_keys_gone

trap_case sanitize-varlog-link sanitize /var/log "rm -rf /var/log && ln -s $CAN_DIR /var/log"
trap_case sanitize-tmp-magiclink sanitize /tmp "rm -rf /tmp && ln -s /proc/1/root$CAN_DIR /tmp"
trap_case sanitize-links sanitize /etc/machine-id \
	"ln -sf $CAN /etc/machine-id && ln -sf $CAN /root/.bash_history && mkdir -p /root/.ssh && ln -sf $CAN /root/.ssh/authorized_keys" machine_id_ok
trap_case sanitize-nodes sanitize /root/esc- \
	"mknod /root/esc-disk b $MM && mkfifo /root/esc-fifo && mknod /var/log/esc-disk b $MM && mkfifo /tmp/esc-fifo && $(SOCK /root/esc-sock)" sanitize_nodes_ok

trap_case makedev-group-fifo makedev /etc/group "cp -p /etc/group /etc/group.orig && rm /etc/group && mkfifo /etc/group"

trap_case apt-archives-link packages /var/cache/apt/archives \
	"mkdir -p $CAN_DIR && rm -rf /var/cache/apt/archives && ln -s $CAN_DIR /var/cache/apt/archives" apt_ok
trap_case apt-lists-magiclink packages /var/lib/apt/lists \
	"rm -rf /var/lib/apt/lists && ln -s /proc/1/root$CAN_DIR /var/lib/apt/lists" apt_ok

trap_case script-tmp-link script /tmp "mkdir -p -m 1777 $CAN_DIR && rm -rf /tmp && ln -s $CAN_DIR /tmp" script_ran
trap_case script-tmp-dangling script /tmp "rm -rf /tmp && ln -s $CAN_DIR/none /tmp" script_ran
trap_case script-tmp-magiclink script /tmp "rm -rf /tmp && ln -s /proc/1/root/tmp /tmp" script_ran

clean_after final-clean
check secret-not-in-state-or-output no_secret "$S/logs" "$S/journal" "$S/manifest.json" "$WORK"/*.out "$WORK"/*.err
exit $T_FAILED
