"""test_storage.py: where VM files may come from. The finding: a member of
the cella group defined a VM whose disk was /etc/shadow (or a symlink to it,
or /tmp/../etc/./shadow, or a qcow2 image of their own whose backing file
was a root-only file) and read it from the guest.

An operator (uid 60002, the test forks a child that takes it) may now name
only files in a storage location its role may use, resolved beneath the
location's directory (openat2 RESOLVE_BENEATH): each escape is refused with
400 naming the field, and nothing is defined; files in the location, a qcow2
chain inside it, and cellad's own overlays are accepted. An admin (root) may
still name any host file. At start the files are checked again: an image in
storage whose backing file was rebased out of it since is refused, and the
worker is never spawned. Needs root (to take another uid) and qemu-img."""

import json
import os
import re
import shutil
import subprocess
import tempfile

from cellad import Daemon, check, main, skip
from secutil import call_unix_as

OPERATOR = 60002


def call_as(sock, uid, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data
    out = call_unix_as(sock, uid, req)
    m = re.match(rb"HTTP/1\.1 (\d+)", out)
    body = out.partition(b"\r\n\r\n")[2]
    try:
        js = json.loads(body) if body else None
    except ValueError:
        js = None
    return (int(m.group(1)) if m else 0), js


def img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test(args):
    if os.geteuid() != 0:
        skip("needs root: the test calls cellad as an operator's uid")
    if not shutil.which("qemu-img"):
        skip("qemu-img is not installed")
    top = tempfile.mkdtemp(prefix="cella-storage-")
    store = os.path.join(top, "images")
    os.makedirs(store)
    secret = os.path.join(top, "secret.raw")  # outside storage, root-only
    with open(secret, "wb") as f:
        f.write(b"the host's secret".ljust(1 << 20, b"\0"))
    os.chmod(secret, 0o600)
    kernel = os.path.join(store, "hello.elf")
    shutil.copy(args["guests"]["hello"], kernel)
    ok_img = os.path.join(store, "ok.raw")
    with open(ok_img, "wb") as f:
        f.truncate(1 << 20)
    os.symlink(secret, os.path.join(store, "evil.raw"))
    os.makedirs(os.path.join(store, "sub"))
    os.symlink("../ok.raw", os.path.join(store, "sub", "inside.raw"))  # stays beneath: fine
    img("create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw",
        os.path.join(store, "steal.qcow2"), "1M")
    img("create", "-q", "-f", "raw", os.path.join(store, "base.raw"), "1M")
    img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
        os.path.join(store, "good.qcow2"), "1M")
    img("create", "-q", "-f", "qcow2", "-u", "-b", "../secret.raw", "-F", "raw",
        os.path.join(store, "up.qcow2"), "1M")
    for p in (top, store, os.path.join(store, "sub")):
        os.chmod(p, 0o755)
    cfg = {"storage": [{"name": "images", "path": store, "role": "operator"}],
           "roles": {"operator": [f"user:{OPERATOR}"]}}
    try:
        with Daemon(args, config=cfg) as d:
            os.chmod(d.sock, 0o666)
            os.chmod(d.dir, 0o755)

            def define(name, **kw):
                body = {"name": name, "kernel": kernel, "memory_mib": 64}
                body.update(kw)
                return call_as(d.sock, OPERATOR, "POST", "/v1/vms", body)

            refused = [
                ("a host file", {"disks": [{"path": "/etc/shadow"}]}, "disks[0].path"),
                ("a path with ..", {"disks": [{"path": store + "/../secret.raw"}]},
                 "disks[0].path"),
                ("/tmp/../etc/./shadow", {"disks": [{"path": "/tmp/../etc/./shadow"}]},
                 "disks[0].path"),
                ("a symlink out of storage", {"disks": [{"path": store + "/evil.raw"}]},
                 "disks[0].path"),
                ("a qcow2 backed by a host file",
                 {"disks": [{"path": store + "/steal.qcow2"}]}, "disks[0].path"),
                ("a qcow2 backed by ../", {"disks": [{"path": store + "/up.qcow2"}]},
                 "disks[0].path"),
                ("a kernel outside storage", {"kernel": args["guests"]["hello"]}, "kernel"),
                ("an initrd outside storage", {"initrd": secret}, "initrd"),
                ("a block device", {"disks": [{"path": "/dev/loop0"}]}, "disks[0].path"),
            ]
            for i, (what, kw, field) in enumerate(refused):
                st, js = define(f"bad{i}", **kw)
                err = (js or {}).get("error", {})
                check(st == 400 and err.get("field") == field,
                      f"operator: {what} refused ({st}, {err.get('field')}: "
                      f"{err.get('reason', '')[:100]})")
            names = [v["name"] for v in d.get("/v1/vms").json["vms"]]
            check(names == [], f"nothing was defined: {names}")

            st, js = define("ok", disks=[{"path": ok_img}, {"path": store + "/sub/inside.raw"},
                                         {"path": store + "/good.qcow2"}])
            check(st == 201, f"operator: files in storage, a symlink within it, a qcow2 chain "
                  f"inside it: defined ({st} {js})")
            st, js = call_as(d.sock, OPERATOR, "PATCH", "/v1/vms/ok",
                             {"disks": [{"path": "/etc/shadow"}]})
            check(st == 400, f"operator: PATCH to a host file refused ({st})")
            r = d.post("/v1/vms", {"name": "adm", "kernel": args["guests"]["hello"],
                                   "disks": [{"path": secret}]})
            check(r.status == 201, f"admin (root): a host path is allowed ({r.status})")

            # Start: checked again. The image's backing file moves out of storage.
            st, js = call_as(d.sock, OPERATOR, "POST", "/v1/vms",
                             {"name": "later", "kernel": kernel, "memory_mib": 64,
                              "disks": [{"path": store + "/good.qcow2"}]})
            check(st == 201, "defined with a chain inside storage")
            img("rebase", "-u", "-f", "qcow2", "-b", secret, "-F", "raw",
                os.path.join(store, "good.qcow2"))
            st, js = call_as(d.sock, OPERATOR, "POST", "/v1/vms/later/start")
            err = (js or {}).get("error", {})
            check(st >= 400 and "outside storage" in err.get("reason", ""),
                  f"start refused once the backing file left storage ({st}: "
                  f"{err.get('reason', '')[:100]})")
            check(d.vm("later")["pid"] is None, "no worker was spawned")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main(test)
