#!/usr/bin/env python3
"""Runs one job of a CI example (examples/ci/) on this machine, as the CI
system would, for tests/integration/ci_examples.sh.

  run_pipeline.py github|gitlab FILE --job NAME --top REPO --workspace DIR
      --cache-dir DIR --artifacts DIR --logs DIR --result FILE
      [--set NAME=VALUE]...

The shell steps run for real, in order, with the CI system's environment
(CI=true, GITHUB_OUTPUT, GITHUB_ENV, CI_PROJECT_DIR, ...).  Only the parts
the examples use are emulated, and anything else is an error rather than
silently skipped:
- checkout (actions/checkout, GitLab's own fetch): a clone of REPO into the
  workspace;
- caches (actions/cache/restore and save, GitLab cache:): copies of the
  paths to and from --cache-dir/KEY, restored by exact key, then by the
  newest key with a restore-keys prefix (GitHub) or by exact key (GitLab);
  a key once saved is never overwritten (both systems);
- artifacts (actions/upload-artifact, GitLab artifacts: and its dotenv
  report): copies into --artifacts;
- GitHub's ${{ }} expressions: names from an explicit table (github.*,
  runner.temp, vars.*, secrets.* given with --set, env.*, steps.*.outputs.*),
  quoted literals, `a || b`, and always()/success()/failure() in `if:`;
  GitLab's $VAR in cache keys from the job's variables.
GitHub runs every step; GitLab runs the named job and then the jobs of later
stages that need it (they get its dotenv report).  Accepted and not acted on:
runs-on, timeout-minutes, permissions (GitHub); image, tags, timeout,
expire_in (GitLab): the job runs on this host, as root.  --result gets a JSON
summary: per step (or job) its status and log, the outputs, cache traffic.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import yaml


class PipelineError(Exception):
    """A construct the emulator does not understand: the test must fail."""


def copy_tree(src, dst):
    """Copies a file or directory, keeping modes, owners and sparse files."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run(["cp", "-a", "--sparse=always", src, dst], check=True)


class Cache:
    """A directory per key holding the cached paths relative to the workspace."""

    def __init__(self, root, log, overwrite=False):
        # GitHub's cache entries are immutable; GitLab uploads the cache again
        # after every job.
        self.root, self.log, self.overwrite = root, log, overwrite
        os.makedirs(root, exist_ok=True)

    def _dir(self, key):
        if "/" in key or key in ("", ".", ".."):
            raise PipelineError(f"cache key {key!r}: not usable as a directory name here")
        return os.path.join(self.root, key)

    def restore(self, key, prefixes, paths, workspace):
        hit = key if os.path.isdir(self._dir(key)) else None
        if hit is None:
            keys = sorted((k for k in os.listdir(self.root) if not k.endswith(".tmp")),
                          key=lambda k: os.stat(self._dir(k)).st_mtime, reverse=True)
            for p in prefixes:
                hit = next((k for k in keys if k.startswith(p)), None)
                if hit:
                    break
        if hit is None:
            self.log.append({"op": "miss", "key": key})
            return None
        for p in paths:
            src = os.path.join(self._dir(hit), p)
            if os.path.lexists(src):
                dst = os.path.join(workspace, p)
                if os.path.lexists(dst):
                    shutil.rmtree(dst) if os.path.isdir(dst) else os.unlink(dst)
                copy_tree(src, dst)
        self.log.append({"op": "restore", "key": key, "matched": hit})
        return hit

    def save(self, key, paths, workspace):
        d = self._dir(key)
        if os.path.isdir(d) and not self.overwrite:
            self.log.append({"op": "exists", "key": key})
            return
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        found = False
        for p in paths:
            src = os.path.join(workspace, p)
            if os.path.lexists(src):
                copy_tree(src, os.path.join(tmp, p))
                found = True
        if not found:
            shutil.rmtree(tmp)
            self.log.append({"op": "nothing", "key": key})
            return
        shutil.rmtree(d, ignore_errors=True)
        os.rename(tmp, d)
        self.log.append({"op": "save", "key": key})


