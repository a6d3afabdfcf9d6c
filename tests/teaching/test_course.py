"""The classroom pipeline (m2s_lib.teaching.course, ``m2s course``): release with nbgrader, then grade.

One course is released once for the module (every assignment, with the small CI values of
``tests/notebook_overrides.yaml`` on top of the classroom presets, so that grading executes quickly), and one
``m2s course grade`` run grades a folder of fake submissions built from the masters and the student versions:

==========  ==========================================================================================
student     submissions
==========  ==========================================================================================
correct     the masters of 01, 02 and 05 (solutions): full autograded points
blank       the untouched student versions of 01 and 02: 0 (every stub raises NotImplementedError)
partial     01 with only the SU written (8 points); 02 with the dense filter right (4 points) and the fast
            filter computing a box *mean* instead of a box sum (0 points)
wrong       01 with the SU computing A + B instead of |A − B|: 1 point (its dtype check), the feedback names
            the mistake first
tampered    01 with the SU's test cell replaced by ``pass`` and the parameter-count test cell deleted, and
            only the parameter count written: graded with the original tests (2 points), both reported
broken      01 that is not JSON; 05 under a wrong file name: reported, 0, not graded
==========  ==========================================================================================

Nine notebook executions in all. Measured on the 2-core development machine while other jobs ran (load 7-9): the
module took 250 s — release of the nine assignments 21-24 s, grading 11 submissions about 3 minutes (12-32 s per
executed submission) — and 153 s at load 1-3 (``-s`` prints the timings). The
per-exercise checks use notebooks 01, 02 and 05; every master's tests (hidden ones too) also run in
``tests/test_notebooks.py``, which executes every notebook.
"""
from __future__ import annotations

import csv
import html
import json
import re
import time
from pathlib import Path

import pytest

from m2s_lib.cli import main
from m2s_lib.teaching import course, course_cells, nbcheck

# nbgrader's own notes while grading (SQLAlchemy autoflush, cells without ids in nbconvert's copies): not ours
pytestmark = [pytest.mark.filterwarnings("ignore:Object of type"), pytest.mark.filterwarnings("ignore:Cell is missing an id")]

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "tests" / "notebook_overrides.yaml"
DOCS = ROOT / "docs" / "teaching.md"
MASTERS = {p.stem: p for p in course.assignment_notebooks()}
A01, A02, A05 = "01_subtraction_unit", "02_multiscale_subtraction_unit", "05_lossnet"


def _cell(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def _answer(master: dict, grade_id: str) -> str:
    """A master's solution cell as a student would write it (the markers removed)."""
    source = nbcheck.cell_source(_cell(master, grade_id))
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line)  # fmt: skip


