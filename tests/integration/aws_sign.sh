#!/bin/bash
# SigV4 against botocore: a few hundred randomised requests signed by
# `amiforge aws request --dry-run` and by botocore (Debian's python3-botocore)
# with the same date and credentials must give the same canonical request,
# string to sign and Authorization header.  Then real requests through the
# CLI: retries and the final message against tests/servers/httpfaults.py,
# signatures accepted by tests/servers/fakeaws.py (botocore-checked).  No
# output or log written here may contain the secret key or session token.
. "$(dirname "$0")/lib.sh"
NAMES="botocore-random botocore-s3 botocore-unsigned-payload cli-usage cli-retry-message cli-fakeaws no-secret-in-output"
/usr/bin/python3 -c 'import botocore' 2>/dev/null || skip_all "needs python3-botocore" $NAMES

SECRET='iTsEcReT/aws+sign/K7MDENG+bPxRfiCYEXAMPLEKEY'
TOKEN='iTtOkEn//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAe'
OUT=$WORK/outputs
mkdir -p "$OUT"

# ---- randomised comparison ----
/usr/bin/python3 - "$AMIFORGE" "$SECRET" "$TOKEN" "$OUT" <<'PY'
import os, random, subprocess, sys
from urllib.parse import quote
from botocore.auth import SigV4Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

amiforge, secret, token, out = sys.argv[1:5]
rnd = random.Random(int(os.environ.get("AWS_SIGN_SEED", "4242")))
N = int(os.environ.get("AWS_SIGN_N", "300"))
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1", "sa-east-1"]
CHARS = "abcXYZ019-_.~ !$&'()*+,;=:@%/?#[]\"<>\\^`{|}é€ሴ"

def rstr(lo, hi, alphabet=CHARS):
    return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(lo, hi)))

def rpath(s3):
    segs = []
    for _ in range(rnd.randint(0, 4)):
        r = rnd.random()
        if not s3 and r < 0.1:
            segs.append(rnd.choice([".", "..", ""]))
        else:
            segs.append(quote(rstr(1, 8), safe="-_.~"))
    p = "/" + "/".join(segs)
    if rnd.random() < 0.3 and segs:
        p += "/"
    return p

def rquery():
    pairs = []
    for _ in range(rnd.randint(0, 5)):
        k = quote(rstr(1, 6), safe="-_.~")
        v = quote(rstr(0, 8), safe="-_.~")
        pairs.append(k + "=" + v)
    if pairs and rnd.random() < 0.3:
        pairs.append(pairs[0].split("=")[0] + "=" + quote(rstr(0, 4), safe="-_.~"))
    return "&".join(pairs)

HNAMES = ["X-Amz-Meta-Foo", "Content-Type", "x-amz-Data-Length", "X-Custom", "My-Header1",
          "Content-MD5", "x-amz-acl", "User-Agent", "X-Amz-Target", "Range", "If-Match"]

def rheaders():
    h = {}
    for name in rnd.sample(HNAMES, rnd.randint(0, 4)):
        v = rstr(1, 10, "abcXYZ019-_.~ /+=:;,\"")
        if rnd.random() < 0.3:
            v = "  " + v.replace(" ", "   ") + "  "
        h[name] = v
    return h

def rdate():
    return "%04d%02d%02dT%02d%02d%02dZ" % (rnd.randint(2015, 2035), rnd.randint(1, 12), rnd.randint(1, 28),
                                         rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59))

def botocore_sign(method, url, headers, body, service, region, date, creds, unsigned):
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    req.context["timestamp"] = date
    if unsigned:
        req.context["payload_signing_enabled"] = False
    cls = S3SigV4Auth if service == "s3" else SigV4Auth
    auth = cls(creds, service, region)
    auth._modify_request_before_signing(req)
    creq = auth.canonical_request(req)
    sts = auth.string_to_sign(req, creq)
    sig = auth.signature(sts, req)
    auth._inject_signature_to_request(req, sig)
    return creq, sts, req.headers["Authorization"]

