#!/usr/bin/env python3
"""run_on_etcd.py: run cellad tests (tests/daemon) on the etcd store
instead of SQLite: starts a one-member etcd cluster (etcdutil.py) and runs
`meson test -C BUILD TEST...` with CELLA_TEST_STORE set, which
tests/daemon/cellad.py turns into each cellad's `store` section (a prefix
and host name per state directory).

    python3 tests/pool/run_on_etcd.py build daemon-lifecycle daemon-checkpoint

Tests that read cellad.db directly (daemon-adopt) or run cellads in network
namespaces (the moves of daemon-move and daemon-jobs: they cannot reach
etcd on the host's loopback) do not apply."""

import json
import os
import subprocess
import sys

import etcdutil


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    build, tests = sys.argv[1], sys.argv[2:]
    etcdutil.need_etcd()
    with etcdutil.Cluster(1) as c:
        env = dict(os.environ, CELLA_TEST_STORE=json.dumps({"etcd": c.store_config()}))
        r = subprocess.run(["meson", "test", "-C", build, "--print-errorlogs", *tests], env=env)
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
