"""The repository's tooling: the pre-commit hooks run, every Make target goes through ``m2s``, and every install
(make, CI, conda, Binder) takes the lock file, which covers pyproject.toml's dependencies."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement

from m2s_lib.teaching.lockfile import LOCK_FILE, canonical, lock_status, read_lock

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _local_hooks() -> list[dict]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    return [hook for repo in config["repos"] if repo["repo"] == "local" for hook in repo["hooks"]]


def test_there_are_local_hooks():
    assert [h["id"] for h in _local_hooks()] == ["nbcheck"]


@pytest.mark.parametrize("hook", _local_hooks(), ids=lambda h: h["id"])
def test_local_hook_entry_runs(hook: dict):
    """Each local hook's entry, run as pre-commit runs it (from the repository root; `python` is the hook's
    interpreter, here this one), succeeds on the committed files."""
    argv = shlex.split(hook["entry"])
    if argv[0] == "python":
        argv[0] = sys.executable
    files = [] if hook.get("pass_filenames") is False else [
        p for p in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
        if re.search(hook.get("files", ""), p)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([*argv, *files], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, f"hook {hook['id']} failed ({res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    for dependency in hook.get("additional_dependencies", []):  # the hook's own environment has only these
        assert canonical(Requirement(dependency).name) in read_lock()


def _recipes() -> dict[str, list[str]]:
    """Make target -> its recipe lines (tab-indented lines under ``target:``)."""
    recipes: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if match := re.match(r"^([A-Za-z][\w-]*):(?!=)", line):
            current = match.group(1)
            recipes[current] = []
        elif line.startswith("\t") and current:
            recipes[current].append(line.strip())
        elif line and not line.startswith(("#", "\t", "ifeq", "else", "endif")):
            current = None
    return recipes


@pytest.mark.parametrize("target", ["reproduce", "lint", "site", "course-release", "course-grade", "ablations"])
def test_make_jobs_go_through_m2s(target: str):
    recipe = _recipes()[target]
    assert any(line.startswith("$(M2S) ") for line in recipe), f"make {target} does not call m2s: {recipe}"
    assert not any("python -m m2s_lib" in line or "$(PY) -m m2s_lib" in line for line in recipe), recipe


def test_readme_commands_are_make_targets_and_nothing_names_old_paths():
    recipes = _recipes()
    assert {"reproduce", "test", "install", "upgrade-lock"} <= set(recipes)
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    old = re.compile(r"m2s_lib\.(train|evaluate|viz|widgets|gradcam|notebook_utils|synthetic|download|reproduce)\b")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    named = [p for p in tracked if p.endswith((".py", ".md", ".ipynb", ".yaml", ".yml", ".toml")) or p == "Makefile"
             if (ROOT / p).is_file() and old.search((ROOT / p).read_text(errors="replace")) and p != "tests/test_tooling.py"]
    assert not named, f"old import paths still named in {named}"


def test_installs_take_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert f"LOCK ?= {LOCK_FILE}" in makefile and "LOCKED ?= 1" in makefile
    assert "$(PY) -m pip install -r $(LOCK) -e" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI installs through make, from the lock
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"-r {LOCK_FILE}" in pip
    assert f"-c {LOCK_FILE}" in (ROOT / "binder" / "postBuild").read_text()
    pins = read_lock()
    binder = dict(line.split("==") for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    assert binder == {"torch": pins["torch"], "torchvision": pins["torchvision"]}


def test_lock_covers_pyproject():
    """Every dependency of pyproject.toml and of each extra is pinned, at a version its range admits; torch and
    torchvision stay at or below the releases pip installs on the project's machines."""
    pins = read_lock()
    project = PYPROJECT["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    missing, outside = [], []
    for text in wanted:
        req = Requirement(text)
        pinned = pins.get(canonical(req.name))
        if pinned is None:
            missing.append(req.name)
        elif not req.specifier.contains(pinned, prereleases=True):
            outside.append(f"{req.name}=={pinned} (pyproject: {req.specifier})")
    assert not missing, f"not in {LOCK_FILE}: {missing} (run `make upgrade-lock`)"
    assert not outside, f"pins outside pyproject's ranges: {outside} (run `make upgrade-lock`)"
    from packaging.version import Version

    assert Version(pins["torch"]) <= Version("2.14.1") and Version(pins["torchvision"]) <= Version("0.29.1")
    assert all(re.fullmatch(r"[A-Za-z0-9.+!-]+", v) for v in pins.values())


def test_lock_status_names_differences(tmp_path: Path):
    lock = tmp_path / LOCK_FILE
    import numpy

    lock.write_text(f"numpy=={numpy.__version__}\n    # via m2s_lib\n")
    assert lock_status(lock).startswith(f"matches {LOCK_FILE} (1 of 1")
    lock.write_text("numpy==0.0.1\nno-such-package-m2s==1.0\n")
    status = lock_status(lock)
    assert status.startswith(f"DIFFERS from {LOCK_FILE} in 1 of 2 packages: numpy {numpy.__version__} (lock 0.0.1)")
    assert "1 pinned package(s) not installed" in status
    assert lock_status(tmp_path / "none.txt").startswith(f"no {LOCK_FILE}")
