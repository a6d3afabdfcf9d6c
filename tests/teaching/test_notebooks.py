"""The notebooks, executed headlessly: every ``notebooks/NN_*.ipynb`` is found automatically and run by papermill.

How a notebook is run here (the same way ``make reproduce`` runs it, only smaller):

* kernel ``python3``; jupyter_client starts it with *this* interpreter (``sys.executable``), so the kernel sees
  the same virtual environment as pytest (``test_kernel_uses_this_interpreter`` checks it);
* working directory ``notebooks/`` (what Jupyter gives a user who opens the notebook); notebooks resolve their
  paths against the repository root (``m2s_lib.teaching.notebook_utils.resolve_path``), never against the cwd;
* environment: ``MPLBACKEND=Agg``, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` = the caller's value or 2, the
  repository on ``PYTHONPATH``;
* parameters: the notebook's mapping in ``tests/notebook_overrides.yaml`` (small CI values; every notebook needs an
  entry, ``{}`` included), plus ``run_dir=runs/tests`` when the notebook has a ``run_dir`` parameter and the
  overrides do not set it, so that figure and table saving is exercised;
* a per-cell timeout of ``CELL_TIMEOUT`` seconds; the executed copy goes to ``runs/tests/<notebook>.ipynb`` (kept
  when a cell fails: open it to see the traceback in place).

Besides running them, the committed notebooks must be clean (no outputs, first code cell tagged ``parameters``
holding literal assignments only) and every overridden name must be one of the notebook's parameters.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from m2s_lib.teaching import nbcheck
from m2s_lib.teaching.reproduce import kernel_transport

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
OVERRIDES_FILE = ROOT / "tests" / "notebook_overrides.yaml"
OUTPUT_DIR = ROOT / "runs" / "tests"
KERNEL_NAME = "python3"
CELL_TIMEOUT = 600  # seconds per cell; the whole notebook should take well under a minute with the overrides

NOTEBOOKS = nbcheck.discover_notebooks(NOTEBOOK_DIR)
IDS = [p.stem for p in NOTEBOOKS]


def _overrides() -> dict:
    return nbcheck.load_overrides(OVERRIDES_FILE)


def _kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment inherited by the kernel that papermill starts."""
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    monkeypatch.setenv("MKL_NUM_THREADS", os.environ.get("MKL_NUM_THREADS", threads))
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences ipykernel's debugger warning
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, path.split(os.pathsep))]))


def _papermill():
    try:
        import papermill
    except ImportError as err:  # a hard failure, not a skip: `make test` must execute the notebooks
        pytest.fail(f"papermill is missing ({err}): install the notebook extra, `pip install -e '.[dev,notebooks]'`")
    return papermill


# ---------------------------------------------------------------------------------------------------------------
# Static checks (fast)
# ---------------------------------------------------------------------------------------------------------------
def test_notebooks_are_discovered():
    assert NOTEBOOKS, f"no notebooks matching {nbcheck.NOTEBOOK_GLOB} in {NOTEBOOK_DIR}"


