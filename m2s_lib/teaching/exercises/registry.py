"""Which exercises each assignment has: ``EXERCISES`` of the module ``nbNN`` of this package, in notebook order.

A module that does not exist yet (an assignment without migrated exercises) simply contributes none.
"""
from __future__ import annotations

import importlib
from functools import cache

from .base import Exercise

__all__ = ["ASSIGNMENTS", "assignment_of", "exercise", "exercises"]

# assignment (the notebook's stem) -> module of this package holding its EXERCISES
ASSIGNMENTS = {
    "01_subtraction_unit": "nb01",
    "02_multiscale_subtraction_unit": "nb02",
    "03_mmsm": "nb03",
    "04_m2snet": "nb04",
    "05_lossnet": "nb05",
    "06_training": "nb06",
    "07_evaluation": "nb07",
}


def _key(assignment: str) -> str:
    hits = [a for a in ASSIGNMENTS if assignment in (a, a[:2]) or a.startswith(assignment)]
    if len(hits) != 1:
        raise KeyError(f"no assignment {assignment!r} with exercises (known: {', '.join(ASSIGNMENTS)})")
    return hits[0]


@cache
def exercises(assignment: str) -> tuple[Exercise, ...]:
    """The exercises of ``assignment`` (``"01_subtraction_unit"`` or ``"01"``), in notebook order."""
    name = f"{__package__}.{ASSIGNMENTS[_key(assignment)]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            return ()
        raise
    return tuple(module.EXERCISES)


def assignment_of(grade_id: str) -> str:
    for assignment in ASSIGNMENTS:
        if any(e.grade_id == grade_id for e in exercises(assignment)):
            return assignment
    raise KeyError(f"no exercise has the test cell {grade_id!r}")


def exercise(grade_id: str) -> Exercise:
    """The exercise whose test cell is ``grade_id``."""
    for e in exercises(assignment_of(grade_id)):
        if e.grade_id == grade_id:
            return e
    raise KeyError(grade_id)  # pragma: no cover
