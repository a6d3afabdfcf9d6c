"""The course as a static website: ``m2s site`` / ``make site`` / ``python -m m2s_lib.teaching.site``.

Built with Sphinx + MyST-NB + sphinx-book-theme from the **executed** notebooks of a run folder (``runs/latest`` of
``make reproduce`` by default, ``runs/tests`` after ``make test``); nothing is re-executed
(``nb_execution_mode = "off"``). The site goes to ``<run>/site/`` and works opened from the file system and from any
static host: figures are image files under ``_images/``, equations are typeset by MathJax 3 copied into the site
(``_static/mathjax/tex-svg-full.js`` from the ``sphinx-mathjax-offline`` package: SVG output, so no web fonts and no
network), the Colab/Binder badge images are local SVGs, and the notebooks' saved progress-bar widgets become static
HTML (the widget JavaScript would come from a CDN).

Pages: a landing page (what the course is, the run's summary table, a gallery of the figures the notebooks saved),
the ten notebooks in order with their outputs (each with a link to its source on GitHub and the theme's Colab and
Binder launch buttons), and ``docs/*.md``. ``site.json`` beside the pages lists them with the number of figures
each executed notebook shows; :mod:`m2s_lib.teaching.site_check` opens every page in headless Chromium and checks
them against it.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote
from warnings import catch_warnings, simplefilter

from ..atomic import write_text
from ..constants import repo_root, runs_path
from . import badges
from .nbcheck import discover_notebooks

__all__ = ["MANIFEST", "SiteError", "build_site", "figure_count", "main", "mathjax_source", "resolve_run"]

ROOT = repo_root()
DOCS_DIR = ROOT / "docs"
NOTEBOOK_DIR = ROOT / "notebooks"
MANIFEST = "site.json"  # written into the site: pages, figures per notebook page, run
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MATHJAX_FILE = "tex-svg-full.js"  # MathJax 3, every TeX extension inside, SVG output: one file, no fonts to fetch

INTRO = """\
A course in ten notebooks on **M2SNet**, the *Multi-scale in Multi-scale Subtraction Network* for medical image
segmentation (Zhao et al., [arXiv 2303.10894](https://arxiv.org/abs/2303.10894)). It builds the network one idea at a
time -- the subtraction unit (Eq. 1), the multi-scale subtraction unit with full-one filters (Eq. 2), the MMSM pyramid
(Eq. 3), the losses with LossNet (Eq. 4-6) -- then trains, evaluates, looks inside and ablates it, on the tested
library `m2s_lib`. These pages are the notebooks **as executed** in the run below, with every figure in place.
Run any of them yourself with the *Open in Colab* / *Launch Binder* badges, or locally after `make install`.
"""


class SiteError(ValueError):
    """A run folder or output folder the site cannot be built from or into (one readable line)."""


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------
def resolve_run(run: str | os.PathLike | None) -> Path:
    """The run folder (symlinks such as ``runs/latest`` resolved); it must hold executed ``NN_*.ipynb`` files."""
    path = Path(run).expanduser() if run is not None else runs_path("latest")
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.exists():
        hint = "run `make reproduce` first, or pass --run DIR" if run is None else "check the path"
        raise SiteError(f"run folder {path} does not exist: {hint}")
    path = path.resolve()
    if not discover_notebooks(path):
        raise SiteError(
            f"run folder {path} holds no executed notebooks (NN_*.ipynb): pass the folder of a reproduce "
            "run (runs/<timestamp>) or runs/tests after `make test`"
        )
    return path


def figure_count(nb: Mapping[str, Any]) -> int:
    """How many images an executed notebook shows (display_data / execute_result outputs with an image)."""
    return sum(
        1
        for cell in nb.get("cells", [])
        for out in cell.get("outputs", []) or []
        if any(m in out.get("data", {}) for m in IMAGE_MIMES)
    )


# ---------------------------------------------------------------------------------------------------------------
# Notebook copies for the site
# ---------------------------------------------------------------------------------------------------------------
def _badge_svg(left: str, right: str, colour: str) -> str:
    """A flat two-part badge in the usual style (local, so the site needs no badge server)."""
    lw, rw = 6 * len(left) + 12, 6 * len(right) + 12
    font = "font-family='DejaVu Sans,Verdana,Geneva,sans-serif' font-size='11'"
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{lw + rw}' height='20' role='img' "
            f"aria-label='{left}: {right}'><rect width='{lw + rw}' height='20' rx='3' fill='#555'/>"
            f"<rect x='{lw}' width='{rw}' height='20' rx='3' fill='{colour}'/><rect x='{lw}' width='4' height='20' "
            f"fill='{colour}'/><g fill='#fff' {font} text-anchor='middle'><text x='{lw / 2}' y='14'>{left}</text>"
            f"<text x='{lw + rw / 2}' y='14'>{right}</text></g></svg>\n")  # fmt: skip


LOCAL_BADGES = {
    badges.COLAB_BADGE: ("colab.svg", _badge_svg("Open in", "Colab", "#f9ab00")),
    badges.BINDER_BADGE: ("binder.svg", _badge_svg("launch", "binder", "#579aca")),
}


def _widget_html(model_id: str, state: Mapping[str, Any], depth: int = 0) -> str | None:
    """Static HTML for a saved widget (tqdm's HBox of HTML + progress + HTML); ``None`` when it is not one of those."""
    model = state.get(model_id)
    if model is None or depth > 4:
        return None
    name, values = model.get("model_name", ""), model.get("state", {})
    if name in ("HBoxModel", "VBoxModel"):
        parts = [_widget_html(str(c).removeprefix("IPY_MODEL_"), state, depth + 1) for c in values.get("children", [])]
        if any(p is None for p in parts):
            return None
        direction = "row" if name == "HBoxModel" else "column"
        return (
            f"<div style='display:flex;flex-direction:{direction};gap:0.5em;align-items:center'>{''.join(parts)}</div>"
        )
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<span>{values.get('value', '')}</span>"
    if name == "LabelModel":
        return f"<span>{html.escape(str(values.get('value', '')))}</span>"
    if name in ("FloatProgressModel", "IntProgressModel"):
        return f"<progress value='{values.get('value', 0)}' max='{values.get('max', 100)}'></progress>"
    return None


def _static_widgets(nb) -> None:
    """Replace saved widget views by static HTML built from the saved widget state; drop the state."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for out in cell.get("outputs", []) or []:
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                view = data.pop(WIDGET_VIEW)
                static = _widget_html(str(view.get("model_id", "")), state)
                if static is not None:
                    data["text/html"] = static
    nb.metadata.pop("widgets", None)


LINK = re.compile(r"((?<!!)\[[^\[\]]*\]\()(?!https?:|mailto:|#)([^)\s]+)(\))")  # [text](relative), not images


def _repository_links(text: str, folder: str, url: str) -> str:
    """Relative links of a page in ``folder`` (``docs``, ``notebooks``) to files that are not pages of the site
    (``../m2s_lib/model.py``, ``../README.md``) become links to the file in the repository on GitHub."""

    def repl(m: re.Match) -> str:
        target, _, fragment = m.group(2).partition("#")
        path = os.path.normpath(os.path.join(folder, unquote(target)))
        is_page = (path.startswith("docs/") and path.endswith(".md") and (ROOT / path).is_file()) or (
            path.startswith("notebooks/") and path.endswith(".ipynb")
        )
        if is_page or path.startswith("..") or not target:
            return m.group(0)
        return f"{m.group(1)}{url}/blob/{badges.BRANCH}/{path}{'#' + fragment if fragment else ''}{m.group(3)}"

    return LINK.sub(repl, text)


def _source_cell(name: str, run: Path, url: str):
    import nbformat

    text = (
        f"<small>Source: [`notebooks/{name}`]({url}/blob/{badges.BRANCH}/notebooks/{name}) (committed without "
        f"outputs) · shown here as executed in run `{run.name}`.</small>"
    )
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["m2s-site-source"]})


def _copy_notebook(executed: Path, dest: Path, run: Path, url: str) -> dict[str, Any]:
    """Write the site's copy of one executed notebook; its title, figure count and failed cell (or ``None``)."""
    import nbformat

    nb = nbformat.reads(executed.read_text(encoding="utf-8").replace(f"{ROOT}/", ""), as_version=4)  # relative paths
    figures = figure_count(nb)
    failed = next((c.get("execution_count") or "?" for c in nb.cells for o in c.get("outputs", []) or []
                   if o.get("output_type") == "error"), None)  # fmt: skip
    _static_widgets(nb)
    for cell in nb.cells:
        if badges.INSTALL_TAG in cell.metadata.get("tags", []):  # Colab's business: folded on the site
            cell.metadata["tags"] = [*cell.metadata["tags"], "hide-input"]
        if cell.cell_type == "markdown":
            cell.source = _repository_links(cell.source, "notebooks", url)
            for remote, (local, _) in LOCAL_BADGES.items():
                cell.source = cell.source.replace(remote, f"../_badges/{local}")
    # The title cell: the first markdown heading (papermill puts its error banner above it when a cell failed).
    title_at = next(
        (i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("# ")), None
    )
    title = executed.stem if title_at is None else nb.cells[title_at].source.splitlines()[0].lstrip("#").strip()
    if title_at is not None:  # the heading is the page's title in every menu: text, never HTML that would run
        _, _, rest = nb.cells[title_at].source.partition("\n")
        nb.cells[title_at].source = f"# {html.escape(title, quote=False)}\n{rest}"
    nb.cells.insert(0 if title_at is None else title_at + 1, _source_cell(executed.name, run, url))
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return {"title": title or executed.stem, "figures": figures, "failed_cell": failed}


# ---------------------------------------------------------------------------------------------------------------
# Landing page
# ---------------------------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    """``value`` as text in the Markdown of a page: HTML escaped (a ``<script>`` in a run's files is shown, never
    run), ``|``, ``[`` and ``]`` backslash-escaped (they cannot break a table or a link); one line."""
    return re.sub(r"([\\|\[\]])", r"\\\1", html.escape(" ".join(str(value).split()), quote=False))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _run_state(state_file: Path) -> dict[str, Any]:
    """``reproduce.json`` (``{}`` when absent); a damaged one is a :class:`SiteError` naming it."""
    if not state_file.is_file():
        return {}
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise SiteError(f"{state_file} is not valid JSON ({err}): run `m2s reproduce` again, or delete it") from None
    if not isinstance(state, dict) or not isinstance(state.get("notebooks", {}), dict):
        raise SiteError(f"{state_file} is not a `make reproduce` report (a JSON object with 'notebooks'): delete it")
    return state


def _summary(run: Path, pages: Sequence[dict]) -> list[str]:
    """The run's summary: notebook status table (reproduce.json) and the polyp table (REPORT.md or notebook 07).
    Every value read from the run's files is escaped (:func:`_text`)."""
    lines = ["## This run", ""]
    state = _run_state(run / "reproduce.json")
    if state:
        wall = _number(state.get("wall_s")) or 0.0
        lines += [f"Run `{run.name}`: profile `{_text(state.get('profile'))}`, started {_text(state.get('started'))}, "
                  f"wall time {wall / 60:.1f} min (`make reproduce`).", ""]  # fmt: skip
    else:
        lines += [f"Run folder `{run.name}` (executed notebooks without a `make reproduce` report).", ""]
    lines += ["| notebook | status | time |", "|---|---|---|"]
    info = state.get("notebooks", {})
    for page in pages:
        entry = info.get(page["file"], {})
        entry = entry if isinstance(entry, dict) else {}
        status = _text(entry["status"]) if entry.get("status") else (
            "executed" if page["failed_cell"] is None else "**failed**")
        if page["failed_cell"] is not None:
            status += f" (error in cell {_text(page['failed_cell'])}, shown in place)"
        seconds = _number(entry.get("seconds"))
        lines.append(
            f"| [{_text(page['title'])}]({page['doc']}.ipynb) | {status} | "
            f"{'' if seconds is None else f'{seconds:.0f} s'} |"
        )
    lines.append("")
    report = run / "REPORT.md"
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    match = re.search(r"^## Polyp results.*?\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    table = run / "07_evaluation" / "polyp_results.md"
    if match:
        lines += ["### Polyp results (notebook 07, from REPORT.md)", "", match.group(1).strip(), ""]
    elif table.is_file():
        lines += ["### Polyp results (notebook 07)", "", table.read_text(encoding="utf-8").strip(), ""]
    else:
        lines += ["_No polyp table in this run: notebook 07 did not save one._", ""]
    return lines


def _gallery(run: Path, src: Path, pages: Sequence[dict]) -> list[str]:
    """Every figure the notebooks saved (``<run>/<notebook>/outputs.json``), linked to its notebook."""
    lines = ["## Figure gallery", ""]
    count = 0
    for page in pages:
        index = run / page["stem"] / "outputs.json"
        try:
            items = json.loads(index.read_text()) if index.is_file() else []
        except ValueError:
            items = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("files", []), list):
                continue
            files = [f for f in item.get("files", []) if isinstance(f, str) and _own_file(f)
                     and f.lower().endswith((".png", ".jpg", ".jpeg", ".svg"))]  # fmt: skip
            if item.get("kind") != "figure" or not files or not (run / page["stem"] / files[0]).is_file():
                continue
            target = src / "_gallery" / page["stem"] / files[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / page["stem"] / files[0], target)
            caption = " ".join(str(item.get("caption") or item.get("name", "")).split())
            lines += [
                f"```{{figure}} _gallery/{page['stem']}/{files[0]}",
                ":figclass: m2s-gallery",
                f":alt: {caption}",  # an attribute: docutils escapes it
                "",
                f"[{page['stem'][:2]}]({page['doc']}.ipynb) · {_text(caption)}",
                "```",
                "",
            ]
            count += 1
    if not count:
        lines += ["_The notebooks of this run saved no figures (run them with a `run_dir`)._", ""]
    return lines


def _own_file(name: str) -> bool:
    """A file name inside the notebook's output folder (no ``..``, no absolute path, nothing Markdown would read)."""
    return bool(re.fullmatch(r"[\w.\- ]+(/[\w.\- ]+)*", name)) and ".." not in name.split("/")


def _landing(run: Path, src: Path, pages: Sequence[dict], docs: Sequence[str], missing: Sequence[str]) -> str:
    lines = ["# M2SNet: the course, executed", "", INTRO, ""]
    if missing:
        lines += [f"```{{note}}\nThis run has no executed copy of {', '.join(missing)}.\n```", ""]
    lines += _summary(run, pages) + _gallery(run, src, pages)
    lines += ["```{toctree}", ":caption: Course", ":maxdepth: 1", "", *[p["doc"] for p in pages], "```", ""]
    if docs:
        lines += ["```{toctree}", ":caption: Guides", ":maxdepth: 1", "", *docs, "```", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Sphinx
# ---------------------------------------------------------------------------------------------------------------
CSS = """\
figure.m2s-gallery { display: inline-block; width: 31%; margin: 0.5em 1%; vertical-align: top; }
figure.m2s-gallery img { width: 100%; height: auto; }
figure.m2s-gallery figcaption { font-size: 0.8em; }
"""


def mathjax_source(name: str = MATHJAX_FILE) -> Path | None:
    """The MathJax 3.2.2 file ``name`` of the ``sphinx-mathjax-offline`` package (default the site's
    ``tex-svg-full.js``), or ``None`` when the package or the file is not installed."""
    from importlib.util import find_spec

    spec = find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / name
    return path if path.is_file() else None


def _settings(url: str, mathjax_local: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "project": "M2SNet course",
        "author": "M2SNet course contributors",
        "extensions": ["myst_nb"],
        "exclude_patterns": ["_build", "jupyter_execute", "**.ipynb_checkpoints"],
        "nb_execution_mode": "off",
        "nb_merge_streams": True,
        "nb_ipywidgets_js": {},
        "nb_render_markdown_format": "myst",
        "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence"],
        "myst_heading_anchors": 3,
        "suppress_warnings": ["mystnb.unknown_mime_type", "myst.header"],
        "html_theme": "sphinx_book_theme",
        "html_title": "M2SNet course",
        "html_static_path": ["_static"],
        "html_css_files": ["m2s.css"],
        "html_theme_options": {
            "repository_url": url,
            "repository_branch": badges.BRANCH,
            "path_to_docs": "",
            "use_repository_button": True,
            "use_source_button": True,
            "use_download_button": True,
            "home_page_in_toc": True,
            "launch_buttons": {
                "colab_url": "https://colab.research.google.com",
                "binderhub_url": "https://mybinder.org",
                "notebook_interface": "jupyterlab",
            },  # fmt: skip
        },
        "html_last_updated_fmt": None,
    }
    if mathjax_local:
        settings["mathjax_path"] = f"mathjax/{MATHJAX_FILE}"
    return settings


def _prepare_source(run: Path, src: Path, url: str) -> dict[str, Any]:
    """Lay out the Sphinx source folder (mirrors the repository: ``notebooks/``, ``docs/``); the manifest."""
    pages = []
    for executed in discover_notebooks(run):
        doc = f"notebooks/{executed.stem}"
        try:
            info = _copy_notebook(executed, src / f"{doc}.ipynb", run, url)
        except (ValueError, KeyError, AttributeError, TypeError, UnicodeDecodeError) as err:
            reason = " ".join(str(err).split())[:120] or type(err).__name__
            raise SiteError(f"{executed} is not a readable notebook ({reason}): execute it again, or move it out of "
                            "the run folder") from None
        pages.append({"file": executed.name, "stem": executed.stem, "doc": doc, "html": f"{doc}.html", **info})
    have = {p["file"] for p in pages}
    missing = [p.name for p in discover_notebooks(NOTEBOOK_DIR) if p.name not in have]
    docs = []
    for md in sorted(DOCS_DIR.glob("*.md")):
        (src / "docs").mkdir(parents=True, exist_ok=True)
        text = _repository_links(md.read_text(encoding="utf-8"), "docs", url)
        (src / "docs" / md.name).write_text(text, encoding="utf-8")
        docs.append(f"docs/{md.stem}")
    if (DOCS_DIR / "figures").is_dir():  # images the guides show (docs/figures/*.png)
        shutil.copytree(DOCS_DIR / "figures", src / "docs" / "figures", dirs_exist_ok=True)
    static = src / "_static"
    static.mkdir(parents=True, exist_ok=True)
    (static / "m2s.css").write_text(CSS)
    (src / "_badges").mkdir(exist_ok=True)
    for name, svg in LOCAL_BADGES.values():
        (src / "_badges" / name).write_text(svg)
    mathjax = mathjax_source()
    if mathjax is not None:
        (static / "mathjax").mkdir(exist_ok=True)
        shutil.copyfile(mathjax, static / "mathjax" / MATHJAX_FILE)
    (src / "index.md").write_text(_landing(run, src, pages, docs, missing), encoding="utf-8")
    settings = _settings(url, mathjax_local=mathjax is not None)
    (src / "conf.py").write_text("# Generated by m2s_lib.teaching.site (rebuilt on every `m2s site`).\n"
                                 f"globals().update({settings!r})\n")  # fmt: skip
    return {"run": str(run), "pages": pages, "docs": [f"{d}.html" for d in docs], "missing": missing,
            "mathjax": "local" if mathjax is not None else "cdn"}  # fmt: skip


def _sphinx(src: Path, out: Path, doctrees: Path, quiet: bool) -> list[str]:
    """Run Sphinx's HTML builder; the warnings it printed."""
    from sphinx.application import Sphinx
    from sphinx.util.console import nocolor

    nocolor()
    warnings = io.StringIO()
    with catch_warnings():  # the extensions' deprecation notices about Sphinx's own API are not the reader's concern
        simplefilter("ignore", DeprecationWarning)
        simplefilter("ignore", PendingDeprecationWarning)
        app = Sphinx(str(src), str(src), str(out), str(doctrees), "html", status=None if quiet else sys.stdout,
                     warning=warnings, freshenv=True, keep_going=True)  # fmt: skip
        app.build()
    return [line for line in warnings.getvalue().splitlines() if line.strip()]


def _replace(new: Path, out: Path) -> None:
    """Move the freshly built site to ``out``, replacing what is there (checked by :func:`build_site`)."""
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


def build_site(
    run: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    log=print,
) -> tuple[Path, dict]:
    """Build the site of a run folder into ``out`` (default ``<run>/site``); its path and its manifest."""
    run_dir = resolve_run(run)
    out_dir = Path(out).expanduser().resolve() if out is not None else run_dir / "site"
    if out_dir == run_dir or out_dir in run_dir.parents:
        raise SiteError(f"--out {out_dir} would hold the run folder itself: pick a new folder")
    if out_dir.exists() and not (out_dir / MANIFEST).is_file() and not overwrite:
        raise SiteError(f"{out_dir} exists and is not a site built by m2s: choose another --out or pass --overwrite")
    from ..engine.folder_lock import lock_folder

    # One `m2s site` per output folder; the lock file sits beside it (the folder itself is replaced in one step).
    with lock_folder(out_dir, "m2s site", lock_path=out_dir.parent / f".{out_dir.name}.m2s.lock"):
        url = badges.repository_url()
        # Everything is built beside the output (same file system: the finished site is moved into place in one step);
        # MyST-NB's jupyter_execute/ lands in this folder too, so the run folder only gains the site.
        work = out_dir.with_name(f".{out_dir.name}.build-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        start = time.perf_counter()
        try:
            manifest = _prepare_source(run_dir, work / "src", url)
            if manifest["mathjax"] == "cdn":
                log(
                    "site: sphinx-mathjax-offline is not installed: equations need MathJax from its CDN (online only); "
                    "`pip install -e '.[site]'` bundles it"
                )
            manifest["warnings"] = _sphinx(work / "src", work / "html", work / "doctrees", quiet)
            manifest["seconds"] = round(time.perf_counter() - start, 1)
            write_text(work / "html" / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            _replace(work / "html", out_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out_dir, manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m2s_lib.teaching.site", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, help="run folder with executed notebooks (default runs/latest)")
    parser.add_argument("--out", default=None, help="output folder (default <run>/site)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if it is not an m2s site")
    parser.add_argument(
        "--check",
        action="store_true",
        help="then open every page in headless Chromium: images, figures, equations, links, screenshots",
    )
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")


def run(args: argparse.Namespace) -> int:
    try:
        out, manifest = build_site(args.run, args.out, overwrite=args.overwrite, quiet=not args.verbose)
    except SiteError as err:
        print(f"site: {err}", file=sys.stderr)
        return 2
    warnings = manifest["warnings"]
    print(
        f"site: {len(manifest['pages'])} notebook page(s) + {len(manifest['docs'])} doc page(s) in "
        f"{manifest['seconds']:.0f} s -> {out / 'index.html'}"
        + (f" ({len(warnings)} Sphinx warning(s))" if warnings else "")
    )
    for line in warnings[:10]:
        print(f"  {line}")
    if manifest["missing"]:
        print(f"site: no executed copy of {', '.join(manifest['missing'])} in {manifest['run']}")
    if args.check:
        from .site_check import SiteCheckError, check_site

        try:
            report = check_site(out)
        except SiteCheckError as err:
            print(f"site: check failed: {err}", file=sys.stderr)
            return 1
        print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
