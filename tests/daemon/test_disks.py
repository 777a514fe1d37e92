"""test_disks.py: disks in VM definitions: qcow2 and raw (format probed
once and pinned, or given), QoS limits and cbt passed to the worker, live
QoS changes (`cella vm set --disk-qos`, PATCH on the disk) reaching the
running worker and stored; and the storage-loss pause: a qcow2 image on a
tiny tmpfs runs out of space while the blk guest writes, the worker pauses
itself, cellad shows the VM paused with the reason (status poller), and
once the file system grows the worker resumes and cellad shows it running
(root only for the mount; skipped loudly otherwise)."""

import json
import os
import re
import subprocess

from cellad import Daemon, TestFailure, check, log, main
import wctl_client


def worker_status(d, name):
    vm = d.vm(name)
    return wctl_client.request(os.path.join(d.run, vm["uuid"] + ".ctl"), {"cmd": "status"})


def qos_max():
    """CONF_QOS_MAX, the one QoS limit of cella-vm, cellad and the CLI."""
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    with open(os.path.join(top, "conf", "limits.h")) as f:
        m = re.search(r"#define CONF_QOS_MAX\s+\(1ULL << (\d+)\)", f.read())
    return 1 << int(m.group(1))


def definitions(d, tmp):
    raw = os.path.join(tmp, "a.raw")
    q = os.path.join(tmp, "b.qcow2")
    raw2 = os.path.join(tmp, "c.raw")
    for p in (raw, raw2):
        with open(p, "wb") as f:
            f.truncate(8 << 20)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", q, "8M"], check=True)
    vm = d.define("dk", "echo", disks=[
        {"path": raw},
        {"path": q, "qos": {"iops": 500, "bps": 4 << 20}, "cbt": True},
        {"path": raw2, "format": "raw", "readonly": True, "id": "ro"}])
    ds = vm["disks"]
    check([x["format"] for x in ds] == ["raw", "qcow2", "raw"], "formats probed and pinned")
    check([x["id"] for x in ds] == ["disk0", "disk1", "ro"], "ids given or diskN")
    check(ds[1]["qos"] == {"iops": 500, "iops_burst": 0, "bps": 4 << 20, "bps_burst": 0} and
          ds[1]["cbt"] and not ds[0]["cbt"], "qos and cbt stored")
    bad = [({"path": raw, "format": "vmdk"}, "disks[0].format"),
           ({"path": raw, "qos": {"iops": -1}}, "disks[0].qos.iops"),
           ({"path": raw, "qos": {"max": 1}}, "disks[0].qos.max"),
           ({"path": raw, "qos": 5}, "disks[0].qos"),
           ({"path": raw, "cbt": "yes"}, "disks[0].cbt"),
           ({"path": raw, "qos": {"bps": qos_max() + 1}}, "disks[0].qos.bps")]
    for disk, field in bad:
        r = d.post("/v1/vms", {"name": "bad", "kernel": d.args["guests"]["echo"],
                               "disks": [disk]})
        check(r.status == 400 and r.json["error"]["field"] == field, f"400 naming {field}")
    r = d.post("/v1/vms", {"name": "bad", "kernel": d.args["guests"]["echo"],
                           "disks": [{"path": raw, "id": "x"}, {"path": q, "id": "x"}]})
    check(r.status == 400 and r.json["error"]["field"] == "disks[1].id", "duplicate ids refused")
    r = d.post("/v1/vms", {"name": "bad", "kernel": d.args["guests"]["echo"],
                           "disks": [{"path": raw}, {"path": raw}]})
    check(r.status == 400 and r.json["error"]["field"] == "disks[1].path",
          "one image twice refused")

    d.action("dk", "start")
    st = worker_status(d, "dk")
    wd = {x["id"]: x for x in st.get("disks", [])}
    check(wd.get("disk1", {}).get("format") == "qcow2" and
          wd["disk1"].get("qos", {}).get("iops") == 500, f"the worker has the limits: {wd}")
    d.cli("vm", "set", "dk", "--disk-qos", "disk0", "iops=100,bps=1048576,iops_burst=200")
    st = worker_status(d, "dk")
    q0 = {x["id"]: x for x in st["disks"]}["disk0"]["qos"]
    check(q0["iops"] == 100 and q0["bps"] == 1048576 and q0["iops_burst"] == 200,
          f"set-qos reached the running worker: {q0}")
    check(d.vm("dk")["disks"][0]["qos"]["iops"] == 100, "and is stored")
    r = d.request("PATCH", "/v1/vms/dk/disks/nope", {"qos": {"iops": 1}})
    check(r.status == 404 and r.json["error"]["field"] == "disk", "unknown disk: 404")
    d.cli("vm", "set", "dk", "--disk-qos", "disk0", "iops=x", expect=2)
    d.cli("vm", "set", "dk", "--disk-qos", "disk0", f"iops={qos_max() + 1}", expect=2)
    r = d.request("PATCH", "/v1/vms/dk/disks/disk0", {"qos": {"iops": qos_max() + 1}})
    check(r.status == 400 and r.json["error"]["field"] == "qos.iops" and
          f"(0 to {qos_max()})" in r.json["error"]["reason"], "cellad's QoS limit is the schema's")
    d.action("dk", "kill")
    r = d.request("PATCH", "/v1/vms/dk/disks/disk1", {"qos": {"bps": 0}})
    check(r.status == 200 and r.json["qos"]["bps"] == 0, "a stopped VM's limits change too")


def storage_loss(d, tmp):
    if os.geteuid() != 0:
        print("#" * 72 + "\n# SKIP (part): storage-loss pause needs root (tmpfs mount)\n" +
              "#" * 72, flush=True)
        return
    mnt = os.path.join(tmp, "small")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt], check=True)
    try:
        img = os.path.join(mnt, "disk.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", img, "64M"], check=True)
        d.define("full", "blk", cmdline="mode=write seed=7 mib=8", disks=[{"path": img}])
        d.action("full", "start")
        ev = d.wait_event("full", "paused", timeout=120)
        vm = d.vm("full")
        check(vm["state"] == "paused" and (vm["pause_reason"] or "").startswith("storage: disk0"),
              f"paused by the worker, reason shown: {vm['pause_reason']!r} ({ev})")
        subprocess.run(["mount", "-o", "remount,size=64m", mnt], check=True)
        d.wait_event("full", "resumed", timeout=60)
        d.wait_state("full", "stopped", timeout=120)
        out = d.console("full")
        check("PASS blk" in out, "the guest finished its writes after the storage came back")
    finally:
        subprocess.run(["umount", "-l", mnt])


def test(args):
    with Daemon(args) as d:
        tmp = os.path.join(d.dir, "img")
        os.makedirs(tmp)
        definitions(d, tmp)
        storage_loss(d, tmp)


if __name__ == "__main__":
    main(test)
