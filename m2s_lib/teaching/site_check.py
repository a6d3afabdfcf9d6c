"""A real browser looks at the built site: ``m2s site --check`` and tests/teaching/test_site.py.

:func:`check_site` serves the site on 127.0.0.1 (``http.server`` in a thread), opens every page in headless Chromium
(Debian's ``chromium``; ``M2S_CHROMIUM`` names another binary), driven through the DevTools protocol over
``websocket-client``, and fails (:class:`SiteCheckError`, one line per problem) when a page has

* an image that did not load (``naturalWidth == 0``), or fewer loaded figures in its notebook outputs than the
  executed notebook shows (``site.json``),
* an equation MathJax did not typeset (a ``.math`` element without ``mjx-container``), or TeX left as text
  (``$$``, ``\\begin{``) outside code,
* an internal link to a missing file or to an anchor the target page lacks.

Screenshots (1280 px wide) go to ``<site>/../site-screenshots/``: the landing page and its gallery, notebook 08 at
its top, at its first figure and at its Colab/Binder badges, and the first notebook equation. The landing page and
the first page with equations are opened from ``file://`` too: the site works without a server.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

__all__ = ["SiteCheckError", "SiteReport", "check_site", "find_chromium"]

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--window-size=1280,900", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
)  # fmt: skip
PAGE_TIMEOUT = 30.0  # seconds for one page to load and typeset

# Runs in the page: waits for MathJax and the images, then reports what the checks need.
PROBE = r"""(async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  const math = Array.from(document.querySelectorAll('.math'));
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style, mjx-container, .math, .cell_output, .output').forEach(e => e.remove());
  return {
    title: document.title,
    images: imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                            output: !!i.closest('.cell_output, .output')})),
    math: math.length, typeset: math.filter(e => e.querySelector('mjx-container')).length,
    mathjax: !!(mj && mj.version),
    text: body.textContent,
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  };
})()"""


class SiteCheckError(AssertionError):
    """The site failed a check; the message has one line per problem."""


@dataclass
class SiteReport:
    pages: dict[str, dict] = field(default_factory=dict)  # page path -> probe result
    screenshots: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        images = sum(len(p["images"]) for p in self.pages.values())
        math = sum(p["math"] for p in self.pages.values())
        return (
            f"site check: {len(self.pages)} page(s), {images} image(s), {math} equation(s) typeset, no broken link, "
            f"in {self.seconds:.0f} s; screenshots:\n" + "\n".join(f"  {p}" for p in self.screenshots)
        )


def find_chromium() -> str | None:
    """``$M2S_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on the PATH."""
    explicit = os.environ.get("M2S_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# ---------------------------------------------------------------------------------------------------------------
# Static server and browser
# ---------------------------------------------------------------------------------------------------------------
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _Page:
    """A page target of Chromium driven over the DevTools protocol (the few commands the checks need)."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=PAGE_TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def _receive(self, waiting_for: str) -> dict:
        import websocket

        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise SiteCheckError(f"the browser did not answer {waiting_for} within {PAGE_TIMEOUT:.0f} s") from None

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive(method)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise SiteCheckError(f"DevTools {method}: {message['error'].get('message')}")
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, name: str, timeout: float = PAGE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == name for e in self.events):
            if time.monotonic() > deadline:
                raise SiteCheckError(f"the browser sent no {name} within {timeout:.0f} s")
            self.events.append(self._receive(name))

    def open(self, url: str) -> dict:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        result = self.send("Runtime.evaluate", expression=PROBE, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise SiteCheckError(f"{url}: the page probe failed: {result['exceptionDetails'].get('text')}")
        return result["result"]["value"]

    def screenshot(self, path: Path, selector: str | None = None) -> Path | None:
        if selector is not None:
            found = self.send("Runtime.evaluate", returnByValue=True, expression=(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return false; "
                "e.scrollIntoView({block: 'start'}); window.scrollBy(0, -80); return true; })()"))  # fmt: skip
            if not found["result"].get("value"):
                return None
            time.sleep(0.2)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()


@contextmanager
def browser(chromium: str) -> Iterator[_Page]:
    """Headless Chromium with a fresh profile; yields its first page, driven over DevTools."""
    profile = Path(tempfile.mkdtemp(prefix="m2s-chromium-"))
    proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    page = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SiteCheckError(
                    f"{chromium} did not start (exit status {proc.poll()}); try it by hand: "
                    f"{chromium} --headless --no-sandbox --dump-dom about:blank"
                )
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = [t for t in json.load(reply) if t.get("type") == "page"]
        page = _Page(targets[0]["webSocketDebuggerUrl"])
        page.send("Page.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        yield page
    finally:
        if page is not None:
            page.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------------------
TEX_LEFT = ("$$", "\\begin{", "\\frac{", "\\mathrm{")


def page_problems(page: str, probe: dict, figures: int | None) -> list[str]:
    """Problems of one page from its probe (see :data:`PROBE`); ``figures``: images its notebook shows."""
    problems = [f"{page}: image did not load: {img['src']}" for img in probe["images"] if not img["ok"]]
    if figures is not None:
        shown = sum(1 for img in probe["images"] if img["ok"] and img["output"])
        if shown < figures:
            problems.append(f"{page}: shows {shown} figure(s) in its outputs, the executed notebook has {figures}")
    if probe["math"] and probe["typeset"] < probe["math"]:
        why = "" if probe["mathjax"] else " (MathJax did not load)"
        problems.append(f"{page}: {probe['math'] - probe['typeset']} of {probe['math']} equation(s) not typeset{why}")
    for token in TEX_LEFT:
        at = probe["text"].find(token)
        if at >= 0:
            problems.append(f"{page}: TeX left as text: ...{probe['text'][max(0, at - 40) : at + 40]!r}...")
    return problems


def link_problems(site: Path, base: str, pages: dict[str, dict]) -> list[str]:
    """Internal links whose file is missing, or whose anchor is not on a page that was opened."""
    problems = []
    for page, probe in pages.items():
        for href in set(probe["links"]):
            if not href.startswith(base):
                continue  # external (Colab, Binder, GitHub, arXiv): not reachable from a test machine
            target, fragment = urldefrag(href)
            rel = unquote(urlsplit(target).path).lstrip("/")
            path = site / rel
            if path.is_dir():
                path, rel = path / "index.html", f"{rel.rstrip('/')}/index.html".lstrip("/")
            if not path.is_file():
                problems.append(f"{page}: broken link to {rel}")
            elif fragment and rel in pages and fragment not in pages[rel]["ids"]:
                problems.append(f"{page}: link to {rel}#{fragment}: no such anchor")
    return problems


def check_site(
    site: str | os.PathLike, screenshots: str | os.PathLike | None = None, chromium: str | None = None
) -> SiteReport:
    """Open every page of a built site in headless Chromium; raise :class:`SiteCheckError` listing the problems."""
    start = time.perf_counter()
    site = Path(site).resolve()
    manifest_file = site / "site.json"
    if not manifest_file.is_file():
        raise SiteCheckError(f"{site} has no site.json: build it first (`m2s site`)")
    manifest = json.loads(manifest_file.read_text())
    chromium = chromium or find_chromium()
    if chromium is None:
        raise SiteCheckError("no Chromium found: `apt-get install chromium` (Debian/Ubuntu) or set M2S_CHROMIUM")
    shots = Path(screenshots) if screenshots is not None else site.parent / "site-screenshots"
    figures = {p["html"]: p["figures"] for p in manifest["pages"]}
    html_pages = sorted(
        str(p.relative_to(site)) for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith("_")
    )
    report = SiteReport()
    with serve(site) as base, browser(chromium) as page:
        for rel in html_pages:
            probe = page.open(base + rel)
            report.pages[rel] = probe
            report.problems += page_problems(rel, probe, figures.get(rel))
            if rel == "index.html":
                report.screenshots.append(page.screenshot(shots / "landing.png"))
                shot = page.screenshot(shots / "landing-gallery.png", "figure.m2s-gallery")
                report.screenshots += [shot] if shot else []
            if rel.startswith("notebooks/08_"):
                report.screenshots.append(page.screenshot(shots / "08_feature_maps.png"))
                shot = page.screenshot(shots / "08_feature_maps-figure.png", ".cell_output img")
                report.screenshots += [shot] if shot else []
                shot = page.screenshot(shots / "08_feature_maps-badges.png", "img[alt='Open in Colab']")
                report.screenshots += [shot] if shot else []
            if rel.startswith("notebooks/") and probe["math"] and not any("math" in s.name for s in report.screenshots):
                shot = page.screenshot(shots / f"{Path(rel).stem}-math.png", "div.math, span.math")
                report.screenshots += [shot] if shot else []
        report.problems += link_problems(site, base, report.pages)
        # Without a server: the landing page and the first page with equations, from the file system.
        with_math = next((rel for rel, probe in report.pages.items() if probe["math"]), None)
        for rel in dict.fromkeys(["index.html", *([with_math] if with_math else [])]):
            local = page.open(site.joinpath(rel).as_uri())
            report.problems += [f"file:// {p}" for p in page_problems(rel, local, figures.get(rel))]
    missing = [name for name in figures if name not in report.pages]
    report.problems += [f"{name}: listed in site.json but not built" for name in missing]
    report.seconds = time.perf_counter() - start
    if report.problems:
        raise SiteCheckError(f"{len(report.problems)} problem(s):\n" + "\n".join(report.problems))
    return report
