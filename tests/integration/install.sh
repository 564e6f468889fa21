#!/bin/bash
# make install / make uninstall into a DESTDIR: every file with its mode, both
# man pages rendered with man -l (every command in amiforge(1), every stage
# and parameter in amiforge-recipe(5)), bash completion.
. "$(dirname "$0")/lib.sh"
NAMES="install-files install-modes man1-renders man1-commands man1-usage-commands man5-renders man5-stages completion-commands
completion-ami-subcommands completion-options completion-from-ids uninstall-clean"
# shellcheck disable=SC2086
[ -x "$AMIFORGE" ] || skip_all "no binary at $AMIFORGE" $NAMES
# shellcheck disable=SC2086
command -v scdoc >/dev/null || skip_all "needs scdoc (make check installs it)" $NAMES
BUILD_DIR=${BUILD_DIR:-$(dirname "$AMIFORGE")}
ROOT=$WORK/root
P=$ROOT/usr/local

# Plain make in the source tree with the test's build directory; -o: the
# binary under test is installed as it is, never rebuilt (an ASan build's
# flags are not make's defaults).
B=$(basename "$BUILD_DIR")
if ! make -C "$TOP" -s install -o "$B/amiforge" DESTDIR="$ROOT" PREFIX=/usr/local BUILD="$B" >"$WORK/make.log" 2>&1; then
	cat "$WORK/make.log"
	# shellcheck disable=SC2086
	for n in $NAMES; do not_ok "$n"; done
	exit 1
fi

# FILE MODE pairs that must be there.
expect=("bin/amiforge 755" "share/man/man1/amiforge.1 644" "share/man/man5/amiforge-recipe.5 644"
	"share/bash-completion/completions/amiforge 644")
