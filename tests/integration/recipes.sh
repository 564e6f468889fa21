#!/bin/bash
# `amiforge validate` on every malformed recipe (exit 65, stderr equal to
# NAME.expected) and on every good one (exit 0, silent).  NAME.args, when
# present, holds VAR=VALUE lines put in the environment for that recipe.
# Prints "ok NAME", "not ok NAME" with a diff, or "skip NAME: REASON".
set -u
cd "${TOP:-$(dirname "$0")/../..}" || exit 1
AMIFORGE=${AMIFORGE:-$PWD/build/amiforge}
tmp=$(mktemp -d /tmp/amiforge-recipes.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

bad=(tests/recipes/bad/*.yaml)
good=(recipes/*.yaml tests/recipes/good/*.yaml)

if [ ! -x "$AMIFORGE" ]; then
	for f in "${bad[@]}"; do
		[ -e "$f" ] && echo "skip bad/$(basename "$f" .yaml): $AMIFORGE is not built (make)"
	done
	for f in "${good[@]}"; do
		[ -e "$f" ] && echo "skip valid/$f: $AMIFORGE is not built (make)"
	done
	exit 0
fi

for f in "${bad[@]}"; do
	[ -e "$f" ] || continue
	name=${f%.yaml}
	envs=()
	if [ -f "$name.args" ]; then
		mapfile -t envs < "$name.args"
	fi
	env ${envs[@]+"${envs[@]}"} "$AMIFORGE" validate "$f" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ ! -f "$name.expected" ]; then
		echo "not ok bad/$(basename "$name"): no $name.expected"
	elif [ $rc = 65 ] && [ ! -s "$tmp/out" ] && diff -u "$name.expected" "$tmp/err" >"$tmp/diff"; then
		echo "ok bad/$(basename "$name")"
	else
		echo "not ok bad/$(basename "$name"): exit $rc (want 65)"
		diff -u "$name.expected" "$tmp/err" | sed 's/^/    /'
		[ -s "$tmp/out" ] && sed 's/^/    stdout: /' "$tmp/out"
	fi
done

for f in "${good[@]}"; do
	[ -e "$f" ] || continue
	"$AMIFORGE" validate "$f" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ $rc = 0 ] && [ ! -s "$tmp/out" ] && [ ! -s "$tmp/err" ]; then
		echo "ok valid/$f"
	else
		echo "not ok valid/$f: exit $rc (want 0, silent)"
		sed 's/^/    /' "$tmp/out" "$tmp/err"
	fi
done

# All recipes at once: every diagnostic of each, exit 65.
"$AMIFORGE" validate tests/recipes/bad/missing-name.yaml tests/recipes/good/minimal.yaml \
	tests/recipes/bad/bad-size.yaml >"$tmp/out" 2>"$tmp/err"
rc=$?
cat tests/recipes/bad/missing-name.expected tests/recipes/bad/bad-size.expected >"$tmp/want"
if [ $rc = 65 ] && diff -u "$tmp/want" "$tmp/err" >/dev/null; then
	echo "ok validate-several"
else
	echo "not ok validate-several: exit $rc (want 65)"
	diff -u "$tmp/want" "$tmp/err" | sed 's/^/    /'
fi

# --set reaches the loader: an undefined variable becomes defined.
"$AMIFORGE" validate --set AMIFORGE_TEST_SIZE=2GiB tests/recipes/bad/env-bad-size.yaml >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc = 0 ] && [ ! -s "$tmp/err" ]; then
	echo "ok validate-set"
else
	echo "not ok validate-set: exit $rc (want 0)"
	sed 's/^/    /' "$tmp/err"
fi

# The stage order is checked by plan and build too, before any state exists.
for name in order-fstab-before-mkfs combo-pvgrub-hvm; do
	for cmd in plan build; do
		"$AMIFORGE" $cmd "tests/recipes/bad/$name.yaml" --state "$tmp/state-$cmd" >"$tmp/out" 2>"$tmp/err"
		rc=$?
		if [ $rc = 65 ] && diff -u "tests/recipes/bad/$name.expected" "$tmp/err" >/dev/null && [ ! -e "$tmp/state-$cmd" ]; then
			echo "ok order-$cmd/$name"
		else
			echo "not ok order-$cmd/$name: exit $rc (want 65, the .expected lines, no state)"
			diff -u "tests/recipes/bad/$name.expected" "$tmp/err" | sed 's/^/    /'
		fi
	done
done
