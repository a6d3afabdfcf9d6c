"""Notebook 03's exercises: the pyramid's orders (``pyramid_order``) and the CE sums (``ce_by_hand``).

Each case is an ``MMSM`` with weights drawn for the case and five random levels; the inputs of each exercise are
the *library's* features (order n − 1 for an order, every MS_n^i for the sums), so the two exercises are judged
independently, both against the library's forward pass.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import torch

from ...mmsm import MMSM, ce_key, ms_key, unit_name
from .base import Case, Check, CheckResult, Exercise, WrongType, compare_tensor, dtype_mistake, exact
from .nb01 import DTYPES, bn_state, relu_features

__all__ = ["EXERCISES", "CESums", "PyramidOrder"]

STRIDES = (4, 4, 8, 16, 32)


def _state(module: torch.nn.Module, generator: torch.Generator, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every float entry of ``module``'s state dict drawn from ``generator`` (convolutions ~ N(0, 1/(9C)),
    biases small, BatchNorms away from 1/0/0/1)."""
    out = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        leaf = key.rsplit(".", 1)[-1]
        shape = tuple(value.shape)
        if value.dim() == 4:
            drawn = torch.randn(*shape, generator=generator, dtype=torch.float64) / (3 * shape[1] ** 0.5)
        elif leaf in ("weight", "bias", "running_mean", "running_var"):
            drawn = bn_state(shape[0], generator, torch.float64)[leaf] if leaf != "bias" or key.replace(
                "bias", "running_mean") in module.state_dict() else 0.1 * torch.randn(*shape, generator=generator,
                                                                                   dtype=torch.float64)  # fmt: skip
        else:
            continue
        out[key] = drawn.to(dtype)
    return out


