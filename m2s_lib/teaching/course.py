"""The course as nbgrader assignments: ``m2s course release`` and ``m2s course grade`` (docs/teaching.md).

One assignment per notebook ``01`` … ``09``; its id and its notebook's name are the notebook's stem
(``01_subtraction_unit``). The notebooks in ``notebooks/`` are the masters (solutions, hidden tests, model
answers); nothing else is a copy of them.

**Release** (:func:`release`) makes an nbgrader course folder ``OUT``:

* ``source/<assignment>/<assignment>.ipynb``: the master with the *classroom presets* written into its
  parameters cell, which is locked (students read the presets; grading restores them in every submission).
  The presets are the parameters ``make reproduce`` passes on the ``tiny`` profile
  (:func:`m2s_lib.teaching.reproduce.notebook_parameters`: one source for both), with relative paths under
  ``runs/``: notebook 06 writes ``runs/06_training/best.pt``, which 07 and 08 read. A ``README.md`` beside each
  notebook says what it needs and how long it takes;
* ``release/<assignment>/``: the student version made by ``nbgrader generate_assignment`` (solutions replaced by
  ``raise NotImplementedError()``, hidden tests and model answers removed, outputs cleared), checked for leaks;
* ``gradebook.db`` (nbgrader's), ``nbgrader_config.py`` (so that ``nbgrader`` and formgrader work in ``OUT``),
  and ``course.json`` (presets and points).

**Grade** (:func:`grade`) takes submissions laid out as nbgrader collects them,
``SUBMISSIONS/<student>/<assignment>/<assignment>.ipynb``, and grades each one in its own sandboxed scratch
folder (:mod:`.grading.runner`, :mod:`.grading.sandbox`; the verdict from the trusted judge), then writes
``verdict.json``, the executed notebook in ``autograded/``, the gradebook's auto scores, a feedback page, and
``grades.csv``/``problems.csv`` after every submission (:mod:`.grading.results`). A malformed submission (wrong
file name, invalid notebook, a link, deleted or altered locked cells) is reported for that student; the others
are graded all the same. Everything runs offline.
"""
from __future__ import annotations

import html
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import write_text
from . import course_cells, nbcheck, reproduce
from .grading import package as package_tools
from .grading.class_report import report_after_grading

__all__ = [
    "ASSIGNMENT_GLOB",
    "CLASSROOM_PROFILE",
    "COURSE_ID",
    "GradeResult",
    "assignment_notebooks",
    "classroom_parameters",
    "grade",
    "points_table",
    "release",
    "select_assignments",
]

COURSE_ID = "m2snet"
CLASSROOM_PROFILE = "tiny"  # the profile whose `make reproduce` parameters are the classroom presets
CLASSROOM_RUN_DIR = "runs"  # students' run folder (relative: the repository root, or the notebook's folder)
ASSIGNMENT_GLOB = "0[1-9]_*.ipynb"  # 00 (setup and data) is read, not graded
COURSE_FILE = "course.json"
CELL_TIMEOUT = 900  # seconds per cell in nbgrader_config.py (formgrader, a teacher's own `nbgrader autograde`)
# Grading limits per assignment, seconds (per cell, per submission): 3x the master's time graded under the grading
# parameters on 2 busy cores (load 10), rounded up to 30 s, at least 60 s per cell and 120 s per submission
# (docs/teaching.md, "Time limits"). 09 has no autograded exercise and was not measured: the default.
TIME_LIMITS = {"01": (60, 120), "02": (90, 120), "03": (90, 120), "04": (120, 330), "05": (90, 180),
               "06": (60, 150), "07": (60, 120), "08": (60, 120)}  # fmt: skip
DEFAULT_LIMIT = (600, 1800)
MEMORY_GIB = 8.0  # address-space cap per submission (torch needs about 2.5 GiB of address space to import)

# What each assignment needs besides the notebook, written into its README.md (the course ships it).
NEEDS = {
    "07_evaluation": "notebook 06's checkpoint `runs/06_training/best.pt` (run 06 first, or make one with "
                     "`m2s train --profile tiny --out runs/06_training`); without it the notebook trains a short "
                     "model itself",
    "08_feature_maps": "the same checkpoint as 07 (`runs/06_training/best.pt`); without it the notebook trains a "
                       "short model itself",
}  # fmt: skip


