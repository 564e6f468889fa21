#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""fakeaws: a local EC2 Query API (2016-11-15) and EBS direct APIs server for tests.

One port serves both services; the service and region come from each request's
SigV4 credential scope.  Every request's signature is recomputed with botocore
(SigV4Auth over an AWSRequest rebuilt from the incoming request) and a mismatch
is answered the way AWS answers it.  State is real: images, snapshots with
their blocks and checksums, tags, launch permissions, copies per region,
deprecation times.  Faults are injected through POST /__control.

Usage:
  fakeaws.py [--port N] [--port-file FILE] [--cred AKID:SECRET[:TOKEN]]...
             [--account ID] [--max-skew SECS]
Prints "fakeaws listening on 127.0.0.1:PORT" once bound.

Control (unsigned, JSON body, JSON answer):
  POST /__control {"op": "fault", "action": "DescribeImages" | "*",
                   "kind": "throttle" | "error" | "reset" | "stall",
                   "count": N,                # next N matching calls (default 1)
                   "status": 500, "code": "InternalError",   # kind error
                   "seconds": 30}             # kind stall: wait, then reset
  POST /__control {"op": "creds", "access_key": A, "secret_key": S, "token": T}
  POST /__control {"op": "set", "image_pending_polls": N, "snapshot_pending_polls": N,
                   "max_skew": SECS}
  POST /__control {"op": "instance", "region": R, "instance_id": I, "image_id": A}
  POST /__control {"op": "image", "region": R, "name": N, "created": ISO, "tags": {},
                   "deprecation": ISO, "snapshots": N, "description": D}   # -> image_id, snapshots
  POST /__control {"op": "snapshot", "region": R, "description": D, "age_days": N, "tags": {}}
                                              # -> snapshot_id
  POST /__control {"op": "launch_template", "region": R, "name": N, "images": [AMI per version],
                   "default": N}              # -> launch_template_id
  POST /__control {"op": "instance_state", "instance_id": I, "state": "terminated"}
  POST /__control {"op": "account", "access_key": A, "account": ID}
                                              # A's requests act as account ID (default --account):
                                              # images and snapshots are owned per account, another
                                              # account's image is visible with its launch permission,
                                              # and CopyImage of it needs createVolumePermission on
                                              # its snapshots
  POST /__control {"op": "reset"}             # forget state, faults and counters
  GET  /__control/state                       # images, snapshots (blocks held, blocks written
                                              # to it, parent), calls per action, requests
