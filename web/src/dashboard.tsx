// dashboard.tsx: the host's capacity and use (GET /v1/host), VMs by state,
// live charts of what the VMs' workers use, recent events. One request per
// tick whatever the number of VMs: GET /v1/host sums the workers' counters
// ("usage"), the charts plot the differences. In a pool, the same tick also
// asks GET /v1/pool for the Pool section (pool.tsx).
import { useEffect, useRef, useState } from "preact/hooks";
import { Host, PoolStatus, fmtBytes, get } from "./api";
import { Chart, Ring } from "./chart";
import { PoolSection, notePool } from "./pool";
import { store } from "./store";
import { Heading, StateBadge, useInterval, useStore } from "./ui";

type Usage = NonNullable<Host["usage"]>;

export function Dashboard() {
  const s = useStore();
  const [host, setHost] = useState<Host | null>(null);
  const [err, setErr] = useState("");
  const [pool, setPool] = useState<PoolStatus | null>(null);
  const [poolErr, setPoolErr] = useState("");
  const pooled = useRef(false);
  const loadPool = async () => {
    try {
      const p = await get<PoolStatus>("/v1/pool");
      setPool(p); setPoolErr(""); notePool(p);
    } catch (e) { setPoolErr(String(e)); }
  };
  const rings = useRef({ cpu: new Ring(60, 1), mem: new Ring(60, 1), disk: new Ring(60, 2), net: new Ring(60, 2) });
  const prev = useRef<{ t: number; u: Usage } | null>(null);
  const [data, setData] = useState(() => ({ cpu: rings.current.cpu.data, mem: rings.current.mem.data,
    disk: rings.current.disk.data, net: rings.current.net.data }));

  useInterval(async () => {
    let h: Host;
    try {
      const early = await store.takeEarly("/v1/host"); // the first tick: asked for with the page
      h = early?.ok ? ((await early.json()) as Host) : await get<Host>("/v1/host");
      setHost(h); setErr("");
    } catch (e) { setErr(String(e)); return; }
    pooled.current = !!h.pool;
    if (h.pool) void loadPool(); // beside the charts' work, not before it
    else setPool(null);
    const u = h.usage;
    if (!u) return;
    const t = Date.now() / 1000;
    const p = prev.current;
    prev.current = { t, u };
    const r = rings.current;
    if (!p) { setData({ ...data, mem: r.mem.push(t, [u.rss_bytes / 1048576]) }); return; }
    // Counters since each worker started: a VM that stops takes its share
    // away, so a difference below zero counts as none.
    const dt = Math.max(0.001, t - p.t);
    const rate = (k: keyof Usage, div: number) => Math.max(0, u[k] - p.u[k]) / dt / div;
    setData({
      cpu: r.cpu.push(t, [rate("cpu_ns", 1e9) * 100]),
      mem: r.mem.push(t, [u.rss_bytes / 1048576]),
      disk: r.disk.push(t, [rate("read_bytes", 1024), rate("write_bytes", 1024)]),
      net: r.net.push(t, [rate("rx_bytes", 1024), rate("tx_bytes", 1024)]),
    });
  }, 2000, []);

  // A pool event (a host up, down, joined, left...) asks for the pool at once.
  let poolEv = 0;
  for (let i = s.events.length - 1; i >= 0; i--) if (s.events[i].event.startsWith("pool-")) { poolEv = s.events[i].seq; break; }
  useEffect(() => { if (poolEv && pooled.current) void loadPool(); }, [poolEv]);

  const byState: Record<string, number> = {};
  for (const v of s.vms.values()) byState[v.state] = (byState[v.state] || 0) + 1;
  // This host's capacity: in a pool the list holds the other hosts' VMs too.
  const here = [...s.vms.values()].filter((v) => !v.host || !host?.pool || v.host === host.pool.host);
  const memDefined = here.reduce((a, v) => a + (v.state === "running" || v.state === "paused" ? v.memory_mib : 0), 0);
  // In a pool, the capacity this host offers it (its record: memory_capacity_mib).
  const mine = host?.pool ? pool?.hosts.find((h) => h.name === host.pool!.host) : undefined;
  const cpusUsed = here.reduce((a, v) => a + (v.state === "running" || v.state === "paused" ? v.cpus : 0), 0);
  return (
    <section>
      <Heading>Dashboard</Heading>
      {err && <p class="error" role="alert">{err}</p>}
      <div class="cards">
        <div class="card stat" data-testid="host">
          <h2>Host</h2>
          {host ? (<dl>
            <dt>Name</dt><dd>{host.hostname}</dd>
            {host.pool && <><dt>Pool host</dt><dd>{host.pool.host}</dd></>}
            <dt>cellad</dt><dd>{host.version}, {fmtBytes(host.daemon.resident_kib * 1024)} resident</dd>
            <dt>KVM</dt><dd>{host.kvm ? "yes" : "no"}; cgroups {host.cgroups}; sandbox {host.sandbox ? "on" : "off"}</dd>
          </dl>) : <p>Loading…</p>}
        </div>
        <div class="card stat">
          <h2>Capacity</h2>
          {host && (<>
            <Meter label="vCPUs of running VMs" used={cpusUsed} total={mine?.cpus ?? host.cpus} unit="" />
            <Meter label="Memory of running VMs" used={memDefined} total={mine?.memory_mib ?? host.memory_mib} unit=" MiB" />
          </>)}
        </div>
        <div class="card stat">
          <h2>VMs by state</h2>
          <p class="big" id="vm-count">{s.vms.size}</p>
          <ul class="states">{Object.entries(byState).sort().map(([k, n]) => (
            <li><a href={`#/vms?state=${k}`}><StateBadge state={k} /> {n}</a></li>))}</ul>
        </div>
      </div>
      {host?.pool && <PoolSection pool={pool} err={poolErr} />}
      <div class="charts">
        <Chart title="CPU (running VMs, % of one CPU)" unit="%" series={[{ label: "CPU", color: "#2a6fdb" }]} data={data.cpu} />
        <Chart title="Memory (worker RSS, MiB)" unit="" series={[{ label: "RSS", color: "#8a4bd6" }]} data={data.mem} />
        <Chart title="Disk (KiB/s)" unit="" series={[{ label: "read", color: "#1c9c5a" }, { label: "write", color: "#d9822b" }]} data={data.disk} />
        <Chart title="Network (KiB/s)" unit="" series={[{ label: "rx", color: "#1c9c5a" }, { label: "tx", color: "#d9822b" }]} data={data.net} />
      </div>
      <h2>Recent events</h2>{/* job phases show as progress (jobview.tsx), not here */}
      <EventTable events={s.events.filter((e) => e.event !== "job-phase").slice(-10).reverse()} />
    </section>
  );
}

function Meter({ label, used, total, unit }: { label: string; used: number; total: number; unit: string }) {
  return (
    <div class="meter">
      <span>{label}: {used}{unit} of {total}{unit}</span>
      <progress max={total} value={Math.min(used, total)} aria-label={label} />
    </div>
  );
}

export function EventTable({ events }: { events: { seq: number; time: string; event: string; vm: string; state?: string; detail?: string }[] }) {
  if (!events.length) return <p class="muted">No events yet.</p>;
  return (
    <div class="table-wrap"><table class="events">
      <thead><tr><th scope="col">Time</th><th scope="col">VM</th><th scope="col">Event</th><th scope="col">State</th><th scope="col">Detail</th></tr></thead>
      <tbody>{events.map((e) => (
        <tr key={e.seq}><td><time dateTime={e.time}>{e.time.replace("T", " ").replace(/\.\d+Z$/, "")}</time></td>
          <td>{e.vm ? <a href={`#/vms/${encodeURIComponent(e.vm)}`}>{e.vm}</a> : "pool"}</td>
          <td>{e.event}</td><td>{e.state}</td><td class="detail">{e.detail}</td></tr>))}</tbody>
    </table></div>
  );
}
