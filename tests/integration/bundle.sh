#!/bin/bash
# bundle + unbundle: an instance-store bundle built by amiforge (allocate,
# mkfs, bundle with x509: generate and the shipped EC2 certificate) checked
# with independent tools only: openssl pkeyutl unwraps the key and IV,
# openssl enc -d | gunzip | tar -x gives back the image, openssl sha1 of the
# tar stream is the manifest's digest (and GNU tar makes the same stream),
# openssl dgst -sha1 -verify accepts the signature over the two substrings,
# part names and sizes follow ec2-bundle-image's rules.  Then `amiforge
# unbundle` restores the image byte for byte, sparse.  A second bundle of a
# block device holding 30 MiB of random data checks several parts.
. "$(dirname "$0")/lib.sh"
TESTS="bundle-validate bundle-build bundle-x509 bundle-files bundle-unwrap bundle-digest bundle-gnu-tar
bundle-extract bundle-signature bundle-ec2-key bundle-manifest-form unbundle unbundle-sparse unbundle-wrong-key
unbundle-damaged bundle-parts-build bundle-parts-names bundle-parts-unbundle bundle-no-secrets bundle-no-leaks"
require_root $TESTS
require_loop $TESTS
command -v openssl >/dev/null || skip_all "needs the openssl command" $TESTS

