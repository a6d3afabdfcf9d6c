"""The nbgrader side of one notebook: its graded cells, its points, its parameters, and what a student copy must keep.

The masters in ``notebooks/`` carry nbgrader's own cell metadata (``metadata.nbgrader``: ``solution``, ``grade``,
``locked``, ``points``, ``grade_id``, ``schema_version``) and its comment markers (``### BEGIN SOLUTION`` /
``### END SOLUTION``, ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``). Three kinds of graded cells:

* **autograded tests**: code cells with ``grade`` and ``locked``, worth ``points`` when they run without error;
* **manual answers**: markdown cells with ``solution`` and ``grade`` (the master holds a model answer);
* solution cells (``solution`` only) are where a student writes code; they carry no points themselves.

This module reads and edits notebooks as plain JSON dicts (nbformat 4), so it needs no Jupyter.
"""
from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import nbcheck

__all__ = [
    "MARKERS",
    "PARAMETERS_GRADE_ID",
    "GradedCell",
    "exercise_problems",
    "graded_cells",
    "hidden_lines",
    "leaks",
    "lock_parameters",
    "points_markdown",
    "points_rows",
    "set_parameters",
    "student_text_problems",
    "tampered_cells",
]

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
PARAMETERS_GRADE_ID = "parameters"  # grade_id of the locked parameters cell in the course's source notebooks
_REGION = re.compile(r"###\s*BEGIN (SOLUTION|HIDDEN TESTS)\s*\n(.*?)###\s*END \1", re.S)


@dataclass(frozen=True)
class GradedCell:
    """One cell that earns points: ``kind`` is ``"autograded"`` (a test cell) or ``"manual"`` (an answer)."""

    grade_id: str
    points: float
    kind: str
    first_line: str


