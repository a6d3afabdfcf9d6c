"""The budget study: one paired comparison of the ablation study, repeated at several training budgets.

At the default CPU study's 300 optimiser steps, M2SNet w/o L_f scores below MSNet. Is that only its slower
start (the gap would shrink with training), or does it persist? A *budget study* answers with the same
comparison at several budgets, each a complete ablation study (``m2s_lib.engine.study``) of its own:

* the same recipe at every budget: the base preset's settings with only ``optim.epochs`` changed, so the
  warm-up/decay schedule spans each run whatever its length;
* the same batches: a run's seed fixes the batches of each epoch (``DATA_SCHEME``), so at every budget both
  variants of a seed see the same batches, and a longer budget sees the shorter one's epochs and then more;
* resumable and shareable like any study (``--jobs 2``), smaller budgets first, so a study stopped early holds
  complete comparisons of its first budgets; runs with the same fingerprint in another study folder (the cpu
  study's 300-step runs) are copied rather than trained again (:func:`~m2s_lib.engine.study.adopt_runs`).

Folder (``out``)::

    budget.yaml               the budget study's settings (preset, base preset, budgets, variants, seeds)
    steps-00300/ ...          one study folder per budget (study.yaml, runs.csv, steps/, its own REPORT.md)
    REPORT.md, budget.csv, budget_seeds.csv, budget.png, budget_table.md   the report (``study_budget_report``)

>>> [(steps, spec.overrides["optim.epochs"]) for steps, spec in budget_specs("budget")]
[(300, 6), (600, 12), (1200, 24), (2400, 48)]
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..atomic import write_text
from .study import COMPARISONS, StudyError, StudySpec, _locked, run_study, study_spec, variant_config

__all__ = ["BudgetPreset", "BUDGET_PRESETS", "budget_specs", "budget_folder", "steps_per_epoch", "read_budget",
           "run_budget_study", "is_budget_study"]


@dataclass(frozen=True)
class BudgetPreset:
    """A budget study: the ``base`` study preset's runs of ``variants`` × ``seeds`` at each budget in ``steps``
    (optimiser steps); the comparison read across budgets is ``variant − baseline`` (a claim in ``COMPARISONS``)."""

    base: str
    steps: tuple[int, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    variant: str = "m2snet-nolf"
    baseline: str = "msnet"
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of the base preset's, at every budget


BUDGET_PRESETS: dict[str, BudgetPreset] = {
    # 300 steps = the cpu study's runs (6 epochs of 50 steps: 400 images, batch 8), reused when that study exists.
    "budget": BudgetPreset("cpu", (300, 600, 1200, 2400), ("msnet", "m2snet-nolf")),
    # The same comparison on the realistic synthetic level, where 300 steps are far from saturation (MSNet seed 0:
    # test mDice 0.40 at 300 steps, against 0.87-0.89 at the teaching level); a run costs the same CPU time.
    "budget-realistic": BudgetPreset("cpu", (1200, 2400), ("msnet", "m2snet-nolf"),
                                     overrides={"data.synthetic_difficulty": "realistic"}),
    # Seconds: 1 and 2 steps at 32 px (tests, a quick look at the report).
    "budget-smoke": BudgetPreset("smoke", (1, 2), ("msnet", "m2snet-nolf"), seeds=(0, 1)),
}
BUDGET_FILE = "budget.yaml"


def steps_per_epoch(cfg) -> int:
    """Optimiser steps per epoch of a run on the synthetic set, from the configuration alone (the trainer's rule:
    ``ceil(n / batch)``, a last batch of one image dropped, capped by ``run.max_steps_per_epoch``)."""
    d, batch, cap = cfg.data, cfg.optim.batch_size, cfg.run.max_steps_per_epoch
    if d.root or d.val_fraction or d.val_root:
        raise StudyError("a budget study counts its steps from the synthetic set's size: it needs no data.root, "
                         "no data.val_root and data.val_fraction=0")
    n = d.synthetic_n
    steps = n // batch if batch > 1 and n % batch == 1 else math.ceil(n / batch)
    return min(steps, cap) if cap > 0 else steps


def budget_folder(out: str | os.PathLike, steps: int) -> Path:
    """The study folder of one budget (zero-padded: folders sort by budget)."""
    return Path(out) / f"steps-{int(steps):05d}"


def budget_specs(preset: str = "budget", *, variants: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                 overrides: dict[str, Any] | None = None, steps: Sequence[int] | None = None,
                 profile: str | None = None) -> list[tuple[int, StudySpec]]:
    """``(steps, spec)`` per budget, smallest first: the base preset's spec with ``optim.epochs`` set so that the
    run makes exactly ``steps`` optimiser steps (a budget that is not a whole number of epochs is refused)."""
    b = _preset(preset)
    base = study_spec(b.base, profile=profile, variants=list(variants or b.variants), seeds=list(seeds or b.seeds),
                      overrides={**b.overrides, **(overrides or {})})
    per_epoch = steps_per_epoch(variant_config(base, base.variants[0], base.seeds[0]))
    specs = []
    for n in sorted({int(s) for s in (steps or b.steps)}):
        if n <= 0 or n % per_epoch:
            raise StudyError(f"budget {n} steps is not a whole number of epochs of {per_epoch} steps: choose "
                             f"multiples of {per_epoch}")
        specs.append((n, replace(base, overrides={**base.overrides, "optim.epochs": n // per_epoch}, preset=preset)))
    return specs


def _preset(name: str) -> BudgetPreset:
    if name not in BUDGET_PRESETS:
        raise StudyError(f"unknown budget preset {name!r}: choose from {', '.join(BUDGET_PRESETS)}")
    b = BUDGET_PRESETS[name]
    if not any(c.variant == b.variant and c.baseline == b.baseline for c in COMPARISONS):
        raise StudyError(f"{b.variant} − {b.baseline} is not one of the paper's claims (COMPARISONS)")
    return b


def is_budget_study(out: str | os.PathLike) -> bool:
    return Path(out, BUDGET_FILE).is_file()


def read_budget(out: str | os.PathLike) -> dict[str, Any] | None:
    """The settings in ``out/budget.yaml`` (None: ``out`` holds no budget study)."""
    path = Path(out, BUDGET_FILE)
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else None


def _write_budget_file(out: Path, preset: str, specs: list[tuple[int, StudySpec]]) -> None:
    """Record the budget study (budgets, variants and seeds added to an earlier call's are kept)."""
    b, spec = BUDGET_PRESETS[preset], specs[0][1]
    old = read_budget(out) or {}
    mine = {"preset": preset, "base": b.base, "variant": b.variant, "baseline": b.baseline,
            "steps": sorted({*old.get("steps", []), *(s for s, _ in specs)}),
            "variants": list(dict.fromkeys([*spec.variants, *old.get("variants", [])])),
            "seeds": list(dict.fromkeys([*spec.seeds, *old.get("seeds", [])])),
            "base_spec": asdict(spec)}
    write_text(out / BUDGET_FILE, yaml.safe_dump(mine, sort_keys=False))


def run_budget_study(preset: str, out: str | os.PathLike, *, specs: list[tuple[int, StudySpec]] | None = None,
                     reuse: Sequence[str | os.PathLike] = (), device: str | None = None, progress: bool = True,
                     log: Callable[[str], None] = print) -> dict[int, Any]:
    """Run every budget's study into its folder, smallest budget first; returns ``{steps: finished runs}``.

    ``specs``: the budgets (default :func:`budget_specs` of ``preset``); ``reuse``: study folders whose runs of the
    same fingerprint are copied instead of trained. Several processes may share ``out`` (claims per run)."""
    specs = specs or budget_specs(preset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _write_budget_file(out, preset, specs)
    results = {}
    for steps, spec in specs:
        log(f"budget {steps} steps ({spec.overrides['optim.epochs']} epochs): {budget_folder(out, steps)}")
        results[steps] = run_study(spec, budget_folder(out, steps), device=device, progress=progress, log=log,
                                   reuse=reuse)
    return results
