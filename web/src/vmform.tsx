// vmform.tsx: the VM settings form, shared by "New VM" (POST /v1/vms) and a
// VM's settings (PATCH /v1/vms/{name}). The API is the validator: its error
// names the field and the form shows the message beside that field.
import { useState } from "preact/hooks";
import { Nic, Vm } from "./api";
import { Field, FieldErrors, errorsFrom } from "./ui";

export const VM_FIELDS = ["name", "cpus", "memory_mib", "kernel", "initrd", "cmdline", "disks", "nics", "rng",
  "autostart", "restart_policy", "cpu_weight", "cpu_max"];
const LIVE = ["autostart", "restart_policy", "cpu_weight", "cpu_max"]; // may change while the VM runs

type Form = Record<string, string>;

/** A NIC as one word of the form: "tap:NAME", "switch:NAME" or "user"
 * (a bare word is a tap, as before switches existed), and ",queues=N" when
 * it has more than one queue pair (the CLI's "--nic lab,queues=N"). */
function nicBase(n: Nic): string {
  return n.user ? "user" : n.switch ? `switch:${n.switch}` : `tap:${n.tap || ""}`;
}
export function nicWord(n: Nic): string {
  return nicBase(n) + (n.queues && n.queues > 1 ? `,queues=${n.queues}` : "");
}

/** The NICs to send: a word the VM already had keeps its NIC whole (MAC,
 * VLAN, policy, forwards); a new word makes a new NIC. "queues=N" after a
 * word sets that NIC's queue pairs; without it the NIC has one. */
function nicsFromWords(text: string, old: Nic[]): Nic[] {
  const left = [...old];
  const out: Nic[] = [];
  for (const w of text.split(/[\s,]+/).filter(Boolean)) {
    const q = /^queues=(.*)$/.exec(w);
    if (q) { /* the API names nics[i].queues if it is wrong, or nics[i] if no NIC is before it */
      const queues = num(q[1]) as number;
      if (out.length) out[out.length - 1] = { ...out[out.length - 1], queues };
      else out.push({ queues });
      continue;
    }
    const i = left.findIndex((n) => nicBase(n) === w || (!w.includes(":") && nicBase(n) === `tap:${w}`));
    let nic: Nic;
    if (i >= 0) {
      nic = { ...left.splice(i, 1)[0] };
      delete nic.queues;
    } else if (w === "user") nic = { user: true };
    else if (w.startsWith("switch:")) nic = { switch: w.slice(7) };
    else nic = { tap: w.startsWith("tap:") ? w.slice(4) : w };
    out.push(nic);
  }
  return out;
}

function toForm(v?: Partial<Vm>): Form {
  return {
    name: v?.name || "", cpus: String(v?.cpus ?? 1), memory_mib: String(v?.memory_mib ?? 128),
    kernel: v?.kernel || "", initrd: v?.initrd || "", cmdline: v?.cmdline || "",
    disks: (v?.disks || []).map((d) => d.path + (d.readonly ? ":ro" : "")).join("\n"),
    nics: (v?.nics || []).map(nicWord).join(" "),
    rng: String(!!v?.rng), autostart: String(!!v?.autostart), restart_policy: v?.restart_policy || "never",
    cpu_weight: String(v?.cpu_weight ?? 100), cpu_max: String(v?.cpu_max ?? 100),
  };
}

function num(s: string): number | string { return /^-?\d+$/.test(s.trim()) ? Number(s) : s; }

/** The body to send: every field for a new VM, the changed ones for a change. */
function toBody(f: Form, base: Form | null, oldNics: Nic[] = []): Record<string, unknown> {
  const all: Record<string, unknown> = {
    name: f.name.trim(), cpus: num(f.cpus), memory_mib: num(f.memory_mib), kernel: f.kernel.trim(),
    initrd: f.initrd.trim() || null, cmdline: f.cmdline,
    disks: f.disks.split("\n").map((l) => l.trim()).filter(Boolean).map((l) =>
      l.endsWith(":ro") ? { path: l.slice(0, -3), readonly: true } : { path: l }),
    nics: nicsFromWords(f.nics, oldNics),
    rng: f.rng === "true", autostart: f.autostart === "true", restart_policy: f.restart_policy,
    cpu_weight: num(f.cpu_weight), cpu_max: num(f.cpu_max),
  };
  if (!base) {
    if (!f.initrd.trim()) delete all.initrd;
    if (!f.kernel.trim()) delete all.kernel; /* the first disk's /boot */
    return all;
  }
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(f)) if (k !== "name" && f[k] !== base[k]) out[k] = all[k];
  return out;
}

