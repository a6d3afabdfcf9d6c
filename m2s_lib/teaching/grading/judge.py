"""The trusted side of grading: prepare a submission's inputs, then judge what its kernel recorded.

:func:`prepare_inputs` writes every case of every exercise of an assignment (the visible ones and the hidden ones
of :mod:`.hidden`) into ``<grading dir>/inputs/``. The notebook then runs (sandboxed, ``M2S_GRADING_DIR`` set) and
each test cell's ``check(...)`` writes the answer's outputs, as plain arrays, into ``<grading dir>/outputs/``.
:func:`judge_assignment` reads them back (``allow_pickle=False``), regenerates the cases from the seed (the kernel
could have rewritten the inputs), compares with the library's reference *in this process*, and adds the flags of
the static scan and of the kernel's monitor. Nothing the student's code did to ``torch``, ``numpy``, ``builtins``,
the checks or IPython reaches this process: only numbers do.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import nbcheck
from ..exercises import registry
from ..exercises.base import SUBCLASS, Case, CheckResult, Exercise, score
from ..exercises.casefiles import read_outputs, write_cases
from . import scan
from .hidden import hidden_specs

__all__ = ["AssignmentVerdict", "ExerciseVerdict", "all_cases", "forbidden_markdown", "judge_assignment", "manual_flags",
           "prepare_inputs"]

SIMILAR = 0.8  # a hand-graded answer this close to the master's model answer is flagged


@dataclass
class ExerciseVerdict:
    """One autograded exercise: ``status`` is "graded", "not done", "not reached", "flagged" or "timed out"."""

    grade_id: str
    title: str
    points: float
    max_points: float
    status: str
    checks: list[CheckResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checks": [c.to_dict() for c in self.checks]}


@dataclass
class AssignmentVerdict:
    """Every exercise of one submission, and the flags that concern no single exercise (manual answers)."""

    assignment: str
    exercises: list[ExerciseVerdict] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    @property
    def points(self) -> float:
        return float(sum(e.points for e in self.exercises))

    @property
    def max_points(self) -> float:
        return float(sum(e.max_points for e in self.exercises))

    def to_dict(self) -> dict[str, Any]:
        return {"assignment": self.assignment, "points": self.points, "max_points": self.max_points,
                "exercises": [e.to_dict() for e in self.exercises], "flags": list(self.flags)}  # fmt: skip


def all_cases(exercise: Exercise, seed: int = 0) -> list[Case]:
    """The visible and the hidden cases of ``exercise``."""
    module = registry.ASSIGNMENTS[registry.assignment_of(exercise.grade_id)]
    return exercise.visible_cases(seed) + exercise.cases(hidden_specs(module, exercise.grade_id), seed)


def prepare_inputs(assignment: str, grading_dir: Path, seed: int = 0) -> None:
    """Write ``grading_dir/inputs/<grade_id>.npz|json`` for every exercise of ``assignment``; make ``outputs/``."""
    grading_dir = Path(grading_dir)
    for exercise in registry.exercises(assignment):
        write_cases(grading_dir, exercise.grade_id, all_cases(exercise, seed))
    (grading_dir / "outputs").mkdir(parents=True, exist_ok=True)


def _master(assignment: str) -> dict | None:
    from ..reproduce import NOTEBOOK_DIR

    path = NOTEBOOK_DIR / f"{registry._key(assignment)}.ipynb"
    return nbcheck.load_notebook(path) if path.is_file() else None


def judge_assignment(assignment: str, grading_dir: Path, notebook: Mapping[str, Any], seed: int = 0,
                     master: Mapping[str, Any] | None = None) -> AssignmentVerdict:  # fmt: skip
    """The verdict of one submission: ``notebook`` is the submitted notebook (a dict), ``grading_dir`` the folder
    :func:`prepare_inputs` wrote (same ``seed``) and the kernel filled. ``master`` defaults to the repository's."""
    exercises = registry.exercises(assignment)
    master = master if master is not None else _master(assignment)
    flags = scan.scan_notebook(notebook, exercises, master)
    verdict = AssignmentVerdict(registry._key(assignment), flags=manual_flags(notebook, master))
    for exercise in exercises:
        verdict.exercises.append(judge_exercise(exercise, Path(grading_dir), flags.get(exercise.grade_id, []), seed))
    return verdict


def _case_failure(record: Mapping[str, Any]) -> str:
    status, message = record.get("status"), str(record.get("message", ""))[:300]
    if status == "wrong_type":
        return message or "wrong type"
    if status == "timeout":
        return f"timed out ({message})"
    if status == "not_done":
        return "not done"
    return message or f"status {status!r}"


