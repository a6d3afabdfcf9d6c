"""The grading runner (course.grade → grading.runner/results) on a tiny course made here.

The course has one assignment, ``01_tiny``: a locked parameters cell, a given cell defining a toy ``check`` (it
records the answer's outputs on the grader's inputs, like the real framework), one exercise judged by a stub
judge in this process (``plus_one_tests``, 2 checks, 3 points), one plain test cell scored by "ran without an
error" (``plain_tests``, 1 point) and one hand-graded answer (1 point). A class of ten submissions covers honest,
wrong, blank, tampered, a sleeping and a SIGINT-ignoring one, a cheat that writes its outputs by hand, odd
student names and symbolic links. One grading run (``--jobs 2``) serves most tests.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from m2s_lib.teaching import course
from m2s_lib.teaching.grading import results, runner, sandbox

ROOT = Path(__file__).resolve().parents[3]
A = "01_tiny"
pytestmark = [pytest.mark.filterwarnings("ignore:Object of type"), pytest.mark.filterwarnings("ignore:Cell is missing an id")]

PARAMETERS = "run_dir = 'runs'\nseed = 0"
GIVEN = '''import json, os
from pathlib import Path

def check(grade_id, answer):
    """Toy framework: in grading mode, record the answer's outputs on the grader's inputs."""
    folder = os.environ.get("M2S_GRADING_DIR")
    if not folder:
        print("visible check:", answer(1))
        return
    xs = json.loads((Path(folder) / "inputs" / f"{grade_id}.json").read_text())
    try:
        got = {"status": "ok", "values": [answer(x) for x in xs]}
    except NotImplementedError:
        got = {"status": "not_done"}
    (Path(folder) / "outputs" / f"{grade_id}.json").write_text(json.dumps(got))'''
SOLUTION = "def plus_one(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"
TEST = "check('plus_one_tests', plus_one)"
PLAIN_SOLUTION = "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
PLAIN_TEST = "assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(5) == 10\n### END HIDDEN TESTS"


class StubJudge:
    """The trusted side for 01_tiny: inputs chosen here, outputs compared here, never in the kernel."""

    EXERCISES = {A: ("plus_one_tests",)}
    XS = [1, 2, -3, 10]  # the first is the "visible" case, the rest "hidden"

    @classmethod
    def prepare_inputs(cls, assignment, grading_dir, seed=0):
        (grading_dir / "inputs").mkdir(parents=True, exist_ok=True)
        (grading_dir / "outputs").mkdir(parents=True, exist_ok=True)
        (grading_dir / "inputs" / "plus_one_tests.json").write_text(json.dumps(cls.XS))

    @classmethod
    def judge_assignment(cls, assignment, grading_dir, notebook, seed=0):
        path = grading_dir / "outputs" / "plus_one_tests.json"
        flags = [] if "'values': [42]" not in json.dumps(notebook) else ["writes its outputs by hand"]
        checks, status = [], "not reached"
        if path.is_file():
            got = json.loads(path.read_text())
            status = "not done" if got["status"] == "not_done" else "graded"
            values = got.get("values") or []
            exact = isinstance(values, list) and values == [x + 1 for x in cls.XS]
            visible = bool(values) and values[0] == cls.XS[0] + 1
            checks = [{"name": "visible case", "points": 1.0 if visible else 0.0, "max_points": 1.0,
                       "passed": visible, "mistake": None if visible else "x - 1, not x + 1", "hint": None},
                      {"name": "hidden cases", "points": 2.0 if exact else 0.0, "max_points": 2.0, "passed": exact,
                       "mistake": None if exact else "wrong on a hidden case", "hint": None}]  # fmt: skip
        if flags:
            status = "flagged"
            for c in checks:
                c["points"] = 0.0
        exercise = {"grade_id": "plus_one_tests", "title": "Exercise 1 (plus_one)", "max_points": 3.0,
                    "points": float(sum(c["points"] for c in checks)), "status": status, "checks": checks,
                    "flags": flags, "warnings": []}  # fmt: skip
        return SimpleNamespace(to_dict=lambda: {"assignment": assignment, "exercises": [exercise], "flags": []})


def _cell(kind: str, source: str, grade_id: str | None = None, **meta) -> dict:
    cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "schema_version": 3, "solution": False, "grade": False,
                                     "locked": False, **meta}  # fmt: skip
    return cell


def make_course(root: Path, framework: bool = True) -> Path:
    """A released one-assignment course, as `m2s course release` would leave it (``framework=False``: the first
    test cell is a plain assert too, for grading with the real judge, which does not know 01_tiny)."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})  # fmt: skip
    params = _cell("code", PARAMETERS, "parameters", locked=True)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, _cell("code", GIVEN, "given", locked=True),
                _cell("code", SOLUTION, "plus_one", solution=True),
                _cell("code", TEST if framework else "assert plus_one(1) == 2", "plus_one_tests", grade=True,
                      locked=True, points=3),
                _cell("code", PLAIN_SOLUTION, "double", solution=True),
                _cell("code", PLAIN_TEST, "plain_tests", grade=True, locked=True, points=1),
                _cell("markdown", "Why?", "q_why_prompt", locked=True),
                _cell("markdown", "### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "q_why", solution=True,
                      grade=True, points=1)]  # fmt: skip
    (root / "source" / A).mkdir(parents=True)
    nbformat.write(nb, str(root / "source" / A / f"{A}.ipynb"))
    (root / "nbgrader_config.py").write_text(course.CONFIG_FILE_TEXT)
    made = course._api(root).generate_assignment(A, force=True, create=True)
    assert made["success"], made
    state = {"course_id": course.COURSE_ID, "assignments": {A: {"notebook": f"{A}.ipynb", "parameters":
             {"run_dir": "runs"}, "autograded_points": 4, "manual_points": 1}}}  # fmt: skip
    (root / course.COURSE_FILE).write_text(json.dumps(state))
    return root


