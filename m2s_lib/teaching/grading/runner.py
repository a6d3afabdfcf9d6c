"""Grade submissions one by one (or in a bounded pool), each in its own sandboxed scratch folder (docs/teaching.md).

For one submission (:func:`grade_one`, in a worker thread):

1. read the submitted notebook without following links; put back every locked cell from ``release/`` (a test cell
   altered or deleted is graded with the original, and reported); write the course's presets, then the grading
   parameters of :func:`m2s_lib.teaching.grading.presets.grading_parameters`, into its parameters cell, with every
   ``runs/...`` path pointing into the scratch folder;
2. ``judge.prepare_inputs`` writes the visible and hidden cases into ``<scratch>/grading/inputs``;
3. the notebook runs in the sandbox (:mod:`.sandbox`) with ``M2S_GRADING_DIR=<scratch>/grading``;
4. ``judge.judge_assignment`` compares the recorded outputs with the library's reference, in this process.

A test cell that is not an exercise of the framework (no ``check(...)`` call: a teacher's own cell) scores its
points when it ran without an error, as nbgrader does; that verdict comes from the student's kernel and is marked
``untrusted`` in ``verdict.json``.

The main thread then records each outcome (:mod:`.results`): ``verdict.json``, the executed notebook in
``autograded/``, the nbgrader gradebook, the feedback page, ``grades.csv`` and ``problems.csv``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import course_cells, nbcheck
from . import sandbox as sb

__all__ = ["Outcome", "Settings", "Submission", "find_submissions", "grade_one", "safe_id", "submission_hash"]

RUN_DIR = "runs"  # the relative run folder of the classroom presets
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")


@dataclass
class Settings:
    """How to grade: limits, sandbox (``None``: when available), seed of the hidden cases, force a regrade."""

    limits: sb.Limits = field(default_factory=sb.Limits)
    assignment_limits: dict[str, sb.Limits] = field(default_factory=dict)  # per assignment, over ``limits``
    sandbox: bool | None = None
    seed: int = 0
    regrade: bool = False
    scratch_base: Path | None = None
    judge: Any = None  # a module with prepare_inputs / judge_assignment (default: .judge)
    parameters: Callable[[str], Mapping[str, Any]] | None = None  # grading parameters (default: .presets)
    keep_scratch: bool = False


@dataclass
class Submission:
    """One ``<student>/<assignment>/<assignment>.ipynb``; ``sid`` is the name nbgrader sees."""

    student: str
    assignment: str
    folder: Path
    sid: str = ""

    def __post_init__(self) -> None:
        self.sid = self.sid or safe_id(self.student)


@dataclass
class Outcome:
    """What grading one submission gave."""

    submission: Submission
    notebook: dict | None = None  # the notebook as graded (locked cells restored, parameters applied)
    verdict: dict[str, Any] | None = None
    executed: Path | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    sandboxed: bool = False
    digest: str = ""
    skipped: bool = False
    scratch: Path | None = None
    slowest_cell: float = 0.0  # seconds of the longest cell (the per-cell limits are measured from the masters')


def safe_id(name: str) -> str:
    """``name`` when nbgrader can use it as it is (no glob characters, spaces or commas), else a slug plus a hash."""
    if _SAFE.fullmatch(name) and len(name) <= 64:
        return name
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:40] or "student"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _is_link(path: Path) -> bool:
    return path.is_symlink() or (hasattr(path, "is_junction") and path.is_junction())


def find_submissions(folder: Path, known: Sequence[str]) -> tuple[list[Submission], list[tuple[str, str, str]]]:
    """Every ``<student>/<assignment>/`` in ``folder``; links and unknown assignments are problems, not followed."""
    found, problems = [], []
    for student_dir in sorted(folder.iterdir()):
        if student_dir.name.startswith("."):
            continue
        if _is_link(student_dir):
            problems.append((student_dir.name, "", "is a symbolic link: not followed, not graded (copy the files in)"))
            continue
        if not student_dir.is_dir():
            continue
        for sub in sorted(student_dir.iterdir()):
            if sub.name.startswith("."):
                continue
            if _is_link(sub):
                problems.append((student_dir.name, sub.name, "the submission folder is a symbolic link: not followed, "
                                 "not graded"))  # fmt: skip
            elif sub.is_dir() and sub.name in known:
                found.append(Submission(student_dir.name, sub.name, sub))
            elif sub.is_dir():
                problems.append((student_dir.name, sub.name, f"{sub.name} is not an assignment of this course (has: "
                                 f"{', '.join(known)}); not graded"))  # fmt: skip
    return found, problems


def read_submitted(sub: Submission) -> tuple[bytes | None, list[str]]:
    """The notebook's bytes (never through a link), or ``None`` and why."""
    path = sub.folder / f"{sub.assignment}.ipynb"
    if _is_link(path):
        return None, [f"{path.name} is a symbolic link: not followed, not graded (submit the file itself)"]
    if not path.is_file():
        others = sorted(p.name for p in sub.folder.glob("*.ipynb"))
        found = f"found {', '.join(others)}" if others else "the folder holds no notebook"
        return None, [f"no {path.name} ({found}): the notebook must keep its released name; not graded"]
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read(), []


