"""The class report (m2s_lib.teaching.grading.class_report): built from planted verdicts and grades.csv, parsed back.

A class of 30 on 01: 23 fail the SU's "eval mode" check with the same named mistake, 2 fail "train mode" with a
mistake text that is hostile HTML, 4 left Exercise 3 undone, the flagged submission's student has a name that is
hostile HTML, and one verdict file is not JSON. The page must count them right, show the named mistake with
its count, escape every text, and link four PNGs that exist.
"""
from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from m2s_lib.teaching.grading import class_report

A01 = "01_subtraction_unit"
HOSTILE_NAME = 'Zoë <img src=x onerror=alert(1)> & "Co"'
HOSTILE_MISTAKE = "<script>alert('mistake')</script> the outputs & shapes"
SUM = "your output equals CBR(up(A) + B): the sum, not the absolute difference |A − B|"


class Page(HTMLParser):
    """Tags (with attributes) and the text, as a browser would see them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.chunks: list[str] = []
        self.feed(text)
        self.text = " ".join("".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("p", "li", "ul", "ol", "td", "th", "tr", "h1", "h2", "table"):
            self.chunks.append(" ")

    def handle_data(self, data):
        self.chunks.append(data)


def _check(name, points, passed, mistake=None):
    return {"name": name, "points": points if passed else 0.0, "max_points": points, "passed": passed,
            "mistake": None if passed else mistake, "hint": None}  # fmt: skip


def _verdict(i: int) -> dict:
    """Student ``i`` of 30 (see the module's docstring)."""
    case = f" [case: {'hidden: odd sizes' if i % 2 else '8 channels, 4×4 → 8×8'}]"  # the same mistake on two cases
    got = f"got {9 * 64**2 if i % 2 else 9}, which is "
    su = [_check("eval mode", 3, i >= 23, got + SUM + case), _check("train mode", 2, i not in (23, 24), HOSTILE_MISTAKE),
          _check("odd sizes", 2, True), _check("dtype", 1, True)]  # fmt: skip
    fusion_done = i < 26
    exercises = [
        {"grade_id": "su_forward_tests", "title": "Exercise 1 (`ScratchSU`)", "status": "graded", "checks": su},
        {"grade_id": "su_param_count_tests", "title": "Exercise 2 (`su_parameter_count`)", "status": "graded",
         "checks": [_check("C = 64", 1, True), _check("other widths", 1, True)]},
        {"grade_id": "fusion_parts_tests", "title": "Exercise 3 (`fusion_parts`)",
         "status": "graded" if fusion_done else "not done",
         "checks": [_check("difference", 1, fusion_done), _check("shared part", 1, fusion_done),
                    _check("edge cases and float32", 1, fusion_done)] if fusion_done else []},
    ]  # fmt: skip
    if i == 29:
        exercises[1].update(status="flagged", flags=["reference: m2s_lib.profiling.count_parameters"])
        exercises[1]["checks"] = []
    for e in exercises:
        e["max_points"] = {"su_forward_tests": 8.0, "su_param_count_tests": 2.0, "fusion_parts_tests": 3.0}[e["grade_id"]]
        e["points"] = float(sum(c["points"] for c in e["checks"])) if e["status"] == "graded" else 0.0
    name = HOSTILE_NAME if i == 29 else f"student{i:02d}"
    problems = ["su_param_count_tests: flagged: reference: m2s_lib.profiling.count_parameters"] if i == 29 else []
    return {"assignment": A01, "exercises": exercises, "flags": [], "student": name, "seconds": 10.0 + i,
            "sandboxed": True, "problems": problems, "points": sum(e["points"] for e in exercises),
            "max_points": 13.0}  # fmt: skip


@pytest.fixture
def course(tmp_path) -> Path:
    rows = []
    for i in range(30):
        v = _verdict(i)
        sid = f"s{i:02d}"
        path = tmp_path / "graded" / sid / A01 / "verdict.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(v))
        rows.append({"student": v["student"], "assignment": A01, "score": v["points"], "max_score": 19,
                     "auto": v["points"], "auto_max": 13, "manual": 0, "manual_max": 6, "seconds": v["seconds"]})
    broken = tmp_path / "graded" / "broken" / A01 / "verdict.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    with open(tmp_path / "grades.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path


def test_failed_checks_are_counted_with_their_named_mistakes(course):
    data = class_report.collect(course)
    assert len(data.verdicts) == 30 and data.unreadable == [f"graded/broken/{A01}/verdict.json"]
    checks = class_report.failed_checks(data.verdicts)
    first = checks[0]
    assert (first.check, first.failed, first.graded, first.mistakes) == ("eval mode", 23, 30, [(SUM, 23)])
    assert [(c.check, c.failed, c.graded) for c in checks] == [("eval mode", 23, 30), ("train mode", 2, 30)]
    table = {r["grade_id"]: r for r in class_report.exercise_table(data.verdicts)}
    assert table["fusion_parts_tests"]["not done"] == 4 and table["fusion_parts_tests"]["full marks"] == 26
    assert table["su_param_count_tests"]["flagged"] == 1 and table["su_param_count_tests"]["full marks"] == 29
    assert table["su_forward_tests"]["part of the points"] == 25 and table["su_forward_tests"]["full marks"] == 5


def test_report_page_counts_escapes_and_links_its_figures(course):
    lines = []
    page_path = class_report.write_class_report(course, log=lines.append)
    assert page_path == course / "report.html" and "30 submission(s)" in lines[0]
    raw = page_path.read_text(encoding="utf-8")
    page = Page(raw)
    # the counts and the named mistake, most frequent first
    assert "30 student(s), 30 graded submission(s)" in page.text
    assert f"23 of 30 failed 01 Exercise 1 (`ScratchSU`), check eval mode (3 pt) 23 of 30: {SUM}" in page.text
    assert page.text.index("check eval mode") < page.text.index("check train mode")
    assert f"2 of 30: {HOSTILE_MISTAKE}" in page.text
    # hostile texts are text, never markup
    assert [t for t, _ in page.tags if t == "script"] == []
    assert all(a.get("src", "").startswith("report/") for t, a in page.tags if t == "img")
    assert HOSTILE_NAME in page.text and "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;Co&quot;" in raw
    assert f"{HOSTILE_NAME} {A01} su_param_count_tests: flagged: reference: m2s_lib.profiling.count_parameters" in page.text
    assert f"slowest: {HOSTILE_NAME} ({A01}) 39 s" in page.text
    assert f"unreadable verdict: graded/broken/{A01}/verdict.json" in page.text
    # four figures that exist and are PNGs
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert sorted(images) == sorted(f"report/{n}.png" for n in ("failed_checks", "exercises", "scores", "seconds"))
    for src in images:
        data = (course / src).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, src


def test_nothing_graded_is_one_line_and_no_report(tmp_path):
    lines = []
    assert class_report.report_after_grading(tmp_path, None, lines.append) is None
    assert lines == [f"class report: nothing graded in {tmp_path} yet; no report written"]
    assert not (tmp_path / "report.html").exists()


def test_a_report_that_cannot_be_drawn_costs_one_line(course, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no display\nsecond line")

    monkeypatch.setattr(class_report, "plot_failed", broken)
    lines = []
    assert class_report.report_after_grading(course, None, lines.append) is None
    assert lines == ["class report: not written (RuntimeError: no display)"]
