// events.tsx: the event log (the last events kept by cellad, then live),
// filtered by VM, event kind and text.
import { useState } from "preact/hooks";
import { EventTable } from "./dashboard";
import { Heading, useStore } from "./ui";

export function EventsPage() {
  const s = useStore();
  const [vm, setVm] = useState("");
  const [kind, setKind] = useState("");
  const [text, setText] = useState("");
  const kinds = [...new Set(s.events.map((e) => e.event))].sort();
  const evs = s.events.filter((e) => (!vm || e.vm === vm) && (!kind || e.event === kind) &&
    (!text || `${e.vm} ${e.event} ${e.detail || ""}`.toLowerCase().includes(text.toLowerCase()))).slice(-300).reverse();
  return (
    <section>
      <Heading>Events</Heading>
      <div class="filters" role="search">
        <div class="field inline"><label for="ev-vm">VM</label>
          <select id="ev-vm" value={vm} onChange={(e) => setVm((e.target as HTMLSelectElement).value)}>
            <option value="">any</option>{[...s.vms.keys()].sort().map((n) => <option value={n}>{n}</option>)}</select></div>
        <div class="field inline"><label for="ev-kind">Event</label>
          <select id="ev-kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)}>
            <option value="">any</option>{kinds.map((k) => <option value={k}>{k}</option>)}</select></div>
        <div class="field inline"><label for="ev-text">Text</label>
          <input id="ev-text" type="search" value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} /></div>
        <span class="muted" aria-live="polite">{evs.length} shown</span>
      </div>
      <EventTable events={evs} />
    </section>
  );
}
