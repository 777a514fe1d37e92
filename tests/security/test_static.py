"""test_static.py: the web console's files (GET /ui, GET /ui/{file}) come
from the directory ui_dir names and from nowhere else: a symlink out of it,
a "..", a directory, or an encoded path that leaves it are refused; a file is
served with its type and `nosniff`. Without ui_dir, /ui is 404."""

import os
import shutil
import tempfile

from cellad import Daemon, check, main


def test(args):
    ui = tempfile.mkdtemp(prefix="cella-ui-")
    try:
        with open(os.path.join(ui, "index.html"), "w") as f:
            f.write("<!doctype html><title>cella</title>\n")
        with open(os.path.join(ui, "app.js"), "w") as f:
            f.write("console.log('cella');\n")
        os.symlink("/etc/passwd", os.path.join(ui, "leak.txt"))
        os.mkdir(os.path.join(ui, "sub"))
        with Daemon(args, config={"ui_dir": ui}) as d:
            r = d.get("/ui")
            check(r.status == 200 and "<title>cella</title>" in r.body and
                  r.headers.get("Content-Type", "").startswith("text/html"),
                  f"/ui serves index.html: {r.status} {r.headers.get('Content-Type')}")
            r = d.get("/ui/app.js")
            check(r.status == 200 and "console.log" in r.body and
                  r.headers.get("Content-Type", "").startswith("text/javascript") and
                  r.headers.get("X-Content-Type-Options") == "nosniff",
                  f"/ui/app.js with its type: {r.status} {r.headers.get('Content-Type')}")
            r = d.get("/ui/leak.txt")
            check(r.status == 404 and "root:" not in r.body,
                  f"a symlink out of ui_dir is refused: {r.status} {r.body.strip()[:80]}")
            r = d.get("/ui/sub")
            check(r.status == 404, f"a directory is not served: {r.status}")
            for path in ("/ui/..", "/ui/%2e%2e", "/ui/%2e%2e%2fcellad.json", "/ui/../cellad.json",
                         "/ui/.hidden"):
                r = d.get(path)
                check(r.status in (400, 404) and "token" not in r.body,
                      f"{path}: refused ({r.status})")
        with Daemon(args) as d:
            check(d.get("/ui").status == 404, "no ui_dir: /ui is 404")
    finally:
        shutil.rmtree(ui, ignore_errors=True)


if __name__ == "__main__":
    main(test)
