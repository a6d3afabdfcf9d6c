"""What grading writes into the course folder (docs/teaching.md, "Grade"):

* ``graded/<student id>/<assignment>/verdict.json``: the judge's verdict plus ``student``, ``seconds``,
  ``sandboxed``, ``digest`` (the hash that decides whether a rerun grades the submission again);
* ``autograded/<student id>/<assignment>/<assignment>.ipynb``: the executed notebook, with the verdict of each test
  cell as its first output and a summary cell on top (what nbgrader's formgrader and ``generate_feedback`` show);
* the nbgrader gradebook: one auto score per test cell, hand-graded cells left for formgrader;
* ``grades.csv`` (merged: one row per student × assignment, the newest grading wins; one column per autograded
  exercise and per hand-graded question, ``NN grade_id``) and ``problems.csv``, both rewritten atomically after
  every submission; ``m2s course export`` turns ``grades.csv`` into an LMS file.
"""
from __future__ import annotations

import csv
import html
import io
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ...atomic import write_text
from .. import course_cells

__all__ = ["EXPORT_FORMATS", "GRADES_FIXED", "annotate", "export_grades", "manual_scores", "read_csv",
           "record_gradebook", "verdict_path", "write_grades", "write_problems"]  # fmt: skip

GRADES_FIXED = ("student", "assignment", "score", "max_score", "auto", "auto_max", "manual", "manual_max",
                "seconds", "sandboxed", "graded_at")  # fmt: skip
PROBLEMS_HEADER = ("student", "assignment", "problem")
EXPORT_FORMATS = ("canvas", "moodle", "wide")


def column(assignment: str, grade_id: str) -> str:
    """The grades.csv column of one exercise or question: ``"01 su_forward_tests"``."""
    return f"{assignment[:2]} {grade_id}"


def verdict_path(root: Path, sid: str, assignment: str) -> Path:
    return root / "graded" / sid / assignment / "verdict.json"


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _csv(header: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(header), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in row.items()})
    return buffer.getvalue()


def write_grades(path: Path, new_rows: Sequence[Mapping[str, Any]]) -> Path:
    """Merge ``new_rows`` into ``grades.csv`` by (student, assignment): a new row replaces the old one."""
    header, rows = read_csv(path)
    merged = {(r["student"], r["assignment"]): dict(r) for r in rows}
    for row in new_rows:
        merged[(row["student"], row["assignment"])] = dict(row)
    extras = [c for c in header if c not in GRADES_FIXED]
    for row in new_rows:
        extras += [k for k in row if k not in GRADES_FIXED and k not in extras]
    first = {c: i for i, c in enumerate(extras)}
    extras = sorted(first, key=lambda c: (c[:2], first[c]))
    ordered = sorted(merged.values(), key=lambda r: (r["assignment"], r["student"]))
    return write_text(path, _csv([*GRADES_FIXED, *extras], ordered))


def write_problems(path: Path, graded: Iterable[tuple[str, str]], problems: Sequence[tuple[str, str, str]]) -> Path:
    """``problems.csv``: the earlier rows of pairs not graded now, then ``problems``."""
    _, rows = read_csv(path)
    now = set(graded)
    kept = [r for r in rows if (r.get("student"), r.get("assignment")) not in now]
    kept += [dict(zip(PROBLEMS_HEADER, p)) for p in problems]
    return write_text(path, _csv(PROBLEMS_HEADER, kept))


# -------------------------------------------------------------------------------------------------------------
# nbgrader's gradebook
# -------------------------------------------------------------------------------------------------------------
def _gradebook(root: Path, course_id: str):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id)


def record_gradebook(root: Path, course_id: str, sid: str, student: str, assignment: str,
                     scores: Mapping[str, float], timestamp: datetime | None = None) -> None:  # fmt: skip
    """Auto scores per test cell (``scores``: grade id → points) for formgrader; hand-graded cells keep their
    manual score and stay marked for grading."""
    with warnings.catch_warnings(), _gradebook(root, course_id) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's notes from inside nbgrader
        gb.update_or_create_student(sid, first_name=student if student != sid else None)
        gb.update_or_create_submission(assignment, sid, timestamp=timestamp or datetime.now(timezone.utc))
        notebook = gb.find_submission_notebook(assignment, assignment, sid)
        for grade in notebook.grades:
            cell = grade.cell
            if cell.name in scores:
                grade.auto_score = float(scores[cell.name])
                grade.needs_manual_grade = grade.manual_score is not None
            elif cell.cell_type == "markdown" or (grade.auto_score is None):
                grade.auto_score = None
                grade.needs_manual_grade = grade.manual_score is None
        gb.db.commit()