def released(root: Path) -> dict:
    return json.loads((root / "release" / A / f"{A}.ipynb").read_text())


def answer(root: Path, plus_one: str | None = None, double: str | None = None, **cells: str) -> dict:
    nb = released(root)
    for c in nb["cells"]:
        gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid == "plus_one" and plus_one is not None:
            c["source"] = plus_one
        if gid == "double" and double is not None:
            c["source"] = double
        if gid in cells:
            c["source"] = cells[gid]
    return nb


def put(folder: Path, student: str, nb: dict) -> Path:
    path = folder / student / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


RIGHT = "def plus_one(x):\n    return x + 1"
DOUBLE = "def double(x):\n    return x * 2"


def settings(**kw) -> runner.Settings:
    return runner.Settings(judge=StubJudge, parameters=lambda a: {}, **kw)


def _snapshot(*folders: Path) -> dict[str, tuple]:
    """Every file under ``folders`` (``.git`` left out): content hash for small files, size+mtime for large."""
    out = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__", ".pytest_cache", ".hypothesis",
                                                            ".ruff_cache")]  # fmt: skip
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                small = st.st_size < 2**20 and not path.is_symlink()
                out[str(path)] = (hashlib.sha1(path.read_bytes()).hexdigest() if small else None, st.st_size,
                                  None if small else st.st_mtime_ns)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    root = make_course(tmp_path_factory.mktemp("course"))
    subs = tmp_path_factory.mktemp("submissions")
    put(subs, "honest", answer(root, RIGHT, DOUBLE))
    put(subs, "wrong", answer(root, "def plus_one(x):\n    return x - 1", DOUBLE))
    put(subs, "blank", released(root))
    tampered = answer(root, RIGHT)
    for c in tampered["cells"]:
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "plain_tests":
            c["source"] = "pass  # all good"
    put(subs, "tampered", tampered)
    put(subs, "sleeper", answer(root, "import time\ntime.sleep(600)\n" + RIGHT, DOUBLE))
    put(subs, "deaf", answer(root, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n"
                                   "    pass", DOUBLE))  # fmt: skip
    put(subs, "cheat", answer(root, "import json, os\nopen(os.environ['M2S_GRADING_DIR'] + '/outputs/plus_one_tests.json', "
                                    "'w').write(json.dumps({'status': 'ok', 'values': [42]}))\n" + RIGHT, DOUBLE))  # fmt: skip
    put(subs, "Smith, J [2]", answer(root, RIGHT, DOUBLE))
    put(subs, "Ann *?", answer(root, RIGHT, DOUBLE))
    victim = tmp_path_factory.mktemp("victim")
    put(victim, "linked", answer(root, RIGHT, DOUBLE))
    (subs / "linked").symlink_to(victim / "linked")
    (subs / "sourcelink" / A).mkdir(parents=True)
    (subs / "sourcelink" / A / f"{A}.ipynb").symlink_to(root / "source" / A / f"{A}.ipynb")
    guarded = {"repo": _snapshot(ROOT), "course": _snapshot(root / "source", root / "release"),
               "config": (root / "nbgrader_config.py").read_bytes(), "victim": _snapshot(victim)}  # fmt: skip
    start = time.perf_counter()
    result = course.grade(root, subs, timeout=5, submission_timeout=25, jobs=2, settings=settings())
    seconds = time.perf_counter() - start
    print(f"\ngraded {len(result.rows)} tiny submissions with --jobs 2 in {seconds:.1f} s")
    header, rows = results.read_csv(root / "grades.csv")
    _, problems = results.read_csv(root / "problems.csv")
    return {"root": root, "subs": subs, "result": result, "header": header, "guarded": guarded, "victim": victim,
            "rows": {r["student"]: r for r in rows}, "problems": problems}  # fmt: skip


