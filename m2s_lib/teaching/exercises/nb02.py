"""Notebook 02's exercises: the dense full-one filter, its fast form (box sum), and the multi-scale subtraction unit.

Each is compared with the library (``FullOneFilter``, ``MultiScaleSubtractionUnit``) or a fixed formula, never with
another exercise's answer: the fast form is judged against the library's dense filter, and the MSU is run with the
library's ``F_k`` modules plugged in.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ...subtraction import FullOneFilter, MultiScaleSubtractionUnit
from .base import Case, Check, CheckResult, Exercise, WrongType, compare_tensor, dtype_mistake, exact
from .nb01 import DTYPES, bn_state, load_bn, relu_features

__all__ = ["EXERCISES", "FullOneDense", "FullOneFast", "ScratchMSU"]


def _map(spec, generator) -> torch.Tensor:
    return torch.rand(*spec["shape"], generator=generator, dtype=torch.float64).to(DTYPES[spec["dtype"]])


def dense_reference(x: torch.Tensor, k: int) -> torch.Tensor:
    return FullOneFilter(x.shape[1], k, impl="dense").to(x.dtype).filter(x)


class FullOneDense(Exercise):
    grade_id = "full_one_dense_tests"
    solution_ids = ("full_one_dense",)
    title = "Exercise 1 (`full_one_dense`)"
    forbidden = ("m2s_lib.subtraction.FullOneFilter", "m2s_lib.subtraction.make_filter_bank",
                 "m2s_lib.subtraction.MultiScaleSubtractionUnit")  # fmt: skip
    checks = (Check("k = 1", 1), Check("k = 3 and 5", 2), Check("other shapes and float32", 1))
    hint = "every output channel of an all-ones C×C×k×k kernel sums every input channel over a k×k window"
    visible = tuple({"name": f"2×6×10×10, float64, k = {k}", "feeds": ("k = 1",) if k == 1 else ("k = 3 and 5",),
                     "shape": (2, 6, 10, 10), "dtype": "float64", "k": k} for k in (1, 3, 5))  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {"k": spec["k"]}, {"x": _map(spec, generator)})

    def run(self, answer, case) -> dict[str, Any]:
        return {"out": answer(case["x"].clone(), case["k"])}

    def judge(self, case, outputs) -> list[CheckResult]:
        x, k = case["x"], case["k"]
        c = x.shape[1]
        ones = torch.ones(c, c, k, k, dtype=x.dtype)
        mistakes = {
            "a per-channel (depthwise) box sum: an all-ones C×C×k×k kernel also sums over the input channels":
                F.conv2d(x, torch.ones(c, 1, k, k, dtype=x.dtype), padding=k // 2, groups=c),
            "a box mean (a kernel of 1/(C·k²)), not a box sum": F.conv2d(x, ones, padding=k // 2) / (c * k * k),
            "a k×k box mean of each channel": F.avg_pool2d(x, k, stride=1, padding=k // 2),
        }  # fmt: skip
        out = outputs["out"]
        return self.results(case, compare_tensor(out, dense_reference(x, k), mistakes) or dtype_mistake(out, x.dtype))


class FullOneFast(Exercise):
    grade_id = "full_one_fast_tests"
    solution_ids = ("full_one_fast",)
    title = "Exercise 2 (`box_sum`, `full_one_fast`)"
    forbidden = FullOneDense.forbidden
    checks = (Check("box_sum", 2), Check("full_one_fast", 3), Check("wide boxes and float32", 1))
    hint = ("box_sum: a sum over the k×k neighbourhood with zero padding (an integral image, or any pooling or "
            "convolution that sums); full_one_fast: the box sum of the channel sum, the same map for every channel")
    visible = tuple({"name": f"2×6×10×10, float64, k = {k}", "feeds": ("box_sum", "full_one_fast"),
                     "shape": (2, 6, 10, 10), "dtype": "float64", "k": k} for k in (1, 3, 5, 7))  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {"k": spec["k"]}, {"x": _map(spec, generator)})

    def run(self, answer, case) -> dict[str, Any]:
        exact(answer, tuple, "the answer (box_sum, full_one_fast)")
        box_sum, full_one_fast = answer
        x, k = case["x"], case["k"]
        return {"box": box_sum(x.sum(dim=1, keepdim=True), k), "out": full_one_fast(x.clone(), k)}

    def judge(self, case, outputs) -> list[CheckResult]:
        x, k = case["x"], case["k"]
        c, pad = x.shape[1], k // 2
        s = x.sum(dim=1, keepdim=True)
        box = F.avg_pool2d(s, k, stride=1, padding=pad, count_include_pad=True) * k * k
        box_wrong = compare_tensor(outputs["box"], box, {
            "a box mean (avg_pool2d), not a box sum: multiply by k²": box / (k * k),
            "a box mean that ignores the padding (count_include_pad=False), not a box sum":
                F.avg_pool2d(s, k, stride=1, padding=pad, count_include_pad=False),
        }) or dtype_mistake(outputs["box"], x.dtype)  # fmt: skip
        fast_wrong = compare_tensor(outputs["out"], dense_reference(x, k), {
            "the box mean of the channel sum, not its box sum: multiply by k²": (box / (k * k)).expand_as(x),
            "the box sum of the channel *mean*: an all-ones kernel sums the channels": (box / c).expand_as(x),
            "a per-channel box sum: every output channel must sum all input channels":
                F.avg_pool2d(x, k, stride=1, padding=pad) * k * k,
        }) or dtype_mistake(outputs["out"], x.dtype)  # fmt: skip
        named = {"box_sum": box_wrong, "full_one_fast": fast_wrong,
                 "wide boxes and float32": box_wrong and f"box_sum: {box_wrong}" or fast_wrong and
                 f"full_one_fast: {fast_wrong}"}  # fmt: skip
        return [self.result(name, named[name]) for name in case.feeds]


class ScratchMSU(Exercise):
    grade_id = "msu_forward_tests"
    solution_ids = ("msu_forward",)
    title = "Exercise 3 (`ScratchMSU`)"
    forbidden = ("m2s_lib.subtraction.MultiScaleSubtractionUnit", "m2s_lib.subtraction.SubtractionUnit",
                 "m2s_lib.subtraction.AdditionUnit", "m2s_lib.subtraction.upsample_like",
                 "m2s_lib.subtraction.ConvBNReLU")  # fmt: skip
    checks = (Check("eval mode", 3), Check("train mode", 2), Check("other kernel sets", 2), Check("dtype", 1))
    hint = ("Eq. 2 as in the authors' code: up-sample A to B's size, add the pixel term (k = 1) and, for each larger "
            "k, the absolute difference of the two filtered maps, then one conv + BatchNorm + ReLU")
    visible = tuple({"name": f"6 channels, kernels (1, 3, 5), 4×4 → 8×8, float64, {m} mode", "feeds": (f"{m} mode",),
                     "c": 6, "sizes": (1, 3, 5), "a": (4, 4), "b": (8, 8), "dtype": "float64", "mode": m}
                    for m in ("eval", "train"))  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        c, dtype = spec["c"], DTYPES[spec["dtype"]]
        arrays = {"a": relu_features((2, c, *spec["a"]), generator, dtype),
                  "b": relu_features((2, c, *spec["b"]), generator, dtype),
                  "conv.weight": (torch.randn(c, c, 3, 3, generator=generator, dtype=torch.float64) / (3 * c**0.5)
                                  ).to(dtype),
                  "conv.bias": (0.1 * torch.randn(c, generator=generator, dtype=torch.float64)).to(dtype)}  # fmt: skip
        arrays.update({f"bn.{k}": v for k, v in bn_state(c, generator, dtype).items()})
        for k in spec["sizes"]:
            if k > 1:
                arrays.update({f"f{k}.{key}": v for key, v in bn_state(c, generator, dtype).items()})
        return Case(spec["name"], {"c": c, "sizes": list(spec["sizes"]), "mode": spec["mode"]}, arrays)

    @staticmethod
    def filters(case: Case) -> dict[str, FullOneFilter]:
        """The library's F_k with the case's BatchNorms (plugged into the student's unit and into the reference)."""
        out = {}
        for k in case["sizes"]:
            if k > 1:
                f = FullOneFilter(case["c"], k).to(case["a"].dtype)
                load_bn(f.norm, case.arrays, f"f{k}.")
                out[str(k)] = f
        return out

    def run(self, answer, case) -> dict[str, Any]:
        dtype = case["a"].dtype
        unit = answer(case["c"], list(case["sizes"])).to(dtype)
        for name in ("conv", "bn"):
            if not isinstance(getattr(unit, name, None), torch.nn.Module):
                raise WrongType(f"your unit has no module `{name}`: keep the `__init__` you were given")
        unit.conv.load_state_dict({"weight": case["conv.weight"], "bias": case["conv.bias"]})
        load_bn(unit.bn, case.arrays, "bn.")
        unit.filters = torch.nn.ModuleDict(self.filters(case))
        unit.train(case["mode"] == "train")
        with torch.no_grad():
            return {"out": unit(case["a"].clone(), case["b"].clone())}

    def reference(self, case: Case) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a, b = case["a"], case["b"]
        fk = {int(k): f for k, f in self.filters(case).items()}
        library = MultiScaleSubtractionUnit(case["c"], case["sizes"], filters={str(k): f for k, f in fk.items()})
        library = library.to(a.dtype)
        library.conv[0].load_state_dict({"weight": case["conv.weight"], "bias": case["conv.bias"]})
        load_bn(library.conv[1], case.arrays, "bn.")
        library.train(case["mode"] == "train")
        for f in fk.values():
            f.train(case["mode"] == "train")
        with torch.no_grad():
            up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
            pixel = torch.abs(up - b) if 1 in case["sizes"] else torch.zeros_like(b)
            zero = torch.zeros_like(b)
            mistakes = {
                "the unit without its k = 1 term |up(A) − B|": library.conv(
                    sum((torch.abs(f(up) - f(b)) for f in fk.values()), zero)),
                "the SU: only the k = 1 term": library.conv(torch.abs(up - b)),
                "|F_k(up(A) − B)|: filter the two maps, then subtract (not the other way round)": library.conv(
                    pixel + sum((torch.abs(f(up - b)) for f in fk.values()), zero)),
                "Σ F_k(up A) − F_k(B) without the absolute values": library.conv(
                    pixel + sum((f(up) - f(b) for f in fk.values()), zero)),
                "F_k applied to A before up-sampling it": library.conv(pixel + sum((torch.abs(F.interpolate(
                    f(a), size=b.shape[-2:], mode="bilinear", align_corners=False) - f(b)) for f in fk.values()), zero)),
            }  # fmt: skip
            return library(a, b), mistakes

    def judge(self, case, outputs: Mapping[str, torch.Tensor]) -> list[CheckResult]:
        expected, mistakes = self.reference(case)
        out = outputs["out"]
        values = compare_tensor(out, expected, mistakes)
        return [self.result(name, dtype_mistake(out, expected.dtype) if name == "dtype" else values)
                for name in case.feeds]  # fmt: skip


EXERCISES = (FullOneDense(), FullOneFast(), ScratchMSU())
