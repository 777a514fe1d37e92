// images.tsx: the images of cellad's storage locations (GET /v1/images):
// each location's images as trees of backing chains (a layer indented
// under the image it backs), with format, virtual size and allocation, the
// VMs that use them and the jobs on them; forms to create, grow, convert,
// back up and delete images. The API validates: its error.field puts the
// message beside that field. Converts and backups are jobs (202): their
// phase and percent come from the listing, polled while one runs.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, api, fmtBytes } from "./api";
import { Field, FieldErrors, errorsFrom, useInterval } from "./ui";

export interface ImgRef { location?: string; name?: string; path?: string; missing?: boolean }
export interface ImgJob { id: string; kind: string; phase: string; percent: number; running: boolean;
  error?: string | null; location: string; image: string; target_location: string; target: string }
export interface Img { location: string; name: string; path: string; kind: string; format?: string | null;
  virtual_size: number; file_bytes: number; allocated: number; backing?: ImgRef | null; chain: ImgRef[];
  depth: number; used_by: { vm: string; disk: string; state: string; layer: string }[];
  checkpoints: { vm: string; checkpoint: string }[]; backing_of: string[]; tracking: boolean; in_use: boolean;
  backup?: { point: string; since: string }; error?: string; job?: ImgJob | null }
export interface ImgLocation { name: string; path: string; role: string; writable: boolean; images: Img[] }
export interface ImgList { locations: ImgLocation[]; jobs: ImgJob[] }

const imgPath = (i: { name: string; location: string }, sfx = "") =>
  `/v1/images/${encodeURIComponent(i.name)}${sfx}?location=${encodeURIComponent(i.location)}`;

/** Rows in tree order: every image under the image it is backed by. */
function treeRows(loc: ImgLocation): { img: Img; level: number }[] {
  const by = new Map(loc.images.map((i) => [i.name, i]));
  const kids = new Map<string, Img[]>();
  const roots: Img[] = [];
  for (const i of loc.images) {
    const b = i.backing;
    if (b && b.location === loc.name && b.name && by.has(b.name) && b.name !== i.name) {
      const k = kids.get(b.name) || [];
      k.push(i);
      kids.set(b.name, k);
    } else roots.push(i);
  }
  const out: { img: Img; level: number }[] = [];
  const seen = new Set<string>();
  const walk = (i: Img, level: number) => {
    if (seen.has(i.name)) return;
    seen.add(i.name);
    out.push({ img: i, level });
    for (const k of (kids.get(i.name) || []).sort((a, b) => a.name.localeCompare(b.name))) walk(k, level + 1);
  };
  roots.sort((a, b) => a.name.localeCompare(b.name)).forEach((r) => walk(r, 0));
  loc.images.forEach((i) => walk(i, 0)); // a loop: shown flat
  return out;
}

function JobStatus({ job }: { job: ImgJob }) {
  const label = `${job.kind} to ${job.target_location}/${job.target}`;
  if (job.running)
    return (
      <div class="job" role="status" aria-live="polite">
        <label>{label}: {job.phase} {job.percent}%
          <progress max={100} value={job.percent} aria-label={`${label} progress`} /></label>
      </div>
    );
  return job.error ? <span class="error">{label} failed: {job.error}</span>
    : <span class="ok">{label}: done</span>;
}

type Action = { kind: "resize" | "convert" | "backup" | "delete"; img: Img };

const CREATE_FIELDS = ["location", "name", "format", "size", "backing"];

function CreateForm({ list, onDone }: { list: ImgList; onDone: (msg: string) => void }) {
  const writable = list.locations.filter((l) => l.writable);
  const [f, setF] = useState({ location: writable[0]?.name || "", name: "", format: "qcow2", size: "", backing: "" });
  const [errors, setErrors] = useState<FieldErrors>({});
  const [busy, setBusy] = useState(false);
  useEffect(() => { if (!f.location && writable[0]) setF({ ...f, location: writable[0].name }); }, [list]);
  if (!writable.length) return <p class="muted">Your role may not create images in any storage location.</p>;
  const set = (k: string) => (v: string) => setF({ ...f, [k]: v });
  const loc = list.locations.find((l) => l.name === f.location);
  async function submit(e: Event) {
    e.preventDefault();
    const body: Record<string, unknown> = { location: f.location, name: f.name.trim(), format: f.format };
    if (f.size.trim()) body.size = /^\d+$/.test(f.size.trim()) ? Number(f.size.trim()) : f.size.trim();
    if (f.backing) body.backing = f.backing;
    setBusy(true); setErrors({});
    try {
      await api("POST", "/v1/images", body);
      setF({ ...f, name: "", size: "", backing: "" });
      onDone(`Created ${f.location}/${body.name}.`);
    } catch (err) {
      const es = errorsFrom(err, CREATE_FIELDS);
      setErrors(es);
      const first = Object.keys(es).find((k) => k !== "_form");
      if (first) document.getElementById(`f-new-${first}`)?.focus();
    } finally { setBusy(false); }
  }
  const p = { errors, idPrefix: "new-" };
  return (
    <form class="card imgform" onSubmit={submit} noValidate aria-labelledby="new-image-h">
      <h2 id="new-image-h">New image</h2>
      <div class="grid">
        <Field {...p} name="location" label="Storage location" value={f.location} onInput={set("location")}
          options={writable.map((l) => l.name)} />
        <Field {...p} name="name" label="File name" value={f.name} onInput={set("name")} required
          hint="e.g. web.qcow2: letters, digits, dot, dash, underscore" />
        <Field {...p} name="format" label="Format" value={f.format} onInput={set("format")} options={["qcow2", "raw"]} />
        <Field {...p} name="size" label="Virtual size" value={f.size} onInput={set("size")}
          hint={f.backing ? "optional: the backing image's size" : "bytes, or with K, M, G, T (e.g. 10G)"} />
        <Field {...p} name="backing" label="Backing image (qcow2)" value={f.backing} onInput={set("backing")}
          options={["", ...(loc?.images.filter((i) => i.kind === "image").map((i) => i.name) || [])]} />
      </div>
      {errors._form && <p class="error" role="alert">{errors._form}</p>}
      <button type="submit" class="primary" disabled={busy}>{busy ? "Creating…" : "Create image"}</button>
    </form>
  );
}