def manual_scores(root: Path, course_id: str, sid: str, assignment: str) -> dict[str, float | None]:
    """The teacher's scores of the hand-graded cells (``None``: not graded yet)."""
    try:
        with warnings.catch_warnings(), _gradebook(root, course_id) as gb:
            warnings.simplefilter("ignore")
            notebook = gb.find_submission_notebook(assignment, assignment, sid)
            return {g.cell.name: g.manual_score for g in notebook.grades if g.auto_score is None}
    except Exception:  # noqa: BLE001 — no such submission in the gradebook yet
        return {}


# -------------------------------------------------------------------------------------------------------------
# The verdict inside the notebook (what formgrader and the feedback page show)
# -------------------------------------------------------------------------------------------------------------
def exercise_html(e: Mapping[str, Any]) -> str:
    """One exercise's verdict: points and status, then each check (✓/✗, points, the named mistake and hint),
    then flags and warnings (warnings are free: a note)."""
    head = (f"<p><b>{html.escape(str(e.get('title') or e['grade_id']))}: {e['points']:g} / {e['max_points']:g}"
            f"</b> ({html.escape(str(e.get('status')))})</p>")  # fmt: skip
    items = []
    for c in e.get("checks", []):
        mark = "✓" if c.get("passed") else "✗"
        text = f"{mark} {html.escape(str(c['name']))}: {c.get('points', 0):g} / {c.get('max_points', 0):g}"
        if not c.get("passed") and c.get("mistake"):
            text += f" — {html.escape(str(c['mistake']))}"
        if not c.get("passed") and c.get("hint"):
            text += f" <i>(hint: {html.escape(str(c['hint']))})</i>"
        items.append(f"<li>{text}</li>")
    if e.get("error"):
        items.append(f"<li>✗ the test cell raised {html.escape(str(e['error']))}</li>")
    for f in e.get("flags", []):
        items.append(f"<li>⚑ flagged for the teacher: {html.escape(str(f))}</li>")
    for w in e.get("warnings", []):
        items.append(f"<li>note (no points lost): {html.escape(str(w))}</li>")
    return head + (f"<ul>{''.join(items)}</ul>" if items else "")


def _plain(fragment: str) -> str:
    import re

    return html.unescape(re.sub(r"<[^>]+>", " ", fragment.replace("</li>", "\n"))).strip()


def annotate(executed: dict, verdict: Mapping[str, Any], problems: Sequence[str]) -> dict:
    """``executed`` with each test cell's verdict as its first output and a summary markdown cell on top."""
    by_id = {e["grade_id"]: e for e in verdict.get("exercises", [])}
    for cell in executed.get("cells", []):
        gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if gid in by_id and cell.get("cell_type") == "code":
            fragment = exercise_html(by_id[gid])
            cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                                "data": {"text/html": fragment, "text/plain": _plain(fragment)}}] + cell.get("outputs", [])  # fmt: skip
    lines = [f"## Grading summary: {verdict.get('points', 0):g} / {verdict.get('max_points', 0):g} autograded points",
             "", "| exercise | points | status |", "|---|---:|---|"]  # fmt: skip
    for e in verdict.get("exercises", []):
        failed = [c for c in e.get("checks", []) if not c.get("passed")]
        status = e.get("status", "")
        if failed and failed[0].get("mistake"):
            status += f": ✗ {failed[0]['name']} — {failed[0]['mistake']}"
        lines.append(f"| {_cell_text(e.get('title') or e['grade_id'])} | {e['points']:g} / {e['max_points']:g} | "
                     f"{_cell_text(status)} |")  # fmt: skip
    if problems:
        lines += ["", "**Notes from grading:**", *(f"- {_cell_text(p)}" for p in problems)]
    lines += ["", "Hand-graded answers: *to be graded* by your teacher."]
    summary = {"cell_type": "markdown", "metadata": {"tags": ["grading-summary"]}, "source": "\n".join(lines),
               "id": "m2s-grading-summary"}  # fmt: skip
    executed["cells"] = [summary] + [c for c in executed.get("cells", []) if c.get("id") != "m2s-grading-summary"]
    return executed


def mark_ungraded(page: str, grade_ids: Iterable[str]) -> str:
    """nbgrader's feedback page with "to be graded" instead of "Score: 0.0" for hand-graded answers the teacher
    has not graded yet (the table of contents and the answer's heading)."""
    import re

    for gid in grade_ids:
        key = re.escape(gid)
        page = re.sub(rf'(<a href="#{key}">[^<]*</a> \(Score: )[0-9.]+( / )', r"\g<1>to be graded\g<2>", page)
        page = re.sub(rf'(<a name="{key}"></a>.{{0,400}}?Score: )[0-9.]+( / )', r"\g<1>to be graded\g<2>", page,
                      flags=re.S)  # fmt: skip
    return page


