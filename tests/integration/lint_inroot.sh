#!/bin/bash
# tests/lint/inroot.sh: no code joins a path under the image root and hands
# it to a path-taking call (the in-root API is the one way into the image);
# and the lint itself catches each kind of violation planted in a copy.
. "$(dirname "$0")/lib.sh"
LINT=$TOP/tests/lint/inroot.sh

"$LINT" "$TOP" >"$WORK/out" 2>&1; rc=$?
if [ $rc = 0 ]; then ok "lint-inroot-clean"; else cat "$WORK/out"; not_ok "lint-inroot-clean"; fi

# A copy of the sources with one planted violation per line: the lint must
# fail and name every one of them (and nothing else).
mkdir -p "$WORK/src"
cp -r "$TOP/engine" "$TOP/stages" "$TOP/tools" "$WORK/src/"
base=$(wc -l <"$WORK/src/stages/fstab.c") # the planted lines come after it
cat >>"$WORK/src/stages/fstab.c" <<'C'
static void planted(struct stage_ctx *ctx, const char *root)
{
	char *a = path_join(ctx->root, "etc/fstab");
	int fd = open(a, O_WRONLY | O_TRUNC);
	char *b = xasprintf("%s/etc/hosts", root);
	char buf[64];
	snprintf(buf, sizeof(buf), "%s%s", ctx->root, "/etc/hostname");
	char *c = path_join(b->root_mnt, "tmp");
	char *shown = xasprintf("%s/dev/null", root);
	mknod(shown, S_IFCHR | 0600, 0);
	/* path_join(ctx->root, "in a comment") is prose */
	af_error_set(err, errno, "%s/etc/fstab", root);
}
C
want=$(grep -nE 'path_join\(ctx->root, "etc|%s/etc/hosts|%s%s|root_mnt|mknod\(shown' "$WORK/src/stages/fstab.c" |
	cut -d: -f1 | awk -v base="$base" '$1 > base' | sort -n | tr '\n' ' ')
"$LINT" "$WORK/src" >"$WORK/planted" 2>&1; rc=$?
got=$(sed -n 's|^stages/fstab.c:\([0-9]*\): .*|\1|p' "$WORK/planted" | sort -n | tr '\n' ' ')
others=$(grep -cE '^[a-z]+/[^:]+:[0-9]+: ' "$WORK/planted")
if [ $rc = 1 ] && [ "$got" = "$want" ] && [ "$others" = "$(echo $want | wc -w)" ]; then
	ok "lint-inroot-catches-planted"
else
	echo "rc $rc, flagged lines '$got', planted '$want', findings $others"; cat "$WORK/planted"
	not_ok "lint-inroot-catches-planted"
fi

# An allow-list entry covers its line and only that one.
{ cat "$TOP/tests/lint/inroot.allow"; printf 'stages/fstab.c\tpath_join(b->root_mnt, "tmp")\ta test entry\n'; } >"$WORK/allow"
INROOT_ALLOW=$WORK/allow "$LINT" "$WORK/src" >"$WORK/allowed" 2>&1
check lint-inroot-allow-list bash -c '! grep -q root_mnt "$0" && grep -q "%s/etc/hosts" "$0"' "$WORK/allowed"
exit $T_FAILED
