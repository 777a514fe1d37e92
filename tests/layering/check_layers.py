#!/usr/bin/env python3
"""check_layers.py: the tree's layering (docs/architecture.md), checked on
the sources' #include lines, so that a change that breaks it fails the suite.

- daemon/api/ (HTTP) reaches the core through core/sup.h (and the plain
  data headers: cerr.h, role.h, vmdef.h) only: no core internals, no
  store, no worker, no feature.
- daemon/store/ knows no core internals, worker or feature.
- daemon/core/ knows no feature (features hand it job kinds and hooks).
- daemon/worker/ knows no feature and no API.
- nothing in daemon/ but api/ and main.c includes libmicrohttpd; no SQL
  (sqlite3.h) outside store/.
- the etcd client (store/etcd.h) and the etcd store's records belong to
  store/ (and to the pool layer, daemon/pool/): the core, workers, features
  and the API reach etcd through store.h only.
- the pool layer (daemon/pool/) knows no core internals, worker or API; no
  one but main.c includes it (the core reaches it through sup_conf.pool).
- vmm/core/ (the VM core) includes no concrete device (vmm/hw/, vmm/virtio/
  device folders); vmm/ includes nothing of daemon/ or cli/.
- the switch layer (daemon/net/: bridges, taps, port policies) uses core's
  cerr.h and the libraries only: no core internals, store, worker,
  feature, pool layer or API; no HTTP, no SQL (the core keeps switches in
  the store and calls it).
- conf/ and disk/ include nothing of vmm/, daemon/ or cli/."""

import os
import re
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
INC = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def includes(folder):
    out = []
    for root, _, files in os.walk(os.path.join(TOP, folder)):
        for f in files:
            if f.endswith((".c", ".h")):
                p = os.path.join(root, f)
                for inc in INC.findall(open(p, errors="replace").read()):
                    out.append((os.path.relpath(p, TOP), inc))
    return out


def base(h):
    return os.path.basename(h)


CORE_INTERNAL = {"sup_priv.h", "job.h", "lifecycle.h", "storage.h", "vmdef_priv.h"}
STORE = {"store.h"}
WORKER = {"wctl.h", "cgroup.h"}
FEATURES = {"peer.h", "feature_jobs.h"}
API = {"api.h", "api_priv.h"}
ETCD = {"etcd.h", "etcd_priv.h", "etcd_records.h", "etcd_store_priv.h"}
POOL = {"pool.h", "pool_priv.h", "ca.h", "join_parse.h"}
NET_OK_CORE = {"cerr.h"}
CORE_ALL = CORE_INTERNAL | {"sup.h", "vmdef.h", "role.h", "auth.h", "ksm.h", "lifecycle.h"}

RULES = [
    ("daemon/api", CORE_INTERNAL | STORE | WORKER | FEATURES | POOL,
     "the API reaches the core through sup.h only"),
    ("daemon/store", CORE_INTERNAL | WORKER | FEATURES | API | POOL,
     "the store knows no core internals"),
    ("daemon/core", FEATURES | API | POOL, "the core knows no feature, pool layer or API"),
    ("daemon/worker", FEATURES | API | POOL, "worker/ knows no feature, pool layer or API"),
    ("daemon/features", API | POOL, "features know no API and no pool layer"),
    ("daemon/pool", CORE_INTERNAL | WORKER | API, "the pool layer knows no core internals, "
     "worker or API"),
    ("daemon/net", (CORE_ALL - NET_OK_CORE) | STORE | WORKER | FEATURES | API | POOL | ETCD,
     "the switch layer uses cerr.h and libraries only"),
]


def main():
    bad = []
    for folder, banned, why in RULES:
        for path, inc in includes(folder):
            if base(inc) in banned:
                bad.append(f"{path}: includes {inc} ({why})")
    for path, inc in includes("daemon"):
        if base(inc) == "microhttpd.h" and not (path.startswith("daemon/api/") or
                                                path == "daemon/main.c"):
            bad.append(f"{path}: includes {inc} (only api/ knows HTTP)")
        if base(inc) == "sqlite3.h" and not path.startswith("daemon/store/"):
            bad.append(f"{path}: includes {inc} (only store/ knows SQL)")
        if base(inc) in ETCD and not path.startswith(("daemon/store/", "daemon/pool/")):
            bad.append(f"{path}: includes {inc} (only store/ and pool/ know etcd)")
    device_dirs = [d for d in ("hw/uart", "hw/i8042", "hw/platform", "virtio/blk", "virtio/net",
                               "virtio/rng", "virtio/console")]
    for path, inc in includes("vmm/core"):
        if any(inc.startswith(d + "/") or inc.startswith("vmm/" + d + "/") for d in device_dirs):
            bad.append(f"{path}: includes {inc} (the VM core knows no concrete device)")
    for folder in ("vmm", "conf", "disk"):
        for path, inc in includes(folder):
            if inc.startswith(("daemon/", "cli/")) or (folder != "vmm" and inc.startswith("vmm/")):
                bad.append(f"{path}: includes {inc} ({folder}/ is below that)")
    for b in bad:
        print("FAIL:", b)
    n = sum(len(includes(f)) for f in ("daemon", "vmm", "conf", "disk"))
    print(f"{n} #include lines checked; {len(bad)} break the layering")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