const ACTION_FIELDS = ["size", "target", "location", "format", "point", "since", "file"];

function ActionForm({ act, list, onClose, onDone }: {
  act: Action; list: ImgList; onClose: () => void; onDone: (msg: string) => void;
}) {
  const { kind, img } = act;
  const [f, setF] = useState({ size: "", target: "", location: img.location, format: kind === "convert" ? "raw" : "qcow2",
    point: "", since: "" });
  const [errors, setErrors] = useState<FieldErrors>({});
  const [busy, setBusy] = useState(false);
  const set = (k: string) => (v: string) => setF({ ...f, [k]: v });
  const formRef = useRef<HTMLFormElement>(null);
  useEffect(() => {
    const first = formRef.current?.querySelector<HTMLElement>("input, select, button");
    first?.focus();
    formRef.current?.scrollIntoView?.({ block: "nearest" });
  }, []);
  const title = { resize: "Grow", convert: "Convert", backup: "Back up", delete: "Delete" }[kind];
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true); setErrors({});
    try {
      if (kind === "delete") {
        await api("DELETE", imgPath(img));
        onDone(`Deleted ${img.location}/${img.name}.`);
      } else if (kind === "resize") {
        const size = /^\d+$/.test(f.size.trim()) ? Number(f.size.trim()) : f.size.trim();
        await api("POST", imgPath(img, "/resize"), { size });
        onDone(`${img.location}/${img.name} is now ${f.size.trim()}.`);
      } else {
        const body: Record<string, unknown> = { target: f.target.trim(), location: f.location };
        if (kind === "convert" || !f.point.trim()) body.format = f.format;
        if (kind === "backup" && f.point.trim()) {
          body.point = f.point.trim();
          if (f.since.trim()) body.since = f.since.trim();
        }
        await api("POST", imgPath(img, `/${kind}`), body);
        onDone(`${title} of ${img.name} to ${f.location}/${body.target} started.`);
      }
    } catch (err) {
      const es = errorsFrom(err, ACTION_FIELDS);
      setErrors(es);
      const first = Object.keys(es).find((k) => k !== "_form");
      if (first) document.getElementById(`f-act-${first}`)?.focus();
    } finally { setBusy(false); }
  }
  const p = { errors, idPrefix: "act-" };
  const writable = list.locations.filter((l) => l.writable).map((l) => l.name);
  return (
    <form class="card imgform" onSubmit={submit} noValidate aria-labelledby="act-h" ref={formRef}>
      <h2 id="act-h">{title} {img.location}/{img.name}</h2>
      {kind === "delete" && <p>The file goes for good{img.tracking ? ", with its change-tracking file" : ""}.</p>}
      <div class="grid">
        {kind === "resize" && <Field {...p} name="size" label="New virtual size" value={f.size} onInput={set("size")} required
          hint={`now ${fmtBytes(img.virtual_size)}; growing only (e.g. 20G)`} />}
        {(kind === "convert" || kind === "backup") && <>
          <Field {...p} name="target" label="New file name" value={f.target} onInput={set("target")} required />
          <Field {...p} name="location" label="Into storage location" value={f.location} onInput={set("location")} options={writable} />
          {(kind === "convert" || !f.point.trim()) &&
            <Field {...p} name="format" label="Format" value={f.format} onInput={set("format")} options={["qcow2", "raw"]} />}
        </>}
        {kind === "backup" && <>
          <Field {...p} name="point" label="Tracking point to start (optional)" value={f.point} onInput={set("point")}
            hint="needs a VM disk with change tracking; the backup is raw" />
          <Field {...p} name="since" label="Incremental since point (optional)" value={f.since} onInput={set("since")} />
        </>}
      </div>
      {errors.file && <p class="error" role="alert" data-field-error="file">{errors.file}</p>}
      {errors._form && <p class="error" role="alert">{errors._form}</p>}
      <div class="row">
        <button type="submit" class={kind === "delete" ? "danger" : "primary"} disabled={busy}>
          {busy ? `${title}…` : `${title} ${img.name}`}</button>
        <button type="button" onClick={onClose}>Cancel</button>
      </div>
    </form>
  );
}

