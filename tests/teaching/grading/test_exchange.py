"""nbgrader's filesystem exchange, end to end, with two students (docs/teaching.md, "The exchange").

The teacher releases with ``nbgrader release_assignment``; each student (own ``HOME`` and user name) runs
``nbgrader fetch_assignment`` and ``nbgrader submit``; the teacher runs ``nbgrader collect``, ``m2s course grade``
on ``submitted/``, then ``nbgrader generate_feedback`` and ``nbgrader release_feedback``; each student gets the
feedback back with ``nbgrader fetch_feedback``. The course is the tiny one of test_runner.py.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m2s_lib.cli import main

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("tiny_course", HERE / "test_runner.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
A = tiny.A

pytestmark = [pytest.mark.filterwarnings("ignore:Object of type"), pytest.mark.filterwarnings("ignore:Cell is missing an id")]

# nbgrader's command line, without jsonschema's slow optional URI grammar (5 s per command on 2 busy cores)
NBGRADER = "import sys; sys.modules['rfc3987_syntax'] = None; from nbgrader.apps.nbgraderapp import main; sys.exit(main())"


def nbgrader(args: list[str], cwd: Path, home: Path, user: str) -> str:
    env = {**os.environ, "HOME": str(home), "USER": user, "LOGNAME": user, "JUPYTER_CONFIG_DIR": str(home / ".jupyter")}
    proc = subprocess.run([sys.executable, "-c", NBGRADER, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def test_exchange_round_trip_with_two_students(tmp_path):
    start = time.perf_counter()
    root = tiny.make_course(tmp_path / "course", framework=False)
    exchange = tmp_path / "exchange"
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)
    teacher = tmp_path / "teacher-home"
    teacher.mkdir()
    ex = [f"--Exchange.root={exchange}"]
    nbgrader(["release_assignment", A, *ex], root, teacher, "teacher")

    answers = {"ann": tiny.RIGHT, "bob": "def plus_one(x):\n    return x"}
    for student, code in answers.items():
        home = tmp_path / f"home-{student}"
        home.mkdir()
        nbgrader(["fetch_assignment", A, "--course", "m2snet", *ex], home, home, student)
        path = home / A / f"{A}.ipynb"
        assert path.is_file(), f"{student} fetched nothing"
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            cell["source"] = {"plus_one": code, "double": tiny.DOUBLE}.get(gid, cell["source"])
        path.write_text(json.dumps(nb))
        nbgrader(["submit", A, "--course", "m2snet", "--student", student, *ex], home, home, student)

    nbgrader(["collect", A, *ex], root, teacher, "teacher")
    assert sorted(p.name for p in (root / "submitted").iterdir()) == ["ann", "bob"]
    assert main(["course", "grade", "--course", str(root), "--submissions", str(root / "submitted")]) == 0
    grades = {r["student"]: r for r in tiny.results.read_csv(root / "grades.csv")[1]}
    assert grades["ann"]["auto"] == "4" and grades["bob"]["auto"] == "1", grades

    nbgrader(["generate_feedback", A], root, teacher, "teacher")
    nbgrader(["release_feedback", A, *ex], root, teacher, "teacher")
    for student in answers:
        home = tmp_path / f"home-{student}"
        nbgrader(["fetch_feedback", A, "--course", "m2snet", "--student", student, *ex], home, home, student)
        pages = list((home / A / "feedback").rglob(f"{A}.html"))
        assert len(pages) == 1, f"{student}: {pages}"
        text = pages[0].read_text()
        assert "Grading summary" in text
        assert ("3 / 3" in text) == (student == "ann")
    print(f"\nexchange round trip, two students: {time.perf_counter() - start:.1f} s")
