"""The student package: a wheel of ``m2s_lib`` without what gives the course away (docs/teaching.md, "Students").

The public repository holds every master notebook with its solutions, hidden tests and model answers. What a
class installs instead is built here: a wheel of the library *without* ``notebooks/``, ``tests/`` and
``m2s_lib/teaching/grading/`` (the judge and the hidden cases). :func:`leaks_in_wheel` scans a wheel for anything
of the masters (notebooks, solution and hidden-test markers, hidden-test lines, model answers) and of the judge.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXCLUDED", "LOCK_MARK", "build_student_wheel", "leaks_in_wheel", "mark_locked", "student_install_cell",
           "write_student_package"]

EXCLUDED = ("m2s_lib/teaching/grading",)  # inside the package; notebooks/ and tests/ are never copied
_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


LOCK_MARK = "# 🔒 locked: graded cell, do not edit (grading puts the original back)"


def mark_locked(nb: dict) -> dict:
    from .. import nbcheck

    """A visible first line in every locked code cell (tests, parameters) of a course notebook."""
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if cell.get("cell_type") == "code" and meta.get("locked"):
            source = nbcheck.cell_source(cell)
            if not source.startswith(LOCK_MARK):
                cell["source"] = f"{LOCK_MARK}\n{source}"
    return nb


def student_install_source(package_url: str | None = None) -> str:
    """The install cell of a released notebook: the course's student package (a wheel of the library without the
    solutions) next to the notebook or one folder up, else ``package_url``; never the public repository."""
    fallback = repr(package_url) if package_url else "None"
    return f'''# Installs this course's student package (the library, without the solutions) when m2s_lib is missing.
# A no-op wherever m2s_lib imports already (your course's JupyterHub image, a machine set up by your teacher).
import importlib.util

if importlib.util.find_spec("m2s_lib") is None:
    import glob
    import subprocess
    import sys

    _wheels = sorted(glob.glob("m2s_lib-*.whl") + glob.glob("../m2s_lib-*.whl"))
    _package = _wheels[-1] if _wheels else {fallback}
    if _package is None:
        raise RuntimeError("put the m2s_lib-*.whl file your teacher gave you next to this notebook, then run again")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", _package], check=True)'''


def student_install_cell(nb: dict, package_url: str | None = None) -> dict:
    """``nb`` with its install cell (tag ``install``) replaced by :func:`student_install_source`, without the
    badges cell."""
    from .. import nbcheck

    for cell in nb["cells"]:
        if nbcheck.INSTALL_TAG in (cell.get("metadata", {}).get("tags") or []):
            cell["source"] = student_install_source(package_url)
    # the Colab/Binder badges open the public repository's master (with its solutions): not in a course
    nb["cells"] = [c for c in nb["cells"] if "badges" not in (c.get("metadata", {}).get("tags") or [])]
    return nb


STUDENT_README = """# The course, for students

* `m2s_lib-*.whl`: the course's library (no solutions). Install it once: `pip install m2s_lib-*.whl`
  (the first cell of every notebook does it for you when it is missing).
* `<assignment>/<assignment>.ipynb`: the assignments. Run each one top to bottom; cells marked
  `# 🔒 locked` are graded and put back as they were when you submit.
* Teacher tools are not part of the course: if nbgrader is installed in your environment, its formgrader and
  create-assignment extensions stay disabled (`jupyter server extension disable nbgrader.server_extensions.formgrader`,
  `jupyter labextension disable @jupyter/nbgrader:formgrader`, `jupyter labextension disable
  @jupyter/nbgrader:create-assignment`).
"""


def write_student_package(root: Path, assignments: Sequence[str], masters: Sequence[Path],
                          log: Callable[[str], None] = print) -> dict[str, Any]:
    """``<course>/student/``: the wheel, the student notebooks and a README; the wheel also goes into each
    ``release/<assignment>/`` (nbgrader's exchange hands that folder out)."""
    from ...atomic import copy_file, write_text
    from .. import nbcheck

    start = time.perf_counter()
    folder = root / "student"
    for old in folder.glob("m2s_lib-*.whl"):
        old.unlink()
    wheel = build_student_wheel(folder)
    leaked = leaks_in_wheel(wheel, [nbcheck.load_notebook(p) for p in masters])
    if leaked:
        wheel.unlink()
        raise RuntimeError(f"the student package holds what it must not: {leaked[:3]}")
    for name in sorted(p.name for p in (root / "release").iterdir() if p.is_dir()):
        for old in (root / "release" / name).glob("m2s_lib-*.whl"):
            old.unlink()
        copy_file(wheel, root / "release" / name / wheel.name)
        for item in (root / "release" / name).iterdir():
            if item.is_file() and not item.name.endswith(".whl"):
                copy_file(item, folder / name / item.name)
    write_text(folder / "README.md", STUDENT_README)
    log(f"student package {wheel.relative_to(root)} ({wheel.stat().st_size // 1024} KiB, no notebooks, tests or "
        f"grading code) in {time.perf_counter() - start:.1f} s")
    return {"wheel": str(wheel.relative_to(root)), "assignments": list(assignments)}


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}