function Users({ img }: { img: Img }) {
  const u = img.used_by.map((x) => <span class="user">
    <a href={`#/vms/${encodeURIComponent(x.vm)}/disks`}>{x.vm}</a> {x.layer}{x.disk ? ` ${x.disk}` : ""} ({x.state})</span>);
  const cps = img.checkpoints.map((c) => <span class="user">checkpoint {c.checkpoint} of {c.vm}</span>);
  return u.length || cps.length ? <>{u}{cps}</> : <span class="muted">none</span>;
}

export function ImagesSection() {
  const [list, setList] = useState<ImgList | null>(null);
  const [err, setErr] = useState("");
  const [act, setAct] = useState<Action | null>(null);
  const [msg, setMsg] = useState("");
  async function load() {
    try { setList(await api<ImgList>("GET", "/v1/images")); setErr(""); }
    catch (e) { setErr(e instanceof ApiError ? e.message : String(e)); }
  }
  const running = !!list?.jobs.some((j) => j.running);
  useInterval(load, running ? 1000 : 5000, [running]);
  const done = (m: string) => { setMsg(m); setAct(null); load(); };
  if (err && !list) return <p class="error" role="alert">Images: {err}</p>;
  if (!list) return <p role="status">Loading images…</p>;
  const jobs = list.jobs.slice(0, 5);
  return (
    <div class="images">
      {msg && <p class="notice ok" role="status">{msg}</p>}
      {!list.locations.length && <p class="muted">cellad has no storage locations ("storage" in cellad.json).</p>}
      {jobs.length > 0 && <section class="card" aria-labelledby="jobs-h"><h2 id="jobs-h">Jobs</h2>
        <ul class="jobs">{jobs.map((j) => <li><JobStatus job={j} /></li>)}</ul></section>}
      {list.locations.map((loc) => (
        <section aria-labelledby={`loc-${loc.name}`}>
          <h2 id={`loc-${loc.name}`}>Storage {loc.name} <span class="muted path">{loc.path}</span></h2>
          {!loc.images.length ? <p class="muted">No images.</p> : (
            <div class="table-wrap"><table class="imgs">
              <caption class="muted">Backing chains: an image is indented under the image it is backed by.</caption>
              <thead><tr><th scope="col">Image</th><th scope="col">Format</th><th scope="col">Virtual size</th>
                <th scope="col">Allocated</th><th scope="col">Used by</th><th scope="col">Actions</th></tr></thead>
              <tbody>{treeRows(loc).map(({ img, level }) => (
                <tr data-image={img.name}>
                  <td class={`tree-cell lvl-${Math.min(level, 6)}`}>
                    {level > 0 && <span class="branch" aria-hidden="true">└ </span>}
                    <span class="path">{img.name}</span>
                    {level > 0 && <span class="visually-hidden"> (over {img.backing?.name})</span>}
                    {img.backing && img.backing.path && <small class="muted"> over {img.backing.path}{img.backing.missing ? " (missing)" : ""}</small>}
                    {img.kind !== "image" && <small class="muted"> {img.kind}{img.backup ? `: ${img.backup.since ? `since ${img.backup.since}, ` : ""}point ${img.backup.point}` : ""}{img.error ? `: ${img.error}` : ""}</small>}
                    {img.tracking && <small class="muted"> tracked</small>}
                    {img.job && (img.job.running || img.job.error) && <div><JobStatus job={img.job} /></div>}
                  </td>
                  <td>{img.format || "-"}</td>
                  <td data-size={img.virtual_size}>{fmtBytes(img.virtual_size)}</td>
                  <td>{fmtBytes(img.allocated)} <small class="muted">({fmtBytes(img.file_bytes)} on disk)</small></td>
                  <td><Users img={img} /></td>
                  <td>{loc.writable && img.kind === "image" ? (
                    <div class="row">
                      <button type="button" onClick={() => setAct({ kind: "resize", img })} aria-label={`Grow ${img.name}`}>Grow</button>
                      <button type="button" onClick={() => setAct({ kind: "convert", img })} aria-label={`Convert ${img.name}`}>Convert</button>
                      <button type="button" onClick={() => setAct({ kind: "backup", img })} aria-label={`Back up ${img.name}`}>Back up</button>
                      <button type="button" class="danger" onClick={() => setAct({ kind: "delete", img })} aria-label={`Delete ${img.name}`}>Delete</button>
                    </div>) : loc.writable ? (
                      <button type="button" class="danger" onClick={() => setAct({ kind: "delete", img })} aria-label={`Delete ${img.name}`}>Delete</button>
                    ) : <span class="muted">read-only</span>}</td>
                </tr>))}
              </tbody>
            </table></div>)}
        </section>))}
      {act && <ActionForm key={`${act.kind}-${act.img.location}-${act.img.name}`} act={act} list={list}
        onClose={() => setAct(null)} onDone={done} />}
      {list.locations.length > 0 && <CreateForm list={list} onDone={done} />}
    </div>
  );
}
