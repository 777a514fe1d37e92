// test_disks.mjs (web-disks): the Disks page against a real cellad with a
// storage location: create an image from the page and see it listed with
// its size; an overlay over it is drawn under it (its chain); a bad size
// shows the API's error beside the size field and changes nothing; grow
// the image; convert it and see the job end; the files are checked with
// qemu-img.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall, axeSource, launchBrowser, login, newPage, shot, shotsDir, skipReason, startDaemon, until } from "./lib.mjs";

const qemuImg = (() => { try { execFileSync("qemu-img", ["--version"]); return ""; } catch { return "qemu-img is missing"; } })();
const why = skipReason() || qemuImg;
let d, browser, page, store;

const info = (f) => JSON.parse(execFileSync("qemu-img", ["info", "-U", "--output=json", join(store, f)]).toString());

before(async () => {
  if (why) return;
  store = mkdtempSync(join(tmpdir(), "cella-web-disks-"));
  d = await startDaemon({ storage: [{ name: "images", path: store, role: "operator" }] });
  browser = await launchBrowser();
  page = await newPage(browser);
});
after(async () => {
  await browser?.close();
  await d?.stop();
  if (store) rmSync(store, { recursive: true, force: true });
});

const row = (name) => page.locator(`tr[data-image="${name}"]`);
const submitAction = () => page.locator('form:has(#act-h) button[type="submit"]').click();

test("web disks: create, list with size and chain, a bad size beside its field, grow, convert", { skip: why || false, timeout: 180000 }, async (t) => {
  await t.test("create an image from the page and see it with its size", async () => {
    await login(page, d);
    await page.getByRole("link", { name: "Disks" }).first().click();
    await page.getByRole("heading", { name: "New image" }).waitFor();
    await page.getByLabel("File name").fill("web.qcow2");
    await page.getByLabel("Virtual size").fill("64M");
    await page.getByRole("button", { name: "Create image" }).click();
    await row("web.qcow2").waitFor();
    assert.match(await row("web.qcow2").textContent(), /64\.0 MiB/, "listed with its virtual size");
    assert.equal(info("web.qcow2")["virtual-size"], 64 << 20, "qemu-img agrees");
    execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x42 0 8M", join(store, "web.qcow2")]);
  });

  await t.test("an overlay is drawn under its backing image", async () => {
    await page.getByLabel("File name").fill("over.qcow2");
    await page.getByLabel("Backing image (qcow2)").selectOption("web.qcow2");
    await page.getByRole("button", { name: "Create image" }).click();
    await row("over.qcow2").waitFor();
    assert.match(await row("over.qcow2").locator("td").first().getAttribute("class"), /lvl-1/,
      "indented one level: its chain");
    const names = await page.locator("tr[data-image]").evaluateAll((rs) => rs.map((r) => r.dataset.image));
    assert.deepEqual(names, ["web.qcow2", "over.qcow2"], "the layer follows the image it is backed by");
  });

  await t.test("a bad size shows the API's error beside the field, nothing made", async () => {
    await page.getByLabel("File name").fill("bad.raw");
    await page.getByLabel("Virtual size").fill("12X");
    await page.getByRole("button", { name: "Create image" }).click();
    const err = page.locator("[data-field-error=size]");
    await err.waitFor();
    assert.match(await err.textContent(), /size/, "the message names the field");
    assert.equal(await page.getByLabel("Virtual size").getAttribute("aria-invalid"), "true");
    assert.equal(existsSync(join(store, "bad.raw")), false, "no file was made");
    await shot(page, "disks-error");
  });

  await t.test("grow the image; a shrink is refused beside the field", async () => {
    await page.getByRole("button", { name: "Grow over.qcow2" }).click();
    await page.getByLabel("New virtual size").fill("16M");
    await submitAction();
    const err = page.locator("#f-act-size-err");
    await err.waitFor();
    assert.match(await err.textContent(), /smaller/, "a shrink is refused");
    await page.getByLabel("New virtual size").fill("128M");
    await submitAction();
    await until(async () => /128\.0 MiB/.test(await row("over.qcow2").textContent()), "the new size listed");
    assert.equal(info("over.qcow2")["virtual-size"], 128 << 20, "qemu-img agrees");
  });

  await t.test("convert (flattening the chain) runs as a job to its end", async () => {
    await page.getByRole("button", { name: "Convert over.qcow2" }).click();
    await page.getByLabel("New file name").fill("flat.raw");
    await page.getByLabel("Format").last().selectOption("raw");
    await submitAction();
    await row("flat.raw").waitFor();
    await until(async () => /convert to images\/flat\.raw: done/.test(await page.locator(".jobs").textContent()),
      "the job done");
    const r = await apiCall(d, "GET", "/v1/images/flat.raw?location=images");
    assert.equal(r.json.format, "raw");
    execFileSync("qemu-img", ["compare", "-U", join(store, "over.qcow2"), join(store, "flat.raw")]);
    await page.reload();
    await row("flat.raw").waitFor();
    await page.getByRole("button", { name: "Back up over.qcow2" }).click();
    assert.equal(await page.evaluate(() => document.activeElement?.id), "f-act-target",
      "the form opens with the focus in its first field");
    await page.screenshot({ path: join(shotsDir, "disks.png"), fullPage: true });
    if (process.env.CELLA_WEB_SHOTS_DOCS)
      copyFileSync(join(shotsDir, "disks.png"), join(process.env.CELLA_WEB_SHOTS_DOCS, "disks.png"));
  });

  await t.test("axe and the keyboard on the Disks page (light, dark, phone width)", async () => {
    const bad = [];
    for (const [scheme, width, height] of [["light", 1280, 720], ["dark", 1280, 720], ["light", 390, 844]]) {
      const p = await newPage(browser, { viewport: { width, height }, colorScheme: scheme });
      await login(p, d);
      await p.goto(`${d.url}/ui/#/disks`);
      await p.locator('tr[data-image="flat.raw"]').waitFor();
      await p.getByRole("button", { name: "Grow web.qcow2" }).click();
      await p.getByLabel("New virtual size").fill("abc");
      await p.locator('form:has(#act-h) button[type="submit"]').click();
      await p.locator("#f-act-size-err").waitFor();
      await p.evaluate(axeSource);
      const v = await p.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] }))
        .violations.map((x) => ({ id: x.id, impact: x.impact, nodes: x.nodes.map((n) => n.target.join(" ")).slice(0, 5) })));
      for (const x of v) if (x.impact === "serious" || x.impact === "critical") bad.push({ scheme, width, ...x });
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${width}px: the page overflows by ${overflow}px`);
      if (scheme === "dark") await shot(p, "disks-dark");
      if (width < 600) await shot(p, "disks-phone");
      await p.context().close();
    }
    assert.deepEqual(bad, [], JSON.stringify(bad, null, 1));
    // Keyboard only: from the size field, Tab reaches the submit button; Enter submits.
    await page.goto(`${d.url}/ui/#/disks`);
    await page.getByRole("button", { name: "Grow flat.raw" }).focus();
    await page.keyboard.press("Enter");
    await page.getByLabel("New virtual size").focus();
    await page.keyboard.type("160M");
    await page.keyboard.press("Enter");
    await until(async () => /160\.0 MiB/.test(await row("flat.raw").textContent()), "grown from the keyboard");
  });
});