def _write(path: Path, nb: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: one released course, one grading run
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("course")
    start = time.perf_counter()
    assert main(["course", "release", "--out", str(out), "--overrides", str(OVERRIDES)]) == 0
    print(f"\nrelease of {len(MASTERS)} assignments: {time.perf_counter() - start:.1f} s")
    return out


def _student(released: Path, assignment: str) -> dict:
    return nbcheck.load_notebook(released / "release" / assignment / f"{assignment}.ipynb")


def _master(assignment: str) -> dict:
    return nbcheck.load_notebook(MASTERS[assignment])


@pytest.fixture(scope="module")
def submissions(released: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("submitted")
    for a in (A01, A02, A05):
        _write(folder / "correct" / a / f"{a}.ipynb", _master(a))
    for a in (A01, A02):
        _write(folder / "blank" / a / f"{a}.ipynb", _student(released, a))

    nb = _student(released, A01)  # partial: the SU only
    _cell(nb, "su_forward")["source"] = _answer(_master(A01), "su_forward")
    _write(folder / "partial" / A01 / f"{A01}.ipynb", nb)
    nb = _student(released, A02)  # partial: dense right, fast filter with a box mean
    _cell(nb, "full_one_dense")["source"] = _answer(_master(A02), "full_one_dense")
    _cell(nb, "full_one_fast")["source"] = (
        "def box_sum(s, k):\n    return F.avg_pool2d(s, k, stride=1, padding=k // 2)\n\n\n"
        "def full_one_fast(x, k):\n    return box_sum(x.sum(dim=1, keepdim=True), k).expand(-1, x.shape[1], -1, -1)\n"
    )
    _write(folder / "partial" / A02 / f"{A02}.ipynb", nb)

    nb = _student(released, A01)  # wrong: A + B
    right = _answer(_master(A01), "su_forward")
    assert "torch.abs(a - b)" in right
    _cell(nb, "su_forward")["source"] = right.replace("torch.abs(a - b)", "(a + b)")
    _write(folder / "wrong" / A01 / f"{A01}.ipynb", nb)

    nb = _student(released, A01)  # tampered: altered and deleted locked test cells
    _cell(nb, "su_forward_tests")["source"] = "pass  # all good"
    nb["cells"].remove(_cell(nb, "su_param_count_tests"))
    _cell(nb, "su_param_count")["source"] = _answer(_master(A01), "su_param_count")
    _write(folder / "tampered" / A01 / f"{A01}.ipynb", nb)

    (folder / "broken" / A01).mkdir(parents=True)
    (folder / "broken" / A01 / f"{A01}.ipynb").write_text('{"cells": [ this is not JSON')
    _write(folder / "broken" / A05 / "lossnet.ipynb", _student(released, A05))
    return folder


@pytest.fixture(scope="module")
def graded(released: Path, submissions: Path) -> dict:
    start = time.perf_counter()
    rc = main(["course", "grade", "--course", str(released), "--submissions", str(submissions)])
    seconds = time.perf_counter() - start
    print(f"\ngrading {sum(1 for _ in submissions.glob('*/*'))} submissions: {seconds:.1f} s")
    with open(released / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(released / "problems.csv", newline="") as handle:
        problems = list(csv.DictReader(handle))
    header = (released / "grades.csv").read_text().splitlines()[0]
    return {"rc": rc, "rows": rows, "header": header, "problems": problems,
            "scores": {(r["student"], r["assignment"]): float(r["score"]) for r in rows}}  # fmt: skip


def _feedback(released: Path, student: str, assignment: str) -> str:
    path = released / "feedback" / student / assignment / f"{assignment}.html"
    assert path.is_file(), f"no feedback for {student}/{assignment}: {path}"
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def _auto(assignment: str) -> float:
    return sum(c.points for c in course_cells.graded_cells(_master(assignment)) if c.kind == "autograded")


# ---------------------------------------------------------------------------------------------------------------
# Points table, presets, release
# ---------------------------------------------------------------------------------------------------------------
def test_points_table_in_docs_is_up_to_date():
    table = course.points_table()
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- points-table:start -->\n(.*?)\n<!-- points-table:end -->", text, re.S)
    assert block, f"{DOCS} lacks the <!-- points-table:start/end --> block"
    assert block.group(1).strip() == table.strip(), (
        f"{DOCS.name}'s points table is out of date: replace it with the output of `m2s course points`"
    )


def test_every_notebook_has_exercises():
    """01-07: autograded tests; 01-09: an Exercises section with manual answers; parameters never a solution."""
    for stem, path in MASTERS.items():
        nb = nbcheck.load_notebook(path)
        cells = course_cells.graded_cells(nb)
        number = int(stem[:2])
        if number <= 7:
            assert any(c.kind == "autograded" for c in cells), f"{stem} has no autograded exercise"
        assert any(c.kind == "manual" for c in cells), f"{stem} has no manually graded answer"
        assert any(nbcheck.cell_source(c).startswith("## Exercises") for c in nb["cells"]), f"{stem}: no Exercises"
        assert "nbgrader" not in nbcheck.parameters_cell(nb).get("metadata", {}), f"{stem}: parameters cell graded"
        ids = [c.grade_id for c in cells]
        assert len(ids) == len(set(ids)), f"{stem}: repeated grade ids {ids}"


def test_autograded_total_is_at_least_100():
    rows = course_cells.points_rows(MASTERS.values())
    total = sum(r["autograded"] for r in rows)
    assert total >= 100, f"the course has {total} autograded points, fewer than 100: {[(r['assignment'], r['autograded']) for r in rows]}"


def test_set_parameters_keeps_comments_and_refuses_unknown_names():
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [],
                     "source": "a = 1  # one\nb = 'x'  # text\nc = [1,\n     2]\n"}]}  # fmt: skip
    course_cells.set_parameters(nb, {"a": 5, "c": None})
    assert nb["cells"][0]["source"] == "a = 5  # one\nb = 'x'  # text\nc = None"
    with pytest.raises(ValueError, match="no parameter"):
        course_cells.set_parameters(nb, {"d": 1})


