#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""s3faults: an S3-shaped proxy in front of s3rver that counts requests and
injects faults, which s3rver cannot do (tests/integration/out_upload.sh).

Every request except /__control is forwarded to --upstream (s3rver) and
recorded: method, path, x-amz-acl, Content-MD5, status.

  POST /__control {"op": "reset"}                  forget requests and faults
  POST /__control {"op": "delay", "seconds": S}    hold every PUT S seconds first
  POST /__control {"op": "fault", "match": SUBSTR, "kind": K, "count": N,
                   "seconds": S}
        the next N PUTs whose path contains SUBSTR fail with K instead of
        being forwarded: "slowdown" (503 SlowDown), "500" (InternalError),
        "reset" (connection closed unanswered), "stall" (no answer for S s)
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

sys.dont_write_bytecode = True  # no __pycache__ next to the servers
from common import Handler as BaseHandler, Server, serve

lock = threading.Lock()
requests = []
faults = []
delay = [0.0]

S3_ERR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{msg}</Message>'
          '<RequestId>s3faults-{n}</RequestId></Error>')


def take_fault(method, path):
    with lock:
        for f in faults:
            if method == "PUT" and f["count"] > 0 and f["match"] in path:
                f["count"] -= 1
                return dict(f)
    return None


class Handler(BaseHandler):
    content_type = "application/xml"
    upstream = None

    def control(self, path, body):
        global faults
        if self.command == "GET":
            with lock:
                return self.send(200, json.dumps({"requests": requests}), ctype="application/json")
        op = json.loads(body or b"{}")
        with lock:
            if op["op"] == "reset":
                requests.clear()
                faults = []
                delay[0] = 0.0
            elif op["op"] == "delay":
                delay[0] = float(op["seconds"])
            elif op["op"] == "fault":
                faults.append({"match": op.get("match", ""), "kind": op["kind"],
                               "count": int(op.get("count", 1)), "seconds": float(op.get("seconds", 30))})
        self.send(200, "{}", ctype="application/json")

    def record(self, status):
        with lock:
            requests.append({"method": self.command, "path": self.path.split("?")[0],
                             "acl": self.headers.get("x-amz-acl"),
                             "md5": self.headers.get("Content-MD5"), "status": status})
            return len(requests)

    def handle_request(self, body):
        fault = take_fault(self.command, self.path)
        if fault:
            n = self.record("fault-" + fault["kind"])
            if fault["kind"] == "reset":
                return self.reset_connection()
            if fault["kind"] == "stall":
                time.sleep(fault["seconds"])
                return self.reset_connection()
            if fault["kind"] == "slowdown":
                return self.send(503, S3_ERR.format(code="SlowDown", msg="Please reduce your request rate.", n=n))
            return self.send(500, S3_ERR.format(code="InternalError", msg="We encountered an internal error.", n=n))
        if self.command == "PUT" and delay[0] > 0:
            time.sleep(delay[0])
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.record(resp.status)
        hop = ("connection", "transfer-encoding", "keep-alive", "content-length")
        self.send(resp.status, data, [(k, v) for k, v in resp.getheaders() if k.lower() not in hop]
                  + [("Content-Length", str(len(data)))])


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
