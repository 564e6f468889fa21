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
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ next to the servers
from common import Handler as BaseHandler, Server, serve

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


class Handler(BaseHandler):
    content_type = "text/xml"

    def handle_request(self, body):
        parts = self.path.split("?")[0].strip("/").split("/")
        kind = parts[0]
        if kind == "ok":
            return self.send(200, json.dumps({
                "method": self.command, "path": self.path, "body_len": len(body),
                "headers": {k.lower(): v for k, v in self.headers.items()}}), ctype="application/json")
        if kind in ("throttle", "slowdown", "reset"):
            n, key = int(parts[1]), parts[2]
            c = bump(key)
            if c <= n:
                if kind == "reset":
                    return self.reset_connection()
                if kind == "throttle":
                    return self.send(400, EC2_ERR.format(code="RequestLimitExceeded",
                                                         msg="Request limit exceeded.",
                                                         rid="rid-%d" % c))
                return self.send(503, S3_ERR.format(code="SlowDown", msg="Please reduce your request rate.",
                                                    rid="rid-%d" % c))
            return self.send(200, "done after %d" % c, ctype="text/plain")
        if kind == "status":
            code = int(parts[1])
            return self.send(code, EC2_ERR.format(code="InternalError", msg="An internal error has occurred",
                                                  rid="req-%d" % code))
        if kind == "json":
            code = int(parts[1])
            return self.send(code, json.dumps({"message": "Throttled.", "Reason": "ACCOUNT_THROTTLED"}),
                             [("x-amzn-ErrorType", "RequestThrottledException:http://internal"),
                              ("x-amzn-RequestId", "json-rid")], ctype="application/json")
        if kind == "badreq":
            return self.send(400, EC2_ERR.format(code="InvalidParameterValue", msg="Value (x) is bad",
                                                 rid="bad-rid"))
        if kind == "stall":
            time.sleep(60)
            return self.reset_connection()
        if kind == "count":
            with lock:
                return self.send(200, str(counts.get(parts[1], 0)), ctype="text/plain")
        return self.send(404, S3_ERR.format(code="NoSuchKey", msg="no such path", rid="nf"))


def main():
    serve(Server(("127.0.0.1", 0), Handler), "httpfaults")


if __name__ == "__main__":
    main()