def _nbgrader(cell: Mapping[str, Any]) -> Mapping[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def graded_cells(nb: Mapping[str, Any]) -> list[GradedCell]:
    """The cells of ``nb`` that carry points, in notebook order."""
    out = []
    for cell in nb.get("cells", []):
        meta = _nbgrader(cell)
        if not meta.get("grade"):
            continue
        kind = "autograded" if cell.get("cell_type") == "code" and not meta.get("solution") else "manual"
        first = next((line.strip() for line in nbcheck.cell_source(cell).splitlines() if line.strip()), "")
        out.append(GradedCell(meta["grade_id"], float(meta.get("points", 0)), kind, first))
    return out


def points_rows(notebooks: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per assignment notebook: autograded and manual points, and the grade ids of the autograded tests."""
    rows = []
    for path in notebooks:
        cells = graded_cells(nbcheck.load_notebook(path))
        auto = [c for c in cells if c.kind == "autograded"]
        rows.append({
            "assignment": Path(path).stem,
            "autograded": sum(c.points for c in auto),
            "manual": sum(c.points for c in cells if c.kind == "manual"),
            "tests": ", ".join(f"`{c.grade_id}` ({c.points:g})" for c in auto),
        })  # fmt: skip
    return rows


def points_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The points table of ``docs/teaching.md`` (generated: ``m2s course points``)."""
    lines = ["| assignment | autograded points | manual points | autograded tests (points) |", "|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['assignment']} | {r['autograded']:g} | {r['manual']:g} | {r['tests'] or '—'} |")
    lines.append(f"| **total** | **{sum(r['autograded'] for r in rows):g}** | **{sum(r['manual'] for r in rows):g}** | |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------------------
def set_parameters(nb: dict, values: Mapping[str, Any]) -> dict:
    """Rewrite the literal values of ``nb``'s parameters cell in place (comments kept); returns ``nb``.

    Every name must already be a parameter: a preset for a name the notebook lacks is a ``ValueError``.
    """
    cell = nbcheck.parameters_cell(nb)
    if cell is None:
        raise ValueError("the notebook has no `parameters` cell (its first code cell must carry that tag)")
    source = nbcheck.cell_source(cell)
    lines = source.splitlines()
    nodes = {n.targets[0].id: n for n in ast.parse(source).body
             if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}  # fmt: skip
    unknown = sorted(set(values) - set(nodes))
    if unknown:
        raise ValueError(f"no parameter {unknown} in the parameters cell (has: {sorted(nodes)})")
    # replace from the bottom up, so that earlier line numbers stay valid
    for name in sorted(values, key=lambda k: nodes[k].lineno, reverse=True):
        node = nodes[name].value
        first, last = node.lineno - 1, node.end_lineno - 1
        head, tail = lines[first][: node.col_offset], lines[last][node.end_col_offset :]
        lines[first : last + 1] = [f"{head}{values[name]!r}{tail}"]
    cell["source"] = "\n".join(lines)
    got = nbcheck.parameter_names(nb)
    wrong = {k: v for k, v in values.items() if got.get(k) != v}
    if wrong:  # a value whose repr is not a Python literal (a Path, an object)
        raise ValueError(f"parameters {wrong} cannot be written as plain literals")
    return nb


def lock_parameters(nb: dict) -> dict:
    """Make the parameters cell a locked nbgrader cell: students see the classroom presets read-only, and grading
    restores them in every submission (nbgrader's ``OverwriteCells``)."""
    cell = nbcheck.parameters_cell(nb)
    cell.setdefault("metadata", {})["nbgrader"] = {
        "grade": False, "grade_id": PARAMETERS_GRADE_ID, "locked": True, "schema_version": 3, "solution": False,
    }  # fmt: skip
    return nb


# ---------------------------------------------------------------------------------------------------------------
# What a student copy must not contain, and must keep
# ---------------------------------------------------------------------------------------------------------------
def hidden_lines(master: Mapping[str, Any], min_chars: int = 16) -> set[str]:
    """Lines of the master's solution and hidden-test regions that appear nowhere else in it (stripped, at least
    ``min_chars`` long): if one of them is in a student copy, something leaked."""
    inside, outside = set(), set()
    for cell in master.get("cells", []):
        text = nbcheck.cell_source(cell)
        for m in _REGION.finditer(text):
            inside.update(line.strip() for line in m.group(2).splitlines())
        outside.update(line.strip() for line in _REGION.sub("", text).splitlines())
    return {line for line in inside - outside if len(line) >= min_chars}


def leaks(master: Mapping[str, Any], student: Mapping[str, Any]) -> list[str]:
    """Markers, solution lines and hidden-test lines of ``master`` found in ``student`` (empty: clean).

    Manual answer cells count too: the master's model answers must not survive in the student copy.
    """
    found = []
    secret = hidden_lines(master)
    answers = {c.grade_id for c in graded_cells(master) if c.kind == "manual"}
    master_cells = {_nbgrader(c).get("grade_id"): nbcheck.cell_source(c) for c in master.get("cells", [])}
    for i, cell in enumerate(student.get("cells", []), 1):
        text = nbcheck.cell_source(cell)
        found += [f"cell {i}: marker {m!r}" for m in MARKERS if m in text]
        found += [f"cell {i}: solution or hidden line {line!r}" for line in sorted(secret)
                  if line in {x.strip() for x in text.splitlines()}]  # fmt: skip
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id in answers and text.strip() == master_cells[grade_id].strip():
            found.append(f"cell {i}: the model answer of {grade_id!r}")
    return found


def tampered_cells(released: Mapping[str, Any], submitted: Mapping[str, Any],
                   source: Mapping[str, Any] | None = None) -> list[str]:  # fmt: skip
    """Locked cells of the released notebook that the submission deleted or altered, in words (empty: none).

    A cell equal to its ``source`` version (the course's notebook with hidden tests) is not altered either: that
    is what the masters hold when a teacher grades them as a check."""
    originals = {_nbgrader(c).get("grade_id"): nbcheck.cell_source(c).strip() for c in (source or {}).get("cells", [])}
    theirs = {}
    for cell in submitted.get("cells", []):
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id is not None:
            theirs[grade_id] = nbcheck.cell_source(cell)
    problems = []
    for cell in released.get("cells", []):
        meta = _nbgrader(cell)
        if not meta.get("locked") or "grade_id" not in meta:
            continue
        what = "test cell" if meta.get("grade") else "cell"
        if meta["grade_id"] not in theirs:
            problems.append(f"locked {what} {meta['grade_id']!r} was deleted (graded with the original put back)")
        elif theirs[meta["grade_id"]].strip() not in (nbcheck.cell_source(cell).strip(), originals.get(meta["grade_id"])):
            problems.append(f"locked {what} {meta['grade_id']!r} was altered (graded with the original)")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Words and links that must not reach a student version
# ---------------------------------------------------------------------------------------------------------------
TEACHER_WORDS = ("tests/", "papermill", "make reproduce", "overrides", "notebook_overrides", "BEGIN HIDDEN TESTS",
                 "test suite", "the test run", "CI,")  # fmt: skip
PAPER_ONLY_WORDS = ("the paper's input size", "the paper's encoder,")  # true only under the paper's profile
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def student_text_problems(student: Mapping[str, Any], paper_preset: bool = False,
                          released: Iterable[str] = ()) -> list[str]:  # fmt: skip
    """What a released student version must not say: test-suite, papermill or CI words, text that is only true
    under the paper's profile (unless ``paper_preset``), and relative links to files not in ``released`` (paths
    relative to the notebook's folder). Empty: clean. ``m2s course release`` refuses a version with problems."""
    words = TEACHER_WORDS + (() if paper_preset else PAPER_ONLY_WORDS)
    files = {str(Path(p)) for p in released}
    problems = []
    for i, cell in enumerate(student.get("cells", []), 1):
        text = nbcheck.cell_source(cell)
        problems += [f"cell {i}: {w!r} (words for teachers or the paper's profile)" for w in words if w in text]
        if cell.get("cell_type") != "markdown":
            continue
        for target in _LINK.findall(text):
            if re.match(r"^[a-z]+:|^#", target):
                continue
            if str(Path(target.split("#")[0])) not in files:
                problems.append(f"cell {i}: link to {target!r}, which is not in the release")
    return problems


def exercise_problems(nb: Mapping[str, Any], assignment: str) -> list[str]:
    """The graded test cells of ``nb`` against the exercises registered for ``assignment``: each test cell of a
    registered exercise is a short ``check("<its grade_id>", …)`` call with no hidden-test block, its nbgrader
    points equal the sum of the exercise's checks, and every registered exercise has its test and solution cells."""
    from .exercises import registry

    exercises = {e.grade_id: e for e in registry.exercises(assignment)}
    if not exercises:
        return []
    cells = {_nbgrader(c).get("grade_id"): c for c in nb.get("cells", []) if _nbgrader(c).get("grade_id")}
    problems = []
    for grade_id, exercise in exercises.items():
        missing = [g for g in (grade_id, *exercise.solution_ids) if g not in cells]
        if missing:
            problems.append(f"{grade_id}: no cell with grade_id {missing}")
            continue
        text = nbcheck.cell_source(cells[grade_id])
        points = float(_nbgrader(cells[grade_id]).get("points", 0))
        if points != exercise.max_points:
            problems.append(f"{grade_id}: the cell is worth {points:g} points, its checks {exercise.max_points:g}")
        if f'check("{grade_id}"' not in text or len(text.strip().splitlines()) > 4 or "HIDDEN" in text:
            problems.append(f"{grade_id}: a test cell is `check(\"{grade_id}\", …)` in at most a few lines")
    return problems
