// lib.mjs: shared set-up of the browser tests: a private cellad (daemon.py)
// with the web console on a loopback port, Debian's chromium driven by
// playwright-core, and helpers that wait for a condition with a deadline.
// Arguments come from meson in the environment: CELLA_WEB_ARGS (JSON list:
// --cellad PATH --cella PATH --cella-vm PATH --ui-dir DIR NAME=GUEST...),
// CELLA_WEB_SHOTS (where screenshots go), CELLA_WEB_SHOTS_DOCS (optional:
// where copies go, docs/web).
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const top = join(here, "..", "..");
const require = createRequire(join(top, "web", "package.json"));
export const { chromium } = require("playwright-core");
export const axeSource = require("node:fs").readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const shotsDir = process.env.CELLA_WEB_SHOTS || join(top, "build", "web", "screenshots");

/** Why these tests cannot run here, or "" (then they run). */
export function skipReason() {
  if (!process.env.CELLA_WEB_ARGS) return "CELLA_WEB_ARGS is not set (run through meson: suite web)";
  if (!existsSync("/dev/kvm")) return "/dev/kvm is missing: the browser tests boot guests";
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)`;
  return "";
}

/** Starts cellad; resolves to {url, token, viewer_token, sock, dir, guests, stop()}.
 * opts.pool = N: host-a of a pool of N cellads on a one-member etcd (daemon.py
 * --pool), with d.pool = {name, hosts: {NAME: {sock, pid}}}. */
export function startDaemon(config = {}, opts = {}) {
  const args = JSON.parse(process.env.CELLA_WEB_ARGS);
  if (opts.pool) args.push("--pool", String(opts.pool));
  const p = spawn("python3", [join(here, "daemon.py"), ...args, "--config", JSON.stringify(config)],
    { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });
  let out = "";
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cellad did not come up:\n${log}`)), opts.pool ? 90000 : 30000);
    p.stdout.on("data", (b) => {
      const s = b.toString();
      log += s;
      if (out !== null) {
        out += s;
        const line = out.split("\n").find((l) => l.startsWith("{"));
        if (line) {
          out = null;
          clearTimeout(timer);
          const d = JSON.parse(line);
          const exited = new Promise((r) => p.on("exit", r));
          d.log = () => log;
          d.stop = async () => { p.stdin.end(); await exited; };
          resolve(d);
        }
      }
    });
    p.on("exit", (code) => { clearTimeout(timer); if (out !== null) reject(new Error(`daemon.py exited ${code}:\n${log}`)); });
  });
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
}

/** A page at 1280x720 whose console errors (CSP refusals among them) are kept. */
export async function newPage(browser, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, ...opts });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") page.errors.push(m.text()); });
  return page;
}

export async function login(page, d, token = d.token) {
  await page.goto(`${d.url}/ui/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
}

/** Saves a screenshot in shotsDir, and also in CELLA_WEB_SHOTS_DOCS when
 * set (docs/web: the copies docs/web.md shows). */
export async function shot(page, name) {
  mkdirSync(shotsDir, { recursive: true });
  await page.screenshot({ path: join(shotsDir, `${name}.png`) });
  const docs = process.env.CELLA_WEB_SHOTS_DOCS;
  if (docs) {
    mkdirSync(docs, { recursive: true });
    copyFileSync(join(shotsDir, `${name}.png`), join(docs, `${name}.png`));
  }
}

/** Polls fn() until it returns a truthy value or the deadline passes. */
export async function until(fn, what, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The API over the loopback port with the bearer token. */
export async function apiCall(d, method, path, body, headers = {}) {
  const h = { Authorization: `Bearer ${d.token}`, ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  const r = await fetch(d.url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
  return { status: r.status, json, text, headers: r.headers };
}

/** The API of a cellad over its Unix socket (another pool host's, which
 * has no web listener): {status, json}. */
export function sockCall(sock, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = require("node:http").request({ socketPath: sock, method, path,
      headers: data ? { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data) } : {} }, (r) => {
      let text = "";
      r.setEncoding("utf8");
      r.on("data", (c) => { text += c; });
      r.on("end", () => {
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
        resolve({ status: r.statusCode, json, text });
      });
    });
    req.on("error", reject);
    req.end(data);
  });
}
