"""``m2s reproduce`` (``make reproduce``): parameter tables, refusals, the kernel transport, and one small run end
to end.

The end-to-end test runs notebooks 06 and 07 only, with the CI values of ``tests/notebook_overrides.yaml`` (minus
07's ``checkpoint_path: null``, so that 07 evaluates the checkpoint 06 has just written, as in a real
reproduction), on the tiny synthetic set the notebook tests use. It checks the run folder, ``REPORT.md`` (the
environment header and the polyp table), ``REPORT.html``, ``runs/latest`` and ``--resume``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from m2s_lib.data.synthetic import ensure_synthetic
from m2s_lib.teaching import nbcheck, reproduce

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = nbcheck.discover_notebooks(ROOT / "notebooks")
OVERRIDES = ROOT / "tests" / "notebook_overrides.yaml"
CI_DATA = ROOT / "runs" / "tests" / "data" / "polyp-n16-s96"  # the set of the notebook tests (same parameters)


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    return subprocess.run([sys.executable, "-m", "m2s_lib.cli", "reproduce", "--no-progress", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("profile", ["tiny", "paper-polyp"])
def test_parameter_tables_name_real_parameters(profile: str):
    """Every name in REPRODUCE_PARAMETERS / PROFILE_PARAMETERS is a parameter of its notebook, for each profile."""
    names = {p.name for p in NOTEBOOKS}
    assert set(reproduce.REPRODUCE_PARAMETERS) <= names, set(reproduce.REPRODUCE_PARAMETERS) - names
    for table in reproduce.PROFILE_PARAMETERS.values():
        assert set(table) <= names, set(table) - names
    context = reproduce.build_context(profile, ROOT / "runs" / "x", CI_DATA,
                                      {"synthetic_n": 16, "synthetic_n_test": 4, "synthetic_size": 96, "synthetic_seed": 0,
                                       "synthetic_difficulty": "teaching"},
                                      "cpu")  # fmt: skip
    for notebook in NOTEBOOKS:
        params = reproduce.notebook_parameters(notebook, profile, context)
        assert params.get("run_dir") == context["run_dir"], notebook.name
    nb06 = next(p for p in NOTEBOOKS if p.name == "06_training.ipynb")
    assert reproduce.notebook_parameters(nb06, profile, context)["profile"] == profile


def test_unknown_parameter_is_refused(tmp_path: Path):
    nb06 = next(p for p in NOTEBOOKS if p.name == "06_training.ipynb")
    context = reproduce.build_context("tiny", tmp_path, CI_DATA, dict.fromkeys(
        reproduce.SYNTHETIC_KEYS, 0), "cpu")  # fmt: skip
    with pytest.raises(reproduce.ParameterError, match=r"'epochz' \(did you mean 'epochs'\?\)"):
        reproduce.notebook_parameters(nb06, "tiny", context, {"epochz": 3})
    with pytest.raises(reproduce.ParameterError, match="NOTEBOOK:NAME=VALUE"):
        reproduce.parse_parameter_options(["06-epochs=3"], NOTEBOOKS)
    assert reproduce.parse_parameter_options(["06:epochs=3", "09:variants=[fpn, m2snet]"], NOTEBOOKS) == {
        "06_training.ipynb": {"epochs": 3}, "09_ablations.ipynb": {"variants": ["fpn", "m2snet"]}}


def test_help_names_the_command():
    res = subprocess.run([sys.executable, "-m", "m2s_lib.cli", "reproduce", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("usage: m2s reproduce"), res.stdout + res.stderr
    assert "--resume RUN_DIR" in res.stdout


def test_kernel_talks_without_the_tcp_warning(tmp_path: Path, capfd):
    """The kernel is reached over local sockets, so ipykernel has nothing to warn about (not a filtered output)."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello from the kernel')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    reproduce.run_notebook(tmp_path / "t.ipynb", tmp_path / "out.ipynb", {}, progress=False)
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs[0]["text"]
    captured = capfd.readouterr()
    assert printed == "hello from the kernel\n"
    assert "without encryption" not in captured.out + captured.err, captured.err


def test_cli_refuses_bad_settings_before_any_work(tmp_path: Path):
    res = _run("--out", str(tmp_path), "-p", "06:epochz=1", timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "06_training.ipynb has no parameter 'epochz'" in res.stderr and "did you mean 'epochs'" in res.stderr
    res = _run("--out", str(tmp_path), "--profile", "paper-covid", timeout=120)
    assert res.returncode == 2 and "polyp" in res.stderr
    assert not any(tmp_path.iterdir()), "a refused run must not create a run folder"


@pytest.mark.slow
def test_reproduce_end_to_end_small(tmp_path: Path):
    ensure_synthetic("polyp", CI_DATA, 16, seed=0, size=96, n_test=4, progress=False)
    overrides = nbcheck.load_overrides(OVERRIDES)
    small = {name: dict(overrides[name]) for name in ("06_training.ipynb", "07_evaluation.ipynb")}
    small["07_evaluation.ipynb"].pop("checkpoint_path", None)  # evaluate 06's checkpoint, as a reproduction does
    small["06_training.ipynb"].update(epochs=1, pause_after_epoch=None)  # resuming is tested by the notebook test
    overrides_file = tmp_path / "overrides.yaml"
    overrides_file.write_text(yaml.safe_dump(small))
    out = tmp_path / "runs"

    res = _run("--out", str(out), "--data-root", str(CI_DATA), "--device", "cpu", "--notebooks", "06,07",
               "--overrides", str(overrides_file))  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "without encryption" not in res.stdout + res.stderr, "the kernel-transport warning is back"
    latest = out / "latest"
    assert latest.is_symlink(), "runs/latest must be a symlink"
    run_dir = latest.resolve()
    assert run_dir.parent == out.resolve() and run_dir.name != "latest"
    assert (run_dir / "06_training.ipynb").is_file() and (run_dir / "07_evaluation.ipynb").is_file()
    assert (run_dir / "06_training" / "best.pt").is_file()

    executed_07 = json.loads((run_dir / "07_evaluation.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in executed_07["cells"] for o in c.get("outputs", []))
    assert f"checkpoint {run_dir / '06_training' / 'best.pt'}" in printed, "07 did not evaluate 06's checkpoint"

    report = (run_dir / "REPORT.md").read_text()
    assert "## Environment" in report and "| torch |" in report and "| profile | tiny |" in report
    assert "| device | cpu |" in report and "OMP_NUM_THREADS" in report and "SYNTHETIC polyps" in report
    assert "| install | matches requirements-lock.txt" in report or "| install | DIFFERS from requirements-lock.txt" in report
    assert "## Polyp results (notebook 07)" in report and "Mean Dice over all 20 test images" in report
    for test_set in ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300"):
        assert test_set in report
    assert "protocol pranet" in report and "Table 1 layout" in report
    assert "this run changed notebook parameters, so it is not checked" in report  # the tiny target is for its own run
    assert "![" in report and (run_dir / "06_training" / "training_curves.png").is_file()
    html = (run_dir / "REPORT.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html

    state = json.loads((run_dir / reproduce.STATE_FILE).read_text())
    assert [v["status"] for v in state["notebooks"].values()] == ["ok", "ok"]

    again = _run("--resume", str(run_dir))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("already done in this run, skipped") == 2