# Manifest fields with the regular expressions a shell user would use.
mf() { grep -o "<$2[^>]*>[^<]*</$2>" "$1" | head -1 | sed 's|<[^>]*>||g'; }
signed_part() { python3 -c '
import sys
t = open(sys.argv[1]).read()
def sub(tag):
    s = t.find("<%s>" % tag); e = t.find("</%s>" % tag, s) + len(tag) + 3
    return t[s:e]
sys.stdout.write(sub("machine_configuration") + sub("image"))' "$1"; }
# Part names and sizes: N parts named NAME.part.I, I padded to the digits of
# N, all 10 MiB but the last, bundled_size their sum.  Prints the names.
check_parts() { # MANIFEST DIR NAME
	python3 - "$@" <<'PY'
import os, re, sys
m, d, name = sys.argv[1:4]
t = open(m).read()
names = re.findall(r"<filename>([^<]*)</filename>", t)
n = len(names)
assert re.search(r"<parts count='%d'>" % n, t), "count"
want = ["%s.part.%s" % (name, str(i).rjust(len(str(n)), "0")) for i in range(n)]
assert names == want, (names, want)
sizes = [os.path.getsize(os.path.join(d, x)) for x in names]
assert all(s == 10 * 1024 * 1024 for s in sizes[:-1]) and 0 < sizes[-1] <= 10 * 1024 * 1024, sizes
assert int(re.search(r"<bundled_size>(\d+)<", t).group(1)) == sum(sizes)
on_disk = sorted(x for x in os.listdir(d) if x.startswith(name + ".part."))
assert on_disk == sorted(names), on_disk
print(" ".join(names))
PY
}
export -f check_parts

cat >"$WORK/bad.yaml" <<'EOF'
name: bad
stages:
  - allocate: {size: 8MiB}
  - bundle: {account: "12345", x509: generate}
  - bundle: {account: "111122223333", cert: bad.yaml}
EOF
"$AMIFORGE" validate "$WORK/bad.yaml" >"$WORK/bad.out" 2>&1
rc=$?
check bundle-validate bash -c '[ "$0" = 65 ] && grep -q "not an AWS account number" "$1" && grep -q "bundle needs cert and key" "$1"' "$rc" "$WORK/bad.out"

cat >"$WORK/bt.yaml" <<'EOF'
name: bundle-test
arch: x86_64
stages:
  - allocate: {size: 48MiB}
  - mkfs: {type: ext4, label: rootfs}
  - bundle:
      account: 1111-2222-3333
      x509: generate
      region: eu-west-1
      block_device_mapping: {root: /dev/sda1, ami: sda1}
EOF
S=$WORK/s
if "$AMIFORGE" build "$WORK/bt.yaml" --state "$S" >"$WORK/build.out" 2>&1; then ok bundle-build; else cat "$WORK/build.out"; not_ok bundle-build; fi
M=$S/bundle/bundle-test.manifest.xml
KEY=$S/x509/key.pem
check bundle-x509 bash -c '[ "$(stat -c %a "$0")" = 600 ] && [ "$(stat -c %a "$1")" = 600 ] &&
	openssl x509 -in "$1" -noout && grep -q "BEGIN CERTIFICATE" "$2"/logs/03-bundle.log' "$KEY" "$S/x509/cert.pem" "$S"
check bundle-files bash -c 'check_parts "$@" >/dev/null' _ "$M" "$S/bundle" bundle-test

D=$WORK/check
mkdir -p "$D"
mf "$M" user_encrypted_key | xxd -r -p >"$D/key.bin"
mf "$M" user_encrypted_iv | xxd -r -p >"$D/iv.bin"
K=$(openssl pkeyutl -decrypt -inkey "$KEY" -in "$D/key.bin" 2>/dev/null)
IV=$(openssl pkeyutl -decrypt -inkey "$KEY" -in "$D/iv.bin" 2>/dev/null)
check bundle-unwrap bash -c '[[ "$0" =~ ^[0-9a-f]{32}$ ]] && [[ "$1" =~ ^[0-9a-f]{32}$ ]]' "$K" "$IV"
# shellcheck disable=SC2046
cat $(check_parts "$M" "$S/bundle" bundle-test | sed "s|[^ ]*|$S/bundle/&|g") |
	openssl enc -d -aes-128-cbc -K "$K" -iv "$IV" | gunzip >"$D/stream.tar"
sha=$(openssl sha1 <"$D/stream.tar" | awk '{print $NF}')
check bundle-digest bash -c '[ -n "$0" ] && [ "$0" = "$1" ]' "$sha" "$(mf "$M" digest)"
# GNU tar, run as ec2-bundle-image runs it, makes the very same stream.
mkdir -p "$D/g" && ln -s "$S/disk.img" "$D/g/bundle-test"
check bundle-gnu-tar bash -c '[ "$(tar -c -h -S --owner 0 --group 0 -C "$1" bundle-test | openssl sha1 | awk "{print \$NF}")" = "$0" ]' "$sha" "$D/g"
mkdir -p "$D/x"
check bundle-extract bash -c 'tar -x -f "$0" -C "$1" && cmp "$1/bundle-test" "$2"' "$D/stream.tar" "$D/x" "$S/disk.img"
signed_part "$M" >"$D/signed"
mf "$M" signature | xxd -r -p >"$D/sig.bin"
openssl x509 -in "$S/x509/cert.pem" -pubkey -noout >"$D/pub.pem"
check bundle-signature bash -c '"$@" >/dev/null' _ openssl dgst -sha1 -verify "$D/pub.pem" -signature "$D/sig.bin" "$D/signed"
# cert-ec2.pem is RSA 1024: 128 bytes of ciphertext, 256 hex characters.
check bundle-ec2-key bash -c '[ ${#0} = 256 ] && [ ${#1} = 256 ]' "$(mf "$M" ec2_encrypted_key)" "$(mf "$M" ec2_encrypted_iv)"
check bundle-manifest-form bash -c '
	head -c 60 "$0" | grep -q "^<?xml version='"'"'1.0'"'"'?><manifest><version>2007-10-10</version>" &&
	[ "$(wc -l <"$0")" = 0 ] && ! grep -q "\"" "$0" &&
	grep -q "<kernel_id>aki-dc9ed9af</kernel_id>" "$0" && grep -q "<user>111122223333</user>" "$0" &&
	grep -q "<size>50331648</size>" "$0" &&
	grep -q "<block_device_mapping><mapping><virtual>ami</virtual><device>sda1</device></mapping><mapping><virtual>root</virtual>" "$0"' "$M"

check unbundle bash -c '"$0" -q unbundle "$1" --key "$2" -o "$3" && cmp "$3" "$4"' "$AMIFORGE" "$M" "$KEY" "$D/back.img" "$S/disk.img"
check unbundle-sparse bash -c '[ $(( $(stat -c %b "$0") * 512 )) -lt $((4 * 1024 * 1024)) ]' "$D/back.img"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$D/other.pem" 2>/dev/null
"$AMIFORGE" unbundle "$M" --key "$D/other.pem" -o "$D/other.img" >"$D/other.out" 2>&1
rc=$?
check unbundle-wrong-key bash -c '[ "$0" = 1 ] && grep -q "cannot decrypt the bundle key" "$1" && [ ! -e "$2" ] && [ ! -e "$2.tmp" ]' "$rc" "$D/other.out" "$D/other.img"
mkdir -p "$D/parts" && cp "$S"/bundle/* "$D/parts/" && printf 'X' | dd of="$D/parts/bundle-test.part.0" bs=1 seek=100 conv=notrunc status=none
"$AMIFORGE" unbundle "$M" --key "$KEY" --parts "$D/parts" -o "$D/dam.img" >"$D/dam.out" 2>&1
rc=$?
check unbundle-damaged bash -c '[ "$0" = 1 ] && grep -q "bundle-test.part.0. is damaged" "$1" && [ ! -e "$2" ]' "$rc" "$D/dam.out" "$D/dam.img"

# Several parts: a block device with 30 MiB of random data (read whole).
head -c 40M /dev/zero >"$WORK/dev.img"
head -c 30M /dev/urandom | dd of="$WORK/dev.img" bs=1M seek=5 conv=notrunc status=none
LOOP=$(losetup -f --show "$WORK/dev.img")
trap '[ -n "${LOOP:-}" ] && losetup -d "$LOOP"; cleanup_work' EXIT
cat >"$WORK/dev.yaml" <<EOF
name: devbundle
stages:
  - allocate: {device: $LOOP}
  - bundle: {account: "111122223333", x509: generate, region: us-gov-west-1, name: dev.img, compression: 1}
EOF
S2=$WORK/s2
if "$AMIFORGE" build "$WORK/dev.yaml" --state "$S2" >"$WORK/dev.out" 2>&1; then ok bundle-parts-build; else cat "$WORK/dev.out"; not_ok bundle-parts-build; fi
M2=$S2/bundle/dev.img.manifest.xml
check bundle-parts-names bash -c '[ "$(check_parts "$0" "$1" dev.img)" = "dev.img.part.0 dev.img.part.1 dev.img.part.2 dev.img.part.3" ] &&
	grep -q "<kernel_id>aki-9ee55bff</kernel_id>" "$0" && grep -q "cert-ec2-gov.pem" "$2"/logs/02-bundle.log' "$M2" "$S2/bundle" "$S2"
check bundle-parts-unbundle bash -c '"$0" -q unbundle "$1" --key "$2" -o "$3" && cmp "$3" "$4"' "$AMIFORGE" "$M2" "$S2/x509/key.pem" "$D/dev-back.img" "$WORK/dev.img"
losetup -d "$LOOP" && LOOP=

# The generated private key appears in no log, journal or manifest.
check bundle-no-secrets bash -c 'for s in "$@"; do
	k=$(sed -n 5p "$s/x509/key.pem")
	[ -n "$k" ] || exit 1
	! grep -rqF -- "$k" "$s/logs" "$s/journal" "$s/manifest.json" "$s/bundle" || exit 1
done' _ "$S" "$S2"
check bundle-no-leaks no_leaks "$WORK"
exit $T_FAILED