class _PyramidExercise(Exercise):
    """Shared: the case's MMSM (built in the kernel and in the judge from the case's arrays) and levels."""

    def make_case(self, spec, generator) -> Case:
        dtype = DTYPES[spec["dtype"]]
        params = {k: spec[k] for k in ("c", "unit", "wiring", "sizes", "mode")}
        params["sizes"] = list(params["sizes"])
        module = self.build(params, {}, dtype)
        arrays = {f"state/{k}": v for k, v in _state(module, generator, dtype).items()}
        h, w = spec["hw"]
        for i, s in enumerate(STRIDES, 1):
            arrays[f"level{i}"] = relu_features((spec.get("n", 2), spec["c"], h // s, w // s), generator, dtype)
        case = Case(spec["name"], params, arrays)
        features = self.library(case)
        arrays.update({f"ms/{n}_{i}": features[ms_key(n, i)] for n in range(1, self.input_orders + 1)
                       for i in range(1, 7 - n)})  # fmt: skip
        return case

    input_orders = 4

    @staticmethod
    def build(params: Mapping[str, Any], arrays: Mapping[str, torch.Tensor], dtype: torch.dtype) -> MMSM:
        module = MMSM(params["c"], unit=params["unit"], wiring=params["wiring"], kernel_sizes=params["sizes"])
        module = module.to(dtype)
        state = {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}
        if state:
            module.load_state_dict(state, strict=False)
        module.train(params["mode"] == "train")
        return module

    def module(self, case: Case) -> MMSM:
        return self.build(case.params, case.arrays, case["level1"].dtype)

    def library(self, case: Case) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return dict(self.module(case)([case[f"level{i}"] for i in range(1, 6)]))

    def scan_extra(self, tree, source: str) -> list[str]:
        """Calling the module itself (``mmsm(levels)``, ``mmsm.forward``) runs the library's whole pyramid."""
        found = []
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.args.args):
            first = fn.args.args[0].arg
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == first:
                    found.append(f"calls the library's module `{first}(...)` (its forward pass) in {fn.name}")
                if isinstance(node, ast.Attribute) and node.attr == "forward" and isinstance(node.value, ast.Name) \
                        and node.value.id == first:  # fmt: skip
                    found.append(f"uses `{first}.forward` in {fn.name}")
        return found


class PyramidOrder(_PyramidExercise):
    grade_id = "pyramid_order_tests"
    solution_ids = ("pyramid_order",)
    title = "Exercise 1 (`pyramid_order`)"
    forbidden = ("m2s_lib.mmsm.MMSM.forward", "m2s_lib.mmsm.MMSM.unit_inputs")
    checks = (Check("orders 2 to 4", 4), Check("order 5", 2), Check("other units, sizes and dtypes", 2))
    hint = ("each unit compares the next coarser feature of the order below with its own level's (the coarser one "
            "first); the order-5 unit's coarse input passes one more CBR first")
    visible = tuple({"name": f"unit msu, 8 channels, 64×64 input, float64, {m} mode", "feeds": ("orders 2 to 4",
                     "order 5"), "c": 8, "unit": "msu", "wiring": "official", "sizes": (1, 3, 5), "hw": (64, 64),
                     "dtype": "float64", "mode": m} for m in ("eval", "train"))  # fmt: skip

    def run(self, answer, case) -> dict[str, Any]:
        mmsm, out = self.module(case), {}
        with torch.no_grad():
            for n in range(2, 6):
                previous = {i: case[f"ms/{n - 1}_{i}"].clone() for i in range(1, 8 - n)}
                ours = exact(answer(mmsm, previous, n), dict, f"pyramid_order(mmsm, previous, {n})")
                if sorted(ours) != list(range(1, 7 - n)):
                    raise WrongType(f"pyramid_order(…, {n}) must return a dict with the levels "
                                    f"{list(range(1, 7 - n))}, got keys {sorted(map(str, ours))}")  # fmt: skip
                out.update({f"MS{n}_{i}": ours[i] for i in range(1, 7 - n)})
        return out

    def judge(self, case, outputs) -> list[CheckResult]:
        library, mmsm = self.library(case), self.module(case)
        wrong: dict[int, str | None] = {}
        for n in range(2, 6):
            for i in range(1, 7 - n):
                got, expected = outputs[f"MS{n}_{i}"], library[ms_key(n, i)]
                mistakes = {}
                if n == 5:
                    with torch.no_grad():
                        mistakes["the order-5 unit without the extra CBR (mmsm.top_input) on its coarse input"] = \
                            mmsm.units[unit_name(5, 1)](library[ms_key(4, 2)], library[ms_key(4, 1)])
                problem = compare_tensor(got, expected, mistakes) or dtype_mistake(got, expected.dtype)
                if problem and tuple(got.shape) == tuple(library[ms_key(n - 1, i + 1)].shape) != tuple(expected.shape):
                    problem += ": the unit returned the coarser level's size (pass the coarser feature first)"
                if problem and wrong.get(n) is None:
                    wrong[n] = f"{ms_key(n, i)}: {problem}"
        low = next((wrong[n] for n in (2, 3, 4) if wrong.get(n)), None)
        named = {"orders 2 to 4": low, "order 5": wrong.get(5),
                 "other units, sizes and dtypes": low or wrong.get(5)}  # fmt: skip
        return [self.result(name, named[name]) for name in case.feeds]


class CESums(_PyramidExercise):
    grade_id = "ce_sums_tests"
    solution_ids = ("ce_sums",)
    title = "Exercise 2 (`ce_by_hand`)"
    forbidden = ("m2s_lib.mmsm.MMSM.forward", "m2s_lib.mmsm.MMSM.orders")
    checks = (Check("official wiring", 3), Check("paper wiring", 3), Check("other units, sizes and dtypes", 1))
    hint = "the table in section 1: which orders each CE^i sums in each wiring, and which levels have a fuse conv"
    input_orders = 5
    visible = tuple({"name": f"{w} wiring, unit msu, 8 channels, 64×64 input, float64, {m} mode",
                     "feeds": (f"{w} wiring",), "c": 8, "unit": "msu", "wiring": w, "sizes": (1, 3, 5),
                     "hw": (64, 64), "dtype": "float64", "mode": m}
                    for w in ("official", "paper") for m in ("eval", "train"))  # fmt: skip

    def run(self, answer, case) -> dict[str, Any]:
        mmsm = self.module(case)
        ms = {(n, i): case[f"ms/{n}_{i}"].clone() for n in range(1, 6) for i in range(1, 7 - n)}
        with torch.no_grad():
            ours = exact(answer(mmsm, ms, case["wiring"]), dict, "ce_by_hand(...)")
        if sorted(ours) != [1, 2, 3, 4]:
            raise WrongType(f"ce_by_hand must return a dict {{1: CE^1, …, 4: CE^4}}, got keys {sorted(map(str, ours))}")
        return {f"CE{i}": ours[i] for i in range(1, 5)}

    def judge(self, case, outputs) -> list[CheckResult]:
        library, mmsm = self.library(case), self.module(case)
        wiring, problem = case["wiring"], None
        ms = {(n, i): library[ms_key(n, i)] for n in range(1, 6) for i in range(1, 7 - n)}
        with torch.no_grad():
            for i in range(1, 5):
                with_own = sum(ms[n, i] for n in range(1, 7 - i))
                without_own = sum(ms[n, i] for n in range(2, 7 - i))
                key = f"CE{i}"
                conv = mmsm.fuse[key] if key in mmsm.fuse else (lambda x: x)
                mistakes = {"the sum without its fuse convolution": with_own if wiring == "paper" else without_own}
                if wiring == "official":
                    mistakes["the sum with the level's own MS_1^i: that is the paper's Eq. 3, not the official "
                             "wiring"] = conv(with_own)  # fmt: skip
                else:
                    mistakes["the sum without the level's own MS_1^i: that is the official wiring, not Eq. 3"] = \
                        conv(without_own)
                expected = library[ce_key(i)]
                wrong = compare_tensor(outputs[key], expected, mistakes) or dtype_mistake(outputs[key], expected.dtype)
                if wrong:
                    problem = f"{ce_key(i)}: {wrong}"
                    break
        return self.results(case, problem)


EXERCISES = (PyramidOrder(), CESums())
