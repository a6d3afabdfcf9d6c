"""Parameters-cell values for grading: only the exercises are graded, so the rest of a notebook runs small.

The runner writes the course's classroom presets into a submission's parameters cell, then these values on top
(names the notebook does not have are skipped). What a grade depends on does not change with them: every exercise
is run on the grader's own cases (:mod:`m2s_lib.teaching.exercises`), whatever the notebook's sizes. What they
change is the time the rest of the notebook takes, most of all in 06 (a few training steps and the step check
instead of the classroom run) and 07 (a one-step model and a tiny test set instead of the classroom checkpoint).

Paths under ``runs/`` point into each submission's scratch folder (the runner rewrites them there), so nothing one
submission writes is read by the next. The small synthetic set is generated there on first use (about a second)
unless the course's ``shared/`` folder holds it (then it is mounted read-only).

A teacher who wants the full classroom run graded passes other parameters to the runner
(``Settings.parameters``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["GRADING_DATA", "GRADING_PARAMETERS", "grading_parameters"]

GRADING_DATA = "runs/grading/data/polyp-n16-s96"  # inside each submission's scratch folder

_SMALL_DATA: dict[str, Any] = {
    "data_root": GRADING_DATA,
    "synthetic_n": 16,
    "synthetic_n_test": 4,
    "synthetic_size": 96,
    "synthetic_difficulty": "realistic",
}

GRADING_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_subtraction_unit": {"encoder_name": "resnet18d", "encoder_weights": None, "image_size": 64},
    "02_multiscale_subtraction_unit": {"image_size": 64, "latency_repeats": 2},
    "03_mmsm": {"image_size": 64},
    # 04: a ResNet-18-D at 64 px for the tables and the cost comparison (the exercises build their own networks)
    "04_m2snet": {"encoder_name": "resnet18d", "image_size": 64, "latency_repeats": 1},
    "05_lossnet": {"lossnet_weights": None, "lossnet_input_size": 64, "image_size": 96, "shifts": [0, 4, 16]},
    # 06: the step check (one step) and a 2-step hand-written loop; the Trainer runs one step of one epoch
    "06_training": {"profile": "tiny", **_SMALL_DATA, "epochs": 1, "image_size": 64, "steps_per_epoch": 1,
                    "check_steps": 1, "hand_steps": 2, "pause_after_epoch": None},
    # 07: no checkpoint (a one-step model is trained on the tiny set), 4 test images per set
    "07_evaluation": {"checkpoint_path": None, **_SMALL_DATA, "image_size": 64, "train_epochs": 1,
                      "train_steps_per_epoch": 1, "grid_per_set": 1, "worst_n": 3},
    "08_feature_maps": {"checkpoint_path": None, **_SMALL_DATA, "image_size": 64, "image_indices": [0, 1],
                        "train_epochs": 1, "train_steps_per_epoch": 1},
}


def grading_parameters(assignment: str) -> dict[str, Any]:
    """The parameters-cell overrides used when grading ``assignment`` (``"06_training"`` or ``"06"``); ``{}`` for an
    assignment that runs quickly at the classroom presets."""
    hits = [name for name in GRADING_PARAMETERS if assignment in (name, name[:2])]
    return {k: (list(v) if isinstance(v, list) else v) for k, v in GRADING_PARAMETERS[hits[0]].items()} if hits else {}
