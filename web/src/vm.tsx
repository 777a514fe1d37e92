// vm.tsx: one VM: its actions, settings, disks and their QoS, NICs, the
// checkpoint tree, live metrics, and a link to its console.
import { useState } from "preact/hooks";
import { ApiError, Checkpoint, Disk, Metrics, Vm, api, fmtBytes, fmtUptime, get, post, vmPath } from "./api";
import { Chart, Ring } from "./chart";
import { store } from "./store";
import { Field, FieldErrors, Heading, StateBadge, errorsFrom, go, useAction, useInterval, useStore } from "./ui";
import { VmForm } from "./vmform";
import { EventTable } from "./dashboard";
import { JobProgress } from "./jobview";
import { LogTab } from "./vmlog";

const ACTIONS: [string, string, string[]][] = [
  ["start", "Start", ["defined", "stopped", "crashed", "saved"]],
  ["stop", "Stop", ["running"]],
  ["kill", "Turn off", ["running", "paused", "stopping"]],
  ["pause", "Pause", ["running"]],
  ["resume", "Resume", ["paused"]],
  ["reset", "Reset", ["running", "paused"]],
  ["save", "Save state", ["running", "paused"]],
];
const TABS = [["settings", "Settings"], ["disks", "Disks"], ["nics", "NICs"], ["checkpoints", "Checkpoints"],
  ["metrics", "Metrics"], ["move", "Move"], ["events", "Events"], ["log", "Log"]];

export function VmPage({ name, tab }: { name: string; tab: string }) {
  const s = useStore();
  const vm = s.vms.get(name);
  const act = useAction();
  if (!vm) return s.loaded ? <><Heading>{name}</Heading><p>No VM named {name}.</p></> : <p role="status">Loading…</p>;
  const running = ["starting", "running", "paused", "stopping"].includes(vm.state);
  const base = `#/vms/${encodeURIComponent(name)}`;
  async function doAction(verb: string, label: string) {
    await act.run(label, async () => {
      const r = await post<Vm>(`${vmPath(name)}/${verb}`);
      if (r && r.name) { store.vms.set(name, { ...vm!, ...r }); store.notify(); }
    });
  }
  async function del() {
    if (!confirm(`Delete ${name}?`)) return;
    await act.run("Delete", async () => { await api("DELETE", vmPath(name)); store.vms.delete(name); go("vms"); });
  }
  return (
    <section>
      <div class="row">
        <Heading>{name}</Heading>
        <StateBadge state={vm.state} />
        {vm.state === "running" && <span class="muted">up {fmtUptime(vm.uptime_ms)}</span>}
        <a class="button" href={`#/console/${encodeURIComponent(name)}`}>Console</a>
      </div>
      <div class="toolbar" role="toolbar" aria-label="VM actions">
        {ACTIONS.map(([verb, label, ok]) => (
          <button type="button" data-action={verb} disabled={!!act.busy || !ok.includes(vm.state)} onClick={() => doAction(verb, label)}>{label}</button>))}
        {vm.state === "saved" && <button type="button" disabled={!!act.busy} onClick={() => act.run("Discard saved state", async () => {
          await api("DELETE", `${vmPath(name)}/state`); store.refreshSoon();
        })}>Discard saved state</button>}
        <button type="button" class="danger" disabled={!!act.busy || running} onClick={del}>Delete</button>
        {act.status}
      </div>
      <JobProgress vm={name} />
      <nav class="tabs-nav" aria-label="VM sections"><ul>
        {TABS.map(([t, label]) => <li><a href={`${base}/${t}`} aria-current={tab === t ? "page" : undefined}>{label}</a></li>)}
      </ul></nav>
      {tab === "settings" && <VmForm key={`${vm.state}`} vm={vm} running={running} submitLabel="Save changes"
        onSubmit={async (body) => { const r = await api<Vm>("PATCH", vmPath(name), body); store.vms.set(name, { ...vm, ...r }); store.notify(); }} />}
      {tab === "disks" && <DisksTab vm={vm} />}
      {tab === "nics" && <NicsTab vm={vm} />}
      {tab === "checkpoints" && <CheckpointsTab vm={vm} />}
      {tab === "metrics" && <MetricsTab vm={vm} />}
      {tab === "move" && <MoveTab vm={vm} />}
      {tab === "log" && <LogTab vm={vm} />}
      {tab === "events" && <EventTable events={s.events.filter((e) => e.vm === name && e.event !== "job-phase").slice(-50).reverse()} />}
    </section>
  );
}