MATHJAX_FILE = "tex-svg.js"  # MathJax 3, one self-contained file (SVG output needs no font files)
_MATHJAX_V3 = ("<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
               "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true}};</script>\n"
               f'<script src="mathjax/{MATHJAX_FILE}"></script>')


def mathjax_source() -> Path | None:
    """The feedback pages' MathJax 3 file from the package the site takes its own from, or ``None``."""
    from ..site import mathjax_source as packaged

    return packaged(MATHJAX_FILE)


def offline_mathjax(page: str, folder: Path) -> str:
    """nbgrader's feedback page with its maths rendered offline: the CDN MathJax 2 loader and its configuration
    are replaced by a local MathJax 3 copy in ``folder/mathjax/`` (hard-linked when possible). Unchanged when no
    local copy is installed."""
    import os
    import re
    import shutil

    source = mathjax_source()
    loader = re.compile(r'<script src="https://[^"]*mathjax[^"]*">\s*</script>\s*(<!-- MathJax configuration -->\s*)?'
                        r'(<script type="text/x-mathjax-config">.*?</script>)?', re.S | re.I)
    if source is None or not loader.search(page):
        return page
    target = folder / "mathjax" / MATHJAX_FILE
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return loader.sub(lambda _: _MATHJAX_V3, page, count=1)


def _cell_text(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")[:400]


# -------------------------------------------------------------------------------------------------------------
# LMS export
# -------------------------------------------------------------------------------------------------------------
def export_grades(grades_csv: Path, fmt: str, out: Path) -> Path:
    """One row per student, one column per assignment (``score`` points, hand-graded answers included):

    * ``canvas``: ``Student,ID,SIS User ID,SIS Login ID,Section,<assignment> (<max points>)…`` (Canvas'
      gradebook import: students matched by ``SIS Login ID``, here the course's student name);
    * ``moodle``: ``Username,<assignment>…`` (Moodle's "Import grades from CSV": map ``Username`` to the user
      field your students log in with);
    * ``wide``: ``student`` then every assignment total and every ``NN grade_id`` column of ``grades.csv``.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    header, rows = read_csv(grades_csv)
    if not rows:
        raise FileNotFoundError(f"{grades_csv} holds no grades: run `m2s course grade` first")
    assignments = sorted({r["assignment"] for r in rows})
    maxima = {a: max(float(r["max_score"] or 0) for r in rows if r["assignment"] == a) for a in assignments}
    students = sorted({r["student"] for r in rows})
    score = {(r["student"], r["assignment"]): r["score"] for r in rows}
    if fmt == "canvas":
        cols = [f"{a} ({maxima[a]:g})" for a in assignments]
        head = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *cols]
        table = [dict(zip(head, [s, "", "", s, "", *(score.get((s, a), "") for a in assignments)])) for s in students]
    elif fmt == "moodle":
        head = ["Username", *assignments]
        table = [dict(zip(head, [s, *(score.get((s, a), "") for a in assignments)])) for s in students]
    else:
        details = [c for c in header if c not in GRADES_FIXED]
        head = ["student", *assignments, *details]
        table = []
        for s in students:
            row = {"student": s, **{a: score.get((s, a), "") for a in assignments}}
            for r in rows:
                if r["student"] == s:
                    row.update({c: r.get(c, "") for c in details if r.get(c, "") != ""})
            table.append(row)
    return write_text(out, _csv(head, table))


def exercise_columns(assignment: str, verdict: Mapping[str, Any], graded_nb: Mapping[str, Any],
                     manual: Mapping[str, float | None]) -> dict[str, Any]:  # fmt: skip
    """``{"NN grade_id": points}`` for each exercise and each hand-graded question (blank: not graded yet)."""
    cols = {column(assignment, e["grade_id"]): float(e["points"]) for e in verdict.get("exercises", [])}
    for cell in course_cells.graded_cells(graded_nb):
        if cell.kind == "manual":
            value = manual.get(cell.grade_id)
            cols[column(assignment, cell.grade_id)] = "" if value is None else float(value)
    return cols


def save_verdict(root: Path, sid: str, assignment: str, verdict: Mapping[str, Any], extra: Mapping[str, Any]) -> Path:
    return write_text(verdict_path(root, sid, assignment), json.dumps({**verdict, **extra}, indent=1,
                                                                      ensure_ascii=False, default=str) + "\n")
