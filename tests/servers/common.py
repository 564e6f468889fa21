# SPDX-License-Identifier: Apache-2.0
"""common: the HTTP skeleton of the test servers (fakeaws.py, imds.py,
httpfaults.py, s3faults.py).

  Server           a ThreadingHTTPServer with daemon threads
  Handler          HTTP/1.1, quiet; every method goes through one dispatch that
                   reads the body and sends /__control... to control(path, body),
                   everything else to handle_request(body)
  serve(srv, ...)  announces the bound port (--port-file, written atomically,
                   and "NAME listening on ADDR:PORT" on stdout), exits 0 on
                   SIGTERM or ^C
  post_control     POSTs JSON to another server's /__control
"""
import json
import os
import signal
import socket
import struct
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    content_type = None         # the default Content-Type of send()
    log_requests = False        # note() writes to stderr when true

    def log_message(self, fmt, *args):  # quiet: tests read their own output
        pass

    def note(self, extra=""):
        """Logs "METHOD PATH[EXTRA]" on stderr if log_requests is set."""
        if self.log_requests:
            print(f"{self.command} {self.path}{extra}", file=sys.stderr, flush=True)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body, headers=(), ctype=None):
        """Answers STATUS with BODY (str or bytes).  HEADERS: a dict or pairs;
        Content-Type (CTYPE or the class's content_type) and Content-Length are
        added unless HEADERS has them."""
        data = body.encode() if isinstance(body, str) else body
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        given = {k.lower() for k, _ in pairs}
        self.send_response(status)
        ctype = ctype or self.content_type
        if ctype and "content-type" not in given:
            self.send_header("Content-Type", ctype)
        if "content-length" not in given:
            self.send_header("Content-Length", str(len(data)))
        for k, v in pairs:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj):
        self.send(status, obj if isinstance(obj, str) else json.dumps(obj), ctype="application/json")

    def reset_connection(self):
        # SO_LINGER 0: close() sends a TCP RST, as a dropped connection does.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def dispatch(self):
        body = self.read_body()
        path = urlsplit(self.path).path
        if path.startswith("/__control"):
            return self.control(path, body)
        return self.handle_request(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = dispatch

    def control(self, path, body):
        return self.handle_request(body)

    def handle_request(self, body):
        self.send_error(501, "Unsupported method (%r)" % self.command)


def serve(srv, name, port_file=None):
    """Writes the bound port to PORT_FILE (atomically) and prints "NAME
    listening on ADDR:PORT", then serves until SIGTERM or ^C (exit 0)."""
    addr, port = srv.server_address[:2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(port_file + ".tmp", port_file)
    print(f"{name} listening on {addr}:{port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


def post_control(base, obj, timeout=5):
    """POSTs OBJ as JSON to BASE/__control; returns the answer's body."""
    req = urllib.request.Request(base.rstrip("/") + "/__control", data=json.dumps(obj).encode(),
                                 method="POST")
    return urllib.request.urlopen(req, timeout=timeout).read()