function DisksTab({ vm }: { vm: Vm }) {
  if (!vm.disks.length) return <p class="muted">No disks. Add image paths in Settings while the VM is off.</p>;
  return <div class="cards">{vm.disks.map((d) => <DiskCard vm={vm} disk={d} key={d.id} />)}</div>;
}

const QOS = ["iops", "iops_burst", "bps", "bps_burst"];
function DiskCard({ vm, disk }: { vm: Vm; disk: Disk }) {
  const [q, setQ] = useState<Record<string, string>>(() =>
    Object.fromEntries(QOS.map((k) => [k, String((disk.qos as Record<string, number> | null)?.[k] ?? 0)])));
  const [errors, setErrors] = useState<FieldErrors>({});
  const act = useAction();
  return (
    <form class="card" aria-label={`Disk ${disk.id}`} onSubmit={(e) => {
      e.preventDefault(); setErrors({});
      act.run("Set QoS", async () => {
        try {
          await api("PATCH", `${vmPath(vm.name)}/disks/${encodeURIComponent(disk.id)}`,
            { qos: Object.fromEntries(QOS.map((k) => [k, /^\d+$/.test(q[k]) ? Number(q[k]) : q[k]])) });
        } catch (err) {
          if (err instanceof ApiError) setErrors(errorsFrom(new ApiError(err.status, { message: err.message, field: err.field.replace(/^qos\./, "") }), QOS));
          throw err;
        }
      });
    }}>
      <h2>{disk.id}</h2>
      <dl><dt>Image</dt><dd class="path">{disk.path}</dd><dt>Format</dt><dd>{disk.format || "?"}{disk.readonly ? ", read-only" : ""}{disk.cbt ? ", change tracking" : ""}</dd>
        {disk.error && <><dt>Error</dt><dd class="error">{disk.error}</dd></>}</dl>
      <fieldset><legend>I/O limits (0: none)</legend>
        <div class="grid">{QOS.map((k) => (
          <Field name={`${disk.id}-${k}`} label={k.replace("_", " ")} type="number" min={0} value={q[k]} errors={{ [`${disk.id}-${k}`]: errors[k] }}
            onInput={(v) => setQ({ ...q, [k]: v })} />))}</div>
      </fieldset>
      <button type="submit" disabled={!!act.busy}>Apply limits</button> {act.status}
    </form>
  );
}

function NicsTab({ vm }: { vm: Vm }) {
  if (!vm.nics.length) return <p class="muted">No NICs.</p>;
  return (
    <table><thead><tr><th scope="col">Kind</th><th scope="col">Name</th><th scope="col">MAC</th>
      <th scope="col">VLAN</th><th scope="col">Queues</th><th scope="col">Policy or forwards</th></tr></thead>
      <tbody>{vm.nics.map((n) => <tr>
        <td>{n.user ? "user (passt)" : n.switch ? "switch port" : "tap"}</td>
        <td>{n.user ? "" : n.switch || n.tap}</td><td>{n.mac || "(derived)"}</td>
        <td>{n.vlan || ""}</td><td data-testid="nic-queues">{n.user ? "" : n.queues || 1}</td>
        <td><code>{n.user ? (n.forward || []).join(", ") : n.policy ? JSON.stringify(n.policy) : ""}</code></td>
      </tr>)}</tbody></table>
  );
}