"""

import argparse
import base64
import datetime
import fnmatch
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import uuid
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.dont_write_bytecode = True  # no __pycache__ next to the servers
from common import Handler as BaseHandler, Server as BaseServer, serve

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
EC2_VERSION = "2016-11-15"
BLOCK_SIZE = 524288
REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-west-2",
           "eu-central-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1"]
SIG_MISMATCH = ("The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method. Consult "
                "the service documentation for details.")
AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                     r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$")
NAME_RE = re.compile(r"^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$")


class ApiError(Exception):
    """An AWS error: code, message, HTTP status (and EBS's Reason)."""

    def __init__(self, code, message, status=400, reason=None):
        super().__init__(message)
        self.code, self.message, self.status, self.reason = code, message, status, reason


class Reset(Exception):
    """Drop the connection without an answer (TCP RST)."""


def now_iso(t=None):
    t = time.time() if t is None else t
    return datetime.datetime.utcfromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def new_id(prefix):
    return prefix + "-" + secrets.token_hex(8) + "0"  # 17 hex digits like real ids


# --- Query parameters: "Filter.1.Value.2=x" to nested dicts and lists ---------------------------

def unflatten(pairs):
    root = {}
    for key, value in pairs:
        node = root
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = value
    return root


def as_list(node, name):
    """The members of a '.N' list, in index order ([] when absent)."""
    if node is None:
        return []
    if not isinstance(node, dict) or not all(k.isdigit() and int(k) >= 1 for k in node):
        raise ApiError("InvalidParameterValue", f"{name} must be a list encoded as {name}.N")
    return [node[k] for k in sorted(node, key=int)]


def as_bool(v, name):
    if v is None:
        return None
    if v not in ("true", "false"):
        raise ApiError("InvalidParameterValue", f"Value ({v}) for parameter {name} is invalid. "
                       "Expected: 'true' or 'false'.")
    return v == "true"


def as_int(v, name, lo=None, hi=None):
    if v is None:
        return None
    try:
        n = int(v)
    except ValueError:
        raise ApiError("InvalidParameterValue", f"Value ({v}) for parameter {name} is invalid. "
                       "Expected an integer.") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise ApiError("InvalidParameterValue", f"Value ({v}) for parameter {name} is out of range")
    return n


def tags_of(node):
    out = {}
    for t in as_list(node, "Tag"):
        if not isinstance(t, dict) or "Key" not in t:
            raise ApiError("InvalidParameterValue", "Tag.N.Key is required")
        out[t["Key"]] = t.get("Value", "")
    return out


def tag_specs(node, wanted):
    """Tags of the TagSpecification.N entries for resource type WANTED."""
    out = {}
    for spec in as_list(node, "TagSpecification"):
        rtype = spec.get("ResourceType") if isinstance(spec, dict) else None
        if rtype is None:
            raise ApiError("InvalidParameterValue", "TagSpecification.N.ResourceType is required")
        if rtype == wanted:
            out.update(tags_of(spec.get("Tag")))
    return out


# --- XML for EC2 answers: dicts are elements in order, lists are <item>s --------------------------

def xml(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "".join(f"<{k}>{xml(v)}</{k}>" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(f"<item>{xml(v)}</item>" for v in value)
    return escape(str(value))


def tag_set(tags):
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


# --- State -------------------------------------------------------------------------------------

class State:
    def __init__(self, account):
        self.account = account
        self.caller = account   # the account of the request being served (under lock)
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.images = {}        # id -> dict (has "region")
        self.snapshots = {}     # id -> dict (has "region", "blocks": {index: (data, raw sha256)})
        self.instances = {}     # id -> dict
        self.volumes = {}       # id -> dict
        self.launch_templates = {}  # id -> dict: region, name, versions [image id], default (1-based)
        self.deletes = {}       # image or snapshot id -> successful deletions (purge: never 2)
        self.tokens = {}        # (region, "StartSnapshot"|"CopyImage", client token) -> (params, id)
        self.faults = []        # dicts: action, kind, count, ...
        self.calls = {}         # action -> count (after the signature check)
        self.requests = []      # recent requests: action, status, token_present, region
        self.settings = {"image_pending_polls": 0, "snapshot_pending_polls": 0}
        for region in REGIONS[:3] + ["eu-west-1"]:
            iid = "i-0" + hashlib.sha256(region.encode()).hexdigest()[:16]
            self.instances[iid] = {"id": iid, "region": region, "image_id": "ami-00000000000000001",
                                   "state": "running", "tags": {}}
            vid = "vol-0" + hashlib.sha256(("v" + region).encode()).hexdigest()[:16]
            self.volumes[vid] = {"id": vid, "region": region, "size": 8}

    def take_fault(self, action):
        for f in self.faults:
            if f["count"] > 0 and f["action"] in (action, "*"):
                f["count"] -= 1
                return dict(f)
        return None

    def resource(self, rid, region):
        for table in (self.images, self.snapshots, self.instances, self.volumes):
            r = table.get(rid)
            if r and r["region"] == region:
                return r
        return None


# --- EC2 ---------------------------------------------------------------------------------------

def image_filters(img, name, values):
    tags = img["tags"]
    simple = {
        "name": img["name"], "image-id": img["id"], "state": img["state"],
        "architecture": img["architecture"], "owner-id": img["owner"],
        "is-public": "true" if "all" in img["launch_groups"] else "false",
        "virtualization-type": img["virtualization"], "root-device-type": img["root_device_type"],
        "image-type": "machine", "description": img.get("description") or "",
        "root-device-name": img.get("root_device_name") or "",
        "block-device-mapping.snapshot-id": None,
    }
    if name == "block-device-mapping.snapshot-id":
        have = [b.get("snapshot_id") for b in img["bdm"]]
    elif name.startswith("tag:"):
        have = [tags[name[4:]]] if name[4:] in tags else []
    elif name == "tag-key":
        have = list(tags)
    elif name in simple:
        have = [simple[name]]
    else:
        raise ApiError("InvalidParameterValue", f"The filter '{name}' is invalid")
    return any(fnmatch.fnmatchcase(h, v) for h in have for v in values)


def snapshot_filters(snap, name, values):
    simple = {"snapshot-id": snap["id"], "status": snap["status"], "volume-id": snap["volume_id"],
              "owner-id": snap["owner"], "description": snap.get("description") or "",
              "volume-size": str(snap["size"])}
    if name.startswith("tag:"):
        have = [snap["tags"][name[4:]]] if name[4:] in snap["tags"] else []
    elif name == "tag-key":
        have = list(snap["tags"])
    elif name in simple:
        have = [simple[name]]
    else:
        raise ApiError("InvalidParameterValue", f"The filter '{name}' is invalid")
    return any(fnmatch.fnmatchcase(h, v) for h in have for v in values)


def parse_filters(node):
    out = []
    for f in as_list(node, "Filter"):
        if not isinstance(f, dict) or "Name" not in f:
            raise ApiError("InvalidParameterValue", "Filter.N.Name is required")
        out.append((f["Name"], as_list(f.get("Value"), "Filter.N.Value")))
    return out


def page(items, p, what):
    """MaxResults/NextToken paging over a sorted list of items."""
    max_results = as_int(p.get("MaxResults"), "MaxResults", 5, 1000)
    start = 0
    if p.get("NextToken") is not None:
        try:
            start = int(base64.b64decode(p["NextToken"]).decode().split(":")[1])
            if not base64.b64decode(p["NextToken"]).decode().startswith(what + ":"):
                raise ValueError
        except (ValueError, IndexError, UnicodeDecodeError):
            raise ApiError("InvalidParameterValue", "The token is not valid") from None
    if max_results is None:
        return items[start:], None
    chunk = items[start:start + max_results]
    nxt = None
    if start + max_results < len(items):
        nxt = base64.b64encode(f"{what}:{start + max_results}".encode()).decode()
    return chunk, nxt


class Ec2:
    """EC2 Query API actions.  Each method gets the unflattened params and the region and
    returns the response body's inner dict (requestId is added by the caller)."""

    PARAMS = {
        "RegisterImage": {"ImageLocation", "BillingProduct", "BootMode", "TpmSupport", "UefiData",
                          "ImdsSupport", "TagSpecification", "DryRun", "Name", "Description",
                          "Architecture", "KernelId", "RamdiskId", "RootDeviceName",
                          "BlockDeviceMapping", "VirtualizationType", "SriovNetSupport",
                          "EnaSupport"},
        "DescribeImages": {"ExecutableBy", "ImageId", "Owner", "IncludeDeprecated",
                           "IncludeDisabled", "MaxResults", "NextToken", "DryRun", "Filter"},
        "DeregisterImage": {"ImageId", "DeleteAssociatedSnapshots", "DryRun"},
        "CreateTags": {"DryRun", "ResourceId", "Tag"},
        "DeleteTags": {"DryRun", "ResourceId", "Tag"},
        "ModifyImageAttribute": {"Attribute", "Description", "ImageId", "LaunchPermission",
                                 "OperationType", "ProductCode", "UserGroup", "UserId", "Value",
                                 "OrganizationArn", "OrganizationalUnitArn", "ImdsSupport",
                                 "DryRun"},
        "DescribeImageAttribute": {"Attribute", "ImageId", "DryRun"},
        "CopyImage": {"ClientToken", "Description", "Encrypted", "KmsKeyId", "Name",
                      "SourceImageId", "SourceRegion", "DestinationOutpostArn", "CopyImageTags",
                      "TagSpecification", "SnapshotCopyCompletionDurationMinutes", "DryRun"},
        "EnableImageDeprecation": {"ImageId", "DeprecateAt", "DryRun"},
        "CreateImage": {"TagSpecification", "SnapshotLocation", "DryRun", "InstanceId", "Name",
                        "Description", "NoReboot", "BlockDeviceMapping"},
        "CreateSnapshot": {"Description", "OutpostArn", "VolumeId", "TagSpecification",
                           "Location", "DryRun"},
        "DescribeSnapshots": {"MaxResults", "NextToken", "Owner", "RestorableBy", "SnapshotId",
                              "DryRun", "Filter"},
        "DeleteSnapshot": {"SnapshotId", "DryRun"},
        "ModifySnapshotAttribute": {"Attribute", "CreateVolumePermission", "GroupName",
                                    "OperationType", "SnapshotId", "UserId", "DryRun"},
        "DescribeSnapshotAttribute": {"Attribute", "SnapshotId", "DryRun"},
        "DisableImageDeprecation": {"ImageId", "DryRun"},
        "DescribeRegions": {"Filter", "RegionName", "DryRun", "AllRegions"},
        "DescribeInstances": {"Filter", "InstanceId", "DryRun", "MaxResults", "NextToken"},
        "DescribeLaunchTemplates": {"DryRun", "LaunchTemplateId", "LaunchTemplateName", "Filter",
                                    "NextToken", "MaxResults"},
        "DescribeLaunchTemplateVersions": {"DryRun", "LaunchTemplateId", "LaunchTemplateName",
                                           "LaunchTemplateVersion", "MinVersion", "MaxVersion",
                                           "NextToken", "MaxResults", "Filter", "ResolveAlias"},
    }

    def __init__(self, state):
        self.s = state

    def dispatch(self, action, p, region, caller=None):
        allowed = self.PARAMS.get(action)
        if allowed is None:
            raise ApiError("InvalidAction", f"The action {action} is not valid for this web service.")
        for key in p:
            if key not in allowed:
                raise ApiError("UnknownParameter", f"The parameter {key} is not recognized")
        if as_bool(p.get("DryRun"), "DryRun"):
            raise ApiError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.",
                           412)
        with self.s.lock:
            self.s.caller = caller or self.s.account
            return getattr(self, "op_" + action)(p, region)

    def visible(self, img):
        c = self.s.caller
        return img["owner"] == c or c in img["launch_users"] or "all" in img["launch_groups"]

    @staticmethod
    def need(p, name):
        v = p.get(name)
        if v is None or v == "":
            raise ApiError("MissingParameter",
                           f"The request must contain the parameter {name}")
        return v

    def image(self, iid, region):
        img = self.s.images.get(iid)
        if not re.match(r"^ami-[0-9a-f]{8,17}$", iid or ""):
            raise ApiError("InvalidAMIID.Malformed", f'Invalid id: "{iid}" (expecting "ami-...")')
        if (not img or img["region"] != region or img["state"] == "deregistered" or
                not self.visible(img)):
            raise ApiError("InvalidAMIID.NotFound", f"The image id '[{iid}]' does not exist")
        return img

    def parse_bdm(self, node, region):
        out = []
        for b in as_list(node, "BlockDeviceMapping"):
            if not isinstance(b, dict) or "DeviceName" not in b:
                raise ApiError("InvalidParameterValue", "BlockDeviceMapping.N.DeviceName is required")
            m = {"device_name": b["DeviceName"], "virtual_name": b.get("VirtualName"),
                 "no_device": b.get("NoDevice")}
            ebs = b.get("Ebs")
            if isinstance(ebs, dict):
                sid = ebs.get("SnapshotId")
                if sid is not None:
                    snap = self.s.snapshots.get(sid)
                    if not snap or snap["region"] != region:
                        raise ApiError("InvalidSnapshot.NotFound",
                                       f"The snapshot '{sid}' does not exist.")
                    if snap["status"] != "completed":
                        raise ApiError("IncorrectState", f"Snapshot '{sid}' is not 'completed'.")
                size = as_int(ebs.get("VolumeSize"), "VolumeSize", 1, 65536)
                if sid and size is None:
                    size = self.s.snapshots[sid]["size"]
                vtype = ebs.get("VolumeType", "gp2")
                if vtype not in ("standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"):
                    raise ApiError("InvalidParameterValue", f"Value ({vtype}) for parameter "
                                   "volumeType is invalid.")
                m.update(snapshot_id=sid, volume_size=size, volume_type=vtype,
                         delete_on_termination=as_bool(ebs.get("DeleteOnTermination"),
                                                       "DeleteOnTermination") is not False,
                         encrypted=bool(as_bool(ebs.get("Encrypted"), "Encrypted")),
                         iops=as_int(ebs.get("Iops"), "Iops"),
                         throughput=as_int(ebs.get("Throughput"), "Throughput"))
            out.append(m)
        return out

    def new_image(self, region, name, **kw):
        if not NAME_RE.match(name):
            raise ApiError("InvalidAMIName.Malformed",
                           "AMI names must be between 3 and 128 characters long, and may contain "
                           "letters, numbers, '(', ')', '.', '-', '/', '[', ']', ' ', '@', ''', '_'")
        for img in self.s.images.values():
            if img["region"] == region and img["name"] == name and img["state"] != "deregistered":
                raise ApiError("InvalidAMIName.Duplicate",
                               f"AMI name {name} is already in use by AMI {img['id']}")
        iid = new_id("ami")
        img = {"id": iid, "region": region, "name": name, "owner": self.s.caller,
               "state": "pending" if self.s.settings["image_pending_polls"] else "available",
               "pending_polls": self.s.settings["image_pending_polls"], "created": now_iso(),
               "architecture": "x86_64", "virtualization": "paravirtual",
               "root_device_type": "ebs", "root_device_name": None, "bdm": [], "tags": {},
               "launch_users": set(), "launch_groups": set(), "description": None,
               "kernel_id": None, "ramdisk_id": None, "ena": None, "sriov": None,
               "boot_mode": None, "tpm": None, "imds": None, "location": None,
               "deprecation": None, "source": None}
        img.update(kw)
        self.s.images[iid] = img
        return img

    def op_RegisterImage(self, p, region):
        name = self.need(p, "Name")
        location = p.get("ImageLocation")
        bdm = self.parse_bdm(p.get("BlockDeviceMapping"), region)
        root = p.get("RootDeviceName")
        if not location and not any(b.get("snapshot_id") for b in bdm):
            raise ApiError("InvalidParameterCombination",
                           "Either ImageLocation or a BlockDeviceMapping with a snapshot is required")
        if not location and root and not any(b["device_name"] == root for b in bdm):
            raise ApiError("InvalidBlockDeviceMapping",
                           f"The root device name {root} has no block device mapping")
        if location and not re.match(r"^[^/]+/.+\.manifest\.xml$", location):
            raise ApiError("InvalidManifest", f"Invalid manifest location '{location}'")
        arch = p.get("Architecture", "x86_64" if location else "i386")
        if arch not in ("i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"):
            raise ApiError("InvalidParameterValue", f"Value ({arch}) for parameter architecture "
                           "is invalid.")
        virt = p.get("VirtualizationType", "paravirtual")
        if virt not in ("hvm", "paravirtual"):
            raise ApiError("InvalidParameterValue", f"Value ({virt}) for parameter "
                           "virtualizationType is invalid.")
        ena = as_bool(p.get("EnaSupport"), "EnaSupport")
        if virt == "paravirtual" and (ena or p.get("SriovNetSupport")):
            raise ApiError("InvalidParameterCombination",
                           "Enhanced networking is only supported for HVM images")
        if virt == "hvm" and p.get("KernelId"):
            raise ApiError("InvalidParameterCombination", "A kernel cannot be given for HVM")
        boot = p.get("BootMode")
        if boot not in (None, "legacy-bios", "uefi", "uefi-preferred"):
            raise ApiError("InvalidParameterValue", f"Value ({boot}) for parameter bootMode "
                           "is invalid.")
        img = self.new_image(region, name, architecture=arch, virtualization=virt,
                             root_device_type="instance-store" if location else "ebs",
                             root_device_name=root, bdm=bdm, description=p.get("Description"),
                             kernel_id=p.get("KernelId"), ramdisk_id=p.get("RamdiskId"), ena=ena,
                             sriov=p.get("SriovNetSupport"), boot_mode=boot,
                             tpm=p.get("TpmSupport"), imds=p.get("ImdsSupport"),
                             location=location,
                             tags=tag_specs(p.get("TagSpecification"), "image"))
        return {"imageId": img["id"]}

    def image_view(self, img):
        if img["state"] == "pending":
            if img["pending_polls"] <= 0:
                img["state"] = "available"
            else:
                img["pending_polls"] -= 1
        bdm = []
        for b in img["bdm"]:
            e = None
            if "volume_size" in b:
                e = {"deleteOnTermination": b["delete_on_termination"],
                     "snapshotId": b["snapshot_id"], "volumeSize": b["volume_size"],
                     "volumeType": b["volume_type"], "encrypted": b["encrypted"],
                     "iops": b.get("iops"), "throughput": b.get("throughput")}
            bdm.append({"deviceName": b["device_name"], "virtualName": b.get("virtual_name"),
                        "noDevice": b.get("no_device"), "ebs": e})
        return {"imageId": img["id"], "imageLocation": img["location"] or
                f"{img['owner']}/{img['name']}", "imageState": img["state"],
                "imageOwnerId": img["owner"], "creationDate": img["created"],
                "isPublic": "all" in img["launch_groups"], "architecture": img["architecture"],
                "imageType": "machine", "kernelId": img["kernel_id"],
                "ramdiskId": img["ramdisk_id"], "name": img["name"],
                "description": img["description"], "rootDeviceType": img["root_device_type"],
                "rootDeviceName": img["root_device_name"], "blockDeviceMapping": bdm,
                "virtualizationType": img["virtualization"], "hypervisor": "xen",
                "enaSupport": img["ena"], "sriovNetSupport": img["sriov"],
                "bootMode": img["boot_mode"], "tpmSupport": img["tpm"],
                "imdsSupport": img["imds"], "deprecationTime": img["deprecation"],
                "sourceImageId": (img["source"] or {}).get("id"),
                "sourceImageRegion": (img["source"] or {}).get("region"),
                "tagSet": tag_set(img["tags"]) or None}

    def op_DescribeImages(self, p, region):
        ids = as_list(p.get("ImageId"), "ImageId")
        owners = as_list(p.get("Owner"), "Owner")
        execs = as_list(p.get("ExecutableBy"), "ExecutableBy")
        filters = parse_filters(p.get("Filter"))
        if ids and (p.get("MaxResults") or p.get("NextToken")):
            raise ApiError("InvalidParameterCombination",
                           "The parameter ImageIds cannot be used with the parameter MaxResults")
        for i in ids:
            self.image(i, region)  # raises NotFound for a missing one, as AWS does
        out = []
        for img in sorted(self.s.images.values(), key=lambda i: i["id"]):
            if img["region"] != region or img["state"] == "deregistered" or not self.visible(img):
                continue
            if ids and img["id"] not in ids:
                continue
            if owners and not any(o == img["owner"] or (o == "self" and img["owner"] ==
                                  self.s.caller) for o in owners):
                continue
            if execs and not any(e in img["launch_users"] or (e == "all" and "all" in
                                 img["launch_groups"]) or (e == "self" and img["owner"] ==
                                 self.s.caller) for e in execs):
                continue
            if all(image_filters(img, n, v) for n, v in filters):
                out.append(img)
        chunk, nxt = page(out, p, "images")
        return {"imagesSet": [self.image_view(i) for i in chunk], "nextToken": nxt}

    def op_DeregisterImage(self, p, region):
        img = self.image(self.need(p, "ImageId"), region)
        img["state"] = "deregistered"
        self.s.deletes[img["id"]] = self.s.deletes.get(img["id"], 0) + 1
        results = []
        if as_bool(p.get("DeleteAssociatedSnapshots"), "DeleteAssociatedSnapshots"):
            for b in img["bdm"]:
                sid = b.get("snapshot_id")
                if sid and self.s.snapshots.pop(sid, None):
                    self.s.deletes[sid] = self.s.deletes.get(sid, 0) + 1
                    results.append({"snapshotId": sid, "returnCode": "success"})
        return {"return": True, "deleteSnapshotResultSet": results or None}

    def op_CreateTags(self, p, region):
        ids = as_list(p.get("ResourceId"), "ResourceId")
        tags = tags_of(p.get("Tag"))
        if not ids:
            raise ApiError("MissingParameter", "The request must contain the parameter resourceIdSet")
        if not tags:
            raise ApiError("MissingParameter", "The request must contain the parameter tagSet")
        for k in tags:
            if k.startswith("aws:"):
                raise ApiError("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved")
        res = [self.tag_target(i, region) for i in ids]
        for r in res:
            r["tags"].update(tags)
        return {"return": True}

    def tag_target(self, rid, region):
        r = self.s.resource(rid, region)
        if r is None or r.get("state") == "deregistered":
            kind = {"ami": "InvalidAMIID.NotFound", "snap": "InvalidSnapshot.NotFound",
                    "i": "InvalidInstanceID.NotFound", "vol": "InvalidVolume.NotFound"}
            raise ApiError(kind.get(rid.split("-")[0], "InvalidID"),
                           f"The ID '{rid}' does not exist")
        return r

    def op_DeleteTags(self, p, region):
        ids = as_list(p.get("ResourceId"), "ResourceId")
        if not ids:
            raise ApiError("MissingParameter", "The request must contain the parameter resourceIdSet")
        specs = []
        for t in as_list(p.get("Tag"), "Tag"):
            specs.append((t.get("Key"), t.get("Value")))
        for rid in ids:
            r = self.tag_target(rid, region)
            if not specs:
                r["tags"].clear()
            for k, v in specs:
                if k in r["tags"] and (v is None or r["tags"][k] == v):
                    del r["tags"][k]
        return {"return": True}

    def op_ModifyImageAttribute(self, p, region):
        img = self.image(self.need(p, "ImageId"), region)
        if img["owner"] != self.s.caller:
            raise ApiError("AuthFailure", f"Not authorized for image:{img['id']}", 403)
        lp = p.get("LaunchPermission")
        attr = p.get("Attribute")
        if isinstance(lp, dict):
            for op in ("Add", "Remove"):
                for perm in as_list(lp.get(op), f"LaunchPermission.{op}"):
                    org = perm.get("OrganizationArn") or perm.get("OrganizationalUnitArn")
                    if org is not None:
                        self.launch_org(img, op, org)
                    else:
                        self.launch_perm(img, op, perm.get("UserId"), perm.get("Group"))
        elif attr == "launchPermission":
            op = {"add": "Add", "remove": "Remove"}.get(p.get("OperationType"))
            if op is None:
                raise ApiError("InvalidParameterValue", "OperationType must be add or remove")
            for u in as_list(p.get("UserId"), "UserId"):
                self.launch_perm(img, op, u, None)
            for g in as_list(p.get("UserGroup"), "UserGroup"):
                self.launch_perm(img, op, None, g)
        elif isinstance(p.get("Description"), dict):
            img["description"] = p["Description"].get("Value")
        elif attr == "description":
            img["description"] = p.get("Value")
        else:
            raise ApiError("MissingParameter", "No attribute to modify was given")
        return {"return": True}

    @staticmethod
    def launch_perm(img, op, user, group):
        if user is not None and not re.match(r"^\d{12}$", user):
            raise ApiError("InvalidAMIAttributeItemValue", f"Invalid attribute item value "
                           f'"{user}" for userId item type.')
        if group is not None and group != "all":
            raise ApiError("InvalidAMIAttributeItemValue", f"Invalid attribute item value "
                           f'"{group}" for group item type.')
        target, value = (img["launch_users"], user) if user else (img["launch_groups"], group)
        if value is None:
            raise ApiError("InvalidParameterValue", "A launch permission needs UserId or Group")
        (target.add if op == "Add" else target.discard)(value)

    @staticmethod
    def launch_org(img, op, arn):
        if not re.match(r"^arn:aws[a-z-]*:organizations::\d{12}:(organization/o-[a-z0-9]+|"
                        r"ou/o-[a-z0-9]+/ou-[a-z0-9-]+)$", arn):
            raise ApiError("InvalidParameterValue", f"Invalid organization ARN: {arn}")
        orgs = img.setdefault("launch_orgs", set())
        (orgs.add if op == "Add" else orgs.discard)(arn)

    def op_DescribeImageAttribute(self, p, region):
        img = self.image(self.need(p, "ImageId"), region)
        attr = self.need(p, "Attribute")
        out = {"imageId": img["id"]}
        if attr == "launchPermission":
            out["launchPermission"] = ([{"userId": u} for u in sorted(img["launch_users"])] +
                                       [{"group": g} for g in sorted(img["launch_groups"])])
        elif attr in ("description", "kernel", "ramdisk", "sriovNetSupport", "bootMode",
                      "imdsSupport", "deprecationTime"):
            key = {"description": "description", "kernel": "kernel_id", "ramdisk": "ramdisk_id",
                   "sriovNetSupport": "sriov", "bootMode": "boot_mode", "imdsSupport": "imds",
                   "deprecationTime": "deprecation"}[attr]
            out[attr] = {"value": img[key]}
        elif attr == "blockDeviceMapping":
            out["blockDeviceMapping"] = self.image_view(img)["blockDeviceMapping"]
        else:
            raise ApiError("InvalidRequest", f"Value ({attr}) for parameter attribute is invalid.")
        return out

    def op_CopyImage(self, p, region):
        src_region = self.need(p, "SourceRegion")
        src_id = self.need(p, "SourceImageId")
        name = self.need(p, "Name")
        if src_region not in REGIONS:
            raise ApiError("InvalidRegion", f"Invalid region: {src_region}")
        token = p.get("ClientToken")
        if token:
            prev = self.s.tokens.get((region, "CopyImage", token))
            if prev:
                if prev[0] != (src_region, src_id, name):
                    raise ApiError("IdempotentParameterMismatch",
                                   "Client token already used with different parameters")
                return {"imageId": prev[1]}
        src = self.image(src_id, src_region)
        if src["state"] != "available":
            raise ApiError("IncorrectState", f"Image {src_id} is not in a valid state")
        for b in src["bdm"] if src["owner"] != self.s.caller else ():
            snap = self.s.snapshots.get(b.get("snapshot_id"))
            if snap and not (self.s.caller in snap.get("volume_users", ()) or
                             "all" in snap.get("volume_groups", ())):
                raise ApiError("AuthFailure", "You do not have permission to access the storage "
                               f"of this ami ({snap['id']} lacks createVolumePermission)", 403)
        bdm = []
        for b in src["bdm"]:
            b = dict(b)
            if b.get("snapshot_id"):
                snap = self.s.snapshots[b["snapshot_id"]]
                b["snapshot_id"] = self.copy_snapshot(snap, region)["id"]
            bdm.append(b)
        tags = dict(src["tags"]) if as_bool(p.get("CopyImageTags"), "CopyImageTags") else {}
        tags.update(tag_specs(p.get("TagSpecification"), "image"))
        img = self.new_image(region, name, architecture=src["architecture"],
                             virtualization=src["virtualization"],
                             root_device_type=src["root_device_type"],
                             root_device_name=src["root_device_name"], bdm=bdm,
                             description=p.get("Description", src["description"]),
                             kernel_id=src["kernel_id"], ramdisk_id=src["ramdisk_id"],
                             ena=src["ena"], sriov=src["sriov"], boot_mode=src["boot_mode"],
                             tpm=src["tpm"], imds=src["imds"], location=src["location"],
                             tags=tags, source={"id": src_id, "region": src_region})
        if token:
            self.s.tokens[(region, "CopyImage", token)] = ((src_region, src_id, name), img["id"])
        return {"imageId": img["id"]}

    def copy_snapshot(self, snap, region):
        new = dict(snap, id=new_id("snap"), region=region, tags={}, blocks=dict(snap["blocks"]),
                   volume_users=set(), volume_groups=set(),
                   description=f"Copied for DestinationAmi from {snap['id']}")
        new["owner"] = self.s.caller
        self.s.snapshots[new["id"]] = new
        return new

    def op_EnableImageDeprecation(self, p, region):
        img = self.image(self.need(p, "ImageId"), region)
        at = self.need(p, "DeprecateAt")
        try:
            t = datetime.datetime.strptime(at.replace("Z", "+0000")[:19] + "+0000",
                                           "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            raise ApiError("InvalidParameterValue",
                           f"Value ({at}) for parameter DeprecateAt is invalid.") from None
        if t.timestamp() < time.time():
            raise ApiError("InvalidParameterValue", "DeprecateAt must be in the future")
        img["deprecation"] = t.strftime("%Y-%m-%dT%H:%M:00.000Z")  # AWS rounds to the minute
        return {"return": True}

    def op_CreateImage(self, p, region):
        iid = self.need(p, "InstanceId")
        name = self.need(p, "Name")
        inst = self.s.instances.get(iid)
        if not inst or inst["region"] != region:
            raise ApiError("InvalidInstanceID.NotFound", f"The instance ID '{iid}' does not exist")
        snap = self.new_snapshot(region, "vol-ffffffff", 8, "completed", f"Created by CreateImage({iid})")
        img = self.new_image(region, name, architecture="x86_64", virtualization="hvm",
                             root_device_name="/dev/xvda", description=p.get("Description"),
                             bdm=[{"device_name": "/dev/xvda", "snapshot_id": snap["id"],
                                   "volume_size": 8, "volume_type": "gp3",
                                   "delete_on_termination": True, "encrypted": False}],
                             tags=tag_specs(p.get("TagSpecification"), "image"))
        snap["tags"].update(tag_specs(p.get("TagSpecification"), "snapshot"))
        return {"imageId": img["id"]}

    def new_snapshot(self, region, volume_id, size, status, description, **kw):
        sid = new_id("snap")
        snap = {"id": sid, "region": region, "volume_id": volume_id, "size": size,
                "status": status, "description": description, "owner": self.s.caller,
                "start": time.time(), "tags": {}, "blocks": {}, "encrypted": False,
                "pending_polls": 0}
        snap.update(kw)
        self.s.snapshots[sid] = snap
        return snap

    def snapshot_view(self, snap):
        if snap["status"] == "pending" and snap.get("completing"):
            if snap["pending_polls"] <= 0:
                snap["status"] = "completed"
            else:
                snap["pending_polls"] -= 1
        return {"snapshotId": snap["id"], "volumeId": snap["volume_id"], "status": snap["status"],
                "startTime": now_iso(snap["start"]),
                "progress": "100%" if snap["status"] == "completed" else "0%",
                "ownerId": snap["owner"], "volumeSize": snap["size"],
                "description": snap["description"], "encrypted": snap["encrypted"],
                "tagSet": tag_set(snap["tags"]) or None}

    def op_CreateSnapshot(self, p, region):
        vid = self.need(p, "VolumeId")
        vol = self.s.volumes.get(vid)
        if not vol or vol["region"] != region:
            raise ApiError("InvalidVolume.NotFound", f"The volume '{vid}' does not exist.")
        snap = self.new_snapshot(region, vid, vol["size"], "completed", p.get("Description"),
                                 tags=tag_specs(p.get("TagSpecification"), "snapshot"))
        return self.snapshot_view(snap)

    def op_DescribeSnapshots(self, p, region):
        ids = as_list(p.get("SnapshotId"), "SnapshotId")
        owners = as_list(p.get("Owner"), "Owner")
        filters = parse_filters(p.get("Filter"))
        if ids and (p.get("MaxResults") or p.get("NextToken")):
            raise ApiError("InvalidParameterCombination",
                           "The parameter SnapshotIds cannot be used with MaxResults")
        for i in ids:
            s = self.s.snapshots.get(i)
            if not s or s["region"] != region:
                raise ApiError("InvalidSnapshot.NotFound", f"The snapshot '{i}' does not exist.")
        out = []
        for snap in sorted(self.s.snapshots.values(), key=lambda s: s["id"]):
            if snap["region"] != region or (ids and snap["id"] not in ids):
                continue
            if owners and not any(o == snap["owner"] or (o == "self" and snap["owner"] ==
                                  self.s.caller) for o in owners):
                continue
            if all(snapshot_filters(snap, n, v) for n, v in filters):
                out.append(snap)
        chunk, nxt = page(out, p, "snapshots")
        return {"snapshotSet": [self.snapshot_view(s) for s in chunk], "nextToken": nxt}

    def op_DeleteSnapshot(self, p, region):
        sid = self.need(p, "SnapshotId")
        snap = self.s.snapshots.get(sid)
        if not snap or snap["region"] != region:
            raise ApiError("InvalidSnapshot.NotFound", f"The snapshot '{sid}' does not exist.")
        for img in self.s.images.values():
            if img["state"] != "deregistered" and any(b.get("snapshot_id") == sid for b in img["bdm"]):
                raise ApiError("InvalidSnapshot.InUse",
                               f"The snapshot {sid} is currently in use by {img['id']}")
        del self.s.snapshots[sid]
        self.s.deletes[sid] = self.s.deletes.get(sid, 0) + 1
        return {"return": True}

    # createVolumePermission (snapshot sharing) and DisableImageDeprecation
    def snapshot(self, sid, region):
        snap = self.s.snapshots.get(sid)
        if not snap or snap["region"] != region:
            raise ApiError("InvalidSnapshot.NotFound", f"The snapshot '{sid}' does not exist.")
        return snap

    @staticmethod
    def volume_perm(snap, op, user, group):
        if user is not None and not re.match(r"^\d{12}$", user):
            raise ApiError("InvalidParameterValue", f"Invalid user id: {user}")
        if group is not None and group != "all":
            raise ApiError("InvalidParameterValue", f"Invalid group: {group}")
        if group and op == "Add" and snap["encrypted"]:
            raise ApiError("InvalidParameterValue", "Encrypted snapshots cannot be made public")
        target = snap.setdefault("volume_users" if user else "volume_groups", set())
        value = user or group
        if value is None:
            raise ApiError("InvalidParameterValue", "A createVolumePermission needs UserId or Group")
        (target.add if op == "Add" else target.discard)(value)

    def op_ModifySnapshotAttribute(self, p, region):
        snap = self.snapshot(self.need(p, "SnapshotId"), region)
        if p.get("Attribute", "createVolumePermission") != "createVolumePermission":
            raise ApiError("InvalidParameterValue", "Only createVolumePermission can be modified")
        cvp = p.get("CreateVolumePermission")
        if isinstance(cvp, dict):
            for op in ("Add", "Remove"):
                for perm in as_list(cvp.get(op), f"CreateVolumePermission.{op}"):
                    self.volume_perm(snap, op, perm.get("UserId"), perm.get("Group"))
            return {"return": True}
        op = {"add": "Add", "remove": "Remove"}.get(p.get("OperationType"))
        if op is None:
            raise ApiError("MissingParameter", "No createVolumePermission change was given")
        for u in as_list(p.get("UserId"), "UserId"):
            self.volume_perm(snap, op, u, None)
        for g in as_list(p.get("GroupName"), "GroupName"):
            self.volume_perm(snap, op, None, g)
        return {"return": True}

    def op_DescribeSnapshotAttribute(self, p, region):
        snap = self.snapshot(self.need(p, "SnapshotId"), region)
        if self.need(p, "Attribute") != "createVolumePermission":
            raise ApiError("InvalidParameterValue", "Only createVolumePermission is supported here")
        return {"snapshotId": snap["id"], "createVolumePermission":
                [{"userId": u} for u in sorted(snap.get("volume_users", ()))] +
                [{"group": g} for g in sorted(snap.get("volume_groups", ()))]}

    def op_DisableImageDeprecation(self, p, region):
        img = self.image(self.need(p, "ImageId"), region)
        img["deprecation"] = None
        return {"return": True}

    def op_DescribeRegions(self, p, region):
        names = as_list(p.get("RegionName"), "RegionName")
        for n in names:
            if n not in REGIONS:
                raise ApiError("InvalidParameterValue", f"Invalid region names: [{n}]")
        filters = parse_filters(p.get("Filter"))
        out = []
        for r in REGIONS:
            if names and r not in names:
                continue
            if not all(any(fnmatch.fnmatchcase(r, v) for v in vals)
                       for n, vals in filters if n == "region-name"):
                continue
            out.append({"regionName": r, "regionEndpoint": f"ec2.{r}.amazonaws.com",
                        "optInStatus": "opt-in-not-required"})
        return {"regionInfo": out}

    def op_DescribeInstances(self, p, region):
        ids = as_list(p.get("InstanceId"), "InstanceId")
        filters = parse_filters(p.get("Filter"))
        for i in ids:
            inst = self.s.instances.get(i)
            if not inst or inst["region"] != region:
                raise ApiError("InvalidInstanceID.NotFound", f"The instance ID '{i}' does not exist")
        out = []
        for inst in sorted(self.s.instances.values(), key=lambda i: i["id"]):
            if inst["region"] != region or (ids and inst["id"] not in ids):
                continue
            ok = True
            for n, vals in filters:
                have = {"instance-id": [inst["id"]], "image-id": [inst["image_id"]],
                        "instance-state-name": [inst["state"]]}.get(n)
                if have is None and n.startswith("tag:"):
                    have = [inst["tags"][n[4:]]] if n[4:] in inst["tags"] else []
                if have is None:
                    raise ApiError("InvalidParameterValue", f"The filter '{n}' is invalid")
                ok = ok and any(fnmatch.fnmatchcase(h, v) for h in have for v in vals)
            if ok:
                out.append(inst)
        chunk, nxt = page(out, p, "instances")
        return {"reservationSet": [{
            "reservationId": "r-" + i["id"][2:], "ownerId": self.s.account,
            "instancesSet": [{"instanceId": i["id"], "imageId": i["image_id"],
                              "instanceState": {"code": 16, "name": i["state"]},
                              "instanceType": "t3.micro",
                              "placement": {"availabilityZone": i["region"] + "a"},
                              "tagSet": tag_set(i["tags"]) or None}]} for i in chunk],
            "nextToken": nxt}

    # launch templates (ami purge: AMIs in use) and state made through the control API
    def templates(self, p, region):
        ids = as_list(p.get("LaunchTemplateId"), "LaunchTemplateId")
        names = as_list(p.get("LaunchTemplateName"), "LaunchTemplateName")
        out = [t for _, t in sorted(self.s.launch_templates.items()) if t["region"] == region and
               (not ids or t["id"] in ids) and (not names or t["name"] in names)]
        for i in ids:
            if not any(t["id"] == i for t in out):
                raise ApiError("InvalidLaunchTemplateId.NotFound",
                               f"The specified launch template, with template ID {i}, does not exist.")
        for n in names:
            if not any(t["name"] == n for t in out):
                raise ApiError("InvalidLaunchTemplateName.NotFoundException",
                               f"At least one of the launch templates specified in the request does "
                               f"not exist.")
        return out

    def op_DescribeLaunchTemplates(self, p, region):
        chunk, nxt = page(self.templates(p, region), p, "templates")
        return {"launchTemplates": [{
            "launchTemplateId": t["id"], "launchTemplateName": t["name"],
            "defaultVersionNumber": t["default"], "latestVersionNumber": len(t["images"]),
            "createTime": t["created"]} for t in chunk], "nextToken": nxt}

    def op_DescribeLaunchTemplateVersions(self, p, region):
        wanted = as_list(p.get("LaunchTemplateVersion"), "LaunchTemplateVersion")
        one = p.get("LaunchTemplateId") or p.get("LaunchTemplateName")
        if not one and any(v not in ("$Latest", "$Default") for v in wanted):
            raise ApiError("InvalidParameterCombination", "Without a launch template, only $Latest "
                           "and $Default versions can be described")
        if not one and not wanted:
            raise ApiError("MissingParameter", "Give a launch template or $Latest/$Default versions")
        out = []
        for t in self.templates(p, region):
            nums = []
            for v in wanted or [str(i + 1) for i in range(len(t["images"]))]:
                n = {"$Latest": len(t["images"]), "$Default": t["default"]}.get(v)
                n = n if n is not None else as_int(v, "LaunchTemplateVersion", 1, len(t["images"]))
                if n not in nums:
                    nums.append(n)
            out += [(t, n) for n in sorted(nums)]
        chunk, nxt = page(out, p, "versions")
        return {"launchTemplateVersionSet": [{
            "launchTemplateId": t["id"], "launchTemplateName": t["name"], "versionNumber": n,
            "defaultVersion": n == t["default"], "createTime": t["created"],
            "launchTemplateData": {"imageId": t["images"][n - 1]}} for t, n in chunk],
            "nextToken": nxt}

    def control_purge(self, req):
        op, region = req["op"], req.get("region", "us-east-1")
        if op == "image":
            snaps = []
            img = self.new_image(region, req["name"], architecture="x86_64", virtualization="hvm",
                                 root_device_name="/dev/xvda", tags=dict(req.get("tags", {})),
                                 created=req.get("created", now_iso()),
                                 deprecation=req.get("deprecation"), state=req.get("state", "available"))
            for k in range(int(req.get("snapshots", 1))):
                snap = self.new_snapshot(region, "vol-ffffffff", 8, "completed", req.get(
                    "description", f"Created by CreateImage(i-0123456789abcdef0) for {img['id']}"))
                snaps.append(snap["id"])
                img["bdm"].append({"device_name": "/dev/xvd" + "abcdefgh"[k], "snapshot_id": snap["id"],
                                   "volume_size": 8, "volume_type": "gp3",
                                   "delete_on_termination": True, "encrypted": False})
            return {"image_id": img["id"], "snapshots": snaps}
        if op == "snapshot":
            snap = self.new_snapshot(region, "vol-ffffffff", 8, req.get("status", "completed"),
                                     req.get("description"), tags=dict(req.get("tags", {})),
                                     start=time.time() - float(req.get("age_days", 0)) * 86400)
            return {"snapshot_id": snap["id"]}
        if op == "launch_template":
            lid = new_id("lt")
            self.s.launch_templates[lid] = {"id": lid, "region": region, "name": req["name"],
                                            "images": list(req["images"]),
                                            "default": int(req.get("default", 1)),
                                            "created": now_iso()}
            return {"launch_template_id": lid}
        if op == "instance_state":
            self.s.instances[req["instance_id"]]["state"] = req["state"]
            return {"ok": True}
        raise KeyError(op)


# --- EBS direct APIs ---------------------------------------------------------------------------

def ebs_route(method, path):
    """(operation, path parameters) for an EBS request, or (None, None)."""
    routes = [("POST", r"^/snapshots$", "StartSnapshot"),
              ("PUT", r"^/snapshots/([^/]+)/blocks/([^/]+)$", "PutSnapshotBlock"),
              ("POST", r"^/snapshots/completion/([^/]+)$", "CompleteSnapshot"),
              ("GET", r"^/snapshots/([^/]+)/blocks$", "ListSnapshotBlocks"),
              ("GET", r"^/snapshots/([^/]+)/blocks/([^/]+)$", "GetSnapshotBlock")]
    for m, pattern, op in routes:
        match = re.match(pattern, path)
        if match and m == method:
            return op, [unquote(g) for g in match.groups()]
    return None, None


class Ebs:
    def __init__(self, state, ec2):
        self.s, self.ec2 = state, ec2

    def snapshot(self, sid, region):
        snap = self.s.snapshots.get(sid)
        if not snap or snap["region"] != region:
            raise ApiError("ResourceNotFoundException", f"The snapshot '{sid}' does not exist.",
                           404, "SNAPSHOT_NOT_FOUND")
        return snap

    @staticmethod
    def header(h, name, required=True):
        v = h.get(name)
        if v is None and required:
            raise ApiError("ValidationException", f"Missing required header {name}", 400,
                           "INVALID_PARAMETER_VALUE")
        return v

    def dispatch(self, op, args, region, headers, query, body):
        with self.s.lock:
            return getattr(self, "op_" + op)(args, region, headers, query, body)

    def op_StartSnapshot(self, args, region, headers, query, body):
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("ValidationException", "The request body is not valid JSON", 400,
                           "INVALID_PARAMETER_VALUE") from None
        size = req.get("VolumeSize")
        if not isinstance(size, int) or not 1 <= size <= 65536:
            raise ApiError("ValidationException", "VolumeSize must be an integer from 1 to 65536",
                           400, "INVALID_VOLUME_SIZE")
        timeout = req.get("Timeout", 60)
        if not isinstance(timeout, int) or not 10 <= timeout <= 4320:
            raise ApiError("ValidationException", "Timeout must be from 10 to 4320 minutes", 400,
                           "INVALID_PARAMETER_VALUE")
        token = req.get("ClientToken")
        fingerprint = json.dumps({k: v for k, v in req.items() if k != "ClientToken"}, sort_keys=True)
        if token:
            prev = self.s.tokens.get((region, "StartSnapshot", token))
            if prev:
                if prev[0] != fingerprint:
                    raise ApiError("ConflictException", "The request uses the same client token "
                                   "as a previous, but non-identical request.", 409)
                return 201, self.start_view(self.s.snapshots[prev[1]]), {}
        tags = {}
        for t in req.get("Tags") or []:
            if not isinstance(t, dict) or "Key" not in t:
                raise ApiError("ValidationException", "Tags must be {Key, Value} objects", 400,
                               "INVALID_TAG")
            tags[t["Key"]] = t.get("Value", "")
        blocks = {}
        parent = req.get("ParentSnapshotId")
        if parent:
            p = self.snapshot(parent, region)
            if p["status"] != "completed":
                raise ApiError("ValidationException", f"Parent snapshot {parent} is not completed",
                               400, "INVALID_SNAPSHOT_ID")
            if size < p["size"]:
                raise ApiError("ValidationException", f"VolumeSize {size} is smaller than the parent "
                               f"snapshot's {p['size']}", 400, "INVALID_VOLUME_SIZE")
            if "Encrypted" in req:
                # the model: "You can't specify ParentSnapshotId and Encrypted in the same request"
                raise ApiError("ValidationException", "ParentSnapshotId and Encrypted cannot be "
                               "specified together", 400, "INVALID_PARAMETER_VALUE")
            blocks = dict(p["blocks"])
        snap = self.ec2.new_snapshot(region, "vol-ffffffff", size, "pending",
                                     req.get("Description"), tags=tags, blocks=blocks,
                                     written=set(), parent=parent,
                                     encrypted=bool(req.get("Encrypted")) or
                                     bool(parent and self.s.snapshots[parent]["encrypted"]),
                                     pending_polls=self.s.settings["snapshot_pending_polls"])
        if token:
            self.s.tokens[(region, "StartSnapshot", token)] = (fingerprint, snap["id"])
        return 201, self.start_view(snap), {}

    def start_view(self, snap):
        out = {"SnapshotId": snap["id"], "OwnerId": snap["owner"], "Status": snap["status"],
               "StartTime": snap["start"], "VolumeSize": snap["size"], "BlockSize": BLOCK_SIZE,
               "Description": snap["description"],
               "Tags": [{"Key": k, "Value": v} for k, v in sorted(snap["tags"].items())]}
        if snap.get("parent"):
            out["ParentSnapshotId"] = snap["parent"]
        return out

    def block_index(self, snap, text):
        if not text.isdigit() or int(text) >= snap["size"] * (1 << 30) // BLOCK_SIZE:
            raise ApiError("ValidationException", f"Block index {text} is out of range", 400,
                           "INVALID_BLOCK")
        return int(text)

    def op_PutSnapshotBlock(self, args, region, headers, query, body):
        snap = self.snapshot(args[0], region)
        if snap["status"] != "pending" or snap.get("completing"):
            raise ApiError("ValidationException", f"Snapshot {snap['id']} is not pending", 400,
                           "INVALID_SNAPSHOT_ID")
        index = self.block_index(snap, args[1])
        length = self.header(headers, "x-amz-Data-Length")
        checksum = self.header(headers, "x-amz-Checksum")
        algo = self.header(headers, "x-amz-Checksum-Algorithm")
        if algo != "SHA256":
            raise ApiError("ValidationException", f"Unsupported checksum algorithm {algo}", 400,
                           "INVALID_PARAMETER_VALUE")
        if length != str(BLOCK_SIZE) or len(body) != BLOCK_SIZE:
            raise ApiError("ValidationException", f"Data length must be {BLOCK_SIZE} (header "
                           f"{length}, body {len(body)})", 400, "INVALID_BLOCK")
        digest = hashlib.sha256(body).digest()
        if base64.b64encode(digest).decode() != checksum:
            raise ApiError("ValidationException", "The checksum of the data does not match "
                           "x-amz-Checksum", 400, "INVALID_BLOCK")
        progress = headers.get("x-amz-Progress")
        if progress is not None and not (progress.isdigit() and int(progress) <= 100):
            raise ApiError("ValidationException", "x-amz-Progress must be 0-100", 400,
                           "INVALID_PARAMETER_VALUE")
        snap["blocks"][index] = (bytes(body), digest)
        snap["written"].add(index)
        return 201, None, {"x-amz-Checksum": checksum, "x-amz-Checksum-Algorithm": "SHA256"}

    def op_CompleteSnapshot(self, args, region, headers, query, body):
        snap = self.snapshot(args[0], region)
        if snap["status"] != "pending":
            raise ApiError("ValidationException", f"Snapshot {snap['id']} is not pending", 400,
                           "INVALID_SNAPSHOT_ID")
        count = self.header(headers, "x-amz-ChangedBlocksCount")
        written = sorted(snap["written"])
        if not count.isdigit() or int(count) != len(written):
            raise ApiError("ValidationException", f"ChangedBlocksCount {count} does not match the "
                           f"{len(written)} blocks written", 400, "INVALID_PARAMETER_VALUE")
        checksum = headers.get("x-amz-Checksum")
        if checksum is not None:
            algo = headers.get("x-amz-Checksum-Algorithm")
            method = headers.get("x-amz-Checksum-Aggregation-Method")
            if algo != "SHA256" or method != "LINEAR":
                raise ApiError("ValidationException", "Checksum-Algorithm must be SHA256 and "
                               "Checksum-Aggregation-Method LINEAR", 400, "INVALID_PARAMETER_VALUE")
            # coldsnap's linear aggregate: SHA-256 over the raw per-block digests in index order
            h = hashlib.sha256()
            for i in written:
                h.update(snap["blocks"][i][1])
            if base64.b64encode(h.digest()).decode() != checksum:
                raise ApiError("ValidationException", "The aggregated checksum does not match the "
                               "blocks written", 400, "INVALID_PARAMETER_VALUE")
        snap["completing"] = True
        if snap["pending_polls"] <= 0:
            snap["status"] = "completed"
        return 202, {"Status": snap["status"]}, {}

    def op_ListSnapshotBlocks(self, args, region, headers, query, body):
        snap = self.snapshot(args[0], region)
        if snap["status"] != "completed":
            raise ApiError("ValidationException", f"Snapshot {snap['id']} is not completed", 400,
                           "INVALID_SNAPSHOT_ID")
        q = dict(query)
        max_results = int(q.get("maxResults", "10000")) if q.get("maxResults", "1").isdigit() else -1
        if not 100 <= max_results <= 10000:
            raise ApiError("ValidationException", "maxResults must be from 100 to 10000", 400,
                           "INVALID_PARAMETER_VALUE")
        start = int(q.get("startingBlockIndex", "0") or 0)
        if q.get("pageToken"):
            try:
                start = int(base64.b64decode(q["pageToken"]).decode().split(":")[1])
            except (ValueError, IndexError):
                raise ApiError("ValidationException", "The page token is not valid", 400,
                               "INVALID_PAGE_TOKEN") from None
        indexes = [i for i in sorted(snap["blocks"]) if i >= start]
        chunk = indexes[:max_results]
        out = {"Blocks": [{"BlockIndex": i, "BlockToken": self.block_token(snap, i)} for i in chunk],
               "ExpiryTime": time.time() + 7 * 86400, "VolumeSize": snap["size"],
               "BlockSize": BLOCK_SIZE}
        if len(indexes) > max_results:
            out["NextToken"] = base64.b64encode(f"blocks:{indexes[max_results]}".encode()).decode()
        return 200, out, {}

    @staticmethod
    def block_token(snap, index):
        return base64.b64encode(hashlib.sha256(f"{snap['id']}/{index}".encode()).digest()).decode()

    def op_GetSnapshotBlock(self, args, region, headers, query, body):
        snap = self.snapshot(args[0], region)
        index = self.block_index(snap, args[1])
        token = dict(query).get("blockToken")
        if not token or token != self.block_token(snap, index) or index not in snap["blocks"]:
            raise ApiError("ValidationException", "The block token is not valid", 400,
                           "INVALID_BLOCK_TOKEN")
        data, digest = snap["blocks"][index]
        return 200, data, {"x-amz-Data-Length": str(len(data)),
                           "x-amz-Checksum": base64.b64encode(digest).decode(),
                           "x-amz-Checksum-Algorithm": "SHA256",
                           "Content-Type": "application/octet-stream"}


# --- HTTP --------------------------------------------------------------------------------------

class Server(BaseServer):
    def __init__(self, addr, creds, account, max_skew):
        super().__init__(addr, Handler)
        self.creds = creds          # access key -> (secret, token or None)
        self.accounts = {}          # access key -> account id (default: --account)
        self.max_skew = max_skew
        self.state = State(account)
        self.ec2 = Ec2(self.state)
        self.ebs = Ebs(self.state, self.ec2)


class Handler(BaseHandler):
    server_version = "fakeaws"

    def handle_request(self, body):
        url = urlsplit(self.path)
        request_id = str(uuid.uuid4())
        service = "ec2" if url.path == "/" else "ebs"
        action, region = None, "us-east-1"
        try:
            service, region, token = self.verify(url, body, service)
            if service == "ec2":
                params = parse_qsl(body.decode() if self.command == "POST" else url.query,
                                   keep_blank_values=True)
                flat = dict(params)
                action = flat.get("Action")
                if not action:
                    raise ApiError("MissingAction", "The request must contain the parameter Action")
                if flat.get("Version") != EC2_VERSION:
                    raise ApiError("NoSuchVersion", f"The requested version ({flat.get('Version')})"
                                   " of service AmazonEC2 does not exist")
            else:
                action, args = ebs_route(self.command, url.path)
                if action is None:
                    raise ApiError("UnknownOperationException", "Unknown operation", 404)
            self.record(action, region, token)
            self.fault(action, service, request_id)
            if service == "ec2":
                del flat["Action"], flat["Version"]
                if len(flat) != len(params) - 2:
                    raise ApiError("InvalidParameterValue", "A parameter was given twice")
                result = self.server.ec2.dispatch(action, unflatten(flat.items()), region,
                                                  self.server.accounts.get(self.akid))
                xml_body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns='
                            f'"{EC2_NS}"><requestId>{request_id}</requestId>{xml(result)}'
                            f"</{action}Response>")
                self.finish_request(action, 200)
                return self.send(200, xml_body, {"Content-Type": "text/xml;charset=UTF-8"})
            query = [(unquote(k), unquote(v)) for k, _, v in
                     (pair.partition("=") for pair in url.query.split("&") if pair)]
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            hdrs = CaseInsensitive(hdrs)
            status, out, extra = self.server.ebs.dispatch(action, args, region, hdrs, query, body)
            extra = dict(extra, **{"x-amzn-RequestId": request_id})
            if isinstance(out, bytes):
                payload = out
            else:
                payload = b"" if out is None else json.dumps(out).encode()
                if out is not None:
                    extra["Content-Type"] = "application/json"
            self.finish_request(action, status)
            return self.send(status, payload, extra)
        except ApiError as e:
            self.finish_request(action, e.status)
            return self.send_error_shape(service, e, request_id)
        except Reset:
            self.finish_request(action, 0)
            return self.reset_connection()

    def finish_request(self, action, status):
        with self.server.state.lock:
            for r in reversed(self.server.state.requests):
                if r["action"] == action and r["status"] is None:
                    r["status"] = status
                    break

    def record(self, action, region, token):
        st = self.server.state
        with st.lock:
            st.calls[action] = st.calls.get(action, 0) + 1
            st.requests.append({"action": action, "region": region, "status": None,
                                "session_token": token is not None})
            del st.requests[:-500]

    def fault(self, action, service, request_id):
        f = self.server.state.take_fault(action)
        if f is None:
            return
        kind = f["kind"]
        if kind == "throttle":
            if service == "ec2":
                raise ApiError("RequestLimitExceeded", "Request limit exceeded.", 503)
            raise ApiError("RequestThrottledException", "Rate exceeded", 400, "ACCOUNT_THROTTLED")
        if kind == "error":
            default = ("InternalError", 500) if service == "ec2" else ("InternalServerException", 500)
            raise ApiError(f.get("code", default[0]), f.get("message", "An internal error has "
                           "occurred"), int(f.get("status", default[1])))
        if kind == "reset":
            raise Reset()
        if kind == "stall":
            time.sleep(float(f.get("seconds", 30)))
            raise Reset()
        raise ApiError("InternalError", f"fakeaws: unknown fault kind {kind}", 500)

    def send_error_shape(self, service, e, request_id):
        if service == "ec2":
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>'
                    f"{escape(e.code)}</Code><Message>{escape(e.message)}</Message></Error>"
                    f"</Errors><RequestID>{request_id}</RequestID></Response>")
            return self.send(e.status, body, {"Content-Type": "text/xml;charset=UTF-8"})
        payload = {"Message": e.message}
        if e.reason:
            payload["Reason"] = e.reason
        if e.code in ("InvalidSignatureException", "UnrecognizedClientException",
                      "IncompleteSignatureException"):
            payload = {"message": e.message}
        return self.send(e.status, json.dumps(payload), {
            "Content-Type": "application/json", "x-amzn-RequestId": request_id,
            # the AWS front end appends the error's namespace after a colon
            "x-amzn-ErrorType": f"{e.code}:http://internal.amazon.com/coral/com.amazon.coral.service/"})

    def verify(self, url, body, guess):
        """Checks the request's SigV4 signature with botocore.  Returns (service, region, token)."""
        auth = self.headers.get("Authorization")
        m = AUTH_RE.match(auth or "")
        if not m:
            code = "AuthFailure" if guess == "ec2" else "IncompleteSignatureException"
            if not auth:
                code = "MissingAuthenticationToken" if guess == "ec2" else "MissingAuthenticationTokenException"
            raise ApiError(code, "Authorization header missing or malformed", 401 if guess == "ec2" else 403)
        akid, date, region, service, signed, signature = m.groups()
        self.akid = akid
        if service not in ("ec2", "ebs") or (service == "ec2") != (url.path == "/"):
            raise ApiError("IncompleteSignatureException" if service != "ec2" else "AuthFailure",
                           f"Credential should be scoped to correct service: '{guess}'", 403)
        if region not in REGIONS:
            raise ApiError("AuthFailure" if service == "ec2" else "InvalidSignatureException",
                           f"Credential should be scoped to a valid region, not '{region}'", 403)
        cred = self.server.creds.get(akid)
        if cred is None:
            raise ApiError("AuthFailure" if service == "ec2" else "UnrecognizedClientException",
                           "AWS was not able to validate the provided access credentials"
                           if service == "ec2" else "The security token included in the request "
                           "is invalid.", 401 if service == "ec2" else 403)
        secret, want_token = cred
        names = signed.split(";")
        if "host" not in names:
            raise ApiError("AuthFailure" if service == "ec2" else "InvalidSignatureException",
                           "'Host' must be a signed header", 403)
        token = self.headers.get("X-Amz-Security-Token")
        if want_token is not None and token != want_token:
            raise ApiError("AuthFailure" if service == "ec2" else "UnrecognizedClientException",
                           "The security token included in the request is invalid.", 403)
        if token is not None and "x-amz-security-token" not in names:
            raise ApiError("AuthFailure" if service == "ec2" else "InvalidSignatureException",
                           "X-Amz-Security-Token must be signed", 403)
        amz_date = self.headers.get("X-Amz-Date")
        if not amz_date or amz_date[:8] != date:
            raise ApiError("AuthFailure" if service == "ec2" else "InvalidSignatureException",
                           "X-Amz-Date is missing or does not match the credential scope", 403)
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            raise ApiError("AuthFailure" if service == "ec2" else "InvalidSignatureException",
                           f"Invalid X-Amz-Date {amz_date}", 403) from None
        if self.server.max_skew and abs(t - time.time()) > self.server.max_skew:
            raise ApiError("RequestExpired" if service == "ec2" else "InvalidSignatureException",
                           "Signature expired: the request time is too far from the server's", 403)
        sha = self.headers.get("X-Amz-Content-SHA256")
        if sha and sha != "UNSIGNED-PAYLOAD" and sha != hashlib.sha256(body).hexdigest():
            raise ApiError("XAmzContentSHA256Mismatch",
                           "The provided 'x-amz-content-sha256' header does not match what was "
                           "computed.", 400)
        if self.expected_signature(url, body, names, akid, secret, token, service, region,
                                   amz_date) != signature:
            raise ApiError("SignatureDoesNotMatch" if service == "ec2" else
                           "InvalidSignatureException", SIG_MISMATCH, 403)
        return service, region, token

    def expected_signature(self, url, body, names, akid, secret, token, service, region, amz_date):
        query = [(unquote(k), unquote(v)) for k, _, v in
                 (pair.partition("=") for pair in url.query.split("&") if pair)]
        host = self.headers.get("Host", "")
        req = AWSRequest(method=self.command, url=f"http://{host}{url.path}", data=body,
                         params=query)
        for name in names:
            values = self.headers.get_all(name) or []
            if not values and name != "host":
                raise ApiError("AuthFailure" if service == "ec2" else "InvalidSignatureException",
                               f"Signed header {name} is missing from the request", 403)
            for v in values:
                req.headers[name] = v
        req.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(akid, secret, token), service, region)
        cr = signer.canonical_request(req)
        return signer.signature(signer.string_to_sign(req, cr), req)

    def control(self, path, body):
        st = self.server.state
        if self.command == "GET" and path == "/__control/state":
            with st.lock:
                out = {"calls": st.calls, "requests": st.requests, "deletes": st.deletes,
                       "images": {i: {"name": v["name"], "state": v["state"], "region": v["region"],
                                      "owner": v["owner"],
                                      "tags": v["tags"], "launch_users": sorted(v["launch_users"]),
                                      "launch_groups": sorted(v["launch_groups"]),
                                      "launch_orgs": sorted(v.get("launch_orgs", ())),
                                      "deprecation": v["deprecation"]}
                                  for i, v in st.images.items()},
                       "snapshots": {s: {"status": v["status"], "region": v["region"],
                                         "size": v["size"], "tags": v["tags"],
                                         "blocks": sorted(v["blocks"]),
                                         "written": sorted(v.get("written", ())),
                                         "parent": v.get("parent"),
                                         "volume_users": sorted(v.get("volume_users", ())),
                                         "volume_groups": sorted(v.get("volume_groups", ()))}
                                     for s, v in st.snapshots.items()}}
            return self.send(200, json.dumps(out), {"Content-Type": "application/json"})
        try:
            req = json.loads(body or b"{}")
            op = req["op"]
        except (ValueError, KeyError):
            return self.send(400, '{"error": "body must be JSON with an op"}', {})
        with st.lock:
            st.caller = st.account  # what the control API makes is the default account's
            if op == "fault":
                st.faults.append({"action": req.get("action", "*"), "kind": req["kind"],
                                  "count": int(req.get("count", 1)), **{k: req[k] for k in
                                  ("status", "code", "message", "seconds") if k in req}})
            elif op == "creds":
                self.server.creds[req["access_key"]] = (req["secret_key"], req.get("token"))
            elif op == "account":
                self.server.accounts[req["access_key"]] = req["account"]
            elif op == "set":
                for k, v in req.items():
                    if k == "max_skew":
                        self.server.max_skew = v
                    elif k != "op":
                        st.settings[k] = v
            elif op == "instance":
                st.instances[req["instance_id"]] = {"id": req["instance_id"], "region": req["region"],
                                                    "image_id": req.get("image_id", "ami-00000000"),
                                                    "state": "running", "tags": {}}
            elif op in ("image", "snapshot", "launch_template", "instance_state"):
                return self.send(200, json.dumps(self.server.ec2.control_purge(req)),
                                 {"Content-Type": "application/json"})
            elif op == "reset":
                st.reset()
            else:
                return self.send(400, json.dumps({"error": f"unknown op {op}"}), {})
        return self.send(200, '{"ok": true}', {"Content-Type": "application/json"})


class CaseInsensitive(dict):
    def get(self, key, default=None):
        return super().get(key.lower(), default)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--cred", action="append", default=[], help="AKID:SECRET[:TOKEN]")
    ap.add_argument("--account", default="123456789012")
    ap.add_argument("--max-skew", type=float, default=900, help="0 disables the clock check")
    a = ap.parse_args()
    creds = {}
    for c in a.cred:
        parts = c.split(":", 2)
        if len(parts) < 2:
            ap.error(f"--cred {c!r}: expected AKID:SECRET[:TOKEN]")
        creds[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else None)
    srv = Server(("127.0.0.1", a.port), creds, a.account, a.max_skew)
    serve(srv, "fakeaws", a.port_file)


if __name__ == "__main__":
    main()
