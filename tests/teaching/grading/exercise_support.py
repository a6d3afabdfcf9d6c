"""Helpers for the exercise grading tests: build a submission from a master, grade it without the sandbox.

``submission`` takes a master notebook, keeps the cells a grading needs (the parameters, the imports, the solution
and test cells), puts the given code into the solution regions (the untouched ones keep the master's solution, or
become nbgrader's stub with ``stubs=True``), and can add cells. ``grade`` runs it in a real kernel (nbclient,
``allow_errors=True``, ``M2S_GRADING_DIR`` set, the monitor installed first) and judges it in this process, which is
what the sandboxed runner does inside bwrap. ``record`` is the cheap path for honest answers: ``check`` in grading
mode in this process.
"""
from __future__ import annotations

import copy
import json
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NOTEBOOKS = ROOT / "notebooks"
ASSIGNMENTS = {"01": "01_subtraction_unit", "02": "02_multiscale_subtraction_unit", "03": "03_mmsm"}
PARAMETERS = {"01": {"encoder_name": "resnet18d", "encoder_weights": None, "image_size": 64},
              "02": {"image_size": 64}, "03": {"image_size": 64}}  # fmt: skip
_REGION = re.compile(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION\n?", re.S)
_LIGHT = ("import torch", "from m2s_lib.subtraction", "from m2s_lib.mmsm", "from m2s_lib.profiling import count")
PREAMBLE = "from m2s_lib.teaching.exercises import monitor as _m2s_monitor\n_m2s_monitor.install()"


def master(key: str) -> dict:
    return json.loads((NOTEBOOKS / f"{ASSIGNMENTS[key]}.ipynb").read_text(encoding="utf-8"))


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def code_cell(source: str, **nbgrader) -> dict:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    if nbgrader:
        cell["metadata"]["nbgrader"] = nbgrader
    return cell


def fill(source: str, code: str | Sequence[str | None]) -> str:
    """``source`` with its solution region replaced by ``code`` (indented like the region's markers); a list
    fills the regions in order (``None``: keep that one)."""
    codes = [code] if isinstance(code, str) else list(code)
    matches = list(_REGION.finditer(source))
    assert len(matches) >= len(codes), "fewer solution regions than codes"
    for match, text in reversed(list(zip(matches, codes))):
        if text is None:
            continue
        body = textwrap.indent(textwrap.dedent(text).strip("\n") + "\n", match.group(1))
        source = source[: match.start()] + body + source[match.end():]
    return source


def submission(key: str, answers: Mapping[str, str] | None = None, stubs: bool = False,
               cells: Sequence[tuple[str, str]] = (), full: bool = False, paste_model: bool = False) -> dict:  # fmt: skip
    """A submission of assignment ``key``: ``answers`` maps solution grade_ids to the code of their region;
    ``cells`` adds ``(after grade_id or "imports", source)`` cells; ``full`` keeps every cell of the master."""
    nb = copy.deepcopy(master(key))
    answers = dict(answers or {})
    out = []
    code_seen = 0
    for cell in nb["cells"]:
        meta = _meta(cell)
        keep = full
        if cell["cell_type"] == "code":
            code_seen += 1
            keep = keep or code_seen <= 3 or meta.get("solution") or meta.get("grade")
        if cell["cell_type"] == "markdown" and meta.get("grade"):
            keep = True
            if not paste_model:  # a student's own words, not the model answer
                cell["source"] = f"In my own words: the answer to {meta.get('grade_id')} depends on the table above."
        if not keep:
            continue
        if code_seen == 3 and cell["cell_type"] == "code" and not full:  # the imports the exercises need, only
            cell["source"] = "\n".join(line for line in _src(cell).splitlines() if line.startswith(_LIGHT))
        if code_seen == 2 and cell["cell_type"] == "code":  # parameters: the small values
            lines = [line for line in _src(cell).splitlines()]
            for name, value in PARAMETERS[key].items():
                lines = [f"{name} = {value!r}" if line.startswith(f"{name} =") else line for line in lines]
            cell["source"] = "\n".join(lines)
        gid = meta.get("grade_id")
        if cell["cell_type"] == "code" and meta.get("solution"):
            if gid in answers:
                cell["source"] = fill(_src(cell), answers[gid])
            elif stubs:
                cell["source"] = fill(_src(cell), ["raise NotImplementedError()"] * _src(cell).count("BEGIN SOLUTION"))
        out.append(cell)
        anchor = gid if gid else ("imports" if code_seen == 3 and cell["cell_type"] == "code" else None)
        out += [code_cell(source) for after, source in cells if after == anchor]
    nb["cells"] = out
    return nb


def grade(nb: dict, key: str, folder: Path, timeout: int = 120):
    """Execute ``nb`` in a kernel with ``M2S_GRADING_DIR`` (inputs prepared first), judge it here; returns
    ``(verdict, executed notebook)``."""
    import nbformat
    from nbclient import NotebookClient

    from m2s_lib.teaching.grading import judge

    grading = folder / "grading"
    judge.prepare_inputs(ASSIGNMENTS[key], grading)
    run = copy.deepcopy(nb)
    run["cells"].insert(0, code_cell(PREAMBLE))
    for index, cell in enumerate(run["cells"]):
        cell.setdefault("id", f"cell-{index}")
    node = nbformat.reads(json.dumps(run), as_version=4)
    env = {"M2S_GRADING_DIR": str(grading), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = NotebookClient(node, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(folder)}})  # fmt: skip
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    executed = json.loads(json.dumps(node))
    return judge.judge_assignment(ASSIGNMENTS[key], grading, nb), executed


