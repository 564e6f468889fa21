#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""s3faults: an S3-shaped proxy in front of s3rver that records requests,
injects faults and enforces S3's conditional writes, which s3rver cannot do
(tests/integration/out_upload.sh, aws_s3.sh).

Every request except /__control is forwarded to --upstream (s3rver) and
recorded in order as
  {"method": M, "path": P, "query": Q, "list": L, "acl": A, "md5": D,
   "cond": C, "fault": F, "status": S}
P is the path without its query string (percent-encoded as sent, starting
with /BUCKET), Q the query string ("" if none), L true for ListObjectsV2 (a
GET of /BUCKET with list-type=2), A and D the x-amz-acl and Content-MD5
headers, C "If-None-Match: V" / "If-Match: V" for a conditional PutObject
(else null), F the fault kind that hit the request (else null), S the HTTP
status sent, or "fault-KIND" when a fault answered in place of s3rver.  To
count GETs of objects under a prefix:
  [r for r in state["requests"] if r["method"] == "GET" and not r["list"]
   and r["path"].startswith("/BUCKET/PREFIX")]

Conditional writes (s3rver ignores If-None-Match and If-Match on PUT): a
PutObject carrying either is decided here, under a lock per key, so that of
two concurrent conditional PUTs of one key at most one wins: the object is
HEADed upstream, then
  If-None-Match: *   412 PreconditionFailed if it exists
  If-None-Match: X   501 NotImplemented (S3 accepts only *)
  If-Match: ETAG     404 NoSuchKey if it does not exist (S3's answer for a
                     key with no current version), 412 PreconditionFailed if
                     its ETag differs (quotes and W/ ignored; * matches any)
and otherwise the PUT is forwarded (without those headers), still under the
lock.  Errors carry S3's XML body.

  POST /__control {"op": "reset"}                  forget requests and faults
  POST /__control {"op": "delay", "seconds": S}    hold every PUT S seconds first
  POST /__control {"op": "fault", "match": SUBSTR, "kind": K, "count": N,
                   "seconds": S, "method": M}
        the next N requests of method M whose path (query string included)
        contains SUBSTR get fault K: "slowdown" (503 SlowDown), "500"
        (InternalError), "reset" (connection closed unanswered), "stall" (no
        answer for S s, then reset) answer in place of s3rver; "corrupt"
        forwards, then flips a bit in the middle of the body (a GET of an
        object whose content no longer matches its hash).  M: "PUT" (the
        default), "GET" (objects, not listings), "HEAD", "DELETE", "POST",
        "LIST" (ListObjectsV2) or "*" (any).  N defaults to 1, S to 30.  An
        unknown method or kind is answered 400.
  GET /__control/state                             {"requests": [...]}