def _problems(graded: dict, student: str) -> list[str]:
    return [p["problem"] for p in graded["problems"] if p["student"] == student]


def test_scores_per_exercise_and_per_check(graded):
    rows = graded["rows"]
    assert graded["header"][:len(results.GRADES_FIXED)] == list(results.GRADES_FIXED)
    assert {"01 plus_one_tests", "01 plain_tests", "01 q_why"} <= set(graded["header"])
    assert rows["honest"]["auto"] == "4" and rows["honest"]["01 plus_one_tests"] == "3"
    assert rows["honest"]["01 q_why"] == "", "a hand-graded answer is blank until the teacher grades it"
    assert rows["wrong"]["01 plus_one_tests"] == "0" and rows["wrong"]["01 plain_tests"] == "1"
    assert rows["blank"]["auto"] == "0"
    verdict = json.loads(results.verdict_path(graded["root"], "wrong", A).read_text())
    assert verdict["student"] == "wrong" and verdict["sandboxed"] in (True, False) and verdict["digest"]
    failed = [c for c in verdict["exercises"][0]["checks"] if not c["passed"]]
    assert failed[0]["mistake"] == "x - 1, not x + 1"


def test_tampered_test_cells_are_restored_and_reported(graded):
    assert graded["rows"]["tampered"]["01 plain_tests"] == "0"  # the original test ran: double is not written
    assert any("'plain_tests' was altered" in p for p in _problems(graded, "tampered"))


def test_cheat_is_flagged_and_scores_zero(graded):
    assert graded["rows"]["cheat"]["01 plus_one_tests"] == "0"
    assert any("writes its outputs by hand" in p for p in _problems(graded, "cheat"))


def test_hangs_are_cut_reported_with_the_cell_and_the_class_goes_on(graded):
    for student in ("sleeper", "deaf"):
        row = graded["rows"][student]
        assert row["01 plus_one_tests"] == "0", student
        lines = [p for p in _problems(graded, student) if p.startswith("timed out in cell plus_one after ")]
        assert lines, (student, _problems(graded, student))
        assert float(row["seconds"]) < 60, (student, row["seconds"])
    assert graded["rows"]["honest"]["auto"] == "4"  # graded as well, whatever the order


def test_odd_student_names_are_graded(graded):
    for name in ("Smith, J [2]", "Ann *?"):
        assert graded["rows"][name]["auto"] == "4", graded["rows"][name]
        sid = runner.safe_id(name)
        assert sid != name and (graded["root"] / "autograded" / sid / A / f"{A}.ipynb").is_file()
        assert json.loads(results.verdict_path(graded["root"], sid, A).read_text())["student"] == name


def test_symbolic_links_are_refused_and_never_followed(graded):
    assert "linked" not in graded["rows"] and graded["rows"]["sourcelink"]["score"] == "0"
    page = (graded["root"] / "feedback" / "sourcelink" / A / f"{A}.html").read_text()
    assert "not graded" in page and "return x + 1" not in page
    assert any("symbolic link" in p for p in _problems(graded, "linked"))
    assert any("symbolic link" in p for p in _problems(graded, "sourcelink"))
    assert _snapshot(graded["victim"]) == graded["guarded"]["victim"]


def test_nothing_outside_the_course_changes(graded):
    root, guarded = graded["root"], graded["guarded"]
    assert _snapshot(root / "source", root / "release") == guarded["course"]
    assert (root / "nbgrader_config.py").read_bytes() == guarded["config"]
    after = _snapshot(ROOT)
    changed = sorted(k for k in set(after) | set(guarded["repo"]) if after.get(k) != guarded["repo"].get(k))
    assert not changed, f"grading changed the repository: {changed[:5]}"