function CheckpointsTab({ vm }: { vm: Vm }) {
  const [list, setList] = useState<Checkpoint[] | null>(null);
  const [err, setErr] = useState("");
  const [cpName, setCpName] = useState("");
  const [kind, setKind] = useState("production");
  const [errors, setErrors] = useState<FieldErrors>({});
  const act = useAction();
  async function load() {
    try {
      const r = await get<{ checkpoints: Checkpoint[] }>(`${vmPath(vm.name)}/checkpoints`);
      setList(r.checkpoints); setErr("");
    } catch (e) { setErr(String(e)); }
  }
  useInterval(load, 10000, [vm.name, vm.state]);
  const byName = new Map((list || []).map((c) => [c.name, c]));
  const roots = (list || []).filter((c) => !c.parent || !byName.has(c.parent));
  function node(c: Checkpoint) {
    const kids = (list || []).filter((x) => x.parent === c.name);
    return (
      <li role="treeitem" aria-expanded={kids.length ? true : undefined} aria-selected={!!c.current} data-checkpoint={c.name} key={c.name}>
        <div class={`cp${c.current ? " current" : ""}`}>
          <strong>{c.name}</strong> <span class="muted">{c.kind}{c.memory ? ", with memory" : ""}, {new Date(c.created_at * 1000).toLocaleString()}</span>
          {c.current && <span class="badge">current</span>}
          <button type="button" disabled={!!act.busy} onClick={() => act.run(`Apply ${c.name}`, async () => {
            await post(`${vmPath(vm.name)}/checkpoints/${encodeURIComponent(c.name)}/apply`); await load(); store.refreshSoon();
          })}>Apply</button>
          <button type="button" class="danger" disabled={!!act.busy} onClick={() => confirm(`Delete checkpoint ${c.name}? Its disk layers are merged.`) && act.run(`Delete ${c.name} (merging layers)`, async () => {
            await api("DELETE", `${vmPath(vm.name)}/checkpoints/${encodeURIComponent(c.name)}`); await load();
          })}>Delete</button>
        </div>
        {kids.length > 0 && <ul role="group">{kids.map(node)}</ul>}
      </li>
    );
  }
  return (
    <div>
      <form class="row" aria-label="New checkpoint" onSubmit={(e) => {
        e.preventDefault(); setErrors({});
        act.run(`Checkpoint ${cpName}`, async () => {
          try { await post(`${vmPath(vm.name)}/checkpoints`, { name: cpName, kind }); }
          catch (er) { setErrors(errorsFrom(er, ["name", "kind"])); throw er; }
          setCpName(""); await load(); store.refreshSoon();
        });
      }}>
        <Field name="name" label="Checkpoint name" value={cpName} onInput={setCpName} errors={errors} required />
        <Field name="kind" label="Kind" value={kind} onInput={setKind} errors={errors} options={["production", "standard"]} />
        <button type="submit" class="primary" disabled={!!act.busy || !cpName}>Create checkpoint</button>
      </form>
      {act.status}
      {err && <p class="error" role="alert">{err}</p>}
      {list === null ? <p role="status">Loading…</p> : !list.length ? <p class="muted">No checkpoints.</p> : (
        <ul class="tree" role="tree" aria-label="Checkpoint tree">{roots.map(node)}<li class="now" role="none">now{vm.checkpoint ? ` (from ${vm.checkpoint})` : ""}</li></ul>
      )}
    </div>
  );
}

