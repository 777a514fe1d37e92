// cspstyle.ts: xterm.js writes its own <style> elements (cell size, theme);
// the console's Content-Security-Policy (style-src 'self') refuses those.
// Their text is mirrored into constructable style sheets (adoptedStyleSheets),
// which the policy does not govern, so the terminal lays out as intended
// without loosening the policy.
export function mirrorStyles(root: HTMLElement): () => void {
  const sheets = new Map<HTMLStyleElement, CSSStyleSheet>();
  function sync() {
    for (const el of Array.from(root.querySelectorAll("style"))) {
      let sh = sheets.get(el);
      if (!sh) {
        sh = new CSSStyleSheet();
        sheets.set(el, sh);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sh];
      }
      try { sh.replaceSync(el.textContent || ""); } catch { /* a bad rule: keep the old one */ }
    }
    for (const [el, sh] of sheets) {
      if (!el.isConnected) {
        sheets.delete(el);
        document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== sh);
      }
    }
  }
  const mo = new MutationObserver(sync);
  mo.observe(root, { subtree: true, childList: true, characterData: true });
  sync();
  return () => {
    mo.disconnect();
    const gone = new Set(sheets.values());
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !gone.has(s));
  };
}
