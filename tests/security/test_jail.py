"""test_jail.py: the jailer-grade worker, seen from the host.

- Each worker runs as its own uid and gid from cellad's range
  (sandbox_uid_base, sandbox_uid_count); a uid is free again once its
  worker has exited, and a start with every uid in use is refused (409).
- Worker A cannot signal or ptrace worker B: a helper running as A's uid
  gets EPERM from kill(B, 0) and from PTRACE_ATTACH, while kill(A, 0)
  works (so the check would see a shared uid); it cannot ptrace A either
  (not dumpable: uid 0 of its namespace made no uid change that would
  have cleared it, so cella-vm clears it itself).
- Capabilities: empty bounding, ambient, inheritable, permitted and
  effective sets; no_new_privs; seccomp, with a second filter of their own
  on the vCPU threads (Seccomp_filters 2 there, 1 on the main thread).
- rlimits: NOFILE (soft = hard, bounded), NPROC 1024, CORE 0; the cgroup's
  pids.max is 1024 (v1 pids controller here).
- Namespaces: mount, IPC, UTS and network differ from cellad's (and the
  network namespaces of two workers differ from each other); each worker
  is PID 1 of a PID namespace of its own (cellad creates it so), yet runs
  its vCPU threads; SIGTERM from cellad's namespace still stops it (PID 1
  ignores signals it has no handler for: cella-vm reads them from a
  signalfd), and after a kill -9 nothing of it is left and a new worker
  starts.
- A clean stop leaves no "blocked system call" in the worker's log (the
  deferred teardown's close_range used to be).
- Inside the worker (test-only probe-syscall), an IPv4 socket or a new
  user namespace ends the worker (seccomp: status 4, the call's number
  logged); without seccomp the same socket call works, so the probe would
  notice. io_uring cannot do it either: the disk rings refuse openat,
  socket and connect (unit test backend-blkio).
- User namespaces: cellad creates each worker in a user namespace of its
  own (clone(CLONE_NEWUSER | CLONE_NEWPID)), a child of cellad's, whose
  only mapping is uid 0 -> the worker's uid and gid 0 -> its gid: inside
  it is uid 0, outside its per-VM uid, so it never holds a capability in
  the host's namespaces (the namespace's owner is cellad's root, which
  keeps power over it, not the other way round). Its PID namespace is
  owned by that user namespace. cella-vm --sandbox=userns outside such a
  namespace (host root) refuses to start.
- /dev/kvm and the taps are cellad's descriptors: a worker given another
  descriptor for KVM (/dev/null) names it and fails; a VM with a NIC on a
  tap (cellad in a private network namespace, where the tap lives) still
  answers ARP and ICMP echo.
- sandbox_user still gives every worker one named user; RLIMIT_NPROC is
  set for it too now (a user namespace's tasks are counted per namespace,
  so the limit is the worker's own); cella-vm refuses a malformed or root
  --sandbox=UID:GID as a configuration error.
"""

import ctypes
import errno
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess

from cellad import Daemon, check, log, main, status_fields

PTRACE_ATTACH, PTRACE_DETACH = 16, 17
NS_GET_PARENT, NS_GET_OWNER_UID = 0xB702, 0xB704  # linux/nsfs.h: _IO(0xb7, 2), _IO(0xb7, 4)


def ns_owner_uid(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, NS_GET_OWNER_UID, buf)
        return int.from_bytes(buf, "little")
    finally:
        os.close(fd)


def ns_parent(path):
    """The parent user namespace's id (dev:inode), as readlink shows it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pfd = fcntl.ioctl(fd, NS_GET_PARENT)
        try:
            return os.fstat(pfd).st_ino
        finally:
            os.close(pfd)
    finally:
        os.close(fd)


def id_map(pid, which):
    with open(f"/proc/{pid}/{which}_map") as f:
        return [line.split() for line in f if line.strip()]


def limits(pid):
    out = {}
    with open(f"/proc/{pid}/limits") as f:
        next(f)
        for line in f:
            name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
            out[name] = (soft, hard)
    return out


def as_uid(uid, gid, fn):
    """Run fn() in a child that has become uid/gid; its return value
    (a small int) comes back as the exit status."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            code = fn()
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)


