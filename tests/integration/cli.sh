#!/bin/bash
# The command line without root: usage errors, validate, stages, plan.
. "$(dirname "$0")/lib.sh"
[ -x "$AMIFORGE" ] || skip_all "no binary at $AMIFORGE" cli

"$AMIFORGE" >/dev/null 2>&1; check no-command-2 test $? = 2
"$AMIFORGE" frobnicate >/dev/null 2>"$WORK/e"; rc=$?
check unknown-command-2 bash -c '[ $0 = 2 ] && grep -q "not an amiforge command" "$1"' $rc "$WORK/e"
"$AMIFORGE" build >/dev/null 2>&1; check build-needs-recipe-2 test $? = 2
"$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --bogus >/dev/null 2>&1; check bad-option-2 test $? = 2
"$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --set NOEQUALS >/dev/null 2>"$WORK/e"; rc=$?
check set-needs-equals bash -c '[ $0 = 2 ] && grep -q "VAR=VALUE" "$1"' $rc "$WORK/e"
check help bash -c '"$0" --help | grep -q "^usage: amiforge"' "$AMIFORGE"
check version bash -c '"$0" version | grep -q "^amiforge [0-9]"' "$AMIFORGE"

"$AMIFORGE" stages >"$WORK/stages"
check stages-lists-all bash -c 'for t in allocate debootstrap fstab makedev mkfs partition run; do grep -q "^$t: " "$0" || exit 1; done' "$WORK/stages"

check validate-good "$AMIFORGE" validate "$TOP"/recipes/*.yaml "$TOP"/tests/integration/recipes/*.yaml --set MIRROR=http://127.0.0.1/debian
"$AMIFORGE" validate "$TOP/tests/no-such-recipe.yaml" 2>"$WORK/e"; rc=$?
check validate-missing-65 bash -c '[ $0 = 65 ] && grep -q "no-such-recipe.yaml: cannot read" "$1"' $rc "$WORK/e"

"$AMIFORGE" plan "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" >"$WORK/plan"
check plan-format bash -c '[ $(wc -l <"$0") = 4 ] && grep -qx "1 allocate run [0-9a-f]\{12\}" "$0" && grep -qx "4 makedev run [0-9a-f]\{12\}" "$0"' "$WORK/plan"
"$AMIFORGE" plan "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" --set LABEL=x >"$WORK/plan2"
check plan-key-changes bash -c '[ "$(head -2 "$0")" = "$(head -2 "$1")" ] && [ "$(sed -n 3p "$0")" != "$(sed -n 3p "$1")" ] && [ "$(sed -n 4p "$0")" != "$(sed -n 4p "$1")" ]' "$WORK/plan" "$WORK/plan2"
"$AMIFORGE" build "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" --from nosuch >/dev/null 2>"$WORK/e"; rc=$?
check from-unknown-2 bash -c '[ $0 = 2 ] && grep -q "no stage with that id" "$1"' $rc "$WORK/e"
check status-empty bash -c '"$0" status --state "$1" | grep -q "no build has run here"' "$AMIFORGE" "$WORK/none"
exit $T_FAILED