def amiforge_sign(method, url, headers, body, service, region, date, akid, with_token, unsigned, tag):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=akid, AWS_SECRET_ACCESS_KEY=secret,
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_SESSION_TOKEN", None)
    if with_token:
        env["AWS_SESSION_TOKEN"] = token
    bodyfile = os.path.join(out, "body-%s" % tag)
    with open(bodyfile, "wb") as f:
        f.write(body)
    args = [amiforge, "aws", "request", method, url, "--dry-run", "--date", date,
            "--service", service, "--region", region, "-d", "@" + bodyfile]
    for k, v in headers.items():
        args += ["-H", "%s: %s" % (k, v)]
    if unsigned:
        args.append("--unsigned-payload")
    p = subprocess.run(args, env=env, capture_output=True)
    with open(os.path.join(out, "dry-%s.out" % tag), "wb") as f:
        f.write(p.stdout + p.stderr)
    if p.returncode != 0:
        return None, p.stderr.decode(errors="replace")
    text = p.stdout.decode()
    sec = {}
    cur = None
    for line in text.split("\n"):
        if line.startswith("--- "):
            cur = line[4:]
            sec[cur] = []
        elif cur:
            sec[cur].append(line)
    return {k: "\n".join(v) if k == "canonical request" else "\n".join(v).rstrip("\n")
            for k, v in sec.items()}, None

