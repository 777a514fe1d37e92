#!/usr/bin/env python3
"""density.py: how many 64 MiB VMs this host runs at once under cellad, each
having touched 32 MiB, and what each costs the host beyond its guest pages.

Every VM runs guest/tests/memidle.c: it writes --touch-mib MiB (the same
content in every VM: a farm of identical guests), then halts (no CPU). A
mode says what happens to those pages:

  plain         they stay: each VM holds --touch-mib MiB of guest pages
  report        "balloon": true, and the guest reports the pages free
                (virtio-balloon free page reporting): the host drops them
  merge         memory.merge (KSM): identical pages of all VMs are merged
  report+merge  both

VMs are defined, then started through cellad's API (--parallel at a time)
until --max run, a start fails, or MemAvailable falls under --floor-mib:
the bench stops there and says why. Then, all VMs idle, it measures:

- MemAvailable's drop over the run, per VM; the guest pages each worker
  holds (RssShmem: the guest RAM memfd; merge mode: guest RAM is private
  anonymous memory, counted from the KSM counters instead);
- the host cost per VM beyond its guest pages, two ways: top-down, the
  MemAvailable drop minus the guest pages, per VM; bottom-up, the sum of
  what /proc shows: the worker's own private memory (RssAnon, Private_*
  of its file mappings: heap, stacks, relocated library pages), its share
  of the libraries (Pss_File), its page tables (VmPTE), and the kernel's
  per-VM memory from /proc/meminfo deltas (KernelStack, Slab unreclaimable,
  SecPageTables: KVM's own page tables, Percpu) per VM;
- cellad's RSS and CPU at idle, the workers' CPU at idle, the time
  `cella vm list` and GET /v1/vms take, the time starting them all took,
  and (--restart) how long a restarted cellad takes to re-adopt them all.

Safety (a shared host): it refuses --max above 200 unless MemAvailable is
at least --big-run-gib GiB at the start; every VM and cellad are stopped
at the end, on Ctrl-C, SIGTERM and on errors (leftover workers are killed
by pid). KSM's settings are put back.

Usage: bench/density.py [--build DIR] [--max N] [--mode MODE[,MODE...]]
         [--touch-mib M] [--memory-mib M] [--floor-mib F] [--parallel P]
         [--idle S] [--restart] [--json FILE]
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "daemon"))
from cellad import Daemon  # noqa: E402

KSM = "/sys/kernel/mm/ksm/"
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])  # KiB (HugePages_* are counts)
    return out


def proc_fields(pid, name):
    out = {}
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                k, _, v = line.partition(":")
                w = v.split()
                if w and w[0].isdigit():
                    out[k.strip()] = int(w[0])
    except OSError:
        pass
    return out


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rd(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def wr(path, value):
    try:
        with open(path, "w") as f:
            f.write(str(value))
        return True
    except OSError:
        return False


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def kill_leftovers(pids, cgroup_parent):
    """Workers outlive cellad by design: end any the API did not, by the
    pids the starts returned and by the tasks of the VMs' cgroups (a worker
    caught mid-start by Ctrl-C has no pid in the API's answers yet)."""
    pids = set(pids)
    for ctl in ("memory", "cpu", "pids", "unified"):
        base = f"/sys/fs/cgroup/{ctl}/{cgroup_parent}"
        for sub in os.listdir(base) if os.path.isdir(base) else []:
            for name in ("tasks", "cgroup.procs"):
                for line in rd(os.path.join(base, sub, name)).split():
                    pids.add(int(line))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_cgroups(parent, timeout=30):
    """Removes the VMs' cgroups and their parent once the killed workers
    have left them (rmdir fails while a task is still in one)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for ctl in ("cpu", "memory", "pids", "unified"):
            base = f"/sys/fs/cgroup/{ctl}/{parent}"
            if not os.path.isdir(base):
                continue
            for sub in os.listdir(base):
                if os.path.isdir(os.path.join(base, sub)):
                    try:
                        os.rmdir(os.path.join(base, sub))
                    except OSError:
                        left.append(os.path.join(base, sub))
            try:
                os.rmdir(base)
            except OSError:
                left.append(base)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)  # polling for the killed workers to leave, with a deadline


def wait_all_idle(d, names, timeout, failed):
    """Polls each VM's console history (no follow) until memidle says it is
    idle; returns the names that did not within the deadline. Guests that
    failed go into failed (name: their FAIL line)."""
    pending = list(names)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for n in pending:
            body = d.console(n, history=4096, follow=False)
            if "FAIL" in body:
                failed[n] = body[body.index("FAIL"):][:200].strip()
            elif "memidle: idle" not in body:
                still.append(n)
        pending = still
        if pending:
            time.sleep(0.5)  # polling with a deadline
    return pending


def cgroup_average(d, running):
    """Each VM's memory cgroup (cgroup v1 memory, or v2) charges what its
    worker uses: user pages and the kernel memory allocated for it (page
    tables, kernel stacks, KVM's vCPU and MMU structures, its sockets,
    io_uring rings): a per-VM figure that other processes on a shared host
    do not disturb. Averages over the running VMs, in KiB."""
    tot, n = {}, 0
    for v in running:
        for base in (f"/sys/fs/cgroup/memory/{d.cgroup_parent}/{v['uuid']}/",
                     f"/sys/fs/cgroup/unified/{d.cgroup_parent}/{v['uuid']}/",
                     f"/sys/fs/cgroup/{d.cgroup_parent}/{v['uuid']}/"):
            usage = rd(base + "memory.usage_in_bytes") or rd(base + "memory.current")
            if not usage:
                continue
            stat = dict(line.split() for line in rd(base + "memory.stat").splitlines()
                        if len(line.split()) == 2)
            kmem = rd(base + "memory.kmem.usage_in_bytes") or stat.get("kernel", "0")
            vals = {"usage": int(usage), "kernel": int(kmem),
                    "shmem": int(stat.get("shmem", 0)),
                    "anon": int(stat.get("rss", stat.get("anon", 0)))}
            for k, x in vals.items():
                tot[k] = tot.get(k, 0) + x / 1024
            n += 1
            break
    return {k: x / n for k, x in tot.items()} if n else {}


def anon_by_mapping(pid, top=5):
    """A worker's private anonymous KiB by mapping (relocated library pages
    count as the library's), largest first."""
    out, cur = {}, None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                w = line.split()
                if w and not w[0].endswith(":") or (w and "-" in w[0] and ":" not in w[0]):
                    cur = os.path.basename(w[5]) if len(w) > 5 else "[anon]"
                elif w and w[0] == "Anonymous:":
                    out[cur] = out.get(cur, 0) + int(w[1])
    except OSError:
        pass
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:top])


