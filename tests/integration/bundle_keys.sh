#!/bin/bash
# A bundle whose X.509 certificate and key live outside the recipe's
# directory (a secrets directory of the build machine), named through
# declared variables (--set, then the environment).  Checked: validate
# --set; the build signs with that key (openssl verifies the manifest, and
# unbundle restores the image with it); the key's content is nowhere in
# STATE, the output or the journal; moved elsewhere, the same files keep
# the bundle stage done (`amiforge plan`), other content makes it run; a key
# others may read gets a warning; a recipe's own file parameters still may
# not leave its directory; a variable named like the key itself is refused.
. "$(dirname "$0")/lib.sh"
TESTS="keys-validate-set keys-validate-unset keys-validate-missing keys-build keys-signature keys-unbundle
keys-not-copied keys-moved-done keys-changed-run keys-mode-warning keys-script-inside keys-credential-name
keys-no-leaks"
require_root $TESTS
require_loop $TESTS
command -v openssl >/dev/null || skip_all "needs the openssl command" $TESTS

# A self-signed pair in DIR (cert.pem, pk.pem 0600), as a user keeps one.
make_pair() { # DIR
	mkdir -p "$1" && chmod 700 "$1"
	(umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=amiforge-test \
		-keyout "$1/pk.pem" -out "$1/cert.pem" 2>/dev/null)
}

R=$WORK/repo
mkdir -p "$R"
cat >"$R/b.yaml" <<'EOF'
name: keys-test
env: [BUNDLE_CERT_FILE, BUNDLE_PRIVATE_KEY_FILE]
stages:
  - allocate: {size: 8MiB}
  - bundle:
      account: "111122223333"
      region: eu-west-1
      cert: ${BUNDLE_CERT_FILE}
      key: ${BUNDLE_PRIVATE_KEY_FILE}
EOF
A=$WORK/secrets-a
make_pair "$A" || { not_ok "keys-setup openssl req"; exit 1; }
SETS=(--set "BUNDLE_CERT_FILE=$A/cert.pem" --set "BUNDLE_PRIVATE_KEY_FILE=$A/pk.pem")
S=$WORK/state

"$AMIFORGE" validate "$R/b.yaml" "${SETS[@]}" >"$WORK/v.out" 2>&1
check keys-validate-set bash -c '[ "$0" = 0 ] && ! [ -s "$1" ]' "$?" "$WORK/v.out"
"$AMIFORGE" validate "$R/b.yaml" >"$WORK/v0.out" 2>&1
check keys-validate-unset bash -c '[ "$0" = 65 ] && grep -q "b.yaml:8:13: undefined variable .BUNDLE_CERT_FILE.; set it with --set BUNDLE_CERT_FILE=VALUE" "$1"' "$?" "$WORK/v0.out"
"$AMIFORGE" validate "$R/b.yaml" --set "BUNDLE_CERT_FILE=$A/cert.pem" --set "BUNDLE_PRIVATE_KEY_FILE=$A/gone.pem" >"$WORK/vm.out" 2>&1
check keys-validate-missing bash -c '[ "$0" = 65 ] && grep -qF "b.yaml:9:12: parameter '"'"'key'"'"' of stage '"'"'bundle'"'"': cannot use '"'"'$2/gone.pem'"'"': No such file or directory" "$1"' "$?" "$WORK/vm.out" "$A"

if "$AMIFORGE" build "$R/b.yaml" --state "$S" "${SETS[@]}" >"$WORK/build.out" 2>&1; then ok keys-build; else cat "$WORK/build.out"; not_ok keys-build; fi
M=$S/bundle/keys-test.manifest.xml
# The manifest is signed with the key from outside: its certificate verifies it.
python3 - "$M" "$WORK/signed" "$WORK/sig.bin" <<'PY'
import sys
t = open(sys.argv[1]).read()
def sub(tag):
    s = t.find("<%s>" % tag); e = t.find("</%s>" % tag, s) + len(tag) + 3
    return t[s:e]
