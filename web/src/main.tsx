// main.tsx: the console's shell: hash routes, the session (login/logout),
// the navigation, and the page for each route.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./style.css";
import { ApiError, Session, api, setUnauthorizedHandler } from "./api";
import { store } from "./store";
import { Heading, go, nav as navState, useStore } from "./ui";
import { Dashboard } from "./dashboard";
import { VmList } from "./vms";
import { VmPage } from "./vm";
import { CreateVm } from "./create";
import { lazy, Suspense } from "preact/compat";
import "@xterm/xterm/css/xterm.css"; // in the main CSS: a lazy chunk's CSS is not loaded by itself

const ConsolePage = lazy(() => import("./console").then((m) => ({ default: m.ConsolePage })));
import { DisksPage } from "./disks";
import { EventsPage } from "./events";
import { JobsIndicator } from "./jobview";

function parseRoute(): string[] {
  const h = location.hash.replace(/^#\/?/, "").split("?")[0];
  return h ? h.split("/").map(decodeURIComponent) : ["dashboard"];
}



function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [mode, setMode] = useState<"token" | "password">("token");
  const [token, setToken] = useState("");
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true); setError("");
    try {
      const s = await api<Session>("POST", "/v1/session", mode === "token" ? { token } : { user, password });
      onLogin(s);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? "Wrong credentials." :
        err instanceof Error ? err.message : String(err));
    } finally { setBusy(false); }
  }
  return (
    <main class="login" id="main">
      <form class="card" onSubmit={submit} aria-labelledby="login-h">
        <h1 id="login-h">cella</h1>
        <fieldset class="tabs">
          <legend>Sign in with</legend>
          <label><input type="radio" name="mode" checked={mode === "token"} onChange={() => setMode("token")} /> Token</label>
          <label><input type="radio" name="mode" checked={mode === "password"} onChange={() => setMode("password")} /> Password</label>
        </fieldset>
        {mode === "token" ? (
          <div class="field"><label for="token">API token</label>
            <input id="token" type="password" autocomplete="current-password" value={token} required
              onInput={(e) => setToken((e.target as HTMLInputElement).value)} /></div>
        ) : (<>
          <div class="field"><label for="user">User</label>
            <input id="user" autocomplete="username" value={user} required onInput={(e) => setUser((e.target as HTMLInputElement).value)} /></div>
          <div class="field"><label for="password">Password</label>
            <input id="password" type="password" autocomplete="current-password" value={password} required
              onInput={(e) => setPassword((e.target as HTMLInputElement).value)} /></div>
        </>)}
        {error && <p class="error" role="alert">{error}</p>}
        <button type="submit" class="primary" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
      </form>
    </main>
  );
}

let afterLogin = ""; // the page to show once signed in

const nav: [string, string][] = [
  ["dashboard", "Dashboard"], ["vms", "VMs"], ["create", "New VM"], ["disks", "Disks"], ["events", "Events"],
];

function App() {
  const [route, setRoute] = useState(parseRoute());
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  useStore();
  useEffect(() => {
    const on = () => { navState.moved = true; setRoute(parseRoute()); };
    window.addEventListener("hashchange", on);
    setUnauthorizedHandler(() => { store.stop(); store.session = null; setSession(null); });
    (async () => {
      const early = await store.takeEarly("/v1/session");
      if (early?.ok) return (await early.json()) as Session;
      if (early?.status === 401) throw new Error("no session");
      return api<Session>("GET", "/v1/session");
    })().then(setSession, () => setSession(null));
    return () => window.removeEventListener("hashchange", on);
  }, []);
  useEffect(() => {
    if (session) { store.session = session; store.start(); }
    if (session && route[0] === "login") go(afterLogin || "dashboard");
  }, [session]);
  useEffect(() => {
    // No session (none yet, expired, or logged out): every route shows login,
    // and the route asked for is where signing in leads.
    if (session === null && route[0] !== "login") {
      afterLogin = location.hash.replace(/^#\/?/, "");
      location.replace("#/login");
    }
  }, [session, route.join("/")]);

  if (session === undefined) return <p class="loading" role="status">Loading…</p>;
  if (session === null || route[0] === "login") return <Login onLogin={(s) => { setSession(s); go(afterLogin || "dashboard"); afterLogin = ""; }} />;

  async function logout() {
    try { await api("DELETE", "/v1/session"); } catch { /* gone already */ }
    store.stop();
    setSession(null);
  }
  const [page, ...rest] = route;
  let body;
  switch (page) {
    case "vms": body = rest[0] ? <VmPage name={rest[0]} tab={rest[1] || "settings"} key={rest[0]} /> : <VmList />; break;
    case "console": body = <Suspense fallback={<p role="status">Loading the console…</p>}><ConsolePage name={rest[0]} key={rest[0]} /></Suspense>; break;
    case "create": body = <CreateVm />; break;
    case "disks": body = <DisksPage />; break;
    case "events": body = <EventsPage />; break;
    case "dashboard": body = <Dashboard />; break;
    default: body = <><Heading>Not found</Heading><p>No page {page}.</p></>;
  }
  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>Skip to content</a>
      <header class="top">
        <span class="brand" aria-label="cella">cella</span>
        <nav aria-label="Main">
          <ul>{nav.map(([p, label]) => (
            <li><a href={`#/${p}`} aria-current={page === p ? "page" : undefined}>{label}</a></li>
          ))}</ul>
        </nav>
        <JobsIndicator />
        <span class="who">{session.user} <span class="role">({session.role})</span></span>
        <button type="button" onClick={logout} id="logout">Log out</button>
      </header>
      <main id="main" tabIndex={-1}>{body}</main>
    </div>
  );
}

if (!location.hash.startsWith("#/login")) store.prefetch();
render(<App />, document.getElementById("app")!);
