// cspstyle.ts: xterm.js writes its own <style> elements (cell size, theme);
// the console's Content-Security-Policy (style-src 'self') refuses those.
// Each one found under the terminal is taken out of the document (so later
// updates raise no CSP refusal) and its text kept in a constructable style
// sheet (adoptedStyleSheets), which the policy does not govern: the terminal
// lays out as intended without loosening the policy.
export function mirrorStyles(root: HTMLElement): () => void {
  const sheets = new Map<HTMLStyleElement, { sheet: CSSStyleSheet; mo: MutationObserver }>();
  const adopt = (sh: CSSStyleSheet) => { document.adoptedStyleSheets = [...document.adoptedStyleSheets, sh]; };
  function take(el: HTMLStyleElement) {
    if (sheets.has(el)) return;
    const sheet = new CSSStyleSheet();
    const apply = () => { try { sheet.replaceSync(el.textContent || ""); } catch { /* a bad rule: keep the old ones */ } };
    const mo = new MutationObserver(apply);
    mo.observe(el, { childList: true, characterData: true, subtree: true });
    apply();
    adopt(sheet);
    sheets.set(el, { sheet, mo });
    el.remove(); // xterm keeps its reference and updates it off the document
  }
  const scan = () => root.querySelectorAll("style").forEach((el) => take(el as HTMLStyleElement));
  const mo = new MutationObserver(scan);
  mo.observe(root, { subtree: true, childList: true });
  scan();
  return () => {
    mo.disconnect();
    const gone = new Set<CSSStyleSheet>();
    for (const { sheet, mo: m } of sheets.values()) { m.disconnect(); gone.add(sheet); }
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => !gone.has(s));
  };
}
