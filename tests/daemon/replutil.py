"""replutil.py: what the replication tests share: two cellads in network
namespaces, each known to the other as a peer (mutual TLS, a token), and
the recovery points of a replica's disk as the disk library lists them."""
import json
import os
import shutil
import subprocess
import tempfile
import time

from cellad import TestFailure, skip
from test_move import ADDR, PORT, Net, NsDaemon, make_certs


def two_hosts(args, tag, fn, both_ways=False, tools=("ip", "openssl", "qemu-img")):
    """fn(a, b, net, work) with cellads a and b in namespaces of their own
    on one bridge, b a peer of a (and a of b with both_ways), work a
    scratch directory. Skips without one of tools or root."""
    for tool in tools:
        if not shutil.which(tool):
            skip(f"'{tool}' is not installed")
    if os.geteuid() != 0:
        skip("needs root: network namespaces for the two hosts")
    certs = tempfile.mkdtemp(prefix=f"cella-{tag}-certs-")
    work = tempfile.mkdtemp(prefix=f"cella-{tag}-")
    net = Net()
    try:
        make_certs(certs)
        net.up()
        with NsDaemon(args, "a", net.ns["a"], certs) as a, \
                NsDaemon(args, "b", net.ns["b"], certs) as b:
            a.cli("host", "add", "b", "--url", f"https://{ADDR['b']}:{PORT}", "--token-file",
                  f"{certs}/b.token")
            if both_ways:
                b.cli("host", "add", "a", "--url", f"https://{ADDR['a']}:{PORT}",
                      "--token-file", f"{certs}/a.token")
            fn(a, b, net, work)
    finally:
        net.down()
        shutil.rmtree(certs, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def until(what, fn, timeout=60):
    """fn()'s first true value, polled (the API) until timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure(f"not within {timeout} s: {what}")
        time.sleep(0.1)  # polling the API with a deadline


def store_points(d, name="rv", disk="data"):
    """The points of replica name's disk on host d (`cella disk replica
    points --json`). The store has one owner at a time (its .lock): while
    cellad makes a point of a set that arrives, the CLI is refused, and asks
    again."""
    path = os.path.join(d.state, "replicas", name, f"disk-{disk}")
    deadline = time.monotonic() + 30
    while True:
        p = subprocess.run([d.args["cella"], "disk", "replica", "points", "--json", path],
                           capture_output=True, text=True)
        if not p.returncode:
            return json.loads(p.stdout)
        if "in use by another process" not in p.stderr or time.monotonic() > deadline:
            raise TestFailure(f"cella disk replica points {path}: {p.stderr}")
        time.sleep(0.05)  # the other owner's point being made, not a synchronisation