Writes its port to --port-file and prints "s3faults listening on 127.0.0.1:PORT"
once bound; exits on SIGTERM.
"""
import argparse
import http.client
import json
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

sys.dont_write_bytecode = True  # no __pycache__ next to the servers
from common import Handler as BaseHandler, Server, serve

lock = threading.Lock()
requests = []
faults = []
delay = [0.0]
key_locks = {}

S3_ERR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{msg}</Message>'
          '<RequestId>s3faults-{n}</RequestId></Error>')
HOP = ("connection", "transfer-encoding", "keep-alive", "content-length")
COND = ("if-none-match", "if-match")
METHODS = ("PUT", "GET", "HEAD", "DELETE", "POST", "LIST", "*")
KINDS = ("slowdown", "500", "reset", "stall", "corrupt")


def take_fault(kind, path):
    """The first armed fault for a request of KIND ("LIST" or the method)."""
    with lock:
        for f in faults:
            if f["count"] > 0 and f["method"] in (kind, "*") and f["match"] in path:
                f["count"] -= 1
                return dict(f)
    return None


def key_lock(path):
    with lock:
        return key_locks.setdefault(path, threading.Lock())


def etag_eq(a, b):
    norm = lambda e: e.strip().removeprefix("W/").strip('"')
    return a.strip() == "*" or norm(a) == norm(b)


class Handler(BaseHandler):
    content_type = "application/xml"
    upstream = None

    def control(self, path, body):
        global faults
        if self.command == "GET":
            with lock:
                return self.send(200, json.dumps({"requests": requests}), ctype="application/json")
        op = json.loads(body or b"{}")
        method = op.get("method", "PUT").upper()
        if op["op"] == "fault" and (method not in METHODS or op.get("kind") not in KINDS):
            # a typo must not turn into a test that injects nothing
            return self.send_json(400, {"error": "fault: method one of %s, kind one of %s" % (METHODS, KINDS)})
        with lock:
            if op["op"] == "reset":
                requests.clear()
                faults = []
                delay[0] = 0.0
            elif op["op"] == "delay":
                delay[0] = float(op["seconds"])
            elif op["op"] == "fault":
                faults.append({"match": op.get("match", ""), "kind": op["kind"], "method": method,
                               "count": int(op.get("count", 1)), "seconds": float(op.get("seconds", 30))})
        self.send(200, "{}", ctype="application/json")

    # ---- what the request is ----

    def split(self):
        u = urlsplit(self.path)
        return u.path, u.query

    def is_list(self):
        path, query = self.split()
        return (self.command == "GET" and path.strip("/").count("/") == 0
                and parse_qs(query).get("list-type") == ["2"])

    def cond(self):
        """The condition header of a PutObject (not UploadPart, not a copy), or None."""
        path, query = self.split()
        if self.command != "PUT" or query or self.headers.get("x-amz-copy-source"):
            return None
        for name in ("If-None-Match", "If-Match"):
            if self.headers.get(name) is not None:
                return name, self.headers.get(name)
        return None

    def record(self, status, fault=None):
        path, query = self.split()
        c = self.cond()
        with lock:
            requests.append({"method": self.command, "path": path, "query": query, "list": self.is_list(),
                             "acl": self.headers.get("x-amz-acl"), "md5": self.headers.get("Content-MD5"),
                             "cond": "%s: %s" % c if c else None, "fault": fault, "status": status})
            return len(requests)

    # ---- answers ----

    def s3_error(self, status, code, msg, fault=None):
        n = self.record(status, fault)
        self.send(status, S3_ERR.format(code=code, msg=msg, n=n))

    def upstream_call(self, method, body, headers):
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def forward(self, body, drop=(), fault=None, mangle=None):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection") + drop}
        status, rh, data = self.upstream_call(self.command, body, headers)
        if mangle:
            data = mangle(data)
        self.record(status, fault)
        # A HEAD answer has no body but the object's Content-Length.
        length = dict((k.lower(), v) for k, v in rh).get("content-length", "0") \
            if self.command == "HEAD" else str(len(data))
        self.send(status, data, [(k, v) for k, v in rh if k.lower() not in HOP]
                  + [("Content-Length", length)])

    def fail(self, fault):
        n = self.record("fault-" + fault["kind"], fault["kind"])
        if fault["kind"] == "reset":
            return self.reset_connection()
        if fault["kind"] == "stall":
            time.sleep(fault["seconds"])
            return self.reset_connection()
        if fault["kind"] == "slowdown":
            return self.send(503, S3_ERR.format(code="SlowDown", msg="Please reduce your request rate.", n=n))
        return self.send(500, S3_ERR.format(code="InternalError", msg="We encountered an internal error.", n=n))

    def conditional_put(self, body, name, value):
        """S3's conditional write, decided under the key's lock."""
        if name == "If-None-Match" and value.strip() != "*":
            return self.s3_error(501, "NotImplemented", "If-None-Match accepts only *.")
        with key_lock(self.split()[0]):
            status, rh, _ = self.upstream_call("HEAD", None, {})
            etag = dict((k.lower(), v) for k, v in rh).get("etag", "") if status == 200 else None
            if name == "If-None-Match" and etag is not None:
                return self.s3_error(412, "PreconditionFailed",
                                     "At least one of the pre-conditions you specified did not hold")
            if name == "If-Match" and etag is None:
                return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
            if name == "If-Match" and not etag_eq(value, etag):
                return self.s3_error(412, "PreconditionFailed",
                                     "At least one of the pre-conditions you specified did not hold")
            self.forward(body, drop=COND)

    def handle_request(self, body):
        fault = take_fault("LIST" if self.is_list() else self.command, self.path)
        if fault and fault["kind"] != "corrupt":
            return self.fail(fault)
        if self.command == "PUT" and delay[0] > 0:
            time.sleep(delay[0])
        c = self.cond()
        if c:
            return self.conditional_put(body, *c)
        mangle = None
        if fault:
            def mangle(data):
                if not data:
                    return data
                b = bytearray(data)
                b[len(b) // 2] ^= 0x01
                return bytes(b)
        self.forward(body, fault=fault["kind"] if fault else None, mangle=mangle)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="HOST:PORT of s3rver")
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    host, port = a.upstream.rsplit(":", 1)
    Handler.upstream = (host, int(port))
    serve(Server(("127.0.0.1", 0), Handler), "s3faults", a.port_file)


if __name__ == "__main__":
    main()
