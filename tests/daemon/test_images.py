"""test_images.py: the images API (docs/disks.md, "Images in cellad") on a
real cellad with three storage locations: create raw and qcow2 images (and
one over a backing image), grow them, convert (flattening a chain) and back
them up (a full copy; with change tracking a full raw backup and an
incremental), delete them; each result checked with qemu-img (info, check,
compare). Refusals name the field and the reason and leave nothing behind:
taken names, bad sizes and formats, names that are paths, a symlink out of
the location, images in use by a running VM, backing files, another
process's lock, a location the role may not use. A cellad killed while a
convert copies is followed by one that removes the half-made target. Needs
qemu-img (skipped without it); the role checks need root."""

import fcntl
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from cellad import Daemon, TestFailure, check, log, main, skip

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "security"))
from secutil import call_unix_as  # noqa: E402

VIEWER, OPERATOR = 60011, 60012
M = 1 << 20


def qimg(*a, ok=(0,)):
    p = subprocess.run(["qemu-img", *a], capture_output=True, text=True)
    if p.returncode not in ok:
        raise TestFailure(f"qemu-img {' '.join(a)}: {p.returncode} {p.stdout} {p.stderr}")
    return p


def info(path):
    return json.loads(qimg("info", "--output=json", "-U", path).stdout)


def qcheck(path):
    p = qimg("check", "-U", path, ok=(0, 1, 2, 3, 63))
    check(p.returncode in (0, 63) and "No errors" in p.stdout + p.stderr or p.returncode == 63,
          f"qemu-img check {os.path.basename(path)}: clean ({p.returncode})")


def same(a, b):
    p = qimg("compare", "-U", a, b, ok=(0, 1))
    check(p.returncode == 0, f"qemu-img compare {os.path.basename(a)} {os.path.basename(b)}: "
          f"identical")


