// test_a11y.mjs (web-a11y): every page of the console passes axe-core with
// no serious or critical violations, at 1280x720 and at phone width, in the
// light and the dark theme, and is usable from the keyboard (the skip link,
// the navigation, the login form). Saves a screenshot of each page.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { apiCall, axeSource, launchBrowser, login, newPage, shot, skipReason, startDaemon, until } from "./lib.mjs";

const why = skipReason();
let d, browser;

before(async () => {
  if (why) return;
  d = await startDaemon();
  browser = await launchBrowser();
  for (const [n, mem] of [["alpha", 64], ["beta", 32], ["gamma", 48]]) {
    const r = await apiCall(d, "POST", "/v1/vms", { name: n, kernel: d.guests.echo, memory_mib: mem });
    assert.equal(r.status, 201, JSON.stringify(r.json));
  }
  assert.equal((await apiCall(d, "POST", "/v1/vms/alpha/start")).status, 200);
  assert.equal((await apiCall(d, "POST", "/v1/vms/alpha/checkpoints", { name: "base", kind: "production" })).status, 201);
  assert.equal((await apiCall(d, "POST", "/v1/vms/alpha/checkpoints", { name: "after", kind: "production" })).status, 201);
});
after(async () => {
  await browser?.close();
  await d?.stop();
});

const PAGES = [
  ["dashboard", "#/dashboard", "Dashboard"],
  ["vms", "#/vms", "Virtual machines"],
  ["vm", "#/vms/alpha/settings", "alpha"],
  ["vm-disks", "#/vms/alpha/disks", "alpha"],
  ["vm-checkpoints", "#/vms/alpha/checkpoints", "alpha"],
  ["vm-metrics", "#/vms/alpha/metrics", "alpha"],
  ["vm-log", "#/vms/alpha/log", "alpha"],
  ["create", "#/create", "New VM"],
  ["console", "#/console/alpha", "Console: alpha"],
  ["disks-empty", "#/disks", "Disks"],
  ["events", "#/events", "Events"],
];

async function axe(page) {
  await page.addScriptTag({ content: axeSource }).catch(async () => {
    // The CSP refuses an inline script tag: evaluate the source instead.
    await page.evaluate(axeSource);
  });
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
}

for (const [scheme, width, height] of [["light", 1280, 720], ["dark", 1280, 720], ["light", 390, 844]]) {
  test(`axe: no serious violations (${scheme}, ${width}x${height})`, { skip: why || false, timeout: 180000 }, async () => {
    const page = await newPage(browser, { viewport: { width, height }, colorScheme: scheme });
    await page.goto(`${d.url}/ui/`);
    await page.getByLabel("API token").waitFor();
    const bad = [];
    const check = async (name) => {
      const v = await axe(page);
      for (const x of v) if (x.impact === "serious" || x.impact === "critical") bad.push({ page: name, ...x });
    };
    await check("login");
    await login(page, d);
    for (const [name, hash, heading] of PAGES) {
      await page.goto(`${d.url}/ui/${hash}`);
      await page.getByRole("heading", { name: heading, exact: true }).waitFor();
      if (name === "console") await until(() => page.evaluate(() => (document.getElementById("term")?.dataset.bytes | 0) > 0), "console output");
      if (name === "vm-checkpoints") await page.locator("[data-checkpoint=after]").waitFor();
      if (name === "vm-log") await page.getByTestId("log-size").waitFor();
      if (name === "dashboard") await page.locator("#vm-count").getByText("3").waitFor();
      await check(name);
      const suffix = scheme === "dark" ? "-dark" : width < 600 ? "-phone" : "";
      await shot(page, `${name}${suffix}`);
    }
    assert.deepEqual(bad, [], JSON.stringify(bad, null, 1));
    // Nothing wider than the screen at phone width (tables scroll in their box).
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `page overflows the viewport by ${overflow}px`);
    await page.context().close();
  });
}

test("keyboard: sign in, skip to content, reach the VM list and a VM", { skip: why || false, timeout: 60000 }, async () => {
  const page = await newPage(browser);
  await page.goto(`${d.url}/ui/`);
  await page.getByLabel("API token").waitFor();
  await page.getByLabel("API token").focus();
  await page.keyboard.type(d.token);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  const active = () => page.evaluate(() => document.activeElement?.textContent);
  assert.equal(await active(), "Dashboard", "the new page's heading has the focus");
  // A fresh load: the skip link comes first, then the navigation.
  await page.reload();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await active(), "Skip to content");
  await page.keyboard.press("Tab");
  assert.equal(await active(), "Dashboard");
  await page.keyboard.press("Tab");
  assert.equal(await active(), "VMs");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Virtual machines" }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), "H1", "a new page moves the focus to its heading");
  // Into a VM from the list with the keyboard only.
  await page.getByRole("link", { name: "alpha", exact: true }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "alpha", exact: true }).waitFor();
  // The skip link moves the focus to the content.
  await page.reload();
  await page.getByRole("heading", { name: "alpha", exact: true }).waitFor();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "main", "skip link -> main");
  await page.context().close();
});
