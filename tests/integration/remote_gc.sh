#!/bin/bash
# clean --remote against s3rver, behind tests/servers/s3faults.py (request
# records, faults, S3's conditional writes for gc-lease).  The store is
# filled directly (block files in the blockstore format, checkpoint lists,
# used/ markers, stage records, a journal, names amiforge does not make),
# and objects are aged by setting the mtime of s3rver's files, which is
# what its listing reports as LastModified.  Cases: --dry-run removes
# nothing and reports; GC removes the unused checkpoint, its marker, the
# stage records leading to it and the blocks only it named, and keeps the
# used checkpoints, every block they name, young records, journals and
# unknown names; a build's live lease keeps every block (a later run
# removes them); --check passes on a consistent store and names a missing
# and a corrupt block; faults on listings, GETs, HEADs and DELETEs are
# retried; a closed port is exit 69; usage errors are exit 2.  Root-free.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="gc-usage-no-unused-for gc-usage-errors gc-dry-run-reports gc-dry-run-removes-nothing
gc-removes-unused gc-keeps-used gc-keeps-unknown gc-summary gc-lease-released gc-rerun-removes-nothing
gc-live-lease-keeps-blocks gc-live-lease-removes-checkpoints gc-after-lease-removes-blocks gc-lease-held
gc-check-consistent gc-check-names-missing-and-corrupt gc-faults-retried gc-faults-result
gc-check-faults-retried gc-unreachable-69 gc-no-secrets"
require_s3rver $TESTS
start_s3 || { not_ok "s3rver and s3faults start"; exit 1; }
S3=http://127.0.0.1:$s3port
BUCKET=gc-store
DATA=$WORK/s3/$BUCKET # s3rver keeps KEY as DATA/KEY._S3rver_object
pcontrol() { control "$1" "$PROXY"; }