def as_uid(d, uid, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    out = call_unix_as(d.sock, uid, req + data)
    m = re.match(rb"HTTP/1\.1 (\d+)", out)
    body = out.partition(b"\r\n\r\n")[2]
    try:
        js = json.loads(body) if body else None
    except ValueError:
        js = None
    return (int(m.group(1)) if m else 0), js


def refused(r, status, field, what):
    err = (r.json or {}).get("error", {})
    check(r.status == status and err.get("field") == field,
          f"{what}: {status} naming {field} ({err.get('reason', r.body[:200])})")


def wait_job(d, name, loc, timeout=120):
    """Polls the image until its job ended (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    seen = set()
    while True:
        r = d.get(f"/v1/images/{name}?location={loc}")
        job = (r.json or {}).get("job") if r.status == 200 else None
        if job:
            seen.add((job["phase"], job["percent"]))
            if not job["running"]:
                return job, seen
        if time.monotonic() > deadline:
            raise TestFailure(f"{name}: the job did not end: {r}")
        time.sleep(0.05)  # polling the API with a deadline


def wait_job_in_list(d, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        jobs = {j["id"]: j for j in d.get("/v1/images").json["jobs"]}
        if job_id in jobs and not jobs[job_id]["running"]:
            return jobs[job_id]
        if time.monotonic() > deadline:
            raise TestFailure(f"job {job_id} did not end")
        time.sleep(0.05)  # polling the API with a deadline


def files(*dirs):
    return {(d, f) for d in dirs for f in os.listdir(d)}


def image(d, name, loc="images"):
    r = d.get(f"/v1/images/{name}?location={loc}")
    if r.status != 200:
        raise TestFailure(f"GET image {name}: {r}")
    return r.json


def test(args):
    if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
        skip("qemu-img and qemu-io (qemu-utils) are needed")
    top = tempfile.mkdtemp(prefix="cella-images-")
    imgs, bks, vault = (os.path.join(top, x) for x in ("images", "backups", "vault"))
    for p in (imgs, bks, vault):
        os.makedirs(p)
    secret = os.path.join(top, "secret.raw")
    with open(secret, "wb") as f:
        f.write(b"secret".ljust(M, b"\0"))
    os.symlink(secret, os.path.join(imgs, "evil.raw"))
    os.makedirs(os.path.join(imgs, "sub"))
    cfg = {"storage": [{"name": "images", "path": imgs, "role": "operator"},
                       {"name": "backups", "path": bks, "role": "operator"},
                       {"name": "vault", "path": vault, "role": "admin"}],
           "roles": {"viewer": [f"user:{VIEWER}"], "operator": [f"user:{OPERATOR}"]}}
    d = Daemon(args, config=cfg)
    d2 = None
    try:
        d.start()
        run(args, d, imgs, bks, vault, secret)
        d2 = crash_case(args, d, imgs)
    finally:
        (d2 or d).cleanup()
        if d2 and d.proc.poll() is None:
            d.cleanup()
        shutil.rmtree(top, ignore_errors=True)


def run(args, d, imgs, bks, vault, secret):
    P = lambda n: os.path.join(imgs, n)  # noqa: E731
    ls = d.get("/v1/images").json
    check([l["name"] for l in ls["locations"]] == ["images", "backups", "vault"] and
          ls["jobs"] == [], "an admin sees the three locations, no jobs")
    check(ls["locations"][0]["images"] == [], "a symlink out and a directory are no images")

    # --- create --------------------------------------------------------
    r = d.post("/v1/images", {"location": "images", "name": "base.qcow2", "size": "16M"})
    check(r.status == 201 and r.json["format"] == "qcow2" and r.json["virtual_size"] == 16 * M,
          f"qcow2 created: {r.json}")
    i = info(P("base.qcow2"))
    check(i["format"] == "qcow2" and i["virtual-size"] == 16 * M, "qemu-img info agrees")
    qcheck(P("base.qcow2"))
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", "-c",
                    "write -P 0xcd 8M 64k", P("base.qcow2")], check=True, capture_output=True)
    r = d.post("/v1/images", {"location": "images", "name": "r.raw", "format": "raw",
                              "size": 4 * M})
    check(r.status == 201 and r.json["format"] == "raw" and os.path.getsize(P("r.raw")) == 4 * M,
          "raw created, 4 MiB")
    r = d.post("/v1/images", {"location": "images", "name": "ov.qcow2", "backing": "base.qcow2"})
    check(r.status == 201 and r.json["virtual_size"] == 16 * M and
          r.json["backing"] == {"location": "images", "name": "base.qcow2"} and r.json["depth"] == 2,
          f"overlay over base, its size: {r.json.get('backing')}")
    check(info(P("ov.qcow2")).get("backing-filename") == "base.qcow2",
          "the overlay names its backing file relatively")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 2M 128k", P("ov.qcow2")],
                   check=True, capture_output=True)
    b = image(d, "base.qcow2")
    check(b["backing_of"] == ["ov.qcow2"] and b["allocated"] >= M + 65536,
          f"base: backing of ov, {b['allocated']} bytes allocated")
    r = d.post("/v1/images", {"location": "images", "name": "ov2.qcow2", "backing": "ov.qcow2",
                              "size": "32M"})
    check(r.status == 201 and [c["name"] for c in r.json["chain"]] == ["ov.qcow2", "base.qcow2"]
          and r.json["depth"] == 3, "a chain of three, drawn top first")

    before = files(imgs, bks, vault)
    bad = [({"location": "images", "name": "base.qcow2", "size": M}, 409, "name", "a taken name"),
           ({"location": "images", "name": "evil.raw", "size": M}, 409, "name",
            "a name a symlink holds"),
           ({"location": "images", "name": "x", "size": "12X"}, 400, "size", "a size of 12X"),
           ({"location": "images", "name": "x", "size": 1000}, 400, "size", "a size not of 512s"),
           ({"location": "images", "name": "x", "size": 0}, 400, "size", "size 0"),
           ({"location": "images", "name": "x", "size": "65T"}, 400, "size", "65 TiB"),
           ({"location": "images", "name": "x"}, 400, "size", "no size"),
           ({"location": "images", "name": "x", "size": M, "format": "vmdk"}, 400, "format",
            "format vmdk"),
           ({"location": "images", "name": "../x", "size": M}, 400, "name", "a name with .."),
           ({"location": "images", "name": "/tmp/x", "size": M}, 400, "name", "a path"),
           ({"location": "images", "name": "sub/x", "size": M}, 400, "name", "a sub-directory"),
           ({"location": "images", "name": "x.cbt", "size": M}, 400, "name", "a tracking name"),
           ({"location": "images", "name": "x", "size": M, "colour": 1}, 400, "colour",
            "an unknown field"),
           ({"location": "nope", "name": "x", "size": M}, 400, "location", "no such location"),
           ({"name": "x", "size": M}, 400, "location", "no location"),
           ({"location": "images", "name": "x", "format": "raw", "backing": "base.qcow2"}, 400,
            "backing", "a raw image over a backing file"),
           ({"location": "images", "name": "x", "backing": "none.qcow2"}, 400, "backing",
            "a missing backing image"),
           ({"location": "images", "name": "x", "backing": "evil.raw"}, 400, "backing",
            "a backing image that is a symlink out")]
    for body, status, field, what in bad:
        refused(d.post("/v1/images", body), status, field, what)
    check(files(imgs, bks, vault) == before, "nothing made by the refused creates")
    with open(secret, "rb") as f:
        check(f.read(6) == b"secret", "the file the symlink points at is untouched")

    # --- resize --------------------------------------------------------
    r = d.post("/v1/images/r.raw/resize", {"size": "8M"})
    check(r.status == 200 and r.json["virtual_size"] == 8 * M and
          info(P("r.raw"))["virtual-size"] == 8 * M, "raw grown to 8 MiB")
    r = d.post("/v1/images/ov2.qcow2/resize", {"size": "48M"})
    check(r.status == 200 and info(P("ov2.qcow2"))["virtual-size"] == 48 * M, "top grown")
    qcheck(P("ov2.qcow2"))
    refused(d.post("/v1/images/ov2.qcow2/resize", {"size": "1M"}), 400, "size", "a shrink")
    refused(d.post("/v1/images/ov2.qcow2/resize", {"size": "abc"}), 400, "size", "size abc")
    refused(d.post("/v1/images/ov2.qcow2/resize", {}), 400, "size", "no size")
    refused(d.post("/v1/images/base.qcow2/resize", {"size": "32M"}), 409, "file",
            "growing a backing file")
    refused(d.post("/v1/images/nope.raw/resize", {"size": "32M"}), 404, "file", "no such image")
    refused(d.post("/v1/images/evil.raw/resize", {"size": "32M"}), 404, "file",
            "a symlink is no image")
    r = d.post("/v1/images/..%2Fsecret.raw/resize", {"size": "32M"})
    check(r.status == 404 and r.json["error"]["field"] == "path",
          "an encoded path matches no route (404)")
    refused(d.post("/v1/images/..secret.raw/resize", {"size": "32M"}), 400, "file",
            "a name starting with dots")
    refused(d.get("/v1/images/r.raw?location=nope"), 404, "location", "an unknown location")
    check(os.path.getsize(secret) == M, "the secret is not resized")

    # --- convert -------------------------------------------------------
    r = d.post("/v1/images/ov2.qcow2/convert", {"target": "flat.raw", "format": "raw"})
    check(r.status == 202 and r.json["job"]["kind"] == "convert", f"convert accepted: {r.json}")
    job, seen = wait_job(d, "flat.raw", "images")
    check(job["phase"] == "done" and job["percent"] == 100 and job["error"] is None,
          f"convert done ({sorted(seen)})")
    check(info(P("flat.raw"))["format"] == "raw", "flat.raw is raw")
    same(P("ov2.qcow2"), P("flat.raw"))
    r = d.post("/v1/images/ov2.qcow2/convert", {"target": "flat.qcow2", "format": "qcow2",
                                                "location": "backups"})
    check(r.status == 202, "convert into another location")
    job, _ = wait_job(d, "flat.qcow2", "backups")
    i = info(os.path.join(bks, "flat.qcow2"))
    check(job["phase"] == "done" and i["format"] == "qcow2" and "backing-filename" not in i,
          "a flat qcow2 (no backing file)")
    qcheck(os.path.join(bks, "flat.qcow2"))
    same(P("ov2.qcow2"), os.path.join(bks, "flat.qcow2"))
    before = files(imgs, bks, vault)
    for body, status, field, what in [
            ({"target": "flat.raw", "format": "raw"}, 409, "target", "a taken target"),
            ({"target": "evil.raw", "format": "raw"}, 409, "target", "a symlink's name"),
            ({"target": "y.raw"}, 400, "format", "no format"),
            ({"target": "../y.raw", "format": "raw"}, 400, "target", "a target with .."),
            ({"target": "y.raw", "format": "raw", "location": "nope"}, 400, "location",
             "an unknown target location"),
            ({"format": "raw"}, 400, "target", "no target")]:
        refused(d.post("/v1/images/ov2.qcow2/convert", body), status, field, what)
    check(files(imgs, bks, vault) == before, "nothing made by the refused converts")
    # An image whose backing file lies outside the location: listed (its
    # backing shown as a path), never read through.
    qimg("create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", P("steal.qcow2"), "1M")
    qimg("create", "-q", "-f", "qcow2", "-u", "-b", "../secret.raw", "-F", "raw", P("up.qcow2"),
         "1M")
    st = image(d, "steal.qcow2")
    check(st["backing"] == {"path": secret, "missing": False} and st["depth"] == 2,
          f"a backing file outside is shown as a path: {st['backing']}")
    for n in ("steal.qcow2", "up.qcow2"):
        refused(d.post(f"/v1/images/{n}/convert", {"target": "leak.raw", "format": "raw"}), 400,
                "file", f"converting {n} (its chain leads out)")
        refused(d.post(f"/v1/images/{n}/backup", {"target": "leak.raw"}), 400, "file",
                f"backing up {n}")
        refused(d.post("/v1/images", {"location": "images", "name": "leak.qcow2", "backing": n}),
                400, "backing", f"an overlay over {n}")
    check(not os.path.exists(P("leak.raw")) and not os.path.exists(P("leak.qcow2")),
          "nothing read out of the location")
    for n in ("steal.qcow2", "up.qcow2"):
        check(d.request("DELETE", f"/v1/images/{n}").status == 204, f"{n} deleted")
    check(os.path.exists(secret), "its backing file outside stays")

    # --- backup --------------------------------------------------------
    r = d.post("/v1/images/ov.qcow2/backup", {"target": "ov-full.qcow2", "location": "backups"})
    check(r.status == 202 and r.json["job"]["kind"] == "backup", "full copy accepted")
    job, _ = wait_job(d, "ov-full.qcow2", "backups")
    same(P("ov.qcow2"), os.path.join(bks, "ov-full.qcow2"))
    d.post("/v1/images", {"location": "images", "name": "cbt.qcow2", "size": "8M"})
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 192k", P("cbt.qcow2")],
                   check=True, capture_output=True)
    refused(d.post("/v1/images/cbt.qcow2/backup", {"target": "c1.raw", "point": "p1"}), 400,
            "point", "a point on an image no VM disk tracks")
    d.define("bk", "echo", disks=[{"path": P("cbt.qcow2"), "cbt": True}])
    r = d.post("/v1/images/cbt.qcow2/backup", {"target": "c1.raw", "location": "backups",
                                               "point": "p1"})
    check(r.status == 202, f"full raw backup with a point: {r}")
    job, _ = wait_job(d, "c1.raw", "backups")
    check(job["phase"] == "done", f"it ended: {job}")
    same(P("cbt.qcow2"), os.path.join(bks, "c1.raw"))
    check(image(d, "cbt.qcow2")["tracking"], "the image has its tracking file now")
    refused(d.post("/v1/images/cbt.qcow2/backup", {"target": "c2.inc", "since": "nope",
                                                   "point": "p2"}), 400, "since",
            "an unknown since point")
    refused(d.post("/v1/images/cbt.qcow2/backup", {"target": "c2.inc", "since": "p1"}), 400,
            "point", "since without point")
    r = d.post("/v1/images/cbt.qcow2/backup", {"target": "c2.inc", "location": "backups",
                                               "since": "p1", "point": "p2"})
    job, _ = wait_job(d, "c2.inc", "backups")
    inc = image(d, "c2.inc", "backups")
    check(job["phase"] == "done" and inc["kind"] == "incremental" and
          inc["backup"] == {"point": "p2", "since": "p1"}, f"an incremental: {inc['backup']}")
    shutil.copy(os.path.join(bks, "c1.raw"), os.path.join(top_of(bks), "restored.raw"))
    d.cli("disk", "restore", "-o", os.path.join(top_of(bks), "restored.raw"),
          os.path.join(bks, "c2.inc"))
    same(P("cbt.qcow2"), os.path.join(top_of(bks), "restored.raw"))

    # --- in use --------------------------------------------------------
    d.action("bk", "start")
    d.wait_state("bk", "running")
    u = image(d, "cbt.qcow2")
    check(u["in_use"] and u["used_by"][0]["vm"] == "bk" and u["used_by"][0]["layer"] == "top",
          f"used by the running VM: {u['used_by']}")
    before = files(imgs, bks, vault)
    refused(d.post("/v1/images/cbt.qcow2/resize", {"size": "16M"}), 409, "file",
            "resizing a running VM's disk")
    refused(d.post("/v1/images/cbt.qcow2/backup", {"target": "c3.raw"}), 409, "file",
            "backing up a running VM's disk")
    refused(d.request("DELETE", "/v1/images/cbt.qcow2"), 409, "file",
            "deleting a running VM's disk")
    check(files(imgs, bks, vault) == before, "nothing made by the refusals")
    d.action("bk", "kill")
    d.wait_state("bk", "stopped")
    refused(d.request("DELETE", "/v1/images/cbt.qcow2"), 409, "file",
            "deleting a stopped VM's disk")

    # --- delete --------------------------------------------------------
    refused(d.request("DELETE", "/v1/images/base.qcow2"), 409, "file", "deleting a backing file")
    with open(P("r.raw"), "rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        refused(d.request("DELETE", "/v1/images/r.raw"), 409, "file",
                "deleting what another process holds")
    for n in ("ov2.qcow2", "ov.qcow2", "base.qcow2", "r.raw"):
        r = d.request("DELETE", f"/v1/images/{n}")
        check(r.status == 204 and not os.path.exists(P(n)), f"{n} deleted (top down)")
    refused(d.request("DELETE", "/v1/images/r.raw"), 404, "file", "deleting it again")
    check(os.path.exists(secret) and os.path.islink(P("evil.raw")), "the symlink and its target stay")

    # --- the CLI -------------------------------------------------------
    d.cli("image", "create", "images/cli.raw", "1M", "-f", "raw")
    d.cli("image", "resize", "cli.raw", "2M")
    p = d.cli("image", "convert", "images/cli.raw", "backups/cli.qcow2", "-O", "qcow2", "--wait")
    check("done" in p.stdout, f"cella image convert --wait: {p.stdout.strip()}")
    same(P("cli.raw"), os.path.join(bks, "cli.qcow2"))
    p = d.cli("image", "list")
    check(re.search(r"backups\s+cli\.qcow2\s+qcow2\s+2097152", p.stdout) is not None,
          "cella image list shows it")
    p = d.cli("image", "resize", "cli.raw", "1M", expect=1)
    check("smaller" in p.stderr, f"a shrink refused: {p.stderr.strip()}")
    d.cli("image", "create", "cli.raw", "1M", expect=2)
    d.cli("image", "delete", "backups/cli.qcow2")
    d.cli("image", "delete", "cli.raw")

    # --- roles ---------------------------------------------------------
    if os.geteuid() != 0:
        log("not root: the role checks are skipped")
        return
    os.chmod(d.sock, 0o666)
    os.chmod(d.dir, 0o755)
    st, js = as_uid(d, VIEWER, "GET", "/v1/images")
    check(st == 200 and [l["name"] for l in js["locations"]] == ["images", "backups"] and
          not js["locations"][0]["writable"], "a viewer lists the operator's locations, read-only")
    st, js = as_uid(d, VIEWER, "POST", "/v1/images", {"location": "images", "name": "v",
                                                      "size": M})
    check(st == 403 and js["error"]["field"] == "role", "a viewer may not create")
    st, js = as_uid(d, OPERATOR, "POST", "/v1/images", {"location": "vault", "name": "v",
                                                        "size": M})
    check(st == 400 and js["error"]["field"] == "location", "an operator cannot use the vault")
    st, js = as_uid(d, OPERATOR, "POST", "/v1/images", {"location": "images", "name": "op.raw",
                                                        "format": "raw", "size": M})
    check(st == 201 and os.path.exists(P("op.raw")), "an operator creates in its location")


def top_of(p):
    return os.path.dirname(p)


def crash_case(args, d, imgs):
    """cellad killed while a convert copies: the next one removes the target."""
    d.post("/v1/images", {"location": "images", "name": "big.raw", "format": "raw",
                          "size": "64M"})
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x77 0 32M", os.path.join(imgs, "big.raw")],
                   check=True, capture_output=True)
    d.stop()
    d.config["test_crash_at"] = "image-convert:copying"
    d.start()
    try:
        d.post("/v1/images/big.raw/convert", {"target": "half.qcow2", "format": "qcow2"})
    except (http.client.HTTPException, ConnectionError, OSError):
        pass  # killed before it answered
    d.proc.wait(timeout=60)
    d.logf.close()
    d.logf = None
    check(d.proc.returncode == -9 and os.path.exists(os.path.join(imgs, "half.qcow2")),
          "cellad died while copying: half.qcow2 is left")
    d2 = Daemon(args, name="cellad-2", keep_dir=d.dir, config={
        k: v for k, v in d.config.items() if k != "test_crash_at"})
    d2.start()
    check(not os.path.exists(os.path.join(imgs, "half.qcow2")), "the next cellad removed it")
    evs = [e for e in d2.events(since=0) if e["event"] == "job-rolled-back"]
    check(evs and "image-convert" in evs[0].get("detail", ""), f"job-rolled-back: {evs}")
    return d2


if __name__ == "__main__":
    main(test)
