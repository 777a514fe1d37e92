// test_disks.mjs (web-disks): the Disks page against a real cellad with a
// storage location: create an image from the page and see it listed with
// its size; an overlay over it is drawn under it (its chain); a bad size
// shows the API's error beside the size field and changes nothing; grow
// the image; convert it and see the job end; the files are checked with
// qemu-img.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { apiCall, launchBrowser, login, newPage, shot, skipReason, startDaemon, until } from "./lib.mjs";

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
    await page.getByRole("button", { name: "Back up over.qcow2" }).click();
    await shot(page, "disks");
  });
});
