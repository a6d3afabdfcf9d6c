"""Notebook 04's exercises: the encoder levels and the decoder of M2SNet, assembled by hand.

Both run on a small M2SNet (ResNet-18-D encoder, random weights) that the student's kernel and the grader build
alike from a seed in the case, with non-trivial BatchNorms; the grader's reference is the library's own
``M2SNet.forward_features`` / ``Decoder`` on the same network.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from .base import Case, Check, CheckResult, Exercise, WrongType, compare_tensor, dtype_mistake, exact

__all__ = ["EXERCISES", "Decode", "Encode", "compare", "seeded_model"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
ENCODER = "resnet18d"  # quick on a CPU; the exercises work for any timm encoder with five levels
TOP_CHANNELS = 512  # resnet18d's E5


def seeded_model(width: int, classes: int, seed: int, dtype: torch.dtype, train: bool):
    """The same M2SNet in the student's kernel and in the grader: every weight drawn from ``seed`` (1/√fan-in
    kernels, small biases, non-trivial BatchNorms), whatever the global generator holds; building it leaves the
    kernel's global generator as it was."""
    from ...model import M2SNet
    from ..notebook_utils import randomise_batchnorms

    with torch.random.fork_rng(devices=[]):  # the constructor's own initialisation draws from the global generator
        net = M2SNet(ENCODER, encoder_weights=None, channels=width, classes=classes)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            scale = p[0].numel() ** -0.5 if p.dim() > 1 else 0.05
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale)
    randomise_batchnorms(net, generator)
    return net.to(dtype).train(train)


