// store.ts: the VM list shared by every page, kept current by the event
// stream (each event carries the VM's state), so no page polls for states.
import { ApiError, Session, Vm, VmEvent, followEvents, get } from "./api";
import { Job, applyJobEvent, settleJobs } from "./jobs";

type Listener = () => void;

export class Store {
  vms = new Map<string, Vm>();
  events: VmEvent[] = [];
  jobs = new Map<string, Job>(); // long operations and their phases (jobs.ts)
  session: Session | null = null;
  loaded = false;
  error = "";
  poolSig = ""; // the pool's view last seen (pool.tsx: a change reloads the list)
  private listeners = new Set<Listener>();
  private stopEvents: (() => void) | null = null;
  private refreshTimer = 0;

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  notify() { for (const l of this.listeners) l(); }

  async refresh() {
    try {
      const r = await get<{ vms: Vm[] }>("/v1/vms");
      const m = new Map<string, Vm>();
      for (const v of r.vms) m.set(v.name, v);
      this.vms = m;
      this.loaded = true;
      this.error = "";
    } catch (e) {
      this.error = e instanceof ApiError ? e.message : String(e);
    }
    this.notify();
  }

  /** A later refresh of the whole list (defined/deleted VMs), coalesced. */
  refreshSoon() {
    if (this.refreshTimer) return;
    this.refreshTimer = window.setTimeout(() => { this.refreshTimer = 0; this.refresh(); }, 150);
  }

  private early: Promise<[Response | null, Response | null]> | null = null;
  private earlyOther = new Map<string, Promise<Response | null>>();
  private earlyAt = 0;

  /** Asks for the session, the list, the recent events and the host at
   * once, before the session is known (it usually is valid): the first
   * page then needs no further round. index.html preloads the same URLs
   * (fetch requests of the same mode), so these are answered from the
   * preload cache when they are on their way already. */
  prefetch() {
    const f = (u: string) => fetch(u, { credentials: "same-origin" }).catch(() => null);
    this.early = Promise.all([f("/v1/vms"), f("/v1/events?since=0&follow=false")]);
    for (const u of ["/v1/session", "/v1/host"]) this.earlyOther.set(u, f(u));
    this.earlyAt = Date.now();
  }

  /** A prefetched answer for path (once, while fresh), or null. */
  takeEarly(path: string): Promise<Response | null> | null {
    const p = this.earlyOther.get(path) || null;
    this.earlyOther.delete(path);
    return Date.now() - this.earlyAt < 10000 ? p : null;
  }

  async start() {
    if (this.stopEvents) return;
    this.stopEvents = () => {}; // started: a second call waits for nothing
    const early = this.early;
    this.early = null;
    let [vr, er] = early ? await early : [null, null];
    if (!vr?.ok || !er?.ok) {
      [vr, er] = await Promise.all([fetch("/v1/vms", { credentials: "same-origin" }).catch(() => null),
        fetch("/v1/events?since=0&follow=false", { credentials: "same-origin" }).catch(() => null)]);
    }
    // The list and the recent events, then follow from the newest event
    // seen (a state change in between arrives again: states are absolute,
    // so applying it twice does no harm).
    let since = 0;
    try {
      if (er?.ok) {
        const evs: VmEvent[] = [];
        for (const line of (await er.text()).split("\n")) {
          if (!line.trim()) continue;
          try { const ev = JSON.parse(line) as VmEvent; evs.push(ev); since = ev.seq; } catch { /* skip */ }
        }
        this.events = evs.slice(-500);
      }
    } catch { /* the stream below retries */ }
    if (vr?.ok) {
      const r = (await vr.json()) as { vms: Vm[] };
      this.vms = new Map(r.vms.map((v) => [v.name, v]));
      this.loaded = true;
    } else {
      await this.refresh();
    }
    // The list may be older than the backlog's end: its states, in order,
    // bring it up to there; the stream then brings it past.
    for (const ev of this.events) {
      applyJobEvent(this.jobs, ev);
      const vm = ev.vm ? this.vms.get(ev.vm) : undefined;
      if (vm && ev.state) this.vms.set(vm.name, { ...vm, state: ev.state });
    }
    this.notify();
    this.stopEvents = followEvents((ev) => this.onEvent(ev), { since });
    settleJobs(this.jobs).then((ok) => ok && this.notify());
  }

  stop() {
    this.stopEvents?.();
    this.stopEvents = null;
    this.vms.clear();
    this.events = [];
    this.jobs.clear();
    this.loaded = false;
    this.poolSig = "";
  }

  onEvent(ev: VmEvent) {
    this.events.push(ev);
    if (this.events.length > 500) this.events.splice(0, this.events.length - 500);
    applyJobEvent(this.jobs, ev);
    const vm = ev.vm ? this.vms.get(ev.vm) : undefined;
    if (!ev.vm) { /* pool events */ }
    else if (!vm || ev.event === "deleted" || ev.event === "defined" || ev.event === "changed") this.refreshSoon();
    else if (ev.state) {
      const next = { ...vm, state: ev.state };
      if (ev.state !== "running" && ev.state !== "paused") next.pid = undefined;
      this.vms.set(vm.name, next);
      if (ev.event === "started" || ev.event.startsWith("checkpoint")) this.refreshSoon();
    } else this.refreshSoon();
    this.notify();
  }
}

export const store = new Store();