def record(key: str, answers: Mapping[str, tuple], folder: Path, seed: int = 0):
    """Grading mode in this process: ``answers`` maps test grade_ids to the objects passed to ``check``; the
    notebook judged is the master (no scan findings), so only the outputs count. Returns the verdict."""
    from m2s_lib.teaching.exercises import student
    from m2s_lib.teaching.grading import judge

    grading = folder / "grading"
    judge.prepare_inputs(ASSIGNMENTS[key], grading, seed)
    saved = os.environ.get("M2S_GRADING_DIR")
    os.environ["M2S_GRADING_DIR"] = str(grading)
    try:
        for grade_id, objects in answers.items():
            student.check(grade_id, *objects)
    finally:
        if saved is None:
            os.environ.pop("M2S_GRADING_DIR", None)
        else:
            os.environ["M2S_GRADING_DIR"] = saved
    return judge.judge_assignment(ASSIGNMENTS[key], grading, master(key), seed)


def namespace(key: str, answers: Mapping[str, str] | None = None) -> dict:
    """Exec the master's solution cells (with ``answers`` in their regions) in a fresh namespace with the notebook's
    imports; returns it (the answers as objects, for :func:`record`)."""
    import torch  # noqa: F401 — the notebooks' own imports, without their heavy side effects
    import torch.nn as nn
    import torch.nn.functional as F

    from m2s_lib.mmsm import MMSM, ms_key, unit_name

    ns = {"torch": sys.modules["torch"], "nn": nn, "F": F, "MMSM": MMSM, "unit_name": unit_name, "ms_key": ms_key}
    answers = dict(answers or {})
    for cell in master(key)["cells"]:
        meta = _meta(cell)
        if cell["cell_type"] == "code" and meta.get("solution"):
            source = _src(cell)
            if meta.get("grade_id") in answers:
                source = fill(source, answers[meta["grade_id"]])
            exec(compile(source, f"<{meta.get('grade_id')}>", "exec"), ns)
    return ns


# the objects each test cell passes to check(), by name in the notebook's namespace
CHECK_ARGS = {
    "01": {"su_forward_tests": ("ScratchSU",), "su_param_count_tests": ("su_parameter_count",),
           "fusion_parts_tests": ("fusion_parts",)},
    "02": {"full_one_dense_tests": ("full_one_dense",), "full_one_fast_tests": ("box_sum", "full_one_fast"),
           "msu_forward_tests": ("ScratchMSU",)},
    "03": {"pyramid_order_tests": ("pyramid_order",), "ce_sums_tests": ("ce_by_hand",)},
}  # fmt: skip


def answers_of(key: str, ns: Mapping) -> dict[str, tuple]:
    return {gid: tuple(ns[name] for name in names) for gid, names in CHECK_ARGS[key].items()}


def points(verdict) -> dict[str, float]:
    return {e.grade_id: e.points for e in verdict.exercises}


def full(key: str) -> dict[str, float]:
    from m2s_lib.teaching.exercises import registry

    return {e.grade_id: e.max_points for e in registry.exercises(ASSIGNMENTS[key])}
