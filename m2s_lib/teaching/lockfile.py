"""The pinned install: ``requirements-lock.txt`` (compiled from ``pyproject.toml`` by ``make upgrade-lock``) read
back, and compared with what is installed, for the report's environment table (``make reproduce``) and the tests.

``pyproject.toml`` keeps version ranges for library users; the lock pins every package of the project and of its
extras (pip-compile's ``name==version`` lines), so that ``make test``, ``make reproduce`` and CI install the same
releases every month.
"""
from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..constants import repo_root

__all__ = ["LOCK_FILE", "canonical", "lock_status", "read_lock"]

LOCK_FILE = "requirements-lock.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Py_SOD-Metrics`` → ``py-sod-metrics``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path | None = None) -> dict[str, str]:
    """``{canonical name: pinned version}`` of the lock file (default: the repository's)."""
    path = Path(path) if path is not None else repo_root() / LOCK_FILE
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line.strip()):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def _same(installed: str, pinned: str) -> bool:
    """``2.14.1+cu130`` satisfies ``==2.14.1`` (PEP 440: a local label is ignored when the pin has none)."""
    return installed == pinned or (installed.split("+")[0] == pinned and "+" not in pinned)


def lock_status(path: str | Path | None = None) -> str:
    """One sentence: whether the installed packages are the lock's pins (names the first differences)."""
    path = Path(path) if path is not None else repo_root() / LOCK_FILE
    if not path.is_file():
        return f"no {LOCK_FILE} here (an installed package): not checked"
    pins = read_lock(path)
    differ, missing = [], []
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            missing.append(name)
            continue
        if not _same(installed, pinned):
            differ.append(f"{name} {installed} (lock {pinned})")
    absent = f"; {len(missing)} pinned package(s) not installed (extras left out?)" if missing else ""
    if differ:
        shown = ", ".join(differ[:5]) + (", ..." if len(differ) > 5 else "")
        return f"DIFFERS from {LOCK_FILE} in {len(differ)} of {len(pins)} packages: {shown}{absent}"
    return f"matches {LOCK_FILE} ({len(pins) - len(missing)} of {len(pins)} pinned packages installed){absent}"
