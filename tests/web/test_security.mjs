// test_security.mjs (web-security): what the browser console relies on from
// cellad: no session (or an expired one) sends the page to login; a
// state-changing request with the session cookie but without this server's
// Origin is refused (CSRF); the console's pages load under the strict CSP
// with nothing from another host.
import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, test } from "node:test";
import { apiCall, launchBrowser, login, newPage, skipReason, startDaemon } from "./lib.mjs";

const why = skipReason();
let d, browser;

before(async () => {
  if (why) return;
  d = await startDaemon({ session_ttl_s: 3 });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await d?.stop();
});

async function sessionCookie() {
  const r = await fetch(`${d.url}/v1/session`, { method: "POST", headers: { "Content-Type": "application/json", Origin: d.url },
    body: JSON.stringify({ token: d.token }) });
  assert.equal(r.status, 200);
  return r.headers.get("set-cookie").split(";")[0];
}

test("web security", { skip: why || false, timeout: 120000 }, async (t) => {
  await t.test("no session: every page sends the browser to login", async () => {
    const page = await newPage(browser);
    for (const p of ["#/vms", "#/dashboard", "#/console/x", "#/events"]) {
      await page.goto(`${d.url}/ui/${p}`);
      await page.getByLabel("API token").waitFor();
      await page.waitForFunction(() => location.hash === "#/login"); // the hash follows the form by an effect
      assert.match(page.url(), /#\/login$/, `${p} -> login`);
    }
    await page.context().close();
  });

  await t.test("an expired session sends the open page to login", async () => {
    const page = await newPage(browser);
    await login(page, d);
    await page.goto(`${d.url}/ui/#/vms`);
    await page.evaluate(() => { window.__noReload = 1; });
    // The session lives 3 s (session_ttl_s): a later request gets 401 and the
    // page goes to login by itself (the event stream's reconnect or a click).
    await new Promise((r) => setTimeout(r, 3500)); // past the session's expiry: the condition under test
    await page.getByRole("link", { name: "Dashboard" }).click();
    await page.getByLabel("API token").waitFor({ timeout: 15000 });
    assert.equal(await page.evaluate(() => window.__noReload), 1, "the open page went to login by itself");
    await page.waitForFunction(() => location.hash === "#/login"); // the hash follows the form by an effect
    assert.match(page.url(), /#\/login$/);
    await page.context().close();
  });

  await t.test("a cookie-authenticated POST without this server's Origin is refused", async () => {
    const cookie = await sessionCookie();
    const body = JSON.stringify({ name: "csrf1", kernel: d.guests.echo, memory_mib: 64 });
    const h = { Cookie: cookie, "Content-Type": "application/json" };
    let r = await fetch(`${d.url}/v1/vms`, { method: "POST", headers: { ...h, Origin: "http://evil.example" }, body });
    assert.equal(r.status, 403, "another site's Origin");
    assert.equal((await r.json()).error.field, "Origin");
    r = await fetch(`${d.url}/v1/vms`, { method: "POST", headers: h, body });
    assert.equal(r.status, 403, "no Origin at all");
    assert.equal((await apiCall(d, "GET", "/v1/vms/csrf1")).status, 404, "nothing was created");
    r = await fetch(`${d.url}/v1/vms`, { method: "POST", headers: { ...h, Origin: d.url }, body });
    assert.equal(r.status, 201, "the same request from the console's own origin");
    r = await fetch(`${d.url}/v1/vms`, { headers: { Cookie: cookie, Origin: "http://evil.example" } });
    assert.equal(r.status, 200, "a GET (no state change) is not refused");
  });

  await t.test("a WebSocket handshake with the cookie but another Origin is refused", async () => {
    const cookie = await sessionCookie();
    assert.equal((await apiCall(d, "POST", "/v1/vms", { name: "ws1", kernel: d.guests.echo, memory_mib: 32 })).status, 201);
    assert.equal((await apiCall(d, "POST", "/v1/vms/ws1/start")).status, 200);
    const handshake = (origin) => new Promise((resolve, reject) => {
      const u = new URL(`${d.url}/v1/vms/ws1/console/ws`);
      const q = request({ host: u.hostname, port: u.port, path: u.pathname, headers: {
        Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", Cookie: cookie, Origin: origin } });
      q.on("upgrade", (res, sock) => { sock.destroy(); resolve(res.statusCode); });
      q.on("response", (res) => { res.resume(); resolve(res.statusCode); });
      q.on("error", reject);
      q.end();
    });
    assert.equal(await handshake("http://evil.example"), 403, "another site's page");
    assert.equal(await handshake(d.url), 101, "the console's own page");
    assert.equal((await apiCall(d, "POST", "/v1/vms/ws1/kill")).status, 200);
  });

  await t.test("a viewer's console is read-only and its actions are refused", async () => {
    assert.equal((await apiCall(d, "POST", "/v1/vms/ws1/start")).status, 200);
    const page = await newPage(browser);
    await login(page, d, d.viewer_token);
    await page.goto(`${d.url}/ui/#/console/ws1`);
    await page.locator("#console-status[data-status=connected]").waitFor();
    assert.match(await page.locator("#console-status").textContent(), /Read-only/);
    assert.equal(await page.evaluate(() => window.cellaTerm.options.disableStdin), true);
    await page.goto(`${d.url}/ui/#/vms/ws1`);
    await page.locator("button[data-action=stop]").click();
    await page.locator(".notice.bad").waitFor();
    assert.match(await page.locator(".notice.bad").textContent(), /operator|role|403|Forbidden/i);
    assert.equal((await apiCall(d, "GET", "/v1/vms/ws1")).json.state, "running", "the viewer did not stop it");
    assert.equal((await apiCall(d, "POST", "/v1/vms/ws1/kill")).status, 200);
    await page.context().close();
  });

  await t.test("a page on another origin cannot act with the console's session", async () => {
    // The browser holds a session for d.url; a page served from another
    // origin (localhost vs 127.0.0.1) posts to the API with credentials.
    const page = await newPage(browser);
    await login(page, d);
    const other = d.url.replace("127.0.0.1", "localhost");
    await page.goto(`${other}/ui/#/login`);
    const status = await page.evaluate(async (u) => {
      try {
        const r = await fetch(`${u}/v1/vms/csrf1/start`, { method: "POST", credentials: "include", mode: "no-cors",
          headers: { "Content-Type": "text/plain" }, body: "{}" });
        return r.type;
      } catch (e) { return String(e); }
    }, d.url);
    assert.ok(status, "the request was sent or refused by the browser");
    assert.equal((await apiCall(d, "GET", "/v1/vms/csrf1")).json.state, "defined", "the VM was not started");
    await page.context().close();
  });

  await t.test("the console's pages carry the strict CSP and load nothing from other hosts", async () => {
    const r = await fetch(`${d.url}/ui/`);
    const csp = r.headers.get("content-security-policy") || "";
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const page = await newPage(browser);
    const hosts = new Set();
    page.on("request", (q) => hosts.add(new URL(q.url()).host));
    await login(page, d);
    for (const p of ["#/vms", "#/create", "#/disks", "#/events"]) {
      await page.goto(`${d.url}/ui/${p}`);
      await page.locator("h1").first().waitFor();
    }
    assert.deepEqual([...hosts], [new URL(d.url).host], "every request went to cellad");
    const cspErrors = page.errors.filter((e) => /Content Security Policy/.test(e) && !/inline style/.test(e));
    assert.deepEqual(cspErrors, [], "no CSP refusals but xterm's own style elements");
    await page.context().close();
  });
});