def judge_exercise(exercise: Exercise, grading_dir: Path, flags: Sequence[str], seed: int = 0) -> ExerciseVerdict:
    """The verdict of one exercise from its outputs (see :func:`judge_assignment`)."""
    verdict = ExerciseVerdict(exercise.grade_id, exercise.title, 0.0, exercise.max_points, "graded", flags=list(flags))
    try:
        got = read_outputs(grading_dir, exercise.grade_id)
    except (ValueError, OSError) as err:
        got, verdict.flags = None, [*verdict.flags, f"unreadable outputs: {str(err)[:200]}"]
    cases = all_cases(exercise, seed)
    if got is None:
        verdict.status = "not reached"
        verdict.checks = [CheckResult(c.name, 0.0, c.points, False, "the test cell did not run")
                          for c in exercise.checks]  # fmt: skip
        return verdict
    record, arrays = got
    by_name = {str(r.get("name")): (r, a) for r, a in zip(record["cases"], arrays)}
    monitor = [str(e)[:200] for e in record.get("monitor", []) if isinstance(e, str)]
    verdict.flags += [f"monitor: {e}" for e in monitor]
    per_case, statuses = [], []
    for case in cases:
        rec, outputs = by_name.get(case.name, ({"status": "missing", "message": "no output for this case"}, {}))
        statuses.append(rec.get("status"))
        verdict.warnings += [str(w)[:200] for w in rec.get("warnings", []) if isinstance(w, str)]
        for symbol in rec.get("monitor", []) if isinstance(rec.get("monitor"), list) else []:
            verdict.flags.append(f"monitor: the library's {str(symbol)[:120]} ran during your answer")
        if rec.get("status") == "wrong_type" and SUBCLASS in str(rec.get("message", "")):
            verdict.flags.append(f"fools comparisons: {str(rec.get('message'))[:160]}")
        if rec.get("status") != "ok":
            results = exercise.results(case, _case_failure(rec))
        else:
            try:
                results = exercise.judge(case, outputs)
            except Exception as err:  # noqa: BLE001 — a missing or malformed output is the answer's failure
                results = exercise.results(case, f"unusable output ({type(err).__name__}: {str(err)[:160]})")
        per_case.append((case, results))
    verdict.checks = score(exercise, per_case)
    verdict.warnings = list(dict.fromkeys(verdict.warnings))
    verdict.flags = list(dict.fromkeys(verdict.flags))
    if verdict.flags:
        verdict.status = "flagged"
        for c in verdict.checks:
            c.points = 0.0
    elif statuses and all(s == "not_done" for s in statuses):
        verdict.status = "not done"
    elif "timeout" in statuses:
        verdict.status = "timed out"
    verdict.points = float(sum(c.points for c in verdict.checks))
    return verdict


# -------------------------------------------------------------------------------------------------------------
# Hand-graded answers
# -------------------------------------------------------------------------------------------------------------
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def manual_flags(notebook: Mapping[str, Any], master: Mapping[str, Any] | None) -> list[str]:
    """Hand-graded answers too similar to the master's model answer (a pasted solution), for the teacher."""
    if not master:
        return []
    model = {}
    for cell in master.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if meta.get("grade") and meta.get("solution") and cell.get("cell_type") == "markdown":
            model[meta.get("grade_id")] = _words(nbcheck.cell_source(cell))
    flags = []
    for cell in notebook.get("cells", []):
        grade_id = (cell.get("metadata", {}).get("nbgrader", {}) or {}).get("grade_id")
        if grade_id in model and model[grade_id]:
            ratio = difflib.SequenceMatcher(None, _words(nbcheck.cell_source(cell)), model[grade_id],
                                            autojunk=False).ratio()  # fmt: skip
            if ratio >= SIMILAR:
                flags.append(f"manual answer {grade_id!r} is {ratio:.0%} identical to the model answer (review it)")
    return flags


def forbidden_markdown(assignments: Sequence[str] = tuple(registry.ASSIGNMENTS)) -> str:
    """The table of the library symbols each exercise must not reach (for docs/teaching.md): using one, by any
    route, scores 0 on that exercise and is flagged for review."""
    lines = ["| assignment | exercise (test cell) | points | forbidden library symbols |", "|---|---|---:|---|"]
    for assignment in assignments:
        for e in registry.exercises(assignment):
            symbols = ", ".join(f"`{s}`" for s in e.forbidden) or "—"
            lines.append(f"| {assignment} | {e.title} (`{e.grade_id}`) | {e.max_points:g} | {symbols} |")
    return "\n".join(lines)
