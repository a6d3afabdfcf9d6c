"""Notebook 06's exercises: one step of the paper's recipe by hand — the two parameter groups, the schedule's
triangle and the SGD update. References: the model's own ``encoder`` module, ``m2s_lib.engine.optim.lr_factor`` and
``torch.optim.SGD``."""
from __future__ import annotations

from typing import Any

import torch

from .base import Case, Check, CheckResult, Exercise, WrongType, compare_tensor, exact

__all__ = ["EXERCISES", "ParamGroups", "SGDUpdate", "TriangleFactor"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


# -------------------------------------------------------------------------------------------------------------
class ParamGroups(Exercise):
    grade_id = "param_groups_tests"
    solution_ids = ("param_groups",)
    title = "Exercise 1 (`param_groups`)"
    forbidden = ("m2s_lib.engine.optim.build_optimizer",)
    checks = (Check("two named groups at their learning rates, with empty buffers", 1),
              Check("the encoder group holds exactly the encoder's parameters", 1),
              Check("the head group holds every other parameter, each once", 1))
    hint = ("model.encoder is the encoder; the head is every parameter of the model that is not one of the "
            "encoder's (compare parameters by identity, not by value)")
    visible = ({"name": "M2SNet (ResNet-18-D, width 16), head 0.05, encoder 0.005", "feeds": (
        "two named groups at their learning rates, with empty buffers",
        "the encoder group holds exactly the encoder's parameters",
        "the head group holds every other parameter, each once"), "model": "m2snet", "width": 16, "head_lr": 0.05,
        "encoder_lr": 0.005},)  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {k: spec[k] for k in ("model", "width", "head_lr", "encoder_lr")})

    @staticmethod
    def _model(case: Case):
        from ...model import build_model

        return build_model(case["model"], encoder_name="resnet18d", encoder_weights=None, channels=case["width"])

    def run(self, answer, case) -> dict[str, Any]:
        model = self._model(case)
        groups = exact(answer(model, case["head_lr"], case["encoder_lr"]), list, "the result")
        if len(groups) != 2 or any(type(g) is not dict for g in groups):
            raise WrongType("return a list of two dicts (encoder, head)")
        index = {id(p): i for i, p in enumerate(model.parameters())}
        by_name = {g.get("name"): g for g in groups}
        out: dict[str, Any] = {"named": int(set(by_name) == {"encoder", "head"}),
                               "buffers_empty": int(all(type(g.get("buffers")) is dict and not g["buffers"]
                                                        for g in groups))}  # fmt: skip
        for name in ("encoder", "head"):
            group = by_name.get(name, {})
            lr = group.get("base_lr")
            out[f"{name}_lr"] = float(lr) if type(lr) in (int, float) else float("nan")
            params = group.get("params", [])
            params = list(params) if type(params) in (list, tuple) else []
            out[f"{name}_params"] = torch.tensor([index.get(id(p), -1) for p in params], dtype=torch.int64)
        return out

    def judge(self, case, outputs) -> list[CheckResult]:
        model = self._model(case)
        params = list(model.parameters())
        encoder_ids = {id(p) for p in model.encoder.parameters()}
        encoder = {i for i, p in enumerate(params) if id(p) in encoder_ids}
        head = set(range(len(params))) - encoder
        want = (float(case["encoder_lr"]), float(case["head_lr"]))
        lrs = (float(outputs["encoder_lr"]), float(outputs["head_lr"]))
        if int(outputs["named"]) != 1:
            named = "name the two groups 'encoder' and 'head'"
        elif lrs != want:
            named = ("the encoder learns at encoder_lr (a tenth), the head at head_lr — check which is which"
                     if lrs == want[::-1] else f"base_lr {lrs[0]:g} (encoder) and {lrs[1]:g} (head), expected "
                     f"{want[0]:g} and {want[1]:g}")  # fmt: skip
        else:
            named = None if int(outputs["buffers_empty"]) == 1 else "each group needs an empty dict under 'buffers'"
        mine_encoder = [int(i) for i in outputs["encoder_params"].tolist()]
        mine_head = [int(i) for i in outputs["head_params"].tolist()]
        wrong_encoder = None if set(mine_encoder) == encoder and len(mine_encoder) == len(encoder) else (
            f"the encoder group holds {len(set(mine_encoder) & encoder)} of the encoder's {len(encoder)} parameters "
            f"and {len(set(mine_encoder) - encoder)} others" + (", some twice" if len(set(mine_encoder)) <
                                                                 len(mine_encoder) else ""))  # fmt: skip
        wrong_head = None if set(mine_head) == head and len(mine_head) == len(head) else (
            f"the head group holds {len(set(mine_head) & head)} of the {len(head)} non-encoder parameters and "
            f"{len(set(mine_head) - head)} others" + (", some twice" if len(set(mine_head)) < len(mine_head) else ""))
        found = dict(zip((c.name for c in self.checks), (named, wrong_encoder, wrong_head)))
        return [self.result(name, found[name]) for name in case.feeds]


