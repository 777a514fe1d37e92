// ui.tsx: small shared pieces: hooks, field with its error, state badge,
// busy button (an action's progress), the page heading that takes focus.
import { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";
import { store } from "./store";

export function useStore() {
  const [, set] = useState(0);
  useEffect(() => store.subscribe(() => set((n) => n + 1)), []);
  return store;
}

export function useInterval(fn: () => void, ms: number, deps: unknown[] = []) {
  useEffect(() => {
    fn();
    const t = window.setInterval(fn, ms);
    return () => window.clearInterval(t);
  }, deps);
}

/** Set once the user moved to another route: from then on a page's heading
 * takes the focus when it appears (a screen reader announces the new page);
 * the first page loaded leaves the focus where the browser puts it. */
export const nav = { moved: false };

export function Heading({ children }: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => { if (nav.moved) ref.current?.focus({ preventScroll: true }); }, []);
  return <h1 tabIndex={-1} ref={ref}>{children}</h1>;
}

export function StateBadge({ state }: { state: string }) {
  return <span class={`badge st-${state}`} data-state={state}>{state}</span>;
}

/** A labelled input whose API error (error.field === name) shows beside it. */
export function Field(props: {
  name: string; label: string; value: string | number; onInput: (v: string) => void; errors: FieldErrors;
  type?: string; hint?: string; required?: boolean; disabled?: boolean; min?: number; options?: string[];
  idPrefix?: string; // several forms on one page: unique ids
}) {
  const id = `f-${props.idPrefix || ""}${props.name}`;
  const err = props.errors[props.name];
  const common = {
    id, name: props.name, disabled: props.disabled, required: props.required,
    "aria-invalid": err ? true : undefined,
    "aria-describedby": err ? `${id}-err` : props.hint ? `${id}-hint` : undefined,
  };
  return (
    <div class={`field${err ? " has-error" : ""}`}>
      <label for={id}>{props.label}</label>
      {props.options ? (
        <select {...common} value={String(props.value)} onChange={(e) => props.onInput((e.target as HTMLSelectElement).value)}>
          {props.options.map((o) => <option value={o}>{o}</option>)}
        </select>
      ) : props.type === "checkbox" ? (
        <input {...common} type="checkbox" checked={props.value === "true"}
          onChange={(e) => props.onInput((e.target as HTMLInputElement).checked ? "true" : "false")} />
      ) : (
        <input {...common} type={props.type || "text"} value={props.value} min={props.min}
          onInput={(e) => props.onInput((e.target as HTMLInputElement).value)} />
      )}
      {props.hint && !err && <small id={`${id}-hint`} class="hint">{props.hint}</small>}
      {err && <small id={`${id}-err`} class="error" role="alert" data-field-error={props.name}>{err}</small>}
    </div>
  );
}

export type FieldErrors = Record<string, string>;

/** Maps an API error onto the form: the named field, else the form's own line. */
export function errorsFrom(e: unknown, fields: string[]): FieldErrors {
  if (e instanceof ApiError) {
    const f = e.field.split(/[.[]/)[0];
    if (f && fields.includes(f)) return { [f]: e.message };
    return { _form: e.message };
  }
  return { _form: String(e) };
}

/** Runs an action, shows it in progress (elapsed seconds) and its outcome. */
export function useAction() {
  const [busy, setBusy] = useState("");
  const [since, setSince] = useState(0);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [, tick] = useState(0);
  useEffect(() => {
    if (!busy) return;
    const t = window.setInterval(() => tick((n) => n + 1), 500);
    return () => window.clearInterval(t);
  }, [busy]);
  async function run(label: string, fn: () => Promise<unknown>, done?: string) {
    setBusy(label); setSince(Date.now()); setMsg(null);
    try {
      await fn();
      setMsg({ ok: true, text: done || `${label}: done` });
    } catch (e) {
      setMsg({ ok: false, text: `${label}: ${e instanceof Error ? e.message : String(e)}` });
    } finally {
      setBusy("");
    }
  }
  const status = busy ? (
    <div class="progress" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> {busy}… {((Date.now() - since) / 1000).toFixed(0)} s
    </div>
  ) : msg ? (
    <div class={msg.ok ? "notice ok" : "notice bad"} role={msg.ok ? "status" : "alert"}>{msg.text}</div>
  ) : null;
  return { busy, run, status };
}

export function go(path: string) { location.hash = "#/" + path; }