# The store's python side: fill a prefix, list it, age, delete, corrupt.
# Objects go straight to s3rver (no signature needed); names in the fill
# are symbolic (ckpt:OLD, block:A...) and resolved into $WORK/names.PREFIX.
store() { # COMMAND PREFIX [ARGS]
	$PY - "$S3" "$BUCKET" "$DATA" "$WORK" "$@" <<'PY'
import hashlib, json, os, struct, sys, time, urllib.request
s3, bucket, data, work, cmd, prefix = sys.argv[1:7]
args = sys.argv[7:]
DAY = 86400
BS = 512 * 1024
names_file = os.path.join(work, "names." + prefix)

def req(method, key, body=None):
    r = urllib.request.Request("%s/%s/%s/%s" % (s3, bucket, prefix, key), data=body, method=method)
    return urllib.request.urlopen(r, timeout=10).read()

def age(key, days):
    t = time.time() - days * DAY
    os.utime(os.path.join(data, prefix, key + "._S3rver_object"), (t, t))

def block_file(seed, raw=None):
    raw = raw or hashlib.sha256(seed.encode()).digest() * (BS // 32)
    return hashlib.sha256(raw).hexdigest(), b"AFBK" + struct.pack("<BBHII", 1, 0, 0, BS, BS) + raw

def hkey(name):
    return hashlib.sha256(name.encode()).hexdigest()

def fill():
    try:
        urllib.request.urlopen(urllib.request.Request("%s/%s" % (s3, bucket), method="PUT"), timeout=10)
    except urllib.error.HTTPError as e:
        if e.code != 409:  # BucketAlreadyOwnedByYou: a second prefix
            raise
    blocks = {}
    for b in "ABCDEF":
        h, f = block_file(prefix + b)
        blocks[b] = h
        req("PUT", "blocks/%s/%s" % (h[:2], h), f)
        age("blocks/%s/%s" % (h[:2], h), 50)
    # OLD: unused for 40 days; NEW: an old list used yesterday; YOUNG: a
    # list of today without a marker; LONE: a marker without a list.
    ckpts = {"OLD": "ABC", "NEW": "BD", "YOUNG": "E"}
    keys = {n: hkey(prefix + n) for n in ("OLD", "NEW", "YOUNG", "LONE", "NONE")}
    for n, bl in ckpts.items():
        lst = [blocks[b] for b in bl]
        lst.insert(1, None)  # a zero block
        body = json.dumps({"version": 1, "size": len(lst) * BS, "block_size": BS, "blocks": lst})
        req("PUT", "checkpoints/%s.ckpt" % keys[n], body.encode())
    age("checkpoints/%s.ckpt" % keys["OLD"], 40)
    age("checkpoints/%s.ckpt" % keys["NEW"], 40)
    for n, days in (("OLD", 40), ("NEW", 1), ("LONE", 45)):
        req("PUT", "used/%s" % keys[n], b"")
        age("used/%s" % keys[n], days)
    # Records: S1 old -> OLD (goes), S2 old -> NEW (stays), S3 young -> OLD
    # (stays), S4 old -> a checkpoint never stored (goes), S5 old and not
    # JSON (goes).
    recs = {"S1": ("OLD", 40), "S2": ("NEW", 40), "S3": ("OLD", 0), "S4": ("NONE", 40), "S5": (None, 40)}
    for n, (c, days) in recs.items():
        key = "stages/%s.json" % hkey(prefix + n)
        body = (json.dumps({"v": 1, "id": "stage-" + n, "type": "run", "disk_key": keys[c], "seconds": 1,
                            "outputs": {}}) if c else "{not json").encode()
        req("PUT", key, body)
        age(key, days)
    # Names the layout has but GC never removes, and names it does not know.
    for key in ("states/old/journal", "README", "blocks/xx/not-a-block", "used/" + keys["NONE"] + ".bak"):
        req("PUT", key, b"keep me")
        age(key, 400)
    names = {"ckpt:" + n: "checkpoints/%s.ckpt" % k for n, k in keys.items()}
    names.update({"used:" + n: "used/" + k for n, k in keys.items()})
    names.update({"block:" + b: "blocks/%s/%s" % (h[:2], h) for b, h in blocks.items()})
    names.update({"stage:" + n: "stages/%s.json" % hkey(prefix + n) for n in recs})
    json.dump(names, open(names_file, "w"))

def listing():
    out, token = [], None
    while True:
        q = "list-type=2&prefix=%s/" % prefix + ("&continuation-token=" + token if token else "")
        import xml.etree.ElementTree as ET
        x = ET.fromstring(urllib.request.urlopen("%s/%s?%s" % (s3, bucket, q), timeout=10).read())
        for e in x.iter():
            e.tag = e.tag.split("}")[-1]
        out += [c.findtext("Key")[len(prefix) + 1:] for c in x.iter("Contents")]
        token = x.findtext("NextContinuationToken")
        if not token:
            return sorted(out)

def resolve(sym):
    return json.load(open(names_file))[sym]

if cmd == "fill":
    fill()
elif cmd == "list":
    print("\n".join(listing()))
elif cmd == "has":  # exit 0 when every SYM is there
    have = set(listing())
    missing = [s for s in args if resolve(s) not in have]
    print("missing: " + " ".join(missing)) if missing else None
    sys.exit(1 if missing else 0)
elif cmd == "lacks":  # exit 0 when no SYM is there
    have = set(listing())
    there = [s for s in args if resolve(s) in have]
    print("still there: " + " ".join(there)) if there else None
    sys.exit(1 if there else 0)
elif cmd == "name":
    print(resolve(args[0]))
elif cmd == "delete":
    req("DELETE", resolve(args[0]))
elif cmd == "corrupt":  # another block's content under this block's name
    req("PUT", resolve(args[0]), block_file("corrupt")[1])
elif cmd == "lease":  # lease KEY (states/NAME/lease, gc-lease) held by another host
    body = {"v": 1, "holder": "runner-elsewhere", "pid": 4242, "boot_id": "x",
            "acquired": int(time.time()), "expires": int(time.time()) + int(args[1])}
    req("PUT", args[0], json.dumps(body).encode())
PY
}
# PUTs and DELETEs the proxy saw since its last reset.
writes() {
	$PY - "$PROXY" <<'PY'
import json, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))["requests"]
print(sum(1 for r in reqs if r["method"] in ("PUT", "DELETE")))
PY
}
N=0
clean() { # ARGS...: exit code in RC, output in $OUT
	N=$((N + 1)); OUT=$WORK/out.$N
	"$AMIFORGE" clean "$@" >"$OUT" 2>&1
	RC=$?
}
show() { echo "exit $RC"; cat "$OUT"; }
has() { grep -q -- "$1" "$OUT" || { echo "no '$1' in the output:"; show; return 1; }; }
name() { store name "$1" "$2"; }

# ---- usage -----------------------------------------------------------------
clean --remote "s3://$BUCKET/p"
if [ "$RC" = 2 ] && has "add --unused-for DURATION"; then ok gc-usage-no-unused-for; else show; not_ok gc-usage-no-unused-for; fi
bad=0
for args in "--remote s3://$BUCKET/p --unused-for 3x" "--remote s3://$BUCKET/p --unused-for" \
	"--remote http://x/p --unused-for 1d" "--remote s3://$BUCKET/p --check --dry-run" \
	"--remote s3://$BUCKET/p --check --unused-for 1d" "--check" "--unused-for 1d" \
	"--remote s3://$BUCKET/p --unused-for 1d --all" "--remote s3://$BUCKET/p --unused-for 1d --state x"; do
	# shellcheck disable=SC2086
	clean $args
	[ "$RC" = 2 ] || { echo "clean $args: exit $RC"; cat "$OUT"; bad=1; }
