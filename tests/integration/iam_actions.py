#!/usr/bin/env python3
"""The AWS actions each stage type and each `ami` subcommand can call, read
from the sources (tests/integration/iam_policy.sh compares them with
`amiforge iam-policy --list`).

Method: a call graph over every function of engine/, stages/ and tools/.
Functions are found by the house style (a definition starts at column 0 and
its body ends with "}" at column 0); an edge goes from a function to every
identifier in its body that names a function (called or passed as a
callback), a `static` one of the same file first.  The leaves are the
requests themselves:
  ec2_call / ec2_call_paged / ec2_call_text / ec2_call_simple (X, "Action")  -> ec2:Action
  a "ebs Action ..." request name (engine/aws/ebs.c)                        -> ebs:Action
  an S3 request: .op = "Op" or s3_action("Op", ...) (engine/aws/s3.c)        -> its IAM action (S3_IAM)
  s3_put_object / s3_multipart_create called with an ACL argument not NULL
  (x-amz-acl: a canned ACL on the object)                                   -> s3:PutObjectAcl
  ec2_params_add_tag_spec (tags on create)                                   -> ec2:CreateTags
A stage type's actions are those reachable from the functions of
stages/TYPE.c; an ami subcommand's from tools/ami_SUB.c and its own helper
files tools/ami_SUB_*.c; "remote" (the state store, --remote) from
engine/store/remote*.c.  Reachability over-approximates (a branch never
taken still counts), which is what a policy must allow."""
import os
import re
import sys

TOP = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")

# S3 operations and the IAM action each needs (S3 user guide, "Amazon S3
# actions"; a multipart upload is authorized as s3:PutObject, HeadObject as
# s3:GetObject, ListObjectsV2 as s3:ListBucket).
S3_IAM = {
    "CreateBucket": "s3:CreateBucket", "PutObject": "s3:PutObject", "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject", "DeleteObject": "s3:DeleteObject", "ListObjectsV2": "s3:ListBucket",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject", "AbortMultipartUpload": "s3:AbortMultipartUpload",
}

LEAVES = [
    (re.compile(r'\bec2_call(?:_paged|_text|_simple)?\s*\([^,]*,\s*"([A-Za-z]+)"'), lambda m: "ec2:" + m),
    (re.compile(r'"ebs ([A-Z][A-Za-z]+)'), lambda m: "ebs:" + m),
    (re.compile(r'\.op\s*=\s*"([A-Za-z]+)"'), lambda m: S3_IAM[m]),
    (re.compile(r'\bs3_action\s*\(\s*"([A-Za-z]+)"'), lambda m: S3_IAM[m]),
    (re.compile(r'\bec2_params_add_tag_spec\s*\('), lambda m: "ec2:CreateTags"),
    # A missing key is an answer (404) only with s3:ListBucket; without it S3
    # says 403 AccessDenied (s3.h, s3_get_object_found).
    (re.compile(r'\bs3_get_object_found\s*\(|\bs3_batch_get_outcome\s*\('), lambda m: "s3:ListBucket"),
]

DEF = re.compile(r'^(static\s+)?[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(')
IDENT = re.compile(r'\b([A-Za-z_]\w*)\b')
# Comments out, string and character literals kept ("//" or "/*" inside one).
LEXEME = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)


def uncomment(text):
    return LEXEME.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else
                      "\n" * m.group(0).count("\n") or " ", text)


def functions(path):
    """(name, static, body) of every function defined in PATH."""
    text = uncomment(open(path, encoding="utf-8").read())
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = DEF.match(lines[i])
        if m and not lines[i].startswith(("typedef", "struct", "enum", "#")) and not lines[i].rstrip().endswith(";"):
            j = i
            while j < len(lines) and lines[j] != "{" and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and lines[j] == "{":
                k = j
                while k < len(lines) and lines[k] != "}":
                    k += 1
                out.append((m.group(2), bool(m.group(1)), "\n".join(lines[j:k])))
                i = k
        i += 1
    return out


def sources():
    for d in ("engine", "stages", "tools"):
        for root, _, files in os.walk(os.path.join(TOP, d)):
            for f in sorted(files):
                if f.endswith(".c"):
                    yield os.path.relpath(os.path.join(root, f), TOP)


# The wrappers that send x-amz-acl, and which argument (0-based) is the ACL.
ACL_ARG = {"s3_put_object": 5, "s3_multipart_create": 3}


def call_args(body, start):
    """The top-level arguments of the call whose "(" is at START."""
    depth, args, cur = 0, [], ""
    for ch in body[start:]:
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return args + [cur.strip()]
        elif ch == "," and depth == 1:
            args.append(cur.strip())
            cur = ""
            continue
        cur += ch
    return args


def acl_leaves(body):
    acts = set()
    for name, i in ACL_ARG.items():
        for m in re.finditer(r'\b%s\s*\(' % name, body):
            a = call_args(body, m.end() - 1)
            if len(a) > i and a[i] != "NULL":
                acts.add("s3:PutObjectAcl")
    return acts


def graph():
    defs = {}      # (file, name) -> body
    glob = {}      # name -> file of the non-static definition
    statics = {}   # file -> names
    for f in sources():
        for name, static, body in functions(os.path.join(TOP, f)):
            defs[(f, name)] = body
            if static:
                statics.setdefault(f, set()).add(name)
            else:
                glob.setdefault(name, f)
    edges, leaves = {}, {}
    for (f, name), body in defs.items():
        acts = set()
        for rx, conv in LEAVES:
            for m in rx.finditer(body):
                acts.add(conv(m.group(1) if rx.groups else None))
        leaves[(f, name)] = acts | acl_leaves(body)
        out = set()
        for ident in set(IDENT.findall(body)):
            if ident == name:
                continue
            if ident in statics.get(f, ()):
                out.add((f, ident))
            elif ident in glob:
                out.add((glob[ident], ident))
        edges[(f, name)] = out
    return defs, edges, leaves


def reach(roots, edges, leaves):
    seen, todo, acts = set(), list(roots), set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        acts |= leaves.get(n, set())
        todo.extend(edges.get(n, ()))
    return acts


def main():
    defs, edges, leaves = graph()
    keys = {}
    for f, name in defs:
        base = os.path.basename(f)[:-2]
        if f.startswith("stages/") and base != "registry":
            keys.setdefault(base, set()).add((f, name))
        elif f.startswith("engine/store/remote"):
            keys.setdefault("remote", set()).add((f, name))
    subs = re.findall(r'\bami_(\w+)_main\s*\(', open(os.path.join(TOP, "include/amiforge/ami.h")).read())
    for f, name in defs:
        base = os.path.basename(f)[:-2]
        for s in subs:
            if f.startswith("tools/") and (base == "ami_" + s or base.startswith("ami_" + s + "_")):
                keys.setdefault("ami " + s, set()).add((f, name))
    for key in sorted(keys):
        for a in sorted(reach(keys[key], edges, leaves)):
            print(key, a, sep="\t")
        if not reach(keys[key], edges, leaves):
            print(key, "-", sep="\t")


if __name__ == "__main__":
    main()
