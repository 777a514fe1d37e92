// console.tsx: a VM's serial console in xterm.js. Output and input go over
// the WebSocket GET /v1/vms/{name}/console/ws (history first, then live
// bytes; input as binary frames; {"resize": [cols, rows]} on resize). Where
// that socket cannot be opened, the HTTP stream GET .../console?follow=true
// and POST .../console carry the same bytes. After a blip it reconnects and
// redraws from the history. A VM another pool host runs whose socket this
// host refuses (its owner cannot be reached, or it forwards too many
// consoles) is said to run there, with the owner's address: no reconnecting.
import { useEffect, useRef, useState } from "preact/hooks";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { PoolStatus, get, vmPath } from "./api";
import { mirrorStyles } from "./cspstyle";
import { store } from "./store";
import { Heading, StateBadge, useStore } from "./ui";

type Link = { send(b: Uint8Array): void; resize(c: number, r: number): void; close(): void };

function openWs(name: string, onData: (b: Uint8Array) => void, onOpen: () => void, onClose: (why: string, opened: boolean) => void,
  onError: (msg: string) => void): Link {
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${vmPath(name)}/console/ws`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let opened = false;
  ws.onopen = () => { opened = true; onOpen(); };
  ws.onmessage = (m) => {
    // Binary frames are the console's bytes; a text frame is cellad's JSON
    // error about our input (a viewer typing, the guest's input full).
    if (typeof m.data !== "string") { onData(new Uint8Array(m.data as ArrayBuffer)); return; }
    try { onError(JSON.parse(m.data).error?.message || m.data); } catch { onError(m.data); }
  };
  ws.onclose = (e) => onClose(e.reason || `closed (${e.code})`, opened);
  return {
    send: (b) => { if (ws.readyState === WebSocket.OPEN) ws.send(b); },
    resize: (c, r) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [c, r] })); },
    close: () => ws.close(1000, "page left"),
  };
}

function openHttp(name: string, onData: (b: Uint8Array) => void, onOpen: () => void, onClose: (why: string, opened: boolean) => void,
  onError: (msg: string) => void): Link {
  const ctl = new AbortController();
  let opened = false;
  (async () => {
    try {
      const r = await fetch(`${vmPath(name)}/console?history=65536&follow=true`, { credentials: "same-origin", signal: ctl.signal });
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      opened = true; onOpen();
      const rd = r.body.getReader();
      for (;;) {
        const { value, done } = await rd.read();
        if (done) break;
        if (value) onData(value);
      }
      onClose("the console stream ended", opened);
    } catch (e) {
      if (!ctl.signal.aborted) onClose(e instanceof Error ? e.message : String(e), opened);
    }
  })();
  // Keystrokes in order, one request at a time, batched while one is out.
  let pending: number[] = [];
  let sending = false;
  async function flush() {
    if (sending || !pending.length) return;
    sending = true;
    const body = new Uint8Array(pending); pending = [];
    try {
      const r = await fetch(`${vmPath(name)}/console`, { method: "POST", credentials: "same-origin", body,
        headers: { "Content-Type": "application/octet-stream" } });
      if (!r.ok) onError((await r.json().catch(() => null))?.error?.message || `input: HTTP ${r.status}`);
    } catch { /* the stream's reconnect reports it */ }
    sending = false;
    flush();
  }
  return {
    send: (b) => { pending.push(...b); flush(); },
    resize: () => {},
    close: () => ctl.abort(),
  };
}

/** Where the VM runs when another pool host runs it: its name and address
 * (GET /v1/pool), or null (this host, no pool, or not known). */
async function remoteOwner(name: string): Promise<{ host: string; address: string } | null> {
  if (!store.vms.get(name)?.host) return null; // not in a pool: nothing to ask
  try {
    const p = await get<PoolStatus>("/v1/pool");
    const h = p.hosts.find((x) => x.vms.includes(name));
    return h && h.name !== p.host ? { host: h.name, address: h.address || "" } : null;
  } catch { return null; }
}

export function ConsolePage({ name }: { name: string }) {
  const s = useStore();
  const vm = s.vms.get(name);
  const box = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState("connecting");
  const [transport, setTransport] = useState("");
  const [inputError, setInputError] = useState("");
  const [elsewhere, setElsewhere] = useState<{ host: string; address: string } | null>(null);
  const readOnly = s.session?.role === "viewer";
  useEffect(() => {
    const el = box.current!;
    const unmirror = mirrorStyles(el);
    const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    const term = new Terminal({
      convertEol: true, cursorBlink: true, scrollback: 5000, fontSize: 14,
      screenReaderMode: false, disableStdin: readOnly,
      theme: dark ? { background: "#111418", foreground: "#e6e6e6" } : { background: "#fbfbfb", foreground: "#1b1b1b", cursor: "#333", selectionBackground: "#b5d5ff" },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(el);
    try { fit.fit(); } catch { /* not laid out yet */ }
    term.textarea?.setAttribute("aria-label", `Console of ${name}`);
    let link: Link | null = null;
    let closed = false;
    let useHttp = false;
    let delay = 300;
    let timer = 0;
    (window as unknown as { cellaTerm?: Terminal }).cellaTerm = term; // for tests and benchmarks
    const enc = new TextEncoder();
    const connect = () => {
      if (closed) return;
      setStatus("connecting");
      const open = useHttp ? openHttp : openWs;
      let first = true;
      link = open(name, (b) => {
        if (first) { term.reset(); first = false; }
        term.write(b);
        el.dataset.bytes = String(Number(el.dataset.bytes || 0) + b.length);
      }, () => {
        setStatus("connected"); setTransport(useHttp ? "HTTP stream" : "WebSocket"); delay = 300;
        link?.resize(term.cols, term.rows);
      }, (why, opened) => {
        if (closed) return;
        if (!opened && !useHttp) {
          // Refused: a VM another pool host runs is said to run there.
          void remoteOwner(name).then((o) => {
            if (closed) return;
            if (o) { setElsewhere(o); setStatus(`VM ${name} runs on host ${o.host}`); return; }
            useHttp = true; connect();
          });
          return;
        }
        setStatus(`disconnected: ${why}; reconnecting`);
        timer = window.setTimeout(connect, delay);
        delay = Math.min(delay * 2, 5000);
      }, setInputError);
    };
    connect();
    const d1 = term.onData((d) => link?.send(enc.encode(d)));
    const d2 = term.onBinary((d) => link?.send(Uint8Array.from(d, (c) => c.charCodeAt(0))));
    const d3 = term.onResize(({ cols, rows }) => link?.resize(cols, rows));
    const ro = new ResizeObserver(() => { try { fit.fit(); } catch { /* hidden */ } });
    ro.observe(el);
    term.focus();
    return () => {
      closed = true; window.clearTimeout(timer);
      link?.close(); ro.disconnect(); d1.dispose(); d2.dispose(); d3.dispose(); term.dispose(); unmirror();
    };
  }, [name]);
  return (
    <section class="console-page">
      <div class="row">
        <Heading>Console: {name}</Heading>
        {vm && <StateBadge state={vm.state} />}
        <a href={`#/vms/${encodeURIComponent(name)}`}>VM page</a>
      </div>
      <p class="muted" role="status" id="console-status" data-status={status} data-transport={transport}>
        {status}{transport && status === "connected" ? ` (${transport})` : ""}.
        {readOnly ? " Read-only: typing needs the operator role." : " Copy: select text; paste: Ctrl+Shift+V."}
      </p>
      {elsewhere && (
        <p class="notice" role="alert" id="console-elsewhere" data-host={elsewhere.host}>
          VM {name} runs on host {elsewhere.host}; its console cannot be opened from this host now.
          {elsewhere.address ? <> Open it there: <a href={`${elsewhere.address}/ui/#/console/${encodeURIComponent(name)}`}>{elsewhere.address}</a>.</> : ""}
        </p>)}
      {inputError && <p class="error" role="alert" id="console-error">{inputError}</p>}
      <div class="term" ref={box} id="term" />
    </section>
  );
}
