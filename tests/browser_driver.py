"""Drive the system Chromium (playwright, no browser download) through review pages; run by tests/browser.py.

    python tests/browser_driver.py SPEC.json RESULT.json

Meant to run inside a network namespace with only loopback up (tests/browser.py starts it under
``unshare -n``): the browser and the static server this script starts see nothing but 127.0.0.1.

SPEC: {"root": folder served over http and used for file:// URLs, "pages": [{"path": page relative
to root, "hash": "#..." (optional), "via": "file" | "http", "steps": [...]}]}. Steps, in order, each adding one entry to the
page's "results": {"eval": js} (its value), {"wait": js} (waits until truthy), {"click": selector,
"nth": k}, {"press": key}, {"screenshot": png path}, {"sleep": seconds}.
RESULT: per page {"url", "results", "console_errors", "page_errors", "external_requests", "load_ms"}.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = os.environ.get("REVIEW_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"]


class RangeHandler(SimpleHTTPRequestHandler):
    """A plain static server that also answers byte ranges (as nginx or any CDN does; browsers
    seek in media through them)."""

    def log_message(self, *args):                     # quiet
        pass

    def send_head(self):
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not m or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        start = int(m.group(1)) if m.group(1) else max(0, size - int(m.group(2) or 0))
        end = int(m.group(2)) if m.group(1) and m.group(2) else size - 1
        end = min(end, size - 1)
        if start > end:
            self.send_error(416)
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        while remaining > 0:
            chunk = source.read(min(65536, remaining))
            if not chunk:
                break
            outputfile.write(chunk)
            remaining -= len(chunk)


def serve(root: str) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def local(url: str) -> bool:
    return url.startswith(("file:", "data:", "blob:", "about:", "http://127.0.0.1:", "chrome-error:"))


def run_page(ctx, url: str, steps: list[dict], rec: dict) -> dict:
    page = ctx.new_page()
    rec.update({"url": url, "results": [], "console_errors": [], "page_errors": [], "external_requests": []})
    page.on("console", lambda m: rec["console_errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: rec["page_errors"].append(str(e)))
    page.on("request", lambda r: None if local(r.url) else rec["external_requests"].append(r.url))
    t0 = time.perf_counter()
    page.goto(url, wait_until="load")
    page.wait_for_function("document.body && document.body.dataset.ready === '1'", timeout=30000)
    rec["load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for step in steps:
        if "eval" in step:
            rec["results"].append(page.evaluate(step["eval"]))
        elif "wait" in step:
            page.wait_for_function(step["wait"], timeout=step.get("timeout_ms", 15000))
            rec["results"].append(True)
        elif "click" in step:
            page.locator(step["click"]).nth(step.get("nth", 0)).click()
            rec["results"].append(True)
        elif "press" in step:
            page.keyboard.press(step["press"])
            rec["results"].append(True)
        elif "screenshot" in step:
            page.screenshot(path=step["screenshot"], full_page=step.get("full_page", False))
            rec["results"].append(step["screenshot"])
        elif "sleep" in step:
            page.wait_for_timeout(1000 * step["sleep"])
            rec["results"].append(True)
    page.close()
    return rec


def main(spec_path: str, result_path: str) -> int:
    from playwright.sync_api import sync_playwright

    spec = json.loads(Path(spec_path).read_text())
    root = str(Path(spec["root"]).resolve())
    server, base = serve(root)
    out = {"pages": []}
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="review-browser-") as profile:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
                viewport=spec.get("viewport", {"width": 1280, "height": 860}))
            out["browser"] = ctx.browser.version if ctx.browser else None
            for p in spec["pages"]:
                rel = p["path"]
                url = (Path(root, rel).as_uri() if p.get("via", "file") == "file"
                       else f"{base}/{'/'.join(Path(rel).parts)}") + p.get("hash", "")
                rec: dict = {}
                out["pages"].append(rec)
                try:
                    run_page(ctx, url, p.get("steps", []), rec)
                except Exception as e:  # noqa: BLE001 - reported to the test, which fails with it
                    rec["error"] = f"{type(e).__name__}: {e}"
            ctx.close()
    finally:
        server.shutdown()
    Path(result_path).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
