"""Drive headless Chromium through the DevTools protocol over a pipe (no packages needed).

Usage: python3 drive.py CHROMIUM BASE_URL SCREENSHOT_DIR

Loads the viewer's pages, runs a query in the SQL box, clicks a well of the plate map,
checks what each page shows and that every image loaded, and saves screenshots. Prints
one line per check; exits 1 on the first failure, naming it.
"""

import base64
import json
import os
import sys
import tempfile
import threading
import time
import subprocess
import queue

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


class Browser:
    def __init__(self, exe):
        self.profile = tempfile.TemporaryDirectory(prefix="cellshard-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():
            # Chromium reads commands on fd 3 and writes replies on fd 4 (copied high first,
            # so that neither end is overwritten by the other's move).
            r, w = os.dup(to_child_r), os.dup(from_child_w)
            r, w = os.dup2(r, 100), os.dup2(w, 101)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
            preexec_fn=fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.next_id = 0
        self.replies = {}
        self.events = queue.Queue()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                if "id" in m:
                    with self.cond:
                        self.replies[m["id"]] = m
                        self.cond.notify_all()
                else:
                    self.events.put(m)

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        i = self.next_id
        m = {"id": i, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        os.write(self.to_child, json.dumps(m).encode() + b"\0")
        deadline = time.time() + timeout
        with self.cond:
            while i not in self.replies:
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError(f"no reply to {method} in {timeout} s")
                self.cond.wait(left)
            r = self.replies.pop(i)
        if "error" in r:
            raise RuntimeError(f"{method}: {r['error']}")
        return r.get("result", {})

    def wait_event(self, method, session, timeout=60):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise RuntimeError(f"no {method} in {timeout} s")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e.get("method") == method and e.get("sessionId") == session:
                return e

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.profile.cleanup()


class Page:
    def __init__(self, browser):
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.s = browser.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        self.cmd("Page.enable")
        self.cmd("Runtime.enable")
        self.cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )

    def cmd(self, method, params=None, timeout=60):
        return self.b.send(method, params, self.s, timeout)

    def drain(self):
        while not self.b.events.empty():
            self.b.events.get_nowait()

    def goto(self, url):
        self.drain()
        self.cmd("Page.navigate", {"url": url})
        self.b.wait_event("Page.loadEventFired", self.s)
        self.images_loaded()

    def js(self, expr):
        r = self.cmd(
            "Runtime.evaluate",
            {"expression": expr, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def images_loaded(self, timeout=60):
        """Wait until every <img> finished; fail on one that did not decode."""
        deadline = time.time() + timeout
        while not self.js("Array.from(document.images).every(i => i.complete)"):
            if time.time() > deadline:
                raise RuntimeError("images still loading after %d s" % timeout)
            time.sleep(0.1)
        broken = self.js(
            "Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src.slice(0, 120))"
        )
        check(not broken, f"every image loaded on {self.js('location.pathname')}", broken)
        return self.js("document.images.length")

    def click(self, selector):
        """A real mouse click at the centre of the first element matching `selector`."""
        self.js(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")
        r = self.js(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        self.drain()
        for t in ("mousePressed", "mouseReleased"):
            self.cmd(
                "Input.dispatchMouseEvent",
                {"type": t, "x": r[0], "y": r[1], "button": "left", "clickCount": 1},
            )

    def wait_load(self):
        self.b.wait_event("Page.loadEventFired", self.s)
        self.images_loaded()

    def screenshot(self, path):
        data = self.cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot {path}")


def check(ok, what, detail=""):
    if not ok:
        print(f"FAIL {what} {detail}")
        sys.exit(1)
    print(f"ok   {what}")


def main():
    exe, base, shots = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    os.makedirs(shots, exist_ok=True)
    started = time.time()
    b = Browser(exe)
    try:
        p = Page(b)

        # Store page: experiments, plates (linked), rejects, runs.
        p.goto(base + "/")
        text = p.js("document.body.innerText")
        for h in ("Experiments", "Plates", "Rejects by reason", "Runs"):
            check(h in text, f"store page shows {h}")
        plates = p.js("Array.from(document.querySelectorAll('a[href^=\"/plate/\"]')).map(a => a.getAttribute('href'))")
        check(len(plates) >= 1, "store page links its plates", plates)
        p.screenshot(os.path.join(shots, "viewer-store.png"))

        # SQL box: a query with a tensor column shows thumbnails.
        p.goto(base + "/sql")
        q = "SELECT site_id, well, sirna_id, tensor FROM controls ORDER BY site_id LIMIT 12"
        p.js(f"document.querySelector('textarea[name=q]').value = {json.dumps(q)}")
        p.click("#run")
        p.wait_load()
        rows = p.js("document.querySelectorAll('table.data tbody tr').length")
        check(rows == 12, "the query returned 12 rows", rows)
        thumbs = p.js("Array.from(document.querySelectorAll('table.data img.thumb')).filter(i => i.naturalWidth > 0).length")
        check(thumbs == 12, "each row's tensor shows as a thumbnail", thumbs)
        p.screenshot(os.path.join(shots, "viewer-sql.png"))

        # Read-only: a DROP is refused with a message, and the table is still there.
        p.goto(base + "/sql?q=" + "DROP%20TABLE%20sites")
        err = p.js("(document.getElementById('error') || {}).innerText || ''")
        check("read-only" in err, "DROP TABLE is refused", err)

        # Plate page: heatmap image, 16x24 wells, click one to reach its site.
        p.goto(base + plates[0] + "?stat=mean&channel=2")
        heat = p.js("document.getElementById('heatmap').naturalWidth")
        check(heat > 500, "the heatmap image loaded", heat)
        rows = p.js("document.querySelectorAll('#wells tr').length")
        check(rows == 17, "the plate map has 16 rows (and a header)", rows)
        wells = p.js("document.querySelectorAll('#wells a.well').length")
        check(wells >= 1, "wells are links", wells)
        p.screenshot(os.path.join(shots, "viewer-plate.png"))
        well = p.js("document.querySelector('#wells a.well').dataset.well")
        p.click("#wells a.well")
        p.wait_load()
        path = p.js("decodeURIComponent(location.pathname)")
        check(path.startswith("/site/") and f"_{well}_" in path, f"clicking well {well} opens its site", path)

        # Site page: composite, six channel tiles, metadata, normalization, sources.
        comp = p.js("document.getElementById('composite').naturalWidth")
        check(comp > 0, "the composite loaded", comp)
        tiles = p.js("Array.from(document.querySelectorAll('img.tile')).filter(i => i.naturalWidth > 0).length")
        check(tiles == 6, "six channel tiles loaded", tiles)
        text = p.js("document.body.innerText")
        for h in ("Metadata", "Normalization applied", "Source objects", "percentile"):
            check(h in text, f"site page shows {h}")
        p.screenshot(os.path.join(shots, "viewer-site.png"))
    finally:
        b.close()
    print(f"browser checks passed in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