def test_overrides_name_existing_notebooks():
    problems = nbcheck.overrides_problems(_overrides(), NOTEBOOK_DIR)
    problems = [p for p in problems if "which is not a notebook" in p or "must be a mapping" in p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_clean(notebook: Path):
    problems = [p for p in nbcheck.notebook_problems(notebook) if "code lines (at most" not in p]  # next test's
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_code_cells_are_short(notebook: Path):
    """No code cell over 30 lines (parameters, install and solution cells excepted): longer work is a library
    function that the cell calls."""
    long = nbcheck.long_cells(nbcheck.load_notebook(notebook))
    assert not long, f"{notebook.name}: cells (number, code lines) over {nbcheck.MAX_CELL_LINES} lines: {long}"


def test_long_cell_rule_exempts_parameters_install_and_solutions():
    code = "\n".join(f"x{i} = {i}" for i in range(31))
    cell = {"cell_type": "code", "metadata": {}, "source": code, "outputs": [], "execution_count": None}
    exempt = [{**cell, "metadata": {"tags": ["parameters"]}}, {**cell, "metadata": {"tags": ["install"]}},
              {**cell, "metadata": {"nbgrader": {"solution": True}}},
              {**cell, "source": "### BEGIN SOLUTION\n" + code + "\n### END SOLUTION"},
              {**cell, "source": "\n".join(code.splitlines()[:30])}, {**cell, "cell_type": "markdown"}]
    assert nbcheck.long_cells({"cells": exempt}) == []
    assert nbcheck.long_cells({"cells": [*exempt, cell]}) == [(len(exempt) + 1, 31)]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_overrides_are_parameters(notebook: Path):
    overrides = _overrides()
    assert notebook.name in overrides, (
        f"{notebook.name} has no entry in {OVERRIDES_FILE.relative_to(ROOT)}: add its small CI values "
        f"(or `{notebook.name}: {{}}` if it is already fast at full size)"
    )
    params = nbcheck.parameter_names(notebook)
    unknown = sorted(set(overrides[notebook.name]) - set(params))
    assert not unknown, f"{notebook.name}: overrides {unknown} are not parameters (parameters: {sorted(params)})"
    seen_by_papermill = set(_papermill().inspect_notebook(str(notebook)))
    assert seen_by_papermill == set(params), (
        f"{notebook.name}: papermill reads the parameters {sorted(seen_by_papermill)}, the cell assigns "
        f"{sorted(params)}; a comment papermill cannot parse is the usual cause"
    )


def test_nbcheck_flags_outputs_and_missing_tag(tmp_path: Path):
    """The checker itself: a notebook with outputs and an untagged first code cell gives both problems."""
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# t"},
            {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "x = 1",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "1"}]},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path = tmp_path / "99_bad.ipynb"
    path.write_text(json.dumps(nb))
    problems = nbcheck.notebook_problems(path)
    assert any("not tagged 'parameters'" in p for p in problems), problems
    assert any("has outputs" in p for p in problems), problems
    nb["cells"][1].update(metadata={"tags": ["parameters"]}, outputs=[], execution_count=None, source="x = 2 * 3")
    path.write_text(json.dumps(nb))
    assert any("not a literal" in p for p in nbcheck.notebook_problems(path))
    assert nbcheck.main([str(path)]) == 1


# ---------------------------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------------------------
def test_kernel_uses_this_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ``python3`` kernel papermill starts must run in the same environment as the tests."""
    papermill = _papermill()
    import nbformat

    _kernel_env(monkeypatch)
    probe = tmp_path / "probe.txt"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import sys; open({str(probe)!r}, 'w').write(sys.prefix)")]
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "language": "python", "display_name": "Python 3"}
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, src)
    papermill.execute_notebook(
        str(src), str(tmp_path / "probe_out.ipynb"), kernel_name=KERNEL_NAME, language="python",
        progress_bar=False, execution_timeout=120, cwd=str(tmp_path),
    )  # fmt: skip
    assert Path(probe.read_text()).resolve() == Path(sys.prefix).resolve(), (
        f"kernel {KERNEL_NAME!r} runs in {probe.read_text()}, not in this environment ({sys.prefix}); "
        "run pytest with the virtual environment's python (make test does)"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_executes(notebook: Path, monkeypatch: pytest.MonkeyPatch, record_property, tmp_path: Path):
    papermill = _papermill()
    overrides = _overrides()
    if notebook.name not in overrides:  # never run a notebook at full size by accident (it can take hours)
        pytest.fail(f"{notebook.name} has no entry in {OVERRIDES_FILE.name}; not executing it at full size", pytrace=False)
    _kernel_env(monkeypatch)
    parameters = dict(overrides[notebook.name])
    if "run_dir" in nbcheck.parameter_names(notebook):
        parameters.setdefault("run_dir", str(OUTPUT_DIR))
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    executed = OUTPUT_DIR / notebook.name
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook), str(executed), parameters=parameters, kernel_name=KERNEL_NAME, language="python",
            cwd=str(NOTEBOOK_DIR), execution_timeout=CELL_TIMEOUT, progress_bar=False, log_output=False,
            config=kernel_transport(tmp_path),  # local sockets, as `make reproduce` (no TCP-transport warning)
        )  # fmt: skip
    except papermill.PapermillExecutionError as err:
        pytest.fail(
            f"{notebook.name} failed in cell {err.exec_count} with {err.ename}: {err.evalue}\n"
            f"executed copy (traceback in place): {executed}\n" + "".join(err.traceback[-8:]),
            pytrace=False,
        )
    elapsed = time.perf_counter() - start
    record_property("seconds", round(elapsed, 1))
    print(f"{notebook.name}: {elapsed:.1f} s with {parameters}")
