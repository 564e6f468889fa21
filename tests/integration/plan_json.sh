#!/bin/bash
# plan says what each stage will do before anything runs: --json's "will"
# (the expanded AMI name, the regions, the bucket), -v's indented lines; the
# default text plan keeps its one line per stage.  No root, no network.
. "$(dirname "$0")/lib.sh"
NAMES="plan-json-will plan-json-region-option plan-text-unchanged plan-verbose-lines plan-json-no-secret"
[ -x "$AMIFORGE" ] || skip_all "no binary at $AMIFORGE" $NAMES

# The region comes from these files and the options only, never the host's.
unset AWS_REGION AWS_DEFAULT_REGION AWS_PROFILE AWS_DEFAULT_PROFILE
export AWS_CONFIG_FILE=$WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-credentials
printf '[profile ci]\nregion = eu-central-1\n' >"$AWS_CONFIG_FILE"
: >"$AWS_SHARED_CREDENTIALS_FILE"
export SOURCE_DATE_EPOCH=1796515200 # 2026-12-06

cat >"$WORK/r.yaml" <<'YAML'
name: debian-12-store-${BUILD_DATE}
arch: x86_64
stages:
  - allocate: {size: 1GiB}
  - partition: {table: mbr}
  - mkfs: {type: ext4}
  - run: {command: "echo zq9-plan-secret-zq9", env: {HINT: "value-only-in-env"}}
  - bundle: {account: "123456789012", x509: generate}
  - upload: {bucket: my-ami-bucket, prefix: "debian/${BUILD_DATE}/"}
  - register: {copy_to: [us-east-1, ap-south-1], share: ["123456789012"], expire_after: 90d}
YAML

"$AMIFORGE" plan "$WORK/r.yaml" --state "$WORK/st" --json --profile ci >"$WORK/plan.json"
check plan-json-will python3 - "$WORK/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
s = {x["id"]: x for x in p["stages"]}
assert p["name"] == "debian-12-store-20261206", p["name"]
assert all(x["will"] and x["does"] for x in p["stages"])
assert s["allocate"]["will"] == "create a 1 GiB sparse image file", s["allocate"]["will"]
assert s["upload"]["will"] == "upload the bundle to s3://my-ami-bucket/debian/20261206/ in eu-central-1", s["upload"]["will"]
assert s["register"]["will"] == ("register AMI 'debian-12-store-20261206' (hvm) from the bundle in eu-central-1, "
                                 "copy to us-east-1, ap-south-1, share with 123456789012, expire after 90d"), s["register"]["will"]
assert s["bundle"]["will"].startswith("bundle the image for instance store as debian-12-store-20261206 (x86_64) for eu-central-1"), s["bundle"]["will"]
PY

# --region wins over the profile's, as in a build; the bucket's region is the AMI's.
"$AMIFORGE" plan "$WORK/r.yaml" --state "$WORK/st" --json --profile ci --region us-west-2 >"$WORK/plan2.json"
check plan-json-region-option python3 - "$WORK/plan2.json" <<'PY'
import json, sys
s = {x["id"]: x for x in json.load(open(sys.argv[1]))["stages"]}
assert s["upload"]["will"].endswith(" in us-west-2"), s["upload"]["will"]
assert " from the bundle in us-west-2," in s["register"]["will"], s["register"]["will"]
PY

"$AMIFORGE" plan "$WORK/r.yaml" --state "$WORK/st" >"$WORK/plan.txt"
check plan-text-unchanged bash -c '[ $(wc -l <"$0") = 7 ] && ! grep -vqx "[1-7] [a-z]* run [0-9a-f]\{12\}" "$0"' "$WORK/plan.txt"

# -v: the same lines, each followed by its sentence, indented.
"$AMIFORGE" -v plan "$WORK/r.yaml" --state "$WORK/st" --profile ci >"$WORK/plan-v.txt"
check plan-verbose-lines python3 - "$WORK/plan.txt" "$WORK/plan-v.txt" <<'PY'
import sys
plain = open(sys.argv[1]).read().splitlines()
v = open(sys.argv[2]).read().splitlines()
assert v[0::2] == plain, v
assert all(l.startswith("    ") and l.strip() for l in v[1::2]), v
assert "    upload the bundle to s3://my-ami-bucket/debian/20261206/ in eu-central-1" in v, v
PY

# A sentence never shows an env value, and a known secret (here the
# secret key's value, written into a command) is redacted in both outputs.
AWS_SECRET_ACCESS_KEY=zq9-plan-secret-zq9 "$AMIFORGE" -v plan "$WORK/r.yaml" --state "$WORK/st" >"$WORK/plan-s.txt"
AWS_SECRET_ACCESS_KEY=zq9-plan-secret-zq9 "$AMIFORGE" plan "$WORK/r.yaml" --state "$WORK/st" --json >"$WORK/plan-s.json"
check plan-json-no-secret python3 - "$WORK/plan-s.txt" "$WORK/plan-s.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
run = {x["id"]: x for x in json.load(open(sys.argv[2]))["stages"]}["run"]["will"]
for t in (text, run):
    assert "zq9-plan-secret-zq9" not in t and "value-only-in-env" not in t, t
assert run == "run 'echo [REDACTED]' in the image with 1 environment variable, without a network", run
assert "    " + run in text.splitlines(), text
PY
exit $T_FAILED
