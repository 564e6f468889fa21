#!/usr/bin/env python3
"""A tiny EC2 instance metadata service for the prep-instance tests.

imds.py MODE PORTFILE KEY
  v2     PUT /latest/api/token (with X-aws-ec2-metadata-token-ttl-seconds)
         gives a token; GETs must carry it in X-aws-ec2-metadata-token (401
         otherwise).
  v1     PUT answers 405 (IMDSv2 not offered); GETs need no token.
  nokey  like v2, but the instance has no key pair (404).
Listens on 127.0.0.1 on a random port and writes the port to PORTFILE.
Each request is logged on stderr as "METHOD PATH token=yes|no".
"""
import http.server
import sys

MODE, PORTFILE, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
TOKEN = "amiforge-test-token"
KEY_PATH = "/latest/meta-data/public-keys/0/openssh-key"


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass

    def note(self):
        has = self.headers.get("X-aws-ec2-metadata-token") == TOKEN
        print(f"{self.command} {self.path} token={'yes' if has else 'no'}", file=sys.stderr, flush=True)

    def do_PUT(self):
        self.note()
        if self.path != "/latest/api/token":
            return self.reply(404)
        if MODE == "v1":
            return self.reply(405)
        if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(400)
        self.reply(200, TOKEN.encode())

    def do_GET(self):
        self.note()
        if MODE != "v1" and self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.reply(401)
        if self.path != KEY_PATH or MODE == "nokey":
            return self.reply(404)
        self.reply(200, (KEY + "\n").encode())


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os

os.rename(PORTFILE + ".tmp", PORTFILE)
server.serve_forever()