def compare(actual: torch.Tensor, expected: torch.Tensor, mistakes: Mapping[str, torch.Tensor] | None = None,
            **tolerance) -> str | None:  # fmt: skip
    """:func:`compare_tensor`, except that a known mistake is named even when its shape differs from the reference's
    (an output of the wrong size is usually one of them: a missing max-pool, a missing reduction)."""
    problem = compare_tensor(actual, expected, mistakes, **tolerance)
    if problem and problem.startswith("shape"):
        for description, output in (mistakes or {}).items():
            if compare_tensor(actual, output, None, **tolerance) is None:
                return f"your output equals {description}"
    return problem


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _calls_model(tree: ast.AST, names: tuple[str, ...], attrs: tuple[str, ...]) -> list[str]:
    """Calls such as ``model(x)`` or ``model.decoder(e5, ce)``: the library's whole forward pass."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in names or isinstance(f, ast.Attribute) and f.attr in attrs:
                found.append(f"calls {ast.unparse(f)}(…), the library's own forward pass")
    return found


# -------------------------------------------------------------------------------------------------------------
class Encode(Exercise):
    grade_id = "encode_tests"
    solution_ids = ("encode",)
    title = "Exercise 1 (`encode_by_hand`)"
    forbidden = ("m2s_lib.model.M2SNet.forward_features", "m2s_lib.model.M2SNet.encode",
                 "m2s_lib.model.M2SNet.forward")  # fmt: skip
    checks = (Check("encoder levels E^1 … E^5", 2), Check("reduced levels MS_1^1 … MS_1^5", 2),
              Check("another width (E^1 needs a reduction too)", 1), Check("train mode and float64", 1))
    hint = ("the encoder's first map has stride 2, and the stem's max-pool brings it to stride 4; a level goes "
            "through its reduction when `model.reduce` has one for it, and is used as it is otherwise")
    visible = ({"name": "width 64, one 64×64 image", "feeds": ("encoder levels E^1 … E^5",
                "reduced levels MS_1^1 … MS_1^5"), "width": 64, "shape": (1, 3, 64, 64), "dtype": "float32",
                "mode": "eval"},)  # fmt: skip

    def make_case(self, spec: Mapping[str, Any], generator: torch.Generator) -> Case:
        x = torch.randn(*spec["shape"], generator=generator, dtype=torch.float64).to(DTYPES[spec["dtype"]])
        return Case(spec["name"], {"width": spec["width"], "mode": spec["mode"], "seed": _seed(generator)}, {"x": x})

    def _model(self, case: Case):
        return seeded_model(case["width"], 1, case["seed"], case["x"].dtype, case["mode"] == "train")

    def run(self, answer, case: Case) -> dict[str, Any]:
        with torch.no_grad():
            result = answer(self._model(case), case["x"].clone())
        exact(result, (tuple, list), "the result (e, ms1)")
        if len(result) != 2 or any(type(r) not in (list, tuple) or len(r) != 5 for r in result):
            raise WrongType("return two lists of five tensors, (e, ms1)")
        e, ms1 = result
        return {**{f"E{i}": e[i - 1] for i in range(1, 6)}, **{f"MS_1^{i}": ms1[i - 1] for i in range(1, 6)}}

    def judge(self, case: Case, outputs: Mapping[str, torch.Tensor]) -> list[CheckResult]:
        net, x = self._model(case), case["x"]
        with torch.no_grad():  # forward_features' first two steps (its MMSM and decoder are not needed here)
            library = net.encode(x)
            library.update({f"MS_1^{i}": net.reduce[f"E{i}"](library[f"E{i}"]) if f"E{i}" in net.reduce else
                            library[f"E{i}"] for i in range(1, 6)})  # fmt: skip
            raw = net.encoder(x)
        levels, reduced = None, None
        for i in range(1, 6):
            mistakes = {"the stem's output before the max-pool (stride 2 instead of 4)": raw[0]} if i == 1 else {}
            problem = compare(outputs[f"E{i}"], library[f"E{i}"], mistakes) or \
                dtype_mistake(outputs[f"E{i}"], x.dtype)
            levels = levels or (problem and f"E^{i}: {problem}")
            mistakes = ({f"E^{i} itself: the level was not reduced to the model's width": library[f"E{i}"]}
                        if f"E{i}" in net.reduce else {})  # fmt: skip
            problem = compare(outputs[f"MS_1^{i}"], library[f"MS_1^{i}"], mistakes) or \
                dtype_mistake(outputs[f"MS_1^{i}"], x.dtype)
            reduced = reduced or (problem and f"MS_1^{i}: {problem}")
        named = {"encoder levels E^1 … E^5": levels, "reduced levels MS_1^1 … MS_1^5": reduced}
        return [self.result(name, named.get(name, levels or reduced)) for name in case.feeds]

    def scan_extra(self, tree, source: str) -> list[str]:
        return _calls_model(tree, ("model",), ())


# -------------------------------------------------------------------------------------------------------------
DECODE_KEYS = ("CE^5", "D4", "D3", "D2", "D1", "logits")


class Decode(Exercise):
    grade_id = "decode_tests"
    solution_ids = ("decode",)
    title = "Exercise 2 (`decode_by_hand`)"
    forbidden = ("m2s_lib.model.Decoder.forward", "m2s_lib.model.M2SNet.forward_features",
                 "m2s_lib.model.M2SNet.forward")  # fmt: skip
    checks = (Check("CE^5 from the top level", 1), Check("decoder stages D4, D3, D2", 3), Check("head D1", 2),
              Check("logits at the input's size", 1), Check("two classes, train mode, odd sizes, float64", 2))
    hint = ("top-down: CE^5 from the raw top level; each D_k from the stage above, resized to CE^k's size, plus "
            "CE^k; the head makes D1 the same way from D2 and CE^1; the logits are D1 resized to the input's size "
            "the way `up` resizes")  # fmt: skip
    visible = ({"name": "width 64, one 64×64 image", "feeds": ("CE^5 from the top level", "decoder stages D4, D3, D2",
                "head D1", "logits at the input's size"), "width": 64, "classes": 1, "n": 1, "size": (64, 64),
                "dtype": "float32", "mode": "eval"},)  # fmt: skip
    _groups = {"CE^5 from the top level": ("CE^5",), "decoder stages D4, D3, D2": ("D4", "D3", "D2"),
               "head D1": ("D1",), "logits at the input's size": ("logits",)}

    def make_case(self, spec: Mapping[str, Any], generator: torch.Generator) -> Case:
        (h, w), n, width, dtype = spec["size"], spec["n"], spec["width"], DTYPES[spec["dtype"]]
        shapes = {"E5": (TOP_CHANNELS, 32), "CE^4": (width, 16), "CE^3": (width, 8), "CE^2": (width, 4),
                  "CE^1": (width, 4)}  # channels and stride of each input
        arrays = {k: torch.randn(n, c, math.ceil(h / s), math.ceil(w / s), generator=generator,
                                 dtype=torch.float64).to(dtype) for k, (c, s) in shapes.items()}  # fmt: skip
        params = {"width": width, "classes": spec["classes"], "mode": spec["mode"], "size": [h, w],
                  "seed": _seed(generator)}  # fmt: skip
        return Case(spec["name"], params, arrays)

    def _model(self, case: Case):
        return seeded_model(case["width"], case["classes"], case["seed"], case["E5"].dtype, case["mode"] == "train")

    def run(self, answer, case: Case) -> dict[str, Any]:
        ce = {f"CE^{i}": case[f"CE^{i}"].clone() for i in range(1, 5)}
        with torch.no_grad():
            result = answer(self._model(case), case["E5"].clone(), ce, tuple(case["size"]))
        exact(result, dict, "the result")
        missing = [k for k in DECODE_KEYS if k not in result]
        if missing:
            raise WrongType(f"the dict has no {missing[0]!r} (keys: {sorted(map(str, result))})")
        return {k: result[k] for k in DECODE_KEYS}

    def judge(self, case: Case, outputs: Mapping[str, torch.Tensor]) -> list[CheckResult]:
        from ...subtraction import upsample_like

        net, size = self._model(case), tuple(case["size"])
        ce = {f"CE^{i}": case[f"CE^{i}"] for i in range(1, 5)}
        dec = net.decoder
        with torch.no_grad():
            ref = dict(dec(case["E5"], ce))
            ref["logits"] = F.interpolate(ref["D1"], size=size, mode="bilinear", align_corners=False)
            mistakes = {
                "D4": {"the stage applied to up(CE^5) alone: CE^4 was not added":
                       dec.stages["D4"](upsample_like(ref["CE^5"], ce["CE^4"]))},
                "D1": {"the head applied to up(D2) alone: CE^1 was not added":
                       dec.head(upsample_like(ref["D2"], ce["CE^1"]))},
                "logits": {"D1 resized with mode='nearest'": F.interpolate(ref["D1"], size=size, mode="nearest"),
                           "D1 resized with align_corners=True": F.interpolate(ref["D1"], size=size, mode="bilinear",
                                                                               align_corners=True)},
            }  # fmt: skip
        problems = {}
        for key in DECODE_KEYS:
            problem = compare(outputs[key], ref[key], mistakes.get(key)) or \
                dtype_mistake(outputs[key], case["E5"].dtype)
            problems[key] = problem and f"{key}: {problem}"
        first = next((p for p in problems.values() if p), None)
        return [self.result(name, next((problems[k] for k in self._groups[name] if problems[k]), None)
                            if name in self._groups else first) for name in case.feeds]  # fmt: skip

    def scan_extra(self, tree, source: str) -> list[str]:
        return _calls_model(tree, ("model", "dec"), ("decoder",))


EXERCISES = (Encode(), Decode())
