"""memdev.py: helpers the memory-device integration tests share
(test_vmem.py, test_balloon.py): checks, a worker's RssShmem, waiting for
its control socket, and a migration to a second worker over mutual TLS."""
import os
import shutil
import tempfile
import time

import harness
import test_migrate as tm


def check(cond, msg):
    if not cond:
        raise harness.TestFailure(msg)
    harness.log(f"ok: {msg}")


def rss_shmem_kib(pid, key="RssShmem"):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise harness.TestFailure(f"no {key} in /proc/{pid}/status:\n{text[:400]}")


def wait_path(proc, path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise harness.TestFailure(f"worker exited ({proc.returncode}) before listening")
        if time.monotonic() > deadline:
            raise harness.TestFailure(f"{path} did not appear")
        os.sched_yield()


def make_pki(d):
    """A CA and the two workers' certificates under d/pki."""
    pki = os.path.join(d, "pki")
    os.mkdir(pki)
    tm.make_pki(pki)
    return pki


def incoming_args(fd, dctl, pki):
    """The destination worker's options: migration in on fd, over TLS."""
    return ["--incoming", f"fd:{fd}", "--control", dctl, "--tls-cert", f"{pki}/dst.crt",
            "--tls-key", f"{pki}/dst.key", "--tls-ca", f"{pki}/ca.crt",
            "--tls-peer", "src.cella.test"]


def migrate(src, ctl, dst, dctl, pki, sock, port):
    """Starts dst on the listening sock, migrates src (control socket ctl)
    to it, checks the source exited as migrated and waits for dst's control
    socket; the migrate reply."""
    dst.start(pass_fds=(sock.fileno(),))
    sock.close()
    rep = harness.control(ctl, {
        "cmd": "migrate", "host": "127.0.0.1", "port": port,
        "tls": {"cert": tm.read(pki, "src.crt"), "key": tm.read(pki, "src.key"),
                "ca": tm.read(pki, "ca.crt"), "name": "dst.cella.test"}}, timeout=180)
    check(rep.get("ok") is True, f"migrate: {rep}")
    check(src.wait_exit(30) == tm.MIGRATED, "source exited as migrated")
    wait_path(dst.proc, dctl)
    return rep


def run_in_tmpdir(args, guest, run):
    """run(cella_vm, the guest's kernel, a fresh directory), on KVM; the
    directory is removed afterwards."""
    harness.require_kvm()
    vm, kernel = args["cella_vm"], args["guests"][guest]
    d = tempfile.mkdtemp(prefix=f"cella-{guest}-")
    try:
        run(vm, kernel, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
