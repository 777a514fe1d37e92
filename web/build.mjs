// build.mjs: bundles the web console (web/src) into OUT: index.html,
// app-HASH.js and app-HASH.css (content-hashed, so cellad may let browsers
// cache them for a year), each with a precompressed FILE.gz beside it.
// Usage: node build.mjs OUT [DEPFILE STAMP]
// Nothing here is fetched at run time: the bundle holds Preact, xterm.js and
// uPlot; index.html loads only same-origin files (no inline script or style,
// so the strict CSP holds).
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync, constants } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, "dist"));
const depfile = process.argv[3];
const stamp = process.argv[4];

// The console page (xterm.js, most of the bytes) is a chunk of its own,
// loaded when a console is opened: the dashboard parses only what it needs.
// esbuild names every file by its content's hash.
const result = await esbuild.build({
  entryPoints: { app: join(here, "src/main.tsx") },
  bundle: true,
  minify: true,
  format: "esm",
  splitting: true,
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".css": "css" },
  legalComments: "none",
  write: false,
  metafile: true,
  outdir: join(here, "out"),
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  logLevel: "warning",
});

mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) rmSync(join(out, f), { recursive: true, force: true });

const hashed = {};
const files = [];
function emit(name, data) {
  writeFileSync(join(out, name), data);
  files.push(name);
  if (/\.(js|css|html|svg|json)$/.test(name)) {
    const gz = gzipSync(data, { level: constants.Z_BEST_COMPRESSION });
    writeFileSync(join(out, name + ".gz"), gz);
  }
}
for (const f of result.outputFiles) {
  const name = basename(f.path);
  if (/^app-.*\.js$/.test(name)) hashed.js = name;
  else if (/^app-.*\.css$/.test(name)) hashed.css = name;
  emit(name, f.contents);
}
if (!hashed.js || !hashed.css) throw new Error("build: no app-HASH.js or app-HASH.css in esbuild's output");
// The entry's static imports, fetched with it rather than after it.
const entryMeta = Object.entries(result.metafile.outputs).find(([p]) => basename(p) === hashed.js)[1];
const preload = entryMeta.imports.filter((i) => i.kind === "import-statement").map((i) => basename(i.path));

// The first page's data, asked for while the script loads (the same URLs
// and mode as store.ts's prefetch, which the preload cache then answers):
// the page needs no round trip after its script runs. Without a session
// they are 401s, and the login page shows.
const early = ["/v1/session", "/v1/vms", "/v1/events?since=0&amp;follow=false", "/v1/host"];
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>cella</title>
<link rel="icon" href="favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${hashed.css}">
${preload.map((p) => `<link rel="modulepreload" href="${p}">\n`).join("")}${early.map((u) => `<link rel="preload" href="${u}" as="fetch" crossorigin>\n`).join("")}<script type="module" src="${hashed.js}"></script>
</head>
<body>
<noscript>cella's web console needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
`;
emit("index.html", Buffer.from(html));
emit("favicon.svg", readFileSync(join(here, "src/favicon.svg")));

const sizes = {};
for (const name of files) {
  sizes[name] = { bytes: readFileSync(join(out, name)).length };
  try { sizes[name].gzip = readFileSync(join(out, name + ".gz")).length; } catch { /* not compressed */ }
}
const shipped = files.filter((n) => /\.(js|css)$/.test(n));
writeFileSync(join(out, "manifest.json"), JSON.stringify({ js: hashed.js, css: hashed.css, shipped, sizes }, null, 1) + "\n");

if (depfile) {
  const inputs = Object.keys(result.metafile.inputs).map((p) => resolve(p));
  inputs.push(join(here, "build.mjs"), join(here, "src/favicon.svg"), join(here, "package-lock.json"));
  const esc = (p) => p.replace(/ /g, "\\ ");
  writeFileSync(depfile, `${esc(stamp || join(out, "index.html"))}: ${inputs.map(esc).join(" \\\n  ")}\n`);
}
if (stamp) writeFileSync(stamp, `${shipped.join(" ")}\n`);
const total = Object.values(sizes).reduce((a, s) => a + (s.gzip || s.bytes), 0);
console.log(`web: ${relative(process.cwd(), out) || out}: ${shipped.join(" ")}, ${(total / 1024).toFixed(1)} KiB compressed`);
