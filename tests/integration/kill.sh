#!/bin/bash
# SIGKILL during debootstrap and during a run stage: afterwards no mount, loop
# device or process of the build remains, and the next build completes.  The
# final image's file tree equals a clean build's.
. "$(dirname "$0")/lib.sh"
TESTS="kill-debootstrap no-leaks-after-debootstrap-kill kill-run found-chrooted-sleep no-leaks-after-run-kill resume-after-kills clean-build same-tree"
require_root $TESTS
require_loop $TESTS
require_network $TESTS

R=$RECIPES/kill.yaml S=$WORK/killed

# Waits until the journal shows stage_start for ID, then SECONDS more; returns
# 1 if the build exited first.
wait_stage() { # PID ID EXTRA_SECONDS
	local i
	for i in $(seq 600); do
		kill -0 "$1" 2>/dev/null || return 1
		if grep -q "\"stage_start\".*\"id\":\"$2\"" "$S/journal" 2>/dev/null ||
			grep -q "\"stage_start\".*\"id\": \"$2\"" "$S/journal" 2>/dev/null; then
			sleep "$3"; kill -0 "$1" 2>/dev/null; return
		fi
		sleep 0.5
	done
	return 1
}

"$AMIFORGE" build "$R" --state "$S" >"$WORK/k1.out" 2>&1 &
pid=$!
if wait_stage $pid debootstrap 8; then
	kill -KILL $pid; wait $pid 2>/dev/null
	ok kill-debootstrap
else
	wait $pid; cat "$WORK/k1.out"; not_ok kill-debootstrap
fi
check no-leaks-after-debootstrap-kill no_leaks "$S"

"$AMIFORGE" build "$R" --state "$S" --set SLEEP=120 >"$WORK/k2.out" 2>&1 &
pid=$!
if wait_stage $pid nap 2; then
	# the stage's sleep, jailed in the image: a descendant of the build
	for p in $(pgrep -x sleep); do
		q=$p
		while [ "$q" -gt 1 ] && [ "$q" != "$pid" ]; do
			q=$(awk '/^PPid:/ {print $2}' "/proc/$q/status" 2>/dev/null || echo 1)
		done
		[ "$q" = "$pid" ] && sleeper=$p
	done
	kill -KILL $pid; wait $pid 2>/dev/null
	ok kill-run
else
	wait $pid; cat "$WORK/k2.out"; not_ok kill-run
fi
check found-chrooted-sleep test -n "${sleeper:-}"
check no-leaks-after-run-kill bash -c 'no_leaks "$0" && ! kill -0 "$1" 2>/dev/null' "$S" "${sleeper:-999999}"

if "$AMIFORGE" build "$R" --state "$S" >"$WORK/k3.out" 2>&1; then ok resume-after-kills; else cat "$WORK/k3.out"; not_ok resume-after-kills; fi

C=$WORK/clean
if "$AMIFORGE" build "$R" --state "$C" >"$WORK/c.out" 2>&1; then ok clean-build; else cat "$WORK/c.out"; not_ok clean-build; fi
with_image "$S/disk.img" 0 bash -c 'python3 "$0" "$MNT"' "$TOP/tests/integration/treehash.py" >"$WORK/tree-killed"
with_image "$C/disk.img" 0 bash -c 'python3 "$0" "$MNT"' "$TOP/tests/integration/treehash.py" >"$WORK/tree-clean"
if [ -s "$WORK/tree-clean" ] && diff -u "$WORK/tree-clean" "$WORK/tree-killed" >"$WORK/tree.diff"; then
	ok same-tree
else
	head -40 "$WORK/tree.diff"; not_ok same-tree
fi
exit $T_FAILED
