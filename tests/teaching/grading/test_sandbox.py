"""The grading sandbox (m2s_lib.teaching.grading.sandbox): tiny notebooks made here, run the way a submission runs.

One notebook holds every attack, one cell each, so that the sandbox starts once (about 3 s on 2 cores); the
time-limit notebooks run separately with limits of a few seconds.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

from m2s_lib.teaching.grading import sandbox

ROOT = Path(__file__).resolve().parents[3]
needs_bwrap = pytest.mark.skipif(sandbox.bwrap_path() is None, reason="bubblewrap is not installed or cannot make a "
                                 "sandbox here (apt-get install bubblewrap; .ci/run installs it)")  # fmt: skip


def _notebook(path: Path, cells: dict[str, str]) -> Path:
    nb = nbformat.v4.new_notebook()
    for grade_id, source in cells.items():
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"grade_id": grade_id}
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _outputs(path: Path) -> dict[str, str]:
    nb = nbformat.read(str(path), as_version=4)
    result = {}
    for cell in nb.cells:
        texts = [o.get("text", "") if o.get("output_type") == "stream" else f"{o.get('ename')}: {o.get('evalue')}"
                 for o in cell.get("outputs", []) if o.get("output_type") in ("stream", "error")]  # fmt: skip
        result[cell.metadata["nbgrader"]["grade_id"]] = "".join(texts)
    return result


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    course = tmp_path / "course"
    (course / "source" / "01").mkdir(parents=True)
    (course / "source" / "01" / "01.ipynb").write_text("the master, with its solutions")
    (course / "gradebook.db").write_text("grades")
    scratch_root = tmp_path / "scratch"
    other = scratch_root / "other-student"
    other.mkdir(parents=True)
    (other / "answer.txt").write_text("another student's run")
    mine = scratch_root / "me"
    mine.mkdir()
    return {"course": course, "scratch": mine, "other": other, "outside": tmp_path / "outside.txt"}


ATTACKS = {
    "write_scratch": "open('mine.txt', 'w').write('ok'); print('wrote mine')",
    "write_outside": "open({outside!r}, 'w').write('x'); print('wrote outside')",
    "write_repo": "open({repo!r} + '/runs_hacked.txt', 'w').write('x'); print('wrote repo')",
    "write_course": "open({course!r} + '/gradebook.db', 'a').write('x'); print('wrote gradebook')",
    "read_source": "print(open({course!r} + '/source/01/01.ipynb').read())",
    "read_masters": "print(open({repo!r} + '/notebooks/01_subtraction_unit.ipynb').read()[:20])",
    "read_other": "print(open({other!r} + '/answer.txt').read())",
    "network": "import socket; socket.create_connection(('93.184.216.34', 80), timeout=3); print('connected')",
    "library": "import m2s_lib, m2s_lib.teaching.exercises; print('library ok')",
    "spawn": ("import subprocess, sys\n"
              "subprocess.Popen([sys.executable, '-c', 'import time, os\\nwhile True:\\n    open(\"beat.txt\", \"w\")"
              ".write(str(time.time()))\\n    time.sleep(0.2)'], start_new_session=True)\n"
              "import time; time.sleep(1); print('spawned')"),
    "memory": "block = bytearray(6 * 2**30); print('allocated')",
}


@needs_bwrap
def test_sandbox_confines_a_submission(places):
    values = {"outside": str(places["outside"]), "repo": str(ROOT), "course": str(places["course"]),
              "other": str(places["other"])}  # fmt: skip
    scratch = places["scratch"]
    nb = _notebook(scratch / "in.ipynb", {k: v.format(**values) for k, v in ATTACKS.items()})
    before = {p: p.read_bytes() for p in places["course"].rglob("*") if p.is_file()}
    start = time.perf_counter()
    result = sandbox.run_notebook(nb, scratch / "out.ipynb", scratch, sandbox.Limits(30, 120, 4 * 2**30),
                                  hide=[ROOT, places["course"]])  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"\nsandboxed run of {len(ATTACKS)} cells: {seconds:.1f} s")
    assert result.sandboxed and not result.timed_out and result.error is None, result
    out = _outputs(scratch / "out.ipynb")
    assert out["write_scratch"] == "wrote mine\n" and (scratch / "mine.txt").read_text() == "ok"
    assert out["library"] == "library ok\n"
    for cell in ("write_outside", "write_repo", "write_course"):
        assert "Read-only file system" in out[cell] or "No such file" in out[cell], (cell, out[cell])
    for cell in ("read_source", "read_masters", "read_other"):
        assert "FileNotFoundError" in out[cell], (cell, out[cell])
    assert "OSError" in out["network"] and "connected" not in out["network"], out["network"]
    assert "MemoryError" in out["memory"], out["memory"]
    assert out["spawn"] == "spawned\n"
    assert not places["outside"].exists() and not (ROOT / "runs_hacked.txt").exists()
    assert {p: p.read_bytes() for p in places["course"].rglob("*") if p.is_file()} == before
    beat = scratch / "beat.txt"
    assert beat.is_file(), "the spawned process never ran"
    last = beat.stat().st_mtime_ns
    time.sleep(1.5)
    assert beat.stat().st_mtime_ns == last, "a process the submission started survived grading"


@needs_bwrap
@pytest.mark.parametrize("kind", ["sleep", "ignores_sigint"])
def test_hanging_cells_are_cut_and_named(tmp_path, kind):
    cells = {"setup": "x = 1", "answer": "import time\ntime.sleep(600)", "after": "print('never')"}
    limits = sandbox.Limits(cell_timeout=3, submission_timeout=60, memory_bytes=None)
    if kind == "ignores_sigint":  # busy, deaf to SIGINT: only the per-submission kill stops it
        cells["answer"] = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
        limits = sandbox.Limits(cell_timeout=600, submission_timeout=6, memory_bytes=None)
    scratch = tmp_path / "scratch" / "s"
    nb = _notebook(scratch / "in.ipynb", cells)
    start = time.perf_counter()
    result = sandbox.run_notebook(nb, scratch / "out.ipynb", scratch, limits)
    seconds = time.perf_counter() - start
    print(f"\n{kind}: cut after {seconds:.1f} s: {result.timeout_message}")
    assert result.timed_out and result.timeout_grade_id == "answer", result
    assert result.timeout_message.startswith("timed out in cell answer after ")
    assert seconds < 60, f"{kind}: the limits were not enforced ({seconds:.0f} s)"
    if result.executed:
        assert "never" not in _outputs(result.executed).get("after", "")


def test_without_bubblewrap_it_still_runs_and_says_so(tmp_path):
    scratch = tmp_path / "scratch" / "s"
    nb = _notebook(scratch / "in.ipynb", {"a": "import os; print(os.getcwd())"})
    result = sandbox.run_notebook(nb, scratch / "out.ipynb", scratch, sandbox.Limits(60, 120, None), sandbox=False)
    assert not result.sandboxed and result.error is None
    assert _outputs(result.executed)["a"].strip() == str(scratch.resolve())
    assert "unsandboxed" in sandbox.UNSANDBOXED_NOTE


def test_hidden_folders_keep_python_importable():
    hidden, keep = sandbox.hidden_and_kept([ROOT, Path("/tmp")])
    assert ROOT.resolve() in hidden
    assert all(ROOT.resolve() != k for k in keep), "the repository root itself must stay hidden"
    package = (ROOT / "m2s_lib").resolve()
    assert package in keep or not any(package.is_relative_to(h) for h in hidden)
    assert not any(k.name in ("notebooks", "tests") for k in keep)
    assert os.path.isdir(sandbox.sys.prefix)
