#!/bin/bash
# The instance-store path end to end: bundle -> upload to s3rver -> register
# with ImageLocation on fakeaws.py, paravirtual with the region's PV-GRUB AKI.
# Checked: the manifest and every part are in the bucket, the AMI's
# ImageLocation names the uploaded manifest, its kernel is the AKI; nothing
# secret in any output; nothing left on the host.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="instance-store-build manifest-and-parts-in-s3 ami-image-location ami-paravirtual-aki no-leaks"
require_root $TESTS
require_loop $TESTS
require_botocore $TESTS
S3RVER=$TOP/tests/servers/s3rver/node_modules/.bin/s3rver
[ -x "$S3RVER" ] || skip_all "needs s3rver (make test-servers installs it with npm)" $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

node --openssl-legacy-provider "$S3RVER" -d "$WORK/s3" -a 127.0.0.1 -p 0 >"$WORK/s3rver.log" 2>&1 &
SERVER_PIDS+=($!)
s3port=
for i in $(seq 100); do
	s3port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/s3rver.log")
	[ -n "$s3port" ] && break
	sleep 0.1
done
[ -n "$s3port" ] || { not_ok "s3rver starts"; cat "$WORK/s3rver.log"; exit 1; }
# s3rver knows the key S3RVER (any secret); fakeaws learns the same pair, so
# one set of credentials serves both, and the secret is the run's.
control "{\"op\": \"creds\", \"access_key\": \"S3RVER\", \"secret_key\": \"$T_SECRET\"}"
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$s3port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=$T_SECRET

cat >"$WORK/is.yaml" <<'YAML'
name: it-instance-store
stages:
  - allocate: {size: 24MiB}
  - partition: {table: none}
  - mkfs: {label: isroot, pvgrub_compatible: true}
  - bundle: {account: "111122223333", x509: generate}
  - upload: {bucket: images, prefix: it, create_bucket: true}
  - register: {virtualization: paravirtual}
YAML
S=$WORK/is OUT=$WORK/out.build
if "$AMIFORGE" build "$WORK/is.yaml" --state "$S" >"$OUT" 2>&1; then ok instance-store-build; else tail -30 "$OUT"; not_ok instance-store-build; exit 1; fi

fact() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"][sys.argv[2]])' "$S/manifest.json" "$1"; }
loc=$(fact bundle.manifest_location) ami=$(fact ami.id) nparts=$(fact bundle.parts)
# s3rver keeps objects as files under its directory: BUCKET/KEY._S3rver_object
check manifest-and-parts-in-s3 bash -c '[ "$0" = images/it/it-instance-store.manifest.xml ] &&
	[ -f "$1/images/it/it-instance-store.manifest.xml._S3rver_object" ] &&
	[ "$(ls "$1"/images/it/it-instance-store.part.*._S3rver_object | wc -l)" = "$2" ] &&
	cmp -s "$1/images/it/it-instance-store.manifest.xml._S3rver_object" "$3/bundle/it-instance-store.manifest.xml"' \
	"$loc" "$WORK/s3" "$nparts" "$S"
"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 \
	-d "Action=DescribeImages&Version=2016-11-15&ImageId.1=$ami" >"$WORK/out.describe" 2>"$WORK/err.describe"
check ami-image-location grep -q "<imageLocation>$loc</imageLocation>" "$WORK/out.describe"
check ami-paravirtual-aki bash -c 'grep -q "<kernelId>aki-dc9ed9af</kernelId>" "$0" && grep -q "<virtualizationType>paravirtual</virtualizationType>" "$0"' "$WORK/out.describe"
check_no_secrets
stop_servers
check no-leaks no_leaks "$WORK"
exit $T_FAILED
