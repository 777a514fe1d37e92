// api.ts: the REST API as the console calls it: same-origin fetch with the
// session cookie, JSON in and out, errors as ApiError (status, field, state)
// so forms can show a field's error beside it. A 401 sends the page to login.
export interface ApiErrorBody { field?: string; reason?: string; message?: string; state?: string }

export class ApiError extends Error {
  status: number; field: string; state: string;
  constructor(status: number, e: ApiErrorBody) {
    super(e.message || e.reason || `HTTP ${status}`);
    this.status = status; this.field = e.field || ""; this.state = e.state || "";
  }
}

export interface Session { user: string; role: string; expires: number }
export interface Disk { id: string; path: string; readonly?: boolean; format?: string; cbt?: boolean; error?: string;
  qos?: { iops?: number; iops_burst?: number; bps?: number; bps_burst?: number } | null }
export interface Nic {
  tap?: string; mac?: string; switch?: string; vlan?: number; policy?: Record<string, unknown>;
  user?: boolean; forward?: string[]; queues?: number;
}
export interface Vm {
  name: string; uuid: string; cpus: number; memory_mib: number; kernel: string; initrd?: string; cmdline?: string;
  disks: Disk[]; nics: Nic[]; rng?: boolean; autostart?: boolean; restart_policy?: string; cpu_weight?: number;
  cpu_max?: number; ha?: boolean; state: string; pid?: number; uptime_ms?: number; started_at?: number;
  restarts?: number; last_exit?: Record<string, unknown>; pause_reason?: string; checkpoint?: string; host?: string;
}
export interface Host { hostname: string; kernel: string; version: string; cpus: number; memory_mib: number; kvm: boolean;
  vms: number; states: Record<string, number>; cgroups: string; sandbox: boolean; seccomp: boolean;
  daemon: { pid: number; cpu_seconds: number; resident_kib: number };
  usage?: { running: number; cpu_ns: number; rss_bytes: number; read_bytes: number; write_bytes: number; rx_bytes: number; tx_bytes: number };
  pool?: { host: string } }
/** GET /v1/pool (docs/pool.md): the pool's hosts, each with what its VMs use. */
export interface PoolHost { name: string; address?: string; state: string; memory_mib: number; cpus: number; vms: string[];
  since?: number; stale?: boolean;
  use?: { cpus: number; memory_mib: number; running: number; ha_vms: number; states: Record<string, number> } }
export interface PoolStatus { pool: string; host: string; stale?: boolean; lease?: string; hosts: PoolHost[] }
export interface VmEvent { seq: number; time: string; event: string; vm: string; state?: string; detail?: string }
export interface Checkpoint { name: string; parent?: string; kind: string; created_at: number; memory?: boolean;
  children?: string[]; current?: boolean }
export interface Metrics { name: string; state: string; uptime_ms: number; vcpu_time_ns?: number; process_cpu_time_ns?: number;
  exits?: { io: number; mmio: number; other: number }; memory?: Record<string, number>;
  disk_io?: Record<string, number>; nics?: Record<string, number | string>[] }

export type Handler401 = () => void;
let onUnauthorized: Handler401 = () => {};
export function setUnauthorizedHandler(h: Handler401) { onUnauthorized = h; }

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  let j: unknown = undefined;
  try { j = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401 && path !== "/v1/session") onUnauthorized();
    const e = (j as { error?: ApiErrorBody } | undefined)?.error;
    throw new ApiError(r.status, e || { message: text.slice(0, 200) || r.statusText });
  }
  return j as T;
}

export const get = <T>(p: string) => api<T>("GET", p);
export const post = <T>(p: string, b?: unknown) => api<T>("POST", p, b ?? {});
export const vmPath = (n: string) => `/v1/vms/${encodeURIComponent(n)}`;

/** Follows GET /v1/events?follow=true (JSON lines) with fetch streaming;
 * reconnects after a blip from the last sequence number seen. Returns a stop
 * function. */
export function followEvents(onEvent: (e: VmEvent) => void, opts: { since?: number; vm?: string } = {}): () => void {
  let stopped = false;
  let since = opts.since;
  let ctl: AbortController | null = null;
  let delay = 250;
  async function run() {
    while (!stopped) {
      ctl = new AbortController();
      const q = new URLSearchParams({ follow: "true" });
      if (since !== undefined) q.set("since", String(since));
      if (opts.vm) q.set("vm", opts.vm);
      try {
        const r = await fetch(`/v1/events?${q}`, { credentials: "same-origin", signal: ctl.signal });
        if (r.status === 401) { onUnauthorized(); return; }
        if (!r.ok || !r.body) throw new Error(`events: HTTP ${r.status}`);
        delay = 250;
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (!line) continue;
            try {
              const ev = JSON.parse(line) as VmEvent;
              if (typeof ev.seq === "number") since = ev.seq;
              onEvent(ev);
            } catch { /* a torn line: skip */ }
          }
        }
      } catch (e) {
        if (stopped) return;
      }
      if (stopped) return;
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
  run();
  return () => { stopped = true; ctl?.abort(); };
}

export function fmtBytes(n: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
export function fmtUptime(ms?: number): string {
  if (!ms) return "";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}
