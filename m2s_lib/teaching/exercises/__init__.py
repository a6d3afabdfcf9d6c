"""The course's exercises, and ``check``: the one call of every autograded test cell.

``check(grade_id, answer)`` runs the exercise's visible cases on the answer and explains a wrong answer in a few
lines (student mode); when the course grades a notebook (``M2S_GRADING_DIR`` set) it only records the answer's
outputs for the trusted grader. See :mod:`.student` and :mod:`.base`.
"""
from __future__ import annotations

from .base import Case, Check, CheckResult, Exercise
from .registry import exercise, exercises
from .student import CheckFailed, check, needs, outcome

__all__ = ["Case", "Check", "CheckFailed", "CheckResult", "Exercise", "check", "exercise", "exercises", "needs",
           "outcome"]