def assignment_notebooks(folder: str | Path = reproduce.NOTEBOOK_DIR) -> list[Path]:
    """The masters that are assignments (``01`` … ``09``), in order."""
    return nbcheck.discover_notebooks(folder, ASSIGNMENT_GLOB)


def select_assignments(keys: Sequence[str] | None, notebooks: Sequence[Path]) -> list[Path]:
    """``["01", "05_lossnet"]`` → those notebooks (by number, stem or file name); ``None``/empty: all."""
    if not keys:
        return list(notebooks)
    chosen = []
    for key in (k.strip() for item in keys for k in str(item).split(",") if k.strip()):
        hits = [p for p in notebooks if key in (p.name, p.stem) or p.stem.startswith(key)]
        if len(hits) != 1:
            names = ", ".join(p.stem for p in notebooks)
            raise ValueError(f"--assignments {key!r} matches {'no' if not hits else 'several'} assignment(s); "
                             f"the course has: {names}")  # fmt: skip
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def classroom_context(profile: str = CLASSROOM_PROFILE) -> dict[str, Any]:
    """The values ``make reproduce`` would derive from ``profile``, with the students' relative run folder and the
    profile's synthetic data folder (generated by the notebooks on first use)."""
    from ..config import get_profile

    d = get_profile(profile).data
    info = {k: getattr(d, k) for k in reproduce.SYNTHETIC_KEYS}
    root = d.synthetic_root(task="polyp")
    return reproduce.build_context(profile, Path(CLASSROOM_RUN_DIR), root, info, device="auto")


def classroom_parameters(notebook: Path, profile: str = CLASSROOM_PROFILE,
                         extra: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The presets of one notebook: ``make reproduce``'s parameters for ``profile``, then ``extra``."""
    return reproduce.notebook_parameters(notebook, profile, classroom_context(profile), extra)


def points_table(notebooks: Sequence[Path] | None = None) -> str:
    """The Markdown points table of the assignments (docs/teaching.md holds a copy; a test keeps them equal)."""
    return course_cells.points_markdown(course_cells.points_rows(notebooks or assignment_notebooks()))


# ---------------------------------------------------------------------------------------------------------------
# nbgrader
# ---------------------------------------------------------------------------------------------------------------
def _config(root: Path, timeout: int = CELL_TIMEOUT):
    from traitlets.config import Config

    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.Execute.timeout = int(timeout)
    c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back, so the rest can still be graded
    return c


CONFIG_FILE_TEXT = f"""# nbgrader settings of this course (written by `m2s course release`); used by `nbgrader ...` and formgrader
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {COURSE_ID!r}
c.Execute.timeout = {CELL_TIMEOUT}  # seconds per cell (notebook 06 trains a small model)
c.OverwriteCells.add_missing_cells = True  # a deleted test cell is put back before grading
"""


def _api(root: Path, timeout: int = CELL_TIMEOUT):
    """nbgrader's Python API on the course folder ``root``.

    nbgrader creates and upgrades the gradebook by running the ``alembic`` command: the folder of this
    interpreter (a virtual environment's ``bin/``) goes on ``PATH`` so that it is found without activating it.
    """
    import logging
    import os
    import sys

    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, *filter(None, os.environ.get("PATH", "").split(os.pathsep))])

    try:
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
    except ImportError as err:
        raise RuntimeError(f"nbgrader is not installed ({err}): pip install -e '.[course]' (or 'nbgrader>=0.9')") from err

    config = _config(root, timeout)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    api.log.setLevel(logging.ERROR)
    return api


def _outcome(result: Mapping[str, Any]) -> str:
    """The last meaningful line of a failed nbgrader call."""
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(" ")]
    return lines[-1][:300] if lines else "nbgrader gave no reason"


