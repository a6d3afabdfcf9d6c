"""Hidden cases of the exercises, per assignment: ``HIDDEN = {test cell grade_id: [case specs]}`` in the module
named like the exercise module (``nb01`` …). Not shipped to students: the grader adds these cases to the visible
ones when it prepares a submission's inputs."""
from __future__ import annotations

import importlib

__all__ = ["hidden_specs"]


def hidden_specs(module: str, grade_id: str) -> list[dict]:
    """The hidden case specs of ``grade_id`` in ``hidden/<module>.py`` (none when the module or entry is absent)."""
    name = f"{__package__}.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            return []
        raise
    return [dict(spec) for spec in getattr(mod, "HIDDEN", {}).get(grade_id, ())]