def test_presets_are_make_reproduce_parameters_of_tiny(tmp_path):
    """Without overrides, a released notebook's locked parameters are what `make reproduce` passes on tiny."""
    from m2s_lib.config import get_profile

    assert main(["course", "release", "--out", str(tmp_path), "--assignments", "01", "06"]) == 0
    tiny = get_profile("tiny")
    for stem in (A01, "06_training"):
        released = nbcheck.load_notebook(tmp_path / "release" / stem / f"{stem}.ipynb")
        cell = nbcheck.parameters_cell(released)
        assert cell["metadata"]["nbgrader"]["locked"] is True
        values = nbcheck.parameter_names(released)
        context = course.classroom_context()
        expected = course.reproduce.notebook_parameters(MASTERS[stem], "tiny", context)
        assert {k: values[k] for k in expected} == expected
    assert nbcheck.parameter_names(tmp_path / "release" / A01 / f"{A01}.ipynb")["encoder_name"] == tiny.model.encoder_name
    assert nbcheck.parameter_names(tmp_path / "release" / "06_training" / "06_training.ipynb")["profile"] == "tiny"
    # releasing again is refused unless --overwrite
    assert main(["course", "release", "--out", str(tmp_path), "--assignments", "01"]) == 1
    assert main(["course", "release", "--out", str(tmp_path), "--assignments", "01", "--overwrite"]) == 0


def test_release_has_every_assignment(released: Path):
    for stem in MASTERS:
        assert (released / "source" / stem / f"{stem}.ipynb").is_file()
        assert (released / "release" / stem / f"{stem}.ipynb").is_file()
        assert (released / "release" / stem / "README.md").is_file()
    state = json.loads((released / "course.json").read_text())
    assert sorted(state["assignments"]) == sorted(MASTERS)
    assert (released / "gradebook.db").is_file() and (released / "nbgrader_config.py").is_file()