for f in "$TOP"/recipes/*.yaml; do expect+=("share/amiforge/recipes/${f##*/} 644"); done
for f in "$TOP"/data/ec2-certs/*; do expect+=("share/amiforge/ec2-certs/${f##*/} 644"); done
for f in "$TOP"/schemas/*.json; do [ -e "$f" ] && expect+=("share/amiforge/schemas/${f##*/} 644"); done
while read -r f; do expect+=("share/amiforge/$f 644"); done < <(cd "$TOP" && find examples -type f)
missing="" badmode=""
for e in "${expect[@]}"; do
	f=${e% *} m=${e##* }
	if [ ! -f "$P/$f" ]; then missing+=" $f"; continue; fi
	[ "$(stat -c %a "$P/$f")" = "$m" ] || badmode+=" $f:$(stat -c %a "$P/$f")"
done
check install-files test -z "$missing"
[ -z "$missing" ] || echo "  missing:$missing"
# Nothing else, nothing writable by others, directories 755.
extra=$(cd "$ROOT" && find . \( -type f -o -type l \) | sed 's|^\./usr/local/||' | sort |
	comm -23 - <(for e in "${expect[@]}"; do echo "${e% *}"; done | sort))
others=$(find "$ROOT" -perm /022 ! -type l)
baddirs=$(find "$P" -type d ! -perm 755)
check install-modes test -z "$badmode$extra$others$baddirs"
[ -z "$badmode$extra$others$baddirs" ] && cmp -s "$BUILD_DIR/amiforge" "$P/bin/amiforge" ||
	echo "  modes:$badmode extra: $extra others: $others dirs: $baddirs"

# man -l renders them; --nh: no hyphenation, so that names are never split.
render() { MANWIDTH=80 man --nh --nj -l "$1" 2>"$WORK/man.err" | col -bx; }
render "$P/share/man/man1/amiforge.1" >"$WORK/man1"
check man1-renders bash -c 'grep -q "^NAME" "$0" && grep -q "amiforge - build" "$0" && ! [ -s "$1" ]' "$WORK/man1" "$WORK/man.err"
missing=""
for c in build plan validate status clean stages schema boot-test unbundle "aws request" iam-policy version \
	"clean --remote" "ami list" "ami create" "ami copy" "ami share" "ami expire" "ami deregister" "ami purge" \
	"ami convert" AMIFORGE_REMOTE AWS_ACCESS_KEY_ID AWS_REGION "EXIT STATUS" ENVIRONMENT FILES STATE/journal; do
	grep -qF -- "$c" "$WORK/man1" || missing+=" [$c]"
done
check man1-commands test -z "$missing"
[ -z "$missing" ] || echo "  not in amiforge(1):$missing"
# Every command the usage lists (first word after two spaces) is in the page.
missing=""
for c in $("$AMIFORGE" --help | awk '/^  [a-z]/ {sub(/,$/, "", $1); print $1}'); do
	grep -qE "(^| )$c( |$)" "$WORK/man1" || missing+=" [$c]"
done
for c in $("$AMIFORGE" ami --help | awk '/^  [a-z]/ {print $1}'); do
	grep -qF "ami $c" "$WORK/man1" || missing+=" [ami $c]"
done
check man1-usage-commands test -z "$missing"
[ -z "$missing" ] || echo "  in --help, not in amiforge(1):$missing"

render "$P/share/man/man5/amiforge-recipe.5" >"$WORK/man5"
check man5-renders bash -c 'grep -q "^NAME" "$0" && grep -q "amiforge-recipe - " "$0" && ! [ -s "$1" ]' "$WORK/man5" "$WORK/man.err"
# `amiforge stages`: "TYPE: summary" lines, then parameters indented 4+ spaces.
"$AMIFORGE" stages >"$WORK/stages"
missing="" n=0
while IFS= read -r line; do
	if [[ $line =~ ^([a-z_]+):\  ]]; then
		stage=${BASH_REMATCH[1]} n=$((n + 1))
		# The stage's section: its heading, indented 3 (a subsection).
		sed -n "/^   $stage\$/,/^   [a-z_]*\$/p" "$WORK/man5" >"$WORK/sec"
		[ -s "$WORK/sec" ] || missing+=" [$stage]"
	elif [[ $line =~ ^\ {4,}([a-z_0-9]+)\ +[a-z]+\  ]]; then
		grep -qE "^ +${BASH_REMATCH[1]} \(" "$WORK/sec" || missing+=" [$stage.${BASH_REMATCH[1]}]"
	fi
done <"$WORK/stages"
check man5-stages test -z "$missing" -a "$n" -ge 15
[ -z "$missing" ] || echo "  not in amiforge-recipe(5) ($n stages):$missing"

# Bash completion, with bash-completion's helpers, as an interactive shell loads it.
if [ -r /usr/share/bash-completion/bash_completion ]; then
	cat >"$WORK/comp.sh" <<'EOF'
. /usr/share/bash-completion/bash_completion
. "$1"
cd "$2"
comp() { # WORDS...: the completions of the last word, sorted, on one line
	COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_amiforge amiforge "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}
echo "cmd=$(comp amiforge b)"
echo "ami=$(comp amiforge ami p)"
echo "opt=$(comp amiforge build --f)"
echo "from=$(comp "$3" build recipes/debian-12-minimal.yaml --from '')"
echo "file=$(comp amiforge validate recipes/debian-12-m)"
EOF
	bash "$WORK/comp.sh" "$P/share/bash-completion/completions/amiforge" "$TOP" "$P/bin/amiforge" >"$WORK/comp" 2>&1
	ids=$("$AMIFORGE" plan "$TOP/recipes/debian-12-minimal.yaml" --state "$WORK/nostate" | awk '{print $2}' | sort | tr '\n' ' ')
	check completion-commands grep -qx "cmd=boot-test build " "$WORK/comp"
	check completion-ami-subcommands grep -qx "ami=purge " "$WORK/comp"
	check completion-options bash -c 'grep -qx "opt=--fresh --from " "$0" && grep -qx "file=recipes/debian-12-minimal.yaml " "$0"' "$WORK/comp"
	check completion-from-ids bash -c '[ -n "$1" ] && grep -qxF "from=$1" "$0"' "$WORK/comp" "$ids"
	grep -q "^from=$ids\$" "$WORK/comp" && grep -q "^cmd=boot-test build \$" "$WORK/comp" || cat "$WORK/comp"
else
	for n in completion-commands completion-ami-subcommands completion-options completion-from-ids; do
		skip "$n" "needs bash-completion (make check installs it)"
	done
fi

make -C "$TOP" -s uninstall DESTDIR="$ROOT" PREFIX=/usr/local BUILD="$B" >"$WORK/make.log" 2>&1 ||
	cat "$WORK/make.log"
left=$(find "$ROOT" ! -type d)
check uninstall-clean bash -c '[ -z "$0" ] && ! [ -e "$1/share/amiforge" ]' "$left" "$P"
[ -z "$left" ] || echo "  left behind: $left"
exit $T_FAILED