def run_case(i, kind):
    s3 = kind == "s3"
    unsigned = kind == "unsigned"
    service = "s3" if s3 else "ebs" if unsigned else rnd.choice(["ec2", "ebs", "service", "iam"])
    region = rnd.choice(REGIONS)
    scheme = "https" if unsigned or rnd.random() < 0.5 else "http"
    host = rnd.choice(["example.amazonaws.com", "127.0.0.1:%d" % rnd.randint(1024, 65535),
                       "localhost:443", "h.example:80", "[::1]:8080"])
    path = rpath(s3)
    q = rquery()
    url = "%s://%s%s%s" % (scheme, host, path, "?" + q if q else "")
    method = rnd.choice(["GET", "PUT", "POST", "DELETE", "HEAD"])
    body = b"" if method in ("GET", "HEAD") or rnd.random() < 0.3 else rstr(0, 200).encode()
    headers = rheaders()
    date = rdate()
    akid = "AKID" + rstr(8, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    with_token = rnd.random() < 0.5
    creds = Credentials(akid, secret, token if with_token else None)
    creq, sts, authz = botocore_sign(method, url, headers, body, service, region, date, creds, unsigned)
    got, err = amiforge_sign(method, url, headers, body, service, region, date, akid, with_token,
                             unsigned, "%s-%d" % (kind, i))
    if got is None:
        return "amiforge failed for %s %s: %s" % (method, url, err)
    want_creq = creq.replace("x-amz-security-token:" + token, "x-amz-security-token:[REDACTED]")
    for name, want in (("canonical request", want_creq), ("string to sign", sts), ("authorization", authz)):
        if got.get(name) != want:
            return "%s differs for %s %s\n--- amiforge\n%s\n--- botocore\n%s" % (
                name, method, url, got.get(name), want)
    return None

def group(name, kind, n):
    fails = [m for m in (run_case(i, kind) for i in range(n)) if m]
    if fails:
        print("not ok %s: %d of %d differ; first:\n%s" % (name, len(fails), n, fails[0]))
    else:
        print("ok %s (%d requests)" % (name, n))

group("botocore-random", "plain", N)
group("botocore-s3", "s3", max(N // 3, 10))
group("botocore-unsigned-payload", "unsigned", max(N // 6, 10))
PY
[ $? = 0 ] || T_FAILED=1

# ---- the CLI's contract ----
"$AMIFORGE" aws request GET >"$OUT/usage.out" 2>&1; rc=$?
"$AMIFORGE" aws request GET http://127.0.0.1:1/ --dry-run >>"$OUT/usage.out" 2>&1; rc2=$?
if [ $rc = 2 ] && [ $rc2 = 1 ] && grep -q "cannot infer the service from host '127.0.0.1:1' (give --service)" "$OUT/usage.out"; then
	ok cli-usage
else
	not_ok cli-usage; cat "$OUT/usage.out"
fi

export AWS_ACCESS_KEY_ID=AKIDAWSSIGNTEST AWS_SECRET_ACCESS_KEY="$SECRET" AWS_SESSION_TOKEN="$TOKEN"
export AWS_EC2_METADATA_DISABLED=true
start_server() { # SCRIPT ARGS...: sets SRV_PID and SRV_PORT
	local f=$WORK/srv.$RANDOM
	/usr/bin/python3 "$@" >"$f" 2>"$f.err" &
	SRV_PID=$!
	for _ in $(seq 50); do
		SRV_PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$f" | head -1)
		[ -n "$SRV_PORT" ] && return 0
		sleep 0.1
	done
	return 1
}
stop_server() { kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; }

if start_server "$TOP/tests/servers/httpfaults.py"; then
	"$AMIFORGE" aws request POST "http://127.0.0.1:$SRV_PORT/status/503" --service ec2 --region us-east-1 \
		-d 'Action=RegisterImage&Version=2016-11-15' >"$OUT/retry.out" 2>&1; rc=$?
	"$AMIFORGE" aws request GET "http://127.0.0.1:$SRV_PORT/throttle/2/cli" --service ec2 --region us-east-1 \
		>"$OUT/throttle.out" 2>&1; rc2=$?
	stop_server
	if [ $rc = 1 ] && grep -q 'aws request: ec2 POST http://127.0.0.1:[0-9]*/status/503: InternalError: An internal error has occurred (HTTP 503, request id req-503) after 8 attempts' "$OUT/retry.out" &&
		[ "$(grep -c 'failed (HTTP 503 InternalError, request id req-503); retrying in' "$OUT/retry.out")" = 7 ] &&
		[ $rc2 = 0 ] && grep -q '^done after 3' "$OUT/throttle.out"; then
		ok cli-retry-message
	else
		not_ok cli-retry-message; cat "$OUT/retry.out" "$OUT/throttle.out"
	fi
else
	not_ok cli-retry-message; echo "httpfaults.py did not start"
fi

if [ ! -f "$TOP/tests/servers/fakeaws.py" ]; then
	skip cli-fakeaws "tests/servers/fakeaws.py is not there"
elif start_server "$TOP/tests/servers/fakeaws.py" --cred "AKIDAWSSIGNTEST:$SECRET:$TOKEN"; then
	u="http://127.0.0.1:$SRV_PORT/"
	"$AMIFORGE" aws request POST "$u" --service ec2 --region eu-west-1 \
		-H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' \
		-d 'Action=DescribeRegions&Version=2016-11-15' >"$OUT/fake-ec2.out" 2>&1; rc=$?
	"$AMIFORGE" aws request POST "${u}snapshots" --service ebs --region eu-west-1 \
		-H 'Content-Type: application/json' -d '{"VolumeSize": 1, "Timeout": 10}' \
		>"$OUT/fake-ebs.out" 2>&1; rc2=$?
	AWS_SECRET_ACCESS_KEY=wrongsecretwrongsecret "$AMIFORGE" aws request POST "$u" --service ec2 \
		--region eu-west-1 -d 'Action=DescribeRegions&Version=2016-11-15' >"$OUT/fake-bad.out" 2>&1; rc3=$?
	stop_server
	if [ $rc = 0 ] && grep -q '<regionName>eu-west-1</regionName>' "$OUT/fake-ec2.out" &&
		[ $rc2 = 0 ] && grep -q '"SnapshotId": *"snap-' "$OUT/fake-ebs.out" &&
		[ $rc3 = 1 ] && grep -q 'SignatureDoesNotMatch' "$OUT/fake-bad.out"; then
		ok cli-fakeaws
	else
		not_ok cli-fakeaws; head -c 2000 "$OUT"/fake-*.out
	fi
else
	not_ok cli-fakeaws; echo "fakeaws.py did not start"
fi

# Every output and log written above: no secret, no token.
if grep -rlF -e "$SECRET" -e "$TOKEN" "$OUT" >"$WORK/leaks"; then
	not_ok no-secret-in-output; echo "secret found in:"; cat "$WORK/leaks"
else
	ok no-secret-in-output "($(ls "$OUT" | wc -l) files)"
fi
exit $T_FAILED
