"""wrtstamp.py: the host's reader of guest/tests/blkwriter.c's stamps (each
4 KiB unit: magic "CELLWRT", write number n, unit, seed, guest time t in
ns since the writer's start, write size; pseudo-random words; a zero word
and a crc32 of the first 4092 bytes). Used by it-blkwriter and
bench/replica.py (the newest write a recovery point holds)."""
import json
import struct
import subprocess
import zlib

UNIT = 4096
MAGIC = 0x5452574C4C4543
_HEAD = struct.Struct("<QQQQQQ")


def scan_raw(data, seed, bs):
    """Checks every unit of a raw image's bytes: zeroes or a whole stamp of
    this seed and write size at its own place. Returns (stamped, bad,
    newest n, its t); bad counts torn or foreign units."""
    stamped = bad = newest = newest_t = 0
    for off in range(0, len(data) - UNIT + 1, UNIT):
        b = data[off:off + UNIT]
        magic, n, unit, s, t, wbs = _HEAD.unpack_from(b)
        if not magic and not n and not unit:
            continue
        (crc,) = struct.unpack_from("<I", b, UNIT - 4)
        if (magic != MAGIC or unit != off // UNIT or s != seed or wbs != bs
                or crc != zlib.crc32(b[:UNIT - 4])):
            bad += 1
            continue
        stamped += 1
        if n > newest:
            newest, newest_t = n, t
    return stamped, bad, newest, newest_t


def scan_image(img, tmpfile, seed, bs, span, backing=True):
    """scan_raw over the first span bytes of an image of any format
    (qemu-img convert -U: the image may be open elsewhere). backing=False:
    a qcow2 layer alone (what its backing chain holds reads as zeroes)."""
    if not backing:
        img = "json:" + json.dumps({"driver": "qcow2", "backing": None,
                                    "file": {"driver": "file", "filename": img}})
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", img, tmpfile], check=True)
    with open(tmpfile, "rb") as f:
        data = f.read(span)
    return scan_raw(data, seed, bs)
