"""One-click runs: the "Open in Colab" / "Launch Binder" badges and the install cell at the top of every notebook.

``python -m m2s_lib.teaching.badges`` (check) and ``python -m m2s_lib.teaching.badges --write`` (insert or update).

The repository's address is written once, as ``Repository`` under ``[project.urls]`` in ``pyproject.toml``; the
badges are derived from it, so changing the address and rerunning ``--write`` keeps every notebook in step, and
:func:`badge_problems` (used by the tests) fails when a notebook is out of step.

Every notebook then starts: the title (markdown), the badges (markdown, tag ``badges``), the install cell (code,
tag ``install``), the ``parameters`` cell. The install cell installs the package only when ``m2s_lib`` is not
importable -- in Colab, where it clones the repository and ``pip install -e``'s it. Locally, under papermill, in
CI and on Binder (whose ``binder/postBuild`` installed it) it imports nothing and runs nothing. Papermill injects
its parameters after the cell tagged ``parameters`` wherever that cell is, so papermill runs are unchanged.
Colab's GPU (Runtime -> Change runtime type) is then picked by the notebooks' own ``device="auto"``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from ..constants import repo_root
from . import nbcheck
from .nbcheck import discover_notebooks

__all__ = [
    "BADGES_TAG",
    "INSTALL_TAG",
    "badge_problems",
    "badges_markdown",
    "binder_url",
    "colab_url",
    "install_source",
    "repository_url",
    "sync_notebook",
    "sync_notebooks",
]

ROOT = repo_root()
NOTEBOOK_DIR = ROOT / "notebooks"
BRANCH = "main"  # the branch the badges open
BADGES_TAG = "badges"
INSTALL_TAG = nbcheck.INSTALL_TAG
CELL_IDS = {BADGES_TAG: "m2s-badges", INSTALL_TAG: "m2s-install"}
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"


def repository_url(pyproject: str | Path | None = None) -> str:
    """``Repository`` of ``[project.urls]``: from ``pyproject.toml`` in a checkout, else the installed metadata."""
    path = Path(pyproject) if pyproject is not None else ROOT / "pyproject.toml"
    if path.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        urls = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    else:
        from importlib.metadata import metadata

        urls = dict(u.split(", ", 1) for u in metadata("m2s_lib").get_all("Project-URL") or [])
    url = urls.get("Repository", "")
    if not url.startswith("https://github.com/") or len(url.rstrip("/").split("/")) != 5:
        raise ValueError(f"{path}: [project.urls] Repository must be https://github.com/OWNER/NAME, got {url!r}")
    return url.rstrip("/").removesuffix(".git")


def _owner_name(url: str) -> str:
    return url.removeprefix("https://github.com/")


def colab_url(notebook: str, url: str | None = None) -> str:
    """Colab's address of ``notebooks/<notebook>`` on :data:`BRANCH` of the repository."""
    return f"https://colab.research.google.com/github/{_owner_name(url or repository_url())}/blob/{BRANCH}/notebooks/{notebook}"