def parse_notebook(data: bytes, name: str) -> tuple[dict | None, list[str]]:
    import warnings

    import nbformat

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat's note on cells without ids
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
            nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 — JSON, encoding, schema: all mean "not a notebook"
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        return None, [f"{name} is not a valid notebook ({reason}); not graded"]
    return json.loads(json.dumps(nb)), []


def _grade_id(cell: Mapping[str, Any]) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def restore_locked(nb: dict, released: Mapping[str, Any], source: Mapping[str, Any] | None = None) -> list[str]:
    """Every locked cell of ``released`` put back into ``nb`` by grade id (altered: replaced, deleted: inserted
    after its predecessor); returns the problems to report (``course_cells.tampered_cells``' wording)."""
    problems = [p for p in course_cells.tampered_cells(released, nb, source or released)
                if f"{course_cells.PARAMETERS_GRADE_ID!r}" not in p]  # fmt: skip
    if _restore_parameters(nb, released):
        problems.append("the parameters cell had lost its lock: graded with the course's presets")
    position = {_grade_id(c): i for i, c in enumerate(nb["cells"]) if _grade_id(c)}
    previous = None
    for cell in released["cells"]:
        gid = _grade_id(cell)
        meta = (cell.get("metadata", {}).get("nbgrader") or {})
        if gid and meta.get("locked"):
            original = json.loads(json.dumps(cell))
            if gid in position:
                nb["cells"][position[gid]] = original
            else:
                at = position[previous] + 1 if previous in position else len(nb["cells"])
                nb["cells"].insert(at, original)
                position = {_grade_id(c): i for i, c in enumerate(nb["cells"]) if _grade_id(c)}
        if gid:
            previous = gid
    return problems


def _restore_parameters(nb: dict, released: Mapping[str, Any]) -> bool:
    ids = [_grade_id(c) for c in nb["cells"]]
    if course_cells.PARAMETERS_GRADE_ID in ids:
        return False
    original = json.loads(json.dumps(nbcheck.parameters_cell(released)))
    mine = nbcheck.parameters_cell(nb)
    if mine is not None:
        nb["cells"][nb["cells"].index(mine)] = original
    else:
        position = next(i for i, c in enumerate(released["cells"]) if c is nbcheck.parameters_cell(released))
        nb["cells"].insert(min(position, len(nb["cells"])), original)
    return True


def scratch_values(values: Mapping[str, Any], scratch: Path) -> dict[str, Any]:
    """Parameter values with every relative ``runs``/``runs/...`` path made absolute inside ``scratch``."""
    out = {}
    for key, value in values.items():
        if isinstance(value, str) and (value == RUN_DIR or value.startswith(RUN_DIR + "/")):
            value = str(scratch / value)
        out[key] = value
    return out


def shared_binds(values: Mapping[str, Any], shared: Path, assignment: str) -> dict[str, Path]:
    """``{relative path: <course>/shared/<same path>}`` for the read-only inputs that exist: the data set, and the
    checkpoint of ``checkpoint_path`` (07, 08; never while grading 06, which writes its own)."""
    binds = {}
    for key in ("data_root", "checkpoint_path"):
        value = values.get(key)
        if isinstance(value, str) and value.startswith(RUN_DIR + "/") and (shared / value).exists():
            rel = value if key == "data_root" else str(Path(value).parent)
            if key == "checkpoint_path" and assignment.startswith("06"):
                continue
            binds[rel] = shared / rel
    return binds


