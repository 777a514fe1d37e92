"""test_sandbox.py: a worker is confined. From the host: it runs as an
unprivileged user with no_new_privs and a seccomp filter, in its own mount
namespace whose root is empty; its cgroups carry the VM's CPU weight, CPU
cap and memory limit (changed live). From inside: the worker itself tries
to open host files (the test-only probe-open control command runs open(2)
in the worker process) and cannot, while the same probe in an unsandboxed
worker can, which shows that the probe would notice an escape."""

import json
import os
import socket

from cellad import Daemon, TestFailure, check, log, main, status_fields


def ctl(d, vm, req):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(d.run, vm["uuid"] + ".ctl"))
    s.sendall((json.dumps(req) + "\n").encode())
    reply = s.makefile().readline()
    s.close()
    return json.loads(reply)


def probe(d, vm, path):
    return ctl(d, vm, {"cmd": "probe-open", "path": path})


def test(args):
    disk = None
    with Daemon(args) as d:
        disk = os.path.join(d.dir, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        d.define("jail", "memwriter", "rounds=0 mib=4", cpus=2, memory_mib=96, cpu_weight=50,
                 cpu_max=25, disks=[{"path": disk}])
        vm = d.action("jail", "start")
        pid = vm["pid"]
        st = status_fields(pid)
        check(st["Uid"][0] != "0" and st["Gid"][0] != "0",
              f"worker runs as uid {st['Uid'][0]}, gid {st['Gid'][0]}")
        check(st["NoNewPrivs"] == ["1"], "no_new_privs set")
        check(st["Seccomp"] == ["2"], "seccomp filter mode")
        check(st["CapEff"] == ["0000000000000000"], "no effective capabilities")
        check(os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"),
              "own mount namespace")
        root = os.listdir(f"/proc/{pid}/root/")
        check(root == [] or root == ["proc"], f"its root is empty: {root}")

        # Sanitizer builds mount a proc for LeakSanitizer: that of the
        # worker's own PID namespace, where PID 1 is the worker itself and
        # host processes (cellad here) do not exist.
        host_proc = f"/proc/{d.proc.pid}/environ" if root == ["proc"] else "/proc/1/environ"
        secrets = ["/etc/passwd", "/etc/shadow", args["guests"]["memwriter"], disk,
                   os.path.join(d.state, "cellad.db"), d.sock, "/dev/kvm", host_proc]
        for path in secrets:
            r = probe(d, vm, path)
            if not r.get("ok") or r.get("opened"):
                raise TestFailure(f"the worker opened {path}: {r}")
            log(f"ok: worker cannot open {path}: {r.get('error')}")
        r = probe(d, vm, "/")
        check(r.get("opened") is True, "the probe works (it opens its own empty root)")
        d.wait_console("jail", "round 1")
        check(d.vm("jail")["state"] == "running", "the confined guest runs")

        # A live migration to host:port would need a socket the allowlist
        # refuses (the worker would end, the VM with it): refused with a
        # reason instead, and the worker goes on.
        pem = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
        r = ctl(d, vm, {"cmd": "migrate", "host": "127.0.0.1", "port": 9,
                        "tls": {"cert": pem, "key": pem, "ca": pem}})
        check(r.get("ok") is False and "attach a connected socket" in r.get("error", ""),
              f"migrate to host:port refused by the confined worker: {r}")
        check(probe(d, vm, "/").get("opened") is True and d.vm("jail")["state"] == "running"
              and d.vm("jail")["pid"] == pid, "the worker goes on after the refusal")

        # cgroups (v1 here; v2 files where the controllers live there).
        host = d.get("/v1/host").json
        if host["cgroups"] == "v1":
            cpu = f"/sys/fs/cgroup/cpu/{d.cgroup_parent}/{vm['uuid']}"
            mem = f"/sys/fs/cgroup/memory/{d.cgroup_parent}/{vm['uuid']}"
            read = lambda p: open(p).read().strip()
            check(str(pid) in read(cpu + "/cgroup.procs").split(), "worker in its cpu cgroup")
            check(str(pid) in read(mem + "/cgroup.procs").split(), "worker in its memory cgroup")
            check(read(cpu + "/cpu.shares") == "512", "cpu_weight 50 -> 512 shares")
            check(read(cpu + "/cpu.cfs_quota_us") == "50000", "cpu_max 25% of 2 vCPUs -> 50 ms "
                  "per 100 ms")
            limit = int(read(mem + "/memory.limit_in_bytes"))
            check(limit == (96 + 64) << 20,
                  f"memory limit = guest memory + 64 MiB overhead ({limit})")
            r = d.request("PATCH", "/v1/vms/jail", {"cpu_weight": 300, "cpu_max": 100})
            check(r.status == 200, "live CPU change")
            check(read(cpu + "/cpu.shares") == "3072" and read(cpu + "/cpu.cfs_quota_us") == "-1",
                  "new weight and no cap applied to the running worker")
        elif host["cgroups"] == "v2":
            log("cgroup v2 host: checking cpu.weight only")
        else:
            log("WARNING: no writable cgroups on this host: limits not checked")
        d.action("jail", "kill")

    # Control: the same probe in an unsandboxed worker does reach host files.
    with Daemon(args, name="cellad-nosandbox",
                config={"sandbox": False, "seccomp": False}) as d:
        d.define("free", "memwriter", "rounds=0 mib=4")
        vm = d.action("free", "start")
        r = probe(d, vm, "/etc/passwd")
        check(r.get("opened") is True, "control: an unsandboxed worker can open /etc/passwd, so "
              "the probe detects access")
        d.action("free", "kill")


if __name__ == "__main__":
    main(test, need_root=True)