def binder_url(notebook: str, url: str | None = None) -> str:
    """mybinder.org's address that builds the repository (``binder/``) and opens the notebook in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{_owner_name(url or repository_url())}/{BRANCH}?labpath={quote('notebooks/' + notebook, safe='')}"


def badges_markdown(notebook: str, url: str | None = None) -> str:
    """The badges cell of one notebook."""
    url = url or repository_url()
    return (
        f"[![Open in Colab]({COLAB_BADGE})]({colab_url(notebook, url)}) "
        f"[![Launch Binder]({BINDER_BADGE})]({binder_url(notebook, url)})\n\n"
        "*Run it without installing anything:* Colab (free GPU under *Runtime → Change runtime type*; the notebook "
        'picks it through `device="auto"`) or Binder (CPU). The next cell installs the package there; on your own '
        "machine it does nothing."
    )


def install_source(url: str | None = None) -> str:
    """The install cell: a no-op whenever ``m2s_lib`` is importable."""
    url = url or repository_url()
    return f'''# Colab: installs this course's package when it is missing.
# A no-op wherever m2s_lib imports already (your own machine, Binder, a course image).
import importlib.util

if importlib.util.find_spec("m2s_lib") is None:
    import os
    import subprocess
    import sys

    _repo = os.path.abspath("m2snet")
    if not os.path.isdir(_repo):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{BRANCH}", "{url}.git", _repo], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", _repo], check=True)
    sys.path.insert(0, _repo)
    os.chdir(os.path.join(_repo, "notebooks"))'''


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _expected_cells(name: str, url: str, old: dict) -> list:
    import nbformat

    badges = nbformat.v4.new_markdown_cell(badges_markdown(name, url), metadata={"tags": [BADGES_TAG]})
    install = nbformat.v4.new_code_cell(install_source(url), metadata={"tags": [INSTALL_TAG]})
    for cell, tag in ((badges, BADGES_TAG), (install, INSTALL_TAG)):
        cell["id"] = old.get(tag, {}).get("id") or CELL_IDS[tag]
    return [badges, install]


def _is_title(cell) -> bool:
    return cell.get("cell_type") == "markdown" and "".join(cell.get("source", "")).lstrip().startswith("# ")


def sync_notebook(path: str | Path, write: bool = True, url: str | None = None) -> bool:
    """Put the badges and install cells right after the title of ``path``; ``True`` when it was (or would be) changed."""
    import nbformat

    path = Path(path)
    url = url or repository_url()
    nb = nbformat.read(path, as_version=4)
    if not nb.cells or not _is_title(nb.cells[0]):
        raise ValueError(
            f"{path}: the first cell must be the markdown title ('# NN · ...') for the badges to follow it"
        )
    old = {tag: c for c in nb.cells for tag in (BADGES_TAG, INSTALL_TAG) if tag in _tags(c)}
    rest = [c for c in nb.cells[1:] if not {BADGES_TAG, INSTALL_TAG} & set(_tags(c))]
    cells = [nb.cells[0], *_expected_cells(path.name, url, old), *rest]
    changed = [(c.cell_type, c.get("id"), c.source, c.metadata) for c in cells] != [
        (c.cell_type, c.get("id"), c.source, c.metadata) for c in nb.cells
    ]
    if changed and write:
        from ..atomic import atomic_path

        nb.cells = cells
        with atomic_path(path) as tmp:
            nbformat.write(nb, tmp)
    return changed


def sync_notebooks(folder: str | Path = NOTEBOOK_DIR, write: bool = True, url: str | None = None) -> list[Path]:
    """:func:`sync_notebook` on every numbered notebook of ``folder``; the notebooks changed (or to change)."""
    url = url or repository_url()
    return [p for p in discover_notebooks(folder) if sync_notebook(p, write=write, url=url)]


def badge_problems(folder: str | Path = NOTEBOOK_DIR, url: str | None = None) -> list[str]:
    """One line per notebook whose badges or install cell are missing or out of step with ``[project.urls]``."""
    url = url or repository_url()
    problems = []
    for path in discover_notebooks(folder):
        try:
            stale = sync_notebook(path, write=False, url=url)
        except ValueError as err:
            problems.append(str(err))
            continue
        if stale:
            problems.append(
                f"{path}: badges/install cell missing or out of step with [project.urls] "
                "(run `python -m m2s_lib.teaching.badges --write`)"
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m2s_lib.teaching.badges", description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(NOTEBOOK_DIR), help="notebook folder (default notebooks/)")
    parser.add_argument("--write", action="store_true", help="insert or update the cells (default: only check)")
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = sync_notebooks(args.folder, write=True)
            print(f"badges: updated {len(changed)} notebook(s)" + "".join(f"\n  {p}" for p in changed))
            return 0
        problems = badge_problems(args.folder)
    except (ValueError, OSError) as err:
        print(f"badges: {err}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
