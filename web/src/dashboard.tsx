// dashboard.tsx: the host's capacity and use (GET /v1/host), VMs by state,
// live charts summed over the running VMs' metrics, recent events.
import { useRef, useState } from "preact/hooks";
import { Host, Metrics, fmtBytes, get, vmPath } from "./api";
import { Chart, Ring } from "./chart";
import { Heading, StateBadge, useInterval, useStore } from "./ui";

const MAX_SAMPLED = 32; // running VMs sampled per tick: the page stays light with hundreds

export function Dashboard() {
  const s = useStore();
  const [host, setHost] = useState<Host | null>(null);
  const [err, setErr] = useState("");
  const rings = useRef({ cpu: new Ring(60, 1), mem: new Ring(60, 1), disk: new Ring(60, 2), net: new Ring(60, 2) });
  // Counters of each sampled VM at the last tick: a rate counts only VMs seen twice.
  const prev = useRef<{ t: number; by: Map<string, number[]> } | null>(null);
  const [data, setData] = useState(() => ({ cpu: rings.current.cpu.data, mem: rings.current.mem.data,
    disk: rings.current.disk.data, net: rings.current.net.data }));

  useInterval(async () => {
    try { setHost(await get<Host>("/v1/host")); setErr(""); } catch (e) { setErr(String(e)); return; }
    const running = [...s.vms.values()].filter((v) => v.state === "running" || v.state === "paused").slice(0, MAX_SAMPLED);
    const ms = await Promise.all(running.map((v) => get<Metrics>(`${vmPath(v.name)}/metrics`).catch(() => null)));
    const t = Date.now() / 1000;
    const by = new Map<string, number[]>();
    let mem = 0;
    for (const m of ms) {
      if (!m) continue;
      let rx = 0, tx = 0;
      for (const n of m.nics || []) { rx += Number(n.rx_bytes || 0); tx += Number(n.tx_bytes || 0); }
      by.set(m.name, [(m.process_cpu_time_ns || 0) / 1e9, m.disk_io?.read_bytes || 0, m.disk_io?.write_bytes || 0, rx, tx]);
      mem += (m.memory?.VmRSS_kib || 0) * 1024;
    }
    const p = prev.current;
    prev.current = { t, by };
    const r = rings.current;
    if (!p) { setData({ ...data, mem: r.mem.push(t, [mem / 1048576]) }); return; }
    const dt = Math.max(0.001, t - p.t);
    const d = [0, 0, 0, 0, 0];
    for (const [name, now] of by) {
      const was = p.by.get(name);
      if (was) for (let i = 0; i < 5; i++) d[i] += Math.max(0, now[i] - was[i]);
    }
    setData({
      cpu: r.cpu.push(t, [d[0] / dt * 100]),
      mem: r.mem.push(t, [mem / 1048576]),
      disk: r.disk.push(t, [d[1] / dt / 1024, d[2] / dt / 1024]),
      net: r.net.push(t, [d[3] / dt / 1024, d[4] / dt / 1024]),
    });
  }, 2000, [s.loaded]);

  const byState: Record<string, number> = {};
  for (const v of s.vms.values()) byState[v.state] = (byState[v.state] || 0) + 1;
  const memDefined = [...s.vms.values()].reduce((a, v) => a + (v.state === "running" || v.state === "paused" ? v.memory_mib : 0), 0);
  const cpusUsed = [...s.vms.values()].reduce((a, v) => a + (v.state === "running" || v.state === "paused" ? v.cpus : 0), 0);
  return (
    <section>
      <Heading>Dashboard</Heading>
      {err && <p class="error" role="alert">{err}</p>}
      <div class="cards">
        <div class="card stat" data-testid="host">
          <h2>Host</h2>
          {host ? (<dl>
            <dt>Name</dt><dd>{host.hostname}</dd>
            <dt>cellad</dt><dd>{host.version}, {fmtBytes(host.daemon.resident_kib * 1024)} resident</dd>
            <dt>KVM</dt><dd>{host.kvm ? "yes" : "no"}; cgroups {host.cgroups}; sandbox {host.sandbox ? "on" : "off"}</dd>
          </dl>) : <p>Loading…</p>}
        </div>
        <div class="card stat">
          <h2>Capacity</h2>
          {host && (<>
            <Meter label="vCPUs of running VMs" used={cpusUsed} total={host.cpus} unit="" />
            <Meter label="Memory of running VMs" used={memDefined} total={host.memory_mib} unit=" MiB" />
          </>)}
        </div>
        <div class="card stat">
          <h2>VMs by state</h2>
          <p class="big" id="vm-count">{s.vms.size}</p>
          <ul class="states">{Object.entries(byState).sort().map(([k, n]) => (
            <li><a href={`#/vms?state=${k}`}><StateBadge state={k} /> {n}</a></li>))}</ul>
        </div>
      </div>
      <div class="charts">
        <Chart title="CPU (running VMs, % of one CPU)" unit="%" series={[{ label: "CPU", color: "#2a6fdb" }]} data={data.cpu} />
        <Chart title="Memory (worker RSS, MiB)" unit="" series={[{ label: "RSS", color: "#8a4bd6" }]} data={data.mem} />
        <Chart title="Disk (KiB/s)" unit="" series={[{ label: "read", color: "#1c9c5a" }, { label: "write", color: "#d9822b" }]} data={data.disk} />
        <Chart title="Network (KiB/s)" unit="" series={[{ label: "rx", color: "#1c9c5a" }, { label: "tx", color: "#d9822b" }]} data={data.net} />
      </div>
      <h2>Recent events</h2>
      <EventTable events={s.events.slice(-10).reverse()} />
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
