// test_pool.mjs (web-pool): the dashboard of a host in a pool. daemon.py
// --pool 2 starts one etcd member (mutual TLS on loopback) and two cellads
// in a pool given by configuration: host-a (the browser's, 2048 MiB) and
// host-b (1024 MiB, reached here over its Unix socket only).
//   - the dashboard's Pool section lists both members, up, with the
//     capacity GET /v1/pool gives (vCPUs, memory) and what their VMs use;
//   - a VM started on host-b (no event reaches host-a's stream) shows in
//     host-b's row and totals, and in the VM list with its host, without a
//     reload; the VM list has a Host column;
//   - the console page of host-b's echo guest on host-a: its history and a
//     typed line's echo come through host-a's WebSocket (forwarded to
//     host-b over the hosts' mutual TLS);
//   - host-b's cellad stopped: its row turns down at once (the pool event);
//     its VM's console page then says where the VM runs, with no reconnect
//     loop;
//   - the dashboard asks only GET /v1/host and GET /v1/pool per tick;
//   - axe-core: no serious violations on the pool dashboard and list, in
//     light, dark and at phone width; screenshots dashboard-pool*.png.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, test } from "node:test";
import { apiCall, axeSource, launchBrowser, login, newPage, shot, skipReason, sockCall, startDaemon, until } from "./lib.mjs";

function etcdMissing() {
  try { execFileSync("sh", ["-c", "command -v etcd"], { stdio: "ignore" }); return ""; }
  catch { return "etcd is not installed (apt-get install etcd-server etcd-client)"; }
}
const why = skipReason() || etcdMissing();
if (why) console.log(`${"#".repeat(72)}\n# SKIP: ${why}\n${"#".repeat(72)}`);
let d, browser, page, hostB;

/** The terminal's text (xterm's buffer), one string. */
async function termText() {
  return page.evaluate(() => {
    const t = window.cellaTerm;
    if (!t) return "";
    const b = t.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  });
}

before(async () => {
  if (why) return;
  d = await startDaemon({}, { pool: 2 });
  hostB = d.pool.hosts["host-b"];
  browser = await launchBrowser();
  page = await newPage(browser);
  let r = await apiCall(d, "POST", "/v1/vms", { name: "pa", kernel: d.guests.echo, memory_mib: 64 });
  assert.equal(r.status, 201, r.text);
  r = await sockCall(hostB.sock, "POST", "/v1/vms", { name: "pb", kernel: d.guests.echo, memory_mib: 48, cpus: 2 });
  assert.equal(r.status, 201, r.text);
});
after(async () => {
  await browser?.close();
  await d?.stop();
});

const row = (host) => page.locator(`[data-testid=pool] tr[data-host="${host}"]`);
const cell = async (host, col) => (await row(host).locator(`[data-col=${col}]`).textContent()).trim();

async function axe(p) {
  await p.evaluate(axeSource);
  return p.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
}

