#!/bin/bash
# The engine touches files in the image only through the in-root API
# (include/amiforge/inroot.h, DESIGN §6): a path joined under the image root
# and handed to open(2), mkdir(2), unlink(2), mknod(2)... follows whatever
# the image planted there (a symlink to the host, a FIFO, a device node).
#
# This lint greps engine/ and stages/ for:
#  1. a path joined under the image root: path_join(ROOT, ...), or a format
#     starting "%s/" or "%s%s" whose first argument is ROOT (xasprintf,
#     asprintf, snprintf, strbuf_addf), outside error and log messages;
#     ROOT is root, ctx->root, x->root, x.root, root_mnt, x->root_mnt;
#  2. a path-taking call on `shown`, the name reserved for such a join kept
#     for messages only (`shown = xasprintf("%s/etc/x", root)` passes rule 1).
# tests/lint/inroot.allow lists the exceptions, one a line:
#   FILE<TAB>TEXT ON THE LINE<TAB>REASON
# Usage: tests/lint/inroot.sh [TOP]  (exit 0 clean, 1 findings, 2 usage)
set -u
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
allow=${INROOT_ALLOW:-$(cd "$(dirname "$0")" && pwd)/inroot.allow}
[ -d "$top/engine" ] && [ -d "$top/stages" ] || { echo "usage: $0 [TOP] (TOP holds engine/ and stages/)" >&2; exit 2; }

ROOT='([A-Za-z_][A-Za-z0-9_]*(->|\.))*root(_mnt)?'
JOIN="path_join\(\s*$ROOT\s*,|\"%s(/|%s)[^\"]*\"\s*,\s*$ROOT\s*[,)]"
MESSAGE='af_error_(set|wrap|hint)|log_(info|warn|error|debug)|BUG\(|\bshown\s*=\s*x?asprintf\('
CALLS='open|openat|creat|fopen|opendir|mkdir|mkdir_p|rmdir|unlink|remove|rename|link|symlink|lstat|stat|access|chmod|chown|lchown|truncate|mknod|mkfifo|readlink|realpath|utimensat|umount|umount2|mount|read_file|write_file_atomic'
SHOWN="\b($CALLS)\s*\(\s*shown\b"

# Code lines of FILE as "N:TEXT", comments blanked (a line inside a block
# comment, or the part after /* or //), so prose never matches.
code_lines() {
	awk '{
		line = $0; out = ""
		while (length(line) > 0) {
			if (incomment) {
				e = index(line, "*/"); if (!e) { line = ""; break }
				line = substr(line, e + 2); incomment = 0
			} else {
				s = index(line, "/*"); d = index(line, "//")
				if (d && (!s || d < s) && substr(line, d - 1, 1) != ":") { out = out substr(line, 1, d - 1); line = ""; break }
				if (!s) { out = out line; line = ""; break }
				out = out substr(line, 1, s - 1); line = substr(line, s + 2); incomment = 1
			}
		}
		print NR ":" out
	}' "$1"
}

allowed() { # FILE LINE-TEXT: 0 if an allow-list entry covers it
	local f=$1 text=$2 af at ar
	[ -f "$allow" ] || return 1
	while IFS=$'\t' read -r af at ar; do
		case "$af" in '#'* | '') continue ;; esac
		[ "$af" = "$f" ] && [ -n "$at" ] && [[ "$text" == *"$at"* ]] && return 0
	done <"$allow"
	return 1
}

findings=0
cd "$top" || exit 2
for f in engine/*.c engine/*/*.c stages/*.c tools/*.c; do
	[ -f "$f" ] || continue
	while IFS= read -r hit; do
		n=${hit%%:*} text=${hit#*:}
		if printf '%s\n' "$text" | grep -qE "$JOIN" && ! printf '%s\n' "$text" | grep -qE "$MESSAGE"; then
			why="joins a path under the image root"
		elif printf '%s\n' "$text" | grep -qE "$SHOWN"; then
			why="passes 'shown' (a path for messages only) to a path-taking call"
		else
			continue
		fi
		allowed "$f" "$text" && continue
		echo "$f:$n: $why; use the in-root API (include/amiforge/inroot.h) or list it in tests/lint/inroot.allow with a reason:"
		echo "    ${text#"${text%%[![:space:]]*}"}"
		findings=$((findings + 1))
	done < <(code_lines "$f" | grep -E "$JOIN|$SHOWN")
done

# Entries that no longer match anything are worth a look, not a failure.
if [ -f "$allow" ]; then
	while IFS=$'\t' read -r af at ar; do
		case "$af" in '#'* | '') continue ;; esac
		[ -f "$af" ] && grep -qF -- "$at" "$af" || echo "note: $allow: '$af: $at' matches nothing; remove the entry"
	done <"$allow"
fi
[ "$findings" = 0 ] || { echo "$findings place(s) touch the image by a joined path"; exit 1; }
exit 0
