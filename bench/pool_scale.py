#!/usr/bin/env python3
"""pool_scale.py: a pool of many hosts on this machine (issue 13's scale
test): N cellads, each in its own network namespace on one bridge, and an
etcd cluster of E members on the bridge's address (mutual TLS; its CA is
the pool's), made with `cella pool create`, one `cella pool token` per host
and `cella pool join` (J at a time). Then:

1. join: the time from create until every host's `pool status` shows all N
   hosts up;
2. VMs: V HA ticker guests (guest/tests/ticker.c: 16 MiB, prints every
   period, sleeps on the LAPIC timer between) defined and started on each
   host through its own socket (placement of new VMs is not in this tree),
   until each has printed; etcd's request counters (grpc_server_started_total
   summed over the members, lease keepalives left out) before and after the
   definitions and the starts: etcd requests per VM defined and per VM
   started;
3. `cella --json vm list` (the pool-wide list) on L hosts, R times each:
   p50, p99 and max latency, and the check that every host lists every VM
   exactly once;
4. cellad's RSS over the hosts (min, median, max);
5. K hosts killed at once (kill -9 of their cellads, then of their workers,
   t0 just before): for each of their HA VMs the time from t0 to its first
   guest output on the host that took it over (cellad's CLOCK_MONOTONIC
   stamp of the first console byte, `first_output_monotonic_ns`, as
   bench/ha.py); p50, p99, max; that each runs on exactly one live host,
   and how many hosts took them.

Lease settings: TTL S (`cella pool create --lease-ttl S`; several TTLs:
one pool and one run each); the others
derived by cellad (renew S/5, kill 3S/10, margin S/10 below 5 s; fence at
the latest safe time; ha_backoff_ms 2000). Prints a table, or JSON with
--json. Needs root and etcd.

Usage: bench/pool_scale.py [--build DIR] [--hosts N] [--vms-per-host V] [--kill K]
                           [--etcd E] [--ttl S ...] [--join-width J] [--list-hosts L]
                           [--list-rounds R] [--period-ms P] [--width W] [--json]
                           [--logs DIR] [--etcd-nice N]
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
sys.path.insert(0, os.path.join(TOP, "tests", "pool"))
import poolutil  # noqa: E402
from poolutil import counter_delta, summary  # noqa: E402


def say(quiet, msg):
    if not quiet:
        print(f"[pool-scale] {msg}", flush=True)


def run(o, args, ttl):
    res = {"hosts": o.hosts, "vms_per_host": o.vms_per_host, "kill": o.kill,
           "etcd_members": o.etcd, "lease_ttl_s": ttl, "period_ms": o.period_ms,
           "etcd_nice": o.etcd_nice, "etcd_rt": o.etcd_rt, "width": o.width, "loadavg_before": os.getloadavg()}
    q = o.json
    wall0 = time.monotonic()
    logs = os.path.join(o.logs, f"ttl{ttl}") if o.logs else None
    with poolutil.ScalePool(args, o.hosts, etcd_members=o.etcd, ttl=ttl, tag="cs",
                            width=o.width, keep_logs=logs, etcd_nice=o.etcd_nice,
                            etcd_rt=o.etcd_rt) as pool:
        t = time.monotonic()
        pool.up()
        res["processes_up_s"] = time.monotonic() - t
        say(q, f"{o.hosts} cellads and {o.etcd} etcd members up in {res['processes_up_s']:.1f} s")
        res["join"] = pool.form(join_width=o.join_width)
        say(q, f"pool formed: {res['join']}")
        # cellad's own account of the lease settings it derived.
        line = [x for x in pool.first.log().splitlines() if "renewed every" in x]
        res["lease_settings"] = re.sub(r"^lease \d+, ", "", line[-1].split("(", 1)[-1]
                                       .rstrip(")")) if line else "?"
        say(q, f"lease: {res['lease_settings']}")

        c0 = pool.etcd_counters()
        placed, res["define_s"] = pool.define_vms(o.vms_per_host, period_ms=o.period_ms)
        c1 = pool.etcd_counters()
        t = time.monotonic()
        res["start_s"] = pool.start_vms(placed)
        c2 = pool.etcd_counters()
        pool.wait_output(placed, timeout=300)
        res["vms"] = len(placed)
        res["vms_running_s"] = time.monotonic() - t
        say(q, f"{len(placed)} VMs defined in {res['define_s']:.1f} s, started in "
            f"{res['start_s']:.1f} s, all printing {res['vms_running_s']:.1f} s after the "
            f"first start")
        d1, n1 = counter_delta(c0, c1)
        d2, n2 = counter_delta(c1, c2)
        res["etcd_requests_define"] = d1
        res["etcd_requests_start"] = d2
        res["etcd_requests_per_define"] = n1 / max(1, len(placed))
        res["etcd_requests_per_start"] = n2 / max(1, len(placed))
        say(q, f"etcd requests per VM defined {res['etcd_requests_per_define']:.1f} {d1}, "
            f"per VM started {res['etcd_requests_per_start']:.1f} {d2}")

        pool.wait_owner_leases(list(placed), timeout=60)
        # Pool-wide list: latency, and every host lists every VM once.
        listers = pool.live()[:: max(1, len(pool.live()) // o.list_hosts)][:o.list_hosts]
        lat, agree = [], True
        for _ in range(o.list_rounds):
            for h in listers:
                view, took = h.pool_list()
                lat.append(took * 1000)
                agree &= sorted(view) == sorted(placed) and \
                    all(view[n] == [placed[n]] for n in placed)
        res["vm_list_ms"] = summary(lat)
        res["vm_list_agree"] = agree
        say(q, f"vm list on {len(listers)} hosts x {o.list_rounds}: {res['vm_list_ms']}, "
            f"every host lists every VM once on its host: {agree}")
        rss = [v for v in pool.cellad_rss_kib().values() if v]
        res["cellad_rss_mib"] = {"min": min(rss) / 1024, "median": statistics.median(rss) / 1024,
                                 "max": max(rss) / 1024}
        res["etcd_rss_mib"] = [poolutil.rss_kib(m.proc.pid) / 1024
                               for m in pool.cluster.members]
        res["memory"] = meminfo()
        say(q, f"cellad RSS (MiB): {res['cellad_rss_mib']}; etcd members' RSS (MiB) "
            f"{res['etcd_rss_mib']}; host memory {res['memory']}")

        # Kill K hosts at once (spread over the pool, never the first).
        step = max(1, (o.hosts - 1) // max(1, o.kill))
        victims = [pool.names[1 + i * step] for i in range(o.kill)]
        theirs = sorted(n for n, h in placed.items() if h in victims)
        c3 = pool.etcd_counters()
        t0 = pool.kill_hosts(victims)
        say(q, f"killed {victims} ({len(theirs)} HA VMs) at monotonic {t0:.3f}")
        got = pool.wait_failover(theirs, t0, timeout=180)
        took = [s * 1000 for _, s in got.values()]
        res["killed"] = victims
        res["failover_ms"] = summary(took)
        res["failover_hosts"] = len({h for h, _ in got.values()})
        c4 = pool.etcd_counters()
        d, total = counter_delta(c3, c4)
        res["etcd_requests_failover"] = d
        res["etcd_requests_per_failover"] = total / max(1, len(theirs))
        where = pool.where_running()
        res["failover_once"] = all(len(where.get(n, [])) == 1 for n in theirs)
        res["all_once"] = all(len(where.get(n, [])) == 1 for n in placed)
        say(q, f"failover: {res['failover_ms']} ms, to {res['failover_hosts']} hosts; "
            f"each VM on exactly one live host: {res['all_once']}")
        c5 = pool.etcd_counters()
        # Since the pool was formed (each member counts the first election).
        res["etcd_leader_changes"] = c5.get("leader_changes", 0) - c0.get("leader_changes", 0)
        res["etcd_slow_applies"] = c5.get("slow_applies", 0) - c0.get("slow_applies", 0)
        res["fenced_hosts"] = sorted(h.name for h in pool.live() if "vm-fenced" in h.log())
        res["loadavg"] = os.getloadavg()
    res["wall_s"] = time.monotonic() - wall0
    return res


def meminfo():
    m = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            m[k] = int(v.split()[0])
    return {"total_mib": m["MemTotal"] // 1024,
            "used_mib": (m["MemTotal"] - m["MemAvailable"]) // 1024}


def table(r):
    j = r["join"]
    fo = r["failover_ms"]
    vl = r["vm_list_ms"]
    rows = [
        ("hosts / etcd members (nice or rt)", f"{r['hosts']} / {r['etcd_members']} "
         f"({'rt' if r.get('etcd_rt') else r['etcd_nice']})"),
        ("load average before (1, 5, 15 min)", " ".join(f"{x:.1f}" for x in r["loadavg_before"])),
        ("lease (cellad's log)", r["lease_settings"]),
        ("processes up (netns, etcd, cellads)", f"{r['processes_up_s']:.1f} s"),
        ("pool formed: create / tokens / joins / all up",
         f"{j['create_s']:.1f} / {j['tokens_s']:.1f} / {j['joins_s']:.1f} / "
         f"{j['all_up_s']:.1f} s (total {j['total_s']:.1f} s)"),
        ("VMs: defined / started / all printing",
         f"{r['vms']}: {r['define_s']:.1f} / {r['start_s']:.1f} / {r['vms_running_s']:.1f} s"),
        ("etcd requests per VM defined / started",
         f"{r['etcd_requests_per_define']:.1f} / {r['etcd_requests_per_start']:.1f}"),
        ("pool-wide vm list (CLI) p50 / p99 / max",
         f"{vl['p50']:.0f} / {vl['p99']:.0f} / {vl['max']:.0f} ms (n={vl['n']}); "
         f"all hosts agree: {r['vm_list_agree']}"),
        ("cellad RSS min / median / max",
         f"{r['cellad_rss_mib']['min']:.1f} / {r['cellad_rss_mib']['median']:.1f} / "
         f"{r['cellad_rss_mib']['max']:.1f} MiB"),
        ("etcd members' RSS", " / ".join(f"{x:.0f}" for x in r["etcd_rss_mib"]) + " MiB"),
        (f"{r['kill']} hosts killed: first output elsewhere p50 / p99 / max",
         f"{fo['p50']:.0f} / {fo['p99']:.0f} / {fo['max']:.0f} ms (n={fo['n']}, "
         f"to {r['failover_hosts']} hosts)"),
        ("etcd requests per failed-over VM", f"{r['etcd_requests_per_failover']:.1f}"),
        ("every VM runs exactly once", str(r["all_once"])),
        ("etcd leader changes / slow applies (members' counts, since formed)",
         f"{r['etcd_leader_changes']} / {r['etcd_slow_applies']}"),
        ("live hosts that fenced VMs", ", ".join(r["fenced_hosts"]) or "none"),
        ("load average (1, 5, 15 min) at the end", " ".join(f"{x:.1f}" for x in r["loadavg"])),
        ("wall time", f"{r['wall_s']:.0f} s"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(TOP, "build"))
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--vms-per-host", type=int, default=10)
    ap.add_argument("--kill", type=int, default=8)
    ap.add_argument("--etcd", type=int, default=3)
    ap.add_argument("--ttl", type=int, nargs="+", default=[5],
                    help="lease TTLs in seconds: one pool, one run, each")
    ap.add_argument("--join-width", type=int, default=8)
    ap.add_argument("--list-hosts", type=int, default=8)
    ap.add_argument("--list-rounds", type=int, default=5)
    ap.add_argument("--period-ms", type=int, default=4000,
                    help="the guests' print period (the first line comes at boot)")
    ap.add_argument("--etcd-rt", action="store_true",
                    help="etcd members' threads at real-time round-robin (lowest priority), as "
                    "cellad's lease threads: etcd as if on machines of its own")
    ap.add_argument("--etcd-nice", type=int, default=-10,
                    help="etcd members' nice value: etcd shares two cores with every "
                    "host and guest here, where it would have machines of its own")
    ap.add_argument("--width", type=int, default=4,
                    help="hosts the bench drives at once (joins, definitions, starts)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--logs", help="a directory to keep every cellad's and etcd's log in")
    o = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("pool_scale.py needs root (network namespaces)")
    args = {"cellad": os.path.join(o.build, "daemon", "cellad"),
            "cella": os.path.join(o.build, "cli", "cella"),
            "cella_vm": os.path.join(o.build, "cella-vm"),
            "guests": {"ticker": os.path.join(o.build, "guest", "ticker.elf")}}
    if o.logs:  # cellads' log lines stamped with CLOCK_MONOTONIC, as t0 is
        os.environ["CELLA_LOG_TIME"] = "1"
    runs = []
    out = sys.stdout
    if o.json:  # the helpers' progress lines go to stderr, the JSON alone to stdout
        sys.stdout = sys.stderr
    for ttl in o.ttl:
        # A run that fails (e.g. hosts that fenced themselves under load)
        # is recorded with its error, and the next TTL still runs.
        try:
            runs.append(run(o, args, ttl))
        except Exception as e:  # noqa: BLE001 (recorded, reported, exit 1)
            runs.append({"hosts": o.hosts, "lease_ttl_s": ttl, "error": f"{type(e).__name__}: "
                         f"{str(e)[:500]}", "loadavg": os.getloadavg()})
    sys.stdout = out
    if o.json:
        print(json.dumps(runs if len(runs) > 1 else runs[0], indent=1))
    else:
        for r in runs:
            if "error" in r:
                print(f"{r['hosts']} hosts, TTL {r['lease_ttl_s']} s: FAILED: {r['error']} "
                      f"(load average {' '.join(f'{x:.1f}' for x in r['loadavg'])})")
            else:
                table(r)
            print()
    ok = all("error" not in r and r["all_once"] and r["failover_once"] and r["vm_list_agree"]
             for r in runs)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
