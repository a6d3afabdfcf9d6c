"""Notebook 01's exercises: the subtraction unit (Eq. 1), its parameter count, and the parts of a sum."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ...profiling import count_parameters
from ...subtraction import SubtractionUnit
from .base import Case, Check, CheckResult, Exercise, WrongType, compare_number, compare_tensor, dtype_mistake, exact

__all__ = ["EXERCISES", "FusionParts", "ScratchSU", "SUParameterCount"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def bn_state(c: int, generator: torch.Generator, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A BatchNorm's parameters and statistics away from the fresh 1/0/0/1 (which would hide a missing BN)."""
    def u(lo, hi):
        return (torch.rand(c, generator=generator, dtype=torch.float64) * (hi - lo) + lo).to(dtype)

    return {"weight": u(0.5, 1.5), "bias": u(-0.2, 0.2), "running_mean": u(-0.5, 0.5), "running_var": u(0.5, 2.0)}


def relu_features(shape, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    return torch.relu(torch.randn(*shape, generator=generator, dtype=torch.float64)).to(dtype)


def load_bn(bn: torch.nn.Module, state: Mapping[str, torch.Tensor], prefix: str) -> None:
    bn.load_state_dict({**{k: state[f"{prefix}{k}"] for k in ("weight", "bias", "running_mean", "running_var")},
                        "num_batches_tracked": torch.tensor(0)})  # fmt: skip


def _size(case: Case, key: str) -> str:
    return "×".join(str(s) for s in case.arrays[key].shape)


# -------------------------------------------------------------------------------------------------------------
class ScratchSU(Exercise):
    grade_id = "su_forward_tests"
    solution_ids = ("su_forward",)
    title = "Exercise 1 (`ScratchSU`)"
    forbidden = ("m2s_lib.subtraction.SubtractionUnit", "m2s_lib.subtraction.AdditionUnit",
                 "m2s_lib.subtraction.MultiScaleSubtractionUnit", "m2s_lib.subtraction.upsample_like",
                 "m2s_lib.subtraction.ConvBNReLU")  # fmt: skip
    checks = (Check("eval mode", 3), Check("train mode", 2), Check("odd sizes", 2), Check("dtype", 1))
    hint = ("Eq. 1 in order: resize A to B's size (bilinear, corners not aligned), the element-wise absolute "
            "difference, then the unit's convolution, BatchNorm and ReLU")  # fmt: skip
    visible = (
        {"name": "8 channels, 4×4 → 8×8, float32, eval mode", "feeds": ("eval mode",), "c": 8, "n": 2,
         "a": (4, 4), "b": (8, 8), "dtype": "float32", "mode": "eval"},
        {"name": "8 channels, 4×4 → 8×8, float32, train mode", "feeds": ("train mode",), "c": 8, "n": 2,
         "a": (4, 4), "b": (8, 8), "dtype": "float32", "mode": "train"},
    )  # fmt: skip

    def make_case(self, spec: Mapping[str, Any], generator: torch.Generator) -> Case:
        c, n, dtype = spec["c"], spec["n"], DTYPES[spec["dtype"]]
        arrays = {"a": relu_features((n, c, *spec["a"]), generator, dtype),
                  "b": relu_features((n, c, *spec["b"]), generator, dtype),
                  "conv.weight": (torch.randn(c, c, 3, 3, generator=generator, dtype=torch.float64) / (3 * c**0.5)
                                  ).to(dtype),
                  "conv.bias": (0.1 * torch.randn(c, generator=generator, dtype=torch.float64)).to(dtype)}  # fmt: skip
        arrays.update({f"bn.{k}": v for k, v in bn_state(c, generator, dtype).items()})
        return Case(spec["name"], {"c": c, "mode": spec["mode"]}, arrays)

    def run(self, answer, case: Case) -> dict[str, Any]:
        dtype = case["a"].dtype
        unit = answer(case["c"]).to(dtype)
        for name in ("conv", "bn"):
            if not isinstance(getattr(unit, name, None), torch.nn.Module):
                raise WrongType(f"your unit has no module `{name}`: keep the `__init__` you were given")
        unit.conv.load_state_dict({"weight": case["conv.weight"], "bias": case["conv.bias"]})
        load_bn(unit.bn, case.arrays, "bn.")
        unit.train(case["mode"] == "train")
        with torch.no_grad():
            return {"out": unit(case["a"].clone(), case["b"].clone())}

    def reference(self, case: Case) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The library unit's output on ``case`` and the outputs of the common mistakes."""
        a, b = case["a"], case["b"]
        library = SubtractionUnit(case["c"]).to(a.dtype)
        library.conv[0].load_state_dict({"weight": case["conv.weight"], "bias": case["conv.bias"]})
        load_bn(library.conv[1], case.arrays, "bn.")
        library.train(case["mode"] == "train")
        conv, bn = library.conv[0], library.conv[1]
        with torch.no_grad():
            up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
            mistakes = {
                "CBR(up(A) + B): the sum, not the absolute difference |A − B|": library.conv(up + b),
                "CBR(up(A) − B): the difference without its absolute value": library.conv(up - b),
                "|up(A) − B| alone: the conv + BatchNorm + ReLU is missing": torch.abs(up - b),
                "ReLU(conv(|up(A) − B|)): the BatchNorm is missing": torch.relu(conv(torch.abs(up - b))),
                "BN(conv(|up(A) − B|)): the final ReLU is missing": bn(conv(torch.abs(up - b))),
                "up-sampling with align_corners=True: use align_corners=False, as the library does": library.conv(
                    torch.abs(F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) - b)),
                "up-sampling with mode='nearest': use a bilinear up-sampling": library.conv(
                    torch.abs(F.interpolate(a, size=b.shape[-2:], mode="nearest") - b)),
            }
            return library(a, b), mistakes

    def judge(self, case: Case, outputs: Mapping[str, torch.Tensor]) -> list[CheckResult]:
        expected, mistakes = self.reference(case)
        out = outputs["out"]
        values = compare_tensor(out, expected, mistakes)
        return [self.result(name, dtype_mistake(out, expected.dtype) if name == "dtype" else values)
                for name in case.feeds]  # fmt: skip