def _ns_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def probe_syscall(d, name, call):
    """The worker's reply, or None when it ended instead of answering."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(d.run, d.vm(name)["uuid"] + ".ctl"))
    s.sendall((json.dumps({"cmd": "probe-syscall", "call": call}) + "\n").encode())
    line = s.makefile().readline()
    s.close()
    return json.loads(line) if line else None


def test(args):
    base = 400000 + (os.getpid() % 50000) * 2
    with Daemon(args, config={"sandbox_uid_base": base, "sandbox_uid_count": 2}) as d:
        cellad = d.proc.pid
        d.define("a", "memwriter", "rounds=0 mib=2")
        d.define("b", "memwriter", "rounds=0 mib=2")
        d.define("c", "memwriter", "rounds=0 mib=2")
        pa = d.action("a", "start")["pid"]
        pb = d.action("b", "start")["pid"]
        sa, sb = status_fields(pa), status_fields(pb)
        ua, ub = int(sa["Uid"][0]), int(sb["Uid"][0])
        ga, gb = int(sa["Gid"][0]), int(sb["Gid"][0])
        check(ua != ub and ga != gb, f"two workers, two identities: {ua}:{ga} and {ub}:{gb}")
        for s, u in ((sa, ua), (sb, ub)):
            check(base <= u < base + 2 and len(set(s["Uid"])) == 1 and len(set(s["Gid"])) == 1
                  and s["Gid"][0] == str(u) and s["Groups"] == [],
                  f"uid {u}: from the range, real = effective = saved = fs, gid the same, "
                  "no supplementary groups")
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                check(s[cap] == ["0000000000000000"], f"uid {u}: {cap} empty")
            check(s["NoNewPrivs"] == ["1"] and s["Seccomp"] == ["2"],
                  f"uid {u}: no_new_privs and seccomp")

        # Per-thread filters: the vCPU threads stack their own.
        tasks = {}
        for tid in os.listdir(f"/proc/{pa}/task"):
            with open(f"/proc/{pa}/task/{tid}/comm") as f:
                tasks[int(tid)] = f.read().strip()
        vcpus = [t for t, n in tasks.items() if n.startswith("vcpu")]
        check(vcpus, f"vCPU threads found: {tasks}")
        for t in vcpus:
            st = status_fields(f"{pa}/task/{t}")
            check(st["Seccomp_filters"] == ["2"], f"{tasks[t]}: two filters (process + vCPU)")
        check(status_fields(pa)["Seccomp_filters"] == ["1"], "main thread: the process filter")

        # A cannot signal or ptrace B.
        def probe():
            os.kill(pa, 0)  # its own worker: allowed (the control)
            try:
                os.kill(pb, 0)
                return 1
            except PermissionError:
                pass
            try:
                os.kill(pb, 9)
                return 2
            except PermissionError:
                pass
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.restype = ctypes.c_long
            r = libc.ptrace(PTRACE_ATTACH, pb, None, None)
            if r == 0:
                libc.ptrace(PTRACE_DETACH, pb, None, None)
                return 3
            return 0 if ctypes.get_errno() == errno.EPERM else 4
        r = as_uid(ua, ga, probe)
        check(r == 0, f"as A's uid: kill(A, 0) works; kill(B, 0), kill(B, SIGKILL) and "
              f"PTRACE_ATTACH to B fail with EPERM (helper said {r})")

        # Nor can a process of A's own uid ptrace A: it is not dumpable
        # (sanitizer builds keep it dumpable for LeakSanitizer's tracer;
        # they are the ones that mount a proc in its root).
        def probe_own():
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace.restype = ctypes.c_long
            if libc.ptrace(PTRACE_ATTACH, pa, None, None) == 0:
                libc.ptrace(PTRACE_DETACH, pa, None, None)
                return 1
            return 0 if ctypes.get_errno() == errno.EPERM else 2
        if os.listdir(f"/proc/{pa}/root/") != ["proc"]:
            r = as_uid(ua, ga, probe_own)
            check(r == 0, f"as A's uid: PTRACE_ATTACH to A fails with EPERM, A is not "
                  f"dumpable (helper said {r})")

        # rlimits and the pids cgroup.
        lim = limits(pa)
        nofile = lim["Max open files"]
        check(nofile[0] == nofile[1] and int(nofile[0]) <= 1024,
              f"RLIMIT_NOFILE bounded: {nofile}")
        check(lim["Max processes"] == ("1024", "1024"), f"RLIMIT_NPROC: {lim['Max processes']}")
        check(lim["Max core file size"] == ("0", "0"), "RLIMIT_CORE 0")
        uuid = d.vm("a")["uuid"]
        pids = f"/sys/fs/cgroup/pids/{d.cgroup_parent}/{uuid}"
        if os.path.isdir(f"/sys/fs/cgroup/pids/{d.cgroup_parent}"):
            check(open(pids + "/pids.max").read().strip() == "1024", "cgroup pids.max 1024")
            check(str(pa) in open(pids + "/cgroup.procs").read().split(),
                  "the worker is in its pids cgroup")
        else:
            log("WARNING: no cgroup v1 pids hierarchy: pids.max not checked")

        # Namespaces.
        for ns in ("mnt", "ipc", "uts", "net"):
            mine = os.readlink(f"/proc/{cellad}/ns/{ns}")
            check(os.readlink(f"/proc/{pa}/ns/{ns}") != mine and
                  os.readlink(f"/proc/{pb}/ns/{ns}") != mine, f"own {ns} namespace")
        check(os.readlink(f"/proc/{pa}/ns/net") != os.readlink(f"/proc/{pb}/ns/net"),
              "the two workers' network namespaces differ too")
        check(os.listdir(f"/proc/{pa}/net/") is not None and
              open(f"/proc/{pa}/net/dev").read().count(":") == 1,
              "the worker's network namespace holds only lo")

        # User namespaces: one each, a child of cellad's, mapping only uid
        # 0 to the worker's uid (and gid 0 to its gid).
        mine = os.readlink(f"/proc/{cellad}/ns/user")
        usa, usb = os.readlink(f"/proc/{pa}/ns/user"), os.readlink(f"/proc/{pb}/ns/user")
        check(usa != mine and usb != mine and usa != usb,
              f"own user namespaces: {usa}, {usb} (cellad {mine})")
        for p, u, g, us in ((pa, ua, ga, usa), (pb, ub, gb, usb)):
            check(id_map(p, "uid") == [["0", str(u), "1"]] and
                  id_map(p, "gid") == [["0", str(g), "1"]],
                  f"worker {p}: uid_map and gid_map map only 0 to {u}:{g} "
                  f"({id_map(p, 'uid')}, {id_map(p, 'gid')})")
            check(ns_parent(f"/proc/{p}/ns/user") == os.stat(f"/proc/{cellad}/ns/user").st_ino,
                  f"worker {p}: its user namespace is a child of cellad's")
            check(ns_owner_uid(f"/proc/{p}/ns/user") == 0,
                  f"worker {p}: the namespace's owner is cellad's root (creator), which "
                  "holds capabilities over it; the worker holds none over the host")
            owner = os.open(f"/proc/{p}/ns/pid", os.O_RDONLY)
            try:
                ufd = fcntl.ioctl(owner, 0xB701)  # NS_GET_USERNS
                try:
                    check(os.fstat(ufd).st_ino == os.stat(f"/proc/{p}/ns/user").st_ino,
                          f"worker {p}: its PID namespace is owned by its user namespace")
                finally:
                    os.close(ufd)
            finally:
                os.close(owner)
        with open(f"/proc/{pa}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        check(b"--sandbox=userns" in argv and b"--kvm" in argv and
              not any(a.startswith(b"/dev/") or b"/run" in a for a in argv),
              f"its command line names no host file: {argv}")

        # PID namespaces: one each, the worker its PID 1.
        mine = os.readlink(f"/proc/{cellad}/ns/pid")
        nsa, nsb = os.readlink(f"/proc/{pa}/ns/pid"), os.readlink(f"/proc/{pb}/ns/pid")
        check(nsa != mine and nsb != mine and nsa != nsb,
              f"own PID namespaces: {nsa}, {nsb} (cellad {mine})")
        for p in (pa, pb):
            nspid = status_fields(p)["NSpid"]
            check(nspid == [str(p), "1"], f"worker {p} is PID 1 of its namespace: NSpid {nspid}")
        check(len(vcpus) >= 1 and all(len(status_fields(f"{pa}/task/{t}")["NSpid"]) == 2
                                      for t in vcpus),
              "its vCPU threads live in the same PID namespace")

        # Every uid in use: a third start is refused; after A ends, C gets a uid.
        r = d.post("/v1/vms/c/start")
        check(r.status == 409 and "sandbox uid" in r.body,
              f"no free uid: the start is refused ({r})")
        d.action("a", "stop", {"timeout_s": 0}, expect=202)
        d.wait_state("a", ("stopped",))
        pc = d.action("c", "start")["pid"]
        uc = int(status_fields(pc)["Uid"][0])
        check(uc == ua, f"A's uid {ua} is given again once A has exited ({uc})")
        d.action("c", "kill")
        with open(os.path.join(d.state, "logs", "a.log")) as f:
            alog = f.read()
        check("exit:" in alog and "blocked system call" not in alog,
              "a clean stop: no blocked system call in the worker's log")

        # SIGTERM from outside the namespace reaches PID 1 (its signalfd).
        os.kill(pb, signal.SIGTERM)
        vm = d.wait_state("b", ("stopped", "crashed"))
        with open(os.path.join(d.state, "logs", "b.log")) as f:
            blog = f.read()
        check(vm["last_exit"]["status"] == 12 and "stopped by signal" in blog and
              "blocked system call" not in blog,
              f"SIGTERM to PID 1 stops it cleanly (status {vm['last_exit']['status']})")

        # kill -9: the namespace goes with it, and a new worker starts.
        pb = d.action("b", "start")["pid"]
        nsb = os.readlink(f"/proc/{pb}/ns/pid")
        os.kill(pb, signal.SIGKILL)
        vm = d.wait_state("b", ("crashed", "stopped"))
        left = [p for p in os.listdir("/proc") if p.isdigit() and
                _ns_of(p) == nsb]
        check(vm["last_exit"]["status"] == 128 + signal.SIGKILL and not left,
              f"kill -9: the worker's PID namespace is empty ({left})")
        pb2 = d.action("b", "start")["pid"]
        vm = d.vm("b")
        # (A namespace's inode number is free again once it is gone: the
        # new one may well have the old number.)
        check(pb2 != pb and _ns_of(pb2) not in (mine, None) and vm["state"] == "running" and
              status_fields(pb2)["NSpid"] == [str(pb2), "1"],
              f"a new worker starts after a kill -9, PID 1 of a new namespace ({vm['state']})")
        d.action("b", "kill")

        # Forbidden calls from inside: the worker ends.
        for call, nr in (("socket", 41), ("unshare", 272)):
            d.action("a", "start")
            r = probe_syscall(d, "a", call)
            check(r is None, f"probe {call}: no answer, the worker ended ({r})")
            vm = d.wait_state("a", ("crashed",))
            with open(os.path.join(d.state, "logs", "a.log")) as f:
                alog = f.read()
            check(vm["last_exit"]["status"] == 4 and f"blocked system call {nr}\n" in alog,
                  f"{call}: status 4, 'blocked system call {nr}' logged")

    # Control: without seccomp the same probe makes its socket.
    with Daemon(args, name="cellad-noseccomp", config={"seccomp": False}) as d:
        d.define("free", "memwriter", "rounds=0 mib=2")
        d.action("free", "start")
        r = probe_syscall(d, "free", "socket")
        check(r == {"ok": True, "done": True}, f"control: without seccomp the socket is made ({r})")
        d.action("free", "kill")

    # One shared, named user (the old way), and bad specs.
    with Daemon(args, name="cellad-shared", config={"sandbox_user": "nobody"}) as d:
        d.define("n", "memwriter", "rounds=0 mib=2")
        pid = d.action("n", "start")["pid"]
        nobody = pwd.getpwnam("nobody")
        check(status_fields(pid)["Uid"][0] == str(nobody.pw_uid) and
              id_map(pid, "uid") == [["0", str(nobody.pw_uid), "1"]] and
              id_map(pid, "gid") == [["0", str(nobody.pw_gid), "1"]],
              "sandbox_user: the worker is nobody, uid 0 of its own user namespace")
        check(limits(pid)["Max processes"] == ("1024", "1024"),
              "a shared user gets RLIMIT_NPROC too (counted per user namespace)")
        d.action("n", "kill")
    for spec in ("0:0", "1000:0", "12:x", "12", ":5", "no-such-user-here", "userns"):
        p = subprocess.run([args["cella_vm"], "--kernel", args["guests"]["memwriter"],
                            f"--sandbox={spec}"], capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and "sandbox" in p.stderr,
              f"--sandbox={spec}: configuration error (status {p.returncode})")

    # /dev/kvm given as a descriptor that is not KVM: named, status 4.
    nul = os.open("/dev/null", os.O_RDWR)
    p = subprocess.run([args["cella_vm"], "--kernel", args["guests"]["memwriter"], "--kvm",
                        f"fd:{nul}"], pass_fds=(nul,), capture_output=True, text=True,
                       timeout=30)
    os.close(nul)
    check(p.returncode == 4 and f"fd:{nul} is not /dev/kvm" in p.stderr,
          f"--kvm fd:{nul} on /dev/null: '{p.stderr.strip()[-200:]}' (status {p.returncode})")
    test_net(args)


def test_net(args):
    """A NIC under cellad: cellad attaches the tap (in its network namespace,
    a private one here) and passes it; the guest's ARP and pings get
    answers."""
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip") or \
            not shutil.which("nsenter"):
        log("WARNING: no /dev/net/tun, ip or nsenter: the NIC is not checked")
        return
    ns, tap = f"cella-jail-{os.getpid()}", "jtap0"
    host_ip, guest_ip = "192.168.101.1", "192.168.101.2"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["tuntap", "add", "dev", tap, "mode", "tap"],
                    ["addr", "add", f"{host_ip}/24", "dev", tap],
                    ["link", "set", tap, "up"]):
            subprocess.run(["ip", "-n", ns] + cmd, check=True)
        # nsenter changes the network namespace only (ip netns exec would
        # mount a new /sys over the cgroup hierarchies).
        with Daemon(args, name="cellad-net", wrapper=["nsenter", f"--net=/run/netns/{ns}"]) as d:
            d.define("net", "net", f"ip={guest_ip} peer={host_ip} count=3",
                     nics=[{"tap": tap}])
            pid = d.action("net", "start")["pid"]
            check(os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"),
                  "the NIC's worker is in its own user namespace")
            vm = d.wait_state("net", ("stopped", "crashed"), timeout=60)
            con = d.console("net")
            check(vm["last_exit"]["status"] == 1 and f"ok: ARP reply from {host_ip}" in con and
                  f"ok: ICMP echo reply 3 from {host_ip}" in con,
                  f"the guest's ARP and 3 pings were answered through the passed tap "
                  f"(status {vm['last_exit']['status']}): {con[-300:]!r}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main(test, need_root=True)