open(sys.argv[2], "w").write(sub("machine_configuration") + sub("image"))
s = t.find("<signature>") + 11
open(sys.argv[3], "wb").write(bytes.fromhex(t[s:t.find("</signature>")]))
PY
openssl x509 -in "$A/cert.pem" -pubkey -noout >"$WORK/pub.pem"
check keys-signature bash -c '"$@" >/dev/null' _ openssl dgst -sha1 -verify "$WORK/pub.pem" -signature "$WORK/sig.bin" "$WORK/signed"
check keys-unbundle bash -c '"$0" -q unbundle "$1" --key "$2" -o "$3" && cmp "$3" "$4"' "$AMIFORGE" "$M" "$A/pk.pem" "$WORK/back.img" "$S/disk.img"
# Neither the key file nor a line of it anywhere in STATE or the output;
# its path may appear (plan --json shows it).
"$AMIFORGE" plan "$R/b.yaml" --state "$S" --json "${SETS[@]}" >"$WORK/plan.json" 2>&1
check keys-not-copied bash -c 'k=$(sed -n 5p "$0/pk.pem"); [ ${#k} -ge 60 ] &&
	! grep -rqF -- "$k" "$1" "$2" "$3" && [ -z "$(find "$1" -name "pk.pem")" ] &&
	grep -qF "$0/pk.pem" "$3"' "$A" "$S" "$WORK/build.out" "$WORK/plan.json"

# Another machine: the same files elsewhere, named by the environment.
B=$WORK/elsewhere/keys
mkdir -p "$WORK/elsewhere" && mv "$A" "$B"
BUNDLE_CERT_FILE=$B/cert.pem BUNDLE_PRIVATE_KEY_FILE=$B/pk.pem "$AMIFORGE" plan "$R/b.yaml" --state "$S" >"$WORK/plan1.out" 2>&1
check keys-moved-done bash -c '[ "$0" = 0 ] && grep -qE "^ *1 +allocate +done " "$1" && grep -qE "^ *2 +bundle +done " "$1"' "$?" "$WORK/plan1.out"
# A new pair there: the bundle must run again, the disk stays done.
rm -f "$B"/*.pem && make_pair "$B"
BUNDLE_CERT_FILE=$B/cert.pem BUNDLE_PRIVATE_KEY_FILE=$B/pk.pem "$AMIFORGE" plan "$R/b.yaml" --state "$S" >"$WORK/plan2.out" 2>&1
check keys-changed-run bash -c '[ "$0" = 0 ] && grep -qE "^ *1 +allocate +done " "$1" && grep -qE "^ *2 +bundle +run " "$1"' "$?" "$WORK/plan2.out"

# A key others may read: valid and built all the same, with a warning on the
# terminal saying what to do; none while it is private.
grep -q "readable by group or others" "$WORK/build.out" "$WORK/plan1.out" && not_ok "keys-mode-warning (0600 key)"
chmod 644 "$B/pk.pem"
export BUNDLE_CERT_FILE=$B/cert.pem BUNDLE_PRIVATE_KEY_FILE=$B/pk.pem
"$AMIFORGE" validate "$R/b.yaml" >"$WORK/v2.out" 2>&1
v=$?
"$AMIFORGE" build "$R/b.yaml" --state "$S" >"$WORK/build2.out" 2>&1
check keys-mode-warning bash -c 'w="amiforge: warning: bundle key '"'"'$3/pk.pem'"'"' is readable by group or others (mode 0644): anyone who can read it can decrypt the bundle; chmod 600 '"'"'$3/pk.pem'"'"'"
	[ "$0" = 0 ] && [ "$1" = 0 ] && grep -qxF "$w" "$2" && grep -qxF "$w" "$4"' "$v" "$?" "$WORK/v2.out" "$B" "$WORK/build2.out"
unset BUNDLE_CERT_FILE BUNDLE_PRIVATE_KEY_FILE

# A recipe's own files (run's script) still stay inside its directory.
cat >"$R/s.yaml" <<EOF
name: script-outside
stages:
  - allocate: {size: 8MiB}
  - mkfs: {}
  - run: {script: $B/cert.pem}
EOF
"$AMIFORGE" validate "$R/s.yaml" >"$WORK/s.out" 2>&1
check keys-script-inside bash -c '[ "$0" = 65 ] && grep -q "must name a file inside the recipe.s directory, got .*; put the file beside the recipe" "$1"' "$?" "$WORK/s.out"
# Where the key is may be named; the key itself may not.
sed 's/BUNDLE_PRIVATE_KEY_FILE/BUNDLE_PRIVATE_KEY/g' "$R/b.yaml" >"$R/c.yaml"
"$AMIFORGE" validate "$R/c.yaml" --set "BUNDLE_CERT_FILE=$B/cert.pem" >"$WORK/c.out" 2>&1
check keys-credential-name bash -c '[ "$0" = 65 ] && grep -q "c.yaml:2:25: variable .BUNDLE_PRIVATE_KEY. in env looks like a credential" "$1"' "$?" "$WORK/c.out"
check keys-no-leaks no_leaks "$WORK"
exit $T_FAILED