def guest_anon_kib(pid, memory_mib):
    """Anonymous KiB of a worker's guest RAM mapping (merge mode: private
    anonymous memory of exactly the VM's size)."""
    kib, cur = 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                w = line.split()
                if w and w[0] == "Size:":
                    cur = int(w[1]) == memory_mib * 1024
                elif w and w[0] == "Anonymous:" and cur:
                    kib += int(w[1])
    except OSError:
        pass
    return kib


def ksm_counters():
    return {k: int(rd(KSM + k, "0") or 0) for k in
            ("run", "pages_shared", "pages_sharing", "pages_unshared", "full_scans")}


def run_mode(a, args, mode):
    report = "report" in mode
    merge = "merge" in mode
    res = {"mode": mode, "touch_mib": a.touch_mib, "memory_mib": a.memory_mib}
    # Admission counts memory_mib + memory_overhead_mib (64) per VM against
    # the host's memory: 500 VMs of 64 MiB need an overcommit ratio past 2.7.
    cfg = {"test_probe": False, "memory_overcommit": 8.0}
    ksm_saved = None
    if merge:
        ksm_saved = {k: rd(KSM + k) for k in ("run", "pages_to_scan", "sleep_millisecs")}
        wr(KSM + "pages_to_scan", a.ksm_pages)
        wr(KSM + "sleep_millisecs", a.ksm_sleep_ms)
    pids = []
    d = Daemon(args, config=cfg)
    try:
        d.start()
        time.sleep(1)  # let cellad settle before the baseline (a measurement, not a wait)
        m0 = meminfo()
        cellad_rss0 = proc_fields(d.proc.pid, "status").get("VmRSS", 0)
        names = [f"d{i}" for i in range(a.max)]
        t0 = time.monotonic()
        for n in names:
            body = {"memory_mib": a.memory_mib, "cpu_max": a.cpu_max}
            if report:
                body["balloon"] = True
            if merge:
                body["memory"] = {"merge": True}
            d.define(n, "memidle", f"mib={a.touch_mib} report={int(report)}", **body)
        res["define_s"] = time.monotonic() - t0

        started, lat, stop_reason = [], [], f"--max {a.max} reached"

        def start_one(n):
            t = time.monotonic()
            r = d.post(f"/v1/vms/{n}/start", timeout=120)
            return n, r, (time.monotonic() - t) * 1000

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.parallel) as ex:
            i = 0
            while i < len(names):
                avail = meminfo()["MemAvailable"] // 1024
                # Room for the batch about to start, at what a VM may take.
                if avail < a.floor_mib + a.parallel * (a.touch_mib + 8):
                    stop_reason = (f"MemAvailable {avail} MiB is near the "
                                   f"{a.floor_mib} MiB floor")
                    break
                batch = names[i:i + a.parallel]
                i += len(batch)
                failed = None
                for n, r, ms in ex.map(start_one, batch):
                    if r.status == 200:
                        started.append(n)
                        lat.append(ms)
                        pids.append(r.json["pid"])
                    elif not failed:
                        failed = f"start of {n} failed: {r.status} {r.body[:300]}"
                if failed:
                    stop_reason = failed
                    break
        res["start_all_s"] = time.monotonic() - t0
        res["started"] = len(started)
        res["stop_reason"] = stop_reason
        lat.sort()
        res["start_ms_median"] = lat[len(lat) // 2] if lat else None
        res["start_ms_p95"] = lat[int(len(lat) * 0.95)] if lat else None
        res["start_ms_max"] = lat[-1] if lat else None
        failed = {}
        late = wait_all_idle(d, started, a.idle_timeout, failed)
        res["all_idle_s"] = time.monotonic() - t0
        res["not_idle"] = late
        res["guest_failed"] = failed
        if merge:
            # KSM needs time to scan: wait until a full scan finished after
            # the last VM went idle (bounded by --ksm-wait).
            scans0 = ksm_counters()["full_scans"]
            deadline = time.monotonic() + a.ksm_wait
            while ksm_counters()["full_scans"] < scans0 + 2 and time.monotonic() < deadline:
                time.sleep(1)  # polling KSM's scan counter with a deadline
            res["ksm"] = ksm_counters()
        vms = d.get("/v1/vms").json["vms"]
        running = [v for v in vms if v["state"] == "running"]
        res["running"] = len(running)
        # Idle window: no API calls; CPU of cellad and of all workers.
        wpids = [v["pid"] for v in running if v.get("pid")]
        c0 = proc_cpu_s(d.proc.pid)
        w0 = sum(proc_cpu_s(p) for p in wpids)
        time.sleep(a.idle)  # measuring idle CPU over a fixed window
        c1 = proc_cpu_s(d.proc.pid)
        w1 = sum(proc_cpu_s(p) for p in wpids)
        m1 = meminfo()
        n = max(1, len(running))
        res["cellad_cpu_pct"] = 100 * (c1 - c0) / a.idle
        res["workers_cpu_pct"] = 100 * (w1 - w0) / a.idle
        st = proc_fields(d.proc.pid, "status")
        res["cellad_rss_mib"] = st.get("VmRSS", 0) / 1024
        res["cellad_rss0_mib"] = cellad_rss0 / 1024
        res["cellad_threads"] = st.get("Threads", 0)
        res["cellad_fds"] = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        # Worker figures, averaged over every running worker.
        tot = {}
        for p in wpids:
            s = proc_fields(p, "status")
            r = proc_fields(p, "smaps_rollup")
            for k, v in (("RssAnon", s.get("RssAnon", 0)), ("RssShmem", s.get("RssShmem", 0)),
                         ("RssFile", s.get("RssFile", 0)), ("VmPTE", s.get("VmPTE", 0)),
                         ("Threads", s.get("Threads", 0)), ("Pss_File", r.get("Pss_File", 0)),
                         ("Private_Clean", r.get("Private_Clean", 0)),
                         ("Private_Dirty", r.get("Private_Dirty", 0))):
                tot[k] = tot.get(k, 0) + v
            tot["fds"] = tot.get("fds", 0) + len(os.listdir(f"/proc/{p}/fd"))
        wk = {k: v / max(1, len(wpids)) for k, v in tot.items()}
        res["worker_avg_kib"] = wk
        res["cgroup_avg_kib"] = cgroup_average(d, running)
        if wpids:
            res["anon_by_mapping_kib"] = anon_by_mapping(wpids[0])
        delta = {k: (m1.get(k, 0) - m0.get(k, 0)) / n for k in
                 ("MemAvailable", "MemFree", "Shmem", "AnonPages", "KernelStack", "PageTables",
                  "SecPageTables", "SUnreclaim", "SReclaimable", "Percpu")}
        res["meminfo_delta_per_vm_kib"] = delta
        drop = -delta["MemAvailable"]
        if merge:
            # Guest RAM is private anonymous memory (RssAnon includes it):
            # what the guests hold is what KSM did not merge away.
            k = res["ksm"]
            sample = wpids[:50]
            ram = sum(guest_anon_kib(p, a.memory_mib) for p in sample) / max(1, len(sample))
            res["guest_unmerged_kib_per_vm"] = ram
            guest = ram - k["pages_sharing"] * PAGE_KIB / n
            worker_own = max(0.0, wk["RssAnon"] - ram)
            res["worker_own_anon_kib"] = worker_own
        else:
            guest = wk["RssShmem"]
            worker_own = wk["RssAnon"]
        res["guest_kib_per_vm"] = guest
        cg = res["cgroup_avg_kib"]
        if cg and not merge:
            res["host_cost_cgroup_kib"] = cg["usage"] - cg["shmem"]
        res["host_cost_topdown_kib"] = drop - guest
        kern = (delta["KernelStack"] + delta["SUnreclaim"] + delta["SecPageTables"] +
                delta["Percpu"])
        res["kernel_per_vm_kib"] = kern
        res["host_cost_bottomup_kib"] = worker_own + wk["Pss_File"] + wk["VmPTE"] + kern
        res["memavailable_drop_per_vm_kib"] = drop
        fits = (m0["MemAvailable"] / 1024 - a.floor_mib) / (drop / 1024) if drop > 0 else 0
        res["fit_estimate"] = int(fits)
        # The API and the CLI at this count.
        t = time.monotonic()
        d.get("/v1/vms")
        res["api_list_ms"] = (time.monotonic() - t) * 1000
        t = time.monotonic()
        p = subprocess.run([args["cella"], "--socket", d.sock, "vm", "list"],
                           capture_output=True, text=True, timeout=120)
        res["cli_list_ms"] = (time.monotonic() - t) * 1000
        res["cli_list_lines"] = len(p.stdout.splitlines())
        if a.restart:
            d.stop()
            t = time.monotonic()
            d.start()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                vs = d.get("/v1/vms").json["vms"]
                if sum(1 for v in vs if v["state"] == "running") >= len(running):
                    break
                time.sleep(0.2)  # polling the API with a deadline
            res["restart_adopt_s"] = time.monotonic() - t
            res["restart_running"] = sum(1 for v in vs if v["state"] == "running")
        return res
    finally:
        t = time.monotonic()
        try:
            if d.proc and d.proc.poll() is None:
                for v in d.get("/v1/vms", timeout=120).json["vms"]:
                    if v["state"] in ("running", "paused", "stopping", "starting"):
                        d.post(f"/v1/vms/{v['name']}/kill", timeout=60)
        except Exception as e:  # best effort: leftovers are killed by pid below
            print(f"cleanup: {e}", file=sys.stderr)
        res["stop_all_s"] = time.monotonic() - t
        d.stop()
        kill_leftovers(pids, d.cgroup_parent)
        shutil.rmtree(d.dir, ignore_errors=True)
        remove_cgroups(d.cgroup_parent)
        if ksm_saved:
            for k in ("pages_to_scan", "sleep_millisecs", "run"):
                if ksm_saved.get(k):
                    wr(KSM + k, ksm_saved[k])


def table(results, host):
    print(f"\n## VM density under cellad ({host})\n")
    cols = [r["mode"] for r in results]
    print("| figure | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))

    def row(label, fn):
        cells = []
        for r in results:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        print(f"| {label} | " + " | ".join(cells) + " |")

    row("VMs running at once", lambda r: f"{r['running']}")
    row("stopped because", lambda r: r["stop_reason"])
    row("define all (API, SQLite)", lambda r: f"{r['define_s']:.1f} s")
    row("start all (API, wall)", lambda r: f"{r['start_all_s']:.1f} s")
    row("start latency median / p95", lambda r: f"{r['start_ms_median']:.0f} / "
        f"{r['start_ms_p95']:.0f} ms")
    row("guests that failed", lambda r: f"{len(r['guest_failed'])}" + (
        f" ({next(iter(r['guest_failed'].values()))})" if r["guest_failed"] else ""))
    row("until all idle", lambda r: f"{r['all_idle_s']:.1f} s")
    row("MemAvailable drop per VM", lambda r: f"{r['memavailable_drop_per_vm_kib'] / 1024:.2f} MiB")
    row("guest pages per VM", lambda r: f"{r['guest_kib_per_vm'] / 1024:.2f} MiB")
    row("**host cost per VM beyond guest pages** (its cgroup: usage - guest RAM)",
        lambda r: f"**{r['host_cost_cgroup_kib'] / 1024:.2f} MiB**")
    row("... of which kernel memory charged to it (kmem)",
        lambda r: f"{r['cgroup_avg_kib']['kernel'] / 1024:.2f} MiB")
    row("host cost per VM, top-down (MemAvailable drop - guest pages)",
        lambda r: f"{r['host_cost_topdown_kib'] / 1024:.2f} MiB")
    row("... bottom-up (worker own + libs + PTE + kernel)",
        lambda r: f"{r['host_cost_bottomup_kib'] / 1024:.2f} MiB")
    row("worker RssAnon (own: heap, stacks, relocations)",
        lambda r: f"{r['worker_avg_kib']['RssAnon'] / 1024:.2f} MiB")
    row("... largest (one worker)", lambda r: ", ".join(
        f"{k} {v / 1024:.2f}" for k, v in r["anon_by_mapping_kib"].items()) + " MiB")
    row("worker Pss_File (its share of binaries)",
        lambda r: f"{r['worker_avg_kib']['Pss_File'] / 1024:.2f} MiB")
    row("worker page tables (VmPTE)", lambda r: f"{r['worker_avg_kib']['VmPTE']:.0f} KiB")
    row("kernel per VM (KernelStack+SUnreclaim+SecPageTables+Percpu)",
        lambda r: f"{r['kernel_per_vm_kib']:.0f} KiB")
    row("... of which SUnreclaim / SecPageTables",
        lambda r: f"{r['meminfo_delta_per_vm_kib']['SUnreclaim']:.0f} / "
        f"{r['meminfo_delta_per_vm_kib']['SecPageTables']:.0f} KiB")
    row("worker threads / fds", lambda r: f"{r['worker_avg_kib']['Threads']:.0f} / "
        f"{r['worker_avg_kib']['fds']:.0f}")
    row("KSM pages_sharing (host) / guest RAM per VM before merging",
        lambda r: f"{r['ksm']['pages_sharing']} / {r['guest_unmerged_kib_per_vm'] / 1024:.2f} MiB")
    row("cellad RSS: no VMs / all", lambda r: f"{r['cellad_rss0_mib']:.1f} / "
        f"{r['cellad_rss_mib']:.1f} MiB")
    row("cellad CPU at idle", lambda r: f"{r['cellad_cpu_pct']:.2f} % of a CPU")
    row("cellad threads / fds", lambda r: f"{r['cellad_threads']} / {r['cellad_fds']}")
    row("all workers' CPU at idle", lambda r: f"{r['workers_cpu_pct']:.2f} % of a CPU")
    row("GET /v1/vms / `cella vm list`", lambda r: f"{r['api_list_ms']:.0f} / "
        f"{r['cli_list_ms']:.0f} ms")
    row("cellad restart until all re-adopted", lambda r: f"{r['restart_adopt_s']:.1f} s")
    row("kill all (API)", lambda r: f"{r['stop_all_s']:.1f} s")
    row("VMs this host's memory allows (MemAvailable - floor)", lambda r: f"~{r['fit_estimate']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("CELLA_BUILD", os.path.join(TOP, "build")))
    ap.add_argument("--max", type=int, default=50)
    ap.add_argument("--mode", default="report",
                    help="comma-separated: plain, report, merge, report+merge")
    ap.add_argument("--touch-mib", type=int, default=32)
    ap.add_argument("--memory-mib", type=int, default=64)
    ap.add_argument("--cpu-max", type=int, default=100)
    ap.add_argument("--floor-mib", type=int, default=3072,
                    help="stop starting VMs when MemAvailable would fall under this")
    ap.add_argument("--big-run-gib", type=int, default=19,
                    help="--max above 200 needs this much MemAvailable at the start")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("--idle-timeout", type=float, default=600)
    ap.add_argument("--ksm-pages", type=int, default=20000)
    ap.add_argument("--ksm-sleep-ms", type=int, default=10)
    ap.add_argument("--ksm-wait", type=float, default=300)
    ap.add_argument("--restart", action="store_true")
    ap.add_argument("--json", help="also write the figures as JSON here")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    avail_gib = meminfo()["MemAvailable"] / (1 << 20)
    if a.max > 200 and avail_gib < a.big_run_gib:
        sys.exit(f"density.py: --max {a.max} needs MemAvailable >= {a.big_run_gib} GiB "
                 f"at the start; this host has {avail_gib:.1f} GiB (start with --max 200)")
    args = {"cellad": os.path.join(a.build, "daemon", "cellad"),
            "cella": os.path.join(a.build, "cli", "cella"),
            "cella_vm": os.path.join(a.build, "cella-vm"),
            "guests": {"memidle": os.path.join(a.build, "guest", "memidle.elf")}}
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    load = rd("/proc/loadavg").split()[:3]
    host = (f"{os.cpu_count()} CPUs, {meminfo()['MemTotal'] >> 20} GiB, load {' '.join(load)} "
            f"at the start, MemAvailable {avail_gib:.1f} GiB")
    results = []
    try:
        for mode in a.mode.split(","):
            if mode not in ("plain", "report", "merge", "report+merge"):
                sys.exit(f"density.py: unknown mode {mode!r}")
            results.append(run_mode(a, args, mode))
    except Interrupted as e:
        print(f"density.py: stopped by {e}; every VM and cellad were stopped", file=sys.stderr)
    table(results, host)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"host": host, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
