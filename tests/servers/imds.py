#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""imds: a local EC2 instance metadata service (IMDSv1 and v2) for tests.

Serves the token endpoint, meta-data (instance id, region, availability zone, ami id,
public keys), dynamic/instance-identity/document, user-data and IAM role credentials
with an Expiration, rotated when they expire so that refresh can be tested.

Usage:
  imds.py [--port N] [--port-file FILE] [--mode v1v2|v2|v1] [--region R]
          [--instance-id I] [--role NAME | --no-role] [--cred-ttl SECS]
          [--secret-seed S] [--register URL] [--public-key FILE] [--user-data FILE]
          [--v1-token-status CODE] [--log-requests]
  --mode v2: GETs without a valid token get 401; v1: the token PUT answers
  --v1-token-status (default 404; old IMDS).
  --log-requests: each request on stderr as "METHOD PATH token=yes|no" (a valid token).
  Role credentials number n are AccessKeyId ASIAIMDS<n, 12 digits>, SecretAccessKey
  "imds-secret-<seed>-<n>", Token "imds-token-<seed>-<n>", valid --cred-ttl seconds
  (default 3600), replaced when they expire within --rotate-before.
  --register POSTs each new set to fakeaws's /__control so it accepts them.
Control: GET /__control/state -> counts of token PUTs, v1 and v2 GETs, credential sets
issued; POST /__control {"op": "set", "mode": ..., "cred_ttl": ...} changes them.
"""

import argparse
import json
import secrets
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ next to the servers
from common import Handler as BaseHandler, Server as BaseServer, post_control, serve


class Server(BaseServer):
    def __init__(self, addr, args):
        super().__init__(addr, Handler)
        self.a = args
        self.lock = threading.Lock()
        self.tokens = {}            # token -> expiry (monotonic)
        self.counts = {"token_puts": 0, "v1_gets": 0, "v2_gets": 0, "creds_issued": 0,
                       "rejected": 0}
        self.cred = None            # current credential set

    def credentials(self):
        with self.lock:
            now = time.time()
            # AWS publishes new credentials some minutes before the old expire
            if self.cred is None or self.cred["expires"] - now <= self.a.rotate_before:
                n = self.counts["creds_issued"] + 1
                self.counts["creds_issued"] = n
                seed = self.a.secret_seed
                self.cred = {"AccessKeyId": f"ASIAIMDS{n:012d}",
                             "SecretAccessKey": f"imds-secret-{seed}-{n}",
                             "Token": f"imds-token-{seed}-{n}",
                             "expires": now + self.a.cred_ttl}
                if self.a.register:
                    post_control(self.a.register, {"op": "creds", "access_key": self.cred["AccessKeyId"],
                                                   "secret_key": self.cred["SecretAccessKey"],
                                                   "token": self.cred["Token"]})
            c = self.cred
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        return json.dumps({"Code": "Success", "LastUpdated": iso(c["expires"] - self.a.cred_ttl),
                           "Type": "AWS-HMAC", "AccessKeyId": c["AccessKeyId"],
                           "SecretAccessKey": c["SecretAccessKey"], "Token": c["Token"],
                           "Expiration": iso(c["expires"])}, indent=2)


class Handler(BaseHandler):
    server_version = "EC2ws"
    content_type = "text/plain"

    def valid_token(self, token):
        with self.server.lock:
            return token is not None and self.server.tokens.get(token, 0) >= time.monotonic()

    def handle_request(self, body):
        token = self.headers.get("X-aws-ec2-metadata-token")
        self.note(" token=" + ("yes" if self.valid_token(token) else "no"))
        if self.command == "PUT":
            return self.put_token()
        if self.command == "GET":
            return self.get(token)
        if self.command == "POST":
            return self.send(405, "")
        return super().handle_request(body)

    def control(self, path, body):
        srv = self.server
        if self.command == "GET" and path == "/__control/state":
            with srv.lock:
                return self.send_json(200, srv.counts)
        if self.command != "POST" or path != "/__control":
            return self.send(404, "Not Found")
        req = json.loads(body or b"{}")
        if req.get("op") == "set":
            for k in ("mode", "cred_ttl", "region"):
                if k in req:
                    setattr(srv.a, k, req[k])
            if req.get("expire_now"):
                with srv.lock:
                    if srv.cred:
                        srv.cred["expires"] = 0
        return self.send_json(200, '{"ok": true}')

    def put_token(self):
        srv, a = self.server, self.server.a
        if self.path != "/latest/api/token":
            return self.send(403 if self.path.endswith("/api/token") else 404, "")
        if a.mode == "v1":
            return self.send(a.v1_token_status, "Not Found" if a.v1_token_status == 404 else "")
        if self.headers.get("X-Forwarded-For"):
            return self.send(403, "Forbidden")
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self.send(400, "Bad Request")
        token = secrets.token_urlsafe(40)
        with srv.lock:
            srv.tokens[token] = time.monotonic() + int(ttl)
            srv.counts["token_puts"] += 1
        self.send(200, token)

    def get(self, token):
        srv, a = self.server, self.server.a
        with srv.lock:
            if token is not None:
                if srv.tokens.get(token, 0) < time.monotonic():
                    srv.counts["rejected"] += 1
                    return self.send(401, "Unauthorized")
                srv.counts["v2_gets"] += 1
            elif a.mode == "v2":
                srv.counts["rejected"] += 1
                return self.send(401, "Unauthorized")
            else:
                srv.counts["v1_gets"] += 1
        body = self.lookup(self.path)
        if body is None:
            return self.send(404, "Not Found")
        ctype = "application/json" if body.lstrip().startswith("{") else "text/plain"
        self.send(200, body, ctype=ctype)

    def lookup(self, path):
        a = self.server.a
        md = {
            "ami-id": "ami-0123456789abcdef0",
            "instance-id": a.instance_id,
            "instance-type": "t3.micro",
            "local-hostname": "ip-10-0-0-1.ec2.internal",
            "placement/region": a.region,
            "placement/availability-zone": a.region + "a",
        }
        if a.public_key:
            with open(a.public_key) as f:
                md["public-keys/0/openssh-key"] = f.read()
        if not path.startswith("/latest/"):
            return None
        path = path[len("/latest/"):]
        if path == "user-data":
            if not a.user_data:
                return None
            with open(a.user_data) as f:
                return f.read()
        if path == "dynamic/instance-identity/document":
            return json.dumps({"accountId": "123456789012", "architecture": "x86_64",
                               "availabilityZone": a.region + "a", "imageId": md["ami-id"],
                               "instanceId": a.instance_id, "instanceType": "t3.micro",
                               "region": a.region}, indent=2)
        if not path.startswith("meta-data/"):
            return None
        sub = path[len("meta-data/"):]
        role = None if a.no_role else a.role
        if sub == "iam/security-credentials/" or sub == "iam/security-credentials":
            return role
        if role and sub == f"iam/security-credentials/{role}":
            return self.server.credentials()
        if sub == "public-keys/":
            return "0=test-key" if a.public_key else None
        if sub == "public-keys/0/":
            return "openssh-key" if a.public_key else None
        if sub in md:
            return md[sub]
        if sub == "" or sub.endswith("/"):
            names = sorted({k[len(sub):].split("/")[0] + ("/" if "/" in k[len(sub):] else "")
                            for k in md if k.startswith(sub)})
            if role and sub in ("", "iam/"):
                names.append("iam/" if sub == "" else "security-credentials/")
            return "\n".join(names) or None
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--mode", choices=("v1v2", "v2", "v1"), default="v1v2")
    ap.add_argument("--region", default="eu-west-1")
    ap.add_argument("--instance-id", default="i-0123456789abcdef0")
    ap.add_argument("--role", default="amiforge-test-role")
    ap.add_argument("--no-role", action="store_true")
    ap.add_argument("--cred-ttl", type=float, default=3600)
    ap.add_argument("--rotate-before", type=float, default=0,
                    help="issue new credentials when the current expire within SECS")
    ap.add_argument("--secret-seed", default=secrets.token_hex(4))
    ap.add_argument("--register", help="fakeaws base URL to tell about new credentials")
    ap.add_argument("--public-key")
    ap.add_argument("--user-data")
    ap.add_argument("--v1-token-status", type=int, default=404,
                    help="the token PUT's answer in --mode v1 (404 or 405)")
    ap.add_argument("--log-requests", action="store_true",
                    help='log each request on stderr: "METHOD PATH token=yes|no"')
    a = ap.parse_args()
    Handler.log_requests = a.log_requests
    serve(Server((a.address, a.port), a), "imds", a.port_file)


if __name__ == "__main__":
    main()
