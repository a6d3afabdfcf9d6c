"""The class report: what a class got wrong, at one look (docs/teaching.md, "Grade").

:func:`write_class_report` reads what grading left in the course folder,

* ``grades.csv`` (one row per student × assignment: totals, hand-graded answers included) and
* ``graded/<student id>/<assignment>/verdict.json`` (each exercise's points, status and checks, with the named
  mistake of every failed check; ``seconds``: the wall time of that submission's grading),

and writes ``<course>/report.html`` with four PNGs beside it in ``<course>/report/``:

* ``scores.png``: the distribution of each assignment's score (% of its points), one row per assignment;
* ``exercises.png``: per exercise, the share of the class with full marks, part of the points, none, not done,
  flagged or timed out;
* ``failed_checks.png``: the checks failed most often, with their counts;
* ``seconds.png``: the grading time per submission, per assignment.

The page lists the same numbers as tables, the failed checks with their named mistakes ("23 of 30: the sum, not
|A − B|"), and the submissions flagged for the teacher or cut by a time limit. Every text that reaches the page is
HTML-escaped: student names, titles and mistakes are data, never markup.
"""
from __future__ import annotations

import html
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...atomic import atomic_path, write_text
from .results import read_csv

__all__ = ["ClassData", "FailedCheck", "collect", "failed_checks", "report_after_grading", "write_class_report"]

