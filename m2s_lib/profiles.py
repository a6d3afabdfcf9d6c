"""The named profiles of the settings: each is a set of ``section.key`` overrides on top of the defaults of
:class:`m2s_lib.config.Config` (which are the paper's polyp recipe). ``m2s train --profile NAME --print-config``
shows the result. Also the range rules of the numeric settings (:data:`SETTING_RANGES`) and the YAML loader of
settings files (:class:`UniqueKeyLoader`), which :mod:`m2s_lib.config` applies."""
from __future__ import annotations

from typing import Any

import yaml

from .constants import GOALS_CLASS_VALUES

__all__ = ["PROFILES", "SETTING_RANGES", "DuplicateKeyError", "UniqueKeyLoader"]

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


#: Range rules of the numeric settings (finiteness is checked when a value is set): (key, check, rule in words).
SETTING_RANGES: tuple[tuple[str, Any, str], ...] = (
    ("model.in_channels", lambda v: v >= 1, "≥ 1"),
    ("model.channels", lambda v: v >= 1, "≥ 1 (the width of the decoder; the paper's is 64)"),
    ("model.max_order", lambda v: v >= 1, "≥ 1"),
    ("data.rotation", lambda v: 0 <= v <= 180, "in [0, 180] degrees"),
    ("data.n_folds", lambda v: v >= 2, "≥ 2"),
    ("data.num_workers", lambda v: v >= -1, "≥ 0, or -1 (chosen for the device)"),
    ("data.synthetic_n", lambda v: v >= 1, "≥ 1"),
    ("data.synthetic_n_test", lambda v: v >= 0, "≥ 0"),
    ("data.synthetic_seed", lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    ("optim.epochs", lambda v: v >= 1, "≥ 1"),
    ("optim.batch_size", lambda v: v >= 1, "≥ 1"),
    ("optim.lr", lambda v: v > 0, "> 0 (the paper's is 0.05)"),
    ("optim.encoder_lr_ratio", lambda v: v >= 0, "≥ 0 (the paper's is 0.1)"),
    ("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1) (the paper's is 0.9)"),
    ("optim.weight_decay", lambda v: v >= 0, "≥ 0 (the paper's is 5e-4)"),
    ("optim.grad_clip", lambda v: v >= 0, "≥ 0 (0 switches clipping off)"),
    ("loss.lossnet_input_size", lambda v: v >= 32, "≥ 32 pixels, or null"),
    ("run.seed", lambda v: 0 <= v < 2**32, "in [0, 2**32) (a non-negative whole number)"),
    ("run.val_every", lambda v: v >= 1, "≥ 1 (validate every N epochs)"),
    ("run.progress_interval", lambda v: v >= 0, "≥ 0 seconds"),
    ("run.max_steps_per_epoch", lambda v: v >= 0, "≥ 0 (0: the whole epoch)"),
)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one silently: a second
    ``optim:`` section would drop the first one's settings)."""


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping gives one key twice."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise DuplicateKeyError(f"the key {key!r} appears twice (lines {seen[key]} and {line}); YAML would keep only "
                                "the second: merge them into one")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
