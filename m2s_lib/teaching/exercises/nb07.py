"""Notebook 07's exercises: the PraNet protocol's 256-threshold Dice and IoU curves and the MAE, by hand. The
reference is pysodmetrics, the library behind ``m2s_lib.metrics``, on the same 8-bit map and mask."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .base import Case, Check, CheckResult, Exercise, WrongType, compare_number, compare_tensor, exact

__all__ = ["EXERCISES", "MAE", "PranetCurves", "library_curves"]

_SOD = ("py_sod_metrics.FmeasureV2", "py_sod_metrics.DICEHandler", "py_sod_metrics.IOUHandler", "py_sod_metrics.MAE",
        "m2s_lib.metrics.PolypMetrics", "m2s_lib.metrics.score_map")  # fmt: skip


def _pair(spec: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """An 8-bit map and its boolean mask: a noisy disc (the map never reaches 255), a random map, a flat map, a
    perfect map; ``mask`` ``"empty"`` replaces the mask by an empty one."""
    h, w = spec["shape"]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    disc = (yy - 0.45 * h) ** 2 + (xx - 0.46 * w) ** 2 < 0.058 * h * w
    kind = spec["map"]
    if kind == "noisy disc":
        noise = torch.randn(h, w, generator=generator, dtype=torch.float64) * 25
        pred, gt = (60 + 90 * disc + noise).clamp(0, 200).floor(), disc
    elif kind == "random":
        pred = torch.randint(0, 256, (h, w), generator=generator, dtype=torch.int64)
        gt = torch.rand(h, w, generator=generator, dtype=torch.float64) > 0.7
    elif kind == "flat":
        pred, gt = torch.full((h, w), float(spec.get("level", 77))), torch.eye(h, w, dtype=torch.bool)
    else:  # "perfect"
        pred, gt = disc * 255.0, disc
    if spec.get("mask") == "empty":
        gt = torch.zeros_like(gt)
    return {"pred8": pred.to(torch.uint8), "gt": gt.to(torch.bool)}


def _arrays(case: Case) -> tuple[np.ndarray, np.ndarray]:
    return case["pred8"].numpy().copy(), case["gt"].numpy().astype(bool)


def _plain_array(value, what: str) -> torch.Tensor:
    """A curve as returned (a numpy array, a list or a tuple of numbers, or a tensor) → a float64 tensor."""
    exact(value, (np.ndarray, list, tuple, torch.Tensor), what)
    if type(value) is torch.Tensor:
        value = torch.Tensor.numpy(torch.Tensor.cpu(torch.Tensor.detach(value)))
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise WrongType(f"{what}: expected numbers ({err})") from None
    return torch.from_numpy(array)


def library_curves(pred8: np.ndarray, gt: np.ndarray, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """pysodmetrics' 256-threshold Dice and IoU curves of one image (thresholds 255 … 0)."""
    import py_sod_metrics as sod

    fm = sod.FmeasureV2({"dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
                         "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False)})
    fm.step(pred=pred8 if normalize else pred8 / 255.0, gt=gt.astype(np.uint8) * 255 if normalize else gt.astype(bool),
            normalize=normalize)  # fmt: skip
    handlers = fm._metric_handlers
    return tuple(np.asarray(handlers[k].dynamic_results[0], dtype=np.float64) for k in ("dice", "iou"))


# -------------------------------------------------------------------------------------------------------------
class PranetCurves(Exercise):
    grade_id = "pranet_curves_tests"
    solution_ids = ("pranet_curves",)
    title = "Exercise 1 (`pranet_curves`)"
    forbidden = _SOD
    checks = (Check("the Dice curve of a noisy map", 4), Check("the IoU curve of a noisy map", 3),
              Check("flat map, perfect map, empty mask", 3))
    hint = ("stretch with normalise_map, then 256 integer grey levels (a floor); for each threshold from 255 down to 0, "
            "count true positives, false positives and false negatives of 'level ≥ t', and give the 0/0 case its "
            "value")  # fmt: skip
    visible = ({"name": "a noisy disc, 40×52", "feeds": ("the Dice curve of a noisy map", "the IoU curve of a noisy map"),
                "map": "noisy disc", "shape": (40, 52)},
               {"name": "a noisy disc, 40×52, with an empty mask", "feeds": ("flat map, perfect map, empty mask",),
                "map": "noisy disc", "shape": (40, 52), "mask": "empty"})  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {}, _pair(spec, generator))

    def run(self, answer, case) -> dict[str, Any]:
        result = exact(answer(*_arrays(case)), tuple, "the result (dice, iou)")
        if len(result) != 2:
            raise WrongType(f"return the pair (dice, iou) of arrays, got {len(result)} items")
        return {"dice": _plain_array(result[0], "dice"), "iou": _plain_array(result[1], "iou")}

    def judge(self, case, outputs) -> list[CheckResult]:
        pred8, gt = _arrays(case)
        problems = {}
        for key, reference, plain in zip(("Dice", "IoU"), library_curves(pred8, gt), library_curves(pred8, gt, False)):
            ref = torch.from_numpy(reference)
            problem = compare_tensor(outputs[key.lower()], ref, rtol=1e-6, atol=1e-9, mistakes={  # float32 passes
                "the curve in the opposite order: the first value belongs to threshold 255, the last to 0": ref.flip(0),
                "'level > t' instead of 'level ≥ t' (the curve is shifted by one threshold)": torch.cat(
                    [torch.zeros(1, dtype=torch.float64), ref[:-1]]),
                "the curve of the map without the min–max stretch (use normalise_map first)": torch.from_numpy(plain),
            })  # fmt: skip
            problems[key] = problem and f"{key} curve: {problem}"
        found = {self.checks[0].name: problems["Dice"], self.checks[1].name: problems["IoU"],
                 self.checks[2].name: problems["Dice"] or problems["IoU"]}
        return [self.result(name, found[name]) for name in case.feeds]


# -------------------------------------------------------------------------------------------------------------
class MAE(Exercise):
    grade_id = "mae_tests"
    solution_ids = ("mae",)
    title = "Exercise 2 (`mae`)"
    forbidden = _SOD
    checks = (Check("a noisy map", 1), Check("a flat map", 1))
    hint = "the stretched map of step 1 against the mask, pixel by pixel: the mean of the absolute differences"
    visible = ({"name": "a noisy disc, 40×52", "feeds": ("a noisy map",), "map": "noisy disc", "shape": (40, 52)},)

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {}, _pair(spec, generator))

    def run(self, answer, case) -> dict[str, Any]:
        value = answer(*_arrays(case))
        if type(value) is np.ndarray and value.size == 1:
            value = value.reshape(())[()]
        if type(value) is torch.Tensor and value.numel() != 1:
            raise WrongType(f"expected a single number, got a tensor of shape {tuple(value.shape)}")
        return {"mae": value}

    def judge(self, case, outputs) -> list[CheckResult]:
        import py_sod_metrics as sod

        pred8, gt = _arrays(case)
        reference, plain = sod.MAE(), sod.MAE()
        reference.step(pred=pred8, gt=gt.astype(np.uint8) * 255, normalize=True)
        plain.step(pred=pred8 / 255.0, gt=gt.astype(bool), normalize=False)
        return self.results(case, compare_number(outputs["mae"], float(reference.maes[0]), rel=1e-9, mistakes={
            "the MAE of the map without the min–max stretch (use normalise_map)": float(plain.maes[0])}))


EXERCISES = (PranetCurves(), MAE())