test("web pool: members with capacity and use, a VM with its host, live", { skip: why || false, timeout: 240000 }, async (t) => {
  const api = (await apiCall(d, "GET", "/v1/pool")).json;
  const cap = Object.fromEntries(api.hosts.map((h) => [h.name, h]));
  assert.deepEqual(Object.keys(cap).sort(), ["host-a", "host-b"]);
  assert.equal(cap["host-a"].memory_mib, 2048);
  assert.equal(cap["host-b"].memory_mib, 1024);
  assert.equal((await apiCall(d, "GET", "/v1/host")).json.pool?.host, "host-a", "GET /v1/host names this host's pool name");
  await login(page, d);

  await t.test("the Pool section lists both members, up, with their capacity", async () => {
    await page.getByRole("heading", { name: "Pool web" }).waitFor();
    for (const h of ["host-a", "host-b"]) {
      await row(h).locator("[data-state=up]").waitFor();
      assert.equal(await cell(h, "cpus"), `0 of ${cap[h].cpus}`, `${h}'s vCPUs`);
    }
    assert.match(await cell("host-a", "mem"), /^0 B of 2\.0 GiB/);
    assert.equal(await cell("host-a", "free"), "2.0 GiB");
    assert.equal(await cell("host-b", "free"), "1.0 GiB");
    assert.match(await row("host-a").textContent(), /\(this host\)/);
    const totals = await page.getByTestId("pool-totals").textContent();
    assert.match(totals, /2 up of 2/);
    assert.match(totals, /0 running of 2/);
    assert.match(totals, /Memory of running VMs \(hosts up\): 0 B of 3\.0 GiB, 3\.0 GiB free/);
  });

  await t.test("VMs started on each host show in their host's row, live", async () => {
    assert.equal((await apiCall(d, "POST", "/v1/vms/pa/start", { host: "host-a" })).status, 200);
    const r = await sockCall(hostB.sock, "POST", "/v1/vms/pb/start", { host: "host-b" });
    assert.equal(r.status, 200, r.text);
    await until(async () => (await cell("host-b", "running")) === "1 of 1", "host-b's row: 1 of 1 running", 60000);
    await until(async () => (await cell("host-a", "running")) === "1 of 1", "host-a's row: 1 of 1 running", 60000);
    assert.equal(await cell("host-b", "cpus"), `2 of ${cap["host-b"].cpus}`);
    assert.match(await cell("host-b", "mem"), /^48\.0 MiB of 1\.0 GiB/);
    assert.equal(await cell("host-b", "free"), "976.0 MiB");
    assert.match(await cell("host-a", "mem"), /^64\.0 MiB of 2\.0 GiB/);
    const st = (await apiCall(d, "GET", "/v1/pool")).json;
    assert.deepEqual(st.hosts.find((h) => h.name === "host-b").use,
      { cpus: 2, memory_mib: 48, running: 1, ha_vms: 0, states: { running: 1 } }, "GET /v1/pool: host-b's use");
    assert.equal(st.lease, "held", "this host's lease");
    const totals = await page.getByTestId("pool-totals").textContent();
    assert.match(totals, /2 running of 2/);
    assert.match(totals, /vCPUs of running VMs \(hosts up\): 3 of /);
    // This host's Capacity card counts its own VMs only, against the
    // capacity it offers the pool.
    assert.match(await page.locator(".card", { hasText: "Capacity" }).textContent(), /Memory of running VMs: 64 MiB of 2048 MiB/);
    await shot(page, "dashboard-pool");
  });

  await t.test("the console of host-b's echo guest on host-a's page: output and a typed line's echo", async () => {
    await page.goto(`${d.url}/ui/#/console/pb`);
    await until(async () => (await termText()).includes("echo: ready"), "pb's history through host-a", 60000);
    const st = page.locator("#console-status");
    await until(async () => (await st.getAttribute("data-status")) === "connected", "connected");
    assert.equal(await st.getAttribute("data-transport"), "WebSocket", "host-a's WebSocket, forwarded to host-b");
    await page.locator("#term").click();
    await page.keyboard.type("typed on host-a");
    await page.keyboard.press("Enter");
    await until(async () => (await termText()).includes("echo: typed on host-a"), "the echo of the typed line", 60000);
    const r = await sockCall(hostB.sock, "GET", "/v1/vms/pb/console?history=4096&follow=false");
    assert.match(r.text, /echo: typed on host-a/, "the line reached the guest on host-b");
    assert.equal(await page.locator("#console-error").count(), 0, "no input error");
    await shot(page, "console-pool");
  });

  await t.test("the VM list shows each VM's host, the other host's state kept current", async () => {
    await page.goto(`${d.url}/ui/#/vms`);
    await page.getByRole("columnheader", { name: "Host" }).waitFor();
    await until(async () => (await page.locator("tr[data-vm=pb] [data-col=host]").textContent()) === "host-b", "pb on host-b");
    assert.equal(await page.locator("tr[data-vm=pa] [data-col=host]").textContent(), "host-a");
    await page.locator("tr[data-vm=pb] [data-state=running]").waitFor();
    await shot(page, "vms-pool");
    // Turned off on host-b: no event here; the list follows the pool's view.
    const r = await sockCall(hostB.sock, "POST", "/v1/vms/pb/kill");
    assert.equal(r.status, 200, r.text);
    await page.locator("tr[data-vm=pb] [data-state=stopped]").waitFor({ timeout: 30000 });
  });

  await t.test("axe: no serious violations on the pool dashboard and list (light, dark, phone)", async () => {
    const bad = [];
    for (const [scheme, width, height] of [["light", 1280, 720], ["dark", 1280, 720], ["light", 390, 844]]) {
      const p = await newPage(browser, { viewport: { width, height }, colorScheme: scheme, storageState: await page.context().storageState() });
      for (const [name, hash, heading] of [["dashboard-pool", "#/dashboard", "Dashboard"], ["vms-pool", "#/vms", "Virtual machines"]]) {
        await p.goto(`${d.url}/ui/${hash}`);
        await p.getByRole("heading", { name: heading, exact: true }).waitFor();
        if (name === "dashboard-pool") await p.locator('[data-testid=pool] tr[data-host="host-b"] [data-state=up]').waitFor();
        else await p.locator("tr[data-vm=pb] [data-col=host]").waitFor();
        for (const v of await axe(p)) bad.push({ scheme, width, page: name, ...v });
        if (scheme === "dark" || width < 600) await shot(p, `${name}${scheme === "dark" ? "-dark" : "-phone"}`);
        const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 1, `${name} at ${width}px overflows by ${overflow}px`);
      }
      await p.context().close();
    }
    assert.deepEqual(bad, [], JSON.stringify(bad, null, 1));
  });

  await t.test("the dashboard asks GET /v1/host and GET /v1/pool each tick, nothing per VM or host", async () => {
    await page.goto(`${d.url}/ui/#/dashboard`);
    await row("host-b").waitFor();
    const seen = [];
    const on = (req) => { const u = new URL(req.url()); if (u.pathname.startsWith("/v1/")) seen.push(u.pathname); };
    page.on("request", on);
    await until(() => seen.filter((x) => x === "/v1/pool").length >= 2, "two ticks", 20000);
    page.off("request", on);
    const other = seen.filter((x) => !["/v1/host", "/v1/pool", "/v1/vms", "/v1/events"].includes(x));
    assert.deepEqual(other, [], `requests per VM or host: ${other}`);
  });

  await t.test("host-b's cellad stopped: its row turns down at once", async () => {
    // Its VM is off already (above), so no worker outlives its cellad.
    process.kill(hostB.pid, "SIGTERM");
    await row("host-b").locator("[data-state=down]").waitFor({ timeout: 30000 });
    assert.match(await page.getByTestId("pool-totals").textContent(), /1 up of 2/);
  });

  await t.test("host-b down: the console of its VM says where it runs, and stops", async () => {
    await page.goto(`${d.url}/ui/#/console/pb`);
    const note = page.locator("#console-elsewhere");
    await note.waitFor({ timeout: 30000 });
    assert.equal(await note.getAttribute("data-host"), "host-b");
    assert.match(await note.textContent(), /VM pb runs on host host-b/);
    const st = page.locator("#console-status");
    assert.equal(await st.getAttribute("data-status"), "VM pb runs on host host-b");
    // No reconnect loop: no further socket is opened for a while.
    let sockets = 0;
    const on = (ws) => { if (ws.url().includes("/console/ws")) sockets++; };
    page.on("websocket", on);
    await page.waitForTimeout(2000); // an absence: nothing to poll for
    page.off("websocket", on);
    assert.equal(sockets, 0, "the page went on reconnecting");
    assert.equal(await st.getAttribute("data-status"), "VM pb runs on host host-b");
    await shot(page, "console-elsewhere");
  });
});
