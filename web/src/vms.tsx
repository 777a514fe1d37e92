// vms.tsx: every VM with its live state (from the event stream), filters by
// name and state, and bulk actions on the selected VMs.
import { useState } from "preact/hooks";
import { ApiError, PoolStatus, api, fmtUptime, get, post, vmPath } from "./api";
import { notePool } from "./pool";
import { store } from "./store";
import { Heading, StateBadge, useAction, useInterval, useStore } from "./ui";

const STATES = ["", "defined", "starting", "running", "paused", "stopping", "stopped", "crashed", "saved"];
const BULK: [string, string, string[]][] = [
  ["start", "Start", ["defined", "stopped", "crashed", "saved"]],
  ["stop", "Stop", ["running"]],
  ["kill", "Turn off", ["running", "paused", "stopping"]],
  ["pause", "Pause", ["running"]],
  ["resume", "Resume", ["paused"]],
  ["delete", "Delete", ["defined", "stopped", "crashed", "saved"]],
];

function initialState(): string {
  const q = location.hash.split("?")[1];
  return q ? new URLSearchParams(q).get("state") || "" : "";
}

export function VmList() {
  const s = useStore();
  const [text, setText] = useState("");
  const [state, setState] = useState(initialState());
  const [sel, setSel] = useState<Set<string>>(new Set());
  const act = useAction();
  const vms = [...s.vms.values()]
    .filter((v) => (!state || v.state === state) && (!text || v.name.toLowerCase().includes(text.toLowerCase())))
    .sort((a, b) => a.name.localeCompare(b.name));
  const chosen = vms.filter((v) => sel.has(v.name));
  // In a pool the list holds every host's VMs, each with its host; the
  // others' changes come with no event here: the pool's view, asked for
  // every 3 s, reloads the list when it changed (pool.tsx).
  const pooled = [...s.vms.values()].some((v) => v.host);
  useInterval(() => { if (pooled) get<PoolStatus>("/v1/pool").then(notePool, () => {}); }, 3000, [pooled]);
  function toggle(n: string) {
    const x = new Set(sel);
    if (x.has(n)) x.delete(n); else x.add(n);
    setSel(x);
  }
  function bulk(verb: string, label: string, ok: string[]) {
    const targets = chosen.filter((v) => ok.includes(v.state));
    if (verb === "delete" && !confirm(`Delete ${targets.length} VM(s)?`)) return;
    act.run(`${label} ${targets.length} VM(s)`, async () => {
      const errs: string[] = [];
      await Promise.all(targets.map(async (v) => {
        try {
          if (verb === "delete") await api("DELETE", vmPath(v.name));
          else await post(`${vmPath(v.name)}/${verb}`);
        } catch (e) { errs.push(`${v.name}: ${e instanceof ApiError ? e.message : e}`); }
      }));
      if (verb === "delete") { setSel(new Set()); store.refreshSoon(); }
      if (errs.length) throw new Error(errs.join("; "));
    }, `${label}: done for ${targets.length} VM(s)`);
  }
  return (
    <section>
      <div class="row"><Heading>Virtual machines</Heading><a class="button primary" href="#/create">New VM</a></div>
      <div class="filters" role="search">
        <div class="field inline"><label for="filter-text">Name contains</label>
          <input id="filter-text" type="search" value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} /></div>
        <div class="field inline"><label for="filter-state">State</label>
          <select id="filter-state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
            {STATES.map((x) => <option value={x}>{x || "any"}</option>)}</select></div>
        <span class="muted" aria-live="polite">{vms.length} of {s.vms.size} shown</span>
      </div>
      <div class="toolbar" role="toolbar" aria-label="Actions on the selected VMs">
        {BULK.map(([verb, label, ok]) => (
          <button type="button" class={verb === "delete" ? "danger" : ""} disabled={!!act.busy || !chosen.some((v) => ok.includes(v.state))}
            onClick={() => bulk(verb, label, ok)} data-bulk={verb}>{label}</button>))}
        {act.status}
      </div>
      {!s.loaded ? <p role="status">Loading…</p> : !vms.length ? <p class="muted">No VMs{state || text ? " match" : " yet"}.</p> : (
        <div class="table-wrap"><table class="vms">
          <thead><tr>
            <th scope="col"><input type="checkbox" aria-label="Select all shown" checked={vms.length > 0 && chosen.length === vms.length}
              onChange={(e) => setSel((e.target as HTMLInputElement).checked ? new Set(vms.map((v) => v.name)) : new Set())} /></th>
            <th scope="col">Name</th><th scope="col">State</th><th scope="col">vCPUs</th><th scope="col">Memory</th>
            <th scope="col">Uptime</th>{pooled && <th scope="col">Host</th>}<th scope="col">Console</th></tr></thead>
          <tbody>{vms.map((v) => (
            <tr key={v.name} data-vm={v.name}>
              <td><input type="checkbox" aria-label={`Select ${v.name}`} checked={sel.has(v.name)} onChange={() => toggle(v.name)} /></td>
              <th scope="row"><a href={`#/vms/${encodeURIComponent(v.name)}`}>{v.name}</a></th>
              <td><StateBadge state={v.state} /></td><td>{v.cpus}</td><td>{v.memory_mib} MiB</td>
              <td>{v.state === "running" ? fmtUptime(v.uptime_ms) : ""}</td>
              {pooled && <td data-col="host">{v.host}</td>}
              <td><a href={`#/console/${encodeURIComponent(v.name)}`} aria-label={`Console of ${v.name}`}>Console</a></td>
            </tr>))}</tbody>
        </table></div>
      )}
    </section>
  );
}