def rel_path(p, workspace):
    """A path the cache or artifact actions take, relative to the workspace."""
    p = p.strip()
    if p.startswith("!"):
        raise PipelineError(f"path {p!r}: exclusions are not emulated")
    full = os.path.normpath(os.path.join(workspace, p))
    if not (full + "/").startswith(workspace.rstrip("/") + "/"):
        raise PipelineError(f"path {p!r} is outside the workspace")
    return os.path.relpath(full, workspace)


def upload(paths, dest, workspace):
    found = []
    for p in paths:
        r = rel_path(p, workspace)
        src = os.path.join(workspace, r)
        if os.path.lexists(src):
            copy_tree(src, os.path.join(dest, r))
            found.append(r)
    return found


def run_shell(argv, script, env, cwd, log):
    with open(log, "ab") as f:
        f.write(f"# {' '.join(argv)}\n{script}\n# ----\n".encode())
        f.flush()
        p = subprocess.run(argv + [script], env=env, cwd=cwd,
                           stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return p.returncode


def parse_kv_file(path):
    """GITHUB_OUTPUT / GITHUB_ENV / dotenv: NAME=VALUE and NAME<<DELIM lines."""
    out = {}
    if not os.path.exists(path):
        return out
    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_-]*)<<(.+)", line)
        if m:
            val = []
            while i < len(lines) and lines[i] != m.group(2):
                val.append(lines[i])
                i += 1
            if i == len(lines):
                raise PipelineError(f"{path}: {m.group(1)}<<{m.group(2)} is never closed")
            i += 1
            out[m.group(1)] = "\n".join(val)
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_-]*)=(.*)", line)
        if not m:
            raise PipelineError(f"{path}: not NAME=VALUE: {line!r}")
        out[m.group(1)] = m.group(2)
    return out


# ---- GitHub Actions -----------------------------------------------------------------