def test_gradebook_has_auto_scores_for_formgrader(graded):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded['root'] / 'gradebook.db'}", course.COURSE_ID) as gb:
        nb = gb.find_submission_notebook(A, A, "wrong")
        scores = {g.cell.name: (g.auto_score, g.needs_manual_grade) for g in nb.grades}
    assert scores["plus_one_tests"] == (0.0, False) and scores["plain_tests"] == (1.0, False)
    assert scores["q_why"] == (None, True)


def test_feedback_shows_the_failed_check_first(graded):
    import html as html_lib
    import re

    page = (graded["root"] / "feedback" / "wrong" / A / f"{A}.html").read_text()
    text = re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", page)))
    assert "Grading summary" in text and "x - 1, not x + 1" in text
    assert text.index("x - 1, not x + 1") < text.index("run_dir = 'runs'")  # the summary comes before the notebook
    assert "m2s-grading-" not in text, "the grader's scratch path leaked into the feedback"
    assert "Score: to be graded / 1" in text  # the hand-graded answer, before the teacher graded it
    assert "BEGIN HIDDEN TESTS" not in page and "double(5) == 10" not in page


def test_feedback_renders_maths_offline(graded):
    folder = graded["root"] / "feedback" / "wrong" / A
    page = (folder / f"{A}.html").read_text()
    assert "cdnjs" not in page and "x-mathjax-config" not in page  # nbgrader's CDN MathJax 2 loader is gone
    assert page.count('<script src="mathjax/tex-svg.js"></script>') == 1
    assert (folder / "mathjax" / "tex-svg.js").stat().st_size > 1_000_000  # the local MathJax 3 beside the page


