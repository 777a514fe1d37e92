// vmlog.tsx: the VM page's Log tab: the end of the VM's worker log
// (GET /v1/vms/{name}/log), what cella-vm printed (warnings, device
// errors, why it exited). Refreshed by hand, and live while "Follow" is on:
// every few seconds while the VM runs, and at once when its state changes.
import { useEffect, useRef, useState } from "preact/hooks";
import { Vm, fmtBytes, get, vmPath } from "./api";

interface VmLog { name: string; size: number; truncated: boolean; lines: string[] }

const TAIL_CHOICES = ["100", "500", "2000"];

export function LogTab({ vm }: { vm: Vm }) {
  const [log, setLog] = useState<VmLog | null>(null);
  const [err, setErr] = useState("");
  const [tail, setTail] = useState("500");
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  async function load() {
    try {
      const r = await get<VmLog>(`${vmPath(vm.name)}/log?tail=${tail}`);
      const el = pre.current;
      atEnd.current = !el || el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      setLog(r); setErr("");
    } catch (e) { setErr(e instanceof Error ? e.message : String(e)); }
  }
  // Reload when the tail changes or the VM's state does (a start or an exit writes lines).
  useEffect(() => { load(); }, [vm.name, vm.state, tail]);
  useEffect(() => {
    if (!follow || !["starting", "running", "paused", "stopping"].includes(vm.state)) return;
    const t = window.setInterval(load, 3000);
    return () => window.clearInterval(t);
  }, [follow, vm.name, vm.state, tail]);
  useEffect(() => {
    // Keep the newest line in view unless the reader scrolled up.
    if (atEnd.current && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [log]);
  return (
    <div class="vmlog">
      <div class="row">
        <div class="field"><label for="log-tail">Lines</label>
          <select id="log-tail" value={tail} onChange={(e) => setTail((e.target as HTMLSelectElement).value)}>
            {TAIL_CHOICES.map((n) => <option value={n}>last {n}</option>)}
          </select></div>
        <label class="check"><input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} /> Follow</label>
        <button type="button" onClick={load} id="log-refresh">Refresh</button>
        {log && <span class="muted" data-testid="log-size">{fmtBytes(log.size)} in all{log.truncated ? "; earlier lines left out" : ""}</span>}
      </div>
      {err && <p class="error" role="alert">{err}</p>}
      {log === null ? <p role="status">Loading…</p> : !log.lines.length ? <p class="muted">The worker has logged nothing yet (the VM never ran on this host).</p> : (
        <pre class="log" ref={pre} tabIndex={0} role="log" aria-label={`Worker log of ${vm.name}`} data-testid="worker-log">
          {log.lines.join("\n")}
        </pre>
      )}
    </div>
  );
}
