"""``check(grade_id, answer)``: the one call of a test cell.

**Student mode** (the default): run the exercise's visible cases on ``answer`` and judge them here.

* an untouched stub (it raises ``NotImplementedError``) prints one line, "Exercise N (`Name`) is not done yet: …",
  and raises nothing, so that *Run All* goes on;
* a wrong answer raises :class:`CheckFailed`, whose IPython display (``_render_traceback_``) is the failed
  check's message and hint: a few lines, no library frames, no chained traceback;
* a right answer prints one "✓" line per check the visible cases cover.

Warnings the answer emits are caught and shown as a note; they never fail a check.

**Grading mode** (``M2S_GRADING_DIR`` is set): read the grader's cases from ``<dir>/inputs/<grade_id>.npz|json``,
run the answer on every case and write plain arrays and a status per case to ``<dir>/outputs/``. Nothing is
judged in the kernel, and nothing raises: a trusted process compares the outputs with the reference afterwards.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import monitor, registry
from .base import Case, CheckResult, Exercise, WrongType, score, to_plain
from .casefiles import GRADING_ENV, read_cases, write_outputs

__all__ = ["CheckFailed", "NotDone", "check", "needs", "outcome"]

CASE_SECONDS = float(os.environ.get("M2S_CASE_SECONDS", "60"))  # per case, when grading
_STATE: dict[str, str] = {}  # grade_id -> "passed" | "failed" | "not done" | "recorded" (this kernel)


class CheckFailed(Exception):
    """A wrong answer, shown to the student as its message and hint only."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return ["\x1b[0;31m" + self.lines[0] + "\x1b[0m", *self.lines[1:]]


class NotDone(Exception):
    """The answer is still the stub (it raised ``NotImplementedError``)."""


class _Timeout(BaseException):
    pass


def outcome(grade_id: str) -> str | None:
    """What the test cell ``grade_id`` found in this kernel: ``"passed"``, ``"failed"``, ``"not done"``,
    ``"recorded"`` (grading mode) or ``None`` (not run)."""
    return _STATE.get(grade_id)


def needs(*grade_ids: str) -> bool:
    """For a cell that uses exercises' answers: ``True`` when their test cells passed (grading mode: ran and were
    not stubs); otherwise one printed line per missing exercise and ``False``, so that the cell can skip itself."""
    missing = []
    for grade_id in grade_ids:
        state = _STATE.get(grade_id)
        ok = state in ("passed", "recorded")
        if not ok:
            title = registry.exercise(grade_id).title
            why = {"not done": "is not done yet", "failed": "does not pass its test yet"}.get(
                state, "has not been checked yet (run its test cell)")  # fmt: skip
            missing.append(f"This cell needs {title}, which {why}: skipped.")
    for line in missing:
        print(line)
    return not missing


# -------------------------------------------------------------------------------------------------------------
# Running one case
# -------------------------------------------------------------------------------------------------------------
def _call(exercise: Exercise, answer, case: Case, found: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Run ``answer`` on ``case`` under the monitor, with warnings caught; ``(plain outputs, warning lines)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with monitor.watch(exercise.forbidden, found):
                raw = exercise.run(answer, case)
        except NotImplementedError as err:
            raise NotDone() from err
        plain = {key: to_plain(value, key) for key, value in raw.items()}
    notes = [f"{w.category.__name__}: {str(w.message).splitlines()[0][:160] if str(w.message) else ''}"
             for w in caught]  # fmt: skip
    return plain, list(dict.fromkeys(notes))


def _with_alarm(function: Callable[[], Any], seconds: float):
    """``function()``, interrupted after ``seconds`` (main thread only; elsewhere without a limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        return function()

    def handler(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return function()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _error_text(err: BaseException) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return f"your code raised {type(err).__name__}" + (f": {text}" if text else "")


# -------------------------------------------------------------------------------------------------------------
# The test cell's call
# -------------------------------------------------------------------------------------------------------------
def check(grade_id: str, *answer) -> None:
    """Check the answer of the exercise whose test cell is ``grade_id``: one object (a class, a function), or
    several when the exercise has several (e.g. ``check("full_one_fast_tests", box_sum, full_one_fast)``)."""
    exercise = registry.exercise(grade_id)
    value = answer[0] if len(answer) == 1 else answer
    folder = os.environ.get(GRADING_ENV)
    if folder:
        _STATE[grade_id] = "recorded"
        try:
            not_done = _record(exercise, value, Path(folder))
        except Exception as err:  # noqa: BLE001 — grading mode never raises (the outputs say what happened)
            print(f"{exercise.title}: could not record the outputs ({type(err).__name__}: {err})")
            return
        if not_done:
            _STATE[grade_id] = "not done"
        print(f"{exercise.title}: outputs recorded for grading" + (" (not done yet)" if not_done else ""))
        return
    _student(exercise, value)


def _student(exercise: Exercise, answer) -> None:
    per_case, notes = [], []
    for case in exercise.visible_cases():
        found: list[str] = []
        try:
            plain, caught = _call(exercise, answer, case, found)
        except NotDone:
            _STATE[exercise.grade_id] = "not done"
            print(f"{exercise.title} is not done yet: write it in the cell above, then run this cell.")
            return
        except WrongType as err:
            _fail(exercise, [exercise.result(name, str(err)) for name in case.feeds], case)
        except Exception as err:  # noqa: BLE001 — the student's error becomes the check's message
            _fail(exercise, [exercise.result(name, _error_text(err)) for name in case.feeds], case)
        notes += [n for n in caught if n not in notes]
        results = exercise.judge(case, {k: torch.from_numpy(v) for k, v in plain.items()})
        if found:
            results = [exercise.result(r.name, f"your answer runs the library's {found[0]}: write it yourself")
                       for r in results]  # fmt: skip
        _fail(exercise, results, case)
        per_case.append((case, results))
    _STATE[exercise.grade_id] = "passed"
    covered = {r.name for _, results in per_case for r in results}
    for result in score(exercise, per_case):
        if result.name in covered:
            print(f"✓ {exercise.number}, {result.name} ({result.max_points:g} of {exercise.max_points:g} points)")
    rest = [c.name for c in exercise.checks if c.name not in covered]
    if rest:
        print(f"  more checks run when your notebook is graded: {', '.join(rest)}")
    for note in notes:
        print(f"  note: your code emitted a warning (warnings cost no points): {note}")


def _fail(exercise: Exercise, results: list[CheckResult], case: Case) -> None:
    failed = [r for r in results if not r.passed]
    if not failed:
        return
    _STATE[exercise.grade_id] = "failed"
    first = failed[0]
    lines = [f"{exercise.number}, check '{first.name}' failed: {first.mistake}"]
    if first.hint:
        lines.append(f"  hint: {first.hint}")
    lines.append(f"  (case: {case.name}; {len(failed)} of {len(results)} checks of this case failed)")
    raise CheckFailed(lines) from None


def _record(exercise: Exercise, answer, folder: Path) -> bool:
    """Grading mode: run every case of ``folder/inputs`` and write ``folder/outputs``; ``True`` when not done."""
    try:
        cases = read_cases(folder, exercise.grade_id)
    except (OSError, ValueError, KeyError) as err:
        write_outputs(folder, exercise.grade_id, [], [], [f"no inputs: {type(err).__name__}"])
        return False
    records, arrays, statuses = [], [], []
    for case in cases:
        found: list[str] = []
        record: dict[str, Any] = {"name": case.name, "status": "ok", "message": "", "warnings": []}
        plain: dict[str, np.ndarray] = {}
        start = time.perf_counter()
        try:
            plain, record["warnings"] = _with_alarm(lambda case=case, found=found: _call(exercise, answer, case, found), CASE_SECONDS)
        except NotDone:
            record.update(status="not_done", message="not done (the stub raises NotImplementedError)")
        except WrongType as err:
            record.update(status="wrong_type", message=str(err))
        except _Timeout:
            record.update(status="timeout", message=f"took longer than {CASE_SECONDS:g} s")
        except KeyboardInterrupt:
            record.update(status="timeout", message="interrupted")
        except (Exception, SystemExit) as err:  # noqa: BLE001 — recorded for the judge
            record.update(status="error", message=_error_text(err))
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["monitor"] = list(found)
        records.append(record)
        arrays.append(plain)
        statuses.append(record["status"])
    write_outputs(folder, exercise.grade_id, records, arrays, monitor.events())
    return bool(statuses) and all(s == "not_done" for s in statuses)