def test_student_versions_hold_no_solution_and_no_hidden_test(released: Path):
    for stem in MASTERS:
        master, student = _master(stem), _student(released, stem)
        assert course_cells.leaks(master, student) == [], stem
        text = json.dumps(student)
        for marker in course_cells.MARKERS:
            assert marker not in text, f"{stem}: {marker!r} survived"
        for cell in master["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("solution") and cell["cell_type"] == "code":
                stub = nbcheck.cell_source(_cell(student, meta["grade_id"]))
                assert "raise NotImplementedError()" in stub, f"{stem}/{meta['grade_id']}: no stub"


def test_leak_scan_can_fail():
    """The scanner finds the solutions, hidden tests and model answers of a master in the master itself."""
    found = course_cells.leaks(_master(A01), _master(A01))
    assert any("marker 'BEGIN SOLUTION'" in f for f in found)
    assert any("torch.abs(a - b)" in f for f in found)
    assert any("model answer of 'q_su_vs_sum'" in f for f in found)


def test_tampered_cells_names_deleted_and_altered_locked_cells():
    released = {"cells": [
        {"cell_type": "code", "source": "assert f(1) == 2", "metadata": {"nbgrader": {"grade_id": "t1", "locked": True, "grade": True}}},
        {"cell_type": "code", "source": "x = 1", "metadata": {"nbgrader": {"grade_id": "given", "locked": True, "grade": False}}},
        {"cell_type": "code", "source": "def f(x): raise NotImplementedError()", "metadata": {"nbgrader": {"grade_id": "s1", "solution": True}}},
    ]}  # fmt: skip
    source = {"cells": [{**released["cells"][0], "source": "assert f(1) == 2\n### BEGIN HIDDEN TESTS\nassert f(2) == 3\n### END HIDDEN TESTS"}]}
    student = json.loads(json.dumps(released))
    student["cells"][2]["source"] = "def f(x): return x + 1"  # an answer is not tampering
    assert course_cells.tampered_cells(released, student, source) == []
    student["cells"][0]["source"] = source["cells"][0]["source"]  # the master's version (hidden tests): fine too
    assert course_cells.tampered_cells(released, student, source) == []
    student["cells"][0]["source"] = "pass"
    del student["cells"][1]
    assert course_cells.tampered_cells(released, student, source) == [
        "locked test cell 't1' was altered (graded with the original)",
        "locked cell 'given' was deleted (graded with the original put back)",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------------------------
def test_grades_csv_has_the_expected_scores(graded: dict):
    from m2s_lib.teaching.grading import results

    assert graded["rc"] == 0
    assert graded["header"].split(",")[:len(results.GRADES_FIXED)] == list(results.GRADES_FIXED)
    assert "01 su_forward_tests" in graded["header"].split(",")  # one column per exercise (and per question)
    assert graded["scores"] == {
        ("correct", A01): _auto(A01), ("correct", A02): _auto(A02), ("correct", A05): _auto(A05),
        ("blank", A01): 0, ("blank", A02): 0,
        ("partial", A01): 8, ("partial", A02): 4,
        ("wrong", A01): 1,  # A + B fails every check of the SU but its dtype one (1 point): per-check credit
        ("tampered", A01): 2,
        ("broken", A01): 0, ("broken", A05): 0,
    }  # fmt: skip
    max_scores = {(r["student"], r["assignment"]): float(r["max_score"]) for r in graded["rows"]}
    manual = sum(c.points for c in course_cells.graded_cells(_master(A01)) if c.kind == "manual")
    assert max_scores[("blank", A01)] == _auto(A01) + manual


def test_masters_get_full_autograded_points(graded: dict):
    for a in (A01, A02, A05):
        assert graded["scores"][("correct", a)] == _auto(a) > 0


def test_blank_student_versions_score_zero_and_say_not_done(graded: dict, released: Path):
    for a in (A01, A02):
        assert graded["scores"][("blank", a)] == 0
        assert "not done" in _feedback(released, "blank", a)
    assert not [p for p in graded["problems"] if p["student"] == "blank"]


def test_one_exercise_gets_exactly_its_points(graded: dict):
    su = next(c.points for c in course_cells.graded_cells(_master(A01)) if c.grade_id == "su_forward_tests")
    assert graded["scores"][("partial", A01)] == su == 8


def test_plausible_wrong_answers_score_zero_with_a_named_check(graded: dict, released: Path):
    assert graded["scores"][("wrong", A01)] == 1  # only the SU's dtype check passes
    text = _feedback(released, "wrong", A01)
    assert "CBR(up(A) + B): the sum, not the absolute difference |A − B|" in text
    assert text.index("the sum, not the absolute difference") < text.index("class ScratchSU")  # reason first
    assert graded["scores"][("partial", A02)] == 4  # the dense filter's points, none for the box mean
    assert "box mean" in _feedback(released, "partial", A02)


def test_malformed_submissions_are_reported_and_the_rest_graded(graded: dict, released: Path):
    problems = {(p["student"], p["assignment"]): p["problem"] for p in graded["problems"]}
    by_student = [(p["student"], p["assignment"], p["problem"]) for p in graded["problems"]]
    assert "is not a valid notebook" in problems[("broken", A01)]
    assert "no 05_lossnet.ipynb (found lossnet.ipynb)" in problems[("broken", A05)]
    tampered = [p for s, a, p in by_student if s == "tampered"]
    assert any("'su_forward_tests' was altered" in p for p in tampered), tampered
    assert any("'su_param_count_tests' was deleted" in p for p in tampered), tampered
    assert graded["scores"][("tampered", A01)] == 2  # the original tests ran: the SU stub fails, the count passes
    assert "not graded" in _feedback(released, "broken", A01)
    # the masters carry no locked parameters cell (graded with the course's presets, and said so), their test
    # cells lack the release's lock mark, and their hand-graded answers are the model answers: all reported
    correct = {p for s, _, p in by_student if s == "correct"}
    assert "the parameters cell had lost its lock: graded with the course's presets" in correct
    assert all("lost its lock" in p or "was altered" in p or "identical to the model answer" in p
               or "unsandboxed" in p for p in correct), correct
    assert {s for s, _, _ in by_student} == {"broken", "tampered", "correct"}, by_student