function MetricsTab({ vm }: { vm: Vm }) {
  const [m, setM] = useState<Metrics | null>(null);
  const [ring] = useState(() => ({ cpu: new Ring(60, 1), mem: new Ring(60, 1), io: new Ring(60, 2) }));
  const [prev, setPrev] = useState<{ t: number; cpu: number; rd: number; wr: number } | null>(null);
  const [data, setData] = useState({ cpu: ring.cpu.data, mem: ring.mem.data, io: ring.io.data });
  useInterval(async () => {
    if (!["running", "paused"].includes(vm.state)) return;
    try {
      const x = await get<Metrics>(`${vmPath(vm.name)}/metrics`);
      setM(x);
      const t = Date.now() / 1000, cpu = (x.process_cpu_time_ns || 0) / 1e9;
      const rd = x.disk_io?.read_bytes || 0, wr = x.disk_io?.write_bytes || 0;
      setPrev((p) => {
        if (p) {
          const dt = Math.max(0.001, t - p.t);
          setData({ cpu: ring.cpu.push(t, [Math.max(0, (cpu - p.cpu) / dt * 100)]),
            mem: ring.mem.push(t, [(x.memory?.VmRSS_kib || 0) / 1024]),
            io: ring.io.push(t, [Math.max(0, (rd - p.rd) / dt / 1024), Math.max(0, (wr - p.wr) / dt / 1024)]) });
        }
        return { t, cpu, rd, wr };
      });
    } catch { /* the VM stopped */ }
  }, 2000, [vm.name, vm.state]);
  if (!["running", "paused"].includes(vm.state) && !m) return <p class="muted">Metrics are there while the VM runs.</p>;
  return (
    <div>
      {m && <dl class="inline">
        <dt>Uptime</dt><dd>{fmtUptime(m.uptime_ms)}</dd>
        <dt>vCPU time</dt><dd>{((m.vcpu_time_ns || 0) / 1e9).toFixed(2)} s</dd>
        <dt>Exits</dt><dd>io {m.exits?.io}, mmio {m.exits?.mmio}, other {m.exits?.other}</dd>
        <dt>Worker RSS</dt><dd>{fmtBytes((m.memory?.VmRSS_kib || 0) * 1024)}</dd>
      </dl>}
      <div class="charts">
        <Chart title="CPU (% of one CPU)" unit="%" series={[{ label: "CPU", color: "#2a6fdb" }]} data={data.cpu} />
        <Chart title="Worker RSS (MiB)" unit="" series={[{ label: "RSS", color: "#8a4bd6" }]} data={data.mem} />
        <Chart title="Disk (KiB/s)" unit="" series={[{ label: "read", color: "#1c9c5a" }, { label: "write", color: "#d9822b" }]} data={data.io} />
      </div>
    </div>
  );
}

function MoveTab({ vm }: { vm: Vm }) {
  const [hosts, setHosts] = useState<{ name: string; url: string }[] | null>(null);
  const [to, setTo] = useState("");
  const [quick, setQuick] = useState("false");
  const [storage, setStorage] = useState("false");
  const [errors, setErrors] = useState<FieldErrors>({});
  const act = useAction();
  useInterval(async () => {
    try {
      const r = await get<{ hosts: { name: string; url: string }[] }>("/v1/hosts");
      setHosts(r.hosts);
      if (!to && r.hosts.length) setTo(r.hosts[0].name);
    } catch { setHosts([]); }
  }, 30000, []);
  if (hosts === null) return <p role="status">Loading…</p>;
  if (!hosts.length) return <p class="muted">No peer hosts: add one (cella host add) to move VMs to it.</p>;
  return (
    <form aria-label="Move the VM" onSubmit={(e) => {
      e.preventDefault(); setErrors({});
      act.run(`Move to ${to}`, async () => {
        try {
          await post(`${vmPath(vm.name)}/move`, { to, quick: quick === "true", include_storage: storage === "true" });
        } catch (er) { setErrors(errorsFrom(er, ["to", "quick", "include_storage"])); throw er; }
        store.refreshSoon();
      });
    }}>
      <div class="grid">
        <Field name="to" label="To host" value={to} onInput={setTo} errors={errors} options={hosts.map((h) => h.name)} />
        <Field name="quick" label="Quick (save, copy, restore) instead of live" type="checkbox" value={quick} onInput={setQuick} errors={errors} />
        <Field name="include_storage" label="Copy the disks too" type="checkbox" value={storage} onInput={setStorage} errors={errors} />
      </div>
      <button type="submit" class="primary" disabled={!!act.busy || !to}>Move</button> {act.status}
    </form>
  );
}
