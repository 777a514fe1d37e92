// jobview.tsx: the jobs' progress as the VM page and the header show it
// (the phases come from the event stream: jobs.ts).
import { Job, jobLabel, phaseLabel } from "./jobs";
import { useStore } from "./ui";

function Bar({ j }: { j: Job }) {
  const label = `${jobLabel(j.kind)} ${j.vm}: ${phaseLabel(j.phase)}`;
  return j.percent !== undefined
    ? <progress max={100} value={j.percent} aria-label={label}>{j.percent}%</progress>
    : <progress aria-label={label} />;
}

/** The VM page's line: the running job with its phase and bar, else the
 * last one with the phases it went through. */
export function JobProgress({ vm }: { vm: string }) {
  const s = useStore();
  const mine = [...s.jobs.values()].filter((j) => j.vm === vm);
  const running = mine.filter((j) => j.running);
  const last = mine.filter((j) => !j.running).sort((a, b) => (b.ended || 0) - (a.ended || 0))[0];
  if (!running.length && !last) return null;
  return (
    <div class="jobs" role="status" aria-live="polite" data-testid="job-progress">
      {running.map((j) => (
        <div class="job running" data-job={j.id} data-kind={j.kind} data-phase={j.phase}>
          <span class="spinner" aria-hidden="true" />
          <span><strong>{jobLabel(j.kind)}</strong>: {phaseLabel(j.phase)}{j.percent !== undefined && ` (${j.percent}%)`}</span>
          <Bar j={j} />
        </div>))}
      {!running.length && last && (
        <div class="job muted" data-job={last.id} data-kind={last.kind} data-phase="ended">
          <span>{jobLabel(last.kind)}: <span data-testid="job-phases">{last.phases.map(phaseLabel).join(" → ")}</span></span>
        </div>)}
    </div>
  );
}

/** The header's indicator: how many jobs run, the first one's phase, a link to its VM. */
export function JobsIndicator() {
  const s = useStore();
  const running = [...s.jobs.values()].filter((j) => j.running);
  if (!running.length) return null;
  const j = running[0];
  return (
    <a class="jobs-indicator" href={`#/vms/${encodeURIComponent(j.vm)}`} data-testid="jobs-indicator"
      aria-label={`${running.length} job${running.length > 1 ? "s" : ""} running: ${jobLabel(j.kind)} ${j.vm}, ${phaseLabel(j.phase)}`}>
      <span class="spinner" aria-hidden="true" /> {running.length > 1 ? `${running.length} jobs` : `${j.vm}: ${phaseLabel(j.phase)}`}
      {j.percent !== undefined && ` ${j.percent}%`}
    </a>
  );
}
