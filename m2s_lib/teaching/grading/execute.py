"""Execute one submitted notebook, cell by cell: ``python -m m2s_lib.teaching.grading.execute IN OUT``.

This is the process that :mod:`m2s_lib.teaching.grading.sandbox` starts *inside* the sandbox (bubblewrap on
Linux). It runs ``IN`` in a fresh kernel with nbclient (every cell, errors included, with a per-cell time limit)
and writes the executed notebook to ``OUT``, also when a cell times out (the cells after it stay unexecuted).

Progress goes to the grader on a pipe (``--progress-fd``) that the student's kernel does not inherit, as JSON
lines: ``{"start": i, "grade_id": g}``, ``{"done": i, "seconds": s}``, ``{"timeout": i, "grade_id": g,
"seconds": n}``. The grader uses them to name the cell that was running when it had to stop the submission.
Exit status: 0 ran to the end, 3 a cell timed out, 2 bad arguments or an unreadable notebook.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TIMEOUT_EXIT = 3


def _grade_id(cell: Any) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


class _Progress:
    def __init__(self, fd: int | None):
        self.handle = os.fdopen(fd, "w", buffering=1) if fd is not None else None
        if fd is not None:
            os.set_inheritable(fd, False)  # the kernel (a child of this process) must not write here
        self.started: dict[int, float] = {}

    def send(self, **event: Any) -> None:
        if self.handle is not None:
            try:
                self.handle.write(json.dumps(event) + "\n")
            except OSError:  # the grader went away: nothing to report to
                self.handle = None


def _skip_slow_imports() -> None:
    """jsonschema's optional RFC 3987 format checker builds a grammar at import (5 s on a busy 2-core machine, once per
    submission); nbformat's schema never uses that format."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def execute(src: Path, dst: Path, cell_timeout: int, progress: _Progress, kernel_name: str | None = None) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError

    nb = nbformat.read(str(src), as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=False,
                            kernel_name=kernel_name or "python3", record_timing=False, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(Path.cwd())}})  # fmt: skip
    current: dict[str, Any] = {}

    def on_start(cell, cell_index, **_):
        current.update(index=cell_index, grade_id=_grade_id(cell), start=time.monotonic())
        progress.send(start=cell_index, grade_id=_grade_id(cell))

    def on_complete(cell, cell_index, **_):
        progress.send(done=cell_index, seconds=round(time.monotonic() - current.get("start", time.monotonic()), 2))

    client.on_cell_start = on_start
    client.on_cell_executed = on_complete
    status = 0
    try:
        client.execute()
    except CellTimeoutError:
        seconds = round(time.monotonic() - current.get("start", time.monotonic()), 1)
        progress.send(timeout=current.get("index"), grade_id=current.get("grade_id"), seconds=seconds)
        status = TIMEOUT_EXIT
    except Exception as err:  # noqa: BLE001 — a dead kernel, a broken notebook: report it, keep what ran
        progress.send(error=f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}",
                      index=current.get("index"), grade_id=current.get("grade_id"))  # fmt: skip
        status = 1
    finally:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        nbformat.write(nb, str(tmp))
        os.replace(tmp, dst)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m2s_lib.teaching.grading.execute", description=__doc__)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--cell-timeout", type=int, default=600)
    parser.add_argument("--progress-fd", type=int, default=None)
    parser.add_argument("--kernel", default=None)
    args = parser.parse_args(argv)
    _skip_slow_imports()
    progress = _Progress(args.progress_fd)
    if not args.src.is_file():
        print(f"execute: {args.src} is not a file", file=sys.stderr)
        return 2
    return execute(args.src, args.dst, args.cell_timeout, progress, args.kernel)


if __name__ == "__main__":
    sys.exit(main())