# -------------------------------------------------------------------------------------------------------------
class TriangleFactor(Exercise):
    grade_id = "triangle_factor_tests"
    solution_ids = ("triangle_factor",)
    title = "Exercise 2 (`triangle_factor`)"
    forbidden = ("m2s_lib.engine.optim.lr_factor", "m2s_lib.engine.optim.TriangularSchedule",
                 "m2s_lib.engine.optim.build_scheduler")  # fmt: skip
    checks = (Check("the authors' triangle (peak 0.5)", 2), Check("the top moved to another peak", 1))
    hint = ("count the periods from 1 out of E + 1, so that neither end gets 0; the rising side reaches 1 at x = "
            "peak and the falling side 0 at x = 1; never below 0")
    visible = ({"name": "50 epochs, peak 0.5 (the paper)", "feeds": ("the authors' triangle (peak 0.5)",),
                "periods": 50, "peak": 0.5},
               {"name": "10 epochs, peak 0.2", "feeds": ("the top moved to another peak",), "periods": 10,
                "peak": 0.2})  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        return Case(spec["name"], {"periods": spec["periods"], "peak": spec["peak"]})

    def run(self, answer, case) -> dict[str, Any]:
        values = []
        for e in range(case["periods"]):
            value = answer(e, case["periods"], case["peak"])
            if type(value) is torch.Tensor and value.numel() == 1:
                value = float(value)
            if type(value) not in (int, float) and not (hasattr(value, "dtype") and type(value).__module__ == "numpy"
                                                        and getattr(value, "shape", None) == ()):
                raise WrongType(f"period {e}: expected a number, got {type(value).__name__}")
            values.append(float(value))
        return {"factors": torch.tensor(values, dtype=torch.float64)}

    def judge(self, case, outputs) -> list[CheckResult]:
        from ...engine.optim import lr_factor

        periods, peak = case["periods"], case["peak"]
        reference = torch.tensor([lr_factor(e, periods, peak) for e in range(periods)], dtype=torch.float64)
        e = torch.arange(periods, dtype=torch.float64)
        x, x1 = e / periods, (e + 1) / (periods + 1)
        mistakes = {
            "the triangle of e / E instead of (e + 1) / (E + 1)": torch.minimum(x / peak, (1 - x) / (1 - peak)).clamp(min=0),
            "the authors' peak-0.5 triangle: the peak argument was ignored": (1 - (2 * x1 - 1).abs()).clamp(min=0),
        }  # fmt: skip
        got = outputs["factors"]
        problem = compare_tensor(got, reference, mistakes, rtol=1e-12, atol=1e-12)
        if problem and problem.startswith("values differ"):
            k = int(((got - reference).abs() > 1e-12).nonzero()[0])
            problem = f"period {k} of {periods}: got {float(got[k]):.6g}, expected {float(reference[k]):.6g}"
        return self.results(case, problem)


# -------------------------------------------------------------------------------------------------------------
FACTORS = (0.3, 1.0, 0.5)  # the schedule's factor at each of the three steps
LRS = (0.1, 0.01)  # base_lr of the two groups
SHAPES = ((5, 3), (4,), (2,))  # parameter 0 in group 0; parameters 1 and 2 in group 1; parameter 2 never has a grad