def submission_hash(data: bytes, released: bytes, parameters: Mapping[str, Any], seed: int) -> str:
    h = hashlib.sha256()
    for part in (data, released, json.dumps(parameters, sort_keys=True, default=str).encode(), str(seed).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _uses_framework(cell: Mapping[str, Any]) -> bool:
    return bool(re.search(r"(^|\W)check\(", nbcheck.cell_source(cell)))


def legacy_scores(executed: Mapping[str, Any] | None, graded: Mapping[str, Any], judged: set[str]) -> list[dict]:
    """Test cells outside the framework: their points when the cell ran without an error (nbgrader's rule, but
    warnings and other stderr output are free)."""
    cells = {_grade_id(c): c for c in (executed or {}).get("cells", []) if _grade_id(c)}
    rows = []
    for cell in course_cells.graded_cells(graded):
        if cell.kind != "autograded" or cell.grade_id in judged:
            continue
        ran = cells.get(cell.grade_id)
        outputs = ran.get("outputs", []) if ran else []
        error = next((o for o in outputs if o.get("output_type") == "error"), None)
        executed_ok = ran is not None and ran.get("execution_count") is not None and error is None
        rows.append({"grade_id": cell.grade_id, "title": cell.grade_id, "points": cell.points if executed_ok else 0.0,
                     "max_points": cell.points, "status": "graded" if ran and ran.get("execution_count") else
                     "not reached", "checks": [], "flags": [], "warnings": [], "untrusted": True,
                     "error": f"{error.get('ename')}: {str(error.get('evalue'))[:300]}" if error else None})  # fmt: skip
    return rows


def _judge_module(settings: Settings):
    if settings.judge is not None:
        return settings.judge
    from . import judge

    return judge


def grading_parameters(assignment: str, settings: Settings) -> dict[str, Any]:
    if settings.parameters is not None:
        return dict(settings.parameters(assignment))
    import importlib

    try:
        presets = importlib.import_module(f"{__package__}.presets")
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith("presets"):
            return {}
        raise
    return dict(presets.grading_parameters(assignment))


def grade_one(sub: Submission, root: Path, state: Mapping[str, Any], settings: Settings, scratch_root: Path,
              hide: Sequence[Path], previous_digest: str | None = None) -> Outcome:  # fmt: skip
    """Grade one submission (see the module's docstring); never raises for what the submission holds."""
    start = time.perf_counter()
    out = Outcome(sub)
    data, out.problems = read_submitted(sub)
    if data is None:
        return out
    nb, problems = parse_notebook(data, f"{sub.assignment}.ipynb")
    out.problems += problems
    if nb is None:
        return out
    name = f"{sub.assignment}.ipynb"
    released_bytes = (root / "release" / sub.assignment / name).read_bytes()
    released = json.loads(released_bytes)
    source = nbcheck.load_notebook(root / "source" / sub.assignment / name)
    values = {**state["assignments"][sub.assignment].get("parameters", {}),
              **grading_parameters(sub.assignment, settings)}  # fmt: skip
    out.digest = submission_hash(data, released_bytes, values, settings.seed)
    if previous_digest == out.digest and not settings.regrade:
        out.skipped = True
        return out
    out.problems += restore_locked(nb, released, source)
    scratch = Path(tempfile.mkdtemp(prefix=f"{sub.sid[:24]}-{sub.assignment[:2]}-", dir=scratch_root))
    out.scratch = scratch
    present = set(nbcheck.parameter_names(nb))
    course_cells.set_parameters(nb, {k: v for k, v in values.items() if k in present})
    out.notebook = json.loads(json.dumps(nb))  # as graded, as the student reads it (no scratch paths)
    course_cells.set_parameters(nb, scratch_values({k: v for k, v in values.items() if k in present}, scratch))
    judge = _judge_module(settings)
    grading = scratch / "grading"
    exercises = _framework_exercises(judge, sub.assignment, released)
    if exercises:
        judge.prepare_inputs(sub.assignment, grading, seed=settings.seed)
    (scratch / name).write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    limits = settings.assignment_limits.get(sub.assignment, settings.limits)
    result = sb.run_notebook(scratch / name, scratch / "executed.ipynb", scratch, limits,
                             env={"M2S_GRADING_DIR": str(grading)}, hide=hide, sandbox=settings.sandbox,
                             ro_binds=shared_binds(values, root / "shared", sub.assignment))  # fmt: skip
    out.sandboxed, out.executed = result.sandboxed, result.executed
    out.slowest_cell = max(result.cell_seconds.values(), default=0.0)
    if result.error:
        out.problems.append(f"the notebook could not be run to the end: {result.error}")
    if result.timed_out:
        out.problems.append(result.timeout_message)
    executed = nbcheck.load_notebook(result.executed) if result.executed else None
    if executed is not None:  # the parameters cell as the student knows it, not the grader's scratch paths
        cell = nbcheck.parameters_cell(executed)
        if cell is not None:
            cell["source"] = nbcheck.cell_source(nbcheck.parameters_cell(out.notebook))
        result.executed.write_text(json.dumps(executed, ensure_ascii=False), encoding="utf-8")
    verdict = {"assignment": sub.assignment, "exercises": [], "flags": []}
    if exercises:
        verdict = _judge(judge, sub.assignment, grading, out.notebook, settings.seed, source).to_dict()
        verdict["exercises"] = [e for e in verdict["exercises"] if e["grade_id"] in exercises]
    verdict["exercises"] += legacy_scores(executed, nb, {e["grade_id"] for e in verdict["exercises"]})
    if result.timed_out:
        _mark_timeout(verdict, result, executed)
    order = [c.grade_id for c in course_cells.graded_cells(released)]
    verdict["exercises"].sort(key=lambda e: order.index(e["grade_id"]) if e["grade_id"] in order else len(order))
    verdict["points"] = float(sum(e["points"] for e in verdict["exercises"]))
    verdict["max_points"] = float(sum(e["max_points"] for e in verdict["exercises"]))
    for e in verdict["exercises"]:
        out.problems += [f"{e['grade_id']}: flagged: {f}" for f in e.get("flags", [])]
    out.problems += [f"flagged: {f}" for f in verdict.get("flags", [])]
    out.verdict = verdict
    out.seconds = round(time.perf_counter() - start, 1)
    return out


def _judge(judge: Any, assignment: str, grading: Path, notebook: dict, seed: int, source: Mapping[str, Any]):
    """The judge's verdict, with the course's ``source/`` notebook as the master (the baseline of the scan: the
    course's own cells, such as the student install cell written at release, are not the student's)."""
    import inspect

    if "master" in inspect.signature(judge.judge_assignment).parameters:
        return judge.judge_assignment(assignment, grading, notebook, seed=seed, master=source)
    return judge.judge_assignment(assignment, grading, notebook, seed=seed)


def _framework_exercises(judge: Any, assignment: str, released: Mapping[str, Any]) -> set[str]:
    """Grade ids of the exercises the judge knows and whose released test cell calls ``check(...)``."""
    try:
        from ..exercises import registry

        known = {e.grade_id for e in registry.exercises(assignment)}
    except (ImportError, KeyError):
        known = set(getattr(judge, "EXERCISES", {}).get(assignment, ()))
    cells = {_grade_id(c): c for c in released["cells"] if _grade_id(c)}
    return {g for g in known if g in cells and _uses_framework(cells[g])}


def _mark_timeout(verdict: dict, result: sb.ExecutionResult, executed: Mapping[str, Any] | None) -> None:
    """Exercises at or after the cell that ran out of time score 0 with status "timed out"."""
    ids = [_grade_id(c) for c in (executed or {}).get("cells", [])]
    cut = result.timeout_cell if result.timeout_cell is not None else 0
    late = {g for g in ids[cut:] if g}
    for e in verdict["exercises"]:
        if e["grade_id"] in late and e.get("status") != "graded" or e["grade_id"] == result.timeout_grade_id:
            e["status"], e["points"] = "timed out", 0.0
            for c in e.get("checks", []):
                c["points"] = 0.0


def remove_scratch(outcome: Outcome) -> None:
    if outcome.scratch is not None:
        shutil.rmtree(outcome.scratch, ignore_errors=True)
