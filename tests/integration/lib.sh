# Shared helpers for integration tests: TAP-like output (ok / not ok / skip),
# requirements that skip with a reason, leak checks, image inspection.
# Every test runs the real binary ($AMIFORGE) as a user would.
set -u
TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
AMIFORGE=${AMIFORGE:-$TOP/build/amiforge}
RECIPES=$TOP/tests/integration/recipes
T_FAILED=0
# AWS secrets for tests: tests/run-all makes them random per run and checks
# at the end that they appear in no output or log; use these, not literals.
AMIFORGE_TEST_SECRET=${AMIFORGE_TEST_SECRET:-tEsTlocalSecretNotForLogs0123456789}
AMIFORGE_TEST_TOKEN=${AMIFORGE_TEST_TOKEN:-tOkEnlocalSessionTokenNotForLogs0123456789}

ok() { echo "ok $*"; }
not_ok() { echo "not ok $*"; T_FAILED=1; }
skip() { echo "skip $1: $2"; }
check() { # NAME COMMAND...: ok if the command succeeds
	local name=$1; shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}
# Skips every named test with a reason and exits 0.
skip_all() { local reason=$1; shift; for n in "$@"; do skip "$n" "$reason"; done; exit 0; }

require_root() { [ "$(id -u)" = 0 ] || skip_all "needs root (loop devices, mounts, chroot)" "$@"; }
require_loop() { [ -e /dev/loop-control ] || skip_all "needs loop devices (/dev/loop-control)" "$@"; }

# The Debian mirror of the host's apt configuration, as the engine derives it.
host_mirror() {
	local m
	m=$(grep -h -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
	[ -n "$m" ] || m=$(grep -h -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}')
	echo "${m%/}"
}
# True if the host's Debian mirror answers.
have_network() {
	local m; m=$(host_mirror)
	[ -n "$m" ] && python3 - "$m" <<'PY'
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/dists/bookworm/Release", timeout=15).read(100)
PY
}
require_network() { have_network || skip_all "the host's Debian mirror ($(host_mirror)) does not answer" "$@"; }

# A scratch directory removed at exit; state directories live in it.
WORK=$(mktemp -d /var/tmp/amiforge-it.XXXXXX)
# Every manifest a test wrote is checked against its schema before it goes.
cleanup_work() {
	python3 "$TOP/tests/integration/check_manifests.py" "$WORK" "$TOP/schemas/manifest.schema.json" 2>&1
	rm -rf "$WORK"
}
trap cleanup_work EXIT

# Nothing of a build may remain on the host: mounts, loop devices over files
# in DIR, processes mentioning DIR.  The kernel tears these down
# asynchronously after a SIGKILL, so poll for a few seconds.
no_leaks() { # DIR
	local dir=$1 i
	for i in $(seq 50); do
		if ! findmnt -rn -o TARGET,SOURCE | grep -q -- "$dir" &&
			! losetup -a | grep -q -- "$dir" && [ -z "$(leaked_procs "$dir")" ]; then
			return 0
		fi
		sleep 0.2
	done
	echo "leftovers for $dir:"; findmnt -rn | grep -- "$dir"; losetup -a | grep -- "$dir"
	for i in $(leaked_procs "$dir"); do ps -o pid=,args= -p "$i"; done
	return 1
}

# Processes mentioning DIR in their command line, or whose root or working
# directory is inside it, other than this test and its ancestors.
leaked_procs() { # DIR
	local own=" " p=$BASHPID r
	while [ "$p" -gt 1 ]; do own+="$p "; p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status"); done
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		case "$own" in *" $p "*) continue ;; esac
		r=$({ readlink "/proc/$p/root"; readlink "/proc/$p/cwd"; tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null)
		case "$r" in *"$1"*) echo "$p" ;; esac
	done
}
export -f no_leaks leaked_procs

# Runs COMMAND... with the image's root filesystem mounted read-only at $MNT,
# in a private mount namespace (the mount and its loop vanish afterwards).
# Usage: with_image IMG OFFSET COMMAND...
with_image() {
	local img=$1 off=$2; shift 2
	MNT=$(mktemp -d "$WORK/mnt.XXXXXX")
	export MNT
	unshare -m --propagation private bash -c 'mount -o ro,loop,offset="$1" "$2" "$MNT" || exit 90; shift 2; "$@"' _ "$off" "$img" "$@"
	local rc=$?
	rmdir "$MNT" 2>/dev/null
	return $rc
}

# The image's file tree (see treehash.py) for comparing two builds.
tree_manifest() { python3 "$TOP/tests/integration/treehash.py" "$1"; }