# ---------------------------------------------------------------------------------------------------------------
# Release
# ---------------------------------------------------------------------------------------------------------------
def release(
    out: str | Path,
    assignments: Sequence[str] | None = None,
    profile: str = CLASSROOM_PROFILE,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    package: bool = True,
    package_url: str | None = None,
) -> dict[str, Any]:
    """Make (or extend) the course folder ``out``; returns the content of its ``course.json``.

    ``parameters`` (``{notebook file: {name: value}}``) is applied on top of the presets, e.g. smaller values for
    a slow laptop or for tests. An assignment already in ``out`` is refused unless ``overwrite``.
    """
    root = Path(out).expanduser().resolve()
    chosen = select_assignments(assignments, assignment_notebooks())
    parameters = dict(parameters or {})
    unknown = sorted(set(parameters) - {p.name for p in assignment_notebooks()})
    if unknown:
        raise ValueError(f"parameters given for {unknown}, which are not assignments of the course")
    existing = [p.stem for p in chosen if (root / "source" / p.stem).exists() or (root / "release" / p.stem).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds {', '.join(existing)}: pass --overwrite to generate them again "
                              "(submissions and grades already in the gradebook are kept)")  # fmt: skip
    state = _load_state(root) if (root / COURSE_FILE).is_file() else {"course_id": COURSE_ID, "assignments": {}}
    state.update(profile=profile, released=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write_config(root, log)
    api = _api(root)
    for master in chosen:
        start = time.perf_counter()
        values = classroom_parameters(master, profile, parameters.get(master.name))
        nb = course_cells.lock_parameters(course_cells.set_parameters(nbcheck.load_notebook(master), values))
        nb = package_tools.mark_locked(package_tools.student_install_cell(nb, package_url))
        folder = root / "source" / master.stem
        write_text(folder / master.name, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        write_text(folder / "README.md", _assignment_readme(master, values))
        result = api.generate_assignment(master.stem, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment {master.stem} failed: {_outcome(result)}")
        student = nbcheck.load_notebook(root / "release" / master.stem / master.name)
        leaked = course_cells.leaks(nbcheck.load_notebook(master), student)
        if leaked:
            raise RuntimeError(f"{master.stem}: the student version still holds {leaked[:3]}; check the markers")
        cells = course_cells.graded_cells(nb)
        state["assignments"][master.stem] = {
            "notebook": master.name,
            "parameters": values,
            "autograded_points": sum(c.points for c in cells if c.kind == "autograded"),
            "manual_points": sum(c.points for c in cells if c.kind == "manual"),
        }
        log(f"released {master.stem} in {time.perf_counter() - start:.1f} s")
    write_text(root / COURSE_FILE, json.dumps(state, indent=2, default=str) + "\n")
    if package:
        state["package"] = package_tools.write_student_package(root, [p.stem for p in chosen], assignment_notebooks(),
                                                                log)  # fmt: skip
        write_text(root / COURSE_FILE, json.dumps(state, indent=2, default=str) + "\n")
    log(_release_summary(root, state, [p.stem for p in chosen]))
    return state


CONFIG_MARK = "# --- m2s course settings"


def _write_config(root: Path, log: Callable[[str], None]) -> None:
    """``nbgrader_config.py``: ours is (re)written; a teacher's own file is kept, with our settings appended once
    (a course id other than ours is refused: the gradebook is keyed by it)."""
    import re

    path = root / "nbgrader_config.py"
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link: replace it with a file (nothing was written)")
    if not path.is_file() or path.read_text(encoding="utf-8").startswith(CONFIG_FILE_TEXT.splitlines()[0]):
        write_text(path, CONFIG_FILE_TEXT)
        return
    text = path.read_text(encoding="utf-8")
    other = re.search(r"^\s*c\.CourseDirectory\.course_id\s*=\s*['\"]([^'\"]*)['\"]", text, re.M)
    if other and other.group(1) != COURSE_ID:
        raise FileExistsError(f"{path} sets course_id {other.group(1)!r}; this course's gradebook uses {COURSE_ID!r}: "
                              f"release into another folder, or set course_id = {COURSE_ID!r} there (not changed)")
    if CONFIG_MARK in text:
        return
    ours = [line for line in CONFIG_FILE_TEXT.splitlines()[2:] if line.split("=")[0].strip() not in text]
    write_text(path, text.rstrip("\n") + f"\n\n{CONFIG_MARK} (appended by `m2s course release`; yours above are "
               "kept) ---\n" + "\n".join(ours) + "\n")
    log(f"kept your {path.name}; appended the course's settings it lacked ({len(ours)} line(s))")


def _assignment_readme(master: Path, values: Mapping[str, Any]) -> str:
    lines = [f"# {master.stem}", "", f"Open `{master.name}`, run it top to bottom, and complete the exercises: "
             "cells that say `raise NotImplementedError()` are yours, the locked cells after them are the tests.",
             "", "Classroom settings (the locked first code cell): "
             + ", ".join(f"`{k}={v!r}`" for k, v in values.items()) + "."]  # fmt: skip
    if master.stem in NEEDS:
        lines += ["", f"Needs: {NEEDS[master.stem]}."]
    return "\n".join(lines) + "\n"


def _release_summary(root: Path, state: Mapping[str, Any], names: Sequence[str]) -> str:
    rows = [(n, state["assignments"][n]) for n in names]
    width = max(len(n) for n, _ in rows)
    lines = [f"{'assignment':<{width}}  autograded  manual", "-" * (width + 20)]
    lines += [f"{n:<{width}}  {a['autograded_points']:>10g}  {a['manual_points']:>6g}" for n, a in rows]
    total = sum(a["autograded_points"] for _, a in rows), sum(a["manual_points"] for _, a in rows)
    lines += [f"{'total':<{width}}  {total[0]:>10g}  {total[1]:>6g}",
              f"course folder {root}: student versions in release/, nbgrader settings in nbgrader_config.py"]
    return "\n".join(lines)


def _load_state(root: Path) -> dict[str, Any]:
    path = root / COURSE_FILE
    if not path.is_file() or not (root / "gradebook.db").is_file():
        raise FileNotFoundError(f"{root} is not a course folder (no {COURSE_FILE} or gradebook.db): make one with "
                                "`m2s course release --out DIR`")  # fmt: skip
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# Grade
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class GradeResult:
    """What :func:`grade` did: one row per submission graded now, the problems found, and the files written."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # student, assignment, score, max_score, auto, …
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (student, assignment, problem)
    grades_csv: Path | None = None
    problems_csv: Path | None = None
    feedback: dict[tuple[str, str], Path] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unchanged since the last grading
    unsandboxed: bool = False


def default_limits(assignments: Sequence[str], cell_timeout: int | None = None, submission_timeout: int | None = None,
                   memory_gib: float | None = None) -> Any:  # fmt: skip
    """The limits of a grading run: the largest of the assignments' defaults (:data:`TIME_LIMITS`), unless given."""
    from .grading.sandbox import Limits

    cell = max(TIME_LIMITS.get(a[:2], DEFAULT_LIMIT)[0] for a in assignments)
    whole = max(TIME_LIMITS.get(a[:2], DEFAULT_LIMIT)[1] for a in assignments)
    return Limits(cell_timeout=cell_timeout or cell, submission_timeout=submission_timeout or max(whole, cell_timeout or 0),
                  memory_bytes=int((memory_gib if memory_gib is not None else MEMORY_GIB) * 2**30) or None)


def prepare_shared(root: Path, state: Mapping[str, Any], assignments: Sequence[str], log: Callable[[str], None],
                   settings: Any = None) -> None:  # fmt: skip
    """``<course>/shared/``: the read-only inputs every submission reads (the synthetic set of the presets), made once
    by the grader, never by a student's run. A checkpoint for 07/08 is the teacher's to put there
    (``m2s train --profile tiny --out <course>/shared/runs/06_training``); without it those notebooks train a short
    model inside each submission's scratch folder."""
    from ..data.synthetic.generate import ensure_dataset
    from .grading.runner import Settings, grading_parameters

    for assignment in assignments:
        values = {**state["assignments"][assignment].get("parameters", {}),
                  **grading_parameters(assignment, settings or Settings())}  # fmt: skip
        data_root = values.get("data_root")
        if not (isinstance(data_root, str) and data_root.startswith(CLASSROOM_RUN_DIR + "/")):
            continue
        target = root / "shared" / data_root
        if (target / "manifest.json").is_file() or (target.is_dir() and any(target.iterdir())):
            continue
        start = time.perf_counter()
        ensure_dataset("polyp", target, n=values.get("synthetic_n", 400), seed=values.get("synthetic_seed", 0),
                       size=values.get("synthetic_size", 128), n_test=values.get("synthetic_n_test"),
                       difficulty=values.get("synthetic_difficulty", "realistic"), progress=False)  # fmt: skip
        log(f"made the shared data set {target.relative_to(root)} in {time.perf_counter() - start:.0f} s")


def _safe_dir(root: Path, *parts: str) -> Path:
    """``root/parts…`` as real folders: a symbolic link on the way is removed (the link, never what it points to)."""
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            path.unlink()
        path.mkdir(exist_ok=True)
    return path


def grade(
    course: str | Path,
    submissions: str | Path,
    out: str | Path | None = None,
    timeout: int | None = None,
    log: Callable[[str], None] = print,
    *,
    submission_timeout: int | None = None,
    jobs: int = 1,
    regrade: bool = False,
    sandbox: bool | None = None,
    memory_gib: float | None = None,
    settings: Any = None,
) -> GradeResult:
    """Grade every submission in ``submissions`` (``<student>/<assignment>/<assignment>.ipynb``) against the
    course ``course``; ``grades.csv`` and ``problems.csv`` go to ``out`` (default: the course folder), rewritten
    after every submission. Only new or changed submissions are graded unless ``regrade``."""
    from ..engine.folder_lock import lock_folder

    root = Path(course).expanduser().resolve()
    state = _load_state(root)
    folder = Path(submissions).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"--submissions {submissions} is not a folder (expected <student>/<assignment>/"
                                "<assignment>.ipynb inside)")  # fmt: skip
    with lock_folder(root, "m2s course grade", log=log):
        return _grade_locked(root, state, folder, Path(out).expanduser().resolve() if out else root, log,
                             _settings(settings, state, timeout, submission_timeout, memory_gib, regrade, sandbox),
                             max(1, int(jobs)))  # fmt: skip


def _settings(settings, state, timeout, submission_timeout, memory_gib, regrade, sandbox):
    from .grading.runner import Settings

    settings = settings or Settings()
    settings.limits = default_limits(sorted(state["assignments"]), timeout, submission_timeout, memory_gib)
    settings.assignment_limits = {a: default_limits([a], timeout, submission_timeout, memory_gib)
                                  for a in state["assignments"]}  # fmt: skip
    settings.regrade = regrade or settings.regrade
    settings.sandbox = sandbox if sandbox is not None else settings.sandbox
    return settings


def _grade_locked(root: Path, state: Mapping[str, Any], folder: Path, out_dir: Path, log: Callable[[str], None],
                  settings: Any, jobs: int) -> GradeResult:  # fmt: skip
    import tempfile
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from .grading import results, runner

    known = sorted(state["assignments"])
    result = GradeResult(grades_csv=out_dir / "grades.csv", problems_csv=out_dir / "problems.csv")
    todo, problems = runner.find_submissions(folder, known)
    result.problems += problems
    if not todo:
        raise FileNotFoundError(f"no submissions in {folder}: expected <student>/<assignment>/<assignment>.ipynb "
                                f"with an assignment among {', '.join(known)}")  # fmt: skip
    prepare_shared(root, state, sorted({s.assignment for s in todo}), log, settings)
    hide = [reproduce.ROOT, root, folder, out_dir]
    scratch_root = Path(tempfile.mkdtemp(prefix="m2s-grading-", dir=settings.scratch_base))
    previous = {(s.sid, s.assignment): _previous_digest(root, s) for s in todo}
    api = _api(root, settings.limits.cell_timeout)
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(runner.grade_one, s, root, state, settings, scratch_root, hide,
                                   previous[(s.sid, s.assignment)]) for s in todo]  # fmt: skip
            for done in _progress(as_completed(futures), len(futures)):
                _record(root, state, folder, done.result(), result, api, settings)
                results.write_grades(result.grades_csv, [{k: v for k, v in r.items() if k != "_skipped"}
                                                         for r in result.rows])  # fmt: skip
                results.write_problems(result.problems_csv, {(r["student"], r["assignment"]) for r in result.rows
                                                             if not r.get("_skipped")}, result.problems)  # fmt: skip
    finally:
        import shutil

        if not settings.keep_scratch:
            shutil.rmtree(scratch_root, ignore_errors=True)
    if result.problems and not result.rows:
        results.write_problems(result.problems_csv, [], result.problems)
    report_after_grading(root, result.grades_csv, log)  # <course>/report.html: what the class got wrong
    log(grade_summary(result))
    return result


def _progress(iterable, total: int):
    try:
        from ..progress import progress_bar as tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, total=total, desc="grading", unit="submission")


