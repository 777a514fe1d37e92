// pool.tsx: the dashboard's Pool section, shown only when this host is in a
// pool (GET /v1/host says "pool"): every member with its state, capacity and
// use, and the pool's totals, from GET /v1/pool (one request a tick, read
// from the pool's etcd: no request per host or VM). The VMs of other hosts
// send no events here, so a change in the pool's view (a VM started, stopped,
// defined or moved elsewhere) reloads the VM list once.
import { PoolHost, PoolStatus, fmtBytes } from "./api";
import { store } from "./store";
import { StateBadge } from "./ui";

/** What of the pool's view the VM list depends on: its hosts, their VMs and
 * the VMs' states (counts per host). */
export function poolSignature(p: PoolStatus): string {
  return JSON.stringify(p.hosts.map((h) => [h.name, h.state, h.vms, h.use?.states]));
}

/** Tells the store the pool's view of this tick; the VM list is reloaded
 * when it differs from the last one (not on the first). */
export function notePool(p: PoolStatus) {
  const sig = poolSignature(p);
  if (store.poolSig && store.poolSig !== sig) store.refreshSoon();
  store.poolSig = sig;
}

const mib = (n: number) => fmtBytes(n * 1048576);

interface Totals { hosts: number; up: number; cpus: number; cpusUsed: number; mem: number; memUsed: number;
  running: number; vms: number; ha: number }

export function poolTotals(hosts: PoolHost[]): Totals {
  const t: Totals = { hosts: hosts.length, up: 0, cpus: 0, cpusUsed: 0, mem: 0, memUsed: 0, running: 0, vms: 0, ha: 0 };
  for (const h of hosts) {
    // Capacity counts the hosts that can take VMs now; use counts every host
    // (a host that is down may still run its VMs).
    if (h.state === "up") { t.up++; t.cpus += h.cpus; t.mem += h.memory_mib; }
    t.cpusUsed += h.use?.cpus || 0;
    t.memUsed += h.use?.memory_mib || 0;
    t.running += h.use?.running || 0;
    t.vms += h.vms.length;
    t.ha += h.use?.ha_vms || 0;
  }
  return t;
}

function since(unix?: number): string {
  if (!unix) return "";
  const d = new Date(unix * 1000).toISOString();
  return d.replace("T", " ").replace(/\.\d+Z$/, "");
}

export function PoolSection({ pool, err }: { pool: PoolStatus | null; err: string }) {
  if (!pool) return err ? <p class="error" role="alert">Pool: {err}</p> : null;
  const name = pool.pool.split("/").pop() || pool.pool;
  const t = poolTotals(pool.hosts);
  const hosts = [...pool.hosts].sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section class="pool" aria-labelledby="pool-h" data-testid="pool">
      <h2 id="pool-h">Pool {name}</h2>
      {pool.stale && <p class="notice bad" role="status">etcd cannot be reached from this host: the pool as last seen.</p>}
      <div class="cards">
        <div class="card stat" data-testid="pool-totals">
          <h3>Totals</h3>
          <dl>
            <dt>Hosts</dt><dd>{t.up} up of {t.hosts}</dd>
            <dt>VMs</dt><dd>{t.running} running of {t.vms}</dd>
            <dt>HA</dt><dd>{t.ha} HA VM{t.ha === 1 ? "" : "s"}; this host's lease {pool.lease || "?"}</dd>
          </dl>
          <PoolMeter label="vCPUs of running VMs (hosts up)" used={t.cpusUsed} total={t.cpus} fmt={String} />
          <PoolMeter label="Memory of running VMs (hosts up)" used={t.memUsed} total={t.mem} fmt={mib} />
        </div>
      </div>
      {/* Scrolls sideways at phone width: a focusable region, so the keyboard scrolls it too. */}
      <div class="table-wrap" tabIndex={0} role="region" aria-label={`Hosts of pool ${name}`}><table class="pool-hosts">
        <caption class="visually-hidden">Hosts of pool {name}</caption>
        <thead><tr><th scope="col">Host</th><th scope="col">State</th><th scope="col">vCPUs used</th>
          <th scope="col">Memory used</th><th scope="col">Memory free</th><th scope="col">VMs running</th>
          <th scope="col">Lease since</th></tr></thead>
        <tbody>{hosts.map((h) => {
          const used = h.use?.memory_mib || 0;
          return (
            <tr key={h.name} data-host={h.name}>
              <th scope="row">{h.name}{h.name === pool.host && <span class="muted"> (this host)</span>}</th>
              <td><StateBadge state={h.state} /></td>
              <td data-col="cpus">{h.use?.cpus ?? 0} of {h.cpus}</td>
              <td data-col="mem">{mib(used)} of {mib(h.memory_mib)}
                <progress max={h.memory_mib || 1} value={Math.min(used, h.memory_mib)} aria-label={`Memory used on ${h.name}`} /></td>
              <td data-col="free">{mib(Math.max(0, h.memory_mib - used))}</td>
              <td data-col="running">{h.use?.running ?? 0} of {h.vms.length}</td>
              <td>{h.state === "down" ? "" : since(h.since)}</td>
            </tr>);
        })}</tbody>
      </table></div>
    </section>
  );
}

function PoolMeter({ label, used, total, fmt }: { label: string; used: number; total: number; fmt: (n: number) => string }) {
  return (
    <div class="meter">
      <span>{label}: {fmt(used)} of {fmt(total)}, {fmt(Math.max(0, total - used))} free</span>
      <progress max={total || 1} value={Math.min(used, total)} aria-label={label} />
    </div>
  );
}
