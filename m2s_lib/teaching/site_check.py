"""A real browser looks at the built site: ``m2s site --check`` and tests/teaching/test_site.py.

:func:`check_site` serves the site on 127.0.0.1 (``http.server`` in a thread), opens every page in headless Chromium
(Debian's ``chromium``; ``M2S_CHROMIUM`` names another binary), driven by Playwright for Python through
``executable_path`` (no browser download), and fails (:class:`SiteCheckError`, one line per problem) when a page has

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

import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

__all__ = ["SiteCheckError", "SiteReport", "check_site", "find_chromium"]

# Added to Playwright's own (headless, no sandbox, no first run, no background networking...): no QUIC, no
# component updates, /tmp instead of /dev/shm (small in containers), no scroll bars in screenshots.
CHROMIUM_FLAGS = ("--disable-gpu", "--disable-quic", "--disable-component-update", "--disable-dev-shm-usage",
                  "--hide-scrollbars")
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
    """One Playwright page with the two things the checks need: open-and-probe, and screenshots."""

    def __init__(self, page):
        self.page = page

    def open(self, url: str) -> dict:
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.goto(url, wait_until="load")
            return self.page.evaluate(PROBE)
        except PlaywrightError as err:
            raise SiteCheckError(f"{url}: {str(err).splitlines()[0]}") from None

    def screenshot(self, path: Path, selector: str | None = None) -> Path | None:
        if selector is not None:
            element = self.page.query_selector(selector)
            if element is None:
                return None
            self.page.evaluate("e => { e.scrollIntoView({block: 'start'}); window.scrollBy(0, -80); }", element)
            self.page.wait_for_timeout(200)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path


@contextmanager
def browser(chromium: str) -> Iterator[_Page]:
    """Headless Chromium (the binary ``chromium``: Playwright downloads no browser) driven by Playwright; yields one
    1280×900 page."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SiteCheckError("the site check needs Playwright: pip install -e '.[site]'") from None
    with sync_playwright() as driver:
        try:
            chrome = driver.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_FLAGS))
        except PlaywrightError as err:
            raise SiteCheckError(f"{chromium} did not start ({str(err).splitlines()[0]}); try it by hand: "
                                 f"{chromium} --headless --no-sandbox --dump-dom about:blank") from None
        try:
            page = chrome.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(PAGE_TIMEOUT * 1000)
            yield _Page(page)
        finally:
            chrome.close()


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