def test_rerun_grades_only_what_changed_and_export(graded, tmp_path):
    root, subs = graded["root"], graded["subs"]
    put(subs, "wrong", answer(root, RIGHT, DOUBLE))  # resubmitted, now right
    result = course.grade(root, subs, timeout=5, submission_timeout=25, settings=settings())
    graded_now = [r["student"] for r in result.rows if not r.get("_skipped")]
    assert set(graded_now) - {"sourcelink"} == {"wrong"}, graded_now  # an ungradable one is reported again
    _, rows = results.read_csv(root / "grades.csv")
    by = {r["student"]: r for r in rows}
    assert by["wrong"]["auto"] == "4" and by["honest"]["auto"] == "4" and len(by) == len(graded["rows"])
    out = tmp_path / "canvas.csv"
    results.export_grades(root / "grades.csv", "canvas", out)
    with open(out, newline="") as handle:
        canvas = list(csv.DictReader(handle))
    assert list(canvas[0])[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert {r["SIS Login ID"]: r[f"{A} (5)"] for r in canvas}["wrong"] == "4"
    results.export_grades(root / "grades.csv", "moodle", tmp_path / "moodle.csv")
    assert (tmp_path / "moodle.csv").read_text().splitlines()[0] == f"Username,{A}"


def test_an_interrupted_grading_keeps_every_student_graded_so_far(tmp_path):
    root = make_course(tmp_path / "course")
    subs = tmp_path / "subs"
    for student in ("a1", "a2", "a3", "a4"):
        put(subs, student, answer(root, RIGHT, DOUBLE))
    code = (f"import importlib.util\nspec = importlib.util.spec_from_file_location('tr', {str(Path(__file__))!r})\n"
            "tr = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(tr)\n"
            f"tr.course.grade({str(root)!r}, {str(subs)!r}, timeout=20, submission_timeout=60, settings=tr.settings())")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    grades = root / "grades.csv"
    deadline = time.time() + 240
    while time.time() < deadline and (not grades.is_file() or len(grades.read_text().splitlines()) < 2):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    _, rows = results.read_csv(grades)
    assert 1 <= len(rows) <= 4 and all(r["auto"] == "4" for r in rows), rows
    done = {r["student"] for r in rows}
    result = course.grade(root, subs, timeout=20, submission_timeout=60, settings=settings())
    assert {r["student"] for r in result.rows if not r.get("_skipped")} == {"a1", "a2", "a3", "a4"} - done
    _, rows = results.read_csv(grades)
    assert len(rows) == 4


def test_release_keeps_a_teachers_nbgrader_config(tmp_path):
    path = tmp_path / "nbgrader_config.py"
    path.write_text("c = get_config()\nc.Exchange.root = '/srv/exchange'\n")
    course._write_config(tmp_path, log=lambda _: None)
    text = path.read_text()
    assert text.startswith("c = get_config()\nc.Exchange.root = '/srv/exchange'\n")
    assert f"c.CourseDirectory.course_id = {course.COURSE_ID!r}" in text
    course._write_config(tmp_path, log=lambda _: None)
    assert path.read_text() == text, "appended twice"
    path.write_text("c = get_config()\nc.CourseDirectory.course_id = 'other'\n")
    with pytest.raises(FileExistsError, match="course_id 'other'"):
        course._write_config(tmp_path, log=lambda _: None)
    assert path.read_text() == "c = get_config()\nc.CourseDirectory.course_id = 'other'\n"


def test_unsandboxed_grading_says_so(tmp_path):
    root = make_course(tmp_path / "course")
    subs = tmp_path / "subs"
    put(subs, "honest", answer(root, RIGHT, DOUBLE))
    result = course.grade(root, subs, timeout=20, submission_timeout=60, sandbox=False, settings=settings())
    assert result.unsandboxed and result.rows[0]["auto"] == 4
    assert any(p == sandbox.UNSANDBOXED_NOTE for _, _, p in result.problems)
    assert "ran unsandboxed" in course.grade_summary(result)


def test_student_package_is_clean_and_a_released_notebook_runs_with_it_alone(tmp_path):
    """Release 01 (the wheel included), scan the wheel, then run the student notebook with only the wheel's
    m2s_lib importable (installed with --target and put first on PYTHONPATH: the repository is not reachable)."""
    from m2s_lib.cli import main
    from m2s_lib.teaching import nbcheck
    from m2s_lib.teaching.grading import package

    out = tmp_path / "course"
    start = time.perf_counter()
    assert main(["course", "release", "--out", str(out), "--assignments", "01", "--overrides",
                 str(ROOT / "tests" / "notebook_overrides.yaml")]) == 0  # fmt: skip
    released_at = time.perf_counter() - start
    wheels = sorted((out / "student").glob("m2s_lib-*.whl"))
    assert len(wheels) == 1 and (out / "release" / "01_subtraction_unit" / wheels[0].name).is_file()
    masters = [nbcheck.load_notebook(p) for p in course.assignment_notebooks()]
    assert package.leaks_in_wheel(wheels[0], masters) == []
    import zipfile

    names = zipfile.ZipFile(wheels[0]).namelist()
    assert not any("teaching/grading/" in n or n.endswith(".ipynb") for n in names)
    assert any(n.startswith("m2s_lib/teaching/exercises/") for n in names)
    spoiled = tmp_path / "spoiled.whl"  # the scan can fail: a master and a hidden case smuggled in
    with zipfile.ZipFile(wheels[0]) as src, zipfile.ZipFile(spoiled, "w") as dst:
        for n in names:
            dst.writestr(n, src.read(n))
        dst.writestr("m2s_lib/notebooks/01_subtraction_unit.ipynb", "{}")
        dst.writestr("m2s_lib/cases.py", f"NAMES = {sorted(package.hidden_case_names())[:1]!r}\n")
    found = package.leaks_in_wheel(spoiled, masters)
    assert any("a notebook" in f for f in found) and any("secret line" in f for f in found), found

    student = nbcheck.load_notebook(out / "release" / "01_subtraction_unit" / "01_subtraction_unit.ipynb")
    text = json.dumps(student, ensure_ascii=False)
    assert "git clone" not in text and "colab-badge" not in text, "the released notebook points at the repository"
    assert package.LOCK_MARK in text
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheels[0])], check=True)  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    probe = nbformat.v4.new_code_cell("import m2s_lib, importlib.util\nprint('PACKAGE', m2s_lib.__file__)\n"
                                      "print('GRADING', importlib.util.find_spec('m2s_lib.teaching.grading'))")
    student["cells"].append(json.loads(json.dumps(probe)))
    (work / "nb.ipynb").write_text(json.dumps(student))
    code = ("import sys, nbformat; sys.modules['rfc3987_syntax'] = None\nfrom nbclient import NotebookClient\n"
            "nb = nbformat.read('nb.ipynb', 4)\nNotebookClient(nb, timeout=300, allow_errors=True, kernel_name='python3')"
            ".execute()\nnbformat.write(nb, 'out.ipynb')")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True, timeout=600)
    ran = time.perf_counter() - start
    print(f"\nrelease of 01 with the package: {released_at:.1f} s; 01 run with the wheel alone: {ran:.1f} s")
    executed = nbcheck.load_notebook(work / "out.ipynb")
    outputs = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))  # str or list
    assert f"PACKAGE {target}" in outputs and "GRADING None" in outputs, outputs[-500:]
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert all(e["ename"] == "NotImplementedError" for e in errors), [(e["ename"], e["evalue"]) for e in errors]
