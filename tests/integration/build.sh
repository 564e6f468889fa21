#!/bin/bash
# Builds recipes/debian-12-minimal.yaml and inspects the image read-only: the
# label, a Debian tree whose dpkg status lists the included packages, device
# nodes, an fstab whose root matches what blkid reports.  Then a second build
# is a no-op, plan says done, --json events are well formed, and nothing is
# left on the host.
. "$(dirname "$0")/lib.sh"
TESTS="build-minimal label dpkg-status devnodes fstab-root manifest no-leaks plan-done rebuild-noop rebuild-manifest json-events outputs-summary outputs-env"
require_root $TESTS
require_loop $TESTS
require_network $TESTS

S=$WORK/state
if "$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --state "$S" >"$WORK/out" 2>&1; then
	ok build-minimal
else
	cat "$WORK/out"; not_ok build-minimal; exit 1
fi
IMG=$S/disk.img
check label test "$(blkid -p -o value -s LABEL "$IMG")" = rootfs

pkgs_installed() {
	local p
	for p in systemd-sysv ifupdown isc-dhcp-client sudo less; do
		awk -v p="$p" '$1=="Package:"{n=$2} $1=="Status:" && n==p {print $4}' "$MNT/var/lib/dpkg/status" | grep -qx installed || { echo "missing package $p"; return 1; }
	done
	test -x "$MNT/bin/bash" && grep -q 'VERSION_CODENAME=bookworm' "$MNT/etc/os-release"
}
export -f pkgs_installed
check dpkg-status with_image "$IMG" 0 bash -c pkgs_installed

devnodes() {
	local want got
	while read -r node want; do
		got=$(stat -c '%F %t:%T %a %U' "$MNT/dev/$node") || return 1
		[ "$got" = "$want" ] || { echo "/dev/$node: got '$got', want '$want'"; return 1; }
	done <<'NODES'
null character special file 1:3 666 root
zero character special file 1:5 666 root
full character special file 1:7 666 root
random character special file 1:8 666 root
urandom character special file 1:9 666 root
console character special file 5:1 600 root
tty character special file 5:0 666 root
NODES
}
export -f devnodes
check devnodes with_image "$IMG" 0 bash -c devnodes

fstab_root() {
	local label; label=$(blkid -p -o value -s LABEL "$1")
	awk '$2=="/" {print $1, $3}' "$MNT/etc/fstab" | grep -qx "LABEL=$label ext4" &&
		grep -q '^/dev/xvdb[[:space:]]\+/mnt[[:space:]].*nofail' "$MNT/etc/fstab" &&
		grep -q '^proc[[:space:]]\+/proc[[:space:]]\+proc' "$MNT/etc/fstab"
}
export -f fstab_root
check fstab-root with_image "$IMG" 0 bash -c 'fstab_root "$0"' "$IMG"

# The manifest: the image's path, sizes and SHA-256, the recipe's SHA-256,
# each stage's own outputs, and the commit of the checkout the recipe is in
# (none when the tree is not a git checkout).
commit=$(git -c safe.directory='*' -C "$TOP/recipes" rev-parse HEAD 2>/dev/null)
check manifest python3 -c '
import json, os, sys
m = json.load(open(sys.argv[1]))
img, sha, recipe, recipe_sha, commit = sys.argv[2:]
i = m["image"]
assert i["path"] == img and i["sha256"] == sha and not i["device"], i
assert i["size"] == os.stat(img).st_size and i["allocated"] == os.stat(img).st_blocks * 512, i
assert m["recipe"] == {"path": recipe, "sha256": recipe_sha}, m["recipe"]
assert m["git"]["commit"] == commit if commit else "git" not in m, (m.get("git"), commit)
assert [s["id"] for s in m["stages"]] == ["allocate", "partition", "mkfs", "debootstrap", "makedev", "fstab", "hostname"]
assert m["outputs"]["root.label"] == "rootfs" and m["stages"][2]["outputs"]["root.label"] == "rootfs"
assert m["stages"][0]["outputs"]["disk.size"] == i["size"] and "root.label" not in m["stages"][0]["outputs"]
' "$S/manifest.json" "$IMG" "$(sha256sum <"$IMG" | cut -d" " -f1)" "$(realpath "$TOP/recipes/debian-12-minimal.yaml")" \
	"$(sha256sum <"$TOP/recipes/debian-12-minimal.yaml" | cut -d" " -f1)" "$commit"
check no-leaks no_leaks "$S"

"$AMIFORGE" plan "$TOP/recipes/debian-12-minimal.yaml" --state "$S" >"$WORK/plan"
check plan-done bash -c '[ $(grep -c " done [0-9a-f]\{12\}$" "$0") = 7 ]' "$WORK/plan"

"$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --state "$S" >"$WORK/out2" 2>&1
check rebuild-noop bash -c '[ $(grep -c "done (cached)" "$0") = 7 ]' "$WORK/out2"
# Nothing changed: the same image hash (reused, not recomputed), all cached.
check rebuild-manifest python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
assert m["image"]["sha256"] == sys.argv[2] and m["status"] == "ok", m["image"]
assert all(s["cached"] and "outputs" in s for s in m["stages"]) and m["stages"][0]["outputs"], m["stages"]
' "$S/manifest.json" "$(sha256sum <"$IMG" | cut -d" " -f1)"

"$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --state "$S" --json >"$WORK/events" 2>/dev/null
check json-events python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ends = [e for e in ev if e["event"] == "stage_end"]
assert len(ends) == 7 and all(e["cached"] and e["status"] == "done" for e in ends), ends
assert ends[3] == {"event": "stage_end", "index": 4, "id": "debootstrap", "status": "done", "seconds": ends[3]["seconds"], "cached": True, "outputs": ends[3]["outputs"]}
assert ends[0]["outputs"]["disk.size"] > 0 and "error" not in ends[0]
end = ev[-1]
assert end["event"] == "build_end" and end["status"] == "ok"
assert end["manifest"] == sys.argv[2] + "/manifest.json" and end["image"] == sys.argv[2] + "/disk.img"
assert end["outputs"]["root.fstype"] == "ext4" and end["made"]["image_size"] > 0
' "$WORK/events" "$(realpath "$S")"
# What was made: the summary at the end, and KEY=VALUE lines for the next CI step.
rm -f "$WORK/gh" "$WORK/env"
GITHUB_OUTPUT=$WORK/gh "$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --state "$S" --outputs-env "$WORK/env" >"$WORK/out3" 2>&1
check outputs-summary bash -c 'grep -q "^made:" "$0" && grep -q "^  image *$1/disk.img (" "$0" && grep -q "^  manifest *$1/manifest.json" "$0"' "$WORK/out3" "$(realpath "$S")"
check outputs-env bash -c 'grep -qx "image=$2/disk.img" "$0" && grep -qx "manifest=$2/manifest.json" "$0" && cmp -s "$0" "$1" && [ "$(stat -c %a "$1")" = 600 ]' "$WORK/gh" "$WORK/env" "$(realpath "$S")"
exit $T_FAILED