export function VmForm({ vm, running, submitLabel, onSubmit }: {
  vm?: Vm; running?: boolean; submitLabel: string; onSubmit: (body: Record<string, unknown>) => Promise<unknown>;
}) {
  const [base] = useState(() => (vm ? toForm(vm) : null));
  const [f, setF] = useState<Form>(() => toForm(vm));
  const [errors, setErrors] = useState<FieldErrors>({});
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState("");
  const set = (k: string) => (v: string) => { setF({ ...f, [k]: v }); setSaved(""); };
  const off = (k: string) => !!running && !LIVE.includes(k);
  async function submit(e: Event) {
    e.preventDefault();
    const body = toBody(f, base, vm?.nics || []);
    if (!Object.keys(body).length) { setSaved("Nothing changed."); return; }
    setBusy(true); setErrors({}); setSaved("");
    try {
      await onSubmit(body);
      setSaved(vm ? "Saved." : "");
    } catch (err) {
      const es = errorsFrom(err, VM_FIELDS);
      setErrors(es);
      const first = Object.keys(es).find((k) => k !== "_form");
      if (first) document.getElementById(`f-${first}`)?.focus();
    } finally { setBusy(false); }
  }
  const p = { errors };
  return (
    <form class="vmform" onSubmit={submit} noValidate aria-label={submitLabel}>
      {running && <p class="muted">While the VM runs only autostart, restart policy and CPU limits can change.</p>}
      <div class="grid">
        <Field {...p} name="name" label="Name" value={f.name} onInput={set("name")} required disabled={!!vm}
          hint="Letters, digits, dot, dash, underscore" />
        <Field {...p} name="cpus" label="vCPUs" type="number" min={1} value={f.cpus} onInput={set("cpus")} disabled={off("cpus")} />
        <Field {...p} name="memory_mib" label="Memory (MiB)" type="number" min={8} value={f.memory_mib} onInput={set("memory_mib")} disabled={off("memory_mib")} />
        <Field {...p} name="kernel" label="Kernel (absolute path on the host)" value={f.kernel} onInput={set("kernel")}
          hint="empty: boot the kernel in the first disk's own /boot" disabled={off("kernel")} />
        <Field {...p} name="initrd" label="Initrd (optional)" value={f.initrd} onInput={set("initrd")} disabled={off("initrd")} />
        <Field {...p} name="cmdline" label="Kernel command line" value={f.cmdline} onInput={set("cmdline")} disabled={off("cmdline")} />
        <div class={`field wide${errors.disks ? " has-error" : ""}`}>
          <label for="f-disks">Disks (one image path a line; append :ro for read-only)</label>
          <textarea id="f-disks" name="disks" rows={2} value={f.disks} disabled={off("disks")} aria-invalid={errors.disks ? true : undefined}
            aria-describedby={errors.disks ? "f-disks-err" : undefined} onInput={(e) => set("disks")((e.target as HTMLTextAreaElement).value)} />
          {errors.disks && <small id="f-disks-err" class="error" role="alert" data-field-error="disks">{errors.disks}</small>}
        </div>
        <Field {...p} name="nics" label="NICs (tap:NAME, switch:NAME or user)" value={f.nics} onInput={set("nics")} disabled={off("nics")}
          hint="switch:NAME,queues=N: N queue pairs (multiqueue, 1-3, at most the vCPUs)" />
        <Field {...p} name="restart_policy" label="Restart policy" value={f.restart_policy} onInput={set("restart_policy")}
          options={["never", "on-crash", "always"]} />
        <Field {...p} name="cpu_weight" label="CPU weight" type="number" value={f.cpu_weight} onInput={set("cpu_weight")} />
        <Field {...p} name="cpu_max" label="CPU cap (%)" type="number" value={f.cpu_max} onInput={set("cpu_max")} />
        <Field {...p} name="rng" label="Random number device" type="checkbox" value={f.rng} onInput={set("rng")} disabled={off("rng")} />
        <Field {...p} name="autostart" label="Start with the host" type="checkbox" value={f.autostart} onInput={set("autostart")} />
      </div>
      {errors._form && <p class="error" role="alert">{errors._form}</p>}
      <div class="row">
        <button type="submit" class="primary" disabled={busy}>{busy ? "Saving…" : submitLabel}</button>
        {saved && <span role="status" class="ok">{saved}</span>}
      </div>
    </form>
  );
}