def _previous_digest(root: Path, sub: Any) -> str | None:
    from .grading.results import verdict_path

    path = verdict_path(root, sub.sid, sub.assignment)
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("digest") or None
    except (OSError, ValueError):
        return None


def _record(root: Path, state: Mapping[str, Any], folder: Path, outcome: Any, result: GradeResult, api: Any,
            settings: Any) -> None:  # fmt: skip
    """Write what grading one submission gave: verdict, autograded notebook, gradebook, feedback, the row."""
    from .grading import results, runner
    from .grading.sandbox import UNSANDBOXED_NOTE

    sub = outcome.submission
    key = (sub.student, sub.assignment)
    if outcome.skipped:  # unchanged: its row again, with the teacher's hand-graded scores as they are now
        result.skipped.append(key)
        result.rows.append(_skipped_row(root, state, sub))
        return
    info = state["assignments"][sub.assignment]
    problems = list(outcome.problems)
    if outcome.verdict is not None and not outcome.sandboxed:
        problems.append(UNSANDBOXED_NOTE)
        result.unsandboxed = True
    result.problems += [(sub.student, sub.assignment, p) for p in problems]
    row = {"student": sub.student, "assignment": sub.assignment, "score": 0.0,
           "max_score": info["autograded_points"] + info["manual_points"], "auto": 0.0,
           "auto_max": info["autograded_points"], "manual": 0.0, "manual_max": info["manual_points"],
           "seconds": outcome.seconds, "sandboxed": "yes" if outcome.sandboxed else "no",
           "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    feedback = root / "feedback" / sub.sid / sub.assignment / f"{sub.assignment}.html"
    try:
        if outcome.verdict is not None:
            before = len(outcome.problems)
            _record_graded(root, state, folder, outcome, problems, row, api)
            result.problems += [(sub.student, sub.assignment, p) for p in outcome.problems[before:]]
        if outcome.verdict is None or not feedback.is_file():
            _safe_dir(root, "feedback", sub.sid, sub.assignment)
            _ungraded_feedback(feedback, sub.student, sub.assignment, problems)
        results.save_verdict(root, sub.sid, sub.assignment, outcome.verdict or {"assignment": sub.assignment,
                             "exercises": [], "flags": [], "points": 0.0, "graded": False},
                             {"student": sub.student, "seconds": outcome.seconds, "sandboxed": outcome.sandboxed,
                              "graded_at": row["graded_at"], "slowest_cell_seconds": outcome.slowest_cell,
                              "digest": outcome.digest if outcome.verdict is not None else "",
                              "problems": problems})  # fmt: skip
    finally:
        runner.remove_scratch(outcome)
    result.feedback[key] = feedback
    result.rows.append(row)


def _skipped_row(root: Path, state: Mapping[str, Any], sub: Any) -> dict[str, Any]:
    from .grading import results

    info = state["assignments"][sub.assignment]
    saved = json.loads(results.verdict_path(root, sub.sid, sub.assignment).read_text(encoding="utf-8"))
    graded = nbcheck.load_notebook(root / "release" / sub.assignment / f"{sub.assignment}.ipynb")
    manual = results.manual_scores(root, COURSE_ID, sub.sid, sub.assignment)
    row = {"student": sub.student, "assignment": sub.assignment, "auto": float(saved.get("points", 0.0)),
           "auto_max": info["autograded_points"], "manual": float(sum(v for v in manual.values() if v is not None)),
           "manual_max": info["manual_points"], "max_score": info["autograded_points"] + info["manual_points"],
           "seconds": saved.get("seconds", ""), "sandboxed": "yes" if saved.get("sandboxed") else "no",
           "graded_at": saved.get("graded_at", ""), "_skipped": True}  # fmt: skip
    row["score"] = row["auto"] + row["manual"]
    row.update(results.exercise_columns(sub.assignment, saved, graded, manual))
    return row


def _record_graded(root: Path, state: Mapping[str, Any], folder: Path, outcome: Any, problems: Sequence[str],
                   row: dict, api: Any) -> None:  # fmt: skip
    from ..atomic import copy_file
    from .grading import results

    sub, verdict = outcome.submission, outcome.verdict
    name = f"{sub.assignment}.ipynb"
    submitted = root / "submitted" / sub.sid / sub.assignment
    if sub.folder.resolve() != submitted.resolve():  # keep nbgrader's copy; only the notebook and its timestamp
        target = _safe_dir(root, "submitted", sub.sid, sub.assignment)
        write_text(target / name, json.dumps(outcome.notebook, indent=1, ensure_ascii=False) + "\n")
    stamp = sub.folder / "timestamp.txt"
    autograded = _safe_dir(root, "autograded", sub.sid, sub.assignment)
    executed = nbcheck.load_notebook(outcome.executed) if outcome.executed else dict(outcome.notebook)
    write_text(autograded / name, json.dumps(results.annotate(executed, verdict, problems), indent=1,
                                             ensure_ascii=False) + "\n")  # fmt: skip
    for extra in (stamp, sub.folder / "submission_secret.txt"):  # nbgrader's exchange files, for release_feedback
        if extra.is_file() and not extra.is_symlink():
            copy_file(extra, autograded / extra.name)
    scores = {e["grade_id"]: e["points"] for e in verdict["exercises"]}
    results.record_gradebook(root, COURSE_ID, sub.sid, sub.student, sub.assignment, scores)
    manual = results.manual_scores(root, COURSE_ID, sub.sid, sub.assignment)
    row.update(results.exercise_columns(sub.assignment, verdict, outcome.notebook, manual))
    row["auto"] = float(verdict["points"])
    row["manual"] = float(sum(v for v in manual.values() if v is not None))
    row["score"] = row["auto"] + row["manual"]
    _safe_dir(root, "feedback", sub.sid, sub.assignment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's SQLAlchemy and nbformat notes
        made = api.generate_feedback(sub.assignment, sub.sid, force=True)
    if not made["success"]:
        outcome.problems.append(f"feedback failed: {_outcome(made)}")
    page = root / "feedback" / sub.sid / sub.assignment / f"{sub.assignment}.html"
    if page.is_file():
        ungraded = [gid for gid, value in manual.items() if value is None]
        marked = results.mark_ungraded(page.read_text(encoding="utf-8"), ungraded)
        write_text(page, results.offline_mathjax(marked, page.parent))


def _ungraded_feedback(path: Path, student: str, assignment: str, problems: Sequence[str]) -> Path:
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return write_text(path, f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(assignment)}"
                            f"</title></head><body><h1>{html.escape(assignment)}: not graded</h1><p>Submission of "
                            f"{html.escape(student)} could not be graded:</p><ul>{items}</ul><p>Fix it and submit "
                            "again.</p></body></html>\n")  # fmt: skip


def grade_summary(result: GradeResult) -> str:
    """The table printed at the end of :func:`grade`, then the problems, one line each."""
    lines = [f"{'student':<16} {'assignment':<32} {'autograded':>12} {'score':>12} {'time':>7}", "-" * 83]
    for r in result.rows:
        if r.get("_skipped"):
            continue
        lines.append(f"{r['student']:<16} {r['assignment']:<32} {r['auto']:>5g} / {r['auto_max']:<4g} "
                     f"{r['score']:>5g} / {r['max_score']:<4g} {r.get('seconds', 0):>6.1f}s")  # fmt: skip
    graded = sum(1 for r in result.rows if not r.get("_skipped"))
    lines.append(f"{graded} submission(s) graded; grades in {result.grades_csv}; feedback in "
                 f"<course>/feedback/<student>/<assignment>/")  # fmt: skip
    if result.skipped:
        lines.append(f"{len(result.skipped)} unchanged since the last grading, kept (--regrade grades them again)")
    if result.unsandboxed:
        from .grading.sandbox import UNSANDBOXED_NOTE

        lines.append(f"WARNING: {UNSANDBOXED_NOTE}")
    if result.problems:
        lines.append(f"{len(result.problems)} problem(s) (also in {result.problems_csv}):")
        lines += [f"  {s}/{a}: {p}" for s, a, p in result.problems]
    return "\n".join(lines)
