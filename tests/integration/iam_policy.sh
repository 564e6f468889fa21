#!/bin/bash
# amiforge iam-policy: its table (iam-policy --list) is what the code can
# call, read off the sources by tests/integration/iam_actions.py (a call
# graph from each stages/TYPE.c, tools/ami_SUB*.c and engine/store/remote*.c
# down to the requests; see its docstring): every action appears, nothing
# more.  The extractor is shown to see a new call; the policies for a recipe,
# --ami-commands and --remote are the unions of their keys; errors exit 2/65.
. "$(dirname "$0")/lib.sh"
TESTS="iam-table-matches-code iam-extractor-sees-new-call iam-recipe iam-ami-commands iam-remote iam-usage iam-bad-recipe"
command -v python3 >/dev/null || skip_all "needs python3" $TESTS
EXTRACT=$TOP/tests/integration/iam_actions.py

"$AMIFORGE" iam-policy --list >"$WORK/table" 2>"$WORK/err.list"
python3 "$EXTRACT" "$TOP" >"$WORK/code"
if diff -u "$WORK/table" "$WORK/code" >"$WORK/diff"; then ok iam-table-matches-code; else
	echo "# iam-policy's table (-) against what the code calls (+): fix tools/iam_policy.c"
	sed 's/^/# /' "$WORK/diff"; not_ok iam-table-matches-code; fi

# A copy of the sources where mkfs (which calls nothing) sends an EC2 action
# through a helper and ami list an S3 one through a wrapper.
mkdir -p "$WORK/tree"
cp -r "$TOP/engine" "$TOP/stages" "$TOP/tools" "$TOP/include" "$WORK/tree/"
cat >>"$WORK/tree/stages/mkfs.c" <<'C'
static int mkfs_helper(void)
{
	return ec2_call(NULL, "TerminateInstances", NULL, NULL, NULL);
}
static int mkfs_extra(void)
{
	return mkfs_helper();
}
C
cat >>"$WORK/tree/tools/ami_list.c" <<'C'
static int list_extra(void)
{
	return s3_delete_object(NULL, "b", "k", NULL);
}
C
python3 "$EXTRACT" "$WORK/tree" >"$WORK/code2"
check iam-extractor-sees-new-call bash -c 'grep -qx "mkfs	ec2:TerminateInstances" "$0" && grep -qx "ami list	s3:DeleteObject" "$0" &&
	! grep -qx "mkfs	-" "$0"' "$WORK/code2"

actions() { python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["Version"] == "2012-10-17"
st = d["Statement"]; assert len(st) == 1 and st[0]["Effect"] == "Allow" and st[0]["Resource"] == "*"
print(" ".join(st[0]["Action"]))'; }
union() { awk -F'\t' -v keys="$1" 'BEGIN { n = split(keys, k, ","); for (i = 1; i <= n; i++) want[k[i]] = 1 }
	($1 in want) && $2 != "-" { print $2 }' "$WORK/table" | sort -u | tr '\n' ' ' | sed 's/ $//'; }

cat >"$WORK/r.yaml" <<'YAML'
name: iam
stages:
  - allocate: {size: 1GiB}
  - mkfs: {}
  - snapshot: {}
  - register: {}
YAML
got=$("$AMIFORGE" iam-policy "$WORK/r.yaml" | actions)
check iam-recipe [ "$got" = "$(union allocate,mkfs,snapshot,register)" -a -n "$got" ]
got=$("$AMIFORGE" iam-policy --ami-commands | actions)
check iam-ami-commands [ "$got" = "$(union "ami convert,ami copy,ami create,ami deregister,ami expire,ami list,ami purge,ami share")" ]
got=$("$AMIFORGE" iam-policy "$WORK/r.yaml" --remote | actions)
want=$(union allocate,mkfs,snapshot,register,remote) remote=$(union remote)
check iam-remote [ "$got" = "$want" -a "$remote" = "s3:DeleteObject s3:GetObject s3:ListBucket s3:PutObject" ]
"$AMIFORGE" iam-policy >/dev/null 2>&1
check iam-usage [ $? = 2 ]
echo "stages: [" >"$WORK/bad.yaml"
"$AMIFORGE" iam-policy "$WORK/bad.yaml" >/dev/null 2>&1
check iam-bad-recipe [ $? = 65 ]
exit $T_FAILED
