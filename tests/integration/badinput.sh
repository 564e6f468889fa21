#!/bin/bash
# Bad input ends with a clear message, a non-zero exit and nothing mounted:
# not root, a state directory that cannot be created, a full disk (a small
# tmpfs as STATE), a size too small for debootstrap, a mirror that does not
# answer, a second build on a locked state, SIGTERM.
. "$(dirname "$0")/lib.sh"
TESTS="not-root-77 state-uncreatable state-full image-too-small dead-mirror locked-state sigterm-130 badinput-no-leaks"
require_root $TESTS
require_loop $TESTS

Q=$RECIPES/nodebootstrap.yaml
setpriv --reuid=65534 --regid=65534 --clear-groups "$AMIFORGE" build "$Q" --state /tmp/amiforge-nobody-$$ >"$WORK/nr.out" 2>&1
rc=$?
check not-root-77 bash -c '[ $0 = 77 ] && grep -q "needs root" "$1"' $rc "$WORK/nr.out"

"$AMIFORGE" build "$Q" --state /proc/amiforge-no-such-dir >"$WORK/sc.out" 2>&1
rc=$?
check state-uncreatable bash -c '[ $0 = 1 ] && grep -q "/proc/amiforge-no-such-dir" "$1" && grep -q "state directory" "$1"' $rc "$WORK/sc.out"

# These two need the Debian mirror.
if have_network; then
	# A 64 MiB tmpfs as STATE: debootstrap fills it through the image.
	mkdir -p "$WORK/tiny"
	unshare -m --propagation private bash -c 'mount -t tmpfs -o size=64m tmpfs "$1" && "$2" build "$3" --state "$1/state"' \
		_ "$WORK/tiny" "$AMIFORGE" "$RECIPES/fill.yaml" >"$WORK/full.out" 2>&1
	rc=$?
	check state-full bash -c '[ $0 = 1 ] && grep -q "the filesystem holding .*/tiny/state has only .* free (No space left on device)" "$1"' $rc "$WORK/full.out"

	"$AMIFORGE" build "$RECIPES/small.yaml" --state "$WORK/small" >"$WORK/small.out" 2>&1
	rc=$?
	check image-too-small bash -c '[ $0 = 1 ] && grep -q "stage 4 .debootstrap." "$1" && grep -q "the image.s filesystem is full" "$1"' $rc "$WORK/small.out"
else
	skip state-full "the host's Debian mirror does not answer"
	skip image-too-small "the host's Debian mirror does not answer"
fi

# A server that accepts connections and never answers.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True); time.sleep(300)' >"$WORK/port" &
blackhole=$!
for i in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
port=$(cat "$WORK/port")
start=$SECONDS
"$AMIFORGE" build "$RECIPES/deadmirror.yaml" --state "$WORK/dead" --set MIRROR="http://127.0.0.1:$port/debian" >"$WORK/dead.out" 2>&1 &
b1=$!
sleep 3
"$AMIFORGE" build "$RECIPES/deadmirror.yaml" --state "$WORK/dead" --set MIRROR="http://127.0.0.1:$port/debian" >"$WORK/lock.out" 2>&1
rc=$?
check locked-state bash -c '[ $0 = 1 ] && grep -q "another amiforge build" "$1"' $rc "$WORK/lock.out"
wait $b1
rc=$?
check dead-mirror bash -c '[ $0 = 1 ] && grep -q "does not answer" "$1" && [ $2 -lt 120 ]' $rc "$WORK/dead.out" $((SECONDS - start))

"$AMIFORGE" build "$RECIPES/deadmirror.yaml" --state "$WORK/dead2" --set MIRROR="http://127.0.0.1:$port/debian" >"$WORK/term.out" 2>&1 &
b2=$!
for i in $(seq 100); do grep -q '"debootstrap"' "$WORK/dead2/journal" 2>/dev/null && break; sleep 0.2; done
sleep 1
kill -TERM $b2
wait $b2
rc=$?
check sigterm-130 bash -c '[ $0 = 130 ] && grep -q "interrupted" "$1"' $rc "$WORK/term.out"
kill $blackhole 2>/dev/null
check badinput-no-leaks no_leaks "$WORK"
exit $T_FAILED