# -------------------------------------------------------------------------------------------------------------
class SUParameterCount(Exercise):
    grade_id = "su_param_count_tests"
    solution_ids = ("su_param_count",)
    title = "Exercise 2 (`su_parameter_count`)"
    forbidden = ("m2s_lib.profiling.count_parameters", "m2s_lib.subtraction.SubtractionUnit",
                 "m2s_lib.subtraction.AdditionUnit", "m2s_lib.subtraction.MultiScaleSubtractionUnit",
                 "m2s_lib.subtraction.ConvBNReLU")  # fmt: skip
    checks = (Check("C = 64", 1), Check("other widths", 1))
    hint = "count each part by hand: the 3×3 kernels of every channel pair, the convolution's bias, the BatchNorm"
    visible = ({"name": "C = 64", "feeds": ("C = 64",), "c": 64},)

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {"c": spec["c"]})

    def run(self, answer, case: Case) -> dict[str, Any]:
        return {"count": answer(case["c"])}

    def judge(self, case, outputs) -> list[CheckResult]:
        c = case["c"]
        mistakes = {
            "9C²: the convolution's bias and the BatchNorm's scale and shift are missing": 9 * c**2,
            "9C² + C: the BatchNorm's scale and shift are missing": 9 * c**2 + c,
            "9C² + 2C: the convolution's bias is missing": 9 * c**2 + 2 * c,
            "9C² + 5C: the running mean and variance are buffers, not parameters": 9 * c**2 + 5 * c,
            "C² + 3C: a 3×3 kernel has 9 weights per channel pair": c**2 + 3 * c,
        }
        return self.results(case, compare_number(outputs["count"], count_parameters(SubtractionUnit(c)), mistakes))


# -------------------------------------------------------------------------------------------------------------
class FusionParts(Exercise):
    grade_id = "fusion_parts_tests"
    solution_ids = ("fusion_parts",)
    title = "Exercise 3 (`fusion_parts`)"
    forbidden = ()
    checks = (Check("difference", 1), Check("shared part", 1), Check("edge cases and float32", 1))
    hint = "the identity of section 3: which part of a + b do both maps carry, and how often does the sum count it?"
    visible = ({"name": "4×8×16×16, float64", "feeds": ("difference", "shared part"), "shape": (4, 8, 16, 16),
                "dtype": "float64", "kind": "random"},)  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        dtype, shape = DTYPES[spec["dtype"]], spec["shape"]
        a = relu_features(shape, generator, dtype) if spec["kind"] != "scaled" else \
            (torch.rand(*shape, generator=generator, dtype=torch.float64) * 5).to(dtype)
        b = {"random": lambda: relu_features(shape, generator, dtype), "equal": a.clone,
             "zero": lambda: torch.zeros_like(a),
             "scaled": lambda: torch.rand(*shape, generator=generator, dtype=torch.float64).to(dtype)}[spec["kind"]]()
        return Case(spec["name"], {}, {"a": a, "b": b})

    def run(self, answer, case) -> dict[str, Any]:
        parts = answer(case["a"].clone(), case["b"].clone())
        exact(parts, (tuple, list), "the result (shared, difference)")
        if len(parts) != 2:
            raise WrongType(f"return a pair (shared, difference), got {len(parts)} items")
        return {"shared": parts[0], "difference": parts[1]}

    def judge(self, case, outputs) -> list[CheckResult]:
        a, b = case["a"], case["b"]
        difference = compare_tensor(outputs["difference"], torch.abs(a - b), {
            "a − b: the difference must not depend on the order of a and b (take its absolute value)": a - b,
            "b − a: the difference must not depend on the order of a and b (take its absolute value)": b - a,
        }) or dtype_mistake(outputs["difference"], a.dtype)
        shared = compare_tensor(outputs["shared"], 2 * torch.minimum(a, b), {
            "min(a, b): the sum counts the shared part twice": torch.minimum(a, b),
            "max(a, b)": torch.maximum(a, b),
            "a + b: that is the sum itself, shared part *and* difference": a + b,
        }) or dtype_mistake(outputs["shared"], a.dtype)
        named = {"difference": difference, "shared part": shared,
                 "edge cases and float32": difference and f"difference: {difference}" or shared and
                 f"shared part: {shared}"}  # fmt: skip
        return [self.result(name, named[name]) for name in case.feeds]


EXERCISES = (ScratchSU(), SUParameterCount(), FusionParts())
