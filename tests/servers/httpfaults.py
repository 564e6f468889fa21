#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""httpfaults: a tiny HTTP server whose paths script failures, for the HTTP
client's unit tests (tests/unit/test_http.c).

  /ok                 200, JSON of the request: method, path, headers, body length
  /throttle/N/KEY     the first N calls per KEY: 400 EC2-style RequestLimitExceeded; then 200
  /slowdown/N/KEY     the first N calls per KEY: 503 S3-style SlowDown; then 200
  /status/CODE        CODE with an EC2 error body (code InternalError, RequestID req-CODE)
  /json/CODE          CODE with a rest-json error body and x-amzn-RequestId
  /badreq             400 InvalidParameterValue (not retryable)
  /reset/N/KEY        the first N calls per KEY: close the connection unanswered; then 200
  /stall              accept, read the request, answer nothing for 60 s
  /count/KEY          200, body = calls seen for KEY so far
Prints "httpfaults listening on 127.0.0.1:PORT" once bound; exits on SIGTERM.
"""
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
lock = threading.Lock()

EC2_ERR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
           '<Message>{msg}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>')
S3_ERR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{msg}</Message>'
          '<RequestId>{rid}</RequestId></Error>')


def bump(key):
    with lock:
        counts[key] = counts.get(key, 0) + 1
        return counts[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body, ctype="text/xml", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def reset(self):
        # SO_LINGER 0: close() sends RST, as a dropped connection does.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("?")[0].strip("/").split("/")
        kind = parts[0]
        if kind == "ok":
            return self.send(200, json.dumps({
                "method": self.command, "path": self.path, "body_len": len(body),
                "headers": {k.lower(): v for k, v in self.headers.items()}}), "application/json")
        if kind in ("throttle", "slowdown", "reset"):
            n, key = int(parts[1]), parts[2]
            c = bump(key)
            if c <= n:
                if kind == "reset":
                    return self.reset()
                if kind == "throttle":
                    return self.send(400, EC2_ERR.format(code="RequestLimitExceeded",
                                                         msg="Request limit exceeded.",
                                                         rid="rid-%d" % c))
                return self.send(503, S3_ERR.format(code="SlowDown", msg="Please reduce your request rate.",
                                                    rid="rid-%d" % c))
            return self.send(200, "done after %d" % c, "text/plain")
        if kind == "status":
            code = int(parts[1])
            return self.send(code, EC2_ERR.format(code="InternalError", msg="An internal error has occurred",
                                                  rid="req-%d" % code))
        if kind == "json":
            code = int(parts[1])
            return self.send(code, json.dumps({"message": "Throttled.", "Reason": "ACCOUNT_THROTTLED"}),
                             "application/json",
                             [("x-amzn-ErrorType", "RequestThrottledException:http://internal"),
                              ("x-amzn-RequestId", "json-rid")])
        if kind == "badreq":
            return self.send(400, EC2_ERR.format(code="InvalidParameterValue", msg="Value (x) is bad",
                                                 rid="bad-rid"))
        if kind == "stall":
            time.sleep(60)
            return self.reset()
        if kind == "count":
            with lock:
                return self.send(200, str(counts.get(parts[1], 0)), "text/plain")
        return self.send(404, S3_ERR.format(code="NoSuchKey", msg="no such path", rid="nf"))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("httpfaults listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    main()
