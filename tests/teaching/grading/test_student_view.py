"""The student's view of the released notebooks (issue 26): run as a student runs them, not as grading does.

One course is released for the module (01–07, the small CI values of ``tests/notebook_overrides.yaml`` on top of
the classroom presets, no student package). Each released notebook is then executed once, in student mode (no
``M2S_GRADING_DIR``), with every stub untouched and its ``runs/`` paths in a temporary folder; two cells are
appended at its end: one exercise's solution cell written with a typical mistake, and that exercise's test cell
again. One kernel per notebook checks both:

* every exercise's test cell prints exactly its one "not done yet" line, no output holds an error (a traceback of
  more than 5 lines is named in the failure), and the last cell ran: the notebook runs to the end;
* the appended test cell fails with an output that begins with the check's message (``Exercise N, check '…'
  failed: …``), in at most 5 lines;
* no output of any cell holds a ``FutureWarning`` or ``DeprecationWarning``.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from m2s_lib.teaching import course, course_cells, nbcheck
from m2s_lib.teaching.exercises import registry
from m2s_lib.teaching.grading.runner import scratch_values

pytestmark = [pytest.mark.filterwarnings("ignore:Object of type"), pytest.mark.filterwarnings("ignore:Cell is missing an id")]

ROOT = Path(__file__).resolve().parents[3]
OVERRIDES = ROOT / "tests" / "notebook_overrides.yaml"
KEYS = ("01", "02", "03", "04", "05", "06", "07")
NAMES = {p.stem[:2]: p.stem for p in course.assignment_notebooks()}
# One typical mistake per notebook: (solution cell, text of the master's solution, what the student wrote).
WRONG = {
    "01": ("su_param_count", " + channels + 2 * channels", ""),
    "02": ("full_one_dense", "padding=k // 2", "padding=0"),
    "03": ("pyramid_order", "coarse = mmsm.top_input(coarse)", "pass"),
    "04": ("encode", "maxpool(feats[0]) if maxpool is not None else F.max_pool2d(feats[0], 3, 2, 1)", "feats[0]"),
    "05": ("lossnet_term", "** 2", ".abs()"),
    "06": ("triangle_factor", "x = (period + 1) / (periods + 1)", "x = period / periods"),
    "07": ("mae", "normalise_map(pred8) - gt", "pred8 / 255 - gt"),
}
MAX_TRACEBACK = 5
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REGION = re.compile(r" *### BEGIN SOLUTION\n(.*?) *### END SOLUTION\n?", re.S)


def _gid(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student-view")
    overrides = nbcheck.load_overrides(OVERRIDES)
    start = time.perf_counter()
    course.release(out, list(KEYS), parameters={k: v for k, v in overrides.items()
                                                if k[:2] in KEYS}, log=lambda line: None, package=False)  # fmt: skip
    print(f"\nrelease of {len(KEYS)} assignments: {time.perf_counter() - start:.1f} s")
    return out


def wrong_cell(key: str) -> str:
    """The master's solution cell of ``WRONG[key]`` as a student writes it, with the mistake."""
    cell_id, old, new = WRONG[key]
    master = nbcheck.load_notebook(ROOT / "notebooks" / f"{NAMES[key]}.ipynb")
    source = nbcheck.cell_source(next(c for c in master["cells"] if _gid(c) == cell_id))
    source = _REGION.sub(lambda m: m.group(1), source)
    assert old in source, f"the mistake of {cell_id} no longer matches the master: update WRONG"
    return source.replace(old, new, 1)


def run_as_student(released: Path, key: str, scratch: Path) -> tuple[dict, str]:
    """The released notebook of ``key`` executed in student mode, with the wrong answer and its test appended;
    returns the executed notebook and the grade id of the appended test."""
    import nbformat
    from nbclient import NotebookClient

    assignment = NAMES[key]
    folder = released / "release" / assignment
    nb = nbcheck.load_notebook(folder / f"{assignment}.ipynb")
    values = json.loads((released / "course.json").read_text())["assignments"][assignment]["parameters"]
    present = set(nbcheck.parameter_names(nb))
    course_cells.set_parameters(nb, scratch_values({k: v for k, v in values.items() if k in present}, scratch))
    exercise = next(e for e in registry.exercises(key) if WRONG[key][0] in e.solution_ids)
    test = next(c for c in nb["cells"] if _gid(c) == exercise.grade_id)
    nb["cells"] += [nbformat.v4.new_code_cell(wrong_cell(key)), nbformat.v4.new_code_cell(nbcheck.cell_source(test))]
    node = nbformat.reads(json.dumps(nb), as_version=4)
    env = {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    saved = {k: os.environ.get(k) for k in (*env, "M2S_GRADING_DIR")}
    os.environ.update(env)
    os.environ.pop("M2S_GRADING_DIR", None)  # student mode
    try:
        NotebookClient(node, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(folder)}}).execute()  # fmt: skip
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return json.loads(json.dumps(node)), exercise.grade_id


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return _ANSI.sub("", "\n".join(output.get("traceback", [])))
    data = output.get("data", {})
    return str(data.get("text/plain", "")) + str(data.get("text/html", ""))


@pytest.mark.parametrize("key", KEYS)
def test_released_notebook_as_a_student_runs_it(released, key, tmp_path):
    start = time.perf_counter()
    executed, wrong_id = run_as_student(released, key, tmp_path)
    seconds = time.perf_counter() - start
    print(f"\n{NAMES[key]}: student-mode run in {seconds:.1f} s")
    cells = [c for c in executed["cells"] if c["cell_type"] == "code"]
    main, appended = cells[:-2], cells[-2:]
    errors = [(i, o) for i, c in enumerate(main) for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, "\n".join(f"code cell {i}: {o['ename']}: {str(o['evalue'])[:200]} ({len(o['traceback'])} "
                                 f"traceback lines)" for i, o in errors)  # fmt: skip
    assert all(c.get("execution_count") for c in main), "the notebook did not run to the end"
    by_id = {_gid(c): c for c in main if _gid(c)}
    for exercise in registry.exercises(key):
        outputs = by_id[exercise.grade_id]["outputs"]
        text = "".join(_text(o) for o in outputs)
        assert text.strip() == f"{exercise.title} is not done yet: write it in the cell above, then run this cell.", (
            exercise.grade_id, text)  # fmt: skip
    # the wrong answer: the failing test cell's output begins with the check's message, in a few lines
    exercise = registry.exercise(wrong_id)
    (error,) = [o for o in appended[1]["outputs"] if o["output_type"] == "error"]
    first = _ANSI.sub("", error["traceback"][0])
    assert first.startswith(f"{exercise.number}, check '"), error["traceback"]
    assert " failed: " in first and len(error["traceback"]) <= MAX_TRACEBACK, error["traceback"]
    # no deprecation noise anywhere
    noisy = [(i, _text(o)[:300]) for i, c in enumerate(cells) for o in c["outputs"]
             if re.search(r"\b(FutureWarning|DeprecationWarning)\b", _text(o))]  # fmt: skip
    assert not noisy, noisy
