// test_jobs.mjs (web-jobs): long actions' progress and the worker's log in
// a real browser against a real cellad:
//   - deleting a checkpoint (its layer merged into its child's): the VM
//     page shows the job's phases as the event stream brings them (begun,
//     merging layers, layer merged, done);
//   - a save held in its "saving" phase (the worker stopped with SIGSTOP):
//     the VM page shows it running with its phase, the header's indicator
//     too; both go once it is done;
//   - the Log tab: empty before the VM ever ran, then (live, without a
//     click) the worker's account of its exit after the VM is turned off;
//     a viewer may read the log too;
//   - the dashboard asks GET /v1/host each tick and nothing per VM;
//   - a NIC's queue pairs on the NICs tab and in the settings form.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall, launchBrowser, login, newPage, shot, skipReason, startDaemon, until } from "./lib.mjs";

const why = skipReason();
let d, browser, page;

before(async () => {
  if (why) return;
  d = await startDaemon();
  browser = await launchBrowser();
  page = await newPage(browser);
  page.on("dialog", (dlg) => dlg.accept()); // "Delete checkpoint …?"
});
after(async () => {
  await browser?.close();
  await d?.stop();
});

test("web jobs: a checkpoint merge's phases, a running save's progress, the worker log", { skip: why || false, timeout: 240000 }, async (t) => {
  const base = join(d.dir, "pj-base.img");
  writeFileSync(base, Buffer.alloc(0));
  await (await import("node:fs/promises")).truncate(base, 8 << 20);
  let r = await apiCall(d, "POST", "/v1/vms", { name: "pj", kernel: d.guests.echo, memory_mib: 32, disks: [{ id: "d0", path: base }] });
  assert.equal(r.status, 201, r.text);
  await login(page, d);

  await t.test("the Log tab: nothing before the first run, the exit after a turn-off, live", async () => {
    await page.goto(`${d.url}/ui/#/vms/pj/log`);
    await page.getByText("The worker has logged nothing yet").waitFor();
    assert.equal((await apiCall(d, "POST", "/v1/vms/pj/start")).status, 200);
    await page.locator(".row [data-state=running]").waitFor({ timeout: 60000 });
    await page.locator("button[data-action=kill]").click();
    await page.locator(".row [data-state=stopped]").waitFor({ timeout: 60000 });
    // The state change reloads the log: no click on Refresh.
    const log = page.getByTestId("worker-log");
    await until(async () => /exit: turned off by the host/.test(await log.textContent().catch(() => "")), "the worker's exit line in the Log tab");
    assert.match(await page.getByTestId("log-size").textContent(), /in all/);
    await shot(page, "vm-log");
    const v = await apiCall(d, "GET", "/v1/vms/pj/log?tail=1", undefined, { Authorization: `Bearer ${d.viewer_token}` });
    assert.equal(v.status, 200, "a viewer reads the log");
    assert.match(v.json.lines[0], /exit: turned off by the host/);
  });

  await t.test("a checkpoint delete shows its merge's phases", async () => {
    for (const cp of ["cp1", "cp2", "cp3"]) {
      r = await apiCall(d, "POST", "/v1/vms/pj/checkpoints", { name: cp, kind: "production" });
      assert.equal(r.status, 201, r.text);
    }
    await page.goto(`${d.url}/ui/#/vms/pj/checkpoints`);
    await page.locator("[data-checkpoint=cp2] [data-checkpoint=cp3]").waitFor();
    // cp2's layer (an overlay cellad made) is merged into cp3's.
    await page.locator("[data-checkpoint=cp2] > .cp").getByRole("button", { name: "Delete" }).click();
    // The creates above were jobs too: wait for the delete's line.
    const line = page.locator("[data-testid=job-progress] .job[data-kind=checkpoint-delete][data-phase=ended]");
    await line.waitFor({ timeout: 60000 });
    const text = await line.getByTestId("job-phases").textContent();
    assert.equal(text, "begun → merging layers → layer merged → done", `the phases in order: ${text}`);
    await page.locator("[data-checkpoint=cp2]").waitFor({ state: "detached" });
    await shot(page, "vm-job-done");
  });

  await t.test("a running save shows its phase on the VM page and in the header", async () => {
    assert.equal((await apiCall(d, "POST", "/v1/vms/pj/start")).status, 200);
    await page.goto(`${d.url}/ui/#/vms/pj/settings`);
    await page.locator(".row [data-state=running]").waitFor({ timeout: 60000 });
    const pid = (await apiCall(d, "GET", "/v1/vms/pj")).json.pid;
    process.kill(pid, "SIGSTOP"); // the save waits for the worker: the job stays in "saving"
    try {
      await page.locator("button[data-action=save]").click();
      const running = page.locator("[data-testid=job-progress] .job.running[data-kind=save]");
      await until(async () => (await running.getAttribute("data-phase").catch(() => "")) === "saving", "the save's saving phase");
      assert.match(await running.textContent(), /Saving: saving memory/);
      assert.equal(await running.locator("progress").count(), 1, "an indeterminate bar (a save knows no percent)");
      const ind = page.getByTestId("jobs-indicator");
      assert.match(await ind.textContent(), /pj: saving memory/);
      await shot(page, "vm-job-running");
      // The indicator is on every page and leads to the VM.
      await page.goto(`${d.url}/ui/#/dashboard`);
      await ind.waitFor();
      assert.equal(await ind.getAttribute("href"), "#/vms/pj");
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await page.getByTestId("jobs-indicator").waitFor({ state: "detached", timeout: 60000 });
    await page.goto(`${d.url}/ui/#/vms/pj/settings`);
    await page.locator(".row [data-state=saved]").waitFor({ timeout: 60000 });
    assert.equal(await page.getByTestId("job-phases").textContent(), "begun → saving memory → saved → done");
    assert.equal((await apiCall(d, "DELETE", "/v1/vms/pj/state")).status, 200);
  });

  await t.test("the dashboard's charts: one request per tick, none per VM", async () => {
    assert.equal((await apiCall(d, "POST", "/v1/vms/pj/start")).status, 200);
    const urls = [];
    const onReq = (rq) => urls.push(new URL(rq.url()).pathname);
    page.on("request", onReq);
    await page.goto(`${d.url}/ui/#/dashboard`);
    await until(() => urls.filter((u) => u === "/v1/host").length >= 3, "three ticks of GET /v1/host", 60000);
    page.off("request", onReq);
    assert.deepEqual(urls.filter((u) => /^\/v1\/vms\/[^/]+\/metrics$/.test(u)), [], "no request per VM");
    // Not in a pool: no pool section, no GET /v1/pool (web-pool has them).
    assert.deepEqual(urls.filter((u) => u === "/v1/pool"), [], "no GET /v1/pool on a single host");
    assert.equal(await page.getByTestId("pool").count(), 0, "no Pool section on a single host");
    assert.equal((await apiCall(d, "GET", "/v1/host")).json.pool, undefined, "GET /v1/host names no pool");
    const usage = (await apiCall(d, "GET", "/v1/host")).json.usage;
    assert.equal(usage.running, 1, JSON.stringify(usage));
    assert.ok(usage.rss_bytes > 0, JSON.stringify(usage));
    assert.equal((await apiCall(d, "POST", "/v1/vms/pj/kill")).status, 200);
  });

  await t.test("a user NIC (passt) on the NICs tab; editing the VM and its NIC list keeps it whole", async () => {
    const port = 20000 + (process.pid % 20000);
    r = await apiCall(d, "POST", "/v1/vms", { name: "nu", kernel: d.guests.echo, memory_mib: 32,
      nics: [{ user: true, forward: [`tcp:${port}:7`] }] });
    assert.equal(r.status, 201, r.text);
    await page.goto(`${d.url}/ui/#/vms/nu/nics`);
    await page.getByText("user (passt)").waitFor();
    await page.getByText(`tcp:${port}:7`).waitFor();
    await page.goto(`${d.url}/ui/#/vms/nu/settings`);
    assert.equal(await page.getByLabel("NICs (tap:NAME, switch:NAME or user)").inputValue(), "user");
    await page.getByLabel("vCPUs").fill("2");
    // The same word: the NIC is sent as it was (its forwards kept).
    await page.getByLabel("NICs (tap:NAME, switch:NAME or user)").fill(" user ");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.getByText("Saved.").waitFor();
    const vm = (await apiCall(d, "GET", "/v1/vms/nu")).json;
    assert.equal(vm.cpus, 2);
    assert.deepEqual(vm.nics.map((n) => [n.user, n.forward]), [[true, [`tcp:${port}:7`]]], JSON.stringify(vm.nics));
    assert.equal((await apiCall(d, "DELETE", "/v1/vms/nu")).status, 204);
  });

  await t.test("a NIC's queue pairs: shown on the NICs tab, edited in the settings form", async () => {
    r = await apiCall(d, "POST", "/v1/vms", { name: "nq", kernel: d.guests.echo, memory_mib: 32, cpus: 2,
      nics: [{ tap: "cmq0", queues: 2 }] });
    assert.equal(r.status, 201, r.text);
    await page.goto(`${d.url}/ui/#/vms/nq/nics`);
    await until(async () => (await page.getByTestId("nic-queues").textContent().catch(() => "")) === "2", "Queues 2 on the NICs tab");
    await page.goto(`${d.url}/ui/#/vms/nq/settings`);
    const nics = page.getByLabel("NICs (tap:NAME, switch:NAME or user)");
    assert.equal(await nics.inputValue(), "tap:cmq0,queues=2");
    // More pairs than vCPUs: the API's reason beside the field (its 400 is
    // expected in the page's console).
    const before = page.errors.length;
    await nics.fill("tap:cmq0,queues=3");
    await page.getByRole("button", { name: "Save changes" }).click();
    await until(async () => /at most one queue pair per vCPU/.test(await page.locator("[data-field-error=nics]").textContent().catch(() => "")),
      "the queues refusal beside the NICs field");
    page.errors.splice(before, page.errors.length - before, ...page.errors.slice(before).filter((e) => !/status of 400/.test(e)));
    await nics.fill("tap:cmq0 queues=1");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.getByText("Saved.").waitFor();
    assert.deepEqual((await apiCall(d, "GET", "/v1/vms/nq")).json.nics, [{ tap: "cmq0" }], "one pair: no queues kept");
    assert.equal((await apiCall(d, "DELETE", "/v1/vms/nq")).status, 204);
  });

  // Expected noise: the 401s of the first load, before signing in.
  const serious = page.errors.filter((e) => !/inline style/.test(e) && !/status of 401/.test(e));
  assert.deepEqual(serious, [], "no script errors in the page");
});