def build_student_wheel(out_dir: Path, repo: Path | None = None) -> Path:
    """Build ``m2s_lib-<version>-py3-none-any.whl`` into ``out_dir`` from a staging copy of the library (the
    grading package left out) and return its path. Offline: uses the installed setuptools, no build isolation."""
    from ..reproduce import ROOT

    repo = Path(repo or ROOT)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="m2s-student-package-") as tmp:
        stage = Path(tmp) / "src"
        stage.mkdir()
        shutil.copytree(repo / "m2s_lib", stage / "m2s_lib", ignore=_ignore)
        for rel in EXCLUDED:
            shutil.rmtree(stage / rel, ignore_errors=True)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (repo / name).is_file():
                shutil.copy2(repo / name, stage / name)
        built = Path(tmp) / "wheel"
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--no-index", "-q", "-w", str(built), str(stage)], capture_output=True, text=True)  # fmt: skip
        wheels = sorted(built.glob("m2s_lib-*.whl"))
        if proc.returncode != 0 or not wheels:
            reason = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel written"]
            raise RuntimeError(f"building the student package failed: {reason[0][:300]}")
        target = out_dir / wheels[0].name
        shutil.copy2(wheels[0], target)
    return target


_HIDDEN = re.compile(r"###\s*BEGIN HIDDEN TESTS\s*\n(.*?)###\s*END HIDDEN TESTS", re.S)


def secret_lines(masters: Iterable[Mapping[str, Any]], hidden_dir: Path | None = None) -> list[str]:
    """Lines a student package must not contain: the masters' hidden-test lines, their model answers (hand-graded
    answer cells) and the lines of the hidden cases (``grading/hidden/``). Solution lines are not in this list:
    the reference implementation of every exercise *is* the library, which students need (using it is what the
    judge's scan flags)."""
    from .. import nbcheck

    texts: set[str] = set()
    for master in masters:
        for cell in master.get("cells", []):
            source = nbcheck.cell_source(cell)
            for region in _HIDDEN.finditer(source):
                texts |= {ln.strip() for ln in region.group(1).splitlines() if len(ln.strip()) >= 24}
            meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
            if meta.get("solution") and meta.get("grade") and cell.get("cell_type") == "markdown":
                texts |= {ln.strip() for ln in source.splitlines() if len(ln.strip()) >= 40}
    texts |= hidden_case_names(hidden_dir)
    return sorted(texts)


def hidden_case_names(hidden_dir: Path | None = None) -> set[str]:
    """The names of the hidden cases (``HIDDEN`` of each ``grading/hidden/nbNN.py``): a student package holding
    one of them holds the hidden cases."""
    import importlib.util

    hidden_dir = hidden_dir if hidden_dir is not None else Path(__file__).resolve().parent / "hidden"
    names: set[str] = set()
    for path in sorted(hidden_dir.glob("nb*.py")) if hidden_dir.is_dir() else []:
        spec = importlib.util.spec_from_file_location(f"_m2s_hidden_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # trusted: the course's own hidden cases
        for cases in getattr(module, "HIDDEN", {}).values():
            names |= {str(c["name"]) for c in cases if isinstance(c, Mapping) and len(str(c.get("name", ""))) >= 12}
    return names


def leaks_in_wheel(wheel: Path, masters: Iterable[Mapping[str, Any]] = (), hidden_dir: Path | None = None) -> list[str]:
    """What in ``wheel`` comes from the masters or the judge (empty: clean): notebooks, test files, the grading
    package, a solution/hidden-test region, a hidden-test line, a model answer, a hidden case."""
    found = []
    texts = secret_lines(masters, hidden_dir)
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".ipynb") or name.startswith(("notebooks/", "tests/")):
                found.append(f"{name}: a notebook or test file")
            if any(name.startswith(prefix + "/") for prefix in EXCLUDED):
                found.append(f"{name}: the judge or hidden cases")
            if not name.endswith((".py", ".txt", ".md", ".json", ".yaml", ".yml")):
                continue
            text = archive.read(name).decode("utf-8", "replace")
            found += [f"{name}: a {m!r} region" for m in _MARKERS
                      if re.search(rf"^\s*###\s*{m}\s*$", text, re.M)]  # fmt: skip
            found += [f"{name}: secret line {t[:60]!r}" for t in texts if t in text]
    return found
