"""The named profiles of the settings: each is a set of ``section.key`` overrides on top of the defaults of
:class:`m2s_lib.config.Config` (which are the paper's polyp recipe). ``m2s train --profile NAME --print-config``
shows the result."""
from __future__ import annotations

from typing import Any

from .constants import GOALS_CLASS_VALUES

__all__ = ["PROFILES"]

# Each profile is a list of overrides on top of the dataclass defaults (= the paper's polyp recipe).
PROFILES: dict[str, dict[str, Any]] = {
    # CPU teaching run: synthetic polyps of the teaching difficulty, a light random-init encoder, small images, no
    # LossNet. 12 epochs: about 2.6 minutes of training on 2 idle cores to a test Dice of 0.89-0.91 over seeds 0-2
    # (benchmarks/train_tiny.py; docs/data.md); the whole pipeline, not the paper's accuracy.
    "tiny": {
        "model.encoder_name": "resnet18d",
        "model.encoder_weights": None,
        "model.channels": 32,
        "data.task": "polyp",
        "data.size": 128,
        "data.train_sizes": [80, 96, 104, 120, 128],  # m2s_lib.data.train_sizes_for(128): the paper's five, scaled
        "data.val_fraction": 0.1,
        "data.synthetic_size": 128,
        "data.synthetic_n_test": 20,
        "data.synthetic_difficulty": "teaching",  # m2s_lib.data.synthetic.polyp_style: polyps that stand out more
        "optim.epochs": 12,  # 8 epochs gave 0.84-0.89 over seeds 0-2: too close to the 0.85 target
        "optim.batch_size": 8,
        "optim.lr": 0.1,
        "optim.encoder_lr_ratio": 1.0,  # a random-init encoder needs the full learning rate
        "optim.schedule_unit": "step",  # a smooth warm-up for a short run
        "optim.warmup_fraction": 0.2,  # short warm-up, long decay: learns faster from random weights than 0.5
        "loss.lossnet_weight": 0.0,
        "loss.lossnet_weights": None,
        "run.progress_interval": 2.0,
    },
    # The paper's runs (Sec. 4.3): Res2Net-50 from ImageNet, 352×352, batch 16, multi-scale, LossNet 0.1.
    "paper-polyp": {"data.task": "polyp", "optim.epochs": 50},
    "paper-covid": {"data.task": "covid", "optim.epochs": 200},
    "paper-busi": {"data.task": "busi", "optim.epochs": 100, "data.fold": 0, "data.n_folds": 4},
    # GOALS: background + RNFL + GCIPL + choroid; GOALS masks store 0 / 80 / 160 for the layers, 255 elsewhere.
    "paper-oct": {
        "data.task": "oct",
        "optim.epochs": 100,
        "model.classes": 4,
        "data.class_values": list(GOALS_CLASS_VALUES),
    },
}
