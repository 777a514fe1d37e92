"""blkutil.py: helpers shared by the virtio-blk storage tests: the worker's
control socket, the guest's sector pattern (guest/tests/blk.c), and running
cella-vm with its log merged into the console stream (so tests can wait for
log lines the same way as for guest output)."""
import os
import socket
import struct
import zlib

import harness

SECTOR = 512
MERGE_STDERR = ("sh", "-c", 'exec "$0" "$@" 2>&1')


def control(path, req, timeout=30):
    """One JSON-lines request on the worker's control socket."""
    return harness.control(path, req, timeout=timeout)


def wait_socket(path, guest, timeout=30):
    """Waits for the control socket to accept (the worker logs nothing)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if guest.proc.poll() is not None:
            raise harness.TestFailure("cella-vm exited before its control socket opened")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                return
        except OSError:
            # Not listening yet: the socket is bound before the vCPUs run,
            # so this is the short window of process start-up.
            time.sleep(0.02)
    raise harness.TestFailure(f"control socket {path} never opened")


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & (2**64 - 1)
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return state, z ^ (z >> 31)


def check_sectors(data, seed, first_sector=0, full_every=257):
    """Counts sectors of data that do not hold the blk.c pattern: header
    words and checksum for every sector, full regeneration for a sample."""
    bad = 0
    for i in range(len(data) // SECTOR):
        s = first_sector + i
        sec = data[i * SECTOR:(i + 1) * SECTOR]
        w0, w1 = struct.unpack_from("<QQ", sec)
        c, magic = struct.unpack_from("<II", sec, 504)
        if w0 != s or w1 != seed or magic != 0x6C6C6563 or c != zlib.crc32(sec[:504]):
            bad += 1
        elif i % full_every == 0:
            st = seed ^ ((s * 0xD1B54A32D192ED03) & (2**64 - 1))
            words = [s, seed]
            for _ in range(61):
                st, v = splitmix64(st)
                words.append(v)
            if sec[:504] != struct.pack("<63Q", *words):
                bad += 1
    return bad


def image_bytes(path, length, fmt="raw", tmpdir=None):
    """The first `length` guest-visible bytes of an image (qcow2 through
    qemu-img convert)."""
    if fmt == "raw":
        with open(path, "rb") as f:
            return f.read(length)
    import subprocess
    out = os.path.join(tmpdir, "converted.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", path, out], check=True)
    with open(out, "rb") as f:
        data = f.read(length)
    os.unlink(out)
    return data