class GitHubJob:
    STEP_KEYS = {"name", "id", "uses", "with", "run", "env", "if", "shell", "working-directory"}
    JOB_KEYS = {"runs-on", "timeout-minutes", "env", "outputs", "steps", "permissions"}

    # PyYAML reads the key `on` as True (YAML 1.1).
    TOP_KEYS = {"name", True, "on", "permissions", "env", "jobs"}

    def __init__(self, doc, job, a):
        bad = set(doc) - self.TOP_KEYS
        if bad:
            raise PipelineError(f"workflow keys not emulated: {sorted(map(str, bad))}")
        if job not in doc.get("jobs", {}):
            raise PipelineError(f"no job {job!r}")
        self.doc, self.job, self.a = doc, doc["jobs"][job], a
        bad = set(self.job) - self.JOB_KEYS
        if bad:
            raise PipelineError(f"job keys not emulated: {sorted(bad)}")
        self.table = dict(a.set)
        self.temp = os.path.join(a.workspace + ".runner-temp")
        self.table.update({"runner.temp": self.temp, "github.workspace": a.workspace})
        self.env = {}
        self.steps = {}      # id -> {"outputs": {...}, "outcome": ...}
        self.failed = False
        self.cache = Cache(a.cache_dir, [])
        self.result = {"steps": [], "cache": self.cache.log, "artifacts": []}

    # Expressions: NAME, 'literal', a || b, fn() for if:.
    def value(self, term):
        term = term.strip()
        if re.fullmatch(r"'([^']|'')*'", term):
            return term[1:-1].replace("''", "'")
        if term in ("always()", "success()", "failure()", "cancelled()"):
            return {"always()": True, "success()": not self.failed,
                    "failure()": self.failed, "cancelled()": False}[term]
        m = re.fullmatch(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", term)
        if m:
            if m.group(1) not in self.steps:
                raise PipelineError(f"${{{{ {term} }}}}: no step {m.group(1)!r} ran before")
            return self.steps[m.group(1)]["outputs"].get(m.group(2), "")
        m = re.fullmatch(r"env\.([A-Za-z_][A-Za-z0-9_]*)", term)
        if m:
            return self.env.get(m.group(1), "")
        if term in self.table:
            return self.table[term]
        raise PipelineError(f"expression {term!r} is not in the emulator's table")

    def expr(self, e):
        vals = [self.value(t) for t in split_or(e)]
        for v in vals:
            if v:
                return v
        return vals[-1]

    def interp(self, s):
        if not isinstance(s, str):
            return s
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(self.expr(m.group(1))), s)

    def should_run(self, step):
        cond = step.get("if")
        if cond is None:
            return not self.failed
        cond = str(cond).strip()
        if cond.startswith("${{") and cond.endswith("}}"):
            cond = cond[3:-2]
        return bool(self.expr(cond))

    def run(self):
        a = self.a
        os.makedirs(a.workspace)
        os.makedirs(self.temp)
        for scope in (self.doc.get("env") or {}, self.job.get("env") or {}):
            for k, v in scope.items():
                self.env[k] = self.interp(str(v))
        for n, step in enumerate(self.job["steps"], 1):
            bad = set(step) - self.STEP_KEYS
            if bad:
                raise PipelineError(f"step {n}: keys not emulated: {sorted(bad)}")
            name = step.get("name") or step.get("uses") or f"step {n}"
            log = os.path.join(a.logs, f"gh-{n:02d}.log")
            rec = {"name": name, "id": step.get("id"), "log": log}
            self.result["steps"].append(rec)
            if not self.should_run(step):
                rec["status"] = "skipped"
                continue
            t0 = time.monotonic()
            ok, outputs = self.run_step(step, log)
            rec.update(status="success" if ok else "failure", outputs=outputs,
                       seconds=round(time.monotonic() - t0, 1))
            if step.get("id"):
                self.steps[step["id"]] = {"outputs": outputs}
            if not ok:
                self.failed = True
        self.result["status"] = "failure" if self.failed else "success"
        self.result["outputs"] = {k: self.interp(str(v)) for k, v in (self.job.get("outputs") or {}).items()}
        shutil.rmtree(self.temp, ignore_errors=True)

    def run_step(self, step, log):
        if "uses" in step:
            return self.run_action(step, log), {}
        files = {k: os.path.join(self.temp, f"{k.lower()}.{len(self.result['steps'])}")
                 for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        for f in files.values():
            open(f, "w").close()
        env = dict(base_env(self.a))
        env.update(self.env)
        env.update({k: self.interp(str(v)) for k, v in (step.get("env") or {}).items()})
        env.update(files)
        env.update(GITHUB_ACTIONS="true", CI="true", GITHUB_WORKSPACE=self.a.workspace,
                   RUNNER_TEMP=self.temp, GITHUB_SHA=self.table["github.sha"],
                   GITHUB_RUN_ID=self.table["github.run_id"],
                   GITHUB_RUN_ATTEMPT=self.table["github.run_attempt"])
        shell = step.get("shell")
        if shell not in (None, "bash"):
            raise PipelineError(f"shell {shell!r} is not emulated")
        # What GitHub runs: `bash -e {0}` by default, with pipefail when shell: bash.
        argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"] if shell else ["bash", "-e", "-c"]
        cwd = os.path.join(self.a.workspace, step.get("working-directory", "."))
        rc = run_shell(argv, self.interp(step["run"]), env, cwd, log)
        for k, v in parse_kv_file(files["GITHUB_ENV"]).items():
            self.env[k] = v
        with open(log, "a") as f:
            f.write(f"# exit {rc}\n")
        return rc == 0, parse_kv_file(files["GITHUB_OUTPUT"])

    def run_action(self, step, log):
        uses = step["uses"]
        w = {k: self.interp(str(v)) for k, v in (step.get("with") or {}).items()}
        ws = self.a.workspace
        action = uses.split("@")[0]
        allowed = {"actions/checkout": set(), "actions/cache/restore": {"path", "key", "restore-keys"},
                   "actions/cache/save": {"path", "key"},
                   "actions/upload-artifact": {"name", "path", "if-no-files-found"}}
        if action not in allowed:
            raise PipelineError(f"action {uses!r} is not emulated")
        if set(w) - allowed[action]:
            raise PipelineError(f"{uses}: inputs not emulated: {sorted(set(w) - allowed[action])}")
        with open(log, "a") as f:
            f.write(f"# {uses} {json.dumps(w)}\n")
        if action == "actions/checkout":
            p = subprocess.run(["git", "clone", "-q", self.a.top, ws], stdout=open(log, "a"),
                               stderr=subprocess.STDOUT)
            return p.returncode == 0
        paths = [rel_path(p, ws) for p in w.get("path", "").split("\n") if p.strip()]
        if action == "actions/cache/restore":
            prefixes = [p.strip() for p in w.get("restore-keys", "").split("\n") if p.strip()]
            self.cache.restore(w["key"], prefixes, paths, ws)
            return True
        if action == "actions/cache/save":
            self.cache.save(w["key"], paths, ws)
            return True
        dest = os.path.join(self.a.artifacts, w.get("name", "artifact"))
        found = upload([p for p in w.get("path", "").split("\n") if p.strip()], dest, ws)
        self.result["artifacts"].append({"name": w.get("name", "artifact"), "files": found})
        return bool(found) or w.get("if-no-files-found", "warn") != "error"


def split_or(e):
    """Splits `a || 'b || c' || d` on the top-level ||."""
    parts, cur, q = [], "", False
    i = 0
    while i < len(e):
        c = e[i]
        if c == "'":
            q = not q
        if not q and e.startswith("||", i):
            parts.append(cur)
            cur = ""
            i += 2
            continue
        cur += c
        i += 1
    parts.append(cur)
    # Anything else (&&, ==, !, hashFiles(), format()...) is a term that
    # value() does not know, and so an error.
    return parts


# ---- GitLab CI ------------------------------------------------------------------

GITLAB_TOP_KEYS = {"variables", "stages", "default", "workflow", "include"}
GITLAB_JOB_KEYS = {"stage", "image", "timeout", "before_script", "script", "after_script", "cache",
                   "artifacts", "needs", "variables", "tags"}


class GitLabPipeline:
    def __init__(self, doc, job, a):
        for k in ("default", "workflow", "include"):
            if k in doc:
                raise PipelineError(f"top-level {k!r} is not emulated")
        self.doc, self.a = doc, a
        self.jobs = {k: v for k, v in doc.items() if k not in GITLAB_TOP_KEYS and not k.startswith(".")}
        if job not in self.jobs:
            raise PipelineError(f"no job {job!r}")
        self.first = job
        self.stages = doc.get("stages", ["build", "test", "deploy"])
        # CI/CD variables (project settings) come with --set NAME=VALUE and
        # win over the file's variables, as in GitLab.
        self.project_vars = {k: v for k, v in a.set.items() if re.fullmatch(r"[A-Z_][A-Z0-9_]*", k)}
        self.cache = Cache(a.cache_dir, [], overwrite=True)
        self.result = {"jobs": [], "cache": self.cache.log, "artifacts": []}

    def predefined(self):
        s = self.a.set
        return {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": self.a.workspace,
                "CI_COMMIT_SHA": s["github.sha"], "CI_COMMIT_REF_SLUG": s.get("ref_slug", "main"),
                "CI_PIPELINE_ID": s["github.run_id"], "CI_JOB_ID": s["github.run_id"] + s["github.run_attempt"]}

    def job_vars(self, job, inherited):
        v = {}
        for scope in (self.doc.get("variables") or {}, job.get("variables") or {}):
            for k, val in scope.items():
                v[k] = val["value"] if isinstance(val, dict) else str(val)
        v.update(self.project_vars)
        v.update(inherited)
        v.update(self.predefined())
        # GitLab expands $VAR in variable values (one level is all the examples use).
        return {k: self.expand(val, v) for k, val in v.items()}

    def expand(self, s, vars_):
        def sub(m):
            name = m.group(1) or m.group(2)
            if name not in vars_:
                raise PipelineError(f"${name} in {s!r} is not defined")
            return vars_[name]
        return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, s)

    def script(self, lines):
        # The runner echoes each command and stops at the first failure.
        body = ["set -eo pipefail"]
        for line in lines:
            body.append(f"printf '$ %s\\n' {shell_quote(line)}")
            body.append(line)
        return "\n".join(body)

    def run(self):
        os.makedirs(self.a.workspace)
        order = [self.first] + [n for n, j in self.jobs.items()
                                if self.first in [x if isinstance(x, str) else x.get("job")
                                                  for x in j.get("needs") or []]]
        dotenv, failed = {}, False
        for name in order:
            rec = {"name": name, "log": os.path.join(self.a.logs, f"gl-{name}.log")}
            self.result["jobs"].append(rec)
            if failed:
                rec["status"] = "skipped"
                continue
            ok, env_out = self.run_job(name, self.jobs[name], dotenv, rec)
            rec["status"] = "success" if ok else "failed"
            dotenv.update(env_out)
            failed = not ok
        self.result["status"] = "failed" if failed else "success"
        self.result["outputs"] = dotenv

    def run_job(self, name, job, inherited, rec):
        bad = set(job) - GITLAB_JOB_KEYS
        if bad:
            raise PipelineError(f"job {name}: keys not emulated: {sorted(bad)}")
        if "script" not in job:
            raise PipelineError(f"job {name}: no script")
        ws = self.a.workspace
        if not os.path.isdir(os.path.join(ws, ".git")):
            subprocess.run(["git", "clone", "-q", self.a.top, ws], check=True)
        vars_ = self.job_vars(job, inherited)
        env = dict(base_env(self.a))
        env.update(vars_)
        caches = job.get("cache") or []
        caches = [caches] if isinstance(caches, dict) else caches
        for c in caches:
            if set(c) - {"key", "paths", "when"}:
                raise PipelineError(f"job {name}: cache keys not emulated: {sorted(set(c) - {'key', 'paths', 'when'})}")
            c["_key"] = self.expand(str(c.get("key", "default")), vars_)
            self.cache.restore(c["_key"], [], [rel_path(p, ws) for p in c["paths"]], ws)
        t0 = time.monotonic()
        rc = run_shell(["bash", "--noprofile", "--norc", "-c"],
                       self.script(list(job.get("before_script") or []) + list(job["script"])),
                       env, ws, rec["log"])
        ok = rc == 0
        rec["seconds"] = round(time.monotonic() - t0, 1)
        rec["script_exit"] = rc
        if job.get("after_script"):
            env_after = dict(env, CI_JOB_STATUS="success" if ok else "failed")
            rec["after_script_exit"] = run_shell(["bash", "--noprofile", "--norc", "-c"],
                                                 self.script(job["after_script"]), env_after, ws, rec["log"])
        for c in caches:
            if c.get("when", "on_success") == "always" or (c.get("when", "on_success") == "on_success") == ok:
                self.cache.save(c["_key"], [rel_path(p, ws) for p in c["paths"]], ws)
        out = {}
        art = job.get("artifacts")
        if art:
            if set(art) - {"when", "paths", "reports", "expire_in"}:
                raise PipelineError(f"job {name}: artifacts keys not emulated")
            when = art.get("when", "on_success")
            if when == "always" or (when == "on_success") == ok:
                dest = os.path.join(self.a.artifacts, name)
                found = upload(art.get("paths") or [], dest, ws)
                self.result["artifacts"].append({"name": name, "files": found})
                reports = art.get("reports") or {}
                if set(reports) - {"dotenv"}:
                    raise PipelineError(f"job {name}: reports not emulated: {sorted(set(reports) - {'dotenv'})}")
                if "dotenv" in reports:
                    out = parse_kv_file(os.path.join(ws, reports["dotenv"]))
                    rec["dotenv"] = out
        return ok, out


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def base_env(a):
    """The runner's own environment: this process's, without the AWS
    credentials (they reach a job only through secrets / CI variables)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["github", "gitlab"])
    ap.add_argument("file")
    for o in ("--job", "--top", "--workspace", "--cache-dir", "--artifacts", "--logs", "--result"):
        ap.add_argument(o, required=True)
    ap.add_argument("--set", action="append", default=[])
    # KEY=VAR: KEY's value is this process's environment variable VAR, so
    # that secrets stay off the command line (ps shows it to every user).
    ap.add_argument("--set-env", action="append", default=[])
    a = ap.parse_args()
    a.set = dict(s.split("=", 1) for s in a.set)
    for s in a.set_env:
        key, var = s.split("=", 1)
        if var not in os.environ:
            print(f"run_pipeline: --set-env {s}: {var} is not in the environment", file=sys.stderr)
            return 2
        a.set[key] = os.environ[var]
    a.workspace = os.path.abspath(a.workspace)
    os.makedirs(a.logs, exist_ok=True)
    doc = yaml.safe_load(open(a.file))
    try:
        p = (GitHubJob if a.kind == "github" else GitLabPipeline)(doc, a.job, a)
        p.run()
    except PipelineError as e:
        print(f"run_pipeline: {a.file}: {e}", file=sys.stderr)
        return 3
    with open(a.result, "w") as f:
        json.dump(p.result, f, indent=1)
    return 0 if p.result["status"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