REPORT_HTML = "report.html"
FIGURE_DIR = "report"
TOP_CHECKS = 15  # failed checks shown in the figure (the table lists them all)
TOP_MISTAKES = 4  # named mistakes listed per failed check
_CASE = re.compile(r"\s*\[case: [^\]]*\]\s*$")
_GOT = re.compile(r"^got [^,]{1,40}, which is ")  # "got 36864, which is 9C²: …": the value differs per case
STATUS_ORDER = ("full marks", "part of the points", "no points", "not done", "flagged", "timed out", "not reached")
STATUS_COLOURS = ("#2ca02c", "#bcbd22", "#d62728", "#c7c7c7", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass
class FailedCheck:
    """One check of one exercise, failed in ``failed`` of ``graded`` submissions (those where it ran)."""

    assignment: str
    exercise: str  # the exercise's title
    check: str
    failed: int
    graded: int
    points: float
    mistakes: list[tuple[str, int]] = field(default_factory=list)  # (named mistake, count), most frequent first


@dataclass
class ClassData:
    """What the report is made of: ``grades.csv``'s rows and every ``verdict.json``."""

    rows: list[dict[str, str]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # verdict files that could not be read

    @property
    def assignments(self) -> list[str]:
        return sorted({r["assignment"] for r in self.rows} | {v["assignment"] for v in self.verdicts})


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: unknown


def collect(course: Path, grades_csv: Path | None = None) -> ClassData:
    """Read ``grades.csv`` and the verdicts of ``course`` (a verdict that is not JSON is listed, not fatal)."""
    data = ClassData()
    _, data.rows = read_csv(grades_csv or course / "grades.csv")
    for path in sorted((course / "graded").glob("*/*/verdict.json")):
        try:
            verdict = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(verdict, dict) or not isinstance(verdict.get("exercises", []), list):
                raise ValueError("not a verdict")
        except (OSError, ValueError):
            data.unreadable.append(str(path.relative_to(course)))
            continue
        verdict.setdefault("assignment", path.parent.name)
        verdict.setdefault("student", path.parent.parent.name)
        data.verdicts.append(verdict)
    return data


def exercise_status(e: Mapping[str, Any]) -> str:
    """One of :data:`STATUS_ORDER` for one exercise of one submission."""
    status = str(e.get("status") or "")
    if status in ("not done", "flagged", "timed out", "not reached"):
        return status
    points, most = _number(e.get("points")) or 0.0, _number(e.get("max_points")) or 0.0
    if most and points >= most - 1e-9:
        return "full marks"
    return "part of the points" if points > 0 else "no points"


def mistake_text(mistake: Any) -> str:
    """A named mistake without the case it was seen on (``"… [case: width 16, 64×96 input]"``, ``"got 36864, which
    is …"``): the same mistake on two cases is one text."""
    text = str(mistake or "no named mistake")
    return _GOT.sub("", _CASE.sub("", text)).strip() or text


def failed_checks(verdicts: Iterable[Mapping[str, Any]]) -> list[FailedCheck]:
    """Every check failed at least once, most often failed first; counted over the submissions whose exercise was
    graded (a stub, a flag or a timeout is its own status, not a failed check)."""
    seen: dict[tuple[str, str, str], FailedCheck] = {}
    mistakes: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for verdict in verdicts:
        for e in verdict.get("exercises", []):
            if str(e.get("status")) != "graded":
                continue
            for c in e.get("checks", []):
                key = (str(verdict.get("assignment")), str(e.get("title") or e.get("grade_id")), str(c.get("name")))
                item = seen.setdefault(key, FailedCheck(*key, failed=0, graded=0,
                                                        points=_number(c.get("max_points")) or 0.0))  # fmt: skip
                item.graded += 1
                if not c.get("passed"):
                    item.failed += 1
                    mistakes[key][mistake_text(c.get("mistake"))] += 1
    found = [item for item in seen.values() if item.failed]
    for item in found:
        item.mistakes = mistakes[(item.assignment, item.exercise, item.check)].most_common()
    return sorted(found, key=lambda f: (-f.failed, -f.failed / max(f.graded, 1), f.assignment, f.exercise, f.check))


# -------------------------------------------------------------------------------------------------------------
# Numbers per assignment and per exercise
# -------------------------------------------------------------------------------------------------------------
def assignment_scores(data: ClassData) -> dict[str, list[float]]:
    """``{assignment: [score as % of its points, one per student]}`` from grades.csv (the verdicts without it)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for r in data.rows:
        score, most = _number(r.get("score")), _number(r.get("max_score"))
        if score is not None and most:
            scores[r["assignment"]].append(100 * score / most)
    if not scores:
        for v in data.verdicts:
            most = _number(v.get("max_points"))
            if most:
                scores[v["assignment"]].append(100 * (_number(v.get("points")) or 0.0) / most)
    return dict(scores)


def exercise_table(verdicts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per exercise (course order): its title, points, mean score and the count of each status."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for v in sorted(verdicts, key=lambda v: str(v.get("assignment"))):
        for e in v.get("exercises", []):
            key = (str(v["assignment"]), str(e.get("grade_id")))
            row = rows.setdefault(key, {"assignment": key[0], "grade_id": key[1],
                                        "title": str(e.get("title") or key[1]),
                                        "max_points": _number(e.get("max_points")) or 0.0, "points": [],
                                        **{s: 0 for s in STATUS_ORDER}})  # fmt: skip
            row["points"].append(_number(e.get("points")) or 0.0)
            row[exercise_status(e)] += 1
    return list(rows.values())


def submission_seconds(data: ClassData) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = defaultdict(list)
    for v in data.verdicts:
        value = _number(v.get("seconds"))
        if value is not None and v.get("graded", True) is not False:
            seconds[v["assignment"]].append(value)
    return dict(seconds)


# -------------------------------------------------------------------------------------------------------------
# Figures (matplotlib's object API: no pyplot state, safe in any thread; seaborn draws on the axes)
# -------------------------------------------------------------------------------------------------------------
def _label(text: str, width: int = 60) -> str:
    """Text for a matplotlib label: ``$`` would start mathtext."""
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("$", r"\$")


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path


def _figure(rows: int, width: float = 9.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, max(2.2, 0.9 + 0.42 * rows)), layout="constrained")


def plot_scores(scores: Mapping[str, Sequence[float]], path: Path) -> Path:
    import seaborn as sns

    names = sorted(scores)
    fig = _figure(len(names))
    ax = fig.subplots()
    table = {"assignment": [n for n in names for _ in scores[n]], "score": [s for n in names for s in scores[n]]}
    if not names:
        ax.set_axis_off()
        return _save(fig, path)
    ax.boxplot([scores[n] for n in names], positions=range(len(names)), orientation="horizontal", widths=0.6,
               showfliers=False, patch_artist=True, boxprops={"facecolor": "#d0e1f2"}, medianprops={"color": "#1f4e79"})
    sns.stripplot(table, x="score", y="assignment", order=names, ax=ax, color="#1f4e79", size=4, jitter=0.22,
                  alpha=0.7)  # fmt: skip
    ax.set_yticks(range(len(names)), [f"{_label(n, 34)}  (n={len(scores[n])})" for n in names])
    ax.set(xlim=(-3, 103), xlabel="score, % of the assignment's points (hand-graded answers count once graded)",
           ylabel="", title="Score per assignment (one dot per student)")  # fmt: skip
    return _save(fig, path)


def plot_exercises(table: Sequence[Mapping[str, Any]], path: Path) -> Path:
    fig = _figure(len(table), width=10.0)
    ax = fig.subplots()
    labels = [_label(f"{r['assignment'][:2]} {r['title']} ({r['max_points']:g} pt)", 48) for r in table]
    left = [0.0] * len(table)
    for status, colour in zip(STATUS_ORDER, STATUS_COLOURS):
        share = [100 * r[status] / max(len(r["points"]), 1) for r in table]
        if any(share):
            ax.barh(range(len(table)), share, left=left, color=colour, label=status, height=0.7)
            left = [a + b for a, b in zip(left, share)]
    ax.set_yticks(range(len(table)), labels)
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of the submissions", title="Each exercise: who got its points")
    if table:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 if len(table) > 6 else -0.3), ncol=4, frameon=False)
    return _save(fig, path)


def plot_failed(checks: Sequence[FailedCheck], path: Path) -> Path:
    shown = list(checks[:TOP_CHECKS])
    fig = _figure(max(len(shown), 1), width=10.0)
    ax = fig.subplots()
    if not shown:
        ax.text(0.5, 0.5, "no check failed", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _save(fig, path)
    ax.barh(range(len(shown)), [c.failed for c in shown], color="#d62728", height=0.65)
    for i, c in enumerate(shown):
        ax.text(c.failed, i, f" {c.failed} of {c.graded}", va="center", fontsize=8)
    ax.set_yticks(range(len(shown)), [_label(f"{c.assignment[:2]} {c.exercise}: {c.check}", 70) for c in shown])
    ax.invert_yaxis()
    ax.set_xlim(0, max(c.graded for c in shown) * 1.15)
    ax.set(xlabel="submissions that failed the check",
           title=f"The checks failed most often (top {len(shown)})")  # fmt: skip
    return _save(fig, path)


def plot_seconds(seconds: Mapping[str, Sequence[float]], path: Path) -> Path:
    import seaborn as sns

    names = sorted(seconds)
    fig = _figure(max(len(names), 1))
    ax = fig.subplots()
    table = {"assignment": [n for n in names for _ in seconds[n]], "seconds": [s for n in names for s in seconds[n]]}
    if names:
        sns.stripplot(table, x="seconds", y="assignment", order=names, ax=ax, color="#444444", size=4, jitter=0.2)
        ax.set_yticks(range(len(names)), [_label(n, 34) for n in names])
        ax.set_xlim(left=0)
    total = sum(sum(v) for v in seconds.values())
    ax.set(xlabel="seconds per submission (wall time of its grading)", ylabel="",
           title=f"Grading time per submission (sum {total / 60:.1f} min of grading work)")  # fmt: skip
    return _save(fig, path)


# -------------------------------------------------------------------------------------------------------------
# The page
# -------------------------------------------------------------------------------------------------------------
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _stats(values: Sequence[float]) -> str:
    if not values:
        return "<td>0</td><td></td><td></td><td></td><td></td>"
    return (f"<td>{len(values)}</td><td>{statistics.mean(values):.0f}</td><td>{statistics.median(values):.0f}</td>"
            f"<td>{min(values):.0f}</td><td>{max(values):.0f}</td>")  # fmt: skip


def _assignments_html(data: ClassData, scores: Mapping[str, Sequence[float]],
                      seconds: Mapping[str, Sequence[float]]) -> str:  # fmt: skip
    rows = []
    for a in data.assignments:
        s = seconds.get(a, [])
        time = f"{statistics.mean(s):.0f} s / {max(s):.0f} s" if s else ""
        rows.append(f"<tr><th>{_e(a)}</th>{_stats(scores.get(a, []))}<td>{time}</td></tr>")
    return ("<table><tr><th>assignment</th><th>students</th><th>mean %</th><th>median %</th><th>min %</th>"
            "<th>max %</th><th>grading time (mean / max)</th></tr>" + "".join(rows) + "</table>")  # fmt: skip


def _exercises_html(table: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{_e(s)}</th>" for s in STATUS_ORDER)
    rows = []
    for r in table:
        mean = statistics.mean(r["points"]) if r["points"] else 0.0
        counts = "".join(f"<td>{r[s]}</td>" for s in STATUS_ORDER)
        rows.append(f"<tr><td>{_e(r['assignment'][:2])}</td><td>{_e(r['title'])}</td>"
                    f"<td>{mean:.1f} / {r['max_points']:g}</td>{counts}</tr>")  # fmt: skip
    return f"<table><tr><th></th><th>exercise</th><th>mean points</th>{head}</tr>{''.join(rows)}</table>"


def _failed_html(checks: Sequence[FailedCheck]) -> str:
    if not checks:
        return "<p>No check failed in a graded exercise.</p>"
    items = []
    for c in checks:
        named = "".join(f"<li class='mistake'><b>{n} of {c.graded}</b>: {_e(text)}</li>"
                        for text, n in c.mistakes[:TOP_MISTAKES])  # fmt: skip
        more = sum(n for _, n in c.mistakes[TOP_MISTAKES:])
        if more:
            named += f"<li class='mistake'>{more} of {c.graded}: other mistakes</li>"
        items.append(f"<li class='check'><span class='count'>{c.failed} of {c.graded}</span> failed "
                     f"<b>{_e(c.assignment[:2])} {_e(c.exercise)}</b>, check <q>{_e(c.check)}</q> "
                     f"({c.points:g} pt)<ul>{named}</ul></li>")  # fmt: skip
    return f"<ol class='checks'>{''.join(items)}</ol>"


def _slowest_html(data: ClassData, n: int = 5) -> str:
    timed = [(_number(v.get("seconds")), v) for v in data.verdicts]
    timed = sorted(((s, v) for s, v in timed if s is not None), key=lambda t: -t[0])[:n]
    items = "".join(f"<li>slowest: {_e(v.get('student'))} ({_e(v.get('assignment'))}) {s:.0f} s</li>" for s, v in timed)
    return f"<ul class='note'>{items}</ul>" if items else ""


def _review_html(data: ClassData) -> str:
    """Submissions for the teacher to look at (flags, time limits, not graded): one row each, its reasons listed."""
    rows = []
    for v in sorted(data.verdicts, key=lambda v: (str(v.get("assignment")), str(v.get("student")))):
        notes = [str(p) for p in v.get("problems", []) if any(w in str(p) for w in REVIEW_WORDS)]
        notes += [f"{e.get('title')}: {e.get('status')}" for e in v.get("exercises", [])
                  if e.get("status") in ("flagged", "timed out") and not any(str(e.get("grade_id")) in n
                                                                              for n in notes)]  # fmt: skip
        if v.get("graded") is False and not notes:
            notes = [str(p) for p in v.get("problems", [])] or ["not graded"]
        if notes:
            items = "".join(f"<li>{_e(n)}</li>" for n in dict.fromkeys(notes))
            rows.append(f"<tr><td>{_e(v.get('student'))}</td><td>{_e(v.get('assignment'))}</td><td><ul>{items}</ul>"
                        "</td></tr>")  # fmt: skip
    rows += [f"<tr><td></td><td></td><td>unreadable verdict: {_e(p)}</td></tr>" for p in data.unreadable]
    if not rows:
        return "<p>Nothing to review: no flag, no time limit reached, every submission graded.</p>"
    return "<table><tr><th>student</th><th>assignment</th><th>why</th></tr>" + "".join(rows) + "</table>"


REVIEW_WORDS = ("flagged", "timed out", "not graded", "could not be run")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.count{font-weight:bold;color:#b00}li.check{margin:.6em 0}
li.mistake{margin:.15em 0;font-size:92%}.note{color:#555;font-size:90%}"""


def render_html(data: ClassData, figures: Mapping[str, str], course_name: str = "") -> str:
    scores, seconds = assignment_scores(data), submission_seconds(data)
    checks, table = failed_checks(data.verdicts), exercise_table(data.verdicts)
    students = {str(r["student"]) for r in data.rows} | {str(v.get("student")) for v in data.verdicts}
    total = sum(sum(s) for s in seconds.values())
    img = {k: f"<img src='{_e(v)}' alt='{_e(k)}'>" for k, v in figures.items()}
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>Class report {_e(course_name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Class report {_e(course_name)}</h1>",
        f"<p>{len(students)} student(s), {len(data.verdicts)} graded submission(s) in {len(data.assignments)} "
        f"assignment(s); grading took {total / 60:.1f} min of work in all.</p>",
        "<h2 id='failed'>What the class got wrong</h2>",
        "<p class='note'>Each failed check, counted over the submissions whose exercise was graded (stubs, flags and "
        "time limits are counted in the next section), with the named mistakes the grader recognised.</p>",
        img.get("failed", ""), _failed_html(checks),
        "<h2 id='exercises'>Per exercise</h2>", img.get("exercises", ""), _exercises_html(table),
        "<h2 id='assignments'>Per assignment</h2>", img.get("scores", ""), _assignments_html(data, scores, seconds),
        "<h2 id='time'>Grading time</h2>", img.get("seconds", ""), _slowest_html(data),
        "<h2 id='review'>For the teacher to review</h2>", _review_html(data),
        "</body></html>", ""])  # fmt: skip


def write_class_report(course: str | Path, grades_csv: str | Path | None = None,
                       log: Callable[[str], None] = print) -> Path | None:  # fmt: skip
    """``<course>/report.html`` and its PNGs in ``<course>/report/``; ``None`` (and one line) when nothing was
    graded yet."""
    root = Path(course)
    data = collect(root, Path(grades_csv) if grades_csv else None)
    if not data.verdicts and not data.rows:
        log(f"class report: nothing graded in {root} yet; no report written")
        return None
    folder = root / FIGURE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "failed": plot_failed(failed_checks(data.verdicts), folder / "failed_checks.png"),
        "exercises": plot_exercises(exercise_table(data.verdicts), folder / "exercises.png"),
        "scores": plot_scores(assignment_scores(data), folder / "scores.png"),
        "seconds": plot_seconds(submission_seconds(data), folder / "seconds.png"),
    }
    links = {k: f"{FIGURE_DIR}/{p.name}" for k, p in figures.items()}
    page = write_text(root / REPORT_HTML, render_html(data, links, root.name))
    log(f"class report: {page} ({len(data.verdicts)} submission(s); figures in {folder})")
    return page


def report_after_grading(course: Path, grades_csv: Path | None, log: Callable[[str], None] = print) -> Path | None:
    """:func:`write_class_report` at the end of ``m2s course grade``: a report that cannot be drawn costs one line,
    never the grades already written."""
    try:
        return write_class_report(course, grades_csv, log)
    except Exception as err:  # noqa: BLE001 — the grades are safe on disk; the report is a summary of them
        log(f"class report: not written ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})")
        return None