class SGDUpdate(Exercise):
    grade_id = "sgd_update_tests"
    solution_ids = ("sgd_update",)
    title = "Exercise 3 (`sgd_update`)"
    forbidden = ("torch.optim.SGD", "torch.optim._functional.sgd")
    checks = (Check("Nesterov momentum (the paper's recipe)", 3), Check("plain momentum", 2),
              Check("a parameter without a gradient neither moves nor gets a buffer", 1))
    hint = ("for each parameter with a gradient: add the weight decay to the gradient, start or update its momentum "
            "buffer in group['buffers'], then step by the formula of the exercise at base_lr × factor")
    visible = ({"name": "momentum 0.9, weight decay 5e-4, Nesterov, float32 (the paper)", "feeds": (
                "Nesterov momentum (the paper's recipe)", "a parameter without a gradient neither moves nor gets a buffer"),
                "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "dtype": "float32"},
               {"name": "momentum 0.5, weight decay 1e-3, plain, float32", "feeds": ("plain momentum",),
                "momentum": 0.5, "weight_decay": 1e-3, "nesterov": False, "dtype": "float32"})  # fmt: skip

    def make_case(self, spec, generator) -> Case:
        dtype = DTYPES[spec["dtype"]]

        def draw(shape):
            return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

        arrays = {f"start{i}": draw(s) for i, s in enumerate(SHAPES)}
        arrays.update({f"grad{k}_{i}": draw(s) for k in range(len(FACTORS)) for i, s in enumerate(SHAPES[:2])})
        return Case(spec["name"], {k: spec[k] for k in ("momentum", "weight_decay", "nesterov")}, arrays)

    @staticmethod
    def _set_grads(case: Case, params, step: int) -> None:
        for i, p in enumerate(params):
            p.grad = case[f"grad{step}_{i}"].clone() if f"grad{step}_{i}" in case.arrays else None

    def run(self, answer, case) -> dict[str, Any]:
        params = [case[f"start{i}"].clone().requires_grad_(True) for i in range(len(SHAPES))]
        groups = [{"name": "encoder", "params": params[:1], "base_lr": LRS[0], "buffers": {}},
                  {"name": "head", "params": params[1:], "base_lr": LRS[1], "buffers": {}}]
        out: dict[str, Any] = {}
        for step, factor in enumerate(FACTORS):
            self._set_grads(case, params, step)
            answer(groups, factor, case["momentum"], case["weight_decay"], case["nesterov"])
            out.update({f"step{step}_p{i}": p.detach().clone() for i, p in enumerate(params)})
        buffers = groups[1].get("buffers")
        out["head_buffers"] = len(buffers) if type(buffers) is dict else -1
        return out

    def _torch_sgd(self, case: Case, momentum: float, weight_decay: float, nesterov: bool, scaled: bool) -> dict:
        params = [case[f"start{i}"].clone().requires_grad_(True) for i in range(len(SHAPES))]
        opt = torch.optim.SGD([{"params": params[:1], "lr": LRS[0]}, {"params": params[1:], "lr": LRS[1]}],
                              momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0)
        out = {}
        for step, factor in enumerate(FACTORS):
            self._set_grads(case, params, step)
            for group, lr in zip(opt.param_groups, LRS):
                group["lr"] = lr * factor if scaled else lr
            opt.step()
            out.update({f"step{step}_p{i}": p.detach().clone() for i, p in enumerate(params)})
        return out

    def judge(self, case, outputs) -> list[CheckResult]:
        mu, wd, nesterov = float(case["momentum"]), float(case["weight_decay"]), bool(case["nesterov"])
        reference = self._torch_sgd(case, mu, wd, nesterov, True)
        variants = {
            ("plain momentum (w ← w − η·b) instead of Nesterov's (w ← w − η·(g + μ·b))" if nesterov else
             "Nesterov momentum, but nesterov=False was asked for"): (mu, wd, not nesterov, True),
            "an update without weight decay": (mu, 0.0, nesterov, True),
            "an update without momentum": (0.0, wd, False, True),
            "the learning rate not multiplied by the schedule's factor": (mu, wd, nesterov, False),
        }  # fmt: skip
        wrongs = {name: self._torch_sgd(case, *v) for name, v in variants.items() if v != (mu, wd, nesterov, True)}
        keys = [f"step{k}_p{i}" for k in range(len(FACTORS)) for i in range(2)]
        updates = None
        for key in keys:
            problem = compare_tensor(outputs[key], reference[key])
            if problem:
                named = [n for n, w in wrongs.items() if all(compare_tensor(outputs[k], w[k]) is None for k in keys)]
                step, i = key[4:].split("_p")
                updates = f"your updates equal {named[0]}" if named else \
                    f"step {int(step) + 1}, parameter {i}: {problem}"
                break
        last = len(FACTORS) - 1
        if compare_tensor(outputs[f"step{last}_p0"], case["start0"], rtol=0, atol=0) is None:
            frozen = "no parameter moved"
        elif compare_tensor(outputs[f"step{last}_p2"], case["start2"], rtol=0, atol=0) is not None:
            frozen = "the parameter without a gradient moved"
        elif int(outputs["head_buffers"]) > 1:
            frozen = "a parameter without a gradient got a momentum buffer"
        else:
            frozen = None
        return [self.result(name, frozen if name == self.checks[2].name else updates) for name in case.feeds]


EXERCISES = (ParamGroups(), TriangleFactor(), SGDUpdate())
