// jobs.ts: long operations' progress from their phases. cellad announces
// each phase a job records (a move, a save, a checkpoint's create, apply or
// delete with its merge) as a job-phase event, with a percent where the
// operation knows one; the store feeds them here (backlog and live), so no
// page polls. GET /v1/jobs settles the list once at start (a job whose
// "ended" fell out of the backlog).
import { VmEvent, get } from "./api";

export interface Job {
  id: string; kind: string; vm: string; phase: string; percent?: number; running: boolean;
  phases: string[]; started: number; ended?: number;
}

interface JobInfo { id: string; kind: string; vm: string; phase: string; percent?: number; running: boolean;
  started_at: number; ended_at?: number }

const KEEP = 50; // finished jobs remembered

const LABEL: Record<string, string> = {
  "checkpoint-delete": "Deleting a checkpoint", "checkpoint-create": "Taking a checkpoint",
  "checkpoint-apply": "Applying a checkpoint", "move-out": "Moving", "move-in": "Arriving", save: "Saving",
};
const PHASE: Record<string, string> = {
  begun: "begun", merging: "merging layers", "layer-merged": "layer merged", switching: "switching disks",
  switched: "disks switched", saving: "saving memory", saved: "saved", prepared: "destination prepared",
  migrating: "migrating", uploading: "uploading", committing: "committing", ended: "done",
};
export const jobLabel = (k: string) => LABEL[k] || k;
export const phaseLabel = (p: string) => PHASE[p] || p;

/** Applies one event to the jobs (a job-phase event; others are ignored). */
export function applyJobEvent(jobs: Map<string, Job>, ev: VmEvent & { job?: string; kind?: string; phase?: string; percent?: number }) {
  if (ev.event !== "job-phase" || !ev.job || !ev.phase) return;
  const t = Date.parse(ev.time) || Date.now();
  let j = jobs.get(ev.job);
  if (!j) {
    j = { id: ev.job, kind: ev.kind || "", vm: ev.vm, phase: ev.phase, running: true, phases: [], started: t };
    jobs.set(ev.job, j);
  }
  if (j.phases[j.phases.length - 1] !== ev.phase) j.phases.push(ev.phase);
  if (ev.phase === "ended") { j.running = false; j.ended = t; } else j.phase = ev.phase;
  if (typeof ev.percent === "number") j.percent = ev.percent;
  const done = [...jobs.values()].filter((x) => !x.running);
  for (const x of done.slice(0, Math.max(0, done.length - KEEP))) jobs.delete(x.id);
}

/** Settles the jobs against GET /v1/jobs (what runs now). */
export async function settleJobs(jobs: Map<string, Job>): Promise<boolean> {
  let r: { jobs: JobInfo[] };
  try { r = await get<{ jobs: JobInfo[] }>("/v1/jobs"); } catch { return false; }
  const running = new Set(r.jobs.filter((j) => j.running).map((j) => j.id));
  for (const j of jobs.values()) if (j.running && !running.has(j.id)) { j.running = false; j.ended = Date.now(); }
  for (const i of r.jobs) {
    if (!i.running || jobs.has(i.id) || i.kind === "start" || i.kind === "stop") continue;
    jobs.set(i.id, { id: i.id, kind: i.kind, vm: i.vm, phase: i.phase, percent: i.percent, running: true,
      phases: [i.phase], started: i.started_at * 1000 });
  }
  return true;
}