done
check gc-usage-errors [ $bad = 0 ]

# ---- dry run, then the collection ---------------------------------------------
store fill main
store list main >"$WORK/before"
pcontrol '{"op": "reset"}'
clean --remote "s3://$BUCKET/main" --unused-for 30d --dry-run
writes=$(writes)
store list main >"$WORK/after-dry"
if [ "$RC" = 0 ] && has "would remove s3://$BUCKET/main/$(name main ckpt:OLD) (checkpoint unused since" &&
	has "would remove 1 of 3 checkpoints, 3 of 5 stage records, 3 of 6 blocks"; then
	ok gc-dry-run-reports
else
	show; not_ok gc-dry-run-reports
fi
# Not even gc-lease: a dry run must not hold builds back.
check gc-dry-run-removes-nothing bash -c 'cmp "$0" "$1" && [ "$2" = 0 ]' "$WORK/before" "$WORK/after-dry" "$writes"

pcontrol '{"op": "reset"}'
clean --remote "s3://$BUCKET/main" --unused-for 30d
store list main >"$WORK/after-gc"
if [ "$RC" = 0 ] && store lacks main ckpt:OLD used:OLD used:LONE stage:S1 stage:S4 stage:S5 \
	block:A block:C block:F; then ok gc-removes-unused; else show; not_ok gc-removes-unused; fi
check gc-keeps-used store has main ckpt:NEW used:NEW ckpt:YOUNG stage:S2 stage:S3 block:B block:D block:E
printf "%s\n" README blocks/xx/not-a-block states/old/journal "$(name main used:NONE).bak" | sort >"$WORK/unknown"
if diff "$WORK/unknown" <(grep -E "README|not-a-block|\.bak|states/" "$WORK/after-gc" | sort) &&
	has "leaving s3://$BUCKET/main/README alone: not a name amiforge makes"; then
	ok gc-keeps-unknown
else
	not_ok gc-keeps-unknown
fi
check gc-summary has "removed 1 of 3 checkpoints, 3 of 5 stage records, 3 of 6 blocks (1.5 MiB)"
# gc-lease was created (If-None-Match: *) and given up (If-Match): expired now.
check gc-lease-released $PY - "$DATA/main/gc-lease._S3rver_object" "$PROXY" <<'PY'
import json, sys, time, urllib.request
lease = json.load(open(sys.argv[1]))
conds = [r["cond"] for r in json.load(urllib.request.urlopen(sys.argv[2] + "/__control/state"))["requests"]
         if r["path"].endswith("/main/gc-lease") and r["method"] == "PUT"]
ok = lease["expires"] <= time.time() and conds[0] == "If-None-Match: *" and conds[-1].startswith("If-Match")
print(lease, conds) if not ok else None
sys.exit(not ok)
PY
clean --remote "s3://$BUCKET/main" --unused-for 30d
store list main >"$WORK/after-gc2"
if [ "$RC" = 0 ] && cmp "$WORK/after-gc" "$WORK/after-gc2" &&
	has "removed 0 of 2 checkpoints, 0 of 2 stage records, 0 of 3 blocks"; then
	ok gc-rerun-removes-nothing
else
	show; not_ok gc-rerun-removes-nothing
fi

# ---- a live build lease: checkpoints go, blocks stay ------------------------------
store fill lease
store lease lease states/debian/lease 600
clean --remote "s3://$BUCKET/lease" --unused-for 30d
if [ "$RC" = 0 ] && has "build lease held: lease/states/debian/lease (runner-elsewhere pid 4242, until" &&
	has "a later 'amiforge clean --remote s3://$BUCKET/lease' removes them" &&
	has "blocks kept: builds hold leases"; then
	ok gc-live-lease-keeps-blocks
else
	show; not_ok gc-live-lease-keeps-blocks
fi
if store has lease block:A block:B block:C block:D block:E block:F &&
	store lacks lease ckpt:OLD used:OLD stage:S1; then
	ok gc-live-lease-removes-checkpoints
else
	show; not_ok gc-live-lease-removes-checkpoints
fi
store lease lease states/debian/lease -10 # the build ended (its lease expired)
clean --remote "s3://$BUCKET/lease" --unused-for 30d
if [ "$RC" = 0 ] && store lacks lease block:A block:C block:F && store has lease block:B block:D block:E; then
	ok gc-after-lease-removes-blocks
else
	show; not_ok gc-after-lease-removes-blocks
fi

# ---- another collection running: wait for it ------------------------------------------
store lease lease gc-lease 600
clean --remote "s3://$BUCKET/lease" --unused-for 30d
if [ "$RC" = 1 ] && has "s3://$BUCKET/lease/gc-lease is held by runner-elsewhere pid 4242"; then
	ok gc-lease-held
else
	show; not_ok gc-lease-held
fi

# ---- check ------------------------------------------------------------------------
clean --remote "s3://$BUCKET/main" --check
if [ "$RC" = 0 ] && has "consistent: 2 checkpoints, 3 blocks present and matching their hashes"; then
	ok gc-check-consistent
else
	show; not_ok gc-check-consistent
fi
store delete main block:D
store corrupt main block:E
clean --remote "s3://$BUCKET/main" --check
if [ "$RC" = 1 ] && has "$BUCKET/main/$(name main block:D), named by checkpoint [0-9a-f]*: missing" &&
	has "$BUCKET/main/$(name main block:E), named by checkpoint [0-9a-f]*: corrupt" &&
	has "damaged checkpoint: s3://$BUCKET/main/$(name main ckpt:NEW)" &&
	has "damaged checkpoint: s3://$BUCKET/main/$(name main ckpt:YOUNG)" &&
	has "inconsistent: 1 missing and 1 corrupt"; then
	ok gc-check-names-missing-and-corrupt
else
	show; not_ok gc-check-names-missing-and-corrupt
fi

# ---- faults are retried -----------------------------------------------------------
store fill flt
pcontrol '{"op": "reset"}'
pcontrol '{"op": "fault", "method": "LIST", "match": "list-type", "kind": "500", "count": 2}'
pcontrol '{"op": "fault", "method": "GET", "match": "/checkpoints/", "kind": "slowdown", "count": 1}'
pcontrol '{"op": "fault", "method": "GET", "match": "/stages/", "kind": "reset", "count": 1}'
pcontrol '{"op": "fault", "method": "DELETE", "match": "/blocks/", "kind": "500", "count": 2}'
pcontrol '{"op": "fault", "method": "DELETE", "match": "/used/", "kind": "reset", "count": 1}'
clean --remote "s3://$BUCKET/flt" --unused-for 30d
# Every faulted request was sent again, and that attempt succeeded.
retried() {
	$PY - "$PROXY" "$@" <<'PY'
import json, sys, urllib.request
reqs = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))["requests"]
bad, kinds = 0, set()
for i, r in enumerate(reqs):
    if not r["fault"]:
        continue
    kinds.add(r["method"] + ("-LIST" if r["list"] else ""))
    later = [x for x in reqs[i + 1:] if (x["method"], x["path"], x["query"]) == (r["method"], r["path"], r["query"])
             and isinstance(x["status"], int) and x["status"] < 300]
    if not later:
        print("not retried:", r); bad = 1
want = set(sys.argv[2:])
if not want <= kinds:
    print("faults that never hit:", want - kinds); bad = 1
sys.exit(bad)
PY
}
if [ "$RC" = 0 ] && retried GET-LIST GET DELETE; then ok gc-faults-retried; else show; not_ok gc-faults-retried; fi
check gc-faults-result store lacks flt ckpt:OLD used:OLD stage:S1 block:A block:C block:F
pcontrol '{"op": "reset"}'
pcontrol '{"op": "fault", "method": "GET", "match": "/blocks/", "kind": "500", "count": 2}'
pcontrol '{"op": "fault", "method": "GET", "match": "/checkpoints/", "kind": "reset", "count": 1}'
clean --remote "s3://$BUCKET/flt" --check
if [ "$RC" = 0 ] && has "consistent" && retried GET; then ok gc-check-faults-retried; else show; not_ok gc-check-faults-retried; fi

# ---- unreachable --------------------------------------------------------------------
closed=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AWS_ENDPOINT_URL_S3=http://127.0.0.1:$closed clean --remote "s3://$BUCKET/main" --unused-for 30d
if [ "$RC" = 69 ] && has "cannot use the remote store s3://$BUCKET/main"; then
	ok gc-unreachable-69
else
	show; not_ok gc-unreachable-69
fi

bad=0
for s in "$T_SECRET" "$T_TOKEN"; do grep -rlF -- "$s" "$WORK"/out.* && bad=1; done
check gc-no-secrets [ $bad = 0 ]
exit $T_FAILED
